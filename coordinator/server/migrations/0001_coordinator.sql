-- The coordinator's tables: enrolment tokens, issued certificates, users, refresh tokens, the
-- node directory and the SM3-chained audit log. Portable SQL (SQLite and PostgreSQL).
CREATE TABLE enrolment_tokens (
    token_hash TEXT PRIMARY KEY,
    jurisdiction TEXT NOT NULL,
    role TEXT NOT NULL,
    common_name TEXT NOT NULL,
    created_by TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);

CREATE TABLE certificates (
    serial TEXT PRIMARY KEY,
    jurisdiction TEXT NOT NULL,
    role TEXT NOT NULL,
    common_name TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    not_after BIGINT NOT NULL,
    revoked_at BIGINT,
    revocation_reason TEXT,
    der_hex TEXT NOT NULL
);

CREATE TABLE users (
    username TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    jurisdiction TEXT NOT NULL,
    status TEXT NOT NULL,
    failed_logins BIGINT NOT NULL DEFAULT 0,
    locked_until BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);

CREATE TABLE nodes (
    jurisdiction TEXT NOT NULL,
    role TEXT NOT NULL,
    address TEXT NOT NULL,
    server_name TEXT NOT NULL,
    PRIMARY KEY (jurisdiction, role)
);

CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    entry_hash TEXT NOT NULL
);
