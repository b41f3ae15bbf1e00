-- SQL helpers of the feature document. Hashing has one definition, in Rust
-- (src/meta/normalize.rs); these functions only read the hashes Rust stored.

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

-- Brings audience_member_sync to the audience's eligible members, set-based:
-- joiners are inserted unsynced; leavers never accepted anywhere are deleted; leavers whose
-- hashes were accepted are flagged removal_pending, so the sync can remove exactly those hashes
-- from Meta before the row goes. A leaver who comes back before that is simply unflagged.
-- One full join of the eligible set with the current members finds the difference (a hash or
-- merge join: its cost follows the audience's size once, not squared); the writes then touch
-- only the difference, so their cost follows churn.
-- Returns the audience's synced and failed member counts after reconciliation.
CREATE FUNCTION sync_audience_members(p_audience_id UUID, p_sync_type TEXT DEFAULT 'incremental')
RETURNS TABLE (synced_count INT, failed_count INT)
LANGUAGE plpgsql AS $$
BEGIN
    IF p_sync_type IS NULL OR p_sync_type NOT IN ('full', 'incremental', 'update') THEN
        RAISE EXCEPTION 'sync type must be full, incremental or update, not %', p_sync_type
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM 1 FROM custom_audience WHERE id = p_audience_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'audience % does not exist', p_audience_id USING ERRCODE = 'no_data_found';
    END IF;

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
    INSERT INTO audience_member_sync (audience_id, person_id)
    SELECT p_audience_id, d.person_id FROM pg_temp.audience_member_diff d
    WHERE d.member_id IS NULL;

    UPDATE audience_member_sync a SET removal_pending = false, updated_at = now()
    FROM pg_temp.audience_member_diff d
    WHERE a.id = d.member_id AND d.person_id IS NOT NULL AND d.removal_pending;

    DELETE FROM audience_member_sync a USING pg_temp.audience_member_diff d
    WHERE a.id = d.member_id AND d.person_id IS NULL AND NOT d.sent;

    UPDATE audience_member_sync a SET removal_pending = true, is_synced = false, updated_at = now()
    FROM pg_temp.audience_member_diff d
    WHERE a.id = d.member_id AND d.person_id IS NULL AND d.sent;

    RETURN QUERY
    SELECT (count(*) FILTER (WHERE m.is_synced))::INT,
           (count(*) FILTER (WHERE m.failure_reason IS NOT NULL))::INT
    FROM audience_member_sync m
    WHERE m.audience_id = p_audience_id AND NOT m.removal_pending;
END
$$
-- The full join and the writes of a first sync handle the whole audience: room for hashing.
SET work_mem = '128MB';

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
