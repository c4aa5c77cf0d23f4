//! `xinyong-coordinator`: identity, catalogue and statistics for the province.
//!
//! The coordinator's services arrive with their own work item; until then the binary exists so the
//! workspace layout and packaging are fixed, and it says plainly that it does nothing yet.

use clap::Parser;

/// xinyong coordinator (省级协调服务): identity, data catalogue, statistics.
#[derive(Debug, Parser)]
#[command(name = "xinyong-coordinator", version, about)]
struct Cli {
    /// The command to run.
    command: Option<String>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    eprintln!(
        "xinyong-coordinator: no commands are available in this release (asked for {:?})",
        cli.command.as_deref().unwrap_or("")
    );
    std::process::ExitCode::from(2)
}
