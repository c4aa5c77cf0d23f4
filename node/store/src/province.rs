//! The province's governance stores (system D7): 原始库 raw store (every record as shared up),
//! 基础库 base store (records that passed governance, deduplicated across sources), 主题库 theme
//! stores (one return-flow theme per prefecture among them) and 治理工单 work orders addressed to
//! the source of a record that failed a rule. Every step is one transaction with its cursor.

use std::collections::HashMap;

use rand::RngCore;
use serde_json::json;
use sqlx::Row;
use xy_exchange::{FlowRecord, SignedBatch, WorkOrder};

use crate::flows::{
    Applied, FlowWriter, HeldRecord, Statement, count_upserts, extend_lineage, held, held_after,
    upsert_params, upsert_sql,
};
use crate::{NodeKeys, StoreError};

/// The province's stores.
#[derive(Clone)]
pub struct ProvinceStore {
    pub(crate) writer: FlowWriter,
}

/// What governance decided for one record.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// Ids of the standardisation rules that changed the record.
    pub standardised: Vec<String>,
    /// Failed checks: (rule id, reason). Empty: the record passes.
    pub faults: Vec<(String, String)>,
}

/// A theme store and the categories it takes from the base store.
#[derive(Debug, Clone)]
pub struct Theme {
    /// Name, e.g. `return_510100`.
    pub name: String,
    /// Category codes.
    pub categories: Vec<String>,
}

/// What one governance step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct GovernanceStep {
    /// Raw records read.
    pub read: u64,
    /// Records that passed into the base store (retractions included).
    pub passed: u64,
    /// Of those, duplicates of a record from another source.
    pub duplicates: u64,
    /// Records that failed a rule (a work order each).
    pub failed: u64,
    /// Work orders closed by a corrected version.
    pub closed_orders: u64,
}

/// A work order as the province keeps it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HeldOrder {
    /// Position in the orders feed.
    pub seq: i64,
    /// The jurisdiction of the record's origin.
    pub origin: String,
    /// The order.
    pub order: WorkOrder,
}

impl ProvinceStore {
    /// The flow writer.
    pub fn writer(&self) -> &FlowWriter {
        &self.writer
    }

    /// Apply a verified share batch to the raw store and acknowledge it, in one transaction.
    pub async fn apply_share_batch(
        &self,
        batch: &SignedBatch,
        records: Vec<FlowRecord>,
        keys: &NodeKeys,
        at: &str,
        rng: &mut impl RngCore,
    ) -> Result<Applied, StoreError> {
        let batch_id = batch.batch_id();
        let Some(_guard) = self.writer.claim(&batch_id).await? else {
            return Ok(Applied::before());
        };
        let mut seq = self.writer.max("raw_records", "seq").await?;
        let mut statements = Vec::with_capacity(records.len() + 2);
        let mut upserts = Vec::with_capacity(records.len());
        for mut record in records {
            record.lineage = extend_lineage(
                &record.lineage,
                "share",
                json!({"batch": batch_id, "from": batch.header.sender, "at": at}),
            );
            seq += 1;
            upserts.push(statements.len());
            statements.push(Statement::new(
                upsert_sql!("raw_records", "received_at"),
                upsert_params(record, seq, &batch_id, at, keys, rng),
            ));
        }
        statements.extend(FlowWriter::acknowledge(&batch.header, &batch_id, at));
        let affected = self.writer.run(statements).await?;
        let (applied, skipped) = count_upserts(&affected, &upserts);
        Ok(Applied {
            applied,
            skipped,
            exceptions: 0,
            already_applied: false,
        })
    }

    async fn governed_through(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT seq FROM governance_cursor WHERE name = 'raw'")
            .fetch_optional(self.writer.pool())
            .await?;
        Ok(match row {
            Some(r) => r.try_get("seq")?,
            None => 0,
        })
    }

    /// Govern up to `limit` raw records not yet governed: `rules` standardises a record in place
    /// and returns its faults. A passing record enters the base store (a duplicate of another
    /// source's record is marked, not themed) and every theme that takes its category, and closes
    /// its open work orders; a failing one opens a work order for its source. A retraction
    /// always passes, so that it reaches every copy.
    pub async fn govern(
        &self,
        keys: &NodeKeys,
        rules: &(dyn Fn(&mut HeldRecord) -> Verdict + Sync),
        themes: &[Theme],
        at: &str,
        limit: i64,
    ) -> Result<GovernanceStep, StoreError> {
        let _guard = self.writer.lock().await;
        let after = self.governed_through().await?;
        let raw = held_after(&self.writer, "raw_records", None, after, limit).await?;
        let mut step = GovernanceStep {
            read: raw.len() as u64,
            ..GovernanceStep::default()
        };
        let Some(last) = raw.last().map(|r| r.seq) else {
            return Ok(step);
        };
        let mut base_seq = self.writer.max("base_records", "seq").await?;
        let mut theme_seq = self.writer.max("theme_records", "seq").await?;
        let mut order_seq = self.writer.max("work_orders", "seq").await?;
        let mut order_id = self.writer.max("work_orders", "id").await?;
        // Open work orders (few) and the first holder of each business key in the chunk, read
        // up front rather than per record.
        let mut open: HashMap<String, Vec<HeldOrder>> = HashMap::new();
        for order in self.open_orders().await? {
            open.entry(order.order.gid.clone()).or_default().push(order);
        }
        let mut subject_indexes = Vec::with_capacity(raw.len());
        let mut business_keys = Vec::with_capacity(raw.len());
        for record in &raw {
            let subject_index: Option<String> = if record.subject_code.is_none() {
                let (_, id) =
                    crate::flows::open_personal(keys, &record.gid, record.personal.as_deref())?;
                id.map(|id| keys.blind_index(&id))
            } else {
                None
            };
            let subject = record
                .subject_code
                .clone()
                .or(subject_index.clone())
                .unwrap_or_default();
            business_keys.push(keys.keyed_hash(&[
                b"base-business-key",
                record.category.as_bytes(),
                record.document_number.as_bytes(),
                subject.as_bytes(),
                record.source_unit.as_bytes(),
            ]));
            subject_indexes.push(subject_index);
        }
        let mut first_holder = self.first_holders(&business_keys).await?;
        let mut statements = Vec::new();
        for ((mut record, subject_index), business_key) in
            raw.into_iter().zip(subject_indexes).zip(business_keys)
        {
            let verdict = if record.status == "withdrawn" {
                Verdict::default()
            } else {
                rules(&mut record)
            };
            let open_orders = open.remove(&record.gid).unwrap_or_default();
            if !verdict.faults.is_empty() {
                step.failed += 1;
                if open_orders
                    .iter()
                    .any(|o| o.order.version == record.version)
                {
                    continue;
                }
                order_id += 1;
                order_seq += 1;
                let faults = serde_json::to_string(&verdict.faults).unwrap_or_default();
                statements.push(Statement::new(
                    "INSERT INTO work_orders (id, seq, origin, gid, version, category, source_unit, document_number, faults, status, opened_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?)",
                    vec![
                        order_id.into(),
                        order_seq.into(),
                        origin_of(&record.gid).into(),
                        record.gid.clone().into(),
                        record.version.into(),
                        record.category.clone().into(),
                        record.source_unit.clone().into(),
                        record.document_number.clone().into(),
                        faults.into(),
                        at.into(),
                    ],
                ));
                continue;
            }
            for order in open_orders {
                order_seq += 1;
                step.closed_orders += 1;
                statements.push(Statement::new(
                    "UPDATE work_orders SET status = 'closed', closed_at = ?, seq = ? WHERE id = ?",
                    vec![at.into(), order_seq.into(), order.order.id.into()],
                ));
            }
            step.passed += 1;
            let duplicate_of = match first_holder.get(&business_key) {
                Some(gid) if *gid != record.gid => Some(gid.clone()),
                Some(_) => None,
                None => {
                    first_holder.insert(business_key.clone(), record.gid.clone());
                    None
                }
            };
            if duplicate_of.is_some() {
                step.duplicates += 1;
            }
            record.lineage = extend_lineage(
                &record.lineage,
                "governance",
                json!({
                    "standardised": verdict.standardised,
                    "checks": "passed",
                    "duplicate_of": duplicate_of,
                    "at": at,
                }),
            );
            base_seq += 1;
            statements.push(Statement::new(
                "INSERT INTO base_records (gid, seq, version, category, status, source_unit, subject_code, subject_index, document_number, \
                 decision_date, business_key, duplicate_of, payload, personal, lineage, governed_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (gid) DO UPDATE SET seq = excluded.seq, version = excluded.version, category = excluded.category, \
                 status = excluded.status, source_unit = excluded.source_unit, subject_code = excluded.subject_code, \
                 subject_index = excluded.subject_index, document_number = excluded.document_number, \
                 decision_date = excluded.decision_date, business_key = excluded.business_key, duplicate_of = excluded.duplicate_of, \
                 payload = excluded.payload, personal = excluded.personal, lineage = excluded.lineage, governed_at = excluded.governed_at \
                 WHERE excluded.version > base_records.version",
                vec![
                    record.gid.clone().into(),
                    base_seq.into(),
                    record.version.into(),
                    record.category.clone().into(),
                    record.status.clone().into(),
                    record.source_unit.clone().into(),
                    record.subject_code.clone().into(),
                    subject_index.into(),
                    record.document_number.clone().into(),
                    record.decision_date.clone().into(),
                    business_key.into(),
                    duplicate_of.clone().into(),
                    record.payload.clone().into(),
                    record.personal.clone().into(),
                    record.lineage.clone().into(),
                    at.into(),
                ],
            ));
            if duplicate_of.is_some() {
                continue;
            }
            for theme in themes
                .iter()
                .filter(|t| t.categories.contains(&record.category))
            {
                theme_seq += 1;
                let lineage = extend_lineage(&record.lineage, "theme", json!(theme.name));
                statements.push(Statement::new(
                    "INSERT INTO theme_records (theme, gid, seq, version, category, status, source_unit, subject_code, document_number, \
                     decision_date, payload, personal, lineage) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (theme, gid) DO UPDATE SET seq = excluded.seq, version = excluded.version, status = excluded.status, \
                     source_unit = excluded.source_unit, subject_code = excluded.subject_code, document_number = excluded.document_number, \
                     decision_date = excluded.decision_date, payload = excluded.payload, personal = excluded.personal, lineage = excluded.lineage \
                     WHERE excluded.version > theme_records.version",
                    vec![
                        theme.name.clone().into(),
                        record.gid.clone().into(),
                        theme_seq.into(),
                        record.version.into(),
                        record.category.clone().into(),
                        record.status.clone().into(),
                        record.source_unit.clone().into(),
                        record.subject_code.clone().into(),
                        record.document_number.clone().into(),
                        record.decision_date.clone().into(),
                        record.payload.clone().into(),
                        record.personal.clone().into(),
                        lineage.into(),
                    ],
                ));
            }
        }
        statements.push(Statement::new(
            "INSERT INTO governance_cursor (name, seq) VALUES ('raw', ?) ON CONFLICT (name) DO UPDATE SET seq = excluded.seq",
            vec![last.into()],
        ));
        self.writer.run(statements).await?;
        Ok(step)
    }

    /// For each business key already in the base store, the gid of the record that holds it
    /// (the first governed, not a duplicate).
    async fn first_holders(&self, keys: &[String]) -> Result<HashMap<String, String>, StoreError> {
        let mut holders = HashMap::new();
        let mut unique: Vec<&String> = keys.iter().collect();
        unique.sort();
        unique.dedup();
        for chunk in unique.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(",");
            let sql = self.writer.sql(&format!(
                "SELECT business_key, gid FROM base_records WHERE duplicate_of IS NULL AND business_key IN ({marks}) ORDER BY seq"
            ));
            let mut q = sqlx::query(&sql);
            for key in chunk {
                q = q.bind((*key).clone());
            }
            for row in q.fetch_all(self.writer.pool()).await? {
                let key: String = row.try_get("business_key")?;
                let gid: String = row.try_get("gid")?;
                holders.entry(key).or_insert(gid);
            }
        }
        Ok(holders)
    }

    async fn open_orders(&self) -> Result<Vec<HeldOrder>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ORDER_COLUMNS} FROM work_orders WHERE status = 'open'"
        ))
        .fetch_all(self.writer.pool())
        .await?;
        rows.iter().map(order_from_row).collect()
    }

    /// Work orders for `origin` changed after `seq`, in order (the orders feed).
    pub async fn orders_after(
        &self,
        origin: &str,
        seq: i64,
        limit: i64,
    ) -> Result<Vec<HeldOrder>, StoreError> {
        let sql = self.writer.sql(&format!(
            "SELECT {ORDER_COLUMNS} FROM work_orders WHERE origin = ? AND seq > ? ORDER BY seq LIMIT ?"
        ));
        let rows = sqlx::query(&sql)
            .bind(origin.to_owned())
            .bind(seq)
            .bind(limit)
            .fetch_all(self.writer.pool())
            .await?;
        rows.iter().map(order_from_row).collect()
    }

    /// Every work order, newest first.
    pub async fn orders(&self) -> Result<Vec<HeldOrder>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ORDER_COLUMNS} FROM work_orders ORDER BY id DESC"
        ))
        .fetch_all(self.writer.pool())
        .await?;
        rows.iter().map(order_from_row).collect()
    }

    /// Records of `theme` after `seq`, in order (the return-flow feed).
    pub async fn theme_after(
        &self,
        theme: &str,
        seq: i64,
        limit: i64,
    ) -> Result<Vec<HeldRecord>, StoreError> {
        held_after(&self.writer, "theme_records", Some(theme), seq, limit).await
    }

    /// Row count and SM3 over the sorted `(gid, version, status, payload)` of a theme, to compare
    /// with the return-flow store it was returned to.
    pub async fn theme_digest(&self, theme: &str) -> Result<(i64, String), StoreError> {
        crate::flows::rows_digest(
            &self.writer,
            "SELECT gid, version, status, payload FROM theme_records WHERE theme = ? ORDER BY gid",
            Some(theme),
        )
        .await
    }

    /// The record `gid` in the raw and base stores and in every theme: `(store, record)`.
    pub async fn locate(&self, gid: &str) -> Result<Vec<(String, HeldRecord)>, StoreError> {
        let mut found = Vec::new();
        for table in ["raw_records", "base_records"] {
            if let Some(r) = held(&self.writer, table, gid).await? {
                found.push((table.trim_end_matches("_records").to_owned(), r));
            }
        }
        let sql = self.writer.sql(&format!(
            "SELECT theme, {} FROM theme_records WHERE gid = ? ORDER BY theme",
            HeldRecord::COLUMNS
        ));
        for row in sqlx::query(&sql)
            .bind(gid.to_owned())
            .fetch_all(self.writer.pool())
            .await?
        {
            let theme: String = row.try_get("theme")?;
            found.push((format!("theme:{theme}"), HeldRecord::from_row(&row)?));
        }
        Ok(found)
    }

    /// Record counts: (raw, base, base duplicates, theme rows, open work orders).
    pub async fn counts(&self) -> Result<ProvinceCounts, StoreError> {
        let count = |sql: &'static str| async move {
            let n: i64 = sqlx::query(sql)
                .fetch_one(self.writer.pool())
                .await?
                .try_get("n")?;
            Ok::<i64, StoreError>(n)
        };
        Ok(ProvinceCounts {
            raw: count("SELECT COUNT(*) AS n FROM raw_records").await?,
            base: count("SELECT COUNT(*) AS n FROM base_records WHERE duplicate_of IS NULL")
                .await?,
            duplicates: count(
                "SELECT COUNT(*) AS n FROM base_records WHERE duplicate_of IS NOT NULL",
            )
            .await?,
            themed: count("SELECT COUNT(*) AS n FROM theme_records").await?,
            open_orders: count("SELECT COUNT(*) AS n FROM work_orders WHERE status = 'open'")
                .await?,
            ungoverned: {
                let through = self.governed_through().await?;
                let sql = self
                    .writer
                    .sql("SELECT COUNT(*) AS n FROM raw_records WHERE seq > ?");
                sqlx::query(&sql)
                    .bind(through)
                    .fetch_one(self.writer.pool())
                    .await?
                    .try_get("n")?
            },
        })
    }

    /// Bring the theme stores in line with `themes` (from the catalogue's granted
    /// subscriptions): a theme that is new or takes new categories is filled with the base
    /// store's records of those categories (duplicates left out), which the next return flow
    /// then carries. A category no longer subscribed stops flowing; what was returned stays.
    /// Returns the rows added per theme.
    pub async fn sync_themes(
        &self,
        themes: &[Theme],
        at: &str,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let _guard = self.writer.lock().await;
        let mut added = Vec::new();
        for theme in themes {
            let sql = self
                .writer
                .sql("SELECT categories FROM theme_definitions WHERE name = ?");
            let known: Vec<String> = match sqlx::query(&sql)
                .bind(theme.name.clone())
                .fetch_optional(self.writer.pool())
                .await?
            {
                Some(row) => {
                    let text: String = row.try_get("categories")?;
                    serde_json::from_str(&text).unwrap_or_default()
                }
                None => Vec::new(),
            };
            let new: Vec<&String> = theme
                .categories
                .iter()
                .filter(|c| !known.contains(c))
                .collect();
            let mut statements = Vec::new();
            let mut fills = Vec::new();
            if !new.is_empty() {
                let theme_key = serde_json::to_string(&theme.name).unwrap_or_default();
                for category in &new {
                    fills.push(statements.len());
                    statements.push(Statement::new(
                        "INSERT INTO theme_records (theme, gid, seq, version, category, status, source_unit, subject_code, document_number, \
                         decision_date, payload, personal, lineage) \
                         SELECT ?, gid, (SELECT COALESCE(MAX(seq), 0) FROM theme_records) + ROW_NUMBER() OVER (ORDER BY seq), version, category, \
                         status, source_unit, subject_code, document_number, decision_date, payload, personal, \
                         substr(lineage, 1, length(lineage) - 1) || ',\"theme\":' || ? || '}' \
                         FROM base_records WHERE category = ? AND duplicate_of IS NULL \
                         ON CONFLICT (theme, gid) DO NOTHING",
                        vec![
                            theme.name.clone().into(),
                            theme_key.clone().into(),
                            (*category).clone().into(),
                        ],
                    ));
                }
            }
            let mut categories = known.clone();
            categories.extend(new.iter().map(|c| (*c).clone()));
            categories.retain(|c| theme.categories.contains(c));
            if categories == known && new.is_empty() {
                continue;
            }
            statements.push(Statement::new(
                "INSERT INTO theme_definitions (name, categories, updated_at) VALUES (?, ?, ?) \
                 ON CONFLICT (name) DO UPDATE SET categories = excluded.categories, updated_at = excluded.updated_at",
                vec![
                    theme.name.clone().into(),
                    serde_json::to_string(&categories).unwrap_or_default().into(),
                    at.into(),
                ],
            ));
            let affected = self.writer.run(statements).await?;
            added.push((
                theme.name.clone(),
                fills.iter().map(|&i| affected[i]).sum::<u64>(),
            ));
        }
        Ok(added)
    }

    /// Record an exception a receiver reported for a batch this node sent.
    pub async fn record_sent_exception(
        &self,
        receiver: &str,
        flow: &str,
        reason: &str,
        at: &str,
    ) -> Result<(), StoreError> {
        let _guard = self.writer.lock().await;
        self.writer
            .run(vec![Statement::new(
                "INSERT INTO sent_exceptions (receiver, flow, reason, at) VALUES (?, ?, ?, ?)",
                vec![receiver.into(), flow.into(), reason.into(), at.into()],
            )])
            .await?;
        Ok(())
    }

    /// Exceptions receivers reported: (receiver, flow, reason, at), newest first.
    pub async fn sent_exceptions(
        &self,
    ) -> Result<Vec<(String, String, String, String)>, StoreError> {
        let rows =
            sqlx::query("SELECT receiver, flow, reason, at FROM sent_exceptions ORDER BY at DESC")
                .fetch_all(self.writer.pool())
                .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("receiver")?,
                    r.try_get("flow")?,
                    r.try_get("reason")?,
                    r.try_get("at")?,
                ))
            })
            .collect()
    }
}

/// Record counts of the province's stores.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ProvinceCounts {
    /// Records in the raw store.
    pub raw: i64,
    /// Records in the base store, duplicates left out.
    pub base: i64,
    /// Duplicates of another source's record in the base store.
    pub duplicates: i64,
    /// Rows in all theme stores.
    pub themed: i64,
    /// Open work orders.
    pub open_orders: i64,
    /// Raw records governance has not read yet.
    pub ungoverned: i64,
}

const ORDER_COLUMNS: &str =
    "id, seq, origin, gid, version, category, source_unit, document_number, faults, status";

fn order_from_row(row: &sqlx::any::AnyRow) -> Result<HeldOrder, StoreError> {
    let faults: String = row.try_get("faults")?;
    Ok(HeldOrder {
        seq: row.try_get("seq")?,
        origin: row.try_get("origin")?,
        order: WorkOrder {
            id: row.try_get("id")?,
            gid: row.try_get("gid")?,
            version: row.try_get("version")?,
            category: row.try_get("category")?,
            source_unit: row.try_get("source_unit")?,
            document_number: row.try_get("document_number")?,
            faults: serde_json::from_str(&faults)
                .map_err(|e| StoreError::Corrupt(format!("work order faults: {e}")))?,
            status: row.try_get("status")?,
        },
    })
}

/// The origin jurisdiction of a gid (`510100:42` → `510100`).
pub fn origin_of(gid: &str) -> &str {
    gid.split_once(':').map_or(gid, |(origin, _)| origin)
}
