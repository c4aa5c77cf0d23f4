-- Scenario stores extracted incrementally from the return-flow store. The first layout was never
-- written to. Portable SQL.
DROP TABLE records;

CREATE TABLE records (
    gid TEXT PRIMARY KEY,
    version BIGINT NOT NULL,
    category TEXT NOT NULL,
    subject_code TEXT,
    payload TEXT NOT NULL,
    lineage TEXT NOT NULL,
    extracted_at TEXT NOT NULL
);
CREATE INDEX scenario_records_subject ON records (subject_code) WHERE subject_code IS NOT NULL;

-- How far the return-flow store has been read.
CREATE TABLE extract_cursor (
    name TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    updated_at TEXT NOT NULL
);
