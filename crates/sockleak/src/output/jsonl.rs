//! `watch --jsonl` and `--record`: one `sockleak.watch/v1` JSON line per
//! snapshot. Field by field in docs/watch.md; machine-checked by
//! docs/schema/watch-v1.schema.json. The same lines are the recording format
//! that `sockleak report` reads, so every line carries the per-process counts
//! a chart needs, not only the changes.

use super::rfc3339;
use serde::Serialize;
use sockleak_model::enrich::{Observation, ProcessView, FD_KINDS};
use sockleak_model::findings::{Finding, Severity};
use sockleak_model::history::StateCounts;
use sockleak_model::{FdKinds, PartialNote, Snapshot, TcpState};
use std::collections::BTreeMap;

/// The schema id; bump only with incompatible changes (documented).
pub const WATCH_SCHEMA: &str = "sockleak.watch/v1";

#[derive(Serialize)]
struct Line<'a> {
    schema: &'static str,
    seq: u64,
    time: String,
    time_ms: u64,
    interval_ms: u64,
    /// Only in the first line of a session.
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<Host<'a>>,
    totals: Totals,
    processes: Vec<ProcOut<'a>>,
    gone: Vec<Gone<'a>>,
    findings: Findings<'a>,
    partial: &'a [PartialNote],
}

#[derive(Serialize)]
struct Host<'a> {
    hostname: &'a str,
    kernel: &'a str,
    filtered: bool,
}

#[derive(Serialize)]
struct Totals {
    /// TCP sockets seen (all of the host, before filters).
    sockets: u64,
    states: BTreeMap<&'static str, u32>,
    /// Sockets no process holds (TIME_WAIT, orphans).
    unowned: BTreeMap<&'static str, u32>,
}

#[derive(Serialize)]
struct ProcOut<'a> {
    pid: u32,
    start_time: u64,
    comm: &'a str,
    netns: u64,
    fd_count: Option<u32>,
    fd_limit: Option<u64>,
    fds: Option<FdKinds>,
    states: BTreeMap<&'static str, u32>,
    /// Absent for a process not in the previous line.
    #[serde(skip_serializing_if = "Option::is_none")]
    delta: Option<DeltaOut>,
    rate_per_min: Rates,
    eta_s: Option<u64>,
    severity: Option<Severity>,
    leaking: bool,
}

#[derive(Serialize)]
struct DeltaOut {
    fd_count: i64,
    /// Non-zero changes only.
    fds: BTreeMap<&'static str, i64>,
    states: BTreeMap<&'static str, i64>,
}

#[derive(Serialize)]
struct Rates {
    close_wait: Option<f64>,
    fds: Option<f64>,
}

#[derive(Serialize)]
struct Gone<'a> {
    pid: u32,
    start_time: u64,
    comm: &'a str,
}

#[derive(Serialize)]
struct Findings<'a> {
    /// Current findings by severity.
    active: Active,
    new: Vec<FindingOut<'a>>,
    changed: Vec<FindingOut<'a>>,
    resolved: Vec<Resolved<'a>>,
}

#[derive(Serialize, Default)]
struct Active {
    critical: u64,
    warning: u64,
    info: u64,
}

#[derive(Serialize)]
struct FindingOut<'a> {
    /// Stable identity across lines (kind, process, group).
    id: String,
    #[serde(flatten)]
    finding: &'a Finding,
}

#[derive(Serialize)]
struct Resolved<'a> {
    id: String,
    kind: &'static str,
    severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    comm: Option<&'a str>,
    /// The finding's last summary.
    summary: &'a str,
}

/// The identity of a finding in the stream: what [`Finding::key`] holds,
/// spelt out, e.g. `close_wait_leak/4242@98765/4026531840/server/127.0.0.1:9530/-`.
pub fn finding_id(f: &Finding) -> String {
    let k = f.key();
    let opt = |o: Option<String>| o.unwrap_or_else(|| "-".to_string());
    let role = match k.role {
        Some(sockleak_model::Role::Server) => "server",
        Some(sockleak_model::Role::Client) => "client",
        None => "-",
    };
    let mut id = format!(
        "{}/{}@{}/{}/{role}/{}/{}",
        k.kind.as_str(),
        opt(k.pid.map(|p| p.to_string())),
        opt(k.start_time.map(|s| s.to_string())),
        opt(k.netns.map(|n| n.to_string())),
        opt(k.local.map(|e| e.to_string())),
        opt(k.remote.map(|e| e.to_string())),
    );
    if k.orphan {
        id.push_str("/orphan");
    }
    id
}

/// State name → count, non-zero only, with kernel names.
pub fn state_map(c: &StateCounts) -> BTreeMap<&'static str, u32> {
    c.nonzero().map(|(s, n)| (s.kernel_name(), n)).collect()
}

fn fd_kind_name(i: usize) -> &'static str {
    match FD_KINDS.get(i) {
        Some(sockleak_model::FdKind::Socket) => "socket",
        Some(sockleak_model::FdKind::Pipe) => "pipe",
        Some(sockleak_model::FdKind::File) => "file",
        Some(sockleak_model::FdKind::Anon) => "anon",
        _ => "other",
    }
}

fn proc_out(p: &ProcessView) -> ProcOut<'_> {
    ProcOut {
        pid: p.key.pid,
        start_time: p.key.start_time,
        comm: &p.comm,
        netns: p.netns,
        fd_count: p.fd_count,
        fd_limit: p.fd_limit,
        fds: p.fds,
        states: state_map(&p.states),
        delta: p.delta.map(|d| DeltaOut {
            fd_count: d.fd_count,
            fds: d
                .fds
                .iter()
                .enumerate()
                .filter(|(_, v)| **v != 0)
                .map(|(i, v)| (fd_kind_name(i), *v))
                .collect(),
            states: TcpState::ALL
                .iter()
                .zip(d.states.iter())
                .filter(|(_, v)| **v != 0)
                .map(|(s, v)| (s.kernel_name(), *v))
                .collect(),
        }),
        rate_per_min: Rates {
            close_wait: p.close_wait_rate_per_min,
            fds: p.fd_rate_per_min,
        },
        eta_s: p.eta_s,
        severity: p.severity,
        leaking: p.leaking,
    }
}

fn finding_out(f: &Finding) -> FindingOut<'_> {
    FindingOut {
        id: finding_id(f),
        finding: f,
    }
}

/// One line (with its newline) for an observation of `snap`. `first` adds
/// the host block.
pub fn line(obs: &Observation, snap: &Snapshot, interval_ms: u64, first: bool) -> String {
    let mut active = Active::default();
    for f in &obs.findings {
        match f.severity {
            Severity::Critical => active.critical += 1,
            Severity::Warning => active.warning += 1,
            Severity::Info => active.info += 1,
        }
    }
    let doc = Line {
        schema: WATCH_SCHEMA,
        seq: obs.seq,
        time: rfc3339(obs.time_ms),
        time_ms: obs.time_ms,
        interval_ms,
        host: first.then_some(Host {
            hostname: &snap.host.hostname,
            kernel: &snap.host.kernel,
            filtered: snap.filtered,
        }),
        totals: Totals {
            sockets: u64::from(obs.totals.total()),
            states: state_map(&obs.totals),
            unowned: state_map(&obs.unowned),
        },
        processes: obs.processes.iter().map(proc_out).collect(),
        gone: obs
            .gone
            .iter()
            .map(|(k, c)| Gone {
                pid: k.pid,
                start_time: k.start_time,
                comm: c,
            })
            .collect(),
        findings: Findings {
            active,
            new: obs.new.iter().map(finding_out).collect(),
            changed: obs.changed.iter().map(finding_out).collect(),
            resolved: obs
                .resolved
                .iter()
                .map(|f| Resolved {
                    id: finding_id(f),
                    kind: f.kind.as_str(),
                    severity: f.severity,
                    pid: f.pid,
                    comm: f.comm.as_deref(),
                    summary: &f.summary,
                })
                .collect(),
        },
        partial: &snap.partial,
    };
    // Serialising plain data into a String cannot fail; if it ever did, an
    // empty object keeps the stream one-line-per-sample.
    let mut s = serde_json::to_string(&doc).unwrap_or_else(|_| "{}".to_string());
    s.push('\n');
    s
}
