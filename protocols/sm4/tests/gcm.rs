//! `xy-sm4`'s SM4-GCM on every path this CPU has: the RFC 8998 Appendix A.1 vector, agreement
//! with an independent GCM (`aes-gcm` over RustCrypto's table SM4) on random keys, nonces and
//! associated data for every length 0..=4096 and unaligned buffers, and refusal of any tampering.

use aead::AeadInOut;
use aes_gcm::AesGcm;
use aes_gcm::aead::consts::U12;
use cipher::KeyInit;
use serde_json::Value;
use xy_sm4::{Backend, Sm4, Sm4Gcm};

type Reference = AesGcm<sm4::Sm4, U12>;

fn n12(bytes: &[u8]) -> aead::Nonce<Sm4Gcm> {
    <[u8; 12]>::try_from(bytes).unwrap().into()
}

fn paths() -> Vec<Backend> {
    Backend::ALL
        .into_iter()
        .filter(|b| b.is_available())
        .collect()
}

fn gcm(key: &[u8; 16], backend: Backend) -> Sm4Gcm {
    Sm4Gcm::from_cipher(Sm4::with_backend(key, backend).unwrap())
}

#[test]
fn rfc_8998_vector_on_every_path() {
    let kat: Value =
        serde_json::from_str(include_str!("../../shangmi/tests/data/gm-kat.json")).unwrap();
    let v = kat["sm4_aead"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["mode"] == "GCM")
        .unwrap();
    let h = |k: &str| hex::decode(v[k].as_str().unwrap()).unwrap();
    let key: [u8; 16] = h("key").try_into().unwrap();
    for backend in paths() {
        let aead = gcm(&key, backend);
        let mut buffer = h("plaintext");
        let tag = aead
            .encrypt_inout_detached(&n12(&h("iv")), &h("aad"), buffer.as_mut_slice().into())
            .unwrap();
        assert_eq!(buffer, h("ciphertext"), "{backend:?}");
        assert_eq!(tag.to_vec(), h("tag"), "{backend:?}");
        aead.decrypt_inout_detached(
            &n12(&h("iv")),
            &h("aad"),
            buffer.as_mut_slice().into(),
            &tag,
        )
        .unwrap();
        assert_eq!(buffer, h("plaintext"));
    }
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn every_length_up_to_4096_matches_the_reference_on_every_path() {
    let mut rng = XorShift(0x0bad_cafe_dead_beef);
    for backend in paths() {
        for len in 0..=4096usize {
            // Every length on the best path; on the others every length up to 600 and a sample beyond.
            if backend != Backend::detect() && len > 600 && len % 61 != 0 {
                continue;
            }
            let key: [u8; 16] = rng.bytes(16).try_into().unwrap();
            let nonce = rng.bytes(12);
            let aad_len = (rng.next() % 40) as usize;
            let aad = rng.bytes(aad_len);
            let plain = rng.bytes(len);
            let offset = 1 + len % 15; // an unaligned start inside a larger buffer
            let mut storage = vec![0u8; len + 16];
            storage[offset..offset + len].copy_from_slice(&plain);
            let ours = gcm(&key, backend);
            let tag = ours
                .encrypt_inout_detached(
                    &n12(&nonce),
                    &aad,
                    (&mut storage[offset..offset + len]).into(),
                )
                .unwrap();
            let mut expected = plain.clone();
            let reference = Reference::new(&key.into());
            let expected_tag = reference
                .encrypt_inout_detached(&n12(&nonce), &aad, expected.as_mut_slice().into())
                .unwrap();
            assert_eq!(
                &storage[offset..offset + len],
                &expected[..],
                "{backend:?} len {len}"
            );
            assert_eq!(tag, expected_tag, "{backend:?} len {len}");
            ours.decrypt_inout_detached(
                &n12(&nonce),
                &aad,
                (&mut storage[offset..offset + len]).into(),
                &tag,
            )
            .unwrap();
            assert_eq!(&storage[offset..offset + len], &plain[..]);
        }
    }
}

#[test]
fn tampering_is_refused_and_leaves_the_ciphertext_untouched() {
    let key = [3u8; 16];
    let nonce = [9u8; 12];
    for backend in paths() {
        let aead = gcm(&key, backend);
        let mut sealed = b"credit record batch 2026-11-26".to_vec();
        let tag = aead
            .encrypt_inout_detached(&n12(&nonce), b"hdr", sealed.as_mut_slice().into())
            .unwrap();
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x20;
            let before = bad.clone();
            assert!(
                aead.decrypt_inout_detached(&n12(&nonce), b"hdr", bad.as_mut_slice().into(), &tag)
                    .is_err()
            );
            assert_eq!(bad, before, "a refused message must not be decrypted");
        }
        let mut bad_tag = tag;
        bad_tag[15] ^= 1;
        let mut copy = sealed.clone();
        assert!(
            aead.decrypt_inout_detached(&n12(&nonce), b"hdr", copy.as_mut_slice().into(), &bad_tag)
                .is_err()
        );
        let mut copy = sealed.clone();
        assert!(
            aead.decrypt_inout_detached(&n12(&nonce), b"hdX", copy.as_mut_slice().into(), &tag)
                .is_err()
        );
    }
}
