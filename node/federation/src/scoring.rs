//! Encrypted cross-jurisdiction scoring over the peer endpoint.
//!
//! ```text
//! institution ──fhe.keys (bulk, once per key)──────────────▶ province   caches the key (expiry)
//! institution ──fhe.score {uscc, key_id}───────────────────▶ province
//!                            province ──fhe.contribute {uscc} + public key──▶ each prefecture
//!                            province ◀── compact list of 5 encrypted values ── each prefecture
//! institution ◀── encrypted grade (and score), offset, contributors ── province
//! ```
//!
//! The province never holds a plaintext indicator: prefectures compute and encrypt theirs under
//! the requester's public key; the province only adds and compares ciphertexts; only the
//! institution can decrypt. Roles are checked on every request: scores for financial-institution
//! certificates, contributions for the province node. Every request is written to the data log.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use xy_fhe::{EvaluationKey, KeyUpload, RecordFacts, RequesterKeys, ScoringPolicy};
use xy_gmtls::pki::{PeerIdentity, Role};
use xy_store::{CollectionStore, RecordFilter, StoredRecord};
use xy_transport::{BulkReceiver, Handler, PeerConnection, PeerLink};

use crate::FederationError;
use crate::message::{decode, encode, join_parts, split_parts};

/// Name of the bulk transfer carrying a key upload.
pub const KEYS_TRANSFER: &str = "fhe.keys";
/// Prefix of the refusal that asks the requester to upload its keys.
pub const UNKNOWN_KEY: &str = "unknown-key";
/// Largest key upload accepted.
const MAX_UPLOAD: u64 = 1 << 30;

#[derive(Debug, Default, Serialize, Deserialize)]
struct RequestHeader {
    op: String,
    #[serde(default)]
    uscc: String,
    #[serde(default)]
    key_id: String,
    #[serde(default)]
    want_score: bool,
    #[serde(default)]
    policy_version: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct ContributionHeader {
    jurisdiction: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct ScoreHeader {
    offset: i64,
    nodes: usize,
    contributors: Vec<String>,
    policy_version: u32,
}

/// Settings of a node's scoring service.
pub struct ServiceConfig {
    /// This node's identity (from its certificate).
    pub identity: PeerIdentity,
    /// The scoring policy (shared by every node and the requester).
    pub policy: Arc<ScoringPolicy>,
    /// The node's collection store: records (prefectures) and the data log (all).
    pub store: CollectionStore,
    /// Where the province caches uploaded keys.
    pub key_dir: PathBuf,
    /// How long an uploaded key stays usable.
    pub key_ttl: Duration,
    /// The prefecture nodes the province asks (empty on a prefecture).
    pub prefectures: Vec<PeerLink>,
    /// Today's date in the node's time zone (indicators count "in force" and "last three years").
    pub today: Arc<dyn Fn() -> NaiveDate + Send + Sync>,
}

struct CachedKey {
    key: Arc<EvaluationKey>,
    public_key: Vec<u8>,
    expires: SystemTime,
}

/// The scoring service a node runs on its peer endpoint.
pub struct ScoringService {
    config: ServiceConfig,
    keys: Mutex<HashMap<String, Arc<CachedKey>>>,
}

pub(crate) fn now_text() -> String {
    chrono::Utc::now().to_rfc3339()
}

fn is_uscc(text: &str) -> bool {
    text.len() == 18
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
}

fn refuse(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl ScoringService {
    /// A service with `config`.
    pub fn new(config: ServiceConfig) -> Self {
        Self {
            config,
            keys: Mutex::new(HashMap::new()),
        }
    }

    fn check_subject_and_policy(&self, header: &RequestHeader) -> Result<(), String> {
        if !is_uscc(&header.uscc) {
            return Err(format!(
                "{:?} is not an 18-character unified social credit code",
                header.uscc
            ));
        }
        if header.policy_version != self.config.policy.version {
            return Err(format!(
                "scoring policy version {} asked; this federation uses {}",
                header.policy_version, self.config.policy.version
            ));
        }
        Ok(())
    }

    fn audit_actor(peer: &PeerIdentity) -> String {
        format!("{}:{}", peer.role, peer.jurisdiction)
    }

    fn key_paths(&self, key_id: &str) -> (PathBuf, PathBuf) {
        let dir = &self.config.key_dir;
        (
            dir.join(format!("{key_id}.upload")),
            dir.join(format!("{key_id}.expires")),
        )
    }

    /// The cached key `key_id`, from memory or from disk (decompressing it), if not expired.
    async fn cached_key(&self, key_id: &str) -> Option<Arc<CachedKey>> {
        if !key_id.bytes().all(|b| b.is_ascii_hexdigit()) || key_id.len() != 64 {
            return None;
        }
        let now = SystemTime::now();
        if let Some(k) = self.keys.lock().ok()?.get(key_id).cloned() {
            return (k.expires > now).then_some(k);
        }
        let (upload_path, expires_path) = self.key_paths(key_id);
        let expires_at: u64 = std::fs::read_to_string(&expires_path)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let expires = UNIX_EPOCH + Duration::from_secs(expires_at);
        if expires <= now {
            return None;
        }
        let bytes = std::fs::read(&upload_path).ok()?;
        let cached = tokio::task::spawn_blocking(move || -> Option<CachedKey> {
            let parts = split_parts(&bytes).ok()?;
            let [server_key, public_key] = parts.as_slice() else {
                return None;
            };
            let upload = KeyUpload {
                server_key: server_key.to_vec(),
                public_key: public_key.to_vec(),
            };
            let key = EvaluationKey::from_upload(&upload).ok()?;
            Some(CachedKey {
                key: Arc::new(key),
                public_key: upload.public_key,
                expires,
            })
        })
        .await
        .ok()??;
        let cached = Arc::new(cached);
        if let Ok(mut keys) = self.keys.lock() {
            keys.insert(key_id.to_owned(), Arc::clone(&cached));
        }
        Some(cached)
    }

    async fn receive_keys(
        &self,
        peer: &PeerIdentity,
        body: &mut BulkReceiver<'_>,
    ) -> Result<(), String> {
        if peer.role != Role::InstitutionClient {
            return Err("only financial-institution certificates upload scoring keys".into());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = body.next_chunk().await.map_err(refuse)? {
            if (bytes.len() + chunk.len()) as u64 > MAX_UPLOAD {
                return Err("key upload larger than 1 GiB".into());
            }
            bytes.extend_from_slice(&chunk);
        }
        let parts = split_parts(&bytes).map_err(refuse)?;
        let [server_key, public_key] = parts.as_slice() else {
            return Err("a key upload holds a server key and a public key".into());
        };
        let upload = KeyUpload {
            server_key: server_key.to_vec(),
            public_key: public_key.to_vec(),
        };
        let key_id = upload.key_id();
        let public_key = upload.public_key.clone();
        let key = tokio::task::spawn_blocking(move || EvaluationKey::from_upload(&upload))
            .await
            .map_err(refuse)?
            .map_err(refuse)?;
        let expires = SystemTime::now() + self.config.key_ttl;
        std::fs::create_dir_all(&self.config.key_dir).map_err(refuse)?;
        let (upload_path, expires_path) = self.key_paths(&key_id);
        std::fs::write(&upload_path, &bytes).map_err(refuse)?;
        let expires_at = expires
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        std::fs::write(&expires_path, expires_at.to_string()).map_err(refuse)?;
        if let Ok(mut keys) = self.keys.lock() {
            keys.insert(
                key_id.clone(),
                Arc::new(CachedKey {
                    key: Arc::new(key),
                    public_key,
                    expires,
                }),
            );
        }
        self.config
            .store
            .log_access(
                &now_text(),
                "fhe.keys",
                &Self::audit_actor(peer),
                serde_json::json!({"key_id": key_id, "bytes": bytes.len()}),
            )
            .await
            .map_err(refuse)?;
        info!(requester = %Self::audit_actor(peer), %key_id, bytes = bytes.len(), "scoring key cached");
        Ok(())
    }

    async fn score(&self, peer: &PeerIdentity, header: RequestHeader) -> Result<Vec<u8>, String> {
        if peer.role != Role::InstitutionClient {
            return Err("only financial-institution certificates may request scores".into());
        }
        if self.config.identity.role != Role::ProvinceNode {
            return Err("scores are computed by the province node".into());
        }
        self.check_subject_and_policy(&header)?;
        let Some(cached) = self.cached_key(&header.key_id).await else {
            return Err(format!(
                "{UNKNOWN_KEY}: upload the scoring keys (bulk {KEYS_TRANSFER}) first"
            ));
        };
        self.config
            .store
            .log_access(
                &now_text(),
                "fhe.score",
                &Self::audit_actor(peer),
                serde_json::json!({"uscc": header.uscc, "key_id": header.key_id, "want_score": header.want_score}),
            )
            .await
            .map_err(refuse)?;
        let request = encode(
            &RequestHeader {
                op: "fhe.contribute".into(),
                uscc: header.uscc.clone(),
                policy_version: self.config.policy.version,
                ..RequestHeader::default()
            },
            &cached.public_key,
        )
        .map_err(refuse)?;
        let mut contributions = Vec::new();
        let mut contributors = Vec::new();
        for link in &self.config.prefectures {
            match link.request(&request).await {
                Ok(answer) => match decode::<ContributionHeader>(&answer) {
                    Ok((h, body)) => {
                        contributors.push(h.jurisdiction);
                        contributions.push(body.to_vec());
                    }
                    Err(e) => warn!(error = %e, "malformed contribution ignored"),
                },
                Err(e) => warn!(error = %e, "a prefecture did not contribute"),
            }
        }
        if contributions.is_empty() {
            return Err("no prefecture node contributed".into());
        }
        let policy = Arc::clone(&self.config.policy);
        let key = Arc::clone(&cached.key);
        let want_score = header.want_score;
        let started = std::time::Instant::now();
        let answer = tokio::task::spawn_blocking(move || {
            xy_fhe::aggregate(&policy, &key, &contributions, want_score)
        })
        .await
        .map_err(refuse)?
        .map_err(refuse)?;
        info!(
            nodes = answer.nodes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "encrypted score aggregated"
        );
        let mut parts: Vec<&[u8]> = vec![&answer.grade];
        if let Some(raw) = &answer.raw_score {
            parts.push(raw);
        }
        encode(
            &ScoreHeader {
                offset: answer.offset,
                nodes: answer.nodes,
                contributors,
                policy_version: self.config.policy.version,
            },
            &join_parts(&parts),
        )
        .map_err(refuse)
    }

    async fn contribute(
        &self,
        peer: &PeerIdentity,
        header: RequestHeader,
        public_key: &[u8],
    ) -> Result<Vec<u8>, String> {
        if peer.role != Role::ProvinceNode {
            return Err("only the province node asks for contributions".into());
        }
        self.check_subject_and_policy(&header)?;
        let records = self
            .config
            .store
            .query(&RecordFilter {
                subject_code: Some(header.uscc.clone()),
                limit: Some(10_000),
                ..RecordFilter::default()
            })
            .await
            .map_err(refuse)?;
        // The values stay in this function: never logged, never stored, only encrypted.
        let values = indicator_values(&self.config.policy, &records, (self.config.today)());
        let policy = Arc::clone(&self.config.policy);
        let public_key = public_key.to_vec();
        let body = tokio::task::spawn_blocking(move || {
            let key = xy_fhe::circuit::parse_public_key(&public_key)?;
            xy_fhe::encrypt_contribution(&policy, &key, &values)
        })
        .await
        .map_err(refuse)?
        .map_err(refuse)?;
        self.config
            .store
            .log_access(
                &now_text(),
                "fhe.contribute",
                &Self::audit_actor(peer),
                serde_json::json!({"uscc": header.uscc}),
            )
            .await
            .map_err(refuse)?;
        encode(
            &ContributionHeader {
                jurisdiction: self.config.identity.jurisdiction.clone(),
            },
            &body,
        )
        .map_err(refuse)
    }
}

impl Handler for ScoringService {
    async fn request(&self, peer: &PeerIdentity, payload: Vec<u8>) -> Result<Vec<u8>, String> {
        let (header, body) = decode::<RequestHeader>(&payload).map_err(refuse)?;
        match header.op.as_str() {
            "fhe.score" => self.score(peer, header).await,
            "fhe.contribute" => self.contribute(peer, header, body).await,
            other => Err(format!("unknown operation {other:?}")),
        }
    }

    async fn bulk(
        &self,
        peer: &PeerIdentity,
        name: Vec<u8>,
        body: &mut BulkReceiver<'_>,
    ) -> Result<(), String> {
        if name != KEYS_TRANSFER.as_bytes() {
            return Err(format!(
                "unknown transfer {:?}",
                String::from_utf8_lossy(&name)
            ));
        }
        self.receive_keys(peer, body).await
    }
}

/// A subject's indicators (policy order) from its stored records, as of `today`.
pub fn indicator_values(
    policy: &ScoringPolicy,
    records: &[StoredRecord],
    today: NaiveDate,
) -> Vec<u16> {
    let facts: Vec<RecordFacts<'_>> = records
        .iter()
        .map(|r| RecordFacts {
            category: &r.category,
            decision_date: r.decision_date.as_deref(),
            payload: &r.payload,
        })
        .collect();
    policy
        .indicators
        .iter()
        .map(|i| i.value(&facts, today))
        .collect()
}

/// What an institution learns from a score request.
#[derive(Debug, Clone)]
pub struct ScoreReport {
    /// The grade.
    pub grade: String,
    /// The clamped score, if asked for.
    pub score: Option<i64>,
    /// Jurisdictions whose nodes contributed.
    pub contributors: Vec<String>,
    /// Bytes of keys uploaded for this request (0 when the province had them cached).
    pub uploaded_bytes: usize,
}

/// An institution's side: its keys and the province connection.
pub struct ScoringClient {
    keys: RequesterKeys,
    upload: KeyUpload,
    policy: Arc<ScoringPolicy>,
}

impl ScoringClient {
    /// A client with `keys` (the client key never leaves it).
    pub fn new(keys: RequesterKeys, policy: Arc<ScoringPolicy>) -> Result<Self, FederationError> {
        let upload = keys.upload()?;
        Ok(Self {
            keys,
            upload,
            policy,
        })
    }

    /// Bytes a key upload costs.
    pub fn upload_bytes(&self) -> usize {
        self.upload.len()
    }

    /// Ask the province for the score of `uscc`; uploads the keys first if the province asks.
    pub async fn score(
        &self,
        province: &PeerConnection,
        uscc: &str,
        want_score: bool,
    ) -> Result<ScoreReport, FederationError> {
        let request = encode(
            &RequestHeader {
                op: "fhe.score".into(),
                uscc: uscc.to_owned(),
                key_id: self.upload.key_id(),
                want_score,
                policy_version: self.policy.version,
            },
            &[],
        )?;
        let mut uploaded_bytes = 0;
        let answer = match province.request(&request).await {
            Err(xy_transport::TransportError::Refused(reason))
                if reason.starts_with(UNKNOWN_KEY) =>
            {
                let body = join_parts(&[&self.upload.server_key, &self.upload.public_key]);
                uploaded_bytes = body.len();
                let chunks = body
                    .chunks(xy_transport::quic::BULK_CHUNK)
                    .map(<[u8]>::to_vec)
                    .collect::<Vec<_>>();
                province.send_bulk(KEYS_TRANSFER.as_bytes(), chunks).await?;
                province.request(&request).await?
            }
            other => other?,
        };
        let (header, body) = decode::<ScoreHeader>(&answer)?;
        let parts = split_parts(body)?;
        let (grade, raw_score) = match parts.as_slice() {
            [grade] => (grade.to_vec(), None),
            [grade, raw] => (grade.to_vec(), Some(raw.to_vec())),
            _ => {
                return Err(FederationError::Malformed(
                    "a score answer holds a grade and at most a score".into(),
                ));
            }
        };
        let encrypted = xy_fhe::EncryptedScore {
            grade,
            raw_score,
            offset: header.offset,
            nodes: header.nodes,
        };
        let (grade, score) = xy_fhe::decrypt(&self.policy, &self.keys.client_key, &encrypted)?;
        Ok(ScoreReport {
            grade,
            score,
            contributors: header.contributors,
            uploaded_bytes,
        })
    }
}
