-- Issue 13 (DESIGN §8.4): removal guardrails, value-based audiences and holdouts are settings of
-- an audience; a blocked sync is a sync log status of its own.

ALTER TABLE custom_audience
    -- A sync that would remove more than this share of what the platform holds stops before
    -- any platform call (NULL: no limit).
    ADD COLUMN max_removal_percent INT DEFAULT 50
        CHECK (max_removal_percent BETWEEN 1 AND 100),
    -- ... or that would leave fewer members than this.
    ADD COLUMN min_members INT NOT NULL DEFAULT 0 CHECK (min_members >= 0),
    -- A numeric trait: the Meta customer list is value-based, each row carrying its value.
    ADD COLUMN value_attribute TEXT,
    -- This share of the eligible members is held out, never sent (lift measurement).
    ADD COLUMN holdout_percent INT NOT NULL DEFAULT 0 CHECK (holdout_percent BETWEEN 0 AND 50);

ALTER TABLE audience_sync_log DROP CONSTRAINT audience_sync_log_status_check;
ALTER TABLE audience_sync_log ADD CONSTRAINT audience_sync_log_status_check
    CHECK (status IN ('pending', 'in_progress', 'completed', 'failed', 'blocked'));

-- A person's holdout bucket in an audience, 0 to 99: stable for the pair, independent between
-- audiences. A person is held out while bucket < holdout_percent, so raising the percentage only
-- adds people to the holdout and lowering it only releases them.
CREATE FUNCTION audience_holdout_bucket(p_audience_id UUID, p_person_id UUID) RETURNS INT
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT (('x' || substr(md5(uuid_send(p_audience_id) || uuid_send(p_person_id)), 1, 8))::BIT(32)::BIGINT % 100)::INT
$$;
