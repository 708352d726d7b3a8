//! `check --spawn` never leaves its target behind: not after a normal run
//! (see check_leak), not when the target crashes during the load or exits
//! before it listens, and not when the check itself is interrupted.

use crate::check_support::*;
use crate::support::*;
use std::time::{Duration, Instant};

#[test]
fn target_crash_during_load_fails_and_is_reported() {
    if !require_root("spawn crash", "reads the spawned server's fd table") {
        return;
    }
    let port = free_port().to_string();
    let server = format!(
        "python3 {} --crash-after 3 --port {port}",
        peer_path("leaky_http.py")
    );
    let url = format!("http://127.0.0.1:{port}/");
    let (code, doc, err) = check_json(&[
        "--spawn",
        &server,
        "--http",
        &url,
        "--requests",
        "20",
        "--concurrency",
        "1",
        "--timeout",
        "2s",
    ]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(check_named(&doc, "target_alive")["outcome"], "fail");
    assert_eq!(doc["target"]["exit"], "exit status 3");
    assert!(doc["summary"]
        .as_str()
        .expect("summary")
        .contains("the target ended (exit status 3)"));
    let pid = doc["target"]["pid"].as_u64().expect("pid");
    assert!(gone_within(pid, Duration::from_secs(5)));
}

#[test]
fn target_that_exits_before_listening_is_an_error() {
    let (code, _, err) = run(&[
        "check",
        "--spawn",
        "python3 -c 'import sys; sys.exit(4)'",
        "--http",
        "http://127.0.0.1:9/",
        "--requests",
        "1",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("ended before it listened: exit status 4"),
        "{err}"
    );
}

/// Children of `pid` (by ppid), from /proc.
fn children(pid: u32) -> Vec<u64> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u64>() else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
            let ppid = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().nth(1))
                .and_then(|x| x.parse::<u32>().ok());
            if ppid == Some(pid) {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn interrupted_check_stops_target_and_load_command() {
    if !require_root("spawn interrupt", "reads the spawned server's fd table") {
        return;
    }
    let port = free_port().to_string();
    let server = format!("python3 {} --port {port}", peer_path("leaky_http.py"));
    let mut child = sockleak()
        .args([
            "check",
            "--spawn",
            &server,
            "--ready-port",
            &port,
            "--load-cmd",
            "sleep 30",
        ])
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start sockleak check");
    // Wait (bounded) until both the target and the load command run.
    let until = Instant::now() + Duration::from_secs(20);
    let kids = loop {
        let k = children(child.id());
        if k.len() >= 2 || Instant::now() >= until {
            break k;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(kids.len(), 2, "target and load command started: {kids:?}");
    // SAFETY: kill(2) on the sockleak process this test started.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let status = wait_or_kill(
        &mut child,
        Duration::from_secs(15),
        "sockleak check did not stop after SIGINT",
    );
    let mut err = String::new();
    use std::io::Read;
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err);
    assert_eq!(status.code(), Some(130), "128 + SIGINT: {err}");
    assert!(err.contains("interrupted"), "{err}");
    for k in kids {
        assert!(
            gone_within(k, Duration::from_secs(5)),
            "pid {k} left behind: {err}"
        );
    }
}
