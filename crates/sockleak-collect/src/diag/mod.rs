//! NETLINK_SOCK_DIAG: dumping every TCP socket of a network namespace.
//!
//! API (owned by the diag module):
//! - `DumpRequest { states: StateSet, want_info: bool }`
//! - `dump(netns_id, &DumpRequest, &mut Vec<Socket>) -> Result<DumpStats, DiagError>`:
//!   dumps IPv4 then IPv6 in the *calling thread's* network namespace,
//!   appending model sockets (owners empty) stamped with `netns_id`,
//!   deduplicated by cookie.
