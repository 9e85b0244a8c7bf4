-- Alert rules and the alert lifecycle (see the PostgreSQL migration for comments).
-- `alerts` and `alert_events` are also the tables
-- analysts query (docs/sql-reporting.md describes them).

-- Rules as the API shows them (`spec` is the native RuleSpec JSON).
CREATE TABLE rules (
    id          BLOB        PRIMARY KEY,
    tenant      TEXT        NOT NULL,
    name        TEXT        NOT NULL,
    enabled     INTEGER     NOT NULL,
    severity    TEXT        NOT NULL,
    spec        TEXT        NOT NULL,
    -- Set on the rules created for a tenant on first start.
    is_default  INTEGER     NOT NULL DEFAULT 0,
    -- Grows with every change; the engine reloads its rule cache when the sum moves.
    version     INTEGER      NOT NULL DEFAULT 1,
    created_at  INTEGER     NOT NULL,
    updated_at  INTEGER     NOT NULL
);
CREATE INDEX rules_tenant ON rules (tenant, id);

-- Tenants whose default rules were created once (deleting one does not bring it back).
CREATE TABLE rule_defaults (
    tenant      TEXT        PRIMARY KEY,
    created_at  INTEGER     NOT NULL
);

-- One row per alert episode of one rule instance (rule × group-by label set).
-- Open states: pending, firing, no_data. Closed: resolved, inactive (pending that
-- cleared before it fired).
CREATE TABLE alerts (
    id                     BLOB        PRIMARY KEY,
    tenant                 TEXT        NOT NULL,
    rule_id                BLOB           NOT NULL,
    rule_name              TEXT        NOT NULL,
    severity               TEXT        NOT NULL,
    -- Identity of the instance: hash of rule id and group labels.
    fingerprint            INTEGER      NOT NULL,
    labels                 TEXT        NOT NULL,
    annotations            TEXT        NOT NULL,
    state                  TEXT        NOT NULL,
    value                  REAL,
    threshold              REAL NOT NULL,
    -- The engine's per-instance state (rules::state::InstanceState): the pending
    -- timer a new leaseholder continues from.
    instance               TEXT        NOT NULL,
    -- Compare-and-set: every change is `WHERE version = <read>`, then version + 1.
    version                INTEGER      NOT NULL,
    -- Fencing token of the rules leaseholder that last changed the row: an older
    -- holder's late write is refused.
    fence                  INTEGER      NOT NULL DEFAULT 0,
    started_at             INTEGER     NOT NULL,
    fired_at               INTEGER    ,
    resolved_at            INTEGER    ,
    acknowledged_at        INTEGER    ,
    acknowledged_by        TEXT,
    ack_comment            TEXT,
    -- Kept after resolution (ack fields above are cleared): time to acknowledge.
    first_acknowledged_at  INTEGER    ,
    snoozed_until          INTEGER    ,
    updated_at             INTEGER     NOT NULL
);
-- One open alert per instance, whatever happens to the lease.
CREATE UNIQUE INDEX alerts_one_open ON alerts (tenant, fingerprint)
    WHERE state IN ('pending', 'firing', 'no_data');
CREATE INDEX alerts_tenant_id ON alerts (tenant, id);
CREATE INDEX alerts_tenant_rule ON alerts (tenant, rule_id, started_at);
CREATE INDEX alerts_open ON alerts (state) WHERE state IN ('pending', 'firing', 'no_data');

-- The timeline: every transition and every action, one row each.
CREATE TABLE alert_events (
    id          BLOB        PRIMARY KEY,
    tenant      TEXT        NOT NULL,
    alert_id    BLOB           NOT NULL,
    rule_id     BLOB           NOT NULL,
    -- pending, firing, resolved, no_data, pending_cleared, acknowledged, resolved_by_hand,
    -- snoozed, notification_suppressed
    kind        TEXT        NOT NULL,
    -- State after the event.
    state       TEXT        NOT NULL,
    value       REAL,
    actor       TEXT,
    reason      TEXT        NOT NULL,
    detail      TEXT        NOT NULL,
    at          INTEGER     NOT NULL
);
CREATE INDEX alert_events_alert ON alert_events (tenant, alert_id, at);
CREATE INDEX alert_events_tenant_at ON alert_events (tenant, at);

-- Silences (a fixed time window) and maintenance windows (recurring: weekdays, times,
-- time zone), both with label matchers; matching alerts change state but do not notify.
CREATE TABLE silences (
    id          BLOB        PRIMARY KEY,
    tenant      TEXT        NOT NULL,
    -- silence | maintenance
    kind        TEXT        NOT NULL,
    matchers    TEXT        NOT NULL,
    starts_at   INTEGER     NOT NULL,
    ends_at     INTEGER     NOT NULL,
    -- Maintenance windows: {"weekdays": [...], "start": "HH:MM", "end": "HH:MM", "time_zone": "..."}
    recurrence  TEXT ,
    comment     TEXT        NOT NULL,
    created_by  TEXT        NOT NULL,
    created_at  INTEGER     NOT NULL
);
CREATE INDEX silences_tenant_ends ON silences (tenant, ends_at);
