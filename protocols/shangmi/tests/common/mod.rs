//! Helpers shared by this crate's tests: the known-answer file and hex decoding.

use serde_json::Value;

pub(crate) fn kat() -> Value {
    serde_json::from_str(include_str!("../data/gm-kat.json")).expect("gm-kat.json parses")
}

pub(crate) fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).expect("hex")
}
