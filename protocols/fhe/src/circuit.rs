//! The encrypted computation: the requester's keys, each node's encrypted contributions, the
//! province's aggregation, and the requester's decryption.
//!
//! The province's circuit is small on purpose. Weights are public policy, so each node orients and
//! weights its values in the clear before encrypting (risk values as max − value), and every
//! contribution is non-negative. The province then needs
//! 1. one multi-operand sum of all contributions (`sum_ciphertexts_parallelized`: a carry-save
//!    tree with one final carry propagation, instead of one propagation per addition),
//! 2. one comparison with a constant per grade band, run in parallel; each yields an encrypted
//!    bit, and the bits are added without any bootstrapping (at most 3 fit one 2-bit block) —
//!    the grade is the number of bands reached,
//! 3. only if the score is asked for: a clamp (scalar max and min), in parallel with step 2.
//!
//! Band thresholds and clamp bounds are translated into the domain of the raw sum with the
//! public offset `base − nodes × Σ_risk max·weight`; a bound outside the sum's range needs no
//! comparison at all.

use rayon::prelude::*;
use tfhe::integer::{BooleanBlock, IntegerCiphertext, RadixCiphertext};
use tfhe::prelude::*;
use tfhe::safe_serialization::{safe_deserialize, safe_deserialize_conformant, safe_serialize};
use tfhe::{
    ClientKey, CompactCiphertextList, CompactPublicKey, CompressedServerKey, ConfigBuilder,
    FheUint2, FheUint16,
};

use crate::FheError;
use crate::policy::ScoringPolicy;

/// Blocks of a FheUint16 with the default 2-bit-message parameters.
const FHE_UINT16_BLOCKS: usize = 8;

/// Largest serialized compressed server key accepted (bytes).
pub const MAX_SERVER_KEY_BYTES: u64 = 1 << 30;
/// Largest serialized compact public key accepted (bytes).
pub const MAX_PUBLIC_KEY_BYTES: u64 = 64 << 20;
/// Largest serialized contribution or result accepted (bytes).
pub const MAX_CIPHERTEXT_BYTES: u64 = 64 << 20;

/// The requester's keys: the client key stays with the requester; the compressed server key and
/// the compact public key are uploaded once.
pub struct RequesterKeys {
    /// Decrypts results. Never leaves the requester.
    pub client_key: ClientKey,
    /// Lets the province compute (uploaded, compressed).
    pub server_key: CompressedServerKey,
    /// Lets nodes encrypt contributions (uploaded).
    pub public_key: CompactPublicKey,
}

impl RequesterKeys {
    /// Fresh keys with the default parameters (TFHE-rs' 128-bit secure defaults).
    pub fn generate() -> Self {
        let client_key = ClientKey::generate(ConfigBuilder::default().build());
        let server_key = CompressedServerKey::new(&client_key);
        let public_key = CompactPublicKey::new(&client_key);
        Self {
            client_key,
            server_key,
            public_key,
        }
    }

    /// All three keys serialized (the requester keeps them between runs; the client key is
    /// secret: store the bytes privately).
    pub fn to_bytes(&self) -> Result<[Vec<u8>; 3], FheError> {
        Ok([
            serialize(&self.client_key, MAX_SERVER_KEY_BYTES)?,
            serialize(&self.server_key, MAX_SERVER_KEY_BYTES)?,
            serialize(&self.public_key, MAX_PUBLIC_KEY_BYTES)?,
        ])
    }

    /// Keys from [`RequesterKeys::to_bytes`].
    pub fn from_bytes(parts: &[Vec<u8>; 3]) -> Result<Self, FheError> {
        let read = |what: &str, e: String| FheError::Refused(format!("{what}: {e}"));
        Ok(Self {
            client_key: safe_deserialize(parts[0].as_slice(), MAX_SERVER_KEY_BYTES)
                .map_err(|e| read("client key", e))?,
            server_key: safe_deserialize(parts[1].as_slice(), MAX_SERVER_KEY_BYTES)
                .map_err(|e| read("server key", e))?,
            public_key: safe_deserialize(parts[2].as_slice(), MAX_PUBLIC_KEY_BYTES)
                .map_err(|e| read("public key", e))?,
        })
    }

    /// The upload: serialized compressed server key and compact public key.
    pub fn upload(&self) -> Result<KeyUpload, FheError> {
        Ok(KeyUpload {
            server_key: serialize(&self.server_key, MAX_SERVER_KEY_BYTES)?,
            public_key: serialize(&self.public_key, MAX_PUBLIC_KEY_BYTES)?,
        })
    }
}

/// Serialized public parts of a requester's keys, as uploaded.
#[derive(Clone)]
pub struct KeyUpload {
    /// `CompressedServerKey`, safe-serialized.
    pub server_key: Vec<u8>,
    /// `CompactPublicKey`, safe-serialized.
    pub public_key: Vec<u8>,
}

impl KeyUpload {
    /// The key id: SM3 over both parts, so a cached upload is found again and never re-sent.
    pub fn key_id(&self) -> String {
        let mut h = xy_shangmi::Sm3Hasher::new();
        h.update(&(self.server_key.len() as u64).to_be_bytes());
        h.update(&self.server_key);
        h.update(&self.public_key);
        h.finish().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Total bytes uploaded.
    pub fn len(&self) -> usize {
        self.server_key.len() + self.public_key.len()
    }

    /// Whether the upload is empty (never, for a real upload).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn serialize<T: serde::Serialize + tfhe::Versionize + tfhe::named::Named>(
    value: &T,
    limit: u64,
) -> Result<Vec<u8>, FheError> {
    let mut out = Vec::new();
    safe_serialize(value, &mut out, limit).map_err(|e| FheError::Serialization(e.to_string()))?;
    Ok(out)
}

/// The province's evaluation key, decompressed from an upload (seconds; cache it).
pub struct EvaluationKey {
    /// The decompressed key; the circuit reaches its integer key through `AsRef` (no copy).
    server_key: tfhe::ServerKey,
    public_key: CompactPublicKey,
}

impl EvaluationKey {
    /// Check and decompress an upload. Malformed or non-conformant keys are refused.
    pub fn from_upload(upload: &KeyUpload) -> Result<Self, FheError> {
        let config = ConfigBuilder::default().build();
        let compressed: CompressedServerKey = safe_deserialize_conformant(
            upload.server_key.as_slice(),
            MAX_SERVER_KEY_BYTES,
            &config.into(),
        )
        .map_err(|e| FheError::Refused(format!("server key: {e}")))?;
        let public_key = parse_public_key(&upload.public_key)?;
        Ok(Self {
            server_key: compressed.decompress(),
            public_key,
        })
    }

    /// The compact public key nodes encrypt under.
    pub fn public_key(&self) -> &CompactPublicKey {
        &self.public_key
    }
}

/// Parse a serialized compact public key (nodes receive it with each request).
pub fn parse_public_key(bytes: &[u8]) -> Result<CompactPublicKey, FheError> {
    safe_deserialize(bytes, MAX_PUBLIC_KEY_BYTES)
        .map_err(|e| FheError::Refused(format!("public key: {e}")))
}

/// Serialize a node's public key for forwarding.
pub fn serialize_public_key(key: &CompactPublicKey) -> Result<Vec<u8>, FheError> {
    serialize(key, MAX_PUBLIC_KEY_BYTES)
}

/// A node's contribution: its indicator values (policy order), oriented, weighted and encrypted
/// under the requester's compact public key, as one compact list.
pub fn encrypt_contribution(
    policy: &ScoringPolicy,
    public_key: &CompactPublicKey,
    values: &[u16],
) -> Result<Vec<u8>, FheError> {
    if values.len() != policy.indicators.len() {
        return Err(FheError::Refused(format!(
            "{} values for {} indicators",
            values.len(),
            policy.indicators.len()
        )));
    }
    let mut builder = CompactCiphertextList::builder(public_key);
    for (indicator, value) in policy.indicators.iter().zip(values) {
        builder.push(indicator.contribution(*value));
    }
    serialize(&builder.build(), MAX_CIPHERTEXT_BYTES)
}

/// The encrypted answer to the requester.
pub struct EncryptedScore {
    /// Number of band thresholds reached (0..=bands), safe-serialized `FheUint2`.
    pub grade: Vec<u8>,
    /// Clamped raw sum, safe-serialized `FheUint16`, if asked; score = raw + `offset`.
    pub raw_score: Option<Vec<u8>>,
    /// Public: score = decrypted raw + offset.
    pub offset: i64,
    /// Nodes that contributed.
    pub nodes: usize,
}

enum Threshold {
    Always,
    Never,
    AtLeast(u64),
}

/// The province's aggregation over the contributions of `contributions.len()` nodes.
pub fn aggregate(
    policy: &ScoringPolicy,
    key: &EvaluationKey,
    contributions: &[Vec<u8>],
    want_score: bool,
) -> Result<EncryptedScore, FheError> {
    let nodes = contributions.len();
    if nodes == 0 {
        return Err(FheError::Refused("no contributions".into()));
    }
    if nodes > policy.score.max_nodes as usize {
        return Err(FheError::Refused(format!(
            "{nodes} contributions exceed the policy's max_nodes {}",
            policy.score.max_nodes
        )));
    }
    let mut operands = expand_contributions(policy, key, contributions)?;
    let sks: &tfhe::integer::ServerKey = key.server_key.as_ref();
    let offset = policy.offset(nodes);
    let raw_max = policy.raw_max(nodes);
    // Every contribution and the sum fit in `needed` blocks: the blocks above encrypt zeros, and
    // dropping them makes every later step cheaper.
    let bits_per_block = sks.message_modulus().0.ilog2() as usize;
    let needed = ((64 - (raw_max.max(1) as u64).leading_zeros()) as usize).div_ceil(bits_per_block);
    for operand in &mut operands {
        let excess = operand.blocks().len().saturating_sub(needed);
        if excess > 0 {
            sks.trim_radix_blocks_msb_assign(operand, excess);
        }
    }
    let sum = sum_clean(sks, operands)?;
    let to_raw = |bound: i64| -> Threshold {
        let raw = bound - offset;
        if raw <= 0 {
            Threshold::Always
        } else if raw > raw_max {
            Threshold::Never
        } else {
            Threshold::AtLeast(raw as u64)
        }
    };
    let thresholds: Vec<Threshold> = policy.score.bands.iter().map(|b| to_raw(b.from)).collect();
    let clamp = || -> RadixCiphertext {
        let mut value = sum.clone();
        if let Threshold::AtLeast(lo) = to_raw(policy.score.min) {
            value = sks.scalar_max_parallelized(&value, lo);
        }
        let hi = policy.score.max - offset;
        if hi < raw_max {
            value = sks.scalar_min_parallelized(&value, hi.max(0) as u64);
        }
        value
    };
    let (bits, raw_score) = rayon::join(
        || {
            thresholds
                .par_iter()
                .map(|t| match t {
                    Threshold::Always => sks.create_trivial_boolean_block(true),
                    Threshold::Never => sks.create_trivial_boolean_block(false),
                    Threshold::AtLeast(v) => sks.scalar_ge_parallelized(&sum, *v),
                })
                .collect::<Vec<BooleanBlock>>()
        },
        || want_score.then(clamp),
    );
    let mut grade: RadixCiphertext = sks.create_trivial_zero_radix(1);
    for bit in bits {
        let bit: RadixCiphertext = bit.into_radix(1, sks);
        // At most three bits of value 1: the block's message space (0..=3) holds the sum, no
        // bootstrapping needed.
        sks.unchecked_add_assign(&mut grade, &bit);
    }
    let grade = FheUint2::from_raw_parts(
        grade,
        Default::default(),
        Default::default(),
        Default::default(),
    );
    let raw_score = raw_score
        .map(|mut r| {
            // Back to the 16-bit width the requester decrypts.
            let missing = FHE_UINT16_BLOCKS.saturating_sub(r.blocks().len());
            sks.extend_radix_with_trivial_zero_blocks_msb_assign(&mut r, missing);
            serialize(
                &FheUint16::from_raw_parts(
                    r,
                    Default::default(),
                    Default::default(),
                    Default::default(),
                ),
                MAX_CIPHERTEXT_BYTES,
            )
        })
        .transpose()?;
    Ok(EncryptedScore {
        grade: serialize(&grade, MAX_CIPHERTEXT_BYTES)?,
        raw_score,
        offset,
        nodes,
    })
}

/// The sum of clean ciphertexts: groups of as many operands as a block's carry space holds are
/// added without bootstrapping, then propagated once per group, in parallel; repeated until one
/// remains. (`sum_ciphertexts_parallelized` is slower here for a few operands.)
fn sum_clean(
    sks: &tfhe::integer::ServerKey,
    mut operands: Vec<RadixCiphertext>,
) -> Result<RadixCiphertext, FheError> {
    if operands.is_empty() {
        return Err(FheError::Refused("nothing to add".into()));
    }
    let message = sks.message_modulus().0;
    let capacity = (message * sks.carry_modulus().0 - 1) / (message - 1);
    let per_group = (capacity as usize).max(2);
    while operands.len() > 1 {
        operands = operands
            .par_chunks(per_group)
            .map(|group| {
                let mut acc = group[0].clone();
                for operand in &group[1..] {
                    sks.unchecked_add_assign(&mut acc, operand);
                }
                if group.len() > 1 {
                    sks.full_propagate_parallelized(&mut acc);
                }
                acc
            })
            .collect();
    }
    operands
        .pop()
        .ok_or_else(|| FheError::Refused("nothing to add".into()))
}

/// Expand every node's compact list into its radix ciphertexts (refusing lists of the wrong
/// length or parameters).
fn expand_contributions(
    policy: &ScoringPolicy,
    key: &EvaluationKey,
    contributions: &[Vec<u8>],
) -> Result<Vec<RadixCiphertext>, FheError> {
    let n = policy.indicators.len();
    tfhe::set_server_key(key.server_key.clone());
    let mut operands = Vec::with_capacity(contributions.len() * n);
    for (node, bytes) in contributions.iter().enumerate() {
        let list: CompactCiphertextList = safe_deserialize(bytes.as_slice(), MAX_CIPHERTEXT_BYTES)
            .map_err(|e| FheError::Refused(format!("contribution {node}: {e}")))?;
        if list.len() != n {
            return Err(FheError::Refused(format!(
                "contribution {node} holds {} values, the policy has {n}",
                list.len()
            )));
        }
        let expanded = list
            .expand()
            .map_err(|e| FheError::Refused(format!("contribution {node}: {e}")))?;
        for i in 0..n {
            let value: FheUint16 = expanded
                .get(i)
                .map_err(|e| FheError::Refused(format!("contribution {node}, value {i}: {e}")))?
                .ok_or_else(|| {
                    FheError::Refused(format!("contribution {node}, value {i} missing"))
                })?;
            let (radix, ..) = value.into_raw_parts();
            operands.push(radix);
        }
    }
    Ok(operands)
}

/// The requester's reading of an answer: the grade and, if sent, the clamped score.
pub fn decrypt(
    policy: &ScoringPolicy,
    client_key: &ClientKey,
    answer: &EncryptedScore,
) -> Result<(String, Option<i64>), FheError> {
    let grade: FheUint2 = safe_deserialize(answer.grade.as_slice(), MAX_CIPHERTEXT_BYTES)
        .map_err(|e| FheError::Refused(format!("grade: {e}")))?;
    let passed: u8 = grade.decrypt(client_key);
    let score = match &answer.raw_score {
        Some(bytes) => {
            let raw: FheUint16 = safe_deserialize(bytes.as_slice(), MAX_CIPHERTEXT_BYTES)
                .map_err(|e| FheError::Refused(format!("score: {e}")))?;
            let raw: u16 = raw.decrypt(client_key);
            Some(i64::from(raw) + answer.offset)
        }
        None => None,
    };
    Ok((
        policy
            .grade_for_thresholds_passed(usize::from(passed))
            .to_owned(),
        score,
    ))
}
