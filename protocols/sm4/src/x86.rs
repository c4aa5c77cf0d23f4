//! The x86-64 vector paths. The only module of the crate with `unsafe`: loads and stores through
//! pointers derived from `&mut [[u8; 16]; N]` (always in bounds, unaligned instructions), and calls
//! of `#[target_feature]` functions, made only after `is_x86_feature_detected!` has confirmed the
//! features at run time (the check is repeated at every entry, so no caller can skip it).
//!
//! Layout: N blocks are loaded four registers at a time, each 128-bit lane holding one block; the
//! words are byte-swapped (SM4 words are big-endian) and transposed 4×4 inside every lane, so that
//! register j holds word j of every block. A round is then `X0 ^= L(S(X1 ^ X2 ^ X3 ^ rk))` on all
//! blocks at once, with S the byte-wise S-box:
//! - GFNI: `S(x) = M2 · inv(M1 · x ⊕ b1) ⊕ b2`, `gf2p8affineqb` then `gf2p8affineinvqb`, where
//!   inversion is in the AES field and M1 = T·A, M2 = A·T⁻¹ carry the isomorphism T from the SM4
//!   field (x⁸+x⁷+x⁶+x⁵+x⁴+x²+1) to the AES field (x⁸+x⁴+x³+x+1), mapping x to 0x23;
//! - AES-NI: `AESENCLAST` with a zero key is ShiftRows∘SubBytes, and SubBytes is the AES affine
//!   map after inversion; undoing ShiftRows with a shuffle first and wrapping the instruction in two
//!   affine maps computed by 4-bit `pshufb` lookups (16-entry tables in registers, indexed by
//!   nibbles: constant-time) gives the SM4 S-box.
//!
//! The matrices and tables were derived from the S-box's algebraic form and are checked against
//! the portable table for all 256 inputs by the tests.

use std::arch::x86_64::*;

use crate::Backend;

pub(crate) fn has_aesni() -> bool {
    is_x86_feature_detected!("aes") && is_x86_feature_detected!("ssse3")
}

fn has_gfni128() -> bool {
    is_x86_feature_detected!("gfni") && is_x86_feature_detected!("ssse3")
}

pub(crate) fn has_gfni256() -> bool {
    has_gfni128() && is_x86_feature_detected!("avx2")
}

pub(crate) fn has_gfni512() -> bool {
    has_gfni128() && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")
}

/// M1 = T·A and b1 = T·C (GFNI operand layout: row i of the matrix in byte 7 − i).
const PRE_MATRIX: i64 = 0x4c28_7db9_1a22_505d;
const PRE_CONST: i32 = 0x3e;
/// M2 = A·T⁻¹ and b2 = C.
const POST_MATRIX: i64 = 0xf3ab_34a9_74a6_b589_u64 as i64;
const POST_CONST: i32 = 0xd3;

/// The affine map M1·x ⊕ b1 as two nibble tables (constant folded into the low one).
const PRE_LO: [u8; 16] = [
    0x3e, 0xb2, 0x0e, 0x82, 0xbb, 0x37, 0x8b, 0x07, 0xa1, 0x2d, 0x91, 0x1d, 0x24, 0xa8, 0x14, 0x98,
];
const PRE_HI: [u8; 16] = [
    0x00, 0xdc, 0x2e, 0xf2, 0xc5, 0x19, 0xeb, 0x37, 0x08, 0xd4, 0x26, 0xfa, 0xcd, 0x11, 0xe3, 0x3f,
];
/// M2·Maes⁻¹·(y ⊕ 0x63) ⊕ b2 after AES SubBytes, as two nibble tables.
const POST_LO: [u8; 16] = [
    0x6c, 0xd4, 0xa6, 0x1e, 0x52, 0xea, 0x98, 0x20, 0x0b, 0xb3, 0xc1, 0x79, 0x35, 0x8d, 0xff, 0x47,
];
const POST_HI: [u8; 16] = [
    0x00, 0xe0, 0x50, 0xb0, 0x9d, 0x7d, 0xcd, 0x2d, 0xc0, 0x20, 0x90, 0x70, 0x5d, 0xbd, 0x0d, 0xed,
];
/// Inverse ShiftRows, so that AESENCLAST's ShiftRows puts every byte back.
const INV_SHIFT_ROWS: [u8; 16] = [0, 13, 10, 7, 4, 1, 14, 11, 8, 5, 2, 15, 12, 9, 6, 3];
/// Byte order reversal inside each 32-bit word.
const BSWAP32: [u8; 16] = [3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12];
/// Rotations of each 32-bit word left by 8, 16 and 24 bits, as byte shuffles.
const ROL8: [u8; 16] = [3, 0, 1, 2, 7, 4, 5, 6, 11, 8, 9, 10, 15, 12, 13, 14];
const ROL16: [u8; 16] = [2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13];
const ROL24: [u8; 16] = [1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12];

#[inline]
#[target_feature(enable = "sse2")]
fn xmm(bytes: &[u8; 16]) -> __m128i {
    // SAFETY: reads exactly the 16 bytes of `bytes`; loadu has no alignment requirement.
    unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) }
}

/// Encrypt `blocks` on `backend`; `false` if this CPU cannot run it (the caller falls back).
/// Each chunk goes to the narrowest kernel that holds it, so short tails do not pay for a full
/// set of wide registers.
pub(crate) fn encrypt_blocks(backend: Backend, rk: &[u32; 32], blocks: &mut [[u8; 16]]) -> bool {
    match backend {
        Backend::Gfni512 if has_gfni512() => {
            for chunk in blocks.chunks_mut(32) {
                match chunk.len() {
                    17.. => padded::<32>(chunk, |b| {
                        // SAFETY: GFNI, AVX-512F/BW and SSSE3 were detected by has_gfni512 above.
                        unsafe { encrypt_gfni512::<2>(rk, groups(b)) }
                    }),
                    5..=16 => padded::<16>(chunk, |b| {
                        // SAFETY: as above.
                        unsafe { encrypt_gfni512::<1>(rk, groups(b)) }
                    }),
                    _ => padded::<4>(chunk, |b| {
                        // SAFETY: GFNI and SSSE3 are part of what has_gfni512 detected.
                        unsafe { encrypt_gfni128::<1>(rk, groups(b)) }
                    }),
                }
            }
            true
        }
        Backend::Gfni256 if has_gfni256() => {
            for chunk in blocks.chunks_mut(16) {
                match chunk.len() {
                    9.. => padded::<16>(chunk, |b| {
                        // SAFETY: GFNI, AVX2 and SSSE3 were detected by has_gfni256 above.
                        unsafe { encrypt_gfni256::<2>(rk, groups(b)) }
                    }),
                    5..=8 => padded::<8>(chunk, |b| {
                        // SAFETY: as above.
                        unsafe { encrypt_gfni256::<1>(rk, groups(b)) }
                    }),
                    _ => padded::<4>(chunk, |b| {
                        // SAFETY: GFNI and SSSE3 are part of what has_gfni256 detected.
                        unsafe { encrypt_gfni128::<1>(rk, groups(b)) }
                    }),
                }
            }
            true
        }
        Backend::AesNi if has_aesni() => {
            for chunk in blocks.chunks_mut(16) {
                match chunk.len() {
                    9.. => padded::<16>(chunk, |b| {
                        // SAFETY: AES-NI and SSSE3 were detected by has_aesni above.
                        unsafe { encrypt_aesni::<4>(rk, groups(b)) }
                    }),
                    5..=8 => padded::<8>(chunk, |b| {
                        // SAFETY: as above.
                        unsafe { encrypt_aesni::<2>(rk, groups(b)) }
                    }),
                    _ => padded::<4>(chunk, |b| {
                        // SAFETY: as above.
                        unsafe { encrypt_aesni::<1>(rk, groups(b)) }
                    }),
                }
            }
            true
        }
        _ => false,
    }
}

/// View N blocks as G groups of W blocks; N = G·W is checked at compile time.
fn groups<const N: usize, const W: usize, const G: usize>(
    blocks: &mut [[u8; 16]; N],
) -> &mut [[[u8; 16]; W]; G] {
    const { assert!(N == W * G) };
    let (groups, _) = blocks.as_chunks_mut::<W>();
    groups
        .try_into()
        .expect("N = G × W, asserted at compile time")
}

/// Run `kernel` on `chunk` as an array of exactly N blocks, zero-padding a short tail.
fn padded<const N: usize>(chunk: &mut [[u8; 16]], kernel: impl FnOnce(&mut [[u8; 16]; N])) {
    match <&mut [[u8; 16]; N]>::try_from(&mut *chunk) {
        Ok(full) => kernel(full),
        Err(_) => {
            let mut buf = [[0u8; 16]; N];
            buf[..chunk.len()].copy_from_slice(chunk);
            kernel(&mut buf);
            let n = chunk.len();
            chunk.copy_from_slice(&buf[..n]);
        }
    }
}

/// τ on one word through a constant-time S-box (for the key schedule), if the CPU has one.
pub(crate) fn sbox_word(word: u32) -> Option<u32> {
    if has_gfni128() {
        // SAFETY: GFNI and SSSE3 were detected just above.
        Some(unsafe { sbox_word_gfni(word) })
    } else if has_aesni() {
        // SAFETY: AES-NI and SSSE3 were detected just above.
        Some(unsafe { sbox_word_aesni(word) })
    } else {
        None
    }
}

#[target_feature(enable = "sse2,ssse3,gfni")]
fn sbox_word_gfni(word: u32) -> u32 {
    _mm_cvtsi128_si32(sbox_gfni128(_mm_cvtsi32_si128(word as i32))) as u32
}

#[target_feature(enable = "sse2,ssse3,aes")]
fn sbox_word_aesni(word: u32) -> u32 {
    _mm_cvtsi128_si32(sbox_aesni(_mm_cvtsi32_si128(word as i32))) as u32
}

#[inline]
#[target_feature(enable = "sse2,ssse3,gfni")]
fn sbox_gfni128(x: __m128i) -> __m128i {
    let y = _mm_gf2p8affine_epi64_epi8::<PRE_CONST>(x, _mm_set1_epi64x(PRE_MATRIX));
    _mm_gf2p8affineinv_epi64_epi8::<POST_CONST>(y, _mm_set1_epi64x(POST_MATRIX))
}

#[inline]
#[target_feature(enable = "sse2,ssse3,aes")]
fn sbox_aesni(x: __m128i) -> __m128i {
    let nibble = _mm_set1_epi8(0x0f);
    let affine = |v: __m128i, lo: &[u8; 16], hi: &[u8; 16]| {
        let low = _mm_and_si128(v, nibble);
        let high = _mm_and_si128(_mm_srli_epi16::<4>(v), nibble);
        _mm_xor_si128(
            _mm_shuffle_epi8(xmm(lo), low),
            _mm_shuffle_epi8(xmm(hi), high),
        )
    };
    let y = _mm_shuffle_epi8(affine(x, &PRE_LO, &PRE_HI), xmm(&INV_SHIFT_ROWS));
    let y = _mm_aesenclast_si128(y, _mm_setzero_si128());
    affine(y, &POST_LO, &POST_HI)
}

/// The 4×4 transpose of 32-bit words inside every 128-bit lane (its own inverse).
macro_rules! transpose {
    ($r:expr, $lo32:ident, $hi32:ident, $lo64:ident, $hi64:ident) => {{
        let t0 = $lo32($r[0], $r[1]);
        let t1 = $lo32($r[2], $r[3]);
        let t2 = $hi32($r[0], $r[1]);
        let t3 = $hi32($r[2], $r[3]);
        [$lo64(t0, t1), $hi64(t0, t1), $lo64(t2, t3), $hi64(t2, t3)]
    }};
}

/// The 128-bit kernel: `G` interleaved groups of 4 blocks, for an S-box function and the
/// features it needs.
macro_rules! kernel128 {
    ($name:ident, $features:literal, $sbox:ident) => {
        #[target_feature(enable = $features)]
        fn $name<const G: usize>(rk: &[u32; 32], groups: &mut [[[u8; 16]; 4]; G]) {
            let bswap = xmm(&BSWAP32);
            let (rol8, rol16, rol24) = (xmm(&ROL8), xmm(&ROL16), xmm(&ROL24));
            let t = |v: __m128i| {
                let s = $sbox(v);
                let u = _mm_xor_si128(
                    _mm_xor_si128(s, _mm_shuffle_epi8(s, rol8)),
                    _mm_shuffle_epi8(s, rol16),
                );
                let rol2 = _mm_or_si128(_mm_slli_epi32::<2>(u), _mm_srli_epi32::<30>(u));
                _mm_xor_si128(_mm_xor_si128(s, _mm_shuffle_epi8(s, rol24)), rol2)
            };
            let ptr = groups.as_mut_ptr().cast::<__m128i>();
            let mut x = [[_mm_setzero_si128(); 4]; G];
            for (g, state) in x.iter_mut().enumerate() {
                // SAFETY: `groups` is G × 64 contiguous bytes; reads the 4 × 16 bytes of group g, unaligned.
                let r = unsafe {
                    [0, 1, 2, 3]
                        .map(|i| _mm_shuffle_epi8(_mm_loadu_si128(ptr.add(4 * g + i)), bswap))
                };
                *state = transpose!(
                    r,
                    _mm_unpacklo_epi32,
                    _mm_unpackhi_epi32,
                    _mm_unpacklo_epi64,
                    _mm_unpackhi_epi64
                );
            }
            for (i, &round_key) in rk.iter().enumerate() {
                let key = _mm_set1_epi32(round_key as i32);
                let (a, b, c, d) = (i % 4, (i + 1) % 4, (i + 2) % 4, (i + 3) % 4);
                for state in x.iter_mut() {
                    let input = _mm_xor_si128(
                        _mm_xor_si128(state[b], state[c]),
                        _mm_xor_si128(state[d], key),
                    );
                    state[a] = _mm_xor_si128(state[a], t(input));
                }
            }
            for (g, state) in x.iter().enumerate() {
                let out = transpose!(
                    [state[3], state[2], state[1], state[0]],
                    _mm_unpacklo_epi32,
                    _mm_unpackhi_epi32,
                    _mm_unpacklo_epi64,
                    _mm_unpackhi_epi64
                );
                for (i, v) in out.into_iter().enumerate() {
                    // SAFETY: writes 16 bytes at offset 64·g + 16·i, inside `groups`, unaligned store.
                    unsafe { _mm_storeu_si128(ptr.add(4 * g + i), _mm_shuffle_epi8(v, bswap)) };
                }
            }
        }
    };
}

kernel128!(encrypt_aesni, "sse2,ssse3,aes", sbox_aesni);
kernel128!(encrypt_gfni128, "sse2,ssse3,gfni", sbox_gfni128);

/// `G` interleaved groups of 8 blocks on 256-bit vectors.
#[target_feature(enable = "avx2,gfni")]
fn encrypt_gfni256<const G: usize>(rk: &[u32; 32], groups: &mut [[[u8; 16]; 8]; G]) {
    let lanes = |b: &[u8; 16]| _mm256_broadcastsi128_si256(xmm(b));
    let bswap = lanes(&BSWAP32);
    let (rol8, rol16, rol24) = (lanes(&ROL8), lanes(&ROL16), lanes(&ROL24));
    let (pre, post) = (
        _mm256_set1_epi64x(PRE_MATRIX),
        _mm256_set1_epi64x(POST_MATRIX),
    );
    let t = |v: __m256i| {
        let s = _mm256_gf2p8affineinv_epi64_epi8::<POST_CONST>(
            _mm256_gf2p8affine_epi64_epi8::<PRE_CONST>(v, pre),
            post,
        );
        let u = _mm256_xor_si256(
            _mm256_xor_si256(s, _mm256_shuffle_epi8(s, rol8)),
            _mm256_shuffle_epi8(s, rol16),
        );
        let rol2 = _mm256_or_si256(_mm256_slli_epi32::<2>(u), _mm256_srli_epi32::<30>(u));
        _mm256_xor_si256(_mm256_xor_si256(s, _mm256_shuffle_epi8(s, rol24)), rol2)
    };
    let ptr = groups.as_mut_ptr().cast::<__m256i>();
    let mut x = [[_mm256_setzero_si256(); 4]; G];
    for (g, state) in x.iter_mut().enumerate() {
        // SAFETY: `groups` is G × 128 contiguous bytes; reads the 4 × 32 bytes of group g, unaligned.
        let r = unsafe {
            [0, 1, 2, 3].map(|i| _mm256_shuffle_epi8(_mm256_loadu_si256(ptr.add(4 * g + i)), bswap))
        };
        *state = transpose!(
            r,
            _mm256_unpacklo_epi32,
            _mm256_unpackhi_epi32,
            _mm256_unpacklo_epi64,
            _mm256_unpackhi_epi64
        );
    }
    for (i, &round_key) in rk.iter().enumerate() {
        let key = _mm256_set1_epi32(round_key as i32);
        let (a, b, c, d) = (i % 4, (i + 1) % 4, (i + 2) % 4, (i + 3) % 4);
        for state in x.iter_mut() {
            let input = _mm256_xor_si256(
                _mm256_xor_si256(state[b], state[c]),
                _mm256_xor_si256(state[d], key),
            );
            state[a] = _mm256_xor_si256(state[a], t(input));
        }
    }
    for (g, state) in x.iter().enumerate() {
        let out = transpose!(
            [state[3], state[2], state[1], state[0]],
            _mm256_unpacklo_epi32,
            _mm256_unpackhi_epi32,
            _mm256_unpacklo_epi64,
            _mm256_unpackhi_epi64
        );
        for (i, v) in out.into_iter().enumerate() {
            // SAFETY: writes 32 bytes at offset 128·g + 32·i, inside `groups`, unaligned store.
            unsafe { _mm256_storeu_si256(ptr.add(4 * g + i), _mm256_shuffle_epi8(v, bswap)) };
        }
    }
}

/// `G` independent groups of 16 blocks, interleaved round by round: one group alone leaves the
/// core waiting on each round's latency.
#[target_feature(enable = "avx512f,avx512bw,gfni")]
fn encrypt_gfni512<const G: usize>(rk: &[u32; 32], groups: &mut [[[u8; 16]; 16]; G]) {
    let bswap = _mm512_broadcast_i32x4(xmm(&BSWAP32));
    let (pre, post) = (
        _mm512_set1_epi64(PRE_MATRIX),
        _mm512_set1_epi64(POST_MATRIX),
    );
    let t = |v: __m512i| {
        let s = _mm512_gf2p8affineinv_epi64_epi8::<POST_CONST>(
            _mm512_gf2p8affine_epi64_epi8::<PRE_CONST>(v, pre),
            post,
        );
        // L(s) = s ⊕ rol2 ⊕ rol10 ⊕ rol18 ⊕ rol24, two three-way XORs (ternary logic 0x96).
        let a = _mm512_ternarylogic_epi32::<0x96>(
            s,
            _mm512_rol_epi32::<2>(s),
            _mm512_rol_epi32::<10>(s),
        );
        _mm512_ternarylogic_epi32::<0x96>(a, _mm512_rol_epi32::<18>(s), _mm512_rol_epi32::<24>(s))
    };
    let ptr = groups.as_mut_ptr().cast::<__m512i>();
    let mut x = [[_mm512_setzero_si512(); 4]; G];
    for (g, state) in x.iter_mut().enumerate() {
        // SAFETY: `groups` is G × 256 contiguous bytes; reads the 4 × 64 bytes of group g, unaligned.
        let r = unsafe {
            [0, 1, 2, 3].map(|i| _mm512_shuffle_epi8(_mm512_loadu_si512(ptr.add(4 * g + i)), bswap))
        };
        *state = transpose!(
            r,
            _mm512_unpacklo_epi32,
            _mm512_unpackhi_epi32,
            _mm512_unpacklo_epi64,
            _mm512_unpackhi_epi64
        );
    }
    for (i, &round_key) in rk.iter().enumerate() {
        let key = _mm512_set1_epi32(round_key as i32);
        let (a, b, c, d) = (i % 4, (i + 1) % 4, (i + 2) % 4, (i + 3) % 4);
        for state in x.iter_mut() {
            let input = _mm512_ternarylogic_epi32::<0x96>(
                state[b],
                state[c],
                _mm512_xor_si512(state[d], key),
            );
            state[a] = _mm512_xor_si512(state[a], t(input));
        }
    }
    for (g, state) in x.iter().enumerate() {
        let out = transpose!(
            [state[3], state[2], state[1], state[0]],
            _mm512_unpacklo_epi32,
            _mm512_unpackhi_epi32,
            _mm512_unpacklo_epi64,
            _mm512_unpackhi_epi64
        );
        for (i, v) in out.into_iter().enumerate() {
            // SAFETY: writes 64 bytes at offset 256·g + 64·i, inside `groups`, unaligned store.
            unsafe { _mm512_storeu_si512(ptr.add(4 * g + i), _mm512_shuffle_epi8(v, bswap)) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::portable::SBOX;

    /// All 256 inputs through each S-box implementation this CPU has, against the table.
    #[test]
    fn vector_sboxes_match_the_table_for_every_byte() {
        for start in (0..256).step_by(16) {
            let input: [u8; 16] = std::array::from_fn(|i| (start + i) as u8);
            let expected: [u8; 16] = std::array::from_fn(|i| SBOX[start + i]);
            let mut out = [0u8; 16];
            if has_aesni() {
                // SAFETY: AES-NI and SSSE3 were detected just above; the store writes the 16 bytes of `out`.
                unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), sbox_aesni(xmm(&input))) };
                assert_eq!(out, expected, "AES-NI S-box");
            }
            if has_gfni128() {
                // SAFETY: GFNI and SSSE3 were detected just above; the store writes the 16 bytes of `out`.
                unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), sbox_gfni128(xmm(&input))) };
                assert_eq!(out, expected, "GFNI S-box");
            }
        }
    }
}
