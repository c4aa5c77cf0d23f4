//! `cargo bench --bench fhe_score`: encrypted cross-jurisdiction scoring on this machine.
//!
//! Prints key generation time, key-upload bytes, per-node encryption time (5 indicators as
//! FheUint16), the province's aggregation time and the requester's decryption time, beside the
//! cost of each TFHE operation the circuit uses, measured in the same run. The floor is the
//! circuit's operation count × those costs, run one after another: per node one compact-list
//! expansion, then one multi-operand sum, then one comparison with a constant per grade band.
//! (The aggregation runs the comparisons in parallel, so on two cores it can beat the floor.)
//!
//! Ends with `BENCH fhe_score indicators=5 aggregate_s=<a> floor_s=<f> keygen_s=<k> upload_bytes=<u>`.
//! `XY_BENCH_NODES` sets the contributing nodes (default 2).

use std::time::Instant;

use tfhe::prelude::*;
use xy_fhe::{
    EvaluationKey, RequesterKeys, ScoringPolicy, aggregate, decrypt, encrypt_contribution,
};

fn seconds<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let started = Instant::now();
    let out = f();
    (out, started.elapsed().as_secs_f64())
}

/// Best of `runs` timings (the machines are noisy).
fn best(runs: usize, mut f: impl FnMut()) -> f64 {
    (0..runs)
        .map(|_| seconds(&mut f).1)
        .fold(f64::INFINITY, f64::min)
}

fn main() -> anyhow::Result<()> {
    let nodes: usize = std::env::var("XY_BENCH_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let policy = ScoringPolicy::enterprise();
    let indicators = policy.indicators.len();
    println!(
        "encrypted scoring: {indicators} indicators per node as FheUint16, {nodes} nodes, {} bands",
        policy.score.bands.len()
    );

    let (keys, keygen_s) = seconds(RequesterKeys::generate);
    let upload = keys.upload()?;
    let (evaluation, decompress_s) = seconds(|| EvaluationKey::from_upload(&upload));
    let evaluation = evaluation?;
    println!("key generation (client, compressed server, compact public): {keygen_s:.2} s");
    println!(
        "key upload: {} bytes (server key {} + public key {}), decompressed by the province in {decompress_s:.2} s (once, cached)",
        upload.len(),
        upload.server_key.len(),
        upload.public_key.len()
    );

    let values: Vec<Vec<u16>> = (0..nodes)
        .map(|n| {
            policy
                .indicators
                .iter()
                .map(|i| (n as u16 * 3 + 1) % (i.max + 1))
                .collect()
        })
        .collect();
    let mut contributions = Vec::new();
    let mut encrypt_s = 0f64;
    for v in &values {
        let (c, s) = seconds(|| encrypt_contribution(&policy, evaluation.public_key(), v));
        contributions.push(c?);
        encrypt_s = encrypt_s.max(s);
    }
    println!(
        "per-node encryption of {indicators} indicators: {encrypt_s:.3} s, {} bytes sent",
        contributions[0].len()
    );

    // Warm up the aggregation once (thread pools, caches), then take the best of three.
    aggregate(&policy, &evaluation, &contributions, false)?;
    let mut answer = None;
    let aggregate_s = best(3, || {
        answer = Some(aggregate(&policy, &evaluation, &contributions, false).expect("aggregate"))
    });
    let answer = answer.expect("ran");
    let with_score_s = best(2, || {
        aggregate(&policy, &evaluation, &contributions, true).expect("aggregate");
    });
    let ((grade, _), decrypt_s) =
        seconds(|| decrypt(&policy, &keys.client_key, &answer).expect("decrypt"));
    assert_eq!(
        grade,
        policy.plain(&values).grade,
        "the encrypted grade must match the plaintext policy"
    );
    println!(
        "province aggregation (grade): {aggregate_s:.3} s; with the clamped score too: {with_score_s:.3} s"
    );
    println!("decryption: {decrypt_s:.4} s (grade {grade})");

    // The cost of each operation the circuit uses, in the same run.
    tfhe::set_server_key(keys.server_key.decompress());
    let (sks, ..) = keys.server_key.decompress().into_raw_parts();
    let expand_s = best(3, || {
        let list: tfhe::CompactCiphertextList =
            tfhe::safe_serialization::safe_deserialize(contributions[0].as_slice(), 1 << 26)
                .expect("list");
        let expanded = list.expand().expect("expand");
        for i in 0..indicators {
            let _: tfhe::FheUint16 = expanded.get(i).expect("get").expect("value");
        }
    });
    let operands: Vec<tfhe::integer::RadixCiphertext> = (0..nodes * indicators)
        .map(|i| {
            let v = tfhe::FheUint16::encrypt(i as u16, &keys.client_key);
            v.into_raw_parts().0
        })
        .collect();
    let sum_s = best(3, || {
        sks.sum_ciphertexts_parallelized(operands.iter())
            .expect("sum");
    });
    let ge_s = best(3, || {
        sks.scalar_ge_parallelized(&operands[0], 500u64);
    });
    let a = tfhe::FheUint16::encrypt(7u16, &keys.client_key);
    let b = tfhe::FheUint16::encrypt(9u16, &keys.client_key);
    let add_s = best(3, || {
        let _ = &a + &b;
    });
    let mul_s = best(3, || {
        let _ = &a * 15u16;
    });
    let bands = policy.score.bands.len();
    let floor_s = nodes as f64 * expand_s + sum_s + bands as f64 * ge_s;
    println!("operation costs (best of 3):");
    println!("  expand one node's compact list of {indicators}:     {expand_s:.3} s  × {nodes}");
    println!(
        "  sum of {} FheUint16 operands (one carry chain): {sum_s:.3} s  × 1",
        nodes * indicators
    );
    println!("  FheUint16 ≥ constant:                          {ge_s:.3} s  × {bands}");
    println!(
        "  (the naive circuit's: FheUint16 add {add_s:.3} s, scalar multiply {mul_s:.3} s — {} of each)",
        nodes * indicators
    );
    println!(
        "floor = {nodes}×expand + sum + {bands}×compare = {floor_s:.3} s; aggregation / floor = {:.2}",
        aggregate_s / floor_s
    );
    println!(
        "BENCH fhe_score indicators={indicators} aggregate_s={aggregate_s:.3} floor_s={floor_s:.3} keygen_s={keygen_s:.2} upload_bytes={}",
        upload.len()
    );
    Ok(())
}
