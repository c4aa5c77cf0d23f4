//! ECDH private set intersection for xinyong nodes (system X2), sans-IO: the two sides are
//! state machines fed with [`Message`]s and randomness; sockets and clocks are the caller's.
//!
//! With keys α (initiator) and β (responder) in a prime-order group ([`group`]):
//! 1. the initiator sends H(x)^α for each of its elements (32-byte first-stage points);
//! 2. the responder returns H(x)^αβ truncated to `width` bytes (at least 96 bits and
//!    log₂(m·n) + 40), in order — or shuffled, when only the size is to be learnt — and sends
//!    H(y)^β for each of its own elements;
//! 3. the initiator raises those to α, truncates, and intersects; with [`Mode::Both`] it sends the
//!    truncated H(y)^βα back, so the responder learns the intersection too.
//!
//! Work goes in batches (at most [`message::MAX_BATCH`] points, spread over all cores with rayon),
//! so a set of ten million never sits in memory as points: only 12–13-byte truncations are kept.
//! Every point from the peer is validated before it is multiplied; counts are checked against what
//! the peer announced.

pub mod group;
pub mod message;
pub mod pir;
pub mod query;
mod reader;

use std::collections::HashSet;

use rayon::prelude::*;

pub use group::{POINT_LEN, PsiGroup, Ristretto255, Sm2Sm3};
pub use message::{Message, Mode, Side, Suite};

/// Errors of a PSI run. Each ends the run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PsiError {
    /// A point from the peer is not a valid group element.
    #[error("invalid point from the peer: {0}")]
    InvalidPoint(&'static str),
    /// A message is not well formed.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// A message arrived out of order, or counts do not match what was announced.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The run ended before it was complete (the peer stopped half-way).
    #[error("incomplete run: {0}")]
    Incomplete(String),
    /// The peer aborted.
    #[error("the peer aborted: {0}")]
    Aborted(String),
}

/// Points per batch by default.
pub const DEFAULT_BATCH: usize = 4096;

/// Bytes of a second-stage value for sets of `m` and `n` elements: at least 12 (96 bits) and
/// ⌈(log₂(m·n) + 40) / 8⌉.
pub fn truncation_width(m: u64, n: u64) -> usize {
    let product = u128::from(m.max(1)) * u128::from(n.max(1));
    let log2 = 128 - (product - 1).leading_zeros().min(127) as usize;
    (log2 + 40).div_ceil(8).clamp(12, 16)
}

fn truncate(point: &[u8; POINT_LEN], width: usize) -> u128 {
    let mut v = [0u8; 16];
    v[..width].copy_from_slice(&point[..width]);
    u128::from_le_bytes(v)
}

fn values_to_bytes(values: &[u128], width: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * width);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes()[..width]);
    }
    out
}

fn bytes_to_values(bytes: &[u8], width: usize) -> impl Iterator<Item = u128> + '_ {
    bytes.chunks_exact(width).map(move |c| {
        let mut v = [0u8; 16];
        v[..width].copy_from_slice(c);
        u128::from_le_bytes(v)
    })
}

/// Points per unit of parallel work: large enough for a group to share work across a run
/// ([`PsiGroup::mul_and_encode`]), small enough to spread a batch over the cores.
pub const RUN: usize = 512;

/// H(e)^k for a batch of elements, on all cores.
fn blind<G: PsiGroup>(key: &G::Scalar, elements: &[Vec<u8>]) -> Vec<u8> {
    let runs: Vec<Vec<[u8; POINT_LEN]>> = elements
        .par_chunks(RUN)
        .map(|run| {
            let points = G::hash_to_points(run);
            G::mul_and_encode(&points, key)
        })
        .collect();
    runs.concat().concat()
}

/// Validate and raise a batch of peer points to `key`, truncated; an invalid point fails the
/// batch before anything is multiplied.
fn reblind<G: PsiGroup>(
    key: &G::Scalar,
    points: &[u8],
    width: usize,
) -> Result<Vec<u128>, PsiError> {
    // A batch that ends inside a point fails in its last run (`decode_run`).
    let decoded: Vec<Vec<G::Point>> = points
        .par_chunks(POINT_LEN * RUN)
        .map(G::decode_run)
        .collect::<Result<_, _>>()?;
    Ok(decoded
        .par_iter()
        .flat_map_iter(|run| {
            G::mul_and_encode(run, key)
                .into_iter()
                .map(|encoded| truncate(&encoded, width))
        })
        .collect())
}

/// One side of a run, as a driver sees it: feed it the peer's messages, send what it produces,
/// until it is complete.
pub trait Party {
    /// Take a message from the peer; returns messages to send back.
    fn handle(&mut self, message: Message) -> Result<Vec<Message>, PsiError>;
    /// The next message to send on its own initiative (its first-stage batches, then their end),
    /// or `None` when there is nothing to send now.
    fn next_message(&mut self) -> Option<Message>;
    /// Whether [`Party::next_message`] still has something to send (once it may send at all).
    fn wants_to_send(&self) -> bool;
    /// Whether this side's part of the run is done.
    fn is_complete(&self) -> bool;
}

/// The next batch of a side's own first-stage points, then the end of its stream.
fn next_own_batch<G: PsiGroup>(
    key: &G::Scalar,
    elements: &[Vec<u8>],
    batch: usize,
    sent: &mut usize,
    sent_done: &mut bool,
    side: Side,
) -> Option<Message> {
    if *sent < elements.len() {
        let end = (*sent + batch).min(elements.len());
        let points = blind::<G>(key, &elements[*sent..end]);
        *sent = end;
        return Some(Message::Blinded { side, points });
    }
    if !*sent_done {
        *sent_done = true;
        return Some(Message::Done { side });
    }
    None
}

/// What a run revealed to one side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PsiOutput {
    /// Size of the intersection.
    pub count: u64,
    /// The common elements (in this side's order), unless only the size was to be learnt.
    pub intersection: Option<Vec<Vec<u8>>>,
}

/// The initiator of a run.
pub struct Initiator<G: PsiGroup> {
    key: G::Scalar,
    mode: Mode,
    elements: Vec<Vec<u8>>,
    batch: usize,
    sent: usize,
    sent_done: bool,
    peer_count: Option<u64>,
    width: usize,
    own_double: Vec<u128>,
    own_done: bool,
    peer_double: Vec<u128>,
    peer_done: bool,
}

impl<G: PsiGroup> Initiator<G> {
    /// A run over `elements`, with 64 random bytes for the secret key.
    pub fn new(mode: Mode, elements: Vec<Vec<u8>>, randomness: &[u8; 64], batch: usize) -> Self {
        Self {
            key: G::scalar_from_random(randomness),
            mode,
            elements,
            batch: batch.clamp(1, message::MAX_BATCH),
            sent: 0,
            sent_done: false,
            peer_count: None,
            width: 0,
            own_double: Vec::new(),
            own_done: false,
            peer_double: Vec::new(),
            peer_done: false,
        }
    }

    /// The opening message.
    pub fn hello(&self, suite: Suite) -> Message {
        Message::Hello {
            suite,
            mode: self.mode,
            count: self.elements.len() as u64,
        }
    }

    /// The result; an error if the run is incomplete.
    pub fn finish(self) -> Result<PsiOutput, PsiError> {
        if !self.is_complete() {
            return Err(PsiError::Incomplete(format!(
                "sent {} of {} elements, {} of {} values back, {} of {:?} peer elements",
                self.sent,
                self.elements.len(),
                self.own_double.len(),
                self.elements.len(),
                self.peer_double.len(),
                self.peer_count
            )));
        }
        let peer: HashSet<u128> = self.peer_double.into_iter().collect();
        let hits: Vec<usize> = self
            .own_double
            .iter()
            .enumerate()
            .filter(|(_, v)| peer.contains(v))
            .map(|(i, _)| i)
            .collect();
        let count = hits.len() as u64;
        let intersection = (self.mode != Mode::Cardinality).then(|| {
            let mut elements = self.elements;
            hits.into_iter()
                .map(|i| std::mem::take(&mut elements[i]))
                .collect()
        });
        Ok(PsiOutput {
            count,
            intersection,
        })
    }
}

impl<G: PsiGroup> Party for Initiator<G> {
    /// The next message to send on its own initiative (first-stage batches, then their end), or
    /// `None` when everything is sent or the peer has not answered the hello yet.
    fn next_message(&mut self) -> Option<Message> {
        self.peer_count?;
        next_own_batch::<G>(
            &self.key,
            &self.elements,
            self.batch,
            &mut self.sent,
            &mut self.sent_done,
            Side::Initiator,
        )
    }

    /// Take a message from the responder; returns messages to send back.
    fn handle(&mut self, message: Message) -> Result<Vec<Message>, PsiError> {
        let m = self.elements.len() as u64;
        match message {
            Message::HelloAck { count } if self.peer_count.is_none() => {
                self.peer_count = Some(count);
                self.width = truncation_width(m, count);
                Ok(Vec::new())
            }
            Message::DoubleBlinded {
                side: Side::Initiator,
                width,
                values,
            } if self.peer_count.is_some() && !self.own_done => {
                if usize::from(width) != self.width {
                    return Err(PsiError::Protocol(format!(
                        "values of {width} bytes, {} agreed",
                        self.width
                    )));
                }
                self.own_double.extend(bytes_to_values(&values, self.width));
                if self.own_double.len() as u64 > m {
                    return Err(PsiError::Protocol(format!(
                        "{} values returned for {m} elements sent",
                        self.own_double.len()
                    )));
                }
                Ok(Vec::new())
            }
            Message::Done {
                side: Side::Initiator,
            } if self.peer_count.is_some() && !self.own_done => {
                if self.own_double.len() as u64 != m {
                    return Err(PsiError::Protocol(format!(
                        "{} values returned for {m} elements",
                        self.own_double.len()
                    )));
                }
                self.own_done = true;
                Ok(Vec::new())
            }
            Message::Blinded {
                side: Side::Responder,
                points,
            } if !self.peer_done => {
                let n = self.peer_count.ok_or_else(|| {
                    PsiError::Protocol("points before the hello was answered".into())
                })?;
                if (self.peer_double.len() + points.len() / POINT_LEN) as u64 > n {
                    return Err(PsiError::Protocol(format!(
                        "the responder sent more than the {n} elements it announced"
                    )));
                }
                let values = reblind::<G>(&self.key, &points, self.width)?;
                self.peer_double.extend(values);
                Ok(Vec::new())
            }
            Message::Done {
                side: Side::Responder,
            } if !self.peer_done => {
                let n = self.peer_count.ok_or_else(|| {
                    PsiError::Protocol("done before the hello was answered".into())
                })?;
                if self.peer_double.len() as u64 != n {
                    return Err(PsiError::Protocol(format!(
                        "the responder announced {n} elements and sent {}",
                        self.peer_double.len()
                    )));
                }
                self.peer_done = true;
                if self.mode != Mode::Both {
                    return Ok(Vec::new());
                }
                let mut out: Vec<Message> = self
                    .peer_double
                    .chunks(self.batch)
                    .map(|chunk| Message::DoubleBlinded {
                        side: Side::Responder,
                        width: self.width as u8,
                        values: values_to_bytes(chunk, self.width),
                    })
                    .collect();
                out.push(Message::Done {
                    side: Side::Responder,
                });
                Ok(out)
            }
            Message::Abort { reason } => Err(PsiError::Aborted(reason)),
            other => Err(PsiError::Protocol(format!(
                "unexpected message {}",
                describe(&other)
            ))),
        }
    }

    /// Whether [`Initiator::next_message`] still has something to send once the hello is answered.
    fn wants_to_send(&self) -> bool {
        self.peer_count.is_some() && !self.sent_done
    }

    /// Whether the initiator has everything it needs.
    fn is_complete(&self) -> bool {
        self.sent_done && self.own_done && self.peer_done
    }
}

fn describe(message: &Message) -> &'static str {
    match message {
        Message::Hello { .. } => "hello",
        Message::HelloAck { .. } => "hello-ack",
        Message::Blinded { .. } => "first-stage points",
        Message::DoubleBlinded { .. } => "second-stage values",
        Message::Done { .. } => "done",
        Message::Abort { .. } => "abort",
    }
}

/// The responder of a run.
pub struct Responder<G: PsiGroup> {
    key: G::Scalar,
    mode: Mode,
    elements: Vec<Vec<u8>>,
    batch: usize,
    peer_count: u64,
    width: usize,
    shuffle_seed: [u8; 32],
    sent: usize,
    sent_done: bool,
    peer_received: u64,
    peer_done: bool,
    buffered: Vec<u128>,
    initiator_values: HashSet<u128>,
    own_double: Vec<u128>,
    own_done: bool,
}

impl<G: PsiGroup> Responder<G> {
    /// Answer a hello (`mode`, `initiator_count`) over `elements`, with 64 random bytes for the
    /// key and 32 for the shuffle of a cardinality run. Returns the responder and its answer.
    pub fn new(
        mode: Mode,
        initiator_count: u64,
        elements: Vec<Vec<u8>>,
        randomness: &[u8; 96],
        batch: usize,
    ) -> (Self, Message) {
        let mut key_bytes = [0u8; 64];
        key_bytes.copy_from_slice(&randomness[..64]);
        let mut shuffle_seed = [0u8; 32];
        shuffle_seed.copy_from_slice(&randomness[64..]);
        let count = elements.len() as u64;
        let responder = Self {
            key: G::scalar_from_random(&key_bytes),
            mode,
            width: truncation_width(initiator_count, count),
            elements,
            batch: batch.clamp(1, message::MAX_BATCH),
            peer_count: initiator_count,
            shuffle_seed,
            sent: 0,
            sent_done: false,
            peer_received: 0,
            peer_done: false,
            buffered: Vec::new(),
            initiator_values: HashSet::new(),
            own_double: Vec::new(),
            own_done: false,
        };
        (responder, Message::HelloAck { count })
    }

    fn values_message(&self, values: &[u128]) -> Message {
        Message::DoubleBlinded {
            side: Side::Initiator,
            width: self.width as u8,
            values: values_to_bytes(values, self.width),
        }
    }

    /// What the responder learnt: the intersection with [`Mode::Both`], nothing otherwise.
    pub fn finish(self) -> Result<Option<PsiOutput>, PsiError> {
        if !self.is_complete() {
            return Err(PsiError::Incomplete(format!(
                "received {} of {} elements, sent {} of {}",
                self.peer_received,
                self.peer_count,
                self.sent,
                self.elements.len()
            )));
        }
        if self.mode != Mode::Both {
            return Ok(None);
        }
        let mut elements = self.elements;
        let intersection: Vec<Vec<u8>> = self
            .own_double
            .iter()
            .enumerate()
            .filter(|(_, v)| self.initiator_values.contains(v))
            .map(|(i, _)| std::mem::take(&mut elements[i]))
            .collect();
        Ok(Some(PsiOutput {
            count: intersection.len() as u64,
            intersection: Some(intersection),
        }))
    }
}

impl<G: PsiGroup> Party for Responder<G> {
    /// The next first-stage batch of its own elements (then their end), or `None`.
    fn next_message(&mut self) -> Option<Message> {
        next_own_batch::<G>(
            &self.key,
            &self.elements,
            self.batch,
            &mut self.sent,
            &mut self.sent_done,
            Side::Responder,
        )
    }

    /// Take a message from the initiator; returns messages to send back.
    fn handle(&mut self, message: Message) -> Result<Vec<Message>, PsiError> {
        match message {
            Message::Blinded {
                side: Side::Initiator,
                points,
            } if !self.peer_done => {
                let k = (points.len() / POINT_LEN) as u64;
                if self.peer_received + k > self.peer_count {
                    return Err(PsiError::Protocol(format!(
                        "the initiator sent more than the {} elements it announced",
                        self.peer_count
                    )));
                }
                let values = reblind::<G>(&self.key, &points, self.width)?;
                self.peer_received += k;
                if self.mode == Mode::Both {
                    self.initiator_values.extend(values.iter().copied());
                }
                if self.mode == Mode::Cardinality {
                    self.buffered.extend(values);
                    Ok(Vec::new())
                } else {
                    Ok(vec![self.values_message(&values)])
                }
            }
            Message::Done {
                side: Side::Initiator,
            } if !self.peer_done => {
                if self.peer_received != self.peer_count {
                    return Err(PsiError::Protocol(format!(
                        "the initiator announced {} elements and sent {}",
                        self.peer_count, self.peer_received
                    )));
                }
                self.peer_done = true;
                let mut out = Vec::new();
                if self.mode == Mode::Cardinality {
                    let mut values = std::mem::take(&mut self.buffered);
                    shuffle(&mut values, &self.shuffle_seed);
                    out.extend(values.chunks(self.batch).map(|c| self.values_message(c)));
                }
                out.push(Message::Done {
                    side: Side::Initiator,
                });
                Ok(out)
            }
            Message::DoubleBlinded {
                side: Side::Responder,
                width,
                values,
            } if self.mode == Mode::Both && !self.own_done => {
                if usize::from(width) != self.width {
                    return Err(PsiError::Protocol(format!(
                        "values of {width} bytes, {} agreed",
                        self.width
                    )));
                }
                self.own_double.extend(bytes_to_values(&values, self.width));
                if self.own_double.len() > self.elements.len() {
                    return Err(PsiError::Protocol(
                        "more values returned than elements sent".into(),
                    ));
                }
                Ok(Vec::new())
            }
            Message::Done {
                side: Side::Responder,
            } if self.mode == Mode::Both && !self.own_done => {
                if self.own_double.len() != self.elements.len() {
                    return Err(PsiError::Protocol(format!(
                        "{} values returned for {} elements",
                        self.own_double.len(),
                        self.elements.len()
                    )));
                }
                self.own_done = true;
                Ok(Vec::new())
            }
            Message::Abort { reason } => Err(PsiError::Aborted(reason)),
            other => Err(PsiError::Protocol(format!(
                "unexpected message {}",
                describe(&other)
            ))),
        }
    }

    /// Whether [`Responder::next_message`] still has something to send.
    fn wants_to_send(&self) -> bool {
        !self.sent_done
    }

    /// Whether the responder's part is done.
    fn is_complete(&self) -> bool {
        self.sent_done && self.peer_done && (self.mode != Mode::Both || self.own_done)
    }
}

/// Fisher–Yates with SM3 in counter mode over `seed` as the random source.
fn shuffle(values: &mut [u128], seed: &[u8; 32]) {
    use sm3::Digest;
    let mut counter = 0u64;
    let mut pool: Vec<u64> = Vec::new();
    let mut next = || {
        if pool.is_empty() {
            let mut h = sm3::Sm3::new();
            h.update(seed);
            h.update(counter.to_be_bytes());
            counter += 1;
            let d: [u8; 32] = h.finalize().into();
            pool.extend(
                d.chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))),
            );
        }
        pool.pop().unwrap_or(0)
    };
    for i in (1..values.len()).rev() {
        // Multiply-shift to a bound (bias at most 2⁻³², irrelevant for hiding an order).
        let j = ((u128::from(next()) * (i as u128 + 1)) >> 64) as usize;
        values.swap(i, j);
    }
}
