//! Shared helpers of the transport tests: a development PKI in a temporary directory, extra
//! certificates made for refusal cases, and endpoints on loopback.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use xy_gmtls::pki::{
    CertificateProfile, Issuer, PeerIdentity, Role, pem_encode, private_key_to_pkcs8,
};
use xy_shangmi::sm2::Sm2SecretKey;
use xy_transport::devpki::{self, PkiLayout};
use xy_transport::quic::BulkReceiver;
use xy_transport::{Credentials, EndpointOptions, Handler, PeerEndpoint};

pub struct Pki {
    pub dir: tempfile::TempDir,
    pub layout: PkiLayout,
}

pub fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let layout = devpki::init(dir.path(), false, devpki::unix_now()).unwrap();
    Pki { dir, layout }
}

impl Pki {
    pub fn credentials(&self, member: &str) -> Credentials {
        self.credentials_with_crl(member, false)
    }

    pub fn credentials_with_crl(&self, member: &str, crl: bool) -> Credentials {
        let files = self.layout.member(member);
        let crl_path = self.layout.crl();
        Credentials::load(
            &files.cert,
            &files.key,
            &self.layout.ca_cert(),
            crl.then_some(crl_path.as_path()),
        )
        .unwrap()
    }

    pub fn ca_key(&self) -> Sm2SecretKey {
        let pem = std::fs::read(self.layout.ca_key()).unwrap();
        use rustls::pki_types::pem::PemObject;
        let der = rustls::pki_types::PrivateKeyDer::from_pem_slice(&pem).unwrap();
        xy_gmtls::pki::private_key_from_der(der.secret_der()).unwrap()
    }

    pub fn ca_der(&self) -> Vec<u8> {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_file(self.layout.ca_cert())
            .unwrap()
            .to_vec()
    }

    /// Issue an extra certificate `name` under this CA with custom validity; returns its files.
    pub fn issue(
        &self,
        name: &str,
        identity: PeerIdentity,
        not_before: u64,
        not_after: u64,
    ) -> (PathBuf, PathBuf, Vec<u8>) {
        let ca_key = self.ca_key();
        let ca = self.ca_der();
        let issuer = Issuer::new(&ca, &ca_key).unwrap();
        let key = devpki::generate_key();
        let serial = devpki::random_serial();
        let cert = issuer
            .issue(
                &key.public_key(),
                &CertificateProfile {
                    common_name: devpki::server_name(name),
                    dns_names: vec![],
                    identity: Some(identity),
                    not_before,
                    not_after,
                    is_ca: false,
                },
                &serial,
            )
            .unwrap();
        let cert_path = self.dir.path().join(format!("{name}.pem"));
        let key_path = self.dir.path().join(format!("{name}.key"));
        std::fs::write(&cert_path, pem_encode("CERTIFICATE", &cert)).unwrap();
        std::fs::write(
            &key_path,
            pem_encode("PRIVATE KEY", &private_key_to_pkcs8(&key)),
        )
        .unwrap();
        (cert_path, key_path, serial.to_vec())
    }

    /// Rewrite the CRL to revoke `serials`.
    pub fn revoke(&self, serials: &[Vec<u8>]) {
        let ca_key = self.ca_key();
        let ca = self.ca_der();
        let issuer = Issuer::new(&ca, &ca_key).unwrap();
        let now = devpki::unix_now();
        let revoked: Vec<(Vec<u8>, u64)> = serials.iter().map(|s| (s.clone(), now - 60)).collect();
        let crl = issuer
            .revocation_list(&revoked, now - 60, now + 86_400, 2)
            .unwrap();
        std::fs::write(self.layout.crl(), pem_encode("X509 CRL", &crl)).unwrap();
    }
}

pub fn bank_identity() -> PeerIdentity {
    PeerIdentity::new("510100", Role::InstitutionClient).unwrap()
}

/// A connecting endpoint on loopback with default options.
pub fn client_endpoint(credentials: &Credentials) -> PeerEndpoint {
    PeerEndpoint::client(loopback(), credentials, &EndpointOptions::default()).unwrap()
}

pub fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Echoes requests (prefixed with the peer's jurisdiction) and counts bulk bytes with their SM3.
#[derive(Default)]
pub struct EchoHandler {
    pub bulk_bytes: AtomicU64,
    pub bulk_digest: std::sync::Mutex<Option<[u8; 32]>>,
}

impl Handler for EchoHandler {
    async fn request(&self, peer: &PeerIdentity, payload: Vec<u8>) -> Result<Vec<u8>, String> {
        if payload == b"fail" {
            return Err("asked to fail".into());
        }
        let mut out = format!("{}/{}:", peer.jurisdiction, peer.role).into_bytes();
        out.extend_from_slice(&payload);
        Ok(out)
    }

    async fn bulk(
        &self,
        _peer: &PeerIdentity,
        _name: Vec<u8>,
        body: &mut BulkReceiver<'_>,
    ) -> Result<(), String> {
        let mut hasher = xy_shangmi::Sm3Hasher::new();
        let mut total = 0u64;
        while let Some(chunk) = body.next_chunk().await.map_err(|e| e.to_string())? {
            hasher.update(&chunk);
            total += chunk.len() as u64;
        }
        self.bulk_bytes.store(total, Ordering::SeqCst);
        *self.bulk_digest.lock().unwrap() = Some(hasher.finish());
        Ok(())
    }
}

/// A serving province endpoint on loopback with its handler.
pub fn serve(credentials: &Credentials) -> (PeerEndpoint, SocketAddr, Arc<EchoHandler>) {
    let endpoint =
        PeerEndpoint::server(loopback(), credentials, &EndpointOptions::default()).unwrap();
    let addr = endpoint.local_addr().unwrap();
    let handler = Arc::new(EchoHandler::default());
    let serving = endpoint.clone();
    let h = Arc::clone(&handler);
    tokio::spawn(async move { serving.serve(h).await });
    (endpoint, addr, handler)
}

/// Deterministic pseudo-random bytes (xorshift), chunk `i` of a transfer.
pub fn chunk(i: u64, len: usize) -> Vec<u8> {
    let mut state = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn province_name() -> String {
    devpki::server_name("province")
}

pub fn openssl_available() -> bool {
    std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// OpenSSL 4 (RFC 8998 TLS 1.3), built once per machine by scripts/openssl4.sh: from $XY_OPENSSL4,
/// else the script's cache. Missing is a failure, not a skip.
pub fn openssl4() -> PathBuf {
    if let Some(path) = std::env::var_os("XY_OPENSSL4") {
        return PathBuf::from(path);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/openssl4.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .output()
        .expect("running scripts/openssl4.sh");
    assert!(
        out.status.success(),
        "scripts/openssl4.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// Run Debian's openssl in `dir`; panics with its output on failure.
pub fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// DER hex of the node-identity extension value, for openssl `-extfile` (`OID=DER:hex`).
pub fn identity_extension_hex(jurisdiction: &str, role: &str) -> String {
    let mut inner = vec![0x13, jurisdiction.len() as u8];
    inner.extend_from_slice(jurisdiction.as_bytes());
    inner.extend_from_slice(&[0x0c, role.len() as u8]);
    inner.extend_from_slice(role.as_bytes());
    let mut der = vec![0x30, inner.len() as u8];
    der.extend_from_slice(&inner);
    der.iter().map(|b| format!("{b:02X}")).collect()
}

pub fn identity_oid() -> String {
    xy_gmtls::pki::IDENTITY_EXTENSION_OID
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(".")
}

/// An SM2 PKI made entirely by Debian's openssl: a CA, and leaves for `province` and `chengdu`
/// (with the node-identity extension when `with_identity`).
pub struct OpensslPki {
    pub dir: tempfile::TempDir,
}

impl OpensslPki {
    pub fn new(with_identity: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        openssl(d, &["genpkey", "-algorithm", "SM2", "-out", "ca.key"]);
        std::fs::write(
            d.join("ca.cnf"),
            "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n",
        )
        .unwrap();
        openssl(
            d,
            &[
                "req",
                "-new",
                "-key",
                "ca.key",
                "-sm3",
                "-sigopt",
                "distid:1234567812345678",
                "-subj",
                "/C=CN/O=openssl/CN=openssl SM2 root",
                "-out",
                "ca.csr",
            ],
        );
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "ca.csr",
                "-key",
                "ca.key",
                "-sm3",
                "-sigopt",
                "distid:1234567812345678",
                "-vfyopt",
                "distid:1234567812345678",
                "-days",
                "30",
                "-extfile",
                "ca.cnf",
                "-set_serial",
                "1",
                "-out",
                "ca.pem",
            ],
        );
        for (name, jurisdiction, role, serial) in [
            ("province", "510000", "province-node", "2"),
            ("chengdu", "510100", "prefecture-node", "3"),
        ] {
            openssl(
                d,
                &[
                    "genpkey",
                    "-algorithm",
                    "SM2",
                    "-out",
                    &format!("{name}.key"),
                ],
            );
            openssl(
                d,
                &[
                    "req",
                    "-new",
                    "-key",
                    &format!("{name}.key"),
                    "-sm3",
                    "-sigopt",
                    "distid:1234567812345678",
                    "-subj",
                    &format!("/CN={name}.openssl.test"),
                    "-out",
                    &format!("{name}.csr"),
                ],
            );
            let mut ext = format!(
                "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:{name}.openssl.test\n"
            );
            if with_identity {
                ext.push_str(&format!(
                    "{}=DER:{}\n",
                    identity_oid(),
                    identity_extension_hex(jurisdiction, role)
                ));
            }
            std::fs::write(d.join(format!("{name}.cnf")), ext).unwrap();
            openssl(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{name}.csr"),
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-sm3",
                    "-sigopt",
                    "distid:1234567812345678",
                    "-vfyopt",
                    "distid:1234567812345678",
                    "-days",
                    "30",
                    "-extfile",
                    &format!("{name}.cnf"),
                    "-set_serial",
                    serial,
                    "-out",
                    &format!("{name}.pem"),
                ],
            );
        }
        Self { dir }
    }

    pub fn credentials(&self, name: &str) -> Credentials {
        let d = self.dir.path();
        Credentials::load(
            &d.join(format!("{name}.pem")),
            &d.join(format!("{name}.key")),
            &d.join("ca.pem"),
            None,
        )
        .unwrap()
    }
}

/// A leaf certificate (DER) for a non-SM2 key (`EC` P-256 or `RSA`), signed by the dev PKI's SM2
/// CA with openssl.
pub fn foreign_key_leaf(pki: &Pki, algorithm: &str) -> Vec<u8> {
    let d = pki.dir.path();
    let stem = format!("foreign-{}", algorithm.to_lowercase());
    let mut args = vec!["genpkey", "-algorithm", algorithm];
    if algorithm == "EC" {
        args.extend(["-pkeyopt", "ec_paramgen_curve:P-256"]);
    } else {
        args.extend(["-pkeyopt", "rsa_keygen_bits:2048"]);
    }
    let key = format!("{stem}.key");
    args.extend(["-out", &key]);
    openssl(d, &args);
    openssl(
        d,
        &[
            "req",
            "-new",
            "-key",
            &key,
            "-subj",
            "/CN=foreign.xinyong.internal",
            "-out",
            &format!("{stem}.csr"),
        ],
    );
    std::fs::write(
        d.join(format!("{stem}.cnf")),
        format!(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:foreign.xinyong.internal\n{}=DER:{}\n",
            identity_oid(),
            identity_extension_hex("510100", "prefecture-node")
        ),
    )
    .unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{stem}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-sm3",
            "-sigopt",
            "distid:1234567812345678",
            "-days",
            "1",
            "-extfile",
            &format!("{stem}.cnf"),
            "-set_serial",
            "77",
            "-outform",
            "DER",
            "-out",
            &format!("{stem}.der"),
        ],
    );
    std::fs::read(d.join(format!("{stem}.der"))).unwrap()
}

/// Always presents one certificate and key (for hand-built client configurations).
#[derive(Debug)]
pub struct FixedClientCert(pub Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for FixedClientCert {
    fn resolve(
        &self,
        _: &[&[u8]],
        _: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A TLS client configuration over the SM provider trusting the dev CA, presenting `chain` signed
/// with `key`.
pub fn hand_built_client(
    pki: &Pki,
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: Option<Arc<dyn rustls::sign::SigningKey>>,
) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(pki.ca_der()))
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(xy_gmtls::provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match key {
        Some(key) => builder.with_client_cert_resolver(Arc::new(FixedClientCert(Arc::new(
            rustls::sign::CertifiedKey::new(chain, key),
        )))),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![xy_transport::ALPN.to_vec()];
    config
}
