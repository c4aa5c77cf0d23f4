//! ShangMi (商用密码, GM/T) primitives for xinyong: SM3 hashing, HMAC-SM3 keyed hashing and
//! key derivation, SM4-GCM/CCM authenticated encryption, SM2 signatures and decryption
//! ([`sm2`]), and signed, encrypted payload envelopes ([`envelope`]).
//!
//! The crate is sans-IO: nonces and keys are passed in by the caller, nothing here reads a clock,
//! a socket or a global random number generator. The node uses it to encrypt personal data at rest
//! (SM4-GCM), to build blind indexes and dedup keys (HMAC-SM3) and to hash-chain its data log (SM3).
//!
//! The SM4 block cipher is reached through [`Sm4Aead`] ([`Sm4Gcm`], [`Sm4Ccm`]), whose cipher is
//! a type parameter ([`Sm4Block`]: `xy-sm4`, constant-time and accelerated where the CPU allows;
//! [`TableSm4Gcm`] keeps RustCrypto's table SM4 as the measured baseline).

pub mod envelope;
pub mod sm2;

use aes_gcm::aead::AeadInOut;
use aes_gcm::{AesGcm, KeyInit};
use hmac::{Hmac, Mac};
use sm3::{Digest, Sm3};

/// Length of an SM3 digest in bytes.
pub const SM3_LEN: usize = 32;
/// Length of an SM4 key in bytes.
pub const SM4_KEY_LEN: usize = 16;
/// Length of an SM4-GCM nonce in bytes (RFC 8998 uses the 96-bit GCM nonce).
pub const GCM_NONCE_LEN: usize = 12;
/// Length of an SM4-GCM authentication tag in bytes.
pub const GCM_TAG_LEN: usize = 16;

/// Errors of the ShangMi primitives.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// A key had the wrong length for the algorithm.
    #[error("key must be {expected} bytes, got {actual}")]
    KeyLength {
        /// The length the algorithm needs.
        expected: usize,
        /// The length that was given.
        actual: usize,
    },
    /// A sealed message was shorter than nonce and tag together.
    #[error("sealed message is truncated")]
    Truncated,
    /// The authentication tag did not verify: wrong key, wrong associated data or a modified message.
    #[error("SM4-GCM authentication failed")]
    Authentication,
    /// An SM2 key is not valid: a scalar out of range, or a point off the curve or at infinity.
    #[error("invalid SM2 key")]
    InvalidKey,
    /// An SM2 signature is malformed or does not verify.
    #[error("SM2 signature invalid")]
    Signature,
    /// An SM2 ciphertext is malformed or does not decrypt.
    #[error("SM2 decryption failed")]
    Decryption,
    /// An envelope is not well formed; the text names the part.
    #[error("malformed envelope: {0}")]
    Malformed(&'static str),
    /// An envelope was signed by another sender than the one expected.
    #[error("envelope from an unexpected sender")]
    UnexpectedSender,
    /// An envelope is addressed to another recipient.
    #[error("envelope addressed to another recipient")]
    WrongRecipient,
}

/// SM3 digest of `data` (GB/T 32905).
pub fn sm3(data: &[u8]) -> [u8; SM3_LEN] {
    Sm3::digest(data).into()
}

/// An incremental SM3 hasher, for inputs that arrive in pieces.
#[derive(Clone, Default)]
pub struct Sm3Hasher(Sm3);

impl Sm3Hasher {
    /// A hasher with no input yet.
    pub fn new() -> Self {
        Self::default()
    }
    /// Feed more input.
    pub fn update(&mut self, data: &[u8]) {
        Digest::update(&mut self.0, data);
    }
    /// The digest of everything fed so far.
    pub fn finish(self) -> [u8; SM3_LEN] {
        self.0.finalize().into()
    }
}

/// A keyed HMAC-SM3 (GB/T 15852.2 with SM3), prepared once and used for many messages.
///
/// Cloning the prepared state is cheaper than re-keying, so [`HmacSm3::mac_parts`] starts from a
/// copy of the keyed state each time.
#[derive(Clone)]
pub struct HmacSm3(Hmac<Sm3>);

impl HmacSm3 {
    /// Key an HMAC-SM3. Any key length is accepted (HMAC hashes long keys).
    pub fn new(key: &[u8]) -> Self {
        // HMAC accepts keys of every length, so this cannot fail.
        match <Hmac<Sm3> as KeyInit>::new_from_slice(key) {
            Ok(mac) => Self(mac),
            Err(_) => unreachable!("HMAC takes keys of any length"),
        }
    }

    /// MAC over the concatenation of `parts`, each preceded by its 4-byte big-endian length so that
    /// different splittings of the same bytes never collide.
    pub fn mac_parts(&self, parts: &[&[u8]]) -> [u8; SM3_LEN] {
        let mut mac = self.0.clone();
        for part in parts {
            let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
            mac.update(&len.to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// MAC over `data` exactly as given (plain HMAC-SM3).
    pub fn mac(&self, data: &[u8]) -> [u8; SM3_LEN] {
        let mut mac = self.0.clone();
        mac.update(data);
        mac.finalize().into_bytes().into()
    }
}

/// Derive a 32-byte subkey for `label` from `master` with HMAC-SM3 (a one-block HKDF-expand).
pub fn derive_key(master: &[u8], label: &str) -> [u8; SM3_LEN] {
    let mut input = Vec::with_capacity(label.len() + 1);
    input.extend_from_slice(label.as_bytes());
    input.push(1);
    HmacSm3::new(master).mac(&input)
}

use aes_gcm::aead::AeadCore;
use aes_gcm::aead::consts::{U12, U16};

/// An SM4-based AEAD with RFC 8998's 96-bit nonces and 128-bit tags: [`Sm4Gcm`] or [`Sm4Ccm`].
#[derive(Clone)]
pub struct Sm4Aead<A>(A);

/// The SM4 block cipher behind every SM4 mode of this crate: `xy-sm4`, constant-time GFNI or
/// AES-NI paths chosen at run time (the portable table where the CPU has neither). Any block
/// cipher with the RustCrypto `cipher` traits fits [`Sm4Aead`]'s parameter.
pub type Sm4Block = xy_sm4::Sm4;
/// SM4 in Galois/Counter Mode (the AEAD of TLS_SM4_GCM_SM3, RFC 8998): `xy-sm4`'s GCM, CTR in
/// 32-block batches on the accelerated SM4 and GHASH with CLMUL.
pub type Sm4Gcm = Sm4Aead<xy_sm4::Sm4Gcm>;
/// SM4 in Counter with CBC-MAC mode, 16-byte tag (the AEAD of TLS_SM4_CCM_SM3, RFC 8998).
pub type Sm4Ccm = Sm4Aead<ccm::Ccm<Sm4Block, U16, U12>>;
/// SM4-GCM on RustCrypto's table SM4 with `aes-gcm`'s generic GCM: the baseline the accelerated
/// paths are measured and tested against.
pub type TableSm4Gcm = Sm4Aead<AesGcm<sm4::Sm4, U12>>;

impl<A> Sm4Aead<A>
where
    A: AeadInOut + KeyInit + AeadCore<NonceSize = U12, TagSize = U16>,
{
    /// An instance for a 16-byte key.
    pub fn new(key: &[u8]) -> Result<Self, CryptoError> {
        A::new_from_slice(key)
            .map(Self)
            .map_err(|_| CryptoError::KeyLength {
                expected: SM4_KEY_LEN,
                actual: key.len(),
            })
    }

    /// An instance around an already keyed AEAD (e.g. SM4-GCM pinned to one SM4 path).
    pub fn from_aead(aead: A) -> Self {
        Self(aead)
    }

    /// Encrypt `buffer` in place under `nonce` and return the tag. The nonce must never repeat
    /// under one key.
    pub fn encrypt_detached(
        &self,
        nonce: &[u8; GCM_NONCE_LEN],
        aad: &[u8],
        buffer: &mut [u8],
    ) -> [u8; GCM_TAG_LEN] {
        match self
            .0
            .encrypt_inout_detached(nonce.into(), aad, buffer.into())
        {
            Ok(tag) => tag.into(),
            // GCM refuses only messages over 2^36 bytes, CCM with a 12-byte nonce over 2^24 bytes
            // of data per message; record layers and envelopes stay far below.
            Err(_) => unreachable!("SM4 AEAD message beyond the mode's length limit"),
        }
    }

    /// Decrypt `buffer` in place and verify `tag`; on failure the buffer content is unspecified.
    pub fn decrypt_detached(
        &self,
        nonce: &[u8; GCM_NONCE_LEN],
        aad: &[u8],
        buffer: &mut [u8],
        tag: &[u8; GCM_TAG_LEN],
    ) -> Result<(), CryptoError> {
        self.0
            .decrypt_inout_detached(nonce.into(), aad, buffer.into(), tag.into())
            .map_err(|_| CryptoError::Authentication)
    }

    /// Seal `plaintext`: returns `nonce || ciphertext || tag`.
    pub fn seal(&self, nonce: &[u8; GCM_NONCE_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(GCM_NONCE_LEN + plaintext.len() + GCM_TAG_LEN);
        out.extend_from_slice(nonce);
        out.extend_from_slice(plaintext);
        let tag = self.encrypt_detached(nonce, aad, &mut out[GCM_NONCE_LEN..]);
        out.extend_from_slice(&tag);
        out
    }

    /// Open a message made by [`Sm4Aead::seal`] with the same `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < GCM_NONCE_LEN + GCM_TAG_LEN {
            return Err(CryptoError::Truncated);
        }
        let (nonce, rest) = sealed.split_at(GCM_NONCE_LEN);
        let (body, tag) = rest.split_at(rest.len() - GCM_TAG_LEN);
        let mut nonce_arr = [0u8; GCM_NONCE_LEN];
        nonce_arr.copy_from_slice(nonce);
        let mut tag_arr = [0u8; GCM_TAG_LEN];
        tag_arr.copy_from_slice(tag);
        let mut plain = body.to_vec();
        self.decrypt_detached(&nonce_arr, aad, &mut plain, &tag_arr)?;
        Ok(plain)
    }
}

/// Encrypt a single 16-byte block with SM4 (GB/T 32907), for known-answer checks and key wrapping.
pub fn sm4_encrypt_block(key: &[u8; SM4_KEY_LEN], block: &mut [u8; 16]) {
    Sm4Block::new_detected(key).encrypt_block(block);
}
