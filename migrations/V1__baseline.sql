-- Baseline: the schema as it stood before the first deployment, written as its final state.
-- (V1 to V7 were squashed into this file once, while nothing was deployed.) From here on
-- migrations are append-only: see migrations/CHECKSUMS and the README.
--
-- The code maps constraint names to errors (custom_audience_name_key,
-- custom_audience_segment_id_fkey, segment_name_key): they are PostgreSQL's default names for
-- the constraints declared below; keep them.

CREATE EXTENSION IF NOT EXISTS pgcrypto;

-- ---------------------------------------------------------------------------------------------
-- People and segments: the tables audiences are fed from. In a larger deployment they belong to
-- the wider app, so every statement tolerates what it may already have created. Contact columns
-- hold data as the app stored it: no CHECK constraints here, normalization happens when hashing.

CREATE TABLE IF NOT EXISTS person (
    id                UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    external_id       TEXT UNIQUE,
    email             TEXT,
    phone             TEXT,
    first_name        TEXT,
    last_name         TEXT,
    city              TEXT,
    state             TEXT,
    zip               TEXT,
    country           TEXT,
    date_of_birth     DATE,
    gender            TEXT,
    attributes        JSONB NOT NULL DEFAULT '{}'::jsonb,
    marketing_opt_out BOOLEAN NOT NULL DEFAULT false,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- The people who opted out: audiences leave them out (see audience_eligible_persons).
CREATE INDEX IF NOT EXISTS idx_person_marketing_opt_out ON person (id) WHERE marketing_opt_out;
-- Segment rules: trait conditions compiled to containment (`=`, `contains`) and key existence
-- (`exists`) are served by this index.
CREATE INDEX IF NOT EXISTS idx_person_attributes ON person USING GIN (attributes);
-- Segment rules: `created_at` ranges (`within_last_days`, comparisons with a timestamp).
CREATE INDEX IF NOT EXISTS idx_person_created_at ON person (created_at);

CREATE TABLE IF NOT EXISTS segment (
    id           UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name         TEXT NOT NULL UNIQUE,
    description  TEXT,
    rule         JSONB,
    member_count INT NOT NULL DEFAULT 0,
    refreshed_at TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- The segment count's invariant, added to the wider app's table too when it already existed.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'segment_member_count_nonnegative') THEN
        ALTER TABLE segment ADD CONSTRAINT segment_member_count_nonnegative CHECK (member_count >= 0);
    END IF;
END
$$;

CREATE TABLE IF NOT EXISTS segment_member (
    segment_id UUID NOT NULL REFERENCES segment (id) ON DELETE CASCADE,
    person_id  UUID NOT NULL REFERENCES person (id) ON DELETE CASCADE,
    added_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (segment_id, person_id)
);
-- The primary key serves segment -> persons; this one serves "which segments is a person in".
CREATE INDEX IF NOT EXISTS idx_segment_member_person_id ON segment_member (person_id);

-- ---------------------------------------------------------------------------------------------
-- META-007 tables, columns as in the feature document, plus the columns the Meta sync and the
-- scheduler need (marked "added").

CREATE TABLE custom_audience (
    id                       UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name                     TEXT NOT NULL UNIQUE CHECK (char_length(name) BETWEEN 1 AND 200),
    description              TEXT,
    meta_audience_id         TEXT,
    meta_business_account_id TEXT,
    -- A segment that feeds an audience cannot be deleted from under it.
    segment_id               UUID REFERENCES segment (id) ON DELETE RESTRICT,
    audience_type            TEXT NOT NULL DEFAULT 'custom_list'
                             CHECK (audience_type IN ('custom_list', 'lookalike', 'engagement')),
    lookalike_country        TEXT CHECK (lookalike_country ~ '^[A-Z]{2}$'),
    lookalike_percentage     INT CHECK (lookalike_percentage BETWEEN 1 AND 10),
    auto_sync                BOOLEAN NOT NULL DEFAULT false,
    sync_interval_hours      INT NOT NULL DEFAULT 24 CHECK (sync_interval_hours BETWEEN 1 AND 8760),
    last_synced_at           TIMESTAMPTZ,
    is_active                BOOLEAN NOT NULL DEFAULT true,
    status                   TEXT NOT NULL DEFAULT 'pending'
                             CHECK (status IN ('pending', 'syncing', 'active', 'failed')),
    total_synced             INT NOT NULL DEFAULT 0,
    sync_error_message       TEXT,
    created_at               TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at               TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- added: the pixel rule of an engagement audience ({pixel_id, event, retention_days})
    rule                     JSONB,
    -- added: the customer-list seed a lookalike is built from, created by the first sync
    meta_seed_audience_id    TEXT,
    -- added: Meta's size and status as read at the last sync (served by include=metrics)
    meta_metrics             JSONB,
    -- added: held by a scheduler pass that took the audience, so concurrent passes share the due
    -- audiences; expires on its own if the pass dies
    sync_claimed_until       TIMESTAMPTZ,
    -- added: when the last sync started, successful or not (failed syncs are retried sooner)
    last_attempted_at        TIMESTAMPTZ,
    CONSTRAINT custom_audience_lookalike_fields CHECK (
        audience_type <> 'lookalike'
        OR (segment_id IS NOT NULL AND lookalike_country IS NOT NULL AND lookalike_percentage IS NOT NULL)),
    CONSTRAINT custom_audience_engagement_rule CHECK (audience_type <> 'engagement' OR rule IS NOT NULL)
);

CREATE INDEX idx_custom_audience_is_active ON custom_audience (is_active);
CREATE INDEX idx_custom_audience_segment_id ON custom_audience (segment_id);
CREATE INDEX idx_custom_audience_meta_audience_id ON custom_audience (meta_audience_id);
CREATE INDEX idx_custom_audience_status ON custom_audience (status);
CREATE INDEX idx_custom_audience_last_synced_at ON custom_audience (last_synced_at);
-- The audiences a scheduler pass may find due.
CREATE INDEX idx_custom_audience_due ON custom_audience (last_synced_at NULLS FIRST)
    WHERE is_active AND auto_sync;

-- Time-ordered member ids (UUID version 7: 48 bits of Unix milliseconds, then random bits).
-- Random ids scatter a million primary-key insertions over the whole index; ordered ones go
-- to its right edge (measured: the primary key cost 300 ms per 200,000 rows with random ids).
-- One expression (so PostgreSQL inlines it): the random id's first 7 bytes are overwritten by
-- the timestamp and the version byte 0x70 (the 4 random bits after the version are zero).
CREATE FUNCTION audience_member_new_id() RETURNS UUID
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT encode(
        overlay(uuid_send(gen_random_uuid())
                PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::BIGINT) FROM 3)
                        || '\x70'::BYTEA
                FROM 1 FOR 7),
        'hex')::UUID
$$;

-- An audience's members, written at the scale of a million rows a sync.
-- audience_id and person_id are references without FOREIGN KEY constraints: statement-level
-- triggers keep them (below). A foreign key checks every inserted row with a locking lookup of
-- its parent (SELECT ... FOR KEY SHARE): two of them made up half of a first sync's insert
-- (measured: 1.9 s of 3.9 s for 200,000 members). Members are only inserted for the joiners the
-- diff found among segment members, by a sync holding the audience's lock (the diff,
-- audience_member_reconcile, locks the audience row once), so the insert side needs no check.
CREATE TABLE audience_member_sync (
    id             UUID PRIMARY KEY DEFAULT audience_member_new_id(),
    -- Membership is state of the audience: it goes with it.
    audience_id    UUID NOT NULL,
    -- An erased person leaves a row without person_id behind, holding only the hashes Meta was
    -- sent, so the next sync can remove exactly those from Meta.
    person_id      UUID,
    is_synced      BOOLEAN NOT NULL DEFAULT false,
    synced_at      TIMESTAMPTZ,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- added: the hashed row (10 x 32 bytes, SCHEMA order, zeros = empty) last accepted; never raw PII
    hashes         BYTEA CHECK (hashes IS NULL OR octet_length(hashes) = 320),
    -- added: why this member is not synced (no usable identifier, rejected by Meta)
    failure_reason TEXT,
    -- added: the member left the segment (or opted out, or was erased) and its hashes must still
    -- be removed from Meta
    removal_pending BOOLEAN NOT NULL DEFAULT false,
    -- Also the keyset index the sync pages an audience's members by.
    UNIQUE (audience_id, person_id)
);
-- Members still to be removed from Meta, paged in id order (they may have no person any more).
CREATE INDEX idx_audience_member_sync_removal_pending ON audience_member_sync (audience_id, id)
    WHERE removal_pending;
CREATE INDEX idx_audience_member_sync_person_id ON audience_member_sync (person_id);
-- The members an incremental sync sends (joiners and earlier failures), by the keyset the sync
-- pages them in; without it each incremental sync walked every member to find the few unsynced:
-- what an incremental sync reads follows the churn, not the audience.
CREATE INDEX idx_audience_member_sync_unsynced ON audience_member_sync (audience_id, person_id)
    WHERE NOT is_synced AND NOT removal_pending;

-- Joiners waiting for their member row. The diff (audience_member_reconcile) puts the people who
-- joined the audience here instead of inserting bare member rows; the sync writes each one's row
-- once, with the hashes Meta accepted (or why it could not be sent), and takes it off this list
-- in the same statement. Inserting a bare row and rewriting it with 320 bytes of hashes cost
-- twice the writes (a new row version and new index entries): for a million joiners ~7 s + ~12 s.
-- A person deleted meanwhile is simply never read (the sync joins each joiner to its person);
-- what is left here when a sync finishes is cleared, and the next diff starts afresh.
-- Rows are keyed by the list they belong to (the sync's log row id), not by audience: the rows
-- a sync deleted stay in the index until vacuumed, and a later sync of the audience that
-- paged by audience would walk over all of them on every page.
CREATE TABLE audience_member_joiner (
    list_id     UUID NOT NULL,
    audience_id UUID NOT NULL,
    person_id   UUID NOT NULL,
    PRIMARY KEY (list_id, person_id)
);

CREATE TABLE audience_sync_log (
    id            UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    -- The log is an audit trail: it outlives the audience it describes.
    audience_id   UUID REFERENCES custom_audience (id) ON DELETE SET NULL,
    sync_type     TEXT NOT NULL CHECK (sync_type IN ('full', 'incremental', 'update')),
    synced_count  INT NOT NULL DEFAULT 0,
    failed_count  INT NOT NULL DEFAULT 0,
    status        TEXT NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'in_progress', 'completed', 'failed')),
    error_message TEXT,
    started_at    TIMESTAMPTZ,
    completed_at  TIMESTAMPTZ,
    meta_response JSONB,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- added: what the sync did to membership (joined, left, changed, removed, no_identifier, ...)
    details       JSONB,
    -- added: where an unfinished sync stands (replace session, batch, cursor); NULL once
    -- finished, so a sync too large for one invocation resumes in the next
    checkpoint    JSONB,
    -- added: how many times the sync was picked up again after a pause or a crash
    resumed_count INT NOT NULL DEFAULT 0
);

CREATE INDEX idx_audience_sync_log_audience_id ON audience_sync_log (audience_id);
CREATE INDEX idx_audience_sync_log_status ON audience_sync_log (status);
CREATE INDEX idx_audience_sync_log_created_at ON audience_sync_log (created_at);
CREATE INDEX idx_audience_sync_log_unfinished ON audience_sync_log (audience_id)
    WHERE status = 'in_progress';

-- ---------------------------------------------------------------------------------------------
-- The references of audience_member_sync, kept by statement-level triggers instead of foreign
-- keys (see the table). The delete side keeps the meaning foreign keys would give it:
-- - deleting an audience deletes its members (and its listed joiners), as ON DELETE CASCADE;
-- - deleting a person leaves its member rows without person_id, as ON DELETE SET NULL, so the
--   next sync removes the hashes it holds from Meta.
-- A person deleted in the instant between a sync's diff and its insert would leave a row
-- pointing nowhere: it is never sent (the sync reads members joined to their person) and the
-- next diff, not finding it eligible, deletes it.

CREATE FUNCTION audience_members_of_deleted_audiences() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM audience_member_sync m USING gone g WHERE m.audience_id = g.id;
    DELETE FROM audience_member_joiner j USING gone g WHERE j.audience_id = g.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER custom_audience_deletes_members AFTER DELETE ON custom_audience
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION audience_members_of_deleted_audiences();

CREATE FUNCTION audience_members_of_deleted_persons() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE audience_member_sync m SET person_id = NULL, updated_at = now()
    FROM gone g WHERE m.person_id = g.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER person_deletes_leave_member_hashes AFTER DELETE ON person
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION audience_members_of_deleted_persons();

-- ---------------------------------------------------------------------------------------------
-- SQL helpers of the feature document and of the sync engine. Hashing has one definition, in
-- Rust (src/meta/normalize.rs); these functions only read the hashes Rust stored.

-- Field i (0-based, SCHEMA order) of a stored 320-byte hashed row as lowercase hex, '' when empty.
CREATE FUNCTION audience_hash_field(p_hashes BYTEA, p_index INT) RETURNS TEXT
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN p_hashes IS NULL THEN ''
        WHEN substring(p_hashes FROM p_index * 32 + 1 FOR 32) = decode(repeat('00', 32), 'hex') THEN ''
        ELSE encode(substring(p_hashes FROM p_index * 32 + 1 FOR 32), 'hex')
    END
$$;

-- Eligible members of an audience: its segment's members who have not opted out.
CREATE FUNCTION audience_eligible_persons(p_audience_id UUID) RETURNS TABLE (person_id UUID)
LANGUAGE sql STABLE AS $$
    SELECT sm.person_id
    FROM custom_audience a
    JOIN segment_member sm ON sm.segment_id = a.segment_id
    WHERE a.id = p_audience_id
      -- Against the few who opted out (a partial index), not a join with every person.
      AND NOT EXISTS (SELECT 1 FROM person p WHERE p.id = sm.person_id AND p.marketing_opt_out)
$$;

-- The membership diff, as the sync engine uses it: brings an audience's members to its eligible
-- persons, set-based. Joiners go to audience_member_joiner (list p_list_id) for the sync to write
-- their rows once, with hashes, listed in person order as the primary key wants them; leavers
-- never accepted anywhere are deleted; leavers whose hashes were accepted are flagged
-- removal_pending, so the sync can remove exactly those hashes from Meta before the row goes. A
-- leaver who comes back before that is simply unflagged.
-- One full join of the eligible set with the current members finds the difference (a hash or
-- merge join: its cost follows the audience's size once, not squared); the writes then touch
-- only the difference, so their cost follows churn. No counts: the sync counts what it did
-- itself, so it scans the audience once, not twice.
-- The audience row is locked as a foreign key check would (audience_member_sync has none).
CREATE FUNCTION audience_member_reconcile(p_audience_id UUID, p_list_id UUID)
RETURNS VOID
LANGUAGE plpgsql AS $$
BEGIN
    -- The lock a foreign key check would take, once: the audience cannot be deleted (and its
    -- members with it) while this transaction inserts members for it.
    PERFORM 1 FROM custom_audience WHERE id = p_audience_id FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'audience % does not exist', p_audience_id USING ERRCODE = 'no_data_found';
    END IF;

    -- Joiners listed by an earlier, abandoned sync: this diff finds them again.
    DELETE FROM audience_member_joiner WHERE audience_id = p_audience_id;

    DROP TABLE IF EXISTS pg_temp.audience_member_diff;
    CREATE TEMP TABLE audience_member_diff ON COMMIT DROP AS
    SELECT e.person_id, m.id AS member_id, m.removal_pending, m.sent
    FROM audience_eligible_persons(p_audience_id) e
    FULL JOIN (SELECT a.id, a.person_id, a.removal_pending, a.hashes IS NOT NULL AS sent
               FROM audience_member_sync a WHERE a.audience_id = p_audience_id) m
           ON m.person_id = e.person_id
    WHERE m.id IS NULL
       OR (e.person_id IS NULL AND NOT m.removal_pending)
       OR (e.person_id IS NOT NULL AND m.removal_pending);
    ANALYZE pg_temp.audience_member_diff;

    -- Only this sync (which holds the audience's lock) writes its members: no conflicts here.
    INSERT INTO audience_member_joiner (list_id, audience_id, person_id)
    SELECT p_list_id, p_audience_id, d.person_id FROM pg_temp.audience_member_diff d
    WHERE d.member_id IS NULL
    ORDER BY d.person_id;

    UPDATE audience_member_sync a SET removal_pending = false, updated_at = now()
    FROM pg_temp.audience_member_diff d
    WHERE a.id = d.member_id AND d.person_id IS NOT NULL AND d.removal_pending;

    DELETE FROM audience_member_sync a USING pg_temp.audience_member_diff d
    WHERE a.id = d.member_id AND d.person_id IS NULL AND NOT d.sent;

    UPDATE audience_member_sync a SET removal_pending = true, is_synced = false, updated_at = now()
    FROM pg_temp.audience_member_diff d
    WHERE a.id = d.member_id AND d.person_id IS NULL AND d.sent;
END
$$
-- The full join and the writes of a first sync handle the whole audience: room for hashing.
SET work_mem = '128MB';

-- The feature document's reconciliation, for other tools: the diff above, with the joiners
-- written at once as unsynced member rows. Returns the audience's synced and failed member
-- counts after reconciliation.
CREATE FUNCTION sync_audience_members(p_audience_id UUID, p_sync_type TEXT DEFAULT 'incremental')
RETURNS TABLE (synced_count INT, failed_count INT)
LANGUAGE plpgsql AS $$
DECLARE
    list UUID := gen_random_uuid();
BEGIN
    IF p_sync_type IS NULL OR p_sync_type NOT IN ('full', 'incremental', 'update') THEN
        RAISE EXCEPTION 'sync type must be full, incremental or update, not %', p_sync_type
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM audience_member_reconcile(p_audience_id, list);
    -- As documented for other tools: joiners become unsynced member rows at once.
    INSERT INTO audience_member_sync (audience_id, person_id)
    SELECT j.audience_id, j.person_id FROM audience_member_joiner j
    WHERE j.list_id = list
    ORDER BY j.person_id;
    DELETE FROM audience_member_joiner WHERE list_id = list;
    RETURN QUERY
    SELECT (count(*) FILTER (WHERE m.is_synced))::INT,
           (count(*) FILTER (WHERE m.failure_reason IS NOT NULL))::INT
    FROM audience_member_sync m
    WHERE m.audience_id = p_audience_id AND NOT m.removal_pending;
END
$$;

-- A page of the members a sync sends, in person order: member rows (all, or only the unsynced)
-- merged with the joiners the diff listed (no member row yet: a NULL id).
-- Keyset pages must be read along the indexes. Right after a sync has written a million rows the
-- table's statistics still describe the old table, and the planner, believing the audience
-- small, would rather sort the whole audience for every page (seen: 1 s a page instead of
-- 20 ms). Sorting and bitmap scans are therefore off inside this function, for its plans only.
CREATE FUNCTION audience_member_page(p_audience_id UUID, p_list_id UUID, p_after UUID,
                                     p_limit INT, p_unsynced_only BOOLEAN)
RETURNS TABLE (id UUID, person_id UUID, hashes BYTEA, is_synced BOOLEAN)
LANGUAGE plpgsql STABLE
SET enable_sort = off
SET enable_bitmapscan = off
SET work_mem = '64MB'
AS $$
BEGIN
    -- The unsynced-only condition is written into the text (not a parameter), so that the
    -- partial index of unsynced members serves it.
    RETURN QUERY EXECUTE format(
        'SELECT m.id, m.person_id, m.hashes, m.is_synced
         FROM ((SELECT a.id, a.person_id, a.hashes, a.is_synced FROM audience_member_sync a
                WHERE a.audience_id = $1 AND a.person_id > $3 AND NOT a.removal_pending %s
                ORDER BY a.person_id LIMIT $4)
               UNION ALL
               (SELECT NULL::UUID, j.person_id, NULL::BYTEA, false FROM audience_member_joiner j
                WHERE j.list_id = $2 AND j.person_id > $3
                ORDER BY j.person_id LIMIT $4)) m
         ORDER BY m.person_id LIMIT $4',
        CASE WHEN p_unsynced_only THEN 'AND NOT a.is_synced' ELSE '' END)
    USING p_audience_id, p_list_id, p_after, p_limit;
END
$$;

-- The contact data of a page's people, in id order: one index scan over the page's ids.
-- Planned once per session (a generic plan): a custom plan has the planner estimate the
-- selectivity of each of the page's 10,000 ids, 100 ms more than the scan itself.
CREATE FUNCTION audience_page_people(p_ids UUID[])
RETURNS TABLE (id UUID, email TEXT, phone TEXT, first_name TEXT, last_name TEXT, city TEXT,
               state TEXT, zip TEXT, country TEXT, date_of_birth DATE, gender TEXT)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
SET work_mem = '64MB'
AS $$
BEGIN
    RETURN QUERY
    -- Cast: the wider app's person table may use other text types (varchar) than ours.
    SELECT p.id, p.email::TEXT, p.phone::TEXT, p.first_name::TEXT, p.last_name::TEXT,
           p.city::TEXT, p.state::TEXT, p.zip::TEXT, p.country::TEXT, p.date_of_birth::DATE,
           p.gender::TEXT
    FROM person p WHERE p.id = ANY(p_ids) ORDER BY p.id;
END
$$;

-- Hashed member rows as Meta receives them (synced members only). No raw PII leaves here.
CREATE FUNCTION get_audience_members_for_export(p_audience_id UUID)
RETURNS TABLE (person_id UUID, email TEXT, phone TEXT, first_name TEXT, last_name TEXT,
               country TEXT, city TEXT)
LANGUAGE sql STABLE AS $$
    SELECT m.person_id,
           audience_hash_field(m.hashes, 0),
           audience_hash_field(m.hashes, 1),
           audience_hash_field(m.hashes, 2),
           audience_hash_field(m.hashes, 3),
           audience_hash_field(m.hashes, 7),
           audience_hash_field(m.hashes, 4)
    FROM audience_member_sync m
    WHERE m.audience_id = p_audience_id AND m.is_synced AND NOT m.removal_pending
    ORDER BY m.id
$$;

CREATE FUNCTION get_audience_metrics(p_audience_id UUID)
RETURNS TABLE (total_members INT, synced_count INT, last_sync_date TIMESTAMPTZ, sync_status TEXT)
LANGUAGE sql STABLE AS $$
    SELECT (SELECT count(*) FROM audience_member_sync m
            WHERE m.audience_id = a.id AND NOT m.removal_pending)::INT,
           (SELECT count(*) FROM audience_member_sync m
            WHERE m.audience_id = a.id AND m.is_synced AND NOT m.removal_pending)::INT,
           a.last_synced_at,
           a.status
    FROM custom_audience a
    WHERE a.id = p_audience_id
$$;
