//! 数据目录, the data catalogue (system M1): resources described with the metadata of GB/T 39440 /
//! GB/T 39442 Annex A, a register → review → publish → retire workflow with versions, search by
//! keyword, class and sharing attribute, lineage between resources, and subscriptions — a
//! prefecture asks for a resource for its return flow; an unconditionally shared resource is
//! granted at once, a conditionally shared one waits for its owner's decision within a time limit
//! counted in working days of the policy's calendar (`policies/catalogue.toml`), and is escalated
//! when the limit passes. The class code table, the enumerations and the calendar are data.

use std::collections::{BTreeMap, HashSet};

use chrono::{Datelike, NaiveDate, Weekday};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::sso::Claims;
use crate::users::UserRole;
use crate::{Coordinator, CoordinatorError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    sharing_attributes: Vec<String>,
    sensitivity_levels: Vec<String>,
    update_frequencies: Vec<String>,
    subscriptions: SubscriptionRules,
    calendar: Calendar,
    classes: Vec<Class>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriptionRules {
    conditional_decision_working_days: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Calendar {
    holidays: Vec<String>,
    working_weekends: Vec<String>,
}

fn dates(list: Vec<String>) -> Result<HashSet<NaiveDate>, CoordinatorError> {
    list.into_iter()
        .map(|d| {
            NaiveDate::parse_from_str(&d, "%Y-%m-%d").map_err(|e| {
                CoordinatorError::BadRequest(format!("catalogue calendar date {d:?}: {e}"))
            })
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Class {
    code: String,
    name: String,
}

/// The catalogue's policy data.
#[derive(Debug, Clone)]
pub struct CataloguePolicy {
    sharing_attributes: Vec<String>,
    sensitivity_levels: Vec<String>,
    update_frequencies: Vec<String>,
    decision_working_days: u32,
    holidays: HashSet<NaiveDate>,
    working_weekends: HashSet<NaiveDate>,
    classes: BTreeMap<String, String>,
}

/// Sharing attribute of an unconditionally shared resource.
pub const UNCONDITIONAL: &str = "无条件共享";
/// Sharing attribute of a conditionally shared resource.
pub const CONDITIONAL: &str = "有条件共享";
/// Sharing attribute of a resource that is not shared.
pub const NOT_SHARED: &str = "不予共享";

impl CataloguePolicy {
    /// The policy shipped in `policies/catalogue.toml`.
    pub fn shipped() -> Self {
        Self::from_toml(include_str!("../../../policies/catalogue.toml"))
            .expect("the shipped catalogue policy is valid")
    }

    /// Parse and check a policy.
    pub fn from_toml(text: &str) -> Result<Self, CoordinatorError> {
        let file: PolicyFile = toml::from_str(text)
            .map_err(|e| CoordinatorError::BadRequest(format!("catalogue policy: {e}")))?;
        for required in [UNCONDITIONAL, CONDITIONAL, NOT_SHARED] {
            if !file.sharing_attributes.iter().any(|a| a == required) {
                return Err(CoordinatorError::BadRequest(format!(
                    "catalogue policy: sharing attribute {required} missing"
                )));
            }
        }
        Ok(Self {
            sharing_attributes: file.sharing_attributes,
            sensitivity_levels: file.sensitivity_levels,
            update_frequencies: file.update_frequencies,
            decision_working_days: file.subscriptions.conditional_decision_working_days,
            holidays: dates(file.calendar.holidays)?,
            working_weekends: dates(file.calendar.working_weekends)?,
            classes: file.classes.into_iter().map(|c| (c.code, c.name)).collect(),
        })
    }

    /// Whether `day` is a working day: Monday to Friday except public holidays, plus the adjusted
    /// working weekend days.
    pub fn is_working_day(&self, day: NaiveDate) -> bool {
        if self.working_weekends.contains(&day) {
            return true;
        }
        !matches!(day.weekday(), Weekday::Sat | Weekday::Sun) && !self.holidays.contains(&day)
    }

    /// The `n`-th working day after `start`.
    pub fn add_working_days(&self, start: NaiveDate, n: u32) -> NaiveDate {
        let mut day = start;
        let mut left = n;
        while left > 0 {
            day = day.succ_opt().unwrap_or(day);
            if self.is_working_day(day) {
                left -= 1;
            }
        }
        day
    }

    /// The name of a class code.
    pub fn class_name(&self, code: &str) -> Option<&str> {
        self.classes.get(code).map(String::as_str)
    }
}

/// Beijing time is UTC+8 all year.
const CST: i64 = 8 * 3600;

fn cst_date(unix: u64) -> NaiveDate {
    chrono::DateTime::from_timestamp(unix as i64 + CST, 0)
        .map(|t| t.date_naive())
        .unwrap_or_default()
}

/// The end (24:00 Beijing time) of `day`, in Unix seconds.
fn end_of_day(day: NaiveDate) -> u64 {
    let midnight = day
        .succ_opt()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp() - CST)
        .unwrap_or(0);
    midnight.max(0) as u64
}

/// One field of a resource (信息项), with its data-element reference (GB/T 39445).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// Field name.
    pub name: String,
    /// Data element identifier (数据元).
    #[serde(default)]
    pub data_element: String,
    /// What it holds.
    #[serde(default)]
    pub description: String,
}

/// A resource's metadata, after GB/T 39442 Annex A (信息资源目录元数据).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceMetadata {
    /// 资源代码: stable code of the resource.
    pub code: String,
    /// 资源名称.
    pub name: String,
    /// 资源提供方.
    pub provider_unit: String,
    /// 资源分类 (GB/T 39441 class code of the policy's table).
    pub classification: String,
    /// 资源格式 (table, file, service …).
    pub format: String,
    /// 信息项.
    pub fields: Vec<FieldSpec>,
    /// 更新周期.
    pub update_frequency: String,
    /// 共享属性: 无条件共享 / 有条件共享 / 不予共享.
    pub sharing: String,
    /// 共享条件 (conditional sharing) or the legal basis for not sharing.
    #[serde(default)]
    pub sharing_conditions: String,
    /// 敏感级别.
    pub sensitivity: String,
    /// 资源摘要.
    #[serde(default)]
    pub description: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Lineage: the codes of the resources this one is derived from.
    #[serde(default)]
    pub derived_from: Vec<String>,
}

/// A version of a resource as the catalogue holds it.
#[derive(Debug, Clone, Serialize)]
pub struct ResourceVersion {
    /// Version, from 1.
    pub version: i64,
    /// registered, reviewed, rejected, published, superseded or retired.
    pub status: String,
    /// The provider's jurisdiction.
    pub provider_jurisdiction: String,
    /// Who registered it.
    pub registered_by: String,
    /// When it last changed.
    pub updated_at: i64,
    /// Its metadata.
    pub metadata: ResourceMetadata,
}

/// A resource with its versions and lineage.
#[derive(Debug, Clone, Serialize)]
pub struct ResourceView {
    /// Code.
    pub code: String,
    /// Every version, newest first.
    pub versions: Vec<ResourceVersion>,
    /// Resources this one derives from.
    pub derived_from: Vec<String>,
    /// Published resources derived from this one.
    pub derived_by: Vec<String>,
}

/// A subscription.
#[derive(Debug, Clone, Serialize)]
pub struct Subscription {
    /// Id.
    pub id: i64,
    /// The resource.
    pub resource_code: String,
    /// The subscribing prefecture.
    pub subscriber_jurisdiction: String,
    /// Who asked.
    pub requested_by: String,
    /// Why.
    pub purpose: String,
    /// pending, granted, refused or overdue.
    pub status: String,
    /// When asked.
    pub requested_at: i64,
    /// The decision deadline (end of the last working day), for conditional resources.
    pub decide_by: Option<i64>,
    /// When decided.
    pub decided_at: Option<i64>,
    /// The decision's reason.
    pub reason: String,
}

fn bad(message: String) -> CoordinatorError {
    CoordinatorError::BadRequest(message)
}

fn valid_code(code: &str) -> bool {
    (1..=64).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn is_admin(role: UserRole) -> bool {
    matches!(role, UserRole::ProvinceAdmin | UserRole::PrefectureAdmin)
}

impl Coordinator {
    fn check_metadata(&self, m: &ResourceMetadata) -> Result<(), CoordinatorError> {
        let p = &self.catalogue;
        if !valid_code(&m.code) {
            return Err(bad(format!(
                "code {:?}: 1–64 letters, digits or - _ .",
                m.code
            )));
        }
        for (what, value) in [
            ("name", &m.name),
            ("provider_unit", &m.provider_unit),
            ("format", &m.format),
        ] {
            if value.trim().is_empty() || value.chars().count() > 200 {
                return Err(bad(format!(
                    "{what} is empty or longer than 200 characters"
                )));
            }
        }
        if p.class_name(&m.classification).is_none() {
            return Err(bad(format!(
                "classification {:?} is not in the class table",
                m.classification
            )));
        }
        for (what, value, allowed) in [
            ("sharing", &m.sharing, &p.sharing_attributes),
            ("sensitivity", &m.sensitivity, &p.sensitivity_levels),
            (
                "update_frequency",
                &m.update_frequency,
                &p.update_frequencies,
            ),
        ] {
            if !allowed.contains(value) {
                return Err(bad(format!(
                    "{what} {value:?}: one of {}",
                    allowed.join(", ")
                )));
            }
        }
        if m.sharing != UNCONDITIONAL && m.sharing_conditions.trim().is_empty() {
            return Err(bad(format!(
                "a resource shared as {} states its conditions or legal basis",
                m.sharing
            )));
        }
        if m.fields.is_empty() || m.fields.iter().any(|f| f.name.trim().is_empty()) {
            return Err(bad("a resource lists its fields, each with a name".into()));
        }
        if m.description.chars().count() > 4000 || m.tags.len() > 32 || m.fields.len() > 1000 {
            return Err(bad("description, tags or fields beyond their limits".into()));
        }
        Ok(())
    }

    async fn versions(&self, code: &str) -> Result<Vec<ResourceVersion>, CoordinatorError> {
        let rows = sqlx::query(
            "SELECT version, status, provider_jurisdiction, registered_by, updated_at, metadata \
             FROM resources WHERE code = $1 ORDER BY version DESC",
        )
        .bind(code)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let metadata: String = row.try_get(5)?;
                Ok(ResourceVersion {
                    version: row.try_get(0)?,
                    status: row.try_get(1)?,
                    provider_jurisdiction: row.try_get(2)?,
                    registered_by: row.try_get(3)?,
                    updated_at: row.try_get(4)?,
                    metadata: serde_json::from_str(&metadata)
                        .map_err(|e| bad(format!("stored metadata of {code}: {e}")))?,
                })
            })
            .collect()
    }

    /// Register a resource, or a new version of one the caller's jurisdiction provides.
    /// Returns the version.
    pub async fn register_resource(
        &self,
        actor: &Claims,
        metadata: &ResourceMetadata,
        now: u64,
    ) -> Result<i64, CoordinatorError> {
        if !matches!(
            actor.role,
            UserRole::ProvinceAdmin | UserRole::PrefectureAdmin | UserRole::DepartmentOperator
        ) {
            let reason = format!("a {} may not register resources", actor.role.as_str());
            return Err(self.deny(actor, "resource.register", reason, now).await);
        }
        self.check_metadata(metadata)?;
        for source in &metadata.derived_from {
            if source == &metadata.code || self.versions(source).await?.is_empty() {
                return Err(bad(format!(
                    "derived_from names no other resource: {source}"
                )));
            }
        }
        let existing = self.versions(&metadata.code).await?;
        if let Some(latest) = existing.first()
            && latest.provider_jurisdiction != actor.jurisdiction
            && actor.role != UserRole::ProvinceAdmin
        {
            let reason = format!(
                "resource {} is provided by {}, not {}",
                metadata.code, latest.provider_jurisdiction, actor.jurisdiction
            );
            return Err(self.deny(actor, "resource.register", reason, now).await);
        }
        let version = existing.first().map_or(1, |v| v.version + 1);
        let jurisdiction = existing.first().map_or(actor.jurisdiction.clone(), |v| {
            v.provider_jurisdiction.clone()
        });
        sqlx::query(
            "INSERT INTO resources (code, version, status, provider_jurisdiction, registered_by, updated_at, metadata) \
             VALUES ($1, $2, 'registered', $3, $4, $5, $6)",
        )
        .bind(&metadata.code)
        .bind(version)
        .bind(&jurisdiction)
        .bind(&actor.sub)
        .bind(now as i64)
        .bind(serde_json::to_string(metadata).map_err(|e| bad(e.to_string()))?)
        .execute(&self.pool)
        .await?;
        self.audit(
            &actor.sub,
            "resource.register",
            serde_json::json!({"code": metadata.code, "version": version}),
            now,
        )
        .await?;
        Ok(version)
    }

    /// The version `version` of `code`, checking that `actor` administers its provider.
    async fn administered(
        &self,
        actor: &Claims,
        action: &str,
        code: &str,
        version: Option<i64>,
        now: u64,
    ) -> Result<ResourceVersion, CoordinatorError> {
        if !is_admin(actor.role) {
            let reason = format!("a {} may not {action} resources", actor.role.as_str());
            return Err(self.deny(actor, action, reason, now).await);
        }
        let versions = self.versions(code).await?;
        let found = match version {
            Some(v) => versions.into_iter().find(|r| r.version == v),
            None => versions.into_iter().find(|r| r.status == "published"),
        }
        .ok_or_else(|| CoordinatorError::NotFound(format!("no such version of resource {code}")))?;
        if actor.role == UserRole::PrefectureAdmin
            && found.provider_jurisdiction != actor.jurisdiction
        {
            let reason = format!(
                "resource {code} is provided by {}, not {}",
                found.provider_jurisdiction, actor.jurisdiction
            );
            return Err(self.deny(actor, action, reason, now).await);
        }
        Ok(found)
    }

    async fn set_status(
        &self,
        code: &str,
        version: i64,
        status: &str,
        now: u64,
    ) -> Result<(), CoordinatorError> {
        sqlx::query(
            "UPDATE resources SET status = $1, updated_at = $2 WHERE code = $3 AND version = $4",
        )
        .bind(status)
        .bind(now as i64)
        .bind(code)
        .bind(version)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Review a registered version: approve it for publication, or reject it.
    pub async fn review_resource(
        &self,
        actor: &Claims,
        code: &str,
        version: i64,
        approve: bool,
        note: &str,
        now: u64,
    ) -> Result<(), CoordinatorError> {
        let found = self
            .administered(actor, "review", code, Some(version), now)
            .await?;
        if found.status != "registered" {
            return Err(CoordinatorError::Conflict(format!(
                "{code} v{version} is {}, not registered",
                found.status
            )));
        }
        let status = if approve { "reviewed" } else { "rejected" };
        self.set_status(code, version, status, now).await?;
        self.audit(
            &actor.sub,
            "resource.review",
            serde_json::json!({"code": code, "version": version, "status": status, "note": note}),
            now,
        )
        .await
    }

    /// Publish a reviewed version; the version published before is superseded.
    pub async fn publish_resource(
        &self,
        actor: &Claims,
        code: &str,
        version: i64,
        now: u64,
    ) -> Result<(), CoordinatorError> {
        let found = self
            .administered(actor, "publish", code, Some(version), now)
            .await?;
        if found.status != "reviewed" {
            return Err(CoordinatorError::Conflict(format!(
                "{code} v{version} is {}, not reviewed",
                found.status
            )));
        }
        sqlx::query(
            "UPDATE resources SET status = 'superseded', updated_at = $1 WHERE code = $2 AND status = 'published'",
        )
        .bind(now as i64)
        .bind(code)
        .execute(&self.pool)
        .await?;
        self.set_status(code, version, "published", now).await?;
        self.audit(
            &actor.sub,
            "resource.publish",
            serde_json::json!({"code": code, "version": version}),
            now,
        )
        .await
    }

    /// Retire the published version of a resource.
    pub async fn retire_resource(
        &self,
        actor: &Claims,
        code: &str,
        now: u64,
    ) -> Result<(), CoordinatorError> {
        let found = self.administered(actor, "retire", code, None, now).await?;
        self.set_status(code, found.version, "retired", now).await?;
        self.audit(
            &actor.sub,
            "resource.retire",
            serde_json::json!({"code": code, "version": found.version}),
            now,
        )
        .await
    }

    /// A resource: every version and its lineage.
    pub async fn resource(&self, code: &str) -> Result<ResourceView, CoordinatorError> {
        let versions = self.versions(code).await?;
        let latest = versions
            .first()
            .ok_or_else(|| CoordinatorError::NotFound(format!("no resource {code}")))?;
        let derived_from = latest.metadata.derived_from.clone();
        let mut derived_by = Vec::new();
        for row in sqlx::query("SELECT code, metadata FROM resources WHERE status = 'published'")
            .fetch_all(&self.pool)
            .await?
        {
            let other: String = row.try_get(0)?;
            let metadata: String = row.try_get(1)?;
            let metadata: ResourceMetadata =
                serde_json::from_str(&metadata).map_err(|e| bad(e.to_string()))?;
            if metadata.derived_from.iter().any(|c| c == code) {
                derived_by.push(other);
            }
        }
        Ok(ResourceView {
            code: code.to_owned(),
            versions,
            derived_from,
            derived_by,
        })
    }

    /// Published resources matching a keyword (name, description, tags, fields), a class (its
    /// sub-classes included) and a sharing attribute; each filter optional.
    pub async fn search_resources(
        &self,
        keyword: Option<&str>,
        class: Option<&str>,
        sharing: Option<&str>,
    ) -> Result<Vec<ResourceVersion>, CoordinatorError> {
        let rows =
            sqlx::query("SELECT code FROM resources WHERE status = 'published' ORDER BY code")
                .fetch_all(&self.pool)
                .await?;
        let mut found = Vec::new();
        for row in rows {
            let code: String = row.try_get(0)?;
            let Some(published) = self
                .versions(&code)
                .await?
                .into_iter()
                .find(|v| v.status == "published")
            else {
                continue;
            };
            let m = &published.metadata;
            let keyword_ok = keyword.is_none_or(|k| {
                let k = k.to_lowercase();
                m.name.to_lowercase().contains(&k)
                    || m.description.to_lowercase().contains(&k)
                    || m.tags.iter().any(|t| t.to_lowercase().contains(&k))
                    || m.fields.iter().any(|f| f.name.to_lowercase().contains(&k))
            });
            let class_ok = class.is_none_or(|c| m.classification.starts_with(c));
            let sharing_ok = sharing.is_none_or(|s| m.sharing == s);
            if keyword_ok && class_ok && sharing_ok {
                found.push(published);
            }
        }
        Ok(found)
    }

    /// A prefecture asks for a published resource for its return flow. Unconditionally shared:
    /// granted at once; conditionally shared: pending, to be decided by the owner by the end of
    /// the policy's number of working days; not shared: refused.
    pub async fn subscribe(
        &self,
        actor: &Claims,
        code: &str,
        purpose: &str,
        now: u64,
    ) -> Result<Subscription, CoordinatorError> {
        if !is_admin(actor.role) {
            let reason = format!("a {} may not subscribe to resources", actor.role.as_str());
            return Err(self.deny(actor, "subscription.request", reason, now).await);
        }
        if purpose.trim().is_empty() || purpose.chars().count() > 1000 {
            return Err(bad(
                "a subscription states its purpose (at most 1,000 characters)".into(),
            ));
        }
        let published = self
            .versions(code)
            .await?
            .into_iter()
            .find(|v| v.status == "published")
            .ok_or_else(|| CoordinatorError::NotFound(format!("no published resource {code}")))?;
        let (status, decide_by) = match published.metadata.sharing.as_str() {
            UNCONDITIONAL => ("granted", None),
            CONDITIONAL => {
                let last = self
                    .catalogue
                    .add_working_days(cst_date(now), self.catalogue.decision_working_days);
                ("pending", Some(end_of_day(last) as i64))
            }
            _ => {
                let reason = format!(
                    "resource {code} is not shared ({})",
                    published.metadata.sharing
                );
                return Err(self.deny(actor, "subscription.request", reason, now).await);
            }
        };
        let id: i64 = sqlx::query("SELECT COALESCE(MAX(id), 0) + 1 FROM subscriptions")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        sqlx::query(
            "INSERT INTO subscriptions (id, resource_code, subscriber_jurisdiction, requested_by, purpose, status, requested_at, decide_by, reason) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, '')",
        )
        .bind(id)
        .bind(code)
        .bind(&actor.jurisdiction)
        .bind(&actor.sub)
        .bind(purpose)
        .bind(status)
        .bind(now as i64)
        .bind(decide_by)
        .execute(&self.pool)
        .await?;
        self.audit(
            &actor.sub,
            "subscription.request",
            serde_json::json!({"id": id, "code": code, "status": status, "decide_by": decide_by}),
            now,
        )
        .await?;
        self.subscription(id).await
    }

    /// One subscription.
    pub async fn subscription(&self, id: i64) -> Result<Subscription, CoordinatorError> {
        self.subscriptions_where("id = $1", Some(id))
            .await?
            .pop()
            .ok_or_else(|| CoordinatorError::NotFound(format!("no subscription {id}")))
    }

    async fn subscriptions_where(
        &self,
        condition: &str,
        id: Option<i64>,
    ) -> Result<Vec<Subscription>, CoordinatorError> {
        let sql = format!(
            "SELECT id, resource_code, subscriber_jurisdiction, requested_by, purpose, status, \
             requested_at, decide_by, decided_at, reason FROM subscriptions WHERE {condition} ORDER BY id"
        );
        let mut query = sqlx::query(&sql);
        if let Some(id) = id {
            query = query.bind(id);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                Ok(Subscription {
                    id: row.try_get(0)?,
                    resource_code: row.try_get(1)?,
                    subscriber_jurisdiction: row.try_get(2)?,
                    requested_by: row.try_get(3)?,
                    purpose: row.try_get(4)?,
                    status: row.try_get(5)?,
                    requested_at: row.try_get(6)?,
                    decide_by: row.try_get(7)?,
                    decided_at: row.try_get(8)?,
                    reason: row.try_get(9)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(CoordinatorError::from)
    }

    /// The subscriptions an administrator sees: all (province), or those its prefecture asked for
    /// or must decide.
    pub async fn list_subscriptions(
        &self,
        actor: &Claims,
        now: u64,
    ) -> Result<Vec<Subscription>, CoordinatorError> {
        if !is_admin(actor.role) {
            let reason = format!("a {} may not list subscriptions", actor.role.as_str());
            return Err(self.deny(actor, "subscription.list", reason, now).await);
        }
        let all = self.subscriptions_where("1 = 1", None).await?;
        if actor.role == UserRole::ProvinceAdmin {
            return Ok(all);
        }
        let mut mine = Vec::new();
        for s in all {
            let provider = self
                .versions(&s.resource_code)
                .await?
                .first()
                .map(|v| v.provider_jurisdiction.clone())
                .unwrap_or_default();
            if s.subscriber_jurisdiction == actor.jurisdiction || provider == actor.jurisdiction {
                mine.push(s);
            }
        }
        Ok(mine)
    }

    /// The owner decides a pending (or overdue) subscription.
    pub async fn decide_subscription(
        &self,
        actor: &Claims,
        id: i64,
        grant: bool,
        reason: &str,
        now: u64,
    ) -> Result<Subscription, CoordinatorError> {
        let subscription = if is_admin(actor.role) {
            self.subscription(id).await?
        } else {
            let reason = format!("a {} may not decide subscriptions", actor.role.as_str());
            return Err(self.deny(actor, "subscription.decide", reason, now).await);
        };
        self.administered(
            actor,
            "subscription.decide",
            &subscription.resource_code,
            None,
            now,
        )
        .await?;
        if !matches!(subscription.status.as_str(), "pending" | "overdue") {
            return Err(CoordinatorError::Conflict(format!(
                "subscription {id} is {} already",
                subscription.status
            )));
        }
        if !grant && reason.trim().is_empty() {
            return Err(bad("a refusal states its reason".into()));
        }
        let late = subscription.decide_by.is_some_and(|d| now as i64 > d);
        let status = if grant { "granted" } else { "refused" };
        sqlx::query(
            "UPDATE subscriptions SET status = $1, decided_at = $2, decided_by = $3, reason = $4 WHERE id = $5",
        )
        .bind(status)
        .bind(now as i64)
        .bind(&actor.sub)
        .bind(reason)
        .bind(id)
        .execute(&self.pool)
        .await?;
        self.audit(
            &actor.sub,
            "subscription.decide",
            serde_json::json!({"id": id, "status": status, "late": late}),
            now,
        )
        .await?;
        self.subscription(id).await
    }

    /// Mark every pending subscription past its time limit as overdue (escalated to the
    /// province); returns how many. The API server runs this every few minutes.
    pub async fn escalate_overdue(&self, now: u64) -> Result<u64, CoordinatorError> {
        let overdue = self
            .subscriptions_where("status = 'pending'", None)
            .await?
            .into_iter()
            .filter(|s| s.decide_by.is_some_and(|d| now as i64 > d))
            .collect::<Vec<_>>();
        for s in &overdue {
            sqlx::query(
                "UPDATE subscriptions SET status = 'overdue' WHERE id = $1 AND status = 'pending'",
            )
            .bind(s.id)
            .execute(&self.pool)
            .await?;
            self.audit(
                "coordinator",
                "subscription.overdue",
                serde_json::json!({"id": s.id, "code": s.resource_code, "decide_by": s.decide_by}),
                now,
            )
            .await?;
        }
        Ok(overdue.len() as u64)
    }
}
