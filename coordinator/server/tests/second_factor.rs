//! One-time codes: the RFC 4226/6238 known answers (from a data file), TOTP enrolment and
//! confirmation, logins that need the code, refuse a wrong or replayed one and count it toward
//! the lockout, and SMS codes sent through a pluggable sender.

use std::sync::{Arc, Mutex};

mod common;

use common::{NOW, PASSWORD};
use xy_coordinator_server::second_factor::{SmsSender, base32, hotp, totp};
use xy_coordinator_server::{CoordinatorError, UserRole};

#[test]
fn the_rfc_known_answers_hold() {
    let vectors: serde_json::Value =
        serde_json::from_str(include_str!("vectors/otp.json")).unwrap();
    let secret = vectors["secret_ascii"].as_str().unwrap().as_bytes();
    assert_eq!(base32(secret), vectors["secret_base32"]);
    for (counter, code) in vectors["hotp6"].as_array().unwrap().iter().enumerate() {
        assert_eq!(
            format!("{:06}", hotp(secret, counter as u64, 6)),
            code.as_str().unwrap()
        );
    }
    for pair in vectors["totp8"].as_array().unwrap() {
        let time = pair[0].as_u64().unwrap();
        assert_eq!(
            format!("{:08}", hotp(secret, time / 30, 8)),
            pair[1].as_str().unwrap(),
            "t={time}"
        );
    }
}

fn unbase32(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
            .iter()
            .position(|a| *a == c)
            .unwrap() as u32;
        buffer = (buffer << 5) | v;
        bits += 5;
        if bits >= 8 {
            out.push((buffer >> (bits - 8)) as u8);
            bits -= 8;
        }
    }
    out
}

#[derive(Clone, Default)]
struct Outbox(Arc<Mutex<Vec<(String, String)>>>);

impl SmsSender for Outbox {
    fn send(&self, phone: &str, text: &str) -> Result<(), String> {
        self.0
            .lock()
            .unwrap()
            .push((phone.to_owned(), text.to_owned()));
        Ok(())
    }
}

#[tokio::test]
async fn logins_need_the_second_factor_and_refuse_wrong_or_replayed_codes() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::default();
    let c = common::open(dir.path())
        .await
        .with_sms_sender(Box::new(outbox.clone()));
    let root = common::admin(&c).await;

    // TOTP: enrol, confirm with a first code, then every login needs one.
    let enrolment = c.enrol_totp(&root, NOW).await.unwrap();
    assert!(
        enrolment
            .uri
            .starts_with("otpauth://totp/xinyong:root?secret=")
    );
    let secret = unbase32(&enrolment.secret);
    assert!(c.confirm_totp(&root, "000000x", NOW).await.is_err());
    c.confirm_totp(&root, &format!("{:06}", totp(&secret, NOW)), NOW)
        .await
        .unwrap();
    let err = c.login("root", PASSWORD, None, NOW + 30).await.unwrap_err();
    assert!(err.to_string().contains("required"), "{err}");
    let code = format!("{:06}", totp(&secret, NOW + 30));
    let tokens = c
        .login("root", PASSWORD, Some(&code), NOW + 30)
        .await
        .unwrap();
    assert!(c.verify(&tokens.access_token, NOW + 31).is_ok());
    // The same step again: a replay.
    let err = c
        .login("root", PASSWORD, Some(&code), NOW + 31)
        .await
        .unwrap_err();
    assert!(matches!(err, CoordinatorError::Unauthorized(_)), "{err}");
    // One step of drift is accepted; a wrong code counts toward the lockout.
    let drifted = format!("{:06}", totp(&secret, NOW + 90));
    c.login("root", PASSWORD, Some(&drifted), NOW + 120)
        .await
        .unwrap();
    for i in 0..5 {
        let wrong = format!("{:06}", (totp(&secret, NOW + 150) + 1 + i) % 1_000_000);
        assert!(
            c.login("root", PASSWORD, Some(&wrong), NOW + 150)
                .await
                .is_err()
        );
    }
    let right = format!("{:06}", totp(&secret, NOW + 180));
    let err = c
        .login("root", PASSWORD, Some(&right), NOW + 180)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("locked"), "{err}");

    // SMS: a first attempt sends a code; the code logs in once.
    let clerk = common::user(&c, &root, "clerk", UserRole::DepartmentOperator, "510100").await;
    assert!(c.enable_sms(&clerk, "call me", NOW).await.is_err());
    c.enable_sms(&clerk, "+8613800001234", NOW).await.unwrap();
    let err = c
        .login("clerk", PASSWORD, None, NOW + 10)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("sent by SMS"), "{err}");
    let (phone, text) = outbox.0.lock().unwrap().last().cloned().unwrap();
    assert_eq!(phone, "+8613800001234");
    let code: String = text.chars().filter(char::is_ascii_digit).take(6).collect();
    assert!(
        c.login("clerk", "wrong password here", Some(&code), NOW + 11)
            .await
            .is_err()
    );
    c.login("clerk", PASSWORD, Some(&code), NOW + 12)
        .await
        .unwrap();
    assert!(
        c.login("clerk", PASSWORD, Some(&code), NOW + 13)
            .await
            .is_err(),
        "used once"
    );
    // An SMS code expires.
    c.login("clerk", PASSWORD, None, NOW + 20)
        .await
        .unwrap_err();
    let (_, text) = outbox.0.lock().unwrap().last().cloned().unwrap();
    let code: String = text.chars().filter(char::is_ascii_digit).take(6).collect();
    assert!(
        c.login("clerk", PASSWORD, Some(&code), NOW + 20 + 301)
            .await
            .is_err()
    );
    // The TOTP secret is not stored in clear.
    // (the database file and its write-ahead log)
    let mut db = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("coordinator.db")
        {
            db.extend(std::fs::read(&path).unwrap());
        }
    }
    assert!(db.len() > 4096);
    let secret_hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    assert!(!db.windows(secret.len()).any(|w| w == secret.as_slice()));
    assert!(!String::from_utf8_lossy(&db).contains(&secret_hex));
    assert!(!String::from_utf8_lossy(&db).contains(&enrolment.secret));
    assert!(c.verify_audit().await.unwrap().is_intact());
}
