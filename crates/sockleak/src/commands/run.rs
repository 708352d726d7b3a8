//! `sockleak run -- CMD ARGS`: runs a command (a test suite, a script),
//! samples its whole process tree while it runs, and reports per process the
//! peak CLOSE_WAIT, what it still held at its last sample, fd growth and
//! findings. The command's exit code passes through, unless `--fail-on-leak`
//! is given and a leak was seen (then 1).
//!
//! The command runs under a keeper (keeper.rs), a child subreaper: a
//! grandchild whose parent exits is reparented to the keeper and stays in
//! the tree, and what is still running when the command ends is listed and
//! then stopped — also when sockleak itself is killed.

use super::check::parse_duration;
use super::target::{self, Attach, Spawned, CANCEL, SIGNAL};
use crate::exit;
use crate::output::progress::{run_line, StatusLine, TreeFigures};
use crate::output::style::Style;
use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;
use sockleak_collect::scan::{scan, ScanOptions};
use sockleak_model::findings::{diagnose, DiagnoseConfig, Finding};
use sockleak_model::{Cookie, FdKinds, Filter, Snapshot, TcpState};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Run a command and report the sockets and fds its processes leak.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Exit 1 when a leak was seen, whatever the command's exit code.
    #[arg(long)]
    pub fail_on_leak: bool,
    /// Time between two samples of the process tree.
    #[arg(long, value_name = "DURATION", default_value = "200ms", value_parser = parse_duration)]
    pub interval: Duration,
    /// A CLOSE_WAIT or closed-but-held socket held at least this long is a
    /// leak (shorter is a close in progress).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub min_age: Duration,
    /// Growth of one process's open fds (last sample − first) that counts as
    /// a leak. Runtimes open a handful of fds while they start (libraries,
    /// logs, epoll, thread pools); more than this is worth a look.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub max_fd_growth: u64,
    /// Also write the report as JSON (`sockleak.run/v1`, docs/check.md) to
    /// FILE. It is created before the command starts, so a path that cannot
    /// be written fails at once (exit 2) instead of after a long run.
    #[arg(long, value_name = "FILE")]
    pub json: Option<std::path::PathBuf>,
    /// The command and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<String>,
}

/// One process of the tree across its samples, keyed by (pid, start time).
#[derive(Debug, Default)]
struct Track {
    pid: u32,
    ppid: u32,
    comm: String,
    cmdline: String,
    samples: u32,
    first_fds: u32,
    last_fds: u32,
    first_kinds: FdKinds,
    last_kinds: FdKinds,
    peak_close_wait: u64,
    /// Sockets by state at the last sample.
    last_states: BTreeMap<TcpState, u64>,
    last_closed_but_held: u32,
    /// CLOSE_WAIT cookies → when first seen (ms).
    close_wait_seen: HashMap<Cookie, u64>,
    /// CLOSE_WAIT sockets held for at least --min-age.
    leaked_close_wait: u64,
    closed_but_held_since: Option<u64>,
    leaked_closed_but_held: u32,
    /// Findings at the last sample that had any.
    findings: Vec<Finding>,
    /// Still running when the command ended.
    alive_at_end: bool,
}

impl Track {
    fn fd_growth(&self) -> i64 {
        i64::from(self.last_fds) - i64::from(self.first_fds)
    }

    fn leaks(&self, max_fd_growth: u64) -> Vec<String> {
        let mut v = Vec::new();
        if self.leaked_close_wait > 0 {
            v.push(format!(
                "held {} CLOSE_WAIT socket(s) the peer had closed",
                self.leaked_close_wait
            ));
        }
        if self.leaked_closed_but_held > 0 {
            v.push(format!(
                "held {} closed-but-held (reset, never closed) socket(s)",
                self.leaked_closed_but_held
            ));
        }
        if self.fd_growth() > i64::try_from(max_fd_growth).unwrap_or(i64::MAX) {
            let d = |a: u32, b: u32| i64::from(b) - i64::from(a);
            let (f, l) = (&self.first_kinds, &self.last_kinds);
            v.push(format!(
                "open fds grew {} → {} ({:+}: sockets {:+}, pipes {:+}, files {:+}, other {:+})",
                self.first_fds,
                self.last_fds,
                self.fd_growth(),
                d(f.socket, l.socket),
                d(f.pipe, l.pipe),
                d(f.file, l.file),
                d(f.anon + f.other, l.anon + l.other)
            ));
        }
        v
    }
}

/// SIGTERM → SIGKILL grace for what the command leaves running.
const STOP_GRACE: Duration = Duration::from_secs(5);

pub fn run(args: &RunArgs, style: Style) -> Result<u8> {
    // As watch: a sample itself takes milliseconds; below this the loop
    // only burns CPU (0 ms spun 4 s of CPU in 3 s).
    if args.interval < Duration::from_millis(100) {
        anyhow::bail!("--interval must be at least 100ms (a sample itself takes milliseconds)");
    }
    let mut json_out = match &args.json {
        Some(path) => Some(
            crate::output::private_file(path)
                .with_context(|| format!("create {}", path.display()))?,
        ),
        None => None,
    };
    target::catch_signals()?;
    // The keeper (keeper.rs) is the subreaper of the command's tree: a
    // grandchild whose parent exits, or one that calls setsid(), stays in
    // the tree, and all of it is stopped when the command has ended, also
    // when sockleak dies.
    let mut child =
        match Spawned::start_argv("command", &args.command, &[], Attach::Inherit, STOP_GRACE)? {
            Ok(c) => c,
            Err(e) => {
                // As env(1) and timeout(1): 127 not found, 126 not runnable.
                let code = if e.kind() == std::io::ErrorKind::NotFound {
                    127
                } else {
                    126
                };
                eprintln!("sockleak: run: start {:?}: {e}", args.command[0]);
                return Ok(code);
            }
        };
    let keeper = child.keeper_pid();

    let min_age_ms = u64::try_from(args.min_age.as_millis()).unwrap_or(u64::MAX);
    let cfg = DiagnoseConfig {
        min_age_s: args.min_age.as_secs(),
        ..DiagnoseConfig::default()
    };
    let mut tracks: BTreeMap<(u32, u64), Track> = BTreeMap::new();
    let mut samples = 0u32;
    let mut forwarded = false;
    let started = Instant::now();
    let figures = Arc::new(Figures::default());
    let line = {
        let figures = figures.clone();
        StatusLine::start(move || Some(run_line(started.elapsed(), figures.get())))
    };
    let code = loop {
        let root_status = child.poll().map(exit_code);
        let table = target::process_table();
        let mut pids = target::tree(keeper, &table);
        pids.retain(|&p| p != keeper);
        if !pids.is_empty() {
            let snap = scan(&ScanOptions {
                filter: Filter {
                    pids: pids.clone(),
                    ..Filter::default()
                },
                threads: 2,
                ..ScanOptions::default()
            });
            samples += 1;
            record(&snap, &mut tracks, min_age_ms, &cfg);
            figures.set(u64::from(samples), &snap);
        }
        if let Some(code) = root_status {
            for t in tracks.values_mut() {
                t.alive_at_end = pids.contains(&t.pid);
            }
            break code;
        }
        if CANCEL.load(Ordering::Relaxed) && !forwarded {
            // Ctrl-C reached the whole foreground group already; a SIGTERM
            // sent to sockleak alone is passed on to the command.
            let sig = SIGNAL.load(Ordering::Relaxed);
            if sig == libc::SIGTERM {
                child.signal(libc::SIGTERM);
            }
            forwarded = true;
        }
        std::thread::sleep(args.interval);
    };
    // The report follows: the line is cleared first.
    drop(line);
    // What the command left running (listed in the report) is stopped.
    child.stop(STOP_GRACE);
    let leaky: Vec<&Track> = tracks
        .values()
        .filter(|t| !t.leaks(args.max_fd_growth).is_empty())
        .collect();
    let text = render(
        args,
        &tracks,
        code,
        samples,
        started.elapsed().as_secs_f64(),
        style,
    );
    // The report goes to stderr: stdout belongs to the command.
    eprint!("{text}");
    if let (Some(file), Some(path)) = (json_out.as_mut(), args.json.as_ref()) {
        let doc = report_json(
            args,
            &tracks,
            code,
            samples,
            started.elapsed().as_secs_f64(),
        );
        serde_json::to_writer_pretty(&mut *file, &doc)
            .map_err(std::io::Error::from)
            .and_then(|_| file.write_all(b"\n"))
            .with_context(|| format!("write {}", path.display()))?;
    }
    if args.fail_on_leak && !leaky.is_empty() {
        return Ok(exit::FINDINGS);
    }
    Ok(u8::try_from(code).unwrap_or(255))
}

/// The tree's figures at its latest sample, written by the sampling loop
/// and read by the status line's thread.
#[derive(Default)]
struct Figures {
    samples: AtomicU64,
    processes: AtomicU64,
    close_wait: AtomicU64,
    fds: AtomicU64,
}

impl Figures {
    fn set(&self, samples: u64, snap: &Snapshot) {
        let close_wait = snap
            .sockets
            .iter()
            .filter(|s| s.state == TcpState::CloseWait && !s.owners.is_empty())
            .count() as u64;
        let fds: u64 = snap
            .processes
            .iter()
            .map(|p| u64::from(p.fd_count.unwrap_or(0)))
            .sum();
        self.samples.store(samples, Ordering::Relaxed);
        self.processes
            .store(snap.processes.len() as u64, Ordering::Relaxed);
        self.close_wait.store(close_wait, Ordering::Relaxed);
        self.fds.store(fds, Ordering::Relaxed);
    }

    fn get(&self) -> TreeFigures {
        TreeFigures {
            samples: self.samples.load(Ordering::Relaxed),
            processes: self.processes.load(Ordering::Relaxed),
            close_wait: self.close_wait.load(Ordering::Relaxed),
            fds: self.fds.load(Ordering::Relaxed),
        }
    }
}

/// The exit code a shell reports: the command's own, 128+N for signal N.
fn exit_code(st: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    st.code()
        .or_else(|| st.signal().map(|sig| 128 + sig))
        .unwrap_or(255)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Folds one sample into the per-process tracks.
fn record(
    snap: &Snapshot,
    tracks: &mut BTreeMap<(u32, u64), Track>,
    min_age_ms: u64,
    cfg: &DiagnoseConfig,
) {
    let now = now_ms();
    let findings = diagnose(snap, snap.taken_at_ms, cfg);
    for p in &snap.processes {
        // An exited, not yet reaped process (zombie) has no fd table left:
        // its last real sample is the one before.
        if p.fd_count == Some(0) && p.fds.is_none_or(|k| k.total() == 0) {
            continue;
        }
        let t = tracks
            .entry((p.pid, p.start_time))
            .or_insert_with(|| Track {
                pid: p.pid,
                ppid: p.ppid,
                comm: p.comm.clone(),
                cmdline: p.cmdline.clone(),
                first_fds: p.fd_count.unwrap_or(0),
                first_kinds: p.fds.unwrap_or_default(),
                ..Track::default()
            });
        // exec() changes the command: keep the latest.
        t.comm.clone_from(&p.comm);
        t.cmdline.clone_from(&p.cmdline);
        t.samples += 1;
        t.last_fds = p.fd_count.unwrap_or(0);
        t.last_kinds = p.fds.unwrap_or_default();
        let mut states: BTreeMap<TcpState, u64> = BTreeMap::new();
        let mut cw_now = Vec::new();
        for s in snap
            .sockets
            .iter()
            .filter(|s| s.owners.iter().any(|o| o.pid == p.pid))
        {
            *states.entry(s.state).or_default() += 1;
            if s.state == TcpState::CloseWait {
                cw_now.push(s.cookie);
            }
        }
        let cw = states.get(&TcpState::CloseWait).copied().unwrap_or(0);
        t.peak_close_wait = t.peak_close_wait.max(cw);
        t.last_states = states;
        t.close_wait_seen.retain(|c, _| cw_now.contains(c));
        for c in cw_now {
            t.close_wait_seen.entry(c).or_insert(now);
        }
        let old = t
            .close_wait_seen
            .values()
            .filter(|&&since| now.saturating_sub(since) >= min_age_ms)
            .count() as u64;
        t.leaked_close_wait = t.leaked_close_wait.max(old);
        let cbh = p.closed_but_held.unwrap_or(0);
        t.last_closed_but_held = cbh;
        if cbh > 0 {
            let since = *t.closed_but_held_since.get_or_insert(now);
            if now.saturating_sub(since) >= min_age_ms {
                t.leaked_closed_but_held = t.leaked_closed_but_held.max(cbh);
            }
        } else {
            t.closed_but_held_since = None;
        }
        let mine: Vec<Finding> = findings
            .iter()
            .filter(|f| f.pid == Some(p.pid))
            .cloned()
            .collect();
        if !mine.is_empty() {
            t.findings = mine;
        }
    }
}

/// `--json`: the schema of the report (docs/schema/run-v1.schema.json).
pub const RUN_SCHEMA: &str = "sockleak.run/v1";

#[derive(Serialize)]
struct RunReport<'a> {
    schema: &'static str,
    command: &'a [String],
    /// The command's exit code (128+N for signal N).
    exit_code: i32,
    samples: u32,
    duration_s: f64,
    interval_ms: u64,
    min_age_ms: u64,
    max_fd_growth: u64,
    /// At least one process leaked.
    leak: bool,
    processes: Vec<ProcessReport<'a>>,
}

#[derive(Serialize)]
struct ProcessReport<'a> {
    pid: u32,
    ppid: u32,
    comm: &'a str,
    cmdline: &'a str,
    samples: u32,
    fds_first: u32,
    fds_last: u32,
    fd_growth: i64,
    fd_kinds_first: &'a FdKinds,
    fd_kinds_last: &'a FdKinds,
    peak_close_wait: u64,
    /// Sockets by state at its last sample.
    states_last: &'a BTreeMap<TcpState, u64>,
    closed_but_held_last: u32,
    leaked_close_wait: u64,
    leaked_closed_but_held: u32,
    alive_at_end: bool,
    /// Why it leaks, one sentence each; empty when it does not.
    leaks: Vec<String>,
    /// Findings at its last sample that had any.
    findings: &'a [Finding],
}

fn report_json<'a>(
    args: &'a RunArgs,
    tracks: &'a BTreeMap<(u32, u64), Track>,
    code: i32,
    samples: u32,
    secs: f64,
) -> RunReport<'a> {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let processes: Vec<ProcessReport<'a>> = tracks
        .values()
        .map(|t| ProcessReport {
            pid: t.pid,
            ppid: t.ppid,
            comm: &t.comm,
            cmdline: &t.cmdline,
            samples: t.samples,
            fds_first: t.first_fds,
            fds_last: t.last_fds,
            fd_growth: t.fd_growth(),
            fd_kinds_first: &t.first_kinds,
            fd_kinds_last: &t.last_kinds,
            peak_close_wait: t.peak_close_wait,
            states_last: &t.last_states,
            closed_but_held_last: t.last_closed_but_held,
            leaked_close_wait: t.leaked_close_wait,
            leaked_closed_but_held: t.leaked_closed_but_held,
            alive_at_end: t.alive_at_end,
            leaks: t.leaks(args.max_fd_growth),
            findings: &t.findings,
        })
        .collect();
    RunReport {
        schema: RUN_SCHEMA,
        command: &args.command,
        exit_code: code,
        samples,
        duration_s: (secs * 1000.0).round() / 1000.0,
        interval_ms: ms(args.interval),
        min_age_ms: ms(args.min_age),
        max_fd_growth: args.max_fd_growth,
        leak: processes.iter().any(|p| !p.leaks.is_empty()),
        processes,
    }
}

fn render(
    args: &RunArgs,
    tracks: &BTreeMap<(u32, u64), Track>,
    code: i32,
    samples: u32,
    secs: f64,
    st: Style,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nsockleak run: {:?} ended with exit code {code} after {secs:.1} s; {} process(es) \
         in {samples} samples every {:?}",
        args.command.join(" "),
        tracks.len(),
        args.interval
    );
    let _ = writeln!(
        out,
        "  {:>7} {:>7} {:<15} {:>7} {:>7} {:>6} {:>6} {:>5} {:>12} {:>5} {:>5}",
        "PID", "PPID", "COMM", "SAMPLES", "PEAK-CW", "CW", "ESTAB", "CBH", "FDS", "SOCK", "PIPE"
    );
    for t in tracks.values() {
        let s = |x: TcpState| t.last_states.get(&x).copied().unwrap_or(0);
        let fds = format!("{}→{}", t.first_fds, t.last_fds);
        let _ = writeln!(
            out,
            "  {:>7} {:>7} {:<15} {:>7} {:>7} {:>6} {:>6} {:>5} {:>12} {:>5} {:>5}{}",
            t.pid,
            t.ppid,
            crate::output::truncate(&t.comm, 15),
            t.samples,
            t.peak_close_wait,
            s(TcpState::CloseWait),
            s(TcpState::Established),
            t.last_closed_but_held,
            fds,
            t.last_kinds.socket,
            t.last_kinds.pipe,
            if t.alive_at_end {
                "  (still running)"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(
        out,
        "  (CW, ESTAB, CBH, SOCK, PIPE: at each process's last sample; FDS: first → last)"
    );
    let mut leaks = 0;
    for t in tracks.values() {
        let l = t.leaks(args.max_fd_growth);
        if l.is_empty() {
            continue;
        }
        leaks += 1;
        let _ = writeln!(
            out,
            "{} {} (pid {}, {}): {}",
            st.red("LEAK"),
            t.comm,
            t.pid,
            crate::output::truncate(&t.cmdline, 60),
            l.join("; ")
        );
        for f in &t.findings {
            let _ = writeln!(out, "  {} {}: {}", f.severity, f.kind, f.summary);
            if !f.advice.is_empty() {
                let _ = writeln!(out, "    {}", f.advice);
            }
        }
    }
    let left: Vec<String> = tracks
        .values()
        .filter(|t| t.alive_at_end)
        .map(|t| format!("{} (pid {})", t.comm, t.pid))
        .collect();
    if !left.is_empty() {
        let _ = writeln!(
            out,
            "note: still running after the command ended (stopped): {}",
            left.join(", ")
        );
    }
    let verdict = match (leaks, args.fail_on_leak) {
        (0, _) => format!("no leak seen; exit code {code} passed through"),
        (n, true) => format!("leak seen in {n} process(es): exit 1 (--fail-on-leak)"),
        (n, false) => format!(
            "leak seen in {n} process(es); exit code {code} passed through (use \
             --fail-on-leak to fail)"
        ),
    };
    let _ = writeln!(out, "sockleak run: {verdict}");
    out
}
