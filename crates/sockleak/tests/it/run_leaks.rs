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
