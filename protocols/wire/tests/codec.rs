//! Properties of the frame codec: round trips through any split of the byte stream, and every
//! malformed input refused with its cause.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use xy_wire::{
    DEFAULT_MAX_PAYLOAD, FLAG_END, Frame, FrameDecoder, FrameKind, HEADER_LEN, WireError,
};

const KINDS: [FrameKind; 8] = [
    FrameKind::Hello,
    FrameKind::Request,
    FrameKind::Response,
    FrameKind::Error,
    FrameKind::BulkData,
    FrameKind::Ack,
    FrameKind::Ping,
    FrameKind::Pong,
];

fn random_frame(rng: &mut ChaCha8Rng) -> Frame {
    let len = match rng.random_range(0..10) {
        0 => 0,
        1 => rng.random_range(10_000..70_000),
        _ => rng.random_range(1..300),
    };
    let mut payload = vec![0u8; len];
    rng.fill(&mut payload[..]);
    Frame {
        kind: KINDS[rng.random_range(0..KINDS.len())],
        flags: if rng.random_bool(0.3) { FLAG_END } else { 0 },
        request_id: rng.random(),
        payload,
    }
}

#[test]
fn frames_round_trip_through_any_split_of_the_stream() {
    let mut rng = ChaCha8Rng::seed_from_u64(8998);
    for _ in 0..200 {
        let frames: Vec<Frame> = (0..rng.random_range(1..12))
            .map(|_| random_frame(&mut rng))
            .collect();
        let mut bytes = Vec::new();
        for f in &frames {
            f.encode(&mut bytes, DEFAULT_MAX_PAYLOAD).unwrap();
        }
        let mut decoder = FrameDecoder::default();
        let mut decoded = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let step = match rng.random_range(0..3) {
                0 => 1,
                1 => rng.random_range(1..20),
                _ => rng.random_range(1..5000),
            };
            let end = (at + step).min(bytes.len());
            decoder.handle_bytes(&bytes[at..end]);
            at = end;
            while let Some(f) = decoder.poll_frame().unwrap() {
                decoded.push(f);
            }
        }
        assert_eq!(decoded, frames);
        decoder.finish().unwrap();
    }
}

fn header(version: u8, kind: u8, flags: u16, length: u32) -> Vec<u8> {
    let mut h = vec![version, kind];
    h.extend_from_slice(&flags.to_be_bytes());
    h.extend_from_slice(&7u32.to_be_bytes());
    h.extend_from_slice(&length.to_be_bytes());
    h
}

fn first_error(bytes: &[u8], max: u32) -> WireError {
    let mut d = FrameDecoder::new(max);
    d.handle_bytes(bytes);
    let err = d.poll_frame().expect_err("must be refused");
    // After an error the stream has no framing any more.
    d.handle_bytes(&header(1, 2, 0, 0));
    assert_eq!(d.poll_frame(), Err(WireError::Poisoned));
    err
}

#[test]
fn malformed_headers_are_refused_with_their_cause() {
    assert_eq!(
        first_error(&header(2, 2, 0, 0), 100),
        WireError::UnsupportedVersion(2)
    );
    assert_eq!(
        first_error(&header(1, 99, 0, 0), 100),
        WireError::UnknownKind(99)
    );
    assert_eq!(
        first_error(&header(1, 0, 0, 0), 100),
        WireError::UnknownKind(0)
    );
    assert_eq!(
        first_error(&header(1, 2, 0x8000, 0), 100),
        WireError::ReservedFlags(0x8000)
    );
    assert_eq!(
        first_error(&header(1, 5, 0, 101), 100),
        WireError::Oversized {
            length: 101,
            max: 100
        }
    );
    // Version and kind are judged as soon as their byte arrives, before the rest of the header.
    assert_eq!(first_error(&[9], 100), WireError::UnsupportedVersion(9));
    assert_eq!(first_error(&[1, 200], 100), WireError::UnknownKind(200));
}

#[test]
fn an_oversized_declaration_is_refused_before_its_payload_arrives() {
    let mut d = FrameDecoder::new(1 << 20);
    d.handle_bytes(&header(1, 5, 0, u32::MAX));
    assert_eq!(
        d.poll_frame(),
        Err(WireError::Oversized {
            length: u32::MAX,
            max: 1 << 20
        })
    );
    let mut too_big = Frame::new(FrameKind::BulkData, 1, vec![0; 11]);
    assert!(matches!(
        too_big.encode(&mut Vec::new(), 10),
        Err(WireError::Oversized {
            length: 11,
            max: 10
        })
    ));
    too_big.flags = 0x4000;
    assert_eq!(
        too_big.encode(&mut Vec::new(), 100),
        Err(WireError::ReservedFlags(0x4000))
    );
}

#[test]
fn a_stream_cut_inside_a_frame_is_truncated() {
    let mut bytes = Vec::new();
    Frame::new(FrameKind::Response, 3, b"return flow batch".to_vec())
        .encode(&mut bytes, 100)
        .unwrap();
    for cut in 1..bytes.len() {
        let mut d = FrameDecoder::default();
        d.handle_bytes(&bytes[..cut]);
        assert_eq!(d.poll_frame(), Ok(None));
        assert_eq!(d.finish(), Err(WireError::Truncated(cut)));
    }
    let mut d = FrameDecoder::default();
    d.handle_bytes(&bytes);
    assert_eq!(
        d.poll_frame().unwrap().unwrap().payload,
        b"return flow batch"
    );
    assert_eq!(d.poll_frame(), Ok(None));
    d.finish().unwrap();
    assert_eq!(HEADER_LEN, 12);
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for _ in 0..2000 {
        let mut bytes = vec![0u8; rng.random_range(0..64)];
        rng.fill(&mut bytes[..]);
        if rng.random_bool(0.5) && !bytes.is_empty() {
            bytes[0] = 1;
        }
        let mut d = FrameDecoder::new(32);
        d.handle_bytes(&bytes);
        while let Ok(Some(_)) = d.poll_frame() {}
        let _ = d.finish();
    }
}
