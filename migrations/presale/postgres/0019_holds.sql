-- Registration as real rounds ran it (issue 30), part two: the down payment's hold at a
-- participating bank, and the lottery's reserves.
--
-- One hold per person per license. It starts pending (a mandate asked of a bank), is
-- held once the bank confirms it server-to-server, and is settled exactly once: captured
-- for an accepted applicant or released for everyone else, under one idempotency key
-- that every retry of that call carries (kept for good, so well past the banks' 24 hours).
CREATE TABLE holds (
    id             TEXT PRIMARY KEY,
    license_id     TEXT NOT NULL REFERENCES licenses (id),
    national_id    TEXT NOT NULL,
    citizen_sub    TEXT NOT NULL,
    holder         TEXT NOT NULL,
    bank           TEXT NOT NULL,
    amount         BIGINT NOT NULL,
    title          TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN
                       ('pending', 'held', 'capturing', 'releasing', 'captured', 'released')),
    token          TEXT,
    state_hash     TEXT,
    created_at_ms  BIGINT NOT NULL,
    verified_at_ms BIGINT,
    settle_key     TEXT UNIQUE,
    settle_at_ms   BIGINT,
    settled_at_ms  BIGINT,
    -- A settlement's calls that failed, and when the next may be made (backing off).
    attempts       BIGINT NOT NULL DEFAULT 0,
    next_try_at_ms BIGINT NOT NULL DEFAULT 0,
    UNIQUE (license_id, national_id)
);
CREATE UNIQUE INDEX holds_token ON holds (bank, token);
CREATE INDEX holds_state ON holds (license_id, state);
CREATE INDEX holds_person ON holds (national_id);

CREATE FUNCTION holds_start_pending() RETURNS trigger AS $$
BEGIN
    IF NEW.state <> 'pending' OR NEW.settle_key IS NOT NULL OR NEW.verified_at_ms IS NOT NULL THEN
        RAISE EXCEPTION 'hold %: a hold starts pending', NEW.id USING ERRCODE = 'check_violation';
    END IF;
    -- For the license's amount, under its title, at one of its banks.
    IF NOT EXISTS (SELECT 1 FROM public.licenses l
                   WHERE l.id = NEW.license_id
                     AND (l.registration::jsonb -> 'hold' ->> 'amount')::bigint = NEW.amount
                     AND l.registration::jsonb -> 'hold' ->> 'title' = NEW.title
                     AND (l.registration::jsonb -> 'hold' -> 'banks') ? NEW.bank) THEN
        RAISE EXCEPTION 'hold %: not the license''s amount, title or banks', NEW.id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp;
CREATE TRIGGER holds_start_pending BEFORE INSERT ON holds
    FOR EACH ROW EXECUTE FUNCTION holds_start_pending();

CREATE FUNCTION holds_forward() RETURNS trigger AS $$
BEGIN
    IF (NEW.id, NEW.license_id, NEW.national_id, NEW.citizen_sub, NEW.holder, NEW.amount,
        NEW.title, NEW.created_at_ms)
       IS DISTINCT FROM
       (OLD.id, OLD.license_id, OLD.national_id, OLD.citizen_sub, OLD.holder, OLD.amount,
        OLD.title, OLD.created_at_ms)
       OR (OLD.state <> 'pending'
           AND (NEW.bank, NEW.token, NEW.verified_at_ms)
               IS DISTINCT FROM (OLD.bank, OLD.token, OLD.verified_at_ms))
       OR (OLD.settle_key IS NOT NULL
           AND (NEW.settle_key, NEW.settle_at_ms) IS DISTINCT FROM (OLD.settle_key, OLD.settle_at_ms))
       OR NOT (NEW.state = OLD.state
               OR (OLD.state, NEW.state) IN (('pending', 'held'), ('held', 'capturing'),
                                             ('held', 'releasing'), ('capturing', 'captured'),
                                             ('releasing', 'released')))
       OR (NEW.state IN ('capturing', 'releasing', 'captured', 'released')
           AND NEW.settle_key IS NULL)
       -- The key is set once, with the decision, and names it.
       OR (OLD.settle_key IS NULL AND NEW.settle_key IS NOT NULL
           AND NOT (OLD.state = 'held' AND NEW.state IN ('capturing', 'releasing')
                    AND NEW.settle_key = (CASE NEW.state WHEN 'capturing' THEN 'capture:'
                                          ELSE 'release:' END) || NEW.id)) THEN
        RAISE EXCEPTION 'hold %: a hold moves only forward, and is settled once', OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.bank <> OLD.bank AND NOT EXISTS (
           SELECT 1 FROM public.licenses l WHERE l.id = NEW.license_id
             AND (l.registration::jsonb -> 'hold' -> 'banks') ? NEW.bank) THEN
        RAISE EXCEPTION 'hold %: not one of the license''s banks', OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp;
CREATE TRIGGER holds_forward BEFORE UPDATE ON holds
    FOR EACH ROW EXECUTE FUNCTION holds_forward();
CREATE TRIGGER holds_no_delete BEFORE DELETE ON holds FOR EACH ROW
    EXECUTE FUNCTION emta_refuse('a hold is never removed');

-- The service's role (as in 0017): a hold counts, and is settled, only with its record
-- in the campaign's public log, in the same transaction and with the same holder.
CREATE FUNCTION holds_logged() RETURNS trigger AS $$
BEGIN
    IF emta_owner_acts(TG_RELID) THEN RETURN NULL; END IF;
    IF NEW.state = 'held' AND OLD.state = 'pending'
       AND NOT EXISTS (SELECT 1 FROM emta_logged_now(NEW.license_id, 'held') e
                       WHERE e ->> 'holder' = NEW.holder AND e ->> 'bank' = NEW.bank) THEN
        RAISE EXCEPTION 'hold %: confirmed without its record in the public log', NEW.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.state IN ('capturing', 'releasing') AND OLD.state = 'held'
       AND NOT EXISTS (SELECT 1 FROM emta_logged_now(NEW.license_id, 'settled') e
                       WHERE e ->> 'holder' = NEW.holder
                         AND (e ->> 'capture')::boolean = (NEW.state = 'capturing')) THEN
        RAISE EXCEPTION 'hold %: settled without its record in the public log', NEW.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp;
CREATE CONSTRAINT TRIGGER holds_logged AFTER UPDATE ON holds
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION holds_logged();

-- A lottery place whose time to apply ran out, and the reserves offered a place in
-- their order, one for each lapse; each with its record in the public log.
CREATE TABLE lottery_lapses (
    license_id TEXT NOT NULL REFERENCES licenses (id),
    rank       BIGINT NOT NULL,
    at_ms      BIGINT NOT NULL,
    PRIMARY KEY (license_id, rank)
);
CREATE TABLE lottery_promotions (
    license_id TEXT NOT NULL REFERENCES licenses (id),
    rank       BIGINT NOT NULL,
    until_ms   BIGINT NOT NULL,
    at_ms      BIGINT NOT NULL,
    PRIMARY KEY (license_id, rank)
);

CREATE FUNCTION lottery_lapses_logged() RETURNS trigger AS $$
BEGIN
    IF emta_owner_acts(TG_RELID) THEN RETURN NULL; END IF;
    IF NOT EXISTS (SELECT 1 FROM emta_logged_now(NEW.license_id, 'lapsed') e
                   WHERE (e ->> 'rank')::bigint = NEW.rank) THEN
        RAISE EXCEPTION 'rank %: a lapse without its record in the public log', NEW.rank
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- Only an offer whose time ran out on the database's clock, without an application.
    IF EXISTS (SELECT 1 FROM public.applications a
               WHERE a.license_id = NEW.license_id AND a.ticket = NEW.rank)
       OR NOT COALESCE(
           (SELECT CASE WHEN NEW.rank <= l.units
                        THEN (SELECT d.apply_until_ms FROM public.lottery_draws d
                              WHERE d.license_id = NEW.license_id)
                        ELSE (SELECT p.until_ms FROM public.lottery_promotions p
                              WHERE p.license_id = NEW.license_id AND p.rank = NEW.rank)
                   END <= CAST(EXTRACT(EPOCH FROM pg_catalog.clock_timestamp()) * 1000 AS bigint)
            FROM public.licenses l WHERE l.id = NEW.license_id), false) THEN
        RAISE EXCEPTION 'rank %: a lapse before its time ran out, or of a place applied for', NEW.rank
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp;
CREATE CONSTRAINT TRIGGER lottery_lapses_logged AFTER INSERT ON lottery_lapses
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION lottery_lapses_logged();

CREATE FUNCTION lottery_promotions_logged() RETURNS trigger AS $$
BEGIN
    IF emta_owner_acts(TG_RELID) THEN RETURN NULL; END IF;
    IF TG_OP = 'INSERT' AND NOT EXISTS (
           SELECT 1 FROM emta_logged_now(NEW.license_id, 'promoted') e
           WHERE (e ->> 'rank')::bigint = NEW.rank AND (e ->> 'until_ms')::bigint = NEW.until_ms) THEN
        RAISE EXCEPTION 'rank %: a promotion without its record in the public log', NEW.rank
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- The next on the list, one for each lapse, for the license's window from now.
    IF TG_OP = 'INSERT' AND NOT EXISTS (
           SELECT 1 FROM public.licenses l
           WHERE l.id = NEW.license_id
             AND NEW.rank = l.units + 1 + (SELECT count(*) FROM public.lottery_promotions p
                                           WHERE p.license_id = NEW.license_id
                                             AND p.rank < NEW.rank)
             AND (SELECT count(*) FROM public.lottery_promotions p
                  WHERE p.license_id = NEW.license_id)
                 <= (SELECT count(*) FROM public.lottery_lapses x
                     WHERE x.license_id = NEW.license_id)
             AND NEW.until_ms - NEW.at_ms = l.apply_window_secs * 1000
             AND abs(NEW.at_ms - CAST(EXTRACT(EPOCH FROM pg_catalog.clock_timestamp()) * 1000
                                      AS bigint)) < 60000) THEN
        RAISE EXCEPTION 'rank %: a promotion out of the reserve list''s order, past the lapses, or with another window', NEW.rank
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- A promoted reserve's time moves on only with a resumption's or an extension's record.
    IF TG_OP = 'UPDATE'
       AND ((NEW.license_id, NEW.rank, NEW.at_ms) IS DISTINCT FROM (OLD.license_id, OLD.rank, OLD.at_ms)
            OR NEW.until_ms < OLD.until_ms
            OR (NOT EXISTS (SELECT 1 FROM emta_logged_now(NEW.license_id, 'status'))
                AND NOT EXISTS (SELECT 1 FROM emta_logged_now(NEW.license_id, 'extended')))) THEN
        RAISE EXCEPTION 'rank %: a promotion changed without a resumption in the public log', NEW.rank
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp;
CREATE CONSTRAINT TRIGGER lottery_promotions_logged AFTER INSERT OR UPDATE ON lottery_promotions
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION lottery_promotions_logged();
