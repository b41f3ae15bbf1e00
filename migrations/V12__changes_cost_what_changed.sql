-- Issue 11: two costs of a sync of a few changes that grew with the audience.
--
-- 1. A manual segment's member count moved by the deltas that the triggers logging its
-- membership changes now also record, so a sync no longer counts the whole segment again
-- whenever one of its memberships changed (0.3-0.5 s at 1,000,000 members: most of a sync of
-- one change, a third of one of 1% churn). A rule segment's count stays its refresh's business
-- (the refresh knows what it joined and removed): no deltas for rule segments.
--
-- The deltas are rows, one per statement and segment, not an update of the segment's row: an
-- update would hold the row until commit, and every other writer of the segment's memberships
-- (an outside tool's long transaction, our importer) would queue behind it. A refresh of the
-- segment (every sync runs one) folds the committed deltas into the count (src/segment/
-- store.rs, recount); deltas of transactions still open stay for the next one. What bypasses
-- the triggers (a TRUNCATE, triggers disabled, a restore) is put right by the full recount,
-- which still runs whenever the change log does not cover the segment: at least daily, and
-- after a TRUNCATE or a trim past its horizon; it consumes the deltas its count includes.
CREATE TABLE segment_member_count_delta (
    segment_id UUID NOT NULL REFERENCES segment (id) ON DELETE CASCADE,
    delta      BIGINT NOT NULL
);
CREATE INDEX idx_segment_member_count_delta ON segment_member_count_delta (segment_id);

-- V6's trigger function, which also records the deltas of manual segments.
CREATE OR REPLACE FUNCTION change_log_segment_member_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO change_log (person_id, segment_id) SELECT n.person_id, n.segment_id FROM new_rows n;
        INSERT INTO segment_member_count_delta (segment_id, delta)
        SELECT n.segment_id, count(*) FROM new_rows n
        JOIN segment s ON s.id = n.segment_id AND s.rule IS NULL GROUP BY 1;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO change_log (person_id, segment_id) SELECT o.person_id, o.segment_id FROM old_rows o;
        -- A segment being deleted takes its deltas with it (the join finds no row for it).
        INSERT INTO segment_member_count_delta (segment_id, delta)
        SELECT o.segment_id, -count(*) FROM old_rows o
        JOIN segment s ON s.id = o.segment_id AND s.rule IS NULL GROUP BY 1;
    ELSE
        INSERT INTO change_log (person_id, segment_id)
        (SELECT n.person_id, n.segment_id FROM new_rows n
         EXCEPT ALL SELECT o.person_id, o.segment_id FROM old_rows o)
        UNION ALL
        (SELECT o.person_id, o.segment_id FROM old_rows o
         EXCEPT ALL SELECT n.person_id, n.segment_id FROM new_rows n);
        -- A membership moved to another segment counts down in one and up in the other.
        INSERT INTO segment_member_count_delta (segment_id, delta)
        SELECT x.segment_id, sum(x.k)
        FROM (SELECT n.segment_id, 1 AS k FROM new_rows n
              UNION ALL SELECT o.segment_id, -1 FROM old_rows o) x
        JOIN segment s ON s.id = x.segment_id AND s.rule IS NULL
        GROUP BY 1 HAVING sum(x.k) <> 0;
    END IF;
    RETURN NULL;
END
$$;

-- Counts moved from here on start from an exact one: each manual segment's next refresh counts
-- it in full (no full pass on record).
UPDATE segment SET full_refresh_at = NULL WHERE rule IS NULL;

-- 2. V10's diff, its candidates (the people the change log names) stored in person order, and
-- their member rows (and, for an `update`, the changed people's) found by one probe of the
-- (audience, person) key each whatever the statistics say; the rest as in V10.
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
    v_holdout INT;
    v_changes BOOLEAN;
    v_unsynced BIGINT := 0;
    v_n BIGINT;
BEGIN
    -- The lock a foreign key check would take, once: the audience cannot be deleted (and its
    -- members with it) while this transaction inserts members for it.
    SELECT a.changes_from, a.changes_seen, a.rehash_from, a.rehash_seen, a.full_diff_at, a.segment_id,
           a.holdout_percent
    INTO v_from, v_seen_before, v_rehash_from, v_rehash_seen, v_full_at, v_segment, v_holdout
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
        SELECT j.person_id FROM audience_member_joiner j WHERE j.audience_id = p_audience_id
        -- Stored in person order (V12), so the probes below walk the (segment, person) and
        -- (audience, person) keys in order: 95-100 ms for 20,000 members' rows at 1,000,000,
        -- against 290-660 ms in the order the union left them.
        ORDER BY 1;
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
        -- opted out and is not held out), asked per candidate: one probe of the segment's (segment_id, person_id)
        -- key each (a LATERAL subquery the planner cannot flatten). Through the function, the
        -- segment is known only by a join with the audience, and the planner hashed all of
        -- segment_member (0.9 s at 1,000,000 people) to answer for 20,000 candidates.
        FROM (SELECT c.person_id FROM pg_temp.audience_member_candidates c
              CROSS JOIN LATERAL (SELECT 1 FROM segment_member sm
                                  WHERE sm.segment_id = v_segment AND sm.person_id = c.person_id
                                  OFFSET 0) s
              WHERE NOT EXISTS (SELECT 1 FROM person p
                                WHERE p.id = c.person_id AND p.marketing_opt_out)
                -- Not in the audience's holdout (V10).
                AND (v_holdout = 0 OR audience_holdout_bucket(p_audience_id, c.person_id) >= v_holdout)) e
        -- The candidates' member rows likewise, one probe of the (audience, person) key each.
        FULL JOIN (SELECT a.id, a.person_id, a.removal_pending, a.hashes IS NOT NULL AS sent, a.is_synced AS synced
                   FROM pg_temp.audience_member_candidates c
                   CROSS JOIN LATERAL (SELECT m.* FROM audience_member_sync m
                                       WHERE m.audience_id = p_audience_id AND m.person_id = c.person_id
                                       OFFSET 0) a
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
        -- One probe of the (audience, person) key per changed person, then an update by address,
        -- whatever the statistics say (V12). As a join, planned with the statistics of a member
        -- table a first sync had just filled (they still described it empty) and of the change
        -- log (one row expected), the plan walked the changed people once per member: an `update`
        -- sync right after a first sync of 1,000,000 hit the 300 s statement timeout.
        WITH requeued AS (
            UPDATE audience_member_sync a SET is_synced = false, updated_at = now()
            WHERE a.ctid = ANY(ARRAY(
                SELECT x.ctid
                FROM (SELECT DISTINCT c.person_id FROM change_log c
                      WHERE c.segment_id IS NULL AND c.xid >= v_rehash_from
                        AND NOT COALESCE(pg_visible_in_snapshot(c.xid, v_rehash_seen), false)) c
                CROSS JOIN LATERAL (SELECT m.ctid FROM audience_member_sync m
                                    WHERE m.audience_id = p_audience_id AND m.person_id = c.person_id
                                      AND m.is_synced AND NOT m.removal_pending
                                    OFFSET 0) x))
            RETURNING 1)
        SELECT count(*) INTO v_n FROM requeued;
        v_unsynced := v_unsynced + v_n;
    END IF;

    UPDATE custom_audience
    -- A new percentage (or segment) saved while this diff ran (saving it does not wait for
    -- the FOR KEY SHARE lock taken above) was not applied by it: no horizon then, so the next
    -- diff is full (V10).
    SET changes_from = CASE WHEN holdout_percent IS DISTINCT FROM v_holdout
                              OR segment_id IS DISTINCT FROM v_segment
                            THEN NULL ELSE pg_snapshot_xmin(v_seen) END,
        changes_seen = v_seen,
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
