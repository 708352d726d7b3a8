//! The findings engine on hand-built snapshots with a fixed clock: one test per
//! rule and incident of docs/scenarios.md, healthy controls that must stay quiet,
//! and properties over arbitrary snapshots.

use proptest::prelude::*;
use sockleak_model::age::AgeSource;
use sockleak_model::explain;
use sockleak_model::{
    diagnose, diagnose_with, Cookie, DiagnoseConfig, Endpoint, Family, FdKinds, Finding,
    FindingKind, Namespace, Owner, PortRange, Process, Role, Severity, Snapshot, SockStat, Socket,
    TcpInfo, TcpState, Timer,
};
use std::collections::HashMap;
use std::net::IpAddr;

/// The fixed clock of every test: the snapshot is taken at NOW unless a test
/// says otherwise.
const NOW: u64 = 1_700_000_000_000;
const NS: u64 = 4026531840;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test literal")
}

fn ep(s: &str) -> Endpoint {
    let sa: std::net::SocketAddr = s.parse().expect("test literal");
    Endpoint::new(sa.ip(), sa.port())
}

fn process(pid: u32, comm: &str) -> Process {
    Process {
        pid,
        ppid: 1,
        start_time: u64::from(pid) * 10,
        comm: comm.to_string(),
        cmdline: comm.to_string(),
        uid: 1000,
        netns: NS,
        ns_pid: None,
        fd_count: Some(20),
        fd_limit: Some(1024),
        fd_limit_hard: Some(4096),
        fds: None,
        closed_but_held: Some(0),
    }
}

fn namespace(id: u64) -> Namespace {
    let mut n = Namespace::new(id);
    n.is_own = id == NS;
    n.scanned = true;
    n.ip_local_port_range = Some(PortRange {
        low: 32768,
        high: 60999,
    });
    n.tcp_fin_timeout_s = Some(60);
    n
}

/// Builds snapshots; cookies are handed out in order from 1.
struct B {
    snap: Snapshot,
    next: u64,
}

impl B {
    fn new() -> B {
        B {
            snap: Snapshot {
                taken_at_ms: NOW,
                namespaces: vec![namespace(NS)],
                ..Snapshot::default()
            },
            next: 1,
        }
    }

    fn proc_(&mut self, p: Process) -> &mut B {
        self.snap.processes.push(p);
        self
    }

    /// Adds a socket; `owner` None means no visible owner (inode still set),
    /// `ack_ms` None means no tcp_info.
    fn sock(
        &mut self,
        state: TcpState,
        local: &str,
        remote: &str,
        owners: &[u32],
        recv_q: u32,
        ack_ms: Option<u32>,
    ) -> Cookie {
        let cookie = Cookie(self.next);
        self.next += 1;
        self.snap.sockets.push(Socket {
            state,
            family: Family::Inet,
            local: ep(local),
            remote: ep(remote),
            recv_q,
            send_q: 0,
            cookie,
            inode: 10_000 + cookie.0,
            uid: 1000,
            netns: NS,
            timer: Timer::Off,
            timer_expires_ms: 0,
            retrans: 0,
            tcp_info: ack_ms.map(|ms| TcpInfo {
                last_ack_recv_ms: ms,
                // Sent before the peer's FIN: idle since, as a leak is.
                last_data_sent_ms: ms,
                ..TcpInfo::default()
            }),
            mem: None,
            owners: owners
                .iter()
                .enumerate()
                .map(|(i, pid)| Owner {
                    pid: *pid,
                    fd: 3 + i as u32,
                    inherited: false,
                })
                .collect(),
        });
        cookie
    }

    fn listen(&mut self, local: &str, owner: u32) -> &mut Socket {
        self.sock(TcpState::Listen, local, "0.0.0.0:0", &[owner], 0, None);
        self.last()
    }

    fn last(&mut self) -> &mut Socket {
        self.snap.sockets.last_mut().expect("just pushed")
    }

    fn diagnose(&self) -> Vec<Finding> {
        diagnose(&self.snap, NOW, &DiagnoseConfig::default())
    }
}

fn only(findings: &[Finding], kind: FindingKind) -> Vec<&Finding> {
    findings.iter().filter(|f| f.kind == kind).collect()
}

fn one(findings: &[Finding], kind: FindingKind) -> &Finding {
    let v = only(findings, kind);
    assert_eq!(v.len(), 1, "expected one {kind}, got {findings:#?}");
    v[0]
}

// ---------------------------------------------------------------- close_wait

/// Incident 1: a Java server that never closes; 781 old CLOSE_WAIT sockets on
/// its config port, two pipes per connection, plus young ones that are churn.
#[test]
fn server_that_never_closes_is_a_critical_server_leak() {
    let mut b = B::new();
    let mut java = process(4242, "java");
    java.fd_count = Some(2390);
    java.fd_limit = Some(4096);
    java.fds = Some(FdKinds {
        socket: 800,
        pipe: 1562,
        file: 20,
        anon: 8,
        other: 0,
    });
    b.proc_(java);
    b.listen("127.0.0.1:9530", 4242);
    let mut cookies = Vec::new();
    for i in 0..781u32 {
        // Ages from 31 s up to 41 min 10 s.
        let age = 31_000 + i * 3_125;
        let c = b.sock(
            TcpState::CloseWait,
            "127.0.0.1:9530",
            &format!("127.0.0.1:{}", 40_000 + i),
            &[4242],
            1,
            Some(age),
        );
        cookies.push(c);
    }
    for i in 0..10u32 {
        b.sock(
            TcpState::CloseWait,
            "127.0.0.1:9530",
            &format!("127.0.0.1:{}", 50_000 + i),
            &[4242],
            1,
            Some(200),
        );
    }
    let findings = b.diagnose();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let f = one(&findings, FindingKind::CloseWaitLeak);
    assert_eq!(f.severity, Severity::Critical);
    assert_eq!(f.pid, Some(4242));
    assert_eq!(f.comm.as_deref(), Some("java"));
    assert_eq!(f.netns, Some(NS));
    assert_eq!(f.role, Some(Role::Server));
    assert_eq!(f.local, Some(ep("127.0.0.1:9530")));
    assert_eq!(f.remote, None);
    assert_eq!(f.count, 781);
    assert_eq!(f.unread_bytes, Some(0));
    let oldest_ms: u32 = 31_000 + 780 * 3_125;
    assert_eq!(f.oldest_age_s, Some(u64::from(oldest_ms) / 1000));
    assert_eq!(f.age_source, Some(AgeSource::TcpInfo));
    assert_eq!(f.age_unknown, None);
    let expected: Vec<Cookie> = cookies.iter().rev().take(5).copied().collect();
    assert_eq!(f.cookies, expected);
    // The ten young ones are in the group (its inventory row says 791) but
    // not judged: the finding says both numbers.
    assert_eq!(f.group_count, Some(791));
    assert_eq!(f.min_age_s, Some(30));
    assert_eq!(
        f.summary,
        "java (pid 4242) is leaking server connections on 127.0.0.1:9530: 791 sockets in \
         CLOSE_WAIT, 781 of them older than 30 s, the oldest for about 41 min."
    );
    assert!(
        f.advice
            .starts_with("The clients hung up and java never called close()"),
        "{}",
        f.advice
    );
    assert!(f
        .advice
        .contains("It also holds 1562 pipes and 2390 of its 4096 allowed fds."));
    assert!(f.advice.contains("never times out"));
    assert_eq!(f.explain, "close-wait");
    assert_eq!((f.rate_per_min, f.eta_s), (None, None));
}

#[test]
fn wildcard_and_dual_stack_listeners_group_accepted_sockets() {
    let mut b = B::new();
    b.proc_(process(10, "srv"));
    b.listen("[::]:8080", 10);
    for port in [40_001, 40_002] {
        b.sock(
            TcpState::CloseWait,
            "[::ffff:127.0.0.1]:8080",
            &format!("[::ffff:127.0.0.1]:{port}"),
            &[10],
            1,
            Some(60_000),
        );
        b.last().family = Family::Inet6;
    }
    let f = b.diagnose();
    let f = one(&f, FindingKind::CloseWaitLeak);
    assert_eq!(f.role, Some(Role::Server));
    assert_eq!(f.local, Some(ep("[::]:8080")));
    assert_eq!(f.count, 2);
    assert_eq!(f.severity, Severity::Warning);
    assert!(f.summary.contains("on [::]:8080: 2 sockets in CLOSE_WAIT"));
}

/// Incident 2: a client leaving response bodies unread while the server
/// closes idle keep-alives.
#[test]
fn client_with_unread_responses_is_a_pool_leak() {
    let mut b = B::new();
    b.proc_(process(500, "java"));
    for i in 0..20u32 {
        b.sock(
            TcpState::CloseWait,
            &format!("10.0.0.1:{}", 41_000 + i),
            "10.0.0.5:443",
            &[500],
            2487,
            Some(60_000 + i * 1000),
        );
    }
    // An ESTABLISHED sibling to the same endpoint is not counted.
    b.sock(
        TcpState::Established,
        "10.0.0.1:42000",
        "10.0.0.5:443",
        &[500],
        0,
        Some(5),
    );
    let findings = b.diagnose();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let f = &findings[0];
    assert_eq!(f.kind, FindingKind::CloseWaitLeak);
    assert_eq!(f.severity, Severity::Warning);
    assert_eq!(f.role, Some(Role::Client));
    assert_eq!(f.remote, Some(ep("10.0.0.5:443")));
    assert_eq!(f.local, None);
    assert_eq!(f.count, 20);
    assert_eq!(f.unread_bytes, Some(20 * 2486));
    assert_eq!(f.oldest_age_s, Some(79));
    assert_eq!(
        f.summary,
        "java (pid 500) is leaking client connections to 10.0.0.5:443: 20 sockets in \
         CLOSE_WAIT with 49720 bytes never read, the oldest for about 79 s."
    );
    for fix in [
        "InputStream",
        "resp.close()",
        "defer resp.Body.Close()",
        "res.destroy()",
    ] {
        assert!(f.advice.contains(fix), "{fix}: {}", f.advice);
    }
    assert!(f.advice.contains("never read the responses"));
}

#[test]
fn client_without_unread_data_points_at_a_missing_close() {
    let mut b = B::new();
    b.proc_(process(600, "plugin"));
    b.sock(
        TcpState::CloseWait,
        "127.0.0.1:45000",
        "192.168.1.9:7000",
        &[600],
        1,
        Some(90_000),
    );
    let f = b.diagnose();
    let f = one(&f, FindingKind::CloseWaitLeak);
    assert_eq!(f.role, Some(Role::Client));
    assert_eq!(f.unread_bytes, Some(0));
    assert_eq!(f.count, 1);
    assert!(f
        .summary
        .contains("1 socket in CLOSE_WAIT, the oldest for about 90 s."));
    assert!(f.advice.contains("error path"));
    assert!(f.advice.contains("close() before each early return"));
    // 20 of 1024 fds is not worth a sentence.
    assert!(!f.advice.contains("allowed fds"), "{}", f.advice);
}

#[test]
fn near_fd_limit_makes_a_small_leak_critical() {
    let mut b = B::new();
    let mut p = process(77, "svc");
    p.fd_count = Some(900);
    p.fd_limit = Some(1000);
    b.proc_(p);
    for i in 0..3u32 {
        b.sock(
            TcpState::CloseWait,
            &format!("127.0.0.1:{}", 40_000 + i),
            "127.0.0.1:5432",
            &[77],
            1,
            Some(120_000),
        );
    }
    let findings = b.diagnose();
    assert_eq!(
        one(&findings, FindingKind::CloseWaitLeak).severity,
        Severity::Critical
    );
    let fd = one(&findings, FindingKind::FdExhaustion);
    assert_eq!(fd.severity, Severity::Warning);
    // Sorted: the critical leak first.
    assert_eq!(findings[0].kind, FindingKind::CloseWaitLeak);
}

#[test]
fn min_age_boundary_is_inclusive() {
    let mut b = B::new();
    b.proc_(process(5, "srv"));
    b.listen("127.0.0.1:80", 5);
    b.sock(
        TcpState::CloseWait,
        "127.0.0.1:80",
        "127.0.0.1:40001",
        &[5],
        1,
        Some(30_000),
    );
    b.sock(
        TcpState::CloseWait,
        "127.0.0.1:80",
        "127.0.0.1:40002",
        &[5],
        1,
        Some(29_999),
    );
    let f = b.diagnose();
    assert_eq!(one(&f, FindingKind::CloseWaitLeak).count, 1);
    let cfg = DiagnoseConfig {
        min_age_s: 0,
        ..DiagnoseConfig::default()
    };
    let f = diagnose(&b.snap, NOW, &cfg);
    assert_eq!(one(&f, FindingKind::CloseWaitLeak).count, 2);
}

#[test]
fn ages_advance_with_now() {
    let mut b = B::new();
    b.snap.taken_at_ms = NOW - 10_000;
    b.proc_(process(5, "srv"));
    b.listen("127.0.0.1:80", 5);
    // 25 s old when the snapshot was taken, 35 s at NOW.
    b.sock(
        TcpState::CloseWait,
        "127.0.0.1:80",
        "127.0.0.1:40001",
        &[5],
        1,
        Some(25_000),
    );
    let f = b.diagnose();
    assert_eq!(one(&f, FindingKind::CloseWaitLeak).oldest_age_s, Some(35));
    let f = diagnose(&b.snap, NOW - 10_000, &DiagnoseConfig::default());
    assert!(f.is_empty(), "{f:#?}");
}

#[test]
fn unknown_ages_are_counted_but_only_info() {
    let mut b = B::new();
    b.proc_(process(5, "srv"));
    b.listen("127.0.0.1:80", 5);
    for i in 0..150u32 {
        b.sock(
            TcpState::CloseWait,
            "127.0.0.1:80",
            &format!("127.0.0.1:{}", 40_000 + i),
            &[5],
            1,
            None,
        );
    }
    let f = b.diagnose();
    let f = one(&f, FindingKind::CloseWaitLeak);
    assert_eq!(f.severity, Severity::Info);
    assert_eq!(f.count, 150);
    assert_eq!(f.age_unknown, Some(150));
    assert_eq!(f.oldest_age_s, None);
    assert_eq!(f.cookies.len(), 5);
    assert_eq!(
        f.summary,
        "srv (pid 5) holds 150 server connections on 127.0.0.1:80 in CLOSE_WAIT, of unknown age."
    );
    assert!(f.advice.contains("may be normal churn"));

    // One socket of known age makes it a leak again; unknown ones still count.
    b.sock(
        TcpState::CloseWait,
        "127.0.0.1:80",
        "127.0.0.1:50000",
        &[5],
        1,
        Some(60_000),
    );
    let f = b.diagnose();
    let f = one(&f, FindingKind::CloseWaitLeak);
    assert_eq!(f.severity, Severity::Critical);
    assert_eq!(
        (f.count, f.age_unknown, f.oldest_age_s),
        (151, Some(150), Some(60))
    );
}

#[test]
fn first_seen_history_ages_sockets_without_tcp_info() {
    let mut b = B::new();
    b.proc_(process(5, "srv"));
    b.listen("127.0.0.1:80", 5);
    let c = b.sock(
        TcpState::CloseWait,
        "127.0.0.1:80",
        "127.0.0.1:40001",
        &[5],
        1,
        None,
    );
    let mut hints: HashMap<Cookie, (TcpState, u64, AgeSource)> = HashMap::new();
    hints.insert(
        c,
        (TcpState::CloseWait, NOW - 300_000, AgeSource::FirstSeen),
    );
    let f = diagnose_with(&b.snap, NOW, &DiagnoseConfig::default(), &hints);
    let f = one(&f, FindingKind::CloseWaitLeak);
    assert_eq!(f.severity, Severity::Warning);
    assert_eq!(f.age_source, Some(AgeSource::FirstSeen));
    assert_eq!(f.oldest_age_s, Some(300));
    assert!(
        f.summary.ends_with("the oldest for at least 5 min."),
        "{}",
        f.summary
    );
}

#[test]
fn unseen_owner_is_still_reported() {
    let mut b = B::new();
    b.sock(
        TcpState::CloseWait,
        "127.0.0.1:40001",
        "127.0.0.1:6379",
        &[],
        1,
        Some(60_000),
    );
    let f = b.diagnose();
    let f = one(&f, FindingKind::CloseWaitLeak);
    assert_eq!(f.pid, None);
    assert!(f
        .summary
        .starts_with("An unidentified process is leaking client connections"));
    assert!(f.advice.contains("run sockleak as root"));
}

// ---------------------------------------------------------------- shared

/// A CLOSE_WAIT socket held by a parent and a child that inherited it is
/// counted once, for the parent, and names the child.
#[test]
fn shared_socket_is_charged_once_and_names_the_inheriting_child() {
    let mut b = B::new();
    let mut parent = process(100, "server");
    parent.start_time = 10;
    let mut child = process(101, "worker");
    child.start_time = 20;
    child.ppid = 100;
    b.proc_(parent).proc_(child);
    b.listen("127.0.0.1:9000", 100);
    for i in 0..4u32 {
        b.sock(
            TcpState::CloseWait,
            "127.0.0.1:9000",
            &format!("127.0.0.1:{}", 40_000 + i),
            &[101, 100],
            1,
            Some(100_000),
        );
        b.last().owners[0].inherited = true;
    }
    let findings = b.diagnose();
    let cw = only(&findings, FindingKind::CloseWaitLeak);
    assert_eq!(cw.len(), 1, "{findings:#?}");
    let f = cw[0];
    assert_eq!(f.pid, Some(100));
    assert_eq!(f.count, 4);
    assert_eq!(f.also_held_by.len(), 1);
    let h = &f.also_held_by[0];
    assert_eq!(
        (h.pid, h.comm.as_deref(), h.inherited, h.sockets),
        (101, Some("worker"), true, 4)
    );
    assert!(
        f.advice
            .contains("Also held by child pid 101 (worker), inherited through fork: set CLOEXEC"),
        "{}",
        f.advice
    );
}

// ---------------------------------------------------------------- fin_wait2

/// Incident 3, both ends on this host: the C client (pid 700) leaks
/// CLOSE_WAIT; the server (pid 800) that closed first waits in FIN_WAIT2
/// with its fd still open. Each finding points at the other.
#[test]
fn fin_wait2_names_the_close_wait_peer_and_back() {
    let mut b = B::new();
    b.proc_(process(700, "plugin")).proc_(process(800, "srv"));
    b.listen("127.0.0.1:7000", 800);
    for i in 0..3u32 {
        let port = 40_000 + i;
        b.sock(
            TcpState::CloseWait,
            &format!("127.0.0.1:{port}"),
            "127.0.0.1:7000",
            &[700],
            1,
            Some(600_000),
        );
        b.sock(
            TcpState::FinWait2,
            "127.0.0.1:7000",
            &format!("127.0.0.1:{port}"),
            &[800],
            0,
            Some(600_000),
        );
    }
    let findings = b.diagnose();
    assert_eq!(findings.len(), 2, "{findings:#?}");
    let cw = one(&findings, FindingKind::CloseWaitLeak);
    assert_eq!((cw.pid, cw.role), (Some(700), Some(Role::Client)));
    assert_eq!(cw.remote, Some(ep("127.0.0.1:7000")));
    assert_eq!(cw.peer_pid, Some(800));
    assert_eq!(cw.peer_comm.as_deref(), Some("srv"));
    assert!(cw
        .summary
        .ends_with("; its peer srv (pid 800) is stuck in FIN_WAIT2."));
    assert!(cw.advice.contains("the fault is with plugin"));

    let fw = one(&findings, FindingKind::FinWait2Stuck);
    assert_eq!(fw.severity, Severity::Warning);
    assert_eq!((fw.pid, fw.role), (Some(800), Some(Role::Server)));
    assert_eq!(fw.local, Some(ep("127.0.0.1:7000")));
    assert_eq!(fw.count, 3);
    assert_eq!(fw.peer_pid, Some(700));
    assert_eq!(fw.peer_comm.as_deref(), Some("plugin"));
    assert!(!fw.orphan);
    assert_eq!(fw.fin_timeout_s, None);
    assert!(fw
        .summary
        .contains("its peer plugin (pid 700) never closed its own"));
    assert!(fw
        .advice
        .contains("The fault is with its peer plugin (pid 700)"));
    assert_eq!(fw.explain, "fin-wait-2");
    // The culprit sorts first: same count, higher severity.
    assert_eq!(findings[0].kind, FindingKind::CloseWaitLeak);
}

/// The usual case: the closing side already called close(), so its FIN_WAIT2
/// sockets are orphans (inode 0, no tcp_info, a timer) the kernel will reap.
#[test]
fn orphaned_fin_wait2_is_info_with_fin_timeout() {
    let mut b = B::new();
    b.proc_(process(700, "plugin"));
    b.snap.namespaces[0].tcp_fin_timeout_s = Some(60);
    b.sock(
        TcpState::CloseWait,
        "127.0.0.1:40000",
        "127.0.0.1:7000",
        &[700],
        1,
        Some(45_000),
    );
    // Orphan with a local peer and unknown age: counted (the wait is real).
    b.sock(
        TcpState::FinWait2,
        "127.0.0.1:7000",
        "127.0.0.1:40000",
        &[],
        0,
        None,
    );
    b.last().inode = 0;
    // Orphan 40 s old by its timer (60 − 20), peer elsewhere: counted.
    b.sock(
        TcpState::FinWait2,
        "127.0.0.1:7000",
        "10.1.1.1:5000",
        &[],
        0,
        None,
    );
    b.last().inode = 0;
    b.last().timer = Timer::TimeWait;
    b.last().timer_expires_ms = 20_000;
    // Orphan 5 s old, peer elsewhere: churn, not counted.
    b.sock(
        TcpState::FinWait2,
        "127.0.0.1:7000",
        "10.1.1.2:5000",
        &[],
        0,
        None,
    );
    b.last().inode = 0;
    b.last().timer = Timer::TimeWait;
    b.last().timer_expires_ms = 55_000;
    // Orphan of unknown age and no local peer: not counted.
    b.sock(
        TcpState::FinWait2,
        "127.0.0.1:7000",
        "10.1.1.3:5000",
        &[],
        0,
        None,
    );
    b.last().inode = 0;

    let findings = b.diagnose();
    let fw = only(&findings, FindingKind::FinWait2Stuck);
    assert_eq!(fw.len(), 2, "{findings:#?}");
    let local_peer = fw
        .iter()
        .find(|f| f.remote == Some(ep("127.0.0.1:40000")))
        .expect("group of the local peer");
    assert_eq!(local_peer.severity, Severity::Info);
    assert!(local_peer.orphan);
    assert_eq!(local_peer.pid, None);
    assert_eq!(local_peer.fin_timeout_s, Some(60));
    assert_eq!(local_peer.peer_pid, Some(700));
    assert_eq!(local_peer.age_unknown, Some(1));
    assert!(local_peer
        .summary
        .starts_with("1 orphaned connection to 127.0.0.1:40000 waits"));
    assert!(local_peer
        .summary
        .contains("within 60 s (net.ipv4.tcp_fin_timeout)"));
    let timed = fw
        .iter()
        .find(|f| f.remote == Some(ep("10.1.1.1:5000")))
        .expect("timed orphan");
    assert_eq!(timed.oldest_age_s, Some(40));
    assert_eq!(timed.severity, Severity::Info);
    assert!(timed.orphan);

    let cw = one(&findings, FindingKind::CloseWaitLeak);
    assert_eq!(cw.peer_pid, None);
    assert!(cw
        .summary
        .ends_with("; its peers on this host wait in FIN_WAIT2."));
}

#[test]
fn young_owned_fin_wait2_is_quiet() {
    let mut b = B::new();
    b.proc_(process(9, "c"));
    b.sock(
        TcpState::FinWait2,
        "127.0.0.1:40000",
        "10.0.0.1:80",
        &[9],
        0,
        Some(2_000),
    );
    assert!(b.diagnose().is_empty());
}

// ---------------------------------------------------------------- TIME_WAIT

fn time_wait_snapshot(counts: &[(&str, u32)]) -> B {
    let mut b = B::new();
    let mut ns = namespace(7);
    ns.name = Some("tw-test".into());
    ns.ip_local_port_range = Some(PortRange {
        low: 40_000,
        high: 40_999,
    });
    ns.ip_local_reserved_ports = vec![PortRange {
        low: 40_000,
        high: 40_099,
    }];
    b.snap.namespaces.push(ns);
    for (dest, n) in counts {
        for i in 0..*n {
            b.sock(
                TcpState::TimeWait,
                &format!("10.0.0.1:{}", 40_100 + i),
                dest,
                &[],
                0,
                None,
            );
            let s = b.last();
            s.inode = 0;
            s.netns = 7;
            s.timer = Timer::TimeWait;
            s.timer_expires_ms = 30_000;
        }
    }
    b
}

/// Incident 5: a TIME_WAIT storm toward one destination in a namespace with
/// a narrowed port range (900 usable ports).
#[test]
fn time_wait_pressure_levels_against_usable_ports() {
    let b = time_wait_snapshot(&[
        ("10.0.0.9:80", 850),
        ("10.0.0.9:81", 500),
        ("10.0.0.9:82", 120),
        ("10.0.0.9:83", 50),
    ]);
    let findings = b.diagnose();
    let tw = only(&findings, FindingKind::TimeWaitPressure);
    assert_eq!(tw.len(), 3, "{findings:#?}");
    let crit = tw[0];
    assert_eq!(crit.severity, Severity::Critical);
    assert_eq!(crit.netns, Some(7));
    assert_eq!(crit.local_ip, Some(ip("10.0.0.1")));
    assert_eq!(crit.remote, Some(ep("10.0.0.9:80")));
    assert_eq!(crit.count, 850);
    assert_eq!(crit.usable_ports, Some(900));
    assert!((crit.ratio.unwrap_or(0.0) - 850.0 / 900.0).abs() < 1e-9);
    assert_eq!(
        crit.summary,
        "850 connections from 10.0.0.1 to 10.0.0.9:80 in network namespace tw-test are in \
         TIME_WAIT: 94% of the 900 usable ephemeral ports for that destination, nearly \
         exhausted."
    );
    assert_eq!((tw[1].severity, tw[1].count), (Severity::Warning, 500));
    assert!(tw[1].summary.ends_with("at risk."));
    assert_eq!((tw[2].severity, tw[2].count), (Severity::Info, 120));
    assert!(tw[2].summary.ends_with("fine for now."));
    for f in &tw {
        assert!(!f.summary.contains("leak"), "{}", f.summary);
        assert!(f.advice.contains("not a leak"));
        let order = [
            "keep-alive",
            "ip_local_port_range",
            "server close first",
            "SO_REUSEADDR",
            "SO_LINGER 0",
        ];
        let pos: Vec<usize> = order
            .iter()
            .map(|w| f.advice.find(w).unwrap_or_else(|| panic!("{w} missing")))
            .collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]), "{}", f.advice);
        assert_eq!(f.explain, "time-wait");
    }
}

/// Server-side TIME_WAIT uses the listening port, not ephemeral ones; each
/// client address is its own destination, so it never adds up.
#[test]
fn server_side_time_wait_is_quiet() {
    let mut b = time_wait_snapshot(&[]);
    // Without a known range only the listener tells server TIME_WAIT apart.
    b.snap.namespaces[1].ip_local_port_range = None;
    b.proc_(process(3, "nginx"));
    b.listen("10.0.0.1:80", 3).netns = 7;
    for i in 0..880u32 {
        let remote = format!("10.0.0.2:{}", 30_000 + i);
        b.sock(TcpState::TimeWait, "10.0.0.1:80", &remote, &[], 0, None);
        b.last().netns = 7;
        b.last().inode = 0;
    }
    assert!(b.diagnose().is_empty());
}

#[test]
fn time_wait_outside_the_ephemeral_range_is_not_counted() {
    let mut b = time_wait_snapshot(&[]);
    for i in 0..880u32 {
        let local = format!("10.0.0.1:{}", 1000 + i);
        b.sock(TcpState::TimeWait, &local, "10.0.0.9:80", &[], 0, None);
        b.last().netns = 7;
        b.last().inode = 0;
    }
    assert!(b.diagnose().is_empty());
    // Without a known range they count, as info: the risk cannot be judged.
    b.snap.namespaces[1].ip_local_port_range = None;
    let f = b.diagnose();
    let f = one(&f, FindingKind::TimeWaitPressure);
    assert_eq!((f.severity, f.count, f.ratio), (Severity::Info, 880, None));
    assert!(f.summary.contains("cannot be judged"));
}

/// A dump is not atomic: the same socket (cookie) may appear twice.
#[test]
fn duplicate_rows_of_one_cookie_count_once() {
    let mut b = B::new();
    b.proc_(process(5, "srv"));
    b.listen("127.0.0.1:80", 5);
    b.sock(
        TcpState::CloseWait,
        "127.0.0.1:80",
        "127.0.0.1:40001",
        &[5],
        1,
        Some(60_000),
    );
    let dup = b.last().clone();
    b.snap.sockets.push(dup);
    let f = b.diagnose();
    assert_eq!(one(&f, FindingKind::CloseWaitLeak).count, 1);
}

/// A healthy control: plenty of TIME_WAIT, far below the default range.
#[test]
fn time_wait_far_below_the_range_is_quiet() {
    let mut b = B::new();
    for i in 0..250u32 {
        b.sock(
            TcpState::TimeWait,
            &format!("10.0.0.1:{}", 33_000 + i),
            "10.0.0.9:80",
            &[],
            0,
            None,
        );
        b.last().inode = 0;
    }
    // 250 of 28232 ports is below the 1 % floor.
    assert!(b.diagnose().is_empty());
}

#[test]
fn time_wait_thresholds_can_be_overridden() {
    let b = time_wait_snapshot(&[("10.0.0.9:80", 300)]);
    let cfg = DiagnoseConfig {
        time_wait_warn: 0.2,
        time_wait_crit: 0.3,
        ..DiagnoseConfig::default()
    };
    let f = diagnose(&b.snap, NOW, &cfg);
    assert_eq!(
        one(&f, FindingKind::TimeWaitPressure).severity,
        Severity::Critical
    );
}

// ---------------------------------------------------------------- processes

#[test]
fn fd_exhaustion_levels_and_breakdown() {
    let mut b = B::new();
    let mut warn = process(1, "app");
    warn.fd_count = Some(920);
    warn.fd_limit = Some(1000);
    warn.fds = Some(FdKinds {
        socket: 800,
        pipe: 100,
        file: 20,
        anon: 0,
        other: 0,
    });
    let mut crit = process(2, "db");
    crit.fd_count = Some(960);
    crit.fd_limit = Some(1000);
    let mut fine = process(3, "ok");
    fine.fd_count = Some(500);
    let mut unlimited = process(4, "free");
    unlimited.fd_count = Some(100_000);
    unlimited.fd_limit = None;
    b.proc_(warn).proc_(crit).proc_(fine).proc_(unlimited);
    let findings = b.diagnose();
    let fd = only(&findings, FindingKind::FdExhaustion);
    assert_eq!(fd.len(), 2, "{findings:#?}");
    assert_eq!((fd[0].pid, fd[0].severity), (Some(2), Severity::Critical));
    assert_eq!((fd[1].pid, fd[1].severity), (Some(1), Severity::Warning));
    let w = fd[1];
    assert_eq!(
        (w.count, w.fd_count, w.fd_limit),
        (920, Some(920), Some(1000))
    );
    assert_eq!(
        w.summary,
        "app (pid 1) has 920 of its 1000 allowed file descriptors open (92%): 800 sockets, \
         100 pipes, 20 files."
    );
    assert!(w.advice.contains("EMFILE"));
    assert!(w.advice.contains("Most of them are sockets"));
}

#[test]
fn closed_but_held_sockets_are_a_warning() {
    let mut b = B::new();
    let mut p = process(8, "client");
    p.closed_but_held = Some(3);
    let mut q = process(9, "clean");
    q.closed_but_held = None;
    b.proc_(p).proc_(q);
    let findings = b.diagnose();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let f = one(&findings, FindingKind::ClosedButHeld);
    assert_eq!(
        (f.pid, f.count, f.severity),
        (Some(8), 3, Severity::Warning)
    );
    assert!(f
        .summary
        .contains("holds 3 sockets whose connection is already gone"));
    assert_eq!(f.explain, "closed-but-held");
}

/// A server that never accepts: the queue reached the backlog.
#[test]
fn full_accept_queue_is_critical_with_listen_overflows() {
    let mut b = B::new();
    b.snap.namespaces[0].counters.listen_overflows = Some(42);
    b.snap.namespaces[0].somaxconn = Some(4096);
    b.proc_(process(900, "stuck"));
    let l = b.listen("127.0.0.1:7777", 900);
    l.recv_q = 129;
    l.send_q = 128;
    let ok = b.listen("127.0.0.1:7778", 900);
    ok.recv_q = 5;
    ok.send_q = 128;
    let zero = b.listen("127.0.0.1:7779", 900);
    zero.recv_q = 0;
    zero.send_q = 0;
    let findings = b.diagnose();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let f = one(&findings, FindingKind::AcceptQueueOverflow);
    assert_eq!(f.severity, Severity::Critical);
    assert_eq!((f.pid, f.role), (Some(900), Some(Role::Server)));
    assert_eq!(f.local, Some(ep("127.0.0.1:7777")));
    assert_eq!(
        (f.count, f.backlog, f.listen_overflows),
        (129, Some(128), Some(42))
    );
    assert!(f.advice.contains("ListenOverflows: 42"));
    assert!(f.advice.contains("net.core.somaxconn = 4096"));
}

// ---------------------------------------------------------------- host

#[test]
fn orphan_and_tw_bucket_pressure() {
    let mut b = B::new();
    let st = SockStat {
        tcp_orphan: 900,
        tcp_tw: 9_600,
        ..SockStat::default()
    };
    for id in [NS, 99] {
        if id != NS {
            b.snap.namespaces.push(namespace(id));
        }
        let n = b
            .snap
            .namespaces
            .iter_mut()
            .find(|n| n.id == id)
            .expect("ns");
        n.sockstat = Some(st);
        n.tcp_max_orphans = Some(1000);
        n.tcp_max_tw_buckets = Some(if id == NS { 10_000 } else { 100_000 });
    }
    let findings = b.diagnose();
    // Orphans are host-wide: one finding although two namespaces report them.
    let o = one(&findings, FindingKind::OrphanPressure);
    assert_eq!(
        (o.severity, o.count, o.limit, o.netns),
        (Severity::Warning, 900, Some(1000), None)
    );
    let tw = one(&findings, FindingKind::TimeWaitBuckets);
    assert_eq!(
        (tw.severity, tw.netns, tw.count),
        (Severity::Critical, Some(NS), 9_600)
    );
    assert!(tw
        .summary
        .starts_with("This host has 9600 TIME_WAIT sockets, 96%"));
}

// ---------------------------------------------------------------- healthy

/// A keep-alive pool of ESTABLISHED connections and a fast-closing server
/// produce nothing at all.
#[test]
fn healthy_host_is_quiet() {
    let mut b = B::new();
    b.proc_(process(1, "client")).proc_(process(2, "server"));
    b.listen("127.0.0.1:8080", 2);
    for i in 0..50u32 {
        let port = 40_000 + i;
        b.sock(
            TcpState::Established,
            &format!("127.0.0.1:{port}"),
            "127.0.0.1:8080",
            &[1],
            0,
            Some(1000),
        );
        b.sock(
            TcpState::Established,
            "127.0.0.1:8080",
            &format!("127.0.0.1:{port}"),
            &[2],
            0,
            Some(1000),
        );
    }
    // Churn: CLOSE_WAIT noticed within 200 ms.
    for i in 0..30u32 {
        b.sock(
            TcpState::CloseWait,
            "127.0.0.1:8080",
            &format!("127.0.0.1:{}", 50_000 + i),
            &[2],
            0,
            Some(200),
        );
    }
    let findings = b.diagnose();
    assert!(findings.is_empty(), "{findings:#?}");
}

// ---------------------------------------------------------------- shape

#[test]
fn keys_are_stable_across_time_and_distinguish_processes() {
    let mut b = B::new();
    b.proc_(process(5, "srv"));
    b.listen("127.0.0.1:80", 5);
    b.sock(
        TcpState::CloseWait,
        "127.0.0.1:80",
        "127.0.0.1:40001",
        &[5],
        1,
        Some(60_000),
    );
    let a = b.diagnose();
    let later = diagnose(&b.snap, NOW + 60_000, &DiagnoseConfig::default());
    assert_eq!(a[0].key(), later[0].key());
    assert_eq!(later[0].oldest_age_s, Some(120));
    // Same pid, another process (pid reuse): another key.
    b.snap.processes[0].start_time += 1;
    let reused = b.diagnose();
    assert_ne!(a[0].key(), reused[0].key());
}

#[test]
fn json_shape() {
    let mut b = B::new();
    b.proc_(process(5, "srv"));
    b.listen("127.0.0.1:80", 5);
    b.sock(
        TcpState::CloseWait,
        "127.0.0.1:80",
        "127.0.0.1:40001",
        &[5],
        3,
        Some(60_000),
    );
    let f = b.diagnose();
    let v = serde_json::to_value(&f[0]).expect("serialises");
    assert_eq!(v["kind"], "close_wait_leak");
    assert_eq!(v["severity"], "warning");
    assert_eq!(v["role"], "server");
    assert_eq!(v["local"], "127.0.0.1:80");
    assert_eq!(v["age_source"], "tcp_info");
    assert_eq!(v["unread_bytes"], 2);
    assert_eq!(v["cookies"], serde_json::json!([2]));
    assert_eq!(v["explain"], "close-wait");
    for absent in [
        "remote",
        "rate_per_min",
        "eta_s",
        "also_held_by",
        "start_time",
        "orphan",
    ] {
        assert!(v.get(absent).is_none(), "{absent} in {v}");
    }
    assert_eq!(
        serde_json::to_value(FindingKind::FinWait2Stuck).expect("kind"),
        "fin_wait2_stuck"
    );
    assert!(Severity::Info < Severity::Warning && Severity::Warning < Severity::Critical);
    assert_eq!(Severity::parse("WARN"), Some(Severity::Warning));
}

#[test]
fn every_kind_and_state_has_an_explanation() {
    for k in FindingKind::ALL {
        assert!(explain::explain(k.explain_topic()).is_some(), "{k}");
        assert!(explain::explain(k.as_str()).is_some(), "{k}");
    }
    for s in TcpState::ALL {
        assert!(explain::explain(s.kernel_name()).is_some(), "{s}");
    }
}

// ---------------------------------------------------------------- properties

const STATES: [TcpState; 11] = TcpState::ALL;

fn arb_endpoint() -> impl Strategy<Value = Endpoint> {
    // Few addresses and ports so that listeners, mirrors and groups collide.
    (
        prop_oneof![
            Just("127.0.0.1"),
            Just("10.0.0.1"),
            Just("::1"),
            Just("::ffff:127.0.0.1"),
            Just("0.0.0.0")
        ],
        prop_oneof![
            Just(0u16),
            Just(80),
            Just(40_000),
            Just(40_001),
            1u16..=65535
        ],
    )
        .prop_map(|(a, p)| Endpoint::new(ip(a), p))
}

fn arb_socket() -> impl Strategy<Value = Socket> {
    (
        (0usize..STATES.len(), arb_endpoint(), arb_endpoint()),
        (
            any::<u32>(),
            any::<u32>(),
            0u64..6,
            0u64..3,
            prop_oneof![Just(NS), Just(7u64)],
        ),
        (0u8..6, any::<u32>(), proptest::option::of(any::<u32>())),
        proptest::collection::vec((1u32..6, 0u32..5, any::<bool>()), 0..3),
    )
        .prop_map(
            |(
                (st, local, remote),
                (recv_q, send_q, cookie, inode, netns),
                (timer, exp, ack),
                owners,
            )| {
                Socket {
                    state: STATES[st],
                    family: Family::Inet,
                    local,
                    remote,
                    recv_q,
                    send_q,
                    cookie: Cookie(cookie),
                    inode,
                    uid: 0,
                    netns,
                    timer: Timer::from_kernel(timer),
                    timer_expires_ms: exp,
                    retrans: 0,
                    tcp_info: ack.map(|ms| TcpInfo {
                        last_ack_recv_ms: ms,
                        last_data_sent_ms: ms,
                        ..TcpInfo::default()
                    }),
                    mem: None,
                    owners: owners
                        .into_iter()
                        .map(|(pid, fd, inherited)| Owner { pid, fd, inherited })
                        .collect(),
                }
            },
        )
}

fn arb_process() -> impl Strategy<Value = Process> {
    (
        1u32..5,
        any::<u64>(),
        prop_oneof![Just("java"), Just(""), Just("a b")],
        proptest::option::of(any::<u32>()),
        proptest::option::of(prop_oneof![Just(0u64), 1u64..10_000, Just(u64::MAX)]),
        proptest::option::of(any::<u32>()),
        proptest::option::of((any::<u32>(), any::<u32>(), 0u32..10, 0u32..10, 0u32..10)),
    )
        .prop_map(|(pid, start, comm, fd_count, fd_limit, cbh, fds)| Process {
            pid,
            ppid: 1,
            start_time: start,
            comm: comm.to_string(),
            cmdline: String::new(),
            uid: 0,
            netns: NS,
            ns_pid: None,
            fd_count,
            fd_limit,
            fd_limit_hard: None,
            // Keep the sum in u32: FdKinds::total adds them.
            fds: fds.map(|(s, p, file, anon, other)| FdKinds {
                socket: s / 4,
                pipe: p / 4,
                file,
                anon,
                other,
            }),
            closed_but_held: cbh,
        })
}

fn arb_namespace(id: u64) -> impl Strategy<Value = Namespace> {
    (
        proptest::option::of((any::<u16>(), any::<u16>())),
        proptest::collection::vec((any::<u16>(), any::<u16>()), 0..3),
        proptest::option::of(any::<u32>()),
        proptest::option::of((any::<u64>(), any::<u64>())),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u64>()),
        any::<bool>(),
    )
        .prop_map(move |(range, reserved, fin, st, max_o, max_tw, own)| {
            let mut n = Namespace::new(id);
            n.is_own = own;
            n.ip_local_port_range = range.map(|(low, high)| PortRange { low, high });
            n.ip_local_reserved_ports = reserved
                .into_iter()
                .map(|(low, high)| PortRange { low, high })
                .collect();
            n.tcp_fin_timeout_s = fin;
            n.sockstat = st.map(|(o, tw)| SockStat {
                tcp_orphan: o,
                tcp_tw: tw,
                ..SockStat::default()
            });
            n.tcp_max_orphans = max_o;
            n.tcp_max_tw_buckets = max_tw;
            n
        })
}

fn arb_snapshot() -> impl Strategy<Value = Snapshot> {
    (
        proptest::collection::vec(arb_socket(), 0..40),
        proptest::collection::vec(arb_process(), 0..5),
        arb_namespace(NS),
        proptest::option::of(arb_namespace(7)),
        proptest::collection::vec(arb_endpoint(), 0..3),
        any::<u64>(),
    )
        .prop_map(|(sockets, mut processes, ns, ns2, listeners, taken)| {
            // A snapshot lists each pid once.
            processes.sort_by_key(|p| p.pid);
            processes.dedup_by_key(|p| p.pid);
            Snapshot {
                taken_at_ms: taken,
                namespaces: std::iter::once(ns).chain(ns2).collect(),
                sockets,
                processes,
                listeners: listeners.into_iter().map(|e| (NS, e)).collect(),
                ..Snapshot::default()
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn diagnose_never_panics_and_findings_are_well_formed(
        snap in arb_snapshot(),
        now in any::<u64>(),
        min_age in prop_oneof![Just(0u64), Just(30), any::<u64>()],
    ) {
        let cfg = DiagnoseConfig { min_age_s: min_age, ..DiagnoseConfig::default() };
        let findings = diagnose(&snap, now, &cfg);
        for f in &findings {
            prop_assert!(!f.summary.trim().is_empty());
            prop_assert!(!f.advice.trim().is_empty());
            prop_assert!(f.summary.ends_with('.'), "{}", f.summary);
            prop_assert!(explain::explain(&f.explain).is_some(), "{}", f.explain);
            prop_assert!(f.ratio.is_none_or(f64::is_finite));
            prop_assert!(f.cookies.len() <= cfg.oldest_cookies);
            prop_assert!(f.kind != FindingKind::FdLeak);
            prop_assert!(serde_json::to_string(f).is_ok());
        }
        for w in findings.windows(2) {
            prop_assert!((w[0].severity, w[0].count) >= (w[1].severity, w[1].count));
        }
        // Keys are unique: watch matches findings by them.
        let mut keys: Vec<_> = findings.iter().map(Finding::key).collect();
        keys.sort();
        keys.dedup();
        prop_assert_eq!(keys.len(), findings.len());
    }

    /// No socket is counted twice in CLOSE_WAIT findings, however many
    /// processes hold it.
    #[test]
    fn close_wait_sockets_are_counted_once(snap in arb_snapshot()) {
        let cfg = DiagnoseConfig { min_age_s: 0, ..DiagnoseConfig::default() };
        let findings = diagnose(&snap, snap.taken_at_ms, &cfg);
        let counted: u64 = findings
            .iter()
            .filter(|f| f.kind == FindingKind::CloseWaitLeak)
            .map(|f| f.count)
            .sum();
        // The engine keeps the first row of each cookie (a dump may repeat a
        // socket) and never merges cookie 0 (a collector without cookies).
        let mut seen = std::collections::HashSet::new();
        let expected = snap
            .sockets
            .iter()
            .filter(|s| s.cookie.0 == 0 || seen.insert(s.cookie))
            .filter(|s| s.state == TcpState::CloseWait)
            .count();
        prop_assert_eq!(counted, expected as u64);
    }
}

// ---------------------------------------------------------------- half-close

/// A relay writes after the peer's FIN (last send more recent than the
/// CLOSE_WAIT age, and recent): half_closed, not a leak. Beside it, sockets
/// whose last send came before the FIN are the leak, and the finding's
/// group count includes the relay's sockets the way the inventory does.
#[test]
fn sockets_written_after_the_fin_are_half_closed_not_leaked() {
    let mut b = B::new();
    b.proc_(process(4242, "java"));
    b.listen("127.0.0.1:9530", 4242);
    for i in 0..3u32 {
        b.sock(
            TcpState::CloseWait,
            "127.0.0.1:9530",
            &format!("127.0.0.1:{}", 41_000 + i),
            &[4242],
            1,
            Some(60_000),
        );
        // Written 200 ms ago, a minute after the FIN arrived.
        if let Some(i) = b.last().tcp_info.as_mut() {
            i.last_data_sent_ms = 200;
        }
    }
    for i in 0..2u32 {
        b.sock(
            TcpState::CloseWait,
            "127.0.0.1:9530",
            &format!("127.0.0.1:{}", 42_000 + i),
            &[4242],
            1,
            Some(60_000),
        );
    }
    let findings = b.diagnose();
    let h = one(&findings, FindingKind::HalfClosed);
    assert_eq!(h.severity, Severity::Info);
    assert_eq!(h.count, 3);
    assert!(
        h.summary.contains("keeps sending on 3 half-closed"),
        "{}",
        h.summary
    );
    let f = one(&findings, FindingKind::CloseWaitLeak);
    assert_eq!(f.count, 2, "only the idle ones are judged");
    assert_eq!(f.group_count, Some(5));
    assert!(
        f.summary
            .contains("5 sockets in CLOSE_WAIT, 2 of them no longer written to"),
        "{}",
        f.summary
    );

    // Written long ago (or before the FIN): all five are the leak.
    for s in b.snap.sockets.iter_mut() {
        if let Some(i) = s.tcp_info.as_mut() {
            i.last_data_sent_ms = 60_000;
        }
    }
    let findings = b.diagnose();
    assert!(
        only(&findings, FindingKind::HalfClosed).is_empty(),
        "{findings:#?}"
    );
    assert_eq!(one(&findings, FindingKind::CloseWaitLeak).count, 5);
}

/// Young CLOSE_WAIT only: no finding, but `unjudged_close_wait` names them.
#[test]
fn young_close_wait_is_unjudged_not_silent() {
    let mut b = B::new();
    b.proc_(process(31667, "python3"));
    b.listen("127.0.0.1:8080", 31667);
    for i in 0..40u32 {
        b.sock(
            TcpState::CloseWait,
            "127.0.0.1:8080",
            &format!("127.0.0.1:{}", 43_000 + i),
            &[31667],
            1,
            Some(2_000),
        );
    }
    assert!(only(&b.diagnose(), FindingKind::CloseWaitLeak).is_empty());
    let u = sockleak_model::findings::unjudged_close_wait(&b.snap, NOW, &DiagnoseConfig::default());
    assert_eq!(u.len(), 1, "{u:#?}");
    assert_eq!(
        (u[0].pid, u[0].count, u[0].min_age_s),
        (Some(31667), 40, 30)
    );
    assert_eq!(u[0].comm.as_deref(), Some("python3"));
}

/// A soft fd limit of 0: a sentence that says what it means, not "0 % of
/// its 0 allowed".
#[test]
fn a_soft_fd_limit_of_zero_is_said_plainly() {
    let mut b = B::new();
    let mut p = process(555, "worker");
    p.fd_count = Some(7);
    p.fd_limit = Some(0);
    b.proc_(p);
    let findings = b.diagnose();
    let f = one(&findings, FindingKind::FdExhaustion);
    assert_eq!(f.severity, Severity::Critical);
    assert!(
        f.summary.contains("soft open-file limit of 0") && f.summary.contains("7 file descriptors"),
        "{}",
        f.summary
    );
    assert!(!f.summary.contains("0 allowed"), "{}", f.summary);
}
