//! Users: registration with review, argon2id passwords, lockout after repeated failures, roles by
//! level. A prefecture administrator reviews only the users of its own prefecture.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::sso::{Claims, TokenPair};
use crate::{Coordinator, CoordinatorError};

/// A user's role, by level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UserRole {
    /// 省级管理员: everything.
    ProvinceAdmin,
    /// 市级管理员: the users and department clients of one prefecture.
    PrefectureAdmin,
    /// 部门操作员: a department's data work.
    DepartmentOperator,
    /// 审计员: reads the audit log.
    Auditor,
    /// 金融机构用户: a bank's staff.
    InstitutionUser,
}

impl UserRole {
    /// Every role.
    pub const ALL: [UserRole; 5] = [
        UserRole::ProvinceAdmin,
        UserRole::PrefectureAdmin,
        UserRole::DepartmentOperator,
        UserRole::Auditor,
        UserRole::InstitutionUser,
    ];

    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            UserRole::ProvinceAdmin => "province-admin",
            UserRole::PrefectureAdmin => "prefecture-admin",
            UserRole::DepartmentOperator => "department-operator",
            UserRole::Auditor => "auditor",
            UserRole::InstitutionUser => "institution-user",
        }
    }

    /// The role of a name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

fn valid_username(name: &str) -> bool {
    (3..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
}

fn valid_jurisdiction(code: &str) -> bool {
    code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit())
}

fn hash_password(password: &str) -> Result<String, CoordinatorError> {
    if password.chars().count() < 12 {
        return Err(CoordinatorError::BadRequest(
            "a password has at least 12 characters".into(),
        ));
    }
    let mut salt = [0u8; 16];
    rand::fill(&mut salt);
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| CoordinatorError::BadRequest(format!("salt: {e}")))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| CoordinatorError::BadRequest(format!("password hashing: {e}")))
}

fn password_matches(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|parsed| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

impl Coordinator {
    async fn insert_user(
        &self,
        username: &str,
        password: &str,
        role: UserRole,
        jurisdiction: &str,
        status: &str,
        now: u64,
    ) -> Result<(), CoordinatorError> {
        if !valid_username(username) {
            return Err(CoordinatorError::BadRequest(format!(
                "username {username:?}: 3–64 letters, digits or . _ - @"
            )));
        }
        if !valid_jurisdiction(jurisdiction) {
            return Err(CoordinatorError::BadRequest(format!(
                "jurisdiction {jurisdiction:?} is not a six-digit division code"
            )));
        }
        let hash = hash_password(password)?;
        let exists = sqlx::query("SELECT 1 FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        if exists.is_some() {
            return Err(CoordinatorError::Conflict(format!(
                "user {username} exists"
            )));
        }
        sqlx::query(
            "INSERT INTO users (username, password_hash, role, jurisdiction, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(username)
        .bind(&hash)
        .bind(role.as_str())
        .bind(jurisdiction)
        .bind(status)
        .bind(now as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Create an active province administrator (the CLI's bootstrap; audited).
    pub async fn create_admin(
        &self,
        username: &str,
        password: &str,
        jurisdiction: &str,
        now: u64,
    ) -> Result<(), CoordinatorError> {
        self.insert_user(
            username,
            password,
            UserRole::ProvinceAdmin,
            jurisdiction,
            "active",
            now,
        )
        .await?;
        self.audit(
            "cli",
            "user.bootstrap",
            serde_json::json!({"username": username, "role": UserRole::ProvinceAdmin.as_str()}),
            now,
        )
        .await
    }

    /// Register a user; it waits for review by an administrator of its level.
    pub async fn register_user(
        &self,
        username: &str,
        password: &str,
        role: UserRole,
        jurisdiction: &str,
        now: u64,
    ) -> Result<(), CoordinatorError> {
        self.insert_user(username, password, role, jurisdiction, "pending", now)
            .await?;
        self.audit(
            username,
            "user.register",
            serde_json::json!({"role": role.as_str(), "jurisdiction": jurisdiction}),
            now,
        )
        .await
    }

    /// Approve a pending user. A province administrator approves anyone; a prefecture
    /// administrator only non-administrators of its own prefecture.
    pub async fn approve_user(
        &self,
        actor: &Claims,
        username: &str,
        now: u64,
    ) -> Result<(), CoordinatorError> {
        // Deny first: only administrators learn whether a user exists.
        if !matches!(
            actor.role,
            UserRole::ProvinceAdmin | UserRole::PrefectureAdmin
        ) {
            let reason = format!("a {} may not approve users", actor.role.as_str());
            return Err(self.deny(actor, "user.approve", reason, now).await);
        }
        let row = sqlx::query("SELECT role, jurisdiction, status FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| CoordinatorError::NotFound(format!("no user {username}")))?;
        let role: String = row.try_get(0)?;
        let jurisdiction: String = row.try_get(1)?;
        let status: String = row.try_get(2)?;
        let role = UserRole::parse(&role)
            .ok_or_else(|| CoordinatorError::BadRequest(format!("stored role {role}")))?;
        let allowed = match actor.role {
            UserRole::ProvinceAdmin => true,
            UserRole::PrefectureAdmin => {
                actor.jurisdiction == jurisdiction
                    && !matches!(role, UserRole::ProvinceAdmin | UserRole::PrefectureAdmin)
            }
            _ => false,
        };
        if !allowed {
            let reason = format!(
                "{} of {} may not approve a {} of {jurisdiction}",
                actor.role.as_str(),
                actor.jurisdiction,
                role.as_str()
            );
            return Err(self.deny(actor, "user.approve", reason, now).await);
        }
        if status != "pending" {
            return Err(CoordinatorError::Conflict(format!(
                "user {username} is {status}, not pending"
            )));
        }
        sqlx::query("UPDATE users SET status = 'active' WHERE username = $1")
            .bind(username)
            .execute(&self.pool)
            .await?;
        self.audit(
            &actor.sub,
            "user.approve",
            serde_json::json!({"username": username}),
            now,
        )
        .await
    }

    /// Password login, with the user's one-time `code` when it has a second factor: tokens for
    /// an active user; wrong passwords and codes count toward a lockout; every attempt is audited.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        code: Option<&str>,
        now: u64,
    ) -> Result<TokenPair, CoordinatorError> {
        let refused = || CoordinatorError::Unauthorized("wrong username or password".into());
        let row = sqlx::query(
            "SELECT password_hash, role, jurisdiction, status, failed_logins, locked_until \
             FROM users WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            self.audit(
                username,
                "login.failed",
                serde_json::json!({"reason": "unknown user"}),
                now,
            )
            .await?;
            return Err(refused());
        };
        let hash: String = row.try_get(0)?;
        let role: String = row.try_get(1)?;
        let jurisdiction: String = row.try_get(2)?;
        let status: String = row.try_get(3)?;
        let failed: i64 = row.try_get(4)?;
        let locked_until: i64 = row.try_get(5)?;
        if locked_until > now as i64 {
            self.audit(
                username,
                "login.failed",
                serde_json::json!({"reason": "locked"}),
                now,
            )
            .await?;
            return Err(CoordinatorError::Unauthorized(format!(
                "too many failed logins: locked for {} more seconds",
                locked_until - now as i64
            )));
        }
        let password_ok = password_matches(password, &hash);
        let factor = if password_ok && status == "active" {
            self.second_factor(username, code, now).await
        } else {
            Ok(())
        };
        let code_wrong = matches!(&factor, Err(e) if !e.to_string().contains("sent by SMS")
            && !e.to_string().contains("is required"));
        if !password_ok || code_wrong {
            let failed = failed + 1;
            let lock = if failed >= self.settings.lockout_after {
                (now + self.settings.lockout_secs) as i64
            } else {
                0
            };
            sqlx::query(
                "UPDATE users SET failed_logins = $1, locked_until = $2 WHERE username = $3",
            )
            .bind(if lock > 0 { 0 } else { failed })
            .bind(lock)
            .bind(username)
            .execute(&self.pool)
            .await?;
            let reason = if password_ok {
                "wrong one-time code"
            } else {
                "wrong password"
            };
            self.audit(
                username,
                "login.failed",
                serde_json::json!({"reason": reason, "locked": lock > 0}),
                now,
            )
            .await?;
            return Err(match factor {
                Err(e) if password_ok => e,
                _ => refused(),
            });
        }
        // Asked for a code (none given, or one just sent by SMS).
        factor?;
        if status != "active" {
            self.audit(
                username,
                "login.failed",
                serde_json::json!({"reason": status}),
                now,
            )
            .await?;
            return Err(CoordinatorError::Forbidden(format!(
                "user {username} is {status}: an administrator must approve it first"
            )));
        }
        sqlx::query("UPDATE users SET failed_logins = 0, locked_until = 0 WHERE username = $1")
            .bind(username)
            .execute(&self.pool)
            .await?;
        let role = UserRole::parse(&role)
            .ok_or_else(|| CoordinatorError::BadRequest(format!("stored role {role}")))?;
        let tokens = self
            .issue_tokens(username, role, &jurisdiction, now)
            .await?;
        self.audit(
            username,
            "login",
            serde_json::json!({"role": role.as_str()}),
            now,
        )
        .await?;
        Ok(tokens)
    }
}
