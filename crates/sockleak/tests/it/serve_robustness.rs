//! The exporter under load and abuse, on loopback: 1000 scrapes from 50
//! concurrent clients all succeed; idle and byte-by-byte clients are cut off
//! by the read timeout; at --max-connections a newcomer is let in at once
//! and the oldest idle connection closed; 500 idle and 64 byte-a-second
//! clients (reconnecting when cut) delay neither a scrape nor /healthz; a
//! flood of wrong passwords stays under one core while authorized scrapes
//! are answered; oversized heads, bodies and other methods are refused; afterwards
//! the exporter holds no more fds than before and no CLOSE_WAIT (checked with
//! `sockleak scan --json --pid`); SIGTERM stops it cleanly.

use crate::serve_support::*;
use crate::support::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const READ_TIMEOUT_S: u64 = 3;
const MAX_CONNECTIONS: usize = 64;

/// (open fds, CLOSE_WAIT sockets) of `pid`, the lowest of a few readings:
/// the collector thread opens fds for the length of a scan.
fn own_sockets(pid: u32) -> (u64, usize) {
    let p = pid.to_string();
    let mut best = (u64::MAX, usize::MAX);
    for _ in 0..5 {
        let doc = scan_json(&["--pid", &p]);
        let fds = doc["processes"]
            .as_array()
            .and_then(|ps| {
                ps.iter()
                    .find(|x| x["pid"].as_u64() == Some(u64::from(pid)))
            })
            .and_then(|x| x["fd_count"].as_u64())
            .expect("the exporter's fd count");
        let close_wait = doc["sockets"]
            .as_array()
            .expect("sockets")
            .iter()
            .filter(|s| s["state"] == "CLOSE_WAIT")
            .filter(|s| owners(s).iter().any(|(o, _)| *o == u64::from(pid)))
            .count();
        best = (best.0.min(fds), best.1.min(close_wait));
        std::thread::sleep(Duration::from_millis(150));
    }
    best
}

/// Time until the server closes a connection on which the client sends
/// `trickle` one byte every 100 ms (nothing when empty); `None` if it stayed
/// open for `limit`.
fn time_to_cutoff(addr: SocketAddr, trickle: &[u8], limit: Duration) -> Option<Duration> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(100))).ok()?;
    let start = Instant::now();
    let mut sent = 0;
    let mut buf = [0u8; 1024];
    while start.elapsed() < limit {
        if sent < trickle.len() {
            if s.write_all(&trickle[sent..=sent]).is_err() {
                return Some(start.elapsed());
            }
            sent += 1;
        }
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            // A 408 or similar before closing is fine; keep reading to EOF.
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

#[test]
fn load_slow_clients_caps_and_limits_leave_no_leak() {
    let read_timeout = format!("{READ_TIMEOUT_S}s");
    let max_conns = MAX_CONNECTIONS.to_string();
    let mut exporter = Exporter::start(&[
        "--interval",
        "1s",
        "--read-timeout",
        &read_timeout,
        "--max-connections",
        &max_conns,
        "--process",
        "sockleak",
    ]);
    let addr = exporter.addr;
    let (fds_before, cw_before) = own_sockets(exporter.pid());
    assert_eq!(cw_before, 0, "the exporter starts without CLOSE_WAIT");

    // 1000 scrapes from 50 clients: half reuse one keep-alive connection,
    // half open one connection per scrape; half ask for OpenMetrics.
    let ok = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let started = Instant::now();
    let clients: Vec<_> = (0..50)
        .map(|i| {
            let ok = ok.clone();
            let errors = errors.clone();
            std::thread::spawn(move || {
                let keep_alive = i % 2 == 0;
                let om = i % 4 < 2;
                let accept: &[(&str, &str)] = if om {
                    &[(
                        "Accept",
                        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
                    )]
                } else {
                    &[]
                };
                let mut conn: Option<TcpStream> = None;
                for _ in 0..20 {
                    let res = (|| -> std::io::Result<Reply> {
                        if !keep_alive || conn.is_none() {
                            conn = Some(connect(addr)?);
                        }
                        let s = conn
                            .as_mut()
                            .ok_or_else(|| std::io::Error::other("no connection"))?;
                        send_get(s, "/metrics", accept, !keep_alive)?;
                        read_reply(s)
                    })();
                    match res {
                        Ok(r)
                            if r.status == 200
                                && r.body.contains("sockleak_build_info")
                                && (!om || r.body.ends_with("# EOF\n")) =>
                        {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => errors
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(format!("client {i}: status {}", r.status)),
                        Err(e) => {
                            errors
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push(format!("client {i}: {e}"));
                            conn = None;
                        }
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client thread");
    }
    let errors = errors.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(
        ok.load(Ordering::Relaxed),
        1000,
        "all 1000 scrapes succeed ({:?}); errors: {errors:?}",
        started.elapsed()
    );

    // Slow clients: idle ones and byte-by-byte request heads are cut off by
    // the read timeout, long before they could finish.
    let slow_head = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let limit = Duration::from_secs(READ_TIMEOUT_S + 8);
    let slow: Vec<_> = (0..16)
        .map(|i| {
            std::thread::spawn(move || {
                let trickle: &[u8] = if i % 2 == 0 { b"" } else { slow_head };
                (i, time_to_cutoff(addr, trickle, limit))
            })
        })
        .collect();
    for t in slow {
        let (i, cut) = t.join().expect("slow client thread");
        let cut = cut.unwrap_or_else(|| panic!("slow client {i} was never cut off"));
        assert!(
            cut >= Duration::from_millis(READ_TIMEOUT_S * 1000 - 500)
                && cut <= Duration::from_secs(READ_TIMEOUT_S + 3),
            "slow client {i} cut off after {cut:?}, read timeout {READ_TIMEOUT_S}s"
        );
    }

    // The connection cap: with MAX_CONNECTIONS idle connections open, each
    // newcomer is let in at once and the connection that waited longest for
    // a request head (the oldest idle one) is closed to make room, not after
    // the read timeout.
    let mut idle: Vec<TcpStream> = Vec::new();
    for _ in 0..MAX_CONNECTIONS {
        idle.push(TcpStream::connect(addr).expect("connect idle"));
        std::thread::sleep(Duration::from_millis(2)); // a definite order
    }
    std::thread::sleep(Duration::from_millis(300)); // let the server accept them
    for i in 0..6 {
        let t = Instant::now();
        let newcomer = TcpStream::connect(addr).expect("connect over the cap");
        let oldest = &mut idle[i];
        oldest
            .set_read_timeout(Some(Duration::from_secs(READ_TIMEOUT_S + 5)))
            .expect("timeout");
        let mut buf = Vec::new();
        let _ = oldest.read_to_end(&mut buf);
        assert!(
            t.elapsed() < Duration::from_millis(READ_TIMEOUT_S * 1000 / 2),
            "idle connection {i} was evicted only after {:?}",
            t.elapsed()
        );
        assert!(buf.is_empty(), "{:?}", String::from_utf8_lossy(&buf));
        idle.push(newcomer);
        std::thread::sleep(Duration::from_millis(2));
    }
    // Still at the cap: a probe gets in and is answered at once.
    let t = Instant::now();
    let r = get(addr, "/healthz", &[]).expect("/healthz at the cap");
    assert_eq!(r.status, 200);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    drop(idle);

    // Request limits.
    let big = "x".repeat(20 * 1024);
    let r = get(addr, "/metrics", &[("X-Big", &big)]);
    assert!(
        r.as_ref().map_or(true, |r| r.status == 431),
        "oversized head: {:?}",
        r.map(|r| r.status)
    );
    let mut s = connect(addr).expect("connect");
    s.write_all(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        .expect("send POST");
    assert_eq!(read_reply(&mut s).expect("reply").status, 413);
    let mut s = connect(addr).expect("connect");
    s.write_all(b"DELETE /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("send DELETE");
    let r = read_reply(&mut s).expect("reply");
    assert_eq!(r.status, 405);
    assert_eq!(
        r.headers.get("allow").map(String::as_str),
        Some("GET, HEAD")
    );
    assert_eq!(get(addr, "/nope", &[]).expect("404").status, 404);

    // No leak of its own: once the timeouts closed everything, the
    // exporter holds what it held before, and no CLOSE_WAIT.
    let pid = exporter.pid();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = (0, 0);
    while Instant::now() < deadline {
        last = own_sockets(pid);
        if last.0 <= fds_before + 2 && last.1 == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        last.0 <= fds_before + 2 && last.1 == 0,
        "exporter fds {} (before {fds_before}), CLOSE_WAIT {}",
        last.0,
        last.1
    );
    // Its own counters saw the cut-offs and refusals (rendered at the next
    // scan).
    exporter.wait_until(Duration::from_secs(10), "the HTTP counters", || {
        let t = exporter.metrics();
        value_of(&t, "sockleak_http_connections_timed_out_total", &[]).is_some_and(|n| n >= 16.0)
            && value_of(&t, "sockleak_http_connections_rejected_total", &[])
                .is_some_and(|n| n >= 6.0)
    });

    // SIGTERM with a keep-alive connection open: a clean, prompt exit.
    let mut held = connect(addr).expect("connect");
    send_get(&mut held, "/healthz", &[], false).expect("send");
    assert_eq!(read_reply(&mut held).expect("reply").status, 200);
    let t = Instant::now();
    let status = exporter.stop().expect("the exporter exits on SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "shutdown took {:?}",
        t.elapsed()
    );
    let mut buf = [0u8; 16];
    assert!(
        matches!(held.read(&mut buf), Ok(0) | Err(_)),
        "the kept-alive connection is closed"
    );
}

/// `sockleak check` (the project's own leak regression check) against the
/// exporter, with its built-in load generator: 1000 scrapes from 50
/// concurrent clients per well-behaved client behaviour, then the abusive
/// ones. The exporter must end with no more fds and no CLOSE_WAIT.
#[test]
fn sockleak_check_finds_no_leak_in_the_exporter() {
    let exporter = Exporter::start(&[
        "--interval",
        "1s",
        "--read-timeout",
        "3s",
        "--process",
        "sockleak",
    ]);
    let pid = exporter.pid().to_string();
    let url = format!("http://{}/metrics", exporter.addr);
    for (behavior, requests) in [
        ("keep-alive", "1000"),
        ("close", "1000"),
        ("server-close", "200"),
        ("half-close", "200"),
        ("abort", "200"),
        ("unread-body", "200"),
    ] {
        let (code, out, err) = run(&[
            "check",
            "--pid",
            &pid,
            "--http",
            &url,
            "--requests",
            requests,
            "--concurrency",
            "50",
            "--behavior",
            behavior,
            "--settle",
            "4s",
            "--json",
        ]);
        let doc: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("check --behavior {behavior}: {e}: {out}{err}"));
        let checks = doc["checks"].as_array().expect("checks");
        let outcome = |name: &str| {
            checks
                .iter()
                .find(|c| c["name"] == name)
                .map(|c| c["outcome"].as_str().unwrap_or("?").to_string())
                .unwrap_or_else(|| format!("no {name} check"))
        };
        for name in ["close_wait", "closed_but_held", "fd_growth", "target_alive"] {
            assert_eq!(outcome(name), "pass", "{behavior}: {name}: {checks:#?}");
        }
        // A client that never reads and never closes (unread-body) keeps its
        // connections until the read timeout: beyond --max-connections the
        // exporter refuses more (503), which is the cap doing its job. Every
        // other behaviour is served completely.
        if behavior != "unread-body" {
            assert_eq!(code, 0, "{behavior}: {}", doc["summary"]);
        }
    }
}

/// Scrapes share the collector's latest rendering: fifty scrapes in a row
/// within one (long) interval see one scan, byte for byte the same.
#[test]
fn scrapes_never_trigger_a_scan() {
    let exporter = Exporter::start(&["--interval", "1h", "--process", "sockleak"]);
    let first = exporter.metrics();
    assert_eq!(value_of(&first, "sockleak_scans_total", &[]), Some(1.0));
    for _ in 0..50 {
        assert_eq!(exporter.metrics(), first, "a scrape changed the metrics");
    }
}

/// Raises this test process's soft RLIMIT_NOFILE to at least `need` (up to
/// the hard limit) for tests that hold hundreds of sockets; returns the
/// soft limit in force.
fn raise_fd_limit(need: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < need {
            let raised = libc::rlimit {
                rlim_cur: need.min(lim.rlim_max),
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = raised.rlim_cur;
            }
        }
    }
    lim.rlim_cur
}

/// CPU time (user + system) `pid` used so far, from /proc/PID/stat.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    // Fields after the command name (which may hold spaces) in parentheses:
    // state is field 3, utime 14 and stime 15 (proc(5)).
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// True when the peer closed `s` (nonblocking socket): EOF or an error.
fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 512];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    }
}

/// Each connection a hostile client holds: reconnected a second after the
/// server cut it, so the pressure lasts the whole test.
struct Held {
    conn: Option<TcpStream>,
    /// When it was found closed (reconnect a second later).
    cut_at: Option<Instant>,
    /// Bytes of the never-ending head sent so far (slow clients).
    sent: usize,
}

fn connect_nonblocking(addr: SocketAddr) -> Option<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_nonblocking(true).ok()?;
    Some(s)
}

/// Holds `n` connections to `addr` until `stop` (or `limit`), reconnecting
/// each one a second after the server closes it; with `trickle`, sends one
/// byte of a request head that never ends on each connection every second.
/// Returns how many times the server closed one.
fn hold_connections(
    addr: SocketAddr,
    n: usize,
    trickle: bool,
    stop: Arc<std::sync::atomic::AtomicBool>,
    limit: Duration,
) -> usize {
    const HEAD: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
    let started = Instant::now();
    let mut held: Vec<Held> = (0..n)
        .map(|_| Held {
            conn: connect_nonblocking(addr),
            cut_at: None,
            sent: 0,
        })
        .collect();
    let mut cuts = 0;
    let mut last_byte = Instant::now();
    while !stop.load(Ordering::Relaxed) && started.elapsed() < limit {
        let send_now = trickle && last_byte.elapsed() >= Duration::from_secs(1);
        if send_now {
            last_byte = Instant::now();
        }
        for h in &mut held {
            match h.conn.as_mut() {
                Some(s) => {
                    let mut gone = closed(s);
                    if !gone && send_now {
                        let byte = HEAD.get(h.sent).copied().unwrap_or(b'a');
                        gone = s.write(&[byte]).is_err();
                        h.sent += 1;
                    }
                    if gone {
                        cuts += 1;
                        h.conn = None;
                        h.cut_at = Some(Instant::now());
                    }
                }
                None => {
                    if h.cut_at
                        .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
                    {
                        h.conn = connect_nonblocking(addr);
                        h.cut_at = h.conn.is_none().then(Instant::now);
                        h.sent = 0;
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cuts
}

/// The scenario: 500 idle and 64 byte-a-second connections held
/// against the default --max-connections (64) and --read-timeout (10 s).
/// Before, they held every slot and each connection over the cap stalled the
/// accept loop 250 ms (a scrape waited seconds, then was reset; /healthz
/// too, so a liveness probe restarted the pod). Now every scrape and probe
/// is answered within a second.
#[test]
fn idle_and_slow_connection_floods_delay_neither_scrapes_nor_healthz() {
    let soft = raise_fd_limit(4096);
    assert!(
        soft >= 1024,
        "soft fd limit {soft}: too low for 564 sockets"
    );
    let exporter = Exporter::start(&["--interval", "2s", "--process", "sockleak"]);
    let addr = exporter.addr;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let limit = Duration::from_secs(40);
    let attackers: Vec<_> = [(500, false), (64, true)]
        .into_iter()
        .map(|(n, trickle)| {
            let stop = stop.clone();
            std::thread::spawn(move || hold_connections(addr, n, trickle, stop, limit))
        })
        .collect();
    // Let them connect and fill every slot.
    std::thread::sleep(Duration::from_secs(3));
    let mut slow_answers = Vec::new();
    for k in 0..8 {
        for path in ["/metrics", "/healthz"] {
            let t = Instant::now();
            let r = get(addr, path, &[]);
            let took = t.elapsed();
            match r {
                Ok(r) if r.status == 200 && took < Duration::from_secs(1) => {}
                other => slow_answers.push(format!(
                    "round {k} {path}: {:?} after {took:?}",
                    other.map(|r| r.status)
                )),
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    stop.store(true, Ordering::Relaxed);
    let cuts: Vec<usize> = attackers
        .into_iter()
        .map(|a| a.join().expect("attacker thread"))
        .collect();
    assert!(
        slow_answers.is_empty(),
        "scrapes or probes not answered within 1 s under the flood: {slow_answers:?} \
         (cuts {cuts:?}); exporter stderr:\n{}",
        exporter.stderr.lock().unwrap_or_else(|e| e.into_inner())
    );
    // The flood was real: far more connections than the cap were made and
    // the server cut the idle ones to make room.
    assert!(cuts[0] >= 100, "idle connections cut: {cuts:?}");
    exporter.wait_until(Duration::from_secs(10), "the connection counters", || {
        let t = exporter.metrics();
        value_of(&t, "sockleak_http_connections_total", &[]).is_some_and(|n| n >= 564.0)
            && value_of(&t, "sockleak_http_connections_rejected_total", &[])
                .is_some_and(|n| n >= 100.0)
    });
}

/// 32 connections sending wrong passwords as fast as they are answered, for
/// 5 s: bcrypt is bounded (one verification at a time, half duty), so the
/// exporter stays under one core, and an authorized scrape (its credentials
/// verified once and cached) is answered within a second throughout.
#[test]
fn a_wrong_password_flood_stays_under_one_core_and_scrapes_still_answer() {
    let dir = std::env::temp_dir().join(format!("sockleak-it-authflood-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    // Cost 10: what htpasswd -B uses, tens of ms of CPU per verification.
    let hash = bcrypt::hash("right", 10).expect("bcrypt hash");
    let web = dir.join("web.yml");
    std::fs::write(&web, format!("basic_auth_users:\n  prom: '{hash}'\n")).expect("write");
    let web_arg = web.to_str().expect("utf-8 path").to_string();
    let exporter = Exporter::start(&[
        "--interval",
        "2s",
        "--process",
        "sockleak",
        "--web-config",
        &web_arg,
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    let addr = exporter.addr;
    let b64 = |s: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    let good = format!("Basic {}", b64("prom:right"));
    let r = get(addr, "/metrics", &[("Authorization", &good)]).expect("first scrape");
    assert_eq!(r.status, 200, "{}", r.body);
    // Framed by length, not chunked: keep-alive clients know where it ends.
    assert!(r.headers.contains_key("content-length"), "{:?}", r.headers);

    let flood = Duration::from_secs(5);
    let pid = exporter.pid();
    let cpu_before = cpu_time(pid);
    let started = Instant::now();
    let statuses = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<
        u16,
        usize,
    >::new()));
    let flooders: Vec<_> = (0..32)
        .map(|i| {
            let statuses = statuses.clone();
            let bad = format!("Basic {}", b64(&format!("prom:wrong{i}")));
            std::thread::spawn(move || {
                let mut conn: Option<TcpStream> = None;
                // Bounded by time and count.
                for _ in 0..10_000 {
                    if started.elapsed() >= flood {
                        break;
                    }
                    let res = (|| -> std::io::Result<Reply> {
                        if conn.is_none() {
                            conn = Some(connect(addr)?);
                        }
                        let s = conn
                            .as_mut()
                            .ok_or_else(|| std::io::Error::other("no connection"))?;
                        send_get(s, "/metrics", &[("Authorization", &bad)], false)?;
                        read_reply(s)
                    })();
                    match res {
                        Ok(r) => {
                            *statuses
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .entry(r.status)
                                .or_default() += 1;
                        }
                        Err(_) => conn = None,
                    }
                }
            })
        })
        .collect();
    let mut slow = Vec::new();
    let mut scrapes = 0;
    while started.elapsed() < flood {
        let t = Instant::now();
        let r = get(addr, "/metrics", &[("Authorization", &good)]);
        let took = t.elapsed();
        scrapes += 1;
        match r {
            Ok(r) if r.status == 200 && took < Duration::from_secs(1) => {}
            other => slow.push(format!("{:?} after {took:?}", other.map(|r| r.status))),
        }
        let t = Instant::now();
        let h = get(addr, "/healthz", &[]);
        if !h.as_ref().is_ok_and(|h| h.status == 200) || t.elapsed() >= Duration::from_secs(1) {
            slow.push(format!(
                "/healthz {:?} after {:?}",
                h.map(|h| h.status),
                t.elapsed()
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    for f in flooders {
        f.join().expect("flood thread");
    }
    let wall = started.elapsed();
    let cpu = cpu_time(pid).saturating_sub(cpu_before);
    let statuses = statuses.lock().unwrap_or_else(|e| e.into_inner()).clone();
    eprintln!("wrong-password flood: {statuses:?} in {wall:?}, exporter CPU {cpu:?}");
    assert!(
        slow.is_empty(),
        "authorized scrapes during the flood ({scrapes}): {slow:?}"
    );
    assert!(
        statuses.get(&401).copied().unwrap_or(0) > 0,
        "the flood got 401s: {statuses:?}"
    );
    assert!(
        statuses.keys().all(|s| *s == 401 || *s == 429),
        "only 401 and 429 for wrong passwords: {statuses:?}"
    );
    assert!(
        cpu < wall,
        "the exporter used {cpu:?} of CPU in {wall:?} of wrong-password flood: more than one core"
    );
}

/// A port beyond loopback without basic auth: one warning on stderr that
/// anyone who can reach it may scrape. Run in a network namespace of its own
/// (only its own loopback), so 0.0.0.0 exposes nothing; on loopback there
/// is no warning.
#[test]
fn an_unauthenticated_port_beyond_loopback_is_warned_about_once() {
    let test = "an_unauthenticated_port_beyond_loopback_is_warned_about_once";
    let quiet = Exporter::start_with(&["--interval", "1h"], false);
    let log = quiet
        .stderr
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    assert!(!log.contains("warning"), "loopback: {log}");
    drop(quiet);
    if !require_root(
        test,
        "listen on 0.0.0.0 inside a fresh network namespace (unshare -n)",
    ) || !require_tool(test, "unshare", "util-linux")
    {
        return;
    }
    let mut cmd = std::process::Command::new("unshare");
    // unshare execs sockleak in place, so the pid is the exporter's.
    cmd.arg("-n")
        .arg(env!("CARGO_BIN_EXE_sockleak"))
        .args(["serve", "--listen", "0.0.0.0:0", "--interval", "1h"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let open = Exporter::from_command(cmd);
    let log = open
        .stderr
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    assert_eq!(
        log.matches("anyone who can reach this port may scrape")
            .count(),
        1,
        "{log}"
    );
    assert!(log.contains("warning: 0.0.0.0:"), "{log}");
}
