//! `cargo bench --bench sm4`: SM4-GCM seal throughput on one core for the table implementation
//! (RustCrypto `sm4`), each accelerated `xy-sm4` path this CPU has, and AES-128-GCM (ring, AES-NI)
//! for reference, with 16 KiB and 1,200-byte messages, all in one run.
//!
//! Ends with `BENCH sm4_gcm best_mb_per_s=<x> table_mb_per_s=<y> aes_gcm_mb_per_s=<z>`
//! (16 KiB messages; MB = 10^6 bytes).

use std::hint::black_box;
use std::time::{Duration, Instant};

use xy_shangmi::{Sm4Aead, TableSm4Gcm};
use xy_sm4::{Backend, Sm4, Sm4Gcm};

const KEY: [u8; 16] = [7; 16];

/// MB/s of `seal` on `len`-byte messages, run for about `secs` seconds after a warm-up.
fn throughput(len: usize, secs: f64, mut seal: impl FnMut(u64, &mut [u8])) -> f64 {
    let mut buffer = vec![0x5au8; len];
    for i in 0..16 {
        seal(i, &mut buffer);
    }
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs_f64(secs) {
        for _ in 0..16 {
            seal(n, &mut buffer);
            n += 1;
        }
    }
    black_box(&buffer);
    (n as f64 * len as f64) / 1e6 / started.elapsed().as_secs_f64()
}

fn nonce(i: u64) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&i.to_be_bytes());
    nonce
}

fn table_gcm(len: usize, secs: f64) -> f64 {
    let aead = TableSm4Gcm::new(&KEY).expect("SM4 key");
    throughput(len, secs, |i, buf| {
        black_box(aead.encrypt_detached(&nonce(i), b"", buf));
    })
}

fn path_gcm(backend: Backend, len: usize, secs: f64) -> Option<f64> {
    let aead = Sm4Aead::from_aead(Sm4Gcm::from_cipher(Sm4::with_backend(&KEY, backend)?));
    Some(throughput(len, secs, |i, buf| {
        black_box(aead.encrypt_detached(&nonce(i), b"", buf));
    }))
}

fn aes_gcm(len: usize, secs: f64) -> f64 {
    let key = ring::aead::LessSafeKey::new(
        ring::aead::UnboundKey::new(&ring::aead::AES_128_GCM, &KEY).expect("AES key"),
    );
    throughput(len, secs, |i, buf| {
        let tag = key
            .seal_in_place_separate_tag(
                ring::aead::Nonce::assume_unique_for_key(nonce(i)),
                ring::aead::Aad::empty(),
                buf,
            )
            .expect("AES-GCM seal");
        let _ = black_box(tag);
    })
}

fn main() {
    let secs: f64 = std::env::var("XY_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    println!(
        "SM4-GCM seal on one core, MB/s (10^6 bytes); best path detected: {}",
        Backend::detect().name()
    );
    println!(
        "{:<34} {:>12} {:>12}",
        "implementation", "16 KiB", "1,200 B"
    );
    let mut rows: Vec<(String, f64, f64, bool)> = Vec::new();
    rows.push((
        "table (RustCrypto sm4 + aes-gcm)".into(),
        table_gcm(16 * 1024, secs),
        table_gcm(1200, secs),
        false,
    ));
    for backend in Backend::ALL {
        match (
            path_gcm(backend, 16 * 1024, secs),
            path_gcm(backend, 1200, secs),
        ) {
            (Some(big), Some(small)) => rows.push((
                format!("xy-sm4 {}", backend.name()),
                big,
                small,
                backend.is_constant_time(),
            )),
            _ => println!(
                "{:<34} {:>12} {:>12}",
                format!("xy-sm4 {}", backend.name()),
                "n/a",
                "n/a"
            ),
        }
    }
    let aes = (aes_gcm(16 * 1024, secs), aes_gcm(1200, secs));
    for (name, big, small, _) in &rows {
        println!("{name:<34} {big:>12.0} {small:>12.0}");
    }
    println!(
        "{:<34} {:>12.0} {:>12.0}",
        "AES-128-GCM (ring, AES-NI)", aes.0, aes.1
    );
    let table = rows[0].1;
    let best = rows
        .iter()
        .filter(|r| r.3)
        .map(|r| r.1)
        .fold(0f64, f64::max);
    println!(
        "best constant-time path: {best:.0} MB/s = {:.1}× the table implementation, {:.3}× AES-128-GCM",
        best / table,
        best / aes.0
    );
    println!(
        "BENCH sm4_gcm best_mb_per_s={best:.0} table_mb_per_s={table:.0} aes_gcm_mb_per_s={:.0}",
        aes.0
    );
}
