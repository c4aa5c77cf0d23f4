//! The policy engine of xinyong: pure functions from (record, policy) to decisions, and the policy
//! data they read.
//!
//! Category schemas (fields, rules, legacy v1 names), enumerations and penalty-type synonyms are data
//! under `policies/` (TOML), compiled into a [`PolicySet`]. The built-in set is embedded in the binary;
//! a node can load a corrected set from a directory without a new release. Adding a category such as
//! 红黑名单 or 信用承诺 is a new file under `policies/categories/`, not code.
//!
//! Nothing here does I/O beyond [`PolicySet::load_dir`], and nothing reads the clock: "today" is an
//! argument.

mod category;
pub mod dates;
pub mod identifiers;
mod spec;
pub mod text;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

pub use category::{BusinessKey, Category, Fault, Field, FieldKind, HeaderMapping, Verdict};

/// Errors of loading policies or applying them to an input's structure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A policy file could not be read.
    #[error("cannot read policy file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A policy file is not valid TOML of the expected shape.
    #[error("policy file {path} is malformed: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What the parser said.
        message: String,
    },
    /// A policy is inconsistent (e.g. a rule names a field that does not exist).
    #[error("policy is inconsistent: {0}")]
    Invalid(String),
    /// A rule or setting names a field the category does not have.
    #[error("policy names unknown field {field} (in {context})")]
    UnknownField {
        /// The field name.
        field: String,
        /// Where it was named.
        context: String,
    },
    /// No category with that code exists.
    #[error("unknown category {0:?}")]
    UnknownCategory(String),
    /// The header matches no category.
    #[error("表头无法识别为任何已知数据类别（请用 --category 指定）")]
    UndetectedCategory,
    /// The header matches two categories equally well.
    #[error("表头同时符合数据类别 {0} 与 {1}（请用 --category 指定）")]
    AmbiguousCategory(String, String),
    /// A header names the same column twice.
    #[error("表头列名重复：{0}")]
    DuplicateHeader(String),
    /// A header cell is empty.
    #[error("表头第 {column} 列为空")]
    EmptyHeader {
        /// 1-based column number.
        column: usize,
    },
    /// Two header columns feed the same standard field.
    #[error("表头列 {first} 与 {second} 都对应标准字段 {field}")]
    ConflictingHeaders {
        /// The first column.
        first: String,
        /// The second column.
        second: String,
        /// The standard field both map to.
        field: String,
    },
    /// No header column belongs to the category.
    #[error("表头中没有数据类别 {0} 的任何字段")]
    NoKnownColumns(String),
}

/// The allowed values of an enumeration, looked up for every enumerated field of every row (a fast
/// hasher: std's SipHash showed in the ingest's profile; lookups never insert input).
pub(crate) type EnumSet = HashSet<String, foldhash::fast::RandomState>;

/// Data shared by all categories of a policy set.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) enums: HashMap<String, Arc<EnumSet>>,
    pub(crate) enum_lists: HashMap<String, Vec<String>>,
    pub(crate) penalty_synonyms: HashMap<String, Vec<String>>,
}

/// A compiled set of policies: every category the node accepts.
#[derive(Debug, Clone)]
pub struct PolicySet {
    categories: Vec<Arc<Category>>,
}

const BUILTIN_COMMON: &str = include_str!("../../common.toml");
const BUILTIN_CATEGORIES: &[(&str, &str)] = &[
    (
        "categories/xzcf.toml",
        include_str!("../../categories/xzcf.toml"),
    ),
    (
        "categories/xzxk.toml",
        include_str!("../../categories/xzxk.toml"),
    ),
    (
        "categories/xycn.toml",
        include_str!("../../categories/xycn.toml"),
    ),
    (
        "categories/hhmd.toml",
        include_str!("../../categories/hhmd.toml"),
    ),
];

fn parse<T: serde::de::DeserializeOwned>(path: &str, text: &str) -> Result<T, PolicyError> {
    toml::from_str(text).map_err(|e| PolicyError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

impl PolicySet {
    /// The policies embedded in this build (the files under `policies/` of the repository).
    pub fn builtin() -> Result<Self, PolicyError> {
        let sources: Vec<(String, String)> = BUILTIN_CATEGORIES
            .iter()
            .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
            .collect();
        Self::from_sources(("common.toml", BUILTIN_COMMON), &sources)
    }

    /// Load a policy directory: `common.toml` and every `categories/*.toml`.
    pub fn load_dir(dir: &Path) -> Result<Self, PolicyError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| PolicyError::Read {
                path: p.display().to_string(),
                source,
            })
        };
        let common_path = dir.join("common.toml");
        let common = read(&common_path)?;
        let cat_dir = dir.join("categories");
        let entries = std::fs::read_dir(&cat_dir).map_err(|source| PolicyError::Read {
            path: cat_dir.display().to_string(),
            source,
        })?;
        let mut paths: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        paths.sort();
        let mut sources = Vec::new();
        for p in paths {
            sources.push((p.display().to_string(), read(&p)?));
        }
        Self::from_sources((&common_path.display().to_string(), &common), &sources)
    }

    fn from_sources(
        common: (&str, &str),
        categories: &[(String, String)],
    ) -> Result<Self, PolicyError> {
        let common: spec::CommonFile = parse(common.0, common.1)?;
        let shared = Arc::new(Shared {
            enums: common
                .enums
                .iter()
                .map(|(k, v)| (k.clone(), Arc::new(v.iter().cloned().collect())))
                .collect(),
            enum_lists: common.enums.into_iter().collect(),
            penalty_synonyms: common.penalty_synonyms.into_iter().collect(),
        });
        let mut out: BTreeMap<String, Arc<Category>> = BTreeMap::new();
        for (path, text) in categories {
            let file: spec::CategoryFile = parse(path, text)?;
            let cat = Category::compile(file, shared.clone())?;
            if out.contains_key(&cat.code) {
                return Err(PolicyError::Invalid(format!(
                    "category {} defined twice",
                    cat.code
                )));
            }
            out.insert(cat.code.clone(), Arc::new(cat));
        }
        Ok(Self {
            categories: out.into_values().collect(),
        })
    }

    /// All categories, ordered by code.
    pub fn categories(&self) -> &[Arc<Category>] {
        &self.categories
    }

    /// A category by its code (`xzcf`) or Chinese name (`行政处罚`).
    pub fn category(&self, code_or_name: &str) -> Result<Arc<Category>, PolicyError> {
        self.categories
            .iter()
            .find(|c| c.code == code_or_name || c.name == code_or_name)
            .cloned()
            .ok_or_else(|| PolicyError::UnknownCategory(code_or_name.to_owned()))
    }

    /// Detect the category of an input from its header: the category that knows the most columns
    /// (v2 or legacy v1 names), which must be at least three.
    pub fn detect(&self, headers: &[String]) -> Result<Arc<Category>, PolicyError> {
        let normalised: Vec<String> = headers
            .iter()
            .map(|h| {
                let mut s = text::trim_all(h).to_owned();
                text::to_half_width(&mut s);
                s.to_ascii_uppercase()
            })
            .collect();
        let mut scored: Vec<(usize, &Arc<Category>)> = self
            .categories
            .iter()
            .map(|c| {
                let own = normalised
                    .iter()
                    .filter(|h| h.starts_with(&c.prefix) && c.knows_column(h))
                    .count();
                (own, c)
            })
            .collect();
        scored.sort_by_key(|s| std::cmp::Reverse(s.0));
        match scored.as_slice() {
            [(best, cat), rest @ ..] if *best >= 3 => {
                if let Some((second, other)) = rest.first()
                    && second == best
                {
                    return Err(PolicyError::AmbiguousCategory(
                        cat.code.clone(),
                        other.code.clone(),
                    ));
                }
                Ok((*cat).clone())
            }
            _ => Err(PolicyError::UndetectedCategory),
        }
    }
}
