//! The node's services over the peer endpoint (`xy-transport`). Today: encrypted cross-
//! jurisdiction scoring (system X3, [`scoring`]) — the province node caches each requester's
//! evaluation key, asks every prefecture node for its encrypted contribution and aggregates
//! homomorphically; prefecture nodes compute their indicators from their own collection store.
//! Share-up, return flow and PSI will join here.

pub mod message;
pub mod scoring;

pub use scoring::{ScoreReport, ScoringClient, ScoringService, ServiceConfig};

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
    /// The encrypted computation refused an input.
    #[error(transparent)]
    Fhe(#[from] xy_fhe::FheError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] xy_store::StoreError),
    /// A file could not be read or written.
    #[error("{0}")]
    Io(String),
}
