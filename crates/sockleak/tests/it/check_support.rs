//! Plumbing of the check and run tests: the leaky HTTP peer, free loopback
//! ports, TIME_WAIT counts from `ss`, the JSON and JUnit validators, and
//! process liveness.

use crate::support::*;
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub fn peer_path(name: &str) -> String {
    repo_root()
        .join("tools/peers")
        .join(name)
        .to_str()
        .expect("utf-8 path")
        .to_string()
}

/// A loopback port nobody listens on right now (bound, read, released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// tools/peers/leaky_http.py started by the test (stopped by pid on drop).
pub fn leaky_server(extra: &[&str]) -> (Peer, u16) {
    let path = peer_path("leaky_http.py");
    let mut argv = vec!["python3", path.as_str()];
    argv.extend_from_slice(extra);
    let peer = Peer::start(&argv);
    let port = peer.info["port"].as_u64().expect("port") as u16;
    (peer, port)
}

/// A per-test scratch file path (removed by the caller if it cares).
pub fn scratch(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("sockleak-it-{tag}-{}", std::process::id()))
}

/// `sockleak check --json ARGS`: exit code, the document (validated against
/// docs/schema/check-v1.schema.json) and stderr.
pub fn check_json(args: &[&str]) -> (i32, Value, String) {
    let mut all = vec!["check", "--json"];
    all.extend_from_slice(args);
    let (code, out, err) = run(&all);
    let doc: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("check --json printed no JSON ({e}): {out}\nstderr: {err}"));
    validate_schema(&doc, "check-v1.schema.json");
    (code, doc, err)
}

pub fn check_named<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {:#}", doc["checks"]))
}

/// TIME_WAIT sockets touching `port`: (local port == port, i.e. the server
/// side; remote port == port, the client side).
pub fn time_wait(port: u16) -> (usize, usize) {
    // Under a state filter ss prints no State column: Recv-Q Send-Q Local Peer.
    let out = std::process::Command::new("ss")
        .args(["-tanH", "state", "time-wait"])
        .output()
        .expect("run ss");
    let text = String::from_utf8_lossy(&out.stdout);
    let (mut server, mut client) = (0, 0);
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 {
            continue;
        }
        if port_of(f[2]) == u64::from(port) {
            server += 1;
        }
        if port_of(f[3]) == u64::from(port) {
            client += 1;
        }
    }
    (server, client)
}

/// The peer's --stats file.
pub fn stats(path: &PathBuf) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read stats")).expect("stats JSON")
}

/// True once `pid` no longer exists (a zombie counts as gone: it holds no
/// sockets or fds), waiting at most `within`.
pub fn gone_within(pid: u64, within: Duration) -> bool {
    let until = Instant::now() + within;
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
        match stat {
            Err(_) => return true,
            Ok(s) => {
                let state = s
                    .rsplit(')')
                    .next()
                    .and_then(|r| r.split_whitespace().next());
                if state == Some("Z") || state == Some("X") {
                    return true;
                }
            }
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Checks a `--junit` file with a real XML parser against the structure of
/// the common JUnit XSD (Jenkins' junit-10.xsd): `testsuites` → `testsuite`
/// (name, tests, failures, errors, time; `properties`, `testcase`*,
/// `system-out`, in that order) → `testcase` (name, classname, time) with at
/// most one `failure`/`error` (message, type). Returns (name, failed) per
/// testcase.
pub fn validate_junit(path: &PathBuf) -> Vec<(String, bool)> {
    validate_junit_xsd(path);
    let text = std::fs::read_to_string(path).expect("read junit file");
    let doc = roxmltree::Document::parse(&text).expect("JUnit output is well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    let suites: Vec<_> = root.children().filter(|n| n.is_element()).collect();
    assert_eq!(suites.len(), 1, "one testsuite");
    let suite = suites[0];
    assert_eq!(suite.tag_name().name(), "testsuite");
    let num = |n: roxmltree::Node, a: &str| -> u64 {
        n.attribute(a)
            .unwrap_or_else(|| panic!("<{}> lacks {a}", n.tag_name().name()))
            .parse()
            .unwrap_or_else(|_| panic!("{a} is not a count"))
    };
    assert!(suite.attribute("name").is_some_and(|n| !n.is_empty()));
    let time: f64 = suite
        .attribute("time")
        .expect("time")
        .parse()
        .expect("time is decimal");
    assert!(time >= 0.0);
    let order: Vec<&str> = suite
        .children()
        .filter(|n| n.is_element())
        .map(|n| n.tag_name().name())
        .collect();
    let allowed = ["properties", "testcase", "system-out", "system-err"];
    let rank = |t: &str| {
        allowed
            .iter()
            .position(|a| *a == t)
            .unwrap_or_else(|| panic!("unexpected <{t}>"))
    };
    assert!(
        order.windows(2).all(|w| rank(w[0]) <= rank(w[1])),
        "element order {order:?}"
    );
    let mut cases = Vec::new();
    let (mut failures, mut errors) = (0, 0);
    for tc in suite.children().filter(|n| n.has_tag_name("testcase")) {
        let name = tc.attribute("name").expect("testcase name").to_string();
        assert!(tc.attribute("classname").is_some(), "{name}: classname");
        tc.attribute("time")
            .expect("time")
            .parse::<f64>()
            .expect("time is decimal");
        let bad: Vec<_> = tc
            .children()
            .filter(|n| n.has_tag_name("failure") || n.has_tag_name("error"))
            .collect();
        assert!(bad.len() <= 1, "{name}: one failure at most");
        for b in &bad {
            assert!(
                b.attribute("message").is_some_and(|m| !m.is_empty()),
                "{name}: message"
            );
            assert!(b.attribute("type").is_some(), "{name}: type");
            if b.has_tag_name("failure") {
                failures += 1;
            } else {
                errors += 1;
            }
        }
        for c in tc.children().filter(|n| n.is_element()) {
            assert!(
                ["skipped", "error", "failure", "system-out", "system-err"]
                    .contains(&c.tag_name().name()),
                "{name}: unexpected <{}>",
                c.tag_name().name()
            );
        }
        cases.push((name, !bad.is_empty()));
    }
    assert_eq!(num(suite, "tests"), cases.len() as u64);
    assert_eq!(num(suite, "failures"), failures);
    assert_eq!(num(suite, "errors"), errors);
    assert_eq!(num(root, "tests"), cases.len() as u64);
    cases
}

/// Validates against docs/schema/junit-10.xsd (the JUnit format after
/// Jenkins' junit-10.xsd) with xmllint; skips loudly when xmllint is missing
/// (tools/setup --test installs libxml2-utils).
pub fn validate_junit_xsd(path: &PathBuf) {
    let xsd = repo_root().join("docs/schema/junit-10.xsd");
    let out = match std::process::Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(&xsd)
        .arg(path)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!(
                "SKIPPED JUnit XSD validation: xmllint not runnable ({e}); install libxml2-utils"
            );
            return;
        }
    };
    assert!(
        out.status.success(),
        "{} violates junit-10.xsd: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Nothing of the terminal status line of `check` and `run` reached a
/// stderr that is not a terminal (here, the test's pipe).
pub fn assert_no_status_line(stderr: &str) {
    assert!(!stderr.contains('\r'), "\\r on a non-terminal: {stderr:?}");
    for piece in ["settling: counts steady", " requests, ", " samples, "] {
        assert!(
            !stderr.contains(piece),
            "status line text {piece:?} on a non-terminal: {stderr}"
        );
    }
}

/// (pid, ppid) of every process, from /proc.
fn ppids() -> Vec<(u64, u32)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u64>() else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
            if let Some(ppid) = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().nth(1))
                .and_then(|x| x.parse::<u32>().ok())
            {
                out.push((p, ppid));
            }
        }
    }
    out
}

/// Children of `pid` (by ppid), from /proc.
pub fn children(pid: u32) -> Vec<u64> {
    ppids()
        .into_iter()
        .filter(|&(_, ppid)| ppid == pid)
        .map(|(p, _)| p)
        .collect()
}

/// Every descendant of `pid` (by ppid), from /proc.
pub fn descendants(pid: u32) -> Vec<u64> {
    let table = ppids();
    let mut out: Vec<u64> = Vec::new();
    let mut queue = vec![u64::from(pid)];
    while let Some(p) = queue.pop() {
        for &(k, ppid) in &table {
            // Bounded by the table: racing data cannot loop.
            if u64::from(ppid) == p && !out.contains(&k) && out.len() < table.len() {
                out.push(k);
                queue.push(k);
            }
        }
    }
    out
}

/// The pids a test command wrote to `path` (one a line), once there are at
/// least `n`, waiting at most `within`.
pub fn pids_written(path: &PathBuf, n: usize, within: Duration) -> Vec<u64> {
    let until = Instant::now() + within;
    loop {
        let pids: Vec<u64> = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        if pids.len() >= n || Instant::now() >= until {
            return pids;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The pids of `pids` still running (not even a zombie) after `within`.
/// Each of those is SIGKILLed by its own pid, so a failing test leaves
/// nothing behind either.
pub fn left_behind(pids: &[u64], within: Duration) -> Vec<u64> {
    let until = Instant::now() + within;
    let left: Vec<u64> = pids
        .iter()
        .copied()
        .filter(|&p| !gone_within(p, until.saturating_duration_since(Instant::now())))
        .collect();
    for &p in &left {
        // SAFETY: kill(2) on a process this test's command started.
        unsafe { libc::kill(p as libc::pid_t, libc::SIGKILL) };
    }
    left
}
