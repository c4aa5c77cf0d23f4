//! Ingest of credit records into the collection store (归集共享库): files (CSV in UTF-8 or GBK,
//! JSON lines, Excel `.xlsx`), database tables and HTTP pushes.
//!
//! The pipeline is parse → map (v1 → v2) → clean → validate → dedup → store, in two stages joined
//! by a bounded channel: a blocking thread reads, maps, cleans, validates and seals rows; an async
//! task looks up business keys, inserts, versions and writes the report. Memory is bounded by the
//! channel, not by the input. A batch is one transaction: it lands whole or not at all.
//!
//! **Every data row ends stored, updated, duplicate or rejected with field-level reasons**, in the
//! per-row report (JSON lines) and in the store.

mod decode;
mod keyfilter;
mod prepare;
pub mod report;
mod source;
pub mod view;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use chrono::NaiveDate;
use rand::RngCore;
use tokio::sync::mpsc;
use xy_policy::{Category, PolicyError, PolicySet};
use xy_store::{
    BatchSummary, CollectionStore, ExistingRecord, KeyMap, NewRecord, NodeKeys, Outcome,
    OutcomeCounts, ReportRow, StoreError,
};

use crate::prepare::{Prepared, PreparedRows};
use crate::source::{ChannelSource, Counting, CsvSource, JsonlSource, RowSource, XlsxSource};

pub use source::MAX_ROW_BYTES;

/// Errors that stop a whole input (row problems never do: they reject the row).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// The input could not be read.
    #[error("读取输入失败：{0}")]
    Read(std::io::Error),
    /// The input has no header (empty file or sheet).
    #[error("输入为空：没有表头")]
    Empty,
    /// The input is not of its format (broken CSV, unreadable Excel, bad header encoding).
    #[error("输入格式错误：{0}")]
    Malformed(String),
    /// The header does not fit the category, or the category is unknown.
    #[error("{0}")]
    Policy(#[from] PolicyError),
    /// The store failed; the batch was rolled back.
    #[error("存储失败，本批次已回滚：{0}")]
    Store(#[from] StoreError),
    /// The file type is not one the node reads.
    #[error("不支持的文件类型：{0}（支持 .csv .txt .jsonl .ndjson .xlsx）")]
    UnsupportedFormat(String),
    /// A source database could not be read.
    #[error("读取源数据库失败：{0}")]
    SourceDatabase(String),
    /// A bug: a pipeline stage ended unexpectedly.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The input formats the node reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// CSV (UTF-8 or GBK, BOM optional, LF or CRLF).
    Csv,
    /// JSON lines.
    Jsonl,
    /// Excel 2007+ workbook.
    Xlsx,
}

impl InputFormat {
    /// The format of a file by its extension.
    pub fn from_path(path: &Path) -> Result<Self, IngestError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        match ext.as_str() {
            "csv" | "txt" => Ok(Self::Csv),
            "jsonl" | "ndjson" | "json" => Ok(Self::Jsonl),
            "xlsx" => Ok(Self::Xlsx),
            _ => Err(IngestError::UnsupportedFormat(path.display().to_string())),
        }
    }

    /// A format by name (`csv`, `jsonl`, `xlsx`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "csv" => Some(Self::Csv),
            "jsonl" | "ndjson" | "json" => Some(Self::Jsonl),
            "xlsx" => Some(Self::Xlsx),
            _ => None,
        }
    }
}

/// Settings of one ingest.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// The category code or name; detected from the header when absent.
    pub category: Option<String>,
    /// The source unit's USCC: fills rows that lack it, and rows naming another unit are rejected.
    pub source_unit: Option<String>,
    /// Who runs the ingest (recorded in the data log).
    pub operator: String,
    /// The date against which "not in the future" is judged (China Standard Time).
    pub today: NaiveDate,
    /// The time of the ingest (RFC 3339), recorded on records and in the data log.
    pub now: String,
}

/// What an ingest did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IngestResult {
    /// The batch id.
    pub batch_id: String,
    /// The category code.
    pub category: String,
    /// The input.
    pub source: String,
    /// Format and encoding found.
    pub format: String,
    /// Whether legacy (v1) field names were mapped.
    pub legacy_fields: bool,
    /// Columns that belong to no field of the category (ignored).
    pub unknown_columns: Vec<String>,
    /// Counts by outcome.
    pub counts: OutcomeCounts,
    /// The data-log sequence number of the batch.
    pub log_seq: i64,
}

/// Rows per chunk between the two stages.
const CHUNK: usize = 4096;
/// Chunks in flight between the stages (bounds memory).
const CHANNEL_DEPTH: usize = 4;

enum StageMessage {
    Header {
        category: Arc<Category>,
        legacy: bool,
        unknown_columns: Vec<String>,
        format: String,
    },
    Rows(Vec<Prepared>),
}

type SourceFactory = Box<dyn FnOnce() -> Result<Box<dyn RowSource>, IngestError> + Send>;

/// Ingests inputs into a collection store under a policy set.
#[derive(Clone)]
pub struct Ingestor {
    policies: PolicySet,
    collection: CollectionStore,
    keys: NodeKeys,
}

impl Ingestor {
    /// An ingestor writing to `collection`, sealing personal data with `keys`.
    pub fn new(policies: PolicySet, collection: CollectionStore, keys: NodeKeys) -> Self {
        Self {
            policies,
            collection,
            keys,
        }
    }

    /// The policies in force.
    pub fn policies(&self) -> &PolicySet {
        &self.policies
    }

    /// Ingest one file as one batch. `report` receives one JSON line per data row; `progress`
    /// counts the input bytes read.
    pub async fn ingest_file(
        &self,
        path: &Path,
        format: Option<InputFormat>,
        options: &IngestOptions,
        report: Option<Box<dyn Write + Send>>,
        progress: Option<Arc<AtomicU64>>,
    ) -> Result<IngestResult, IngestError> {
        let format = match format {
            Some(f) => f,
            None => InputFormat::from_path(path)?,
        };
        let owned = path.to_path_buf();
        let count = progress.unwrap_or_default();
        let factory: SourceFactory = Box::new(move || {
            let open = || std::fs::File::open(&owned).map_err(IngestError::Read);
            Ok(match format {
                InputFormat::Csv => Box::new(CsvSource::new(Counting {
                    inner: open()?,
                    count,
                })?) as Box<dyn RowSource>,
                InputFormat::Jsonl => Box::new(JsonlSource::new(Counting {
                    inner: open()?,
                    count,
                })?),
                InputFormat::Xlsx => Box::new(XlsxSource::open(&owned)?),
            })
        });
        self.run_logged(factory, path.display().to_string(), options, report)
            .await
    }

    /// Ingest a database table (any sqlx URL: `sqlite://…`, `postgres://…`) as one batch. Report
    /// rows are numbered in read order: name `order_by` (a column) to make that order defined;
    /// without it, rows come in whatever order the database returns them.
    pub async fn ingest_table(
        &self,
        url: &str,
        table: &str,
        order_by: Option<&str>,
        options: &IngestOptions,
        report: Option<Box<dyn Write + Send>>,
    ) -> Result<IngestResult, IngestError> {
        let valid_name = !table.is_empty()
            && table.split('.').all(|p| {
                !p.is_empty() && p.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
            });
        if !valid_name {
            return Err(IngestError::SourceDatabase(format!(
                "表名 {table:?} 不合法"
            )));
        }
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await
            .map_err(|e| IngestError::SourceDatabase(e.to_string()))?;
        let (tx, rx) = mpsc::channel(CHUNK);
        let (header_tx, header_rx) = tokio::sync::oneshot::channel();
        let sql = match order_by {
            Some(column)
                if !column.is_empty()
                    && column
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || c == b'_') =>
            {
                format!("SELECT * FROM {table} ORDER BY {column}")
            }
            Some(column) => {
                return Err(IngestError::SourceDatabase(format!(
                    "排序列名 {column:?} 不合法"
                )));
            }
            None => format!("SELECT * FROM {table}"),
        };
        tokio::spawn(async move { stream_table(pool, sql, header_tx, tx).await });
        let headers = match header_rx.await {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(IngestError::Internal("table reader ended".into())),
        };
        let what = format!("table {table}");
        let factory: SourceFactory = Box::new(move || {
            Ok(Box::new(ChannelSource { headers, rx, what }) as Box<dyn RowSource>)
        });
        let source = format!("{}#{table}", redact_url(url));
        self.run_logged(factory, source, options, report).await
    }

    /// The valid, first-seen records of a CSV file as the pipeline would store them, in chunks,
    /// without touching a store: the pre-parsed rows of the bare-insert baseline in benchmarks, in
    /// chunks of the size the pipeline writes.
    pub fn prepared_records(
        &self,
        path: &Path,
        options: &IngestOptions,
    ) -> Result<impl Iterator<Item = Vec<NewRecord>> + use<>, IngestError> {
        let source = CsvSource::new(std::fs::File::open(path).map_err(IngestError::Read)?)?;
        let mut rows = PreparedRows::new(
            Box::new(source),
            &self.policies,
            options.category.as_deref(),
            self.keys.clone(),
            options.today,
            None,
        )?;
        let mut seen = std::collections::HashSet::new();
        Ok(std::iter::from_fn(move || {
            let mut chunk = Vec::with_capacity(CHUNK);
            while chunk.len() < CHUNK {
                match rows.next_prepared() {
                    Some(Ok(Prepared::Valid { record, .. })) => {
                        if seen.insert(record.key_hash().to_owned()) {
                            chunk.push(record);
                        }
                    }
                    Some(Ok(Prepared::Rejected { .. })) => {}
                    None | Some(Err(_)) => break,
                }
            }
            (!chunk.is_empty()).then_some(chunk)
        }))
    }

    /// Run an ingest; a failed one is written to the data log too (who, what, why), so that every
    /// attempt is on record, not only the batches that landed.
    async fn run_logged(
        &self,
        factory: SourceFactory,
        source_name: String,
        options: &IngestOptions,
        report: Option<Box<dyn Write + Send>>,
    ) -> Result<IngestResult, IngestError> {
        let result = self
            .run(factory, source_name.clone(), options, report)
            .await;
        if let Err(e) = &result {
            let detail = serde_json::json!({ "source": source_name, "error": e.to_string() });
            if let Err(log_error) = self
                .collection
                .log_access(&options.now, "ingest_failed", &options.operator, detail)
                .await
            {
                tracing::error!(error = %log_error, "could not log the failed ingest");
            }
        }
        result
    }

    async fn run(
        &self,
        factory: SourceFactory,
        source_name: String,
        options: &IngestOptions,
        report: Option<Box<dyn Write + Send>>,
    ) -> Result<IngestResult, IngestError> {
        let (tx, mut rx) = mpsc::channel::<StageMessage>(CHANNEL_DEPTH);
        let policies = self.policies.clone();
        let keys = self.keys.clone();
        let opts = options.clone();
        let cpu = tokio::task::spawn_blocking(move || {
            prepare_stage(factory, &policies, &keys, &opts, tx)
        });
        let header = rx.recv().await;
        let Some(StageMessage::Header {
            category,
            legacy,
            unknown_columns,
            format,
        }) = header
        else {
            // The CPU stage failed before the header: its error explains why.
            return Err(join_error(cpu.await).err().unwrap_or(IngestError::Empty));
        };
        let batch_id = new_batch_id(&options.now);
        let writer = self.collection.begin_batch().await?;
        let mut batch = BatchState {
            known: keyfilter::KeyFilter::new(writer.started_empty()),
            writer,
            category: &category.code,
            batch_id: &batch_id,
            now: &options.now,
            counts: OutcomeCounts::default(),
            report: report.map(std::io::BufWriter::new),
        };
        let mut units = SourceUnits::default();
        let failure = batch.write_all(&mut rx, &mut units).await.err();
        drop(rx);
        let stage = join_error(cpu.await);
        let BatchState {
            writer,
            counts,
            mut report,
            ..
        } = batch;
        if let Some(e) = failure.or(stage.err()) {
            writer.rollback().await?;
            return Err(e);
        }
        let summary = BatchSummary {
            batch_id: batch_id.clone(),
            operator: options.operator.clone(),
            source_unit: options
                .source_unit
                .clone()
                .unwrap_or_else(|| units.batch_unit()),
            category: category.code.clone(),
            source: source_name.clone(),
            counts,
            detail: serde_json::json!({ "format": format, "legacy_fields": legacy, "unknown_columns": unknown_columns }),
        };
        let committing = std::time::Instant::now();
        let entry = writer.commit(&options.now, &summary).await?;
        tracing::debug!(elapsed = ?committing.elapsed(), "batch commit");
        if let Some(r) = report.as_mut() {
            r.flush().map_err(IngestError::Read)?;
        }
        tracing::info!(batch = %batch_id, category = %category.code, total = counts.total, stored = counts.stored,
            updated = counts.updated, duplicate = counts.duplicate, rejected = counts.rejected, "batch committed");
        Ok(IngestResult {
            batch_id,
            category: category.code.clone(),
            source: source_name,
            format,
            legacy_fields: legacy,
            unknown_columns,
            counts,
            log_seq: entry.seq,
        })
    }
}

fn join_error(
    r: Result<Result<(), IngestError>, tokio::task::JoinError>,
) -> Result<(), IngestError> {
    match r {
        Ok(inner) => inner,
        Err(e) => Err(IngestError::Internal(format!("ingest stage failed: {e}"))),
    }
}

fn new_batch_id(now: &str) -> String {
    let stamp: String = now.chars().filter(char::is_ascii_digit).take(14).collect();
    let mut r = [0u8; 6];
    rand::rng().fill_bytes(&mut r);
    format!("B{stamp}-{}", hex_lower(&r))
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The CPU stage over bytes in memory, for fuzzing the readers: encoding detection, CSV, JSON
/// lines or xlsx, then mapping, cleaning, validation and sealing of every row. Returns the number of
/// valid rows; any error is an input error, and nothing may panic.
pub fn fuzz_rows(
    data: &[u8],
    format: InputFormat,
    policies: &PolicySet,
) -> Result<usize, IngestError> {
    let source: Box<dyn RowSource + '_> = match format {
        InputFormat::Csv => Box::new(CsvSource::new(data)?),
        InputFormat::Jsonl => Box::new(JsonlSource::new(data)?),
        InputFormat::Xlsx => Box::new(XlsxSource::from_reader(std::io::Cursor::new(data))?),
    };
    let keys = NodeKeys::from_master(&[0x5a; 32]);
    let today = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap_or_default();
    let mut rows = PreparedRows::new(source, policies, None, keys, today, None)?;
    let mut valid = 0;
    while let Some(prepared) = rows.next_prepared() {
        if let Prepared::Valid { .. } = prepared? {
            valid += 1;
        }
    }
    Ok(valid)
}

/// Today's date and the current time (RFC 3339, seconds) in China Standard Time (UTC+8), where
/// decisions are dated: "not in the future" is judged against this date.
pub fn now_china() -> (NaiveDate, String) {
    let offset = chrono::FixedOffset::east_opt(8 * 3600)
        .unwrap_or_else(|| unreachable!("UTC+8 is a valid offset"));
    let now = chrono::Utc::now().with_timezone(&offset);
    (
        now.date_naive(),
        now.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
    )
}

/// How a subject identifier is looked up: a USCC by its code, anything else as a personal identity
/// number through its blind index. Returns (code, blind index, a form safe to log).
pub fn subject_lookup(subject: &str, keys: &NodeKeys) -> (Option<String>, Option<String>, String) {
    let mut s = xy_policy::text::trim_all(subject).to_owned();
    xy_policy::text::to_half_width(&mut s);
    s.make_ascii_uppercase();
    match xy_policy::identifiers::check_uscc(&s) {
        xy_policy::identifiers::CodeCheck::Invalid(_) => {
            let shown = xy_policy::identifiers::mask_id_number(&s);
            (None, Some(keys.blind_index(&s)), shown)
        }
        _ => (Some(s.clone()), None, s),
    }
}

/// Strip a password from a database URL before it is logged or stored.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

fn prepare_stage(
    factory: SourceFactory,
    policies: &PolicySet,
    keys: &NodeKeys,
    options: &IngestOptions,
    tx: mpsc::Sender<StageMessage>,
) -> Result<(), IngestError> {
    let mut rows = PreparedRows::new(
        factory()?,
        policies,
        options.category.as_deref(),
        keys.clone(),
        options.today,
        options.source_unit.clone(),
    )?;
    let header = StageMessage::Header {
        category: rows.category().clone(),
        legacy: rows.mapping().legacy,
        unknown_columns: rows.mapping().unknown_columns.clone(),
        format: rows.describe(),
    };
    if tx.blocking_send(header).is_err() {
        return Ok(());
    }
    let mut chunk = Vec::with_capacity(CHUNK);
    while let Some(prepared) = rows.next_prepared() {
        chunk.push(prepared?);
        if chunk.len() == CHUNK {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
            if tx.blocking_send(StageMessage::Rows(full)).is_err() {
                // The writer stopped (and will report why).
                return Ok(());
            }
        }
    }
    if !chunk.is_empty() {
        let _ = tx.blocking_send(StageMessage::Rows(chunk));
    }
    Ok(())
}

/// The source units named by the valid rows of a batch without a declared unit: the batch is
/// attributed to the unit when there is exactly one.
#[derive(Default)]
struct SourceUnits {
    first: Option<String>,
    several: bool,
}

impl SourceUnits {
    fn note(&mut self, rows: &[Prepared]) {
        for p in rows {
            if let Prepared::Valid { record, .. } = p {
                match &self.first {
                    None => self.first = Some(record.fields().source_unit.to_owned()),
                    Some(u) if u != record.fields().source_unit => self.several = true,
                    Some(_) => {}
                }
            }
        }
    }

    fn batch_unit(&self) -> String {
        match (&self.first, self.several) {
            (Some(u), false) => u.clone(),
            (Some(_), true) => "(多个来源单位)".into(),
            (None, _) => String::new(),
        }
    }
}

/// What the writer stage knows of business keys, newest first: this chunk's own outcomes, the
/// previous chunk's, then the store as the lookup saw it. Each maps a key to its current content hash.
struct KeyView<'k> {
    chunk: KeyMap<String>,
    previous: &'k KeyMap<String>,
    stored: KeyMap<ExistingRecord>,
}

impl KeyView<'_> {
    fn content_hash(&self, key: &str) -> Option<&str> {
        self.chunk
            .get(key)
            .or_else(|| self.previous.get(key))
            .or_else(|| self.stored.get(key).map(|e| &e.content_hash))
            .map(String::as_str)
    }
}

/// The writes of one classified chunk, in the order they must be applied.
enum ChunkWrite {
    Insert(Vec<NewRecord>),
    Supersede(Box<NewRecord>),
}

/// A classified chunk: its writes, the report rows to keep, and the content hash of every key it
/// stored or updated.
struct Classified {
    writes: Vec<ChunkWrite>,
    remarks: Vec<ReportRow>,
    outcomes: KeyMap<String>,
}

/// The writer stage of one batch: its transaction, the keys it has seen, counts and report.
struct BatchState<'a> {
    writer: xy_store::BatchWriter,
    known: keyfilter::KeyFilter,
    category: &'a str,
    batch_id: &'a str,
    now: &'a str,
    counts: OutcomeCounts,
    report: Option<std::io::BufWriter<Box<dyn Write + Send>>>,
}

impl BatchState<'_> {
    /// Classify and write every chunk the CPU stage sends.
    ///
    /// Each chunk's keys are looked up in the store before the chunk is classified. When the next
    /// chunk is already waiting, its lookup is queued *before* this chunk's writes: the SQLite
    /// writer then goes from one chunk's writes to the next without waiting for the classifier.
    /// That lookup sees the store as of the chunk before, so this chunk's own outcomes are carried
    /// over to the next classification and take precedence.
    async fn write_all(
        &mut self,
        rx: &mut mpsc::Receiver<StageMessage>,
        units: &mut SourceUnits,
    ) -> Result<(), IngestError> {
        let mut carried = KeyMap::default();
        let Some(mut rows) = next_rows(rx).await else {
            return Ok(());
        };
        let mut lookup = self.lookup(&rows, &carried).await?;
        loop {
            units.note(&rows);
            let stored = lookup.wait().await?;
            let chunk = self.classify(rows, stored, &carried)?;
            let ready = match rx.try_recv() {
                Ok(StageMessage::Rows(next)) => Some(next),
                _ => None,
            };
            let ahead = match &ready {
                Some(next) => Some(self.lookup(next, &chunk.outcomes).await?),
                None => None,
            };
            self.apply(chunk.writes, &chunk.remarks).await?;
            carried = chunk.outcomes;
            rows = match ready {
                Some(next) => next,
                None => match next_rows(rx).await {
                    Some(next) => next,
                    None => return Ok(()),
                },
            };
            lookup = match ahead {
                Some(l) => l,
                None => self.lookup(&rows, &carried).await?,
            };
        }
    }

    /// Queue the lookup of the keys of `rows` that may be stored and are not already known from
    /// the previous chunk's outcomes. Marks each key it tests in the filter of written keys: once
    /// this chunk is written, the store holds every one of them (stored now, or before).
    async fn lookup(
        &mut self,
        rows: &[Prepared],
        carried: &KeyMap<String>,
    ) -> Result<xy_store::PendingLookup, IngestError> {
        let keys: Vec<&str> = rows
            .iter()
            .filter_map(|p| match p {
                Prepared::Valid { record, .. }
                    if !carried.contains_key(record.key_hash())
                        && self.known.check_and_insert(record.key_hash()) =>
                {
                    Some(record.key_hash())
                }
                _ => None,
            })
            .collect();
        Ok(self.writer.lookup(self.category, &keys).await?)
    }

    /// Decide each row's outcome (stored, updated, duplicate, rejected), count it and write its
    /// report line; return the writes to make.
    fn classify(
        &mut self,
        rows: Vec<Prepared>,
        stored: KeyMap<ExistingRecord>,
        carried: &KeyMap<String>,
    ) -> Result<Classified, IngestError> {
        let mut view = KeyView {
            chunk: KeyMap::with_capacity_and_hasher(rows.len(), Default::default()),
            previous: carried,
            stored,
        };
        let mut writes = Vec::new();
        let mut to_insert: Vec<NewRecord> = Vec::with_capacity(rows.len());
        let mut remarks = Vec::new();
        for p in rows {
            let line = match p {
                Prepared::Rejected {
                    row,
                    faults,
                    warnings,
                } => ReportRow {
                    row,
                    outcome: Outcome::Rejected,
                    faults,
                    warnings,
                },
                Prepared::Valid {
                    row,
                    record,
                    warnings,
                } => {
                    let outcome = match view.content_hash(record.key_hash()) {
                        None => Outcome::Stored,
                        Some(current) if current == record.content_hash() => Outcome::Duplicate,
                        Some(_) => Outcome::Updated,
                    };
                    if outcome != Outcome::Duplicate {
                        view.chunk.insert(
                            record.key_hash().to_owned(),
                            record.content_hash().to_owned(),
                        );
                    }
                    match outcome {
                        Outcome::Stored => to_insert.push(record),
                        Outcome::Updated => {
                            // Rows stored earlier in the chunk go first: the change may be to one of them.
                            if !to_insert.is_empty() {
                                writes.push(ChunkWrite::Insert(std::mem::take(&mut to_insert)));
                            }
                            writes.push(ChunkWrite::Supersede(Box::new(record)));
                        }
                        _ => {}
                    }
                    ReportRow {
                        row,
                        outcome,
                        faults: Vec::new(),
                        warnings,
                    }
                }
            };
            self.counts.add(line.outcome);
            if let Some(r) = self.report.as_mut() {
                report::write_jsonl_line(r, &line).map_err(IngestError::Read)?;
            }
            if line.outcome != Outcome::Stored || !line.warnings.is_empty() {
                remarks.push(line);
            }
        }
        if !to_insert.is_empty() {
            writes.push(ChunkWrite::Insert(to_insert));
        }
        Ok(Classified {
            writes,
            remarks,
            outcomes: view.chunk,
        })
    }

    /// Queue (SQLite) or make (PostgreSQL) a chunk's writes and report rows.
    async fn apply(
        &mut self,
        writes: Vec<ChunkWrite>,
        remarks: &[ReportRow],
    ) -> Result<(), IngestError> {
        for w in writes {
            match w {
                ChunkWrite::Insert(records) => {
                    self.writer.insert(self.batch_id, self.now, records).await?;
                }
                ChunkWrite::Supersede(record) => {
                    self.writer
                        .supersede(self.batch_id, self.now, *record)
                        .await?;
                }
            }
        }
        self.writer.report(self.batch_id, remarks).await?;
        Ok(())
    }
}

/// The next chunk of rows from the CPU stage, or `None` when it has sent everything.
async fn next_rows(rx: &mut mpsc::Receiver<StageMessage>) -> Option<Vec<Prepared>> {
    loop {
        match rx.recv().await? {
            StageMessage::Rows(rows) => return Some(rows),
            StageMessage::Header { .. } => continue,
        }
    }
}

async fn stream_table(
    pool: sqlx::AnyPool,
    sql: String,
    header_tx: tokio::sync::oneshot::Sender<Result<Vec<String>, IngestError>>,
    tx: mpsc::Sender<Result<Vec<String>, IngestError>>,
) {
    use futures_lite::StreamExt;
    use sqlx::{Column, Row};
    let mut header_tx = Some(header_tx);
    let mut stream = sqlx::query(&sql).fetch(&pool);
    loop {
        let next = stream.next().await;
        let row = match next {
            None => break,
            Some(Err(e)) => {
                let err = IngestError::SourceDatabase(e.to_string());
                match header_tx.take() {
                    Some(h) => {
                        let _ = h.send(Err(err));
                    }
                    None => {
                        let _ = tx.send(Err(err)).await;
                    }
                }
                return;
            }
            Some(Ok(row)) => row,
        };
        if let Some(h) = header_tx.take() {
            let headers = row.columns().iter().map(|c| c.name().to_owned()).collect();
            if h.send(Ok(headers)).is_err() {
                return;
            }
        }
        let cells = (0..row.columns().len())
            .map(|i| any_cell(&row, i))
            .collect();
        if tx.send(Ok(cells)).await.is_err() {
            return;
        }
    }
    if let Some(h) = header_tx.take() {
        let _ = h.send(Err(IngestError::Empty));
    }
}

fn any_cell(row: &sqlx::any::AnyRow, i: usize) -> String {
    use sqlx::Row;
    if let Ok(v) = row.try_get::<Option<String>, _>(i) {
        return v.unwrap_or_default();
    }
    if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
        return v.map(|x| x.to_string()).unwrap_or_default();
    }
    if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
        return v.map(|x| x.to_string()).unwrap_or_default();
    }
    if let Ok(v) = row.try_get::<Option<bool>, _>(i) {
        return v.map(|x| x.to_string()).unwrap_or_default();
    }
    // A type the node cannot read as text: the cell becomes U+FFFD and the row is rejected.
    "\u{FFFD}".to_owned()
}
