//! Data quality (M2) aggregates: per source unit and category, totals and outcomes, rejections by
//! rule, and timeliness (days from decision to ingest).

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::{AnyPool, Row};

use crate::StoreError;

/// Quality figures of one (source unit, category).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct QualityLine {
    /// Source unit USCC as declared for the batches.
    pub source_unit: String,
    /// Category code.
    pub category: String,
    /// Batches.
    pub batches: i64,
    /// Data rows.
    pub total: i64,
    /// Stored rows.
    pub stored: i64,
    /// Updated rows.
    pub updated: i64,
    /// Duplicate rows.
    pub duplicate: i64,
    /// Rejected rows.
    pub rejected: i64,
    /// Rejected rows as a share of all rows.
    pub rejection_rate: f64,
    /// Faults by rule id.
    pub rejections_by_rule: BTreeMap<String, i64>,
    /// Current records with a decision date.
    pub timed_records: i64,
    /// Mean days from decision to ingest.
    pub mean_lag_days: Option<f64>,
    /// Longest days from decision to ingest.
    pub max_lag_days: Option<i64>,
}

/// Compute the quality report of the collection store.
pub async fn quality_report(pool: &AnyPool) -> Result<Vec<QualityLine>, StoreError> {
    let mut lines: BTreeMap<(String, String), QualityLine> = BTreeMap::new();
    let key =
        |su: Option<String>, cat: Option<String>| (su.unwrap_or_default(), cat.unwrap_or_default());
    for row in sqlx::query(
        "SELECT source_unit, category, COUNT(*) AS batches, CAST(SUM(total) AS BIGINT) AS total, CAST(SUM(stored) AS BIGINT) AS stored, \
         CAST(SUM(updated) AS BIGINT) AS updated, CAST(SUM(duplicate) AS BIGINT) AS duplicate, CAST(SUM(rejected) AS BIGINT) AS rejected \
         FROM data_log WHERE kind = 'ingest' GROUP BY source_unit, category",
    )
    .fetch_all(pool)
    .await?
    {
        let k = key(row.try_get("source_unit")?, row.try_get("category")?);
        let line = lines.entry(k.clone()).or_default();
        line.source_unit = k.0;
        line.category = k.1;
        line.batches = row.try_get("batches")?;
        line.total = sum(&row, "total")?;
        line.stored = sum(&row, "stored")?;
        line.updated = sum(&row, "updated")?;
        line.duplicate = sum(&row, "duplicate")?;
        line.rejected = sum(&row, "rejected")?;
        line.rejection_rate = if line.total > 0 { line.rejected as f64 / line.total as f64 } else { 0.0 };
    }
    for row in sqlx::query(
        "SELECT d.source_unit, d.category, f.rule, CAST(SUM(f.faults) AS BIGINT) AS n FROM batch_rule_counts f \
         JOIN data_log d ON d.batch_id = f.batch_id GROUP BY d.source_unit, d.category, f.rule",
    )
    .fetch_all(pool)
    .await?
    {
        let k = key(row.try_get("source_unit")?, row.try_get("category")?);
        let rule: String = row.try_get("rule")?;
        if let Some(line) = lines.get_mut(&k) {
            line.rejections_by_rule.insert(rule, row.try_get("n")?);
        }
    }
    // Timeliness of the current records, attributed to the declared source unit of their batch.
    for row in sqlx::query(
        "SELECT d.source_unit, r.category, COUNT(r.lag_days) AS n, CAST(SUM(r.lag_days) AS BIGINT) AS lag_sum, MAX(r.lag_days) AS lag_max \
         FROM records r JOIN data_log d ON d.batch_id = r.batch_id \
         WHERE r.lag_days IS NOT NULL GROUP BY d.source_unit, r.category",
    )
    .fetch_all(pool)
    .await?
    {
        let k = key(row.try_get("source_unit")?, row.try_get("category")?);
        if let Some(line) = lines.get_mut(&k) {
            let n: i64 = row.try_get("n")?;
            line.timed_records = n;
            let lag_sum = sum(&row, "lag_sum")?;
            line.mean_lag_days = (n > 0).then(|| lag_sum as f64 / n as f64);
            line.max_lag_days = row.try_get::<Option<i64>, _>("lag_max")?;
        }
    }
    Ok(lines.into_values().collect())
}

fn sum(row: &sqlx::any::AnyRow, col: &str) -> Result<i64, StoreError> {
    Ok(row.try_get::<Option<i64>, _>(col)?.unwrap_or(0))
}
