//! The default human view of a scan: a per-process summary sorted by what
//! matters, then each process's socket groups, then sockets nobody owns.

use super::style::Style;
use super::{netns_label, truncate};
use sockleak_model::group::{group_key, ListenerIndex};
use sockleak_model::{Endpoint, GroupKey, Process, Role, Snapshot, Socket, TcpState};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

/// Per-process TCP counts used for sorting and the summary table.
#[derive(Default, Clone, Copy)]
struct TcpCounts {
    total: u32,
    close_wait: u32,
    established: u32,
}

/// Sums over one group of sockets.
#[derive(Default, Clone, Copy)]
struct GroupSum {
    count: u32,
    recv_q: u64,
    send_q: u64,
    unread: u64,
}

/// Options of the human inventory.
pub struct InventoryOptions<'a> {
    pub style: Style,
    pub wide: bool,
    /// uid → user name, as `ps` shows.
    pub users: &'a HashMap<u32, String>,
}

/// Renders the summary and the groups.
pub fn render(snap: &Snapshot, opts: &InventoryOptions<'_>) -> String {
    let st = opts.style;
    let idx = ListenerIndex::from_snapshot(snap);
    let mut counts: HashMap<u32, TcpCounts> = HashMap::new();
    let mut groups: HashMap<u32, BTreeMap<GroupKey, GroupSum>> = HashMap::new();
    let mut unowned: BTreeMap<(bool, GroupKey), GroupSum> = BTreeMap::new();
    let tw_ends = TimeWaitEnds::new(snap);
    for s in &snap.sockets {
        let key = tw_ends.regroup(s, group_key(s, &idx));
        // A socket shared by several processes is listed under each holder:
        // each of them keeps it open.
        let mut seen_pid = None;
        for o in &s.owners {
            if seen_pid == Some(o.pid) {
                continue;
            }
            seen_pid = Some(o.pid);
            let c = counts.entry(o.pid).or_default();
            c.total += 1;
            match s.state {
                TcpState::CloseWait => c.close_wait += 1,
                TcpState::Established => c.established += 1,
                _ => {}
            }
            add(groups.entry(o.pid).or_default().entry(key).or_default(), s);
        }
        if s.owners.is_empty() {
            add(unowned.entry((s.inode != 0, key)).or_default(), s);
        }
    }

    let mut shown: Vec<&Process> = snap
        .processes
        .iter()
        .filter(|p| {
            counts.contains_key(&p.pid)
                || p.closed_but_held.unwrap_or(0) > 0
                || p.fd_use_ratio().is_some_and(|r| r >= 0.5)
        })
        .collect();
    shown.sort_by(|a, b| {
        let ca = counts.get(&a.pid).copied().unwrap_or_default();
        let cb = counts.get(&b.pid).copied().unwrap_or_default();
        cb.close_wait
            .cmp(&ca.close_wait)
            .then(
                b.fd_use_ratio()
                    .unwrap_or(0.0)
                    .total_cmp(&a.fd_use_ratio().unwrap_or(0.0)),
            )
            .then(cb.total.cmp(&ca.total))
            .then(a.pid.cmp(&b.pid))
    });

    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}",
        st.bold(&format!(
            "{:>7} {:<8} {:<14} {:>6} {:>6} {:>4} {:>6} {:>6} {:>6} {:>7} {:>6} {:>4} {}",
            "PID",
            "USER",
            "COMM",
            "FDS",
            "LIMIT",
            "USE%",
            "SOCK",
            "PIPE",
            "TCP",
            "CL-WAIT",
            "ESTAB",
            "CBH",
            "NETNS"
        ))
    );
    for p in &shown {
        let c = counts.get(&p.pid).copied().unwrap_or_default();
        let user = opts
            .users
            .get(&p.uid)
            .cloned()
            .unwrap_or_else(|| p.uid.to_string());
        let fds = p.fd_count.map_or("?".to_string(), |n| n.to_string());
        let limit = p.fd_limit.map_or("-".to_string(), |n| n.to_string());
        let pct = p
            .fd_use_ratio()
            .map_or("-".to_string(), |r| format!("{:.0}", r * 100.0));
        let kinds = p.fds.unwrap_or_default();
        let cbh = p.closed_but_held.map_or("?".to_string(), |n| n.to_string());
        let cw = format!("{:>7}", c.close_wait);
        let cw = if c.close_wait > 0 { st.red(&cw) } else { cw };
        let pct = format!("{pct:>4}");
        let pct = if p.fd_use_ratio().is_some_and(|r| r >= 0.8) {
            st.red(&pct)
        } else {
            pct
        };
        let _ = writeln!(
            out,
            "{:>7} {:<8} {:<14} {:>6} {:>6} {} {:>6} {:>6} {:>6} {} {:>6} {:>4} {}",
            p.pid,
            truncate(&user, 8),
            truncate(&p.comm, 14),
            fds,
            limit,
            pct,
            kinds.socket,
            kinds.pipe,
            c.total,
            cw,
            c.established,
            cbh,
            truncate(&netns_label(snap, p.netns), 8),
        );
    }

    for p in &shown {
        let Some(gs) = groups.get(&p.pid) else {
            continue;
        };
        let _ = writeln!(out);
        let kinds = p.fds.unwrap_or_default();
        let cmd = if opts.wide {
            p.cmdline.clone()
        } else {
            truncate(&p.cmdline, 60)
        };
        let _ = writeln!(
            out,
            "{} {}",
            st.bold(&format!("{} (pid {})", p.comm, p.pid)),
            st.dim(&cmd)
        );
        let _ = writeln!(
            out,
            "  fds {}{}: {} sockets, {} pipes, {} files, {} anon, {} other; netns {}",
            p.fd_count.map_or("?".to_string(), |n| n.to_string()),
            p.fd_limit.map_or(String::new(), |l| format!("/{l}")),
            kinds.socket,
            kinds.pipe,
            kinds.file,
            kinds.anon,
            kinds.other,
            netns_label(snap, p.netns),
        );
        render_groups(&mut out, st, gs.iter());
    }

    if !unowned.is_empty() {
        let _ = writeln!(out);
        for (has_inode, title) in [
            (
                false,
                "no owner (TIME_WAIT, orphans: the process already closed them)",
            ),
            (
                true,
                "owner unknown (fd closed during the scan, or not readable)",
            ),
        ] {
            let mut rows = unowned
                .iter()
                .filter(|((h, _), _)| *h == has_inode)
                .map(|((_, k), v)| (k, v))
                .peekable();
            if rows.peek().is_none() {
                continue;
            }
            let _ = writeln!(out, "{}", st.bold(title));
            render_groups(&mut out, st, rows);
        }
    }
    let _ = writeln!(out);
    out.push_str(&totals(snap, shown.len()));
    out
}

/// How often each end of an unowned TIME_WAIT socket recurs, to group them
/// by the end they share. Without a listener, `group_key` makes every
/// TIME_WAIT a client row toward its remote end, and a server that closed
/// first (or whose listener is gone) left one row per client port: 456 of
/// 558 lines of one scan.
struct TimeWaitEnds {
    local: HashMap<(u64, Endpoint), u32>,
    remote: HashMap<(u64, Endpoint), u32>,
}

impl TimeWaitEnds {
    fn new(snap: &Snapshot) -> TimeWaitEnds {
        let mut ends = TimeWaitEnds {
            local: HashMap::new(),
            remote: HashMap::new(),
        };
        for s in snap.sockets.iter().filter(|s| Self::applies(s)) {
            *ends
                .local
                .entry((s.netns, s.local.normalized()))
                .or_default() += 1;
            *ends
                .remote
                .entry((s.netns, s.remote.normalized()))
                .or_default() += 1;
        }
        ends
    }

    fn applies(s: &Socket) -> bool {
        s.state == TcpState::TimeWait && s.owners.is_empty()
    }

    /// An unowned TIME_WAIT whose local end recurs more than its remote end
    /// is grouped as a server row on the local end; others keep their key.
    fn regroup(&self, s: &Socket, key: GroupKey) -> GroupKey {
        if !Self::applies(s) || key.role == Role::Server {
            return key;
        }
        let local = s.local.normalized();
        let n = |m: &HashMap<(u64, Endpoint), u32>, e: Endpoint| {
            m.get(&(s.netns, e)).copied().unwrap_or(0)
        };
        if n(&self.local, local) > n(&self.remote, s.remote.normalized()) {
            GroupKey {
                role: Role::Server,
                endpoint: local,
                ..key
            }
        } else {
            key
        }
    }
}

fn add(g: &mut GroupSum, s: &Socket) {
    g.count += 1;
    g.recv_q += u64::from(s.recv_q);
    g.send_q += u64::from(s.send_q);
    g.unread += u64::from(s.unread_bytes());
}

fn render_groups<'a>(
    out: &mut String,
    st: Style,
    rows: impl Iterator<Item = (&'a GroupKey, &'a GroupSum)>,
) {
    let mut rows: Vec<_> = rows.collect();
    // Most alarming first: CLOSE_WAIT, then by count.
    rows.sort_by(|(ka, va), (kb, vb)| {
        (kb.state == TcpState::CloseWait)
            .cmp(&(ka.state == TcpState::CloseWait))
            .then(vb.count.cmp(&va.count))
            .then(ka.cmp(kb))
    });
    let _ = writeln!(
        out,
        "  {}",
        st.dim(&format!(
            "{:<11} {:<6} {:<40} {:>7} {:>9} {:>9} {:>9}",
            "STATE", "ROLE", "ENDPOINT", "COUNT", "RECV-Q", "SEND-Q", "UNREAD"
        ))
    );
    for (k, v) in rows {
        let role = match k.role {
            Role::Server => "server",
            Role::Client => "client",
        };
        let state = format!("{:<11}", k.state.ss_name());
        let state = if k.state == TcpState::CloseWait {
            st.red(&state)
        } else {
            state
        };
        let _ = writeln!(
            out,
            "  {} {:<6} {:<40} {:>7} {:>9} {:>9} {:>9}",
            state,
            role,
            truncate(&k.endpoint.to_string(), 40),
            v.count,
            v.recv_q,
            v.send_q,
            v.unread
        );
    }
}

/// "1234 TCP sockets in 3 namespaces: ESTAB 20, CLOSE-WAIT 781 ..."
fn totals(snap: &Snapshot, shown: usize) -> String {
    let mut by_state: BTreeMap<TcpState, u32> = BTreeMap::new();
    for s in &snap.sockets {
        *by_state.entry(s.state).or_default() += 1;
    }
    let scanned = snap.namespaces.iter().filter(|n| n.scanned).count();
    let states: Vec<String> = by_state
        .iter()
        .map(|(s, n)| format!("{} {}", s.ss_name(), n))
        .collect();
    let mut out = format!(
        "{} TCP sockets{} in {} network namespace{}",
        snap.sockets.len(),
        if snap.filtered { " matching" } else { "" },
        scanned,
        if scanned == 1 { "" } else { "s" }
    );
    if !states.is_empty() {
        out.push_str(": ");
        out.push_str(&states.join(", "));
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "{} processes, {} shown (with TCP sockets, closed-but-held sockets or fds ≥ 50% of the limit)",
        snap.processes.len(),
        shown
    );
    out
}
