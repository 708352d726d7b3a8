//! What `watch` remembers between snapshots: per socket (by cookie) when it
//! was first seen, in which state since when and when it was last seen; per
//! process and per socket group, windowed time series of counts.
//!
//! Memory stays bounded over days: series keep only the samples of the window
//! (and at most `max_points`), a socket is forgotten once it has been missing
//! from `forget_after_samples` snapshots, a group is dropped once its count
//! has been zero for the whole window, a process as soon as it is gone, and
//! at most `max_sockets` cookies are tracked (beyond that, ages fall back to
//! what the kernel says).
//!
//! Everything is keyed so it can be matched with findings: processes by
//! (pid, start time), groups like [`FindingKey`](crate::FindingKey) (owner,
//! namespace, state, role, endpoint), TIME_WAIT destinations like
//! `time_wait_pressure` (namespace, local address, remote endpoint).

use crate::age::{AgeHints, AgeSource};
use crate::blame::{primary_owner, ProcessIndex};
use crate::group::{group_key, GroupKey, ListenerIndex};
use crate::host::NetnsId;
use crate::process::FdKinds;
use crate::snapshot::Snapshot;
use crate::socket::{Cookie, Endpoint, Socket, TcpState};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet, FxHasher};
use serde::Serialize;
use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;

/// Bounds of the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryConfig {
    /// Series keep the samples of this long a window (default 5 min).
    pub window_ms: u64,
    /// ... and at most this many samples (default 300), so a short interval
    /// shortens the window instead of growing memory.
    pub max_points: usize,
    /// At most this many sockets are tracked by cookie (default 1 000 000,
    /// about 80 MB with the map's overhead).
    pub max_sockets: usize,
    /// A socket missing from this many consecutive snapshots is forgotten
    /// (default 2: one missed dump does not reset its age).
    pub forget_after_samples: u64,
    /// At most this many socket groups, and as many TIME_WAIT destinations,
    /// have a series (default 20 000): a burst toward distinct peers must
    /// not grow memory without bound. New ones beyond are counted in
    /// [`History::untracked_groups`].
    pub max_groups: usize,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            window_ms: 5 * 60_000,
            max_points: 300,
            max_sockets: 1_000_000,
            forget_after_samples: 2,
            max_groups: 20_000,
        }
    }
}

/// A process's identity across snapshots: pids are reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ProcKey {
    pub pid: u32,
    pub start_time: u64,
}

/// Sockets per TCP state, indexed by the kernel's state number − 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateCounts(pub [u32; 11]);

impl StateCounts {
    fn index(state: TcpState) -> usize {
        usize::from(state as u8).saturating_sub(1).min(10)
    }

    pub fn get(&self, state: TcpState) -> u32 {
        self.0[Self::index(state)]
    }

    pub fn add(&mut self, state: TcpState) {
        let i = Self::index(state);
        self.0[i] = self.0[i].saturating_add(1);
    }

    pub fn total(&self) -> u32 {
        self.0.iter().sum()
    }

    /// The states with a non-zero count, in kernel order.
    pub fn nonzero(&self) -> impl Iterator<Item = (TcpState, u32)> + '_ {
        TcpState::ALL
            .iter()
            .map(|s| (*s, self.get(*s)))
            .filter(|(_, n)| *n > 0)
    }
}

/// One sample of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcPoint {
    pub t_ms: u64,
    /// TCP sockets it holds, by state (a socket shared by several processes
    /// counts for each, as in the inventory).
    pub states: StateCounts,
    pub fd_count: Option<u32>,
    pub fds: Option<FdKinds>,
}

/// A process over the window.
#[derive(Clone, Debug)]
pub struct ProcHistory {
    pub key: ProcKey,
    pub comm: String,
    pub fd_limit: Option<u64>,
    pub first_seen_ms: u64,
    /// The sample before `last`, when the process was in it.
    pub prev: Option<ProcPoint>,
    pub last: ProcPoint,
    /// Kept only once the process holds TCP sockets or its fds changed:
    /// thousands of idle processes cost one point each, not a series.
    series: Option<VecDeque<ProcPoint>>,
    seen_seq: u64,
}

impl ProcHistory {
    /// The samples of the window, oldest first (only the last one for an
    /// untracked, unchanging process).
    pub fn points(&self) -> Vec<ProcPoint> {
        match &self.series {
            Some(s) => s.iter().copied().collect(),
            None => vec![self.last],
        }
    }

    /// Whether a full series is kept for this process.
    pub fn is_tracked(&self) -> bool {
        self.series.is_some()
    }

    /// `(time, value)` pairs of one measure, skipping samples without it.
    pub fn series_of(&self, f: impl Fn(&ProcPoint) -> Option<f64>) -> Vec<(u64, f64)> {
        match &self.series {
            Some(s) => s.iter().filter_map(|p| Some((p.t_ms, f(p)?))).collect(),
            None => f(&self.last)
                .map(|v| vec![(self.last.t_ms, v)])
                .unwrap_or_default(),
        }
    }
}

/// Who a group series is charged to, and which group: the fields of
/// [`FindingKey`](crate::FindingKey) that identify a socket group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    /// The primary owner (see [`primary_owner`]); `None` for orphans and
    /// sockets whose holder could not be seen.
    pub pid: Option<u32>,
    pub start_time: Option<u64>,
    /// No file at all (inode 0).
    pub orphan: bool,
    pub group: GroupKey,
}

/// A TIME_WAIT destination as `time_wait_pressure` groups it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimeWaitKey {
    pub netns: NetnsId,
    pub local_ip: IpAddr,
    pub remote: Endpoint,
}

/// One sample of a socket group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupPoint {
    pub t_ms: u64,
    pub count: u32,
    /// Sockets that were not in the group at the previous sample.
    pub arrived: u32,
    /// Sockets that were in the group at the previous sample and are not now.
    pub departed: u32,
}

/// A socket group over the window.
#[derive(Clone, Debug, Default)]
pub struct GroupHistory {
    points: VecDeque<GroupPoint>,
    seen_seq: u64,
}

impl GroupHistory {
    pub fn points(&self) -> impl Iterator<Item = &GroupPoint> {
        self.points.iter()
    }

    pub fn last(&self) -> Option<&GroupPoint> {
        self.points.back()
    }

    /// `(time, count)` pairs for the trend estimator.
    pub fn series(&self) -> Vec<(u64, f64)> {
        self.points
            .iter()
            .map(|p| (p.t_ms, f64::from(p.count)))
            .collect()
    }

    /// Sockets seen in the window (present at its first sample, or arrived
    /// since) and how many of them left.
    pub fn turnover(&self) -> crate::trend::Turnover {
        let mut it = self.points.iter();
        let Some(first) = it.next() else {
            return crate::trend::Turnover::default();
        };
        let mut t = crate::trend::Turnover {
            entered: u64::from(first.count),
            left: 0,
        };
        for p in it {
            t.entered += u64::from(p.arrived);
            t.left += u64::from(p.departed);
        }
        t
    }

    /// New sockets per minute over the window (arrivals after its first
    /// sample); `None` for a window of one sample.
    pub fn arrivals_per_min(&self) -> Option<f64> {
        let first = self.points.front()?;
        let last = self.points.back()?;
        let span = last.t_ms.checked_sub(first.t_ms).filter(|s| *s > 0)?;
        let n: u64 = self
            .points
            .iter()
            .skip(1)
            .map(|p| u64::from(p.arrived))
            .sum();
        Some(n as f64 * 60_000.0 / span as f64)
    }
}

/// What is remembered about one socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketRecord {
    /// Unix ms of the first snapshot that saw the socket.
    pub first_seen_ms: u64,
    pub state: TcpState,
    /// Unix ms of the first snapshot that saw it in `state`: a lower bound of
    /// its age in that state, off by at most one interval (or, for sockets
    /// already there when watch started, by however long they had been).
    pub state_since_ms: u64,
    pub last_seen_ms: u64,
    pub prev_state: Option<TcpState>,
    /// State changes seen.
    pub transitions: u32,
    seen_seq: u64,
    /// Hashes of its group and TIME_WAIT destination (0: none), to count
    /// departures without keeping the keys per socket.
    group: u64,
    tw_group: u64,
}

/// The memory of a watch session. Feed it every snapshot with
/// [`History::observe`].
#[derive(Clone, Debug, Default)]
pub struct History {
    cfg: HistoryConfig,
    seq: u64,
    times: VecDeque<u64>,
    sockets: HashMap<Cookie, SocketRecord>,
    procs: HashMap<ProcKey, ProcHistory>,
    groups: HashMap<SeriesKey, GroupHistory>,
    time_wait: HashMap<TimeWaitKey, GroupHistory>,
    untracked: u64,
    untracked_groups: u64,
    /// Per socket of the last snapshot, in its order: what its record said
    /// after the snapshot was taken in ([`AgeHints::state_since_at`]).
    since: Vec<SinceAt>,
}

/// One socket's entry in [`History::since`].
#[derive(Clone, Copy, Debug)]
struct SinceAt {
    cookie: Cookie,
    state: TcpState,
    /// `None`: not tracked.
    since_ms: Option<u64>,
}

/// Records looked up ahead of the main loop at a time ([`History::touch`]).
const TOUCH_AHEAD: usize = 16;

fn hash_of<T: Hash>(t: &T) -> u64 {
    let mut h = FxHasher::default();
    t.hash(&mut h);
    // 0 means "no group" in a record.
    h.finish().max(1)
}

/// The series key a socket belongs to, as the findings engine would charge it.
pub fn series_key(s: &Socket, procs: &ProcessIndex<'_>, listeners: &ListenerIndex) -> SeriesKey {
    let owner = primary_owner(s, procs);
    SeriesKey {
        pid: owner.map(|o| o.pid),
        start_time: owner.and_then(|o| procs.get(o.pid)).map(|p| p.start_time),
        orphan: owner.is_none() && s.is_orphan(),
        group: group_key(s, listeners),
    }
}

/// The TIME_WAIT destination of a socket, with `time_wait_pressure`'s rules:
/// not on a listener's port, inside the ephemeral range when it is known.
fn time_wait_key(s: &Socket, snap: &Snapshot, listeners: &ListenerIndex) -> Option<TimeWaitKey> {
    if s.state != TcpState::TimeWait || listeners.listener_for(s.netns, s.local).is_some() {
        return None;
    }
    let range = snap.namespace(s.netns).and_then(|n| n.ip_local_port_range);
    if range.is_some_and(|r| !r.contains(s.local.port)) {
        return None;
    }
    Some(TimeWaitKey {
        netns: s.netns,
        local_ip: s.local.normalized().ip,
        remote: s.remote.normalized(),
    })
}

impl History {
    pub fn new(cfg: HistoryConfig) -> History {
        History {
            cfg,
            ..History::default()
        }
    }

    pub fn config(&self) -> &HistoryConfig {
        &self.cfg
    }

    /// Snapshots observed so far.
    pub fn samples_seen(&self) -> u64 {
        self.seq
    }

    /// Sample times in the window, oldest first.
    pub fn times(&self) -> impl Iterator<Item = u64> + '_ {
        self.times.iter().copied()
    }

    pub fn socket(&self, cookie: Cookie) -> Option<&SocketRecord> {
        self.sockets.get(&cookie)
    }

    /// Sockets currently remembered.
    pub fn tracked_sockets(&self) -> usize {
        self.sockets.len()
    }

    /// New groups and TIME_WAIT destinations not tracked because
    /// `max_groups` was reached (cumulative).
    pub fn untracked_groups(&self) -> u64 {
        self.untracked_groups
    }

    /// New sockets not tracked because `max_sockets` was reached.
    pub fn untracked_sockets(&self) -> u64 {
        self.untracked
    }

    pub fn process(&self, key: ProcKey) -> Option<&ProcHistory> {
        self.procs.get(&key)
    }

    pub fn processes(&self) -> impl Iterator<Item = &ProcHistory> {
        self.procs.values()
    }

    pub fn group(&self, key: &SeriesKey) -> Option<&GroupHistory> {
        self.groups.get(key)
    }

    pub fn groups(&self) -> impl Iterator<Item = (&SeriesKey, &GroupHistory)> {
        self.groups.iter()
    }

    pub fn time_wait(&self, key: &TimeWaitKey) -> Option<&GroupHistory> {
        self.time_wait.get(key)
    }

    /// Adds one snapshot taken at `now_ms`. Samples should come in time order;
    /// a clock that steps back only makes rates less accurate.
    pub fn observe(&mut self, snap: &Snapshot, now_ms: u64) {
        self.seq += 1;
        let seq = self.seq;
        let baseline = seq == 1;
        self.times.push_back(now_ms);
        let cutoff = now_ms.saturating_sub(self.cfg.window_ms);
        trim(&mut self.times, self.cfg.max_points, |t| *t < cutoff);

        let procs = ProcessIndex::new(&snap.processes);
        let listeners = ListenerIndex::from_snapshot(snap);
        // (count, arrived) per group this sample.
        let mut groups_now: HashMap<SeriesKey, (u32, u32)> = HashMap::default();
        let mut tw_now: HashMap<TimeWaitKey, (u32, u32)> = HashMap::default();
        let mut departed: HashMap<u64, u32> = HashMap::default();
        let mut proc_states: HashMap<u32, StateCounts> = HashMap::default();
        // Cookies seen this sample that are not tracked (`max_sockets`).
        let mut untracked_seen: HashSet<Cookie> = HashSet::default();
        let mut holders: Vec<u32> = Vec::new();
        self.since.clear();
        self.since.reserve(snap.sockets.len());

        for (i, s) in snap.sockets.iter().enumerate() {
            if i % TOUCH_AHEAD == 0 {
                self.touch(snap.sockets.get(i + TOUCH_AHEAD..).unwrap_or(&[]));
            }
            // A dump is not atomic and may list a socket twice: the second
            // time its record already says "seen in this sample" (a set of
            // all cookies per sample cost ~10 ms at 150k). Cookie 0 (no
            // sock_diag) has no identity and is counted but never tracked.
            if s.cookie.0 != 0 {
                let again = match self.sockets.get(&s.cookie) {
                    Some(r) => r.seen_seq == seq,
                    None => {
                        self.sockets.len() >= self.cfg.max_sockets
                            && !untracked_seen.insert(s.cookie)
                    }
                };
                if again {
                    let at = self.since_of(s.cookie);
                    self.since.push(at);
                    continue;
                }
            }
            holders.clear();
            holders.extend(s.owners.iter().map(|o| o.pid));
            holders.sort_unstable();
            holders.dedup();
            for pid in &holders {
                proc_states.entry(*pid).or_default().add(s.state);
            }
            let key = series_key(s, &procs, &listeners);
            let gh = hash_of(&key);
            let twk = time_wait_key(s, snap, &listeners);
            let twh = twk.as_ref().map_or(0, hash_of);
            let mut arrived_group = false;
            let mut arrived_tw = false;
            let mut since_ms = None;
            if s.cookie.0 != 0 {
                match self.sockets.get_mut(&s.cookie) {
                    Some(r) => {
                        let was_present = r.seen_seq + 1 == seq;
                        if r.state != s.state {
                            r.prev_state = Some(r.state);
                            r.state = s.state;
                            r.state_since_ms = now_ms;
                            r.transitions = r.transitions.saturating_add(1);
                        }
                        if !was_present || r.group != gh {
                            arrived_group = true;
                            if was_present {
                                *departed.entry(r.group).or_default() += 1;
                            }
                        }
                        if twh != 0 && (!was_present || r.tw_group != twh) {
                            arrived_tw = true;
                        }
                        if was_present && r.tw_group != 0 && r.tw_group != twh {
                            *departed.entry(r.tw_group).or_default() += 1;
                        }
                        r.group = gh;
                        r.tw_group = twh;
                        r.last_seen_ms = now_ms;
                        r.seen_seq = seq;
                        since_ms = Some(r.state_since_ms);
                    }
                    None => {
                        if self.sockets.len() < self.cfg.max_sockets {
                            self.sockets.insert(
                                s.cookie,
                                SocketRecord {
                                    first_seen_ms: now_ms,
                                    state: s.state,
                                    state_since_ms: now_ms,
                                    last_seen_ms: now_ms,
                                    prev_state: None,
                                    transitions: 0,
                                    seen_seq: seq,
                                    group: gh,
                                    tw_group: twh,
                                },
                            );
                            since_ms = Some(now_ms);
                        } else {
                            self.untracked += 1;
                        }
                        arrived_group = !baseline;
                        arrived_tw = !baseline && twh != 0;
                    }
                }
            }
            self.since.push(SinceAt {
                cookie: s.cookie,
                state: s.state,
                since_ms,
            });
            // TIME_WAIT has no owner: its group would be one "client" row
            // per peer port (a burst of 5.4k short connections made 5.4k
            // series). TIME_WAIT is followed per destination below.
            if s.state != TcpState::TimeWait {
                let g = groups_now.entry(key).or_default();
                g.0 += 1;
                g.1 += u32::from(arrived_group);
            }
            if let Some(k) = twk {
                let t = tw_now.entry(k).or_default();
                t.0 += 1;
                t.1 += u32::from(arrived_tw);
            }
        }

        // Sockets not in this snapshot: they left their group now (if they
        // were in the previous one), and are forgotten after a grace period.
        let forget = self.cfg.forget_after_samples.max(1);
        self.sockets.retain(|_, r| {
            if r.seen_seq == seq {
                return true;
            }
            if r.seen_seq + 1 == seq {
                *departed.entry(r.group).or_default() += 1;
                if r.tw_group != 0 {
                    *departed.entry(r.tw_group).or_default() += 1;
                }
            }
            seq - r.seen_seq < forget
        });

        let cfg = &self.cfg;
        // The window is the samples kept (`max_points` may shorten it).
        let start = self.times.front().copied().unwrap_or(now_ms);
        self.untracked_groups += update_groups(
            &mut self.groups,
            groups_now,
            &departed,
            now_ms,
            start,
            seq,
            cfg,
        );
        self.untracked_groups += update_groups(
            &mut self.time_wait,
            tw_now,
            &departed,
            now_ms,
            start,
            seq,
            cfg,
        );
        self.update_processes(snap, &proc_states, now_ms);
        // A group whose owner is gone has nothing left to report.
        let procs = &self.procs;
        self.groups.retain(|k, _| match (k.pid, k.start_time) {
            (Some(pid), Some(start_time)) => procs.contains_key(&ProcKey { pid, start_time }),
            _ => true,
        });
    }

    /// The [`SinceAt`] of a cookie's record as it stands.
    fn since_of(&self, cookie: Cookie) -> SinceAt {
        match self.sockets.get(&cookie) {
            Some(r) => SinceAt {
                cookie,
                state: r.state,
                since_ms: Some(r.state_since_ms),
            },
            None => SinceAt {
                cookie,
                state: TcpState::Close,
                since_ms: None,
            },
        }
    }

    /// Looks up the records of the sockets after the current one before
    /// they are needed: at 150k sockets nearly every lookup misses the
    /// cache, and lookups that do not wait for each other overlap their
    /// misses, which one lookup per turn of the main loop cannot (the loop
    /// took ~35 % less time, measured).
    fn touch(&self, next: &[Socket]) {
        for s in next.iter().take(TOUCH_AHEAD) {
            std::hint::black_box(self.sockets.get(&s.cookie).map(|r| r.seen_seq));
        }
    }

    fn update_processes(
        &mut self,
        snap: &Snapshot,
        states: &HashMap<u32, StateCounts>,
        now_ms: u64,
    ) {
        let seq = self.seq;
        let cutoff = now_ms.saturating_sub(self.cfg.window_ms);
        let max = self.cfg.max_points;
        for p in &snap.processes {
            let key = ProcKey {
                pid: p.pid,
                start_time: p.start_time,
            };
            let point = ProcPoint {
                t_ms: now_ms,
                states: states.get(&p.pid).copied().unwrap_or_default(),
                fd_count: p.fd_count,
                fds: p.fds,
            };
            match self.procs.get_mut(&key) {
                Some(h) => {
                    let changed = h.last.states != point.states
                        || h.last.fd_count != point.fd_count
                        || h.last.fds != point.fds;
                    if h.series.is_none() && (changed || point.states.total() > 0) {
                        // Its earlier samples equalled `last`: start from it.
                        h.series = Some(VecDeque::from([h.last]));
                    }
                    if let Some(s) = &mut h.series {
                        s.push_back(point);
                        trim(s, max, |q| q.t_ms < cutoff);
                    }
                    h.prev = Some(h.last);
                    h.last = point;
                    if h.comm != p.comm {
                        h.comm.clone_from(&p.comm);
                    }
                    h.fd_limit = p.fd_limit;
                    h.seen_seq = seq;
                }
                None => {
                    let series = (point.states.total() > 0).then(|| VecDeque::from([point]));
                    self.procs.insert(
                        key,
                        ProcHistory {
                            key,
                            comm: p.comm.clone(),
                            fd_limit: p.fd_limit,
                            first_seen_ms: now_ms,
                            prev: None,
                            last: point,
                            series,
                            seen_seq: seq,
                        },
                    );
                }
            }
        }
        self.procs.retain(|_, h| h.seen_seq == seq);
    }
}

/// Appends this sample's point to every group seen, and one zero point to
/// a group when it empties (idle series are sparse: no zero per sample),
/// trims the window and drops groups that stayed empty for all of it.
/// Returns how many new groups were not tracked (`max_groups`).
fn update_groups<K: Hash + Eq + Copy>(
    groups: &mut HashMap<K, GroupHistory>,
    now: HashMap<K, (u32, u32)>,
    departed: &HashMap<u64, u32>,
    now_ms: u64,
    window_start_ms: u64,
    seq: u64,
    cfg: &HistoryConfig,
) -> u64 {
    let cutoff = now_ms.saturating_sub(cfg.window_ms).max(window_start_ms);
    let mut untracked = 0;
    for (key, (count, arrived)) in now {
        if !groups.contains_key(&key) && groups.len() >= cfg.max_groups {
            untracked += 1;
            continue;
        }
        let g = groups.entry(key).or_default();
        g.points.push_back(GroupPoint {
            t_ms: now_ms,
            count,
            arrived,
            departed: departed.get(&hash_of(&key)).copied().unwrap_or(0),
        });
        g.seen_seq = seq;
    }
    groups.retain(|key, g| {
        if g.seen_seq != seq {
            let left = departed.get(&hash_of(key)).copied().unwrap_or(0);
            if left > 0 || g.points.back().is_some_and(|p| p.count > 0) {
                g.points.push_back(GroupPoint {
                    t_ms: now_ms,
                    count: 0,
                    arrived: 0,
                    departed: left,
                });
            }
        }
        trim(&mut g.points, cfg.max_points, |p| p.t_ms < cutoff);
        g.points.iter().any(|p| p.count > 0)
    });
    untracked
}

/// Drops old entries from the front: those `too_old` says, and any beyond
/// `max` (always keeping the newest).
fn trim<T>(q: &mut VecDeque<T>, max: usize, too_old: impl Fn(&T) -> bool) {
    while q.len() > 1 && q.front().is_some_and(&too_old) {
        q.pop_front();
    }
    while q.len() > max.max(1) {
        q.pop_front();
    }
}

/// Ages from history: the first snapshot that saw the socket in its current
/// state (a lower bound).
impl AgeHints for History {
    fn state_since(&self, cookie: Cookie, state: TcpState) -> Option<(u64, AgeSource)> {
        self.sockets
            .get(&cookie)
            .filter(|r| r.state == state)
            .map(|r| (r.state_since_ms, AgeSource::FirstSeen))
    }

    /// From the table of the last snapshot when `index` holds this socket
    /// there (the same answer as by cookie, without the cache miss); by
    /// cookie otherwise (another snapshot).
    fn state_since_at(&self, index: usize, s: &Socket) -> Option<(u64, AgeSource)> {
        match self.since.get(index) {
            Some(e) if e.cookie == s.cookie && s.cookie.0 != 0 => e
                .since_ms
                .filter(|_| e.state == s.state)
                .map(|since| (since, AgeSource::FirstSeen)),
            _ => self.state_since(s.cookie, s.state),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::Role;
    use crate::process::Process;
    use crate::test_support::{lo, sock};
    use std::net::Ipv4Addr;

    const T0: u64 = 1_700_000_000_000;

    fn process(pid: u32, fds: u32) -> Process {
        Process {
            pid,
            ppid: 1,
            start_time: 77,
            comm: "srv".into(),
            cmdline: "srv".into(),
            uid: 0,
            netns: 1,
            ns_pid: None,
            fd_count: Some(fds),
            fd_limit: Some(1024),
            fd_limit_hard: Some(4096),
            fds: Some(FdKinds {
                socket: fds,
                ..FdKinds::default()
            }),
            closed_but_held: None,
        }
    }

    /// A server on :9530 holding `cw` CLOSE_WAIT sockets with cookies from
    /// `first_cookie`.
    fn snap(t: u64, cookies: impl IntoIterator<Item = u64>) -> Snapshot {
        let mut sockets = vec![sock(1, TcpState::Listen, 9530, 0, Some(10))];
        for c in cookies {
            sockets.push(sock(
                c,
                TcpState::CloseWait,
                9530,
                40_000 + c as u16,
                Some(10),
            ));
        }
        let n = sockets.len() as u32;
        Snapshot {
            taken_at_ms: t,
            sockets,
            processes: vec![process(10, n)],
            ..Snapshot::default()
        }
    }

    fn cw_key() -> SeriesKey {
        SeriesKey {
            pid: Some(10),
            start_time: Some(77),
            orphan: false,
            group: GroupKey {
                netns: 1,
                state: TcpState::CloseWait,
                role: Role::Server,
                endpoint: lo(9530),
            },
        }
    }

    #[test]
    fn first_seen_and_state_changes_are_remembered_by_cookie() {
        let mut h = History::default();
        let mut s = snap(T0, [100]);
        s.sockets
            .push(sock(200, TcpState::Established, 9530, 50_000, Some(10)));
        h.observe(&s, T0);
        h.observe(&snap(T0 + 1000, [100, 200]), T0 + 1000);
        let r = h.socket(Cookie(200)).expect("record");
        assert_eq!(r.first_seen_ms, T0);
        assert_eq!(r.state, TcpState::CloseWait);
        assert_eq!(r.prev_state, Some(TcpState::Established));
        assert_eq!(r.state_since_ms, T0 + 1000);
        assert_eq!(r.transitions, 1);
        assert_eq!(
            h.state_since(Cookie(100), TcpState::CloseWait),
            Some((T0, AgeSource::FirstSeen))
        );
        assert_eq!(h.state_since(Cookie(100), TcpState::Established), None);
        // The move ESTABLISHED -> CLOSE_WAIT is an arrival in the CLOSE_WAIT group.
        let g = h.group(&cw_key()).expect("group");
        assert_eq!(g.last().map(|p| (p.count, p.arrived)), Some((2, 1)));
    }

    #[test]
    fn departures_turnover_and_forgetting() {
        let cfg = HistoryConfig {
            forget_after_samples: 2,
            ..HistoryConfig::default()
        };
        let mut h = History::new(cfg);
        h.observe(&snap(T0, [100, 101]), T0);
        h.observe(&snap(T0 + 1000, [101, 102]), T0 + 1000);
        let g = h.group(&cw_key()).expect("group");
        assert_eq!(
            g.last().map(|p| (p.count, p.arrived, p.departed)),
            Some((2, 1, 1))
        );
        assert_eq!(
            g.turnover(),
            crate::trend::Turnover {
                entered: 3,
                left: 1
            }
        );
        // 100 is missing once: still remembered; twice: forgotten.
        assert!(h.socket(Cookie(100)).is_some());
        h.observe(&snap(T0 + 2000, [101, 102]), T0 + 2000);
        assert!(h.socket(Cookie(100)).is_none());
        assert_eq!(h.tracked_sockets(), 3);
    }

    #[test]
    fn series_are_windowed_and_empty_groups_dropped() {
        let cfg = HistoryConfig {
            window_ms: 10_000,
            max_points: 5,
            ..HistoryConfig::default()
        };
        let mut h = History::new(cfg);
        for i in 0..20u64 {
            let t = T0 + i * 1000;
            let cookies = if i < 10 {
                (100..100 + i).collect()
            } else {
                vec![]
            };
            h.observe(&snap(t, cookies), t);
        }
        assert!(h.times().count() <= 5);
        let p = h
            .process(ProcKey {
                pid: 10,
                start_time: 77,
            })
            .expect("process");
        assert!(p.points().len() <= 5);
        assert!(p.is_tracked());
        // CLOSE_WAIT has been zero for the whole window: the group is gone.
        assert!(h.group(&cw_key()).is_none());
        assert!(h.tracked_sockets() <= 2);
    }

    #[test]
    fn idle_processes_keep_one_point_and_gone_processes_are_dropped() {
        let mut h = History::default();
        let mut s = snap(T0, []);
        let mut idle = process(20, 4);
        idle.start_time = 5;
        s.processes.push(idle.clone());
        h.observe(&s, T0);
        let key = ProcKey {
            pid: 20,
            start_time: 5,
        };
        assert!(!h.process(key).expect("idle").is_tracked());
        // Its fds change: a series starts from the previous point.
        let mut s2 = snap(T0 + 1000, []);
        idle.fd_count = Some(6);
        s2.processes.push(idle);
        h.observe(&s2, T0 + 1000);
        let p = h.process(key).expect("idle");
        assert!(p.is_tracked());
        assert_eq!(
            p.series_of(|q| q.fd_count.map(f64::from)),
            vec![(T0, 4.0), (T0 + 1000, 6.0)]
        );
        assert_eq!(p.prev.and_then(|q| q.fd_count), Some(4));
        h.observe(&snap(T0 + 2000, []), T0 + 2000);
        assert!(h.process(key).is_none());
    }

    /// Unowned TIME_WAIT toward `n` distinct peers, beside the server.
    fn with_time_wait(t: u64, n: u16) -> Snapshot {
        let mut s = snap(t, [100]);
        for i in 0..n {
            // Local ephemeral ports, each toward another peer port.
            s.sockets.push(sock(
                10_000 + u64::from(i),
                TcpState::TimeWait,
                33_000 + i,
                20_000 + i,
                None,
            ));
        }
        s
    }

    #[test]
    fn time_wait_makes_no_group_series_and_destinations_are_capped() {
        let mut h = History::new(HistoryConfig {
            max_groups: 50,
            ..HistoryConfig::default()
        });
        h.observe(&with_time_wait(T0, 200), T0);
        // Only the server's CLOSE_WAIT and LISTEN groups: no series per
        // TIME_WAIT peer port.
        assert_eq!(h.groups().count(), 2);
        assert!(h.groups().all(|(k, _)| k.group.state != TcpState::TimeWait));
        // 200 destinations, 50 followed, 150 counted as not tracked.
        assert_eq!(h.time_wait.len(), 50);
        assert_eq!(h.untracked_groups(), 150);
    }

    #[test]
    fn idle_series_are_sparse_and_dropped_after_the_window() {
        let mut h = History::new(HistoryConfig {
            window_ms: 10_000,
            ..HistoryConfig::default()
        });
        h.observe(&with_time_wait(T0, 20), T0);
        // The burst is gone: each destination gets one zero point, not one
        // per sample, and is dropped once the window has passed.
        for i in 1..=5 {
            h.observe(&snap(T0 + i * 1000, [100]), T0 + i * 1000);
        }
        assert_eq!(h.time_wait.len(), 20);
        assert!(
            h.time_wait.values().all(|g| g.points.len() == 2),
            "one point, one zero"
        );
        for i in 6..=12 {
            h.observe(&snap(T0 + i * 1000, [100]), T0 + i * 1000);
        }
        assert_eq!(h.time_wait.len(), 0);
        // The live group keeps a point per sample.
        assert_eq!(h.group(&cw_key()).map(|g| g.points.len()), Some(11));
    }

    #[test]
    fn a_group_is_dropped_with_its_owner() {
        let mut h = History::default();
        h.observe(&snap(T0, 100..105), T0);
        assert!(h.group(&cw_key()).is_some());
        // The process exited; its sockets went with it.
        let gone = Snapshot {
            taken_at_ms: T0 + 1000,
            ..Snapshot::default()
        };
        h.observe(&gone, T0 + 1000);
        assert!(h.group(&cw_key()).is_none());
        assert_eq!(h.groups().count(), 0);
    }

    #[test]
    fn socket_cap_bounds_memory() {
        let cfg = HistoryConfig {
            max_sockets: 3,
            ..HistoryConfig::default()
        };
        let mut h = History::new(cfg);
        h.observe(&snap(T0, 100..110), T0);
        assert_eq!(h.tracked_sockets(), 3);
        assert_eq!(h.untracked_sockets(), 8);
        // Counts are still complete.
        assert_eq!(
            h.group(&cw_key()).and_then(|g| g.last()).map(|p| p.count),
            Some(10)
        );
    }

    #[test]
    fn a_socket_listed_twice_counts_once_tracked_or_not() {
        // Cookies 100..104 with 101 and 103 listed a second time (a dump is
        // not atomic), below and beyond the tracking cap.
        let listed = [100, 101, 102, 101, 103, 104, 103];
        for max_sockets in [1_000, 3] {
            let mut h = History::new(HistoryConfig {
                max_sockets,
                ..HistoryConfig::default()
            });
            for (i, t) in [T0, T0 + 1000].into_iter().enumerate() {
                h.observe(&snap(t, listed), t);
                assert_eq!(
                    h.group(&cw_key()).and_then(|g| g.last()).map(|p| p.count),
                    Some(5),
                    "cap {max_sockets}, sample {i}"
                );
            }
            let p = h
                .process(ProcKey {
                    pid: 10,
                    start_time: 77,
                })
                .expect("srv");
            let last = p.points().last().cloned().expect("point");
            // The listener and five distinct CLOSE_WAIT sockets.
            assert_eq!(last.states.get(TcpState::CloseWait), 5, "cap {max_sockets}");
            assert_eq!(last.states.get(TcpState::Listen), 1, "cap {max_sockets}");
        }
    }

    #[test]
    fn ages_by_position_answer_as_ages_by_cookie() {
        // Duplicates, a state change, a cookie-less socket, sockets beyond
        // the tracking cap, and clocks starting at 0.
        let listed = [100, 101, 102, 101, 103, 104, 103];
        for max_sockets in [1_000, 4] {
            let mut h = History::new(HistoryConfig {
                max_sockets,
                ..HistoryConfig::default()
            });
            for (n, t) in [0, 1000, 2000].into_iter().enumerate() {
                let mut sn = snap(t, listed);
                if n == 2 {
                    sn.sockets[2].state = TcpState::LastAck;
                }
                sn.sockets.push(sock(0, TcpState::TimeWait, 5000, 80, None));
                h.observe(&sn, t);
                for (i, s) in sn.sockets.iter().enumerate() {
                    let by_cookie = h.state_since(s.cookie, s.state);
                    assert_eq!(
                        h.state_since_at(i, s),
                        by_cookie,
                        "cap {max_sockets}, sample {n}, socket {i}"
                    );
                }
                // Positions of another snapshot fall back to the cookie.
                let other = snap(t, [104, 100]);
                for (i, s) in other.sockets.iter().enumerate() {
                    assert_eq!(h.state_since_at(i, s), h.state_since(s.cookie, s.state));
                }
            }
            assert_eq!(
                h.state_since_at(2, &snap(0, listed).sockets[2]),
                None,
                "cap {max_sockets}: 101 is in LAST_ACK since the last sample"
            );
            assert!(h.state_since_at(1, &snap(0, listed).sockets[1]).is_some());
        }
    }

    #[test]
    fn time_wait_destinations_count_arrivals() {
        let mut h = History::default();
        let tw = |cookies: std::ops::Range<u64>, t: u64| Snapshot {
            taken_at_ms: t,
            sockets: cookies
                .map(|c| sock(c, TcpState::TimeWait, 30_000 + c as u16, 80, None))
                .collect(),
            ..Snapshot::default()
        };
        // Cookie 0 means "no cookie": start at 1.
        h.observe(&tw(1..11, T0), T0);
        h.observe(&tw(1..21, T0 + 1000), T0 + 1000);
        h.observe(&tw(6..31, T0 + 2000), T0 + 2000);
        let key = TimeWaitKey {
            netns: 1,
            local_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            remote: lo(80),
        };
        let g = h.time_wait(&key).expect("tw");
        let pts: Vec<(u32, u32, u32)> = g
            .points()
            .map(|p| (p.count, p.arrived, p.departed))
            .collect();
        assert_eq!(pts, vec![(10, 0, 0), (20, 10, 0), (25, 10, 5)]);
        assert_eq!(g.arrivals_per_min(), Some(20.0 * 60_000.0 / 2000.0));
    }
}
