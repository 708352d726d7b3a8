//! `--json`: the `sockleak.scan/v1` document, streamed (a host with a million
//! sockets must not be held twice in memory). Field by field in
//! docs/json-schema.md; machine-checked by docs/schema/scan-v1.schema.json.

use super::rfc3339;
use serde::ser::{SerializeSeq, Serializer};
use serde::Serialize;
use sockleak_model::findings::Finding;
use sockleak_model::{Namespace, PartialNote, Process, Snapshot, Socket};
use std::cell::RefCell;

/// The schema id; bump only with incompatible changes (documented).
pub const SCAN_SCHEMA: &str = "sockleak.scan/v1";

#[derive(Serialize)]
struct Document<'a> {
    schema: &'static str,
    taken_at: String,
    host: Host<'a>,
    filtered: bool,
    partial: &'a [PartialNote],
    sockets: Seq<'a, Socket, SocketDoc<'a>>,
    processes: Seq<'a, Process, ProcessDoc<'a>>,
    findings: &'a [Finding],
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
struct SocketDoc<'a> {
    #[serde(flatten)]
    socket: &'a Socket,
    netns_name: Option<&'a str>,
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
pub fn write(
    w: &mut impl std::io::Write,
    snap: &Snapshot,
    findings: &[Finding],
) -> serde_json::Result<()> {
    let names: std::collections::HashMap<u64, Option<&str>> = snap
        .namespaces
        .iter()
        .map(|n| (n.id, n.name.as_deref()))
        .collect();
    let ticks = snap.host.clock_ticks.max(1);
    let boot = snap.host.boot_time_ms;
    let doc = Document {
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
        sockets: Seq {
            items: &snap.sockets,
            view: RefCell::new(Box::new(move |s: &Socket| SocketDoc {
                socket: s,
                netns_name: names.get(&s.netns).copied().flatten(),
            })),
        },
        processes: Seq {
            items: &snap.processes,
            view: RefCell::new(Box::new(move |p: &Process| ProcessDoc {
                process: p,
                started_at: (boot > 0)
                    .then(|| rfc3339(boot + p.start_time.saturating_mul(1000) / ticks)),
            })),
        },
        findings,
    };
    serde_json::to_writer(&mut *w, &doc)?;
    w.write_all(b"\n").map_err(serde_json::Error::io)
}
