//! PSI between two nodes over loopback QUIC (mutual SM2 authentication): both suites, every
//! mode, against the plaintext intersection; institutions are refused; a responder learns the
//! intersection only in mode `both`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use xy_federation::{PsiService, run_initiator};
use xy_psi::{Mode, PsiOutput, Suite};
use xy_transport::devpki::{self, PkiLayout};
use xy_transport::{Credentials, EndpointOptions, PeerEndpoint};

fn credentials(layout: &PkiLayout, member: &str) -> Credentials {
    let files = layout.member(member);
    Credentials::load(&files.cert, &files.key, &layout.ca_cert(), None).unwrap()
}

fn ids(range: std::ops::Range<u32>) -> Vec<Vec<u8>> {
    range
        .map(|i| format!("91510100MA{i:08}").into_bytes())
        .collect()
}

type Learnt = Arc<Mutex<Vec<(Mode, Option<u64>)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_find_their_common_subjects_without_exchanging_lists() {
    let pki_dir = tempfile::tempdir().unwrap();
    let layout = devpki::init(pki_dir.path(), false, devpki::unix_now()).unwrap();
    let options = EndpointOptions::default();
    let loopback = "127.0.0.1:0".parse().unwrap();
    // Chengdu's list: 0..3000; Mianyang's: 2500..4000 → 500 in common.
    let responder_set = ids(0..3000);
    let initiator_set = ids(2500..4000);
    let plain: HashSet<Vec<u8>> = ids(2500..3000).into_iter().collect();

    let learnt: Learnt = Arc::default();
    let seen = Arc::clone(&learnt);
    let store_dir = tempfile::tempdir().unwrap();
    let stores = xy_store::NodeStores::open(xy_store::StoreLocation::Sqlite(
        store_dir.path().join("stores"),
    ))
    .await
    .unwrap();
    let service = PsiService::new(
        responder_set,
        Box::new(move |_, _, mode, output: Option<&PsiOutput>| {
            seen.lock().unwrap().push((mode, output.map(|o| o.count)));
        }),
    )
    .with_audit(stores.collection.clone());
    let server =
        PeerEndpoint::server(loopback, &credentials(&layout, "chengdu"), &options).unwrap();
    let addr = server.local_addr().unwrap();
    let serving = server.clone();
    let service = Arc::new(service);
    tokio::spawn(async move { serving.serve(service).await });

    let client =
        PeerEndpoint::client(loopback, &credentials(&layout, "mianyang"), &options).unwrap();
    let connection = client
        .connect(addr, &devpki::server_name("chengdu"))
        .await
        .unwrap();
    for suite in [Suite::Ristretto255, Suite::Sm2] {
        for mode in [Mode::One, Mode::Both, Mode::Cardinality] {
            let output = run_initiator(&connection, suite, mode, initiator_set.clone(), &[9; 64])
                .await
                .unwrap();
            assert_eq!(output.count, 500, "{suite:?} {mode:?}");
            match mode {
                Mode::Cardinality => assert!(output.intersection.is_none()),
                _ => assert_eq!(
                    output
                        .intersection
                        .unwrap()
                        .into_iter()
                        .collect::<HashSet<_>>(),
                    plain
                ),
            }
        }
    }
    // The responder finishes its side a moment after the initiator.
    for _ in 0..200 {
        if learnt.lock().unwrap().len() == 6 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let learnt = learnt.lock().unwrap().clone();
    assert_eq!(learnt.len(), 6);
    for (mode, count) in learnt {
        assert_eq!(
            count,
            (mode == Mode::Both).then_some(500),
            "{mode:?}: the responder learns only in mode both"
        );
    }

    // A bank certificate may not run PSI against a node's list.
    let bank = PeerEndpoint::client(loopback, &credentials(&layout, "bank"), &options).unwrap();
    let bank = bank
        .connect(addr, &devpki::server_name("chengdu"))
        .await
        .unwrap();
    let err = run_initiator(
        &bank,
        Suite::Ristretto255,
        Mode::One,
        initiator_set,
        &[1; 64],
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("between nodes"), "{err}");

    // Every run is in the responder's data log — who, suite, mode, sizes, what it learnt — and
    // no element of either set; the refused bank too.
    let pool = stores.collection.pool();
    let logged = |kind: &'static str| async move {
        // The responder writes its entry a moment after the initiator is done.
        for _ in 0..200 {
            let entries = xy_store::datalog::entries(pool, Some(kind)).await.unwrap();
            if entries.len() >= if kind == "psi.respond" { 6 } else { 1 } {
                return entries;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        xy_store::datalog::entries(pool, Some(kind)).await.unwrap()
    };
    let runs = logged("psi.respond").await;
    assert_eq!(runs.len(), 6);
    for run in &runs {
        let detail: serde_json::Value = serde_json::from_str(&run.detail).unwrap();
        assert_eq!(detail["outcome"], "complete");
        assert_eq!(detail["own_elements"], 3000);
        assert_eq!(detail["peer_elements"], 1500);
        assert!(!run.detail.contains("91510100MA"), "{}", run.detail);
    }
    assert_eq!(logged("psi.refused").await.len(), 1);
    assert!(stores.collection.verify_audit().await.unwrap().is_intact());
}
