//! Fuzz the decoders of the federated flows' batches (a peer's or a file's bytes): the batch
//! envelope, verification against a trust anchor (digest, certificate, signature, LZ4 body,
//! records), the record codec on its own, and the file envelope.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xy_exchange::{SignedBatch, decode_records, open_file};
use xy_shangmi::sm2::Sm2SecretKey;

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = SignedBatch::decode(data) {
        // Anchored in the batch's own certificate: the checks past the chain still run.
        let anchor = batch.certificate.clone();
        let _ = batch.verify(&[&anchor]);
    }
    let _ = decode_records(data);
    if let Ok(key) = Sm2SecretKey::from_bytes(&[7; 32]) {
        let _ = open_file(&key, data);
    }
});
