//! 应用场景库: scenario stores, extracted incrementally from the return-flow store. What a
//! scenario takes and how it masks is the caller's (policy data); here is the mechanics: read the
//! return-flow records changed since the scenario's cursor, write or remove each, and move the
//! cursor, in one transaction.

use serde_json::json;
use sqlx::Row;

use crate::flows::{FlowWriter, HeldRecord, Statement, extend_lineage};
use crate::{ReturnFlowStore, StoreError};

/// 应用场景库: the store of one application scenario.
#[derive(Clone)]
pub struct ScenarioStore {
    pub(crate) name: String,
    pub(crate) writer: FlowWriter,
}

/// What one extraction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Extracted {
    /// Return-flow records read.
    pub read: u64,
    /// Records written into the scenario.
    pub written: u64,
    /// Records removed (retracted, or no longer matching the scenario).
    pub removed: u64,
}

/// A scenario record.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScenarioRecord {
    /// Federation-wide id.
    pub gid: String,
    /// Version.
    pub version: i64,
    /// Category.
    pub category: String,
    /// Subject USCC.
    pub subject_code: Option<String>,
    /// The fields the scenario takes, masked by its policy (JSON).
    pub payload: serde_json::Value,
    /// Lineage (JSON).
    pub lineage: serde_json::Value,
}

impl ScenarioStore {
    /// The scenario's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The underlying pool.
    pub fn pool(&self) -> &sqlx::AnyPool {
        self.writer.pool()
    }

    /// Number of records.
    pub async fn record_count(&self) -> Result<i64, StoreError> {
        crate::count_records(self.writer.pool()).await
    }

    /// Record the scenario's definition (JSON) as of `at`.
    pub async fn define(&self, definition: &str, at: &str) -> Result<(), StoreError> {
        let _guard = self.writer.lock().await;
        self.writer
            .run(vec![Statement::new(
                "INSERT INTO scenario_meta (name, created_at, definition) VALUES (?, ?, ?) \
                 ON CONFLICT (name) DO UPDATE SET definition = excluded.definition",
                vec![self.name.clone().into(), at.into(), definition.into()],
            )])
            .await?;
        Ok(())
    }

    /// Extract up to `limit` changes from `source`: `project` returns the payload to keep for a
    /// record (already filtered and masked), or `None` to leave it out (or remove it).
    pub async fn extract(
        &self,
        source: &ReturnFlowStore,
        project: &(dyn Fn(&HeldRecord) -> Option<serde_json::Value> + Sync),
        at: &str,
        limit: i64,
    ) -> Result<Extracted, StoreError> {
        let _guard = self.writer.lock().await;
        let after: i64 = sqlx::query("SELECT seq FROM extract_cursor WHERE name = 'return_flow'")
            .fetch_optional(self.writer.pool())
            .await?
            .map(|r| r.try_get("seq"))
            .transpose()?
            .unwrap_or(0);
        let changed = source.records_after(after, limit).await?;
        let mut done = Extracted {
            read: changed.len() as u64,
            ..Extracted::default()
        };
        let Some(last) = changed.last().map(|r| r.seq) else {
            return Ok(done);
        };
        let mut statements = Vec::with_capacity(changed.len() + 1);
        let mut removals = Vec::new();
        for record in &changed {
            match project(record) {
                Some(payload) => {
                    done.written += 1;
                    let lineage = extend_lineage(
                        &record.lineage,
                        "scenario",
                        json!({"name": self.name, "at": at}),
                    );
                    statements.push(Statement::new(
                        "INSERT INTO records (gid, version, category, subject_code, payload, lineage, extracted_at) VALUES (?, ?, ?, ?, ?, ?, ?) \
                         ON CONFLICT (gid) DO UPDATE SET version = excluded.version, category = excluded.category, \
                         subject_code = excluded.subject_code, payload = excluded.payload, lineage = excluded.lineage, \
                         extracted_at = excluded.extracted_at",
                        vec![
                            record.gid.clone().into(),
                            record.version.into(),
                            record.category.clone().into(),
                            record.subject_code.clone().into(),
                            payload.to_string().into(),
                            lineage.into(),
                            at.into(),
                        ],
                    ));
                }
                None => {
                    removals.push(statements.len());
                    statements.push(Statement::new(
                        "DELETE FROM records WHERE gid = ?",
                        vec![record.gid.clone().into()],
                    ));
                }
            }
        }
        statements.push(Statement::new(
            "INSERT INTO extract_cursor (name, seq, updated_at) VALUES ('return_flow', ?, ?) \
             ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at",
            vec![last.into(), at.into()],
        ));
        let affected = self.writer.run(statements).await?;
        // Leaving out a record the scenario never held removes nothing.
        done.removed = removals.iter().filter(|&&i| affected[i] > 0).count() as u64;
        Ok(done)
    }

    /// The record `gid`.
    pub async fn record(&self, gid: &str) -> Result<Option<ScenarioRecord>, StoreError> {
        let sql = self.writer.sql(
            "SELECT gid, version, category, subject_code, payload, lineage FROM records WHERE gid = ?",
        );
        let row = sqlx::query(&sql)
            .bind(gid.to_owned())
            .fetch_optional(self.writer.pool())
            .await?;
        row.as_ref().map(scenario_record).transpose()
    }

    /// Records of a subject (USCC), or all records, up to `limit`.
    pub async fn records(
        &self,
        subject_code: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ScenarioRecord>, StoreError> {
        let rows = crate::flows::rows_of_subject(
            &self.writer,
            "SELECT gid, version, category, subject_code, payload, lineage FROM records {filter} ORDER BY gid LIMIT ?",
            subject_code,
            limit,
        )
        .await?;
        rows.iter().map(scenario_record).collect()
    }
}

fn scenario_record(row: &sqlx::any::AnyRow) -> Result<ScenarioRecord, StoreError> {
    let payload: String = row.try_get("payload")?;
    let lineage: String = row.try_get("lineage")?;
    Ok(ScenarioRecord {
        gid: row.try_get("gid")?,
        version: row.try_get("version")?,
        category: row.try_get("category")?,
        subject_code: row.try_get("subject_code")?,
        payload: serde_json::from_str(&payload)
            .map_err(|e| StoreError::Corrupt(format!("scenario payload: {e}")))?,
        lineage: serde_json::from_str(&lineage)
            .map_err(|e| StoreError::Corrupt(format!("scenario lineage: {e}")))?,
    })
}
