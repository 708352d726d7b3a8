//! Kernel ABI of NETLINK_SOCK_DIAG for TCP: message types, flags, struct
//! sizes and field offsets, each with the uapi header it comes from.
//!
//! Offsets are written out instead of `#[repr(C)]` structs so that decoding is
//! a bounds-checked slice read: a short or garbage message can never be
//! reinterpreted as a struct.

// ---- include/uapi/linux/netlink.h -------------------------------------------

/// `sizeof(struct nlmsghdr)`: `__u32 nlmsg_len; __u16 nlmsg_type;
/// __u16 nlmsg_flags; __u32 nlmsg_seq; __u32 nlmsg_pid;`.
pub const NLMSG_HDRLEN: usize = 16;
/// `NLMSG_ALIGNTO`.
pub const NLMSG_ALIGNTO: usize = 4;
/// `NLM_F_REQUEST`: it is a request message.
pub const NLM_F_REQUEST: u16 = 0x01;
/// `NLM_F_DUMP_INTR`: the dump was inconsistent (the table changed under it).
/// Not acted on: rows are deduplicated by cookie, which covers the repeats.
pub const NLM_F_DUMP_INTR: u16 = 0x10;
/// `NLM_F_DUMP = NLM_F_ROOT (0x100) | NLM_F_MATCH (0x200)`.
pub const NLM_F_DUMP: u16 = 0x300;
/// `NLMSG_NOOP`.
pub const NLMSG_NOOP: u16 = 0x1;
/// `NLMSG_ERROR`: payload is `struct nlmsgerr { int error; struct nlmsghdr msg; }`.
pub const NLMSG_ERROR: u16 = 0x2;
/// `NLMSG_DONE`: end of a dump; payload is an `int` error (0 on success).
pub const NLMSG_DONE: u16 = 0x3;
/// `NLMSG_OVERRUN`: data lost.
pub const NLMSG_OVERRUN: u16 = 0x4;
/// `NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER)`.
pub const NLA_TYPE_MASK: u16 = 0x3fff;

/// `NLMSG_ALIGN(len)`.
pub const fn nlmsg_align(len: usize) -> usize {
    (len + NLMSG_ALIGNTO - 1) & !(NLMSG_ALIGNTO - 1)
}

// ---- include/uapi/linux/rtnetlink.h (struct rtattr, RTA_ALIGN) --------------

/// `sizeof(struct rtattr)`: `unsigned short rta_len; unsigned short rta_type;`.
pub const RTA_HDRLEN: usize = 4;

// ---- include/uapi/linux/sock_diag.h -----------------------------------------

/// `SOCK_DIAG_BY_FAMILY`: request and reply type of an inet_diag dump.
pub const SOCK_DIAG_BY_FAMILY: u16 = 20;

// ---- include/uapi/linux/inet_diag.h (legacy requests) -----------------------

/// `TCPDIAG_GETSOCK`: the pre-`sock_diag` TCP request, still served by
/// net/ipv4/inet_diag.c (`inet_diag_rcv_msg_compat`). Its dump runs with
/// `sdiag_family = AF_UNSPEC`: IPv4 and IPv6 in one walk of the hash tables,
/// where `SOCK_DIAG_BY_FAMILY` needs one walk per family. Replies carry this
/// type instead of `SOCK_DIAG_BY_FAMILY`, with the same payload.
pub const TCPDIAG_GETSOCK: u16 = 18;
/// `sizeof(struct inet_diag_req)`: u8 family, u8 src_len, u8 dst_len, u8 ext,
/// struct inet_diag_sockid id, u32 states, u32 dbs.
pub const REQ_COMPAT_LEN: usize = 4 + SOCKID_LEN + 8;
/// Offset of `idiag_states` in `struct inet_diag_req`.
pub const REQ_COMPAT_STATES: usize = 4 + SOCKID_LEN;

// ---- include/uapi/linux/inet_diag.h -----------------------------------------

/// `sizeof(struct inet_diag_sockid)`: be16 sport, be16 dport, be32 src[4],
/// be32 dst[4], u32 if, u32 cookie[2].
pub const SOCKID_LEN: usize = 48;
/// `sizeof(struct inet_diag_req_v2)`: u8 family, u8 protocol, u8 ext, u8 pad,
/// u32 states, struct inet_diag_sockid id.
pub const REQ_V2_LEN: usize = 8 + SOCKID_LEN;
/// `sizeof(struct inet_diag_msg)`: 4 bytes of u8 fields, the sockid, then
/// u32 expires, rqueue, wqueue, uid, inode.
pub const MSG_LEN: usize = 4 + SOCKID_LEN + 20;

/// Field offsets inside `struct inet_diag_msg`.
pub mod msg {
    pub const FAMILY: usize = 0;
    pub const STATE: usize = 1;
    pub const TIMER: usize = 2;
    pub const RETRANS: usize = 3;
    /// `id.idiag_sport`, big-endian.
    pub const SPORT: usize = 4;
    /// `id.idiag_dport`, big-endian.
    pub const DPORT: usize = 6;
    /// `id.idiag_src[4]`: network byte order; IPv4 uses the first 4 bytes.
    pub const SRC: usize = 8;
    /// `id.idiag_dst[4]`.
    pub const DST: usize = 24;
    /// `id.idiag_cookie[2]`: native-endian u32s, low half first
    /// (net/core/sock_diag.c `sock_diag_save_cookie`).
    pub const COOKIE: usize = 44;
    pub const EXPIRES: usize = 52;
    pub const RQUEUE: usize = 56;
    pub const WQUEUE: usize = 60;
    pub const UID: usize = 64;
    pub const INODE: usize = 68;
}

/// `INET_DIAG_MEMINFO`: reply attribute `struct inet_diag_meminfo`
/// (u32 rmem, wmem, fmem, tmem).
pub const INET_DIAG_MEMINFO: u16 = 1;
/// `INET_DIAG_INFO`: reply attribute `struct tcp_info` (include/uapi/linux/tcp.h).
pub const INET_DIAG_INFO: u16 = 2;
/// `sizeof(struct inet_diag_meminfo)`.
pub const MEMINFO_LEN: usize = 16;
/// Request bits in `idiag_ext` are `1 << (INET_DIAG_x - 1)`
/// (net/ipv4/inet_diag.c `inet_sk_diag_fill`).
pub const EXT_MEMINFO: u8 = 1 << (INET_DIAG_MEMINFO - 1);
pub const EXT_INFO: u8 = 1 << (INET_DIAG_INFO - 1);

// ---- include/net/tcp_states.h ------------------------------------------------

/// `TCP_NEW_SYN_RECV`: request sockets of a listener (reported as SYN_RECV).
pub const TCP_NEW_SYN_RECV: u8 = 12;
/// `TCP_SYN_RECV`.
pub const TCP_SYN_RECV: u8 = 3;

// ---- include/uapi/linux/in.h, include/linux/socket.h -------------------------

/// `IPPROTO_TCP`.
pub const IPPROTO_TCP: u8 = 6;
/// `AF_INET`.
pub const AF_INET: u8 = 2;
/// `AF_INET6`.
pub const AF_INET6: u8 = 10;

// ---- bounds-checked little readers -------------------------------------------

/// `buf[at..at+N]` as an array, or None when it runs past the end.
pub fn bytes<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at.checked_add(N)?)?.try_into().ok()
}

pub fn u8_at(buf: &[u8], at: usize) -> Option<u8> {
    buf.get(at).copied()
}

pub fn u16_ne(buf: &[u8], at: usize) -> Option<u16> {
    bytes::<2>(buf, at).map(u16::from_ne_bytes)
}

pub fn u16_be(buf: &[u8], at: usize) -> Option<u16> {
    bytes::<2>(buf, at).map(u16::from_be_bytes)
}

pub fn u32_ne(buf: &[u8], at: usize) -> Option<u32> {
    bytes::<4>(buf, at).map(u32::from_ne_bytes)
}

pub fn i32_ne(buf: &[u8], at: usize) -> Option<i32> {
    bytes::<4>(buf, at).map(i32::from_ne_bytes)
}

pub fn u64_ne(buf: &[u8], at: usize) -> Option<u64> {
    bytes::<8>(buf, at).map(u64::from_ne_bytes)
}
