//! Node configuration: a TOML file (see `deploy/node.example.toml`) plus command-line overrides,
//! and opening the node's stores and keys from it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;
use xy_ingest::Ingestor;
use xy_policy::PolicySet;
use xy_store::{NodeKeys, NodeStores, StoreLocation};

use crate::NodeArgs;

/// The settings file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NodeConfig {
    /// HTTP listen address.
    pub(crate) listen: Option<String>,
    /// PostgreSQL URL (production); SQLite in the data directory when absent.
    pub(crate) database_url: Option<String>,
    /// A policy directory replacing the built-in policies.
    pub(crate) policies_dir: Option<PathBuf>,
    /// Write a quality report to <data-dir>/reports every this many seconds while serving.
    pub(crate) quality_report_interval_secs: Option<u64>,
    /// Largest HTTP push accepted, in MiB (default 1024).
    pub(crate) max_upload_mib: Option<u64>,
    /// The QUIC peer endpoint (other nodes, institutions); off when absent.
    pub(crate) peer: Option<PeerConfig>,
    /// The federated flows (share up, governance, return flow, scenarios); off when absent.
    /// Needs `[peer]`.
    pub(crate) flows: Option<FlowsConfig>,
}

/// The `[flows]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FlowsConfig {
    /// Seconds between rounds while serving (default 10).
    pub(crate) interval_secs: Option<u64>,
    /// Records per batch (default 20,000).
    pub(crate) batch_rows: Option<usize>,
    /// On a prefecture: the province node its collection store is shared up to.
    pub(crate) province: Option<ProvinceConfig>,
    /// On the province: a governance rules file replacing the built-in `policies/governance.toml`.
    pub(crate) governance: Option<PathBuf>,
    /// A directory of scenario definitions replacing the built-in `policies/scenarios/`.
    pub(crate) scenarios_dir: Option<PathBuf>,
}

/// The province node as a prefecture reaches it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProvinceConfig {
    /// Its QUIC address.
    pub(crate) addr: std::net::SocketAddr,
    /// The name in its certificate.
    pub(crate) server_name: String,
}

/// The `[peer]` section: the node's QUIC endpoint and, on the province, its prefectures.
/// Relative paths are relative to the data directory.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PeerConfig {
    /// UDP address to listen on.
    pub(crate) listen: String,
    /// This node's certificate (PEM).
    pub(crate) cert: PathBuf,
    /// Its private key (PKCS#8 PEM).
    pub(crate) key: PathBuf,
    /// Trust anchors (PEM).
    pub(crate) ca: PathBuf,
    /// Revocation list (PEM).
    pub(crate) crl: Option<PathBuf>,
    /// Days an uploaded scoring key stays cached (default 30).
    pub(crate) key_ttl_days: Option<u64>,
    /// Ids each financial institution may ask per minute in private credit queries (default 600).
    pub(crate) private_query_ids_per_minute: Option<u32>,
    /// The prefecture nodes the province asks for contributions.
    #[serde(default)]
    pub(crate) prefectures: Vec<PrefectureConfig>,
    /// The coordinator: the signed global configuration is fetched and cached from it, and the
    /// node's daily counts are sent to it, signed with this endpoint's key.
    pub(crate) coordinator: Option<CoordinatorConfig>,
}

/// The coordinator as a node reaches it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CoordinatorConfig {
    /// `host:port` of its HTTP API.
    pub(crate) address: String,
    /// Minutes between refreshes of the configuration (default 10).
    pub(crate) refresh_minutes: Option<u64>,
}

/// One prefecture node, as the province reaches it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PrefectureConfig {
    /// Its QUIC address.
    pub(crate) addr: std::net::SocketAddr,
    /// The name in its certificate.
    pub(crate) server_name: String,
    /// Its jurisdiction (GB/T 2260): the province returns it the theme `return_<jurisdiction>`.
    pub(crate) jurisdiction: Option<String>,
    /// The categories its return-flow theme takes (default: every category of the policies).
    pub(crate) return_categories: Option<Vec<String>>,
}

/// Everything a command needs to work on a node.
pub(crate) struct Node {
    pub(crate) data_dir: PathBuf,
    pub(crate) config: NodeConfig,
    pub(crate) stores: NodeStores,
    pub(crate) keys: NodeKeys,
    pub(crate) ingestor: Ingestor,
    pub(crate) policies: std::sync::Arc<PolicySet>,
}

pub(crate) fn load_config(args: &NodeArgs) -> anyhow::Result<NodeConfig> {
    let path = match &args.config {
        Some(p) => Some(p.clone()),
        None => Some(args.data_dir.join("node.toml")).filter(|p| p.exists()),
    };
    let mut config: NodeConfig = match path {
        Some(p) => {
            let text =
                std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing {}", p.display()))?
        }
        None => NodeConfig::default(),
    };
    if args.database_url.is_some() {
        config.database_url = args.database_url.clone();
    }
    Ok(config)
}

pub(crate) async fn open(args: &NodeArgs) -> anyhow::Result<Node> {
    let config = load_config(args)?;
    open_with(&args.data_dir, config).await
}

pub(crate) async fn open_with(data_dir: &Path, config: NodeConfig) -> anyhow::Result<Node> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    let location = match &config.database_url {
        Some(url) => StoreLocation::Postgres(url.clone()),
        None => StoreLocation::Sqlite(data_dir.join("stores")),
    };
    let stores = NodeStores::open(location)
        .await
        .context("opening the stores")?;
    let keys = NodeKeys::load_or_create(data_dir).context("loading the node key")?;
    let policies = match &config.policies_dir {
        Some(dir) => PolicySet::load_dir(dir)?,
        None => PolicySet::builtin()?,
    };
    let ingestor = Ingestor::new(policies.clone(), stores.collection.clone(), keys.clone());
    Ok(Node {
        data_dir: data_dir.to_path_buf(),
        config,
        stores,
        keys,
        ingestor,
        policies: std::sync::Arc::new(policies),
    })
}

pub(crate) use xy_ingest::now_china as now_cst;

/// The HTTP API token in <data-dir>/api.token, created (mode 0600) on first use.
pub(crate) fn api_token(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("api.token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        return Ok(t.trim().to_owned());
    }
    let mut bytes = [0u8; 24];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    xy_store::write_secret(&path, &token).with_context(|| format!("writing {}", path.display()))?;
    Ok(token)
}
