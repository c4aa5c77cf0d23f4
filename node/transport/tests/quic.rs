//! The QUIC peer endpoint on loopback: mutual authentication over the RFC 8998 provider, the
//! handshake refusals, bulk transfer integrity, bad input and reconnection.

mod common;

use common::*;
use xy_transport::{EndpointOptions, PeerEndpoint};

#[tokio::test]
async fn a_valid_pair_is_accepted_and_each_side_knows_the_other() {
    let pki = pki();
    let (_server, addr, _) = serve(&pki.credentials("province"));
    let client = client_endpoint(&pki.credentials("chengdu"));
    let connection = client.connect(addr, &province_name()).await.unwrap();
    assert_eq!(connection.peer().jurisdiction, "510000");
    assert_eq!(connection.peer().role.as_str(), "province-node");
    let reply = connection.request(b"hello").await.unwrap();
    assert_eq!(reply, b"510100/prefecture-node:hello");
    let refusal = connection.request(b"fail").await.unwrap_err();
    assert!(refusal.to_string().contains("asked to fail"), "{refusal}");
}

#[test]
fn dev_pki_certificates_pass_openssl_verify() {
    if !openssl_available() {
        panic!("openssl is required (scripts/test.sh installs it)");
    }
    let pki = pki();
    for member in ["province", "chengdu", "mianyang", "bank"] {
        let files = pki.layout.member(member);
        let out = std::process::Command::new("openssl")
            .args(["verify", "-CAfile", path_str(&pki.layout.ca_cert())])
            .args(["-vfyopt", "distid:1234567812345678"])
            .arg(&files.cert)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{member}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Debian's OpenSSL 3.0 does not set the SM2 id when verifying CRLs; OpenSSL 4 does.
    let openssl4 = openssl4();
    let out = std::process::Command::new(&openssl4)
        .args([
            "verify",
            "-crl_check",
            "-CRLfile",
            path_str(&pki.layout.crl()),
            "-CAfile",
            path_str(&pki.layout.ca_cert()),
        ])
        .arg(pki.layout.member("chengdu").cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "crl: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Connect and make one request: a refused client certificate surfaces on the first request,
/// since in TLS 1.3 the server judges it after the client has finished its handshake.
async fn try_request(
    client: &PeerEndpoint,
    addr: std::net::SocketAddr,
    name: &str,
) -> Result<Vec<u8>, xy_transport::TransportError> {
    let connection = client.connect(addr, name).await?;
    let result = connection.request(b"probe").await;
    if let Err(e) = &result {
        eprintln!("refusal seen by the client: {e}");
    }
    result
}

/// After a refusal the server still serves a valid peer.
async fn still_serving(pki: &Pki, addr: std::net::SocketAddr) {
    let good = client_endpoint(&pki.credentials("mianyang"));
    let reply = try_request(&good, addr, &province_name()).await.unwrap();
    assert_eq!(reply, b"510700/prefecture-node:probe");
}

#[tokio::test]
async fn handshake_refused_without_a_client_certificate() {
    let pki = pki();
    let (_server, addr, _) = serve(&pki.credentials("province"));
    let client = PeerEndpoint::client_with_tls(
        loopback(),
        hand_built_client(&pki, vec![], None),
        &EndpointOptions::default(),
    )
    .unwrap();
    let err = try_request(&client, addr, &province_name())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("peer sent no certificates"),
        "{err}"
    );
    still_serving(&pki, addr).await;
}

#[tokio::test]
async fn handshake_refused_for_a_certificate_of_an_unknown_ca() {
    let pki = pki();
    let stranger = self::pki();
    let (_server, addr, _) = serve(&pki.credentials("province"));
    // A client from another CA is refused by the server ...
    let client = client_endpoint(&stranger.credentials("chengdu"));
    let err = try_request(&client, addr, &province_name())
        .await
        .unwrap_err();
    // Both development CAs share a name, so webpki finds the other CA and its signature fails.
    assert!(
        err.to_string().contains("UnknownIssuer") || err.to_string().contains("BadSignature"),
        "{err}"
    );
    // ... and a server from another CA is refused by the client.
    let (_other, other_addr, _) = serve(&stranger.credentials("province"));
    let client = client_endpoint(&pki.credentials("chengdu"));
    let err = client
        .connect(other_addr, &province_name())
        .await
        .err()
        .expect("unknown server CA refused");
    // Both development CAs share a name, so webpki finds the other CA and its signature fails.
    assert!(
        err.to_string().contains("UnknownIssuer") || err.to_string().contains("BadSignature"),
        "{err}"
    );
    still_serving(&pki, addr).await;
}

#[tokio::test]
async fn handshake_refused_for_an_expired_certificate() {
    let pki = pki();
    let (_server, addr, _) = serve(&pki.credentials("province"));
    let now = xy_transport::devpki::unix_now();
    let (cert, key, _) = pki.issue("expired", bank_identity(), now - 10 * 86_400, now - 86_400);
    let credentials =
        xy_transport::Credentials::load(&cert, &key, &pki.layout.ca_cert(), None).unwrap();
    let client = client_endpoint(&credentials);
    let err = try_request(&client, addr, &province_name())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("certificate expired"), "{err}");
    // The same certificate made valid today is accepted: it was the date that was refused.
    let (cert, key, _) = pki.issue("current", bank_identity(), now - 86_400, now + 86_400);
    let credentials =
        xy_transport::Credentials::load(&cert, &key, &pki.layout.ca_cert(), None).unwrap();
    let client = client_endpoint(&credentials);
    assert_eq!(
        try_request(&client, addr, &province_name()).await.unwrap(),
        b"510100/institution-client:probe"
    );
}

#[tokio::test]
async fn handshake_refused_for_a_revoked_certificate() {
    let pki = pki();
    let now = xy_transport::devpki::unix_now();
    let (cert, key, serial) = pki.issue("revoked", bank_identity(), now - 86_400, now + 86_400);
    let (good_cert, good_key, _) =
        pki.issue("unrevoked", bank_identity(), now - 86_400, now + 86_400);
    pki.revoke(&[serial]);
    let (_server, addr, _) = serve(&pki.credentials_with_crl("province", true));
    let revoked =
        xy_transport::Credentials::load(&cert, &key, &pki.layout.ca_cert(), None).unwrap();
    let client = client_endpoint(&revoked);
    let err = try_request(&client, addr, &province_name())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Revoked"), "{err}");
    let good = xy_transport::Credentials::load(&good_cert, &good_key, &pki.layout.ca_cert(), None)
        .unwrap();
    let client = client_endpoint(&good);
    assert!(try_request(&client, addr, &province_name()).await.is_ok());
}

#[tokio::test]
async fn handshake_refused_when_the_client_signs_under_the_wrong_sm2_id() {
    let pki = pki();
    let (_server, addr, _) = serve(&pki.credentials("province"));
    let key_pem = std::fs::read(pki.layout.member("chengdu").key).unwrap();
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::PrivateKeyDer::from_pem_slice(&key_pem).unwrap();
    let secret = xy_gmtls::pki::private_key_from_der(der.secret_der()).unwrap();
    // CertificateVerify signed under the certificate id instead of "TLSv1.3+GM+Cipher+Suite".
    let wrong = std::sync::Arc::new(xy_gmtls::provider::Sm2SigningKey::with_distid(
        secret.clone(),
        xy_shangmi::sm2::CERT_DISTID,
    ));
    let client = PeerEndpoint::client_with_key(
        loopback(),
        &pki.credentials("chengdu"),
        &EndpointOptions::default(),
        Some(wrong),
    )
    .unwrap();
    let err = try_request(&client, addr, &province_name())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("BadSignature"), "{err}");
    // The same key under the right id passes.
    let right = std::sync::Arc::new(xy_gmtls::provider::Sm2SigningKey::new(secret));
    let client = PeerEndpoint::client_with_key(
        loopback(),
        &pki.credentials("chengdu"),
        &EndpointOptions::default(),
        Some(right),
    )
    .unwrap();
    assert!(try_request(&client, addr, &province_name()).await.is_ok());
}

#[tokio::test]
async fn handshake_refused_for_non_sm_certificates() {
    let pki = pki();
    let (_server, addr, _) = serve(&pki.credentials("province"));
    for algorithm in ["EC", "RSA"] {
        let leaf = foreign_key_leaf(&pki, algorithm);
        // Our own key loading refuses the certificate outright, naming the cause.
        let err = xy_gmtls::pki::ParsedCertificate::parse(&leaf)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(if algorithm == "EC" {
                "wrong curve"
            } else {
                "not an elliptic-curve key"
            }),
            "{err}"
        );
        // A client that presents it anyway (signing with some SM2 key) is refused by the server.
        let signer = std::sync::Arc::new(xy_gmtls::provider::Sm2SigningKey::new(
            xy_transport::devpki::generate_key(),
        ));
        let tls = hand_built_client(&pki, vec![leaf.into()], Some(signer));
        let client =
            PeerEndpoint::client_with_tls(loopback(), tls, &EndpointOptions::default()).unwrap();
        let err = try_request(&client, addr, &province_name())
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("UnsupportedSignatureAlgorithmForPublicKey"),
            "{algorithm}: {err}"
        );
    }
    still_serving(&pki, addr).await;
}

#[tokio::test]
async fn certificates_made_by_openssl_are_accepted() {
    let pki = OpensslPki::new(true);
    let (_server, addr, _) = serve(&pki.credentials("province"));
    let client = client_endpoint(&pki.credentials("chengdu"));
    let connection = client.connect(addr, "province.openssl.test").await.unwrap();
    assert_eq!(connection.peer().jurisdiction, "510000");
    assert_eq!(
        connection.request(b"hi").await.unwrap(),
        b"510100/prefecture-node:hi"
    );
}

#[tokio::test]
async fn a_verified_peer_without_jurisdiction_and_role_is_refused() {
    let pki = OpensslPki::new(false);
    let (_server, addr, _) = serve(&pki.credentials("province"));
    let client = client_endpoint(&pki.credentials("chengdu"));
    // The client cannot even accept the server: it names no jurisdiction and role.
    let err = client
        .connect(addr, "province.openssl.test")
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("jurisdiction and role"), "{err}");
}

#[tokio::test]
async fn a_256_mib_bulk_transfer_arrives_intact() {
    let pki = pki();
    let (_server, addr, handler) = serve(&pki.credentials("province"));
    let client = client_endpoint(&pki.credentials("chengdu"));
    let connection = client.connect(addr, &province_name()).await.unwrap();
    const CHUNKS: u64 = 256;
    let receipt = connection
        .send_bulk(b"share-up/batch-1", (0..CHUNKS).map(|i| chunk(i, 1 << 20)))
        .await
        .unwrap();
    assert_eq!(receipt.bytes, CHUNKS << 20);
    let mut expected = xy_shangmi::Sm3Hasher::new();
    for i in 0..CHUNKS {
        expected.update(&chunk(i, 1 << 20));
    }
    let expected = expected.finish();
    assert_eq!(receipt.sm3, expected);
    assert_eq!(
        handler.bulk_bytes.load(std::sync::atomic::Ordering::SeqCst),
        CHUNKS << 20
    );
    assert_eq!(handler.bulk_digest.lock().unwrap().unwrap(), expected);
}

#[tokio::test]
async fn a_link_reconnects_after_the_peer_restarts() {
    let pki = pki();
    let credentials = pki.credentials("province");
    let (server, addr, _) = serve(&credentials);
    let client = client_endpoint(&pki.credentials("chengdu"));
    let link = xy_transport::PeerLink::new(client, addr, &province_name());
    assert_eq!(
        link.request(b"one").await.unwrap(),
        b"510100/prefecture-node:one"
    );
    // The province restarts on the same port.
    server.close();
    server.wait_idle().await;
    drop(server);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let restarted = PeerEndpoint::server(addr, &credentials, &EndpointOptions::default()).unwrap();
    let serving = restarted.clone();
    tokio::spawn(async move {
        serving
            .serve(std::sync::Arc::new(EchoHandler::default()))
            .await
    });
    assert_eq!(
        link.request(b"two").await.unwrap(),
        b"510100/prefecture-node:two"
    );
}

#[tokio::test]
async fn a_link_backs_off_and_reports_when_nobody_answers() {
    let pki = pki();
    // A port with nobody behind it.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    drop(silent);
    let options = EndpointOptions {
        idle_timeout: std::time::Duration::from_millis(300),
        ..EndpointOptions::default()
    };
    let client = PeerEndpoint::client(loopback(), &pki.credentials("chengdu"), &options).unwrap();
    let mut link = xy_transport::PeerLink::new(client, addr, &province_name());
    link.initial_backoff = std::time::Duration::from_millis(10);
    link.max_attempts = 3;
    let started = std::time::Instant::now();
    let err = link.request(b"anyone?").await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    // Three attempts, two waits of at least 10 and 20 ms between them.
    assert!(started.elapsed() >= std::time::Duration::from_millis(30));
}
