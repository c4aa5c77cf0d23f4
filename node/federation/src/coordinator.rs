//! The node's side of the coordinator: fetch the signed global configuration, verify it with the
//! CA certificate the node trusts, cache it in the data directory, and fall back on the cache
//! while the coordinator is unreachable — until the configuration expires; and send the node's
//! signed daily counts. Both travel over plain HTTP/1.1: each is signed end to end, and neither is
//! secret.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{info, warn};
use xy_coordination::{
    CountLine, CountReport, GlobalConfig, SignedConfig, sign_report, verify_global_config,
};
use xy_shangmi::sm2::Sm2SecretKey;

use crate::FederationError;

/// The cache file in the node's data directory.
pub const CONFIG_CACHE: &str = "global-config.json";
/// Largest response read from the coordinator.
const MAX_RESPONSE: u64 = 16 << 20;

/// A node's link to the coordinator.
#[derive(Debug, Clone)]
pub struct CoordinatorClient {
    /// `host:port` of the coordinator's API.
    address: String,
    /// The CA certificate (DER) the configuration must be signed by.
    ca_certificate: Vec<u8>,
    /// Where the verified configuration is cached.
    cache: PathBuf,
}

/// Where a configuration came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Fetched just now.
    Coordinator,
    /// The cached copy (the coordinator was unreachable or refused).
    Cache,
}

fn malformed(message: String) -> FederationError {
    FederationError::Malformed(message)
}

/// One HTTP/1.1 exchange (`Connection: close`); returns the status and the body.
async fn http(
    address: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Result<(u16, Vec<u8>), FederationError> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|e| malformed(format!("coordinator {address}: {e}")))?;
        let body = body.unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream
            .write_all(head.as_bytes())
            .await
            .and(stream.write_all(body).await)
            .map_err(|e| malformed(format!("coordinator {address}: {e}")))?;
        let mut response = Vec::new();
        (&mut stream)
            .take(MAX_RESPONSE + 1)
            .read_to_end(&mut response)
            .await
            .map_err(|e| malformed(format!("coordinator {address}: {e}")))?;
        if response.len() as u64 > MAX_RESPONSE {
            return Err(malformed("the coordinator's response is too large".into()));
        }
        let split = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| malformed("the coordinator's response has no header end".into()))?;
        let status_line = String::from_utf8_lossy(&response[..split]);
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| malformed("the coordinator's response has no status".into()))?;
        let chunked = status_line
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        let mut payload = response[split + 4..].to_vec();
        if chunked {
            payload = dechunk(&payload)?;
        }
        Ok((status, payload))
    };
    tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .map_err(|_| malformed(format!("coordinator {address}: no answer in 30 s")))?
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, FederationError> {
    let mut out = Vec::new();
    loop {
        let end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| malformed("a chunk has no size line".into()))?;
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16)
            .map_err(|_| malformed("a chunk size is not hex".into()))?;
        data = &data[end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err(malformed("a chunk is cut short".into()));
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

impl CoordinatorClient {
    /// A client of the coordinator at `address` (`host:port`), trusting `ca_certificate` (DER),
    /// caching in `data_dir`.
    pub fn new(address: &str, ca_certificate: Vec<u8>, data_dir: &std::path::Path) -> Self {
        Self {
            address: address.to_owned(),
            ca_certificate,
            cache: data_dir.join(CONFIG_CACHE),
        }
    }

    /// Fetch and verify the configuration, and cache it.
    pub async fn fetch_config(&self, now: u64) -> Result<GlobalConfig, FederationError> {
        let (status, body) = http(&self.address, "GET", "/api/config", None).await?;
        if status != 200 {
            return Err(malformed(format!(
                "the coordinator answered {status}: {}",
                String::from_utf8_lossy(&body)
            )));
        }
        let signed: SignedConfig =
            serde_json::from_slice(&body).map_err(|e| malformed(format!("configuration: {e}")))?;
        let config = verify_global_config(&signed, &self.ca_certificate, now)
            .map_err(|e| FederationError::Unauthorized(e.to_string()))?;
        let text = serde_json::to_vec(&signed).map_err(|e| malformed(e.to_string()))?;
        let partial = self.cache.with_extension("json.part");
        std::fs::write(&partial, text)
            .and_then(|()| std::fs::rename(&partial, &self.cache))
            .map_err(|e| malformed(format!("{}: {e}", self.cache.display())))?;
        Ok(config)
    }

    /// The cached configuration, verified again (signature and expiry), if there is one.
    pub fn cached_config(&self, now: u64) -> Result<Option<GlobalConfig>, FederationError> {
        let text = match std::fs::read(&self.cache) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(malformed(format!("{}: {e}", self.cache.display()))),
        };
        let signed: SignedConfig = serde_json::from_slice(&text)
            .map_err(|e| malformed(format!("{}: {e}", self.cache.display())))?;
        verify_global_config(&signed, &self.ca_certificate, now)
            .map(Some)
            .map_err(|e| FederationError::Unauthorized(e.to_string()))
    }

    /// The configuration to work with: fetched, or — while the coordinator is unreachable — the
    /// cached copy until it expires.
    pub async fn current_config(
        &self,
        now: u64,
    ) -> Result<(GlobalConfig, ConfigSource), FederationError> {
        match self.fetch_config(now).await {
            Ok(config) => {
                info!(
                    nodes = config.nodes.len(),
                    expires_at = config.expires_at,
                    "global configuration fetched"
                );
                Ok((config, ConfigSource::Coordinator))
            }
            Err(fetch) => match self.cached_config(now)? {
                Some(config) => {
                    warn!(error = %fetch, expires_at = config.expires_at, "coordinator unreachable: working on the cached configuration");
                    Ok((config, ConfigSource::Cache))
                }
                None => Err(fetch),
            },
        }
    }

    /// Send the node's signed counts for a day.
    pub async fn send_report(
        &self,
        report: &CountReport,
        key: &Sm2SecretKey,
        certificate_pem: &str,
    ) -> Result<(), FederationError> {
        let signed =
            sign_report(report, key, certificate_pem).map_err(|e| malformed(e.to_string()))?;
        let body = serde_json::to_vec(&signed).map_err(|e| malformed(e.to_string()))?;
        let (status, answer) = http(
            &self.address,
            "POST",
            "/api/statistics/reports",
            Some(&body),
        )
        .await?;
        if status != 202 {
            return Err(FederationError::Unauthorized(format!(
                "the coordinator refused the report ({status}): {}",
                String::from_utf8_lossy(&answer)
            )));
        }
        Ok(())
    }
}

/// The node's counts for `day` (`YYYY-MM-DD`) from its data log: rows ingested (stored or
/// updated) and rejected per category and source unit, and the queries it answered (private
/// queries, scores, record queries) on a line of category `query`.
pub async fn daily_report(
    store: &xy_store::CollectionStore,
    jurisdiction: &str,
    day: &str,
) -> Result<CountReport, FederationError> {
    let entries = xy_store::datalog::entries(store.pool(), None).await?;
    let mut lines: std::collections::BTreeMap<(String, String), CountLine> =
        std::collections::BTreeMap::new();
    let mut queried = 0u64;
    for entry in entries.iter().filter(|e| e.at.starts_with(day)) {
        match entry.kind.as_str() {
            "ingest" => {
                let category = entry.category.clone().unwrap_or_default();
                let unit = entry.source_unit.clone().unwrap_or_default();
                let line = lines
                    .entry((category.clone(), unit.clone()))
                    .or_insert_with(|| CountLine {
                        category,
                        source_unit: unit,
                        ingested: 0,
                        rejected: 0,
                        shared: 0,
                        returned: 0,
                        queried: 0,
                    });
                line.ingested += (entry.stored + entry.updated).max(0) as u64;
                line.rejected += entry.rejected.max(0) as u64;
            }
            "pq.query" | "fhe.score" | "query" => queried += 1,
            _ => {}
        }
    }
    let mut lines: Vec<CountLine> = lines.into_values().collect();
    if queried > 0 {
        lines.push(CountLine {
            category: "query".into(),
            source_unit: String::new(),
            ingested: 0,
            rejected: 0,
            shared: 0,
            returned: 0,
            queried,
        });
    }
    Ok(CountReport {
        jurisdiction: jurisdiction.to_owned(),
        day: day.to_owned(),
        lines,
    })
}
