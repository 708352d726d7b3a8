//! Plumbing of the `sockleak serve` tests: an exporter child process (stopped
//! by pid), a minimal HTTP/1.1 client on std sockets, Prometheus text
//! parsing, free loopback ports and loud skips for missing tools.

use crate::support::{sockleak, wait_bounded};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// True when `tool` is on PATH; otherwise prints a loud SKIPPED line naming
/// the Debian package that provides it (tools/setup installs it). In CI
/// (`CI=true`, as .ci/run is run) a missing tool fails the test instead:
/// `tools/setup --test` installs every one of them, so a skip there would
/// only hide that a test never ran (the deploy test did, on minimal images
/// without systemd-analyze).
pub fn require_tool(test: &str, tool: &str, package: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    let ci = matches!(std::env::var("CI").as_deref(), Ok("true" | "1"));
    assert!(
        found || !ci,
        "{test}: `{tool}` not found in CI (CI=true): tools/setup --test installs it (Debian package {package})"
    );
    if !found {
        eprintln!(
            "SKIPPED {test}: `{tool}` not found (apt-get install {package}, or run tools/setup)"
        );
    }
    found
}

/// A loopback port that was free a moment ago (for programs that cannot
/// listen on port 0 and report it, like Prometheus).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// A running `sockleak serve`, stopped by pid on drop.
pub struct Exporter {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub stderr: Arc<Mutex<String>>,
}

impl Exporter {
    /// Starts `sockleak serve --listen 127.0.0.1:0 ARGS` and waits (bounded)
    /// until it listens; with `wait_ready`, also until `/healthz` says a
    /// scan finished.
    pub fn start(args: &[&str]) -> Exporter {
        Exporter::start_with(args, true)
    }

    pub fn start_with(args: &[&str], wait_ready: bool) -> Exporter {
        let mut cmd = sockleak();
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let e = Exporter::spawn(cmd, &format!("{args:?}"));
        if wait_ready {
            e.wait_until(Duration::from_secs(30), "first scan", || {
                get(e.addr, "/healthz", &[]).is_ok_and(|r| r.status == 200)
            });
        }
        e
    }

    /// Starts a prepared `sockleak serve --listen 127.0.0.1:0 ...` command
    /// (stderr piped), e.g. one run in a sandbox, and waits until it listens.
    pub fn from_command(cmd: Command) -> Exporter {
        Exporter::spawn(cmd, "(prepared command)")
    }

    fn spawn(mut cmd: Command, args: &str) -> Exporter {
        let mut child = cmd.spawn().expect("spawn sockleak serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        // Drain stderr for the whole run so the exporter never blocks on it.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let _ = tx.send(rest.to_string());
                }
                let mut l = sink.lock().unwrap_or_else(|e| e.into_inner());
                l.push_str(&line);
                l.push('\n');
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(u) => u,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "sockleak serve {args} did not start listening in 20 s: {}",
                    log.lock().unwrap_or_else(|e| e.into_inner())
                );
            }
        };
        // "http://127.0.0.1:PORT/metrics (...)"
        let hostport = url
            .split("://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .expect("address in the listening line");
        let addr: SocketAddr = hostport.parse().expect("listening address");
        Exporter {
            child: Some(child),
            addr,
            stderr: log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Polls `f` every 200 ms until it is true or `limit` passes (then panics).
    pub fn wait_until(&self, limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "timed out after {limit:?} waiting for {what}; exporter stderr:\n{}",
            self.stderr.lock().unwrap_or_else(|e| e.into_inner())
        );
    }

    /// The current `/metrics` text (Prometheus format).
    pub fn metrics(&self) -> String {
        let r = get(self.addr, "/metrics", &[]).expect("GET /metrics");
        assert_eq!(r.status, 200, "GET /metrics: {}", r.body);
        r.body
    }

    /// SIGTERM, then waits (bounded) for the exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        // SAFETY: plain kill(2) on a child we spawned and have not reaped.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let st = wait_bounded(&mut child, Duration::from_secs(10));
        if st.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        st
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// One HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

/// Reads one response from `s` (Content-Length framed, or until EOF).
pub fn read_reply(s: &mut TcpStream) -> std::io::Result<Reply> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed before a response",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = buf[head_end..].to_vec();
    match headers
        .get("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        Some(len) => {
            while body.len() < len {
                let n = s.read(&mut chunk)?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
            body.truncate(len);
        }
        None => {
            s.read_to_end(&mut body)?;
        }
    }
    Ok(Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Sends one GET on `s` (keep-alive unless `close`).
pub fn send_get(
    s: &mut TcpStream,
    path: &str,
    headers: &[(&str, &str)],
    close: bool,
) -> std::io::Result<()> {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if close {
        req.push_str("Connection: close\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())
}

pub fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

/// One GET on a new connection.
pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> std::io::Result<Reply> {
    let mut s = connect(addr)?;
    send_get(&mut s, path, headers, true)?;
    read_reply(&mut s)
}

/// (labels, value) of every sample of `name` in Prometheus text.
pub fn samples(text: &str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}').unwrap_or(rest)),
                None => (series, ""),
            };
            (n == name).then(|| (parse_labels(labels), value.parse().unwrap_or(f64::NAN)))
        })
        .collect()
}

/// `a="x",b="y\"z"` into a map (handles the three escapes).
fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            return out;
        }
        if chars.next() != Some('"') {
            return out;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(o) => value.push(o),
                    None => {}
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').to_string(), value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
}

/// The value of the sample of `name` whose labels include every `want`.
pub fn value_of(text: &str, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    samples(text, name)
        .into_iter()
        .find(|(l, _)| {
            want.iter()
                .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| v)
}
