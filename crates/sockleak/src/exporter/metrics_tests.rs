//! Tests of the metrics renderer on synthetic snapshots: the exact text (a
//! golden file per format), the caps, escaping, format differences, and that
//! docs/metrics.md documents exactly the families rendered.

use super::*;
use sockleak_model::findings::{diagnose, DiagnoseConfig};
use sockleak_model::{
    Cookie, Endpoint, Family as AddrFamily, FdKinds, Namespace, Owner, PortRange, SockStat,
    TcpInfo, Timer,
};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

const NS: u64 = 4026531840;
const NOW_MS: u64 = 1_795_373_072_000;

fn ep(a: [u8; 4], port: u16) -> Endpoint {
    Endpoint::new(IpAddr::V4(Ipv4Addr::from(a)), port)
}

struct Builder {
    snap: Snapshot,
    cookie: u64,
}

impl Builder {
    fn new() -> Builder {
        let mut ns = Namespace::new(NS);
        ns.is_own = true;
        ns.scanned = true;
        ns.ip_local_port_range = Some(PortRange {
            low: 32768,
            high: 60999,
        });
        ns.tcp_max_orphans = Some(65536);
        ns.tcp_max_tw_buckets = Some(262144);
        ns.sockstat = Some(SockStat {
            tcp_orphan: 2,
            tcp_tw: 40,
            ..SockStat::default()
        });
        ns.counters.listen_overflows = Some(7);
        ns.counters.listen_drops = Some(9);
        Builder {
            snap: Snapshot {
                taken_at_ms: NOW_MS,
                namespaces: vec![ns],
                ..Snapshot::default()
            },
            cookie: 0,
        }
    }

    fn process(&mut self, pid: u32, comm: &str, fds: u32, limit: u64) -> &mut Builder {
        self.snap.processes.push(Process {
            pid,
            ppid: 1,
            start_time: u64::from(pid),
            comm: comm.to_string(),
            cmdline: format!("/usr/bin/{comm} --password hunter2"),
            uid: 1000,
            netns: NS,
            ns_pid: None,
            fd_count: Some(fds),
            fd_limit: Some(limit),
            fd_limit_hard: Some(limit),
            fds: Some(FdKinds {
                socket: fds / 2,
                pipe: fds / 4,
                file: fds - fds / 2 - fds / 4,
                anon: 0,
                other: 0,
            }),
            closed_but_held: Some(0),
        });
        self
    }

    fn socket(
        &mut self,
        state: TcpState,
        local: Endpoint,
        remote: Endpoint,
        owner: Option<u32>,
        recv_q: u32,
    ) -> &mut Builder {
        self.cookie += 1;
        self.snap.sockets.push(Socket {
            state,
            family: AddrFamily::Inet,
            local,
            remote,
            recv_q,
            send_q: if state == TcpState::Listen { 128 } else { 0 },
            cookie: Cookie(self.cookie),
            inode: if owner.is_some() {
                1000 + self.cookie
            } else {
                0
            },
            uid: 1000,
            netns: NS,
            timer: Timer::Off,
            timer_expires_ms: 0,
            retrans: 0,
            tcp_info: Some(TcpInfo {
                last_ack_recv_ms: 120_000,
                // The response went out before the peer's FIN.
                last_data_sent_ms: 120_000,
                ..TcpInfo::default()
            }),
            mem: None,
            owners: owner
                .map(|pid| {
                    [Owner {
                        pid,
                        fd: 3 + self.cookie as u32,
                        inherited: false,
                    }]
                    .into_iter()
                    .collect()
                })
                .unwrap_or_default(),
        });
        self
    }

    fn findings(&self) -> Vec<Finding> {
        let cfg = DiagnoseConfig {
            min_age_s: 30,
            ..DiagnoseConfig::default()
        };
        diagnose(&self.snap, NOW_MS, &cfg)
    }
}

/// A java server leaking CLOSE_WAIT on :8080 and toward a database, a
/// client in TIME_WAIT trouble, an idle process, and a quote in a comm.
fn sample() -> Builder {
    let mut b = Builder::new();
    let lo = [127, 0, 0, 1];
    b.process(4242, "java", 900, 1024)
        .process(77, "cur\"l\\x", 10, 1024)
        .process(5, "idle", 3, 1024);
    b.socket(
        TcpState::Listen,
        ep(lo, 8080),
        ep([0, 0, 0, 0], 0),
        Some(4242),
        3,
    );
    for i in 0..3 {
        b.socket(
            TcpState::CloseWait,
            ep(lo, 8080),
            ep(lo, 40000 + i),
            Some(4242),
            6,
        );
    }
    b.socket(
        TcpState::CloseWait,
        ep(lo, 41000),
        ep([10, 0, 0, 9], 5432),
        Some(4242),
        1,
    );
    b.socket(
        TcpState::Established,
        ep(lo, 41001),
        ep([10, 0, 0, 9], 5432),
        Some(4242),
        0,
    );
    for i in 0..12 {
        b.socket(
            TcpState::TimeWait,
            ep(lo, 50000 + i),
            ep([10, 0, 0, 7], 443),
            None,
            0,
        );
    }
    b.socket(
        TcpState::Established,
        ep(lo, 42000),
        ep([10, 0, 0, 7], 443),
        Some(77),
        0,
    );
    b
}

fn stats() -> SelfStats {
    SelfStats {
        version: "0.1.0",
        scan_duration_s: 0.25,
        scan_unix_s: 1_795_373_072.0,
        scan_ok: true,
        scans_total: 3,
        ..SelfStats::default()
    }
}

fn render_sample(limits: &Limits) -> Rendered {
    let b = sample();
    render(
        &b.snap,
        &b.findings(),
        &ProcessTrends::default(),
        limits,
        &stats(),
    )
}

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/exporter/testdata")
        .join(name)
}

/// Compares with a golden file; `UPDATE_SNAPSHOTS=1` rewrites it.
fn golden(name: &str, actual: &str) {
    let path = testdata(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir testdata");
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_SNAPSHOTS=1 creates it)", path.display()));
    if want != actual {
        panic!(
            "{} differs from the rendering (UPDATE_SNAPSHOTS=1 to accept):\n{actual}",
            path.display()
        );
    }
}

#[test]
fn sample_renders_exactly_the_golden_texts() {
    let limits = Limits {
        label_cmdline: true,
        ..Limits::default()
    };
    let r = render_sample(&limits);
    golden("sample.prom", &r.prometheus);
    golden("sample.om.txt", &r.openmetrics);
}

/// The value of the one sample of `name` whose labels include all `want`.
fn value(text: &str, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let hits: Vec<f64> = samples(text, name)
        .into_iter()
        .filter(|(labels, _)| {
            want.iter()
                .all(|(k, v)| labels.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, v)| v)
        .collect();
    assert!(hits.len() <= 1, "{name} {want:?}: several samples {hits:?}");
    hits.first().copied()
}

/// (label text, value) of every sample of `name`.
fn samples(text: &str, name: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, v) = l.rsplit_once(' ')?;
            let (n, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}').to_string()),
                None => (series, String::new()),
            };
            (n == name).then(|| (labels, v.parse().unwrap_or(f64::NAN)))
        })
        .collect()
}

#[test]
fn leak_groups_and_findings_carry_process_role_and_endpoint() {
    let r = render_sample(&Limits::default());
    let t = &r.prometheus;
    let server = [
        ("comm", "java"),
        ("pid", "4242"),
        ("role", "server"),
        ("endpoint", "127.0.0.1:8080"),
    ];
    assert_eq!(
        value(t, "sockleak_close_wait_leak_sockets", &server),
        Some(3.0)
    );
    assert_eq!(
        value(t, "sockleak_close_wait_leak_unread_bytes", &server),
        Some(15.0)
    );
    assert_eq!(
        value(t, "sockleak_close_wait_leak_oldest_age_seconds", &server),
        Some(120.0)
    );
    let client = [
        ("pid", "4242"),
        ("role", "client"),
        ("endpoint", "10.0.0.9:5432"),
    ];
    assert_eq!(
        value(t, "sockleak_close_wait_leak_sockets", &client),
        Some(1.0)
    );
    assert_eq!(
        value(
            t,
            "sockleak_finding",
            &[("kind", "close_wait_leak"), ("endpoint", "127.0.0.1:8080")]
        ),
        Some(1.0)
    );
    // No history: no growth series at all.
    assert!(samples(t, "sockleak_close_wait_leak_growth_per_second").is_empty());
    assert_eq!(
        value(
            t,
            "sockleak_process_tcp_sockets",
            &[("pid", "4242"), ("state", "CLOSE_WAIT")]
        ),
        Some(4.0)
    );
    assert_eq!(
        value(
            t,
            "sockleak_listen_queue_length",
            &[("pid", "4242"), ("endpoint", "127.0.0.1:8080")]
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            t,
            "sockleak_time_wait_destination_sockets",
            &[("endpoint", "10.0.0.7:443"), ("local_ip", "127.0.0.1")]
        ),
        Some(12.0)
    );
    let ratio = value(
        t,
        "sockleak_time_wait_port_usage_ratio",
        &[("endpoint", "10.0.0.7:443")],
    )
    .expect("ratio");
    assert!((ratio - 12.0 / 28232.0).abs() < 1e-12, "{ratio}");
    // The idle process has no sockets and no finding: no series.
    assert!(!t.contains("pid=\"5\""));
    // The cmdline is off by default.
    assert!(!t.contains("cmdline="));
}

#[test]
fn guarded_processes_are_not_counted_as_missing_privileges() {
    // The missing-privileges alert watches kind="permission": a process a
    // sandbox guards has its own label, a missing capability stays there.
    let mut b = sample();
    let who = |pid: u32| sockleak_model::NoteProcess {
        pid,
        comm: "process_api".to_string(),
    };
    b.snap.partial.push(sockleak_model::PartialNote::denied(
        "fd tables",
        "refused although sockleak holds CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH",
        sockleak_model::PartialCause::Guarded,
        None,
        who(1),
    ));
    b.snap.partial.push(sockleak_model::PartialNote::denied(
        "namespace discovery",
        "refused although sockleak holds CAP_SYS_PTRACE",
        sockleak_model::PartialCause::Guarded,
        None,
        who(1),
    ));
    let findings = b.findings();
    let r = render(
        &b.snap,
        &findings,
        &ProcessTrends::default(),
        &Limits::default(),
        &stats(),
    );
    let t = &r.prometheus;
    let partial = |kind| value(t, "sockleak_scan_partial", &[("kind", kind)]);
    assert_eq!(partial("guarded"), Some(2.0));
    assert_eq!(partial("permission"), Some(0.0));
    b.snap.partial.push(sockleak_model::PartialNote::denied(
        "fd tables",
        "permission denied (no CAP_SYS_PTRACE)",
        sockleak_model::PartialCause::MissingCapability,
        Some("run as root or grant CAP_SYS_PTRACE"),
        who(7),
    ));
    let r = render(
        &b.snap,
        &findings,
        &ProcessTrends::default(),
        &Limits::default(),
        &stats(),
    );
    let t = &r.prometheus;
    assert_eq!(
        value(t, "sockleak_scan_partial", &[("kind", "permission")]),
        Some(1.0)
    );
}

#[test]
fn cmdline_label_is_redacted() {
    let r = render_sample(&Limits {
        label_cmdline: true,
        ..Limits::default()
    });
    assert!(r
        .prometheus
        .contains("cmdline=\"/usr/bin/java --password <redacted>\""));
    assert!(!r.prometheus.contains("hunter2"));
}

#[test]
fn rates_and_etas_from_history_are_rendered() {
    let b = sample();
    let mut findings = b.findings();
    for f in &mut findings {
        if f.kind == FindingKind::CloseWaitLeak {
            f.rate_per_min = Some(6.0);
        }
    }
    let trends = ProcessTrends {
        fd_eta_s: [(4242, 600)].into_iter().collect(),
    };
    let r = render(&b.snap, &findings, &trends, &Limits::default(), &stats());
    let t = &r.prometheus;
    assert_eq!(
        value(
            t,
            "sockleak_close_wait_leak_growth_per_second",
            &[("pid", "4242"), ("role", "server")]
        ),
        Some(0.1)
    );
    assert_eq!(
        value(
            t,
            "sockleak_process_fd_exhaustion_eta_seconds",
            &[("pid", "4242")]
        ),
        Some(600.0)
    );
}

#[test]
fn processes_beyond_the_cap_fold_into_other_and_sums_are_kept() {
    let mut b = Builder::new();
    let lo = [127, 0, 0, 1];
    b.process(1, "server", 100, 1024);
    b.socket(
        TcpState::Listen,
        ep(lo, 9000),
        ep([0, 0, 0, 0], 0),
        Some(1),
        0,
    );
    for pid in 100..130u32 {
        b.process(pid, "worker", 10, 1024);
        let port = 30000 + pid as u16;
        b.socket(
            TcpState::Established,
            ep(lo, port),
            ep(lo, 9000),
            Some(pid),
            0,
        );
        b.socket(
            TcpState::Established,
            ep(lo, 9000),
            ep(lo, port),
            Some(1),
            0,
        );
    }
    let limits = Limits {
        max_processes: 5,
        ..Limits::default()
    };
    let findings = b.findings();
    let r = render(
        &b.snap,
        &findings,
        &ProcessTrends::default(),
        &limits,
        &stats(),
    );
    let estab = samples(&r.prometheus, "sockleak_process_tcp_sockets")
        .into_iter()
        .filter(|(l, _)| l.contains("state=\"ESTABLISHED\""))
        .collect::<Vec<_>>();
    let pids: HashSet<String> = estab
        .iter()
        .map(|(l, _)| {
            l.split("pid=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(pids.len(), 6, "5 processes + other: {pids:?}");
    assert!(pids.contains("other") && pids.contains("1"), "{pids:?}");
    let total: f64 = estab.iter().map(|(_, v)| v).sum();
    assert_eq!(
        total, 60.0,
        "every ESTABLISHED socket counted once per holder"
    );
    assert_eq!(
        value(&r.prometheus, "sockleak_processes_folded", &[]),
        Some(26.0)
    );
    assert_eq!(samples(&r.prometheus, "sockleak_process_info").len(), 5);
    // The server (most sockets) ranks first among equals.
    assert!(value(&r.prometheus, "sockleak_process_info", &[("pid", "1")]).is_some());
}

#[test]
fn endpoints_beyond_the_cap_fold_into_other() {
    let mut b = Builder::new();
    let lo = [127, 0, 0, 1];
    b.process(9, "leaky", 50, 1024);
    for i in 0..10u8 {
        // Group i holds i+1 sockets toward 10.0.1.i:80.
        for j in 0..=u16::from(i) {
            let port = 33000 + u16::from(i) * 20 + j;
            b.socket(
                TcpState::CloseWait,
                ep(lo, port),
                ep([10, 0, 1, i], 80),
                Some(9),
                1,
            );
        }
    }
    let limits = Limits {
        max_endpoints: 3,
        ..Limits::default()
    };
    let r = render(
        &b.snap,
        &b.findings(),
        &ProcessTrends::default(),
        &limits,
        &stats(),
    );
    let groups = samples(&r.prometheus, "sockleak_close_wait_leak_sockets");
    assert_eq!(groups.len(), 4, "{groups:?}");
    for (ep, n) in [
        ("10.0.1.9:80", 10.0),
        ("10.0.1.8:80", 9.0),
        ("10.0.1.7:80", 8.0),
    ] {
        assert_eq!(
            value(
                &r.prometheus,
                "sockleak_close_wait_leak_sockets",
                &[("endpoint", ep)]
            ),
            Some(n)
        );
    }
    assert_eq!(
        value(
            &r.prometheus,
            "sockleak_close_wait_leak_sockets",
            &[("endpoint", OTHER)]
        ),
        Some(28.0)
    );
    let findings = samples(&r.prometheus, "sockleak_finding");
    assert_eq!(findings.iter().map(|(_, v)| v).sum::<f64>(), 10.0);
    assert!(findings.len() <= 4, "{findings:?}");
}

#[test]
fn label_sets_disappear_with_their_process() {
    let with = sample();
    let mut without = sample();
    without.snap.processes.retain(|p| p.pid != 4242);
    without
        .snap
        .sockets
        .retain(|s| !s.owners.iter().any(|o| o.pid == 4242));
    let a = render(
        &with.snap,
        &with.findings(),
        &ProcessTrends::default(),
        &Limits::default(),
        &stats(),
    );
    let b = render(
        &without.snap,
        &without.findings(),
        &ProcessTrends::default(),
        &Limits::default(),
        &stats(),
    );
    assert!(a.prometheus.contains("pid=\"4242\""));
    assert!(!b.prometheus.contains("pid=\"4242\""));
    assert!(b.series < a.series);
}

#[test]
fn formats_differ_only_where_the_specs_do() {
    let r = render_sample(&Limits::default());
    assert!(r.openmetrics.ends_with("# EOF\n"));
    assert!(!r.prometheus.contains("# EOF"));
    assert!(r.prometheus.contains("# TYPE sockleak_scans_total counter"));
    assert!(r
        .openmetrics
        .contains("# TYPE sockleak_scans counter\nsockleak_scans_total 3\n"));
    // Same samples in both.
    let count = |t: &str| t.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(count(&r.prometheus), count(&r.openmetrics));
    assert_eq!(count(&r.prometheus), r.series);
}

#[test]
fn label_values_are_escaped() {
    let r = render_sample(&Limits::default());
    assert!(
        r.prometheus.contains("comm=\"cur\\\"l\\\\x\""),
        "{}",
        r.prometheus
    );
    assert_eq!(escape_label("a\nb"), "a\\nb");
    assert_eq!(format_value(f64::INFINITY), "+Inf");
    assert_eq!(format_value(f64::NAN), "NaN");
    assert_eq!(format_value(3.0), "3");
    assert_eq!(format_value(0.25), "0.25");
}

#[test]
fn docs_list_exactly_the_rendered_families() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/metrics.md");
    let doc = std::fs::read_to_string(&path).expect("read docs/metrics.md");
    let documented: HashSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("### `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect();
    let rendered: HashSet<String> = family_names().iter().map(|(n, _)| n.to_string()).collect();
    let missing: Vec<&String> = rendered.difference(&documented).collect();
    let stale: Vec<&String> = documented.difference(&rendered).collect();
    assert!(
        missing.is_empty(),
        "not documented in docs/metrics.md: {missing:?}"
    );
    assert!(stale.is_empty(), "documented but not rendered: {stale:?}");
}
