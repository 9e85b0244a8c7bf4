-- Notification outbox (see the PostgreSQL migration).
CREATE TABLE outbox (
    id            BLOB    PRIMARY KEY,
    tenant        TEXT    NOT NULL,
    alert_id      BLOB    NOT NULL,
    rule_id       BLOB    NOT NULL,
    channel_id    TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    alert         TEXT    NOT NULL,
    group_key     TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    processed_at  INTEGER
);
CREATE INDEX outbox_unprocessed ON outbox (created_at) WHERE processed_at IS NULL;
CREATE INDEX outbox_alert ON outbox (tenant, alert_id);
