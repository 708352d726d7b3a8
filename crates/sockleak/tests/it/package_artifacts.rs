//! The released static binary (target/dist/sockleak, built by
//! `tools/package`): no dynamic dependencies, stripped with its debug info
//! beside it, and a schema-valid `scan --json` from an empty directory with
//! an empty environment and from a chroot holding nothing but the binary and
//! /proc. Ignored in plain runs (they need the artifacts): `tools/package
//! --check` runs them with SOCKLEAK_DIST set.

use crate::support::*;
use serde_json::Value;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The dist directory, or None (with a SKIPPED line) when it was not given.
fn dist(test: &str) -> Option<PathBuf> {
    match std::env::var_os("SOCKLEAK_DIST") {
        Some(d) => Some(PathBuf::from(d)),
        None => {
            eprintln!(
                "SKIPPED {test}: SOCKLEAK_DIST not set (tools/package --check builds the \
                 artifacts and sets it)"
            );
            None
        }
    }
}

fn tool(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("run {args:?}: {e}"));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// By its path: the chroot runs with an empty environment (no PATH).
const CHROOT: &str = "/usr/sbin/chroot";

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("sockleak-it-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("mkdir scratch");
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// /proc mounted inside a chroot directory; unmounted on drop (before the
/// directory is removed, so nothing of the host's /proc is touched).
struct ProcMount(PathBuf);

impl Drop for ProcMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The scan document validates, and it holds `listener` with this test
/// process as its owner: the binary saw the host's sockets and their owners.
fn assert_sees_listener(doc: &Value, port: u16, what: &str) {
    validate_schema(doc, "scan-v1.schema.json");
    let socks = sockets_on_ports(doc, &[u64::from(port)]);
    assert_eq!(socks.len(), 1, "{what}: the test's listener on port {port}");
    let me = u64::from(std::process::id());
    assert!(
        owners(socks[0]).iter().any(|(pid, _)| *pid == me),
        "{what}: the listener's owner is this test process: {}",
        socks[0]
    );
}

fn parse_scan(out: &std::process::Output, what: &str) -> Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{what}: not JSON: {e}"))
}

#[test]
#[ignore = "needs target/dist from tools/package (tools/package --check runs it)"]
fn package_static_binary_has_no_dynamic_dependencies_and_separate_debug_info() {
    let test = "package_static_binary_has_no_dynamic_dependencies_and_separate_debug_info";
    let Some(dist) = dist(test) else { return };
    let bin = dist.join("sockleak");
    let bin_s = bin.to_str().expect("utf-8 path");
    let file = tool(&["file", "-b", bin_s]);
    assert!(
        file.contains("statically linked") || file.contains("static-pie linked"),
        "file: {file}"
    );
    assert!(
        !file.contains("dynamically linked") && !file.contains("interpreter"),
        "{file}"
    );
    assert!(
        file.contains(", stripped"),
        "the released binary is stripped: {file}"
    );
    let ldd = tool(&["ldd", bin_s]);
    assert!(
        ldd.contains("not a dynamic executable") || ldd.contains("statically linked"),
        "ldd: {ldd}"
    );
    // No NEEDED library and no program interpreter, whatever file/ldd say.
    let dynamic = tool(&["readelf", "-d", "-l", "-W", bin_s]);
    assert!(!dynamic.contains("(NEEDED)"), "{dynamic}");
    assert!(!dynamic.contains("INTERP"), "{dynamic}");
    let sections = tool(&["readelf", "-S", "-W", bin_s]);
    assert!(!sections.contains(".debug_info"), "debug info stripped");
    assert!(sections.contains(".gnu_debuglink"), "{sections}");
    let link = tool(&["readelf", "--string-dump=.gnu_debuglink", bin_s]);
    assert!(link.contains("sockleak.debug"), "{link}");
    let debug = dist.join("sockleak.debug");
    let dsec = tool(&["readelf", "-S", "-W", debug.to_str().expect("utf-8")]);
    assert!(dsec.contains(".debug_info"), "{dsec}");
    // gdb (where installed) follows the debuglink: symbols and lines come
    // back for the stripped binary.
    if Path::new("/usr/bin/gdb").exists() {
        let out = tool(&[
            "gdb",
            "-nx",
            "-batch",
            "-ex",
            "info line sockleak::main",
            bin_s,
        ]);
        assert!(
            out.contains("main.rs"),
            "gdb finds main's source line: {out}"
        );
    } else {
        eprintln!("SKIPPED gdb part of {test}: no gdb (apt-get install gdb)");
    }
}

#[test]
#[ignore = "needs target/dist from tools/package (tools/package --check runs it)"]
fn package_static_binary_scans_from_an_empty_dir_and_a_bare_chroot() {
    let test = "package_static_binary_scans_from_an_empty_dir_and_a_bare_chroot";
    let Some(dist) = dist(test) else { return };
    let bin = std::fs::canonicalize(dist.join("sockleak")).expect("dist/sockleak");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();

    // An empty directory and an empty environment: no PATH, HOME, locale.
    let empty = Scratch::new("pkg-empty");
    let out = Command::new("env")
        .args(["-i", bin.to_str().expect("utf-8")])
        .args(["scan", "--json", "--fail-on", "never"])
        .current_dir(&empty.0)
        .output()
        .expect("run env -i sockleak");
    assert_sees_listener(&parse_scan(&out, "env -i"), port, "env -i");

    if !require_root(test, "chroot and mount -t proc") {
        return;
    }
    // The chroot: the binary and /proc, nothing else (no /etc, no libc, no
    // /dev, no /sys).
    let root = Scratch::new("pkg-chroot");
    std::fs::copy(&bin, root.0.join("sockleak")).expect("copy binary");
    std::fs::create_dir(root.0.join("proc")).expect("mkdir proc");
    let proc_dir = root.0.join("proc");
    let mounted = Command::new("mount")
        .args(["-t", "proc", "proc"])
        .arg(&proc_dir)
        .status()
        .expect("mount");
    assert!(mounted.success(), "mount -t proc");
    let _mount = ProcMount(proc_dir);
    let mut entries: Vec<String> = std::fs::read_dir(&root.0)
        .expect("ls chroot")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(entries, ["proc", "sockleak"], "the chroot holds only these");
    let out = Command::new(CHROOT)
        .arg(&root.0)
        .args(["/sockleak", "scan", "--json", "--fail-on", "never"])
        .env_clear()
        .output()
        .expect("run chroot");
    let doc = parse_scan(&out, "chroot");
    assert_sees_listener(&doc, port, "chroot");
    // Also the human output and --version work there.
    let out = Command::new(CHROOT)
        .arg(&root.0)
        .args(["/sockleak", "--version"])
        .env_clear()
        .output()
        .expect("run chroot --version");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("eBPF objects: built in"), "{text}");
    drop(listener);
}
