//! Scan filters: which sockets and processes a user asked about.

use crate::findings::Finding;
use crate::process::Process;
use crate::snapshot::Snapshot;
use crate::socket::{Endpoint, Socket, TcpState};
use std::collections::HashSet;
use std::net::IpAddr;

/// A set of TCP states, as the kernel's `idiag_states` bit mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateSet(pub u32);

impl StateSet {
    pub const ALL: StateSet = StateSet(0xffe); // bits 1..=11

    pub fn empty() -> StateSet {
        StateSet(0)
    }

    pub fn contains(&self, s: TcpState) -> bool {
        self.0 & s.bit() != 0
    }

    pub fn insert(&mut self, s: TcpState) {
        self.0 |= s.bit();
    }

    pub fn is_all(&self) -> bool {
        self.0 & StateSet::ALL.0 == StateSet::ALL.0
    }

    /// Parses one `--state` value: a state name (kernel or ss spelling) or an
    /// ss group: `all`, `connected` (all but LISTEN and CLOSE), `synchronized`
    /// (connected minus SYN-SENT), `bucket` (SYN-RECV, TIME-WAIT), `big`
    /// (all but bucket).
    pub fn parse_one(name: &str) -> Option<StateSet> {
        use TcpState::*;
        let mut set = StateSet::empty();
        let lower = name.trim().to_ascii_lowercase();
        let group: &[TcpState] = match lower.as_str() {
            "all" => &TcpState::ALL,
            "connected" => &[
                Established,
                SynSent,
                SynRecv,
                FinWait1,
                FinWait2,
                TimeWait,
                CloseWait,
                LastAck,
                Closing,
            ],
            "synchronized" => &[
                Established,
                SynRecv,
                FinWait1,
                FinWait2,
                TimeWait,
                CloseWait,
                LastAck,
                Closing,
            ],
            "bucket" => &[SynRecv, TimeWait],
            "big" => &[
                Established,
                SynSent,
                FinWait1,
                FinWait2,
                Close,
                CloseWait,
                LastAck,
                Listen,
                Closing,
            ],
            _ => {
                set.insert(TcpState::parse(&lower)?);
                return Some(set);
            }
        };
        for s in group {
            set.insert(*s);
        }
        Some(set)
    }
}

/// A `--remote ADDR[:PORT]` filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteFilter {
    pub ip: IpAddr,
    pub port: Option<u16>,
}

impl RemoteFilter {
    /// `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]:80`.
    pub fn parse(s: &str) -> Option<RemoteFilter> {
        let s = s.trim();
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Some(RemoteFilter { ip, port: None });
        }
        if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
            return Some(RemoteFilter {
                ip: sa.ip(),
                port: Some(sa.port()),
            });
        }
        let inner = s.strip_prefix('[').and_then(|r| r.strip_suffix(']'));
        inner
            .and_then(|i| i.parse::<IpAddr>().ok())
            .map(|ip| RemoteFilter { ip, port: None })
    }
}

/// A network namespace named by `ip netns` name or numeric id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetnsFilter {
    Id(u64),
    Name(String),
}

/// What the user asked to see. An empty filter matches everything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    pub states: StateSet,
    pub pids: Vec<u32>,
    /// Substrings matched against comm or cmdline.
    pub process_names: Vec<String>,
    /// Local or remote port.
    pub ports: Vec<u16>,
    pub remotes: Vec<RemoteFilter>,
    pub netns: Vec<NetnsFilter>,
    /// A process never matched by name (sockleak itself, whose command line
    /// holds the pattern, as pgrep leaves itself out); `--pid` still can.
    pub exclude_pid: Option<u32>,
}

impl Default for Filter {
    fn default() -> Self {
        Filter {
            states: StateSet::ALL,
            pids: Vec::new(),
            process_names: Vec::new(),
            ports: Vec::new(),
            remotes: Vec::new(),
            netns: Vec::new(),
            exclude_pid: None,
        }
    }
}

impl Filter {
    /// True when anything but "everything" was asked for.
    pub fn is_restricted(&self) -> bool {
        !self.states.is_all()
            || !self.pids.is_empty()
            || !self.process_names.is_empty()
            || !self.ports.is_empty()
            || !self.remotes.is_empty()
            || !self.netns.is_empty()
    }

    /// True when the user restricted processes (by pid or name).
    pub fn selects_processes(&self) -> bool {
        !self.pids.is_empty() || !self.process_names.is_empty()
    }

    pub fn matches_process(&self, p: &Process) -> bool {
        if !self.selects_processes() {
            return true;
        }
        self.pids.contains(&p.pid)
            || (Some(p.pid) != self.exclude_pid
                && self.process_names.iter().any(|n| Self::name_matches(n, p)))
    }

    fn name_matches(name: &str, p: &Process) -> bool {
        p.comm.contains(name) || p.cmdline.contains(name)
    }

    /// The `--process` patterns no process (but the excluded one) matches,
    /// so the user hears that the filter found nothing.
    pub fn unmatched_names<'a>(&'a self, procs: &[Process]) -> Vec<&'a str> {
        self.process_names
            .iter()
            .filter(|n| {
                !procs
                    .iter()
                    .any(|p| Some(p.pid) != self.exclude_pid && Self::name_matches(n, p))
            })
            .map(String::as_str)
            .collect()
    }

    /// Socket-level predicates (state, ports, remote). Process and namespace
    /// predicates are applied by the caller, who knows the owners.
    pub fn matches_socket(&self, s: &Socket) -> bool {
        if !self.states.contains(s.state) {
            return false;
        }
        if !self.ports.is_empty()
            && !self
                .ports
                .iter()
                .any(|p| *p == s.local.port || *p == s.remote.port)
        {
            return false;
        }
        if !self.remotes.is_empty() {
            let remote = s.remote.normalized();
            if !self.remotes.iter().any(|r| {
                crate::socket::Endpoint::new(r.ip, 0).normalized().ip == remote.ip
                    && r.port.is_none_or(|p| p == remote.port)
            }) {
                return false;
            }
        }
        true
    }
}

impl Filter {
    /// Filters below the process level: states, ports, remote, namespace.
    pub fn selects_sockets(&self) -> bool {
        !self.states.is_all()
            || !self.ports.is_empty()
            || !self.remotes.is_empty()
            || !self.netns.is_empty()
    }

    /// Drops from the snapshot what the filter does not ask for. Socket-level
    /// filters also narrow the process list to the owners of what is shown.
    /// Listening endpoints stay in `snap.listeners` for grouping.
    pub fn apply(&self, snap: &mut Snapshot) {
        // A set, not `listeners.contains` per LISTEN socket: quadratic on a
        // host with tens of thousands of listeners.
        let mut known: HashSet<_> = snap.listeners.iter().copied().collect();
        for s in &snap.sockets {
            if s.state == TcpState::Listen && known.insert((s.netns, s.local)) {
                snap.listeners.push((s.netns, s.local));
            }
        }
        if self.selects_processes() {
            snap.processes.retain(|p| self.matches_process(p));
            let keep: HashSet<u32> = snap.processes.iter().map(|p| p.pid).collect();
            snap.sockets
                .retain(|s| s.owners.iter().any(|o| keep.contains(&o.pid)));
        }
        snap.sockets.retain(|s| self.matches_socket(s));
        if self.selects_sockets() {
            let owners: HashSet<u32> = snap
                .sockets
                .iter()
                .flat_map(|s| s.owners.iter().map(|o| o.pid))
                .collect();
            snap.processes.retain(|p| owners.contains(&p.pid));
        }
        snap.filtered = self.is_restricted();
    }

    /// Whether a finding concerns what the user asked about: its process is
    /// among `kept_pids` (when processes or sockets were selected) and its
    /// endpoints match the port/remote filters. Host-level findings (no pid)
    /// stay unless processes were selected.
    pub fn matches_finding(&self, f: &Finding, kept_pids: &HashSet<u32>) -> bool {
        match f.pid {
            Some(pid) => {
                if (self.selects_processes() || self.selects_sockets()) && !kept_pids.contains(&pid)
                {
                    return false;
                }
            }
            None => {
                if self.selects_processes() {
                    return false;
                }
            }
        }
        let eps: Vec<Endpoint> = f.local.iter().chain(f.remote.iter()).copied().collect();
        if !self.ports.is_empty()
            && !eps.is_empty()
            && !eps.iter().any(|e| self.ports.contains(&e.port))
        {
            return false;
        }
        if !self.remotes.is_empty() {
            if let Some(r) = f.remote {
                let r = r.normalized();
                if !self.remotes.iter().any(|m| {
                    Endpoint::new(m.ip, 0).normalized().ip == r.ip
                        && m.port.is_none_or(|p| p == r.port)
                }) {
                    return false;
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_groups() {
        let c = StateSet::parse_one("connected").expect("group");
        assert!(c.contains(TcpState::CloseWait));
        assert!(!c.contains(TcpState::Listen));
        let s = StateSet::parse_one("synchronized").expect("group");
        assert!(!s.contains(TcpState::SynSent));
        assert!(StateSet::parse_one("all").expect("all").is_all());
        assert_eq!(
            StateSet::parse_one("CLOSE_WAIT"),
            Some(StateSet(TcpState::CloseWait.bit()))
        );
        assert_eq!(StateSet::parse_one("nonsense"), None);
    }

    #[test]
    fn remote_forms() {
        assert_eq!(
            RemoteFilter::parse("10.0.0.1:443").map(|r| r.port),
            Some(Some(443))
        );
        assert_eq!(RemoteFilter::parse("::1").map(|r| r.port), Some(None));
        assert_eq!(
            RemoteFilter::parse("[::1]:80").map(|r| r.port),
            Some(Some(80))
        );
        assert_eq!(RemoteFilter::parse("[::1]").map(|r| r.port), Some(None));
        assert!(RemoteFilter::parse("host:80").is_none());
    }
}
