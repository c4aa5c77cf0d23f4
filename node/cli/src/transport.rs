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

/// Credentials and suite of a `tls` command.
#[derive(Debug, Args)]
pub(crate) struct TlsArgs {
    /// Certificate (PEM, SM2).
    #[arg(long)]
    cert: PathBuf,
    /// Private key (PKCS#8 PEM, SM2).
    #[arg(long)]
    key: PathBuf,
    /// Trust anchors (PEM).
    #[arg(long)]
    ca: PathBuf,
    /// Certificate revocation list (PEM); peers it lists are refused.
    #[arg(long)]
    crl: Option<PathBuf>,
    /// Cipher suite.
    #[arg(long, value_enum, default_value = "gcm")]
    suite: SuiteArg,
}

impl TlsArgs {
    fn credentials(&self) -> anyhow::Result<Credentials> {
        Ok(Credentials::load(
            &self.cert,
            &self.key,
            &self.ca,
            self.crl.as_deref(),
        )?)
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
