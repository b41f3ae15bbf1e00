-- META-007 tables, columns as in the feature document, plus the columns the Meta sync needs
-- (marked "added").
CREATE TABLE custom_audience (
    id                       UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name                     TEXT NOT NULL UNIQUE CHECK (char_length(name) BETWEEN 1 AND 200),
    description              TEXT,
    meta_audience_id         TEXT,
    meta_business_account_id TEXT,
    -- A segment that feeds an audience cannot be deleted from under it.
    segment_id               UUID REFERENCES segment (id) ON DELETE RESTRICT,
    audience_type            TEXT NOT NULL DEFAULT 'custom_list'
                             CHECK (audience_type IN ('custom_list', 'lookalike', 'engagement')),
    lookalike_country        TEXT CHECK (lookalike_country ~ '^[A-Z]{2}$'),
    lookalike_percentage     INT CHECK (lookalike_percentage BETWEEN 1 AND 10),
    auto_sync                BOOLEAN NOT NULL DEFAULT false,
    sync_interval_hours      INT NOT NULL DEFAULT 24 CHECK (sync_interval_hours BETWEEN 1 AND 8760),
    last_synced_at           TIMESTAMPTZ,
    is_active                BOOLEAN NOT NULL DEFAULT true,
    status                   TEXT NOT NULL DEFAULT 'pending'
                             CHECK (status IN ('pending', 'syncing', 'active', 'failed')),
    total_synced             INT NOT NULL DEFAULT 0,
    sync_error_message       TEXT,
    created_at               TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at               TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- added: the pixel rule of an engagement audience ({pixel_id, event, retention_days})
    rule                     JSONB,
    -- added: the customer-list seed a lookalike is built from, created by the first sync
    meta_seed_audience_id    TEXT,
    -- added: Meta's size and status as read at the last sync (served by include=metrics)
    meta_metrics             JSONB,
    CONSTRAINT custom_audience_lookalike_fields CHECK (
        audience_type <> 'lookalike'
        OR (segment_id IS NOT NULL AND lookalike_country IS NOT NULL AND lookalike_percentage IS NOT NULL)),
    CONSTRAINT custom_audience_engagement_rule CHECK (audience_type <> 'engagement' OR rule IS NOT NULL)
);

CREATE INDEX idx_custom_audience_is_active ON custom_audience (is_active);
CREATE INDEX idx_custom_audience_segment_id ON custom_audience (segment_id);
CREATE INDEX idx_custom_audience_meta_audience_id ON custom_audience (meta_audience_id);
CREATE INDEX idx_custom_audience_status ON custom_audience (status);
CREATE INDEX idx_custom_audience_last_synced_at ON custom_audience (last_synced_at);

CREATE TABLE audience_member_sync (
    id             UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Membership is state of the audience: it goes with it.
    audience_id    UUID NOT NULL REFERENCES custom_audience (id) ON DELETE CASCADE,
    -- An erased person leaves a row without person_id behind, holding only the hashes Meta was
    -- sent, so the next sync can remove exactly those from Meta.
    person_id      UUID REFERENCES person (id) ON DELETE SET NULL,
    is_synced      BOOLEAN NOT NULL DEFAULT false,
    synced_at      TIMESTAMPTZ,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- added: the hashed row (10 x 32 bytes, SCHEMA order, zeros = empty) last accepted; never raw PII
    hashes         BYTEA CHECK (hashes IS NULL OR octet_length(hashes) = 320),
    -- added: why this member is not synced (no usable identifier, rejected by Meta)
    failure_reason TEXT,
    -- added: the member left the segment (or opted out, or was erased) and its hashes must still
    -- be removed from Meta
    removal_pending BOOLEAN NOT NULL DEFAULT false,
    -- Also the keyset index the sync pages an audience's members by.
    UNIQUE (audience_id, person_id)
);
-- Members still to be removed from Meta, paged in id order (they may have no person any more).
CREATE INDEX idx_audience_member_sync_removal_pending ON audience_member_sync (audience_id, id)
    WHERE removal_pending;
CREATE INDEX idx_audience_member_sync_person_id ON audience_member_sync (person_id);

CREATE TABLE audience_sync_log (
    id            UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    -- The log is an audit trail: it outlives the audience it describes.
    audience_id   UUID REFERENCES custom_audience (id) ON DELETE SET NULL,
    sync_type     TEXT NOT NULL CHECK (sync_type IN ('full', 'incremental', 'update')),
    synced_count  INT NOT NULL DEFAULT 0,
    failed_count  INT NOT NULL DEFAULT 0,
    status        TEXT NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'in_progress', 'completed', 'failed')),
    error_message TEXT,
    started_at    TIMESTAMPTZ,
    completed_at  TIMESTAMPTZ,
    meta_response JSONB,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- added: what the sync did to membership (joined, left, changed, removed, no_identifier, ...)
    details       JSONB
);

CREATE INDEX idx_audience_sync_log_audience_id ON audience_sync_log (audience_id);
CREATE INDEX idx_audience_sync_log_status ON audience_sync_log (status);
CREATE INDEX idx_audience_sync_log_created_at ON audience_sync_log (created_at);
