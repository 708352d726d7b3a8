//! Who is at fault: which process a socket is charged to when several hold it,
//! and which local socket is the other end of a connection.
//!
//! A socket inherited through fork has several holders, and the connection
//! lives until the last one closes. Counting it once per holder would double
//! the leak, so it is charged to one holder (the one that most likely created
//! it) and the others are listed, with whether they inherited it.
//!
//! Both ends of a loopback or same-host connection are in the same dump: the
//! peer of a socket is the one whose 4-tuple is mirrored (its local is our
//! remote and vice versa) in the same network namespace. That is how a
//! FIN_WAIT2 socket names the CLOSE_WAIT process it waits for.

use crate::host::NetnsId;
use crate::process::Process;
use crate::socket::{Endpoint, Owner, Socket, TcpState};
use rustc_hash::FxHashMap;
use serde::Serialize;
use std::collections::HashMap;

/// Processes by pid, for joining owners.
#[derive(Debug, Default)]
pub struct ProcessIndex<'a> {
    by_pid: FxHashMap<u32, &'a Process>,
}

impl<'a> ProcessIndex<'a> {
    pub fn new(processes: &'a [Process]) -> ProcessIndex<'a> {
        ProcessIndex {
            by_pid: processes.iter().map(|p| (p.pid, p)).collect(),
        }
    }

    pub fn get(&self, pid: u32) -> Option<&'a Process> {
        self.by_pid.get(&pid).copied()
    }

    pub fn comm(&self, pid: u32) -> Option<String> {
        self.get(pid).map(|p| p.comm.clone())
    }
}

/// Another process that holds sockets of a finding, as shown in
/// `also_held_by`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Holder {
    pub pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
    /// It got the descriptors through fork (no O_CLOEXEC, not closed in the
    /// child).
    pub inherited: bool,
    /// How many of the finding's sockets it holds.
    pub sockets: u64,
}

/// The holder a socket is charged to: a holder that did not inherit it, the
/// earliest started (the parent, for fork without exec), then the lowest pid.
/// An unknown start time sorts last. `None` when the socket has no visible
/// owner (orphans, or fd tables that could not be read).
pub fn primary_owner(s: &Socket, procs: &ProcessIndex<'_>) -> Option<Owner> {
    s.owners.iter().copied().min_by_key(|o| {
        let start = procs.get(o.pid).map_or(u64::MAX, |p| p.start_time);
        (o.inherited, start, o.pid, o.fd)
    })
}

/// The other processes holding the socket, one entry per pid (a process may
/// hold a socket through several dup'ed fds), without `primary`.
pub fn other_holders(s: &Socket, primary: u32) -> Vec<Owner> {
    let mut others: Vec<Owner> = Vec::new();
    for o in &s.owners {
        if o.pid == primary {
            continue;
        }
        match others.iter_mut().find(|x| x.pid == o.pid) {
            // Any fd held without inheritance makes the holder a co-owner.
            Some(x) => x.inherited &= o.inherited,
            None => others.push(*o),
        }
    }
    others
}

/// Adds the other holders of one socket to a finding's tally.
pub fn tally_holders(tally: &mut HashMap<u32, (bool, u64)>, s: &Socket, primary: Option<u32>) {
    let Some(primary) = primary else { return };
    for o in other_holders(s, primary) {
        let e = tally.entry(o.pid).or_insert((o.inherited, 0));
        e.0 &= o.inherited;
        e.1 += 1;
    }
}

/// Turns a tally into the `also_held_by` list, sorted by pid.
pub fn holders_from_tally(
    tally: HashMap<u32, (bool, u64)>,
    procs: &ProcessIndex<'_>,
) -> Vec<Holder> {
    let mut v: Vec<Holder> = tally
        .into_iter()
        .map(|(pid, (inherited, sockets))| Holder {
            pid,
            comm: procs.comm(pid),
            inherited,
            sockets,
        })
        .collect();
    v.sort();
    v
}

/// Sockets by (namespace, normalised local, normalised remote), to find the
/// other end of a connection on this host.
///
/// One map entry per 4-tuple pointing at the first socket, and a chain
/// through `next` for the rare tuples listed more than once (a non-atomic
/// dump, or a TIME_WAIT next to a new connection): a Vec per tuple would be
/// one allocation per socket on a host with a million of them.
#[derive(Debug, Default)]
pub struct PeerIndex {
    first: FxHashMap<(NetnsId, Endpoint, Endpoint), u32>,
    next: Vec<u32>,
}

/// End of a chain in [`PeerIndex::next`].
const NO_NEXT: u32 = u32::MAX;

impl PeerIndex {
    /// Indexes connected sockets; listeners have no peer.
    pub fn new(sockets: &[Socket]) -> PeerIndex {
        PeerIndex::with_states(sockets, |st| st != TcpState::Listen)
    }

    /// Indexes only the sockets whose state `mirror` will be asked for: a
    /// diagnosis looks up FIN_WAIT2 and CLOSE_WAIT peers, a fraction of the table.
    pub fn with_states(sockets: &[Socket], wanted: impl Fn(TcpState) -> bool) -> PeerIndex {
        let mut first: FxHashMap<_, u32> = FxHashMap::default();
        first.reserve(sockets.iter().filter(|s| wanted(s.state)).count());
        let mut next = vec![NO_NEXT; sockets.len()];
        // Walked backwards so each chain lists sockets in dump order.
        for (i, s) in sockets.iter().enumerate().rev() {
            if !wanted(s.state) {
                continue;
            }
            let Ok(i32_) = u32::try_from(i) else { continue };
            let key = (s.netns, s.local.normalized(), s.remote.normalized());
            if let Some(prev) = first.insert(key, i32_) {
                if let Some(n) = next.get_mut(i) {
                    *n = prev;
                }
            }
        }
        PeerIndex { first, next }
    }

    /// The socket in `state` at the other end of `s`: same namespace, local
    /// and remote swapped. Normalised endpoints so an IPv4 client of a
    /// dual-stack listener finds its `::ffff:` server socket.
    pub fn mirror<'s>(
        &self,
        sockets: &'s [Socket],
        s: &Socket,
        state: TcpState,
    ) -> Option<&'s Socket> {
        let key = (s.netns, s.remote.normalized(), s.local.normalized());
        let mut i = *self.first.get(&key)?;
        // Bounded by the number of sockets: a chain never revisits an index.
        for _ in 0..self.next.len() {
            let p = sockets.get(i as usize)?;
            if p.state == state {
                return Some(p);
            }
            i = *self.next.get(i as usize)?;
            if i == NO_NEXT {
                return None;
            }
        }
        None
    }
}

/// Counts peer processes of a finding's sockets and names the most frequent.
#[derive(Debug, Default)]
pub struct PeerTally {
    /// Peer owner pid (`None`: the peer socket is an orphan) → sockets.
    counts: HashMap<Option<u32>, u64>,
}

impl PeerTally {
    pub fn add(&mut self, peer_pid: Option<u32>) {
        *self.counts.entry(peer_pid).or_insert(0) += 1;
    }

    /// Sockets whose peer was found on this host.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// The peer process holding most of the peer sockets (ties: lowest pid);
    /// `None` when no peer socket has an owner.
    pub fn main_pid(&self) -> Option<u32> {
        self.counts
            .iter()
            .filter_map(|(pid, n)| pid.map(|p| (p, *n)))
            .max_by_key(|(p, n)| (*n, std::cmp::Reverse(*p)))
            .map(|(p, _)| p)
    }

    /// Peer sockets without an owner (orphans).
    pub fn orphans(&self) -> u64 {
        self.counts.get(&None).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socket::{Cookie, Family};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    fn proc(pid: u32, start: u64) -> Process {
        Process {
            pid,
            ppid: 1,
            start_time: start,
            comm: format!("p{pid}"),
            cmdline: String::new(),
            uid: 0,
            netns: 1,
            ns_pid: None,
            fd_count: None,
            fd_limit: None,
            fd_limit_hard: None,
            fds: None,
            closed_but_held: None,
        }
    }

    fn sock(state: TcpState, local: Endpoint, remote: Endpoint, owners: Vec<Owner>) -> Socket {
        Socket {
            inode: 1,
            netns: 1,
            owners: owners.into(),
            ..Socket::new(Cookie(1), state, local, remote)
        }
    }

    fn ep(port: u16) -> Endpoint {
        Endpoint::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
    }

    fn owner(pid: u32, fd: u32, inherited: bool) -> Owner {
        Owner { pid, fd, inherited }
    }

    #[test]
    fn shared_socket_is_charged_to_the_non_inherited_earliest_holder() {
        let procs = vec![proc(10, 500), proc(20, 100), proc(30, 50)];
        let idx = ProcessIndex::new(&procs);
        // pid 30 started first but inherited it; pid 20 started before 10.
        let s = sock(
            TcpState::CloseWait,
            ep(80),
            ep(4000),
            vec![owner(30, 3, true), owner(10, 4, false), owner(20, 5, false)],
        );
        assert_eq!(primary_owner(&s, &idx).map(|o| o.pid), Some(20));
        let others = other_holders(&s, 20);
        assert_eq!(
            others
                .iter()
                .map(|o| (o.pid, o.inherited))
                .collect::<Vec<_>>(),
            vec![(30, true), (10, false)]
        );
    }

    #[test]
    fn dup_fds_count_one_holder() {
        let s = sock(
            TcpState::CloseWait,
            ep(80),
            ep(4000),
            vec![owner(1, 3, false), owner(2, 3, true), owner(2, 9, true)],
        );
        let mut tally = HashMap::new();
        tally_holders(&mut tally, &s, Some(1));
        let procs = vec![proc(2, 1)];
        let h = holders_from_tally(tally, &ProcessIndex::new(&procs));
        assert_eq!(
            h,
            vec![Holder {
                pid: 2,
                comm: Some("p2".into()),
                inherited: true,
                sockets: 1
            }]
        );
    }

    #[test]
    fn mirror_finds_the_other_end_across_mapped_v6() {
        let mapped = |port| {
            let ip: Ipv6Addr = "::ffff:127.0.0.1".parse().expect("literal");
            Endpoint::new(IpAddr::V6(ip), port)
        };
        let mut server = sock(TcpState::CloseWait, mapped(80), mapped(4000), vec![]);
        server.family = Family::Inet6;
        let client = sock(TcpState::FinWait2, ep(4000), ep(80), vec![]);
        let mut elsewhere = client.clone();
        elsewhere.netns = 2;
        let sockets = vec![server, client.clone(), elsewhere.clone()];
        let idx = PeerIndex::new(&sockets);
        let peer = idx.mirror(&sockets, &client, TcpState::CloseWait);
        assert_eq!(peer.map(|p| p.local.port), Some(80));
        // Wrong state, or another namespace: no peer.
        assert!(idx.mirror(&sockets, &client, TcpState::LastAck).is_none());
        assert!(idx
            .mirror(&sockets, &elsewhere, TcpState::CloseWait)
            .is_none());
    }

    #[test]
    fn peer_tally_names_the_most_frequent_owner() {
        let mut t = PeerTally::default();
        t.add(Some(7));
        t.add(None);
        t.add(Some(9));
        t.add(Some(9));
        assert_eq!(t.main_pid(), Some(9));
        assert_eq!(t.total(), 4);
        assert_eq!(t.orphans(), 1);
        assert_eq!(PeerTally::default().main_pid(), None);
    }
}
