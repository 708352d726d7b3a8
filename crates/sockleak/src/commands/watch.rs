//! `sockleak watch`: snapshots at an interval, leak detection over time, and
//! either the live view (stdout is a terminal), one JSON line per snapshot
//! (`--jsonl`, or stdout is not a terminal) or human lines for what changed
//! (`--plain`); `--record FILE` also writes the JSON lines to a file for
//! `sockleak report`.
//!
//! A collector thread scans (reusing unchanged fd maps, see
//! `sockleak_collect::procfs::cache`) and sends whole snapshots over a
//! channel; the analysis ([`Watcher`]) and the output run on the main thread.

use crate::cli::{parse_duration_s, FilterArgs};
use crate::exit;
use crate::output::{jsonl, plain, style::Style};
use crate::tui::{self, app::App, terminal, Event};
use anyhow::{bail, Context, Result};
use clap::Args;
use sockleak_collect::incremental::Incremental;
use sockleak_collect::procfs::cache::FdCache;
use sockleak_collect::scan::{
    release_freed_memory, scan_unfiltered_cached, scan_unfiltered_incremental, ScanOptions,
};
use sockleak_model::enrich::{Observation, WatchConfig, Watcher};
use sockleak_model::findings::DiagnoseConfig;
use sockleak_model::history::HistoryConfig;
use sockleak_model::{Filter, PartialNote, Snapshot};
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Time between snapshots (500ms, 2s, 1m; at least 100ms).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration_ms)]
    pub interval: u64,
    /// Stop after this long (default: until q, Ctrl-C or SIGTERM).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms, conflicts_with = "count")]
    pub duration: Option<u64>,
    /// Stop after N snapshots.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// One JSON line per snapshot (schema sockleak.watch/v1, see
    /// docs/watch.md), also on a terminal. The default when stdout is not a
    /// terminal.
    #[arg(long, conflicts_with = "plain")]
    pub jsonl: bool,
    /// Human lines, only for what changed, instead of the live view.
    #[arg(long)]
    pub plain: bool,
    /// Also write the JSON lines to FILE, for `sockleak report FILE`.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// CLOSE_WAIT sockets younger than this are normal churn in a single
    /// snapshot (seconds, or 30s, 5m). A group that keeps growing is a leak
    /// whatever its age.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration_s)]
    pub min_age: u64,
    /// How far back rates and leak decisions look (at most 300 samples).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration_ms)]
    pub window: u64,
    /// Worker threads for the /proc walk (default: number of CPUs).
    #[arg(long, value_name = "N", value_parser = crate::cli::parse_threads)]
    pub threads: Option<usize>,
}

/// Parses `300ms`, `2s`, `1.5s`, `5m`, `1h` (a bare number is seconds) into
/// milliseconds.
pub fn parse_duration_ms(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let (num, mult) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60_000.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3_600_000.0)
    } else {
        (t, 1000.0)
    };
    num.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| v * mult)
        .filter(|ms| *ms < 1e15)
        .map(|ms| ms.round() as u64)
        .ok_or_else(|| format!("{s:?}: expected a duration like 500ms, 2s, 5m or 1h"))
}

/// Where the observations go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Tui,
    Jsonl,
    Plain,
}

/// Validated settings (stage two).
struct Settings {
    filter: Filter,
    scan: ScanOptions,
    cfg: WatchConfig,
    interval_ms: u64,
    count: Option<u64>,
    duration_ms: Option<u64>,
}

fn settings(args: &WatchArgs) -> Result<Settings> {
    let filter = args.filter.to_filter()?;
    super::require_pids(&filter)?;
    if args.interval < 100 {
        bail!("--interval must be at least 100ms (a scan itself takes tens of ms)");
    }
    if args.window < args.interval.saturating_mul(4) {
        bail!(
            "--window must span at least 4 intervals (a decision needs 5 samples): raise \
             --window or lower --interval"
        );
    }
    let mut scan = ScanOptions {
        filter: filter.clone(),
        ..ScanOptions::default()
    };
    if let Some(t) = args.threads {
        scan.threads = t.max(1);
    }
    let cfg = WatchConfig {
        diagnose: DiagnoseConfig {
            min_age_s: args.min_age,
            self_pid: Some(std::process::id()),
            ..DiagnoseConfig::default()
        },
        history: HistoryConfig {
            window_ms: args.window,
            ..HistoryConfig::default()
        },
        ..WatchConfig::default()
    };
    Ok(Settings {
        filter,
        scan,
        cfg,
        interval_ms: args.interval,
        count: args.count,
        duration_ms: args.duration,
    })
}

pub fn run(args: &WatchArgs, style: Style) -> Result<u8> {
    let s = settings(args)?;
    let mode = if args.jsonl {
        Mode::Jsonl
    } else if args.plain {
        Mode::Plain
    } else if std::io::stdout().is_terminal() {
        Mode::Tui
    } else {
        Mode::Jsonl
    };
    let mut record = match &args.record {
        Some(p) => Some(BufWriter::new(
            crate::output::private_file(p).with_context(|| format!("create {}", p.display()))?,
        )),
        None => None,
    };
    terminal::install_signal_handlers().context("install signal handlers")?;

    // A rendezvous channel: at most two snapshots exist (the one being shown
    // and the one being collected; at 150k sockets each is ~40 MB), and a
    // slow consumer slows sampling down instead of piling up memory.
    let (tx, rx) = mpsc::sync_channel::<Event>(0);
    let quit = Arc::new(AtomicBool::new(false));
    let collector = {
        let (opts, tx, quit) = (s.scan.clone(), tx.clone(), Arc::clone(&quit));
        let (interval, count, duration) = (s.interval_ms, s.count, s.duration_ms);
        std::thread::Builder::new()
            .name("sockleak-collector".into())
            .spawn(move || collect(&opts, interval, count, duration, &tx, &quit))
            .context("start the collector thread")?
    };

    let result = match mode {
        Mode::Tui => run_tui(&s, &rx, tx, &quit, record.as_mut()),
        Mode::Jsonl | Mode::Plain => {
            drop(tx);
            stream(&s, &rx, mode, style, record.as_mut())
        }
    };
    quit.store(true, Ordering::SeqCst);
    // Unblocks a collector waiting to send, then waits for it (at most one
    // scan).
    drop(rx);
    let _ = collector.join();
    if let Some(r) = record.as_mut() {
        r.flush().context("write the recording")?;
    }
    result
}

/// Every this many samples the sockets are dumped again whole: the queues
/// and tcp_info of sockets that changed no state are refreshed then.
const FULL_DUMP_EVERY: u32 = 10;

/// The collector thread: one snapshot per interval, on a fixed schedule
/// (start + n × interval) so rates are not skewed by scan time, until the
/// count or duration is reached or `quit`/a signal says stop.
fn collect(
    opts: &ScanOptions,
    interval_ms: u64,
    count: Option<u64>,
    duration_ms: Option<u64>,
    tx: &SyncSender<Event>,
    quit: &AtomicBool,
) {
    let mut cache = FdCache::default();
    // Between full dumps, samples follow the sockets that changed state
    // (docs/watch.md); without the tracker (no privileges, no BTF) every
    // sample is a full dump, as before.
    let mut inc = Incremental::new(FULL_DUMP_EVERY).ok();
    let start = Instant::now();
    let stop = || quit.load(Ordering::SeqCst) || terminal::stop_requested();
    let mut n: u64 = 0;
    loop {
        if stop() {
            return;
        }
        let snap = match inc.as_mut() {
            Some(i) => scan_unfiltered_incremental(opts, &mut cache, i),
            None => scan_unfiltered_cached(opts, &mut cache),
        };
        if tx.send(Event::Snapshot(Box::new(snap))).is_err() {
            return;
        }
        n += 1;
        let next_ms = n.saturating_mul(interval_ms);
        if count.is_some_and(|c| n >= c) || duration_ms.is_some_and(|d| next_ms > d) {
            break;
        }
        let next = start + Duration::from_millis(next_ms);
        // Sleep in short slices so q, Ctrl-C and SIGTERM are noticed.
        loop {
            if stop() {
                return;
            }
            let now = Instant::now();
            if now >= next {
                break;
            }
            std::thread::sleep((next - now).min(Duration::from_millis(50)));
        }
    }
    let _ = tx.send(Event::CollectorDone);
}

/// Says once on stderr what could not be seen (each distinct gap once per
/// session: a watch would otherwise repeat it every interval).
fn report_new_partial(notes: &[PartialNote], said: &mut HashSet<String>) {
    let mut err = std::io::stderr().lock();
    for l in crate::output::partial::lines(notes, false) {
        if said.insert(l.key) {
            let _ = writeln!(err, "sockleak: {}", l.text);
        }
    }
}

/// The first snapshot decides whether watching makes sense at all.
fn check_first(snap: &Snapshot) -> Result<()> {
    if !snap.namespaces.iter().any(|n| n.scanned) {
        bail!("no network namespace could be scanned (see the notes above)");
    }
    Ok(())
}

/// Non-interactive modes: a line (or lines) per snapshot on stdout.
fn stream(
    s: &Settings,
    rx: &Receiver<Event>,
    mode: Mode,
    style: Style,
    mut record: Option<&mut BufWriter<File>>,
) -> Result<u8> {
    let mut watcher = Watcher::new(s.cfg.clone());
    let mut said = HashSet::new();
    let mut kept_before: HashSet<u32> = HashSet::new();
    let mut first = true;
    let mut plain_state = plain::PlainState::default();
    let stdout = std::io::stdout();
    loop {
        let ev = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(ev) => ev,
            Err(RecvTimeoutError::Timeout) => {
                if terminal::stop_requested() {
                    break;
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut snap = match ev {
            Event::Snapshot(snap) => *snap,
            Event::CollectorDone => break,
            Event::Key(_) | Event::Resize => continue,
        };
        report_new_partial(&snap.partial, &mut said);
        if first {
            check_first(&snap)?;
        }
        let mut obs = watcher.observe(&snap, snap.taken_at_ms);
        obs.hide_process(std::process::id());
        if s.filter.is_restricted() {
            s.filter.apply(&mut snap);
            let kept: HashSet<u32> = snap.processes.iter().map(|p| p.pid).collect();
            obs.narrow(&s.filter, &kept, &kept_before);
            kept_before = kept;
        }
        let line = jsonl::line(&obs, &snap, s.interval_ms, first);
        if let Some(r) = record.as_deref_mut() {
            r.write_all(line.as_bytes())
                .and_then(|_| r.flush())
                .context("write the recording")?;
        }
        let text = match mode {
            Mode::Plain => plain::render(&obs, s.interval_ms, style, &mut plain_state),
            _ => line,
        };
        let mut out = stdout.lock();
        match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
            // The reader is gone (`| head`): stop quietly, as scan does.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(exit::OK),
            Err(e) => return Err(e).context("write to stdout"),
            Ok(()) => {}
        }
        first = false;
        drop(snap);
        drop(obs);
        release_freed_memory();
        if terminal::stop_requested() {
            break;
        }
    }
    Ok(exit::OK)
}

/// The live view; snapshots are also recorded when asked.
fn run_tui(
    s: &Settings,
    rx: &Receiver<Event>,
    tx: SyncSender<Event>,
    quit: &Arc<AtomicBool>,
    record: Option<&mut BufWriter<File>>,
) -> Result<u8> {
    // The first snapshot is awaited before the screen switches, so an error
    // (nothing scannable) is printed on the normal screen.
    let first = loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Event::Snapshot(snap)) => break *snap,
            Ok(_) => continue,
            Err(RecvTimeoutError::Timeout) if terminal::stop_requested() => return Ok(exit::OK),
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return Ok(exit::OK),
        }
    };
    let mut said = HashSet::new();
    report_new_partial(&first.partial, &mut said);
    check_first(&first)?;
    let mut app = App::new(Watcher::new(s.cfg.clone()), s.filter.clone(), s.interval_ms)
        .hiding(std::process::id())
        .with_users(super::scan::read_users());
    let interval_ms = s.interval_ms;
    let mut first_line = true;
    let mut sink = record.map(|r| {
        move |obs: &Observation, snap: &Snapshot| -> Result<()> {
            let line = jsonl::line(obs, snap, interval_ms, first_line);
            first_line = false;
            r.write_all(line.as_bytes())
                .and_then(|_| r.flush())
                .context("write the recording")
        }
    });
    let sink_ref: Option<tui::Sink<'_>> = match &mut sink {
        Some(f) => Some(f),
        None => None,
    };
    tui::run(&mut app, first, rx, tx, Arc::clone(quit), sink_ref)?;
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_ms() {
        assert_eq!(parse_duration_ms("300ms"), Ok(300));
        assert_eq!(parse_duration_ms("2s"), Ok(2000));
        assert_eq!(parse_duration_ms("1.5s"), Ok(1500));
        assert_eq!(parse_duration_ms("2"), Ok(2000));
        assert_eq!(parse_duration_ms("5m"), Ok(300_000));
        assert_eq!(parse_duration_ms("1h"), Ok(3_600_000));
        assert!(parse_duration_ms("-1s").is_err());
        assert!(parse_duration_ms("fast").is_err());
        assert!(parse_duration_ms("").is_err());
    }
}
