//! The lines that say what a scan could not see: one per gap a user can
//! close ("partial: ..."), and one quiet line ("note: ...") for everything
//! guarded by a security module or sandbox, which no capability would close.
//!
//! `scan`, `watch`, `serve`, `check` and `doctor` all print through here, so
//! a gap reads the same wherever it is shown.

use sockleak_model::{describe_processes, NoteProcess, PartialKind, PartialNote};

/// Processes named in one line; the rest are counted ("+N more").
pub const SHOWN_PROCESSES: usize = 5;

/// One line of output, without the `sockleak: ` prefix of its command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// Stays the same while the gap does: `watch` and `serve` print a line
    /// once per session by it.
    pub key: String,
    pub text: String,
}

/// The lines for `notes`, gaps first, then the guarded processes (one line
/// for all), then, when `vanished` is set, the normal churn.
pub fn lines(notes: &[PartialNote], vanished: bool) -> Vec<Line> {
    let mut out = Vec::new();
    for n in notes.iter().filter(|n| !n.is_guarded()) {
        if n.kind == PartialKind::Vanished {
            continue;
        }
        let procs = if n.processes.is_empty() {
            String::new()
        } else {
            format!(": {}", process_list(&n.processes))
        };
        let fix = n
            .fix
            .as_ref()
            .map_or(String::new(), |f| format!("; fix: {f}"));
        out.push(Line {
            key: format!("{}\u{0}{}", n.what, n.reason),
            text: format!("partial: {}{}: {}{procs}{fix}", n.what, times(n), n.reason),
        });
    }
    out.extend(guarded_line(notes));
    if vanished {
        for n in notes.iter().filter(|n| n.kind == PartialKind::Vanished) {
            out.push(Line {
                key: format!("{}\u{0}{}", n.what, n.reason),
                text: format!("note: {}{}: {}", n.what, times(n), n.reason),
            });
        }
    }
    out
}

/// Every guarded gap as one line: the processes, what of them could not be
/// read, and why no capability helps.
fn guarded_line(notes: &[PartialNote]) -> Option<Line> {
    let sockleak_model::snapshot::Guarded {
        processes: procs,
        whats,
        reason,
    } = sockleak_model::snapshot::guarded_summary(notes)?;
    let who = if procs.is_empty() {
        String::new()
    } else {
        format!("{} ", process_list(&procs))
    };
    Some(Line {
        // Not keyed by the pids: guarded processes come and go (kernel
        // workers, a sandbox's helpers), and a note per change would make
        // every sample of watch and serve noisy again. JSON and
        // sockleak_scan_partial{kind="guarded"} carry the current set.
        key: format!("guarded\u{0}{}", whats.join(",")),
        text: format!(
            "note: {who}guarded ({}): {reason}; no capability would help, their sockets \
             show no owner",
            whats.join(", ")
        ),
    })
}

/// "pid 1 (process_api), pid 7 (sshd) +12 more".
pub fn process_list(procs: &[NoteProcess]) -> String {
    describe_processes(procs, SHOWN_PROCESSES)
}

/// " (3x)" for a note about several objects.
fn times(n: &PartialNote) -> String {
    if n.count > 1 {
        format!(" ({}x)", n.count)
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sockleak_model::PartialCause;

    fn p(pid: u32, comm: &str) -> NoteProcess {
        NoteProcess {
            pid,
            comm: comm.to_string(),
        }
    }

    fn guarded(what: &str, reason: &str, pid: u32) -> PartialNote {
        PartialNote::denied(
            what,
            reason,
            PartialCause::Guarded,
            None,
            p(pid, "process_api"),
        )
    }

    #[test]
    fn guarded_gaps_of_one_process_are_one_quiet_line_naming_it() {
        let notes = vec![
            guarded(
                "namespace discovery",
                "/proc/PID/ns/net not readable, their namespaces may be missed: refused \
                 although sockleak holds CAP_SYS_PTRACE: a security module (Landlock, \
                 AppArmor, SELinux) or a sandbox guards these processes",
                1,
            ),
            guarded(
                "fd tables",
                "refused although sockleak holds CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH: a \
                 security module (Landlock, AppArmor, SELinux) or a sandbox guards these \
                 processes",
                1,
            ),
            PartialNote::new(PartialKind::Vanished, "processes", "exited", None, 3),
        ];
        let ls = lines(&notes, false);
        assert_eq!(ls.len(), 1, "{ls:?}");
        assert_eq!(
            ls[0].text,
            "note: pid 1 (process_api) guarded (namespace discovery, fd tables): refused \
             although sockleak holds CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH: a security \
             module (Landlock, AppArmor, SELinux) or a sandbox guards these processes; no \
             capability would help, their sockets show no owner"
        );
        assert!(!ls[0].text.contains("partial"));
        let with_churn = lines(&notes, true);
        assert_eq!(with_churn.len(), 2);
        assert_eq!(with_churn[1].text, "note: processes (3x): exited");
    }

    #[test]
    fn missing_capability_names_processes_capped_and_the_fix() {
        let mut n = PartialNote::denied(
            "fd tables",
            "permission denied (no CAP_SYS_PTRACE)",
            PartialCause::MissingCapability,
            Some("run as root or grant CAP_SYS_PTRACE"),
            p(1, "systemd"),
        );
        for pid in 2..=8 {
            n.processes.push(p(pid, "w"));
        }
        n.count = 8;
        let ls = lines(&[n], false);
        assert_eq!(
            ls[0].text,
            "partial: fd tables (8x): permission denied (no CAP_SYS_PTRACE): pid 1 (systemd), \
             pid 2 (w), pid 3 (w), pid 4 (w), pid 5 (w) +3 more; fix: run as root or grant \
             CAP_SYS_PTRACE"
        );
    }
}
