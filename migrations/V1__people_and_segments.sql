-- The tables audiences are fed from. In a larger deployment they belong to the wider app, so
-- every statement tolerates an existing table. Contact columns hold data as the app stored it:
-- no CHECK constraints here, normalization happens when hashing.
CREATE EXTENSION IF NOT EXISTS pgcrypto;

CREATE TABLE IF NOT EXISTS person (
    id                UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    external_id       TEXT UNIQUE,
    email             TEXT,
    phone             TEXT,
    first_name        TEXT,
    last_name         TEXT,
    city              TEXT,
    state             TEXT,
    zip               TEXT,
    country           TEXT,
    date_of_birth     DATE,
    gender            TEXT,
    attributes        JSONB NOT NULL DEFAULT '{}'::jsonb,
    marketing_opt_out BOOLEAN NOT NULL DEFAULT false,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS segment (
    id           UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name         TEXT NOT NULL UNIQUE,
    description  TEXT,
    rule         JSONB,
    member_count INT NOT NULL DEFAULT 0,
    refreshed_at TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS segment_member (
    segment_id UUID NOT NULL REFERENCES segment (id) ON DELETE CASCADE,
    person_id  UUID NOT NULL REFERENCES person (id) ON DELETE CASCADE,
    added_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (segment_id, person_id)
);
-- The primary key serves segment -> persons; this one serves "which segments is a person in".
CREATE INDEX IF NOT EXISTS idx_segment_member_person_id ON segment_member (person_id);
-- The people who opted out: audiences leave them out (see audience_eligible_persons).
CREATE INDEX IF NOT EXISTS idx_person_marketing_opt_out ON person (id) WHERE marketing_opt_out;
