-- Writing an audience's members at the scale of a million rows a sync.
--
-- 1. The references of audience_member_sync are kept by statement-level triggers instead of
--    FOREIGN KEY constraints. A foreign key checks every inserted row with a locking lookup of
--    its parent (SELECT ... FOR KEY SHARE): two of them made up half of a first sync's insert
--    (measured: 1.9 s of 3.9 s for 200,000 members). Members are only inserted by
--    sync_audience_members, from segment members, after locking the audience row (V6 below), so
--    the insert side needs no check; the delete side keeps its meaning:
--    - deleting an audience deletes its members (was ON DELETE CASCADE);
--    - deleting a person leaves its member rows without person_id (was ON DELETE SET NULL), so
--      the next sync removes the hashes it holds from Meta.
--    A person deleted in the instant between a sync's diff and its insert would leave a row
--    pointing nowhere: it is never sent (the sync reads members joined to their person) and the
--    next diff, not finding it eligible, deletes it.
ALTER TABLE audience_member_sync DROP CONSTRAINT IF EXISTS audience_member_sync_audience_id_fkey;
ALTER TABLE audience_member_sync DROP CONSTRAINT IF EXISTS audience_member_sync_person_id_fkey;

CREATE FUNCTION audience_members_of_deleted_audiences() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM audience_member_sync m USING gone g WHERE m.audience_id = g.id;
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

-- 2. Time-ordered member ids (UUID version 7: 48 bits of Unix milliseconds, then random bits).
--    Random ids scatter a million primary-key insertions over the whole index; ordered ones go
--    to its right edge (measured: the primary key cost 300 ms per 200,000 rows with random ids).
--    One expression (so PostgreSQL inlines it): the random id's first 7 bytes are overwritten by
--    the timestamp and the version byte 0x70 (the 4 random bits after the version are zero).
CREATE FUNCTION audience_member_new_id() RETURNS UUID
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT encode(
        overlay(uuid_send(gen_random_uuid())
                PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::BIGINT) FROM 3)
                        || '\x70'::BYTEA
                FROM 1 FOR 7),
        'hex')::UUID
$$;
ALTER TABLE audience_member_sync ALTER COLUMN id SET DEFAULT audience_member_new_id();

-- 3. sync_audience_members as in V3, with the audience locked as the foreign key did, and the
--    joiners inserted in person order.
CREATE OR REPLACE FUNCTION sync_audience_members(p_audience_id UUID, p_sync_type TEXT DEFAULT 'incremental')
RETURNS TABLE (synced_count INT, failed_count INT)
LANGUAGE plpgsql AS $$
BEGIN
    IF p_sync_type IS NULL OR p_sync_type NOT IN ('full', 'incremental', 'update') THEN
        RAISE EXCEPTION 'sync type must be full, incremental or update, not %', p_sync_type
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The lock a foreign key check would take, once: the audience cannot be deleted (and its
    -- members with it) while this transaction inserts members for it.
    PERFORM 1 FROM custom_audience WHERE id = p_audience_id FOR KEY SHARE;
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
    -- In person order, as the unique (audience_id, person_id) index wants them.
    INSERT INTO audience_member_sync (audience_id, person_id)
    SELECT p_audience_id, d.person_id FROM pg_temp.audience_member_diff d
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

    RETURN QUERY
    SELECT (count(*) FILTER (WHERE m.is_synced))::INT,
           (count(*) FILTER (WHERE m.failure_reason IS NOT NULL))::INT
    FROM audience_member_sync m
    WHERE m.audience_id = p_audience_id AND NOT m.removal_pending;
END
$$
-- The full join and the writes of a first sync handle the whole audience: room for hashing.
SET work_mem = '128MB';
