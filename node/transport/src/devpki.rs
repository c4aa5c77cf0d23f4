//! `xinyong-node pki init`: a development PKI — an SM2 root CA, certificates for a province node,
//! two prefecture nodes and one financial-institution client, and an empty CRL — written as PEM
//! files. The README's main command and the tests use it; production certificates come from the
//! coordinator's CA.

use std::path::{Path, PathBuf};

use xy_gmtls::pki::{
    CertificateProfile, Issuer, PeerIdentity, Role, pem_encode, private_key_to_pkcs8,
};
use xy_shangmi::sm2::Sm2SecretKey;

use crate::TransportError;

/// One member of the development federation.
#[derive(Clone, Copy, Debug)]
pub struct DevMember {
    /// File stem and first DNS label, e.g. `chengdu`.
    pub name: &'static str,
    /// GB/T 2260 code.
    pub jurisdiction: &'static str,
    /// Role in the certificate.
    pub role: Role,
}

/// The members `pki init` creates certificates for.
pub const DEV_MEMBERS: [DevMember; 4] = [
    DevMember {
        name: "province",
        jurisdiction: "510000",
        role: Role::ProvinceNode,
    },
    DevMember {
        name: "chengdu",
        jurisdiction: "510100",
        role: Role::PrefectureNode,
    },
    DevMember {
        name: "mianyang",
        jurisdiction: "510700",
        role: Role::PrefectureNode,
    },
    DevMember {
        name: "bank",
        jurisdiction: "510100",
        role: Role::InstitutionClient,
    },
];

/// The DNS name a member's certificate carries and peers verify, e.g. `chengdu.xinyong.internal`.
pub fn server_name(member: &str) -> String {
    format!("{member}.xinyong.internal")
}

/// A fresh SM2 key from the operating system's randomness.
pub fn generate_key() -> Sm2SecretKey {
    Sm2SecretKey::generate(&mut |bytes| rand::fill(&mut bytes[..]))
}

/// A fresh random certificate serial (positive, 16 bytes).
pub fn random_serial() -> [u8; 16] {
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    serial
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Paths of one member's files inside a PKI directory.
#[derive(Clone, Debug)]
pub struct MemberFiles {
    /// Certificate (PEM).
    pub cert: PathBuf,
    /// PKCS#8 private key (PEM, mode 0600).
    pub key: PathBuf,
}

/// The layout of a PKI directory.
#[derive(Clone, Debug)]
pub struct PkiLayout {
    /// The directory.
    pub dir: PathBuf,
}

impl PkiLayout {
    /// The layout of `dir`.
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// The root CA certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The root CA key.
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }

    /// The CRL.
    pub fn crl(&self) -> PathBuf {
        self.dir.join("crl.pem")
    }

    /// A member's certificate and key.
    pub fn member(&self, name: &str) -> MemberFiles {
        MemberFiles {
            cert: self.dir.join(format!("{name}.pem")),
            key: self.dir.join(format!("{name}.key")),
        }
    }
}

fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), TransportError> {
    let io = |source| TransportError::File {
        path: path.to_path_buf(),
        what: "PKI file".into(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    use std::io::Write;
    let mut file = options.open(path).map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)
}

/// Validity of development certificates: from an hour ago (clock skew) for `days` days.
fn profile(
    name: &str,
    identity: Option<PeerIdentity>,
    now: u64,
    days: u64,
    is_ca: bool,
) -> CertificateProfile {
    CertificateProfile {
        common_name: if is_ca {
            name.to_owned()
        } else {
            server_name(name)
        },
        dns_names: Vec::new(),
        identity,
        not_before: now.saturating_sub(3600),
        not_after: now + days * 86_400,
        is_ca,
    }
}

/// Create the development PKI in `dir` (created if missing). Refuses to overwrite an existing CA
/// unless `force`: a new CA would orphan every certificate issued under the old one.
pub fn init(dir: &Path, force: bool, now: u64) -> Result<PkiLayout, TransportError> {
    let layout = PkiLayout::new(dir);
    if layout.ca_cert().exists() && !force {
        return Err(TransportError::Config(format!(
            "{} already holds a CA; pass --force to replace the whole PKI",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|source| TransportError::File {
        path: dir.to_path_buf(),
        what: "PKI directory".into(),
        source,
    })?;
    let ca_key = generate_key();
    let ca_cert = Issuer::self_signed(
        &ca_key,
        &profile("xinyong development root CA", None, now, 3650, true),
        &random_serial(),
    )?;
    write_file(
        &layout.ca_key(),
        &pem_encode("PRIVATE KEY", &private_key_to_pkcs8(&ca_key)),
        true,
    )?;
    write_file(
        &layout.ca_cert(),
        &pem_encode("CERTIFICATE", &ca_cert),
        false,
    )?;
    let issuer = Issuer::new(&ca_cert, &ca_key)?;
    for member in DEV_MEMBERS {
        let key = generate_key();
        let identity = PeerIdentity::new(member.jurisdiction, member.role)?;
        let cert = issuer.issue(
            &key.public_key(),
            &profile(member.name, Some(identity), now, 825, false),
            &random_serial(),
        )?;
        let files = layout.member(member.name);
        write_file(
            &files.key,
            &pem_encode("PRIVATE KEY", &private_key_to_pkcs8(&key)),
            true,
        )?;
        write_file(&files.cert, &pem_encode("CERTIFICATE", &cert), false)?;
    }
    let crl = issuer.revocation_list(&[], now.saturating_sub(3600), now + 30 * 86_400, 1)?;
    write_file(&layout.crl(), &pem_encode("X509 CRL", &crl), false)?;
    Ok(layout)
}
