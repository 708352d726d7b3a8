//! `sockleak serve` with history (watch's trend engine): a server whose
//! CLOSE_WAIT leak grows by a connection every quarter second gets a growth
//! rate on its leak group and an fd exhaustion ETA (its soft fd limit is
//! 256); with `--no-history` neither series exists.

use crate::serve_support::*;
use crate::support::*;
use std::time::Duration;

fn growing_peer() -> Peer {
    let script = repo_root().join("tools/peers/serve_growing.py");
    Peer::start(&["python3", script.to_str().expect("utf-8 path")])
}

#[test]
fn a_growing_leak_gets_a_rate_and_an_fd_eta() {
    let peer = growing_peer();
    let pid = peer.pid("server").to_string();
    let p = pid.as_str();
    // --pid: other tests run in parallel (one with 500 python processes), and
    // the exporter's process cap must not fold this peer into `other`.
    let exporter = Exporter::start(&["--interval", "1s", "--min-age", "0", "--pid", p]);
    let mut text = String::new();
    exporter.wait_until(
        Duration::from_secs(40),
        "a growth rate and an fd ETA",
        || {
            text = exporter.metrics();
            value_of(
                &text,
                "sockleak_close_wait_leak_growth_per_second",
                &[("pid", p)],
            )
            .is_some()
                && value_of(
                    &text,
                    "sockleak_process_fd_exhaustion_eta_seconds",
                    &[("pid", p)],
                )
                .is_some()
        },
    );
    // 4 connections a second, measured over a few seconds of scans.
    let rate = value_of(
        &text,
        "sockleak_close_wait_leak_growth_per_second",
        &[("pid", p)],
    )
    .expect("rate");
    assert!(
        (1.0..=8.0).contains(&rate),
        "growth {rate}/s, expected about 4/s"
    );
    let eta = value_of(
        &text,
        "sockleak_process_fd_exhaustion_eta_seconds",
        &[("pid", p)],
    )
    .expect("eta");
    assert!(eta < 120.0, "fd ETA {eta} s with 256 fds growing by ~4/s");
}

#[test]
fn without_history_there_are_no_rates() {
    let peer = growing_peer();
    let pid = peer.pid("server").to_string();
    let exporter = Exporter::start(&[
        "--interval",
        "1s",
        "--min-age",
        "0",
        "--no-history",
        "--pid",
        &pid,
    ]);
    let mut text = String::new();
    exporter.wait_until(
        Duration::from_secs(20),
        "several sockets in the leak",
        || {
            text = exporter.metrics();
            value_of(&text, "sockleak_close_wait_leak_sockets", &[("pid", &pid)])
                .is_some_and(|n| n >= 10.0)
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    let text = exporter.metrics();
    assert!(samples(&text, "sockleak_close_wait_leak_growth_per_second").is_empty());
    assert!(samples(&text, "sockleak_process_fd_exhaustion_eta_seconds").is_empty());
}
