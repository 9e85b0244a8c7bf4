-- Notification channels, deliveries (one message to one channel, possibly grouping
-- several outbox rows) and every delivery attempt.

CREATE TABLE channels (
    id          UUID        PRIMARY KEY,
    tenant      TEXT        NOT NULL,
    name        TEXT        NOT NULL,
    -- email | slack | webhook | sms
    type        TEXT        NOT NULL,
    enabled     BOOLEAN     NOT NULL,
    -- Settings that may be shown (host, recipients, URL, format, header names...).
    settings    JSONB       NOT NULL,
    -- Write-only values (passwords, tokens, webhook secret, header values): never
    -- returned by the API.
    secrets     JSONB       NOT NULL,
    templates   JSONB       NOT NULL,
    -- api | config (default channels made from the seed environment variables)
    origin      TEXT        NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    UNIQUE (tenant, name)
);

CREATE TABLE deliveries (
    -- The notification id: webhook-id, Message-ID, stable across retries.
    id               UUID        PRIMARY KEY,
    tenant           TEXT        NOT NULL,
    channel_id       UUID        NOT NULL,
    rule_id          UUID,
    group_key        TEXT        NOT NULL,
    -- firing | resolved | escalation | repeat | test
    kind             TEXT        NOT NULL,
    -- pending | delivered | failed (dead letter) | suppressed | cancelled
    status           TEXT        NOT NULL,
    -- When the next attempt is due (group_wait, retry backoff, escalation delay).
    due_at           TIMESTAMPTZ NOT NULL,
    attempts         INTEGER     NOT NULL DEFAULT 0,
    -- The replica working on it, and until when its claim holds.
    claimed_by       TEXT,
    claim_id         UUID,
    claimed_until    TIMESTAMPTZ,
    -- Re-notify a still-firing alert after this many milliseconds.
    repeat_every_ms  BIGINT,
    last_error       TEXT,
    last_status_code INTEGER,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    finished_at      TIMESTAMPTZ
);
CREATE INDEX deliveries_due ON deliveries (due_at) WHERE status = 'pending';
CREATE INDEX deliveries_tenant_id ON deliveries (tenant, id);
CREATE INDEX deliveries_open_group ON deliveries (tenant, channel_id, group_key, kind)
    WHERE status = 'pending' AND attempts = 0;

CREATE TABLE delivery_attempts (
    id           UUID        PRIMARY KEY,
    tenant       TEXT        NOT NULL,
    delivery_id  UUID        NOT NULL,
    attempt      INTEGER     NOT NULL,
    at           TIMESTAMPTZ NOT NULL,
    -- delivered | retry | failed
    outcome      TEXT        NOT NULL,
    status_code  INTEGER,
    error        TEXT,
    duration_ms  BIGINT      NOT NULL,
    replica      TEXT        NOT NULL
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (tenant, delivery_id, attempt);

-- Outbox rows become the items of deliveries.
ALTER TABLE outbox ADD COLUMN delivery_id UUID;
-- queued | throttled | suppressed (at send time, with the reason) | cancelled
ALTER TABLE outbox ADD COLUMN status TEXT NOT NULL DEFAULT 'queued';
ALTER TABLE outbox ADD COLUMN reason TEXT;
CREATE INDEX outbox_delivery ON outbox (delivery_id);
CREATE INDEX outbox_rule_recent ON outbox (tenant, rule_id, created_at);
