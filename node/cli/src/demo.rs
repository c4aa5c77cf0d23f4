//! `xinyong-node demo`: a node on an embedded SQLite store ingests generated department data in
//! several formats and encodings, prints what happened to every batch, the data quality and the audit
//! state, sends the reports from a prefecture to the province over the ShangMi QUIC transport (in
//! SM2-signed, SM4-sealed envelopes), and then serves the HTTP API (or exits with --exit-when-done).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use xy_ingest::IngestOptions;
use xy_ingest::view::{Disclosure, record_view};
use xy_store::RecordFilter;
use xy_synth::{CsvEncoding, Generator, Kind, SynthConfig, Version};

use crate::commands::{print_result, render_quality, serve_node};
use crate::config::{self, NodeConfig, now_cst};

#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Data directory of the demonstration node.
    #[arg(long, default_value = "./xinyong-demo")]
    data_dir: PathBuf,
    /// Exit after the demonstration instead of serving the API.
    #[arg(long)]
    exit_when_done: bool,
    /// HTTP listen address while serving.
    #[arg(long, default_value = "127.0.0.1:8640")]
    listen: String,
    /// Rows per generated file.
    #[arg(long, default_value_t = 2000)]
    rows: usize,
}

struct DemoFile {
    name: &'static str,
    what: &'static str,
    kind: Kind,
    version: Version,
    encoding: Option<CsvEncoding>,
    crlf: bool,
    seed: u64,
}

const FILES: [DemoFile; 4] = [
    DemoFile {
        name: "成都市场监管-行政处罚-v2.csv",
        what: "行政处罚, standard v2.0, UTF-8 CSV",
        kind: Kind::Penalty,
        version: Version::V2,
        encoding: Some(CsvEncoding::Utf8),
        crlf: false,
        seed: 11,
    },
    DemoFile {
        name: "成都市场监管-行政许可-v1-gbk.csv",
        what: "行政许可, legacy v1 fields, GBK CSV with CRLF",
        kind: Kind::Licence,
        version: Version::V1,
        encoding: Some(CsvEncoding::Gbk),
        crlf: true,
        seed: 12,
    },
    DemoFile {
        name: "成都市场监管-行政处罚-v1-bom.csv",
        what: "行政处罚, legacy v1 fields, UTF-8 CSV with BOM",
        kind: Kind::Penalty,
        version: Version::V1,
        encoding: Some(CsvEncoding::Utf8Bom),
        crlf: true,
        seed: 13,
    },
    DemoFile {
        name: "成都市场监管-行政许可-v2.jsonl",
        what: "行政许可, standard v2.0, JSON lines (HTTP-push style)",
        kind: Kind::Licence,
        version: Version::V2,
        encoding: None,
        crlf: false,
        seed: 14,
    },
];

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let (today, now) = now_cst();
    let inbox = args.data_dir.join("inbox");
    std::fs::create_dir_all(&inbox).with_context(|| format!("creating {}", inbox.display()))?;
    println!(
        "== xinyong demo: one node on an embedded SQLite store in {}",
        args.data_dir.display()
    );
    println!("\n-- 1. departments hand over files (generated, seeded, with realistic defects)");
    let mut paths = Vec::new();
    for f in &FILES {
        let mut cfg = SynthConfig::new(f.seed, f.kind, today);
        cfg.version = f.version;
        let generator = Generator::new(cfg);
        let headers = generator.headers().to_vec();
        let path = inbox.join(f.name);
        let file = std::fs::File::create(&path)?;
        let rows = generator.take(args.rows);
        let defects = match f.encoding {
            Some(enc) => xy_synth::write_csv(file, &headers, rows, enc, f.crlf)?,
            None => xy_synth::write_jsonl(file, &headers, rows)?,
        };
        let injected = defects
            .iter()
            .filter(|d| d.expected_outcome() == "rejected")
            .count();
        println!(
            "   {}: {} rows, {} ({} with injected errors)",
            f.name,
            defects.len(),
            f.what,
            injected
        );
        paths.push(path);
    }

    let node = config::open_with(&args.data_dir, NodeConfig::default()).await?;
    println!(
        "\n-- 2. ingest: parse → map v1→v2 → clean → validate → dedup → store (one transaction per batch)"
    );
    let options = IngestOptions {
        category: None,
        source_unit: None,
        operator: "demo".into(),
        today,
        now: now.clone(),
    };
    let reports = args.data_dir.join("reports");
    std::fs::create_dir_all(&reports)?;
    let mut first_rejected = None;
    let mut report_paths = Vec::new();
    for path in &paths {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("input");
        let report_path = reports.join(format!("{name}.report.jsonl"));
        let report = Box::new(std::fs::File::create(&report_path)?);
        let result = node
            .ingestor
            .ingest_file(path, None, &options, Some(report), None)
            .await?;
        print_result(&result);
        if first_rejected.is_none() && result.counts.rejected > 0 {
            first_rejected = Some(report_path.clone());
        }
        println!("   per-row report: {}", report_path.display());
        report_paths.push(report_path);
    }
    if let Some(p) = first_rejected {
        println!("\n   examples of rejected rows, with the reasons the source unit gets back:");
        let text = std::fs::read_to_string(&p)?;
        for line in text.lines().filter(|l| l.contains("\"rejected\"")).take(4) {
            println!("   {line}");
        }
    }

    println!("\n-- 3. data quality (M2)");
    for line in render_quality(&node.stores.quality_report().await?, "text")?.lines() {
        println!("   {line}");
    }

    println!(
        "\n-- 4. query (D3): records of a natural person, looked up by identity number through the blind index; output masked"
    );
    let sample = node
        .stores
        .collection
        .query(&RecordFilter {
            limit: Some(200),
            ..Default::default()
        })
        .await?;
    let person = sample.iter().find(|r| r.subject_code.is_none());
    if let Some(r) = person {
        let full = record_view(r, &node.keys, Disclosure::Unmasked)?;
        let id = full["fields"]
            .as_object()
            .and_then(|f| f.iter().find(|(k, _)| k.ends_with("_XDR_ZJHM")))
            .and_then(|(_, v)| v.as_str())
            .unwrap_or_default()
            .to_owned();
        let (code, index, shown) = xy_ingest::subject_lookup(&id, &node.keys);
        let found = node
            .stores
            .collection
            .query(&RecordFilter {
                subject_code: code,
                subject_index: index,
                ..Default::default()
            })
            .await?;
        node.stores
            .collection
            .log_access(
                &now,
                "query",
                "demo",
                serde_json::json!({ "via": "demo", "subject": shown, "returned": found.len() }),
            )
            .await?;
        println!("   subject {shown}: {} record(s)", found.len());
        if let Some(first) = found.first() {
            let view = record_view(first, &node.keys, Disclosure::Masked)?;
            println!("{}", indent(&serde_json::to_string_pretty(&view)?));
        }
    }

    println!("\n-- 5. audit: the data log is an SM3 hash chain");
    let audit = node.stores.collection.verify_audit().await?;
    println!(
        "   {} entries, {}",
        audit.entries,
        if audit.is_intact() {
            "chain intact".to_owned()
        } else {
            format!("BROKEN: {:?}", audit.problems)
        }
    );
    let records = node.stores.collection.record_count().await?;
    println!(
        "\n   collection store (归集共享库) now holds {records} current records; identity numbers are SM4-encrypted at rest"
    );
    println!(
        "   (running the demo again stores nothing new: rows come back as duplicates, and corrections inside a file replay as updates)"
    );

    println!(
        "\n-- 6. the ShangMi transport (X1): chengdu (510100) sends its reports to the province (510000)"
    );
    for line in crate::transport::demo_exchange(&args.data_dir, &report_paths).await? {
        println!("   {line}");
    }

    if args.exit_when_done {
        node.stores.close().await;
        return Ok(ExitCode::SUCCESS);
    }
    println!("\n-- 7. serving the HTTP API; try (Ctrl-C to stop):");
    let token_path = args.data_dir.join("api.token");
    println!("   TOKEN=$(cat {})", token_path.display());
    println!(
        "   curl -H \"Authorization: Bearer $TOKEN\" 'http://{}/api/v1/quality?format=text'",
        args.listen
    );
    println!(
        "   curl -H \"Authorization: Bearer $TOKEN\" 'http://{}/api/v1/records?category=xzcf&limit=2'",
        args.listen
    );
    serve_node(node, &args.listen, None).await?;
    Ok(ExitCode::SUCCESS)
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("   {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
