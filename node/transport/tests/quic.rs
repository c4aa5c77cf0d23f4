//! The QUIC peer endpoint on loopback: mutual authentication over the RFC 8998 provider, the
//! handshake refusals, bulk transfer integrity, bad input and reconnection.

mod common;

use common::*;
use xy_transport::{EndpointOptions, PeerEndpoint};

#[tokio::test]
async fn a_valid_pair_is_accepted_and_each_side_knows_the_other() {
    let pki = pki();
    let (_server, addr, _) = serve(&pki.credentials("province"));
    let client = PeerEndpoint::client(
        loopback(),
        &pki.credentials("chengdu"),
        &EndpointOptions::default(),
    )
    .unwrap();
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
