//! NETLINK_SOCK_DIAG: dumping every TCP socket of a network namespace, with a
//! `/proc/net/tcp` fallback for kernels without sock_diag.
//!
//! - [`wire`]: the netlink socket, the request and the receive loop (syscalls).
//! - [`decode`]: pure parsing of one received datagram into model sockets.
//! - [`tcp_info`]: `struct tcp_info` of any kernel's length.
//! - [`proc_net_tcp`]: the text fallback.
//! - [`abi`]: kernel constants and offsets, each citing its uapi header.
//!
//! [`dump`] works in the *calling thread's* network namespace: to dump another
//! namespace, call it from inside [`crate::netns::run_in`].

pub mod abi;
pub mod decode;
pub mod proc_net_tcp;
pub mod tcp_info;
pub mod wire;

pub use decode::{decode_batch, BatchEnd};
pub use proc_net_tcp::{
    dump_proc_net_tcp, is_synthetic_cookie, parse_proc_net_tcp, SYNTHETIC_COOKIE_BIT,
};
pub use tcp_info::decode_tcp_info;

use rustc_hash::FxHashSet as HashSet;
use sockleak_model::{Family, Socket, StateSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

/// What to ask the kernel for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DumpRequest {
    /// Kernel-side state filter (cheap: a CLOSE_WAIT-only dump of a busy host
    /// skips everything else in the kernel).
    pub states: StateSet,
    /// Ask for `tcp_info` and memory counters per socket (bigger replies).
    pub want_info: bool,
}

/// Counters of one dump, for `doctor` and for labelling partial results.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DumpStats {
    /// Rows appended to the output.
    pub rows: u64,
    /// Rows dropped because their cookie was already seen: a dump is not
    /// atomic and a socket that moves between hash chains can appear twice.
    pub duplicates: u64,
    /// Rows or attributes that could not be decoded (skipped, counted).
    pub malformed: u64,
    /// Rows whose `tcp_info` was shorter than the fields sockleak reads
    /// (older kernel): the missing ones are 0 / `None`.
    pub short_info: u64,
}

impl DumpStats {
    /// Adds another dump's counters to these.
    pub fn add(&mut self, other: &DumpStats) {
        self.rows += other.rows;
        self.duplicates += other.duplicates;
        self.malformed += other.malformed;
        self.short_info += other.short_info;
    }
}

/// The operation a [`DiagError`] happened in, for its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiagOp {
    /// `socket(AF_NETLINK, SOCK_DGRAM, NETLINK_SOCK_DIAG)` and its options.
    Open,
    /// Sending the dump request of a family.
    Request(Option<Family>),
    /// Receiving and decoding the dump of a family (`None`: not known at the
    /// point of decoding; [`dump`] fills it in).
    Dump(Option<Family>),
}

fn family_name(f: Family) -> &'static str {
    match f {
        Family::Inet => "AF_INET",
        Family::Inet6 => "AF_INET6",
    }
}

impl fmt::Display for DiagOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiagOp::Open => f.write_str("open NETLINK_SOCK_DIAG socket"),
            DiagOp::Request(None) => f.write_str("sock_diag dump request"),
            DiagOp::Request(Some(fam)) => {
                write!(f, "sock_diag dump request ({})", family_name(*fam))
            }
            DiagOp::Dump(None) => f.write_str("sock_diag dump"),
            DiagOp::Dump(Some(fam)) => write!(f, "sock_diag dump ({})", family_name(*fam)),
        }
    }
}

/// A positive errno value, displayed by its symbolic name ("EINVAL").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            libc::EPERM => "EPERM",
            libc::ENOENT => "ENOENT",
            libc::ESRCH => "ESRCH",
            libc::EINTR => "EINTR",
            libc::EIO => "EIO",
            libc::EBADF => "EBADF",
            libc::EAGAIN => "EAGAIN",
            libc::ENOMEM => "ENOMEM",
            libc::EACCES => "EACCES",
            libc::EFAULT => "EFAULT",
            libc::EBUSY => "EBUSY",
            libc::EINVAL => "EINVAL",
            libc::EMSGSIZE => "EMSGSIZE",
            libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
            libc::EOPNOTSUPP => "EOPNOTSUPP",
            libc::EAFNOSUPPORT => "EAFNOSUPPORT",
            libc::ENOBUFS => "ENOBUFS",
            libc::ESTALE => "ESTALE",
            _ => return None,
        })
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "errno {}", self.0),
        }
    }
}

/// Why a sock_diag dump failed. Messages name the operation and the object.
#[derive(Debug, thiserror::Error)]
pub enum DiagError {
    /// A syscall on the netlink socket failed.
    #[error("{op}: {source}")]
    Io { op: DiagOp, source: std::io::Error },
    /// The kernel has no sock_diag (socket() fails with EPROTONOSUPPORT) or no
    /// inet_diag/tcp_diag handler (the request fails with ENOENT). The
    /// `/proc/net/tcp` fallback ([`dump_proc_net_tcp`]) still works there.
    #[error("sock_diag unsupported: {op}: {errno} (kernel lacks NETLINK_SOCK_DIAG or tcp_diag)")]
    Unsupported { op: DiagOp, errno: Errno },
    /// The kernel answered the request with an error.
    #[error("{op}: kernel error {errno}")]
    Kernel { op: DiagOp, errno: Errno },
    /// The reply could not be framed (a message header runs past the datagram,
    /// a datagram was truncated...): the rest of the dump cannot be trusted.
    #[error("{op}: malformed reply at byte {offset}: {what}")]
    Malformed {
        op: DiagOp,
        offset: usize,
        what: &'static str,
    },
}

impl DiagError {
    /// True when sock_diag is missing on this kernel (use the fallback).
    pub fn is_unsupported(&self) -> bool {
        matches!(self, DiagError::Unsupported { .. })
    }

    /// Names the family in a decode error that did not know it.
    fn with_family(mut self, family: Family) -> DiagError {
        let op = match &mut self {
            DiagError::Io { op, .. }
            | DiagError::Unsupported { op, .. }
            | DiagError::Kernel { op, .. }
            | DiagError::Malformed { op, .. } => op,
        };
        if *op == DiagOp::Dump(None) {
            *op = DiagOp::Dump(Some(family));
        }
        self
    }
}

/// Upper bound on datagrams per dump request, so that a kernel (or a test double)
/// that never sends NLMSG_DONE cannot keep us looping: at ~200 rows per
/// 64 KiB datagram this is far beyond any real table.
const MAX_DATAGRAMS_PER_DUMP: usize = 1 << 22;

/// Set once the kernel refused the one-walk legacy dump: from then on every
/// dump of this process asks per family.
static BOTH_REFUSED: AtomicBool = AtomicBool::new(false);

/// Dumps every TCP socket (IPv4 and IPv6) in the calling thread's network
/// namespace, appending model sockets (owners empty) stamped with `netns` and
/// deduplicated by cookie (a dump is not atomic). On error, rows appended
/// before it stay in `out`.
///
/// Asks for both families in one `TCPDIAG_GETSOCK` dump: the kernel walks the
/// whole established hash of the host (all namespaces share it) once per dump
/// request, and at 150k sockets one walk is ~15–20 ms of CPU per namespace
/// (docs/benchmarks.md). A kernel that refuses it (EINVAL, EOPNOTSUPP, ENOENT
/// before any row) gets the `SOCK_DIAG_BY_FAMILY` dumps, IPv4 then IPv6.
pub fn dump(netns: u64, req: &DumpRequest, out: &mut Vec<Socket>) -> Result<DumpStats, DiagError> {
    dump_with(netns, req, out, !BOTH_REFUSED.load(Ordering::Relaxed))
}

/// [`dump`] with one `SOCK_DIAG_BY_FAMILY` request per family, IPv4 then
/// IPv6: what `dump` falls back to, public so that tests can compare the two.
pub fn dump_by_family(
    netns: u64,
    req: &DumpRequest,
    out: &mut Vec<Socket>,
) -> Result<DumpStats, DiagError> {
    dump_with(netns, req, out, false)
}

fn dump_with(
    netns: u64,
    req: &DumpRequest,
    out: &mut Vec<Socket>,
    both_first: bool,
) -> Result<DumpStats, DiagError> {
    let mut sock = wire::DiagSocket::open()?;
    let mut buf = vec![0u8; wire::RECV_BUF_LEN];
    let mut seen: HashSet<u64> = HashSet::default();
    seen.reserve(out.capacity().saturating_sub(out.len()));
    let mut stats = DumpStats::default();
    if both_first {
        let before = out.len();
        match dump_one(
            &mut sock, None, netns, req, &mut buf, out, &mut seen, &mut stats,
        ) {
            Ok(()) => return Ok(stats),
            Err(e) if legacy_refused(&e, out.len() > before) => {
                BOTH_REFUSED.store(true, Ordering::Relaxed);
            }
            Err(e) => return Err(e),
        }
    }
    for family in [Family::Inet, Family::Inet6] {
        dump_one(
            &mut sock,
            Some(family),
            netns,
            req,
            &mut buf,
            out,
            &mut seen,
            &mut stats,
        )?;
    }
    Ok(stats)
}

/// One socket by its 4-tuple and cookie, through `sock` (a diag socket
/// opened in the socket's network namespace, which it keeps for life: one
/// per namespace can serve many lookups from any thread). `Ok(None)`: no
/// such socket any more (ENOENT), or another socket now has that tuple
/// (ESTALE: the cookie did not match). For a TIME_WAIT socket the kernel
/// answers with the timewait socket, which keeps the cookie.
///
/// What the TCP state tracker (`bpf::changes`) is for: a sampler can refresh
/// the sockets that changed instead of dumping them all.
pub fn get(
    sock: &mut wire::DiagSocket,
    netns: u64,
    family: Family,
    local: &sockleak_model::Endpoint,
    remote: &sockleak_model::Endpoint,
    cookie: u64,
    want_info: bool,
) -> Result<Option<Socket>, DiagError> {
    sock.send_exact(family, local, remote, cookie, want_info)?;
    let reply = sock.recv_reply(Some(family))?;
    let mut out = Vec::with_capacity(1);
    let mut stats = DumpStats::default();
    match decode_batch(reply, netns, &mut out, &mut HashSet::default(), &mut stats) {
        Ok(_) => Ok(out.pop()),
        Err(DiagError::Kernel { errno, .. })
            if errno.0 == libc::ENOENT || errno.0 == libc::ESTALE =>
        {
            Ok(None)
        }
        Err(e) => Err(e.with_family(family)),
    }
}

/// True when the one-walk `TCPDIAG_GETSOCK` dump failed because this kernel
/// does not serve it, before any row came: EINVAL (the type gone from
/// `sock_diag_rcv_msg`), EOPNOTSUPP (no inet compat handler), ENOENT (no
/// tcp_diag). Anything else, or a failure after rows, is a real error.
fn legacy_refused(e: &DiagError, got_rows: bool) -> bool {
    matches!(e, DiagError::Kernel { errno, .. }
        if !got_rows && [libc::EINVAL, libc::EOPNOTSUPP, libc::ENOENT].contains(&errno.0))
}

/// Sends one dump request (one family, or both when `family` is `None`) and
/// receives its reply up to NLMSG_DONE.
#[allow(clippy::too_many_arguments)]
fn dump_one(
    sock: &mut wire::DiagSocket,
    family: Option<Family>,
    netns: u64,
    req: &DumpRequest,
    buf: &mut [u8],
    out: &mut Vec<Socket>,
    seen: &mut HashSet<u64>,
    stats: &mut DumpStats,
) -> Result<(), DiagError> {
    sock.send_dump(family, req)?;
    for _ in 0..MAX_DATAGRAMS_PER_DUMP {
        let n = sock.recv(buf, family)?;
        let batch = buf.get(..n).unwrap_or(&[]);
        match decode_batch(batch, netns, out, seen, stats) {
            Ok(BatchEnd::More) => {}
            Ok(BatchEnd::Done) => return Ok(()),
            Err(DiagError::Kernel { errno, .. })
                if family.is_some()
                    && (errno.0 == libc::ENOENT || errno.0 == libc::EPROTONOSUPPORT) =>
            {
                return Err(DiagError::Unsupported {
                    op: DiagOp::Dump(family),
                    errno,
                });
            }
            Err(e) => {
                return Err(match family {
                    Some(f) => e.with_family(f),
                    None => e,
                })
            }
        }
    }
    Err(DiagError::Malformed {
        op: DiagOp::Dump(family),
        offset: 0,
        what: "no NLMSG_DONE after the maximum number of datagrams",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_refusal_before_any_row_falls_back_to_per_family_dumps() {
        let kernel = |errno| DiagError::Kernel {
            op: DiagOp::Dump(None),
            errno: Errno(errno),
        };
        for errno in [libc::EINVAL, libc::EOPNOTSUPP, libc::ENOENT] {
            assert!(legacy_refused(&kernel(errno), false), "{errno}");
            assert!(!legacy_refused(&kernel(errno), true), "{errno} after rows");
        }
        assert!(!legacy_refused(&kernel(libc::EPERM), false));
        assert!(!legacy_refused(&kernel(libc::ENOBUFS), false));
        let io = DiagError::Io {
            op: DiagOp::Dump(None),
            source: std::io::Error::from_raw_os_error(libc::EINVAL),
        };
        assert!(!legacy_refused(&io, false));
    }

    #[test]
    fn error_messages_name_operation_and_object() {
        let e = DiagError::Io {
            op: DiagOp::Open,
            source: std::io::Error::from_raw_os_error(libc::EACCES),
        };
        assert_eq!(
            e.to_string(),
            "open NETLINK_SOCK_DIAG socket: Permission denied (os error 13)"
        );
        let e = DiagError::Unsupported {
            op: DiagOp::Open,
            errno: Errno(libc::EPROTONOSUPPORT),
        };
        assert!(e.is_unsupported());
        assert_eq!(
            e.to_string(),
            "sock_diag unsupported: open NETLINK_SOCK_DIAG socket: EPROTONOSUPPORT \
             (kernel lacks NETLINK_SOCK_DIAG or tcp_diag)"
        );
        let e = DiagError::Kernel {
            op: DiagOp::Dump(Some(Family::Inet6)),
            errno: Errno(libc::EINVAL),
        };
        assert_eq!(
            e.to_string(),
            "sock_diag dump (AF_INET6): kernel error EINVAL"
        );
        assert_eq!(Errno(4095).to_string(), "errno 4095");
        assert_eq!(
            DiagOp::Request(Some(Family::Inet)).to_string(),
            "sock_diag dump request (AF_INET)"
        );
    }
}
