-- Series and samples.
-- A series is (tenant, name, labels), identified within its tenant by a 64-bit
-- fingerprint of name and labels. Samples belong to a series (and so to its tenant);
-- they carry no tenant column of their own, which keeps the hottest table narrow.

CREATE TABLE series (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant        TEXT        NOT NULL,
    name          TEXT        NOT NULL,
    labels        JSONB       NOT NULL,
    fingerprint   BIGINT      NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    last_seen_at  TIMESTAMPTZ NOT NULL,
    UNIQUE (tenant, fingerprint)
);
CREATE INDEX series_tenant_name ON series (tenant, name);
CREATE INDEX series_tenant_last_seen ON series (tenant, last_seen_at);

-- Partitioned by day: retention drops whole partitions instead of deleting rows.
-- Partitions are created on demand by the writer (store::samples).
CREATE TABLE samples (
    series_id  BIGINT           NOT NULL,
    ts         TIMESTAMPTZ      NOT NULL,
    value      DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (series_id, ts)
) PARTITION BY RANGE (ts);

-- Batches already stored, so that a resent batch (same batch_id) is acknowledged
-- with the first answer and stored once.
CREATE TABLE ingest_batches (
    tenant      TEXT        NOT NULL,
    batch_id    TEXT        NOT NULL,
    accepted    INTEGER     NOT NULL,
    rejected    JSONB       NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant, batch_id)
);
CREATE INDEX ingest_batches_created_at ON ingest_batches (created_at);
