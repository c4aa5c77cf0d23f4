//! Private credit queries over loopback QUIC against a node whose collection store was ingested
//! from generated department files: in both modes a bank gets exactly the stored records of the
//! subjects it holds (masked: identity numbers never in clear) and nothing for the others; the
//! index follows new records incrementally (a filter delta carries only the change); only
//! financial-institution certificates may ask, within a rate limit; and neither the node's logs
//! nor its data log ever name a queried id.

mod common;

use common::{capture_logs, credentials, today};
use std::collections::HashMap;
use std::sync::Arc;

use xy_federation::{
    NodeServices, PrivateQueryClient, PrivateQueryService, QueryWith, load_or_create_oprf_key,
};
use xy_ingest::view::{Disclosure, record_view};
use xy_ingest::{IngestOptions, Ingestor};
use xy_psi::query::BucketKey;
use xy_store::{NodeKeys, NodeStores, StoreLocation, StoredRecord};
use xy_synth::{CsvEncoding, Defect, Generator, Kind, SynthConfig};
use xy_transport::devpki::{self, PkiLayout};
use xy_transport::{EndpointOptions, PeerConnection, PeerEndpoint};

struct Node {
    dir: tempfile::TempDir,
    stores: NodeStores,
    keys: NodeKeys,
}

async fn ingest(node: &Node, kind: Kind, seed: u64, rows: usize, now: &str) {
    let ingestor = Ingestor::new(
        xy_policy::PolicySet::builtin().unwrap(),
        node.stores.collection.clone(),
        node.keys.clone(),
    );
    let mut config = SynthConfig::new(seed, kind, today());
    for defect in Defect::REJECTING {
        config.set_rate(defect, 0.0);
    }
    config.set_rate(Defect::Duplicate, 0.0);
    config.set_rate(Defect::Changed, 0.0);
    config.natural_person_rate = 0.1;
    let generator = Generator::new(config);
    let headers = generator.headers().to_vec();
    let path = node.dir.path().join(format!("{seed}.csv"));
    xy_synth::write_csv(
        std::fs::File::create(&path).unwrap(),
        &headers,
        generator.take(rows),
        CsvEncoding::Utf8,
        false,
    )
    .unwrap();
    let options = IngestOptions {
        category: None,
        source_unit: None,
        operator: "test".into(),
        today: today(),
        now: now.into(),
    };
    let result = ingestor
        .ingest_file(&path, None, &options, None, None)
        .await
        .unwrap();
    assert_eq!(result.counts.rejected, 0);
}

async fn node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let stores = NodeStores::open(StoreLocation::Sqlite(dir.path().join("stores")))
        .await
        .unwrap();
    let keys = NodeKeys::load_or_create(dir.path()).unwrap();
    let node = Node { dir, stores, keys };
    ingest(&node, Kind::Penalty, 31, 400, "2026-11-26T10:00:00+08:00").await;
    ingest(&node, Kind::Licence, 32, 400, "2026-11-26T10:00:00+08:00").await;
    node
}

/// Every stored record by subject code.
async fn records_by_subject(node: &Node) -> HashMap<String, Vec<StoredRecord>> {
    let mut out: HashMap<String, Vec<StoredRecord>> = HashMap::new();
    let mut after = 0;
    loop {
        let page = node
            .stores
            .collection
            .scan_subject_records(after, 1000)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = last.id;
        for r in page {
            out.entry(r.subject_code.clone().unwrap())
                .or_default()
                .push(r);
        }
    }
    out
}

async fn connect(
    layout: &PkiLayout,
    member: &str,
    addr: std::net::SocketAddr,
) -> (PeerEndpoint, PeerConnection) {
    let endpoint = PeerEndpoint::client(
        "127.0.0.1:0".parse().unwrap(),
        &credentials(layout, member),
        &EndpointOptions::default(),
    )
    .unwrap();
    let connection = endpoint
        .connect(addr, &devpki::server_name("province"))
        .await
        .unwrap();
    (endpoint, connection)
}

/// The plaintext answer for `id`: the masked views of its records, as the node labels them.
fn expected(
    by_subject: &HashMap<String, Vec<StoredRecord>>,
    keys: &NodeKeys,
    id: &str,
) -> Option<Vec<serde_json::Value>> {
    by_subject.get(id).map(|records| {
        records
            .iter()
            .map(|r| record_view(r, keys, Disclosure::Masked).unwrap())
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bank_gets_the_masked_records_of_its_subjects_in_both_modes_and_the_node_never_learns_them()
 {
    let logs = capture_logs();
    let node = node().await;
    let by_subject = records_by_subject(&node).await;
    assert!(by_subject.len() > 100, "{} subjects", by_subject.len());
    let oprf_key = load_or_create_oprf_key(node.dir.path(), &node.keys).unwrap();
    // The key is kept: loading again gives the same key.
    assert_eq!(
        load_or_create_oprf_key(node.dir.path(), &node.keys)
            .unwrap()
            .to_bytes(),
        oprf_key.to_bytes()
    );
    let service = PrivateQueryService::from_store(
        node.stores.collection.clone(),
        node.keys.clone(),
        oprf_key,
        40,
    )
    .await
    .unwrap();
    assert_eq!(service.info().subjects as usize, by_subject.len());
    let service = Arc::new(NodeServices {
        scoring: None,
        private_query: Some(service),
        flows: None,
    });

    let pki_dir = tempfile::tempdir().unwrap();
    let layout = devpki::init(pki_dir.path(), false, devpki::unix_now()).unwrap();
    let server = PeerEndpoint::server(
        "127.0.0.1:0".parse().unwrap(),
        &credentials(&layout, "province"),
        &EndpointOptions::default(),
    )
    .unwrap();
    let addr = server.local_addr().unwrap();
    let serving = server.clone();
    let handler = Arc::clone(&service);
    tokio::spawn(async move { serving.serve(handler).await });

    let (_bank_endpoint, bank) = connect(&layout, "bank", addr).await;
    let mut held: Vec<String> = by_subject.keys().cloned().collect();
    held.sort();
    let mut ids: Vec<String> = held.iter().step_by(37).take(5).cloned().collect();
    ids.push("91510100MA00000000".into());
    ids.push("91510100MA99999999".into());

    // Bucket mode. The node does not hold the bank's PIR keys yet: the first fetch is refused
    // and the client registers them (once) and asks again.
    let bucket_key = BucketKey::from_seed(&[7; 32]);
    let (answers, traffic) = PrivateQueryClient::query(
        &bank,
        ids.iter().map(|i| i.as_bytes().to_vec()).collect(),
        QueryWith::Bucket(&bucket_key),
    )
    .await
    .unwrap();
    assert!(traffic.sent > bucket_key.registration().len());
    assert!(traffic.sent < 2 * bucket_key.registration().len() + ids.len() * 40_000);
    let check = |answers: &[xy_psi::query::QueryAnswer]| {
        assert_eq!(answers.len(), ids.len());
        for (answer, id) in answers.iter().zip(&ids) {
            assert_eq!(answer.found, by_subject.contains_key(id.as_str()), "{id}");
        }
        for (answer, id) in answers.iter().zip(&ids) {
            assert_eq!(answer.id, id.as_bytes());
            let got: Option<Vec<serde_json::Value>> = answer
                .label
                .as_ref()
                .map(|l| serde_json::from_slice(l).unwrap());
            assert_eq!(got, expected(&by_subject, &node.keys, id), "{id}");
            // Identity numbers leave masked only.
            if let Some(records) = by_subject.get(id.as_str()) {
                let text = String::from_utf8_lossy(answer.label.as_ref().unwrap()).into_owned();
                for r in records {
                    let clear = record_view(r, &node.keys, Disclosure::Unmasked).unwrap();
                    for field in ["CF_FR_ZJHM", "XK_FR_ZJHM"] {
                        if let Some(number) = clear.get(field).and_then(|v| v.as_str()) {
                            assert!(!number.is_empty() && !text.contains(number), "{field}");
                        }
                    }
                }
            }
        }
        assert_eq!(answers.iter().filter(|a| a.label.is_some()).count(), 5);
    };
    check(&answers);

    // Filter mode: the filter is synced once; the online query is the OPRF alone.
    let (filter, synced) = PrivateQueryClient::sync_filter(&bank, None).await.unwrap();
    assert_eq!(filter.len(), by_subject.len());
    let (answers, online) = PrivateQueryClient::query(
        &bank,
        ids.iter().map(|i| i.as_bytes().to_vec()).collect(),
        QueryWith::Filter(&filter),
    )
    .await
    .unwrap();
    // Membership only: the same ids found, no records.
    for (answer, id) in answers.iter().zip(&ids) {
        assert_eq!(
            (answer.id.as_slice(), answer.found, &answer.label),
            (id.as_bytes(), by_subject.contains_key(id.as_str()), &None)
        );
    }
    assert!(online.received < 100 * ids.len(), "{online:?}");

    // New records reach the index incrementally, and the filter by a small delta.
    ingest(&node, Kind::Penalty, 33, 5, "2026-11-26T11:00:00+08:00").await;
    let private_query = service.private_query.as_ref().unwrap();
    let changed = private_query.refresh().await.unwrap();
    assert!((1..=5).contains(&changed), "{changed} subjects changed");
    assert_eq!(private_query.refresh().await.unwrap(), 0, "nothing new");
    let (filter, delta) = PrivateQueryClient::sync_filter(&bank, Some(filter))
        .await
        .unwrap();
    assert!(
        delta * 20 < synced,
        "delta {delta} bytes, snapshot {synced}"
    );
    let by_subject = records_by_subject(&node).await;
    assert_eq!(filter.len(), by_subject.len());
    let fresh: Vec<String> = {
        let mut fresh: Vec<String> = by_subject
            .iter()
            .filter(|(_, rs)| {
                rs.iter()
                    .any(|r| r.ingested_at.starts_with("2026-11-26T11"))
            })
            .map(|(s, _)| s.clone())
            .collect();
        fresh.sort();
        fresh
    };
    assert_eq!(fresh.len(), changed);
    let fresh_ids = || fresh.iter().map(|i| i.as_bytes().to_vec()).collect();
    let (answers, _) = PrivateQueryClient::query(&bank, fresh_ids(), QueryWith::Filter(&filter))
        .await
        .unwrap();
    assert!(answers.iter().all(|a| a.found), "the delta carried them");
    let (answers, _) =
        PrivateQueryClient::query(&bank, fresh_ids(), QueryWith::Bucket(&bucket_key))
            .await
            .unwrap();
    for (answer, id) in answers.iter().zip(&fresh) {
        let got: Vec<serde_json::Value> =
            serde_json::from_slice(answer.label.as_ref().unwrap()).unwrap();
        assert_eq!(Some(got), expected(&by_subject, &node.keys, id));
    }

    // The rate limit (40 ids a minute; 7 + 7 + twice the fresh ones used so far).
    let many: Vec<Vec<u8>> = held
        .iter()
        .take(30)
        .map(|i| i.as_bytes().to_vec())
        .collect();
    let refused = PrivateQueryClient::query(&bank, many, QueryWith::Filter(&filter))
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("rate limit"), "{refused}");

    // Roles: a prefecture node may not ask.
    let (_endpoint, intruder) = connect(&layout, "chengdu", addr).await;
    let refused = PrivateQueryClient::info(&intruder)
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("financial-institution"), "{refused}");

    // Every query is audited — who and how many, never which; the logs never name an id.
    let audit = xy_store::datalog::entries(node.stores.collection.pool(), Some("pq.query"))
        .await
        .unwrap();
    // Bucket mode sends one request per bucket: count ids per mode.
    let mut asked: HashMap<String, u64> = HashMap::new();
    for entry in &audit {
        let detail: serde_json::Value = serde_json::from_str(&entry.detail).unwrap();
        *asked
            .entry(detail["mode"].as_str().unwrap().to_owned())
            .or_default() += detail["ids"].as_u64().unwrap();
    }
    let fresh_count = fresh.len() as u64;
    assert_eq!(
        asked,
        HashMap::from([
            ("bucket".to_owned(), 7 + fresh_count),
            ("filter".to_owned(), 7 + fresh_count)
        ])
    );
    let text = logs.text();
    assert!(text.contains("private query answered"));
    for id in ids.iter().chain(&fresh) {
        assert!(!text.contains(id.as_str()), "the logs name {id}");
        for entry in &audit {
            assert!(
                !format!("{entry:?}").contains(id.as_str()),
                "the audit names {id}"
            );
        }
    }
    assert!(audit.iter().all(|e| e.actor == audit[0].actor));
    // The PIR keys were registered once; every fetch is audited with its count.
    let keys = xy_store::datalog::entries(node.stores.collection.pool(), Some("pq.keys"))
        .await
        .unwrap();
    assert_eq!(keys.len(), 1);
    let fetched: u64 = xy_store::datalog::entries(node.stores.collection.pool(), Some("pq.fetch"))
        .await
        .unwrap()
        .iter()
        .map(|e| {
            let detail: serde_json::Value = serde_json::from_str(&e.detail).unwrap();
            detail["ids"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(fetched, 7 + fresh_count);
}
