//! The province's governance rules (system D7) and the scenario definitions (system D6), both
//! policy data: `policies/governance.toml` and `policies/scenarios/*.toml`.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use xy_store::{HeldRecord, NodeKeys, Verdict};

use crate::FederationError;

const BUILTIN_GOVERNANCE: &str = include_str!("../../../policies/governance.toml");
const BUILTIN_SCENARIOS: &[(&str, &str)] = &[(
    "xinyidai.toml",
    include_str!("../../../policies/scenarios/xinyidai.toml"),
)];

/// The governance rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GovernancePolicy {
    /// Rules that change a record.
    #[serde(default)]
    pub standardise: Vec<Standardise>,
    /// Rules a record must pass to enter the base store.
    #[serde(default)]
    pub check: Vec<Check>,
}

/// A standardisation rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Standardise {
    /// Rule id.
    pub id: String,
    /// What it does.
    #[serde(default)]
    pub description: String,
    /// Columns it applies to: `source_unit`, `subject_code`, `document_number`.
    pub columns: Vec<String>,
    /// The operation.
    pub op: StandardiseOp,
}

/// What a standardisation rule does to a value.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StandardiseOp {
    /// Remove every space and upper-case (codes).
    UpperTrim,
    /// Remove leading and trailing spaces.
    Trim,
}

/// A check.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// Rule id (in work orders and lineage).
    pub id: String,
    /// What it checks.
    #[serde(default)]
    pub description: String,
    /// The kind of check.
    pub kind: CheckKind,
    /// Categories it applies to (all when empty).
    #[serde(default)]
    pub categories: Vec<String>,
    /// The field (payload field name, or `decision_date`).
    pub field: Option<String>,
    /// A date bound, `YYYY/MM/DD`.
    pub value: Option<String>,
    /// A lower bound (characters).
    pub min: Option<usize>,
    /// An upper bound (numbers).
    pub max: Option<f64>,
    /// The reason given to the source unit, in Chinese.
    pub reason: String,
}

/// The kinds of check.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// The record names its subject (USCC or identity number).
    SubjectPresent,
    /// A payload field has at least `min` characters.
    MinChars,
    /// A numeric payload field is at most `max` (an absent field passes).
    MaxNumber,
    /// A date is not before `value`.
    DateNotBefore,
}

impl GovernancePolicy {
    /// The built-in rules (`policies/governance.toml`).
    pub fn builtin() -> Result<Self, FederationError> {
        Self::parse(BUILTIN_GOVERNANCE, "policies/governance.toml")
    }

    /// Read rules from a file.
    pub fn load(path: &Path) -> Result<Self, FederationError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| FederationError::Policy(format!("{}: {e}", path.display())))?;
        Self::parse(&text, &path.display().to_string())
    }

    fn parse(text: &str, name: &str) -> Result<Self, FederationError> {
        let policy: Self =
            toml::from_str(text).map_err(|e| FederationError::Policy(format!("{name}: {e}")))?;
        for check in &policy.check {
            let missing = match check.kind {
                CheckKind::SubjectPresent => None,
                CheckKind::MinChars if check.field.is_none() || check.min.is_none() => {
                    Some("field and min")
                }
                CheckKind::MaxNumber if check.field.is_none() || check.max.is_none() => {
                    Some("field and max")
                }
                CheckKind::DateNotBefore if check.field.is_none() || check.value.is_none() => {
                    Some("field and value")
                }
                _ => None,
            };
            if let Some(missing) = missing {
                return Err(FederationError::Policy(format!(
                    "{name}: check {} needs {missing}",
                    check.id
                )));
            }
        }
        Ok(policy)
    }

    /// Standardise `record` in place and check it. `keys` open the personal fields when a check
    /// needs the subject's identity number.
    pub fn evaluate(&self, record: &mut HeldRecord, keys: &NodeKeys) -> Verdict {
        let mut verdict = Verdict::default();
        for rule in &self.standardise {
            let mut changed = false;
            for column in &rule.columns {
                let value = match column.as_str() {
                    "source_unit" => Some(&mut record.source_unit),
                    "subject_code" => record.subject_code.as_mut(),
                    "document_number" => Some(&mut record.document_number),
                    _ => None,
                };
                if let Some(value) = value {
                    let new = match rule.op {
                        StandardiseOp::UpperTrim => value
                            .chars()
                            .filter(|c| !c.is_whitespace())
                            .flat_map(char::to_uppercase)
                            .collect(),
                        StandardiseOp::Trim => value.trim().to_owned(),
                    };
                    if new != *value {
                        *value = new;
                        changed = true;
                    }
                }
            }
            if changed {
                verdict.standardised.push(rule.id.clone());
            }
        }
        let payload: Map<String, Value> = serde_json::from_str(&record.payload).unwrap_or_default();
        let text = |field: &str| -> Option<String> {
            if field == "decision_date" {
                return record.decision_date.clone();
            }
            match payload.get(field) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            }
        };
        for check in &self.check {
            if !check.categories.is_empty() && !check.categories.contains(&record.category) {
                continue;
            }
            let field = check.field.as_deref().unwrap_or("");
            let failed = match check.kind {
                CheckKind::SubjectPresent => {
                    record.subject_code.is_none()
                        && xy_store::flows::open_personal(
                            keys,
                            &record.gid,
                            record.personal.as_deref(),
                        )
                        .map(|(_, id)| id.is_none())
                        .unwrap_or(true)
                }
                CheckKind::MinChars => {
                    text(field).map_or(0, |v| v.trim().chars().count()) < check.min.unwrap_or(0)
                }
                CheckKind::MaxNumber => text(field)
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .is_some_and(|v| v > check.max.unwrap_or(f64::INFINITY)),
                CheckKind::DateNotBefore => {
                    text(field).is_some_and(|d| d.as_str() < check.value.as_deref().unwrap_or(""))
                }
            };
            if failed {
                verdict
                    .faults
                    .push((check.id.clone(), check.reason.clone()));
            }
        }
        verdict
    }
}

/// How a scenario shows personal fields.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Masking {
    /// Identity numbers and natural persons' names masked.
    Masked,
    /// Personal fields left out.
    Omit,
}

/// An application scenario (应用场景), as data.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioDefinition {
    /// Store name (lower-case identifier).
    pub name: String,
    /// What it is for.
    #[serde(default)]
    pub title: String,
    /// Categories taken.
    pub categories: Vec<String>,
    /// Statuses taken (default: `active`).
    #[serde(default = "default_statuses")]
    pub statuses: Vec<String>,
    /// Records decided on or after this date only (`YYYY/MM/DD`).
    pub decided_from: Option<String>,
    /// Fields kept (all when empty).
    #[serde(default)]
    pub fields: Vec<String>,
    /// Masking of personal fields.
    pub masking: Masking,
    /// Minutes between extractions while serving.
    #[serde(default = "default_refresh")]
    pub refresh_minutes: u64,
}

fn default_statuses() -> Vec<String> {
    vec!["active".into()]
}
fn default_refresh() -> u64 {
    10
}

impl ScenarioDefinition {
    /// The built-in scenarios (`policies/scenarios/`).
    pub fn builtin() -> Result<Vec<Self>, FederationError> {
        BUILTIN_SCENARIOS
            .iter()
            .map(|(name, text)| {
                toml::from_str(text)
                    .map_err(|e| FederationError::Policy(format!("policies/scenarios/{name}: {e}")))
            })
            .collect()
    }

    /// Read every `*.toml` of a directory.
    pub fn load_dir(dir: &Path) -> Result<Vec<Self>, FederationError> {
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| FederationError::Policy(format!("{}: {e}", dir.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        paths
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| FederationError::Policy(format!("{}: {e}", p.display())))?;
                toml::from_str(&text)
                    .map_err(|e| FederationError::Policy(format!("{}: {e}", p.display())))
            })
            .collect()
    }

    /// What the scenario keeps of `record`: its fields, personal ones masked or left out; `None`
    /// when the record is not (or no longer) part of the scenario.
    pub fn project(&self, record: &HeldRecord, keys: &NodeKeys) -> Option<Value> {
        if !self.categories.contains(&record.category) || !self.statuses.contains(&record.status) {
            return None;
        }
        if let Some(from) = &self.decided_from
            && record
                .decision_date
                .as_deref()
                .is_none_or(|d| d < from.as_str())
        {
            return None;
        }
        let mut fields: Map<String, Value> = serde_json::from_str(&record.payload).ok()?;
        let personal = match self.masking {
            Masking::Masked => {
                xy_store::flows::open_personal(keys, &record.gid, record.personal.as_deref())
                    .ok()
                    .and_then(|(personal, _)| personal)
                    .and_then(|p| serde_json::from_str(&p).ok())
                    .unwrap_or_default()
            }
            Masking::Omit => Map::new(),
        };
        xy_ingest::view::disclose(&mut fields, personal, xy_ingest::view::Disclosure::Masked);
        if !self.fields.is_empty() {
            fields.retain(|k, _| self.fields.contains(k));
        }
        Some(Value::Object(fields))
    }
}
