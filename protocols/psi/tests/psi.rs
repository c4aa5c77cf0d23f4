//! ECDH-PSI against the plaintext intersection for both suites and every mode, and every way a
//! peer can misbehave: invalid points (refused before anything is multiplied), the identity,
//! wrong lengths, more elements than announced, a peer that stops half-way.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use xy_psi::{
    Initiator, Message, Mode, Party, PsiError, PsiGroup, PsiOutput, Responder, Ristretto255, Side,
    Sm2Sm3, Suite, truncation_width,
};

/// Two sets and their plaintext intersection.
type Sets = (Vec<Vec<u8>>, Vec<Vec<u8>>, HashSet<Vec<u8>>);

fn sets(rng: &mut impl Rng, m: usize, n: usize, common: usize) -> Sets {
    let id = |i: u64| format!("9151010{:011}", i).into_bytes();
    let shared: Vec<Vec<u8>> = (0..common)
        .map(|_| id(rng.random_range(0..1u64 << 40)))
        .collect();
    let mut x: Vec<Vec<u8>> = shared.clone();
    x.extend((0..m - common).map(|_| id((1u64 << 41) + rng.random_range(0..1u64 << 40))));
    let mut y: Vec<Vec<u8>> = shared.clone();
    y.extend((0..n - common).map(|_| id((1u64 << 42) + rng.random_range(0..1u64 << 40))));
    let plain: HashSet<Vec<u8>> = x
        .iter()
        .cloned()
        .collect::<HashSet<_>>()
        .intersection(&y.iter().cloned().collect())
        .cloned()
        .collect();
    (x, y, plain)
}

/// Drive both sides through an in-memory channel; each message is encoded and decoded on the way.
fn run<G: PsiGroup>(
    suite: Suite,
    mode: Mode,
    x: Vec<Vec<u8>>,
    y: Vec<Vec<u8>>,
    batch: usize,
) -> Result<(PsiOutput, Option<PsiOutput>), PsiError> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut ki = [0u8; 64];
    rng.fill(&mut ki[..]);
    let mut kr = [0u8; 96];
    rng.fill(&mut kr[..]);
    let mut initiator = Initiator::<G>::new(mode, x, &ki, batch);
    let hello = Message::decode(&initiator.hello(suite).encode())?;
    let Message::Hello { mode, count, .. } = hello else {
        panic!("hello")
    };
    let (mut responder, ack) = Responder::<G>::new(mode, count, y, &kr, batch);
    let mut to_responder: VecDeque<Message> = VecDeque::new();
    let mut to_initiator: VecDeque<Message> = VecDeque::from([ack]);
    loop {
        let mut progressed = false;
        while let Some(m) = to_initiator.pop_front() {
            to_responder.extend(initiator.handle(Message::decode(&m.encode())?)?);
            progressed = true;
        }
        if let Some(m) = initiator.next_message() {
            to_responder.push_back(m);
            progressed = true;
        }
        while let Some(m) = to_responder.pop_front() {
            to_initiator.extend(responder.handle(Message::decode(&m.encode())?)?);
            progressed = true;
        }
        if let Some(m) = responder.next_message() {
            to_initiator.push_back(m);
            progressed = true;
        }
        if !progressed {
            break;
        }
    }
    Ok((initiator.finish()?, responder.finish()?))
}

fn check<G: PsiGroup>(suite: Suite, m: usize, n: usize, common: usize) {
    let mut rng = rand::rngs::StdRng::seed_from_u64((m * 31 + n) as u64);
    let (x, y, plain) = sets(&mut rng, m, n, common);
    for mode in [Mode::One, Mode::Both, Mode::Cardinality] {
        let (ours, theirs) = run::<G>(suite, mode, x.clone(), y.clone(), 97).unwrap();
        assert_eq!(ours.count as usize, plain.len(), "{suite:?} {mode:?}");
        match mode {
            Mode::Cardinality => {
                assert!(ours.intersection.is_none());
                assert!(theirs.is_none());
            }
            Mode::One => {
                assert_eq!(
                    ours.intersection
                        .unwrap()
                        .into_iter()
                        .collect::<HashSet<_>>(),
                    plain
                );
                assert!(theirs.is_none(), "the responder learns nothing in mode one");
            }
            Mode::Both => {
                assert_eq!(
                    ours.intersection
                        .unwrap()
                        .into_iter()
                        .collect::<HashSet<_>>(),
                    plain
                );
                assert_eq!(
                    theirs
                        .unwrap()
                        .intersection
                        .unwrap()
                        .into_iter()
                        .collect::<HashSet<_>>(),
                    plain
                );
            }
        }
    }
}

#[test]
fn ristretto_matches_the_plaintext_intersection_in_every_mode() {
    check::<Ristretto255>(Suite::Ristretto255, 1500, 1100, 321);
    check::<Ristretto255>(Suite::Ristretto255, 1, 50, 1);
    check::<Ristretto255>(Suite::Ristretto255, 40, 1, 0);
}

#[test]
fn sm2_matches_the_plaintext_intersection_in_every_mode() {
    check::<Sm2Sm3>(Suite::Sm2, 300, 250, 77);
}

#[test]
fn truncation_is_at_least_96_bits_and_log_mn_plus_40() {
    assert_eq!(truncation_width(1 << 20, 1 << 20), 12); // 40 + 40 = 80 bits → 96
    assert_eq!(truncation_width(1 << 30, 1 << 30), 13); // 60 + 40 = 100 bits → 104
    assert_eq!(truncation_width(0, 0), 12);
}

/// Ristretto255 with a count of multiplications, to prove invalid points are never multiplied.
struct Counting;
static MULTIPLICATIONS: AtomicU64 = AtomicU64::new(0);

impl PsiGroup for Counting {
    type Scalar = <Ristretto255 as PsiGroup>::Scalar;
    type Point = <Ristretto255 as PsiGroup>::Point;
    fn scalar_from_random(bytes: &[u8; 64]) -> Self::Scalar {
        Ristretto255::scalar_from_random(bytes)
    }
    fn hash_to_point(element: &[u8]) -> Self::Point {
        Ristretto255::hash_to_point(element)
    }
    fn mul(point: &Self::Point, k: &Self::Scalar) -> Self::Point {
        MULTIPLICATIONS.fetch_add(1, Ordering::SeqCst);
        Ristretto255::mul(point, k)
    }
    fn encode(point: &Self::Point) -> [u8; 32] {
        Ristretto255::encode(point)
    }
    fn decode(bytes: &[u8; 32]) -> Result<Self::Point, PsiError> {
        Ristretto255::decode(bytes)
    }
}

#[test]
fn invalid_points_and_the_identity_are_refused_before_any_multiplication() {
    let (mut responder, _) =
        Responder::<Counting>::new(Mode::One, 3, vec![b"a".to_vec()], &[1; 96], 16);
    let valid = Ristretto255::encode(&Ristretto255::hash_to_point(b"x"));
    for bad in [[0xffu8; 32], [0u8; 32] /* the identity */] {
        let before = MULTIPLICATIONS.load(Ordering::SeqCst);
        let points = [valid, bad, valid].concat();
        let err = responder
            .handle(Message::Blinded {
                side: Side::Initiator,
                points,
            })
            .unwrap_err();
        assert!(matches!(err, PsiError::InvalidPoint(_)), "{err}");
        assert_eq!(
            MULTIPLICATIONS.load(Ordering::SeqCst),
            before,
            "nothing may be multiplied"
        );
    }
    // SM2: an x-coordinate beyond p, and one with no point on the curve.
    assert!(Sm2Sm3::decode(&[0xff; 32]).is_err());
    let no_point = (0u8..=255)
        .map(|b| [b; 32])
        .find(|x| Sm2Sm3::decode(x).is_err())
        .expect("some x has no point");
    assert!(matches!(
        Sm2Sm3::decode(&no_point),
        Err(PsiError::InvalidPoint(_))
    ));
}

#[test]
fn more_elements_than_announced_are_refused() {
    let (mut responder, _) =
        Responder::<Ristretto255>::new(Mode::One, 1, vec![b"a".to_vec()], &[2; 96], 16);
    let p = Ristretto255::encode(&Ristretto255::hash_to_point(b"x"));
    let err = responder
        .handle(Message::Blinded {
            side: Side::Initiator,
            points: [p, p].concat(),
        })
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("more than the 1 elements it announced"),
        "{err}"
    );
    // And on the initiator's side.
    let mut initiator =
        Initiator::<Ristretto255>::new(Mode::One, vec![b"a".to_vec()], &[3; 64], 16);
    initiator.handle(Message::HelloAck { count: 1 }).unwrap();
    let err = initiator
        .handle(Message::Blinded {
            side: Side::Responder,
            points: [p, p].concat(),
        })
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("more than the 1 elements it announced"),
        "{err}"
    );
}

#[test]
fn a_peer_that_stops_half_way_leaves_an_incomplete_run() {
    let mut initiator = Initiator::<Ristretto255>::new(
        Mode::One,
        (0..10u8).map(|i| vec![i]).collect(),
        &[4; 64],
        4,
    );
    initiator.handle(Message::HelloAck { count: 5 }).unwrap();
    while initiator.next_message().is_some() {}
    let p = Ristretto255::encode(&Ristretto255::hash_to_point(b"y"));
    initiator
        .handle(Message::Blinded {
            side: Side::Responder,
            points: [p, p].concat(),
        })
        .unwrap();
    // The responder goes silent here.
    let err = initiator.finish().unwrap_err();
    assert!(matches!(err, PsiError::Incomplete(_)), "{err}");
    // Messages out of order are protocol violations, and an abort carries the peer's reason.
    let mut fresh = Initiator::<Ristretto255>::new(Mode::One, vec![b"a".to_vec()], &[5; 64], 4);
    assert!(matches!(
        fresh.handle(Message::Done {
            side: Side::Responder
        }),
        Err(PsiError::Protocol(_))
    ));
    assert_eq!(
        fresh.handle(Message::Abort {
            reason: "disk full".into()
        }),
        Err(PsiError::Aborted("disk full".into()))
    );
}

#[test]
fn the_codec_round_trips_and_never_panics_on_garbage() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    let samples = [
        Message::Hello {
            suite: Suite::Sm2,
            mode: Mode::Cardinality,
            count: 12345,
        },
        Message::HelloAck { count: 0 },
        Message::Blinded {
            side: Side::Responder,
            points: vec![7; 64],
        },
        Message::DoubleBlinded {
            side: Side::Initiator,
            width: 12,
            values: vec![1; 36],
        },
        Message::Done {
            side: Side::Initiator,
        },
        Message::Abort {
            reason: "stop".into(),
        },
    ];
    for m in &samples {
        assert_eq!(&Message::decode(&m.encode()).unwrap(), m);
        let bytes = m.encode();
        for cut in 0..bytes.len() {
            let _ = Message::decode(&bytes[..cut]);
        }
    }
    assert!(
        Message::decode(
            &Message::Blinded {
                side: Side::Initiator,
                points: vec![1; 33]
            }
            .encode()
        )
        .is_err()
    );
    assert!(
        Message::decode(
            &Message::DoubleBlinded {
                side: Side::Initiator,
                width: 12,
                values: vec![1; 13]
            }
            .encode()
        )
        .is_err()
    );
    for _ in 0..20_000 {
        let len = rng.random_range(0..80);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        if !bytes.is_empty() && rng.random_bool(0.5) {
            bytes[0] = 1;
        }
        let _ = Message::decode(&bytes);
    }
}

/// The batched multiply-and-encode (Ristretto255 shares one inversion across a run) gives exactly
/// the encodings of the one-at-a-time path, for both groups.
fn batched_encoding_matches<G: PsiGroup>(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut key_bytes = [0u8; 64];
    rng.fill_bytes(&mut key_bytes);
    let key = G::scalar_from_random(&key_bytes);
    let points: Vec<G::Point> = (0..97u32)
        .map(|i| G::hash_to_point(&i.to_be_bytes()))
        .collect();
    let one_by_one: Vec<[u8; 32]> = points.iter().map(|p| G::encode(&G::mul(p, &key))).collect();
    assert_eq!(G::mul_and_encode(&points, &key), one_by_one);
    assert!(G::mul_and_encode(&[], &key).is_empty());
}

#[test]
fn batched_multiply_and_encode_equals_the_one_at_a_time_path() {
    batched_encoding_matches::<Ristretto255>(7);
    batched_encoding_matches::<Sm2Sm3>(8);
}

/// The batched hash-to-group and decoding of our curve25519-dalek patch (square roots four at a
/// time on AVX-512 IFMA) give exactly the points of upstream's one-at-a-time functions: for
/// uniform inputs, and for encodings that are valid, random (mostly invalid), non-canonical, the
/// identity, or negative, in runs whose lengths are not multiples of four.
#[test]
fn patched_dalek_batches_equal_the_one_at_a_time_functions() {
    use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
    let mut rng = StdRng::seed_from_u64(9496);
    let uniform: Vec<[u8; 64]> = (0..203)
        .map(|_| {
            let mut bytes = [0u8; 64];
            rng.fill_bytes(&mut bytes);
            bytes
        })
        .collect();
    let one_by_one: Vec<RistrettoPoint> = uniform
        .iter()
        .map(RistrettoPoint::from_uniform_bytes)
        .collect();
    assert_eq!(
        RistrettoPoint::from_uniform_bytes_batch(&uniform),
        one_by_one
    );
    assert!(RistrettoPoint::from_uniform_bytes_batch(&[]).is_empty());

    let mut encodings: Vec<CompressedRistretto> = Vec::new();
    for (i, point) in one_by_one.iter().enumerate() {
        encodings.push(point.compress());
        let mut random = [0u8; 32];
        rng.fill_bytes(&mut random);
        encodings.push(CompressedRistretto(random));
        match i % 4 {
            0 => encodings.push(CompressedRistretto([0u8; 32])), // the identity: decodes
            1 => {
                // s = p (non-canonical) and s = 1 (negative)
                let mut p = [0xffu8; 32];
                p[0] = 0xed;
                p[31] = 0x7f;
                encodings.push(CompressedRistretto(p));
                let mut one = [0u8; 32];
                one[0] = 1;
                encodings.push(CompressedRistretto(one));
            }
            _ => {}
        }
    }
    let one_by_one: Vec<Option<RistrettoPoint>> = encodings
        .iter()
        .map(CompressedRistretto::decompress)
        .collect();
    let valid = one_by_one.iter().filter(|p| p.is_some()).count();
    assert!(
        valid > 203 && valid < encodings.len(),
        "{valid} of {}",
        encodings.len()
    );
    for length in [encodings.len(), 1, 2, 3, 5, 7] {
        assert_eq!(
            CompressedRistretto::decompress_batch(&encodings[..length]),
            one_by_one[..length]
        );
    }

    // Through the PSI's group: the same points, the same refusals.
    let elements: Vec<Vec<u8>> = (0..103u32).map(|i| i.to_be_bytes().to_vec()).collect();
    let hashed: Vec<[u8; 32]> = Ristretto255::hash_to_points(&elements)
        .iter()
        .map(Ristretto255::encode)
        .collect();
    let expected: Vec<[u8; 32]> = elements
        .iter()
        .map(|e| Ristretto255::encode(&Ristretto255::hash_to_point(e)))
        .collect();
    assert_eq!(hashed, expected);
    let run: Vec<u8> = hashed.concat();
    let decoded = Ristretto255::decode_run(&run).expect("valid points");
    assert_eq!(
        decoded.iter().map(Ristretto255::encode).collect::<Vec<_>>(),
        hashed
    );
    let mut with_identity = run.clone();
    with_identity[32 * 50..32 * 51].fill(0);
    assert!(Ristretto255::decode_run(&with_identity).is_err());
    assert!(Ristretto255::decode_run(&run[..run.len() - 1]).is_err());

    // The private query's OPRF over a run equals the one-id-at-a-time output.
    let key = xy_psi::query::OprfKey::from_random(&[5u8; 64]);
    let outputs = key.outputs(&elements);
    for (id, output) in elements.iter().zip(&outputs) {
        assert_eq!(*output, key.output(id));
    }
}
