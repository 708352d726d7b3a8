//! Live network-namespace tests: discovery by process and by `ip netns`
//! name, dumping inside another namespace, per-namespace sysctls, and a
//! namespace that vanishes. Needs root; skips loudly otherwise.

mod live_env;

use live_env::{python_listener_in, root_or_skip, run, NetnsGuard};
use sockleak_collect::context::read_namespace_context;
use sockleak_collect::diag::{self, DumpRequest};
use sockleak_collect::netns::{discover, own_netns_id, run_in, NetnsError, NsEntry};
use sockleak_model::{Namespace, PortRange, StateSet, TcpState};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn find_named<'a>(entries: &'a [NsEntry], name: &str) -> &'a NsEntry {
    entries
        .iter()
        .find(|e| e.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("namespace {name} not discovered: {entries:#?}"))
}

fn dump_in(ns: &NsEntry) -> Vec<sockleak_model::Socket> {
    let req = DumpRequest {
        states: StateSet::ALL,
        want_info: false,
    };
    run_in(ns, || {
        let mut out = Vec::new();
        diag::dump(ns.id, &req, &mut out).map(|_| out)
    })
    .expect("enter namespace")
    .expect("dump inside namespace")
}

#[test]
fn listener_in_named_namespace_is_seen_there_and_only_there() {
    if !root_or_skip("listener_in_named_namespace_is_seen_there_and_only_there") {
        return;
    }
    let ns = NetnsGuard::new("sockleak-t");
    let Some((child, port)) = python_listener_in(&ns.name) else {
        return;
    };
    let pid = child.0.id();
    // The python process's namespace and the name are one namespace.
    let by_pid = std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .expect("stat pid ns")
        .ino();
    assert_eq!(by_pid, ns.inode());

    let d = discover(Path::new("/proc"), Path::new("/run/netns"));
    assert!(d.entries[0].is_own);
    assert_eq!(d.entries[0].id, own_netns_id().expect("own"));
    let entry = find_named(&d.entries, &ns.name);
    assert_eq!(entry.id, ns.inode());
    assert!(!entry.is_own);
    assert_eq!(
        entry.path,
        ns.path(),
        "named namespaces are entered by name"
    );
    assert_eq!(
        d.entries.iter().filter(|e| e.id == entry.id).count(),
        1,
        "one entry per namespace"
    );

    // The listener's inode, from the python process's fd table.
    let inodes: Vec<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            l.to_string_lossy()
                .strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|n| n.parse().ok())
        })
        .collect();

    let inside = dump_in(entry);
    let l = inside
        .iter()
        .find(|s| s.state == TcpState::Listen && s.local.port == port)
        .unwrap_or_else(|| panic!("listener :{port} not in namespace dump: {inside:#?}"));
    assert_eq!(l.local.to_string(), format!("127.0.0.1:{port}"));
    assert_eq!(l.netns, entry.id);
    assert!(inodes.contains(&l.inode), "{} not in {inodes:?}", l.inode);
    assert!(l.send_q == 8, "backlog 8 as python asked: {l:?}");

    let own = &d.entries[0];
    let host = dump_in(own);
    assert!(
        !host.iter().any(|s| s.inode == l.inode),
        "the namespace's listener leaked into the host dump"
    );
    drop(child);
}

#[test]
fn sysctls_follow_the_thread_namespace() {
    if !root_or_skip("sysctls_follow_the_thread_namespace") {
        return;
    }
    let ns = NetnsGuard::new("sockleak-t");
    run(&[
        "ip",
        "netns",
        "exec",
        &ns.name,
        "sysctl",
        "-q",
        "-w",
        "net.ipv4.ip_local_port_range=20000 20999",
        "net.ipv4.ip_local_reserved_ports=20100,20200-20209",
        "net.ipv4.tcp_fin_timeout=17",
        "net.ipv4.tcp_max_tw_buckets=1234",
        "net.core.somaxconn=77",
    ]);
    let d = discover(Path::new("/proc"), Path::new("/run/netns"));
    let entry = find_named(&d.entries, &ns.name);

    let (inner, notes) = run_in(entry, || {
        let mut n = Namespace::new(entry.id);
        let mut notes = Vec::new();
        read_namespace_context(&mut n, &mut notes);
        (n, notes)
    })
    .expect("enter");
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(
        inner.ip_local_port_range,
        Some(PortRange {
            low: 20000,
            high: 20999
        })
    );
    assert_eq!(inner.ip_local_reserved_ports.len(), 2);
    assert_eq!(inner.usable_ephemeral_ports(), Some(1000 - 11));
    // Host-global: absent inside a child namespace.
    assert_eq!(inner.tcp_max_orphans, None);
    assert_eq!(inner.tcp_fin_timeout_s, Some(17));
    assert_eq!(inner.tcp_max_tw_buckets, Some(1234));
    assert_eq!(inner.somaxconn, Some(77));
    // A fresh namespace has no TCP sockets.
    let st = inner.sockstat.expect("sockstat");
    assert_eq!(
        (st.tcp_inuse, st.tcp6_inuse, st.tcp_tw),
        (0, 0, 0),
        "{st:?}"
    );
    assert!(inner.counters.listen_drops.is_some());

    let mut host = Namespace::new(d.entries[0].id);
    let mut notes = Vec::new();
    read_namespace_context(&mut host, &mut notes);
    assert_ne!(host.ip_local_port_range, inner.ip_local_port_range);
    assert_ne!(host.somaxconn, inner.somaxconn);
    assert_ne!(host.tcp_fin_timeout_s, inner.tcp_fin_timeout_s);
    assert_ne!(host.tcp_max_tw_buckets, inner.tcp_max_tw_buckets);
    assert!(
        host.tcp_max_orphans.is_some(),
        "visible in the initial namespace"
    );
}

#[test]
fn deleted_namespace_is_reported_vanished() {
    if !root_or_skip("deleted_namespace_is_reported_vanished") {
        return;
    }
    let mut ns = NetnsGuard::new("sockleak-t");
    let d = discover(Path::new("/proc"), Path::new("/run/netns"));
    let entry = find_named(&d.entries, &ns.name).clone();
    ns.delete();
    let err = run_in(&entry, || ()).expect_err("namespace is gone");
    assert!(matches!(err, NetnsError::Vanished { .. }), "{err}");
    assert!(err.to_string().contains(&entry.id.to_string()), "{err}");

    // The own namespace runs inline, on this thread.
    let me = std::thread::current().id();
    let own = &d.entries[0];
    assert_eq!(
        run_in(own, || std::thread::current().id()).expect("own"),
        me
    );
}

/// Sorted (cookie, state, local, remote, inode) rows: what two dumps of a
/// quiet namespace must agree on.
fn row_keys(rows: &[sockleak_model::Socket]) -> Vec<(u64, TcpState, String, String, u64)> {
    let mut k: Vec<_> = rows
        .iter()
        .map(|s| {
            (
                s.cookie.0,
                s.state,
                s.local.to_string(),
                s.remote.to_string(),
                s.inode,
            )
        })
        .collect();
    k.sort();
    k
}

#[test]
fn one_walk_dump_lists_what_the_per_family_dumps_list() {
    if !root_or_skip("one_walk_dump_lists_what_the_per_family_dumps_list") {
        return;
    }
    let ns = NetnsGuard::new("sockleak-w");
    let d = discover(Path::new("/proc"), Path::new("/run/netns"));
    let entry = find_named(&d.entries, &ns.name).clone();
    let (both, by_family, tw_seen) = run_in(&entry, || {
        use std::io::Write;
        use std::net::{TcpListener, TcpStream};
        // IPv4 and IPv6: listeners, an established pair, a CLOSE_WAIT with
        // unread bytes, a TIME_WAIT (the client closes first).
        let l4 = TcpListener::bind("127.0.0.1:0").expect("bind v4");
        let l6 = TcpListener::bind("[::1]:0").expect("bind v6");
        let mut held = Vec::new();
        for l in [&l4, &l6] {
            let addr = l.local_addr().expect("addr");
            let c = TcpStream::connect(addr).expect("connect");
            let (s, _) = l.accept().expect("accept");
            held.push(c);
            held.push(s);
            let mut c = TcpStream::connect(addr).expect("connect");
            let (s, _) = l.accept().expect("accept");
            c.write_all(b"unread").expect("write");
            drop(c);
            held.push(s);
            let c = TcpStream::connect(addr).expect("connect");
            let (s, _) = l.accept().expect("accept");
            drop(c);
            std::thread::sleep(std::time::Duration::from_millis(50));
            drop(s);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        let req = DumpRequest {
            states: StateSet::ALL,
            want_info: true,
        };
        let mut both = Vec::new();
        let s1 = diag::dump(entry.id, &req, &mut both).expect("one-walk dump");
        let mut by_family = Vec::new();
        let s2 = diag::dump_by_family(entry.id, &req, &mut by_family).expect("per-family dumps");
        assert_eq!(s1.malformed + s2.malformed, 0);
        let tw = both
            .iter()
            .filter(|s| s.state == TcpState::TimeWait)
            .count();
        drop(held);
        (both, by_family, tw)
    })
    .expect("enter namespace");
    // 2 listeners + per family 2 established + 1 CLOSE_WAIT (+ its
    // FIN_WAIT2 peer, closed: an orphan until it times out) + 1 TIME_WAIT.
    assert!(both.len() >= 10, "too few rows: {both:#?}");
    assert_eq!(tw_seen, 2, "one TIME_WAIT per family: {both:#?}");
    for fam in [sockleak_model::Family::Inet, sockleak_model::Family::Inet6] {
        assert!(
            both.iter()
                .any(|s| s.family == fam && s.state == TcpState::CloseWait && s.recv_q >= 6),
            "CLOSE_WAIT with unread bytes of {fam:?} missing"
        );
        assert!(
            both.iter().any(|s| s.family == fam && s.tcp_info.is_some()),
            "tcp_info of {fam:?} missing"
        );
    }
    assert_eq!(row_keys(&both), row_keys(&by_family));
}

#[test]
fn only_a_namespace_without_tcp_sockets_is_called_empty() {
    if !root_or_skip("only_a_namespace_without_tcp_sockets_is_called_empty") {
        return;
    }
    use sockleak_collect::context::holds_no_tcp;
    let ns = NetnsGuard::new("sockleak-e");
    let d = discover(Path::new("/proc"), Path::new("/run/netns"));
    let entry = find_named(&d.entries, &ns.name).clone();
    let counts = |n: &mut Namespace| {
        let mut notes = Vec::new();
        read_namespace_context(n, &mut notes);
        holds_no_tcp(n, &notes)
    };
    let (empty, v6_listener, time_wait_only) = run_in(&entry, || {
        let mut n = Namespace::new(entry.id);
        let empty = counts(&mut n);
        // An IPv6 listener alone: counted by sockstat6 only.
        let l6 = std::net::TcpListener::bind("[::1]:0").expect("bind v6");
        let v6 = counts(&mut n);
        // A TIME_WAIT alone: the client closes first, then everything else.
        let addr = l6.local_addr().expect("addr");
        let c = std::net::TcpStream::connect(addr).expect("connect");
        let (s, _) = l6.accept().expect("accept");
        drop(c);
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop(s);
        drop(l6);
        std::thread::sleep(std::time::Duration::from_millis(50));
        let tw = counts(&mut n);
        let rows = {
            let mut out = Vec::new();
            diag::dump(
                entry.id,
                &DumpRequest {
                    states: StateSet::ALL,
                    want_info: false,
                },
                &mut out,
            )
            .expect("dump");
            out
        };
        (empty, v6, (tw, rows))
    })
    .expect("enter namespace");
    assert!(empty, "a fresh namespace holds no TCP socket");
    assert!(!v6_listener, "an IPv6 listener is a TCP socket");
    let (tw, rows) = time_wait_only;
    assert!(
        rows.iter().all(|s| s.state == TcpState::TimeWait) && !rows.is_empty(),
        "expected only TIME_WAIT rows: {rows:#?}"
    );
    assert!(!tw, "a TIME_WAIT is a TCP socket");
}
