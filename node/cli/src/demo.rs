//! `xinyong-node demo`: the whole loop of the guide on one machine. A coordinator (its CA enrols
//! the nodes; its catalogue holds the resources and the prefectures' subscriptions) and three
//! nodes on embedded SQLite — the province and two prefectures — talking mutually authenticated
//! QUIC on loopback. Departments hand files to the prefectures, which ingest them and share them
//! up; the province governs (duplicates across sources, a work order for a suspicious row) and
//! returns each prefecture what it subscribed to; the prefectures extract a scenario store. Every
//! stage is printed, and the run ends with
//! `SUMMARY ingested=<n> shared=<n> governed=<n> returned=<n> scenario=<n> lost=<n>`, where `lost`
//! counts the rows that entered and are accounted for nowhere. Then the Chengdu node's HTTP API is
//! served (or the demo exits with --exit-when-done).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use xy_coordinator_server::catalogue::{FieldSpec, ResourceMetadata};
use xy_coordinator_server::{Coordinator, Settings, UserRole};
use xy_exchange::Flow;
use xy_federation::local::LocalNode;
use xy_gmtls::pki::{PeerIdentity, Role, certification_request, pem_encode, private_key_to_pkcs8};
use xy_ingest::IngestOptions;
use xy_store::{StoreLocation, Theme};
use xy_synth::{CsvEncoding, Defect, Generator, Kind, SynthConfig, Version};

use crate::commands::{print_result, serve_node};
use crate::config::{self, NodeConfig, now_cst};

#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Directory of the demonstration (coordinator and nodes); a previous demonstration there is
    /// replaced.
    #[arg(long, default_value = "./xinyong-demo")]
    data_dir: PathBuf,
    /// Exit after the demonstration instead of serving Chengdu's HTTP API.
    #[arg(long)]
    exit_when_done: bool,
    /// HTTP listen address while serving.
    #[arg(long, default_value = "127.0.0.1:8640")]
    listen: String,
    /// Rows per generated file.
    #[arg(long, default_value_t = 2000)]
    rows: usize,
}

/// Marks a directory the demonstration made (and may replace).
const MARKER: &str = ".xinyong-demo";

struct Member {
    name: &'static str,
    jurisdiction: &'static str,
    role: Role,
}

const MEMBERS: [Member; 3] = [
    Member {
        name: "province",
        jurisdiction: "510000",
        role: Role::ProvinceNode,
    },
    Member {
        name: "chengdu",
        jurisdiction: "510100",
        role: Role::PrefectureNode,
    },
    Member {
        name: "mianyang",
        jurisdiction: "510700",
        role: Role::PrefectureNode,
    },
];

struct DemoFile {
    name: &'static str,
    what: &'static str,
    kind: Kind,
    version: Version,
    encoding: Option<CsvEncoding>,
    crlf: bool,
    seed: u64,
}

/// What each prefecture's departments hand over.
fn files(prefecture: &str) -> Vec<DemoFile> {
    match prefecture {
        "chengdu" => vec![
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
        ],
        _ => vec![
            DemoFile {
                name: "绵阳市场监管-行政处罚-v2.jsonl",
                what: "行政处罚, standard v2.0, JSON lines (HTTP-push style)",
                kind: Kind::Penalty,
                version: Version::V2,
                encoding: None,
                crlf: false,
                seed: 21,
            },
            DemoFile {
                name: "绵阳市场监管-行政许可-v2.csv",
                what: "行政许可, standard v2.0, UTF-8 CSV",
                kind: Kind::Licence,
                version: Version::V2,
                encoding: Some(CsvEncoding::Utf8),
                crlf: false,
                seed: 22,
            },
        ],
    }
}

fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        anyhow::ensure!(
            dir.join(MARKER).exists(),
            "{} is not empty and was not made by the demo: choose another --data-dir",
            dir.display()
        );
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("replacing the previous demo in {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join(MARKER), "made by `xinyong-node demo`\n")?;
    Ok(())
}

fn unix_now() -> u64 {
    xy_transport::devpki::unix_now()
}

/// Resource metadata of the provincial 双公示 tables (tagged with the record category they hold).
fn resource(code: &str, name: &str, category: &str) -> ResourceMetadata {
    ResourceMetadata {
        code: code.into(),
        name: name.into(),
        provider_unit: "四川省社会信用体系建设工作领导小组办公室".into(),
        classification: "03".into(),
        format: "table".into(),
        fields: vec![FieldSpec {
            name: if category == "xzcf" {
                "CF_WSH"
            } else {
                "XK_WSH"
            }
            .into(),
            data_element: String::new(),
            description: "决定文书号".into(),
        }],
        update_frequency: "每日".into(),
        sharing: "无条件共享".into(),
        sharing_conditions: String::new(),
        sensitivity: "内部".into(),
        description: format!("{name}（双公示，省级归集、治理后回流）"),
        tags: vec!["双公示".into(), format!("category:{category}")],
        derived_from: Vec::new(),
    }
}

struct Federation {
    coordinator: Arc<Coordinator>,
    nodes: Vec<LocalNode>,
    coordinator_addr: String,
}

/// Step 1: the coordinator, its users, catalogue and subscriptions; the nodes enrolled with
/// its CA and started.
async fn start_federation(dir: &Path) -> anyhow::Result<Federation> {
    let now = unix_now();
    let coordinator = Arc::new(
        Coordinator::open(&dir.join("coordinator"), None, Settings::default(), now).await?,
    );
    let mut password = [0u8; 18];
    rand::fill(&mut password[..]);
    let password = xy_exchange::hex(&password);
    xy_store::write_secret(&dir.join("coordinator").join("admin.password"), &password)?;
    let login = |name: &'static str| {
        let coordinator = Arc::clone(&coordinator);
        let password = password.clone();
        async move {
            let tokens = coordinator.login(name, &password, None, now).await?;
            anyhow::Ok(coordinator.verify(&tokens.access_token, now)?)
        }
    };
    coordinator
        .create_admin("root", &password, "510000", now)
        .await?;
    let root = login("root").await?;
    for (name, jurisdiction) in [("cd-admin", "510100"), ("my-admin", "510700")] {
        coordinator
            .register_user(
                name,
                &password,
                UserRole::PrefectureAdmin,
                jurisdiction,
                now,
            )
            .await?;
        coordinator.approve_user(&root, name, now).await?;
    }
    println!(
        "   coordinator: CA created, administrators root (province), cd-admin (成都), my-admin (绵阳)"
    );

    // The coordinator serves its API on loopback; the province fetches the signed configuration.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let coordinator_addr = listener.local_addr()?.to_string();
    let app = xy_coordinator_server::api::router(xy_coordinator_server::api::ApiState {
        coordinator: Arc::clone(&coordinator),
        clock: Arc::new(unix_now),
    });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "coordinator API stopped");
        }
    });
    println!("   coordinator API on http://{coordinator_addr}");

    // The catalogue: the province publishes its governed 双公示 tables; the prefectures subscribe.
    for (code, name, category) in [
        ("SC-XZCF", "四川省行政处罚信息", "xzcf"),
        ("SC-XZXK", "四川省行政许可信息", "xzxk"),
    ] {
        let version = coordinator
            .register_resource(&root, &resource(code, name, category), now)
            .await?;
        coordinator
            .review_resource(&root, code, version, true, "演示", now)
            .await?;
        coordinator
            .publish_resource(&root, code, version, now)
            .await?;
    }
    let chengdu_admin = login("cd-admin").await?;
    let mianyang_admin = login("my-admin").await?;
    for (admin, codes) in [
        (&chengdu_admin, ["SC-XZCF", "SC-XZXK"].as_slice()),
        (&mianyang_admin, ["SC-XZCF"].as_slice()),
    ] {
        for code in codes {
            let s = coordinator
                .subscribe(admin, code, "信用信息回流：信用监管与信易贷", now)
                .await?;
            println!(
                "   subscription: {} → {code}: {}",
                s.subscriber_jurisdiction, s.status
            );
        }
    }

    // Each node generates its key; the coordinator's CA issues its certificate.
    let ca_pem = pem_encode("CERTIFICATE", coordinator.ca_certificate());
    let crl_pem = pem_encode("X509 CRL", &coordinator.revocation_list(now).await?);
    let mut nodes = Vec::new();
    for member in &MEMBERS {
        let node_dir = dir.join(member.name);
        std::fs::create_dir_all(&node_dir)?;
        let identity = PeerIdentity::new(member.jurisdiction, member.role)?;
        let server_name = format!("{}.xinyong.internal", member.name);
        coordinator
            .register_node(&root, &identity, "127.0.0.1:0", &server_name, now)
            .await?;
        let token = coordinator
            .create_enrolment_token(&root, &identity, &server_name, 600, now)
            .await?;
        let key = xy_transport::devpki::generate_key();
        let enrolment = coordinator
            .enrol(
                &token.token,
                &certification_request(&key, &server_name)?,
                now,
            )
            .await?;
        let pki = node_dir.join("pki");
        std::fs::create_dir_all(&pki)?;
        let (cert, key_path, ca, crl) = (
            pki.join("node.crt"),
            pki.join("node.key"),
            pki.join("ca.crt"),
            pki.join("ca.crl"),
        );
        std::fs::write(&cert, &enrolment.certificate_pem)?;
        xy_store::write_secret(
            &key_path,
            &pem_encode("PRIVATE KEY", &private_key_to_pkcs8(&key)),
        )?;
        std::fs::write(&ca, &ca_pem)?;
        std::fs::write(&crl, &crl_pem)?;
        let credentials = xy_transport::Credentials::load(&cert, &key_path, &ca, Some(&crl))?;
        let node = LocalNode::start_with(
            credentials,
            member.name,
            &server_name,
            &node_dir,
            StoreLocation::Sqlite(node_dir.join("stores")),
            Vec::new(),
            xy_federation::flows::system_clock(),
        )
        .await?;
        println!(
            "   {} ({} {}) enrolled (certificate serial {}), QUIC on {}",
            member.name, member.role, member.jurisdiction, enrolment.serial, node.addr
        );
        nodes.push(node);
    }
    Ok(Federation {
        coordinator,
        nodes,
        coordinator_addr,
    })
}

/// A hand-made file: name, header, rows.
type CraftedFile = (String, Vec<&'static str>, Vec<Vec<String>>);

/// Ingest the generated files at a prefecture, plus the crafted rows; returns rows read.
async fn ingest_prefecture(
    node: &LocalNode,
    inbox: &Path,
    rows: usize,
    extra: &[CraftedFile],
) -> anyhow::Result<u64> {
    let (today, now) = now_cst();
    let options = IngestOptions {
        category: None,
        source_unit: None,
        operator: "demo".into(),
        today,
        now,
    };
    let mut total = 0;
    let mut paths = Vec::new();
    for f in files(&node.member) {
        let mut cfg = SynthConfig::new(f.seed, f.kind, today);
        cfg.version = f.version;
        if node.member == "mianyang" {
            cfg.source_unit = ("绵阳市市场监督管理局".into(), uscc("11510700MB0000022"));
        }
        let generator = Generator::new(cfg);
        let headers = generator.headers().to_vec();
        let path = inbox.join(f.name);
        let file = std::fs::File::create(&path)?;
        let generated = generator.take(rows);
        let defects = match f.encoding {
            Some(enc) => xy_synth::write_csv(file, &headers, generated, enc, f.crlf)?,
            None => xy_synth::write_jsonl(file, &headers, generated)?,
        };
        println!(
            "   {}: {} rows, {} ({} with injected errors)",
            f.name,
            defects.len(),
            f.what,
            defects
                .iter()
                .filter(|d| d.expected_outcome() == "rejected")
                .count()
        );
        paths.push(path);
    }
    for (name, headers, cells) in extra {
        let path = inbox.join(name);
        xy_synth::write_csv(
            std::fs::File::create(&path)?,
            headers,
            cells.iter().map(|c| xy_synth::SynthRow {
                cells: c.clone(),
                defect: Defect::None,
            }),
            CsvEncoding::Utf8,
            false,
        )?;
        paths.push(path);
    }
    for path in &paths {
        let result = node
            .ingestor
            .ingest_file(path, None, &options, None, None)
            .await?;
        print_result(&result);
        total += result.counts.total;
    }
    Ok(total)
}

fn uscc(base: &str) -> String {
    match xy_policy::identifiers::uscc_check_char(base.as_bytes()) {
        Some(check) => format!("{base}{}", char::from(check)),
        None => base.to_owned(),
    }
}

/// Rows a department of Chengdu also reported to Mianyang, and a fine typed in yuan instead of
/// ten thousand yuan.
fn crafted_rows(inbox: &Path) -> anyhow::Result<(CraftedFile, CraftedFile)> {
    let (today, _) = now_cst();
    let mut config = SynthConfig::new(11, Kind::Penalty, today);
    for defect in Defect::REJECTING {
        config.set_rate(defect, 0.0);
    }
    config.set_rate(Defect::Duplicate, 0.0);
    config.set_rate(Defect::Changed, 0.0);
    config.messy_rate = 0.0;
    let generator = Generator::new(config);
    let headers = generator.headers().to_vec();
    let rows: Vec<Vec<String>> = generator.take(40).map(|r| r.cells).collect();
    let fine = headers
        .iter()
        .position(|h| *h == "CF_NR_FK")
        .context("CF_NR_FK")?;
    let doc = headers
        .iter()
        .position(|h| *h == "CF_WSH")
        .context("CF_WSH")?;
    // Chengdu: a penalty whose fine is 350,000 万元 — 3.5 billion yuan (governance rule G03).
    let mut suspicious = rows
        .iter()
        .find(|r| !r[fine].is_empty())
        .context("a row with a fine")?
        .clone();
    suspicious[fine] = "350000.00".into();
    suspicious[doc] = format!("{}-补", suspicious[doc]);
    // Mianyang: three decisions of Chengdu's market regulator, reported to it as well.
    let shared: Vec<Vec<String>> = rows.iter().take(3).cloned().collect();
    let _ = inbox;
    Ok((
        (
            "成都市场监管-补报.csv".into(),
            headers.clone(),
            vec![suspicious],
        ),
        ("绵阳-转报成都处罚.csv".into(), headers, shared),
    ))
}

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    prepare_dir(&args.data_dir)?;
    println!(
        "== xinyong demo: a local federation on embedded SQLite in {} — a coordinator, the province (510000), 成都 (510100) and 绵阳 (510700)",
        args.data_dir.display()
    );
    println!(
        "\n-- 1. the coordinator: identity (CA, users), catalogue, subscriptions; nodes enrolled"
    );
    let federation = start_federation(&args.data_dir).await?;
    let [province, chengdu, mianyang] = &federation.nodes[..] else {
        anyhow::bail!("three nodes expected");
    };

    // The province takes its return themes from the signed global configuration.
    let client = xy_federation::CoordinatorClient::new(
        &federation.coordinator_addr,
        federation.coordinator.ca_certificate().to_vec(),
        &province.dir,
    );
    let (config, _) = client
        .current_config(unix_now())
        .await
        .context("fetching the signed global configuration")?;
    let themes: Vec<Theme> = config
        .return_categories()
        .into_iter()
        .map(|(jurisdiction, categories)| Theme {
            name: xy_federation::return_theme(&jurisdiction),
            categories,
        })
        .collect();
    for t in &themes {
        println!(
            "   province theme {} takes {:?} (granted subscriptions, from the signed configuration)",
            t.name, t.categories
        );
    }
    province.node.set_themes(themes).await?;

    println!(
        "\n-- 2. departments hand files to the prefectures, which ingest them: parse → map v1→v2 → clean → validate → dedup → store"
    );
    let (suspicious, reported_twice) = crafted_rows(&args.data_dir)?;
    let mut ingested = 0;
    for (node, extra) in [
        (chengdu, vec![suspicious]),
        (mianyang, vec![reported_twice]),
    ] {
        println!("   [{}]", node.member);
        let inbox = node.dir.join("inbox");
        std::fs::create_dir_all(&inbox)?;
        ingested += ingest_prefecture(node, &inbox, args.rows, &extra).await?;
        let audit = node.node.stores.collection.verify_audit().await?;
        println!(
            "   data log (数据日志): {} entries, {}",
            audit.entries,
            if audit.is_intact() {
                "SM3 chain intact".to_owned()
            } else {
                format!("BROKEN: {:?}", audit.problems)
            }
        );
    }

    println!(
        "\n-- 3. share up (共享): each prefecture streams its collection store to the province's raw store — QUIC, SM2-signed batches, applied once"
    );
    for node in [chengdu, mianyang] {
        let report = node.push_to(province, Flow::Share).await?;
        println!(
            "   {} → 510000: {} records in {} batch(es)",
            node.node.jurisdiction, report.records, report.batches
        );
    }

    println!(
        "\n-- 4. province governance (治理): raw → base by the rules of policies/governance.toml; failures become work orders"
    );
    let step = province.node.govern_pending().await?;
    println!(
        "   {} read: {} passed ({} duplicates of another source's record), {} failed → work orders",
        step.read, step.passed, step.duplicates, step.failed
    );
    let store = province.node.stores.province().await?;
    for order in store.orders().await? {
        println!(
            "   work order {} for {} (document {}): {}",
            order.order.id,
            order.origin,
            order.order.document_number,
            order
                .order
                .faults
                .iter()
                .map(|(rule, reason)| format!("{rule} {reason}"))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }

    println!(
        "\n-- 5. return flow (回流): the province returns each prefecture its theme; work orders go back to their source"
    );
    for node in [chengdu, mianyang] {
        for flow in [Flow::Return, Flow::Orders] {
            let report = province.push_to(node, flow).await?;
            println!(
                "   510000 → {} ({}): {} records in {} batch(es)",
                node.node.jurisdiction,
                flow.as_str(),
                report.records,
                report.batches
            );
        }
    }
    for order in chengdu.node.stores.collection.work_orders(true).await? {
        println!(
            "   成都 sees work order {} ({}): fix the row and ingest it again",
            order.order.id, order.order.document_number
        );
    }

    println!(
        "\n-- 6. scenario stores (应用场景库): extracted from the return-flow store, personal data masked"
    );
    for node in [chengdu, mianyang] {
        for (name, step) in node.node.extract_scenarios().await? {
            println!(
                "   {} scenario {name}: {} written, {} left out (withdrawn or not in the scenario)",
                node.node.jurisdiction,
                step.written,
                step.read - step.written
            );
        }
    }

    let scenario = chengdu.node.stores.scenario("xinyidai").await?;
    if let Some(person) = scenario
        .records(None, 10_000)
        .await?
        .into_iter()
        .find(|r| r.payload.to_string().contains("自然人"))
    {
        println!(
            "   a natural person's record in 成都's scenario, masked:\n{}",
            indent(&serde_json::to_string_pretty(&person.payload)?)
        );
    }

    println!("\n-- 7. lineage (数据血缘) of one returned record, as 绵阳 holds it");
    if let Some(record) = mianyang
        .node
        .stores
        .return_flow
        .query(None, 1)
        .await?
        .first()
    {
        let lineage = mianyang.node.lineage(&record.gid).await?;
        let copies = lineage["copies"].as_array().cloned().unwrap_or_default();
        let stores: Vec<&str> = copies.iter().filter_map(|c| c["store"].as_str()).collect();
        println!(
            "   {} is held in {}; its return-flow copy came this way:",
            record.gid,
            stores.join(", ")
        );
        if let Some(copy) = copies.first() {
            println!(
                "{}",
                indent(&serde_json::to_string_pretty(&copy["lineage"])?)
            );
        }
        println!(
            "   (also: xinyong-node lineage {} --data-dir {})",
            record.gid,
            mianyang.dir.display()
        );
    }

    println!(
        "\n-- 8. accounting: every row that entered is in a store, rejected with its reasons, or a duplicate"
    );
    let summary = account(&federation, ingested).await?;
    println!("   {}", summary.detail);
    println!("{}", summary.line);

    if args.exit_when_done {
        for node in &federation.nodes {
            node.stop().await;
        }
        return Ok(if summary.lost == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    println!("\n-- 9. serving 成都's HTTP API; try (Ctrl-C to stop):");
    let chengdu_dir = chengdu.dir.clone();
    let scenarios = chengdu
        .node
        .scenarios
        .iter()
        .map(|s| s.name.clone())
        .collect();
    let node = config::open_with(&chengdu_dir, NodeConfig::default()).await?;
    let token_path = chengdu_dir.join("api.token");
    println!("   TOKEN=$(cat {})", token_path.display());
    for path in [
        "/api/v1/quality?format=text",
        "/api/v1/return-flow/records?limit=2",
        "/api/v1/scenarios/xinyidai/records?limit=2",
        "/api/v1/work-orders",
    ] {
        println!(
            "   curl -H \"Authorization: Bearer $TOKEN\" 'http://{}{path}'",
            args.listen
        );
    }
    let views = xy_node_api::FlowViews {
        jurisdiction: "510100".into(),
        is_province: false,
        scenarios,
    };
    serve_node(node, &args.listen, None, Some(views)).await?;
    Ok(ExitCode::SUCCESS)
}

struct Summary {
    line: String,
    detail: String,
    lost: i64,
}

/// Count every stage from the stores and find what is unaccounted for.
async fn account(federation: &Federation, ingested: u64) -> anyhow::Result<Summary> {
    let [province, chengdu, mianyang] = &federation.nodes[..] else {
        anyhow::bail!("three nodes expected");
    };
    let prefectures = [chengdu, mianyang];
    // Ingest: each row stored (a record), a new version, an identical duplicate, or rejected.
    let mut outcomes = xy_store::OutcomeCounts::default();
    let mut records = 0;
    for node in prefectures {
        for entry in
            xy_store::datalog::entries(node.node.stores.collection.pool(), Some("ingest")).await?
        {
            outcomes.total += entry.total as u64;
            outcomes.stored += entry.stored as u64;
            outcomes.updated += entry.updated as u64;
            outcomes.duplicate += entry.duplicate as u64;
            outcomes.rejected += entry.rejected as u64;
        }
        records += node.node.stores.collection.record_count().await?;
    }
    let lost_ingest = ingested as i64
        - (outcomes.stored + outcomes.updated + outcomes.duplicate + outcomes.rejected) as i64
        + (outcomes.stored as i64 - records);
    // Share: every current record of the prefectures is in the raw store.
    let store = province.node.stores.province().await?;
    let counts = store.counts().await?;
    let lost_share = records - counts.raw;
    // Governance: every raw record was read, and passed (base) or failed (work order).
    let governed = counts.raw - counts.ungoverned;
    let lost_governance = counts.ungoverned;
    // Return: each prefecture holds its whole theme.
    let mut returned = 0;
    let mut lost_return = 0;
    for node in prefectures {
        let theme = xy_federation::return_theme(&node.node.jurisdiction);
        let expected = store.theme_after(&theme, 0, i64::MAX).await?.len() as i64;
        let held = node.node.stores.return_flow.record_count().await?;
        returned += held;
        lost_return += expected - held;
    }
    // Scenario: each holds exactly the return-flow records its definition takes.
    let mut in_scenarios = 0;
    let mut lost_scenario = 0;
    for node in prefectures {
        for scenario in &node.node.scenarios {
            let store = node.node.stores.scenario(&scenario.name).await?;
            let held = store.record_count().await?;
            let expected = node
                .node
                .stores
                .return_flow
                .records_after(0, i64::MAX)
                .await?
                .iter()
                .filter(|r| scenario.project(r, &node.node.keys).is_some())
                .count() as i64;
            in_scenarios += held;
            lost_scenario += expected - held;
        }
    }
    let lost = lost_ingest.abs()
        + lost_share.abs()
        + lost_governance.abs()
        + lost_return.abs()
        + lost_scenario.abs();
    Ok(Summary {
        detail: format!(
            "ingest: {} rows = {} stored + {} updated + {} duplicate + {} rejected; raw {} = base {} + duplicates {} + work orders {}; themes {} rows",
            outcomes.total,
            outcomes.stored,
            outcomes.updated,
            outcomes.duplicate,
            outcomes.rejected,
            counts.raw,
            counts.base,
            counts.duplicates,
            counts.open_orders,
            counts.themed
        ),
        line: format!(
            "SUMMARY ingested={ingested} shared={} governed={governed} returned={returned} scenario={in_scenarios} lost={lost}",
            counts.raw
        ),
        lost,
    })
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("   {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
