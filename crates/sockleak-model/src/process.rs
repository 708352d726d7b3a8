//! A process as sockleak sees it: identity, descriptors and limits.

use serde::Serialize;

/// What an fd refers to, from its `/proc/PID/fd/N` link target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FdKind {
    /// `socket:[ino]` (any protocol).
    Socket,
    /// `pipe:[ino]`.
    Pipe,
    /// A path: regular file, directory, device, memfd.
    File,
    /// `anon_inode:[eventfd]`, `anon_inode:[eventpoll]`, timerfd, signalfd...
    Anon,
    /// Anything else (e.g. `net:[...]`, `mnt:[...]` namespace fds).
    Other,
}

impl FdKind {
    /// Classifies a `/proc/PID/fd/N` link target.
    pub fn classify(target: &[u8]) -> FdKind {
        if target.starts_with(b"socket:[") {
            FdKind::Socket
        } else if target.starts_with(b"pipe:[") {
            FdKind::Pipe
        } else if target.starts_with(b"anon_inode:") {
            FdKind::Anon
        } else if target.starts_with(b"/") {
            FdKind::File
        } else {
            FdKind::Other
        }
    }
}

/// Open descriptors of a process by kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize)]
pub struct FdKinds {
    pub socket: u32,
    pub pipe: u32,
    pub file: u32,
    pub anon: u32,
    pub other: u32,
}

impl FdKinds {
    pub fn add(&mut self, kind: FdKind) {
        match kind {
            FdKind::Socket => self.socket += 1,
            FdKind::Pipe => self.pipe += 1,
            FdKind::File => self.file += 1,
            FdKind::Anon => self.anon += 1,
            FdKind::Other => self.other += 1,
        }
    }

    pub fn get(&self, kind: FdKind) -> u32 {
        match kind {
            FdKind::Socket => self.socket,
            FdKind::Pipe => self.pipe,
            FdKind::File => self.file,
            FdKind::Anon => self.anon,
            FdKind::Other => self.other,
        }
    }

    pub fn total(&self) -> u32 {
        self.socket + self.pipe + self.file + self.anon + self.other
    }
}

/// One process. Its identity is (pid, start_time): pids are reused.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    /// Start time in clock ticks after boot (field 22 of /proc/PID/stat).
    pub start_time: u64,
    pub comm: String,
    /// Arguments joined by spaces. May hold secrets: redact before it leaves
    /// the host.
    pub cmdline: String,
    pub uid: u32,
    /// Network namespace (nsfs inode); 0 when it could not be read.
    pub netns: u64,
    /// The pid as seen inside the process's own pid namespace, when it differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ns_pid: Option<u32>,
    /// Number of open fds; `None` when the fd table could not be read.
    pub fd_count: Option<u32>,
    /// Soft RLIMIT_NOFILE; `None` for unlimited or unreadable.
    pub fd_limit: Option<u64>,
    /// Hard RLIMIT_NOFILE.
    pub fd_limit_hard: Option<u64>,
    /// Kinds of the open fds; `None` when the fd table could not be read.
    pub fds: Option<FdKinds>,
    /// TCP socket fds that are in no TCP table: reset or aborted connections
    /// the process never closed. `None` when not determined (fd table
    /// unreadable, or a state filter restricted the dump).
    pub closed_but_held: Option<u32>,
}

impl Process {
    /// Fraction of the soft fd limit in use, if both are known.
    pub fn fd_use_ratio(&self) -> Option<f64> {
        match (self.fd_count, self.fd_limit) {
            (Some(n), Some(l)) if l > 0 => Some(f64::from(n) / l as f64),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_link_targets() {
        assert_eq!(FdKind::classify(b"socket:[123]"), FdKind::Socket);
        assert_eq!(FdKind::classify(b"pipe:[9]"), FdKind::Pipe);
        assert_eq!(FdKind::classify(b"anon_inode:[eventpoll]"), FdKind::Anon);
        assert_eq!(FdKind::classify(b"/dev/null"), FdKind::File);
        assert_eq!(FdKind::classify(b"net:[4026531840]"), FdKind::Other);
        assert_eq!(FdKind::classify(b""), FdKind::Other);
    }
}
