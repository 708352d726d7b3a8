//! The fd table (socket inode -> pid, fd; fd kinds per process) read with an
//! eBPF `iter/task_file` iterator instead of the /proc walk.
//!
//! Why: at ~150k sockets the parallel `readlinkat` walk of /proc/PID/fd is the
//! biggest cost of a scan. The kernel can instead hand over every open file
//! of every task in one read of an iterator fd; fdtable.bpf.c classifies each
//! file by its filesystem and writes a 32-byte record (with the process's
//! start time, so a record joins a process by pid *and* start, as pids are
//! reused), and this module decodes
//! them into the same shapes the walk produces ([`FdKinds`] per process, one
//! socket fd per socket), plus each socket's family and protocol.
//!
//! It is an optional, faster source: every failure is a [`BpfError`] and the
//! caller falls back to [`crate::procfs::scan_processes`] with `walk_fds`.
//!
//! Choices worth knowing:
//! - Loader: `aya` (pure Rust). The BPF object is compiled once by
//!   `tools/bpf/build` (clang) and committed; it is embedded here, so building
//!   sockleak needs no C toolchain, libbpf or libelf, and running it needs
//!   only the kernel. CO-RE relocations against /sys/kernel/btf/vmlinux adapt
//!   the field offsets to the running kernel. The kernel's BTF is first cut
//!   down to the structs the program reads ([`btf_min`]): the full parse and
//!   relocation took ~100 ms of CPU, more than reading the table.
//! - Requirements at run time: Linux >= 5.11 (`bpf_sock_from_file`; the
//!   iterator itself is 5.8) with BTF (`CONFIG_DEBUG_INFO_BTF`), and
//!   CAP_BPF + CAP_PERFMON (or root) to load a tracing program. On the
//!   project's machines kernel lockdown refuses fentry but not this
//!   iterator; a stricter lockdown may refuse it too (then
//!   [`BpfError::Permission`]). It reads every task's table regardless of
//!   ptrace permissions, so it also covers processes whose /proc/PID/fd the
//!   walk may not open.
//! - Only thread-group leaders' fd tables are reported, exactly like the walk
//!   of /proc/TGID/fd. A thread that `unshare(CLONE_FILES)`'d has a table of
//!   its own which both sources ignore.
//! - Pids are `task->tgid`: pids of the *initial* pid namespace, and the
//!   iterator only visits the tasks of the reader's pid namespace. Both only
//!   match /proc when sockleak runs in the initial pid namespace, so anywhere
//!   else [`FdTableReader::new`] returns [`BpfError::Unsupported`].
//! - A process with no open fds (kernel threads, zombies) has no record and
//!   is absent from [`FdTable::processes`]: absent means zero fds (or exited).
//! - Like the walk, one read is not atomic: fds opened or closed while it
//!   runs may or may not be seen.

pub mod btf_min;
pub mod changes;
pub mod record;

use crate::procfs::SocketFd;
use aya::programs::Iter;
use aya::{Btf, Ebpf, EbpfLoader};
use record::{decode_records, Record, RECORD_LEN};
use sockleak_model::{FdKind, FdKinds};
use std::fmt::Write as _;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;

/// The compiled fdtable.bpf.c (regenerate with `tools/bpf/build`). aya
/// parses the ELF in place and needs it aligned, which `include_bytes!` alone
/// does not promise.
static FDTABLE_OBJ: &[u8] = aya::include_bytes_aligned!("fdtable.bpf.o");

/// The objects this build embeds, as (file, bytes).
pub fn embedded_objects() -> [(&'static str, usize); 2] {
    [
        ("fdtable.bpf.o", FDTABLE_OBJ.len()),
        ("statechg.bpf.o", changes::STATECHG_OBJ.len()),
    ]
}

/// The program's function name in fdtable.bpf.c.
const PROGRAM_NAME: &str = "sockleak_fdtable";

/// The iterator target (kernel/bpf/task_iter.c registers "task_file").
const ITER_TARGET: &str = "task_file";

/// Inode number of the initial pid namespace: PROC_PID_INIT_INO in
/// include/linux/proc_ns.h, fixed since Linux 3.8. Namespaces created later
/// get inode numbers from 0xF0000000 up (PROC_DYNAMIC_FIRST), so no other
/// namespace can carry this one.
const PROC_PID_INIT_INO: u64 = 0xEFFF_FFFC;

/// Bytes asked for per `read` of the iterator. The kernel fills at most its
/// seq_file buffer (8 pages) per call; a larger buffer costs nothing and
/// keeps working if that grows.
const READ_BUF_LEN: usize = 256 * 1024;

/// Longest verifier/loader message kept in [`BpfError::Load`]: the reason is
/// at the end of a verifier log, which can run to megabytes.
const MAX_LOAD_MESSAGE: usize = 4096;

/// Why the eBPF fd table is not available. Every variant means "use the
/// /proc walk instead"; the text says what would make it work.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// This system cannot run the iterator (no BTF, kernel too old, not in
    /// the initial pid namespace, no bpf syscall).
    #[error("eBPF fd table unsupported here: {0}")]
    Unsupported(String),
    /// Loading or attaching was refused (EPERM/EACCES).
    #[error(
        "eBPF fd table: {0}: permission denied (needs CAP_BPF and CAP_PERFMON, or root; \
         kernel lockdown can also refuse it)"
    )]
    Permission(String),
    /// The loader or the verifier rejected the program.
    #[error("eBPF fd table: loading the task_file iterator: {0}")]
    Load(String),
    /// Reading the iterator fd failed.
    #[error("eBPF fd table: reading the task_file iterator: {0}")]
    Read(#[source] io::Error),
    /// The iterator's output does not decode (object and decoder disagree,
    /// or it ended mid-record).
    #[error("eBPF fd table: malformed iterator output: {0}")]
    Malformed(String),
}

/// One socket fd, as [`SocketFd`] plus what the kernel knows of the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BpfSocketFd {
    /// The socket's inode: `idiag_inode` of its sock_diag row, the number in
    /// `socket:[ino]`, `st_ino` of `fstat` on the fd.
    pub inode: u64,
    /// The holder's pid (tgid, initial pid namespace).
    pub pid: u32,
    pub fd: u32,
    /// `AF_*` (`sk->__sk_common.skc_family`); 0 when the socket has no `sk`
    /// (being torn down).
    pub family: u16,
    /// `sk->sk_protocol`: `IPPROTO_TCP` (6), `IPPROTO_UDP` (17),
    /// `IPPROTO_MPTCP` (262); 0 for AF_UNIX and when unknown.
    pub protocol: u16,
    /// The holder's start, ns since boot (see [`ProcessFds::start_ns`]).
    pub start_ns: u64,
}

impl BpfSocketFd {
    /// The same fd as the /proc walk reports it, for the inode join.
    pub fn socket_fd(&self) -> SocketFd {
        SocketFd {
            inode: self.inode,
            pid: self.pid,
            fd: self.fd,
        }
    }
}

/// The fd kinds of one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessFds {
    pub pid: u32,
    /// `task->start_boottime` in ns: /proc/PID/stat's starttime is this in
    /// clock ticks ([`FdTable::start_matches`]).
    pub start_ns: u64,
    /// Counted like `FdKind::classify` of each /proc/PID/fd link; `total()`
    /// is the fd count.
    pub kinds: FdKinds,
}

/// One read of every fd table on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FdTable {
    /// Sorted by pid; only processes with at least one open fd.
    pub processes: Vec<ProcessFds>,
    /// Every socket fd, in iteration order (by pid, then fd).
    pub sockets: Vec<BpfSocketFd>,
}

impl FdTable {
    /// The fd kinds of `pid`; `None` when it has no open fds or did not
    /// exist during the read.
    pub fn kinds(&self, pid: u32) -> Option<FdKinds> {
        self.processes
            .binary_search_by_key(&pid, |p| p.pid)
            .ok()
            .and_then(|i| self.processes.get(i))
            .map(|p| p.kinds)
    }

    /// The fd kinds of the process `pid` that started at `start_time` (clock
    /// ticks since boot, as /proc/PID/stat gives it); `None` when it has no
    /// open fds, did not exist during the read, or the pid then belonged to
    /// another process (reused).
    pub fn kinds_of(&self, pid: u32, start_time: u64, ticks_per_s: u64) -> Option<FdKinds> {
        let from = self.processes.partition_point(|p| p.pid < pid);
        self.processes
            .get(from..)
            .unwrap_or_default()
            .iter()
            .take_while(|p| p.pid == pid)
            .find(|p| start_matches(p.start_ns, start_time, ticks_per_s))
            .map(|p| p.kinds)
    }

    /// The table from the iterator's output (`src` read to EOF): the pure
    /// half of [`FdTableReader::read`], fuzzed with arbitrary bytes.
    pub fn from_iterator_output(src: impl Read) -> Result<FdTable, BpfError> {
        let mut table = FdTable::default();
        for_each_record(src, &mut |r| table.add(r))?;
        table.finish();
        Ok(table)
    }

    /// Adds one decoded record. Records arrive grouped by process, so the
    /// last entry is usually the one to count into.
    fn add(&mut self, r: Record) {
        match self.processes.last_mut() {
            Some(p) if p.pid == r.tgid && p.start_ns == r.start_ns => p.kinds.add(r.kind),
            _ => {
                let mut kinds = FdKinds::default();
                kinds.add(r.kind);
                self.processes.push(ProcessFds {
                    pid: r.tgid,
                    start_ns: r.start_ns,
                    kinds,
                });
            }
        }
        if r.kind == FdKind::Socket {
            self.sockets.push(BpfSocketFd {
                inode: r.ino,
                pid: r.tgid,
                fd: r.fd,
                family: r.family,
                protocol: r.protocol,
                start_ns: r.start_ns,
            });
        }
    }

    /// Sorts by pid and merges a process seen in two runs (the iterator
    /// visits tasks in pid order, so this is normally a no-op).
    fn finish(&mut self) {
        self.processes.sort_by_key(|p| (p.pid, p.start_ns));
        self.processes.dedup_by(|later, kept| {
            if later.pid != kept.pid || later.start_ns != kept.start_ns {
                return false;
            }
            let (a, b) = (&mut kept.kinds, later.kinds);
            a.socket += b.socket;
            a.pipe += b.pipe;
            a.file += b.file;
            a.anon += b.anon;
            a.other += b.other;
            true
        });
    }
}

/// Clock ticks per second of /proc's times (USER_HZ, 100 on every Linux
/// architecture; read once from sysconf).
pub fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        // SAFETY: sysconf has no memory-safety preconditions.
        let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        u64::try_from(t).ok().filter(|t| *t > 0).unwrap_or(100)
    })
}

/// True when a record's `start_ns` and /proc's `start_time` (clock ticks
/// since boot) name the same process start. The kernel prints starttime as
/// `nsec_to_clock_t(start_boottime)`, a truncating division, so the two agree
/// exactly in the reader's time namespace; anything else (a reused pid, a
/// time namespace with a boot offset) does not match and the caller walks
/// that process in /proc instead, which is never wrong, only slower.
pub fn start_matches(start_ns: u64, start_time: u64, ticks_per_s: u64) -> bool {
    let per_tick = 1_000_000_000 / ticks_per_s.clamp(1, 1_000_000_000);
    start_ns / per_tick == start_time
}

/// A loaded and verified iterator program, for reading the fd table more
/// than once (live views): loading costs the BTF parse and the verifier,
/// each [`read`](Self::read) only a link and the iteration.
pub struct FdTableReader {
    ebpf: Ebpf,
    btf: BtfChoice,
}

/// The kernel BTF a reader is relocated against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BtfChoice {
    /// Cut down to the structs the program reads ([`btf_min`]).
    Minimized,
    /// All of /sys/kernel/btf/vmlinux.
    Full,
}

/// Where the running kernel describes its types.
const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

fn read_vmlinux_btf() -> Result<Vec<u8>, BpfError> {
    std::fs::read(VMLINUX_BTF).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            BpfError::Unsupported(format!(
                "kernel BTF ({VMLINUX_BTF}) is missing: needs CONFIG_DEBUG_INFO_BTF ({e})"
            ))
        } else {
            classify("reading kernel BTF", &e)
        }
    })
}

/// Loads the object relocated against `btf` and the iterator program with
/// `btf`'s id of its attach point.
fn load_with(btf: &Btf) -> Result<Ebpf, BpfError> {
    let mut ebpf = EbpfLoader::new()
        .btf(Some(btf))
        .load(FDTABLE_OBJ)
        .map_err(|e| classify("loading the object", &e))?;
    let program: &mut Iter = ebpf
        .program_mut(PROGRAM_NAME)
        .ok_or_else(|| BpfError::Load(format!("program {PROGRAM_NAME} not in the object")))?
        .try_into()
        .map_err(|e| classify("program type", &e))?;
    program.load(ITER_TARGET, btf).map_err(|e| {
        if matches!(e, aya::programs::ProgramError::Btf(_)) {
            // No `bpf_iter_task_file` in the kernel's BTF: before 5.8.
            BpfError::Unsupported(format!(
                "the kernel has no task_file iterator (Linux >= 5.8): {}",
                chain(&e)
            ))
        } else {
            classify("loading the program", &e)
        }
    })?;
    Ok(ebpf)
}

impl std::fmt::Debug for FdTableReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FdTableReader").finish_non_exhaustive()
    }
}

impl FdTableReader {
    /// Checks the pid namespace, then loads the program (BTF from
    /// /sys/kernel/btf/vmlinux, minimized; CO-RE relocation, verifier). If
    /// the minimized BTF cannot be made or does not load, the full one is
    /// used, as [`FdTableReader::new_with`]`(BtfChoice::Full)` would.
    pub fn new() -> Result<FdTableReader, BpfError> {
        Self::new_with(BtfChoice::Minimized)
    }

    /// [`new`](Self::new) with the BTF of the caller's choice (tests compare
    /// the two).
    pub fn new_with(choice: BtfChoice) -> Result<FdTableReader, BpfError> {
        check_initial_pid_namespace()?;
        if choice == BtfChoice::Minimized {
            // The 6 MB file is freed before aya parses the cut-down copy: a
            // scan loads this while its dumps fill their buffers, and the
            // two peaks add up.
            let small = btf_min::minimize(
                &read_vmlinux_btf()?,
                btf_min::KEPT_STRUCTS,
                btf_min::KEPT_FUNCS,
            )
            .ok()
            .and_then(|b| Btf::parse(&b, aya::Endianness::default()).ok());
            if let Some(btf) = small {
                match load_with(&btf) {
                    Ok(ebpf) => {
                        return Ok(FdTableReader {
                            ebpf,
                            btf: BtfChoice::Minimized,
                        })
                    }
                    // Refused whatever the BTF: no point parsing it all.
                    Err(e @ (BpfError::Permission(_) | BpfError::Unsupported(_))) => return Err(e),
                    // A relocation the cut BTF could not satisfy.
                    Err(BpfError::Load(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let btf = Btf::parse(&read_vmlinux_btf()?, aya::Endianness::default())
            .map_err(|e| classify("reading kernel BTF", &e))?;
        Ok(FdTableReader {
            ebpf: load_with(&btf)?,
            btf: BtfChoice::Full,
        })
    }

    /// Which BTF the program was relocated against.
    pub fn btf(&self) -> BtfChoice {
        self.btf
    }

    /// Reads every fd table once.
    pub fn read(&mut self) -> Result<FdTable, BpfError> {
        FdTable::from_iterator_output(self.open_iter()?)
    }

    /// Attaches the program and creates an iterator fd; reading it runs the
    /// program over every task's files.
    fn open_iter(&mut self) -> Result<std::fs::File, BpfError> {
        let program: &mut Iter = self
            .ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or_else(|| BpfError::Load(format!("program {PROGRAM_NAME} not in the object")))?
            .try_into()
            .map_err(|e| classify("program type", &e))?;
        // A fresh link per read: the iterator fd holds it, and both are closed
        // when the read ends, so nothing stays attached between reads.
        let link_id = program
            .attach()
            .map_err(|e| classify("attaching the iterator", &e))?;
        let link = program
            .take_link(link_id)
            .map_err(|e| classify("taking the iterator link", &e))?;
        link.into_file()
            .map_err(|e| classify("creating the iterator fd", &e))
    }
}

/// Reads every process's fd table with the eBPF iterator (loads, reads once,
/// unloads). Any error means "fall back to the /proc walk".
pub fn read_fd_table() -> Result<FdTable, BpfError> {
    FdTableReader::new()?.read()
}

/// Decodes the iterator's output to EOF, passing each record to `out`.
/// Records may be split across reads (the kernel copies at most the caller's
/// buffer); the tail is carried over to the next read.
fn for_each_record(mut src: impl Read, out: &mut impl FnMut(Record)) -> Result<(), BpfError> {
    let mut buf = vec![0u8; READ_BUF_LEN];
    // Bytes at the start of `buf` not yet decoded (< RECORD_LEN after each
    // decode, so `buf[filled..]` is never empty).
    let mut filled = 0usize;
    let mut offset = 0usize;
    loop {
        let Some(space) = buf.get_mut(filled..) else {
            return Err(BpfError::Malformed("read buffer overrun".to_string()));
        };
        let n = match src.read(space) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(BpfError::Read(e)),
        };
        filled += n;
        let data = buf.get(..filled).unwrap_or(&[]);
        let used =
            decode_records(data, offset, out).map_err(|e| BpfError::Malformed(e.to_string()))?;
        buf.copy_within(used..filled, 0);
        filled -= used;
        offset += used;
    }
    if filled != 0 {
        return Err(BpfError::Malformed(format!(
            "output ended {filled} bytes into a {RECORD_LEN}-byte record (after {offset} bytes)"
        )));
    }
    Ok(())
}

/// The iterator reports initial-namespace pids and only sees the tasks of the
/// reader's namespace, so it is used only from the initial pid namespace.
///
/// Tested by the inode of /proc/self/ns/pid against the fixed inode of the
/// initial namespace. Not by comparing with /proc/1/ns/pid (in a container
/// pid 1 is the container's init, in the same namespace as sockleak; and
/// reading it can be refused), nor by counting the `NSpid:` fields of
/// /proc/self/status (they are counted from the namespace of the /proc mount,
/// so a container with its own /proc shows one field).
fn check_initial_pid_namespace() -> Result<(), BpfError> {
    let ino = std::fs::metadata("/proc/self/ns/pid")
        .map_err(|e| {
            BpfError::Unsupported(format!(
                "cannot tell the pid namespace (stat /proc/self/ns/pid: {e})"
            ))
        })?
        .ino();
    if ino != PROC_PID_INIT_INO {
        return Err(BpfError::Unsupported(format!(
            "not in the initial pid namespace (pid:[{ino}]): the iterator's pids \
             would not match /proc"
        )));
    }
    Ok(())
}

/// The first `io::Error` in an error's source chain (aya wraps the syscall
/// errors a few levels down).
fn find_io_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a io::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return Some(io);
        }
        cur = err.source();
    }
    None
}

/// "outer: inner: innermost", capped at [`MAX_LOAD_MESSAGE`] bytes (keeping
/// the end, where a verifier log says what it rejected).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        // aya prints the errno in the outer message and keeps it as the
        // source too: say it once.
        let text = err.to_string();
        if !s.contains(&text) {
            let _ = write!(s, ": {text}");
        }
        cur = err.source();
    }
    if s.len() > MAX_LOAD_MESSAGE {
        let mut cut = s.len() - MAX_LOAD_MESSAGE;
        while !s.is_char_boundary(cut) {
            cut += 1;
        }
        s = format!("...{}", &s[cut..]);
    }
    s
}

/// Maps a loader error of step `what` to a [`BpfError`] by the errno under it.
fn classify(what: &str, e: &(dyn std::error::Error + 'static)) -> BpfError {
    let msg = format!("{what}: {}", chain(e));
    match find_io_error(e).and_then(io::Error::raw_os_error) {
        Some(libc::EPERM | libc::EACCES) => BpfError::Permission(msg),
        Some(libc::ENOSYS) => BpfError::Unsupported(format!("no bpf() syscall: {msg}")),
        _ => BpfError::Load(msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that returns its data in pieces of `step` bytes, like an
    /// iterator whose output crosses seq_file buffer boundaries.
    struct Pieces {
        data: Vec<u8>,
        pos: usize,
        step: usize,
    }

    impl Read for Pieces {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(out.len()).min(self.data.len() - self.pos);
            out[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    fn record(tgid: u32, fd: u32, ino: u64, kind: u8, protocol: u16) -> Vec<u8> {
        let mut r = Vec::new();
        r.extend_from_slice(&tgid.to_ne_bytes());
        r.extend_from_slice(&fd.to_ne_bytes());
        r.extend_from_slice(&ino.to_ne_bytes());
        r.extend_from_slice(&2u16.to_ne_bytes());
        r.extend_from_slice(&protocol.to_ne_bytes());
        r.extend_from_slice(&[kind, 0, 0, 0]);
        r.extend_from_slice(&(u64::from(tgid) * 1_000).to_ne_bytes());
        r
    }

    /// Loads the reader, or says loudly why this environment cannot: not a
    /// supported kernel/namespace, or no privilege to load BPF. As root with
    /// the capabilities, a failure is a test failure, never a skip.
    fn reader_or_skip(test: &str) -> Option<FdTableReader> {
        match FdTableReader::new() {
            Ok(r) => Some(r),
            Err(e @ BpfError::Unsupported(_)) => {
                eprintln!("SKIPPED: {test}: {e}");
                None
            }
            Err(e @ BpfError::Permission(_))
                if !crate::privileges::probe().can_load_tracing_bpf() =>
            {
                eprintln!("SKIPPED: {test}: {e}");
                None
            }
            Err(e) => panic!("{test}: {e}"),
        }
    }

    fn check(what: &str, rc: libc::c_int) -> i32 {
        assert!(rc >= 0, "{what}: {}", io::Error::last_os_error());
        rc
    }

    /// Every kind of fd the classifier distinguishes, opened in this process,
    /// must get the kind that `FdKind::classify` gives its /proc link text.
    /// Only the fds opened here are compared: other unit tests of this crate
    /// may open and close fds on other threads meanwhile.
    #[test]
    fn each_fd_kind_matches_classify_of_its_proc_link() {
        use std::os::fd::AsRawFd;
        let Some(mut reader) = reader_or_skip("each_fd_kind_matches_classify_of_its_proc_link")
        else {
            return;
        };
        let dir = std::env::temp_dir().join(format!("sockleak-bpf-kinds-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");

        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("tcp listener");
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        let (ua, _ub) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        let sock_path = dir.join("s.sock");
        let _unix_listener = std::os::unix::net::UnixListener::bind(&sock_path).expect("bind");
        let fifo_path = dir.join("fifo");
        let c_fifo =
            std::ffi::CString::new(fifo_path.as_os_str().as_encoded_bytes()).expect("path");
        let c_sock =
            std::ffi::CString::new(sock_path.as_os_str().as_encoded_bytes()).expect("path");
        let regular = std::fs::File::create(dir.join("file")).expect("file");
        let directory = std::fs::File::open(&dir).expect("dir");
        let devnull = std::fs::File::open("/dev/null").expect("/dev/null");
        let netns = std::fs::File::open("/proc/self/ns/net").expect("ns/net");
        let mut opened: Vec<(i32, &str)> = vec![
            (tcp.as_raw_fd(), "tcp listener"),
            (udp.as_raw_fd(), "udp socket"),
            (ua.as_raw_fd(), "unix socketpair"),
            (regular.as_raw_fd(), "regular file"),
            (directory.as_raw_fd(), "directory"),
            (devnull.as_raw_fd(), "/dev/null"),
            (netns.as_raw_fd(), "netns fd (nsfs)"),
        ];
        let mut raw = Vec::new();
        // SAFETY (all calls below): plain syscalls on valid NUL-terminated
        // paths / out-arrays; each returned fd is closed at the end.
        unsafe {
            let mut p = [0; 2];
            check("pipe2", libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC));
            raw.extend_from_slice(&[(p[0], "pipe read end"), (p[1], "pipe write end")]);
            raw.push((
                check("eventfd", libc::eventfd(0, libc::EFD_CLOEXEC)),
                "eventfd",
            ));
            raw.push((
                check("epoll", libc::epoll_create1(libc::EPOLL_CLOEXEC)),
                "epoll",
            ));
            let tfd = libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_CLOEXEC);
            raw.push((check("timerfd", tfd), "timerfd"));
            let pidfd = libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) as libc::c_int;
            raw.push((check("pidfd_open", pidfd), "pidfd"));
            let memfd = libc::memfd_create(c"sockleak-test".as_ptr(), libc::MFD_CLOEXEC);
            raw.push((check("memfd", memfd), "memfd"));
            check("mkfifo", libc::mkfifo(c_fifo.as_ptr(), 0o600));
            // O_RDWR: opening a FIFO never blocks that way on Linux.
            let fifo = libc::open(c_fifo.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
            raw.push((check("open fifo", fifo), "named FIFO"));
            // An O_PATH fd of a socket inode on a disk filesystem: its link is
            // a path, so File, not Socket.
            let opath = libc::open(c_sock.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
            raw.push((
                check("open O_PATH socket", opath),
                "O_PATH of a socket path",
            ));
        }
        opened.extend_from_slice(&raw);

        let pid = std::process::id();
        let mut kinds = std::collections::HashMap::new();
        let mut sockets = std::collections::HashMap::new();
        let iter = reader.open_iter().expect("iterator");
        for_each_record(iter, &mut |r: Record| {
            if r.tgid == pid {
                kinds.insert(r.fd, r.kind);
                if r.kind == FdKind::Socket {
                    sockets.insert(r.fd, (r.ino, r.family, r.protocol));
                }
            }
        })
        .expect("read");

        for (fd, what) in &opened {
            let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).expect("readlink");
            let want = FdKind::classify(link.as_os_str().as_encoded_bytes());
            let fd = u32::try_from(*fd).expect("fd");
            assert_eq!(kinds.get(&fd), Some(&want), "{what}: fd {fd} -> {link:?}");
        }
        let inode = |fd: i32| {
            std::fs::metadata(format!("/proc/self/fd/{fd}"))
                .expect("stat")
                .ino()
        };
        let af_inet = libc::AF_INET as u16;
        let af_unix = libc::AF_UNIX as u16;
        for (fd, family, proto) in [
            (tcp.as_raw_fd(), af_inet, libc::IPPROTO_TCP as u16),
            (udp.as_raw_fd(), af_inet, libc::IPPROTO_UDP as u16),
            (ua.as_raw_fd(), af_unix, 0),
        ] {
            let got = sockets.get(&u32::try_from(fd).expect("fd"));
            assert_eq!(got, Some(&(inode(fd), family, proto)), "socket fd {fd}");
        }

        for (fd, _) in raw {
            // SAFETY: each fd was opened above and is closed once.
            unsafe { libc::close(fd) };
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A reader can live on the collector thread, and tables cross threads.
    #[test]
    fn reader_and_table_are_send() {
        fn send<T: Send>() {}
        send::<FdTableReader>();
        send::<FdTable>();
    }

    #[test]
    fn records_split_across_reads_are_reassembled() {
        let mut data = Vec::new();
        data.extend(record(10, 0, 100, 0, 0));
        data.extend(record(10, 3, 555, 1, 6));
        data.extend(record(7, 1, 9, 2, 0));
        data.extend(record(10, 4, 556, 1, 17));
        for step in [1, 5, 23, 24, 25, 1000] {
            let mut t = FdTable::default();
            let src = Pieces {
                data: data.clone(),
                pos: 0,
                step,
            };
            for_each_record(src, &mut |r| t.add(r)).expect("decodes");
            t.finish();
            assert_eq!(t.processes.len(), 2, "step {step}");
            let k10 = t.kinds(10).expect("pid 10");
            assert_eq!((k10.file, k10.socket, k10.total()), (1, 2, 3));
            assert_eq!(t.kinds(7).map(|k| k.pipe), Some(1));
            assert_eq!(t.kinds(8), None);
            assert_eq!(
                t.sockets
                    .iter()
                    .map(|s| (s.fd, s.protocol))
                    .collect::<Vec<_>>(),
                vec![(3, 6), (4, 17)]
            );
        }
    }

    /// A pid that names two processes (one exited, its pid reused) joins
    /// only the one whose start matches /proc's starttime in clock ticks.
    #[test]
    fn a_reused_pid_joins_only_the_process_with_its_start() {
        let mut old = record(10, 0, 100, 1, 6);
        // record() starts pid 10 at 10_000 ns; the reused pid 10 started
        // later, at 3.5 s since boot (350 ticks at 100 Hz).
        let mut new = record(10, 5, 200, 2, 0);
        let n = new.len();
        new[n - 8..].copy_from_slice(&3_500_000_000u64.to_ne_bytes());
        old.extend(new);
        let t = FdTable::from_iterator_output(&old[..]).expect("decodes");
        assert_eq!(t.processes.len(), 2);
        assert_eq!(
            t.kinds_of(10, 350, 100).map(|k| (k.pipe, k.socket)),
            Some((1, 0))
        );
        assert_eq!(
            t.kinds_of(10, 0, 100).map(|k| (k.pipe, k.socket)),
            Some((0, 1))
        );
        assert_eq!(
            t.kinds_of(10, 351, 100),
            None,
            "another start: not this process"
        );
        assert!(
            start_matches(3_509_999_999, 350, 100),
            "truncated like nsec_to_clock_t"
        );
        assert!(!start_matches(3_510_000_000, 350, 100));
        assert!(start_matches(5, 5, 1_000_000_000));
        assert!(
            start_matches(5, 0, 0),
            "0 Hz is taken as 1 Hz, never a division by zero"
        );
    }

    #[test]
    fn output_ending_mid_record_is_an_error_not_a_panic() {
        let mut data = record(1, 0, 1, 0, 0);
        data.extend_from_slice(&[1, 2, 3]);
        let src = Pieces {
            data,
            pos: 0,
            step: 7,
        };
        let err = for_each_record(src, &mut |_| {}).expect_err("trailing bytes");
        assert!(matches!(err, BpfError::Malformed(_)), "{err}");
        assert!(err.to_string().contains("3 bytes into"), "{err}");
    }
}
