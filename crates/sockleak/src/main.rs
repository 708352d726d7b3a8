//! The sockleak command-line tool: finds, explains and helps fix leaked TCP
//! connections and file descriptors on Linux.

use sockleak::exit;
#[cfg(target_os = "linux")]
use sockleak::{cli, commands};
use std::process::ExitCode;

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    use clap::FromArgMatches;
    // The keeper (commands/keeper.rs) is sockleak re-executed by itself;
    // it must not go through the CLI (nor start any thread).
    if let Some(code) = commands::keeper::main_if_keeper() {
        return code;
    }
    let cli = match cli::command()
        .try_get_matches()
        .and_then(|m| cli::Cli::from_arg_matches(&m))
    {
        Ok(c) => c,
        Err(e) => {
            // --help and --version are not errors.
            let code = if e.use_stderr() {
                exit::ERROR
            } else {
                exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match commands::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            exit::report_error(&e);
            ExitCode::from(exit::ERROR)
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    eprintln!(
        "sockleak: this tool supports Linux only (it reads sock_diag netlink and /proc); \
         this build is for {}",
        std::env::consts::OS
    );
    ExitCode::from(exit::ERROR)
}
