//! What nodes and the coordinator exchange, and how each side checks it (sans-IO: time comes in
//! as an argument):
//!
//! - the **global configuration** — trust anchors, node directory, CRL, the single-sign-on key,
//!   policy versions — signed by the coordinator's CA key and valid until `expires_at`, so a node
//!   verifies it with the anchor it already trusts and keeps working on a cached copy through a
//!   coordinator outage until then ([`verify_global_config`]);
//! - a node's **daily counts** (统计), signed with its node certificate's key ([`sign_report`]);
//! - **single-sign-on tokens**: JWT-shaped (`header.payload.signature`, base64url), alg `SM2SM3`,
//!   which a node verifies offline with the key the configuration carries ([`verify_sso_token`]).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use xy_gmtls::pki::ParsedCertificate;
use xy_shangmi::sm2::{CERT_DISTID, Sm2PublicKey, Sm2SecretKey};

/// Errors of the checks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoordinationError {
    /// Malformed input; the text names the part.
    #[error("malformed: {0}")]
    Malformed(String),
    /// A signature does not verify.
    #[error("signature: {0}")]
    Signature(String),
    /// The configuration has expired.
    #[error("the configuration expired at {0}")]
    Expired(u64),
    /// A single-sign-on token is not valid; the text says why.
    #[error("invalid token: {0}")]
    Token(&'static str),
}

/// The issuer of single-sign-on tokens.
pub const SSO_ISSUER: &str = "xinyong-coordinator";
/// Their audience: the platform's nodes and the coordinator.
pub const SSO_AUDIENCE: &str = "xinyong-platform";

/// What a single-sign-on token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SsoClaims {
    /// The user.
    pub sub: String,
    /// The user's role (`province-admin`, `prefecture-admin`, `department-operator`, `auditor`,
    /// `institution-user`).
    pub role: String,
    /// The user's jurisdiction.
    pub jurisdiction: String,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Expires at (Unix seconds).
    pub exp: u64,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
}

/// Verify a token offline: its SM2 signature under `key`, the algorithm, the issuer, the
/// audience and the expiry.
pub fn verify_sso_token(
    token: &str,
    key: &Sm2PublicKey,
    audience: &str,
    now: u64,
) -> Result<SsoClaims, CoordinationError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(CoordinationError::Token("not three parts"));
    };
    let header_json = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| CoordinationError::Token("header"))?;
    let header_value: serde_json::Value =
        serde_json::from_slice(&header_json).map_err(|_| CoordinationError::Token("header"))?;
    if header_value["alg"] != "SM2SM3" {
        return Err(CoordinationError::Token("algorithm is not SM2SM3"));
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| CoordinationError::Token("signature encoding"))?;
    let signed = &token[..header.len() + 1 + payload.len()];
    key.verify(CERT_DISTID, signed.as_bytes(), &signature)
        .map_err(|_| CoordinationError::Token("signature"))?;
    let claims: SsoClaims = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| CoordinationError::Token("payload encoding"))?,
    )
    .map_err(|_| CoordinationError::Token("claims"))?;
    if claims.iss != SSO_ISSUER {
        return Err(CoordinationError::Token("issuer"));
    }
    if claims.aud != audience {
        return Err(CoordinationError::Token("audience"));
    }
    if claims.exp <= now {
        return Err(CoordinationError::Token("expired"));
    }
    Ok(claims)
}

/// The single-sign-on key of a configuration.
pub fn sso_key(config: &GlobalConfig) -> Result<Sm2PublicKey, CoordinationError> {
    unhex(&config.sso_public_key)
        .and_then(|bytes| Sm2PublicKey::from_sec1(&bytes).ok())
        .ok_or_else(|| CoordinationError::Malformed("the configuration's SSO key".into()))
}

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
    /// The granted subscriptions of the catalogue that feed the return flow: the province's
    /// return-flow theme of each prefecture takes these categories.
    #[serde(default)]
    pub return_subscriptions: Vec<ReturnSubscription>,
}

/// A granted catalogue subscription of a prefecture, as the return flow uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnSubscription {
    /// The subscribing prefecture.
    pub jurisdiction: String,
    /// The resource code.
    pub resource: String,
    /// The record categories the resource covers (its `category:<code>` tags).
    pub categories: Vec<String>,
}

impl GlobalConfig {
    /// The categories each prefecture's return flow takes, by jurisdiction (sorted, deduplicated).
    pub fn return_categories(&self) -> std::collections::BTreeMap<String, Vec<String>> {
        let mut out: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for s in &self.return_subscriptions {
            out.entry(s.jurisdiction.clone())
                .or_default()
                .extend(s.categories.iter().cloned());
        }
        for categories in out.values_mut() {
            categories.sort();
            categories.dedup();
        }
        out
    }
}

/// The configuration as served: its exact JSON text and the CA's SM2 signature over it (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedConfig {
    /// The JSON of a [`GlobalConfig`].
    pub config: String,
    /// SM2-with-SM3 signature (r ‖ s, hex) by the CA key.
    pub signature: String,
}

/// Hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of hex, if it is hex.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect()
}

/// Verify a signed configuration against the CA certificate (DER) and the time.
pub fn verify_global_config(
    signed: &SignedConfig,
    ca_certificate: &[u8],
    now: u64,
) -> Result<GlobalConfig, CoordinationError> {
    let key = ParsedCertificate::parse(ca_certificate)
        .map_err(|e| CoordinationError::Malformed(format!("CA certificate: {e}")))?
        .public_key;
    let signature = unhex(&signed.signature)
        .ok_or_else(|| CoordinationError::Malformed("configuration signature is not hex".into()))?;
    key.verify(CERT_DISTID, signed.config.as_bytes(), &signature)
        .map_err(|_| {
            CoordinationError::Signature(
                "the configuration's signature does not verify under the CA".into(),
            )
        })?;
    let config: GlobalConfig = serde_json::from_str(&signed.config)
        .map_err(|e| CoordinationError::Malformed(format!("configuration: {e}")))?;
    if config.expires_at <= now {
        return Err(CoordinationError::Expired(config.expires_at));
    }
    Ok(config)
}

/// One line of a node's daily counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountLine {
    /// Record category code (`xzcf`, `xzxk`, …).
    pub category: String,
    /// Source unit (USCC of the department).
    pub source_unit: String,
    /// Rows ingested.
    pub ingested: u64,
    /// Rows rejected by a rule.
    pub rejected: u64,
    /// Records shared up.
    pub shared: u64,
    /// Records received in the return flow.
    pub returned: u64,
    /// Queries answered.
    pub queried: u64,
}

/// A node's counts for one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountReport {
    /// The reporting node's jurisdiction.
    pub jurisdiction: String,
    /// The day (`YYYY-MM-DD`, Beijing time).
    pub day: String,
    /// The counts.
    pub lines: Vec<CountLine>,
}

/// A report as sent: its JSON, the node's SM2 signature over it (hex) and the node certificate.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedReport {
    /// JSON of a [`CountReport`].
    pub report: String,
    /// SM2-with-SM3 signature (r ‖ s, hex) by the node's certificate key.
    pub signature: String,
    /// The node's certificate, PEM.
    pub certificate_pem: String,
}

/// Sign a report with the node's key (the node's side).
pub fn sign_report(
    report: &CountReport,
    key: &Sm2SecretKey,
    certificate_pem: &str,
) -> Result<SignedReport, CoordinationError> {
    let text = serde_json::to_string(report)
        .map_err(|e| CoordinationError::Malformed(format!("report: {e}")))?;
    let signature = key
        .sign(CERT_DISTID, text.as_bytes())
        .map_err(|e| CoordinationError::Signature(e.to_string()))?;
    Ok(SignedReport {
        report: text,
        signature: hex(&signature),
        certificate_pem: certificate_pem.to_owned(),
    })
}
