//! The node's services over the peer endpoint (`xy-transport`): private set intersection between
//! nodes (system X2, [`psi`]) — two nodes learn the subjects on both their lists without
//! exchanging the lists — and encrypted cross-jurisdiction scoring (system X3, [`scoring`]) — the
//! province caches each requester's evaluation key, asks every prefecture node for its encrypted
//! contribution and aggregates homomorphically — and private credit queries for financial
//! institutions (system B3, [`private_query`]) — and the federated flows ([`flows`]): share up,
//! province governance ([`governance`]), return flow, work orders and scenario extracts.

pub mod coordinator;
pub mod flows;
pub mod governance;
pub mod local;
pub mod message;
pub mod private_query;
pub mod psi;
pub mod scoring;
pub mod services;

pub use coordinator::{ConfigSource, CoordinatorClient};
pub use flows::{FlowCredentials, FlowNode, FlowService, PushReport, return_theme};
pub use governance::{GovernancePolicy, ScenarioDefinition};
pub use private_query::{
    IndexInfo, PrivateQueryClient, PrivateQueryService, QueryTraffic, QueryWith, UNKNOWN_PIR_KEYS,
    load_or_create_oprf_key,
};
pub use psi::{PSI_CHANNEL, PsiService, RunFacts, audit_run, run_initiator};
pub use scoring::{ScoreReport, ScoringClient, ScoringService, ServiceConfig};
pub use services::NodeServices;

/// Errors of the federation services.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FederationError {
    /// A message was not well formed; the text names the part.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The peer may not do this.
    #[error("unauthorised: {0}")]
    Unauthorized(String),
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] xy_transport::TransportError),
    /// The PSI protocol failed; the text names the cause.
    #[error(transparent)]
    Psi(#[from] xy_psi::PsiError),
    /// The encrypted computation refused an input.
    #[error(transparent)]
    Fhe(#[from] xy_fhe::FheError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] xy_store::StoreError),
    /// A batch of the flows was malformed or did not verify.
    #[error(transparent)]
    Exchange(#[from] xy_exchange::ExchangeError),
    /// A batch does not continue where the receiver stands; the sender asks again.
    #[error("batch out of order: the receiver stands at {expected}, the batch starts after {got}")]
    OutOfOrder {
        /// The receiver's cursor.
        expected: xy_exchange::Cursor,
        /// Where the batch starts.
        got: xy_exchange::Cursor,
    },
    /// A policy file is unusable.
    #[error("policy: {0}")]
    Policy(String),
}
