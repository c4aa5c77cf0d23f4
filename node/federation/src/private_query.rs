//! Private credit queries for financial institutions (system B3, 信易贷) over the peer endpoint.
//!
//! ```text
//! institution ──pq.info──────────────────────────────▶ node   bucket count, subjects, epoch
//! institution ──pq.snapshot {since, from_bucket}─────▶ node   filter mode: tags, in pages
//! institution ──pq.keys (PIR Galois keys, once)──────▶ node   bucket mode, kept in memory
//! institution ──pq.query (blinded ids [+ buckets])───▶ node   rate-limited, audited (count only)
//! institution ◀── evaluated points [+ bucket directories] ── node
//! institution ──pq.fetch (a PIR query per id)────────▶ node   bucket mode, audited (count only)
//! institution ◀── PIR answers (the id's block, encrypted) ── node
//! ```
//!
//! The node builds its [`LabelIndex`] from its collection store: each subject's records, masked
//! as in any public output (identity numbers never leave in clear), are one label, sealed under
//! the subject's OPRF output ([`xy_psi::query`]). [`PrivateQueryService::refresh`] re-evaluates
//! only the subjects written since the last refresh. The OPRF key is generated once and kept in
//! the data directory sealed with the node's keys.
//!
//! Only financial-institution certificates may call these operations; each institution has a
//! budget of ids per minute; every query is written to the data log with who, when, the mode and
//! how many ids — never which (the node never learns them).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::info;
use xy_gmtls::pki::{PeerIdentity, Role};
use xy_ingest::view::{Disclosure, record_view};
use xy_psi::pir::PirServerKeys;
use xy_psi::query::{
    BucketKey, FetchRequest, FetchResponse, FilterIndex, LAYOUT_CHANGED, LabelIndex, OprfKey,
    PrivateQuery, QueryAnswer, QueryMode, QueryRequest, QueryResponse, Snapshot,
};
use xy_store::{CollectionStore, NodeKeys, StoredRecord};
use xy_transport::{BulkReceiver, Handler, PeerConnection};

use crate::FederationError;
use crate::message::{decode, encode};

/// The sealed OPRF key's file in the node's data directory.
pub const OPRF_KEY_FILE: &str = "private-query.key";
/// Default budget of ids per institution per minute.
pub const DEFAULT_IDS_PER_MINUTE: u32 = 600;
/// Most tags in one snapshot page (3 MiB, below the transport's frame limit).
const SNAPSHOT_PAGE: usize = (3 << 20) / xy_psi::query::TAG_LEN;
const OPRF_KEY_CONTEXT: &[u8] = b"xinyong private-query oprf key";
/// Institutions' PIR keys a node keeps (about 3 MB each, prepared), the oldest dropped first.
const MAX_PIR_KEYS: usize = 64;
/// PIR keys kept per institution.
const MAX_PIR_KEYS_PER_INSTITUTION: usize = 4;
/// Starts the error of a fetch whose PIR keys the node does not hold (the client registers
/// them and asks again).
pub const UNKNOWN_PIR_KEYS: &str = "PIR keys unknown";

#[derive(Debug, Default, Serialize, Deserialize)]
struct RequestHeader {
    op: String,
    #[serde(default)]
    since: Option<u64>,
    #[serde(default)]
    from_bucket: u32,
}

/// The payload of operation `op` with `body` (no other header fields).
fn operation(op: &str, body: &[u8]) -> Result<Vec<u8>, FederationError> {
    encode(
        &RequestHeader {
            op: op.into(),
            ..Default::default()
        },
        body,
    )
}

/// What `pq.info` tells an institution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexInfo {
    /// Buckets ids hash into (bucket mode).
    pub bucket_count: u32,
    /// Subjects the node holds (the database size every query reveals).
    pub subjects: u64,
    /// The index's epoch.
    pub epoch: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct PageHeader {
    next_bucket: Option<u32>,
}

/// Load the node's OPRF key from `dir`, or create and store it (sealed with the node's keys).
pub fn load_or_create_oprf_key(dir: &Path, keys: &NodeKeys) -> Result<OprfKey, FederationError> {
    let path = dir.join(OPRF_KEY_FILE);
    let corrupt = |m: String| FederationError::Malformed(format!("{}: {m}", path.display()));
    match std::fs::read_to_string(&path) {
        Ok(sealed) => {
            let plain = keys.open(OPRF_KEY_CONTEXT, sealed.trim())?;
            let bytes: [u8; 32] = plain
                .as_slice()
                .try_into()
                .map_err(|_| corrupt("not a 32-byte key".into()))?;
            OprfKey::from_bytes(&bytes).map_err(|e| corrupt(e.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut random = [0u8; 64];
            rand::fill(&mut random[..]);
            let key = OprfKey::from_random(&random);
            let sealed = keys.seal(OPRF_KEY_CONTEXT, &key.to_bytes(), &mut rand::rng());
            xy_store::write_secret(&path, &sealed).map_err(|e| corrupt(e.to_string()))?;
            Ok(key)
        }
        Err(e) => Err(corrupt(e.to_string())),
    }
}

/// Largest label a client inflates (bytes of JSON).
const MAX_INFLATED_LABEL: u64 = 64 << 20;

/// A subject's label: its records as masked JSON views, in id order, deflated (a bucket answer
/// carries a thousand labels; JSON with repeated field names shrinks about threefold).
pub fn label_of(records: &[StoredRecord], keys: &NodeKeys) -> Result<Vec<u8>, FederationError> {
    let views = records
        .iter()
        .map(|r| record_view(r, keys, Disclosure::Masked))
        .collect::<Result<Vec<_>, _>>()?;
    let json = serde_json::to_vec(&views).map_err(|e| FederationError::Malformed(e.to_string()))?;
    Ok(deflate(&json))
}

/// Deflate a label's JSON.
pub fn deflate(json: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(json);
    encoder.finish().unwrap_or_default()
}

/// A label's records (JSON), inflated with a size limit.
pub fn inflate(label: &[u8]) -> Result<Vec<u8>, FederationError> {
    use std::io::Read;
    let mut json = Vec::new();
    flate2::read::DeflateDecoder::new(label)
        .take(MAX_INFLATED_LABEL + 1)
        .read_to_end(&mut json)
        .map_err(|e| FederationError::Malformed(format!("a label does not inflate: {e}")))?;
    if json.len() as u64 > MAX_INFLATED_LABEL {
        return Err(FederationError::Malformed(
            "a label inflates beyond 64 MiB".into(),
        ));
    }
    Ok(json)
}

/// Per-institution budgets of ids per minute (token buckets).
struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    fn take(&self, who: &str, ids: usize, now: Instant) -> Result<(), String> {
        let capacity = f64::from(self.per_minute);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, at) = buckets.entry(who.to_owned()).or_insert((capacity, now));
        let refill = now.saturating_duration_since(*at).as_secs_f64() * capacity / 60.0;
        *tokens = (*tokens + refill).min(capacity);
        *at = now;
        if ids as f64 > *tokens {
            let wait = ((ids as f64 - *tokens) * 60.0 / capacity).ceil();
            return Err(format!(
                "rate limit: {} ids per minute for each institution; retry in {wait} s",
                self.per_minute
            ));
        }
        *tokens -= ids as f64;
        Ok(())
    }
}

/// An institution's registered PIR keys: (institution, key id, keys).
type RegisteredKeys = (String, [u8; xy_psi::pir::KEY_ID_LEN], Arc<PirServerKeys>);

/// The node's private-query service.
pub struct PrivateQueryService {
    index: Arc<RwLock<LabelIndex>>,
    store: CollectionStore,
    keys: NodeKeys,
    limiter: RateLimiter,
    /// The data-log sequence number the labels are current to.
    watermark: tokio::sync::Mutex<i64>,
    /// Registered PIR keys, oldest first.
    pir_keys: Mutex<Vec<RegisteredKeys>>,
}

impl PrivateQueryService {
    /// Build the index from the collection store: every subject with a USCC, one label each.
    pub async fn from_store(
        store: CollectionStore,
        keys: NodeKeys,
        oprf_key: OprfKey,
        ids_per_minute: u32,
    ) -> Result<Self, FederationError> {
        let mut by_subject: BTreeMap<String, Vec<StoredRecord>> = BTreeMap::new();
        let mut after = 0;
        // Read before the scan: a batch committed during it is refreshed later (at worst twice).
        let watermark = store.log_watermark().await?;
        loop {
            let page = store.scan_subject_records(after, 10_000).await?;
            let Some(last) = page.last() else { break };
            after = last.id;
            for record in page {
                if let Some(subject) = record.subject_code.clone() {
                    by_subject.entry(subject).or_default().push(record);
                }
            }
        }
        let mut subjects = Vec::with_capacity(by_subject.len());
        for (subject, records) in by_subject {
            subjects.push((subject.into_bytes(), label_of(&records, &keys)?));
        }
        let count = subjects.len();
        let index = tokio::task::spawn_blocking(move || LabelIndex::build(oprf_key, subjects, 1))
            .await
            .map_err(|e| FederationError::Malformed(e.to_string()))?;
        info!(
            subjects = count,
            buckets = index.bucket_count(),
            "private-query index built"
        );
        Ok(Self::new(index, store, keys, ids_per_minute, watermark))
    }

    /// A service over an index built elsewhere (benchmarks); `watermark` is the data-log
    /// sequence number its labels are current to.
    pub fn new(
        index: LabelIndex,
        store: CollectionStore,
        keys: NodeKeys,
        ids_per_minute: u32,
        watermark: i64,
    ) -> Self {
        Self {
            index: Arc::new(RwLock::new(index)),
            store,
            keys,
            limiter: RateLimiter {
                per_minute: ids_per_minute.max(1),
                buckets: Mutex::new(HashMap::new()),
            },
            watermark: tokio::sync::Mutex::new(watermark),
            pir_keys: Mutex::new(Vec::new()),
        }
    }

    /// Bring the index up to date with the store: the subjects written since the last build or
    /// refresh get new labels (the OPRF is evaluated for them only). Returns how many.
    pub async fn refresh(&self) -> Result<usize, FederationError> {
        let mut watermark = self.watermark.lock().await;
        let latest = self.store.log_watermark().await?;
        let subjects = self
            .store
            .subjects_written_after(*watermark, latest)
            .await?;
        let mut labels = Vec::with_capacity(subjects.len());
        for subject in &subjects {
            let records = self
                .store
                .query(&xy_store::RecordFilter {
                    subject_code: Some(subject.clone()),
                    limit: Some(10_000),
                    ..Default::default()
                })
                .await?;
            let label = (!records.is_empty())
                .then(|| label_of(&records, &self.keys))
                .transpose()?;
            labels.push((subject.clone(), label));
        }
        {
            let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
            for (subject, label) in &labels {
                match label {
                    Some(label) => index.upsert(subject.as_bytes(), label),
                    None => index.remove(subject.as_bytes()),
                }
            }
        }
        *watermark = latest;
        if !labels.is_empty() {
            info!(subjects = labels.len(), "private-query index refreshed");
        }
        Ok(labels.len())
    }

    /// The index's size and epoch.
    pub fn info(&self) -> IndexInfo {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        IndexInfo {
            bucket_count: index.bucket_count(),
            subjects: index.subjects() as u64,
            epoch: index.epoch(),
        }
    }

    fn actor(peer: &PeerIdentity) -> String {
        format!("{}:{}", peer.role, peer.jurisdiction)
    }

    async fn query(&self, peer: &PeerIdentity, body: &[u8]) -> Result<Vec<u8>, String> {
        let request = QueryRequest::decode(body).map_err(|e| e.to_string())?;
        let who = Self::actor(peer);
        self.limiter
            .take(&who, request.items.len(), Instant::now())?;
        let index = Arc::clone(&self.index);
        let answer = {
            let request = request.clone();
            tokio::task::spawn_blocking(move || {
                let index = index.read().unwrap_or_else(|e| e.into_inner());
                index.answer(&request).map(|r| r.encode())
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?
        };
        let mode = match request.mode {
            QueryMode::Bucket => "bucket",
            QueryMode::Filter => "filter",
        };
        self.audit(
            "pq.query",
            &who,
            serde_json::json!({"mode": mode, "ids": request.items.len()}),
        )
        .await?;
        info!(peer = %who, mode, ids = request.items.len(), "private query answered");
        encode(&(), &answer).map_err(|e| e.to_string())
    }

    /// Write an access to the data log.
    async fn audit(&self, kind: &str, who: &str, detail: serde_json::Value) -> Result<(), String> {
        self.store
            .log_access(&crate::scoring::now_text(), kind, who, detail)
            .await
            .map_err(|e| e.to_string())
    }

    /// Keep an institution's PIR keys (bucket mode), replacing its oldest beyond the limits.
    async fn register(&self, peer: &PeerIdentity, body: &[u8]) -> Result<Vec<u8>, String> {
        let who = Self::actor(peer);
        let registration = body.to_vec();
        let keys = tokio::task::spawn_blocking(move || xy_psi::query::server_keys(&registration))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let key_id = keys.key_id();
        {
            let mut held = self.pir_keys.lock().unwrap_or_else(|e| e.into_inner());
            held.retain(|(w, id, _)| !(w == &who && *id == key_id));
            let own = held.iter().filter(|(w, _, _)| w == &who).count();
            if own >= MAX_PIR_KEYS_PER_INSTITUTION
                && let Some(oldest) = held.iter().position(|(w, _, _)| w == &who)
            {
                held.remove(oldest);
            }
            if held.len() >= MAX_PIR_KEYS {
                held.remove(0);
            }
            held.push((who.clone(), key_id, Arc::new(keys)));
        }
        let key_hex: String = key_id.iter().map(|b| format!("{b:02x}")).collect();
        self.audit("pq.keys", &who, serde_json::json!({"key": key_hex}))
            .await?;
        info!(peer = %who, key = %key_hex, "PIR keys registered");
        encode(&(), &key_id).map_err(|e| e.to_string())
    }

    /// Bucket mode's second step: PIR over the bucket's blocks, with the institution's keys.
    async fn fetch(&self, peer: &PeerIdentity, body: &[u8]) -> Result<Vec<u8>, String> {
        let request = FetchRequest::decode(body).map_err(|e| e.to_string())?;
        let who = Self::actor(peer);
        let key_id = request.items[0].query.key_id;
        if request.items.iter().any(|i| i.query.key_id != key_id) {
            return Err("a fetch names one set of PIR keys".into());
        }
        let keys = self
            .pir_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(w, id, _)| *w == who && *id == key_id)
            .map(|(_, _, keys)| Arc::clone(keys))
            .ok_or_else(|| format!("{UNKNOWN_PIR_KEYS}: register them with pq.keys"))?;
        self.limiter
            .take(&format!("{who} fetch"), request.items.len(), Instant::now())?;
        let index = Arc::clone(&self.index);
        let items = request.items.len();
        let answer = tokio::task::spawn_blocking(move || {
            let index = index.read().unwrap_or_else(|e| e.into_inner());
            index.fetch(&request, &keys).map(|r| r.encode())
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        self.audit("pq.fetch", &who, serde_json::json!({"ids": items}))
            .await?;
        encode(&(), &answer).map_err(|e| e.to_string())
    }

    async fn snapshot(
        &self,
        peer: &PeerIdentity,
        header: RequestHeader,
    ) -> Result<Vec<u8>, String> {
        let (snapshot, next_bucket) = {
            let index = self.index.read().unwrap_or_else(|e| e.into_inner());
            index.snapshot_page(header.since, header.from_bucket, SNAPSHOT_PAGE)
        };
        if header.from_bucket == 0 {
            self.audit(
                "pq.snapshot",
                &Self::actor(peer),
                serde_json::json!({"since": header.since, "epoch": snapshot.epoch}),
            )
            .await?;
        }
        encode(&PageHeader { next_bucket }, &snapshot.encode()).map_err(|e| e.to_string())
    }
}

impl Handler for PrivateQueryService {
    async fn request(&self, peer: &PeerIdentity, payload: Vec<u8>) -> Result<Vec<u8>, String> {
        let (header, body) = decode::<RequestHeader>(&payload).map_err(|e| e.to_string())?;
        if peer.role != Role::InstitutionClient {
            return Err(format!(
                "private queries are for financial-institution certificates, not {}",
                peer.role
            ));
        }
        match header.op.as_str() {
            "pq.info" => encode(&self.info(), &[]).map_err(|e| e.to_string()),
            "pq.query" => self.query(peer, body).await,
            "pq.snapshot" => self.snapshot(peer, header).await,
            "pq.keys" => self.register(peer, body).await,
            "pq.fetch" => self.fetch(peer, body).await,
            other => Err(format!("unknown operation {other:?}")),
        }
    }

    async fn bulk(
        &self,
        _peer: &PeerIdentity,
        name: Vec<u8>,
        _body: &mut BulkReceiver<'_>,
    ) -> Result<(), String> {
        Err(format!(
            "unknown transfer {:?}",
            String::from_utf8_lossy(&name)
        ))
    }
}

/// Traffic of one query, as the institution saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueryTraffic {
    /// Request bytes sent (payloads, without QUIC and TLS overhead).
    pub sent: usize,
    /// Response bytes received.
    pub received: usize,
}

/// What a private query runs with: bucket mode's PIR key (registered with the node), or filter
/// mode's synced filter.
#[derive(Debug, Clone, Copy)]
pub enum QueryWith<'a> {
    /// Bucket mode: the node learns the bucket of each id; the records come back.
    Bucket(&'a BucketKey),
    /// Filter mode: the node learns nothing about the ids; membership only.
    Filter(&'a FilterIndex),
}

/// The institution's side.
pub struct PrivateQueryClient;

impl PrivateQueryClient {
    /// The node's index size and epoch.
    pub async fn info(connection: &PeerConnection) -> Result<IndexInfo, FederationError> {
        Ok(Self::info_traffic(connection).await?.0)
    }

    async fn info_traffic(
        connection: &PeerConnection,
    ) -> Result<(IndexInfo, QueryTraffic), FederationError> {
        let payload = operation("pq.info", &[])?;
        let response = connection.request(&payload).await?;
        let traffic = QueryTraffic {
            sent: payload.len(),
            received: response.len(),
        };
        Ok((decode::<IndexInfo>(&response)?.0, traffic))
    }

    /// Download the node's filter (its subjects' tags, 8 bytes each), or only what changed since
    /// `current` (filter mode's offline step). Returns the filter and the bytes received.
    pub async fn sync_filter(
        connection: &PeerConnection,
        current: Option<FilterIndex>,
    ) -> Result<(FilterIndex, usize), FederationError> {
        let since = current.as_ref().map(FilterIndex::epoch);
        let mut from_bucket = 0;
        let mut received = 0;
        let mut whole: Option<Snapshot> = None;
        loop {
            let payload = encode(
                &RequestHeader {
                    op: "pq.snapshot".into(),
                    since,
                    from_bucket,
                },
                &[],
            )?;
            let response = connection.request(&payload).await?;
            received += response.len();
            let (page, body) = decode::<PageHeader>(&response)?;
            let snapshot = Snapshot::decode(body)?;
            match &mut whole {
                None => whole = Some(snapshot),
                Some(w) => {
                    w.added.extend_from_slice(&snapshot.added);
                    w.removed.extend_from_slice(&snapshot.removed);
                }
            }
            match page.next_bucket {
                Some(next) if next > from_bucket => from_bucket = next,
                Some(_) => {
                    return Err(FederationError::Malformed(
                        "the node's snapshot pages do not advance".into(),
                    ));
                }
                None => break,
            }
        }
        let snapshot = whole.expect("at least one page");
        let index = match current {
            Some(mut index) if snapshot.delta => {
                index.apply(&snapshot)?;
                index
            }
            _ => FilterIndex::from_snapshot(&snapshot)?,
        };
        Ok((index, received))
    }

    /// Register the institution's PIR keys with the node (bucket mode's offline step, about
    /// 1.5 MB; the node keeps them until it restarts). Returns the bytes sent.
    pub async fn register(
        connection: &PeerConnection,
        key: &BucketKey,
    ) -> Result<usize, FederationError> {
        let payload = operation("pq.keys", key.registration())?;
        let response = connection.request(&payload).await?;
        let (_, body): ((), _) = decode(&response)?;
        if body != key.key_id() {
            return Err(FederationError::Malformed(
                "the node filed the PIR keys under another id".into(),
            ));
        }
        Ok(payload.len())
    }

    /// Ask for `ids` privately.
    /// - Bucket mode asks the node for its bucket count, then per bucket (concurrently) sends
    ///   the blinded ids and receives the OPRF evaluations with the bucket's directory, then
    ///   fetches each id's block by PIR. The answers carry each found subject's records as
    ///   JSON. Keys the node does not hold (it restarted) are registered again once.
    /// - Filter mode sends one request, needs the institution's synced filter and answers
    ///   membership only.
    pub async fn query(
        connection: &PeerConnection,
        ids: Vec<Vec<u8>>,
        with: QueryWith<'_>,
    ) -> Result<(Vec<QueryAnswer>, QueryTraffic), FederationError> {
        let mode = match with {
            QueryWith::Bucket(_) => QueryMode::Bucket,
            QueryWith::Filter(_) => QueryMode::Filter,
        };
        let (bucket_count, mut traffic) = match mode {
            QueryMode::Bucket => {
                let (info, traffic) = Self::info_traffic(connection).await?;
                (info.bucket_count, traffic)
            }
            QueryMode::Filter => (0, QueryTraffic::default()),
        };
        // Group ids by bucket (bucket mode): one request each, so that every answer holds one
        // bucket. Filter mode: one group.
        let mut groups: BTreeMap<u32, Vec<(usize, Vec<u8>)>> = BTreeMap::new();
        for (at, id) in ids.into_iter().enumerate() {
            let group = match mode {
                QueryMode::Bucket => xy_psi::query::bucket_of(&id, bucket_count),
                QueryMode::Filter => 0,
            };
            groups.entry(group).or_default().push((at, id));
        }
        let registered = tokio::sync::Mutex::new(false);
        let registered = &registered;
        let requests = groups.into_values().map(|group| async move {
            let (positions, ids): (Vec<usize>, Vec<Vec<u8>>) = group.into_iter().unzip();
            let mut traffic = QueryTraffic::default();
            // A bucket that changes between the steps is asked again, a few times at most.
            let mut attempt = 0;
            loop {
                let mut fill = |bytes: &mut [u8; 64]| rand::fill(&mut bytes[..]);
                let (query, request) =
                    PrivateQuery::new(mode, ids.clone(), bucket_count, &mut fill)?;
                let payload = operation("pq.query", &request.encode())?;
                let response = connection.request(&payload).await?;
                traffic.sent += payload.len();
                traffic.received += response.len();
                let (_, body): ((), _) = decode(&response)?;
                let answer = QueryResponse::decode(body)?;
                let key = match with {
                    QueryWith::Filter(filter) => {
                        let answers =
                            tokio::task::block_in_place(|| query.finish(&answer, filter))?;
                        return Ok::<_, FederationError>((positions, answers, traffic));
                    }
                    QueryWith::Bucket(key) => key,
                };
                let mut seeds = |bytes: &mut [u8; 32]| rand::fill(&mut bytes[..]);
                let (fetch, fetches) =
                    tokio::task::block_in_place(|| query.fetch(&answer, key, &mut seeds))?;
                let fetched = Self::fetch_all(
                    connection,
                    key,
                    &fetches,
                    registered,
                    &mut traffic,
                    attempt < 3,
                )
                .await?;
                let Some(responses) = fetched else {
                    attempt += 1;
                    continue;
                };
                let answers = tokio::task::block_in_place(|| fetch.finish(&responses))?;
                return Ok((positions, answers, traffic));
            }
        });
        let mut answers: Vec<Option<QueryAnswer>> = Vec::new();
        for result in futures::future::join_all(requests).await {
            let (positions, group_answers, group_traffic) = result?;
            traffic.sent += group_traffic.sent;
            traffic.received += group_traffic.received;
            for (at, mut answer) in positions.into_iter().zip(group_answers) {
                if let Some(label) = &answer.label {
                    answer.label = Some(inflate(label)?);
                }
                if answers.len() <= at {
                    answers.resize(at + 1, None);
                }
                answers[at] = Some(answer);
            }
        }
        Ok((answers.into_iter().flatten().collect(), traffic))
    }

    /// Send a bucket's fetches in order. A node that does not hold the PIR keys is given them
    /// (once for the whole query: `registered`) and asked again. `None` when the bucket changed
    /// since its directory was sent and `may_retry` (the caller asks the bucket again).
    async fn fetch_all(
        connection: &PeerConnection,
        key: &BucketKey,
        fetches: &[FetchRequest],
        registered: &tokio::sync::Mutex<bool>,
        traffic: &mut QueryTraffic,
        may_retry: bool,
    ) -> Result<Option<Vec<FetchResponse>>, FederationError> {
        let mut responses = Vec::with_capacity(fetches.len());
        for fetch_request in fetches {
            let payload = operation("pq.fetch", &fetch_request.encode())?;
            let mut tries = 0;
            let response = loop {
                traffic.sent += payload.len();
                match connection.request(&payload).await {
                    Err(xy_transport::TransportError::Refused(reason))
                        if reason.contains(UNKNOWN_PIR_KEYS) && tries < 2 =>
                    {
                        // Other buckets refused meanwhile only ask again.
                        tries += 1;
                        let mut done = registered.lock().await;
                        if !*done {
                            traffic.sent += Self::register(connection, key).await?;
                            *done = true;
                        }
                    }
                    Err(xy_transport::TransportError::Refused(reason))
                        if reason.contains(LAYOUT_CHANGED) && may_retry =>
                    {
                        return Ok(None);
                    }
                    other => break other?,
                }
            };
            traffic.received += response.len();
            let (_, body): ((), _) = decode(&response)?;
            responses.push(FetchResponse::decode(body)?);
        }
        Ok(Some(responses))
    }
}

/// Wait between refreshes of the index in a serving node.
pub const REFRESH_EVERY: Duration = Duration::from_secs(60);
