//! Every SM4 path this CPU can run against the GB/T 32907 vectors (including the 1,000,000-
//! iteration case) and against the portable path on random keys and every block count up to 300,
//! and the portable path against RustCrypto's independent table implementation.

use cipher::{BlockCipherEncrypt, KeyInit};
use serde_json::Value;
use xy_sm4::{Backend, Sm4};

fn kat() -> Value {
    // The project's one copy of ../shared/vectors/gm-kat.json (provenance in its README).
    serde_json::from_str(include_str!("../../shangmi/tests/data/gm-kat.json")).unwrap()
}

fn arr16(hex_text: &str) -> [u8; 16] {
    hex::decode(hex_text).unwrap().try_into().unwrap()
}

fn available() -> Vec<Backend> {
    let paths: Vec<Backend> = Backend::ALL
        .into_iter()
        .filter(|b| b.is_available())
        .collect();
    eprintln!(
        "SM4 paths on this CPU: {:?} (detected best: {:?})",
        paths,
        Backend::detect()
    );
    paths
}

#[test]
fn every_path_passes_the_gbt_32907_vectors() {
    for backend in available() {
        for v in kat()["sm4_block"].as_array().unwrap() {
            let sm4 = Sm4::with_backend(&arr16(v["key"].as_str().unwrap()), backend).unwrap();
            let iterations = v["iterations"].as_u64().unwrap();
            // Run four independent chains side by side so the vector paths work on full registers;
            // all four must end at the published value.
            let mut blocks = [arr16(v["plaintext"].as_str().unwrap()); 4];
            for _ in 0..iterations {
                sm4.encrypt_blocks(&mut blocks);
            }
            for block in blocks {
                assert_eq!(
                    hex::encode(block),
                    v["ciphertext"].as_str().unwrap(),
                    "{backend:?}, {iterations} iterations"
                );
            }
        }
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

    fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            *b = self.next() as u8;
        }
    }
}

#[test]
fn every_path_agrees_with_the_portable_path() {
    let mut rng = XorShift(0x5eed_5eed_1234_5678);
    for round in 0..20 {
        let mut key = [0u8; 16];
        rng.fill(&mut key);
        let reference = Sm4::with_backend(&key, Backend::Portable).unwrap();
        for backend in available() {
            let sm4 = Sm4::with_backend(&key, backend).unwrap();
            for count in 0..=300 {
                if round > 0 && count > 40 && count % 17 != 0 {
                    continue;
                }
                let mut blocks = vec![[0u8; 16]; count];
                for b in &mut blocks {
                    rng.fill(b);
                }
                let mut expected = blocks.clone();
                reference.encrypt_blocks(&mut expected);
                sm4.encrypt_blocks(&mut blocks);
                assert_eq!(blocks, expected, "{backend:?}, {count} blocks");
            }
        }
    }
}

#[test]
fn the_portable_path_matches_rustcrypto_and_the_key_schedule_is_path_independent() {
    let mut rng = XorShift(42);
    for _ in 0..200 {
        let mut key = [0u8; 16];
        let mut block = [0u8; 16];
        rng.fill(&mut key);
        rng.fill(&mut block);
        let mut ours = block;
        Sm4::with_backend(&key, Backend::Portable)
            .unwrap()
            .encrypt_block(&mut ours);
        let mut theirs = block.into();
        sm4::Sm4::new(&key.into()).encrypt_block(&mut theirs);
        assert_eq!(ours, <[u8; 16]>::from(theirs));
        // Through the cipher traits (as aes-gcm and ccm use it), on the detected path.
        let mut via_traits: cipher::Block<Sm4> = block.into();
        BlockCipherEncrypt::encrypt_block(&<Sm4 as KeyInit>::new(&key.into()), &mut via_traits);
        assert_eq!(ours, <[u8; 16]>::from(via_traits));
        // And 40 blocks at once through the trait's parallel entry point.
        let mut many: Vec<cipher::Block<Sm4>> = (0..40u8).map(|i| [i; 16].into()).collect();
        BlockCipherEncrypt::encrypt_blocks(&<Sm4 as KeyInit>::new(&key.into()), &mut many);
        let mut expected: Vec<[u8; 16]> = (0..40u8).map(|i| [i; 16]).collect();
        Sm4::with_backend(&key, Backend::Portable)
            .unwrap()
            .encrypt_blocks(&mut expected);
        assert_eq!(
            many.iter()
                .map(|b| <[u8; 16]>::from(*b))
                .collect::<Vec<_>>(),
            expected
        );
    }
}

/// The portable path alone, small enough for valgrind (scripts/test.sh runs this test under it):
/// the standard vector, agreement with RustCrypto on random blocks, and SM4-GCM on it.
#[test]
fn portable_path_under_valgrind() {
    let v = &kat()["sm4_block"][0];
    let sm4 = Sm4::with_backend(&arr16(v["key"].as_str().unwrap()), Backend::Portable).unwrap();
    let mut block = arr16(v["plaintext"].as_str().unwrap());
    sm4.encrypt_block(&mut block);
    assert_eq!(hex::encode(block), v["ciphertext"].as_str().unwrap());
    let mut rng = XorShift(7);
    let mut blocks = vec![[0u8; 16]; 64];
    for b in &mut blocks {
        rng.fill(b);
    }
    let mut theirs = blocks.clone();
    sm4.encrypt_blocks(&mut blocks);
    let reference = sm4::Sm4::new(&arr16(v["key"].as_str().unwrap()).into());
    for b in &mut theirs {
        let mut block = (*b).into();
        reference.encrypt_block(&mut block);
        *b = block.into();
    }
    assert_eq!(blocks, theirs);
    use aead::AeadInOut;
    let gcm = xy_sm4::Sm4Gcm::from_cipher(sm4);
    for len in [0usize, 1, 15, 16, 17, 100, 1000] {
        let mut data = vec![0x61u8; len];
        let nonce = [5u8; 12].into();
        let tag = gcm
            .encrypt_inout_detached(&nonce, b"aad", data.as_mut_slice().into())
            .unwrap();
        gcm.decrypt_inout_detached(&nonce, b"aad", data.as_mut_slice().into(), &tag)
            .unwrap();
        assert_eq!(data, vec![0x61u8; len]);
    }
}
