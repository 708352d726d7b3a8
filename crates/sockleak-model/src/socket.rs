//! One TCP socket as the kernel reports it, identified by its cookie.

use serde::{Serialize, Serializer};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

/// The kernel's socket cookie: unique per boot, present in every sock_diag row
/// (also TIME_WAIT and orphans, which have inode 0). It is the identity of a
/// socket across snapshots; the 4-tuple is for display only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Cookie(pub u64);

/// TCP states with the kernel's numbering (include/net/tcp_states.h), so a
/// state is also its bit in the sock_diag `idiag_states` mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum TcpState {
    Established = 1,
    SynSent = 2,
    SynRecv = 3,
    FinWait1 = 4,
    FinWait2 = 5,
    TimeWait = 6,
    Close = 7,
    CloseWait = 8,
    LastAck = 9,
    Listen = 10,
    Closing = 11,
}

impl TcpState {
    /// Every state, in kernel order.
    pub const ALL: [TcpState; 11] = [
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::Closing,
    ];

    /// Maps the kernel's state number. TCP_NEW_SYN_RECV (12) is a request
    /// socket of a listener and is shown as SYN_RECV, as `ss` does.
    pub fn from_kernel(n: u8) -> Option<TcpState> {
        match n {
            1..=11 => Some(Self::ALL[usize::from(n - 1)]),
            12 => Some(TcpState::SynRecv),
            _ => None,
        }
    }

    /// The kernel's name (as in the JSON schema): ESTABLISHED, CLOSE_WAIT, ...
    pub fn kernel_name(self) -> &'static str {
        match self {
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait1 => "FIN_WAIT1",
            TcpState::FinWait2 => "FIN_WAIT2",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::Closing => "CLOSING",
        }
    }

    /// The name `ss` prints and accepts in `state` filters.
    pub fn ss_name(self) -> &'static str {
        match self {
            TcpState::Established => "ESTAB",
            TcpState::SynSent => "SYN-SENT",
            TcpState::SynRecv => "SYN-RECV",
            TcpState::FinWait1 => "FIN-WAIT-1",
            TcpState::FinWait2 => "FIN-WAIT-2",
            TcpState::TimeWait => "TIME-WAIT",
            TcpState::Close => "UNCONN",
            TcpState::CloseWait => "CLOSE-WAIT",
            TcpState::LastAck => "LAST-ACK",
            TcpState::Listen => "LISTEN",
            TcpState::Closing => "CLOSING",
        }
    }

    /// Parses a kernel name, an `ss` name or an `ss` filter name
    /// (`close-wait`, `CLOSE_WAIT`, `CLOSE-WAIT`, `listening`, `estab`, ...).
    pub fn parse(name: &str) -> Option<TcpState> {
        let n = name.trim().to_ascii_lowercase().replace('_', "-");
        Some(match n.as_str() {
            "established" | "estab" => TcpState::Established,
            "syn-sent" => TcpState::SynSent,
            "syn-recv" | "syn-received" => TcpState::SynRecv,
            "fin-wait-1" | "fin-wait1" => TcpState::FinWait1,
            "fin-wait-2" | "fin-wait2" => TcpState::FinWait2,
            "time-wait" => TcpState::TimeWait,
            "close" | "closed" | "unconn" => TcpState::Close,
            "close-wait" => TcpState::CloseWait,
            "last-ack" => TcpState::LastAck,
            "listen" | "listening" => TcpState::Listen,
            "closing" => TcpState::Closing,
            _ => return None,
        })
    }

    /// The bit of this state in a kernel state mask (`1 << state`).
    pub fn bit(self) -> u32 {
        1u32 << (self as u8)
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kernel_name())
    }
}

impl Serialize for TcpState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.kernel_name())
    }
}

/// Address family of the socket as created. Kept apart from the address:
/// a dual-stack listener accepts IPv4 clients on AF_INET6 sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Inet,
    Inet6,
}

/// An address and port. IPv4-mapped IPv6 addresses are normalised to IPv4 for
/// display and grouping (see [`Endpoint::normalized`]); the socket keeps its
/// [`Family`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
}

impl Endpoint {
    pub fn new(ip: IpAddr, port: u16) -> Endpoint {
        Endpoint { ip, port }
    }

    /// `::ffff:a.b.c.d` becomes `a.b.c.d`; everything else is unchanged.
    pub fn normalized(self) -> Endpoint {
        match self.ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Endpoint::new(IpAddr::V4(v4), self.port),
                None => self,
            },
            IpAddr::V4(_) => self,
        }
    }

    /// True for 0.0.0.0 and ::, the wildcard of a listener.
    pub fn is_unspecified(&self) -> bool {
        self.ip.is_unspecified()
    }

    pub fn unspecified_v4() -> Endpoint {
        Endpoint::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
    }
}

impl fmt::Display for Endpoint {
    /// `1.2.3.4:80`, `[::1]:80`; IPv4-mapped addresses print as IPv4.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.normalized();
        match n.ip {
            IpAddr::V4(ip) => write!(f, "{}:{}", ip, n.port),
            IpAddr::V6(ip) => write!(f, "[{}]:{}", ip, n.port),
        }
    }
}

impl Serialize for Endpoint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The kernel timer of a socket (`idiag_timer`, see `ss -o`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Timer {
    #[default]
    Off,
    /// Retransmit timer (also SYN retries).
    On,
    Keepalive,
    TimeWait,
    /// Zero-window probe timer.
    Persist,
    Unknown,
}

impl Timer {
    /// From `idiag_timer` (net/ipv4/inet_diag.c: 0 off, 1 retransmit,
    /// 2 keepalive, 3 TIME_WAIT, 4 zero window probe).
    pub fn from_kernel(n: u8) -> Timer {
        match n {
            0 => Timer::Off,
            1 => Timer::On,
            2 => Timer::Keepalive,
            3 => Timer::TimeWait,
            4 => Timer::Persist,
            _ => Timer::Unknown,
        }
    }
}

/// The fields of `struct tcp_info` (include/uapi/linux/tcp.h) that a
/// diagnosis needs. Fields that a shorter (older) struct lacks are `None`.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize)]
pub struct TcpInfo {
    pub retransmits: u8,
    pub probes: u8,
    pub backoff: u8,
    pub rto_us: u32,
    pub unacked: u32,
    pub lost: u32,
    pub retrans: u32,
    /// Milliseconds since data was last sent.
    pub last_data_sent_ms: u32,
    /// Milliseconds since data was last received (a bare FIN is not data).
    pub last_data_recv_ms: u32,
    /// Milliseconds since any ACK-bearing segment (a FIN is one) arrived: on an
    /// idle CLOSE_WAIT socket this approximates the time since the FIN.
    pub last_ack_recv_ms: u32,
    pub rtt_us: u32,
    pub rttvar_us: u32,
    pub snd_cwnd: u32,
    pub total_retrans: u32,
    pub bytes_acked: Option<u64>,
    pub bytes_received: Option<u64>,
}

/// `INET_DIAG_MEMINFO` (struct inet_diag_meminfo).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize)]
pub struct MemInfo {
    pub rmem: u32,
    pub wmem: u32,
    pub fmem: u32,
    pub tmem: u32,
}

/// A process's descriptor that refers to the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Owner {
    pub pid: u32,
    pub fd: u32,
    /// This holder is a descendant of another holder of the same socket: it got
    /// the descriptor through fork (no O_CLOEXEC / close in the child).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub inherited: bool,
}

/// The holders of one socket: nearly always one, kept inline.
pub type Owners = smallvec::SmallVec<[Owner; 1]>;

/// One TCP socket from one sock_diag row, with its holders joined in.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Socket {
    pub state: TcpState,
    pub family: Family,
    pub local: Endpoint,
    pub remote: Endpoint,
    /// Bytes received and not read by the application; for LISTEN the accept
    /// queue length. A CLOSE_WAIT socket counts the FIN as 1 until read.
    pub recv_q: u32,
    /// Bytes not yet acknowledged by the peer; for LISTEN the backlog.
    pub send_q: u32,
    pub cookie: Cookie,
    /// 0 for TIME_WAIT and orphans: the socket has no file, so no owner.
    pub inode: u64,
    pub uid: u32,
    /// Network namespace (nsfs inode).
    pub netns: u64,
    pub timer: Timer,
    pub timer_expires_ms: u32,
    pub retrans: u8,
    pub tcp_info: Option<TcpInfo>,
    pub mem: Option<MemInfo>,
    pub owners: Owners,
}

impl Socket {
    /// A socket with only its identity, state and endpoints: queues, inode,
    /// uid, namespace and timer zero, no tcp_info, no owners; the family
    /// follows the local address. Builders (the decoders' fallbacks, tests)
    /// start from it and set what they know.
    pub fn new(cookie: Cookie, state: TcpState, local: Endpoint, remote: Endpoint) -> Socket {
        Socket {
            state,
            family: match local.ip {
                IpAddr::V4(_) => Family::Inet,
                IpAddr::V6(_) => Family::Inet6,
            },
            local,
            remote,
            recv_q: 0,
            send_q: 0,
            cookie,
            inode: 0,
            uid: 0,
            netns: 0,
            timer: Timer::Off,
            timer_expires_ms: 0,
            retrans: 0,
            tcp_info: None,
            mem: None,
            owners: Owners::new(),
        }
    }

    /// Unread application data: Recv-Q minus the FIN that a CLOSE_WAIT socket
    /// counts until a read reaches it.
    pub fn unread_bytes(&self) -> u32 {
        match self.state {
            TcpState::CloseWait | TcpState::LastAck | TcpState::Closing => {
                self.recv_q.saturating_sub(1)
            }
            _ => self.recv_q,
        }
    }

    /// Has no file at all (TIME_WAIT, orphaned FIN_WAIT and friends).
    pub fn is_orphan(&self) -> bool {
        self.inode == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    #[test]
    fn mapped_v6_prints_as_v4() {
        let ip: Ipv6Addr = "::ffff:127.0.0.1".parse().expect("literal");
        assert_eq!(
            Endpoint::new(IpAddr::V6(ip), 80).to_string(),
            "127.0.0.1:80"
        );
        let ip6: Ipv6Addr = "::1".parse().expect("literal");
        assert_eq!(Endpoint::new(IpAddr::V6(ip6), 80).to_string(), "[::1]:80");
    }

    #[test]
    fn new_socket_takes_its_family_from_the_local_address() {
        let v4 = Endpoint::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 1);
        let v6 = Endpoint::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 1);
        let s = Socket::new(Cookie(9), TcpState::Listen, v4, v4);
        assert_eq!(
            (s.family, s.cookie, s.inode, s.owners.len()),
            (Family::Inet, Cookie(9), 0, 0)
        );
        assert_eq!(
            Socket::new(Cookie(1), TcpState::Listen, v6, v6).family,
            Family::Inet6
        );
    }

    #[test]
    fn states_roundtrip_kernel_numbers_and_names() {
        for s in TcpState::ALL {
            assert_eq!(TcpState::from_kernel(s as u8), Some(s));
            assert_eq!(TcpState::parse(s.kernel_name()), Some(s));
            assert_eq!(TcpState::parse(s.ss_name()).unwrap_or(TcpState::Close), s);
        }
        assert_eq!(TcpState::from_kernel(12), Some(TcpState::SynRecv));
        assert_eq!(TcpState::from_kernel(0), None);
        assert_eq!(TcpState::from_kernel(13), None);
        assert_eq!(TcpState::parse("close-wait"), Some(TcpState::CloseWait));
    }
}
