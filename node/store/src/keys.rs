//! The node's secret keys: SM4 for personal data at rest, HMAC-SM3 for blind indexes and record
//! hashes. One 32-byte master secret in `<data-dir>/node.key` (mode 0600), created on first start;
//! subkeys are derived from it with HMAC-SM3.

use std::path::Path;

use rand::RngCore;
use xy_shangmi::{GCM_NONCE_LEN, HmacSm3, Sm4Gcm, derive_key};

use crate::StoreError;

/// The keys a node uses for personal data.
#[derive(Clone)]
pub struct NodeKeys {
    personal: Sm4Gcm,
    index: HmacSm3,
    fingerprint: [u8; 16],
}

impl std::fmt::Debug for NodeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeKeys(..)")
    }
}

impl NodeKeys {
    /// Keys derived from a 32-byte master secret.
    pub fn from_master(master: &[u8; 32]) -> Self {
        let sm4 = derive_key(master, "xinyong/personal-data/sm4-gcm");
        let index = derive_key(master, "xinyong/blind-index/hmac-sm3");
        let fingerprint = derive_key(master, "xinyong/content-fingerprint/siphash");
        Self {
            personal: match Sm4Gcm::new(&sm4[..16]) {
                Ok(k) => k,
                Err(_) => unreachable!("16-byte slice"),
            },
            index: HmacSm3::new(&index),
            fingerprint: fingerprint[..16].try_into().unwrap_or([0; 16]),
        }
    }

    /// Load `<dir>/node.key`, creating it with a fresh random secret if it does not exist.
    pub fn load_or_create(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join("node.key");
        let io = |e| StoreError::Io(path.display().to_string(), e);
        if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(io)?;
            let bytes = hex::decode(text.trim())
                .map_err(|_| StoreError::BadKeyFile(path.display().to_string()))?;
            let master: [u8; 32] = bytes
                .try_into()
                .map_err(|_| StoreError::BadKeyFile(path.display().to_string()))?;
            return Ok(Self::from_master(&master));
        }
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Io(dir.display().to_string(), e))?;
        let mut master = [0u8; 32];
        rand::rng().fill_bytes(&mut master);
        write_secret(&path, &hex::encode(master)).map_err(io)?;
        Ok(Self::from_master(&master))
    }

    /// Blind index of a personal identifier: HMAC-SM3 under the index key (hex). Equal inputs give
    /// equal indexes, so lookups work without decrypting; without the key the index reveals nothing.
    pub fn blind_index(&self, value: &str) -> String {
        self.keyed_hash(&[b"subject", value.as_bytes()])
    }

    /// Keyed hash of several parts (business keys, record content): HMAC-SM3 truncated to 128 bits,
    /// hex. 128 bits keep collisions out of reach for any store size while halving index entries.
    pub fn keyed_hash(&self, parts: &[&[u8]]) -> String {
        to_hex(&self.index.mac_parts(parts)[..16])
    }

    /// Content fingerprint for change detection (is a row identical to the stored version?):
    /// SipHash-2-4 with a 128-bit output under a secret key derived from the node key, hex. It is a
    /// keyed PRF, so its values reveal nothing of the (partly personal) content and cannot be
    /// forged into collisions without the key; it protects nothing else, and being several times
    /// faster than HMAC-SM3 over a whole record it keeps ingest fast. Integrity of what was stored
    /// is the data log's job (SM3 chain).
    pub fn fingerprint(&self, parts: &[&[u8]]) -> String {
        use siphasher::sip128::{Hasher128, SipHasher24};
        use std::hash::Hasher;
        let mut h = SipHasher24::new_with_key(&self.fingerprint);
        for part in parts {
            h.write(&(part.len() as u64).to_le_bytes());
            h.write(part);
        }
        to_hex(&h.finish128().as_bytes())
    }

    /// Seal personal data with SM4-GCM under a fresh random nonce, bound to `context`, as text:
    /// [`SEALED_BASE64_MARK`] and base64 (a third shorter than the hex of earlier versions).
    pub fn seal(&self, context: &[u8], plaintext: &[u8], rng: &mut impl RngCore) -> String {
        use base64::Engine as _;
        let mut nonce = [0u8; GCM_NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let sealed = self.personal.seal(&nonce, context, plaintext);
        let mut text = String::with_capacity(1 + sealed.len().div_ceil(3) * 4);
        text.push(SEALED_BASE64_MARK);
        base64::engine::general_purpose::STANDARD.encode_string(&sealed, &mut text);
        text
    }

    /// Open personal data sealed by [`NodeKeys::seal`] with the same `context` (base64 after
    /// the mark, or the hex that earlier versions wrote).
    pub fn open(&self, context: &[u8], sealed_text: &str) -> Result<Vec<u8>, StoreError> {
        use base64::Engine as _;
        let sealed = match sealed_text.strip_prefix(SEALED_BASE64_MARK) {
            Some(encoded) => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok(),
            None => from_hex(sealed_text),
        }
        .ok_or_else(|| StoreError::Corrupt("sealed data is neither base64 nor hex".into()))?;
        self.personal
            .open(context, &sealed)
            .map_err(|e| StoreError::Corrupt(format!("personal data: {e}")))
    }
}

/// Starts sealed data written as base64; hex, which earlier versions wrote, never contains it.
const SEALED_BASE64_MARK: char = '~';

/// Write a secret file readable by its owner only.
pub fn write_secret(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(content.as_bytes())?;
    f.sync_all()
}

/// Lower-case hex through `hex`'s table encoder (its `encode` builds the string a char at a time,
/// which showed in the return flow's profile: every sealed field and keyed hash goes through here).
fn to_hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    match hex::encode_to_slice(bytes, &mut out) {
        Ok(()) => String::from_utf8(out).unwrap_or_default(),
        Err(_) => hex::encode(bytes),
    }
}

/// Bytes of lower- or upper-case hex, a byte per table lookup pair (`hex::decode` works a
/// character at a time; every sealed field a flow sends is opened through here).
fn from_hex(text: &str) -> Option<Vec<u8>> {
    const INVALID: u8 = 0xff;
    const TABLE: [u8; 256] = {
        let mut t = [INVALID; 256];
        let mut i = 0;
        while i < 10 {
            t[b'0' as usize + i] = i as u8;
            i += 1;
        }
        let mut i = 0;
        while i < 6 {
            t[b'a' as usize + i] = 10 + i as u8;
            t[b'A' as usize + i] = 10 + i as u8;
            i += 1;
        }
        t
    };
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 2);
    for pair in bytes.chunks_exact(2) {
        let (high, low) = (TABLE[pair[0] as usize], TABLE[pair[1] as usize]);
        if high == INVALID || low == INVALID {
            return None;
        }
        out.push(high << 4 | low);
    }
    Some(out)
}

#[cfg(test)]
mod hex_tests {
    use super::{from_hex, to_hex};

    #[test]
    fn hex_round_trips_and_refuses_non_hex() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(from_hex(&to_hex(&bytes)).unwrap(), bytes);
        assert_eq!(from_hex("ABcd").unwrap(), [0xab, 0xcd]);
        for bad in ["a", "0g", "zz", "é0"] {
            assert!(from_hex(bad).is_none(), "{bad}");
        }
    }
}

#[cfg(test)]
mod sealed_tests {
    use super::{GCM_NONCE_LEN, NodeKeys, SEALED_BASE64_MARK, to_hex};
    use rand::SeedableRng;

    #[test]
    fn sealed_text_is_base64_and_hex_from_earlier_versions_still_opens() {
        let keys = NodeKeys::from_master(&[7u8; 32]);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let plain = "{\"CF_XDR_ZJHM\":\"11010519491231002X\"}".as_bytes();
        let sealed = keys.seal(b"ctx", plain, &mut rng);
        assert!(sealed.starts_with(SEALED_BASE64_MARK));
        assert!(!sealed.contains("110105"));
        assert_eq!(keys.open(b"ctx", &sealed).unwrap(), plain);
        assert!(keys.open(b"other", &sealed).is_err());
        // A third shorter than hex: 12-byte nonce + 16-byte tag + the plaintext.
        let raw = GCM_NONCE_LEN + 16 + plain.len();
        assert_eq!(sealed.len(), 1 + raw.div_ceil(3) * 4);
        // What earlier versions wrote: the same sealing, in hex.
        let old = to_hex(&keys.personal.seal(&[3u8; GCM_NONCE_LEN], b"ctx", plain));
        assert_eq!(keys.open(b"ctx", &old).unwrap(), plain);
        for bad in ["~not base64!", "~", "xyz", "~AAAA"] {
            assert!(keys.open(b"ctx", bad).is_err(), "{bad}");
        }
    }
}
