//! The node's stores, on embedded SQLite (default) or PostgreSQL (production), through sqlx:
//!
//! - [`CollectionStore`] — 归集共享库, the collection/sharing store: records per category, source
//!   unit, ingest batch and version, with full history, per-row batch reports and the SM3-chained
//!   data log (数据日志);
//! - [`ReturnFlowStore`] — 回流库, the return-flow store: staging area, current records, history;
//! - [`ScenarioStore`] — 应用场景库, one per scenario, created on demand and extracted
//!   incrementally from the return-flow store;
//! - on the province, [`ProvinceStore`] — 原始库 raw, 基础库 base and 主题库 theme stores and
//!   治理工单 work orders (governance, system D7).
//!
//! The federated flows ([`flows`]) write each received batch in one transaction with its
//! acknowledgement (applied batches and per-sender cursors), so a batch is applied exactly once.
//!
//! The stores are logically isolated: separate SQLite files, or separate PostgreSQL schemas each
//! reached through its own role, so a scenario's connections cannot read the collection store.
//! One set of migrations per store serves both engines (portable SQL).

mod borrowed;
mod collection;
pub mod datalog;
mod db;
pub mod flows;
mod keys;
mod lineage;
mod native;
mod province;
pub mod quality;
mod return_flow;
mod scenario;
mod share;

use sqlx::{AnyPool, Row};

pub use collection::{
    BatchSummary, BatchWriter, CollectionStore, ExistingRecord, INSERT_CHUNK, KeyMap, NewRecord,
    Outcome, OutcomeCounts, PendingLookup, RecordFields, RecordFilter, ReportRow, RowFault,
    StoredRecord,
};
pub use datalog::{AuditReport, LogEntry};
pub use db::{Backend, StoreLocation};
pub use flows::{Applied, FlowWriter, HeldRecord, Mapped};
pub use keys::{NodeKeys, write_secret};
pub use province::{
    GovernanceStep, HeldOrder, ProvinceCounts, ProvinceStore, Theme, Verdict, origin_of,
};
pub use return_flow::{FlowException, ReturnFlowStore};
pub use scenario::{Extracted, ScenarioRecord, ScenarioStore};
pub use share::{FeedRecord, ReceivedOrder};

/// Open (creating and migrating nothing) a database named `name` at `location` — a SQLite file in
/// the directory, or a PostgreSQL schema reached through its own role — for components that keep
/// their own tables beside the node's stores (the coordinator).
pub async fn open_database(location: &StoreLocation, name: &str) -> Result<AnyPool, StoreError> {
    db::open_pool(location, name).await
}

/// Errors of the stores.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database refused or failed an operation.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A file of the data directory could not be read or written.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// The node key file is not 32 bytes of hex.
    #[error("key file {0} is malformed (expected 64 hex characters)")]
    BadKeyFile(String),
    /// A store or scenario name is not a plain lower-case identifier.
    #[error(
        "invalid store name {0:?}: use lower-case letters, digits and '_' (at most 48, not starting with a digit)"
    )]
    BadName(String),
    /// Something asked for does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// Stored data is not what this version wrote.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

static COLLECTION_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/collection");
static RETURN_FLOW_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/return_flow");
static SCENARIO_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/scenario");
static PROVINCE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/province");

pub(crate) async fn count_records(pool: &AnyPool) -> Result<i64, StoreError> {
    Ok(sqlx::query("SELECT COUNT(*) AS n FROM records")
        .fetch_one(pool)
        .await?
        .try_get("n")?)
}

/// The three kinds of store a node holds.
#[derive(Clone)]
pub struct NodeStores {
    location: StoreLocation,
    /// 归集共享库.
    pub collection: CollectionStore,
    /// 回流库.
    pub return_flow: ReturnFlowStore,
    /// The province's stores and the scenario stores, opened on first use and then shared by
    /// every clone: one pool and one writer lock per store, however many callers.
    province: std::sync::Arc<tokio::sync::OnceCell<ProvinceStore>>,
    scenarios: std::sync::Arc<tokio::sync::Mutex<std::collections::HashMap<String, ScenarioStore>>>,
}

impl NodeStores {
    /// Open (creating and migrating as needed) the collection and return-flow stores.
    pub async fn open(location: StoreLocation) -> Result<Self, StoreError> {
        let collection = db::open_pool(&location, "collection").await?;
        COLLECTION_MIGRATIONS.run(&collection).await?;
        let return_flow = db::open_pool(&location, "return_flow").await?;
        RETURN_FLOW_MIGRATIONS.run(&return_flow).await?;
        let return_flow = ReturnFlowStore {
            writer: FlowWriter::new(
                return_flow,
                location.backend(),
                Self::sqlite_file(&location, "return_flow"),
            ),
        };
        tracing::info!(backend = ?location.backend(), "stores open");
        Ok(Self {
            collection: CollectionStore::new(
                collection,
                location.backend(),
                Self::sqlite_file(&location, "collection"),
            ),
            location,
            return_flow,
            province: Default::default(),
            scenarios: Default::default(),
        })
    }

    fn sqlite_file(location: &StoreLocation, name: &str) -> Option<std::path::PathBuf> {
        match location {
            StoreLocation::Sqlite(dir) => Some(dir.join(format!("{name}.db"))),
            StoreLocation::Postgres(_) => None,
        }
    }

    /// The province's governance stores (raw, base, themes, work orders), created and migrated
    /// on first use, then the same store for every caller.
    pub async fn province(&self) -> Result<ProvinceStore, StoreError> {
        self.province
            .get_or_try_init(|| async {
                let pool = db::open_pool(&self.location, "province").await?;
                PROVINCE_MIGRATIONS.run(&pool).await?;
                Ok::<_, StoreError>(ProvinceStore {
                    writer: FlowWriter::new(
                        pool,
                        self.location.backend(),
                        Self::sqlite_file(&self.location, "province"),
                    ),
                })
            })
            .await
            .cloned()
    }

    /// Where the stores live.
    pub fn location(&self) -> &StoreLocation {
        &self.location
    }

    /// The store of scenario `name`, created and migrated on first use, then the same store for
    /// every caller.
    pub async fn scenario(&self, name: &str) -> Result<ScenarioStore, StoreError> {
        db::validate_scenario_name(name)?;
        let mut open = self.scenarios.lock().await;
        if let Some(store) = open.get(name) {
            return Ok(store.clone());
        }
        let location = match &self.location {
            StoreLocation::Sqlite(dir) => StoreLocation::Sqlite(dir.join("scenarios")),
            pg => pg.clone(),
        };
        let store = format!("scenario_{name}");
        let pool = db::open_pool(&location, &store).await?;
        SCENARIO_MIGRATIONS.run(&pool).await?;
        let opened = ScenarioStore {
            name: name.to_owned(),
            writer: FlowWriter::new(
                pool,
                location.backend(),
                Self::sqlite_file(&location, &store),
            ),
        };
        open.insert(name.to_owned(), opened.clone());
        Ok(opened)
    }

    /// The quality report of the collection store.
    pub async fn quality_report(&self) -> Result<Vec<quality::QualityLine>, StoreError> {
        quality::quality_report(self.collection.pool()).await
    }

    /// Close every pool (flushes SQLite's WAL on last close).
    pub async fn close(&self) {
        self.collection.pool().close().await;
        self.return_flow.pool().close().await;
        if let Some(province) = self.province.get() {
            province.writer().pool().close().await;
        }
        for scenario in self.scenarios.lock().await.values() {
            scenario.pool().close().await;
        }
    }
}

/// Support for the PostgreSQL tests of every crate.
pub mod testing {
    use crate::StoreError;

    /// A fresh database on the throwaway PostgreSQL cluster that `scripts/test.sh` starts and
    /// names in `XY_TEST_PG_URL`; its URL. Named after `name` and the process, so concurrent
    /// test binaries never share one.
    pub async fn postgres_database(name: &str) -> Result<String, StoreError> {
        let base = std::env::var("XY_TEST_PG_URL").map_err(|_| {
            StoreError::NotFound(
                "XY_TEST_PG_URL is not set: run the test suite with scripts/test.sh, which starts a throwaway PostgreSQL"
                    .into(),
            )
        })?;
        crate::db::install_drivers();
        let admin = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&base)
            .await?;
        let db = format!("xy_{name}_{}", std::process::id());
        sqlx::query(&format!("DROP DATABASE IF EXISTS {db}"))
            .execute(&admin)
            .await?;
        sqlx::query(&format!("CREATE DATABASE {db}"))
            .execute(&admin)
            .await?;
        admin.close().await;
        let (prefix, _) = base
            .rsplit_once('/')
            .ok_or_else(|| StoreError::NotFound(format!("{base}: no database part")))?;
        Ok(format!("{prefix}/{db}"))
    }
}
