//! `check --spawn` never leaves its target behind: not after a normal run
//! (see check_leak), not when the target crashes during the load or exits
//! before it listens, not when the check itself is interrupted or SIGKILLed,
//! and not the children that left the target's process group (issue 15).

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
    // Their keepers, the target and the load command themselves.
    let tree = descendants(child.id());
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
    let left = left_behind(&tree, Duration::from_secs(5));
    assert!(left.is_empty(), "left behind: {left:?} of {tree:?}: {err}");
}

/// Issue 15: when sockleak itself was SIGKILLed, PDEATHSIG stopped only the
/// shell of a shell-wrapped target; the server of `sh -c 'server | cat'`
/// was re-parented to pid 1 and kept listening, and a setsid() child lived
/// on too. The keeper sees its control pipe close and stops the whole tree.
#[test]
fn sigkilled_check_leaves_nothing_of_the_target_tree() {
    if !require_root("spawn kill -9", "reads the spawned server's fd table") {
        return;
    }
    let port = free_port().to_string();
    let pids = scratch("check-kill9-pids");
    let log = scratch("check-kill9-stderr");
    let _ = std::fs::remove_file(&pids);
    let p = pids.display();
    let spawn = format!(
        "sh -c 'echo $$ >> {p}; setsid sleep 300 >/dev/null 2>&1 & echo $! >> {p}; python3 {} --port {port} | cat'",
        peer_path("leaky_http.py")
    );
    let mut child = sockleak()
        .args([
            "check",
            "--spawn",
            &spawn,
            "--ready-port",
            &port,
            "--load-cmd",
            "sleep 30",
        ])
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("stderr file"))
        .spawn()
        .expect("start sockleak check");
    // The load command runs once the target listens: the whole tree is up.
    let until = Instant::now() + Duration::from_secs(20);
    let loading = || {
        descendants(child.id()).iter().any(|&p| {
            std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c == b"sleep\x0030\x00")
        })
    };
    while !loading() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let written = pids_written(&pids, 2, Duration::from_secs(5));
    let mut tree = descendants(child.id());
    // SAFETY: kill(2) on the sockleak process this test started.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    let _ = wait_or_kill(
        &mut child,
        Duration::from_secs(10),
        "sockleak survived SIGKILL",
    );
    let err = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(written.len(), 2, "the shell and its setsid child: {err}");
    assert!(
        tree.len() >= 5,
        "sh, python3, cat, sleep, sleep 30: {tree:?}: {err}"
    );
    tree.extend(&written);
    let left = left_behind(&tree, Duration::from_secs(10));
    let _ = std::fs::remove_file(&pids);
    let _ = std::fs::remove_file(&log);
    assert!(left.is_empty(), "left behind: {left:?} of {tree:?}: {err}");
}

/// Issue 15: a child that calls setsid() leaves the target's (and the load
/// command's) process group, so stopping the group missed it and it outlived
/// a passing check.
#[test]
fn passing_check_stops_setsid_children_of_target_and_load_command() {
    if !require_root("spawn setsid", "reads the spawned server's fd table") {
        return;
    }
    let port = free_port().to_string();
    let pids = scratch("check-setsid-pids");
    let _ = std::fs::remove_file(&pids);
    let p = pids.display();
    let spawn = format!(
        "sh -c 'setsid sleep 300 >/dev/null 2>&1 & echo $! >> {p}; exec python3 {} --port {port}'",
        peer_path("leaky_http.py")
    );
    let load = format!("setsid sleep 301 >/dev/null 2>&1 & echo $! >> {p}");
    let (code, doc, err) = check_json(&[
        "--spawn",
        &spawn,
        "--ready-port",
        &port,
        "--load-cmd",
        &load,
        "--settle",
        "2s",
    ]);
    let written = pids_written(&pids, 2, Duration::from_secs(2));
    let left = left_behind(&written, Duration::from_secs(10));
    let _ = std::fs::remove_file(&pids);
    assert_eq!(code, 0, "the check passes: {doc:#}\n{err}");
    assert_eq!(written.len(), 2, "both setsid children started: {err}");
    assert!(left.is_empty(), "left behind: {left:?}: {err}");
}
