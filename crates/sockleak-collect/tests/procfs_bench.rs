//! How fast the /proc walk attributes socket fds: 4 children holding 5,000
//! socket fds each (20k), whole-host scans timed. Ignored by default; run with
//! `cargo test --release -p sockleak-collect --test procfs_bench -- --ignored --nocapture`.

mod procfs_support;

use procfs_support::{python, Peer};
use sockleak_collect::procfs::{scan_processes, ProcOptions};
use std::time::{Duration, Instant};

const CHILDREN: usize = 4;
const PAIRS_PER_CHILD: usize = 2500;

/// CPU time (user + system) of this whole process so far: unlike wall time it
/// does not grow when other work shares the (small, shared) machine.
fn cpu_time() -> Duration {
    // SAFETY: all-zero bytes are a valid `struct rusage`.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Best wall time, mean wall time, mean CPU time, socket fds, processes.
fn time_scans(opts: &ProcOptions, rounds: u32) -> (Duration, Duration, Duration, usize, usize) {
    let mut best = Duration::MAX;
    let mut total = Duration::ZERO;
    let mut fds = 0;
    let mut procs = 0;
    let cpu0 = cpu_time();
    for _ in 0..rounds {
        let t = Instant::now();
        let scan = scan_processes(opts);
        let d = t.elapsed();
        best = best.min(d);
        total += d;
        fds = scan.socket_fds.len();
        procs = scan.processes.len();
    }
    (
        best,
        total / rounds,
        (cpu_time() - cpu0) / rounds,
        fds,
        procs,
    )
}

#[test]
#[ignore = "benchmark: run explicitly in release"]
fn scan_20k_socket_fds() {
    let Some(py) = python() else {
        eprintln!("SKIPPED: no python3");
        return;
    };
    let body = format!(
        "resource.setrlimit(resource.RLIMIT_NOFILE, (8000, 8000))\n\
         pairs = [socket.socketpair() for _ in range({PAIRS_PER_CHILD})]\n\
         print('ready')\n"
    );
    let peers: Vec<Peer> = (0..CHILDREN).map(|_| Peer::start(&py, &body).0).collect();
    let pids: Vec<u32> = peers.iter().map(Peer::pid).collect();

    for threads in [2, 1, 2] {
        let opts = ProcOptions {
            threads,
            ..ProcOptions::default()
        };
        let (best, mean, cpu, fds, procs) = time_scans(&opts, 10);
        println!(
            "whole host, {threads} thread(s): {procs} processes, {fds} socket fds: \
             wall best {best:?}, mean {mean:?}; cpu {cpu:?}"
        );
        assert!(fds >= CHILDREN * PAIRS_PER_CHILD * 2);
    }
    let opts = ProcOptions {
        walk_fds: false,
        ..ProcOptions::default()
    };
    let (best, mean, cpu, _, procs) = time_scans(&opts, 10);
    println!(
        "whole host, counts only: {procs} processes: wall best {best:?}, mean {mean:?}; cpu {cpu:?}"
    );
    let opts = ProcOptions {
        pids: Some(pids),
        ..ProcOptions::default()
    };
    let (best, mean, cpu, fds, _) = time_scans(&opts, 10);
    println!(
        "the {CHILDREN} children only: {fds} socket fds: wall best {best:?}, mean {mean:?}; cpu {cpu:?}"
    );
}
