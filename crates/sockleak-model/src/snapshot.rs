//! Everything one scan saw, and what it could not see.

use crate::host::{HostInfo, Namespace, NetnsId};
use crate::process::Process;
use crate::socket::{Endpoint, Socket};
use serde::Serialize;

/// Why part of the picture is missing. Partial results are always labelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PartialKind {
    /// EACCES/EPERM: a capability would fix it.
    Permission,
    /// The process, fd or namespace went away during the scan (normal churn).
    Vanished,
    /// The kernel sent something sockleak could not decode.
    Malformed,
    /// The kernel lacks a feature (e.g. sock_diag); a fallback was used or
    /// nothing could be read.
    Unsupported,
    /// Any other I/O error.
    Error,
}

/// One labelled gap, aggregated: "fd tables of 12 processes: permission
/// denied (fix: CAP_SYS_PTRACE)".
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PartialNote {
    pub kind: PartialKind,
    /// What could not be read: "fd tables", "network namespace 4026532281", ...
    pub what: String,
    /// How many objects of that sort were affected.
    pub count: u32,
    pub reason: String,
    /// The capability or command that would close this gap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// One scan of the host.
#[derive(Clone, Debug, PartialEq, Serialize, Default)]
pub struct Snapshot {
    /// Unix time in milliseconds when collection started.
    pub taken_at_ms: u64,
    pub host: HostInfo,
    pub namespaces: Vec<Namespace>,
    pub sockets: Vec<Socket>,
    pub processes: Vec<Process>,
    /// Listening endpoints per namespace, always collected (also under a state
    /// filter) so accepted connections can be told from outgoing ones.
    pub listeners: Vec<(NetnsId, Endpoint)>,
    /// True when a state or other filter restricted what was collected:
    /// totals then cover only what matched.
    pub filtered: bool,
    pub partial: Vec<PartialNote>,
}

impl Snapshot {
    pub fn process(&self, pid: u32) -> Option<&Process> {
        self.processes.iter().find(|p| p.pid == pid)
    }

    pub fn namespace(&self, id: NetnsId) -> Option<&Namespace> {
        self.namespaces.iter().find(|n| n.id == id)
    }

    /// Adds a partial note, merging with an existing note of the same kind,
    /// object and reason.
    pub fn note(&mut self, kind: PartialKind, what: &str, reason: &str, fix: Option<&str>) {
        add_note(&mut self.partial, kind, what, reason, fix);
    }

    pub fn is_partial(&self) -> bool {
        self.partial.iter().any(|n| n.kind != PartialKind::Vanished)
    }
}

/// Adds a partial note to `notes`, merging it (count + 1) with an existing note
/// of the same kind, object and reason, so a thousand vanished fds are one line.
pub fn add_note(
    notes: &mut Vec<PartialNote>,
    kind: PartialKind,
    what: &str,
    reason: &str,
    fix: Option<&str>,
) {
    if let Some(n) = notes
        .iter_mut()
        .find(|n| n.kind == kind && n.what == what && n.reason == reason)
    {
        n.count += 1;
        return;
    }
    notes.push(PartialNote {
        kind,
        what: what.to_string(),
        count: 1,
        reason: reason.to_string(),
        fix: fix.map(str::to_string),
    });
}

/// Merges `more` into `notes`, adding counts of equal notes.
pub fn merge_notes(notes: &mut Vec<PartialNote>, more: Vec<PartialNote>) {
    for m in more {
        if let Some(n) = notes
            .iter_mut()
            .find(|n| n.kind == m.kind && n.what == m.what && n.reason == m.reason)
        {
            n.count += m.count;
        } else {
            notes.push(m);
        }
    }
}
