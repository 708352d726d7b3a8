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

/// Why a [`PartialKind::Permission`] gap exists, which decides who can close it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PartialCause {
    /// sockleak lacks a capability: granting it (the note's `fix`) closes
    /// the gap.
    MissingCapability,
    /// Refused although sockleak holds every capability the read needs: a
    /// security module (Landlock, AppArmor, SELinux), a sandbox or a
    /// user-namespace boundary guards the object. No capability of
    /// sockleak's would help, so it is not an alarm.
    Guarded,
}

/// A process a note is about, as `ps` names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NoteProcess {
    pub pid: u32,
    pub comm: String,
}

/// The guarded gaps of a scan summed up once, as the quiet note and
/// doctor's line both tell them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guarded<'a> {
    /// Every guarded process once, in pid order.
    pub processes: Vec<NoteProcess>,
    /// What of them could not be read ("fd tables", ...).
    pub whats: Vec<&'a str>,
    /// Why: the fd-table note's reason (it names the most capabilities
    /// held), else the first.
    pub reason: &'a str,
}

/// [`Guarded`] of `notes`; `None` when nothing was guarded.
pub fn guarded_summary(notes: &[PartialNote]) -> Option<Guarded<'_>> {
    let guarded: Vec<&PartialNote> = notes.iter().filter(|n| n.is_guarded()).collect();
    let reason = guarded
        .iter()
        .find(|n| n.what == "fd tables")
        .or_else(|| guarded.first())
        .map(|n| n.reason.as_str())?;
    let mut processes: Vec<NoteProcess> = guarded
        .iter()
        .flat_map(|n| n.processes.iter().cloned())
        .collect();
    processes.sort_unstable_by_key(|p| p.pid);
    processes.dedup_by_key(|p| p.pid);
    Some(Guarded {
        processes,
        whats: guarded.iter().map(|n| n.what.as_str()).collect(),
        reason,
    })
}

/// "pid 1 (process_api), pid 7 (sshd) +12 more": the first `shown`
/// processes, the rest counted, as every surface names a note's processes.
pub fn describe_processes(procs: &[NoteProcess], shown: usize) -> String {
    let mut s = procs
        .iter()
        .take(shown)
        .map(|p| {
            if p.comm.is_empty() {
                format!("pid {}", p.pid)
            } else {
                format!("pid {} ({})", p.pid, p.comm)
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    if procs.len() > shown {
        s.push_str(&format!(" +{} more", procs.len() - shown));
    }
    s
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
    /// For permission gaps: whether a capability would close it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<PartialCause>,
    /// The processes the gap is about, by pid, when it is about processes
    /// (every one of them: `count` may also count objects of other sorts).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<NoteProcess>,
}

impl PartialNote {
    /// A note about `count` objects, about no process in particular.
    pub fn new(
        kind: PartialKind,
        what: &str,
        reason: &str,
        fix: Option<&str>,
        count: u32,
    ) -> PartialNote {
        PartialNote {
            kind,
            what: what.to_string(),
            count,
            reason: reason.to_string(),
            fix: fix.map(str::to_string),
            cause: None,
            processes: Vec::new(),
        }
    }

    /// A permission gap about one process, with its cause.
    pub fn denied(
        what: &str,
        reason: &str,
        cause: PartialCause,
        fix: Option<&str>,
        process: NoteProcess,
    ) -> PartialNote {
        PartialNote {
            cause: Some(cause),
            processes: vec![process],
            ..PartialNote::new(PartialKind::Permission, what, reason, fix, 1)
        }
    }

    /// A permission gap no capability of sockleak's would close.
    pub fn is_guarded(&self) -> bool {
        self.kind == PartialKind::Permission && self.cause == Some(PartialCause::Guarded)
    }

    /// Notes that are one line of output and one count: same kind, object,
    /// reason and cause.
    fn same_gap(&self, other: &PartialNote) -> bool {
        self.kind == other.kind
            && self.what == other.what
            && self.reason == other.reason
            && self.cause == other.cause
    }
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
    merge_notes(notes, vec![PartialNote::new(kind, what, reason, fix, 1)]);
}

/// Merges `more` into `notes`, adding counts (and the processes, kept in pid
/// order without repeats) of notes about the same gap.
pub fn merge_notes(notes: &mut Vec<PartialNote>, more: Vec<PartialNote>) {
    for m in more {
        if let Some(n) = notes.iter_mut().find(|n| n.same_gap(&m)) {
            n.count += m.count;
            // A walk worker notes its processes in rising pid order: the
            // common case appends without sorting.
            let in_order = match (n.processes.last(), m.processes.first()) {
                (Some(last), Some(first)) => last.pid < first.pid,
                _ => true,
            };
            n.processes.extend(m.processes);
            if !in_order {
                n.processes.sort_unstable_by_key(|p| p.pid);
                n.processes.dedup_by_key(|p| p.pid);
            }
        } else {
            notes.push(m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc_(pid: u32, comm: &str) -> NoteProcess {
        NoteProcess {
            pid,
            comm: comm.to_string(),
        }
    }

    #[test]
    fn denials_of_one_cause_merge_and_keep_their_processes_in_pid_order() {
        let mut notes = Vec::new();
        let guarded = |pid, comm| {
            PartialNote::denied(
                "fd tables",
                "permission denied",
                PartialCause::Guarded,
                None,
                proc_(pid, comm),
            )
        };
        // Two workers' outputs, interleaved pids, one process noted twice.
        merge_notes(&mut notes, vec![guarded(7, "b"), guarded(1, "process_api")]);
        merge_notes(&mut notes, vec![guarded(3, "a"), guarded(7, "b")]);
        // The same object refused for a missing capability is another gap.
        merge_notes(
            &mut notes,
            vec![PartialNote::denied(
                "fd tables",
                "permission denied",
                PartialCause::MissingCapability,
                Some("grant CAP_SYS_PTRACE"),
                proc_(9, "c"),
            )],
        );
        assert_eq!(notes.len(), 2, "{notes:?}");
        let g = &notes[0];
        assert!(g.is_guarded());
        let pids: Vec<u32> = g.processes.iter().map(|p| p.pid).collect();
        assert_eq!(pids, vec![1, 3, 7]);
        assert_eq!(g.count, 4, "every refusal counts, as before");
        assert!(!notes[1].is_guarded());
        assert_eq!(notes[1].cause, Some(PartialCause::MissingCapability));
    }

    #[test]
    fn notes_without_processes_serialize_as_in_v1() {
        let n = PartialNote::new(PartialKind::Vanished, "processes", "exited", None, 2);
        let v = serde_json::to_value(&n).expect("serialize");
        assert_eq!(
            v,
            serde_json::json!({"kind": "vanished", "what": "processes", "count": 2, "reason": "exited"})
        );
        let d = PartialNote::denied(
            "fd tables",
            "permission denied",
            PartialCause::Guarded,
            None,
            proc_(1, "process_api"),
        );
        let v = serde_json::to_value(&d).expect("serialize");
        assert_eq!(v["cause"], "guarded");
        assert_eq!(
            v["processes"],
            serde_json::json!([{"pid": 1, "comm": "process_api"}])
        );
    }
}
