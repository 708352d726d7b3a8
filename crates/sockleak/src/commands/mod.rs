//! One file per subcommand; `run` dispatches.

mod doctor;
mod explain;
mod scan;

use crate::cli::{Cli, Command};
use anyhow::Result;

/// Runs the command and returns the process exit code (see `exit.rs`).
pub fn run(cli: Cli) -> Result<u8> {
    let style = crate::output::style::Style::new(cli.color);
    match cli.command {
        Command::Scan(args) => scan::run(&args, style),
        Command::Doctor => doctor::run(style),
        Command::Explain { topic } => explain::run(topic.as_deref()),
    }
}
