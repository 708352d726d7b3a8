//! `sockleak check`: a leak regression test. Baseline snapshot of a target
//! (a pid, or a command sockleak starts) → load (built-in or a command) →
//! settle → final snapshot → deltas, thresholds, findings and a verdict
//! (exit 0 PASS, 1 FAIL, 2 error; 128+N when stopped by signal N).

use super::target::{self, Spawned, CANCEL, SIGNAL};
use crate::cli::parse_duration_s;
use crate::exit;
use crate::loadgen::{self, Behavior, HttpTarget, LoadCounters, LoadReport, LoadSpec, TcpTarget};
use crate::output::progress::{check_line, CheckPhase, StatusLine};
use crate::output::{self, style::Style};
use anyhow::{bail, Context, Result};
use clap::{ArgGroup, Args};
use serde::Serialize;
use sockleak_collect::scan::{scan, ScanOptions};
use sockleak_model::filter::NetnsFilter;
use sockleak_model::findings::{diagnose, DiagnoseConfig, Finding};
use sockleak_model::regression::{
    compare, target_counts, CheckResult, Counts, GroupDelta, Outcome, Thresholds, Verdict,
};
use sockleak_model::{Filter, PartialKind, PartialNote, Snapshot, StateSet, TcpState};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The schema id of `--json`; bump only with incompatible changes.
pub const CHECK_SCHEMA: &str = "sockleak.check/v1";

/// Counts must hold still this long before the final snapshot is taken.
const QUIET: Duration = Duration::from_secs(1);
/// How often settle and readiness poll.
const POLL: Duration = Duration::from_millis(100);

/// Run a leak regression check: snapshot a server, load it, snapshot it
/// again, and fail when it holds more CLOSE_WAIT sockets or fds than before.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["pid", "spawn"])))]
#[command(group(ArgGroup::new("load").required(true).args(["http", "tcp", "load_cmd"])))]
pub struct CheckArgs {
    /// Target: a running process (its child processes are included).
    #[arg(long, value_name = "PID", help_heading = "Target")]
    pub pid: Option<u32>,
    /// Target: start this command in its own process group, wait until it
    /// listens, and stop it at the end (SIGTERM, then SIGKILL).
    #[arg(long, value_name = "'CMD ARGS'", help_heading = "Target")]
    pub spawn: Option<String>,
    /// With --spawn: ready once the target listens on this port (default:
    /// on any port).
    #[arg(long, value_name = "PORT", requires = "spawn", help_heading = "Target")]
    pub ready_port: Option<u16>,
    /// With --spawn: give up when the target does not listen within this.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration, help_heading = "Target")]
    pub ready_timeout: Duration,
    /// With --spawn: time between SIGTERM and SIGKILL when stopping it.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration, help_heading = "Target")]
    pub stop_grace: Duration,

    /// Load: HTTP/1.1 requests to this URL (http:// only).
    #[arg(long, value_name = "URL", help_heading = "Load")]
    pub http: Option<String>,
    /// Load: raw TCP connections to HOST:PORT, each sending --send bytes.
    #[arg(long, value_name = "HOST:PORT", help_heading = "Load")]
    pub tcp: Option<String>,
    /// Load: run this shell command instead (a curl loop, wrk, a test suite).
    /// It sees SOCKLEAK_TARGET_PID and SOCKLEAK_TARGET_PORT.
    #[arg(long, value_name = "'CMD'", help_heading = "Load")]
    pub load_cmd: Option<String>,
    /// Requests (connections for --tcp) to make.
    #[arg(long, value_name = "N", default_value_t = 1000, help_heading = "Load")]
    pub requests: u64,
    /// Requests in flight at once.
    #[arg(long, value_name = "N", default_value_t = 8, help_heading = "Load")]
    pub concurrency: usize,
    /// How each connection ends (see docs/check.md for the TCP states each
    /// leaves).
    #[arg(long, value_enum, default_value_t = Behavior::Close, help_heading = "Load")]
    pub behavior: Behavior,
    /// With --tcp: bytes to send per connection.
    #[arg(
        long,
        value_name = "BYTES",
        default_value_t = 64,
        help_heading = "Load"
    )]
    pub send: usize,
    /// With --tcp: bytes to read back per connection before it ends.
    #[arg(long, value_name = "BYTES", default_value_t = 0, help_heading = "Load")]
    pub recv: usize,
    /// Stop the load after this long (also --load-cmd).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration, help_heading = "Load")]
    pub deadline: Duration,
    /// One request fails after this long.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration, help_heading = "Load")]
    pub timeout: Duration,
    /// Allow load toward addresses that are not loopback nor this host's own.
    #[arg(long, help_heading = "Load")]
    pub allow_remote: bool,
    /// Failed requests tolerated before the `load` check fails.
    #[arg(long, value_name = "N", default_value_t = 0, help_heading = "Load")]
    pub max_failed_requests: u64,

    /// Wait at most this long after the load for the target's counts to hold
    /// still for 1 s.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration, help_heading = "Thresholds")]
    pub settle: Duration,
    /// New CLOSE_WAIT sockets allowed.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        help_heading = "Thresholds"
    )]
    pub max_close_wait: u64,
    /// New closed-but-held sockets (reset, never closed) allowed.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        help_heading = "Thresholds"
    )]
    pub max_closed_but_held: u64,
    /// Growth of the target's open fds allowed. The default 2 absorbs one-off
    /// lazy initialisation on the first requests (a log file, an epoll fd, a
    /// resolver socket); a per-request leak exceeds it after 3 requests.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 2,
        help_heading = "Thresholds"
    )]
    pub max_fd_growth: u64,
    /// Growth of socket fds allowed (default: not checked apart from fds).
    #[arg(long, value_name = "N", help_heading = "Thresholds")]
    pub max_socket_growth: Option<u64>,
    /// Growth of pipe fds allowed (default: not checked apart from fds).
    #[arg(long, value_name = "N", help_heading = "Thresholds")]
    pub max_pipe_growth: Option<u64>,
    /// Growth of ESTABLISHED sockets allowed (default: not checked).
    #[arg(long, value_name = "N", help_heading = "Thresholds")]
    pub max_established_growth: Option<u64>,

    /// One JSON document on stdout (schema sockleak.check/v1, docs/check.md).
    #[arg(long, help_heading = "Reports")]
    pub json: bool,
    /// Also write a JUnit XML report (one testcase per check) to FILE.
    #[arg(long, value_name = "FILE", help_heading = "Reports")]
    pub junit: Option<PathBuf>,
}

/// Parses `250ms`, `1.5s`, `30s`, `5m`, `1h` (a bare number is seconds).
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let t = s.trim();
    if let Some(ms) = t.strip_suffix("ms") {
        return ms
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| format!("{s:?}: expected a duration like 250ms, 1.5s, 30s or 5m"));
    }
    if let Some(secs) = t.strip_suffix('s') {
        if let Ok(f) = secs.parse::<f64>() {
            if f.is_finite() && f >= 0.0 {
                return Ok(Duration::from_secs_f64(f));
            }
        }
    }
    parse_duration_s(t).map(Duration::from_secs)
}

/// Everything `check` found; `--json` serialises exactly this.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub schema: &'static str,
    pub verdict: Verdict,
    /// "after 1000 requests the target holds 781 more CLOSE_WAIT sockets
    /// ...: FAIL".
    pub summary: String,
    pub started_at: String,
    pub duration_s: f64,
    pub target: TargetInfo,
    pub load: LoadInfo,
    pub settle: SettleInfo,
    pub baseline: Counts,
    #[serde(rename = "final")]
    pub final_: Counts,
    pub deltas: Deltas,
    pub checks: Vec<CheckResult>,
    pub findings: Vec<Finding>,
    pub partial: Vec<PartialNote>,
}

#[derive(Debug, Serialize)]
pub struct TargetInfo {
    pub pid: u32,
    pub comm: Option<String>,
    pub cmdline: Option<String>,
    /// Started by sockleak (`--spawn`).
    pub spawned: bool,
    /// Listening endpoints of the target at the baseline.
    pub listening: Vec<String>,
    /// How the target ended, when it did before the check was over.
    pub exit: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct LoadInfo {
    /// `http`, `tcp` or `command`.
    pub kind: &'static str,
    /// "1000 requests to http://127.0.0.1:8080/ (close, concurrency 8)".
    pub description: String,
    /// The built-in generator's report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generator: Option<LoadReport>,
    /// `--load-cmd`'s run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandLoad>,
}

#[derive(Debug, Serialize)]
pub struct CommandLoad {
    pub command: String,
    pub exit_code: Option<i32>,
    /// "exit status 0", "killed by signal 15 (SIGTERM)".
    pub status: String,
    pub duration_s: f64,
    /// The command was stopped at --deadline.
    pub deadline_reached: bool,
}

#[derive(Debug, Serialize)]
pub struct SettleInfo {
    /// The counts held still for 1 s before --settle ran out.
    pub settled: bool,
    pub waited_s: f64,
    pub limit_s: f64,
}

#[derive(Debug, Serialize)]
pub struct Deltas {
    pub states: BTreeMap<TcpState, i64>,
    pub fds: BTreeMap<&'static str, i64>,
    pub groups: Vec<GroupDelta>,
}

/// The load, validated before anything is started.
enum Load {
    Builtin(LoadSpec),
    Command(String),
}

impl Load {
    fn from_args(a: &CheckArgs) -> Result<Load> {
        let (target, addrs, what) = if let Some(url) = &a.http {
            let (t, addrs) = HttpTarget::parse(url)?;
            (loadgen::Target::Http(t), addrs, format!("--http {url}"))
        } else if let Some(addr) = &a.tcp {
            let (t, addrs) = TcpTarget::parse(addr, a.send, a.recv)?;
            (loadgen::Target::Tcp(t), addrs, format!("--tcp {addr}"))
        } else if let Some(cmd) = &a.load_cmd {
            if cmd.trim().is_empty() {
                bail!("--load-cmd: empty command");
            }
            return Ok(Load::Command(cmd.clone()));
        } else {
            bail!("give a load: --http URL, --tcp HOST:PORT or --load-cmd 'CMD'");
        };
        loadgen::dest::check(&what, &addrs, a.allow_remote)?;
        if a.requests == 0 || a.concurrency == 0 {
            bail!("--requests and --concurrency must be at least 1");
        }
        Ok(Load::Builtin(LoadSpec {
            target,
            requests: a.requests,
            concurrency: a.concurrency,
            behavior: a.behavior,
            deadline: a.deadline,
            timeout: a.timeout,
        }))
    }

    fn describe(&self) -> String {
        match self {
            Load::Builtin(s) => {
                let (unit, to) = match &s.target {
                    loadgen::Target::Http(h) => ("requests", h.url.clone()),
                    loadgen::Target::Tcp(t) => ("connections", t.addr.to_string()),
                };
                format!(
                    "{} {unit} to {to} ({}, concurrency {})",
                    s.requests,
                    s.behavior.as_str(),
                    s.concurrency
                )
            }
            Load::Command(c) => format!("the load command {c:?}"),
        }
    }

    /// The phrase after "after" in the summary.
    fn after_phrase(&self) -> String {
        match self {
            Load::Builtin(s) => match s.target {
                loadgen::Target::Http(_) => format!("{} requests", s.requests),
                loadgen::Target::Tcp(_) => format!("{} connections", s.requests),
            },
            Load::Command(_) => "the load command".to_string(),
        }
    }
}

/// The target being checked: its root pid, and the process sockleak started.
struct Target {
    root: u32,
    /// Where its process tree is looked up: the keeper of a spawned target
    /// (so a child re-parented when its parent died still counts, e.g. the
    /// server of `sh -c 'server | cat'`), else `root`.
    tree_root: u32,
    netns: Option<u64>,
    spawned: Option<Spawned>,
}

impl Target {
    /// How the target ended, if it did.
    fn exited(&mut self) -> Option<String> {
        match &mut self.spawned {
            Some(s) => s.poll().map(target::describe_status),
            None => (!std::path::Path::new(&format!("/proc/{}", self.root)).exists())
                .then(|| "exited".to_string()),
        }
    }

    /// Snapshot of the target's process tree (one namespace, all states).
    fn snapshot(&self, states: StateSet, want_info: bool) -> (Snapshot, Vec<u32>) {
        let table = target::process_table();
        let mut pids = target::tree(self.tree_root, &table);
        if self.tree_root != self.root {
            // The keeper itself holds only its two pipes.
            pids.retain(|&p| p != self.tree_root);
        }
        let netns = self
            .netns
            .or_else(|| table.get(&self.root).map(|&(_, ns)| ns))
            .filter(|&ns| ns != 0);
        if pids.is_empty() {
            return (Snapshot::default(), pids);
        }
        let opts = ScanOptions {
            filter: Filter {
                pids: pids.clone(),
                states,
                netns: netns.map(NetnsFilter::Id).into_iter().collect(),
                ..Filter::default()
            },
            want_info,
            threads: 2,
            ..ScanOptions::default()
        };
        (scan(&opts), pids)
    }
}

/// Why a phase stopped early.
enum Stopped {
    Signal(i32),
}

fn interrupted() -> Option<Stopped> {
    CANCEL
        .load(Ordering::Relaxed)
        .then(|| Stopped::Signal(SIGNAL.load(Ordering::Relaxed)))
}

pub fn run(args: &CheckArgs, style: Style) -> Result<u8> {
    // Stage two: everything validated before a process is started.
    let load = Load::from_args(args)?;
    let thresholds = Thresholds {
        max_close_wait: args.max_close_wait,
        max_closed_but_held: args.max_closed_but_held,
        max_fd_growth: args.max_fd_growth,
        max_socket_growth: args.max_socket_growth,
        max_pipe_growth: args.max_pipe_growth,
        max_established_growth: args.max_established_growth,
    };
    target::catch_signals()?;
    let started = Instant::now();
    let started_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);

    let mut tgt = match (&args.spawn, args.pid) {
        (Some(cmd), _) => {
            let s = Spawned::start("target", cmd, &[], args.stop_grace)?;
            Target {
                root: s.pid,
                tree_root: s.keeper_pid(),
                netns: None,
                spawned: Some(s),
            }
        }
        (None, Some(pid)) => {
            target::require_process(pid)?;
            Target {
                root: pid,
                tree_root: pid,
                netns: None,
                spawned: None,
            }
        }
        (None, None) => bail!("give a target: --pid PID or --spawn 'CMD ARGS'"),
    };
    let result = check_target(
        args,
        &load,
        &thresholds,
        &mut tgt,
        started,
        started_ms,
        style,
    );
    // Stop what sockleak started, whatever happened above.
    if let Some(s) = &mut tgt.spawned {
        s.stop(args.stop_grace);
    }
    match result {
        Ok(code) => Ok(code),
        Err(Failure::Stopped(Stopped::Signal(sig))) => {
            let what = match &tgt.spawned {
                Some(s) => format!("; the target (pid {}) was stopped", s.pid),
                None => String::new(),
            };
            eprintln!("sockleak: check interrupted by signal {sig}{what}");
            Ok(target::signal_exit_code(sig))
        }
        Err(Failure::Error(e)) => Err(e),
    }
}

enum Failure {
    Stopped(Stopped),
    Error(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Error(e)
    }
}

/// The phases the status line tells apart.
const PHASE_READY: u8 = 0;
const PHASE_BASELINE: u8 = 1;
const PHASE_LOAD: u8 = 2;
const PHASE_SETTLE: u8 = 3;

/// What the check is doing, written by the check and read by its status
/// line's thread (relaxed atomics: a figure one tick old is fine).
struct Progress {
    started: Instant,
    phase: AtomicU8,
    /// When the phase began, in ms since `started`.
    phase_at_ms: AtomicU64,
    /// While settling: when the counts last changed, in ms since `started`.
    changed_at_ms: AtomicU64,
    load: Arc<LoadCounters>,
}

impl Progress {
    fn new(started: Instant, phase: u8) -> Progress {
        let p = Progress {
            started,
            phase: AtomicU8::new(phase),
            phase_at_ms: AtomicU64::new(0),
            changed_at_ms: AtomicU64::new(0),
            load: Arc::new(LoadCounters::default()),
        };
        p.enter(phase);
        p
    }

    fn ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn enter(&self, phase: u8) {
        let now = self.ms();
        self.phase_at_ms.store(now, Ordering::Relaxed);
        self.changed_at_ms.store(now, Ordering::Relaxed);
        self.phase.store(phase, Ordering::Relaxed);
    }

    fn counts_changed(&self) {
        self.changed_at_ms.store(self.ms(), Ordering::Relaxed);
    }

    /// The phase as the status line shows it; `load` is the built-in load's
    /// request count and unit (`None`: a load command).
    fn phase(&self, d: Limits, load: Option<(u64, &'static str)>) -> CheckPhase {
        let now = self.started.elapsed();
        let since =
            |at: &AtomicU64| now.saturating_sub(Duration::from_millis(at.load(Ordering::Relaxed)));
        let in_phase = since(&self.phase_at_ms);
        match self.phase.load(Ordering::Relaxed) {
            PHASE_READY => CheckPhase::Ready {
                gives_up_in: d.ready_timeout.saturating_sub(in_phase),
            },
            PHASE_LOAD => match load {
                Some((total, unit)) => CheckPhase::Load {
                    done: self.load.finished.load(Ordering::Relaxed),
                    failed: self.load.failed.load(Ordering::Relaxed),
                    total,
                    unit,
                    running: in_phase,
                },
                None => CheckPhase::LoadCommand {
                    running: in_phase,
                    deadline_in: d.deadline.saturating_sub(in_phase),
                },
            },
            PHASE_SETTLE => CheckPhase::Settle {
                steady: since(&self.changed_at_ms),
                quiet: QUIET,
                gives_up_in: d.settle.saturating_sub(in_phase),
            },
            _ => CheckPhase::Baseline,
        }
    }
}

/// The time limits of a check, copied for the status line's thread.
#[derive(Clone, Copy)]
struct Limits {
    ready_timeout: Duration,
    settle: Duration,
    deadline: Duration,
}

/// Starts the status line of a check (a no-op unless stderr is a terminal).
fn status_line(progress: &Arc<Progress>, args: &CheckArgs, load: &Load) -> StatusLine {
    let load = match load {
        Load::Builtin(s) => Some((
            s.requests,
            match s.target {
                loadgen::Target::Http(_) => "requests",
                loadgen::Target::Tcp(_) => "connections",
            },
        )),
        Load::Command(_) => None,
    };
    let limits = Limits {
        ready_timeout: args.ready_timeout,
        settle: args.settle,
        deadline: args.deadline,
    };
    let progress = progress.clone();
    StatusLine::start(move || {
        Some(check_line(
            progress.started.elapsed(),
            &progress.phase(limits, load),
        ))
    })
}

fn check_target(
    args: &CheckArgs,
    load: &Load,
    thresholds: &Thresholds,
    tgt: &mut Target,
    started: Instant,
    started_ms: u64,
    style: Style,
) -> std::result::Result<u8, Failure> {
    let progress = Arc::new(Progress::new(
        started,
        if tgt.spawned.is_some() {
            PHASE_READY
        } else {
            PHASE_BASELINE
        },
    ));
    let line = status_line(&progress, args, load);
    let listening = if tgt.spawned.is_some() {
        wait_ready(tgt, args.ready_port, args.ready_timeout)?
    } else {
        let (snap, _) = tgt.snapshot(StateSet(TcpState::Listen.bit()), false);
        listening_of(&snap)
    };
    if let Some(s) = interrupted() {
        return Err(Failure::Stopped(s));
    }

    // Baseline.
    progress.enter(PHASE_BASELINE);
    let (base_snap, base_pids) = tgt.snapshot(StateSet::ALL, false);
    if base_pids.is_empty() {
        return Err(anyhow::anyhow!("target pid {}: gone before the baseline", tgt.root).into());
    }
    if !base_snap.namespaces.iter().any(|n| n.scanned) {
        return Err(anyhow::anyhow!(
            "the target's network namespace could not be scanned: {}",
            notes_text(&base_snap.partial)
        )
        .into());
    }
    tgt.netns = base_snap
        .process(tgt.root)
        .map(|p| p.netns)
        .filter(|&n| n != 0);
    let root_proc = base_snap.process(tgt.root).cloned();
    let baseline = target_counts(&base_snap, &base_pids);
    let mut partial: Vec<PartialNote> = Vec::new();
    keep_notes(&mut partial, &base_snap);

    // Load.
    let port_env = listening
        .first()
        .and_then(|l| l.rsplit(':').next())
        .unwrap_or("")
        .to_string();
    let mut load_info = LoadInfo {
        kind: match load {
            Load::Builtin(s) => match s.target {
                loadgen::Target::Http(_) => "http",
                loadgen::Target::Tcp(_) => "tcp",
            },
            Load::Command(_) => "command",
        },
        description: load.describe(),
        generator: None,
        command: None,
    };
    progress.enter(PHASE_LOAD);
    let mut load_check = match load {
        Load::Builtin(spec) => {
            let rep = loadgen::run(spec, &CANCEL, progress.load.clone())?;
            let c = generator_check(&rep, args.max_failed_requests);
            load_info.generator = Some(rep);
            c
        }
        Load::Command(cmd) => {
            let env = [
                ("SOCKLEAK_TARGET_PID", tgt.root.to_string()),
                ("SOCKLEAK_TARGET_PORT", port_env),
            ];
            let cl = run_load_command(cmd, &env, args.deadline, args.stop_grace)?;
            let c = command_check(&cl);
            load_info.command = Some(cl);
            c
        }
    };
    if let Some(s) = interrupted() {
        return Err(Failure::Stopped(s));
    }

    // Settle, unless the target is gone.
    progress.enter(PHASE_SETTLE);
    let settle_started = Instant::now();
    let mut exit = tgt.exited();
    let (final_snap, final_pids, settled) = if exit.is_some() {
        (Snapshot::default(), Vec::new(), false)
    } else {
        settle(tgt, args.settle, &progress)?
    };
    // The report follows: the line is cleared first.
    drop(line);
    if exit.is_none() {
        exit = tgt.exited();
    }
    let settle_info = SettleInfo {
        settled,
        waited_s: settle_started.elapsed().as_secs_f64(),
        limit_s: args.settle.as_secs_f64(),
    };
    keep_notes(&mut partial, &final_snap);
    let final_ = target_counts(&final_snap, &final_pids);

    // Findings about the target, with no age allowance: the check made these
    // sockets seconds ago, so "young" CLOSE_WAIT is exactly what it looks for.
    let cfg = DiagnoseConfig {
        min_age_s: 0,
        ..DiagnoseConfig::default()
    };
    let findings: Vec<Finding> = diagnose(&final_snap, final_snap.taken_at_ms, &cfg)
        .into_iter()
        .filter(|f| f.pid.is_none_or(|p| final_pids.contains(&p)))
        .collect();

    let mut reg = compare(baseline, final_, thresholds);
    let alive = match &exit {
        Some(how) => CheckResult::custom(
            "target_alive",
            Outcome::Fail,
            format!(
                "the target (pid {}) ended during the check: {how}",
                tgt.root
            ),
        ),
        None => CheckResult::custom(
            "target_alive",
            Outcome::Pass,
            format!("the target (pid {}) ran through the whole check", tgt.root),
        ),
    };
    reg.checks.insert(0, alive);
    if exit.is_some() {
        // Without a final snapshot the growth checks say nothing.
        reg.checks.retain(|c| c.name == "target_alive");
    }
    load_check.name = "load".to_string();
    reg.checks.insert(1, load_check);

    let verdict = reg.verdict();
    let summary = match &exit {
        Some(how) => format!(
            "after {} the target ended ({how}): {}",
            load.after_phrase(),
            verdict.as_str()
        ),
        None => reg.headline(&load.after_phrase()),
    };
    let report = CheckReport {
        schema: CHECK_SCHEMA,
        verdict,
        summary,
        started_at: output::rfc3339(started_ms),
        duration_s: started.elapsed().as_secs_f64(),
        target: TargetInfo {
            pid: tgt.root,
            comm: root_proc.as_ref().map(|p| p.comm.clone()),
            cmdline: root_proc.as_ref().map(|p| p.cmdline.clone()),
            spawned: tgt.spawned.is_some(),
            listening,
            exit,
        },
        load: load_info,
        settle: settle_info,
        deltas: Deltas {
            states: reg.states,
            fds: reg.fds,
            groups: reg.groups,
        },
        baseline: reg.baseline,
        final_: reg.final_,
        checks: reg.checks,
        findings,
        partial,
    };
    if let Some(path) = &args.junit {
        let xml = output::junit::render(&report);
        std::fs::write(path, xml)
            .with_context(|| format!("write the JUnit report {}", path.display()))?;
    }
    if args.json {
        let mut text =
            serde_json::to_string_pretty(&report).context("serialise the check report")?;
        text.push('\n');
        exit::write_stdout(text.as_bytes()).context("write the report")?;
    } else {
        exit::write_stdout(output::check::render(&report, style).as_bytes())
            .context("write the report")?;
    }
    Ok(match report.verdict {
        Verdict::Pass => exit::OK,
        Verdict::Fail => exit::FINDINGS,
        Verdict::Error => exit::ERROR,
    })
}

/// Waits until the spawned target (or a descendant) listens: on
/// `ready_port`, or on any port. Returns the listening endpoints.
fn wait_ready(
    tgt: &mut Target,
    ready_port: Option<u16>,
    timeout: Duration,
) -> std::result::Result<Vec<String>, Failure> {
    let until = Instant::now() + timeout;
    loop {
        if let Some(s) = interrupted() {
            return Err(Failure::Stopped(s));
        }
        if let Some(how) = tgt.exited() {
            return Err(anyhow::anyhow!(
                "the target (pid {}) ended before it listened: {how}",
                tgt.root
            )
            .into());
        }
        let (snap, _) = tgt.snapshot(StateSet(TcpState::Listen.bit()), false);
        let ready = snap
            .sockets
            .iter()
            .any(|s| s.state == TcpState::Listen && ready_port.is_none_or(|p| s.local.port == p));
        if ready {
            return Ok(listening_of(&snap));
        }
        if Instant::now() >= until {
            let on = ready_port.map_or(String::new(), |p| format!(" on port {p}"));
            return Err(anyhow::anyhow!(
                "the target (pid {}) did not listen{on} within {:?} (--ready-timeout)",
                tgt.root,
                timeout
            )
            .into());
        }
        std::thread::sleep(POLL);
    }
}

fn listening_of(snap: &Snapshot) -> Vec<String> {
    let mut v: Vec<String> = snap
        .sockets
        .iter()
        .filter(|s| s.state == TcpState::Listen)
        .map(|s| s.local.to_string())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Polls until the target's counts hold still for [`QUIET`], at most
/// `limit`. Returns the last snapshot, its pids and whether it settled.
fn settle(
    tgt: &mut Target,
    limit: Duration,
    progress: &Progress,
) -> std::result::Result<(Snapshot, Vec<u32>, bool), Failure> {
    let until = Instant::now() + limit;
    let (mut snap, mut pids) = tgt.snapshot(StateSet::ALL, true);
    let mut last = target_counts(&snap, &pids);
    let mut still_since = Instant::now();
    loop {
        if let Some(s) = interrupted() {
            return Err(Failure::Stopped(s));
        }
        if still_since.elapsed() >= QUIET {
            return Ok((snap, pids, true));
        }
        if Instant::now() >= until || tgt.exited().is_some() {
            return Ok((snap, pids, false));
        }
        std::thread::sleep(POLL);
        let (s, p) = tgt.snapshot(StateSet::ALL, true);
        let counts = target_counts(&s, &p);
        if counts != last {
            last = counts;
            still_since = Instant::now();
            progress.counts_changed();
        }
        snap = s;
        pids = p;
    }
}

/// Runs `--load-cmd` to its end, the deadline or Ctrl-C.
fn run_load_command(
    cmd: &str,
    env: &[(&str, String)],
    deadline: Duration,
    grace: Duration,
) -> std::result::Result<CommandLoad, Failure> {
    let started = Instant::now();
    let mut child = Spawned::start("load command", cmd, env, grace)?;
    let mut deadline_reached = false;
    let status = loop {
        if let Some(st) = child.poll() {
            break st;
        }
        if let Some(s) = interrupted() {
            child.stop(grace);
            return Err(Failure::Stopped(s));
        }
        if started.elapsed() >= deadline {
            deadline_reached = true;
            child.stop(grace);
            match child.poll() {
                Some(st) => break st,
                None => {
                    return Err(anyhow::anyhow!(
                        "the load command (pid {}) could not be stopped",
                        child.pid
                    )
                    .into())
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Children it left in its group are stopped too.
    child.stop(grace);
    Ok(CommandLoad {
        command: cmd.to_string(),
        exit_code: status.code(),
        status: target::describe_status(status),
        duration_s: started.elapsed().as_secs_f64(),
        deadline_reached,
    })
}

fn generator_check(rep: &LoadReport, max_failed: u64) -> CheckResult {
    let lat = &rep.latency;
    let base = format!(
        "{} of {} requests ok, {} failed; latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, \
         max {:.1} ms",
        rep.ok, rep.requests, rep.failed, lat.p50_ms, lat.p90_ms, lat.p99_ms, lat.max_ms
    );
    let errors: Vec<String> = rep
        .errors
        .iter()
        .take(3)
        .map(|(e, n)| format!("{n}× {e}"))
        .collect();
    let (outcome, message) = if rep.stop == loadgen::Stop::Deadline {
        (
            Outcome::Fail,
            format!("{base}; the load did not finish within --deadline"),
        )
    } else if rep.failed > max_failed {
        (
            Outcome::Fail,
            format!(
                "{base} (at most {max_failed} allowed): {}",
                errors.join(", ")
            ),
        )
    } else {
        (Outcome::Pass, base)
    };
    CheckResult {
        limit: Some(max_failed),
        after: Some(rep.failed),
        ..CheckResult::custom("load", outcome, message)
    }
}

fn command_check(c: &CommandLoad) -> CheckResult {
    if c.deadline_reached {
        CheckResult::custom(
            "load",
            Outcome::Fail,
            format!(
                "the load command was stopped at --deadline after {:.1} s",
                c.duration_s
            ),
        )
    } else if c.exit_code == Some(0) {
        CheckResult::custom(
            "load",
            Outcome::Pass,
            format!("the load command succeeded in {:.1} s", c.duration_s),
        )
    } else {
        CheckResult::custom(
            "load",
            Outcome::Fail,
            format!("the load command failed: {}", c.status),
        )
    }
}

/// Keeps what could not be seen about the target. Vanished processes are
/// normal churn, and namespace discovery notes concern other processes once
/// the target's own namespace was scanned.
fn keep_notes(into: &mut Vec<PartialNote>, snap: &Snapshot) {
    let ns_ok = snap.namespaces.iter().any(|n| n.scanned);
    for n in &snap.partial {
        let other_namespaces = ns_ok && n.what.contains("namespace");
        if n.kind != PartialKind::Vanished && !other_namespaces && !into.iter().any(|m| m == n) {
            into.push(n.clone());
        }
    }
}

fn notes_text(notes: &[PartialNote]) -> String {
    notes
        .iter()
        .map(|n| format!("{}: {}", n.what, n.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
