//! SM4 (GB/T 32907) for xinyong's SM4-GCM and SM4-CCM, constant-time where the CPU allows and
//! fast: the SM4 S-box is affine-equivalent to the AES S-box (both are inversion in GF(2^8)
//! wrapped in affine maps, over isomorphic fields), so GFNI (`GF2P8AFFINEINVQB`) or AES-NI
//! (`AESENCLAST` between nibble-table affine maps) compute it without secret-dependent memory
//! access, on 4 (SSE), 8 (AVX2) or 16 (AVX-512) blocks per register set, two sets interleaved.
//!
//! [`Backend::detect`] picks the best path at run time: GFNI with AVX-512, GFNI with AVX2, AES-NI,
//! or the portable table implementation (the only path that is not constant-time; it exists for
//! CPUs without AES-NI and as the reference the others are tested against). [`Sm4`] implements
//! the RustCrypto `cipher` traits with 32 parallel blocks, so `aes-gcm`'s generic GCM (CTR over
//! this cipher) and `ccm` run on it unchanged; [`Sm4Gcm`] is this crate's own GCM, which keeps
//! the vector paths fed on short messages too (CTR in batches of 32 blocks, tails included; GHASH
//! with CLMUL through `ghash`/`polyval`).
//!
//! Only encryption is provided: CTR, GCM and CCM never decrypt with the block cipher.
//! `unsafe` lives in the `x86` module alone; every block there says why it is sound, and this
//! module's API is safe.

#![deny(unsafe_code)]

mod gcm;
mod portable;
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86;

use cipher::consts::{U16, U32};
use cipher::{
    AlgorithmName, Block, BlockCipherEncBackend, BlockCipherEncClosure, BlockCipherEncrypt,
    BlockSizeUser, InOut, InOutBuf, Key, KeyInit, KeySizeUser, ParBlocks, ParBlocksSizeUser,
};

pub use gcm::Sm4Gcm;

/// Blocks processed per parallel call (what `aes-gcm`'s CTR hands over at once).
pub const PAR_BLOCKS: usize = 32;

/// An implementation path of SM4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// GFNI on 512-bit vectors (AVX-512F/BW): 16 blocks per pass.
    Gfni512,
    /// GFNI on 256-bit vectors (AVX2): 8 blocks per pass.
    Gfni256,
    /// AES-NI with SSSE3 nibble shuffles: 4 blocks per pass.
    AesNi,
    /// Table lookups, one block at a time: portable, not constant-time.
    Portable,
}

impl Backend {
    /// Every path, fastest first.
    pub const ALL: [Backend; 4] = [
        Backend::Gfni512,
        Backend::Gfni256,
        Backend::AesNi,
        Backend::Portable,
    ];

    /// Whether this CPU can run the path.
    pub fn is_available(self) -> bool {
        match self {
            Backend::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Backend::Gfni512 => x86::has_gfni512(),
            #[cfg(target_arch = "x86_64")]
            Backend::Gfni256 => x86::has_gfni256(),
            #[cfg(target_arch = "x86_64")]
            Backend::AesNi => x86::has_aesni(),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The fastest path this CPU can run.
    pub fn detect() -> Backend {
        Backend::ALL
            .into_iter()
            .find(|b| b.is_available())
            .unwrap_or(Backend::Portable)
    }

    /// A short name for logs and benchmark tables.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Gfni512 => "gfni-avx512",
            Backend::Gfni256 => "gfni-avx2",
            Backend::AesNi => "aes-ni",
            Backend::Portable => "portable",
        }
    }

    /// Whether the path is free of secret-dependent memory access and branches.
    pub fn is_constant_time(self) -> bool {
        self != Backend::Portable
    }
}

/// The system parameter FK (GB/T 32907 §7.3).
const FK: [u32; 4] = [0xa3b1_bac6, 0x56aa_3350, 0x677d_9197, 0xb270_22dc];

/// The constant key CK_i: byte j of CK_i is (4i + j) · 7 mod 256 (GB/T 32907 §7.3).
const fn ck(i: usize) -> u32 {
    let mut out = 0u32;
    let mut j = 0;
    while j < 4 {
        out = (out << 8) | (((4 * i + j) * 7) % 256) as u32;
        j += 1;
    }
    out
}

/// SM4 with a path chosen for this CPU; encryption only.
#[derive(Clone)]
pub struct Sm4 {
    round_keys: [u32; 32],
    backend: Backend,
}

impl std::fmt::Debug for Sm4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sm4")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Sm4 {
    /// SM4 under `key` on the fastest path of this CPU.
    pub fn new_detected(key: &[u8; 16]) -> Self {
        Self::expand(key, Backend::detect())
    }

    /// SM4 under `key` on `backend`, or `None` if this CPU cannot run it (tests compare paths).
    pub fn with_backend(key: &[u8; 16], backend: Backend) -> Option<Self> {
        backend.is_available().then(|| Self::expand(key, backend))
    }

    fn expand(key: &[u8; 16], backend: Backend) -> Self {
        let word = |i: usize| {
            u32::from_be_bytes([key[4 * i], key[4 * i + 1], key[4 * i + 2], key[4 * i + 3]])
        };
        let mut k = [
            word(0) ^ FK[0],
            word(1) ^ FK[1],
            word(2) ^ FK[2],
            word(3) ^ FK[3],
        ];
        let mut round_keys = [0u32; 32];
        for (i, rk) in round_keys.iter_mut().enumerate() {
            let t = sbox_word(backend, k[1] ^ k[2] ^ k[3] ^ ck(i));
            let next = k[0] ^ t ^ t.rotate_left(13) ^ t.rotate_left(23);
            k = [k[1], k[2], k[3], next];
            *rk = next;
        }
        Self {
            round_keys,
            backend,
        }
    }

    /// The path in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Encrypt `blocks` in place (any number).
    pub fn encrypt_blocks(&self, blocks: &mut [[u8; 16]]) {
        #[cfg(target_arch = "x86_64")]
        if self.backend != Backend::Portable
            && x86::encrypt_blocks(self.backend, &self.round_keys, blocks)
        {
            return;
        }
        for block in blocks {
            portable::encrypt_block(&self.round_keys, block);
        }
    }

    /// Encrypt one block in place.
    pub fn encrypt_block(&self, block: &mut [u8; 16]) {
        self.encrypt_blocks(std::slice::from_mut(block));
    }
}

/// τ (four S-boxes) on one word, through the constant-time path when there is one.
fn sbox_word(backend: Backend, word: u32) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if backend != Backend::Portable
        && let Some(out) = x86::sbox_word(word)
    {
        return out;
    }
    let _ = backend;
    portable::tau(word)
}

impl KeySizeUser for Sm4 {
    type KeySize = U16;
}

impl KeyInit for Sm4 {
    fn new(key: &Key<Self>) -> Self {
        let key: [u8; 16] = (*key).into();
        Self::new_detected(&key)
    }
}

impl BlockSizeUser for Sm4 {
    type BlockSize = U16;
}

impl ParBlocksSizeUser for Sm4 {
    type ParBlocksSize = U32;
}

impl AlgorithmName for Sm4 {
    fn write_alg_name(f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sm4")
    }
}

impl BlockCipherEncrypt for Sm4 {
    fn encrypt_with_backend(&self, f: impl BlockCipherEncClosure<BlockSize = Self::BlockSize>) {
        f.call(self)
    }
}

impl BlockCipherEncBackend for Sm4 {
    fn encrypt_block(&self, mut block: InOut<'_, '_, Block<Self>>) {
        let mut b: [u8; 16] = (*block.get_in()).into();
        Sm4::encrypt_block(self, &mut b);
        block.get_out().copy_from_slice(&b);
    }

    fn encrypt_par_blocks(&self, mut blocks: InOut<'_, '_, ParBlocks<Self>>) {
        let mut buf = [[0u8; 16]; PAR_BLOCKS];
        for (dst, src) in buf.iter_mut().zip(blocks.get_in().iter()) {
            dst.copy_from_slice(src);
        }
        self.encrypt_blocks(&mut buf);
        for (dst, src) in blocks.get_out().iter_mut().zip(buf.iter()) {
            dst.copy_from_slice(src);
        }
    }

    fn encrypt_tail_blocks(&self, mut blocks: InOutBuf<'_, '_, Block<Self>>) {
        let mut buf = [[0u8; 16]; PAR_BLOCKS];
        let n = blocks.len().min(PAR_BLOCKS);
        for (dst, src) in buf.iter_mut().zip(blocks.get_in().iter()) {
            dst.copy_from_slice(src);
        }
        self.encrypt_blocks(&mut buf[..n]);
        for (dst, src) in blocks.get_out().iter_mut().zip(buf.iter()) {
            dst.copy_from_slice(src);
        }
    }
}
