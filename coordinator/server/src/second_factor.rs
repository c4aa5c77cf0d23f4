//! One-time codes, the second factor of a login: TOTP (RFC 6238: HMAC-SHA1, 30-second steps, six
//! digits, one step of clock drift either way, a step never accepted twice), enrolled by the user
//! and confirmed with a first code; or a code sent by SMS through a pluggable [`SmsSender`] whose
//! default writes to the log. TOTP secrets are kept sealed with SM4-GCM under the coordinator's
//! secrets key.

use hmac012::{Hmac, Mac};
use sqlx::Row;

use crate::sso::Claims;
use crate::{Coordinator, CoordinatorError, hex};

/// Seconds per TOTP step.
pub const TOTP_STEP: u64 = 30;
/// Seconds an SMS code stays valid.
pub const SMS_CODE_TTL: u64 = 300;

/// The RFC 4226 / 6238 code of `secret` at `counter`, with `digits` digits.
pub fn hotp(secret: &[u8], counter: u64, digits: u32) -> u32 {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(&counter.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[19] & 0x0f);
    let binary = (u32::from(digest[offset]) & 0x7f) << 24
        | u32::from(digest[offset + 1]) << 16
        | u32::from(digest[offset + 2]) << 8
        | u32::from(digest[offset + 3]);
    binary % 10u32.pow(digits)
}

/// The six-digit TOTP code of `secret` at Unix time `now`.
pub fn totp(secret: &[u8], now: u64) -> u32 {
    hotp(secret, now / TOTP_STEP, 6)
}

/// RFC 4648 base32 without padding (what authenticator apps take).
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            out.push(char::from(ALPHABET[((buffer >> (bits - 5)) & 31) as usize]));
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Sends one-time codes by SMS. The default, [`LogSender`], writes them to the log (for
/// development and for sites that have no SMS gateway).
pub trait SmsSender: Send + Sync {
    /// Send `text` to `phone`.
    fn send(&self, phone: &str, text: &str) -> Result<(), String>;
}

/// Writes SMS messages to the log.
#[derive(Debug, Default)]
pub struct LogSender;

impl SmsSender for LogSender {
    fn send(&self, phone: &str, text: &str) -> Result<(), String> {
        tracing::info!(phone, text, "SMS (log sender)");
        Ok(())
    }
}

/// What a TOTP enrolment gives the user.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TotpEnrolment {
    /// The secret, base32 (enter it in the authenticator app).
    pub secret: String,
    /// The `otpauth://` URI (for a QR code).
    pub uri: String,
}

fn parse_code(code: &str) -> Option<u32> {
    let code = code.trim();
    (code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()))
        .then(|| code.parse().ok())
        .flatten()
}

impl Coordinator {
    fn seal_secret(&self, secret: &[u8]) -> String {
        let mut nonce = [0u8; 12];
        rand::fill(&mut nonce);
        hex(&self.secrets.seal(&nonce, b"totp", secret))
    }

    fn open_secret(&self, sealed_hex: &str) -> Result<Vec<u8>, CoordinatorError> {
        let bytes = xy_coordination::unhex(sealed_hex)
            .ok_or_else(|| CoordinatorError::BadRequest("stored secret is not hex".into()))?;
        self.secrets
            .open(b"totp", &bytes)
            .map_err(|_| CoordinatorError::BadRequest("stored secret does not open".into()))
    }

    /// Start TOTP for the caller: a fresh secret, in force once confirmed with a first code.
    pub async fn enrol_totp(
        &self,
        actor: &Claims,
        now: u64,
    ) -> Result<TotpEnrolment, CoordinatorError> {
        let mut secret = [0u8; 20];
        rand::fill(&mut secret);
        sqlx::query(
            "UPDATE users SET totp_secret = $1, second_factor = 'totp-pending' WHERE username = $2",
        )
        .bind(self.seal_secret(&secret))
        .bind(&actor.sub)
        .execute(&self.pool)
        .await?;
        self.audit(&actor.sub, "totp.enrol", serde_json::json!({}), now)
            .await?;
        let secret = base32(&secret);
        Ok(TotpEnrolment {
            uri: format!(
                "otpauth://totp/xinyong:{}?secret={secret}&issuer=xinyong&algorithm=SHA1&digits=6&period=30",
                actor.sub
            ),
            secret,
        })
    }

    /// Confirm TOTP with a first code; from then on every login needs one.
    pub async fn confirm_totp(
        &self,
        actor: &Claims,
        code: &str,
        now: u64,
    ) -> Result<(), CoordinatorError> {
        self.check_totp(&actor.sub, code, now).await?;
        sqlx::query("UPDATE users SET second_factor = 'totp' WHERE username = $1")
            .bind(&actor.sub)
            .execute(&self.pool)
            .await?;
        self.audit(&actor.sub, "totp.confirm", serde_json::json!({}), now)
            .await
    }

    /// Use SMS codes as the caller's second factor, sent to `phone`.
    pub async fn enable_sms(
        &self,
        actor: &Claims,
        phone: &str,
        now: u64,
    ) -> Result<(), CoordinatorError> {
        let digits = phone.strip_prefix('+').unwrap_or(phone);
        if !(6..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CoordinatorError::BadRequest(format!(
                "phone {phone:?} is not a number"
            )));
        }
        sqlx::query("UPDATE users SET second_factor = 'sms', phone = $1 WHERE username = $2")
            .bind(phone)
            .bind(&actor.sub)
            .execute(&self.pool)
            .await?;
        self.audit(&actor.sub, "sms.enable", serde_json::json!({}), now)
            .await
    }

    /// Check a TOTP code: ±1 step of drift; a step is accepted once.
    async fn check_totp(
        &self,
        username: &str,
        code: &str,
        now: u64,
    ) -> Result<(), CoordinatorError> {
        let wrong = || CoordinatorError::Unauthorized("wrong or reused one-time code".into());
        let row = sqlx::query("SELECT totp_secret, last_totp_step FROM users WHERE username = $1")
            .bind(username)
            .fetch_one(&self.pool)
            .await?;
        let sealed: Option<String> = row.try_get(0)?;
        let last_step: i64 = row.try_get(1)?;
        let secret = self.open_secret(&sealed.ok_or_else(wrong)?)?;
        let code = parse_code(code).ok_or_else(wrong)?;
        let step = now / TOTP_STEP;
        let matched = [step.saturating_sub(1), step, step + 1]
            .into_iter()
            .find(|s| hotp(&secret, *s, 6) == code && *s as i64 > last_step)
            .ok_or_else(wrong)?;
        sqlx::query("UPDATE users SET last_totp_step = $1 WHERE username = $2")
            .bind(matched as i64)
            .bind(username)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The second factor of a login whose password was right: `Ok` when none is set or the
    /// code is right; an SMS user without a code gets one sent and an `Unauthorized` saying so.
    pub(crate) async fn second_factor(
        &self,
        username: &str,
        code: Option<&str>,
        now: u64,
    ) -> Result<(), CoordinatorError> {
        let row = sqlx::query(
            "SELECT second_factor, phone, sms_code_hash, sms_code_expires FROM users WHERE username = $1",
        )
        .bind(username)
        .fetch_one(&self.pool)
        .await?;
        let factor: String = row.try_get(0)?;
        let phone: Option<String> = row.try_get(1)?;
        let sms_hash: Option<String> = row.try_get(2)?;
        let sms_expires: i64 = row.try_get(3)?;
        match (factor.as_str(), code) {
            ("totp", Some(code)) => self.check_totp(username, code, now).await,
            ("totp", None) => Err(CoordinatorError::Unauthorized(
                "a one-time code from the authenticator is required".into(),
            )),
            ("sms", Some(code)) => {
                let ok = sms_hash.is_some_and(|h| {
                    h == crate::token_hash(&format!("{username}:{}", code.trim()))
                }) && sms_expires > now as i64;
                if !ok {
                    return Err(CoordinatorError::Unauthorized(
                        "wrong or expired SMS code".into(),
                    ));
                }
                sqlx::query("UPDATE users SET sms_code_hash = NULL, sms_code_expires = 0 WHERE username = $1")
                    .bind(username)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }
            ("sms", None) => {
                let phone = phone.unwrap_or_default();
                let code = format!("{:06}", rand::random::<u32>() % 1_000_000);
                sqlx::query("UPDATE users SET sms_code_hash = $1, sms_code_expires = $2 WHERE username = $3")
                    .bind(crate::token_hash(&format!("{username}:{code}")))
                    .bind((now + SMS_CODE_TTL) as i64)
                    .bind(username)
                    .execute(&self.pool)
                    .await?;
                self.sms
                    .send(
                        &phone,
                        &format!("【信用平台】登录验证码 {code}，5 分钟内有效。"),
                    )
                    .map_err(|e| CoordinatorError::BadRequest(format!("SMS not sent: {e}")))?;
                Err(CoordinatorError::Unauthorized(
                    "a one-time code was sent by SMS: log in again with it".into(),
                ))
            }
            _ => Ok(()),
        }
    }
}
