//! Regression check arithmetic for `sockleak check`: what a target held
//! before and after a load, the deltas by state, group and fd kind, the
//! threshold checks and the verdict. Pure: snapshots in, numbers and
//! sentences out.
//!
//! A target is a set of pids (a server and its workers); its sockets are the
//! ones any of those pids holds, counted once per cookie. Sockets nobody owns
//! (TIME_WAIT, orphaned FIN_WAIT2) belong to no process and are not counted:
//! they free themselves and cost the target no descriptor.

use crate::group::{group_key, GroupKey, ListenerIndex};
use crate::process::FdKinds;
use crate::snapshot::Snapshot;
use crate::socket::TcpState;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};

/// What a target held in one snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// The target's pids found in the snapshot, sorted.
    pub pids: Vec<u32>,
    /// Sockets held by the target, by state.
    pub states: BTreeMap<TcpState, u64>,
    /// Sockets by (state, role, endpoint) group; not serialised (see
    /// [`Regression::groups`]).
    #[serde(skip)]
    pub groups: BTreeMap<GroupKey, u64>,
    /// Open fds by kind, summed over the target's processes.
    pub fds: FdKinds,
    /// Open fds, summed.
    pub fd_total: u64,
    /// TCP socket fds in no TCP table (reset connections never closed).
    pub closed_but_held: u64,
    /// Processes of the target whose fd table could not be read: their fds
    /// are missing from the sums.
    pub fds_unknown: u32,
}

impl Counts {
    /// Sockets in `state`.
    pub fn state(&self, state: TcpState) -> u64 {
        self.states.get(&state).copied().unwrap_or(0)
    }

    /// Every socket the target holds, any state.
    pub fn sockets(&self) -> u64 {
        self.states.values().sum()
    }
}

/// Counts what the processes `pids` hold in `snap`.
pub fn target_counts(snap: &Snapshot, pids: &[u32]) -> Counts {
    let wanted: HashSet<u32> = pids.iter().copied().collect();
    let listeners = ListenerIndex::from_snapshot(snap);
    let mut c = Counts::default();
    let mut seen = HashSet::new();
    for s in &snap.sockets {
        if !s.owners.iter().any(|o| wanted.contains(&o.pid)) {
            continue;
        }
        // A dump is not atomic: a socket may be listed twice (cookie 0 means
        // the collector had no cookies, and then rows are distinct).
        if s.cookie.0 != 0 && !seen.insert(s.cookie) {
            continue;
        }
        *c.states.entry(s.state).or_default() += 1;
        *c.groups.entry(group_key(s, &listeners)).or_default() += 1;
    }
    for p in snap.processes.iter().filter(|p| wanted.contains(&p.pid)) {
        c.pids.push(p.pid);
        match p.fds {
            Some(k) => {
                c.fds.socket += k.socket;
                c.fds.pipe += k.pipe;
                c.fds.file += k.file;
                c.fds.anon += k.anon;
                c.fds.other += k.other;
            }
            None => c.fds_unknown += 1,
        }
        c.fd_total += u64::from(p.fd_count.unwrap_or(0));
        c.closed_but_held += u64::from(p.closed_but_held.unwrap_or(0));
    }
    c.pids.sort_unstable();
    c
}

/// Limits of a check. `None` means "not checked".
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Thresholds {
    /// New CLOSE_WAIT sockets allowed (default 0: every one is a connection
    /// the peer closed and the target did not).
    pub max_close_wait: u64,
    /// New closed-but-held sockets allowed (default 0).
    pub max_closed_but_held: u64,
    /// Growth of the open fd count allowed (default 2, for one-off lazy
    /// initialisation on the first requests: a log file, an epoll instance,
    /// a resolver socket). A per-request leak exceeds it after 3 requests.
    pub max_fd_growth: u64,
    /// Growth of socket fds allowed.
    pub max_socket_growth: Option<u64>,
    /// Growth of pipe fds allowed.
    pub max_pipe_growth: Option<u64>,
    /// Growth of ESTABLISHED sockets allowed (connections the target keeps
    /// open after the load ended: pools, or clients it never lets go).
    pub max_established_growth: Option<u64>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            max_close_wait: 0,
            max_closed_but_held: 0,
            max_fd_growth: 2,
            max_socket_growth: None,
            max_pipe_growth: None,
            max_established_growth: None,
        }
    }
}

/// How one check ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    /// The check could not be evaluated (e.g. the fd table was unreadable).
    Error,
}

/// One threshold check: `after - before` compared with `limit`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CheckResult {
    /// Stable name: `close_wait`, `closed_but_held`, `fd_growth`,
    /// `socket_growth`, `pipe_growth`, `established_growth`, and those the
    /// caller adds (`target_alive`, `load`).
    pub name: String,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// One plain sentence.
    pub message: String,
}

impl CheckResult {
    /// A check the caller decides itself (target alive, load healthy).
    pub fn custom(name: &str, outcome: Outcome, message: String) -> CheckResult {
        CheckResult {
            name: name.to_string(),
            outcome,
            before: None,
            after: None,
            delta: None,
            limit: None,
            message,
        }
    }
}

/// The verdict of a whole check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    Error,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Error => "ERROR",
        }
    }
}

/// A (state, role, endpoint) group whose count changed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupDelta {
    pub state: TcpState,
    pub role: crate::group::Role,
    pub endpoint: crate::socket::Endpoint,
    pub netns: u64,
    pub before: u64,
    pub after: u64,
    pub delta: i64,
}

/// Everything `check` concludes from its two snapshots.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Regression {
    pub baseline: Counts,
    #[serde(rename = "final")]
    pub final_: Counts,
    /// after − before per state, only states that changed.
    pub states: BTreeMap<TcpState, i64>,
    /// after − before per fd kind (socket, pipe, file, anon, other, total).
    pub fds: BTreeMap<&'static str, i64>,
    /// Groups that changed, largest growth first.
    pub groups: Vec<GroupDelta>,
    pub checks: Vec<CheckResult>,
}

fn diff(before: u64, after: u64) -> i64 {
    let d = i128::from(after) - i128::from(before);
    i64::try_from(d).unwrap_or(if d < 0 { i64::MIN } else { i64::MAX })
}

/// A growth check: passes when `after - before <= limit`.
fn growth_check(name: &str, what: &str, before: u64, after: u64, limit: u64) -> CheckResult {
    let delta = diff(before, after);
    let passed = delta <= i64::try_from(limit).unwrap_or(i64::MAX);
    let message = if passed {
        format!("{what}: {before} before, {after} after ({delta:+}), within the limit of {limit}")
    } else {
        format!("{delta} more {what} than before ({before} → {after}); at most {limit} allowed")
    };
    CheckResult {
        name: name.to_string(),
        outcome: if passed { Outcome::Pass } else { Outcome::Fail },
        before: Some(before),
        after: Some(after),
        delta: Some(delta),
        limit: Some(limit),
        message,
    }
}

/// Compares two counts of the same target under `th`.
pub fn compare(baseline: Counts, final_: Counts, th: &Thresholds) -> Regression {
    let mut states = BTreeMap::new();
    for s in TcpState::ALL {
        let d = diff(baseline.state(s), final_.state(s));
        if d != 0 {
            states.insert(s, d);
        }
    }
    let (b, a) = (&baseline.fds, &final_.fds);
    let mut fds = BTreeMap::new();
    fds.insert("socket", diff(b.socket.into(), a.socket.into()));
    fds.insert("pipe", diff(b.pipe.into(), a.pipe.into()));
    fds.insert("file", diff(b.file.into(), a.file.into()));
    fds.insert("anon", diff(b.anon.into(), a.anon.into()));
    fds.insert("other", diff(b.other.into(), a.other.into()));
    fds.insert("total", diff(baseline.fd_total, final_.fd_total));

    let mut keys: Vec<&GroupKey> = baseline.groups.keys().collect();
    keys.extend(final_.groups.keys());
    keys.sort();
    keys.dedup();
    let mut groups: Vec<GroupDelta> = keys
        .into_iter()
        .filter_map(|k| {
            let before = baseline.groups.get(k).copied().unwrap_or(0);
            let after = final_.groups.get(k).copied().unwrap_or(0);
            (before != after).then(|| GroupDelta {
                state: k.state,
                role: k.role,
                endpoint: k.endpoint,
                netns: k.netns,
                before,
                after,
                delta: diff(before, after),
            })
        })
        .collect();
    groups.sort_by(|x, y| y.delta.cmp(&x.delta).then(x.state.cmp(&y.state)));

    let mut checks = vec![
        growth_check(
            "close_wait",
            "CLOSE_WAIT sockets",
            baseline.state(TcpState::CloseWait),
            final_.state(TcpState::CloseWait),
            th.max_close_wait,
        ),
        growth_check(
            "closed_but_held",
            "closed-but-held sockets",
            baseline.closed_but_held,
            final_.closed_but_held,
            th.max_closed_but_held,
        ),
    ];
    let fd_check = |name: &str, what: &str, before: u64, after: u64, limit: u64| {
        if baseline.fds_unknown > 0 || final_.fds_unknown > 0 {
            CheckResult {
                limit: Some(limit),
                ..CheckResult::custom(
                    name,
                    Outcome::Error,
                    format!("{what}: the target's fd table could not be read"),
                )
            }
        } else {
            growth_check(name, what, before, after, limit)
        }
    };
    checks.push(fd_check(
        "fd_growth",
        "open fds",
        baseline.fd_total,
        final_.fd_total,
        th.max_fd_growth,
    ));
    if let Some(l) = th.max_socket_growth {
        checks.push(fd_check(
            "socket_growth",
            "socket fds",
            b.socket.into(),
            a.socket.into(),
            l,
        ));
    }
    if let Some(l) = th.max_pipe_growth {
        checks.push(fd_check(
            "pipe_growth",
            "pipe fds",
            b.pipe.into(),
            a.pipe.into(),
            l,
        ));
    }
    if let Some(l) = th.max_established_growth {
        checks.push(growth_check(
            "established_growth",
            "ESTABLISHED sockets",
            baseline.state(TcpState::Established),
            final_.state(TcpState::Established),
            l,
        ));
    }
    Regression {
        baseline,
        final_,
        states,
        fds,
        groups,
        checks,
    }
}

impl Regression {
    /// FAIL when any check failed; ERROR when none failed but one could not
    /// be evaluated; PASS otherwise.
    pub fn verdict(&self) -> Verdict {
        if self.checks.iter().any(|c| c.outcome == Outcome::Fail) {
            Verdict::Fail
        } else if self.checks.iter().any(|c| c.outcome == Outcome::Error) {
            Verdict::Error
        } else {
            Verdict::Pass
        }
    }

    /// The one-line result: "after 1000 requests the target holds 781 more
    /// CLOSE_WAIT sockets and 1562 more pipes: FAIL". `after` names the load
    /// ("1000 requests", "the load command").
    pub fn headline(&self, after: &str) -> String {
        let mut parts = Vec::new();
        let cw = self.states.get(&TcpState::CloseWait).copied().unwrap_or(0);
        if cw > 0 {
            parts.push(format!("{cw} more CLOSE_WAIT {}", plural(cw, "socket")));
        }
        let cbh = diff(self.baseline.closed_but_held, self.final_.closed_but_held);
        if cbh > 0 {
            parts.push(format!(
                "{cbh} more closed-but-held {}",
                plural(cbh, "socket")
            ));
        }
        let est = self
            .states
            .get(&TcpState::Established)
            .copied()
            .unwrap_or(0);
        if est > 0 {
            parts.push(format!("{est} more ESTABLISHED {}", plural(est, "socket")));
        }
        let pipes = self.fds.get("pipe").copied().unwrap_or(0);
        if pipes > 0 {
            parts.push(format!("{pipes} more {}", plural(pipes, "pipe")));
        }
        let total = self.fds.get("total").copied().unwrap_or(0);
        // Only mention fds beyond what the parts above already explain.
        let explained = cw.max(0) + cbh.max(0) + est.max(0) + pipes.max(0);
        if total > explained {
            parts.push(format!("{total} more open {} in all", plural(total, "fd")));
        }
        let holds = match parts.len() {
            0 => "no more sockets or fds than before".to_string(),
            1 => parts.remove(0),
            _ => {
                let last = parts.pop().unwrap_or_default();
                format!("{} and {last}", parts.join(", "))
            }
        };
        let verdict = self.verdict().as_str();
        let failed: Vec<&str> = self
            .checks
            .iter()
            .filter(|c| c.outcome != Outcome::Pass && !is_growth(&c.name))
            .map(|c| c.message.as_str())
            .collect();
        if failed.is_empty() {
            format!("after {after} the target holds {holds}: {verdict}")
        } else {
            format!(
                "after {after} the target holds {holds}; {}: {verdict}",
                failed.join("; ")
            )
        }
    }
}

/// Checks computed here (the headline already tells their numbers).
fn is_growth(name: &str) -> bool {
    matches!(
        name,
        "close_wait"
            | "closed_but_held"
            | "fd_growth"
            | "socket_growth"
            | "pipe_growth"
            | "established_growth"
    )
}

fn plural(n: i64, word: &str) -> String {
    if n == 1 {
        word.to_string()
    } else {
        format!("{word}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::Process;
    use crate::socket::Socket;
    use crate::test_support::{self, lo as ep};

    /// Held by `pid`, nothing queued.
    fn sock(cookie: u64, state: TcpState, local: u16, remote: u16, pid: u32) -> Socket {
        Socket {
            recv_q: 0,
            ..test_support::sock(cookie, state, local, remote, Some(pid))
        }
    }

    fn proc_(pid: u32, fds: FdKinds, cbh: u32) -> Process {
        Process {
            pid,
            ppid: 1,
            start_time: 1,
            comm: "server".into(),
            cmdline: "server".into(),
            uid: 0,
            netns: 1,
            ns_pid: None,
            fd_count: Some(fds.total()),
            fd_limit: Some(1024),
            fd_limit_hard: Some(4096),
            fds: Some(fds),
            closed_but_held: Some(cbh),
        }
    }

    fn snap(sockets: Vec<Socket>, processes: Vec<Process>) -> Snapshot {
        Snapshot {
            sockets,
            processes,
            listeners: vec![(1, ep(8080))],
            ..Snapshot::default()
        }
    }

    fn fds(socket: u32, pipe: u32, file: u32) -> FdKinds {
        FdKinds {
            socket,
            pipe,
            file,
            anon: 0,
            other: 0,
        }
    }

    fn leaky_pair() -> (Counts, Counts) {
        let base = snap(
            vec![sock(1, TcpState::Listen, 8080, 0, 10)],
            vec![proc_(10, fds(1, 0, 3), 0), proc_(99, fds(50, 0, 0), 0)],
        );
        let mut after_socks = vec![sock(1, TcpState::Listen, 8080, 0, 10)];
        for i in 0..5 {
            after_socks.push(sock(
                100 + i,
                TcpState::CloseWait,
                8080,
                40000 + i as u16,
                10,
            ));
        }
        // Another process's socket and a duplicate dump row: neither counts.
        after_socks.push(sock(200, TcpState::CloseWait, 9999, 1, 99));
        after_socks.push(sock(100, TcpState::CloseWait, 8080, 40000, 10));
        let after = snap(
            after_socks,
            vec![proc_(10, fds(6, 10, 3), 0), proc_(99, fds(50, 0, 0), 0)],
        );
        (target_counts(&base, &[10]), target_counts(&after, &[10]))
    }

    #[test]
    fn counts_only_the_target_once_per_cookie() {
        let (b, a) = leaky_pair();
        assert_eq!(b.state(TcpState::CloseWait), 0);
        assert_eq!(a.state(TcpState::CloseWait), 5);
        assert_eq!(a.state(TcpState::Listen), 1);
        assert_eq!(a.pids, vec![10]);
        assert_eq!(a.fds.pipe, 10);
        assert_eq!(a.fd_total, 19);
        let server_group = a
            .groups
            .iter()
            .find(|(k, _)| k.state == TcpState::CloseWait)
            .expect("a CLOSE_WAIT group");
        assert_eq!(server_group.0.role, crate::group::Role::Server);
        assert_eq!(server_group.0.endpoint, ep(8080));
        assert_eq!(*server_group.1, 5);
    }

    #[test]
    fn leak_fails_with_exact_deltas_and_headline() {
        let (b, a) = leaky_pair();
        let r = compare(b, a, &Thresholds::default());
        assert_eq!(r.verdict(), Verdict::Fail);
        assert_eq!(r.states.get(&TcpState::CloseWait), Some(&5));
        assert_eq!(r.fds.get("pipe"), Some(&10));
        assert_eq!(r.fds.get("total"), Some(&15));
        let cw = r
            .checks
            .iter()
            .find(|c| c.name == "close_wait")
            .expect("close_wait check");
        assert_eq!(cw.outcome, Outcome::Fail);
        assert_eq!(cw.delta, Some(5));
        assert_eq!(r.groups.len(), 1);
        assert_eq!(r.groups[0].delta, 5);
        assert_eq!(
            r.headline("5 requests"),
            "after 5 requests the target holds 5 more CLOSE_WAIT sockets and 10 more pipes: FAIL"
        );
    }

    #[test]
    fn thresholds_allow_what_they_say() {
        let (b, a) = leaky_pair();
        let th = Thresholds {
            max_close_wait: 5,
            max_fd_growth: 15,
            ..Thresholds::default()
        };
        let r = compare(b.clone(), a.clone(), &th);
        assert_eq!(r.verdict(), Verdict::Pass, "{:#?}", r.checks);
        let th = Thresholds {
            max_pipe_growth: Some(9),
            ..th
        };
        let r = compare(b, a, &th);
        assert_eq!(r.verdict(), Verdict::Fail);
        assert!(r
            .checks
            .iter()
            .any(|c| c.name == "pipe_growth" && c.outcome == Outcome::Fail));
    }

    #[test]
    fn unchanged_target_passes_with_a_plain_headline() {
        let (b, _) = leaky_pair();
        let r = compare(b.clone(), b, &Thresholds::default());
        assert_eq!(r.verdict(), Verdict::Pass);
        assert!(r.states.is_empty());
        assert_eq!(
            r.headline("the load command"),
            "after the load command the target holds no more sockets or fds than before: PASS"
        );
    }

    #[test]
    fn small_fd_growth_is_allowed_by_default() {
        let base = snap(vec![], vec![proc_(10, fds(1, 0, 3), 0)]);
        let after = snap(vec![], vec![proc_(10, fds(1, 0, 5), 0)]);
        let r = compare(
            target_counts(&base, &[10]),
            target_counts(&after, &[10]),
            &Thresholds::default(),
        );
        assert_eq!(r.verdict(), Verdict::Pass);
        let after = snap(vec![], vec![proc_(10, fds(1, 0, 6), 0)]);
        let r = compare(
            target_counts(&base, &[10]),
            target_counts(&after, &[10]),
            &Thresholds::default(),
        );
        assert_eq!(r.verdict(), Verdict::Fail);
        assert!(r.headline("3 requests").contains("3 more open fds in all"));
    }

    #[test]
    fn unreadable_fds_are_an_error_not_a_pass() {
        let mut p = proc_(10, fds(1, 0, 3), 0);
        p.fds = None;
        let s = snap(vec![], vec![p]);
        let c = target_counts(&s, &[10]);
        assert_eq!(c.fds_unknown, 1);
        let r = compare(c.clone(), c, &Thresholds::default());
        assert_eq!(r.verdict(), Verdict::Error);
    }

    #[test]
    fn closed_but_held_growth_fails_and_custom_checks_show_in_headline() {
        let base = snap(vec![], vec![proc_(10, fds(1, 0, 3), 0)]);
        let after = snap(vec![], vec![proc_(10, fds(3, 0, 3), 2)]);
        let mut r = compare(
            target_counts(&base, &[10]),
            target_counts(&after, &[10]),
            &Thresholds::default(),
        );
        assert_eq!(r.verdict(), Verdict::Fail);
        r.checks.push(CheckResult::custom(
            "target_alive",
            Outcome::Fail,
            "the target exited with status 3 during the load".into(),
        ));
        assert_eq!(
            r.headline("2 requests"),
            "after 2 requests the target holds 2 more closed-but-held sockets; the target \
             exited with status 3 during the load: FAIL"
        );
    }
}
