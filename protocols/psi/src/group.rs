//! The two groups ECDH-PSI runs in, behind one trait: hash an element to a point, multiply by a
//! secret scalar, and move points as 32 bytes.
//!
//! - **Ristretto255** (curve25519-dalek): hash-to-group with SHA-512 (RFC 9496 `hash_from_bytes`),
//!   32-byte compressed encodings; decoding refuses non-canonical encodings and the identity.
//! - **SM2 with SM3 try-and-increment** (the compliant suite, after the BFIA/SecretFlow
//!   interconnection spec): x = SM3(element ‖ counter) for counter = 0, 1, … until x³ + ax + b is a
//!   square; the point travels as its 32-byte x-coordinate (ECDH needs only x: x(k·P) = x(k·(−P))).
//!   Decoding refuses x ≥ p, x with no point on the curve, and the identity.

use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar as RistrettoScalar;
use curve25519_dalek::traits::Identity;
use sm2::elliptic_curve::group::Group as _;
use sm2::elliptic_curve::ops::Reduce;
use sm2::elliptic_curve::point::AffineCoordinates;
use sm2::elliptic_curve::sec1::FromSec1Point;
use sm3::Digest;

use crate::PsiError;

/// Length of an encoded point.
pub const POINT_LEN: usize = 32;

/// A prime-order group for ECDH-PSI.
pub trait PsiGroup: Send + Sync + 'static {
    /// A secret exponent.
    type Scalar: Send + Sync + Clone;
    /// A group element.
    type Point: Send + Sync;

    /// A scalar from 64 uniformly random bytes (reduced; never zero).
    fn scalar_from_random(bytes: &[u8; 64]) -> Self::Scalar;
    /// Hash a set element to a point.
    fn hash_to_point(element: &[u8]) -> Self::Point;
    /// `k · P`.
    fn mul(point: &Self::Point, k: &Self::Scalar) -> Self::Point;
    /// The 32-byte encoding.
    fn encode(point: &Self::Point) -> [u8; POINT_LEN];
    /// `encode(k · P)` for a run of points, the cheapest way the group allows (one point at a
    /// time unless a group can share work across the run).
    fn mul_and_encode(points: &[Self::Point], k: &Self::Scalar) -> Vec<[u8; POINT_LEN]> {
        points
            .iter()
            .map(|p| Self::encode(&Self::mul(p, k)))
            .collect()
    }
    /// Decode and validate a peer's point; invalid points are refused, never multiplied.
    fn decode(bytes: &[u8; POINT_LEN]) -> Result<Self::Point, PsiError>;
    /// [`PsiGroup::hash_to_point`] of a run of elements, the cheapest way the group allows.
    fn hash_to_points<E: AsRef<[u8]>>(elements: &[E]) -> Vec<Self::Point> {
        elements
            .iter()
            .map(|e| Self::hash_to_point(e.as_ref()))
            .collect()
    }
    /// [`PsiGroup::decode`] of a run of encodings (`POINT_LEN` bytes each), the cheapest way the
    /// group allows; the first invalid point fails the run.
    fn decode_run(encodings: &[u8]) -> Result<Vec<Self::Point>, PsiError> {
        point_encodings(encodings)?
            .map(|bytes| Self::decode(&bytes))
            .collect()
    }
}

/// The `POINT_LEN`-byte encodings of a run; a run that ends inside a point is refused.
fn point_encodings(
    encodings: &[u8],
) -> Result<impl Iterator<Item = [u8; POINT_LEN]> + '_, PsiError> {
    if !encodings.len().is_multiple_of(POINT_LEN) {
        return Err(PsiError::InvalidPoint("a truncated point"));
    }
    Ok(encodings.chunks_exact(POINT_LEN).map(|c| {
        let mut bytes = [0u8; POINT_LEN];
        bytes.copy_from_slice(c);
        bytes
    }))
}

/// Ristretto255.
#[derive(Debug, Clone, Copy)]
pub struct Ristretto255;

impl PsiGroup for Ristretto255 {
    type Scalar = RistrettoScalar;
    type Point = RistrettoPoint;

    fn scalar_from_random(bytes: &[u8; 64]) -> Self::Scalar {
        let k = RistrettoScalar::from_bytes_mod_order_wide(bytes);
        if k == RistrettoScalar::ZERO {
            RistrettoScalar::ONE
        } else {
            k
        }
    }

    fn hash_to_point(element: &[u8]) -> Self::Point {
        RistrettoPoint::hash_from_bytes::<sha2::Sha512>(element)
    }

    fn mul(point: &Self::Point, k: &Self::Scalar) -> Self::Point {
        point * k
    }

    fn encode(point: &Self::Point) -> [u8; POINT_LEN] {
        point.compress().to_bytes()
    }

    /// Multiplies by k/2, then encodes the doubles with one shared field inversion
    /// (`double_and_compress_batch`): the encodings of k·P without an inverse square root each
    /// (about 0.7 µs a point instead of 3.6 here).
    fn mul_and_encode(points: &[Self::Point], k: &Self::Scalar) -> Vec<[u8; POINT_LEN]> {
        let half_k = k * RistrettoScalar::from(2u8).invert();
        let halves: Vec<RistrettoPoint> = points.iter().map(|p| p * half_k).collect();
        RistrettoPoint::double_and_compress_batch(&halves)
            .into_iter()
            .map(|c| c.to_bytes())
            .collect()
    }

    fn decode(bytes: &[u8; POINT_LEN]) -> Result<Self::Point, PsiError> {
        checked_ristretto(CompressedRistretto(*bytes).decompress())
    }

    /// The two Elligator maps of every element's hash with their square roots taken four at a
    /// time (`from_uniform_bytes_batch`, our patch of curve25519-dalek): the same points as
    /// [`PsiGroup::hash_to_point`].
    fn hash_to_points<E: AsRef<[u8]>>(elements: &[E]) -> Vec<Self::Point> {
        let hashes: Vec<[u8; 64]> = elements
            .iter()
            .map(|e| sha2::Sha512::digest(e.as_ref()).into())
            .collect();
        RistrettoPoint::from_uniform_bytes_batch(&hashes)
    }

    /// Decodes with the inverse square roots taken four at a time (`decompress_batch`, our patch
    /// of curve25519-dalek); the same checks as [`PsiGroup::decode`].
    fn decode_run(encodings: &[u8]) -> Result<Vec<Self::Point>, PsiError> {
        let compressed: Vec<CompressedRistretto> = point_encodings(encodings)?
            .map(CompressedRistretto)
            .collect();
        CompressedRistretto::decompress_batch(&compressed)
            .into_iter()
            .map(checked_ristretto)
            .collect()
    }
}

/// A decoded Ristretto255 point, refused if the encoding was not canonical or is the identity.
fn checked_ristretto(point: Option<RistrettoPoint>) -> Result<RistrettoPoint, PsiError> {
    let point = point.ok_or(PsiError::InvalidPoint(
        "not a canonical Ristretto255 encoding",
    ))?;
    if point == RistrettoPoint::identity() {
        return Err(PsiError::InvalidPoint("the identity"));
    }
    Ok(point)
}

/// SM2 (GB/T 32918 curve) with SM3 try-and-increment hashing.
#[derive(Debug, Clone, Copy)]
pub struct Sm2Sm3;

fn sm2_point_from_x(x: &[u8; 32]) -> Option<sm2::ProjectivePoint> {
    // Compressed SEC1 with even y: validates x < p and that x³ + ax + b is a square.
    let mut sec1 = [0u8; 33];
    sec1[0] = 0x02;
    sec1[1..].copy_from_slice(x);
    let encoded = sm2::Sec1Point::from_bytes(sec1).ok()?;
    let affine: Option<sm2::AffinePoint> =
        sm2::AffinePoint::from_sec1_point(&encoded).into_option();
    affine.map(sm2::ProjectivePoint::from)
}

impl PsiGroup for Sm2Sm3 {
    type Scalar = sm2::Scalar;
    type Point = sm2::ProjectivePoint;

    fn scalar_from_random(bytes: &[u8; 64]) -> Self::Scalar {
        // Reduce 512 random bits modulo n (bias below 2⁻²⁵⁶).
        let hi =
            <sm2::Scalar as Reduce<sm2::U256>>::reduce(&sm2::U256::from_be_slice(&bytes[..32]));
        let lo =
            <sm2::Scalar as Reduce<sm2::U256>>::reduce(&sm2::U256::from_be_slice(&bytes[32..]));
        let two_64 = sm2::Scalar::from(u64::MAX) + sm2::Scalar::ONE;
        let two_128 = two_64 * two_64;
        let k = hi * two_128 * two_128 + lo;
        if bool::from(k.is_zero()) {
            sm2::Scalar::ONE
        } else {
            k
        }
    }

    fn hash_to_point(element: &[u8]) -> Self::Point {
        for counter in 0u32.. {
            let mut h = sm3::Sm3::new();
            h.update(element);
            h.update(counter.to_be_bytes());
            let x: [u8; 32] = h.finalize().into();
            if let Some(point) = sm2_point_from_x(&x) {
                return point;
            }
        }
        unreachable!("about half of all x have a point; 2³² failures cannot happen")
    }

    fn mul(point: &Self::Point, k: &Self::Scalar) -> Self::Point {
        point * k
    }

    fn encode(point: &Self::Point) -> [u8; POINT_LEN] {
        point.to_affine().x().into()
    }

    fn decode(bytes: &[u8; POINT_LEN]) -> Result<Self::Point, PsiError> {
        let point = sm2_point_from_x(bytes)
            .ok_or(PsiError::InvalidPoint("no SM2 point has this x-coordinate"))?;
        if bool::from(point.is_identity()) {
            return Err(PsiError::InvalidPoint("the identity"));
        }
        Ok(point)
    }
}
