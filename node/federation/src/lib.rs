//! The node's services over the peer endpoint (`xy-transport`). Today: private set intersection
//! between nodes (system X2, [`psi`]): two nodes learn the subjects on both their lists without
//! exchanging the lists. Share-up, return flow and encrypted scoring will join here.

pub mod psi;

pub use psi::{PSI_CHANNEL, PsiService, run_initiator};

/// Errors of the federation services.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FederationError {
    /// The peer may not do this.
    #[error("unauthorised: {0}")]
    Unauthorized(String),
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] xy_transport::TransportError),
    /// The PSI protocol failed; the text names the cause.
    #[error(transparent)]
    Psi(#[from] xy_psi::PsiError),
}
