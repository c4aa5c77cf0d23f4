//! The RFC 8998 provider against known answers: the QUIC SM4-GCM regression vector of
//! `gm-kat.json` (key schedule with HKDF-SM3, packet protection, SM4-ECB header protection), the
//! code points, and a TLS 1.3 handshake in memory with both suites.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::quic::{Keys, Version};
use rustls::{CipherSuite, NamedGroup, Side, SignatureScheme};
use serde_json::Value;
use xy_gmtls::pki::{CertificateProfile, Issuer, PeerIdentity, Role, private_key_to_pkcs8};
use xy_gmtls::provider::{self, Sm4Mode};
use xy_shangmi::sm2::Sm2SecretKey;

fn kat() -> Value {
    // The project's one copy of ../shared/vectors/gm-kat.json (provenance in its README).
    serde_json::from_str(include_str!("../../shangmi/tests/data/gm-kat.json")).unwrap()
}

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

#[test]
fn quic_initial_packet_matches_the_regression_vector() {
    let v = &kat()["quic_sm4_gcm_regression"];
    let suite = provider::sm4_gcm_quic_suite();
    let keys = Keys::initial(
        Version::V1,
        suite.suite,
        suite.quic,
        &unhex(v["dcid"].as_str().unwrap()),
        Side::Client,
    );
    let header = unhex(v["header"].as_str().unwrap());
    let unit = v["payload_ascii_repeat"]["unit"].as_str().unwrap();
    let mut payload = unit
        .repeat(v["payload_ascii_repeat"]["times"].as_u64().unwrap() as usize)
        .into_bytes();
    let packet_number = v["packet_number"].as_u64().unwrap();
    let tag = keys
        .local
        .packet
        .encrypt_in_place(packet_number, &header, &mut payload)
        .unwrap();
    assert_eq!(hex::encode(&payload), v["ciphertext"].as_str().unwrap());
    assert_eq!(hex::encode(tag.as_ref()), v["tag"].as_str().unwrap());

    let mut first = header[0];
    assert_eq!(
        hex::encode([first]),
        v["unprotected_first_byte"].as_str().unwrap()
    );
    let mut pn = unhex(v["packet_number_bytes"].as_str().unwrap());
    keys.local
        .header
        .encrypt_in_place(&payload[..16], &mut first, &mut pn)
        .unwrap();
    assert_eq!(
        hex::encode([first]),
        v["masked_first_byte"].as_str().unwrap()
    );
    assert_eq!(
        hex::encode(&pn),
        v["masked_packet_number"].as_str().unwrap()
    );

    // The server side (remote keys of the client) removes protection and decrypts it back.
    let server = Keys::initial(
        Version::V1,
        suite.suite,
        suite.quic,
        &unhex(v["dcid"].as_str().unwrap()),
        Side::Server,
    );
    server
        .remote
        .header
        .decrypt_in_place(&payload[..16], &mut first, &mut pn)
        .unwrap();
    assert_eq!(first, header[0]);
    let mut sealed = payload.clone();
    sealed.extend_from_slice(tag.as_ref());
    let plain = server
        .remote
        .packet
        .decrypt_in_place(packet_number, &header, &mut sealed)
        .unwrap();
    assert_eq!(plain, unit.repeat(2).as_bytes());
    // A flipped bit anywhere fails authentication.
    let mut tampered = payload.clone();
    tampered[3] ^= 1;
    tampered.extend_from_slice(tag.as_ref());
    assert!(
        server
            .remote
            .packet
            .decrypt_in_place(packet_number, &header, &mut tampered)
            .is_err()
    );
}

#[test]
fn code_points_are_those_of_rfc_8998_and_compare_equal_to_from_u16() {
    let p = xy_gmtls::provider();
    let suites: Vec<CipherSuite> = p.cipher_suites.iter().map(|s| s.suite()).collect();
    assert_eq!(
        suites,
        [CipherSuite::from(0x00c6), CipherSuite::from(0x00c7)]
    );
    let groups: Vec<NamedGroup> = p.kx_groups.iter().map(|g| g.name()).collect();
    assert_eq!(groups, [NamedGroup::from(0x0029)]);
    assert_eq!(
        p.signature_verification_algorithms.supported_schemes(),
        [SignatureScheme::from(0x0708)]
    );
    let only_ccm = xy_gmtls::provider_with_suites(&[Sm4Mode::Ccm]);
    assert_eq!(only_ccm.cipher_suites.len(), 1);
    assert_eq!(only_ccm.cipher_suites[0].suite(), CipherSuite::from(0x00c7));
}

#[test]
fn curve_sm2_refuses_invalid_peer_points() {
    let p = xy_gmtls::provider();
    let group = p.kx_groups[0];
    let a = group.start().unwrap();
    let b = group.start().unwrap();
    let a_pub = a.pub_key().to_vec();
    assert_eq!(a_pub.len(), 65);
    let b_pub = b.pub_key().to_vec();
    let s1 = a.complete(&b_pub).unwrap();
    let s2 = b.complete(&a_pub).unwrap();
    assert_eq!(s1.secret_bytes(), s2.secret_bytes());
    assert_eq!(s1.secret_bytes().len(), 32);
    let mut off_curve = a_pub.clone();
    off_curve[64] ^= 1;
    let compressed = [&[0x02][..], &a_pub[1..33]].concat();
    for bad in [
        &off_curve[..],
        &compressed[..],
        &[0x04; 65][..],
        &[][..],
        &a_pub[..64],
    ] {
        assert!(
            group.start().unwrap().complete(bad).is_err(),
            "accepted {}",
            hex::encode(bad)
        );
    }
}

struct Party {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn party(issuer: &Issuer<'_>, name: &str, identity: PeerIdentity, serial: u8) -> Party {
    let key = Sm2SecretKey::from_bytes(&[serial; 32]).unwrap();
    let now = 1_790_000_000;
    let cert = issuer
        .issue(
            &key.public_key(),
            &CertificateProfile {
                common_name: name.into(),
                dns_names: vec![],
                identity: Some(identity),
                not_before: now - 86_400,
                not_after: now + 86_400 * 365 * 20,
                is_ca: false,
            },
            &[serial],
        )
        .unwrap();
    Party {
        chain: vec![cert.into()],
        key: PrivatePkcs8KeyDer::from(private_key_to_pkcs8(&key)).into(),
    }
}

/// A full TLS 1.3 handshake and a record each way, in memory, with `suite`.
fn handshake(suite: Sm4Mode) -> (Vec<u8>, Vec<u8>) {
    let ca_key = Sm2SecretKey::from_bytes(&[9; 32]).unwrap();
    let ca = Issuer::self_signed(
        &ca_key,
        &CertificateProfile {
            common_name: "test CA".into(),
            dns_names: vec![],
            identity: None,
            not_before: 1_700_000_000,
            not_after: 2_500_000_000,
            is_ca: true,
        },
        &[1],
    )
    .unwrap();
    let issuer = Issuer::new(&ca, &ca_key).unwrap();
    let server = party(
        &issuer,
        "server.test",
        PeerIdentity::new("510000", Role::ProvinceNode).unwrap(),
        2,
    );
    let client = party(
        &issuer,
        "client.test",
        PeerIdentity::new("510100", Role::PrefectureNode).unwrap(),
        3,
    );
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca)).unwrap();
    let roots = Arc::new(roots);
    let provider = Arc::new(xy_gmtls::provider_with_suites(&[suite]));
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots.clone(),
        provider.clone(),
    )
    .build()
    .unwrap();
    let server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(server.chain, server.key)
        .unwrap();
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(client.chain, client.key)
        .unwrap();
    let mut c =
        rustls::ClientConnection::new(Arc::new(client_config), "server.test".try_into().unwrap())
            .unwrap();
    let mut s = rustls::ServerConnection::new(Arc::new(server_config)).unwrap();
    use std::io::{Read, Write};
    c.writer().write_all(b"ping").unwrap();
    for _ in 0..10 {
        let mut buf = Vec::new();
        c.write_tls(&mut buf).unwrap();
        s.read_tls(&mut &buf[..]).unwrap();
        s.process_new_packets().unwrap();
        let mut buf = Vec::new();
        s.write_tls(&mut buf).unwrap();
        c.read_tls(&mut &buf[..]).unwrap();
        c.process_new_packets().unwrap();
    }
    assert_eq!(
        c.negotiated_cipher_suite().unwrap().suite(),
        CipherSuite::from(match suite {
            Sm4Mode::Gcm => 0x00c6,
            Sm4Mode::Ccm => 0x00c7,
        })
    );
    assert_eq!(
        c.negotiated_key_exchange_group().unwrap().name(),
        NamedGroup::from(0x0029)
    );
    let mut got = vec![0u8; 4];
    s.reader().read_exact(&mut got).unwrap();
    let client_seen = s.peer_certificates().unwrap()[0].to_vec();
    (got, client_seen)
}

#[test]
fn tls13_handshake_with_each_suite_authenticates_both_sides() {
    for suite in [Sm4Mode::Gcm, Sm4Mode::Ccm] {
        let (got, client_cert) = handshake(suite);
        assert_eq!(got, b"ping");
        let identity = xy_gmtls::pki::peer_identity(&client_cert).unwrap().unwrap();
        assert_eq!(
            identity,
            PeerIdentity::new("510100", Role::PrefectureNode).unwrap()
        );
    }
}
