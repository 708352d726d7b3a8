//! Pure decoding of one received sock_diag datagram into model sockets.
//!
//! No syscalls and no per-socket allocation beyond the `Socket` itself, so it
//! is tested on recorded datagrams (tests/fixtures/diag/) and fuzzed with
//! arbitrary bytes. Framing errors (a header that runs past the datagram) end
//! the batch with [`DiagError::Malformed`]; a bad row or attribute inside a
//! well-framed message is counted in [`DumpStats::malformed`] and skipped.

use super::abi::{self, msg};
use super::tcp_info::{decode_tcp_info, TCP_INFO_FIELDS_END};
use super::{DiagError, DiagOp, DumpStats, Errno};
use rustc_hash::FxHashSet as HashSet;
use sockleak_model::{Cookie, Endpoint, Family, MemInfo, Socket, TcpState, Timer};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether a dump continues after this datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchEnd {
    /// No NLMSG_DONE yet: receive another datagram.
    More,
    /// NLMSG_DONE seen: the dump of this family is complete.
    Done,
}

fn malformed(offset: usize, what: &'static str) -> DiagError {
    DiagError::Malformed {
        op: DiagOp::Dump(None),
        offset,
        what,
    }
}

/// Decodes one received buffer, which may hold many netlink messages.
///
/// Rows go to `out` unless their cookie is already in `seen` (counted as
/// duplicates). Returns [`BatchEnd::Done`] at NLMSG_DONE (anything after it is
/// ignored), [`DiagError::Kernel`] for an NLMSG_ERROR with a non-zero code or
/// a DONE that carries one.
pub fn decode_batch(
    buf: &[u8],
    netns: u64,
    out: &mut Vec<Socket>,
    seen: &mut HashSet<u64>,
    stats: &mut DumpStats,
) -> Result<BatchEnd, DiagError> {
    let mut at = 0usize;
    while at < buf.len() {
        let rest = &buf[at..];
        if rest.len() < abi::NLMSG_HDRLEN {
            return Err(malformed(
                at,
                "trailing bytes shorter than a netlink header",
            ));
        }
        // nlmsghdr: u32 len, u16 type, u16 flags, u32 seq, u32 pid.
        let len = abi::u32_ne(rest, 0).unwrap_or(0) as usize;
        let ty = abi::u16_ne(rest, 4).unwrap_or(0);
        if len < abi::NLMSG_HDRLEN {
            return Err(malformed(at, "netlink message length below header size"));
        }
        if len > rest.len() {
            return Err(malformed(
                at,
                "netlink message runs past the end of the datagram",
            ));
        }
        let payload = &rest[abi::NLMSG_HDRLEN..len];
        match ty {
            abi::NLMSG_NOOP => {}
            abi::NLMSG_DONE => {
                // With NLM_F_MULTI the payload is the dump's final `int` status.
                if let Some(code) = abi::i32_ne(payload, 0) {
                    if code < 0 {
                        return Err(DiagError::Kernel {
                            op: DiagOp::Dump(None),
                            errno: Errno(code.saturating_neg()),
                        });
                    }
                }
                return Ok(BatchEnd::Done);
            }
            abi::NLMSG_ERROR => {
                let code = abi::i32_ne(payload, 0)
                    .ok_or_else(|| malformed(at, "NLMSG_ERROR without an error code"))?;
                if code != 0 {
                    return Err(DiagError::Kernel {
                        op: DiagOp::Dump(None),
                        errno: Errno(code.saturating_neg()),
                    });
                }
                // 0 is an ACK: nothing to do.
            }
            abi::NLMSG_OVERRUN => return Err(malformed(at, "NLMSG_OVERRUN: the kernel lost data")),
            abi::SOCK_DIAG_BY_FAMILY | abi::TCPDIAG_GETSOCK => {
                match decode_row(payload, netns, stats) {
                    Some(sock) => {
                        if seen.insert(sock.cookie.0) {
                            out.push(sock);
                            stats.rows += 1;
                        } else {
                            stats.duplicates += 1;
                        }
                    }
                    None => stats.malformed += 1,
                }
            }
            _ => stats.malformed += 1,
        }
        // The last message of a datagram may lack its alignment padding.
        at = at.saturating_add(abi::nlmsg_align(len)).min(buf.len());
    }
    Ok(BatchEnd::More)
}

/// An address from `idiag_src`/`idiag_dst` (16 bytes, network order).
pub(crate) fn addr(family: Family, raw: [u8; 16]) -> IpAddr {
    match family {
        Family::Inet => IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3])),
        Family::Inet6 => IpAddr::V6(Ipv6Addr::from(raw)),
    }
}

/// One `struct inet_diag_msg` plus its attributes; None when the fixed part
/// is short or names an unknown family or state.
fn decode_row(p: &[u8], netns: u64, stats: &mut DumpStats) -> Option<Socket> {
    if p.len() < abi::MSG_LEN {
        return None;
    }
    let family = match abi::u8_at(p, msg::FAMILY)? {
        abi::AF_INET => Family::Inet,
        abi::AF_INET6 => Family::Inet6,
        _ => return None,
    };
    let state = TcpState::from_kernel(abi::u8_at(p, msg::STATE)?)?;
    let cookie_lo = abi::u32_ne(p, msg::COOKIE)?;
    let cookie_hi = abi::u32_ne(p, msg::COOKIE + 4)?;
    let mut sock = Socket {
        state,
        family,
        local: Endpoint::new(
            addr(family, abi::bytes::<16>(p, msg::SRC)?),
            abi::u16_be(p, msg::SPORT)?,
        ),
        remote: Endpoint::new(
            addr(family, abi::bytes::<16>(p, msg::DST)?),
            abi::u16_be(p, msg::DPORT)?,
        ),
        recv_q: abi::u32_ne(p, msg::RQUEUE)?,
        send_q: abi::u32_ne(p, msg::WQUEUE)?,
        cookie: Cookie(u64::from(cookie_lo) | (u64::from(cookie_hi) << 32)),
        inode: u64::from(abi::u32_ne(p, msg::INODE)?),
        uid: abi::u32_ne(p, msg::UID)?,
        netns,
        timer: Timer::from_kernel(abi::u8_at(p, msg::TIMER)?),
        timer_expires_ms: abi::u32_ne(p, msg::EXPIRES)?,
        retrans: abi::u8_at(p, msg::RETRANS)?,
        tcp_info: None,
        mem: None,
        owners: sockleak_model::Owners::new(),
    };
    decode_attrs(
        &p[abi::nlmsg_align(abi::MSG_LEN).min(p.len())..],
        &mut sock,
        stats,
    );
    Some(sock)
}

/// Walks the rtattrs after the fixed message. A malformed attribute ends the
/// walk (counted once); the row itself is kept: its identity is intact.
fn decode_attrs(mut a: &[u8], sock: &mut Socket, stats: &mut DumpStats) {
    while !a.is_empty() {
        let (Some(len), Some(ty)) = (abi::u16_ne(a, 0), abi::u16_ne(a, 2)) else {
            stats.malformed += 1;
            return;
        };
        let len = usize::from(len);
        if len < abi::RTA_HDRLEN || len > a.len() {
            stats.malformed += 1;
            return;
        }
        let data = &a[abi::RTA_HDRLEN..len];
        match ty & abi::NLA_TYPE_MASK {
            abi::INET_DIAG_INFO => {
                if data.len() < TCP_INFO_FIELDS_END {
                    stats.short_info += 1;
                }
                sock.tcp_info = Some(decode_tcp_info(data));
            }
            abi::INET_DIAG_MEMINFO => {
                if data.len() >= abi::MEMINFO_LEN {
                    sock.mem = Some(MemInfo {
                        rmem: abi::u32_ne(data, 0).unwrap_or(0),
                        wmem: abi::u32_ne(data, 4).unwrap_or(0),
                        fmem: abi::u32_ne(data, 8).unwrap_or(0),
                        tmem: abi::u32_ne(data, 12).unwrap_or(0),
                    });
                } else {
                    stats.malformed += 1;
                }
            }
            // Unknown or unrequested attributes (INET_DIAG_SHUTDOWN, CONG,
            // CGROUP_ID, ...) are ignored.
            _ => {}
        }
        a = &a[abi::nlmsg_align(len).min(a.len())..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: usize, ty: u16) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(len as u32).to_ne_bytes());
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(&0u16.to_ne_bytes());
        v.extend_from_slice(&1u32.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        v
    }

    fn row(state: u8, family: u8, cookie: u64, attrs: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; abi::MSG_LEN];
        p[msg::FAMILY] = family;
        p[msg::STATE] = state;
        p[msg::SPORT..msg::SPORT + 2].copy_from_slice(&8080u16.to_be_bytes());
        p[msg::DPORT..msg::DPORT + 2].copy_from_slice(&40000u16.to_be_bytes());
        p[msg::SRC..msg::SRC + 4].copy_from_slice(&[127, 0, 0, 1]);
        p[msg::DST..msg::DST + 4].copy_from_slice(&[127, 0, 0, 2]);
        p[msg::COOKIE..msg::COOKIE + 4].copy_from_slice(&(cookie as u32).to_ne_bytes());
        p[msg::COOKIE + 4..msg::COOKIE + 8].copy_from_slice(&((cookie >> 32) as u32).to_ne_bytes());
        p[msg::RQUEUE..msg::RQUEUE + 4].copy_from_slice(&6u32.to_ne_bytes());
        p[msg::INODE..msg::INODE + 4].copy_from_slice(&777u32.to_ne_bytes());
        p.extend_from_slice(attrs);
        let mut m = header(abi::NLMSG_HDRLEN + p.len(), abi::SOCK_DIAG_BY_FAMILY);
        m.extend_from_slice(&p);
        while !m.len().is_multiple_of(4) {
            m.push(0);
        }
        m
    }

    fn done() -> Vec<u8> {
        let mut m = header(abi::NLMSG_HDRLEN + 4, abi::NLMSG_DONE);
        m.extend_from_slice(&0i32.to_ne_bytes());
        m
    }

    fn run(buf: &[u8]) -> (Result<BatchEnd, DiagError>, Vec<Socket>, DumpStats) {
        let mut out = Vec::new();
        let mut seen = HashSet::default();
        let mut stats = DumpStats::default();
        let r = decode_batch(buf, 42, &mut out, &mut seen, &mut stats);
        (r, out, stats)
    }

    #[test]
    fn row_fields_cookie_halves_and_done() {
        let mut buf = row(8, abi::AF_INET, 0x1122_3344_5566_7788, &[]);
        buf.extend(done());
        let (r, out, stats) = run(&buf);
        assert!(matches!(r, Ok(BatchEnd::Done)));
        assert_eq!(stats.rows, 1);
        let s = &out[0];
        assert_eq!(s.state, TcpState::CloseWait);
        assert_eq!(s.local.to_string(), "127.0.0.1:8080");
        assert_eq!(s.remote.to_string(), "127.0.0.2:40000");
        assert_eq!(s.cookie, Cookie(0x1122_3344_5566_7788));
        assert_eq!((s.recv_q, s.inode, s.netns), (6, 777, 42));
        assert!(s.tcp_info.is_none() && s.owners.is_empty());
    }

    #[test]
    fn duplicates_unknown_states_and_new_syn_recv() {
        let mut buf = row(1, abi::AF_INET, 5, &[]);
        buf.extend(row(1, abi::AF_INET, 5, &[]));
        buf.extend(row(13, abi::AF_INET, 6, &[]));
        buf.extend(row(abi::TCP_NEW_SYN_RECV, abi::AF_INET, 7, &[]));
        buf.extend(row(1, 99, 8, &[]));
        let (r, out, stats) = run(&buf);
        assert!(matches!(r, Ok(BatchEnd::More)));
        assert_eq!(
            (stats.rows, stats.duplicates, stats.malformed),
            (2, 1, 2),
            "{stats:?}"
        );
        assert_eq!(out[1].state, TcpState::SynRecv);
    }

    #[test]
    fn attributes_short_info_meminfo_and_bad_attr() {
        let mut attrs = Vec::new();
        // INET_DIAG_MEMINFO, 16 bytes.
        attrs.extend_from_slice(&20u16.to_ne_bytes());
        attrs.extend_from_slice(&abi::INET_DIAG_MEMINFO.to_ne_bytes());
        for v in [1u32, 2, 3, 4] {
            attrs.extend_from_slice(&v.to_ne_bytes());
        }
        // INET_DIAG_INFO, 104 bytes (old kernel).
        attrs.extend_from_slice(&108u16.to_ne_bytes());
        attrs.extend_from_slice(&abi::INET_DIAG_INFO.to_ne_bytes());
        attrs.extend_from_slice(&[0u8; 104]);
        // An attribute claiming more than is there.
        attrs.extend_from_slice(&200u16.to_ne_bytes());
        attrs.extend_from_slice(&9u16.to_ne_bytes());
        let (_, out, stats) = run(&row(1, abi::AF_INET6, 9, &attrs));
        assert_eq!((stats.rows, stats.short_info, stats.malformed), (1, 1, 1));
        assert_eq!(
            out[0].mem,
            Some(MemInfo {
                rmem: 1,
                wmem: 2,
                fmem: 3,
                tmem: 4
            })
        );
        assert_eq!(out[0].tcp_info.as_ref().and_then(|i| i.bytes_acked), None);
        assert!(out[0].local.ip.is_ipv6());
    }

    #[test]
    fn kernel_errors_and_framing_errors() {
        let mut err = header(abi::NLMSG_HDRLEN + 20, abi::NLMSG_ERROR);
        err.extend_from_slice(&(-libc::EINVAL).to_ne_bytes());
        err.extend_from_slice(&[0u8; 16]);
        let (r, _, _) = run(&err);
        let e = r.expect_err("NLMSG_ERROR");
        assert_eq!(e.to_string(), "sock_diag dump: kernel error EINVAL");
        assert_eq!(
            e.with_family(Family::Inet6).to_string(),
            "sock_diag dump (AF_INET6): kernel error EINVAL"
        );

        let mut done_err = header(abi::NLMSG_HDRLEN + 4, abi::NLMSG_DONE);
        done_err.extend_from_slice(&(-libc::EBUSY).to_ne_bytes());
        assert!(matches!(
            run(&done_err).0,
            Err(DiagError::Kernel {
                errno: Errno(libc::EBUSY),
                ..
            })
        ));

        let mut long = row(1, abi::AF_INET, 1, &[]);
        long.truncate(50);
        let e = run(&long).0.expect_err("truncated");
        assert_eq!(
            e.to_string(),
            "sock_diag dump: malformed reply at byte 0: netlink message runs past the end of the datagram"
        );
        assert!(matches!(
            run(&[1, 2, 3]).0,
            Err(DiagError::Malformed { .. })
        ));
        assert!(matches!(
            run(&header(3, 20)).0,
            Err(DiagError::Malformed { .. })
        ));
        assert!(matches!(run(&[]).0, Ok(BatchEnd::More)));
    }

    #[test]
    fn short_row_is_counted_not_fatal() {
        let mut m = header(abi::NLMSG_HDRLEN + 8, abi::SOCK_DIAG_BY_FAMILY);
        m.extend_from_slice(&[2, 1, 0, 0, 0, 0, 0, 0]);
        m.extend(done());
        let (r, out, stats) = run(&m);
        assert!(matches!(r, Ok(BatchEnd::Done)));
        assert!(out.is_empty());
        assert_eq!(stats.malformed, 1);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn never_panics_on_arbitrary_bytes(buf in proptest::collection::vec(any::<u8>(), 0..2048)) {
                let _ = run(&buf);
            }

            /// Well-framed messages of the diag type with arbitrary payloads
            /// reach the row and attribute decoders.
            #[test]
            fn never_panics_on_framed_garbage(
                payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..400), 0..8),
                ty in prop_oneof![Just(abi::SOCK_DIAG_BY_FAMILY), Just(abi::NLMSG_ERROR), Just(abi::NLMSG_DONE), any::<u16>()],
            ) {
                let mut buf = Vec::new();
                for p in &payloads {
                    buf.extend(header(abi::NLMSG_HDRLEN + p.len(), ty));
                    buf.extend_from_slice(p);
                    while !buf.len().is_multiple_of(4) { buf.push(0); }
                }
                let (_, out, stats) = run(&buf);
                prop_assert_eq!(out.len() as u64, stats.rows);
            }
        }
    }
}
