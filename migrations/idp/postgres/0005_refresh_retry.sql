-- A refresh token's rotation keeps, in the same transaction, the answer it gave, sealed
-- under a key derived from the presented token itself (so the row alone opens nothing):
-- a retry within the grace window after a lost answer gets that answer again, wherever
-- the loss fell. Before, the answer went to Redis after the commit, and a loss between
-- the two made the retry look like reuse and revoked the grant (a sign-out in a surge).
ALTER TABLE refresh_tokens ADD COLUMN retry_answer TEXT;
