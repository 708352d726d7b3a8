//! Builders shared by the unit tests of the analysis modules.

use crate::socket::{Cookie, Endpoint, Owner, Owners, Socket, TcpState};
use std::net::{IpAddr, Ipv4Addr};

/// 127.0.0.1:`port`.
pub(crate) fn lo(port: u16) -> Endpoint {
    Endpoint::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

/// A loopback socket in namespace 1 with one byte in Recv-Q (a CLOSE_WAIT's
/// FIN), held at fd 3 by `owner` (its inode is then the cookie) or by nobody
/// (inode 0: TIME_WAIT, orphans).
pub(crate) fn sock(
    cookie: u64,
    state: TcpState,
    local: u16,
    remote: u16,
    owner: Option<u32>,
) -> Socket {
    Socket {
        recv_q: 1,
        inode: if owner.is_some() { cookie } else { 0 },
        netns: 1,
        owners: owner
            .map(|pid| {
                [Owner {
                    pid,
                    fd: 3,
                    inherited: false,
                }]
                .into_iter()
                .collect::<Owners>()
            })
            .unwrap_or_default(),
        ..Socket::new(Cookie(cookie), state, lo(local), lo(remote))
    }
}
