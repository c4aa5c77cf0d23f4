//! SM2 (GB/T 32918): signatures with an explicit distinguishing id, public-key validation, and
//! public-key decryption in the C1C3C2 layout.
//!
//! The distinguishing id is part of every signature (it enters `Z_A`), and RFC 8998 uses two:
//! [`CERT_DISTID`] for certificate signatures and [`TLS13_DISTID`] for the TLS 1.3
//! CertificateVerify. A signature made under one never verifies under the other, so callers name
//! the id every time. Signing is deterministic (RFC 6979 nonces): no random number generator is
//! needed, as befits a sans-IO crate.

use sm2::dsa::signature::{Signer, Verifier};
use sm2::elliptic_curve::sec1::ToSec1Point;

use crate::CryptoError;

/// The distinguishing id of certificate signatures (GB/T 32918, RFC 8998 §3.2.1).
pub const CERT_DISTID: &str = "1234567812345678";
/// The distinguishing id of the TLS 1.3 CertificateVerify signature (RFC 8998 §3.2.1).
pub const TLS13_DISTID: &str = "TLSv1.3+GM+Cipher+Suite";
/// Length of an SM2 signature as `r || s`.
pub const SIGNATURE_LEN: usize = 64;
/// Length of an uncompressed SEC1 SM2 public key.
pub const PUBLIC_KEY_LEN: usize = 65;

/// An SM2 private key.
#[derive(Clone)]
pub struct Sm2SecretKey(sm2::SecretKey);

impl std::fmt::Debug for Sm2SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sm2SecretKey(..)")
    }
}

impl Sm2SecretKey {
    /// A key from its 32-byte big-endian scalar (refused if zero or not below the group order).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        sm2::SecretKey::from_slice(bytes)
            .map(Self)
            .map_err(|_| CryptoError::InvalidKey)
    }

    /// A fresh key from random bytes drawn by `fill` (redrawn in the rare case the bytes are not a
    /// valid scalar). The caller supplies the randomness, so this crate stays free of a global RNG.
    pub fn generate(fill: &mut dyn FnMut(&mut [u8; 32])) -> Self {
        loop {
            let mut bytes = [0u8; 32];
            fill(&mut bytes);
            if let Ok(key) = Self::from_bytes(&bytes) {
                return key;
            }
        }
    }

    /// The 32-byte big-endian scalar (for PKCS#8 encoding; handle with care).
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes().into()
    }

    /// Elliptic-curve Diffie-Hellman with `peer`: the x-coordinate of the shared point, as the
    /// TLS 1.3 curveSM2 key exchange (RFC 8998 §3.4) and the envelopes use it.
    pub fn diffie_hellman(&self, peer: &Sm2PublicKey) -> [u8; 32] {
        use sm2::elliptic_curve::point::AffineCoordinates;
        let point = (peer.0.to_projective() * *self.0.to_nonzero_scalar()).to_affine();
        point.x().into()
    }

    /// The public key, as an uncompressed SEC1 point.
    pub fn public_key(&self) -> Sm2PublicKey {
        Sm2PublicKey(self.0.public_key())
    }

    /// Sign `message` under the distinguishing id `distid`; returns `r || s`.
    pub fn sign(&self, distid: &str, message: &[u8]) -> Result<[u8; SIGNATURE_LEN], CryptoError> {
        let key =
            sm2::dsa::SigningKey::new(distid, &self.0).map_err(|_| CryptoError::InvalidKey)?;
        let signature: sm2::dsa::Signature =
            key.try_sign(message).map_err(|_| CryptoError::Signature)?;
        let mut out = [0u8; SIGNATURE_LEN];
        out.copy_from_slice(&signature.to_bytes());
        Ok(out)
    }

    /// Decrypt an SM2 ciphertext in the C1C3C2 layout (GB/T 32918.4, the current standard order).
    pub fn decrypt_c1c3c2(&self, ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let key = sm2::pke::DecryptingKey::new_with_mode(
            self.0.to_nonzero_scalar(),
            sm2::pke::Mode::C1C3C2,
        );
        key.decrypt(ciphertext).map_err(|_| CryptoError::Decryption)
    }
}

/// An SM2 public key: a point checked to be on the curve and not the identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sm2PublicKey(sm2::PublicKey);

impl Sm2PublicKey {
    /// A key from a SEC1 encoding; points off the curve, the identity and wrong lengths are refused.
    pub fn from_sec1(bytes: &[u8]) -> Result<Self, CryptoError> {
        sm2::PublicKey::from_sec1_bytes(bytes)
            .map(Self)
            .map_err(|_| CryptoError::InvalidKey)
    }

    /// The uncompressed SEC1 encoding (`04 || x || y`).
    pub fn to_sec1(&self) -> [u8; PUBLIC_KEY_LEN] {
        let point = self.0.as_affine().to_sec1_point(false);
        let mut out = [0u8; PUBLIC_KEY_LEN];
        out.copy_from_slice(point.as_bytes());
        out
    }

    /// Verify `signature` (`r || s`) over `message` under the distinguishing id `distid`.
    pub fn verify(
        &self,
        distid: &str,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), CryptoError> {
        let key =
            sm2::dsa::VerifyingKey::new(distid, self.0).map_err(|_| CryptoError::InvalidKey)?;
        let signature =
            sm2::dsa::Signature::try_from(signature).map_err(|_| CryptoError::Signature)?;
        key.verify(message, &signature)
            .map_err(|_| CryptoError::Signature)
    }
}

/// Encode an `r || s` signature as DER (`SEQUENCE { INTEGER r, INTEGER s }`), the form X.509 and
/// TLS carry.
pub fn signature_to_der(signature: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let sig = sm2::dsa::Signature::try_from(signature).map_err(|_| CryptoError::Signature)?;
    Ok(sig.to_der().to_bytes().into_vec())
}

/// Decode a DER signature into `r || s`; malformed encodings are refused.
pub fn signature_from_der(der: &[u8]) -> Result<[u8; SIGNATURE_LEN], CryptoError> {
    let sig = sm2::dsa::Signature::from_der(der).map_err(|_| CryptoError::Signature)?;
    let mut out = [0u8; SIGNATURE_LEN];
    out.copy_from_slice(&sig.to_bytes());
    Ok(out)
}

/// The DER prefix of an SM2 SubjectPublicKeyInfo: id-ecPublicKey with the curve
/// 1.2.156.10197.1.301, then a 66-byte BIT STRING holding the uncompressed point.
const SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x81, 0x1c, 0xcf, 0x55, 0x01, 0x82, 0x2d, 0x03, 0x42, 0x00,
];

impl Sm2PublicKey {
    /// The DER SubjectPublicKeyInfo of this key.
    pub fn to_spki_der(&self) -> Vec<u8> {
        let mut out = SPKI_PREFIX.to_vec();
        out.extend_from_slice(&self.to_sec1());
        out
    }

    /// A key from a DER SubjectPublicKeyInfo naming the SM2 curve; any other algorithm or curve is
    /// refused.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, CryptoError> {
        match der.strip_prefix(&SPKI_PREFIX[..]) {
            Some(point) if point.len() == PUBLIC_KEY_LEN => Self::from_sec1(point),
            _ => Err(CryptoError::InvalidKey),
        }
    }
}
