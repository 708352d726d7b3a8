//! Findings: what is wrong on this host, who is at fault, since when, and what
//! to do. [`diagnose`] turns one [`Snapshot`] into findings; it is pure and
//! takes `now_ms` so ages are deterministic. Watch enriches the same findings
//! over time (matching them by [`Finding::key`] and filling `rate_per_min`,
//! `eta_s` and better ages through [`AgeHints`]).
//!
//! Thresholds live in [`DiagnoseConfig`]; each rule's doc comment says how it
//! decides. The rules in brief:
//!
//! | kind                  | info                     | warning               | critical                      |
//! |-----------------------|--------------------------|-----------------------|-------------------------------|
//! | close_wait_leak       | every age unknown        | a socket ≥ min_age    | ≥ 100 sockets, or fds ≥ 80 %  |
//! | fin_wait2_stuck       | orphans; ages unknown    | owned, ≥ min_age      | —                             |
//! | time_wait_pressure    | ≥ 100 and ≥ 1 % of ports | ≥ 50 % of ports       | ≥ 90 % of ports               |
//! | fd_exhaustion         | —                        | ≥ 80 % of limit       | ≥ 95 % of limit               |
//! | closed_but_held       | —                        | ≥ 1 socket            | —                             |
//! | accept_queue_overflow | —                        | —                     | queue ≥ backlog               |
//! | orphan_pressure       | —                        | ≥ 80 % of max         | ≥ 95 % of max                 |
//! | time_wait_buckets     | —                        | ≥ 80 % of max         | ≥ 95 % of max                 |

use crate::age::{self, Age, AgeHints, AgeSource, NoHints};
use crate::blame::{self, Holder, PeerIndex, PeerTally, ProcessIndex};
use crate::group::{group_key, GroupKey, ListenerIndex, Role};
use crate::host::{Namespace, NetnsId};
use crate::process::{FdKinds, Process};
use crate::runtime::Runtime;
use crate::snapshot::Snapshot;
use crate::socket::{Cookie, Endpoint, Socket, TcpState};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;

/// Thresholds of the rules. Ratios are fractions (0.5 = 50 %).
#[derive(Clone, Debug, PartialEq)]
pub struct DiagnoseConfig {
    /// CLOSE_WAIT and FIN_WAIT2 sockets younger than this are normal churn
    /// (`--min-age`, default 30 s).
    pub min_age_s: u64,
    /// A close_wait_leak group with at least this many sockets is critical.
    pub close_wait_crit_count: u64,
    /// TIME_WAIT toward one destination, as a share of the usable ephemeral
    /// ports: warning from here (default 0.5) ...
    pub time_wait_warn: f64,
    /// ... critical from here (default 0.9).
    pub time_wait_crit: f64,
    /// Below `time_wait_warn`, an info finding only when a destination has at
    /// least this many TIME_WAIT sockets (default 100) ...
    pub time_wait_info_min_count: u64,
    /// ... and at least this share of the ports (default 0.01), so a quiet
    /// host says nothing.
    pub time_wait_info_min_ratio: f64,
    /// Open fds / soft RLIMIT_NOFILE: warning from (0.8) ...
    pub fd_warn: f64,
    /// ... critical from (0.95).
    pub fd_crit: f64,
    /// sockstat orphans / net.ipv4.tcp_max_orphans: warning from (0.8) ...
    pub orphan_warn: f64,
    /// ... critical from (0.95).
    pub orphan_crit: f64,
    /// sockstat TIME_WAIT / net.ipv4.tcp_max_tw_buckets: warning from (0.8) ...
    pub tw_bucket_warn: f64,
    /// ... critical from (0.95).
    pub tw_bucket_crit: f64,
    /// How many cookies of the oldest sockets a finding lists (default 5).
    pub oldest_cookies: usize,
    /// A CLOSE_WAIT socket its owner wrote to within this many ms, after the
    /// peer's FIN, is half-closed and active, not leaked (default 10 s).
    pub half_close_active_ms: u64,
    /// sockleak's own pid: left out of fd_leak (its fds grow with what it
    /// watches), as top and pgrep leave themselves out.
    pub self_pid: Option<u32>,
}

impl Default for DiagnoseConfig {
    fn default() -> Self {
        DiagnoseConfig {
            min_age_s: 30,
            close_wait_crit_count: 100,
            time_wait_warn: 0.5,
            time_wait_crit: 0.9,
            time_wait_info_min_count: 100,
            time_wait_info_min_ratio: 0.01,
            fd_warn: 0.8,
            fd_crit: 0.95,
            orphan_warn: 0.8,
            orphan_crit: 0.95,
            tw_bucket_warn: 0.8,
            tw_bucket_crit: 0.95,
            oldest_cookies: 5,
            half_close_active_ms: 10_000,
            self_pid: None,
        }
    }
}

/// What a finding is about. Serialised in snake_case (`close_wait_leak`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    CloseWaitLeak,
    FinWait2Stuck,
    TimeWaitPressure,
    FdExhaustion,
    ClosedButHeld,
    AcceptQueueOverflow,
    OrphanPressure,
    TimeWaitBuckets,
    /// An fd kind growing steadily over time. Only watch can see growth;
    /// [`diagnose`] never emits it.
    FdLeak,
    /// CLOSE_WAIT sockets whose owner still writes to them (a relay after
    /// the peer's FIN, a response still streaming): legal half-close, not a
    /// leak. Always info.
    HalfClosed,
}

impl FindingKind {
    pub const ALL: [FindingKind; 10] = [
        FindingKind::CloseWaitLeak,
        FindingKind::FinWait2Stuck,
        FindingKind::TimeWaitPressure,
        FindingKind::FdExhaustion,
        FindingKind::ClosedButHeld,
        FindingKind::AcceptQueueOverflow,
        FindingKind::OrphanPressure,
        FindingKind::TimeWaitBuckets,
        FindingKind::FdLeak,
        FindingKind::HalfClosed,
    ];

    /// The JSON name: `close_wait_leak`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::CloseWaitLeak => "close_wait_leak",
            FindingKind::FinWait2Stuck => "fin_wait2_stuck",
            FindingKind::TimeWaitPressure => "time_wait_pressure",
            FindingKind::FdExhaustion => "fd_exhaustion",
            FindingKind::ClosedButHeld => "closed_but_held",
            FindingKind::AcceptQueueOverflow => "accept_queue_overflow",
            FindingKind::OrphanPressure => "orphan_pressure",
            FindingKind::TimeWaitBuckets => "time_wait_buckets",
            FindingKind::FdLeak => "fd_leak",
            FindingKind::HalfClosed => "half_closed",
        }
    }

    /// This kind's own `sockleak explain` topic (`close-wait-leak`, ...).
    pub fn topic(self) -> &'static str {
        match self {
            FindingKind::CloseWaitLeak => "close-wait-leak",
            FindingKind::FinWait2Stuck => "fin-wait2-stuck",
            FindingKind::TimeWaitPressure => "time-wait-pressure",
            FindingKind::FdExhaustion => "fd-exhaustion",
            FindingKind::ClosedButHeld => "closed-but-held",
            FindingKind::AcceptQueueOverflow => "accept-queue-overflow",
            FindingKind::OrphanPressure => "orphan-pressure",
            FindingKind::TimeWaitBuckets => "time-wait-buckets",
            FindingKind::FdLeak => "fd-leak",
            FindingKind::HalfClosed => "half-closed",
        }
    }

    /// The topic a finding of this kind points its reader to: for the kinds
    /// about one TCP state, that state's topic, which tells the whole story
    /// (who is at fault, common stacks, fixes); otherwise [`Self::topic`].
    pub fn explain_topic(self) -> &'static str {
        match self {
            FindingKind::CloseWaitLeak => "close-wait",
            FindingKind::FinWait2Stuck => "fin-wait-2",
            FindingKind::TimeWaitPressure => "time-wait",
            k => k.topic(),
        }
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How bad a finding is. Ordered: `Info < Warning < Critical`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    /// Parses `info`, `warning` (or `warn`), `critical` (or `crit`), any case,
    /// as `--fail-on` takes them.
    pub fn parse(s: &str) -> Option<Severity> {
        match s.trim().to_ascii_lowercase().as_str() {
            "info" => Some(Severity::Info),
            "warning" | "warn" => Some(Severity::Warning),
            "critical" | "crit" => Some(Severity::Critical),
            _ => None,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The identity of a finding across snapshots, for watch to match a finding
/// with its previous self. The process is (pid, start time) because pids are
/// reused; the endpoint is the listening endpoint for servers and the peer for
/// clients; TIME_WAIT pressure uses the local address with port 0.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FindingKey {
    pub kind: FindingKind,
    pub pid: Option<u32>,
    pub start_time: Option<u64>,
    pub netns: Option<NetnsId>,
    pub role: Option<Role>,
    pub local: Option<Endpoint>,
    pub remote: Option<Endpoint>,
    pub orphan: bool,
}

/// One finding. Evidence fields are `None`/empty when they do not apply and
/// are then left out of JSON.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The process's start time (clock ticks after boot), for [`Self::key`].
    #[serde(skip)]
    pub start_time: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<NetnsId>,
    /// What is counted depends on the kind: sockets, fds, waiting connections.
    /// For `close_wait_leak`, the sockets judged: older than `min_age_s` or
    /// of unknown age.
    pub count: u64,
    /// `close_wait_leak`: every CLOSE_WAIT socket of the group, the young
    /// and the still-written ones included (`count` is a subset), so the
    /// finding reads the same as the inventory's group row.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_count: Option<u64>,
    /// `close_wait_leak`: the `--min-age` the sockets were judged against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_age_s: Option<u64>,
    /// One plain sentence.
    pub summary: String,
    /// Cause, context and fix, in plain sentences.
    pub advice: String,

    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// The listening endpoint (server role, accept queue).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local: Option<Endpoint>,
    /// The local address of TIME_WAIT pressure (the port varies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_ip: Option<IpAddr>,
    /// The peer endpoint (client role, TIME_WAIT destination).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<Endpoint>,
    /// The sockets have no owning process any more.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub orphan: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_age_s: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_source: Option<AgeSource>,
    /// Counted sockets whose age could not be determined (no `tcp_info`, no
    /// history): they are in `count` but not in `oldest_age_s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_unknown: Option<u64>,
    /// Σ max(Recv-Q − 1, 0): application data never read (the FIN counts 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unread_bytes: Option<u64>,
    /// Cookies of the oldest sockets, oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cookies: Vec<Cookie>,
    /// The process at the other end on this host (FIN_WAIT2 ↔ CLOSE_WAIT).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_comm: Option<String>,
    /// Other processes holding the same sockets.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also_held_by: Vec<Holder>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fd_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fd_limit: Option<u64>,
    /// The process's fds by kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fds: Option<FdKinds>,
    /// Use of the resource the finding is about, as a fraction of its limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usable_ports: Option<u32>,
    /// `net.ipv4.tcp_fin_timeout` of the namespace: orphaned FIN_WAIT2
    /// sockets are gone by then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fin_timeout_s: Option<u32>,
    /// The namespace's `ListenOverflows` (cumulative since boot).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen_overflows: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backlog: Option<u32>,
    /// The kernel limit the count is compared with (tcp_max_orphans, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// Growth per minute; filled by watch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_per_min: Option<f64>,
    /// Seconds until the limit is reached at the current rate; filled by watch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_s: Option<u64>,
    /// The `sockleak explain` topic for this finding.
    pub explain: String,
}

impl Finding {
    /// An empty finding of this kind; rules (and watch, for `fd_leak`) fill
    /// in the rest.
    pub fn new(kind: FindingKind, severity: Severity) -> Finding {
        Finding {
            kind,
            severity,
            pid: None,
            start_time: None,
            comm: None,
            netns: None,
            count: 0,
            group_count: None,
            min_age_s: None,
            summary: String::new(),
            advice: String::new(),
            role: None,
            local: None,
            local_ip: None,
            remote: None,
            orphan: false,
            oldest_age_s: None,
            age_source: None,
            age_unknown: None,
            unread_bytes: None,
            cookies: Vec::new(),
            peer_pid: None,
            peer_comm: None,
            also_held_by: Vec::new(),
            fd_count: None,
            fd_limit: None,
            fds: None,
            ratio: None,
            usable_ports: None,
            fin_timeout_s: None,
            listen_overflows: None,
            backlog: None,
            limit: None,
            rate_per_min: None,
            eta_s: None,
            explain: kind.explain_topic().to_string(),
        }
    }

    /// Stable identity across snapshots (see [`FindingKey`]).
    pub fn key(&self) -> FindingKey {
        FindingKey {
            kind: self.kind,
            pid: self.pid,
            start_time: self.start_time,
            netns: self.netns,
            role: self.role,
            local: self
                .local
                .or_else(|| self.local_ip.map(|ip| Endpoint::new(ip, 0))),
            remote: self.remote,
            orphan: self.orphan,
        }
    }

    /// Copies the process identity and fd evidence of `p` into the finding.
    fn set_process(&mut self, p: Option<&Process>) {
        if let Some(p) = p {
            self.start_time = Some(p.start_time);
            self.comm = Some(p.comm.clone());
            self.fd_count = p.fd_count;
            self.fd_limit = p.fd_limit;
            self.fds = p.fds;
        }
    }
}

/// Most severe first, then the largest count, then a stable order by key.
pub fn sort_findings(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(b.count.cmp(&a.count))
            .then_with(|| a.key().cmp(&b.key()))
    });
}

/// All findings of one snapshot, as of `now_ms` (Unix ms), sorted most severe
/// first. Ages come from the snapshot alone.
pub fn diagnose(snap: &Snapshot, now_ms: u64, cfg: &DiagnoseConfig) -> Vec<Finding> {
    diagnose_with(snap, now_ms, cfg, &NoHints)
}

/// [`diagnose`] with ages from history or eBPF where they are known.
pub fn diagnose_with(
    snap: &Snapshot,
    now_ms: u64,
    cfg: &DiagnoseConfig,
    hints: &(dyn AgeHints + Sync),
) -> Vec<Finding> {
    diagnose_indexed(&Indexes::new(snap), now_ms, cfg, hints)
}

/// [`diagnose_with`] over indexes built beforehand: `watch` builds them on
/// another core while its history takes the same snapshot in, and reuses
/// them for a second pass.
pub fn diagnose_indexed(
    ix: &Indexes<'_>,
    now_ms: u64,
    cfg: &DiagnoseConfig,
    hints: &(dyn AgeHints + Sync),
) -> Vec<Finding> {
    let ctx = ix.ctx(now_ms, cfg, hints);
    // The CLOSE_WAIT rule is the heaviest (at 150k sockets a third of them
    // can be CLOSE_WAIT): the others run beside it on another core, inline
    // if no thread can be started. Output order is the sequential one.
    let others = |out: &mut Vec<Finding>| {
        fin_wait2_stuck(&ctx, out);
        time_wait_pressure(&ctx, out);
        accept_queue_overflows(&ctx, out);
        process_rules(&ctx, out);
        namespace_rules(&ctx, out);
    };
    let mut out = Vec::new();
    let rest = std::thread::scope(|sc| {
        let beside = std::thread::Builder::new()
            .name("sockleak-rules".into())
            .spawn_scoped(sc, || {
                let mut v = Vec::new();
                others(&mut v);
                v
            });
        close_wait_leaks(&ctx, &mut out);
        match beside {
            Ok(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            Err(_) => {
                let mut v = Vec::new();
                others(&mut v);
                v
            }
        }
    });
    out.extend(rest);
    sort_findings(&mut out);
    out
}

/// The lookups the rules share, from the snapshot alone (no ages, no
/// configuration).
pub struct Indexes<'a> {
    snap: &'a Snapshot,
    /// Sockets deduplicated by cookie: a dump is not atomic and may list a
    /// socket twice. Cookie 0 (a collector that has none) is never merged.
    sockets: Vec<&'a Socket>,
    procs: ProcessIndex<'a>,
    listeners: ListenerIndex,
    /// CLOSE_WAIT and FIN_WAIT2 sockets with whom and what group they are
    /// charged to and their peer (the ages come later, from the hints).
    close_wait: ChargedSet<'a>,
    fin_wait2: ChargedSet<'a>,
}

/// A state rule's sockets, charged, with their (owner, group) numbered.
struct ChargedSet<'a> {
    sockets: Vec<Charged<'a>>,
    /// The (owner, group) of each number.
    keys: Vec<(OwnerKey, GroupKey)>,
    /// The numbers in key order (findings come out in a stable order).
    order: Vec<u32>,
}

impl<'a> ChargedSet<'a> {
    fn new(sockets: impl Iterator<Item = (Charged<'a>, (OwnerKey, GroupKey))>) -> Self {
        let mut ids: rustc_hash::FxHashMap<(OwnerKey, GroupKey), u32> = Default::default();
        let mut keys = Vec::new();
        let sockets = sockets
            .map(|(mut c, key)| {
                c.gid = *ids.entry(key).or_insert_with(|| {
                    keys.push(key);
                    u32::try_from(keys.len() - 1).unwrap_or(u32::MAX)
                });
                c
            })
            .collect();
        let mut order: Vec<u32> = (0..u32::try_from(keys.len()).unwrap_or(u32::MAX)).collect();
        order.sort_unstable_by_key(|&i| keys.get(i as usize).copied());
        ChargedSet {
            sockets,
            keys,
            order,
        }
    }

    /// The sockets gathered per (owner, group) as `tally` sorts them (given
    /// their age), in key order; groups with no socket tallied are left out.
    fn gather(
        &self,
        ctx: &Ctx<'_>,
        tally: impl Fn(&Charged<'_>, Option<Age>) -> Tally,
    ) -> impl Iterator<Item = ((OwnerKey, GroupKey), Gathered)> + '_ {
        let mut slots: Vec<Option<Gathered>> = std::iter::repeat_with(|| None)
            .take(self.keys.len())
            .collect();
        for (c, a) in self.sockets.iter().zip(ages(ctx, &self.sockets)) {
            let t = tally(c, a);
            if t == Tally::Skipped {
                continue;
            }
            let Some(g) = slots.get_mut(c.gid as usize) else {
                continue;
            };
            let g = g.get_or_insert_with(Gathered::default);
            match t {
                Tally::Counted => {}
                Tally::Young => {
                    g.young += 1;
                    continue;
                }
                Tally::Active { last_sent_ms } => {
                    g.active += 1;
                    g.last_sent_ms =
                        Some(g.last_sent_ms.map_or(last_sent_ms, |m| m.min(last_sent_ms)));
                    continue;
                }
                Tally::Skipped => continue,
            }
            g.add(c.s, a, c.owner.pid());
            if let Some(peer_pid) = c.peer {
                g.peers.add(peer_pid);
            }
        }
        self.order.iter().filter_map(move |&i| {
            let g = slots.get_mut(i as usize)?.take()?;
            Some((*self.keys.get(i as usize)?, g))
        })
    }
}

/// What a state rule makes of one of its sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tally {
    /// Judged: counted in the finding.
    Counted,
    /// Younger than `--min-age`: in the state, not judged yet.
    Young,
    /// Half-closed and still written to by its owner (a relay or a response
    /// still streaming): not a leak.
    Active { last_sent_ms: u32 },
    /// Not this rule's business.
    Skipped,
}

/// A socket of a state rule, charged.
struct Charged<'a> {
    s: &'a Socket,
    /// Its position in the snapshot (for [`AgeHints::state_since_at`]).
    index: usize,
    owner: OwnerKey,
    /// The number of its (owner, group) in its [`ChargedSet`].
    gid: u32,
    /// The peer socket's owner pid, when the peer is on this host.
    peer: Option<Option<u32>>,
}

impl<'a> Indexes<'a> {
    /// The context one diagnosis runs in over these indexes.
    fn ctx<'c>(
        &'c self,
        now_ms: u64,
        cfg: &'c DiagnoseConfig,
        hints: &'c (dyn AgeHints + Sync),
    ) -> Ctx<'c> {
        Ctx {
            snap: self.snap,
            sockets: &self.sockets,
            procs: &self.procs,
            listeners: &self.listeners,
            close_wait: &self.close_wait,
            fin_wait2: &self.fin_wait2,
            now_ms,
            cfg,
            hints,
        }
    }

    pub fn new(snap: &'a Snapshot) -> Indexes<'a> {
        let mut seen = rustc_hash::FxHashSet::default();
        seen.reserve(snap.sockets.len());
        let first: Vec<bool> = snap
            .sockets
            .iter()
            .map(|s| s.cookie.0 == 0 || seen.insert(s.cookie))
            .collect();
        drop(seen);
        let sockets: Vec<&Socket> = snap
            .sockets
            .iter()
            .zip(&first)
            .filter_map(|(s, f)| f.then_some(s))
            .collect();
        let procs = ProcessIndex::new(&snap.processes);
        let listeners = ListenerIndex::from_snapshot(snap);
        let peers = PeerIndex::with_states(&snap.sockets, |st| {
            matches!(st, TcpState::FinWait2 | TcpState::CloseWait)
        });
        let charged = |state: TcpState, peer_state: TcpState| -> ChargedSet<'a> {
            ChargedSet::new(
                snap.sockets
                    .iter()
                    .enumerate()
                    .filter(|(i, s)| s.state == state && first.get(*i) == Some(&true))
                    .map(|(index, s)| {
                        let owner = OwnerKey::of(&procs, s);
                        let c = Charged {
                            s,
                            index,
                            owner,
                            gid: 0,
                            peer: peers
                                .mirror(&snap.sockets, s, peer_state)
                                .map(|p| blame::primary_owner(p, &procs).map(|o| o.pid)),
                        };
                        (c, (owner, group_key(s, &listeners)))
                    }),
            )
        };
        let close_wait = charged(TcpState::CloseWait, TcpState::FinWait2);
        let fin_wait2 = charged(TcpState::FinWait2, TcpState::CloseWait);
        Indexes {
            snap,
            sockets,
            procs,
            listeners,
            close_wait,
            fin_wait2,
        }
    }
}

/// The indexes, the moment and the ages one diagnosis runs with.
struct Ctx<'a> {
    snap: &'a Snapshot,
    sockets: &'a [&'a Socket],
    procs: &'a ProcessIndex<'a>,
    listeners: &'a ListenerIndex,
    close_wait: &'a ChargedSet<'a>,
    fin_wait2: &'a ChargedSet<'a>,
    now_ms: u64,
    cfg: &'a DiagnoseConfig,
    hints: &'a (dyn AgeHints + Sync),
}

impl<'a> Ctx<'a> {
    fn namespace(&self, id: NetnsId) -> Option<&'a Namespace> {
        self.snap.namespace(id)
    }

    fn fin_timeout(&self, id: NetnsId) -> Option<u32> {
        self.namespace(id).and_then(|n| n.tcp_fin_timeout_s)
    }

    /// The age of `s`, the socket at `index` of the snapshot.
    fn age_at(&self, index: usize, s: &Socket) -> Option<Age> {
        age::estimate_hinted(
            s,
            self.snap.taken_at_ms,
            self.now_ms,
            self.fin_timeout(s.netns),
            self.hints.state_since_at(index, s),
        )
    }

    fn is_young(&self, a: Option<Age>) -> bool {
        a.is_some_and(|a| a.secs() < self.cfg.min_age_s)
    }

    /// "java (pid 4242)", "pid 4242", or "an unidentified process".
    fn who(&self, pid: Option<u32>) -> String {
        match pid {
            Some(pid) => match self.procs.get(pid) {
                Some(p) => format!("{} (pid {})", p.comm, pid),
                None => format!("pid {pid}"),
            },
            None => "an unidentified process".to_string(),
        }
    }

    /// [`Self::who`] at the start of a sentence. A command name keeps its
    /// case ("java", not "Java"): it is the name the user will grep for.
    fn subject(&self, pid: Option<u32>) -> String {
        match pid {
            Some(_) => self.who(pid),
            None => "An unidentified process".to_string(),
        }
    }

    /// The short name for later sentences: "java", "pid 4242", "the process".
    fn name(&self, pid: Option<u32>) -> String {
        match pid {
            Some(pid) => self
                .procs
                .get(pid)
                .map_or_else(|| format!("pid {pid}"), |p| p.comm.clone()),
            None => "the process".to_string(),
        }
    }

    /// " in network namespace NAME" unless it is sockleak's own namespace.
    fn netns_phrase(&self, id: NetnsId) -> String {
        match self.namespace(id) {
            Some(n) if n.is_own => String::new(),
            Some(n) => format!(" in network namespace {}", n.label()),
            None => String::new(),
        }
    }
}

/// Who a group of sockets is charged to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum OwnerKey {
    Pid(u32),
    /// The socket has a file but its holder could not be seen (fd tables
    /// unreadable, or the process vanished during the scan).
    Unseen,
    /// No file at all (inode 0): closed by its process, kept by the kernel.
    Orphan,
}

impl OwnerKey {
    fn of(procs: &ProcessIndex<'_>, s: &Socket) -> OwnerKey {
        match blame::primary_owner(s, procs).map(|o| o.pid) {
            Some(pid) => OwnerKey::Pid(pid),
            None if s.is_orphan() => OwnerKey::Orphan,
            None => OwnerKey::Unseen,
        }
    }

    fn pid(self) -> Option<u32> {
        match self {
            OwnerKey::Pid(p) => Some(p),
            _ => None,
        }
    }
}

/// The ages of a rule's sockets, in a pass of their own (a loop that does
/// nothing else lets the CPU overlap the cache misses of several sockets).
fn ages(ctx: &Ctx<'_>, charged: &[Charged<'_>]) -> Vec<Option<Age>> {
    charged.iter().map(|c| ctx.age_at(c.index, c.s)).collect()
}

/// Sockets of one (owner, group) gathered by a state rule.
#[derive(Default)]
struct Gathered {
    count: u64,
    unread: u64,
    /// Sockets whose Recv-Q is 0: the application read up to the FIN.
    eof_read: u64,
    aged: Vec<(Age, Cookie)>,
    unknown: Vec<Cookie>,
    holders: HashMap<u32, (bool, u64)>,
    peers: PeerTally,
    /// Sockets of the group younger than `--min-age` (not in `count`).
    young: u64,
    /// Half-closed sockets still being written to (not in `count`) ...
    active: u64,
    /// ... and the most recent of their writes, ms before the snapshot.
    last_sent_ms: Option<u32>,
}

impl Gathered {
    fn add(&mut self, s: &Socket, age: Option<Age>, primary: Option<u32>) {
        self.count += 1;
        self.unread += u64::from(s.unread_bytes());
        if s.recv_q == 0 {
            self.eof_read += 1;
        }
        match age {
            Some(a) => self.aged.push((a, s.cookie)),
            None => self.unknown.push(s.cookie),
        }
        blame::tally_holders(&mut self.holders, s, primary);
    }

    fn oldest(&self) -> Option<Age> {
        self.aged.iter().map(|(a, _)| *a).max_by_key(|a| a.ms)
    }

    /// Oldest first; sockets of unknown age after those of known age. Only
    /// the first `n` are put in order (a leak of 50k sockets was sorted whole
    /// per sample).
    fn oldest_cookies(&mut self, n: usize) -> Vec<Cookie> {
        fn first_in_order<T: Ord>(v: &mut [T], n: usize) -> &[T] {
            let n = n.min(v.len());
            if n == 0 {
                return &[];
            }
            if n < v.len() {
                v.select_nth_unstable(n - 1);
            }
            let head = &mut v[..n];
            head.sort_unstable();
            head
        }
        // Oldest first, then by cookie.
        let mut aged: Vec<(std::cmp::Reverse<u64>, Cookie)> = self
            .aged
            .iter()
            .map(|(a, c)| (std::cmp::Reverse(a.ms), *c))
            .collect();
        let rest = n.saturating_sub(aged.len());
        let mut out: Vec<Cookie> = first_in_order(&mut aged, n)
            .iter()
            .map(|(_, c)| *c)
            .collect();
        out.extend_from_slice(first_in_order(&mut self.unknown, rest));
        out
    }

    /// Fills count, ages, cookies and holders into `f`.
    fn fill(&mut self, ctx: &Ctx<'_>, f: &mut Finding) {
        f.count = self.count;
        if let Some(a) = self.oldest() {
            f.oldest_age_s = Some(a.secs());
            f.age_source = Some(a.source);
        }
        let unknown = self.unknown.len() as u64;
        f.age_unknown = (unknown > 0).then_some(unknown);
        f.cookies = self.oldest_cookies(ctx.cfg.oldest_cookies);
        f.also_held_by = blame::holders_from_tally(std::mem::take(&mut self.holders), ctx.procs);
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Whole percent, rounded down so "100 %" means really full.
fn percent(ratio: f64) -> u64 {
    if ratio.is_finite() && ratio > 0.0 {
        (ratio * 100.0).floor() as u64
    } else {
        0
    }
}

fn ratio(n: u64, of: u64) -> Option<f64> {
    (of > 0).then(|| n as f64 / of as f64)
}

/// "the oldest for about 41 min" / ", of unknown age".
fn oldest_phrase(f: &Finding) -> String {
    match (f.oldest_age_s, f.age_source) {
        (Some(s), Some(src)) => format!(
            ", the oldest for {}{}",
            src.qualifier(),
            age::human_duration(s)
        ),
        _ => ", of unknown age".to_string(),
    }
}

/// "It also holds 1562 pipes and 2390 of its 4096 allowed fds. " — the fd
/// context that tells how close the leak is to breaking the process. Pipes
/// are named when there are at least as many as leaked sockets: incident 1
/// leaked two pipes per connection. Otherwise the fd count is only worth a
/// sentence from half the limit on.
fn fd_context(p: Option<&Process>, leaked: u64) -> String {
    let Some(p) = p else { return String::new() };
    if p.fd_limit == Some(0) {
        return "Its soft open-file limit (RLIMIT_NOFILE) is 0: every socket, pipe or file \
                it tries to open fails with EMFILE (\"Too many open files\"). "
            .to_string();
    }
    let pipes = p.fds.map_or(0, |k| u64::from(k.pipe));
    let pipes = (pipes > 0 && pipes >= leaked).then_some(pipes);
    if pipes.is_none() && p.fd_use_ratio().is_none_or(|r| r < 0.5) {
        return String::new();
    }
    match (pipes, p.fd_count, p.fd_limit) {
        (Some(pp), Some(n), Some(l)) => {
            format!("It also holds {pp} pipes and {n} of its {l} allowed fds. ")
        }
        (None, Some(n), Some(l)) => format!("It holds {n} of its {l} allowed fds. "),
        (Some(pp), Some(n), None) => format!("It also holds {pp} pipes ({n} fds in all). "),
        _ => String::new(),
    }
}

/// Said first when the holder of sockets with a file could not be seen.
fn unseen_owner(owner: OwnerKey) -> &'static str {
    match owner {
        OwnerKey::Unseen => {
            "sockleak could not see which process holds these sockets (its fd table was \
             unreadable or it exited during the scan); run sockleak as root to name it. "
        }
        _ => "",
    }
}

/// The sentences about other holders of the same sockets.
fn holders_advice(holders: &[Holder]) -> String {
    let list = |hs: &[&Holder]| {
        let shown: Vec<String> = hs
            .iter()
            .take(3)
            .map(|h| match &h.comm {
                Some(c) => format!("{} ({c})", h.pid),
                None => h.pid.to_string(),
            })
            .collect();
        let more = hs.len().saturating_sub(3);
        if more > 0 {
            format!("{} and {more} more", shown.join(", "))
        } else {
            shown.join(", ")
        }
    };
    let inherited: Vec<&Holder> = holders.iter().filter(|h| h.inherited).collect();
    let shared: Vec<&Holder> = holders.iter().filter(|h| !h.inherited).collect();
    let mut out = String::new();
    if !inherited.is_empty() {
        let pid_word = if inherited.len() == 1 { "pid" } else { "pids" };
        out.push_str(&format!(
            "Also held by child {pid_word} {}, inherited through fork: set CLOEXEC \
             (SOCK_CLOEXEC, O_CLOEXEC) or close them in the child, because a \
             connection lasts until every holder closes it. ",
            list(&inherited)
        ));
    }
    if !shared.is_empty() {
        let pid_word = if shared.len() == 1 { "pid" } else { "pids" };
        out.push_str(&format!(
            "Also held by {pid_word} {}, which must close its copies too. ",
            list(&shared)
        ));
    }
    out
}

/// How the CLOSE_WAIT rule sorts one socket.
///
/// Half-closed and active: the owner sent data on it within
/// `half_close_active_ms` and after the socket entered CLOSE_WAIT (the last
/// send is more recent than the state's age). A leaking server's last send
/// is its response, before the peer's FIN, so it never qualifies; a relay
/// still writing after the FIN does. Both times are taken as of `now_ms`.
fn close_wait_tally(ctx: &Ctx<'_>, c: &Charged<'_>, a: Option<Age>) -> Tally {
    if let (Some(info), Some(age)) = (&c.s.tcp_info, a) {
        let since_snapshot = ctx.now_ms.saturating_sub(ctx.snap.taken_at_ms);
        let sent = u64::from(info.last_data_sent_ms) + since_snapshot;
        if sent < ctx.cfg.half_close_active_ms && sent < age.ms {
            return Tally::Active {
                last_sent_ms: info.last_data_sent_ms,
            };
        }
    }
    if ctx.is_young(a) {
        Tally::Young
    } else {
        Tally::Counted
    }
}

/// A finding about one (owner, group) of a state rule: who, where, which
/// side and endpoint.
fn group_finding(
    ctx: &Ctx<'_>,
    kind: FindingKind,
    severity: Severity,
    owner: OwnerKey,
    gk: GroupKey,
) -> Finding {
    let mut f = Finding::new(kind, severity);
    f.pid = owner.pid();
    f.orphan = owner == OwnerKey::Orphan;
    f.set_process(owner.pid().and_then(|p| ctx.procs.get(p)));
    f.netns = Some(gk.netns);
    f.role = Some(gk.role);
    match gk.role {
        Role::Server => f.local = Some(gk.endpoint),
        Role::Client => f.remote = Some(gk.endpoint),
    }
    f
}

/// half_closed: the CLOSE_WAIT sockets of one group that their owner still
/// writes to. Info: a half-close is legal TCP (the peer only said it will
/// send no more); it turns into a close_wait_leak when the writes stop and
/// the sockets stay.
fn half_closed(ctx: &Ctx<'_>, owner: OwnerKey, gk: GroupKey, g: &Gathered) -> Finding {
    let pid = owner.pid();
    let mut f = group_finding(ctx, FindingKind::HalfClosed, Severity::Info, owner, gk);
    f.count = g.active;
    f.min_age_s = Some(ctx.cfg.min_age_s);
    let (side, prep) = match gk.role {
        Role::Server => ("server connection", "on"),
        Role::Client => ("connection", "to"),
    };
    let last = g
        .last_sent_ms
        .map(|ms| {
            format!(
                ", the last time {} ago",
                age::human_duration_ms(u64::from(ms))
            )
        })
        .unwrap_or_default();
    let name = ctx.name(pid);
    f.summary = format!(
        "{} keeps sending on {} {prep} {}{}: half-closed by the peer and still in use{last}.",
        ctx.subject(pid),
        plural(
            g.active,
            &format!("half-closed {side}"),
            &format!("half-closed {side}s")
        ),
        gk.endpoint,
        ctx.netns_phrase(gk.netns),
    );
    f.advice = format!(
        "The peer sent its FIN (it will send nothing more), so the kernel lists these \
         sockets in CLOSE_WAIT, but {name} is still writing to them: a proxy relaying the \
         rest of a stream, or a response still being sent after a half-close. That is \
         legal TCP, not a leak. It becomes one if the writes stop and {name} never calls \
         close(); sockleak watch reports a close_wait_leak then."
    );
    f
}

/// CLOSE_WAIT sockets that no finding judged because all of their group is
/// younger than `--min-age`, summed per owner: one snapshot cannot tell a
/// burst from a leak, but an empty report must not read as an all-clear.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unjudged {
    pub pid: Option<u32>,
    pub comm: Option<String>,
    pub netns: NetnsId,
    /// Young CLOSE_WAIT sockets in groups without a finding.
    pub count: u64,
    pub min_age_s: u64,
}

/// The [`Unjudged`] CLOSE_WAIT sockets of a snapshot, most first.
pub fn unjudged_close_wait(snap: &Snapshot, now_ms: u64, cfg: &DiagnoseConfig) -> Vec<Unjudged> {
    let ix = Indexes::new(snap);
    let ctx = ix.ctx(now_ms, cfg, &NoHints);
    let mut per_owner: BTreeMap<(OwnerKey, NetnsId), u64> = BTreeMap::new();
    for ((owner, gk), g) in ctx
        .close_wait
        .gather(&ctx, |c, a| close_wait_tally(&ctx, c, a))
    {
        if g.count == 0 && g.young > 0 {
            *per_owner.entry((owner, gk.netns)).or_default() += g.young;
        }
    }
    let mut out: Vec<Unjudged> = per_owner
        .into_iter()
        .map(|((owner, netns), count)| Unjudged {
            pid: owner.pid(),
            comm: owner.pid().and_then(|p| ctx.procs.comm(p)),
            netns,
            count,
            min_age_s: cfg.min_age_s,
        })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then(a.pid.cmp(&b.pid)));
    out
}

/// close_wait_leak: per owning process × group (listening endpoint for
/// accepted connections, peer endpoint for outgoing ones).
///
/// - Counts CLOSE_WAIT sockets at least `min_age_s` old. Sockets whose age
///   cannot be estimated (no `tcp_info`, no history) are counted too and
///   reported in `age_unknown`: excluding them could hide a real leak.
/// - Severity: info when every counted socket is of unknown age (one
///   snapshot cannot tell a leak from churn without ages); critical when
///   `count ≥ close_wait_crit_count` or the owner uses ≥ `fd_warn` of its fd
///   limit; warning otherwise.
/// - A socket held by several processes is charged to one
///   ([`blame::primary_owner`]); the others are in `also_held_by`.
/// - If the other end is on this host in FIN_WAIT2, `peer_pid` names its
///   owner.
fn close_wait_leaks(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    for ((owner, gk), mut g) in ctx
        .close_wait
        .gather(ctx, |c, a| close_wait_tally(ctx, c, a))
    {
        if g.active > 0 {
            out.push(half_closed(ctx, owner, gk, &g));
        }
        if g.count == 0 {
            // Only young or still-written sockets: nothing judged (the
            // human scan says so through [`unjudged_close_wait`]).
            continue;
        }
        let pid = owner.pid();
        let proc_ = pid.and_then(|p| ctx.procs.get(p));
        let aged = g.count - g.unknown.len() as u64;
        let near_fd_limit = proc_
            .and_then(Process::fd_use_ratio)
            .is_some_and(|r| r >= ctx.cfg.fd_warn);
        let severity = if aged == 0 {
            Severity::Info
        } else if g.count >= ctx.cfg.close_wait_crit_count || near_fd_limit {
            Severity::Critical
        } else {
            Severity::Warning
        };
        let mut f = group_finding(ctx, FindingKind::CloseWaitLeak, severity, owner, gk);
        f.unread_bytes = Some(g.unread);
        g.fill(ctx, &mut f);
        let total = g.count + g.young + g.active;
        f.group_count = Some(total);
        f.min_age_s = Some(ctx.cfg.min_age_s);
        f.peer_pid = g.peers.main_pid();
        f.peer_comm = f.peer_pid.and_then(|p| ctx.procs.comm(p));

        let who = ctx.subject(pid);
        let name = ctx.name(pid);
        // The whole group first, as the inventory counts it, then the part
        // judged: "140 sockets in CLOSE_WAIT, 68 of them older than 30 s".
        let judged = if total > g.count && aged == 0 {
            format!(", {} of them of unknown age", g.count)
        } else if g.young == 0 && g.active > 0 {
            format!(", {} of them no longer written to", g.count)
        } else if total > g.count {
            let unknown = if g.unknown.is_empty() {
                ""
            } else {
                " or of unknown age"
            };
            format!(
                ", {} of them older than {}{unknown}",
                g.count,
                age::human_duration(ctx.cfg.min_age_s)
            )
        } else {
            String::new()
        };
        let n = plural(total, "socket", "sockets");
        let peer = match f.peer_pid {
            Some(p) => format!("; its peer {} is stuck in FIN_WAIT2", ctx.who(Some(p))),
            None if g.peers.orphans() > 0 => {
                "; its peers on this host wait in FIN_WAIT2".to_string()
            }
            None => String::new(),
        };
        let oldest = if total > g.count && aged == 0 {
            String::new()
        } else {
            oldest_phrase(&f)
        };
        let (side, prep) = match gk.role {
            Role::Server => ("server", "on"),
            Role::Client => ("client", "to"),
        };
        let at = gk.endpoint;
        f.summary = if aged == 0 {
            format!(
                "{who} holds {} {prep} {at} in CLOSE_WAIT{judged}{oldest}{peer}.",
                plural(
                    total,
                    &format!("{side} connection"),
                    &format!("{side} connections")
                ),
            )
        } else if gk.role == Role::Client && g.unread > 0 {
            format!(
                "{who} is leaking {side} connections {prep} {at}: {n} in CLOSE_WAIT{judged} with \
                 {} never read{oldest}{peer}.",
                plural(g.unread, "byte", "bytes")
            )
        } else {
            format!(
                "{who} is leaking {side} connections {prep} {at}: {n} in CLOSE_WAIT{judged}{oldest}{peer}."
            )
        };

        let mut advice = unseen_owner(owner).to_string();
        match gk.role {
            Role::Server => {
                advice.push_str(&format!(
                    "The clients hung up and {name} never called close() on these connections"
                ));
                if g.eof_read == g.count {
                    advice.push_str(", although it already read the end of the stream (Recv-Q 0)");
                } else if g.unread > 0 {
                    advice.push_str(&format!(
                        ", and left the last {} they sent unread",
                        plural(g.unread, "byte", "bytes")
                    ));
                }
                advice.push_str(". ");
            }
            Role::Client if g.unread > 0 => advice.push_str(&format!(
                "The server closed these connections, but {name} never read the responses \
                 to the end nor closed them, so {} sit unread and a connection pool can \
                 neither reuse nor release them (this is how \"Timeout waiting for \
                 connection\" starts). ",
                plural(g.unread, "byte", "bytes")
            )),
            Role::Client => advice.push_str(&format!(
                "The server hung up and {name} never closed its side: an error path or an \
                 end-of-stream branch skips close(). "
            )),
        }
        if let Some(p) = f.peer_pid {
            advice.push_str(&format!(
                "Its peer {} has closed and waits in FIN_WAIT2: the fault is with {name}, \
                 not with the peer. ",
                ctx.who(Some(p))
            ));
        }
        advice.push_str(&fd_context(proc_, g.count));
        advice.push_str(&holders_advice(&f.also_held_by));
        // The fix in the owner's own runtime first, then the general rule.
        if let Some(rt) = proc_.map(Runtime::of) {
            advice.push_str(match gk.role {
                Role::Server => rt.server_close_fix(),
                Role::Client if g.unread > 0 => rt.unread_response_fix(),
                Role::Client => rt.client_close_fix(),
            });
        }
        match gk.role {
            Role::Server => advice.push_str(
                "Close the connection when read() returns 0 (end of stream; -1 in Java) and on \
                 every error path: try-with-resources, defer, a guard object, or one cleanup \
                 label in C. ",
            ),
            Role::Client if g.unread > 0 => advice.push_str(
                "Close or fully consume every response, also on error paths: Java HttpClient \
                 and AWS SDK: close the response InputStream (try-with-resources); Python \
                 requests: use `with` or resp.close(); Go: defer resp.Body.Close(); Node: \
                 consume the response or call res.destroy(). ",
            ),
            Role::Client => advice.push_str(
                "Close the socket on every path (C: close() before each early return; Java: \
                 try-with-resources; Go: defer conn.Close(); Python: with). If these are idle \
                 connections parked in a pool, let the pool drop idle connections before the \
                 server's keep-alive timeout. ",
            ),
        }
        if aged == 0 {
            advice.push_str(
                "Their age is unknown (no tcp_info), so this may be normal churn: look again \
                 in a minute, or use sockleak watch. ",
            );
        }
        advice.push_str(
            "CLOSE_WAIT never times out: the sockets and their fds stay until the process \
             closes them or exits.",
        );
        f.advice = advice;
        out.push(f);
    }
}

/// fin_wait2_stuck: FIN_WAIT2 sockets per holder (a process, or "orphan")
/// and group.
///
/// - Owned sockets (the application called shutdown(SHUT_WR) and kept the
///   fd) count when at least `min_age_s` old or of unknown age: warning when
///   any is of known age, info otherwise. They never time out on their own.
/// - Orphaned sockets (inode 0: closed, kept by the kernel) count when at
///   least `min_age_s` old, or when their peer is a local CLOSE_WAIT socket
///   (proof the wait is real); always info, with the namespace's
///   `tcp_fin_timeout` that will reap them.
/// - `peer_pid` names the owner of the mirrored CLOSE_WAIT socket: that
///   process is at fault.
fn fin_wait2_stuck(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    let counts = |c: &Charged<'_>, a: Option<Age>| {
        let counted = match (c.owner, a) {
            (_, Some(a)) => a.secs() >= ctx.cfg.min_age_s,
            (OwnerKey::Orphan, None) => c.peer.is_some(),
            (_, None) => true,
        };
        if counted {
            Tally::Counted
        } else {
            Tally::Skipped
        }
    };
    for ((owner, gk), mut g) in ctx.fin_wait2.gather(ctx, counts) {
        let orphan = owner == OwnerKey::Orphan;
        let aged = g.count - g.unknown.len() as u64;
        let severity = if orphan || aged == 0 {
            Severity::Info
        } else {
            Severity::Warning
        };
        let pid = owner.pid();
        let mut f = group_finding(ctx, FindingKind::FinWait2Stuck, severity, owner, gk);
        g.fill(ctx, &mut f);
        f.peer_pid = g.peers.main_pid();
        f.peer_comm = f.peer_pid.and_then(|p| ctx.procs.comm(p));
        let fin_timeout = ctx.fin_timeout(gk.netns);
        if orphan {
            f.fin_timeout_s = fin_timeout;
        }

        let conns = |adjective: &str| {
            let (side, prep) = match gk.role {
                Role::Server => ("server connection", "on"),
                Role::Client => ("connection", "to"),
            };
            format!(
                "{} {prep} {}",
                plural(
                    g.count,
                    &format!("{adjective}{side}"),
                    &format!("{adjective}{side}s")
                ),
                gk.endpoint
            )
        };
        let peer_who = f.peer_pid.map(|p| ctx.who(Some(p)));
        let oldest = oldest_phrase(&f);
        let reap = match fin_timeout {
            Some(t) => format!("within {t} s (net.ipv4.tcp_fin_timeout)"),
            None => "after net.ipv4.tcp_fin_timeout (60 s by default)".to_string(),
        };
        let peer_fault = match &peer_who {
            Some(w) => format!(
                "The fault is with its peer {w}: it received the FIN and never called close() \
                 (its sockets are in CLOSE_WAIT; see its close_wait_leak finding). "
            ),
            None if g.peers.total() > 0 => "The other ends are on this host in CLOSE_WAIT, \
                 held by a process sockleak could not see: that side is at fault. "
                .to_string(),
            None => format!(
                "The application at {} received the FIN and has not closed its end: look \
                 there (it shows these connections in CLOSE_WAIT). ",
                match gk.role {
                    Role::Server => "the client end".to_string(),
                    Role::Client => gk.endpoint.to_string(),
                }
            ),
        };
        if orphan {
            let peer = match &peer_who {
                Some(w) => format!("; their peer {w} never closed its end"),
                None => String::new(),
            };
            let (wait, them) = if g.count == 1 {
                ("waits", "it")
            } else {
                ("wait", "them")
            };
            f.summary = format!(
                "{} {wait} in FIN_WAIT2 with no process holding {them}{oldest}; the kernel \
                 drops {them} {reap}{peer}.",
                capitalize(&conns("orphaned "))
            );
            f.advice = format!(
                "This side already closed these sockets; the kernel keeps them while it waits \
                 for the peer's FIN and gives up {reap}. They cost little. {peer_fault}"
            )
            .trim_end()
            .to_string();
        } else {
            let who = ctx.subject(pid);
            let peer = match &peer_who {
                Some(w) => format!("its peer {w} never closed its own"),
                None => "the peer never closed its own".to_string(),
            };
            f.summary = format!(
                "{who} has {} stuck in FIN_WAIT2{oldest}: it closed its side and {peer}.",
                conns("")
            );
            f.advice = format!(
                "{unseen}It shut down its sending side and keeps the socket open while it \
                 waits for the peer's FIN; an owned FIN_WAIT2 socket does not time out \
                 (tcp_fin_timeout only applies after close()). {peer_fault}On this side, \
                 close() the socket after a timeout once shutdown() is done, or enable TCP \
                 keepalive so a vanished peer is noticed.",
                unseen = unseen_owner(owner)
            );
        }
        out.push(f);
    }
}

/// time_wait_pressure: TIME_WAIT of outgoing connections per (namespace,
/// local address, remote ip:port) against the namespace's usable ephemeral
/// ports, since Linux needs a distinct local port per destination.
///
/// - Only TIME_WAIT whose local port is not a listener's (a server's TIME_WAIT
///   uses its listening port, not an ephemeral one) and, when the range is
///   known, lies in `ip_local_port_range`.
/// - warning ≥ `time_wait_warn`, critical ≥ `time_wait_crit`; below that an
///   info finding only from `time_wait_info_min_count` sockets and
///   `time_wait_info_min_ratio` of the ports. Without a known port range:
///   info from `time_wait_info_min_count`. Never called a leak.
fn time_wait_pressure(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    let mut groups: BTreeMap<(NetnsId, IpAddr, Endpoint), u64> = BTreeMap::new();
    for s in ctx.sockets.iter().filter(|s| s.state == TcpState::TimeWait) {
        if ctx.listeners.listener_for(s.netns, s.local).is_some() {
            continue;
        }
        let range = ctx.namespace(s.netns).and_then(|n| n.ip_local_port_range);
        if range.is_some_and(|r| !r.contains(s.local.port)) {
            continue;
        }
        let key = (s.netns, s.local.normalized().ip, s.remote.normalized());
        *groups.entry(key).or_insert(0) += 1;
    }
    let cfg = ctx.cfg;
    for ((netns, lip, remote), count) in groups {
        let usable = ctx
            .namespace(netns)
            .and_then(Namespace::usable_ephemeral_ports);
        let r = usable.and_then(|u| ratio(count, u64::from(u)));
        let severity = match r {
            Some(r) if r >= cfg.time_wait_crit => Severity::Critical,
            Some(r) if r >= cfg.time_wait_warn => Severity::Warning,
            Some(r)
                if count >= cfg.time_wait_info_min_count && r >= cfg.time_wait_info_min_ratio =>
            {
                Severity::Info
            }
            None if count >= cfg.time_wait_info_min_count => Severity::Info,
            _ => continue,
        };
        let mut f = Finding::new(FindingKind::TimeWaitPressure, severity);
        f.netns = Some(netns);
        f.role = Some(Role::Client);
        f.local_ip = Some(lip);
        f.remote = Some(remote);
        f.count = count;
        f.usable_ports = usable;
        f.ratio = r;
        let conns = format!(
            "{} from {} to {remote}{}",
            plural(count, "connection", "connections"),
            Endpoint::new(lip, 0).to_string().trim_end_matches(":0"),
            ctx.netns_phrase(netns)
        );
        let are = if count == 1 { "is" } else { "are" };
        f.summary = match (r, usable) {
            (Some(r), Some(u)) => {
                let verdict = if r >= 1.0 {
                    "exhausted"
                } else if r >= cfg.time_wait_crit {
                    "nearly exhausted"
                } else if r >= cfg.time_wait_warn {
                    "at risk"
                } else {
                    "fine for now"
                };
                format!(
                    "{} {are} in TIME_WAIT: {}% of the {u} usable ephemeral ports for that \
                     destination, {verdict}.",
                    capitalize(&conns),
                    percent(r)
                )
            }
            _ => format!(
                "{} {are} in TIME_WAIT; the namespace's usable port range is unknown, so the \
                 risk of running out cannot be judged.",
                capitalize(&conns)
            ),
        };
        f.advice = "This is not a leak: the side that closes first keeps TIME_WAIT for 60 s to \
             protect later connections, and each one holds a local port toward this \
             destination. If the ports run out, connect() fails with EADDRNOTAVAIL. \
             Remedies, in order: reuse connections (keep-alive, a connection pool); widen \
             net.ipv4.ip_local_port_range; let the server close first (for example \
             Connection: close sent by the server) so TIME_WAIT lands on its side; \
             SO_REUSEADDR for sockets that bind a fixed port (net.ipv4.tcp_tw_reuse for \
             outgoing ones); and only as a last resort SO_LINGER 0 resets, which give up \
             TCP's delivery guarantees."
            .to_string();
        out.push(f);
    }
}

/// accept_queue_overflow: a LISTEN socket whose accept queue (Recv-Q) has
/// reached its backlog (Send-Q, > 0): the owner stopped calling accept().
/// Always critical; listeners of one owner on one endpoint (SO_REUSEPORT)
/// are summed. `count` is the number of connections waiting.
fn accept_queue_overflows(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    /// Waiting connections, backlogs and other holders of one listening
    /// endpoint of one owner.
    #[derive(Default)]
    struct Queue {
        queued: u64,
        backlog: u64,
        holders: HashMap<u32, (bool, u64)>,
    }
    let mut groups: BTreeMap<(OwnerKey, NetnsId, Endpoint), Queue> = BTreeMap::new();
    for s in ctx.sockets.iter().filter(|s| s.state == TcpState::Listen) {
        if s.send_q == 0 || s.recv_q < s.send_q {
            continue;
        }
        let owner = OwnerKey::of(ctx.procs, s);
        let g = groups
            .entry((owner, s.netns, s.local.normalized()))
            .or_default();
        g.queued += u64::from(s.recv_q);
        g.backlog += u64::from(s.send_q);
        blame::tally_holders(&mut g.holders, s, owner.pid());
    }
    for ((owner, netns, local), q) in groups {
        let Queue {
            queued,
            backlog,
            holders,
        } = q;
        let pid = owner.pid();
        let proc_ = pid.and_then(|p| ctx.procs.get(p));
        let ns = ctx.namespace(netns);
        let mut f = Finding::new(FindingKind::AcceptQueueOverflow, Severity::Critical);
        f.pid = pid;
        f.orphan = owner == OwnerKey::Orphan;
        f.set_process(proc_);
        f.netns = Some(netns);
        f.role = Some(Role::Server);
        f.local = Some(local);
        f.count = queued;
        f.backlog = Some(u32::try_from(backlog).unwrap_or(u32::MAX));
        f.listen_overflows = ns.and_then(|n| n.counters.listen_overflows);
        f.also_held_by = blame::holders_from_tally(holders, ctx.procs);
        f.summary = format!(
            "{} has stopped accepting connections on {local}: its accept queue is full \
             ({queued} waiting, backlog {backlog}).",
            ctx.subject(pid)
        );
        let overflows = match f.listen_overflows {
            Some(n) => format!(" (ListenOverflows: {n} since boot in this namespace)"),
            None => String::new(),
        };
        let somaxconn = match ns.and_then(|n| n.somaxconn) {
            Some(m) => format!(", net.core.somaxconn = {m}"),
            None => ", net.core.somaxconn".to_string(),
        };
        f.advice = format!(
            "The kernel completes handshakes but {name} does not call accept(), so new \
             connections are dropped or time out{overflows}. It is hung, blocked or \
             overloaded: look at what its accepting thread is doing (jstack, py-spy dump, \
             gdb, /proc/PID/stack). A larger backlog (the listen() argument{somaxconn}) only \
             absorbs bursts.",
            name = ctx.name(pid)
        );
        out.push(f);
    }
}

/// fd_exhaustion (open fds / soft limit ≥ `fd_warn`, critical ≥ `fd_crit`)
/// and closed_but_held (≥ 1 socket fd in no TCP table: warning).
fn process_rules(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    for p in &ctx.snap.processes {
        // A soft limit of 0 (set after the fds were opened, or by a broken
        // unit file): nothing new can be opened, whatever it holds.
        if let (Some(n), Some(0)) = (p.fd_count, p.fd_limit) {
            out.push(fd_exhaustion(ctx, p, n, 0, 1.0, Severity::Critical));
        }
        if let (Some(r), Some(n), Some(l)) = (p.fd_use_ratio(), p.fd_count, p.fd_limit) {
            if r >= ctx.cfg.fd_warn {
                let sev = if r >= ctx.cfg.fd_crit {
                    Severity::Critical
                } else {
                    Severity::Warning
                };
                out.push(fd_exhaustion(ctx, p, n, l, r, sev));
            }
        }
        if let Some(n) = p.closed_but_held.filter(|n| *n > 0) {
            let mut f = Finding::new(FindingKind::ClosedButHeld, Severity::Warning);
            f.pid = Some(p.pid);
            f.set_process(Some(p));
            f.netns = (p.netns != 0).then_some(p.netns);
            f.count = u64::from(n);
            f.summary = format!(
                "{} holds {} whose connection is already gone (reset or aborted) without \
                 closing {}.",
                ctx.subject(Some(p.pid)),
                plural(u64::from(n), "socket", "sockets"),
                if n == 1 { "it" } else { "them" }
            );
            f.advice = format!(
                "The kernel has no TCP state for these sockets any more, yet each still takes \
                 one of {name}'s file descriptors until it calls close(): typically an error \
                 path (ECONNRESET, EPIPE, ETIMEDOUT) that returns without closing, or \
                 connections killed with ss -K. {ctx_}Close the socket on every error path.",
                name = p.comm,
                ctx_ = fd_context(Some(p), u64::from(n)),
            );
            out.push(f);
        }
    }
}

fn fd_exhaustion(ctx: &Ctx<'_>, p: &Process, n: u32, limit: u64, r: f64, sev: Severity) -> Finding {
    let mut f = Finding::new(FindingKind::FdExhaustion, sev);
    f.pid = Some(p.pid);
    f.set_process(Some(p));
    f.netns = (p.netns != 0).then_some(p.netns);
    f.count = u64::from(n);
    f.limit = Some(limit);
    f.ratio = Some(r);
    let breakdown = p.fds.map(|k| {
        let parts: Vec<String> = [
            (k.socket, "socket", "sockets"),
            (k.pipe, "pipe", "pipes"),
            (k.file, "file", "files"),
            (k.anon, "anon inode", "anon inodes"),
            (k.other, "other", "other"),
        ]
        .iter()
        .filter(|(c, _, _)| *c > 0)
        .map(|(c, one, many)| plural(u64::from(*c), one, many))
        .collect();
        parts.join(", ")
    });
    f.summary = match breakdown.filter(|b| !b.is_empty()) {
        _ if limit == 0 => format!(
            "{} has a soft open-file limit of 0 (RLIMIT_NOFILE) and {n} file descriptors \
             open: it cannot open another socket, pipe or file.",
            ctx.subject(Some(p.pid))
        ),
        Some(b) => format!(
            "{} has {n} of its {limit} allowed file descriptors open ({}%): {b}.",
            ctx.subject(Some(p.pid)),
            percent(r)
        ),
        None => format!(
            "{} has {n} of its {limit} allowed file descriptors open ({}%).",
            ctx.subject(Some(p.pid)),
            percent(r)
        ),
    };
    // Point at the kind that dominates: that is where the leak usually is.
    let largest = p.fds.and_then(|k| {
        [
            (
                k.socket,
                "sockets: look at its CLOSE_WAIT and closed-but-held findings",
            ),
            (
                k.pipe,
                "pipes: child processes or pipes created per request and never closed",
            ),
            (k.file, "files opened and never closed"),
            (
                k.anon,
                "eventfds, epoll or timer fds created per task and never closed",
            ),
            (k.other, "other descriptors"),
        ]
        .into_iter()
        .filter(|(c, _)| *c > 0)
        .max_by_key(|(c, _)| *c)
        .map(|(_, hint)| hint)
    });
    let find = match largest {
        Some(h) => format!("Most of them are {h}. "),
        None => String::new(),
    };
    f.advice = format!(
        "At the limit every socket(), accept(), open() and pipe() in {name} fails with EMFILE \
         (\"Too many open files\") and it typically stops serving. {find}Raising the soft \
         limit (ulimit -n, systemd LimitNOFILE=) only buys time if something leaks.",
        name = p.comm
    );
    f
}

/// orphan_pressure (host-wide: the orphan count and net.ipv4.tcp_max_orphans
/// are global, so it is judged once, from sockleak's own namespace when
/// known) and time_wait_buckets (per namespace: net.ipv4.tcp_max_tw_buckets).
/// Both: warning ≥ 0.8 of the limit, critical ≥ 0.95 (configurable).
fn namespace_rules(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    let cfg = ctx.cfg;
    let level = |r: f64, warn: f64, crit: f64| {
        if r >= crit {
            Some(Severity::Critical)
        } else if r >= warn {
            Some(Severity::Warning)
        } else {
            None
        }
    };
    let orphans = ctx
        .snap
        .namespaces
        .iter()
        .filter_map(|n| Some((n, n.sockstat?.tcp_orphan, n.tcp_max_orphans?)))
        .min_by_key(|(n, _, _)| !n.is_own);
    if let Some((_, count, max)) = orphans {
        if let Some((r, sev)) = ratio(count, max)
            .and_then(|r| level(r, cfg.orphan_warn, cfg.orphan_crit).map(|s| (r, s)))
        {
            let mut f = Finding::new(FindingKind::OrphanPressure, sev);
            f.count = count;
            f.limit = Some(max);
            f.ratio = Some(r);
            f.summary = format!(
                "The host has {}, {}% of net.ipv4.tcp_max_orphans ({max}): beyond it the \
                 kernel resets connections instead of closing them gracefully.",
                plural(count, "orphaned TCP socket", "orphaned TCP sockets"),
                percent(r)
            );
            f.advice = "Orphans are sockets their process has closed while the kernel still \
                 finishes the close (FIN_WAIT1, FIN_WAIT2, CLOSING, LAST_ACK). Many of them \
                 mean peers that do not acknowledge or do not close, or a slow network: look \
                 at the fin_wait2_stuck findings, lower net.ipv4.tcp_fin_timeout, or raise \
                 net.ipv4.tcp_max_orphans if memory allows (each orphan can take up to about \
                 64 KB)."
                .to_string();
            out.push(f);
        }
    }
    for n in &ctx.snap.namespaces {
        let (Some(st), Some(max)) = (n.sockstat, n.tcp_max_tw_buckets) else {
            continue;
        };
        let Some((r, sev)) = ratio(st.tcp_tw, max)
            .and_then(|r| level(r, cfg.tw_bucket_warn, cfg.tw_bucket_crit).map(|s| (r, s)))
        else {
            continue;
        };
        let mut f = Finding::new(FindingKind::TimeWaitBuckets, sev);
        f.netns = Some(n.id);
        f.count = st.tcp_tw;
        f.limit = Some(max);
        f.ratio = Some(r);
        let where_ = match ctx.netns_phrase(n.id) {
            s if s.is_empty() => "This host".to_string(),
            s => format!(
                "Network namespace{}",
                s.trim_start_matches(" in network namespace")
            ),
        };
        f.summary = format!(
            "{where_} has {}, {}% of net.ipv4.tcp_max_tw_buckets ({max}): beyond it the kernel \
             skips TIME_WAIT for closing connections.",
            plural(st.tcp_tw, "TIME_WAIT socket", "TIME_WAIT sockets"),
            percent(r)
        );
        f.advice = "When the table is full the kernel logs \"time wait bucket table overflow\" \
             and closes connections without TIME_WAIT, so delayed segments of an old \
             connection can corrupt a new one on the same ports. Fewer short-lived \
             connections fix it: keep-alive and connection pools; let servers close first \
             only where clients cannot reuse connections. Raise net.ipv4.tcp_max_tw_buckets \
             if memory allows."
            .to_string();
        out.push(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first `n` by a whole sort: oldest first, then by cookie; unknown
    /// ages after, by cookie.
    fn by_full_sort(g: &Gathered, n: usize) -> Vec<Cookie> {
        let mut aged = g.aged.clone();
        aged.sort_by(|(a, ca), (b, cb)| b.ms.cmp(&a.ms).then(ca.cmp(cb)));
        let mut unknown = g.unknown.clone();
        unknown.sort();
        aged.iter()
            .map(|(_, c)| *c)
            .chain(unknown)
            .take(n)
            .collect()
    }

    #[test]
    fn oldest_cookies_are_the_first_of_a_whole_sort() {
        let mut g = Gathered::default();
        // Ages with ties, cookies out of order.
        for c in [9u64, 3, 14, 1, 7, 12, 5, 2, 11, 8] {
            let a = Age {
                ms: (c % 4) * 1000,
                source: AgeSource::TcpInfo,
            };
            g.aged.push((a, Cookie(c)));
        }
        g.unknown = vec![Cookie(40), Cookie(30), Cookie(35)];
        for n in [0, 1, 3, 5, 10, 11, 12, 13, 20] {
            let want = by_full_sort(&g, n);
            assert_eq!(g.clone_for_test().oldest_cookies(n), want, "n = {n}");
        }
        assert_eq!(
            g.clone_for_test().oldest_cookies(4),
            vec![Cookie(3), Cookie(7), Cookie(11), Cookie(2)]
        );
    }

    impl Gathered {
        fn clone_for_test(&self) -> Gathered {
            Gathered {
                aged: self.aged.clone(),
                unknown: self.unknown.clone(),
                ..Gathered::default()
            }
        }
    }
}
