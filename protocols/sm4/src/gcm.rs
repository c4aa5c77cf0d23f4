//! SM4-GCM (NIST SP 800-38D with SM4, the AEAD of TLS_SM4_GCM_SM3): CTR over [`Sm4`] in batches
//! of 32 blocks (so the vector paths always get full registers, tails included, and the tag mask
//! E(K, J0) rides in the first batch), GHASH with CLMUL through the `ghash`/`polyval` crates.
//! 96-bit nonces, 128-bit tags. Safe code only.

use aead::consts::{U12, U16};
use aead::inout::InOutBuf;
use aead::{AeadCore, AeadInOut, Error, Nonce, Tag, TagPosition};
use cipher::{Key, KeyInit, KeySizeUser};
use ghash::GHash;
use ghash::universal_hash::UniversalHash;

use crate::{PAR_BLOCKS, Sm4};

/// Longest message GCM allows under one nonce: 2^32 − 2 blocks.
const MAX_MESSAGE: u64 = (1 << 36) - 32;

/// SM4-GCM with 96-bit nonces and 128-bit tags.
#[derive(Clone)]
pub struct Sm4Gcm {
    cipher: Sm4,
    ghash: GHash,
}

impl std::fmt::Debug for Sm4Gcm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sm4Gcm")
            .field("backend", &self.cipher.backend())
            .finish_non_exhaustive()
    }
}

impl Sm4Gcm {
    /// SM4-GCM over an expanded SM4 key (on whatever path it runs).
    pub fn from_cipher(cipher: Sm4) -> Self {
        let mut h = [0u8; 16];
        cipher.encrypt_block(&mut h);
        Self {
            ghash: GHash::new(&h.into()),
            cipher,
        }
    }

    /// XOR the CTR keystream (counter blocks inc32(J0), inc32²(J0), …) into `data`; returns
    /// E(K, J0), computed in the first batch.
    fn apply_ctr(&self, j0: &[u8; 16], data: &mut [u8]) -> [u8; 16] {
        let base = u32::from_be_bytes([j0[12], j0[13], j0[14], j0[15]]);
        let mut counter = 0u32; // blocks generated so far, J0 itself being block 0
        let mut mask = [0u8; 16];
        let mut batch = [[0u8; 16]; PAR_BLOCKS];
        let mut rest = data;
        loop {
            let first = counter == 0;
            let wanted = rest.len().div_ceil(16) + usize::from(first);
            let n = wanted.min(PAR_BLOCKS);
            for block in batch.iter_mut().take(n) {
                block[..12].copy_from_slice(&j0[..12]);
                block[12..].copy_from_slice(&base.wrapping_add(counter).to_be_bytes());
                counter = counter.wrapping_add(1);
            }
            self.cipher.encrypt_blocks(&mut batch[..n]);
            let mut keystream = &batch[..n];
            if first {
                mask = keystream[0];
                keystream = &keystream[1..];
            }
            let take = (keystream.len() * 16).min(rest.len());
            let (now, later) = rest.split_at_mut(take);
            for (chunk, key) in now.chunks_mut(16).zip(keystream) {
                for (byte, k) in chunk.iter_mut().zip(key) {
                    *byte ^= k;
                }
            }
            rest = later;
            if rest.is_empty() {
                return mask;
            }
        }
    }

    fn tag(&self, mask: &[u8; 16], aad: &[u8], ciphertext: &[u8]) -> [u8; 16] {
        let mut ghash = self.ghash.clone();
        ghash.update_padded(aad);
        ghash.update_padded(ciphertext);
        let mut lengths = [0u8; 16];
        lengths[..8].copy_from_slice(&((aad.len() as u64) * 8).to_be_bytes());
        lengths[8..].copy_from_slice(&((ciphertext.len() as u64) * 8).to_be_bytes());
        ghash.update(&[lengths.into()]);
        let mut tag: [u8; 16] = ghash.finalize().into();
        for (t, m) in tag.iter_mut().zip(mask) {
            *t ^= m;
        }
        tag
    }
}

fn j0(nonce: &Nonce<Sm4Gcm>) -> [u8; 16] {
    let mut j0 = [0u8; 16];
    j0[..12].copy_from_slice(nonce);
    j0[15] = 1;
    j0
}

impl KeySizeUser for Sm4Gcm {
    type KeySize = U16;
}

impl KeyInit for Sm4Gcm {
    fn new(key: &Key<Self>) -> Self {
        let key: [u8; 16] = (*key).into();
        Self::from_cipher(Sm4::new_detected(&key))
    }
}

impl AeadCore for Sm4Gcm {
    type NonceSize = U12;
    type TagSize = U16;
    const TAG_POSITION: TagPosition = TagPosition::Postfix;
}

impl AeadInOut for Sm4Gcm {
    fn encrypt_inout_detached(
        &self,
        nonce: &Nonce<Self>,
        aad: &[u8],
        buffer: InOutBuf<'_, '_, u8>,
    ) -> Result<Tag<Self>, Error> {
        if buffer.len() as u64 > MAX_MESSAGE || aad.len() as u64 > MAX_MESSAGE {
            return Err(Error);
        }
        let j0 = j0(nonce);
        let data = buffer.into_out_with_copied_in();
        let mask = self.apply_ctr(&j0, data);
        Ok(self.tag(&mask, aad, data).into())
    }

    fn decrypt_inout_detached(
        &self,
        nonce: &Nonce<Self>,
        aad: &[u8],
        buffer: InOutBuf<'_, '_, u8>,
        tag: &Tag<Self>,
    ) -> Result<(), Error> {
        if buffer.len() as u64 > MAX_MESSAGE || aad.len() as u64 > MAX_MESSAGE {
            return Err(Error);
        }
        let j0 = j0(nonce);
        let data = buffer.into_out_with_copied_in();
        // The tag covers the ciphertext: compute it first, decrypt only what authenticates.
        let mut mask = j0;
        self.cipher.encrypt_block(&mut mask);
        let expected = self.tag(&mask, aad, data);
        let difference = expected
            .iter()
            .zip(tag.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if std::hint::black_box(difference) != 0 {
            return Err(Error);
        }
        self.apply_ctr(&j0, data);
        Ok(())
    }
}
