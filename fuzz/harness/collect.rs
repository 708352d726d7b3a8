//! The bodies of the fuzz targets for sockleak-collect's parsers of kernel
//! data: sock_diag datagrams, tcp_info, /proc files, /proc/net/tcp, BTF
//! minimizing and the eBPF programs' records.
//!
//! Plain functions of the input bytes, shared by the fuzz targets
//! (fuzz_targets/*.rs) and by the corpus replay test
//! (crates/sockleak-collect/tests/fuzz_corpus.rs), so CI replays exactly
//! what is fuzzed. Each returns normally for any input: a panic (including
//! a failed assertion of the invariants below) is a finding.

use rustc_hash::FxHashSet;
use sockleak_collect::bpf::btf_min::{self, KEPT_FUNCS, KEPT_STRUCTS};
use sockleak_collect::bpf::changes::{decode_change, CHANGE_LEN};
use sockleak_collect::bpf::FdTable;
use sockleak_collect::diag::{self, DumpStats};
use sockleak_collect::{context, privileges, procfs};
use sockleak_model::Family;
use std::io::Read;

/// One received sock_diag datagram. Invariants: every row is counted once;
/// decoding the same bytes again with the same cookie set adds nothing.
pub fn diag_batch(data: &[u8]) {
    let mut out = Vec::new();
    let mut seen = FxHashSet::default();
    let mut stats = DumpStats::default();
    let first = diag::decode_batch(data, 1, &mut out, &mut seen, &mut stats);
    assert_eq!(stats.rows as usize, out.len(), "rows counted as decoded");
    let mut again = Vec::new();
    let mut stats2 = DumpStats::default();
    let second = diag::decode_batch(data, 1, &mut again, &mut seen, &mut stats2);
    assert!(again.is_empty(), "the same rows twice are duplicates");
    assert_eq!(first.is_ok(), second.is_ok(), "decoding is deterministic");
}

/// A `struct tcp_info` of any length (old kernels send a shorter one).
pub fn tcp_info(data: &[u8]) {
    let whole = diag::decode_tcp_info(data);
    // The fields read end at TCP_INFO_FIELDS_END: bytes past it change
    // nothing.
    if data.len() > diag::tcp_info::TCP_INFO_FIELDS_END {
        let cut = diag::decode_tcp_info(&data[..diag::tcp_info::TCP_INFO_FIELDS_END]);
        assert_eq!(format!("{whole:?}"), format!("{cut:?}"));
    }
}

/// Any /proc file sockleak parses, each parser given the same bytes:
/// stat, status, limits, cmdline, an fd link target, mountinfo (hidepid),
/// sockstat, netstat (TcpExt), the port-range sysctls, and the capability
/// lines of /proc/self/status.
pub fn procfs(data: &[u8]) {
    if let Ok(stat) = procfs::parse_stat(data) {
        // Lossy UTF-8: one byte may become a 3-byte U+FFFD, never more
        // than one character.
        assert!(stat.comm.chars().count() <= data.len());
    }
    let _ = procfs::parse_status(data);
    if let Ok(l) = procfs::parse_limits(data) {
        let _ = (l.soft, l.hard);
    }
    let line = procfs::cmdline_to_string(data);
    assert!(
        !line.contains('\0'),
        "arguments are joined, never NUL-separated"
    );
    let _ = procfs::parse_socket_inode(data);
    // The text files are read with read_to_string: UTF-8 or an I/O error.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = procfs::hidepid::hidepid(text, "/proc");
        let _ = context::parse_sockstat(text);
        let _ = context::parse_tcpext(text);
        if let Some(r) = context::parse_port_range(text) {
            let _ = r;
        }
        let _ = context::parse_reserved_ports(text);
        let p = privileges::Privileges::from_status(1000, text);
        let _ = p.can_read_all_fd_tables();
    }
}

/// The text of /proc/net/tcp or tcp6. Invariant: every row is counted.
pub fn proc_net_tcp(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for family in [Family::Inet, Family::Inet6] {
        let mut out = Vec::new();
        let mut stats = DumpStats::default();
        diag::parse_proc_net_tcp(text, family, 7, &mut out, &mut stats);
        assert_eq!(stats.rows as usize, out.len());
        assert!(out.iter().all(|s| s.netns == 7));
    }
}

/// A BTF blob, cut down to what the fd-table program needs. Invariants:
/// the result is no larger than the header and sections it came from, and
/// is itself valid input (minimizing it again succeeds).
pub fn btf_min(data: &[u8]) {
    let Ok(min) = btf_min::minimize(data, KEPT_STRUCTS, KEPT_FUNCS) else {
        return;
    };
    let u32_at = |at: usize| {
        data.get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, |b| u32::from_ne_bytes(b) as usize)
    };
    // hdr_len + type_len + str_len.
    let bound = u32_at(4) + u32_at(12) + u32_at(20);
    assert!(min.len() <= bound, "{} > {bound}", min.len());
    if let Err(e) = btf_min::minimize(&min, KEPT_STRUCTS, KEPT_FUNCS) {
        panic!("the minimized blob does not minimize again: {e}");
    }
}

/// A reader that hands out at most `chunk` bytes per read, as the iterator
/// fd does with a small buffer: records split across reads.
struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.chunk.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// The eBPF programs' output: the fd-table iterator's stream of records
/// (the first byte says how many bytes each read returns) and the state
/// tracker's map values. Invariants: the table does not depend on how the
/// stream was split; processes are sorted and unique.
pub fn bpf_records(data: &[u8]) {
    let (chunk, rest) = match data.split_first() {
        Some((c, r)) => (usize::from(*c).max(1), r),
        None => (1, data),
    };
    let split = FdTable::from_iterator_output(Chunked { data: rest, chunk });
    let whole = FdTable::from_iterator_output(rest);
    match (&split, &whole) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b, "the table depends on how reads split it");
            assert!(a.processes.windows(2).all(|w| w[0].pid < w[1].pid));
        }
        (Err(_), Err(_)) => {}
        _ => panic!("split {split:?} vs whole {whole:?}"),
    }
    for (i, v) in rest.chunks_exact(CHANGE_LEN).enumerate() {
        if let Ok(v) = <&[u8; CHANGE_LEN]>::try_from(v) {
            let _ = decode_change(i as u64, v);
        }
    }
}
