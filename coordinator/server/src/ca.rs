//! The certificate authority: enrolment tokens, issuance from a verified PKCS#10 request,
//! revocation and the CRL, the node directory.

use std::path::Path;

use serde::Serialize;
use sqlx::Row;
use xy_gmtls::pki::{
    CertificateProfile, CertificationRequest, Issuer, ParsedCertificate, PeerIdentity, Role,
    pem_encode, private_key_from_der, private_key_to_pkcs8,
};
use xy_shangmi::sm2::Sm2SecretKey;

use crate::sso::Claims;
use crate::users::UserRole;
use crate::{Coordinator, CoordinatorError, hex, random_token, token_hash};

/// The CA's certificate and key, kept in the data directory (`ca.pem`, `ca.key`).
pub(crate) struct Authority {
    certificate: Vec<u8>,
    key: Sm2SecretKey,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CoordinatorError + '_ {
    move |e| CoordinatorError::Io(path.display().to_string(), e)
}

/// The DER inside the first PEM block labelled `label` (`CERTIFICATE`, `CERTIFICATE REQUEST` or
/// `PRIVATE KEY`), read by rustls' PEM parser as the node's credentials are.
pub(crate) fn pem_decode(label: &str, text: &str) -> Result<Vec<u8>, CoordinatorError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer, PrivatePkcs8KeyDer};
    let pem = text.as_bytes();
    let der = match label {
        "CERTIFICATE" => CertificateDer::from_pem_slice(pem).map(|d| d.to_vec()),
        "CERTIFICATE REQUEST" => {
            CertificateSigningRequestDer::from_pem_slice(pem).map(|d| d.as_ref().to_vec())
        }
        "PRIVATE KEY" => {
            PrivatePkcs8KeyDer::from_pem_slice(pem).map(|d| d.secret_pkcs8_der().to_vec())
        }
        other => {
            return Err(CoordinatorError::BadRequest(format!(
                "no PEM reader for {other}"
            )));
        }
    };
    der.map_err(|e| CoordinatorError::BadRequest(format!("PEM block {label}: {e}")))
}

/// Write a file readable by its owner only.
fn write_private(path: &Path, text: &str) -> Result<(), CoordinatorError> {
    xy_store::write_secret(path, text).map_err(io(path))
}

/// Load an SM2 key (PKCS#8 PEM) or create it.
pub(crate) fn load_or_create_key(path: &Path) -> Result<Sm2SecretKey, CoordinatorError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(private_key_from_der(&pem_decode("PRIVATE KEY", &text)?)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Sm2SecretKey::generate(&mut |bytes| rand::fill(bytes));
            write_private(
                path,
                &pem_encode("PRIVATE KEY", &private_key_to_pkcs8(&key)),
            )?;
            Ok(key)
        }
        Err(e) => Err(io(path)(e)),
    }
}

/// Load the 16-byte SM4 key that seals stored secrets, or create it (hex, a private file).
pub(crate) fn load_or_create_secret(path: &Path) -> Result<xy_shangmi::Sm4Gcm, CoordinatorError> {
    let key: Vec<u8> = match std::fs::read_to_string(path) {
        Ok(text) => xy_coordination::unhex(text.trim())
            .filter(|k| k.len() == 16)
            .ok_or_else(|| {
                CoordinatorError::BadRequest(format!("{} is not a 16-byte hex key", path.display()))
            })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 16];
            rand::fill(&mut key);
            write_private(path, &hex(&key))?;
            key.to_vec()
        }
        Err(e) => return Err(io(path)(e)),
    };
    xy_shangmi::Sm4Gcm::new(&key)
        .map_err(|e| CoordinatorError::BadRequest(format!("{}: {e}", path.display())))
}

fn random_serial() -> [u8; 16] {
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    serial
}

impl Authority {
    pub(crate) fn load_or_create(dir: &Path, now: u64) -> Result<Self, CoordinatorError> {
        let key = load_or_create_key(&dir.join("ca.key"))?;
        let cert_path = dir.join("ca.pem");
        let certificate = match std::fs::read_to_string(&cert_path) {
            Ok(text) => pem_decode("CERTIFICATE", &text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let certificate = Issuer::self_signed(
                    &key,
                    &CertificateProfile {
                        common_name: "xinyong provincial root CA".into(),
                        dns_names: Vec::new(),
                        identity: None,
                        not_before: now.saturating_sub(3600),
                        not_after: now + 20 * 365 * 86_400,
                        is_ca: true,
                    },
                    &random_serial(),
                )?;
                std::fs::write(&cert_path, pem_encode("CERTIFICATE", &certificate))
                    .map_err(io(&cert_path))?;
                certificate
            }
            Err(e) => return Err(io(&cert_path)(e)),
        };
        // Refuses a certificate that is not this key's CA certificate.
        Issuer::new(&certificate, &key)?;
        Ok(Self { certificate, key })
    }

    pub(crate) fn certificate(&self) -> &[u8] {
        &self.certificate
    }

    pub(crate) fn key(&self) -> &Sm2SecretKey {
        &self.key
    }

    fn issuer(&self) -> Result<Issuer<'_>, CoordinatorError> {
        Ok(Issuer::new(&self.certificate, &self.key)?)
    }
}

/// A one-time enrolment token, as returned to the administrator who made it.
#[derive(Debug, Clone, Serialize)]
pub struct EnrolmentToken {
    /// The secret (shown once; stored hashed).
    pub token: String,
    /// When it stops working.
    pub expires_at: u64,
}

/// What an enrolment returns.
#[derive(Debug, Clone, Serialize)]
pub struct Enrolment {
    /// The issued certificate, PEM.
    pub certificate_pem: String,
    /// The CA certificate (trust anchor), PEM.
    pub ca_pem: String,
    /// Its serial number, hex.
    pub serial: String,
}

/// Whether `actor` may manage certificates of `identity`: a province administrator any; a
/// prefecture administrator only department clients of its own jurisdiction. `Err` says why not.
fn may_manage(actor: &Claims, jurisdiction: &str, role: Role) -> Result<(), String> {
    match actor.role {
        UserRole::ProvinceAdmin => Ok(()),
        UserRole::PrefectureAdmin
            if actor.jurisdiction == jurisdiction && role == Role::DepartmentClient =>
        {
            Ok(())
        }
        UserRole::PrefectureAdmin => Err(format!(
            "a prefecture administrator of {} manages department clients of {} only",
            actor.jurisdiction, actor.jurisdiction
        )),
        other => Err(format!("{} may not manage certificates", other.as_str())),
    }
}

impl Coordinator {
    /// A one-time token for enrolling one certificate bound to `identity` under `common_name`.
    pub async fn create_enrolment_token(
        &self,
        actor: &Claims,
        identity: &PeerIdentity,
        common_name: &str,
        ttl_secs: u64,
        now: u64,
    ) -> Result<EnrolmentToken, CoordinatorError> {
        if let Err(reason) = may_manage(actor, &identity.jurisdiction, identity.role) {
            return Err(self.deny(actor, "token.create", reason, now).await);
        }
        let name_ok = !common_name.is_empty()
            && common_name.len() <= 253
            && common_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !name_ok {
            return Err(CoordinatorError::BadRequest(format!(
                "common_name {common_name:?} is not a DNS name"
            )));
        }
        let token = random_token();
        let expires_at = now + ttl_secs.clamp(60, 30 * 86_400);
        sqlx::query(
            "INSERT INTO enrolment_tokens (token_hash, jurisdiction, role, common_name, created_by, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token_hash(&token))
        .bind(&identity.jurisdiction)
        .bind(identity.role.as_str())
        .bind(common_name)
        .bind(&actor.sub)
        .bind(expires_at as i64)
        .execute(&self.pool)
        .await?;
        self.audit(
            &actor.sub,
            "token.create",
            serde_json::json!({
                "jurisdiction": identity.jurisdiction,
                "role": identity.role.as_str(),
                "common_name": common_name,
                "expires_at": expires_at,
            }),
            now,
        )
        .await?;
        Ok(EnrolmentToken { token, expires_at })
    }

    /// Enrol: verify the request's signature, consume the token (once, before it expires) and
    /// issue a certificate bound to the token's jurisdiction and role.
    pub async fn enrol(
        &self,
        token: &str,
        request_der: &[u8],
        now: u64,
    ) -> Result<Enrolment, CoordinatorError> {
        let request = CertificationRequest::parse_and_verify(request_der)
            .map_err(|e| CoordinatorError::BadRequest(e.to_string()))?;
        let hash = token_hash(token);
        // Consume atomically: only one enrolment can flip used_at.
        let consumed = sqlx::query(
            "UPDATE enrolment_tokens SET used_at = $1 \
             WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $3",
        )
        .bind(now as i64)
        .bind(&hash)
        .bind(now as i64)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if consumed != 1 {
            self.audit(
                "anonymous",
                "enrol.refused",
                serde_json::json!({"reason": "unknown, used or expired token"}),
                now,
            )
            .await?;
            return Err(CoordinatorError::Unauthorized(
                "the enrolment token is unknown, used or expired".into(),
            ));
        }
        let row = sqlx::query(
            "SELECT jurisdiction, role, common_name FROM enrolment_tokens WHERE token_hash = $1",
        )
        .bind(&hash)
        .fetch_one(&self.pool)
        .await?;
        let jurisdiction: String = row.try_get(0)?;
        let role: String = row.try_get(1)?;
        let common_name: String = row.try_get(2)?;
        let role = Role::parse(&role)
            .ok_or_else(|| CoordinatorError::BadRequest(format!("unknown role {role}")))?;
        let identity = PeerIdentity::new(&jurisdiction, role)?;
        let issued = self
            .issue_certificate(&request.public_key, &identity, &common_name, now)
            .await?;
        self.audit(
            &format!("enrolment:{common_name}"),
            "certificate.issue",
            serde_json::json!({
                "serial": issued.serial,
                "jurisdiction": jurisdiction,
                "role": role.as_str(),
                "common_name": common_name,
            }),
            now,
        )
        .await?;
        Ok(issued)
    }

    /// Issue a certificate for `key` bound to `identity` under `common_name`, valid for the
    /// configured days, and record it.
    pub(crate) async fn issue_certificate(
        &self,
        key: &xy_shangmi::sm2::Sm2PublicKey,
        identity: &PeerIdentity,
        common_name: &str,
        now: u64,
    ) -> Result<Enrolment, CoordinatorError> {
        let not_after = now + self.settings.certificate_days * 86_400;
        let certificate = self.ca.issuer()?.issue(
            key,
            &CertificateProfile {
                common_name: common_name.to_owned(),
                dns_names: Vec::new(),
                identity: Some(identity.clone()),
                not_before: now.saturating_sub(3600),
                not_after,
                is_ca: false,
            },
            &random_serial(),
        )?;
        let serial = hex(ParsedCertificate::parse(&certificate)?.serial);
        sqlx::query(
            "INSERT INTO certificates (serial, jurisdiction, role, common_name, issued_at, not_after, der_hex) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&serial)
        .bind(&identity.jurisdiction)
        .bind(identity.role.as_str())
        .bind(common_name)
        .bind(now as i64)
        .bind(not_after as i64)
        .bind(hex(&certificate))
        .execute(&self.pool)
        .await?;
        Ok(Enrolment {
            certificate_pem: pem_encode("CERTIFICATE", &certificate),
            ca_pem: pem_encode("CERTIFICATE", self.ca.certificate()),
            serial,
        })
    }

    /// Revoke a certificate (it appears on the next CRL and global configuration).
    pub async fn revoke(
        &self,
        actor: &Claims,
        serial_hex: &str,
        reason: &str,
        now: u64,
    ) -> Result<(), CoordinatorError> {
        // Deny first: only administrators learn whether a certificate exists.
        if !matches!(
            actor.role,
            UserRole::ProvinceAdmin | UserRole::PrefectureAdmin
        ) {
            let reason = format!("a {} may not revoke certificates", actor.role.as_str());
            return Err(self.deny(actor, "certificate.revoke", reason, now).await);
        }
        let row = sqlx::query(
            "SELECT jurisdiction, role, revoked_at FROM certificates WHERE serial = $1",
        )
        .bind(serial_hex)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| CoordinatorError::NotFound(format!("no certificate {serial_hex}")))?;
        let jurisdiction: String = row.try_get(0)?;
        let role: String = row.try_get(1)?;
        let revoked_at: Option<i64> = row.try_get(2)?;
        let role = Role::parse(&role)
            .ok_or_else(|| CoordinatorError::BadRequest(format!("unknown role {role}")))?;
        if let Err(reason) = may_manage(actor, &jurisdiction, role) {
            return Err(self.deny(actor, "certificate.revoke", reason, now).await);
        }
        if revoked_at.is_some() {
            return Err(CoordinatorError::Conflict(format!(
                "certificate {serial_hex} is revoked already"
            )));
        }
        sqlx::query(
            "UPDATE certificates SET revoked_at = $1, revocation_reason = $2 WHERE serial = $3",
        )
        .bind(now as i64)
        .bind(reason)
        .bind(serial_hex)
        .execute(&self.pool)
        .await?;
        self.audit(
            &actor.sub,
            "certificate.revoke",
            serde_json::json!({"serial": serial_hex, "reason": reason}),
            now,
        )
        .await?;
        Ok(())
    }

    /// The CRL (DER) listing every revoked certificate, valid for the configuration's lifetime.
    pub async fn revocation_list(&self, now: u64) -> Result<Vec<u8>, CoordinatorError> {
        let rows = sqlx::query(
            "SELECT serial, revoked_at FROM certificates WHERE revoked_at IS NOT NULL ORDER BY serial",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut revoked = Vec::with_capacity(rows.len());
        for row in rows {
            let serial: String = row.try_get(0)?;
            let at: i64 = row.try_get(1)?;
            let bytes = xy_coordination::unhex(&serial)
                .ok_or_else(|| CoordinatorError::BadRequest(format!("stored serial {serial}")))?;
            revoked.push((bytes, at as u64));
        }
        let count = revoked.len() as u64;
        Ok(self.ca.issuer()?.revocation_list(
            &revoked,
            now,
            now + self.settings.config_ttl_secs,
            now.max(1) * 1000 + count,
        )?)
    }

    /// Add or move a node in the directory of the global configuration.
    pub async fn register_node(
        &self,
        actor: &Claims,
        identity: &PeerIdentity,
        address: &str,
        server_name: &str,
        now: u64,
    ) -> Result<(), CoordinatorError> {
        if actor.role != UserRole::ProvinceAdmin {
            let reason = "only a province administrator edits the node directory".to_owned();
            return Err(self.deny(actor, "node.register", reason, now).await);
        }
        if !identity.role.is_node() {
            return Err(CoordinatorError::BadRequest(format!(
                "{} is not a node role",
                identity.role.as_str()
            )));
        }
        address
            .parse::<std::net::SocketAddr>()
            .map_err(|e| CoordinatorError::BadRequest(format!("address {address:?}: {e}")))?;
        sqlx::query("DELETE FROM nodes WHERE jurisdiction = $1 AND role = $2")
            .bind(&identity.jurisdiction)
            .bind(identity.role.as_str())
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO nodes (jurisdiction, role, address, server_name) VALUES ($1, $2, $3, $4)",
        )
        .bind(&identity.jurisdiction)
        .bind(identity.role.as_str())
        .bind(address)
        .bind(server_name)
        .execute(&self.pool)
        .await?;
        self.audit(
            &actor.sub,
            "node.register",
            serde_json::json!({
                "jurisdiction": identity.jurisdiction,
                "role": identity.role.as_str(),
                "address": address,
                "server_name": server_name,
            }),
            now,
        )
        .await?;
        Ok(())
    }
}
