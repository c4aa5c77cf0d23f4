//! Fuzz the frame decoder: arbitrary bytes, fed in pieces whose sizes the input also chooses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xy_wire::FrameDecoder;

fuzz_target!(|data: &[u8]| {
    let Some((&split, stream)) = data.split_first() else { return };
    let step = usize::from(split).max(1);
    let mut decoder = FrameDecoder::new(1 << 16);
    for piece in stream.chunks(step) {
        decoder.handle_bytes(piece);
        loop {
            match decoder.poll_frame() {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    let _ = decoder.finish();
});
