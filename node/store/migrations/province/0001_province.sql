-- The province's governance stores (system D7). Portable SQL.
--   原始库 raw store: every record as the prefectures shared it;
--   基础库 base store: records that passed the governance rules, deduplicated across sources;
--   主题库 theme stores: subsets of the base store, one return-flow theme per prefecture;
--   治理工单 work orders: records that failed a rule, addressed to their source.
-- `seq` columns order changes for the feeds that read them.

-- A record's origin is the jurisdiction before the ':' of its gid.
CREATE TABLE raw_records (
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
    received_at TEXT NOT NULL
);
CREATE UNIQUE INDEX raw_records_seq ON raw_records (seq);

CREATE TABLE base_records (
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
    business_key TEXT NOT NULL,
    duplicate_of TEXT,
    payload TEXT NOT NULL,
    personal TEXT,
    lineage TEXT NOT NULL,
    governed_at TEXT NOT NULL
);
CREATE UNIQUE INDEX base_records_seq ON base_records (seq);
CREATE INDEX base_records_business_key ON base_records (business_key);

CREATE TABLE theme_records (
    theme TEXT NOT NULL,
    gid TEXT NOT NULL,
    seq BIGINT NOT NULL,
    version BIGINT NOT NULL,
    category TEXT NOT NULL,
    status TEXT NOT NULL,
    source_unit TEXT NOT NULL,
    subject_code TEXT,
    document_number TEXT NOT NULL,
    decision_date TEXT,
    payload TEXT NOT NULL,
    personal TEXT,
    lineage TEXT NOT NULL,
    PRIMARY KEY (theme, gid)
);
CREATE UNIQUE INDEX theme_records_seq ON theme_records (theme, seq);

CREATE TABLE work_orders (
    id BIGINT PRIMARY KEY,
    seq BIGINT NOT NULL,
    origin TEXT NOT NULL,
    gid TEXT NOT NULL,
    version BIGINT NOT NULL,
    category TEXT NOT NULL,
    source_unit TEXT NOT NULL,
    document_number TEXT NOT NULL,
    faults TEXT NOT NULL,
    status TEXT NOT NULL,
    opened_at TEXT NOT NULL,
    closed_at TEXT
);
CREATE UNIQUE INDEX work_orders_seq ON work_orders (seq);
CREATE INDEX work_orders_gid ON work_orders (gid);

-- How far governance has read the raw store.
CREATE TABLE governance_cursor (
    name TEXT PRIMARY KEY,
    seq BIGINT NOT NULL
);

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

-- Exceptions receivers reported for batches this node sent (return-flow mapping or verification).
CREATE TABLE sent_exceptions (
    receiver TEXT NOT NULL,
    flow TEXT NOT NULL,
    reason TEXT NOT NULL,
    at TEXT NOT NULL
);

-- The categories each theme takes, as last synchronised (a theme that gains categories is filled
-- from the base store).
CREATE TABLE theme_definitions (
    name TEXT PRIMARY KEY,
    categories TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
