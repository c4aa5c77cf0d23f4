//! A node and the coordinator over real HTTP on loopback: the node fetches the signed global
//! configuration and caches it, keeps working on the cached copy while the coordinator is down —
//! until the configuration expires —, refuses a configuration signed by another CA, and sends its
//! signed daily counts, which the coordinator aggregates.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use xy_coordinator_server::api::{ApiState, router};
use xy_coordinator_server::statistics::Grouping;
use xy_coordinator_server::{Coordinator, Settings};
use xy_federation::{ConfigSource, CoordinatorClient};
use xy_gmtls::pki::{PeerIdentity, Role, certification_request};
use xy_shangmi::sm2::Sm2SecretKey;

const NOW: u64 = 1_795_226_400;
const PASSWORD: &str = "correct horse battery";

fn ca_der(c: &Coordinator) -> Vec<u8> {
    c.ca_certificate().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_caches_the_configuration_through_an_outage_and_reports_its_counts() {
    let dir = tempfile::tempdir().unwrap();
    let c = Arc::new(
        Coordinator::open(
            &dir.path().join("coordinator"),
            None,
            Settings::default(),
            NOW,
        )
        .await
        .unwrap(),
    );
    c.create_admin("root", PASSWORD, "510000", NOW)
        .await
        .unwrap();
    let root = c
        .verify(
            &c.login("root", PASSWORD, None, NOW)
                .await
                .unwrap()
                .access_token,
            NOW,
        )
        .unwrap();
    let chengdu = PeerIdentity::new("510100", Role::PrefectureNode).unwrap();
    c.register_node(
        &root,
        &chengdu,
        "10.1.0.2:8642",
        "chengdu.xinyong.internal",
        NOW,
    )
    .await
    .unwrap();
    let token = c
        .create_enrolment_token(&root, &chengdu, "chengdu.xinyong.internal", 3600, NOW)
        .await
        .unwrap();
    let key = Sm2SecretKey::from_bytes(&[21; 32]).unwrap();
    let certificate = c
        .enrol(
            &token.token,
            &certification_request(&key, "c").unwrap(),
            NOW,
        )
        .await
        .unwrap()
        .certificate_pem;

    let clock = Arc::new(AtomicU64::new(NOW));
    let ticking = Arc::clone(&clock);
    let app = router(ApiState {
        coordinator: Arc::clone(&c),
        clock: Arc::new(move || ticking.load(Ordering::SeqCst)),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let node_dir = tempfile::tempdir().unwrap();
    let client = CoordinatorClient::new(&address, ca_der(&c), node_dir.path());
    let (config, source) = client.current_config(NOW).await.unwrap();
    assert_eq!(source, ConfigSource::Coordinator);
    assert_eq!(config.nodes[0].server_name, "chengdu.xinyong.internal");
    assert!(
        node_dir
            .path()
            .join(xy_federation::coordinator::CONFIG_CACHE)
            .is_file()
    );

    // The node's day, from its data log: a generated department file ingested (with rejects),
    // and two private queries answered.
    let stores = xy_store::NodeStores::open(xy_store::StoreLocation::Sqlite(
        node_dir.path().join("stores"),
    ))
    .await
    .unwrap();
    let keys = xy_store::NodeKeys::load_or_create(node_dir.path()).unwrap();
    let ingestor = xy_ingest::Ingestor::new(
        xy_policy::PolicySet::builtin().unwrap(),
        stores.collection.clone(),
        keys,
    );
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
    let generator =
        xy_synth::Generator::new(xy_synth::SynthConfig::new(5, xy_synth::Kind::Penalty, day));
    let headers = generator.headers().to_vec();
    let csv = node_dir.path().join("xzcf.csv");
    xy_synth::write_csv(
        std::fs::File::create(&csv).unwrap(),
        &headers,
        generator.take(200),
        xy_synth::CsvEncoding::Utf8,
        false,
    )
    .unwrap();
    let options = xy_ingest::IngestOptions {
        category: None,
        source_unit: None,
        operator: "test".into(),
        today: day,
        now: "2026-11-20T10:00:00+08:00".into(),
    };
    let ingested = ingestor
        .ingest_file(&csv, None, &options, None, None)
        .await
        .unwrap()
        .counts;
    for _ in 0..2 {
        stores
            .collection
            .log_access(
                "2026-11-20T11:00:00+08:00",
                "pq.query",
                "institution-client:510100",
                serde_json::json!({"ids": 1}),
            )
            .await
            .unwrap();
    }
    let report =
        xy_federation::coordinator::daily_report(&stores.collection, "510100", "2026-11-20")
            .await
            .unwrap();
    let totals = report.lines.iter().fold((0, 0, 0), |acc, l| {
        (acc.0 + l.ingested, acc.1 + l.rejected, acc.2 + l.queried)
    });
    assert_eq!(
        totals,
        (ingested.stored + ingested.updated, ingested.rejected, 2),
        "{report:?}"
    );
    assert!(ingested.rejected > 0, "the generated file carries rejects");
    client
        .send_report(&report, &key, &certificate)
        .await
        .unwrap();
    let figures = c
        .statistics(&root, "2026-11-20", "2026-11-20", Grouping::Prefecture, NOW)
        .await
        .unwrap();
    assert_eq!(
        (
            figures[0].ingested as u64,
            figures[0].rejected as u64,
            figures[0].queried
        ),
        (totals.0, totals.1, 2)
    );
    // Signed by another key: refused.
    let stranger = Sm2SecretKey::from_bytes(&[22; 32]).unwrap();
    assert!(
        client
            .send_report(&report, &stranger, &certificate)
            .await
            .is_err()
    );

    // The coordinator goes down: the cached copy serves until it expires.
    server.abort();
    let _ = server.await;
    let later = NOW + 3 * 86_400;
    let (cached, source) = client.current_config(later).await.unwrap();
    assert_eq!((source, cached), (ConfigSource::Cache, config.clone()));
    let expired = client.current_config(config.expires_at).await.unwrap_err();
    assert!(expired.to_string().contains("expired"), "{expired}");

    // A node trusting another CA refuses this configuration, fetched or cached.
    let other_dir = tempfile::tempdir().unwrap();
    let other = Coordinator::open(other_dir.path(), None, Settings::default(), NOW)
        .await
        .unwrap();
    let suspicious = CoordinatorClient::new(&address, ca_der(&other), node_dir.path());
    assert!(suspicious.cached_config(NOW).is_err());
}
