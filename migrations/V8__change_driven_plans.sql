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
