-- Issue 11: a sync of 1% churn spent most of its diff flagging its leavers.
--
-- A diff made from the changes flagged each leaver's member row `removal_pending`: a new version
-- of a 430-byte row and three index entries each, on whichever page the leaver's row lies (the
-- leavers of real churn are scattered over the audience). Measured at 1,000,000 members, 10,000
-- scattered leavers: 200-300 ms, the largest part of a sync of 1% churn. The row is deleted
-- anyway once the platform has removed it.
--
-- Such a diff now lists its synced leavers, as it lists its joiners (V1), by member id under
-- the sync's list id, in a table of a few ids: ~20 ms for 10,000. The sync removes them from
-- the platform before it adds anything, page by page along the list, and deletes their rows
-- (src/sync/members.rs, remove_leavers). What the platform defers (Meta refuses removals from
-- a small audience) is flagged then, as before, for a later sync to remove. A list a failed
-- sync leaves is read again by the next diff, as the joiners' is: its people are candidates
-- again, found leaving again, and listed anew. A full diff still flags (a replace settles the
-- flagged at its end).
CREATE TABLE audience_member_leaver (
    list_id     UUID NOT NULL,
    audience_id UUID NOT NULL,
    member_id   UUID NOT NULL,
    -- The member's person (none once erased): what the removal guardrails count, and whom the
    -- next diff looks at again if the list is abandoned, without a lookup of each member row.
    person_id   UUID,
    PRIMARY KEY (list_id, member_id)
);
-- The lists an abandoned sync left for an audience, which every diff reads and clears; its
-- statistics are always stale (a sync fills and empties it), declared as V8 declares the
-- joiners'.
CREATE INDEX idx_audience_member_leaver_audience ON audience_member_leaver (audience_id);
ALTER TABLE audience_member_leaver ALTER COLUMN audience_id SET (n_distinct = -0.5);

-- V1's trigger function: deleting an audience also deletes its listed leavers.
CREATE OR REPLACE FUNCTION audience_members_of_deleted_audiences() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM audience_member_sync m USING gone g WHERE m.audience_id = g.id;
    DELETE FROM audience_member_joiner j USING gone g WHERE j.audience_id = g.id;
    DELETE FROM audience_member_leaver l USING gone g WHERE l.audience_id = g.id;
    RETURN NULL;
END
$$;

-- V12's diff, which lists the leavers of a diff made from the changes (and reads the lists of
-- an abandoned sync again); the rest as in V12.
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
        UNION
        -- Leavers listed by an earlier, abandoned sync (V13), whose rows the platform may still
        -- hold: found again (an erased one's row, without a person, is read below anyway).
        SELECT l.person_id FROM audience_member_leaver l
        WHERE l.audience_id = p_audience_id AND l.person_id IS NOT NULL
        -- Stored in person order (V12), so the probes below walk the (segment, person) and
        -- (audience, person) keys in order: 95-100 ms for 20,000 members' rows at 1,000,000,
        -- against 290-660 ms in the order the union left them.
        ORDER BY 1;
        -- A trim that ran meanwhile may have removed rows this read needed: then the full diff.
        v_changes := change_log_covers(v_from, v_full_at)
            AND (p_sync_type IS DISTINCT FROM 'update' OR change_log_covers(v_rehash_from, v_full_at));
        ANALYZE pg_temp.audience_member_candidates;
    END IF;

    -- Joiners and leavers listed by an earlier, abandoned sync: this diff finds them again.
    DELETE FROM audience_member_joiner WHERE audience_id = p_audience_id;
    DELETE FROM audience_member_leaver WHERE audience_id = p_audience_id;

    DROP TABLE IF EXISTS pg_temp.audience_member_diff;
    IF v_changes THEN
        -- The candidates' eligibility and membership by index lookups, and the members left
        -- without a person by an erasure (their person id is gone from them).
        CREATE TEMP TABLE audience_member_diff ON COMMIT DROP AS
        SELECT e.person_id, m.id AS member_id, m.person_id AS member_person_id, m.removal_pending,
               m.sent, m.synced
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
        SELECT e.person_id, m.id AS member_id, m.person_id AS member_person_id, m.removal_pending,
               m.sent, m.synced
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

    -- Synced leavers of a diff made from the changes are listed (V13) for the sync to remove and
    -- then delete, their rows untouched: flagging them rewrote each one's row and three index
    -- entries, wherever the leavers lie in the table (200-300 ms for 10,000 scattered leavers
    -- at 1,000,000 members, against ~20 ms for the list). Being synced, none of them is among
    -- the unsynced members the sync's pass reads while it removes them.
    INSERT INTO audience_member_leaver (list_id, audience_id, member_id, person_id)
    SELECT p_list_id, p_audience_id, d.member_id, d.member_person_id
    FROM pg_temp.audience_member_diff d
    WHERE v_changes AND d.person_id IS NULL AND d.sent AND d.synced
    ORDER BY d.member_id;
    -- The others are flagged: all those of a full diff, as a replace (which settles them all at
    -- once) expects; the few unsynced ones (a failed send) of a diff made from the changes.
    UPDATE audience_member_sync a SET removal_pending = true, is_synced = false, updated_at = now()
    FROM pg_temp.audience_member_diff d
    WHERE a.id = d.member_id AND d.person_id IS NULL AND d.sent AND NOT (v_changes AND d.synced);
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
                                      -- Listed leavers go, not re-sent (V13).
                                      AND NOT EXISTS (SELECT 1 FROM audience_member_leaver l
                                                      WHERE l.list_id = p_list_id AND l.member_id = m.id)
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

-- The feature document's reconciliation, for other tools (V6's): the leavers a diff listed are
-- flagged `removal_pending`, as documented, and their list goes, like the joiners'.
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
    -- And leavers are flagged.
    UPDATE audience_member_sync m SET removal_pending = true, is_synced = false, updated_at = now()
    FROM audience_member_leaver l
    WHERE l.list_id = list AND m.id = l.member_id;
    DELETE FROM audience_member_leaver WHERE list_id = list;
    RETURN QUERY
    SELECT (count(*) FILTER (WHERE m.is_synced))::INT,
           (count(*) FILTER (WHERE m.failure_reason IS NOT NULL))::INT
    FROM audience_member_sync m
    WHERE m.audience_id = p_audience_id AND NOT m.removal_pending;
END
$$;
