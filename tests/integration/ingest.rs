//! Ingest end to end: generated data in every format and encoding, every row accounted for.

use std::fs::File;

use chrono::Datelike;
use xy_synth::{CsvEncoding, Defect, Generator, Kind, SynthConfig, Version};

use crate::common::{options, read_report, sqlite_node, today};

fn generate(
    kind: Kind,
    version: Version,
    rows: usize,
    seed: u64,
) -> (Vec<&'static str>, Vec<xy_synth::SynthRow>) {
    let mut cfg = SynthConfig::new(seed, kind, today());
    cfg.version = version;
    let generator = Generator::new(cfg);
    let headers = generator.headers().to_vec();
    (headers, generator.take(rows).collect())
}

/// Check that every report line has the outcome its generated row must have.
fn assert_outcomes(report: &[serde_json::Value], defects: &[Defect]) {
    assert_eq!(report.len(), defects.len(), "one report line per data row");
    for (i, (line, defect)) in report.iter().zip(defects).enumerate() {
        assert_eq!(line["row"].as_u64(), Some(i as u64 + 1));
        assert_eq!(
            line["outcome"].as_str(),
            Some(defect.expected_outcome()),
            "row {} with defect {defect:?}: {line}",
            i + 1
        );
        if *defect != Defect::None && defect.expected_outcome() == "rejected" {
            assert!(!line["reasons"].as_array().unwrap().is_empty(), "{line}");
            assert!(!line["fields"].as_array().unwrap().is_empty(), "{line}");
        }
    }
}

#[tokio::test]
async fn generated_penalties_v2_csv_every_row_accounted_for() {
    let dir = tempfile::tempdir().unwrap();
    let (_stores, ingestor) = sqlite_node(dir.path()).await;
    let (headers, rows) = generate(Kind::Penalty, Version::V2, 5000, 1);
    let input = dir.path().join("cf.csv");
    let defects = xy_synth::write_csv(
        File::create(&input).unwrap(),
        &headers,
        rows.into_iter(),
        CsvEncoding::Utf8,
        false,
    )
    .unwrap();
    let report_path = dir.path().join("report.jsonl");
    let result = ingestor
        .ingest_file(
            &input,
            None,
            &options(),
            Some(Box::new(File::create(&report_path).unwrap())),
            None,
        )
        .await
        .unwrap();
    assert_eq!(result.category, "xzcf");
    assert_outcomes(&read_report(&report_path), &defects);
    for d in Defect::REJECTING
        .iter()
        .chain([Defect::None, Defect::Duplicate, Defect::Changed].iter())
    {
        if *d == Defect::BadResidentId || *d == Defect::MissingFine {
            continue;
        }
        assert!(defects.contains(d), "5000 rows should include {d:?}");
    }
}

async fn ingest_generated(
    kind: Kind,
    version: Version,
    encoding: Option<CsvEncoding>,
    crlf: bool,
    seed: u64,
) -> (Vec<serde_json::Value>, Vec<Defect>, xy_ingest::IngestResult) {
    let dir = tempfile::tempdir().unwrap();
    let (_stores, ingestor) = sqlite_node(dir.path()).await;
    let (headers, rows) = generate(kind, version, 1500, seed);
    let (input, defects) = match encoding {
        Some(enc) => {
            let p = dir.path().join("in.csv");
            let d = xy_synth::write_csv(
                File::create(&p).unwrap(),
                &headers,
                rows.into_iter(),
                enc,
                crlf,
            )
            .unwrap();
            (p, d)
        }
        None => {
            let p = dir.path().join("in.jsonl");
            let d = xy_synth::write_jsonl(File::create(&p).unwrap(), &headers, rows.into_iter())
                .unwrap();
            (p, d)
        }
    };
    let report_path = dir.path().join("r.jsonl");
    let result = ingestor
        .ingest_file(
            &input,
            None,
            &options(),
            Some(Box::new(File::create(&report_path).unwrap())),
            None,
        )
        .await
        .unwrap();
    (read_report(&report_path), defects, result)
}

#[tokio::test]
async fn gbk_crlf_csv_with_legacy_v1_fields() {
    let (report, defects, result) =
        ingest_generated(Kind::Licence, Version::V1, Some(CsvEncoding::Gbk), true, 2).await;
    assert_eq!(result.format, "csv/gb18030");
    assert!(result.legacy_fields);
    assert_eq!(result.category, "xzxk");
    assert_outcomes(&report, &defects);
}

#[tokio::test]
async fn utf8_bom_crlf_csv_with_legacy_v1_penalties() {
    let (report, defects, result) = ingest_generated(
        Kind::Penalty,
        Version::V1,
        Some(CsvEncoding::Utf8Bom),
        true,
        3,
    )
    .await;
    assert_eq!(result.format, "csv/UTF-8");
    assert!(result.legacy_fields);
    assert!(
        result.unknown_columns.is_empty(),
        "{:?}",
        result.unknown_columns
    );
    assert_outcomes(&report, &defects);
}

#[tokio::test]
async fn json_lines_of_licences() {
    let (report, defects, result) =
        ingest_generated(Kind::Licence, Version::V2, None, false, 4).await;
    assert_eq!(result.format, "jsonl/utf-8");
    assert_outcomes(&report, &defects);
}

#[tokio::test]
async fn v1_rows_are_stored_under_v2_names() {
    let dir = tempfile::tempdir().unwrap();
    let (stores, ingestor) = sqlite_node(dir.path()).await;
    let (headers, rows) = generate(Kind::Penalty, Version::V1, 50, 9);
    assert!(headers.contains(&"CF_CFMC") && headers.contains(&"CF_XZJG"));
    let input = dir.path().join("v1.csv");
    xy_synth::write_csv(
        File::create(&input).unwrap(),
        &headers,
        rows.into_iter(),
        CsvEncoding::Utf8,
        false,
    )
    .unwrap();
    ingestor
        .ingest_file(&input, None, &options(), None, None)
        .await
        .unwrap();
    let records = stores.collection.query(&Default::default()).await.unwrap();
    assert!(!records.is_empty());
    for r in &records {
        let fields = r.payload.as_object().unwrap();
        assert!(
            fields.contains_key("CF_WFXW")
                && fields.contains_key("CF_CFJG")
                && fields.contains_key("CF_NR")
        );
        assert!(
            !fields
                .keys()
                .any(|k| k == "CF_CFMC" || k == "CF_XZJG" || k == "CF_JG")
        );
    }
}

/// A small valid penalty CSV (header + rows) as text, for the bad-input tests.
fn small_csv(rows: usize) -> (Vec<&'static str>, String) {
    let (headers, generated) = generate(Kind::Penalty, Version::V2, rows * 3, 21);
    let clean: Vec<_> = generated
        .into_iter()
        .filter(|r| r.defect == Defect::None)
        .take(rows)
        .collect();
    let mut out = Vec::new();
    xy_synth::write_csv(
        &mut out,
        &headers,
        clean.into_iter(),
        CsvEncoding::Utf8,
        false,
    )
    .unwrap();
    (headers, String::from_utf8(out).unwrap())
}

async fn ingest_bytes(
    name: &str,
    bytes: &[u8],
) -> (
    Result<xy_ingest::IngestResult, xy_ingest::IngestError>,
    Vec<serde_json::Value>,
    i64,
) {
    let dir = tempfile::tempdir().unwrap();
    let (stores, ingestor) = sqlite_node(dir.path()).await;
    let input = dir.path().join(name);
    std::fs::write(&input, bytes).unwrap();
    let report_path = dir.path().join("r.jsonl");
    let result = ingestor
        .ingest_file(
            &input,
            None,
            &options(),
            Some(Box::new(File::create(&report_path).unwrap())),
            None,
        )
        .await;
    let report = if result.is_ok() {
        read_report(&report_path)
    } else {
        Vec::new()
    };
    let count = stores.collection.record_count().await.unwrap();
    (result, report, count)
}

#[tokio::test]
async fn empty_file_is_an_error_and_stores_nothing() {
    let (result, _, count) = ingest_bytes("empty.csv", b"").await;
    assert!(
        matches!(result, Err(xy_ingest::IngestError::Empty)),
        "{result:?}"
    );
    assert_eq!(count, 0);
    let (result, _, _) = ingest_bytes("empty.jsonl", b"\n\n").await;
    assert!(
        matches!(result, Err(xy_ingest::IngestError::Empty)),
        "{result:?}"
    );
}

#[tokio::test]
async fn header_problems_are_errors_of_the_file() {
    let (result, _, count) = ingest_bytes(
        "dup.csv",
        "CF_WSH,CF_XDR_MC,CF_WSH,CF_JDRQ\na,b,c,d\n".as_bytes(),
    )
    .await;
    assert!(
        matches!(
            result,
            Err(xy_ingest::IngestError::Policy(
                xy_policy::PolicyError::DuplicateHeader(_)
            ))
        ),
        "{result:?}"
    );
    assert_eq!(count, 0);
    let (result, _, _) = ingest_bytes("unknown.csv", b"name,amount,date\nx,1,2\n").await;
    assert!(
        matches!(
            result,
            Err(xy_ingest::IngestError::Policy(
                xy_policy::PolicyError::UndetectedCategory
            ))
        ),
        "{result:?}"
    );
    let (result, _, _) = ingest_bytes("blank.csv", "CF_WSH,,CF_JDRQ,CF_XDR_MC\n".as_bytes()).await;
    assert!(
        matches!(
            result,
            Err(xy_ingest::IngestError::Policy(
                xy_policy::PolicyError::EmptyHeader { column: 2 }
            ))
        ),
        "{result:?}"
    );
    // A header in an undecodable encoding.
    let (result, _, _) = ingest_bytes("bad-header.csv", b"CF_WSH,\xff\xfe\xfd,CF_JDRQ\n").await;
    assert!(result.is_err(), "{result:?}");
}

#[tokio::test]
async fn truncated_file_rejects_the_cut_row_and_keeps_the_others() {
    let (_, text) = small_csv(20);
    // Cut on a byte, as a broken transfer does (here inside a multi-byte character).
    let cut = &text.as_bytes()[..text.len() - 41];
    let (result, report, count) = ingest_bytes("cut.csv", cut).await;
    let result = result.unwrap();
    assert_eq!(result.counts.total, 20);
    assert_eq!(result.counts.stored, 19);
    assert_eq!(count, 19);
    let last = report.last().unwrap();
    assert_eq!(last["outcome"], "rejected");
    assert!(
        last["reasons"][0].as_str().unwrap().contains("列"),
        "{last}"
    );
}

#[tokio::test]
async fn a_row_in_another_encoding_is_rejected_with_a_reason() {
    let (_, text) = small_csv(10);
    let mut lines: Vec<Vec<u8>> = text.lines().map(|l| l.as_bytes().to_vec()).collect();
    // Row 4 arrives GBK-encoded inside a UTF-8 file.
    lines[4] = encoding_rs::GBK
        .encode(std::str::from_utf8(&lines[4]).unwrap())
        .0
        .into_owned();
    let bytes = lines.join(&b'\n');
    let (result, report, _) = ingest_bytes("mixed.csv", &bytes).await;
    let result = result.unwrap();
    assert_eq!(result.counts.rejected, 1, "{report:?}");
    assert_eq!(report[3]["outcome"], "rejected");
    assert!(
        report[3]["reasons"].to_string().contains("编码"),
        "{}",
        report[3]
    );
    assert_eq!(result.counts.stored, 9);
}

/// A delimiter inside a multi-byte character: the row's fields end to end are valid UTF-8, but two
/// of them are not, and the row is rejected instead of being read with the character glued
/// back together.
#[tokio::test]
async fn a_character_cut_by_a_delimiter_is_rejected() {
    let (_, text) = small_csv(5);
    let mut lines: Vec<Vec<u8>> = text.lines().map(|l| l.as_bytes().to_vec()).collect();
    let line = &lines[2];
    let comma = line.iter().position(|b| *b == b',').unwrap();
    assert!(
        line[comma - 1] >= 0x80,
        "the first field ends in a Chinese character"
    );
    let mut cut = line[..comma - 1].to_vec();
    cut.push(b',');
    cut.push(line[comma - 1]);
    cut.extend_from_slice(&line[comma + 1..]);
    // Without the delimiter, the fields together are the original valid text.
    let mut joined = cut.clone();
    joined.remove(comma - 1);
    assert!(std::str::from_utf8(&joined).is_ok());
    lines[2] = cut;
    let (result, report, _) = ingest_bytes("cut.csv", &lines.join(&b'\n')).await;
    let result = result.unwrap();
    assert_eq!(report[1]["outcome"], "rejected", "{}", report[1]);
    assert!(
        report[1]["reasons"].to_string().contains("编码"),
        "{}",
        report[1]
    );
    assert_eq!((result.counts.rejected, result.counts.stored), (1, 4));
}

#[tokio::test]
async fn a_100_mib_field_is_rejected_without_loading_it_into_a_record() {
    let (headers, text) = small_csv(3);
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let sy = headers.iter().position(|h| *h == "CF_SY").unwrap();
    let mut cells: Vec<String> = lines[2].split(',').map(str::to_owned).collect();
    cells[sy] = "事".repeat(100 * 1024 * 1024 / 3);
    lines[2] = cells.join(",");
    let (result, report, count) = ingest_bytes("huge.csv", lines.join("\n").as_bytes()).await;
    let result = result.unwrap();
    assert_eq!(result.counts.total, 3);
    assert_eq!(report[1]["outcome"], "rejected");
    assert!(
        report[1]["reasons"][0]
            .as_str()
            .unwrap()
            .contains("超过上限"),
        "{}",
        report[1]
    );
    assert_eq!(count, 2);
}

#[tokio::test]
async fn garbage_input_never_panics() {
    let mut seed = 0x2545F4914F6CDD1Du64;
    let mut bytes = Vec::new();
    for _ in 0..200_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        bytes.push(seed as u8);
    }
    for name in ["g.csv", "g.jsonl", "g.xlsx"] {
        let (result, _, count) = ingest_bytes(name, &bytes).await;
        assert!(
            result.is_err() || result.as_ref().unwrap().counts.stored == 0,
            "{name}: {result:?}"
        );
        assert_eq!(count, 0);
    }
}

#[tokio::test]
async fn malformed_json_lines_are_rejected_rows() {
    let (headers, rows) = generate(Kind::Penalty, Version::V2, 30, 22);
    let clean: Vec<_> = rows
        .into_iter()
        .filter(|r| r.defect == Defect::None)
        .take(3)
        .collect();
    let mut out = Vec::new();
    xy_synth::write_jsonl(&mut out, &headers, clean.into_iter()).unwrap();
    let mut text = String::from_utf8(out).unwrap();
    text.push_str("{\"CF_WSH\": \"x\",\n");
    text.push_str("[1,2,3]\n");
    text.push_str("{\"CF_WSH\": {\"nested\": 1}}\n");
    let (result, report, count) = ingest_bytes("m.jsonl", text.as_bytes()).await;
    let result = result.unwrap();
    assert_eq!(result.counts.total, 6);
    assert_eq!(result.counts.stored, 3);
    assert_eq!(result.counts.rejected, 3);
    assert_eq!(count, 3);
    assert!(report[3]["reasons"][0].as_str().unwrap().contains("JSON"));
    assert_eq!(report[5]["fields"][0], "CF_WSH");
}

#[tokio::test]
async fn declared_source_unit_fills_and_guards_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (_stores, ingestor) = sqlite_node(dir.path()).await;
    let (headers, rows) = generate(Kind::Penalty, Version::V2, 40, 23);
    let clean: Vec<_> = rows
        .into_iter()
        .filter(|r| r.defect == Defect::None)
        .take(4)
        .collect();
    let su = headers.iter().position(|h| *h == "CF_SJLYDM").unwrap();
    let declared = clean[0].cells[su].clone();
    let mut altered = clean.clone();
    altered[1].cells[su] = String::new(); // filled from the declaration
    altered[2].cells[su] = "91350100M000100Y43".into(); // another unit: rejected
    let input = dir.path().join("su.csv");
    xy_synth::write_csv(
        File::create(&input).unwrap(),
        &headers,
        altered.into_iter(),
        CsvEncoding::Utf8,
        false,
    )
    .unwrap();
    let mut opts = options();
    opts.source_unit = Some(declared);
    let report_path = dir.path().join("r.jsonl");
    let result = ingestor
        .ingest_file(
            &input,
            None,
            &opts,
            Some(Box::new(File::create(&report_path).unwrap())),
            None,
        )
        .await
        .unwrap();
    assert_eq!(result.counts.stored, 3);
    let report = read_report(&report_path);
    assert_eq!(report[2]["outcome"], "rejected");
    assert_eq!(report[2]["fields"][0], "CF_SJLYDM");
}

#[tokio::test]
async fn excel_sheets_with_dates_formulas_and_merged_cells() {
    use rust_xlsxwriter::{ExcelDateTime, Format, Formula, Workbook};
    let dir = tempfile::tempdir().unwrap();
    let (stores, ingestor) = sqlite_node(dir.path()).await;
    let (headers, rows) = generate(Kind::Penalty, Version::V2, 60, 24);
    let clean: Vec<_> = rows
        .into_iter()
        .filter(|r| r.defect == Defect::None)
        .take(6)
        .collect();
    let jdrq = headers.iter().position(|h| *h == "CF_JDRQ").unwrap();
    let fk = headers.iter().position(|h| *h == "CF_NR_FK").unwrap();
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    let date_format = Format::new().set_num_format("yyyy-mm-dd");
    for (c, h) in headers.iter().enumerate() {
        sheet.write_string(0, c as u16, *h).unwrap();
    }
    for (r, row) in clean.iter().enumerate() {
        let excel_row = r as u32 + 1;
        for (c, v) in row.cells.iter().enumerate() {
            if c == jdrq && r == 0 {
                // A real Excel date cell.
                let d = chrono::NaiveDate::parse_from_str(v, "%Y/%m/%d").unwrap();
                let dt = ExcelDateTime::from_ymd(
                    d.year_ce().1 as u16,
                    d.month0() as u8 + 1,
                    d.day0() as u8 + 1,
                )
                .unwrap();
                sheet
                    .write_datetime_with_format(excel_row, c as u16, &dt, &date_format)
                    .unwrap();
            } else if c == fk && r == 1 {
                // A formula: its cached value cannot be trusted.
                sheet
                    .write_formula(excel_row, c as u16, Formula::new("=1+1"))
                    .unwrap();
            } else if !v.is_empty() {
                sheet.write_string(excel_row, c as u16, v).unwrap();
            }
        }
    }
    // Rows 4 and 5 (data rows 4, 5) share a merged name cell.
    sheet
        .merge_range(4, 0, 5, 0, &clean[3].cells[0], &Format::new())
        .unwrap();
    let input = dir.path().join("sheet.xlsx");
    book.save(&input).unwrap();
    let report_path = dir.path().join("r.jsonl");
    let result = ingestor
        .ingest_file(
            &input,
            None,
            &options(),
            Some(Box::new(File::create(&report_path).unwrap())),
            None,
        )
        .await
        .unwrap();
    let report = read_report(&report_path);
    assert_eq!(result.counts.total, 6, "{report:?}");
    assert_eq!(report[0]["outcome"], "stored", "{}", report[0]);
    assert_eq!(report[1]["outcome"], "rejected");
    assert_eq!(report[1]["fields"][0], "CF_NR_FK");
    assert!(report[1]["reasons"][0].as_str().unwrap().contains("公式"));
    assert_eq!(report[2]["outcome"], "stored");
    for merged in [&report[3], &report[4]] {
        assert_eq!(merged["outcome"], "rejected", "{merged}");
        assert!(
            merged["reasons"][0]
                .as_str()
                .unwrap()
                .contains("合并单元格")
        );
    }
    assert_eq!(report[5]["outcome"], "stored");
    // The Excel date cell became the standard layout.
    let wsh = headers.iter().position(|h| *h == "CF_WSH").unwrap();
    let stored = stores.collection.query(&Default::default()).await.unwrap();
    let first = stored
        .iter()
        .find(|r| r.document_number == clean[0].cells[wsh])
        .expect("the first row is stored");
    assert_eq!(
        first.decision_date.as_deref(),
        Some(clean[0].cells[jdrq].as_str())
    );
}

#[tokio::test]
async fn database_tables_are_ingested_like_files() {
    let dir = tempfile::tempdir().unwrap();
    let (_stores, ingestor) = sqlite_node(dir.path()).await;
    let (headers, rows) = generate(Kind::Licence, Version::V2, 500, 25);
    let source_url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("department.db").display()
    );
    crate::common::load_table(&source_url, "xk_export", &headers, &rows).await;
    let report_path = dir.path().join("r.jsonl");
    let result = ingestor
        .ingest_table(
            &source_url,
            "xk_export",
            Some("seq"),
            &options(),
            Some(Box::new(File::create(&report_path).unwrap())),
        )
        .await
        .unwrap();
    assert_eq!(result.unknown_columns, vec!["SEQ".to_owned()]);
    let defects: Vec<Defect> = rows.iter().map(|r| r.defect).collect();
    assert_outcomes(&read_report(&report_path), &defects);
    assert!(
        ingestor
            .ingest_table(
                &source_url,
                "xk_export; DROP TABLE x",
                None,
                &options(),
                None
            )
            .await
            .is_err()
    );
    assert!(
        ingestor
            .ingest_table(
                &source_url,
                "xk_export",
                Some("seq; DROP TABLE x"),
                &options(),
                None
            )
            .await
            .is_err()
    );
    assert!(
        ingestor
            .ingest_table(&source_url, "missing_table", None, &options(), None)
            .await
            .is_err()
    );
}

/// A bounded, seeded mutation fuzzer over valid inputs of each format (the cargo-fuzz target in
/// `fuzz/` explores further): truncations, bit flips, duplicated and deleted spans. Nothing panics.
#[test]
fn mutated_inputs_never_panic() {
    use rust_xlsxwriter::Workbook;
    let policies = xy_policy::PolicySet::builtin().unwrap();
    let (headers, rows) = generate(Kind::Penalty, Version::V1, 40, 77);
    let mut csv = Vec::new();
    xy_synth::write_csv(
        &mut csv,
        &headers,
        rows.clone().into_iter(),
        CsvEncoding::Gbk,
        true,
    )
    .unwrap();
    let mut jsonl = Vec::new();
    xy_synth::write_jsonl(&mut jsonl, &headers, rows.clone().into_iter()).unwrap();
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    for (c, h) in headers.iter().enumerate() {
        sheet.write_string(0, c as u16, *h).unwrap();
    }
    for (r, row) in rows.iter().take(10).enumerate() {
        for (c, v) in row.cells.iter().enumerate() {
            sheet.write_string(r as u32 + 1, c as u16, v).unwrap();
        }
    }
    let xlsx = book.save_to_buffer().unwrap();
    // Unmutated inputs parse and hold valid rows.
    assert!(xy_ingest::fuzz_rows(&csv, xy_ingest::InputFormat::Csv, &policies).unwrap() > 20);
    assert!(xy_ingest::fuzz_rows(&jsonl, xy_ingest::InputFormat::Jsonl, &policies).unwrap() > 20);
    assert!(xy_ingest::fuzz_rows(&xlsx, xy_ingest::InputFormat::Xlsx, &policies).unwrap() > 5);
    let mut state = 0x9E3779B97F4A7C15u64;
    let mut next = move |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % bound.max(1) as u64) as usize
    };
    for (input, format, rounds) in [
        (&csv, xy_ingest::InputFormat::Csv, 400),
        (&jsonl, xy_ingest::InputFormat::Jsonl, 400),
        (&xlsx, xy_ingest::InputFormat::Xlsx, 60),
    ] {
        for _ in 0..rounds {
            let mut m = input.clone();
            for _ in 0..1 + next(4) {
                match next(4) {
                    0 => m.truncate(next(m.len())),
                    1 => {
                        let i = next(m.len());
                        if let Some(b) = m.get_mut(i) {
                            *b ^= 1 << next(8);
                        }
                    }
                    2 => {
                        let (a, len) = (next(m.len()), next(64));
                        let span: Vec<u8> = m.iter().skip(a).take(len).copied().collect();
                        let at = next(m.len());
                        m.splice(at..at, span);
                    }
                    _ => {
                        let a = next(m.len());
                        let b = (a + next(32)).min(m.len());
                        m.drain(a..b);
                    }
                }
            }
            let _ = xy_ingest::fuzz_rows(&m, format, &policies);
        }
    }
}
