//! A compiled record category: its fields, rules and legacy names, and the row operations of the
//! ingest pipeline that depend on it: header mapping, v1 → v2 mapping, cleaning and validation.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::NaiveDate;

use crate::dates::{DateError, add_months, format_date, is_standard_layout, parse_date};
use crate::identifiers::{CodeCheck, check_resident_id, check_uscc};
use crate::spec::{CategoryFile, ConditionSpec, LegacySpec, RuleSpec};
use crate::text::{to_half_width, trim_all};
use crate::{PolicyError, Shared};

/// What a field holds, which decides how it is cleaned and checked (`kind` in policy files).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    /// Free text (names, content): trimmed only.
    #[default]
    Text,
    /// A code or number (document numbers, registration numbers): full-width → half-width.
    Code,
    /// A value from an enumeration of the policy.
    Enum,
    /// A unified social credit code (GB 32100).
    Uscc,
    /// An identity document number; a resident identity number is checked per GB 11643.
    IdNumber,
    /// A date, normalised to `YYYY/MM/DD`.
    Date,
    /// An amount in 万元.
    Money,
    /// A `;`-separated list of penalty types.
    PenaltyTypes,
}

/// One field of a category.
#[derive(Debug, Clone)]
pub struct Field {
    /// The standard (v2) field name, e.g. `CF_WSH`.
    pub name: String,
    /// The Chinese label, e.g. 行政处罚决定书文号.
    pub label: String,
    /// How the field is cleaned and checked.
    pub kind: FieldKind,
    /// Whether an empty value is refused.
    pub required: bool,
    /// The maximum length in characters.
    pub max_len: Option<usize>,
    /// Whether the value is personal information (encrypted at rest, masked in output).
    pub personal: bool,
    not_future: bool,
    enumeration: Option<Arc<crate::EnumSet>>,
    enum_name: Option<String>,
    id_type_field: Option<usize>,
}

#[derive(Debug, Clone)]
enum Condition {
    Equals(usize, String),
    OneOf(usize, Vec<String>),
    ContainsToken(usize, Vec<String>),
}

impl Condition {
    fn holds(&self, values: &[String]) -> bool {
        match self {
            Self::Equals(f, v) => values[*f] == *v,
            Self::OneOf(f, vs) => vs.iter().any(|v| values[*f] == *v),
            Self::ContainsToken(f, tokens) => values[*f]
                .split(';')
                .any(|t| tokens.iter().any(|want| t == want)),
        }
    }
}

#[derive(Debug, Clone)]
enum Rule {
    RequiredIf {
        id: String,
        field: usize,
        when: Condition,
        message: String,
    },
    ForbiddenIf {
        id: String,
        field: usize,
        when: Condition,
        message: String,
    },
    DateOrder {
        id: String,
        earlier: usize,
        later: usize,
        message: String,
    },
    WarnAbove {
        id: String,
        field: usize,
        limit: f64,
        message: String,
    },
}

#[derive(Debug, Clone)]
enum LegacyMode {
    Rename,
    Join(String),
    SetAlso(Vec<(usize, String)>),
    Prefixed(String),
}

#[derive(Debug, Clone)]
struct LegacyTarget {
    field: usize,
    mode: LegacyMode,
}

/// A record category (e.g. 行政处罚 `xzcf`), compiled from its policy file.
#[derive(Debug)]
pub struct Category {
    /// Short code, e.g. `xzcf`.
    pub code: String,
    /// Chinese name, e.g. 行政处罚.
    pub name: String,
    /// Field-name prefix, e.g. `CF_`.
    pub prefix: String,
    /// The fields in standard order.
    pub fields: Vec<Field>,
    index: HashMap<String, usize>,
    rules: Vec<Rule>,
    legacy: HashMap<String, LegacyTarget>,
    key_document: usize,
    key_subject: Vec<usize>,
    key_source_unit: usize,
    decision_date: usize,
    subject_category: usize,
    subject_name: usize,
    status: Option<usize>,
    derive_publicity_end: Option<(usize, usize, u32)>,
    shared: Arc<Shared>,
}

/// A fault that refuses a row: the field at fault, the rule that caught it and a reason in Chinese.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The standard name of the field at fault.
    pub field: String,
    /// The rule id, e.g. `required`, `uscc`, `CF-FINE-REQUIRED`.
    pub rule: String,
    /// A human-readable reason in Chinese.
    pub reason: String,
}

/// The outcome of validating one row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Faults: any fault refuses the row.
    pub faults: Vec<Fault>,
    /// Warnings: the row is kept, the warning reported.
    pub warnings: Vec<String>,
}

impl Verdict {
    /// Whether the row is accepted.
    pub fn is_valid(&self) -> bool {
        self.faults.is_empty()
    }
}

/// How the columns of an input map onto a category's fields.
#[derive(Debug, Clone)]
pub struct HeaderMapping {
    columns: Vec<Option<LegacyTarget>>,
    /// Columns that belong to no field of the category (ignored, reported once per batch).
    pub unknown_columns: Vec<String>,
    /// Whether any legacy (v1) field name was found.
    pub legacy: bool,
}

impl HeaderMapping {
    /// Number of columns of the input.
    pub fn width(&self) -> usize {
        self.columns.len()
    }
}

/// The business key of a record: dedup is by (category, document number, subject, source unit).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BusinessKey<'a> {
    /// The decision document number.
    pub document: &'a str,
    /// The subject code: USCC, or the identity number of a natural person.
    pub subject: &'a str,
    /// The source unit's USCC.
    pub source_unit: &'a str,
}

fn resolve(index: &HashMap<String, usize>, name: &str, ctx: &str) -> Result<usize, PolicyError> {
    index
        .get(name)
        .copied()
        .ok_or_else(|| PolicyError::UnknownField {
            field: name.to_owned(),
            context: ctx.to_owned(),
        })
}

impl Category {
    pub(crate) fn compile(file: CategoryFile, shared: Arc<Shared>) -> Result<Self, PolicyError> {
        let header = file.category;
        let code = header.code.clone();
        let mut index = HashMap::new();
        for (i, f) in file.fields.iter().enumerate() {
            if index.insert(f.name.clone(), i).is_some() {
                return Err(PolicyError::Invalid(format!(
                    "{code}: field {} twice",
                    f.name
                )));
            }
        }
        let mut fields = Vec::with_capacity(file.fields.len());
        for f in &file.fields {
            let kind = f.kind;
            let enumeration = match &f.enumeration {
                Some(name) => Some(shared.enums.get(name).cloned().ok_or_else(|| {
                    PolicyError::Invalid(format!(
                        "{code}: field {} uses unknown enum {name}",
                        f.name
                    ))
                })?),
                None if matches!(kind, FieldKind::Enum | FieldKind::PenaltyTypes) => {
                    return Err(PolicyError::Invalid(format!(
                        "{code}: field {} needs an enum",
                        f.name
                    )));
                }
                None => None,
            };
            let id_type_field = f
                .id_type_field
                .as_deref()
                .map(|n| resolve(&index, n, &f.name))
                .transpose()?;
            fields.push(Field {
                name: f.name.clone(),
                label: f.label.clone(),
                kind,
                required: f.required,
                max_len: f.max_len,
                personal: f.personal,
                not_future: f.not_future,
                enumeration,
                enum_name: f.enumeration.clone(),
                id_type_field,
            });
        }
        let condition = |c: &ConditionSpec| -> Result<Condition, PolicyError> {
            let f = resolve(&index, &c.field, "when")?;
            Ok(match (&c.equals, &c.one_of, &c.contains, &c.contains_any) {
                (Some(v), None, None, None) => Condition::Equals(f, v.clone()),
                (None, Some(vs), None, None) => Condition::OneOf(f, vs.clone()),
                (None, None, Some(t), None) => Condition::ContainsToken(f, vec![t.clone()]),
                (None, None, None, Some(ts)) => Condition::ContainsToken(f, ts.clone()),
                _ => {
                    return Err(PolicyError::Invalid(format!(
                        "{code}: a condition on {} needs exactly one of equals, in, contains, contains_any",
                        c.field
                    )));
                }
            })
        };
        let mut rules = Vec::new();
        for r in &file.rules {
            rules.push(match r {
                RuleSpec::RequiredIf {
                    id,
                    field,
                    when,
                    message,
                } => Rule::RequiredIf {
                    id: id.clone(),
                    field: resolve(&index, field, id)?,
                    when: condition(when)?,
                    message: message.clone(),
                },
                RuleSpec::ForbiddenIf {
                    id,
                    field,
                    when,
                    message,
                } => Rule::ForbiddenIf {
                    id: id.clone(),
                    field: resolve(&index, field, id)?,
                    when: condition(when)?,
                    message: message.clone(),
                },
                RuleSpec::DateOrder {
                    id,
                    earlier,
                    later,
                    message,
                } => Rule::DateOrder {
                    id: id.clone(),
                    earlier: resolve(&index, earlier, id)?,
                    later: resolve(&index, later, id)?,
                    message: message.clone(),
                },
                RuleSpec::WarnAbove {
                    id,
                    field,
                    limit,
                    message,
                } => Rule::WarnAbove {
                    id: id.clone(),
                    field: resolve(&index, field, id)?,
                    limit: *limit,
                    message: message.clone(),
                },
            });
        }
        let mut legacy = HashMap::new();
        for (old, spec) in &file.legacy {
            let target = match spec {
                LegacySpec::Rename(to) => LegacyTarget {
                    field: resolve(&index, to, old)?,
                    mode: LegacyMode::Rename,
                },
                LegacySpec::Mapped {
                    to,
                    join,
                    set,
                    prefix,
                } => {
                    let field = resolve(&index, to, old)?;
                    let mode = match (join, set.is_empty(), prefix) {
                        (Some(sep), true, None) => LegacyMode::Join(sep.clone()),
                        (None, false, None) => LegacyMode::SetAlso(
                            set.iter()
                                .map(|(k, v)| Ok((resolve(&index, k, old)?, v.clone())))
                                .collect::<Result<_, PolicyError>>()?,
                        ),
                        (None, true, Some(p)) => LegacyMode::Prefixed(p.clone()),
                        (None, true, None) => LegacyMode::Rename,
                        _ => {
                            return Err(PolicyError::Invalid(format!(
                                "{code}: legacy {old} takes one of join, set, prefix"
                            )));
                        }
                    };
                    LegacyTarget { field, mode }
                }
            };
            legacy.insert(old.clone(), target);
        }
        let key_subject = header
            .key_subject
            .iter()
            .map(|n| resolve(&index, n, "key_subject"))
            .collect::<Result<Vec<_>, _>>()?;
        let derive_publicity_end = header
            .derive_publicity_end
            .as_ref()
            .map(|d| {
                Ok::<_, PolicyError>((
                    resolve(&index, &d.field, "derive")?,
                    resolve(&index, &d.from, "derive")?,
                    d.add_months,
                ))
            })
            .transpose()?;
        Ok(Self {
            key_document: resolve(&index, &header.key_document, "key_document")?,
            key_source_unit: resolve(&index, &header.key_source_unit, "key_source_unit")?,
            decision_date: resolve(&index, &header.decision_date, "decision_date")?,
            subject_category: resolve(&index, &header.subject_category, "subject_category")?,
            subject_name: resolve(&index, &header.subject_name, "subject_name")?,
            status: header
                .status
                .as_deref()
                .map(|s| resolve(&index, s, "status"))
                .transpose()?,
            key_subject,
            derive_publicity_end,
            code,
            name: header.name,
            prefix: header.prefix,
            fields,
            index,
            rules,
            legacy,
            shared,
        })
    }

    /// The index of a field by its standard name.
    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// Whether `name` is a v2 field name or a legacy (v1) name of this category.
    pub fn knows_column(&self, name: &str) -> bool {
        self.index.contains_key(name) || self.legacy.contains_key(name)
    }

    /// The index of the decision date field.
    pub fn decision_date_field(&self) -> usize {
        self.decision_date
    }

    /// The index of the subject category field (法人及非法人组织 / 自然人 / 个体工商户).
    pub fn subject_category_field(&self) -> usize {
        self.subject_category
    }

    /// The index of the subject name field.
    pub fn subject_name_field(&self) -> usize {
        self.subject_name
    }

    /// The index of the record status field, if the category has one.
    pub fn status_field(&self) -> Option<usize> {
        self.status
    }

    /// The index of the source unit code field.
    pub fn source_unit_field(&self) -> usize {
        self.key_source_unit
    }

    /// Map the header of an input onto this category. Duplicate headers and two columns that feed the
    /// same field are errors of the file; columns the category does not know are reported.
    pub fn map_header(&self, headers: &[String]) -> Result<HeaderMapping, PolicyError> {
        let mut seen = HashSet::new();
        let mut fed_by: HashMap<usize, String> = HashMap::new();
        let mut columns = Vec::with_capacity(headers.len());
        let mut unknown_columns = Vec::new();
        let mut legacy = false;
        for raw in headers {
            let name = normalise_header(raw);
            if name.is_empty() {
                return Err(PolicyError::EmptyHeader {
                    column: columns.len() + 1,
                });
            }
            if !seen.insert(name.clone()) {
                return Err(PolicyError::DuplicateHeader(name));
            }
            let target = if let Some(&i) = self.index.get(&name) {
                Some(LegacyTarget {
                    field: i,
                    mode: LegacyMode::Rename,
                })
            } else if let Some(t) = self.legacy.get(&name) {
                legacy = true;
                Some(t.clone())
            } else {
                unknown_columns.push(name.clone());
                None
            };
            if let Some(t) = &target {
                // Join and prefix modes are meant to share a field; a plain rename is not.
                if matches!(t.mode, LegacyMode::Rename | LegacyMode::SetAlso(_))
                    && let Some(other) = fed_by.insert(t.field, name.clone())
                {
                    return Err(PolicyError::ConflictingHeaders {
                        first: other,
                        second: name,
                        field: self.fields[t.field].name.clone(),
                    });
                }
            }
            columns.push(target);
        }
        let mapped = columns.iter().filter(|c| c.is_some()).count();
        if mapped == 0 {
            return Err(PolicyError::NoKnownColumns(self.code.clone()));
        }
        Ok(HeaderMapping {
            columns,
            unknown_columns,
            legacy,
        })
    }

    /// Map one input row (its cells in column order) onto the category's fields (v1 → v2).
    /// Cells beyond the header are ignored; the caller reports a width mismatch.
    pub fn map_row<'a>(
        &self,
        mapping: &HeaderMapping,
        cells: impl IntoIterator<Item = &'a str>,
    ) -> Vec<String> {
        let mut values = Vec::new();
        self.map_row_into(mapping, cells, &mut values);
        values
    }

    /// [`Category::map_row`] into a reused buffer: its strings keep their capacity across rows.
    pub fn map_row_into<'a>(
        &self,
        mapping: &HeaderMapping,
        cells: impl IntoIterator<Item = &'a str>,
        values: &mut Vec<String>,
    ) {
        values.resize_with(self.fields.len(), String::new);
        values.iter_mut().for_each(String::clear);
        // Values set by a legacy `set`, applied after the row so that an explicit column wins.
        let mut defaults: Vec<(usize, &str)> = Vec::new();
        for (col, cell) in mapping.columns.iter().zip(cells) {
            let Some(target) = col else { continue };
            let cell = trim_all(cell);
            if cell.is_empty() {
                continue;
            }
            let slot = &mut values[target.field];
            match &target.mode {
                LegacyMode::Rename => slot.push_str(cell),
                LegacyMode::SetAlso(also) => {
                    slot.push_str(cell);
                    defaults.extend(also.iter().map(|(f, v)| (*f, v.as_str())));
                }
                LegacyMode::Join(sep) => {
                    if !slot.is_empty() {
                        slot.push_str(sep);
                    }
                    slot.push_str(cell);
                }
                LegacyMode::Prefixed(prefix) => {
                    if !slot.is_empty() {
                        slot.push_str("; ");
                    }
                    slot.push_str(prefix);
                    slot.push_str(cell);
                }
            }
        }
        for (f, v) in defaults {
            if values[f].is_empty() {
                values[f].push_str(v);
            }
        }
    }

    /// Clean a mapped row in place: trim, full-width → half-width in codes, numbers and dates, date
    /// normalisation, upper-case check characters, penalty-type normalisation, derived fields.
    pub fn clean(&self, values: &mut [String]) {
        for (field, value) in self.fields.iter().zip(values.iter_mut()) {
            trim_in_place(value);
            if value.is_empty() {
                continue;
            }
            match field.kind {
                FieldKind::Text => {}
                FieldKind::Code | FieldKind::Enum => to_half_width(value),
                FieldKind::Uscc | FieldKind::IdNumber => {
                    to_half_width(value);
                    value.make_ascii_uppercase();
                }
                FieldKind::Date => {
                    to_half_width(value);
                    // Already in the standard layout: nothing to normalise (a day that does not
                    // exist is left for validation to reject, as in any layout).
                    if is_standard_layout(value) {
                        continue;
                    }
                    if let Ok(d) = parse_date(value) {
                        let formatted = format_date(d);
                        if *value != formatted {
                            *value = formatted;
                        }
                    }
                }
                FieldKind::Money => {
                    to_half_width(value);
                    if value.contains(',') {
                        value.retain(|c| c != ',');
                    }
                }
                FieldKind::PenaltyTypes => {
                    if let Some(normalised) = self.normalise_penalty_types(value) {
                        *value = normalised;
                    }
                }
            }
        }
        if let Some((target, from, months)) = self.derive_publicity_end
            && values[target].is_empty()
            && let Ok(d) = parse_date(&values[from])
        {
            values[target] = format_date(add_months(d, months));
        }
    }

    fn normalise_penalty_types(&self, value: &str) -> Option<String> {
        let synonyms = &self.shared.penalty_synonyms;
        if let Some(expanded) = synonyms.get(value) {
            return Some(expanded.join(";"));
        }
        let simple = !value.contains(['；', ',', '，', '、', ' ']);
        if simple
            && value
                .split(';')
                .all(|t| !t.is_empty() && !synonyms.contains_key(t))
        {
            // Already in normal form: leave it, and spare an allocation.
            let mut tokens = value.split(';');
            let mut seen = Vec::new();
            if tokens.all(|t| {
                let fresh = !seen.contains(&t);
                seen.push(t);
                fresh
            }) {
                return None;
            }
        }
        let mut out: Vec<String> = Vec::new();
        for token in value.split([';', '；', ',', '，', '、']) {
            let token = trim_all(token);
            if token.is_empty() {
                continue;
            }
            let expanded: Vec<String> = match synonyms.get(token) {
                Some(list) => list.clone(),
                None => vec![token.to_owned()],
            };
            for t in expanded {
                if !out.contains(&t) {
                    out.push(t);
                }
            }
        }
        Some(out.join(";"))
    }

    /// Validate a cleaned row against the category's fields and rules. `today` is the date against
    /// which "not in the future" is judged.
    pub fn validate(&self, values: &[String], today: NaiveDate) -> Verdict {
        let mut verdict = Verdict::default();
        for (i, field) in self.fields.iter().enumerate() {
            self.check_field(i, field, &values[i], values, today, &mut verdict);
        }
        for rule in &self.rules {
            match rule {
                Rule::RequiredIf {
                    id,
                    field,
                    when,
                    message,
                } => {
                    if values[*field].is_empty() && when.holds(values) {
                        self.fault(&mut verdict, *field, id, message.clone());
                    }
                }
                Rule::ForbiddenIf {
                    id,
                    field,
                    when,
                    message,
                } => {
                    if !values[*field].is_empty() && when.holds(values) {
                        self.fault(&mut verdict, *field, id, message.clone());
                    }
                }
                Rule::DateOrder {
                    id,
                    earlier,
                    later,
                    message,
                } => {
                    if let (Ok(a), Ok(b)) =
                        (parse_date(&values[*earlier]), parse_date(&values[*later]))
                        && b < a
                    {
                        self.fault(&mut verdict, *later, id, message.clone());
                        if !verdict
                            .faults
                            .iter()
                            .any(|f| f.field == self.fields[*earlier].name)
                        {
                            verdict.faults.push(Fault {
                                field: self.fields[*earlier].name.clone(),
                                rule: id.clone(),
                                reason: message.clone(),
                            });
                        }
                    }
                }
                Rule::WarnAbove {
                    id,
                    field,
                    limit,
                    message,
                } => {
                    if let Ok(v) = values[*field].parse::<f64>()
                        && v > *limit
                    {
                        verdict
                            .warnings
                            .push(format!("{}：{message}（{id}）", self.fields[*field].name));
                    }
                }
            }
        }
        verdict
    }

    fn fault(&self, verdict: &mut Verdict, field: usize, rule: &str, reason: String) {
        let f = &self.fields[field];
        verdict.faults.push(Fault {
            field: f.name.clone(),
            rule: rule.to_owned(),
            reason: format!("{}（{}）：{reason}", f.name, f.label),
        });
    }

    fn check_field(
        &self,
        index: usize,
        field: &Field,
        value: &str,
        values: &[String],
        today: NaiveDate,
        verdict: &mut Verdict,
    ) {
        if value.is_empty() {
            if field.required {
                self.fault(verdict, index, "required", "必填字段为空".into());
            }
            return;
        }
        if value.contains('\u{FFFD}') {
            self.fault(
                verdict,
                index,
                "encoding",
                "含有无法解码的字符，请检查文件编码（UTF-8 或 GBK）".into(),
            );
            return;
        }
        if let Some(max) = field.max_len {
            let len = value.chars().count();
            if len > max {
                self.fault(
                    verdict,
                    index,
                    "max_len",
                    format!("长度 {len} 超过上限 {max}"),
                );
                return;
            }
        }
        match field.kind {
            FieldKind::Text | FieldKind::Code => {}
            FieldKind::Enum => {
                if let Some(set) = &field.enumeration
                    && !set.contains(value)
                {
                    let name = field.enum_name.as_deref().unwrap_or_default();
                    let mut allowed: Vec<&String> = self.shared.enum_lists[name].iter().collect();
                    allowed.truncate(8);
                    let allowed: Vec<&str> = allowed.iter().map(|s| s.as_str()).collect();
                    self.fault(
                        verdict,
                        index,
                        "enum",
                        format!("取值「{value}」不在允许范围内（{}）", allowed.join("/")),
                    );
                }
            }
            FieldKind::PenaltyTypes => {
                if let Some(set) = &field.enumeration
                    && let Some(bad) = value.split(';').find(|t| !set.contains(*t))
                {
                    self.fault(
                        verdict,
                        index,
                        "enum",
                        format!("处罚类别「{bad}」不在允许范围内"),
                    );
                }
            }
            FieldKind::Uscc => match check_uscc(value) {
                CodeCheck::Valid => {}
                CodeCheck::ValidWithWarning(w) => {
                    verdict.warnings.push(format!("{}：{w}", field.name))
                }
                CodeCheck::Invalid(reason) => self.fault(verdict, index, "uscc", reason.into()),
            },
            FieldKind::IdNumber => {
                let id_type = field
                    .id_type_field
                    .map(|f| values[f].as_str())
                    .unwrap_or("");
                let is_resident = id_type == "身份证" || (id_type.is_empty() && value.len() == 18);
                if is_resident {
                    match check_resident_id(value, today) {
                        CodeCheck::Valid => {}
                        CodeCheck::ValidWithWarning(w) => {
                            verdict.warnings.push(format!("{}：{w}", field.name))
                        }
                        CodeCheck::Invalid(reason) => {
                            self.fault(verdict, index, "resident_id", reason.into())
                        }
                    }
                }
            }
            FieldKind::Date => match parse_date(value) {
                Ok(d) => {
                    if field.not_future && d > today {
                        self.fault(
                            verdict,
                            index,
                            "not_future",
                            format!("日期 {value} 晚于今天"),
                        );
                    }
                }
                Err(DateError::Format) => {
                    self.fault(
                        verdict,
                        index,
                        "date_format",
                        format!("日期「{value}」格式应为 YYYY/MM/DD"),
                    );
                }
                Err(DateError::NotReal) => {
                    self.fault(
                        verdict,
                        index,
                        "date_real",
                        format!("日期「{value}」不是真实日期"),
                    );
                }
            },
            FieldKind::Money => {
                let ok = value.bytes().all(|c| c.is_ascii_digit() || c == b'.')
                    && value.bytes().filter(|&c| c == b'.').count() <= 1
                    && value.bytes().any(|c| c.is_ascii_digit());
                if !ok {
                    self.fault(
                        verdict,
                        index,
                        "money",
                        format!("金额「{value}」应为非负数字（单位：万元）"),
                    );
                }
            }
        }
    }

    /// The business key of a cleaned row.
    pub fn business_key<'a>(&self, values: &'a [String]) -> BusinessKey<'a> {
        let subject = self
            .key_subject
            .iter()
            .map(|&i| values[i].as_str())
            .find(|v| !v.is_empty())
            .unwrap_or("");
        BusinessKey {
            document: &values[self.key_document],
            subject,
            source_unit: &values[self.key_source_unit],
        }
    }

    /// The subject's public code (USCC), if the row has one.
    pub fn subject_uscc<'a>(&self, values: &'a [String]) -> Option<&'a str> {
        self.key_subject
            .iter()
            .map(|&i| (&self.fields[i], values[i].as_str()))
            .find(|(f, v)| f.kind == FieldKind::Uscc && !v.is_empty())
            .map(|(_, v)| v)
    }

    /// The personal fields that identify a subject (its identity number), in the order the
    /// business key tries them: a stored record's personal fields name the subject by these.
    pub fn subject_id_fields(&self) -> impl Iterator<Item = &str> {
        self.key_subject
            .iter()
            .map(|&i| &self.fields[i])
            .filter(|f| f.personal)
            .map(|f| f.name.as_str())
    }

    /// The subject's personal identity number, if the row names a person.
    pub fn subject_id_number<'a>(&self, values: &'a [String]) -> Option<&'a str> {
        self.key_subject
            .iter()
            .map(|&i| (&self.fields[i], values[i].as_str()))
            .find(|(f, v)| f.personal && !v.is_empty())
            .map(|(_, v)| v)
    }
}

/// Trim like [`trim_all`], in place, without reallocating.
fn trim_in_place(value: &mut String) {
    let trimmed = trim_all(value);
    if trimmed.len() == value.len() {
        return;
    }
    let start = trimmed.as_ptr() as usize - value.as_ptr() as usize;
    let end = start + trimmed.len();
    value.truncate(end);
    value.drain(..start);
}

fn normalise_header(raw: &str) -> String {
    let mut name = trim_all(raw.trim_start_matches('\u{feff}')).to_owned();
    to_half_width(&mut name);
    name.make_ascii_uppercase();
    name
}
