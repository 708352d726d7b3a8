//! `sockleak serve` with a real Prometheus (Debian's `prometheus` package):
//! Prometheus scrapes the exporter every second on loopback, the test finds
//! the series of a leaking peer through the query API, and sees them
//! disappear once the peer exits. Also `promtool check metrics` on the live
//! output, `promtool check rules deploy/prometheus/*.yml` (every file
//! there is a rule file) and `promtool test rules` on the shipped alert
//! rules' unit tests (deploy/prometheus/tests/).

use crate::serve_support::*;
use crate::support::*;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A Prometheus server with its own config and data directory, stopped by
/// pid and cleaned up on drop.
struct Prometheus {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Prometheus {
    fn start(target: std::net::SocketAddr) -> Prometheus {
        let dir = std::env::temp_dir().join(format!(
            "sockleak-it-prometheus-{}-{}",
            std::process::id(),
            target.port()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).expect("mkdir prometheus dir");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: sockleak\n    static_configs:\n      - targets: ['{target}']\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("write prometheus.yml");
        // `--web.listen-address=127.0.0.1:0` is not supported: pick a free
        // port, and retry if another process took it in between.
        for _ in 0..3 {
            let port = free_port();
            let child = Command::new("prometheus")
                .arg(format!(
                    "--config.file={}",
                    dir.join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--log.level=warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn prometheus");
            let mut p = Prometheus {
                child,
                port,
                dir: dir.clone(),
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = p.child.try_wait() {
                    break; // exited: port taken or bad config; retry
                }
                let addr = ([127, 0, 0, 1], port).into();
                if get(addr, "/-/ready", &[]).is_ok_and(|r| r.status == 200) {
                    return p;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            p.stop();
        }
        panic!("prometheus did not become ready (see its log above)");
    }

    /// Instant query through the HTTP API: the result vector.
    fn query(&self, promql: &str) -> Vec<Value> {
        let addr = ([127, 0, 0, 1], self.port).into();
        let path = format!("/api/v1/query?query={}", url_encode(promql));
        let r = get(addr, &path, &[]).expect("query prometheus");
        assert_eq!(r.status, 200, "{promql}: {}", r.body);
        let doc: Value = serde_json::from_str(&r.body).expect("API answer is JSON");
        assert_eq!(doc["status"], "success", "{promql}: {doc}");
        doc["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn stop(&mut self) {
        // SAFETY: plain kill(2) on a child we spawned and have not reaped.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The single value of a query result, as a number.
fn single_value(result: &[Value]) -> Option<f64> {
    match result {
        [one] => one["value"][1].as_str().and_then(|v| v.parse().ok()),
        _ => None,
    }
}

fn poll(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("timed out after {limit:?}: {what}");
}

#[test]
fn prometheus_scrapes_a_leaking_process_and_sees_it_go() {
    if !require_tool(
        "prometheus_scrapes_a_leaking_process_and_sees_it_go",
        "prometheus",
        "prometheus",
    ) {
        return;
    }
    let peer = Peer::population(&["--small"]);
    let pid = peer.pid("server").to_string();
    let exporter = Exporter::start(&[
        "--interval",
        "1s",
        "--min-age",
        "0",
        "--max-processes",
        "100000",
    ]);
    // The exporter itself sees the leak before Prometheus is involved.
    exporter.wait_until(Duration::from_secs(20), "the leak in /metrics", || {
        value_of(
            &exporter.metrics(),
            "sockleak_close_wait_leak_sockets",
            &[("pid", &pid), ("role", "server")],
        ) == Some(1.0)
    });

    let prom = Prometheus::start(exporter.addr);
    let leak = format!("sockleak_close_wait_leak_sockets{{pid=\"{pid}\",role=\"server\"}}");
    let finding = format!("sockleak_finding{{kind=\"close_wait_leak\",pid=\"{pid}\"}}");
    let state = format!("sockleak_process_tcp_sockets{{pid=\"{pid}\",state=\"CLOSE_WAIT\"}}");
    poll(
        Duration::from_secs(40),
        "Prometheus to have the leak series",
        || single_value(&prom.query(&leak)) == Some(1.0),
    );
    assert_eq!(single_value(&prom.query(&finding)), Some(1.0), "{finding}");
    assert_eq!(single_value(&prom.query(&state)), Some(1.0), "{state}");
    let up = prom.query("up{job=\"sockleak\"}");
    assert_eq!(single_value(&up), Some(1.0), "up: {up:?}");
    // The leak group carries the process and endpoint labels.
    let series = prom.query(&leak);
    let labels = &series[0]["metric"];
    assert!(
        labels["comm"]
            .as_str()
            .is_some_and(|c| c.starts_with("python")),
        "{labels}"
    );
    assert!(
        labels["endpoint"]
            .as_str()
            .is_some_and(|e| e.starts_with("127.0.0.1:")),
        "{labels}"
    );

    drop(peer);
    poll(
        Duration::from_secs(30),
        "the series to disappear after the peer exited",
        || {
            prom.query(&leak).is_empty()
                && prom.query(&finding).is_empty()
                && prom.query(&state).is_empty()
        },
    );
}

fn promtool(args: &[&str], stdin: Option<&str>, cwd: &std::path::Path) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    if let Some(text) = stdin {
        use std::io::Write;
        let mut s = child.stdin.take().expect("piped stdin");
        s.write_all(text.as_bytes()).expect("write to promtool");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("promtool output");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn promtool_accepts_the_metrics_and_the_shipped_rules() {
    if !require_tool(
        "promtool_accepts_the_metrics_and_the_shipped_rules",
        "promtool",
        "prometheus",
    ) {
        return;
    }
    let root = repo_root();
    let peer = Peer::population(&["--small"]);
    let pid = peer.pid("server").to_string();
    // --pid: tests running in parallel must not push the peer past the
    // exporter's process cap (it would be folded into `other`).
    let exporter = Exporter::start(&[
        "--interval",
        "1s",
        "--min-age",
        "0",
        "--label-cmdline",
        "--pid",
        &pid,
    ]);
    exporter.wait_until(Duration::from_secs(20), "the peer's leak", || {
        value_of(&exporter.metrics(), "sockleak_finding", &[("pid", &pid)]).is_some()
    });
    let live = exporter.metrics();
    let (ok, out) = promtool(&["check", "metrics"], Some(&live), &root);
    assert!(
        ok,
        "promtool check metrics on the live output:\n{out}\n{live}"
    );
    let golden =
        std::fs::read_to_string(root.join("crates/sockleak/src/exporter/testdata/sample.prom"))
            .expect("golden sample");
    let (ok, out) = promtool(&["check", "metrics"], Some(&golden), &root);
    assert!(ok, "promtool check metrics on the golden sample:\n{out}");

    // What a user types: `promtool check rules deploy/prometheus/*.yml`.
    // Every .yml there must be a rule file (the unit tests live in tests/,
    // which promtool would reject as rules).
    let mut rule_files: Vec<String> = std::fs::read_dir(root.join("deploy/prometheus"))
        .expect("read deploy/prometheus")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yml"))
        .map(|name| format!("deploy/prometheus/{name}"))
        .collect();
    rule_files.sort();
    assert!(
        rule_files.contains(&"deploy/prometheus/sockleak.rules.yml".to_string()),
        "{rule_files:?}"
    );
    let mut args = vec!["check", "rules"];
    args.extend(rule_files.iter().map(String::as_str));
    let (ok, out) = promtool(&args, None, &root);
    assert!(ok, "promtool check rules deploy/prometheus/*.yml:\n{out}");
    let (ok, out) = promtool(
        &[
            "test",
            "rules",
            "deploy/prometheus/tests/sockleak.rules.test.yml",
        ],
        None,
        &root,
    );
    assert!(ok, "promtool test rules:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");
}
