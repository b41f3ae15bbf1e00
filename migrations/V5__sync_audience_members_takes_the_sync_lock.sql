-- sync_audience_members() (the feature document's reconciliation, for other tools) wrote an
-- audience's members while the service's own sync of it could be running: both write the same
-- member rows, and the sync would then mark rows it had not diffed. It now takes the audience's
-- sync lock (the advisory lock src/sync/lock.rs holds for a whole sync: same key), for its
-- transaction, and refuses at once while a sync holds it; a sync that starts meanwhile finds the
-- audience busy (409) until the transaction ends.
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
