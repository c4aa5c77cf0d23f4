//! Private set intersection over an interactive channel of the peer endpoint.
//!
//! Each side drives its `xy-psi` state machine: messages from the peer are handled as they
//! arrive while the side's own batches are produced and sent, concurrently, so that neither side's
//! flow-control window can stall the other on large sets. Blinding runs on all cores (rayon) from
//! `block_in_place`. Any protocol error is sent to the peer as an abort naming the cause.

use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{info, warn};
use xy_gmtls::pki::PeerIdentity;
use xy_psi::{
    DEFAULT_BATCH, Initiator, Message, Mode, Party, PsiError, PsiGroup, PsiOutput, Responder,
    Ristretto255, Sm2Sm3, Suite,
};
use xy_store::CollectionStore;
use xy_transport::{
    BulkReceiver, Channel, ChannelReceiver, ChannelSender, Handler, PeerConnection,
};

use crate::FederationError;

/// The channel name of a PSI run.
pub const PSI_CHANNEL: &[u8] = b"psi/v1";

/// Sends queued messages until the queue closes, then ends the sending side.
fn spawn_writer(
    mut sender: ChannelSender,
) -> (
    mpsc::Sender<Vec<u8>>,
    tokio::task::JoinHandle<Result<(), FederationError>>,
) {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(4);
    let task = tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            sender.send(&message).await?;
        }
        sender.finish()?;
        Ok(())
    });
    (tx, task)
}

async fn queue(tx: &mpsc::Sender<Vec<u8>>, message: Message) -> Result<(), FederationError> {
    tx.send(message.encode()).await.map_err(|_| {
        FederationError::Psi(PsiError::Incomplete(
            "the channel closed while sending".into(),
        ))
    })
}

/// Run `side` until it is complete: handle what arrives, send what it produces.
async fn drive(
    side: &mut impl Party,
    receiver: &mut ChannelReceiver,
    tx: &mpsc::Sender<Vec<u8>>,
) -> Result<(), FederationError> {
    while !side.is_complete() {
        tokio::select! {
            biased;
            incoming = receiver.recv() => {
                let Some(bytes) = incoming? else {
                    return Err(PsiError::Incomplete("the peer stopped before the run was complete".into()).into());
                };
                let message = Message::decode(&bytes)?;
                let replies = tokio::task::block_in_place(|| side.handle(message))?;
                for reply in replies {
                    queue(tx, reply).await?;
                }
            }
            permit = tx.reserve(), if side.wants_to_send() => {
                let permit = permit.map_err(|_| PsiError::Incomplete("the channel closed while sending".into()))?;
                if let Some(message) = tokio::task::block_in_place(|| side.next_message()) {
                    permit.send(message.encode());
                }
            }
        }
    }
    Ok(())
}

/// Tell the peer why the run stops, best effort.
async fn abort(tx: &mpsc::Sender<Vec<u8>>, error: &FederationError) {
    let _ = tx
        .send(
            Message::Abort {
                reason: error.to_string(),
            }
            .encode(),
        )
        .await;
}

/// Run `side` over `channel`, from its opening message to the end of the run. On an error the
/// peer is told why; either way, returns once everything queued has been written.
async fn run_over(
    side: &mut impl Party,
    opening: Message,
    channel: Channel,
) -> Result<(), FederationError> {
    let Channel {
        sender,
        mut receiver,
    } = channel;
    let (tx, writer) = spawn_writer(sender);
    queue(&tx, opening).await?;
    let result = drive(side, &mut receiver, &tx).await;
    if let Err(e) = &result {
        abort(&tx, e).await;
    }
    drop(tx);
    let written = writer
        .await
        .map_err(|e| PsiError::Incomplete(e.to_string()))?;
    result?;
    written
}

async fn initiate<G: PsiGroup>(
    connection: &PeerConnection,
    suite: Suite,
    mode: Mode,
    set: Vec<Vec<u8>>,
    randomness: &[u8; 64],
) -> Result<PsiOutput, FederationError> {
    let channel = connection.open_channel(PSI_CHANNEL).await?;
    let mut initiator = Initiator::<G>::new(mode, set, randomness, DEFAULT_BATCH);
    let hello = initiator.hello(suite);
    run_over(&mut initiator, hello, channel).await?;
    Ok(initiator.finish()?)
}

/// Run PSI as the initiator against the node at the other end of `connection`.
pub async fn run_initiator(
    connection: &PeerConnection,
    suite: Suite,
    mode: Mode,
    set: Vec<Vec<u8>>,
    randomness: &[u8; 64],
) -> Result<PsiOutput, FederationError> {
    match suite {
        Suite::Ristretto255 => {
            initiate::<Ristretto255>(connection, suite, mode, set, randomness).await
        }
        Suite::Sm2 => initiate::<Sm2Sm3>(connection, suite, mode, set, randomness).await,
    }
}

/// What the responder learnt from one run.
pub type RunReport = Box<dyn Fn(&PeerIdentity, Suite, Mode, Option<&PsiOutput>) + Send + Sync>;

/// A node's PSI responder: answers PSI runs from other nodes over its set.
pub struct PsiService {
    set: Arc<Vec<Vec<u8>>>,
    on_result: RunReport,
    audit: Option<CollectionStore>,
}

/// Write one PSI run to a node's data log: who, the suite and mode, the set sizes, the outcome
/// and what this side learnt (a count) — never an element.
pub async fn audit_run(
    store: &CollectionStore,
    kind: &str,
    peer: &PeerIdentity,
    facts: RunFacts,
) -> Result<(), FederationError> {
    store
        .log_access(
            &crate::scoring::now_text(),
            kind,
            &format!("{}:{}", peer.role, peer.jurisdiction),
            serde_json::json!({
                "suite": format!("{:?}", facts.suite),
                "mode": format!("{:?}", facts.mode),
                "own_elements": facts.own_elements,
                "peer_elements": facts.peer_elements,
                "learnt": facts.learnt,
                "outcome": facts.outcome,
            }),
        )
        .await?;
    Ok(())
}

/// What the data log records of a PSI run.
#[derive(Debug, Clone)]
pub struct RunFacts {
    /// Suite.
    pub suite: Suite,
    /// Mode.
    pub mode: Mode,
    /// This side's set size.
    pub own_elements: u64,
    /// The peer's announced set size.
    pub peer_elements: Option<u64>,
    /// The intersection size this side learnt, if any.
    pub learnt: Option<u64>,
    /// `complete`, or the error that ended the run.
    pub outcome: String,
}

impl PsiService {
    /// A responder over `set`; `on_result` hears of every completed run (with the intersection
    /// when the mode gives it to both sides).
    pub fn new(set: Vec<Vec<u8>>, on_result: RunReport) -> Self {
        Self {
            set: Arc::new(set),
            on_result,
            audit: None,
        }
    }

    /// Write every run (complete or failed) to this store's data log.
    pub fn with_audit(mut self, store: CollectionStore) -> Self {
        self.audit = Some(store);
        self
    }

    async fn respond<G: PsiGroup>(
        &self,
        peer: &PeerIdentity,
        suite: Suite,
        mode: Mode,
        count: u64,
        channel: Channel,
    ) -> Result<Option<u64>, FederationError> {
        let mut randomness = [0u8; 96];
        rand::fill(&mut randomness[..]);
        let (mut responder, ack) = Responder::<G>::new(
            mode,
            count,
            self.set.as_ref().clone(),
            &randomness,
            DEFAULT_BATCH,
        );
        run_over(&mut responder, ack, channel).await?;
        let output = responder.finish()?;
        info!(peer = %peer.jurisdiction, ?suite, ?mode, learnt = output.as_ref().map(|o| o.count), "PSI run complete");
        (self.on_result)(peer, suite, mode, output.as_ref());
        Ok(output.map(|o| o.count))
    }
}

impl Handler for PsiService {
    async fn request(&self, _peer: &PeerIdentity, _payload: Vec<u8>) -> Result<Vec<u8>, String> {
        Err("this endpoint answers PSI channels only".into())
    }

    async fn bulk(
        &self,
        _peer: &PeerIdentity,
        _name: Vec<u8>,
        _body: &mut BulkReceiver<'_>,
    ) -> Result<(), String> {
        Err("this endpoint answers PSI channels only".into())
    }

    async fn channel(
        &self,
        peer: &PeerIdentity,
        name: Vec<u8>,
        mut channel: Channel,
    ) -> Result<(), String> {
        if name != PSI_CHANNEL {
            return Err(format!(
                "no channel {:?} on this node",
                String::from_utf8_lossy(&name)
            ));
        }
        if !peer.role.is_node() {
            let reason =
                "private set intersection runs between nodes; this certificate is not a node's";
            let _ = channel
                .sender
                .send(
                    &Message::Abort {
                        reason: reason.into(),
                    }
                    .encode(),
                )
                .await;
            let _ = channel.sender.finish();
            if let Some(store) = &self.audit {
                let _ = store
                    .log_access(
                        &crate::scoring::now_text(),
                        "psi.refused",
                        &format!("{}:{}", peer.role, peer.jurisdiction),
                        serde_json::json!({ "reason": reason }),
                    )
                    .await;
            }
            return Err(reason.into());
        }
        let hello = match channel.receiver.recv().await {
            Ok(Some(bytes)) => Message::decode(&bytes).map_err(|e| e.to_string())?,
            Ok(None) => return Err("the peer closed the channel before its hello".into()),
            Err(e) => return Err(e.to_string()),
        };
        let Message::Hello { suite, mode, count } = hello else {
            return Err("a PSI run opens with a hello".into());
        };
        let result = match suite {
            Suite::Ristretto255 => {
                self.respond::<Ristretto255>(peer, suite, mode, count, channel)
                    .await
            }
            Suite::Sm2 => {
                self.respond::<Sm2Sm3>(peer, suite, mode, count, channel)
                    .await
            }
        };
        if let Some(store) = &self.audit {
            let facts = RunFacts {
                suite,
                mode,
                own_elements: self.set.len() as u64,
                peer_elements: Some(count),
                learnt: result.as_ref().ok().copied().flatten(),
                outcome: match &result {
                    Ok(_) => "complete".into(),
                    Err(e) => e.to_string(),
                },
            };
            if let Err(e) = audit_run(store, "psi.respond", peer, facts).await {
                warn!(error = %e, "PSI run not written to the data log");
                return Err(format!("the data log refused the run: {e}"));
            }
        }
        result.map(|_| ()).map_err(|e| {
            warn!(peer = %peer.jurisdiction, error = %e, "PSI run failed");
            e.to_string()
        })
    }
}
