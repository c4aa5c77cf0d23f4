//! A Bloom filter over business-key hashes, so that a batch into a store that was empty when it
//! began looks up only keys it may already have written, instead of every key. A key the filter has
//! not seen is certainly new; a key it has seen (or a false positive) is looked up in the store as
//! before, so results are exact. When the store was not empty the filter is inactive and every key
//! is looked up. Fixed size (2 MiB): past a few million keys false positives grow and the filter
//! degrades into looking everything up, never into a wrong answer.
//!
//! Blocked: all of a key's bits lie in one 64-byte block, so a test or an insert touches one cache
//! line instead of seven scattered ones (the seven misses per key showed in the ingest's profile).

const BLOCKS: usize = 1 << 15;
const WORDS_PER_BLOCK: usize = 8;
const PROBES: u32 = 7;

pub(crate) struct KeyFilter {
    words: Vec<u64>,
    active: bool,
}

impl KeyFilter {
    pub(crate) fn new(active: bool) -> Self {
        Self {
            words: if active {
                vec![0; BLOCKS * WORDS_PER_BLOCK]
            } else {
                Vec::new()
            },
            active,
        }
    }

    /// The block and the bit in it (word index and mask) of each probe, from the key hash (hex of
    /// a keyed PRF output, so already uniform). `None` for a key that is not 32 hex digits.
    fn probes(key_hex: &str) -> Option<[(usize, u64); PROBES as usize]> {
        let hex = key_hex.as_bytes().get(..32)?;
        let (h1, h2) = (parse_hex_u64(&hex[..16])?, parse_hex_u64(&hex[16..])?);
        let block = (h1 as usize % BLOCKS) * WORDS_PER_BLOCK;
        // Each probe takes 9 bits of the second half: 3 for the word, 6 for the bit.
        Some(std::array::from_fn(|i| {
            let bits = h2 >> (9 * i as u32);
            (block + (bits & 7) as usize, 1u64 << ((bits >> 3) & 63))
        }))
    }

    pub(crate) fn may_contain(&self, key_hex: &str) -> bool {
        if !self.active {
            return true;
        }
        match Self::probes(key_hex) {
            Some(probes) => probes.iter().all(|&(w, m)| self.words[w] & m != 0),
            None => true,
        }
    }

    pub(crate) fn insert(&mut self, key_hex: &str) {
        if !self.active {
            return;
        }
        if let Some(probes) = Self::probes(key_hex) {
            for (w, m) in probes {
                self.words[w] |= m;
            }
        }
    }
}

/// 16 hex digits (either case) as a number; `None` if any is not a hex digit.
fn parse_hex_u64(hex: &[u8]) -> Option<u64> {
    hex.iter().try_fold(0u64, |acc, &c| {
        let digit = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        Some(acc << 4 | u64::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> String {
        // Uniform like a PRF output: a multiplicative hash of the counter.
        let a = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i >> 7);
        let b = a.rotate_left(29).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        format!("{a:016x}{b:016x}")
    }

    #[test]
    fn an_inserted_key_is_always_found() {
        let mut f = KeyFilter::new(true);
        for i in 0..100_000 {
            f.insert(&key(i));
        }
        assert!((0..100_000).all(|i| f.may_contain(&key(i))));
    }

    #[test]
    fn unseen_keys_are_mostly_absent_at_a_million_keys() {
        let mut f = KeyFilter::new(true);
        for i in 0..1_000_000 {
            f.insert(&key(i));
        }
        let false_positives = (1_000_000..1_100_000)
            .filter(|&i| f.may_contain(&key(i)))
            .count();
        // About 0.2% expected at 16.8 bits a key; a lookup per false positive is the only cost.
        assert!(false_positives < 1_000, "{false_positives} of 100000");
    }

    #[test]
    fn hex_case_does_not_matter() {
        let mut f = KeyFilter::new(true);
        f.insert(&key(5).to_uppercase());
        assert!(f.may_contain(&key(5)));
    }

    #[test]
    fn keys_that_are_not_hex_are_always_looked_up() {
        let mut f = KeyFilter::new(true);
        f.insert("not a key");
        assert!(f.may_contain("not a key"));
        assert!(f.may_contain(&"g".repeat(32)));
        assert!(f.may_contain("abc"));
    }

    #[test]
    fn an_inactive_filter_sends_every_key_to_the_store() {
        let f = KeyFilter::new(false);
        assert!(f.may_contain(&key(3)));
    }
}
