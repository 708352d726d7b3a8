//! The command-line surface: help snapshot, exit codes, quiet broken pipe,
//! schema-valid JSON.

use crate::support::*;
use std::process::Stdio;

/// Compares with a committed snapshot; `UPDATE_SNAPSHOTS=1` rewrites it.
fn snapshot(name: &str, actual: &str) {
    let path = repo_root()
        .join("crates/sockleak/tests/it/snapshots")
        .join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, actual).expect("write snapshot");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e} (run with UPDATE_SNAPSHOTS=1)", path.display()));
    assert_eq!(
        expected, actual,
        "{name} changed; if intended, rerun with UPDATE_SNAPSHOTS=1 and review the diff"
    );
}

#[test]
fn help_texts_match_snapshots() {
    for (name, args) in [
        ("help.txt", vec!["--help"]),
        ("scan-help.txt", vec!["scan", "--help"]),
        ("explain-help.txt", vec!["explain", "--help"]),
    ] {
        let (code, out, _) = run(&args);
        assert_eq!(code, 0);
        snapshot(name, &out);
    }
}

/// The subcommands `sockleak --help` lists (its "Commands:" block).
fn subcommands() -> Vec<String> {
    let (_, out, _) = run(&["--help"]);
    let subs: Vec<String> = out
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|s| s != "help")
        .collect();
    assert!(subs.len() >= 10, "parsed the Commands block: {subs:?}");
    subs
}

#[test]
fn completions_cover_every_subcommand() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = run(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(out.len() > 1000, "{shell}: a real script, not a stub");
        for sub in subcommands() {
            assert!(out.contains(&sub), "{shell} completion lacks {sub}");
        }
        // Flags of a subcommand are completed too.
        assert!(out.contains("fail-on"), "{shell}: scan's --fail-on");
    }
    let (code, _, _) = run(&["completions", "tcsh"]);
    assert_eq!(code, 2, "an unknown shell is a usage error");
}

#[test]
fn man_pages_cover_every_subcommand() {
    let (code, page, err) = run(&["man"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        page.starts_with(".ie") || page.contains(".TH sockleak 1"),
        "roff"
    );
    assert!(page.contains(".TH sockleak 1"), "{page}");
    for sub in subcommands() {
        assert!(page.contains(&sub), "sockleak.1 lacks {sub}");
    }
    // --dir: one page per subcommand, each with that command's flags.
    let dir = std::env::temp_dir().join(format!("sockleak-it-man-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (code, _, err) = run(&["man", "--dir", dir.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{err}");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("man dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut want: Vec<String> = subcommands()
        .iter()
        .map(|s| format!("sockleak-{s}.1"))
        .chain(["sockleak.1".to_string()])
        .collect();
    want.sort();
    assert_eq!(names, want);
    let scan = std::fs::read_to_string(dir.join("sockleak-scan.1")).expect("scan page");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(scan.contains(".TH sockleak-scan 1"), "{scan}");
    assert!(scan.contains("fail\\-on"), "scan's flags are in its page");
}

#[test]
fn version_names_the_commit_and_the_ebpf_objects() {
    let (code, out, _) = run(&["--version"]);
    assert_eq!(code, 0);
    let mut lines = out.lines();
    let first = lines.next().unwrap_or_default();
    let want = format!("sockleak {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(first.starts_with(&want), "{out}");
    // The commit this checkout is at (when git can tell; CI runs in a clone).
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(repo_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match head {
        Some(h) => assert!(
            first.contains(&format!("(commit {h})")),
            "{out} vs HEAD {h}"
        ),
        None => assert!(first.ends_with("(commit unknown)"), "{out}"),
    }
    let bpf = lines.next().unwrap_or_default();
    assert!(
        bpf.starts_with("eBPF objects: built in: fdtable.bpf.o (")
            && bpf.contains("statechg.bpf.o ("),
        "{out}"
    );
    // -V stays the one short line scripts parse.
    let (_, short, _) = run(&["-V"]);
    assert_eq!(short, format!("sockleak {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn exit_codes() {
    let (code, _, err) = run(&["scan", "--state", "bogus"]);
    assert_eq!(code, 2);
    assert!(err.contains("--state \"bogus\""), "{err}");
    let (code, _, _) = run(&["no-such-command"]);
    assert_eq!(code, 2);
    let (code, _, err) = run(&["explain", "no-such-topic"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown topic"), "{err}");
    let (code, _, err) = run(&["explain", "no", "such", "error"]);
    assert_eq!(code, 2);
    assert!(err.contains("\"no such error\": unknown topic"), "{err}");
    let (code, out, _) = run(&["explain"]);
    assert_eq!(code, 0);
    assert!(out.contains("close-wait"));
    let (code, _, _) = run(&["--version"]);
    assert_eq!(code, 0);
}

/// `sockleak explain` takes the error message a user pastes (quoted or as
/// loose words) and prints the symptom's text, and `explain` alone lists the
/// symptoms; every command a symptom suggests runs as printed.
#[test]
fn explain_takes_pasted_error_messages() {
    let (code, list, _) = run(&["explain"]);
    assert_eq!(code, 0);
    let symptoms = list
        .split("\nSymptoms (")
        .nth(1)
        .unwrap_or_else(|| panic!("no Symptoms block: {list}"));
    let messages: Vec<String> = symptoms
        .lines()
        .skip(1)
        .filter_map(|l| l.trim_start().split("  ").next().map(str::to_string))
        .filter(|m| !m.is_empty())
        .collect();
    for want in [
        "Too many open files",
        "Cannot assign requested address",
        "Timeout waiting for connection",
        "Connection reset by peer",
    ] {
        assert!(messages.iter().any(|m| m == want), "{want}: {symptoms}");
    }

    for (pasted, header) in [
        (
            "java.net.SocketException: Too many open files",
            "\"Too many open files\" (EMFILE, errno 24)",
        ),
        (
            "OSError: [Errno 23] Too many open files in system",
            "\"Too many open files in system\" (ENFILE",
        ),
        (
            "dial tcp 10.0.0.7:443: connect: cannot assign requested address",
            "\"Cannot assign requested address\" (EADDRNOTAVAIL",
        ),
        ("errno 99", "\"Cannot assign requested address\""),
        (
            "com.amazonaws.SdkClientException: Unable to execute HTTP request: Timeout \
             waiting for connection from pool",
            "\"Timeout waiting for connection from pool\"",
        ),
        (
            "ConnectionResetError: [Errno 104] Connection reset by peer",
            "\"Connection reset by peer\" (ECONNRESET",
        ),
        ("ECONNREFUSED", "\"Connection refused\" (ECONNREFUSED"),
    ] {
        // One quoted argument, and the same words unquoted.
        let words: Vec<&str> = pasted.split(' ').collect();
        for args in [vec!["explain", pasted], [vec!["explain"], words].concat()] {
            let (code, out, err) = run(&args);
            assert_eq!(code, 0, "{args:?}: {err}");
            assert!(out.starts_with(header), "{args:?}: {out}");
            assert!(out.contains("\nRun:\n  sockleak "), "{out}");
            assert!(out.contains("\nRead next: "), "{out}");
        }
    }

    // Every suggested command runs: PID, NAME and PORT filled in with this
    // test process, its comm and a port it listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port().to_string();
    let pid = std::process::id().to_string();
    let name = comm(std::process::id());
    let mut commands = std::collections::BTreeSet::new();
    for m in &messages {
        let (code, out, err) = run(&["explain", m]);
        assert_eq!(code, 0, "{m}: {err}");
        for line in out.lines().filter(|l| l.starts_with("  sockleak ")) {
            commands.insert(line.trim().to_string());
        }
    }
    assert!(commands.len() >= 5, "{commands:?}");
    for command in &commands {
        let mut args: Vec<&str> = command
            .split(' ')
            .skip(1)
            .map(|w| match w {
                "PID" => pid.as_str(),
                "NAME" => name.as_str(),
                "PORT" => port.as_str(),
                w => w,
            })
            .collect();
        match args[0] {
            "scan" => args.extend(["--fail-on", "never"]),
            "watch" => args.extend(["--count", "1", "--interval", "100ms", "--jsonl"]),
            other => panic!("{command}: unexpected command {other}"),
        }
        let (code, _, err) = run(&args);
        assert_eq!(code, 0, "{command} ({args:?}): {err}");
    }
    drop(listener);
}

#[test]
fn closed_pipe_exits_quietly_with_zero() {
    for args in [
        vec!["scan", "--fail-on", "never"],
        vec!["scan", "--json", "--fail-on", "never"],
        vec!["scan", "--sockets", "--fail-on", "never"],
    ] {
        let mut child = sockleak()
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        // Close the read end before sockleak writes: its write gets EPIPE.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(
            !err.contains("Broken pipe") && !err.contains("panicked"),
            "{err}"
        );
    }
}

#[test]
fn json_of_this_host_validates() {
    let doc = scan_json(&[]);
    assert_eq!(doc["schema"], "sockleak.scan/v1");
    assert!(!doc["host"]["namespaces"].as_array().expect("ns").is_empty());
    // This test process is on the host and was read, with its fds.
    let me = std::process::id();
    let procs = doc["processes"].as_array().expect("processes");
    let mine = procs
        .iter()
        .find(|p| p["pid"] == me)
        .expect("the test process is listed");
    assert!(mine["fd_count"].as_u64().unwrap_or(0) >= 3);
}

#[test]
fn doctor_reports_each_capability_and_its_fix() {
    let (code, out, _) = run(&["doctor"]);
    assert_eq!(code, 0);
    assert!(out.contains("sock_diag"), "{out}");
    if is_root() {
        assert!(out.contains("ok   running as root"), "{out}");
        assert!(out
            .lines()
            .any(|l| l.starts_with("ok") && l.contains("other network namespaces")));
        // Root on a kernel with BTF loads the eBPF fd table (the fast owner
        // source); elsewhere doctor says why not, and scans use /proc.
        if std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
            assert!(
                out.lines()
                    .any(|l| l.starts_with("ok") && l.contains("eBPF fd table")),
                "{out}"
            );
            // ... and the state tracker that keeps `watch` samples cheap.
            assert!(
                out.lines()
                    .any(|l| l.starts_with("ok") && l.contains("eBPF state tracker")),
                "{out}"
            );
        } else {
            eprintln!("SKIPPED part of doctor test: no kernel BTF, the eBPF fd table cannot load");
        }
    }
    // Without privileges every gap comes with the fix.
    if is_root()
        && std::process::Command::new("setpriv")
            .arg("--version")
            .output()
            .is_ok()
    {
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_sockleak"))
            .arg("doctor")
            .output()
            .expect("setpriv");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("MISS running as root"), "{text}");
        let misses = text.lines().filter(|l| l.starts_with("MISS")).count();
        let fixes = text
            .lines()
            .filter(|l| l.trim_start().starts_with("fix:"))
            .count();
        assert!(misses >= 2 && fixes == misses, "{text}");
    }
}
