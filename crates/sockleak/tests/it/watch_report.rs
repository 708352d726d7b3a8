//! Recording and reporting: `watch --record` writes the same schema-valid
//! lines as `--jsonl`, `sockleak report` sums them up and draws an SVG chart
//! (checked to be well-formed XML with the leaker's series, wall-clock times
//! and the leak's start marker); `--plain` shows
//! what changed; a closed pipe ends watch quietly; the help texts are pinned.

use crate::support::{one_line, repo_root, run, sockleak, validate_schema, wait_or_kill};
use crate::watch_support::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("sockleak-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[test]
fn watch_record_then_report_renders_a_chart_of_the_leak() {
    let p = peer(
        "close-wait",
        &["--every", "0.1", "--max", "100", "--max-time", "30"],
    );
    let pid = peer_pid(&p);
    let pid_s = pid.to_string();
    let dir = temp_dir("report");
    let rec = dir.join("incident.jsonl");
    let rec_s = rec.to_str().expect("utf-8").to_string();
    let lines = watch_jsonl(
        &[
            "--interval",
            "300ms",
            "--count",
            "8",
            "--pid",
            &pid_s,
            "--record",
            &rec_s,
        ],
        Duration::from_secs(30),
    );
    let recorded = std::fs::read_to_string(&rec).expect("recording");
    assert_eq!(
        recorded.lines().count(),
        lines.len(),
        "one recorded line per sample"
    );
    for l in recorded.lines() {
        validate_schema(
            &serde_json::from_str(l).expect("JSON"),
            "watch-v1.schema.json",
        );
    }

    let svg = dir.join("chart.svg");
    let svg_s = svg.to_str().expect("utf-8").to_string();
    let (code, out, err) = run(&["report", &rec_s, "--svg", &svg_s]);
    assert_eq!(code, 0, "report failed: {err}");
    assert!(out.contains("8 samples every 300 ms"), "{out}");
    assert!(out.contains("close_wait_leak"), "{out}");
    assert!(out.contains(&format!("(pid {pid})")), "{out}");
    assert!(out.contains("[active]"), "{out}");
    // Still active: a start and no end time; the text is the finding's last
    // report, not its first (which said fewer sockets than the peak).
    let head = out
        .lines()
        .find(|l| l.contains("close_wait_leak") && l.contains(&format!("(pid {pid})")))
        .unwrap_or_else(|| panic!("no finding line in {out}"));
    assert!(head.contains("still active"), "{head}");
    let clocks = head
        .split([' ', ','])
        .filter(|w| w.len() == 8 && w.bytes().filter(|b| *b == b':').count() == 2)
        .count();
    assert_eq!(
        clocks, 1,
        "an active finding has a start and no end: {head}"
    );
    let reported: Vec<String> = recorded
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .flat_map(|d| {
            let f = &d["findings"];
            let mut v: Vec<serde_json::Value> = Vec::new();
            for part in ["new", "changed"] {
                v.extend(f[part].as_array().cloned().unwrap_or_default());
            }
            v
        })
        .filter(|f| f["kind"] == "close_wait_leak" && f["pid"] == pid)
        .map(|f| f["summary"].as_str().unwrap_or_default().to_string())
        .collect();
    let last = reported.last().expect("a close_wait_leak report");
    assert!(
        one_line(&out).contains(&one_line(last)),
        "the last report's text is shown: {last}\n{out}"
    );
    if reported.len() > 1 && reported.first() != reported.last() {
        let first = reported.first().expect("first");
        assert!(!one_line(&out).contains(&one_line(first)), "{out}");
    }

    // Well-formed XML, with the leaker's CLOSE_WAIT and fd series of 8 points
    // (checked by Python's XML parser, independent of the writer).
    let check = r#"
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
ns = "{http://www.w3.org/2000/svg}"
assert root.tag == ns + "svg", root.tag
for el in root.iter(ns + "polyline"):
    print(el.get("data-series"), len(el.get("points").split()))
"#;
    let py = Command::new("python3")
        .args(["-c", check, &svg_s])
        .output()
        .expect("python3");
    assert!(
        py.status.success(),
        "SVG is not well-formed: {}",
        String::from_utf8_lossy(&py.stderr)
    );
    let series = String::from_utf8_lossy(&py.stdout).to_string();
    let cw = format!("(pid {pid}) CLOSE_WAIT 8");
    assert!(series.lines().any(|l| l.ends_with(&cw)), "{series}");
    assert!(
        series
            .lines()
            .any(|l| l.contains(&format!("(pid {pid}) fds")) && l.ends_with(" 8")),
        "{series}"
    );
    // Recorded with --pid: the host panels sum what the filter kept.
    assert!(series.contains("processes shown CLOSE_WAIT"), "{series}");

    // The x axis is the recording's wall clock (UTC), and the leak has a
    // start marker in the leaker's panel and no end (it lasted).
    let text = std::fs::read_to_string(&svg).expect("svg");
    let doc = roxmltree::Document::parse(&text).expect("XML");
    let times: Vec<u64> = recorded
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["time_ms"].as_u64())
        .collect();
    let (t0, t1) = (times[0], times[times.len() - 1]);
    let ticks: Vec<_> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("x-tick"))
        .collect();
    assert!(!ticks.is_empty(), "no time ticks");
    for t in &ticks {
        let ms: u64 = t
            .attribute("data-t-ms")
            .and_then(|v| v.parse().ok())
            .expect("data-t-ms");
        assert!((t0..=t1).contains(&ms), "tick {ms} outside {t0}..{t1}");
        let secs = ms / 1000 % 86_400;
        let want = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
        assert_eq!(t.text(), Some(want.as_str()), "tick at {ms}");
    }
    let leaker = doc
        .descendants()
        .find(|n| {
            n.attribute("data-panel")
                .is_some_and(|p| p.ends_with(&format!("(pid {pid})")))
        })
        .expect("the leaker's panel");
    // Only the close_wait_leak's own markers: an fd_leak of the same process
    // is marked in that panel too, and may come and go on a loaded machine.
    let marks = |class: &str| {
        leaker
            .descendants()
            .filter(|n| n.attribute("class") == Some(class))
            .filter(|n| {
                n.descendants()
                    .any(|t| t.text().is_some_and(|t| t.contains("close_wait_leak")))
            })
            .count()
    };
    assert!(marks("finding-start") >= 1, "{text}");
    assert_eq!(marks("finding-end"), 0, "still active: no end marker");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn watch_report_rejects_what_is_not_a_recording() {
    let dir = temp_dir("report-bad");
    let f = dir.join("not.jsonl");
    std::fs::write(&f, "hello\n{\"schema\":\"other\"}\n").expect("write");
    let (code, _, err) = run(&["report", f.to_str().expect("utf-8"), "--no-chart"]);
    assert_eq!(code, 2);
    assert!(err.contains("no sockleak.watch/v1 lines"), "{err}");
    let (code, _, err) = run(&["report", "/nonexistent/rec.jsonl"]);
    assert_eq!(code, 2);
    assert!(err.contains("open /nonexistent/rec.jsonl"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn watch_plain_shows_only_what_changed() {
    let p = peer(
        "close-wait",
        &["--every", "0.1", "--max", "100", "--max-time", "30"],
    );
    let pid = peer_pid(&p);
    let pid_s = pid.to_string();
    let (code, out, err) = run(&[
        "watch",
        "--plain",
        "--interval",
        "300ms",
        "--count",
        "8",
        "--pid",
        &pid_s,
    ]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].contains("watching every 300 ms"), "{out}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("(pid {pid}): CLOSE_WAIT")) && l.contains("(+")),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("NEW WARNING close_wait_leak")
                || l.contains("NEW CRITICAL close_wait_leak")),
        "{out}"
    );
    // Nothing about other processes: --pid narrows the view.
    assert!(
        lines
            .iter()
            .skip(1)
            .all(|l| !l.contains("(pid ") || l.contains(&format!("(pid {pid})"))),
        "{out}"
    );
}

#[test]
fn watch_stops_quietly_when_the_reader_goes_away() {
    let mut child = sockleak()
        .args(["watch", "--jsonl", "--interval", "200ms", "--count", "100"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sockleak");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read");
    assert!(line.contains("sockleak.watch/v1"));
    // The reader (and the pipe) are gone now.
    let status = wait_or_kill(
        &mut child,
        Duration::from_secs(10),
        "watch kept running after its reader left",
    );
    assert_eq!(status.code(), Some(0));
}

#[test]
fn watch_and_report_help_match_snapshots_and_bad_flags_exit_2() {
    for (name, args) in [
        ("watch-help.txt", ["watch", "--help"]),
        ("report-help.txt", ["report", "--help"]),
    ] {
        let (code, out, _) = run(&args);
        assert_eq!(code, 0);
        let path = repo_root()
            .join("crates/sockleak/tests/it/snapshots")
            .join(name);
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(&path, &out).expect("write snapshot");
            continue;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("read {}: {e} (run with UPDATE_SNAPSHOTS=1)", path.display())
        });
        assert_eq!(
            expected, out,
            "{name} changed; rerun with UPDATE_SNAPSHOTS=1 and review"
        );
    }
    for args in [
        vec!["watch", "--interval", "10ms"],
        vec!["watch", "--interval", "fast"],
        vec!["watch", "--count", "0"],
        vec!["watch", "--count", "3", "--duration", "1s"],
        vec!["watch", "--jsonl", "--plain"],
    ] {
        let (code, _, err) = run(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
    }
}

#[test]
fn watch_stops_on_sigterm_and_keeps_the_recording() {
    let dir = temp_dir("sigterm");
    let rec = dir.join("r.jsonl");
    let mut child = sockleak()
        .args(["watch", "--jsonl", "--interval", "200ms", "--record"])
        .arg(&rec)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sockleak");
    // Keep reading (an open pipe) while it is stopped: it must end by the
    // signal, not by a broken pipe.
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    for _ in 0..2 {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read");
        assert!(line.contains("sockleak.watch/v1"), "{line}");
    }
    // SAFETY: kill(2) on the pid of the child this test started.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let status = wait_or_kill(&mut child, Duration::from_secs(10), "watch ignored SIGTERM");
    drop(reader);
    assert_eq!(status.code(), Some(0), "{status}");
    let text = std::fs::read_to_string(&rec).expect("recording");
    assert!(text.lines().count() >= 2, "{text}");
    for l in text.lines() {
        validate_schema(
            &serde_json::from_str(l).expect("JSON"),
            "watch-v1.schema.json",
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn recordings_are_private_and_never_written_through_a_symlink() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("private");
    // A recording holds every process's command line: mode 0600, also when
    // the file existed with a wider mode.
    let rec = dir.join("r.jsonl");
    std::fs::write(&rec, "old").expect("pre-existing file");
    std::fs::set_permissions(&rec, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let rec_s = rec.to_str().expect("utf-8").to_string();
    let (code, _, err) = run(&["watch", "--jsonl", "--count", "1", "--record", &rec_s]);
    assert_eq!(code, 0, "{err}");
    let mode = std::fs::metadata(&rec).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "recording mode {mode:o}");
    assert!(std::fs::read_to_string(&rec)
        .expect("read")
        .contains("sockleak.watch/v1"));

    // A symlink at the path (another user's trap in /tmp) is refused, and
    // its target is left alone.
    let target = dir.join("target");
    std::fs::write(&target, "keep").expect("target");
    let link = dir.join("link.jsonl");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    let link_s = link.to_str().expect("utf-8").to_string();
    let (code, _, err) = run(&["watch", "--jsonl", "--count", "1", "--record", &link_s]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("symlink"), "{err}");
    assert_eq!(std::fs::read_to_string(&target).expect("target"), "keep");
    let report = dir.join("run.json");
    let report_link = dir.join("run-link.json");
    std::os::unix::fs::symlink(&target, &report_link).expect("symlink");
    let (code, _, err) = run(&[
        "run",
        "--json",
        report_link.to_str().expect("utf-8"),
        "--",
        "true",
    ]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(std::fs::read_to_string(&target).expect("target"), "keep");
    let (code, _, err) = run(&[
        "run",
        "--json",
        report.to_str().expect("utf-8"),
        "--",
        "true",
    ]);
    assert_eq!(code, 0, "{err}");
    let mode = std::fs::metadata(&report)
        .expect("stat")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "run report mode {mode:o}");
    let _ = std::fs::remove_dir_all(&dir);
}
