//! Single sign-on tokens: JWT-shaped (`header.payload.signature`, base64url), alg `SM2SM3` — an
//! SM2 signature with SM3 over `header.payload` under the distinguishing id
//! `1234567812345678`, the 64-byte r ‖ s. Access tokens are short-lived and verified offline by
//! every node with the coordinator's key from the global configuration; refresh tokens are random,
//! stored hashed and used once.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use xy_shangmi::sm2::{CERT_DISTID, Sm2PublicKey};

use crate::users::UserRole;
use crate::{Coordinator, CoordinatorError, random_token, token_hash};

/// What an access token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user.
    pub sub: String,
    /// The user's role.
    pub role: UserRole,
    /// The user's jurisdiction.
    pub jurisdiction: String,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Expires at (Unix seconds).
    pub exp: u64,
    /// Issuer.
    pub iss: String,
    /// Audience: the services that accept the token.
    pub aud: String,
}

/// An access token and its refresh token.
#[derive(Debug, Clone, Serialize)]
pub struct TokenPair {
    /// The access token (JWT-shaped, alg SM2SM3).
    pub access_token: String,
    /// When it expires.
    pub expires_at: u64,
    /// The refresh token (used once).
    pub refresh_token: String,
}

const HEADER: &str = r#"{"alg":"SM2SM3","typ":"JWT"}"#;
const ISSUER: &str = xy_coordination::SSO_ISSUER;
/// The audience of the coordinator's tokens: the platform's nodes and the coordinator itself.
pub const AUDIENCE: &str = xy_coordination::SSO_AUDIENCE;

/// Verify an access token offline with the coordinator's single-sign-on key: the signature, the
/// algorithm, the issuer, the audience (`audience`, usually [`AUDIENCE`]) and the expiry.
pub fn verify_token(
    token: &str,
    key: &Sm2PublicKey,
    audience: &str,
    now: u64,
) -> Result<Claims, CoordinatorError> {
    let claims = xy_coordination::verify_sso_token(token, key, audience, now)
        .map_err(|e| CoordinatorError::Unauthorized(e.to_string()))?;
    Ok(Claims {
        role: UserRole::parse(&claims.role)
            .ok_or_else(|| CoordinatorError::Unauthorized("invalid token: role".into()))?,
        sub: claims.sub,
        jurisdiction: claims.jurisdiction,
        iat: claims.iat,
        exp: claims.exp,
        iss: claims.iss,
        aud: claims.aud,
    })
}

impl Coordinator {
    /// The single-sign-on public key (published in the global configuration).
    pub fn sso_public_key(&self) -> Sm2PublicKey {
        self.sso_key.public_key()
    }

    fn sign_token(&self, claims: &Claims) -> Result<String, CoordinatorError> {
        let payload = serde_json::to_vec(claims)
            .map_err(|e| CoordinatorError::BadRequest(format!("claims: {e}")))?;
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(HEADER),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let signature = self
            .sso_key
            .sign(CERT_DISTID, signed.as_bytes())
            .map_err(|e| CoordinatorError::BadRequest(format!("signing: {e}")))?;
        Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }

    pub(crate) async fn issue_tokens(
        &self,
        username: &str,
        role: UserRole,
        jurisdiction: &str,
        now: u64,
    ) -> Result<TokenPair, CoordinatorError> {
        let expires_at = now + self.settings.access_ttl_secs;
        let access_token = self.sign_token(&Claims {
            sub: username.to_owned(),
            role,
            jurisdiction: jurisdiction.to_owned(),
            iat: now,
            exp: expires_at,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
        })?;
        let refresh_token = random_token();
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, username, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(token_hash(&refresh_token))
        .bind(username)
        .bind((now + self.settings.refresh_ttl_secs) as i64)
        .execute(&self.pool)
        .await?;
        Ok(TokenPair {
            access_token,
            expires_at,
            refresh_token,
        })
    }

    /// Verify an access token (as any node would, offline).
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, CoordinatorError> {
        verify_token(token, &self.sso_public_key(), AUDIENCE, now)
    }

    /// Exchange a refresh token (once) for new tokens, if the user is still active.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        now: u64,
    ) -> Result<TokenPair, CoordinatorError> {
        let hash = token_hash(refresh_token);
        let used = sqlx::query(
            "UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $3",
        )
        .bind(now as i64)
        .bind(&hash)
        .bind(now as i64)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if used != 1 {
            return Err(CoordinatorError::Unauthorized(
                "the refresh token is unknown, used or expired".into(),
            ));
        }
        let row = sqlx::query(
            "SELECT u.username, u.role, u.jurisdiction, u.status FROM refresh_tokens r \
             JOIN users u ON u.username = r.username WHERE r.token_hash = $1",
        )
        .bind(&hash)
        .fetch_one(&self.pool)
        .await?;
        let username: String = row.try_get(0)?;
        let role: String = row.try_get(1)?;
        let jurisdiction: String = row.try_get(2)?;
        let status: String = row.try_get(3)?;
        if status != "active" {
            return Err(CoordinatorError::Forbidden(format!(
                "user {username} is {status}"
            )));
        }
        let role = UserRole::parse(&role)
            .ok_or_else(|| CoordinatorError::BadRequest(format!("stored role {role}")))?;
        let tokens = self
            .issue_tokens(&username, role, &jurisdiction, now)
            .await?;
        self.audit(&username, "token.refresh", serde_json::json!({}), now)
            .await?;
        Ok(tokens)
    }
}
