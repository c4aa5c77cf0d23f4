//! SM2 known answers from `tests/data/gm-kat.json` (GB/T 32918) and properties of the API.

use xy_shangmi::CryptoError;
use xy_shangmi::sm2::{CERT_DISTID, Sm2PublicKey, Sm2SecretKey, TLS13_DISTID};

mod common;

use common::{kat, unhex};

#[test]
fn gbt_32918_signature_verifies_under_its_id_only() {
    let kat = kat();
    let cases = kat["sm2_sign"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let secret =
            Sm2SecretKey::from_bytes(&unhex(case["private_key"].as_str().unwrap())).unwrap();
        let public =
            Sm2PublicKey::from_sec1(&unhex(case["public_key_sec1"].as_str().unwrap())).unwrap();
        assert_eq!(
            secret.public_key(),
            public,
            "the public key derives from the private key"
        );
        let id = case["id_ascii"].as_str().unwrap();
        assert_eq!(id, CERT_DISTID);
        let msg = case["msg_ascii"].as_str().unwrap().as_bytes();
        let mut sig = unhex(case["r"].as_str().unwrap());
        sig.extend(unhex(case["s"].as_str().unwrap()));
        public
            .verify(id, msg, &sig)
            .expect("the standard's signature verifies");
        // The same signature must not verify under the TLS 1.3 id (RFC 8998 §3.2.1).
        assert_eq!(
            public.verify(TLS13_DISTID, msg, &sig),
            Err(CryptoError::Signature)
        );
        // Nor over another message, nor when altered.
        assert_eq!(
            public.verify(id, b"message digesT", &sig),
            Err(CryptoError::Signature)
        );
        let mut bad = sig.clone();
        bad[10] ^= 1;
        assert_eq!(public.verify(id, msg, &bad), Err(CryptoError::Signature));
        assert_eq!(
            public.verify(id, msg, &sig[..63]),
            Err(CryptoError::Signature)
        );
        // Our own signature under each id verifies under that id only.
        for (own, other) in [(CERT_DISTID, TLS13_DISTID), (TLS13_DISTID, CERT_DISTID)] {
            let s = secret.sign(own, msg).unwrap();
            public.verify(own, msg, &s).unwrap();
            assert_eq!(public.verify(other, msg, &s), Err(CryptoError::Signature));
            assert_eq!(
                secret.sign(own, msg).unwrap(),
                s,
                "deterministic signatures"
            );
        }
    }
}

#[test]
fn gbt_32918_c1c3c2_ciphertext_decrypts() {
    let kat = kat();
    for case in kat["sm2_encrypt"].as_array().unwrap() {
        let secret =
            Sm2SecretKey::from_bytes(&unhex(case["private_key"].as_str().unwrap())).unwrap();
        let ct = unhex(case["ciphertext"].as_str().unwrap());
        assert_eq!(
            secret.decrypt_c1c3c2(&ct).unwrap(),
            case["msg_ascii"].as_str().unwrap().as_bytes()
        );
        let mut tampered = ct.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(
            secret.decrypt_c1c3c2(&tampered),
            Err(CryptoError::Decryption)
        );
        assert_eq!(
            secret.decrypt_c1c3c2(&ct[..40]),
            Err(CryptoError::Decryption)
        );
    }
}

#[test]
fn invalid_keys_are_refused_not_used() {
    // The identity (all zeros), a point off the curve, a wrong length, a zero scalar.
    assert_eq!(
        Sm2PublicKey::from_sec1(&[0u8; 65]),
        Err(CryptoError::InvalidKey)
    );
    let kat = kat();
    let mut off_curve = unhex(kat["sm2_sign"][0]["public_key_sec1"].as_str().unwrap());
    off_curve[64] ^= 1;
    assert_eq!(
        Sm2PublicKey::from_sec1(&off_curve),
        Err(CryptoError::InvalidKey)
    );
    assert_eq!(
        Sm2PublicKey::from_sec1(&off_curve[..64]),
        Err(CryptoError::InvalidKey)
    );
    assert!(matches!(
        Sm2SecretKey::from_bytes(&[0u8; 32]),
        Err(CryptoError::InvalidKey)
    ));
    assert!(matches!(
        Sm2SecretKey::from_bytes(&[0xffu8; 32]),
        Err(CryptoError::InvalidKey)
    ));
}
