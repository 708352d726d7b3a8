//! Allocation-free wrappers over the `*at()` syscalls the /proc walk is made of.
//!
//! Everything below a `/proc/PID` directory is reached relative to an open
//! directory fd (`openat`, `readlinkat`, `fstatat`), so the kernel resolves one
//! path component per call instead of re-walking `/proc/PID/...` each time, and
//! no `PathBuf`/`String` is built per file or per fd.

use std::ffi::{CStr, CString};
use std::io;
use std::ops::ControlFlow;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `PROC_SUPER_MAGIC` from include/uapi/linux/magic.h: `f_type` of a procfs
/// mount. Used to tell the real /proc from a fixture tree.
pub(crate) const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// Flags for every directory we open: read-only, must be a directory, never
/// leaked into a child the caller might spawn.
const DIR_FLAGS: libc::c_int = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;

/// Size of a `getdents64` buffer: 32 KiB holds ~1000 fd entries, so a
/// 20k-fd table takes ~20 syscalls.
pub(crate) const DENTS_BUF_LEN: usize = 32 * 1024;

/// `PATH_MAX` (include/uapi/linux/limits.h): no link target is longer.
pub(crate) const LINK_BUF_LEN: usize = 4096;

/// Turns a negative syscall return into the thread's `errno`.
fn check(ret: libc::c_int) -> io::Result<RawFd> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// An open directory, closed on drop.
#[derive(Debug)]
pub(crate) struct Dir {
    fd: OwnedFd,
}

impl Dir {
    /// Opens `path` as a directory.
    pub(crate) fn open(path: &Path) -> io::Result<Dir> {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
        let fd = check(unsafe { libc::open(c.as_ptr(), DIR_FLAGS) })?;
        Ok(Dir::from_raw(fd))
    }

    fn from_raw(fd: RawFd) -> Dir {
        // SAFETY: `fd` was just returned by a successful open/openat and is
        // owned by nobody else.
        Dir {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        }
    }

    fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Opens the subdirectory `name`.
    pub(crate) fn open_dir_at(&self, name: &CStr) -> io::Result<Dir> {
        // SAFETY: `name` is NUL-terminated and outlives the call; `self.fd` is open.
        let fd = check(unsafe { libc::openat(self.raw(), name.as_ptr(), DIR_FLAGS) })?;
        Ok(Dir::from_raw(fd))
    }

    /// Reads the whole file `name` into `buf` (cleared first), reusing its
    /// allocation.
    pub(crate) fn read_file_at(&self, name: &CStr, buf: &mut Vec<u8>) -> io::Result<()> {
        buf.clear();
        // SAFETY: as in `open_dir_at`.
        let fd = check(unsafe {
            libc::openat(self.raw(), name.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC)
        })?;
        // SAFETY: `fd` was just opened and is owned by nobody else.
        let file = unsafe { OwnedFd::from_raw_fd(fd) };
        loop {
            if buf.capacity() - buf.len() < 512 {
                buf.reserve(buf.capacity().max(4096));
            }
            let spare = buf.capacity() - buf.len();
            // SAFETY: the kernel writes at most `spare` bytes, all inside the
            // vector's allocated but unused capacity.
            let n = unsafe {
                libc::read(
                    file.as_raw_fd(),
                    buf.as_mut_ptr().add(buf.len()).cast(),
                    spare,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let n = n as usize; // non-negative, checked above
            if n == 0 {
                break;
            }
            // SAFETY: the kernel initialised exactly `n <= spare` more bytes.
            unsafe { buf.set_len(buf.len() + n) };
            // A short read is EOF for regular files and for the /proc files we
            // read (seq_file and cmdline reads fill the buffer while data is
            // left), which saves one read() per file: ~40k syscalls on 10k
            // processes.
            if n < spare {
                break;
            }
        }
        Ok(())
    }

    /// Reads the target of the symlink `name` into `buf`; returns its length.
    /// A target longer than `buf` is truncated (callers only look at prefixes).
    pub(crate) fn readlink_at(&self, name: &CStr, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `name` is NUL-terminated; the kernel writes at most
        // `buf.len()` bytes into `buf` and never a NUL terminator.
        let n = unsafe {
            libc::readlinkat(
                self.raw(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// `fstatat(self, name)`, following a final symlink.
    pub(crate) fn stat_at(&self, name: &CStr) -> io::Result<libc::stat> {
        // SAFETY: all-zero bytes are a valid `struct stat` (plain integers).
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `name` is NUL-terminated, `st` is a valid out-pointer.
        check(unsafe { libc::fstatat(self.raw(), name.as_ptr(), &mut st, 0) })?;
        Ok(st)
    }

    /// `fstat` of the directory itself.
    pub(crate) fn stat_self(&self) -> io::Result<libc::stat> {
        // SAFETY: all-zero bytes are a valid `struct stat`.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `self.fd` is open and `st` a valid out-pointer.
        check(unsafe { libc::fstat(self.raw(), &mut st) })?;
        Ok(st)
    }

    /// The filesystem type (`statfs.f_type`) of the directory.
    pub(crate) fn fs_type(&self) -> io::Result<i64> {
        // SAFETY: all-zero bytes are a valid `struct statfs`.
        let mut sfs: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: `self.fd` is open and `sfs` a valid out-pointer.
        check(unsafe { libc::fstatfs(self.raw(), &mut sfs) })?;
        #[allow(clippy::unnecessary_cast)] // f_type's width differs per libc/arch
        Ok(sfs.f_type as i64)
    }

    /// Calls `f` with the name of every entry (including `.` and `..`) until
    /// it breaks. `buf` is the reused `getdents64` buffer. Reads from the
    /// directory's current offset, so call it once per opened `Dir`.
    pub(crate) fn for_each_entry(
        &self,
        buf: &mut [u8],
        mut f: impl FnMut(&CStr) -> ControlFlow<()>,
    ) -> io::Result<()> {
        loop {
            // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
            let n = unsafe {
                libc::syscall(
                    libc::SYS_getdents64,
                    self.raw(),
                    buf.as_mut_ptr(),
                    buf.len(),
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Ok(());
            }
            let filled = buf.get(..n as usize).unwrap_or(&[]);
            if let ControlFlow::Break(()) = for_each_dirent(filled, &mut f) {
                return Ok(());
            }
        }
    }
}

/// Walks the `struct linux_dirent64` records (include/linux/dirent.h:
/// `u64 d_ino; s64 d_off; u16 d_reclen; u8 d_type; char d_name[]`, so the
/// record length sits at offset 16 and the NUL-terminated name at 19) of one
/// `getdents64` result. Malformed records end the walk instead of panicking.
fn for_each_dirent(
    mut recs: &[u8],
    f: &mut impl FnMut(&CStr) -> ControlFlow<()>,
) -> ControlFlow<()> {
    const RECLEN_AT: usize = 16;
    const NAME_AT: usize = 19;
    while recs.len() > NAME_AT {
        let reclen = usize::from(u16::from_ne_bytes([recs[RECLEN_AT], recs[RECLEN_AT + 1]]));
        let Some(rec) = recs.get(..reclen).filter(|_| reclen > NAME_AT) else {
            return ControlFlow::Continue(());
        };
        if let Some(name) = rec
            .get(NAME_AT..)
            .and_then(|n| CStr::from_bytes_until_nul(n).ok())
        {
            f(name)?;
        }
        recs = &recs[reclen..];
    }
    ControlFlow::Continue(())
}

/// A decimal number as a NUL-terminated name (`/proc/<pid>`), on the stack.
pub(crate) struct NumName {
    buf: [u8; 21], // u64::MAX has 20 digits, plus the NUL
    start: usize,
}

impl NumName {
    pub(crate) fn new(mut n: u64) -> NumName {
        let mut buf = [0u8; 21];
        let mut start = 20; // buf[20] stays the NUL
        loop {
            start -= 1;
            buf[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        NumName { buf, start }
    }

    pub(crate) fn as_cstr(&self) -> &CStr {
        // The buffer always holds digits followed by exactly one NUL, so this
        // never falls back to the empty default.
        CStr::from_bytes_with_nul(&self.buf[self.start..]).unwrap_or_default()
    }
}

/// Parses an unsigned decimal number (no sign, no spaces, no overflow).
pub(crate) fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(n)
}

/// [`parse_u64`] narrowed to `u32`.
pub(crate) fn parse_u32(b: &[u8]) -> Option<u32> {
    parse_u64(b).and_then(|n| u32::try_from(n).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn num_names() {
        assert_eq!(NumName::new(0).as_cstr().to_bytes(), b"0");
        assert_eq!(NumName::new(4_194_304).as_cstr().to_bytes(), b"4194304");
        assert_eq!(
            NumName::new(u64::MAX).as_cstr().to_bytes(),
            u64::MAX.to_string().as_bytes()
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u64(b"12345"), Some(12345));
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"-1"), None);
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u32(b"4294967296"), None);
        assert_eq!(parse_u32(b"4294967295"), Some(u32::MAX));
    }

    #[test]
    fn malformed_dirents_do_not_panic() {
        let mut seen = 0;
        let mut f = |_: &CStr| {
            seen += 1;
            ControlFlow::Continue(())
        };
        // reclen 0, reclen past the end, no NUL in the name.
        let mut rec = [0u8; 24];
        assert!(for_each_dirent(&rec, &mut f).is_continue());
        rec[16] = 200;
        assert!(for_each_dirent(&rec, &mut f).is_continue());
        rec[16] = 24;
        rec[19..].copy_from_slice(b"abcde");
        assert!(for_each_dirent(&rec, &mut f).is_continue());
        rec[23] = 0;
        assert!(for_each_dirent(&rec, &mut f).is_continue());
        assert_eq!(seen, 1);
    }

    #[test]
    fn reads_files_longer_than_the_buffer() {
        let dir = std::env::temp_dir().join(format!("sockleak-dirfd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let content: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.join("big"), &content).expect("write");
        let d = Dir::open(&dir).expect("open");
        // A small, partly filled buffer must still come back with all of it.
        let mut buf = Vec::with_capacity(16);
        buf.extend_from_slice(b"stale");
        d.read_file_at(c"big", &mut buf).expect("read");
        assert_eq!(buf, content);
        d.read_file_at(c"big", &mut buf).expect("reread");
        assert_eq!(buf, content);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn lists_a_real_directory() {
        let dir = Dir::open(Path::new("/proc/self")).expect("open /proc/self");
        let mut buf = vec![0u8; 1024];
        let mut names = Vec::new();
        dir.for_each_entry(&mut buf, |n| {
            names.push(n.to_bytes().to_vec());
            ControlFlow::Continue(())
        })
        .expect("getdents64");
        assert!(names.iter().any(|n| n == b"fd"));
        assert!(names.iter().any(|n| n == b"stat"));
        assert_eq!(dir.fs_type().expect("fstatfs"), PROC_SUPER_MAGIC);
    }
}
