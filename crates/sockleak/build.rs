//! Build script: records the git commit the binary is built from, for
//! `sockleak --version`. Without git (a crates.io tarball, a source package)
//! the commit is "unknown"; this script never fails the build.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // A packager building from a tarball can say which commit it is.
    println!("cargo:rerun-if-env-changed=SOCKLEAK_GIT_COMMIT");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = match std::env::var("SOCKLEAK_GIT_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_string(),
        _ => git_commit(&manifest_dir).unwrap_or_else(|| "unknown".to_string()),
    };
    println!("cargo:rustc-env=SOCKLEAK_GIT_COMMIT={commit}");
}

/// `git rev-parse --short=12 HEAD` in the crate's directory, and the files
/// whose change means a new commit (HEAD, the branch's ref, packed-refs), so
/// cargo reruns this script after a commit or a checkout. `None` when git is
/// missing or this is not a checkout.
fn git_commit(dir: &Path) -> Option<String> {
    let commit = git(dir, &["rev-parse", "--short=12", "HEAD"])?;
    // --git-path resolves each file for plain checkouts and worktrees alike
    // (a worktree's HEAD is its own, its branch refs the main repository's).
    let mut watch = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watch.push(branch);
    }
    for name in watch {
        if let Some(path) = git(dir, &["rev-parse", "--git-path", &name]) {
            let path = dir.join(path);
            // A path that does not exist would make cargo rerun every build.
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    Some(commit)
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}
