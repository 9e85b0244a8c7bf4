-- Foundation tables: idempotent mutations, revoked tokens, lease fencing.
-- Every table carries `tenant`; tables that are not tenant data use tenant '*'.

-- Answers of mutations sent with an Idempotency-Key, replayed for the same key.
CREATE TABLE idempotency_keys (
    tenant        TEXT        NOT NULL,
    subject       TEXT        NOT NULL,
    key           TEXT        NOT NULL,
    request_hash  TEXT        NOT NULL,
    -- NULL while the first request is still running.
    status        SMALLINT,
    content_type  TEXT,
    body          BYTEA,
    created_at    TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant, subject, key)
);
CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);

-- Revoked token ids (jti), kept until the token would have expired anyway.
CREATE TABLE revoked_tokens (
    tenant      TEXT        NOT NULL,
    jti         TEXT        NOT NULL,
    revoked_by  TEXT        NOT NULL,
    revoked_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant, jti)
);
CREATE INDEX revoked_tokens_revoked_at ON revoked_tokens (revoked_at);

-- Fencing tokens of leader leases. Kept here, not in Redis, so that they stay monotonic
-- when Redis restarts empty.
CREATE TABLE lease_fences (
    tenant  TEXT   NOT NULL DEFAULT '*',
    name    TEXT   NOT NULL,
    fence   BIGINT NOT NULL,
    PRIMARY KEY (tenant, name)
);
