//! SM2 keys and SubjectPublicKeyInfos exchanged with Debian's openssl (an independent
//! implementation): our PKCS#8 keys load in openssl and openssl's load here, with the same public
//! key; keys on other curves and RSA keys are refused by name.

use std::path::Path;
use std::process::Command;

use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use xy_gmtls::pki::{pem_encode, private_key_from_der, private_key_to_pkcs8, spki_sm2_key};
use xy_shangmi::sm2::Sm2SecretKey;

fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl (installed by scripts/test.sh)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn openssl_sm2_keys_load_and_ours_load_in_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // openssl → us
    openssl(d, &["genpkey", "-algorithm", "SM2", "-out", "theirs.key"]);
    let pem = std::fs::read(d.join("theirs.key")).unwrap();
    let der = PrivateKeyDer::from_pem_slice(&pem).unwrap();
    let key = private_key_from_der(der.secret_der()).unwrap();
    let spki = openssl(
        d,
        &["pkey", "-in", "theirs.key", "-pubout", "-outform", "DER"],
    );
    assert_eq!(spki_sm2_key(&spki).unwrap(), key.public_key());
    assert_eq!(key.public_key().to_spki_der(), spki);
    // us → openssl
    let ours = Sm2SecretKey::from_bytes(&[0x42; 32]).unwrap();
    std::fs::write(
        d.join("ours.key"),
        pem_encode("PRIVATE KEY", &private_key_to_pkcs8(&ours)),
    )
    .unwrap();
    let spki = openssl(
        d,
        &["pkey", "-in", "ours.key", "-pubout", "-outform", "DER"],
    );
    assert_eq!(spki, ours.public_key().to_spki_der());
    let text =
        String::from_utf8(openssl(d, &["pkey", "-in", "ours.key", "-noout", "-text"])).unwrap();
    assert!(text.contains("SM2"), "{text}");
}

#[test]
fn keys_on_other_curves_and_rsa_keys_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "p256.key",
        ],
    );
    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:1024",
            "-out",
            "rsa.key",
        ],
    );
    let p256 = openssl(
        d,
        &["pkey", "-in", "p256.key", "-pubout", "-outform", "DER"],
    );
    let rsa = openssl(d, &["pkey", "-in", "rsa.key", "-pubout", "-outform", "DER"]);
    assert!(
        spki_sm2_key(&p256)
            .unwrap_err()
            .to_string()
            .contains("wrong curve")
    );
    assert!(
        spki_sm2_key(&rsa)
            .unwrap_err()
            .to_string()
            .contains("not an elliptic-curve key")
    );
    for (file, what) in [
        ("p256.key", "not an SM2 key"),
        ("rsa.key", "not an SM2 key"),
    ] {
        let pem = std::fs::read(d.join(file)).unwrap();
        let der = PrivateKeyDer::from_pem_slice(&pem).unwrap();
        let err = private_key_from_der(der.secret_der())
            .unwrap_err()
            .to_string();
        assert!(err.contains(what), "{file}: {err}");
    }
    // Garbage and truncations never panic.
    let spki = Sm2SecretKey::from_bytes(&[7; 32])
        .unwrap()
        .public_key()
        .to_spki_der();
    for cut in 0..spki.len() {
        assert!(spki_sm2_key(&spki[..cut]).is_err());
    }
    let pkcs8 = private_key_to_pkcs8(&Sm2SecretKey::from_bytes(&[7; 32]).unwrap());
    for cut in 0..pkcs8.len() {
        assert!(private_key_from_der(&pkcs8[..cut]).is_err());
    }
}

#[test]
fn certification_requests_cross_with_openssl_and_a_forged_one_is_refused() {
    use xy_gmtls::pki::{CertificationRequest, certification_request};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // openssl → us: an SM2 request signed with SM3 under the default distinguishing id.
    openssl(d, &["genpkey", "-algorithm", "SM2", "-out", "node.key"]);
    openssl(
        d,
        &[
            "req",
            "-new",
            "-key",
            "node.key",
            "-sm3",
            "-sigopt",
            "distid:1234567812345678",
            "-subj",
            "/CN=chengdu",
            "-outform",
            "DER",
            "-out",
            "theirs.csr",
        ],
    );
    let theirs = std::fs::read(d.join("theirs.csr")).unwrap();
    let parsed = CertificationRequest::parse_and_verify(&theirs).unwrap();
    let spki = openssl(
        d,
        &["pkey", "-in", "node.key", "-pubout", "-outform", "DER"],
    );
    assert_eq!(parsed.public_key.to_spki_der(), spki);
    // us → openssl verifies our signature.
    let key = Sm2SecretKey::from_bytes(&[0x24; 32]).unwrap();
    let ours = certification_request(&key, "mianyang.xinyong.internal").unwrap();
    std::fs::write(d.join("ours.csr"), &ours).unwrap();
    openssl(
        d,
        &[
            "req",
            "-inform",
            "DER",
            "-in",
            "ours.csr",
            "-verify",
            "-noout",
            "-vfyopt",
            "distid:1234567812345678",
        ],
    );
    assert_eq!(
        CertificationRequest::parse_and_verify(&ours)
            .unwrap()
            .public_key,
        key.public_key()
    );
    // A flipped bit in the signed part, truncation, garbage: refused, never a panic.
    let mut forged = ours.clone();
    forged[40] ^= 1;
    assert!(CertificationRequest::parse_and_verify(&forged).is_err());
    for cut in 0..ours.len() {
        assert!(CertificationRequest::parse_and_verify(&ours[..cut]).is_err());
    }
}
