-- Destinations beyond Meta (issue 12, DESIGN §8.1): an audience names the ad platform its
-- members go to, the account there, and (once its first sync created it) the platform's id of
-- the audience. Meta audiences keep their ids in meta_business_account_id / meta_audience_id, as
-- before; the API mirrors them as destination_account_id / destination_audience_id, so these two
-- columns are only written for the other platforms.
ALTER TABLE custom_audience
    ADD COLUMN destination TEXT NOT NULL DEFAULT 'meta'
        CHECK (destination IN ('meta', 'google', 'linkedin', 'tiktok')),
    ADD COLUMN destination_account_id TEXT,
    ADD COLUMN destination_audience_id TEXT;

-- `GET /api/audiences?destination=X` pages along (created_at, id) within one destination.
CREATE INDEX idx_custom_audience_destination_order
    ON custom_audience (destination, created_at, id);

-- An automatic sync of an audience whose platform lets memberships lapse (Google, TikTok) is a
-- full one when its last completed full sync is too old: that sync's end, read per sync.
CREATE INDEX idx_audience_sync_log_full_completed
    ON audience_sync_log (audience_id, completed_at)
    WHERE sync_type = 'full' AND status = 'completed';
