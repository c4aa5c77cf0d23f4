//! The on-disk form of policy files (TOML), before they are compiled into a [`crate::Category`].

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::FieldKind;

/// `common.toml`: enumerations and penalty-type synonyms shared by all categories.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CommonFile {
    pub(crate) enums: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub(crate) penalty_synonyms: BTreeMap<String, Vec<String>>,
}

/// `categories/<code>.toml`: one record category.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CategoryFile {
    pub(crate) category: CategoryHeader,
    pub(crate) fields: Vec<FieldSpec>,
    #[serde(default)]
    pub(crate) rules: Vec<RuleSpec>,
    #[serde(default)]
    pub(crate) legacy: BTreeMap<String, LegacySpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CategoryHeader {
    pub(crate) code: String,
    pub(crate) name: String,
    pub(crate) prefix: String,
    pub(crate) key_document: String,
    pub(crate) key_subject: Vec<String>,
    pub(crate) key_source_unit: String,
    pub(crate) decision_date: String,
    pub(crate) subject_category: String,
    pub(crate) subject_name: String,
    #[serde(default)]
    pub(crate) status: Option<String>,
    #[serde(default)]
    pub(crate) derive_publicity_end: Option<DeriveSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeriveSpec {
    pub(crate) field: String,
    pub(crate) from: String,
    pub(crate) add_months: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FieldSpec {
    pub(crate) name: String,
    pub(crate) label: String,
    #[serde(default)]
    pub(crate) kind: FieldKind,
    #[serde(default)]
    pub(crate) required: bool,
    #[serde(default)]
    pub(crate) max_len: Option<usize>,
    #[serde(default, rename = "enum")]
    pub(crate) enumeration: Option<String>,
    #[serde(default)]
    pub(crate) not_future: bool,
    #[serde(default)]
    pub(crate) personal: bool,
    #[serde(default)]
    pub(crate) id_type_field: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConditionSpec {
    pub(crate) field: String,
    #[serde(default)]
    pub(crate) equals: Option<String>,
    #[serde(default, rename = "in")]
    pub(crate) one_of: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) contains: Option<String>,
    #[serde(default)]
    pub(crate) contains_any: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum RuleSpec {
    RequiredIf {
        id: String,
        field: String,
        when: ConditionSpec,
        message: String,
    },
    ForbiddenIf {
        id: String,
        field: String,
        when: ConditionSpec,
        message: String,
    },
    DateOrder {
        id: String,
        earlier: String,
        later: String,
        message: String,
    },
    WarnAbove {
        id: String,
        field: String,
        limit: f64,
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum LegacySpec {
    Rename(String),
    Mapped {
        to: String,
        #[serde(default)]
        join: Option<String>,
        #[serde(default)]
        set: BTreeMap<String, String>,
        #[serde(default)]
        prefix: Option<String>,
    },
}
