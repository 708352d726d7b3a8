//! `sockleak serve` on the command line: its help text (snapshot), and
//! arguments and environments it refuses at once with exit 2 and a message
//! naming the problem (bad values, a port already taken).

use crate::support::*;
use std::net::TcpListener;

#[test]
fn serve_help_matches_its_snapshot() {
    let (code, out, _) = run(&["serve", "--help"]);
    assert_eq!(code, 0);
    let path = repo_root().join("crates/sockleak/tests/it/snapshots/serve-help.txt");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &out).expect("write snapshot");
        return;
    }
    let want = std::fs::read_to_string(&path).expect("read serve-help.txt snapshot");
    assert_eq!(
        out, want,
        "serve --help changed; if intended, rerun with UPDATE_SNAPSHOTS=1 and review the diff"
    );
    assert!(out.contains("[default: 127.0.0.1:9915]"), "{out}");
}

#[test]
fn serve_refuses_bad_arguments_and_a_taken_port() {
    for (args, word) in [
        (vec!["serve", "--interval", "0s"], "--interval"),
        (vec!["serve", "--listen", "localhost"], "--listen"),
        (vec!["serve", "--time-wait-warn", "2"], "--time-wait-warn"),
        (vec!["serve", "--max-connections", "0"], "--max-connections"),
        (vec!["serve", "--state", "bogus"], "--state"),
        (
            vec!["serve", "--web-config", "/nonexistent/web.yml"],
            "/nonexistent/web.yml",
        ),
    ] {
        let (code, _, err) = run(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(word), "{args:?}: {err}");
    }
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let (code, _, err) = run(&["serve", "--listen", &addr]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("bind {addr}")), "{err}");
}
