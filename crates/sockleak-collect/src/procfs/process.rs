//! Parsers for the small per-process files: `stat`, `status`, `limits`, `cmdline`.
//!
//! They take raw bytes (what `read()` returned), never panic on any input
//! (a proptest pins that) and allocate only the strings a `Process` keeps.

use super::dirfd::{parse_u32, parse_u64};

/// Why a per-process file could not be understood. The text becomes the
/// `reason` of a `Malformed` partial note, so it names the file and the gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("stat: no \"(comm)\" field")]
    NoComm,
    #[error("stat: bad or missing {0} field")]
    StatField(&'static str),
    #[error("limits: no valid \"Max open files\" line")]
    NoOpenFilesLimit,
}

/// The fields of `/proc/PID/stat` sockleak uses (proc_pid_stat(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatFields {
    /// Field 1.
    pub pid: u32,
    /// Field 2, without the parentheses.
    pub comm: String,
    /// Field 3: R, S, D, Z, T, t, X, I...
    pub state: u8,
    /// Field 4.
    pub ppid: u32,
    /// Field 22, clock ticks after boot.
    pub start_time: u64,
}

/// Parses `/proc/PID/stat`. The comm (field 2) may itself hold spaces and
/// parentheses, so it spans from the first `(` to the LAST `)`, and fields
/// 3.. are counted after that last `)`.
pub fn parse_stat(buf: &[u8]) -> Result<StatFields, ParseError> {
    let open = buf
        .iter()
        .position(|&b| b == b'(')
        .ok_or(ParseError::NoComm)?;
    let close = buf
        .iter()
        .rposition(|&b| b == b')')
        .filter(|&c| c > open)
        .ok_or(ParseError::NoComm)?;
    let pid = parse_u32(trim_ascii(&buf[..open])).ok_or(ParseError::StatField("pid"))?;
    let comm = String::from_utf8_lossy(&buf[open + 1..close]).into_owned();
    // Field 3 is the first one after the comm.
    let mut rest = buf[close + 1..]
        .split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty());
    let state = match rest.next() {
        Some([s]) => *s,
        _ => return Err(ParseError::StatField("state")),
    };
    let ppid = rest
        .next()
        .and_then(parse_u32)
        .ok_or(ParseError::StatField("ppid"))?;
    // Fields 5..=21 lie between ppid and starttime (22): skip 17.
    let start_time = rest
        .nth(17)
        .and_then(parse_u64)
        .ok_or(ParseError::StatField("starttime"))?;
    Ok(StatFields {
        pid,
        comm,
        state,
        ppid,
        start_time,
    })
}

/// The lines of `/proc/PID/status` sockleak uses. A missing or unparsable
/// line is `None`; the caller decides whether that is worth a note.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatusFields {
    /// Real uid: the first value of `Uid:` (real, effective, saved, fs).
    pub uid: Option<u32>,
    /// The pid in the innermost pid namespace: the last value of `NSpid:`.
    pub ns_pid: Option<u32>,
}

/// Parses `/proc/PID/status`.
pub fn parse_status(buf: &[u8]) -> StatusFields {
    let mut out = StatusFields::default();
    for line in buf.split(|&b| b == b'\n') {
        if let Some(v) = line.strip_prefix(b"Uid:") {
            out.uid = fields(v).next().and_then(parse_u32);
        } else if let Some(v) = line.strip_prefix(b"NSpid:") {
            out.ns_pid = fields(v).last().and_then(parse_u32);
        }
        if out.uid.is_some() && out.ns_pid.is_some() {
            break;
        }
    }
    out
}

/// RLIMIT_NOFILE as `/proc/PID/limits` shows it; `None` is "unlimited".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FdLimits {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

/// Parses the "Max open files" line of `/proc/PID/limits`
/// (`Max open files            1024                 524288               files`).
pub fn parse_limits(buf: &[u8]) -> Result<FdLimits, ParseError> {
    const LABEL: &[u8] = b"Max open files";
    let line = buf
        .split(|&b| b == b'\n')
        .find_map(|l| l.strip_prefix(LABEL))
        .ok_or(ParseError::NoOpenFilesLimit)?;
    let mut vals = fields(line);
    let limit = |v: Option<&[u8]>| match v {
        Some(b"unlimited") => Ok(None),
        Some(n) => parse_u64(n).map(Some).ok_or(ParseError::NoOpenFilesLimit),
        None => Err(ParseError::NoOpenFilesLimit),
    };
    let soft = limit(vals.next())?;
    let hard = limit(vals.next())?;
    Ok(FdLimits { soft, hard })
}

/// Turns `/proc/PID/cmdline` (NUL-separated arguments) into one line joined by
/// spaces. Trailing NULs are dropped: the kernel ends the last argument with
/// one, and programs that rewrite their title (setproctitle) pad with more.
/// Kernel threads and zombies have an empty cmdline.
pub fn cmdline_to_string(buf: &[u8]) -> String {
    let end = buf.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let s = String::from_utf8_lossy(&buf[..end]);
    if !s.contains('\0') {
        return s.into_owned();
    }
    // Arguments with spaces are quoted so redaction can hide a whole value
    // (sockleak_model::process::join_args). A title padded with NULs
    // (setproctitle) is one argument followed by empty ones.
    let args: Vec<&str> = s.split('\0').collect();
    if args.iter().skip(1).all(|a| a.is_empty()) {
        return args[0].to_string();
    }
    sockleak_model::process::join_args(&args)
}

fn fields(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty())
}

fn trim_ascii(mut b: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = b {
        if !first.is_ascii_whitespace() {
            break;
        }
        b = rest;
    }
    while let [rest @ .., last] = b {
        if !last.is_ascii_whitespace() {
            break;
        }
        b = rest;
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &[u8] = b"4242 (we(i)rd ) name)) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
        5 3 0 0 20 0 1 0 987654 12345678 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0\n";

    #[test]
    fn stat_with_parens_and_spaces_in_comm() {
        let s = parse_stat(STAT).expect("valid stat");
        assert_eq!(s.pid, 4242);
        assert_eq!(s.comm, "we(i)rd ) name)");
        assert_eq!(s.state, b'S');
        assert_eq!(s.ppid, 1);
        assert_eq!(s.start_time, 987654);
    }

    #[test]
    fn stat_errors() {
        assert_eq!(parse_stat(b"1 no comm S 0"), Err(ParseError::NoComm));
        assert_eq!(parse_stat(b") 1 (x"), Err(ParseError::NoComm));
        assert_eq!(
            parse_stat(b"1 (x) S 0 1 2"),
            Err(ParseError::StatField("starttime"))
        );
        assert_eq!(parse_stat(b"x (x) S 0"), Err(ParseError::StatField("pid")));
        assert_eq!(
            parse_stat(b"1 (x) SS 0"),
            Err(ParseError::StatField("state"))
        );
    }

    #[test]
    fn status_uid_and_nspid() {
        let st = parse_status(b"Name:\tx\nUid:\t1000\t1001\t1002\t1003\nNSpid:\t77\t5\t1\n");
        assert_eq!(st.uid, Some(1000));
        assert_eq!(st.ns_pid, Some(1));
        assert_eq!(parse_status(b"garbage"), StatusFields::default());
    }

    #[test]
    fn limits() {
        let l = b"Limit                     Soft Limit           Hard Limit           Units     \n\
Max open files            1024                 524288               files     \n";
        assert_eq!(
            parse_limits(l),
            Ok(FdLimits {
                soft: Some(1024),
                hard: Some(524288)
            })
        );
        assert_eq!(
            parse_limits(b"Max open files  unlimited  unlimited  files\n"),
            Ok(FdLimits::default())
        );
        assert_eq!(
            parse_limits(b"Max open files  lots  unlimited\n"),
            Err(ParseError::NoOpenFilesLimit)
        );
        assert_eq!(parse_limits(b""), Err(ParseError::NoOpenFilesLimit));
    }

    #[test]
    fn cmdlines() {
        assert_eq!(
            cmdline_to_string(b"/bin/sleep\x00100\x00"),
            "/bin/sleep 100"
        );
        assert_eq!(
            cmdline_to_string(b"nginx: worker\x00\x00\x00"),
            "nginx: worker"
        );
        assert_eq!(cmdline_to_string(b""), "");
        assert_eq!(
            cmdline_to_string(b"redis-cli\x00-a\x00my secret\x00"),
            "redis-cli -a 'my secret'"
        );
        assert_eq!(cmdline_to_string(b"\x00\x00"), "");
    }
}
