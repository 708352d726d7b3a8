//! The /proc walk against a fake proc tree (tests/fixtures/proc): exact fields,
//! and labelled gaps for malformed and missing files.
//!
//! Fixture pids:
//! - 100: comm `evil) name (x)` (spaces and parens), NSpid 7, limits 1024/4096,
//!   fds of every kind incl. two sockets and a malformed `socket:[bogus]` link.
//! - 200: a kernel thread: empty cmdline, unlimited limits, no fds.
//! - 300: stat without a comm: skipped, Malformed note.
//! - 400: no valid `Uid:`, unparsable limits, NUL-padded cmdline.
//! - 500: no fd/ and ns/ directories: on procfs only an exited process looks
//!   like that, so it is counted as vanished.

use sockleak_collect::procfs::{scan_processes, ProcOptions, ProcScan, SocketFd};
use sockleak_model::{FdKinds, PartialKind, PartialNote, Process};
use std::path::PathBuf;

fn fixture_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/proc")
}

fn scan(pids: Option<Vec<u32>>, walk_fds: bool, threads: usize) -> ProcScan {
    scan_processes(&ProcOptions {
        proc_root: fixture_root(),
        threads,
        pids,
        walk_fds,
    })
}

fn process(scan: &ProcScan, pid: u32) -> &Process {
    scan.processes
        .iter()
        .find(|p| p.pid == pid)
        .unwrap_or_else(|| panic!("pid {pid} missing from {:?}", scan.processes))
}

fn note<'a>(scan: &'a ProcScan, kind: PartialKind, what: &str) -> Option<&'a PartialNote> {
    scan.notes.iter().find(|n| n.kind == kind && n.what == what)
}

#[test]
fn whole_tree_every_field() {
    let s = scan(None, true, 3);
    let pids: Vec<u32> = s.processes.iter().map(|p| p.pid).collect();
    assert_eq!(
        pids,
        vec![100, 200, 400],
        "sorted, 300 malformed, 500 vanished"
    );

    assert_eq!(
        *process(&s, 100),
        Process {
            pid: 100,
            ppid: 1,
            start_time: 424242,
            comm: "evil) name (x)".to_string(),
            // The argument with spaces is quoted: boundaries survive the join.
            cmdline: "/usr/bin/evil --flag 'value with space'".to_string(),
            uid: 1000,
            netns: 4026531840,
            ns_pid: Some(7),
            fd_count: Some(8),
            fd_limit: Some(1024),
            fd_limit_hard: Some(4096),
            fds: Some(FdKinds {
                socket: 3,
                pipe: 2,
                file: 1,
                anon: 1,
                other: 1,
            }),
            closed_but_held: None,
        }
    );

    assert_eq!(
        *process(&s, 200),
        Process {
            pid: 200,
            ppid: 2,
            start_time: 5,
            comm: "kworker/0:1-events".to_string(),
            cmdline: String::new(),
            uid: 0,
            netns: 4026531840,
            ns_pid: None, // NSpid equals the pid
            fd_count: Some(0),
            fd_limit: None,
            fd_limit_hard: None,
            fds: Some(FdKinds::default()),
            closed_but_held: None,
        }
    );

    let p400 = process(&s, 400);
    assert_eq!(p400.cmdline, "nginx: worker process");
    assert_eq!((p400.fd_limit, p400.fd_limit_hard), (None, None));
    assert_eq!(p400.netns, 4026532000);
    assert_eq!(p400.ppid, 100);
    assert_eq!(p400.start_time, 99);
    // No Uid: line: falls back to the owner of the /proc/PID directory.
    let dir_uid = std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata(fixture_root().join("400")).expect("stat fixture dir"),
    );
    assert_eq!(p400.uid, dir_uid);

    let mut socket_fds = s.socket_fds.clone();
    socket_fds.sort_by_key(|f| (f.pid, f.fd));
    assert_eq!(
        socket_fds,
        vec![
            SocketFd {
                inode: 123,
                pid: 100,
                fd: 3
            },
            SocketFd {
                inode: 456,
                pid: 100,
                fd: 4
            },
            SocketFd {
                inode: 789,
                pid: 400,
                fd: 10
            },
        ]
    );
}

#[test]
fn malformed_and_vanished_are_labelled() {
    let s = scan(None, true, 2);
    let stat = note(&s, PartialKind::Malformed, "/proc/PID/stat").expect("stat note");
    assert_eq!(
        (stat.count, stat.reason.as_str()),
        (1, "stat: no \"(comm)\" field")
    );
    let status = note(&s, PartialKind::Malformed, "/proc/PID/status").expect("status note");
    assert_eq!(status.count, 1);
    let limits = note(&s, PartialKind::Malformed, "/proc/PID/limits").expect("limits note");
    assert_eq!(
        (limits.count, limits.reason.as_str()),
        (1, "limits: no valid \"Max open files\" line")
    );
    let bogus = note(&s, PartialKind::Malformed, "socket fd links").expect("socket link note");
    assert_eq!(bogus.count, 1);
    let gone = note(&s, PartialKind::Vanished, "processes").expect("vanished note");
    assert_eq!(gone.count, 1, "pid 500");
    assert_eq!(s.notes.len(), 5, "no other notes: {:?}", s.notes);
}

#[test]
fn selected_pids_and_missing_ones() {
    let s = scan(Some(vec![400, 100, 999_999, 100]), true, 4);
    let pids: Vec<u32> = s.processes.iter().map(|p| p.pid).collect();
    assert_eq!(pids, vec![100, 400], "deduplicated and sorted");
    assert_eq!(
        note(&s, PartialKind::Vanished, "processes").map(|n| n.count),
        Some(1),
        "999999 does not exist"
    );
    assert_eq!(s.socket_fds.len(), 3);
}

#[test]
fn without_fd_walk_only_counts() {
    let s = scan(None, false, 1);
    let p = process(&s, 100);
    // Not procfs: st_size means nothing, so the entries are counted.
    assert_eq!(p.fd_count, Some(8));
    assert_eq!(p.fds, None);
    assert_eq!(process(&s, 200).fd_count, Some(0));
    assert!(s.socket_fds.is_empty());
    assert!(note(&s, PartialKind::Malformed, "socket fd links").is_none());
}

#[test]
fn thread_counts_do_not_change_the_result() {
    let one = scan(None, true, 1);
    for threads in [0, 2, 16] {
        let mut many = scan(None, true, threads);
        let mut base = one.clone();
        many.socket_fds.sort_by_key(|f| (f.pid, f.fd));
        base.socket_fds.sort_by_key(|f| (f.pid, f.fd));
        many.notes.sort_by(|a, b| a.what.cmp(&b.what));
        base.notes.sort_by(|a, b| a.what.cmp(&b.what));
        assert_eq!(many, base, "threads = {threads}");
    }
}

#[test]
fn missing_root_is_a_note_not_a_panic() {
    let s = scan_processes(&ProcOptions {
        proc_root: fixture_root().join("does-not-exist"),
        ..ProcOptions::default()
    });
    assert!(s.processes.is_empty());
    assert_eq!(s.notes.len(), 1);
    assert_eq!(s.notes[0].kind, PartialKind::Error);
    assert!(s.notes[0].what.starts_with("process list"), "{:?}", s.notes);
}
