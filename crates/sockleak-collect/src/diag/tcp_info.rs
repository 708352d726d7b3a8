//! Decoding `struct tcp_info` (include/uapi/linux/tcp.h) from raw
//! `INET_DIAG_INFO` bytes of any length.
//!
//! The struct only ever grows at its end, so older kernels send a prefix and
//! newer ones a longer struct. The raw bytes are copied into a zeroed buffer
//! of the size this decoder knows and read by offset: missing trailing fields
//! read as 0 (or `None` where the model distinguishes "absent"), extra trailing
//! fields are ignored. A crate that insists on an exact length would reject
//! whole rows on kernels it was not built for.

use super::abi::{u32_ne, u64_ne, u8_at};
use sockleak_model::TcpInfo;

/// Size of `struct tcp_info` as Linux 6.18 sends it (280 bytes, measured:
/// tests/diag_fixtures.rs; 6.10 uapi ends at 248 with `tcpi_total_rto_time`).
/// Only the prefix up to [`TCP_INFO_FIELDS_END`] is read; the buffer is this
/// large so that every offset of the current struct stays addressable.
pub const TCP_INFO_LEN: usize = 280;

/// Field offsets (bytes) in `struct tcp_info`. Eight `__u8` fields come first,
/// then `__u32`s; the first `__u64` (`tcpi_pacing_rate`) starts at 104, which
/// is why a 104-byte struct (Linux < 3.15) ends right after
/// `tcpi_total_retrans`.
pub mod off {
    pub const RETRANSMITS: usize = 2;
    pub const PROBES: usize = 3;
    pub const BACKOFF: usize = 4;
    pub const RTO: usize = 8;
    pub const UNACKED: usize = 24;
    pub const LOST: usize = 32;
    pub const RETRANS: usize = 36;
    pub const LAST_DATA_SENT: usize = 44;
    pub const LAST_DATA_RECV: usize = 52;
    pub const LAST_ACK_RECV: usize = 56;
    pub const RTT: usize = 68;
    pub const RTTVAR: usize = 72;
    pub const SND_CWND: usize = 80;
    pub const TOTAL_RETRANS: usize = 100;
    /// `tcpi_bytes_acked` (Linux 4.1+).
    pub const BYTES_ACKED: usize = 120;
    /// `tcpi_bytes_received` (Linux 4.1+).
    pub const BYTES_RECEIVED: usize = 128;
}

/// Bytes a struct must have for every field this decoder reads to be real:
/// the end of `tcpi_bytes_received`. Shorter structs count as `short_info`.
pub const TCP_INFO_FIELDS_END: usize = off::BYTES_RECEIVED + 8;

/// Decodes a `struct tcp_info` of any length. Never panics.
pub fn decode_tcp_info(raw: &[u8]) -> TcpInfo {
    let mut full = [0u8; TCP_INFO_LEN];
    let n = raw.len().min(TCP_INFO_LEN);
    full[..n].copy_from_slice(&raw[..n]);
    let b = &full[..];
    // Every offset is a constant inside TCP_INFO_LEN, so these reads cannot
    // fail; unwrap_or(0) keeps that a non-panicking fact rather than a claim.
    let u32f = |at| u32_ne(b, at).unwrap_or(0);
    let u8f = |at| u8_at(b, at).unwrap_or(0);
    let present_u64 = |at: usize| (raw.len() >= at + 8).then(|| u64_ne(b, at).unwrap_or(0));
    TcpInfo {
        retransmits: u8f(off::RETRANSMITS),
        probes: u8f(off::PROBES),
        backoff: u8f(off::BACKOFF),
        rto_us: u32f(off::RTO),
        unacked: u32f(off::UNACKED),
        lost: u32f(off::LOST),
        retrans: u32f(off::RETRANS),
        last_data_sent_ms: u32f(off::LAST_DATA_SENT),
        last_data_recv_ms: u32f(off::LAST_DATA_RECV),
        last_ack_recv_ms: u32f(off::LAST_ACK_RECV),
        rtt_us: u32f(off::RTT),
        rttvar_us: u32f(off::RTTVAR),
        snd_cwnd: u32f(off::SND_CWND),
        total_retrans: u32f(off::TOTAL_RETRANS),
        bytes_acked: present_u64(off::BYTES_ACKED),
        bytes_received: present_u64(off::BYTES_RECEIVED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A struct of `len` bytes with every u32 field at `at` set to `at`
    /// (so each field's value names its offset) and the u64s set likewise.
    fn synthetic(len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        for at in [
            off::RTO,
            off::UNACKED,
            off::LOST,
            off::RETRANS,
            off::LAST_DATA_SENT,
            off::LAST_DATA_RECV,
            off::LAST_ACK_RECV,
            off::RTT,
            off::RTTVAR,
            off::SND_CWND,
            off::TOTAL_RETRANS,
        ] {
            if at + 4 <= len {
                v[at..at + 4].copy_from_slice(&(at as u32).to_ne_bytes());
            }
        }
        for at in [off::BYTES_ACKED, off::BYTES_RECEIVED] {
            if at + 8 <= len {
                v[at..at + 8].copy_from_slice(&(at as u64 + (1 << 40)).to_ne_bytes());
            }
        }
        v[off::RETRANSMITS] = 7;
        v[off::PROBES] = 8;
        v[off::BACKOFF] = 9;
        v
    }

    #[test]
    fn short_104_byte_struct_has_no_byte_counters() {
        let info = decode_tcp_info(&synthetic(104));
        assert_eq!(info.retransmits, 7);
        assert_eq!(info.probes, 8);
        assert_eq!(info.backoff, 9);
        assert_eq!(info.rto_us, off::RTO as u32);
        assert_eq!(info.last_ack_recv_ms, off::LAST_ACK_RECV as u32);
        assert_eq!(info.last_data_recv_ms, off::LAST_DATA_RECV as u32);
        assert_eq!(info.rtt_us, off::RTT as u32);
        assert_eq!(info.total_retrans, off::TOTAL_RETRANS as u32);
        assert_eq!(info.bytes_acked, None);
        assert_eq!(info.bytes_received, None);
    }

    #[test]
    fn struct_cut_between_the_byte_counters() {
        // 4.1's struct ends well past both; a cut at 128 keeps only bytes_acked.
        let info = decode_tcp_info(&synthetic(128));
        assert_eq!(info.bytes_acked, Some(off::BYTES_ACKED as u64 + (1 << 40)));
        assert_eq!(info.bytes_received, None);
    }

    #[test]
    fn longer_300_byte_struct_ignores_the_tail() {
        let mut raw = synthetic(300);
        raw[TCP_INFO_LEN..].fill(0xff);
        let info = decode_tcp_info(&raw);
        assert_eq!(info.snd_cwnd, off::SND_CWND as u32);
        assert_eq!(info.rttvar_us, off::RTTVAR as u32);
        assert_eq!(info.bytes_acked, Some(off::BYTES_ACKED as u64 + (1 << 40)));
        assert_eq!(
            info.bytes_received,
            Some(off::BYTES_RECEIVED as u64 + (1 << 40))
        );
    }

    #[test]
    fn tiny_and_empty_structs_decode_to_zeroes() {
        assert_eq!(decode_tcp_info(&[]), TcpInfo::default());
        let info = decode_tcp_info(&[1, 2, 3]);
        assert_eq!(info.retransmits, 3);
        assert_eq!(info.rto_us, 0);
    }
}
