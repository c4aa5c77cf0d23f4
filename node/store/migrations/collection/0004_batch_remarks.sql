-- The per-row report of a batch, one row per written chunk instead of one or more rows per remark:
-- the chunk's remarks (rows not plainly stored, with their faults and warnings) as JSON lines, each
-- {"row", "outcome", "faults": [{"field", "rule", "reason"}], "warnings"}. Batches written before
-- this migration keep their remarks in batch_rows and batch_faults, which stay readable.
CREATE TABLE batch_remarks (
    batch_id TEXT NOT NULL,
    first_row BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (batch_id, first_row)
);

-- Faults per rule and batch (the quality report's rejections by rule), written with the batch.
CREATE TABLE batch_rule_counts (
    batch_id TEXT NOT NULL,
    rule TEXT NOT NULL,
    faults BIGINT NOT NULL,
    PRIMARY KEY (batch_id, rule)
);
INSERT INTO batch_rule_counts (batch_id, rule, faults)
    SELECT batch_id, rule, COUNT(*) FROM batch_faults GROUP BY batch_id, rule;
