//! `xinyong-coordinator`: the province's coordinator — identity (SM2 CA, enrolment, revocation,
//! the signed global configuration, users, single sign-on), the data catalogue and the audit chain. Thin over
//! `xy-coordinator-server`.
//!
//! ```text
//! xinyong-coordinator serve --data-dir DIR --listen ADDR [--database-url URL]
//! xinyong-coordinator admin create --username NAME [--jurisdiction 510000] --data-dir DIR   (password on stdin)
//! xinyong-coordinator audit verify --data-dir DIR
//! xinyong-coordinator token create --jurisdiction 510100 --role prefecture-node --common-name N --data-dir DIR
//! xinyong-coordinator certificate revoke SERIAL --reason TEXT --data-dir DIR
//! xinyong-coordinator user approve NAME --data-dir DIR
//! xinyong-coordinator node add --jurisdiction 510100 --role prefecture-node --address A --server-name N --data-dir DIR
//! ```
//!
//! The administrative commands act as `cli` with a province administrator's rights: whoever
//! runs them on the coordinator's host holds its data directory anyway. Each is audited.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use xy_coordinator_server::api::{ApiState, router};
use xy_coordinator_server::{Claims, Coordinator, Settings, UserRole};
use xy_gmtls::pki::{PeerIdentity, Role};

/// xinyong coordinator (省级协调服务): identity, enrolment, the signed global configuration.
#[derive(Debug, Parser)]
#[command(name = "xinyong-coordinator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the coordinator keeps its data.
#[derive(Debug, Args)]
struct DataArgs {
    /// Data directory: SQLite database, CA and single-sign-on keys.
    #[arg(
        long,
        env = "XY_COORDINATOR_DIR",
        default_value = "./xinyong-coordinator"
    )]
    data_dir: PathBuf,
    /// PostgreSQL URL (production); SQLite in the data directory when absent.
    #[arg(long, env = "XY_COORDINATOR_DATABASE_URL")]
    database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (see /api/openapi.json).
    Serve {
        #[command(flatten)]
        data: DataArgs,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8643")]
        listen: SocketAddr,
    },
    /// Administrators.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// The audit chain.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Enrolment tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Certificates.
    Certificate {
        #[command(subcommand)]
        command: CertificateCommand,
    },
    /// Users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// The node directory of the global configuration.
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// A one-time enrolment token for one certificate (printed once).
    Create {
        #[command(flatten)]
        data: DataArgs,
        /// Six-digit division code.
        #[arg(long)]
        jurisdiction: String,
        /// province-node, prefecture-node, institution-client or department-client.
        #[arg(long)]
        role: String,
        /// The certificate's DNS name.
        #[arg(long)]
        common_name: String,
        /// Hours the token stays valid.
        #[arg(long, default_value_t = 72)]
        ttl_hours: u64,
    },
}

#[derive(Debug, Subcommand)]
enum CertificateCommand {
    /// Revoke a certificate (on the next CRL and configuration).
    Revoke {
        #[command(flatten)]
        data: DataArgs,
        /// Serial number, hex.
        serial: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Approve a pending user.
    Approve {
        #[command(flatten)]
        data: DataArgs,
        /// Username.
        username: String,
    },
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// Add or move a node in the directory.
    Add {
        #[command(flatten)]
        data: DataArgs,
        /// Six-digit division code.
        #[arg(long)]
        jurisdiction: String,
        /// province-node or prefecture-node.
        #[arg(long)]
        role: String,
        /// Its QUIC address.
        #[arg(long)]
        address: String,
        /// The name in its certificate.
        #[arg(long)]
        server_name: String,
    },
}

/// The operator on the coordinator's host.
fn cli_actor() -> Claims {
    let now = unix_now();
    Claims {
        sub: "cli".into(),
        role: UserRole::ProvinceAdmin,
        jurisdiction: "510000".into(),
        iat: now,
        exp: now + 60,
        iss: "xinyong-coordinator".into(),
        aud: xy_coordinator_server::AUDIENCE.into(),
    }
}

fn identity(jurisdiction: &str, role: &str) -> anyhow::Result<PeerIdentity> {
    let role = Role::parse(role).with_context(|| {
        format!(
            "role {role:?}: one of {}",
            Role::ALL.map(Role::as_str).join(", ")
        )
    })?;
    Ok(PeerIdentity::new(jurisdiction, role)?)
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create an active province administrator; the password is read from standard input.
    Create {
        #[command(flatten)]
        data: DataArgs,
        /// Username.
        #[arg(long)]
        username: String,
        /// Jurisdiction (six-digit division code of the province).
        #[arg(long, default_value = "510000")]
        jurisdiction: String,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the SM3 chain of the audit log; exits 1 at the first broken entry.
    Verify {
        #[command(flatten)]
        data: DataArgs,
    },
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn open(data: &DataArgs) -> anyhow::Result<Coordinator> {
    Coordinator::open(
        &data.data_dir,
        data.database_url.as_deref(),
        Settings::default(),
        unix_now(),
    )
    .await
    .with_context(|| format!("opening the coordinator in {}", data.data_dir.display()))
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { data, listen } => {
            let coordinator = Arc::new(open(&data).await?);
            // Conditional subscriptions past their time limit are escalated every five minutes.
            let escalating = Arc::clone(&coordinator);
            tokio::spawn(async move {
                let mut every = tokio::time::interval(std::time::Duration::from_secs(300));
                loop {
                    every.tick().await;
                    if let Err(e) = escalating.escalate_overdue(unix_now()).await {
                        eprintln!("xinyong-coordinator: escalating overdue subscriptions: {e}");
                    }
                }
            });
            let app = router(ApiState {
                coordinator,
                clock: Arc::new(unix_now),
            });
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            println!(
                "xinyong-coordinator: API on http://{}/api (description at /api/openapi.json)",
                listener.local_addr()?
            );
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin {
            command:
                AdminCommand::Create {
                    data,
                    username,
                    jurisdiction,
                },
        } => {
            let mut password = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut password)
                .context("reading the password from standard input")?;
            let coordinator = open(&data).await?;
            coordinator
                .create_admin(
                    &username,
                    password.trim_end_matches(['\r', '\n']),
                    &jurisdiction,
                    unix_now(),
                )
                .await?;
            println!("province administrator {username} created");
            Ok(ExitCode::SUCCESS)
        }
        Command::Token {
            command:
                TokenCommand::Create {
                    data,
                    jurisdiction,
                    role,
                    common_name,
                    ttl_hours,
                },
        } => {
            let identity = identity(&jurisdiction, &role)?;
            let token = open(&data)
                .await?
                .create_enrolment_token(
                    &cli_actor(),
                    &identity,
                    &common_name,
                    ttl_hours * 3600,
                    unix_now(),
                )
                .await?;
            println!("{}", token.token);
            eprintln!(
                "one-time enrolment token for {common_name} ({role}, {jurisdiction}), valid until {}",
                token.expires_at
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Certificate {
            command:
                CertificateCommand::Revoke {
                    data,
                    serial,
                    reason,
                },
        } => {
            open(&data)
                .await?
                .revoke(&cli_actor(), &serial, &reason, unix_now())
                .await?;
            println!("certificate {serial} revoked");
            Ok(ExitCode::SUCCESS)
        }
        Command::User {
            command: UserCommand::Approve { data, username },
        } => {
            open(&data)
                .await?
                .approve_user(&cli_actor(), &username, unix_now())
                .await?;
            println!("user {username} approved");
            Ok(ExitCode::SUCCESS)
        }
        Command::Node {
            command:
                NodeCommand::Add {
                    data,
                    jurisdiction,
                    role,
                    address,
                    server_name,
                },
        } => {
            let identity = identity(&jurisdiction, &role)?;
            open(&data)
                .await?
                .register_node(&cli_actor(), &identity, &address, &server_name, unix_now())
                .await?;
            println!("node {jurisdiction} {role} at {address} ({server_name})");
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command: AuditCommand::Verify { data },
        } => {
            let check = open(&data).await?.verify_audit().await?;
            match check.first_broken {
                None => {
                    println!("audit chain intact: {} entries", check.entries);
                    Ok(ExitCode::SUCCESS)
                }
                Some(seq) => {
                    println!(
                        "audit chain BROKEN at entry {seq} ({} entries)",
                        check.entries
                    );
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("XY_LOG").unwrap_or_else(|_| "info".into()),
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
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
