-- Notification channels, deliveries and attempts (see the PostgreSQL migration).

CREATE TABLE channels (
    id          BLOB    PRIMARY KEY,
    tenant      TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    type        TEXT    NOT NULL,
    enabled     INTEGER NOT NULL,
    settings    TEXT    NOT NULL,
    secrets     TEXT    NOT NULL,
    templates   TEXT    NOT NULL,
    origin      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (tenant, name)
);

CREATE TABLE deliveries (
    id               BLOB    PRIMARY KEY,
    tenant           TEXT    NOT NULL,
    channel_id       BLOB    NOT NULL,
    rule_id          BLOB,
    group_key        TEXT    NOT NULL,
    kind             TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    due_at           INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    claimed_by       TEXT,
    claim_id         BLOB,
    claimed_until    INTEGER,
    repeat_every_ms  INTEGER,
    last_error       TEXT,
    last_status_code INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    finished_at      INTEGER
);
CREATE INDEX deliveries_due ON deliveries (due_at) WHERE status = 'pending';
CREATE INDEX deliveries_tenant_id ON deliveries (tenant, id);
CREATE INDEX deliveries_open_group ON deliveries (tenant, channel_id, group_key, kind)
    WHERE status = 'pending' AND attempts = 0;

CREATE TABLE delivery_attempts (
    id           BLOB    PRIMARY KEY,
    tenant       TEXT    NOT NULL,
    delivery_id  BLOB    NOT NULL,
    attempt      INTEGER NOT NULL,
    at           INTEGER NOT NULL,
    outcome      TEXT    NOT NULL,
    status_code  INTEGER,
    error        TEXT,
    duration_ms  INTEGER NOT NULL,
    replica      TEXT    NOT NULL
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (tenant, delivery_id, attempt);

ALTER TABLE outbox ADD COLUMN delivery_id BLOB;
ALTER TABLE outbox ADD COLUMN status TEXT NOT NULL DEFAULT 'queued';
ALTER TABLE outbox ADD COLUMN reason TEXT;
CREATE INDEX outbox_delivery ON outbox (delivery_id);
CREATE INDEX outbox_rule_recent ON outbox (tenant, rule_id, created_at);
