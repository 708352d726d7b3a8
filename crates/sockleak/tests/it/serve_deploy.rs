//! The deployment files: the systemd unit passes `systemd-analyze verify`,
//! the DaemonSet grants exactly the documented privileges, the dashboard
//! and alert rules only use documented metrics, and the three capabilities
//! the unit grants are really enough (and really needed): sockleak run as
//! `nobody` with only them sees a root process's socket owners and enters
//! another network namespace; without them it cannot.

use crate::serve_support::*;
use crate::support::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

fn documented_metrics() -> BTreeSet<String> {
    let doc =
        std::fs::read_to_string(repo_root().join("docs/metrics.md")).expect("docs/metrics.md");
    doc.lines()
        .filter_map(|l| l.strip_prefix("### `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect()
}

/// Every `sockleak_*` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("sockleak_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

#[test]
fn dashboard_and_rules_use_only_documented_metrics() {
    let documented = documented_metrics();
    let dash_text =
        std::fs::read_to_string(repo_root().join("deploy/grafana/sockleak-dashboard.json"))
            .expect("dashboard");
    let dash: Value = serde_json::from_str(&dash_text).expect("dashboard is JSON");
    let mut exprs = Vec::new();
    let mut ids = BTreeSet::new();
    for p in dash["panels"].as_array().expect("panels") {
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate panel id"
        );
        assert!(
            p["gridPos"]["w"].as_u64().is_some(),
            "panel without gridPos: {p}"
        );
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push(t["expr"].as_str().expect("expr").to_string());
        }
    }
    assert!(exprs.len() >= 20, "{} queries", exprs.len());
    let vars: Vec<&str> = dash["templating"]["list"]
        .as_array()
        .expect("variables")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    for v in ["datasource", "instance", "comm"] {
        assert!(
            vars.contains(&v),
            "dashboard variable {v} missing: {vars:?}"
        );
    }
    let rules = std::fs::read_to_string(repo_root().join("deploy/prometheus/sockleak.rules.yml"))
        .expect("rules");
    // Panel descriptions mention flags like --min-age, not metrics; only
    // queries and rule expressions are checked.
    let used: BTreeSet<String> = metric_names(&exprs.join("\n"))
        .into_iter()
        .chain(metric_names(&rules))
        .filter(|n| !n.ends_with('_'))
        .collect();
    let unknown: Vec<&String> = used.iter().filter(|n| !documented.contains(*n)).collect();
    assert!(unknown.is_empty(), "not in docs/metrics.md: {unknown:?}");
    // The growth charts the dashboard promises.
    assert!(exprs
        .iter()
        .any(|e| e.contains("deriv(sockleak_close_wait_leak_sockets")));
}

#[test]
fn daemonset_grants_exactly_the_documented_privileges() {
    let text = std::fs::read_to_string(repo_root().join("deploy/kubernetes/daemonset.yaml"))
        .expect("daemonset");
    let docs: Vec<serde_norway::Value> = serde_norway::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML document"))
        .collect();
    let ds = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("DaemonSet"))
        .expect("a DaemonSet");
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(spec["hostPID"].as_bool(), Some(true), "hostPID");
    assert_eq!(spec["hostNetwork"].as_bool(), Some(false), "hostNetwork");
    assert_eq!(spec["automountServiceAccountToken"].as_bool(), Some(false));
    let c = &spec["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(sc["privileged"].as_bool(), Some(false));
    let add: BTreeSet<&str> = sc["capabilities"]["add"]
        .as_sequence()
        .expect("capabilities.add")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(
        add,
        BTreeSet::from(["SYS_PTRACE", "DAC_READ_SEARCH", "SYS_ADMIN"])
    );
    let drop: Vec<&str> = sc["capabilities"]["drop"]
        .as_sequence()
        .expect("capabilities.drop")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(drop, ["ALL"]);
    let args: Vec<&str> = c["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(args.first(), Some(&"serve"));
    assert!(args.contains(&"--listen=0.0.0.0:9915"), "{args:?}");
    assert_eq!(
        c["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
}

#[test]
fn systemd_unit_verifies_and_grants_only_three_capabilities() {
    let unit =
        std::fs::read_to_string(repo_root().join("deploy/systemd/sockleak.service")).expect("unit");
    let caps = |key: &str| -> BTreeSet<String> {
        unit.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    };
    let want: BTreeSet<String> = ["CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH", "CAP_SYS_ADMIN"]
        .map(String::from)
        .into();
    assert_eq!(caps("AmbientCapabilities="), want);
    assert_eq!(caps("CapabilityBoundingSet="), want);
    for line in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "DynamicUser=yes",
        "RestrictNamespaces=net",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} missing");
    }
    let test = "systemd_unit_verifies_and_grants_only_three_capabilities";
    if !require_tool(test, "systemd-analyze", "systemd") {
        return;
    }
    // The .deb installs the binary where the unit starts it.
    assert!(
        unit.lines()
            .any(|l| l.starts_with("ExecStart=/usr/bin/sockleak serve")),
        "ExecStart must be /usr/bin/sockleak, where the .deb installs it"
    );
    // verify checks that ExecStart exists: point it at the built binary.
    let dir = std::env::temp_dir().join(format!("sockleak-it-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join("sockleak.service");
    std::fs::write(
        &path,
        unit.replace("/usr/bin/sockleak", env!("CARGO_BIN_EXE_sockleak")),
    )
    .expect("write unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run systemd-analyze");
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {err}");
    // Unknown or misspelt keys are only warnings: refuse them here.
    assert!(
        !err.contains("sockleak.service"),
        "systemd-analyze verify: {err}"
    );
}

/// Runs `sockleak ARGS` as nobody with only `caps` (setpriv), from a copy
/// of the binary nobody may execute. The JSON document; `None` when
/// sockleak could scan no namespace at all (exit 2, said on stderr).
fn scan_as_nobody(bin: &PathBuf, caps: &str, args: &[&str]) -> Option<Value> {
    let set = if caps.is_empty() {
        "-all".to_string()
    } else {
        format!("-all,{caps}")
    };
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(format!("--inh-caps={set}"))
        .arg(format!("--ambient-caps={set}"))
        .arg(format!("--bounding-set={set}"))
        .arg("--")
        .arg(bin)
        .args(["scan", "--json", "--fail-on", "never"])
        .args(args)
        .output()
        .expect("run setpriv");
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(2) && err.contains("no network namespace could be scanned") {
        return None;
    }
    assert!(
        out.status.success(),
        "sockleak as nobody ({caps}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    validate_schema(&doc, "scan-v1.schema.json");
    Some(doc)
}

#[test]
fn the_three_capabilities_are_enough_and_needed() {
    let test = "the_three_capabilities_are_enough_and_needed";
    if !require_root(test, "switches to nobody with chosen capabilities")
        || !require_tool(test, "setpriv", "util-linux")
        || !require_tool(test, "ip", "iproute2")
    {
        return;
    }
    // A copy nobody can execute (the build tree may be private), removed
    // even when an assertion fails.
    struct RemoveOnDrop(PathBuf);
    impl Drop for RemoveOnDrop {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let dir = std::env::temp_dir().join(format!("sockleak-it-caps-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let _cleanup = RemoveOnDrop(dir.clone());
    let bin = dir.join("sockleak");
    std::fs::copy(env!("CARGO_BIN_EXE_sockleak"), &bin).expect("copy binary");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod bin");

    let peer = Peer::population(&["--small"]); // runs as root
    let pid = peer.pid("server");
    let ns = Netns::create("caps");
    let owned = |doc: &Value| {
        doc["sockets"]
            .as_array()
            .expect("sockets")
            .iter()
            .filter(|s| owners(s).iter().any(|(p, _)| *p == u64::from(pid)))
            .count()
    };
    let scanned = |doc: &Value| {
        doc["host"]["namespaces"]
            .as_array()
            .expect("namespaces")
            .iter()
            .any(|n| n["name"].as_str() == Some(ns.name.as_str()) && n["scanned"] == true)
    };
    let p = pid.to_string();
    let all = "+sys_ptrace,+dac_read_search,+sys_admin";

    let with = scan_as_nobody(&bin, all, &["--pid", &p]).expect("a scan");
    assert!(
        owned(&with) >= 3,
        "with the three capabilities nobody sees the root peer's sockets"
    );
    let with_ns = scan_as_nobody(&bin, all, &["--netns", &ns.name]).expect("a scan");
    assert!(
        scanned(&with_ns),
        "with CAP_SYS_ADMIN nobody enters {}",
        ns.name
    );

    // Controls: each capability matters.
    let without = scan_as_nobody(&bin, "", &["--pid", &p]).expect("a scan");
    assert_eq!(
        owned(&without),
        0,
        "without capabilities the owners stay hidden"
    );
    let no_admin = scan_as_nobody(&bin, "+sys_ptrace,+dac_read_search", &["--netns", &ns.name]);
    assert!(
        !no_admin.as_ref().is_some_and(scanned),
        "without CAP_SYS_ADMIN {} cannot be entered",
        ns.name
    );
    drop(peer);
}
