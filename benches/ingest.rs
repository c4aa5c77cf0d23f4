//! `cargo bench --bench ingest`: 1,000,000 generated 行政处罚 rows from CSV into SQLite through the
//! whole pipeline, beside a bare SQLite bulk insert of the same pre-parsed rows measured in the same
//! run. Ends with `BENCH ingest rows_per_s=<n> ratio_vs_bare_insert=<r> peak_rss_mib=<m>`.
//!
//! `XY_BENCH_ROWS` overrides the row count (for a quick look).

use std::fs::File;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::NaiveDate;
use xy_ingest::{IngestOptions, Ingestor};
use xy_policy::PolicySet;
use xy_store::{BatchSummary, NodeKeys, NodeStores, OutcomeCounts, StoreLocation};
use xy_synth::{CsvEncoding, Generator, Kind, SynthConfig};

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    xy_benches::init_logging();
    let rows = xy_benches::rows(1_000_000);
    let runtime = xy_benches::runtime()?;
    let dir = tempfile::tempdir()?;
    let today = NaiveDate::from_ymd_opt(2026, 11, 26).context("date")?;
    let input = dir.path().join("xzcf.csv");

    let t = Instant::now();
    let generator = Generator::new(SynthConfig::new(20261126, Kind::Penalty, today));
    let headers = generator.headers().to_vec();
    xy_synth::write_csv(
        File::create(&input)?,
        &headers,
        generator.take(rows),
        CsvEncoding::Utf8,
        false,
    )?;
    let size_mib = std::fs::metadata(&input)?.len() as f64 / (1 << 20) as f64;
    println!(
        "generated {rows} rows ({size_mib:.0} MiB CSV) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let rss_before = peak_rss_mib();

    let options = IngestOptions {
        category: None,
        source_unit: None,
        operator: "bench".into(),
        today,
        now: "2026-11-26T10:00:00+08:00".into(),
    };
    let keys = NodeKeys::from_master(&[7u8; 32]);
    let policies = PolicySet::builtin()?;

    let only_pipeline = std::env::var("XY_BENCH_ONLY").is_ok_and(|v| v == "pipeline");
    // The CPU stage alone (parse, map, clean, validate, seal), for orientation.
    if !only_pipeline {
        let stores = runtime.block_on(NodeStores::open(StoreLocation::Sqlite(
            dir.path().join("cpu-only"),
        )))?;
        let ingestor = Ingestor::new(policies.clone(), stores.collection.clone(), keys.clone());
        let t = Instant::now();
        let n: usize = ingestor
            .prepared_records(&input, &options)?
            .map(|c| c.len())
            .sum();
        println!(
            "cpu stage alone: {n} valid rows prepared in {:.2} s",
            t.elapsed().as_secs_f64()
        );
    }

    // The pipeline: parse, map, clean, validate, seal, dedup, store.
    let (ingest_time, result) = runtime.block_on(async {
        let stores = NodeStores::open(StoreLocation::Sqlite(dir.path().join("pipeline"))).await?;
        let ingestor = Ingestor::new(policies.clone(), stores.collection.clone(), keys.clone());
        let t = Instant::now();
        let result = ingestor
            .ingest_file(&input, None, &options, None, None)
            .await?;
        let elapsed = t.elapsed();
        stores.close().await;
        anyhow::Ok((elapsed, result))
    })?;
    let peak_rss = peak_rss_mib();
    let c = result.counts;
    println!(
        "pipeline: {} rows in {:.2} s (stored {}, updated {}, duplicate {}, rejected {}); peak RSS {peak_rss:.0} MiB (before ingest {rss_before:.0} MiB)",
        c.total,
        ingest_time.as_secs_f64(),
        c.stored,
        c.updated,
        c.duplicate,
        c.rejected
    );

    if only_pipeline {
        return Ok(());
    }
    // The baseline: the same rows, already parsed into their stored form (not timed), inserted
    // with the same multi-row statements into a fresh store in one transaction (timed).
    let bare_time = runtime.block_on(async {
        let stores = NodeStores::open(StoreLocation::Sqlite(dir.path().join("bare"))).await?;
        let ingestor = Ingestor::new(policies.clone(), stores.collection.clone(), keys.clone());
        let mut chunks = ingestor.prepared_records(&input, &options)?;
        let mut writer = stores.collection.begin_batch().await?;
        let mut timed = Duration::ZERO;
        let mut inserted = 0u64;
        for chunk in chunks.by_ref() {
            inserted += chunk.len() as u64;
            let t = Instant::now();
            writer.insert("bare", &options.now, chunk).await?;
            writer.flush().await?;
            timed += t.elapsed();
        }
        let summary = BatchSummary {
            batch_id: "bare".into(),
            operator: "bench".into(),
            source_unit: String::new(),
            category: "xzcf".into(),
            source: "bench".into(),
            counts: OutcomeCounts {
                total: inserted,
                stored: inserted,
                ..Default::default()
            },
            detail: serde_json::Value::Null,
        };
        let t = Instant::now();
        writer.commit(&options.now, &summary).await?;
        timed += t.elapsed();
        stores.close().await;
        println!(
            "bare insert: {inserted} rows in {:.2} s",
            timed.as_secs_f64()
        );
        anyhow::Ok(timed)
    })?;

    let rows_per_s = c.total as f64 / ingest_time.as_secs_f64();
    let ratio = ingest_time.as_secs_f64() / bare_time.as_secs_f64();
    println!(
        "BENCH ingest rows_per_s={rows_per_s:.0} ratio_vs_bare_insert={ratio:.2} peak_rss_mib={peak_rss:.0}"
    );
    Ok(())
}
