-- Failed and blocked syncs by when they ended: each scheduler pass looks for those of the last
-- hour whose alert was never recorded (the process died between the outcome's commit and the
-- alert, its connection was lost, or the sync was abandoned and a later sync failed its row).
CREATE INDEX idx_audience_sync_log_failed_ended ON audience_sync_log (completed_at)
    WHERE status IN ('failed', 'blocked');
