//! The SQLite batch writer: a dedicated thread that owns a rusqlite connection to the store file
//! and runs the whole batch as one `BEGIN IMMEDIATE` transaction, one cached prepared statement per
//! kind of write. It exists for speed: sqlx's per-argument overhead cost as much as SQLite itself
//! for bulk inserts (see ARCHITECTURE.md). Reads and PostgreSQL still go through sqlx.
//!
//! Async callers send closures over a channel and await their replies. If the writer is dropped
//! without a commit, the connection closes with the transaction open and SQLite rolls it back.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::Path;
use std::sync::LazyLock;
use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::StoreError;
use crate::borrowed::{BorrowedStatement, Param};

type Job = Box<dyn for<'c> FnOnce(&mut Session<'c>) + Send>;

/// What the writer thread's jobs run on: its connection, and the copy-free insert statements
/// prepared on it so far (kept for the whole batch: preparing the multi-row insert for every chunk
/// showed in the writer's profile).
pub(crate) struct Session<'c> {
    conn: &'c Connection,
    inserts: HashMap<usize, BorrowedStatement<'c>>,
}

impl<'c> Session<'c> {
    /// The record insert of `rows` rows ([`insert_records_sql`]), prepared once.
    fn insert_statement(&mut self, rows: usize) -> Result<&mut BorrowedStatement<'c>, StoreError> {
        let conn = self.conn;
        match self.inserts.entry(rows) {
            Entry::Occupied(e) => Ok(e.into_mut()),
            Entry::Vacant(e) => {
                Ok(e.insert(BorrowedStatement::prepare(conn, &insert_records_sql(rows))?))
            }
        }
    }
}

/// The result of a [`NativeWriter::request`], still on its way.
pub(crate) type Reply<R> = oneshot::Receiver<Result<R, StoreError>>;

/// Wait for a requested result.
pub(crate) async fn reply<R>(rx: Reply<R>) -> Result<R, StoreError> {
    rx.await
        .map_err(|_| StoreError::Corrupt("sqlite writer thread ended".into()))?
}

pub(crate) struct NativeWriter {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    failures: FailureSlot,
    _wal_flusher: Option<WalFlusher>,
}

/// Flushes the write-ahead log to disk while a batch is written, so that the commit's `fsync` finds
/// little left to write: a large batch otherwise leaves its whole log (about 1 KiB a record) dirty
/// in the page cache and the commit waits for all of it at once. Syncing early changes nothing
/// but when the bytes reach the disk. Stops when dropped.
struct WalFlusher {
    _stop: mpsc::Sender<()>,
}

impl WalFlusher {
    /// Sync the log each time it has grown by this much.
    const EVERY: u64 = 32 << 20;
    const POLL: std::time::Duration = std::time::Duration::from_millis(20);

    fn start(db: &Path) -> Option<Self> {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        let wal = std::path::PathBuf::from(wal);
        let (stop, stopped) = mpsc::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("xy-sqlite-wal-sync".into())
            .spawn(move || {
                let mut synced = 0u64;
                let mut file: Option<std::fs::File> = None;
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(Self::POLL) {
                    if file.is_none() {
                        file = std::fs::File::open(&wal).ok();
                    }
                    let Some(f) = &file else { continue };
                    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                    if len < synced {
                        synced = 0;
                    }
                    if len - synced >= Self::EVERY {
                        if let Err(e) = f.sync_data() {
                            tracing::debug!(error = %e, "early sync of the write-ahead log failed");
                        }
                        synced = len;
                    }
                }
            });
        match spawned {
            Ok(_) => Some(Self { _stop: stop }),
            Err(e) => {
                tracing::debug!(error = %e, "no early sync of the write-ahead log");
                None
            }
        }
    }
}

/// Where the first failure of a queued job waits to be reported.
pub(crate) type FailureSlot = std::sync::Arc<std::sync::Mutex<Option<StoreError>>>;

/// Take the failure waiting in `slot`, if any.
pub(crate) fn take_failure(slot: &FailureSlot) -> Option<StoreError> {
    slot.lock().ok().and_then(|mut f| f.take())
}

pub(crate) fn sqlite_error(e: rusqlite::Error) -> StoreError {
    StoreError::Database(sqlx::Error::Protocol(format!("sqlite: {e}")))
}

impl NativeWriter {
    /// Open the store file and begin the batch's transaction.
    pub(crate) async fn begin(path: &Path) -> Result<Self, StoreError> {
        let wal_flusher = WalFlusher::start(path);
        let path = path.to_path_buf();
        let (jobs, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = oneshot::channel::<Result<(), StoreError>>();
        let thread = std::thread::Builder::new()
            .name("xy-sqlite-writer".into())
            .spawn(move || {
                let opened = (|| {
                    let conn = Connection::open(&path).map_err(sqlite_error)?;
                    conn.execute_batch(
                        "PRAGMA busy_timeout = 30000; PRAGMA synchronous = FULL; PRAGMA cache_size = -131072; \
                         PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = 0; BEGIN IMMEDIATE",
                    )
                    .map_err(sqlite_error)?;
                    Ok(conn)
                })();
                let conn = match opened {
                    Ok(c) => {
                        let _ = ready_tx.send(Ok(()));
                        c
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let mut session = Session {
                    conn: &conn,
                    inserts: HashMap::new(),
                };
                while let Ok(job) = rx.recv() {
                    job(&mut session);
                }
                // Statements are finalized before their connection closes.
                drop(session);
                // Channel closed: a committed batch has ended its transaction; an abandoned one is
                // rolled back when the connection closes.
            })
            .map_err(|e| StoreError::Io("sqlite writer thread".into(), e))?;
        match ready_rx.await {
            Ok(Ok(())) => Ok(Self {
                jobs: Some(jobs),
                thread: Some(thread),
                failures: Default::default(),
                _wal_flusher: wal_flusher,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(StoreError::Corrupt("sqlite writer thread ended".into())),
        }
    }

    /// Run `f` on the writer's connection and return its result.
    pub(crate) async fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        reply(self.request(f)?).await
    }

    /// Queue `f` now and return where its result will arrive: the caller can queue more work
    /// before it waits (see [`reply`]).
    pub(crate) fn request<R, F>(&self, f: F) -> Result<Reply<R>, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |session: &mut Session<'_>| {
            let _ = tx.send(f(session.conn));
        });
        self.jobs
            .as_ref()
            .ok_or_else(|| StoreError::Corrupt("sqlite writer closed".into()))?
            .send(job)
            .map_err(|_| StoreError::Corrupt("sqlite writer thread ended".into()))?;
        Ok(rx)
    }

    /// Queue `f` without waiting for it; its outcome is collected by [`NativeWriter::failure`].
    /// Jobs run in order, so a later call sees everything queued before it.
    pub(crate) fn queue<F>(&mut self, f: F) -> Result<(), StoreError>
    where
        F: FnOnce(&Connection) -> Result<(), StoreError> + Send + 'static,
    {
        self.queue_in_session(move |session| f(session.conn))
    }

    /// [`NativeWriter::queue`] for a job that uses the session's prepared statements.
    fn queue_in_session<F>(&mut self, f: F) -> Result<(), StoreError>
    where
        F: for<'c> FnOnce(&mut Session<'c>) -> Result<(), StoreError> + Send + 'static,
    {
        let failures = self.failures.clone();
        let job: Job = Box::new(move |session: &mut Session<'_>| {
            if let Err(e) = f(session)
                && let Ok(mut slot) = failures.lock()
            {
                slot.get_or_insert(e);
            }
        });
        self.jobs
            .as_ref()
            .ok_or_else(|| StoreError::Corrupt("sqlite writer closed".into()))?
            .send(job)
            .map_err(|_| StoreError::Corrupt("sqlite writer thread ended".into()))
    }

    /// The first error of a queued job, if any (call after a waited-for call, so that every job
    /// queued before it has run).
    pub(crate) fn failure(&self) -> Option<StoreError> {
        take_failure(&self.failures)
    }

    /// Stop the thread after a commit or rollback job. With `checkpoint`, the thread first copies
    /// the write-ahead log into the database file (PASSIVE: it neither blocks nor waits for readers
    /// or the next batch's writer). The writer connection runs with autocheckpoint off so that this
    /// copy happens after the batch is durable instead of inside it.
    pub(crate) fn finish(mut self, checkpoint: bool) {
        if let Some(jobs) = self.jobs.take()
            && checkpoint
        {
            let _ = jobs.send(Box::new(|session: &mut Session<'_>| {
                if let Err(e) = session.conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)") {
                    tracing::warn!(error = %e, "checkpoint after batch failed");
                }
            }));
        }
        // The thread ends by itself once the queue is drained.
        self.thread.take();
    }
}

impl Drop for NativeWriter {
    fn drop(&mut self) {
        self.jobs.take();
        // Not joined here: dropping happens on async tasks; the thread ends on its own.
        self.thread.take();
    }
}

use crate::collection::{
    ExistingRecord, KeyMap, LOOKUP_CHUNK, NewRecord, PendingLookup, RECORD_COLUMNS, RecordFields,
    SPAN_SQL, supersede_sql,
};
use crate::datalog::{COLUMNS as LOG_COLUMNS, GENESIS, LogEntry};

/// One batch written through the native writer.
pub(crate) struct NativeBatch {
    writer: NativeWriter,
    first_id: i64,
    next_id: i64,
}

/// Copy the current version of the record under key `?1` to history, superseded by batch `?2`.
/// `OR FAIL` (like [`insert_records_sql`]): no statement journal, since a failure fails the batch.
static SUPERSEDED_TO_HISTORY_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT OR FAIL INTO record_history ({RECORD_COLUMNS}, superseded_by_batch) \
         SELECT {RECORD_COLUMNS}, ?2 FROM records WHERE key_hash = ?1"
    )
});

/// Replace the current version of the record under key `?1` (see [`supersede_sql`]); `OR FAIL` as
/// above. Without it, SQLite copied every page the update touched into a statement journal.
static SUPERSEDE_SQL: LazyLock<String> = LazyLock::new(|| supersede_sql("UPDATE OR FAIL", "?"));

/// Records per insert statement. Each statement costs a fixed overhead (opening and closing a
/// cursor on the table and each index, starting and halting the program) that eight rows share;
/// more rows per statement measured no better.
const INSERT_GROUP: usize = 8;

/// Insert `rows` new records (version 1) in one statement. `OR FAIL`, not the default `ABORT`:
/// a multi-row `ABORT` statement must keep a statement journal to undo its own earlier rows on a
/// conflict, which made it slower than single-row inserts. A conflict here fails the whole batch,
/// which is rolled back, so there is nothing for the statement to undo.
fn insert_records_sql(rows: usize) -> String {
    let row = "(?,?,?,1,?,?,?,?,?,?,?,?,?,?,?,?)";
    format!(
        "INSERT OR FAIL INTO records ({RECORD_COLUMNS}) VALUES {}",
        vec![row; rows].join(",")
    )
}

/// The parameters of [`insert_records_sql`] for `rows` (id and record), in order.
fn insert_params<'a>(
    rows: &'a [(i64, &'a NewRecord)],
    batch_id: &'a str,
    at: &'a str,
) -> impl Iterator<Item = Param<'a>> {
    rows.iter().flat_map(move |&(id, r)| {
        let f = r.fields();
        [Param::Int(id), f.category.into(), f.key_hash.into()]
            .into_iter()
            .chain(version_params(f, batch_id, at))
    })
}

/// A record's version columns (see `VERSION_COLUMNS`), in their order.
fn version_params<'a>(f: RecordFields<'a>, batch_id: &'a str, at: &'a str) -> [Param<'a>; 12] {
    [
        f.status.into(),
        f.source_unit.into(),
        f.subject_code.into(),
        f.subject_index.into(),
        f.document_number.into(),
        f.decision_date.into(),
        f.lag_days.into(),
        batch_id.into(),
        f.content_hash.into(),
        f.payload.into(),
        f.personal.into(),
        at.into(),
    ]
}

/// Write `records` in the order `order`, with ids from `first` on, [`INSERT_GROUP`] to a statement.
/// Values are bound where they are, without SQLite copying them first (see [`BorrowedStatement`]).
fn insert_records(
    session: &mut Session<'_>,
    first: i64,
    order: &[usize],
    records: &[NewRecord],
    batch_id: &str,
    at: &str,
) -> Result<(), StoreError> {
    let rows: Vec<(i64, &NewRecord)> = (first..).zip(order.iter().map(|&i| &records[i])).collect();
    let mut groups = rows.chunks_exact(INSERT_GROUP);
    if groups.len() > 0 {
        let grouped = session.insert_statement(INSERT_GROUP)?;
        for group in &mut groups {
            grouped.execute(insert_params(group, batch_id, at))?;
        }
    }
    if !groups.remainder().is_empty() {
        let single = session.insert_statement(1)?;
        for row in groups.remainder().chunks(1) {
            single.execute(insert_params(row, batch_id, at))?;
        }
    }
    Ok(())
}

fn placeholders(n: usize) -> String {
    let mut s = "?,".repeat(n);
    s.pop();
    s
}

impl NativeBatch {
    pub(crate) async fn begin(path: &Path) -> Result<Self, StoreError> {
        let writer = NativeWriter::begin(path).await?;
        let next_id = writer
            .call(|c| {
                c.query_row("SELECT COALESCE(MAX(id), 0) + 1 FROM records", [], |r| {
                    r.get::<_, i64>(0)
                })
                .map_err(sqlite_error)
            })
            .await?;
        Ok(Self {
            writer,
            first_id: next_id,
            next_id,
        })
    }

    pub(crate) fn next_id(&self) -> i64 {
        self.next_id
    }

    /// Queue a lookup of business keys behind every write queued so far; the result arrives later.
    pub(crate) fn lookup(
        &mut self,
        category: &str,
        key_hashes: &[&str],
    ) -> Result<PendingLookup, StoreError> {
        let category = category.to_owned();
        let keys: Vec<String> = key_hashes.iter().map(|k| (*k).to_owned()).collect();
        let reply = self.writer.request(move |c| {
            let mut found = KeyMap::default();
            for chunk in keys.chunks(LOOKUP_CHUNK) {
                let sql = format!(
                    "SELECT key_hash, id, version, content_hash FROM records WHERE category = ? AND key_hash IN ({})",
                    placeholders(chunk.len())
                );
                let mut st = c.prepare_cached(&sql).map_err(sqlite_error)?;
                let params = std::iter::once(&category).chain(chunk.iter());
                let mut rows = st
                    .query(rusqlite::params_from_iter(params))
                    .map_err(sqlite_error)?;
                while let Some(row) = rows.next().map_err(sqlite_error)? {
                    found.insert(
                        row.get::<_, String>(0).map_err(sqlite_error)?,
                        ExistingRecord {
                            id: row.get(1).map_err(sqlite_error)?,
                            version: row.get(2).map_err(sqlite_error)?,
                            content_hash: row.get(3).map_err(sqlite_error)?,
                        },
                    );
                }
            }
            Ok(found)
        })?;
        Ok(PendingLookup::queued(reply, self.writer.failures.clone()))
    }

    /// Queue the insert of new records (version 1) and return their ids, in the order given. The
    /// rows are written in business-key order (ids follow that order): consecutive inserts then
    /// land near each other in the key index, which saves cache misses on the way down its B-tree.
    pub(crate) async fn insert(
        &mut self,
        batch_id: &str,
        ingested_at: &str,
        records: Vec<NewRecord>,
    ) -> Result<Vec<i64>, StoreError> {
        let first = self.next_id;
        self.next_id += records.len() as i64;
        let mut order: Vec<usize> = (0..records.len()).collect();
        order.sort_unstable_by(|&a, &b| records[a].key_hash().cmp(records[b].key_hash()));
        let mut ids = vec![0; records.len()];
        for (id, &i) in (first..).zip(&order) {
            ids[i] = id;
        }
        let batch_id = batch_id.to_owned();
        let at = ingested_at.to_owned();
        self.writer.queue_in_session(move |session| {
            insert_records(session, first, &order, &records, &batch_id, &at)
        })?;
        Ok(ids)
    }

    /// Queue the replacement of the current version of the record under `r`'s business key: the
    /// old version goes to history.
    pub(crate) fn supersede(
        &mut self,
        batch_id: &str,
        ingested_at: &str,
        r: NewRecord,
    ) -> Result<(), StoreError> {
        let batch_id = batch_id.to_owned();
        let at = ingested_at.to_owned();
        self.writer.queue(move |c| {
            let f = r.fields();
            c.prepare_cached(&SUPERSEDED_TO_HISTORY_SQL)
                .and_then(|mut st| st.execute(rusqlite::params![f.key_hash, batch_id]))
                .map_err(sqlite_error)?;
            let params =
                std::iter::once(Param::Text(f.key_hash)).chain(version_params(f, &batch_id, &at));
            let updated = c
                .prepare_cached(&SUPERSEDE_SQL)
                .and_then(|mut st| st.execute(rusqlite::params_from_iter(params)))
                .map_err(sqlite_error)?;
            if updated == 1 {
                Ok(())
            } else {
                Err(StoreError::NotFound(format!("record {}", f.key_hash)))
            }
        })
    }

    /// Queue the insert of one chunk's remarks.
    pub(crate) fn remarks(
        &mut self,
        batch_id: &str,
        first_row: i64,
        body: String,
    ) -> Result<(), StoreError> {
        let batch_id = batch_id.to_owned();
        self.writer.queue(move |c| {
            c.prepare_cached(
                "INSERT INTO batch_remarks (batch_id, first_row, body) VALUES (?, ?, ?)",
            )
            .and_then(|mut st| st.execute(rusqlite::params![batch_id, first_row, body]))
            .map_err(sqlite_error)?;
            Ok(())
        })
    }

    pub(crate) async fn flush(&mut self) -> Result<(), StoreError> {
        self.writer.call(|_| Ok(())).await?;
        self.writer.failure().map_or(Ok(()), Err)
    }

    pub(crate) async fn commit(
        self,
        entry: LogEntry,
        rule_counts: Vec<(String, i64)>,
    ) -> Result<LogEntry, StoreError> {
        // Wait for every queued write; a failed one rolls the batch back.
        self.writer.call(|_| Ok(())).await?;
        if let Some(e) = self.writer.failure() {
            let _ = self
                .writer
                .call(|c| c.execute_batch("ROLLBACK").map_err(sqlite_error))
                .await;
            self.writer.finish(false);
            return Err(e);
        }
        let (first_id, end_id) = (self.first_id, self.next_id);
        let entry = self
            .writer
            .call(move |c| {
                let last: Option<(i64, String)> = c
                    .query_row("SELECT seq, entry_hash FROM data_log ORDER BY seq DESC LIMIT 1", [], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .map(Some)
                    .or_else(|e| match e {
                        rusqlite::Error::QueryReturnedNoRows => Ok(None),
                        other => Err(other),
                    })
                    .map_err(sqlite_error)?;
                let mut counts = c
                    .prepare_cached("INSERT INTO batch_rule_counts (batch_id, rule, faults) VALUES (?, ?, ?)")
                    .map_err(sqlite_error)?;
                for (rule, faults) in &rule_counts {
                    counts
                        .execute(rusqlite::params![entry.batch_id, rule, faults])
                        .map_err(sqlite_error)?;
                }
                drop(counts);
                if end_id > first_id {
                    c.prepare_cached(SPAN_SQL)
                        .and_then(|mut st| st.execute(rusqlite::params![entry.batch_id, first_id, end_id]))
                        .map_err(sqlite_error)?;
                }
                let mut e = entry;
                (e.seq, e.prev_hash) = match last {
                    Some((seq, hash)) => (seq + 1, hash),
                    None => (1, GENESIS.to_owned()),
                };
                e.entry_hash = e.compute_hash();
                c.execute(
                    &format!("INSERT INTO data_log ({LOG_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"),
                    rusqlite::params![
                        e.seq,
                        e.at,
                        e.kind,
                        e.actor,
                        e.batch_id,
                        e.source_unit,
                        e.category,
                        e.source,
                        e.total,
                        e.stored,
                        e.updated,
                        e.duplicate,
                        e.rejected,
                        e.detail,
                        e.prev_hash,
                        e.entry_hash,
                    ],
                )
                .map_err(sqlite_error)?;
                c.execute_batch("COMMIT").map_err(sqlite_error)?;
                Ok(e)
            })
            .await?;
        self.writer.finish(true);
        Ok(entry)
    }

    pub(crate) async fn rollback(self) -> Result<(), StoreError> {
        let result = self
            .writer
            .call(|c| c.execute_batch("ROLLBACK").map_err(sqlite_error))
            .await;
        self.writer.finish(false);
        result
    }
}
