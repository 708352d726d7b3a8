//! Properties of the per-process file parsers: no input makes them panic, and
//! any comm (spaces, parentheses, digits) survives a round trip through stat.

use proptest::prelude::*;
use sockleak_collect::procfs::{
    cmdline_to_string, parse_limits, parse_socket_inode, parse_stat, parse_status,
};

/// Bytes that look like /proc text often enough to reach deep branches.
fn proc_like() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"(".to_vec()),
        Just(b")".to_vec()),
        Just(b" ".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\t".to_vec()),
        Just(b"\0".to_vec()),
        Just(b"Uid:".to_vec()),
        Just(b"NSpid:".to_vec()),
        Just(b"Max open files".to_vec()),
        Just(b"unlimited".to_vec()),
        Just(b"socket:[".to_vec()),
        Just(b"]".to_vec()),
        Just(b"18446744073709551616".to_vec()),
        "[0-9]{1,12}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..8),
    ];
    proptest::collection::vec(token, 0..64).prop_map(|v| v.concat())
}

fn stat_line(pid: u32, comm: &str, ppid: u32, start: u64) -> Vec<u8> {
    format!(
        "{pid} ({comm}) S {ppid} 1 1 0 -1 4194304 97 0 0 0 0 0 0 0 20 0 1 0 {start} 3133440 357 \
         18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
    )
    .into_bytes()
}

proptest! {
    #[test]
    fn parsers_never_panic_on_random_bytes(buf in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = parse_stat(&buf);
        let _ = parse_status(&buf);
        let _ = parse_limits(&buf);
        let _ = cmdline_to_string(&buf);
        let _ = parse_socket_inode(&buf);
    }

    #[test]
    fn parsers_never_panic_on_proc_like_text(buf in proc_like()) {
        let _ = parse_stat(&buf);
        let _ = parse_status(&buf);
        let _ = parse_limits(&buf);
        let s = cmdline_to_string(&buf);
        prop_assert!(!s.ends_with('\0'));
    }

    #[test]
    fn any_comm_round_trips(
        pid in 1u32..,
        comm in "[ -~]{0,40}",
        ppid in any::<u32>(),
        start in any::<u64>(),
    ) {
        let s = parse_stat(&stat_line(pid, &comm, ppid, start)).expect("valid stat");
        prop_assert_eq!(s.pid, pid);
        prop_assert_eq!(s.comm, comm);
        prop_assert_eq!(s.ppid, ppid);
        prop_assert_eq!(s.start_time, start);
    }

    #[test]
    fn truncated_stat_is_an_error_not_a_panic(cut in 0usize..120) {
        let line = stat_line(42, "a) (b", 1, 777);
        let cut = cut.min(line.len());
        // A prefix either is an error or ends inside/after the start time
        // (so it can only read a prefix of its digits), never garbage.
        if let Ok(s) = parse_stat(&line[..cut]) {
            prop_assert_eq!((s.pid, s.comm.as_str(), s.ppid), (42, "a) (b", 1));
            prop_assert!([7, 77, 777].contains(&s.start_time), "{}", s.start_time);
        }
    }

    #[test]
    fn limits_round_trip(soft in proptest::option::of(any::<u64>()), hard in proptest::option::of(any::<u64>())) {
        let show = |v: Option<u64>| v.map_or("unlimited".to_string(), |n| n.to_string());
        let text = format!(
            "Limit                     Soft Limit           Hard Limit           Units     \n\
             Max open files            {:<20} {:<20} files     \n",
            show(soft),
            show(hard)
        );
        let l = parse_limits(text.as_bytes()).expect("valid limits");
        prop_assert_eq!((l.soft, l.hard), (soft, hard));
    }
}
