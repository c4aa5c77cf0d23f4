//! Private information retrieval over one bucket (bucket mode of the private credit query): the
//! institution fetches the one 4 KiB block of a bucket that holds its entry, and the node
//! computes the answer without learning which block. Sans-IO: every random choice comes in as a
//! 32-byte seed.
//!
//! The scheme is the lattice PIR of SealPIR (Angel et al., 2018) on ring-LWE in the ring
//! Z_q[X]/(X^4096 + 1), q = 2^62 − 2^16 + 1, plaintexts of one byte per coefficient:
//! - The institution's secret is a ternary polynomial s. Once, it sends the node Galois keys
//!   ([`PirKeys`], about 1.5 MB, seeded): key-switching keys from s(X^g) to s for the twelve
//!   automorphisms X → X^(N/2^i + 1).
//! - A query for block j is one ciphertext of Δ·2^(−ℓ)·X^j ([`PirQuery`], 31.8 KB: its uniform
//!   half comes from a seed). The node expands it obliviously into 2^ℓ ciphertexts of which the
//!   j-th encrypts Δ and the others 0, multiplies each by its block and adds them up
//!   ([`PirServerKeys::answer`]).
//! - The answer is switched down to 18-bit coefficients ([`PirAnswer`], 18 KB per block) and the
//!   institution decrypts the block.
//!
//! The node sees only ciphertexts: under ring-LWE (N = 4096, log q = 62, ternary secret, centred
//! binomial noise of σ ≈ 3.2; inside the 128-bit bounds of the homomorphic encryption security
//! standard) it learns nothing about j. The answer's noise, measured by a test at the most blocks
//! a bucket gets (1,024), has a root mean square of about 2^45 against a decryption bound of
//! 2^53: some 300 standard deviations of room.

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rayon::prelude::*;
use std::sync::OnceLock;

use crate::PsiError;
use crate::reader::Reader;

/// Ring degree N.
pub const DEGREE: usize = 4096;
/// Ciphertext modulus q: a 62-bit prime with q ≡ 1 (mod 2N).
pub const MODULUS: u64 = 0x3fff_ffff_ffff_0001;
/// Plaintext bytes of one block (one byte per coefficient).
pub const BLOCK_BYTES: usize = DEGREE;
/// Most blocks one query can select from (2^[`MAX_LEVELS`]).
pub const MAX_BLOCKS: usize = 1 << MAX_LEVELS;
/// Expansion levels the Galois keys cover.
pub const MAX_LEVELS: usize = 12;

const LOG_DEGREE: u32 = 12;
const MODULUS_BITS: u32 = 62;
const PLAIN_BITS: u32 = 8;
const GADGET_BITS: u32 = 16;
const GADGET_DIGITS: usize = 4;
/// Bits of an answer coefficient after modulus switching.
const ANSWER_BITS: u32 = 18;
/// Centred binomial noise parameter (variance η/2, σ ≈ 3.24).
const NOISE_ETA: u32 = 21;
const KEYS_MAGIC: &[u8; 4] = b"XPIK";
const QUERY_MAGIC: &[u8; 4] = b"XPIQ";
const ANSWER_MAGIC: &[u8; 4] = b"XPIA";
const PIR_VERSION: u8 = 1;
const UNKNOWN_VERSION: &str = "unknown PIR version";
/// Bytes of a key id.
pub const KEY_ID_LEN: usize = 16;

type Poly = Vec<u64>;

/// Precomputed tables of the ring.
struct Ring {
    /// ψ^bitrev(k) and its Shoup companion, for the forward transform.
    psi: Vec<(u64, u64)>,
    /// ψ^−bitrev(k) and its Shoup companion, for the inverse transform.
    psi_inv: Vec<(u64, u64)>,
    /// N^−1 and its Shoup companion.
    n_inv: (u64, u64),
    /// −q^−1 mod 2^64 (Montgomery).
    q_neg_inv: u64,
    /// 2^128 mod q (to enter Montgomery form).
    r2: u64,
    /// For each expansion level, the automorphism X → X^g as a permutation of NTT slots:
    /// NTT(a(X^g))[k] = NTT(a)[galois[level][k]].
    galois: Vec<Vec<u32>>,
    /// For each expansion level, NTT(X^(−2^level)) in Montgomery form.
    monomials: Vec<Poly>,
}

fn ring() -> &'static Ring {
    static RING: OnceLock<Ring> = OnceLock::new();
    RING.get_or_init(Ring::new)
}

fn pow_mod(mut base: u64, mut exp: u64) -> u64 {
    let mut acc = 1u64;
    base %= MODULUS;
    while exp > 0 {
        if exp & 1 == 1 {
            acc = mul_mod(acc, base);
        }
        base = mul_mod(base, base);
        exp >>= 1;
    }
    acc
}

fn mul_mod(a: u64, b: u64) -> u64 {
    ((u128::from(a) * u128::from(b)) % u128::from(MODULUS)) as u64
}

fn shoup(w: u64) -> (u64, u64) {
    (w, ((u128::from(w) << 64) / u128::from(MODULUS)) as u64)
}

/// a·w mod q for a < 2^64, with w' = ⌊w·2^64/q⌋; the result is reduced.
#[inline(always)]
fn mul_shoup(a: u64, (w, w_shoup): (u64, u64)) -> u64 {
    let quotient = ((u128::from(a) * u128::from(w_shoup)) >> 64) as u64;
    let r = a
        .wrapping_mul(w)
        .wrapping_sub(quotient.wrapping_mul(MODULUS));
    if r >= MODULUS { r - MODULUS } else { r }
}

/// a·w mod q up to one q (the result is below 2q), for a < 2^64.
#[inline(always)]
fn mul_shoup_lazy(a: u64, (w, w_shoup): (u64, u64)) -> u64 {
    let quotient = ((u128::from(a) * u128::from(w_shoup)) >> 64) as u64;
    a.wrapping_mul(w)
        .wrapping_sub(quotient.wrapping_mul(MODULUS))
}

#[inline(always)]
fn add_mod(a: u64, b: u64) -> u64 {
    let s = a + b;
    if s >= MODULUS { s - MODULUS } else { s }
}

#[inline(always)]
fn sub_mod(a: u64, b: u64) -> u64 {
    if a >= b { a - b } else { a + MODULUS - b }
}

#[inline(always)]
fn neg_mod(a: u64) -> u64 {
    if a == 0 { 0 } else { MODULUS - a }
}

impl Ring {
    fn new() -> Self {
        let n = DEGREE as u64;
        // A primitive 2N-th root of unity: x^((q−1)/2N) with ψ^N = −1.
        let psi = (2..)
            .map(|x| pow_mod(x, (MODULUS - 1) / (2 * n)))
            .find(|p| pow_mod(*p, n) == MODULUS - 1)
            .expect("q ≡ 1 (mod 2N) has a primitive 2N-th root");
        let psi_inverse = pow_mod(psi, MODULUS - 2);
        let bitrev = |k: usize| k.reverse_bits() >> (usize::BITS - LOG_DEGREE);
        let table = |root: u64| {
            (0..DEGREE)
                .map(|k| shoup(pow_mod(root, bitrev(k) as u64)))
                .collect()
        };
        let mut q_inv = 1u64;
        for _ in 0..6 {
            q_inv = q_inv.wrapping_mul(2u64.wrapping_sub(MODULUS.wrapping_mul(q_inv)));
        }
        let r = ((1u128 << 64) % u128::from(MODULUS)) as u64;
        let mut ring = Self {
            psi: table(psi),
            psi_inv: table(psi_inverse),
            n_inv: shoup(pow_mod(n, MODULUS - 2)),
            q_neg_inv: q_inv.wrapping_neg(),
            r2: mul_mod(r, r),
            galois: Vec::new(),
            monomials: Vec::new(),
        };
        // Slot k of the NTT holds the evaluation at x_k = NTT(X)[k]; a(X^g) evaluated there is
        // a evaluated at x_k^g, another slot.
        let mut x = vec![0u64; DEGREE];
        x[1] = 1;
        ring.ntt(&mut x);
        let slot_of: std::collections::HashMap<u64, u32> =
            x.iter().enumerate().map(|(k, p)| (*p, k as u32)).collect();
        for level in 0..MAX_LEVELS {
            let g = galois_exponent(level) as u64;
            ring.galois
                .push(x.iter().map(|p| slot_of[&pow_mod(*p, g)]).collect());
            let mut monomial: Poly = x
                .iter()
                .map(|p| pow_mod(pow_mod(*p, MODULUS - 2), 1 << level))
                .collect();
            ring.to_montgomery(&mut monomial);
            ring.monomials.push(monomial);
        }
        ring
    }

    /// Forward negacyclic NTT in place (Cooley–Tukey, bit-reversed order). Harvey's lazy
    /// butterflies: values stay below 4q (q < 2^62) and are reduced once at the end.
    fn ntt(&self, a: &mut [u64]) {
        let two_q = 2 * MODULUS;
        let mut t = DEGREE;
        let mut m = 1;
        while m < DEGREE {
            t /= 2;
            for i in 0..m {
                let w = self.psi[m + i];
                let (lo, hi) = a[2 * i * t..2 * i * t + 2 * t].split_at_mut(t);
                for (x, y) in lo.iter_mut().zip(hi.iter_mut()) {
                    let u = if *x >= two_q { *x - two_q } else { *x };
                    let v = mul_shoup_lazy(*y, w);
                    *x = u + v;
                    *y = u + two_q - v;
                }
            }
            m *= 2;
        }
        for x in a.iter_mut() {
            let r = if *x >= two_q { *x - two_q } else { *x };
            *x = if r >= MODULUS { r - MODULUS } else { r };
        }
    }

    /// Inverse negacyclic NTT in place (Gentleman–Sande), scaled by N^−1. Lazy butterflies:
    /// values stay below 2q until the final scaling reduces them.
    fn intt(&self, a: &mut [u64]) {
        let two_q = 2 * MODULUS;
        let mut t = 1;
        let mut m = DEGREE;
        while m > 1 {
            let h = m / 2;
            for i in 0..h {
                let w = self.psi_inv[h + i];
                let (lo, hi) = a[2 * i * t..2 * i * t + 2 * t].split_at_mut(t);
                for (x, y) in lo.iter_mut().zip(hi.iter_mut()) {
                    let (u, v) = (*x, *y);
                    let sum = u + v;
                    *x = if sum >= two_q { sum - two_q } else { sum };
                    *y = mul_shoup_lazy(u + two_q - v, w);
                }
            }
            t *= 2;
            m = h;
        }
        for x in a.iter_mut() {
            *x = mul_shoup(*x, self.n_inv);
        }
    }

    /// a·b·2^−64 mod q (b in Montgomery form gives a·b).
    #[inline(always)]
    fn mont_mul(&self, a: u64, b: u64) -> u64 {
        let t = u128::from(a) * u128::from(b);
        let m = (t as u64).wrapping_mul(self.q_neg_inv);
        let r = ((t + u128::from(m) * u128::from(MODULUS)) >> 64) as u64;
        if r >= MODULUS { r - MODULUS } else { r }
    }

    fn to_montgomery(&self, a: &mut [u64]) {
        for x in a {
            *x = self.mont_mul(*x, self.r2);
        }
    }
}

/// A deterministic generator from a seed and a purpose.
fn prg(seed: &[u8; 32], purpose: &[u8]) -> ChaCha20Rng {
    let mut h = xy_shangmi::Sm3Hasher::new();
    h.update(b"xinyong/pir/v1");
    h.update(seed);
    h.update(purpose);
    ChaCha20Rng::from_seed(h.finish())
}

fn uniform_poly(rng: &mut ChaCha20Rng) -> Poly {
    let mut out = Vec::with_capacity(DEGREE);
    while out.len() < DEGREE {
        let x = rng.next_u64() >> (64 - MODULUS_BITS);
        if x < MODULUS {
            out.push(x);
        }
    }
    out
}

fn noise_poly(rng: &mut ChaCha20Rng) -> Poly {
    let mask = (1u64 << NOISE_ETA) - 1;
    (0..DEGREE)
        .map(|_| {
            let bits = rng.next_u64();
            let e = i64::from((bits & mask).count_ones())
                - i64::from(((bits >> 21) & mask).count_ones());
            from_signed(e)
        })
        .collect()
}

fn ternary_poly(rng: &mut ChaCha20Rng) -> Vec<i8> {
    let mut out = Vec::with_capacity(DEGREE);
    while out.len() < DEGREE {
        let byte = (rng.next_u32() & 0xff) as u8;
        if byte < 255 {
            out.push((byte % 3) as i8 - 1);
        }
    }
    out
}

fn from_signed(v: i64) -> u64 {
    if v < 0 {
        MODULUS - v.unsigned_abs()
    } else {
        v as u64
    }
}

fn to_signed(v: u64) -> i64 {
    if v > MODULUS / 2 {
        -((MODULUS - v) as i64)
    } else {
        v as i64
    }
}

/// a(X^g) in coefficient form, g odd.
fn automorphism(a: &[u64], g: usize) -> Poly {
    let mut out = vec![0u64; DEGREE];
    for (i, &x) in a.iter().enumerate() {
        let j = (i * g) % (2 * DEGREE);
        if j < DEGREE {
            out[j] = x;
        } else {
            out[j - DEGREE] = neg_mod(x);
        }
    }
    out
}

/// The automorphism exponent of expansion level `level`: X → X^(N/2^level + 1).
fn galois_exponent(level: usize) -> usize {
    (DEGREE >> level) + 1
}

/// The institution's secret key. Never leaves the institution.
#[derive(Clone)]
pub struct PirSecret {
    coefficients: Vec<i8>,
    /// s in NTT form.
    ntt: Poly,
}

impl std::fmt::Debug for PirSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PirSecret(..)")
    }
}

impl PirSecret {
    /// A secret from 32 random bytes (the same seed gives the same secret, so the seed is what
    /// an institution stores).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let coefficients = ternary_poly(&mut prg(seed, b"secret"));
        let mut ntt: Poly = coefficients
            .iter()
            .map(|&c| from_signed(c.into()))
            .collect();
        ring().ntt(&mut ntt);
        Self { coefficients, ntt }
    }

    /// The Galois keys for the node; `seed` gives their uniform halves and noise.
    pub fn galois_keys(&self, seed: &[u8; 32]) -> PirKeys {
        let ring = ring();
        let mut noise = prg(seed, b"galois noise");
        let s_coefficients: Poly = self
            .coefficients
            .iter()
            .map(|&c| from_signed(c.into()))
            .collect();
        let mut betas = Vec::with_capacity(MAX_LEVELS * GADGET_DIGITS);
        for level in 0..MAX_LEVELS {
            let rotated = automorphism(&s_coefficients, galois_exponent(level));
            for digit in 0..GADGET_DIGITS {
                let alpha = galois_alpha(seed, level, digit);
                let mut e = noise_poly(&mut noise);
                let scale = pow_mod(1 << GADGET_BITS, digit as u64);
                for (x, r) in e.iter_mut().zip(&rotated) {
                    *x = add_mod(*x, mul_mod(*r, scale));
                }
                ring.ntt(&mut e);
                let beta: Poly = alpha
                    .iter()
                    .zip(&self.ntt)
                    .zip(&e)
                    .map(|((a, s), e)| add_mod(mul_mod(*a, *s), *e))
                    .collect();
                betas.push(beta);
            }
        }
        let mut keys = PirKeys {
            seed: *seed,
            betas,
            key_id: [0; KEY_ID_LEN],
        };
        keys.key_id = key_id_of(&keys.encode());
        keys
    }

    /// A query for block `index` of `blocks` (blocks ≤ [`MAX_BLOCKS`]); `seed` gives the
    /// ciphertext's uniform half and noise.
    pub fn query(
        &self,
        key_id: [u8; KEY_ID_LEN],
        index: usize,
        blocks: usize,
        seed: &[u8; 32],
    ) -> Result<PirQuery, PsiError> {
        if blocks == 0 || blocks > MAX_BLOCKS || index >= blocks {
            return Err(PsiError::Protocol(format!(
                "block {index} of {blocks} cannot be asked for"
            )));
        }
        let ring = ring();
        let levels = levels_for(blocks);
        let a = uniform_poly(&mut prg(seed, b"query a"));
        let mut b: Poly = a
            .iter()
            .zip(&self.ntt)
            .map(|(a, s)| mul_mod(*a, *s))
            .collect();
        ring.intt(&mut b);
        let e = noise_poly(&mut prg(seed, b"query noise"));
        // Δ·2^−ℓ: the expansion multiplies by 2^ℓ.
        let delta = MODULUS >> PLAIN_BITS;
        let scale = mul_mod(delta, pow_mod(pow_mod(2, levels as u64), MODULUS - 2));
        for (x, e) in b.iter_mut().zip(&e) {
            *x = add_mod(*x, *e);
        }
        b[index] = add_mod(b[index], scale);
        Ok(PirQuery {
            key_id,
            blocks: blocks as u32,
            seed: *seed,
            b,
        })
    }

    /// Decrypt an answer into its blocks' bytes.
    pub fn decrypt(&self, answer: &PirAnswer) -> Vec<u8> {
        let ring = ring();
        let answer_mask = (1u64 << ANSWER_BITS) - 1;
        let mut out = Vec::with_capacity(answer.blocks.len() * BLOCK_BYTES);
        for (a, b) in &answer.blocks {
            // a·s exactly over the integers (|a·s| < N·2^18 < q/2), then mod 2^18.
            let mut product: Poly = a.iter().map(|&x| u64::from(x)).collect();
            ring.ntt(&mut product);
            for (p, s) in product.iter_mut().zip(&self.ntt) {
                *p = mul_mod(*p, *s);
            }
            ring.intt(&mut product);
            for (p, b) in product.iter().zip(b) {
                let x = (i64::from(*b) - to_signed(*p)) as u64 & answer_mask;
                let byte = ((x + (1 << (ANSWER_BITS - PLAIN_BITS - 1)))
                    >> (ANSWER_BITS - PLAIN_BITS))
                    & ((1 << PLAIN_BITS) - 1);
                out.push(byte as u8);
            }
        }
        out
    }
}

fn galois_alpha(seed: &[u8; 32], level: usize, digit: usize) -> Poly {
    uniform_poly(&mut prg(seed, &[b'g', level as u8, digit as u8]))
}

/// Expansion levels for `blocks` blocks: ⌈log₂ blocks⌉.
fn levels_for(blocks: usize) -> usize {
    blocks.next_power_of_two().trailing_zeros() as usize
}

/// The institution's Galois keys, as sent to the node once.
#[derive(Clone, PartialEq, Eq)]
pub struct PirKeys {
    seed: [u8; 32],
    /// β of each (level, digit), NTT form.
    betas: Vec<Poly>,
    /// SM3 of the encoding, shortened (kept: the encoding is 1.5 MB).
    key_id: [u8; KEY_ID_LEN],
}

impl std::fmt::Debug for PirKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PirKeys(..)")
    }
}

impl PirKeys {
    /// Bytes: magic, version, seed, then every β packed at 62 bits a coefficient.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(37 + self.betas.len() * packed_len(MODULUS_BITS));
        out.extend_from_slice(KEYS_MAGIC);
        out.push(PIR_VERSION);
        out.extend_from_slice(&self.seed);
        for beta in &self.betas {
            pack(beta, MODULUS_BITS, &mut out);
        }
        out
    }

    /// Parse [`PirKeys::encode`]'s bytes; every coefficient must be below q.
    pub fn decode(bytes: &[u8]) -> Result<Self, PsiError> {
        let mut r = Reader::new(bytes);
        r.header(KEYS_MAGIC, PIR_VERSION, "not PIR keys", UNKNOWN_VERSION)?;
        let seed = r.array()?;
        let betas = (0..MAX_LEVELS * GADGET_DIGITS)
            .map(|_| unpack(&mut r, MODULUS_BITS))
            .collect::<Result<_, _>>()?;
        r.finish()?;
        // The encoding is canonical: these bytes are what `encode` gives.
        Ok(Self {
            seed,
            betas,
            key_id: key_id_of(bytes),
        })
    }

    /// The key id: SM3 of the encoding, shortened.
    pub fn key_id(&self) -> [u8; KEY_ID_LEN] {
        self.key_id
    }
}

/// The key id of encoded [`PirKeys`].
pub fn key_id_of(encoded: &[u8]) -> [u8; KEY_ID_LEN] {
    let digest = xy_shangmi::sm3(encoded);
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&digest[..KEY_ID_LEN]);
    id
}

/// The blocks a query selects from, prepared once for any number of queries: each block
/// centred, in NTT and Montgomery form.
pub struct PirDatabase {
    blocks: Vec<Poly>,
}

impl std::fmt::Debug for PirDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PirDatabase")
            .field("blocks", &self.blocks.len())
            .finish()
    }
}

impl PirDatabase {
    /// Prepare 1 to [`MAX_BLOCKS`] blocks of at most [`BLOCK_BYTES`] bytes (on all cores).
    pub fn new(blocks: &[&[u8]]) -> Result<Self, PsiError> {
        if blocks.is_empty() || blocks.len() > MAX_BLOCKS {
            return Err(PsiError::Protocol(format!(
                "{} blocks; a query selects from 1 to {MAX_BLOCKS}",
                blocks.len()
            )));
        }
        if blocks.iter().any(|b| b.len() > BLOCK_BYTES) {
            return Err(PsiError::Protocol("a block beyond 4 KiB".into()));
        }
        let ring = ring();
        let blocks = blocks
            .par_iter()
            .map(|block| {
                let mut p = vec![0u64; DEGREE];
                for (x, &byte) in p.iter_mut().zip(block.iter()) {
                    *x = from_signed(i64::from(byte as i8));
                }
                ring.ntt(&mut p);
                ring.to_montgomery(&mut p);
                p
            })
            .collect();
        Ok(Self { blocks })
    }
}

/// The node's form of an institution's Galois keys: α and β in NTT and Montgomery form.
pub struct PirServerKeys {
    key_id: [u8; KEY_ID_LEN],
    /// (α, β) of each (level, digit).
    keys: Vec<(Poly, Poly)>,
}

impl std::fmt::Debug for PirServerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PirServerKeys")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// One ciphertext (a, b), coefficient form.
#[derive(Clone)]
struct Ciphertext {
    a: Poly,
    b: Poly,
}

impl PirServerKeys {
    /// Prepare keys received from an institution.
    pub fn new(keys: &PirKeys) -> Self {
        let ring = ring();
        let prepared = keys
            .betas
            .par_iter()
            .enumerate()
            .map(|(i, beta)| {
                let mut alpha = galois_alpha(&keys.seed, i / GADGET_DIGITS, i % GADGET_DIGITS);
                let mut beta = beta.clone();
                ring.to_montgomery(&mut alpha);
                ring.to_montgomery(&mut beta);
                (alpha, beta)
            })
            .collect();
        Self {
            key_id: keys.key_id(),
            keys: prepared,
        }
    }

    /// The id queries name these keys by.
    pub fn key_id(&self) -> [u8; KEY_ID_LEN] {
        self.key_id
    }

    /// Answer `query` over `database` (the query must have been made for its block count) with
    /// the `count` blocks that start `first` blocks after the one asked for (blocks past the end
    /// read as zeros). Uses all cores.
    pub fn answer(
        &self,
        query: &PirQuery,
        database: &PirDatabase,
        first: usize,
        count: usize,
    ) -> Result<PirAnswer, PsiError> {
        if query.key_id != self.key_id {
            return Err(PsiError::Protocol("the query names other PIR keys".into()));
        }
        if query.blocks as usize != database.blocks.len() {
            return Err(PsiError::Protocol(format!(
                "the query was made for {} blocks, the bucket has {}",
                query.blocks,
                database.blocks.len()
            )));
        }
        if count == 0 || first + count > MAX_BLOCKS {
            return Err(PsiError::Protocol(format!(
                "blocks {first}..{} past the one asked for",
                first + count
            )));
        }
        let answers = self
            .answer_full(query, database, first..first + count)
            .into_iter()
            .map(|c| (switch_down(&c.a), switch_down(&c.b)))
            .collect();
        Ok(PirAnswer { blocks: answers })
    }

    /// The answer's ciphertexts before the modulus switch, coefficient form.
    fn answer_full(
        &self,
        query: &PirQuery,
        database: &PirDatabase,
        offsets: std::ops::Range<usize>,
    ) -> Vec<Ciphertext> {
        let ring = ring();
        // The uniform half is drawn in NTT form; b arrives in coefficient form.
        let a = uniform_poly(&mut prg(&query.seed, b"query a"));
        let mut b = query.b.clone();
        ring.ntt(&mut b);
        let plain = &database.blocks;
        let selectors = self.expand(Ciphertext { a, b }, plain.len());
        offsets
            .into_par_iter()
            .map(|offset| {
                let mut acc = Ciphertext {
                    a: vec![0; DEGREE],
                    b: vec![0; DEGREE],
                };
                for (selector, block) in selectors.iter().zip(plain.iter().skip(offset)) {
                    for (i, p) in block.iter().enumerate() {
                        acc.a[i] = add_mod(acc.a[i], ring.mont_mul(selector.a[i], *p));
                        acc.b[i] = add_mod(acc.b[i], ring.mont_mul(selector.b[i], *p));
                    }
                }
                ring.intt(&mut acc.a);
                ring.intt(&mut acc.b);
                acc
            })
            .collect()
    }

    /// Oblivious expansion (in NTT form throughout): `count` ciphertexts, the i-th encrypting
    /// 2^ℓ times coefficient i of the query's plaintext.
    fn expand(&self, query: Ciphertext, count: usize) -> Vec<Ciphertext> {
        let ring = ring();
        let mut cts = vec![query];
        for level in 0..levels_for(count) {
            let monomial = &ring.monomials[level];
            let pairs: Vec<(Ciphertext, Ciphertext)> = cts
                .par_iter()
                .map(|c| {
                    let s = self.substitute(c, level);
                    let plus = Ciphertext {
                        a: c.a.iter().zip(&s.a).map(|(x, y)| add_mod(*x, *y)).collect(),
                        b: c.b.iter().zip(&s.b).map(|(x, y)| add_mod(*x, *y)).collect(),
                    };
                    // (c − s)·X^(−2^level)
                    let times = |x: &Poly, y: &Poly| -> Poly {
                        x.iter()
                            .zip(y)
                            .zip(monomial)
                            .map(|((x, y), m)| ring.mont_mul(sub_mod(*x, *y), *m))
                            .collect()
                    };
                    let minus = Ciphertext {
                        a: times(&c.a, &s.a),
                        b: times(&c.b, &s.b),
                    };
                    (plus, minus)
                })
                .collect();
            let (mut next, odd): (Vec<Ciphertext>, Vec<Ciphertext>) = pairs.into_iter().unzip();
            next.extend(odd);
            cts = next;
        }
        cts.truncate(count);
        cts
    }

    /// c(X^g) switched back to the key s (NTT form in and out): the automorphism of level
    /// `level` — a permutation of the NTT slots — then a key switch with that level's Galois key
    /// (gadget decomposition in base 2^16 of the coefficients).
    fn substitute(&self, c: &Ciphertext, level: usize) -> Ciphertext {
        let ring = ring();
        let permutation = &ring.galois[level];
        let permute = |x: &Poly| -> Poly { permutation.iter().map(|&k| x[k as usize]).collect() };
        let mut a = permute(&c.a);
        ring.intt(&mut a);
        let mut acc_a = vec![0u64; DEGREE];
        let mut acc_b = vec![0u64; DEGREE];
        for (digit, mut d) in decompose(&a).into_iter().enumerate() {
            ring.ntt(&mut d);
            let (alpha, beta) = &self.keys[level * GADGET_DIGITS + digit];
            for i in 0..DEGREE {
                acc_a[i] = add_mod(acc_a[i], ring.mont_mul(d[i], alpha[i]));
                acc_b[i] = add_mod(acc_b[i], ring.mont_mul(d[i], beta[i]));
            }
        }
        Ciphertext {
            a: acc_a.into_iter().map(neg_mod).collect(),
            b: permute(&c.b)
                .iter()
                .zip(&acc_b)
                .map(|(x, y)| sub_mod(*x, *y))
                .collect(),
        }
    }
}

/// Balanced base-2^16 digits of every coefficient: a = Σ d_k·2^(16k), |d_k| ≤ 2^15.
fn decompose(a: &[u64]) -> Vec<Poly> {
    let mut digits = vec![vec![0u64; DEGREE]; GADGET_DIGITS];
    let base = 1i64 << GADGET_BITS;
    for (i, &x) in a.iter().enumerate() {
        let mut v = x as i128;
        for (k, digit) in digits.iter_mut().enumerate() {
            let mut d = (v & i128::from(base - 1)) as i64;
            if d >= base / 2 && k + 1 < GADGET_DIGITS {
                d -= base;
            }
            v = (v - i128::from(d)) >> GADGET_BITS;
            digit[i] = from_signed(d);
        }
    }
    digits
}

/// round(x·2^18/q) mod 2^18 of every coefficient.
fn switch_down(a: &[u64]) -> Vec<u32> {
    a.iter()
        .map(|&x| {
            let scaled =
                ((u128::from(x) << ANSWER_BITS) + u128::from(MODULUS / 2)) / u128::from(MODULUS);
            (scaled as u32) & ((1 << ANSWER_BITS) - 1)
        })
        .collect()
}

/// One PIR query (institution → node).
#[derive(Clone, PartialEq, Eq)]
pub struct PirQuery {
    /// The Galois keys the node is to use.
    pub key_id: [u8; KEY_ID_LEN],
    /// Blocks the query selects from.
    pub blocks: u32,
    seed: [u8; 32],
    b: Poly,
}

impl std::fmt::Debug for PirQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PirQuery")
            .field("blocks", &self.blocks)
            .finish_non_exhaustive()
    }
}

/// Bytes of an encoded [`PirQuery`].
pub const QUERY_LEN: usize = 5 + KEY_ID_LEN + 4 + 32 + DEGREE * MODULUS_BITS as usize / 8;

impl PirQuery {
    /// Bytes: magic, version, key id, block count, seed, b packed at 62 bits.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(QUERY_LEN);
        out.extend_from_slice(QUERY_MAGIC);
        out.push(PIR_VERSION);
        out.extend_from_slice(&self.key_id);
        out.extend_from_slice(&self.blocks.to_be_bytes());
        out.extend_from_slice(&self.seed);
        pack(&self.b, MODULUS_BITS, &mut out);
        out
    }

    /// Parse [`PirQuery::encode`]'s bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, PsiError> {
        let mut r = Reader::new(bytes);
        r.header(QUERY_MAGIC, PIR_VERSION, "not a PIR query", UNKNOWN_VERSION)?;
        let key_id = r.array()?;
        let blocks = r.u32()?;
        if blocks == 0 || blocks as usize > MAX_BLOCKS {
            return Err(PsiError::Malformed("a PIR query over too many blocks"));
        }
        let seed = r.array()?;
        let b = unpack(&mut r, MODULUS_BITS)?;
        r.finish()?;
        Ok(Self {
            key_id,
            blocks,
            seed,
            b,
        })
    }
}

/// One PIR answer (node → institution): a ciphertext per block, 18 bits a coefficient.
#[derive(Clone, PartialEq, Eq)]
pub struct PirAnswer {
    blocks: Vec<(Vec<u32>, Vec<u32>)>,
}

impl std::fmt::Debug for PirAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PirAnswer")
            .field("blocks", &self.blocks.len())
            .finish_non_exhaustive()
    }
}

impl PirAnswer {
    /// Blocks carried.
    pub fn width(&self) -> usize {
        self.blocks.len()
    }

    /// Bytes: magic, version, block count, then (a, b) of each packed at 18 bits.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(ANSWER_MAGIC);
        out.push(PIR_VERSION);
        out.extend_from_slice(&(self.blocks.len() as u32).to_be_bytes());
        for (a, b) in &self.blocks {
            for poly in [a, b] {
                let wide: Poly = poly.iter().map(|&x| u64::from(x)).collect();
                pack(&wide, ANSWER_BITS, &mut out);
            }
        }
        out
    }

    /// Parse [`PirAnswer::encode`]'s bytes; at most `max_blocks` blocks.
    pub fn decode(bytes: &[u8], max_blocks: usize) -> Result<Self, PsiError> {
        let mut r = Reader::new(bytes);
        r.header(
            ANSWER_MAGIC,
            PIR_VERSION,
            "not a PIR answer",
            UNKNOWN_VERSION,
        )?;
        let count = r.u32()? as usize;
        if count == 0 || count > max_blocks {
            return Err(PsiError::Malformed(
                "a PIR answer with an unexpected block count",
            ));
        }
        let mut blocks = Vec::with_capacity(count);
        let narrow = |p: Poly| p.into_iter().map(|x| x as u32).collect::<Vec<u32>>();
        for _ in 0..count {
            let a = unpack(&mut r, ANSWER_BITS)?;
            let b = unpack(&mut r, ANSWER_BITS)?;
            blocks.push((narrow(a), narrow(b)));
        }
        r.finish()?;
        Ok(Self { blocks })
    }
}

fn packed_len(bits: u32) -> usize {
    DEGREE * bits as usize / 8
}

/// N coefficients of `bits` bits each, little-endian bit order.
fn pack(poly: &[u64], bits: u32, out: &mut Vec<u8>) {
    let mut acc: u128 = 0;
    let mut filled = 0u32;
    for &x in poly {
        acc |= u128::from(x) << filled;
        filled += bits;
        while filled >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            filled -= 8;
        }
    }
    if filled > 0 {
        out.push(acc as u8);
    }
}

/// The inverse of [`pack`], read from `r`; coefficients of `bits` = 62 must be below q.
fn unpack(r: &mut Reader<'_>, bits: u32) -> Result<Poly, PsiError> {
    let head = r.bytes(packed_len(bits))?;
    let mask = (1u128 << bits) - 1;
    let mut out = Vec::with_capacity(DEGREE);
    let mut acc: u128 = 0;
    let mut filled = 0u32;
    for &byte in head {
        acc |= u128::from(byte) << filled;
        filled += 8;
        if filled >= bits {
            out.push((acc & mask) as u64);
            acc >>= bits;
            filled -= bits;
        }
    }
    if bits == MODULUS_BITS && out.iter().any(|&x| x >= MODULUS) {
        return Err(PsiError::Malformed(
            "a PIR coefficient not below the modulus",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schoolbook(a: &[u64], b: &[u64]) -> Poly {
        let mut out = vec![0u64; DEGREE];
        for (i, &x) in a.iter().enumerate() {
            for (j, &y) in b.iter().enumerate() {
                let p = mul_mod(x, y);
                if i + j < DEGREE {
                    out[i + j] = add_mod(out[i + j], p);
                } else {
                    out[i + j - DEGREE] = sub_mod(out[i + j - DEGREE], p);
                }
            }
        }
        out
    }

    #[test]
    fn the_transform_multiplies_negacyclically() {
        let ring = ring();
        let mut rng = prg(&[7; 32], b"test");
        let a = uniform_poly(&mut rng);
        // A sparse b keeps the schoolbook product quick.
        let mut b = vec![0u64; DEGREE];
        for k in [0, 1, 17, 2048, 4095] {
            b[k] = rng.next_u64() % MODULUS;
        }
        let expected = schoolbook(&a, &b);
        let (mut fa, mut fb) = (a.clone(), b.clone());
        ring.ntt(&mut fa);
        ring.ntt(&mut fb);
        ring.to_montgomery(&mut fb);
        let mut product: Poly = fa
            .iter()
            .zip(&fb)
            .map(|(x, y)| ring.mont_mul(*x, *y))
            .collect();
        ring.intt(&mut product);
        assert_eq!(product, expected);
        let mut back = fa;
        ring.intt(&mut back);
        assert_eq!(back, a);
    }

    #[test]
    fn packing_round_trips() {
        let a = uniform_poly(&mut prg(&[1; 32], b"pack"));
        let mut bytes = Vec::new();
        pack(&a, MODULUS_BITS, &mut bytes);
        assert_eq!(bytes.len(), packed_len(MODULUS_BITS));
        assert_eq!(unpack(&mut Reader::new(&bytes), MODULUS_BITS).unwrap(), a);
        let small: Poly = a.iter().map(|x| x & ((1 << ANSWER_BITS) - 1)).collect();
        let mut bytes = Vec::new();
        pack(&small, ANSWER_BITS, &mut bytes);
        assert_eq!(
            unpack(&mut Reader::new(&bytes), ANSWER_BITS).unwrap(),
            small
        );
    }

    fn database(blocks: usize, seed: u8) -> Vec<Vec<u8>> {
        let mut rng = prg(&[seed; 32], b"db");
        (0..blocks)
            .map(|i| {
                // Blocks of every length, the last ones short.
                let len = if i % 5 == 4 { 1000 + i } else { BLOCK_BYTES };
                (0..len).map(|_| rng.next_u32() as u8).collect()
            })
            .collect()
    }

    #[test]
    fn a_query_fetches_exactly_the_block_asked_for() {
        let secret = PirSecret::from_seed(&[3; 32]);
        let keys = PirKeys::decode(&secret.galois_keys(&[4; 32]).encode()).unwrap();
        let server = PirServerKeys::new(&keys);
        for (blocks, width) in [(1, 1), (2, 1), (5, 2), (37, 1), (200, 3)] {
            let db = database(blocks, blocks as u8);
            let views: Vec<&[u8]> = db.iter().map(Vec::as_slice).collect();
            let database = PirDatabase::new(&views).unwrap();
            for index in [0, blocks / 2, blocks - 1] {
                let query = secret
                    .query(keys.key_id(), index, blocks, &[index as u8; 32])
                    .unwrap();
                let query = PirQuery::decode(&query.encode()).unwrap();
                let answer = server.answer(&query, &database, 0, width).unwrap();
                let answer = PirAnswer::decode(&answer.encode(), width).unwrap();
                let plain = secret.decrypt(&answer);
                for w in 0..width {
                    let mut expected = db.get(index + w).cloned().unwrap_or_default();
                    expected.resize(BLOCK_BYTES, 0);
                    assert_eq!(
                        &plain[w * BLOCK_BYTES..(w + 1) * BLOCK_BYTES],
                        expected.as_slice(),
                        "blocks {blocks}, index {index}, offset {w}"
                    );
                }
            }
        }
    }

    /// Noise of a ciphertext whose plaintext is `message` (coefficient form): its largest
    /// coefficient and its root mean square.
    fn noise(secret: &PirSecret, c: &Ciphertext, message: &[u64]) -> (f64, f64) {
        let ring = ring();
        let mut product = c.a.clone();
        ring.ntt(&mut product);
        for (p, s) in product.iter_mut().zip(&secret.ntt) {
            *p = mul_mod(*p, *s);
        }
        ring.intt(&mut product);
        let errors: Vec<f64> =
            c.b.iter()
                .zip(&product)
                .zip(message)
                .map(|((b, p), m)| to_signed(sub_mod(sub_mod(*b, *p), *m)) as f64)
                .collect();
        let max = errors.iter().fold(0f64, |m, e| m.max(e.abs()));
        let rms = (errors.iter().map(|e| e * e).sum::<f64>() / errors.len() as f64).sqrt();
        (max, rms)
    }

    #[test]
    fn the_noise_stays_far_inside_the_decryption_bound() {
        // Full blocks of random bytes, at the most blocks a bucket is given (1024): the answer's
        // noise before the modulus switch must be far below q/2t, the decryption bound.
        let secret = PirSecret::from_seed(&[5; 32]);
        let keys = secret.galois_keys(&[6; 32]);
        let server = PirServerKeys::new(&keys);
        let blocks = 1024;
        let db = database(blocks, 9);
        let views: Vec<&[u8]> = db.iter().map(Vec::as_slice).collect();
        let database = PirDatabase::new(&views).unwrap();
        let query = secret.query(keys.key_id(), 700, blocks, &[8; 32]).unwrap();
        let answer = &server.answer_full(&query, &database, 0..1)[0];
        let delta = MODULUS >> PLAIN_BITS;
        let message: Poly = db[700]
            .iter()
            .map(|&byte| mul_mod(delta, from_signed(i64::from(byte as i8))))
            .collect();
        let (max, rms) = noise(&secret, answer, &message);
        let bound = (MODULUS >> (PLAIN_BITS + 1)) as f64;
        eprintln!(
            "answer noise: max 2^{:.1}, rms 2^{:.1}, bound 2^{:.1}",
            max.log2(),
            rms.log2(),
            bound.log2()
        );
        // 24 standard deviations: a coefficient fails with probability below 2^-400.
        assert!(rms * 24.0 < bound, "rms {rms:.3e} vs bound {bound:.3e}");
        assert!(max * 4.0 < bound, "max {max:.3e} vs bound {bound:.3e}");
        let plain = secret.decrypt(&PirAnswer {
            blocks: vec![(switch_down(&answer.a), switch_down(&answer.b))],
        });
        assert_eq!(&plain[..], db[700].as_slice());
    }

    #[test]
    fn malformed_messages_are_refused() {
        let secret = PirSecret::from_seed(&[1; 32]);
        let keys = secret.galois_keys(&[2; 32]);
        let encoded = keys.encode();
        assert_eq!(
            PirKeys::decode(&encoded).unwrap().key_id(),
            key_id_of(&encoded)
        );
        assert_eq!(keys.key_id(), key_id_of(&encoded));
        assert!(PirKeys::decode(&encoded[..encoded.len() - 1]).is_err());
        let mut extra = encoded.clone();
        extra.push(0);
        assert!(PirKeys::decode(&extra).is_err());
        let query = secret
            .query(keys.key_id(), 0, 4, &[0; 32])
            .unwrap()
            .encode();
        assert_eq!(query.len(), QUERY_LEN);
        let mut too_big = query.clone();
        // The first coefficient set to all ones: not below q.
        too_big[5 + KEY_ID_LEN + 4 + 32..5 + KEY_ID_LEN + 4 + 32 + 8].fill(0xff);
        assert!(PirQuery::decode(&too_big).is_err());
        assert!(PirQuery::decode(&query[..100]).is_err());
        assert!(PirAnswer::decode(b"XPIA\x01\0\0\0\x01", 1).is_err());
        assert!(secret.query(keys.key_id(), 4, 4, &[0; 32]).is_err());
        let server = PirServerKeys::new(&keys);
        let other = PirSecret::from_seed(&[9; 32]).galois_keys(&[9; 32]);
        let one = PirDatabase::new(&[&[1u8][..]]).unwrap();
        let q = secret.query(other.key_id(), 0, 1, &[0; 32]).unwrap();
        assert!(server.answer(&q, &one, 0, 1).is_err());
        let q = secret.query(keys.key_id(), 0, 2, &[0; 32]).unwrap();
        assert!(server.answer(&q, &one, 0, 1).is_err());
        assert!(PirDatabase::new(&[]).is_err());
        assert!(PirDatabase::new(&[&[0u8; BLOCK_BYTES + 1][..]]).is_err());
    }
}
