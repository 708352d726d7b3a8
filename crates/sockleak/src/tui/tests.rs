//! Whole-frame snapshots of scripted live-view sessions: a fixed collector
//! (a list of made-up snapshots) and a list of keys drive the [`App`], and
//! ratatui's `TestBackend` renders each frame at 80×24. Frames are compared
//! with files in `src/tui/snapshots/`; `UPDATE_SNAPSHOTS=1` rewrites them.

use super::app::{App, Pane, View};
use super::{render, Event};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use sockleak_model::enrich::{WatchConfig, Watcher};
use sockleak_model::{
    Cookie, Endpoint, FdKinds, Filter, HostInfo, Namespace, Owner, PortRange, Process, Snapshot,
    Socket, TcpInfo, TcpState,
};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

/// 2026-11-22T18:44:32Z: fixed, so the clock in the header is too.
const T0: u64 = 1_795_373_072_000;
const INTERVAL: u64 = 2000;
const JAVA: u32 = 4242;
const NGINX: u32 = 1234;
/// Holds no TCP socket and its fds never change: hidden until `a`.
const SSHD: u32 = 777;
/// nginx runs in a namespace of its own, named by `ip netns`.
const WEB_NS: u64 = 4_026_532_999;

fn lo(port: u16) -> Endpoint {
    Endpoint::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

fn sock(cookie: u64, state: TcpState, local: u16, remote: u16, pid: u32) -> Socket {
    Socket {
        recv_q: u32::from(state == TcpState::CloseWait),
        inode: cookie,
        netns: 1,
        // Idle for 10 min (a leak's last send is its response).
        tcp_info: Some(TcpInfo {
            last_data_sent_ms: 600_000,
            ..TcpInfo::default()
        }),
        owners: [Owner {
            pid,
            fd: 10 + (cookie % 1000) as u32,
            inherited: false,
        }]
        .into_iter()
        .collect(),
        ..Socket::new(Cookie(cookie), state, lo(local), lo(remote))
    }
}

fn process(pid: u32, comm: &str, cmdline: &str, sockets: u32, pipes: u32) -> Process {
    let fds = FdKinds {
        socket: sockets,
        pipe: pipes,
        file: 4,
        anon: 1,
        other: 0,
    };
    Process {
        pid,
        ppid: 1,
        start_time: u64::from(pid) * 10,
        comm: comm.into(),
        cmdline: cmdline.into(),
        uid: 1000,
        netns: 1,
        ns_pid: None,
        fd_count: Some(fds.total()),
        fd_limit: Some(1024),
        fd_limit_hard: Some(4096),
        fds: Some(fds),
        closed_but_held: Some(0),
    }
}

/// Sample `i` of the fixed collector: java leaks three server-side
/// CLOSE_WAIT sockets per interval on :9530; nginx (uid 33, no user name
/// known, in the namespace "web") keeps a stable pool of eight connections
/// to a backend and more fds than java at first; sshd idles.
fn sample(i: u64) -> Snapshot {
    let mut sockets = vec![
        sock(1, TcpState::Listen, 9530, 0, JAVA),
        sock(2, TcpState::Listen, 80, 0, NGINX),
    ];
    for c in 0..3 * i {
        sockets.push(sock(
            1000 + c,
            TcpState::CloseWait,
            9530,
            40_000 + c as u16,
            JAVA,
        ));
    }
    for c in 0..8 {
        sockets.push(sock(
            500 + c,
            TcpState::Established,
            45_000 + c as u16,
            8080,
            NGINX,
        ));
    }
    for s in sockets
        .iter_mut()
        .filter(|s| s.owners.iter().any(|o| o.pid == NGINX))
    {
        s.netns = WEB_NS;
    }
    let mut ns = Namespace::new(1);
    ns.is_own = true;
    ns.scanned = true;
    let mut web = Namespace::new(WEB_NS);
    web.name = Some("web".into());
    web.scanned = true;
    let mut nginx = process(NGINX, "nginx", "nginx: worker process", 9, 2);
    nginx.uid = 33;
    nginx.netns = WEB_NS;
    Snapshot {
        taken_at_ms: T0 + i * INTERVAL,
        host: HostInfo {
            hostname: "testhost".into(),
            kernel: "6.18.0".into(),
            clock_ticks: 100,
            uptime_s: 1000.0,
            boot_time_ms: T0 - 1_000_000,
        },
        namespaces: vec![ns, web],
        sockets,
        processes: vec![
            nginx,
            process(SSHD, "sshd", "sshd: /usr/sbin/sshd -D", 0, 0),
            process(
                JAVA,
                "java",
                "java -jar config-server.jar --port 9530",
                1 + 3 * i as u32,
                2,
            ),
        ],
        ..Snapshot::default()
    }
}

/// [`sample`], plus 60 TIME_WAIT sockets no process holds, from 127.0.0.1 to
/// a database at :5432, in a namespace with 100 ephemeral ports: 60 % of
/// them, a host-level time_wait_pressure warning.
fn sample_with_time_wait(i: u64) -> Snapshot {
    let mut snap = sample(i);
    for ns in snap.namespaces.iter_mut().filter(|n| n.is_own) {
        ns.ip_local_port_range = Some(PortRange {
            low: 40_000,
            high: 40_099,
        });
    }
    for c in 0..60u16 {
        let mut s = sock(9000 + u64::from(c), TcpState::TimeWait, 40_000 + c, 5432, 0);
        s.owners.clear();
        s.inode = 0;
        s.recv_q = 0;
        snap.sockets.push(s);
    }
    snap
}

fn key(c: KeyCode) -> Event {
    Event::Key(KeyEvent::new(c, KeyModifiers::NONE))
}

fn frame(term: &mut Terminal<TestBackend>, app: &App) -> String {
    term.draw(|f| render::draw(f, app)).expect("draw");
    let buf = term.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..buf.area.height {
        let mut line = String::new();
        for x in 0..buf.area.width {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn snapshot(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/tui/snapshots")
        .join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        let _ = std::fs::create_dir_all(path.parent().expect("parent"));
        std::fs::write(&path, actual).expect("write snapshot");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e} (run with UPDATE_SNAPSHOTS=1)", path.display()));
    assert_eq!(
        expected, actual,
        "frame {name} changed; if intended, rerun with UPDATE_SNAPSHOTS=1 and review the diff"
    );
}

fn new_app() -> App {
    App::new(
        Watcher::new(WatchConfig::default()),
        Filter::default(),
        INTERVAL,
    )
    .with_users(HashMap::from([(1000, "alice".to_string())]))
}

/// The process rows of a frame (PID and COMM), top to bottom.
fn table_rows(frame: &str) -> Vec<&str> {
    frame
        .lines()
        .filter(|l| {
            [" java ", " nginx ", " sshd "]
                .iter()
                .any(|c| l.contains(c))
        })
        .filter(|l| !l.contains("CLOSE_WAIT"))
        .collect()
}

/// Runs `events` through the app, drawing after each, and returns the
/// frames after the events whose index is in `shots`.
fn session(app: &mut App, events: Vec<Event>, term: &mut Terminal<TestBackend>) -> Vec<String> {
    events
        .into_iter()
        .map(|ev| {
            app.handle(ev);
            frame(term, app)
        })
        .collect()
}

#[test]
fn the_leaking_process_rises_to_the_top_and_its_details_show_the_finding() {
    let mut app = new_app();
    let mut term = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
    let mut events: Vec<Event> = (0..7)
        .map(|i| Event::Snapshot(Box::new(sample(i))))
        .collect();
    events.push(key(KeyCode::Enter));
    events.push(key(KeyCode::PageDown));
    events.push(key(KeyCode::Char('?')));
    events.push(key(KeyCode::Esc));
    events.push(key(KeyCode::Esc));
    let frames = session(&mut app, events, &mut term);

    // First sample: no finding yet; nginx has more fds and comes first.
    let first = &frames[0];
    let rows: Vec<&str> = first
        .lines()
        .filter(|l| l.contains(" java ") || l.contains(" nginx "))
        .collect();
    assert!(rows.first().is_some_and(|l| l.contains("nginx")), "{first}");
    snapshot("table-start.txt", first);

    // After five samples java is judged a leak and leads the table.
    let table = &frames[6];
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.contains(" java ") || l.contains(" nginx "))
        .collect();
    assert!(
        rows.first()
            .is_some_and(|l| l.contains("java") && l.contains("WARN")),
        "{table}"
    );
    assert!(table.contains("+90"), "CLOSE_WAIT rate 90/min: {table}");
    snapshot("table-leak.txt", table);

    let detail = &frames[7];
    assert!(detail.contains("close_wait_leak"), "{detail}");
    assert!(detail.contains("Growing by about 90 per"), "{detail}");
    snapshot("detail.txt", detail);

    // Scrolled: its groups with their trend, and its oldest sockets.
    let scrolled = &frames[8];
    assert!(scrolled.contains("Groups"), "{scrolled}");
    assert!(
        scrolled.lines().any(|l| l.contains("CLOSE_WAIT")
            && l.contains("127.0.0.1:9530")
            && l.contains("leak")),
        "{scrolled}"
    );
    assert!(scrolled.contains("Oldest sockets"), "{scrolled}");
    snapshot("detail-scrolled.txt", scrolled);

    snapshot("help.txt", &frames[9]);
    assert!(frames[9].contains("Help"));
    assert!(
        frames[10].contains("Groups"),
        "Esc closes help, keeps details"
    );
    assert_eq!(app.view, View::Table);
    assert!(frames[11].contains("Processes"));
}

#[test]
fn filter_sort_and_pause() {
    let mut app = new_app();
    let mut term = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
    let mut events: Vec<Event> = (0..6)
        .map(|i| Event::Snapshot(Box::new(sample(i))))
        .collect();
    events.extend([
        key(KeyCode::Char('/')),
        key(KeyCode::Char('n')),
        key(KeyCode::Char('g')),
        key(KeyCode::Enter),
    ]);
    let frames = session(&mut app, events, &mut term);
    let filtered = frames.last().expect("frame");
    assert!(filtered.contains("filter: ng"), "{filtered}");
    assert!(!filtered.contains(" java "), "{filtered}");
    snapshot("table-filtered.txt", filtered);

    // Esc clears the filter; s sorts by pid (nginx 1234 < java 4242).
    let frames = session(
        &mut app,
        vec![
            key(KeyCode::Esc),
            key(KeyCode::Char('s')),
            key(KeyCode::Char('s')),
        ],
        &mut term,
    );
    let by_fds = frames.last().expect("frame");
    assert!(by_fds.contains("sort: fds"), "{by_fds}");

    // Paused, a new sample does not change the screen; resuming shows it.
    let frames = session(
        &mut app,
        vec![
            key(KeyCode::Char('p')),
            Event::Snapshot(Box::new(sample(6))),
            key(KeyCode::Char('p')),
        ],
        &mut term,
    );
    assert!(frames[0].contains("PAUSED"));
    assert_eq!(
        frames[0].replace("PAUSED", ""),
        frames[1].replace("PAUSED", ""),
        "paused screen changed"
    );
    assert!(frames[2].contains("#7"), "{}", frames[2]);
    assert!(app.latest().is_some());
}

#[test]
fn quit_keys_and_an_empty_start() {
    let mut app = new_app();
    let mut term = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
    let f = frame(&mut term, &app);
    assert!(f.contains("waiting for the first snapshot"), "{f}");
    // Enter with nothing selected stays in the table.
    app.handle(key(KeyCode::Enter));
    assert_eq!(app.view, View::Table);
    app.handle(Event::CollectorDone);
    assert!(frame(&mut term, &app).contains("sampling finished"));
    app.handle(Event::Key(KeyEvent::new(
        KeyCode::Char('c'),
        KeyModifiers::CONTROL,
    )));
    assert!(app.quit);
}

#[test]
fn a_host_level_finding_is_listed_in_the_findings_pane_with_its_details() {
    let mut app = new_app();
    let mut term = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
    let mut events: Vec<Event> = (0..3)
        .map(|i| Event::Snapshot(Box::new(sample_with_time_wait(i))))
        .collect();
    events.extend([
        key(KeyCode::Tab),
        key(KeyCode::Enter),
        key(KeyCode::PageDown),
        key(KeyCode::Esc),
        key(KeyCode::Tab),
    ]);
    let frames = session(&mut app, events, &mut term);

    // No process holds these sockets: the process table only points at them.
    let table = &frames[2];
    assert!(table.contains("Tab: 1 host finding"), "{table}");
    assert!(!table.contains("time_wait_pressure"), "{table}");

    let pane = &frames[3];
    let row = pane
        .lines()
        .find(|l| l.contains("time_wait_pressure"))
        .unwrap_or_else(|| panic!("no time_wait_pressure row:\n{pane}"));
    assert!(
        row.contains("WARN") && row.contains(" host ") && row.contains(" 60 "),
        "{row}"
    );
    assert!(pane.contains("Findings (1)"), "{pane}");
    snapshot("findings-pane.txt", pane);

    // Its details: the numbers, the text and the advice.
    let detail = &frames[4];
    for want in [
        "time_wait_pressure · warning · host",
        "usable ports",
        "100",
        "60%",
        "127.0.0.1:5432",
        "60 connections from 127.0.0.1 to 127.0.0.1:5432",
        "This is not a leak",
    ] {
        assert!(detail.contains(want), "{want:?} missing:\n{detail}");
    }
    snapshot("finding-detail.txt", detail);
    assert!(
        frames[5].contains("More: sockleak explain"),
        "scrolls to the end: {}",
        frames[5]
    );
    assert_eq!(app.pane, Pane::Processes);
    assert!(frames[6].contains("Findings (1)"), "Esc: back to the pane");
    assert!(frames[7].contains("Processes ·"), "Tab: back to processes");
}

#[test]
fn the_table_has_user_and_netns_columns_reverses_and_shows_idle_processes() {
    let mut app = new_app();
    let mut term = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
    let mut events: Vec<Event> = (0..7)
        .map(|i| Event::Snapshot(Box::new(sample(i))))
        .collect();
    events.extend([key(KeyCode::Char('r')), key(KeyCode::Char('a'))]);
    let frames = session(&mut app, events, &mut term);

    let table = &frames[6];
    assert!(table.contains("USER") && table.contains("NETNS"), "{table}");
    let rows = table_rows(table);
    assert_eq!(rows.len(), 2, "sshd is hidden: {table}");
    assert!(rows[0].contains("java") && rows[0].contains("alice") && rows[0].contains("host"));
    // uid 33 has no name here: the number, as ps shows it.
    assert!(rows[1].contains("nginx") && rows[1].contains(" 33 ") && rows[1].contains("web"));
    assert!(table.contains("1 idle hidden · a shows"), "{table}");

    // r: the same order, turned around.
    let reversed = &frames[7];
    assert!(reversed.contains("(reversed)"), "{reversed}");
    let rows = table_rows(reversed);
    assert!(
        rows[0].contains("nginx") && rows[1].contains("java"),
        "{reversed}"
    );
    snapshot("table-reversed.txt", reversed);

    // a: the idle process too (no TCP sockets, 5 fds), and the footer says so.
    let all = &frames[8];
    let rows = table_rows(all);
    assert_eq!(rows.len(), 3, "{all}");
    assert!(rows.iter().any(|r| r.contains("sshd")), "{all}");
    assert!(all.contains("1 idle shown · a hides"), "{all}");
    snapshot("table-idle-shown.txt", all);

    // Wide enough, every column fits; at 80 ESTAB and USE% make way.
    assert!(
        !table.contains("ESTAB") && !table.contains("USE%"),
        "{table}"
    );
    let mut wide = Terminal::new(TestBackend::new(110, 24)).expect("terminal");
    let f = frame(&mut wide, &app);
    assert!(
        f.contains("ESTAB") && f.contains("USE%") && f.contains("NETNS"),
        "{f}"
    );
    snapshot("table-wide.txt", &f);
}

#[test]
fn sparklines_say_their_scale_so_a_flat_line_does_not_look_full() {
    let mut app = new_app();
    let mut term = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
    let mut events: Vec<Event> = (0..7)
        .map(|i| Event::Snapshot(Box::new(sample(i))))
        .collect();
    events.push(key(KeyCode::Char('j')));
    let frames = session(&mut app, events, &mut term);
    // java: CLOSE_WAIT 0, 3, ... 18; fds 8 ... 26.
    let leak = &frames[6];
    assert!(leak.contains("7 samples: min 0, max 18"), "{leak}");
    assert!(leak.contains("7 samples: min 8, max 26"), "{leak}");
    // nginx: its fds never move; the full bars are 16, all the time.
    let flat = &frames[7];
    assert!(flat.contains("7 samples: flat at 16"), "{flat}");
    assert!(flat.contains("7 samples: flat at 0"), "{flat}");
    snapshot("sparklines-flat.txt", flat);
}
