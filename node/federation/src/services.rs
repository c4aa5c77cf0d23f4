//! One handler for a node's peer endpoint, routing each request to the service its operation
//! names: `fhe.*` to encrypted scoring, `pq.*` to private credit queries, `flow.*` to the
//! federated flows.

use serde::Deserialize;
use xy_gmtls::pki::PeerIdentity;
use xy_transport::{BulkReceiver, Channel, Handler};

use crate::message::decode;
use crate::{FlowService, PrivateQueryService, ScoringService};

#[derive(Deserialize)]
struct Operation {
    op: String,
}

/// The services a node offers on its peer endpoint; a missing one refuses its operations.
#[derive(Default)]
pub struct NodeServices {
    /// Encrypted scoring (`fhe.*`).
    pub scoring: Option<ScoringService>,
    /// Private credit queries (`pq.*`).
    pub private_query: Option<PrivateQueryService>,
    /// The federated flows (`flow.*`).
    pub flows: Option<FlowService>,
}

impl Handler for NodeServices {
    async fn request(&self, peer: &PeerIdentity, payload: Vec<u8>) -> Result<Vec<u8>, String> {
        let (operation, _) = decode::<Operation>(&payload).map_err(|e| e.to_string())?;
        let op = operation.op;
        match op.split('.').next() {
            Some("fhe") if let Some(scoring) = &self.scoring => {
                scoring.request(peer, payload).await
            }
            Some("pq") if let Some(private_query) = &self.private_query => {
                private_query.request(peer, payload).await
            }
            Some("flow") if let Some(flows) = &self.flows => flows.request(peer, payload).await,
            _ => Err(format!("this node does not offer {op:?}")),
        }
    }

    async fn bulk(
        &self,
        peer: &PeerIdentity,
        name: Vec<u8>,
        body: &mut BulkReceiver<'_>,
    ) -> Result<(), String> {
        match (&self.scoring, &self.flows) {
            (Some(scoring), _) if name.starts_with(b"fhe.") => scoring.bulk(peer, name, body).await,
            (_, Some(flows)) if name == crate::flows::FLOW_BATCH => flows.bulk(peer, body).await,
            _ => Err(format!(
                "this node takes no transfer {:?}",
                String::from_utf8_lossy(&name)
            )),
        }
    }

    async fn channel(
        &self,
        peer: &PeerIdentity,
        name: Vec<u8>,
        channel: Channel,
    ) -> Result<(), String> {
        match &self.flows {
            Some(flows) if name == crate::flows::FLOW_PUSH => flows.channel(peer, channel).await,
            _ => Err(format!(
                "no channel {:?} on this node",
                String::from_utf8_lossy(&name)
            )),
        }
    }
}
