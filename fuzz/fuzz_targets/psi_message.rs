//! Fuzz the PSI message decoder (peer input), and feed what decodes to both state machines.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xy_psi::{Initiator, Message, Mode, Party, Responder, Ristretto255};

fuzz_target!(|data: &[u8]| {
    let Ok(message) = Message::decode(data) else { return };
    let mut initiator = Initiator::<Ristretto255>::new(Mode::Both, vec![b"a".to_vec()], &[1; 64], 8);
    let _ = initiator.handle(Message::HelloAck { count: 2 });
    let _ = initiator.handle(message.clone());
    let (mut responder, _) = Responder::<Ristretto255>::new(Mode::Both, 2, vec![b"b".to_vec()], &[2; 96], 8);
    let _ = responder.handle(message);
});
