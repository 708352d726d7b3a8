//! Shared helpers of the live tests: root checks, throwaway network
//! namespaces, child processes stopped by pid, and socket identity (inode,
//! cookie) straight from the fd.
#![allow(dead_code)] // each test binary uses a different subset

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// True when running as root; otherwise prints why the caller skips.
pub fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid(2) cannot fail and takes no arguments.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("SKIPPED {test}: needs root (CAP_SYS_ADMIN for ip netns / setns)");
    }
    root
}

/// The socket inode of an fd, from fstat (what sock_diag reports as inode).
pub fn fd_inode(fd: &impl AsRawFd) -> u64 {
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let ino = std::fs::metadata(&path).expect("stat fd").ino();
    // The fd link says the same: "socket:[INODE]".
    let link = std::fs::read_link(&path).expect("readlink fd");
    assert_eq!(link.to_string_lossy(), format!("socket:[{ino}]"));
    ino
}

/// getsockopt(SO_COOKIE): the kernel's socket cookie.
pub fn so_cookie(fd: RawFd) -> u64 {
    let mut v: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: v and len are valid for writes and sized as passed.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_COOKIE,
            (&mut v as *mut u64).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "SO_COOKIE: {}", std::io::Error::last_os_error());
    v
}

/// Runs a command to completion and panics with its stderr on failure.
pub fn run(cmd: &[&str]) -> String {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace made with `ip netns add`, loopback up, deleted on drop
/// (also when the test fails).
pub struct NetnsGuard {
    pub name: String,
}

impl NetnsGuard {
    pub fn new(prefix: &str) -> NetnsGuard {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!("{prefix}-{}-{nanos:08x}", std::process::id());
        run(&["ip", "netns", "add", &name]);
        let guard = NetnsGuard { name };
        run(&["ip", "-n", &guard.name, "link", "set", "lo", "up"]);
        guard
    }

    pub fn path(&self) -> std::path::PathBuf {
        std::path::Path::new("/run/netns").join(&self.name)
    }

    pub fn inode(&self) -> u64 {
        std::fs::metadata(self.path()).expect("stat netns").ino()
    }

    /// Deletes it now (a test of vanished namespaces).
    pub fn delete(&mut self) {
        if !self.name.is_empty() {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.name])
                .status();
            self.name.clear();
        }
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        self.delete();
    }
}

/// A child process killed by its pid (and reaped) on drop.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `ip netns exec NS python3 -c LISTENER`: a listener on 127.0.0.1
/// inside the namespace, held open until its stdin closes or it is killed.
/// Returns the guard and the port it printed.
pub fn python_listener_in(ns: &str) -> Option<(ChildGuard, u16)> {
    const SCRIPT: &str = "import socket,sys\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen(8)\nprint(s.getsockname()[1],flush=True)\nsys.stdin.read()\n";
    let child = Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn();
    let mut child = match child {
        Ok(c) => ChildGuard(c),
        Err(e) => {
            eprintln!("SKIPPED part: cannot start python3 in netns: {e}");
            return None;
        }
    };
    let stdout = child.0.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(10)).ok()?;
    let port = line.trim().parse().ok();
    if port.is_none() {
        eprintln!("SKIPPED part: python3 listener printed {line:?}");
    }
    Some((child, port?))
}

/// Polls `f` every 10 ms until it returns Some, for at most `limit`.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
