//! What this run may see, and what would fix each gap.
//!
//! [`probe`] reads the effective capabilities once; [`checks`] backs
//! `sockleak doctor`: each [`Check`] says whether a feature works here and, if
//! not, the command that would make it work. Nothing here changes the system.

use crate::procfs::Dir;
use std::ffi::CStr;
use std::ops::ControlFlow;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;

/// Capability bit numbers from include/uapi/linux/capability.h.
const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// `NETLINK_SOCK_DIAG` from include/uapi/linux/netlink.h.
const NETLINK_SOCK_DIAG: libc::c_int = 4;

/// The one command that grants everything a full scan needs without root.
pub const SETCAP_FIX: &str =
    "setcap cap_sys_ptrace,cap_dac_read_search,cap_sys_admin,cap_net_admin+ep $(which sockleak)";

/// One line of `sockleak doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    /// What was seen, in a few words.
    pub detail: String,
    /// The command or change that would make a failed check pass.
    pub fix: Option<String>,
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
    /// SOCK_DESTROY.
    pub cap_net_admin: bool,
    /// With `cap_perfmon`: load the eBPF fd-table iterator (a tracing program).
    pub cap_bpf: bool,
    pub cap_perfmon: bool,
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
            cap_net_admin: has(CAP_NET_ADMIN),
            cap_bpf: has(CAP_BPF),
            cap_perfmon: has(CAP_PERFMON),
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
    Privileges::from_status(euid, &status)
}

/// Everything `sockleak doctor` reports, in display order.
pub fn checks(proc_root: &Path) -> Vec<Check> {
    let p = probe();
    vec![
        check_root(&p),
        check_fd_tables(&p, proc_root),
        check_setns(&p),
        check_sock_diag(),
        check_bpf_fd_table(&p),
        check_state_tracker(&p),
        check_sock_destroy(&p),
        check_run_netns(Path::new("/run/netns")),
        check_pidfd_getfd(),
    ]
}

fn check_root(p: &Privileges) -> Check {
    let ok = p.euid == 0;
    Check {
        name: "running as root",
        ok,
        detail: format!("euid {}", p.euid),
        fix: (!ok).then(|| format!("run as root, or grant the capabilities: {SETCAP_FIX}")),
    }
}

fn check_fd_tables(p: &Privileges, proc_root: &Path) -> Check {
    const NAME: &str = "read other users' fd tables";
    let fix = || {
        Some(format!(
            "run as root or grant CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH: {SETCAP_FIX}"
        ))
    };
    match try_foreign_fd_table(proc_root, p.euid) {
        Some((pid, uid, Ok(()))) => Check {
            name: NAME,
            ok: true,
            detail: format!("read the fd table of pid {pid} (uid {uid})"),
            fix: None,
        },
        Some((pid, uid, Err(e))) => Check {
            name: NAME,
            ok: false,
            detail: format!("fd table of pid {pid} (uid {uid}): {e}"),
            fix: fix(),
        },
        None => {
            // Nobody else to try on: judge by capability.
            let ok = p.euid == 0 || p.can_read_all_fd_tables();
            let mut missing = Vec::new();
            if !p.cap_sys_ptrace {
                missing.push("CAP_SYS_PTRACE");
            }
            if !p.cap_dac_read_search {
                missing.push("CAP_DAC_READ_SEARCH");
            }
            let detail = if missing.is_empty() {
                "no process of another user to try; CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH held"
                    .to_string()
            } else {
                format!(
                    "no process of another user to try; missing {}",
                    missing.join(", ")
                )
            };
            Check {
                name: NAME,
                ok: ok && missing.is_empty(),
                detail,
                fix: if ok && missing.is_empty() {
                    None
                } else {
                    fix()
                },
            }
        }
    }
}

/// Finds a process whose `/proc/PID` is owned by another uid than `euid` and
/// tries to read one of its fd links. `None`: no such process.
fn try_foreign_fd_table(
    proc_root: &Path,
    euid: u32,
) -> Option<(u32, u32, Result<(), std::io::Error>)> {
    let root = Dir::open(proc_root).ok()?;
    let own = std::process::id();
    let mut found: Option<(u32, u32)> = None;
    let mut buf = vec![0u8; 16 * 1024];
    let _ = root.for_each_entry(&mut buf, |name| {
        let Some(pid) = std::str::from_utf8(name.to_bytes())
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            return ControlFlow::Continue(());
        };
        if pid == own {
            return ControlFlow::Continue(());
        }
        match root.stat_at(name) {
            Ok(st) if st.st_uid != euid => {
                found = Some((pid, st.st_uid));
                ControlFlow::Break(())
            }
            _ => ControlFlow::Continue(()),
        }
    });
    let (pid, uid) = found?;
    let result = (|| {
        let pid_name = std::ffi::CString::new(pid.to_string())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        let fd_dir = root.open_dir_at(&pid_name)?.open_dir_at(c"fd")?;
        let mut link = [0u8; 256];
        let mut first: Option<std::io::Result<usize>> = None;
        fd_dir.for_each_entry(&mut buf, |name: &CStr| {
            if name.to_bytes().first().is_some_and(u8::is_ascii_digit) {
                first = Some(fd_dir.readlink_at(name, &mut link));
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        })?;
        // An empty table opened fine: reading it worked.
        first.map_or(Ok(()), |r| r.map(|_| ()))
    })();
    Some((pid, uid, result))
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
        };
    }
    if !p.can_load_tracing_bpf() {
        return Check {
            name,
            ok: false,
            detail: format!("no CAP_BPF + CAP_PERFMON (or CAP_SYS_ADMIN): {fallback}"),
            fix: Some("run as root or grant CAP_BPF and CAP_PERFMON".to_string()),
        };
    }
    match load() {
        Ok(detail) => Check {
            name,
            ok: true,
            detail,
            fix: None,
        },
        Err(e) => Check {
            name,
            ok: false,
            detail: format!("{e}; {fallback}"),
            fix: Some(format!("{kernel}; not needed for correct results")),
        },
    }
}

fn check_sock_destroy(p: &Privileges) -> Check {
    Check {
        name: "SOCK_DESTROY (kill sockets)",
        ok: p.cap_net_admin,
        detail: if p.cap_net_admin {
            "CAP_NET_ADMIN held (the kernel also needs CONFIG_INET_DIAG_DESTROY)".to_string()
        } else {
            "CAP_NET_ADMIN missing".to_string()
        },
        fix: (!p.cap_net_admin)
            .then(|| format!("run as root or grant CAP_NET_ADMIN: {SETCAP_FIX}")),
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
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Check {
            name: NAME,
            ok: true,
            detail: format!(
                "{} absent: no `ip netns` names; namespaces of running processes are still scanned",
                dir.display()
            ),
            fix: None,
        },
        Err(e) => Check {
            name: NAME,
            ok: false,
            detail: format!("{}: {e}", dir.display()),
            fix: Some("run as root".to_string()),
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
        assert!(!p.cap_sys_admin && !p.cap_net_admin);
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
}
