//! The exporter's HTTP/1.1 server (hyper on tokio), hardened for a port that
//! may face a network: a scrape is a tiny GET, so everything else is refused
//! early and no client can hold resources for long, or make the server wait.
//!
//! - **Connection cap without waiting**: at most `max_connections` at once.
//!   When a new connection finds them all taken, the accept loop never waits
//!   for one to free up (a pause there delays every client queued behind it):
//!   it closes at once one connection that is waiting for a request head and
//!   gives its slot to the newcomer. First those whose credentials were just
//!   refused (their 401/429 is being delayed), else the one that has waited
//!   longest: for its first head since it connected, for the next one after
//!   a response (idle keep-alive), or receiving one byte at a time, if that
//!   is at least [`EVICT_MIN_WAIT`]. A connection whose request head arrived
//!   and is being answered is never evicted. When only younger ones wait (a
//!   burst of scrapes, some still closing), the newcomer is let in over the
//!   cap, up to twice `max_connections`; past that, the longest waiting goes
//!   whatever its age. So slots go round first in, first out: idle and byte-by-byte
//!   clients cannot keep a scrape out, as each newcomer gets in and has the
//!   time `max_connections` newer arrivals take to send its request; the
//!   accept loop yields after each accept so the new connection's task reads
//!   a request already in its socket (a scrape sends it with the connect)
//!   before more are accepted.
//! - **Reserved slots**: when every slot is busy answering (clients that do
//!   not read their responses), [`RESERVED_SLOTS`] more connections are let
//!   in, each for one request whose head must arrive within
//!   [`RESERVED_HEAD_TIMEOUT`], so `/healthz` (a liveness probe) and a scrape
//!   still get through. Beyond those, the newcomer gets a `503` and is closed,
//!   still without waiting.
//! - **Timeouts**: the request head must arrive within `read_timeout` (hyper's
//!   header read timeout, re-armed for every keep-alive request, so an idle
//!   or byte-by-byte client is cut off even when nobody needs its slot), the
//!   TLS handshake too, and a connection lives at most `conn_timeout`
//!   whatever it does.
//! - **Password checks are bounded**: bcrypt is slow on purpose, so at most
//!   [`AUTH_VERIFY_AT_ONCE`] verification runs at a time (off the async
//!   workers); after a failed one the next waits as long as it took, so
//!   wrong passwords use at most half a core however many arrive. A request
//!   that finds the verifier busy is answered `429` instead of queueing.
//!   Refusals (401, 429) are delayed by [`AUTH_FAIL_DELAY`], during which the
//!   connection may be evicted, so a flood of wrong passwords cannot spin
//!   either. Verified credentials are cached: authorized scrapes cost no
//!   bcrypt, and keep working during such a flood.
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
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, Notify, Semaphore};
use tokio::task::JoinSet;

/// Largest request head (request line + headers) accepted.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Most request headers accepted.
pub const MAX_HEADERS: usize = 64;
/// Connections let in beyond `max_connections` when every slot is busy
/// answering, one request each: room for a liveness probe and a scrape.
pub const RESERVED_SLOTS: usize = 4;
/// How long a connection on a reserved slot may take to send its request
/// head (and finish the TLS handshake): a probe or a scrape sends it at once.
pub const RESERVED_HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// A connection is evicted only after waiting this long for a request head
/// (one whose credentials were refused, at once): younger ones are about to
/// be served or closed, and a burst is let in over the cap instead (up to
/// twice `max_connections`, then first in, first out whatever the age).
pub const EVICT_MIN_WAIT: Duration = Duration::from_millis(100);
/// bcrypt verifications running at once. One keeps a flood of wrong
/// passwords to one core at most (half with the pause after a failure),
/// whatever the machine has.
pub const AUTH_VERIFY_AT_ONCE: usize = 1;
/// How long a refused request (401, 429) waits for its answer: a client
/// retrying wrong credentials in a loop makes a few requests per second per
/// connection instead of thousands, so refusing costs next to nothing.
pub const AUTH_FAIL_DELAY: Duration = Duration::from_millis(200);
/// Successful (user, password) pairs remembered so a scrape every few
/// seconds does not pay a bcrypt verification (tens of ms of CPU) each time;
/// the set is cleared when full. Only verified pairs get in, so wrong
/// passwords cannot flush it.
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

/// What a connection is doing, for choosing whom to evict.
/// Its auth was refused and the 401/429 is being delayed: evicted first.
const PENALTY: u8 = 0;
/// Waiting for (the rest of) a request head: a new connection, an idle
/// keep-alive one after a response, a slow client. Evicted oldest first.
const WAITING: u8 = 1;
/// A request head arrived and is being answered: never evicted.
const BUSY: u8 = 2;

/// One open connection, as the admission control sees it.
struct Slot {
    state: AtomicU8,
    /// When the current state began (ns since [`Slots::epoch`]).
    since_ns: AtomicU64,
    /// Notified to close the connection at once (eviction).
    evict: Notify,
    /// On a reserved slot: one request, short head deadline.
    reserved: bool,
    epoch: Instant,
}

impl Slot {
    fn set(&self, state: u8) {
        self.since_ns
            .store(nanos_since(self.epoch), Ordering::Relaxed);
        self.state.store(state, Ordering::Relaxed);
    }
}

fn nanos_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The open connections: admission, eviction and the reserved slots.
struct Slots {
    max: usize,
    reserved_max: usize,
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Slot>>>,
}

/// What the accept loop does with a new connection.
enum Admission {
    /// Let in; `evicted` when another connection was closed to make room.
    In { guard: SlotGuard, evicted: bool },
    /// Every slot, reserved ones too, is busy answering: refuse it.
    Full,
}

/// Frees the slot when the connection's task ends.
struct SlotGuard {
    slots: Arc<Slots>,
    id: u64,
    slot: Arc<Slot>,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        // Already gone when the connection was evicted.
        self.slots
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

impl Slots {
    fn new(max: usize, reserved_max: usize) -> Arc<Slots> {
        Arc::new(Slots {
            max: max.max(1),
            reserved_max,
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Never waits: a free slot, else the evicted slot of the best
    /// candidate (see the module doc), else a reserved slot, else refusal.
    fn admit(self: &Arc<Slots>) -> Admission {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let reserved_open = open.values().filter(|s| s.reserved).count();
        let general_open = open.len() - reserved_open;
        let now = nanos_since(self.epoch);
        let min_wait = u64::try_from(EVICT_MIN_WAIT.as_nanos()).unwrap_or(u64::MAX);
        let waited = |s: &Slot| now.saturating_sub(s.since_ns.load(Ordering::Relaxed));
        // Whom to evict: refused-auth ones first, then the longest waiting.
        let victim = |old_only: bool| {
            open.iter()
                .filter(|(_, s)| {
                    let state = s.state.load(Ordering::Relaxed);
                    state == PENALTY || (state == WAITING && (!old_only || waited(s) >= min_wait))
                })
                .min_by_key(|(_, s)| {
                    (
                        s.state.load(Ordering::Relaxed),
                        s.since_ns.load(Ordering::Relaxed),
                    )
                })
                .map(|(&id, s)| (id, s.reserved))
        };
        let pick = if general_open < self.max {
            Ok(false)
        } else if let Some(v) = victim(true) {
            Err(v)
        } else if general_open < self.max * 2 && victim(false).is_some() {
            // Only young connections wait (a burst: some just got their
            // response and are closing, others just connected): let the
            // newcomer in over the cap rather than cut one that is about to
            // be served or done.
            Ok(false)
        } else if let Some(v) = victim(false) {
            // Burst room full too: first in, first out among the young.
            Err(v)
        } else if reserved_open < self.reserved_max {
            Ok(true)
        } else {
            return Admission::Full;
        };
        let (reserved, evicted) = match pick {
            Ok(reserved) => (reserved, false),
            Err((id, reserved)) => {
                if let Some(v) = open.remove(&id) {
                    v.evict.notify_one();
                }
                (reserved, true)
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            state: AtomicU8::new(WAITING),
            since_ns: AtomicU64::new(nanos_since(self.epoch)),
            evict: Notify::new(),
            reserved,
            epoch: self.epoch,
        });
        open.insert(id, slot.clone());
        Admission::In {
            guard: SlotGuard {
                slots: self.clone(),
                id,
                slot,
            },
            evicted,
        }
    }
}

/// The verdict on a request's credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Allowed,
    Denied,
    /// The verifier was busy: try again later (429).
    Busy,
}

/// Basic-auth users, the bound on verifications and the cache of verified
/// credentials.
struct Auth {
    users: BTreeMap<String, String>,
    /// Verified against for unknown users too, so a wrong user name costs
    /// the same time as a wrong password (no user enumeration by timing).
    dummy_hash: String,
    cache: Mutex<HashSet<(String, String)>>,
    verifying: Arc<Semaphore>,
}

impl Auth {
    fn new(users: BTreeMap<String, String>) -> Option<Auth> {
        let dummy_hash = users.values().next()?.clone();
        Some(Auth {
            users,
            dummy_hash,
            cache: Mutex::new(HashSet::new()),
            verifying: Arc::new(Semaphore::new(AUTH_VERIFY_AT_ONCE)),
        })
    }

    async fn check(&self, req: &Request<Incoming>) -> Verdict {
        let Some((user, pass)) = basic_credentials(req) else {
            return Verdict::Denied;
        };
        let key = (user, pass);
        if self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&key)
        {
            return Verdict::Allowed;
        }
        let Ok(permit) = self.verifying.clone().try_acquire_owned() else {
            return Verdict::Busy;
        };
        let hash = self.users.get(&key.0).cloned();
        let dummy = self.dummy_hash.clone();
        let pass = key.1.clone();
        let (tx, rx) = oneshot::channel();
        // The permit lives in its own task, so it is held for the whole
        // verification and the pause after a failure even when the client
        // goes away (or is evicted) meanwhile: the bound holds regardless.
        tokio::spawn(async move {
            let started = Instant::now();
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
            let _ = tx.send(ok);
            if !ok {
                // A duty cycle of at most one half for wrong passwords.
                tokio::time::sleep(started.elapsed()).await;
            }
            drop(permit);
        });
        let ok = rx.await.unwrap_or(false);
        if ok {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= AUTH_CACHE_MAX {
                cache.clear();
            }
            cache.insert(key);
            Verdict::Allowed
        } else {
            Verdict::Denied
        }
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

/// 401 for wrong or missing credentials, 429 when the verifier was busy.
fn refusal(verdict: Verdict) -> Response<Full<Bytes>> {
    if verdict == Verdict::Busy {
        let mut r = text(
            StatusCode::TOO_MANY_REQUESTS,
            "too many password checks at once: retry\n",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    }
    let mut r = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"sockleak\""),
    );
    r
}

async fn handle(
    req: Request<Incoming>,
    ctx: Arc<Ctx>,
    slot: Arc<Slot>,
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
        let verdict = auth.check(&req).await;
        if verdict != Verdict::Allowed {
            HttpStats::bump(&ctx.shared.http.unauthorized);
            // Delayed so a retry loop cannot spin; evictable meanwhile, as
            // it is not a scrape that will be served.
            slot.set(PENALTY);
            tokio::time::sleep(AUTH_FAIL_DELAY).await;
            return Ok(refusal(verdict));
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
    let slots = Slots::new(limits.max_connections, RESERVED_SLOTS);
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
                let guard = match slots.admit() {
                    Admission::In { guard, evicted } => {
                        if evicted {
                            HttpStats::bump(&shared.http.rejected);
                        }
                        guard
                    }
                    Admission::Full => {
                        HttpStats::bump(&shared.http.rejected);
                        reject(stream);
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let ctx = ctx.clone();
                let tls = tls.clone();
                let limits = limits.clone();
                let stop = stop_rx.clone();
                conns.spawn(async move {
                    let slot = guard.slot.clone();
                    tokio::select! {
                        () = connection(stream, tls, ctx, limits, slot.clone(), stop) => {}
                        // Evicted: close at once (dropping the connection).
                        () = slot.evict.notified() => {}
                    }
                    drop(guard);
                });
                // Let the new connection's task read the request that is
                // likely in its socket already (a scrape sends it at once),
                // so it is being answered, no longer evictable, before a
                // flood of newer connections could push it out.
                tokio::task::yield_now().await;
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

/// Every slot busy answering: a short 503 if the socket buffer takes it
/// right away, then close. Never waits on the client.
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
    slot: Arc<Slot>,
    stop: watch::Receiver<bool>,
) {
    let deadline = tokio::time::Instant::now() + limits.conn_timeout;
    let head_timeout = if slot.reserved {
        limits.read_timeout.min(RESERVED_HEAD_TIMEOUT)
    } else {
        limits.read_timeout
    };
    match tls {
        None => {
            serve_io(
                TokioIo::new(stream),
                ctx,
                &limits,
                head_timeout,
                slot,
                deadline,
                stop,
            )
            .await
        }
        Some(acceptor) => {
            match tokio::time::timeout(head_timeout, acceptor.accept(stream)).await {
                Ok(Ok(s)) => {
                    serve_io(
                        TokioIo::new(s),
                        ctx,
                        &limits,
                        head_timeout,
                        slot,
                        deadline,
                        stop,
                    )
                    .await;
                }
                // A failed handshake (plain HTTP on the TLS port, bad client):
                // rustls has already sent its alert; just close.
                Ok(Err(_)) => {}
                Err(_) => HttpStats::bump(&ctx.shared.http.timed_out),
            }
        }
    }
}

/// Puts the connection back to [`WAITING`] when hyper drops the response
/// body, i.e. once the whole response is handed to the socket: from then
/// on it waits for its next request head and may be evicted.
struct Rearm(Arc<Slot>);

impl Drop for Rearm {
    fn drop(&mut self) {
        self.0.set(WAITING);
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve_io<I>(
    io: TokioIo<I>,
    ctx: Arc<Ctx>,
    limits: &ServerLimits,
    head_timeout: Duration,
    slot: Arc<Slot>,
    deadline: tokio::time::Instant,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc_ctx = ctx.clone();
    let reserved = slot.reserved;
    let svc = service_fn(move |req| {
        let ctx = svc_ctx.clone();
        let slot = slot.clone();
        async move {
            slot.set(BUSY);
            let res = handle(req, ctx, slot.clone()).await;
            let rearm = Rearm(slot);
            res.map(|r| {
                r.map(move |body| -> BoxBody<Bytes, Infallible> {
                    // map_err (never called: Infallible) only to tie the
                    // guard to the body's life; unlike map_frame it keeps
                    // the size hint, so responses keep their Content-Length.
                    body.map_err(move |e| {
                        let _ = &rearm;
                        e
                    })
                    .boxed()
                })
            })
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout)
        .max_header_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS)
        .max_buf_size(MAX_HEADER_BYTES.max(16 * 1024))
        // A reserved slot is for one request: give it back right after.
        .keep_alive(!reserved)
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

    fn admitted(a: Admission) -> (SlotGuard, bool) {
        match a {
            Admission::In { guard, evicted } => (guard, evicted),
            Admission::Full => panic!("refused"),
        }
    }

    fn is_open(slots: &Slots, g: &SlotGuard) -> bool {
        slots
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&g.id)
    }

    #[test]
    fn at_the_cap_the_oldest_waiting_connection_makes_room() {
        let slots = Slots::new(3, 1);
        let a = admitted(slots.admit()).0;
        std::thread::sleep(Duration::from_millis(2));
        let b = admitted(slots.admit()).0;
        std::thread::sleep(Duration::from_millis(2));
        let c = admitted(slots.admit()).0;
        std::thread::sleep(EVICT_MIN_WAIT);
        // a is answering a request: never evicted; b waited longest.
        a.slot.set(BUSY);
        let (d, evicted) = admitted(slots.admit());
        assert!(evicted);
        assert!(!is_open(&slots, &b) && is_open(&slots, &a) && is_open(&slots, &c));
        assert!(!d.slot.reserved);
        // A refused client waiting out its delay goes before older waiters.
        d.slot.set(PENALTY);
        let (_e, evicted) = admitted(slots.admit());
        assert!(evicted && !is_open(&slots, &d) && is_open(&slots, &c));
        drop(b);
        assert_eq!(
            slots.open.lock().unwrap_or_else(|e| e.into_inner()).len(),
            3,
            "dropping an evicted connection's guard frees nothing twice"
        );
    }

    #[test]
    fn a_burst_goes_over_the_cap_then_round_first_in_first_out() {
        let slots = Slots::new(2, 0);
        let a = admitted(slots.admit()).0;
        std::thread::sleep(Duration::from_millis(2));
        let b = admitted(slots.admit()).0;
        // All young: over the cap, up to twice it, nobody cut.
        let (c, ev_c) = admitted(slots.admit());
        let (d, ev_d) = admitted(slots.admit());
        assert!(!ev_c && !ev_d);
        // Then the longest waiting goes, young or not.
        let (_e, evicted) = admitted(slots.admit());
        assert!(evicted && !is_open(&slots, &a));
        assert!(is_open(&slots, &b) && is_open(&slots, &c) && is_open(&slots, &d));
    }

    #[test]
    fn when_every_slot_is_answering_reserved_slots_then_refusal() {
        let slots = Slots::new(2, 1);
        let busy: Vec<SlotGuard> = (0..2).map(|_| admitted(slots.admit()).0).collect();
        for g in &busy {
            g.slot.set(BUSY);
        }
        let (r, evicted) = admitted(slots.admit());
        assert!(r.slot.reserved && !evicted);
        r.slot.set(BUSY);
        assert!(matches!(slots.admit(), Admission::Full));
        // A connection that finished its answer may be evicted again, once
        // it has waited long enough; before, a burst goes over the cap.
        busy[0].slot.set(WAITING);
        let (over, evicted) = admitted(slots.admit());
        assert!(!evicted && !over.slot.reserved && is_open(&slots, &busy[0]));
        over.slot.set(BUSY);
        std::thread::sleep(EVICT_MIN_WAIT);
        let (n, evicted) = admitted(slots.admit());
        assert!(evicted && !n.slot.reserved && !is_open(&slots, &busy[0]));
        drop((busy, over));
        let (n2, evicted) = admitted(slots.admit());
        assert!(!evicted && !n2.slot.reserved);
    }

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
