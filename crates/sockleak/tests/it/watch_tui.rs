//! The live view in a real terminal (tmux): the leaking process rises to the
//! top, Enter shows its finding, `q` quits, SIGTERM quits, and both leave the
//! terminal as they found it (canonical mode back on, normal screen). A
//! TIME_WAIT storm no process owns shows in the findings pane (Tab).

use crate::watch_support::*;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A tmux session made for one test, killed by its (unique) name on drop.
struct Tmux {
    name: String,
}

impl Tmux {
    fn start() -> Option<Tmux> {
        let ok = Command::new("tmux")
            .arg("-V")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            return None;
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("sockleak-watch-it-{}-{nanos}", std::process::id());
        let st = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                &name,
                "-x",
                "100",
                "-y",
                "30",
                "--",
                "bash",
                "--norc",
                "--noprofile",
            ])
            .env("PS1", "$ ")
            .status()
            .expect("tmux new-session");
        assert!(st.success(), "tmux new-session failed");
        Some(Tmux { name })
    }

    fn send(&self, keys: &[&str]) {
        let st = Command::new("tmux")
            .args(["send-keys", "-t", &self.name])
            .args(keys)
            .status()
            .expect("tmux send-keys");
        assert!(st.success());
    }

    fn capture(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.name])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Captures until `ok` holds, at most `limit`.
    fn wait_for(&self, what: &str, limit: Duration, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let screen = self.capture();
            if ok(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .status();
    }
}

/// The first row of the process table (the line after its header).
fn first_row(screen: &str) -> Option<&str> {
    let mut lines = screen
        .lines()
        .skip_while(|l| !(l.contains("PID") && l.contains("COMM")));
    lines.next()?;
    lines.next()
}

#[test]
fn watch_tui_in_tmux_shows_the_leak_on_top_and_restores_the_terminal() {
    let Some(tmux) = Tmux::start() else {
        eprintln!("SKIPPED watch_tui_in_tmux: tmux is not installed (apt-get install -y tmux)");
        return;
    };
    let pool = peer(
        "pool",
        &["--size", "8", "--every", "0.05", "--max-time", "40"],
    );
    let leak = peer(
        "close-wait",
        &["--every", "0.1", "--max", "300", "--max-time", "40"],
    );
    let (pool_pid, leak_pid) = (peer_pid(&pool), peer_pid(&leak));
    let bin = env!("CARGO_BIN_EXE_sockleak");
    let dir = std::env::temp_dir().join(format!("sockleak-tui-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let pid_file = dir.join("pid");
    let rec = dir.join("rec.jsonl");
    let cmd = format!(
        "sh -c 'echo $$ > {pf}; exec {bin} watch --interval 300ms --pid {pool_pid} --pid {leak_pid} \
         --record {rec}'; echo EXIT=$?; stty -a | tr ' ' '\\n' | grep -x -e icanon -e -icanon",
        pf = pid_file.display(),
        rec = rec.display()
    );
    tmux.send(&[&cmd, "Enter"]);

    // The leaker is judged a leak and leads the table.
    let leak_s = leak_pid.to_string();
    let screen = tmux.wait_for(
        "the leaker on top with a warning",
        Duration::from_secs(45),
        |s| {
            first_row(s)
                .is_some_and(|r| r.contains(&leak_s) && (r.contains("WARN") || r.contains("CRIT")))
        },
    );
    assert!(
        screen.contains(&pool_pid.to_string()),
        "the pool is listed too:\n{screen}"
    );

    // Its details show the finding, with the growth.
    tmux.send(&["g"]);
    tmux.send(&["Enter"]);
    tmux.wait_for(
        "the detail view with the finding",
        Duration::from_secs(10),
        |s| s.contains("close_wait_leak") && s.contains("Growing by") && s.contains(&leak_s),
    );

    // q quits; the shell gets back a sane terminal.
    tmux.send(&["q"]);
    let screen = tmux.wait_for("exit after q", Duration::from_secs(10), |s| {
        s.contains("EXIT=0")
            && s.lines()
                .any(|l| l.trim() == "icanon" || l.trim() == "-icanon")
    });
    assert!(
        screen.lines().any(|l| l.trim() == "icanon"),
        "raw mode left on after q:\n{screen}"
    );
    assert!(
        !screen.contains("Processes ·"),
        "alternate screen not left:\n{screen}"
    );
    // The live view recorded what --jsonl would have printed.
    let recorded = std::fs::read_to_string(&rec).expect("recording");
    let lines: Vec<serde_json::Value> = recorded
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert!(lines.len() >= 5, "{recorded}");
    for l in &lines {
        crate::support::validate_schema(l, "watch-v1.schema.json");
    }
    assert!(
        !reports(&lines, "close_wait_leak", leak_pid).is_empty(),
        "the recording lacks the leak"
    );

    // Again, stopped by SIGTERM this time.
    tmux.send(&["clear", "Enter"]);
    let _ = std::fs::remove_file(&pid_file);
    tmux.send(&[&cmd, "Enter"]);
    tmux.wait_for("the live view again", Duration::from_secs(10), |s| {
        s.contains("Processes ·")
    });
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    // SAFETY: kill(2) on the pid of the sockleak this test started (the
    // shell exec'd it, so the pid it wrote is sockleak's).
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let screen = tmux.wait_for("exit after SIGTERM", Duration::from_secs(10), |s| {
        s.contains("EXIT=0")
            && s.lines()
                .any(|l| l.trim() == "icanon" || l.trim() == "-icanon")
    });
    assert!(
        screen.lines().any(|l| l.trim() == "icanon"),
        "raw mode left on after SIGTERM:\n{screen}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn watch_tui_in_tmux_lists_a_host_level_finding_in_the_findings_pane() {
    let test = "watch_tui_in_tmux_lists_a_host_level_finding_in_the_findings_pane";
    if !crate::support::require_root(test, "ip netns add, sysctl inside the namespace") {
        return;
    }
    let Some(tmux) = Tmux::start() else {
        eprintln!("SKIPPED {test}: tmux is not installed (apt-get install -y tmux)");
        return;
    };
    // 60 TIME_WAIT toward one destination out of 100 ephemeral ports: a
    // time_wait_pressure warning that no process owns (as in findings_limits).
    let ns = crate::support::Netns::create("tui-tw");
    crate::findings_limits::sysctl_in(&ns, "net.ipv4.ip_local_port_range=40000 40099");
    crate::findings_limits::sysctl_in(&ns, "net.ipv4.tcp_tw_reuse=0");
    let _batch = crate::findings_limits::time_wait_batch(&ns, 60);
    let bin = env!("CARGO_BIN_EXE_sockleak");
    let cmd = format!(
        "{bin} watch --interval 300ms --netns {}; echo EXIT=$?",
        ns.name
    );
    tmux.send(&[&cmd, "Enter"]);

    // The process table says there is one, and where.
    tmux.wait_for(
        "the host finding announced in the process table",
        Duration::from_secs(20),
        |s| s.contains("Processes ·") && s.contains("Tab: 1 host finding"),
    );
    tmux.send(&["Tab"]);
    let screen = tmux.wait_for("the findings pane", Duration::from_secs(10), |s| {
        s.contains("Findings (") && s.contains("time_wait_pressure")
    });
    let row = screen
        .lines()
        .find(|l| l.contains("time_wait_pressure"))
        .unwrap_or_default();
    assert!(row.contains("WARN") && row.contains(" 60 "), "{screen}");

    // Enter: its numbers and advice.
    tmux.send(&["Enter"]);
    tmux.wait_for("the finding's details", Duration::from_secs(10), |s| {
        s.contains("time_wait_pressure · warning")
            && s.contains("usable ports")
            && s.contains("60%")
            && s.contains("127.0.0.1:9530")
            && s.contains("This is not a leak")
    });
    tmux.send(&["q"]);
    tmux.wait_for("exit after q", Duration::from_secs(10), |s| {
        s.contains("EXIT=0")
    });
}
