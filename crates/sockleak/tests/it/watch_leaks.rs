//! Leaks that only time shows, against real processes on loopback: a
//! CLOSE_WAIT leak with its rate, a pipe leak (fd_leak), and the time until a
//! process reaches a low fd limit (eta_s), each checked against the truth the
//! peer knows (its fixed schedule, the moment open() failed).

use crate::watch_support::*;
use std::time::{Duration, Instant};

/// One CLOSE_WAIT every 100 ms is 600 per minute.
#[test]
fn watch_close_wait_leak_is_found_within_a_few_intervals_with_its_rate() {
    let p = peer(
        "close-wait",
        &["--every", "0.1", "--max", "100", "--max-time", "30"],
    );
    let pid = peer_pid(&p);
    let pid_s = pid.to_string();
    let lines = watch_jsonl(
        &["--interval", "300ms", "--count", "10", "--pid", &pid_s],
        Duration::from_secs(30),
    );
    assert_eq!(lines.len(), 10);
    let hits = reports(&lines, "close_wait_leak", pid);
    let (first, _, f) = hits.first().unwrap_or_else(|| {
        panic!(
            "no close_wait_leak for pid {pid} in {} lines; last: {:#}",
            lines.len(),
            lines.last().expect("a line")
        )
    });
    // Five samples are needed; allow a couple more for a slow start.
    assert!(*first <= 7, "decided only at line {first}");
    assert!(f["severity"] != "info", "{f:#}");
    // Ages: the larger of the kernel's estimate and first seen (both lower
    // bounds), so either source may win.
    assert!(f["oldest_age_s"].is_u64(), "{f:#}");
    assert!(
        f["age_source"] == "first_seen" || f["age_source"] == "tcp_info",
        "{f:#}"
    );
    for (i, _, f) in &hits {
        let rate = f["rate_per_min"].as_f64().expect("rate_per_min");
        assert!(
            (480.0..=720.0).contains(&rate),
            "line {i}: rate {rate}/min is not within 20 % of 600: {f:#}"
        );
    }
    let last = lines.last().expect("a line");
    let proc_ = process_in(last, pid).expect("the leaker is listed");
    assert_eq!(proc_["leaking"], true, "{proc_:#}");
    let cw = proc_["rate_per_min"]["close_wait"].as_f64().expect("rate");
    assert!((480.0..=720.0).contains(&cw), "{proc_:#}");
    // The sockets growing with the CLOSE_WAIT leak are not a second finding.
    assert!(reports(&lines, "fd_leak", pid).is_empty());
}

/// Two pipe fds every 100 ms: 1200 fds per minute.
#[test]
fn watch_growing_pipes_are_an_fd_leak() {
    let p = peer(
        "pipes",
        &["--every", "0.1", "--max", "100", "--max-time", "30"],
    );
    let pid = peer_pid(&p);
    let pid_s = pid.to_string();
    let lines = watch_jsonl(
        &["--interval", "300ms", "--count", "10", "--pid", &pid_s],
        Duration::from_secs(30),
    );
    let hits = reports(&lines, "fd_leak", pid);
    let (_, _, f) = hits
        .last()
        .unwrap_or_else(|| panic!("no fd_leak for pid {pid}: {:#}", lines[lines.len() - 1]));
    let rate = f["rate_per_min"].as_f64().expect("rate");
    assert!(
        (960.0..=1440.0).contains(&rate),
        "rate {rate}/min is not within 20 % of 1200: {f:#}"
    );
    let summary = f["summary"].as_str().expect("summary");
    assert!(summary.contains("pipes grew from"), "{summary}");
    assert!(f["advice"]
        .as_str()
        .expect("advice")
        .contains("child processes"));
    assert!(reports(&lines, "close_wait_leak", pid).is_empty());
}

/// A soft limit of 600 fds, 81 % used, one more fd every 1/15 s: the limit is
/// reached ~7.6 s later. Every forecast made with at least 3 s to go must be
/// within 25 % of the time that was really left.
#[test]
fn watch_forecasts_when_a_process_reaches_its_fd_limit() {
    let dir = std::env::temp_dir().join(format!("sockleak-watch-eta-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let hit_file = dir.join("hit.json");
    let _ = std::fs::remove_file(&hit_file);
    let hit_s = hit_file.to_str().expect("utf-8").to_string();
    let p = peer(
        "fd-limit",
        &[
            "--limit",
            "600",
            "--fill",
            "0.81",
            "--every",
            "0.0667",
            "--hit-file",
            &hit_s,
            "--max-time",
            "40",
        ],
    );
    let pid = peer_pid(&p);
    let pid_s = pid.to_string();
    let lines = watch_jsonl(
        &["--interval", "300ms", "--count", "12", "--pid", &pid_s],
        Duration::from_secs(30),
    );
    // Wait (bounded) for the peer to hit its limit.
    let deadline = Instant::now() + Duration::from_secs(20);
    let hit_ms = loop {
        if let Ok(text) = std::fs::read_to_string(&hit_file) {
            let v: serde_json::Value = serde_json::from_str(&text).expect("hit file JSON");
            break v["hit_ms"].as_u64().expect("hit_ms");
        }
        assert!(
            Instant::now() < deadline,
            "the peer never reached its limit"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = std::fs::remove_dir_all(&dir);
    let hits = reports(&lines, "fd_exhaustion", pid);
    let mut judged = 0;
    for (i, t, f) in &hits {
        let Some(eta) = f["eta_s"].as_u64() else {
            continue;
        };
        let left = hit_ms as f64 - *t as f64;
        if left < 3000.0 {
            continue;
        }
        let predicted = *t as f64 + eta as f64 * 1000.0;
        let err = (predicted - hit_ms as f64).abs() / left;
        assert!(
            err <= 0.25,
            "line {i}: eta {eta} s, but the limit was hit {:.1} s later ({:.0} % off): {f:#}",
            left / 1000.0,
            err * 100.0
        );
        judged += 1;
    }
    assert!(
        judged > 0,
        "no fd_exhaustion forecast made with 3 s or more to go: {hits:#?}"
    );
    // The growth itself is an fd_leak, with the same forecast.
    assert!(!reports(&lines, "fd_leak", pid).is_empty());
}
