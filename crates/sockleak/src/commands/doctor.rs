//! `sockleak doctor`: what this run can see, what it cannot, and the command
//! or capability that would fix each gap.

use crate::exit;
use crate::output::style::Style;
use anyhow::Result;
use sockleak_collect::privileges::Check;
use std::fmt::Write;
use std::path::Path;

pub fn run(st: Style) -> Result<u8> {
    let checks = sockleak_collect::privileges::checks(Path::new("/proc"));
    exit::write_stdout(render(&checks, st).as_bytes())?;
    Ok(exit::OK)
}

/// The check list and its verdict. A guarded line is a note, not a gap:
/// nothing sockleak could be granted would change it.
fn render(checks: &[Check], st: Style) -> String {
    let mut out = String::new();
    let mut gaps = 0;
    let mut guarded = false;
    for c in checks {
        let mark = if c.ok {
            st.cyan("ok  ")
        } else if c.guarded {
            guarded = true;
            st.cyan("note")
        } else {
            gaps += 1;
            st.yellow("MISS")
        };
        let _ = writeln!(out, "{mark} {:<34} {}", c.name, c.detail);
        if let (false, Some(fix)) = (c.ok, &c.fix) {
            let _ = writeln!(out, "     fix: {fix}");
        }
    }
    let verdict = match (gaps, guarded) {
        (0, false) => {
            "sockleak can see every socket, owner and namespace on this host.".to_string()
        }
        (0, true) => "sockleak can see every socket, owner and namespace on this host except \
                      the guarded processes above: a security module or sandbox refuses them, \
                      and no capability would change that."
            .to_string(),
        (n, false) => format!("{n} gap(s): scans will be partial and say so."),
        (n, true) => format!(
            "{n} gap(s): scans will be partial and say so; the guarded processes stay \
             unreadable whatever sockleak is granted."
        ),
    };
    let _ = writeln!(out, "\n{verdict}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(ok: bool, guarded: bool) -> Check {
        Check {
            name: "x",
            ok,
            detail: "d".to_string(),
            fix: (!ok && !guarded).then(|| "grant CAP_SYS_PTRACE".to_string()),
            guarded,
        }
    }

    #[test]
    fn a_guarded_process_is_a_note_not_a_gap_and_not_an_all_clear() {
        let text = render(
            &[check(true, false), check(false, true)],
            Style { enabled: false },
        );
        assert!(text.contains("note x"), "{text}");
        assert!(!text.contains("MISS"), "{text}");
        assert!(!text.contains("0 gap"), "{text}");
        assert!(
            text.contains("except the guarded processes above"),
            "{text}"
        );
        let text = render(
            &[check(false, false), check(false, true)],
            Style { enabled: false },
        );
        assert!(text.contains("1 gap(s)"), "{text}");
        assert!(text.contains("MISS x"), "{text}");
        let text = render(&[check(true, false)], Style { enabled: false });
        assert!(text.ends_with("on this host.\n"), "{text}");
    }
}
