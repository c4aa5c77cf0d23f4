//! SM2 signatures against an independent implementation: Debian's `openssl` (3.x). Keys and
//! signatures cross in both directions through files, as operators would exchange them.

use std::process::Command;

use xy_shangmi::sm2::{
    CERT_DISTID, Sm2PublicKey, Sm2SecretKey, TLS13_DISTID, signature_from_der, signature_to_der,
};

fn openssl(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed (scripts/test.sh installs it when missing)")
}

#[test]
fn openssl_signatures_verify_here_and_ours_verify_there() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(
        openssl(&["genpkey", "-algorithm", "SM2", "-out", "key.pem"], d)
            .status
            .success()
    );
    assert!(
        openssl(
            &[
                "pkey", "-in", "key.pem", "-pubout", "-outform", "DER", "-out", "pub.der"
            ],
            d
        )
        .status
        .success()
    );
    let spki = std::fs::read(d.join("pub.der")).unwrap();
    let public = Sm2PublicKey::from_spki_der(&spki).expect("OpenSSL's SM2 public key");
    assert_eq!(public.to_spki_der(), spki);
    let message = "信用信息共享交换 xinyong".as_bytes();
    std::fs::write(d.join("msg"), message).unwrap();

    // OpenSSL signs under the certificate id; we verify, and refuse under the TLS 1.3 id.
    let distid = format!("distid:{CERT_DISTID}");
    let sign = [
        "pkeyutl", "-sign", "-in", "msg", "-inkey", "key.pem", "-rawin", "-digest", "sm3",
        "-pkeyopt", &distid, "-out", "sig.der",
    ];
    assert!(openssl(&sign, d).status.success());
    let sig = signature_from_der(&std::fs::read(d.join("sig.der")).unwrap()).unwrap();
    public
        .verify(CERT_DISTID, message, &sig)
        .expect("OpenSSL's signature verifies here");
    assert!(public.verify(TLS13_DISTID, message, &sig).is_err());

    // We sign with a key OpenSSL made (its raw scalar via `pkey -text`); OpenSSL verifies.
    let text = String::from_utf8(openssl(&["pkey", "-in", "key.pem", "-noout", "-text"], d).stdout)
        .unwrap();
    let hex_scalar: String = text
        .split("priv:")
        .nth(1)
        .and_then(|rest| rest.split("pub:").next())
        .unwrap()
        .chars()
        .filter(char::is_ascii_hexdigit)
        .collect();
    let mut scalar = hex::decode(hex_scalar).unwrap();
    while scalar.len() > 32 && scalar[0] == 0 {
        scalar.remove(0);
    }
    let secret = Sm2SecretKey::from_bytes(&scalar).unwrap();
    assert_eq!(secret.public_key(), public);
    for (id, expect_ok) in [(CERT_DISTID, true), (TLS13_DISTID, false)] {
        let ours = secret.sign(id, message).unwrap();
        std::fs::write(d.join("ours.der"), signature_to_der(&ours).unwrap()).unwrap();
        let verify = [
            "pkeyutl", "-verify", "-in", "msg", "-pubin", "-inkey", "pub.der", "-keyform", "DER",
            "-rawin", "-digest", "sm3", "-pkeyopt", &distid, "-sigfile", "ours.der",
        ];
        let out = openssl(&verify, d);
        assert_eq!(
            out.status.success(),
            expect_ok,
            "id {id}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn der_and_spki_decoders_refuse_garbage() {
    assert!(signature_from_der(&[0x30, 0x03, 0x02, 0x01]).is_err());
    assert!(signature_from_der(&[]).is_err());
    assert!(Sm2PublicKey::from_spki_der(&[0x30; 91]).is_err());
    // A P-256 SubjectPublicKeyInfo (prime256v1) is not an SM2 key.
    let p256_prefix = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
    let mut p256 = p256_prefix;
    p256.extend([4u8; 65]);
    assert!(Sm2PublicKey::from_spki_der(&p256).is_err());
}
