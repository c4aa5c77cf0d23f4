//! The CPU stage of ingest for one row: v1 → v2 mapping, cleaning, validation, and for a valid row
//! the stored form: keyed hashes, the payload and the SM4-sealed personal fields.

use chrono::NaiveDate;
use xy_policy::dates::parse_date;
use xy_policy::{Category, HeaderMapping};
use xy_store::{NewRecord, NodeKeys, RecordFields, RowFault};

use std::sync::Arc;

use xy_policy::PolicySet;

use crate::IngestError;
use crate::source::{RowError, RowSource};

/// A row after the CPU stage.
#[derive(Debug)]
// Valid rows are the common case: boxing their record would cost an allocation per row.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Prepared {
    Valid {
        row: u64,
        record: NewRecord,
        warnings: Vec<String>,
    },
    Rejected {
        row: u64,
        faults: Vec<RowFault>,
        warnings: Vec<String>,
    },
}

/// The CPU stage over one input: its source, category and header mapping, and the buffers reused
/// across rows. Yields one prepared row per data row, in input order.
pub(crate) struct PreparedRows<'s> {
    source: Box<dyn RowSource + 's>,
    category: Arc<Category>,
    mapping: HeaderMapping,
    keys: NodeKeys,
    today: NaiveDate,
    source_unit: Option<String>,
    row: u64,
    cells: Vec<String>,
    buffers: RowBuffers,
    rng: rand::rngs::ThreadRng,
}

impl<'s> PreparedRows<'s> {
    /// Detect (or look up) the category from the source's header and map the header onto it.
    pub(crate) fn new(
        source: Box<dyn RowSource + 's>,
        policies: &PolicySet,
        category: Option<&str>,
        keys: NodeKeys,
        today: NaiveDate,
        source_unit: Option<String>,
    ) -> Result<Self, IngestError> {
        let category = match category {
            Some(c) => policies.category(c)?,
            None => policies.detect(source.headers())?,
        };
        let mapping = category.map_header(source.headers())?;
        Ok(Self {
            source,
            category,
            mapping,
            keys,
            today,
            source_unit,
            row: 0,
            cells: Vec::new(),
            buffers: RowBuffers::default(),
            rng: rand::rng(),
        })
    }

    pub(crate) fn category(&self) -> &Arc<Category> {
        &self.category
    }

    pub(crate) fn mapping(&self) -> &HeaderMapping {
        &self.mapping
    }

    pub(crate) fn describe(&self) -> String {
        self.source.describe()
    }

    /// The next row, prepared or rejected; an error of the whole input; or `None` at the end.
    pub(crate) fn next_prepared(&mut self) -> Option<Result<Prepared, IngestError>> {
        let read = match self.source.next_row(&mut self.cells)? {
            Ok(read) => read,
            Err(e) => return Some(Err(e)),
        };
        self.row += 1;
        // JSON lines grow their header as new keys appear.
        if self.source.headers().len() != self.mapping.width() {
            match self.category.map_header(self.source.headers()) {
                Ok(mapping) => self.mapping = mapping,
                Err(e) => return Some(Err(e.into())),
            }
        }
        let ctx = RowContext {
            category: &self.category,
            keys: &self.keys,
            today: self.today,
            source_unit: self.source_unit.as_deref(),
        };
        Some(Ok(match read {
            Ok(()) => ctx.prepare(
                self.row,
                &self.mapping,
                &self.cells,
                &mut self.buffers,
                &mut self.rng,
            ),
            Err(e) => ctx.reject_unreadable(self.row, e),
        }))
    }
}

/// Buffers reused from row to row: the mapped values, and the payload and personal objects of a
/// record before they are copied into it.
#[derive(Default)]
struct RowBuffers {
    values: Vec<String>,
    payload: String,
    personal: String,
}

struct RowContext<'a> {
    category: &'a Category,
    keys: &'a NodeKeys,
    today: NaiveDate,
    source_unit: Option<&'a str>,
}

impl RowContext<'_> {
    fn reject_unreadable(&self, row: u64, error: RowError) -> Prepared {
        let field = error
            .column
            .as_deref()
            .map(|c| {
                let upper = c.trim().to_ascii_uppercase();
                if self.category.field_index(&upper).is_some() {
                    upper
                } else {
                    c.to_owned()
                }
            })
            .unwrap_or_default();
        Prepared::Rejected {
            row,
            faults: vec![RowFault {
                field,
                rule: error.rule.to_owned(),
                reason: error.reason,
            }],
            warnings: Vec::new(),
        }
    }

    fn prepare(
        &self,
        row: u64,
        mapping: &HeaderMapping,
        cells: &[String],
        buffers: &mut RowBuffers,
        rng: &mut impl rand::RngCore,
    ) -> Prepared {
        let cat = self.category;
        let RowBuffers {
            values,
            payload,
            personal,
        } = buffers;
        cat.map_row_into(mapping, cells.iter().map(String::as_str), values);
        let values = &mut values[..];
        cat.clean(values);
        let su_field = cat.source_unit_field();
        if let Some(su) = self.source_unit
            && values[su_field].is_empty()
        {
            su.clone_into(&mut values[su_field]);
        }
        let verdict = cat.validate(values, self.today);
        let mut faults: Vec<RowFault> = verdict
            .faults
            .into_iter()
            .map(|f| RowFault {
                field: f.field,
                rule: f.rule,
                reason: f.reason,
            })
            .collect();
        if let Some(su) = self.source_unit
            && !values[su_field].is_empty()
            && values[su_field] != su
        {
            let f = &cat.fields[su_field];
            faults.push(RowFault {
                field: f.name.clone(),
                rule: "source_unit_mismatch".into(),
                reason: format!(
                    "{}（{}）：{} 与本批次声明的来源单位 {su} 不一致",
                    f.name, f.label, values[su_field]
                ),
            });
        }
        if !faults.is_empty() {
            return Prepared::Rejected {
                row,
                faults,
                warnings: verdict.warnings,
            };
        }
        Prepared::Valid {
            row,
            record: self.record(values, payload, personal, rng),
            warnings: verdict.warnings,
        }
    }

    fn record(
        &self,
        values: &[String],
        payload: &mut String,
        personal: &mut String,
        rng: &mut impl rand::RngCore,
    ) -> NewRecord {
        let cat = self.category;
        let key = cat.business_key(values);
        let key_hash = self.keys.keyed_hash(&[
            b"business-key",
            cat.code.as_bytes(),
            key.document.as_bytes(),
            key.subject.as_bytes(),
            key.source_unit.as_bytes(),
        ]);
        // Non-personal fields go to the payload, personal ones to a separate object that is sealed.
        payload.clear();
        personal.clear();
        for (field, value) in cat.fields.iter().zip(values) {
            if value.is_empty() {
                continue;
            }
            let out = if field.personal {
                &mut *personal
            } else {
                &mut *payload
            };
            out.push(if out.is_empty() { '{' } else { ',' });
            push_json_str(out, &field.name);
            out.push(':');
            push_json_str(out, value);
        }
        close_object(payload);
        let content_hash = self
            .keys
            .fingerprint(&[payload.as_bytes(), personal.as_bytes()]);
        let sealed = (!personal.is_empty()).then(|| {
            close_object(personal);
            self.keys
                .seal(key_hash.as_bytes(), personal.as_bytes(), rng)
        });
        let decision = parse_date(&values[cat.decision_date_field()]).ok();
        let status = match cat.status_field().map(|i| values[i].as_str()) {
            Some("2") => "inactive",
            _ => "active",
        };
        let decision_date = decision.map(xy_policy::dates::format_date);
        let subject_index = cat
            .subject_id_number(values)
            .map(|id| self.keys.blind_index(id));
        NewRecord::new(RecordFields {
            category: &cat.code,
            key_hash: &key_hash,
            status,
            source_unit: key.source_unit,
            subject_code: cat.subject_uscc(values),
            subject_index: subject_index.as_deref(),
            document_number: key.document,
            decision_date: decision_date.as_deref(),
            lag_days: decision.map(|d| (self.today - d).num_days()),
            content_hash: &content_hash,
            payload,
            personal: sealed.as_deref(),
        })
    }
}

fn close_object(out: &mut String) {
    if out.is_empty() {
        out.push('{');
    }
    out.push('}');
}

/// Append `s` as a JSON string literal. Every byte that needs escaping is ASCII, so the scan runs
/// over bytes (never inside a multi-byte character) and copies the runs between escapes whole.
pub(crate) fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    // Most values need no escape: one pass without early exit (which the compiler vectorises)
    // tells, and the value is copied whole.
    let plain = !s.as_bytes().iter().fold(false, |any, &b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if plain {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut start = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        let escaped = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escaped.is_empty() {
            out.push_str(&format!("\\u{b:04x}"));
        } else {
            out.push_str(escaped);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::push_json_str;

    #[test]
    fn json_strings_read_back_as_written() {
        let samples = [
            "",
            "plain ascii",
            "张三 行政处罚决定书（川市监罚〔2025〕1号）",
            "quote \" backslash \\ slash /",
            "lines\nand\r\ntabs\tbell\u{7}nul\u{0}unit\u{1f}del\u{7f}",
            "emoji 🙂 and full-width ＡＢＣ",
            "\"\\\n",
        ];
        for s in samples {
            let mut out = String::from("x");
            push_json_str(&mut out, s);
            let back: String = serde_json::from_str(&out[1..]).unwrap();
            assert_eq!(back, s, "{out}");
        }
    }
}
