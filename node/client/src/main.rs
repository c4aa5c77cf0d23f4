//! `xinyong`: the client that institutions (banks, departments) use to reach a node.
//!
//! `xinyong query --encrypted-score USCC --node ADDR ...` asks the province node for a subject's
//! credit grade computed under encryption (TFHE): the prefectures' indicators are encrypted under
//! this client's key, the province adds and bands them without seeing any plaintext, and only this
//! client decrypts the grade. The keys are generated on first use into `--keys DIR` (the client
//! key never leaves it) and uploaded to the province once.
//!
//! `xinyong query --private --ids FILE --node ADDR ... [--mode bucket|filter]` asks a node for the
//! public credit records of the subjects in FILE without revealing them: the ids travel blinded
//! (an OPRF), and the node learns at most one bucket of at least 1,000 candidates per id (bucket
//! mode, which returns the records) or nothing but their number (filter mode, which answers
//! whether the node holds records on each id, from a copy of the node's filter kept in
//! `--keys DIR` and synced by deltas). One JSON line per id; identity numbers arrive masked.

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
#[command(group(clap::ArgGroup::new("what").required(true).args(["encrypted_score", "private"])))]
struct QueryArgs {
    /// The encrypted credit grade of this subject (18-character unified social credit code).
    #[arg(long, value_name = "USCC")]
    encrypted_score: Option<String>,
    /// A private credit query: the records of the subjects in `--ids`, the ids never revealed.
    #[arg(long, requires = "ids")]
    private: bool,
    /// The subjects of a private query: one unified social credit code per line (`#` comments).
    #[arg(long, value_name = "FILE")]
    ids: Option<PathBuf>,
    /// Private query mode: `bucket` (records; the node learns one bucket of ≥ 1,000 candidates per
    /// id) or `filter` (whether the node holds records on each id; the node learns nothing but the
    /// number of ids; keeps the node's filter in --keys).
    #[arg(long, value_enum, default_value_t = PrivateMode::Bucket)]
    mode: PrivateMode,
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
    /// Directory of this client's keys (TFHE keys and the private query's PIR key, generated on
    /// first use) and of the private query's filter.
    #[arg(long, default_value = "xinyong-keys")]
    keys: PathBuf,
}

/// How a private query finds its entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PrivateMode {
    /// The node answers with each id's bucket.
    Bucket,
    /// This client looks up its copy of the node's filter.
    Filter,
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
    if args.private {
        return private_query(args).await;
    }
    let subject = args
        .encrypted_score
        .clone()
        .context("--encrypted-score USCC or --private")?;
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
        .score(&province, &subject, args.score)
        .await
        .context("encrypted score")?;
    println!("subject {subject}: grade {}", report.grade);
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

/// Read the ids of a private query: one USCC per line; blank lines and `#` comments skipped.
fn read_ids(path: &Path) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut ids = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let id = line.split('#').next().unwrap_or("").trim();
        if id.is_empty() {
            continue;
        }
        let valid = id.len() == 18
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
            && xy_policy::identifiers::uscc_check_char(&id.as_bytes()[..17])
                == Some(id.as_bytes()[17]);
        if !valid {
            anyhow::bail!(
                "{} line {}: {id:?} is not a unified social credit code (18 characters, check digit)",
                path.display(),
                n + 1
            );
        }
        ids.push(id.to_owned());
    }
    if ids.is_empty() {
        anyhow::bail!("{} holds no ids", path.display());
    }
    Ok(ids)
}

async fn private_query(args: QueryArgs) -> anyhow::Result<ExitCode> {
    use xy_federation::{PrivateQueryClient, QueryWith};
    use xy_psi::query::{BucketKey, FilterIndex, MAX_QUERY_IDS, QueryMode, Snapshot};
    let ids_path = args.ids.as_deref().context("--private needs --ids FILE")?;
    let ids = read_ids(ids_path)?;
    let credentials = Credentials::load(&args.cert, &args.key, &args.ca, None)?;
    let endpoint = PeerEndpoint::client(
        "0.0.0.0:0".parse()?,
        &credentials,
        &EndpointOptions::default(),
    )?;
    let node = endpoint
        .connect(args.node, &args.server_name)
        .await
        .with_context(|| format!("connecting to {} ({})", args.node, args.server_name))?;
    std::fs::create_dir_all(&args.keys)
        .with_context(|| format!("creating {}", args.keys.display()))?;
    let (mode, filter, bucket_key) = match args.mode {
        PrivateMode::Bucket => {
            // The PIR key's seed, kept with the client's keys; the node is given the Galois
            // keys on the first fetch it cannot serve.
            let path = args.keys.join("private-query-pir.seed");
            let seed: [u8; 32] = match std::fs::read(&path) {
                Ok(bytes) => bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| anyhow::anyhow!("{} is not a 32-byte seed", path.display()))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let mut seed = [0u8; 32];
                    rand::fill(&mut seed[..]);
                    write_private(&path, &seed)?;
                    seed
                }
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            };
            (QueryMode::Bucket, None, Some(BucketKey::from_seed(&seed)))
        }
        PrivateMode::Filter => {
            // The filter is kept per node and synced by deltas.
            let cache = args.keys.join(format!(
                "filter-{}.xpqs",
                args.server_name.replace(['/', '\\'], "_")
            ));
            let current = match std::fs::read(&cache) {
                Ok(bytes) => Some(
                    Snapshot::decode(&bytes)
                        .and_then(|s| FilterIndex::from_snapshot(&s))
                        .with_context(|| format!("reading {}", cache.display()))?,
                ),
                Err(_) => None,
            };
            let first = current.is_none();
            let (filter, received) = PrivateQueryClient::sync_filter(&node, current)
                .await
                .context("syncing the filter")?;
            eprintln!(
                "xinyong: filter {} ({} subjects, epoch {}): {received} bytes",
                if first { "downloaded" } else { "updated" },
                filter.len(),
                filter.epoch()
            );
            write_private(&cache, &filter.to_snapshot().encode())?;
            (QueryMode::Filter, Some(filter), None)
        }
    };
    let mut found = 0;
    let (mut sent, mut received) = (0, 0);
    for chunk in ids.chunks(MAX_QUERY_IDS) {
        let with = match (&bucket_key, &filter) {
            (Some(key), _) => QueryWith::Bucket(key),
            (None, Some(filter)) => QueryWith::Filter(filter),
            (None, None) => unreachable!("each mode has its key or its filter"),
        };
        let (answers, traffic) = PrivateQueryClient::query(
            &node,
            chunk.iter().map(|i| i.as_bytes().to_vec()).collect(),
            with,
        )
        .await
        .context("private query")?;
        sent += traffic.sent;
        received += traffic.received;
        for answer in answers {
            let id = String::from_utf8_lossy(&answer.id).into_owned();
            found += usize::from(answer.found);
            let mut line = serde_json::json!({"id": id, "found": answer.found});
            if let Some(label) = &answer.label {
                line["records"] = serde_json::from_slice(label).context("the node's records")?;
            }
            println!("{line}");
        }
    }
    eprintln!(
        "xinyong: private query ({:?} mode): {} ids, {found} found; {sent} bytes sent, {received} received",
        mode,
        ids.len()
    );
    node.close(0, "done");
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
