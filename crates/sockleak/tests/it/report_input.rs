//! `sockleak report` on files it did not write: absurd times and counts,
//! non-UTF-8 lines, a line without a newline (`report /dev/zero`), lines out
//! of time order; and a property test of the chart: any values, finite or
//! not, render a bounded, well-formed SVG.

use crate::support::wait_or_kill;
use proptest::prelude::*;
use sockleak::output::svg::{self, Chart, Grid, Marker, Panel, Series};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sockleak-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// One watch line at `t` with `cw` CLOSE_WAIT for process 4242 and the host.
fn line(t: &str, cw: &str) -> String {
    format!(
        r#"{{"schema":"sockleak.watch/v1","time_ms":{t},"interval_ms":2000,"host":{{"hostname":"h"}},"totals":{{"states":{{"CLOSE_WAIT":{cw}}}}},"processes":[{{"pid":4242,"start_time":1,"comm":"java","states":{{"CLOSE_WAIT":{cw}}},"fd_count":{cw}}}]}}"#
    )
}

/// Runs `sockleak report ARGS` under an address-space limit of 1 GiB (so a
/// runaway allocation aborts instead of taking the machine), bounded in
/// time: (exit code, stdout, stderr, how long it took).
fn report(args: &[&str], limit: Duration) -> (Option<i32>, String, String, Duration) {
    let bin = env!("CARGO_BIN_EXE_sockleak");
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(r#"ulimit -v 1048576 && exec "$0" report "$@""#)
        .arg(bin)
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().expect("run sockleak report");
    // Read both pipes on threads so a chatty child cannot block on them.
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let o = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let e = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let status = wait_or_kill(&mut child, limit, &format!("report {args:?} did not end"));
    let took = start.elapsed();
    (
        status.code(),
        o.join().unwrap_or_default(),
        e.join().unwrap_or_default(),
        took,
    )
}

#[test]
fn report_on_u64_max_times_and_1e308_counts_ends_with_a_bounded_chart() {
    let dir = temp_dir("report-absurd");
    let rec = dir.join("absurd.jsonl");
    let text = [
        line("0", "1.7e308"),
        line("1000", "-5"),
        line("18446744073709551615", "1.7e308"),
    ]
    .join("\n");
    std::fs::write(&rec, text + "\n").expect("write");
    let svg_path = dir.join("absurd.svg");
    let (code, out, err, took) = report(
        &[
            rec.to_str().expect("utf-8"),
            "--svg",
            svg_path.to_str().expect("utf-8"),
        ],
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(0), "report failed ({took:?}): {err}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert!(
        out.contains("3 samples") && out.contains("counts left out"),
        "{out}"
    );
    let doc = std::fs::read_to_string(&svg_path).expect("chart");
    assert!(
        doc.len() < 256 * 1024,
        "chart of 3 samples is {} bytes",
        doc.len()
    );
    let xml = roxmltree::Document::parse(&doc).expect("well-formed SVG");
    assert!(
        xml.descendants()
            .filter(|n| n.attribute("class") == Some("x-tick"))
            .count()
            <= 64 * 20,
        "ticks are bounded"
    );
}

#[test]
fn a_non_utf8_line_is_skipped_and_counted_not_fatal() {
    let dir = temp_dir("report-utf8");
    let rec = dir.join("mixed.jsonl");
    let mut bytes = line("1795373072000", "3").into_bytes();
    bytes.extend_from_slice(b"\n\xff\xfe not UTF-8 \xc3\x28\n");
    bytes.extend_from_slice(b"{\"schema\": \"something else\"}\n");
    bytes.extend_from_slice(line("1795373074000", "4").as_bytes());
    bytes.push(b'\n');
    std::fs::write(&rec, bytes).expect("write");
    let (code, out, err, _) = report(
        &[rec.to_str().expect("utf-8"), "--no-chart"],
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(0), "report failed: {err}");
    assert!(out.contains("2 samples"), "{out}");
    assert!(
        out.contains("2 lines skipped: 1 not sockleak.watch/v1, 1 not UTF-8"),
        "{out}"
    );
}

#[test]
fn lines_earlier_than_the_line_before_are_skipped_and_counted() {
    let dir = temp_dir("report-order");
    let rec = dir.join("order.jsonl");
    let text = [
        line("1795373072000", "3"),
        line("1795373076000", "9"),
        line("1795373074000", "100"),
        line("1795373078000", "12"),
    ]
    .join("\n");
    std::fs::write(&rec, text + "\n").expect("write");
    let (code, out, err, _) = report(
        &[rec.to_str().expect("utf-8"), "--no-chart"],
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(0), "report failed: {err}");
    assert!(out.contains("3 samples"), "{out}");
    assert!(out.contains("1 earlier than the line before"), "{out}");
    // The skipped line's 100 is in no peak.
    assert!(out.contains("3→12 (peak 12)"), "{out}");
}

#[test]
fn report_on_dev_zero_ends_in_bounded_memory_and_says_why() {
    let (code, out, err, took) = report(&["/dev/zero", "--no-chart"], Duration::from_secs(60));
    assert_eq!(
        code,
        Some(2),
        "an endless line is an error, not an abort ({took:?}): {out} {err}"
    );
    assert!(
        err.contains("no sockleak.watch/v1 lines") && err.contains("without a newline"),
        "{err}"
    );
}

#[test]
fn an_overlong_line_is_skipped_and_the_next_ones_are_read() {
    let dir = temp_dir("report-long");
    let rec = dir.join("long.jsonl");
    let mut bytes = vec![b' '; sockleak::commands::report::MAX_LINE_BYTES + 10];
    bytes.push(b'\n');
    bytes.extend_from_slice(line("1795373072000", "3").as_bytes());
    bytes.push(b'\n');
    std::fs::write(&rec, bytes).expect("write");
    let (code, out, err, _) = report(
        &[rec.to_str().expect("utf-8"), "--no-chart"],
        Duration::from_secs(30),
    );
    let _ = std::fs::remove_file(&rec);
    assert_eq!(code, Some(0), "report failed: {err}");
    assert!(out.contains("1 samples"), "{out}");
    assert!(out.contains("1 longer than 16 MiB"), "{out}");
}

#[test]
fn state_names_that_are_no_tcp_state_get_no_series() {
    let dir = temp_dir("report-keys");
    let rec = dir.join("keys.jsonl");
    let text = (0..3)
        .map(|i| {
            line(&(1_795_373_072_000u64 + i * 2000).to_string(), "3")
                .replace(r#""CLOSE_WAIT":3}}"#, r#""CLOSE_WAIT":3,"BOGUS_STATE":7}}"#)
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(text.contains("BOGUS_STATE"));
    std::fs::write(&rec, text + "\n").expect("write");
    let svg_path = dir.join("keys.svg");
    let (code, _, err, _) = report(
        &[
            rec.to_str().expect("utf-8"),
            "--svg",
            svg_path.to_str().expect("utf-8"),
        ],
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(0), "report failed: {err}");
    let doc = std::fs::read_to_string(&svg_path).expect("chart");
    assert!(doc.contains("CLOSE_WAIT") && !doc.contains("BOGUS_STATE"));
}

/// Any f64: finite, huge, negative, infinite or NaN.
fn any_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        0.0..1e6f64,
        any::<f64>(),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::NAN),
        Just(f64::MAX),
        Just(1.7e308),
    ]
}

fn any_time() -> impl Strategy<Value = u64> {
    prop_oneof![any::<u64>(), Just(0u64), Just(u64::MAX), 0..100_000u64]
}

fn any_panel() -> impl Strategy<Value = Panel> {
    (
        prop::collection::vec(
            prop::collection::vec((any_time(), any_value()), 0..12),
            0..20,
        ),
        prop::collection::vec((any_time(), prop::option::of(any_time())), 0..80),
    )
        .prop_map(|(series, markers)| Panel {
            title: "p <&>".into(),
            key: "p".into(),
            series: series
                .into_iter()
                .enumerate()
                .map(|(i, points)| Series {
                    label: format!("s{i}"),
                    color: svg::color_for("CLOSE_WAIT"),
                    dashed: i % 2 == 1,
                    points,
                })
                .collect(),
            markers: markers
                .into_iter()
                .map(|(start_ms, end_ms)| Marker {
                    label: "1".into(),
                    color: "#000000",
                    start_ms,
                    end_ms,
                    title: "m".into(),
                })
                .collect(),
        })
}

/// Every number in the attributes of `doc` that the chart computed
/// (coordinates and sizes) is finite.
fn coordinates_are_finite(doc: &roxmltree::Document) -> Result<(), String> {
    for n in doc.descendants() {
        for a in ["x", "y", "x1", "x2", "y1", "y2", "width", "height"] {
            if let Some(v) = n.attribute(a) {
                let f: f64 = v.parse().map_err(|_| format!("{a}={v:?}"))?;
                if !f.is_finite() {
                    return Err(format!("{a}={v}"));
                }
            }
        }
        if let Some(pts) = n.attribute("points") {
            for p in pts.split_whitespace() {
                let ok = p
                    .split(',')
                    .all(|c| c.parse::<f64>().is_ok_and(f64::is_finite));
                if !ok {
                    return Err(format!("point {p}"));
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any values and times render a well-formed SVG, quickly, whose size is
    /// bounded by what is drawn (capped per panel), not by the values.
    #[test]
    fn any_chart_renders_a_bounded_well_formed_svg(
        t0 in any_time(),
        t1 in any_time(),
        host in prop::collection::vec(any_panel(), 0..16),
        panels in prop::collection::vec(any_panel(), 0..4),
    ) {
        let points: usize = host
            .iter()
            .take(svg::MAX_GRID_PANELS)
            .chain(&panels)
            .flat_map(|p| p.series.iter().take(svg::MAX_SERIES))
            .map(|s| s.points.len())
            .sum();
        let chart = Chart {
            title: "t".into(),
            subtitle: "s".into(),
            t0_ms: t0,
            t1_ms: t1,
            findings: vec!["1 x".into(); 20],
            host: Some(Grid { title: "host".into(), panels: host }),
            panels,
        };
        let start = Instant::now();
        let doc = svg::render(&chart);
        prop_assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
        // Per panel: the frame, grid, ticks, markers and legend (a few
        // dozen KiB at most); per point one "x,y " pair.
        let panel_count = chart.host.as_ref().map_or(0, |g| g.panels.len().min(svg::MAX_GRID_PANELS))
            + chart.panels.len();
        let bound = 8 * 1024 + panel_count * 48 * 1024 + points * 32;
        prop_assert!(doc.len() <= bound, "{} bytes > {bound}", doc.len());
        let xml = roxmltree::Document::parse(&doc).map_err(|e| TestCaseError::fail(e.to_string()))?;
        coordinates_are_finite(&xml).map_err(TestCaseError::fail)?;
    }
}

/// The recording reader on bytes, as the fuzz target calls it: anything
/// either reads or is refused, and the chart of what was read is bounded.
#[test]
fn the_reader_survives_truncated_and_mutated_recordings() {
    let good = [
        line("1795373072000", "3"),
        line("1795373074000", "5"),
        line("1795373076000", "8"),
    ]
    .join("\n");
    let bytes = good.as_bytes();
    let mut read = 0;
    for cut in 0..bytes.len() {
        for flip in [None, Some(0x80u8), Some(b'9'), Some(b'"'), Some(b'\n')] {
            let mut b = bytes[..cut].to_vec();
            if let (Some(f), Some(last)) = (flip, b.last_mut()) {
                *last = f;
            }
            if let Ok(rec) =
                sockleak::commands::report::read_recording(&b[..], Path::new("mutated.jsonl"))
            {
                read += 1;
                let chart = sockleak::commands::report::chart(&rec, Path::new("m.jsonl"), 6);
                assert!(svg::render(&chart).len() < 256 * 1024);
            }
        }
    }
    assert!(read > 100, "only {read} prefixes read");
}
