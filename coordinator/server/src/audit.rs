//! The audit log: every login and administrative action, each entry linked to the previous one by
//! SM3 (entry_hash = SM3(prev_hash ‖ seq ‖ at ‖ actor ‖ action ‖ detail)), so an edited, removed
//! or inserted entry breaks the chain at that point.

use serde::Serialize;
use sqlx::Row;

use crate::{Coordinator, CoordinatorError, hex};

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn entry_hash(prev: &str, seq: i64, at: i64, actor: &str, action: &str, detail: &str) -> String {
    let mut h = xy_shangmi::Sm3Hasher::new();
    for part in [
        prev.as_bytes(),
        &seq.to_be_bytes(),
        &at.to_be_bytes(),
        actor.as_bytes(),
        action.as_bytes(),
        detail.as_bytes(),
    ] {
        h.update(&(part.len() as u64).to_be_bytes());
        h.update(part);
    }
    hex(&h.finish())
}

/// The result of checking the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditCheck {
    /// Entries read.
    pub entries: u64,
    /// The first entry whose link or hash is wrong, if any.
    pub first_broken: Option<i64>,
}

impl AuditCheck {
    /// Whether the whole chain holds.
    pub fn is_intact(&self) -> bool {
        self.first_broken.is_none()
    }
}

impl Coordinator {
    /// Append one entry.
    pub(crate) async fn audit(
        &self,
        actor: &str,
        action: &str,
        detail: serde_json::Value,
        now: u64,
    ) -> Result<(), CoordinatorError> {
        let _guard = self.audit_lock.lock().await;
        let last = sqlx::query("SELECT seq, entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        let (seq, prev) = match last {
            Some(row) => (row.try_get::<i64, _>(0)? + 1, row.try_get::<String, _>(1)?),
            None => (1, GENESIS.to_owned()),
        };
        let detail = detail.to_string();
        let at = now as i64;
        let hash = entry_hash(&prev, seq, at, actor, action, &detail);
        sqlx::query(
            "INSERT INTO audit_log (seq, at, actor, action, detail, prev_hash, entry_hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(seq)
        .bind(at)
        .bind(actor)
        .bind(action)
        .bind(&detail)
        .bind(&prev)
        .bind(&hash)
        .execute(&self.pool)
        .await?;
        tracing::info!(actor, action, seq, "audited");
        Ok(())
    }

    /// Refuse `action` to `actor`: the refusal is audited, and returned as `Forbidden`.
    pub async fn deny(
        &self,
        actor: &crate::Claims,
        action: &str,
        reason: String,
        now: u64,
    ) -> CoordinatorError {
        let detail = serde_json::json!({"action": action, "reason": reason});
        if let Err(e) = self.audit(&actor.sub, "denied", detail, now).await {
            return e;
        }
        CoordinatorError::Forbidden(reason)
    }

    /// Check the whole chain.
    pub async fn verify_audit(&self) -> Result<AuditCheck, CoordinatorError> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, detail, prev_hash, entry_hash FROM audit_log ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut prev = GENESIS.to_owned();
        let mut expected_seq = 1;
        let mut check = AuditCheck {
            entries: 0,
            first_broken: None,
        };
        for row in rows {
            let seq: i64 = row.try_get(0)?;
            let at: i64 = row.try_get(1)?;
            let actor: String = row.try_get(2)?;
            let action: String = row.try_get(3)?;
            let detail: String = row.try_get(4)?;
            let prev_hash: String = row.try_get(5)?;
            let hash: String = row.try_get(6)?;
            check.entries += 1;
            let recomputed = entry_hash(&prev_hash, seq, at, &actor, &action, &detail);
            if check.first_broken.is_none()
                && (seq != expected_seq || prev_hash != prev || recomputed != hash)
            {
                check.first_broken = Some(seq);
            }
            prev = hash;
            expected_seq = seq + 1;
        }
        Ok(check)
    }

    /// The last `limit` entries, newest first (for auditors).
    pub async fn audit_entries(
        &self,
        limit: u32,
    ) -> Result<Vec<serde_json::Value>, CoordinatorError> {
        let rows = sqlx::query(&format!(
            "SELECT seq, at, actor, action, detail FROM audit_log ORDER BY seq DESC LIMIT {}",
            limit.clamp(1, 10_000)
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(serde_json::json!({
                    "seq": row.try_get::<i64, _>(0)?,
                    "at": row.try_get::<i64, _>(1)?,
                    "actor": row.try_get::<String, _>(2)?,
                    "action": row.try_get::<String, _>(3)?,
                    "detail": serde_json::from_str::<serde_json::Value>(&row.try_get::<String, _>(4)?)
                        .unwrap_or(serde_json::Value::Null),
                }))
            })
            .collect()
    }
}
