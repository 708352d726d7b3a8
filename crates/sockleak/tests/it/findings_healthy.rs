//! Healthy patterns from docs/scenarios.md that must stay quiet: a keep-alive
//! pool, a server whose CLOSE_WAIT lives 200 ms while clients churn, and
//! TIME_WAIT far below the port range. Each first checks that the sockets
//! that could tempt a rule are really there, so the test can fail.

use crate::support::*;
use serde_json::Value;
use std::time::{Duration, Instant};

#[test]
fn keep_alive_pool_is_quiet() {
    let peer = Peer::leaks(&["keepalive-pool", "--conns", "4"]);
    let (client, server) = (peer.pid("client"), peer.pid("server"));
    // Even with --min-age 0s: there is nothing to report.
    let doc = scan_json(&["--port", &peer.num("port").to_string(), "--min-age", "0s"]);
    let est = sockets_on_ports(&doc, &[peer.num("port")])
        .into_iter()
        .filter(|s| s["state"] == "ESTABLISHED")
        .count();
    assert_eq!(est, 8, "4 pooled connections, both ends");
    let about: Vec<&Value> = doc["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| {
            f["pid"] == client
                || f["pid"] == server
                || f["remote"] == peer.str("server")
                || f["local"] == peer.str("server")
        })
        .collect();
    assert!(about.is_empty(), "a healthy pool: {about:#?}");
}

#[test]
fn server_closing_shortly_after_eof_is_churn_not_a_leak() {
    // The client connects and hangs up for 2 s; the server closes each
    // connection 200 ms after EOF, so CLOSE_WAIT is always there, but young.
    let peer = Peer::leaks(&["churn", "--seconds", "2", "--close-delay", "0.2"]);
    let server = peer.pid("server");
    let port = peer.num("port");
    let port_s = port.to_string();
    let mut scans = 0;
    let mut saw_close_wait = 0;
    let deadline = Instant::now() + Duration::from_millis(2000);
    while Instant::now() < deadline && scans < 20 {
        let doc = scan_json(&["--port", &port_s]);
        scans += 1;
        saw_close_wait += sockets_on_ports(&doc, &[port])
            .into_iter()
            .filter(|s| s["state"] == "CLOSE_WAIT")
            .filter(|s| owners(s).iter().any(|(p, _)| *p == u64::from(server)))
            .count();
        let alarms = alarms_about(&doc, &[server]);
        assert!(alarms.is_empty(), "scan {scans}: {alarms:#?}");
        assert!(
            findings_of(&doc, "close_wait_leak").is_empty(),
            "scan {scans}: {:#}",
            doc["findings"]
        );
    }
    assert!(
        saw_close_wait > 0,
        "the control saw no CLOSE_WAIT in {scans} scans: it tested nothing"
    );
}

#[test]
fn time_wait_far_below_the_port_range_is_quiet() {
    let peer = Peer::leaks(&["time-wait", "--count", "120"]);
    assert_eq!(peer.num("made"), 120);
    let port = peer.num("port");
    let doc = scan_json(&["--port", &port.to_string()]);
    let tw = sockets_on_ports(&doc, &[port])
        .into_iter()
        .filter(|s| s["state"] == "TIME_WAIT")
        .count();
    assert!(tw >= 100, "the TIME_WAIT are there: {tw}");
    let usable = doc["host"]["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .find(|n| n["id"] == peer.num("netns_inode"))
        .and_then(|n| n["ip_local_port_range"].as_object())
        .and_then(|r| Some(r["high"].as_u64()? - r["low"].as_u64()? + 1))
        .expect("this namespace's port range");
    assert!(
        (tw as u64) * 4 < usable,
        "precondition: far below the range ({tw} of {usable})"
    );
    let loud: Vec<&Value> = findings_of(&doc, "time_wait_pressure")
        .into_iter()
        .filter(|f| f["remote"] == peer.str("remote"))
        .filter(|f| f["severity"] != "info")
        .collect();
    assert!(loud.is_empty(), "{loud:#?}");
}
