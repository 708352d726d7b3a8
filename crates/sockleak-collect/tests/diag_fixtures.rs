//! Recorded sock_diag datagrams and /proc/net/tcp text of a known loopback
//! population, decoded to exact rows; plus the recorder that made them.
//!
//! Re-record (root; creates and deletes a throwaway namespace, so the files
//! hold no host data):
//! `cargo test -p sockleak-collect --test diag_fixtures -- --ignored record_fixtures`
//! then update the expected rows below from `population.ss.txt`.

mod live_env;

use rustc_hash::FxHashSet as HashSet;
use sockleak_collect::diag::wire::{DiagSocket, RECV_BUF_LEN};
use sockleak_collect::diag::{self, BatchEnd, DumpRequest, DumpStats};
use sockleak_collect::netns::{discover, run_in};
use sockleak_model::{Family, Socket, StateSet, TcpState};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Datagram files of one family, in receive order.
fn datagrams(family: &str) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures().join("diag"))
        .expect("fixtures/diag")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "bin")
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{family}-")))
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no {family}-*.bin fixtures");
    files
        .iter()
        .map(|p| std::fs::read(p).expect("read fixture"))
        .collect()
}

/// Decodes the recorded dump of both families like `dump` does.
fn decode_fixture_dump(netns: u64) -> (Vec<Socket>, DumpStats) {
    let mut out = Vec::new();
    let mut seen = HashSet::default();
    let mut stats = DumpStats::default();
    for family in ["inet", "inet6"] {
        let grams = datagrams(family);
        for (i, g) in grams.iter().enumerate() {
            let end = diag::decode_batch(g, netns, &mut out, &mut seen, &mut stats)
                .expect("recorded datagram decodes");
            let last = i + 1 == grams.len();
            assert_eq!(end == BatchEnd::Done, last, "{family} datagram {i}");
        }
    }
    (out, stats)
}

/// One expected row: (IPv6 family, state, local, remote, recv_q, send_q,
/// inode, cookie, has tcp_info). Every value was cross-checked against
/// `ss -tanieO` of the same moment (population.ss.txt: `ino:`, `sk:`).
type Expected = (
    bool,
    TcpState,
    &'static str,
    &'static str,
    u32,
    u32,
    u64,
    u64,
    bool,
);

#[rustfmt::skip]
const EXPECTED: &[Expected] = &[
    (false, TcpState::Listen, "127.0.0.1:7000", "0.0.0.0:0", 0, 128, 22894, 0x1046, true),
    (false, TcpState::Established, "127.0.0.1:41004", "127.0.0.1:7002", 0, 0, 22905, 0x1047, true),
    (false, TcpState::CloseWait, "127.0.0.1:7000", "127.0.0.1:41001", 6, 0, 22900, 0x1048, true),
    (false, TcpState::Established, "127.0.0.1:7000", "127.0.0.1:41000", 0, 0, 22898, 0x1049, true),
    (false, TcpState::Established, "127.0.0.1:41000", "127.0.0.1:7000", 0, 0, 22897, 0x104a, true),
    // The closed CLOSE_WAIT peer: a timewait sock in FIN_WAIT2, no file.
    (false, TcpState::FinWait2, "127.0.0.1:41001", "127.0.0.1:7000", 0, 0, 0, 0x104b, false),
    (true, TcpState::Listen, "[::1]:7001", "[::]:0", 0, 128, 22895, 0x104c, true),
    (true, TcpState::Listen, "[::]:7002", "[::]:0", 0, 128, 22896, 0x104d, true),
    (true, TcpState::Established, "[::1]:7001", "[::1]:41002", 0, 0, 22902, 0x104e, true),
    (true, TcpState::Established, "[::1]:41002", "[::1]:7001", 0, 0, 22901, 0x104f, true),
    (true, TcpState::TimeWait, "[::1]:41003", "[::1]:7001", 0, 0, 0, 0x1050, false),
    // An IPv4 client accepted by the dual-stack listener: AF_INET6 with
    // ::ffff:127.0.0.1, displayed normalised.
    (true, TcpState::Established, "127.0.0.1:7002", "127.0.0.1:41004", 0, 0, 22906, 0x1051, true),
];

type Row = (bool, TcpState, String, String, u32, u32, u64, u64, bool);

fn row_key(s: &Socket) -> Row {
    (
        s.family == Family::Inet6,
        s.state,
        s.local.to_string(),
        s.remote.to_string(),
        s.recv_q,
        s.send_q,
        s.inode,
        s.cookie.0,
        s.tcp_info.is_some(),
    )
}

#[test]
fn recorded_dump_decodes_to_exact_rows() {
    let (rows, stats) = decode_fixture_dump(4026532999);
    assert_eq!(
        stats,
        DumpStats {
            rows: 12,
            duplicates: 0,
            malformed: 0,
            short_info: 0
        }
    );
    let got: Vec<Row> = rows.iter().map(row_key).collect();
    let want: Vec<Row> = EXPECTED
        .iter()
        .map(|e| {
            (
                e.0,
                e.1,
                e.2.to_string(),
                e.3.to_string(),
                e.4,
                e.5,
                e.6,
                e.7,
                e.8,
            )
        })
        .collect();
    assert_eq!(got, want);
    assert!(rows
        .iter()
        .all(|s| s.netns == 4026532999 && s.owners.is_empty()));

    // Details, as ss printed them.
    let by_inode = |ino: u64| rows.iter().find(|s| s.inode == ino).expect("row");
    let srv = by_inode(22898).tcp_info.as_ref().expect("info");
    assert_eq!(
        (srv.rtt_us, srv.bytes_acked, srv.bytes_received),
        (20, Some(4), Some(4))
    );
    assert_eq!(srv.snd_cwnd, 11);
    assert_eq!(srv.rto_us, 204_000);
    let cw = by_inode(22900);
    assert_eq!(cw.unread_bytes(), 5);
    let cwi = cw.tcp_info.as_ref().expect("info");
    assert_eq!((cwi.rtt_us, cwi.bytes_received), (29, Some(6)));
    assert!(cw.mem.is_some());
    let mapped = by_inode(22906);
    assert!(
        matches!(mapped.local.ip, std::net::IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some()),
        "kept as ::ffff:127.0.0.1 in the model: {:?}",
        mapped.local
    );
    let tw = rows
        .iter()
        .find(|s| s.state == TcpState::TimeWait)
        .expect("tw");
    assert_eq!(tw.timer, sockleak_model::Timer::TimeWait);
    assert!(
        tw.timer_expires_ms > 59_000 && tw.timer_expires_ms <= 60_000,
        "{tw:?}"
    );
}

/// Linux 6.18 sends a 280-byte tcp_info (longer than the 248 bytes of 6.10
/// uapi); the decoder reads its prefix.
#[test]
fn recorded_tcp_info_is_280_bytes() {
    let g = &datagrams("inet")[0];
    // First message: nlmsghdr, inet_diag_msg, then rtattrs; find INET_DIAG_INFO.
    let len = u32::from_ne_bytes(g[0..4].try_into().expect("4")) as usize;
    let mut at = 16 + 72;
    let mut info_len = None;
    while at + 4 <= len {
        let alen = u16::from_ne_bytes(g[at..at + 2].try_into().expect("2")) as usize;
        let aty = u16::from_ne_bytes(g[at + 2..at + 4].try_into().expect("2"));
        if aty == 2 {
            info_len = Some(alen - 4);
        }
        at += (alen + 3) & !3;
    }
    assert_eq!(info_len, Some(280));
}

#[test]
fn truncated_recordings_fail_cleanly() {
    let g = &datagrams("inet6")[0];
    for cut in [1, 15, 16, 17, 100, g.len() - 1] {
        let mut out = Vec::new();
        let r = diag::decode_batch(
            &g[..cut],
            1,
            &mut out,
            &mut HashSet::default(),
            &mut DumpStats::default(),
        );
        assert!(
            matches!(r, Err(diag::DiagError::Malformed { .. })),
            "cut at {cut}: {r:?}"
        );
    }
}

/// The /proc/net/tcp(6) text recorded at the same moment lists the same
/// sockets (4-tuple, state, inode) as the dump.
#[test]
fn recorded_proc_net_tcp_matches_the_dump() {
    let mut rows = Vec::new();
    let mut stats = DumpStats::default();
    for (file, family) in [("tcp", Family::Inet), ("tcp6", Family::Inet6)] {
        let text = std::fs::read_to_string(fixtures().join("proc_net").join(file)).expect("read");
        diag::parse_proc_net_tcp(&text, family, 7, &mut rows, &mut stats);
    }
    assert_eq!((stats.rows, stats.malformed, stats.duplicates), (12, 0, 0));
    let key = |s: &Socket| {
        (
            s.family == Family::Inet6,
            s.state,
            s.local.to_string(),
            s.remote.to_string(),
            s.inode,
        )
    };
    let mut from_proc: Vec<_> = rows.iter().map(key).collect();
    let (dumped, _) = decode_fixture_dump(7);
    let mut from_diag: Vec<_> = dumped.iter().map(key).collect();
    from_proc.sort();
    from_diag.sort();
    assert_eq!(from_proc, from_diag);

    let cw = rows.iter().find(|s| s.inode == 22900).expect("close-wait");
    assert_eq!((cw.state, cw.recv_q), (TcpState::CloseWait, 6));
    let tw = rows
        .iter()
        .find(|s| s.state == TcpState::TimeWait)
        .expect("tw");
    assert_eq!((tw.timer_expires_ms, tw.inode), (0x1750 * 10, 0));
    // The fallback's LISTEN Send-Q is not the backlog (see proc_net_tcp docs).
    let l = rows.iter().find(|s| s.inode == 22894).expect("listener");
    assert_eq!((l.state, l.send_q), (TcpState::Listen, 0));
    assert!(rows.iter().all(|s| diag::is_synthetic_cookie(s.cookie)));
    let cookies: HashSet<u64> = rows.iter().map(|s| s.cookie.0).collect();
    assert_eq!(cookies.len(), rows.len());
}

/// A client socket bound to `local` before connecting, so the recording has
/// fixed ports.
fn connect_from(local: SocketAddr, remote: SocketAddr) -> TcpStream {
    fn sockaddr(a: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
        // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
        let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let len = match a {
            SocketAddr::V4(v4) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: v4.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(v4.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_in fits in sockaddr_storage.
                unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin) };
                std::mem::size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(v6) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: v6.port().to_be(),
                    sin6_flowinfo: 0,
                    sin6_addr: libc::in6_addr {
                        s6_addr: v6.ip().octets(),
                    },
                    sin6_scope_id: 0,
                };
                // SAFETY: sockaddr_in6 fits in sockaddr_storage.
                unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
                std::mem::size_of::<libc::sockaddr_in6>()
            }
        };
        (ss, len as libc::socklen_t)
    }
    let domain = if local.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain syscalls on a descriptor this function owns; the
    // sockaddrs are valid for the lengths passed.
    unsafe {
        let fd = libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket");
        let (l, ll) = sockaddr(local);
        assert_eq!(
            libc::bind(fd, (&l as *const libc::sockaddr_storage).cast(), ll),
            0,
            "bind {local}"
        );
        let (r, rl) = sockaddr(remote);
        assert_eq!(
            libc::connect(fd, (&r as *const libc::sockaddr_storage).cast(), rl),
            0,
            "connect {remote}"
        );
        TcpStream::from_raw_fd(fd)
    }
}

/// Sockets of the recorded population, kept open until the dump is taken.
struct Population {
    _listeners: Vec<TcpListener>,
    _streams: Vec<TcpStream>,
}

fn build_population() -> Population {
    let a = |s: &str| -> SocketAddr { s.parse().expect("literal") };
    let l4 = TcpListener::bind("127.0.0.1:7000").expect("bind l4");
    let l6 = TcpListener::bind("[::1]:7001").expect("bind l6");
    // Dual-stack wildcard: accepts IPv4 clients as AF_INET6 ::ffff: sockets.
    let lany = TcpListener::bind("[::]:7002").expect("bind lany");
    let mut streams = Vec::new();

    // ESTABLISHED v4 with a round trip.
    let mut c = connect_from(a("127.0.0.1:41000"), a("127.0.0.1:7000"));
    let (mut s, _) = l4.accept().expect("accept");
    c.write_all(b"ping").expect("w");
    let mut b = [0u8; 4];
    s.read_exact(&mut b).expect("r");
    s.write_all(b"pong").expect("w");
    c.read_exact(&mut b).expect("r");
    streams.extend([c, s]);

    // CLOSE_WAIT v4 with 5 unread bytes; the peer becomes an orphan.
    let mut c = connect_from(a("127.0.0.1:41001"), a("127.0.0.1:7000"));
    let (s, _) = l4.accept().expect("accept");
    c.write_all(b"hello").expect("w");
    drop(c);
    streams.push(s);

    // ESTABLISHED v6.
    let c = connect_from(a("[::1]:41002"), a("[::1]:7001"));
    let (s, _) = l6.accept().expect("accept");
    streams.extend([c, s]);

    // TIME_WAIT v6: the client closes first.
    let c = connect_from(a("[::1]:41003"), a("[::1]:7001"));
    let (s, _) = l6.accept().expect("accept");
    drop(c);
    std::thread::sleep(Duration::from_millis(50));
    drop(s);

    // IPv4 client of the dual-stack listener.
    let c = connect_from(a("127.0.0.1:41004"), a("127.0.0.1:7002"));
    let (s, _) = lany.accept().expect("accept");
    streams.extend([c, s]);

    // Let FIN_WAIT1 -> FIN_WAIT2 and LAST_ACK -> CLOSE settle.
    std::thread::sleep(Duration::from_millis(300));
    Population {
        _listeners: vec![l4, l6, lany],
        _streams: streams,
    }
}

#[test]
#[ignore = "records fixtures into tests/fixtures; run as root with --ignored"]
fn record_fixtures() {
    if !live_env::root_or_skip("record_fixtures") {
        return;
    }
    let ns = live_env::NetnsGuard::new("sockleak-rec");
    let d = discover(Path::new("/proc"), Path::new("/run/netns"));
    let entry = d
        .entries
        .iter()
        .find(|e| e.name.as_deref() == Some(ns.name.as_str()))
        .expect("discovered");
    let dir = fixtures().join("diag");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for old in std::fs::read_dir(&dir).expect("ls").flatten() {
        if old.path().extension().is_some_and(|x| x == "bin") {
            std::fs::remove_file(old.path()).expect("rm old fixture");
        }
    }
    let grams = run_in(entry, || {
        let pop = build_population();
        let mut sock = DiagSocket::open().expect("open");
        let req = DumpRequest {
            states: StateSet::ALL,
            want_info: true,
        };
        let mut grams = Vec::new();
        let mut buf = vec![0u8; RECV_BUF_LEN];
        for (family, name) in [(Family::Inet, "inet"), (Family::Inet6, "inet6")] {
            sock.send_dump(Some(family), &req).expect("send");
            for i in 0..1000 {
                let n = sock.recv(&mut buf, Some(family)).expect("recv");
                grams.push((format!("{name}-{i:02}.bin"), buf[..n].to_vec()));
                let mut scratch = Vec::new();
                let end = diag::decode_batch(
                    &buf[..n],
                    0,
                    &mut scratch,
                    &mut HashSet::default(),
                    &mut DumpStats::default(),
                )
                .expect("decode");
                if end == BatchEnd::Done {
                    break;
                }
            }
        }
        let tcp = std::fs::read_to_string("/proc/thread-self/net/tcp").expect("tcp");
        let tcp6 = std::fs::read_to_string("/proc/thread-self/net/tcp6").expect("tcp6");
        let ss = live_env::run(&["ss", "-tanieO"]);
        drop(pop);
        (grams, tcp, tcp6, ss)
    })
    .expect("enter namespace");
    for (name, bytes) in &grams.0 {
        std::fs::write(dir.join(name), bytes).expect("write fixture");
    }
    // ss pads every line to the terminal width; keep the fixture diff-clean.
    let ss: String = grams
        .3
        .lines()
        .map(|l| format!("{}\n", l.trim_end()))
        .collect();
    std::fs::write(dir.join("population.ss.txt"), ss).expect("write ss");
    let pdir = fixtures().join("proc_net");
    std::fs::create_dir_all(&pdir).expect("mkdir");
    std::fs::write(pdir.join("tcp"), &grams.1).expect("write tcp");
    std::fs::write(pdir.join("tcp6"), &grams.2).expect("write tcp6");
    eprintln!(
        "recorded {} datagrams into {}",
        grams.0.len(),
        dir.display()
    );
}
