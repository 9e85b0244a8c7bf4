-- Monitoring agents: one row per (tenant, agent id), the registry behind /api/v1/agents.
--
-- Presence lives here too (not only in Redis) so that the registry can filter and page by
-- status in one query, in both modes. The replica holding an agent's socket keeps
-- `connected_until` ahead of now (refreshed every third of the presence TTL); any replica
-- marks a row whose time ran out disconnected, so a killed replica's agents turn
-- disconnected within one TTL. `session_id` names the socket that owns the row, so a
-- late close of an older socket never marks a reconnected agent disconnected.

CREATE TABLE agents (
    tenant           TEXT        NOT NULL,
    id               TEXT        NOT NULL,
    provider         TEXT,
    region           TEXT,
    hostname         TEXT,
    version          TEXT,
    labels           JSONB       NOT NULL,
    capabilities     JSONB       NOT NULL,
    -- Pushed to the agent in `registered` and whenever it changes over REST.
    config           JSONB       NOT NULL,
    config_version   BIGINT      NOT NULL DEFAULT 0,
    -- 'connected' or 'disconnected'.
    status           TEXT        NOT NULL,
    -- What the agent last reported in a `status` frame ('ok', 'degraded', …).
    health           TEXT,
    health_details   JSONB,
    session_id       TEXT,
    replica_id       TEXT,
    connected_until  TIMESTAMPTZ,
    connected_at     TIMESTAMPTZ,
    disconnected_at  TIMESTAMPTZ,
    last_seen_at     TIMESTAMPTZ,
    registered_at    TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL,
    batches_total    BIGINT      NOT NULL DEFAULT 0,
    samples_total    BIGINT      NOT NULL DEFAULT 0,
    rejected_total   BIGINT      NOT NULL DEFAULT 0,
    last_batch_at    TIMESTAMPTZ,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX agents_tenant_status ON agents (tenant, status, id);
-- The presence sweep looks for connected rows whose time ran out.
CREATE INDEX agents_presence ON agents (connected_until) WHERE status = 'connected';
CREATE INDEX agents_replica ON agents (replica_id) WHERE replica_id IS NOT NULL;
