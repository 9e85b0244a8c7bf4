-- Samples ingested per tenant and minute (see the PostgreSQL migration).
CREATE TABLE ingest_stats (
    tenant   TEXT    NOT NULL,
    minute   INTEGER NOT NULL,
    samples  INTEGER NOT NULL,
    batches  INTEGER NOT NULL,
    PRIMARY KEY (tenant, minute)
);
CREATE INDEX ingest_stats_minute ON ingest_stats (minute);
