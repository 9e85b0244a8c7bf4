-- Alert rules and the alert lifecycle. `alerts` and `alert_events` are also the tables
-- analysts query (docs/sql-reporting.md describes them).

-- Rules as the API shows them (`spec` is the native RuleSpec JSON).
CREATE TABLE rules (
    id          UUID        PRIMARY KEY,
    tenant      TEXT        NOT NULL,
    name        TEXT        NOT NULL,
    enabled     BOOLEAN     NOT NULL,
    severity    TEXT        NOT NULL,
    spec        JSONB       NOT NULL,
    -- Set on the rules created for a tenant on first start.
    is_default  BOOLEAN     NOT NULL DEFAULT FALSE,
    -- Grows with every change; the engine reloads its rule cache when the sum moves.
    version     BIGINT      NOT NULL DEFAULT 1,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX rules_tenant ON rules (tenant, id);

-- Tenants whose default rules were created once (deleting one does not bring it back).
CREATE TABLE rule_defaults (
    tenant      TEXT        PRIMARY KEY,
    created_at  TIMESTAMPTZ NOT NULL
);

-- One row per alert episode of one rule instance (rule × group-by label set).
-- Open states: pending, firing, no_data. Closed: resolved, inactive (pending that
-- cleared before it fired).
CREATE TABLE alerts (
    id                     UUID        PRIMARY KEY,
    tenant                 TEXT        NOT NULL,
    rule_id                UUID        NOT NULL,
    rule_name              TEXT        NOT NULL,
    severity               TEXT        NOT NULL,
    -- Identity of the instance: hash of rule id and group labels.
    fingerprint            BIGINT      NOT NULL,
    labels                 JSONB       NOT NULL,
    annotations            JSONB       NOT NULL,
    state                  TEXT        NOT NULL,
    value                  DOUBLE PRECISION,
    threshold              DOUBLE PRECISION NOT NULL,
    -- The engine's per-instance state (rules::state::InstanceState): the pending
    -- timer a new leaseholder continues from.
    instance               JSONB       NOT NULL,
    -- Compare-and-set: every change is `WHERE version = <read>`, then version + 1.
    version                BIGINT      NOT NULL,
    -- Fencing token of the rules leaseholder that last changed the row: an older
    -- holder's late write is refused.
    fence                  BIGINT      NOT NULL DEFAULT 0,
    started_at             TIMESTAMPTZ NOT NULL,
    fired_at               TIMESTAMPTZ,
    resolved_at            TIMESTAMPTZ,
    acknowledged_at        TIMESTAMPTZ,
    acknowledged_by        TEXT,
    ack_comment            TEXT,
    -- Kept after resolution (ack fields above are cleared): time to acknowledge.
    first_acknowledged_at  TIMESTAMPTZ,
    snoozed_until          TIMESTAMPTZ,
    updated_at             TIMESTAMPTZ NOT NULL
);
-- One open alert per instance, whatever happens to the lease.
CREATE UNIQUE INDEX alerts_one_open ON alerts (tenant, fingerprint)
    WHERE state IN ('pending', 'firing', 'no_data');
CREATE INDEX alerts_tenant_id ON alerts (tenant, id);
CREATE INDEX alerts_tenant_rule ON alerts (tenant, rule_id, started_at);
CREATE INDEX alerts_open ON alerts (state) WHERE state IN ('pending', 'firing', 'no_data');

-- The timeline: every transition and every action, one row each.
CREATE TABLE alert_events (
    id          UUID        PRIMARY KEY,
    tenant      TEXT        NOT NULL,
    alert_id    UUID        NOT NULL,
    rule_id     UUID        NOT NULL,
    -- pending, firing, resolved, no_data, pending_cleared, acknowledged, resolved_by_hand,
    -- snoozed, notification_suppressed
    kind        TEXT        NOT NULL,
    -- State after the event.
    state       TEXT        NOT NULL,
    value       DOUBLE PRECISION,
    actor       TEXT,
    reason      TEXT        NOT NULL,
    detail      JSONB       NOT NULL,
    at          TIMESTAMPTZ NOT NULL
);
CREATE INDEX alert_events_alert ON alert_events (tenant, alert_id, at);
CREATE INDEX alert_events_tenant_at ON alert_events (tenant, at);

-- Silences (a fixed time window) and maintenance windows (recurring: weekdays, times,
-- time zone), both with label matchers; matching alerts change state but do not notify.
CREATE TABLE silences (
    id          UUID        PRIMARY KEY,
    tenant      TEXT        NOT NULL,
    -- silence | maintenance
    kind        TEXT        NOT NULL,
    matchers    JSONB       NOT NULL,
    starts_at   TIMESTAMPTZ NOT NULL,
    ends_at     TIMESTAMPTZ NOT NULL,
    -- Maintenance windows: {"weekdays": [...], "start": "HH:MM", "end": "HH:MM", "time_zone": "..."}
    recurrence  JSONB,
    comment     TEXT        NOT NULL,
    created_by  TEXT        NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX silences_tenant_ends ON silences (tenant, ends_at);
