-- Change tracking (issue 11): syncs and segment refreshes work in proportion to what changed.
--
-- Outside tools write person and segment_member with plain SQL, so what changed is recorded by
-- the database itself: statement-level triggers (one INSERT per statement, from its transition
-- table) append a row to change_log for each person inserted, deleted or updated in a column a
-- rule or the hashes read, and for each segment_member row added or removed.
--
-- Consumers (an audience's diff, a rule segment's refresh) never read "rows after the last id":
-- a transaction that began earlier may commit its rows later, with smaller ids. Each row carries
-- the id of the transaction that wrote it (xid8); a consumer records, as its horizon, the xmin of
-- the snapshot it read with (every transaction with a smaller id had ended, so all of their rows
-- were visible to it), and next time reads the rows with xid >= that horizon. Rows read twice are
-- harmless: the work is idempotent.

CREATE TABLE change_log (
    xid        XID8 NOT NULL DEFAULT pg_current_xact_id(),
    person_id  UUID NOT NULL,
    -- NULL: the person itself changed (inserted, deleted, updated); else its membership of this
    -- segment was added or removed.
    segment_id UUID
);
-- A consumer's read: its segment's rows and the person rows since its horizon (two probes).
CREATE INDEX idx_change_log_segment_xid ON change_log (segment_id, xid);
-- The trim: everything below the oldest horizon still needed.
CREATE INDEX idx_change_log_xid ON change_log (xid);

-- Changes below `below` may be missing from the log (trimmed, or a TRUNCATE nothing could
-- list): a consumer whose horizon is below it reads everything instead (the full diff).
CREATE TABLE change_log_floor (
    only_row BOOLEAN PRIMARY KEY DEFAULT true CHECK (only_row),
    below    XID8 NOT NULL DEFAULT '0'
);
INSERT INTO change_log_floor DEFAULT VALUES;

-- The columns a rule or the hashes read: every person column but id and updated_at. (A rule on
-- updated_at is evaluated in full at every refresh: src/segment/rule.rs.)
CREATE FUNCTION change_log_person_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO change_log (person_id) SELECT n.id FROM new_rows n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO change_log (person_id) SELECT o.id FROM old_rows o;
    ELSE
        -- By id; an id that itself changed shows as one person gone and one come.
        INSERT INTO change_log (person_id)
        SELECT COALESCE(n.id, o.id)
        FROM new_rows n FULL JOIN old_rows o ON o.id = n.id
        WHERE n.id IS NULL OR o.id IS NULL
           OR (n.external_id, n.email, n.phone, n.first_name, n.last_name, n.city, n.state, n.zip,
               n.country, n.date_of_birth, n.gender, n.attributes, n.marketing_opt_out,
               n.created_at)
              IS DISTINCT FROM
              (o.external_id, o.email, o.phone, o.first_name, o.last_name, o.city, o.state, o.zip,
               o.country, o.date_of_birth, o.gender, o.attributes, o.marketing_opt_out,
               o.created_at);
    END IF;
    RETURN NULL;
END
$$;
-- (A trigger with a transition table serves one event, hence three.)
CREATE TRIGGER person_change_log_insert AFTER INSERT ON person
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION change_log_person_rows();
CREATE TRIGGER person_change_log_update AFTER UPDATE ON person
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION change_log_person_rows();
CREATE TRIGGER person_change_log_delete AFTER DELETE ON person
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION change_log_person_rows();

CREATE FUNCTION change_log_segment_member_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO change_log (person_id, segment_id) SELECT n.person_id, n.segment_id FROM new_rows n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO change_log (person_id, segment_id) SELECT o.person_id, o.segment_id FROM old_rows o;
    ELSE
        INSERT INTO change_log (person_id, segment_id)
        (SELECT n.person_id, n.segment_id FROM new_rows n
         EXCEPT ALL SELECT o.person_id, o.segment_id FROM old_rows o)
        UNION ALL
        (SELECT o.person_id, o.segment_id FROM old_rows o
         EXCEPT ALL SELECT n.person_id, n.segment_id FROM new_rows n);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER segment_member_change_log_insert AFTER INSERT ON segment_member
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION change_log_segment_member_rows();
CREATE TRIGGER segment_member_change_log_update AFTER UPDATE ON segment_member
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION change_log_segment_member_rows();
CREATE TRIGGER segment_member_change_log_delete AFTER DELETE ON segment_member
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION change_log_segment_member_rows();

-- A TRUNCATE names no rows: every consumer that read before it reads everything next time.
-- (xmax of the current snapshot: above this transaction's id, so a horizon at or past it was
-- taken after the TRUNCATE ended.)
CREATE FUNCTION change_log_truncated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE change_log_floor SET below = greatest(below, pg_snapshot_xmax(pg_current_snapshot()));
    RETURN NULL;
END
$$;
CREATE TRIGGER person_change_log_truncate AFTER TRUNCATE ON person
    FOR EACH STATEMENT EXECUTE FUNCTION change_log_truncated();
CREATE TRIGGER segment_member_change_log_truncate AFTER TRUNCATE ON segment_member
    FOR EACH STATEMENT EXECUTE FUNCTION change_log_truncated();

-- Whether a consumer with horizon p_from whose last full pass ran at p_full_at may read only
-- the changes: it has a horizon, its full pass (the safety net against changes made behind the
-- triggers' back) is less than a day old, and the log still holds everything since its horizon.
CREATE FUNCTION change_log_covers(p_from XID8, p_full_at TIMESTAMPTZ) RETURNS BOOLEAN
LANGUAGE sql STABLE AS $$
    SELECT p_from IS NOT NULL AND p_full_at > now() - interval '1 day'
       AND p_from >= (SELECT below FROM change_log_floor)
$$;

-- Removes the rows every consumer that may still read changes has read: below the oldest
-- horizon of the audiences and segments whose full pass is less than a day old (the others
-- read everything next time anyway), and never past what is still running. Returns the rows
-- removed. Set-based, at the end of a scheduler pass.
CREATE FUNCTION change_log_trim() RETURNS BIGINT
LANGUAGE plpgsql AS $$
DECLARE
    v_below XID8;
    v_removed BIGINT;
BEGIN
    SELECT least(pg_snapshot_xmin(pg_current_snapshot()),
                 (SELECT min(a.changes_from) FROM custom_audience a
                  WHERE change_log_covers(a.changes_from, a.full_diff_at)),
                 (SELECT min(a.rehash_from) FROM custom_audience a
                  WHERE change_log_covers(a.rehash_from, a.full_diff_at)),
                 (SELECT min(s.changes_from) FROM segment s
                  WHERE change_log_covers(s.changes_from, s.full_refresh_at)))
    INTO v_below;
    DELETE FROM change_log WHERE xid < v_below;
    GET DIAGNOSTICS v_removed = ROW_COUNT;
    UPDATE change_log_floor SET below = v_below WHERE below < v_below;
    RETURN v_removed;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Consumers' horizons.

-- added: `realtime` (DESIGN §8.2): synced at every scheduler pass in which its members changed;
-- `changes_from`: the horizon of the audience's diff (NULL: never diffed, the next diff is
-- full); `changes_seen`: the snapshot that horizon was taken from (the change rows visible in
-- it were read: the scheduler looks for the others, so a transaction holding the horizon back
-- does not make it sync a real-time audience at every pass); `full_diff_at`: when its last full
-- diff ran (the daily safety net); `rehash_from` / `rehash_seen`: the same for the last sync
-- that re-hashed its members (`update`, `full`): an `update` re-hashes the people changed since
-- then, which incremental syncs in between do not look at.
ALTER TABLE custom_audience
    ADD COLUMN realtime BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN changes_from XID8,
    ADD COLUMN changes_seen PG_SNAPSHOT,
    ADD COLUMN full_diff_at TIMESTAMPTZ,
    ADD COLUMN rehash_from XID8,
    ADD COLUMN rehash_seen PG_SNAPSHOT;
-- The real-time audiences a scheduler pass probes for changes.
CREATE INDEX idx_custom_audience_realtime ON custom_audience (segment_id) WHERE is_active AND realtime;

-- The same for a segment's refresh (a rule segment re-evaluates its rule for the people changed
-- since; a manual one recounts only when its members changed).
ALTER TABLE segment
    ADD COLUMN IF NOT EXISTS changes_from XID8,
    ADD COLUMN IF NOT EXISTS full_refresh_at TIMESTAMPTZ;

-- A new rule (however it was written) selects other people: the next refresh is full.
CREATE FUNCTION segment_rule_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.changes_from := NULL;
    RETURN NEW;
END
$$;
CREATE TRIGGER segment_rule_changed BEFORE UPDATE OF rule ON segment
    FOR EACH ROW WHEN (NEW.rule IS DISTINCT FROM OLD.rule) EXECUTE FUNCTION segment_rule_changed();

-- ---------------------------------------------------------------------------------------------
-- The membership diff, change-driven: with a usable horizon, only the people in change rows since
-- it (for the audience's segment, or the person itself), the joiners an abandoned sync left
-- listed, and members whose person was erased are compared; otherwise (p_sync_type 'full', no
-- horizon, last full diff older than a day, log trimmed past the horizon) the full join of V1.
-- The outputs are V1's: joiners listed under p_list_id, leavers flagged or deleted. For an
-- `update` read from the changes, members whose person changed since the last re-hash (an
-- `update` or `full` sync: the rehash horizon) are marked unsynced (their sent hashes kept), so
-- the sync's pass over unsynced members re-hashes them and replaces what changed: the detection
-- looks only at the changed people too. Without a usable rehash horizon an `update` diffs in
-- full (and its pass re-hashes every member).
-- Returns how the diff was made ('changes' or 'full') and how many synced members it marked
-- unsynced (for the sync's counts, which then need no scan of the audience).
DROP FUNCTION audience_member_reconcile(UUID, UUID);
CREATE FUNCTION audience_member_reconcile(p_audience_id UUID, p_list_id UUID,
                                          p_sync_type TEXT DEFAULT 'incremental')
RETURNS TABLE (diff TEXT, unsynced BIGINT)
LANGUAGE plpgsql AS $$
DECLARE
    -- Taken before anything is read: every transaction below its xmin had ended by then.
    v_seen PG_SNAPSHOT := pg_current_snapshot();
    v_from XID8;
    v_seen_before PG_SNAPSHOT;
    v_rehash_from XID8;
    v_rehash_seen PG_SNAPSHOT;
    v_full_at TIMESTAMPTZ;
    v_segment UUID;
    v_changes BOOLEAN;
    v_unsynced BIGINT := 0;
    v_n BIGINT;
BEGIN
    -- The lock a foreign key check would take, once: the audience cannot be deleted (and its
    -- members with it) while this transaction inserts members for it.
    SELECT a.changes_from, a.changes_seen, a.rehash_from, a.rehash_seen, a.full_diff_at, a.segment_id
    INTO v_from, v_seen_before, v_rehash_from, v_rehash_seen, v_full_at, v_segment
    FROM custom_audience a WHERE a.id = p_audience_id FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'audience % does not exist', p_audience_id USING ERRCODE = 'no_data_found';
    END IF;
    v_changes := p_sync_type IS DISTINCT FROM 'full' AND change_log_covers(v_from, v_full_at)
        AND (p_sync_type IS DISTINCT FROM 'update' OR change_log_covers(v_rehash_from, v_full_at));

    DROP TABLE IF EXISTS pg_temp.audience_member_candidates;
    IF v_changes THEN
        -- Rows at or past the horizon, but not those the last diff's snapshot already showed
        -- (while a long transaction holds the horizon back, they would be read again and again).
        CREATE TEMP TABLE audience_member_candidates ON COMMIT DROP AS
        SELECT c.person_id FROM change_log c
        WHERE c.segment_id = v_segment AND c.xid >= v_from
          AND NOT COALESCE(pg_visible_in_snapshot(c.xid, v_seen_before), false)
        UNION
        SELECT c.person_id FROM change_log c
        WHERE c.segment_id IS NULL AND c.xid >= v_from
          AND NOT COALESCE(pg_visible_in_snapshot(c.xid, v_seen_before), false)
        UNION
        -- Joiners listed by an earlier, abandoned sync: found again.
        SELECT j.person_id FROM audience_member_joiner j WHERE j.audience_id = p_audience_id;
        -- A trim that ran meanwhile may have removed rows this read needed: then the full diff.
        v_changes := change_log_covers(v_from, v_full_at)
            AND (p_sync_type IS DISTINCT FROM 'update' OR change_log_covers(v_rehash_from, v_full_at));
        ANALYZE pg_temp.audience_member_candidates;
    END IF;

    -- Joiners listed by an earlier, abandoned sync: this diff finds them again.
    DELETE FROM audience_member_joiner WHERE audience_id = p_audience_id;

    DROP TABLE IF EXISTS pg_temp.audience_member_diff;
    IF v_changes THEN
        -- The candidates' eligibility and membership by index lookups, and the members left
        -- without a person by an erasure (their person id is gone from them).
        CREATE TEMP TABLE audience_member_diff ON COMMIT DROP AS
        SELECT e.person_id, m.id AS member_id, m.removal_pending, m.sent, m.synced
        FROM (SELECT e.person_id FROM pg_temp.audience_member_candidates c
              JOIN audience_eligible_persons(p_audience_id) e ON e.person_id = c.person_id) e
        FULL JOIN (SELECT a.id, a.person_id, a.removal_pending, a.hashes IS NOT NULL AS sent, a.is_synced AS synced
                   FROM pg_temp.audience_member_candidates c
                   JOIN audience_member_sync a
                     ON a.audience_id = p_audience_id AND a.person_id = c.person_id
                   UNION ALL
                   SELECT a.id, a.person_id, a.removal_pending, a.hashes IS NOT NULL, a.is_synced
                   FROM audience_member_sync a
                   WHERE a.audience_id = p_audience_id AND a.person_id IS NULL) m
               ON m.person_id = e.person_id
        WHERE m.id IS NULL
           OR (e.person_id IS NULL AND NOT m.removal_pending)
           OR (e.person_id IS NOT NULL AND m.removal_pending);
    ELSE
        CREATE TEMP TABLE audience_member_diff ON COMMIT DROP AS
        SELECT e.person_id, m.id AS member_id, m.removal_pending, m.sent, m.synced
        FROM audience_eligible_persons(p_audience_id) e
        FULL JOIN (SELECT a.id, a.person_id, a.removal_pending, a.hashes IS NOT NULL AS sent, a.is_synced AS synced
                   FROM audience_member_sync a WHERE a.audience_id = p_audience_id) m
               ON m.person_id = e.person_id
        WHERE m.id IS NULL
           OR (e.person_id IS NULL AND NOT m.removal_pending)
           OR (e.person_id IS NOT NULL AND m.removal_pending);
    END IF;
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
    SELECT count(*) INTO v_unsynced FROM pg_temp.audience_member_diff d
    WHERE d.person_id IS NULL AND d.sent AND d.synced;

    IF v_changes AND p_sync_type = 'update' THEN
        WITH requeued AS (
            UPDATE audience_member_sync a SET is_synced = false, updated_at = now()
            FROM (SELECT DISTINCT c.person_id FROM change_log c
                  WHERE c.segment_id IS NULL AND c.xid >= v_rehash_from
                    AND NOT COALESCE(pg_visible_in_snapshot(c.xid, v_rehash_seen), false)) c
            WHERE a.audience_id = p_audience_id AND a.person_id = c.person_id
              AND a.is_synced AND NOT a.removal_pending
            RETURNING 1)
        SELECT count(*) INTO v_n FROM requeued;
        v_unsynced := v_unsynced + v_n;
    END IF;

    UPDATE custom_audience
    SET changes_from = pg_snapshot_xmin(v_seen), changes_seen = v_seen,
        full_diff_at = CASE WHEN v_changes THEN full_diff_at ELSE now() END,
        -- A replace re-sends everyone; a change-driven `update` marked its people unsynced,
        -- which lasts until they are sent. (An `update` diffed in full re-hashes in its pass:
        -- the sync sets the horizon when that pass is done, member_store::rehashed.)
        rehash_from = CASE WHEN p_sync_type = 'full' OR (p_sync_type = 'update' AND v_changes)
                           THEN pg_snapshot_xmin(v_seen) ELSE rehash_from END,
        rehash_seen = CASE WHEN p_sync_type = 'full' OR (p_sync_type = 'update' AND v_changes)
                           THEN v_seen ELSE rehash_seen END
    WHERE id = p_audience_id;
    RETURN QUERY SELECT CASE WHEN v_changes THEN 'changes' ELSE 'full' END, v_unsynced;
END
$$
-- The full join and the writes of a first sync handle the whole audience: room for hashing.
SET work_mem = '128MB';

-- The feature document's reconciliation, for other tools (V5's, with the sync type passed on: a
-- `full` one makes the full diff).
CREATE OR REPLACE FUNCTION sync_audience_members(p_audience_id UUID, p_sync_type TEXT DEFAULT 'incremental')
RETURNS TABLE (synced_count INT, failed_count INT)
LANGUAGE plpgsql AS $$
DECLARE
    list UUID := gen_random_uuid();
BEGIN
    IF p_sync_type IS NULL OR p_sync_type NOT IN ('full', 'incremental', 'update') THEN
        RAISE EXCEPTION 'sync type must be full, incremental or update, not %', p_sync_type
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT pg_try_advisory_xact_lock(hashtextextended(p_audience_id::text, 7300)) THEN
        RAISE EXCEPTION 'a sync of audience % is running; try again when it has finished', p_audience_id
            USING ERRCODE = 'lock_not_available';
    END IF;
    PERFORM audience_member_reconcile(p_audience_id, list, p_sync_type);
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
