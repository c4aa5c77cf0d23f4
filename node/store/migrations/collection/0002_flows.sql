-- Federated flows (share up, work orders). Portable SQL.

-- The share feed reads the records each data-log batch wrote, in log order.
CREATE INDEX records_batch ON records (batch_id, id);

-- 治理工单: work orders the province's governance addressed to this node's source units.
CREATE TABLE work_orders (
    id BIGINT PRIMARY KEY,
    gid TEXT NOT NULL,
    version BIGINT NOT NULL,
    category TEXT NOT NULL,
    source_unit TEXT NOT NULL,
    document_number TEXT NOT NULL,
    faults TEXT NOT NULL,
    status TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- How far each flow into this store has been applied, per sender (written in the same
-- transaction as the batch it acknowledges).
CREATE TABLE flow_cursors (
    flow TEXT NOT NULL,
    sender TEXT NOT NULL,
    major BIGINT NOT NULL,
    minor BIGINT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (flow, sender)
);

-- Every batch applied to this store.
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
