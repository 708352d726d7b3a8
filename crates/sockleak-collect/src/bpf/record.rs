//! The records `fdtable.bpf.c` writes, and their defensive decoding.
//!
//! Pure: no I/O, so it is tested with proptest. The layout mirrors
//! `struct fd_record` in fdtable.bpf.c (32 bytes, native endianness, no
//! implicit padding): change both together.

use sockleak_model::FdKind;

/// Size of one `struct fd_record`.
pub const RECORD_LEN: usize = 32;

// `kind` values of fdtable.bpf.c (KIND_*).
const KIND_FILE: u8 = 0;
const KIND_SOCKET: u8 = 1;
const KIND_PIPE: u8 = 2;
const KIND_ANON: u8 = 3;
const KIND_OTHER: u8 = 4;

/// One decoded fd record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub tgid: u32,
    pub fd: u32,
    pub ino: u64,
    pub family: u16,
    pub protocol: u16,
    pub kind: FdKind,
    /// The process's `task->start_boottime` (ns since boot).
    pub start_ns: u64,
}

/// Why iterator output could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// A `kind` byte the program never writes: the object and this decoder
    /// disagree about the layout.
    UnknownKind { offset: usize, kind: u8 },
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::UnknownKind { offset, kind } => {
                write!(f, "unknown fd kind {kind} in the record at byte {offset}")
            }
        }
    }
}

/// Decodes one record from exactly [`RECORD_LEN`] bytes.
fn decode_one(r: &[u8; RECORD_LEN], offset: usize) -> Result<Record, DecodeError> {
    let u16_at = |i: usize| u16::from_ne_bytes([r[i], r[i + 1]]);
    let u32_at = |i: usize| u32::from_ne_bytes([r[i], r[i + 1], r[i + 2], r[i + 3]]);
    let u64_at = |i: usize| {
        u64::from_ne_bytes([
            r[i],
            r[i + 1],
            r[i + 2],
            r[i + 3],
            r[i + 4],
            r[i + 5],
            r[i + 6],
            r[i + 7],
        ])
    };
    let kind = match r[20] {
        KIND_FILE => FdKind::File,
        KIND_SOCKET => FdKind::Socket,
        KIND_PIPE => FdKind::Pipe,
        KIND_ANON => FdKind::Anon,
        KIND_OTHER => FdKind::Other,
        kind => return Err(DecodeError::UnknownKind { offset, kind }),
    };
    Ok(Record {
        tgid: u32_at(0),
        fd: u32_at(4),
        ino: u64_at(8),
        family: u16_at(16),
        protocol: u16_at(18),
        kind,
        start_ns: u64_at(24),
    })
}

/// Decodes every whole record at the start of `buf` into `out`, returning how
/// many bytes were consumed (a multiple of [`RECORD_LEN`]). The tail (a record
/// split across two reads of the iterator) is left for the caller to carry
/// over; a tail still pending at EOF is an error the caller reports.
pub fn decode_records(
    buf: &[u8],
    base_offset: usize,
    out: &mut impl FnMut(Record),
) -> Result<usize, DecodeError> {
    let mut chunks = buf.chunks_exact(RECORD_LEN);
    let mut consumed = 0;
    for chunk in &mut chunks {
        // chunks_exact yields RECORD_LEN-byte slices only.
        let Ok(r) = <&[u8; RECORD_LEN]>::try_from(chunk) else {
            break;
        };
        out(decode_one(r, base_offset + consumed)?);
        consumed += RECORD_LEN;
    }
    Ok(consumed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Encodes like fdtable.bpf.c does.
    fn encode(tgid: u32, fd: u32, ino: u64, family: u16, protocol: u16, kind: u8) -> Vec<u8> {
        encode_started(tgid, fd, ino, family, protocol, kind, 0)
    }

    fn encode_started(
        tgid: u32,
        fd: u32,
        ino: u64,
        family: u16,
        protocol: u16,
        kind: u8,
        start_ns: u64,
    ) -> Vec<u8> {
        let mut r = Vec::with_capacity(RECORD_LEN);
        r.extend_from_slice(&tgid.to_ne_bytes());
        r.extend_from_slice(&fd.to_ne_bytes());
        r.extend_from_slice(&ino.to_ne_bytes());
        r.extend_from_slice(&family.to_ne_bytes());
        r.extend_from_slice(&protocol.to_ne_bytes());
        r.push(kind);
        r.extend_from_slice(&[0, 0, 0]);
        r.extend_from_slice(&start_ns.to_ne_bytes());
        r
    }

    #[test]
    fn decodes_a_tcp_socket_record() {
        let buf = encode_started(42, 7, 123_456_789_012, 2, 6, KIND_SOCKET, 987_654_321_000);
        let mut got = Vec::new();
        assert_eq!(decode_records(&buf, 0, &mut |r| got.push(r)), Ok(32));
        assert_eq!(
            got,
            vec![Record {
                tgid: 42,
                fd: 7,
                ino: 123_456_789_012,
                family: 2,
                protocol: 6,
                kind: FdKind::Socket,
                start_ns: 987_654_321_000,
            }]
        );
    }

    #[test]
    fn leaves_a_split_record_for_the_next_read() {
        let mut buf = encode(1, 0, 5, 0, 0, KIND_PIPE);
        buf.extend_from_slice(&encode(1, 1, 6, 0, 0, KIND_FILE)[..10]);
        let mut n = 0;
        assert_eq!(decode_records(&buf, 0, &mut |_| n += 1), Ok(32));
        assert_eq!(n, 1);
    }

    #[test]
    fn unknown_kind_is_an_error_with_its_offset() {
        let mut buf = encode(1, 0, 5, 0, 0, KIND_OTHER);
        buf.extend_from_slice(&encode(1, 1, 6, 0, 0, 9));
        assert_eq!(
            decode_records(&buf, 64, &mut |_| {}),
            Err(DecodeError::UnknownKind {
                offset: 96,
                kind: 9
            })
        );
    }

    proptest! {
        /// Arbitrary bytes never panic, and never consume a partial record.
        #[test]
        fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut n = 0usize;
            if let Ok(used) = decode_records(&buf, 0, &mut |_| n += 1) {
                prop_assert_eq!(used % RECORD_LEN, 0);
                prop_assert_eq!(used, n * RECORD_LEN);
                prop_assert!(buf.len() - used < RECORD_LEN);
            }
        }

        /// Encoding then decoding gives back every field.
        #[test]
        fn round_trip(tgid: u32, fd: u32, ino: u64, family: u16, protocol: u16, kind in 0u8..5, start: u64) {
            let buf = encode_started(tgid, fd, ino, family, protocol, kind, start);
            let mut got = Vec::new();
            prop_assert_eq!(decode_records(&buf, 0, &mut |r| got.push(r)), Ok(RECORD_LEN));
            prop_assert_eq!(got.len(), 1);
            let r = got[0];
            prop_assert_eq!((r.tgid, r.fd, r.ino, r.family, r.protocol, r.start_ns), (tgid, fd, ino, family, protocol, start));
        }
    }
}
