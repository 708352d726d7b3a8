//! Fallback for kernels without sock_diag: the text tables
//! `/proc/net/tcp` and `/proc/net/tcp6` (net/ipv4/tcp_ipv4.c `get_tcp4_sock`,
//! net/ipv6/tcp_ipv6.c `get_tcp6_sock`).
//!
//! What this source lacks, compared with sock_diag:
//! - **No cookie.** Each row gets a synthetic one: FNV-1a of (family, netns,
//!   4-tuple, inode) with bit 63 set ([`SYNTHETIC_COOKIE_BIT`]). Real kernel
//!   cookies count up from 1 and never reach bit 63, so the two kinds cannot
//!   collide. A synthetic cookie is stable while the socket keeps its 4-tuple
//!   and inode, so history across snapshots still works; it changes when a
//!   socket enters TIME_WAIT (inode becomes 0), where a real cookie survives.
//!   It must never be passed to SOCK_DESTROY ([`is_synthetic_cookie`]).
//! - No `tcp_info` or memory counters.
//! - For LISTEN rows `tx_queue` is not the backlog (sock_diag's Send-Q) but
//!   0; `rx_queue` is the accept queue as in sock_diag.
//! - Timer expiry is in clock ticks of USER_HZ, which is 100 on every Linux
//!   ABI; it is converted to milliseconds with that constant.
//! - The file is generated in pieces (seq_file), so like a dump it is not
//!   atomic: rows are deduplicated by synthetic cookie.

use super::DumpStats;
use sockleak_model::{Cookie, Endpoint, Family, Socket, StateSet, TcpState, Timer};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Set in every cookie this module synthesizes.
pub const SYNTHETIC_COOKIE_BIT: u64 = 1 << 63;

/// True for cookies made up by the `/proc/net/tcp` fallback: not kernel
/// cookies, so not usable to address a socket in the kernel.
pub fn is_synthetic_cookie(c: Cookie) -> bool {
    c.0 & SYNTHETIC_COOKIE_BIT != 0
}

/// USER_HZ (include/uapi/asm-generic/param.h): the unit of `tm->when`.
const USER_HZ: u64 = 100;

/// FNV-1a 64: tiny, and stable across Rust releases and runs (unlike std's
/// `DefaultHasher`), which history files keyed by cookie need.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

fn write_ip(h: &mut Fnv, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => h.write(&v4.octets()),
        IpAddr::V6(v6) => h.write(&v6.octets()),
    }
}

/// The synthetic cookie of a row (see the module docs).
pub fn synthetic_cookie(
    family: Family,
    netns: u64,
    local: Endpoint,
    remote: Endpoint,
    inode: u64,
) -> Cookie {
    let mut h = Fnv::new();
    h.write(&[match family {
        Family::Inet => 4,
        Family::Inet6 => 6,
    }]);
    h.write(&netns.to_le_bytes());
    write_ip(&mut h, local.ip);
    h.write(&local.port.to_le_bytes());
    write_ip(&mut h, remote.ip);
    h.write(&remote.port.to_le_bytes());
    h.write(&inode.to_le_bytes());
    Cookie(h.0 | SYNTHETIC_COOKIE_BIT)
}

/// `%08X:%04X` (IPv4) or `%08X%08X%08X%08X:%04X` (IPv6). The address words
/// are the in-memory (network-order) u32s printed as native integers, so
/// `to_ne_bytes` restores the bytes on the machine that wrote the file.
fn parse_endpoint(s: &str, family: Family) -> Option<Endpoint> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match family {
        Family::Inet => {
            if addr.len() != 8 {
                return None;
            }
            let w = u32::from_str_radix(addr, 16).ok()?;
            IpAddr::V4(Ipv4Addr::from(w.to_ne_bytes()))
        }
        Family::Inet6 => {
            if addr.len() != 32 {
                return None;
            }
            let mut b = [0u8; 16];
            for (i, chunk) in b.chunks_exact_mut(4).enumerate() {
                let w = u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok()?;
                chunk.copy_from_slice(&w.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
    };
    Some(Endpoint::new(ip, port))
}

fn hex_pair(s: &str) -> Option<(&str, &str)> {
    s.split_once(':')
}

/// One data line: `sl: local remote st tx:rx tr:when retrnsmt uid timeout
/// inode ...`. None for a line that does not parse.
fn parse_line(line: &str, family: Family, netns: u64) -> Option<Socket> {
    let mut f = line.split_ascii_whitespace();
    let _sl = f.next()?.strip_suffix(':')?;
    let local = parse_endpoint(f.next()?, family)?;
    let remote = parse_endpoint(f.next()?, family)?;
    let state = TcpState::from_kernel(u8::from_str_radix(f.next()?, 16).ok()?)?;
    let (tx, rx) = hex_pair(f.next()?)?;
    let (tr, when) = hex_pair(f.next()?)?;
    let retrans = u32::from_str_radix(f.next()?, 16).ok()?;
    let uid: u32 = f.next()?.parse().ok()?;
    let _timeout = f.next()?;
    let inode: u64 = f.next()?.parse().ok()?;
    let when_ticks = u64::from_str_radix(when, 16).ok()?;
    Some(Socket {
        state,
        family,
        local,
        remote,
        recv_q: u32::from_str_radix(rx, 16).ok()?,
        send_q: u32::from_str_radix(tx, 16).ok()?,
        cookie: synthetic_cookie(family, netns, local, remote, inode),
        inode,
        uid,
        netns,
        timer: Timer::from_kernel(u8::from_str_radix(tr, 16).ok()?),
        timer_expires_ms: u32::try_from(when_ticks.saturating_mul(1000 / USER_HZ))
            .unwrap_or(u32::MAX),
        retrans: u8::try_from(retrans).unwrap_or(u8::MAX),
        tcp_info: None,
        mem: None,
        owners: sockleak_model::Owners::new(),
    })
}

fn parse_filtered(
    text: &str,
    family: Family,
    netns: u64,
    states: StateSet,
    out: &mut Vec<Socket>,
    stats: &mut DumpStats,
) {
    let mut seen = HashSet::new();
    for line in text.lines() {
        let t = line.trim_start();
        // The header line starts with "sl"; blank lines carry nothing.
        if t.is_empty() || t.starts_with("sl ") {
            continue;
        }
        match parse_line(t, family, netns) {
            Some(s) if !states.contains(s.state) => {}
            Some(s) => {
                if seen.insert(s.cookie) {
                    out.push(s);
                    stats.rows += 1;
                } else {
                    stats.duplicates += 1;
                }
            }
            None => stats.malformed += 1,
        }
    }
}

/// Parses the text of `/proc/net/tcp` (`family` Inet) or `/proc/net/tcp6`
/// (Inet6), appending every row stamped with `netns`. Unparseable lines are
/// counted as malformed; rows repeated within `text` as duplicates.
pub fn parse_proc_net_tcp(
    text: &str,
    family: Family,
    netns: u64,
    out: &mut Vec<Socket>,
    stats: &mut DumpStats,
) {
    parse_filtered(text, family, netns, StateSet(u32::MAX), out, stats);
}

/// Reads `/proc/thread-self/net/tcp` and `tcp6` (the calling thread's network
/// namespace) and appends the rows in `states`. A missing `tcp6` (IPv6
/// disabled) is not an error.
pub fn dump_proc_net_tcp(
    netns: u64,
    states: StateSet,
    out: &mut Vec<Socket>,
) -> std::io::Result<DumpStats> {
    let mut stats = DumpStats::default();
    let v4 = std::fs::read_to_string("/proc/thread-self/net/tcp")?;
    parse_filtered(&v4, Family::Inet, netns, states, out, &mut stats);
    match std::fs::read_to_string("/proc/thread-self/net/tcp6") {
        Ok(v6) => parse_filtered(&v6, Family::Inet6, netns, states, out, &mut stats),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000003 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:1F90 0200007F:9C40 06 00000000:00000000 03:00000BB8 00000000     0        0 0 3 0000000000000000\n garbage line\n";

    #[test]
    fn v4_rows_and_malformed_lines() {
        let mut out = Vec::new();
        let mut stats = DumpStats::default();
        parse_proc_net_tcp(V4, Family::Inet, 7, &mut out, &mut stats);
        assert_eq!((stats.rows, stats.malformed), (2, 1));
        assert_eq!(out[0].state, TcpState::Listen);
        assert_eq!(out[0].local.to_string(), "127.0.0.1:8080");
        assert_eq!((out[0].recv_q, out[0].uid, out[0].inode), (3, 1000, 4242));
        assert_eq!(out[1].state, TcpState::TimeWait);
        assert_eq!(out[1].remote.to_string(), "127.0.0.2:40000");
        assert_eq!(out[1].timer, Timer::TimeWait);
        assert_eq!(out[1].timer_expires_ms, 30_000);
        assert!(out.iter().all(|s| is_synthetic_cookie(s.cookie)));
        assert_ne!(out[0].cookie, out[1].cookie);
        // Stable: the same text gives the same cookies.
        let mut again = Vec::new();
        parse_proc_net_tcp(V4, Family::Inet, 7, &mut again, &mut stats);
        assert_eq!(out[0].cookie, again[0].cookie);
        // ...but another namespace gives other ones.
        parse_proc_net_tcp(V4, Family::Inet, 8, &mut again, &mut stats);
        assert_ne!(out[0].cookie, again[2].cookie);
    }

    #[test]
    fn repeated_rows_are_duplicates() {
        let line = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 11 1\n";
        let text = format!("{line}{line}");
        let mut out = Vec::new();
        let mut stats = DumpStats::default();
        parse_proc_net_tcp(&text, Family::Inet, 1, &mut out, &mut stats);
        assert_eq!((stats.rows, stats.duplicates), (1, 1));
    }

    #[test]
    fn bad_lengths_are_rejected() {
        assert!(parse_endpoint("0100007F0:1F90", Family::Inet).is_none());
        assert!(parse_endpoint("0100007F:1F90", Family::Inet6).is_none());
        assert!(parse_endpoint("0100007F", Family::Inet).is_none());
        assert!(parse_endpoint("é100007F:1F90", Family::Inet).is_none());
        assert!(parse_endpoint("0000000000000000000000000100000é:1F90", Family::Inet6).is_none());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn never_panics(text in "\\PC{0,300}") {
                let mut out = Vec::new();
                let mut stats = DumpStats::default();
                parse_proc_net_tcp(&text, Family::Inet6, 1, &mut out, &mut stats);
                parse_proc_net_tcp(&text, Family::Inet, 1, &mut out, &mut stats);
            }
        }
    }
}
