//! Certificate renewal (signed by the current key; same identity, new key) and certificate login
//! (a bound client certificate signing a fresh, single-use challenge); revoked, foreign, unbound
//! and replayed attempts refused.

mod common;

use common::{NOW, der, hex, key};
use xy_coordinator_server::certificates::{CertificateLogin, Renewal, login_message};
use xy_coordinator_server::{Claims, Coordinator, CoordinatorError, UserRole};
use xy_gmtls::pki::{ParsedCertificate, PeerIdentity, Role, certification_request, pem_encode};
use xy_shangmi::sm2::{CERT_DISTID, Sm2SecretKey};

async fn setup() -> (tempfile::TempDir, Coordinator, Claims) {
    let dir = tempfile::tempdir().unwrap();
    let c = common::open(dir.path()).await;
    let root = common::admin(&c).await;
    (dir, c, root)
}

/// The certificate (PEM) of [`key`]`(seed)` enrolled as `role` of `jurisdiction`.
async fn enrol(c: &Coordinator, root: &Claims, seed: u8, jurisdiction: &str, role: Role) -> String {
    common::enrol(
        c,
        root,
        seed,
        jurisdiction,
        role,
        &format!("c{seed}.xinyong.internal"),
    )
    .await
    .certificate_pem
}

#[tokio::test]
async fn a_holder_renews_with_its_current_key_and_nobody_else_can() {
    let (_dir, c, root) = setup().await;
    let current = enrol(&c, &root, 1, "510100", Role::PrefectureNode).await;
    let csr = certification_request(&key(2), "x").unwrap();
    let signed_by = |k: &Sm2SecretKey| hex(&k.sign(CERT_DISTID, &csr).unwrap());
    let renewal = Renewal {
        certificate_pem: current.clone(),
        csr_pem: pem_encode("CERTIFICATE REQUEST", &csr),
        signature: signed_by(&key(1)),
    };
    let renewed = c.renew(&renewal, NOW + 86_400).await.unwrap();
    let parsed_der = der(&renewed.certificate_pem);
    let parsed = ParsedCertificate::parse(&parsed_der).unwrap();
    assert_eq!(parsed.public_key, key(2).public_key());
    assert_eq!(
        parsed.identity,
        Some(PeerIdentity::new("510100", Role::PrefectureNode).unwrap())
    );
    // Signed by another key: refused.
    let forged = Renewal {
        signature: signed_by(&key(3)),
        ..renewal.clone()
    };
    assert!(matches!(
        c.renew(&forged, NOW).await,
        Err(CoordinatorError::Unauthorized(_))
    ));
    // A revoked or expired certificate cannot renew.
    let serial = hex(ParsedCertificate::parse(&der(&current)).unwrap().serial);
    let expired = c.renew(&renewal, NOW + 366 * 86_400).await.unwrap_err();
    assert!(expired.to_string().contains("expired"), "{expired}");
    c.revoke(&root, &serial, "rotated", NOW).await.unwrap();
    let revoked = c.renew(&renewal, NOW).await.unwrap_err();
    assert!(revoked.to_string().contains("revoked"), "{revoked}");
}

#[tokio::test]
async fn a_bound_client_certificate_logs_a_user_in_once_per_challenge() {
    let (_dir, c, root) = setup().await;
    let banker = common::user(&c, &root, "banker", UserRole::InstitutionUser, "510100").await;
    let certificate = enrol(&c, &root, 5, "510100", Role::InstitutionClient).await;
    let node_certificate = enrol(&c, &root, 6, "510100", Role::PrefectureNode).await;
    let foreign = enrol(&c, &root, 7, "510700", Role::InstitutionClient).await;
    assert!(matches!(
        c.bind_certificate(&banker, &node_certificate, NOW).await,
        Err(CoordinatorError::Forbidden(_))
    ));
    assert!(matches!(
        c.bind_certificate(&banker, &foreign, NOW).await,
        Err(CoordinatorError::Forbidden(_))
    ));
    let login = |challenge: String, signer: &Sm2SecretKey, certificate: &str| CertificateLogin {
        username: "banker".into(),
        certificate_pem: certificate.to_owned(),
        signature: hex(&signer
            .sign(CERT_DISTID, login_message("banker", &challenge).as_bytes())
            .unwrap()),
        challenge,
    };
    // Not bound yet: refused.
    let attempt = login(c.login_challenge(NOW), &key(5), &certificate);
    assert!(c.login_with_certificate(&attempt, NOW).await.is_err());
    c.bind_certificate(&banker, &certificate, NOW)
        .await
        .unwrap();
    let attempt = login(c.login_challenge(NOW), &key(5), &certificate);
    let tokens = c.login_with_certificate(&attempt, NOW + 1).await.unwrap();
    assert_eq!(
        c.verify(&tokens.access_token, NOW + 2).unwrap().sub,
        "banker"
    );
    // The challenge works once; a stale one, another key, or another certificate: refused.
    assert!(c.login_with_certificate(&attempt, NOW + 2).await.is_err());
    let stale = login(c.login_challenge(NOW), &key(5), &certificate);
    assert!(c.login_with_certificate(&stale, NOW + 121).await.is_err());
    let wrong_key = login(c.login_challenge(NOW), &key(9), &certificate);
    assert!(c.login_with_certificate(&wrong_key, NOW).await.is_err());
    let other = login(c.login_challenge(NOW), &key(7), &foreign);
    assert!(c.login_with_certificate(&other, NOW).await.is_err());
    assert!(c.verify_audit().await.unwrap().is_intact());
}
