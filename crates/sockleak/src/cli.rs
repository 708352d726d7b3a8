//! Command-line flags (stage one: raw flags), and their validation into the
//! configuration the commands run with (stage two, no I/O in between).

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use sockleak_model::filter::{NetnsFilter, RemoteFilter};
use sockleak_model::{Filter, StateSet};

/// Find, explain and help fix leaked TCP connections and file descriptors.
///
/// sockleak dumps every TCP socket of the host (all network namespaces) through
/// sock_diag, joins each socket to the processes and fds that hold it, and
/// says which process is leaking, toward whom, and what to do.
#[derive(Debug, Parser)]
#[command(name = "sockleak", version, max_term_width = 100)]
pub struct Cli {
    /// When to colour human output: auto (on a terminal, unless NO_COLOR is
    /// set), always or never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show every TCP socket and fd on the host, owned and counted, with
    /// findings.
    Scan(ScanArgs),
    /// Show what this run can see and what it cannot, and how to fix each gap.
    Doctor,
    /// Explain a TCP state, a finding or an error message in plain words
    /// (none: list all).
    Explain {
        /// A TCP state (close-wait, TIME_WAIT, ...), a finding kind
        /// (close_wait_leak, ...), or a symptom: an error message as it was
        /// printed ("Too many open files", "connect: Cannot assign requested
        /// address", ECONNRESET, "errno 99"). Several words are read as one
        /// message, so quotes are optional.
        #[arg(value_name = "TOPIC|ERROR", num_args = 0.., trailing_var_arg = true)]
        topic: Vec<String>,
    },
    /// Leak regression check: snapshot a server, load it, snapshot it again;
    /// FAIL (exit 1) when it holds more CLOSE_WAIT sockets or fds than before.
    Check(CheckArgs),
    /// Run a command and report the sockets and fds its processes leak.
    Run(RunArgs),
    /// Serve Prometheus metrics (per-process leaks, findings, host TCP
    /// state) over HTTP; scans run on their own interval.
    Serve(crate::commands::serve::ServeArgs),
    /// Watch over time: leak rates and time to failure, a live view on a
    /// terminal, else one JSON line per interval.
    Watch(crate::commands::watch::WatchArgs),
    /// Sum up a recording of `watch --record` and chart it (SVG).
    Report(crate::commands::report::ReportArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish,
    /// powershell), generated from these definitions.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff); with --dir, write sockleak.1 and one page
    /// per subcommand (sockleak-scan.1, ...) into DIR.
    Man {
        /// Write every page into this directory instead of printing
        /// sockleak.1.
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
}

/// The whole command line as clap sees it, with the long version: what is
/// parsed, and what completions and man pages are generated from.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    Cli::command().long_version(long_version())
}

/// `sockleak --version`: the version, the commit it was built from (build.rs;
/// "unknown" without git) and which eBPF objects are compiled in.
pub fn long_version() -> String {
    let objects = sockleak_collect::embedded_bpf_objects();
    let bpf = if objects.is_empty() {
        "eBPF objects: not built in (owners come from /proc)".to_string()
    } else {
        let list: Vec<String> = objects
            .iter()
            .map(|(name, bytes)| format!("{name} ({bytes} bytes)"))
            .collect();
        format!("eBPF objects: built in: {}", list.join(", "))
    };
    format!(
        "{} (commit {})\n{bpf}",
        env!("CARGO_PKG_VERSION"),
        env!("SOCKLEAK_GIT_COMMIT")
    )
}

/// Most worker threads `--threads` takes: more than the walk and the dumps
/// can use, and each costs a stack and a diag socket.
pub const MAX_THREADS: usize = 64;

/// `--threads N`: 1 to [`MAX_THREADS`].
pub fn parse_threads(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=MAX_THREADS).contains(&n) => Ok(n),
        _ => Err(format!(
            "{s:?}: expected a number of threads from 1 to {MAX_THREADS}"
        )),
    }
}

pub use crate::commands::check::CheckArgs;
pub use crate::commands::run::RunArgs;

/// Which sockets and processes to look at; shared by every command that scans.
#[derive(Debug, Args, Clone, Default)]
pub struct FilterArgs {
    /// Only sockets held by this process id (repeatable).
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,
    /// Only processes whose comm or command line contains NAME (repeatable).
    #[arg(long = "process", value_name = "NAME")]
    pub processes: Vec<String>,
    /// Only sockets in these states: ss names (close-wait, time-wait,
    /// established, listening, ...) or groups (all, connected, synchronized,
    /// bucket, big). Repeatable or comma-separated. Filtered in the kernel.
    #[arg(long = "state", value_name = "STATE", value_delimiter = ',')]
    pub states: Vec<String>,
    /// Only sockets with this local or remote port (repeatable).
    #[arg(long = "port", value_name = "PORT")]
    pub ports: Vec<u16>,
    /// Only sockets whose peer is ADDR or ADDR:PORT ([v6]:port for IPv6).
    #[arg(long = "remote", value_name = "ADDR[:PORT]")]
    pub remotes: Vec<String>,
    /// Only this network namespace: an `ip netns` name or a namespace id
    /// (nsfs inode). Default: every namespace this run may enter.
    #[arg(long = "netns", value_name = "NAME|ID")]
    pub netns: Vec<String>,
}

impl FilterArgs {
    /// Stage two: validates the flags into a model [`Filter`].
    pub fn to_filter(&self) -> Result<Filter> {
        let mut f = Filter {
            pids: self.pids.clone(),
            process_names: self.processes.clone(),
            ports: self.ports.clone(),
            exclude_pid: Some(std::process::id()),
            ..Filter::default()
        };
        if !self.states.is_empty() {
            let mut set = StateSet::empty();
            for s in &self.states {
                let one = StateSet::parse_one(s).with_context(|| {
                    format!(
                        "--state {s:?}: unknown state (try close-wait, time-wait, established, \
                         listening, fin-wait-2, connected, all)"
                    )
                })?;
                set.0 |= one.0;
            }
            f.states = set;
        }
        for r in &self.remotes {
            match RemoteFilter::parse(r) {
                Some(rf) => f.remotes.push(rf),
                None => bail!("--remote {r:?}: expected ADDR, ADDR:PORT or [V6ADDR]:PORT"),
            }
        }
        for n in &self.netns {
            f.netns.push(match n.parse::<u64>() {
                Ok(id) => NetnsFilter::Id(id),
                Err(_) => NetnsFilter::Name(n.clone()),
            });
        }
        Ok(f)
    }
}

/// Where owners (socket fd → process) come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum FdSourceArg {
    /// eBPF when it loads (root or CAP_BPF + CAP_PERFMON, kernel BTF), else /proc.
    #[default]
    Auto,
    /// Read every /proc/PID/fd link.
    Proc,
    /// The eBPF fd-table iterator; falls back to /proc with a note.
    Bpf,
}

#[cfg(target_os = "linux")]
impl From<FdSourceArg> for sockleak_collect::scan::FdSource {
    fn from(a: FdSourceArg) -> Self {
        match a {
            FdSourceArg::Auto => Self::Auto,
            FdSourceArg::Proc => Self::Proc,
            FdSourceArg::Bpf => Self::Bpf,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum FailOn {
    Info,
    Warning,
    Critical,
    /// Never exit 1 because of findings.
    Never,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// One line per socket, like `ss -tanp`, with owners, namespace and cookie.
    #[arg(long, conflicts_with = "json")]
    pub sockets: bool,
    /// One JSON document (schema sockleak.scan/v1, see docs/json-schema.md).
    #[arg(long)]
    pub json: bool,
    /// CLOSE_WAIT sockets younger than this are normal churn and not
    /// reported (seconds, or with a unit: 30s, 5m, 1h).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration_s)]
    pub min_age: u64,
    /// Exit with 1 when a finding is at or above this severity.
    #[arg(long, value_enum, default_value_t = FailOn::Warning)]
    pub fail_on: FailOn,
    /// TIME_WAIT share of the usable ephemeral ports toward one destination
    /// at which time_wait_pressure becomes a warning / critical.
    #[arg(long, value_name = "RATIO", default_value_t = 0.5)]
    pub time_wait_warn: f64,
    #[arg(long, value_name = "RATIO", default_value_t = 0.9)]
    pub time_wait_crit: f64,
    /// Show the command line of processes in full (it is shown in full in
    /// JSON; the human table shortens it).
    #[arg(long)]
    pub wide: bool,
    /// Worker threads for the /proc walk and the dumps (default: number of CPUs).
    #[arg(long, value_name = "N", value_parser = crate::cli::parse_threads)]
    pub threads: Option<usize>,
    /// Where socket owners come from: the eBPF fd-table iterator (fast, needs
    /// privileges and kernel BTF) or the /proc fd walk; see `sockleak doctor`.
    #[arg(long, value_enum, value_name = "SOURCE", default_value_t = FdSourceArg::Auto)]
    pub fd_source: FdSourceArg,
}

/// Parses `30`, `30s`, `5m`, `1h`, `2d` into seconds.
pub fn parse_duration_s(s: &str) -> std::result::Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1),
        Some((i, 'm')) => (&s[..i], 60),
        Some((i, 'h')) => (&s[..i], 3600),
        Some((i, 'd')) => (&s[..i], 86400),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{s:?}: expected a duration like 30s, 5m or 1h"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_s("30"), Ok(30));
        assert_eq!(parse_duration_s("30s"), Ok(30));
        assert_eq!(parse_duration_s("5m"), Ok(300));
        assert_eq!(parse_duration_s("1h"), Ok(3600));
        assert!(parse_duration_s("abc").is_err());
        assert!(parse_duration_s("").is_err());
    }

    #[test]
    fn filter_validation_names_the_flag() {
        let args = FilterArgs {
            states: vec!["close-wait".into(), "bogus".into()],
            ..FilterArgs::default()
        };
        let err = args.to_filter().expect_err("bogus state");
        assert!(err.to_string().contains("--state \"bogus\""));
        let ok = FilterArgs {
            states: vec!["close-wait".into(), "time-wait".into()],
            netns: vec!["4026531840".into(), "blue".into()],
            ..FilterArgs::default()
        }
        .to_filter()
        .expect("valid");
        assert!(ok.states.contains(sockleak_model::TcpState::TimeWait));
        assert!(!ok.states.contains(sockleak_model::TcpState::Listen));
        assert_eq!(ok.netns.len(), 2);
    }
}
