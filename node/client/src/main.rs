//! `xinyong`: the client that institutions (banks, departments) use to reach a node.
//!
//! `xinyong query --encrypted-score USCC --node ADDR ...` asks the province node for a subject's
//! credit grade computed under encryption (TFHE): the prefectures' indicators are encrypted under
//! this client's key, the province adds and bands them without seeing any plaintext, and only this
//! client decrypts the grade. The keys are generated on first use into `--keys DIR` (the client
//! key never leaves it) and uploaded to the province once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use xy_federation::ScoringClient;
use xy_fhe::{RequesterKeys, ScoringPolicy};
use xy_transport::{Credentials, EndpointOptions, PeerEndpoint};

/// xinyong client for institutions (金融机构等客户端).
#[derive(Debug, Parser)]
#[command(name = "xinyong", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Query a node.
    Query(QueryArgs),
}

#[derive(Debug, Args)]
struct QueryArgs {
    /// The encrypted credit grade of this subject (18-character unified social credit code).
    #[arg(long, value_name = "USCC")]
    encrypted_score: String,
    /// Also decrypt the clamped score, not only the grade.
    #[arg(long)]
    score: bool,
    /// Print which jurisdictions contributed (never their values).
    #[arg(long)]
    explain: bool,
    /// The province node's QUIC address.
    #[arg(long)]
    node: SocketAddr,
    /// The name in the province node's certificate.
    #[arg(long, default_value = "province.xinyong.internal")]
    server_name: String,
    /// This institution's certificate (PEM, SM2, role institution-client).
    #[arg(long)]
    cert: PathBuf,
    /// Its private key (PKCS#8 PEM).
    #[arg(long)]
    key: PathBuf,
    /// Trust anchors (PEM).
    #[arg(long)]
    ca: PathBuf,
    /// Directory of this client's TFHE keys (generated on first use).
    #[arg(long, default_value = "xinyong-keys")]
    keys: PathBuf,
}

const KEY_FILES: [&str; 3] = ["client_key.tfhe", "server_key.tfhe", "public_key.tfhe"];

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .with_context(|| format!("writing {}", path.display()))
}

/// Load the keys from `dir`, or generate and save them there.
fn load_or_generate_keys(dir: &Path) -> anyhow::Result<RequesterKeys> {
    let paths: Vec<PathBuf> = KEY_FILES.iter().map(|f| dir.join(f)).collect();
    if paths.iter().all(|p| p.is_file()) {
        let parts = [
            std::fs::read(&paths[0])?,
            std::fs::read(&paths[1])?,
            std::fs::read(&paths[2])?,
        ];
        return RequesterKeys::from_bytes(&parts)
            .with_context(|| format!("loading the keys in {}", dir.display()));
    }
    eprintln!(
        "xinyong: generating TFHE keys into {} (once; takes a few seconds)",
        dir.display()
    );
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let keys = RequesterKeys::generate();
    for (path, bytes) in paths.iter().zip(keys.to_bytes()?) {
        write_private(path, &bytes)?;
    }
    Ok(keys)
}

async fn query(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let credentials = Credentials::load(&args.cert, &args.key, &args.ca, None)?;
    let keys_dir = args.keys.clone();
    let keys = tokio::task::spawn_blocking(move || load_or_generate_keys(&keys_dir)).await??;
    let policy = Arc::new(ScoringPolicy::enterprise());
    let client = ScoringClient::new(keys, Arc::clone(&policy))?;
    let endpoint = PeerEndpoint::client(
        "0.0.0.0:0".parse()?,
        &credentials,
        &EndpointOptions::default(),
    )?;
    let province = endpoint
        .connect(args.node, &args.server_name)
        .await
        .with_context(|| format!("connecting to {} ({})", args.node, args.server_name))?;
    let report = client
        .score(&province, &args.encrypted_score, args.score)
        .await
        .context("encrypted score")?;
    println!("subject {}: grade {}", args.encrypted_score, report.grade);
    if let Some(score) = report.score {
        println!(
            "score {score} (clamped to {}..={})",
            policy.score.min, policy.score.max
        );
    }
    if args.explain {
        println!(
            "contributing jurisdictions ({}): {}",
            report.contributors.len(),
            report.contributors.join(", ")
        );
        println!(
            "(each contributed encrypted indicators; no node, the province included, saw another's values)"
        );
    }
    if report.uploaded_bytes > 0 {
        eprintln!(
            "xinyong: uploaded {} bytes of evaluation keys (once; the province caches them)",
            report.uploaded_bytes
        );
    }
    province.close(0, "done");
    endpoint.wait_idle().await;
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("XY_LOG").unwrap_or_else(|_| "warn".into()),
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
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Query(a) => query(a).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
