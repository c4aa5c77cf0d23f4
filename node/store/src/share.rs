//! The collection store's side of the flows: its share feed (the records each data-log batch
//! wrote, in log order), retraction at the origin, and the work orders the province sends back.

use serde_json::json;
use sqlx::Row;
use xy_exchange::{Cursor, FlowRecord, SignedBatch, WorkOrder};

use crate::collection::{RECORD_COLUMNS, stored_record};
use crate::flows::{Applied, FlowWriter, Statement};
use crate::{
    BatchSummary, CollectionStore, NewRecord, OutcomeCounts, RecordFields, StoreError, StoredRecord,
};

/// A record of the share feed, with its position: the current version of a record as its batch
/// wrote it, payload as stored (JSON text), personal fields still sealed.
#[derive(Debug, Clone)]
pub struct FeedRecord {
    /// Position in the feed: (data-log sequence of the batch that wrote it, record id).
    pub cursor: Cursor,
    /// Record id.
    pub id: i64,
    /// Version.
    pub version: i64,
    /// Category code.
    pub category: String,
    /// Status.
    pub status: String,
    /// Source unit USCC.
    pub source_unit: String,
    /// Subject USCC.
    pub subject_code: Option<String>,
    /// Document number.
    pub document_number: String,
    /// Decision date.
    pub decision_date: Option<String>,
    /// Non-personal fields (JSON text).
    pub payload: String,
    /// Sealed personal fields, bound to `key_hash`.
    pub personal: Option<String>,
    /// Business-key hash (the seal's context).
    pub key_hash: String,
    /// The ingest batch.
    pub batch_id: String,
    /// When the version was ingested.
    pub ingested_at: String,
}

const FEED_COLUMNS: &str = "id, version, category, status, source_unit, subject_code, document_number, \
    decision_date, payload, personal, key_hash, batch_id, ingested_at";

fn feed_record_native(major: i64, r: &rusqlite::Row<'_>) -> rusqlite::Result<FeedRecord> {
    let id: i64 = r.get(0)?;
    Ok(FeedRecord {
        cursor: Cursor { major, minor: id },
        id,
        version: r.get(1)?,
        category: r.get(2)?,
        status: r.get(3)?,
        source_unit: r.get(4)?,
        subject_code: r.get(5)?,
        document_number: r.get(6)?,
        decision_date: r.get(7)?,
        payload: r.get(8)?,
        personal: r.get(9)?,
        key_hash: r.get(10)?,
        batch_id: r.get(11)?,
        ingested_at: r.get(12)?,
    })
}

fn feed_record(major: i64, r: &sqlx::any::AnyRow) -> Result<FeedRecord, StoreError> {
    let id: i64 = r.try_get("id")?;
    Ok(FeedRecord {
        cursor: Cursor { major, minor: id },
        id,
        version: r.try_get("version")?,
        category: r.try_get("category")?,
        status: r.try_get("status")?,
        source_unit: r.try_get("source_unit")?,
        subject_code: r.try_get("subject_code")?,
        document_number: r.try_get("document_number")?,
        decision_date: r.try_get("decision_date")?,
        payload: r.try_get("payload")?,
        personal: r.try_get("personal")?,
        key_hash: r.try_get("key_hash")?,
        batch_id: r.try_get("batch_id")?,
        ingested_at: r.try_get("ingested_at")?,
    })
}

/// The first `limit` records of two lists sorted by id, by id, each id once (a record a batch
/// inserted and then superseded is in both).
fn merge_by_id(a: Vec<FeedRecord>, b: Vec<FeedRecord>, limit: i64) -> Vec<FeedRecord> {
    let limit = usize::try_from(limit).unwrap_or(0);
    let mut out = Vec::with_capacity((a.len() + b.len()).min(limit));
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    while out.len() < limit {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x.id == y.id => {
                b.next();
                a.next()
            }
            (Some(x), Some(y)) if y.id < x.id => b.next(),
            (Some(_), _) => a.next(),
            (None, _) => b.next(),
        };
        match next {
            Some(r) => out.push(r),
            None => break,
        }
    }
    out
}

/// A work order as the source node holds it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReceivedOrder {
    /// The order.
    #[serde(flatten)]
    pub order: WorkOrder,
    /// When it last changed here.
    pub updated_at: String,
}

impl CollectionStore {
    /// Up to `limit` records written after `after`, in feed order: batch by batch in data-log
    /// order, each batch's current records by id.
    pub async fn share_feed(
        &self,
        after: Cursor,
        limit: i64,
    ) -> Result<Vec<FeedRecord>, StoreError> {
        let mut out: Vec<FeedRecord> = Vec::new();
        let mut position = after;
        while (out.len() as i64) < limit {
            let batches = sqlx::query(
                "SELECT seq, batch_id FROM data_log WHERE seq >= $1 AND batch_id IS NOT NULL ORDER BY seq LIMIT 64",
            )
            .bind(position.major)
            .fetch_all(self.pool())
            .await?;
            if batches.is_empty() {
                break;
            }
            for batch in &batches {
                let seq: i64 = batch.try_get("seq")?;
                let batch_id: String = batch.try_get("batch_id")?;
                let after_id = if seq == position.major {
                    position.minor
                } else {
                    0
                };
                let want = limit - out.len() as i64;
                let rows = self.batch_records(seq, batch_id, after_id, want).await?;
                let full = rows.len() as i64 == want;
                out.extend(rows);
                if full {
                    return Ok(out);
                }
                position = Cursor {
                    major: seq + 1,
                    minor: 0,
                };
            }
        }
        Ok(out)
    }

    /// Current records written by batch `batch_id` (log sequence `seq`) with an id above
    /// `after_id`, by id: those it inserted (its span of ids) merged with those it superseded.
    async fn batch_records(
        &self,
        seq: i64,
        batch_id: String,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<FeedRecord>, StoreError> {
        let inserted = format!(
            "SELECT {FEED_COLUMNS} FROM records WHERE batch_id = $1 AND id > $2 \
             AND id >= (SELECT first_id FROM batch_spans WHERE batch_id = $1) \
             AND id < (SELECT end_id FROM batch_spans WHERE batch_id = $1) ORDER BY id LIMIT $3"
        );
        let superseded = format!(
            "SELECT {FEED_COLUMNS} FROM records WHERE batch_id = $1 AND id > $2 \
             AND id IN (SELECT id FROM record_history WHERE superseded_by_batch = $1 AND id > $2) \
             ORDER BY id LIMIT $3"
        );
        let inserted = self
            .feed_query(inserted, seq, &batch_id, after_id, limit)
            .await?;
        let superseded = self
            .feed_query(superseded, seq, &batch_id, after_id, limit)
            .await?;
        Ok(merge_by_id(inserted, superseded, limit))
    }

    /// Run one of the feed's queries, whose parameters are `$1` batch id, `$2` id to start after
    /// and `$3` row limit (SQLite numbers `$n` parameters by first appearance, PostgreSQL by n).
    async fn feed_query(
        &self,
        sql: String,
        seq: i64,
        batch_id: &str,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<FeedRecord>, StoreError> {
        let native_sql = sql.clone();
        let native_batch = batch_id.to_owned();
        let native = self
            .flow_writer()
            .read_native(move |c| {
                let mut st = c
                    .prepare_cached(&native_sql)
                    .map_err(crate::native::sqlite_error)?;
                let rows = st
                    .query_map(rusqlite::params![native_batch, after_id, limit], |r| {
                        feed_record_native(seq, r)
                    })
                    .map_err(crate::native::sqlite_error)?;
                rows.collect::<Result<Vec<_>, _>>()
                    .map_err(crate::native::sqlite_error)
            })
            .await;
        if let Some(rows) = native {
            return rows;
        }
        let rows = sqlx::query(&sql)
            .bind(batch_id.to_owned())
            .bind(after_id)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|r| feed_record(seq, r)).collect()
    }

    /// Retract record `id` at its origin: a new version with status `withdrawn` (the old one goes
    /// to history) in a batch of its own, logged with the reason. The share feed carries it on as
    /// a tombstone.
    pub async fn retract(
        &self,
        id: i64,
        reason: &str,
        operator: &str,
        batch_id: &str,
        at: &str,
    ) -> Result<StoredRecord, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {RECORD_COLUMNS} FROM records WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("record {id}")))?;
        let status: String = row.try_get("status")?;
        if status == "withdrawn" {
            return Err(StoreError::NotFound(format!(
                "record {id} is already withdrawn"
            )));
        }
        let text = |column: &str| row.try_get::<String, _>(column);
        let optional = |column: &str| row.try_get::<Option<String>, _>(column);
        let (category, key_hash, source_unit) =
            (text("category")?, text("key_hash")?, text("source_unit")?);
        let (subject_code, subject_index, decision_date, personal) = (
            optional("subject_code")?,
            optional("subject_index")?,
            optional("decision_date")?,
            optional("personal")?,
        );
        let (document_number, content_hash, payload) = (
            text("document_number")?,
            text("content_hash")?,
            text("payload")?,
        );
        let record = NewRecord::new(RecordFields {
            category: &category,
            key_hash: &key_hash,
            status: "withdrawn",
            source_unit: &source_unit,
            subject_code: subject_code.as_deref(),
            subject_index: subject_index.as_deref(),
            document_number: &document_number,
            decision_date: decision_date.as_deref(),
            lag_days: row.try_get("lag_days")?,
            content_hash: &content_hash,
            payload: &payload,
            personal: personal.as_deref(),
        });
        let summary = BatchSummary {
            batch_id: batch_id.to_owned(),
            operator: operator.to_owned(),
            source_unit: source_unit.clone(),
            category: category.clone(),
            source: format!("retraction of record {id}"),
            counts: OutcomeCounts {
                total: 1,
                updated: 1,
                ..OutcomeCounts::default()
            },
            detail: json!({"retract": id, "reason": reason}),
        };
        let mut writer = self.begin_batch().await?;
        writer.supersede(batch_id, at, record).await?;
        writer.commit(at, &summary).await?;
        let row = sqlx::query(&format!(
            "SELECT {RECORD_COLUMNS} FROM records WHERE id = $1"
        ))
        .bind(id)
        .fetch_one(self.pool())
        .await?;
        stored_record(&row)
    }

    /// Apply a verified batch of work orders from the province, in one transaction with its
    /// acknowledgement.
    pub async fn apply_orders(
        &self,
        batch: &SignedBatch,
        records: &[FlowRecord],
        at: &str,
    ) -> Result<Applied, StoreError> {
        let writer = self.flow_writer();
        let batch_id = batch.batch_id();
        let Some(_guard) = writer.claim(&batch_id).await? else {
            return Ok(Applied::before());
        };
        let mut statements = Vec::with_capacity(records.len() + 2);
        for record in records {
            let order: WorkOrder = serde_json::from_str(&record.payload)
                .map_err(|e| StoreError::Corrupt(format!("work order {}: {e}", record.gid)))?;
            statements.push(Statement::new(
                "INSERT INTO work_orders (id, gid, version, category, source_unit, document_number, faults, status, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET status = excluded.status, \
                 faults = excluded.faults, updated_at = excluded.updated_at",
                vec![
                    order.id.into(),
                    order.gid.clone().into(),
                    order.version.into(),
                    order.category.clone().into(),
                    order.source_unit.clone().into(),
                    order.document_number.clone().into(),
                    serde_json::to_string(&order.faults).unwrap_or_default().into(),
                    order.status.clone().into(),
                    at.into(),
                ],
            ));
        }
        statements.extend(FlowWriter::acknowledge(&batch.header, &batch_id, at));
        writer.run(statements).await?;
        Ok(Applied {
            applied: records.len() as u64,
            ..Applied::default()
        })
    }

    /// Work orders addressed to this node, newest first; `open_only` leaves out closed ones.
    pub async fn work_orders(&self, open_only: bool) -> Result<Vec<ReceivedOrder>, StoreError> {
        let sql = format!(
            "SELECT id, gid, version, category, source_unit, document_number, faults, status, updated_at FROM work_orders {} ORDER BY id DESC",
            if open_only {
                "WHERE status = 'open'"
            } else {
                ""
            }
        );
        let rows = sqlx::query(&sql).fetch_all(self.pool()).await?;
        rows.iter()
            .map(|r| {
                let faults: String = r.try_get("faults")?;
                Ok(ReceivedOrder {
                    order: WorkOrder {
                        id: r.try_get("id")?,
                        gid: r.try_get("gid")?,
                        version: r.try_get("version")?,
                        category: r.try_get("category")?,
                        source_unit: r.try_get("source_unit")?,
                        document_number: r.try_get("document_number")?,
                        faults: serde_json::from_str(&faults)
                            .map_err(|e| StoreError::Corrupt(format!("work order faults: {e}")))?,
                        status: r.try_get("status")?,
                    },
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect()
    }

    /// The current record `id` with its key hash (to open its personal fields).
    pub async fn record(&self, id: i64) -> Result<Option<StoredRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {RECORD_COLUMNS} FROM records WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(stored_record).transpose()
    }
}
