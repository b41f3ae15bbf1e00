-- Incremental syncs at a million members: what they read must follow the churn, not the audience.

-- The members an incremental sync sends (joiners and earlier failures), by the keyset the sync
-- pages them in; without it each incremental sync walked every member to find the few unsynced.
CREATE INDEX idx_audience_member_sync_unsynced ON audience_member_sync (audience_id, person_id)
    WHERE NOT is_synced AND NOT removal_pending;

-- The membership diff of sync_audience_members (V3), as the sync engine uses it: joiners go to
-- audience_member_joiner (V6) for the sync to write their rows once, with hashes; leavers are
-- flagged or deleted as before; no counts (the sync counts what it did itself, so it scans the
-- audience once, not twice). The audience row is locked as a foreign key check would (V6 dropped
-- those); joiners are listed in person order, as the primary key wants them.
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
SET work_mem = '128MB';

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
