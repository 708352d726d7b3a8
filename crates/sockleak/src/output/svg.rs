//! SVG line charts for `sockleak report`, written by hand: a few panels of
//! counts over time (one per process, one for the host), one line per TCP
//! state plus the open fds. Plain SVG 1.1, no scripts or external resources,
//! so it opens in any browser and pastes into incident reports.

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

/// One chart panel: a title and its lines on shared axes.
#[derive(Clone, Debug, PartialEq)]
pub struct Panel {
    pub title: String,
    pub series: Vec<Series>,
}

/// The whole picture: panels stacked vertically over the same time range.
#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    pub title: String,
    pub subtitle: String,
    pub t0_ms: u64,
    pub t1_ms: u64,
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

/// A time step (seconds) giving at most ~8 ticks.
fn time_step(span_s: f64) -> f64 {
    const STEPS: [f64; 16] = [
        1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
        21_600.0, 86_400.0,
    ];
    STEPS
        .iter()
        .copied()
        .find(|s| span_s / s <= 8.0)
        .unwrap_or(86_400.0)
}

/// "45s", "2m", "1m30s", "2h".
fn time_label(s: f64) -> String {
    let s = s.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 if s.is_multiple_of(60) => format!("{}m", s / 60),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        _ if s.is_multiple_of(3600) => format!("{}h", s / 3600),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

fn number_label(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{}k", (v / 1000.0).round())
    } else {
        format!("{}", v.round())
    }
}

/// The chart as an SVG document.
pub fn render(chart: &Chart) -> String {
    let height = TOP + PANEL_H * chart.panels.len().max(1) as f64 + 10.0;
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
    let span_ms = chart.t1_ms.saturating_sub(chart.t0_ms).max(1);
    for (i, p) in chart.panels.iter().enumerate() {
        panel(&mut out, p, TOP + PANEL_H * i as f64, chart.t0_ms, span_ms);
    }
    out.push_str("</svg>\n");
    out
}

fn panel(out: &mut String, p: &Panel, y0: f64, t0: u64, span_ms: u64) {
    let (x_a, x_b) = (ML, WIDTH - MR);
    let (y_a, y_b) = (y0 + MT, y0 + PANEL_H - MB);
    let max = p
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|(_, v)| *v))
        .fold(0.0f64, f64::max);
    let step = nice_step(max, 5.0);
    let top = (max / step).ceil().max(1.0) * step;
    let x = |t: u64| x_a + (t.saturating_sub(t0)) as f64 / span_ms as f64 * (x_b - x_a);
    let y = |v: f64| y_b - v / top * (y_b - y_a);

    let _ = writeln!(out, r#"<g class="panel">"#);
    let _ = writeln!(
        out,
        r#"<text x="{x_a}" y="{}" font-size="14" font-weight="bold">{}</text>"#,
        y0 + 18.0,
        escape(&p.title)
    );
    // Grid and y labels.
    let mut v = 0.0;
    while v <= top + step / 2.0 {
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
        v += step;
    }
    // Time ticks.
    let span_s = span_ms as f64 / 1000.0;
    let ts = time_step(span_s);
    let mut s = 0.0;
    while s <= span_s + 1e-9 {
        let xx = x_a + s / span_s.max(1e-9) * (x_b - x_a);
        let _ = writeln!(
            out,
            r##"<line x1="{xx:.1}" y1="{y_b}" x2="{xx:.1}" y2="{:.1}" stroke="#999999"/>"##,
            y_b + 4.0
        );
        let _ = writeln!(
            out,
            r##"<text x="{xx:.1}" y="{:.1}" text-anchor="middle" fill="#555555">{}</text>"##,
            y_b + 17.0,
            time_label(s)
        );
        s += ts;
    }
    let _ = writeln!(
        out,
        r##"<rect x="{x_a}" y="{y_a}" width="{:.1}" height="{:.1}" fill="none" stroke="#999999"/>"##,
        x_b - x_a,
        y_b - y_a
    );
    // Lines and legend.
    for (i, se) in p.series.iter().enumerate() {
        let pts: Vec<String> = se
            .points
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
            .collect();
        let dash = if se.dashed {
            r#" stroke-dasharray="6 3""#
        } else {
            ""
        };
        let label = escape(&format!("{} {}", p.title, se.label));
        let last = se.points.last().map_or(0.0, |(_, v)| *v);
        let _ = writeln!(
            out,
            r#"<polyline class="series" data-series="{label}" points="{}" fill="none" stroke="{}" stroke-width="2"{dash}><title>{label}: last {}</title></polyline>"#,
            pts.join(" "),
            se.color,
            number_label(last)
        );
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
        assert_eq!(time_step(30.0), 5.0);
        assert_eq!(time_step(3600.0), 600.0);
        assert_eq!(time_label(90.0), "1m30s");
        assert_eq!(time_label(120.0), "2m");
        assert_eq!(escape("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot; ");
    }

    #[test]
    fn renders_every_series_with_escaped_labels() {
        let chart = Chart {
            title: "t & t".into(),
            subtitle: "s".into(),
            t0_ms: 0,
            t1_ms: 10_000,
            panels: vec![Panel {
                title: "java <4242>".into(),
                series: vec![Series {
                    label: "CLOSE_WAIT".into(),
                    color: color_for("CLOSE_WAIT"),
                    dashed: false,
                    points: vec![(0, 0.0), (5_000, 50.0), (10_000, 100.0)],
                }],
            }],
        };
        let svg = render(&chart);
        assert!(svg.starts_with("<?xml"));
        assert!(svg.contains(r#"data-series="java &lt;4242&gt; CLOSE_WAIT""#));
        assert!(svg.contains("t &amp; t"));
        assert!(svg.trim_end().ends_with("</svg>"));
    }
}
