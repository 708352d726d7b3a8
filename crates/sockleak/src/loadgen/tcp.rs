//! One raw TCP "request": connect (or reuse), write `send` bytes, read
//! `recv` bytes back if asked, then end the connection as the [`Behavior`]
//! says. For protocols sockleak does not speak, and for servers that are not
//! HTTP.

use super::{Behavior, Held, TcpTarget};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Performs one request; `conn` carries the keep-alive connection.
pub async fn request(
    t: &TcpTarget,
    behavior: Behavior,
    conn: &mut Option<TcpStream>,
    held: &Held,
    opened: &mut u64,
) -> Result<(), String> {
    let mut stream = match conn.take() {
        Some(s) if behavior == Behavior::KeepAlive => s,
        _ => {
            *opened += 1;
            let s = TcpStream::connect(t.addr)
                .await
                .map_err(|e| format!("connect {}: {e}", t.addr))?;
            let _ = s.set_nodelay(true);
            if behavior == Behavior::Abort {
                s.set_zero_linger()
                    .map_err(|e| format!("set SO_LINGER 0 on {}: {e}", t.addr))?;
            }
            s
        }
    };
    if t.send > 0 {
        // A recognisable filler: 'x' bytes ending in a newline, so line-based
        // servers see one line per request.
        let mut payload = vec![b'x'; t.send];
        if let Some(last) = payload.last_mut() {
            *last = b'\n';
        }
        stream
            .write_all(&payload)
            .await
            .map_err(|e| format!("write to {}: {e}", t.addr))?;
    }
    if behavior == Behavior::HalfClose {
        stream
            .shutdown()
            .await
            .map_err(|e| format!("shut down writing to {}: {e}", t.addr))?;
    }
    if t.recv > 0 && behavior != Behavior::UnreadBody {
        let mut buf = vec![0u8; t.recv];
        stream
            .read_exact(&mut buf)
            .await
            .map_err(|e| format!("read {} bytes from {}: {e}", t.recv, t.addr))?;
    }
    match behavior {
        Behavior::KeepAlive => *conn = Some(stream),
        Behavior::ServerClose | Behavior::HalfClose => {
            // Wait for the peer's FIN (bounded by the request timeout).
            let mut sink = [0u8; 4096];
            loop {
                match stream.read(&mut sink).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => return Err(format!("wait for {} to close: {e}", t.addr)),
                }
            }
        }
        Behavior::UnreadBody => {
            if let Ok(mut h) = held.lock() {
                h.push(Box::new(stream));
            }
        }
        // Dropped here: FIN (close) or RST (abort).
        Behavior::Close | Behavior::Abort => drop(stream),
    }
    Ok(())
}
