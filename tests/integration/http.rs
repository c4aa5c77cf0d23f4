//! The node's HTTP API through `app(state)`, without a socket.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;
use xy_node_api::{AppState, app};
use xy_store::NodeKeys;
use xy_synth::{CsvEncoding, Generator, Kind, SynthConfig};

use crate::common::{sqlite_node, today};

const TOKEN: &str = "test-token-0123456789";

async fn body_text(r: axum::response::Response) -> String {
    let bytes = axum::body::to_bytes(r.into_body(), 64 << 20).await.unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri)
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn push_report_query_quality_audit() {
    let dir = tempfile::tempdir().unwrap();
    let (stores, ingestor) = sqlite_node(dir.path()).await;
    let keys = NodeKeys::load_or_create(dir.path()).unwrap();
    let router = app(AppState::new(
        stores.clone(),
        ingestor,
        keys,
        TOKEN.into(),
        dir.path().join("uploads"),
        8 << 20,
    ));

    // Deny by default.
    for uri in [
        "/api/v1/records",
        "/api/v1/quality",
        "/api/v1/audit/verify",
        "/api/v1/batches/x/report",
    ] {
        let r = router
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{uri}");
        let r = router
            .clone()
            .oneshot(
                Request::get(uri)
                    .header("authorization", "Bearer wrong")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{uri}");
    }
    let r = router
        .clone()
        .oneshot(Request::get("/health").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Push a CSV.
    let mut cfg = SynthConfig::new(31, Kind::Penalty, today());
    cfg.natural_person_rate = 0.5;
    let generator = Generator::new(cfg);
    let headers = generator.headers().to_vec();
    let mut csv = Vec::new();
    let defects = xy_synth::write_csv(
        &mut csv,
        &headers,
        generator.take(400),
        CsvEncoding::Utf8,
        false,
    )
    .unwrap();
    let push = Request::post("/api/v1/ingest")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "text/csv")
        .body(Body::from(csv.clone()))
        .unwrap();
    let r = router.clone().oneshot(push).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let result: serde_json::Value = serde_json::from_str(&body_text(r).await).unwrap();
    assert_eq!(result["counts"]["total"], 400);
    let rejected = defects
        .iter()
        .filter(|d| d.expected_outcome() == "rejected")
        .count();
    assert_eq!(result["counts"]["rejected"], rejected as u64);
    let batch = result["batch_id"].as_str().unwrap().to_owned();

    // Uploads are spooled and removed.
    assert_eq!(
        std::fs::read_dir(dir.path().join("uploads"))
            .unwrap()
            .count(),
        0
    );

    // The report, as JSON lines and as CSV for the source unit.
    let r = router
        .clone()
        .oneshot(get(&format!("/api/v1/batches/{batch}/report")))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(body_text(r).await.lines().count(), 400);
    let r = router
        .clone()
        .oneshot(get(&format!(
            "/api/v1/batches/{batch}/report?format=csv&only_problems=true"
        )))
        .await
        .unwrap();
    let csv_report = body_text(r).await;
    assert!(csv_report.starts_with("\u{feff}行号,结果"));
    assert!(csv_report.lines().count() > rejected);
    let r = router
        .clone()
        .oneshot(get("/api/v1/batches/nope/report"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Records: identity numbers are masked, never in clear.
    let r = router
        .clone()
        .oneshot(get("/api/v1/records?category=xzcf&limit=500"))
        .await
        .unwrap();
    let text = body_text(r).await;
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(body["count"].as_u64().unwrap() > 100);
    let id_col = headers.iter().position(|h| *h == "CF_XDR_ZJHM").unwrap();
    let mut rows = Vec::new();
    let mut reader = csv::ReaderBuilder::new().from_reader(&csv[..]);
    for rec in reader.records() {
        rows.push(rec.unwrap());
    }
    let ids: Vec<String> = rows
        .iter()
        .map(|r| r[id_col].to_uppercase())
        .filter(|s| s.len() == 18)
        .collect();
    assert!(!ids.is_empty());
    for id in &ids {
        assert!(!text.contains(id.as_str()), "identity number {id} in clear");
    }
    assert!(text.contains("********"));
    let r = router
        .clone()
        .oneshot(get("/api/v1/records?from=not-a-date"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // Quality in three formats.
    for (fmt, needle) in [
        ("json", "\"rejection_rate\""),
        ("csv", "来源单位"),
        ("text", "数据质量报告"),
    ] {
        let r = router
            .clone()
            .oneshot(get(&format!("/api/v1/quality?format={fmt}")))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(body_text(r).await.contains(needle), "{fmt}");
    }

    // Every read was audited, and the chain holds.
    let r = router
        .clone()
        .oneshot(get("/api/v1/audit/verify"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let audit: serde_json::Value = serde_json::from_str(&body_text(r).await).unwrap();
    assert!(audit["entries"].as_u64().unwrap() >= 2);
    let log = xy_store::datalog::entries(stores.collection.pool(), Some("query"))
        .await
        .unwrap();
    assert!(!log.is_empty());
    // Both successful report reads are on record (the missing batch was refused before any read).
    let reads = xy_store::datalog::entries(stores.collection.pool(), Some("report"))
        .await
        .unwrap();
    assert_eq!(reads.len(), 2, "{reads:?}");
    assert!(reads.iter().all(|e| e.detail.contains(&batch)));

    // Oversized and wrongly typed pushes.
    let big = Request::post("/api/v1/ingest?format=csv")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::from(vec![b'a'; 9 << 20]))
        .unwrap();
    assert_eq!(
        router.clone().oneshot(big).await.unwrap().status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let untyped = Request::post("/api/v1/ingest")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::from("x"))
        .unwrap();
    assert_eq!(
        router.clone().oneshot(untyped).await.unwrap().status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    let garbage = Request::post("/api/v1/ingest?format=csv")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::from("a,b,c\n1,2,3\n"))
        .unwrap();
    let r = router.clone().oneshot(garbage).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body_text(r).await.contains("表头"));
}

/// A coordinator's single-sign-on token at a node: verified offline with the coordinator's key;
/// the right roles of the right jurisdiction get in (and are named in the data log); expired,
/// forged, wrong-audience and foreign-jurisdiction tokens are refused.
#[tokio::test]
async fn coordinator_tokens_are_verified_offline_by_the_node() {
    use std::sync::Arc;
    use xy_coordinator_server::{Coordinator, Settings, UserRole};
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let coordinator_dir = dir.path().join("coordinator");
    let c = Coordinator::open(&coordinator_dir, None, Settings::default(), now)
        .await
        .unwrap();
    let password = "correct horse battery";
    c.create_admin("root", password, "510000", now)
        .await
        .unwrap();
    let root = c
        .verify(
            &c.login("root", password, None, now)
                .await
                .unwrap()
                .access_token,
            now,
        )
        .unwrap();
    for (name, role, jurisdiction) in [
        ("cd-op", UserRole::DepartmentOperator, "510100"),
        ("my-op", UserRole::DepartmentOperator, "510700"),
        ("banker", UserRole::InstitutionUser, "510100"),
    ] {
        c.register_user(name, password, role, jurisdiction, now)
            .await
            .unwrap();
        c.approve_user(&root, name, now).await.unwrap();
    }
    let token = |name: &str, at: u64| {
        let c = &c;
        let name = name.to_owned();
        async move {
            c.login(&name, password, None, at)
                .await
                .unwrap()
                .access_token
        }
    };

    let (stores, ingestor) = sqlite_node(&dir.path().join("node")).await;
    let keys = NodeKeys::load_or_create(&dir.path().join("node")).unwrap();
    let state = AppState::new(
        stores.clone(),
        ingestor,
        keys,
        TOKEN.into(),
        dir.path().join("uploads"),
        8 << 20,
    );
    let sso_key = c.sso_public_key();
    state.set_single_sign_on(xy_node_api::SingleSignOn {
        jurisdiction: "510100".into(),
        key: Arc::new(move |_| Some(sso_key.clone())),
    });
    let router = app(state);
    let call = |bearer: String| {
        let router = router.clone();
        async move {
            router
                .oneshot(
                    Request::get("/api/v1/records")
                        .header("authorization", format!("Bearer {bearer}"))
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(call(token("cd-op", now).await).await, StatusCode::OK);
    assert_eq!(call(token("root", now).await).await, StatusCode::OK);
    assert_eq!(call(token("my-op", now).await).await, StatusCode::FORBIDDEN);
    assert_eq!(
        call(token("banker", now).await).await,
        StatusCode::FORBIDDEN
    );
    // Expired (issued an hour ago, valid 15 minutes).
    assert_eq!(
        call(token("cd-op", now - 3600).await).await,
        StatusCode::UNAUTHORIZED
    );
    // Forged: a changed payload.
    let good = token("cd-op", now).await;
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    parts[1] = parts[1].replacen('e', "f", 1);
    assert_eq!(call(parts.join(".")).await, StatusCode::UNAUTHORIZED);
    // Signed with the coordinator's key for another audience.
    let key_pem = std::fs::read_to_string(coordinator_dir.join("sso.key")).unwrap();
    let key_der = {
        use base64::Engine;
        let body: String = key_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap()
    };
    let sso_secret = xy_gmtls::pki::private_key_from_der(&key_der).unwrap();
    let signed_for = |audience: &str| {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let claims = serde_json::json!({
            "sub": "cd-op", "role": "department-operator", "jurisdiction": "510100",
            "iat": now, "exp": now + 600, "iss": "xinyong-coordinator", "aud": audience
        });
        let signed = format!(
            "{}.{}",
            b64.encode(r#"{"alg":"SM2SM3","typ":"JWT"}"#),
            b64.encode(claims.to_string())
        );
        let signature = sso_secret
            .sign(xy_shangmi::sm2::CERT_DISTID, signed.as_bytes())
            .unwrap();
        format!("{signed}.{}", b64.encode(signature))
    };
    assert_eq!(
        call(signed_for("another-platform")).await,
        StatusCode::UNAUTHORIZED
    );
    // The same claims for the platform's audience get in: only the audience made the difference.
    assert_eq!(call(signed_for("xinyong-platform")).await, StatusCode::OK);
    // The data log names the single-sign-on users.
    let queries = xy_store::datalog::entries(stores.collection.pool(), Some("query"))
        .await
        .unwrap();
    assert!(
        queries.iter().any(|e| e.actor == "sso:cd-op"),
        "{queries:?}"
    );
}
