//! The exporter's cardinality cap on a real host: 500 processes each holding
//! a loopback connection, `--max-processes 10` → at most 10 processes with
//! their own series plus `other`, which holds the rest of their sockets.

use crate::serve_support::*;
use crate::support::*;
use std::collections::BTreeSet;
use std::time::Duration;

const CHILDREN: usize = 500;
const MAX_PROCESSES: usize = 10;

#[test]
fn five_hundred_processes_fold_into_ten_plus_other() {
    let script = repo_root().join("tools/peers/serve_many.py");
    let script = script.to_str().expect("utf-8 path");
    let n = CHILDREN.to_string();
    let peer = Peer::start(&["python3", script, &n]);
    assert_eq!(peer.info["accepted"].as_u64(), Some(CHILDREN as u64));
    let children: BTreeSet<String> = peer.info["children"]
        .as_array()
        .expect("children")
        .iter()
        .map(|p| p.to_string())
        .collect();

    let max = MAX_PROCESSES.to_string();
    let exporter = Exporter::start(&[
        "--interval",
        "1s",
        "--max-processes",
        &max,
        "--max-endpoints",
        "5",
    ]);
    // Wait for a scan that saw every child (the first may predate none).
    let mut text = String::new();
    exporter.wait_until(
        Duration::from_secs(20),
        "a scan with all children folded",
        || {
            text = exporter.metrics();
            value_of(&text, "sockleak_processes_folded", &[])
                .is_some_and(|n| n >= (CHILDREN - MAX_PROCESSES) as f64)
        },
    );

    // Every per-process family: at most MAX_PROCESSES pids plus "other".
    for family in [
        "sockleak_process_tcp_sockets",
        "sockleak_process_open_fds",
        "sockleak_process_fd_usage_ratio",
        "sockleak_process_closed_but_held_sockets",
        "sockleak_process_info",
        "sockleak_listen_queue_length",
    ] {
        let pids: BTreeSet<String> = samples(&text, family)
            .into_iter()
            .filter_map(|(l, _)| l.get("pid").cloned())
            .collect();
        let own = pids.iter().filter(|p| *p != "other").count();
        assert!(
            own <= MAX_PROCESSES,
            "{family}: {own} processes with their own series: {pids:?}"
        );
        if family != "sockleak_process_info" && family != "sockleak_listen_queue_length" {
            assert!(
                pids.contains("other"),
                "{family}: no `other` series: {pids:?}"
            );
        }
    }
    assert!(
        samples(&text, "sockleak_process_info").len() <= MAX_PROCESSES,
        "process_info is only for processes with their own series"
    );
    // The folded children's sockets are summed, not dropped: at least the
    // children beyond the cap hold one ESTABLISHED socket each.
    let other_estab = value_of(
        &text,
        "sockleak_process_tcp_sockets",
        &[
            ("pid", "other"),
            ("comm", "other"),
            ("netns", "other"),
            ("state", "ESTABLISHED"),
        ],
    )
    .expect("other ESTABLISHED");
    let exported_children = samples(&text, "sockleak_process_info")
        .into_iter()
        .filter(|(l, _)| l.get("pid").is_some_and(|p| children.contains(p)))
        .count();
    assert!(
        other_estab >= (CHILDREN - exported_children) as f64,
        "other holds {other_estab} ESTABLISHED sockets; {exported_children} children exported"
    );
    // The whole exposition stays small.
    let series = text.lines().filter(|l| !l.starts_with('#')).count();
    assert!(
        series < 3000,
        "{series} series with --max-processes {MAX_PROCESSES}"
    );

    // Once the children are gone, so is their weight in `other`.
    drop(peer);
    exporter.wait_until(
        Duration::from_secs(20),
        "the children's series to go",
        || {
            let t = exporter.metrics();
            value_of(&t, "sockleak_processes_folded", &[])
                .is_some_and(|n| n < (CHILDREN / 2) as f64)
        },
    );
}
