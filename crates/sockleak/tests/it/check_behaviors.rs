//! Each built-in load behaviour leaves the TCP states it claims, seen from
//! both ends: the server peer's own record of how each connection ended and
//! the TIME_WAIT sockets `ss` shows on each side afterwards (fresh ports, so
//! the counts are exact).

use crate::check_support::*;
use crate::support::*;
use serde_json::Value;

const N: u64 = 6;

/// Runs a check with `behavior` against a fresh fixed server; returns the
/// server's stats, the TIME_WAIT counts (server side, client side) and the
/// check document.
fn exercise(behavior: &str, server_args: &[&str]) -> (Value, (usize, usize), Value) {
    let tag = format!("stats-{behavior}");
    let stats_path = scratch(&tag);
    let mut args = vec!["--fixed", "--stats", stats_path.to_str().expect("utf-8")];
    args.extend_from_slice(server_args);
    let (server, port) = leaky_server(&args);
    let pid = server.info["pid"].to_string();
    let url = format!("http://127.0.0.1:{port}/");
    let n = N.to_string();
    let (_, doc, err) = check_json(&[
        "--pid",
        &pid,
        "--http",
        &url,
        "--requests",
        &n,
        "--concurrency",
        "2",
        "--behavior",
        behavior,
        "--settle",
        "3s",
    ]);
    assert_eq!(
        doc["load"]["generator"]["ok"], N,
        "{behavior}: every request answered: {:#} {err}",
        doc["load"]
    );
    let st = stats(&stats_path);
    let tw = time_wait(port);
    drop(server);
    let _ = std::fs::remove_file(&stats_path);
    (st, tw, doc)
}

#[test]
fn keep_alive_reuses_one_connection_per_worker() {
    if !require_root("behaviour keep-alive", "reads the server's fd table") {
        return;
    }
    let (st, _, doc) = exercise("keep-alive", &[]);
    assert_eq!(st["connections"], 2, "{st}");
    assert_eq!(st["requests"], N);
    assert_eq!(doc["load"]["generator"]["connections"], 2);
    assert_eq!(doc["verdict"], "pass");
}

#[test]
fn close_by_client_leaves_time_wait_on_the_client() {
    if !require_root("behaviour close", "reads the server's fd table") {
        return;
    }
    let (st, (server_tw, client_tw), _) = exercise("close", &[]);
    assert_eq!(st["eof"], N, "the server read EOF on each: {st}");
    assert_eq!(client_tw, N as usize, "client closed first");
    assert_eq!(server_tw, 0);
}

#[test]
fn server_close_leaves_time_wait_on_the_server() {
    if !require_root("behaviour server-close", "reads the server's fd table") {
        return;
    }
    let (st, (server_tw, client_tw), _) = exercise("server-close", &[]);
    assert_eq!(st["server_closed"], N, "{st}");
    assert_eq!(server_tw, N as usize, "server closed first");
    assert_eq!(client_tw, 0);
}

#[test]
fn half_close_lets_the_server_see_eof_before_it_answers() {
    if !require_root("behaviour half-close", "reads the server's fd table") {
        return;
    }
    let (st, (_, client_tw), _) = exercise("half-close", &["--peek-eof-ms", "500"]);
    assert_eq!(st["half_closed"], N, "FIN right after each request: {st}");
    assert_eq!(st["requests"], N, "and still answered: {st}");
    assert_eq!(st["eof"], N);
    assert_eq!(client_tw, N as usize, "the client's FIN went first");
}

#[test]
fn abort_resets_without_time_wait_anywhere() {
    if !require_root("behaviour abort", "reads the server's fd table") {
        return;
    }
    let (st, (server_tw, client_tw), _) = exercise("abort", &[]);
    assert_eq!(st["reset"], N, "the server read ECONNRESET on each: {st}");
    assert_eq!(st["eof"], 0);
    assert_eq!((server_tw, client_tw), (0, 0));
}

#[test]
fn unread_body_never_ends_cleanly() {
    if !require_root("behaviour unread-body", "reads the server's fd table") {
        return;
    }
    // A 1 MiB body cannot fit in hyper's read buffer: most of it stays
    // unread in the kernel, so closing the socket at the end resets it.
    let (st, _, doc) = exercise("unread-body", &["--body", "1048576"]);
    assert_eq!(doc["load"]["generator"]["connections"], N);
    let unclean = st["reset"].as_u64().unwrap_or(0) + st["send_error"].as_u64().unwrap_or(0);
    assert_eq!(unclean, N, "{st}");
    assert_eq!(st["eof"], 0, "{st}");
}
