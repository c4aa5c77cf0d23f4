//! The federated flows (systems D2, D5, D6, D7, M4) over the peer endpoint:
//!
//! - **share up**: a prefecture pushes its collection store's feed to the province's raw store;
//! - **governance**: the province turns raw records into base and theme records, and work orders;
//! - **return flow**: the province pushes each prefecture's return-flow theme to its return-flow
//!   store, and the work orders for its source units to its collection store;
//! - **scenarios**: a prefecture extracts its scenario stores from its return-flow store.
//!
//! A push is: ask the receiver for its cursor (`flow.cursor`; the receiver keeps it, in the same
//! transaction as the batches it applied), then send signed batches from there (`flow.batch`, a
//! bulk transfer acknowledged only once the batch is applied). The sender builds the next batch
//! while the current one is in flight. A lost connection or a crash on either side resumes from
//! the receiver's cursor; a batch sent twice has the same id and is applied once.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Notify;
use xy_exchange::{Cursor, Flow, FlowRecord, SignedBatch, Signer, WorkOrder};
use xy_gmtls::pki::{PeerIdentity, Role};
use xy_policy::PolicySet;
use xy_shangmi::sm2::Sm2SecretKey;
use xy_store::flows::extend_lineage;
use xy_store::{Applied, HeldRecord, Mapped, NodeKeys, NodeStores, Theme};
use xy_transport::{
    BulkReceiver, Channel, ChannelReceiver, ChannelSender, PeerConnection, TransportError,
};

use crate::FederationError;
use crate::governance::{GovernancePolicy, ScenarioDefinition};
use crate::message::{decode, encode};

/// The bulk transfer carrying one batch.
pub const FLOW_BATCH: &[u8] = b"flow.batch";
/// The channel of a push session.
pub const FLOW_PUSH: &[u8] = b"flow.push";
/// Batches a sender keeps in flight on a push session.
pub const PUSH_WINDOW: usize = 2;
/// Records per batch by default.
pub const DEFAULT_BATCH_ROWS: usize = 20_000;
/// Largest batch a receiver reads.
const MAX_BATCH_BYTES: u64 = xy_exchange::MAX_BODY as u64 + (1 << 20);
/// Chunk size of a batch on the wire.
const SEND_CHUNK: usize = 1 << 20;

/// The clock of the flows: a timestamp for stores and logs, and Unix seconds.
pub type Clock = Arc<dyn Fn() -> (String, u64) + Send + Sync>;

/// The real clock (China Standard Time stamps).
pub fn system_clock() -> Clock {
    Arc::new(|| {
        let at = xy_ingest::now_china().1;
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        (at, unix)
    })
}

/// Everything a node needs to take part in the flows.
pub struct FlowNode {
    /// This node's jurisdiction (from its certificate).
    pub jurisdiction: String,
    /// Its role (province or prefecture node).
    pub role: Role,
    /// Its stores.
    pub stores: NodeStores,
    /// Its keys (personal data are sealed again by every store).
    pub keys: NodeKeys,
    /// Category policies (a returned record of an unknown category cannot be mapped).
    pub policies: Arc<PolicySet>,
    /// The province's governance rules.
    pub governance: GovernancePolicy,
    /// The scenarios this node extracts.
    pub scenarios: Vec<ScenarioDefinition>,
    /// On the province: the theme stores (one `return_<jurisdiction>` per prefecture).
    themes: std::sync::RwLock<Vec<Theme>>,
    /// Records per batch.
    pub batch_rows: usize,
    /// The clock.
    pub clock: Clock,
    signing_key: Sm2SecretKey,
    certificate: Vec<u8>,
    anchors: Vec<Vec<u8>>,
    /// Woken when a share batch was applied (governance has work).
    pub governance_due: Notify,
    /// Woken when a return batch was applied (scenarios have work).
    pub scenarios_due: Notify,
    /// When each scenario was last extracted (Unix seconds).
    last_extracted: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

/// The signing identity of a node: its certificate's key, the certificate, the trust anchors.
pub struct FlowCredentials {
    /// The SM2 key of the node certificate.
    pub signing_key: Sm2SecretKey,
    /// The node certificate (DER).
    pub certificate: Vec<u8>,
    /// Trust anchors (DER).
    pub anchors: Vec<Vec<u8>>,
}

impl FlowCredentials {
    /// From the transport's credentials.
    pub fn from_transport(c: &xy_transport::Credentials) -> Result<Self, FederationError> {
        Ok(Self {
            signing_key: c.signing_key()?,
            certificate: c.certificate_der().to_vec(),
            anchors: c.anchors_der(),
        })
    }
}

/// The federation-wide id of record `id` of `jurisdiction`'s collection store. The id is
/// zero-padded so that ids sort as numbers: stores index gids, and in-order inserts keep their
/// index pages few (unpadded, `…:10000` sorts between `…:1000` and `…:1001` and every batch
/// touched pages all over the index).
pub fn gid(jurisdiction: &str, id: i64) -> String {
    format!("{jurisdiction}:{id:010}")
}

/// The return-flow theme of a prefecture.
pub fn return_theme(jurisdiction: &str) -> String {
    format!("return_{jurisdiction}")
}

/// What a push sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PushReport {
    /// Batches acknowledged.
    pub batches: u64,
    /// Records in them.
    pub records: u64,
    /// Where the receiver's cursor stands now.
    pub through: Cursor,
}

#[derive(Serialize, Deserialize)]
struct CursorRequest {
    op: String,
    flow: Flow,
}

#[derive(Serialize, Deserialize)]
struct CursorResponse {
    after: Cursor,
    open_exceptions: u64,
}

/// One batch ready to send.
struct Outgoing {
    batch: SignedBatch,
    records: u64,
}

impl FlowNode {
    /// A node's flow context.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        identity: &PeerIdentity,
        stores: NodeStores,
        keys: NodeKeys,
        policies: Arc<PolicySet>,
        governance: GovernancePolicy,
        scenarios: Vec<ScenarioDefinition>,
        themes: Vec<Theme>,
        credentials: FlowCredentials,
        clock: Clock,
    ) -> Self {
        Self {
            jurisdiction: identity.jurisdiction.clone(),
            role: identity.role,
            stores,
            keys,
            policies,
            governance,
            scenarios,
            themes: std::sync::RwLock::new(themes),
            batch_rows: DEFAULT_BATCH_ROWS,
            clock,
            signing_key: credentials.signing_key,
            certificate: credentials.certificate,
            anchors: credentials.anchors,
            governance_due: Notify::new(),
            scenarios_due: Notify::new(),
            last_extracted: Default::default(),
        }
    }

    /// The theme stores governance fills (province).
    pub fn themes(&self) -> Vec<Theme> {
        self.themes.read().map(|t| t.clone()).unwrap_or_default()
    }

    /// Replace the theme stores — from the catalogue's granted subscriptions — and fill what
    /// they gained from the base store (province). Returns the rows added per theme.
    pub async fn set_themes(
        &self,
        themes: Vec<Theme>,
    ) -> Result<Vec<(String, u64)>, FederationError> {
        let (at, _) = (self.clock)();
        let added = self
            .stores
            .province()
            .await?
            .sync_themes(&themes, &at)
            .await?;
        if let Ok(mut current) = self.themes.write() {
            *current = themes;
        }
        Ok(added)
    }

    fn is_province(&self) -> bool {
        self.role == Role::ProvinceNode
    }

    /// Whether `peer` may send this node `flow`: shares go from prefecture nodes to the
    /// province; returns and work orders from the province to prefecture nodes.
    fn authorise(&self, peer: &PeerIdentity, flow: Flow) -> Result<(), FederationError> {
        let allowed = match flow {
            Flow::Share => self.is_province() && peer.role == Role::PrefectureNode,
            Flow::Return | Flow::Orders => {
                self.role == Role::PrefectureNode && peer.role == Role::ProvinceNode
            }
        };
        if allowed {
            Ok(())
        } else {
            Err(FederationError::Unauthorized(format!(
                "a {} may not send the {} flow to a {}",
                peer.role,
                flow.as_str(),
                self.role
            )))
        }
    }

    fn writer_for(&self, flow: Flow) -> Result<xy_store::FlowWriter, FederationError> {
        Ok(match flow {
            Flow::Return => self.stores.return_flow.writer().clone(),
            Flow::Orders => self.stores.collection.flow_writer().clone(),
            Flow::Share => {
                return Err(FederationError::Malformed(
                    "the share flow is kept by the province store".into(),
                ));
            }
        })
    }

    async fn cursor(&self, flow: Flow, sender: &str) -> Result<Cursor, FederationError> {
        Ok(match flow {
            Flow::Share => {
                self.stores
                    .province()
                    .await?
                    .writer()
                    .cursor(flow.as_str(), sender)
                    .await?
            }
            _ => self.writer_for(flow)?.cursor(flow.as_str(), sender).await?,
        })
    }

    // ---- receiving -------------------------------------------------------------------------

    /// Answer `flow.cursor`.
    pub async fn request(
        &self,
        peer: &PeerIdentity,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, FederationError> {
        let (request, _) = decode::<CursorRequest>(&payload)?;
        if request.op != "flow.cursor" {
            return Err(FederationError::Malformed(format!(
                "unknown operation {:?}",
                request.op
            )));
        }
        self.authorise(peer, request.flow)?;
        let after = self.cursor(request.flow, &peer.jurisdiction).await?;
        let open_exceptions = if request.flow == Flow::Return {
            self.stores.return_flow.exceptions(true).await?.len() as u64
        } else {
            0
        };
        encode(
            &CursorResponse {
                after,
                open_exceptions,
            },
            &[],
        )
    }

    /// Take in one batch (`flow.batch`): check, verify, map and apply it, then acknowledge.
    pub async fn receive(
        &self,
        peer: &PeerIdentity,
        body: &mut BulkReceiver<'_>,
    ) -> Result<Applied, FederationError> {
        let mut bytes = Vec::new();
        while let Some(chunk) = body.next_chunk().await? {
            if bytes.len() as u64 + chunk.len() as u64 > MAX_BATCH_BYTES {
                return Err(FederationError::Malformed(format!(
                    "batch larger than {MAX_BATCH_BYTES} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        self.apply(peer, &bytes).await
    }

    /// Apply an encoded batch from `peer` (over the tunnel, or from a file of the file mode).
    pub async fn apply(
        &self,
        peer: &PeerIdentity,
        bytes: &[u8],
    ) -> Result<Applied, FederationError> {
        let prepared = self.prepare(peer, bytes).await?;
        let expected = self
            .cursor(prepared.batch.header.flow, &peer.jurisdiction)
            .await?;
        self.commit(peer, prepared, expected).await
    }

    /// Decode, authorise, verify and map a batch (the work that needs no store write). A batch
    /// that fails verification is recorded as an exception of the return flow.
    async fn prepare(
        &self,
        peer: &PeerIdentity,
        bytes: &[u8],
    ) -> Result<Prepared, FederationError> {
        let batch = SignedBatch::decode(bytes)?;
        let flow = batch.header.flow;
        self.authorise(peer, flow)?;
        if batch.header.sender != peer.jurisdiction || batch.header.receiver != self.jurisdiction {
            return Err(FederationError::Unauthorized(format!(
                "batch from {} to {} arrived from {} at {}",
                batch.header.sender, batch.header.receiver, peer.jurisdiction, self.jurisdiction
            )));
        }
        let batch_id = batch.batch_id();
        let (at, _) = (self.clock)();
        let anchors: Vec<&[u8]> = self.anchors.iter().map(Vec::as_slice).collect();
        let records = match batch.verify(&anchors) {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!(flow = flow.as_str(), sender = %peer.jurisdiction, batch = %batch_id, error = %e, "batch refused");
                if flow == Flow::Return {
                    self.stores
                        .return_flow
                        .record_exception(&batch_id, &peer.jurisdiction, &e.to_string(), bytes, &at)
                        .await?;
                }
                return Err(e.into());
            }
        };
        let records = match flow {
            Flow::Return => Records::Mapped(
                records
                    .into_iter()
                    .map(|r| self.map_returned(r, &batch_id, &peer.jurisdiction, &at))
                    .collect(),
            ),
            _ => Records::Plain(records),
        };
        Ok(Prepared {
            batch,
            batch_id,
            records,
        })
    }

    /// Apply a prepared batch if it continues at `expected` (the receiver's cursor); a batch
    /// applied before is acknowledged again without a change.
    async fn commit(
        &self,
        peer: &PeerIdentity,
        prepared: Prepared,
        expected: Cursor,
    ) -> Result<Applied, FederationError> {
        let Prepared {
            batch,
            batch_id,
            records,
        } = prepared;
        let flow = batch.header.flow;
        if batch.header.after != expected {
            let applied = match flow {
                Flow::Share => {
                    self.stores
                        .province()
                        .await?
                        .writer()
                        .batch_applied(&batch_id)
                        .await?
                }
                _ => self.writer_for(flow)?.batch_applied(&batch_id).await?,
            };
            if applied {
                return Ok(Applied::before());
            }
            return Err(FederationError::OutOfOrder {
                expected,
                got: batch.header.after,
            });
        }
        let (at, _) = (self.clock)();
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng();
        let applied = match (flow, records) {
            (Flow::Share, Records::Plain(records)) => {
                let province = self.stores.province().await?;
                let applied = province
                    .apply_share_batch(&batch, records, &self.keys, &at, &mut rng)
                    .await?;
                self.governance_due.notify_one();
                applied
            }
            (Flow::Return, Records::Mapped(mapped)) => {
                let applied = self
                    .stores
                    .return_flow
                    .apply_batch(&batch, mapped, &self.keys, &at, &mut rng)
                    .await?;
                self.scenarios_due.notify_one();
                applied
            }
            (Flow::Orders, Records::Plain(records)) => {
                self.stores
                    .collection
                    .apply_orders(&batch, &records, &at)
                    .await?
            }
            _ => {
                return Err(FederationError::Malformed(
                    "records prepared for another flow".into(),
                ));
            }
        };
        tracing::info!(
            flow = flow.as_str(),
            sender = %peer.jurisdiction,
            batch = %batch_id,
            applied = applied.applied,
            skipped = applied.skipped,
            exceptions = applied.exceptions,
            "batch applied"
        );
        Ok(applied)
    }

    /// Serve a push session (`flow.push`): answer the cursor, then read, verify and map each
    /// batch while the previous one is written, acknowledging every batch once it is applied.
    pub async fn serve_push(
        self: Arc<Self>,
        peer: PeerIdentity,
        channel: Channel,
    ) -> Result<(), FederationError> {
        let Channel {
            sender: mut out,
            receiver: mut incoming,
        } = channel;
        let hello = incoming.recv().await?.ok_or_else(|| {
            FederationError::Malformed("push session ended before its hello".into())
        })?;
        let (hello, _) = decode::<CursorRequest>(&hello)?;
        let answer = self.request(&peer, encode(&hello, &[])?).await;
        let start = match &answer {
            Ok(bytes) => decode::<CursorResponse>(bytes)?.0.after,
            Err(e) => {
                let _ = out.send(&encode(&PushAck::error(e), &[])?).await;
                let _ = out.finish();
                return Err(FederationError::Unauthorized(e.to_string()));
            }
        };
        out.send(&answer?).await?;
        let (prepared_tx, mut prepared_rx) =
            tokio::sync::mpsc::channel::<Result<Prepared, FederationError>>(1);
        let node = Arc::clone(&self);
        let who = peer.clone();
        let applier = tokio::spawn(async move {
            let mut expected = start;
            while let Some(prepared) = prepared_rx.recv().await {
                let through = prepared.as_ref().ok().map(|p| p.batch.header.through);
                let result = match prepared {
                    Ok(p) => node.commit(&who, p, expected).await,
                    Err(e) => Err(e),
                };
                match result {
                    Ok(applied) => {
                        if let Some(through) = through {
                            expected = through;
                        }
                        out.send(&encode(&PushAck::applied(expected, applied), &[])?)
                            .await?;
                    }
                    Err(e) => {
                        let _ = out.send(&encode(&PushAck::error(&e), &[])?).await;
                        let _ = out.finish();
                        return Err(e);
                    }
                }
            }
            out.finish()?;
            Ok::<(), FederationError>(())
        });
        loop {
            let bytes = match read_batch(&mut incoming).await {
                Ok(Some(bytes)) => bytes,
                Ok(None) => break,
                Err(e) => {
                    let _ = prepared_tx.send(Err(e)).await;
                    break;
                }
            };
            let prepared = self.prepare(&peer, &bytes).await;
            let failed = prepared.is_err();
            if prepared_tx.send(prepared).await.is_err() || failed {
                break;
            }
        }
        drop(prepared_tx);
        applier
            .await
            .map_err(|e| FederationError::Malformed(format!("push session task: {e}")))?
    }

    /// Map a returned record for this node: its category must be one this node knows, its
    /// fields JSON objects. The return stage joins its lineage.
    fn map_returned(
        &self,
        mut record: FlowRecord,
        batch_id: &str,
        sender: &str,
        at: &str,
    ) -> Mapped {
        if let Err(e) = self.policies.category(&record.category) {
            return Mapped::refused(record, format!("映射失败：{e}"));
        }
        let is_object = |s: &str| {
            s.trim_start().starts_with('{')
                && serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok()
        };
        if !is_object(&record.payload) {
            return Mapped::refused(record, "映射失败：字段内容不是JSON对象".into());
        }
        if record.personal.as_deref().is_some_and(|p| !is_object(p)) {
            return Mapped::refused(record, "映射失败：个人信息字段不是JSON对象".into());
        }
        record.lineage = extend_lineage(
            &record.lineage,
            "return",
            json!({"batch": batch_id, "from": sender, "at": at}),
        );
        Mapped::ok(record)
    }

    // ---- sending ---------------------------------------------------------------------------

    /// Records of `flow` for `receiver` after `after`, with the cursor of the last one.
    async fn feed(
        &self,
        flow: Flow,
        receiver: &str,
        after: Cursor,
    ) -> Result<(Vec<FlowRecord>, Cursor), FederationError> {
        let limit = self.batch_rows as i64;
        let mut through = after;
        let records = match flow {
            Flow::Share => {
                let feed = self.stores.collection.share_feed(after, limit).await?;
                let mut records = Vec::with_capacity(feed.len());
                for item in feed {
                    through = item.cursor;
                    records.push(self.shared_record(item)?);
                }
                records
            }
            Flow::Return => {
                let province = self.stores.province().await?;
                let held = province
                    .theme_after(&return_theme(receiver), after.major, limit)
                    .await?;
                let mut records = Vec::with_capacity(held.len());
                for record in held {
                    through = Cursor {
                        major: record.seq,
                        minor: 0,
                    };
                    records.push(record.into_flow(&self.keys)?);
                }
                records
            }
            Flow::Orders => {
                let province = self.stores.province().await?;
                let orders = province.orders_after(receiver, after.major, limit).await?;
                orders
                    .into_iter()
                    .map(|held| {
                        through = Cursor {
                            major: held.seq,
                            minor: 0,
                        };
                        order_record(&held.order, held.seq)
                    })
                    .collect()
            }
        };
        Ok((records, through))
    }

    /// A collection-store record in its travelling form: personal fields opened, the subject's
    /// identity number named, lineage started.
    fn shared_record(&self, record: xy_store::FeedRecord) -> Result<FlowRecord, FederationError> {
        let personal = match &record.personal {
            Some(sealed) => {
                let plain = self.keys.open(record.key_hash.as_bytes(), sealed)?;
                Some(String::from_utf8(plain).map_err(|_| {
                    FederationError::Malformed(format!("personal fields of record {}", record.id))
                })?)
            }
            _ => None,
        };
        let subject_id = match (&personal, self.policies.category(&record.category)) {
            (Some(p), Ok(category)) => {
                let fields: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(p).unwrap_or_default();
                category
                    .subject_id_fields()
                    .find_map(|f| fields.get(f).and_then(|v| v.as_str()).map(str::to_owned))
            }
            _ => None,
        };
        let lineage = json!({
            "origin": {
                "node": self.jurisdiction,
                "source_unit": record.source_unit,
                "ingest_batch": record.batch_id,
                "ingested_at": record.ingested_at,
            }
        });
        Ok(FlowRecord {
            gid: gid(&self.jurisdiction, record.id),
            version: record.version,
            category: record.category,
            status: record.status,
            source_unit: record.source_unit,
            subject_code: record.subject_code,
            subject_id,
            document_number: record.document_number,
            decision_date: record.decision_date,
            payload: record.payload,
            personal,
            lineage: lineage.to_string(),
        })
    }

    async fn build(
        &self,
        flow: Flow,
        receiver: &str,
        after: Cursor,
    ) -> Result<Option<Outgoing>, FederationError> {
        let (records, through) = self.feed(flow, receiver, after).await?;
        if records.is_empty() {
            return Ok(None);
        }
        let (_, now) = (self.clock)();
        let signer = Signer {
            jurisdiction: &self.jurisdiction,
            key: &self.signing_key,
            certificate: &self.certificate,
        };
        let batch =
            xy_exchange::sign_batch(&signer, flow, receiver, after, through, &records, now)?;
        Ok(Some(Outgoing {
            batch,
            records: records.len() as u64,
        }))
    }

    /// Build a batch of `flow` for `receiver` after `after` (file mode and tests).
    pub async fn build_batch(
        &self,
        flow: Flow,
        receiver: &str,
        after: Cursor,
    ) -> Result<Option<SignedBatch>, FederationError> {
        Ok(self.build(flow, receiver, after).await?.map(|o| o.batch))
    }

    /// Push everything of `flow` the receiver behind `connection` has not applied yet, over one
    /// push session: up to [`PUSH_WINDOW`] batches in flight, the next built while the current
    /// is sent.
    pub async fn push(
        &self,
        connection: &PeerConnection,
        flow: Flow,
    ) -> Result<PushReport, FederationError> {
        let receiver = connection.peer().jurisdiction.clone();
        let Channel {
            sender: mut out,
            receiver: mut acks,
        } = connection.open_channel(FLOW_PUSH).await?;
        out.send(&encode(
            &CursorRequest {
                op: "flow.cursor".into(),
                flow,
            },
            &[],
        )?)
        .await?;
        let hello = acks
            .recv()
            .await?
            .ok_or_else(|| FederationError::Malformed("the receiver ended the session".into()))?;
        let answer = match decode::<CursorResponse>(&hello) {
            Ok((answer, _)) => answer,
            Err(_) => {
                let (ack, _) = decode::<PushAck>(&hello)?;
                return Err(self
                    .refused(&receiver, flow, ack.error.unwrap_or_default())
                    .await);
            }
        };
        if answer.open_exceptions > 0 && self.is_province() {
            let (at, _) = (self.clock)();
            self.stores
                .province()
                .await?
                .record_sent_exception(
                    &receiver,
                    flow.as_str(),
                    &format!("{} open exceptions reported", answer.open_exceptions),
                    &at,
                )
                .await?;
        }
        let mut report = PushReport {
            through: answer.after,
            ..PushReport::default()
        };
        let mut in_flight: std::collections::VecDeque<u64> = Default::default();
        let mut next = self.build(flow, &receiver, answer.after).await?;
        loop {
            while in_flight.len() >= PUSH_WINDOW || (next.is_none() && !in_flight.is_empty()) {
                let message = acks.recv().await?.ok_or_else(|| {
                    FederationError::Malformed("the receiver ended the session early".into())
                })?;
                let (ack, _) = decode::<PushAck>(&message)?;
                if let Some(reason) = ack.error {
                    return Err(self.refused(&receiver, flow, reason).await);
                }
                report.batches += 1;
                report.records += in_flight.pop_front().unwrap_or(0);
                if let Some(through) = ack.through {
                    report.through = through;
                }
            }
            let Some(outgoing) = next.take() else { break };
            let through = outgoing.batch.header.through;
            let (sent, built) = tokio::join!(
                send_batch(&mut out, &outgoing.batch),
                self.build(flow, &receiver, through)
            );
            sent?;
            in_flight.push_back(outgoing.records);
            next = built?;
        }
        out.finish()?;
        Ok(report)
    }

    /// A refusal by the receiver: recorded on the province as a sent exception.
    async fn refused(&self, receiver: &str, flow: Flow, reason: String) -> FederationError {
        if self.is_province() {
            let (at, _) = (self.clock)();
            if let Ok(province) = self.stores.province().await
                && let Err(e) = province
                    .record_sent_exception(receiver, flow.as_str(), &reason, &at)
                    .await
            {
                tracing::warn!(error = %e, "recording a refused batch failed");
            }
        }
        FederationError::Transport(TransportError::Refused(reason))
    }

    // ---- governance and scenarios -----------------------------------------------------------

    /// Govern every raw record not governed yet (province).
    pub async fn govern_pending(&self) -> Result<xy_store::GovernanceStep, FederationError> {
        let province = self.stores.province().await?;
        let themes = self.themes();
        province.sync_themes(&themes, &(self.clock)().0).await?;
        let mut total = xy_store::GovernanceStep::default();
        let keys = &self.keys;
        let rules = |record: &mut HeldRecord| self.governance.evaluate(record, keys);
        loop {
            let (at, _) = (self.clock)();
            let step = province
                .govern(&self.keys, &rules, &themes, &at, self.batch_rows as i64)
                .await?;
            if step.read == 0 {
                break;
            }
            total.read += step.read;
            total.passed += step.passed;
            total.duplicates += step.duplicates;
            total.failed += step.failed;
            total.closed_orders += step.closed_orders;
        }
        Ok(total)
    }

    /// Extract every scenario from the return-flow store up to its end (prefecture).
    pub async fn extract_scenarios(
        &self,
    ) -> Result<Vec<(String, xy_store::Extracted)>, FederationError> {
        self.extract(false).await
    }

    /// Extract the scenarios whose refresh is due (`refresh_minutes` since their last extract):
    /// what the rounds of `serve` run.
    pub async fn extract_due_scenarios(
        &self,
    ) -> Result<Vec<(String, xy_store::Extracted)>, FederationError> {
        self.extract(true).await
    }

    async fn extract(
        &self,
        only_due: bool,
    ) -> Result<Vec<(String, xy_store::Extracted)>, FederationError> {
        let mut done = Vec::new();
        for scenario in &self.scenarios {
            let (_, now) = (self.clock)();
            if only_due {
                let last = self
                    .last_extracted
                    .lock()
                    .map(|l| l.get(&scenario.name).copied())
                    .unwrap_or(None);
                if last.is_some_and(|t| now < t + scenario.refresh_minutes * 60) {
                    continue;
                }
            }
            if let Ok(mut last) = self.last_extracted.lock() {
                last.insert(scenario.name.clone(), now);
            }
            let store = self.stores.scenario(&scenario.name).await?;
            let (at, _) = (self.clock)();
            let definition = serde_json::to_string(scenario)
                .map_err(|e| FederationError::Malformed(e.to_string()))?;
            store.define(&definition, &at).await?;
            let keys = &self.keys;
            let project = |r: &HeldRecord| scenario.project(r, keys);
            let mut total = xy_store::Extracted::default();
            loop {
                let (at, _) = (self.clock)();
                let step = store
                    .extract(
                        &self.stores.return_flow,
                        &project,
                        &at,
                        self.batch_rows as i64,
                    )
                    .await?;
                if step.read == 0 {
                    break;
                }
                total.read += step.read;
                total.written += step.written;
                total.removed += step.removed;
            }
            done.push((scenario.name.clone(), total));
        }
        Ok(done)
    }

    /// Map the return-flow records that could not be mapped again (after a policy update) and
    /// apply those that now map; returns how many.
    pub async fn retry_exceptions(&self) -> Result<u64, FederationError> {
        let (at, _) = (self.clock)();
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng();
        let map = |record: FlowRecord| {
            let sender = xy_store::origin_of(&record.gid).to_owned();
            self.map_returned(record, "retry", &sender, &at)
        };
        Ok(self
            .stores
            .return_flow
            .retry_exceptions(map, &self.keys, &at, &mut rng)
            .await?)
    }

    /// Where record `gid` is held on this node, each copy with its lineage.
    pub async fn lineage(&self, gid: &str) -> Result<serde_json::Value, FederationError> {
        let scenarios: Vec<&str> = self.scenarios.iter().map(|s| s.name.as_str()).collect();
        Ok(self
            .stores
            .lineage(gid, &self.jurisdiction, self.is_province(), &scenarios)
            .await?)
    }
}

fn order_record(order: &WorkOrder, seq: i64) -> FlowRecord {
    FlowRecord {
        gid: format!("order:{}", order.id),
        version: seq.max(1),
        category: "work_order".into(),
        status: order.status.clone(),
        source_unit: order.source_unit.clone(),
        document_number: order.document_number.clone(),
        payload: serde_json::to_string(order).unwrap_or_default(),
        lineage: "{}".into(),
        ..FlowRecord::default()
    }
}

/// Send one batch on a push session: its length, then its bytes in messages of at most
/// [`SEND_CHUNK`].
async fn send_batch(out: &mut ChannelSender, batch: &SignedBatch) -> Result<(), FederationError> {
    let prefix = batch.encode_prefix();
    let total = (prefix.len() + batch.body.len()) as u64;
    out.send(&total.to_be_bytes()).await?;
    for part in prefix
        .chunks(SEND_CHUNK)
        .chain(batch.body.chunks(SEND_CHUNK))
    {
        out.send(part).await?;
    }
    Ok(())
}

/// Read one batch of a push session; `None` when the sender ended the session.
async fn read_batch(incoming: &mut ChannelReceiver) -> Result<Option<Vec<u8>>, FederationError> {
    let Some(length) = incoming.recv().await? else {
        return Ok(None);
    };
    let length: [u8; 8] = length
        .as_slice()
        .try_into()
        .map_err(|_| FederationError::Malformed("batch length is not 8 bytes".into()))?;
    let length = u64::from_be_bytes(length);
    if length > MAX_BATCH_BYTES {
        return Err(FederationError::Malformed(format!(
            "batch of {length} bytes (at most {MAX_BATCH_BYTES})"
        )));
    }
    let mut bytes = Vec::with_capacity(length as usize);
    while (bytes.len() as u64) < length {
        let part = incoming.recv().await?.ok_or_else(|| {
            FederationError::Malformed("push session ended inside a batch".into())
        })?;
        if bytes.len() as u64 + part.len() as u64 > length {
            return Err(FederationError::Malformed(
                "batch longer than announced".into(),
            ));
        }
        bytes.extend_from_slice(&part);
    }
    Ok(Some(bytes))
}

/// A batch read, verified and mapped, waiting to be written.
struct Prepared {
    batch: SignedBatch,
    batch_id: String,
    records: Records,
}

enum Records {
    Plain(Vec<FlowRecord>),
    Mapped(Vec<Mapped>),
}

/// The receiver's answer to one batch of a push session.
#[derive(Serialize, Deserialize)]
struct PushAck {
    through: Option<Cursor>,
    applied: Option<Applied>,
    error: Option<String>,
}

impl PushAck {
    fn applied(through: Cursor, applied: Applied) -> Self {
        Self {
            through: Some(through),
            applied: Some(applied),
            error: None,
        }
    }
    fn error(e: &impl std::fmt::Display) -> Self {
        Self {
            through: None,
            applied: None,
            error: Some(e.to_string()),
        }
    }
}

/// The receiving side as a handler fragment (routed by `NodeServices`).
pub struct FlowService(pub Arc<FlowNode>);

impl FlowService {
    /// Answer a `flow.*` request.
    pub async fn request(&self, peer: &PeerIdentity, payload: Vec<u8>) -> Result<Vec<u8>, String> {
        self.0
            .request(peer, payload)
            .await
            .map_err(|e| e.to_string())
    }

    /// Serve a `flow.push` session.
    pub async fn channel(&self, peer: &PeerIdentity, channel: Channel) -> Result<(), String> {
        Arc::clone(&self.0)
            .serve_push(peer.clone(), channel)
            .await
            .map_err(|e| e.to_string())
    }

    /// Take in a `flow.batch` transfer.
    pub async fn bulk(
        &self,
        peer: &PeerIdentity,
        body: &mut BulkReceiver<'_>,
    ) -> Result<(), String> {
        self.0
            .receive(peer, body)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
