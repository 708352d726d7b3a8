//! Incident 1 as a regression check: a server that never closes connections
//! the client hung up fails with the exact number of new CLOSE_WAIT sockets;
//! the fixed server passes; the same with an external curl loop; a server
//! that leaks pipes fails on fd growth. JSON and JUnit reports are validated.

use crate::check_support::*;
use crate::support::*;

#[test]
fn spawned_leaky_server_fails_with_exact_close_wait_count_and_valid_reports() {
    if !require_root(
        "check leak",
        "reads the spawned server's fd table and sockets",
    ) {
        return;
    }
    let port = free_port().to_string();
    let server = format!("python3 {} --port {port}", peer_path("leaky_http.py"));
    let url = format!("http://127.0.0.1:{port}/");
    let junit = scratch("junit-leak.xml");
    let junit_s = junit.to_str().expect("utf-8");
    let (code, doc, err) = check_json(&[
        "--spawn",
        &server,
        "--ready-port",
        &port,
        "--http",
        &url,
        "--requests",
        "50",
        "--concurrency",
        "4",
        "--behavior",
        "close",
        "--junit",
        junit_s,
    ]);
    assert_eq!(code, 1, "a leak is FAIL (exit 1): {err}");
    assert_no_status_line(&err);
    assert_eq!(doc["verdict"], "fail");
    assert_eq!(
        doc["deltas"]["states"]["CLOSE_WAIT"], 50,
        "{:#}",
        doc["deltas"]
    );
    let cw = check_named(&doc, "close_wait");
    assert_eq!(cw["outcome"], "fail");
    assert_eq!(cw["delta"], 50);
    assert_eq!(cw["limit"], 0);
    assert!(
        doc["summary"]
            .as_str()
            .expect("summary")
            .starts_with("after 50 requests the target holds 50 more CLOSE_WAIT sockets"),
        "{}",
        doc["summary"]
    );
    assert_eq!(doc["load"]["generator"]["ok"], 50);
    assert_eq!(doc["target"]["spawned"], true);
    let group = &doc["deltas"]["groups"][0];
    assert_eq!(group["state"], "CLOSE_WAIT");
    assert_eq!(group["role"], "server");
    assert_eq!(group["endpoint"], format!("127.0.0.1:{port}"));
    assert!(
        doc["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .any(|f| f["kind"] == "close_wait_leak" && f["count"] == 50),
        "a close_wait_leak finding explains it: {:#}",
        doc["findings"]
    );
    let cases = validate_junit(&junit);
    assert!(
        cases.contains(&("close_wait".to_string(), true)),
        "{cases:?}"
    );
    assert!(
        cases.contains(&("target_alive".to_string(), false)),
        "{cases:?}"
    );
    let _ = std::fs::remove_file(&junit);
    let pid = doc["target"]["pid"].as_u64().expect("pid");
    assert!(
        gone_within(pid, std::time::Duration::from_secs(5)),
        "target {pid} left behind"
    );
}

#[test]
fn spawned_fixed_server_passes_and_human_output_says_so() {
    if !require_root("check fixed", "reads the spawned server's fd table") {
        return;
    }
    let port = free_port().to_string();
    let server = format!(
        "python3 {} --fixed --port {port}",
        peer_path("leaky_http.py")
    );
    let url = format!("http://127.0.0.1:{port}/");
    let junit = scratch("junit-fixed.xml");
    let (code, out, err) = run(&[
        "check",
        "--spawn",
        &server,
        "--http",
        &url,
        "--requests",
        "50",
        "--concurrency",
        "4",
        "--junit",
        junit.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "fixed server PASSes: {out}\n{err}");
    assert_no_status_line(&err);
    assert!(!out.contains('\r'), "{out:?}");
    assert!(
        out.starts_with(
            "after 50 requests the target holds no more sockets or fds than before: PASS"
        ),
        "{out}"
    );
    let cases = validate_junit(&junit);
    assert!(cases.iter().all(|(_, failed)| !failed), "{cases:?}");
    let _ = std::fs::remove_file(&junit);
}

/// The external-load variant: curl (installed by tools/setup), or a python
/// urllib loop when curl is missing.
fn client_loop(port: u16, n: u32) -> String {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_ok()
    {
        format!(
            "for i in $(seq {n}); do curl -s -o /dev/null http://127.0.0.1:{port}/config || exit 1; done"
        )
    } else {
        eprintln!("NOTE: curl missing; using a python3 urllib loop as the external load");
        format!(
            "python3 -c 'import urllib.request as u\nfor i in range({n}): u.urlopen(\"http://127.0.0.1:{port}/config\").read()'"
        )
    }
}

#[test]
fn curl_loop_against_running_leaky_and_fixed_servers() {
    if !require_root("check curl", "reads the server's fd table") {
        return;
    }
    let (leaky, lport) = leaky_server(&[]);
    let pid = leaky.info["pid"].to_string();
    let (code, doc, err) = check_json(&["--pid", &pid, "--load-cmd", &client_loop(lport, 20)]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(doc["deltas"]["states"]["CLOSE_WAIT"], 20);
    assert_eq!(check_named(&doc, "load")["outcome"], "pass");
    assert_eq!(doc["load"]["kind"], "command");
    assert_eq!(doc["load"]["command"]["exit_code"], 0);
    assert!(doc["summary"]
        .as_str()
        .expect("summary")
        .starts_with("after the load command the target holds 20 more CLOSE_WAIT sockets"));

    let (fixed, fport) = leaky_server(&["--fixed"]);
    let pid = fixed.info["pid"].to_string();
    let (code, doc, err) = check_json(&["--pid", &pid, "--load-cmd", &client_loop(fport, 20)]);
    assert_eq!(code, 0, "{err} {:#}", doc["checks"]);
    assert!(doc["deltas"]["states"].get("CLOSE_WAIT").is_none());
    drop((leaky, fixed));
}

#[test]
fn pipe_leak_fails_on_fd_growth_with_sockets_fine() {
    if !require_root("check pipes", "reads the server's fd table") {
        return;
    }
    let (server, port) = leaky_server(&["--fixed", "--leak-pipes", "1"]);
    let pid = server.info["pid"].to_string();
    let url = format!("http://127.0.0.1:{port}/");
    let (code, doc, err) = check_json(&[
        "--pid",
        &pid,
        "--http",
        &url,
        "--requests",
        "10",
        "--concurrency",
        "2",
        "--max-pipe-growth",
        "0",
    ]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(check_named(&doc, "close_wait")["outcome"], "pass");
    let fd = check_named(&doc, "fd_growth");
    assert_eq!(fd["outcome"], "fail");
    assert_eq!(fd["delta"], 20);
    assert_eq!(check_named(&doc, "pipe_growth")["outcome"], "fail");
    assert_eq!(doc["deltas"]["fds"]["pipe"], 20);
    assert!(doc["summary"]
        .as_str()
        .expect("summary")
        .contains("20 more pipes"));
}

#[test]
fn raw_tcp_load_counts_close_wait_too() {
    if !require_root("check tcp", "reads the server's fd table") {
        return;
    }
    // The HTTP peer never sees a full request head from raw bytes, so every
    // connection ends with the client's FIN: one CLOSE_WAIT each.
    let (server, port) = leaky_server(&[]);
    let pid = server.info["pid"].to_string();
    let addr = format!("127.0.0.1:{port}");
    let (code, doc, err) = check_json(&[
        "--pid",
        &pid,
        "--tcp",
        &addr,
        "--send",
        "100",
        "--requests",
        "12",
        "--behavior",
        "close",
    ]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(doc["deltas"]["states"]["CLOSE_WAIT"], 12);
    assert_eq!(doc["load"]["generator"]["kind"], "tcp");
}

#[test]
fn remote_destinations_are_refused_without_allow_remote() {
    // 192.0.2.0/24 is TEST-NET-1: never a real host, and nothing is sent.
    let (code, _, err) = run(&[
        "check",
        "--pid",
        "1",
        "--http",
        "http://192.0.2.1:9/",
        "--requests",
        "1",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("--allow-remote"), "{err}");
}
