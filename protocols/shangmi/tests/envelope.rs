//! Signed, encrypted payload envelopes: round trips and every way to get one wrong.

use xy_shangmi::CryptoError;
use xy_shangmi::envelope::{EnvelopeRandomness, claimed_sender, open, seal};
use xy_shangmi::sm2::Sm2SecretKey;

fn key(byte: u8) -> Sm2SecretKey {
    let mut b = [byte; 32];
    b[0] = 0x11;
    Sm2SecretKey::from_bytes(&b).unwrap()
}

fn randomness(seed: u8) -> EnvelopeRandomness {
    let mut ephemeral = [seed; 32];
    ephemeral[0] = 0x22;
    EnvelopeRandomness {
        ephemeral,
        nonce: [seed; 12],
    }
}

#[test]
fn sealed_batches_open_for_their_recipient_only() {
    let (province, chengdu, mianyang) = (key(1), key(2), key(3));
    let batch = "批次 B2026 — 行政处罚 1000 条".repeat(50);
    let env = seal(
        &province,
        &chengdu.public_key(),
        batch.as_bytes(),
        b"batch-42",
        &randomness(7),
    )
    .unwrap();
    assert!(
        !env.windows(12).any(|w| w == &batch.as_bytes()[..12]),
        "payload in clear"
    );
    assert_eq!(claimed_sender(&env).unwrap(), province.public_key());
    assert_eq!(
        open(&chengdu, &province.public_key(), &env, b"batch-42").unwrap(),
        batch.as_bytes()
    );
    // Another batch id, another recipient, another expected sender.
    assert_eq!(
        open(&chengdu, &province.public_key(), &env, b"batch-43"),
        Err(CryptoError::Authentication)
    );
    assert_eq!(
        open(&mianyang, &province.public_key(), &env, b"batch-42"),
        Err(CryptoError::WrongRecipient)
    );
    assert_eq!(
        open(&chengdu, &mianyang.public_key(), &env, b"batch-42"),
        Err(CryptoError::UnexpectedSender)
    );
    // An empty payload works too; fresh randomness gives a different envelope.
    let empty = seal(&province, &chengdu.public_key(), b"", b"", &randomness(8)).unwrap();
    assert_eq!(
        open(&chengdu, &province.public_key(), &empty, b"").unwrap(),
        b""
    );
    let again = seal(
        &province,
        &chengdu.public_key(),
        batch.as_bytes(),
        b"batch-42",
        &randomness(9),
    )
    .unwrap();
    assert_ne!(again, env);
}

#[test]
fn any_altered_byte_is_refused_before_decryption() {
    let (sender, recipient) = (key(4), key(5));
    let env = seal(
        &sender,
        &recipient.public_key(),
        b"return-flow rows",
        b"",
        &randomness(1),
    )
    .unwrap();
    for i in 0..env.len() {
        let mut bad = env.clone();
        bad[i] ^= 0x40;
        let result = open(&recipient, &sender.public_key(), &bad, b"");
        assert!(result.is_err(), "byte {i} altered and still accepted");
    }
}

#[test]
fn truncated_and_padded_envelopes_are_refused_without_panic() {
    let (sender, recipient) = (key(6), key(7));
    let env = seal(
        &sender,
        &recipient.public_key(),
        &[9u8; 300],
        b"",
        &randomness(2),
    )
    .unwrap();
    for cut in 0..env.len() {
        assert!(
            open(&recipient, &sender.public_key(), &env[..cut], b"").is_err(),
            "cut at {cut}"
        );
        let _ = claimed_sender(&env[..cut]);
    }
    let mut padded = env.clone();
    padded.push(0);
    assert!(matches!(
        open(&recipient, &sender.public_key(), &padded, b""),
        Err(CryptoError::Malformed(_))
    ));
    // A declared length far beyond the input allocates nothing and is refused.
    let mut huge = env.clone();
    huge[212..220].copy_from_slice(&u64::MAX.to_be_bytes());
    assert!(matches!(
        open(&recipient, &sender.public_key(), &huge, b""),
        Err(CryptoError::Malformed(_))
    ));
}

#[test]
fn invalid_ephemeral_randomness_is_refused() {
    let r = EnvelopeRandomness {
        ephemeral: [0xff; 32],
        nonce: [0; 12],
    };
    assert_eq!(
        seal(&key(1), &key(2).public_key(), b"x", b"", &r),
        Err(CryptoError::InvalidKey)
    );
}
