//! Fuzz the ingest readers and the row pipeline: the first byte picks the format (CSV, JSON
//! lines, xlsx), the rest is the file. Errors are fine; panics are bugs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xy_ingest::InputFormat;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, file)) = data.split_first() else { return };
    let format = match selector % 3 {
        0 => InputFormat::Csv,
        1 => InputFormat::Jsonl,
        _ => InputFormat::Xlsx,
    };
    if let Ok(policies) = xy_policy::PolicySet::builtin() {
        let _ = xy_ingest::fuzz_rows(file, format, &policies);
    }
});
