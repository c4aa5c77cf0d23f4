//! Helpers shared by the integration tests.

use std::path::Path;

use chrono::NaiveDate;
use xy_ingest::{IngestOptions, Ingestor};
use xy_policy::PolicySet;
use xy_store::{NodeKeys, NodeStores, StoreLocation};

pub(crate) fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 26).unwrap()
}

pub(crate) fn options() -> IngestOptions {
    IngestOptions {
        category: None,
        source_unit: None,
        operator: "test".into(),
        today: today(),
        now: "2026-11-26T10:00:00+08:00".into(),
    }
}

pub(crate) async fn sqlite_node(dir: &Path) -> (NodeStores, Ingestor) {
    let stores = NodeStores::open(StoreLocation::Sqlite(dir.join("stores")))
        .await
        .expect("open stores");
    let keys = NodeKeys::load_or_create(dir).expect("keys");
    let ingestor = Ingestor::new(
        PolicySet::builtin().unwrap(),
        stores.collection.clone(),
        keys,
    );
    (stores, ingestor)
}

/// The PostgreSQL URL of the throwaway cluster started by `scripts/test.sh`, with a fresh database
/// created for the calling test.
pub(crate) async fn postgres_database(name: &str) -> String {
    xy_store::testing::postgres_database(name).await.unwrap()
}

/// Parse a JSON-lines report.
pub(crate) fn read_report(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("report line is JSON"))
        .collect()
}

/// Create `table` at `url` (any sqlx URL) as a department would export it: a `seq` column, then one
/// TEXT column per header, with one row per generated row (empty cells as NULL).
pub(crate) async fn load_table(
    url: &str,
    table: &str,
    headers: &[&str],
    rows: &[xy_synth::SynthRow],
) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap();
    let columns: Vec<String> = headers.iter().map(|h| format!("{h} TEXT")).collect();
    sqlx::query(&format!(
        "CREATE TABLE {table} (seq BIGINT, {})",
        columns.join(", ")
    ))
    .execute(&pool)
    .await
    .unwrap();
    // `$n` placeholders work on both engines.
    let ph: Vec<String> = (1..=headers.len() + 1).map(|i| format!("${i}")).collect();
    let insert = format!("INSERT INTO {table} VALUES ({})", ph.join(","));
    for (i, row) in rows.iter().enumerate() {
        let mut q = sqlx::query(&insert).bind(i as i64);
        for v in &row.cells {
            q = q.bind(if v.is_empty() { None } else { Some(v.clone()) });
        }
        q.execute(&pool).await.unwrap();
    }
    pool.close().await;
}
