use rand::{Rng, RngCore, SeedableRng};
use xy_gmtls::pki::{CertificateProfile, Issuer, PeerIdentity, Role};

use super::*;

struct Pki {
    ca: Vec<u8>,
    key: Sm2SecretKey,
    cert: Vec<u8>,
}

fn key(rng: &mut impl RngCore) -> Sm2SecretKey {
    Sm2SecretKey::generate(&mut |b| rng.fill_bytes(b))
}

fn profile(name: &str, identity: Option<PeerIdentity>, is_ca: bool) -> CertificateProfile {
    CertificateProfile {
        common_name: name.into(),
        dns_names: vec![name.into()],
        identity,
        not_before: 1_700_000_000,
        not_after: 1_900_000_000,
        is_ca,
    }
}

fn pki(rng: &mut impl RngCore, jurisdiction: &str) -> Pki {
    let ca_key = key(rng);
    let ca = Issuer::self_signed(&ca_key, &profile("ca", None, true), &[1]).unwrap();
    let node_key = key(rng);
    let identity = PeerIdentity::new(jurisdiction, Role::PrefectureNode).unwrap();
    let cert = Issuer::new(&ca, &ca_key)
        .unwrap()
        .issue(
            &node_key.public_key(),
            &profile("node", Some(identity), false),
            &[2],
        )
        .unwrap();
    Pki {
        ca,
        key: node_key,
        cert,
    }
}

fn text(rng: &mut impl Rng, max: usize) -> String {
    let len = rng.random_range(0..=max);
    (0..len)
        .map(|_| match rng.random_range(0..4) {
            0 => '处',
            1 => '"',
            _ => rng.random_range('a'..='z'),
        })
        .collect()
}

fn record(rng: &mut impl Rng, i: usize) -> FlowRecord {
    fn opt(rng: &mut impl Rng, max: usize) -> Option<String> {
        let s = text(rng, max);
        (!rng.next_u32().is_multiple_of(3)).then_some(s)
    }
    FlowRecord {
        gid: format!("510100:{i}"),
        version: rng.random_range(1..5),
        category: "xzcf".into(),
        status: "active".into(),
        source_unit: text(rng, 18),
        subject_code: opt(rng, 18),
        subject_id: opt(rng, 18),
        document_number: text(rng, 30),
        decision_date: rng
            .next_u32()
            .is_multiple_of(2)
            .then(|| "2025/01/02".into()),
        payload: format!("{{\"x\":\"{}\"}}", text(rng, 200).replace('"', "")),
        personal: opt(rng, 40),
        lineage: "{}".into(),
    }
}

fn signer(p: &Pki) -> Signer<'_> {
    Signer {
        jurisdiction: "510100",
        key: &p.key,
        certificate: &p.cert,
    }
}

fn batch(p: &Pki, records: &[FlowRecord]) -> SignedBatch {
    sign_batch(
        &signer(p),
        Flow::Share,
        "510000",
        Cursor { major: 3, minor: 7 },
        Cursor { major: 9, minor: 1 },
        records,
        1_800_000_000,
    )
    .unwrap()
}

#[test]
fn records_round_trip_on_random_inputs() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for n in [0, 1, 2, 17, 300] {
        let records: Vec<FlowRecord> = (0..n).map(|i| record(&mut rng, i)).collect();
        let body = encode_records(&records).unwrap();
        assert_eq!(decode_records(&body).unwrap(), records);
        // A strict prefix is refused, or (cut at a record boundary) is fewer whole records, which
        // the signed row count catches; it is never misread.
        for cut in 0..body.len().min(2000) {
            match decode_records(&body[..cut]) {
                Err(_) => {}
                Ok(fewer) => {
                    assert!(fewer.len() < records.len() && fewer == records[..fewer.len()])
                }
            }
        }
    }
}

#[test]
fn a_signed_batch_verifies_and_round_trips() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let p = pki(&mut rng, "510100");
    let records: Vec<FlowRecord> = (0..50).map(|i| record(&mut rng, i)).collect();
    let b = batch(&p, &records);
    let decoded = SignedBatch::decode(&b.encode()).unwrap();
    assert_eq!(decoded, b);
    assert_eq!(decoded.verify(&[&p.ca]).unwrap(), records);
    // The id depends on the content and range, not on the signature or time.
    let again = batch(&p, &records);
    assert_eq!(again.batch_id(), b.batch_id());
    let other = batch(&p, &records[1..]);
    assert_ne!(other.batch_id(), b.batch_id());
}

#[test]
fn tampering_is_detected() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
    let p = pki(&mut rng, "510100");
    let records: Vec<FlowRecord> = (0..5).map(|i| record(&mut rng, i)).collect();
    let b = batch(&p, &records);

    let mut body = b.clone();
    let at = body.body.len() / 2;
    body.body[at] ^= 1;
    assert!(
        matches!(body.verify(&[&p.ca]), Err(ExchangeError::Verification(m)) if m.contains("digest"))
    );

    let mut header = b.clone();
    header.header_json = String::from_utf8(header.header_json)
        .unwrap()
        .replace("\"rows\":5", "\"rows\":4")
        .into_bytes();
    let reparsed = SignedBatch::decode(&header.encode()).unwrap();
    assert!(
        matches!(reparsed.verify(&[&p.ca]), Err(ExchangeError::Verification(m)) if m.contains("signature"))
    );

    // A certificate from another CA, and a certificate of another jurisdiction.
    let stranger = pki(&mut rng, "510100");
    assert!(b.verify(&[&stranger.ca]).is_err());
    let impostor = pki(&mut rng, "510300");
    let forged = sign_batch(
        &Signer {
            jurisdiction: "510100",
            key: &impostor.key,
            certificate: &impostor.cert,
        },
        Flow::Share,
        "510000",
        Cursor::START,
        Cursor::START,
        &records,
        0,
    )
    .unwrap();
    assert!(
        matches!(forged.verify(&[&impostor.ca]), Err(ExchangeError::Verification(m)) if m.contains("510300"))
    );
}

#[test]
fn truncated_and_oversized_batches_are_refused() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let p = pki(&mut rng, "510100");
    let b = batch(&p, &[record(&mut rng, 1)]).encode();
    for cut in 0..b.len() {
        assert!(SignedBatch::decode(&b[..cut]).is_err(), "cut at {cut}");
    }
    let mut trailing = b.clone();
    trailing.push(0);
    assert!(SignedBatch::decode(&trailing).is_err());
    let mut huge = b[..4].to_vec();
    huge.extend_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        SignedBatch::decode(&huge),
        Err(ExchangeError::TooLarge(_))
    ));
    let mut field = 1i64.to_be_bytes().to_vec();
    field.extend_from_slice(&((MAX_FIELD as u32) + 1).to_be_bytes());
    assert!(matches!(
        decode_records(&field),
        Err(ExchangeError::TooLarge(_))
    ));
}

#[test]
fn batch_files_open_only_for_their_recipient() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
    let p = pki(&mut rng, "510100");
    let province = key(&mut rng);
    let b = batch(&p, &[record(&mut rng, 1), record(&mut rng, 2)]);
    let mut randomness = EnvelopeRandomness {
        ephemeral: [0; 32],
        nonce: [0; 12],
    };
    rng.fill_bytes(&mut randomness.ephemeral);
    rng.fill_bytes(&mut randomness.nonce);
    let file = seal_file(&b, &p.key, &province.public_key(), &randomness).unwrap();
    let opened = open_file(&province, &file).unwrap();
    assert_eq!(opened, b);
    assert!(opened.verify(&[&p.ca]).is_ok());
    assert!(open_file(&key(&mut rng), &file).is_err());
    let mut tampered = file.clone();
    let at = tampered.len() / 2;
    tampered[at] ^= 1;
    assert!(open_file(&province, &tampered).is_err());
}

#[test]
fn mutated_batches_never_verify_and_never_panic() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let p = pki(&mut rng, "510100");
    let records: Vec<FlowRecord> = (0..20).map(|i| record(&mut rng, i)).collect();
    let good = batch(&p, &records).encode();
    for _ in 0..2000 {
        let mut bytes = good.clone();
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(0..bytes.len());
            bytes[at] ^= 1 << rng.random_range(0..8);
        }
        if let Ok(decoded) = SignedBatch::decode(&bytes) {
            assert!(
                decoded.verify(&[&p.ca]).is_err(),
                "a mutated batch verified"
            );
        }
    }
}
