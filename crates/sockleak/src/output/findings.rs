//! Findings for people: most severe first, each a short paragraph in plain
//! words with the advice and the `sockleak explain` topic.

use super::style::Style;
use sockleak_model::age::human_duration;
use sockleak_model::findings::{Finding, Severity, Unjudged};
use sockleak_model::Snapshot;
use std::fmt::Write;

/// Width of the wrapped paragraphs (the tables fit in 100 columns too).
const WIDTH: usize = 96;

/// Renders the findings (already sorted by the engine); empty when none.
pub fn render(_snap: &Snapshot, findings: &[Finding], st: Style) -> String {
    let mut out = String::new();
    if findings.is_empty() {
        return out;
    }
    let mut advice_seen: Vec<&str> = Vec::new();
    for f in findings {
        let sev = match f.severity {
            Severity::Critical => st.red("CRITICAL"),
            Severity::Warning => st.yellow("WARNING"),
            Severity::Info => st.cyan("INFO"),
        };
        let _ = writeln!(out, "{sev} {}", st.bold(f.kind.as_str()));
        wrap_into(&mut out, &f.summary, "  ");
        // On a host with many leaking groups the same advice would repeat
        // page after page: say it once.
        if advice_seen.contains(&f.advice.as_str()) {
            let _ = writeln!(
                out,
                "  Same cause and fix as the {} above.",
                f.kind.as_str()
            );
        } else if !f.advice.is_empty() {
            wrap_into(&mut out, &f.advice, "  ");
            advice_seen.push(&f.advice);
        }
        let _ = writeln!(
            out,
            "  {}",
            st.dim(&format!("More: sockleak explain {}", f.explain))
        );
        out.push('\n');
    }
    let n = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    let _ = writeln!(
        out,
        "{} finding(s): {} critical, {} warning, {} info\n",
        findings.len(),
        n(Severity::Critical),
        n(Severity::Warning),
        n(Severity::Info)
    );
    out
}

/// One line per process whose CLOSE_WAIT sockets are all younger than
/// `--min-age`: no finding judged them, and silence would read as healthy.
pub fn render_unjudged(unjudged: &[Unjudged], st: Style) -> String {
    let mut out = String::new();
    for u in unjudged {
        let who = match (&u.comm, u.pid) {
            (Some(c), Some(p)) => format!("{c} (pid {p})"),
            (None, Some(p)) => format!("pid {p}"),
            _ => "an unidentified process".to_string(),
        };
        let (n, verb) = if u.count == 1 {
            ("socket", "is")
        } else {
            ("sockets", "are")
        };
        let line = format!(
            "{} CLOSE_WAIT {n} of {who} {verb} younger than {}: not judged yet; `sockleak watch` \
             tells a leak from a burst.",
            u.count,
            human_duration(u.min_age_s)
        );
        let mut text = String::new();
        wrap_into(&mut text, &line, "");
        out.push_str(&st.dim(text.trim_end()));
        out.push('\n');
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// Word-wraps `text` at [`WIDTH`] columns with `indent`.
fn wrap_into(out: &mut String, text: &str, indent: &str) {
    let mut line = String::from(indent);
    for word in text.split_whitespace() {
        if line.len() > indent.len() && line.chars().count() + 1 + word.chars().count() > WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = String::from(indent);
        }
        if line.len() > indent.len() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if line.len() > indent.len() {
        out.push_str(&line);
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_advice_is_printed_once() {
        use sockleak_model::findings::{FindingKind, Severity};
        let mut a = Finding::new(FindingKind::ClosedButHeld, Severity::Warning);
        a.summary = "first".into();
        a.advice = "close the socket on every error path".into();
        let mut b = a.clone();
        b.summary = "second".into();
        let text = render(&Snapshot::default(), &[a, b], Style { enabled: false });
        assert_eq!(
            text.matches("close the socket on every error path").count(),
            1,
            "{text}"
        );
        assert!(
            text.contains("Same cause and fix as the closed_but_held above."),
            "{text}"
        );
        assert!(text.contains("first") && text.contains("second"));
    }

    #[test]
    fn wraps_within_width() {
        let mut out = String::new();
        let text = "word ".repeat(100);
        wrap_into(&mut out, &text, "  ");
        assert!(out.lines().all(|l| l.chars().count() <= WIDTH));
        assert_eq!(out.split_whitespace().count(), 100);
    }
}
