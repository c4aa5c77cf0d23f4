//! The node's commands.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use xy_ingest::view::{Disclosure, record_view};
use xy_ingest::{IngestOptions, IngestResult, InputFormat};
use xy_store::RecordFilter;

use crate::NodeArgs;
use crate::config::{self, Node, now_cst};

#[derive(Debug, clap::Args)]
pub(crate) struct IngestArgs {
    /// Files or directories to ingest (.csv .txt .jsonl .ndjson .xlsx); each file is one batch.
    #[arg(required_unless_present = "db_url")]
    inputs: Vec<PathBuf>,
    #[command(flatten)]
    node: NodeArgs,
    /// The source unit's unified social credit code (fills rows that lack it; others are rejected).
    #[arg(long)]
    source_unit: Option<String>,
    /// Category code or name (xzcf 行政处罚, xzxk 行政许可, …); detected from the header if absent.
    #[arg(long)]
    category: Option<String>,
    /// Write the per-row report (JSON lines) here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Input format, when the file extension does not tell (csv, jsonl, xlsx).
    #[arg(long)]
    format: Option<String>,
    /// Read a database table instead of files: a sqlx URL (sqlite://…, postgres://…).
    #[arg(long, requires = "table")]
    db_url: Option<String>,
    /// The table to read with --db-url.
    #[arg(long, requires = "db_url")]
    table: Option<String>,
    /// Read the table in the order of this column, so that report row numbers are reproducible.
    #[arg(long, requires = "table")]
    order_by: Option<String>,
    /// Who runs this ingest (recorded in the data log).
    #[arg(long, env = "USER", default_value = "operator")]
    operator: String,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

fn collect_inputs(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(input)
                .with_context(|| format!("reading directory {}", input.display()))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file() && InputFormat::from_path(p).is_ok())
                .collect();
            found.sort();
            if found.is_empty() {
                eprintln!(
                    "warning: {} holds no .csv/.txt/.jsonl/.ndjson/.xlsx file",
                    input.display()
                );
            }
            files.extend(found);
        } else if input.is_file() {
            files.push(input.clone());
        } else {
            bail!("{} does not exist", input.display());
        }
    }
    Ok(files)
}

fn report_path(base: &Path, input: &Path, several: bool) -> PathBuf {
    if !several {
        return base.to_path_buf();
    }
    let stem = base
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("report");
    let name = input
        .file_name()
        .and_then(|s| s.to_str())
        .unwrap_or("input");
    base.with_file_name(format!("{stem}.{name}.jsonl"))
}

fn progress_bar(path: &Path, counter: Arc<AtomicU64>) -> Option<tokio::task::JoinHandle<()>> {
    let size = std::fs::metadata(path).ok()?.len();
    let bar = indicatif::ProgressBar::new(size);
    if bar.is_hidden() {
        return None;
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_owned(),
    );
    Some(tokio::spawn(async move {
        loop {
            let done = counter.load(Ordering::Relaxed);
            bar.set_position(done);
            if done >= size {
                bar.finish_and_clear();
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }))
}

pub(crate) fn print_result(r: &IngestResult) {
    let c = &r.counts;
    println!(
        "{}: batch {} ({}, {}{}) — {} rows: {} stored, {} updated, {} duplicate, {} rejected",
        r.source,
        r.batch_id,
        r.category,
        r.format,
        if r.legacy_fields {
            ", v1 fields mapped"
        } else {
            ""
        },
        c.total,
        c.stored,
        c.updated,
        c.duplicate,
        c.rejected
    );
    if !r.unknown_columns.is_empty() {
        println!(
            "  ignored columns not in the standard: {}",
            r.unknown_columns.join(", ")
        );
    }
}

pub(crate) async fn ingest(args: IngestArgs) -> anyhow::Result<ExitCode> {
    let node = config::open(&args.node).await?;
    let (today, now) = now_cst();
    let options = IngestOptions {
        category: args.category.clone(),
        source_unit: args.source_unit.clone(),
        operator: args.operator.clone(),
        today,
        now,
    };
    let format = match &args.format {
        Some(f) => Some(
            InputFormat::from_name(f)
                .with_context(|| format!("unknown format {f:?} (csv, jsonl, xlsx)"))?,
        ),
        None => None,
    };
    let open_report = |path: &Path| -> anyhow::Result<Box<dyn Write + Send>> {
        Ok(Box::new(std::fs::File::create(path).with_context(
            || format!("creating report {}", path.display()),
        )?))
    };
    let mut failed = 0;
    let mut results = Vec::new();
    if let (Some(url), Some(table)) = (&args.db_url, &args.table) {
        let report = args.report.as_deref().map(open_report).transpose()?;
        match node
            .ingestor
            .ingest_table(url, table, args.order_by.as_deref(), &options, report)
            .await
        {
            Ok(r) => {
                if !args.json {
                    print_result(&r);
                }
                results.push(r);
            }
            Err(e) => {
                eprintln!("error: table {table}: {e}");
                failed += 1;
            }
        }
    }
    let files = collect_inputs(&args.inputs)?;
    let several = files.len() > 1;
    for file in &files {
        let report = args
            .report
            .as_ref()
            .map(|b| report_path(b, file, several))
            .as_deref()
            .map(open_report)
            .transpose()?;
        let counter = Arc::new(AtomicU64::new(0));
        let bar = progress_bar(file, counter.clone());
        let result = node
            .ingestor
            .ingest_file(file, format, &options, report, Some(counter.clone()))
            .await;
        if let Some(bar) = bar {
            counter.store(u64::MAX, Ordering::Relaxed);
            let _ = bar.await;
        }
        match result {
            Ok(r) => {
                if !args.json {
                    print_result(&r);
                }
                results.push(r);
            }
            Err(e) => {
                eprintln!("error: {}: {e}", file.display());
                failed += 1;
            }
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    node.stores.close().await;
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[derive(Debug, clap::Args)]
pub(crate) struct ReportArgs {
    /// The batch id (printed by ingest).
    batch_id: String,
    #[command(flatten)]
    node: NodeArgs,
    /// jsonl or csv.
    #[arg(long, default_value = "jsonl")]
    format: String,
    /// Only rejected rows and rows with warnings.
    #[arg(long)]
    only_problems: bool,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Who reads the report (recorded in the data log).
    #[arg(long, env = "USER", default_value = "operator")]
    operator: String,
}

pub(crate) async fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let node = config::open(&args.node).await?;
    let rows = node.stores.collection.batch_report(&args.batch_id).await?;
    let (_, now) = now_cst();
    node.stores
        .collection
        .log_access(
            &now,
            "report",
            &args.operator,
            serde_json::json!({ "via": "cli", "batch": args.batch_id, "rows": rows.len() }),
        )
        .await?;
    let mut out: Box<dyn Write> = match &args.output {
        Some(p) => {
            Box::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    match args.format.as_str() {
        "jsonl" => {
            for r in rows
                .iter()
                .filter(|r| !args.only_problems || !r.faults.is_empty() || !r.warnings.is_empty())
            {
                xy_ingest::report::write_jsonl_line(&mut out, r)?;
            }
        }
        "csv" => xy_ingest::report::write_csv(&mut out, &rows, args.only_problems)?,
        other => bail!("unknown format {other:?} (jsonl, csv)"),
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub(crate) struct QueryArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// A subject: unified social credit code, or a personal identity number.
    #[arg(long)]
    subject: Option<String>,
    /// Category code.
    #[arg(long)]
    category: Option<String>,
    /// Source unit USCC.
    #[arg(long)]
    source_unit: Option<String>,
    /// Decision date from (inclusive).
    #[arg(long)]
    from: Option<String>,
    /// Decision date to (inclusive).
    #[arg(long)]
    to: Option<String>,
    /// Status (active, inactive).
    #[arg(long)]
    status: Option<String>,
    /// At most this many records.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Skip this many records.
    #[arg(long, default_value_t = 0)]
    offset: u32,
    /// Show personal data in clear (privileged; recorded in the data log as an unmasked read).
    #[arg(long)]
    unmasked: bool,
    /// Who asks (recorded in the data log).
    #[arg(long, env = "USER", default_value = "operator")]
    operator: String,
}

fn date_arg(d: &Option<String>) -> anyhow::Result<Option<String>> {
    d.as_deref()
        .map(|s| {
            xy_policy::dates::parse_date(s)
                .map(xy_policy::dates::format_date)
                .map_err(|_| anyhow::anyhow!("bad date {s:?} (YYYY/MM/DD, YYYY-MM-DD or YYYYMMDD)"))
        })
        .transpose()
}

pub(crate) async fn query(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let node = config::open(&args.node).await?;
    let mut filter = RecordFilter {
        category: args.category.clone(),
        source_unit: args.source_unit.clone(),
        decided_from: date_arg(&args.from)?,
        decided_to: date_arg(&args.to)?,
        status: args.status.clone(),
        limit: Some(args.limit),
        offset: Some(args.offset),
        ..Default::default()
    };
    let mut shown_subject = None;
    if let Some(s) = &args.subject {
        let (code, index, shown) = xy_ingest::subject_lookup(s, &node.keys);
        filter.subject_code = code;
        filter.subject_index = index;
        shown_subject = Some(shown);
    }
    let records = node.stores.collection.query(&filter).await?;
    let disclosure = if args.unmasked {
        Disclosure::Unmasked
    } else {
        Disclosure::Masked
    };
    let (_, now) = now_cst();
    node.stores
        .collection
        .log_access(
            &now,
            if args.unmasked { "unmasked_read" } else { "query" },
            &args.operator,
            serde_json::json!({ "via": "cli", "subject": shown_subject, "category": args.category,
                "source_unit": args.source_unit, "from": args.from, "to": args.to, "returned": records.len() }),
        )
        .await?;
    let views = records
        .iter()
        .map(|r| record_view(r, &node.keys, disclosure))
        .collect::<Result<Vec<_>, _>>()?;
    println!(
        "{}",
        serde_json::to_string_pretty(
            &serde_json::json!({ "count": views.len(), "records": views })
        )?
    );
    node.stores.close().await;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub(crate) struct HistoryArgs {
    /// Record id.
    id: i64,
    #[command(flatten)]
    node: NodeArgs,
    /// Who asks (recorded in the data log).
    #[arg(long, env = "USER", default_value = "operator")]
    operator: String,
}

pub(crate) async fn history(args: HistoryArgs) -> anyhow::Result<ExitCode> {
    let node = config::open(&args.node).await?;
    let versions = node.stores.collection.history(args.id).await?;
    let (_, now) = now_cst();
    node.stores
        .collection
        .log_access(
            &now,
            "history",
            &args.operator,
            serde_json::json!({ "via": "cli", "record": args.id, "returned": versions.len() }),
        )
        .await?;
    let views = versions
        .iter()
        .map(|r| record_view(r, &node.keys, Disclosure::Masked))
        .collect::<Result<Vec<_>, _>>()?;
    println!(
        "{}",
        serde_json::to_string_pretty(
            &serde_json::json!({ "record": args.id, "earlier_versions": views })
        )?
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub(crate) struct QualityArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// text, json or csv.
    #[arg(long, default_value = "text")]
    format: String,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

pub(crate) fn render_quality(
    lines: &[xy_store::quality::QualityLine],
    format: &str,
) -> anyhow::Result<String> {
    Ok(match format {
        "text" => xy_ingest::report::quality_text(lines),
        "json" => serde_json::to_string_pretty(lines)? + "\n",
        "csv" => xy_ingest::report::quality_csv(lines),
        other => bail!("unknown format {other:?} (text, json, csv)"),
    })
}

pub(crate) async fn quality(args: QualityArgs) -> anyhow::Result<ExitCode> {
    let node = config::open(&args.node).await?;
    let text = render_quality(&node.stores.quality_report().await?, &args.format)?;
    match &args.output {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn audit_verify(args: NodeArgs) -> anyhow::Result<ExitCode> {
    let node = config::open(&args).await?;
    let report = node.stores.collection.verify_audit().await?;
    if report.is_intact() {
        println!(
            "data log intact: {} entries, hash chain verified (SM3)",
            report.entries
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("data log BROKEN ({} entries checked):", report.entries);
        for p in &report.problems {
            println!("  - {p}");
        }
        Ok(ExitCode::FAILURE)
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct GenerateArgs {
    /// Output file (.csv or .jsonl).
    #[arg(long, short)]
    output: PathBuf,
    /// penalty (行政处罚) or licence (行政许可).
    #[arg(long, default_value = "penalty")]
    kind: String,
    /// Field names: v2 (standard 2.0) or v1 (legacy).
    #[arg(long, default_value = "v2")]
    version: String,
    /// Number of data rows.
    #[arg(long, default_value_t = 1000)]
    rows: usize,
    /// Seed: the same seed writes the same rows.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// CSV encoding: utf8, utf8-bom or gbk.
    #[arg(long, default_value = "utf8")]
    encoding: String,
    /// CRLF line ends.
    #[arg(long)]
    crlf: bool,
    /// Fraction of rows with a defect, as KIND=RATE; repeatable. Kinds: missing-required, bad-uscc,
    /// bad-resident-id, bad-date, future-date, date-order, missing-fine, natural-with-uscc (rejected),
    /// duplicate, changed. Defaults: 0.01 for each rejecting kind, 0.02 duplicate, 0.02 changed.
    #[arg(long = "defect-rate", value_name = "KIND=RATE")]
    defect_rates: Vec<String>,
}

pub(crate) fn generate(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    let kind = match args.kind.as_str() {
        "penalty" | "xzcf" => xy_synth::Kind::Penalty,
        "licence" | "license" | "xzxk" => xy_synth::Kind::Licence,
        other => bail!("unknown kind {other:?} (penalty, licence)"),
    };
    let version = match args.version.as_str() {
        "v2" => xy_synth::Version::V2,
        "v1" => xy_synth::Version::V1,
        other => bail!("unknown version {other:?} (v1, v2)"),
    };

    let (today, _) = now_cst();
    let mut cfg = xy_synth::SynthConfig::new(args.seed, kind, today);
    cfg.version = version;
    for spec in &args.defect_rates {
        let (kind, rate) = spec
            .split_once('=')
            .with_context(|| format!("--defect-rate {spec:?}: expected KIND=RATE"))?;
        let defect = xy_synth::Defect::from_name(kind)
            .with_context(|| format!("--defect-rate: unknown kind {kind:?}"))?;
        let rate: f64 = rate
            .parse()
            .with_context(|| format!("--defect-rate {spec:?}: {rate:?} is not a number"))?;
        if !(0.0..=1.0).contains(&rate) {
            bail!("--defect-rate {spec:?}: the rate must be between 0 and 1");
        }
        cfg.set_rate(defect, rate);
    }
    if cfg.total_rate() > 1.0 {
        bail!(
            "the defect rates add up to {:.3}, more than 1",
            cfg.total_rate()
        );
    }
    let generator = xy_synth::Generator::new(cfg);
    let headers = generator.headers().to_vec();
    let file = std::fs::File::create(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let rows = generator.take(args.rows);
    let is_jsonl = args
        .output
        .extension()
        .is_some_and(|e| e == "jsonl" || e == "ndjson");
    let defects = if is_jsonl {
        xy_synth::write_jsonl(file, &headers, rows)?
    } else {
        let encoding = match args.encoding.as_str() {
            "utf8" => xy_synth::CsvEncoding::Utf8,
            "utf8-bom" => xy_synth::CsvEncoding::Utf8Bom,
            "gbk" => xy_synth::CsvEncoding::Gbk,
            other => bail!("unknown encoding {other:?} (utf8, utf8-bom, gbk)"),
        };
        xy_synth::write_csv(file, &headers, rows, encoding, args.crlf)?
    };
    let defective = defects
        .iter()
        .filter(|d| **d != xy_synth::Defect::None)
        .count();
    println!(
        "wrote {} rows to {} ({defective} with injected defects)",
        defects.len(),
        args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// HTTP listen address (default from the config, else 127.0.0.1:8640).
    #[arg(long)]
    listen: Option<String>,
}

pub(crate) async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let node = config::open(&args.node).await?;
    let listen = args
        .listen
        .clone()
        .or(node.config.listen.clone())
        .unwrap_or_else(|| "127.0.0.1:8640".into());
    serve_node(node, &listen, None, None).await?;
    Ok(ExitCode::SUCCESS)
}

/// Serve the API of `node` until Ctrl-C (or until `stop` resolves). `flows` names the flow views
/// of a node whose flows run elsewhere (the demo); `serve` sets them from `[flows]`.
pub(crate) async fn serve_node(
    node: Node,
    listen: &str,
    stop: Option<tokio::sync::oneshot::Receiver<()>>,
    flows: Option<xy_node_api::FlowViews>,
) -> anyhow::Result<()> {
    let token = config::api_token(&node.data_dir)?;
    let max_upload = node.config.max_upload_mib.unwrap_or(1024) * 1024 * 1024;
    let state = xy_node_api::AppState::new(
        node.stores.clone(),
        node.ingestor.clone(),
        node.keys.clone(),
        token,
        node.data_dir.join("uploads"),
        max_upload,
    );
    if let Some(every) = node.config.quality_report_interval_secs {
        spawn_quality_schedule(
            node.stores.clone(),
            node.data_dir.join("reports"),
            Duration::from_secs(every.max(1)),
        );
    }
    if let Some(views) = flows {
        state.set_flows(views);
    }
    if let Some(peer) = &node.config.peer {
        if let Some(coordinator) = &peer.coordinator {
            // The coordinator's single-sign-on tokens, verified offline with the key of the
            // cached configuration (kept fresh by the peer endpoint's coordinator link).
            let client = crate::transport::coordinator_client(&node, peer, coordinator)?;
            let certificate = crate::transport::read_certificate(&crate::transport::resolve_in(
                &node.data_dir,
                &peer.cert,
            ))?;
            let jurisdiction = xy_gmtls::pki::peer_identity(&certificate)?
                .context("the node certificate names no jurisdiction")?
                .jurisdiction;
            state.set_single_sign_on(xy_node_api::SingleSignOn {
                jurisdiction,
                key: std::sync::Arc::new(move |now| {
                    let config = client.cached_config(now).ok().flatten()?;
                    xy_coordination::sso_key(&config).ok()
                }),
            });
        }
        let (addr, flow_node) = crate::transport::start_peer_endpoint(&node, peer).await?;
        println!("peer endpoint (QUIC, RFC 8998, ALPN xinyong/1) on {addr}");
        if let Some(flow_node) = flow_node {
            state.set_flows(xy_node_api::FlowViews {
                jurisdiction: flow_node.jurisdiction.clone(),
                is_province: flow_node.role == xy_gmtls::pki::Role::ProvinceNode,
                scenarios: flow_node.scenarios.iter().map(|s| s.name.clone()).collect(),
            });
            println!(
                "flows: {} node {}, a round every {} s",
                flow_node.role,
                flow_node.jurisdiction,
                node.config
                    .flows
                    .as_ref()
                    .and_then(|f| f.interval_secs)
                    .unwrap_or(10)
            );
        }
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    println!(
        "HTTP API on http://{addr} (token in {})",
        node.data_dir.join("api.token").display()
    );
    tracing::info!(%addr, "serving");
    let shutdown = async move {
        match stop {
            Some(rx) => {
                let _ = rx.await;
            }
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    axum::serve(listener, xy_node_api::app(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    node.stores.close().await;
    Ok(())
}

fn spawn_quality_schedule(stores: xy_store::NodeStores, dir: PathBuf, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let result = async {
                let lines = stores.quality_report().await?;
                std::fs::create_dir_all(&dir)?;
                let (_, now) = now_cst();
                let stamp: String = now.chars().filter(char::is_ascii_digit).take(12).collect();
                std::fs::write(
                    dir.join(format!("quality-{stamp}.json")),
                    render_quality(&lines, "json")?,
                )?;
                std::fs::write(
                    dir.join(format!("quality-{stamp}.csv")),
                    render_quality(&lines, "csv")?,
                )?;
                anyhow::Ok(())
            }
            .await;
            match result {
                Ok(()) => tracing::info!(dir = %dir.display(), "quality report written"),
                Err(e) => tracing::error!(error = %e, "scheduled quality report failed"),
            }
        }
    });
}

/// Who runs a command, for the data log: `$USER`, or `operator`.
pub(crate) fn operator() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "operator".into())
}
