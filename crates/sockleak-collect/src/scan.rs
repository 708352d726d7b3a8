//! One scan: namespaces, sock_diag dumps and the /proc walk joined into a
//! [`Snapshot`].
//!
//! The dumps (one thread per namespace, inside it) run while the /proc walk
//! runs on the other cores. Both race with the host, as `ss -p` does: a socket
//! whose fd was closed between the two has an inode but no owner (shown as
//! "owner unknown"), and a socket fd missing from every dump is only called
//! "closed but held" after its TCP state was confirmed to be CLOSE.

use crate::context;
use crate::diag::{self, DumpRequest};
use crate::netns::{self, NetnsError, NsEntry};
use crate::privileges::{Privileges, ProcAccess};
use crate::procfs::{self, ProcOptions, SocketFd};
use sockleak_model::filter::NetnsFilter;
use sockleak_model::snapshot::{add_note, merge_notes};
use sockleak_model::{
    Filter, Namespace, Owner, PartialKind, PartialNote, Process, Snapshot, Socket, StateSet,
    TcpState,
};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where the fd tables (socket inode → pid, fd; fd kinds) come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FdSource {
    /// The eBPF iterator when it loads (root or CAP_BPF + CAP_PERFMON, BTF,
    /// initial pid namespace), else the /proc walk.
    #[default]
    Auto,
    /// Always the /proc walk (readlink of every /proc/PID/fd/N).
    Proc,
    /// The eBPF iterator; when it cannot load, the /proc walk, with a note.
    Bpf,
}

/// How to scan.
#[derive(Clone, Debug)]
pub struct ScanOptions {
    pub filter: Filter,
    pub fd_source: FdSource,
    /// Ask the kernel for tcp_info and memory info (needed for ages).
    pub want_info: bool,
    /// Threads for the /proc walk.
    pub threads: usize,
    pub proc_root: PathBuf,
    pub run_netns: PathBuf,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            filter: Filter::default(),
            fd_source: FdSource::Auto,
            want_info: true,
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            proc_root: PathBuf::from("/proc"),
            run_netns: PathBuf::from("/run/netns"),
        }
    }
}

/// One namespace's part of a sample: its context read inside it, its
/// sockets (owners not yet attached) and what could not be read. From a dump,
/// or from the incremental table ([`crate::incremental`]).
pub(crate) struct NsDump {
    pub(crate) ns: Namespace,
    pub(crate) sockets: Vec<Socket>,
    pub(crate) notes: Vec<PartialNote>,
}

/// Scans the host without the post-collection filters: the kernel state
/// filter, `--netns` and the `--pid` restriction of the fd walk apply, but
/// every dumped socket (LISTEN always) and every walked process is kept, so a
/// diagnosis can see peers and listeners outside the user's view. Apply
/// [`Filter::apply`] afterwards. Never fails as a whole: what could not be
/// read is in `Snapshot::partial`.
pub fn scan_unfiltered(opts: &ScanOptions) -> Snapshot {
    scan_unfiltered_with(opts, None, None)
}

/// [`scan_unfiltered`] for repeated sampling (`sockleak watch`): processes
/// whose fd count and start time did not change since the previous call keep
/// their fd map from `cache` instead of having every fd link read again (see
/// [`procfs::cache`]).
pub fn scan_unfiltered_cached(opts: &ScanOptions, cache: &mut procfs::cache::FdCache) -> Snapshot {
    scan_unfiltered_with(opts, Some(cache), None)
}

/// [`scan_unfiltered_cached`] whose sockets, between full dumps, come from
/// the previous sample's table and the sockets that changed state since
/// ([`crate::incremental`]).
#[cfg(feature = "bpf")]
pub fn scan_unfiltered_incremental(
    opts: &ScanOptions,
    cache: &mut procfs::cache::FdCache,
    inc: &mut crate::incremental::Incremental,
) -> Snapshot {
    scan_unfiltered_with(opts, Some(cache), Some(inc))
}

#[cfg(feature = "bpf")]
type Inc<'a> = Option<&'a mut crate::incremental::Incremental>;
#[cfg(not(feature = "bpf"))]
type Inc<'a> = Option<&'a mut std::convert::Infallible>;

fn scan_unfiltered_with(
    opts: &ScanOptions,
    mut cache: Option<&mut procfs::cache::FdCache>,
    inc: Inc<'_>,
) -> Snapshot {
    let taken_at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut snap = Snapshot {
        taken_at_ms,
        host: context::read_host_info(),
        filtered: opts.filter.is_restricted(),
        ..Snapshot::default()
    };

    let discovery = netns::discover(&opts.proc_root, &opts.run_netns);
    merge_notes(&mut snap.partial, discovery.notes);
    let entries = select_namespaces(discovery.entries, &opts.filter.netns, &mut snap.partial);

    // LISTEN sockets are always dumped (they are few) so accepted connections
    // can be told from outgoing ones under any state filter.
    let req = DumpRequest {
        states: StateSet(opts.filter.states.0 | TcpState::Listen.bit()),
        want_info: opts.want_info,
    };
    let mut proc_opts = ProcOptions {
        proc_root: opts.proc_root.clone(),
        threads: opts.threads.max(1),
        // Every process is read even under --pid: the other holders of a
        // shared socket and the peer at the other end of a leak are part of
        // the diagnosis of the selected process.
        pids: None,
        walk_fds: true,
    };

    // Read once: it decides the eBPF load and judges pidfd_getfd refusals.
    let privs = crate::privileges::probe();
    // The dumps start first; the eBPF iterator is loaded meanwhile (BTF
    // parse, relocation and verifier: ~35 ms of a core that would otherwise
    // wait) and read while the largest dump still runs, as close to the
    // dumps in time as the walk would be. Sockets dumped after that read
    // whose fds it missed are filled by a second read ([`refill_unowned`]).
    let mut reader = None;
    let mut refill = false;
    let full_dump = inc.is_none();
    let (sampled, procs) = std::thread::scope(|s| {
        let dumper = s.spawn(|| dump_or_refresh(&entries, &req, opts.threads, inc));
        if cache.is_none() {
            reader = bpf_reader(opts, &privs, &mut snap.partial);
        }
        // The dumps ended before the reader was ready (a small host, where
        // they take a few ms, against tens for the load): a table read now
        // would meet rows taken long before, whose holders may have exited
        // since (under churn most sockets of short-lived processes were left
        // unowned). Those rows are dropped and dumped again right before the
        // read, which costs no more than the load just waited for.
        let mut dumper = Some(dumper);
        let mut redumped = None;
        if reader.is_some() && full_dump && dumper.as_ref().is_some_and(|d| d.is_finished()) {
            drop(dumper.take().map(|d| d.join()));
            redumped = Some(Sampled::Dumped(dump_namespaces(
                &entries,
                &req,
                opts.threads,
            )));
        }
        let procs = match cache.as_deref_mut() {
            Some(c) => procfs::cache::scan_processes_cached(&proc_opts, c),
            None => {
                let (procs, from_bpf) =
                    collect_processes(reader.as_mut(), &mut proc_opts, &mut snap.partial);
                refill = from_bpf;
                procs
            }
        };
        // Sorted for the join while the largest dump usually still runs.
        let mut procs = procs;
        sort_socket_fds(&mut procs.socket_fds);
        let sampled = match (redumped, dumper) {
            (Some(d), _) => d,
            (None, Some(d)) => d.join().unwrap_or_else(|_| Sampled::Dumped(Vec::new())),
            (None, None) => Sampled::Dumped(Vec::new()),
        };
        (sampled, procs)
    });

    let (dumps, mut sockets, gone) = match sampled {
        Sampled::Dumped(mut dumps) => {
            let sockets =
                concat_largest_first(dumps.iter_mut().map(|d| std::mem::take(&mut d.sockets)));
            (dumps, sockets, None::<rustc_hash::FxHashSet<u64>>)
        }
        #[cfg(feature = "bpf")]
        Sampled::Refreshed(r) => (r.dumps, r.sockets, Some(r.gone)),
    };
    let mut scanned_ns = HashSet::new();
    for d in dumps {
        if d.ns.scanned {
            scanned_ns.insert(d.ns.id);
        }
        merge_notes(&mut snap.partial, d.notes);
        snap.namespaces.push(d.ns);
    }
    inherit_host_globals(&mut snap.namespaces);
    let mut procs = procs;
    if let Some(c) = cache.as_deref_mut() {
        // A reused fd map whose TCP sockets left the dump is stale (a socket
        // closed and another opened at the same fd count): walk it again.
        // A refreshed sample knows what left; a full dump is compared whole.
        match gone {
            Some(gone) => c.revalidate(&proc_opts, &mut procs, |i| gone.contains(&i)),
            None => {
                let dumped: rustc_hash::FxHashSet<u64> = sockets
                    .iter()
                    .map(|s| s.inode)
                    .filter(|i| *i != 0)
                    .collect();
                c.revalidate(&proc_opts, &mut procs, |i| !dumped.contains(&i));
            }
        }
    }
    merge_notes(&mut snap.partial, procs.notes);
    let mut processes = procs.processes;
    let mut socket_fds = procs.socket_fds;

    let unmatched = attach_owners(&mut sockets, &mut socket_fds, opts.threads);
    if let Some(mut r) = reader {
        if refill {
            refill_unowned(
                &mut r,
                &mut sockets,
                &mut processes,
                &proc_opts,
                &mut snap.partial,
            );
        }
        bpf_reader_done(r);
    }
    if let Some(c) = cache {
        c.learn_tcp(
            sockets
                .iter()
                .filter(|s| s.inode != 0)
                .flat_map(|s| s.owners.iter().map(move |o| (o.pid, s.inode))),
        );
    }
    mark_inherited(&mut sockets, &processes);
    if opts.filter.states.is_all() {
        count_closed_but_held(
            &unmatched,
            &mut processes,
            &scanned_ns,
            opts,
            &privs,
            &mut snap.partial,
        );
    }

    // Listeners are kept for grouping even when the filter hides them.
    snap.listeners = sockets
        .iter()
        .filter(|s| s.state == TcpState::Listen)
        .map(|s| (s.netns, s.local))
        .collect();
    processes.sort_by_key(|p| p.pid);
    snap.sockets = sockets;
    snap.processes = processes;
    snap
}

/// One Vec from the per-namespace dumps without holding the table twice: the
/// largest grows in place (a large allocation is grown by `mremap`, not
/// copied) and the smaller ones are appended and freed one by one.
fn concat_largest_first(parts: impl Iterator<Item = Vec<Socket>>) -> Vec<Socket> {
    let mut parts: Vec<Vec<Socket>> = parts.collect();
    let total = parts.iter().map(Vec::len).sum::<usize>();
    let Some(big) = (0..parts.len()).max_by_key(|&i| parts.get(i).map_or(0, Vec::len)) else {
        return Vec::new();
    };
    let mut all = parts.swap_remove(big);
    all.reserve_exact(total - all.len());
    for mut p in parts {
        all.append(&mut p);
    }
    all
}

/// Scans the host and keeps only what the filter asks for.
pub fn scan(opts: &ScanOptions) -> Snapshot {
    let mut snap = scan_unfiltered(opts);
    opts.filter.apply(&mut snap);
    snap
}

/// `net.ipv4.tcp_max_orphans` is host-global: its file exists only in the
/// initial namespace, so the others take the value sockleak's own namespace
/// reported (when sockleak runs in the initial one).
fn inherit_host_globals(namespaces: &mut [Namespace]) {
    let host = namespaces
        .iter()
        .find(|n| n.is_own)
        .and_then(|n| n.tcp_max_orphans);
    for n in namespaces.iter_mut() {
        if n.tcp_max_orphans.is_none() {
            n.tcp_max_orphans = host;
        }
    }
}

/// Keeps the namespaces `--netns` asked for; names and ids that match
/// nothing are reported.
fn select_namespaces(
    entries: Vec<NsEntry>,
    wanted: &[NetnsFilter],
    notes: &mut Vec<PartialNote>,
) -> Vec<NsEntry> {
    if wanted.is_empty() {
        return entries;
    }
    for w in wanted {
        let found = entries.iter().any(|e| match w {
            NetnsFilter::Id(id) => e.id == *id,
            NetnsFilter::Name(n) => e.name.as_deref() == Some(n.as_str()),
        });
        if !found {
            let what = match w {
                NetnsFilter::Id(id) => format!("network namespace {id}"),
                NetnsFilter::Name(n) => format!("network namespace {n:?}"),
            };
            add_note(
                notes,
                PartialKind::Vanished,
                &what,
                "no such namespace",
                None,
            );
        }
    }
    entries
        .into_iter()
        .filter(|e| {
            wanted.iter().any(|w| match w {
                NetnsFilter::Id(id) => e.id == *id,
                NetnsFilter::Name(n) => e.name.as_deref() == Some(n.as_str()),
            })
        })
        .collect()
}

/// Processes and their fd tables for a one-off scan: from the eBPF iterator
/// when a reader is loaded (one read of every fd table, about eight times
/// less CPU than the walk), with only the cheap per-process files from /proc;
/// else the /proc walk reads every fd link.
///
/// The second value says whether the fd tables came from the iterator (then
/// [`refill_unowned`] may read it again after the dumps).
fn collect_processes(
    reader: Option<&mut Reader>,
    proc_opts: &mut ProcOptions,
    notes: &mut Vec<PartialNote>,
) -> (procfs::ProcScan, bool) {
    if let Some(table) = reader.and_then(|r| read_bpf_fd_table(r, notes)) {
        proc_opts.walk_fds = false;
        let mut scan = procfs::scan_processes(proc_opts);
        let missing = merge_bpf_fd_table(&mut scan, table);
        proc_opts.walk_fds = true;
        if !missing.is_empty() {
            // Not in the table but holding fds: started after the read, or a
            // task the iterator did not show. The walk reads them (and labels
            // what it cannot read) as it would without eBPF.
            let walked = procfs::scan_processes(&ProcOptions {
                pids: Some(missing),
                ..proc_opts.clone()
            });
            let again: HashSet<u32> = walked.processes.iter().map(|p| p.pid).collect();
            scan.processes.retain(|p| !again.contains(&p.pid));
            scan.processes.extend(walked.processes);
            scan.processes.sort_unstable_by_key(|p| p.pid);
            scan.socket_fds.extend(walked.socket_fds);
            merge_notes(&mut scan.notes, walked.notes);
        }
        return (scan, true);
    }
    (procfs::scan_processes(proc_opts), false)
}

/// Fills the owners of sockets left unowned by the first read of the fd
/// table from a second read, taken after the dumps ended.
///
/// Why: the first read is taken while the dumps still run (~50 ms before the
/// last rows at 150k sockets), so under churn a socket created after it and
/// dumped later has a live holder the read never saw (76 % of short-lived
/// processes' sockets were unowned against 12 % with the walk). A row with an
/// inode was held when it was dumped; a read after the dumps finds every
/// holder still alive. Holders that are not in the process list yet (started
/// after /proc was listed) are read from /proc, so owners still always name
/// a process of the snapshot. Costs nothing when every socket is owned; one
/// more iteration (cheaper than a walk) otherwise. A holder whose pid now
/// names another process than the listed one (reused) is left out.
#[cfg(feature = "bpf")]
fn refill_unowned(
    reader: &mut Reader,
    sockets: &mut [Socket],
    processes: &mut Vec<sockleak_model::Process>,
    proc_opts: &ProcOptions,
    notes: &mut Vec<PartialNote>,
) {
    let unowned: rustc_hash::FxHashMap<u64, usize> = sockets
        .iter()
        .enumerate()
        .filter(|(_, s)| s.inode != 0 && s.owners.is_empty())
        .map(|(i, s)| (s.inode, i))
        .collect();
    if unowned.is_empty() {
        return;
    }
    // A failed second read leaves them unowned, as one read would have.
    let Ok(table) = reader.read() else {
        return;
    };
    let hz = crate::bpf::clock_ticks();
    let listed = listed_starts(processes);
    let mut fds: Vec<SocketFd> = Vec::new();
    let mut new_pids: Vec<u32> = Vec::new();
    for s in table
        .sockets
        .iter()
        .filter(|s| unowned.contains_key(&s.inode))
    {
        match listed.get(&s.pid) {
            Some(start) if crate::bpf::start_matches(s.start_ns, *start, hz) => {
                fds.push(s.socket_fd());
            }
            Some(_) => {}
            None => new_pids.push(s.pid),
        }
    }
    if !new_pids.is_empty() {
        new_pids.sort_unstable();
        new_pids.dedup();
        let walked = procfs::scan_processes(&ProcOptions {
            pids: Some(new_pids),
            walk_fds: true,
            ..proc_opts.clone()
        });
        fds.extend(
            walked
                .socket_fds
                .iter()
                .filter(|f| unowned.contains_key(&f.inode))
                .copied(),
        );
        processes.extend(
            walked
                .processes
                .into_iter()
                .filter(|p| !listed.contains_key(&p.pid)),
        );
        processes.sort_unstable_by_key(|p| p.pid);
        merge_notes(notes, walked.notes);
    }
    fds.sort_unstable_by_key(|f| (f.inode, f.pid, f.fd));
    fds.dedup();
    for f in fds {
        if let Some(s) = unowned.get(&f.inode).and_then(|&i| sockets.get_mut(i)) {
            s.owners.push(Owner {
                pid: f.pid,
                fd: f.fd,
                inherited: false,
            });
        }
    }
}

#[cfg(not(feature = "bpf"))]
fn refill_unowned(
    reader: &mut Reader,
    _: &mut [Socket],
    _: &mut Vec<sockleak_model::Process>,
    _: &ProcOptions,
    _: &mut Vec<PartialNote>,
) {
    match *reader {}
}

#[cfg(feature = "bpf")]
type Reader = crate::bpf::FdTableReader;

/// The loaded iterator, kept for the life of the process: `serve` and other
/// repeated scans pay the load (BTF parse, relocation, verifier: ~35 ms of
/// CPU) once. A load that failed is remembered with its time and tried
/// again after [`BPF_RETRY`]: missing BTF does not come back, but a transient
/// failure (ENOMEM, a verifier under memory pressure) must not leave a
/// long-running `serve` on the slower walk until it restarts.
#[cfg(feature = "bpf")]
static READER: std::sync::Mutex<Option<Result<Reader, (String, std::time::Instant)>>> =
    std::sync::Mutex::new(None);

/// How long a failed eBPF load is believed before it is tried again.
#[cfg(feature = "bpf")]
const BPF_RETRY: std::time::Duration = std::time::Duration::from_secs(300);

/// The reader for this scan, or `None` for the /proc walk: [`FdSource`]
/// allows it, this is the real /proc (a fixture tree's processes are not the
/// kernel's), the privileges are there (an unprivileged scan does not pay
/// for parsing BTF only to be refused) and it loads.
#[cfg(feature = "bpf")]
fn bpf_reader(
    opts: &ScanOptions,
    privs: &crate::privileges::Privileges,
    notes: &mut Vec<PartialNote>,
) -> Option<Reader> {
    if opts.fd_source == FdSource::Proc || opts.proc_root != std::path::Path::new("/proc") {
        return None;
    }
    if opts.fd_source == FdSource::Auto && !privs.can_load_tracing_bpf() {
        return None;
    }
    let mut slot = READER.lock().unwrap_or_else(|p| p.into_inner());
    let got = match slot.take() {
        Some(Ok(r)) => Ok(r),
        Some(Err((e, at))) if at.elapsed() < BPF_RETRY => Err((e, at)),
        // Loading costs ~35 ms of CPU and a transient ~15 MB (the kernel's
        // BTF, cut down, parsed for CO-RE); the walk costs ~4 µs of CPU per
        // fd. On a host with few open files the walk is cheaper for a one-off
        // scan; a reader already loaded (serve, a later scan) is used
        // whatever the size.
        None | Some(Err(_))
            if opts.fd_source == FdSource::Auto
                && open_files().is_some_and(|n| n < BPF_MIN_FILES) =>
        {
            return None;
        }
        // Two scans at once in one process: the second loads its own.
        None | Some(Err(_)) => Reader::new()
            .map_err(|e| (e.to_string(), std::time::Instant::now()))
            .inspect(|_| trim_heap()),
    };
    match got {
        Ok(r) => Some(r),
        Err((e, at)) => {
            bpf_fallback_note(opts, notes, &e);
            *slot = Some(Err((e, at)));
            None
        }
    }
}

/// Below this many open files on the host (`/proc/sys/fs/file-nr`), `auto`
/// walks /proc instead of loading the iterator: measured on the benchmark
/// (docs/benchmarks.md), the two break even near 50k socket fds.
#[cfg(feature = "bpf")]
const BPF_MIN_FILES: u64 = 40_000;

/// Open files on the host: the first field of `/proc/sys/fs/file-nr`
/// (allocated file handles, every process and the kernel's own).
#[cfg(feature = "bpf")]
fn open_files() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/file-nr")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Hands the heap freed after a load (the parsed BTF: many small blocks)
/// back to the kernel before the dumps allocate the socket table, so the
/// peak RSS is the larger of the two rather than their sum.
#[cfg(feature = "bpf")]
fn trim_heap() {
    release_freed_memory();
}

/// Returns freed heap memory of every allocator arena to the kernel. A scan
/// frees hundreds of thousands of small blocks (owner lists, index entries)
/// on several threads; glibc keeps them in per-thread arenas, and a sampling
/// loop (`watch`) otherwise grows its RSS to several snapshots' worth.
pub fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory; no pointer is involved.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(feature = "bpf")]
fn bpf_reader_done(r: Reader) {
    *READER.lock().unwrap_or_else(|p| p.into_inner()) = Some(Ok(r));
}

#[cfg(feature = "bpf")]
fn read_bpf_fd_table(r: &mut Reader, notes: &mut Vec<PartialNote>) -> Option<crate::bpf::FdTable> {
    match r.read() {
        Ok(t) => Some(t),
        Err(e) => {
            add_note(
                notes,
                PartialKind::Error,
                "eBPF fd table",
                &format!("{e}; used the /proc fd walk instead"),
                None,
            );
            None
        }
    }
}

/// Auto falls back quietly (doctor says why); an explicit `--fd-source bpf`
/// is told.
fn bpf_fallback_note(opts: &ScanOptions, notes: &mut Vec<PartialNote>, why: &str) {
    if opts.fd_source == FdSource::Bpf {
        add_note(
            notes,
            PartialKind::Unsupported,
            "eBPF fd table",
            &format!("{why}; used the /proc fd walk instead (same results, slower)"),
            None,
        );
    }
}

/// Stands for the iterator in a build without eBPF (never constructed).
#[cfg(not(feature = "bpf"))]
enum Reader {}

#[cfg(not(feature = "bpf"))]
fn bpf_reader(
    opts: &ScanOptions,
    _privs: &crate::privileges::Privileges,
    notes: &mut Vec<PartialNote>,
) -> Option<Reader> {
    bpf_fallback_note(opts, notes, "built without the `bpf` feature");
    None
}

#[cfg(not(feature = "bpf"))]
fn bpf_reader_done(r: Reader) {
    match r {}
}

#[cfg(not(feature = "bpf"))]
fn read_bpf_fd_table(r: &mut Reader, _: &mut Vec<PartialNote>) -> Option<NoTable> {
    match *r {}
}

/// Stands for the fd table in a build without eBPF (never constructed).
#[cfg(not(feature = "bpf"))]
enum NoTable {}

#[cfg(not(feature = "bpf"))]
fn merge_bpf_fd_table(_: &mut procfs::ProcScan, t: NoTable) -> Vec<u32> {
    match t {}
}

/// Puts the iterator's fd kinds and TCP socket fds into a /proc scan made
/// without the fd walk. Returns the processes missing from the table although
/// `stat(/proc/PID/fd)` counts fds (started after the read, or not shown by
/// the iterator): the caller walks those. Missing with no fds (kernel
/// threads) is simply zero.
#[cfg(feature = "bpf")]
fn merge_bpf_fd_table(scan: &mut procfs::ProcScan, table: crate::bpf::FdTable) -> Vec<u32> {
    let hz = crate::bpf::clock_ticks();
    let mut missing = Vec::new();
    for p in &mut scan.processes {
        // By pid *and* start: a pid reused between the read and the /proc
        // listing names another process, whose fds the walk then reads.
        match table.kinds_of(p.pid, p.start_time, hz) {
            Some(k) => {
                p.fd_count = Some(k.total());
                p.fds = Some(k);
            }
            None if p.fd_count == Some(0) => p.fds = Some(sockleak_model::FdKinds::default()),
            None => missing.push(p.pid),
        }
    }
    scan.socket_fds = tcp_socket_fds(&table, &listed_starts(&scan.processes), hz).collect();
    missing
}

/// pid → start time (clock ticks) of the listed processes.
#[cfg(feature = "bpf")]
fn listed_starts(processes: &[sockleak_model::Process]) -> rustc_hash::FxHashMap<u32, u64> {
    processes.iter().map(|p| (p.pid, p.start_time)).collect()
}

/// The table's socket fds that can join a TCP dump row, held by a listed
/// process (same pid and start).
///
/// Only TCP sockets can join a TCP dump row; a socket without `sk` (being
/// torn down, family 0) is kept for the closed-but-held check, which asks
/// the kernel for its protocol. A holder that exited before /proc was
/// listed is dropped, as the walk would never have seen it: owners always
/// name a process of the snapshot.
#[cfg(feature = "bpf")]
fn tcp_socket_fds<'a>(
    table: &'a crate::bpf::FdTable,
    listed: &'a rustc_hash::FxHashMap<u32, u64>,
    hz: u64,
) -> impl Iterator<Item = procfs::SocketFd> + 'a {
    table
        .sockets
        .iter()
        .filter(move |s| {
            listed
                .get(&s.pid)
                .is_some_and(|start| crate::bpf::start_matches(s.start_ns, *start, hz))
        })
        .filter(|s| {
            s.family == 0
                || (s.protocol == libc::IPPROTO_TCP as u16
                    && (s.family == libc::AF_INET as u16 || s.family == libc::AF_INET6 as u16))
        })
        .map(|s| s.socket_fd())
}

/// Dumps every namespace, up to `threads` at a time (each dump runs on its own
/// thread inside its namespace, so they proceed in parallel when cores are
/// free; the kernel walks the whole established hash once per namespace and
/// family, so several namespaces cost several walks). Results keep the order
/// of `entries`.
fn dump_namespaces(entries: &[NsEntry], req: &DumpRequest, threads: usize) -> Vec<NsDump> {
    let drained = crate::pool::drain(
        entries.len(),
        threads,
        "sockleak-dump",
        Vec::new,
        |done: &mut Vec<(usize, NsDump)>, i| {
            if let Some(e) = entries.get(i) {
                done.push((i, dump_namespace(e, req)));
            }
        },
    );
    let mut by_index: Vec<Option<NsDump>> = entries.iter().map(|_| None).collect();
    for (i, d) in drained.outputs.into_iter().flatten() {
        if let Some(slot) = by_index.get_mut(i) {
            *slot = Some(d);
        }
    }
    // A dump thread that panicked (a bug on some odd kernel input) lost the
    // namespaces it had taken: they are listed, unscanned and labelled.
    entries
        .iter()
        .zip(by_index)
        .map(|(e, d)| {
            d.unwrap_or_else(|| {
                let mut ns = Namespace::new(e.id);
                ns.name = e.name.clone();
                ns.is_own = e.is_own;
                let mut notes = Vec::new();
                add_note(
                    &mut notes,
                    PartialKind::Error,
                    &format!("network namespace {}", e.id),
                    "its dump thread panicked; its sockets are missing",
                    None,
                );
                NsDump {
                    ns,
                    sockets: Vec::new(),
                    notes,
                }
            })
        })
        .collect()
}

/// The namespaces' sockets: from the incremental table when it can serve
/// this sample, else dumped (and kept as the table for the next samples).
#[cfg(feature = "bpf")]
fn dump_or_refresh(
    entries: &[NsEntry],
    req: &DumpRequest,
    threads: usize,
    inc: Inc<'_>,
) -> Sampled {
    let Some(inc) = inc else {
        return Sampled::Dumped(dump_namespaces(entries, req, threads));
    };
    if let Some(refreshed) = inc.refresh(entries, req) {
        return Sampled::Refreshed(refreshed);
    }
    let dumps = dump_namespaces(entries, req, threads);
    inc.reset(
        dumps
            .iter()
            .filter(|d| d.ns.scanned)
            .map(|d| (d.ns.id, d.sockets.as_slice())),
    );
    Sampled::Dumped(dumps)
}

#[cfg(not(feature = "bpf"))]
fn dump_or_refresh(
    entries: &[NsEntry],
    req: &DumpRequest,
    threads: usize,
    _inc: Inc<'_>,
) -> Sampled {
    Sampled::Dumped(dump_namespaces(entries, req, threads))
}

/// What the namespaces gave this sample.
enum Sampled {
    /// Dumped whole, per namespace.
    Dumped(Vec<NsDump>),
    /// Refreshed from the previous sample's table and the tracked changes.
    #[cfg(feature = "bpf")]
    Refreshed(crate::incremental::Refreshed),
}

/// Dumps one namespace from a thread inside it, with its sysctls and counters.
fn dump_namespace(entry: &NsEntry, req: &DumpRequest) -> NsDump {
    let mut ns = Namespace::new(entry.id);
    ns.name = entry.name.clone();
    ns.is_own = entry.is_own;
    let label = match &entry.name {
        Some(n) => format!("network namespace {} ({n})", entry.id),
        None => format!("network namespace {}", entry.id),
    };
    let ran = netns::run_in(entry, || {
        let mut notes = Vec::new();
        let mut ns_inside = ns.clone();
        context::read_namespace_context(&mut ns_inside, &mut notes);
        // Sized from the namespace's own counters (plus churn): a doubling
        // Vec would hold up to twice the table at its last growth.
        let mut sockets = Vec::new();
        if let Some(st) = &ns_inside.sockstat {
            let n = st.tcp_inuse + st.tcp6_inuse + st.tcp_tw;
            sockets.reserve_exact(usize::try_from(n + n / 16 + 64).unwrap_or(0));
        }
        let dumped = if context::holds_no_tcp(&ns_inside, &notes) {
            Ok(diag::DumpStats::default())
        } else {
            diag::dump(entry.id, req, &mut sockets)
        };
        match dumped {
            Ok(stats) => {
                if stats.malformed > 0 {
                    add_note(
                        &mut notes,
                        PartialKind::Malformed,
                        &format!("sock_diag rows in {label}"),
                        &format!(
                            "{} rows could not be decoded and were skipped",
                            stats.malformed
                        ),
                        None,
                    );
                }
                ns_inside.scanned = true;
            }
            Err(e) if e.is_unsupported() => {
                sockets.clear();
                match diag::dump_proc_net_tcp(entry.id, req.states, &mut sockets) {
                    Ok(_) => {
                        ns_inside.scanned = true;
                        add_note(
                            &mut notes,
                            PartialKind::Unsupported,
                            &label,
                            "sock_diag unavailable: read /proc/net/tcp instead (no cookies, \
                             no tcp_info, no ages)",
                            Some("a kernel with CONFIG_INET_DIAG and CONFIG_INET_TCP_DIAG"),
                        );
                    }
                    Err(e) => add_note(
                        &mut notes,
                        PartialKind::Error,
                        &label,
                        &format!("sock_diag unavailable and /proc/net/tcp unreadable: {e}"),
                        None,
                    ),
                }
            }
            Err(e) => {
                // Keep what was decoded before the error: it is labelled.
                ns_inside.scanned = !sockets.is_empty();
                add_note(&mut notes, PartialKind::Error, &label, &e.to_string(), None);
            }
        }
        (ns_inside, sockets, notes)
    });
    match ran {
        Ok((ns, sockets, notes)) => NsDump { ns, sockets, notes },
        Err(e) => {
            let mut notes = Vec::new();
            let (kind, fix) = match &e {
                NetnsError::Permission { .. } => (
                    PartialKind::Permission,
                    Some("run as root or grant CAP_SYS_ADMIN (to enter other namespaces)"),
                ),
                NetnsError::Vanished { .. } => (PartialKind::Vanished, None),
                _ => (PartialKind::Error, None),
            };
            add_note(&mut notes, kind, "network namespaces", &e.to_string(), fix);
            NsDump {
                ns,
                sockets: Vec::new(),
                notes,
            }
        }
    }
}

/// Joins socket fds to sockets by inode. Returns the socket fds that matched
/// no dumped socket (candidates for "closed but held").
fn attach_owners(
    sockets: &mut [Socket],
    socket_fds: &mut [SocketFd],
    threads: usize,
) -> Vec<SocketFd> {
    // Already sorted by the caller in a scan; a sorted slice costs one pass.
    sort_socket_fds(socket_fds);
    let fds: &[SocketFd] = socket_fds;
    // The sockets in a few chunks on scoped threads (~20 ms for 150k on one
    // thread, on the critical path between the dumps and the output). An fd
    // names one inode and an inode one socket, so the chunks mark disjoint
    // fds.
    let chunk = sockets.len().div_ceil(threads.clamp(1, 4)).max(20_000);
    let matched: Vec<Vec<bool>> = std::thread::scope(|s| {
        let workers: Vec<_> = sockets
            .chunks_mut(chunk)
            .map(|part| s.spawn(move || attach_chunk(part, fds)))
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    fds.iter()
        .enumerate()
        .filter(|(i, _)| !matched.iter().any(|m| m.get(*i).copied().unwrap_or(false)))
        .map(|(_, f)| *f)
        .collect()
}

fn sort_socket_fds(socket_fds: &mut [SocketFd]) {
    socket_fds.sort_unstable_by_key(|s| (s.inode, s.pid, s.fd));
}

/// Attaches the holders of each socket of `part` from `fds` (sorted by
/// inode); returns which fds matched.
fn attach_chunk(part: &mut [Socket], fds: &[SocketFd]) -> Vec<bool> {
    let mut matched = vec![false; fds.len()];
    for s in part.iter_mut() {
        if s.inode == 0 {
            continue;
        }
        let start = fds.partition_point(|f| f.inode < s.inode);
        let run = fds
            .get(start..)
            .unwrap_or_default()
            .iter()
            .take_while(|f| f.inode == s.inode)
            .count();
        // Exact: a socket nearly always has one holder, and a growing Vec
        // would allocate room for four.
        s.owners.reserve_exact(run);
        for (i, f) in fds.iter().enumerate().skip(start).take(run) {
            s.owners.push(Owner {
                pid: f.pid,
                fd: f.fd,
                inherited: false,
            });
            if let Some(m) = matched.get_mut(i) {
                *m = true;
            }
        }
    }
    matched
}

/// A holder whose ancestor also holds the socket got it through fork.
fn mark_inherited(sockets: &mut [Socket], processes: &[Process]) {
    let parent: HashMap<u32, u32> = processes.iter().map(|p| (p.pid, p.ppid)).collect();
    for s in sockets.iter_mut() {
        if s.owners.len() < 2 {
            continue;
        }
        let holders: HashSet<u32> = s.owners.iter().map(|o| o.pid).collect();
        if holders.len() < 2 {
            continue;
        }
        for o in s.owners.iter_mut() {
            let mut cur = o.pid;
            // Bounded walk: pid trees are shallow, and a cycle in racing
            // data must not hang us.
            for _ in 0..64 {
                match parent.get(&cur) {
                    Some(&pp) if pp != 0 && pp != cur => {
                        if holders.contains(&pp) {
                            o.inherited = true;
                            break;
                        }
                        cur = pp;
                    }
                    _ => break,
                }
            }
        }
    }
}

/// Counts TCP socket fds that are in no TCP table. A candidate must be a TCP
/// socket (sockprotoname) of a process whose namespace was dumped, and is
/// confirmed by reading its TCP state through a duplicated fd: a socket that
/// appeared after the dump is not CLOSE and is not counted.
fn count_closed_but_held(
    unmatched: &[SocketFd],
    processes: &mut [Process],
    scanned_ns: &HashSet<u64>,
    opts: &ScanOptions,
    privs: &Privileges,
    notes: &mut Vec<PartialNote>,
) {
    let mut counts: HashMap<u32, u32> = HashMap::new();
    let mut unverified = 0u32;
    // Only these processes get a count: checking the fds of the others (a
    // `--netns` scan leaves every socket of the other namespaces unmatched)
    // cost two syscalls per fd for nothing, ~2 s at 150k sockets.
    let counted: HashSet<u32> = processes
        .iter()
        .filter(|p| p.fds.is_some() && scanned_ns.contains(&p.netns))
        .map(|p| p.pid)
        .collect();
    for f in unmatched.iter().filter(|f| counted.contains(&f.pid)) {
        let proto = match procfs::socket_protocol(&opts.proc_root, f.pid, f.fd) {
            Ok(p) => p,
            Err(_) => continue, // fd closed meanwhile: not held
        };
        if proto != "TCP" && proto != "TCPv6" {
            continue;
        }
        match procfs::fd_tcp_state(f.pid, f.fd, f.inode) {
            Ok(Some(TcpState::Close)) => *counts.entry(f.pid).or_default() += 1,
            Ok(_) => {} // alive (created after the dump) or fd reused
            Err(e)
                if e.raw_os_error() == Some(libc::EPERM)
                    || e.raw_os_error() == Some(libc::EACCES)
                    || e.raw_os_error() == Some(libc::ENOSYS) =>
            {
                unverified += 1;
                *counts.entry(f.pid).or_default() += 1;
            }
            Err(_) => {} // process or fd gone
        }
    }
    if unverified > 0 {
        let d = privs.classify_denial(ProcAccess::FdDuplicate);
        let mut note = PartialNote::new(
            PartialKind::Permission,
            "closed-but-held sockets",
            &format!(
                "{unverified} counted without confirming their TCP state (pidfd_getfd {})",
                d.reason
            ),
            d.fix.as_deref(),
            1,
        );
        note.cause = Some(d.cause);
        merge_notes(notes, vec![note]);
    }
    for p in processes.iter_mut() {
        if counted.contains(&p.pid) {
            p.closed_but_held = Some(counts.get(&p.pid).copied().unwrap_or(0));
        }
    }
}
