//! Patterns watch must not call leaks, against real processes on loopback: a
//! stable keep-alive pool, a burst of CLOSE_WAIT closed again after 1 s, and
//! steady churn. Each test first checks that the pattern really showed (so
//! it cannot pass by seeing nothing), then that no leak was reported.

use crate::watch_support::*;
use serde_json::Value;
use std::time::Duration;

fn state_counts(lines: &[Value], pid: u32, state: &str) -> Vec<u64> {
    lines
        .iter()
        .map(|l| {
            process_in(l, pid)
                .and_then(|p| p["states"][state].as_u64())
                .unwrap_or(0)
        })
        .collect()
}

fn assert_no_leak(lines: &[Value], pid: u32) {
    let kinds = kinds_about(lines, pid);
    assert!(
        !kinds
            .iter()
            .any(|k| k == "close_wait_leak" || k == "fd_leak"),
        "pid {pid} was called a leak: {kinds:?}\n{:#}",
        lines.last().expect("a line")
    );
    for l in lines {
        if let Some(p) = process_in(l, pid) {
            assert_eq!(p["leaking"], false, "{p:#}");
        }
    }
}

#[test]
fn watch_keeps_quiet_about_a_stable_keep_alive_pool() {
    let p = peer(
        "pool",
        &["--size", "8", "--every", "0.05", "--max-time", "30"],
    );
    let pid = peer_pid(&p);
    let pid_s = pid.to_string();
    let lines = watch_jsonl(
        &["--interval", "300ms", "--count", "10", "--pid", &pid_s],
        Duration::from_secs(30),
    );
    // Both ends of the eight connections belong to the peer.
    assert!(
        state_counts(&lines, pid, "ESTABLISHED")
            .iter()
            .all(|n| *n == 16),
        "{:?}",
        state_counts(&lines, pid, "ESTABLISHED")
    );
    assert_no_leak(&lines, pid);
    let last = process_in(lines.last().expect("line"), pid).expect("pool listed");
    assert_eq!(last["rate_per_min"]["fds"].as_f64(), Some(0.0), "{last:#}");
}

#[test]
fn watch_keeps_quiet_about_a_close_wait_burst_closed_after_a_second() {
    let p = peer(
        "burst",
        &[
            "--at",
            "0.8",
            "--count",
            "30",
            "--hold",
            "1.0",
            "--max-time",
            "30",
        ],
    );
    let pid = peer_pid(&p);
    let pid_s = pid.to_string();
    let lines = watch_jsonl(
        &["--interval", "300ms", "--count", "12", "--pid", &pid_s],
        Duration::from_secs(30),
    );
    // Two sockets from the start give the group a history, so the burst is
    // judged as a step on it (not merely too young to judge).
    let cw = state_counts(&lines, pid, "CLOSE_WAIT");
    assert_eq!(cw.first(), Some(&2), "no baseline: {cw:?}");
    let peak = cw.iter().position(|n| *n == 32);
    assert!(
        peak.is_some_and(|i| i >= 2),
        "the burst was not seen: {cw:?}"
    );
    assert_eq!(cw.last(), Some(&2), "the burst was not closed: {cw:?}");
    assert_no_leak(&lines, pid);
}

#[test]
fn watch_keeps_quiet_about_steady_close_wait_churn() {
    // 40 connections a second, each in CLOSE_WAIT for 0.2 s: about 8 at any
    // time, none for long.
    let p = peer(
        "churn",
        &["--every", "0.025", "--linger", "0.2", "--max-time", "30"],
    );
    let pid = peer_pid(&p);
    let pid_s = pid.to_string();
    let lines = watch_jsonl(
        &["--interval", "300ms", "--count", "12", "--pid", &pid_s],
        Duration::from_secs(30),
    );
    let cw = state_counts(&lines, pid, "CLOSE_WAIT");
    assert!(
        cw.iter().filter(|n| **n > 0).count() >= 6,
        "the churn was not seen: {cw:?}"
    );
    assert_no_leak(&lines, pid);
}
