//! A local federation in one process: nodes of the development PKI on embedded SQLite stores,
//! each serving the flows on a loopback QUIC endpoint. The README's demo, the integration tests
//! and the return-flow benchmark run on it; production nodes are started by `xinyong-node serve`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use xy_exchange::Flow;
use xy_ingest::Ingestor;
use xy_policy::PolicySet;
use xy_store::{NodeKeys, NodeStores, StoreLocation, Theme};
use xy_transport::devpki::{PkiLayout, server_name};
use xy_transport::{Credentials, EndpointOptions, PeerConnection, PeerEndpoint};

use crate::flows::{Clock, FlowCredentials, FlowNode, FlowService, PushReport, return_theme};
use crate::governance::{GovernancePolicy, ScenarioDefinition};
use crate::{FederationError, NodeServices};

/// One node of a local federation.
pub struct LocalNode {
    /// Its member name (`province`, `chengdu`, `mianyang`).
    pub member: String,
    /// The DNS name in its certificate.
    pub server_name: String,
    /// Its data directory.
    pub dir: PathBuf,
    /// Its flow context (stores, keys, policies).
    pub node: Arc<FlowNode>,
    /// Its ingest pipeline.
    pub ingestor: Ingestor,
    /// Its peer endpoint (serving the flows).
    pub endpoint: PeerEndpoint,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// The categories every prefecture's return theme takes by default: all catalogue categories.
pub fn default_themes(prefectures: &[&str], policies: &PolicySet) -> Vec<Theme> {
    let categories: Vec<String> = policies
        .categories()
        .iter()
        .map(|c| c.code.clone())
        .collect();
    prefectures
        .iter()
        .map(|j| Theme {
            name: return_theme(j),
            categories: categories.clone(),
        })
        .collect()
}

/// A member's credentials of the development PKI, with its CRL.
pub fn member_credentials(
    layout: &PkiLayout,
    member: &str,
) -> Result<Credentials, FederationError> {
    let files = layout.member(member);
    Ok(Credentials::load(
        &files.cert,
        &files.key,
        &layout.ca_cert(),
        Some(&layout.crl()),
    )?)
}

impl LocalNode {
    /// Start `member` with its SQLite stores under `dir`, serving the flows on loopback.
    /// `themes` are the province's theme stores (empty on a prefecture).
    pub async fn start(
        layout: &PkiLayout,
        member: &str,
        dir: &Path,
        themes: Vec<Theme>,
        clock: Clock,
    ) -> Result<Self, FederationError> {
        let location = StoreLocation::Sqlite(dir.join("stores"));
        Self::start_at(layout, member, dir, location, themes, clock).await
    }

    /// As [`LocalNode::start`], with the stores at `location` (PostgreSQL for production).
    pub async fn start_at(
        layout: &PkiLayout,
        member: &str,
        dir: &Path,
        location: StoreLocation,
        themes: Vec<Theme>,
        clock: Clock,
    ) -> Result<Self, FederationError> {
        let credentials = member_credentials(layout, member)?;
        Self::start_with(
            credentials,
            member,
            &server_name(member),
            dir,
            location,
            themes,
            clock,
        )
        .await
    }

    /// Start a node with `credentials` (issued by any CA), named `member`, whose certificate
    /// carries `server_name`.
    pub async fn start_with(
        credentials: Credentials,
        member: &str,
        server_name: &str,
        dir: &Path,
        location: StoreLocation,
        themes: Vec<Theme>,
        clock: Clock,
    ) -> Result<Self, FederationError> {
        let identity = credentials.identity().cloned().ok_or_else(|| {
            FederationError::Unauthorized(format!("{member}'s certificate names no jurisdiction"))
        })?;
        let stores = NodeStores::open(location).await?;
        let keys = NodeKeys::load_or_create(dir)?;
        let policies =
            Arc::new(PolicySet::builtin().map_err(|e| FederationError::Policy(e.to_string()))?);
        let ingestor = Ingestor::new((*policies).clone(), stores.collection.clone(), keys.clone());
        let node = Arc::new(FlowNode::new(
            &identity,
            stores,
            keys,
            policies,
            GovernancePolicy::builtin()?,
            ScenarioDefinition::builtin()?,
            themes,
            FlowCredentials::from_transport(&credentials)?,
            clock,
        ));
        let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
        let endpoint = PeerEndpoint::server(loopback, &credentials, &EndpointOptions::default())?;
        let addr = endpoint.local_addr()?;
        let services = Arc::new(NodeServices {
            flows: Some(FlowService(Arc::clone(&node))),
            ..NodeServices::default()
        });
        let serving = endpoint.clone();
        tokio::spawn(async move { serving.serve(services).await });
        Ok(Self {
            member: member.to_owned(),
            server_name: server_name.to_owned(),
            dir: dir.to_path_buf(),
            node,
            ingestor,
            endpoint,
            addr,
        })
    }

    /// A connection from this node to `peer`.
    pub async fn connect(&self, peer: &LocalNode) -> Result<PeerConnection, FederationError> {
        Ok(self.endpoint.connect(peer.addr, &peer.server_name).await?)
    }

    /// Push `flow` to `peer` over a fresh connection.
    pub async fn push_to(
        &self,
        peer: &LocalNode,
        flow: Flow,
    ) -> Result<PushReport, FederationError> {
        let connection = self.connect(peer).await?;
        let report = self.node.push(&connection, flow).await;
        connection.close(0, "done");
        report
    }

    /// Close the endpoint and the stores.
    pub async fn stop(&self) {
        self.endpoint.close();
        self.node.stores.close().await;
    }
}
