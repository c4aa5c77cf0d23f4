-- 回流库 for the federated return flow: the first layout had no federation-wide record id and
-- was never written to, so its tables are replaced. Portable SQL.
DROP TABLE staging;
DROP TABLE return_batches;
DROP TABLE records;
DROP TABLE record_history;

-- Staging area (暂存区): a received batch that failed verification, as it arrived (header,
-- signature, certificate, body), kept with its exception until a good copy of it applies.
CREATE TABLE staging (
    batch_id TEXT PRIMARY KEY,
    sender TEXT NOT NULL,
    batch BYTEA NOT NULL,
    received_at TEXT NOT NULL
);

-- Every batch applied, and how far the flow has been applied per sender.
CREATE TABLE flow_batches (
    batch_id TEXT PRIMARY KEY,
    flow TEXT NOT NULL,
    sender TEXT NOT NULL,
    after_major BIGINT NOT NULL,
    after_minor BIGINT NOT NULL,
    through_major BIGINT NOT NULL,
    through_minor BIGINT NOT NULL,
    row_count BIGINT NOT NULL,
    digest TEXT NOT NULL,
    applied_at TEXT NOT NULL
);
CREATE TABLE flow_cursors (
    flow TEXT NOT NULL,
    sender TEXT NOT NULL,
    major BIGINT NOT NULL,
    minor BIGINT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (flow, sender)
);

-- Exceptions: a batch that failed verification, or a record that could not be mapped (kept,
-- encoded, for a retry).
CREATE TABLE exceptions (
    id BIGINT PRIMARY KEY,
    batch_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    stage TEXT NOT NULL,
    gid TEXT,
    reason TEXT NOT NULL,
    record BYTEA,
    at TEXT NOT NULL,
    resolved_at TEXT
);

-- Current records. `seq` orders changes for the scenario extracts.
CREATE TABLE records (
    gid TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    version BIGINT NOT NULL,
    category TEXT NOT NULL,
    status TEXT NOT NULL,
    source_unit TEXT NOT NULL,
    subject_code TEXT,
    subject_index TEXT,
    document_number TEXT NOT NULL,
    decision_date TEXT,
    payload TEXT NOT NULL,
    personal TEXT,
    lineage TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX return_records_seq ON records (seq);
CREATE INDEX return_records_subject ON records (subject_code) WHERE subject_code IS NOT NULL;

-- Every version a return replaced or retracted.
CREATE TABLE record_history (
    gid TEXT NOT NULL,
    version BIGINT NOT NULL,
    category TEXT NOT NULL,
    status TEXT NOT NULL,
    payload TEXT NOT NULL,
    personal TEXT,
    lineage TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    replaced_by_batch TEXT NOT NULL,
    replaced_at TEXT NOT NULL,
    PRIMARY KEY (gid, version)
);
