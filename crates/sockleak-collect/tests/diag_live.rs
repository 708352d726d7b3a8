//! Live sock_diag dumps of sockets this test opens on 127.0.0.1 and ::1,
//! checked against what the fds themselves say (fstat inode, SO_COOKIE), and
//! against the /proc/net/tcp fallback. The host is shared: every assertion is
//! filtered to this test's own ports.

mod live_env;

use live_env::{fd_inode, so_cookie, wait_for};
use sockleak_collect::diag::{self, DumpRequest};
use sockleak_collect::netns::own_netns_id;
use sockleak_model::{Family, Socket, StateSet, TcpState};
use std::collections::{BTreeSet, HashSet};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

fn dump_own(states: StateSet, want_info: bool) -> Vec<Socket> {
    let ns = own_netns_id().expect("own netns");
    let mut out = Vec::new();
    let stats = diag::dump(ns, &DumpRequest { states, want_info }, &mut out).expect("dump");
    assert_eq!(stats.rows as usize, out.len());
    assert_eq!(stats.malformed, 0, "{stats:?}");
    out
}

/// Rows of this test: local or remote port is one of the listener's.
fn mine(rows: &[Socket], port: u16) -> Vec<Socket> {
    rows.iter()
        .filter(|s| s.local.port == port || s.remote.port == port)
        .cloned()
        .collect()
}

/// A CLOSE_WAIT server socket: the peer wrote `data` and closed.
fn close_wait_pair(listener: &TcpListener, data: &[u8]) -> TcpStream {
    let mut peer = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (srv, _) = listener.accept().expect("accept");
    peer.write_all(data).expect("write");
    drop(peer); // FIN
    srv
}

#[test]
fn listener_established_and_close_wait_rows_match_the_fds() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mut client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let (mut server, _) = listener.accept().expect("accept");
    // A round trip so both sides have RTT samples and byte counters.
    client.write_all(b"ping").expect("write");
    let mut buf = [0u8; 4];
    server.read_exact(&mut buf).expect("read");
    server.write_all(b"pong").expect("write");
    client.read_exact(&mut buf).expect("read");
    let cw = close_wait_pair(&listener, b"hello");

    let rows = wait_for(Duration::from_secs(2), || {
        let rows = mine(&dump_own(StateSet::ALL, true), port);
        rows.iter()
            .any(|s| s.inode == fd_inode(&cw) && s.state == TcpState::CloseWait && s.recv_q == 6)
            .then_some(rows)
    })
    .expect("CLOSE_WAIT row with recv_q 6 within 2 s");

    let find = |fd: &dyn AsRawFd| -> &Socket {
        let ino = std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .expect("stat");
        rows.iter()
            .find(|s| s.inode == ino)
            .unwrap_or_else(|| panic!("no row for inode {ino}: {rows:#?}"))
    };

    let l = find(&listener);
    assert_eq!(l.state, TcpState::Listen);
    assert_eq!(l.local.to_string(), format!("127.0.0.1:{port}"));
    assert_eq!(l.recv_q, 0, "accept queue is empty");
    assert!(l.send_q > 0, "LISTEN Send-Q is the backlog");
    assert_eq!(l.inode, fd_inode(&listener));
    assert_eq!(l.cookie.0, so_cookie(listener.as_raw_fd()));

    for (fd, s) in [(&server, find(&server)), (&client, find(&client))] {
        assert_eq!(s.state, TcpState::Established);
        assert_eq!(s.family, Family::Inet);
        assert_eq!(s.cookie.0, so_cookie(fd.as_raw_fd()), "cookie = SO_COOKIE");
        assert_eq!(s.netns, own_netns_id().expect("ns"));
        // SAFETY: geteuid(2) cannot fail.
        assert_eq!(s.uid, unsafe { libc::geteuid() });
        let info = s.tcp_info.as_ref().expect("tcp_info for ESTABLISHED");
        assert!(info.rtt_us > 0, "{info:?}");
        assert_eq!(info.bytes_received, Some(4), "{info:?}");
        assert!(s.mem.is_some());
    }
    assert_eq!(find(&server).remote, find(&client).local);

    let c = find(&cw);
    assert_eq!(c.state, TcpState::CloseWait);
    assert_eq!(c.recv_q, 6, "5 unread bytes + the FIN");
    assert_eq!(c.unread_bytes(), 5);
    assert_eq!(c.cookie.0, so_cookie(cw.as_raw_fd()));
    // The closed peer is an orphan (FIN_WAIT1 until the FIN's ACK, which may
    // be delayed, then FIN_WAIT2): no file, inode 0.
    assert!(
        rows.iter().any(
            |s| matches!(s.state, TcpState::FinWait1 | TcpState::FinWait2)
                && s.inode == 0
                && s.remote.port == port
        ),
        "{rows:#?}"
    );

    let cookies: HashSet<u64> = rows.iter().map(|s| s.cookie.0).collect();
    assert_eq!(cookies.len(), rows.len(), "cookies unique");
    assert!(!cookies.contains(&0));
}

#[test]
fn kernel_state_filter_returns_only_close_wait() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let _est = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let (_est_srv, _) = listener.accept().expect("accept");
    let cw = close_wait_pair(&listener, b"");
    let ino = fd_inode(&cw);

    let mut cw_only = StateSet::empty();
    cw_only.insert(TcpState::CloseWait);
    let rows = wait_for(Duration::from_secs(2), || {
        let rows = dump_own(cw_only, false);
        rows.iter().any(|s| s.inode == ino).then_some(rows)
    })
    .expect("our CLOSE_WAIT in the filtered dump");
    assert!(
        rows.iter().all(|s| s.state == TcpState::CloseWait),
        "{rows:#?}"
    );
    let ours = mine(&rows, port);
    assert_eq!(
        ours.len(),
        1,
        "only the CLOSE_WAIT, not LISTEN/ESTABLISHED: {ours:#?}"
    );
    assert_eq!(ours[0].recv_q, 1, "a bare FIN counts 1");
    assert!(ours[0].tcp_info.is_none(), "not requested");
}

/// Kernel fact sockleak relies on (kernel-notes.md): on an idle connection the
/// FIN moves `tcpi_last_ack_recv` but not `tcpi_last_data_recv`.
#[test]
fn fin_moves_last_ack_recv_not_last_data_recv() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mut peer = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let (srv, _) = listener.accept().expect("accept");
    peer.write_all(b"x").expect("write");
    std::thread::sleep(Duration::from_millis(1200));
    peer.shutdown(Shutdown::Write).expect("FIN");
    let ino = fd_inode(&srv);
    let row = wait_for(Duration::from_secs(2), || {
        dump_own(StateSet::ALL, true)
            .into_iter()
            .find(|s| s.inode == ino && s.state == TcpState::CloseWait)
    })
    .expect("CLOSE_WAIT row");
    let info = row.tcp_info.expect("tcp_info");
    assert!(info.last_ack_recv_ms < 500, "FIN just arrived: {info:?}");
    assert!(
        info.last_data_recv_ms >= 1000,
        "the FIN is not data: {info:?}"
    );
}

/// (is IPv6, local, remote, state, inode).
type Key = (bool, String, String, TcpState, u64);

fn keys(rows: &[Socket], ports: &[u16]) -> BTreeSet<Key> {
    rows.iter()
        .filter(|s| ports.contains(&s.local.port) || ports.contains(&s.remote.port))
        .map(|s| {
            let v6 = s.family == Family::Inet6;
            (
                v6,
                s.local.to_string(),
                s.remote.to_string(),
                s.state,
                s.inode,
            )
        })
        .collect()
}

#[test]
fn sock_diag_and_proc_net_tcp_agree() {
    let mut held = Vec::new();
    let mut listeners = Vec::new();
    let mut ports = Vec::new();
    for addr in ["127.0.0.1:0", "[::1]:0"] {
        let listener = match TcpListener::bind(addr) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("SKIPPED part of sock_diag_and_proc_net_tcp_agree: bind {addr}: {e}");
                continue;
            }
        };
        let a = listener.local_addr().expect("addr");
        ports.push(a.port());
        let c = TcpStream::connect(a).expect("connect");
        let (s, _) = listener.accept().expect("accept");
        held.push(close_wait_pair(&listener, b"abc"));
        held.extend([c, s]);
        listeners.push(listener);
    }
    assert!(!ports.is_empty());
    let ns = own_netns_id().expect("ns");
    // Orphans (FIN_WAIT2 of the closed peers) settle quickly; retry a few
    // times so both views are taken of the same population.
    let agreed = wait_for(Duration::from_secs(2), || {
        let diag_rows = dump_own(StateSet::ALL, false);
        let mut proc_rows = Vec::new();
        let stats = diag::dump_proc_net_tcp(ns, StateSet::ALL, &mut proc_rows).expect("proc");
        assert_eq!(stats.malformed, 0);
        let (a, b) = (keys(&diag_rows, &ports), keys(&proc_rows, &ports));
        (a == b).then_some(a)
    })
    .expect("sock_diag and /proc/net/tcp agree within 2 s");
    // Per family: LISTEN, 2 ESTABLISHED, CLOSE_WAIT, FIN_WAIT2.
    assert_eq!(agreed.len(), 5 * ports.len(), "{agreed:#?}");
    assert!(agreed.iter().any(|k| !k.0 && k.3 == TcpState::CloseWait));

    // The fallback's own state filter.
    let mut only = StateSet::empty();
    only.insert(TcpState::Listen);
    let mut proc_rows = Vec::new();
    diag::dump_proc_net_tcp(ns, only, &mut proc_rows).expect("proc");
    assert!(proc_rows.iter().all(|s| s.state == TcpState::Listen));
    assert!(proc_rows
        .iter()
        .all(|s| diag::is_synthetic_cookie(s.cookie)));
}

/// More rows than fit one datagram: the receive loop, DONE detection and
/// cross-datagram dedupe on a real multi-datagram dump.
#[test]
fn many_sockets_span_several_datagrams() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mut held = Vec::new();
    for _ in 0..150 {
        held.push(TcpStream::connect(("127.0.0.1", port)).expect("connect"));
        held.push(listener.accept().expect("accept").0);
    }
    let want: HashSet<u64> = held.iter().map(fd_inode).collect();
    let rows = dump_own(StateSet::ALL, true);
    let got: HashSet<u64> = mine(&rows, port).iter().map(|s| s.inode).collect();
    assert!(want.is_subset(&got), "missing {:?}", want.difference(&got));
    assert_eq!(got.len(), 301, "300 connected sockets and the listener");
}

/// The exact lookup a sampler uses for the sockets the state tracker names:
/// by 4-tuple and cookie it returns the row a dump returns, follows a socket
/// into TIME_WAIT (same cookie), and answers "none" for a socket that is gone
/// and for a tuple whose cookie is not the one asked for.
#[test]
fn exact_lookup_by_tuple_and_cookie_matches_the_dump() {
    let ns = own_netns_id().expect("own netns");
    let mut diag_sock = sockleak_collect::diag::wire::DiagSocket::open().expect("diag socket");
    for bind in ["127.0.0.1:0", "[::1]:0"] {
        let listener = TcpListener::bind(bind).expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        let cw = close_wait_pair(&listener, b"abc");
        let rows = wait_for(Duration::from_secs(2), || {
            let rows = mine(&dump_own(StateSet::ALL, true), port);
            rows.iter()
                .any(|s| s.inode == fd_inode(&cw) && s.state == TcpState::CloseWait)
                .then_some(rows)
        })
        .expect("rows of this test");
        let mut get = |s: &Socket, cookie: u64| {
            diag::get(
                &mut diag_sock,
                ns,
                s.family,
                &s.local,
                &s.remote,
                cookie,
                true,
            )
            .expect("exact lookup")
        };
        for fd in [
            listener.as_raw_fd(),
            client.as_raw_fd(),
            server.as_raw_fd(),
            cw.as_raw_fd(),
        ] {
            let cookie = so_cookie(fd);
            let row = rows
                .iter()
                .find(|s| s.cookie.0 == cookie)
                .unwrap_or_else(|| panic!("{bind}: no dump row for fd {fd}"));
            let got = get(row, cookie).unwrap_or_else(|| panic!("{bind}: lookup of {row:?}"));
            assert_eq!(
                (got.cookie, got.state, got.local, got.remote, got.inode, got.netns),
                (row.cookie, row.state, row.local, row.remote, row.inode, ns),
                "{bind}"
            );
            assert!(got.tcp_info.is_some() || got.state == TcpState::Listen);
            // The same tuple with another cookie is not this socket.
            assert!(get(row, cookie ^ 0x5a5a).is_none(), "{bind}: wrong cookie");
        }
        // The client closes first and then the server: the client's socket
        // becomes a TIME_WAIT with its cookie; the server's is gone.
        let c_row = rows
            .iter()
            .find(|s| s.cookie.0 == so_cookie(client.as_raw_fd()))
            .cloned()
            .expect("client row");
        let s_row = rows
            .iter()
            .find(|s| s.cookie.0 == so_cookie(server.as_raw_fd()))
            .cloned()
            .expect("server row");
        drop(client);
        std::thread::sleep(Duration::from_millis(50));
        drop(server);
        let tw = wait_for(Duration::from_secs(2), || {
            get(&c_row, c_row.cookie.0).filter(|s| s.state == TcpState::TimeWait)
        })
        .unwrap_or_else(|| panic!("{bind}: the client's TIME_WAIT"));
        assert_eq!(tw.cookie, c_row.cookie);
        assert_eq!(tw.inode, 0, "a timewait socket has no file");
        let gone = wait_for(Duration::from_secs(2), || {
            get(&s_row, s_row.cookie.0).is_none().then_some(())
        });
        assert!(gone.is_some(), "{bind}: the server's socket is gone");
    }
}
