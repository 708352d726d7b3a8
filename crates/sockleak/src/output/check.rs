//! `sockleak check` for people: the verdict sentence first, then the load,
//! the before/after table, every check, the groups that changed and the
//! findings with their advice.

use super::style::Style;
use crate::commands::check::CheckReport;
use sockleak_model::regression::{Outcome, Verdict};
use sockleak_model::{Snapshot, TcpState};
use std::fmt::Write;

pub fn render(r: &CheckReport, st: Style) -> String {
    let mut out = String::new();
    // The summary ends with the verdict word; colour only that.
    let word = r.verdict.as_str();
    let head = r.summary.strip_suffix(word).unwrap_or(&r.summary);
    let verdict = match r.verdict {
        Verdict::Pass => st.bold(word),
        Verdict::Fail | Verdict::Error => st.red(word),
    };
    let _ = writeln!(out, "{}{verdict}", st.bold(head));
    out.push('\n');

    let who = match (&r.target.comm, r.target.spawned) {
        (Some(c), true) => format!("{c} (pid {}, started by sockleak)", r.target.pid),
        (Some(c), false) => format!("{c} (pid {})", r.target.pid),
        (None, _) => format!("pid {}", r.target.pid),
    };
    let _ = writeln!(out, "target:  {who}");
    if !r.target.listening.is_empty() {
        let _ = writeln!(
            out,
            "         listening on {}",
            r.target.listening.join(", ")
        );
    }
    if let Some(how) = &r.target.exit {
        let _ = writeln!(
            out,
            "         {}",
            st.red(&format!("ended during the check: {how}"))
        );
    }
    let _ = writeln!(out, "load:    {}", r.load.description);
    if let Some(g) = &r.load.generator {
        let _ = writeln!(
            out,
            "         {} ok, {} failed, {} connections in {:.2} s; latency p50 {:.1} ms, \
             p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            g.ok,
            g.failed,
            g.connections,
            g.duration_s,
            g.latency.p50_ms,
            g.latency.p90_ms,
            g.latency.p99_ms,
            g.latency.max_ms
        );
        for (e, n) in g.errors.iter().take(5) {
            let _ = writeln!(out, "         {n}× {e}");
        }
    }
    if let Some(c) = &r.load.command {
        let _ = writeln!(
            out,
            "         ended after {:.2} s: {}",
            c.duration_s, c.status
        );
    }
    let settle = if r.settle.settled {
        format!("counts held still after {:.1} s", r.settle.waited_s)
    } else if r.target.exit.is_some() {
        "skipped (the target ended)".to_string()
    } else {
        format!(
            "counts still changing when --settle ({:.0} s) ran out",
            r.settle.limit_s
        )
    };
    let _ = writeln!(out, "settle:  {settle}");
    out.push('\n');

    if r.target.exit.is_none() {
        let _ = writeln!(
            out,
            "  {:<22} {:>8} {:>8} {:>8}",
            "", "BEFORE", "AFTER", "DELTA"
        );
        let b = &r.baseline;
        let f = &r.final_;
        let mut row = |name: &str, before: u64, after: u64| {
            let d = i128::from(after) - i128::from(before);
            let _ = writeln!(out, "  {name:<22} {before:>8} {after:>8} {d:>+8}");
        };
        for s in TcpState::ALL {
            if b.state(s) != 0 || f.state(s) != 0 {
                row(s.kernel_name(), b.state(s), f.state(s));
            }
        }
        row("closed-but-held", b.closed_but_held, f.closed_but_held);
        row("fds: socket", b.fds.socket.into(), f.fds.socket.into());
        row("fds: pipe", b.fds.pipe.into(), f.fds.pipe.into());
        row("fds: file", b.fds.file.into(), f.fds.file.into());
        row("fds: anon", b.fds.anon.into(), f.fds.anon.into());
        row("fds: other", b.fds.other.into(), f.fds.other.into());
        row("fds: total", b.fd_total, f.fd_total);
        out.push('\n');
    }

    let _ = writeln!(out, "checks:");
    for c in &r.checks {
        let mark = match c.outcome {
            Outcome::Pass => st.dim("pass"),
            Outcome::Fail => st.red("FAIL"),
            Outcome::Error => st.yellow("ERR "),
        };
        let _ = writeln!(out, "  {mark}  {:<18} {}", c.name, c.message);
    }
    let grew: Vec<_> = r.deltas.groups.iter().filter(|g| g.delta > 0).collect();
    if !grew.is_empty() {
        out.push('\n');
        let _ = writeln!(out, "groups that grew:");
        for g in grew.iter().take(20) {
            let role = match g.role {
                sockleak_model::Role::Server => "server, accepted on",
                sockleak_model::Role::Client => "client, to",
            };
            let _ = writeln!(
                out,
                "  {:>+6}  {:<11} {role} {}",
                g.delta,
                g.state.kernel_name(),
                g.endpoint
            );
        }
    }
    if !r.findings.is_empty() {
        out.push('\n');
        out.push_str(&super::findings::render(
            &Snapshot::default(),
            &r.findings,
            st,
        ));
    }
    for l in super::partial::lines(&r.partial, false) {
        let _ = writeln!(out, "{}", l.text);
    }
    out
}
