-- 回流库: the return-flow store. Portable SQL: the same file runs on SQLite and PostgreSQL.

-- Staging area: a returned batch lands here before it is verified and mapped.
CREATE TABLE staging (
    batch_id TEXT NOT NULL,
    row_number BIGINT NOT NULL,
    category TEXT NOT NULL,
    payload TEXT NOT NULL,
    personal TEXT,
    received_at TEXT NOT NULL,
    PRIMARY KEY (batch_id, row_number)
);

-- Returned batches and the outcome of their verification.
CREATE TABLE return_batches (
    batch_id TEXT PRIMARY KEY,
    sender TEXT NOT NULL,
    row_count BIGINT NOT NULL,
    digest TEXT NOT NULL,
    status TEXT NOT NULL,
    received_at TEXT NOT NULL,
    applied_at TEXT,
    error TEXT
);

-- Current records after upsert.
CREATE TABLE records (
    id BIGINT PRIMARY KEY,
    category TEXT NOT NULL,
    key_hash TEXT NOT NULL,
    version BIGINT NOT NULL,
    status TEXT NOT NULL,
    source_unit TEXT NOT NULL,
    subject_code TEXT,
    subject_index TEXT,
    document_number TEXT NOT NULL,
    decision_date TEXT,
    batch_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    payload TEXT NOT NULL,
    personal TEXT,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX return_records_business_key ON records (category, key_hash);

-- History of every change made by a return.
CREATE TABLE record_history (
    id BIGINT NOT NULL,
    version BIGINT NOT NULL,
    category TEXT NOT NULL,
    key_hash TEXT NOT NULL,
    status TEXT NOT NULL,
    payload TEXT NOT NULL,
    personal TEXT,
    batch_id TEXT NOT NULL,
    changed_at TEXT NOT NULL,
    change TEXT NOT NULL,
    PRIMARY KEY (id, version)
);
