//! What the coordinator's test files share: the clock, a coordinator with its province
//! administrator, users, SM2 keys, enrolled certificates, and a PostgreSQL database.
#![allow(dead_code)] // each test file uses a part

use std::path::Path;

use xy_coordinator_server::{Claims, Coordinator, Enrolment, Settings, UserRole};
use xy_gmtls::pki::{PeerIdentity, Role, certification_request};
use xy_shangmi::sm2::Sm2SecretKey;

/// Saturday 2026-11-21, 10:00 Beijing time.
pub(crate) const NOW: u64 = 1_795_226_400;
/// Every test user's password.
pub(crate) const PASSWORD: &str = "correct horse battery";

/// A fixed SM2 key per seed.
pub(crate) fn key(seed: u8) -> Sm2SecretKey {
    Sm2SecretKey::from_bytes(&[seed; 32]).unwrap()
}

/// Hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The DER of a PEM block.
pub(crate) fn der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

/// A coordinator in `dir` on SQLite, opened at [`NOW`].
pub(crate) async fn open(dir: &Path) -> Coordinator {
    Coordinator::open(dir, None, Settings::default(), NOW)
        .await
        .unwrap()
}

/// The claims of `name`, logged in with [`PASSWORD`] at [`NOW`].
pub(crate) async fn claims(c: &Coordinator, name: &str) -> Claims {
    let tokens = c.login(name, PASSWORD, None, NOW).await.unwrap();
    c.verify(&tokens.access_token, NOW).unwrap()
}

/// Create the province administrator `root` and log it in.
pub(crate) async fn admin(c: &Coordinator) -> Claims {
    c.create_admin("root", PASSWORD, "510000", NOW)
        .await
        .unwrap();
    claims(c, "root").await
}

/// Register `name`, approve it as `root`, log it in.
pub(crate) async fn user(
    c: &Coordinator,
    root: &Claims,
    name: &str,
    role: UserRole,
    jurisdiction: &str,
) -> Claims {
    c.register_user(name, PASSWORD, role, jurisdiction, NOW)
        .await
        .unwrap();
    c.approve_user(root, name, NOW).await.unwrap();
    claims(c, name).await
}

/// Enrol [`key`]`(seed)` as `role` of `jurisdiction` under `common_name`.
pub(crate) async fn enrol(
    c: &Coordinator,
    root: &Claims,
    seed: u8,
    jurisdiction: &str,
    role: Role,
    common_name: &str,
) -> Enrolment {
    let identity = PeerIdentity::new(jurisdiction, role).unwrap();
    let token = c
        .create_enrolment_token(root, &identity, common_name, 3600, NOW)
        .await
        .unwrap();
    c.enrol(
        &token.token,
        &certification_request(&key(seed), "x").unwrap(),
        NOW,
    )
    .await
    .unwrap()
}

/// A fresh database on the throwaway PostgreSQL cluster of `scripts/test.sh`.
pub(crate) async fn postgres_database(name: &str) -> String {
    xy_store::testing::postgres_database(name).await.unwrap()
}
