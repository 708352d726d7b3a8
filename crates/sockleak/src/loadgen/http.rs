//! One HTTP/1.1 request per call, on a connection whose lifecycle the
//! [`Behavior`] decides. The connection task runs hyper's
//! `Connection::without_shutdown`, which hands the TCP stream back once the
//! exchange is over instead of closing it, so the end of every connection is
//! chosen here.

use super::{Behavior, Held, HttpTarget};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, Parts, SendRequest};
use hyper::header::{CONNECTION, HOST, USER_AGENT};
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

type ConnTask = JoinHandle<hyper::Result<Parts<TokioIo<HalfCloser>>>>;

/// A connection: the request side and the task driving the stream.
pub struct Conn {
    sender: SendRequest<Empty<Bytes>>,
    task: ConnTask,
}

/// Kept alive, unread, until the load ends; dropping it aborts the
/// connection task, which drops (closes) the stream.
struct HeldResponse {
    _sender: SendRequest<Empty<Bytes>>,
    _response: hyper::Response<hyper::body::Incoming>,
    task: ConnTask,
}

impl Drop for HeldResponse {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Performs one request. `conn` carries the keep-alive connection between
/// calls; `opened` counts new TCP connections. Errors are short reasons
/// ("connect 127.0.0.1:8080: Connection refused").
pub async fn request(
    t: &HttpTarget,
    behavior: Behavior,
    conn: &mut Option<Conn>,
    held: &Held,
    opened: &mut u64,
) -> Result<(), String> {
    let reuse =
        behavior == Behavior::KeepAlive && conn.as_ref().is_some_and(|c| !c.sender.is_closed());
    let mut c = match conn.take() {
        Some(c) if reuse => c,
        _ => {
            *opened += 1;
            connect(t, behavior).await?
        }
    };
    c.sender
        .ready()
        .await
        .map_err(|e| format!("connection not ready: {e}"))?;
    let mut req = Request::builder()
        .uri(t.path.as_str())
        .header(HOST, t.host.as_str())
        .header(
            USER_AGENT,
            concat!("sockleak-check/", env!("CARGO_PKG_VERSION")),
        );
    if behavior == Behavior::ServerClose {
        req = req.header(CONNECTION, "close");
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("build request: {e}"))?;
    let resp = c
        .sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = resp.status();
    if behavior == Behavior::UnreadBody {
        if let Ok(mut h) = held.lock() {
            h.push(Box::new(HeldResponse {
                _sender: c.sender,
                _response: resp,
                task: c.task,
            }));
        }
        return status_result(status);
    }
    resp.into_body()
        .collect()
        .await
        .map_err(|e| format!("read body: {e}"))?;
    match behavior {
        Behavior::KeepAlive => *conn = Some(c),
        Behavior::ServerClose => {
            let mut stream = finish(c).await?;
            // The server closes first: wait for its FIN, then close.
            let mut sink = [0u8; 4096];
            loop {
                match stream.read(&mut sink).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => return Err(format!("wait for the server to close: {e}")),
                }
            }
        }
        // The stream drops at the end of this arm: FIN (close, half-close;
        // the latter's FIN went out right after the request) or RST (abort,
        // SO_LINGER 0 was set at connect).
        Behavior::Close | Behavior::HalfClose | Behavior::Abort => drop(finish(c).await?),
        Behavior::UnreadBody => {}
    }
    status_result(status)
}

fn status_result(status: hyper::StatusCode) -> Result<(), String> {
    if status.is_client_error() || status.is_server_error() {
        Err(format!("HTTP {}", status.as_u16()))
    } else {
        Ok(())
    }
}

async fn connect(t: &HttpTarget, behavior: Behavior) -> Result<Conn, String> {
    let stream = TcpStream::connect(t.addr)
        .await
        .map_err(|e| format!("connect {}: {e}", t.addr))?;
    let _ = stream.set_nodelay(true);
    if behavior == Behavior::Abort {
        // Zero linger: close() sends RST and frees the socket at once.
        stream
            .set_zero_linger()
            .map_err(|e| format!("set SO_LINGER 0 on {}: {e}", t.addr))?;
    }
    let io = TokioIo::new(HalfCloser {
        inner: stream,
        shut_after_flush: behavior == Behavior::HalfClose,
        wrote: false,
    });
    let (sender, connection) = http1::handshake(io)
        .await
        .map_err(|e| format!("handshake with {}: {e}", t.addr))?;
    let task = tokio::spawn(connection.without_shutdown());
    Ok(Conn { sender, task })
}

/// Ends the HTTP exchange and takes the stream back (still open).
async fn finish(c: Conn) -> Result<TcpStream, String> {
    drop(c.sender);
    match c.task.await {
        Ok(Ok(parts)) => Ok(parts.io.into_inner().inner),
        Ok(Err(e)) => Err(format!("connection: {e}")),
        Err(e) => Err(format!("connection task: {e}")),
    }
}

/// A stream that shuts down its sending side after the first flush that
/// follows a write (the request is then on the wire): the half-close.
struct HalfCloser {
    inner: TcpStream,
    shut_after_flush: bool,
    wrote: bool,
}

impl AsyncRead for HalfCloser {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for HalfCloser {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.wrote = true;
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.wrote = true;
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        if matches!(r, Poll::Ready(Ok(()))) && self.shut_after_flush && self.wrote {
            self.shut_after_flush = false;
            // tokio's TcpStream shuts down the write half synchronously.
            return Pin::new(&mut self.inner).poll_shutdown(cx);
        }
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
