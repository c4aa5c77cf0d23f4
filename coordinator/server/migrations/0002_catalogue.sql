-- The data catalogue: resource versions with their metadata (JSON after GB/T 39442 Annex A) and
-- the subscriptions prefectures make for their return flow.
CREATE TABLE resources (
    code TEXT NOT NULL,
    version BIGINT NOT NULL,
    status TEXT NOT NULL,
    provider_jurisdiction TEXT NOT NULL,
    registered_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    metadata TEXT NOT NULL,
    PRIMARY KEY (code, version)
);

CREATE TABLE subscriptions (
    id BIGINT PRIMARY KEY,
    resource_code TEXT NOT NULL,
    subscriber_jurisdiction TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    purpose TEXT NOT NULL,
    status TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    decide_by BIGINT,
    decided_at BIGINT,
    decided_by TEXT,
    reason TEXT NOT NULL
);
