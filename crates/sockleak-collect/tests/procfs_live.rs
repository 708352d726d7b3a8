//! The /proc walk, `socket_protocol` and `fd_tcp_state` against real
//! processes: a python child builds a known fd table on loopback and the scan
//! must report exactly that.

mod procfs_support;

use procfs_support::{fd_inodes, python, start_time_of, Peer};
use sockleak_collect::procfs::{
    fd_tcp_state, scan_processes, socket_protocol, ProcOptions, ProcScan,
};
use sockleak_model::{FdKinds, PartialKind, Process, TcpState};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Builds: 3 pipes (6 fds), a TCP listener + client + accepted socket, a
/// UNIX socketpair, an eventfd, an epoll fd and two files; RLIMIT_NOFILE
/// 777/888. Its stdin is /dev/null, stdout a pipe, stderr ours.
const KINDS_SCRIPT: &str = "\
resource.setrlimit(resource.RLIMIT_NOFILE, (777, 888))
pipes = [os.pipe() for _ in range(3)]
ls = socket.socket(); ls.bind(('127.0.0.1', 0)); ls.listen(8)
c = socket.create_connection(ls.getsockname()); a, _ = ls.accept()
u1, u2 = socket.socketpair()
ev = os.eventfd(0); ep = select.epoll()
f1 = open('/etc/passwd', 'rb'); f2 = open('/dev/zero', 'rb')
socks = [ls, c, a, u1, u2]
print('ready', ' '.join('%d:%d' % (s.fileno(), os.fstat(s.fileno()).st_ino) for s in socks))
";

/// What the child holds, by kind. Its stderr is the test's stderr, whatever
/// that is (a pipe under cargo, a file or tty elsewhere): classify it the way
/// the scan would, from our own fd 2.
fn expected_kinds() -> FdKinds {
    let mut k = FdKinds {
        socket: 5,
        pipe: 6 + 1, // the pipes + stdout
        file: 2 + 1, // the two files + stdin (/dev/null)
        anon: 2,
        other: 0,
    };
    let stderr = std::fs::read_link("/proc/self/fd/2").expect("readlink own stderr");
    k.add(sockleak_model::FdKind::classify(
        stderr.as_os_str().as_encoded_bytes(),
    ));
    k
}

fn scan_one(pid: u32, walk_fds: bool) -> ProcScan {
    scan_processes(&ProcOptions {
        proc_root: "/proc".into(),
        threads: 2,
        pids: Some(vec![pid]),
        walk_fds,
    })
}

fn find(scan: &ProcScan, pid: u32) -> &Process {
    scan.processes
        .iter()
        .find(|p| p.pid == pid)
        .unwrap_or_else(|| panic!("pid {pid} not scanned; notes {:?}", scan.notes))
}

macro_rules! require_python {
    () => {
        match python() {
            Some(p) => p,
            None => {
                eprintln!("SKIPPED: no python3 found to build the peer process");
                return;
            }
        }
    };
}

#[test]
fn child_fd_table_limits_and_identity_are_exact() {
    let py = require_python!();
    let (peer, line) = Peer::start(&py, KINDS_SCRIPT);
    let pid = peer.pid();
    let socks = fd_inodes(&line);
    assert_eq!(socks.len(), 5, "{line}");

    let scan = scan_one(pid, true);
    assert!(scan.notes.is_empty(), "{:?}", scan.notes);
    let p = find(&scan, pid);
    let kinds = expected_kinds();
    assert_eq!(p.fds, Some(kinds));
    assert_eq!(p.fd_count, Some(kinds.total()));
    assert_eq!((p.fd_limit, p.fd_limit_hard), (Some(777), Some(888)));
    assert_eq!(
        p.cmdline,
        sockleak_model::process::join_args(&[peer.python.as_str(), "-c", peer.script.as_str()])
    );
    assert_eq!(p.start_time, start_time_of(pid));
    assert_eq!(p.ppid, std::process::id());
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).expect("comm");
    assert_eq!(p.comm, comm.trim_end());
    // SAFETY: getuid has no preconditions.
    assert_eq!(p.uid, unsafe { libc::getuid() });
    let ns = std::fs::metadata(format!("/proc/{pid}/ns/net")).expect("stat ns/net");
    assert_eq!(p.netns, ns.ino());
    assert_eq!(p.ns_pid, None, "same pid namespace");
    assert_eq!(p.closed_but_held, None);

    // Socket fds: exactly the child's sockets, with the inodes python saw via
    // fstat and that the /proc links name.
    let mut got: Vec<(u32, u64)> = scan
        .socket_fds
        .iter()
        .inspect(|s| assert_eq!(s.pid, pid))
        .map(|s| (s.fd, s.inode))
        .collect();
    got.sort_unstable();
    let mut want = socks.clone();
    want.sort_unstable();
    assert_eq!(got, want);
    for (fd, ino) in &socks {
        let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).expect("readlink");
        assert_eq!(link.to_string_lossy(), format!("socket:[{ino}]"));
    }
}

#[test]
fn count_only_scan_uses_the_cheap_count() {
    let py = require_python!();
    let (peer, _) = Peer::start(&py, KINDS_SCRIPT);
    let scan = scan_one(peer.pid(), false);
    let p = find(&scan, peer.pid());
    assert_eq!(p.fd_count, Some(expected_kinds().total()));
    assert_eq!(p.fds, None);
    assert!(scan.socket_fds.is_empty());
    assert_eq!((p.fd_limit, p.fd_limit_hard), (Some(777), Some(888)));
}

#[test]
fn whole_host_scan_includes_the_child_and_us() {
    let py = require_python!();
    let (peer, line) = Peer::start(&py, KINDS_SCRIPT);
    let pid = peer.pid();
    let scan = scan_processes(&ProcOptions::default());
    let p = find(&scan, pid);
    assert_eq!(p.fds, Some(expected_kinds()));
    let own = find(&scan, std::process::id());
    assert!(own.fd_count.is_some_and(|n| n >= 3));
    assert!(
        scan.processes.windows(2).all(|w| w[0].pid < w[1].pid),
        "sorted, unique"
    );
    let child_socks: Vec<u64> = scan
        .socket_fds
        .iter()
        .filter(|s| s.pid == pid)
        .map(|s| s.inode)
        .collect();
    assert_eq!(child_socks.len(), fd_inodes(&line).len());
    // Even root may be refused some tables (here: an LSM guards pid 1 of the
    // sandbox). Every refused table is labelled, and only those lack kinds.
    let denied = scan
        .notes
        .iter()
        .filter(|n| n.kind == PartialKind::Permission && n.what == "fd tables")
        .map(|n| n.count)
        .sum::<u32>();
    let without_kinds = scan.processes.iter().filter(|p| p.fds.is_none()).count();
    assert_eq!(without_kinds, denied as usize, "{:?}", scan.notes);
}

#[test]
fn a_process_gone_before_the_scan_is_counted_as_vanished() {
    let py = require_python!();
    let (mut peer, _) = Peer::start(&py, "print('ready')\n");
    let pid = peer.pid();
    peer.stop();
    let scan = scan_one(pid, true);
    assert!(scan.processes.iter().all(|p| p.pid != pid));
    let n = scan
        .notes
        .iter()
        .find(|n| n.kind == PartialKind::Vanished && n.what == "processes")
        .expect("vanished note");
    assert_eq!(n.count, 1);
}

/// A reset client socket (peer closed with SO_LINGER 0 → RST; the client saw
/// ECONNRESET and still holds the fd), an established one, the listener and a
/// UNIX socketpair end.
const STATES_SCRIPT: &str = "\
ls = socket.socket(); ls.bind(('127.0.0.1', 0)); ls.listen(8)
reset = socket.create_connection(ls.getsockname()); a, _ = ls.accept()
a.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0)); a.close()
try:
    reset.recv(1)
except ConnectionResetError:
    pass
est = socket.create_connection(ls.getsockname()); b, _ = ls.accept()
u1, u2 = socket.socketpair()
print('ready', ' '.join('%d:%d' % (s.fileno(), os.fstat(s.fileno()).st_ino) for s in [reset, est, ls, u1]))
";

/// Inodes of every socket in the kernel's TCP tables of this namespace.
fn tcp_table_inodes() -> Vec<u64> {
    let mut out = Vec::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        for line in text.lines().skip(1) {
            if let Some(ino) = line.split_whitespace().nth(9).and_then(|s| s.parse().ok()) {
                out.push(ino);
            }
        }
    }
    out
}

#[test]
fn fd_tcp_state_tells_reset_from_established() {
    let py = require_python!();
    let (peer, line) = Peer::start(&py, STATES_SCRIPT);
    let pid = peer.pid();
    let s = fd_inodes(&line);
    let [(reset_fd, reset_ino), (est_fd, est_ino), (ls_fd, ls_ino), (unix_fd, unix_ino)] = s[..]
    else {
        panic!("unexpected child report {line}");
    };

    let reset_state = match fd_tcp_state(pid, reset_fd, reset_ino) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "SKIPPED fd_tcp_state: pidfd_getfd on pid {pid} failed ({e}); it needs Linux >= 5.6 \
                 and ptrace permission (root, CAP_SYS_PTRACE, or yama ptrace_scope <= 1)"
            );
            return;
        }
    };
    assert_eq!(reset_state, Some(TcpState::Close));
    assert!(
        !tcp_table_inodes().contains(&reset_ino),
        "a reset socket is in no TCP table"
    );
    assert_eq!(
        fd_tcp_state(pid, est_fd, est_ino).expect("established"),
        Some(TcpState::Established)
    );
    assert_eq!(
        fd_tcp_state(pid, ls_fd, ls_ino).expect("listener"),
        Some(TcpState::Listen)
    );
    assert_eq!(fd_tcp_state(pid, unix_fd, unix_ino).expect("unix"), None);
    // The fd now names another socket than the walk saw: no answer.
    assert_eq!(
        fd_tcp_state(pid, est_fd, reset_ino).expect("reused fd"),
        None
    );
    let closed = fd_tcp_state(pid, 1000, 1).expect_err("no fd 1000");
    assert_eq!(closed.raw_os_error(), Some(libc::EBADF));

    let proc_root = Path::new("/proc");
    assert_eq!(
        socket_protocol(proc_root, pid, reset_fd).expect("xattr"),
        "TCP"
    );
    assert_eq!(
        socket_protocol(proc_root, pid, est_fd).expect("xattr"),
        "TCP"
    );
    // Linux names UNIX sockets by type since 5.x: "UNIX-STREAM" here.
    let unix = socket_protocol(proc_root, pid, unix_fd).expect("xattr");
    assert!(unix == "UNIX" || unix == "UNIX-STREAM", "{unix}");
    assert!(socket_protocol(proc_root, pid, 1000).is_err());
}

#[test]
fn fd_tcp_state_of_a_gone_process_is_esrch() {
    let py = require_python!();
    let (mut peer, _) = Peer::start(&py, "print('ready')\n");
    let pid = peer.pid();
    peer.stop();
    let e = fd_tcp_state(pid, 0, 1).expect_err("gone");
    assert_eq!(e.raw_os_error(), Some(libc::ESRCH));
}
