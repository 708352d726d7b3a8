//! `/proc` mounted with `hidepid`: the kernel hides other users' processes
//! from the listing itself, so a scan would miss them without any error to
//! notice. The mount options say so; this reads them.

/// The `hidepid=` value of the proc mount at `mount_point` in `mountinfo`
/// (the text of `/proc/self/mountinfo`), with its `gid=` when set; `None`
/// when nothing is hidden (`hidepid=0`, `off`, absent, or not a proc mount).
/// The last matching line wins: a later mount on the same point covers the
/// earlier ones.
pub fn hidepid(mountinfo: &str, mount_point: &str) -> Option<HidePid> {
    let mut found = None;
    for line in mountinfo.lines() {
        // "36 25 0:21 / /proc rw,relatime shared:12 - proc proc rw,hidepid=2"
        let Some((head, tail)) = line.split_once(" - ") else {
            continue;
        };
        if head.split(' ').nth(4) != Some(mount_point) {
            continue;
        }
        let mut t = tail.split(' ');
        if t.next() != Some("proc") {
            found = None; // something else was mounted over it
            continue;
        }
        let opts = t.nth(1).unwrap_or("");
        let mut h = HidePid {
            mode: String::new(),
            gid: None,
        };
        for o in opts.split(',') {
            if let Some(v) = o.strip_prefix("hidepid=") {
                h.mode = v.to_string();
            } else if let Some(v) = o.strip_prefix("gid=") {
                h.gid = v.parse().ok();
            }
        }
        found = (!h.mode.is_empty() && h.mode != "0" && h.mode != "off").then_some(h);
    }
    found
}

/// How a proc mount hides processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HidePid {
    /// `1`/`noaccess`, `2`/`invisible` or `4`/`ptraceable`.
    pub mode: String,
    /// Members of this group see everything.
    pub gid: Option<u32>,
}

impl HidePid {
    /// Whether the calling process is exempt: CAP_SYS_PTRACE passes the
    /// kernel's ptrace check for every process, and the mount's `gid=` group
    /// sees all.
    pub fn exempts_caller(&self, cap_sys_ptrace: bool) -> bool {
        cap_sys_ptrace || self.gid.is_some_and(in_group)
    }
}

/// Whether `gid` is the effective or a supplementary group of this process.
fn in_group(gid: u32) -> bool {
    // SAFETY: getegid has no preconditions.
    if unsafe { libc::getegid() } == gid {
        return true;
    }
    let mut groups = vec![0 as libc::gid_t; 256];
    // SAFETY: the buffer holds `groups.len()` gid_t values.
    let n = unsafe { libc::getgroups(groups.len() as libc::c_int, groups.as_mut_ptr()) };
    usize::try_from(n)
        .ok()
        .and_then(|n| groups.get(..n))
        .is_some_and(|g| g.contains(&gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: &str = "22 27 0:21 / /proc rw,relatime - proc proc rw\n";
    const HIDDEN: &str =
        "22 27 0:21 / /proc rw,nosuid shared:12 - proc proc rw,hidepid=invisible,gid=27\n\
                          40 22 0:33 / /proc/sys/fs/binfmt_misc rw - binfmt_misc binfmt_misc rw\n";

    #[test]
    fn reads_hidepid_and_gid_of_the_proc_mount() {
        assert_eq!(hidepid(PLAIN, "/proc"), None);
        assert_eq!(
            hidepid(HIDDEN, "/proc"),
            Some(HidePid {
                mode: "invisible".into(),
                gid: Some(27)
            })
        );
        assert_eq!(hidepid(HIDDEN, "/other"), None);
        let zero = "1 2 0:5 / /proc rw - proc proc rw,hidepid=0\n";
        assert_eq!(hidepid(zero, "/proc"), None);
        let off = "1 2 0:5 / /proc rw - proc proc rw,hidepid=off\n";
        assert_eq!(hidepid(off, "/proc"), None);
    }

    #[test]
    fn the_last_mount_on_the_point_wins_and_garbage_is_ignored() {
        let over = format!("{HIDDEN}50 22 0:40 / /proc rw - proc proc rw\n");
        assert_eq!(hidepid(&over, "/proc"), None);
        let again = format!("{PLAIN}51 22 0:41 / /proc rw - proc proc rw,hidepid=2\n");
        assert_eq!(hidepid(&again, "/proc").map(|h| h.mode), Some("2".into()));
        let tmpfs = format!("{HIDDEN}52 22 0:42 / /proc rw - tmpfs tmpfs rw\n");
        assert_eq!(hidepid(&tmpfs, "/proc"), None);
        assert_eq!(hidepid("garbage\n\n - \n1 2\n", "/proc"), None);
    }

    #[test]
    fn ptrace_exempts() {
        let h = HidePid {
            mode: "2".into(),
            gid: None,
        };
        assert!(h.exempts_caller(true));
        assert!(!h.exempts_caller(false));
    }
}
