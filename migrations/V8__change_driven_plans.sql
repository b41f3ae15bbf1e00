-- Change-driven syncs at 1,000,000 people (issue 11): plans that follow the change, not the
-- table, and a lighter member row insert. Measured with auto_explain on the bench's database.

-- The person rows of the change log (segment_id IS NULL) since a horizon: what a rule
-- segment's refresh and every audience's diff read. idx_change_log_xid served them by walking
-- every segment row past the horizon too (500,000 of them after a rule segment's first
-- refresh: 120 ms to find nothing).
CREATE INDEX idx_change_log_person_xid ON change_log (xid) WHERE segment_id IS NULL;

-- The joiner lists an abandoned sync left for an audience, which every diff reads and clears:
-- without an index, both were scans of a table that a first sync of 1,000,000 members had
-- filled and emptied (55 ms each, growing with the largest first sync since the last vacuum).
CREATE INDEX idx_audience_member_joiner_audience ON audience_member_joiner (audience_id);

-- Member rows by person alone were looked up only by the two triggers below, once per erased
-- or opted-out person; the index cost every member insert (20-30% of a first sync's inserts,
-- measured per 200,000 rows). The triggers now probe the (audience_id, person_id) key once per
-- audience: a few probes per person, as there are few audiences. Joins by nested loop only: the
-- transition table's size is unknown to the planner, and hashing the members of every audience
-- to erase one person would cost what the index saved.
DROP INDEX idx_audience_member_sync_person_id;

CREATE OR REPLACE FUNCTION audience_members_of_deleted_persons() RETURNS trigger
LANGUAGE plpgsql
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
BEGIN
    UPDATE audience_member_sync m SET person_id = NULL, updated_at = now()
    FROM custom_audience a CROSS JOIN gone g
    WHERE m.audience_id = a.id AND m.person_id = g.id;
    INSERT INTO audience_member_purge (audience_id, person_id)
    SELECT l.audience_id, g.id FROM audience_sync_log l CROSS JOIN gone g
    WHERE l.status = 'in_progress' AND l.audience_id IS NOT NULL
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION audience_members_of_opted_out_person() RETURNS trigger
LANGUAGE plpgsql
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
BEGIN
    INSERT INTO audience_member_purge (audience_id, person_id)
    SELECT m.audience_id, NEW.id FROM custom_audience a
    JOIN audience_member_sync m ON m.audience_id = a.id AND m.person_id = NEW.id
    UNION
    SELECT l.audience_id, NEW.id FROM audience_sync_log l
    WHERE l.status = 'in_progress' AND l.audience_id IS NOT NULL
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

-- The joiner list's statistics are always stale (a sync fills and empties it): with those of a
-- list of 1,000,000 joiners of two audiences, the planner scanned the whole table to find an
-- audience's abandoned joiners (95 ms of a sync with nothing to do). Declared: an audience has
-- few rows here (each value of audience_id about 2 rows, whatever the table holds), so the
-- index above is used. Forcing index scans for the whole diff instead made it worse (it must
-- scan its small temporary tables).
ALTER TABLE audience_member_joiner ALTER COLUMN audience_id SET (n_distinct = -0.5);
ANALYZE audience_member_joiner;

-- The change-driven diff (V6) with its candidates' eligibility asked per candidate; the rest
-- as in V6.
CREATE OR REPLACE FUNCTION audience_member_reconcile(p_audience_id UUID, p_list_id UUID,
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
        -- Eligible as audience_eligible_persons says (a member of the segment who has not
        -- opted out), asked per candidate: one probe of the segment's (segment_id, person_id)
        -- key each (a LATERAL subquery the planner cannot flatten). Through the function, the
        -- segment is known only by a join with the audience, and the planner hashed all of
        -- segment_member (0.9 s at 1,000,000 people) to answer for 20,000 candidates.
        FROM (SELECT c.person_id FROM pg_temp.audience_member_candidates c
              CROSS JOIN LATERAL (SELECT 1 FROM segment_member sm
                                  WHERE sm.segment_id = v_segment AND sm.person_id = c.person_id
                                  OFFSET 0) s
              WHERE NOT EXISTS (SELECT 1 FROM person p
                                WHERE p.id = c.person_id AND p.marketing_opt_out)) e
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
