//! Encrypted cross-jurisdiction credit scoring (system X3) with TFHE: a scoring policy of
//! indicators, ranges, weights and grade bands ([`policy`]); each node's contribution encrypted
//! under the requester's compact public key; the province's homomorphic aggregation (sum, clamp,
//! banding) that sees no plaintext; the requester's decryption ([`circuit`]).
//!
//! Sans-IO: records, dates and keys are arguments. TFHE-rs draws its encryption and key-generation
//! randomness from its own seeded CSPRNG, which this crate cannot pass in.

pub mod circuit;
pub mod policy;

pub use circuit::{
    EncryptedScore, EvaluationKey, KeyUpload, RequesterKeys, aggregate, decrypt,
    encrypt_contribution,
};
pub use policy::{Direction, Indicator, PlainResult, RecordFacts, ScoringPolicy};

/// Errors of scoring.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FheError {
    /// The policy file is invalid; the text names the problem.
    #[error("scoring policy: {0}")]
    Policy(String),
    /// An input (key, contribution, answer) was refused; the text names the cause.
    #[error("refused: {0}")]
    Refused(String),
    /// A value could not be serialized.
    #[error("serialization: {0}")]
    Serialization(String),
}
