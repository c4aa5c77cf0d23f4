//! The federated flows at the command line: the rounds `serve` runs (a prefecture shares up and
//! extracts its scenarios; the province governs and returns), and the operator's commands —
//! status, a round now, lineage, retraction, work orders, exceptions and their retry, re-request,
//! and the file sharing mode (sealed batch files for offline transfer).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use xy_exchange::{Cursor, Flow};
use xy_federation::{FlowCredentials, FlowNode, GovernancePolicy, ScenarioDefinition};
use xy_gmtls::pki::Role;
use xy_store::Theme;
use xy_transport::{Credentials, PeerEndpoint, PeerLink};

use crate::NodeArgs;
use crate::config::{self, Node, PeerConfig};
use crate::transport::resolve_in;

/// The node's transport credentials, from `[peer]`.
pub(crate) fn credentials(node: &Node, peer: &PeerConfig) -> anyhow::Result<Credentials> {
    let resolve = |p: &Path| resolve_in(&node.data_dir, p);
    let crl = peer.crl.as_deref().map(resolve);
    Ok(Credentials::load(
        &resolve(&peer.cert),
        &resolve(&peer.key),
        &resolve(&peer.ca),
        crl.as_deref(),
    )?)
}

/// The node's flow context, from `[peer]` and `[flows]`.
pub(crate) fn flow_node(node: &Node, credentials: &Credentials) -> anyhow::Result<Arc<FlowNode>> {
    let flows = node.config.flows.as_ref();
    let peer = node
        .config
        .peer
        .as_ref()
        .context("the flows need a [peer] section (certificate, key, CA)")?;
    let identity = credentials
        .identity()
        .cloned()
        .context("the node certificate names no jurisdiction and role")?;
    let governance = match flows.and_then(|f| f.governance.as_deref()) {
        Some(path) => GovernancePolicy::load(&resolve_in(&node.data_dir, path))?,
        None => GovernancePolicy::builtin()?,
    };
    let scenarios = match flows.and_then(|f| f.scenarios_dir.as_deref()) {
        Some(dir) => ScenarioDefinition::load_dir(&resolve_in(&node.data_dir, dir))?,
        None => ScenarioDefinition::builtin()?,
    };
    let all_categories: Vec<String> = node
        .policies
        .categories()
        .iter()
        .map(|c| c.code.clone())
        .collect();
    let themes = peer
        .prefectures
        .iter()
        .filter_map(|p| {
            Some(Theme {
                name: xy_federation::return_theme(p.jurisdiction.as_deref()?),
                categories: p
                    .return_categories
                    .clone()
                    .unwrap_or_else(|| all_categories.clone()),
            })
        })
        .collect();
    let mut flow_node = FlowNode::new(
        &identity,
        node.stores.clone(),
        node.keys.clone(),
        Arc::clone(&node.policies),
        governance,
        scenarios,
        themes,
        FlowCredentials::from_transport(credentials)?,
        xy_federation::flows::system_clock(),
    );
    if let Some(rows) = flows.and_then(|f| f.batch_rows) {
        anyhow::ensure!(
            (1..=xy_exchange::MAX_ROWS as usize).contains(&rows),
            "[flows] batch_rows must be 1..={}",
            xy_exchange::MAX_ROWS
        );
        flow_node.batch_rows = rows;
    }
    Ok(Arc::new(flow_node))
}

/// Where this node pushes: the province (from a prefecture), or each prefecture with a
/// jurisdiction (from the province).
fn links(node: &Node, endpoint: &PeerEndpoint, role: Role) -> Vec<(Flow, Vec<Flow>, PeerLink)> {
    let Some(peer) = &node.config.peer else {
        return Vec::new();
    };
    match role {
        Role::ProvinceNode => peer
            .prefectures
            .iter()
            .filter(|p| p.jurisdiction.is_some())
            .map(|p| {
                (
                    Flow::Return,
                    vec![Flow::Return, Flow::Orders],
                    PeerLink::new(endpoint.clone(), p.addr, &p.server_name),
                )
            })
            .collect(),
        _ => node
            .config
            .flows
            .as_ref()
            .and_then(|f| f.province.as_ref())
            .map(|p| {
                (
                    Flow::Share,
                    vec![Flow::Share],
                    PeerLink::new(endpoint.clone(), p.addr, &p.server_name),
                )
            })
            .into_iter()
            .collect(),
    }
}

/// One round: the province governs what arrived and pushes returns and work orders to every
/// prefecture; a prefecture pushes its share and extracts its scenarios.
async fn round(flow_node: &FlowNode, links: &[(Flow, Vec<Flow>, PeerLink)]) -> Vec<String> {
    let mut said = Vec::new();
    if flow_node.role == Role::ProvinceNode {
        match flow_node.govern_pending().await {
            Ok(step) if step.read > 0 => said.push(format!(
                "governance: {} read, {} passed ({} duplicates), {} failed (work orders), {} orders closed",
                step.read, step.passed, step.duplicates, step.failed, step.closed_orders
            )),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "governance failed"),
        }
    }
    for (_, flows, link) in links {
        let connection = match link.connection().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "peer unreachable; next round retries");
                continue;
            }
        };
        for flow in flows {
            match flow_node.push(&connection, *flow).await {
                Ok(report) if report.records > 0 => said.push(format!(
                    "{} → {}: {} records in {} batches",
                    flow.as_str(),
                    connection.peer().jurisdiction,
                    report.records,
                    report.batches
                )),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(flow = flow.as_str(), peer = %connection.peer().jurisdiction, error = %e, "push failed; next round resumes");
                }
            }
        }
    }
    if flow_node.role == Role::PrefectureNode {
        // Records that could not be mapped are tried again every round (a policy directory
        // updated and the node restarted maps them); the rest stay reported to the province.
        match flow_node.retry_exceptions().await {
            Ok(0) => {}
            Ok(n) => said.push(format!(
                "{n} returned record(s) that had failed mapping now applied"
            )),
            Err(e) => tracing::warn!(error = %e, "retrying mapping exceptions failed"),
        }
        match flow_node.extract_due_scenarios().await {
            Ok(done) => {
                for (name, step) in done {
                    if step.read > 0 {
                        said.push(format!(
                            "scenario {name}: {} read, {} written, {} removed",
                            step.read, step.written, step.removed
                        ));
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "scenario extraction failed"),
        }
    }
    said
}

/// While serving: a round every `interval_secs`, and sooner when a batch arrived (governance on
/// the province, scenarios on a prefecture).
pub(crate) fn spawn_rounds(node: &Node, flow_node: Arc<FlowNode>, endpoint: PeerEndpoint) {
    let every = Duration::from_secs(
        node.config
            .flows
            .as_ref()
            .and_then(|f| f.interval_secs)
            .unwrap_or(10)
            .max(1),
    );
    let links = links(node, &endpoint, flow_node.role);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = flow_node.governance_due.notified() => {}
                _ = flow_node.scenarios_due.notified() => {}
            }
            for line in round(&flow_node, &links).await {
                tracing::info!("{line}");
            }
        }
    });
}

// ---- commands -------------------------------------------------------------------------------

#[derive(Debug, clap::Subcommand)]
pub(crate) enum FlowsCommand {
    /// Cursors, counts, exceptions and work orders of this node's flows.
    Status(NodeArgs),
    /// Run one round now (the province governs and returns; a prefecture shares and extracts)
    /// and exit.
    Run(NodeArgs),
    /// Govern what the province's raw store received and has not governed yet (province).
    Govern(NodeArgs),
    /// The exceptions of the return flow (batches that failed verification, records that could
    /// not be mapped).
    Exceptions {
        #[command(flatten)]
        node: NodeArgs,
        /// Resolved ones too.
        #[arg(long)]
        all: bool,
    },
    /// Map the return-flow records that could not be mapped again (after a policy update).
    Retry(NodeArgs),
    /// Ask the province to send a returned batch again: the cursor moves back to where the batch
    /// began, and the next push resends from there (records held already are skipped by version).
    Rerequest {
        #[command(flatten)]
        node: NodeArgs,
        /// The batch id.
        #[arg(long)]
        batch: String,
    },
    /// File sharing mode: write the batches of a flow for a receiver as sealed files (SM2 key
    /// agreement to the receiver's certificate, SM4-GCM, signed by this node).
    Export(ExportArgs),
    /// File sharing mode: verify and apply sealed batch files addressed to this node.
    Import {
        #[command(flatten)]
        node: NodeArgs,
        /// The files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// The flow: share (a prefecture's collection store), return or orders (the province's).
    #[arg(long)]
    flow: String,
    /// The receiver's node certificate (PEM): its jurisdiction is the receiver, its key seals.
    #[arg(long)]
    recipient_cert: PathBuf,
    /// Start after this feed position (`major` or `major.minor`; default: the beginning).
    #[arg(long)]
    after: Option<String>,
    /// Directory the files are written to.
    #[arg(long)]
    out: PathBuf,
}

fn parse_cursor(text: &str) -> anyhow::Result<Cursor> {
    let (major, minor) = text.split_once('.').unwrap_or((text, "0"));
    Ok(Cursor {
        major: major.parse().with_context(|| format!("cursor {text:?}"))?,
        minor: minor.parse().with_context(|| format!("cursor {text:?}"))?,
    })
}

async fn open_flow_node(args: &NodeArgs) -> anyhow::Result<(Node, Arc<FlowNode>, Credentials)> {
    let node = config::open(args).await?;
    let peer = node
        .config
        .peer
        .as_ref()
        .context("this command needs the node's [peer] section (certificate, key, CA)")?;
    let credentials = credentials(&node, peer)?;
    let flow_node = flow_node(&node, &credentials)?;
    Ok((node, flow_node, credentials))
}

pub(crate) async fn command(command: FlowsCommand) -> anyhow::Result<ExitCode> {
    match command {
        FlowsCommand::Status(args) => status(&args).await,
        FlowsCommand::Run(args) => {
            let (node, flow_node, credentials) = open_flow_node(&args).await?;
            let endpoint = PeerEndpoint::client(
                ([0, 0, 0, 0], 0).into(),
                &credentials,
                &xy_transport::EndpointOptions::default(),
            )?;
            let links = links(&node, &endpoint, flow_node.role);
            if links.is_empty() && flow_node.role == Role::PrefectureNode {
                eprintln!("note: no [flows] province configured: nothing is shared up");
            }
            for line in round(&flow_node, &links).await {
                println!("{line}");
            }
            endpoint.close();
            endpoint.wait_idle().await;
            Ok(ExitCode::SUCCESS)
        }
        FlowsCommand::Govern(args) => {
            let (_, flow_node, _) = open_flow_node(&args).await?;
            anyhow::ensure!(
                flow_node.role == Role::ProvinceNode,
                "governance runs on the province node; this is a {}",
                flow_node.role
            );
            let step = flow_node.govern_pending().await?;
            println!(
                "governance: {} read, {} passed ({} duplicates), {} failed (work orders), {} orders closed",
                step.read, step.passed, step.duplicates, step.failed, step.closed_orders
            );
            Ok(ExitCode::SUCCESS)
        }
        FlowsCommand::Exceptions { node, all } => {
            let node = config::open(&node).await?;
            let found = node.stores.return_flow.exceptions(!all).await?;
            for e in &found {
                println!("{}", serde_json::to_string(e)?);
            }
            let staged = node.stores.return_flow.staged().await?;
            for (batch, sender, bytes, at) in &staged {
                println!(
                    "{}",
                    serde_json::json!({"staged_batch": batch, "sender": sender, "bytes": bytes.len(), "received_at": at})
                );
            }
            eprintln!(
                "{} exception(s); {} batch(es) parked in the staging area",
                found.len(),
                staged.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        FlowsCommand::Retry(args) => {
            let (_, flow_node, _) = open_flow_node(&args).await?;
            let resolved = flow_node.retry_exceptions().await?;
            println!("{resolved} record(s) mapped and applied");
            Ok(ExitCode::SUCCESS)
        }
        FlowsCommand::Rerequest { node, batch } => {
            let node = config::open(&node).await?;
            let writer = node.stores.return_flow.writer();
            let (flow, sender, after, _) = writer
                .batch_range(&batch)
                .await?
                .with_context(|| format!("no applied batch {batch} in the return-flow store"))?;
            let (_, now) = config::now_cst();
            writer.rewind(&flow, &sender, after, &now).await?;
            println!(
                "the {flow} flow from {sender} resumes after {after}: the next push resends batch {batch}"
            );
            Ok(ExitCode::SUCCESS)
        }
        FlowsCommand::Export(args) => export(args).await,
        FlowsCommand::Import { node, files } => import(&node, &files).await,
    }
}

async fn status(args: &NodeArgs) -> anyhow::Result<ExitCode> {
    let node = config::open(args).await?;
    let mut out = serde_json::Map::new();
    let cursors = |list: Vec<(String, String, Cursor, String)>| {
        list.into_iter()
            .map(|(flow, sender, cursor, at)| {
                serde_json::json!({"flow": flow, "from": sender, "applied_through": cursor.to_string(), "at": at})
            })
            .collect::<Vec<_>>()
    };
    out.insert(
        "return_flow".into(),
        serde_json::json!({
            "records": node.stores.return_flow.record_count().await?,
            "open_exceptions": node.stores.return_flow.exceptions(true).await?.len(),
            "cursors": cursors(node.stores.return_flow.writer().cursors().await?),
        }),
    );
    out.insert(
        "work_orders".into(),
        serde_json::json!({
            "open": node.stores.collection.work_orders(true).await?.len(),
            "cursors": cursors(node.stores.collection.flow_writer().cursors().await?),
        }),
    );
    let is_province = match &node.config.peer {
        Some(peer) => credentials(&node, peer)?
            .identity()
            .is_some_and(|i| i.role == Role::ProvinceNode),
        None => false,
    };
    if is_province {
        let province = node.stores.province().await?;
        out.insert(
            "province".into(),
            serde_json::json!({
                "counts": province.counts().await?,
                "cursors": cursors(province.writer().cursors().await?),
                "refused_by_receivers": province.sent_exceptions().await?.len(),
            }),
        );
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

async fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let (_, flow_node, credentials) = open_flow_node(&args.node).await?;
    let flow = Flow::parse(&args.flow)
        .with_context(|| format!("unknown flow {:?} (share, return or orders)", args.flow))?;
    let recipient = crate::transport::read_certificate(&args.recipient_cert)?;
    let parsed = xy_gmtls::pki::ParsedCertificate::parse(&recipient)?;
    let receiver = parsed
        .identity
        .as_ref()
        .context("the recipient certificate names no jurisdiction")?
        .jurisdiction
        .clone();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let key = credentials.signing_key()?;
    let mut after = match &args.after {
        Some(text) => parse_cursor(text)?,
        None => Cursor::START,
    };
    let mut files = 0;
    while let Some(batch) = flow_node.build_batch(flow, &receiver, after).await? {
        let mut randomness = xy_shangmi::envelope::EnvelopeRandomness {
            ephemeral: [0; 32],
            nonce: [0; 12],
        };
        rand::fill(&mut randomness.ephemeral[..]);
        rand::fill(&mut randomness.nonce[..]);
        let sealed = xy_exchange::seal_file(&batch, &key, &parsed.public_key, &randomness)?;
        let path = args.out.join(format!(
            "{}-{}-{}.xyb",
            flow.as_str(),
            receiver,
            batch.batch_id()
        ));
        std::fs::write(&path, sealed).with_context(|| format!("writing {}", path.display()))?;
        println!(
            "{} ({} records, {} .. {})",
            path.display(),
            batch.header.rows,
            batch.header.after,
            batch.header.through
        );
        after = batch.header.through;
        files += 1;
    }
    eprintln!("{files} batch file(s) for {receiver}");
    Ok(ExitCode::SUCCESS)
}

async fn import(args: &NodeArgs, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let (_, flow_node, credentials) = open_flow_node(args).await?;
    let key = credentials.signing_key()?;
    let mut failed = 0;
    for path in files {
        let outcome = async {
            let sealed =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let batch = xy_exchange::open_file(&key, &sealed)?;
            let sender = xy_gmtls::pki::ParsedCertificate::parse(&batch.certificate)?
                .identity
                .context("the sender certificate names no jurisdiction and role")?;
            let applied = flow_node.apply(&sender, &batch.encode()).await?;
            anyhow::Ok(applied)
        }
        .await;
        match outcome {
            Ok(applied) => println!(
                "{}: {} applied, {} skipped, {} exceptions{}",
                path.display(),
                applied.applied,
                applied.skipped,
                applied.exceptions,
                if applied.already_applied {
                    " (applied before)"
                } else {
                    ""
                }
            ),
            Err(e) => {
                failed += 1;
                eprintln!("{}: refused: {e:#}", path.display());
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[derive(Debug, clap::Args)]
pub(crate) struct LineageArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// The record: `<origin jurisdiction>:<record id>` (as `query` and the API show it).
    gid: String,
}

/// `xinyong-node lineage GID`.
pub(crate) async fn lineage(args: LineageArgs) -> anyhow::Result<ExitCode> {
    let node = config::open(&args.node).await?;
    let (jurisdiction, is_province, scenarios) = match &node.config.peer {
        Some(peer) => {
            let credentials = credentials(&node, peer)?;
            let flow_node = flow_node(&node, &credentials)?;
            (
                flow_node.jurisdiction.clone(),
                flow_node.role == Role::ProvinceNode,
                flow_node
                    .scenarios
                    .iter()
                    .map(|s| s.name.clone())
                    .collect::<Vec<_>>(),
            )
        }
        None => (String::new(), false, Vec::new()),
    };
    let names: Vec<&str> = scenarios.iter().map(String::as_str).collect();
    let found = node
        .stores
        .lineage(&args.gid, &jurisdiction, is_province, &names)
        .await?;
    let (_, now) = config::now_cst();
    node.stores
        .collection
        .log_access(
            &now,
            "lineage",
            &crate::commands::operator(),
            serde_json::json!({"via": "cli", "gid": args.gid}),
        )
        .await?;
    println!("{}", serde_json::to_string_pretty(&found)?);
    Ok(
        if found["copies"].as_array().is_some_and(|c| c.is_empty()) {
            eprintln!("no copy of {} on this node", args.gid);
            ExitCode::from(3)
        } else {
            ExitCode::SUCCESS
        },
    )
}

#[derive(Debug, clap::Args)]
pub(crate) struct RetractArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// The record id in this node's collection store.
    #[arg(long)]
    id: i64,
    /// Why (a correction, a revoked decision, a credit repair).
    #[arg(long)]
    reason: String,
}

/// `xinyong-node retract --id N --reason R`: a signed tombstone follows the record to every
/// store that holds a copy.
pub(crate) async fn retract(args: RetractArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(!args.reason.trim().is_empty(), "--reason must say why");
    let node = config::open(&args.node).await?;
    let (_, now) = config::now_cst();
    let batch_id = format!("retract-{}-{}", args.id, uuid_like());
    let record = node
        .stores
        .collection
        .retract(
            args.id,
            &args.reason,
            &crate::commands::operator(),
            &batch_id,
            &now,
        )
        .await?;
    println!(
        "record {} withdrawn (version {}, batch {batch_id}); the next share carries the retraction to every copy",
        record.id, record.version
    );
    Ok(ExitCode::SUCCESS)
}

fn uuid_like() -> String {
    let mut bytes = [0u8; 8];
    rand::fill(&mut bytes[..]);
    xy_exchange::hex(&bytes)
}

#[derive(Debug, clap::Args)]
pub(crate) struct WorkOrdersArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// Closed orders too.
    #[arg(long)]
    all: bool,
}

/// `xinyong-node work-orders`: what the province's governance asks this node's source units to
/// fix (fix the row at the source and ingest it again; the order closes when the new version
/// passes).
pub(crate) async fn work_orders(args: WorkOrdersArgs) -> anyhow::Result<ExitCode> {
    let node = config::open(&args.node).await?;
    let orders = node.stores.collection.work_orders(!args.all).await?;
    for o in &orders {
        println!("{}", serde_json::to_string(o)?);
    }
    eprintln!("{} work order(s)", orders.len());
    Ok(ExitCode::SUCCESS)
}
