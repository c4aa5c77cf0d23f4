//! RFC 8998 ShangMi TLS 1.3 and QUIC for xinyong: a rustls [`CryptoProvider`](rustls::crypto::CryptoProvider)
//! offering exactly TLS_SM4_GCM_SM3 and TLS_SM4_CCM_SM3 with curveSM2 and sm2sig_sm3
//! ([`provider`]), and the SM2 X.509 certificates, CRLs and PKCS#8 keys the node's PKI is made of
//! ([`pki`]).
//!
//! Sans-IO: no sockets and no clock. Certificate serials and validity times are arguments; the
//! provider's randomness is its `secure_random` (the operating system's, [`provider::OsRandom`]),
//! which is what rustls hands key exchange and nonces.

mod der;
pub mod pki;
pub mod provider;

pub use provider::{Sm4Mode, provider, provider_with_suites};

/// Errors of certificates, keys and the provider.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GmTlsError {
    /// A certificate is malformed or unsuitable; the text names the cause.
    #[error("certificate: {0}")]
    Certificate(String),
    /// A private key is malformed or not an SM2 key; the text names the cause.
    #[error("private key: {0}")]
    Key(String),
    /// An SM2 operation failed.
    #[error(transparent)]
    Crypto(#[from] xy_shangmi::CryptoError),
}
