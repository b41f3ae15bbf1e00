-- The scheduler: a short claim per audience so concurrent passes share the due audiences, and a
-- checkpoint per sync log row so a sync too large for one invocation resumes in the next.

-- added: held by a scheduler pass that took the audience; expires on its own if the pass dies
ALTER TABLE custom_audience ADD COLUMN sync_claimed_until TIMESTAMPTZ;
-- added: when the last sync started, successful or not (failed syncs are retried sooner)
ALTER TABLE custom_audience ADD COLUMN last_attempted_at TIMESTAMPTZ;

-- added: where an unfinished sync stands (replace session, batch, cursor); NULL once finished
ALTER TABLE audience_sync_log ADD COLUMN checkpoint JSONB;
-- added: how many times the sync was picked up again after a pause or a crash
ALTER TABLE audience_sync_log ADD COLUMN resumed_count INT NOT NULL DEFAULT 0;

CREATE INDEX idx_custom_audience_due ON custom_audience (last_synced_at NULLS FIRST)
    WHERE is_active AND auto_sync;
CREATE INDEX idx_audience_sync_log_unfinished ON audience_sync_log (audience_id)
    WHERE status = 'in_progress';
