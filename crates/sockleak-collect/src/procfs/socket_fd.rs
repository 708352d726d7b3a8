//! Socket fds: who holds which socket inode, its protocol, and the TCP state
//! of sockets that are in no sock_diag table.

use super::dirfd::parse_u64;
use sockleak_model::TcpState;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// One socket fd: process `pid` holds socket `inode` as descriptor `fd`.
/// The inode joins the fd table with sock_diag rows (`idiag_inode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketFd {
    pub inode: u64,
    pub pid: u32,
    pub fd: u32,
}

/// The inode of a `socket:[12345]` link target, without allocating.
pub fn parse_socket_inode(target: &[u8]) -> Option<u64> {
    target
        .strip_prefix(b"socket:[")
        .and_then(|r| r.strip_suffix(b"]"))
        .and_then(parse_u64)
}

/// The protocol name the kernel gives a socket fd: `getxattr` of
/// `system.sockprotoname` on `/proc/PID/fd/FD` (net/socket.c,
/// `sockfs_xattr_get`): "TCP", "TCPv6", "UNIX", "UDP", "NETLINK"... This is
/// how lsof names the protocol of sockets that are in no table.
pub fn socket_protocol(proc_root: &Path, pid: u32, fd: u32) -> io::Result<String> {
    let path = proc_root
        .join(pid.to_string())
        .join("fd")
        .join(fd.to_string());
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // Protocol names are short (struct proto.name is char[32]).
    let mut buf = [0u8; 64];
    // SAFETY: `c` and the attribute name are NUL-terminated; the kernel writes
    // at most `buf.len()` bytes into `buf`.
    let n = unsafe {
        libc::getxattr(
            c.as_ptr(),
            c"system.sockprotoname".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let value = buf.get(..n as usize).unwrap_or(&[]);
    // The kernel includes the terminating NUL in the value.
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    Ok(String::from_utf8_lossy(&value[..end]).into_owned())
}

/// The TCP state of fd `fd` of process `pid`, read from the socket itself.
///
/// For a socket fd that is in no sock_diag table: the fd is duplicated into
/// this process with `pidfd_open` + `pidfd_getfd` (Linux >= 5.6; needs ptrace
/// permission over `pid`: same uid or CAP_SYS_PTRACE), checked to still be the
/// socket `expected_inode` (the fd number may have been reused since the walk),
/// and asked for `TCP_INFO`, whose first byte is `tcpi_state`. The duplicate is
/// closed before returning; the target process is not disturbed.
///
/// `Ok(None)`: the fd now refers to another object, or is not a TCP socket.
/// `Err`: ESRCH (process gone), EBADF (fd closed), EPERM (no ptrace
/// permission), ENOSYS (kernel too old).
pub fn fd_tcp_state(pid: u32, fd: u32, expected_inode: u64) -> io::Result<Option<TcpState>> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    let fd = libc::c_int::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: pidfd_open(pid, flags) takes no pointers.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let pidfd = owned(pidfd)?;
    // SAFETY: pidfd_getfd(pidfd, targetfd, flags) takes no pointers; the new fd
    // has O_CLOEXEC set by the kernel.
    let dup = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    let dup = owned(dup)?;

    // SAFETY: all-zero bytes are a valid `struct stat`.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `dup` is open and `st` is a valid out-pointer.
    if unsafe { libc::fstat(dup.as_raw_fd(), &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK || st.st_ino != expected_inode {
        return Ok(None);
    }

    // struct tcp_info (include/uapi/linux/tcp.h) starts with `__u8 tcpi_state`;
    // the buffer is larger than any kernel's struct so the call never fails
    // on size, and only byte 0 is read.
    let mut info = [0u8; 512];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `info` and updates `len`.
    let rc = unsafe {
        libc::getsockopt(
            dup.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        // Not a TCP socket (UNIX, UDP, netlink...): no TCP state to report.
        return match e.raw_os_error() {
            Some(libc::EOPNOTSUPP | libc::ENOPROTOOPT | libc::EINVAL) => Ok(None),
            _ => Err(e),
        };
    }
    if len == 0 {
        return Ok(None);
    }
    Ok(TcpState::from_kernel(info[0]))
}

/// Wraps a raw fd returned by `syscall()`.
fn owned(ret: libc::c_long) -> io::Result<OwnedFd> {
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = libc::c_int::try_from(ret).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_inodes() {
        assert_eq!(parse_socket_inode(b"socket:[12345]"), Some(12345));
        assert_eq!(parse_socket_inode(b"socket:[]"), None);
        assert_eq!(parse_socket_inode(b"socket:[12"), None);
        assert_eq!(parse_socket_inode(b"pipe:[12]"), None);
        assert_eq!(parse_socket_inode(b"socket:[x1]"), None);
    }
}
