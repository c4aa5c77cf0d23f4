//! Encrypted scoring across a local federation on loopback QUIC: a province node and two
//! prefecture nodes with their own collection stores (SQLite, ingested from generated department
//! files), and a bank. The bank's decrypted grade and score equal the plaintext policy applied to
//! the prefectures' indicators; the keys are uploaded once and cached; roles are enforced; and the
//! province's logs, data log and files hold no plaintext indicator.

mod common;

use common::{capture_logs, credentials, today};
use std::sync::Arc;
use std::time::Duration;

use xy_federation::{ScoringClient, ScoringService, ServiceConfig};
use xy_fhe::{RequesterKeys, ScoringPolicy};
use xy_ingest::{IngestOptions, Ingestor};
use xy_store::{NodeKeys, NodeStores, RecordFilter, StoreLocation};
use xy_synth::{CsvEncoding, Defect, Generator, Kind, SynthConfig};
use xy_transport::devpki::{self, PkiLayout};
use xy_transport::{EndpointOptions, PeerEndpoint, PeerLink};

/// The subject every prefecture holds records of.
fn subject() -> String {
    let base = "91510100MA6CWQ8X1";
    let check = xy_policy::identifiers::uscc_check_char(base.as_bytes()).expect("check char");
    format!("{base}{}", char::from(check))
}

struct Node {
    dir: tempfile::TempDir,
    stores: NodeStores,
}

async fn node_with_records(seed: u64, every: usize) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let stores = NodeStores::open(StoreLocation::Sqlite(dir.path().join("stores")))
        .await
        .unwrap();
    let keys = NodeKeys::load_or_create(dir.path()).unwrap();
    let ingestor = Ingestor::new(
        xy_policy::PolicySet::builtin().unwrap(),
        stores.collection.clone(),
        keys,
    );
    let options = IngestOptions {
        category: None,
        source_unit: None,
        operator: "test".into(),
        today: today(),
        now: "2026-11-26T10:00:00+08:00".into(),
    };
    for (kind, column) in [
        (Kind::Penalty, "CF_XDR_SHXYM"),
        (Kind::Licence, "XK_XDR_SHXYM"),
    ] {
        let mut config = SynthConfig::new(seed, kind, today());
        for defect in Defect::REJECTING {
            config.set_rate(defect, 0.0);
        }
        config.set_rate(Defect::Duplicate, 0.0);
        config.set_rate(Defect::Changed, 0.0);
        config.natural_person_rate = 0.0;
        config.messy_rate = 0.0;
        let generator = Generator::new(config);
        let headers = generator.headers().to_vec();
        let at = headers.iter().position(|h| *h == column).unwrap();
        let types_at = headers.iter().position(|h| *h == "CF_CFLB");
        let fine_at = headers.iter().position(|h| *h == "CF_NR_FK");
        let target = subject();
        let rows = generator.take(120).enumerate().map(|(i, mut row)| {
            if i % every == 0 {
                row.cells[at] = target.clone();
                // Every other penalty of the subject is severe: an order to stop business.
                if kind == Kind::Penalty && i % (2 * every) == 0 {
                    row.cells[types_at.unwrap()] = "警告;罚款;责令停产停业".into();
                    row.cells[fine_at.unwrap()] = "12.00".into();
                }
            }
            row
        });
        let path = dir.path().join(format!("{column}.csv"));
        xy_synth::write_csv(
            std::fs::File::create(&path).unwrap(),
            &headers,
            rows,
            CsvEncoding::Utf8,
            false,
        )
        .unwrap();
        let result = ingestor
            .ingest_file(&path, None, &options, None, None)
            .await
            .unwrap();
        assert_eq!(
            result.counts.rejected, 0,
            "generated rows must all be valid"
        );
    }
    // Commitments and list entries, written as a department would (no generator for these).
    let target = subject();
    let unit_base = "11510100MB1234567";
    let unit_check = xy_policy::identifiers::uscc_check_char(unit_base.as_bytes()).unwrap();
    let unit = format!("{unit_base}{}", char::from(unit_check));
    let commitments = format!(
        "CN_XDR_MC,CN_XDR_LB,CN_XDR_SHXYM,CN_CNBH,CN_CNLX,CN_CNNR,CN_CNRQ,CN_YXQ,CN_LYZT,CN_SJLY,CN_SJLYDM\n\
         某公司,法人及非法人组织,{target},CN-{seed}-1,审批替代型,按期补齐材料,2025/03/01,2026/03/01,已履约,市发改委,{unit}\n\
         某公司,法人及非法人组织,{target},CN-{seed}-2,容缺受理型,三个月内补正,2026/01/05,2026/04/05,{broken},市发改委,{unit}\n",
        broken = if seed.is_multiple_of(2) {
            "已履约"
        } else {
            "未履约"
        },
    );
    let lists = format!(
        "MD_XDR_MC,MD_XDR_LB,MD_XDR_SHXYM,MD_MDLX,MD_MDMC,MD_RDWH,MD_RDYY,MD_RDJG,MD_LRRQ,MD_YXQ,MD_SJLY,MD_SJLYDM\n\
         某公司,法人及非法人组织,{target},{kind},{name},RD-{seed},认定事由,市市场监管局,2025/06/01,2028/06/01,市市场监管局,{unit}\n",
        kind = if seed.is_multiple_of(2) {
            "红名单"
        } else {
            "黑名单"
        },
        name = if seed.is_multiple_of(2) {
            "纳税信用A级纳税人"
        } else {
            "严重违法失信名单"
        },
    );
    for (name, text) in [("commitments.csv", commitments), ("lists.csv", lists)] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let result = ingestor
            .ingest_file(&path, None, &options, None, None)
            .await
            .unwrap();
        assert_eq!(
            (result.counts.rejected, result.counts.stored > 0),
            (0, true),
            "{name}: {:?}",
            result.counts
        );
    }
    Node { dir, stores }
}

/// The indicators a node holds for the subject, computed independently of the service.
async fn plain_values(policy: &ScoringPolicy, node: &Node) -> Vec<u16> {
    let records = node
        .stores
        .collection
        .query(&RecordFilter {
            subject_code: Some(subject()),
            limit: Some(10_000),
            ..RecordFilter::default()
        })
        .await
        .unwrap();
    xy_federation::scoring::indicator_values(policy, &records, today())
}

fn service(
    layout: &PkiLayout,
    member: &str,
    node: &Node,
    prefectures: Vec<PeerLink>,
    policy: &Arc<ScoringPolicy>,
) -> ScoringService {
    let creds = credentials(layout, member);
    ScoringService::new(ServiceConfig {
        identity: creds.identity().unwrap().clone(),
        policy: Arc::clone(policy),
        store: node.stores.collection.clone(),
        key_dir: node.dir.path().join("fhe-keys"),
        key_ttl: Duration::from_secs(3600),
        prefectures,
        today: Arc::new(today),
    })
}

fn serve(endpoint: &PeerEndpoint, service: ScoringService) {
    let serving = endpoint.clone();
    tokio::spawn(async move { serving.serve(Arc::new(service)).await });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bank_gets_the_grade_the_plaintext_policy_gives_and_the_province_sees_no_indicator() {
    let logs = capture_logs();
    let pki_dir = tempfile::tempdir().unwrap();
    let layout = devpki::init(pki_dir.path(), false, devpki::unix_now()).unwrap();
    let policy = Arc::new(ScoringPolicy::enterprise());
    let options = EndpointOptions::default();
    let loopback = "127.0.0.1:0".parse().unwrap();

    let chengdu = node_with_records(11, 11).await;
    let mianyang = node_with_records(12, 17).await;
    let province = node_with_records(13, 1_000_000).await; // the province's own store is not asked
    let expected_values = [
        plain_values(&policy, &chengdu).await,
        plain_values(&policy, &mianyang).await,
    ];
    for (i, indicator) in policy.indicators.iter().enumerate() {
        assert!(
            expected_values.iter().any(|values| values[i] > 0),
            "some prefecture must hold records for {}: {expected_values:?}",
            indicator.id
        );
    }
    let expected = policy.plain(&expected_values);

    let mut prefecture_addrs = Vec::new();
    for (member, node) in [("chengdu", &chengdu), ("mianyang", &mianyang)] {
        let endpoint =
            PeerEndpoint::server(loopback, &credentials(&layout, member), &options).unwrap();
        prefecture_addrs.push((endpoint.local_addr().unwrap(), devpki::server_name(member)));
        serve(&endpoint, service(&layout, member, node, vec![], &policy));
    }
    let province_endpoint =
        PeerEndpoint::server(loopback, &credentials(&layout, "province"), &options).unwrap();
    let links = prefecture_addrs
        .iter()
        .map(|(addr, name)| PeerLink::new(province_endpoint.clone(), *addr, name))
        .collect();
    serve(
        &province_endpoint,
        service(&layout, "province", &province, links, &policy),
    );
    let province_addr = province_endpoint.local_addr().unwrap();

    let bank = PeerEndpoint::client(loopback, &credentials(&layout, "bank"), &options).unwrap();
    let connection = bank
        .connect(province_addr, &devpki::server_name("province"))
        .await
        .unwrap();
    let keys = tokio::task::spawn_blocking(RequesterKeys::generate)
        .await
        .unwrap();
    let client = ScoringClient::new(keys, Arc::clone(&policy)).unwrap();

    let first = client.score(&connection, &subject(), true).await.unwrap();
    assert_eq!(
        (first.grade.as_str(), first.score),
        (expected.grade.as_str(), Some(expected.score))
    );
    assert_eq!(first.contributors, ["510100", "510700"]);
    assert!(
        first.uploaded_bytes > 0,
        "the first request uploads the keys"
    );
    // The second request reuses the cached key: nothing is uploaded again.
    let second = client.score(&connection, &subject(), false).await.unwrap();
    assert_eq!(
        (second.grade.as_str(), second.score, second.uploaded_bytes),
        (expected.grade.as_str(), None, 0)
    );

    // Roles: a prefecture node may not ask the province for scores.
    let intruder =
        PeerEndpoint::client(loopback, &credentials(&layout, "chengdu"), &options).unwrap();
    let intruder = intruder
        .connect(province_addr, &devpki::server_name("province"))
        .await
        .unwrap();
    let refused = client
        .score(&intruder, &subject(), false)
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("financial-institution"), "{refused}");
    // A bad subject code is refused by name.
    let refused = client
        .score(&connection, "not-a-code", false)
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("unified social credit code"), "{refused}");

    // No plaintext indicator anywhere on the province: not in the logs, not in its data log, not
    // in its files. The indicator vectors and the names they would be logged under never appear.
    let text = logs.text();
    assert!(
        text.contains("scoring key cached"),
        "the province's log lines are captured"
    );
    for values in &expected_values {
        assert!(
            !text.contains(&format!("{values:?}")),
            "indicator values logged"
        );
    }
    for indicator in &policy.indicators {
        assert!(
            !text.contains(&indicator.id),
            "indicator {} named in the logs",
            indicator.id
        );
    }
    let audit = province.stores.collection.verify_audit().await.unwrap();
    assert!(audit.is_intact());
    let mut files = vec![province.dir.path().to_path_buf()];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            let bytes = std::fs::read(&path).unwrap();
            for indicator in &policy.indicators {
                assert!(
                    !bytes
                        .windows(indicator.id.len())
                        .any(|w| w == indicator.id.as_bytes()),
                    "{} names indicator {}",
                    path.display(),
                    indicator.id
                );
            }
        }
    }
    // The data log records who asked, for which subject.
    let rows = province
        .stores
        .collection
        .verify_audit()
        .await
        .unwrap()
        .entries;
    assert!(rows >= 3, "score requests and the key upload are audited");
}
