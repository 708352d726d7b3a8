//! Drawing the live view: one pure function per screen region, each reading
//! only the [`App`]. Laid out to stay readable at 80×24.

use super::app::{severity_label, App, View};
use super::input::HELP;
use crate::output::plain::human_interval;
use crate::output::{rfc3339, truncate};
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Sparkline, Table, TableState};
use ratatui::Frame;
use sockleak_model::enrich::{rate_text, ProcessView};
use sockleak_model::findings::Severity;
use sockleak_model::trend::Verdict;
use sockleak_model::{Role, TcpState};

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
    match app.view {
        View::Table => {
            let [table, sparks] =
                Layout::vertical([Constraint::Min(3), Constraint::Length(SPARK_HEIGHT)])
                    .areas(body);
            process_table(f, table, app);
            sparklines(f, sparks, app);
        }
        View::Detail => detail(f, body, app),
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

/// The process table, sorted and filtered, with the selection.
pub fn process_table(f: &mut Frame, area: Rect, app: &App) {
    let mut title = format!(" Processes · sort: {} ", app.sort.label());
    if !app.filter_text.is_empty() {
        title.push_str(&format!("· filter: {} ", app.filter_text));
    }
    let block = Block::default().borders(Borders::ALL).title(title);
    let header = Row::new([
        right("PID".into()),
        Cell::from("COMM"),
        Cell::from("SEV"),
        right("CL-WAIT".into()),
        right("CW/MIN".into()),
        right("ESTAB".into()),
        right("FDS".into()),
        right("USE%".into()),
        right("FD/MIN".into()),
        right("ETA".into()),
    ])
    .style(Style::default().add_modifier(Modifier::BOLD));
    let rows: Vec<Row> = app.rows().into_iter().map(table_row).collect();
    let empty = rows.is_empty();
    let widths = [
        Constraint::Length(7),
        Constraint::Length(14),
        Constraint::Length(4),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(5),
        Constraint::Length(6),
        Constraint::Length(4),
        Constraint::Length(7),
        Constraint::Length(6),
    ];
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
            "waiting for the first snapshot…"
        } else if !app.filter_text.is_empty() {
            "no process matches the filter (Esc clears it)"
        } else {
            "no process holds TCP sockets or changes its fds"
        };
        let inner = Rect {
            x: area.x + 2,
            y: area.y + 2,
            width: area.width.saturating_sub(4),
            height: 1.min(area.height.saturating_sub(3)),
        };
        f.render_widget(Paragraph::new(msg), inner);
    }
}

fn right(s: String) -> Cell<'static> {
    Cell::from(Line::from(s).alignment(Alignment::Right))
}

fn table_row(p: &ProcessView) -> Row<'static> {
    let use_pct = match (p.fd_count, p.fd_limit) {
        (Some(n), Some(l)) if l > 0 => format!("{}", u64::from(n) * 100 / l),
        _ => String::new(),
    };
    let style = if p.leaking {
        severity_style(p.severity).add_modifier(Modifier::BOLD)
    } else {
        Style::default()
    };
    Row::new(vec![
        right(p.key.pid.to_string()),
        Cell::from(truncate(&p.comm, 14)),
        Cell::from(Span::styled(
            severity_label(p.severity),
            severity_style(p.severity),
        )),
        right(p.states.get(TcpState::CloseWait).to_string()),
        right(rate(p.close_wait_rate_per_min)),
        right(p.states.get(TcpState::Established).to_string()),
        right(p.fd_count.map_or("?".to_string(), |n| n.to_string())),
        right(use_pct),
        right(rate(p.fd_rate_per_min)),
        right(short_eta(p.eta_s)),
    ])
    .style(style)
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
    f.render_widget(
        Sparkline::default()
            .block(Block::default().borders(Borders::ALL).title(cw_title))
            .data(tail(&cw, left.width))
            .style(Style::default().fg(Color::Yellow)),
        left,
    );
    f.render_widget(
        Sparkline::default()
            .block(Block::default().borders(Borders::ALL).title(fd_title))
            .data(tail(&fds, right_area.width))
            .style(Style::default().fg(Color::Cyan)),
        right_area,
    );
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
        let keys = match app.view {
            View::Table => " q quit  ? help  ↑↓ select  Enter details  s sort  / filter  p pause",
            View::Detail => " q quit  ? help  Esc back  ↑↓ scroll",
        };
        if app.collector_done {
            format!(" sampling finished ·{keys}")
        } else {
            keys.to_string()
        }
    };
    f.render_widget(
        Paragraph::new(text).style(Style::default().add_modifier(Modifier::REVERSED)),
        area,
    );
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
