//! Connections: one pool per store, on SQLite (a file per store in the data directory) or on
//! PostgreSQL (a schema per store in one database, each reached through its own role, so that a
//! store's connections cannot read another store's tables).

use std::path::Path;
use std::str::FromStr;
use std::sync::Once;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor};

use crate::StoreError;

/// The database engine behind the stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite files in the data directory (the default; nothing to install).
    Sqlite,
    /// A PostgreSQL database (production), one schema per store.
    Postgres,
}

/// Where a node keeps its stores.
#[derive(Debug, Clone)]
pub enum StoreLocation {
    /// SQLite files under this directory.
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL URL (`postgres://…`).
    Postgres(String),
}

impl StoreLocation {
    /// The backend of this location.
    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }
}

pub(crate) fn install_drivers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(sqlx::any::install_default_drivers);
}

/// Open (creating if needed) the pool for one store named `store` (`collection`, `return_flow`,
/// `scenario_<name>`).
pub(crate) async fn open_pool(
    location: &StoreLocation,
    store: &str,
) -> Result<AnyPool, StoreError> {
    install_drivers();
    match location {
        StoreLocation::Sqlite(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Io(dir.display().to_string(), e))?;
            let path = dir.join(format!("{store}.db"));
            open_sqlite(&path, sqlite_page_size(store)).await
        }
        StoreLocation::Postgres(url) => open_postgres(url, store).await,
    }
}

/// The page size a new SQLite store file is created with (it cannot change afterwards without a
/// `VACUUM`). 16 KiB suits ~1 KiB records. The collection store takes 32 KiB: its batches are
/// large runs of new records, and the ingest ran about 6% faster with them (4.71 against 5.01 s a
/// million rows, mean of seven alternating pairs; 64 KiB was slower again, every new version then
/// dirtying a larger page). The return-flow store measured slower with 32 KiB pages than 16 KiB.
fn sqlite_page_size(store: &str) -> u32 {
    if store == "collection" { 32768 } else { 16384 }
}

async fn open_sqlite(path: &Path, page_size: u32) -> Result<AnyPool, StoreError> {
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let options = AnyConnectOptions::from_str(&url)?.disable_statement_logging();
    let pool = AnyPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(60))
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                // WAL lets readers work while a batch is written; FULL makes every committed batch
                // durable; the larger cache keeps index inserts in memory during big batches.
                // The page size takes effect only when a file is created (see sqlite_page_size).
                conn.execute(format!("PRAGMA page_size = {page_size}").as_str())
                    .await?;
                conn.execute("PRAGMA journal_mode = WAL").await?;
                conn.execute("PRAGMA synchronous = FULL").await?;
                conn.execute("PRAGMA busy_timeout = 30000").await?;
                conn.execute("PRAGMA cache_size = -65536").await?;
                conn.execute("PRAGMA temp_store = MEMORY").await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await?;
    Ok(pool)
}

fn check_identifier(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 48
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(StoreError::BadName(name.to_owned()))
    }
}

async fn open_postgres(url: &str, store: &str) -> Result<AnyPool, StoreError> {
    check_identifier(store)?;
    let schema = format!("xy_{store}");
    let role = format!("xy_{store}_rw");
    let admin = AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await?;
    // Schema and role are created by the configured (administrative) user; the store then works
    // through its own role, which can use only its own schema.
    let setup = format!(
        "DO $$ BEGIN \
           IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN CREATE ROLE {role} NOLOGIN; END IF; \
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
    );
    admin.execute(setup.as_str()).await?;
    let create_schema = format!("CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION {role}");
    if let Err(e) = admin.execute(create_schema.as_str()).await {
        // Two stores opening at once may race on the catalogue; the schema then exists.
        tracing::debug!(error = %e, "create schema raced");
    }
    admin
        .execute(format!("GRANT {role} TO CURRENT_USER").as_str())
        .await
        .ok();
    admin.close().await;
    let options = AnyConnectOptions::from_str(url)?.disable_statement_logging();
    let pool = AnyPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(60))
        .after_connect(move |conn, _meta| {
            let set = format!("SET ROLE {role}; SET search_path TO {schema}");
            Box::pin(async move {
                conn.execute(set.as_str()).await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await?;
    Ok(pool)
}

/// Bind placeholders for `count` parameters starting at `first`: positional `?` on SQLite, `$n` on
/// PostgreSQL. (sqlx binds `$n` on SQLite by looking each name up, which is quadratic in the number of
/// parameters: a 4,096-parameter multi-row insert spent most of its time there.)
pub(crate) fn placeholders(backend: Backend, first: usize, count: usize) -> Vec<String> {
    (first..first + count)
        .map(|n| match backend {
            Backend::Sqlite => "?".to_owned(),
            Backend::Postgres => format!("${n}"),
        })
        .collect()
}

/// The VALUES list of a multi-row insert of `rows` rows of `cols` columns.
pub(crate) fn values_clause(backend: Backend, rows: usize, cols: usize) -> String {
    let ph = placeholders(backend, 1, rows * cols);
    ph.chunks(cols)
        .map(|row| format!("({})", row.join(",")))
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) fn validate_scenario_name(name: &str) -> Result<(), StoreError> {
    check_identifier(name)
}
