//! The parallel /proc walk: the hot path of every scan.
//!
//! Workers pull pids from a shared atomic index (cheap, and self-balancing
//! when one process holds 20k fds and the next none). Each worker owns its
//! buffers (file contents, `getdents64` records, link targets) and reuses them
//! for every process and fd, so walking a million fds allocates only the
//! growing `Vec<SocketFd>`. Everything is reached relative to an open
//! `/proc/PID` directory fd.

use super::dirfd::{
    parse_u32, parse_u64, Dir, NumName, DENTS_BUF_LEN, LINK_BUF_LEN, PROC_SUPER_MAGIC,
};
use super::process::{cmdline_to_string, parse_limits, parse_stat, parse_status, FdLimits};
use super::socket_fd::{parse_socket_inode, SocketFd};
use super::{ProcOptions, ProcScan};
use crate::privileges::{Privileges, ProcAccess};
use sockleak_model::{
    add_note, merge_notes, FdKind, FdKinds, NoteProcess, PartialKind, PartialNote, Process,
};
use std::ffi::CStr;
use std::io;
use std::ops::ControlFlow;

/// Fix offered when an fd table (or a namespace link) fails with an error
/// other than a refusal; refusals are judged by
/// [`Privileges::classify_denial`].
const FIX_FD_TABLES: &str = "run as root or grant CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH";
const FIX_NETNS: &str = "run as root or grant CAP_SYS_PTRACE";

/// Why a process is left out of the result.
enum Skip {
    /// It exited while being read (ENOENT/ESRCH): normal churn.
    Vanished,
    /// It could not be read and a note already says why.
    Noted,
}

/// ENOENT/ESRCH: the process or fd is gone.
fn is_vanished(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH))
}

fn is_permission(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM))
}

/// Adds a note counting `count` objects at once.
fn note_n(
    notes: &mut Vec<PartialNote>,
    kind: PartialKind,
    what: &str,
    reason: &str,
    fix: Option<&str>,
    count: u32,
) {
    if count == 0 {
        return;
    }
    merge_notes(
        notes,
        vec![PartialNote::new(kind, what, reason, fix, count)],
    );
}

/// Notes an I/O error on `what`: Permission (with `fix`) for EACCES/EPERM,
/// Error otherwise.
fn note_io(notes: &mut Vec<PartialNote>, what: &str, e: &io::Error, fix: &str) {
    if is_permission(e) {
        add_note(
            notes,
            PartialKind::Permission,
            what,
            "permission denied",
            Some(fix),
        );
    } else {
        add_note(notes, PartialKind::Error, what, &e.to_string(), None);
    }
}

/// Reads processes from `opts.proc_root` in parallel. Never fails: what could
/// not be read is listed in `notes`.
pub fn scan_processes(opts: &ProcOptions) -> ProcScan {
    let mut scan = ProcScan::default();
    let root = match Dir::open(&opts.proc_root) {
        Ok(d) => d,
        Err(e) => {
            let what = format!("process list ({})", opts.proc_root.display());
            note_io(&mut scan.notes, &what, &e, "run as root");
            return scan;
        }
    };
    // Decides whether `st_size` of an fd directory is an fd count (procfs) or
    // meaningless (a fixture tree on a disk filesystem).
    let is_procfs = root.fs_type().is_ok_and(|t| t == PROC_SUPER_MAGIC);
    let pids = match &opts.pids {
        Some(p) => {
            let mut p = p.clone();
            p.sort_unstable();
            p.dedup();
            p
        }
        None => {
            if is_procfs {
                note_hidden_processes(&opts.proc_root, &mut scan.notes);
            }
            list_pids(&root, &mut scan.notes)
        }
    };

    // Read once: every refusal of this walk is judged against it.
    let privs = crate::privileges::probe();
    let drained = crate::pool::drain(
        pids.len(),
        opts.threads,
        "sockleak-proc",
        || Worker::new(&root, opts.walk_fds, is_procfs, privs),
        |w, i| {
            if let Some(&pid) = pids.get(i) {
                w.scan_pid(pid);
            }
        },
    );
    let lost_workers = drained.lost;
    let outs: Vec<ProcScan> = drained.outputs.into_iter().map(|w| w.out).collect();
    note_n(
        &mut scan.notes,
        PartialKind::Error,
        "process scan workers",
        "a worker thread panicked; its processes are missing",
        None,
        lost_workers,
    );

    let n_fds = outs.iter().map(|o| o.socket_fds.len()).sum();
    let n_procs = outs.iter().map(|o| o.processes.len()).sum();
    scan.socket_fds.reserve_exact(n_fds);
    scan.processes.reserve_exact(n_procs);
    for out in outs {
        scan.processes.extend(out.processes);
        scan.socket_fds.extend(out.socket_fds);
        merge_notes(&mut scan.notes, out.notes);
    }
    scan.processes.sort_unstable_by_key(|p| p.pid);
    scan
}

/// Says when the proc mount hides other users' processes from this caller
/// (`hidepid`): they are absent from the listing, not refused, so nothing
/// else would notice.
fn note_hidden_processes(proc_root: &std::path::Path, notes: &mut Vec<PartialNote>) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let Some(h) = proc_root
        .to_str()
        .and_then(|m| super::hidepid::hidepid(&info, m))
    else {
        return;
    };
    if h.exempts_caller(crate::privileges::probe().cap_sys_ptrace) {
        return;
    }
    add_note(
        notes,
        PartialKind::Permission,
        "process list",
        &format!(
            "{} is mounted with hidepid={}: other users' processes are hidden from \
             this user and missing here",
            proc_root.display(),
            h.mode
        ),
        Some("run as root or grant CAP_SYS_PTRACE (or join the mount's gid= group)"),
    );
}

/// The numeric entries of the proc root: every thread-group leader.
fn list_pids(root: &Dir, notes: &mut Vec<PartialNote>) -> Vec<u32> {
    let mut pids = Vec::with_capacity(1024);
    let mut buf = vec![0u8; DENTS_BUF_LEN];
    let res = root.for_each_entry(&mut buf, |name| {
        if let Some(pid) = parse_u32(name.to_bytes()) {
            pids.push(pid);
        }
        ControlFlow::Continue(())
    });
    if let Err(e) = res {
        note_io(notes, "process list", &e, "run as root");
    }
    pids
}

/// A process named in a note: pid and comm.
type Who<'c> = (u32, &'c str);

/// The fd count and kinds of one process; both `None` when unreadable.
type FdResult = Result<(Option<u32>, Option<FdKinds>), Skip>;

/// One worker: its buffers and its share of the result.
struct Worker<'a> {
    root: &'a Dir,
    walk_fds: bool,
    is_procfs: bool,
    privs: Privileges,
    /// Contents of stat/status/cmdline/limits.
    file: Vec<u8>,
    /// `getdents64` records.
    dents: Vec<u8>,
    /// Link targets.
    link: Vec<u8>,
    out: ProcScan,
}

impl<'a> Worker<'a> {
    fn new(root: &'a Dir, walk_fds: bool, is_procfs: bool, privs: Privileges) -> Worker<'a> {
        Worker {
            root,
            walk_fds,
            is_procfs,
            privs,
            file: Vec::with_capacity(4096),
            dents: vec![0u8; DENTS_BUF_LEN],
            link: vec![0u8; LINK_BUF_LEN],
            out: ProcScan::default(),
        }
    }

    fn scan_pid(&mut self, pid: u32) {
        // Socket fds are pushed straight into the shared output; a process
        // dropped half-way takes its fds back out.
        let fds_before = self.out.socket_fds.len();
        match self.read_process(pid) {
            Ok(p) => self.out.processes.push(p),
            Err(skip) => {
                self.out.socket_fds.truncate(fds_before);
                if let Skip::Vanished = skip {
                    add_note(
                        &mut self.out.notes,
                        PartialKind::Vanished,
                        "processes",
                        "exited during the scan",
                        None,
                    );
                }
            }
        }
    }

    /// Reads `what` (a file under /proc/PID) into `self.file`. `Ok(false)`:
    /// unreadable for a reason other than the process vanishing (noted).
    fn read(&mut self, dir: &Dir, name: &CStr, what: &str) -> Result<bool, Skip> {
        match dir.read_file_at(name, &mut self.file) {
            Ok(()) => Ok(true),
            Err(e) if is_vanished(&e) => Err(Skip::Vanished),
            Err(e) => {
                note_io(&mut self.out.notes, what, &e, "run as root");
                Ok(false)
            }
        }
    }

    fn malformed(&mut self, what: &str, reason: &str) {
        add_note(
            &mut self.out.notes,
            PartialKind::Malformed,
            what,
            reason,
            None,
        );
    }

    fn read_process(&mut self, pid: u32) -> Result<Process, Skip> {
        let dir = match self.root.open_dir_at(NumName::new(pid.into()).as_cstr()) {
            Ok(d) => d,
            Err(e) if is_vanished(&e) => return Err(Skip::Vanished),
            Err(e) => {
                note_io(&mut self.out.notes, "processes", &e, "run as root");
                return Err(Skip::Noted);
            }
        };

        // stat first: without a start time the process has no identity.
        if !self.read(&dir, c"stat", "/proc/PID/stat")? {
            return Err(Skip::Noted);
        }
        let stat = match parse_stat(&self.file) {
            Ok(s) => s,
            Err(e) => {
                self.malformed("/proc/PID/stat", &e.to_string());
                return Err(Skip::Noted);
            }
        };
        let zombie = stat.state == b'Z';

        let status = if self.read(&dir, c"status", "/proc/PID/status")? {
            let st = parse_status(&self.file);
            if st.uid.is_none() {
                self.malformed("/proc/PID/status", "status: no valid \"Uid:\" line");
            }
            st
        } else {
            Default::default()
        };
        // Fallback: /proc/PID is owned by the effective uid (or root for
        // non-dumpable processes), better than inventing one.
        let uid = match status.uid {
            Some(u) => u,
            None => dir.stat_self().map_or(u32::MAX, |st| st.st_uid),
        };

        let cmdline = if self.read(&dir, c"cmdline", "/proc/PID/cmdline")? {
            cmdline_to_string(&self.file)
        } else {
            String::new()
        };

        let limits = if self.read(&dir, c"limits", "/proc/PID/limits")? {
            parse_limits(&self.file).unwrap_or_else(|e| {
                self.malformed("/proc/PID/limits", &e.to_string());
                FdLimits::default()
            })
        } else {
            FdLimits::default()
        };

        let netns = self.netns(&dir, zombie)?;
        let who = (pid, stat.comm.as_str());
        let (fd_count, fds) = if self.walk_fds {
            self.walk_fds(&dir, who)?
        } else {
            (self.count_fds(&dir, who)?, None)
        };

        Ok(Process {
            pid,
            ppid: stat.ppid,
            start_time: stat.start_time,
            comm: stat.comm,
            cmdline,
            uid,
            netns,
            ns_pid: status.ns_pid.filter(|&n| n != pid),
            fd_count,
            fd_limit: limits.soft,
            fd_limit_hard: limits.hard,
            fds,
            closed_but_held: None,
        })
    }

    /// The network namespace id: the nsfs inode of `/proc/PID/ns/net`.
    fn netns(&mut self, dir: &Dir, zombie: bool) -> Result<u64, Skip> {
        let e = match dir.stat_at(c"ns/net") {
            Ok(st) => return Ok(st.st_ino),
            Err(e) => e,
        };
        // The link text `net:[4026531840]` carries the same number as the
        // nsfs inode (fs/nsfs.c, ns_get_name prints ns->inum); fixture trees
        // hold it as a dangling symlink that stat cannot follow.
        if let Ok(n) = dir.readlink_at(c"ns/net", &mut self.link) {
            let id = self
                .link
                .get(..n)
                .and_then(|t| t.strip_prefix(b"net:["))
                .and_then(|t| t.strip_suffix(b"]"))
                .and_then(parse_u64);
            if let Some(id) = id {
                return Ok(id);
            }
        }
        if zombie {
            // A zombie has released its namespaces: 0 is the truth, not a gap.
            return Ok(0);
        }
        if is_vanished(&e) {
            return Err(Skip::Vanished);
        }
        // Permission: netns::discover already reports these processes once
        // ("namespace discovery"); a second note would double the count.
        if !is_permission(&e) {
            note_io(
                &mut self.out.notes,
                "network namespaces of processes",
                &e,
                FIX_NETNS,
            );
        }
        Ok(0)
    }

    /// The fd count without reading the table (see the module docs).
    fn fd_count_from_size(&self, dir: &Dir) -> Option<u32> {
        if !self.is_procfs {
            return None;
        }
        dir.stat_at(c"fd")
            .ok()
            .filter(|st| st.st_size > 0)
            .and_then(|st| u32::try_from(st.st_size).ok())
    }

    /// Notes the refused fd table of `who` (pid, comm), with its cause.
    fn note_fd_denied(&mut self, (pid, comm): Who) {
        let d = self.privs.classify_denial(ProcAccess::FdTable);
        merge_notes(
            &mut self.out.notes,
            vec![PartialNote::denied(
                "fd tables",
                &d.reason,
                d.cause,
                d.fix.as_deref(),
                NoteProcess {
                    pid,
                    comm: comm.to_string(),
                },
            )],
        );
    }

    /// Opens `/proc/PID/fd`. `Ok(None)`: unreadable (noted).
    fn open_fd_dir(&mut self, dir: &Dir, who: Who) -> Result<Option<Dir>, Skip> {
        match dir.open_dir_at(c"fd") {
            Ok(d) => Ok(Some(d)),
            Err(e) if is_vanished(&e) => Err(Skip::Vanished),
            Err(e) if is_permission(&e) => {
                self.note_fd_denied(who);
                Ok(None)
            }
            Err(e) => {
                note_io(&mut self.out.notes, "fd tables", &e, FIX_FD_TABLES);
                Ok(None)
            }
        }
    }

    /// `walk_fds == false`: the count only.
    fn count_fds(&mut self, dir: &Dir, who: Who) -> Result<Option<u32>, Skip> {
        if let Some(n) = self.fd_count_from_size(dir) {
            return Ok(Some(n));
        }
        // Older kernel, no fds at all, or not procfs: count the entries.
        let Some(fd_dir) = self.open_fd_dir(dir, who)? else {
            return Ok(None);
        };
        let mut n = 0u32;
        let res = fd_dir.for_each_entry(&mut self.dents, |name| {
            if parse_u32(name.to_bytes()).is_some() {
                n += 1;
            }
            ControlFlow::Continue(())
        });
        match res {
            Ok(()) => Ok(Some(n)),
            Err(e) if is_vanished(&e) => Err(Skip::Vanished),
            Err(e) => {
                note_io(&mut self.out.notes, "fd tables", &e, FIX_FD_TABLES);
                Ok(None)
            }
        }
    }

    /// Reads every fd link of `pid`: kinds, count, and a [`SocketFd`] per
    /// socket. The walk count is authoritative (fds that close mid-walk are
    /// not counted).
    fn walk_fds(&mut self, dir: &Dir, who: Who) -> FdResult {
        let pid = who.0;
        let Some(fd_dir) = self.open_fd_dir(dir, who)? else {
            return Ok((self.fd_count_from_size(dir), None));
        };
        let fds_before = self.out.socket_fds.len();
        let mut kinds = FdKinds::default();
        let mut vanished = 0u32;
        let mut bad_socket_links = 0u32;
        let mut denied = false;
        let mut other_error: Option<io::Error> = None;
        // Split borrows: the closure fills `link` and `out` while
        // `for_each_entry` fills `dents`.
        let Worker {
            dents, link, out, ..
        } = self;
        let res = fd_dir.for_each_entry(dents, |name| {
            let Some(fd) = parse_u32(name.to_bytes()) else {
                return ControlFlow::Continue(()); // ".", ".."
            };
            match fd_dir.readlink_at(name, link) {
                Ok(n) => {
                    let target = link.get(..n).unwrap_or(&[]);
                    let kind = FdKind::classify(target);
                    kinds.add(kind);
                    if kind == FdKind::Socket {
                        match parse_socket_inode(target) {
                            Some(inode) => out.socket_fds.push(SocketFd { inode, pid, fd }),
                            None => bad_socket_links += 1,
                        }
                    }
                }
                Err(e) if is_vanished(&e) => vanished += 1,
                Err(e) if is_permission(&e) => {
                    // Lost access mid-walk (e.g. exec of a setuid binary).
                    denied = true;
                    return ControlFlow::Break(());
                }
                Err(e) => {
                    other_error = Some(e);
                }
            }
            ControlFlow::Continue(())
        });
        match res {
            Ok(()) => {}
            Err(e) if is_vanished(&e) => return Err(Skip::Vanished),
            Err(e) if is_permission(&e) => denied = true,
            Err(e) => other_error = Some(e),
        }
        note_n(
            &mut self.out.notes,
            PartialKind::Vanished,
            "fds",
            "closed during the scan",
            None,
            vanished,
        );
        note_n(
            &mut self.out.notes,
            PartialKind::Malformed,
            "socket fd links",
            "not of the form socket:[inode]",
            None,
            bad_socket_links,
        );
        if denied {
            self.out.socket_fds.truncate(fds_before);
            self.note_fd_denied(who);
            return Ok((self.fd_count_from_size(dir), None));
        }
        if let Some(e) = other_error {
            // Keep what was read: a partial table beats none, and it is labelled.
            note_io(&mut self.out.notes, "fds", &e, FIX_FD_TABLES);
        }
        Ok((Some(kinds.total()), Some(kinds)))
    }
}
