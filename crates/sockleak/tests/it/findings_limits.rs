//! Findings about limits, reproduced by tools/peers/leaks.py: a TIME_WAIT
//! storm against a narrowed ephemeral port range in a network namespace the
//! test creates (incident 5), a process near its RLIMIT_NOFILE, a server that
//! never accepts, and a socket whose connection was reset while its process
//! keeps the fd. Each asserts the exact finding: kind, pid, endpoint, count,
//! limit and severity.

use crate::support::*;
use serde_json::Value;
use std::process::Command;

pub(crate) fn sysctl_in(ns: &Netns, setting: &str) {
    let ok = Command::new("ip")
        .args(["netns", "exec", &ns.name, "sysctl", "-q", "-w", setting])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "ip netns exec {} sysctl -w {setting} failed", ns.name);
}

/// `leaks.py time-wait` inside `ns`, toward 127.0.0.1:9530 (a fixed port is
/// fine in a namespace of our own, and keeps it out of the ephemeral range).
pub(crate) fn time_wait_batch(ns: &Netns, count: u32) -> Peer {
    let script = leaks_script();
    let count = count.to_string();
    let peer = Peer::start(&[
        "ip",
        "netns",
        "exec",
        &ns.name,
        "python3",
        &script,
        "time-wait",
        "--count",
        &count,
        "--port",
        "9530",
    ]);
    assert_eq!(peer.info["failed"], Value::Null, "{}", peer.info);
    assert_eq!(peer.num("made").to_string(), count);
    peer
}

/// The summary never calls TIME_WAIT a leak (the namespace's name, which
/// contains "sockleak", aside).
fn assert_not_called_a_leak(summary: &str, ns: &Netns) {
    let words = summary.replace(&ns.name, "NS").to_lowercase();
    assert!(!words.contains("leak"), "{summary}");
}

/// The one time_wait_pressure finding toward 127.0.0.1:9530 in `ns`.
fn pressure(doc: &Value, ns_id: u64) -> Value {
    let hits: Vec<&Value> = findings_of(doc, "time_wait_pressure")
        .into_iter()
        .filter(|f| f["netns"] == ns_id && f["remote"] == "127.0.0.1:9530")
        .collect();
    assert_eq!(hits.len(), 1, "{:#}", doc["findings"]);
    hits[0].clone()
}

#[test]
fn time_wait_storm_against_a_narrow_port_range_is_pressure_not_a_leak() {
    let test = "time_wait_storm_against_a_narrow_port_range_is_pressure_not_a_leak";
    if !require_root(test, "ip netns add, sysctl inside the namespace") {
        return;
    }
    let ns = Netns::create("tw");
    // 100 ephemeral ports (different parity at both ends, as the kernel
    // prefers). tcp_tw_reuse is 2 (loopback only) by default: connect() could
    // then recycle TIME_WAIT ports older than 1 s and the counts would drift.
    sysctl_in(&ns, "net.ipv4.ip_local_port_range=40000 40099");
    sysctl_in(&ns, "net.ipv4.tcp_tw_reuse=0");

    let first = time_wait_batch(&ns, 60);
    let ns_id = first.num("netns_inode");
    let doc = scan_json(&["--netns", &ns.name]);
    let info = doc["host"]["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .find(|n| n["id"] == ns_id)
        .expect("the test's namespace")
        .clone();
    assert_eq!(info["ip_local_port_range"]["low"], 40000);
    assert_eq!(info["ip_local_port_range"]["high"], 40099);
    let tw = doc["sockets"]
        .as_array()
        .expect("sockets")
        .iter()
        .filter(|s| s["state"] == "TIME_WAIT" && s["remote"] == "127.0.0.1:9530")
        .count();
    assert_eq!(tw, 60, "the kernel holds 60 TIME_WAIT");

    let f = pressure(&doc, ns_id);
    assert_eq!(f["severity"], "warning", "60 % ≥ 50 %: {f:#}");
    assert_eq!(f["count"], 60);
    assert_eq!(f["usable_ports"], 100);
    assert_eq!(f["ratio"].as_f64(), Some(0.6));
    assert_eq!(f["role"], "client");
    assert_eq!(f["local_ip"], "127.0.0.1");
    assert!(f.get("pid").is_none(), "TIME_WAIT has no owner: {f:#}");
    let summary = f["summary"].as_str().expect("summary");
    assert!(
        summary.contains("60% of the 100 usable ephemeral ports") && summary.contains("at risk"),
        "{summary}"
    );
    assert!(summary.contains(&ns.name), "names the namespace: {summary}");
    assert_not_called_a_leak(summary, &ns);
    // Nothing in this namespace is called a leak.
    let leaks: Vec<_> = doc["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["netns"] == ns_id && f["kind"].as_str().is_some_and(|k| k.contains("leak")))
        .collect();
    assert!(leaks.is_empty(), "{leaks:#?}");

    // 35 more (the first batch's listener is gone, the TIME_WAIT stays).
    drop(first);
    let _second = time_wait_batch(&ns, 35);
    let doc = scan_json(&["--netns", &ns.name]);
    let f = pressure(&doc, ns_id);
    assert_eq!(f["severity"], "critical", "95 % ≥ 90 %: {f:#}");
    assert_eq!(f["count"], 95);
    assert_eq!(f["usable_ports"], 100);
    assert_eq!(f["ratio"].as_f64(), Some(0.95));
    let summary = f["summary"].as_str().expect("summary");
    assert!(
        summary.contains("95% of the 100") && summary.contains("nearly exhausted"),
        "{summary}"
    );
    assert_not_called_a_leak(summary, &ns);
    let advice = f["advice"].as_str().expect("advice");
    assert!(
        advice.starts_with("This is not a leak") && advice.contains("ip_local_port_range"),
        "{advice}"
    );
    // The thresholds can be moved: at --time-wait-crit 0.99 it is a warning.
    let doc = scan_json(&["--netns", &ns.name, "--time-wait-crit", "0.99"]);
    assert_eq!(pressure(&doc, ns_id)["severity"], "warning");
}

#[test]
fn process_near_its_fd_limit_is_fd_exhaustion() {
    // Soft RLIMIT_NOFILE 100: 92 fds is a warning (≥ 80 %), 96 critical (≥ 95 %).
    let warn = Peer::leaks(&["fd-limit", "--limit", "100", "--fds", "92"]);
    let crit = Peer::leaks(&["fd-limit", "--limit", "100", "--fds", "96"]);
    assert_eq!(warn.num("fds"), 92);
    assert_eq!(crit.num("fds"), 96);
    let (w, c) = (warn.pid("process"), crit.pid("process"));
    let doc = scan_json(&["--pid", &w.to_string(), "--pid", &c.to_string()]);

    let f = the_finding(&doc, "fd_exhaustion", w);
    assert_eq!(f["severity"], "warning", "{f:#}");
    assert_eq!(f["count"], 92);
    assert_eq!(f["fd_count"], 92);
    assert_eq!(f["limit"], 100);
    assert_eq!(f["fd_limit"], 100);
    assert_eq!(f["ratio"].as_f64(), Some(0.92));
    let summary = f["summary"].as_str().expect("summary");
    assert!(
        summary.contains(&format!(
            "{} (pid {w}) has 92 of its 100 allowed file descriptors open (92%)",
            comm(w)
        )),
        "{summary}"
    );

    let f = the_finding(&doc, "fd_exhaustion", c);
    assert_eq!(f["severity"], "critical", "{f:#}");
    assert_eq!(f["count"], 96);
    assert_eq!(f["limit"], 100);
    assert_eq!(f["ratio"].as_f64(), Some(0.96));
}

#[test]
fn server_that_never_accepts_overflows_its_accept_queue() {
    let peer = Peer::leaks(&["no-accept", "--backlog", "4", "--clients", "10"]);
    let server = peer.pid("server");
    let port = peer.num("port").to_string();
    let doc = scan_json(&["--port", &port]);

    let f = the_finding(&doc, "accept_queue_overflow", server);
    assert_eq!(f["severity"], "critical", "{f:#}");
    assert_eq!(f["role"], "server");
    assert_eq!(f["local"], peer.str("listen"));
    assert_eq!(f["backlog"], 4);
    // Linux queues one more than the backlog (sk_acceptq_is_full uses ">").
    assert_eq!(f["count"], 5);
    assert_eq!(f["count"].as_u64(), Some(peer.num("accept_queue")));
    assert!(
        f["listen_overflows"].as_u64().is_some_and(|n| n >= 1),
        "the dropped SYNs were counted: {f:#}"
    );
    let summary = f["summary"].as_str().expect("summary");
    assert!(summary.contains("(5 waiting, backlog 4)"), "{summary}");
    // ss agrees on the queue (Recv-Q) and the backlog (Send-Q).
    let out = Command::new("ss")
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
        .expect("ss");
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols.get(1..3), Some(&["5", "4"][..]), "ss: {line}");

    // A critical finding fails even --fail-on critical.
    let (code, _, err) = run(&["scan", "--port", &port, "--fail-on", "critical"]);
    assert_eq!(code, 1, "{err}");
}

#[test]
fn reset_connection_kept_open_is_closed_but_held() {
    let peer = Peer::leaks(&["reset"]);
    let client = peer.pid("client");
    let doc = scan_json(&["--pid", &client.to_string()]);

    let f = the_finding(&doc, "closed_but_held", client);
    assert_eq!(f["severity"], "warning", "{f:#}");
    assert_eq!(f["count"], 1);
    let proc_ = doc["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .find(|p| p["pid"] == client)
        .expect("the client");
    assert_eq!(proc_["closed_but_held"], 1);
    // The socket is in no TCP table: the only trace is the fd.
    assert!(
        sockets_on_ports(&doc, &[peer.num("port")]).is_empty(),
        "{:#}",
        doc["sockets"]
    );
    assert!(
        findings_of(&doc, "close_wait_leak").is_empty(),
        "{:#}",
        doc["findings"]
    );
}
