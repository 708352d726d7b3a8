//! `sockleak run`: a script whose child keeps CLOSE_WAIT sockets and pipes
//! is a leak (exit 1 with --fail-on-leak, else its own code passes through);
//! a clean script's exit code always passes through; what the command
//! leaves running is stopped, also when sockleak is SIGKILLed (issue 15).

use crate::check_support::*;
use crate::support::*;
use std::time::{Duration, Instant};

#[test]
fn leaky_script_fails_with_fail_on_leak_and_names_the_process() {
    if !require_root("run leaky", "reads the script's fd tables") {
        return;
    }
    let script = peer_path("run_script.py");
    let (code, _, err) = run(&[
        "run",
        "--fail-on-leak",
        "--",
        "python3",
        &script,
        "leaky",
        "--count",
        "8",
    ]);
    assert_eq!(code, 1, "{err}");
    assert_no_status_line(&err);
    assert!(err.contains("LEAK python3"), "{err}");
    assert!(err.contains("held 8 CLOSE_WAIT socket(s)"), "{err}");
    assert!(err.contains("pipes +16"), "{err}");
    assert!(err.contains("exit 1 (--fail-on-leak)"), "{err}");

    let (code, _, err) = run(&[
        "run", "--", "python3", &script, "leaky", "--count", "8", "--exit", "0",
    ]);
    assert_eq!(
        code, 0,
        "without --fail-on-leak the command's code passes: {err}"
    );
    assert!(err.contains("leak seen in 1 process(es)"), "{err}");
}

#[test]
fn clean_script_passes_its_exit_code_through() {
    if !require_root("run clean", "reads the script's fd tables") {
        return;
    }
    let script = peer_path("run_script.py");
    let (code, _, err) = run(&[
        "run",
        "--fail-on-leak",
        "--",
        "python3",
        &script,
        "clean",
        "--count",
        "8",
        "--exit",
        "7",
    ]);
    assert_eq!(code, 7, "{err}");
    assert!(!err.contains("LEAK"), "{err}");
    assert!(
        err.contains("no leak seen; exit code 7 passed through"),
        "{err}"
    );
}

#[test]
fn missing_command_exits_127() {
    let (code, _, err) = run(&["run", "--", "/nonexistent/sockleak-test-command"]);
    assert_eq!(code, 127, "{err}");
}

#[test]
fn json_report_names_the_leaking_process_and_follows_the_schema() {
    if !require_root("run --json", "reads the script's fd tables") {
        return;
    }
    let script = peer_path("run_script.py");
    let dir = std::env::temp_dir().join(format!("sockleak-run-json-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("run.json");
    let path_s = path.to_str().expect("utf-8 path");
    let (code, _, err) = run(&[
        "run", "--json", path_s, "--", "python3", &script, "leaky", "--count", "8", "--exit", "3",
    ]);
    assert_eq!(code, 3, "the command's code passes through: {err}");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("report written"))
            .expect("report is JSON");
    validate_schema(&doc, "run-v1.schema.json");
    assert_eq!(doc["schema"], "sockleak.run/v1");
    assert_eq!(doc["exit_code"], 3);
    assert_eq!(doc["leak"], true);
    assert_eq!(doc["command"][0], "python3");
    let procs = doc["processes"].as_array().expect("processes");
    let leakers: Vec<&serde_json::Value> = procs
        .iter()
        .filter(|p| !p["leaks"].as_array().expect("leaks").is_empty())
        .collect();
    assert_eq!(leakers.len(), 1, "{procs:#?}");
    let p = leakers[0];
    // The same facts as the text report of the leaky script.
    assert_eq!(p["leaked_close_wait"], 8, "{p:#}");
    assert_eq!(p["states_last"]["CLOSE_WAIT"], 8, "{p:#}");
    assert_eq!(p["comm"], "python3");
    let pipes = |k: &str| p[k]["pipe"].as_i64().expect("pipes");
    assert_eq!(
        pipes("fd_kinds_last") - pipes("fd_kinds_first"),
        16,
        "{p:#}"
    );
    assert!(
        p["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .any(|f| f["kind"] == "close_wait_leak"),
        "{p:#}"
    );
    let _ = std::fs::remove_dir_all(&dir);

    // A path that cannot be created fails before the command runs.
    let (code, _, err) = run(&["run", "--json", "/nonexistent-dir/run.json", "--", "true"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/nonexistent-dir/run.json"), "{err}");
}

/// Issue 15: children the command left running — one of them in a session
/// of its own (setsid) — are listed and then stopped, not left behind.
#[test]
fn run_stops_what_the_command_left_running() {
    let pids = scratch("run-left-pids");
    let _ = std::fs::remove_file(&pids);
    let p = pids.display();
    let script = format!("setsid sleep 300 >/dev/null 2>&1 & echo $! >> {p}; sleep 301 >/dev/null 2>&1 & echo $! >> {p}; sleep 1");
    let (code, _, err) = run(&["run", "--", "sh", "-c", &script]);
    let written = pids_written(&pids, 2, Duration::from_secs(2));
    let left = left_behind(&written, Duration::from_secs(10));
    let _ = std::fs::remove_file(&pids);
    assert_eq!(code, 0, "{err}");
    assert_eq!(written.len(), 2, "{err}");
    assert!(left.is_empty(), "left behind: {left:?}: {err}");
    assert!(
        err.contains("still running after the command ended (stopped)"),
        "{err}"
    );
}

/// Issue 15: a SIGKILLed `sockleak run` stopped only the command itself
/// (PDEATHSIG); a pipeline it started and a setsid() child lived on.
#[test]
fn sigkilled_run_leaves_nothing_of_the_command_tree() {
    let pids = scratch("run-kill9-pids");
    let _ = std::fs::remove_file(&pids);
    let p = pids.display();
    let script = format!(
        "setsid sleep 300 >/dev/null 2>&1 & echo $! >> {p}; sleep 301 | cat & echo $! >> {p}; echo $$ >> {p}; wait"
    );
    let mut child = sockleak()
        .args(["run", "--", "sh", "-c", &script])
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start sockleak run");
    let written = pids_written(&pids, 3, Duration::from_secs(10));
    // The pipeline's first stage too: every process of the tree is up.
    let until = Instant::now() + Duration::from_secs(5);
    let mut tree = descendants(child.id());
    while tree.len() < 5 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
        tree = descendants(child.id());
    }
    // SAFETY: kill(2) on the sockleak process this test started.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    let _ = wait_or_kill(
        &mut child,
        Duration::from_secs(10),
        "sockleak survived SIGKILL",
    );
    assert_eq!(written.len(), 3, "setsid child, pipeline, shell");
    assert!(tree.len() >= 4, "sh, setsid sleep, sleep, cat: {tree:?}");
    tree.extend(&written);
    let left = left_behind(&tree, Duration::from_secs(10));
    let _ = std::fs::remove_file(&pids);
    assert!(left.is_empty(), "left behind: {left:?} of {tree:?}");
}
