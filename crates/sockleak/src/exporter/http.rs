//! The exporter's HTTP/1.1 server (hyper on tokio), hardened for a port that
//! may face a network: a scrape is a tiny GET, so everything else is refused
//! early and no client can hold resources for long.
//!
//! - **Connection cap**: at most `max_connections` at once (a semaphore);
//!   one more waits at most 250 ms for a slot (a burst of scrapes whose
//!   finished connections are not reaped yet), then is answered `503`
//!   without reading and closed.
//! - **Timeouts**: the request head must arrive within `read_timeout` (hyper's
//!   header read timeout, re-armed for every keep-alive request, so an idle
//!   or byte-by-byte client is cut off), the TLS handshake too, and a
//!   connection lives at most `conn_timeout` whatever it does.
//! - **Limits**: request head ≤ 8 KiB and ≤ 64 headers (else 431 from hyper),
//!   no request bodies (413), only GET and HEAD (405).
//! - **Graceful shutdown**: on the shutdown future (SIGTERM/SIGINT) the
//!   listener closes, open connections finish the response in flight and
//!   close, and whatever is left after `grace` is dropped.
//!
//! Endpoints: `/metrics` (Prometheus text, or OpenMetrics when the Accept
//! header prefers it), `/healthz` (200 while scans are fresh, no auth so
//! probes stay simple), `/` (links).

use super::metrics::Format;
use super::webconfig::WebConfig;
use super::{HttpStats, Shared};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// Largest request head (request line + headers) accepted.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Most request headers accepted.
pub const MAX_HEADERS: usize = 64;
/// How long a connection over the cap waits for a slot before it is refused.
const CAP_WAIT: Duration = Duration::from_millis(250);
/// Successful (user, password) pairs remembered so a scrape every few
/// seconds does not pay a bcrypt verification (tens of ms of CPU) each time;
/// the set is cleared when full.
const AUTH_CACHE_MAX: usize = 64;

/// How the server protects itself.
#[derive(Clone, Debug)]
pub struct ServerLimits {
    pub max_connections: usize,
    /// For the request head (each request) and the TLS handshake.
    pub read_timeout: Duration,
    /// Whole lifetime of one connection.
    pub conn_timeout: Duration,
    /// How long shutdown waits for open connections.
    pub grace: Duration,
}

/// Basic-auth users and the cache of verified credentials.
struct Auth {
    users: BTreeMap<String, String>,
    /// Verified against for unknown users too, so a wrong user name costs
    /// the same time as a wrong password (no user enumeration by timing).
    dummy_hash: String,
    cache: Mutex<HashSet<(String, String)>>,
}

impl Auth {
    fn new(users: BTreeMap<String, String>) -> Option<Auth> {
        let dummy_hash = users.values().next()?.clone();
        Some(Auth {
            users,
            dummy_hash,
            cache: Mutex::new(HashSet::new()),
        })
    }

    async fn check(&self, req: &Request<Incoming>) -> bool {
        let Some((user, pass)) = basic_credentials(req) else {
            return false;
        };
        let key = (user, pass);
        if self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&key)
        {
            return true;
        }
        let hash = self.users.get(&key.0).cloned();
        let dummy = self.dummy_hash.clone();
        let pass = key.1.clone();
        // bcrypt is deliberately slow: keep it off the async workers.
        let ok = tokio::task::spawn_blocking(move || match hash {
            Some(h) => bcrypt::verify(pass, &h).unwrap_or(false),
            None => {
                let _ = bcrypt::verify(pass, &dummy);
                false
            }
        })
        .await
        .unwrap_or(false);
        if ok {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= AUTH_CACHE_MAX {
                cache.clear();
            }
            cache.insert(key);
        }
        ok
    }
}

/// (user, password) from `Authorization: Basic base64(user:password)`.
fn basic_credentials(req: &Request<Incoming>) -> Option<(String, String)> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

/// Picks the format from an Accept header: OpenMetrics when the client
/// rates it at least as high as plain text (Prometheus asks for
/// `application/openmetrics-text;version=1.0.0,...,text/plain;version=0.0.4;q=0.5,...`).
pub fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept else {
        return Format::Prometheus;
    };
    let mut openmetrics: f64 = 0.0;
    let mut text: f64 = 0.0;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut q = 1.0;
        for p in parts {
            if let Some(v) = p.trim().strip_prefix("q=") {
                q = v.trim().parse().unwrap_or(0.0);
            }
        }
        match media.as_str() {
            "application/openmetrics-text" => openmetrics = openmetrics.max(q),
            "text/plain" | "text/*" | "*/*" => text = text.max(q),
            _ => {}
        }
    }
    if openmetrics > 0.0 && openmetrics >= text {
        Format::OpenMetrics
    } else {
        Format::Prometheus
    }
}

struct Ctx {
    shared: Arc<Shared>,
    auth: Option<Auth>,
}

fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    response(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(body.as_bytes()),
    )
}

const INDEX: &str = "<html><head><title>sockleak exporter</title></head><body>\
<h1>sockleak exporter</h1><p><a href=\"/metrics\">/metrics</a> \
<a href=\"/healthz\">/healthz</a></p></body></html>\n";

async fn handle(
    req: Request<Incoming>,
    ctx: Arc<Ctx>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    // A scrape has no body; refusing bodies unread keeps memory bounded.
    let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    if has_body {
        let mut r = text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request bodies are not accepted\n",
        );
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Ok(r);
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(r);
    }
    let path = req.uri().path();
    if path == "/healthz" {
        return Ok(health(&ctx.shared));
    }
    if let Some(auth) = &ctx.auth {
        if !auth.check(&req).await {
            HttpStats::bump(&ctx.shared.http.unauthorized);
            let mut r = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"sockleak\""),
            );
            return Ok(r);
        }
    }
    Ok(match path {
        "/metrics" => {
            let accept = req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok());
            match ctx.shared.latest() {
                Some(e) => {
                    let format = negotiate(accept);
                    let body = match format {
                        Format::Prometheus => e.prometheus.clone(),
                        Format::OpenMetrics => e.openmetrics.clone(),
                    };
                    response(StatusCode::OK, format.content_type(), body)
                }
                None => {
                    let mut r = text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the first scan has not finished yet\n",
                    );
                    r.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                    r
                }
            }
        }
        "/" => response(
            StatusCode::OK,
            "text/html; charset=utf-8",
            Bytes::from_static(INDEX.as_bytes()),
        ),
        _ => text(StatusCode::NOT_FOUND, "not found: try /metrics\n"),
    })
}

/// 200 while the last scan is fresh, 503 before the first scan and when
/// the collector stalled (a liveness probe then restarts the exporter).
fn health(shared: &Shared) -> Response<Full<Bytes>> {
    match shared.latest() {
        None => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: no scan finished yet\n",
        ),
        Some(e) if e.finished.elapsed() > shared.stale_after() => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "stale: the collector has not finished a scan for three intervals\n",
        ),
        Some(_) => text(StatusCode::OK, "ok\n"),
    }
}

/// Serves until `shutdown` completes, then drains connections for at most
/// `limits.grace`.
pub async fn serve(
    listener: TcpListener,
    web: &WebConfig,
    limits: ServerLimits,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()>,
) {
    let ctx = Arc::new(Ctx {
        shared: shared.clone(),
        auth: Auth::new(web.users.clone()),
    });
    let tls = web.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            // Reap finished connection tasks so the set stays small.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        // EMFILE/ENFILE/ENOBUFS: back off instead of spinning;
                        // connections closing will free what is missing.
                        eprintln!("sockleak serve: accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                HttpStats::bump(&shared.http.connections);
                // At the cap, wait a moment: a client that just got its
                // response may not have been reaped yet, and refusing a
                // legitimate burst would be worse than a short pause (new
                // connections wait in the kernel's accept queue meanwhile).
                let permit = match permits.clone().try_acquire_owned() {
                    Ok(p) => p,
                    Err(_) => match tokio::time::timeout(
                        CAP_WAIT,
                        permits.clone().acquire_owned(),
                    )
                    .await
                    {
                        Ok(Ok(p)) => p,
                        _ => {
                            HttpStats::bump(&shared.http.rejected);
                            reject(stream);
                            continue;
                        }
                    },
                };
                let _ = stream.set_nodelay(true);
                let ctx = ctx.clone();
                let tls = tls.clone();
                let limits = limits.clone();
                let stop = stop_rx.clone();
                conns.spawn(async move {
                    let _permit = permit;
                    connection(stream, tls, ctx, limits, stop).await;
                });
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(limits.grace, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        conns.abort_all();
    }
}

/// Over the cap: a short 503 if the socket buffer takes it right away, then
/// close. Never waits on the client.
fn reject(stream: TcpStream) {
    let _ = stream.try_write(
        b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
    );
}

async fn connection(
    stream: TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    ctx: Arc<Ctx>,
    limits: ServerLimits,
    stop: watch::Receiver<bool>,
) {
    let deadline = tokio::time::Instant::now() + limits.conn_timeout;
    match tls {
        None => serve_io(TokioIo::new(stream), ctx, &limits, deadline, stop).await,
        Some(acceptor) => {
            match tokio::time::timeout(limits.read_timeout, acceptor.accept(stream)).await {
                Ok(Ok(s)) => serve_io(TokioIo::new(s), ctx, &limits, deadline, stop).await,
                // A failed handshake (plain HTTP on the TLS port, bad client):
                // rustls has already sent its alert; just close.
                Ok(Err(_)) => {}
                Err(_) => HttpStats::bump(&ctx.shared.http.timed_out),
            }
        }
    }
}

async fn serve_io<I>(
    io: TokioIo<I>,
    ctx: Arc<Ctx>,
    limits: &ServerLimits,
    deadline: tokio::time::Instant,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc_ctx = ctx.clone();
    let svc = service_fn(move |req| handle(req, svc_ctx.clone()));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.read_timeout)
        .max_header_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS)
        .max_buf_size(MAX_HEADER_BYTES.max(16 * 1024))
        .keep_alive(true)
        // A client may shut down its write side after the request and wait
        // for the answer; without this hyper would drop it unanswered.
        .half_close(true)
        .serve_connection(io, svc);
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if res.as_ref().is_err_and(hyper::Error::is_timeout) {
                HttpStats::bump(&ctx.shared.http.timed_out);
            }
            return;
        }
        () = tokio::time::sleep_until(deadline) => HttpStats::bump(&ctx.shared.http.timed_out),
        _ = stop.changed() => {}
    }
    // Let a response in flight finish, then close; a client that is stuck
    // gets a short grace and is dropped.
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(limits.grace.min(Duration::from_secs(2)), conn).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_q_values() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
            version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(negotiate(None), Format::Prometheus);
        assert_eq!(negotiate(Some("*/*")), Format::Prometheus);
        assert_eq!(negotiate(Some("text/plain")), Format::Prometheus);
        assert_eq!(
            negotiate(Some("text/plain;q=0.9, application/openmetrics-text;q=0.5")),
            Format::Prometheus
        );
        assert_eq!(
            negotiate(Some(
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
            )),
            Format::OpenMetrics
        );
        assert_eq!(
            negotiate(Some("application/openmetrics-text;q=0")),
            Format::Prometheus
        );
    }
}
