//! The node's transport: mutually authenticated QUIC between nodes ([`quic`]) and the TLS 1.3
//! over TCP diagnostic used by operators to check a peer ([`diagnostic`]), both over the RFC 8998
//! ShangMi provider of `xy-gmtls` and the credentials of [`credentials`].

pub mod credentials;
pub mod devpki;
pub mod diagnostic;
pub mod quic;

pub use credentials::{ALPN, Credentials};
pub use quic::{
    BulkReceipt, BulkReceiver, Channel, ChannelReceiver, ChannelSender, EndpointOptions, Handler,
    PeerConnection, PeerEndpoint, PeerLink,
};

use std::net::SocketAddr;
use std::path::PathBuf;

/// Errors of the transport. Each names its cause, so an operator can act on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// A credentials file could not be read.
    #[error("cannot read {what} {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// What it should hold.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Credentials are unusable (wrong key, empty file, refused CA).
    #[error("credentials: {0}")]
    Credentials(String),
    /// A certificate or key problem found by the PKI code.
    #[error(transparent)]
    Pki(#[from] xy_gmtls::GmTlsError),
    /// rustls refused a configuration or a handshake.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// An endpoint option is out of range.
    #[error("configuration: {0}")]
    Config(String),
    /// The socket could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Another I/O failure.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A connection could not be started (bad address or server name).
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The connection failed or was closed; for a refused handshake the text names the cause.
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// A stream failed.
    #[error("stream: {0}")]
    Stream(String),
    /// The peer broke the frame protocol; the connection is closed.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The peer is authenticated but not authorised.
    #[error("unauthorised peer: {0}")]
    Unauthorized(String),
    /// The peer refused a request, with its reason.
    #[error("refused by peer: {0}")]
    Refused(String),
    /// A bulk transfer arrived other than it was sent.
    #[error("integrity: {0}")]
    Integrity(String),
}

impl TransportError {
    /// Whether trying again later may succeed (a lost or timed-out connection), as opposed to a
    /// refusal that waiting will not fix (a certificate or protocol problem).
    pub fn is_transient(&self) -> bool {
        match self {
            TransportError::Connection(e) => matches!(
                e,
                quinn::ConnectionError::TimedOut
                    | quinn::ConnectionError::Reset
                    | quinn::ConnectionError::ApplicationClosed(_)
                    | quinn::ConnectionError::LocallyClosed
            ),
            TransportError::Stream(_) | TransportError::Io(_) => true,
            _ => false,
        }
    }
}
