//! `cargo bench --bench fhe_score`: encrypted cross-jurisdiction scoring on this machine.
//!
//! Prints key generation time, key-upload bytes, per-node encryption time (5 indicators as
//! FheUint16), the province's aggregation time and the requester's decryption time, beside the
//! cost of each TFHE operation the circuit uses, measured in the same run. The floor is the
//! circuit's operation count × those costs, run one after another: per node one compact-list
//! expansion, one carry propagation per group of five operands (added without bootstrapping),
//! then one comparison with a constant per grade band. (The aggregation runs groups and
//! comparisons in parallel, so on two cores it can beat the floor.)
//!
//! It runs twice on the same keys: first the shipped policy (all its indicators, printed as
//! `BENCH fhe_score_policy ...`), then the figure of five indicators (penalties, severe
//! penalties, licences in force, commitments broken, black lists: one per family) and ends with
//! `BENCH fhe_score indicators=5 aggregate_s=<a> floor_s=<f> keygen_s=<k> upload_bytes=<u>`.
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

/// The five indicators of the figure, one per family.
const FIVE: [&str; 5] = [
    "penalties_3y",
    "severe_penalties_3y",
    "licences_in_force",
    "commitments_broken_3y",
    "black_lists_in_force",
];

fn main() -> anyhow::Result<()> {
    let nodes: usize = std::env::var("XY_BENCH_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let policy = ScoringPolicy::enterprise();

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
    let server_key = keys.server_key.decompress();
    tfhe::set_server_key(server_key.clone());
    let (sks, ..) = server_key.into_raw_parts();

    let (aggregate_s, floor_s) = run(&policy, nodes, &keys, &evaluation, &sks)?;
    println!(
        "BENCH fhe_score_policy indicators={} aggregate_s={aggregate_s:.3} floor_s={floor_s:.3} keygen_s={keygen_s:.2} upload_bytes={}",
        policy.indicators.len(),
        upload.len()
    );
    let mut five = policy.clone();
    five.indicators.retain(|i| FIVE.contains(&i.id.as_str()));
    assert_eq!(
        five.indicators.len(),
        FIVE.len(),
        "the shipped policy names them"
    );
    let (aggregate_s, floor_s) = run(&five, nodes, &keys, &evaluation, &sks)?;
    println!(
        "BENCH fhe_score indicators={} aggregate_s={aggregate_s:.3} floor_s={floor_s:.3} keygen_s={keygen_s:.2} upload_bytes={}",
        five.indicators.len(),
        upload.len()
    );
    Ok(())
}

/// Encrypt, aggregate and decrypt one policy's indicators from `nodes` nodes, and measure the
/// floor; returns (aggregation seconds, floor seconds).
fn run(
    policy: &ScoringPolicy,
    nodes: usize,
    keys: &RequesterKeys,
    evaluation: &EvaluationKey,
    sks: &tfhe::integer::ServerKey,
) -> anyhow::Result<(f64, f64)> {
    let indicators = policy.indicators.len();
    println!(
        "\nencrypted scoring: {indicators} indicators per node as FheUint16, {nodes} nodes, {} bands",
        policy.score.bands.len()
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
        let (c, s) = seconds(|| encrypt_contribution(policy, evaluation.public_key(), v));
        contributions.push(c?);
        encrypt_s = encrypt_s.max(s);
    }
    println!(
        "per-node encryption of {indicators} indicators: {encrypt_s:.3} s, {} bytes sent",
        contributions[0].len()
    );

    // Warm up the aggregation once (thread pools, caches), then take the best of three.
    aggregate(policy, evaluation, &contributions, false)?;
    let mut answer = None;
    let aggregate_s = best(3, || {
        answer = Some(aggregate(policy, evaluation, &contributions, false).expect("aggregate"))
    });
    let answer = answer.expect("ran");
    let with_score_s = best(2, || {
        aggregate(policy, evaluation, &contributions, true).expect("aggregate");
    });
    let ((grade, _), decrypt_s) =
        seconds(|| decrypt(policy, &keys.client_key, &answer).expect("decrypt"));
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
    let expand_s = best(3, || {
        let list: tfhe::CompactCiphertextList =
            tfhe::safe_serialization::safe_deserialize(contributions[0].as_slice(), 1 << 26)
                .expect("list");
        let expanded = list.expand().expect("expand");
        for i in 0..indicators {
            let _: tfhe::FheUint16 = expanded.get(i).expect("get").expect("value");
        }
    });
    // The circuit works on the blocks the sum needs (the rest encrypt zeros) and adds groups of
    // five clean operands without bootstrapping, then propagates each group's carries once.
    use tfhe::integer::IntegerCiphertext;
    let raw_max = policy.raw_max(nodes) as u64;
    let needed = (64 - raw_max.leading_zeros() as usize).div_ceil(2);
    let trimmed = |v: u16| {
        let mut ct = tfhe::FheUint16::encrypt(v, &keys.client_key)
            .into_raw_parts()
            .0;
        let excess = ct.blocks().len() - needed;
        sks.trim_radix_blocks_msb_assign(&mut ct, excess);
        ct
    };
    let mut dirty = trimmed(100);
    for _ in 0..4 {
        sks.unchecked_add_assign(&mut dirty, &trimmed(100));
    }
    let propagate_s = best(3, || {
        let mut ct = dirty.clone();
        sks.full_propagate_parallelized(&mut ct);
    });
    let clean = trimmed(700);
    let ge_s = best(3, || {
        sks.scalar_ge_parallelized(&clean, 500u64);
    });
    let mut propagations = 0;
    let mut remaining = nodes * indicators;
    while remaining > 1 {
        let groups = remaining.div_ceil(5);
        propagations += groups;
        remaining = groups;
    }
    let a = tfhe::FheUint16::encrypt(7u16, &keys.client_key);
    let b = tfhe::FheUint16::encrypt(9u16, &keys.client_key);
    let add_s = best(3, || {
        let _ = &a + &b;
    });
    let mul_s = best(3, || {
        let _ = &a * 15u16;
    });
    let bands = policy.score.bands.len();
    let floor_s = nodes as f64 * expand_s + propagations as f64 * propagate_s + bands as f64 * ge_s;
    println!("operation costs (best of 3; {needed} of 8 blocks, as the circuit uses them):");
    println!("  expand one node's compact list of {indicators}:        {expand_s:.3} s  × {nodes}");
    println!(
        "  carry propagation of a group of five operands:  {propagate_s:.3} s  × {propagations}"
    );
    println!("  comparison with a constant:                      {ge_s:.3} s  × {bands}");
    println!(
        "  (the naive circuit's, on full FheUint16: add {add_s:.3} s, scalar multiply {mul_s:.3} s — {} of each)",
        nodes * indicators
    );
    println!(
        "floor = {nodes}×expand + {propagations}×propagate + {bands}×compare, one after another = {floor_s:.3} s; aggregation / floor = {:.2}",
        aggregate_s / floor_s
    );
    Ok((aggregate_s, floor_s))
}
