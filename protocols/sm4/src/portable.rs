//! The portable path: table S-box, one block at a time. Not constant-time (the table index is
//! secret); used only on CPUs without AES-NI, and as the reference of the vector paths.
//!
//! The table is not copied from the standard but computed at compile time from the S-box's
//! algebraic form S(x) = A·(A·x ⊕ C)⁻¹ ⊕ C, with inversion in GF(2⁸) modulo
//! x⁸+x⁷+x⁶+x⁵+x⁴+x²+1, A the circulant matrix whose first row is 0xA7 and C = 0xD3; the tests
//! check it against the standard's vectors and RustCrypto's table.

/// The SM4 field polynomial x⁸+x⁷+x⁶+x⁵+x⁴+x²+1.
const FIELD: u16 = 0x1f5;
/// Rows of A (output bit i), and the constant C.
pub(crate) const AFFINE_ROWS: [u8; 8] = [0xa7, 0x4f, 0x9e, 0x3d, 0x7a, 0xf4, 0xe9, 0xd3];
pub(crate) const AFFINE_CONST: u8 = 0xd3;

const fn gf_mul(mut a: u16, mut b: u16) -> u16 {
    let mut r = 0;
    while b != 0 {
        if b & 1 != 0 {
            r ^= a;
        }
        b >>= 1;
        a <<= 1;
        if a & 0x100 != 0 {
            a ^= FIELD;
        }
    }
    r
}

const fn gf_inv(x: u8) -> u8 {
    // x^254 = x^-1 (and 0 ↦ 0).
    let mut result: u16 = 1;
    let mut base = x as u16;
    let mut e = 254u32;
    while e > 0 {
        if e & 1 != 0 {
            result = gf_mul(result, base);
        }
        base = gf_mul(base, base);
        e >>= 1;
    }
    result as u8
}

const fn affine(x: u8) -> u8 {
    let mut out = 0u8;
    let mut i = 0;
    while i < 8 {
        if (AFFINE_ROWS[i] & x).count_ones() & 1 == 1 {
            out |= 1 << i;
        }
        i += 1;
    }
    out ^ AFFINE_CONST
}

const fn build_sbox() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut x = 0;
    while x < 256 {
        table[x] = affine(gf_inv(affine(x as u8)));
        x += 1;
    }
    table
}

/// The SM4 S-box.
pub(crate) static SBOX: [u8; 256] = build_sbox();

/// τ: the S-box on each byte of a word.
pub(crate) fn tau(word: u32) -> u32 {
    let b = word.to_be_bytes();
    u32::from_be_bytes([
        SBOX[usize::from(b[0])],
        SBOX[usize::from(b[1])],
        SBOX[usize::from(b[2])],
        SBOX[usize::from(b[3])],
    ])
}

/// Encrypt one block in place.
pub(crate) fn encrypt_block(round_keys: &[u32; 32], block: &mut [u8; 16]) {
    let word = |i: usize| {
        u32::from_be_bytes([
            block[4 * i],
            block[4 * i + 1],
            block[4 * i + 2],
            block[4 * i + 3],
        ])
    };
    let mut x = [word(0), word(1), word(2), word(3)];
    for rk in round_keys {
        let t = tau(x[1] ^ x[2] ^ x[3] ^ rk);
        let next =
            x[0] ^ t ^ t.rotate_left(2) ^ t.rotate_left(10) ^ t.rotate_left(18) ^ t.rotate_left(24);
        x = [x[1], x[2], x[3], next];
    }
    for (i, w) in [x[3], x[2], x[1], x[0]].iter().enumerate() {
        block[4 * i..4 * i + 4].copy_from_slice(&w.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_computed_sbox_starts_as_the_standard_prints_it() {
        // GB/T 32907 Table 1, first row.
        assert_eq!(
            super::SBOX[..16],
            [
                0xd6, 0x90, 0xe9, 0xfe, 0xcc, 0xe1, 0x3d, 0xb7, 0x16, 0xb6, 0x14, 0xc2, 0x28, 0xfb,
                0x2c, 0x05
            ]
        );
    }
}
