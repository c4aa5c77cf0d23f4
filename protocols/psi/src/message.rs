//! PSI messages and their byte encoding (one message per transport frame). The decoder checks
//! every length against the bytes present and the limits below, so a hostile peer gets an error,
//! never a panic or a huge allocation.

use crate::PsiError;

/// Protocol version.
pub const VERSION: u8 = 1;
/// Most points in one batch.
pub const MAX_BATCH: usize = 1 << 16;
/// Most elements in a set.
pub const MAX_SET: u64 = 1 << 30;

/// Which suite a run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Suite {
    /// Ristretto255 with SHA-512 hashing (fast).
    Ristretto255,
    /// SM2 with SM3 try-and-increment (compliant).
    Sm2,
}

/// What the run reveals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// The intersection, to the initiator only.
    One,
    /// The intersection, to both sides.
    Both,
    /// Its size only, to the initiator (PSI-CA).
    Cardinality,
}

/// Whose elements a batch carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The initiator's set.
    Initiator,
    /// The responder's set.
    Responder,
}

/// One protocol message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Initiator → responder: suite, mode and the size of its set.
    Hello {
        /// Suite.
        suite: Suite,
        /// Mode.
        mode: Mode,
        /// Elements the initiator will send.
        count: u64,
    },
    /// Responder → initiator: the size of its set.
    HelloAck {
        /// Elements the responder will send.
        count: u64,
    },
    /// First-stage points (32 bytes each) of one side's elements, in order.
    Blinded {
        /// Whose elements.
        side: Side,
        /// Concatenated 32-byte encodings.
        points: Vec<u8>,
    },
    /// Second-stage values (truncated, `width` bytes each) of one side's elements.
    DoubleBlinded {
        /// Whose elements.
        side: Side,
        /// Bytes per value.
        width: u8,
        /// Concatenated values.
        values: Vec<u8>,
    },
    /// The end of one side's stream of a stage.
    Done {
        /// Whose stream ended.
        side: Side,
    },
    /// The peer gives up, with a reason.
    Abort {
        /// Why.
        reason: String,
    },
}

fn suite_byte(s: Suite) -> u8 {
    match s {
        Suite::Ristretto255 => 1,
        Suite::Sm2 => 2,
    }
}

fn mode_byte(m: Mode) -> u8 {
    match m {
        Mode::One => 1,
        Mode::Both => 2,
        Mode::Cardinality => 3,
    }
}

fn side_byte(s: Side) -> u8 {
    match s {
        Side::Initiator => 1,
        Side::Responder => 2,
    }
}

fn side_of(b: u8) -> Result<Side, PsiError> {
    match b {
        1 => Ok(Side::Initiator),
        2 => Ok(Side::Responder),
        _ => Err(PsiError::Malformed("unknown side")),
    }
}

impl Message {
    /// Encode.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        match self {
            Message::Hello { suite, mode, count } => {
                out.extend_from_slice(&[1, suite_byte(*suite), mode_byte(*mode)]);
                out.extend_from_slice(&count.to_be_bytes());
            }
            Message::HelloAck { count } => {
                out.push(2);
                out.extend_from_slice(&count.to_be_bytes());
            }
            Message::Blinded { side, points } => {
                out.extend_from_slice(&[3, side_byte(*side)]);
                out.extend_from_slice(points);
            }
            Message::DoubleBlinded {
                side,
                width,
                values,
            } => {
                out.extend_from_slice(&[4, side_byte(*side), *width]);
                out.extend_from_slice(values);
            }
            Message::Done { side } => out.extend_from_slice(&[5, side_byte(*side)]),
            Message::Abort { reason } => {
                out.push(6);
                out.extend_from_slice(reason.as_bytes());
            }
        }
        out
    }

    /// Decode, checking every length.
    pub fn decode(bytes: &[u8]) -> Result<Self, PsiError> {
        let [version, kind, rest @ ..] = bytes else {
            return Err(PsiError::Malformed("message shorter than its header"));
        };
        if *version != VERSION {
            return Err(PsiError::Malformed("unsupported PSI protocol version"));
        }
        let count = |b: &[u8]| -> Result<u64, PsiError> {
            let arr: [u8; 8] = b
                .try_into()
                .map_err(|_| PsiError::Malformed("count is not 8 bytes"))?;
            let c = u64::from_be_bytes(arr);
            if c > MAX_SET {
                return Err(PsiError::Malformed("set size beyond the limit"));
            }
            Ok(c)
        };
        match (*kind, rest) {
            (1, [suite, mode, c @ ..]) => Ok(Message::Hello {
                suite: match suite {
                    1 => Suite::Ristretto255,
                    2 => Suite::Sm2,
                    _ => return Err(PsiError::Malformed("unknown suite")),
                },
                mode: match mode {
                    1 => Mode::One,
                    2 => Mode::Both,
                    3 => Mode::Cardinality,
                    _ => return Err(PsiError::Malformed("unknown mode")),
                },
                count: count(c)?,
            }),
            (2, c) => Ok(Message::HelloAck { count: count(c)? }),
            (3, [side, points @ ..]) => {
                if points.len() % 32 != 0 || points.len() / 32 > MAX_BATCH {
                    return Err(PsiError::Malformed(
                        "a batch of points is not a whole number of 32-byte points within the limit",
                    ));
                }
                Ok(Message::Blinded {
                    side: side_of(*side)?,
                    points: points.to_vec(),
                })
            }
            (4, [side, width, values @ ..]) => {
                if !(12..=32).contains(width)
                    || values.len() % usize::from(*width) != 0
                    || values.len() / usize::from(*width) > MAX_BATCH
                {
                    return Err(PsiError::Malformed(
                        "a batch of values does not fit its width",
                    ));
                }
                Ok(Message::DoubleBlinded {
                    side: side_of(*side)?,
                    width: *width,
                    values: values.to_vec(),
                })
            }
            (5, [side]) => Ok(Message::Done {
                side: side_of(*side)?,
            }),
            (6, reason) => Ok(Message::Abort {
                reason: String::from_utf8_lossy(&reason[..reason.len().min(1024)]).into_owned(),
            }),
            _ => Err(PsiError::Malformed("unknown message kind or wrong length")),
        }
    }
}
