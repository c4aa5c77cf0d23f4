//! The federated flows over loopback QUIC, in one process: two prefectures ingest department
//! files, share them up, the province governs them (a rule failure becomes a work order on the
//! source's node; a record two prefectures both hold is deduplicated), returns each prefecture its
//! theme, and the prefectures extract a scenario. Then a correction closes the work order, a
//! retraction reaches every copy, lineage answers for a record, replays and tampering are
//! refused, and nothing is lost on the way.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::today;
use xy_exchange::{Cursor, Flow};
use xy_federation::flows::Clock;
use xy_federation::local::{LocalNode, default_themes};
use xy_ingest::IngestOptions;
use xy_store::StoreLocation;
use xy_synth::{CsvEncoding, Defect, Generator, Kind, SynthConfig};
use xy_transport::devpki::{self, PkiLayout};

fn clock() -> Clock {
    Arc::new(|| ("2026-11-26T10:00:00+08:00".to_owned(), 1_795_000_000))
}

fn options() -> IngestOptions {
    IngestOptions {
        category: None,
        source_unit: None,
        operator: "test".into(),
        today: today(),
        now: "2026-11-26T10:00:00+08:00".into(),
    }
}

fn uscc(base: &str) -> String {
    let check = xy_policy::identifiers::uscc_check_char(base.as_bytes()).unwrap();
    format!("{base}{}", char::from(check))
}

/// Generated valid rows of `kind` (a fifth natural persons), as headers and cells.
fn rows(
    seed: u64,
    kind: Kind,
    unit: (&str, &str),
    n: usize,
) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let mut config = SynthConfig::new(seed, kind, today());
    for defect in Defect::REJECTING {
        config.set_rate(defect, 0.0);
    }
    config.set_rate(Defect::Duplicate, 0.0);
    config.set_rate(Defect::Changed, 0.0);
    config.source_unit = (unit.0.to_owned(), unit.1.to_owned());
    let generator = Generator::new(config);
    let headers = generator.headers().to_vec();
    (headers, generator.take(n).map(|r| r.cells).collect())
}

async fn ingest(node: &LocalNode, name: &str, headers: &[&str], rows: &[Vec<String>]) -> u64 {
    let path = node.dir.join(name);
    xy_synth::write_csv(
        std::fs::File::create(&path).unwrap(),
        headers,
        rows.iter().map(|cells| xy_synth::SynthRow {
            cells: cells.clone(),
            defect: Defect::None,
        }),
        CsvEncoding::Utf8,
        false,
    )
    .unwrap();
    let result = node
        .ingestor
        .ingest_file(&path, None, &options(), None, None)
        .await
        .unwrap();
    assert_eq!(result.counts.rejected, 0, "{name}: {:?}", result.counts);
    result.counts.stored + result.counts.updated
}

fn column(headers: &[&str], name: &str) -> usize {
    headers.iter().position(|h| *h == name).unwrap()
}

/// The three nodes; with `postgres`, the province and Chengdu keep their stores in PostgreSQL.
async fn start(
    layout: &PkiLayout,
    root: &Path,
    postgres: bool,
) -> (LocalNode, LocalNode, LocalNode) {
    let policies = xy_policy::PolicySet::builtin().unwrap();
    // Chengdu subscribed to every category; Mianyang, at first, to penalties only.
    let mut themes = default_themes(&["510100", "510700"], &policies);
    themes[1].categories = vec!["xzcf".into()];
    let location = |member: &'static str| async move {
        if postgres {
            let name = format!("flows_{member}");
            let url = xy_store::testing::postgres_database(&name).await.unwrap();
            StoreLocation::Postgres(url)
        } else {
            StoreLocation::Sqlite(root.join(member).join("stores"))
        }
    };
    let province = LocalNode::start_at(
        layout,
        "province",
        &root.join("province"),
        location("province").await,
        themes,
        clock(),
    )
    .await
    .unwrap();
    let chengdu = LocalNode::start_at(
        layout,
        "chengdu",
        &root.join("chengdu"),
        location("chengdu").await,
        vec![],
        clock(),
    )
    .await
    .unwrap();
    let mianyang = LocalNode::start(layout, "mianyang", &root.join("mianyang"), vec![], clock())
        .await
        .unwrap();
    (province, chengdu, mianyang)
}

/// Records in a prefecture's return-flow store.
async fn returned(node: &LocalNode) -> i64 {
    node.node.stores.return_flow.record_count().await.unwrap()
}

/// A prefecture's open return-flow exceptions.
async fn open_exceptions(node: &LocalNode) -> Vec<xy_store::FlowException> {
    node.node.stores.return_flow.exceptions(true).await.unwrap()
}

/// The province's record counts.
async fn province_counts(province: &LocalNode) -> xy_store::ProvinceCounts {
    let store = province.node.stores.province().await.unwrap();
    store.counts().await.unwrap()
}

/// Share both prefectures up, govern, return to both, extract their scenarios.
async fn round(province: &LocalNode, prefectures: [&LocalNode; 2]) -> xy_store::GovernanceStep {
    for p in prefectures {
        p.push_to(province, Flow::Share).await.unwrap();
    }
    let step = province.node.govern_pending().await.unwrap();
    for p in prefectures {
        province.push_to(p, Flow::Return).await.unwrap();
        province.push_to(p, Flow::Orders).await.unwrap();
        p.node.extract_scenarios().await.unwrap();
    }
    step
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_go_up_are_governed_come_back_and_reach_the_scenarios() {
    the_whole_loop(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_runs_the_same_with_postgresql_stores() {
    the_whole_loop(true).await;
}

async fn the_whole_loop(postgres: bool) {
    let root = tempfile::tempdir().unwrap();
    let layout = devpki::init(&root.path().join("pki"), false, devpki::unix_now()).unwrap();
    let (province, chengdu, mianyang) = start(&layout, root.path(), postgres).await;
    let chengdu_unit = uscc("11510100MB0000011");
    let mianyang_unit = uscc("11510700MB0000022");

    // Chengdu: penalties and licences; one fine a hundred thousand times too large (rule G03).
    let (cf_headers, mut cf_rows) = rows(
        21,
        Kind::Penalty,
        ("成都市市场监督管理局", &chengdu_unit),
        300,
    );
    let fine = column(&cf_headers, "CF_NR_FK");
    let bad = cf_rows.iter().position(|r| !r[fine].is_empty()).unwrap();
    cf_rows[bad][fine] = "200000.00".into();
    let (xk_headers, xk_rows) = rows(22, Kind::Licence, ("成都市行政审批局", &chengdu_unit), 200);
    let mut ingested = ingest(&chengdu, "cf.csv", &cf_headers, &cf_rows).await;
    ingested += ingest(&chengdu, "xk.csv", &xk_headers, &xk_rows).await;
    // Mianyang: its own penalties, and two of Chengdu's decisions reported to it as well.
    let (_, mut my_rows) = rows(
        23,
        Kind::Penalty,
        ("绵阳市市场监督管理局", &mianyang_unit),
        250,
    );
    my_rows.push(cf_rows[(bad + 1) % 300].clone());
    my_rows.push(cf_rows[(bad + 2) % 300].clone());
    ingested += ingest(&mianyang, "cf.csv", &cf_headers, &my_rows).await;
    assert_eq!(ingested, 752);

    let step = round(&province, [&chengdu, &mianyang]).await;
    let counts = province_counts(&province).await;
    assert_eq!(counts.raw, 752, "every shared record reaches the raw store");
    assert_eq!(
        (step.failed, counts.open_orders),
        (1, 1),
        "rule G03 fails once"
    );
    assert_eq!(
        (step.duplicates, counts.duplicates),
        (2, 2),
        "two cross-source duplicates"
    );
    assert_eq!(counts.base, 752 - 1 - 2);
    let penalties = 552 - 1 - 2;
    assert_eq!(counts.themed, counts.base + penalties);
    assert_eq!(counts.ungoverned, 0);
    assert_eq!(returned(&chengdu).await, counts.base);
    assert_eq!(returned(&mianyang).await, penalties);
    // The batch Mianyang got, as it was sent (replayed below).
    let replay = province
        .node
        .build_batch(Flow::Return, "510700", Cursor::START)
        .await
        .unwrap()
        .unwrap();
    // Mianyang's subscription to licences is granted: its theme is filled from the base store
    // and the next round returns the licences too.
    let policies = xy_policy::PolicySet::builtin().unwrap();
    let added = province
        .node
        .set_themes(default_themes(&["510100", "510700"], &policies))
        .await
        .unwrap();
    assert_eq!(added, [("return_510700".to_owned(), 200)]);
    round(&province, [&chengdu, &mianyang]).await;
    for p in [&chengdu, &mianyang] {
        assert_eq!(returned(p).await, counts.base);
        assert!(
            p.node
                .stores
                .return_flow
                .exceptions(false)
                .await
                .unwrap()
                .is_empty()
        );
    }

    // The work order is on Chengdu's node, naming the rule and the document.
    let orders = chengdu
        .node
        .stores
        .collection
        .work_orders(true)
        .await
        .unwrap();
    assert_eq!(orders.len(), 1);
    let doc = &cf_rows[bad][column(&cf_headers, "CF_WSH")];
    assert_eq!(&orders[0].order.document_number, doc);
    assert_eq!(orders[0].order.faults[0].0, "G03");
    assert!(
        mianyang
            .node
            .stores
            .collection
            .work_orders(false)
            .await
            .unwrap()
            .is_empty()
    );

    // Scenario: only active records, masked; no identity number in clear.
    let scenario = mianyang.node.stores.scenario("xinyidai").await.unwrap();
    let in_scenario = scenario.record_count().await.unwrap();
    assert!(in_scenario > 0 && in_scenario <= counts.base);
    let all = scenario.records(None, 100_000).await.unwrap();
    let ids = column(&cf_headers, "CF_XDR_ZJHM");
    let person = cf_rows
        .iter()
        .find(|r| !r[ids].is_empty())
        .expect("a natural person");
    let text = serde_json::to_string(&all.iter().map(|r| &r.payload).collect::<Vec<_>>()).unwrap();
    assert!(
        !text.contains(&person[ids]),
        "an identity number left the scenario unmasked"
    );
    assert!(
        text.contains("********"),
        "masked identity numbers are shown"
    );

    // A scenario is extracted again only when its refresh is due (refresh_minutes).
    assert!(
        mianyang
            .node
            .extract_due_scenarios()
            .await
            .unwrap()
            .is_empty()
    );

    // Nothing more to send: a second push sends no batch.
    let again = chengdu.push_to(&province, Flow::Share).await.unwrap();
    assert_eq!(again.batches, 0);

    // A replayed batch is applied once; a tampered one is refused and recorded as an exception.
    let connection = province.connect(&mianyang).await.unwrap();
    connection
        .send_bulk(b"flow.batch", [replay.encode()])
        .await
        .unwrap();
    assert_eq!(returned(&mianyang).await, counts.base);
    let mut tampered = replay.clone();
    let at = tampered.body.len() / 2;
    tampered.body[at] ^= 1;
    let refused = connection
        .send_bulk(b"flow.batch", [tampered.encode()])
        .await;
    assert!(format!("{refused:?}").contains("digest"), "{refused:?}");
    let exceptions = open_exceptions(&mianyang).await;
    assert_eq!(
        (exceptions.len(), exceptions[0].stage.as_str()),
        (1, "verify")
    );
    // The refused batch is parked in the staging area as it arrived.
    let staged = mianyang.node.stores.return_flow.staged().await.unwrap();
    assert_eq!(staged.len(), 1);
    assert_eq!(staged[0].2, tampered.encode());
    connection.close(0, "done");
    // A prefecture may not send another prefecture the return flow.
    let refused = chengdu.push_to(&mianyang, Flow::Return).await;
    assert!(
        format!("{refused:?}").contains("may not send"),
        "{refused:?}"
    );

    // The source fixes the row: a new version passes, the order closes on both sides.
    cf_rows[bad][fine] = "20.00".into();
    let fixed = vec![cf_rows[bad].clone()];
    assert_eq!(ingest(&chengdu, "fix.csv", &cf_headers, &fixed).await, 1);
    let step = round(&province, [&chengdu, &mianyang]).await;
    assert_eq!((step.passed, step.closed_orders, step.failed), (1, 1, 0));
    let orders = chengdu
        .node
        .stores
        .collection
        .work_orders(false)
        .await
        .unwrap();
    assert_eq!(orders[0].order.status, "closed");
    let counts = province_counts(&province).await;
    assert_eq!((counts.base, counts.open_orders), (752 - 2, 0));

    // Retraction at the origin reaches every copy; history keeps the old version.
    let record = chengdu
        .node
        .stores
        .collection
        .query(&xy_store::RecordFilter {
            category: Some("xzxk".into()),
            limit: Some(1),
            ..Default::default()
        })
        .await
        .unwrap()
        .remove(0);
    let gid = xy_federation::flows::gid("510100", record.id);
    assert!(scenario.record(&gid).await.unwrap().is_some());
    chengdu
        .node
        .stores
        .collection
        .retract(
            record.id,
            "决定已被撤销",
            "test",
            "retract-1",
            "2026-11-26T11:00:00+08:00",
        )
        .await
        .unwrap();
    round(&province, [&chengdu, &mianyang]).await;
    for p in [&chengdu, &mianyang] {
        let held = p
            .node
            .stores
            .return_flow
            .record(&gid)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((held.status.as_str(), held.version), ("withdrawn", 2));
        let history = p.node.stores.return_flow.history(&gid).await.unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!((history[0].0, history[0].1.as_str()), (1, "active"));
    }
    assert!(
        scenario.record(&gid).await.unwrap().is_none(),
        "a withdrawn record leaves the scenario"
    );

    // Lineage: where the copy on Mianyang came from, stage by stage.
    let lineage = mianyang.node.lineage(&gid).await.unwrap();
    let copy = &lineage["copies"][0];
    assert_eq!(copy["store"], "return_flow");
    let stages = &copy["lineage"];
    assert_eq!(stages["origin"]["node"], "510100");
    assert_eq!(stages["origin"]["ingest_batch"], "retract-1");
    assert!(stages["share"]["batch"].is_string());
    assert_eq!(stages["governance"]["checks"], "passed");
    assert_eq!(stages["theme"], "return_510700");
    assert_eq!(stages["return"]["from"], "510000");
    // Read back from where it is kept once: every current record of the return store refers to a
    // lineage, and the batches' records share few of them.
    let return_store = mianyang.node.stores.return_flow.pool();
    let count = |sql: &'static str| async move {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(return_store)
            .await
            .unwrap()
    };
    let records = count("SELECT COUNT(*) FROM records").await;
    assert_eq!(
        count("SELECT COUNT(*) FROM records WHERE lineage LIKE '#%'").await,
        records
    );
    let kept = count("SELECT COUNT(*) FROM lineages").await;
    assert!(
        kept > 0 && kept * 10 < records,
        "{kept} lineages for {records} records"
    );
    let on_province = province.node.lineage(&gid).await.unwrap();
    let stores: Vec<&str> = on_province["copies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["store"].as_str().unwrap())
        .collect();
    assert_eq!(
        stores,
        ["raw", "base", "theme:return_510100", "theme:return_510700"]
    );
    let origin = chengdu.node.lineage(&gid).await.unwrap();
    assert_eq!(origin["copies"][0]["store"], "collection");

    // Nothing lost: each return store equals its theme (count and digest of the sorted rows).
    let expected = counts.base;
    for p in [&chengdu, &mianyang] {
        let (n, _) = p.node.stores.return_flow.digest().await.unwrap();
        assert_eq!(n, expected);
    }
    // A returned record of a category 绵阳 does not know is kept as a mapping exception (the
    // rest of its batch applies), and stays one while its policies do not know the category.
    let credentials = xy_federation::local::member_credentials(&layout, "province").unwrap();
    let key = credentials.signing_key().unwrap();
    let writer = mianyang.node.stores.return_flow.writer();
    let after = writer.cursor("return", "510000").await.unwrap();
    let mut odd = mianyang
        .node
        .stores
        .return_flow
        .query(None, 1)
        .await
        .unwrap()
        .remove(0)
        .into_flow(&mianyang.node.keys)
        .unwrap();
    odd.gid = "510100:9999999999".into();
    odd.category = "nonexistent".into();
    let through = Cursor {
        major: after.major,
        minor: after.minor + 1,
    };
    let batch = xy_exchange::sign_batch(
        &xy_exchange::Signer {
            jurisdiction: "510000",
            key: &key,
            certificate: credentials.certificate_der(),
        },
        Flow::Return,
        "510700",
        after,
        through,
        &[odd],
        0,
    )
    .unwrap();
    let province_identity = credentials.identity().unwrap().clone();
    let applied = mianyang
        .node
        .apply(&province_identity, &batch.encode())
        .await
        .unwrap();
    assert_eq!((applied.applied, applied.exceptions), (0, 1));
    let open = open_exceptions(&mianyang).await;
    assert!(
        open.iter()
            .any(|e| e.stage == "map" && e.reason.contains("nonexistent"))
    );
    assert_eq!(mianyang.node.retry_exceptions().await.unwrap(), 0);

    for node in [&province, &chengdu, &mianyang] {
        node.stop().await;
    }
}
