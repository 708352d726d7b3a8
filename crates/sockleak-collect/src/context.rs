//! Per-namespace TCP sysctls and counters, and facts about the host.
//!
//! Measured on Linux 6.18 (tests/netns_live.rs pins each point):
//! - `/proc/sys/net/*` and `/proc/thread-self/net/*` follow the network
//!   namespace of the *reading thread* at open(), so a thread that setns'd
//!   (see [`crate::netns::run_in`]) reads its namespace's values.
//! - Per namespace (set to distinct values inside a test namespace, read back
//!   different from the host's): `ip_local_port_range`,
//!   `ip_local_reserved_ports`, `tcp_fin_timeout`, `tcp_max_tw_buckets`,
//!   `somaxconn`.
//! - Host-global: `net.ipv4.tcp_max_orphans` exists only in the initial
//!   namespace; elsewhere the file is absent (ENOENT) and the host's value
//!   applies. It is then left `None` here, without a note: the caller copies
//!   the host namespace's value.
//! - In `sockstat`, `sockets: used`, `TCP: inuse` and `tw` are per namespace
//!   (0 in a fresh one); `alloc` and `mem` are host-wide (the same numbers in
//!   every namespace), and so is `orphan` (the global `tcp_orphan_count`,
//!   net/ipv4/proc.c).

use sockleak_model::{
    add_note, HostInfo, Namespace, PartialKind, PartialNote, PortRange, SockStat, TcpCounters,
};
use std::io::{self, Read};

/// Reads a whole /proc file into `buf` (cleared first).
fn read_into(path: &str, buf: &mut String) -> io::Result<()> {
    buf.clear();
    std::fs::File::open(path)?.read_to_string(buf)?;
    Ok(())
}

/// The note's subject when `/proc/net/sockstat6` could not be read.
const SOCKSTAT6: &str = "/proc/net/sockstat6 (IPv6 socket counts)";

/// True when the namespace's own counters (read by
/// [`read_namespace_context`] into `ns`) say it holds no TCP socket at all:
/// none hashed (`TCP: inuse`, `TCP6: inuse`: listeners, connections and
/// connecting sockets; request sockets need a listener) and no TIME_WAIT
/// (`tw`). A dump of it could only come back empty, and every dump walks the
/// established hash that all namespaces share, so a host with many idle
/// containers would pay a full walk per empty namespace. False when a count
/// is unknown: sockstat unreadable, or sockstat6 unreadable for any reason
/// but its absence (no IPv6 in this kernel).
pub fn holds_no_tcp(ns: &Namespace, notes: &[PartialNote]) -> bool {
    let v6_unknown = notes
        .iter()
        .any(|n| n.what == SOCKSTAT6 && n.kind != PartialKind::Unsupported);
    !v6_unknown
        && ns
            .sockstat
            .is_some_and(|st| st.tcp_inuse == 0 && st.tcp6_inuse == 0 && st.tcp_tw == 0)
}

fn note_io(notes: &mut Vec<PartialNote>, what: &str, e: &io::Error) {
    let (kind, fix) = match e.kind() {
        io::ErrorKind::NotFound => (PartialKind::Unsupported, None),
        io::ErrorKind::PermissionDenied => (PartialKind::Permission, Some("run as root")),
        _ => (PartialKind::Error, None),
    };
    add_note(notes, kind, what, &e.to_string(), fix);
}

fn note_malformed(notes: &mut Vec<PartialNote>, what: &str) {
    add_note(
        notes,
        PartialKind::Malformed,
        what,
        "could not parse the value",
        None,
    );
}

/// Reads one sysctl and parses it; failures become notes. `optional`: ENOENT
/// is expected (a host-global sysctl seen from another namespace).
fn sysctl<T>(
    buf: &mut String,
    notes: &mut Vec<PartialNote>,
    name: &str,
    path: &str,
    optional: bool,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Option<T> {
    match read_into(path, buf) {
        Ok(()) => {
            let v = parse(buf);
            if v.is_none() {
                note_malformed(notes, name);
            }
            v
        }
        Err(e) if optional && e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            note_io(notes, name, &e);
            None
        }
    }
}

fn parse_num<T: std::str::FromStr>(text: &str) -> Option<T> {
    text.trim().parse().ok()
}

/// Fills `ns` with the sysctls and counters of the calling thread's network
/// namespace: call it from inside [`crate::netns::run_in`] for `ns`. What
/// cannot be read is left unset and noted.
pub fn read_namespace_context(ns: &mut Namespace, notes: &mut Vec<PartialNote>) {
    let mut buf = String::with_capacity(8192);
    ns.ip_local_port_range = sysctl(
        &mut buf,
        notes,
        "sysctl net.ipv4.ip_local_port_range",
        "/proc/sys/net/ipv4/ip_local_port_range",
        false,
        parse_port_range,
    );
    ns.ip_local_reserved_ports = sysctl(
        &mut buf,
        notes,
        "sysctl net.ipv4.ip_local_reserved_ports",
        "/proc/sys/net/ipv4/ip_local_reserved_ports",
        false,
        parse_reserved_ports_strict,
    )
    .unwrap_or_default();
    ns.tcp_fin_timeout_s = sysctl(
        &mut buf,
        notes,
        "sysctl net.ipv4.tcp_fin_timeout",
        "/proc/sys/net/ipv4/tcp_fin_timeout",
        false,
        parse_num,
    );
    ns.tcp_max_orphans = sysctl(
        &mut buf,
        notes,
        "sysctl net.ipv4.tcp_max_orphans",
        "/proc/sys/net/ipv4/tcp_max_orphans",
        true,
        parse_num,
    );
    ns.tcp_max_tw_buckets = sysctl(
        &mut buf,
        notes,
        "sysctl net.ipv4.tcp_max_tw_buckets",
        "/proc/sys/net/ipv4/tcp_max_tw_buckets",
        false,
        parse_num,
    );
    ns.somaxconn = sysctl(
        &mut buf,
        notes,
        "sysctl net.core.somaxconn",
        "/proc/sys/net/core/somaxconn",
        false,
        parse_num,
    );

    ns.sockstat = match read_into("/proc/thread-self/net/sockstat", &mut buf) {
        Ok(()) => {
            let mut st = parse_sockstat(&buf);
            match read_into("/proc/thread-self/net/sockstat6", &mut buf) {
                Ok(()) => st.tcp6_inuse = parse_sockstat(&buf).tcp6_inuse,
                Err(e) => note_io(notes, SOCKSTAT6, &e),
            }
            Some(st)
        }
        Err(e) => {
            note_io(notes, "/proc/net/sockstat", &e);
            None
        }
    };

    match read_into("/proc/thread-self/net/netstat", &mut buf) {
        Ok(()) => ns.counters = parse_tcpext(&buf),
        Err(e) => note_io(notes, "/proc/net/netstat", &e),
    }
}

/// Parses `/proc/net/sockstat`, `sockstat6` or both concatenated:
/// `sockets: used N`, `TCP: inuse N orphan N tw N alloc N mem N`,
/// `TCP6: inuse N`. Missing values stay 0.
pub fn parse_sockstat(text: &str) -> SockStat {
    let mut st = SockStat::default();
    for line in text.lines() {
        let Some((proto, rest)) = line.split_once(':') else {
            continue;
        };
        let mut words = rest.split_ascii_whitespace();
        while let (Some(key), Some(val)) = (words.next(), words.next()) {
            let Ok(v) = val.parse::<u64>() else {
                continue;
            };
            match (proto.trim(), key) {
                ("sockets", "used") => st.sockets_used = v,
                ("TCP", "inuse") => st.tcp_inuse = v,
                ("TCP", "orphan") => st.tcp_orphan = v,
                ("TCP", "tw") => st.tcp_tw = v,
                ("TCP", "alloc") => st.tcp_alloc = v,
                ("TCP", "mem") => st.tcp_mem_pages = v,
                ("TCP6", "inuse") => st.tcp6_inuse = v,
                _ => {}
            }
        }
    }
    st
}

/// Parses the `TcpExt:` header/value line pair of `/proc/net/netstat`.
/// Counters the kernel does not have stay `None`.
pub fn parse_tcpext(text: &str) -> TcpCounters {
    let mut c = TcpCounters::default();
    let mut lines = text.lines().filter_map(|l| l.strip_prefix("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return c;
    };
    for (name, value) in names
        .split_ascii_whitespace()
        .zip(values.split_ascii_whitespace())
    {
        let Ok(v) = value.parse::<u64>() else {
            continue;
        };
        match name {
            "ListenOverflows" => c.listen_overflows = Some(v),
            "ListenDrops" => c.listen_drops = Some(v),
            "TCPAbortOnClose" => c.tcp_abort_on_close = Some(v),
            "TCPTimeWaitOverflow" => c.tcp_time_wait_overflow = Some(v),
            _ => {}
        }
    }
    c
}

/// `net.ipv4.ip_local_port_range`: two numbers, "32768\t60999".
pub fn parse_port_range(text: &str) -> Option<PortRange> {
    let mut words = text.split_ascii_whitespace();
    let low = words.next()?.parse().ok()?;
    let high = words.next()?.parse().ok()?;
    if words.next().is_some() {
        return None;
    }
    Some(PortRange { low, high })
}

fn parse_reserved_ports_strict(text: &str) -> Option<Vec<PortRange>> {
    let mut out = Vec::new();
    for item in text
        .trim()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let (low, high) = match item.split_once('-') {
            Some((l, h)) => (l.trim().parse().ok()?, h.trim().parse().ok()?),
            None => {
                let p = item.parse().ok()?;
                (p, p)
            }
        };
        out.push(PortRange { low, high });
    }
    Some(out)
}

/// `net.ipv4.ip_local_reserved_ports`: "8080,9000-9010", or empty. Items
/// that do not parse are skipped.
pub fn parse_reserved_ports(text: &str) -> Vec<PortRange> {
    text.split(',')
        .filter_map(|item| parse_reserved_ports_strict(item).and_then(|v| v.into_iter().next()))
        .collect()
}

/// A NUL-terminated `utsname` field as a String.
fn uts_field(field: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = field
        .iter()
        .map(|c| *c as u8)
        .take_while(|b| *b != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Hostname, kernel release, clock ticks, uptime and boot time. Values that
/// cannot be read stay empty/zero (clock ticks default to USER_HZ, 100).
pub fn read_host_info() -> HostInfo {
    let mut info = HostInfo::default();
    // SAFETY: utsname is plain old data; all-zero is a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname(2) writes into the struct we pass and nothing else.
    if unsafe { libc::uname(&mut uts) } == 0 {
        info.hostname = uts_field(&uts.nodename);
        info.kernel = uts_field(&uts.release);
    }
    // SAFETY: sysconf(3) takes no pointers.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    info.clock_ticks = u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    if let Ok(text) = std::fs::read_to_string("/proc/uptime") {
        if let Some(up) = text
            .split_ascii_whitespace()
            .next()
            .and_then(|w| w.parse::<f64>().ok())
        {
            info.uptime_s = up;
            info.boot_time_ms = now_ms.saturating_sub((up * 1000.0) as u64);
        }
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_tcp_only_when_every_count_is_known_and_zero() {
        let mut ns = Namespace::new(1);
        assert!(!holds_no_tcp(&ns, &[]), "no sockstat: unknown");
        ns.sockstat = Some(SockStat::default());
        assert!(holds_no_tcp(&ns, &[]));
        let mut absent = Vec::new();
        add_note(
            &mut absent,
            PartialKind::Unsupported,
            SOCKSTAT6,
            "No such file",
            None,
        );
        assert!(holds_no_tcp(&ns, &absent), "no sockstat6: no IPv6");
        let mut denied = Vec::new();
        add_note(
            &mut denied,
            PartialKind::Permission,
            SOCKSTAT6,
            "denied",
            None,
        );
        assert!(!holds_no_tcp(&ns, &denied), "IPv6 count unknown");
        for st in [
            SockStat {
                tcp_inuse: 1,
                ..SockStat::default()
            },
            SockStat {
                tcp6_inuse: 1,
                ..SockStat::default()
            },
            SockStat {
                tcp_tw: 1,
                ..SockStat::default()
            },
        ] {
            ns.sockstat = Some(st);
            assert!(!holds_no_tcp(&ns, &[]), "{st:?}");
        }
    }

    #[test]
    fn sockstat_v4_and_v6() {
        let text = "sockets: used 14\nTCP: inuse 5 orphan 1 tw 2 alloc 7 mem 227\nUDP: inuse 0 mem 0\nFRAG: inuse 0 memory 0\nTCP6: inuse 3\nUDP6: inuse 9\n";
        assert_eq!(
            parse_sockstat(text),
            SockStat {
                sockets_used: 14,
                tcp_inuse: 5,
                tcp_orphan: 1,
                tcp_tw: 2,
                tcp_alloc: 7,
                tcp_mem_pages: 227,
                tcp6_inuse: 3
            }
        );
        assert_eq!(
            parse_sockstat("garbage\nTCP: inuse x orphan"),
            SockStat::default()
        );
    }

    #[test]
    fn tcpext_pairs() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPAbortOnClose TCPTimeWaitOverflow\nTcpExt: 0 11 12 13 14\nIpExt: InNoRoutes ListenOverflows\nIpExt: 0 99\n";
        assert_eq!(
            parse_tcpext(text),
            TcpCounters {
                listen_overflows: Some(11),
                listen_drops: Some(12),
                tcp_abort_on_close: Some(13),
                tcp_time_wait_overflow: Some(14)
            }
        );
        let old = "TcpExt: ListenOverflows\nTcpExt: 4\n";
        assert_eq!(parse_tcpext(old).listen_drops, None);
        assert_eq!(parse_tcpext(old).listen_overflows, Some(4));
        assert_eq!(parse_tcpext(""), TcpCounters::default());
    }

    #[test]
    fn port_ranges() {
        assert_eq!(
            parse_port_range("32768\t60999\n"),
            Some(PortRange {
                low: 32768,
                high: 60999
            })
        );
        assert_eq!(parse_port_range("1 2 3"), None);
        assert_eq!(parse_port_range("70000 2"), None);
        assert_eq!(parse_reserved_ports("\n"), vec![]);
        assert_eq!(
            parse_reserved_ports("8080,9000-9010\n"),
            vec![
                PortRange {
                    low: 8080,
                    high: 8080
                },
                PortRange {
                    low: 9000,
                    high: 9010
                }
            ]
        );
        assert_eq!(
            parse_reserved_ports("x,22"),
            vec![PortRange { low: 22, high: 22 }]
        );
        assert_eq!(parse_reserved_ports_strict("x,22"), None);
    }

    #[test]
    fn own_namespace_context_is_complete() {
        let mut ns = Namespace::new(0);
        let mut notes = Vec::new();
        read_namespace_context(&mut ns, &mut notes);
        assert!(
            ns.ip_local_port_range.is_some_and(|r| !r.is_empty()),
            "{ns:?}"
        );
        assert!(ns.somaxconn.is_some() && ns.tcp_fin_timeout_s.is_some());
        assert!(ns.sockstat.is_some() && ns.counters.listen_overflows.is_some());
        assert!(
            notes.iter().all(|n| n.kind != PartialKind::Malformed),
            "{notes:?}"
        );
    }

    #[test]
    fn host_info() {
        let h = read_host_info();
        assert!(
            !h.kernel.is_empty() && h.clock_ticks > 0 && h.uptime_s > 0.0,
            "{h:?}"
        );
        assert!(h.boot_time_ms > 1_500_000_000_000, "{h:?}");
    }
}
