//! The node's TLS credentials (certificate chain, SM2 key, trust anchors, CRL) and the rustls
//! configurations built from them: TLS 1.3 only, RFC 8998 suites only, mutual authentication always.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use xy_gmtls::Sm4Mode;
use xy_gmtls::pki::{ParsedCertificate, PeerIdentity};

use crate::TransportError;

/// The ALPN protocol of node-to-node traffic.
pub const ALPN: &[u8] = b"xinyong/1";

/// Certificate chain, key, trust anchors and revocation list of one node or client.
pub struct Credentials {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: Arc<RootCertStore>,
    anchors: Vec<CertificateDer<'static>>,
    crls: Vec<CertificateRevocationListDer<'static>>,
    identity: Option<PeerIdentity>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("identity", &self.identity)
            .field("chain_len", &self.chain.len())
            .field("crls", &self.crls.len())
            .finish_non_exhaustive()
    }
}

fn read_pem_file<T>(
    path: &Path,
    what: &str,
    parse: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Result<T, TransportError> {
    let bytes = std::fs::read(path).map_err(|source| TransportError::File {
        path: path.to_path_buf(),
        what: what.to_owned(),
        source,
    })?;
    parse(&bytes).map_err(|reason| {
        TransportError::Credentials(format!("{what} {}: {reason}", path.display()))
    })
}

/// Every PEM object of type `T` in a file (certificates, CRLs).
fn read_pem_list<T: PemObject>(path: &Path, what: &str) -> Result<Vec<T>, TransportError> {
    read_pem_file(path, what, |bytes| {
        T::pem_slice_iter(bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())
    })
}

impl Credentials {
    /// Load PEM files: `cert` (the node's certificate, optionally followed by intermediates), `key`
    /// (PKCS#8 SM2), `ca` (one or more trust anchors) and optionally a CRL.
    pub fn load(
        cert: &Path,
        key: &Path,
        ca: &Path,
        crl: Option<&Path>,
    ) -> Result<Self, TransportError> {
        let chain = read_pem_list(cert, "certificate")?;
        let key = read_pem_file(key, "private key", |bytes| {
            PrivateKeyDer::from_pem_slice(bytes).map_err(|e| e.to_string())
        })?;
        let anchors = read_pem_list(ca, "CA certificate")?;
        let crls = match crl {
            Some(path) => read_pem_list(path, "CRL")?,
            None => Vec::new(),
        };
        Self::from_der(chain, key, anchors, crls)
    }

    /// Credentials from DER parts.
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        anchors: Vec<CertificateDer<'static>>,
        crls: Vec<CertificateRevocationListDer<'static>>,
    ) -> Result<Self, TransportError> {
        let Some(leaf) = chain.first() else {
            return Err(TransportError::Credentials(
                "the certificate file holds no certificate".into(),
            ));
        };
        let parsed = ParsedCertificate::parse(leaf)?;
        let secret = xy_gmtls::pki::private_key_from_der(key.secret_der())?;
        if secret.public_key() != parsed.public_key {
            return Err(TransportError::Credentials(
                "the private key does not belong to the certificate".into(),
            ));
        }
        if anchors.is_empty() {
            return Err(TransportError::Credentials(
                "the CA file holds no certificate".into(),
            ));
        }
        let mut roots = RootCertStore::empty();
        for anchor in anchors.iter().cloned() {
            roots
                .add(anchor)
                .map_err(|e| TransportError::Credentials(format!("CA certificate refused: {e}")))?;
        }
        Ok(Self {
            identity: parsed.identity,
            chain,
            key,
            roots: Arc::new(roots),
            anchors,
            crls,
        })
    }

    /// This node's certificate (DER): what signed batches carry.
    pub fn certificate_der(&self) -> &[u8] {
        self.chain[0].as_ref()
    }

    /// The SM2 key of this node's certificate, for signing batches.
    pub fn signing_key(&self) -> Result<xy_shangmi::sm2::Sm2SecretKey, TransportError> {
        Ok(xy_gmtls::pki::private_key_from_der(self.key.secret_der())?)
    }

    /// The trust anchors (DER), to verify signed batches and files.
    pub fn anchors_der(&self) -> Vec<Vec<u8>> {
        self.anchors.iter().map(|a| a.as_ref().to_vec()).collect()
    }

    /// The jurisdiction and role of this node's own certificate.
    pub fn identity(&self) -> Option<&PeerIdentity> {
        self.identity.as_ref()
    }

    /// A TLS 1.3 server configuration that demands and verifies a client certificate (against the
    /// CA and the CRL) and offers exactly `suites`.
    pub fn server_config(&self, suites: &[Sm4Mode]) -> Result<ServerConfig, TransportError> {
        self.server_config_with_provider(Arc::new(xy_gmtls::provider_with_suites(suites)))
    }

    /// As [`Credentials::server_config`] over another provider (which must verify SM2
    /// signatures): the benchmark uses one with AES suites as the baseline.
    pub fn server_config_with_provider(
        &self,
        provider: Arc<CryptoProvider>,
    ) -> Result<ServerConfig, TransportError> {
        let verifier = WebPkiClientVerifier::builder_with_provider(
            Arc::clone(&self.roots),
            Arc::clone(&provider),
        )
        .with_crls(self.crls.clone())
        .build()
        .map_err(|e| TransportError::Credentials(format!("client verifier: {e}")))?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }

    /// A TLS 1.3 client configuration that verifies the server (CA and CRL), presents this
    /// certificate, and offers exactly `suites`.
    pub fn client_config(&self, suites: &[Sm4Mode]) -> Result<ClientConfig, TransportError> {
        self.client_config_with_key(suites, None)
    }

    /// As [`Credentials::client_config`], but signing with `signing_key` instead of the loaded key
    /// (tests use it to show that a peer signing under the wrong SM2 id is refused).
    pub fn client_config_with_key(
        &self,
        suites: &[Sm4Mode],
        signing_key: Option<Arc<dyn rustls::sign::SigningKey>>,
    ) -> Result<ClientConfig, TransportError> {
        self.client_config_with_provider(
            Arc::new(xy_gmtls::provider_with_suites(suites)),
            signing_key,
        )
    }

    /// As [`Credentials::client_config_with_key`] over another provider (which must verify SM2
    /// signatures).
    pub fn client_config_with_provider(
        &self,
        provider: Arc<CryptoProvider>,
        signing_key: Option<Arc<dyn rustls::sign::SigningKey>>,
    ) -> Result<ClientConfig, TransportError> {
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::clone(&self.roots),
            Arc::clone(&provider),
        )
        .with_crls(self.crls.clone())
        .build()
        .map_err(|e| TransportError::Credentials(format!("server verifier: {e}")))?;
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_webpki_verifier(verifier);
        let mut config = match signing_key {
            None => builder.with_client_auth_cert(self.chain.clone(), self.key.clone_key())?,
            Some(key) => builder.with_client_cert_resolver(Arc::new(FixedClientCert(Arc::new(
                rustls::sign::CertifiedKey::new(self.chain.clone(), key),
            )))),
        };
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }
}

/// The identity a verified peer certificate carries; a certificate without the node-identity
/// extension is refused, since nothing could be authorised for it.
pub fn identity_of(
    certificates: Option<&[CertificateDer<'_>]>,
) -> Result<PeerIdentity, TransportError> {
    let leaf = certificates
        .and_then(|chain| chain.first())
        .ok_or_else(|| TransportError::Unauthorized("the peer presented no certificate".into()))?;
    ParsedCertificate::parse(leaf)?.identity.ok_or_else(|| {
        TransportError::Unauthorized("the peer certificate names no jurisdiction and role".into())
    })
}

/// Always presents one certificate and key.
#[derive(Debug)]
struct FixedClientCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for FixedClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}
