//! Shared plumbing of the integration tests: running sockleak, starting test
//! peers (stopped by pid), network namespaces (deleted on drop), root checks.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn sockleak() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sockleak"))
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// True when the test may run; prints a loud SKIPPED line otherwise. CI runs
/// as root, so there every test runs.
pub fn require_root(test: &str, why: &str) -> bool {
    if is_root() {
        return true;
    }
    eprintln!("SKIPPED {test}: needs root ({why}); run the tests as root to cover it");
    false
}

/// A test peer process that prints one JSON line and lives until dropped.
pub struct Peer {
    child: Child,
    pub info: Value,
}

impl Peer {
    /// Starts `argv` (e.g. python3 tools/peers/population.py) and waits
    /// (bounded) for its JSON line.
    pub fn start(argv: &[&str]) -> Peer {
        let mut child = Command::new(argv[0])
            .args(&argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {argv:?}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!("peer {argv:?} printed nothing in 20 s");
            }
        };
        let info: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("peer {argv:?} printed {line:?}: {e}"));
        Peer { child, info }
    }

    pub fn population(extra: &[&str]) -> Peer {
        let script = repo_root().join("tools/peers/population.py");
        let script = script.to_str().expect("utf-8 path").to_string();
        let mut argv = vec!["python3", script.as_str()];
        argv.extend_from_slice(extra);
        Peer::start(&argv)
    }

    /// Starts `tools/peers/leaks.py SCENARIO ...`: one incident of
    /// docs/scenarios.md or a healthy control (see the script's docstring).
    pub fn leaks(args: &[&str]) -> Peer {
        let script = leaks_script();
        let mut argv = vec!["python3", script.as_str()];
        argv.extend_from_slice(args);
        Peer::start(&argv)
    }

    /// A string field of the peer's JSON line.
    pub fn str(&self, key: &str) -> &str {
        self.info[key]
            .as_str()
            .unwrap_or_else(|| panic!("peer has no string {key}: {}", self.info))
    }

    /// A number field of the peer's JSON line.
    pub fn num(&self, key: &str) -> u64 {
        self.info[key]
            .as_u64()
            .unwrap_or_else(|| panic!("peer has no number {key}: {}", self.info))
    }

    pub fn pid(&self, role: &str) -> u32 {
        self.info["pids"][role]
            .as_u64()
            .unwrap_or_else(|| panic!("peer has no pid for {role}")) as u32
    }
}

impl Drop for Peer {
    /// Stops the peer by its own pid (it stops its children by theirs).
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: plain kill(2) on a pid we spawned and have not reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A network namespace created for one test, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn create(tag: &str) -> Netns {
        let name = format!("sockleak-it-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "ip netns add {name} failed");
        let ns = Netns { name };
        let up = Command::new("ip")
            .args(["netns", "exec", &ns.name, "ip", "link", "set", "lo", "up"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(up, "bring up lo in {}", ns.name);
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs `sockleak ARGS` and returns (exit code, stdout, stderr).
pub fn run(args: &[&str]) -> (i32, String, String) {
    let out = sockleak()
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run sockleak");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `sockleak scan --json ARGS`, validated against the schema.
pub fn scan_json(args: &[&str]) -> Value {
    let mut all = vec!["scan", "--json", "--fail-on", "never"];
    all.extend_from_slice(args);
    let (code, out, err) = run(&all);
    assert_eq!(code, 0, "sockleak {all:?} failed: {err}");
    let doc: Value = serde_json::from_str(&out).expect("scan --json is JSON");
    validate_schema(&doc, "scan-v1.schema.json");
    doc
}

pub fn validate_schema(doc: &Value, file: &str) {
    let path = repo_root().join("docs/schema").join(file);
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("read schema"))
        .expect("schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .take(10)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(errors.is_empty(), "document violates {file}: {errors:#?}");
}

/// Sockets of the document touching one of `ports` (local or remote).
pub fn sockets_on_ports<'a>(doc: &'a Value, ports: &[u64]) -> Vec<&'a Value> {
    doc["sockets"]
        .as_array()
        .expect("sockets array")
        .iter()
        .filter(|s| {
            let port = |f: &str| {
                s[f].as_str()
                    .and_then(|e| e.rsplit(':').next())
                    .and_then(|p| p.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            ports.contains(&port("local")) || ports.contains(&port("remote"))
        })
        .collect()
}

/// (pid, fd) pairs of a socket's owners, sorted.
pub fn owners(sock: &Value) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = sock["owners"]
        .as_array()
        .expect("owners")
        .iter()
        .map(|o| {
            (
                o["pid"].as_u64().expect("pid"),
                o["fd"].as_u64().expect("fd"),
            )
        })
        .collect();
    v.sort();
    v
}

/// Parses `ss -tanpH` output into (state, local, remote, pids).
pub fn ss_rows(args: &[&str]) -> Vec<(String, String, String, Vec<u64>)> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run ss");
    assert!(out.status.success(), "{args:?} failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 5 {
                return None;
            }
            let mut pids: Vec<u64> = l
                .split("pid=")
                .skip(1)
                .filter_map(|p| p.split(',').next()?.parse().ok())
                .collect();
            pids.sort();
            pids.dedup();
            Some((f[0].to_string(), f[3].to_string(), f[4].to_string(), pids))
        })
        .collect()
}

/// sockleak's spelling of an ss state (ESTAB → ESTABLISHED, ...).
pub fn ss_state_to_kernel(s: &str) -> String {
    match s {
        "ESTAB" => "ESTABLISHED".into(),
        "UNCONN" => "CLOSE".into(),
        other => other.replace("FIN-WAIT-", "FIN_WAIT").replace('-', "_"),
    }
}

/// The port of an `ip:port` / `[v6]:port` / `*:port` string.
pub fn port_of(ep: &str) -> u64 {
    ep.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

/// The path of tools/peers/leaks.py, for argv.
pub fn leaks_script() -> String {
    let script = repo_root().join("tools/peers/leaks.py");
    script.to_str().expect("utf-8 path").to_string()
}

/// The findings of a scan document of one kind, in the engine's order.
pub fn findings_of<'a>(doc: &'a Value, kind: &str) -> Vec<&'a Value> {
    doc["findings"]
        .as_array()
        .expect("findings array")
        .iter()
        .filter(|f| f["kind"] == kind)
        .collect()
}

/// The one finding of `kind` about process `pid`; fails unless there is
/// exactly one.
pub fn the_finding<'a>(doc: &'a Value, kind: &str, pid: u32) -> &'a Value {
    let hits: Vec<&Value> = findings_of(doc, kind)
        .into_iter()
        .filter(|f| f["pid"] == pid)
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "expected one {kind} finding for pid {pid}, got {hits:#?}\nall findings: {:#}",
        doc["findings"]
    );
    hits[0]
}

/// Findings at warning or critical about any of `pids` (as the process at
/// fault or as its peer).
pub fn alarms_about<'a>(doc: &'a Value, pids: &[u32]) -> Vec<&'a Value> {
    doc["findings"]
        .as_array()
        .expect("findings array")
        .iter()
        .filter(|f| f["severity"] == "warning" || f["severity"] == "critical")
        .filter(|f| pids.iter().any(|p| f["pid"] == *p || f["peer_pid"] == *p))
        .collect()
}

/// Human output with every run of whitespace made one space: findings are
/// wrapped paragraphs, so a sentence may span lines.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A process's command name, as sockleak reports it.
pub fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/comm: {e}"))
        .trim_end()
        .to_string()
}

/// Waits at most `limit` for `child` to exit; `None` while it still runs.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// [`wait_bounded`], or kills and reaps the child (its own pid) and fails
/// the test with `why`.
pub fn wait_or_kill(child: &mut Child, limit: Duration, why: &str) -> ExitStatus {
    wait_bounded(child, limit).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{why}")
    })
}
