//! `--json`: the `sockleak.scan/v1` document, streamed (a host with a million
//! sockets must not be held twice in memory). Field by field in
//! docs/json-schema.md; machine-checked by docs/schema/scan-v1.schema.json.

use super::rfc3339;
use serde::ser::{SerializeSeq, Serializer};
use serde::Serialize;
use sockleak_model::findings::Finding;
use sockleak_model::{Endpoint, Family, Namespace, PartialNote, Process, Snapshot, Socket, Timer};
use std::cell::RefCell;
use std::net::IpAddr;

/// The schema id; bump only with incompatible changes (documented).
pub const SCAN_SCHEMA: &str = "sockleak.scan/v1";

#[derive(Serialize)]
struct Document<'a> {
    schema: &'static str,
    taken_at: String,
    host: Host<'a>,
    filtered: bool,
    partial: &'a [PartialNote],
}

#[derive(Serialize)]
struct Host<'a> {
    hostname: &'a str,
    kernel: &'a str,
    clock_ticks: u64,
    uptime_s: f64,
    namespaces: &'a [Namespace],
}

#[derive(Serialize)]
struct ProcessDoc<'a> {
    #[serde(flatten)]
    process: &'a Process,
    /// RFC 3339 start time, from start_time and the boot time.
    started_at: Option<String>,
}

/// Serialises a slice through a per-item view without collecting the views.
struct Seq<'a, T, V> {
    items: &'a [T],
    view: RefCell<Box<dyn FnMut(&'a T) -> V + 'a>>,
}

impl<T, V: Serialize> Serialize for Seq<'_, T, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.items.len()))?;
        let mut view = self.view.borrow_mut();
        for item in self.items {
            seq.serialize_element(&view(item))?;
        }
        seq.end()
    }
}

/// Writes the document to `w`.
///
/// The head (schema, host, notes) and the tail (processes, findings) go
/// through serde; the sockets, which are nearly all of the bytes, are written
/// by [`socket_json`], byte for byte what serde would print (tested), about
/// three times faster. The pieces are spliced: serde writes a complete object
/// for the head and the tail, and the brace between them is replaced.
pub fn write(
    w: &mut impl std::io::Write,
    snap: &Snapshot,
    findings: &[Finding],
) -> serde_json::Result<()> {
    write_with(w, snap, || findings).map(|_| ())
}

/// [`write`] with the findings asked for only once the sockets and processes
/// are out: `scan --json` diagnoses on another thread meanwhile. Returns
/// them.
pub fn write_with<F: AsRef<[Finding]>>(
    w: &mut impl std::io::Write,
    snap: &Snapshot,
    findings: impl FnOnce() -> F,
) -> serde_json::Result<F> {
    let names: std::collections::HashMap<u64, Option<&str>> = snap
        .namespaces
        .iter()
        .map(|n| (n.id, n.name.as_deref()))
        .collect();
    let ticks = snap.host.clock_ticks.max(1);
    let boot = snap.host.boot_time_ms;
    let mut buf = serde_json::to_vec(&head(snap))?;
    buf.pop(); // `}`: the object goes on
    buf.extend_from_slice(b",\"sockets\":[");
    for (i, s) in snap.sockets.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        socket_json(&mut buf, s, names.get(&s.netns).copied().flatten());
        if buf.len() >= 1 << 16 {
            w.write_all(&buf).map_err(serde_json::Error::io)?;
            buf.clear();
        }
    }
    buf.extend_from_slice(b"],");
    w.write_all(&buf).map_err(serde_json::Error::io)?;
    drop(buf);
    let processes = Seq {
        items: &snap.processes,
        view: RefCell::new(Box::new(move |p: &Process| ProcessDoc {
            process: p,
            started_at: (boot > 0)
                .then(|| rfc3339(boot + p.start_time.saturating_mul(1000) / ticks)),
        })),
    };
    w.write_all(b"\"processes\":")
        .map_err(serde_json::Error::io)?;
    serde_json::to_writer(&mut *w, &processes)?;
    let findings = findings();
    w.write_all(b",\"findings\":")
        .map_err(serde_json::Error::io)?;
    serde_json::to_writer(&mut *w, findings.as_ref())?;
    w.write_all(b"}\n").map_err(serde_json::Error::io)?;
    Ok(findings)
}

/// What precedes the sockets in the document.
fn head(snap: &Snapshot) -> Document<'_> {
    Document {
        schema: SCAN_SCHEMA,
        taken_at: rfc3339(snap.taken_at_ms),
        host: Host {
            hostname: &snap.host.hostname,
            kernel: &snap.host.kernel,
            clock_ticks: snap.host.clock_ticks,
            uptime_s: snap.host.uptime_s,
            namespaces: &snap.namespaces,
        },
        filtered: snap.filtered,
        partial: &snap.partial,
    }
}

/// Appends one socket as JSON: `Socket`'s fields in declaration order (as its
/// derived `Serialize` prints them) followed by `netns_name`. Numbers through
/// `itoa`, endpoints and enums without the `fmt` machinery, strings that can
/// hold anything (namespace names) escaped by serde_json.
fn socket_json(out: &mut Vec<u8>, s: &Socket, netns_name: Option<&str>) {
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(b"{\"state\":\"");
    out.extend_from_slice(s.state.kernel_name().as_bytes());
    out.extend_from_slice(match s.family {
        Family::Inet => b"\",\"family\":\"inet\",\"local\":\"",
        Family::Inet6 => b"\",\"family\":\"inet6\",\"local\":\"",
    });
    endpoint(out, s.local);
    out.extend_from_slice(b"\",\"remote\":\"");
    endpoint(out, s.remote);
    out.extend_from_slice(b"\",\"recv_q\":");
    out.extend_from_slice(n.format(s.recv_q).as_bytes());
    out.extend_from_slice(b",\"send_q\":");
    out.extend_from_slice(n.format(s.send_q).as_bytes());
    out.extend_from_slice(b",\"cookie\":");
    out.extend_from_slice(n.format(s.cookie.0).as_bytes());
    out.extend_from_slice(b",\"inode\":");
    out.extend_from_slice(n.format(s.inode).as_bytes());
    out.extend_from_slice(b",\"uid\":");
    out.extend_from_slice(n.format(s.uid).as_bytes());
    out.extend_from_slice(b",\"netns\":");
    out.extend_from_slice(n.format(s.netns).as_bytes());
    out.extend_from_slice(b",\"timer\":\"");
    out.extend_from_slice(match s.timer {
        Timer::Off => b"off".as_slice(),
        Timer::On => b"on",
        Timer::Keepalive => b"keepalive",
        Timer::TimeWait => b"time_wait",
        Timer::Persist => b"persist",
        Timer::Unknown => b"unknown",
    });
    out.extend_from_slice(b"\",\"timer_expires_ms\":");
    out.extend_from_slice(n.format(s.timer_expires_ms).as_bytes());
    out.extend_from_slice(b",\"retrans\":");
    out.extend_from_slice(n.format(s.retrans).as_bytes());
    out.extend_from_slice(b",\"tcp_info\":");
    match &s.tcp_info {
        None => out.extend_from_slice(b"null"),
        Some(t) => {
            let fields: [(&[u8], u32); 14] = [
                (b"{\"retransmits\":", u32::from(t.retransmits)),
                (b",\"probes\":", u32::from(t.probes)),
                (b",\"backoff\":", u32::from(t.backoff)),
                (b",\"rto_us\":", t.rto_us),
                (b",\"unacked\":", t.unacked),
                (b",\"lost\":", t.lost),
                (b",\"retrans\":", t.retrans),
                (b",\"last_data_sent_ms\":", t.last_data_sent_ms),
                (b",\"last_data_recv_ms\":", t.last_data_recv_ms),
                (b",\"last_ack_recv_ms\":", t.last_ack_recv_ms),
                (b",\"rtt_us\":", t.rtt_us),
                (b",\"rttvar_us\":", t.rttvar_us),
                (b",\"snd_cwnd\":", t.snd_cwnd),
                (b",\"total_retrans\":", t.total_retrans),
            ];
            for (key, v) in fields {
                out.extend_from_slice(key);
                out.extend_from_slice(n.format(v).as_bytes());
            }
            for (key, v) in [
                (b",\"bytes_acked\":".as_slice(), t.bytes_acked),
                (b",\"bytes_received\":", t.bytes_received),
            ] {
                out.extend_from_slice(key);
                match v {
                    Some(v) => out.extend_from_slice(n.format(v).as_bytes()),
                    None => out.extend_from_slice(b"null"),
                }
            }
            out.push(b'}');
        }
    }
    out.extend_from_slice(b",\"mem\":");
    match &s.mem {
        None => out.extend_from_slice(b"null"),
        Some(m) => {
            out.extend_from_slice(b"{\"rmem\":");
            out.extend_from_slice(n.format(m.rmem).as_bytes());
            out.extend_from_slice(b",\"wmem\":");
            out.extend_from_slice(n.format(m.wmem).as_bytes());
            out.extend_from_slice(b",\"fmem\":");
            out.extend_from_slice(n.format(m.fmem).as_bytes());
            out.extend_from_slice(b",\"tmem\":");
            out.extend_from_slice(n.format(m.tmem).as_bytes());
            out.push(b'}');
        }
    }
    out.extend_from_slice(b",\"owners\":[");
    for (i, o) in s.owners.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"pid\":");
        out.extend_from_slice(n.format(o.pid).as_bytes());
        out.extend_from_slice(b",\"fd\":");
        out.extend_from_slice(n.format(o.fd).as_bytes());
        if o.inherited {
            out.extend_from_slice(b",\"inherited\":true");
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"netns_name\":");
    match netns_name {
        None => out.extend_from_slice(b"null"),
        Some(name) => {
            // Writing JSON into a Vec cannot fail; a failure would only drop the name.
            if serde_json::to_writer(&mut *out, name).is_err() {
                out.extend_from_slice(b"null");
            }
        }
    }
    out.push(b'}');
}

/// `Endpoint`'s `Display` (IPv4-mapped addresses as IPv4), which is what its
/// `Serialize` prints; IPv4 without `fmt`.
fn endpoint(out: &mut Vec<u8>, ep: Endpoint) {
    let ep = ep.normalized();
    match ep.ip {
        IpAddr::V4(ip) => {
            let mut n = itoa::Buffer::new();
            for (i, o) in ip.octets().iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(n.format(*o).as_bytes());
            }
            out.push(b':');
            out.extend_from_slice(n.format(ep.port).as_bytes());
        }
        IpAddr::V6(_) => {
            use std::io::Write;
            // Writing into a Vec cannot fail.
            let _ = write!(out, "{ep}");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // literal test data
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sockleak_model::{Cookie, MemInfo, Owner, TcpInfo, TcpState};

    /// What the hand-written writer must match: the derived `Serialize` of
    /// `Socket`, flattened with `netns_name` as the document had it.
    #[derive(Serialize)]
    struct Flattened<'a> {
        #[serde(flatten)]
        socket: &'a Socket,
        netns_name: Option<&'a str>,
    }

    fn check(s: &Socket, name: Option<&str>) {
        let mut got = Vec::new();
        socket_json(&mut got, s, name);
        let want = serde_json::to_string(&Flattened {
            socket: s,
            netns_name: name,
        })
        .unwrap();
        assert_eq!(String::from_utf8(got).unwrap(), want);
    }

    fn any_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(IpAddr::from),
            any::<[u8; 16]>().prop_map(IpAddr::from),
            any::<[u8; 4]>().prop_map(|o| IpAddr::V6(std::net::Ipv4Addr::from(o).to_ipv6_mapped())),
        ]
    }

    proptest! {
        /// Every field, every variant, arbitrary numbers and names (quotes,
        /// control characters, non-ASCII): byte for byte what serde prints.
        #[test]
        fn socket_json_matches_serde(
            state in 1u8..=12, v6 in any::<bool>(), l in any_ip(), lp in any::<u16>(),
            r in any_ip(), rp in any::<u16>(), q in any::<(u32, u32, u64, u64, u32, u64)>(),
            timer in 0u8..6, te in any::<u32>(), retrans in any::<u8>(),
            info in proptest::option::of(any::<(u8, u32, u32, Option<u64>, Option<u64>)>()),
            mem in proptest::option::of(any::<(u32, u32, u32, u32)>()),
            owners in proptest::collection::vec(any::<(u32, u32, bool)>(), 0..4),
            name in proptest::option::of(".{0,12}"),
        ) {
            let Some(st) = TcpState::from_kernel(state) else { return Ok(()) };
            let mut s = Socket::new(Cookie(q.2), st, Endpoint::new(l, lp), Endpoint::new(r, rp));
            s.family = if v6 { Family::Inet6 } else { Family::Inet };
            (s.recv_q, s.send_q, s.inode, s.uid, s.netns) = (q.0, q.1, q.3, q.4, q.5);
            s.timer = Timer::from_kernel(timer);
            s.timer_expires_ms = te;
            s.retrans = retrans;
            s.tcp_info = info.map(|(b, x, y, acked, recvd)| TcpInfo {
                retransmits: b, probes: b / 2, backoff: b / 3, rto_us: x, unacked: y,
                lost: x / 2, retrans: y / 2, last_data_sent_ms: x / 3, last_data_recv_ms: y / 3,
                last_ack_recv_ms: x / 5, rtt_us: y / 5, rttvar_us: x / 7, snd_cwnd: y / 7,
                total_retrans: x / 11, bytes_acked: acked, bytes_received: recvd,
            });
            s.mem = mem.map(|(rmem, wmem, fmem, tmem)| MemInfo { rmem, wmem, fmem, tmem });
            s.owners = owners.into_iter().map(|(pid, fd, inherited)| Owner { pid, fd, inherited }).collect();
            check(&s, name.as_deref());
        }
    }

    /// The spliced document is byte for byte what serde prints for the whole
    /// document in one go (head, sockets, processes, findings in order).
    #[test]
    fn document_matches_one_serde_object() {
        #[derive(Serialize)]
        struct Whole<'a> {
            #[serde(flatten)]
            head: Document<'a>,
            sockets: Vec<Flattened<'a>>,
            processes: Vec<ProcessDoc<'a>>,
            findings: &'a [Finding],
        }
        let mut snap = Snapshot::default();
        snap.namespaces.push(sockleak_model::Namespace::new(7));
        snap.namespaces[0].name = Some("blue \"ns\"".into());
        for i in 0..3u16 {
            let mut s = Socket::new(
                Cookie(u64::from(i)),
                TcpState::Established,
                Endpoint::new("127.0.0.1".parse().unwrap(), 1000 + i),
                Endpoint::new("::1".parse().unwrap(), 80),
            );
            s.netns = if i == 1 { 7 } else { 8 };
            snap.sockets.push(s);
        }
        let mut out = Vec::new();
        write(&mut out, &snap, &[]).unwrap();
        let names = |id: u64| (id == 7).then_some("blue \"ns\"");
        let want = serde_json::to_string(&Whole {
            head: head(&snap),
            sockets: snap
                .sockets
                .iter()
                .map(|s| Flattened {
                    socket: s,
                    netns_name: names(s.netns),
                })
                .collect(),
            processes: Vec::new(),
            findings: &[],
        })
        .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), want + "\n");
        let mut empty = Vec::new();
        write(&mut empty, &Snapshot::default(), &[]).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&empty).unwrap();
        assert_eq!(v["sockets"].as_array().unwrap().len(), 0);
    }
}
