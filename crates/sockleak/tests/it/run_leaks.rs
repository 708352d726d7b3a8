//! `sockleak run`: a script whose child keeps CLOSE_WAIT sockets and pipes
//! is a leak (exit 1 with --fail-on-leak, else its own code passes through);
//! a clean script's exit code always passes through.

use crate::check_support::*;
use crate::support::*;

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
