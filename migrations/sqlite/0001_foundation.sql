-- Foundation tables: idempotent mutations, revoked tokens, lease fencing.
-- Times are integer milliseconds since the Unix epoch (see store::DbTime).
-- Every table carries `tenant`; tables that are not tenant data use tenant '*'.

CREATE TABLE idempotency_keys (
    tenant        TEXT    NOT NULL,
    subject       TEXT    NOT NULL,
    key           TEXT    NOT NULL,
    request_hash  TEXT    NOT NULL,
    status        INTEGER,
    content_type  TEXT,
    body          BLOB,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    PRIMARY KEY (tenant, subject, key)
);
CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);

CREATE TABLE revoked_tokens (
    tenant      TEXT    NOT NULL,
    jti         TEXT    NOT NULL,
    revoked_by  TEXT    NOT NULL,
    revoked_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant, jti)
);
CREATE INDEX revoked_tokens_revoked_at ON revoked_tokens (revoked_at);

CREATE TABLE lease_fences (
    tenant  TEXT    NOT NULL DEFAULT '*',
    name    TEXT    NOT NULL,
    fence   INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
);
