//! Pure rendering of one snapshot and its findings into the Prometheus text
//! format 0.0.4 and OpenMetrics 1.0, with bounded cardinality. Every metric
//! is documented in docs/metrics.md (a test keeps the two in step).
//!
//! Both formats come from one list of [`Family`] values, built once per scan:
//! the formats differ only in counter naming (`_total` on the sample, not the
//! family, in OpenMetrics), escaping of help text and the closing `# EOF`.
//!
//! Cardinality: processes are ranked (findings' severity, CLOSE_WAIT, fd use,
//! TCP sockets) and only the first `max_processes` keep their own labels; the
//! rest are summed under `comm="other",pid="other",netns="other"`. Per
//! process (and per namespace for unowned sockets and TIME_WAIT
//! destinations) only the first `max_endpoints` endpoints keep their own
//! `endpoint` label; the rest are folded into `endpoint="other"`. Sums stay
//! sums (counts add up to the truth), maxima stay maxima (oldest age, usage
//! ratios), so alerts written against the capped series still fire.

use super::redact::redact_cmdline;
use super::ProcessTrends;
use crate::output::netns_label;
use sockleak_model::blame::{primary_owner, ProcessIndex};
use sockleak_model::group::{ListenerIndex, Role};
use sockleak_model::{
    Finding, FindingKind, PartialKind, Process, Severity, Snapshot, Socket, TcpState,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

/// The label value that stands for everything folded by a cap.
pub const OTHER: &str = "other";

/// A TIME_WAIT destination gets its own series only from this many sockets:
/// fewer is no pressure, and short-lived one-off destinations would otherwise
/// churn series on every scan.
pub const TIME_WAIT_DESTINATION_MIN: u64 = 10;

/// Longest `cmdline` label value (after redaction), in characters.
pub const CMDLINE_MAX_CHARS: usize = 256;

/// The states every exported process always has a `sockleak_process_tcp_sockets`
/// series for (zero included), so leak charts drop to 0 instead of vanishing.
const ALWAYS_STATES: [TcpState; 3] = [TcpState::CloseWait, TcpState::Established, TcpState::Listen];

/// Exposition format, chosen by content negotiation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Prometheus,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The cardinality caps and label options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_processes: usize,
    pub max_endpoints: usize,
    /// Add the redacted command line to `sockleak_process_info`.
    pub label_cmdline: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_processes: 50,
            max_endpoints: 20,
            label_cmdline: false,
        }
    }
}

/// The exporter's own state, for the self metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SelfStats {
    pub version: &'static str,
    pub scan_duration_s: f64,
    /// Unix time (s) the last scan started.
    pub scan_unix_s: f64,
    /// The last scan could read at least one network namespace.
    pub scan_ok: bool,
    pub scans_total: u64,
    pub scan_errors_total: u64,
    pub http_connections_total: u64,
    pub http_rejected_total: u64,
    pub http_timed_out_total: u64,
    pub http_unauthorized_total: u64,
}

/// One scan's metrics in both formats.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    pub prometheus: String,
    pub openmetrics: String,
    /// Number of samples (series) in either text.
    pub series: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Gauge,
    Counter,
}

type Labels = Vec<(&'static str, String)>;

/// One metric family: its samples in the order they were added.
#[derive(Debug)]
struct Family {
    /// The sample name; counters end in `_total`.
    name: &'static str,
    help: &'static str,
    kind: Kind,
    samples: Vec<(Labels, f64)>,
}

impl Family {
    fn push(&mut self, labels: Labels, value: f64) {
        self.samples.push((labels, value));
    }
}

/// Every family sockleak exports, in exposition order. The list is also the
/// contract with docs/metrics.md.
struct Families {
    all: Vec<Family>,
}

macro_rules! families {
    ($( $id:ident : $kind:ident $name:literal $help:literal ;)*) => {
        #[derive(Clone, Copy, Debug)]
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        enum F { $($id),* }

        impl Families {
            fn new() -> Families {
                Families { all: vec![$(Family {
                    name: $name,
                    help: $help,
                    kind: Kind::$kind,
                    samples: Vec::new(),
                }),*] }
            }
        }
    };
}

families! {
    BuildInfo: Gauge "sockleak_build_info" "sockleak's version; always 1.";
    ScanDuration: Gauge "sockleak_scan_duration_seconds" "Wall time of the last scan (sock_diag dumps, /proc walk, diagnosis).";
    ScanTimestamp: Gauge "sockleak_scan_timestamp_seconds" "Unix time at which the last scan started.";
    ScanSuccess: Gauge "sockleak_scan_success" "1 if the last scan could read at least one network namespace, else 0.";
    Scans: Counter "sockleak_scans_total" "Scans run since the exporter started.";
    ScanErrors: Counter "sockleak_scan_errors_total" "Scans that could read no network namespace at all (or failed).";
    ScanSockets: Gauge "sockleak_scan_sockets" "TCP sockets in the last scan (after the scan filters).";
    ScanProcesses: Gauge "sockleak_scan_processes" "Processes in the last scan (after the scan filters).";
    ScanPartial: Gauge "sockleak_scan_partial" "Objects the last scan could not read, by kind of gap (see sockleak doctor).";
    HttpConnections: Counter "sockleak_http_connections_total" "HTTP connections accepted by the exporter.";
    HttpRejected: Counter "sockleak_http_connections_rejected_total" "HTTP connections closed because --max-connections were open (one waiting for a request head made room, or the newcomer got 503).";
    HttpTimedOut: Counter "sockleak_http_connections_timed_out_total" "HTTP connections closed by the read or per-connection timeout.";
    HttpUnauthorized: Counter "sockleak_http_unauthorized_total" "HTTP requests refused with 401 (missing or wrong basic-auth credentials) or 429 (password verifier busy).";
    NamespaceScanned: Gauge "sockleak_namespace_scanned" "1 if the namespace's sockets were dumped, 0 if not (no permission, vanished, excluded).";
    Sockets: Gauge "sockleak_sockets" "TCP sockets in the namespace by state (deduplicated by cookie).";
    OrphanSockets: Gauge "sockleak_orphan_sockets" "Orphaned TCP sockets (closed by their process, kept by the kernel), from /proc/net/sockstat.";
    OrphanLimit: Gauge "sockleak_orphan_sockets_limit" "net.ipv4.tcp_max_orphans (host-wide).";
    TimeWaitBuckets: Gauge "sockleak_time_wait_buckets" "TIME_WAIT sockets of the namespace, from /proc/net/sockstat.";
    TimeWaitBucketsLimit: Gauge "sockleak_time_wait_buckets_limit" "net.ipv4.tcp_max_tw_buckets of the namespace.";
    EphemeralPorts: Gauge "sockleak_ephemeral_ports" "Usable ephemeral ports: net.ipv4.ip_local_port_range minus ip_local_reserved_ports.";
    ListenOverflows: Counter "sockleak_listen_overflows_total" "TcpExt ListenOverflows: connections dropped because an accept queue was full.";
    ListenDrops: Counter "sockleak_listen_drops_total" "TcpExt ListenDrops: SYNs dropped by listeners for any reason.";
    TimeWaitOverflows: Counter "sockleak_time_wait_overflows_total" "TcpExt TCPTimeWaitOverflow: TIME_WAIT sockets not created because tcp_max_tw_buckets was reached.";
    AbortOnClose: Counter "sockleak_tcp_abort_on_close_total" "TcpExt TCPAbortOnClose: connections reset because the application closed them with unread data.";
    TimeWaitDestSockets: Gauge "sockleak_time_wait_destination_sockets" "Outgoing TIME_WAIT sockets from one local address to one destination.";
    TimeWaitDestRatio: Gauge "sockleak_time_wait_port_usage_ratio" "TIME_WAIT toward one destination as a share of the usable ephemeral ports (other: the highest folded).";
    ProcessInfo: Gauge "sockleak_process_info" "A process with its own series; always 1 (uid, and the redacted cmdline with --label-cmdline).";
    ProcessesFolded: Gauge "sockleak_processes_folded" "Processes beyond --max-processes, summed under comm/pid/netns=other.";
    ProcessOpenFds: Gauge "sockleak_process_open_fds" "Open file descriptors of the process by kind (socket, pipe, file, anon, other).";
    ProcessMaxFds: Gauge "sockleak_process_max_fds" "Soft RLIMIT_NOFILE of the process.";
    ProcessFdRatio: Gauge "sockleak_process_fd_usage_ratio" "Open fds as a share of the soft limit (other: the highest folded).";
    ProcessFdEta: Gauge "sockleak_process_fd_exhaustion_eta_seconds" "Seconds until the process reaches its fd limit at its current growth (needs history).";
    ProcessClosedButHeld: Gauge "sockleak_process_closed_but_held_sockets" "TCP socket fds in no TCP table: reset or aborted connections the process never closed.";
    ProcessTcpSockets: Gauge "sockleak_process_tcp_sockets" "TCP sockets the process holds, by state (a shared socket counts for each holder).";
    ListenQueue: Gauge "sockleak_listen_queue_length" "Connections waiting in a listener's accept queue (Recv-Q of the LISTEN socket).";
    ListenBacklog: Gauge "sockleak_listen_backlog" "A listener's backlog (Send-Q of the LISTEN socket): the queue is full at this length.";
    LeakSockets: Gauge "sockleak_close_wait_leak_sockets" "CLOSE_WAIT sockets at least --min-age old, per leak group (server: listening endpoint; client: peer).";
    LeakOldest: Gauge "sockleak_close_wait_leak_oldest_age_seconds" "Age of the oldest socket of the leak group (an estimate; other: the oldest folded).";
    LeakUnread: Gauge "sockleak_close_wait_leak_unread_bytes" "Data received and never read by the application in the leak group's sockets.";
    LeakGrowth: Gauge "sockleak_close_wait_leak_growth_per_second" "Growth of the leak group in sockets per second (needs history).";
    Finding: Gauge "sockleak_finding" "An active finding; 1 per finding (more when findings were folded by the caps).";
}

impl Families {
    fn get(&mut self, f: F) -> &mut Family {
        &mut self.all[f as usize]
    }
}

/// Names and help of every family (the docs test compares them with
/// docs/metrics.md).
#[cfg(test)]
pub fn family_names() -> Vec<(&'static str, &'static str)> {
    Families::new()
        .all
        .iter()
        .map(|f| (f.name, f.help))
        .collect()
}

/// Renders one scan. `findings` are those `scan` would show for the same
/// filters; `trends` what history knows (empty without history).
pub fn render(
    snap: &Snapshot,
    findings: &[Finding],
    trends: &ProcessTrends,
    limits: &Limits,
    stats: &SelfStats,
) -> Rendered {
    let mut fam = Families::new();
    self_metrics(&mut fam, snap, stats);
    host_metrics(&mut fam, snap, limits);
    let exported = process_metrics(&mut fam, snap, findings, trends, limits);
    leak_group_metrics(&mut fam, snap, findings, &exported, limits);
    finding_metrics(&mut fam, snap, findings, &exported, limits);
    let series = fam.all.iter().map(|f| f.samples.len()).sum();
    Rendered {
        prometheus: write(&fam.all, Format::Prometheus),
        openmetrics: write(&fam.all, Format::OpenMetrics),
        series,
    }
}

fn b(v: bool) -> f64 {
    if v {
        1.0
    } else {
        0.0
    }
}

fn self_metrics(fam: &mut Families, snap: &Snapshot, s: &SelfStats) {
    fam.get(F::BuildInfo)
        .push(vec![("version", s.version.to_string())], 1.0);
    fam.get(F::ScanDuration).push(vec![], s.scan_duration_s);
    fam.get(F::ScanTimestamp).push(vec![], s.scan_unix_s);
    fam.get(F::ScanSuccess).push(vec![], b(s.scan_ok));
    fam.get(F::Scans).push(vec![], s.scans_total as f64);
    fam.get(F::ScanErrors)
        .push(vec![], s.scan_errors_total as f64);
    fam.get(F::ScanSockets)
        .push(vec![], snap.sockets.len() as f64);
    fam.get(F::ScanProcesses)
        .push(vec![], snap.processes.len() as f64);
    // Guarded permission gaps (a sandbox or security module refuses what
    // sockleak's capabilities would allow) have a label of their own, so
    // `kind="permission"` means what a capability would fix and the
    // missing-privileges alert does not fire for what nobody can fix.
    for (kind, guarded, name) in [
        (PartialKind::Permission, false, "permission"),
        (PartialKind::Permission, true, "guarded"),
        (PartialKind::Vanished, false, "vanished"),
        (PartialKind::Malformed, false, "malformed"),
        (PartialKind::Unsupported, false, "unsupported"),
        (PartialKind::Error, false, "error"),
    ] {
        let n: u64 = snap
            .partial
            .iter()
            .filter(|p| p.kind == kind && p.is_guarded() == guarded)
            .map(|p| u64::from(p.count))
            .sum();
        fam.get(F::ScanPartial)
            .push(vec![("kind", name.to_string())], n as f64);
    }
    fam.get(F::HttpConnections)
        .push(vec![], s.http_connections_total as f64);
    fam.get(F::HttpRejected)
        .push(vec![], s.http_rejected_total as f64);
    fam.get(F::HttpTimedOut)
        .push(vec![], s.http_timed_out_total as f64);
    fam.get(F::HttpUnauthorized)
        .push(vec![], s.http_unauthorized_total as f64);
}

/// Sockets deduplicated by cookie: a dump is not atomic and may list a
/// socket twice (cookie 0, a collector without cookies, is never merged).
fn unique_sockets(snap: &Snapshot) -> Vec<&Socket> {
    let mut seen = HashSet::new();
    snap.sockets
        .iter()
        .filter(|s| s.cookie.0 == 0 || seen.insert(s.cookie))
        .collect()
}

fn state_index(s: TcpState) -> usize {
    usize::from(s as u8 - 1)
}

fn host_metrics(fam: &mut Families, snap: &Snapshot, limits: &Limits) {
    let sockets = unique_sockets(snap);
    let mut by_ns: HashMap<u64, [u64; 11]> = HashMap::new();
    for s in &sockets {
        by_ns.entry(s.netns).or_default()[state_index(s.state)] += 1;
    }
    for ns in &snap.namespaces {
        let l = || vec![("netns", netns_label(snap, ns.id))];
        fam.get(F::NamespaceScanned).push(l(), b(ns.scanned));
        if ns.scanned {
            let counts = by_ns.get(&ns.id).copied().unwrap_or_default();
            for st in TcpState::ALL {
                let mut labels = l();
                labels.push(("state", st.kernel_name().to_string()));
                fam.get(F::Sockets)
                    .push(labels, counts[state_index(st)] as f64);
            }
        }
        if let Some(st) = ns.sockstat {
            fam.get(F::OrphanSockets).push(l(), st.tcp_orphan as f64);
            fam.get(F::TimeWaitBuckets).push(l(), st.tcp_tw as f64);
        }
        if let Some(max) = ns.tcp_max_orphans {
            fam.get(F::OrphanLimit).push(l(), max as f64);
        }
        if let Some(max) = ns.tcp_max_tw_buckets {
            fam.get(F::TimeWaitBucketsLimit).push(l(), max as f64);
        }
        if let Some(n) = ns.usable_ephemeral_ports() {
            fam.get(F::EphemeralPorts).push(l(), f64::from(n));
        }
        let c = ns.counters;
        for (f, v) in [
            (F::ListenOverflows, c.listen_overflows),
            (F::ListenDrops, c.listen_drops),
            (F::TimeWaitOverflows, c.tcp_time_wait_overflow),
            (F::AbortOnClose, c.tcp_abort_on_close),
        ] {
            if let Some(v) = v {
                fam.get(f).push(l(), v as f64);
            }
        }
    }
    time_wait_destinations(fam, snap, &sockets, limits);
}

/// TIME_WAIT per (namespace, local address, destination), counted as the
/// time_wait_pressure rule counts (sockleak-model findings.rs): only sockets
/// whose local port is not a listener's and lies in the ephemeral range.
/// The rule itself reports only from 100 sockets; here every destination
/// from [`TIME_WAIT_DESTINATION_MIN`] gets a series, so dashboards see
/// pressure build up.
fn time_wait_destinations(
    fam: &mut Families,
    snap: &Snapshot,
    sockets: &[&Socket],
    limits: &Limits,
) {
    let listeners = ListenerIndex::from_snapshot(snap);
    let mut groups: BTreeMap<(u64, String, String), u64> = BTreeMap::new();
    for s in sockets.iter().filter(|s| s.state == TcpState::TimeWait) {
        if listeners.listener_for(s.netns, s.local).is_some() {
            continue;
        }
        let range = snap.namespace(s.netns).and_then(|n| n.ip_local_port_range);
        if range.is_some_and(|r| !r.contains(s.local.port)) {
            continue;
        }
        let n = s.local.normalized();
        let local_ip = sockleak_model::Endpoint::new(n.ip, 0)
            .to_string()
            .trim_end_matches(":0")
            .to_string();
        *groups
            .entry((s.netns, local_ip, s.remote.normalized().to_string()))
            .or_default() += 1;
    }
    // Per namespace, the busiest destinations first.
    let mut per_ns: BTreeMap<u64, Vec<(String, String, u64)>> = BTreeMap::new();
    for ((ns, lip, remote), n) in groups {
        if n >= TIME_WAIT_DESTINATION_MIN {
            per_ns.entry(ns).or_default().push((lip, remote, n));
        }
    }
    for (ns, mut dests) in per_ns {
        dests.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| (&a.0, &a.1).cmp(&(&b.0, &b.1))));
        let usable = snap
            .namespace(ns)
            .and_then(|n| n.usable_ephemeral_ports())
            .filter(|u| *u > 0);
        let ratio = |n: u64| usable.map(|u| n as f64 / f64::from(u));
        let netns = netns_label(snap, ns);
        let labels = |lip: &str, ep: &str| {
            vec![
                ("netns", netns.clone()),
                ("local_ip", lip.to_string()),
                ("endpoint", ep.to_string()),
            ]
        };
        let keep = limits.max_endpoints.min(dests.len());
        for (lip, remote, n) in &dests[..keep] {
            fam.get(F::TimeWaitDestSockets)
                .push(labels(lip, remote), *n as f64);
            if let Some(r) = ratio(*n) {
                fam.get(F::TimeWaitDestRatio).push(labels(lip, remote), r);
            }
        }
        let rest = &dests[keep..];
        if !rest.is_empty() {
            let sum: u64 = rest.iter().map(|d| d.2).sum();
            let max = rest.iter().map(|d| d.2).max().unwrap_or(0);
            fam.get(F::TimeWaitDestSockets)
                .push(labels(OTHER, OTHER), sum as f64);
            if let Some(r) = ratio(max) {
                fam.get(F::TimeWaitDestRatio).push(labels(OTHER, OTHER), r);
            }
        }
    }
}

/// What one process (or the folded rest) contributes to the per-process
/// families.
#[derive(Clone, Debug, Default)]
struct ProcAgg {
    /// fds by kind: socket, pipe, file, anon, other.
    fds: Option<[u64; 5]>,
    fd_limit: Option<u64>,
    fd_ratio: Option<f64>,
    fd_eta_s: Option<u64>,
    closed_but_held: Option<u64>,
    tcp: [u64; 11],
    /// (endpoint, queue, backlog) of the listeners charged to the process.
    listeners: Vec<(String, u64, u64)>,
}

fn add_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x + y),
        (x, None) => x,
        (None, y) => y,
    }
}

impl ProcAgg {
    fn fold(&mut self, o: &ProcAgg) {
        self.fds = match (self.fds, o.fds) {
            (Some(mut a), Some(b)) => {
                for (x, y) in a.iter_mut().zip(b) {
                    *x += y;
                }
                Some(a)
            }
            (a, None) => a,
            (None, b) => b,
        };
        // Limits do not add up; the highest use and the nearest ETA do matter.
        self.fd_ratio = match (self.fd_ratio, o.fd_ratio) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.fd_eta_s = match (self.fd_eta_s, o.fd_eta_s) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.closed_but_held = add_opt(self.closed_but_held, o.closed_but_held);
        for (x, y) in self.tcp.iter_mut().zip(o.tcp) {
            *x += y;
        }
        self.listeners.extend(o.listeners.iter().cloned());
    }
}

/// Who a series is about: a process that keeps its own labels, or the fold.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Who {
    Pid(u32),
    Other,
}

/// The processes that keep their own labels, and their labels.
struct Exported {
    labels: HashMap<u32, Labels>,
}

impl Exported {
    fn who(&self, pid: u32) -> Who {
        if self.labels.contains_key(&pid) {
            Who::Pid(pid)
        } else {
            Who::Other
        }
    }

    fn labels(&self, who: &Who) -> Labels {
        match who {
            Who::Pid(pid) => self.labels.get(pid).cloned().unwrap_or_default(),
            Who::Other => other_process_labels(),
        }
    }
}

fn other_process_labels() -> Labels {
    vec![
        ("comm", OTHER.to_string()),
        ("pid", OTHER.to_string()),
        ("netns", OTHER.to_string()),
    ]
}

fn process_labels(snap: &Snapshot, p: &Process) -> Labels {
    vec![
        ("comm", p.comm.clone()),
        ("pid", p.pid.to_string()),
        ("netns", netns_label(snap, p.netns)),
    ]
}

fn process_metrics(
    fam: &mut Families,
    snap: &Snapshot,
    findings: &[Finding],
    trends: &ProcessTrends,
    limits: &Limits,
) -> Exported {
    let procs = ProcessIndex::new(&snap.processes);
    let mut aggs: HashMap<u32, ProcAgg> = HashMap::new();
    for s in unique_sockets(snap) {
        // A socket shared by several processes counts for each holder (each
        // keeps it open), as in the scan inventory.
        let mut seen: Vec<u32> = Vec::new();
        for o in &s.owners {
            if !seen.contains(&o.pid) {
                seen.push(o.pid);
                aggs.entry(o.pid).or_default().tcp[state_index(s.state)] += 1;
            }
        }
        if s.state == TcpState::Listen {
            // A listener inherited by forked workers is charged once.
            if let Some(o) = primary_owner(s, &procs) {
                aggs.entry(o.pid).or_default().listeners.push((
                    s.local.to_string(),
                    u64::from(s.recv_q),
                    u64::from(s.send_q),
                ));
            }
        }
    }
    let mut severity: HashMap<u32, Severity> = HashMap::new();
    let mut finding_eta: HashMap<u32, u64> = HashMap::new();
    for f in findings {
        if let Some(pid) = f.pid {
            let e = severity.entry(pid).or_insert(f.severity);
            *e = (*e).max(f.severity);
            if f.kind == FindingKind::FdExhaustion {
                if let Some(eta) = f.eta_s {
                    finding_eta.insert(pid, eta);
                }
            }
        }
    }

    // Processes worth a series: TCP sockets, closed-but-held sockets, half
    // the fd limit used, or a finding.
    let mut rows: Vec<(&Process, ProcAgg)> = Vec::new();
    for p in &snap.processes {
        let mut agg = aggs.remove(&p.pid).unwrap_or_default();
        let relevant = agg.tcp.iter().any(|n| *n > 0)
            || p.closed_but_held.unwrap_or(0) > 0
            || p.fd_use_ratio().is_some_and(|r| r >= 0.5)
            || severity.contains_key(&p.pid);
        if !relevant {
            continue;
        }
        agg.fds = p.fds.map(|k| {
            [
                u64::from(k.socket),
                u64::from(k.pipe),
                u64::from(k.file),
                u64::from(k.anon),
                u64::from(k.other),
            ]
        });
        agg.fd_limit = p.fd_limit;
        agg.fd_ratio = p.fd_use_ratio();
        agg.closed_but_held = p.closed_but_held.map(u64::from);
        agg.fd_eta_s = match (finding_eta.get(&p.pid), trends.fd_eta_s.get(&p.pid)) {
            (Some(a), Some(b)) => Some((*a).min(*b)),
            (a, b) => a.or(b).copied(),
        };
        rows.push((p, agg));
    }
    // Most relevant first: the worst finding, then CLOSE_WAIT, fd use, TCP
    // sockets; the pid last for a stable order between scans.
    let cw = state_index(TcpState::CloseWait);
    rows.sort_by(|(pa, a), (pb, b)| {
        severity
            .get(&pb.pid)
            .cmp(&severity.get(&pa.pid))
            .then(b.tcp[cw].cmp(&a.tcp[cw]))
            .then(
                b.fd_ratio
                    .unwrap_or(0.0)
                    .total_cmp(&a.fd_ratio.unwrap_or(0.0)),
            )
            .then(b.tcp.iter().sum::<u64>().cmp(&a.tcp.iter().sum::<u64>()))
            .then(pa.pid.cmp(&pb.pid))
    });

    let keep = limits.max_processes.min(rows.len());
    let mut exported = Exported {
        labels: HashMap::new(),
    };
    for (p, agg) in &rows[..keep] {
        let labels = process_labels(snap, p);
        let mut info = labels.clone();
        info.push(("uid", p.uid.to_string()));
        if limits.label_cmdline {
            info.push(("cmdline", redact_cmdline(&p.cmdline, CMDLINE_MAX_CHARS)));
        }
        fam.get(F::ProcessInfo).push(info, 1.0);
        emit_process(fam, &labels, agg, limits, false);
        exported.labels.insert(p.pid, labels);
    }
    let folded = &rows[keep..];
    fam.get(F::ProcessesFolded)
        .push(vec![], folded.len() as f64);
    if !folded.is_empty() {
        let mut other = ProcAgg::default();
        for (_, agg) in folded {
            other.fold(agg);
        }
        emit_process(fam, &other_process_labels(), &other, limits, true);
    }
    exported
}

fn with(labels: &Labels, name: &'static str, value: impl Into<String>) -> Labels {
    let mut l = labels.clone();
    l.push((name, value.into()));
    l
}

fn emit_process(fam: &mut Families, labels: &Labels, agg: &ProcAgg, limits: &Limits, folded: bool) {
    if let Some(fds) = agg.fds {
        for (kind, n) in ["socket", "pipe", "file", "anon", "other"].iter().zip(fds) {
            fam.get(F::ProcessOpenFds)
                .push(with(labels, "kind", *kind), n as f64);
        }
    }
    if !folded {
        if let Some(l) = agg.fd_limit {
            fam.get(F::ProcessMaxFds).push(labels.clone(), l as f64);
        }
    }
    if let Some(r) = agg.fd_ratio {
        fam.get(F::ProcessFdRatio).push(labels.clone(), r);
    }
    if let Some(eta) = agg.fd_eta_s {
        fam.get(F::ProcessFdEta).push(labels.clone(), eta as f64);
    }
    if let Some(n) = agg.closed_but_held {
        fam.get(F::ProcessClosedButHeld)
            .push(labels.clone(), n as f64);
    }
    for st in TcpState::ALL {
        let n = agg.tcp[state_index(st)];
        if n > 0 || ALWAYS_STATES.contains(&st) {
            fam.get(F::ProcessTcpSockets)
                .push(with(labels, "state", st.kernel_name()), n as f64);
        }
    }
    // Listeners: the fullest queues first, the rest folded.
    let mut ls = agg.listeners.clone();
    ls.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let keep = if folded {
        0
    } else {
        limits.max_endpoints.min(ls.len())
    };
    for (ep, q, backlog) in &ls[..keep] {
        fam.get(F::ListenQueue)
            .push(with(labels, "endpoint", ep.as_str()), *q as f64);
        fam.get(F::ListenBacklog)
            .push(with(labels, "endpoint", ep.as_str()), *backlog as f64);
    }
    let rest = &ls[keep..];
    if !rest.is_empty() {
        let q: u64 = rest.iter().map(|l| l.1).sum();
        let backlog: u64 = rest.iter().map(|l| l.2).sum();
        fam.get(F::ListenQueue)
            .push(with(labels, "endpoint", OTHER), q as f64);
        fam.get(F::ListenBacklog)
            .push(with(labels, "endpoint", OTHER), backlog as f64);
    }
}

/// The endpoint a finding is about: the listening endpoint for servers and
/// accept queues, the peer for clients and TIME_WAIT destinations.
fn finding_endpoint(f: &Finding) -> Option<String> {
    match (f.role, f.local, f.remote) {
        (Some(Role::Client), _, Some(r)) => Some(r.to_string()),
        (_, Some(l), _) => Some(l.to_string()),
        (_, None, Some(r)) => Some(r.to_string()),
        _ => None,
    }
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Server => "server",
        Role::Client => "client",
    }
}

/// Scope of an endpoint cap: one process, or (for findings without a
/// process) one namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Scope {
    Who(Who),
    Netns(Option<u64>),
}

/// Keeps the first `max` endpoints seen per scope; later ones become
/// `other`. Callers feed endpoints most relevant first.
struct EndpointCap {
    max: usize,
    kept: HashMap<Scope, Vec<String>>,
}

impl EndpointCap {
    fn new(max: usize) -> EndpointCap {
        EndpointCap {
            max,
            kept: HashMap::new(),
        }
    }

    fn label(&mut self, scope: Scope, ep: &str) -> String {
        if scope == Scope::Who(Who::Other) {
            return OTHER.to_string();
        }
        let kept = self.kept.entry(scope).or_default();
        if kept.iter().any(|k| k == ep) {
            return ep.to_string();
        }
        if kept.len() < self.max {
            kept.push(ep.to_string());
            return ep.to_string();
        }
        OTHER.to_string()
    }
}

#[derive(Clone, Debug, Default)]
struct GroupAgg {
    sockets: u64,
    unread: u64,
    oldest_s: Option<u64>,
    rate_per_min: Option<f64>,
}

fn leak_group_metrics(
    fam: &mut Families,
    snap: &Snapshot,
    findings: &[Finding],
    exported: &Exported,
    limits: &Limits,
) {
    let mut leaks: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.kind == FindingKind::CloseWaitLeak)
        .collect();
    // The biggest groups keep their endpoint label.
    leaks.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key().cmp(&b.key())));
    let mut cap = EndpointCap::new(limits.max_endpoints);
    let mut groups: BTreeMap<Vec<(&'static str, String)>, GroupAgg> = BTreeMap::new();
    for f in leaks {
        let (scope, mut labels) = match f.pid {
            Some(pid) => {
                let who = exported.who(pid);
                (Scope::Who(who.clone()), exported.labels(&who))
            }
            // Owner unseen (fd tables unreadable) or gone: no process labels.
            None => (
                Scope::Netns(f.netns),
                vec![(
                    "netns",
                    f.netns.map_or(String::new(), |n| netns_label(snap, n)),
                )],
            ),
        };
        if let Some(r) = f.role {
            labels.push(("role", role_name(r).to_string()));
        }
        let ep = finding_endpoint(f).unwrap_or_default();
        labels.push(("endpoint", cap.label(scope, &ep)));
        let g = groups.entry(labels).or_default();
        g.sockets += f.count;
        g.unread += f.unread_bytes.unwrap_or(0);
        g.oldest_s = g.oldest_s.max(f.oldest_age_s);
        if let Some(r) = f.rate_per_min {
            g.rate_per_min = Some(g.rate_per_min.unwrap_or(0.0) + r);
        }
    }
    for (labels, g) in groups {
        fam.get(F::LeakSockets)
            .push(labels.clone(), g.sockets as f64);
        if let Some(a) = g.oldest_s {
            fam.get(F::LeakOldest).push(labels.clone(), a as f64);
        }
        fam.get(F::LeakUnread).push(labels.clone(), g.unread as f64);
        if let Some(r) = g.rate_per_min {
            fam.get(F::LeakGrowth).push(labels, r / 60.0);
        }
    }
}

fn finding_metrics(
    fam: &mut Families,
    snap: &Snapshot,
    findings: &[Finding],
    exported: &Exported,
    limits: &Limits,
) {
    // Findings come most severe first, so the endpoints that keep their
    // label are the most severe ones.
    let mut cap = EndpointCap::new(limits.max_endpoints);
    let mut counts: BTreeMap<Labels, u64> = BTreeMap::new();
    for f in findings {
        let mut labels: Labels = vec![
            ("kind", f.kind.as_str().to_string()),
            ("severity", f.severity.as_str().to_string()),
        ];
        let scope = match f.pid {
            Some(pid) => {
                let who = exported.who(pid);
                labels.extend(exported.labels(&who));
                Scope::Who(who)
            }
            None => {
                if let Some(n) = f.netns {
                    labels.push(("netns", netns_label(snap, n)));
                }
                Scope::Netns(f.netns)
            }
        };
        if let Some(r) = f.role {
            labels.push(("role", role_name(r).to_string()));
        }
        if let Some(ep) = finding_endpoint(f) {
            labels.push(("endpoint", cap.label(scope, &ep)));
        }
        *counts.entry(labels).or_default() += 1;
    }
    for (labels, n) in counts {
        fam.get(F::Finding).push(labels, n as f64);
    }
}

/// Writes the families in one format. Families without samples are left
/// out (a HELP with no series helps nobody and some parsers dislike it).
fn write(families: &[Family], format: Format) -> String {
    let mut out = String::with_capacity(16 * 1024);
    for f in families.iter().filter(|f| !f.samples.is_empty()) {
        let (family_name, kind) = match (f.kind, format) {
            // OpenMetrics names the counter family without its `_total`.
            (Kind::Counter, Format::OpenMetrics) => {
                (f.name.strip_suffix("_total").unwrap_or(f.name), "counter")
            }
            (Kind::Counter, Format::Prometheus) => (f.name, "counter"),
            (Kind::Gauge, _) => (f.name, "gauge"),
        };
        let _ = writeln!(out, "# HELP {family_name} {}", escape_help(f.help, format));
        let _ = writeln!(out, "# TYPE {family_name} {kind}");
        for (labels, value) in &f.samples {
            out.push_str(f.name);
            if !labels.is_empty() {
                out.push('{');
                for (i, (k, v)) in labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{k}=\"{}\"", escape_label(v));
                }
                out.push('}');
            }
            out.push(' ');
            out.push_str(&format_value(*value));
            out.push('\n');
        }
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

/// Label values escape backslash, double quote and line feed (both formats).
fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP escapes backslash and line feed; OpenMetrics also the double quote.
fn escape_help(v: &str, format: Format) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if format == Format::OpenMetrics => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

/// Integers without a fraction, other numbers in Rust's shortest round-trip
/// form, and the spellings both formats use for the special values.
fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
