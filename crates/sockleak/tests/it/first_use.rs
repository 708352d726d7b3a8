//! What a new user trips on first (issue 13): counts that disagree between a
//! finding and its group row, a young leak read as an all-clear, unowned
//! TIME_WAIT listed socket by socket, a half-closed relay called a leak, and
//! filters that silently match nothing. The sockets are this test process's
//! own, on loopback, so every count is known exactly.

use crate::support::*;
use crate::watch_support::{reports, watch_jsonl};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `n` accepted connections on `l` whose clients hung up: server-side
/// CLOSE_WAIT held by this process. Returns the accepted ends.
fn close_wait_wave(l: &TcpListener, n: usize) -> Vec<TcpStream> {
    let addr = l.local_addr().expect("listener address");
    let mut held = Vec::new();
    for _ in 0..n {
        let c = TcpStream::connect(addr).expect("connect on loopback");
        let (s, _) = l.accept().expect("accept");
        drop(c); // the client hangs up: FIN to the server end
        held.push(s);
    }
    wait_states(addr.port(), "CLOSE-WAIT", n);
    held
}

/// Waits (bounded) until `ss` lists `n` sockets on local `port` in `state`.
fn wait_states(port: u16, state: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let sport = format!(":{port}");
        let rows = ss_rows(&["ss", "-tanH", "state", "all", "sport", "=", &sport]);
        let seen = rows.iter().filter(|r| r.0 == state).count();
        if seen >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {seen} of {n} sockets on :{port} reached {state}: {rows:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn me() -> String {
    std::process::id().to_string()
}

#[test]
fn a_finding_counts_the_whole_group_and_the_part_past_min_age() {
    if !require_root(
        "a_finding_counts_the_whole_group",
        "reads this test's own fds as root",
    ) {
        return;
    }
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let _old = close_wait_wave(&l, 5);
    std::thread::sleep(Duration::from_millis(2500));
    let _young = close_wait_wave(&l, 3);
    let port_s = port.to_string();
    let args = ["--pid", &me(), "--port", &port_s, "--min-age", "2s"];

    let doc = scan_json(&args);
    let f = the_finding(&doc, "close_wait_leak", std::process::id());
    assert_eq!(f["count"], 5, "judged: the five past --min-age: {f:#}");
    assert_eq!(f["group_count"], 8, "the whole group: {f:#}");
    assert_eq!(f["min_age_s"], 2, "{f:#}");
    let summary = f["summary"].as_str().expect("summary");
    assert!(
        summary.contains("8 sockets in CLOSE_WAIT, 5 of them older than 2 s"),
        "{summary}"
    );

    // The human group row says 8 as well: the numbers agree.
    let mut all = vec!["scan", "--fail-on", "never"];
    all.extend_from_slice(&args);
    let (code, out, err) = run(&all);
    assert_eq!(code, 0, "{err}");
    let text = one_line(&out);
    assert!(
        text.contains("8 sockets in CLOSE_WAIT, 5 of them older than 2 s"),
        "{out}"
    );
    let row = out
        .lines()
        .find(|l| l.trim_start().starts_with("CLOSE-WAIT") && l.contains(&format!(":{port}")))
        .unwrap_or_else(|| panic!("no CLOSE-WAIT group row for :{port} in\n{out}"));
    let count: u64 = row
        .split_whitespace()
        .nth(3)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no count in {row:?}"));
    assert_eq!(count, 8, "{row}");
}

#[test]
fn a_young_leak_is_said_not_judged_instead_of_silence() {
    if !require_root(
        "a_young_leak_is_said_not_judged",
        "reads this test's own fds as root",
    ) {
        return;
    }
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port().to_string();
    let _held = close_wait_wave(&l, 4);
    let (code, out, err) = run(&["scan", "--pid", &me(), "--port", &port, "--min-age", "1h"]);
    assert_eq!(code, 0, "nothing judged, nothing failed: {err}");
    let text = one_line(&out);
    let who = format!(
        "of {} (pid {})",
        comm(std::process::id()),
        std::process::id()
    );
    assert!(
        text.contains(&format!(
            "4 CLOSE_WAIT sockets {who} are younger than 60 min: not judged yet"
        )),
        "{out}"
    );
    assert!(text.contains("sockleak watch"), "{out}");
    // Judged at 0 s, the same sockets are a finding and the line is gone.
    let (_, out, _) = run(&["scan", "--pid", &me(), "--port", &port, "--min-age", "0s"]);
    assert!(!out.contains("not judged yet"), "{out}");
    assert!(out.contains("close_wait_leak"), "{out}");
}

#[test]
fn unowned_time_wait_is_grouped_by_the_end_it_shares() {
    // A server that closes first leaves TIME_WAIT on its own port, one per
    // client port; once its listener is gone nothing marks it a server.
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let mut clients = Vec::new();
    for _ in 0..30 {
        let c = TcpStream::connect(addr).expect("connect");
        let (s, _) = l.accept().expect("accept");
        drop(s); // server closes first: its end goes to TIME_WAIT
        clients.push(c);
    }
    drop(l);
    for mut c in clients {
        let mut b = [0u8; 1];
        let _ = c.read(&mut b); // EOF, then close: the client end is gone
    }
    wait_states(addr.port(), "TIME-WAIT", 30);
    let port = addr.port().to_string();
    let (code, out, err) = run(&["scan", "--port", &port, "--fail-on", "never"]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_start().starts_with("TIME-WAIT"))
        .collect();
    assert_eq!(
        rows.len(),
        1,
        "one row for the 30 TIME_WAIT, not 30:\n{out}"
    );
    assert!(rows[0].contains(&format!("127.0.0.1:{port}")), "{out}");
    assert!(rows[0].split_whitespace().any(|w| w == "30"), "{out}");
}

#[test]
fn a_half_closed_relay_is_active_not_a_leak() {
    if !require_root(
        "a_half_closed_relay_is_active",
        "reads this test's own fds as root",
    ) {
        return;
    }
    // A relay: the client half-closes (shutdown(SHUT_WR)) and keeps
    // reading; the server end, in CLOSE_WAIT, keeps writing to it for
    // longer than --min-age. Beside it a real leak on another listener.
    let relay = TcpListener::bind("127.0.0.1:0").expect("bind relay");
    let relay_port = relay.local_addr().expect("addr").port();
    let leak = TcpListener::bind("127.0.0.1:0").expect("bind leak");
    let leak_port = leak.local_addr().expect("addr").port();
    let _leaked = close_wait_wave(&leak, 3);

    let stop = Arc::new(AtomicBool::new(false));
    // The writers and readers end with the test, also when it fails.
    struct StopOnDrop(Arc<AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let _stop_guard = StopOnDrop(Arc::clone(&stop));
    let mut threads = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(relay.local_addr().expect("addr")).expect("connect");
        let (mut s, _) = relay.accept().expect("accept");
        c.shutdown(Shutdown::Write).expect("half-close");
        let stop_w = Arc::clone(&stop);
        threads.push(std::thread::spawn(move || {
            // Bounded: at most 100 writes, every 100 ms.
            for _ in 0..100 {
                if stop_w.load(Ordering::Relaxed) || s.write_all(b"relayed tail\n").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }));
        let stop_r = Arc::clone(&stop);
        threads.push(std::thread::spawn(move || {
            c.set_read_timeout(Some(Duration::from_millis(200)))
                .expect("timeout");
            let mut buf = [0u8; 4096];
            let deadline = Instant::now() + Duration::from_secs(15);
            while !stop_r.load(Ordering::Relaxed) && Instant::now() < deadline {
                if let Ok(0) = c.read(&mut buf) {
                    break;
                }
            }
        }));
    }
    wait_states(relay_port, "CLOSE-WAIT", 2);

    let lines = watch_jsonl(
        &[
            "--interval",
            "500ms",
            "--count",
            "8",
            "--pid",
            &me(),
            "--min-age",
            "1s",
        ],
        Duration::from_secs(30),
    );
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    // Every finding reported over the run (new or changed in any line).
    let pid = std::process::id();
    let on = |f: &Value, port: u16| {
        f["local"]
            .as_str()
            .is_some_and(|l| l.ends_with(&format!(":{port}")))
    };
    let leaks: Vec<&Value> = reports(&lines, "close_wait_leak", pid)
        .into_iter()
        .map(|(_, _, f)| f)
        .collect();
    assert!(
        leaks.iter().any(|f| on(f, leak_port)),
        "the real leak beside it is reported: {lines:#?}"
    );
    assert!(
        !leaks.iter().any(|f| on(f, relay_port)),
        "a relay still writing is not a leak: {leaks:#?}"
    );
    let half: Vec<&Value> = reports(&lines, "half_closed", pid)
        .into_iter()
        .map(|(_, _, f)| f)
        .filter(|f| on(f, relay_port))
        .collect();
    assert!(!half.is_empty(), "{lines:#?}");
    assert!(
        half.iter()
            .all(|f| f["severity"] == "info" && f["count"] == 2),
        "{half:#?}"
    );
}

#[test]
fn a_pid_that_does_not_exist_is_an_error() {
    let (code, _, err) = run(&["scan", "--pid", "4194304"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no process 4194304"), "{err}");
}

#[test]
fn a_process_filter_that_matches_nothing_says_so() {
    let (code, _, err) = run(&["scan", "--process", "no-such-process-xq7"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("no process matches --process no-such-process-xq7"),
        "{err}"
    );
}

#[test]
fn sockleak_leaves_itself_out_of_process_matches() {
    // Its own command line contains the pattern, as pgrep's would.
    let (code, out, err) = run(&["scan", "--json", "--process", "sockleak-self-xq7"]);
    assert_eq!(code, 0, "{err}");
    let doc: Value = serde_json::from_str(&out).expect("json");
    let procs = doc["processes"].as_array().expect("processes");
    assert!(procs.is_empty(), "sockleak matched itself: {procs:#?}");
    assert!(err.contains("no process matches"), "{err}");
}

#[test]
fn advice_leads_with_the_owners_runtime() {
    if !require_root(
        "advice_leads_with_the_owners_runtime",
        "reads the peer's fds as root",
    ) {
        return;
    }
    // The peer is python3: its fix comes in Python's words, before the
    // general rule.
    let peer = Peer::leaks(&["close-wait-server", "--conns", "3"]);
    let server = peer.pid("server");
    let port = port_of(peer.str("listen")).to_string();
    let doc = scan_json(&["--port", &port, "--min-age", "0s"]);
    let f = the_finding(&doc, "close_wait_leak", server);
    let advice = f["advice"].as_str().expect("advice");
    let python = advice
        .find("Python: when recv() returns b''")
        .unwrap_or_else(|| panic!("no Python fix: {advice}"));
    let general = advice
        .find("Close the connection when read() returns 0")
        .unwrap_or_else(|| panic!("no general rule: {advice}"));
    assert!(python < general, "{advice}");
    assert!(!advice.contains("Node:"), "{advice}");
}
