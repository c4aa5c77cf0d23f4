//! 归集共享库: the collection/sharing store. Records per category, source unit, ingest batch and
//! version; the per-row reports of every batch; the hash-chained data log.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Row, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::StoreError;
use crate::datalog::{self, LogEntry};
use crate::db::{Backend, placeholders, values_clause};
use crate::native::NativeBatch;

/// A record ready to be stored: the indexed columns and the payload. Personal fields are already
/// sealed (`personal`) and absent from `payload`.
///
/// Its texts share one buffer, so a record is one allocation instead of a dozen: ingest builds
/// records on its parsing thread and the batch writer frees them on another, a million a batch,
/// and per-string allocation, freeing and scattered reads showed in both threads' profiles. Build
/// one from [`RecordFields`] and read it back with [`NewRecord::fields`].
#[derive(Clone)]
pub struct NewRecord {
    text: String,
    /// End of each text in `text`, in the order of [`NewRecord::fields`].
    ends: [usize; TEXTS],
    /// Bit `i` set: text `i`, an optional one, is absent (and empty).
    absent: u16,
    lag_days: Option<i64>,
}

/// The texts of a [`NewRecord`].
const TEXTS: usize = 11;

/// The columns of a [`NewRecord`], borrowed: what it is built from and read back as.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordFields<'a> {
    /// Category code, e.g. `xzcf`.
    pub category: &'a str,
    /// Keyed hash (HMAC-SM3, hex) of the business key.
    pub key_hash: &'a str,
    /// Record status, e.g. `active`.
    pub status: &'a str,
    /// Source unit USCC.
    pub source_unit: &'a str,
    /// The subject's USCC, for legal persons and 个体工商户.
    pub subject_code: Option<&'a str>,
    /// Blind index (HMAC-SM3, hex) of a natural person's identity number.
    pub subject_index: Option<&'a str>,
    /// Decision document number.
    pub document_number: &'a str,
    /// Decision date, `YYYY/MM/DD`.
    pub decision_date: Option<&'a str>,
    /// Days from decision to ingest (timeliness).
    pub lag_days: Option<i64>,
    /// Keyed hash (hex) of the full cleaned content; equal hashes mean identical records.
    pub content_hash: &'a str,
    /// The non-personal fields as a JSON object.
    pub payload: &'a str,
    /// Personal fields, SM4-GCM sealed.
    pub personal: Option<&'a str>,
}

impl NewRecord {
    /// A record holding copies of `fields`.
    pub fn new(fields: RecordFields<'_>) -> Self {
        let texts: [Option<&str>; TEXTS] = [
            Some(fields.category),
            Some(fields.key_hash),
            Some(fields.status),
            Some(fields.source_unit),
            fields.subject_code,
            fields.subject_index,
            Some(fields.document_number),
            fields.decision_date,
            Some(fields.content_hash),
            Some(fields.payload),
            fields.personal,
        ];
        let mut text = String::with_capacity(texts.iter().flatten().map(|t| t.len()).sum());
        let mut ends = [0; TEXTS];
        let mut absent = 0;
        for (i, t) in texts.iter().enumerate() {
            match t {
                Some(t) => text.push_str(t),
                None => absent |= 1 << i,
            }
            ends[i] = text.len();
        }
        Self {
            text,
            ends,
            absent,
            lag_days: fields.lag_days,
        }
    }

    fn text(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }

    fn optional(&self, i: usize) -> Option<&str> {
        (self.absent & (1 << i) == 0).then(|| self.text(i))
    }

    /// Every column of the record.
    pub fn fields(&self) -> RecordFields<'_> {
        RecordFields {
            category: self.text(0),
            key_hash: self.text(1),
            status: self.text(2),
            source_unit: self.text(3),
            subject_code: self.optional(4),
            subject_index: self.optional(5),
            document_number: self.text(6),
            decision_date: self.optional(7),
            lag_days: self.lag_days,
            content_hash: self.text(8),
            payload: self.text(9),
            personal: self.optional(10),
        }
    }

    /// The keyed hash of the business key (see [`RecordFields::key_hash`]).
    pub fn key_hash(&self) -> &str {
        self.text(1)
    }

    /// The content fingerprint (see [`RecordFields::content_hash`]).
    pub fn content_hash(&self) -> &str {
        self.text(8)
    }
}

impl std::fmt::Debug for NewRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.fields().fmt(f)
    }
}

/// A map keyed by business-key hash (or another keyed hash). Those keys are uniformly random, so
/// the hasher only needs to be fast: std's SipHash showed in the ingest's profile.
pub type KeyMap<V> = HashMap<String, V, foldhash::fast::RandomState>;

/// The current version of a record found by business key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingRecord {
    /// Record id.
    pub id: i64,
    /// Current version.
    pub version: i64,
    /// Content hash of the current version.
    pub content_hash: String,
}

/// The outcome of one ingested row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A new record.
    Stored,
    /// A new version of an existing record (the old one went to history).
    Updated,
    /// Identical to the current version: nothing changed.
    Duplicate,
    /// Refused, with field-level reasons.
    Rejected,
}

impl Outcome {
    /// The report spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::Updated => "updated",
            Self::Duplicate => "duplicate",
            Self::Rejected => "rejected",
        }
    }
    fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "stored" => Self::Stored,
            "updated" => Self::Updated,
            "duplicate" => Self::Duplicate,
            "rejected" => Self::Rejected,
            other => return Err(StoreError::Corrupt(format!("unknown outcome {other:?}"))),
        })
    }
}

/// A field-level fault of a rejected row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowFault {
    /// Standard field name.
    pub field: String,
    /// Rule id.
    pub rule: String,
    /// Reason in Chinese.
    pub reason: String,
}

/// One line of a batch report (stored as one JSON line of a chunk's remarks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportRow {
    /// 1-based data row number.
    pub row: u64,
    /// What happened to the row.
    pub outcome: Outcome,
    /// Faults (rejected rows only).
    pub faults: Vec<RowFault>,
    /// Warnings.
    pub warnings: Vec<String>,
}

/// Counts by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutcomeCounts {
    /// Data rows seen.
    pub total: u64,
    /// New records.
    pub stored: u64,
    /// New versions.
    pub updated: u64,
    /// Identical rows.
    pub duplicate: u64,
    /// Refused rows.
    pub rejected: u64,
}

impl OutcomeCounts {
    /// Count one outcome.
    pub fn add(&mut self, outcome: Outcome) {
        self.total += 1;
        match outcome {
            Outcome::Stored => self.stored += 1,
            Outcome::Updated => self.updated += 1,
            Outcome::Duplicate => self.duplicate += 1,
            Outcome::Rejected => self.rejected += 1,
        }
    }
}

/// The description of a finished batch, written to the data log when the batch commits.
#[derive(Debug, Clone, Serialize)]
pub struct BatchSummary {
    /// Batch id.
    pub batch_id: String,
    /// Who ran the ingest.
    pub operator: String,
    /// Declared source unit.
    pub source_unit: String,
    /// Category code.
    pub category: String,
    /// The file, URL or table the batch came from.
    pub source: String,
    /// Counts by outcome.
    pub counts: OutcomeCounts,
    /// Extra facts (unknown columns, schema version, …) as JSON.
    pub detail: serde_json::Value,
}

/// A stored record as read back.
#[derive(Debug, Clone, Serialize)]
pub struct StoredRecord {
    /// Record id.
    pub id: i64,
    /// Category code.
    pub category: String,
    /// Version, from 1.
    pub version: i64,
    /// Status.
    pub status: String,
    /// Source unit USCC.
    pub source_unit: String,
    /// Subject USCC, if any.
    pub subject_code: Option<String>,
    /// Decision document number.
    pub document_number: String,
    /// Decision date.
    pub decision_date: Option<String>,
    /// The batch that wrote this version.
    pub batch_id: String,
    /// Non-personal fields.
    pub payload: serde_json::Value,
    /// Sealed personal fields (see `NodeKeys::seal`), opened only by the node's keys.
    #[serde(skip)]
    pub personal: Option<String>,
    /// The business-key hash the personal fields are sealed to.
    #[serde(skip)]
    pub key_hash: Option<String>,
    /// When this version was ingested.
    pub ingested_at: String,
}

/// Filters of a record query (all optional, combined with AND).
#[derive(Debug, Clone, Default)]
pub struct RecordFilter {
    /// Subject USCC.
    pub subject_code: Option<String>,
    /// Blind index of a natural person's identity number.
    pub subject_index: Option<String>,
    /// Category code.
    pub category: Option<String>,
    /// Source unit USCC.
    pub source_unit: Option<String>,
    /// Decision date from (inclusive, `YYYY/MM/DD`).
    pub decided_from: Option<String>,
    /// Decision date to (inclusive, `YYYY/MM/DD`).
    pub decided_to: Option<String>,
    /// Status.
    pub status: Option<String>,
    /// Maximum rows (default 100, at most 10 000).
    pub limit: Option<u32>,
    /// Rows to skip.
    pub offset: Option<u32>,
}

pub(crate) const RECORD_COLUMNS: &str = "id, category, key_hash, version, status, source_unit, subject_code, \
    subject_index, document_number, decision_date, lag_days, batch_id, content_hash, payload, personal, ingested_at";
/// The columns a new version replaces, in the order of [`RECORD_COLUMNS`] after `version`: inserts
/// and updates bind them in this order.
pub(crate) const VERSION_COLUMNS: [&str; 12] = [
    "status",
    "source_unit",
    "subject_code",
    "subject_index",
    "document_number",
    "decision_date",
    "lag_days",
    "batch_id",
    "content_hash",
    "payload",
    "personal",
    "ingested_at",
];

/// Record the span of ids a batch inserted, `[first_id, end_id)`: the share feed reads a batch's
/// new records by it (see migration 0005). `$n` placeholders, which SQLite numbers in order.
pub(crate) const SPAN_SQL: &str =
    "INSERT INTO batch_spans (batch_id, first_id, end_id) VALUES ($1, $2, $3)";

/// `<update> records SET version = version + 1, <each version column> = <placeholder 2..13>
/// WHERE key_hash = <placeholder 1>`, with `$n` or `?n` placeholders; `update` is `UPDATE` or, on
/// SQLite, a form with a conflict clause.
pub(crate) fn supersede_sql(update: &str, placeholder: &str) -> String {
    let sets: Vec<String> = VERSION_COLUMNS
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = {placeholder}{}", i + 2))
        .collect();
    format!(
        "{update} records SET version = version + 1, {} WHERE key_hash = {placeholder}1",
        sets.join(", ")
    )
}

/// Bind a record's version columns (see [`VERSION_COLUMNS`]) to a sqlx query.
fn bind_version<'q>(
    q: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    r: &NewRecord,
    batch_id: &str,
    at: &str,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    let f = r.fields();
    let owned = |s: Option<&str>| s.map(str::to_owned);
    q.bind(f.status.to_owned())
        .bind(f.source_unit.to_owned())
        .bind(owned(f.subject_code))
        .bind(owned(f.subject_index))
        .bind(f.document_number.to_owned())
        .bind(owned(f.decision_date))
        .bind(f.lag_days)
        .bind(batch_id.to_owned())
        .bind(f.content_hash.to_owned())
        .bind(f.payload.to_owned())
        .bind(owned(f.personal))
        .bind(at.to_owned())
}
pub(crate) const RECORD_COLUMN_COUNT: usize = 16;
/// Rows per multi-row INSERT: 256 rows × 16 columns stays far below every engine's parameter limit.
pub const INSERT_CHUNK: usize = 256;
pub(crate) const LOOKUP_CHUNK: usize = 500;

/// The collection store (归集共享库).
#[derive(Clone)]
pub struct CollectionStore {
    pool: AnyPool,
    backend: Backend,
    /// The SQLite file, written through the native writer; `None` on PostgreSQL.
    sqlite_file: Option<PathBuf>,
    writer: Arc<Mutex<()>>,
    flows: crate::flows::FlowWriter,
}

impl CollectionStore {
    pub(crate) fn new(pool: AnyPool, backend: Backend, sqlite_file: Option<PathBuf>) -> Self {
        Self {
            flows: crate::flows::FlowWriter::new(pool.clone(), backend, sqlite_file.clone()),
            pool,
            backend,
            sqlite_file,
            writer: Arc::new(Mutex::new(())),
        }
    }

    /// The writer of the flows into this store (work orders) and their cursors.
    pub fn flow_writer(&self) -> &crate::flows::FlowWriter {
        &self.flows
    }

    /// The underlying pool (for tests and maintenance commands).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Start writing a batch. Batches are written one at a time; the whole batch is one transaction,
    /// so a crash leaves the store as before the batch or with the batch complete.
    pub async fn begin_batch(&self) -> Result<BatchWriter, StoreError> {
        let guard = self.writer.clone().lock_owned().await;
        let inner = match &self.sqlite_file {
            Some(path) => WriterKind::Native(NativeBatch::begin(path).await?),
            None => {
                let mut tx = self.pool.begin().await?;
                let next_id: i64 = sqlx::query("SELECT COALESCE(MAX(id), 0) + 1 AS n FROM records")
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get("n")?;
                WriterKind::Sqlx(SqlxBatch {
                    tx,
                    backend: self.backend,
                    first_id: next_id,
                    next_id,
                    insert_sql: HashMap::new(),
                })
            }
        };
        let started_empty = match &inner {
            WriterKind::Sqlx(w) => w.next_id == 1,
            WriterKind::Native(w) => w.next_id() == 1,
        };
        Ok(BatchWriter {
            inner,
            started_empty,
            rule_counts: Default::default(),
            _guard: guard,
        })
    }

    /// Records matching `filter`, ordered by id.
    pub async fn query(&self, filter: &RecordFilter) -> Result<Vec<StoredRecord>, StoreError> {
        let mut sql = format!("SELECT {RECORD_COLUMNS} FROM records WHERE 1 = 1");
        let mut args: Vec<String> = Vec::new();
        let mut cond = |sql: &mut String, column: &str, op: &str, value: &Option<String>| {
            if let Some(v) = value {
                args.push(v.clone());
                sql.push_str(&format!(" AND {column} {op} ${}", args.len()));
            }
        };
        cond(&mut sql, "subject_code", "=", &filter.subject_code);
        cond(&mut sql, "subject_index", "=", &filter.subject_index);
        cond(&mut sql, "category", "=", &filter.category);
        cond(&mut sql, "source_unit", "=", &filter.source_unit);
        cond(&mut sql, "decision_date", ">=", &filter.decided_from);
        cond(&mut sql, "decision_date", "<=", &filter.decided_to);
        cond(&mut sql, "status", "=", &filter.status);
        let limit = filter.limit.unwrap_or(100).min(10_000);
        let offset = filter.offset.unwrap_or(0);
        sql.push_str(&format!(" ORDER BY id LIMIT {limit} OFFSET {offset}"));
        let mut q = sqlx::query(&sql);
        for a in args {
            q = q.bind(a);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(stored_record).collect()
    }

    /// Records of subjects with a USCC and an id above `after_id`, in id order, at most `limit`:
    /// a full scan in pages (the private-query index is built from it).
    pub async fn scan_subject_records(
        &self,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {RECORD_COLUMNS} FROM records WHERE subject_code IS NOT NULL AND id > $1 \
             ORDER BY id LIMIT {}",
            limit.clamp(1, 100_000)
        ))
        .bind(after_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(stored_record).collect()
    }

    /// The data log's last sequence number (0 when empty): a watermark for
    /// [`CollectionStore::subjects_written_after`].
    pub async fn log_watermark(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COALESCE(MAX(seq), 0) FROM data_log")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Subjects (USCC) whose current records were written by a batch logged after `after` and
    /// at or before `upto` (data-log sequence numbers).
    pub async fn subjects_written_after(
        &self,
        after: i64,
        upto: i64,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT r.subject_code FROM records r JOIN data_log l ON r.batch_id = l.batch_id \
             WHERE l.seq > $1 AND l.seq <= $2 AND r.subject_code IS NOT NULL",
        )
        .bind(after)
        .bind(upto)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| row.try_get(0).map_err(StoreError::from))
            .collect()
    }

    /// Earlier versions of a record, oldest first.
    pub async fn history(&self, id: i64) -> Result<Vec<StoredRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {RECORD_COLUMNS} FROM record_history WHERE id = $1 ORDER BY version"
        ))
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(stored_record).collect()
    }

    /// Number of current records.
    pub async fn record_count(&self) -> Result<i64, StoreError> {
        crate::count_records(&self.pool).await
    }

    /// The data-log entry of a batch.
    pub async fn batch(&self, batch_id: &str) -> Result<LogEntry, StoreError> {
        datalog::entry_by_batch(&self.pool, batch_id).await
    }

    /// The complete per-row report of a batch, in row order: rows without a remark (in
    /// `batch_remarks`, or in `batch_rows` and `batch_faults` for batches written before those)
    /// were stored without remark.
    pub async fn batch_report(&self, batch_id: &str) -> Result<Vec<ReportRow>, StoreError> {
        let entry = self.batch(batch_id).await?;
        let mut remarks: HashMap<u64, ReportRow> = HashMap::new();
        for row in
            sqlx::query("SELECT row_number, outcome, warnings FROM batch_rows WHERE batch_id = $1")
                .bind(batch_id)
                .fetch_all(&self.pool)
                .await?
        {
            let n: i64 = row.try_get("row_number")?;
            let outcome: String = row.try_get("outcome")?;
            let warnings: String = row.try_get("warnings")?;
            remarks.insert(
                n as u64,
                ReportRow {
                    row: n as u64,
                    outcome: Outcome::parse(&outcome)?,
                    faults: Vec::new(),
                    warnings: serde_json::from_str(&warnings)
                        .map_err(|e| StoreError::Corrupt(format!("warnings of row {n}: {e}")))?,
                },
            );
        }
        for row in sqlx::query(
            "SELECT row_number, field, rule, reason FROM batch_faults WHERE batch_id = $1",
        )
        .bind(batch_id)
        .fetch_all(&self.pool)
        .await?
        {
            let n: i64 = row.try_get("row_number")?;
            let entry = remarks
                .get_mut(&(n as u64))
                .ok_or_else(|| StoreError::Corrupt(format!("fault for unknown row {n}")))?;
            entry.faults.push(RowFault {
                field: row.try_get("field")?,
                rule: row.try_get("rule")?,
                reason: row.try_get("reason")?,
            });
        }
        for row in
            sqlx::query("SELECT body FROM batch_remarks WHERE batch_id = $1 ORDER BY first_row")
                .bind(batch_id)
                .fetch_all(&self.pool)
                .await?
        {
            let body: String = row.try_get("body")?;
            for line in body.lines() {
                let remark: ReportRow = serde_json::from_str(line)
                    .map_err(|e| StoreError::Corrupt(format!("remark of batch {batch_id}: {e}")))?;
                remarks.insert(remark.row, remark);
            }
        }
        let total = entry.total as u64;
        Ok((1..=total)
            .map(|n| {
                remarks.remove(&n).unwrap_or(ReportRow {
                    row: n,
                    outcome: Outcome::Stored,
                    faults: Vec::new(),
                    warnings: Vec::new(),
                })
            })
            .collect())
    }

    /// Append an access entry (query, export, unmasked read) to the data log.
    pub async fn log_access(
        &self,
        at: &str,
        kind: &str,
        actor: &str,
        detail: serde_json::Value,
    ) -> Result<(), StoreError> {
        let _guard = self.writer.lock().await;
        let mut tx = self.pool.begin().await?;
        datalog::append(&mut tx, &LogEntry::access(at, kind, actor, detail)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Check the data log's hash chain and that every batch referenced by a record is logged.
    pub async fn verify_audit(&self) -> Result<datalog::AuditReport, StoreError> {
        datalog::verify(&self.pool).await
    }
}

pub(crate) fn stored_record(row: &AnyRow) -> Result<StoredRecord, StoreError> {
    let payload: String = row.try_get("payload")?;
    Ok(StoredRecord {
        id: row.try_get("id")?,
        category: row.try_get("category")?,
        version: row.try_get("version")?,
        status: row.try_get("status")?,
        source_unit: row.try_get("source_unit")?,
        subject_code: row.try_get("subject_code")?,
        document_number: row.try_get("document_number")?,
        decision_date: row.try_get("decision_date")?,
        batch_id: row.try_get("batch_id")?,
        payload: serde_json::from_str(&payload)
            .map_err(|e| StoreError::Corrupt(format!("payload: {e}")))?,
        personal: row.try_get("personal")?,
        key_hash: Some(row.try_get("key_hash")?),
        ingested_at: row.try_get("ingested_at")?,
    })
}

/// A lookup of business keys (see [`BatchWriter::lookup`]): queued on SQLite, done on PostgreSQL.
pub struct PendingLookup(LookupKind);

enum LookupKind {
    Done(KeyMap<ExistingRecord>),
    Queued {
        reply: crate::native::Reply<KeyMap<ExistingRecord>>,
        failures: crate::native::FailureSlot,
    },
}

impl PendingLookup {
    pub(crate) fn queued(
        reply: crate::native::Reply<KeyMap<ExistingRecord>>,
        failures: crate::native::FailureSlot,
    ) -> Self {
        Self(LookupKind::Queued { reply, failures })
    }

    /// The records found, keyed by business-key hash. A write queued before the lookup that failed
    /// is the real cause of any trouble and is reported instead.
    pub async fn wait(self) -> Result<KeyMap<ExistingRecord>, StoreError> {
        match self.0 {
            LookupKind::Done(found) => Ok(found),
            LookupKind::Queued { reply, failures } => {
                let found = crate::native::reply(reply).await;
                match crate::native::take_failure(&failures) {
                    Some(earlier) => Err(earlier),
                    None => found,
                }
            }
        }
    }
}

/// Writes one batch inside one transaction. Dropping it without [`BatchWriter::commit`] rolls the
/// whole batch back. On SQLite the writes go through the native writer thread, on PostgreSQL
/// through sqlx; both keep the same statements and the same transaction boundaries.
pub struct BatchWriter {
    inner: WriterKind,
    started_empty: bool,
    /// Faults by rule among the rows reported so far.
    rule_counts: std::collections::BTreeMap<String, i64>,
    _guard: OwnedMutexGuard<()>,
}

enum WriterKind {
    Sqlx(SqlxBatch),
    Native(NativeBatch),
}

impl BatchWriter {
    /// Whether the store held no record when the batch began (then only this batch's own keys can
    /// already exist).
    pub fn started_empty(&self) -> bool {
        self.started_empty
    }

    /// Look up the current versions of the records with these business-key hashes in `category`.
    /// On SQLite the lookup is queued behind the batch's earlier writes and [`PendingLookup::wait`]
    /// collects it, so a caller can queue more writes before it waits; on PostgreSQL it runs at once.
    pub async fn lookup(
        &mut self,
        category: &str,
        key_hashes: &[&str],
    ) -> Result<PendingLookup, StoreError> {
        if key_hashes.is_empty() {
            return Ok(PendingLookup(LookupKind::Done(KeyMap::default())));
        }
        match &mut self.inner {
            WriterKind::Sqlx(w) => Ok(PendingLookup(LookupKind::Done(
                w.lookup(category, key_hashes).await?,
            ))),
            WriterKind::Native(w) => w.lookup(category, key_hashes),
        }
    }

    /// Insert new records (version 1), returning their ids.
    pub async fn insert(
        &mut self,
        batch_id: &str,
        ingested_at: &str,
        records: Vec<NewRecord>,
    ) -> Result<Vec<i64>, StoreError> {
        match &mut self.inner {
            WriterKind::Sqlx(w) => w.insert(batch_id, ingested_at, records).await,
            WriterKind::Native(w) => w.insert(batch_id, ingested_at, records).await,
        }
    }

    /// Wait until every write queued so far has been applied (the SQLite writer queues inserts and
    /// report rows without waiting); reports the first failure.
    pub async fn flush(&mut self) -> Result<(), StoreError> {
        match &mut self.inner {
            WriterKind::Sqlx(_) => Ok(()),
            WriterKind::Native(w) => w.flush().await,
        }
    }

    /// Replace the current version of the record under `record`'s business key: the old version
    /// goes to history. (On SQLite the write is queued like inserts; a failure is reported by the
    /// next wait.)
    pub async fn supersede(
        &mut self,
        batch_id: &str,
        ingested_at: &str,
        record: NewRecord,
    ) -> Result<(), StoreError> {
        match &mut self.inner {
            WriterKind::Sqlx(w) => w.supersede(batch_id, ingested_at, record).await,
            WriterKind::Native(w) => w.supersede(batch_id, ingested_at, record),
        }
    }

    /// Record the report lines of a run of rows that were not plainly stored (one chunk, in row
    /// order): one stored row holds them all as JSON lines (`batch_remarks`), and their faults
    /// are counted by rule for the quality report.
    pub async fn report(&mut self, batch_id: &str, rows: &[ReportRow]) -> Result<(), StoreError> {
        let Some(first) = rows.first() else {
            return Ok(());
        };
        let mut body = String::with_capacity(rows.len() * 160);
        for r in rows {
            for f in &r.faults {
                *self.rule_counts.entry(f.rule.clone()).or_default() += 1;
            }
            body.push_str(
                &serde_json::to_string(r).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            );
            body.push('\n');
        }
        let first_row = first.row as i64;
        match &mut self.inner {
            WriterKind::Sqlx(w) => w.remarks(batch_id, first_row, body).await,
            WriterKind::Native(w) => w.remarks(batch_id, first_row, body),
        }
    }

    /// Append the batch to the data log and commit everything at once.
    pub async fn commit(self, at: &str, summary: &BatchSummary) -> Result<LogEntry, StoreError> {
        let entry = LogEntry::batch(at, summary);
        let rule_counts: Vec<(String, i64)> = self.rule_counts.into_iter().collect();
        match self.inner {
            WriterKind::Sqlx(w) => w.commit(entry, rule_counts).await,
            WriterKind::Native(w) => w.commit(entry, rule_counts).await,
        }
    }

    /// Abandon the batch: nothing it wrote stays.
    pub async fn rollback(self) -> Result<(), StoreError> {
        match self.inner {
            WriterKind::Sqlx(w) => w.rollback().await,
            WriterKind::Native(w) => w.rollback().await,
        }
    }
}

/// The sqlx (PostgreSQL) batch writer.
struct SqlxBatch {
    tx: Transaction<'static, Any>,
    backend: Backend,
    first_id: i64,
    next_id: i64,
    insert_sql: HashMap<usize, String>,
}

impl SqlxBatch {
    /// The current versions of the records with these business-key hashes in `category`.
    async fn lookup(
        &mut self,
        category: &str,
        key_hashes: &[&str],
    ) -> Result<KeyMap<ExistingRecord>, StoreError> {
        let mut found = KeyMap::default();
        for chunk in key_hashes.chunks(LOOKUP_CHUNK) {
            let ph = placeholders(self.backend, 1, chunk.len() + 1);
            let sql = format!(
                "SELECT key_hash, id, version, content_hash FROM records WHERE category = {} AND key_hash IN ({})",
                ph[0],
                ph[1..].join(",")
            );
            let mut q = sqlx::query(&sql).bind(category.to_owned());
            for k in chunk {
                q = q.bind((*k).to_owned());
            }
            for row in q.fetch_all(&mut *self.tx).await? {
                found.insert(
                    row.try_get::<String, _>("key_hash")?,
                    ExistingRecord {
                        id: row.try_get("id")?,
                        version: row.try_get("version")?,
                        content_hash: row.try_get("content_hash")?,
                    },
                );
            }
        }
        Ok(found)
    }

    /// Insert new records (version 1), returning their ids.
    async fn insert(
        &mut self,
        batch_id: &str,
        ingested_at: &str,
        records: Vec<NewRecord>,
    ) -> Result<Vec<i64>, StoreError> {
        let mut ids = Vec::with_capacity(records.len());
        let mut records = records.into_iter().peekable();
        while records.peek().is_some() {
            let chunk: Vec<NewRecord> = records.by_ref().take(INSERT_CHUNK).collect();
            let n = chunk.len();
            let sql = self
                .insert_sql
                .entry(n)
                .or_insert_with(|| {
                    format!(
                        "INSERT INTO records ({RECORD_COLUMNS}) VALUES {}",
                        values_clause(self.backend, n, RECORD_COLUMN_COUNT)
                    )
                })
                .clone();
            let mut q = sqlx::query(&sql);
            for r in chunk {
                let id = self.next_id;
                self.next_id += 1;
                ids.push(id);
                let f = r.fields();
                let (category, key_hash) = (f.category.to_owned(), f.key_hash.to_owned());
                q = bind_version(
                    q.bind(id).bind(category).bind(key_hash).bind(1_i64),
                    &r,
                    batch_id,
                    ingested_at,
                );
            }
            q.execute(&mut *self.tx).await?;
        }
        Ok(ids)
    }

    /// Replace the current version of the record under `record`'s business key: the old version
    /// goes to history.
    async fn supersede(
        &mut self,
        batch_id: &str,
        ingested_at: &str,
        record: NewRecord,
    ) -> Result<(), StoreError> {
        let key = record.key_hash().to_owned();
        sqlx::query(&format!(
            "INSERT INTO record_history ({RECORD_COLUMNS}, superseded_by_batch) \
             SELECT {RECORD_COLUMNS}, $2 FROM records WHERE key_hash = $1"
        ))
        .bind(key.clone())
        .bind(batch_id.to_owned())
        .execute(&mut *self.tx)
        .await?;
        let sql = supersede_sql("UPDATE", "$");
        let done = bind_version(
            sqlx::query(&sql).bind(key.clone()),
            &record,
            batch_id,
            ingested_at,
        )
        .execute(&mut *self.tx)
        .await?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::NotFound(format!("record {key}")))
        }
    }

    /// Store one chunk's remarks.
    async fn remarks(
        &mut self,
        batch_id: &str,
        first_row: i64,
        body: String,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO batch_remarks (batch_id, first_row, body) VALUES ($1, $2, $3)")
            .bind(batch_id.to_owned())
            .bind(first_row)
            .bind(body)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn commit(
        mut self,
        entry: LogEntry,
        rule_counts: Vec<(String, i64)>,
    ) -> Result<LogEntry, StoreError> {
        for (rule, faults) in rule_counts {
            sqlx::query(
                "INSERT INTO batch_rule_counts (batch_id, rule, faults) VALUES ($1, $2, $3)",
            )
            .bind(entry.batch_id.clone())
            .bind(rule)
            .bind(faults)
            .execute(&mut *self.tx)
            .await?;
        }
        if self.next_id > self.first_id {
            sqlx::query(SPAN_SQL)
                .bind(entry.batch_id.clone())
                .bind(self.first_id)
                .bind(self.next_id)
                .execute(&mut *self.tx)
                .await?;
        }
        let entry = datalog::append(&mut self.tx, &entry).await?;
        self.tx.commit().await?;
        Ok(entry)
    }

    /// Abandon the batch: nothing it wrote stays.
    async fn rollback(self) -> Result<(), StoreError> {
        self.tx.rollback().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{NewRecord, RecordFields};

    #[test]
    fn a_record_reads_back_every_field_as_built() {
        let full = RecordFields {
            category: "xzcf",
            key_hash: "0123456789abcdef0123456789abcdef",
            status: "active",
            source_unit: "11510700050000551L",
            subject_code: Some("91510600100000243C"),
            subject_index: Some("blind"),
            document_number: "德市监罚〔2024〕24号",
            decision_date: Some("2024/09/30"),
            lag_days: Some(788),
            content_hash: "63792fe2a5587964a4bae47821b7e2c9",
            payload: r#"{"CF_XDR_MC":"德阳卧龙建筑工程有限公司"}"#,
            personal: Some("~sealed"),
        };
        // Every combination of present, absent and present-but-empty optional texts, with the
        // required texts empty or not.
        for mask in 0..(1u32 << 8) {
            let pick = |i: u32, value: Option<&'static str>| match (mask >> (2 * i)) & 3 {
                0 => None,
                1 => Some(""),
                _ => value,
            };
            let fields = RecordFields {
                subject_code: pick(0, full.subject_code),
                subject_index: pick(1, full.subject_index),
                decision_date: pick(2, full.decision_date),
                personal: pick(3, full.personal),
                status: if mask & 1 == 0 { "" } else { full.status },
                lag_days: (mask & 2 == 0).then_some(-1),
                ..full
            };
            let record = NewRecord::new(fields);
            assert_eq!(record.fields(), fields, "mask {mask:#b}");
            assert_eq!(record.key_hash(), full.key_hash);
            assert_eq!(record.content_hash(), full.content_hash);
            assert_eq!(record.clone().fields(), fields);
        }
        assert_eq!(
            NewRecord::new(RecordFields::default()).fields(),
            RecordFields::default()
        );
    }
}
