//! Fuzz the envelope decoder: arbitrary bytes as an envelope for a fixed recipient and sender.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xy_shangmi::envelope::{claimed_sender, open};
use xy_shangmi::sm2::Sm2SecretKey;

fuzz_target!(|data: &[u8]| {
    let (Ok(recipient), Ok(sender)) = (Sm2SecretKey::from_bytes(&[0x11; 32]), Sm2SecretKey::from_bytes(&[0x22; 32])) else {
        return;
    };
    let _ = claimed_sender(data);
    let _ = open(&recipient, &sender.public_key(), data, b"context");
});
