//! `pki init` and `tls serve|connect`: thin over `xy-transport`.

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use xy_gmtls::Sm4Mode;
use xy_transport::Credentials;
use xy_transport::devpki;

/// `pki` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum PkiCommand {
    /// Create a development PKI: an SM2 root CA, certificates for a province node (510000), two
    /// prefecture nodes (510100 chengdu, 510700 mianyang) and a bank client, and an empty CRL.
    Init {
        /// Directory for the PEM files (created if missing).
        #[arg(long, default_value = "pki")]
        out: PathBuf,
        /// Replace an existing PKI in that directory.
        #[arg(long)]
        force: bool,
    },
}

/// `tls` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum TlsCommand {
    /// Serve TLS 1.3 over TCP with the RFC 8998 suites, answering each line with the same line.
    Serve {
        /// Address to listen on (port 0 picks a free port; the bound address is printed).
        #[arg(long)]
        listen: SocketAddr,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Connect over TLS 1.3 with mutual authentication, send standard input, print the reply;
    /// exits 0 only after a verified mutual handshake and a complete reply.
    Connect {
        /// Address of the peer.
        addr: SocketAddr,
        /// Name the peer's certificate must carry.
        #[arg(long)]
        server_name: String,
        #[command(flatten)]
        tls: TlsArgs,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum SuiteArg {
    /// TLS_SM4_GCM_SM3 (0x00C6)
    Gcm,
    /// TLS_SM4_CCM_SM3 (0x00C7)
    Ccm,
}

impl From<SuiteArg> for Sm4Mode {
    fn from(s: SuiteArg) -> Self {
        match s {
            SuiteArg::Gcm => Sm4Mode::Gcm,
            SuiteArg::Ccm => Sm4Mode::Ccm,
        }
    }
}

/// The certificate, key, trust anchors and CRL of a command that talks to peers.
#[derive(Debug, Args)]
pub(crate) struct CredentialArgs {
    /// This side's certificate (PEM, SM2).
    #[arg(long)]
    cert: PathBuf,
    /// Its private key (PKCS#8 PEM, SM2).
    #[arg(long)]
    key: PathBuf,
    /// Trust anchors (PEM).
    #[arg(long)]
    ca: PathBuf,
    /// Certificate revocation list (PEM); peers it lists are refused.
    #[arg(long)]
    crl: Option<PathBuf>,
}

impl CredentialArgs {
    fn load(&self) -> anyhow::Result<Credentials> {
        Ok(Credentials::load(
            &self.cert,
            &self.key,
            &self.ca,
            self.crl.as_deref(),
        )?)
    }
}

/// Credentials and suite of a `tls` command.
#[derive(Debug, Args)]
pub(crate) struct TlsArgs {
    #[command(flatten)]
    credentials: CredentialArgs,
    /// Cipher suite.
    #[arg(long, value_enum, default_value = "gcm")]
    suite: SuiteArg,
}

impl TlsArgs {
    fn credentials(&self) -> anyhow::Result<Credentials> {
        self.credentials.load()
    }
}

pub(crate) fn pki(command: PkiCommand) -> anyhow::Result<ExitCode> {
    match command {
        PkiCommand::Init { out, force } => {
            let layout = devpki::init(&out, force, devpki::unix_now())?;
            println!("development PKI written to {}", layout.dir.display());
            println!("  root CA       {}", layout.ca_cert().display());
            for member in devpki::DEV_MEMBERS {
                let files = layout.member(member.name);
                println!(
                    "  {:<13} {} ({} {}, {})",
                    member.name,
                    files.cert.display(),
                    member.role,
                    member.jurisdiction,
                    devpki::server_name(member.name)
                );
            }
            println!("  CRL           {}", layout.crl().display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub(crate) async fn tls(command: TlsCommand) -> anyhow::Result<ExitCode> {
    match command {
        TlsCommand::Serve { listen, tls } => {
            let server = xy_transport::diagnostic::EchoServer::bind(
                listen,
                &tls.credentials()?,
                tls.suite.into(),
            )
            .await?;
            println!("tls: listening on {}", server.local_addr()?);
            server.run().await?;
            Ok(ExitCode::SUCCESS)
        }
        TlsCommand::Connect {
            addr,
            server_name,
            tls,
        } => {
            let mut input = Vec::new();
            std::io::stdin()
                .read_to_end(&mut input)
                .context("reading standard input")?;
            let report = xy_transport::diagnostic::connect(
                addr,
                &server_name,
                &tls.credentials()?,
                tls.suite.into(),
                &input,
            )
            .await
            .with_context(|| format!("TLS connection to {addr} ({server_name})"))?;
            use std::io::Write as _;
            std::io::stdout().write_all(&report.reply)?;
            eprintln!(
                "tls: verified mutual handshake with {server_name} ({})",
                report.suite
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum PsiSuiteArg {
    /// Ristretto255 with SHA-512 hashing (fast)
    Ristretto,
    /// SM2 with SM3 try-and-increment hashing (commercial-cryptography compliant)
    Sm2,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum PsiModeArg {
    /// The intersection, to this side only
    One,
    /// The intersection, to both sides
    Both,
    /// Its size only (PSI-CA)
    Cardinality,
}

/// `psi`: private set intersection between two nodes.
#[derive(Debug, Args)]
pub(crate) struct PsiArgs {
    /// Run against the node at this QUIC address (the initiator).
    #[arg(long, conflicts_with = "listen", required_unless_present = "listen")]
    peer: Option<SocketAddr>,
    /// Answer runs from other nodes on this UDP address (the responder), until Ctrl-C.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// The set: one element (e.g. a unified social credit code) per line, UTF-8.
    #[arg(long)]
    set: PathBuf,
    /// Suite.
    #[arg(long, value_enum, default_value = "ristretto")]
    suite: PsiSuiteArg,
    /// What the run reveals.
    #[arg(long, value_enum, default_value = "one")]
    mode: PsiModeArg,
    /// The name in the peer's certificate (initiator).
    #[arg(long)]
    server_name: Option<String>,
    /// Write the intersection here (one element per line) instead of standard output.
    #[arg(long)]
    output: Option<PathBuf>,
    #[command(flatten)]
    credentials: CredentialArgs,
    /// The node whose data log records every run (who, suite, mode, sizes — never elements).
    #[command(flatten)]
    node: crate::NodeArgs,
}

/// Read a set file: one element per line, blank lines skipped, duplicates dropped (first kept).
fn read_set(path: &std::path::Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the set {}", path.display()))?;
    let mut seen = std::collections::HashSet::new();
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter(|l| seen.insert(l.to_string()))
        .map(|l| l.as_bytes().to_vec())
        .collect())
}

fn write_intersection(
    output: Option<&std::path::Path>,
    elements: &[Vec<u8>],
) -> anyhow::Result<()> {
    let mut text = String::new();
    for e in elements {
        text.push_str(&String::from_utf8_lossy(e));
        text.push('\n');
    }
    match output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
        }
        None => {
            use std::io::Write as _;
            std::io::stdout().write_all(text.as_bytes())?;
            Ok(())
        }
    }
}

pub(crate) async fn psi(args: PsiArgs) -> anyhow::Result<ExitCode> {
    let credentials = args.credentials.load()?;
    let set = read_set(&args.set)?;
    let node = crate::config::open(&args.node).await?;
    let audit = node.stores.collection.clone();
    let suite = match args.suite {
        PsiSuiteArg::Ristretto => xy_psi::Suite::Ristretto255,
        PsiSuiteArg::Sm2 => xy_psi::Suite::Sm2,
    };
    let mode = match args.mode {
        PsiModeArg::One => xy_psi::Mode::One,
        PsiModeArg::Both => xy_psi::Mode::Both,
        PsiModeArg::Cardinality => xy_psi::Mode::Cardinality,
    };
    let options = xy_transport::EndpointOptions::default();
    if let Some(listen) = args.listen {
        let endpoint = xy_transport::PeerEndpoint::server(listen, &credentials, &options)?;
        let output = args.output.clone();
        let service = xy_federation::PsiService::new(
            set,
            Box::new(move |peer, suite, mode, result| {
                let learnt = match result {
                    Some(r) => {
                        if let Some(elements) = &r.intersection
                            && let Err(e) = write_intersection(output.as_deref(), elements)
                        {
                            eprintln!("psi: {e:#}");
                        }
                        format!("intersection of {} learnt", r.count)
                    }
                    None => "nothing learnt (by design of the mode)".into(),
                };
                eprintln!(
                    "psi: run from {} {} ({suite:?}, {mode:?}): {learnt}",
                    peer.role, peer.jurisdiction
                );
            }),
        )
        .with_audit(audit);
        println!(
            "psi: answering runs on {} over {} elements",
            endpoint.local_addr()?,
            args.set.display()
        );
        let serving = endpoint.clone();
        tokio::select! {
            _ = serving.serve(std::sync::Arc::new(service)) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        return Ok(ExitCode::SUCCESS);
    }
    let peer = args.peer.context("--peer or --listen is required")?;
    let server_name = args
        .server_name
        .clone()
        .context("--server-name is required with --peer")?;
    let endpoint =
        xy_transport::PeerEndpoint::client("0.0.0.0:0".parse()?, &credentials, &options)?;
    let connection = endpoint
        .connect(peer, &server_name)
        .await
        .with_context(|| format!("connecting to {peer} ({server_name})"))?;
    let elements = set.len();
    let mut randomness = [0u8; 64];
    rand::fill(&mut randomness[..]);
    let started = std::time::Instant::now();
    let result = xy_federation::run_initiator(&connection, suite, mode, set, &randomness).await;
    let facts = xy_federation::RunFacts {
        suite,
        mode,
        own_elements: elements as u64,
        peer_elements: None,
        learnt: result.as_ref().ok().map(|r| r.count),
        outcome: match &result {
            Ok(_) => "complete".into(),
            Err(e) => e.to_string(),
        },
    };
    xy_federation::audit_run(&audit, "psi.run", connection.peer(), facts)
        .await
        .context("writing the run to the data log")?;
    let result = result?;
    eprintln!(
        "psi: {elements} elements against {} {} ({suite:?}, {mode:?}) in {:.2} s: intersection of {}",
        connection.peer().role,
        connection.peer().jurisdiction,
        started.elapsed().as_secs_f64(),
        result.count
    );
    match &result.intersection {
        Some(elements) => write_intersection(args.output.as_deref(), elements)?,
        None => println!("{}", result.count),
    }
    connection.close(0, "done");
    endpoint.wait_idle().await;
    Ok(ExitCode::SUCCESS)
}

/// Start the node's QUIC peer endpoint with its services (encrypted scoring, private credit
/// queries with an index refreshed every minute); returns the bound address.
pub(crate) async fn start_peer_endpoint(
    node: &crate::config::Node,
    peer: &crate::config::PeerConfig,
) -> anyhow::Result<(
    std::net::SocketAddr,
    Option<std::sync::Arc<xy_federation::FlowNode>>,
)> {
    let credentials = crate::flows::credentials(node, peer)?;
    let identity = credentials
        .identity()
        .cloned()
        .context("the node certificate names no jurisdiction and role")?;
    let listen: std::net::SocketAddr = peer
        .listen
        .parse()
        .with_context(|| format!("peer listen address {:?}", peer.listen))?;
    let options = xy_transport::EndpointOptions::default();
    let endpoint = xy_transport::PeerEndpoint::server(listen, &credentials, &options)?;
    let jurisdiction = identity.jurisdiction.clone();
    let prefectures = peer
        .prefectures
        .iter()
        .map(|p| xy_transport::PeerLink::new(endpoint.clone(), p.addr, &p.server_name))
        .collect();
    let service = xy_federation::ScoringService::new(xy_federation::ServiceConfig {
        identity,
        policy: std::sync::Arc::new(xy_fhe::ScoringPolicy::enterprise()),
        store: node.stores.collection.clone(),
        key_dir: node.data_dir.join("fhe-keys"),
        key_ttl: std::time::Duration::from_secs(peer.key_ttl_days.unwrap_or(30) * 86_400),
        prefectures,
        today: std::sync::Arc::new(|| crate::config::now_cst().0),
    });
    let oprf_key = xy_federation::load_or_create_oprf_key(&node.data_dir, &node.keys)?;
    let private_query = xy_federation::PrivateQueryService::from_store(
        node.stores.collection.clone(),
        node.keys.clone(),
        oprf_key,
        peer.private_query_ids_per_minute
            .unwrap_or(xy_federation::private_query::DEFAULT_IDS_PER_MINUTE),
    )
    .await
    .context("building the private-query index")?;
    let flow_node = match &node.config.flows {
        Some(_) => Some(crate::flows::flow_node(node, &credentials)?),
        None => None,
    };
    let services = std::sync::Arc::new(xy_federation::NodeServices {
        scoring: Some(service),
        private_query: Some(private_query),
        flows: flow_node.clone().map(xy_federation::FlowService),
    });
    if let Some(flow_node) = &flow_node {
        crate::flows::spawn_rounds(node, std::sync::Arc::clone(flow_node), endpoint.clone());
    }
    let refreshing = std::sync::Arc::clone(&services);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(xy_federation::private_query::REFRESH_EVERY);
        every.tick().await;
        loop {
            every.tick().await;
            if let Some(private_query) = &refreshing.private_query
                && let Err(e) = private_query.refresh().await
            {
                tracing::warn!(error = %e, "private-query index refresh failed");
            }
        }
    });
    if let Some(coordinator) = &peer.coordinator {
        start_coordinator_link(node, peer, coordinator, &jurisdiction, flow_node.clone())?;
    }
    let addr = endpoint.local_addr()?;
    let serving = endpoint.clone();
    tokio::spawn(async move { serving.serve(services).await });
    Ok((addr, flow_node))
}

/// A PEM file's first certificate, as DER (rustls' PEM parser, as for the node's credentials).
pub(crate) fn read_certificate(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    Ok(CertificateDer::from_pem_file(path)
        .map_err(|e| anyhow::anyhow!("{}: no certificate: {e}", path.display()))?
        .to_vec())
}

/// A PEM file's PKCS#8 private key, as an SM2 key.
fn read_private_key(path: &std::path::Path) -> anyhow::Result<xy_shangmi::sm2::Sm2SecretKey> {
    use rustls::pki_types::PrivatePkcs8KeyDer;
    use rustls::pki_types::pem::PemObject;
    let key = PrivatePkcs8KeyDer::from_pem_file(path)
        .map_err(|e| anyhow::anyhow!("{}: no private key: {e}", path.display()))?;
    Ok(xy_gmtls::pki::private_key_from_der(key.secret_pkcs8_der())?)
}

/// The node's client of the coordinator named in `[peer.coordinator]`, trusting `[peer] ca`.
pub(crate) fn coordinator_client(
    node: &crate::config::Node,
    peer: &crate::config::PeerConfig,
    coordinator: &crate::config::CoordinatorConfig,
) -> anyhow::Result<xy_federation::CoordinatorClient> {
    let ca = read_certificate(&resolve_in(&node.data_dir, &peer.ca))?;
    Ok(xy_federation::CoordinatorClient::new(
        &coordinator.address,
        ca,
        &node.data_dir,
    ))
}

pub(crate) fn resolve_in(data_dir: &std::path::Path, p: &std::path::Path) -> std::path::PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        data_dir.join(p)
    }
}

/// Keep the global configuration fresh (cached in the data directory, used while the coordinator
/// is down until it expires) and send each finished day's counts once.
fn start_coordinator_link(
    node: &crate::config::Node,
    peer: &crate::config::PeerConfig,
    coordinator: &crate::config::CoordinatorConfig,
    jurisdiction: &str,
    flow_node: Option<std::sync::Arc<xy_federation::FlowNode>>,
) -> anyhow::Result<()> {
    let key = read_private_key(&resolve_in(&node.data_dir, &peer.key))?;
    let certificate_pem = std::fs::read_to_string(resolve_in(&node.data_dir, &peer.cert))?;
    let client = coordinator_client(node, peer, coordinator)?;
    let store = node.stores.collection.clone();
    let jurisdiction = jurisdiction.to_owned();
    let every =
        std::time::Duration::from_secs(coordinator.refresh_minutes.unwrap_or(10).max(1) * 60);
    tokio::spawn(async move {
        let mut reported: Option<String> = None;
        let mut ticks = tokio::time::interval(every);
        loop {
            ticks.tick().await;
            let now = xy_transport::devpki::unix_now();
            match client.current_config(now).await {
                Ok((config, _)) => {
                    // On the province, the return themes follow the catalogue's granted
                    // subscriptions (when it has any; else the [peer] prefectures' categories).
                    if let Some(flow_node) = &flow_node
                        && flow_node.role == xy_gmtls::pki::Role::ProvinceNode
                        && !config.return_subscriptions.is_empty()
                    {
                        let themes = config
                            .return_categories()
                            .into_iter()
                            .map(|(jurisdiction, categories)| xy_store::Theme {
                                name: xy_federation::return_theme(&jurisdiction),
                                categories,
                            })
                            .collect();
                        match flow_node.set_themes(themes).await {
                            Ok(added) => {
                                for (theme, rows) in added.into_iter().filter(|(_, n)| *n > 0) {
                                    tracing::info!(%theme, rows, "theme filled for a new subscription");
                                }
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "updating the return themes failed")
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "no usable global configuration"),
            }
            let yesterday = (crate::config::now_cst().0 - chrono::Duration::days(1))
                .format("%Y-%m-%d")
                .to_string();
            if reported.as_deref() == Some(yesterday.as_str()) {
                continue;
            }
            let sent = async {
                let report =
                    xy_federation::coordinator::daily_report(&store, &jurisdiction, &yesterday)
                        .await?;
                client.send_report(&report, &key, &certificate_pem).await
            }
            .await;
            match sent {
                Ok(()) => {
                    tracing::info!(day = %yesterday, "daily counts sent to the coordinator");
                    reported = Some(yesterday);
                }
                Err(e) => tracing::warn!(error = %e, "daily counts not sent; will retry"),
            }
        }
    });
    Ok(())
}
