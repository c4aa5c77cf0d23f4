-- Lineages stored once. The records of a returned batch mostly share one lineage (the same
-- ingest batch, share batch, governance and return batch), about 500 bytes a record. A record,
-- and its history, holds '#' and the lineage's digest instead; reads put the text back.
-- Portable SQL.
CREATE TABLE lineages (
    digest TEXT PRIMARY KEY,
    lineage TEXT NOT NULL
);
