//! Batch reports: one JSON line per data row, or CSV for the source unit to fix and resubmit.

use std::io::{self, Write};

use xy_store::ReportRow;
use xy_store::quality::QualityLine;

use crate::prepare::push_json_str;

fn push_str_array<'a>(out: &mut String, items: impl Iterator<Item = &'a str>) {
    out.push('[');
    for (i, s) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(out, s);
    }
    out.push(']');
}

/// One report line: `{"row":…,"outcome":…,"fields":[…],"reasons":[…],"warnings":[…]}`.
pub fn jsonl_line(row: &ReportRow) -> String {
    let mut out = String::with_capacity(64);
    out.push_str("{\"row\":");
    out.push_str(&row.row.to_string());
    out.push_str(",\"outcome\":\"");
    out.push_str(row.outcome.as_str());
    out.push_str("\",\"fields\":");
    let mut fields: Vec<&str> = Vec::new();
    for f in &row.faults {
        if !f.field.is_empty() && !fields.contains(&f.field.as_str()) {
            fields.push(&f.field);
        }
    }
    push_str_array(&mut out, fields.into_iter());
    out.push_str(",\"reasons\":");
    push_str_array(&mut out, row.faults.iter().map(|f| f.reason.as_str()));
    out.push_str(",\"warnings\":");
    push_str_array(&mut out, row.warnings.iter().map(String::as_str));
    out.push('}');
    out
}

/// Write one report line and a newline.
pub fn write_jsonl_line(w: &mut impl Write, row: &ReportRow) -> io::Result<()> {
    w.write_all(jsonl_line(row).as_bytes())?;
    w.write_all(b"\n")
}

/// Write a whole report as CSV (UTF-8 with BOM, so that spreadsheet programs show Chinese).
/// `only_problems` keeps rejected rows and rows with warnings: the list to fix.
pub fn write_csv(w: impl Write, rows: &[ReportRow], only_problems: bool) -> io::Result<()> {
    let mut w = w;
    w.write_all("\u{feff}".as_bytes())?;
    let mut csv = csv::Writer::from_writer(w);
    let to_io = |e: csv::Error| io::Error::other(e.to_string());
    csv.write_record(["行号", "结果", "问题字段", "原因", "提示"])
        .map_err(to_io)?;
    for r in rows {
        if only_problems && r.faults.is_empty() && r.warnings.is_empty() {
            continue;
        }
        let mut fields: Vec<&str> = r
            .faults
            .iter()
            .map(|f| f.field.as_str())
            .filter(|f| !f.is_empty())
            .collect();
        fields.dedup();
        let reasons: Vec<&str> = r.faults.iter().map(|f| f.reason.as_str()).collect();
        csv.write_record([
            r.row.to_string(),
            r.outcome.as_str().to_owned(),
            fields.join(";"),
            reasons.join("；"),
            r.warnings.join("；"),
        ])
        .map_err(to_io)?;
    }
    csv.flush()
}

fn rules_text(line: &QualityLine) -> String {
    line.rejections_by_rule
        .iter()
        .map(|(r, n)| format!("{r}={n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The quality report as CSV (UTF-8 with BOM).
pub fn quality_csv(lines: &[QualityLine]) -> String {
    let mut out = String::from(
        "\u{feff}来源单位,数据类别,批次,总行数,入库,更新,重复,拒收,拒收率,按规则拒收,平均时效(天),最长时效(天)\n",
    );
    for l in lines {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{:.4},\"{}\",{},{}\n",
            l.source_unit,
            l.category,
            l.batches,
            l.total,
            l.stored,
            l.updated,
            l.duplicate,
            l.rejected,
            l.rejection_rate,
            rules_text(l),
            l.mean_lag_days
                .map(|d| format!("{d:.1}"))
                .unwrap_or_default(),
            l.max_lag_days.map(|d| d.to_string()).unwrap_or_default(),
        ));
    }
    out
}

/// The quality report as aligned text for a terminal.
pub fn quality_text(lines: &[QualityLine]) -> String {
    if lines.is_empty() {
        return "数据质量报告：尚无入库批次\n".into();
    }
    let mut out = String::from("数据质量报告（按来源单位与数据类别）\n");
    for l in lines {
        let unit = if l.source_unit.is_empty() {
            "(未声明来源单位)"
        } else {
            &l.source_unit
        };
        out.push_str(&format!(
            "\n{unit}  {}\n  批次 {}  总行数 {}  入库 {}  更新 {}  重复 {}  拒收 {} ({:.2}%)\n",
            l.category,
            l.batches,
            l.total,
            l.stored,
            l.updated,
            l.duplicate,
            l.rejected,
            l.rejection_rate * 100.0
        ));
        if !l.rejections_by_rule.is_empty() {
            out.push_str(&format!("  按规则拒收：{}\n", rules_text(l)));
        }
        if let Some(mean) = l.mean_lag_days {
            out.push_str(&format!(
                "  时效（决定日期→入库）：平均 {mean:.1} 天，最长 {} 天（{} 条）\n",
                l.max_lag_days.unwrap_or(0),
                l.timed_records
            ));
        }
    }
    out
}
