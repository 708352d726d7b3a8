//! Drawing the live view: one pure function per screen region, each reading
//! only the [`App`]. Laid out to stay readable at 80×24.

use super::app::{severity_label, App, Pane, View};
use super::input::HELP;
use crate::output::plain::human_interval;
use crate::output::{netns_label, rfc3339, truncate};
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Sparkline, Table, TableState};
use ratatui::Frame;
use sockleak_model::enrich::{rate_text, ProcessView};
use sockleak_model::findings::{Finding, Severity};
use sockleak_model::trend::Verdict;
use sockleak_model::{Role, Snapshot, TcpState};

/// Height of the sparkline row (borders included).
const SPARK_HEIGHT: u16 = 5;

/// The whole frame.
pub fn draw(f: &mut Frame, app: &App) {
    let [head, body, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(f.area());
    header(f, head, app);
    match (app.pane, app.view) {
        (Pane::Processes, View::Table) => {
            let [table, sparks] =
                Layout::vertical([Constraint::Min(3), Constraint::Length(SPARK_HEIGHT)])
                    .areas(body);
            process_table(f, table, app);
            sparklines(f, sparks, app);
        }
        (Pane::Processes, View::Detail) => detail(f, body, app),
        (Pane::Findings, View::Table) => findings_table(f, body, app),
        (Pane::Findings, View::Detail) => finding_detail(f, body, app),
    }
    footer(f, foot, app);
    if app.help {
        help(f, f.area());
    }
}

fn severity_style(s: Option<Severity>) -> Style {
    match s {
        Some(Severity::Critical) => Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
        Some(Severity::Warning) => Style::default().fg(Color::Yellow),
        Some(Severity::Info) => Style::default().fg(Color::Cyan),
        None => Style::default(),
    }
}

/// "18:44:32" (UTC).
fn clock(ms: u64) -> String {
    rfc3339(ms).get(11..19).unwrap_or("--:--:--").to_string()
}

/// "+600", "-3", "0"; empty when unknown.
fn rate(r: Option<f64>) -> String {
    match r {
        Some(r) if r.abs() < 0.05 => "0".to_string(),
        Some(r) if r > 0.0 => format!("+{}", rate_text(r)),
        Some(r) => rate_text(r),
        None => String::new(),
    }
}

/// "9s", "3m", "2h", "4d": a forecast in a narrow column.
fn short_eta(s: Option<u64>) -> String {
    match s {
        None => String::new(),
        Some(s) if s < 120 => format!("{s}s"),
        Some(s) if s < 7200 => format!("{}m", s / 60),
        Some(s) if s < 172_800 => format!("{}h", s / 3600),
        Some(s) => format!("{}d", s / 86_400),
    }
}

/// Host, time, findings by severity, totals, sample number and interval:
/// most important first, so a narrow terminal cuts the least.
pub fn header(f: &mut Frame, area: Rect, app: &App) {
    let mut spans = vec![Span::styled(
        "sockleak watch",
        Style::default().add_modifier(Modifier::BOLD),
    )];
    if app.paused {
        spans.push(Span::raw(" "));
        spans.push(Span::styled(
            "PAUSED",
            Style::default().add_modifier(Modifier::REVERSED),
        ));
    }
    if let (Some(snap), Some(obs)) = (&app.snapshot, &app.obs) {
        let n = |s: Severity| obs.findings.iter().filter(|x| x.severity == s).count();
        spans.push(Span::raw(format!(
            "  {}  {}  ",
            truncate(&snap.host.hostname, 16),
            clock(obs.time_ms),
        )));
        let (c, w) = (n(Severity::Critical), n(Severity::Warning));
        spans.push(Span::styled(
            format!("{c} crit"),
            severity_style((c > 0).then_some(Severity::Critical)),
        ));
        spans.push(Span::raw(" "));
        spans.push(Span::styled(
            format!("{w} warn"),
            severity_style((w > 0).then_some(Severity::Warning)),
        ));
        spans.push(Span::raw(format!(
            "  TCP {}  CLOSE_WAIT {}  #{} {}",
            obs.totals.total(),
            obs.totals.get(TcpState::CloseWait),
            obs.seq,
            human_interval(app.interval_ms).replace(' ', ""),
        )));
    } else {
        spans.push(Span::raw("  waiting for the first snapshot…"));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// A column of the process table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Col {
    Pid,
    User,
    Comm,
    Sev,
    CloseWait,
    CwRate,
    Estab,
    Fds,
    UsePct,
    FdRate,
    Eta,
    Netns,
}

/// Every column in screen order: title, width, right-aligned.
const COLUMNS: [(Col, &str, u16, bool); 12] = [
    (Col::Pid, "PID", 7, true),
    (Col::User, "USER", 8, false),
    (Col::Comm, "COMM", COMM_MIN, false),
    (Col::Sev, "SEV", 4, false),
    (Col::CloseWait, "CL-WAIT", 7, true),
    (Col::CwRate, "CW/MIN", 6, true),
    (Col::Estab, "ESTAB", 5, true),
    (Col::Fds, "FDS", 6, true),
    (Col::UsePct, "USE%", 4, true),
    (Col::FdRate, "FD/MIN", 6, true),
    (Col::Eta, "ETA", 5, true),
    (Col::Netns, "NETNS", 8, false),
];

/// COMM gets what is left, between these widths.
const COMM_MIN: u16 = 10;
const COMM_MAX: u16 = 16;

/// Left out, in this order, when the table is too narrow for all columns
/// (80 columns fit the rest; the detail view shows both).
const DROP_FIRST: [Col; 2] = [Col::UsePct, Col::Estab];

/// The columns that fit in `inner` cells (the "▶ " marker included), with
/// their widths.
fn columns(inner: u16) -> Vec<(Col, &'static str, u16, bool)> {
    let mut cols: Vec<_> = COLUMNS.to_vec();
    let need = |c: &[(Col, &str, u16, bool)]| -> u16 { c.iter().map(|x| x.2 + 1).sum::<u16>() + 1 };
    for d in DROP_FIRST {
        if need(&cols) <= inner {
            break;
        }
        cols.retain(|c| c.0 != d);
    }
    let spare = inner.saturating_sub(need(&cols));
    for c in &mut cols {
        if c.0 == Col::Comm {
            c.2 = (COMM_MIN + spare).min(COMM_MAX);
        }
    }
    cols
}

/// The process table, sorted and filtered, with the selection.
pub fn process_table(f: &mut Frame, area: Rect, app: &App) {
    let mut title = format!(" Processes · sort: {} ", app.sort.label());
    if app.reverse {
        title.push_str("(reversed) ");
    }
    if !app.filter_text.is_empty() {
        title.push_str(&format!("· filter: {} ", app.filter_text));
    }
    match app.host_findings() {
        0 => {}
        1 => title.push_str("· Tab: 1 host finding "),
        n => title.push_str(&format!("· Tab: {n} host findings ")),
    }
    let block = Block::default().borders(Borders::ALL).title(title);
    let cols = columns(area.width.saturating_sub(2));
    let header = Row::new(cols.iter().map(|(_, t, _, r)| {
        if *r {
            right((*t).to_string())
        } else {
            Cell::from(*t)
        }
    }))
    .style(Style::default().add_modifier(Modifier::BOLD));
    let rows: Vec<Row> = app
        .rows()
        .into_iter()
        .map(|p| table_row(p, app, &cols))
        .collect();
    let empty = rows.is_empty();
    let widths: Vec<Constraint> = cols.iter().map(|c| Constraint::Length(c.2)).collect();
    let table = Table::new(rows, widths)
        .header(header)
        .block(block)
        .column_spacing(1)
        .highlight_symbol("▶ ")
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    let mut state = TableState::default().with_selected(app.selected_index());
    f.render_stateful_widget(table, area, &mut state);
    if empty {
        let msg = if app.obs.is_none() {
            "waiting for the first snapshot…".to_string()
        } else if !app.filter_text.is_empty() {
            "no process matches the filter (Esc clears it)".to_string()
        } else if app.idle_count > 0 {
            format!(
                "no process holds TCP sockets or changes its fds ({} hidden: a shows them)",
                app.idle_count
            )
        } else {
            "no process holds TCP sockets or changes its fds".to_string()
        };
        empty_message(f, area, msg);
    }
}

fn empty_message(f: &mut Frame, area: Rect, msg: String) {
    let inner = Rect {
        x: area.x + 2,
        y: area.y + 2,
        width: area.width.saturating_sub(4),
        height: 1.min(area.height.saturating_sub(3)),
    };
    f.render_widget(Paragraph::new(msg), inner);
}

fn right(s: String) -> Cell<'static> {
    Cell::from(Line::from(s).alignment(Alignment::Right))
}

/// A namespace in `max` cells: its name, "host", or the tail of its inode
/// number (the tail tells two inodes apart, the head does not).
fn netns_cell(snap: Option<&Snapshot>, id: u64, max: usize) -> String {
    let label = match snap {
        Some(s) => netns_label(s, id),
        None => id.to_string(),
    };
    let n = label.chars().count();
    if n <= max || !label.bytes().all(|b| b.is_ascii_digit()) {
        return truncate(&label, max);
    }
    let tail: String = label.chars().skip(n + 1 - max).collect();
    format!("…{tail}")
}

fn table_row(p: &ProcessView, app: &App, cols: &[(Col, &str, u16, bool)]) -> Row<'static> {
    let use_pct = match (p.fd_count, p.fd_limit) {
        (Some(n), Some(l)) if l > 0 => format!("{}", u64::from(n) * 100 / l),
        _ => String::new(),
    };
    let style = if p.leaking {
        severity_style(p.severity).add_modifier(Modifier::BOLD)
    } else {
        Style::default()
    };
    let cells: Vec<Cell> = cols
        .iter()
        .map(|(c, _, w, _)| {
            let w = usize::from(*w);
            match c {
                Col::Pid => right(p.key.pid.to_string()),
                Col::User => Cell::from(truncate(&app.user(p.uid), w)),
                Col::Comm => Cell::from(truncate(&p.comm, w)),
                Col::Sev => Cell::from(Span::styled(
                    severity_label(p.severity),
                    severity_style(p.severity),
                )),
                Col::CloseWait => right(p.states.get(TcpState::CloseWait).to_string()),
                Col::CwRate => right(rate(p.close_wait_rate_per_min)),
                Col::Estab => right(p.states.get(TcpState::Established).to_string()),
                Col::Fds => right(p.fd_count.map_or("?".to_string(), |n| n.to_string())),
                Col::UsePct => right(use_pct.clone()),
                Col::FdRate => right(rate(p.fd_rate_per_min)),
                Col::Eta => right(short_eta(p.eta_s)),
                Col::Netns => Cell::from(netns_cell(app.snapshot.as_ref(), p.netns, w)),
            }
        })
        .collect();
    Row::new(cells).style(style)
}

/// Who a finding is about: "java (4242)", or its namespace when no process
/// holds what it counts.
fn finding_who(f: &Finding, snap: Option<&Snapshot>) -> String {
    match (&f.comm, f.pid) {
        (Some(c), Some(p)) => format!("{c} ({p})"),
        (None, Some(p)) => format!("pid {p}"),
        _ => match (f.netns, snap) {
            (Some(id), Some(s)) => match netns_label(s, id) {
                l if l == "host" => "host".to_string(),
                l => format!("host, netns {l}"),
            },
            _ => "host".to_string(),
        },
    }
}

/// Every current finding: host-level ones (no process) as well.
pub fn findings_table(f: &mut Frame, area: Rect, app: &App) {
    let list = app.findings();
    let mut title = format!(" Findings ({}) ", list.len());
    if !app.filter_text.is_empty() {
        title.push_str(&format!("· filter: {} ", app.filter_text));
    }
    title.push_str("· Tab: processes ");
    let block = Block::default().borders(Borders::ALL).title(title);
    let header = Row::new([
        Cell::from("SEV"),
        Cell::from("KIND"),
        Cell::from("WHO"),
        right("COUNT".into()),
        Cell::from("WHAT"),
    ])
    .style(Style::default().add_modifier(Modifier::BOLD));
    let snap = app.snapshot.as_ref();
    let rows: Vec<Row> = list
        .iter()
        .map(|x| {
            Row::new(vec![
                Cell::from(Span::styled(
                    severity_label(Some(x.severity)),
                    severity_style(Some(x.severity)),
                )),
                Cell::from(x.kind.as_str()),
                Cell::from(truncate(&finding_who(x, snap), 18)),
                right(x.count.to_string()),
                Cell::from(x.summary.clone()),
            ])
        })
        .collect();
    let empty = rows.is_empty();
    let widths = [
        Constraint::Length(4),
        Constraint::Length(21),
        Constraint::Length(18),
        Constraint::Length(6),
        Constraint::Min(10),
    ];
    let table = Table::new(rows, widths)
        .header(header)
        .block(block)
        .column_spacing(1)
        .highlight_symbol("▶ ")
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    let mut state = TableState::default().with_selected(app.selected_finding_index());
    f.render_stateful_widget(table, area, &mut state);
    if empty {
        let msg = if app.obs.is_none() {
            "waiting for the first snapshot…"
        } else if !app.filter_text.is_empty() {
            "no finding matches the filter (Esc clears it)"
        } else {
            "no findings: nothing leaks or runs short so far"
        };
        empty_message(f, area, msg.to_string());
    }
}

/// The numbers of a finding, one "label  value" line each, those it has.
fn finding_numbers(x: &Finding, snap: Option<&Snapshot>) -> Vec<(&'static str, String)> {
    let mut v: Vec<(&'static str, String)> = vec![
        ("who", finding_who(x, snap)),
        ("count", x.count.to_string()),
    ];
    let mut add = |k: &'static str, val: Option<String>| {
        if let Some(val) = val {
            v.push((k, val));
        }
    };
    add("limit", x.limit.map(|l| l.to_string()));
    add("usable ports", x.usable_ports.map(|u| u.to_string()));
    add(
        "of the limit",
        x.ratio.map(|r| format!("{:.0}%", r * 100.0)),
    );
    add("backlog", x.backlog.map(|b| b.to_string()));
    add(
        "ListenOverflows",
        x.listen_overflows.map(|n| format!("{n} (since boot)")),
    );
    add("fin_timeout", x.fin_timeout_s.map(|s| format!("{s} s")));
    add(
        "fds",
        x.fd_count.map(|n| match x.fd_limit {
            Some(l) => format!("{n} of {l}"),
            None => n.to_string(),
        }),
    );
    add(
        "growth",
        x.rate_per_min
            .filter(|r| *r != 0.0)
            .map(|r| format!("{}/min", rate(Some(r)))),
    );
    add("limit in", x.eta_s.map(|e| short_eta(Some(e))));
    add(
        "oldest",
        x.oldest_age_s.map(|a| {
            let q = x.age_source.map_or("", |s| s.qualifier());
            format!("{q}{}", sockleak_model::age::human_duration(a))
        }),
    );
    add("unread bytes", x.unread_bytes.map(|b| b.to_string()));
    add("local", x.local.map(|e| e.to_string()));
    add("local address", x.local_ip.map(|ip| ip.to_string()));
    add("remote", x.remote.map(|e| e.to_string()));
    add(
        "orphaned",
        x.orphan.then(|| "yes: no process holds them".into()),
    );
    add(
        "peer",
        x.peer_pid.map(|p| match &x.peer_comm {
            Some(c) => format!("{c} (pid {p})"),
            None => format!("pid {p}"),
        }),
    );
    add(
        "sockets",
        (!x.cookies.is_empty()).then(|| {
            let shown: Vec<String> = x
                .cookies
                .iter()
                .take(5)
                .map(|c| format!("#{}", c.0))
                .collect();
            shown.join(" ")
        }),
    );
    v
}

/// One finding: its numbers, what it means and the advice (scrollable).
pub fn finding_detail(f: &mut Frame, area: Rect, app: &App) {
    let Some(x) = app.selected_finding_view() else {
        f.render_widget(
            Paragraph::new("this finding is gone: resolved since (Esc: back)"),
            area,
        );
        return;
    };
    let title = format!(
        " {} · {} · {} (↑↓ scroll) ",
        x.kind.as_str(),
        x.severity.as_str(),
        finding_who(x, app.snapshot.as_ref())
    );
    let width = usize::from(area.width.saturating_sub(2)).max(20);
    let dim = Style::default().add_modifier(Modifier::DIM);
    let mut lines = vec![section("Numbers")];
    for (k, v) in finding_numbers(x, app.snapshot.as_ref()) {
        lines.push(Line::from(vec![
            Span::styled(format!(" {k:<16}"), dim),
            Span::raw(truncate(&v, width.saturating_sub(17))),
        ]));
    }
    lines.push(section("What"));
    lines.extend(wrap(&x.summary, width, " ").into_iter().map(Line::from));
    lines.push(section("Advice"));
    lines.extend(wrap(&x.advice, width, " ").into_iter().map(Line::from));
    lines.push(Line::from(Span::styled(
        format!(" More: sockleak explain {}", x.explain),
        dim,
    )));
    let last = u16::try_from(lines.len().saturating_sub(1)).unwrap_or(u16::MAX);
    f.render_widget(
        Paragraph::new(lines)
            .block(Block::default().borders(Borders::ALL).title(title))
            .scroll((app.detail_scroll.min(last), 0)),
        area,
    );
}

/// CLOSE_WAIT and fd counts of the selected process over the window.
pub fn sparklines(f: &mut Frame, area: Rect, app: &App) {
    let [left, right_area] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    let (cw, fds) = app.selected_series();
    let sel = app.selected_view();
    let cw_title = match sel {
        Some(p) => format!(
            " CLOSE_WAIT {} {}· {} ",
            p.states.get(TcpState::CloseWait),
            match rate_suffix(p.close_wait_rate_per_min) {
                r if r.is_empty() => r,
                r => format!("{r} "),
            },
            truncate(&p.comm, 10),
        ),
        None => " CLOSE_WAIT ".to_string(),
    };
    let fd_title = match sel {
        Some(p) => {
            let mut t = format!(
                " fds {}{} ",
                p.fd_count.map_or("?".to_string(), |n| n.to_string()),
                p.fd_limit.map_or(String::new(), |l| format!("/{l}")),
            );
            let r = rate_suffix(p.fd_rate_per_min);
            if !r.is_empty() {
                t.push_str(&r);
                t.push(' ');
            }
            t
        }
        None => " fds ".to_string(),
    };
    let tail = |v: &[u64], w: u16| -> Vec<u64> {
        let w = usize::from(w.saturating_sub(2));
        v[v.len().saturating_sub(w)..].to_vec()
    };
    for (title, data, color, area) in [
        (cw_title, tail(&cw, left.width), Color::Yellow, left),
        (
            fd_title,
            tail(&fds, right_area.width),
            Color::Cyan,
            right_area,
        ),
    ] {
        let scale = truncate(
            &scale_label(&data),
            usize::from(area.width.saturating_sub(2)),
        );
        f.render_widget(
            Sparkline::default()
                .block(
                    Block::default()
                        .borders(Borders::ALL)
                        .title(title)
                        .title_bottom(Line::from(scale).right_aligned()),
                )
                .data(&data)
                .style(Style::default().fg(color)),
            area,
        );
    }
}

/// The scale of a sparkline: its bars run from 0 to the largest value
/// shown, so a steady count fills the box; the label says so.
pub fn scale_label(v: &[u64]) -> String {
    let (Some(min), Some(max)) = (v.iter().min(), v.iter().max()) else {
        return String::new();
    };
    let n = v.len();
    let samples = if n == 1 { "sample" } else { "samples" };
    if min == max {
        format!(" {n} {samples}: flat at {max} ")
    } else {
        format!(" {n} {samples}: min {min}, max {max} ")
    }
}

fn rate_suffix(r: Option<f64>) -> String {
    match r {
        Some(r) if r != 0.0 => format!("{}/min", rate(Some(r))),
        _ => String::new(),
    }
}

/// The selected process: identity and fds, sparklines, then findings with
/// advice, groups and oldest sockets (scrollable).
pub fn detail(f: &mut Frame, area: Rect, app: &App) {
    let Some(p) = app.selected_view() else {
        f.render_widget(Paragraph::new("no process selected (Esc: back)"), area);
        return;
    };
    let [info, sparks, body] = Layout::vertical([
        Constraint::Length(5),
        Constraint::Length(SPARK_HEIGHT),
        Constraint::Min(3),
    ])
    .areas(area);
    process_info(f, info, p);
    sparklines(f, sparks, app);
    let block = Block::default()
        .borders(Borders::ALL)
        .title(" Findings · groups · oldest sockets (↑↓ scroll) ");
    let width = usize::from(body.width.saturating_sub(2)).max(20);
    let lines = detail_lines(app, width);
    // Lines are wrapped already, so their count is the content height: never
    // scroll past the last one.
    let last = u16::try_from(lines.len().saturating_sub(1)).unwrap_or(u16::MAX);
    f.render_widget(
        Paragraph::new(lines)
            .block(block)
            .scroll((app.detail_scroll.min(last), 0)),
        body,
    );
}

fn process_info(f: &mut Frame, area: Rect, p: &ProcessView) {
    let mut title = format!(" {} (pid {}) ", p.comm, p.key.pid);
    if let Some(s) = p.severity {
        title.push_str(&format!("· {} ", s.as_str()));
    }
    if p.leaking {
        title.push_str("· leaking ");
    }
    let width = usize::from(area.width.saturating_sub(8)).max(10);
    let fds = match (p.fd_count, p.fd_limit) {
        (Some(n), Some(l)) if l > 0 => {
            format!("{n} of {l} ({}%)", u64::from(n) * 100 / l)
        }
        (Some(n), _) => n.to_string(),
        _ => "unreadable".to_string(),
    };
    let mut fd_line = fds;
    if let Some(k) = p.fds {
        fd_line.push_str(&format!(
            ": sockets {}, pipes {}, files {}, anon {}",
            k.socket, k.pipe, k.file, k.anon
        ));
    }
    if let Some(r) = p.fd_rate_per_min.filter(|r| *r != 0.0) {
        fd_line.push_str(&format!(" · {}/min", rate(Some(r))));
    }
    if let Some(e) = p.eta_s {
        fd_line.push_str(&format!(" · limit in {}", short_eta(Some(e))));
    }
    let tcp: Vec<String> = p
        .states
        .nonzero()
        .map(|(s, n)| {
            if s == TcpState::CloseWait {
                match p.close_wait_rate_per_min.filter(|r| *r != 0.0) {
                    Some(r) => format!("{} {n} ({}/min)", s.kernel_name(), rate(Some(r))),
                    None => format!("{} {n}", s.kernel_name()),
                }
            } else {
                format!("{} {n}", s.kernel_name())
            }
        })
        .collect();
    let label = Style::default().add_modifier(Modifier::DIM);
    let lines = vec![
        Line::from(vec![
            Span::styled("cmd  ", label),
            Span::raw(truncate(&p.cmdline, width)),
        ]),
        Line::from(vec![
            Span::styled("fds  ", label),
            Span::raw(truncate(&fd_line, width)),
        ]),
        Line::from(vec![
            Span::styled("tcp  ", label),
            Span::raw(truncate(
                &if tcp.is_empty() {
                    "none".to_string()
                } else {
                    tcp.join(", ")
                },
                width,
            )),
        ]),
    ];
    f.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(title)),
        area,
    );
}

/// Word-wraps `text` to `width` columns, every line starting with `indent`.
pub fn wrap(text: &str, width: usize, indent: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut line = String::from(indent);
    let base = indent.chars().count();
    for word in text.split_whitespace() {
        let len = line.chars().count();
        if len > base && len + 1 + word.chars().count() > width {
            out.push(std::mem::replace(&mut line, String::from(indent)));
        }
        if line.chars().count() > base {
            line.push(' ');
        }
        line.push_str(word);
    }
    if line.chars().count() > base {
        out.push(line);
    }
    out
}

fn section(title: &str) -> Line<'static> {
    Line::from(Span::styled(
        title.to_string(),
        Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED),
    ))
}

/// The scrollable part of the detail view.
pub fn detail_lines(app: &App, width: usize) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    let findings = app.selected_findings();
    lines.push(section(&format!("Findings ({})", findings.len())));
    if findings.is_empty() {
        lines.push(Line::from(" none so far"));
    }
    let dim = Style::default().add_modifier(Modifier::DIM);
    for x in findings {
        lines.push(Line::from(vec![
            Span::raw(" "),
            Span::styled(
                x.severity.as_str().to_uppercase(),
                severity_style(Some(x.severity)),
            ),
            Span::raw(" "),
            Span::styled(
                x.kind.as_str(),
                Style::default().add_modifier(Modifier::BOLD),
            ),
        ]));
        lines.extend(wrap(&x.summary, width, "   ").into_iter().map(Line::from));
        lines.extend(
            wrap(&x.advice, width, "   ")
                .into_iter()
                .map(|l| Line::from(Span::styled(l, dim))),
        );
        lines.push(Line::from(Span::styled(
            format!("   More: sockleak explain {}", x.explain),
            dim,
        )));
    }
    lines.push(section("Groups"));
    let groups = app.selected_groups();
    if groups.is_empty() {
        lines.push(Line::from(" no TCP sockets"));
    } else {
        lines.push(Line::from(Span::styled(
            format!(
                " {:<11} {:<6} {:<24} {:>6} {:>7}  TREND",
                "STATE", "ROLE", "ENDPOINT", "COUNT", "/MIN"
            ),
            dim,
        )));
    }
    for g in groups.iter().take(10) {
        let role = match g.key.group.role {
            Role::Server => "server",
            Role::Client => "client",
        };
        let verdict = match g.verdict {
            Some(Verdict::Leak) => "leak",
            Some(Verdict::Churn) => "churn",
            Some(Verdict::Step) => "step",
            Some(Verdict::Stable) => "stable",
            Some(Verdict::Learning) => "learning",
            None => "",
        };
        let line = format!(
            " {:<11} {:<6} {:<24} {:>6} {:>7}  {verdict}",
            g.key.group.state.kernel_name(),
            role,
            truncate(&g.key.group.endpoint.to_string(), 24),
            g.count,
            rate(g.rate_per_min),
        );
        let style = if g.verdict == Some(Verdict::Leak) {
            severity_style(Some(Severity::Warning))
        } else {
            Style::default()
        };
        lines.push(Line::from(Span::styled(line, style)));
    }
    if groups.len() > 10 {
        lines.push(Line::from(format!(" … {} more", groups.len() - 10)));
    }
    lines.push(section("Oldest sockets"));
    let old = app.selected_oldest(5);
    if old.is_empty() {
        lines.push(Line::from(" none"));
    }
    for s in old {
        let age = match s.age {
            Some(a) => format!(
                "{}{}",
                a.source.qualifier(),
                sockleak_model::age::human_duration(a.secs())
            ),
            None => "age unknown".to_string(),
        };
        lines.push(Line::from(format!(
            " {:<11} {} ↔ {}  {age}  #{}",
            s.state.kernel_name(),
            s.local,
            s.remote,
            s.cookie
        )));
    }
    lines
}

/// Key hints, the filter being typed, or the end of collection.
pub fn footer(f: &mut Frame, area: Rect, app: &App) {
    let text = if app.editing {
        format!(" filter: {}█   Enter keep · Esc clear", app.filter_text)
    } else {
        let keys: &[&str] = match (app.pane, app.view) {
            (Pane::Processes, View::Table) => &[
                "q quit",
                "? help",
                "Enter details",
                "Tab findings",
                "s r sort",
                "/ filter",
                "p pause",
            ],
            (Pane::Findings, View::Table) => &[
                "q quit",
                "? help",
                "Enter details",
                "Tab processes",
                "/ filter",
                "p pause",
            ],
            (_, View::Detail) => &["q quit", "? help", "Esc back", "↑↓ scroll"],
        };
        let mut text = String::new();
        if app.collector_done {
            text.push_str(" sampling finished ·");
        }
        // As many hints as fit next to the idle count (? lists them all).
        let room = usize::from(area.width).saturating_sub(idle_text(app).chars().count());
        for k in keys {
            if text.chars().count() + 1 + k.chars().count() > room {
                break;
            }
            text.push(' ');
            text.push_str(k);
            text.push(' ');
        }
        text
    };
    let idle = idle_text(app);
    let idle_w = u16::try_from(idle.chars().count()).unwrap_or(0);
    let [keys_area, idle_area] =
        Layout::horizontal([Constraint::Min(0), Constraint::Length(idle_w)]).areas(area);
    let reversed = Style::default().add_modifier(Modifier::REVERSED);
    f.render_widget(Paragraph::new(text).style(reversed), keys_area);
    f.render_widget(
        Paragraph::new(Line::from(idle).right_aligned()).style(reversed),
        idle_area,
    );
}

/// How many processes the table leaves out, for the footer's right end.
fn idle_text(app: &App) -> String {
    match (app.pane, app.view, app.idle_count) {
        (Pane::Processes, View::Table, n) if n > 0 && app.show_idle => {
            format!(" {n} idle shown · a hides ")
        }
        (Pane::Processes, View::Table, n) if n > 0 => format!(" {n} idle hidden · a shows "),
        _ => String::new(),
    }
}

/// The key list, over whatever is shown.
pub fn help(f: &mut Frame, area: Rect) {
    let w = area.width.min(76);
    let h = area.height.min(HELP.len() as u16 + 6);
    let popup = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    let mut lines: Vec<Line> = HELP
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(
                    format!(" {k:<14}"),
                    Style::default().add_modifier(Modifier::BOLD),
                ),
                Span::raw(*what),
            ])
        })
        .collect();
    lines.push(Line::from(""));
    lines.push(Line::from(
        " A leak: the count rose in ≥3 intervals over ≥5 samples, and what",
    ));
    lines.push(Line::from(
        " arrived stayed. Details: docs/watch.md, sockleak explain.",
    ));
    f.render_widget(Clear, popup);
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" Help · any key closes "),
        ),
        popup,
    );
}
