//! Samples that follow state changes instead of dumping every socket again
//! (`sockleak watch`; issue 6).
//!
//! A full sample dumps every namespace, as a scan does. Between full samples,
//! the TCP state tracker ([`crate::bpf::changes`]) says which sockets changed
//! state; each is looked up alone ([`diag::get`], by 4-tuple and cookie, in
//! its namespace) and replaced, added or removed in the table kept from the
//! previous sample. Per namespace and sample, the listeners are dumped again
//! (their accept queues change without a state change, and a LISTEN-only
//! dump does not walk the established hash) and the namespace's counters are
//! read.
//!
//! A full dump is taken instead when: it is the first sample, every
//! [`Incremental::full_every`]-th sample (queues and tcp_info of unchanged
//! sockets are refreshed only then), the tracker lost changes (map full) or
//! failed, more sockets changed than lookups are cheaper for (an eighth of
//! the table: a burst of connections), the set of namespaces changed, a
//! changed socket could not be looked up, or a namespace's `sockstat`
//! disagrees with the table (sockets that changed without an event: a
//! TIME_WAIT destroyed early, `ss -K` on one). So the table is never trusted
//! further than the kernel's own counts.
//!
//! Between full samples, an unchanged socket's row is the one of its last
//! lookup with its clocks advanced (TIME_WAIT and orphan timers run down,
//! `tcp_info` times since the last segment grow, exact for idle sockets) and
//! TIME_WAIT rows leave when their timer ends. Not refreshed until the next
//! full dump: queues of non-listening sockets (a CLOSE_WAIT's unread bytes
//! can only shrink), the other `tcp_info` fields, and listeners' request
//! sockets (SYN_RECV).

use crate::bpf::changes::{StateChange, StateTracker, TrackerError};
use crate::context;
use crate::diag::{self, wire::DiagSocket, DumpRequest};
use crate::netns::{self, NsEntry};
use crate::scan::NsDump;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use sockleak_model::{Namespace, Socket, StateSet, TcpState, Timer};
use std::time::{SystemTime, UNIX_EPOCH};

/// How the last sample was taken, for tests, `doctor` and the benchmark.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SampleKind {
    /// `None`: from the table and the changes; `Some(why)`: a full dump.
    pub full: Option<&'static str>,
    /// Changed sockets looked up.
    pub changes: usize,
}

/// A sample taken from the table and the changes.
pub(crate) struct Refreshed {
    /// Per namespace its context and notes; `sockets` left empty.
    pub dumps: Vec<NsDump>,
    /// The sockets of every namespace.
    pub sockets: Vec<Socket>,
    /// Socket inodes that left the table since the previous sample.
    pub gone: HashSet<u64>,
}

/// The table of the previous sample and the tracker that keeps it current.
pub struct Incremental {
    tracker: StateTracker,
    tables: HashMap<u64, NsTable>,
    diag: HashMap<u64, DiagSocket>,
    samples_since_full: u32,
    full_every: u32,
    last: SampleKind,
}

impl std::fmt::Debug for Incremental {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incremental")
            .field("namespaces", &self.tables.len())
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

/// One namespace's sockets as of their last lookup.
#[derive(Default)]
struct NsTable {
    rows: Vec<Socket>,
    /// When each row was looked up or dumped (unix ms).
    fetched_ms: Vec<u64>,
    index: HashMap<u64, usize>,
    /// Socket inodes that left the table since the last refreshed sample
    /// took them (a row removed, or replaced by one without that inode: a
    /// socket closed by its last holder reports inode 0).
    gone: HashSet<u64>,
}

impl NsTable {
    fn new(rows: Vec<Socket>, now: u64) -> NsTable {
        let index = rows
            .iter()
            .enumerate()
            .map(|(i, s)| (s.cookie.0, i))
            .collect();
        NsTable {
            fetched_ms: vec![now; rows.len()],
            rows,
            index,
            gone: HashSet::default(),
        }
    }

    fn upsert(&mut self, row: Socket, now: u64) {
        self.gone.remove(&row.inode);
        match self.index.get(&row.cookie.0) {
            Some(&i) => {
                if let (Some(r), Some(f)) = (self.rows.get_mut(i), self.fetched_ms.get_mut(i)) {
                    if r.inode != row.inode && r.inode != 0 {
                        self.gone.insert(r.inode);
                    }
                    *r = row;
                    *f = now;
                }
            }
            None => {
                self.index.insert(row.cookie.0, self.rows.len());
                self.rows.push(row);
                self.fetched_ms.push(now);
            }
        }
    }

    fn remove(&mut self, cookie: u64) {
        let Some(i) = self.index.remove(&cookie) else {
            return;
        };
        let row = self.rows.swap_remove(i);
        if row.inode != 0 {
            self.gone.insert(row.inode);
        }
        self.fetched_ms.swap_remove(i);
        if let Some(moved) = self.rows.get(i) {
            self.index.insert(moved.cookie.0, i);
        }
    }

    /// Drops the rows `keep` refuses (by index order, fixing the index).
    fn retain(&mut self, mut keep: impl FnMut(&Socket, u64) -> bool) {
        let mut i = 0;
        while i < self.rows.len() {
            let (Some(r), Some(&f)) = (self.rows.get(i), self.fetched_ms.get(i)) else {
                break;
            };
            if keep(r, f) {
                i += 1;
            } else {
                let cookie = r.cookie.0;
                self.remove(cookie);
            }
        }
    }
}

/// A changed socket's lookup costs about as much kernel and sockleak time as
/// this many rows of a full dump (measured at 150k sockets: ~10 µs per
/// lookup, drain included, against ~1.5 µs per dumped row; docs/watch.md):
/// with more changes than a table's size over this, a full dump is cheaper.
const LOOKUP_COST_IN_ROWS: usize = 8;

/// ... but this many lookups are always cheaper than a dump.
const MAX_LOOKUPS_FLOOR: usize = 256;

/// Whether dumping `rows` sockets costs less than looking `changes` up.
/// A CLOSE_WAIT socket written to this recently is looked up again at each
/// incremental sample ([`Incremental::recheck_written_close_wait`]); the
/// findings call one written to within 10 s half-closed and active.
const RECHECK_SENT_MS: u64 = 10_000;

/// At most this many such lookups per sample (a lookup costs about eight
/// dumped rows).
const MAX_RECHECKS: usize = 256;

fn dump_is_cheaper(changes: usize, rows: usize) -> bool {
    changes > MAX_LOOKUPS_FLOOR.max(rows / LOOKUP_COST_IN_ROWS)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The row of a socket looked up `elapsed` ms ago, as it would read now if
/// nothing happened to it: its timer ran down and the times since its last
/// segments grew.
fn advanced(mut s: Socket, elapsed: u64) -> Socket {
    let e = u32::try_from(elapsed).unwrap_or(u32::MAX);
    s.timer_expires_ms = s.timer_expires_ms.saturating_sub(e);
    if let Some(i) = s.tcp_info.as_mut() {
        i.last_data_sent_ms = i.last_data_sent_ms.saturating_add(e);
        i.last_data_recv_ms = i.last_data_recv_ms.saturating_add(e);
        i.last_ack_recv_ms = i.last_ack_recv_ms.saturating_add(e);
    }
    s
}

impl Incremental {
    /// Starts the tracker; a full dump every `full_every` samples (at least
    /// every 2nd).
    pub fn new(full_every: u32) -> Result<Incremental, TrackerError> {
        Ok(Incremental {
            tracker: StateTracker::new()?,
            tables: HashMap::default(),
            diag: HashMap::default(),
            samples_since_full: 0,
            full_every: full_every.max(2),
            last: SampleKind::default(),
        })
    }

    /// How the last sample was taken.
    pub fn last(&self) -> &SampleKind {
        &self.last
    }

    /// Records why this sample must be a full dump and returns `None`.
    fn full<T>(&mut self, why: &'static str) -> Option<T> {
        self.last = SampleKind {
            full: Some(why),
            changes: 0,
        };
        None
    }

    /// The sockets of every namespace of `entries` without a full dump; or
    /// `None` when this sample must be a full dump (the module comment says
    /// when): then call [`reset`](Self::reset) with the dump.
    pub(crate) fn refresh(&mut self, entries: &[NsEntry], req: &DumpRequest) -> Option<Refreshed> {
        if !req.states.is_all() || !req.want_info {
            return self.full("a filtered or info-less scan");
        }
        if self.tables.is_empty() {
            return self.full("first sample");
        }
        if self.samples_since_full + 1 >= self.full_every {
            return self.full("periodic");
        }
        if entries.len() != self.tables.len()
            || entries.iter().any(|e| !self.tables.contains_key(&e.id))
        {
            return self.full("namespaces changed");
        }
        let drained = match self.tracker.drain() {
            Ok(d) => d,
            Err(_) => return self.full("tracker failed"),
        };
        if drained.lost > 0 {
            return self.full("tracker lost changes");
        }
        let rows: usize = self.tables.values().map(|t| t.rows.len()).sum();
        if dump_is_cheaper(drained.changes.len(), rows) {
            return self.full("too many changes to look up one by one");
        }
        let now = now_ms();

        // Inside each namespace: its counters and listeners (and, the first
        // time, the diag socket the lookups use).
        let listen = DumpRequest {
            states: StateSet(TcpState::Listen.bit()),
            want_info: true,
        };
        let mut fresh = Vec::with_capacity(entries.len());
        for e in entries {
            let need_socket = !self.diag.contains_key(&e.id);
            let ran = netns::run_in(e, || {
                let mut ns = Namespace::new(e.id);
                ns.name = e.name.clone();
                ns.is_own = e.is_own;
                let mut notes = Vec::new();
                context::read_namespace_context(&mut ns, &mut notes);
                let mut listeners = Vec::new();
                let dumped = diag::dump(e.id, &listen, &mut listeners);
                let sock = if need_socket {
                    DiagSocket::open().ok()
                } else {
                    None
                };
                (ns, notes, dumped.map(|_| listeners), sock)
            });
            let Ok((ns, notes, Ok(listeners), sock)) = ran else {
                return self.full("a namespace could not be read");
            };
            if let Some(sock) = sock {
                self.diag.insert(e.id, sock);
            }
            fresh.push((ns, notes, listeners));
        }

        let changes = drained.changes.len();
        for c in drained.changes {
            if self.apply(c, now).is_none() {
                return self.full("a changed socket could not be looked up");
            }
        }
        if self.recheck_written_close_wait(now).is_none() {
            return self.full("a half-closed socket could not be looked up");
        }

        let mut out = Vec::with_capacity(fresh.len());
        let mut gone = HashSet::default();
        for (mut ns, notes, listeners) in fresh {
            let Some(table) = self.tables.get_mut(&ns.id) else {
                return self.full("namespaces changed");
            };
            // TIME_WAIT (and orphan FIN_WAIT2 timewait) rows whose timer ran
            // out are gone; listeners come from this sample's dump.
            table.retain(|s, fetched| {
                s.state != TcpState::Listen
                    && !(s.timer == Timer::TimeWait
                        && u64::from(s.timer_expires_ms) <= now.saturating_sub(fetched))
            });
            for l in listeners {
                table.upsert(l, now);
            }
            if !agrees_with_sockstat(&ns, &table.rows) {
                return self.full("the namespace's counters disagree with the table");
            }
            gone.extend(table.gone.drain());
            ns.scanned = true;
            out.push(NsDump {
                ns,
                sockets: Vec::new(),
                notes,
            });
        }
        // Every namespace's rows in one Vec: one copy of the table per
        // sample, not one per namespace and then a concatenation.
        let total = self.tables.values().map(|t| t.rows.len()).sum();
        let mut sockets = Vec::with_capacity(total);
        for d in &out {
            if let Some(table) = self.tables.get(&d.ns.id) {
                sockets.extend(
                    table
                        .rows
                        .iter()
                        .zip(&table.fetched_ms)
                        .map(|(s, &f)| advanced(s.clone(), now.saturating_sub(f))),
                );
            }
        }
        self.samples_since_full += 1;
        self.last = SampleKind {
            full: None,
            changes,
        };
        Some(Refreshed {
            dumps: out,
            sockets,
            gone,
        })
    }

    /// Looks up again the CLOSE_WAIT sockets written to within
    /// [`RECHECK_SENT_MS`] at their last lookup: a half-closed socket its
    /// owner still writes to (a relay) changes no state, so the tracker never
    /// names it, and advancing its clocks would make an active relay look
    /// like an idle leak. Leaked sockets stopped writing long ago and cost
    /// nothing here; at most [`MAX_RECHECKS`] per sample (the rest keep
    /// advanced clocks until the next full dump).
    fn recheck_written_close_wait(&mut self, now: u64) -> Option<()> {
        let mut due = Vec::new();
        for (&netns, table) in &self.tables {
            for (s, &fetched) in table.rows.iter().zip(&table.fetched_ms) {
                if due.len() >= MAX_RECHECKS {
                    break;
                }
                let written = s.tcp_info.as_ref().is_some_and(|i| {
                    u64::from(i.last_data_sent_ms) + now.saturating_sub(fetched) < RECHECK_SENT_MS
                });
                if s.state == TcpState::CloseWait && written {
                    due.push((netns, s.family, s.local, s.remote, s.cookie.0));
                }
            }
        }
        for (netns, family, local, remote, cookie) in due {
            let (Some(table), Some(sock)) =
                (self.tables.get_mut(&netns), self.diag.get_mut(&netns))
            else {
                continue;
            };
            match diag::get(sock, netns, family, &local, &remote, cookie, true) {
                Ok(Some(row)) => table.upsert(row, now),
                Ok(None) => table.remove(cookie),
                Err(_) => return None,
            }
        }
        Some(())
    }

    /// Looks one changed socket up and updates its table; `None` when the
    /// lookup failed (not when the socket is gone: that is a removal).
    fn apply(&mut self, c: StateChange, now: u64) -> Option<()> {
        // A namespace not scanned this time (`--netns`): not ours.
        let Some(table) = self.tables.get_mut(&c.netns) else {
            return Some(());
        };
        // A socket seen only after it lost its local port (it closed): the
        // tuple of its row, if it had one, finds its TIME_WAIT.
        let (local, remote) = match table
            .index
            .get(&c.cookie.0)
            .and_then(|&i| table.rows.get(i))
        {
            Some(r) if c.local.port == 0 => (r.local, r.remote),
            _ => (c.local, c.remote),
        };
        if local.port == 0 {
            table.remove(c.cookie.0);
            return Some(());
        }
        let sock = self.diag.get_mut(&c.netns)?;
        match diag::get(sock, c.netns, c.family, &local, &remote, c.cookie.0, true) {
            Ok(Some(row)) => table.upsert(row, now),
            Ok(None) => table.remove(c.cookie.0),
            Err(_) => return None,
        }
        Some(())
    }

    /// Keeps the sockets of a full dump (owners not yet attached) as the
    /// table for the next samples.
    pub(crate) fn reset<'a>(&mut self, dumps: impl Iterator<Item = (u64, &'a [Socket])>) {
        let now = now_ms();
        self.tables = dumps
            .map(|(ns, rows)| (ns, NsTable::new(rows.to_vec(), now)))
            .collect();
        self.samples_since_full = 0;
    }
}

/// The table's counts match the namespace's own: hashed full sockets
/// (`TCP: inuse` + `TCP6: inuse`; request sockets of listeners are not
/// counted there) and timewait sockets (`tw`). Unknown counts disagree.
fn agrees_with_sockstat(ns: &Namespace, rows: &[Socket]) -> bool {
    let Some(st) = ns.sockstat else {
        return false;
    };
    let tw = rows.iter().filter(|s| s.timer == Timer::TimeWait).count() as u64;
    let full = rows
        .iter()
        .filter(|s| s.timer != Timer::TimeWait && s.state != TcpState::SynRecv)
        .count() as u64;
    tw == st.tcp_tw && full == st.tcp_inuse + st.tcp6_inuse
}

#[cfg(test)]
mod tests {
    use super::*;
    use sockleak_model::{Cookie, Endpoint, TcpInfo};
    use std::net::{IpAddr, Ipv4Addr};

    fn row(cookie: u64, state: TcpState) -> Socket {
        let lo = |p| Endpoint::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p);
        Socket::new(Cookie(cookie), state, lo(80), lo(40000 + cookie as u16))
    }

    #[test]
    fn table_upserts_removes_and_keeps_its_index() {
        let mut t = NsTable::new(
            vec![row(1, TcpState::Established), row(2, TcpState::Listen)],
            10,
        );
        t.upsert(row(3, TcpState::CloseWait), 20);
        t.upsert(row(1, TcpState::FinWait1), 30);
        t.remove(1);
        t.remove(99);
        let mut got: Vec<(u64, TcpState)> = t.rows.iter().map(|s| (s.cookie.0, s.state)).collect();
        got.sort();
        assert_eq!(got, vec![(2, TcpState::Listen), (3, TcpState::CloseWait)]);
        for (i, s) in t.rows.iter().enumerate() {
            assert_eq!(t.index.get(&s.cookie.0), Some(&i));
        }
        assert_eq!(t.rows.len(), t.fetched_ms.len());
        t.retain(|s, _| s.state != TcpState::Listen);
        assert_eq!(t.rows.len(), 1);
        assert_eq!(t.index.get(&3), Some(&0));
    }

    #[test]
    fn an_unchanged_row_ages_as_an_idle_socket_would() {
        let mut s = row(1, TcpState::CloseWait);
        s.timer = Timer::TimeWait;
        s.timer_expires_ms = 1000;
        s.tcp_info = Some(TcpInfo {
            last_ack_recv_ms: 500,
            ..TcpInfo::default()
        });
        let a = advanced(s, 300);
        assert_eq!(a.timer_expires_ms, 700);
        assert_eq!(a.tcp_info.as_ref().map(|i| i.last_ack_recv_ms), Some(800));
        assert_eq!(advanced(a, 5000).timer_expires_ms, 0);
    }

    #[test]
    fn a_dump_replaces_more_lookups_than_an_eighth_of_the_table() {
        assert!(!dump_is_cheaper(256, 10));
        assert!(dump_is_cheaper(257, 10));
        assert!(!dump_is_cheaper(18_750, 150_000));
        assert!(dump_is_cheaper(18_751, 150_000));
    }

    #[test]
    fn counts_must_match_the_namespace_counters() {
        let mut ns = Namespace::new(1);
        let mut tw = row(5, TcpState::TimeWait);
        tw.timer = Timer::TimeWait;
        let rows = vec![
            row(1, TcpState::Established),
            row(2, TcpState::Listen),
            tw,
            row(6, TcpState::SynRecv),
        ];
        assert!(!agrees_with_sockstat(&ns, &rows), "unknown counts");
        ns.sockstat = Some(sockleak_model::SockStat {
            tcp_inuse: 1,
            tcp6_inuse: 1,
            tcp_tw: 1,
            ..Default::default()
        });
        assert!(agrees_with_sockstat(&ns, &rows));
        ns.sockstat = Some(sockleak_model::SockStat {
            tcp_inuse: 2,
            tcp_tw: 1,
            ..Default::default()
        });
        assert!(agrees_with_sockstat(&ns, &rows));
        ns.sockstat = Some(sockleak_model::SockStat {
            tcp_inuse: 2,
            tcp_tw: 0,
            ..Default::default()
        });
        assert!(
            !agrees_with_sockstat(&ns, &rows),
            "a TIME_WAIT the table still has"
        );
    }
}
