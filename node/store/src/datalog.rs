//! 数据日志: the append-only data log. Every entry carries the SM3 hash of its predecessor and of
//! itself, so an edited, inserted or deleted entry breaks the chain and `audit verify` finds it.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Row, Transaction};

use crate::StoreError;
use crate::collection::BatchSummary;

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One data-log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogEntry {
    /// Position in the chain, from 1 (0 until appended).
    pub seq: i64,
    /// When (RFC 3339).
    pub at: String,
    /// `ingest`, `query`, `report`, `unmasked_read`, …
    pub kind: String,
    /// Who.
    pub actor: String,
    /// The batch, for ingest entries.
    pub batch_id: Option<String>,
    /// The declared source unit.
    pub source_unit: Option<String>,
    /// Category code.
    pub category: Option<String>,
    /// File, URL or table.
    pub source: Option<String>,
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
    /// Further facts as JSON text.
    pub detail: String,
    /// Hash of the previous entry.
    pub prev_hash: String,
    /// Hash of this entry.
    pub entry_hash: String,
}

impl LogEntry {
    pub(crate) fn batch(at: &str, s: &BatchSummary) -> Self {
        Self {
            seq: 0,
            at: at.to_owned(),
            kind: "ingest".into(),
            actor: s.operator.clone(),
            batch_id: Some(s.batch_id.clone()),
            source_unit: Some(s.source_unit.clone()),
            category: Some(s.category.clone()),
            source: Some(s.source.clone()),
            total: s.counts.total as i64,
            stored: s.counts.stored as i64,
            updated: s.counts.updated as i64,
            duplicate: s.counts.duplicate as i64,
            rejected: s.counts.rejected as i64,
            detail: s.detail.to_string(),
            prev_hash: String::new(),
            entry_hash: String::new(),
        }
    }

    pub(crate) fn access(at: &str, kind: &str, actor: &str, detail: serde_json::Value) -> Self {
        Self {
            seq: 0,
            at: at.to_owned(),
            kind: kind.to_owned(),
            actor: actor.to_owned(),
            batch_id: None,
            source_unit: None,
            category: None,
            source: None,
            total: 0,
            stored: 0,
            updated: 0,
            duplicate: 0,
            rejected: 0,
            detail: detail.to_string(),
            prev_hash: String::new(),
            entry_hash: String::new(),
        }
    }

    /// The SM3 hash that chains this entry: over the previous hash and every field but its own hash.
    pub fn compute_hash(&self) -> String {
        let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "\u{0}".into());
        let canonical = [
            self.prev_hash.clone(),
            self.seq.to_string(),
            self.at.clone(),
            self.kind.clone(),
            self.actor.clone(),
            opt(&self.batch_id),
            opt(&self.source_unit),
            opt(&self.category),
            opt(&self.source),
            self.total.to_string(),
            self.stored.to_string(),
            self.updated.to_string(),
            self.duplicate.to_string(),
            self.rejected.to_string(),
            self.detail.clone(),
        ];
        let mut h = xy_shangmi::Sm3Hasher::new();
        for part in canonical {
            h.update(&(part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        hex::encode(h.finish())
    }
}

pub(crate) const COLUMNS: &str = "seq, at, kind, actor, batch_id, source_unit, category, source, total, stored, updated, \
    duplicate, rejected, detail, prev_hash, entry_hash";

fn from_row(row: &AnyRow) -> Result<LogEntry, StoreError> {
    Ok(LogEntry {
        seq: row.try_get("seq")?,
        at: row.try_get("at")?,
        kind: row.try_get("kind")?,
        actor: row.try_get("actor")?,
        batch_id: row.try_get("batch_id")?,
        source_unit: row.try_get("source_unit")?,
        category: row.try_get("category")?,
        source: row.try_get("source")?,
        total: row.try_get("total")?,
        stored: row.try_get("stored")?,
        updated: row.try_get("updated")?,
        duplicate: row.try_get("duplicate")?,
        rejected: row.try_get("rejected")?,
        detail: row.try_get("detail")?,
        prev_hash: row.try_get("prev_hash")?,
        entry_hash: row.try_get("entry_hash")?,
    })
}

/// Append `entry` at the end of the chain inside `tx`; returns it with seq and hashes filled in.
pub(crate) async fn append(
    tx: &mut Transaction<'static, Any>,
    entry: &LogEntry,
) -> Result<LogEntry, StoreError> {
    let last = sqlx::query("SELECT seq, entry_hash FROM data_log ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut **tx)
        .await?;
    let (seq, prev) = match last {
        Some(r) => (
            r.try_get::<i64, _>("seq")? + 1,
            r.try_get::<String, _>("entry_hash")?,
        ),
        None => (1, GENESIS.to_owned()),
    };
    let mut e = entry.clone();
    e.seq = seq;
    e.prev_hash = prev;
    e.entry_hash = e.compute_hash();
    sqlx::query(&format!(
        "INSERT INTO data_log ({COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16)"
    ))
    .bind(e.seq)
    .bind(e.at.clone())
    .bind(e.kind.clone())
    .bind(e.actor.clone())
    .bind(e.batch_id.clone())
    .bind(e.source_unit.clone())
    .bind(e.category.clone())
    .bind(e.source.clone())
    .bind(e.total)
    .bind(e.stored)
    .bind(e.updated)
    .bind(e.duplicate)
    .bind(e.rejected)
    .bind(e.detail.clone())
    .bind(e.prev_hash.clone())
    .bind(e.entry_hash.clone())
    .execute(&mut **tx)
    .await?;
    Ok(e)
}

pub(crate) async fn entry_by_batch(pool: &AnyPool, batch_id: &str) -> Result<LogEntry, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM data_log WHERE batch_id = $1"
    ))
    .bind(batch_id.to_owned())
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("batch {batch_id}")))?;
    from_row(&row)
}

/// All entries of a kind (or all), in chain order.
pub async fn entries(pool: &AnyPool, kind: Option<&str>) -> Result<Vec<LogEntry>, StoreError> {
    let rows = match kind {
        Some(k) => {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM data_log WHERE kind = $1 ORDER BY seq"
            ))
            .bind(k.to_owned())
            .fetch_all(pool)
            .await?
        }
        None => {
            sqlx::query(&format!("SELECT {COLUMNS} FROM data_log ORDER BY seq"))
                .fetch_all(pool)
                .await?
        }
    };
    rows.iter().map(from_row).collect()
}

/// The result of checking the data log.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    /// Entries checked.
    pub entries: usize,
    /// Every break found; empty when the log is intact.
    pub problems: Vec<String>,
}

impl AuditReport {
    /// Whether the log is intact.
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }
}

pub(crate) async fn verify(pool: &AnyPool) -> Result<AuditReport, StoreError> {
    let all = entries(pool, None).await?;
    let mut problems = Vec::new();
    let mut prev = GENESIS.to_owned();
    for (i, e) in all.iter().enumerate() {
        let expected_seq = i as i64 + 1;
        if e.seq != expected_seq {
            problems.push(format!(
                "entry {expected_seq} is missing (next entry is {})",
                e.seq
            ));
        }
        if e.prev_hash != prev {
            problems.push(format!(
                "entry {}: previous-hash link broken (an entry before it was removed or changed)",
                e.seq
            ));
        }
        if e.compute_hash() != e.entry_hash {
            problems.push(format!(
                "entry {}: content does not match its hash (edited)",
                e.seq
            ));
        }
        prev = e.entry_hash.clone();
    }
    // A batch whose records exist but whose log entry is gone (e.g. the last entry deleted).
    let orphans = sqlx::query(
        "SELECT DISTINCT r.batch_id FROM records r LEFT JOIN data_log d ON d.batch_id = r.batch_id WHERE d.seq IS NULL",
    )
    .fetch_all(pool)
    .await?;
    for row in orphans {
        let b: String = row.try_get("batch_id")?;
        problems.push(format!(
            "records of batch {b} have no data-log entry (entry deleted)"
        ));
    }
    Ok(AuditReport {
        entries: all.len(),
        problems,
    })
}
