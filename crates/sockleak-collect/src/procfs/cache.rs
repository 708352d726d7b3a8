//! Repeated /proc walks (`sockleak watch`) that reuse the fd map of every
//! process whose fd table did not change.
//!
//! Reading every fd link is the expensive part of a walk (one `readlink` per
//! fd: ~118 ms for 30k socket fds). Between two samples most processes keep
//! the same fds, and `stat("/proc/PID/fd").st_size` — the number of open fds
//! on Linux ≥ 6.2 — tells which did not, for one syscall per process. So:
//!
//! 1. every pid's fd count is read by `stat`;
//! 2. processes with an unknown count (size 0: an older kernel, or no fds), a
//!    count that differs from the cached one, or no cache entry get the full
//!    walk;
//! 3. the others are read without their fd links (identity, limits,
//!    namespace), and take kinds and socket fds from the cache if their start
//!    time is the cached one (a reused pid is walked in full);
//! 4. after the sock_diag dump, a reused map is checked against it
//!    ([`FdCache::revalidate`]): if one of the process's sockets that were TCP
//!    sockets at the previous join is no longer in the dump, it closed one and
//!    (same count) opened another — churn — and the process is walked again;
//! 5. every `full_every` walks, everything is walked, which bounds what the
//!    cache can still miss: a process that closed a pipe or file and opened a
//!    TCP socket between two samples keeps its count, and the new socket
//!    shows without an owner until then.
//!
//! Outside procfs (fixture trees, where `st_size` means nothing) the cache
//! is bypassed.

use super::dirfd::{parse_u32, Dir, DENTS_BUF_LEN, PROC_SUPER_MAGIC};
use super::{scan_processes, ProcOptions, ProcScan, SocketFd};
use rustc_hash::FxHashMap as HashMap;
use sockleak_model::{merge_notes, FdKinds};
use std::ffi::CString;
use std::ops::ControlFlow;

/// A full walk of every process once in this many walks (default 15: every
/// 30 s at watch's default 2 s interval).
pub const DEFAULT_FULL_EVERY: u64 = 15;

/// What one cached walk did, for benchmarks and `--debug` output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Processes whose fd map came from the cache.
    pub reused: u64,
    /// Processes whose fd links were read.
    pub walked: u64,
    /// Whether this was a periodic (or first) full walk.
    pub full: bool,
}

/// The fd map of one process as of its last full walk.
#[derive(Clone, Debug)]
struct Entry {
    start_time: u64,
    /// `st_size` of /proc/PID/fd when it was walked.
    fd_size: u64,
    kinds: FdKinds,
    socket_fds: Vec<SocketFd>,
    /// Inodes of its socket fds that were in the TCP dump at the last join
    /// (the others are UNIX, UDP, netlink... sockets).
    tcp_inodes: Vec<u64>,
}

/// Fd maps kept between walks. One per watch session.
#[derive(Clone, Debug)]
pub struct FdCache {
    entries: HashMap<u32, Entry>,
    full_every: u64,
    walks: u64,
    last: CacheStats,
    /// Pids whose map the last walk took from the cache.
    reused: Vec<u32>,
}

impl Default for FdCache {
    fn default() -> Self {
        FdCache::new(DEFAULT_FULL_EVERY)
    }
}

impl FdCache {
    /// A cache that walks everything once every `full_every` walks (0 and 1:
    /// every time, i.e. no reuse).
    pub fn new(full_every: u64) -> FdCache {
        FdCache {
            entries: HashMap::default(),
            full_every: full_every.max(1),
            walks: 0,
            last: CacheStats::default(),
            reused: Vec::new(),
        }
    }

    /// What the last walk did.
    pub fn last_stats(&self) -> CacheStats {
        self.last
    }

    /// Processes with a cached fd map.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Walks again the processes of the last [`scan_processes_cached`] whose
    /// reused map holds a TCP socket (as of the previous join) that `gone`
    /// says is no longer in this sample's sockets, and puts the fresh result
    /// into `scan`.
    pub fn revalidate(
        &mut self,
        opts: &ProcOptions,
        scan: &mut ProcScan,
        gone: impl Fn(u64) -> bool,
    ) {
        let stale: Vec<u32> = self
            .reused
            .iter()
            .copied()
            .filter(|pid| {
                self.entries
                    .get(pid)
                    .is_some_and(|e| e.tcp_inodes.iter().any(|i| gone(*i)))
            })
            .collect();
        if stale.is_empty() {
            return;
        }
        let fresh = scan_processes(&ProcOptions {
            pids: Some(stale.clone()),
            ..opts.clone()
        });
        let is_stale = |pid: &u32| stale.binary_search(pid).is_ok();
        scan.processes.retain(|p| !is_stale(&p.pid));
        scan.socket_fds.retain(|f| !is_stale(&f.pid));
        for pid in &stale {
            self.entries.remove(pid);
        }
        self.reused.retain(|p| !is_stale(p));
        self.last.reused = self.last.reused.saturating_sub(stale.len() as u64);
        self.last.walked += fresh.processes.len() as u64;
        // Not re-cached here: the fd counts are not re-read, and the next
        // walk caches them with a matching stat.
        scan.processes.extend(fresh.processes);
        scan.socket_fds.extend(fresh.socket_fds);
        merge_notes(&mut scan.notes, fresh.notes);
        scan.processes.sort_unstable_by_key(|p| p.pid);
    }

    /// Records which socket inodes of each cached process were TCP sockets in
    /// this sample's join (`(pid, inode)` of every owned dumped socket).
    pub fn learn_tcp(&mut self, owned: impl Iterator<Item = (u32, u64)>) {
        for e in self.entries.values_mut() {
            e.tcp_inodes.clear();
        }
        for (pid, inode) in owned {
            if let Some(e) = self.entries.get_mut(&pid) {
                e.tcp_inodes.push(inode);
            }
        }
    }
}

/// [`scan_processes`] that reuses the fd maps of unchanged processes (see the
/// module docs). Same result shape and notes; never fails.
pub fn scan_processes_cached(opts: &ProcOptions, cache: &mut FdCache) -> ProcScan {
    cache.reused.clear();
    if !opts.walk_fds {
        return scan_processes(opts);
    }
    let root = match Dir::open(&opts.proc_root) {
        Ok(d) if d.fs_type().is_ok_and(|t| t == PROC_SUPER_MAGIC) => d,
        // Not procfs, or unreadable: the plain walk reports what is wrong.
        _ => {
            cache.entries.clear();
            return scan_processes(opts);
        }
    };
    cache.walks += 1;
    let full = cache.full_every <= 1 || cache.walks % cache.full_every == 1;
    let pids = match &opts.pids {
        Some(p) => {
            let mut p = p.clone();
            p.sort_unstable();
            p.dedup();
            p
        }
        None => list_pids(&root),
    };
    let sizes: HashMap<u32, u64> = pids
        .iter()
        .filter_map(|&pid| Some((pid, fd_dir_size(&root, pid)?)))
        .collect();

    let (mut changed, unchanged): (Vec<u32>, Vec<u32>) = pids.iter().partition(|pid| {
        full || match (sizes.get(pid), cache.entries.get(pid)) {
            (Some(&size), Some(e)) => size == 0 || size != e.fd_size,
            _ => true,
        }
    });
    // The processes that kept their fd count: read without fd links.
    let mut scan = if unchanged.is_empty() {
        ProcScan::default()
    } else {
        scan_processes(&ProcOptions {
            pids: Some(unchanged),
            walk_fds: false,
            ..opts.clone()
        })
    };
    let mut reused = 0u64;
    let mut reused_pids = Vec::new();
    scan.processes.retain_mut(|p| {
        let hit = cache.entries.get(&p.pid).filter(|e| {
            e.start_time == p.start_time && p.fd_count.map(u64::from) == Some(e.fd_size)
        });
        match hit {
            Some(e) => {
                p.fds = Some(e.kinds);
                scan.socket_fds.extend_from_slice(&e.socket_fds);
                reused += 1;
                reused_pids.push(p.pid);
                true
            }
            None => {
                // A reused pid, or the count moved since the stat: walk it.
                changed.push(p.pid);
                false
            }
        }
    });
    changed.sort_unstable();
    let walked = if changed.is_empty() {
        ProcScan::default()
    } else {
        scan_processes(&ProcOptions {
            pids: Some(changed),
            ..opts.clone()
        })
    };

    // Remember what was walked, when its count matches the stat taken before
    // the walk (else it moved during the walk: walk it again next time).
    let mut by_pid: HashMap<u32, Vec<SocketFd>> = HashMap::default();
    for f in &walked.socket_fds {
        by_pid.entry(f.pid).or_default().push(*f);
    }
    let n_walked = walked.processes.len() as u64;
    for p in &walked.processes {
        let size = sizes.get(&p.pid).copied().unwrap_or(0);
        match p.fds {
            Some(kinds) if size > 0 && u64::from(kinds.total()) == size => {
                cache.entries.insert(
                    p.pid,
                    Entry {
                        start_time: p.start_time,
                        fd_size: size,
                        kinds,
                        socket_fds: by_pid.remove(&p.pid).unwrap_or_default(),
                        tcp_inodes: Vec::new(),
                    },
                );
            }
            _ => {
                cache.entries.remove(&p.pid);
            }
        }
    }
    scan.processes.extend(walked.processes);
    scan.socket_fds.extend(walked.socket_fds);
    merge_notes(&mut scan.notes, walked.notes);
    scan.processes.sort_unstable_by_key(|p| p.pid);
    cache
        .entries
        .retain(|pid, _| scan.processes.binary_search_by_key(pid, |p| p.pid).is_ok());
    reused_pids.sort_unstable();
    cache.reused = reused_pids;
    cache.last = CacheStats {
        reused,
        walked: n_walked,
        full,
    };
    scan
}

/// `st_size` of /proc/PID/fd; `None` when it cannot be read (the walk then
/// says why).
fn fd_dir_size(root: &Dir, pid: u32) -> Option<u64> {
    let name = CString::new(format!("{pid}/fd")).ok()?;
    let st = root.stat_at(&name).ok()?;
    u64::try_from(st.st_size).ok()
}

/// The numeric entries of the proc root. Errors leave the list short; the
/// walk of what is listed still reports its own problems.
fn list_pids(root: &Dir) -> Vec<u32> {
    let mut pids = Vec::with_capacity(1024);
    let mut buf = vec![0u8; DENTS_BUF_LEN];
    let _ = root.for_each_entry(&mut buf, |name| {
        if let Some(pid) = parse_u32(name.to_bytes()) {
            pids.push(pid);
        }
        ControlFlow::Continue(())
    });
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::Write;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    /// A child that opens one more fd for each line on its stdin. (sockleak's
    /// own fd table changes while it walks it, so the test watches a child.)
    fn child() -> std::process::Child {
        Command::new("python3")
            .args([
                "-c",
                "import sys\nfs=[]\nprint('ready', flush=True)\nwhile sys.stdin.readline():\n    fs.append(open('/dev/null'))",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn python3")
    }

    /// Waits for the child's "ready": the interpreter has finished starting
    /// (it opens and closes files while it does, at equal counts sometimes).
    fn wait_ready(c: &mut std::process::Child) {
        use std::io::BufRead;
        let out = c.stdout.take().expect("piped stdout");
        let mut line = String::new();
        let _ = std::io::BufReader::new(out).read_line(&mut line);
        assert_eq!(line.trim(), "ready");
    }

    fn fds_of(pid: u32) -> u64 {
        std::fs::metadata(format!("/proc/{pid}/fd")).map_or(0, |m| m.len())
    }

    #[test]
    fn unchanged_processes_are_reused_and_changes_are_walked() {
        let mut c = child();
        wait_ready(&mut c);
        let pid = c.id();
        let opts = ProcOptions {
            pids: Some(vec![pid]),
            threads: 1,
            ..ProcOptions::default()
        };
        let mut cache = FdCache::new(100);
        // Until the interpreter has settled, its count moves: bounded retry.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut reused = None;
        while Instant::now() < deadline {
            let scan = scan_processes_cached(&opts, &mut cache);
            if cache.last_stats().reused == 1 {
                let p = scan.processes.first().expect("the child");
                reused = Some(p.fds.expect("kinds come from the cache").file);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let files = reused.expect("an unchanged fd table was never reused");

        // Its (pretend) TCP socket 12345 left the dump: the reused map is
        // stale and walked again.
        cache.learn_tcp([(pid, 12345u64)].into_iter());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut scan = scan_processes_cached(&opts, &mut cache);
            if cache.last_stats().reused == 1 {
                // Only 99 was dumped: 12345 is gone.
                cache.revalidate(&opts, &mut scan, |i| i != 99);
                assert_eq!(
                    (cache.last_stats().reused, cache.last_stats().walked),
                    (0, 1)
                );
                assert!(scan.processes.first().and_then(|p| p.fds).is_some());
                break;
            }
            assert!(Instant::now() < deadline, "never reused again");
            std::thread::sleep(Duration::from_millis(50));
        }
        // One more fd: the count changes, the table is walked again.
        let before = fds_of(pid);
        let stdin = c.stdin.as_mut().expect("piped stdin");
        stdin.write_all(b"open\n").expect("write");
        stdin.flush().expect("flush");
        let deadline = Instant::now() + Duration::from_secs(10);
        while fds_of(pid) == before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let after = scan_processes_cached(&opts, &mut cache);
        let stats = cache.last_stats();
        let _ = c.kill();
        let _ = c.wait();
        assert_eq!((stats.walked, stats.reused), (1, 0));
        let p = after.processes.first().expect("the child");
        assert_eq!(
            p.fds.map(|k| k.file),
            Some(files + 1),
            "the new file is seen"
        );
    }

    #[test]
    fn fixture_trees_bypass_the_cache() {
        let mut cache = FdCache::default();
        let opts = ProcOptions {
            proc_root: std::env::temp_dir(),
            pids: Some(vec![1]),
            threads: 1,
            ..ProcOptions::default()
        };
        let _ = scan_processes_cached(&opts, &mut cache);
        assert!(cache.is_empty());
    }
}
