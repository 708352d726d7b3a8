//! `sockleak serve`: a Prometheus exporter. A collector thread scans on its
//! own interval (the same scan, diagnosis and filters as `sockleak scan`)
//! and renders the metrics once per scan; the HTTP server (tokio, see
//! `exporter::http`) only hands out the latest rendering, so a scrape never
//! triggers a scan. SIGTERM or SIGINT stops both gracefully (exit 0).

use crate::cli::{parse_duration_s, FilterArgs};
use crate::exit;
use crate::exporter::http::{self, ServerLimits};
use crate::exporter::metrics::{self, Limits, SelfStats};
use crate::exporter::webconfig::WebConfig;
use crate::exporter::{Diagnosis, Exposition, HttpStats, Shared, SnapshotOnly, WithHistory};
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Args;
use sockleak_collect::scan::{scan_unfiltered, ScanOptions};
use sockleak_model::enrich::{WatchConfig, Watcher};
use sockleak_model::findings::DiagnoseConfig;
use sockleak_model::history::HistoryConfig;
use sockleak_model::Snapshot;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The default port, in the range Prometheus exporters use (9100–9999).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9915";

/// How long shutdown waits for open connections to finish their response.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on. The default is loopback only; use
    /// 0.0.0.0:9915 (with --web-config for TLS and passwords) to let a
    /// remote Prometheus scrape it.
    #[arg(long, value_name = "ADDR:PORT", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// How often to scan (seconds, or with a unit: 15s, 1m). Scrapes in
    /// between get the latest scan.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_duration_s)]
    pub interval: u64,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// At most this many processes get their own series (most relevant
    /// first: findings, CLOSE_WAIT, fd use); the rest are summed under
    /// comm="other".
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub max_processes: usize,
    /// At most this many endpoints per process (leak groups, listeners,
    /// findings) and per namespace (TIME_WAIT destinations) get their own
    /// series; the rest are summed under endpoint="other".
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub max_endpoints: usize,
    /// Add the command line (secrets redacted) to sockleak_process_info.
    /// Off by default: command lines can hold secrets redaction cannot
    /// recognise.
    #[arg(long)]
    pub label_cmdline: bool,
    /// TLS certificate and key, and basic-auth users with bcrypt hashes, in
    /// the YAML format of the Prometheus exporter toolkit.
    #[arg(long, value_name = "FILE")]
    pub web_config: Option<PathBuf>,
    /// CLOSE_WAIT sockets younger than this are normal churn and not
    /// reported (seconds, or with a unit: 30s, 5m, 1h).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration_s)]
    pub min_age: u64,
    /// TIME_WAIT share of the usable ephemeral ports toward one destination
    /// at which time_wait_pressure becomes a warning / critical.
    #[arg(long, value_name = "RATIO", default_value_t = 0.5)]
    pub time_wait_warn: f64,
    #[arg(long, value_name = "RATIO", default_value_t = 0.9)]
    pub time_wait_crit: f64,
    /// Most HTTP connections open at once; more are refused at once.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_connections: usize,
    /// A client must send a whole request head (and finish the TLS
    /// handshake) within this time, or it is disconnected.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration_s)]
    pub read_timeout: u64,
    /// Longest life of one HTTP connection, whatever it does.
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_duration_s)]
    pub connection_timeout: u64,
    /// Diagnose each scan alone, as `scan` does: no growth rates, no fd
    /// exhaustion ETAs, no first-seen ages (saves the history's memory).
    #[arg(long)]
    pub no_history: bool,
    /// Worker threads for the /proc walk and the dumps (default: number of CPUs).
    #[arg(long, value_name = "N", value_parser = crate::cli::parse_threads)]
    pub threads: Option<usize>,
    /// Where socket owners come from (see `sockleak scan --help`).
    #[arg(long, value_enum, value_name = "SOURCE", default_value_t = crate::cli::FdSourceArg::Auto)]
    pub fd_source: crate::cli::FdSourceArg,
}

/// The history window: 5 minutes, or 20 scans when the interval is longer,
/// so a trend always has enough samples to be judged.
fn history_window(interval: Duration) -> Duration {
    (interval * 20).max(Duration::from_secs(300))
}

/// Stage two: everything the collector needs, validated.
struct Collector {
    opts: ScanOptions,
    limits: Limits,
    interval: Duration,
}

pub fn run(args: &ServeArgs) -> Result<u8> {
    let filter = args.filter.to_filter()?;
    super::require_pids(&filter)?;
    if !(0.0..=1.0).contains(&args.time_wait_warn)
        || !(0.0..=1.0).contains(&args.time_wait_crit)
        || args.time_wait_warn > args.time_wait_crit
    {
        bail!("--time-wait-warn and --time-wait-crit must be ratios with warn <= crit <= 1");
    }
    if args.interval == 0 {
        bail!("--interval must be at least 1s");
    }
    if args.max_connections == 0 || args.read_timeout == 0 || args.connection_timeout == 0 {
        bail!("--max-connections, --read-timeout and --connection-timeout must be above 0");
    }
    let web = match &args.web_config {
        Some(p) => WebConfig::load(p)?,
        None => WebConfig::default(),
    };
    let mut opts = ScanOptions {
        filter,
        fd_source: args.fd_source.into(),
        ..ScanOptions::default()
    };
    if let Some(t) = args.threads {
        opts.threads = t.max(1);
    }
    let diagnose_cfg = DiagnoseConfig {
        min_age_s: args.min_age,
        time_wait_warn: args.time_wait_warn,
        time_wait_crit: args.time_wait_crit,
        self_pid: Some(std::process::id()),
        ..DiagnoseConfig::default()
    };
    let interval = Duration::from_secs(args.interval);
    let mut diagnosis: Box<dyn Diagnosis> = if args.no_history {
        Box::new(SnapshotOnly(diagnose_cfg))
    } else {
        Box::new(WithHistory(Watcher::new(WatchConfig {
            diagnose: diagnose_cfg,
            history: HistoryConfig {
                window_ms: u64::try_from(history_window(interval).as_millis()).unwrap_or(u64::MAX),
                ..HistoryConfig::default()
            },
            ..WatchConfig::default()
        })))
    };
    let collector = Collector {
        opts,
        limits: Limits {
            max_processes: args.max_processes,
            max_endpoints: args.max_endpoints,
            label_cmdline: args.label_cmdline,
        },
        interval,
    };
    let limits = ServerLimits {
        max_connections: args.max_connections,
        read_timeout: Duration::from_secs(args.read_timeout),
        conn_timeout: Duration::from_secs(args.connection_timeout),
        grace: SHUTDOWN_GRACE,
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sockleak-http")
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let shared = Arc::new(Shared::new(collector.interval));
    // Bind before the first scan so a taken port fails at once.
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(args.listen))
        .with_context(|| format!("bind {}", args.listen))?;
    let local = listener
        .local_addr()
        .with_context(|| format!("bind {}", args.listen))?;
    if let Some(w) = exposure_warning(local, !web.users.is_empty()) {
        eprintln!("sockleak serve: warning: {w}");
    }
    ensure_fd_room(limits.max_connections);
    let scheme = if web.tls.is_some() { "https" } else { "http" };
    eprintln!(
        "sockleak serve: listening on {scheme}://{local}/metrics (interval {}s, basic auth {})",
        args.interval,
        if web.users.is_empty() { "off" } else { "on" }
    );

    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let collector_shared = shared.clone();
    let handle = std::thread::Builder::new()
        .name("sockleak-collect".into())
        .spawn(move || collect_loop(&collector, &collector_shared, &stop_rx, diagnosis.as_mut()))
        .context("start the collector thread")?;

    rt.block_on(async {
        http::serve(listener, &web, limits, shared, shutdown_signal()).await;
    });
    let _ = stop_tx.send(());
    // The collector stops at its next wait; a scan in progress finishes
    // first (scans are bounded, and nothing else holds the process).
    let _ = handle.join();
    eprintln!("sockleak serve: stopped");
    Ok(exit::OK)
}

/// The warning for a port beyond loopback without basic auth: metrics name
/// processes, ports and peers, and anyone who reaches the port may read them.
fn exposure_warning(listen: SocketAddr, auth: bool) -> Option<String> {
    if auth || listen.ip().is_loopback() {
        return None;
    }
    Some(format!(
        "{listen} is not a loopback address and there is no basic auth \
         (--web-config with basic_auth_users): anyone who can reach this port may \
         scrape the metrics (process names, ports, peers)"
    ))
}

/// fds `serve` may need besides its connections: the collector's /proc and
/// netlink reads, the listener, stdio, a connection being evicted.
const FD_HEADROOM: u64 = 128;

/// Raises the soft RLIMIT_NOFILE toward the hard one when it is too low for
/// `--max-connections` (twice it for bursts, plus the reserved slots); says so when even the hard
/// limit is too low (then accept fails with EMFILE under load and the
/// server backs off instead of serving).
fn ensure_fd_room(max_connections: usize) {
    // A burst may go up to twice the cap (see exporter::http).
    let need = u64::try_from(max_connections.saturating_mul(2) + http::RESERVED_SLOTS)
        .unwrap_or(u64::MAX)
        .saturating_add(FD_HEADROOM);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 || lim.rlim_cur >= need {
        return;
    }
    let target = need.min(lim.rlim_max);
    if target > lim.rlim_cur {
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit from a struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = target;
        }
    }
    if lim.rlim_cur < need {
        eprintln!(
            "sockleak serve: warning: the fd limit ({}) is below what --max-connections {max_connections} needs ({need}): lower --max-connections or raise LimitNOFILE / ulimit -n",
            lim.rlim_cur
        );
    }
}

/// Completes on SIGTERM or SIGINT. If the handlers cannot be installed the
/// server still runs, and the default dispositions end it.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("sockleak serve: cannot install signal handlers: SIGTERM will end it without a graceful shutdown");
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    eprintln!("sockleak serve: shutting down");
}

/// Scans, renders and publishes until told to stop.
fn collect_loop(
    c: &Collector,
    shared: &Shared,
    stop: &mpsc::Receiver<()>,
    diagnosis: &mut dyn Diagnosis,
) {
    let mut stats = SelfStats {
        version: env!("CARGO_PKG_VERSION"),
        ..SelfStats::default()
    };
    let mut reported: BTreeSet<String> = BTreeSet::new();
    loop {
        let started = Instant::now();
        stats.scan_unix_s = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        // A panic in one scan (a bug on some odd kernel input) must not
        // leave the exporter serving stale data forever: count it as a
        // failed scan and try again next interval.
        let scanned =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| collect_once(c, diagnosis)));
        stats.scans_total += 1;
        stats.scan_duration_s = started.elapsed().as_secs_f64();
        let (snap, findings, proc_trends) = match scanned {
            Ok(Some(x)) => {
                stats.scan_ok = true;
                x
            }
            Ok(None) | Err(_) => {
                stats.scan_ok = false;
                stats.scan_errors_total += 1;
                eprintln!("sockleak serve: scan failed: no network namespace could be read");
                Default::default()
            }
        };
        report_partial(&snap, &mut reported);
        let h = &shared.http;
        stats.http_connections_total = HttpStats::get(&h.connections);
        stats.http_rejected_total = HttpStats::get(&h.rejected);
        stats.http_timed_out_total = HttpStats::get(&h.timed_out);
        stats.http_unauthorized_total = HttpStats::get(&h.unauthorized);
        let r = metrics::render(&snap, &findings, &proc_trends, &c.limits, &stats);
        shared.publish(Exposition {
            prometheus: Bytes::from(r.prometheus),
            openmetrics: Bytes::from(r.openmetrics),
            finished: Instant::now(),
        });
        // Only the rendered texts are kept between scans.
        drop((snap, findings, proc_trends));
        sockleak_collect::scan::release_freed_memory();
        let wait = c.interval.saturating_sub(started.elapsed());
        match stop.recv_timeout(wait) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

type Collected = (
    Snapshot,
    Vec<sockleak_model::Finding>,
    crate::exporter::ProcessTrends,
);

/// One scan, as `sockleak scan` does it: diagnose the whole collection
/// (peers and listeners outside the filters matter for blame), then narrow
/// both to the filters. `None` when no namespace could be read.
fn collect_once(c: &Collector, diagnosis: &mut dyn Diagnosis) -> Option<Collected> {
    let mut snap = scan_unfiltered(&c.opts);
    if !snap.namespaces.iter().any(|n| n.scanned) {
        return None;
    }
    let (mut findings, proc_trends) = diagnosis.diagnose(&snap);
    c.opts.filter.apply(&mut snap);
    let kept: std::collections::HashSet<u32> = snap.processes.iter().map(|p| p.pid).collect();
    findings.retain(|f| c.opts.filter.matches_finding(f, &kept));
    Some((snap, findings, proc_trends))
}

/// Says on stderr what this run cannot see, once per gap (not at every
/// scan); vanished processes are normal churn and not reported.
fn report_partial(snap: &Snapshot, reported: &mut BTreeSet<String>) {
    for l in crate::output::partial::lines(&snap.partial, false) {
        if reported.insert(l.key) {
            eprintln!("sockleak serve: {}", l.text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unauthenticated_port_beyond_loopback_is_warned_about() {
        let addr = |s: &str| s.parse::<SocketAddr>().expect("address");
        for loopback in ["127.0.0.1:9915", "127.3.0.1:1", "[::1]:9915"] {
            assert_eq!(exposure_warning(addr(loopback), false), None, "{loopback}");
        }
        for open in ["0.0.0.0:9915", "[::]:9915", "10.1.2.3:9915"] {
            let w = exposure_warning(addr(open), false).expect(open);
            assert!(
                w.contains(open) && w.contains("anyone who can reach"),
                "{w}"
            );
            assert_eq!(exposure_warning(addr(open), true), None, "{open} with auth");
        }
    }
}
