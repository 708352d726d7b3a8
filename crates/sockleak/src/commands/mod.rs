//! One file per subcommand; `run` dispatches.

pub mod check;
mod completions;
mod doctor;
mod explain;
pub mod keeper;
mod man;
pub mod report;
pub mod run;
mod scan;
pub mod serve;
mod target;
pub mod watch;

use crate::cli::{Cli, Command};
use anyhow::{bail, Result};
use sockleak_model::Filter;

/// A `--pid` that names no process is an error (exit 2), as lsof and pgrep
/// users expect: an empty report would read as "this process is healthy".
pub fn require_pids(filter: &Filter) -> Result<()> {
    for pid in &filter.pids {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            bail!("no process {pid} (--pid)");
        }
    }
    Ok(())
}

/// Runs the command and returns the process exit code (see `exit.rs`).
pub fn run(cli: Cli) -> Result<u8> {
    let style = crate::output::style::Style::new(cli.color);
    match cli.command {
        Command::Scan(args) => scan::run(&args, style),
        Command::Doctor => doctor::run(style),
        Command::Explain { topic } => {
            let words = topic.join(" ");
            explain::run((!words.trim().is_empty()).then_some(words.as_str()))
        }
        Command::Check(args) => check::run(&args, style),
        Command::Run(args) => run::run(&args, style),
        Command::Serve(args) => serve::run(&args),
        Command::Watch(args) => watch::run(&args, style),
        Command::Report(args) => report::run(&args, style),
        Command::Completions { shell } => completions::run(shell),
        Command::Man { dir } => man::run(dir.as_deref()),
    }
}
