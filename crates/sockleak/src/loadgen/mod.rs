//! The built-in load generator of `sockleak check`: HTTP/1.1 through hyper's
//! client connection API (one TCP stream per connection, owned here, so each
//! connection's end — FIN, half-close, RST, or none — is chosen exactly) and
//! raw TCP. Bounded by a request count, a deadline and Ctrl-C.
//!
//! Tokio lives only here: the rest of sockleak is synchronous, so [`run`]
//! builds a runtime, drives the load and drops the runtime, which closes
//! every connection still open.

pub mod dest;
mod http;
pub mod stats;
mod tcp;

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use serde::Serialize;
use stats::{Latency, Recorder};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How each connection ends. The TCP state each leaves behind (on a server
/// that closes when it should) is in docs/check.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Behavior {
    /// One connection per worker, reused for every request; closed at the end.
    KeepAlive,
    /// A new connection per request; the client closes first after the
    /// response (TIME_WAIT on the client).
    Close,
    /// A new connection per request with `Connection: close`; the client
    /// waits for the server's FIN, then closes (TIME_WAIT on the server).
    ServerClose,
    /// A new connection per request; the client shuts down its sending side
    /// right after the request (the server reads EOF), then reads the whole
    /// response and closes.
    HalfClose,
    /// A new connection per request, ended with RST (SO_LINGER 0): no
    /// TIME_WAIT anywhere, the server reads ECONNRESET.
    Abort,
    /// A new connection per request; only the response head is read, the
    /// body is left unread and the connection held open until the load ends.
    UnreadBody,
}

impl Behavior {
    pub fn as_str(self) -> &'static str {
        match self {
            Behavior::KeepAlive => "keep-alive",
            Behavior::Close => "close",
            Behavior::ServerClose => "server-close",
            Behavior::HalfClose => "half-close",
            Behavior::Abort => "abort",
            Behavior::UnreadBody => "unread-body",
        }
    }
}

/// An HTTP destination, validated.
#[derive(Clone, Debug)]
pub struct HttpTarget {
    pub url: String,
    pub addr: SocketAddr,
    /// `Host:` header value (host[:port] as in the URL).
    pub host: String,
    pub path: String,
}

impl HttpTarget {
    /// Parses an `http://` URL and resolves its host (first address wins).
    pub fn parse(url: &str) -> Result<(HttpTarget, Vec<SocketAddr>)> {
        let uri: hyper::Uri = url
            .parse()
            .with_context(|| format!("--http {url:?}: not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => bail!("--http {url:?}: scheme {other} is not supported (only http)"),
            None => bail!("--http {url:?}: expected http://HOST[:PORT]/PATH"),
        }
        let Some(auth) = uri.authority() else {
            bail!("--http {url:?}: no host");
        };
        let port = uri.port_u16().unwrap_or(80);
        let addrs = dest::resolve(auth.host(), port)?;
        let path = uri
            .path_and_query()
            .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
        Ok((
            HttpTarget {
                url: url.to_string(),
                addr: addrs[0],
                host: auth.as_str().to_string(),
                path,
            },
            addrs,
        ))
    }
}

/// A raw TCP destination, validated.
#[derive(Clone, Debug)]
pub struct TcpTarget {
    pub addr: SocketAddr,
    /// Bytes written per request.
    pub send: usize,
    /// Bytes read back per request before the connection ends (0: none).
    pub recv: usize,
}

impl TcpTarget {
    /// Parses `HOST:PORT` (`[v6]:PORT`) and resolves it.
    pub fn parse(addr: &str, send: usize, recv: usize) -> Result<(TcpTarget, Vec<SocketAddr>)> {
        let Some((host, port)) = addr.rsplit_once(':') else {
            bail!("--tcp {addr:?}: expected HOST:PORT");
        };
        let port: u16 = port
            .parse()
            .with_context(|| format!("--tcp {addr:?}: bad port"))?;
        let addrs = dest::resolve(host, port)?;
        Ok((
            TcpTarget {
                addr: addrs[0],
                send,
                recv,
            },
            addrs,
        ))
    }
}

#[derive(Clone, Debug)]
pub enum Target {
    Http(HttpTarget),
    Tcp(TcpTarget),
}

/// One load run.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    pub target: Target,
    pub requests: u64,
    pub concurrency: usize,
    pub behavior: Behavior,
    /// The whole run stops here; requests in flight count as failed.
    pub deadline: Duration,
    /// One request (connect included) fails after this long.
    pub timeout: Duration,
}

/// Why the run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    Completed,
    Deadline,
    Interrupted,
}

/// What the load did.
#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    /// `http` or `tcp`.
    pub kind: &'static str,
    /// The URL or address.
    pub target: String,
    pub behavior: Behavior,
    pub concurrency: usize,
    /// Requests asked for.
    pub requests: u64,
    /// Requests started.
    pub attempted: u64,
    pub ok: u64,
    pub failed: u64,
    /// Failure reason → count.
    pub errors: std::collections::BTreeMap<String, u64>,
    pub connections: u64,
    pub latency: Latency,
    pub duration_s: f64,
    pub stop: Stop,
}

/// Requests finished so far, for a progress display on another thread:
/// the workers only add to them (relaxed atomics, no locking).
#[derive(Debug, Default)]
pub struct LoadCounters {
    /// Requests that ended, failed ones included.
    pub finished: AtomicU64,
    pub failed: AtomicU64,
}

/// Counters the workers share.
struct Shared {
    next: AtomicU64,
    counters: Arc<LoadCounters>,
}

/// Connections held until the whole run ends (unread-body). Dropping the
/// list closes them.
type Held = Arc<Mutex<Vec<Box<dyn Send>>>>;

/// Runs the load to completion, the deadline, or until `cancel` is set;
/// `counters` follow the requests as they end.
pub fn run(
    spec: &LoadSpec,
    cancel: &'static AtomicBool,
    counters: Arc<LoadCounters>,
) -> Result<LoadReport> {
    if spec.requests == 0 || spec.concurrency == 0 {
        bail!("--requests and --concurrency must be at least 1");
    }
    let workers = spec
        .concurrency
        .min(usize::try_from(spec.requests).unwrap_or(usize::MAX));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.clamp(1, 4))
        .enable_all()
        .build()
        .context("start the load generator's runtime")?;
    let started = Instant::now();
    let recorders: Vec<Arc<Mutex<Recorder>>> = (0..workers)
        .map(|_| Arc::new(Mutex::new(Recorder::default())))
        .collect();
    let shared = Arc::new(Shared {
        next: AtomicU64::new(0),
        counters,
    });
    let held: Held = Arc::new(Mutex::new(Vec::new()));
    let stop = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for rec in &recorders {
            let (spec, shared, rec, held) =
                (spec.clone(), shared.clone(), rec.clone(), held.clone());
            set.spawn(async move { worker(spec, shared, rec, held, cancel).await });
        }
        let all_done = async { while set.join_next().await.is_some() {} };
        let deadline = tokio::time::sleep(spec.deadline);
        let stop = tokio::select! {
            _ = all_done => Stop::Completed,
            _ = deadline => Stop::Deadline,
            _ = cancelled(cancel) => Stop::Interrupted,
        };
        // Dropping the tasks drops their connections (aborted mid-request).
        set.abort_all();
        while set.join_next().await.is_some() {}
        stop
    });
    // Close what unread-body held, then everything the runtime still owns.
    if let Ok(mut h) = held.lock() {
        h.clear();
    }
    drop(rt);

    let mut total = Recorder::default();
    for r in recorders {
        if let Ok(r) = r.lock() {
            total.merge(r.clone());
        }
    }
    let attempted = shared.next.load(Ordering::Relaxed).min(spec.requests);
    // Requests cut by the deadline or Ctrl-C never finished: they failed.
    let cut = attempted.saturating_sub(total.ok + total.failed);
    if cut > 0 {
        let why = match stop {
            Stop::Interrupted => "interrupted",
            _ => "deadline reached",
        };
        total.failed += cut;
        *total.errors.entry(why.to_string()).or_default() += cut;
    }
    let (kind, target) = match &spec.target {
        Target::Http(h) => ("http", h.url.clone()),
        Target::Tcp(t) => ("tcp", t.addr.to_string()),
    };
    Ok(LoadReport {
        kind,
        target,
        behavior: spec.behavior,
        concurrency: spec.concurrency,
        requests: spec.requests,
        attempted,
        ok: total.ok,
        failed: total.failed,
        latency: total.latency(),
        errors: total.errors,
        connections: total.connections,
        duration_s: started.elapsed().as_secs_f64(),
        stop,
    })
}

/// Resolves when `cancel` is set (a signal handler sets it; polling keeps the
/// handler async-signal-safe).
pub async fn cancelled(cancel: &'static AtomicBool) {
    while !cancel.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn worker(
    spec: LoadSpec,
    shared: Arc<Shared>,
    rec: Arc<Mutex<Recorder>>,
    held: Held,
    cancel: &'static AtomicBool,
) {
    let mut http_conn: Option<http::Conn> = None;
    let mut tcp_conn: Option<tokio::net::TcpStream> = None;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return;
        }
        if shared.next.fetch_add(1, Ordering::Relaxed) >= spec.requests {
            return;
        }
        let started = Instant::now();
        let mut opened = 0u64;
        let fut = async {
            match &spec.target {
                Target::Http(t) => {
                    http::request(t, spec.behavior, &mut http_conn, &held, &mut opened).await
                }
                Target::Tcp(t) => {
                    tcp::request(t, spec.behavior, &mut tcp_conn, &held, &mut opened).await
                }
            }
        };
        let res = tokio::time::timeout(spec.timeout, fut).await;
        let Ok(mut r) = rec.lock() else { return };
        r.connections += opened;
        match res {
            Ok(Ok(())) => r.success(started.elapsed()),
            Ok(Err(e)) => {
                r.failure(e);
                http_conn = None;
                tcp_conn = None;
                shared.counters.failed.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                r.failure(format!("timed out after {:?}", spec.timeout));
                http_conn = None;
                tcp_conn = None;
                shared.counters.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        shared.counters.finished.fetch_add(1, Ordering::Relaxed);
    }
}
