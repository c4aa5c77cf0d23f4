//! The service-interface sharing mode (M4): a prefecture's HTTP API over the stores the flows
//! filled — the return-flow store, a scenario store, lineage and work orders — authenticated,
//! masked and logged.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;
use xy_exchange::Flow;
use xy_federation::local::{LocalNode, default_themes};
use xy_ingest::IngestOptions;
use xy_node_api::{AppState, FlowViews, app};
use xy_synth::{CsvEncoding, Generator, Kind, SynthConfig};
use xy_transport::devpki;

use crate::common::today;

const TOKEN: &str = "service-token-0123456789";

async fn get(
    router: &axum::Router,
    uri: &str,
    token: Option<&str>,
) -> (StatusCode, serde_json::Value) {
    let mut request = Request::get(uri);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 64 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefecture_serves_its_returned_and_scenario_records_masked_and_logged() {
    let root = tempfile::tempdir().unwrap();
    let layout = devpki::init(&root.path().join("pki"), false, devpki::unix_now()).unwrap();
    let clock: xy_federation::flows::Clock =
        Arc::new(|| ("2026-11-26T10:00:00+08:00".into(), devpki::unix_now()));
    let policies = xy_policy::PolicySet::builtin().unwrap();
    let province = LocalNode::start(
        &layout,
        "province",
        &root.path().join("province"),
        default_themes(&["510100"], &policies),
        clock.clone(),
    )
    .await
    .unwrap();
    let chengdu = LocalNode::start(
        &layout,
        "chengdu",
        &root.path().join("chengdu"),
        vec![],
        clock,
    )
    .await
    .unwrap();
    let mut config = SynthConfig::new(5, Kind::Penalty, today());
    config.natural_person_rate = 0.5;
    let generator = Generator::new(config);
    let headers = generator.headers().to_vec();
    let rows: Vec<_> = generator.take(200).collect();
    let id_at = headers.iter().position(|h| *h == "CF_XDR_ZJHM").unwrap();
    let ids: Vec<String> = rows
        .iter()
        .map(|r| r.cells[id_at].clone())
        .filter(|id| id.len() == 18)
        .collect();
    let input = root.path().join("cf.csv");
    xy_synth::write_csv(
        std::fs::File::create(&input).unwrap(),
        &headers,
        rows.into_iter(),
        CsvEncoding::Utf8,
        false,
    )
    .unwrap();
    let options = IngestOptions {
        category: None,
        source_unit: None,
        operator: "test".into(),
        today: today(),
        now: "2026-11-26T10:00:00+08:00".into(),
    };
    chengdu
        .ingestor
        .ingest_file(&input, None, &options, None, None)
        .await
        .unwrap();
    chengdu.push_to(&province, Flow::Share).await.unwrap();
    province.node.govern_pending().await.unwrap();
    province.push_to(&chengdu, Flow::Return).await.unwrap();
    chengdu.node.extract_scenarios().await.unwrap();
    let held = chengdu
        .node
        .stores
        .return_flow
        .record_count()
        .await
        .unwrap();
    assert!(held > 100);

    let state = AppState::new(
        chengdu.node.stores.clone(),
        chengdu.ingestor.clone(),
        chengdu.node.keys.clone(),
        TOKEN.into(),
        root.path().join("uploads"),
        1 << 20,
    );
    let router = app(state.clone());
    // Before the flows are served, the views do not exist; without a token, nothing does.
    assert_eq!(
        get(&router, "/api/v1/return-flow/records", Some(TOKEN))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    state.set_flows(FlowViews {
        jurisdiction: "510100".into(),
        is_province: false,
        scenarios: vec!["xinyidai".into()],
    });
    for uri in [
        "/api/v1/return-flow/records",
        "/api/v1/scenarios/xinyidai/records",
        "/api/v1/lineage/510100:0000000001",
        "/api/v1/work-orders",
    ] {
        assert_eq!(
            get(&router, uri, None).await.0,
            StatusCode::UNAUTHORIZED,
            "{uri}"
        );
    }

    let (status, page) = get(
        &router,
        "/api/v1/return-flow/records?limit=1000",
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["count"].as_i64(), Some(held));
    let (status, scenario) = get(
        &router,
        "/api/v1/scenarios/xinyidai/records?limit=1000",
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(scenario["count"].as_i64().unwrap() > 0);
    let text = format!("{page}{scenario}");
    assert!(!ids.is_empty());
    for id in &ids {
        assert!(
            !text.contains(id.as_str()),
            "identity number {id} served unmasked"
        );
    }
    assert!(text.contains("********"));
    let subject = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|r| r["subject_code"].as_str())
        .unwrap()
        .to_owned();
    let (_, one) = get(
        &router,
        &format!("/api/v1/return-flow/records?subject={subject}"),
        Some(TOKEN),
    )
    .await;
    assert!(
        one["records"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["subject_code"] == subject.as_str())
    );

    let (status, lineage) = get(&router, "/api/v1/lineage/510100:0000000001", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    let stores: Vec<&str> = lineage["copies"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["store"].as_str())
        .collect();
    assert_eq!(stores[..2], ["collection", "return_flow"]);
    assert_eq!(
        get(&router, "/api/v1/scenarios/nope/records", Some(TOKEN))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&router, "/api/v1/lineage/garbage", Some(TOKEN)).await.0,
        StatusCode::NOT_FOUND
    );

    // Every read is in the data log.
    let entries = xy_store::datalog::entries(chengdu.node.stores.collection.pool(), None)
        .await
        .unwrap();
    let kinds: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
    assert!(
        kinds.contains(&"lineage") && kinds.iter().filter(|k| **k == "query").count() >= 3,
        "{kinds:?}"
    );
    for node in [&province, &chengdu] {
        node.stop().await;
    }
}
