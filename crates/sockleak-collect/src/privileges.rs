//! What this run may see, and what would fix each gap.
//!
//! [`probe`] reads the effective capabilities once; [`checks`] backs
//! `sockleak doctor`: each [`Check`] says whether a feature works here and, if
//! not, the command that would make it work. Nothing here changes the system.

use sockleak_model::{describe_processes, PartialCause, PartialKind, PartialNote};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;

/// Capability bit numbers from include/uapi/linux/capability.h.
const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Inode of the initial user namespace's nsfs file (`PROC_USER_INIT_INO`,
/// include/linux/proc_ns.h): fixed, so a child namespace is told by inode.
const PROC_USER_INIT_INO: u64 = 0xEFFF_FFFD;

/// `NETLINK_SOCK_DIAG` from include/uapi/linux/netlink.h.
const NETLINK_SOCK_DIAG: libc::c_int = 4;

/// The one command that grants everything sockleak's features use without
/// root: the fd tables (CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH), other network
/// namespaces (CAP_SYS_ADMIN) and the eBPF fd table and state tracker
/// (CAP_BPF, CAP_PERFMON). Nothing else: sockleak never kills sockets, so no
/// CAP_NET_ADMIN.
pub const SETCAP_FIX: &str =
    "setcap cap_sys_ptrace,cap_dac_read_search,cap_sys_admin,cap_bpf,cap_perfmon+ep $(which sockleak)";

/// One line of `sockleak doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    /// What was seen, in a few words.
    pub detail: String,
    /// The command or change that would make a failed check pass.
    pub fix: Option<String>,
    /// Not a gap sockleak could close: refused although it holds every
    /// capability the read needs (`ok` is false, `fix` is `None`).
    pub guarded: bool,
}

impl Check {
    fn new(name: &'static str, ok: bool, detail: String, fix: Option<String>) -> Check {
        Check {
            name,
            ok,
            detail,
            fix,
            guarded: false,
        }
    }
}

/// The identity and capabilities of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Privileges {
    pub euid: u32,
    /// Read any process's fd links and namespaces; `pidfd_getfd` on any process.
    pub cap_sys_ptrace: bool,
    /// Open any process's `/proc/PID/fd` directory.
    pub cap_dac_read_search: bool,
    /// `setns` into other network namespaces.
    pub cap_sys_admin: bool,
    /// With `cap_perfmon`: load the eBPF fd-table iterator (a tracing program).
    pub cap_bpf: bool,
    pub cap_perfmon: bool,
    /// sockleak runs in a user namespace other than the initial one (a
    /// container's): its capabilities do not reach processes outside it.
    pub in_child_user_ns: bool,
}

/// Whether a [`Privileges`] holds one capability.
type HeldBy = fn(&Privileges) -> bool;

/// What reading another process's `/proc/PID` entries asks of the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcAccess {
    /// `/proc/PID/fd`: opening the directory of another user is a DAC check
    /// (mode 0500, CAP_DAC_READ_SEARCH); reading its links is a ptrace read
    /// check (fs/proc/fd.c, `proc_fd_access_allowed`: CAP_SYS_PTRACE).
    FdTable,
    /// `/proc/PID/ns/net`: a ptrace read check only (fs/proc/namespaces.c).
    Namespace,
    /// `pidfd_getfd`: a ptrace attach check (kernel/pid.c,
    /// PTRACE_MODE_ATTACH_REALCREDS), which Yama's ptrace_scope also limits.
    FdDuplicate,
}

impl ProcAccess {
    /// "CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH".
    pub fn cap_names(self) -> String {
        self.needs()
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(" and ")
    }

    /// The capabilities that lift the checks, in the order they are named.
    fn needs(self) -> &'static [(&'static str, HeldBy)] {
        match self {
            ProcAccess::FdTable => &[
                ("CAP_SYS_PTRACE", |p| p.cap_sys_ptrace),
                ("CAP_DAC_READ_SEARCH", |p| p.cap_dac_read_search),
            ],
            ProcAccess::Namespace | ProcAccess::FdDuplicate => {
                &[("CAP_SYS_PTRACE", |p| p.cap_sys_ptrace)]
            }
        }
    }
}

/// Why a read of another process was refused, and who can change that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub cause: PartialCause,
    /// The refusal in words, with the cause.
    pub reason: String,
    /// For a missing capability: the capabilities to grant, exactly.
    pub fix: Option<String>,
}

impl Privileges {
    /// Builds from `euid` and the text of `/proc/self/status`; capabilities
    /// default to absent when `CapEff:` is missing or unparsable.
    pub fn from_status(euid: u32, status: &str) -> Privileges {
        let cap_eff = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0);
        let has = |bit: u32| cap_eff & (1u64 << bit) != 0;
        Privileges {
            euid,
            cap_sys_ptrace: has(CAP_SYS_PTRACE),
            cap_dac_read_search: has(CAP_DAC_READ_SEARCH),
            cap_sys_admin: has(CAP_SYS_ADMIN),
            cap_bpf: has(CAP_BPF),
            cap_perfmon: has(CAP_PERFMON),
            in_child_user_ns: false,
        }
    }

    /// Classifies EACCES/EPERM on another process's `access`: a capability
    /// sockleak lacks (named, the fix), or, when it holds all of them, a
    /// guard no capability lifts (a security module such as Landlock,
    /// AppArmor or SELinux, a sandbox, or a user-namespace boundary; the
    /// kernel's error does not say which, so the reason lists them). The
    /// one place scan and doctor judge a denial, so they cannot disagree.
    pub fn classify_denial(&self, access: ProcAccess) -> Denial {
        let needs = access.needs();
        let missing: Vec<&str> = needs
            .iter()
            .filter(|(_, held)| !held(self))
            .map(|(name, _)| *name)
            .collect();
        if !missing.is_empty() {
            let caps = missing.join(" and ");
            return Denial {
                cause: PartialCause::MissingCapability,
                reason: format!("permission denied (no {caps})"),
                fix: Some(format!("run as root or grant {caps}")),
            };
        }
        let held = access.cap_names();
        let reason = if self.in_child_user_ns {
            format!(
                "refused although sockleak holds {held}: sockleak runs in a user namespace \
                 (a container?) and its capabilities do not reach processes outside it"
            )
        } else {
            let modules = if access == ProcAccess::FdDuplicate {
                "Yama's ptrace_scope, Landlock, AppArmor, SELinux"
            } else {
                "Landlock, AppArmor, SELinux"
            };
            format!(
                "refused although sockleak holds {held}: a security module ({modules}) \
                 or a sandbox guards these processes"
            )
        };
        Denial {
            cause: PartialCause::Guarded,
            reason,
            fix: None,
        }
    }

    /// Whether a tracing eBPF program (the fd-table iterator) may be loaded:
    /// CAP_BPF + CAP_PERFMON, or CAP_SYS_ADMIN which implies both. Checked
    /// before trying, so an unprivileged scan does not pay for parsing the
    /// kernel's BTF only to be refused.
    pub fn can_load_tracing_bpf(&self) -> bool {
        self.cap_sys_admin || (self.cap_bpf && self.cap_perfmon)
    }

    /// Whether the fd tables of every process can be read.
    pub fn can_read_all_fd_tables(&self) -> bool {
        self.cap_sys_ptrace && self.cap_dac_read_search
    }
}

/// Reads this process's euid and effective capabilities (`CapEff:` of
/// `/proc/self/status`; root in a container may lack some).
pub fn probe() -> Privileges {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mut p = Privileges::from_status(euid, &status);
    // Unreadable (no /proc): assume the initial namespace, the common case.
    p.in_child_user_ns = std::fs::metadata("/proc/self/ns/user")
        .is_ok_and(|m| std::os::unix::fs::MetadataExt::ino(&m) != PROC_USER_INIT_INO);
    p
}

/// Everything `sockleak doctor` reports, in display order. The gaps of
/// other processes come from a real scan (the one `sockleak scan` runs,
/// judged by [`Privileges::classify_denial`]), so doctor names exactly the
/// processes and capabilities a scan labels as partial.
pub fn checks(proc_root: &Path) -> Vec<Check> {
    let p = probe();
    let snap = crate::scan::scan_unfiltered(&crate::scan::ScanOptions {
        proc_root: proc_root.to_path_buf(),
        ..crate::scan::ScanOptions::default()
    });
    let notes = &snap.partial;
    vec![
        check_root(&p),
        check_refusals(
            "read other users' fd tables",
            &p,
            ProcAccess::FdTable,
            notes,
            "fd tables",
        ),
        check_refusals(
            "see other processes' namespaces",
            &p,
            ProcAccess::Namespace,
            notes,
            "namespace discovery",
        ),
        check_setns(&p),
        check_sock_diag(),
        check_bpf_fd_table(&p),
        check_state_tracker(&p),
        check_run_netns(Path::new("/run/netns")),
        check_pidfd_getfd(),
        check_guarded(notes),
    ]
}

fn check_root(p: &Privileges) -> Check {
    let ok = p.euid == 0;
    Check::new(
        "running as root",
        ok,
        format!("euid {}", p.euid),
        (!ok).then(|| format!("run as root, or grant the capabilities: {SETCAP_FIX}")),
    )
}

/// Processes named in a doctor line; the rest are counted.
const SHOWN_PROCESSES: usize = 5;

/// A line for one kind of read of other processes: the refusals the scan
/// labelled as a missing capability (named, with the processes), or, when it
/// met none, whether the capabilities are held for the processes it did not
/// meet. Guarded refusals are [`check_guarded`]'s.
fn check_refusals(
    name: &'static str,
    p: &Privileges,
    access: ProcAccess,
    notes: &[PartialNote],
    what: &str,
) -> Check {
    let denial = p.classify_denial(access);
    let refused = notes
        .iter()
        .find(|n| n.kind == PartialKind::Permission && n.what == what && !n.is_guarded());
    let with_setcap = |fix: &str| format!("{fix}: {SETCAP_FIX}");
    match refused {
        Some(n) => Check::new(
            name,
            false,
            format!(
                "the scan was refused {} of {}: {}",
                n.count,
                describe_processes(&n.processes, SHOWN_PROCESSES),
                n.reason
            ),
            Some(with_setcap(n.fix.as_deref().unwrap_or("run as root"))),
        ),
        None => match denial.fix {
            Some(fix) => Check::new(
                name,
                false,
                format!(
                    "the scan met no refusal, but another user's process would be: {}",
                    denial.reason
                ),
                Some(with_setcap(&fix)),
            ),
            None => Check::new(
                name,
                true,
                format!(
                    "{} held: the scan met no refusal a capability would lift",
                    access.cap_names()
                ),
                None,
            ),
        },
    }
}

/// What no capability of sockleak's would make readable, named once: the
/// same processes a scan's quiet note names.
fn check_guarded(notes: &[PartialNote]) -> Check {
    const NAME: &str = "processes guarded by the system";
    let Some(sockleak_model::snapshot::Guarded {
        processes: procs,
        whats,
        reason,
    }) = sockleak_model::snapshot::guarded_summary(notes)
    else {
        return Check::new(
            NAME,
            true,
            "none: no security module or sandbox refused a read".to_string(),
            None,
        );
    };
    let who = if procs.is_empty() {
        whats.join(", ")
    } else {
        format!(
            "{} ({})",
            describe_processes(&procs, SHOWN_PROCESSES),
            whats.join(", ")
        )
    };
    Check {
        name: NAME,
        ok: false,
        detail: format!("{who}: {reason}; no capability would help"),
        fix: None,
        guarded: true,
    }
}

fn check_setns(p: &Privileges) -> Check {
    Check {
        name: "enter other network namespaces",
        ok: p.cap_sys_admin,
        detail: if p.cap_sys_admin {
            "CAP_SYS_ADMIN held".to_string()
        } else {
            "CAP_SYS_ADMIN missing: only this namespace's sockets are dumped".to_string()
        },
        fix: (!p.cap_sys_admin)
            .then(|| format!("run as root or grant CAP_SYS_ADMIN: {SETCAP_FIX}")),
        guarded: false,
    }
}

fn check_sock_diag() -> Check {
    // SAFETY: socket() takes no pointers.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    };
    let (ok, detail) = if fd < 0 {
        (
            false,
            format!(
                "socket(AF_NETLINK, NETLINK_SOCK_DIAG): {}",
                std::io::Error::last_os_error()
            ),
        )
    } else {
        // SAFETY: `fd` was just returned by socket() and is owned by nobody else.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
        (true, "NETLINK_SOCK_DIAG socket opened".to_string())
    };
    Check {
        name: "sock_diag (NETLINK_SOCK_DIAG)",
        ok,
        detail,
        fix: (!ok).then(|| {
            "load the diag modules (modprobe inet_diag tcp_diag) or allow netlink sockets in the container's seccomp profile"
                .to_string()
        }),
        guarded: false,
    }
}

/// The fast fd table: loads and reads the eBPF iterator once.
fn check_bpf_fd_table(p: &Privileges) -> Check {
    #[cfg(feature = "bpf")]
    let load = || {
        crate::bpf::read_fd_table()
            .map(|t| {
                format!(
                    "task_file iterator read {} socket fds of {} processes",
                    t.sockets.len(),
                    t.processes.len()
                )
            })
            .map_err(|e| e.to_string())
    };
    #[cfg(not(feature = "bpf"))]
    let load = || Err(String::new());
    bpf_check(
        "eBPF fd table (fast owners)",
        p,
        "owners come from the slower /proc fd walk",
        "a kernel >= 5.11 with BTF (CONFIG_DEBUG_INFO_BTF), in the initial pid namespace",
        load,
    )
}

/// The state tracker of `watch`: loads and attaches it once.
fn check_state_tracker(p: &Privileges) -> Check {
    #[cfg(feature = "bpf")]
    let load = || {
        crate::bpf::changes::StateTracker::new()
            .map(|_| {
                "tp_btf/inet_sock_set_state attached: `watch` samples look up only the \
                 sockets that changed state"
                    .to_string()
            })
            .map_err(|e| e.to_string())
    };
    #[cfg(not(feature = "bpf"))]
    let load = || Err(String::new());
    bpf_check(
        "eBPF state tracker (watch samples)",
        p,
        "every `watch` sample dumps every socket",
        "a kernel >= 5.6 with BTF (CONFIG_DEBUG_INFO_BTF)",
        load,
    )
}

/// An eBPF feature's line: the capabilities it lacks, or what loading it
/// found (`load`'s detail or error); `fallback` says what sockleak does
/// without it, `kernel` what a failed load needs.
fn bpf_check(
    name: &'static str,
    p: &Privileges,
    fallback: &str,
    kernel: &str,
    load: impl FnOnce() -> Result<String, String>,
) -> Check {
    if cfg!(not(feature = "bpf")) {
        return Check {
            name,
            ok: false,
            detail: format!("built without the `bpf` feature: {fallback}"),
            fix: Some("build with the default features".to_string()),
            guarded: false,
        };
    }
    if !p.can_load_tracing_bpf() {
        return Check {
            name,
            ok: false,
            detail: format!("no CAP_BPF + CAP_PERFMON (or CAP_SYS_ADMIN): {fallback}"),
            fix: Some(format!(
                "run as root or grant CAP_BPF and CAP_PERFMON: {SETCAP_FIX}"
            )),
            guarded: false,
        };
    }
    match load() {
        Ok(detail) => Check {
            name,
            ok: true,
            detail,
            fix: None,
            guarded: false,
        },
        Err(e) => Check {
            name,
            ok: false,
            detail: format!("{e}; {fallback}"),
            fix: Some(format!("{kernel}; not needed for correct results")),
            guarded: false,
        },
    }
}

/// Absent is fine (no `ip netns` names: namespaces are still found through
/// /proc/PID/ns/net); present but unreadable is a gap.
fn check_run_netns(dir: &Path) -> Check {
    const NAME: &str = "named network namespaces (/run/netns)";
    match std::fs::read_dir(dir) {
        Ok(entries) => Check {
            name: NAME,
            ok: true,
            detail: format!("{} present, {} named", dir.display(), entries.count()),
            fix: None,
            guarded: false,
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Check {
            name: NAME,
            ok: true,
            detail: format!(
                "{} absent: no `ip netns` names; namespaces of running processes are still scanned",
                dir.display()
            ),
            fix: None,
            guarded: false,
        },
        Err(e) => Check {
            name: NAME,
            ok: false,
            detail: format!("{}: {e}", dir.display()),
            fix: Some("run as root".to_string()),
            guarded: false,
        },
    }
}

/// Probes the syscall itself (seccomp may block it even on a new kernel):
/// an invalid pidfd gives EBADF where the syscall exists, ENOSYS where not.
fn check_pidfd_getfd() -> Check {
    // SAFETY: pidfd_getfd(-1, 0, 0) takes no pointers and fails with EBADF.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_getfd, -1, 0, 0) };
    let err = std::io::Error::last_os_error();
    let kernel = kernel_release();
    let ok = rc >= 0 || err.raw_os_error() == Some(libc::EBADF);
    Check {
        name: "pidfd_getfd (confirm closed-but-held sockets)",
        ok,
        detail: if ok {
            format!("available (kernel {kernel})")
        } else {
            format!("unavailable (kernel {kernel}): {err}")
        },
        fix: (!ok).then(|| {
            "needs Linux >= 5.6 and a seccomp profile that allows pidfd_open/pidfd_getfd; without it closed-but-held sockets are counted unconfirmed"
                .to_string()
        }),
        guarded: false,
    }
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_bits() {
        // CAP_DAC_READ_SEARCH (2) and CAP_SYS_PTRACE (19) only.
        let p = Privileges::from_status(1000, "Name:\tx\nCapEff:\t0000000000080004\n");
        assert!(p.cap_dac_read_search && p.cap_sys_ptrace);
        assert!(!p.cap_sys_admin);
        assert!(p.can_read_all_fd_tables());
        assert!(!p.can_load_tracing_bpf());
        // CAP_PERFMON (38) + CAP_BPF (39), without CAP_SYS_ADMIN.
        let bpf = Privileges::from_status(1000, "CapEff:\t000000c000000000\n");
        assert!(bpf.cap_bpf && bpf.cap_perfmon && !bpf.cap_sys_admin);
        assert!(bpf.can_load_tracing_bpf());
        let only_bpf = Privileges::from_status(1000, "CapEff:\t0000008000000000\n");
        assert!(!only_bpf.can_load_tracing_bpf());
        let none = Privileges::from_status(0, "CapEff:\tzz\n");
        assert_eq!(
            none,
            Privileges {
                euid: 0,
                ..Default::default()
            }
        );
    }

    #[test]
    fn a_denial_names_the_missing_capability_or_is_guarded() {
        let none = Privileges::from_status(65534, "CapEff:\t0000000000000000\n");
        let d = none.classify_denial(ProcAccess::FdTable);
        assert_eq!(d.cause, PartialCause::MissingCapability);
        assert_eq!(
            d.fix.as_deref(),
            Some("run as root or grant CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH")
        );
        // CAP_DAC_READ_SEARCH alone opens the directory; the links still
        // need CAP_SYS_PTRACE, and only that is named.
        let dac = Privileges::from_status(65534, "CapEff:\t0000000000000004\n");
        let d = dac.classify_denial(ProcAccess::FdTable);
        assert_eq!(d.cause, PartialCause::MissingCapability);
        assert_eq!(
            d.fix.as_deref(),
            Some("run as root or grant CAP_SYS_PTRACE")
        );
        assert_eq!(d.reason, "permission denied (no CAP_SYS_PTRACE)");
        // A namespace link needs CAP_SYS_PTRACE only: held, so guarded.
        let ptrace = Privileges::from_status(65534, "CapEff:\t0000000000080000\n");
        assert_eq!(
            ptrace.classify_denial(ProcAccess::Namespace).cause,
            PartialCause::Guarded
        );
        let d = ptrace.classify_denial(ProcAccess::FdTable);
        assert_eq!(
            d.fix.as_deref(),
            Some("run as root or grant CAP_DAC_READ_SEARCH")
        );
        // Both held and still refused: a guard, no fix, the modules named.
        let both = Privileges::from_status(0, "CapEff:\t0000000000080004\n");
        let d = both.classify_denial(ProcAccess::FdTable);
        assert_eq!(d.cause, PartialCause::Guarded);
        assert_eq!(d.fix, None);
        assert!(d.reason.contains("Landlock"), "{}", d.reason);
        let d = both.classify_denial(ProcAccess::FdDuplicate);
        assert!(d.reason.contains("Yama"), "{}", d.reason);
        // In a user namespace the capabilities stop at its boundary.
        let inner = Privileges {
            in_child_user_ns: true,
            ..both
        };
        let d = inner.classify_denial(ProcAccess::FdTable);
        assert_eq!(d.cause, PartialCause::Guarded);
        assert!(d.reason.contains("user namespace"), "{}", d.reason);
    }

    #[test]
    fn setcap_names_exactly_the_capabilities_of_the_features() {
        // fd tables, other namespaces, the eBPF fd table and state tracker;
        // sockleak kills no socket, so no CAP_NET_ADMIN.
        let caps = SETCAP_FIX
            .strip_prefix("setcap ")
            .and_then(|s| s.split_once("+ep"))
            .map(|(c, _)| c)
            .expect("setcap CAPS+ep");
        let mut caps: Vec<&str> = caps.split(',').collect();
        caps.sort_unstable();
        assert_eq!(
            caps,
            vec![
                "cap_bpf",
                "cap_dac_read_search",
                "cap_perfmon",
                "cap_sys_admin",
                "cap_sys_ptrace"
            ]
        );
    }
}
