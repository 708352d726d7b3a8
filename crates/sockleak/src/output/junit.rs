//! `sockleak check --junit FILE`: JUnit XML as Jenkins, GitLab, GitHub
//! Actions reporters and most CI systems read it: one `<testsuite>` per run,
//! one `<testcase>` per check, `<failure message=... type=...>` for a failed
//! check and `<error>` for one that could not be evaluated. The element and
//! attribute set follows the widely used JUnit XSD (Jenkins' junit-10.xsd);
//! the test suite checks the output against that structure.
//!
//! Written by hand: the document is small and flat, and escaping is the only
//! subtle part ([`escape`]).

use crate::commands::check::CheckReport;
use sockleak_model::regression::Outcome;
use std::fmt::Write;

/// The XML document.
pub fn render(r: &CheckReport) -> String {
    let tests = r.checks.len();
    let failures = r
        .checks
        .iter()
        .filter(|c| c.outcome == Outcome::Fail)
        .count();
    let errors = r
        .checks
        .iter()
        .filter(|c| c.outcome == Outcome::Error)
        .count();
    let suite = match &r.target.comm {
        Some(c) => format!("sockleak check: {c} (pid {})", r.target.pid),
        None => format!("sockleak check: pid {}", r.target.pid),
    };
    let time = format!("{:.3}", r.duration_s);
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"sockleak check\" tests=\"{tests}\" failures=\"{failures}\" \
         errors=\"{errors}\" time=\"{time}\">"
    );
    // timestamp is xs:dateTime without a zone in the XSD.
    let timestamp = r.started_at.trim_end_matches('Z');
    let timestamp = timestamp.split('.').next().unwrap_or(timestamp);
    let _ = writeln!(
        x,
        "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" \
         skipped=\"0\" time=\"{time}\" timestamp=\"{}\">",
        escape(&suite),
        escape(timestamp)
    );
    x.push_str("    <properties>\n");
    for (name, value) in [
        ("verdict", r.verdict.as_str().to_string()),
        ("load", r.load.description.clone()),
        (
            "target.command",
            r.target.cmdline.clone().unwrap_or_default(),
        ),
    ] {
        let _ = writeln!(
            x,
            "      <property name=\"{}\" value=\"{}\"/>",
            escape(name),
            escape(&value)
        );
    }
    x.push_str("    </properties>\n");
    for c in &r.checks {
        let _ = write!(
            x,
            "    <testcase name=\"{}\" classname=\"sockleak.check\" time=\"0\"",
            escape(&c.name)
        );
        match c.outcome {
            Outcome::Pass => {
                let _ = writeln!(
                    x,
                    ">\n      <system-out>{}</system-out>\n    </testcase>",
                    escape(&c.message)
                );
            }
            Outcome::Fail | Outcome::Error => {
                let tag = if c.outcome == Outcome::Fail {
                    "failure"
                } else {
                    "error"
                };
                let _ = writeln!(
                    x,
                    ">\n      <{tag} message=\"{}\" type=\"{}\">{}</{tag}>\n    </testcase>",
                    escape(&c.message),
                    escape(&c.name),
                    escape(&details(r, &c.name))
                );
            }
        }
    }
    let _ = writeln!(x, "    <system-out>{}</system-out>", escape(&r.summary));
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

/// The failure body: the summary and the findings' advice, which is what a
/// developer reading the CI page needs next.
fn details(r: &CheckReport, _check: &str) -> String {
    let mut s = r.summary.clone();
    for f in &r.findings {
        let _ = write!(s, "\n\n{}: {}\n{}", f.kind, f.summary, f.advice);
    }
    s
}

/// Escapes text for XML content and attribute values. Characters XML 1.0
/// cannot carry at all (most C0 controls) become U+FFFD, so a stray byte in
/// a command line cannot make the document unreadable.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Kept in attributes as references, or a parser normalises them
            // to spaces.
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_markup_quotes_and_controls() {
        assert_eq!(
            escape(r#"a<b>&"c"'d'"#),
            "a&lt;b&gt;&amp;&quot;c&quot;&apos;d&apos;"
        );
        assert_eq!(escape("x\ny\u{1}"), "x&#10;y\u{FFFD}");
        assert_eq!(escape("plain"), "plain");
    }
}
