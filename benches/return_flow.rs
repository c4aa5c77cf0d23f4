//! `cargo bench --bench return_flow`: the return flow of 1,000,000 records from the province to a
//! prefecture over loopback QUIC — built from the province's theme store, signed, sent, staged,
//! verified, mapped and upserted into the prefecture's SQLite return-flow store — beside the bare
//! ingest rate of the same rows (CSV through the whole ingest pipeline into SQLite) measured in the
//! same run. The rows are generated, ingested by one prefecture, shared up and governed first.
//! Ends with `BENCH return_flow rows_per_s=<n> ratio_vs_ingest=<r>`.
//!
//! `XY_BENCH_ROWS` overrides the row count (for a quick look).

use std::fs::File;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use chrono::NaiveDate;
use xy_exchange::Flow;
use xy_federation::local::{LocalNode, default_themes};
use xy_ingest::IngestOptions;
use xy_synth::{CsvEncoding, Defect, Generator, Kind, SynthConfig};
use xy_transport::devpki;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    xy_benches::init_logging();
    let rows = xy_benches::rows(1_000_000);
    let runtime = xy_benches::runtime()?;
    runtime.block_on(run(rows))
}

async fn run(rows: usize) -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let today = NaiveDate::from_ymd_opt(2026, 11, 26).context("date")?;
    let layout = devpki::init(&root.path().join("pki"), false, devpki::unix_now())?;
    let clock: xy_federation::flows::Clock = Arc::new(|| {
        let at = xy_ingest::now_china().1;
        (at, devpki::unix_now())
    });
    let policies = xy_policy::PolicySet::builtin()?;
    let themes = default_themes(&["510700"], &policies);
    let province = LocalNode::start(
        &layout,
        "province",
        &root.path().join("province"),
        themes,
        clock.clone(),
    )
    .await?;
    let chengdu = LocalNode::start(
        &layout,
        "chengdu",
        &root.path().join("chengdu"),
        vec![],
        clock.clone(),
    )
    .await?;
    let mianyang = LocalNode::start(
        &layout,
        "mianyang",
        &root.path().join("mianyang"),
        vec![],
        clock,
    )
    .await?;

    // The rows: valid 行政处罚 records (a fifth natural persons), as a department's CSV.
    let t = Instant::now();
    let mut config = SynthConfig::new(20261126, Kind::Penalty, today);
    for defect in Defect::REJECTING {
        config.set_rate(defect, 0.0);
    }
    config.set_rate(Defect::Duplicate, 0.0);
    config.set_rate(Defect::Changed, 0.0);
    let generator = Generator::new(config);
    let headers = generator.headers().to_vec();
    let input = root.path().join("xzcf.csv");
    xy_synth::write_csv(
        File::create(&input)?,
        &headers,
        generator.take(rows),
        CsvEncoding::Utf8,
        false,
    )?;
    println!(
        "generated {rows} rows in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // Baseline, same run: the bare ingest of the same rows into Chengdu's collection store.
    let options = IngestOptions {
        category: None,
        source_unit: None,
        operator: "bench".into(),
        today,
        now: xy_ingest::now_china().1,
    };
    let t = Instant::now();
    let ingested = chengdu
        .ingestor
        .ingest_file(&input, None, &options, None, None)
        .await?;
    let ingest_s = t.elapsed().as_secs_f64();
    let ingest_rate = ingested.counts.total as f64 / ingest_s;
    println!(
        "ingest: {} rows in {ingest_s:.1} s = {ingest_rate:.0} rows/s ({:?})",
        ingested.counts.total, ingested.counts
    );

    let t = Instant::now();
    let shared = chengdu.push_to(&province, Flow::Share).await?;
    println!(
        "share up: {} records in {} batches, {:.1} s",
        shared.records,
        shared.batches,
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let governed = province.node.govern_pending().await?;
    println!(
        "governance: {governed:?} in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // The measured flow.
    let t = Instant::now();
    let returned = province.push_to(&mianyang, Flow::Return).await?;
    let return_s = t.elapsed().as_secs_f64();
    let held = mianyang.node.stores.return_flow.record_count().await?;
    anyhow::ensure!(
        held as u64 == returned.records
            && returned.records == governed.passed - governed.duplicates,
        "returned {} records, the store holds {held}, governance passed {}",
        returned.records,
        governed.passed
    );
    let rate = returned.records as f64 / return_s;
    println!(
        "return flow: {} records in {} batches, {return_s:.1} s = {rate:.0} rows/s",
        returned.records, returned.batches
    );
    for node in [&province, &chengdu, &mianyang] {
        node.stop().await;
    }
    println!(
        "BENCH return_flow rows_per_s={rate:.0} ratio_vs_ingest={:.2}",
        rate / ingest_rate
    );
    Ok(())
}
