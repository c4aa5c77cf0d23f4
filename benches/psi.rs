//! `cargo bench --bench psi`: ECDH-PSI of 2^20 × 2^20 elements on this machine (both parties in
//! this process, sharing both cores), for Ristretto255 and for SM2/SM3, beside the floor — the same
//! data's scalar multiplications alone, on both cores — and the same intersection computed by
//! OpenMined PSI 2.0.6 (installed with pip into a venv of the benchmark's own, cached in
//! ~/.cache/xinyong). Messages are encoded and decoded as on the wire; bits per element count
//! every byte both sides send, over m + n elements.
//!
//! Ends with `BENCH psi_ristretto n=<n> wall_s=<s> bits_per_elem=<b> floor_s=<f> ratio_vs_floor=<s/f>
//! openmined_wall_s=<o> speedup_vs_openmined=<o/s>` and a `BENCH psi_sm2 ...` line of the same keys.
//! `XY_BENCH_PSI_LOG2` sets log₂ of the set sizes (default 20); `XY_BENCH_SKIP_OPENMINED=1` skips
//! the OpenMined run (its figures are then reported as absent, never invented).

use std::collections::VecDeque;
use std::time::Instant;

use rayon::prelude::*;
use xy_psi::{Initiator, Message, Mode, Party, PsiGroup, Responder, Ristretto255, Sm2Sm3, Suite};

fn sets(n: usize) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    // Half of each set in common.
    let x = (0..n)
        .map(|i| format!("915101{:012}", i).into_bytes())
        .collect();
    let y = (0..n)
        .map(|i| format!("915101{:012}", i + n / 2).into_bytes())
        .collect();
    (x, y)
}

/// One run; returns (wall seconds, bytes sent by both sides, intersection size).
fn run<G: PsiGroup>(suite: Suite, x: Vec<Vec<u8>>, y: Vec<Vec<u8>>) -> (f64, u64, u64) {
    let started = Instant::now();
    let mut bytes = 0u64;
    let mut initiator = Initiator::<G>::new(Mode::One, x, &[7; 64], 1 << 14);
    let hello = initiator.hello(suite).encode();
    bytes += hello.len() as u64;
    let Ok(Message::Hello { mode, count, .. }) = Message::decode(&hello) else {
        panic!("hello")
    };
    let (mut responder, ack) = Responder::<G>::new(mode, count, y, &[8; 96], 1 << 14);
    let mut to_responder: VecDeque<Vec<u8>> = VecDeque::new();
    let mut to_initiator: VecDeque<Vec<u8>> = VecDeque::from([ack.encode()]);
    loop {
        let mut progressed = false;
        while let Some(m) = to_initiator.pop_front() {
            bytes += m.len() as u64;
            for reply in initiator
                .handle(Message::decode(&m).expect("decode"))
                .expect("initiator")
            {
                to_responder.push_back(reply.encode());
            }
            progressed = true;
        }
        if let Some(m) = initiator.next_message() {
            to_responder.push_back(m.encode());
            progressed = true;
        }
        while let Some(m) = to_responder.pop_front() {
            bytes += m.len() as u64;
            for reply in responder
                .handle(Message::decode(&m).expect("decode"))
                .expect("responder")
            {
                to_initiator.push_back(reply.encode());
            }
            progressed = true;
        }
        if let Some(m) = responder.next_message() {
            to_initiator.push_back(m.encode());
            progressed = true;
        }
        if !progressed {
            break;
        }
    }
    let out = initiator.finish().expect("complete");
    (started.elapsed().as_secs_f64(), bytes, out.count)
}

/// The floor: 4·n scalar multiplications (each side blinds its own set and re-blinds the
/// other's), on both cores.
fn floor<G: PsiGroup>(n: usize) -> f64 {
    let point = G::hash_to_point(b"floor");
    let key = G::scalar_from_random(&[3; 64]);
    let started = Instant::now();
    let acc: u64 = (0..4 * n)
        .into_par_iter()
        .map(|_| u64::from(G::encode(&G::mul(&point, &key))[0]))
        .sum();
    std::hint::black_box(acc);
    started.elapsed().as_secs_f64()
}

const OPENMINED_SCRIPT: &str = r#"
import sys, time
import private_set_intersection.python as psi
n = int(sys.argv[1])
x = ["915101%012d" % i for i in range(n)]
y = ["915101%012d" % (i + n // 2) for i in range(n)]
start = time.time()
client = psi.client.CreateWithNewKey(True)
server = psi.server.CreateWithNewKey(True)
setup = server.CreateSetupMessage(0.000001, len(x), y, psi.DataStructure.RAW)
request = client.CreateRequest(x)
response = server.ProcessRequest(request)
found = client.GetIntersection(setup, request if False else response)
print(time.time() - start, len(found))
"#;

/// OpenMined PSI's wall time for the same sets, or `None` if it cannot be installed here.
fn openmined(n: usize) -> Option<f64> {
    if std::env::var("XY_BENCH_SKIP_OPENMINED").is_ok_and(|v| v == "1") {
        return None;
    }
    let cache =
        std::path::PathBuf::from(std::env::var("HOME").ok()?).join(".cache/xinyong/openmined-venv");
    let python = cache.join("bin/python");
    if !python.exists() {
        eprintln!("installing openmined-psi 2.0.6 into {}", cache.display());
        let ok = std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&cache)
            .status()
            .ok()?
            .success()
            && std::process::Command::new(cache.join("bin/pip"))
                .args(["install", "--quiet", "openmined-psi==2.0.6"])
                .status()
                .ok()?
                .success();
        if !ok {
            eprintln!("openmined-psi could not be installed; its figures are absent");
            return None;
        }
    }
    let out = std::process::Command::new(&python)
        .arg("-c")
        .arg(OPENMINED_SCRIPT)
        .arg(n.to_string())
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "openmined-psi failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace();
    let wall: f64 = parts.next()?.parse().ok()?;
    let found: usize = parts.next()?.parse().ok()?;
    assert_eq!(
        found,
        n / 2,
        "OpenMined PSI must find the same intersection"
    );
    Some(wall)
}

fn report<G: PsiGroup>(name: &str, suite: Suite, n: usize, openmined_wall: Option<f64>) {
    let (x, y) = sets(n);
    let (wall, bytes, count) = run::<G>(suite, x, y);
    assert_eq!(
        count as usize,
        n / 2,
        "the intersection must be half of each set"
    );
    let bits = bytes as f64 * 8.0 / (2 * n) as f64;
    let floor_s = floor::<G>(n);
    println!(
        "{name}: {n} × {n} in {wall:.1} s, {bits:.0} bits per element; floor (4n scalar multiplications on both cores) {floor_s:.1} s; ratio {:.2}",
        wall / floor_s
    );
    let (om, speedup) = match openmined_wall {
        Some(o) => (format!("{o:.1}"), format!("{:.2}", o / wall)),
        None => ("absent".into(), "absent".into()),
    };
    println!(
        "BENCH {name} n={n} wall_s={wall:.2} bits_per_elem={bits:.0} floor_s={floor_s:.2} ratio_vs_floor={:.3} openmined_wall_s={om} speedup_vs_openmined={speedup}",
        wall / floor_s
    );
}

fn main() {
    let log2: u32 = std::env::var("XY_BENCH_PSI_LOG2")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let n = 1usize << log2;
    println!(
        "ECDH-PSI, {n} × {n} elements, half in common, on {} threads",
        rayon::current_num_threads()
    );
    let openmined_wall = openmined(n);
    if let Some(o) = openmined_wall {
        println!("OpenMined PSI 2.0.6 (ECDH, raw setup): {o:.1} s");
    }
    report::<Ristretto255>("psi_ristretto", Suite::Ristretto255, n, openmined_wall);
    report::<Sm2Sm3>("psi_sm2", Suite::Sm2, n, openmined_wall);
}
