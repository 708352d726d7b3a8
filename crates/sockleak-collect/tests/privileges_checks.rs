//! `probe` and the `sockleak doctor` checks, as root and (re-executed through
//! `setpriv`) as an unprivileged user, where every gap must come with a fix
//! and the /proc walk must label what it could not read.

use sockleak_collect::privileges::{checks, probe, Check};
use sockleak_collect::procfs::{scan_processes, ProcOptions};
use sockleak_model::PartialKind;
use std::path::Path;
use std::process::Command;

const CHILD_ENV: &str = "SOCKLEAK_PRIVILEGES_CHILD";

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn by_name<'a>(checks: &'a [Check], prefix: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.name.starts_with(prefix))
        .unwrap_or_else(|| panic!("no check {prefix}: {checks:?}"))
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let mut parts = rel
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (ma, mi) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (ma, mi) >= (major, minor)
}

#[test]
fn probe_reads_euid_and_effective_capabilities() {
    let p = probe();
    // SAFETY: geteuid has no preconditions.
    assert_eq!(p.euid, unsafe { libc::geteuid() });
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).expect("hex"))
        .expect("CapEff line");
    assert_eq!(p.cap_dac_read_search, eff & (1 << 2) != 0);
    assert_eq!(p.cap_sys_ptrace, eff & (1 << 19) != 0);
    assert_eq!(p.cap_sys_admin, eff & (1 << 21) != 0);
    assert_eq!(p.cap_perfmon, eff & (1 << 38) != 0);
    assert_eq!(p.cap_bpf, eff & (1 << 39) != 0);
}

#[test]
fn every_check_is_reported_and_every_failure_has_a_fix() {
    let cs = checks(Path::new("/proc"));
    let names: Vec<&str> = cs.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        vec![
            "running as root",
            "read other users' fd tables",
            "see other processes' namespaces",
            "enter other network namespaces",
            "sock_diag (NETLINK_SOCK_DIAG)",
            "eBPF fd table (fast owners)",
            "eBPF state tracker (watch samples)",
            "named network namespaces (/run/netns)",
            "pidfd_getfd (confirm closed-but-held sockets)",
            "processes guarded by the system",
        ]
    );
    for c in &cs {
        // A failure comes with a fix, unless no capability would help.
        assert_eq!(c.ok || c.guarded, c.fix.is_none(), "{c:?}");
        assert!(!(c.ok && c.guarded), "{c:?}");
        assert!(!c.detail.is_empty(), "{c:?}");
    }
    assert_eq!(by_name(&cs, "running as root").ok, is_root());
    assert!(by_name(&cs, "sock_diag").ok, "{cs:?}");
    assert_eq!(by_name(&cs, "pidfd_getfd").ok, kernel_at_least(5, 6));
    let p = probe();
    assert_eq!(by_name(&cs, "enter other").ok, p.cap_sys_admin);
}

#[test]
fn root_reads_the_fd_table_of_another_users_process() {
    if !is_root() {
        eprintln!("SKIPPED: needs root to start a process as another uid");
        return;
    }
    // A process of uid 65534 holding a pipe, stopped by pid on drop.
    let mut child = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sleep",
            "20",
        ])
        .stdin(std::process::Stdio::null())
        .spawn();
    let Ok(child) = child.as_mut() else {
        eprintln!("SKIPPED: setpriv not available");
        return;
    };
    // Wait (bounded) until it runs as 65534.
    let pid = child.id();
    for _ in 0..100 {
        let owner = std::fs::metadata(format!("/proc/{pid}"))
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
            .unwrap_or(0);
        if owner == 65534 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let cs = checks(Path::new("/proc"));
    let _ = child.kill();
    let _ = child.wait();
    let c = by_name(&cs, "read other users' fd tables");
    assert!(c.ok, "{c:?}");
    assert!(
        c.detail
            .contains("CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH held"),
        "{c:?}"
    );
}

/// Re-runs `unprivileged_child_body` as uid 65534 with no capabilities.
#[test]
fn unprivileged_run_degrades_loudly() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return unprivileged_child_body();
    }
    if !is_root() {
        eprintln!("SKIPPED: needs root to drop to another uid");
        return;
    }
    let exe = std::env::current_exe().expect("test binary path");
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--no-new-privs",
        ])
        .arg(exe)
        .args([
            "--exact",
            "unprivileged_run_degrades_loudly",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .output();
    let Ok(out) = out else {
        eprintln!("SKIPPED: setpriv not available");
        return;
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "unprivileged run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("CHILD-DONE"), "{stdout}");
}

/// Runs as uid 65534 with no capabilities (see above): asserts from inside.
fn unprivileged_child_body() {
    let p = probe();
    assert_eq!(p.euid, 65534);
    assert!(!p.cap_sys_ptrace && !p.cap_dac_read_search && !p.cap_sys_admin);

    let cs = checks(Path::new("/proc"));
    for name in [
        "running as root",
        "read other users' fd tables",
        "enter other",
    ] {
        let c = by_name(&cs, name);
        assert!(!c.ok, "{c:?}");
        let fix = c.fix.as_deref().unwrap_or_default();
        assert!(fix.contains("setcap") || fix.contains("root"), "{c:?}");
    }
    assert!(by_name(&cs, "sock_diag").ok, "sock_diag needs no privilege");

    // The walk still lists every process; root's fd tables are labelled as
    // refused, with the capability that would fix it.
    let scan = scan_processes(&ProcOptions::default());
    assert!(scan.processes.iter().any(|p| p.pid == 1));
    let note = scan
        .notes
        .iter()
        .find(|n| n.kind == PartialKind::Permission && n.what == "fd tables")
        .expect("fd tables permission note");
    assert_eq!(
        note.fix.as_deref(),
        Some("run as root or grant CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH")
    );
    assert_eq!(
        note.cause,
        Some(sockleak_model::PartialCause::MissingCapability)
    );
    // pid 1 is root's and named; doctor's line names the same refusals.
    assert!(note.processes.iter().any(|p| p.pid == 1), "{note:?}");
    let fd_check = by_name(&cs, "read other users' fd tables");
    assert!(fd_check.detail.contains("pid 1 ("), "{fd_check:?}");
    let refused: Vec<_> = scan.processes.iter().filter(|p| p.fds.is_none()).collect();
    assert_eq!(refused.len(), note.count as usize);
    assert_eq!(note.processes.len(), note.count as usize);
    // Our own table is readable.
    let own = scan
        .processes
        .iter()
        .find(|p| p.pid == std::process::id())
        .expect("own process");
    assert!(own.fds.is_some_and(|k| k.total() >= 3), "{own:?}");
    // Linux >= 6.2 counts fds in st_size without any permission: refused
    // tables still have a count.
    if kernel_at_least(6, 2) {
        assert!(refused.iter().any(|p| p.fd_count.is_some()), "{refused:?}");
    }
    println!("CHILD-DONE");
}
