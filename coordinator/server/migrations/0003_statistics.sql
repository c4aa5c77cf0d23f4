-- Statistics reported by nodes (one report per node and day) and effectiveness feedback.
CREATE TABLE statistics (
    jurisdiction TEXT NOT NULL,
    day TEXT NOT NULL,
    category TEXT NOT NULL,
    source_unit TEXT NOT NULL,
    ingested BIGINT NOT NULL,
    rejected BIGINT NOT NULL,
    shared BIGINT NOT NULL,
    returned BIGINT NOT NULL,
    queried BIGINT NOT NULL
);
CREATE INDEX statistics_by_day ON statistics (day, jurisdiction);

CREATE TABLE feedback (
    id BIGINT PRIMARY KEY,
    jurisdiction TEXT NOT NULL,
    submitted_by TEXT NOT NULL,
    submitted_at BIGINT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    note TEXT NOT NULL
);
