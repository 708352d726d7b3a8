//! SVG line charts for `sockleak report`, written by hand: a few panels of
//! counts over time (one per process, one line per TCP state plus the open
//! fds), above them a row of small panels for the host (one per state, each
//! on its own scale), wall-clock times (UTC) on every x axis and a marker
//! where each finding started and ended. Plain SVG 1.1, no scripts or
//! external resources, so it opens in any browser and pastes into incident
//! reports.

use super::rfc3339;
use std::fmt::Write;

/// One line of a panel.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub label: String,
    pub color: &'static str,
    pub dashed: bool,
    /// (Unix ms, value), in time order.
    pub points: Vec<(u64, f64)>,
}

/// A finding's time span, drawn as a solid line where it started and a
/// dashed one where it ended (none while it was still active at the end).
#[derive(Clone, Debug, PartialEq)]
pub struct Marker {
    /// Its number in the chart's list of findings.
    pub label: String,
    pub color: &'static str,
    pub start_ms: u64,
    pub end_ms: Option<u64>,
    /// The tooltip: what the finding was.
    pub title: String,
}

/// One chart panel: a title and its lines on shared axes.
#[derive(Clone, Debug, PartialEq)]
pub struct Panel {
    pub title: String,
    /// Names its lines in `data-series` ("java (pid 4242) CLOSE_WAIT").
    pub key: String,
    pub series: Vec<Series>,
    pub markers: Vec<Marker>,
}

/// Small panels side by side, each on its own y scale, under one title.
#[derive(Clone, Debug, PartialEq)]
pub struct Grid {
    pub title: String,
    pub panels: Vec<Panel>,
}

/// The whole picture: the list of findings, the host grid, then the
/// process panels, all over the same time range.
#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    pub title: String,
    pub subtitle: String,
    pub t0_ms: u64,
    pub t1_ms: u64,
    /// One line per finding ("1 WARNING close_wait_leak ..."), numbered as
    /// their markers.
    pub findings: Vec<String>,
    pub host: Option<Grid>,
    pub panels: Vec<Panel>,
}

const WIDTH: f64 = 960.0;
const PANEL_H: f64 = 230.0;
const TOP: f64 = 64.0;
/// Plot margins inside a panel: left (y labels), right (legend), top, bottom.
const ML: f64 = 64.0;
const MR: f64 = 190.0;
const MT: f64 = 28.0;
const MB: f64 = 34.0;
/// The host grid: panels per row, their height, the title row above.
const GRID_COLS: usize = 3;
const SMALL_H: f64 = 150.0;
const GRID_TITLE_H: f64 = 26.0;
/// Lines of the finding list; more are summed up in one line.
const MAX_FINDING_LINES: usize = 12;
const FINDING_LINE_H: f64 = 16.0;
/// Time ticks per panel at most, whatever the recording's times say.
const MAX_TICKS: usize = 64;
/// The largest value a y axis goes to (2^53): a count of 1.7e308 would make
/// the axis infinite and its grid loop endless.
pub const MAX_VALUE: f64 = 9_007_199_254_740_992.0;
/// Drawn at most per panel, whatever the chart holds: lines, finding
/// markers, and panels of the host grid. The report lists everything; the
/// picture stays a picture (and its size linear in the samples).
pub const MAX_SERIES: usize = 16;
pub const MAX_MARKERS: usize = 64;
pub const MAX_GRID_PANELS: usize = 12;

/// Where a panel goes.
#[derive(Clone, Copy, Debug)]
struct Rect {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

/// A colour per TCP state (and fds), the same in every panel.
pub fn color_for(name: &str) -> &'static str {
    match name {
        "CLOSE_WAIT" => "#d62728",
        "ESTABLISHED" => "#1f77b4",
        "TIME_WAIT" => "#7f7f7f",
        "FIN_WAIT2" => "#9467bd",
        "FIN_WAIT1" => "#8c564b",
        "SYN_SENT" => "#e377c2",
        "SYN_RECV" => "#bcbd22",
        "LISTEN" => "#17becf",
        "LAST_ACK" => "#ff7f0e",
        "CLOSING" => "#aec7e8",
        "fds" => "#2ca02c",
        _ => "#000000",
    }
}

/// Escapes text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 forbids most control characters, even escaped.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A round step so that `max` spans at most `n` steps: 1, 2 or 5 × 10^k.
fn nice_step(max: f64, n: f64) -> f64 {
    if !(max.is_finite() && max > 0.0) {
        return 1.0;
    }
    let raw = max / n;
    let mag = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * mag >= raw {
            return (m * mag).max(1.0);
        }
    }
    (10.0 * mag).max(1.0)
}

/// A time step (seconds) giving at most `n` ticks.
fn time_step(span_s: f64, n: f64) -> f64 {
    const STEPS: [f64; 16] = [
        1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
        21_600.0, 86_400.0,
    ];
    STEPS
        .iter()
        .copied()
        .find(|s| span_s / s <= n)
        .unwrap_or(86_400.0)
}

/// A wall-clock tick: "18:44:35" (UTC), or "11-22 18:00" when the
/// recording spans more than a day.
fn time_label(ms: u64, long: bool) -> String {
    let t = rfc3339(ms);
    let part = if long {
        t.get(5..16).map(|s| s.replace('T', " "))
    } else {
        t.get(11..19).map(str::to_string)
    };
    part.unwrap_or_else(|| "--:--:--".to_string())
}

fn number_label(v: f64) -> String {
    if !v.is_finite() {
        "?".to_string()
    } else if v.abs() >= 1e15 {
        format!("{v:.1e}")
    } else if v >= 10_000.0 {
        format!("{}k", (v / 1000.0).round())
    } else {
        format!("{}", v.round())
    }
}

/// Height of the list of findings.
fn findings_h(n: usize) -> f64 {
    match n {
        0 => 0.0,
        n => (n.min(MAX_FINDING_LINES + 1) + 1) as f64 * FINDING_LINE_H + 8.0,
    }
}

/// Height of the host grid.
fn grid_h(g: &Grid) -> f64 {
    let rows = g.panels.len().min(MAX_GRID_PANELS).div_ceil(GRID_COLS);
    GRID_TITLE_H + SMALL_H * rows as f64
}

/// The chart as an SVG document.
pub fn render(chart: &Chart) -> String {
    let grid = chart.host.as_ref().filter(|g| !g.panels.is_empty());
    let list_h = findings_h(chart.findings.len());
    let host_h = grid.map_or(0.0, grid_h);
    let height = TOP + list_h + host_h + PANEL_H * chart.panels.len() as f64 + 10.0;
    let mut out = String::new();
    let _ = writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, "<title>{}</title>", escape(&chart.title));
    let _ = writeln!(
        out,
        r##"<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        out,
        r#"<text x="16" y="26" font-size="18" font-weight="bold">{}</text>"#,
        escape(&chart.title)
    );
    let _ = writeln!(
        out,
        r##"<text x="16" y="46" fill="#555555">{}</text>"##,
        escape(&chart.subtitle)
    );
    let mut y = TOP;
    if !chart.findings.is_empty() {
        findings_list(&mut out, &chart.findings, y);
        y += list_h;
    }
    let span_ms = chart.t1_ms.saturating_sub(chart.t0_ms).max(1);
    let long = span_ms > 86_400_000;
    if let Some(g) = grid {
        let _ = writeln!(
            out,
            r#"<text x="16" y="{:.1}" font-size="14" font-weight="bold">{}</text>"#,
            y + 18.0,
            escape(&g.title)
        );
        let w = WIDTH / GRID_COLS as f64;
        for (i, p) in g.panels.iter().take(MAX_GRID_PANELS).enumerate() {
            let r = Rect {
                x: w * (i % GRID_COLS) as f64,
                y: y + GRID_TITLE_H + SMALL_H * (i / GRID_COLS) as f64,
                w,
                h: SMALL_H,
            };
            panel(&mut out, p, r, chart.t0_ms, span_ms, long, false);
        }
        y += host_h;
    }
    for (i, p) in chart.panels.iter().enumerate() {
        let r = Rect {
            x: 0.0,
            y: y + PANEL_H * i as f64,
            w: WIDTH,
            h: PANEL_H,
        };
        panel(&mut out, p, r, chart.t0_ms, span_ms, long, true);
    }
    out.push_str("</svg>\n");
    out
}

/// The numbered list of findings that the markers refer to.
fn findings_list(out: &mut String, lines: &[String], y0: f64) {
    let _ = writeln!(out, r#"<g class="findings">"#);
    let _ = writeln!(
        out,
        r#"<text x="16" y="{:.1}" font-weight="bold">Findings (solid line: started, dashed: ended; none while still active)</text>"#,
        y0 + FINDING_LINE_H
    );
    for (i, l) in lines.iter().take(MAX_FINDING_LINES).enumerate() {
        let _ = writeln!(
            out,
            r#"<text class="finding" x="16" y="{:.1}">{}</text>"#,
            y0 + FINDING_LINE_H * (i + 2) as f64,
            escape(l)
        );
    }
    if lines.len() > MAX_FINDING_LINES {
        let _ = writeln!(
            out,
            r##"<text x="16" y="{:.1}" fill="#555555">… and {} more (sockleak report lists them all)</text>"##,
            y0 + FINDING_LINE_H * (MAX_FINDING_LINES + 2) as f64,
            lines.len() - MAX_FINDING_LINES
        );
    }
    let _ = writeln!(out, "</g>");
}

/// One panel in `r`. `legend`: a wide panel with a legend on the right; a
/// small one has a single line and says its last value in the title.
fn panel(out: &mut String, p: &Panel, r: Rect, t0: u64, span_ms: u64, long: bool, legend: bool) {
    // A small panel keeps room for half a time label on its right.
    let (ml, mr) = if legend { (ML, MR) } else { (52.0, 32.0) };
    let (x_a, x_b) = (r.x + ml, r.x + r.w - mr);
    let (y_a, y_b) = (r.y + MT, r.y + r.h - MB);
    let series = &p.series[..p.series.len().min(MAX_SERIES)];
    let max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|(_, v)| *v))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .min(MAX_VALUE);
    let step = nice_step(max, if legend { 5.0 } else { 3.0 });
    let steps = (max / step).ceil().max(1.0);
    let top = steps * step;
    // Inside the plot whatever the times and values say (a time before t0,
    // a negative or absurd value).
    let x = |t: u64| {
        (x_a + (t.saturating_sub(t0)) as f64 / span_ms as f64 * (x_b - x_a)).clamp(x_a, x_b)
    };
    let y = |v: f64| y_b - v.clamp(0.0, top) / top * (y_b - y_a);

    let _ = writeln!(out, r#"<g class="panel" data-panel="{}">"#, escape(&p.key));
    let _ = writeln!(
        out,
        r#"<text x="{x_a}" y="{}" font-size="{}" font-weight="bold">{}</text>"#,
        r.y + 18.0,
        if legend { 14 } else { 12 },
        escape(&p.title)
    );
    // Grid and y labels: counted, not stepped up to `top` (adding a step
    // to a huge value can leave it where it was).
    for i in 0..=(steps as usize).min(16) {
        let v = i as f64 * step;
        let yy = y(v);
        let _ = writeln!(
            out,
            r##"<line x1="{x_a}" y1="{yy:.1}" x2="{x_b}" y2="{yy:.1}" stroke="#e5e5e5"/>"##
        );
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555555">{}</text>"##,
            x_a - 6.0,
            yy + 4.0,
            number_label(v)
        );
    }
    // Time ticks at round wall-clock times (UTC).
    let span_s = span_ms as f64 / 1000.0;
    let step_ms = (time_step(span_s, if legend { 8.0 } else { 4.0 }) * 1000.0) as u64;
    let t1 = t0.saturating_add(span_ms);
    let mut t = t0.div_ceil(step_ms).saturating_mul(step_ms);
    // Bounded whatever the times: a day per tick over years would be many.
    let mut ticks = 0;
    while t <= t1 && ticks < MAX_TICKS {
        ticks += 1;
        let xx = x(t);
        let _ = writeln!(
            out,
            r##"<line x1="{xx:.1}" y1="{y_b}" x2="{xx:.1}" y2="{:.1}" stroke="#999999"/>"##,
            y_b + 4.0
        );
        let _ = writeln!(
            out,
            r##"<text class="x-tick" data-t-ms="{t}" x="{xx:.1}" y="{:.1}" text-anchor="middle" fill="#555555">{}</text>"##,
            y_b + 17.0,
            time_label(t, long)
        );
        t = t.saturating_add(step_ms);
    }
    if legend {
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" fill="#555555">UTC</text>"##,
            x_b + 34.0,
            y_b + 17.0
        );
    }
    let _ = writeln!(
        out,
        r##"<rect class="plot" x="{x_a}" y="{y_a}" width="{:.1}" height="{:.1}" fill="none" stroke="#999999"/>"##,
        x_b - x_a,
        y_b - y_a
    );
    // Finding markers, inside the plot whatever their times say (`x`
    // clamps).
    for m in p.markers.iter().take(MAX_MARKERS) {
        let title = escape(&m.title);
        let label = escape(&m.label);
        let xs = x(m.start_ms);
        let _ = writeln!(
            out,
            r#"<line class="finding-start" data-finding="{label}" x1="{xs:.1}" y1="{y_a}" x2="{xs:.1}" y2="{y_b}" stroke="{}" stroke-width="1.5"><title>{title}: started</title></line>"#,
            m.color
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" fill="{}" font-weight="bold">{label}</text>"#,
            xs + 3.0,
            y_a + 12.0,
            m.color
        );
        if let Some(e) = m.end_ms {
            let xe = x(e);
            let _ = writeln!(
                out,
                r#"<line class="finding-end" data-finding="{label}" x1="{xe:.1}" y1="{y_a}" x2="{xe:.1}" y2="{y_b}" stroke="{}" stroke-width="1.5" stroke-dasharray="4 3"><title>{title}: ended</title></line>"#,
                m.color
            );
        }
    }
    // Lines and legend.
    for (i, se) in series.iter().enumerate() {
        let pts: Vec<String> = se
            .points
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
            .collect();
        let dash = if se.dashed {
            r#" stroke-dasharray="6 3""#
        } else {
            ""
        };
        let label = escape(&format!("{} {}", p.key, se.label));
        let last = se.points.last().map_or(0.0, |(_, v)| *v);
        let _ = writeln!(
            out,
            r#"<polyline class="series" data-series="{label}" points="{}" fill="none" stroke="{}" stroke-width="2"{dash}><title>{label}: last {}</title></polyline>"#,
            pts.join(" "),
            se.color,
            number_label(last)
        );
        if !legend {
            continue;
        }
        let ly = y_a + 8.0 + 18.0 * i as f64;
        let _ = writeln!(
            out,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{}" stroke-width="3"{dash}/>"#,
            x_b + 12.0,
            x_b + 34.0,
            se.color
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}">{} ({})</text>"#,
            x_b + 40.0,
            ly + 4.0,
            escape(&se.label),
            number_label(last)
        );
    }
    let _ = writeln!(out, "</g>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_and_labels() {
        assert_eq!(nice_step(600.0, 5.0), 200.0);
        assert_eq!(nice_step(3.0, 5.0), 1.0);
        assert_eq!(nice_step(0.0, 5.0), 1.0);
        assert_eq!(time_step(30.0, 8.0), 5.0);
        assert_eq!(time_step(3600.0, 8.0), 600.0);
        // 2026-11-22T18:44:32Z.
        assert_eq!(time_label(1_795_373_072_000, false), "18:44:32");
        assert_eq!(time_label(1_795_373_072_000, true), "11-22 18:44");
        assert_eq!(escape("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot; ");
    }

    #[test]
    fn renders_every_series_with_escaped_labels() {
        let chart = Chart {
            title: "t & t".into(),
            subtitle: "s".into(),
            t0_ms: 0,
            t1_ms: 10_000,
            findings: vec!["1 <x>".into()],
            host: None,
            panels: vec![Panel {
                title: "java <4242>".into(),
                key: "java <4242>".into(),
                series: vec![Series {
                    label: "CLOSE_WAIT".into(),
                    color: color_for("CLOSE_WAIT"),
                    dashed: false,
                    points: vec![(0, 0.0), (5_000, 50.0), (10_000, 100.0)],
                }],
                markers: Vec::new(),
            }],
        };
        let svg = render(&chart);
        assert!(svg.starts_with("<?xml"));
        assert!(svg.contains(r#"data-series="java &lt;4242&gt; CLOSE_WAIT""#));
        assert!(svg.contains("t &amp; t"));
        assert!(svg.contains("1 &lt;x&gt;"));
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn absurd_times_give_a_bounded_chart() {
        let chart = Chart {
            title: "t".into(),
            subtitle: "s".into(),
            t0_ms: 0,
            t1_ms: u64::MAX,
            findings: Vec::new(),
            host: None,
            panels: vec![Panel {
                title: "p".into(),
                key: "p".into(),
                series: Vec::new(),
                markers: vec![Marker {
                    label: "1".into(),
                    color: "#000000",
                    start_ms: u64::MAX,
                    end_ms: Some(0),
                    title: "m".into(),
                }],
            }],
        };
        let svg = render(&chart);
        assert!(svg.matches("class=\"x-tick\"").count() <= MAX_TICKS);
        let doc = roxmltree::Document::parse(&svg).expect("XML");
        for l in doc
            .descendants()
            .filter(|n| n.attribute("data-finding").is_some())
        {
            let x: f64 = l.attribute("x1").and_then(|v| v.parse().ok()).expect("x1");
            assert!((ML..=WIDTH - MR).contains(&x), "marker off the plot: {x}");
        }
    }
}
