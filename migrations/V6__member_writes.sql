-- Writing an audience's members at the scale of a million rows a sync.
--
-- 1. The references of audience_member_sync are kept by statement-level triggers instead of
--    FOREIGN KEY constraints. A foreign key checks every inserted row with a locking lookup of
--    its parent (SELECT ... FOR KEY SHARE): two of them made up half of a first sync's insert
--    (measured: 1.9 s of 3.9 s for 200,000 members). Members are only inserted for the joiners
--    the diff found among segment members, by a sync holding the audience's lock (V7 has the
--    diff lock the audience row once), so the insert side needs no check; the delete side keeps
--    its meaning:
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

-- 2. Joiners waiting for their member row. The diff (V7) puts the people who joined the audience
--    here instead of inserting bare member rows; the sync writes each one's row once, with the
--    hashes Meta accepted (or why it could not be sent), and takes it off this list in the same
--    statement. Inserting a bare row and rewriting it with 320 bytes of hashes cost twice the
--    writes (a new row version and new index entries): for a million joiners ~7 s + ~12 s.
--    A person deleted meanwhile is simply never read (the sync joins each joiner to its person);
--    what is left here when a sync finishes is cleared, and the next diff starts afresh.
--    Rows are keyed by the list they belong to (the sync's log row id), not by audience: the rows
--    a sync deleted stay in the index until vacuumed, and a later sync of the audience that
--    paged by audience would walk over all of them on every page.
CREATE TABLE audience_member_joiner (
    list_id     UUID NOT NULL,
    audience_id UUID NOT NULL,
    person_id   UUID NOT NULL,
    PRIMARY KEY (list_id, person_id)
);

-- 3. Time-ordered member ids (UUID version 7: 48 bits of Unix milliseconds, then random bits).
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
