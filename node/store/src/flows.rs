//! What the federated flows keep in the stores: applied batches and cursors (written in the same
//! transaction as the records they acknowledge, so a batch is applied exactly once), records in
//! their federation-wide form (id `gid`, version, lineage), and the writes of each flow as one
//! transaction of plain statements run by the native SQLite writer or by sqlx on PostgreSQL.

use std::path::PathBuf;

use rand::RngCore;
use serde_json::Value as Json;
use sqlx::{AnyPool, Row};
use xy_exchange::{Cursor, FlowRecord};

use crate::db::Backend;
use crate::native::{NativeWriter, sqlite_error};
use crate::{NodeKeys, StoreError};

/// A parameter of a flow statement.
#[derive(Debug, Clone)]
pub enum Param {
    /// Text, or NULL.
    Text(Option<String>),
    /// An integer, or NULL.
    Int(Option<i64>),
    /// Bytes.
    Blob(Vec<u8>),
}

impl From<&str> for Param {
    fn from(s: &str) -> Self {
        Param::Text(Some(s.to_owned()))
    }
}
impl From<String> for Param {
    fn from(s: String) -> Self {
        Param::Text(Some(s))
    }
}
impl From<Option<String>> for Param {
    fn from(s: Option<String>) -> Self {
        Param::Text(s)
    }
}
impl From<i64> for Param {
    fn from(v: i64) -> Self {
        Param::Int(Some(v))
    }
}

/// One statement of a flow transaction, with `?` placeholders (rewritten to `$n` for PostgreSQL).
#[derive(Debug, Clone)]
pub struct Statement {
    /// The SQL.
    pub sql: &'static str,
    /// Its parameters, in order.
    pub params: Vec<Param>,
}

impl Statement {
    /// A statement.
    pub fn new(sql: &'static str, params: Vec<Param>) -> Self {
        Self { sql, params }
    }
}

/// Write-ahead log size past which a flow write is followed by a checkpoint. Measured with the
/// return-flow bench (20,000-record batches write about 40 MiB of log each): 32 MiB, a checkpoint
/// after about every batch, ran at 105–111k records/s; 128 MiB at about 89k, and no checkpoint
/// during the flow at 45k — page reads slow down as the log grows.
const WAL_CHECKPOINT_BYTES: u64 = 32 << 20;

/// Where a flow store's writes go: the SQLite file (native writer) or the pool (PostgreSQL).
#[derive(Clone)]
pub struct FlowWriter {
    pool: AnyPool,
    backend: Backend,
    sqlite_file: Option<PathBuf>,
    lock: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// A read connection to the SQLite file, opened on first use (feeds read through it: sqlx's
    /// per-row overhead was a third of a return-flow sender's time).
    reader: std::sync::Arc<std::sync::Mutex<Option<rusqlite::Connection>>>,
}

fn postgres_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

impl FlowWriter {
    pub(crate) fn new(pool: AnyPool, backend: Backend, sqlite_file: Option<PathBuf>) -> Self {
        Self {
            pool,
            backend,
            sqlite_file,
            lock: Default::default(),
            reader: Default::default(),
        }
    }

    /// Run `read` on this store's native SQLite read connection (on a blocking thread); `None`
    /// on PostgreSQL, where callers read through sqlx.
    pub(crate) async fn read_native<R, F>(&self, read: F) -> Option<Result<R, StoreError>>
    where
        R: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let path = self.sqlite_file.clone()?;
        let reader = std::sync::Arc::clone(&self.reader);
        let joined = tokio::task::spawn_blocking(move || {
            let mut slot = reader
                .lock()
                .map_err(|_| StoreError::Corrupt("sqlite reader poisoned".into()))?;
            if slot.is_none() {
                let conn = rusqlite::Connection::open_with_flags(
                    &path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(sqlite_error)?;
                conn.busy_timeout(std::time::Duration::from_secs(30))
                    .map_err(sqlite_error)?;
                *slot = Some(conn);
            }
            match slot.as_ref() {
                Some(conn) => read(conn),
                None => Err(StoreError::Corrupt("sqlite reader missing".into())),
            }
        })
        .await;
        Some(joined.unwrap_or_else(|e| Err(StoreError::Corrupt(format!("sqlite reader: {e}")))))
    }

    /// The pool, for reads.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The engine.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Take the store's write lock: one flow writer at a time, so that sequences read before a
    /// transaction are still the latest when it runs.
    pub async fn lock(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.lock.clone().lock_owned().await
    }

    /// Run `statements` as one transaction; returns the rows each affected. Either all take
    /// effect or none does.
    pub async fn run(&self, statements: Vec<Statement>) -> Result<Vec<u64>, StoreError> {
        match &self.sqlite_file {
            Some(path) => {
                let writer = NativeWriter::begin(path).await?;
                let result = writer
                    .call(move |c| {
                        let mut affected = Vec::with_capacity(statements.len());
                        {
                            // Each distinct statement is prepared once per transaction, found by
                            // the address of its text (hashing a long upsert's text for every row
                            // showed in the profile).
                            let mut prepared: Vec<(*const u8, rusqlite::CachedStatement<'_>)> =
                                Vec::new();
                            for st in statements {
                                let key = st.sql.as_ptr();
                                let at = match prepared.iter().position(|(k, _)| *k == key) {
                                    Some(at) => at,
                                    None => {
                                        let statement =
                                            c.prepare_cached(st.sql).map_err(sqlite_error)?;
                                        prepared.push((key, statement));
                                        prepared.len() - 1
                                    }
                                };
                                let params = st.params.into_iter().map(|p| match p {
                                    Param::Text(t) => rusqlite::types::Value::from(t),
                                    Param::Int(i) => rusqlite::types::Value::from(i),
                                    Param::Blob(b) => rusqlite::types::Value::Blob(b),
                                });
                                let n = prepared[at]
                                    .1
                                    .execute(rusqlite::params_from_iter(params))
                                    .map_err(sqlite_error)?;
                                affected.push(n as u64);
                            }
                        }
                        c.execute_batch("COMMIT").map_err(sqlite_error)?;
                        Ok(affected)
                    })
                    .await;
                // Checkpoint (copy the write-ahead log into the database file, PASSIVE, on the
                // finished writer's thread while the next batch is written) once the log has grown
                // past WAL_CHECKPOINT_BYTES; small writes (cursors, work orders) do not trigger one.
                let wal = path.with_extension("db-wal");
                let grown = std::fs::metadata(&wal).map_or(0, |m| m.len()) > WAL_CHECKPOINT_BYTES;
                writer.finish(result.is_ok() && grown);
                result
            }
            None => {
                let mut tx = self.pool.begin().await?;
                let mut affected = Vec::with_capacity(statements.len());
                let mut cache: std::collections::HashMap<&'static str, String> = Default::default();
                for st in statements {
                    let sql = cache
                        .entry(st.sql)
                        .or_insert_with(|| postgres_sql(st.sql))
                        .clone();
                    let mut q = sqlx::query(&sql);
                    for p in st.params {
                        q = match p {
                            Param::Text(t) => q.bind(t),
                            Param::Int(i) => q.bind(i),
                            Param::Blob(b) => q.bind(b),
                        };
                    }
                    affected.push(q.execute(&mut *tx).await?.rows_affected());
                }
                tx.commit().await?;
                Ok(affected)
            }
        }
    }

    /// `SELECT COALESCE(MAX(<column>), 0) FROM <table>` — the last sequence number used.
    pub async fn max(&self, table: &str, column: &str) -> Result<i64, StoreError> {
        let sql = format!("SELECT COALESCE(MAX({column}), 0) AS m FROM {table}");
        Ok(sqlx::query(&sql)
            .fetch_one(&self.pool)
            .await?
            .try_get("m")?)
    }

    /// The cursor of `flow` from `sender` (where the next batch must start).
    pub async fn cursor(&self, flow: &str, sender: &str) -> Result<Cursor, StoreError> {
        let sql = self.sql("SELECT major, minor FROM flow_cursors WHERE flow = ? AND sender = ?");
        let row = sqlx::query(&sql)
            .bind(flow)
            .bind(sender)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Cursor {
                major: r.try_get("major")?,
                minor: r.try_get("minor")?,
            },
            None => Cursor::START,
        })
    }

    /// Take the write lock to apply batch `batch_id`; `None` when it was applied before (then
    /// nothing is to be written).
    pub async fn claim(
        &self,
        batch_id: &str,
    ) -> Result<Option<tokio::sync::OwnedMutexGuard<()>>, StoreError> {
        let guard = self.lock().await;
        Ok((!self.batch_applied(batch_id).await?).then_some(guard))
    }

    /// Whether batch `batch_id` was applied.
    pub async fn batch_applied(&self, batch_id: &str) -> Result<bool, StoreError> {
        let sql = self.sql("SELECT 1 AS one FROM flow_batches WHERE batch_id = ?");
        Ok(sqlx::query(&sql)
            .bind(batch_id)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// The flow, sender and cursor range of applied batch `batch_id`.
    pub async fn batch_range(
        &self,
        batch_id: &str,
    ) -> Result<Option<(String, String, Cursor, Cursor)>, StoreError> {
        let sql = self.sql(
            "SELECT flow, sender, after_major, after_minor, through_major, through_minor FROM flow_batches WHERE batch_id = ?",
        );
        let row = sqlx::query(&sql)
            .bind(batch_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok((
                r.try_get("flow")?,
                r.try_get("sender")?,
                Cursor {
                    major: r.try_get("after_major")?,
                    minor: r.try_get("after_minor")?,
                },
                Cursor {
                    major: r.try_get("through_major")?,
                    minor: r.try_get("through_minor")?,
                },
            ))
        })
        .transpose()
    }

    /// Every cursor of this store: (flow, sender, cursor, when it last moved).
    pub async fn cursors(&self) -> Result<Vec<(String, String, Cursor, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT flow, sender, major, minor, updated_at FROM flow_cursors ORDER BY flow, sender",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("flow")?,
                    r.try_get("sender")?,
                    Cursor {
                        major: r.try_get("major")?,
                        minor: r.try_get("minor")?,
                    },
                    r.try_get("updated_at")?,
                ))
            })
            .collect()
    }

    /// The statements recording an applied batch and moving the sender's cursor.
    pub fn acknowledge(
        header: &xy_exchange::BatchHeader,
        batch_id: &str,
        at: &str,
    ) -> Vec<Statement> {
        vec![
            Statement::new(
                "INSERT INTO flow_batches (batch_id, flow, sender, after_major, after_minor, through_major, through_minor, row_count, digest, applied_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                vec![
                    batch_id.into(),
                    header.flow.as_str().into(),
                    header.sender.as_str().into(),
                    header.after.major.into(),
                    header.after.minor.into(),
                    header.through.major.into(),
                    header.through.minor.into(),
                    (header.rows as i64).into(),
                    header.digest.as_str().into(),
                    at.into(),
                ],
            ),
            Statement::new(
                "INSERT INTO flow_cursors (flow, sender, major, minor, updated_at) VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT (flow, sender) DO UPDATE SET major = excluded.major, minor = excluded.minor, updated_at = excluded.updated_at",
                vec![
                    header.flow.as_str().into(),
                    header.sender.as_str().into(),
                    header.through.major.into(),
                    header.through.minor.into(),
                    at.into(),
                ],
            ),
        ]
    }

    /// Rewind the cursor of `flow` from `sender` to `to` (a re-request: the sender resends from
    /// there; records already held are skipped by version).
    pub async fn rewind(
        &self,
        flow: &str,
        sender: &str,
        to: Cursor,
        at: &str,
    ) -> Result<(), StoreError> {
        let _guard = self.lock().await;
        self.run(vec![Statement::new(
            "UPDATE flow_cursors SET major = ?, minor = ?, updated_at = ? WHERE flow = ? AND sender = ? AND (major > ? OR (major = ? AND minor > ?))",
            vec![
                to.major.into(),
                to.minor.into(),
                at.into(),
                flow.into(),
                sender.into(),
                to.major.into(),
                to.major.into(),
                to.minor.into(),
            ],
        )])
        .await?;
        Ok(())
    }

    /// `sql` with `?` placeholders rewritten for the engine.
    pub fn sql(&self, sql: &str) -> String {
        match self.backend {
            Backend::Sqlite => sql.to_owned(),
            Backend::Postgres => postgres_sql(sql),
        }
    }
}

/// The sealing context of a record's personal fields in the flow stores.
fn personal_context(gid: &str) -> Vec<u8> {
    [b"xinyong/flow-record/".as_slice(), gid.as_bytes()].concat()
}

/// Seal a record's personal fields and identity number with this node's keys (SM4-GCM, bound
/// to the gid); `None` when it has neither. The sealed text is the identity number's length
/// (`u32` big-endian, `u32::MAX` when absent), the number, then the personal fields' JSON.
pub fn seal_personal(
    keys: &NodeKeys,
    record: &FlowRecord,
    rng: &mut impl RngCore,
) -> Option<String> {
    if record.personal.is_none() && record.subject_id.is_none() {
        return None;
    }
    let id = record.subject_id.as_deref();
    let personal = record.personal.as_deref().unwrap_or("");
    let mut plain = Vec::with_capacity(4 + id.map_or(0, str::len) + personal.len());
    match id {
        Some(id) => {
            plain.extend_from_slice(&(id.len() as u32).to_be_bytes());
            plain.extend_from_slice(id.as_bytes());
        }
        None => plain.extend_from_slice(&u32::MAX.to_be_bytes()),
    }
    plain.extend_from_slice(personal.as_bytes());
    Some(keys.seal(&personal_context(&record.gid), &plain, rng))
}

/// Open what [`seal_personal`] sealed: (personal fields as JSON text, identity number).
pub fn open_personal(
    keys: &NodeKeys,
    gid: &str,
    sealed: Option<&str>,
) -> Result<(Option<String>, Option<String>), StoreError> {
    let Some(sealed) = sealed else {
        return Ok((None, None));
    };
    let plain = keys.open(&personal_context(gid), sealed)?;
    let corrupt = || StoreError::Corrupt(format!("personal fields of {gid}"));
    let (length, rest) = plain.split_first_chunk::<4>().ok_or_else(corrupt)?;
    let length = u32::from_be_bytes(*length);
    let (id, personal) = if length == u32::MAX {
        (None, rest)
    } else {
        let (id, personal) = rest.split_at_checked(length as usize).ok_or_else(corrupt)?;
        (
            Some(std::str::from_utf8(id).map_err(|_| corrupt())?.to_owned()),
            personal,
        )
    };
    let personal = (!personal.is_empty())
        .then(|| String::from_utf8(personal.to_vec()).map_err(|_| corrupt()))
        .transpose()?;
    Ok((personal, id))
}

/// Add `stage` to a lineage (a JSON object) under `key`, keeping what was there. A new key is
/// appended to the text (lineages travel with every record, so this runs for every row); a key
/// already present is replaced through a parse.
pub fn extend_lineage(lineage: &str, key: &str, stage: Json) -> String {
    let text = lineage.trim();
    let fresh = text.starts_with('{')
        && text.ends_with('}')
        && !text.contains(&format!("\"{key}\":"))
        && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok();
    if fresh {
        let inner = text[1..text.len() - 1].trim();
        let key = Json::String(key.to_owned());
        return if inner.is_empty() {
            format!("{{{key}:{stage}}}")
        } else {
            format!("{{{inner},{key}:{stage}}}")
        };
    }
    let mut value: Json = serde_json::from_str(lineage).unwrap_or_else(|_| serde_json::json!({}));
    if !value.is_object() {
        value = serde_json::json!({});
    }
    value[key] = stage;
    value.to_string()
}

/// A record as a flow store holds it: the federation form with personal data sealed by this node.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HeldRecord {
    /// Federation-wide id.
    pub gid: String,
    /// Sequence in its store's feed.
    pub seq: i64,
    /// Version at the origin.
    pub version: i64,
    /// Category.
    pub category: String,
    /// Status (`withdrawn` for a retracted record).
    pub status: String,
    /// Source unit.
    pub source_unit: String,
    /// Subject USCC.
    pub subject_code: Option<String>,
    /// Document number.
    pub document_number: String,
    /// Decision date.
    pub decision_date: Option<String>,
    /// Non-personal fields (JSON text).
    pub payload: String,
    /// Sealed personal fields.
    #[serde(skip)]
    pub personal: Option<String>,
    /// Lineage (JSON text).
    pub lineage: String,
}

impl HeldRecord {
    /// The columns [`HeldRecord::from_row`] reads.
    pub const COLUMNS: &'static str = "gid, seq, version, category, status, source_unit, subject_code, document_number, decision_date, payload, personal, lineage";

    /// Read a row selected with [`HeldRecord::COLUMNS`].
    pub fn from_row(row: &sqlx::any::AnyRow) -> Result<Self, StoreError> {
        Ok(Self {
            gid: row.try_get("gid")?,
            seq: row.try_get("seq")?,
            version: row.try_get("version")?,
            category: row.try_get("category")?,
            status: row.try_get("status")?,
            source_unit: row.try_get("source_unit")?,
            subject_code: row.try_get("subject_code")?,
            document_number: row.try_get("document_number")?,
            decision_date: row.try_get("decision_date")?,
            payload: row.try_get("payload")?,
            personal: row.try_get("personal")?,
            lineage: row.try_get("lineage")?,
        })
    }

    /// The record in its travelling form, personal fields opened with this node's keys.
    pub fn into_flow(self, keys: &NodeKeys) -> Result<FlowRecord, StoreError> {
        let (personal, subject_id) = open_personal(keys, &self.gid, self.personal.as_deref())?;
        Ok(FlowRecord {
            gid: self.gid,
            version: self.version,
            category: self.category,
            status: self.status,
            source_unit: self.source_unit,
            subject_code: self.subject_code,
            subject_id,
            document_number: self.document_number,
            decision_date: self.decision_date,
            payload: self.payload,
            personal,
            lineage: self.lineage,
        })
    }
}

/// Read up to `limit` records of `table` (optionally of one theme) with `seq` after `after`, in
/// order.
pub async fn held_after(
    writer: &FlowWriter,
    table: &'static str,
    theme: Option<&str>,
    after: i64,
    limit: i64,
) -> Result<Vec<HeldRecord>, StoreError> {
    let sql = match theme {
        Some(_) => format!(
            "SELECT {} FROM {table} WHERE theme = ? AND seq > ? ORDER BY seq LIMIT ?",
            HeldRecord::COLUMNS
        ),
        None => format!(
            "SELECT {} FROM {table} WHERE seq > ? ORDER BY seq LIMIT ?",
            HeldRecord::COLUMNS
        ),
    };
    let native_sql = sql.clone();
    let native_theme = theme.map(str::to_owned);
    let native = writer
        .read_native(move |c| {
            let mut st = c.prepare_cached(&native_sql).map_err(sqlite_error)?;
            let mut params: Vec<rusqlite::types::Value> = Vec::with_capacity(3);
            if let Some(theme) = native_theme {
                params.push(theme.into());
            }
            params.push(after.into());
            params.push(limit.into());
            let rows = st
                .query_map(rusqlite::params_from_iter(params), |r| {
                    Ok(HeldRecord {
                        gid: r.get(0)?,
                        seq: r.get(1)?,
                        version: r.get(2)?,
                        category: r.get(3)?,
                        status: r.get(4)?,
                        source_unit: r.get(5)?,
                        subject_code: r.get(6)?,
                        document_number: r.get(7)?,
                        decision_date: r.get(8)?,
                        payload: r.get(9)?,
                        personal: r.get(10)?,
                        lineage: r.get(11)?,
                    })
                })
                .map_err(sqlite_error)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sqlite_error)
        })
        .await;
    if let Some(rows) = native {
        return rows;
    }
    let sql = writer.sql(&sql);
    let mut q = sqlx::query(&sql);
    if let Some(theme) = theme {
        q = q.bind(theme.to_owned());
    }
    let rows = q.bind(after).bind(limit).fetch_all(writer.pool()).await?;
    rows.iter().map(HeldRecord::from_row).collect()
}

/// The stored versions of those of `gids` that `table` holds.
pub async fn stored_versions(
    writer: &FlowWriter,
    table: &'static str,
    gids: Vec<String>,
) -> Result<std::collections::HashMap<String, i64>, StoreError> {
    const CHUNK: usize = 500;
    let native_gids = gids.clone();
    let native = writer
        .read_native(move |c| {
            let mut found = std::collections::HashMap::new();
            for chunk in native_gids.chunks(CHUNK) {
                let marks = vec!["?"; chunk.len()].join(",");
                let mut st = c
                    .prepare_cached(&format!(
                        "SELECT gid, version FROM {table} WHERE gid IN ({marks})"
                    ))
                    .map_err(sqlite_error)?;
                let rows = st
                    .query_map(rusqlite::params_from_iter(chunk.iter()), |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                    })
                    .map_err(sqlite_error)?;
                for row in rows {
                    let (gid, version) = row.map_err(sqlite_error)?;
                    found.insert(gid, version);
                }
            }
            Ok(found)
        })
        .await;
    if let Some(found) = native {
        return found;
    }
    let mut found = std::collections::HashMap::new();
    for chunk in gids.chunks(CHUNK) {
        let marks = vec!["?"; chunk.len()].join(",");
        let sql = writer.sql(&format!(
            "SELECT gid, version FROM {table} WHERE gid IN ({marks})"
        ));
        let mut q = sqlx::query(&sql);
        for gid in chunk {
            q = q.bind(gid.clone());
        }
        for row in q.fetch_all(writer.pool()).await? {
            found.insert(row.try_get("gid")?, row.try_get("version")?);
        }
    }
    Ok(found)
}

/// Rows of `select` (a query ending in `{filter} ORDER BY … LIMIT ?`) — of one subject (USCC)
/// when given, all otherwise —, at most `limit`.
pub(crate) async fn rows_of_subject(
    writer: &FlowWriter,
    select: &str,
    subject_code: Option<&str>,
    limit: i64,
) -> Result<Vec<sqlx::any::AnyRow>, StoreError> {
    let filter = if subject_code.is_some() {
        "WHERE subject_code = ?"
    } else {
        ""
    };
    let sql = writer.sql(&select.replace("{filter}", filter));
    let mut query = sqlx::query(&sql);
    if let Some(code) = subject_code {
        query = query.bind(code.to_owned());
    }
    Ok(query.bind(limit).fetch_all(writer.pool()).await?)
}

/// Find the record `gid` in `table`.
pub async fn held(
    writer: &FlowWriter,
    table: &'static str,
    gid: &str,
) -> Result<Option<HeldRecord>, StoreError> {
    let sql = writer.sql(&format!(
        "SELECT {} FROM {table} WHERE gid = ?",
        HeldRecord::COLUMNS
    ));
    let row = sqlx::query(&sql)
        .bind(gid.to_owned())
        .fetch_optional(writer.pool())
        .await?;
    row.as_ref().map(HeldRecord::from_row).transpose()
}

/// What applying a batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Applied {
    /// Records written (new, or a newer version).
    pub applied: u64,
    /// Records skipped: the store already holds that version or a newer one.
    pub skipped: u64,
    /// Records that could not be mapped (kept as exceptions).
    pub exceptions: u64,
    /// The batch had been applied before; nothing changed.
    pub already_applied: bool,
}

impl Applied {
    /// A batch applied before: acknowledged again, nothing written.
    pub fn before() -> Self {
        Self {
            already_applied: true,
            ..Self::default()
        }
    }
}

/// A record of an incoming batch, mapped for this node, or refused with the reason.
#[derive(Debug, Clone)]
pub struct Mapped {
    /// The record (as mapped, or as received when refused).
    pub record: FlowRecord,
    /// Why it could not be mapped.
    pub refused: Option<String>,
}

impl Mapped {
    /// A mapped record.
    pub fn ok(record: FlowRecord) -> Self {
        Self {
            record,
            refused: None,
        }
    }

    /// A record that could not be mapped.
    pub fn refused(record: FlowRecord, reason: String) -> Self {
        Self {
            record,
            refused: Some(reason),
        }
    }
}

/// The upsert of one record into a flow table with `seq`, `batch_id` and a time column. A
/// record replaces the stored one only if its version is higher.
macro_rules! upsert_sql {
    ($table:literal, $time:literal) => {
        concat!(
            "INSERT INTO ", $table, " (gid, seq, version, category, status, source_unit, subject_code, subject_index, \
             document_number, decision_date, payload, personal, lineage, batch_id, ", $time, ") \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (gid) DO UPDATE SET seq = excluded.seq, version = excluded.version, category = excluded.category, \
             status = excluded.status, source_unit = excluded.source_unit, subject_code = excluded.subject_code, \
             subject_index = excluded.subject_index, document_number = excluded.document_number, \
             decision_date = excluded.decision_date, payload = excluded.payload, personal = excluded.personal, \
             lineage = excluded.lineage, batch_id = excluded.batch_id, ", $time, " = excluded.", $time, " \
             WHERE excluded.version > ", $table, ".version"
        )
    };
}
pub(crate) use upsert_sql;

/// The parameters of [`upsert_sql`] for `record`, sealed with `keys`.
pub(crate) fn upsert_params(
    record: FlowRecord,
    seq: i64,
    batch_id: &str,
    at: &str,
    keys: &NodeKeys,
    rng: &mut impl RngCore,
) -> Vec<Param> {
    let sealed = seal_personal(keys, &record, rng);
    let subject_index = record.subject_id.as_deref().map(|id| keys.blind_index(id));
    vec![
        record.gid.into(),
        seq.into(),
        record.version.into(),
        record.category.into(),
        record.status.into(),
        record.source_unit.into(),
        record.subject_code.into(),
        subject_index.into(),
        record.document_number.into(),
        record.decision_date.into(),
        record.payload.into(),
        sealed.into(),
        record.lineage.into(),
        batch_id.into(),
        at.into(),
    ]
}

/// Count applied and skipped upserts from the rows each affected.
pub(crate) fn count_upserts(affected: &[u64], upserts: &[usize]) -> (u64, u64) {
    let applied = upserts
        .iter()
        .filter(|&&i| affected.get(i).copied().unwrap_or(0) > 0)
        .count() as u64;
    (applied, upserts.len() as u64 - applied)
}

/// Row count and SM3 over the sorted `(gid, version, status, payload)` of the rows `select`
/// returns (it selects those four columns ordered by gid, with at most one `?` bound to `bind`),
/// to compare two stores holding the same records.
pub(crate) async fn rows_digest(
    writer: &FlowWriter,
    select: &str,
    bind: Option<&str>,
) -> Result<(i64, String), StoreError> {
    use futures::TryStreamExt;
    let sql = writer.sql(select);
    let mut query = sqlx::query(&sql);
    if let Some(value) = bind {
        query = query.bind(value.to_owned());
    }
    let mut rows = query.fetch(writer.pool());
    let mut hasher = xy_shangmi::Sm3Hasher::new();
    let mut n = 0i64;
    while let Some(row) = rows.try_next().await? {
        let gid: String = row.try_get("gid")?;
        let version: i64 = row.try_get("version")?;
        let status: String = row.try_get("status")?;
        let payload: String = row.try_get("payload")?;
        for part in [
            gid.as_bytes(),
            &version.to_be_bytes(),
            status.as_bytes(),
            payload.as_bytes(),
        ] {
            hasher.update(&(part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        n += 1;
    }
    Ok((n, xy_exchange::hex(&hasher.finish())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lineage_grows_by_stage_and_stays_json() {
        let l = extend_lineage("{}", "origin", serde_json::json!({"node": "510100"}));
        let l = extend_lineage(&l, "share", serde_json::json!({"batch": "b\"1"}));
        let v: Json = serde_json::from_str(&l).unwrap();
        assert_eq!(v["origin"]["node"], "510100");
        assert_eq!(v["share"]["batch"], "b\"1");
        // A stage seen again replaces the old one; a broken lineage restarts.
        let l = extend_lineage(&l, "share", serde_json::json!(2));
        let v: Json = serde_json::from_str(&l).unwrap();
        assert_eq!(
            (v["share"].clone(), v["origin"]["node"].clone()),
            (serde_json::json!(2), serde_json::json!("510100"))
        );
        let v: Json =
            serde_json::from_str(&extend_lineage("{\"a\":", "x", serde_json::json!(1))).unwrap();
        assert_eq!(v, serde_json::json!({"x": 1}));
    }
}
