//! `xinyong-node`: the exchange node. A thin command line over the library crates.

mod commands;
mod config;
mod demo;
mod flows;
mod transport;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

// mimalloc: rows are allocated on the parsing thread and freed on the writer thread; glibc's
// arena locks serialised the two stages of ingest (measured: 62k → 106k rows/s).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// xinyong exchange node (信用信息共享交换节点): ingest, stores, queries, quality and audit.
#[derive(Debug, Parser)]
#[command(name = "xinyong-node", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the node keeps its data.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct NodeArgs {
    /// Data directory: SQLite stores, node key, API token, reports.
    #[arg(long, env = "XY_DATA_DIR", default_value = "./xinyong-data")]
    data_dir: PathBuf,
    /// PostgreSQL URL for the stores (production); SQLite in the data directory when absent.
    #[arg(long, env = "XY_DATABASE_URL")]
    database_url: Option<String>,
    /// Configuration file (default: <data-dir>/node.toml if it exists).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Ingest credit records from files, a directory, or a database table.
    ///
    /// Every data row ends stored, updated, duplicate or rejected with field-level reasons. With
    /// --report and several inputs, each input gets its own report named REPORT.<input>.jsonl.
    Ingest(commands::IngestArgs),
    /// Print the per-row report of a batch (JSON lines or CSV for the source unit to fix).
    Report(commands::ReportArgs),
    /// Query records by subject (USCC or identity number), category, source unit, dates, status.
    Query(commands::QueryArgs),
    /// Print every version of a record.
    History(commands::HistoryArgs),
    /// Data quality per source unit and category: totals, rejections by rule, timeliness.
    QualityReport(commands::QualityArgs),
    /// Audit commands.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Write deterministic synthetic 双公示 data (for tests, trials and benchmarks).
    Generate(commands::GenerateArgs),
    /// Serve the HTTP API.
    Serve(commands::ServeArgs),
    /// Run the demonstration: a node on an embedded store, generated data ingested, the API served.
    Demo(demo::DemoArgs),
    /// Development PKI (SM2 certificates for a local federation).
    Pki {
        #[command(subcommand)]
        command: transport::PkiCommand,
    },
    /// TLS 1.3 diagnostic with the RFC 8998 ShangMi suites (operators checking a peer).
    Tls {
        #[command(subcommand)]
        command: transport::TlsCommand,
    },
    /// Private set intersection with another node (ECDH-PSI; neither side sees the other's list).
    Psi(transport::PsiArgs),
    /// The federated flows: share up, governance, return flow, scenarios, file exchange.
    Flows {
        #[command(subcommand)]
        command: flows::FlowsCommand,
    },
    /// Where a record is held on this node and where each copy came from (lineage).
    Lineage(flows::LineageArgs),
    /// Withdraw a record at its origin; the retraction reaches every store holding a copy.
    Retract(flows::RetractArgs),
    /// Work orders from the province's governance for this node's source units.
    WorkOrders(flows::WorkOrdersArgs),
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Verify the SM3 hash chain of the data log; exits 1 if an entry was edited or removed.
    Verify {
        #[command(flatten)]
        node: NodeArgs,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("XY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Ingest(a) => commands::ingest(a).await,
            Command::Report(a) => commands::report(a).await,
            Command::Query(a) => commands::query(a).await,
            Command::History(a) => commands::history(a).await,
            Command::QualityReport(a) => commands::quality(a).await,
            Command::Audit {
                command: AuditCommand::Verify { node },
            } => commands::audit_verify(node).await,
            Command::Generate(a) => commands::generate(a),
            Command::Serve(a) => commands::serve(a).await,
            Command::Demo(a) => demo::run(a).await,
            Command::Pki { command } => transport::pki(command),
            Command::Tls { command } => transport::tls(command).await,
            Command::Psi(a) => transport::psi(a).await,
            Command::Flows { command } => flows::command(command).await,
            Command::Lineage(a) => flows::lineage(a).await,
            Command::Retract(a) => flows::retract(a).await,
            Command::WorkOrders(a) => flows::work_orders(a).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
