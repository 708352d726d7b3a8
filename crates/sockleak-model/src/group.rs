//! Groups of sockets that belong together for a diagnosis: accepted
//! connections by the listening endpoint they came in on, outgoing ones by the
//! peer they go to.

use crate::host::NetnsId;
use crate::snapshot::Snapshot;
use crate::socket::{Endpoint, Socket, TcpState};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;
use std::net::IpAddr;

/// Which side of the connection this host's socket is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Accepted from a local listener (or the listener itself).
    Server,
    /// Opened outward with connect().
    Client,
}

/// (namespace, state, role, endpoint): the endpoint is the listening endpoint
/// for servers and the (normalised) remote endpoint for clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKey {
    pub netns: NetnsId,
    pub state: TcpState,
    pub role: Role,
    pub endpoint: Endpoint,
}

/// Listening (namespace, port, address) triples, to tell accepted sockets.
#[derive(Debug, Default)]
pub struct ListenerIndex {
    exact: FxHashSet<(NetnsId, u16, IpAddr)>,
    /// Wildcard listeners (0.0.0.0 or ::) by port, with the address they bound.
    wildcard: FxHashMap<(NetnsId, u16), IpAddr>,
}

impl ListenerIndex {
    pub fn from_snapshot(snap: &Snapshot) -> ListenerIndex {
        let mut idx = ListenerIndex::default();
        for (ns, ep) in &snap.listeners {
            idx.add(*ns, *ep);
        }
        for s in &snap.sockets {
            if s.state == TcpState::Listen {
                idx.add(s.netns, s.local);
            }
        }
        idx
    }

    pub fn add(&mut self, netns: NetnsId, ep: Endpoint) {
        let ep = ep.normalized();
        if ep.is_unspecified() {
            self.wildcard.insert((netns, ep.port), ep.ip);
        } else {
            self.exact.insert((netns, ep.port, ep.ip));
        }
    }

    /// The listening endpoint a socket with this local endpoint was accepted
    /// from, if a listener serves it.
    pub fn listener_for(&self, netns: NetnsId, local: Endpoint) -> Option<Endpoint> {
        let local = local.normalized();
        if self.exact.contains(&(netns, local.port, local.ip)) {
            return Some(local);
        }
        self.wildcard
            .get(&(netns, local.port))
            .map(|ip| Endpoint::new(*ip, local.port))
    }
}

/// The group a socket belongs to.
pub fn group_key(s: &Socket, listeners: &ListenerIndex) -> GroupKey {
    let (role, endpoint) = if s.state == TcpState::Listen {
        (Role::Server, s.local.normalized())
    } else if let Some(l) = listeners.listener_for(s.netns, s.local) {
        (Role::Server, l)
    } else {
        (Role::Client, s.remote.normalized())
    };
    GroupKey {
        netns: s.netns,
        state: s.state,
        role,
        endpoint,
    }
}
