//! The status line of `check` and `run`: on a terminal (a real pty made by
//! util-linux `script`) it counts the requests, the settle countdown and the
//! tree's CLOSE_WAIT sockets, rewritten with `\r` and cleared before the
//! report; with stderr not a terminal nothing of it is written (the
//! `assert_no_status_line` checks in check_leak.rs and run_leaks.rs).

use crate::check_support::*;
use crate::support::*;
use std::process::{Command, Stdio};
use std::time::Duration;

/// `'word'` for sh, with `'` inside escaped.
fn sh_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// Runs `sockleak ARGS` on a fresh pty (`script -q -e -c CMD /dev/null`)
/// and returns its exit code and everything written to the terminal; `None`
/// when util-linux `script` is not installed.
fn on_a_terminal(args: &[&str], limit: Duration) -> Option<(i32, String)> {
    let bin = env!("CARGO_BIN_EXE_sockleak");
    let mut line = sh_quote(bin);
    for a in args {
        line.push(' ');
        line.push_str(&sh_quote(a));
    }
    let mut child = match Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .env("SHELL", "/bin/sh")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("start script: {e}"),
    };
    // Read while it runs, so a full pipe never blocks it.
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut buf);
        buf
    });
    let status = wait_or_kill(&mut child, limit, "sockleak on a pty did not finish");
    let out = reader.join().expect("reader");
    Some((
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out).into_owned(),
    ))
}

/// The status lines drawn: the pieces between `\r`s that start with `who`.
fn status_lines<'a>(screen: &'a str, who: &str) -> Vec<&'a str> {
    screen
        .split('\r')
        .filter(|l| l.starts_with(who))
        .map(str::trim_end)
        .collect()
}

#[test]
fn check_on_a_terminal_counts_requests_and_the_settle_countdown() {
    if !require_root("check progress", "reads the spawned server's fd table") {
        return;
    }
    let port = free_port().to_string();
    let server = format!(
        "python3 {} --fixed --port {port}",
        peer_path("leaky_http.py")
    );
    let url = format!("http://127.0.0.1:{port}/");
    let Some((code, screen)) = on_a_terminal(
        &[
            "check",
            "--spawn",
            &server,
            "--ready-port",
            &port,
            "--http",
            &url,
            "--requests",
            "3000",
            "--concurrency",
            "2",
        ],
        Duration::from_secs(60),
    ) else {
        eprintln!("SKIPPED check_on_a_terminal: util-linux `script` is not installed");
        return;
    };
    assert_eq!(code, 0, "{screen}");
    let lines = status_lines(&screen, "check ");
    // The load: done of total, failed; at least one tick while it ran.
    let load: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains(" load ") && l.contains("/3000 requests, 0 failed"))
        .collect();
    assert!(!load.is_empty(), "no load progress in {lines:?}");
    // The settle: how long steady, and the countdown going down.
    let countdown: Vec<f64> = lines
        .iter()
        .filter(|l| l.contains("settling: counts steady for"))
        .filter_map(|l| l.rsplit("gives up in ").next())
        .filter_map(|t| t.trim_end_matches(" s").parse().ok())
        .collect();
    assert!(countdown.len() >= 2, "no settle countdown in {lines:?}");
    assert!(
        countdown.windows(2).all(|w| w[1] <= w[0]) && countdown[0] <= 10.0,
        "{countdown:?}"
    );
    // Cleared before the report: blanks over the line, then the report at
    // the start of a clean line.
    let report = screen
        .find("after 3000 requests")
        .unwrap_or_else(|| panic!("no report: {screen}"));
    let before = &screen[..report];
    assert!(before.ends_with('\r'), "{before:?}");
    let cleared = before
        .trim_end_matches('\r')
        .rsplit('\r')
        .next()
        .unwrap_or("");
    assert!(
        !cleared.is_empty() && cleared.trim().is_empty(),
        "the last status line was not blanked: {cleared:?}"
    );
    assert!(!screen[report..].contains("check 0.") && !screen[report..].contains("settling:"));
}

#[test]
fn run_on_a_terminal_shows_samples_and_the_trees_close_wait() {
    if !require_root("run progress", "reads the script's fd tables") {
        return;
    }
    let script = peer_path("run_script.py");
    let Some((code, screen)) = on_a_terminal(
        &[
            "run", "--", "python3", &script, "leaky", "--count", "5", "--exit", "0",
        ],
        Duration::from_secs(30),
    ) else {
        eprintln!("SKIPPED run_on_a_terminal: util-linux `script` is not installed");
        return;
    };
    assert_eq!(code, 0, "{screen}");
    let lines = status_lines(&screen, "run ");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" samples, ") && l.contains(" 5 CLOSE_WAIT, ")),
        "no status line with the 5 CLOSE_WAIT sockets: {lines:?}"
    );
    // The report comes after the line was blanked.
    let report = screen.find("sockleak run: ").expect("report");
    assert!(screen[..report].trim_end_matches('\n').ends_with('\r'));
    assert!(status_lines(&screen[report..], "run ").is_empty());
}
