//! Issuing and parsing SM2 certificates and CRLs: the identity extension round-trips, issuers
//! refuse mismatched keys and non-CA certificates, and mutated certificates never panic the parser.

use xy_gmtls::pki::{
    CertificateProfile, Issuer, ParsedCertificate, PeerIdentity, Role, peer_identity,
};
use xy_shangmi::sm2::Sm2SecretKey;

fn profile(identity: Option<PeerIdentity>, is_ca: bool) -> CertificateProfile {
    CertificateProfile {
        common_name: "chengdu.xinyong.internal".into(),
        dns_names: vec!["chengdu-backup.xinyong.internal".into()],
        identity,
        not_before: 1_790_000_000,
        not_after: 1_800_000_000,
        is_ca,
    }
}

#[test]
fn identity_round_trips_and_issuers_are_checked() {
    let ca_key = Sm2SecretKey::from_bytes(&[1; 32]).unwrap();
    let ca = Issuer::self_signed(&ca_key, &profile(None, true), &[0x80, 1]).unwrap();
    let parsed_ca = ParsedCertificate::parse(&ca).unwrap();
    assert!(parsed_ca.is_ca);
    assert_eq!(
        parsed_ca.serial,
        [0x00, 0x80, 0x01],
        "a high-bit serial gets its sign byte"
    );
    let issuer = Issuer::new(&ca, &ca_key).unwrap();
    let leaf_key = Sm2SecretKey::from_bytes(&[2; 32]).unwrap();
    for role in Role::ALL {
        let identity = PeerIdentity::new("510100", role).unwrap();
        let leaf = issuer
            .issue(
                &leaf_key.public_key(),
                &profile(Some(identity.clone()), false),
                &[9],
            )
            .unwrap();
        assert_eq!(peer_identity(&leaf).unwrap(), Some(identity));
        let parsed = ParsedCertificate::parse(&leaf).unwrap();
        assert!(!parsed.is_ca);
        assert_eq!(parsed.public_key, leaf_key.public_key());
        assert_eq!(parsed.issuer, parsed_ca.subject);
    }
    // A key that is not the CA's, or a certificate that is not a CA, cannot issue.
    assert!(Issuer::new(&ca, &leaf_key).is_err());
    let leaf = issuer
        .issue(&leaf_key.public_key(), &profile(None, false), &[10])
        .unwrap();
    assert!(
        Issuer::new(&leaf, &leaf_key)
            .unwrap_err()
            .to_string()
            .contains("not a CA")
    );
    // Jurisdiction codes are six digits.
    for bad in ["51010", "5101000", "51010x", ""] {
        assert!(
            PeerIdentity::new(bad, Role::PrefectureNode).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn mutated_certificates_never_panic_the_parser() {
    let ca_key = Sm2SecretKey::from_bytes(&[1; 32]).unwrap();
    let ca = Issuer::self_signed(&ca_key, &profile(None, true), &[1]).unwrap();
    let issuer = Issuer::new(&ca, &ca_key).unwrap();
    let identity = PeerIdentity::new("510000", Role::ProvinceNode).unwrap();
    let leaf = issuer
        .issue(
            &Sm2SecretKey::from_bytes(&[3; 32]).unwrap().public_key(),
            &profile(Some(identity), false),
            &[5],
        )
        .unwrap();
    let crl = issuer
        .revocation_list(&[(vec![5], 1_795_000_000)], 1_795_000_000, 1_796_000_000, 3)
        .unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for base in [&leaf, &ca, &crl] {
        for _ in 0..5_000 {
            let mut bytes = base.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % bytes.len();
                match next() % 3 {
                    0 => bytes[at] = next() as u8,
                    1 => bytes.truncate(at),
                    _ => bytes.insert(at, next() as u8),
                }
                if bytes.is_empty() {
                    break;
                }
            }
            let _ = ParsedCertificate::parse(&bytes);
        }
    }
}

#[test]
fn a_certificate_verifies_under_its_issuer_only() {
    use xy_gmtls::pki::verify_signed_by;
    let ca_key = Sm2SecretKey::from_bytes(&[1; 32]).unwrap();
    let ca = Issuer::self_signed(&ca_key, &profile(None, true), &[1]).unwrap();
    let other_key = Sm2SecretKey::from_bytes(&[3; 32]).unwrap();
    let other = Issuer::self_signed(&other_key, &profile(None, true), &[2]).unwrap();
    let leaf_key = Sm2SecretKey::from_bytes(&[2; 32]).unwrap();
    let identity = PeerIdentity::new("510100", Role::PrefectureNode).unwrap();
    let leaf = Issuer::new(&ca, &ca_key)
        .unwrap()
        .issue(
            &leaf_key.public_key(),
            &profile(Some(identity), false),
            &[9],
        )
        .unwrap();
    verify_signed_by(&leaf, &ca).unwrap();
    verify_signed_by(&ca, &ca).unwrap();
    assert!(verify_signed_by(&leaf, &other).is_err());
    let mut tampered = leaf.clone();
    let at = tampered.len() / 2;
    tampered[at] ^= 1;
    assert!(verify_signed_by(&tampered, &ca).is_err());
    for cut in (0..leaf.len()).step_by(7) {
        assert!(verify_signed_by(&leaf[..cut], &ca).is_err());
    }
}
