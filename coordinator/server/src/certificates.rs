//! Certificate renewal and certificate login. A holder renews its certificate by sending a new
//! request signed, together with its current certificate, by the current key: same identity, new
//! key and validity. A user bound to a certificate logs in by signing a fresh challenge with the
//! certificate's key instead of a password.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use xy_gmtls::pki::{CertificationRequest, ParsedCertificate, Role, verify_signed_by};
use xy_shangmi::sm2::CERT_DISTID;

use crate::ca::{Enrolment, pem_decode};
use crate::sso::{Claims, TokenPair};
use crate::users::UserRole;
use crate::{Coordinator, CoordinatorError, hex, random_token, token_hash};

/// Seconds a login challenge stays valid.
pub const CHALLENGE_TTL: u64 = 120;

/// A renewal request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Renewal {
    /// The current certificate, PEM.
    pub certificate_pem: String,
    /// The new PKCS#10 request, PEM.
    pub csr_pem: String,
    /// SM2-with-SM3 signature (r ‖ s, hex) by the current key over the request's DER.
    pub signature: String,
}

/// A certificate login.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateLogin {
    /// The user.
    pub username: String,
    /// The user's certificate, PEM.
    pub certificate_pem: String,
    /// The challenge from `login_challenge`.
    pub challenge: String,
    /// SM2-with-SM3 signature (r ‖ s, hex) by the certificate's key over
    /// `xinyong-login:<username>:<challenge>`.
    pub signature: String,
}

/// What a certificate login signs.
pub fn login_message(username: &str, challenge: &str) -> String {
    format!("xinyong-login:{username}:{challenge}")
}

impl Coordinator {
    /// A certificate issued by this CA, known and in force: (parsed serial hex, DER).
    async fn certificate_in_force(
        &self,
        certificate_pem: &str,
        now: u64,
    ) -> Result<(String, Vec<u8>), CoordinatorError> {
        let refused = |why: String| CoordinatorError::Unauthorized(why);
        let der = pem_decode("CERTIFICATE", certificate_pem)?;
        verify_signed_by(&der, self.ca.certificate()).map_err(|e| refused(e.to_string()))?;
        let serial = hex(ParsedCertificate::parse(&der)?.serial);
        let row = sqlx::query("SELECT revoked_at, not_after FROM certificates WHERE serial = $1")
            .bind(&serial)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| refused(format!("certificate {serial} was not issued here")))?;
        let revoked: Option<i64> = row.try_get(0)?;
        let not_after: i64 = row.try_get(1)?;
        if revoked.is_some() {
            return Err(refused(format!("certificate {serial} is revoked")));
        }
        if not_after <= now as i64 {
            return Err(refused(format!("certificate {serial} has expired")));
        }
        Ok((serial, der))
    }

    /// Renew a certificate: the new request must be signed by the current certificate's key; the
    /// new certificate keeps the identity and name. The old one stays valid until it expires.
    pub async fn renew(&self, renewal: &Renewal, now: u64) -> Result<Enrolment, CoordinatorError> {
        let (old_serial, old_der) = self
            .certificate_in_force(&renewal.certificate_pem, now)
            .await?;
        let old = ParsedCertificate::parse(&old_der)?;
        let request_der = pem_decode("CERTIFICATE REQUEST", &renewal.csr_pem)?;
        let request = CertificationRequest::parse_and_verify(&request_der)
            .map_err(|e| CoordinatorError::BadRequest(e.to_string()))?;
        let signature = xy_coordination::unhex(&renewal.signature)
            .ok_or_else(|| CoordinatorError::BadRequest("signature is not hex".into()))?;
        old.public_key
            .verify(CERT_DISTID, &request_der, &signature)
            .map_err(|_| {
                CoordinatorError::Unauthorized(
                    "the renewal is not signed by the current certificate's key".into(),
                )
            })?;
        let identity = old.identity.clone().ok_or_else(|| {
            CoordinatorError::BadRequest("the certificate names no identity".into())
        })?;
        let common_name: String =
            sqlx::query("SELECT common_name FROM certificates WHERE serial = $1")
                .bind(&old_serial)
                .fetch_one(&self.pool)
                .await?
                .try_get(0)?;
        let renewed = self
            .issue_certificate(&request.public_key, &identity, &common_name, now)
            .await?;
        self.audit(
            &format!("certificate:{old_serial}"),
            "certificate.renew",
            serde_json::json!({"old": old_serial, "new": renewed.serial}),
            now,
        )
        .await?;
        Ok(renewed)
    }

    /// Bind a client certificate (issued here, in force, of a client role and the user's
    /// jurisdiction) to the caller, for certificate login.
    pub async fn bind_certificate(
        &self,
        actor: &Claims,
        certificate_pem: &str,
        now: u64,
    ) -> Result<(), CoordinatorError> {
        let (serial, der) = self.certificate_in_force(certificate_pem, now).await?;
        let identity = ParsedCertificate::parse(&der)?.identity.ok_or_else(|| {
            CoordinatorError::BadRequest("the certificate names no identity".into())
        })?;
        let client = matches!(
            identity.role,
            Role::InstitutionClient | Role::DepartmentClient
        );
        if !client || identity.jurisdiction != actor.jurisdiction {
            let reason = format!(
                "a {} certificate of {} cannot stand for a user of {}",
                identity.role.as_str(),
                identity.jurisdiction,
                actor.jurisdiction
            );
            return Err(self.deny(actor, "certificate.bind", reason, now).await);
        }
        sqlx::query("UPDATE users SET certificate_serial = $1 WHERE username = $2")
            .bind(&serial)
            .bind(&actor.sub)
            .execute(&self.pool)
            .await?;
        self.audit(
            &actor.sub,
            "certificate.bind",
            serde_json::json!({"serial": serial}),
            now,
        )
        .await
    }

    /// A fresh challenge for a certificate login (valid two minutes, used once).
    pub fn login_challenge(&self, now: u64) -> String {
        let challenge = random_token();
        let mut challenges = self.challenges.lock().unwrap_or_else(|e| e.into_inner());
        challenges.retain(|_, expires| *expires > now);
        challenges.insert(token_hash(&challenge), now + CHALLENGE_TTL);
        challenge
    }

    /// Certificate login: the user's bound certificate, in force, and its key's signature over a
    /// fresh challenge.
    pub async fn login_with_certificate(
        &self,
        login: &CertificateLogin,
        now: u64,
    ) -> Result<TokenPair, CoordinatorError> {
        let fresh = {
            let mut challenges = self.challenges.lock().unwrap_or_else(|e| e.into_inner());
            challenges
                .remove(&token_hash(&login.challenge))
                .is_some_and(|expires| expires > now)
        };
        let result = async {
            if !fresh {
                return Err(CoordinatorError::Unauthorized(
                    "the challenge is unknown, used or expired".into(),
                ));
            }
            let (serial, der) = self.certificate_in_force(&login.certificate_pem, now).await?;
            let row = sqlx::query(
                "SELECT role, jurisdiction, status, certificate_serial FROM users WHERE username = $1",
            )
            .bind(&login.username)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| CoordinatorError::Unauthorized("unknown user or certificate".into()))?;
            let role: String = row.try_get(0)?;
            let jurisdiction: String = row.try_get(1)?;
            let status: String = row.try_get(2)?;
            let bound: Option<String> = row.try_get(3)?;
            if bound.as_deref() != Some(serial.as_str()) || status != "active" {
                return Err(CoordinatorError::Unauthorized(
                    "unknown user or certificate".into(),
                ));
            }
            let signature = xy_coordination::unhex(&login.signature)
                .ok_or_else(|| CoordinatorError::Unauthorized("signature is not hex".into()))?;
            ParsedCertificate::parse(&der)?
                .public_key
                .verify(
                    CERT_DISTID,
                    login_message(&login.username, &login.challenge).as_bytes(),
                    &signature,
                )
                .map_err(|_| CoordinatorError::Unauthorized("the signature does not verify".into()))?;
            let role = UserRole::parse(&role)
                .ok_or_else(|| CoordinatorError::BadRequest(format!("stored role {role}")))?;
            self.issue_tokens(&login.username, role, &jurisdiction, now).await
        }
        .await;
        let (action, detail) = match &result {
            Ok(_) => ("login.certificate", serde_json::json!({})),
            Err(e) => ("login.failed", serde_json::json!({"reason": e.to_string()})),
        };
        self.audit(&login.username, action, detail, now).await?;
        result
    }
}
