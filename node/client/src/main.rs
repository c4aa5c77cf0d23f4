//! `xinyong`: the client that institutions (banks, departments) use to reach a node.
//!
//! Its commands (private credit queries, encrypted scoring) arrive with the privacy-computing and
//! transport work; until then it says so plainly instead of pretending.

use clap::Parser;

/// xinyong client for institutions (金融机构等客户端).
#[derive(Debug, Parser)]
#[command(name = "xinyong", version, about)]
struct Cli {
    /// The command to run.
    command: Option<String>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    eprintln!(
        "xinyong: no client commands are available in this release (asked for {:?}); \
         private queries and encrypted scoring come with the node's QUIC transport",
        cli.command.as_deref().unwrap_or("")
    );
    std::process::ExitCode::from(2)
}
