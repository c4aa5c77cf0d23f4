//! The global configuration: trust anchor, node directory, CRL, the single-sign-on key and policy
//! versions and the granted subscriptions that feed the return flow, signed by the CA key (nodes verify it with the CA certificate they already trust)
//! and valid until `expires_at`, so nodes keep working on a cached copy through a coordinator
//! outage until then.

use sqlx::Row;
use xy_coordination::{GlobalConfig, NodeEntry, ReturnSubscription, SignedConfig};
use xy_gmtls::pki::pem_encode;
use xy_shangmi::sm2::CERT_DISTID;

use crate::{Coordinator, CoordinatorError, hex};

impl Coordinator {
    /// The current configuration, signed.
    pub async fn global_config(&self, now: u64) -> Result<SignedConfig, CoordinatorError> {
        let rows = sqlx::query(
            "SELECT jurisdiction, role, address, server_name FROM nodes ORDER BY jurisdiction, role",
        )
        .fetch_all(&self.pool)
        .await?;
        let nodes = rows
            .iter()
            .map(|row| {
                Ok(NodeEntry {
                    jurisdiction: row.try_get(0)?,
                    role: row.try_get(1)?,
                    address: row.try_get(2)?,
                    server_name: row.try_get(3)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let crl = self.revocation_list(now).await?;
        let return_subscriptions = self.return_subscriptions().await?;
        let config = GlobalConfig {
            version: 1,
            issued_at: now,
            expires_at: now + self.settings.config_ttl_secs,
            trust_anchors: vec![pem_encode("CERTIFICATE", self.ca.certificate())],
            crl: pem_encode("X509 CRL", &crl),
            sso_public_key: hex(&self.sso_public_key().to_sec1()),
            nodes,
            policy_versions: [("scoring".to_owned(), 1), ("categories".to_owned(), 1)]
                .into_iter()
                .collect(),
            return_subscriptions,
        };
        let text = serde_json::to_string(&config)
            .map_err(|e| CoordinatorError::BadRequest(format!("configuration: {e}")))?;
        let signature = self
            .ca
            .key()
            .sign(CERT_DISTID, text.as_bytes())
            .map_err(|e| CoordinatorError::BadRequest(format!("signing: {e}")))?;
        Ok(SignedConfig {
            config: text,
            signature: hex(&signature),
        })
    }

    /// Granted subscriptions with the categories of their resources' published versions (tags
    /// `category:<code>`); a resource without such a tag feeds no return flow.
    async fn return_subscriptions(&self) -> Result<Vec<ReturnSubscription>, CoordinatorError> {
        let rows = sqlx::query(
            "SELECT subscriber_jurisdiction, resource_code FROM subscriptions WHERE status = 'granted' \
             ORDER BY subscriber_jurisdiction, resource_code",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for row in rows {
            let jurisdiction: String = row.try_get(0)?;
            let resource: String = row.try_get(1)?;
            let view = self.resource(&resource).await?;
            let categories: Vec<String> = view
                .versions
                .iter()
                .find(|v| v.status == "published")
                .map(|v| {
                    v.metadata
                        .tags
                        .iter()
                        .filter_map(|t| t.strip_prefix("category:").map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            if !categories.is_empty() {
                out.push(ReturnSubscription {
                    jurisdiction,
                    resource,
                    categories,
                });
            }
        }
        Ok(out)
    }
}
