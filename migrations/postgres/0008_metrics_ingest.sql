-- Samples ingested per tenant and minute. /api/v1/metrics/stats and the dashboard read
-- the ingest rate and sample counts here instead of counting the samples table, which
-- would scan whole partitions. One upsert per batch keeps it current.
CREATE TABLE ingest_stats (
    tenant   TEXT        NOT NULL,
    minute   TIMESTAMPTZ NOT NULL,
    samples  BIGINT      NOT NULL,
    batches  BIGINT      NOT NULL,
    PRIMARY KEY (tenant, minute)
);
CREATE INDEX ingest_stats_minute ON ingest_stats (minute);
