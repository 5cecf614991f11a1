-- Eligibility: no accepted application at the listed (big) manufacturers in the last
-- `exclusion_months` months. NULL: no such rule on this license.
ALTER TABLE licenses ADD COLUMN exclusion_manufacturers TEXT;
ALTER TABLE licenses ADD COLUMN exclusion_months BIGINT;
