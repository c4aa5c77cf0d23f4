//! Lineage (数据血缘): where a record is held on this node and where each copy came from.

use serde_json::{Value, json};

use crate::flows::HeldRecord;
use crate::{NodeStores, StoreError};

fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

fn held_copy(store: &str, record: &HeldRecord) -> Value {
    json!({
        "store": store,
        "version": record.version,
        "status": record.status,
        "lineage": parse_json(&record.lineage),
    })
}

impl NodeStores {
    /// Every copy of record `gid` this node holds — collection store (at its origin), the
    /// province's raw, base and theme stores, the return-flow store with its earlier versions, and
    /// the scenarios named — each with the lineage it carries: source unit and ingest batch,
    /// share batch, governance, theme, return batch, scenario.
    pub async fn lineage(
        &self,
        gid: &str,
        jurisdiction: &str,
        is_province: bool,
        scenarios: &[&str],
    ) -> Result<Value, StoreError> {
        let (origin, id) = gid
            .split_once(':')
            .ok_or_else(|| StoreError::NotFound(format!("{gid:?} is not <jurisdiction>:<id>")))?;
        let mut copies = Vec::new();
        if origin == jurisdiction
            && let Ok(id) = id.parse::<i64>()
            && let Some(record) = self.collection.record(id).await?
        {
            let history = self.collection.history(id).await?;
            copies.push(json!({
                "store": "collection",
                "version": record.version,
                "status": record.status,
                "source_unit": record.source_unit,
                "ingest_batch": record.batch_id,
                "ingested_at": record.ingested_at,
                "earlier_versions": history.iter().map(|h| json!({"version": h.version, "status": h.status, "ingest_batch": h.batch_id})).collect::<Vec<_>>(),
            }));
        }
        if is_province {
            for (store, record) in self.province().await?.locate(gid).await? {
                copies.push(held_copy(&store, &record));
            }
        }
        if let Some(record) = self.return_flow.record(gid).await? {
            let mut copy = held_copy("return_flow", &record);
            copy["earlier_versions"] = self
                .return_flow
                .history(gid)
                .await?
                .into_iter()
                .map(|(version, status, lineage)| {
                    json!({"version": version, "status": status, "lineage": parse_json(&lineage)})
                })
                .collect();
            copies.push(copy);
        }
        for name in scenarios {
            if let Some(record) = self.scenario(name).await?.record(gid).await? {
                copies.push(json!({
                    "store": format!("scenario:{name}"),
                    "version": record.version,
                    "lineage": record.lineage,
                }));
            }
        }
        Ok(json!({"gid": gid, "node": jurisdiction, "copies": copies}))
    }
}
