-- 应用场景库: one scenario store. Portable SQL: the same file runs on SQLite and PostgreSQL.

CREATE TABLE scenario_meta (
    name TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    definition TEXT NOT NULL
);

CREATE TABLE records (
    id BIGINT PRIMARY KEY,
    source_record_id BIGINT NOT NULL,
    category TEXT NOT NULL,
    payload TEXT NOT NULL,
    extracted_at TEXT NOT NULL
);
