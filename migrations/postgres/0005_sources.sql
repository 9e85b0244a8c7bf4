-- Sources: what the `sources` leaseholder polls, its last outcome and the state it keeps
-- between polls (so that a new holder goes on where the old one stopped), plus the
-- KumoMTA log-hook receiver's dedup keys and per-queue counts.

CREATE TABLE sources (
    id                    UUID        PRIMARY KEY,
    tenant                TEXT        NOT NULL,
    name                  TEXT        NOT NULL,
    -- kumomta | prometheus | http_probe
    kind                  TEXT        NOT NULL,
    -- Settings that may be shown (URL, lists, labels, expected status, ...).
    settings              JSONB       NOT NULL,
    -- Credentials for the target (bearer token or basic password). Write-only: never
    -- returned by the API and never logged.
    auth                  JSONB,
    -- SHA-256 (hex) of the bearer token the KumoMTA log hook must present.
    log_token_sha256      TEXT,
    interval_ms           BIGINT      NOT NULL,
    timeout_ms            BIGINT      NOT NULL,
    enabled               BOOLEAN     NOT NULL,
    -- 'api', or 'config' for the default KumoMTA source made from KUMOMTA_API_URL.
    origin                TEXT        NOT NULL,
    -- Grows with every change: the poller reloads a source whose version moved.
    version               BIGINT      NOT NULL,
    created_at            TIMESTAMPTZ NOT NULL,
    updated_at            TIMESTAMPTZ NOT NULL,
    -- Last outcome.
    last_polled_at        TIMESTAMPTZ,
    last_latency_ms       DOUBLE PRECISION,
    last_error            TEXT,
    consecutive_failures  INTEGER     NOT NULL DEFAULT 0,
    -- The last interval (slot number) claimed for polling, and the lease fencing token of
    -- the claim: an interval is polled at most once, and never by an older leaseholder.
    poll_slot             BIGINT      NOT NULL DEFAULT 0,
    poll_fence            BIGINT      NOT NULL DEFAULT 0,
    -- What the kind remembers between polls (KumoMTA: the last snapshot and liveness).
    state                 JSONB,
    UNIQUE (tenant, name)
);
CREATE INDEX sources_tenant_kind ON sources (tenant, kind);

-- Log-hook records already counted, so that a record sent twice is counted once.
CREATE TABLE kumomta_log_seen (
    tenant     TEXT        NOT NULL,
    source_id  UUID        NOT NULL,
    dedup_key  TEXT        NOT NULL,
    seen_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant, source_id, dedup_key)
);
CREATE INDEX kumomta_log_seen_seen_at ON kumomta_log_seen (seen_at);

-- Per-queue counters of log-hook records (kumomta_log_delivered_total{queue}, ...).
CREATE TABLE kumomta_log_counts (
    tenant     TEXT   NOT NULL,
    source_id  UUID   NOT NULL,
    metric     TEXT   NOT NULL,
    queue      TEXT   NOT NULL,
    count      BIGINT NOT NULL,
    PRIMARY KEY (tenant, source_id, metric, queue)
);
