//! Ingest end to end: generated data in every format and encoding, every row accounted for.

use std::fs::File;

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
