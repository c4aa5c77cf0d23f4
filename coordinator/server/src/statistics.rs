//! 统计分析 (statistics) and 信用应用成效反馈 (effectiveness feedback). Nodes report their daily
//! counts — ingested, rejected by rule, shared, returned, queried, per category and source unit —
//! signed with their node certificate's key; the coordinator checks the certificate against its
//! CA and its revocations, and keeps one report per node and day (a re-report replaces it). It
//! aggregates by prefecture, department, category or day; exports CSV and Excel; and serves an
//! HTML page whose charts the browser draws from the embedded figures. Prefectures submit
//! structured feedback on their credit scenarios, which the province reviews.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use xy_gmtls::pki::{ParsedCertificate, verify_signed_by};
use xy_shangmi::sm2::{CERT_DISTID, Sm2SecretKey};

use crate::ca::pem_decode;
use crate::sso::Claims;
use crate::users::UserRole;
use crate::{Coordinator, CoordinatorError, hex};

pub use xy_coordination::{CountLine, CountReport, SignedReport};

/// Sign a report with the node's key (the node's side).
pub fn sign_report(
    report: &CountReport,
    key: &Sm2SecretKey,
    certificate_pem: &str,
) -> Result<SignedReport, CoordinatorError> {
    xy_coordination::sign_report(report, key, certificate_pem)
        .map_err(|e| CoordinatorError::BadRequest(e.to_string()))
}

/// How to group the figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Grouping {
    /// By reporting prefecture (jurisdiction).
    Prefecture,
    /// By source unit.
    Department,
    /// By category.
    Category,
    /// By day.
    Day,
}

impl Grouping {
    fn column(self) -> &'static str {
        match self {
            Grouping::Prefecture => "jurisdiction",
            Grouping::Department => "source_unit",
            Grouping::Category => "category",
            Grouping::Day => "day",
        }
    }
}

/// One aggregated row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Aggregate {
    /// The group's key.
    pub key: String,
    /// Rows ingested.
    pub ingested: i64,
    /// Rows rejected.
    pub rejected: i64,
    /// Records shared up.
    pub shared: i64,
    /// Records returned.
    pub returned: i64,
    /// Queries answered.
    pub queried: i64,
}

fn valid_day(day: &str) -> bool {
    chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").is_ok()
}

/// A feedback submission (信用应用成效反馈).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feedback {
    /// The credit scenario (e.g. 信易贷, 招投标).
    pub scenario: String,
    /// The period it covers (e.g. `2026-Q3`).
    pub period: String,
    /// Measures taken.
    pub measures: String,
    /// Outcome figures by name (e.g. loans granted, amount in 万元).
    pub outcomes: BTreeMap<String, f64>,
}

/// A stored feedback submission.
#[derive(Debug, Clone, Serialize)]
pub struct FeedbackEntry {
    /// Id.
    pub id: i64,
    /// Submitting prefecture.
    pub jurisdiction: String,
    /// Who submitted.
    pub submitted_by: String,
    /// What was submitted.
    pub feedback: Feedback,
    /// submitted, accepted or returned.
    pub status: String,
    /// The reviewer's note.
    pub note: String,
}

impl Coordinator {
    /// Take a node's signed daily report: the certificate must be issued by this CA to a node of
    /// the report's jurisdiction and not revoked, and the signature must verify under it. A
    /// report for a day already reported replaces it. Returns the lines kept.
    pub async fn accept_report(
        &self,
        signed: &SignedReport,
        now: u64,
    ) -> Result<usize, CoordinatorError> {
        let refused =
            |why: String| CoordinatorError::Unauthorized(format!("report refused: {why}"));
        let certificate = pem_decode("CERTIFICATE", &signed.certificate_pem)?;
        verify_signed_by(&certificate, self.ca.certificate())
            .map_err(|e| refused(e.to_string()))?;
        let parsed = ParsedCertificate::parse(&certificate)?;
        let identity = parsed
            .identity
            .clone()
            .filter(|i| i.role.is_node())
            .ok_or_else(|| refused("the certificate is not a node's".into()))?;
        let serial = hex(parsed.serial);
        let revoked =
            sqlx::query("SELECT 1 FROM certificates WHERE serial = $1 AND revoked_at IS NOT NULL")
                .bind(&serial)
                .fetch_optional(&self.pool)
                .await?;
        if revoked.is_some() {
            return Err(refused(format!("certificate {serial} is revoked")));
        }
        let signature = xy_coordination::unhex(&signed.signature)
            .ok_or_else(|| refused("signature is not hex".into()))?;
        parsed
            .public_key
            .verify(CERT_DISTID, signed.report.as_bytes(), &signature)
            .map_err(|_| refused("the signature does not verify".into()))?;
        let report: CountReport = serde_json::from_str(&signed.report)
            .map_err(|e| CoordinatorError::BadRequest(format!("report: {e}")))?;
        if report.jurisdiction != identity.jurisdiction {
            return Err(refused(format!(
                "a node of {} reports for {}",
                identity.jurisdiction, report.jurisdiction
            )));
        }
        if !valid_day(&report.day) {
            return Err(CoordinatorError::BadRequest(format!(
                "day {:?} is not YYYY-MM-DD",
                report.day
            )));
        }
        if report.lines.len() > 100_000
            || report
                .lines
                .iter()
                .any(|l| l.category.is_empty() || l.category.len() > 32 || l.source_unit.len() > 64)
        {
            return Err(CoordinatorError::BadRequest(
                "a report line names no category, or fields exceed their limits".into(),
            ));
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM statistics WHERE jurisdiction = $1 AND day = $2")
            .bind(&report.jurisdiction)
            .bind(&report.day)
            .execute(&mut *tx)
            .await?;
        for line in &report.lines {
            sqlx::query(
                "INSERT INTO statistics (jurisdiction, day, category, source_unit, ingested, rejected, shared, returned, queried) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&report.jurisdiction)
            .bind(&report.day)
            .bind(&line.category)
            .bind(&line.source_unit)
            .bind(line.ingested.min(i64::MAX as u64) as i64)
            .bind(line.rejected.min(i64::MAX as u64) as i64)
            .bind(line.shared.min(i64::MAX as u64) as i64)
            .bind(line.returned.min(i64::MAX as u64) as i64)
            .bind(line.queried.min(i64::MAX as u64) as i64)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.audit(
            &format!("node:{}", identity.jurisdiction),
            "statistics.report",
            serde_json::json!({"day": report.day, "lines": report.lines.len(), "serial": serial}),
            now,
        )
        .await?;
        Ok(report.lines.len())
    }

    /// Aggregated figures between two days (inclusive), grouped. Province administrators and
    /// auditors see every prefecture; a prefecture administrator its own.
    pub async fn statistics(
        &self,
        actor: &Claims,
        from: &str,
        to: &str,
        by: Grouping,
        now: u64,
    ) -> Result<Vec<Aggregate>, CoordinatorError> {
        let scope = match actor.role {
            UserRole::ProvinceAdmin | UserRole::Auditor => None,
            UserRole::PrefectureAdmin => Some(actor.jurisdiction.clone()),
            other => {
                let reason = format!("a {} may not read statistics", other.as_str());
                return Err(self.deny(actor, "statistics.read", reason, now).await);
            }
        };
        for day in [from, to] {
            if !valid_day(day) {
                return Err(CoordinatorError::BadRequest(format!(
                    "day {day:?} is not YYYY-MM-DD"
                )));
            }
        }
        let column = by.column();
        let sql = format!(
            "SELECT {column}, CAST(SUM(ingested) AS BIGINT), CAST(SUM(rejected) AS BIGINT), \
             CAST(SUM(shared) AS BIGINT), CAST(SUM(returned) AS BIGINT), CAST(SUM(queried) AS BIGINT) \
             FROM statistics WHERE day >= $1 AND day <= $2 AND ($3 = '' OR jurisdiction = $3) \
             GROUP BY {column} ORDER BY {column}"
        );
        let rows = sqlx::query(&sql)
            .bind(from)
            .bind(to)
            .bind(scope.unwrap_or_default())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Aggregate {
                    key: row.try_get(0)?,
                    ingested: row.try_get(1)?,
                    rejected: row.try_get(2)?,
                    shared: row.try_get(3)?,
                    returned: row.try_get(4)?,
                    queried: row.try_get(5)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(CoordinatorError::from)
    }

    /// Submit feedback for the caller's prefecture.
    pub async fn submit_feedback(
        &self,
        actor: &Claims,
        feedback: &Feedback,
        now: u64,
    ) -> Result<i64, CoordinatorError> {
        if !matches!(
            actor.role,
            UserRole::PrefectureAdmin | UserRole::DepartmentOperator | UserRole::ProvinceAdmin
        ) {
            let reason = format!("a {} may not submit feedback", actor.role.as_str());
            return Err(self.deny(actor, "feedback.submit", reason, now).await);
        }
        let text_ok = |t: &str, max: usize| !t.trim().is_empty() && t.chars().count() <= max;
        if !text_ok(&feedback.scenario, 100)
            || !text_ok(&feedback.period, 32)
            || !text_ok(&feedback.measures, 4000)
            || feedback.outcomes.is_empty()
            || feedback.outcomes.len() > 50
            || feedback.outcomes.values().any(|v| !v.is_finite())
        {
            return Err(CoordinatorError::BadRequest(
                "feedback names its scenario, period and measures, and at least one finite outcome figure".into(),
            ));
        }
        let id: i64 = sqlx::query("SELECT COALESCE(MAX(id), 0) + 1 FROM feedback")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        sqlx::query(
            "INSERT INTO feedback (id, jurisdiction, submitted_by, submitted_at, body, status, note) \
             VALUES ($1, $2, $3, $4, $5, 'submitted', '')",
        )
        .bind(id)
        .bind(&actor.jurisdiction)
        .bind(&actor.sub)
        .bind(now as i64)
        .bind(serde_json::to_string(feedback).map_err(|e| CoordinatorError::BadRequest(e.to_string()))?)
        .execute(&self.pool)
        .await?;
        self.audit(
            &actor.sub,
            "feedback.submit",
            serde_json::json!({"id": id}),
            now,
        )
        .await?;
        Ok(id)
    }

    /// Feedback the caller may see: all (province, auditors) or its prefecture's.
    pub async fn feedback(&self, actor: &Claims) -> Result<Vec<FeedbackEntry>, CoordinatorError> {
        let rows = sqlx::query(
            "SELECT id, jurisdiction, submitted_by, body, status, note FROM feedback ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for row in rows {
            let jurisdiction: String = row.try_get(1)?;
            let visible = matches!(actor.role, UserRole::ProvinceAdmin | UserRole::Auditor)
                || jurisdiction == actor.jurisdiction;
            if !visible {
                continue;
            }
            let body: String = row.try_get(3)?;
            out.push(FeedbackEntry {
                id: row.try_get(0)?,
                jurisdiction,
                submitted_by: row.try_get(2)?,
                feedback: serde_json::from_str(&body)
                    .map_err(|e| CoordinatorError::BadRequest(format!("stored feedback: {e}")))?,
                status: row.try_get(4)?,
                note: row.try_get(5)?,
            });
        }
        Ok(out)
    }

    /// The province reviews a submission: accept it, or return it with a note.
    pub async fn review_feedback(
        &self,
        actor: &Claims,
        id: i64,
        accept: bool,
        note: &str,
        now: u64,
    ) -> Result<(), CoordinatorError> {
        if actor.role != UserRole::ProvinceAdmin {
            let reason = "only the province reviews feedback".to_owned();
            return Err(self.deny(actor, "feedback.review", reason, now).await);
        }
        if !accept && note.trim().is_empty() {
            return Err(CoordinatorError::BadRequest(
                "a returned submission says why".into(),
            ));
        }
        let status = if accept { "accepted" } else { "returned" };
        let changed = sqlx::query(
            "UPDATE feedback SET status = $1, note = $2 WHERE id = $3 AND status = 'submitted'",
        )
        .bind(status)
        .bind(note)
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if changed != 1 {
            return Err(CoordinatorError::Conflict(format!(
                "feedback {id} does not exist or was reviewed already"
            )));
        }
        self.audit(
            &actor.sub,
            "feedback.review",
            serde_json::json!({"id": id, "status": status}),
            now,
        )
        .await
    }
}

/// The figures as CSV (UTF-8 with BOM, so that spreadsheet programs read the Chinese headers).
pub fn to_csv(grouping: &str, rows: &[Aggregate]) -> String {
    let mut out = String::from("\u{feff}");
    out.push_str(&format!(
        "{grouping},归集(ingested),拒收(rejected),共享(shared),回流(returned),查询(queried)\r\n"
    ));
    for r in rows {
        let key = if r.key.contains([',', '"', '\n']) {
            format!("\"{}\"", r.key.replace('"', "\"\""))
        } else {
            r.key.clone()
        };
        out.push_str(&format!(
            "{key},{},{},{},{},{}\r\n",
            r.ingested, r.rejected, r.shared, r.returned, r.queried
        ));
    }
    out
}

/// The figures as an Excel workbook.
pub fn to_xlsx(grouping: &str, rows: &[Aggregate]) -> Result<Vec<u8>, CoordinatorError> {
    let xlsx = |e: rust_xlsxwriter::XlsxError| CoordinatorError::BadRequest(format!("xlsx: {e}"));
    let mut workbook = rust_xlsxwriter::Workbook::new();
    let sheet = workbook.add_worksheet();
    sheet.set_name("统计").map_err(xlsx)?;
    for (col, header) in [grouping, "归集", "拒收", "共享", "回流", "查询"]
        .iter()
        .enumerate()
    {
        sheet.write_string(0, col as u16, *header).map_err(xlsx)?;
    }
    for (i, r) in rows.iter().enumerate() {
        let row = i as u32 + 1;
        sheet.write_string(row, 0, &r.key).map_err(xlsx)?;
        for (col, value) in [r.ingested, r.rejected, r.shared, r.returned, r.queried]
            .into_iter()
            .enumerate()
        {
            sheet
                .write_number(row, col as u16 + 1, value as f64)
                .map_err(xlsx)?;
        }
    }
    workbook.save_to_buffer().map_err(xlsx)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The report page: the figures by prefecture and by day embedded as JSON, drawn as SVG bar and
/// line charts by the page's script, with the same figures in tables beneath.
pub fn report_html(
    from: &str,
    to: &str,
    by_prefecture: &[Aggregate],
    by_day: &[Aggregate],
) -> String {
    // JSON inside <script> must not close the element.
    let data = serde_json::json!({"prefectures": by_prefecture, "days": by_day})
        .to_string()
        .replace("</", "<\\/");
    let table = |title: &str, rows: &[Aggregate]| {
        let mut t = format!(
            "<h2>{}</h2><table><tr><th>{}</th><th>归集</th><th>拒收</th><th>拒收率</th><th>共享</th><th>回流</th><th>查询</th></tr>",
            escape(title),
            escape(title)
        );
        for r in rows {
            let rate = if r.ingested + r.rejected > 0 {
                r.rejected as f64 * 100.0 / (r.ingested + r.rejected) as f64
            } else {
                0.0
            };
            t.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{rate:.1}%</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&r.key),
                r.ingested,
                r.rejected,
                r.shared,
                r.returned,
                r.queried
            ));
        }
        t.push_str("</table>");
        t
    };
    format!(
        r##"<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>信用信息归集统计 {from} – {to}</title>
<style>
body {{ font-family: "Noto Sans CJK SC", "Microsoft YaHei", sans-serif; margin: 2rem; color: #1f2933; }}
h1 {{ font-size: 1.4rem; }} h2 {{ font-size: 1.1rem; margin-top: 2rem; }}
.chart {{ width: 100%; max-width: 960px; height: 320px; border: 1px solid #e4e7eb; border-radius: 6px; }}
.bar.ingested {{ fill: #2f855a; }} .bar.rejected {{ fill: #c53030; }} .line {{ fill: none; stroke: #2b6cb0; stroke-width: 2; }}
.axis {{ stroke: #9aa5b1; }} text {{ font-size: 12px; fill: #3e4c59; }}
table {{ border-collapse: collapse; margin-top: .5rem; }} td, th {{ border: 1px solid #e4e7eb; padding: .25rem .6rem; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
</style></head><body>
<h1>信用信息归集统计 · {from} 至 {to}</h1>
<p>各市州归集与拒收（绿色：归集；红色：拒收），以及每日归集量。</p>
<svg id="by-prefecture" class="chart" viewBox="0 0 960 320" role="img" aria-label="各市州归集与拒收"></svg>
<svg id="by-day" class="chart" viewBox="0 0 960 320" role="img" aria-label="每日归集量"></svg>
{prefecture_table}
{day_table}
<script id="figures" type="application/json">{data}</script>
<script>
(function () {{
  var NS = "http://www.w3.org/2000/svg";
  var figures = JSON.parse(document.getElementById("figures").textContent);
  function el(name, attrs, text) {{
    var e = document.createElementNS(NS, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }}
  function bars(svg, rows) {{
    var max = 1; rows.forEach(function (r) {{ max = Math.max(max, r.ingested, r.rejected); }});
    var left = 60, bottom = 280, height = 240, slot = (900 - left) / Math.max(rows.length, 1);
    svg.appendChild(el("line", {{x1: left, y1: bottom, x2: 940, y2: bottom, class: "axis"}}));
    svg.appendChild(el("text", {{x: 4, y: bottom - height}}, String(max)));
    rows.forEach(function (r, i) {{
      var x = left + i * slot + slot * 0.15, w = slot * 0.3;
      [["ingested", r.ingested, 0], ["rejected", r.rejected, w]].forEach(function (b) {{
        var h = height * b[1] / max;
        var rect = el("rect", {{x: x + b[2], y: bottom - h, width: w, height: h, class: "bar " + b[0], "data-value": b[1]}});
        rect.appendChild(el("title", {{}}, r.key + " " + b[0] + " " + b[1]));
        svg.appendChild(rect);
      }});
      svg.appendChild(el("text", {{x: x, y: bottom + 18}}, r.key));
    }});
  }}
  function line(svg, rows) {{
    var max = 1; rows.forEach(function (r) {{ max = Math.max(max, r.ingested); }});
    var left = 60, bottom = 280, height = 240, step = (880 - left) / Math.max(rows.length - 1, 1);
    svg.appendChild(el("line", {{x1: left, y1: bottom, x2: 940, y2: bottom, class: "axis"}}));
    var points = rows.map(function (r, i) {{ return (left + i * step) + "," + (bottom - height * r.ingested / max); }});
    svg.appendChild(el("polyline", {{points: points.join(" "), class: "line", "data-points": rows.length}}));
    rows.forEach(function (r, i) {{
      svg.appendChild(el("circle", {{cx: left + i * step, cy: bottom - height * r.ingested / max, r: 3, class: "point", "data-value": r.ingested}}));
      svg.appendChild(el("text", {{x: left + i * step - 30, y: bottom + 18}}, r.key));
    }});
  }}
  bars(document.getElementById("by-prefecture"), figures.prefectures);
  line(document.getElementById("by-day"), figures.days);
  document.body.setAttribute("data-drawn", "true");
}})();
</script>
</body></html>
"##,
        prefecture_table = table("市州", by_prefecture),
        day_table = table("日期", by_day),
    )
}
