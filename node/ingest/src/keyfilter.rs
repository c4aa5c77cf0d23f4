//! A Bloom filter over business-key hashes, so that a batch into a store that was empty when it
//! began looks up only keys it may already have written, instead of every key. A key the filter has
//! not seen is certainly new; a key it has seen (or a false positive) is looked up in the store as
//! before, so results are exact. When the store was not empty the filter is inactive and every key
//! is looked up. Fixed size (2 MiB): past a few million keys false positives grow and the filter
//! degrades into looking everything up, never into a wrong answer.

const BITS: usize = 1 << 24;
const PROBES: u64 = 7;

pub(crate) struct KeyFilter {
    bits: Vec<u64>,
    active: bool,
}

impl KeyFilter {
    pub(crate) fn new(active: bool) -> Self {
        Self {
            bits: if active {
                vec![0; BITS / 64]
            } else {
                Vec::new()
            },
            active,
        }
    }

    /// Two 64-bit hashes from the key hash (hex of a keyed PRF output, so already uniform).
    fn hashes(key_hex: &str) -> Option<(u64, u64)> {
        let h1 = u64::from_str_radix(key_hex.get(0..16)?, 16).ok()?;
        let h2 = u64::from_str_radix(key_hex.get(16..32)?, 16).ok()?;
        Some((h1, h2 | 1))
    }

    fn positions(h: (u64, u64)) -> impl Iterator<Item = usize> {
        (0..PROBES).map(move |i| (h.0.wrapping_add(i.wrapping_mul(h.1)) % BITS as u64) as usize)
    }

    pub(crate) fn may_contain(&self, key_hex: &str) -> bool {
        if !self.active {
            return true;
        }
        match Self::hashes(key_hex) {
            Some(h) => Self::positions(h).all(|p| self.bits[p / 64] & (1 << (p % 64)) != 0),
            None => true,
        }
    }

    pub(crate) fn insert(&mut self, key_hex: &str) {
        if !self.active {
            return;
        }
        if let Some(h) = Self::hashes(key_hex) {
            for p in Self::positions(h) {
                self.bits[p / 64] |= 1 << (p % 64);
            }
        }
    }
}
