//! What a refused read of another process says: a capability sockleak lacks
//! (named, fixable) or a guard no capability lifts (a Landlock domain, a
//! user namespace: one quiet note, no missing-privileges alarm). Scan,
//! doctor and the exporter must tell the same story. The guarded process is
//! made here (a `sleep` outside sockleak's Landlock domain or user
//! namespace), so the tests do not depend on the machine's own sandbox.

use crate::serve_support::value_of;
use crate::support::{require_root, validate_schema};
use serde_json::Value;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A root process for sockleak to be refused; stopped by pid on drop.
struct Target(Child);

impl Target {
    fn start() -> Target {
        let child = Command::new("sleep")
            .arg("60")
            .stdin(Stdio::null())
            .spawn()
            .expect("start sleep");
        // Until it has exec'd, its comm is the test's.
        let pid = child.id();
        for _ in 0..100 {
            if std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c == "sleep\n") {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Target(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `LANDLOCK_ACCESS_FS_MAKE_BLOCK` (include/uapi/linux/landlock.h): a right
/// sockleak never uses, so the domain forbids nothing it does; being in a
/// domain is what matters, as Landlock refuses ptrace access (and so
/// `/proc/PID/fd` links and `ns/` links) to processes outside it.
const LANDLOCK_ACCESS_FS_MAKE_BLOCK: u64 = 1 << 11;

/// Whether this kernel runs Landlock (ABI version query).
fn landlock_available() -> bool {
    // SAFETY: the version query takes no attribute (NULL, 0) and flag 1
    // (LANDLOCK_CREATE_RULESET_VERSION); it only returns a number.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    v >= 1
}

/// `sockleak ARGS` inside a fresh Landlock domain: still root with every
/// capability, but refused every process outside the domain.
fn sockleak_in_landlock(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sockleak"));
    cmd.args(args).env("NO_COLOR", "1");
    // SAFETY: between fork and exec only async-signal-safe syscalls run,
    // on a stack-local attribute; errors are returned, nothing allocates.
    unsafe {
        cmd.pre_exec(|| {
            let handled: u64 = LANDLOCK_ACCESS_FS_MAKE_BLOCK;
            let fd = libc::syscall(
                libc::SYS_landlock_create_ruleset,
                &handled as *const u64,
                std::mem::size_of::<u64>(),
                0u32,
            );
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::syscall(libc::SYS_landlock_restrict_self, fd as libc::c_int, 0u32) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(fd as libc::c_int);
            Ok(())
        });
    }
    cmd
}

/// `sockleak ARGS` as uid 65534 with the given capabilities (setpriv's
/// `--inh-caps` syntax, e.g. "-all" or "+dac_read_search") and nothing else.
fn sockleak_as_nobody(caps: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
    if caps == "-all" {
        cmd.args(["--inh-caps=-all", "--bounding-set=-all"]);
    } else {
        cmd.arg(format!("--inh-caps={caps}"))
            .arg(format!("--ambient-caps={caps}"));
    }
    cmd.arg(env!("CARGO_BIN_EXE_sockleak"))
        .args(args)
        .env("NO_COLOR", "1");
    cmd
}

/// Runs `cmd`, expects exit 0, returns (stdout, stderr).
fn output(mut cmd: Command) -> (String, String) {
    let out = cmd.output().expect("run sockleak");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{cmd:?}: {stderr}");
    (stdout, stderr)
}

fn scan_doc(cmd: Command) -> (Value, String) {
    let (out, err) = output(cmd);
    let doc: Value = serde_json::from_str(&out).expect("scan --json is JSON");
    validate_schema(&doc, "scan-v1.schema.json");
    (doc, err)
}

/// The permission entry of `partial` about `what`.
fn entry<'a>(doc: &'a Value, what: &str) -> &'a Value {
    doc["partial"]
        .as_array()
        .expect("partial")
        .iter()
        .find(|n| n["what"] == what && n["kind"] == "permission")
        .unwrap_or_else(|| panic!("no permission entry for {what}: {}", doc["partial"]))
}

fn names(n: &Value, pid: u32, comm: &str) -> bool {
    n["processes"]
        .as_array()
        .is_some_and(|ps| ps.iter().any(|p| p["pid"] == pid && p["comm"] == comm))
}

/// Setpriv and Landlock, or a SKIPPED line.
fn can_run(test: &str, landlock: bool) -> bool {
    if !require_root(
        test,
        "starts processes as another uid or in a Landlock domain",
    ) {
        return false;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("SKIPPED {test}: setpriv (util-linux) not installed");
        return false;
    }
    if landlock && !landlock_available() {
        eprintln!(
            "SKIPPED {test}: this kernel does not run Landlock (needs >= 5.13 with lsm=landlock)"
        );
        return false;
    }
    true
}

const SCAN: &[&str] = &[
    "scan",
    "--json",
    "--fail-on",
    "never",
    "--fd-source",
    "proc",
];

#[test]
fn missing_capability_names_the_process_and_exactly_the_capabilities() {
    if !can_run(
        "missing_capability_names_the_process_and_exactly_the_capabilities",
        false,
    ) {
        return;
    }
    let target = Target::start();
    // No capability at all: both are named.
    let (doc, err) = scan_doc(sockleak_as_nobody("-all", SCAN));
    let fd = entry(&doc, "fd tables");
    assert_eq!(fd["cause"], "missing_capability", "{fd}");
    assert_eq!(
        fd["fix"],
        "run as root or grant CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH"
    );
    assert!(names(fd, target.pid(), "sleep"), "{fd}");
    // Fixable gaps stay loud: a partial line naming processes and the fix.
    let line = err
        .lines()
        .find(|l| l.starts_with("sockleak: partial: fd tables"))
        .unwrap_or_else(|| panic!("no partial line: {err}"));
    assert!(
        line.contains("pid ")
            && line.contains("fix: run as root or grant CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH"),
        "{line}"
    );
    assert!(!err.contains("guarded"), "{err}");

    // CAP_DAC_READ_SEARCH held: only CAP_SYS_PTRACE is missing, and named.
    let (doc, _) = scan_doc(sockleak_as_nobody("+dac_read_search", SCAN));
    let fd = entry(&doc, "fd tables");
    assert_eq!(fd["cause"], "missing_capability", "{fd}");
    assert_eq!(fd["fix"], "run as root or grant CAP_SYS_PTRACE");
    assert!(names(fd, target.pid(), "sleep"), "{fd}");

    // doctor tells the same story: the fd-table line is a gap with the fix.
    let (text, _) = output(sockleak_as_nobody("-all", &["doctor"]));
    let fd_line = text
        .lines()
        .find(|l| l.contains("read other users' fd tables"))
        .expect("fd table line");
    assert!(
        fd_line.starts_with("MISS") && fd_line.contains("pid "),
        "{text}"
    );
    assert!(
        text.contains("fix: run as root or grant CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH: setcap "),
        "{text}"
    );
    assert!(!text.contains("can see every socket"), "{text}");
}

#[test]
fn a_process_guarded_by_landlock_is_one_quiet_note_in_scan_and_doctor() {
    if !can_run(
        "a_process_guarded_by_landlock_is_one_quiet_note_in_scan_and_doctor",
        true,
    ) {
        return;
    }
    let target = Target::start();
    let (doc, err) = scan_doc(sockleak_in_landlock(SCAN));
    for what in ["fd tables", "namespace discovery"] {
        let n = entry(&doc, what);
        assert_eq!(n["cause"], "guarded", "{n}");
        assert!(n.get("fix").is_none(), "nothing to grant: {n}");
        assert!(names(n, target.pid(), "sleep"), "{n}");
    }
    // One quiet line, no alarming partial: line for what nobody can fix.
    assert!(!err.contains("partial:"), "{err}");
    let guarded: Vec<&str> = err.lines().filter(|l| l.contains("guarded")).collect();
    assert_eq!(guarded.len(), 1, "{err}");
    assert!(guarded[0].starts_with("sockleak: note: pid "), "{err}");
    assert!(guarded[0].contains("no capability would help"), "{err}");

    // doctor runs the same scan: a note naming the guarded processes, not
    // an all-clear, and no capability asked for.
    let (text, _) = output(sockleak_in_landlock(&["doctor"]));
    let note = text
        .lines()
        .find(|l| l.contains("processes guarded by the system"))
        .expect("guarded line");
    assert!(note.starts_with("note") && note.contains("pid "), "{text}");
    assert!(!text.contains("MISS read other users' fd tables"), "{text}");
    assert!(
        text.contains("except the guarded processes above"),
        "{text}"
    );
}

#[test]
fn a_user_namespace_boundary_is_guarded_not_a_missing_capability() {
    if !can_run(
        "a_user_namespace_boundary_is_guarded_not_a_missing_capability",
        false,
    ) {
        return;
    }
    if Command::new("unshare").arg("--version").output().is_err() {
        eprintln!("SKIPPED a_user_namespace_boundary_is_guarded_not_a_missing_capability: unshare (util-linux) not installed");
        return;
    }
    let target = Target::start();
    // Root with every capability, but in a user namespace of its own: the
    // capabilities stop at its boundary.
    let mut cmd = Command::new("unshare");
    cmd.args(["--user", "--map-root-user"])
        .arg(env!("CARGO_BIN_EXE_sockleak"))
        .args(SCAN)
        .env("NO_COLOR", "1");
    let (doc, err) = scan_doc(cmd);
    let fd = entry(&doc, "fd tables");
    assert_eq!(fd["cause"], "guarded", "{fd}");
    assert!(
        fd["reason"]
            .as_str()
            .is_some_and(|r| r.contains("user namespace")),
        "{fd}"
    );
    assert!(names(fd, target.pid(), "sleep"), "{fd}");
    assert!(!err.contains("partial: fd tables"), "{err}");
}

#[test]
fn guarded_processes_do_not_count_as_missing_privileges_in_metrics() {
    if !can_run(
        "guarded_processes_do_not_count_as_missing_privileges_in_metrics",
        true,
    ) {
        return;
    }
    let _target = Target::start();
    let mut cmd = sockleak_in_landlock(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--fd-source",
        "proc",
        "--interval",
        "1",
    ]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut e = crate::serve_support::Exporter::from_command(cmd);
    e.wait_until(Duration::from_secs(30), "first scan", || {
        crate::serve_support::get(e.addr, "/healthz", &[]).is_ok_and(|r| r.status == 200)
    });
    // Two scans, so a guarded note repeated by the second is not printed again.
    std::thread::sleep(Duration::from_millis(1500));
    let text = e.metrics();
    assert!(
        value_of(&text, "sockleak_scan_partial", &[("kind", "guarded")]).is_some_and(|v| v > 0.0),
        "{text}"
    );
    assert_eq!(
        value_of(&text, "sockleak_scan_partial", &[("kind", "permission")]),
        Some(0.0),
        "the missing-privileges alert watches kind=\"permission\": {text}"
    );
    let _ = e.stop();
    let log = e.stderr.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(!log.contains("partial:"), "{log}");
    assert_eq!(log.matches("guarded").count(), 1, "once per session: {log}");
}
