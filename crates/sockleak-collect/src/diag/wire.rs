//! The NETLINK_SOCK_DIAG socket: opening it, sending a TCP dump request and
//! receiving whole datagrams. The only module of `diag` with syscalls.

use super::abi;
use super::{DiagError, DiagOp, DumpRequest, Errno};
use sockleak_model::{Family, TcpState};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// Receive buffer size. With `tcp_info` a dump datagram exceeds 4 KiB and a
/// short buffer truncates it silently (kernel-notes.md); the kernel sizes its
/// dump skbs after the reader's buffer (up to 32 KiB), so 64 KiB never
/// truncates, and truncation is still detected (MSG_TRUNC) rather than assumed.
pub const RECV_BUF_LEN: usize = 64 * 1024;

/// How long one `recv` may wait. A dump answers in milliseconds; this only
/// bounds a wedged kernel or a namespace being torn down.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(10);

/// A NETLINK_SOCK_DIAG socket. It belongs to the network namespace of the
/// thread that opened it, for its whole life (also after that thread ends).
#[derive(Debug)]
pub struct DiagSocket {
    fd: OwnedFd,
    seq: u32,
    /// The receive buffer of [`recv_reply`](Self::recv_reply), allocated at
    /// the first exact lookup and kept: a sample can look up thousands of
    /// sockets through one socket.
    reply: Vec<u8>,
}

fn errno_of(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

impl DiagSocket {
    /// `socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG)` with
    /// a receive timeout of [`RECV_TIMEOUT`].
    pub fn open() -> Result<DiagSocket, DiagError> {
        // SAFETY: socket(2) takes no pointers; the result is checked below.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        if raw < 0 {
            let e = io::Error::last_os_error();
            let errno = errno_of(&e);
            // EPROTONOSUPPORT: no NETLINK_SOCK_DIAG in this kernel;
            // EAFNOSUPPORT: no netlink at all.
            if errno == libc::EPROTONOSUPPORT
                || errno == libc::ENOENT
                || errno == libc::EAFNOSUPPORT
            {
                return Err(DiagError::Unsupported {
                    op: DiagOp::Open,
                    errno: Errno(errno),
                });
            }
            return Err(DiagError::Io {
                op: DiagOp::Open,
                source: e,
            });
        }
        // SAFETY: `raw` is a descriptor socket(2) just returned to us; nothing
        // else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let tv = libc::timeval {
            tv_sec: RECV_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        // SAFETY: `tv` is a valid timeval that outlives the call and its size
        // is passed exactly.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(DiagError::Io {
                op: DiagOp::Open,
                source: io::Error::last_os_error(),
            });
        }
        Ok(DiagSocket {
            fd,
            seq: 0,
            reply: Vec::new(),
        })
    }

    /// Builds the request datagram: `nlmsghdr` + `struct inet_diag_req_v2`.
    pub fn request_bytes(
        seq: u32,
        family: Family,
        req: &DumpRequest,
    ) -> [u8; abi::NLMSG_HDRLEN + abi::REQ_V2_LEN] {
        let mut b = [0u8; abi::NLMSG_HDRLEN + abi::REQ_V2_LEN];
        put_header(&mut b, abi::SOCK_DIAG_BY_FAMILY, seq);
        let p = abi::NLMSG_HDRLEN;
        b[p] = match family {
            Family::Inet => abi::AF_INET,
            Family::Inet6 => abi::AF_INET6,
        };
        b[p + 1] = abi::IPPROTO_TCP;
        b[p + 2] = ext_bits(req);
        b[p + 4..p + 8].copy_from_slice(&state_bits(req).to_ne_bytes());
        // The sockid stays zero: a dump without bytecode ignores it.
        b
    }

    /// Builds the legacy request datagram: `nlmsghdr` (`TCPDIAG_GETSOCK`) +
    /// `struct inet_diag_req`. The kernel ignores its family for a dump and
    /// walks both (see [`abi::TCPDIAG_GETSOCK`]).
    pub fn request_bytes_both(
        seq: u32,
        req: &DumpRequest,
    ) -> [u8; abi::NLMSG_HDRLEN + abi::REQ_COMPAT_LEN] {
        let mut b = [0u8; abi::NLMSG_HDRLEN + abi::REQ_COMPAT_LEN];
        put_header(&mut b, abi::TCPDIAG_GETSOCK, seq);
        let p = abi::NLMSG_HDRLEN;
        // idiag_family stays AF_UNSPEC (0), src_len and dst_len 0.
        b[p + 3] = ext_bits(req);
        let at = p + abi::REQ_COMPAT_STATES;
        b[at..at + 4].copy_from_slice(&state_bits(req).to_ne_bytes());
        b
    }

    /// Builds an exact request for one socket: `nlmsghdr` (REQUEST only, no
    /// DUMP) + `struct inet_diag_req_v2` whose `id` names the socket by its
    /// 4-tuple and cookie (net/ipv4/inet_diag.c `inet_diag_find_one_icsk`:
    /// `idiag_src` is the local end, `idiag_dst` the remote one).
    pub fn exact_request_bytes(
        seq: u32,
        family: Family,
        local: &sockleak_model::Endpoint,
        remote: &sockleak_model::Endpoint,
        cookie: u64,
        want_info: bool,
    ) -> [u8; abi::NLMSG_HDRLEN + abi::REQ_V2_LEN] {
        let mut b = [0u8; abi::NLMSG_HDRLEN + abi::REQ_V2_LEN];
        put_header(&mut b, abi::SOCK_DIAG_BY_FAMILY, seq);
        b[6..8].copy_from_slice(&abi::NLM_F_REQUEST.to_ne_bytes());
        let p = abi::NLMSG_HDRLEN;
        b[p] = match family {
            Family::Inet => abi::AF_INET,
            Family::Inet6 => abi::AF_INET6,
        };
        b[p + 1] = abi::IPPROTO_TCP;
        b[p + 2] = ext_bits(&DumpRequest {
            states: sockleak_model::StateSet::ALL,
            want_info,
        });
        b[p + 4..p + 8].copy_from_slice(&u32::MAX.to_ne_bytes());
        // struct inet_diag_sockid at p + 8: be16 sport, be16 dport, be32
        // src[4], be32 dst[4], u32 if, u32 cookie[2] (low half first).
        let id = p + 8;
        b[id..id + 2].copy_from_slice(&local.port.to_be_bytes());
        b[id + 2..id + 4].copy_from_slice(&remote.port.to_be_bytes());
        let put_ip = |b: &mut [u8], at: usize, ip: std::net::IpAddr| match ip {
            std::net::IpAddr::V4(v4) => b[at..at + 4].copy_from_slice(&v4.octets()),
            std::net::IpAddr::V6(v6) => b[at..at + 16].copy_from_slice(&v6.octets()),
        };
        put_ip(&mut b, id + 4, local.ip);
        put_ip(&mut b, id + 20, remote.ip);
        b[id + 40..id + 44].copy_from_slice(&(cookie as u32).to_ne_bytes());
        b[id + 44..id + 48].copy_from_slice(&((cookie >> 32) as u32).to_ne_bytes());
        b
    }

    /// Sends an exact request for one socket (see
    /// [`exact_request_bytes`](Self::exact_request_bytes)).
    pub fn send_exact(
        &mut self,
        family: Family,
        local: &sockleak_model::Endpoint,
        remote: &sockleak_model::Endpoint,
        cookie: u64,
        want_info: bool,
    ) -> Result<(), DiagError> {
        self.seq = self.seq.wrapping_add(1);
        let msg = Self::exact_request_bytes(self.seq, family, local, remote, cookie, want_info);
        self.send(&msg, DiagOp::Request(Some(family)))
    }

    /// Sends a dump request for all TCP sockets in the states of `req`: of
    /// `family`, or of both families in one walk when `family` is `None`.
    pub fn send_dump(
        &mut self,
        family: Option<Family>,
        req: &DumpRequest,
    ) -> Result<(), DiagError> {
        self.seq = self.seq.wrapping_add(1);
        match family {
            Some(f) => self.send(
                &Self::request_bytes(self.seq, f, req),
                DiagOp::Request(family),
            ),
            None => self.send(
                &Self::request_bytes_both(self.seq, req),
                DiagOp::Request(None),
            ),
        }
    }

    fn send(&self, msg: &[u8], op: DiagOp) -> Result<(), DiagError> {
        // SAFETY: sockaddr_nl is plain old data; all-zero is a valid value.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        loop {
            // SAFETY: `msg` and `kernel` are valid for the lengths passed and
            // outlive the call.
            let n = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    msg.as_ptr().cast(),
                    msg.len(),
                    0,
                    (&kernel as *const libc::sockaddr_nl).cast(),
                    std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(DiagError::Io { op, source: e });
            }
            if n as usize != msg.len() {
                return Err(DiagError::Io {
                    op,
                    source: io::Error::new(io::ErrorKind::WriteZero, "short send"),
                });
            }
            return Ok(());
        }
    }

    /// Receives one datagram into `buf`, returning its length. A datagram
    /// larger than `buf` is an error, never a silent truncation.
    /// One datagram into the socket's own buffer ([`recv`](Self::recv)'s
    /// checks), for replies to exact requests.
    pub fn recv_reply(&mut self, family: Option<Family>) -> Result<&[u8], DiagError> {
        let mut buf = std::mem::take(&mut self.reply);
        buf.resize(RECV_BUF_LEN, 0);
        let got = self.recv(&mut buf, family);
        self.reply = buf;
        let n = got?;
        Ok(self.reply.get(..n).unwrap_or(&[]))
    }

    pub fn recv(&self, buf: &mut [u8], family: Option<Family>) -> Result<usize, DiagError> {
        let op = DiagOp::Dump(family);
        loop {
            // SAFETY: `buf` is valid for writes of `buf.len()` bytes. MSG_TRUNC
            // makes the return value the real datagram length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_TRUNC,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                        return Err(DiagError::Io {
                            op,
                            source: io::Error::new(
                                io::ErrorKind::TimedOut,
                                format!("no reply within {} s", RECV_TIMEOUT.as_secs()),
                            ),
                        })
                    }
                    _ => return Err(DiagError::Io { op, source: e }),
                }
            }
            let n = n as usize;
            if n > buf.len() {
                return Err(DiagError::Malformed {
                    op,
                    offset: buf.len(),
                    what: "datagram larger than the receive buffer (truncated)",
                });
            }
            return Ok(n);
        }
    }
}

/// `nlmsghdr` of a dump request: length, type, REQUEST|DUMP, sequence;
/// `nlmsg_pid` 0 addresses the kernel.
fn put_header(b: &mut [u8], ty: u16, seq: u32) {
    let len = b.len() as u32;
    b[0..4].copy_from_slice(&len.to_ne_bytes());
    b[4..6].copy_from_slice(&ty.to_ne_bytes());
    b[6..8].copy_from_slice(&(abi::NLM_F_REQUEST | abi::NLM_F_DUMP).to_ne_bytes());
    b[8..12].copy_from_slice(&seq.to_ne_bytes());
}

fn ext_bits(req: &DumpRequest) -> u8 {
    if req.want_info {
        abi::EXT_INFO | abi::EXT_MEMINFO
    } else {
        0
    }
}

/// The kernel's state mask. Request sockets of listeners live in state
/// TCP_NEW_SYN_RECV; they are asked for whenever SYN_RECV is wanted (ss does
/// the same).
fn state_bits(req: &DumpRequest) -> u32 {
    let mut states = req.states.0;
    if req.states.contains(TcpState::SynRecv) {
        states |= 1 << abi::TCP_NEW_SYN_RECV;
    }
    states
}

impl AsFd for DiagSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sockleak_model::StateSet;

    #[test]
    fn request_layout() {
        let mut states = StateSet::empty();
        states.insert(TcpState::CloseWait);
        states.insert(TcpState::SynRecv);
        let b = DiagSocket::request_bytes(
            7,
            Family::Inet6,
            &DumpRequest {
                states,
                want_info: true,
            },
        );
        assert_eq!(b.len(), 72);
        assert_eq!(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]), 72);
        assert_eq!(u16::from_ne_bytes([b[4], b[5]]), 20);
        assert_eq!(u16::from_ne_bytes([b[6], b[7]]), 0x301);
        assert_eq!(u32::from_ne_bytes([b[8], b[9], b[10], b[11]]), 7);
        assert_eq!(&b[16..20], &[10, 6, 0b11, 0]);
        let mask = u32::from_ne_bytes([b[20], b[21], b[22], b[23]]);
        assert_eq!(mask, (1 << 8) | (1 << 3) | (1 << 12));
        assert!(b[24..].iter().all(|x| *x == 0));

        let plain = DiagSocket::request_bytes(
            1,
            Family::Inet,
            &DumpRequest {
                states: StateSet::ALL,
                want_info: false,
            },
        );
        assert_eq!(&plain[16..20], &[2, 6, 0, 0]);
        assert_eq!(
            u32::from_ne_bytes([plain[20], plain[21], plain[22], plain[23]]),
            0xffe | (1 << 12)
        );
    }

    #[test]
    fn exact_request_layout() {
        use sockleak_model::Endpoint;
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
        let local = Endpoint::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
        let remote = Endpoint::new(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)), 40000);
        let b = DiagSocket::exact_request_bytes(
            5,
            Family::Inet,
            &local,
            &remote,
            0x1122_3344_5566_7788,
            false,
        );
        assert_eq!(b.len(), 72);
        // REQUEST only: an exact get, not a dump.
        assert_eq!(u16::from_ne_bytes([b[6], b[7]]), 0x1);
        assert_eq!(&b[16..20], &[2, 6, 0, 0]);
        assert_eq!(&b[24..26], &8080u16.to_be_bytes());
        assert_eq!(&b[26..28], &40000u16.to_be_bytes());
        assert_eq!(&b[28..32], &[127, 0, 0, 1]);
        assert!(b[32..44].iter().all(|x| *x == 0));
        assert_eq!(&b[44..48], &[10, 1, 2, 3]);
        assert_eq!(
            u32::from_ne_bytes([b[64], b[65], b[66], b[67]]),
            0x5566_7788
        );
        assert_eq!(
            u32::from_ne_bytes([b[68], b[69], b[70], b[71]]),
            0x1122_3344
        );

        let l6 = Endpoint::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 443);
        let b = DiagSocket::exact_request_bytes(6, Family::Inet6, &l6, &remote, 1, true);
        assert_eq!(&b[16..20], &[10, 6, 0b11, 0]);
        assert_eq!(&b[28..44], &Ipv6Addr::LOCALHOST.octets());
    }

    #[test]
    fn legacy_request_layout() {
        let mut states = StateSet::empty();
        states.insert(TcpState::CloseWait);
        states.insert(TcpState::SynRecv);
        let b = DiagSocket::request_bytes_both(
            9,
            &DumpRequest {
                states,
                want_info: true,
            },
        );
        // nlmsghdr 16 + struct inet_diag_req 60.
        assert_eq!(b.len(), 76);
        assert_eq!(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]), 76);
        assert_eq!(u16::from_ne_bytes([b[4], b[5]]), 18);
        assert_eq!(u16::from_ne_bytes([b[6], b[7]]), 0x301);
        assert_eq!(u32::from_ne_bytes([b[8], b[9], b[10], b[11]]), 9);
        // family AF_UNSPEC, src_len 0, dst_len 0, ext INFO|MEMINFO.
        assert_eq!(&b[16..20], &[0, 0, 0, 0b11]);
        // the sockid (48 bytes) is zero, then states, then dbs.
        assert!(b[20..68].iter().all(|x| *x == 0));
        let mask = u32::from_ne_bytes([b[68], b[69], b[70], b[71]]);
        assert_eq!(mask, (1 << 8) | (1 << 3) | (1 << 12));
        assert!(b[72..].iter().all(|x| *x == 0));
    }
}
