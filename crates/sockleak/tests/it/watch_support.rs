//! Plumbing of the watch tests: the peer of tools/peers/watch_peer.py, a
//! bounded `sockleak watch --jsonl` run whose lines are validated against
//! docs/schema/watch-v1.schema.json, and lookups in those lines.

use crate::support::{repo_root, sockleak, validate_schema, wait_or_kill, Peer};
use serde_json::Value;
use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

/// Starts `watch_peer.py MODE ARGS` (stopped by pid when dropped).
pub fn peer(mode: &str, args: &[&str]) -> Peer {
    let script = repo_root().join("tools/peers/watch_peer.py");
    let script = script.to_str().expect("utf-8 path").to_string();
    let mut argv = vec!["python3", script.as_str(), mode];
    argv.extend_from_slice(args);
    Peer::start(&argv)
}

pub fn peer_pid(p: &Peer) -> u32 {
    p.info["pid"].as_u64().expect("peer pid") as u32
}

/// Runs `sockleak watch --jsonl ARGS` (ARGS must bound it with --count),
/// killed after `limit` at the latest; returns its lines, each validated
/// against the schema.
pub fn watch_jsonl(args: &[&str], limit: Duration) -> Vec<Value> {
    let mut all = vec!["watch", "--jsonl"];
    all.extend_from_slice(args);
    let mut child = sockleak()
        .args(&all)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sockleak watch");
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let status = wait_or_kill(
        &mut child,
        limit,
        &format!("sockleak {all:?} ran longer than {limit:?}"),
    );
    let out = reader.join().expect("reader");
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(status.success(), "sockleak {all:?}: {status}: {err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {e}: {l}")))
        .collect();
    for l in &lines {
        validate_schema(l, "watch-v1.schema.json");
    }
    lines
}

/// `(line index, time_ms, finding)` for every new or changed finding of
/// `kind` about `pid`, in stream order.
pub fn reports<'a>(lines: &'a [Value], kind: &str, pid: u32) -> Vec<(usize, u64, &'a Value)> {
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let t = l["time_ms"].as_u64().expect("time_ms");
        for part in ["new", "changed"] {
            for f in l["findings"][part].as_array().expect("findings array") {
                if f["kind"] == kind && f["pid"] == pid {
                    out.push((i, t, f));
                }
            }
        }
    }
    out
}

/// The process entry of `pid` in a line.
pub fn process_in(line: &Value, pid: u32) -> Option<&Value> {
    line["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .find(|p| p["pid"] == pid)
}

/// Every finding (any kind) that any line reported about `pid`.
pub fn kinds_about(lines: &[Value], pid: u32) -> Vec<String> {
    let mut v: Vec<String> = lines
        .iter()
        .flat_map(|l| {
            ["new", "changed"]
                .into_iter()
                .flat_map(move |p| l["findings"][p].as_array().cloned().unwrap_or_default())
        })
        .filter(|f| f["pid"] == pid)
        .map(|f| f["kind"].as_str().unwrap_or("?").to_string())
        .collect();
    v.sort();
    v.dedup();
    v
}
