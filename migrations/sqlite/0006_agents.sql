-- Monitoring agents (see the PostgreSQL migration for the model). Times are integer
-- milliseconds, JSON is text.

CREATE TABLE agents (
    tenant           TEXT    NOT NULL,
    id               TEXT    NOT NULL,
    provider         TEXT,
    region           TEXT,
    hostname         TEXT,
    version          TEXT,
    labels           TEXT    NOT NULL,
    capabilities     TEXT    NOT NULL,
    config           TEXT    NOT NULL,
    config_version   INTEGER NOT NULL DEFAULT 0,
    status           TEXT    NOT NULL,
    health           TEXT,
    health_details   TEXT,
    session_id       TEXT,
    replica_id       TEXT,
    connected_until  INTEGER,
    connected_at     INTEGER,
    disconnected_at  INTEGER,
    last_seen_at     INTEGER,
    registered_at    INTEGER,
    created_at       INTEGER NOT NULL,
    batches_total    INTEGER NOT NULL DEFAULT 0,
    samples_total    INTEGER NOT NULL DEFAULT 0,
    rejected_total   INTEGER NOT NULL DEFAULT 0,
    last_batch_at    INTEGER,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX agents_tenant_status ON agents (tenant, status, id);
CREATE INDEX agents_presence ON agents (connected_until) WHERE status = 'connected';
CREATE INDEX agents_replica ON agents (replica_id) WHERE replica_id IS NOT NULL;
