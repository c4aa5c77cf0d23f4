//! 回流库: the return-flow store. A returned batch is verified (by the caller, before
//! [`ReturnFlowStore::apply_batch`]) and mapped, and is upserted into the current records with
//! every replaced version kept in the history — one transaction with the batch's acknowledgement,
//! so a batch is applied exactly once whatever fails when. A batch that fails verification is
//! parked in the staging area (暂存区) with its exception, as it arrived, until a good copy of it
//! applies; a record that cannot be mapped waits among the exceptions for a retry.

use rand::RngCore;
use sqlx::Row;
use xy_exchange::SignedBatch;

use crate::flows::{
    Applied, FlowWriter, HeldRecord, Mapped, Param, Statement, count_upserts, upsert_params,
    upsert_sql,
};
use crate::{NodeKeys, StoreError};

/// What a record of this store holds in place of a lineage kept in `lineages`: this prefix and
/// the lineage's digest. (A lineage itself is a JSON object, so it never starts with it.)
const LINEAGE_REF: char = '#';

/// The digest a lineage is kept under: the first 16 bytes of its SM3, in hex.
fn lineage_digest(lineage: &str) -> String {
    hex::encode(&xy_shangmi::sm3(lineage.as_bytes())[..16])
}

/// Replace `lineage` by its reference, adding the statement that keeps the text the first time
/// this batch meets it (`interned`: text → reference, for the batch).
fn intern_lineage(
    lineage: &mut String,
    interned: &mut std::collections::HashMap<String, String>,
    statements: &mut Vec<Statement>,
) {
    if let Some(reference) = interned.get(lineage.as_str()) {
        *lineage = reference.clone();
        return;
    }
    let digest = lineage_digest(lineage);
    let reference = format!("{LINEAGE_REF}{digest}");
    let text = std::mem::replace(lineage, reference.clone());
    statements.push(Statement::new(
        "INSERT INTO lineages (digest, lineage) VALUES (?, ?) ON CONFLICT (digest) DO NOTHING",
        vec![digest.into(), text.clone().into()],
    ));
    interned.insert(text, reference);
}

/// 回流库: the return-flow store (staging area, current records, history of every change).
#[derive(Clone)]
pub struct ReturnFlowStore {
    pub(crate) writer: FlowWriter,
}

/// An exception of the return flow: a batch that failed verification or a record that could
/// not be mapped.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FlowException {
    /// Id.
    pub id: i64,
    /// The batch.
    pub batch_id: String,
    /// Who sent it.
    pub sender: String,
    /// `verify` or `map`.
    pub stage: String,
    /// The record, for a mapping failure.
    pub gid: Option<String>,
    /// Why.
    pub reason: String,
    /// When.
    pub at: String,
    /// When it was resolved (a retry applied the record, or a later batch verified).
    pub resolved_at: Option<String>,
}

impl ReturnFlowStore {
    /// The underlying pool.
    pub fn pool(&self) -> &sqlx::AnyPool {
        self.writer.pool()
    }

    /// The flow writer (cursors, applied batches).
    pub fn writer(&self) -> &FlowWriter {
        &self.writer
    }

    /// Number of current records.
    pub async fn record_count(&self) -> Result<i64, StoreError> {
        crate::count_records(self.writer.pool()).await
    }

    /// Stage, map and upsert a verified batch, and acknowledge it, in one transaction.
    pub async fn apply_batch(
        &self,
        batch: &SignedBatch,
        records: Vec<Mapped>,
        keys: &NodeKeys,
        at: &str,
        rng: &mut impl RngCore,
    ) -> Result<Applied, StoreError> {
        let batch_id = batch.batch_id();
        let Some(_guard) = self.writer.claim(&batch_id).await? else {
            return Ok(Applied::before());
        };
        let mut seq = self.writer.max("records", "seq").await?;
        let mut exception = self.writer.max("exceptions", "id").await?;
        let sender = batch.header.sender.clone();
        let mut statements = Vec::with_capacity(records.len() * 2 + 4);
        let mut upserts = Vec::with_capacity(records.len());
        let mut exceptions = 0;
        let mut stale = 0;
        // What the store holds already decides, per record, between a plain insert, a new
        // version (the old one to history) and nothing (a version held already).
        let held = crate::flows::stored_versions(
            &self.writer,
            "records",
            records.iter().map(|m| m.record.gid.clone()).collect(),
        )
        .await?;
        let mut seen: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
        let mut lineages = std::collections::HashMap::new();
        for mapped in records {
            match mapped.refused {
                None => {
                    let mut record = mapped.record;
                    let current = seen.get(&record.gid).or(held.get(&record.gid)).copied();
                    if current.is_some_and(|v| v >= record.version) {
                        stale += 1;
                        continue;
                    }
                    seen.insert(record.gid.clone(), record.version);
                    intern_lineage(&mut record.lineage, &mut lineages, &mut statements);
                    if current.is_none() {
                        seq += 1;
                        upserts.push(statements.len());
                        statements.push(Statement::new(
                            upsert_sql!("records", "updated_at"),
                            upsert_params(record, seq, &batch_id, at, keys, rng),
                        ));
                        continue;
                    }
                    statements.push(Statement::new(
                        "INSERT INTO record_history (gid, version, category, status, payload, personal, lineage, batch_id, replaced_by_batch, replaced_at) \
                         SELECT gid, version, category, status, payload, personal, lineage, batch_id, ?, ? FROM records WHERE gid = ? AND version < ?",
                        vec![
                            batch_id.clone().into(),
                            at.into(),
                            record.gid.clone().into(),
                            record.version.into(),
                        ],
                    ));
                    seq += 1;
                    upserts.push(statements.len());
                    statements.push(Statement::new(
                        upsert_sql!("records", "updated_at"),
                        upsert_params(record, seq, &batch_id, at, keys, rng),
                    ));
                }
                Some(reason) => {
                    let record = mapped.record;
                    exception += 1;
                    exceptions += 1;
                    let encoded = xy_exchange::encode_records(std::slice::from_ref(&record))
                        .unwrap_or_default();
                    statements.push(Statement::new(
                        "INSERT INTO exceptions (id, batch_id, sender, stage, gid, reason, record, at) VALUES (?, ?, ?, 'map', ?, ?, ?, ?)",
                        vec![
                            exception.into(),
                            batch_id.clone().into(),
                            sender.clone().into(),
                            record.gid.into(),
                            reason.into(),
                            Param::Blob(encoded),
                            at.into(),
                        ],
                    ));
                }
            }
        }
        // A batch that was parked in the staging area and now applies leaves it.
        statements.push(Statement::new(
            "DELETE FROM staging WHERE batch_id = ?",
            vec![batch_id.clone().into()],
        ));
        statements.extend(FlowWriter::acknowledge(&batch.header, &batch_id, at));
        let affected = self.writer.run(statements).await?;
        let (applied, skipped) = count_upserts(&affected, &upserts);
        Ok(Applied {
            applied,
            skipped: skipped + stale,
            exceptions,
            already_applied: false,
        })
    }

    /// Record a batch that failed verification: it is not applied (the sender retries), and the
    /// bytes that arrived are parked in the staging area for the operator to inspect.
    pub async fn record_exception(
        &self,
        batch_id: &str,
        sender: &str,
        reason: &str,
        arrived: &[u8],
        at: &str,
    ) -> Result<(), StoreError> {
        let _guard = self.writer.lock().await;
        let id = self.writer.max("exceptions", "id").await? + 1;
        self.writer
            .run(vec![
                Statement::new(
                    "INSERT INTO exceptions (id, batch_id, sender, stage, reason, at) VALUES (?, ?, ?, 'verify', ?, ?)",
                    vec![
                        id.into(),
                        batch_id.into(),
                        sender.into(),
                        reason.into(),
                        at.into(),
                    ],
                ),
                Statement::new(
                    "INSERT INTO staging (batch_id, sender, batch, received_at) VALUES (?, ?, ?, ?) \
                     ON CONFLICT (batch_id) DO UPDATE SET batch = excluded.batch, received_at = excluded.received_at",
                    vec![
                        batch_id.into(),
                        sender.into(),
                        Param::Blob(arrived.to_vec()),
                        at.into(),
                    ],
                ),
            ])
            .await?;
        Ok(())
    }

    /// Batches parked in the staging area (they failed verification): (batch id, sender, bytes,
    /// when they arrived).
    pub async fn staged(&self) -> Result<Vec<(String, String, Vec<u8>, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT batch_id, sender, batch, received_at FROM staging ORDER BY received_at",
        )
        .fetch_all(self.writer.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("batch_id")?,
                    r.try_get("sender")?,
                    r.try_get("batch")?,
                    r.try_get("received_at")?,
                ))
            })
            .collect()
    }

    /// Exceptions, newest first; `open_only` leaves out resolved ones.
    pub async fn exceptions(&self, open_only: bool) -> Result<Vec<FlowException>, StoreError> {
        let sql = if open_only {
            "SELECT id, batch_id, sender, stage, gid, reason, at, resolved_at FROM exceptions WHERE resolved_at IS NULL ORDER BY id DESC"
        } else {
            "SELECT id, batch_id, sender, stage, gid, reason, at, resolved_at FROM exceptions ORDER BY id DESC"
        };
        let rows = sqlx::query(sql).fetch_all(self.writer.pool()).await?;
        rows.iter()
            .map(|r| {
                Ok(FlowException {
                    id: r.try_get("id")?,
                    batch_id: r.try_get("batch_id")?,
                    sender: r.try_get("sender")?,
                    stage: r.try_get("stage")?,
                    gid: r.try_get("gid")?,
                    reason: r.try_get("reason")?,
                    at: r.try_get("at")?,
                    resolved_at: r.try_get("resolved_at")?,
                })
            })
            .collect()
    }

    /// Retry the open mapping exceptions with `map`: records it now maps are upserted and their
    /// exceptions resolved. Returns how many were resolved.
    pub async fn retry_exceptions(
        &self,
        map: impl Fn(xy_exchange::FlowRecord) -> Mapped,
        keys: &NodeKeys,
        at: &str,
        rng: &mut impl RngCore,
    ) -> Result<u64, StoreError> {
        let _guard = self.writer.lock().await;
        let rows = sqlx::query(
            "SELECT id, batch_id, record FROM exceptions WHERE stage = 'map' AND resolved_at IS NULL ORDER BY id",
        )
        .fetch_all(self.writer.pool())
        .await?;
        let mut seq = self.writer.max("records", "seq").await?;
        let mut statements = Vec::new();
        let mut resolved = 0;
        for row in &rows {
            let id: i64 = row.try_get("id")?;
            let batch_id: String = row.try_get("batch_id")?;
            let bytes: Vec<u8> = row.try_get("record")?;
            let Some(record) = xy_exchange::decode_records(&bytes)
                .ok()
                .and_then(|mut v| v.pop())
            else {
                continue;
            };
            let mapped = map(record);
            if mapped.refused.is_some() {
                continue;
            }
            let record = mapped.record;
            seq += 1;
            statements.push(Statement::new(
                "INSERT INTO record_history (gid, version, category, status, payload, personal, lineage, batch_id, replaced_by_batch, replaced_at) \
                 SELECT gid, version, category, status, payload, personal, lineage, batch_id, ?, ? FROM records WHERE gid = ? AND version < ?",
                vec![batch_id.clone().into(), at.into(), record.gid.clone().into(), record.version.into()],
            ));
            statements.push(Statement::new(
                upsert_sql!("records", "updated_at"),
                upsert_params(record, seq, &batch_id, at, keys, rng),
            ));
            statements.push(Statement::new(
                "UPDATE exceptions SET resolved_at = ? WHERE id = ?",
                vec![at.into(), id.into()],
            ));
            resolved += 1;
        }
        if !statements.is_empty() {
            self.writer.run(statements).await?;
        }
        Ok(resolved)
    }

    /// Put back the text of every lineage held as a reference (see [`LINEAGE_REF`]).
    async fn resolve_lineages(&self, lineages: Vec<&mut String>) -> Result<(), StoreError> {
        let mut texts: std::collections::HashMap<String, String> = Default::default();
        for lineage in lineages {
            let Some(digest) = lineage.strip_prefix(LINEAGE_REF).map(str::to_owned) else {
                continue;
            };
            if !texts.contains_key(&digest) {
                let sql = self
                    .writer
                    .sql("SELECT lineage FROM lineages WHERE digest = ?");
                let text: Option<String> = sqlx::query_scalar(&sql)
                    .bind(digest.clone())
                    .fetch_optional(self.writer.pool())
                    .await?;
                let text = text
                    .ok_or_else(|| StoreError::Corrupt(format!("lineage {digest} is missing")))?;
                texts.insert(digest.clone(), text);
            }
            lineage.clone_from(&texts[&digest]);
        }
        Ok(())
    }

    /// Current records after `seq`, in order (the scenario extracts read this).
    pub async fn records_after(&self, seq: i64, limit: i64) -> Result<Vec<HeldRecord>, StoreError> {
        let mut records =
            crate::flows::held_after(&self.writer, "records", None, seq, limit).await?;
        self.resolve_lineages(records.iter_mut().map(|r| &mut r.lineage).collect())
            .await?;
        Ok(records)
    }

    /// Current records of a subject (USCC), or all, in change order, at most `limit`.
    pub async fn query(
        &self,
        subject_code: Option<&str>,
        limit: i64,
    ) -> Result<Vec<HeldRecord>, StoreError> {
        let select = format!(
            "SELECT {} FROM records {{filter}} ORDER BY seq LIMIT ?",
            HeldRecord::COLUMNS
        );
        let rows =
            crate::flows::rows_of_subject(&self.writer, &select, subject_code, limit).await?;
        let mut records = rows
            .iter()
            .map(HeldRecord::from_row)
            .collect::<Result<Vec<_>, _>>()?;
        self.resolve_lineages(records.iter_mut().map(|r| &mut r.lineage).collect())
            .await?;
        Ok(records)
    }

    /// The current record `gid`.
    pub async fn record(&self, gid: &str) -> Result<Option<HeldRecord>, StoreError> {
        let mut record = crate::flows::held(&self.writer, "records", gid).await?;
        self.resolve_lineages(record.iter_mut().map(|r| &mut r.lineage).collect())
            .await?;
        Ok(record)
    }

    /// Every replaced version of `gid`, oldest first: (version, status, lineage).
    pub async fn history(&self, gid: &str) -> Result<Vec<(i64, String, String)>, StoreError> {
        let sql = self.writer.sql(
            "SELECT version, status, lineage FROM record_history WHERE gid = ? ORDER BY version",
        );
        let rows = sqlx::query(&sql)
            .bind(gid.to_owned())
            .fetch_all(self.writer.pool())
            .await?;
        let mut versions = rows
            .iter()
            .map(|r| {
                Ok((
                    r.try_get("version")?,
                    r.try_get("status")?,
                    r.try_get("lineage")?,
                ))
            })
            .collect::<Result<Vec<(i64, String, String)>, StoreError>>()?;
        self.resolve_lineages(versions.iter_mut().map(|(_, _, lineage)| lineage).collect())
            .await?;
        Ok(versions)
    }

    /// Row count and SM3 over the sorted `(gid, version, status, payload)` of every current
    /// record, to compare with the theme it was returned from.
    pub async fn digest(&self) -> Result<(i64, String), StoreError> {
        crate::flows::rows_digest(
            &self.writer,
            "SELECT gid, version, status, payload FROM records ORDER BY gid",
            None,
        )
        .await
    }
}
