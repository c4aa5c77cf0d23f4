//! The node's services over the peer endpoint (`xy-transport`): private set intersection between
//! nodes (system X2, [`psi`]) — two nodes learn the subjects on both their lists without
//! exchanging the lists — and encrypted cross-jurisdiction scoring (system X3, [`scoring`]) — the
//! province caches each requester's evaluation key, asks every prefecture node for its encrypted
//! contribution and aggregates homomorphically — and private credit queries for financial
//! institutions (system B3, [`private_query`]). Share-up and return flow will join here.

pub mod coordinator;
pub mod message;
pub mod private_query;
pub mod psi;
pub mod scoring;
pub mod services;

pub use coordinator::{ConfigSource, CoordinatorClient};
pub use private_query::{
    IndexInfo, PrivateQueryClient, PrivateQueryService, QueryTraffic, load_or_create_oprf_key,
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
}
