//! Watch's analysis: one [`Watcher`] per session turns each snapshot into the
//! findings of that moment, enriched with what only time can tell, and says
//! what changed since the previous snapshot.
//!
//! - `close_wait_leak` gets `rate_per_min` (Theil–Sen over the group's
//!   CLOSE_WAIT count), first-seen ages (the history is the
//!   [`AgeHints`](crate::AgeHints)) and, when the group is judged a leak
//!   ([`trend::decide`]), at least warning severity and a sentence on its
//!   growth, even before its sockets are `min_age_s` old: growth that stays is
//!   the evidence age stands for in a single snapshot.
//! - `fd_leak` (only here): an fd kind of a process growing steadily.
//!   Sockets growing together with a CLOSE_WAIT leak are left to that finding.
//! - `fd_exhaustion` and `time_wait_pressure` get `eta_s` (see [`forecast`]).
//!
//! Pure: `now_ms` comes in with every snapshot.

use crate::findings::Indexes;
use crate::findings::{diagnose_indexed, sort_findings, DiagnoseConfig, Finding, FindingKey};
use crate::findings::{FindingKind, Severity};
use crate::forecast;
use crate::group::{GroupKey, Role};
use crate::history::TimeWaitKey;
use crate::history::{History, HistoryConfig, ProcHistory, ProcKey, SeriesKey, StateCounts};
use crate::process::{FdKind, FdKinds};
use crate::snapshot::Snapshot;
use crate::socket::{Cookie, TcpState};
use crate::trend::{self, Trend, TrendConfig, Verdict};
use std::collections::{BTreeMap, HashMap, HashSet};

/// A leak that reaches the fd limit sooner than this is critical.
pub const CRITICAL_ETA_S: u64 = 600;

/// Everything a watch session is configured with.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WatchConfig {
    pub diagnose: DiagnoseConfig,
    pub history: HistoryConfig,
    pub trend: TrendConfig,
}

/// Change of a process since the previous sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcDelta {
    pub fd_count: i64,
    /// Per fd kind, in [`FD_KINDS`] order.
    pub fds: [i64; 5],
    /// Per TCP state, in kernel order.
    pub states: [i64; 11],
}

/// The fd kinds in the order deltas and reports use.
pub const FD_KINDS: [FdKind; 5] = [
    FdKind::Socket,
    FdKind::Pipe,
    FdKind::File,
    FdKind::Anon,
    FdKind::Other,
];

/// One process as watch shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessView {
    pub key: ProcKey,
    pub comm: String,
    pub cmdline: String,
    pub uid: u32,
    pub netns: u64,
    pub fd_count: Option<u32>,
    pub fd_limit: Option<u64>,
    pub fds: Option<FdKinds>,
    pub states: StateCounts,
    /// `None` when the process was not in the previous sample.
    pub delta: Option<ProcDelta>,
    /// Slope of its CLOSE_WAIT count over the window (enough samples only).
    pub close_wait_rate_per_min: Option<f64>,
    /// Slope of its open fds over the window (enough samples only).
    pub fd_rate_per_min: Option<f64>,
    /// Time to its fd limit, when its fds are growing.
    pub eta_s: Option<u64>,
    /// The most severe of its findings.
    pub severity: Option<Severity>,
    /// One of its findings was judged a leak over time.
    pub leaking: bool,
}

impl ProcessView {
    /// The larger of its two growth rates, for sorting.
    pub fn growth(&self) -> f64 {
        self.close_wait_rate_per_min
            .unwrap_or(0.0)
            .max(self.fd_rate_per_min.unwrap_or(0.0))
    }
}

/// A CLOSE_WAIT group and what its trend says.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupVerdict {
    pub key: SeriesKey,
    pub count: u32,
    pub verdict: Verdict,
    pub trend: Option<Trend>,
}

/// What one snapshot showed, compared with the one before.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observation {
    /// 1 for the first snapshot of the session.
    pub seq: u64,
    pub time_ms: u64,
    /// All current findings, enriched, most severe first.
    pub findings: Vec<Finding>,
    /// Findings not present in the previous sample.
    pub new: Vec<Finding>,
    /// Findings whose severity, count, rate or forecast changed.
    pub changed: Vec<Finding>,
    /// Findings of the previous sample that are gone (their last version).
    pub resolved: Vec<Finding>,
    /// Processes worth showing (they hold TCP sockets, their fds changed
    /// during the session, they have a finding, or use ≥ 50 % of their fd
    /// limit), by pid.
    pub processes: Vec<ProcessView>,
    /// Processes shown in the previous sample that have exited.
    pub gone: Vec<(ProcKey, String)>,
    /// Every CLOSE_WAIT group of the window and its verdict.
    pub close_wait_groups: Vec<GroupVerdict>,
    /// TCP sockets by state, host-wide (deduplicated by cookie).
    pub totals: StateCounts,
    /// Sockets no process holds (TIME_WAIT, orphans), by state.
    pub unowned: StateCounts,
}

impl Observation {
    /// Leaves a process out of the process lists (sockleak itself: its own
    /// fd count moves while it walks /proc, which is noise). Its findings, if
    /// it ever had any, stay.
    pub fn hide_process(&mut self, pid: u32) {
        self.processes.retain(|p| p.key.pid != pid);
        self.gone.retain(|(k, _)| k.pid != pid);
    }

    /// Keeps what `filter` asks about, as `scan` does after diagnosing the
    /// whole host: processes among `kept` (the pids left in the filtered
    /// snapshot) and the findings that match. Resolved findings and exited
    /// processes have no pid in the snapshot any more: they stay when they
    /// were among `kept_before` (the previous sample's `kept`).
    pub fn narrow(
        &mut self,
        filter: &crate::Filter,
        kept: &HashSet<u32>,
        kept_before: &HashSet<u32>,
    ) {
        if !filter.is_restricted() {
            return;
        }
        self.processes.retain(|p| kept.contains(&p.key.pid));
        for v in [&mut self.findings, &mut self.new, &mut self.changed] {
            v.retain(|f| filter.matches_finding(f, kept));
        }
        let either: HashSet<u32> = kept.union(kept_before).copied().collect();
        self.resolved.retain(|f| filter.matches_finding(f, &either));
        self.gone.retain(|(k, _)| kept_before.contains(&k.pid));
    }
}

/// The state of a watch session.
#[derive(Clone, Debug, Default)]
pub struct Watcher {
    cfg: WatchConfig,
    history: History,
    prev: BTreeMap<FindingKey, Finding>,
    shown: HashMap<ProcKey, String>,
}

impl Watcher {
    pub fn new(cfg: WatchConfig) -> Watcher {
        Watcher {
            history: History::new(cfg.history.clone()),
            cfg,
            prev: BTreeMap::new(),
            shown: HashMap::new(),
        }
    }

    pub fn config(&self) -> &WatchConfig {
        &self.cfg
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    /// Adds a snapshot taken at `now_ms` and returns what it shows.
    pub fn observe(&mut self, snap: &Snapshot, now_ms: u64) -> Observation {
        // The diagnosis's indexes need no history: built on another core
        // while the history takes the snapshot in (each is ~1/3 of a sample
        // at 150k sockets). Inline if no thread can be started.
        let history = &mut self.history;
        let ix = std::thread::scope(|sc| {
            let built = std::thread::Builder::new()
                .name("sockleak-index".into())
                .spawn_scoped(sc, || Indexes::new(snap));
            history.observe(snap, now_ms);
            match built {
                Ok(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                Err(_) => Indexes::new(snap),
            }
        });
        let cfg = &self.cfg;
        let hist = &self.history;
        let mut findings = diagnose_indexed(&ix, now_ms, &cfg.diagnose, hist);

        let groups = close_wait_verdicts(hist, &cfg.trend);
        let verdict_of: HashMap<SeriesKey, &GroupVerdict> =
            groups.iter().map(|g| (g.key, g)).collect();
        let mut matched: HashSet<SeriesKey> = HashSet::new();
        for f in findings.iter_mut() {
            match f.kind {
                FindingKind::CloseWaitLeak => {
                    if let Some(g) = close_wait_key(f).and_then(|k| verdict_of.get(&k)) {
                        matched.insert(g.key);
                        enrich_close_wait(f, g, hist, cfg);
                    }
                }
                FindingKind::FdExhaustion => enrich_fd_exhaustion(f, hist, &cfg.trend),
                FindingKind::TimeWaitPressure => enrich_time_wait(f, hist, &cfg.trend),
                _ => {}
            }
        }
        // Leaking groups whose sockets are all younger than min_age: growth
        // that stays is evidence enough, so diagnose them without the age bar.
        let missing: HashSet<SeriesKey> = groups
            .iter()
            .filter(|g| g.verdict == Verdict::Leak && !matched.contains(&g.key))
            .map(|g| g.key)
            .collect();
        if !missing.is_empty() {
            let relaxed = DiagnoseConfig {
                min_age_s: 0,
                ..cfg.diagnose.clone()
            };
            for mut f in diagnose_indexed(&ix, now_ms, &relaxed, hist) {
                if f.kind != FindingKind::CloseWaitLeak {
                    continue;
                }
                let Some(g) = close_wait_key(&f).and_then(|k| verdict_of.get(&k)) else {
                    continue;
                };
                if missing.contains(&g.key) {
                    enrich_close_wait(&mut f, g, hist, cfg);
                    findings.push(f);
                }
            }
        }
        let cw_leakers: HashSet<(Option<u32>, Option<u64>)> = groups
            .iter()
            .filter(|g| g.verdict == Verdict::Leak)
            .map(|g| (g.key.pid, g.key.start_time))
            .collect();
        fd_leaks(snap, hist, cfg, &cw_leakers, &mut findings);
        sort_findings(&mut findings);

        let processes = process_views(snap, hist, &findings, cfg, &cw_leakers);
        let (new, changed, resolved) = self.diff(&findings);
        let alive: HashSet<ProcKey> = snap
            .processes
            .iter()
            .map(|p| ProcKey {
                pid: p.pid,
                start_time: p.start_time,
            })
            .collect();
        let mut gone: Vec<(ProcKey, String)> = self
            .shown
            .iter()
            .filter(|(k, _)| !alive.contains(k))
            .map(|(k, c)| (*k, c.clone()))
            .collect();
        gone.sort();
        self.shown.retain(|k, _| alive.contains(k));
        for p in &processes {
            self.shown.insert(p.key, p.comm.clone());
        }
        let (totals, unowned) = state_totals(snap);
        Observation {
            seq: self.history.samples_seen(),
            time_ms: now_ms,
            findings,
            new,
            changed,
            resolved,
            processes,
            gone,
            close_wait_groups: groups,
            totals,
            unowned,
        }
    }

    /// New, materially changed and resolved findings against the previous
    /// sample; remembers this one.
    fn diff(&mut self, findings: &[Finding]) -> (Vec<Finding>, Vec<Finding>, Vec<Finding>) {
        let mut now: BTreeMap<FindingKey, Finding> = BTreeMap::new();
        for f in findings {
            now.entry(f.key()).or_insert_with(|| f.clone());
        }
        let mut new = Vec::new();
        let mut changed = Vec::new();
        for f in findings {
            match self.prev.get(&f.key()) {
                None => new.push(f.clone()),
                Some(old) if materially_changed(old, f) => changed.push(f.clone()),
                Some(_) => {}
            }
        }
        let resolved = self
            .prev
            .iter()
            .filter(|(k, _)| !now.contains_key(k))
            .map(|(_, f)| f.clone())
            .collect();
        self.prev = now;
        (new, changed, resolved)
    }
}

/// Severity, count, a rate or forecast that appeared, vanished or moved by
/// more than 10 %: anything smaller is noise for a change log.
fn materially_changed(old: &Finding, new: &Finding) -> bool {
    fn moved(a: Option<f64>, b: Option<f64>) -> bool {
        match (a, b) {
            (None, None) => false,
            (Some(a), Some(b)) => (a - b).abs() > 0.1 * a.abs().max(b.abs()).max(1.0),
            _ => true,
        }
    }
    old.severity != new.severity
        || old.count != new.count
        || moved(old.rate_per_min, new.rate_per_min)
        || moved(old.eta_s.map(|e| e as f64), new.eta_s.map(|e| e as f64))
}

/// The group series a close_wait_leak finding is about.
fn close_wait_key(f: &Finding) -> Option<SeriesKey> {
    let role = f.role?;
    let endpoint = match role {
        Role::Server => f.local?,
        Role::Client => f.remote?,
    };
    Some(SeriesKey {
        pid: f.pid,
        start_time: f.start_time,
        orphan: f.orphan,
        group: GroupKey {
            netns: f.netns?,
            state: TcpState::CloseWait,
            role,
            endpoint,
        },
    })
}

fn close_wait_verdicts(hist: &History, cfg: &TrendConfig) -> Vec<GroupVerdict> {
    let mut v: Vec<GroupVerdict> = hist
        .groups()
        .filter(|(k, _)| k.group.state == TcpState::CloseWait)
        .map(|(k, g)| {
            let t = trend::trend(&g.series());
            GroupVerdict {
                key: *k,
                count: g.last().map_or(0, |p| p.count),
                verdict: trend::decide(t.as_ref(), Some(g.turnover()), cfg),
                trend: t,
            }
        })
        .collect();
    v.sort_by_key(|g| g.key);
    v
}

fn proc_history<'a>(hist: &'a History, f: &Finding) -> Option<&'a ProcHistory> {
    hist.process(ProcKey {
        pid: f.pid?,
        start_time: f.start_time?,
    })
}

/// The trend of a process's open fds.
fn fd_trend(h: &ProcHistory) -> Option<Trend> {
    trend::trend(&h.series_of(|p| p.fd_count.map(f64::from)))
}

/// Time to the fd limit when the fds are growing.
fn fd_eta(h: &ProcHistory, cfg: &TrendConfig) -> Option<(u64, f64)> {
    let t = fd_trend(h).filter(|t| t.is_growing(cfg))?;
    let eta = forecast::fd_eta_s(h.last.fd_count?, h.fd_limit?, t.rate_per_min)?;
    Some((eta, t.rate_per_min))
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn enrich_close_wait(f: &mut Finding, g: &GroupVerdict, hist: &History, cfg: &WatchConfig) {
    let Some(t) = g.trend.filter(|t| t.samples >= cfg.trend.min_samples) else {
        return;
    };
    f.rate_per_min = Some(round1(t.rate_per_min));
    if g.verdict != Verdict::Leak {
        return;
    }
    f.severity = f.severity.max(Severity::Warning);
    f.summary.push_str(&format!(
        " Growing by about {} per minute: {} to {} in {} ({} samples).",
        rate_text(t.rate_per_min),
        t.first,
        t.last,
        span_text(t.span_ms),
        t.samples
    ));
    if let Some((eta, _)) = proc_history(hist, f).and_then(|h| fd_eta(h, &cfg.trend)) {
        f.eta_s = Some(eta);
        if let Some(limit) = f.fd_limit {
            f.summary.push_str(&format!(
                " At this rate it reaches its fd limit ({limit}) in about {}.",
                eta_text(eta)
            ));
        }
        if eta <= CRITICAL_ETA_S {
            f.severity = Severity::Critical;
        }
    }
}

fn enrich_fd_exhaustion(f: &mut Finding, hist: &History, cfg: &TrendConfig) {
    let Some((eta, rate)) = proc_history(hist, f).and_then(|h| fd_eta(h, cfg)) else {
        return;
    };
    f.eta_s = Some(eta);
    f.rate_per_min = Some(round1(rate));
    f.summary.push_str(&format!(
        " Its fds grow by about {} per minute: the limit is reached in about {}.",
        rate_text(rate),
        eta_text(eta)
    ));
}

fn enrich_time_wait(f: &mut Finding, hist: &History, cfg: &TrendConfig) {
    let (Some(netns), Some(local_ip), Some(remote)) = (f.netns, f.local_ip, f.remote) else {
        return;
    };
    let key = TimeWaitKey {
        netns,
        local_ip,
        remote,
    };
    let Some(g) = hist.time_wait(&key) else {
        return;
    };
    let Some(t) = trend::trend(&g.series()).filter(|t| t.samples >= cfg.min_samples) else {
        return;
    };
    f.rate_per_min = Some(round1(t.rate_per_min));
    let (Some(usable), Some(arrivals)) = (f.usable_ports, g.arrivals_per_min()) else {
        return;
    };
    let net = if t.is_growing(cfg) {
        t.rate_per_min
    } else {
        0.0
    };
    if let Some(eta) = forecast::time_wait_eta_s(f.count, usable, net, arrivals) {
        f.eta_s = Some(eta);
        f.summary.push_str(&format!(
            " New TIME_WAIT sockets arrive at about {} per minute: at this rate the ports run \
             out in about {}.",
            rate_text(arrivals),
            eta_text(eta)
        ));
    }
}

fn fd_kind_count(k: &FdKinds, kind: FdKind) -> u32 {
    k.get(kind)
}

fn fd_kind_words(kind: FdKind) -> (&'static str, &'static str) {
    match kind {
        FdKind::Socket => ("socket", "sockets"),
        FdKind::Pipe => ("pipe", "pipes"),
        FdKind::File => ("file", "files"),
        FdKind::Anon => ("anon inode", "anon inodes"),
        FdKind::Other => ("other fd", "other fds"),
    }
}

/// fd_leak: every fd kind of a tracked process whose count grows steadily
/// ([`trend::decide`] without turnover: fds have no identity here). One
/// finding per process, naming each growing kind.
fn fd_leaks(
    snap: &Snapshot,
    hist: &History,
    cfg: &WatchConfig,
    cw_leakers: &HashSet<(Option<u32>, Option<u64>)>,
    out: &mut Vec<Finding>,
) {
    for p in &snap.processes {
        // sockleak's own fds grow with what it watches (maps, /proc
        // handles): as top leaves itself out, so does this rule.
        if Some(p.pid) == cfg.diagnose.self_pid {
            continue;
        }
        let key = ProcKey {
            pid: p.pid,
            start_time: p.start_time,
        };
        let Some(h) = hist.process(key).filter(|h| h.is_tracked()) else {
            continue;
        };
        // Socket fds that grow with the process's CLOSE_WAIT count are the
        // close_wait_leak's to report (measured over the same samples, so the
        // answer does not flip while the group's own verdict is learning).
        let cw_rate =
            trend::trend(&h.series_of(|q| Some(f64::from(q.states.get(TcpState::CloseWait)))))
                .map_or(0.0, |t| t.rate_per_min);
        let cw_leaking = cw_leakers.contains(&(Some(p.pid), Some(p.start_time)));
        let mut growing: Vec<(FdKind, Trend)> = Vec::new();
        for kind in FD_KINDS {
            let pts = h.series_of(|q| q.fds.map(|k| f64::from(fd_kind_count(&k, kind))));
            let t = trend::trend(&pts);
            if trend::decide(t.as_ref(), None, &cfg.trend) != Verdict::Leak {
                continue;
            }
            let Some(t) = t else { continue };
            if kind == FdKind::Socket && (cw_leaking || cw_rate >= 0.5 * t.rate_per_min) {
                continue;
            }
            growing.push((kind, t));
        }
        if growing.is_empty() {
            continue;
        }
        growing.sort_by(|a, b| b.1.rate_per_min.total_cmp(&a.1.rate_per_min));
        let rate: f64 = growing.iter().map(|(_, t)| t.rate_per_min).sum();
        let count: u64 = growing
            .iter()
            .map(|(k, _)| u64::from(p.fds.map_or(0, |f| fd_kind_count(&f, *k))))
            .sum();
        let eta = fd_eta(h, &cfg.trend)
            .map(|(e, _)| e)
            .or_else(|| forecast::fd_eta_s(p.fd_count?, p.fd_limit?, rate));
        let near_limit = p.fd_use_ratio().is_some_and(|r| r >= cfg.diagnose.fd_warn);
        let severity = if near_limit || eta.is_some_and(|e| e <= CRITICAL_ETA_S) {
            Severity::Critical
        } else {
            Severity::Warning
        };
        let mut f = Finding::new(FindingKind::FdLeak, severity);
        f.pid = Some(p.pid);
        f.start_time = Some(p.start_time);
        f.comm = Some(p.comm.clone());
        f.netns = (p.netns != 0).then_some(p.netns);
        f.count = count;
        f.fd_count = p.fd_count;
        f.fd_limit = p.fd_limit;
        f.fds = p.fds;
        f.ratio = p.fd_use_ratio();
        f.rate_per_min = Some(round1(rate));
        f.eta_s = eta;
        let parts: Vec<String> = growing
            .iter()
            .map(|(k, t)| {
                let (_, many) = fd_kind_words(*k);
                format!(
                    "{many} grew from {} to {} in {} (about {} per minute)",
                    t.first,
                    t.last,
                    span_text(t.span_ms),
                    rate_text(t.rate_per_min)
                )
            })
            .collect();
        let mut summary = format!(
            "{} (pid {}) is leaking file descriptors: {}.",
            p.comm,
            p.pid,
            parts.join("; ")
        );
        match (p.fd_count, p.fd_limit, eta) {
            (Some(n), Some(l), Some(e)) => summary.push_str(&format!(
                " It holds {n} of its {l} allowed fds: at this rate the limit is reached in \
                 about {}.",
                eta_text(e)
            )),
            (Some(n), Some(l), None) => {
                summary.push_str(&format!(" It holds {n} of its {l} allowed fds."))
            }
            _ => {}
        }
        f.summary = summary;
        let main = growing.first().map_or(FdKind::Other, |(k, _)| *k);
        f.advice = format!(
            "{} At the limit every open(), socket(), accept() and pipe() in {} fails with \
             EMFILE (\"Too many open files\"). Leaked descriptors stay until the process \
             closes them or exits; raising the limit only buys time.",
            fd_leak_advice(main, p.pid),
            p.comm
        );
        out.push(f);
    }
}

fn fd_leak_advice(kind: FdKind, pid: u32) -> String {
    match kind {
        FdKind::Pipe => "Pipes that grow with the load are usually child processes started per \
             request (popen, subprocess, Runtime.exec) whose stdin/stdout/stderr pipes are never \
             closed, or never waited for. Close both ends on every path and reap the child \
             (Python: subprocess.run or communicate(); Java: close the Process streams and \
             waitFor(); C: pclose, or close + waitpid)."
            .to_string(),
        FdKind::Socket => format!(
            "Sockets that grow without a CLOSE_WAIT leak are connections opened and never \
             closed (also reset ones: see closed_but_held), UNIX or UDP sockets created per \
             request, or a connection pool without a bound: sockleak scan --pid {pid} shows \
             them."
        ),
        FdKind::File => format!(
            "Files opened per request and never closed: use try-with-resources, with, defer \
             or a guard object; ls -l /proc/{pid}/fd shows which paths."
        ),
        FdKind::Anon => "eventfd, epoll, timerfd or signalfd instances created per task and \
             never closed: typically an event loop, executor or HTTP client created per \
             request instead of once."
            .to_string(),
        FdKind::Other => format!(
            "Descriptors of another kind keep growing: ls -l /proc/{pid}/fd shows what they \
             are."
        ),
    }
}

fn process_views(
    snap: &Snapshot,
    hist: &History,
    findings: &[Finding],
    cfg: &WatchConfig,
    cw_leakers: &HashSet<(Option<u32>, Option<u64>)>,
) -> Vec<ProcessView> {
    let mut sev: HashMap<(u32, u64), (Severity, bool)> = HashMap::new();
    for f in findings {
        if let (Some(pid), Some(st)) = (f.pid, f.start_time) {
            let leaking = f.kind == FindingKind::FdLeak
                || (f.kind == FindingKind::CloseWaitLeak
                    && cw_leakers.contains(&(Some(pid), Some(st))));
            let e = sev.entry((pid, st)).or_insert((f.severity, false));
            e.0 = e.0.max(f.severity);
            e.1 |= leaking;
        }
    }
    let min = cfg.trend.min_samples;
    let mut out = Vec::new();
    for p in &snap.processes {
        let key = ProcKey {
            pid: p.pid,
            start_time: p.start_time,
        };
        let Some(h) = hist.process(key) else { continue };
        let s = sev.get(&(p.pid, p.start_time)).copied();
        let worth = h.last.states.total() > 0
            || h.is_tracked()
            || s.is_some()
            || p.fd_use_ratio().is_some_and(|r| r >= 0.5);
        if !worth {
            continue;
        }
        let cw = trend::trend(&h.series_of(|q| Some(f64::from(q.states.get(TcpState::CloseWait)))))
            .filter(|t| t.samples >= min);
        let fdt = fd_trend(h).filter(|t| t.samples >= min);
        out.push(ProcessView {
            key,
            comm: p.comm.clone(),
            cmdline: p.cmdline.clone(),
            uid: p.uid,
            netns: p.netns,
            fd_count: p.fd_count,
            fd_limit: p.fd_limit,
            fds: p.fds,
            states: h.last.states,
            delta: h.prev.map(|prev| delta(&prev, &h.last)),
            close_wait_rate_per_min: cw.map(|t| round1(t.rate_per_min)),
            fd_rate_per_min: fdt.map(|t| round1(t.rate_per_min)),
            eta_s: fd_eta(h, &cfg.trend).map(|(e, _)| e),
            severity: s.map(|(v, _)| v),
            leaking: s.is_some_and(|(_, l)| l),
        });
    }
    out
}

fn delta(prev: &crate::history::ProcPoint, now: &crate::history::ProcPoint) -> ProcDelta {
    let mut d = ProcDelta {
        fd_count: i64::from(now.fd_count.unwrap_or(0)) - i64::from(prev.fd_count.unwrap_or(0)),
        ..ProcDelta::default()
    };
    if let (Some(a), Some(b)) = (prev.fds, now.fds) {
        for (i, k) in FD_KINDS.iter().enumerate() {
            d.fds[i] = i64::from(b.get(*k)) - i64::from(a.get(*k));
        }
    }
    for (i, (a, b)) in prev.states.0.iter().zip(now.states.0.iter()).enumerate() {
        d.states[i] = i64::from(*b) - i64::from(*a);
    }
    d
}

fn state_totals(snap: &Snapshot) -> (StateCounts, StateCounts) {
    let mut seen: rustc_hash::FxHashSet<Cookie> =
        rustc_hash::FxHashSet::with_capacity_and_hasher(snap.sockets.len(), Default::default());
    let mut all = StateCounts::default();
    let mut unowned = StateCounts::default();
    for s in &snap.sockets {
        if s.cookie.0 != 0 && !seen.insert(s.cookie) {
            continue;
        }
        all.add(s.state);
        if s.owners.is_empty() {
            unowned.add(s.state);
        }
    }
    (all, unowned)
}

/// "600", "2.5": whole numbers from 10 on.
pub fn rate_text(per_min: f64) -> String {
    if per_min.abs() >= 10.0 {
        format!("{}", per_min.round())
    } else {
        format!("{:.1}", per_min)
    }
}

/// "1.2 s", "45 s", "12 min": a window span.
pub fn span_text(ms: u64) -> String {
    if ms < 10_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        crate::age::human_duration(ms / 1000)
    }
}

/// "now", "9 s", "3 min": a forecast.
pub fn eta_text(s: u64) -> String {
    if s == 0 {
        "no time: it is there".to_string()
    } else {
        crate::age::human_duration(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{Namespace, PortRange};
    use crate::process::Process;
    use crate::socket::{Socket, TcpInfo};
    use crate::test_support;

    const T0: u64 = 1_700_000_000_000;
    const PID: u32 = 4242;

    /// The shared builder's socket, whose kernel data says it is fresh
    /// (0 ms since the FIN): only history can age it.
    fn sock(cookie: u64, state: TcpState, local: u16, remote: u16, owner: Option<u32>) -> Socket {
        Socket {
            // Idle for 10 min: a leak's last send was before the peer's FIN.
            tcp_info: Some(TcpInfo {
                last_data_sent_ms: 600_000,
                ..TcpInfo::default()
            }),
            ..test_support::sock(cookie, state, local, remote, owner)
        }
    }

    fn proc_(pid: u32, sockets: u32, pipes: u32, limit: u64) -> Process {
        let fds = FdKinds {
            socket: sockets,
            pipe: pipes,
            file: 3,
            ..FdKinds::default()
        };
        Process {
            pid,
            ppid: 1,
            start_time: 99,
            comm: "java".into(),
            cmdline: "java -jar srv.jar".into(),
            uid: 0,
            netns: 1,
            ns_pid: None,
            fd_count: Some(fds.total()),
            fd_limit: Some(limit),
            fd_limit_hard: Some(limit),
            fds: Some(fds),
            closed_but_held: None,
        }
    }

    fn ns() -> Namespace {
        let mut n = Namespace::new(1);
        n.is_own = true;
        n.scanned = true;
        n.ip_local_port_range = Some(PortRange {
            low: 32768,
            high: 60999,
        });
        n
    }

    /// The server holds `cw` CLOSE_WAIT sockets with cookies 1000.. (the
    /// oldest stay) plus the listener.
    fn server(t: u64, cookies: impl IntoIterator<Item = u64>, pipes: u32, limit: u64) -> Snapshot {
        let mut sockets = vec![sock(1, TcpState::Listen, 9530, 0, Some(PID))];
        for c in cookies {
            sockets.push(sock(
                c,
                TcpState::CloseWait,
                9530,
                40_000 + c as u16,
                Some(PID),
            ));
        }
        let n = sockets.len() as u32;
        Snapshot {
            taken_at_ms: t,
            namespaces: vec![ns()],
            sockets,
            processes: vec![proc_(PID, n, pipes, limit)],
            ..Snapshot::default()
        }
    }

    fn watcher() -> Watcher {
        Watcher::new(WatchConfig::default())
    }

    fn find(o: &Observation, kind: FindingKind) -> Option<&Finding> {
        o.findings
            .iter()
            .find(|f| f.kind == kind && f.pid == Some(PID))
    }

    #[test]
    fn a_growing_close_wait_group_is_a_leak_with_its_rate_before_min_age() {
        let mut w = watcher();
        let mut last = Observation::default();
        // 3 new CLOSE_WAIT every 300 ms: 600 per minute. None at the first
        // sample, so the group's series starts one sample after the
        // process's.
        for i in 0..7u64 {
            let t = T0 + i * 300;
            last = w.observe(&server(t, 1000..1000 + 3 * i, 2, 4096), t);
            if i < 5 {
                assert!(
                    find(&last, FindingKind::CloseWaitLeak).is_none(),
                    "decided after {} samples",
                    i + 1
                );
            }
            // The socket fds grow with CLOSE_WAIT: never a second finding,
            // not even while the group is still learning.
            assert!(find(&last, FindingKind::FdLeak).is_none(), "sample {i}");
        }
        let f = find(&last, FindingKind::CloseWaitLeak).expect("leak after 5+ samples");
        let rate = f.rate_per_min.expect("rate");
        assert!((rate - 600.0).abs() < 1.0, "{rate}");
        assert!(f.severity >= Severity::Warning);
        assert_eq!(f.age_source, Some(crate::AgeSource::FirstSeen));
        assert_eq!(f.oldest_age_s, Some(1)); // first seen 1.5 s ago (at 300 ms)
        assert!(
            f.summary.contains("Growing by about 600 per minute"),
            "{}",
            f.summary
        );
        let v = last
            .processes
            .iter()
            .find(|p| p.key.pid == PID)
            .expect("view");
        assert!(v.leaking);
        assert_eq!(v.states.get(TcpState::CloseWait), 18);
        assert_eq!(v.delta.map(|d| d.states[7]), Some(3));
        // Sockets growing with the CLOSE_WAIT leak are not a second fd_leak.
        assert!(find(&last, FindingKind::FdLeak).is_none());
    }

    #[test]
    fn a_burst_that_is_closed_and_churn_are_not_leaks() {
        let mut w = watcher();
        for i in 0..12u64 {
            let t = T0 + i * 300;
            // A burst of 20 at sample 2, closed at sample 6; and churn:
            // three sockets that live one sample each, every sample.
            let mut cookies: Vec<u64> = (5000 + 3 * i..5000 + 3 * i + 3).collect();
            if (2..6).contains(&i) {
                cookies.extend(1000..1020);
            }
            let o = w.observe(&server(t, cookies, 2, 4096), t);
            assert!(find(&o, FindingKind::CloseWaitLeak).is_none(), "sample {i}");
            assert!(find(&o, FindingKind::FdLeak).is_none(), "sample {i}");
        }
    }

    #[test]
    fn growing_pipes_are_an_fd_leak_and_fd_exhaustion_gets_an_eta() {
        let mut w = watcher();
        let mut last = Observation::default();
        // +2 pipes every 100 ms = 1200 per minute, toward a limit of 1000.
        for i in 0..8u64 {
            let t = T0 + i * 100;
            last = w.observe(&server(t, [], 780 + 2 * i as u32, 1000), t);
        }
        let f = find(&last, FindingKind::FdLeak).expect("fd_leak");
        assert!((f.rate_per_min.expect("rate") - 1200.0).abs() < 1.0);
        assert!(
            f.summary.contains("pipes grew from 780 to 794"),
            "{}",
            f.summary
        );
        assert!(f.advice.contains("child processes"));
        // 794 pipes + 1 socket + 3 files = 798 of 1000 at 20/s: 10 s.
        assert_eq!(f.eta_s, Some(10));
        assert_eq!(f.severity, Severity::Critical);
        let x = find(&last, FindingKind::FdExhaustion);
        assert!(x.is_none(), "798/1000 is below the 80 % warning");
        let o = w.observe(&server(T0 + 800, [], 800, 1000), T0 + 800);
        let x = find(&o, FindingKind::FdExhaustion).expect("fd_exhaustion at 80 %");
        assert_eq!(x.eta_s, Some(10));
        assert!(
            x.summary.contains("limit is reached in about 10 s"),
            "{}",
            x.summary
        );
    }

    #[test]
    fn stable_processes_have_no_rate_findings_and_changes_are_diffed() {
        let mut w = watcher();
        let mut news = 0;
        for i in 0..8u64 {
            let t = T0 + i * 1000;
            // Old CLOSE_WAIT (60 s per the kernel), not growing.
            let mut s = server(t, 1000..1005, 2, 4096);
            for x in s
                .sockets
                .iter_mut()
                .filter(|x| x.state == TcpState::CloseWait)
            {
                x.tcp_info = Some(TcpInfo {
                    last_ack_recv_ms: 60_000,
                    last_data_sent_ms: 60_000,
                    ..TcpInfo::default()
                });
            }
            let o = w.observe(&s, t);
            news += o.new.len();
            let f = find(&o, FindingKind::CloseWaitLeak).expect("old CLOSE_WAIT");
            assert!(!f.summary.contains("Growing"));
            if i >= 4 {
                assert_eq!(f.rate_per_min, Some(0.0));
            }
            assert!(find(&o, FindingKind::FdLeak).is_none());
            if i > 0 {
                assert!(
                    o.changed.is_empty() || i == 4,
                    "sample {i}: {:?}",
                    o.changed
                );
            }
        }
        assert_eq!(news, 1, "the finding is new once");
        // The process exits: its finding resolves and it is gone.
        let mut s = server(T0 + 9000, [], 0, 4096);
        s.processes.clear();
        s.sockets.clear();
        let o = w.observe(&s, T0 + 9000);
        assert_eq!(o.resolved.len(), 1);
        assert_eq!(o.gone.len(), 1);
    }

    #[test]
    fn time_wait_pressure_gets_an_eta_only_when_the_ports_can_run_out() {
        let mut cfg = WatchConfig::default();
        cfg.diagnose.time_wait_info_min_count = 10;
        cfg.diagnose.time_wait_info_min_ratio = 0.0;
        let mut w = Watcher::new(cfg);
        let mut n = ns();
        // 1000 usable ports; 50 new TIME_WAIT per 100 ms = 30 000 per minute
        // (level off at 30 000 ≫ 1000): the range runs out.
        n.ip_local_port_range = Some(PortRange {
            low: 40_000,
            high: 40_999,
        });
        let mut last = Observation::default();
        for i in 0..8u64 {
            let t = T0 + i * 100;
            let sockets = (0..50 * (i + 1))
                .map(|c| sock(c + 10, TcpState::TimeWait, 40_000 + c as u16, 80, None))
                .collect();
            let s = Snapshot {
                taken_at_ms: t,
                namespaces: vec![n.clone()],
                sockets,
                ..Snapshot::default()
            };
            last = w.observe(&s, t);
        }
        let f = last
            .findings
            .iter()
            .find(|f| f.kind == FindingKind::TimeWaitPressure)
            .expect("time_wait_pressure");
        // 400 of 1000 at 500/s: 1.2 s, rounded to 1.
        assert_eq!(f.eta_s, Some(1));
        assert!(f.summary.contains("ports run out"), "{}", f.summary);
    }
}
