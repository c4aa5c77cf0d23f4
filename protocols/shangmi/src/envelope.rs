//! Payload envelopes for store-and-forward: a batch encrypted to its recipient and signed by its
//! sender, verifiable after it lands, whatever carried it (QUIC, a file, a USB stick).
//!
//! Encryption: an ephemeral SM2 key agreement with the recipient's public key (plain ECDH on
//! curveSM2, the x-coordinate as shared secret) gives, through HMAC-SM3 over both public keys, a
//! fresh SM4-GCM key. The header and a caller-supplied context (e.g. the batch id) are the
//! associated data. Signature: SM2 (distinguishing id [`CERT_DISTID`]) by the sender over
//! everything before it.
//!
//! Layout, version 1 (all lengths fixed but the ciphertext's and the signature's):
//!
//! ```text
//! "XYEV" | 0x01 | sender pk (65) | recipient pk (65) | ephemeral pk (65) | nonce (12)
//!        | ciphertext length, u64 BE | ciphertext || tag | signature length, u16 BE | DER signature
//! ```
//!
//! Opening checks, in order: structure and lengths (from the bytes actually present, never from a
//! declared size), the expected sender, the signature, the recipient, then decryption. Any failure
//! is an error naming the cause; nothing is decrypted for an envelope whose signature fails.

use crate::sm2::{
    CERT_DISTID, PUBLIC_KEY_LEN, Sm2PublicKey, Sm2SecretKey, signature_from_der, signature_to_der,
};
use crate::{CryptoError, GCM_NONCE_LEN, GCM_TAG_LEN, HmacSm3, Sm4Gcm};

const MAGIC: &[u8; 4] = b"XYEV";
const VERSION: u8 = 1;
const SENDER_AT: usize = 5;
const RECIPIENT_AT: usize = SENDER_AT + PUBLIC_KEY_LEN;
const EPHEMERAL_AT: usize = RECIPIENT_AT + PUBLIC_KEY_LEN;
const NONCE_AT: usize = EPHEMERAL_AT + PUBLIC_KEY_LEN;
const LENGTH_AT: usize = NONCE_AT + GCM_NONCE_LEN;
const BODY_AT: usize = LENGTH_AT + 8;

/// The randomness one envelope needs: an ephemeral key scalar and a nonce. Sans-IO: the caller
/// draws it from a cryptographic RNG.
#[derive(Clone)]
pub struct EnvelopeRandomness {
    /// 32 random bytes for the ephemeral SM2 key (a value outside the scalar range is refused).
    pub ephemeral: [u8; 32],
    /// 12 random bytes for the SM4-GCM nonce.
    pub nonce: [u8; GCM_NONCE_LEN],
}

fn agree(secret: &Sm2SecretKey, public: &Sm2PublicKey) -> [u8; 32] {
    secret.diffie_hellman(public)
}

fn envelope_key(
    shared_x: &[u8; 32],
    ephemeral: &[u8],
    recipient: &[u8],
) -> Result<Sm4Gcm, CryptoError> {
    let okm =
        HmacSm3::new(shared_x).mac_parts(&[b"xinyong/envelope/v1/sm4-gcm", ephemeral, recipient]);
    Sm4Gcm::new(&okm[..16])
}

/// Seal `payload` for `recipient`, signed by `sender`, bound to `context`.
pub fn seal(
    sender: &Sm2SecretKey,
    recipient: &Sm2PublicKey,
    payload: &[u8],
    context: &[u8],
    randomness: &EnvelopeRandomness,
) -> Result<Vec<u8>, CryptoError> {
    let ephemeral = Sm2SecretKey::from_bytes(&randomness.ephemeral)?;
    let ephemeral_pk = ephemeral.public_key().to_sec1();
    let recipient_pk = recipient.to_sec1();
    let key = envelope_key(&agree(&ephemeral, recipient), &ephemeral_pk, &recipient_pk)?;
    let mut out = Vec::with_capacity(BODY_AT + payload.len() + GCM_TAG_LEN + 80);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&sender.public_key().to_sec1());
    out.extend_from_slice(&recipient_pk);
    out.extend_from_slice(&ephemeral_pk);
    out.extend_from_slice(&randomness.nonce);
    out.extend_from_slice(&((payload.len() + GCM_TAG_LEN) as u64).to_be_bytes());
    let aad = [&out[..LENGTH_AT], context].concat();
    let mut body = payload.to_vec();
    let tag = key.encrypt_detached(&randomness.nonce, &aad, &mut body);
    out.extend_from_slice(&body);
    out.extend_from_slice(&tag);
    let signature = signature_to_der(&sender.sign(CERT_DISTID, &out)?)?;
    out.extend_from_slice(&(signature.len() as u16).to_be_bytes());
    out.extend_from_slice(&signature);
    Ok(out)
}

/// The parts of an envelope, checked for structure only.
struct Parsed<'a> {
    signed: &'a [u8],
    sender: &'a [u8],
    recipient: &'a [u8],
    ephemeral: &'a [u8],
    nonce: [u8; GCM_NONCE_LEN],
    ciphertext: &'a [u8],
    signature: &'a [u8],
}

fn malformed(what: &'static str) -> CryptoError {
    CryptoError::Malformed(what)
}

fn parse(envelope: &[u8]) -> Result<Parsed<'_>, CryptoError> {
    if envelope.len() < BODY_AT + GCM_TAG_LEN + 2 {
        return Err(malformed("envelope shorter than its header"));
    }
    if &envelope[..4] != MAGIC {
        return Err(malformed("not an envelope (magic)"));
    }
    if envelope[4] != VERSION {
        return Err(malformed("unknown envelope version"));
    }
    let mut length = [0u8; 8];
    length.copy_from_slice(&envelope[LENGTH_AT..BODY_AT]);
    let length = u64::from_be_bytes(length);
    let rest = envelope.len() - BODY_AT;
    let Ok(length) = usize::try_from(length) else {
        return Err(malformed("ciphertext length"));
    };
    if length < GCM_TAG_LEN || length > rest.saturating_sub(2) {
        return Err(malformed("ciphertext length does not fit the envelope"));
    }
    let signed_end = BODY_AT + length;
    let sig_len = usize::from(u16::from_be_bytes([
        envelope[signed_end],
        envelope[signed_end + 1],
    ]));
    if envelope.len() != signed_end + 2 + sig_len {
        return Err(malformed("signature length does not fit the envelope"));
    }
    let mut nonce = [0u8; GCM_NONCE_LEN];
    nonce.copy_from_slice(&envelope[NONCE_AT..LENGTH_AT]);
    Ok(Parsed {
        signed: &envelope[..signed_end],
        sender: &envelope[SENDER_AT..RECIPIENT_AT],
        recipient: &envelope[RECIPIENT_AT..EPHEMERAL_AT],
        ephemeral: &envelope[EPHEMERAL_AT..NONCE_AT],
        nonce,
        ciphertext: &envelope[BODY_AT..signed_end],
        signature: &envelope[signed_end + 2..],
    })
}

/// The sender key an envelope names (unverified), so a receiver can look up whether it trusts it.
pub fn claimed_sender(envelope: &[u8]) -> Result<Sm2PublicKey, CryptoError> {
    Sm2PublicKey::from_sec1(parse(envelope)?.sender)
}

/// Verify and open an envelope sealed for `recipient` by `expected_sender`, bound to `context`.
pub fn open(
    recipient: &Sm2SecretKey,
    expected_sender: &Sm2PublicKey,
    envelope: &[u8],
    context: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let p = parse(envelope)?;
    if p.sender != expected_sender.to_sec1() {
        return Err(CryptoError::UnexpectedSender);
    }
    let signature = signature_from_der(p.signature)?;
    expected_sender.verify(CERT_DISTID, p.signed, &signature)?;
    if p.recipient != recipient.public_key().to_sec1() {
        return Err(CryptoError::WrongRecipient);
    }
    let ephemeral = Sm2PublicKey::from_sec1(p.ephemeral)?;
    let key = envelope_key(&agree(recipient, &ephemeral), p.ephemeral, p.recipient)?;
    let aad = [&envelope[..LENGTH_AT], context].concat();
    let (body, tag) = p.ciphertext.split_at(p.ciphertext.len() - GCM_TAG_LEN);
    let mut tag_arr = [0u8; GCM_TAG_LEN];
    tag_arr.copy_from_slice(tag);
    let mut plain = body.to_vec();
    key.decrypt_detached(&p.nonce, &aad, &mut plain, &tag_arr)?;
    Ok(plain)
}
