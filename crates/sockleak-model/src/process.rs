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

/// Joins a command's arguments into one line as `ps` shows it, but
/// losslessly: when there are several arguments, one holding whitespace or a
/// quote is single-quoted as a shell would (`--password 'my secret'`), so
/// [`split_args`] gives the arguments back and redaction can hide a whole
/// value. A single argument (a title set with setproctitle, "nginx: worker
/// process") is kept as it is.
pub fn join_args<S: AsRef<str>>(args: &[S]) -> String {
    if args.len() == 1 {
        return args[0].as_ref().to_string();
    }
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        let a = a.as_ref();
        if i > 0 {
            out.push(' ');
        }
        let plain = !a.is_empty()
            && !a
                .chars()
                .any(|c| c.is_whitespace() || c == '\'' || c == '"' || c == '\\');
        if plain {
            out.push_str(a);
        } else {
            out.push('\'');
            out.push_str(&a.replace('\'', "'\\''"));
            out.push('\'');
        }
    }
    out
}

/// The arguments of a line made by [`join_args`]: split at spaces outside
/// single quotes, `'\''` being a quote inside a quoted argument.
pub fn split_args(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_arg = false;
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' if quoted => quoted = false,
            '\'' => {
                quoted = true;
                in_arg = true;
            }
            '\\' if !quoted && chars.peek() == Some(&'\'') => {
                cur.push('\'');
                chars.next();
            }
            ' ' if !quoted => {
                if in_arg {
                    out.push(std::mem::take(&mut cur));
                    in_arg = false;
                }
            }
            c => {
                cur.push(c);
                in_arg = true;
            }
        }
    }
    if in_arg {
        out.push(cur);
    }
    out
}

/// One process. Its identity is (pid, start_time): pids are reused.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    /// Start time in clock ticks after boot (field 22 of /proc/PID/stat).
    pub start_time: u64,
    pub comm: String,
    /// Arguments joined by spaces ([`join_args`]: an argument with spaces
    /// or quotes is single-quoted when there are several). May hold
    /// secrets: redact before it leaves the host.
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
    fn args_join_losslessly_and_split_back() {
        let cases: &[&[&str]] = &[
            &["app", "--password", "my secret", "-v"],
            &["a", "it's", "\"q\"", "", "x\\y"],
            &["nginx: worker process"],
            &["/bin/sleep", "100"],
        ];
        for args in cases {
            let line = join_args(args);
            if args.len() > 1 {
                assert_eq!(split_args(&line), *args, "{line}");
            }
        }
        assert_eq!(join_args(&["app", "my secret"]), "app 'my secret'");
        assert_eq!(join_args(&["/bin/sleep", "100"]), "/bin/sleep 100");
        assert_eq!(
            join_args(&["nginx: worker process"]),
            "nginx: worker process"
        );
    }

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
