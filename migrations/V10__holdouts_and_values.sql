-- Holdouts (issue 13, DESIGN §8.4): a share of an audience's eligible members, chosen by
-- audience_holdout_bucket (V9), is never sent, so a campaign's lift can be measured against
-- them. Being held out is one more condition of eligibility, so both ways the diff asks it
-- change: audience_eligible_persons (V1, the full diff) and the per-candidate path of
-- audience_member_reconcile (V8). Everything else is as before. A change of the percentage
-- clears the audience's horizon (audience::store::update), so the next diff is a full one: the
-- change-driven path looks only at people changed since, not at those the new percentage moves.
-- Also the people of a sync's page with the value a value-based audience sends (issue 13).

-- Eligible members of an audience: its segment's members who have not opted out and are not
-- held out. (V1's, plus the holdout; a percentage of 0 asks nothing of the bucket.)
CREATE OR REPLACE FUNCTION audience_eligible_persons(p_audience_id UUID) RETURNS TABLE (person_id UUID)
LANGUAGE sql STABLE AS $$
    SELECT sm.person_id
    FROM custom_audience a
    JOIN segment_member sm ON sm.segment_id = a.segment_id
    WHERE a.id = p_audience_id
      -- Against the few who opted out (a partial index), not a join with every person.
      AND NOT EXISTS (SELECT 1 FROM person p WHERE p.id = sm.person_id AND p.marketing_opt_out)
      AND (a.holdout_percent = 0 OR audience_holdout_bucket(a.id, sm.person_id) >= a.holdout_percent)
$$;

-- The change-driven diff of V8, with the holdout in the per-candidate eligibility (the full
-- diff gets it from audience_eligible_persons above); the rest as in V8.
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

-- The people of a sync's page as V2's audience_page_people gives them, plus `value`: for a
-- value-based audience (custom_audience.value_attribute set) the text of that trait, '' when
-- the person has none; NULL when the audience is not value-based. Meta's row (MetaRow) turns
-- it into LOOKALIKE_VALUE or a failure reason. Read here, once a page, so the audience's
-- setting and its people's values come from one place.
CREATE FUNCTION audience_page_people(p_ids UUID[], p_audience_id UUID)
RETURNS TABLE (id UUID, email TEXT, phone TEXT, first_name TEXT, last_name TEXT, city TEXT,
               state TEXT, zip TEXT, country TEXT, date_of_birth DATE, gender TEXT, value TEXT)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
SET work_mem = '64MB'
AS $$
DECLARE
    v_attribute TEXT;
BEGIN
    SELECT a.value_attribute INTO v_attribute FROM custom_audience a WHERE a.id = p_audience_id;
    RETURN QUERY
    -- Cast: the wider app's person table may use other text types (varchar) than ours.
    SELECT p.id, p.email::TEXT, p.phone::TEXT, p.first_name::TEXT, p.last_name::TEXT,
           p.city::TEXT, p.state::TEXT, p.zip::TEXT, p.country::TEXT, p.date_of_birth::DATE,
           p.gender::TEXT,
           CASE WHEN v_attribute IS NOT NULL THEN COALESCE(p.attributes ->> v_attribute, '') END
    FROM person p WHERE p.id = ANY(p_ids) AND NOT p.marketing_opt_out ORDER BY p.id;
END
$$;

-- A value-based Meta member's stored row is its 320 bytes of hashes plus its value (8 bytes):
-- so a new value is a changed row (see src/destinations/meta/row.rs). Checked without a long
-- lock: NOT VALID takes the constraint at once, VALIDATE scans under a lighter lock.
ALTER TABLE audience_member_sync DROP CONSTRAINT audience_member_sync_hashes_check;
ALTER TABLE audience_member_sync ADD CONSTRAINT audience_member_sync_hashes_check
    CHECK (hashes IS NULL OR octet_length(hashes) IN (320, 328)) NOT VALID;
ALTER TABLE audience_member_sync VALIDATE CONSTRAINT audience_member_sync_hashes_check;
