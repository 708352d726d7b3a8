//! The /proc walk: processes, their descriptors and limits.
//!
//! [`scan_processes`] reads every process (or the ones asked for) in parallel
//! and returns model [`Process`](sockleak_model::Process)es plus one
//! [`SocketFd`] per socket descriptor, which the orchestrator joins with the
//! sock_diag dump by inode. Gaps (vanished processes, unreadable fd tables,
//! malformed files) come back as aggregated [`PartialNote`]s, never as errors.
//!
//! Choices worth knowing:
//! - Every tgid listed in /proc is scanned, kernel threads included: they cost
//!   a handful of syscalls each (their fd table is empty) and skipping them
//!   would need a heuristic (ppid 2) that misfires inside pid namespaces.
//! - Only the thread-group leader's fd table is read. A thread that
//!   `unshare(CLONE_FILES)`'d has its own table under /proc/PID/task/TID/fd;
//!   that is rare enough to ignore.
//! - `fd_count` comes from the walk when `walk_fds` is set. Otherwise, and
//!   when the fd table cannot be read (EACCES), it comes from
//!   `stat(/proc/PID/fd).st_size`, which on Linux >= 6.2 is the number of open
//!   fds and needs no ptrace permission; on older kernels (size 0) or a
//!   non-procfs tree (fixtures) the entries are counted when readable.

pub mod cache;
mod dirfd;
pub mod hidepid;
mod process;
mod socket_fd;
mod walk;

pub use process::{
    cmdline_to_string, parse_limits, parse_stat, parse_status, FdLimits, ParseError, StatFields,
    StatusFields,
};
pub use socket_fd::{fd_tcp_state, parse_socket_inode, socket_protocol, SocketFd};
pub use walk::scan_processes;

use sockleak_model::{PartialNote, Process};
use std::path::PathBuf;

/// What to scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcOptions {
    /// Normally `/proc`; a fixture tree in tests.
    pub proc_root: PathBuf,
    /// Worker threads (0 is treated as 1). The calling thread is one of them.
    pub threads: usize,
    /// `Some`: only these processes (each still read fully); pids that do not
    /// exist are counted as vanished.
    pub pids: Option<Vec<u32>>,
    /// Read every fd link (kinds and socket inodes). `false`: only the cheap
    /// fd count, `fds` is `None` and no [`SocketFd`]s are returned.
    pub walk_fds: bool,
}

impl Default for ProcOptions {
    /// All of `/proc`, fds walked, one worker per CPU.
    fn default() -> Self {
        ProcOptions {
            proc_root: PathBuf::from("/proc"),
            threads: std::thread::available_parallelism().map_or(1, usize::from),
            pids: None,
            walk_fds: true,
        }
    }
}

/// The result of one /proc walk.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcScan {
    /// Sorted by pid.
    pub processes: Vec<Process>,
    /// Every socket fd of the scanned processes, in no particular order.
    pub socket_fds: Vec<SocketFd>,
    pub notes: Vec<PartialNote>,
}
