//! A known population (listener, established pair, server- and client-side
//! CLOSE_WAIT, FIN_WAIT2, TIME_WAIT, IPv6, dual-stack, a socket shared after
//! fork, a closed-but-held socket) in child processes on loopback: scan must
//! report exactly those sockets, with states, queues, owners, namespace and fd
//! kinds, and agree with `ss -tanpH`.

use crate::support::*;
use serde_json::Value;
use std::collections::BTreeMap;

fn find<'a>(socks: &[&'a Value], state: &str, local: &str, remote: Option<&str>) -> &'a Value {
    let hits: Vec<&&Value> = socks
        .iter()
        .filter(|s| {
            s["state"] == state && s["local"] == local && remote.is_none_or(|r| s["remote"] == r)
        })
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "expected exactly one {state} {local} -> {remote:?}, found {hits:#?}"
    );
    hits[0]
}

fn ports(peer: &Peer) -> Vec<u64> {
    peer.info["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| p.as_u64().expect("port"))
        .collect()
}

#[test]
fn scan_reports_exactly_the_population_with_owners_and_fd_kinds() {
    check_population(&["--fd-source", "proc"]);
}

/// The same exact population through the eBPF fd table: owners, inherited
/// holders, fd kinds and closed-but-held must not depend on the source.
#[test]
fn ebpf_fd_table_reports_the_same_population() {
    if !is_root() || !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        eprintln!("SKIPPED ebpf_fd_table_reports_the_same_population: needs root and kernel BTF");
        return;
    }
    let doc = check_population(&["--fd-source", "bpf"]);
    let notes = doc["partial"].as_array().expect("partial");
    assert!(
        !notes.iter().any(|n| n["what"] == "eBPF fd table"),
        "the eBPF fd table did not load: {notes:?}"
    );
}

fn check_population(source: &[&str]) -> Value {
    let peer = Peer::population(&[]);
    let doc = scan_json(source);
    let socks = sockets_on_ports(&doc, &ports(&peer));
    let netns = peer.info["netns_inode"].as_u64().expect("netns");

    let expect = peer.info["expect"].as_array().expect("expect");
    let listeners = peer.info["listeners"].as_array().expect("listeners");
    for e in expect {
        let s = find(
            &socks,
            e["state"].as_str().expect("state"),
            e["local"].as_str().expect("local"),
            e["remote"].as_str(),
        );
        let name = &e["name"];
        assert_eq!(s["family"], e["family"], "{name}: family");
        assert_eq!(s["netns"].as_u64(), Some(netns), "{name}: netns");
        if let Some(q) = e.get("recv_q") {
            assert_eq!(&s["recv_q"], q, "{name}: recv_q");
        }
        let mut want: Vec<(u64, u64)> = e["owners"]
            .as_array()
            .expect("owners")
            .iter()
            .map(|o| (o[0].as_u64().expect("pid"), o[1].as_u64().expect("fd")))
            .collect();
        want.sort();
        assert_eq!(owners(s), want, "{name} {}: owners", e["state"]);
        assert!(s["cookie"].as_u64().unwrap_or(0) > 0, "{name}: cookie");
        if want.is_empty() {
            assert_eq!(s["inode"], 0, "{name}: unowned sockets have no inode");
        }
    }
    for l in listeners {
        let s = find(&socks, "LISTEN", l["local"].as_str().expect("local"), None);
        assert_eq!(s["family"], l["family"]);
        let want = l["owners"][0].as_array().expect("owner");
        assert_eq!(
            owners(s),
            vec![(
                want[0].as_u64().expect("pid"),
                want[1].as_u64().expect("fd")
            )]
        );
    }
    // Exactly those: nothing else touches the peer's ports.
    assert_eq!(
        socks.len(),
        expect.len() + listeners.len(),
        "unexpected extra sockets: {socks:#?}"
    );

    // The shared socket: the forked child holds it by inheritance.
    let k = peer.pid("shared_child") as u64;
    let shared = socks
        .iter()
        .find(|s| s["owners"].as_array().is_some_and(|o| o.len() == 2))
        .expect("a socket with two holders");
    let child_owner = shared["owners"]
        .as_array()
        .expect("owners")
        .iter()
        .find(|o| o["pid"] == k)
        .expect("child holds the shared socket");
    assert_eq!(child_owner["inherited"], true);

    // Established sockets carry tcp_info; TIME_WAIT does not.
    let est = socks
        .iter()
        .find(|s| s["state"] == "ESTABLISHED")
        .expect("established");
    assert!(est["tcp_info"]["rtt_us"].as_u64().unwrap_or(0) > 0);
    let tw = socks
        .iter()
        .find(|s| s["state"] == "TIME_WAIT")
        .expect("time wait");
    assert!(tw["tcp_info"].is_null());
    assert_eq!(tw["timer"], "time_wait");

    // Processes: fd kinds, limits and closed-but-held.
    let procs = doc["processes"].as_array().expect("processes");
    let proc_of = |pid: u32| {
        procs
            .iter()
            .find(|p| p["pid"] == pid)
            .unwrap_or_else(|| panic!("process {pid} missing"))
    };
    let server = proc_of(peer.pid("server"));
    let client = proc_of(peer.pid("client"));
    assert_eq!(server["fds"]["pipe"], peer.info["fds"]["server"]["pipe"]);
    assert_eq!(server["fds"]["anon"], peer.info["fds"]["server"]["anon"]);
    // Server sockets: 3 listeners + accepted ones still held
    // (established, 2 CLOSE_WAIT, shared, ipv6, dual-stack).
    assert_eq!(server["fds"]["socket"], 9, "server socket fds");
    // Client: established, CLOSE_WAIT, FIN_WAIT2, shared, reset, ipv6, dual.
    assert_eq!(client["fds"]["socket"], 7, "client socket fds");
    assert_eq!(
        client["closed_but_held"],
        peer.info["closed_but_held"]["client"]
    );
    assert_eq!(server["closed_but_held"], 0);
    let total = server["fds"]
        .as_object()
        .expect("fds")
        .values()
        .map(|v| v.as_u64().expect("count"))
        .sum::<u64>();
    assert_eq!(
        server["fd_count"].as_u64(),
        Some(total),
        "fd_count = sum of kinds"
    );
    assert!(server["fd_limit"].as_u64().unwrap_or(0) > 0);
    assert!(server["cmdline"]
        .as_str()
        .is_some_and(|c| c.contains("population.py")));
    assert_eq!(server["netns"].as_u64(), Some(netns));
    doc
}

#[test]
fn scan_agrees_with_ss_on_states_and_owners() {
    let peer = Peer::population(&["--unread", "11"]);
    let ps = ports(&peer);
    let doc = scan_json(&[]);
    let ours = sockets_on_ports(&doc, &ps);
    let theirs: Vec<_> = ss_rows(&["ss", "-tanpH"])
        .into_iter()
        .filter(|(_, l, r, _)| ps.contains(&port_of(l)) || ps.contains(&port_of(r)))
        .collect();

    let mut ours_by_state: BTreeMap<String, usize> = BTreeMap::new();
    let mut ours_pids: BTreeMap<String, Vec<Vec<u64>>> = BTreeMap::new();
    for s in &ours {
        let st = s["state"].as_str().expect("state").to_string();
        *ours_by_state.entry(st.clone()).or_default() += 1;
        let mut pids: Vec<u64> = owners(s).into_iter().map(|(p, _)| p).collect();
        pids.dedup();
        ours_pids.entry(st).or_default().push(pids);
    }
    let mut theirs_by_state: BTreeMap<String, usize> = BTreeMap::new();
    let mut theirs_pids: BTreeMap<String, Vec<Vec<u64>>> = BTreeMap::new();
    for (st, _, _, pids) in &theirs {
        let st = ss_state_to_kernel(st);
        *theirs_by_state.entry(st.clone()).or_default() += 1;
        theirs_pids.entry(st).or_default().push(pids.clone());
    }
    assert_eq!(
        ours_by_state, theirs_by_state,
        "per-state counts differ from ss"
    );
    for v in ours_pids.values_mut().chain(theirs_pids.values_mut()) {
        for p in v.iter_mut() {
            p.sort();
        }
        v.sort();
    }
    assert_eq!(ours_pids, theirs_pids, "pid attribution differs from ss");
    // The client-side CLOSE_WAIT holds 11 unread bytes + the FIN.
    assert!(ours
        .iter()
        .any(|s| s["state"] == "CLOSE_WAIT" && s["recv_q"] == 12));
}

#[test]
fn state_filter_shows_only_that_state_and_its_owners() {
    let peer = Peer::population(&[]);
    let ps = ports(&peer);
    let doc = scan_json(&["--state", "close-wait"]);
    assert_eq!(doc["filtered"], true);
    let socks = sockets_on_ports(&doc, &ps);
    assert_eq!(socks.len(), 3, "2 server-side + 1 client-side CLOSE_WAIT");
    assert!(socks.iter().all(|s| s["state"] == "CLOSE_WAIT"));
    for s in doc["sockets"].as_array().expect("sockets") {
        assert_eq!(s["state"], "CLOSE_WAIT");
    }
    // --pid narrows to one process.
    let client = peer.pid("client");
    let doc = scan_json(&["--pid", &client.to_string()]);
    let procs = doc["processes"].as_array().expect("processes");
    assert_eq!(procs.len(), 1);
    assert_eq!(procs[0]["pid"], client);
    for s in doc["sockets"].as_array().expect("sockets") {
        assert!(owners(s).iter().any(|(p, _)| *p == client as u64));
    }
}

#[test]
fn human_views_name_the_processes_and_groups() {
    let peer = Peer::population(&[]);
    let server = peer.pid("server");
    let (code, out, err) = run(&["scan", "--fail-on", "never", "--pid", &server.to_string()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("PID") && out.contains("CL-WAIT"), "{out}");
    assert!(out.contains(&format!("python3 (pid {server})")), "{out}");
    let port = peer.info["listeners"][0]["local"]
        .as_str()
        .expect("listener");
    assert!(
        out.lines()
            .any(|l| l.contains("CLOSE-WAIT") && l.contains("server") && l.contains(port)),
        "server-side CLOSE_WAIT grouped on its listener {port}:\n{out}"
    );
    for line in out.lines() {
        assert!(
            line.chars().count() <= 100,
            "line over 100 columns: {line:?}"
        );
    }
    let (code, out, _) = run(&[
        "scan",
        "--sockets",
        "--fail-on",
        "never",
        "--pid",
        &server.to_string(),
    ]);
    assert_eq!(code, 0);
    assert!(out.starts_with("State"), "{out}");
    assert!(out.contains(&format!("pid={server},fd=")), "{out}");
    assert!(out.contains("CLOSE-WAIT"));
}
