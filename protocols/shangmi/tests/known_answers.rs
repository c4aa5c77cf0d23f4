//! Known-answer tests from `tests/data/gm-kat.json` (GB/T 32905, GB/T 32907, RFC 8998).

use serde_json::Value;
use xy_shangmi::{CryptoError, HmacSm3, Sm3Hasher, Sm4Ccm, Sm4Gcm, sm3, sm4_encrypt_block};

mod common;

use common::{kat, unhex};

/// A message given as `msg_ascii`, or as `msg_ascii_repeat: {unit, times}`.
fn message(case: &Value) -> Vec<u8> {
    if let Some(m) = case["msg_ascii"].as_str() {
        return m.as_bytes().to_vec();
    }
    let repeat = &case["msg_ascii_repeat"];
    let unit = repeat["unit"]
        .as_str()
        .expect("msg_ascii or msg_ascii_repeat");
    unit.repeat(repeat["times"].as_u64().unwrap() as usize)
        .into_bytes()
}

#[test]
fn sm3_matches_gbt_32905() {
    let kat = kat();
    let cases = kat["sm3"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    for case in cases {
        let msg = &message(case)[..];
        let want = unhex(case["digest"].as_str().unwrap());
        assert_eq!(sm3(msg).to_vec(), want, "{}", case["source"]);
        let mut incremental = Sm3Hasher::new();
        for chunk in msg.chunks(7) {
            incremental.update(chunk);
        }
        assert_eq!(incremental.finish().to_vec(), want);
    }
}

#[test]
fn sm4_block_matches_gbt_32907_including_million_iterations() {
    let kat = kat();
    for case in kat["sm4_block"].as_array().unwrap() {
        let key: [u8; 16] = unhex(case["key"].as_str().unwrap()).try_into().unwrap();
        let mut block: [u8; 16] = unhex(case["plaintext"].as_str().unwrap())
            .try_into()
            .unwrap();
        let iterations = case["iterations"].as_u64().unwrap();
        for _ in 0..iterations {
            sm4_encrypt_block(&key, &mut block);
        }
        assert_eq!(
            block.to_vec(),
            unhex(case["ciphertext"].as_str().unwrap()),
            "{}",
            case["source"]
        );
    }
}

/// One RFC 8998 Appendix A case through either AEAD (they share the `Sm4Aead` API).
macro_rules! check_aead_case {
    ($cipher:ty, $case:expr) => {{
        let case: &Value = $case;
        let cipher = <$cipher>::new(&unhex(case["key"].as_str().unwrap())).unwrap();
        let nonce: [u8; 12] = unhex(case["iv"].as_str().unwrap()).try_into().unwrap();
        let aad = unhex(case["aad"].as_str().unwrap());
        let plain = unhex(case["plaintext"].as_str().unwrap());
        let mut buf = plain.clone();
        let tag = cipher.encrypt_detached(&nonce, &aad, &mut buf);
        assert_eq!(
            buf,
            unhex(case["ciphertext"].as_str().unwrap()),
            "{}",
            case["source"]
        );
        assert_eq!(
            tag.to_vec(),
            unhex(case["tag"].as_str().unwrap()),
            "{}",
            case["source"]
        );
        cipher
            .decrypt_detached(&nonce, &aad, &mut buf, &tag)
            .unwrap();
        assert_eq!(buf, plain);
        let sealed = cipher.seal(&nonce, &aad, &plain);
        assert_eq!(
            cipher.open(b"other aad", &sealed),
            Err(CryptoError::Authentication)
        );
    }};
}

#[test]
fn sm4_gcm_and_ccm_match_rfc_8998_appendix_a() {
    let kat = kat();
    let cases = kat["sm4_aead"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    for case in cases {
        match case["mode"].as_str().unwrap() {
            "GCM" => check_aead_case!(Sm4Gcm, case),
            "CCM" => check_aead_case!(Sm4Ccm, case),
            other => panic!("unknown mode {other}"),
        }
    }
}

#[test]
fn sealed_messages_refuse_tampering_wrong_aad_and_truncation() {
    let cipher = Sm4Gcm::new(&[7u8; 16]).unwrap();
    let sealed = cipher.seal(&[1u8; 12], b"row-42", b"11010519491231002X");
    assert_eq!(
        cipher.open(b"row-42", &sealed).unwrap(),
        b"11010519491231002X"
    );
    assert_eq!(
        cipher.open(b"row-43", &sealed),
        Err(CryptoError::Authentication)
    );
    let mut flipped = sealed.clone();
    flipped[14] ^= 1;
    assert_eq!(
        cipher.open(b"row-42", &flipped),
        Err(CryptoError::Authentication)
    );
    assert_eq!(
        cipher.open(b"row-42", &sealed[..20]),
        Err(CryptoError::Truncated)
    );
    assert!(matches!(
        Sm4Gcm::new(&[0u8; 15]),
        Err(CryptoError::KeyLength {
            expected: 16,
            actual: 15
        })
    ));
}

#[test]
fn hmac_sm3_separates_parts_and_keys() {
    let a = HmacSm3::new(b"key-a");
    let b = HmacSm3::new(b"key-b");
    assert_ne!(a.mac_parts(&[b"ab", b"c"]), a.mac_parts(&[b"a", b"bc"]));
    assert_ne!(a.mac(b"x"), b.mac(b"x"));
    assert_eq!(a.mac(b"x"), a.clone().mac(b"x"));
}

#[test]
fn hmac_sm3_matches_openssl() {
    let data: Value = serde_json::from_str(include_str!("data/hmac-sm3-openssl.json")).unwrap();
    let cases = data["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    for case in cases {
        let mac = HmacSm3::new(case["key_ascii"].as_str().unwrap().as_bytes());
        assert_eq!(
            mac.mac(&message(case)).to_vec(),
            unhex(case["mac"].as_str().unwrap())
        );
    }
}
