//! `watch --plain`: human lines, only for what changed since the previous
//! snapshot (a first line sums up the start). Meant for logs and for a
//! terminal without the live view: `sockleak watch --plain | tee watch.log`.

use super::style::Style;
use super::{jsonl, rfc3339};
use sockleak_model::enrich::{rate_text, Observation, ProcessView};
use sockleak_model::findings::{Finding, Severity};
use sockleak_model::TcpState;
use std::collections::HashMap;
use std::fmt::Write;

/// What earlier lines said, so a finding whose count moves every interval
/// (the process line shows that) is repeated only when its severity changes.
#[derive(Debug, Default)]
pub struct PlainState {
    said: HashMap<String, Severity>,
}

/// The states a change line mentions, in this order.
const SHOWN: [(TcpState, &str); 5] = [
    (TcpState::CloseWait, "CLOSE_WAIT"),
    (TcpState::Established, "ESTAB"),
    (TcpState::FinWait2, "FIN_WAIT2"),
    (TcpState::SynSent, "SYN_SENT"),
    (TcpState::Listen, "LISTEN"),
];

/// "18:44:32" (UTC), the time column.
fn clock(ms: u64) -> String {
    rfc3339(ms).get(11..19).unwrap_or("--:--:--").to_string()
}

fn signed(v: i64) -> String {
    if v > 0 {
        format!("+{v}")
    } else {
        v.to_string()
    }
}

fn severity(st: Style, s: Severity) -> String {
    match s {
        Severity::Critical => st.red("CRITICAL"),
        Severity::Warning => st.yellow("WARNING"),
        Severity::Info => st.cyan("INFO"),
    }
}

fn finding_line(out: &mut String, t: &str, tag: &str, f: &Finding, st: Style) {
    let mut extra = String::new();
    if let Some(r) = f.rate_per_min.filter(|r| *r != 0.0) {
        let _ = write!(extra, " [{}/min]", rate_text(r));
    }
    if let Some(e) = f.eta_s {
        let _ = write!(extra, " [eta {}]", sockleak_model::enrich::eta_text(e));
    }
    let _ = writeln!(
        out,
        "{t}  {tag} {} {}: {}{extra}",
        severity(st, f.severity),
        st.bold(f.kind.as_str()),
        f.summary
    );
}

/// What changed for one process, or `None` when nothing did.
fn process_line(p: &ProcessView) -> Option<String> {
    let d = p.delta?;
    let mut parts = Vec::new();
    for (s, name) in SHOWN {
        let dv = d.states[usize::from(s as u8) - 1];
        if dv != 0 {
            parts.push(format!("{name} {} ({})", p.states.get(s), signed(dv)));
        }
    }
    if d.fd_count != 0 {
        let mut fds = format!("fds {} ({})", p.fd_count.unwrap_or(0), signed(d.fd_count));
        if let Some(l) = p.fd_limit {
            let _ = write!(fds, " of {l}");
        }
        parts.push(fds);
    }
    if parts.is_empty() {
        return None;
    }
    let mut line = format!("{} (pid {}): {}", p.comm, p.key.pid, parts.join(", "));
    if let Some(r) = p.close_wait_rate_per_min.filter(|r| *r > 0.0) {
        let _ = write!(line, "; CLOSE_WAIT {}/min", rate_text(r));
    }
    if let Some(r) = p.fd_rate_per_min.filter(|r| *r > 0.0) {
        let _ = write!(line, "; fds {}/min", rate_text(r));
    }
    Some(line)
}

/// The lines for one observation; empty when nothing changed.
pub fn render(obs: &Observation, interval_ms: u64, st: Style, state: &mut PlainState) -> String {
    let t = clock(obs.time_ms);
    let mut out = String::new();
    if obs.seq == 1 {
        let tcp = obs
            .processes
            .iter()
            .filter(|p| p.states.total() > 0)
            .count();
        let _ = writeln!(
            out,
            "{t}  watching every {}: {} TCP sockets (CLOSE_WAIT {}, ESTAB {}, TIME_WAIT {}); \
             processes shown holding some: {tcp}",
            human_interval(interval_ms),
            obs.totals.total(),
            obs.totals.get(TcpState::CloseWait),
            obs.totals.get(TcpState::Established),
            obs.totals.get(TcpState::TimeWait),
        );
    } else {
        for p in &obs.processes {
            if let Some(l) = process_line(p) {
                let _ = writeln!(out, "{t}  {l}");
            }
        }
        for p in obs.processes.iter().filter(|p| p.delta.is_none()) {
            let _ = writeln!(
                out,
                "{t}  {} (pid {}) appeared: {} TCP sockets, {} fds",
                p.comm,
                p.key.pid,
                p.states.total(),
                p.fd_count.map_or("?".to_string(), |n| n.to_string())
            );
        }
        for (k, comm) in &obs.gone {
            let _ = writeln!(out, "{t}  {comm} (pid {}) exited", k.pid);
        }
    }
    for f in &obs.new {
        finding_line(&mut out, &t, "NEW", f, st);
        state.said.insert(jsonl::finding_id(f), f.severity);
    }
    for f in &obs.changed {
        let id = jsonl::finding_id(f);
        if state.said.get(&id) != Some(&f.severity) {
            finding_line(&mut out, &t, "CHANGED", f, st);
            state.said.insert(id, f.severity);
        }
    }
    for f in &obs.resolved {
        state.said.remove(&jsonl::finding_id(f));
        let _ = writeln!(
            out,
            "{t}  {} {}: {}",
            st.dim("RESOLVED"),
            f.kind.as_str(),
            f.summary
        );
    }
    out
}

/// "2 s", "500 ms".
pub fn human_interval(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{ms} ms")
    }
}
