//! A copy of the kernel's BTF cut down to what the fd-table program's CO-RE
//! relocations and its attach point need, so that loading it costs a few
//! milliseconds instead of ~100 ms of CPU.
//!
//! Why: aya parses every type of `/sys/kernel/btf/vmlinux` into owned
//! structures (~50 ms for the ~150k types of a 6.x kernel, every member list
//! allocated) and then, per relocated type, scans every struct of it by name
//! (another ~50 ms). The program reads nine structs. This is the idea of
//! `bpftool gen min_core_btf` (BTFGen), done at load time and simpler. Kept
//! as they are: [`KEPT_STRUCTS`], the attach target [`KEPT_FUNCS`], and every
//! type they use by value (members, typedefs, modifiers, arrays, prototypes:
//! the anonymous unions of `bpf_iter__task_file`, `sock_common` in `sock`,
//! the integer types of the fields). A pointer is kept but not what it
//! points to: a pointee the program reads is read by its own relocation, by
//! its own name. Every other record becomes an anonymous forward
//! declaration, and records after the last one needed are dropped. Records
//! keep their order, so every type id, including the attach target's, is
//! the kernel's (on 6.18: 126k records → 64k, nearly all 12-byte
//! placeholders). The string section is copied as is.
//!
//! Any surprise in the input (bad magic, unknown kind, a record running past
//! the section) is an error: the caller then parses the full BTF, as before.

/// The structs `fdtable.bpf.c` reads fields of: exactly the ones
/// `kernel_types.h` defines (a unit test checks that).
pub const KEPT_STRUCTS: &[&str] = &[
    "bpf_iter_meta",
    "bpf_iter__task_file",
    "task_struct",
    "super_block",
    "inode",
    "file",
    "sock_common",
    "sock",
    "socket",
];

/// The functions kept by name: the iterator's attach point, whose type id
/// the kernel checks at load.
pub const KEPT_FUNCS: &[&str] = &["bpf_iter_task_file"];

/// Why a BTF blob could not be minimized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MinError {
    #[error("BTF header: {0}")]
    Header(&'static str),
    #[error("BTF type {id} at byte {offset}: {what}")]
    Type {
        id: u32,
        offset: usize,
        what: &'static str,
    },
}

const MAGIC: u16 = 0xeb9f;
const HEADER_LEN: usize = 24;
const RECORD_LEN: usize = 12;

// include/uapi/linux/btf.h, enum BTF_KIND_*.
const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

/// One type record: where it is and what the walk needs of it.
#[derive(Clone, Copy)]
struct Record {
    offset: usize,
    len: usize,
    kind: u32,
    name_off: u32,
    /// `type` of modifiers, typedefs, pointers; element type of arrays.
    target: u32,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Returns `data` (a whole BTF blob) cut down to the structs named in `kept`,
/// the functions named in `funcs` and what they use by value.
pub fn minimize(data: &[u8], kept: &[&str], funcs: &[&str]) -> Result<Vec<u8>, MinError> {
    let h = |what| MinError::Header(what);
    if u16_at(data, 0) != Some(MAGIC) {
        return Err(h("bad magic (not native-endian BTF)"));
    }
    let hdr_len = u32_at(data, 4).ok_or(h("short"))? as usize;
    let type_off = u32_at(data, 8).ok_or(h("short"))? as usize;
    let type_len = u32_at(data, 12).ok_or(h("short"))? as usize;
    let str_off = u32_at(data, 16).ok_or(h("short"))? as usize;
    let str_len = u32_at(data, 20).ok_or(h("short"))? as usize;
    if hdr_len < HEADER_LEN {
        return Err(h("header shorter than 24 bytes"));
    }
    let section = |off: usize, len: usize| {
        let start = hdr_len.checked_add(off)?;
        data.get(start..start.checked_add(len)?)
    };
    let types = section(type_off, type_len).ok_or(h("type section out of bounds"))?;
    let strings = section(str_off, str_len).ok_or(h("string section out of bounds"))?;

    let records = read_records(types)?;
    let (keep, last) = needed(types, strings, &records, kept, funcs)?;

    // Header (its own length kept), then types, then strings, like the kernel
    // lays it out.
    let mut out = Vec::with_capacity(hdr_len + (last + 1) * 16 + strings.len());
    out.extend_from_slice(&data[..hdr_len]);
    for (r, k) in records.iter().zip(&keep).take(last + 1) {
        if *k {
            out.extend_from_slice(&types[r.offset..r.offset + r.len]);
        } else {
            // An anonymous forward declaration: no size, no members, no
            // references, cheap to parse and never a relocation candidate.
            out.extend_from_slice(&0u32.to_ne_bytes());
            out.extend_from_slice(&(KIND_FWD << 24).to_ne_bytes());
            out.extend_from_slice(&0u32.to_ne_bytes());
        }
    }
    let new_type_len = out.len() - hdr_len;
    out.extend_from_slice(strings);
    // type_off stays 0 relative to the header; strings follow the types.
    let at = |o: usize| o..o + 4;
    out[at(8)].copy_from_slice(&0u32.to_ne_bytes());
    out[at(12)].copy_from_slice(&(new_type_len as u32).to_ne_bytes());
    out[at(16)].copy_from_slice(&(new_type_len as u32).to_ne_bytes());
    out[at(20)].copy_from_slice(&(strings.len() as u32).to_ne_bytes());
    Ok(out)
}

/// Splits the type section into records (id = index + 1).
fn read_records(types: &[u8]) -> Result<Vec<Record>, MinError> {
    let mut records = Vec::with_capacity(types.len() / 24);
    let mut at = 0usize;
    while at < types.len() {
        let id = records.len() as u32 + 1;
        let err = |what| MinError::Type {
            id,
            offset: at,
            what,
        };
        let name_off = u32_at(types, at).ok_or(err("truncated record"))?;
        let info = u32_at(types, at + 4).ok_or(err("truncated record"))?;
        let size_or_type = u32_at(types, at + 8).ok_or(err("truncated record"))?;
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let extra = match kind {
            KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
            KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
            | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => 0,
            KIND_ARRAY => 12,
            KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
            KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
            _ => return Err(err("unknown kind")),
        };
        let len = RECORD_LEN + extra;
        if at + len > types.len() {
            return Err(err("record runs past the type section"));
        }
        let target = if kind == KIND_ARRAY {
            u32_at(types, at + RECORD_LEN).ok_or(err("truncated array"))?
        } else {
            size_or_type
        };
        records.push(Record {
            offset: at,
            len,
            kind,
            name_off,
            target,
        });
        at += len;
    }
    Ok(records)
}

/// Marks (by record index) the named structs and functions and every type
/// they use by value; returns the marks and the index of the last record the
/// kept ones refer to (pointees included, as placeholders).
fn needed(
    types: &[u8],
    strings: &[u8],
    records: &[Record],
    kept: &[&str],
    funcs: &[&str],
) -> Result<(Vec<bool>, usize), MinError> {
    let name = |off: u32| -> &[u8] {
        let s = strings.get(off as usize..).unwrap_or_default();
        let end = s.iter().position(|b| *b == 0).unwrap_or(s.len());
        &s[..end]
    };
    let mut keep = vec![false; records.len()];
    let mut last = 0usize;
    let mut todo: Vec<usize> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let wanted = match r.kind {
            KIND_STRUCT | KIND_UNION => kept.iter().any(|k| k.as_bytes() == name(r.name_off)),
            KIND_FUNC => funcs.iter().any(|k| k.as_bytes() == name(r.name_off)),
            _ => false,
        };
        if wanted {
            keep[i] = true;
            todo.push(i);
        }
    }
    // A type id (1-based; 0 is void) to a record index.
    let index = |id: u32, from: usize| -> Result<Option<usize>, MinError> {
        match id {
            0 => Ok(None),
            _ if id as usize <= records.len() => Ok(Some(id as usize - 1)),
            _ => Err(MinError::Type {
                id: from as u32 + 1,
                offset: records[from].offset,
                what: "refers to a type id past the last record",
            }),
        }
    };
    let mut refs: Vec<u32> = Vec::new();
    while let Some(i) = todo.pop() {
        last = last.max(i);
        let r = records[i];
        refs.clear();
        let extra = |n: usize| u32_at(types, r.offset + RECORD_LEN + n).unwrap_or(0);
        let vlen = (r.len - RECORD_LEN) / 12;
        match r.kind {
            // What a pointer points to stays a placeholder: it must exist,
            // its contents are never read through this pointer's type.
            KIND_PTR => {
                if let Some(j) = index(r.target, i)? {
                    last = last.max(j);
                }
            }
            KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG
            | KIND_FUNC | KIND_VAR | KIND_DECL_TAG => refs.push(r.target),
            // Element and index types.
            KIND_ARRAY => refs.extend([extra(0), extra(4)]),
            KIND_STRUCT | KIND_UNION | KIND_DATASEC => {
                let at = if r.kind == KIND_DATASEC { 0 } else { 4 };
                refs.extend((0..vlen).map(|m| extra(m * 12 + at)));
            }
            KIND_FUNC_PROTO => {
                refs.push(r.target);
                refs.extend((0..(r.len - RECORD_LEN) / 8).map(|p| extra(p * 8 + 4)));
            }
            _ => {}
        }
        for &id in &refs {
            if let Some(j) = index(id, i)? {
                if !keep[j] {
                    keep[j] = true;
                    todo.push(j);
                }
            }
        }
    }
    Ok((keep, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny BTF: 1 int, 2 struct keep {int a; struct inner b; other *c},
    /// 3 struct inner {int x}, 4 struct other {int y}, 5 ptr -> 4,
    /// 6 func_proto int (int), 7 func "f" -> 6.
    fn blob() -> (Vec<u8>, Vec<u8>) {
        let strings = b"\0int\0keep\0a\0b\0c\0inner\0x\0other\0y\0f\0".to_vec();
        let off = |s: &str| -> u32 {
            let pos = strings
                .windows(s.len() + 2)
                .position(|w| w[0] == 0 && &w[1..=s.len()] == s.as_bytes() && w[s.len() + 1] == 0)
                .expect("string");
            pos as u32 + 1
        };
        let mut t = Vec::new();
        let rec = |t: &mut Vec<u8>, name: u32, kind: u32, vlen: u32, st: u32| {
            t.extend_from_slice(&name.to_ne_bytes());
            t.extend_from_slice(&((kind << 24) | vlen).to_ne_bytes());
            t.extend_from_slice(&st.to_ne_bytes());
        };
        let member = |t: &mut Vec<u8>, name: u32, ty: u32, bits: u32| {
            t.extend_from_slice(&name.to_ne_bytes());
            t.extend_from_slice(&ty.to_ne_bytes());
            t.extend_from_slice(&bits.to_ne_bytes());
        };
        rec(&mut t, off("int"), KIND_INT, 0, 4); // 1
        t.extend_from_slice(&0x0100_0020u32.to_ne_bytes());
        rec(&mut t, off("keep"), KIND_STRUCT, 3, 16); // 2
        member(&mut t, off("a"), 1, 0);
        member(&mut t, off("b"), 3, 32);
        member(&mut t, off("c"), 5, 64);
        rec(&mut t, off("inner"), KIND_STRUCT, 1, 4); // 3
        member(&mut t, off("x"), 1, 0);
        rec(&mut t, off("other"), KIND_STRUCT, 1, 4); // 4
        member(&mut t, off("y"), 1, 0);
        rec(&mut t, 0, KIND_PTR, 0, 4); // 5
        rec(&mut t, 0, KIND_FUNC_PROTO, 1, 1); // 6
        t.extend_from_slice(&0u32.to_ne_bytes());
        t.extend_from_slice(&1u32.to_ne_bytes());
        rec(&mut t, off("f"), KIND_FUNC, 0, 6); // 7
        let mut b = Vec::new();
        b.extend_from_slice(&MAGIC.to_ne_bytes());
        b.push(1);
        b.push(0);
        b.extend_from_slice(&24u32.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&(t.len() as u32).to_ne_bytes());
        b.extend_from_slice(&(t.len() as u32).to_ne_bytes());
        b.extend_from_slice(&(strings.len() as u32).to_ne_bytes());
        b.extend_from_slice(&t);
        b.extend_from_slice(&strings);
        (b, strings)
    }

    fn kinds(b: &[u8]) -> Vec<u32> {
        let tl = u32_at(b, 12).expect("len") as usize;
        read_records(&b[24..24 + tl])
            .expect("records")
            .iter()
            .map(|r| r.kind)
            .collect()
    }

    #[test]
    fn keeps_named_and_embedded_structs_and_every_id() {
        let (b, strings) = blob();
        let m = minimize(&b, &["keep"], &["f"]).expect("minimize");
        // Same records in the same order: ids unchanged. `inner` is embedded
        // by value and stays; `other` is only pointed to and becomes an
        // anonymous placeholder; the function and its prototype stay.
        assert_eq!(
            kinds(&m),
            vec![
                KIND_INT,
                KIND_STRUCT,
                KIND_STRUCT,
                KIND_FWD,
                KIND_PTR,
                KIND_FUNC_PROTO,
                KIND_FUNC
            ]
        );
        assert_eq!(kinds(&b)[3], KIND_STRUCT);
        let section = |x: &[u8]| {
            let tl = u32_at(x, 12).expect("len") as usize;
            (
                x[24..24 + tl].to_vec(),
                read_records(&x[24..24 + tl]).expect("records"),
            )
        };
        let (mt, mr) = section(&m);
        let (bt, br) = section(&b);
        assert_eq!(mr[3].name_off, 0);
        // Kept records are byte for byte the kernel's.
        for i in [0, 1, 2, 4, 5, 6] {
            assert_eq!(
                &mt[mr[i].offset..mr[i].offset + mr[i].len],
                &bt[br[i].offset..br[i].offset + br[i].len],
                "record {}",
                i + 1
            );
        }
        // Strings copied as is, after the types.
        assert!(m.ends_with(&strings));
        assert_eq!(u32_at(&m, 20), Some(strings.len() as u32));
        // Minimizing is idempotent.
        assert_eq!(minimize(&m, &["keep"], &["f"]).expect("again"), m);
    }

    #[test]
    fn records_after_the_last_one_needed_are_dropped() {
        let (b, _) = blob();
        // Without the function: the pointer's target (id 4) is the last
        // record referred to.
        let m = minimize(&b, &["keep"], &[]).expect("minimize");
        assert_eq!(
            kinds(&m),
            vec![KIND_INT, KIND_STRUCT, KIND_STRUCT, KIND_FWD, KIND_PTR]
        );
        let none = minimize(&b, &[], &[]).expect("minimize");
        assert_eq!(kinds(&none), vec![KIND_FWD]);
    }

    #[test]
    fn a_reference_past_the_last_record_is_an_error() {
        let (mut b, _) = blob();
        // Member `a` of `keep` (record 2, first member at 24 + 12 + 12 + 4
        // for the int's extra word) refers to type 99.
        let at = 24 + 16 + 12 + 4;
        assert_eq!(u32_at(&b, at), Some(1));
        b[at..at + 4].copy_from_slice(&99u32.to_ne_bytes());
        assert!(matches!(
            minimize(&b, &["keep"], &[]),
            Err(MinError::Type { id: 2, .. })
        ));
    }

    #[test]
    fn malformed_input_is_an_error_never_a_panic() {
        let (b, _) = blob();
        assert!(minimize(&b[..10], &["keep"], &["f"]).is_err());
        let mut bad = b.clone();
        bad[0] = 0;
        assert_eq!(
            minimize(&bad, &["keep"], &["f"]),
            Err(MinError::Header("bad magic (not native-endian BTF)"))
        );
        // Every truncation of the type section fails cleanly or succeeds.
        for cut in 0..b.len() {
            let _ = minimize(&b[..cut], &["keep"], &["f"]);
        }
        // An unknown kind.
        let mut unknown = b.clone();
        unknown[24 + 7] = 31;
        assert!(matches!(
            minimize(&unknown, &["keep"], &["f"]),
            Err(MinError::Type {
                id: 1,
                what: "unknown kind",
                ..
            })
        ));
        // Garbage everywhere after the header never panics.
        let mut x: u32 = 12345;
        for _ in 0..200 {
            let mut g = b.clone();
            for byte in g.iter_mut().skip(24) {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                if x.is_multiple_of(7) {
                    *byte = (x >> 16) as u8;
                }
            }
            let _ = minimize(&g, &["keep"], &["f"]);
        }
    }

    #[test]
    fn kept_structs_are_the_ones_kernel_types_h_defines() {
        let header = include_str!("kernel_types.h");
        let mut defined: Vec<&str> = header
            .lines()
            .filter_map(|l| l.strip_prefix("struct "))
            .filter_map(|l| l.strip_suffix(" {"))
            .collect();
        defined.sort_unstable();
        let mut kept = KEPT_STRUCTS.to_vec();
        kept.sort_unstable();
        assert_eq!(defined, kept);
    }
}
