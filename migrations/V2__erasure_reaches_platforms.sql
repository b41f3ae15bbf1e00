-- Erasure and opt-out reach the platforms at every scheduler pass, for every audience (whatever
-- auto_sync or is_active say), not only at each audience's next sync; and a sync resumed after a
-- pause never sends someone who opted out meanwhile. See src/sync/purge.rs.
--
-- What a pass must purge, found without scanning any audience:
-- - erased people: their member rows have no person_id (V1's delete trigger), found through the
--   partial index below, empty but for erasures not yet purged;
-- - opted-out people: queued here by the triggers below, one row per (audience, person) to look
--   at, until the pass has removed what the platform held.

-- Erased people's member rows, by audience, in the id order a purge pages them in.
CREATE INDEX idx_audience_member_sync_erased ON audience_member_sync (audience_id, id)
    WHERE person_id IS NULL;

-- People a purge must look at in an audience: opted out (or erased while a sync of the audience
-- was running, see below). A row is a question, not a verdict: the purge checks the person again
-- (an opt-in since then cancels it) and deletes the row once nothing of the person is left on
-- the platform. No foreign keys: a deleted audience's or person's rows are settled by the purge.
CREATE TABLE audience_member_purge (
    audience_id UUID NOT NULL,
    person_id   UUID NOT NULL,
    queued_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (audience_id, person_id)
);

-- A sync in flight (an in_progress log row: running or paused at a checkpoint) may hold the
-- person as a joiner it has read but not yet written a member row for; its audience is queued
-- too, so the member row it writes is looked at once the sync lets go of the audience. The
-- partial index idx_audience_sync_log_unfinished serves this lookup.
CREATE FUNCTION audience_member_purge_queue(p_person_ids UUID[]) RETURNS VOID
LANGUAGE sql AS $$
    INSERT INTO audience_member_purge (audience_id, person_id)
    SELECT m.audience_id, m.person_id FROM audience_member_sync m
    WHERE m.person_id = ANY(p_person_ids)
    UNION
    SELECT l.audience_id, p.id FROM audience_sync_log l CROSS JOIN UNNEST(p_person_ids) AS p(id)
    WHERE l.status = 'in_progress' AND l.audience_id IS NOT NULL
    ON CONFLICT DO NOTHING
$$;

-- Opt-out: fires only for rows that turn to opted out (the WHEN clause costs an import that
-- changes no consent next to nothing), whoever writes the row: the API, an import, the wider app.
CREATE FUNCTION audience_members_of_opted_out_person() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM audience_member_purge_queue(ARRAY[NEW.id]);
    RETURN NULL;
END
$$;
CREATE TRIGGER person_opt_out_queues_purge AFTER UPDATE OF marketing_opt_out ON person
    FOR EACH ROW WHEN (NEW.marketing_opt_out AND NOT OLD.marketing_opt_out)
    EXECUTE FUNCTION audience_members_of_opted_out_person();

-- Erasure, as in V1 (member rows keep their hashes without a person), plus the queue for the
-- syncs in flight: a joiner read before the erasure gets its member row after it, pointing at a
-- person who no longer exists, and only the queue tells the purge to look at it.
CREATE OR REPLACE FUNCTION audience_members_of_deleted_persons() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE audience_member_sync m SET person_id = NULL, updated_at = now()
    FROM gone g WHERE m.person_id = g.id;
    IF EXISTS (SELECT 1 FROM audience_sync_log WHERE status = 'in_progress') THEN
        PERFORM audience_member_purge_queue(ARRAY(SELECT g.id FROM gone g));
    END IF;
    RETURN NULL;
END
$$;

-- The people of a page a sync reads, as in V1, without those who opted out: a sync paused at a
-- checkpoint and resumed later (its diff is not run again), or one running when the opt-out came,
-- never sends them. A page's member without its person is left out by the sync (see
-- member_store::Page::lines), as for an erased one. Filtering here costs nothing: the page's
-- people are read anyway, where a filter on the page of members would look each one up.
CREATE OR REPLACE FUNCTION audience_page_people(p_ids UUID[])
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
    FROM person p WHERE p.id = ANY(p_ids) AND NOT p.marketing_opt_out ORDER BY p.id;
END
$$;

-- People who opted out before this migration and whose hashes an audience still holds: the
-- first pass removes them.
INSERT INTO audience_member_purge (audience_id, person_id)
SELECT m.audience_id, m.person_id
FROM person p JOIN audience_member_sync m ON m.person_id = p.id
WHERE p.marketing_opt_out AND m.hashes IS NOT NULL
ON CONFLICT DO NOTHING;
