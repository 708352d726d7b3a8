//! Exit codes and the one place that turns errors into user messages.
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success; no finding at or above `--fail-on` |
//! | 1 | success, and at least one finding at or above `--fail-on` |
//! | 2 | error: bad arguments, unsupported OS, nothing could be collected |
//!
//! Partial results (a process that vanished, an fd table sockleak may not
//! read) do not change the exit code: they are labelled on stderr and in the
//! JSON `partial` list. Writing into a closed pipe (`sockleak scan | head`)
//! exits quietly with 0.

use std::io::{self, Write};

/// Success, nothing at or above `--fail-on`.
pub const OK: u8 = 0;
/// Findings at or above `--fail-on`.
pub const FINDINGS: u8 = 1;
/// Error.
pub const ERROR: u8 = 2;

/// Writes `text` to stdout; a closed pipe is not an error (the reader has
/// what it wanted), anything else is.
pub fn write_stdout(text: &[u8]) -> io::Result<()> {
    let stdout = io::stdout();
    let mut lock = stdout.lock();
    match lock.write_all(text).and_then(|_| lock.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Prints an error with its causes, `sockleak: open ...: permission denied`.
pub fn report_error(err: &anyhow::Error) {
    let mut msg = format!("sockleak: {err}");
    for cause in err.chain().skip(1) {
        msg.push_str(&format!(": {cause}"));
    }
    let _ = writeln!(io::stderr(), "{msg}");
}
