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
//!
//! Then the private credit query: a node of ten million subjects (`XY_BENCH_PQ_DB`), each labelled
//! with a generated 行政处罚 record as the node labels them (masked JSON, deflated), indexed (OPRF,
//! SM4-GCM sealing), served by the node's private-query service over loopback QUIC to a bank's
//! client. For 1 and 100 ids (half of the hundred held by the node) in each mode it reports the
//! median online time of five queries and the UDP bytes both ways (`quinn` connection stats), and
//! ends with `BENCH private_query db=<n> ids=<k> mode=<m> online_ms=<t> bytes=<b>` lines. The
//! offline steps are reported beside them: filter mode's filter sync, bucket mode's registration
//! of the bank's PIR keys. `XY_BENCH_PSI_ONLY=private_query` runs only
//! this part, `XY_BENCH_PSI_ONLY=psi` only the PSI part.

use std::collections::VecDeque;
use std::time::Instant;

use std::sync::Arc;

use rayon::prelude::*;
use xy_federation::{NodeServices, PrivateQueryClient, PrivateQueryService, QueryWith};
use xy_psi::query::{BucketKey, LabelIndex, OprfKey, QueryMode};
use xy_psi::{Initiator, Message, Mode, Party, PsiGroup, Responder, Ristretto255, Sm2Sm3, Suite};
use xy_transport::devpki;
use xy_transport::{Credentials, EndpointOptions, PeerConnection, PeerEndpoint};

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
/// other's) and their encodings, the cheapest way the group allows (in runs, as the protocol
/// does), on both cores. Hashing to the group, decoding and validating the peer's points and the
/// protocol itself are what the run adds on top.
fn floor<G: PsiGroup>(n: usize) -> f64 {
    use xy_psi::RUN;
    let points: Vec<G::Point> = (0..RUN as u32)
        .map(|i| G::hash_to_point(&i.to_be_bytes()))
        .collect();
    let key = G::scalar_from_random(&[3; 64]);
    let started = Instant::now();
    let acc: u64 = (0..(4 * n).div_ceil(RUN))
        .into_par_iter()
        .map(|_| u64::from(G::mul_and_encode(&points, &key)[0][0]))
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

fn main() -> anyhow::Result<()> {
    let only = std::env::var("XY_BENCH_PSI_ONLY").unwrap_or_default();
    if only != "private_query" {
        psi();
    }
    if only != "psi" {
        let db = std::env::var("XY_BENCH_PQ_DB")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000_000);
        private_query(db)?;
    }
    Ok(())
}

fn psi() {
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

/// Subject `i`'s code (unique; the protocol does not care about check digits).
fn subject(i: usize) -> Vec<u8> {
    format!("91510100{i:010}").into_bytes()
}

/// Labels for subjects `range`, as the node makes them: a generated 行政处罚 record's fields as
/// JSON (identity numbers masked, the subject's code in place), deflated.
fn labels(range: std::ops::Range<usize>) -> Vec<(Vec<u8>, Vec<u8>)> {
    const ROWS_PER_GENERATOR: usize = 4096;
    let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 26).expect("date");
    let starts: Vec<usize> = range.clone().step_by(ROWS_PER_GENERATOR).collect();
    starts
        .into_par_iter()
        .flat_map_iter(|start| {
            let end = (start + ROWS_PER_GENERATOR).min(range.end);
            let mut config =
                xy_synth::SynthConfig::new(start as u64, xy_synth::Kind::Penalty, today);
            for defect in xy_synth::Defect::REJECTING {
                config.set_rate(defect, 0.0);
            }
            config.natural_person_rate = 0.0;
            let generator = xy_synth::Generator::new(config);
            let headers: Vec<&'static str> = generator.headers().to_vec();
            generator
                .take(end - start)
                .enumerate()
                .map(move |(k, row)| {
                    let id = subject(start + k);
                    let mut fields = serde_json::Map::new();
                    for (h, cell) in headers.iter().zip(row.cells) {
                        let value = match *h {
                            "CF_XDR_SHXYM" => String::from_utf8_lossy(&id).into_owned(),
                            "CF_FR_ZJHM" | "CF_XDR_ZJHM" => {
                                xy_policy::identifiers::mask_id_number(&cell)
                            }
                            _ => cell,
                        };
                        if !value.is_empty() {
                            fields.insert((*h).to_owned(), serde_json::Value::String(value));
                        }
                    }
                    let json =
                        serde_json::to_vec(&[serde_json::Value::Object(fields)]).expect("JSON");
                    (id, xy_federation::private_query::deflate(&json))
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// One private query; returns (milliseconds, UDP bytes both ways).
async fn timed_query(
    bank: &PeerConnection,
    ids: Vec<Vec<u8>>,
    with: QueryWith<'_>,
    expect_found: usize,
) -> anyhow::Result<(f64, u64)> {
    let before = bank.quinn().stats();
    let started = Instant::now();
    let (answers, _) = PrivateQueryClient::query(bank, ids, with).await?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    let after = bank.quinn().stats();
    let found = answers.iter().filter(|a| a.found).count();
    anyhow::ensure!(
        found == expect_found,
        "{found} found, {expect_found} expected"
    );
    if let QueryWith::Bucket(_) = with {
        anyhow::ensure!(answers.iter().filter(|a| a.label.is_some()).count() == found);
    }
    let bytes =
        (after.udp_tx.bytes - before.udp_tx.bytes) + (after.udp_rx.bytes - before.udp_rx.bytes);
    Ok((ms, bytes))
}

fn private_query(db: usize) -> anyhow::Result<()> {
    println!("\nprivate credit query: a node of {db} subjects, one 行政处罚 record each");
    let started = Instant::now();
    const CHUNK: usize = 1 << 18;
    let mut label_bytes = 0usize;
    let chunks = (0..db.div_ceil(CHUNK)).map(|c| {
        let chunk = labels(c * CHUNK..((c + 1) * CHUNK).min(db));
        label_bytes += chunk.iter().map(|(_, l)| l.len()).sum::<usize>();
        chunk
    });
    let index = LabelIndex::build_in_chunks(OprfKey::from_random(&[9; 64]), db, chunks, 1);
    let build_s = started.elapsed().as_secs_f64();
    println!(
        "index built in {build_s:.1} s (labels, OPRF, SM4-GCM sealing on {} threads): {} subjects, {} buckets, {:.0} MB sealed, labels {:.0} bytes on average",
        rayon::current_num_threads(),
        index.subjects(),
        index.bucket_count(),
        index.stored_bytes() as f64 / 1e6,
        label_bytes as f64 / db as f64
    );
    anyhow::ensure!(index.subjects() == db, "every subject indexed");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let dir = tempfile::tempdir()?;
        let stores = xy_store::NodeStores::open(xy_store::StoreLocation::Sqlite(
            dir.path().join("stores"),
        ))
        .await?;
        let keys = xy_store::NodeKeys::load_or_create(dir.path())?;
        let service =
            PrivateQueryService::new(index, stores.collection.clone(), keys, u32::MAX, 0);
        let layout = devpki::init(&dir.path().join("pki"), false, devpki::unix_now())?;
        let credentials = |member: &str| {
            let files = layout.member(member);
            Credentials::load(&files.cert, &files.key, &layout.ca_cert(), None)
        };
        let loopback = "127.0.0.1:0".parse()?;
        let options = EndpointOptions::default();
        let server = PeerEndpoint::server(loopback, &credentials("province")?, &options)?;
        let addr = server.local_addr()?;
        let serving = server.clone();
        let services = Arc::new(NodeServices {
            scoring: None,
            private_query: Some(service),
        flows: None,
        });
        tokio::spawn(async move { serving.serve(services).await });
        let client = PeerEndpoint::client(loopback, &credentials("bank")?, &options)?;
        let bank = client
            .connect(addr, &devpki::server_name("province"))
            .await?;

        let before = bank.quinn().stats();
        let started = Instant::now();
        let (filter, _) = PrivateQueryClient::sync_filter(&bank, None).await?;
        let sync_s = started.elapsed().as_secs_f64();
        let after = bank.quinn().stats();
        println!(
            "filter mode, offline: the filter of {} tags synced in {sync_s:.2} s, {:.1} MB received",
            filter.len(),
            (after.udp_rx.bytes - before.udp_rx.bytes) as f64 / 1e6
        );

        let bucket_key = BucketKey::from_seed(&[11; 32]);
        let before = bank.quinn().stats();
        let started = Instant::now();
        PrivateQueryClient::register(&bank, &bucket_key).await?;
        let register_s = started.elapsed().as_secs_f64();
        let after = bank.quinn().stats();
        println!(
            "bucket mode, offline: the bank's PIR keys registered in {register_s:.2} s, {:.2} MB sent",
            (after.udp_tx.bytes - before.udp_tx.bytes) as f64 / 1e6
        );

        let mut lines = Vec::new();
        let mut next = 0usize;
        for mode in [QueryMode::Bucket, QueryMode::Filter] {
            for k in [1usize, 100] {
                let mut runs = Vec::new();
                for run in 0..6 {
                    // Spread over the database: held ids and (for 100) as many unknown ones.
                    let held = k.div_ceil(2).max(1).min(k);
                    let mut ids: Vec<Vec<u8>> = (0..held)
                        .map(|j| subject((next + j * 99_991 + run * 7_919) % db))
                        .collect();
                    ids.extend((held..k).map(|j| subject(db + next + j)));
                    next += 1_000_003;
                    let with = match mode {
                        QueryMode::Bucket => QueryWith::Bucket(&bucket_key),
                        QueryMode::Filter => QueryWith::Filter(&filter),
                    };
                    let measured = timed_query(&bank, ids, with, held).await?;
                    if run > 0 {
                        runs.push(measured); // the first warms up
                    }
                }
                runs.sort_by(|a, b| a.0.total_cmp(&b.0));
                let (ms, bytes) = runs[runs.len() / 2];
                let name = match mode {
                    QueryMode::Bucket => "bucket",
                    QueryMode::Filter => "filter",
                };
                println!(
                    "{name} mode, {k} ids ({} held): median online {ms:.1} ms, {bytes} bytes on the wire",
                    k.div_ceil(2).max(1).min(k)
                );
                lines.push(format!(
                    "BENCH private_query db={db} ids={k} mode={name} online_ms={ms:.1} bytes={bytes}"
                ));
            }
        }
        for line in lines {
            println!("{line}");
        }
        bank.close(0, "done");
        client.wait_idle().await;
        anyhow::Ok(())
    })
}
