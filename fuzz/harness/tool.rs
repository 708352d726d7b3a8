//! The bodies of the fuzz targets for the sockleak tool's parsers of files
//! users hand it: a `watch --record` recording (read, summed up and charted
//! by `report`), the `--web-config` YAML, and command lines redacted for
//! `--label-cmdline`.
//!
//! Shared by the fuzz targets (fuzz_targets/*.rs) and the corpus replay test
//! (crates/sockleak/tests/it/fuzz_corpus.rs). Each returns normally for any
//! input: a panic, or a failed bound below, is a finding.

use sockleak::commands::report;
use sockleak::exporter::{redact, webconfig::WebConfig};
use sockleak::output::style::Style;
use sockleak::output::svg;
use std::path::Path;

/// A recording: read, its report text and its chart. Bounds: the text and
/// the SVG grow at most linearly with the input (capped panels, lines and
/// markers, whatever the values and times say).
pub fn report(data: &[u8]) {
    let name = Path::new("fuzz.jsonl");
    let Ok(rec) = report::read_recording(data, name) else {
        return;
    };
    let text = report::text(
        &rec,
        name,
        Some(Path::new("fuzz.svg")),
        6,
        Style { enabled: false },
    );
    let bound = 64 * 1024 + 32 * data.len();
    assert!(text.len() <= bound, "text {} > {bound}", text.len());
    let doc = svg::render(&report::chart(&rec, name, 6));
    let bound = 2 * 1024 * 1024 + 32 * data.len();
    assert!(doc.len() <= bound, "svg {} > {bound}", doc.len());
}

/// A `--web-config` file. Names of certificate files resolve against a
/// folder that does not exist; inputs that name a device, a FIFO or a
/// kernel file (under /dev, /proc, /sys, /run, /tmp) or use YAML escapes
/// (a backslash, which could spell such a path) are skipped: `cert_file:
/// /dev/stdin` is the user's own file to name, and reading it would block
/// the fuzzer, not find a bug.
pub fn web_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let risky = ["\\", "/dev", "/proc", "/sys", "/run", "/tmp"];
    if risky.iter().any(|r| text.contains(r)) {
        return;
    }
    let _ = WebConfig::parse(text, Path::new("/nonexistent-sockleak-fuzz"));
}

/// A /proc/PID/cmdline (NUL-separated arguments; the first byte is the
/// label's length limit) as `--label-cmdline` shows it. Bound: the label is
/// never longer than asked.
pub fn redact(data: &[u8]) {
    let (max, rest) = match data.split_first() {
        Some((m, r)) => (usize::from(*m), r),
        None => (0, data),
    };
    let line = sockleak_collect::procfs::cmdline_to_string(rest);
    let out = redact::redact_cmdline(&line, max);
    assert!(
        out.chars().count() <= max.max(1),
        "{} chars > {max}",
        out.chars().count()
    );
}
