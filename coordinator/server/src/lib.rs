//! The coordinator's identity service (统一身份认证, systems B1 and X5), run by the province: an SM2
//! certificate authority that enrols nodes and clients from a PKCS#10 request plus a one-time
//! token and binds each certificate to a jurisdiction and a role; revocation with a signed CRL; a
//! signed, expiring global configuration (trust anchor, node directory, CRL, the single-sign-on
//! key, policy versions) that nodes cache; users with review, argon2id passwords and lockout;
//! single-sign-on tokens (JWT-shaped, alg `SM2SM3`) that every node verifies offline; and an
//! SM3-chained audit log of every login and administrative action; and the data catalogue
//! ([`catalogue`]: resources, review and publication, versions, lineage, subscriptions with
//! working-day time limits). No credit data passes here.
//!
//! [`Coordinator`] holds the logic, with time passed in; [`api::router`] is its HTTP face.

pub mod api;
mod audit;
mod ca;
pub mod catalogue;
pub mod certificates;
mod config;
pub mod second_factor;
mod sso;
pub mod statistics;
mod users;

use std::path::Path;

use sqlx::AnyPool;
use xy_shangmi::sm2::Sm2SecretKey;

pub use audit::AuditCheck;
pub use ca::{Enrolment, EnrolmentToken};
pub use xy_coordination::{GlobalConfig, NodeEntry, SignedConfig};

/// Verify a signed configuration against the CA certificate (DER) and the time.
pub fn verify_global_config(
    signed: &SignedConfig,
    ca_certificate: &[u8],
    now: u64,
) -> Result<GlobalConfig, CoordinatorError> {
    xy_coordination::verify_global_config(signed, ca_certificate, now)
        .map_err(|e| CoordinatorError::Unauthorized(e.to_string()))
}
pub use sso::{AUDIENCE, Claims, TokenPair, verify_token};
pub use users::UserRole;

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Errors of the coordinator. Each maps to one HTTP status in [`api`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoordinatorError {
    /// The request is malformed; the text names the field.
    #[error("{0}")]
    BadRequest(String),
    /// No valid credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated, but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// The thing named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// It exists already, or was used already.
    #[error("{0}")]
    Conflict(String),
    /// A certificate or key operation failed.
    #[error(transparent)]
    Pki(#[from] xy_gmtls::GmTlsError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] xy_store::StoreError),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A file of the data directory could not be read or written.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

/// Time limits and thresholds.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long the signed global configuration stays valid (nodes keep working on their cached
    /// copy through a coordinator outage until then).
    pub config_ttl_secs: u64,
    /// Validity of issued certificates.
    pub certificate_days: u64,
    /// Validity of an access token.
    pub access_ttl_secs: u64,
    /// Validity of a refresh token (used once).
    pub refresh_ttl_secs: u64,
    /// Failed logins before a lockout.
    pub lockout_after: i64,
    /// Length of a lockout.
    pub lockout_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            config_ttl_secs: 7 * 86_400,
            certificate_days: 365,
            access_ttl_secs: 15 * 60,
            refresh_ttl_secs: 8 * 3600,
            lockout_after: 5,
            lockout_secs: 15 * 60,
        }
    }
}

/// The coordinator: its database, its CA and its signing key.
pub struct Coordinator {
    pool: AnyPool,
    ca: ca::Authority,
    sso_key: Sm2SecretKey,
    settings: Settings,
    catalogue: catalogue::CataloguePolicy,
    /// Seals TOTP secrets (`secrets.key` in the data directory).
    secrets: xy_shangmi::Sm4Gcm,
    /// Sends SMS one-time codes.
    sms: Box<dyn second_factor::SmsSender>,
    /// Certificate-login challenges: hash → expiry.
    challenges: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    /// Short-lived tickets for viewing the statistics page in a browser: token hash → (claims,
    /// expiry).
    view_tickets: std::sync::Mutex<std::collections::HashMap<String, (Claims, u64)>>,
    /// Serialises audit appends (each links to the previous entry's hash).
    audit_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator").finish_non_exhaustive()
    }
}

impl Coordinator {
    /// Open the coordinator in `data_dir`: SQLite there, or PostgreSQL at `database_url`; the CA
    /// and the single-sign-on key are created on first start (private files) and loaded after.
    pub async fn open(
        data_dir: &Path,
        database_url: Option<&str>,
        settings: Settings,
        now: u64,
    ) -> Result<Self, CoordinatorError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| CoordinatorError::Io(data_dir.display().to_string(), e))?;
        let location = match database_url {
            Some(url) => xy_store::StoreLocation::Postgres(url.to_owned()),
            None => xy_store::StoreLocation::Sqlite(data_dir.to_path_buf()),
        };
        let pool = xy_store::open_database(&location, "coordinator").await?;
        MIGRATIONS
            .run(&pool)
            .await
            .map_err(xy_store::StoreError::from)?;
        let ca = ca::Authority::load_or_create(data_dir, now)?;
        let sso_key = ca::load_or_create_key(&data_dir.join("sso.key"))?;
        let secrets = ca::load_or_create_secret(&data_dir.join("secrets.key"))?;
        Ok(Self {
            pool,
            ca,
            sso_key,
            settings,
            catalogue: catalogue::CataloguePolicy::shipped(),
            secrets,
            sms: Box::new(second_factor::LogSender),
            challenges: std::sync::Mutex::new(std::collections::HashMap::new()),
            view_tickets: std::sync::Mutex::new(std::collections::HashMap::new()),
            audit_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Send SMS one-time codes through `sender` instead of the log.
    pub fn with_sms_sender(mut self, sender: Box<dyn second_factor::SmsSender>) -> Self {
        self.sms = sender;
        self
    }

    /// The CA certificate (DER): the trust anchor of every node.
    pub fn ca_certificate(&self) -> &[u8] {
        self.ca.certificate()
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// A ticket that lets a browser open the statistics page for five minutes as `actor`
    /// (a browser cannot send the bearer header of a link).
    pub async fn view_ticket(&self, actor: &Claims, now: u64) -> Result<String, CoordinatorError> {
        let ticket = random_token();
        {
            let mut tickets = self.view_tickets.lock().unwrap_or_else(|e| e.into_inner());
            tickets.retain(|_, (_, expires)| *expires > now);
            tickets.insert(token_hash(&ticket), (actor.clone(), now + 300));
        }
        self.audit(&actor.sub, "statistics.ticket", serde_json::json!({}), now)
            .await?;
        Ok(ticket)
    }

    /// The caller a view ticket stands for.
    pub fn redeem_view_ticket(&self, ticket: &str, now: u64) -> Result<Claims, CoordinatorError> {
        let tickets = self.view_tickets.lock().unwrap_or_else(|e| e.into_inner());
        match tickets.get(&token_hash(ticket)) {
            Some((claims, expires)) if *expires > now => Ok(claims.clone()),
            _ => Err(CoordinatorError::Unauthorized(
                "the view ticket is unknown or expired".into(),
            )),
        }
    }

    /// The pool (tests and the CLI's checks).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

pub(crate) use xy_coordination::hex;

/// 32 random bytes as hex (tokens).
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    hex(&bytes)
}

/// SM3 of a secret token, hex (tokens are stored hashed).
pub(crate) fn token_hash(token: &str) -> String {
    hex(&xy_shangmi::sm3(token.as_bytes()))
}
