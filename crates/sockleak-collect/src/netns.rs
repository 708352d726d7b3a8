//! Network namespaces: discovering every one in use on the host and running
//! code inside one.
//!
//! A namespace is identified by the inode of its nsfs file, found with
//! `stat()` on `/proc/PID/ns/net` (following the magic link) rather than by
//! parsing `readlink` text. Named namespaces (`ip netns add`) are bind mounts
//! under `/run/netns` and may have no process at all.
//!
//! Limits: only thread-group leaders are looked at (`/proc/PID`, not
//! `/proc/PID/task/TID`); a thread that alone `setns`'d elsewhere (as
//! [`run_in`] does) keeps its namespace unseen. That costs one stat per
//! process instead of one per thread.

use crate::privileges::ProcAccess;
use sockleak_model::{add_note, merge_notes, NoteProcess, PartialKind, PartialNote};
use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One network namespace that can be entered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NsEntry {
    /// The nsfs inode (what `ip netns identify`/`lsns` show as NS).
    pub id: u64,
    /// The `ip netns` name, when one under `/run/netns` points to it.
    pub name: Option<String>,
    /// A file whose `open()` gives an fd for `setns`: `/run/netns/NAME` when
    /// named (it outlives processes), else `/proc/PID/ns/net` of a member.
    pub path: PathBuf,
    /// The namespace of the thread that ran [`discover`].
    pub is_own: bool,
}

impl NsEntry {
    /// "4026532281" or "4026532281 (name)", for messages.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("{} ({})", self.id, n),
            None => self.id.to_string(),
        }
    }
}

/// What [`discover`] found and what it could not look at.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Discovery {
    /// Own namespace first, then the others by id.
    pub entries: Vec<NsEntry>,
    pub notes: Vec<PartialNote>,
}

/// Why [`run_in`] could not run code inside a namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("enter network namespace {ns}: permission denied ({need} needed): {source}")]
    Permission {
        ns: String,
        /// The capability that would fix it.
        need: &'static str,
        source: io::Error,
    },
    #[error("enter network namespace {ns}: it vanished ({reason})")]
    Vanished { ns: String, reason: String },
    #[error("enter network namespace {ns}: {op}: {source}")]
    Io {
        ns: String,
        op: &'static str,
        source: io::Error,
    },
}

/// `st_ino` of `/proc/thread-self/ns/net`: the calling thread's namespace.
pub fn own_netns_id() -> io::Result<u64> {
    Ok(fs::metadata("/proc/thread-self/ns/net")?.ino())
}

fn is_vanished(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
}

/// Finds every distinct network namespace used by a process under
/// `proc_root` (normally `/proc`) plus the named ones under `run_netns`
/// (normally `/run/netns`). Never fails: what could not be looked at becomes
/// a note.
pub fn discover(proc_root: &Path, run_netns: &Path) -> Discovery {
    let mut d = Discovery::default();
    // The calling thread's namespace, as seen under proc_root (so a fixture
    // tree can stand in for /proc). Its device is nsfs's, which tells real
    // namespace files from stale /run/netns placeholders.
    let own = fs::metadata(proc_root.join("thread-self/ns/net"))
        .or_else(|_| fs::metadata(proc_root.join("self/ns/net")));
    let (own_id, nsfs_dev) = match &own {
        Ok(m) => (Some(m.ino()), Some(m.dev())),
        Err(e) => {
            add_note(
                &mut d.notes,
                PartialKind::Error,
                "own network namespace",
                &e.to_string(),
                None,
            );
            (None, None)
        }
    };
    let mut by_id: HashMap<u64, usize> = HashMap::new();
    // Read once: refusals are judged against it, as the /proc walk does.
    let privs = crate::privileges::probe();

    match fs::read_dir(proc_root) {
        Ok(dir) => {
            // One reused path buffer: this loop runs once per process.
            let mut path = PathBuf::with_capacity(64);
            for ent in dir.flatten() {
                let name = ent.file_name();
                let Some(pid) = name
                    .to_str()
                    .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
                else {
                    continue;
                };
                path.as_mut_os_string().clear();
                path.push(proc_root);
                path.push(pid);
                path.push("ns/net");
                match fs::metadata(&path) {
                    Ok(m) => {
                        by_id.entry(m.ino()).or_insert_with(|| {
                            d.entries.push(NsEntry {
                                id: m.ino(),
                                name: None,
                                path: path.clone(),
                                is_own: Some(m.ino()) == own_id,
                            });
                            d.entries.len() - 1
                        });
                    }
                    // The process exited meanwhile: normal churn.
                    Err(e) if is_vanished(&e) => {}
                    Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                        let denial = privs.classify_denial(ProcAccess::Namespace);
                        // comm needs no ptrace access: the refused process
                        // can still be named.
                        path.pop();
                        path.pop();
                        path.push("comm");
                        let comm = fs::read_to_string(&path).unwrap_or_default();
                        let pid = pid.parse().unwrap_or(0);
                        merge_notes(
                            &mut d.notes,
                            vec![PartialNote::denied(
                                "namespace discovery",
                                &format!(
                                    "/proc/PID/ns/net not readable, their namespaces may be \
                                     missed: {}",
                                    denial.reason
                                ),
                                denial.cause,
                                denial.fix.as_deref(),
                                NoteProcess {
                                    pid,
                                    comm: comm.trim_end().to_string(),
                                },
                            )],
                        );
                    }
                    Err(e) => add_note(
                        &mut d.notes,
                        PartialKind::Error,
                        "namespace discovery",
                        &e.to_string(),
                        None,
                    ),
                }
            }
        }
        Err(e) => add_note(
            &mut d.notes,
            PartialKind::Error,
            &format!("process list {}", proc_root.display()),
            &e.to_string(),
            None,
        ),
    }

    add_named(&mut d, &mut by_id, run_netns, nsfs_dev, own_id);

    if let Some(id) = own_id {
        if !by_id.contains_key(&id) {
            // Not listed (a fixture, or hidepid): still the first namespace.
            d.entries.push(NsEntry {
                id,
                name: None,
                path: proc_root.join("thread-self/ns/net"),
                is_own: true,
            });
        }
    }
    // Enter our own namespace through our own process rather than whichever
    // process happened to be listed first (it may exit).
    let self_path = proc_root.join("self/ns/net");
    if let Some(e) = d.entries.iter_mut().find(|e| e.is_own && e.name.is_none()) {
        if fs::metadata(&self_path).is_ok_and(|m| m.ino() == e.id) {
            e.path = self_path;
        }
    }
    d.entries.sort_by_key(|e| (!e.is_own, e.id));
    d
}

/// Attaches `ip netns` names; a name whose namespace no process uses becomes
/// an entry of its own.
fn add_named(
    d: &mut Discovery,
    by_id: &mut HashMap<u64, usize>,
    run_netns: &Path,
    nsfs_dev: Option<u64>,
    own_id: Option<u64>,
) {
    let dir = match fs::read_dir(run_netns) {
        Ok(dir) => dir,
        // No named namespaces on this host.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => {
            let fix = (e.kind() == io::ErrorKind::PermissionDenied).then_some("run as root");
            add_note(
                &mut d.notes,
                PartialKind::Error,
                &format!("named network namespaces in {}", run_netns.display()),
                &e.to_string(),
                fix,
            );
            return;
        }
    };
    // Sorted, so that a namespace with two names always gets the same one.
    let mut names: Vec<String> = dir
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let path = run_netns.join(&name);
        let m = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if is_vanished(&e) => continue,
            Err(e) => {
                let kind = if e.kind() == io::ErrorKind::PermissionDenied {
                    PartialKind::Permission
                } else {
                    PartialKind::Error
                };
                add_note(
                    &mut d.notes,
                    kind,
                    "named network namespaces",
                    &e.to_string(),
                    None,
                );
                continue;
            }
        };
        // A file left behind after its namespace was unmounted is a plain
        // tmpfs file, not on nsfs.
        if nsfs_dev.is_some_and(|dev| dev != m.dev()) {
            add_note(
                &mut d.notes,
                PartialKind::Vanished,
                "named network namespaces",
                "not a mounted namespace (stale /run/netns entry)",
                None,
            );
            continue;
        }
        match by_id.get(&m.ino()) {
            Some(&i) => {
                let e = &mut d.entries[i];
                if e.name.is_none() {
                    e.name = Some(name);
                    e.path = path;
                }
            }
            None => {
                by_id.insert(m.ino(), d.entries.len());
                d.entries.push(NsEntry {
                    id: m.ino(),
                    name: Some(name),
                    path,
                    is_own: Some(m.ino()) == own_id,
                });
            }
        }
    }
}

/// Runs `f` inside the namespace `ns` and returns its result.
///
/// The own namespace runs `f` on the current thread. Any other runs it on a
/// scoped thread that opens `ns.path`, `setns(fd, CLONE_NEWNET)`s and checks
/// that `/proc/thread-self/ns/net` is now `ns.id` (a `/run/netns` name may
/// have been re-pointed since discovery). Sockets opened in `f` stay in `ns`
/// after the thread ends. A panic in `f` is propagated.
pub fn run_in<T: Send>(ns: &NsEntry, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
    // is_own was true for the thread that ran discover(); re-check for this one.
    if ns.is_own && own_netns_id().ok() == Some(ns.id) {
        return Ok(f());
    }
    std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .name("sockleak-netns".into())
            .spawn_scoped(s, move || -> Result<T, NetnsError> {
                enter(ns)?;
                Ok(f())
            })
            .map_err(|source| NetnsError::Io {
                ns: ns.label(),
                op: "spawn thread",
                source,
            })?;
        match handle.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Moves the calling thread into `ns` and verifies it arrived.
fn enter(ns: &NsEntry) -> Result<(), NetnsError> {
    let file = fs::File::open(&ns.path).map_err(|source| {
        if is_vanished(&source) {
            NetnsError::Vanished {
                ns: ns.label(),
                reason: format!("{} is gone", ns.path.display()),
            }
        } else if matches!(
            source.raw_os_error(),
            Some(libc::EACCES) | Some(libc::EPERM)
        ) {
            NetnsError::Permission {
                ns: ns.label(),
                need: "CAP_SYS_PTRACE",
                source,
            }
        } else {
            NetnsError::Io {
                ns: ns.label(),
                op: "open",
                source,
            }
        }
    })?;
    // SAFETY: setns(2) on a descriptor we own for the duration of the call;
    // it only changes the calling thread's namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        let source = io::Error::last_os_error();
        return Err(match source.raw_os_error() {
            Some(libc::EPERM) => NetnsError::Permission {
                ns: ns.label(),
                need: "CAP_SYS_ADMIN",
                source,
            },
            // The file is no longer a network namespace (unmounted name).
            Some(libc::EINVAL) | Some(libc::ENOENT) => NetnsError::Vanished {
                ns: ns.label(),
                reason: format!("{} is no longer a network namespace", ns.path.display()),
            },
            _ => NetnsError::Io {
                ns: ns.label(),
                op: "setns",
                source,
            },
        });
    }
    match own_netns_id() {
        Ok(id) if id == ns.id => Ok(()),
        Ok(id) => Err(NetnsError::Vanished {
            ns: ns.label(),
            reason: format!("{} now leads to namespace {id}", ns.path.display()),
        }),
        Err(source) => Err(NetnsError::Io {
            ns: ns.label(),
            op: "verify /proc/thread-self/ns/net",
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake /proc: plain files stand in for nsfs files, so inodes are the
    /// fixture files' inodes and all share one device.
    #[test]
    fn fixture_tree_dedupes_names_and_orders_own_first() {
        let root =
            std::env::temp_dir().join(format!("sockleak-netns-fixture-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let proc_root = root.join("proc");
        let run = root.join("run-netns");
        let mk = |p: &Path| {
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs::write(p, b"").expect("write");
        };
        // Own namespace A: thread-self and pid 1 share it (hard link = same inode).
        mk(&proc_root.join("1/ns/net"));
        fs::create_dir_all(proc_root.join("thread-self/ns")).expect("mkdir");
        fs::hard_link(
            proc_root.join("1/ns/net"),
            proc_root.join("thread-self/ns/net"),
        )
        .expect("link");
        // Namespace B used by pids 20 and 21, named "blue".
        mk(&proc_root.join("20/ns/net"));
        fs::create_dir_all(proc_root.join("21/ns")).expect("mkdir");
        fs::hard_link(proc_root.join("20/ns/net"), proc_root.join("21/ns/net")).expect("link");
        fs::create_dir_all(&run).expect("mkdir");
        fs::hard_link(proc_root.join("20/ns/net"), run.join("blue")).expect("link");
        // A named namespace no process uses.
        mk(&run.join("empty"));
        // Not a pid, ignored.
        mk(&proc_root.join("sys/ns/net"));
        // A pid without ns/net: vanished, silently.
        fs::create_dir_all(proc_root.join("30")).expect("mkdir");

        let d = discover(&proc_root, &run);
        let id = |p: &Path| fs::metadata(p).expect("stat").ino();
        assert_eq!(d.entries.len(), 3, "{d:?}");
        assert!(d.entries[0].is_own);
        assert_eq!(d.entries[0].id, id(&proc_root.join("1/ns/net")));
        let blue = d
            .entries
            .iter()
            .find(|e| e.name.as_deref() == Some("blue"))
            .expect("blue");
        assert_eq!(blue.id, id(&proc_root.join("21/ns/net")));
        assert_eq!(blue.path, run.join("blue"));
        let empty = d
            .entries
            .iter()
            .find(|e| e.name.as_deref() == Some("empty"))
            .expect("empty");
        assert!(!empty.is_own);
        assert!(d.notes.is_empty(), "{:?}", d.notes);
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn missing_run_netns_is_not_an_error() {
        let d = discover(Path::new("/proc"), Path::new("/nonexistent/sockleak/netns"));
        assert!(d.entries.first().is_some_and(|e| e.is_own), "{d:?}");
        assert!(
            d.notes.iter().all(|n| n.kind != PartialKind::Error),
            "{:?}",
            d.notes
        );
    }

    #[test]
    fn error_messages_name_the_namespace() {
        let e = NetnsError::Permission {
            ns: "4026532281 (blue)".into(),
            need: "CAP_SYS_ADMIN",
            source: io::Error::from_raw_os_error(libc::EPERM),
        };
        assert_eq!(
            e.to_string(),
            "enter network namespace 4026532281 (blue): permission denied (CAP_SYS_ADMIN needed): Operation not permitted (os error 1)"
        );
    }
}
