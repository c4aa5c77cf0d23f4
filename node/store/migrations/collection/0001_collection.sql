-- 归集共享库: the collection/sharing store. Portable SQL: the same file runs on SQLite and PostgreSQL.

-- Current version of every record, one row per business key.
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
    lag_days BIGINT,
    batch_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    payload TEXT NOT NULL,
    personal TEXT,
    ingested_at TEXT NOT NULL
);
CREATE UNIQUE INDEX records_business_key ON records (category, key_hash);
CREATE INDEX records_subject_code ON records (subject_code) WHERE subject_code IS NOT NULL;
CREATE INDEX records_subject_index ON records (subject_index) WHERE subject_index IS NOT NULL;

-- Every superseded version of a record.
CREATE TABLE record_history (
    id BIGINT NOT NULL,
    version BIGINT NOT NULL,
    category TEXT NOT NULL,
    key_hash TEXT NOT NULL,
    status TEXT NOT NULL,
    source_unit TEXT NOT NULL,
    subject_code TEXT,
    subject_index TEXT,
    document_number TEXT NOT NULL,
    decision_date TEXT,
    lag_days BIGINT,
    batch_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    payload TEXT NOT NULL,
    personal TEXT,
    ingested_at TEXT NOT NULL,
    superseded_by_batch TEXT NOT NULL,
    PRIMARY KEY (id, version)
);

-- 数据日志: append-only, each entry chained to the previous by SM3.
CREATE TABLE data_log (
    seq BIGINT PRIMARY KEY,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    batch_id TEXT,
    source_unit TEXT,
    category TEXT,
    source TEXT,
    total BIGINT NOT NULL,
    stored BIGINT NOT NULL,
    updated BIGINT NOT NULL,
    duplicate BIGINT NOT NULL,
    rejected BIGINT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    entry_hash TEXT NOT NULL
);
CREATE UNIQUE INDEX data_log_batch ON data_log (batch_id) WHERE batch_id IS NOT NULL;

-- Rows of a batch that were not plainly stored (updated, duplicate, rejected, or stored with warnings).
-- A row of a batch absent here was stored without remark: the per-row report is complete.
CREATE TABLE batch_rows (
    batch_id TEXT NOT NULL,
    row_number BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    warnings TEXT NOT NULL,
    PRIMARY KEY (batch_id, row_number)
);

-- The faults of rejected rows: field, rule and reason.
CREATE TABLE batch_faults (
    batch_id TEXT NOT NULL,
    row_number BIGINT NOT NULL,
    field TEXT NOT NULL,
    rule TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX batch_faults_row ON batch_faults (batch_id, row_number);
