//! The coordinator's identity service end to end: enrolment from an SM2 request and a one-time
//! token (the certificates then carry a real QUIC handshake between two enrolled parties),
//! revocation on a CRL OpenSSL reads, the signed and expiring global configuration, users with
//! review by level, lockout, single-sign-on tokens verified offline, refresh once, the audit chain
//! (and a tampered entry found), and the HTTP API with its OpenAPI description.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{NOW, PASSWORD, admin, key, postgres_database};
use tower::ServiceExt;
use xy_coordinator_server::api::{ApiState, ROUTES, router};
use xy_coordinator_server::{
    AUDIENCE, Coordinator, CoordinatorError, Settings, UserRole, verify_global_config, verify_token,
};
use xy_gmtls::pki::{
    ParsedCertificate, PeerIdentity, Role, certification_request, pem_encode, private_key_to_pkcs8,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolled_certificates_carry_a_quic_handshake_and_a_revocation_reaches_the_crl() {
    let dir = tempfile::tempdir().unwrap();
    let c = common::open(dir.path()).await;
    let root = admin(&c).await;
    let mut issued = Vec::new();
    for (seed, jurisdiction, role, name) in [
        (
            1u8,
            "510000",
            Role::ProvinceNode,
            "province.xinyong.internal",
        ),
        (
            2,
            "510100",
            Role::PrefectureNode,
            "chengdu.xinyong.internal",
        ),
    ] {
        let identity = PeerIdentity::new(jurisdiction, role).unwrap();
        let token = c
            .create_enrolment_token(&root, &identity, name, 3600, NOW)
            .await
            .unwrap();
        let request = certification_request(&key(seed), "ignored").unwrap();
        let enrolment = c.enrol(&token.token, &request, NOW).await.unwrap();
        let der = common::der(&enrolment.certificate_pem);
        let parsed = ParsedCertificate::parse(&der).unwrap();
        assert_eq!(parsed.identity, Some(identity));
        assert_eq!(parsed.public_key, key(seed).public_key());
        // The token works once.
        let again = c.enrol(&token.token, &request, NOW).await.unwrap_err();
        assert!(
            matches!(again, CoordinatorError::Unauthorized(_)),
            "{again}"
        );
        issued.push((seed, name, enrolment));
    }

    // The two enrolled nodes complete a mutually authenticated QUIC handshake.
    let files = tempfile::tempdir().unwrap();
    let ca = files.path().join("ca.pem");
    std::fs::write(&ca, &issued[0].2.ca_pem).unwrap();
    let credentials = |seed: u8, enrolment: &xy_coordinator_server::Enrolment| {
        let cert = files.path().join(format!("{seed}.pem"));
        let key_path = files.path().join(format!("{seed}.key"));
        std::fs::write(&cert, &enrolment.certificate_pem).unwrap();
        std::fs::write(
            &key_path,
            pem_encode("PRIVATE KEY", &private_key_to_pkcs8(&key(seed))),
        )
        .unwrap();
        xy_transport::Credentials::load(&cert, &key_path, &ca, None).unwrap()
    };
    let province = credentials(1, &issued[0].2);
    let bank = credentials(2, &issued[1].2);
    let options = xy_transport::EndpointOptions::default();
    let loopback = "127.0.0.1:0".parse().unwrap();
    let server = xy_transport::PeerEndpoint::server(loopback, &province, &options).unwrap();
    let addr = server.local_addr().unwrap();
    let accepting = server.clone();
    tokio::spawn(async move {
        struct Echo;
        impl xy_transport::Handler for Echo {
            async fn request(&self, _: &PeerIdentity, payload: Vec<u8>) -> Result<Vec<u8>, String> {
                Ok(payload)
            }
            async fn bulk(
                &self,
                _: &PeerIdentity,
                _: Vec<u8>,
                _: &mut xy_transport::BulkReceiver<'_>,
            ) -> Result<(), String> {
                Ok(())
            }
        }
        accepting.serve(Arc::new(Echo)).await
    });
    let client = xy_transport::PeerEndpoint::client(loopback, &bank, &options).unwrap();
    let connection = client
        .connect(addr, "province.xinyong.internal")
        .await
        .unwrap();
    assert_eq!(connection.peer().role, Role::ProvinceNode);
    assert_eq!(connection.request(b"ping").await.unwrap(), b"ping");

    // Revocation: the CRL lists the Chengdu node's serial (read by OpenSSL).
    c.revoke(&root, &issued[1].2.serial, "key compromise", NOW + 10)
        .await
        .unwrap();
    let crl = c.revocation_list(NOW + 20).await.unwrap();
    let crl_path = files.path().join("crl.der");
    std::fs::write(&crl_path, &crl).unwrap();
    let text = std::process::Command::new("openssl")
        .args(["crl", "-inform", "DER", "-noout", "-text", "-in"])
        .arg(&crl_path)
        .output()
        .expect("openssl");
    let text = String::from_utf8_lossy(&text.stdout).to_uppercase();
    assert!(
        text.contains(&issued[1].2.serial.to_uppercase()),
        "the CRL lists the revoked serial: {text}"
    );
    assert!(!text.contains(&issued[0].2.serial.to_uppercase()));
    let twice = c
        .revoke(&root, &issued[1].2.serial, "again", NOW + 30)
        .await
        .unwrap_err();
    assert!(matches!(twice, CoordinatorError::Conflict(_)));

    // The next global configuration carries the CRL; a node that loads it refuses Chengdu.
    let config = verify_global_config(
        &c.global_config(NOW + 40).await.unwrap(),
        c.ca_certificate(),
        NOW + 41,
    )
    .unwrap();
    let crl_pem = files.path().join("crl.pem");
    std::fs::write(&crl_pem, &config.crl).unwrap();
    let (cert, key_path) = (files.path().join("1.pem"), files.path().join("1.key"));
    let guarded = xy_transport::Credentials::load(&cert, &key_path, &ca, Some(&crl_pem)).unwrap();
    let guarded = xy_transport::PeerEndpoint::server(loopback, &guarded, &options).unwrap();
    let guarded_addr = guarded.local_addr().unwrap();
    let accepting = guarded.clone();
    tokio::spawn(async move {
        struct Nothing;
        impl xy_transport::Handler for Nothing {
            async fn request(&self, _: &PeerIdentity, _: Vec<u8>) -> Result<Vec<u8>, String> {
                Ok(Vec::new())
            }
            async fn bulk(
                &self,
                _: &PeerIdentity,
                _: Vec<u8>,
                _: &mut xy_transport::BulkReceiver<'_>,
            ) -> Result<(), String> {
                Ok(())
            }
        }
        accepting.serve(Arc::new(Nothing)).await
    });
    let refused = async {
        let connection = client
            .connect(guarded_addr, "province.xinyong.internal")
            .await?;
        connection.request(b"ping").await
    }
    .await;
    assert!(refused.is_err(), "the revoked node was let in");
}

#[tokio::test]
async fn bad_requests_and_tokens_are_refused_by_cause() {
    let dir = tempfile::tempdir().unwrap();
    let c = common::open(dir.path()).await;
    let root = admin(&c).await;
    let identity = PeerIdentity::new("510100", Role::PrefectureNode).unwrap();
    let token = c
        .create_enrolment_token(&root, &identity, "chengdu.xinyong.internal", 3600, NOW)
        .await
        .unwrap();
    // A forged request (a flipped bit) does not consume the token.
    let mut forged = certification_request(&key(3), "x").unwrap();
    forged[40] ^= 1;
    let err = c.enrol(&token.token, &forged, NOW).await.unwrap_err();
    assert!(matches!(err, CoordinatorError::BadRequest(_)), "{err}");
    // An expired token is refused.
    let request = certification_request(&key(3), "x").unwrap();
    let err = c
        .enrol(&token.token, &request, NOW + 3601)
        .await
        .unwrap_err();
    assert!(matches!(err, CoordinatorError::Unauthorized(_)));
    assert!(c.enrol(&token.token, &request, NOW + 10).await.is_ok());
    // A made-up token and a bad common name.
    assert!(c.enrol("00", &request, NOW).await.is_err());
    let err = c
        .create_enrolment_token(&root, &identity, "bad name!", 3600, NOW)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("DNS name"), "{err}");
}

#[tokio::test]
async fn the_global_configuration_is_signed_expires_and_lists_the_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let c = common::open(dir.path()).await;
    let root = admin(&c).await;
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
    let bank = PeerIdentity::new("510100", Role::InstitutionClient).unwrap();
    assert!(
        c.register_node(&root, &bank, "10.1.0.3:8642", "bank", NOW)
            .await
            .is_err(),
        "only nodes are in the directory"
    );
    let signed = c.global_config(NOW).await.unwrap();
    let config = verify_global_config(&signed, c.ca_certificate(), NOW + 60).unwrap();
    assert_eq!(config.nodes.len(), 1);
    assert_eq!(config.nodes[0].address, "10.1.0.2:8642");
    assert_eq!(config.expires_at, NOW + Settings::default().config_ttl_secs);
    // Tokens verify offline with the key the configuration carries.
    let sso_key = xy_shangmi::sm2::Sm2PublicKey::from_sec1(
        &(0..config.sso_public_key.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&config.sso_public_key[i..i + 2], 16).unwrap())
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    let tokens = c.login("root", PASSWORD, None, NOW).await.unwrap();
    let claims = verify_token(&tokens.access_token, &sso_key, AUDIENCE, NOW + 1).unwrap();
    assert_eq!(
        (claims.sub.as_str(), claims.role),
        ("root", UserRole::ProvinceAdmin)
    );
    // Expired, or meant for another audience: refused.
    assert!(verify_token(&tokens.access_token, &sso_key, AUDIENCE, tokens.expires_at).is_err());
    let err = verify_token(
        &tokens.access_token,
        &sso_key,
        "some-other-service",
        NOW + 1,
    )
    .unwrap_err();
    assert!(err.to_string().contains("audience"), "{err}");
    // Expired, tampered, or signed by another CA: refused.
    assert!(verify_global_config(&signed, c.ca_certificate(), config.expires_at).is_err());
    let mut tampered = signed.clone();
    tampered.config = tampered.config.replace("10.1.0.2", "10.6.6.6");
    assert!(verify_global_config(&tampered, c.ca_certificate(), NOW).is_err());
    let other = tempfile::tempdir().unwrap();
    let other = common::open(other.path()).await;
    assert!(verify_global_config(&signed, other.ca_certificate(), NOW).is_err());
    // A tampered token is refused.
    let mut forged = tokens.access_token.clone();
    let at = forged.find('.').unwrap() + 5;
    let flipped = if &forged[at..at + 1] == "A" { "B" } else { "A" };
    forged.replace_range(at..at + 1, flipped);
    assert!(c.verify(&forged, NOW).is_err());
}

#[tokio::test]
async fn users_are_reviewed_by_level_locked_out_and_refreshed_once() {
    let dir = tempfile::tempdir().unwrap();
    let c = common::open(dir.path()).await;
    let root = admin(&c).await;
    c.register_user(
        "cd-admin",
        PASSWORD,
        UserRole::PrefectureAdmin,
        "510100",
        NOW,
    )
    .await
    .unwrap();
    let err = c.login("cd-admin", PASSWORD, None, NOW).await.unwrap_err();
    assert!(
        matches!(err, CoordinatorError::Forbidden(_)),
        "pending: {err}"
    );
    c.approve_user(&root, "cd-admin", NOW).await.unwrap();
    let cd = c
        .verify(
            &c.login("cd-admin", PASSWORD, None, NOW)
                .await
                .unwrap()
                .access_token,
            NOW,
        )
        .unwrap();
    for (name, role, jurisdiction) in [
        ("cd-op", UserRole::DepartmentOperator, "510100"),
        ("my-op", UserRole::DepartmentOperator, "510700"),
        ("cd-admin2", UserRole::PrefectureAdmin, "510100"),
    ] {
        c.register_user(name, PASSWORD, role, jurisdiction, NOW)
            .await
            .unwrap();
    }
    c.approve_user(&cd, "cd-op", NOW).await.unwrap();
    for other in ["my-op", "cd-admin2"] {
        let err = c.approve_user(&cd, other, NOW).await.unwrap_err();
        assert!(
            matches!(err, CoordinatorError::Forbidden(_)),
            "{other}: {err}"
        );
    }
    // Bad input by cause.
    assert!(
        c.register_user("x", PASSWORD, UserRole::Auditor, "510100", NOW)
            .await
            .is_err()
    );
    assert!(
        c.register_user("short", "short", UserRole::Auditor, "510100", NOW)
            .await
            .is_err()
    );
    assert!(
        c.register_user("bad-j", PASSWORD, UserRole::Auditor, "51", NOW)
            .await
            .is_err()
    );
    assert!(matches!(
        c.register_user("cd-op", PASSWORD, UserRole::Auditor, "510100", NOW)
            .await,
        Err(CoordinatorError::Conflict(_))
    ));

    // Five wrong passwords lock the account; the right one is refused until the lock ends.
    for _ in 0..5 {
        assert!(
            c.login("cd-op", "wrong password!!", None, NOW)
                .await
                .is_err()
        );
    }
    let err = c.login("cd-op", PASSWORD, None, NOW + 1).await.unwrap_err();
    assert!(err.to_string().contains("locked"), "{err}");
    let lock = Settings::default().lockout_secs;
    let tokens = c
        .login("cd-op", PASSWORD, None, NOW + lock + 1)
        .await
        .unwrap();
    // A refresh token works once.
    let renewed = c
        .refresh(&tokens.refresh_token, NOW + lock + 2)
        .await
        .unwrap();
    assert!(c.verify(&renewed.access_token, NOW + lock + 3).is_ok());
    assert!(
        c.refresh(&tokens.refresh_token, NOW + lock + 4)
            .await
            .is_err()
    );

    // Everything above is in the audit chain; editing one entry breaks it there.
    let check = c.verify_audit().await.unwrap();
    assert!(check.is_intact() && check.entries > 15, "{check:?}");
    sqlx::query("UPDATE audit_log SET actor = 'someone-else' WHERE seq = 4")
        .execute(c.pool())
        .await
        .unwrap();
    assert_eq!(c.verify_audit().await.unwrap().first_broken, Some(4));
}

#[tokio::test]
async fn the_http_api_enrols_refuses_strangers_and_describes_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let c = Arc::new(common::open(dir.path()).await);
    c.create_admin("root", PASSWORD, "510000", NOW)
        .await
        .unwrap();
    let app = router(ApiState {
        coordinator: Arc::clone(&c),
        clock: Arc::new(|| NOW),
    });
    let call = |method: &str, path: &str, token: Option<&str>, body: serde_json::Value| {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request.body(Body::from(body.to_string())).unwrap();
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            (status, String::from_utf8_lossy(&bytes).into_owned())
        }
    };
    let (status, body) = call(
        "POST",
        "/api/login",
        None,
        serde_json::json!({"username": "root", "password": PASSWORD}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let access: serde_json::Value = serde_json::from_str(&body).unwrap();
    let access = access["access_token"].as_str().unwrap().to_owned();

    let token_request = serde_json::json!({
        "jurisdiction": "510700", "role": "prefecture-node", "common_name": "mianyang.xinyong.internal"
    });
    let (status, _) = call("POST", "/api/tokens", None, token_request.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = call("POST", "/api/tokens", Some(&access), token_request).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token: serde_json::Value = serde_json::from_str(&body).unwrap();
    let csr_pem = pem_encode(
        "CERTIFICATE REQUEST",
        &certification_request(&key(7), "m").unwrap(),
    );
    let (status, body) = call(
        "POST",
        "/api/enrol",
        None,
        serde_json::json!({"token": token["token"], "csr_pem": csr_pem}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body.contains("BEGIN CERTIFICATE"));
    let (status, body) = call("POST", "/api/enrol", None, serde_json::json!({"token": 1})).await;
    assert!(status.is_client_error(), "{status} {body}");
    let (status, body) = call("GET", "/api/config", None, serde_json::Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = call("GET", "/api/audit", Some(&access), serde_json::Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("certificate.issue"));

    let (status, body) = call("GET", "/api/openapi.json", None, serde_json::Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    for (method, path) in ROUTES {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is not described"
        );
    }
    let described: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|operations| operations.as_object().unwrap().len())
        .sum();
    assert_eq!(
        described,
        ROUTES.len(),
        "every described operation is served"
    );
}

#[tokio::test]
async fn identity_runs_on_postgresql() {
    let url = postgres_database("coordinator").await;
    let dir = tempfile::tempdir().unwrap();
    let c = Coordinator::open(dir.path(), Some(&url), Settings::default(), NOW)
        .await
        .unwrap();
    let root = admin(&c).await;
    let identity = PeerIdentity::new("510700", Role::PrefectureNode).unwrap();
    let token = c
        .create_enrolment_token(&root, &identity, "mianyang.xinyong.internal", 3600, NOW)
        .await
        .unwrap();
    let request = certification_request(&key(9), "m").unwrap();
    let enrolment = c.enrol(&token.token, &request, NOW).await.unwrap();
    assert!(c.enrol(&token.token, &request, NOW).await.is_err());
    c.register_node(
        &root,
        &identity,
        "10.7.0.2:8642",
        "mianyang.xinyong.internal",
        NOW,
    )
    .await
    .unwrap();
    c.revoke(&root, &enrolment.serial, "rotated", NOW + 5)
        .await
        .unwrap();
    let config = verify_global_config(
        &c.global_config(NOW + 6).await.unwrap(),
        c.ca_certificate(),
        NOW + 7,
    )
    .unwrap();
    assert_eq!(config.nodes.len(), 1);
    c.register_user("auditor1", PASSWORD, UserRole::Auditor, "510000", NOW)
        .await
        .unwrap();
    c.approve_user(&root, "auditor1", NOW).await.unwrap();
    let tokens = c.login("auditor1", PASSWORD, None, NOW).await.unwrap();
    assert!(c.refresh(&tokens.refresh_token, NOW + 1).await.is_ok());
    // The catalogue and the statistics on PostgreSQL too.
    let metadata = xy_coordinator_server::catalogue::ResourceMetadata {
        code: "MY-XZXK".into(),
        name: "绵阳行政许可".into(),
        provider_unit: "绵阳市行政审批局".into(),
        classification: "0301".into(),
        format: "table".into(),
        fields: vec![xy_coordinator_server::catalogue::FieldSpec {
            name: "XK_WSH".into(),
            data_element: String::new(),
            description: String::new(),
        }],
        update_frequency: "每日".into(),
        sharing: "无条件共享".into(),
        sharing_conditions: String::new(),
        sensitivity: "公开".into(),
        description: String::new(),
        tags: vec![],
        derived_from: vec![],
    };
    assert_eq!(c.register_resource(&root, &metadata, NOW).await.unwrap(), 1);
    c.review_resource(&root, "MY-XZXK", 1, true, "", NOW)
        .await
        .unwrap();
    c.publish_resource(&root, "MY-XZXK", 1, NOW).await.unwrap();
    let granted = c.subscribe(&root, "MY-XZXK", "回流", NOW).await.unwrap();
    assert_eq!(granted.status, "granted");
    let node_key = key(10);
    let node_token = c
        .create_enrolment_token(&root, &identity, "my2.xinyong.internal", 3600, NOW)
        .await
        .unwrap();
    let node = c
        .enrol(
            &node_token.token,
            &certification_request(&node_key, "m").unwrap(),
            NOW,
        )
        .await
        .unwrap();
    let report = xy_coordinator_server::statistics::CountReport {
        jurisdiction: "510700".into(),
        day: "2026-11-18".into(),
        lines: vec![xy_coordinator_server::statistics::CountLine {
            category: "xzxk".into(),
            source_unit: "11510700MB0000002X".into(),
            ingested: 5_000_000_000,
            rejected: 1,
            shared: 2,
            returned: 3,
            queried: 4,
        }],
    };
    let signed =
        xy_coordinator_server::statistics::sign_report(&report, &node_key, &node.certificate_pem)
            .unwrap();
    c.accept_report(&signed, NOW).await.unwrap();
    let figures = c
        .statistics(
            &root,
            "2026-11-01",
            "2026-11-30",
            xy_coordinator_server::statistics::Grouping::Prefecture,
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(figures[0].ingested, 5_000_000_000);
    let check = c.verify_audit().await.unwrap();
    assert!(check.is_intact(), "{check:?}");
    assert!(check.entries >= 8);
}

/// Every protected endpoint × every role: allowed (any answer past authorisation) or 403, each
/// refusal audited; without a valid token, 401 before any body is read; oversized bodies refused.
#[tokio::test]
async fn every_role_times_every_protected_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let c = Arc::new(common::open(dir.path()).await);
    let root_claims = common::admin(&c).await;
    let roles = [
        ("root", UserRole::ProvinceAdmin, "510000"),
        ("p-admin", UserRole::PrefectureAdmin, "510100"),
        ("operator", UserRole::DepartmentOperator, "510100"),
        ("auditor", UserRole::Auditor, "510000"),
        ("banker", UserRole::InstitutionUser, "510100"),
    ];
    let mut tokens = Vec::new();
    for (name, role, jurisdiction) in roles {
        if name != "root" {
            c.register_user(name, PASSWORD, role, jurisdiction, NOW)
                .await
                .unwrap();
            c.approve_user(&root_claims, name, NOW).await.unwrap();
        }
        tokens.push(
            c.login(name, PASSWORD, None, NOW)
                .await
                .unwrap()
                .access_token,
        );
    }
    // Things to act on: pending users, department-client certificates, a client certificate.
    let department = PeerIdentity::new("510100", Role::DepartmentClient).unwrap();
    let mut serials = Vec::new();
    for seed in 40..50u8 {
        c.register_user(
            &format!("pending{seed}"),
            PASSWORD,
            UserRole::DepartmentOperator,
            "510100",
            NOW,
        )
        .await
        .unwrap();
        let token = c
            .create_enrolment_token(
                &root_claims,
                &department,
                "dept.xinyong.internal",
                3600,
                NOW,
            )
            .await
            .unwrap();
        let enrolment = c
            .enrol(
                &token.token,
                &certification_request(&key(seed), "d").unwrap(),
                NOW,
            )
            .await
            .unwrap();
        serials.push((enrolment.serial, enrolment.certificate_pem));
    }
    let app = router(ApiState {
        coordinator: Arc::clone(&c),
        clock: Arc::new(|| NOW),
    });
    let metadata = serde_json::json!({
        "code": "M-{i}", "name": "n", "provider_unit": "u", "classification": "0302", "format": "table",
        "fields": [{"name": "CF_WSH"}], "update_frequency": "每日", "sharing": "无条件共享",
        "sensitivity": "公开"
    });
    let feedback = serde_json::json!({"scenario": "信易贷", "period": "2026-Q4", "measures": "m", "outcomes": {"n": 1.0}});
    // (method, path, body, allowed for root, p-admin, operator, auditor, banker); {i} is the
    // role's index (a fresh pending user or certificate each).
    let rows: Vec<(&str, String, serde_json::Value, &str)> = vec![
        (
            "POST",
            "/api/tokens".into(),
            serde_json::json!({"jurisdiction": "510100", "role": "prefecture-node", "common_name": "cd.xinyong.internal"}),
            "YNNNN",
        ),
        (
            "POST",
            "/api/certificates/{serial}/revoke".into(),
            serde_json::json!({"reason": "r"}),
            "YYNNN",
        ),
        (
            "POST",
            "/api/nodes".into(),
            serde_json::json!({"jurisdiction": "510100", "role": "prefecture-node", "address": "10.0.0.1:1", "server_name": "cd"}),
            "YNNNN",
        ),
        (
            "POST",
            "/api/users/pending{i}/approve".into(),
            serde_json::Value::Null,
            "YYNNN",
        ),
        ("GET", "/api/audit".into(), serde_json::Value::Null, "YNNYN"),
        ("POST", "/api/catalogue/resources".into(), metadata, "YYYNN"),
        (
            "GET",
            "/api/catalogue/resources".into(),
            serde_json::Value::Null,
            "YYYYY",
        ),
        (
            "GET",
            "/api/catalogue/resources/M-1".into(),
            serde_json::Value::Null,
            "YYYYY",
        ),
        (
            "POST",
            "/api/catalogue/resources/NONE/versions/1/review".into(),
            serde_json::json!({"approve": true}),
            "YYNNN",
        ),
        (
            "POST",
            "/api/catalogue/resources/NONE/versions/1/publish".into(),
            serde_json::Value::Null,
            "YYNNN",
        ),
        (
            "POST",
            "/api/catalogue/resources/NONE/retire".into(),
            serde_json::Value::Null,
            "YYNNN",
        ),
        (
            "POST",
            "/api/catalogue/resources/NONE/subscriptions".into(),
            serde_json::json!({"purpose": "p"}),
            "YYNNN",
        ),
        (
            "GET",
            "/api/catalogue/subscriptions".into(),
            serde_json::Value::Null,
            "YYNNN",
        ),
        (
            "POST",
            "/api/catalogue/subscriptions/99/decide".into(),
            serde_json::json!({"grant": true}),
            "YYNNN",
        ),
        (
            "GET",
            "/api/statistics?from=2026-11-01&to=2026-11-30".into(),
            serde_json::Value::Null,
            "YYNYN",
        ),
        (
            "POST",
            "/api/statistics/tickets".into(),
            serde_json::Value::Null,
            "YYYYY",
        ),
        ("POST", "/api/feedback".into(), feedback, "YYYNN"),
        (
            "GET",
            "/api/feedback".into(),
            serde_json::Value::Null,
            "YYYYY",
        ),
        (
            "POST",
            "/api/feedback/99/review".into(),
            serde_json::json!({"accept": true}),
            "YNNNN",
        ),
        (
            "POST",
            "/api/users/me/totp".into(),
            serde_json::Value::Null,
            "YYYYY",
        ),
        (
            "POST",
            "/api/users/me/certificate".into(),
            serde_json::json!({"certificate_pem": "{pem}"}),
            "NYYNY",
        ),
        (
            "POST",
            "/api/users/me/sms".into(),
            serde_json::json!({"phone": "13800001234"}),
            "YYYYY",
        ),
    ];
    let described: usize = ROUTES
        .iter()
        .filter(|(m, p)| {
            let doc: serde_json::Value =
                serde_json::from_str(xy_coordinator_server::api::OPENAPI).unwrap();
            doc["paths"][*p][*m]["security"].is_array()
        })
        .count();
    // Every protected route is in the table but TOTP confirmation, whose wrong code is a 401 of
    // its own (tested in second_factor.rs).
    assert_eq!(rows.len(), described - 1);
    let mut refusals = 0;
    for (method, path, body, allowed) in rows {
        for (i, expected) in allowed.chars().enumerate() {
            let path = path
                .replace("{serial}", &serials[i].0)
                .replace("{i}", &(40 + i).to_string());
            let body = body
                .to_string()
                .replace("{pem}", &serials[5 + i].1.replace('\n', "\\n"))
                .replace("{i}", &i.to_string());
            let request = Request::builder()
                .method(method)
                .uri(&path)
                .header("content-type", "application/json")
                .header("authorization", format!("Bearer {}", tokens[i]))
                .body(Body::from(if body == "null" {
                    String::new()
                } else {
                    body
                }))
                .unwrap();
            let status = app.clone().oneshot(request).await.unwrap().status();
            assert_ne!(
                status,
                StatusCode::UNAUTHORIZED,
                "{} {method} {path}",
                roles[i].0
            );
            if expected == 'Y' {
                assert_ne!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{} may {method} {path}",
                    roles[i].0
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{} may not {method} {path}",
                    roles[i].0
                );
                refusals += 1;
            }
        }
    }
    // Every refusal is in the audit chain, one entry per 403 above.
    let denied = c
        .audit_entries(1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e["action"] == "denied")
        .count();
    assert_eq!(denied, refusals);
    // Deny by default: every route the description marks as needing a token answers 401 without
    // one (or with a forged one), before reading a body.
    let doc: serde_json::Value = serde_json::from_str(xy_coordinator_server::api::OPENAPI).unwrap();
    let mut protected = 0;
    for (method, path) in ROUTES {
        let secured = doc["paths"][path][method]["security"].is_array();
        let concrete = path
            .replace("{serial}", "00")
            .replace("{username}", "nobody")
            .replace("{code}", "X")
            .replace("{version}", "1")
            .replace("{id}", "1");
        for token in [None, Some("forged.token.here")] {
            let mut request = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&concrete)
                .header("content-type", "application/json");
            if let Some(token) = token {
                request = request.header("authorization", format!("Bearer {token}"));
            }
            let status = app
                .clone()
                .oneshot(request.body(Body::from("{}")).unwrap())
                .await
                .unwrap()
                .status();
            if secured {
                assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {path} without a valid token"
                );
            } else {
                assert_ne!(status, StatusCode::NOT_FOUND, "{method} {path} is served");
            }
        }
        protected += usize::from(secured);
    }
    assert!(protected >= 20, "{protected} protected routes");
    // Oversized bodies and malformed JSON: refused, not crashed.
    let big = "x".repeat(100 * 1024);
    let response = app
        .clone()
        .oneshot(
            Request::builder()
                .method("POST")
                .uri("/api/login")
                .header("content-type", "application/json")
                .body(Body::from(big))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}
