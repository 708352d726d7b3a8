//! Sockets inside a network namespace created by the test: scan (as root)
//! sees them with the namespace's id and `ip netns` name, `--netns` selects
//! them, and `ip netns exec NS ss` agrees.

use crate::support::*;

#[test]
fn scan_sees_sockets_inside_a_named_namespace() {
    if !require_root(
        "scan_sees_sockets_inside_a_named_namespace",
        "ip netns add, setns",
    ) {
        return;
    }
    let ns = Netns::create("scan");
    let script = repo_root().join("tools/peers/population.py");
    let peer = Peer::start(&[
        "ip",
        "netns",
        "exec",
        &ns.name,
        "python3",
        script.to_str().expect("path"),
        "--small",
    ]);
    let ns_inode = peer.info["netns_inode"].as_u64().expect("inode");
    let server = peer.pid("server") as u64;

    let doc = scan_json(&[]);
    let names: Vec<_> = doc["host"]["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .filter(|n| n["id"] == ns_inode)
        .collect();
    assert_eq!(names.len(), 1, "namespace listed once");
    assert_eq!(names[0]["name"], ns.name.as_str());
    assert_eq!(names[0]["scanned"], true);
    assert!(names[0]["ip_local_port_range"]["low"].as_u64().is_some());
    // Host-global, reported for every namespace.
    assert!(names[0]["tcp_max_orphans"].as_u64().is_some());
    assert!(names[0]["sockstat"]["tcp_inuse"].as_u64().is_some());

    let inside: Vec<_> = doc["sockets"]
        .as_array()
        .expect("sockets")
        .iter()
        .filter(|s| s["netns"] == ns_inode)
        .collect();
    // listener + established pair + server CLOSE_WAIT + orphan FIN_WAIT2.
    let mut states: Vec<&str> = inside.iter().filter_map(|s| s["state"].as_str()).collect();
    states.sort();
    assert_eq!(
        states,
        vec![
            "CLOSE_WAIT",
            "ESTABLISHED",
            "ESTABLISHED",
            "FIN_WAIT2",
            "LISTEN"
        ]
    );
    for s in &inside {
        assert_eq!(s["netns_name"], ns.name.as_str());
    }
    let cw = inside
        .iter()
        .find(|s| s["state"] == "CLOSE_WAIT")
        .expect("close wait");
    assert_eq!(
        owners(cw)[0].0,
        server,
        "owner is the pid seen from the host"
    );

    // --netns NAME keeps only that namespace.
    let only = scan_json(&["--netns", &ns.name]);
    let socks = only["sockets"].as_array().expect("sockets");
    assert_eq!(socks.len(), inside.len());
    assert!(socks.iter().all(|s| s["netns"] == ns_inode));

    // ss inside the namespace agrees on states and owners.
    let theirs = ss_rows(&["ip", "netns", "exec", &ns.name, "ss", "-tanpH"]);
    let mut ss_states: Vec<String> = theirs.iter().map(|r| ss_state_to_kernel(&r.0)).collect();
    ss_states.sort();
    assert_eq!(ss_states, states);
    let ss_cw = theirs
        .iter()
        .find(|r| r.0 == "CLOSE-WAIT")
        .expect("ss sees the CLOSE_WAIT");
    assert_eq!(ss_cw.3, vec![server]);
}

#[test]
fn unknown_netns_name_is_reported_not_fatal() {
    let (code, out, err) = run(&["scan", "--json", "--netns", "sockleak-no-such-ns"]);
    // Nothing could be scanned: that is an error, and it says why.
    assert_eq!(code, 2, "stdout: {out}");
    assert!(err.contains("sockleak-no-such-ns"), "{err}");
}
