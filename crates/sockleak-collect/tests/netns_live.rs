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
