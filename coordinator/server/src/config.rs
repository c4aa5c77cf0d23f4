//! The global configuration: trust anchor, node directory, CRL, the single-sign-on key and policy
//! versions, signed by the CA key (nodes verify it with the CA certificate they already trust)
//! and valid until `expires_at`, so nodes keep working on a cached copy through a coordinator
//! outage until then.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use xy_gmtls::pki::{ParsedCertificate, pem_encode};
use xy_shangmi::sm2::{CERT_DISTID, Sm2PublicKey};

use crate::{Coordinator, CoordinatorError, hex};

/// One node of the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEntry {
    /// Six-digit division code.
    pub jurisdiction: String,
    /// `province-node` or `prefecture-node`.
    pub role: String,
    /// Its QUIC address.
    pub address: String,
    /// The name in its certificate.
    pub server_name: String,
}

/// The configuration's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalConfig {
    /// Format version.
    pub version: u32,
    /// When it was made (Unix seconds).
    pub issued_at: u64,
    /// When nodes must stop trusting it.
    pub expires_at: u64,
    /// Trust anchors, PEM.
    pub trust_anchors: Vec<String>,
    /// The CRL, PEM.
    pub crl: String,
    /// The single-sign-on key (SEC1, hex) tokens are verified with.
    pub sso_public_key: String,
    /// The node directory.
    pub nodes: Vec<NodeEntry>,
    /// Versions of the shared policies in force.
    pub policy_versions: std::collections::BTreeMap<String, u32>,
}

/// The configuration as served: its exact JSON text and the CA's SM2 signature over it (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedConfig {
    /// The JSON of a [`GlobalConfig`].
    pub config: String,
    /// SM2-with-SM3 signature (r ‖ s, hex) by the CA key.
    pub signature: String,
}

/// Verify a signed configuration against the CA certificate (DER) and the time; returns it.
pub fn verify_global_config(
    signed: &SignedConfig,
    ca_certificate: &[u8],
    now: u64,
) -> Result<GlobalConfig, CoordinatorError> {
    let key: Sm2PublicKey = ParsedCertificate::parse(ca_certificate)?.public_key;
    let signature = (0..signed.signature.len())
        .step_by(2)
        .map(|i| {
            signed
                .signature
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(|| {
            CoordinatorError::Unauthorized("configuration signature is not hex".into())
        })?;
    key.verify(CERT_DISTID, signed.config.as_bytes(), &signature)
        .map_err(|_| {
            CoordinatorError::Unauthorized(
                "the configuration's signature does not verify under the CA".into(),
            )
        })?;
    let config: GlobalConfig = serde_json::from_str(&signed.config)
        .map_err(|e| CoordinatorError::BadRequest(format!("configuration: {e}")))?;
    if config.expires_at <= now {
        return Err(CoordinatorError::Unauthorized(format!(
            "the configuration expired at {}",
            config.expires_at
        )));
    }
    Ok(config)
}

impl Coordinator {
    /// The current configuration, signed.
    pub async fn global_config(&self, now: u64) -> Result<SignedConfig, CoordinatorError> {
        let rows = sqlx::query(
            "SELECT jurisdiction, role, address, server_name FROM nodes ORDER BY jurisdiction, role",
        )
        .fetch_all(&self.pool)
        .await?;
        let nodes = rows
            .iter()
            .map(|row| {
                Ok(NodeEntry {
                    jurisdiction: row.try_get(0)?,
                    role: row.try_get(1)?,
                    address: row.try_get(2)?,
                    server_name: row.try_get(3)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let crl = self.revocation_list(now).await?;
        let config = GlobalConfig {
            version: 1,
            issued_at: now,
            expires_at: now + self.settings.config_ttl_secs,
            trust_anchors: vec![pem_encode("CERTIFICATE", self.ca.certificate())],
            crl: pem_encode("X509 CRL", &crl),
            sso_public_key: hex(&self.sso_public_key().to_sec1()),
            nodes,
            policy_versions: [("scoring".to_owned(), 1), ("categories".to_owned(), 1)]
                .into_iter()
                .collect(),
        };
        let text = serde_json::to_string(&config)
            .map_err(|e| CoordinatorError::BadRequest(format!("configuration: {e}")))?;
        let signature = self
            .ca
            .key()
            .sign(CERT_DISTID, text.as_bytes())
            .map_err(|e| CoordinatorError::BadRequest(format!("signing: {e}")))?;
        Ok(SignedConfig {
            config: text,
            signature: hex(&signature),
        })
    }
}
