-- Segment engine: what rules over people need to run well, and the segment count's invariant.
-- Every statement tolerates what the wider app may already have created.

-- Trait conditions compiled to containment (`=`, `contains`) and key existence (`exists`) are
-- served by this index.
CREATE INDEX IF NOT EXISTS idx_person_attributes ON person USING GIN (attributes);
-- `created_at` ranges (`within_last_days`, comparisons with a timestamp).
CREATE INDEX IF NOT EXISTS idx_person_created_at ON person (created_at);

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'segment_member_count_nonnegative') THEN
        ALTER TABLE segment ADD CONSTRAINT segment_member_count_nonnegative CHECK (member_count >= 0);
    END IF;
END
$$;
