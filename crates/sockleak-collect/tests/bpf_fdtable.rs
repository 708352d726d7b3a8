//! The eBPF fd table (`sockleak_collect::bpf`) against the /proc walk it can
//! replace, on the real kernel: this process's own fds exactly, a child
//! process, a thread with a private fd table, and the whole host within churn.
//! Needs root (CAP_BPF + CAP_PERFMON); without it each test prints SKIPPED.
//! The timing comparison is `#[ignore]`d: run it with
//! `cargo test --release -p sockleak-collect --test bpf_fdtable -- --ignored --nocapture`.

#![cfg(feature = "bpf")]

use sockleak_collect::bpf::{read_fd_table, BpfError, FdTable, FdTableReader};
use sockleak_collect::procfs::{scan_processes, ProcOptions, ProcScan};
use sockleak_model::FdKinds;
use std::collections::{BTreeSet, HashMap};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

/// The tests compare this process's fd table at two moments: no other test
/// of this binary may open or close fds in between.
static FD_TABLE: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    FD_TABLE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Loads the reader, or says loudly why this environment cannot. With the
/// capabilities a permission error is a failure, never a skip.
fn reader_or_skip(test: &str) -> Option<FdTableReader> {
    match FdTableReader::new() {
        Ok(r) => Some(r),
        Err(e @ BpfError::Unsupported(_)) => {
            eprintln!("SKIPPED: {test}: {e}");
            None
        }
        Err(e @ BpfError::Permission(_))
            if !sockleak_collect::privileges::probe().can_load_tracing_bpf() =>
        {
            eprintln!("SKIPPED: {test}: {e}");
            None
        }
        Err(e) => panic!("{test}: {e}"),
    }
}

fn walk(pids: Option<Vec<u32>>) -> ProcScan {
    scan_processes(&ProcOptions {
        pids,
        walk_fds: true,
        ..ProcOptions::default()
    })
}

/// Directory fds a one-thread walk of this very process holds open while it
/// reads /proc/self/fd, and so counts as Files: /proc, /proc/PID and
/// /proc/PID/fd (procfs/walk.rs).
const WALK_OWN_DIR_FDS: u32 = 3;

fn walk_kinds(scan: &ProcScan, pid: u32) -> Option<FdKinds> {
    scan.processes
        .iter()
        .find(|p| p.pid == pid)
        .and_then(|p| p.fds)
}

fn inode(fd: i32) -> u64 {
    std::fs::metadata(format!("/proc/self/fd/{fd}"))
        .expect("stat fd")
        .ino()
}

fn own_sockets(table: &FdTable, pid: u32) -> BTreeSet<(u32, u64)> {
    table
        .sockets
        .iter()
        .filter(|s| s.pid == pid)
        .map(|s| (s.fd, s.inode))
        .collect()
}

/// Every socket fd of this process (fd number, inode, family, protocol),
/// and its fd kinds, exactly as the /proc walk sees them; and a thread that
/// unshared its fd table is not counted (the walk reads only /proc/TGID/fd).
#[test]
fn own_socket_fds_and_kinds_match_the_proc_walk() {
    let _guard = lock();
    let Some(mut reader) = reader_or_skip("own_socket_fds_and_kinds_match_the_proc_walk") else {
        return;
    };
    let pid = std::process::id();

    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (accepted, _) = listener.accept().expect("accept");
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let (ua, ub) = UnixStream::pair().expect("socketpair");
    let dir = std::env::temp_dir().join(format!("sockleak-bpf-own-{pid}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let regular = std::fs::File::create(dir.join("file")).expect("file");
    let fifo_path = dir.join("fifo");
    let c_fifo = std::ffi::CString::new(fifo_path.as_os_str().as_encoded_bytes()).expect("path");
    let mut pipe = [0; 2];
    // SAFETY: plain syscalls with valid out-arrays / NUL-terminated paths;
    // the fds are closed at the end of the test.
    let (evfd, fifo) = unsafe {
        assert_eq!(libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC), 0);
        let evfd = libc::eventfd(0, libc::EFD_CLOEXEC);
        assert_eq!(libc::mkfifo(c_fifo.as_ptr(), 0o600), 0);
        let fifo = libc::open(c_fifo.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        (evfd, fifo)
    };
    assert!(
        evfd >= 0 && fifo >= 0,
        "{}",
        std::io::Error::last_os_error()
    );

    // A thread with its own copy of the fd table (unshare(CLONE_FILES)) and
    // a socket only in that copy: the iterator visits the thread, the reader
    // must drop it.
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let private = std::thread::spawn(move || {
        // SAFETY: unshare only affects this thread's fd table.
        let rc = unsafe { libc::unshare(libc::CLONE_FILES) };
        let sock = UdpSocket::bind("127.0.0.1:0").expect("private udp");
        let ino = std::fs::metadata(format!("/proc/thread-self/fd/{}", sock.as_raw_fd()))
            .map(|m| m.ino())
            .unwrap_or(0);
        ready_tx.send((rc, ino)).expect("send");
        let _ = done_rx.recv();
        drop(sock);
    });
    let (rc, private_ino) = ready_rx.recv().expect("thread ready");
    assert_eq!(rc, 0, "unshare(CLONE_FILES)");
    assert_ne!(private_ino, 0);

    let table = reader.read().expect("read fd table");
    // One worker: a fixed number of the walk's own directory fds.
    let scan = scan_processes(&ProcOptions {
        pids: Some(vec![pid]),
        walk_fds: true,
        threads: 1,
        ..ProcOptions::default()
    });
    done_tx.send(()).expect("release thread");
    private.join().expect("thread");

    // Sockets: exactly the walk's, and each with its fstat inode and protocol.
    let walked: BTreeSet<(u32, u64)> = scan
        .socket_fds
        .iter()
        .filter(|s| s.pid == pid)
        .map(|s| (s.fd, s.inode))
        .collect();
    assert_eq!(own_sockets(&table, pid), walked);
    let by_fd: HashMap<u32, (u64, u16, u16)> = table
        .sockets
        .iter()
        .filter(|s| s.pid == pid)
        .map(|s| (s.fd, (s.inode, s.family, s.protocol)))
        .collect();
    let inet = libc::AF_INET as u16;
    let tcp = libc::IPPROTO_TCP as u16;
    for (what, fd, family, proto) in [
        ("listener", listener.as_raw_fd(), inet, tcp),
        ("client", client.as_raw_fd(), inet, tcp),
        ("accepted", accepted.as_raw_fd(), inet, tcp),
        ("udp", udp.as_raw_fd(), inet, libc::IPPROTO_UDP as u16),
        ("unix a", ua.as_raw_fd(), libc::AF_UNIX as u16, 0),
        ("unix b", ub.as_raw_fd(), libc::AF_UNIX as u16, 0),
    ] {
        let fd_u = u32::try_from(fd).expect("fd");
        assert_eq!(
            by_fd.get(&fd_u),
            Some(&(inode(fd), family, proto)),
            "{what} (fd {fd})"
        );
    }
    assert!(
        !table.sockets.iter().any(|s| s.inode == private_ino),
        "the socket in the thread's private fd table was reported"
    );

    // Kinds: the walk's, less the walk's own directory fds (open only while
    // it runs), plus the iterator's own fd (anon_inode:bpf_iter, open only
    // while the table is read). Everything else is the same set of fds.
    let mut want = walk_kinds(&scan, pid).expect("own fd table walked");
    want.file -= WALK_OWN_DIR_FDS;
    want.anon += 1;
    assert_eq!(table.kinds(pid), Some(want));
    // The records carry the process's start: they join this process by pid
    // and /proc's starttime, and a different start (a reused pid) does not.
    let start = scan
        .processes
        .iter()
        .find(|p| p.pid == pid)
        .map(|p| p.start_time)
        .expect("own process walked");
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).expect("CLK_TCK");
    assert_eq!(
        table.kinds_of(pid, start, hz),
        Some(want),
        "joined by start {start}"
    );
    assert_eq!(table.kinds_of(pid, start + 1, hz), None, "another start");
    assert!(table
        .sockets
        .iter()
        .filter(|s| s.pid == pid)
        .all(|s| sockleak_collect::bpf::start_matches(s.start_ns, start, hz)));

    // SAFETY: these fds were opened above and are closed once.
    unsafe {
        libc::close(pipe[0]);
        libc::close(pipe[1]);
        libc::close(evfd);
        libc::close(fifo);
    }
    drop(regular);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A child process is reported under its own pid, with the kinds the walk
/// gives it: a `sleep` holding /dev/null, a pipe and a TCP connection.
#[test]
fn child_process_appears_with_its_own_pid() {
    let _guard = lock();
    let Some(mut reader) = reader_or_skip("child_process_appears_with_its_own_pid") else {
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let conn = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    // The child inherits the connection as its stdin (a socket fd), a pipe
    // as stdout and /dev/null as stderr.
    let mut child = Command::new("sleep")
        .arg("60")
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(
            conn.try_clone().expect("dup"),
        )))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sleep");
    let child_pid = child.id();
    // Let exec finish (the fd table is replaced at exec: CLOEXEC fds go).
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(format!("/proc/{child_pid}/comm")).unwrap_or_default()
        != "sleep\n"
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(10));
    }

    // After exec the dynamic loader and libc still open and close files
    // (ld.so.cache, libraries, locale) for a moment: compare once the table
    // holds still, i.e. the iterator and the walk agree (a few tries).
    let mut tries = 0;
    let (table, scan) = loop {
        tries += 1;
        let table = reader.read().expect("read fd table");
        let scan = walk(Some(vec![child_pid]));
        if tries >= 10 || table.kinds(child_pid) == walk_kinds(&scan, child_pid) {
            break (table, scan);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Stopped by its own pid (the handle), before any assertion can fail.
    let _ = child.kill();
    let _ = child.wait();

    let want = walk_kinds(&scan, child_pid).expect("child fd table walked");
    assert_eq!(table.kinds(child_pid), Some(want), "after {tries} tries");
    assert!(want.socket >= 1 && want.pipe >= 1, "{want:?}");
    let walked: BTreeSet<(u32, u64)> = scan.socket_fds.iter().map(|s| (s.fd, s.inode)).collect();
    assert_eq!(own_sockets(&table, child_pid), walked);
    let conn_ino = inode(conn.as_raw_fd());
    assert!(
        table
            .sockets
            .iter()
            .any(|s| s.pid == child_pid && s.fd == 0 && s.inode == conn_ino),
        "the child's stdin socket"
    );
    drop(listener);
}

/// Whole host: socket fd counts agree with the /proc walk over the processes
/// both could read, within the churn of a shared machine (fds opened or
/// closed between the two reads); processes the walk could not read (EACCES)
/// are left out of the comparison.
#[test]
fn whole_host_socket_count_agrees_with_the_proc_walk() {
    let _guard = lock();
    let Some(mut reader) = reader_or_skip("whole_host_socket_count_agrees_with_the_proc_walk")
    else {
        return;
    };
    let table = reader.read().expect("read fd table");
    let scan = walk(None);
    let mut bpf_sockets = 0u64;
    let mut walk_sockets = 0u64;
    let mut differing = 0u32;
    for p in &scan.processes {
        let Some(w) = p.fds else { continue };
        let b = table.kinds(p.pid).unwrap_or_default();
        walk_sockets += u64::from(w.socket);
        bpf_sockets += u64::from(b.socket);
        if w != b {
            differing += 1;
        }
    }
    eprintln!(
        "whole host: {} processes walked, socket fds: bpf {bpf_sockets} /proc {walk_sockets}, \
         {differing} processes with different kinds (churn; this process: the walk's \
         directory fds and the iterator's fd); \
         bpf saw {} processes with fds, {} socket fds in all",
        scan.processes.len(),
        table.processes.len(),
        table.sockets.len()
    );
    let diff = bpf_sockets.abs_diff(walk_sockets);
    assert!(
        diff <= 200 + walk_sockets / 100,
        "socket fds differ by {diff}: bpf {bpf_sockets}, /proc {walk_sockets}"
    );
}

/// CPU time of this whole process so far: (user, system). Unlike wall time
/// it does not grow when other work shares the (small, shared) machine; the
/// split shows how much of the iterator's cost is in the kernel.
fn cpu_time() -> (Duration, Duration) {
    // SAFETY: all-zero bytes are a valid `struct rusage`.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

/// What [`timed`] measured, per round where averaged.
struct Timing {
    best: Duration,
    mean: Duration,
    user: Duration,
    sys: Duration,
}

/// Times `f` over `rounds`.
fn timed(rounds: u32, mut f: impl FnMut()) -> Timing {
    let mut best = Duration::MAX;
    let mut total = Duration::ZERO;
    let (u0, s0) = cpu_time();
    for _ in 0..rounds {
        let t = Instant::now();
        f();
        let d = t.elapsed();
        best = best.min(d);
        total += d;
    }
    let (u1, s1) = cpu_time();
    Timing {
        best,
        mean: total / rounds,
        user: (u1 - u0) / rounds,
        sys: (s1 - s0) / rounds,
    }
}

/// read_fd_table() (load + read), a reused reader (read only) and the /proc
/// walk, on whatever population the host holds right now.
#[test]
#[ignore = "measurement: run explicitly in release"]
fn measure_fd_table_vs_proc_walk() {
    let _guard = lock();
    let Some(mut reader) = reader_or_skip("measure_fd_table_vs_proc_walk") else {
        return;
    };
    const ROUNDS: u32 = 5;
    let mut n_bpf = 0;
    let mut n_walk = 0;
    let load = timed(ROUNDS, || {
        drop(FdTableReader::new().expect("load"));
    });
    let load_full = timed(ROUNDS, || {
        drop(FdTableReader::new_with(sockleak_collect::bpf::BtfChoice::Full).expect("load (full)"));
    });
    let once = timed(ROUNDS, || {
        n_bpf = read_fd_table().expect("read_fd_table").sockets.len();
    });
    let reused = timed(ROUNDS, || {
        n_bpf = reader.read().expect("read").sockets.len();
    });
    let proc_walk = timed(ROUNDS, || {
        n_walk = walk(None).socket_fds.len();
    });
    let proc_count_only = timed(ROUNDS, || {
        let _ = scan_processes(&ProcOptions {
            walk_fds: false,
            ..ProcOptions::default()
        });
    });
    let show = |what: &str, t: Timing| {
        eprintln!(
            "{what:<34} best {:>9.2?}  mean {:>9.2?}  cpu/round user {:>9.2?} sys {:>9.2?}",
            t.best, t.mean, t.user, t.sys
        );
    };
    eprintln!(
        "socket fds: bpf {n_bpf}, /proc walk {n_walk}; {} cpus",
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    show("load only (FdTableReader::new)", load);
    show("load only, whole kernel BTF", load_full);
    show("read_fd_table (load + read)", once);
    show("FdTableReader::read (reused)", reused);
    show("/proc walk, walk_fds: true", proc_walk);
    show("/proc scan, walk_fds: false", proc_count_only);
}

/// The reader relocated against the cut-down BTF (the default) reads exactly
/// what the one relocated against the whole kernel BTF reads, and on a kernel
/// with BTF the cut-down one is really used (a silent fallback would only
/// show as a slower scan).
#[test]
fn minimized_btf_reader_reads_what_the_full_btf_reader_reads() {
    use sockleak_collect::bpf::BtfChoice;
    let _guard = lock();
    let Some(mut small) =
        reader_or_skip("minimized_btf_reader_reads_what_the_full_btf_reader_reads")
    else {
        return;
    };
    assert_eq!(small.btf(), BtfChoice::Minimized);
    let mut full = FdTableReader::new_with(BtfChoice::Full).expect("full BTF reader");
    assert_eq!(full.btf(), BtfChoice::Full);

    let pid = std::process::id();
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (accepted, _) = listener.accept().expect("accept");
    let udp = UdpSocket::bind("[::1]:0").expect("udp6");
    let (ua, ub) = UnixStream::pair().expect("socketpair");

    let a = small.read().expect("read (minimized BTF)");
    let b = full.read().expect("read (full BTF)");
    let mine = |t: &FdTable| {
        let mut v: Vec<_> = t
            .sockets
            .iter()
            .filter(|s| s.pid == pid)
            .map(|s| (s.fd, s.inode, s.family, s.protocol))
            .collect();
        v.sort_unstable();
        v
    };
    let (sa, sb) = (mine(&a), mine(&b));
    assert_eq!(sa, sb);
    // The family and protocol are read through CO-RE offsets: wrong offsets
    // would not agree with what the fds are.
    for (fd, family, protocol) in [
        (listener.as_raw_fd(), libc::AF_INET, libc::IPPROTO_TCP),
        (client.as_raw_fd(), libc::AF_INET, libc::IPPROTO_TCP),
        (accepted.as_raw_fd(), libc::AF_INET, libc::IPPROTO_TCP),
        (udp.as_raw_fd(), libc::AF_INET6, libc::IPPROTO_UDP),
        (ua.as_raw_fd(), libc::AF_UNIX, 0),
    ] {
        let row = sa
            .iter()
            .find(|r| r.0 == fd as u32)
            .unwrap_or_else(|| panic!("fd {fd} missing: {sa:?}"));
        assert_eq!(row.1, inode(fd), "inode of fd {fd}");
        assert_eq!((row.2, row.3), (family as u16, protocol as u16), "fd {fd}");
    }
    assert_eq!(a.kinds(pid), b.kinds(pid));
    assert!(a.kinds(pid).is_some());
    drop((client, accepted, udp, ua, ub));
}
