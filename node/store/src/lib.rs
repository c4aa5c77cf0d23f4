//! The node's stores, on embedded SQLite (default) or PostgreSQL (production), through sqlx:
//!
//! - [`CollectionStore`] — 归集共享库, the collection/sharing store: records per category, source
//!   unit, ingest batch and version, with full history, per-row batch reports and the SM3-chained
//!   data log (数据日志);
//! - [`ReturnFlowStore`] — 回流库, the return-flow store: staging area, current records, history;
//! - [`ScenarioStore`] — 应用场景库, one per scenario, created on demand.
//!
//! The stores are logically isolated: separate SQLite files, or separate PostgreSQL schemas each
//! reached through its own role, so a scenario's connections cannot read the collection store.
//! One set of migrations per store serves both engines (portable SQL).

mod collection;
pub mod datalog;
mod db;
mod keys;
mod native;
pub mod quality;

use sqlx::{AnyPool, Row};

pub use collection::{
    BatchSummary, BatchWriter, CollectionStore, ExistingRecord, INSERT_CHUNK, NewRecord, Outcome,
    OutcomeCounts, RecordFilter, ReportRow, RowFault, StoredRecord,
};
pub use datalog::{AuditReport, LogEntry};
pub use db::{Backend, StoreLocation};
pub use keys::{NodeKeys, write_secret};

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

/// 回流库: the return-flow store (staging area, current records, history of every change).
#[derive(Clone)]
pub struct ReturnFlowStore {
    pool: AnyPool,
}

impl ReturnFlowStore {
    /// The underlying pool.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Number of current records.
    pub async fn record_count(&self) -> Result<i64, StoreError> {
        count_records(&self.pool).await
    }
}

async fn count_records(pool: &AnyPool) -> Result<i64, StoreError> {
    Ok(sqlx::query("SELECT COUNT(*) AS n FROM records")
        .fetch_one(pool)
        .await?
        .try_get("n")?)
}

/// 应用场景库: the store of one application scenario.
#[derive(Clone)]
pub struct ScenarioStore {
    name: String,
    pool: AnyPool,
}

impl ScenarioStore {
    /// The scenario's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The underlying pool.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Number of records.
    pub async fn record_count(&self) -> Result<i64, StoreError> {
        count_records(&self.pool).await
    }
}

/// The three kinds of store a node holds.
#[derive(Clone)]
pub struct NodeStores {
    location: StoreLocation,
    /// 归集共享库.
    pub collection: CollectionStore,
    /// 回流库.
    pub return_flow: ReturnFlowStore,
}

impl NodeStores {
    /// Open (creating and migrating as needed) the collection and return-flow stores.
    pub async fn open(location: StoreLocation) -> Result<Self, StoreError> {
        let collection = db::open_pool(&location, "collection").await?;
        COLLECTION_MIGRATIONS.run(&collection).await?;
        let return_flow = db::open_pool(&location, "return_flow").await?;
        RETURN_FLOW_MIGRATIONS.run(&return_flow).await?;
        tracing::info!(backend = ?location.backend(), "stores open");
        Ok(Self {
            collection: CollectionStore::new(
                collection,
                location.backend(),
                match &location {
                    StoreLocation::Sqlite(dir) => Some(dir.join("collection.db")),
                    StoreLocation::Postgres(_) => None,
                },
            ),
            location,
            return_flow: ReturnFlowStore { pool: return_flow },
        })
    }

    /// Where the stores live.
    pub fn location(&self) -> &StoreLocation {
        &self.location
    }

    /// The store of scenario `name`, created and migrated on first use.
    pub async fn scenario(&self, name: &str) -> Result<ScenarioStore, StoreError> {
        db::validate_scenario_name(name)?;
        let location = match &self.location {
            StoreLocation::Sqlite(dir) => StoreLocation::Sqlite(dir.join("scenarios")),
            pg => pg.clone(),
        };
        let pool = db::open_pool(&location, &format!("scenario_{name}")).await?;
        SCENARIO_MIGRATIONS.run(&pool).await?;
        Ok(ScenarioStore {
            name: name.to_owned(),
            pool,
        })
    }

    /// The quality report of the collection store.
    pub async fn quality_report(&self) -> Result<Vec<quality::QualityLine>, StoreError> {
        quality::quality_report(self.collection.pool()).await
    }

    /// Close every pool (flushes SQLite's WAL on last close).
    pub async fn close(&self) {
        self.collection.pool().close().await;
        self.return_flow.pool.close().await;
    }
}
