-- Notification outbox: one row per (alert transition, channel), written by the rule
-- engine in the same transaction as the transition; consumed by the notify workers.
-- (Channels, deliveries and attempts are added by the notifications work.)
CREATE TABLE outbox (
    id            UUID        PRIMARY KEY,
    tenant        TEXT        NOT NULL,
    alert_id      UUID        NOT NULL,
    rule_id       UUID        NOT NULL,
    channel_id    TEXT        NOT NULL,
    -- firing | resolved
    kind          TEXT        NOT NULL,
    -- The alert as notify::message::AlertSummary at transition time.
    alert         JSONB       NOT NULL,
    -- Alerts with the same group key and channel may go out in one message.
    group_key     TEXT        NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    -- Set once a worker has turned the row into a delivery.
    processed_at  TIMESTAMPTZ
);
CREATE INDEX outbox_unprocessed ON outbox (created_at) WHERE processed_at IS NULL;
CREATE INDEX outbox_alert ON outbox (tenant, alert_id);
