//! The scoring policy (data under `policies/scoring/`): indicators with their ranges, directions
//! and weights, the score's base and bounds, and the grade bands; how a node computes an
//! indicator from its records; and the plaintext reference of the whole computation.

use std::collections::HashSet;

use chrono::NaiveDate;
use serde::Deserialize;

use crate::FheError;

/// Whether an indicator raises or lowers the score.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// More is worse (penalties).
    Risk,
    /// More is better (licences in force, commitments).
    Benefit,
}

/// One condition on a record's fields; an indicator's `any_of` holds if one of them holds.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// The field (standard v2.0 name).
    pub field: String,
    /// Holds if the field's text contains any of these.
    #[serde(default)]
    pub contains_any: Vec<String>,
    /// Holds if the field is a number at least this.
    pub at_least: Option<f64>,
}

/// An indicator a node computes for a subject.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Indicator {
    /// Stable id.
    pub id: String,
    /// Name (Chinese).
    pub name: String,
    /// Indicator family (GB/T 23794-2023).
    #[serde(default)]
    pub family: String,
    /// The record category it reads.
    pub category: String,
    /// Risk or benefit.
    pub direction: Direction,
    /// Each node clamps its value to [0, max].
    pub max: u16,
    /// Points per unit.
    pub weight: u16,
    /// Only records decided in the last N days.
    pub within_days: Option<u32>,
    /// Only records meeting one of these.
    #[serde(default)]
    pub any_of: Vec<Condition>,
    /// Sum this numeric field (rounded down) instead of counting records.
    pub sum_field: Option<String>,
    /// Only records whose date in this field is today or later (in force).
    pub valid_until_field: Option<String>,
}

/// A grade band.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Band {
    /// Grade name.
    pub grade: String,
    /// Lowest score of the band.
    pub from: i64,
}

/// The score rule.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreRule {
    /// Score with no records anywhere.
    pub base: i64,
    /// Clamp bounds.
    pub min: i64,
    /// Clamp bounds.
    pub max: i64,
    /// Most nodes that may contribute.
    pub max_nodes: u32,
    /// Bands, best first.
    pub bands: Vec<Band>,
    /// Grade below the last band.
    pub lowest_grade: String,
}

/// A scoring policy.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoringPolicy {
    /// Policy version (nodes and requester must agree).
    pub version: u32,
    /// Score rule.
    pub score: ScoreRule,
    /// Indicators, in the order their ciphertexts travel.
    pub indicators: Vec<Indicator>,
}

/// What an indicator reads of a stored record.
#[derive(Clone, Copy, Debug)]
pub struct RecordFacts<'a> {
    /// Category code.
    pub category: &'a str,
    /// Decision date (`YYYY/MM/DD` or `YYYY-MM-DD`).
    pub decision_date: Option<&'a str>,
    /// The record's non-personal fields.
    pub payload: &'a serde_json::Value,
}

fn parse_date(text: &str) -> Option<NaiveDate> {
    let t = text.trim();
    NaiveDate::parse_from_str(t, "%Y/%m/%d")
        .or_else(|_| NaiveDate::parse_from_str(t, "%Y-%m-%d"))
        .or_else(|_| NaiveDate::parse_from_str(t, "%Y%m%d"))
        .ok()
}

fn field_text<'a>(payload: &'a serde_json::Value, field: &str) -> Option<&'a str> {
    payload.get(field).and_then(|v| v.as_str())
}

fn field_number(payload: &serde_json::Value, field: &str) -> Option<f64> {
    match payload.get(field)? {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl Condition {
    fn holds(&self, payload: &serde_json::Value) -> bool {
        let text_ok = !self.contains_any.is_empty()
            && field_text(payload, &self.field)
                .is_some_and(|t| self.contains_any.iter().any(|c| t.contains(c.as_str())));
        let number_ok = self
            .at_least
            .is_some_and(|limit| field_number(payload, &self.field).is_some_and(|v| v >= limit));
        text_ok || number_ok
    }
}

impl Indicator {
    fn selects(&self, record: &RecordFacts<'_>, today: NaiveDate) -> bool {
        if record.category != self.category {
            return false;
        }
        if let Some(days) = self.within_days {
            let Some(decided) = record.decision_date.and_then(parse_date) else {
                return false;
            };
            if decided > today || (today - decided).num_days() > i64::from(days) {
                return false;
            }
        }
        if let Some(field) = &self.valid_until_field {
            let Some(until) = field_text(record.payload, field).and_then(parse_date) else {
                return false;
            };
            if until < today {
                return false;
            }
        }
        self.any_of.is_empty() || self.any_of.iter().any(|c| c.holds(record.payload))
    }

    /// The indicator over a subject's records, clamped to [0, max].
    pub fn value(&self, records: &[RecordFacts<'_>], today: NaiveDate) -> u16 {
        let selected = records.iter().filter(|r| self.selects(r, today));
        let total: f64 = match &self.sum_field {
            Some(field) => selected
                .map(|r| {
                    field_number(r.payload, field)
                        .filter(|v| v.is_finite() && *v > 0.0)
                        .unwrap_or(0.0)
                })
                .sum(),
            None => selected.count() as f64,
        };
        total.floor().clamp(0.0, f64::from(self.max)) as u16
    }

    /// A node's value as it travels: oriented (risk values as max − value, so that every
    /// contribution is non-negative) and weighted (weights are public policy).
    pub fn contribution(&self, value: u16) -> u16 {
        let value = value.min(self.max);
        let oriented = match self.direction {
            Direction::Benefit => value,
            Direction::Risk => self.max - value,
        };
        oriented * self.weight
    }
}

/// The plaintext meaning of a sum of contributions from `nodes` nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlainResult {
    /// The score, clamped.
    pub score: i64,
    /// The grade.
    pub grade: String,
}

impl ScoringPolicy {
    /// Parse and check a policy (TOML).
    pub fn from_toml(text: &str) -> Result<Self, FheError> {
        let policy: ScoringPolicy =
            toml::from_str(text).map_err(|e| FheError::Policy(e.to_string()))?;
        policy.validate()?;
        Ok(policy)
    }

    /// The policy shipped in `policies/scoring/enterprise.toml`.
    pub fn enterprise() -> Self {
        Self::from_toml(include_str!("../../../policies/scoring/enterprise.toml"))
            .expect("the shipped scoring policy is valid")
    }

    fn validate(&self) -> Result<(), FheError> {
        let bad = |m: String| Err(FheError::Policy(m));
        if self.indicators.is_empty() {
            return bad("a policy needs at least one indicator".into());
        }
        let mut ids = HashSet::new();
        for i in &self.indicators {
            if i.id.is_empty() || !ids.insert(i.id.as_str()) {
                return bad(format!("indicator id {:?} is empty or repeated", i.id));
            }
            if i.max == 0 {
                return bad(format!("indicator {}: max must be at least 1", i.id));
            }
            if i.max.checked_mul(i.weight).is_none() {
                return bad(format!("indicator {}: max × weight exceeds 16 bits", i.id));
            }
            for c in &i.any_of {
                if c.contains_any.is_empty() && c.at_least.is_none() {
                    return bad(format!(
                        "indicator {}: a condition on {} tests nothing",
                        i.id, c.field
                    ));
                }
            }
        }
        let s = &self.score;
        if s.min >= s.max {
            return bad("score min must be below max".into());
        }
        if s.max_nodes == 0 {
            return bad("max_nodes must be at least 1".into());
        }
        if s.bands.is_empty() || s.bands.len() > 3 {
            return bad(
                "between one and three bands (the encrypted grade is one 2-bit block)".into(),
            );
        }
        if s.bands.windows(2).any(|w| w[0].from <= w[1].from) {
            return bad("bands must be listed best first with strictly decreasing `from`".into());
        }
        let per_node: u64 = self
            .indicators
            .iter()
            .map(|i| u64::from(i.max) * u64::from(i.weight))
            .sum();
        if per_node * u64::from(s.max_nodes) > u64::from(u16::MAX) {
            return bad(format!(
                "max_nodes × Σ max·weight = {} does not fit the 16-bit encrypted sum",
                per_node * u64::from(s.max_nodes)
            ));
        }
        Ok(())
    }

    /// Σ max·weight over the risk indicators: what one node's oriented risk contributions add
    /// up to when it has no risk at all.
    fn risk_span(&self) -> i64 {
        self.indicators
            .iter()
            .filter(|i| i.direction == Direction::Risk)
            .map(|i| i64::from(i.max) * i64::from(i.weight))
            .sum()
    }

    /// The largest sum of contributions `nodes` nodes can produce.
    pub fn raw_max(&self, nodes: usize) -> i64 {
        let per_node: i64 = self
            .indicators
            .iter()
            .map(|i| i64::from(i.max) * i64::from(i.weight))
            .sum();
        per_node * nodes as i64
    }

    /// score = raw sum of contributions + offset (before clamping), for `nodes` contributors.
    pub fn offset(&self, nodes: usize) -> i64 {
        self.score.base - self.risk_span() * nodes as i64
    }

    /// The grade of a clamped score.
    pub fn grade_of(&self, score: i64) -> &str {
        self.score
            .bands
            .iter()
            .find(|b| score >= b.from)
            .map(|b| b.grade.as_str())
            .unwrap_or(self.score.lowest_grade.as_str())
    }

    /// The grade for `passed` band thresholds reached (what the encrypted circuit outputs).
    pub fn grade_for_thresholds_passed(&self, passed: usize) -> &str {
        let bands = &self.score.bands;
        if passed == 0 {
            self.score.lowest_grade.as_str()
        } else {
            bands[bands.len() - passed.min(bands.len())].grade.as_str()
        }
    }

    /// The plaintext reference: each node's indicator values (in policy order) to score and grade.
    pub fn plain(&self, values_per_node: &[Vec<u16>]) -> PlainResult {
        let mut score = self.score.base;
        for values in values_per_node {
            for (indicator, value) in self.indicators.iter().zip(values) {
                let v = i64::from((*value).min(indicator.max)) * i64::from(indicator.weight);
                match indicator.direction {
                    Direction::Benefit => score += v,
                    Direction::Risk => score -= v,
                }
            }
        }
        let score = score.clamp(self.score.min, self.score.max);
        PlainResult {
            score,
            grade: self.grade_of(score).to_owned(),
        }
    }
}
