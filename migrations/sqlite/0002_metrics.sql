-- Series and samples (see the PostgreSQL migration for the model).

CREATE TABLE series (
    id            INTEGER PRIMARY KEY,
    tenant        TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    labels        TEXT    NOT NULL,
    fingerprint   INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    UNIQUE (tenant, fingerprint)
);
CREATE INDEX series_tenant_name ON series (tenant, name);
CREATE INDEX series_tenant_last_seen ON series (tenant, last_seen_at);

CREATE TABLE samples (
    series_id  INTEGER NOT NULL,
    ts         INTEGER NOT NULL,
    value      REAL    NOT NULL,
    PRIMARY KEY (series_id, ts)
) WITHOUT ROWID;
CREATE INDEX samples_ts ON samples (ts);

CREATE TABLE ingest_batches (
    tenant      TEXT    NOT NULL,
    batch_id    TEXT    NOT NULL,
    accepted    INTEGER NOT NULL,
    rejected    TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant, batch_id)
);
CREATE INDEX ingest_batches_created_at ON ingest_batches (created_at);
