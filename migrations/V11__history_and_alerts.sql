-- Issue 13 (DESIGN §8.4): each sync's point of history, and alerts delivered once.

-- A sync's point: what it removed, how many members the platform should hold after it, and the
-- platform's size read back after it (NULL where the platform gives none).
ALTER TABLE audience_sync_log
    ADD COLUMN removed_count INT,
    ADD COLUMN members_held INT,
    ADD COLUMN approximate_count_lower_bound BIGINT,
    ADD COLUMN approximate_count_upper_bound BIGINT,
    -- The platform's own match rate when it reports one, else the estimate (0 to 1).
    ADD COLUMN match_rate DOUBLE PRECISION,
    ADD COLUMN operation_status JSONB,
    ADD COLUMN delivery_status JSONB;

-- The history route pages an audience's finished syncs newest first.
CREATE INDEX idx_audience_sync_log_history
    ON audience_sync_log (audience_id, created_at DESC, id DESC)
    WHERE status IN ('completed', 'failed', 'blocked');

-- Alerts waiting to go out (and those gone, for a while): one row per event, whose key makes a
-- second enqueue of the same event a no-op. A channel's flag is cleared once it has the message.
CREATE TABLE alert_outbox (
    id              BIGSERIAL PRIMARY KEY,
    event_key       TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL
        CHECK (kind IN ('sync_failed', 'sync_blocked', 'size_drop', 'health_degraded')),
    audience_id     UUID,
    message         JSONB NOT NULL,
    webhook_pending BOOLEAN NOT NULL,
    sns_pending     BOOLEAN NOT NULL,
    attempts        INT NOT NULL DEFAULT 0,
    -- NULL: nothing left to try (delivered, or given up after the last attempt).
    next_attempt_at TIMESTAMPTZ DEFAULT now(),
    last_error      TEXT,
    delivered_at    TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_alert_outbox_due ON alert_outbox (next_attempt_at)
    WHERE next_attempt_at IS NOT NULL;

-- The last health the scheduler saw (one row): an alert goes out on the turn from ok to bad,
-- not at every pass while it stays bad.
CREATE TABLE alert_health_state (
    id    BOOLEAN PRIMARY KEY DEFAULT true CHECK (id),
    ok    BOOLEAN NOT NULL,
    since TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO alert_health_state (ok) VALUES (true);
