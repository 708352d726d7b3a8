//! `sockleak report FILE`: sums up a recording made with
//! `sockleak watch --record FILE` (or saved `--jsonl` output) for an incident
//! report: the time span, every finding seen with its peak, rate and
//! forecast, the processes whose counts changed most, and an SVG chart of
//! counts over time per process and state, with a marker where each finding
//! started and ended.

use crate::exit;
use crate::output::jsonl::WATCH_SCHEMA;
use crate::output::plain::human_interval;
use crate::output::rfc3339;
use crate::output::style::Style;
use crate::output::svg::{self, Chart, Grid, Marker, Panel, Series};
use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::Value;
use sockleak_model::enrich::{eta_text, rate_text, span_text};
use sockleak_model::findings::Severity;
use sockleak_model::trend;
use sockleak_model::TcpState;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read as _};
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A recording: `sockleak watch --record FILE`, or saved `--jsonl`
    /// output (schema sockleak.watch/v1).
    pub file: PathBuf,
    /// Where to write the SVG chart (default: FILE with the extension .svg).
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Do not write a chart.
    #[arg(long, conflicts_with = "svg")]
    pub no_chart: bool,
    /// How many processes get a panel in the chart (those that changed most).
    #[arg(long, value_name = "N", default_value_t = 6)]
    pub top: usize,
}

/// One process over the recording.
#[derive(Debug, Default)]
struct ProcRec {
    comm: String,
    fd_limit: Option<u64>,
    /// Sample times at which the process was in the recording.
    times: Vec<u64>,
    /// "CLOSE_WAIT", ..., "fds" → one value per entry of `times`.
    series: BTreeMap<String, Vec<f64>>,
    worst: Option<Severity>,
}

impl ProcRec {
    fn push(&mut self, t: u64, values: BTreeMap<String, f64>) {
        let n = self.times.len();
        for (k, v) in &values {
            // A state seen for the first time was 0 before.
            self.series
                .entry(k.clone())
                .or_insert_with(|| vec![0.0; n])
                .push(*v);
        }
        for (k, s) in self.series.iter_mut() {
            if !values.contains_key(k) {
                s.push(0.0);
            }
        }
        self.times.push(t);
    }

    fn points(&self, key: &str) -> Vec<(u64, f64)> {
        match self.series.get(key) {
            Some(v) => self.times.iter().copied().zip(v.iter().copied()).collect(),
            None => Vec::new(),
        }
    }

    /// peak − minimum, summed over CLOSE_WAIT and fds: how much it moved.
    fn movement(&self) -> f64 {
        ["CLOSE_WAIT", "fds"]
            .iter()
            .filter_map(|k| self.series.get(*k))
            .map(|v| {
                let max = v.iter().copied().fold(f64::MIN, f64::max);
                let min = v.iter().copied().fold(f64::MAX, f64::min);
                if v.is_empty() {
                    0.0
                } else {
                    max - min
                }
            })
            .sum()
    }
}

/// One finding over the recording.
#[derive(Debug)]
struct FindingRec {
    kind: String,
    severity: Severity,
    pid: Option<u64>,
    comm: Option<String>,
    first_ms: u64,
    last_ms: u64,
    /// Text and count as of the finding's last report (new or changed).
    summary: String,
    advice: String,
    last_count: u64,
    peak: u64,
    max_rate: Option<f64>,
    min_eta: Option<u64>,
    active: bool,
    /// When it was present, for the chart's markers: (start, end); the end
    /// is the first sample without it, `None` while it lasted to the end.
    spans: Vec<(u64, Option<u64>)>,
}

impl FindingRec {
    /// Opens a span at `t` unless one is open.
    fn present(&mut self, t: u64) {
        if self.spans.last().is_none_or(|s| s.1.is_some()) {
            self.spans.push((t, None));
        }
    }

    fn gone(&mut self, t: u64) {
        if let Some(s) = self.spans.last_mut().filter(|s| s.1.is_none()) {
            s.1 = Some(t);
        }
    }
}

/// What a recording holds, read by [`read_recording`].
#[derive(Debug, Default)]
pub struct Recording {
    hostname: Option<String>,
    interval_ms: u64,
    times: Vec<u64>,
    procs: BTreeMap<(u64, u64), ProcRec>,
    host: ProcRec,
    /// The recording was made with a filter (--pid, --port, ...): the host
    /// panel then sums the processes recorded, not the whole host.
    filtered: bool,
    /// The TCP states of the recorded processes, summed per sample.
    shown: ProcRec,
    findings: BTreeMap<String, FindingRec>,
    bad_lines: usize,
    /// Of `bad_lines`: not UTF-8, longer than [`MAX_LINE_BYTES`], earlier
    /// than the line before.
    not_utf8: usize,
    too_long: usize,
    out_of_order: usize,
    /// Counts that were no count (negative, above 2^53, not a number) and
    /// were left out.
    bad_values: usize,
    /// Where the reading stopped before the end of the file, and why.
    stopped: Option<String>,
}

/// The longest line read whole: a real line (every process's states) is a
/// few KiB to a few MiB; a longer one is skipped, so a file without a
/// newline (`report /dev/zero`) cannot take the memory.
pub const MAX_LINE_BYTES: usize = 16 << 20;
/// How much of one overlong line is skipped in search of its end before the
/// reading stops: an endless line (a device, a pipe) ends the report.
pub const MAX_SKIP_BYTES: u64 = 256 << 20;
/// The largest count a recording can hold (2^53, where f64 stops being
/// exact): more is no socket or fd count, and would overflow the sums.
const MAX_COUNT: f64 = 9_007_199_254_740_992.0;

fn severity_of(v: &Value) -> Option<Severity> {
    v.as_str().and_then(Severity::parse)
}

/// A count as the recording holds it: `None` (and `bad` counted) for a
/// negative value or one above [`MAX_COUNT`].
fn count_of(v: &Value, bad: &mut usize) -> Option<f64> {
    let n = v.as_f64()?;
    if (0.0..=MAX_COUNT).contains(&n) {
        Some(n)
    } else {
        *bad += 1;
        None
    }
}

/// The per-state counts of `v`: TCP state names only (what watch writes),
/// so a made-up file cannot grow one series per key.
fn counts(v: &Value, bad: &mut usize) -> BTreeMap<String, f64> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| TcpState::ALL.iter().any(|s| s.kernel_name() == k.as_str()))
                .filter_map(|(k, v)| Some((k.clone(), count_of(v, bad)?)))
                .collect()
        })
        .unwrap_or_default()
}

impl Recording {
    fn add_line(&mut self, doc: &Value) -> bool {
        if doc["schema"] != WATCH_SCHEMA {
            return false;
        }
        let Some(t) = doc["time_ms"].as_u64() else {
            return false;
        };
        // Series are in time order; a line from before the last one (two
        // recordings pasted together, a clock step) is left out, not drawn
        // as a line back in time.
        if self.times.last().is_some_and(|last| t < *last) {
            self.out_of_order += 1;
            return false;
        }
        if self.hostname.is_none() {
            self.hostname = doc["host"]["hostname"].as_str().map(str::to_string);
        }
        self.filtered |= doc["host"]["filtered"].as_bool().unwrap_or(false);
        if let Some(i) = doc["interval_ms"].as_u64() {
            self.interval_ms = i;
        }
        self.times.push(t);
        let bad = &mut self.bad_values;
        self.host.push(t, counts(&doc["totals"]["states"], bad));
        let mut shown: BTreeMap<String, f64> = BTreeMap::new();
        for p in doc["processes"].as_array().into_iter().flatten() {
            for (k, v) in counts(&p["states"], bad) {
                *shown.entry(k).or_insert(0.0) += v;
            }
            let (Some(pid), Some(start)) = (p["pid"].as_u64(), p["start_time"].as_u64()) else {
                continue;
            };
            let rec = self.procs.entry((pid, start)).or_default();
            if let Some(c) = p["comm"].as_str() {
                rec.comm = c.to_string();
            }
            rec.fd_limit = p["fd_limit"].as_u64().or(rec.fd_limit);
            let mut values = counts(&p["states"], bad);
            if let Some(n) = count_of(&p["fd_count"], bad) {
                values.insert("fds".to_string(), n);
            }
            rec.push(t, values);
            if let Some(s) = severity_of(&p["severity"]) {
                rec.worst = rec.worst.max(Some(s));
            }
        }
        self.shown.push(t, shown);
        let f = &doc["findings"];
        for x in f["new"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(f["changed"].as_array().into_iter().flatten())
        {
            let Some(id) = x["id"].as_str() else { continue };
            let severity = severity_of(&x["severity"]).unwrap_or(Severity::Info);
            let rec = self
                .findings
                .entry(id.to_string())
                .or_insert_with(|| FindingRec {
                    kind: x["kind"].as_str().unwrap_or("?").to_string(),
                    severity,
                    pid: x["pid"].as_u64(),
                    comm: x["comm"].as_str().map(str::to_string),
                    first_ms: t,
                    last_ms: t,
                    summary: String::new(),
                    advice: String::new(),
                    last_count: 0,
                    peak: 0,
                    max_rate: None,
                    min_eta: None,
                    active: true,
                    spans: Vec::new(),
                });
            rec.present(t);
            rec.severity = rec.severity.max(severity);
            rec.last_ms = t;
            rec.active = true;
            rec.summary = x["summary"].as_str().unwrap_or("").to_string();
            rec.advice = x["advice"].as_str().unwrap_or("").to_string();
            rec.last_count = x["count"].as_u64().unwrap_or(0);
            rec.peak = rec.peak.max(rec.last_count);
            if let Some(r) = x["rate_per_min"].as_f64() {
                rec.max_rate = Some(rec.max_rate.map_or(r, |m: f64| m.max(r)));
            }
            if let Some(e) = x["eta_s"].as_u64() {
                rec.min_eta = Some(rec.min_eta.map_or(e, |m: u64| m.min(e)));
            }
        }
        for x in f["resolved"].as_array().into_iter().flatten() {
            if let Some(rec) = x["id"].as_str().and_then(|id| self.findings.get_mut(id)) {
                rec.active = false;
                rec.last_ms = t;
                rec.gone(t);
            }
        }
        true
    }
}

/// Reads a recording from `src` (`name` is for messages). Lines that are
/// not a watch line, not UTF-8, longer than [`MAX_LINE_BYTES`] or earlier
/// than the line before are skipped and counted; an error only when no line
/// is left or the file cannot be read.
pub fn read_recording(mut src: impl BufRead, name: &Path) -> Result<Recording> {
    let mut rec = Recording::default();
    let mut line = Vec::new();
    let mut number = 0usize;
    loop {
        line.clear();
        number += 1;
        let n = (&mut src)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .with_context(|| format!("read {} line {number}", name.display()))?;
        if n == 0 {
            break;
        }
        if line.last() != Some(&b'\n') && line.len() > MAX_LINE_BYTES {
            rec.bad_lines += 1;
            rec.too_long += 1;
            match skip_line(&mut src) {
                Ok(true) => continue,
                Ok(false) => {
                    rec.stopped = Some(format!(
                        "line {number} is more than {} MiB without a newline",
                        (MAX_LINE_BYTES as u64 + MAX_SKIP_BYTES) >> 20
                    ));
                    break;
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("read {} line {number}", name.display()))
                }
            }
        }
        let Ok(text) = std::str::from_utf8(&line) else {
            rec.bad_lines += 1;
            rec.not_utf8 += 1;
            continue;
        };
        if text.trim().is_empty() {
            continue;
        }
        let ok = serde_json::from_str::<Value>(text)
            .map(|doc| rec.add_line(&doc))
            .unwrap_or(false);
        if !ok {
            rec.bad_lines += 1;
        }
    }
    if rec.times.is_empty() {
        let stopped = rec
            .stopped
            .as_deref()
            .map(|s| format!(" (stopped reading: {s})"))
            .unwrap_or_default();
        bail!(
            "{}: no {WATCH_SCHEMA} lines{stopped} (record one with sockleak watch --record FILE)",
            name.display()
        );
    }
    Ok(rec)
}

/// Skips the rest of an overlong line: `true` at its newline (or the end of
/// the file), `false` when [`MAX_SKIP_BYTES`] went by without one.
fn skip_line(src: &mut impl BufRead) -> std::io::Result<bool> {
    let mut skipped = 0u64;
    while skipped < MAX_SKIP_BYTES {
        let buf = match src.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(true);
        }
        if let Some(i) = buf.iter().position(|&b| b == b'\n') {
            src.consume(i + 1);
            return Ok(true);
        }
        let n = buf.len();
        src.consume(n);
        skipped += n as u64;
    }
    Ok(false)
}

fn read(path: &Path) -> Result<Recording> {
    let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    // A large buffer: recordings are read once, front to back.
    read_recording(BufReader::with_capacity(1 << 20, file), path)
}

/// `+600/min` over the whole recording (Theil–Sen), or empty.
fn whole_rate(points: &[(u64, f64)]) -> String {
    match trend::trend(points) {
        Some(t) if t.rate_per_min.abs() >= 0.05 => {
            let sign = if t.rate_per_min > 0.0 { "+" } else { "" };
            format!("{sign}{}/min", rate_text(t.rate_per_min))
        }
        Some(_) => "0/min".to_string(),
        None => String::new(),
    }
}

fn first_last_peak(points: &[(u64, f64)]) -> String {
    match (points.first(), points.last()) {
        (Some(a), Some(b)) => {
            let peak = points.iter().map(|p| p.1).fold(0.0f64, f64::max);
            format!("{}→{} (peak {})", a.1, b.1, peak)
        }
        _ => "-".to_string(),
    }
}

/// "18:44:32".
fn clock(ms: u64) -> String {
    rfc3339(ms).get(11..19).unwrap_or("--:--:--").to_string()
}

/// The processes worth a line and a panel: worst finding first, then those
/// that moved most.
fn ranked(rec: &Recording) -> Vec<(&(u64, u64), &ProcRec)> {
    let mut v: Vec<_> = rec.procs.iter().collect();
    v.sort_by(|(ka, a), (kb, b)| {
        b.worst
            .cmp(&a.worst)
            .then(b.movement().total_cmp(&a.movement()))
            .then(ka.cmp(kb))
    });
    v
}

/// The report's text: `path` names the recording, `chart` the SVG written
/// beside it, `top` how many processes get a line beyond the first ten.
pub fn text(rec: &Recording, path: &Path, chart: Option<&Path>, top: usize, st: Style) -> String {
    let mut out = String::new();
    let (t0, t1) = (
        rec.times.first().copied().unwrap_or(0),
        rec.times.last().copied().unwrap_or(0),
    );
    let _ = writeln!(out, "{} {}", st.bold("sockleak report:"), path.display());
    let _ = writeln!(
        out,
        "host {}, {} to {} ({}), {} samples every {}",
        rec.hostname.as_deref().unwrap_or("?"),
        rfc3339(t0),
        rfc3339(t1),
        span_text(t1.saturating_sub(t0)),
        rec.times.len(),
        human_interval(rec.interval_ms)
    );
    if rec.bad_lines > 0 {
        let _ = writeln!(out, "({})", skipped_text(rec));
    }
    if let Some(s) = &rec.stopped {
        let _ = writeln!(out, "(stopped reading: {s})");
    }
    if rec.bad_values > 0 {
        let _ = writeln!(
            out,
            "({} counts left out: negative or above 2^53)",
            rec.bad_values
        );
    }
    out.push('\n');

    let mut findings: Vec<&FindingRec> = rec.findings.values().collect();
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(b.active.cmp(&a.active))
            .then(b.peak.cmp(&a.peak))
    });
    let active = findings.iter().filter(|f| f.active).count();
    let _ = writeln!(
        out,
        "{} {} seen, {active} still active at the end",
        st.bold("Findings:"),
        findings.len()
    );
    for f in &findings {
        let sev = match f.severity {
            Severity::Critical => st.red("CRITICAL"),
            Severity::Warning => st.yellow("WARNING"),
            Severity::Info => st.cyan("INFO"),
        };
        let who = match (&f.comm, f.pid) {
            (Some(c), Some(p)) => format!("{c} (pid {p})"),
            (None, Some(p)) => format!("pid {p}"),
            _ => "host".to_string(),
        };
        // An active finding has no end: it is still there at the last
        // sample. Its text is the one of its last report, so the count in
        // it is the last count; the peak is said beside it.
        let mut facts = if f.active {
            format!("since {}, still active", clock(f.first_ms))
        } else {
            format!("{} to {}", clock(f.first_ms), clock(f.last_ms))
        };
        let _ = write!(facts, ", peak {}", f.peak);
        if f.last_count != f.peak {
            let _ = write!(facts, ", {} at its last report", f.last_count);
        }
        if let Some(r) = f.max_rate.filter(|r| *r > 0.0) {
            let _ = write!(facts, ", up to +{}/min", rate_text(r));
        }
        if let Some(e) = f.min_eta {
            let _ = write!(facts, ", limit forecast as soon as {}", eta_text(e));
        }
        let state = if f.active { "active" } else { "resolved" };
        let _ = writeln!(out, "  {sev} {} {who}: {facts} [{state}]", st.bold(&f.kind));
        wrap_into(&mut out, &f.summary, "    ");
        if !f.advice.is_empty() {
            wrap_into(&mut out, &f.advice, "    ");
        }
    }
    out.push('\n');

    let _ = writeln!(out, "{}", st.bold("Processes, most change first:"));
    let _ = writeln!(
        out,
        "  {:>7}  {:<15} {:<24} {:>10}  {:<24} {:>10}",
        "PID", "COMM", "CLOSE_WAIT", "/min", "FDS", "/min"
    );
    for ((pid, _), p) in ranked(rec).into_iter().take(top.max(10)) {
        let cw = p.points("CLOSE_WAIT");
        let fds = p.points("fds");
        let _ = writeln!(
            out,
            "  {pid:>7}  {:<15} {:<24} {:>10}  {:<24} {:>10}",
            crate::output::truncate(&p.comm, 15),
            first_last_peak(&cw),
            whole_rate(&cw),
            first_last_peak(&fds),
            whole_rate(&fds)
        );
    }
    if let Some(c) = chart {
        let _ = writeln!(out, "\nChart: {}", c.display());
    }
    out
}

/// "5 lines skipped: 2 not sockleak.watch/v1, 1 not UTF-8, ...".
fn skipped_text(rec: &Recording) -> String {
    let other = rec.bad_lines - rec.not_utf8 - rec.too_long - rec.out_of_order;
    let parts: Vec<String> = [
        (other, format!("not {WATCH_SCHEMA}")),
        (rec.not_utf8, "not UTF-8".to_string()),
        (
            rec.too_long,
            format!("longer than {} MiB", MAX_LINE_BYTES >> 20),
        ),
        (rec.out_of_order, "earlier than the line before".to_string()),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, why)| format!("{n} {why}"))
    .collect();
    format!("{} lines skipped: {}", rec.bad_lines, parts.join(", "))
}

fn wrap_into(out: &mut String, text: &str, indent: &str) {
    for l in crate::tui::render::wrap(text, 96, indent) {
        out.push_str(&l);
        out.push('\n');
    }
}

/// The series of a record, as chart lines: every state that was ever
/// non-zero (LISTEN only matters as context and is left out), then fds.
fn series_of(p: &ProcRec) -> Vec<Series> {
    let mut v: Vec<Series> = p
        .series
        .iter()
        .filter(|(k, vals)| {
            k.as_str() != "fds" && k.as_str() != "LISTEN" && vals.iter().any(|x| *x > 0.0)
        })
        .map(|(k, _)| Series {
            label: k.clone(),
            color: svg::color_for(k),
            dashed: false,
            points: p.points(k),
        })
        .collect();
    if p.series.contains_key("fds") {
        v.push(Series {
            label: match p.fd_limit {
                Some(l) => format!("fds (limit {l})"),
                None => "fds".to_string(),
            },
            color: svg::color_for("fds"),
            dashed: true,
            points: p.points("fds"),
        });
    }
    v
}

/// The colour of a finding's markers.
fn severity_color(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "#d62728",
        Severity::Warning => "#ff7f0e",
        Severity::Info => "#1f77b4",
    }
}

/// The host grid: one small panel per TCP state that was ever non-zero
/// (LISTEN left out), each on its own scale, so 30 000 TIME_WAIT do not
/// flatten 40 CLOSE_WAIT. A filtered recording sums its processes instead
/// of the whole host, so the grid shows what the filter asked about.
fn host_grid(rec: &Recording, markers: &[Marker]) -> Grid {
    let (src, key, title) = if rec.filtered {
        (
            &rec.shown,
            "processes shown",
            "processes shown (the recording was filtered): TCP sockets by state, each on its \
             own scale",
        )
    } else {
        (
            &rec.host,
            "host",
            "host: TCP sockets by state, each on its own scale",
        )
    };
    let panels = series_of(src)
        .into_iter()
        .filter(|s| !s.label.starts_with("fds"))
        .map(|s| {
            let last = s.points.last().map_or(0.0, |p| p.1);
            let peak = s.points.iter().map(|p| p.1).fold(0.0f64, f64::max);
            Panel {
                title: format!("{} (last {last}, peak {peak})", s.label),
                key: key.to_string(),
                series: vec![s],
                markers: markers.to_vec(),
            }
        })
        .collect();
    Grid {
        title: title.to_string(),
        panels,
    }
}

/// The chart of a recording (render it with [`svg::render`]): the host
/// grid, then the `top` processes that changed most.
pub fn chart(rec: &Recording, path: &Path, top: usize) -> Chart {
    let (t0, t1) = (
        rec.times.first().copied().unwrap_or(0),
        rec.times.last().copied().unwrap_or(0),
    );
    let shown: Vec<(&(u64, u64), &ProcRec)> = ranked(rec).into_iter().take(top).collect();
    // Findings in the order they began, numbered; each marks its process's
    // panel, or the host grid when it has no process or no panel.
    let mut order: Vec<&FindingRec> = rec.findings.values().collect();
    order.sort_by_key(|f| (f.spans.first().map_or(f.first_ms, |s| s.0), f.kind.clone()));
    let mut lines = Vec::new();
    let mut host_markers = Vec::new();
    let mut proc_markers: BTreeMap<u64, Vec<Marker>> = BTreeMap::new();
    for (i, f) in order.iter().enumerate() {
        let n = (i + 1).to_string();
        let who = match (&f.comm, f.pid) {
            (Some(c), Some(p)) => format!("{c} (pid {p})"),
            (None, Some(p)) => format!("pid {p}"),
            _ => "host".to_string(),
        };
        let when: Vec<String> = f
            .spans
            .iter()
            .map(|(a, b)| match b {
                Some(b) => format!("{} to {}", clock(*a), clock(*b)),
                None => format!("{} to the end (still active)", clock(*a)),
            })
            .collect();
        let what = format!("{} {} {who}", f.severity.as_str().to_uppercase(), f.kind);
        lines.push(format!("{n}  {what}: {} UTC", when.join(", ")));
        let has_panel = f
            .pid
            .is_some_and(|p| shown.iter().any(|((pid, _), _)| *pid == p));
        for (a, b) in &f.spans {
            let m = Marker {
                label: n.clone(),
                color: severity_color(f.severity),
                start_ms: *a,
                end_ms: *b,
                title: format!("{n} {what}"),
            };
            match f.pid.filter(|_| has_panel) {
                Some(p) => proc_markers.entry(p).or_default().push(m),
                None => host_markers.push(m),
            }
        }
    }
    let mut panels = Vec::new();
    for ((pid, _), p) in shown {
        let title = format!("{} (pid {pid})", p.comm);
        panels.push(Panel {
            key: title.clone(),
            title,
            series: series_of(p),
            markers: proc_markers.get(pid).cloned().unwrap_or_default(),
        });
    }
    Chart {
        title: format!(
            "sockleak: {} on {}",
            path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into()
            ),
            rec.hostname.as_deref().unwrap_or("?")
        ),
        subtitle: format!(
            "{} to {} ({}), {} samples every {}; times are UTC",
            rfc3339(t0),
            rfc3339(t1),
            span_text(t1.saturating_sub(t0)),
            rec.times.len(),
            human_interval(rec.interval_ms)
        ),
        t0_ms: t0,
        t1_ms: t1,
        findings: lines,
        host: Some(host_grid(rec, &host_markers)),
        panels,
    }
}

pub fn run(args: &ReportArgs, style: Style) -> Result<u8> {
    let rec = read(&args.file)?;
    let svg_path = if args.no_chart {
        None
    } else {
        Some(
            args.svg
                .clone()
                .unwrap_or_else(|| args.file.with_extension("svg")),
        )
    };
    if let Some(p) = &svg_path {
        if p == &args.file {
            bail!("--svg {}: that is the recording itself", p.display());
        }
        let doc = svg::render(&chart(&rec, &args.file, args.top));
        std::fs::write(p, doc).with_context(|| format!("write {}", p.display()))?;
    }
    exit::write_stdout(text(&rec, &args.file, svg_path.as_deref(), args.top, style).as_bytes())?;
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    //! The chart of made-up recordings, read back as XML.
    use super::*;
    use serde_json::json;

    /// 2026-11-22T18:44:32Z.
    const T0: u64 = 1_795_373_072_000;
    const EVERY: u64 = 2000;

    /// A recording of `n` samples; `line(i)` gives sample `i`'s processes,
    /// host states and findings (new, changed, resolved).
    fn recording(n: u64, filtered: bool, line: impl Fn(u64) -> Value) -> Recording {
        let mut rec = Recording::default();
        for i in 0..n {
            let mut doc = line(i);
            doc["schema"] = json!(WATCH_SCHEMA);
            doc["time_ms"] = json!(T0 + i * EVERY);
            doc["interval_ms"] = json!(EVERY);
            if i == 0 {
                doc["host"] = json!({"hostname": "testhost", "filtered": filtered});
            }
            assert!(rec.add_line(&doc), "line {i}");
        }
        rec
    }

    fn java(i: u64) -> Value {
        json!({"pid": 4242, "start_time": 1, "comm": "java",
               "states": {"CLOSE_WAIT": 3 * i}, "fd_count": 10 + 3 * i})
    }

    fn finding(id: &str, kind: &str, pid: Option<u64>) -> Value {
        let mut f = json!({"id": id, "kind": kind, "severity": "warning", "count": 1,
                           "summary": "s", "advice": "a"});
        if let Some(p) = pid {
            f["pid"] = json!(p);
            f["comm"] = json!("java");
        }
        f
    }

    fn svg_of(rec: &Recording) -> String {
        svg::render(&chart(rec, Path::new("rec.jsonl"), 6))
    }

    fn panel<'a, 'i>(doc: &'a roxmltree::Document<'i>, key: &str) -> Vec<roxmltree::Node<'a, 'i>> {
        doc.descendants()
            .filter(|n| n.attribute("data-panel") == Some(key))
            .collect()
    }

    /// The (x, y) points of the polyline `series` in `g`.
    fn points(g: roxmltree::Node, series: &str) -> Vec<(f64, f64)> {
        let line = g
            .descendants()
            .find(|n| n.attribute("data-series") == Some(series))
            .unwrap_or_else(|| panic!("no series {series}"));
        line.attribute("points")
            .unwrap_or("")
            .split_whitespace()
            .map(|p| {
                let (x, y) = p.split_once(',').expect("x,y");
                (x.parse().expect("x"), y.parse().expect("y"))
            })
            .collect()
    }

    fn x1(n: roxmltree::Node) -> f64 {
        n.attribute("x1").and_then(|v| v.parse().ok()).expect("x1")
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 0.11
    }

    #[test]
    fn the_x_axis_shows_the_recordings_wall_clock_times_in_utc() {
        let rec = recording(10, false, |i| json!({"processes": [java(i)]}));
        let svg = svg_of(&rec);
        let doc = roxmltree::Document::parse(&svg).expect("XML");
        let g = panel(&doc, "java (pid 4242)")[0];
        let ticks: Vec<(u64, &str)> = g
            .descendants()
            .filter(|n| n.attribute("class") == Some("x-tick"))
            .map(|n| {
                let t = n.attribute("data-t-ms").and_then(|v| v.parse().ok());
                (t.expect("data-t-ms"), n.text().unwrap_or(""))
            })
            .collect();
        // 18:44:32 to 18:44:50: a tick every 5 s, on round times.
        let labels: Vec<&str> = ticks.iter().map(|t| t.1).collect();
        assert_eq!(labels, ["18:44:35", "18:44:40", "18:44:45", "18:44:50"]);
        assert_eq!(ticks[1].0, T0 + 8000);
        // 18:44:40 is sample 4: the tick sits under that point.
        let pts = points(g, "java (pid 4242) CLOSE_WAIT");
        let tick_x = g
            .descendants()
            .find(|n| n.attribute("data-t-ms") == Some(&(T0 + 8000).to_string()))
            .and_then(|n| n.attribute("x")?.parse::<f64>().ok())
            .expect("x");
        assert!(close(tick_x, pts[4].0), "{tick_x} vs {:?}", pts[4]);
        assert!(svg.contains("times are UTC"));
    }

    #[test]
    fn markers_show_where_each_finding_started_and_ended() {
        let leak = "close_wait_leak/4242@1/-/server/127.0.0.1:9530/-";
        let tw = "time_wait_pressure/-@-/1/client/-/127.0.0.1:5432";
        let rec = recording(9, false, |i| {
            let mut f = json!({"new": [], "changed": [], "resolved": []});
            match i {
                3 => f["new"] = json!([finding(leak, "close_wait_leak", Some(4242))]),
                4 => f["changed"] = json!([finding(leak, "close_wait_leak", Some(4242))]),
                6 => f["resolved"] = json!([{"id": leak, "kind": "close_wait_leak"}]),
                5 => f["new"] = json!([finding(tw, "time_wait_pressure", None)]),
                _ => {}
            }
            json!({"processes": [java(i)], "findings": f,
                   "totals": {"states": {"TIME_WAIT": 10 * i, "CLOSE_WAIT": 3 * i}}})
        });
        let svg = svg_of(&rec);
        let doc = roxmltree::Document::parse(&svg).expect("XML");
        let of = |g: roxmltree::Node, class: &str, label: &str| -> Vec<f64> {
            g.descendants()
                .filter(|n| {
                    n.attribute("class") == Some(class)
                        && n.attribute("data-finding") == Some(label)
                })
                .map(x1)
                .collect()
        };

        // 1: the leak, in java's panel, from sample 3 to sample 6.
        let g = panel(&doc, "java (pid 4242)")[0];
        let pts = points(g, "java (pid 4242) CLOSE_WAIT");
        let start = of(g, "finding-start", "1");
        let end = of(g, "finding-end", "1");
        assert!(
            start.len() == 1 && close(start[0], pts[3].0),
            "{start:?} {pts:?}"
        );
        assert!(end.len() == 1 && close(end[0], pts[6].0), "{end:?} {pts:?}");
        assert!(
            of(g, "finding-start", "2").is_empty(),
            "the host finding is not java's"
        );

        // 2: TIME_WAIT pressure, no process: in the host panels, from sample
        // 5, still active at the end: no end marker.
        let host = panel(&doc, "host");
        assert_eq!(host.len(), 2, "CLOSE_WAIT and TIME_WAIT");
        for g in host {
            let label = g
                .descendants()
                .find_map(|n| n.attribute("data-series"))
                .expect("series");
            let pts = points(g, label);
            let start = of(g, "finding-start", "2");
            assert!(
                start.len() == 1 && close(start[0], pts[5].0),
                "{start:?} {pts:?}"
            );
            assert!(of(g, "finding-end", "2").is_empty(), "still active: no end");
        }
        let list: Vec<&str> = doc
            .descendants()
            .filter(|n| n.attribute("class") == Some("finding"))
            .filter_map(|n| n.text())
            .collect();
        assert_eq!(
            list,
            [
                "1  WARNING close_wait_leak java (pid 4242): 18:44:38 to 18:44:44 UTC",
                "2  WARNING time_wait_pressure host: 18:44:42 to the end (still active) UTC",
            ]
        );
    }

    #[test]
    fn a_large_time_wait_count_does_not_flatten_the_host_close_wait_line() {
        let rec = recording(10, false, |i| {
            json!({"processes": [java(i)],
                   "totals": {"states": {"TIME_WAIT": 30_000, "CLOSE_WAIT": 4 * i}}})
        });
        let svg = svg_of(&rec);
        let doc = roxmltree::Document::parse(&svg).expect("XML");
        let g = panel(&doc, "host")
            .into_iter()
            .find(|g| {
                g.descendants()
                    .any(|n| n.attribute("data-series") == Some("host CLOSE_WAIT"))
            })
            .expect("a host CLOSE_WAIT panel");
        let plot = g
            .descendants()
            .find(|n| n.attribute("class") == Some("plot"))
            .expect("plot");
        let h: f64 = plot
            .attribute("height")
            .and_then(|v| v.parse().ok())
            .expect("h");
        let ys: Vec<f64> = points(g, "host CLOSE_WAIT").iter().map(|p| p.1).collect();
        let span = ys.iter().copied().fold(f64::MIN, f64::max)
            - ys.iter().copied().fold(f64::MAX, f64::min);
        assert!(span >= 0.8 * h, "CLOSE_WAIT 0..36 spans {span} of {h}");
    }

    #[test]
    fn a_filtered_recordings_host_panel_sums_the_processes_it_kept() {
        let rec = recording(6, true, |i| {
            json!({"processes": [java(i)],
                   "totals": {"states": {"TIME_WAIT": 30_000, "CLOSE_WAIT": 3 * i + 50}}})
        });
        let svg = svg_of(&rec);
        let doc = roxmltree::Document::parse(&svg).expect("XML");
        let series: Vec<&str> = doc
            .descendants()
            .filter_map(|n| n.attribute("data-series"))
            .collect();
        assert!(series.contains(&"processes shown CLOSE_WAIT"), "{series:?}");
        assert!(
            !series
                .iter()
                .any(|s| s.contains("TIME_WAIT") || s.starts_with("host ")),
            "the host's other sockets are not what the filter asked about: {series:?}"
        );
        // java's own counts, not the host's 50 more.
        let g = panel(&doc, "processes shown")[0];
        let title = g
            .descendants()
            .find(|n| n.has_tag_name("text"))
            .and_then(|n| n.text())
            .unwrap_or("");
        assert_eq!(title, "CLOSE_WAIT (last 15, peak 15)");
    }
}
