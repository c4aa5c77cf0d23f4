//! Crash test of the return flow, with real processes: the province (`xinyong-node serve`) returns
//! 1,000,000 records to 绵阳 (`xinyong-node serve`), whose process is killed with SIGKILL again
//! and again in the middle of the flow and started again. At the end its return-flow store
//! equals the province's theme — the same row count and the same SM3 digest over the sorted rows
//! — with no version applied twice.
//!
//! The province's theme is seeded in the test process through the share path (batches signed
//! with 成都's certificate, applied and governed); each record carries a short payload so that
//! seeding stays quick, the flow itself is the production code path.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use xy_exchange::{Cursor, Flow, FlowRecord, Signer};
use xy_federation::local::{LocalNode, default_themes, member_credentials};
use xy_transport::devpki::{self, PkiLayout};

mod common;

use common::BIN;
const ROWS: usize = 1_000_000;
const KILLS: usize = 5;

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn record(i: usize) -> FlowRecord {
    let person = i.is_multiple_of(5);
    FlowRecord {
        gid: xy_federation::flows::gid("510100", i as i64 + 1),
        version: 1,
        category: "xzcf".into(),
        status: "active".into(),
        source_unit: "11510100MB0000011X".into(),
        subject_code: (!person).then(|| format!("91510100MA{i:08}")),
        subject_id: person.then(|| format!("5101051990{:08}", i % 100_000_000)),
        document_number: format!("成市监罚〔2026〕{i}号"),
        decision_date: Some("2026/03/01".into()),
        payload: format!(
            "{{\"CF_WSH\":\"成市监罚〔2026〕{i}号\",\"CF_SY\":\"未按规定公示年度报告\",\"CF_CFLB\":\"警告\",\"CF_NR\":\"警告\",\"CF_JDRQ\":\"2026/03/01\"}}"
        ),
        personal: person.then(|| "{\"CF_XDR_ZJHM\":\"510105199001011234\"}".to_owned()),
        lineage: "{}".into(),
    }
}

/// The province's stores with `ROWS` records governed into 绵阳's return theme.
async fn seed_province(layout: &PkiLayout, dir: &Path) -> (i64, String) {
    let policies = xy_policy::PolicySet::builtin().unwrap();
    let clock: xy_federation::flows::Clock =
        Arc::new(|| ("2026-11-26T10:00:00+08:00".into(), devpki::unix_now()));
    let province = LocalNode::start(
        layout,
        "province",
        dir,
        default_themes(&["510700"], &policies),
        clock,
    )
    .await
    .unwrap();
    let chengdu = member_credentials(layout, "chengdu").unwrap();
    let key = chengdu.signing_key().unwrap();
    let identity = chengdu.identity().unwrap().clone();
    let signer = Signer {
        jurisdiction: "510100",
        key: &key,
        certificate: chengdu.certificate_der(),
    };
    let mut after = Cursor::START;
    for start in (0..ROWS).step_by(20_000) {
        let records: Vec<FlowRecord> = (start..(start + 20_000).min(ROWS)).map(record).collect();
        let through = Cursor {
            major: 1,
            minor: (start + records.len()) as i64,
        };
        let batch =
            xy_exchange::sign_batch(&signer, Flow::Share, "510000", after, through, &records, 0)
                .unwrap();
        province
            .node
            .apply(&identity, &batch.encode())
            .await
            .unwrap();
        after = through;
    }
    let step = province.node.govern_pending().await.unwrap();
    assert_eq!(step.passed as usize, ROWS, "{step:?}");
    let digest = province
        .node
        .stores
        .province()
        .await
        .unwrap()
        .theme_digest("return_510700")
        .await
        .unwrap();
    province.stop().await;
    digest
}

fn write_config(dir: &Path, layout: &PkiLayout, member: &str, port: u16, extra: &str) {
    common::write_node_config(
        dir,
        layout,
        member,
        &format!("127.0.0.1:{port}"),
        &format!("{extra}\n[flows]\ninterval_secs = 1\n"),
    );
}

fn serve(dir: &Path, log: &Path) -> Child {
    Command::new(BIN)
        .args(["serve", "--data-dir", &dir.display().to_string()])
        .env("XY_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Records in 绵阳's return-flow store, read while the node may be running or dead.
async fn returned(db: &Path) -> i64 {
    common::count(db, "SELECT COUNT(*) FROM records")
        .await
        .max(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_killed_again_and_again_ends_with_the_senders_rows_exactly() {
    let root = tempfile::tempdir().unwrap();
    let layout = devpki::init(&root.path().join("pki"), false, devpki::unix_now()).unwrap();
    let province_dir = root.path().join("province");
    let mianyang_dir = root.path().join("mianyang");
    let started = Instant::now();
    let (expected_rows, expected_digest) = seed_province(&layout, &province_dir).await;
    assert_eq!(expected_rows as usize, ROWS);
    eprintln!("seeded {ROWS} records in {:?}", started.elapsed());

    let mianyang_port = free_udp_port();
    write_config(
        &province_dir,
        &layout,
        "province",
        free_udp_port(),
        &format!(
            "[[peer.prefectures]]\naddr = \"127.0.0.1:{mianyang_port}\"\nserver_name = \"{}\"\njurisdiction = \"510700\"\n",
            devpki::server_name("mianyang")
        ),
    );
    write_config(&mianyang_dir, &layout, "mianyang", mianyang_port, "");
    let logs: PathBuf = root.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut province = serve(&province_dir, &logs.join("province.log"));
    let db = mianyang_dir.join("stores").join("return_flow.db");

    // Kill 绵阳 in the middle of the flow, at seeded random moments after it made progress.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20261126);
    let mut kills = 0;
    let mut seen = Vec::new();
    while kills < KILLS {
        let before = returned(&db).await;
        let mut mianyang = serve(&mianyang_dir, &logs.join(format!("mianyang-{kills}.log")));
        let deadline = Instant::now() + Duration::from_secs(180);
        while returned(&db).await <= before {
            assert!(
                Instant::now() < deadline,
                "no progress after restart {kills}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..1500))).await;
        mianyang.kill().unwrap(); // SIGKILL
        mianyang.wait().unwrap();
        let at = returned(&db).await;
        seen.push(at);
        assert!(
            (at as usize) < ROWS,
            "the flow finished before kill {kills}: too few kills to test anything"
        );
        kills += 1;
    }
    eprintln!("killed 绵阳 {KILLS} times, at {seen:?} records");

    // Let it finish.
    let mut mianyang = serve(&mianyang_dir, &logs.join("mianyang-final.log"));
    let deadline = Instant::now() + Duration::from_secs(900);
    while (returned(&db).await as usize) < ROWS {
        assert!(Instant::now() < deadline, "the flow did not finish");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    mianyang.kill().unwrap();
    mianyang.wait().unwrap();
    province.kill().unwrap();
    province.wait().unwrap();

    let stores =
        xy_store::NodeStores::open(xy_store::StoreLocation::Sqlite(mianyang_dir.join("stores")))
            .await
            .unwrap();
    let (rows, digest) = stores.return_flow.digest().await.unwrap();
    assert_eq!((rows, digest), (expected_rows, expected_digest));
    // Nothing applied twice: no record has an earlier version, each batch once.
    let history: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM record_history")
        .fetch_one(stores.return_flow.pool())
        .await
        .unwrap();
    assert_eq!(history, 0);
    let batches: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT after_major, through_major FROM flow_batches WHERE flow = 'return' ORDER BY after_major",
    )
    .fetch_all(stores.return_flow.pool())
    .await
    .unwrap();
    for pair in batches.windows(2) {
        assert_eq!(pair[0].1, pair[1].0, "batches chain without gap or overlap");
    }
    assert!(
        stores
            .return_flow
            .exceptions(false)
            .await
            .unwrap()
            .is_empty()
    );
    stores.close().await;
}
