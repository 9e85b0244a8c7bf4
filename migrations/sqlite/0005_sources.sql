-- Sources (see the PostgreSQL migration for the model).

CREATE TABLE sources (
    id                    BLOB    PRIMARY KEY,
    tenant                TEXT    NOT NULL,
    name                  TEXT    NOT NULL,
    kind                  TEXT    NOT NULL,
    settings              TEXT    NOT NULL,
    auth                  TEXT,
    log_token_sha256      TEXT,
    interval_ms           INTEGER NOT NULL,
    timeout_ms            INTEGER NOT NULL,
    enabled               BOOLEAN NOT NULL,
    origin                TEXT    NOT NULL,
    version               INTEGER NOT NULL,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    last_polled_at        INTEGER,
    last_latency_ms       REAL,
    last_error            TEXT,
    consecutive_failures  INTEGER NOT NULL DEFAULT 0,
    poll_slot             INTEGER NOT NULL DEFAULT 0,
    poll_fence            INTEGER NOT NULL DEFAULT 0,
    state                 TEXT,
    UNIQUE (tenant, name)
);
CREATE INDEX sources_tenant_kind ON sources (tenant, kind);

CREATE TABLE kumomta_log_seen (
    tenant     TEXT    NOT NULL,
    source_id  BLOB    NOT NULL,
    dedup_key  TEXT    NOT NULL,
    seen_at    INTEGER NOT NULL,
    PRIMARY KEY (tenant, source_id, dedup_key)
);
CREATE INDEX kumomta_log_seen_seen_at ON kumomta_log_seen (seen_at);

CREATE TABLE kumomta_log_counts (
    tenant     TEXT    NOT NULL,
    source_id  BLOB    NOT NULL,
    metric     TEXT    NOT NULL,
    queue      TEXT    NOT NULL,
    count      INTEGER NOT NULL,
    PRIMARY KEY (tenant, source_id, metric, queue)
);
