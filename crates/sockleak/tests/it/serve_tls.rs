//! `--web-config`: TLS with a self-signed certificate made by `openssl` in
//! the test, and basic auth with a bcrypt hash made by the bcrypt crate.
//! Right credentials get the metrics over HTTPS (curl verifies the
//! certificate); wrong or missing ones get 401; plain HTTP on the TLS port
//! gets nothing; /healthz needs no credentials; a bad web config is refused
//! at startup with the file named, and so is a bcrypt cost above 12.

use crate::serve_support::*;
use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Command;

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("sockleak-it-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("mkdir temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `curl` exit status and HTTP code (000 when no HTTP answer) and body.
fn curl(dir: &Path, url: &str, user: Option<&str>) -> (String, String) {
    let mut c = Command::new("curl");
    c.args(["-s", "--max-time", "10", "--cacert"])
        .arg(dir.join("cert.pem"))
        .args(["-w", "\n%{http_code}"]);
    if let Some(u) = user {
        c.args(["-u", u]);
    }
    let out = c.arg(url).output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
    (code.to_string(), body.to_string())
}

#[test]
fn tls_and_basic_auth_from_a_web_config() {
    let test = "tls_and_basic_auth_from_a_web_config";
    if !require_tool(test, "openssl", "openssl") || !require_tool(test, "curl", "curl") {
        return;
    }
    let dir = TempDir::new("tls");
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(dir.0.join("key.pem"))
        .arg("-out")
        .arg(dir.0.join("cert.pem"))
        .output()
        .expect("run openssl");
    assert!(
        ok.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // Cost 4: the lowest bcrypt allows, so the test stays fast.
    let hash = bcrypt::hash("s3cret", 4).expect("bcrypt hash");
    // Relative file names: resolved against the config file's folder.
    std::fs::write(
        dir.0.join("web.yml"),
        format!(
            "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n\
             basic_auth_users:\n  prom: '{hash}'\n"
        ),
    )
    .expect("write web.yml");
    let config = dir.0.join("web.yml");
    let config = config.to_str().expect("utf-8 path");
    // Ready once it listens: /healthz over plain HTTP would not answer.
    let exporter = Exporter::start_with(&["--interval", "1s", "--web-config", config], false);
    let base = format!("https://{}", exporter.addr);
    exporter.wait_until(
        std::time::Duration::from_secs(20),
        "the first scan over TLS",
        || curl(&dir.0, &format!("{base}/healthz"), None).0 == "200",
    );

    let (code, body) = curl(&dir.0, &format!("{base}/metrics"), Some("prom:s3cret"));
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("sockleak_build_info"), "{body}");
    // Again: the second time comes from the verified-credentials cache.
    assert_eq!(
        curl(&dir.0, &format!("{base}/metrics"), Some("prom:s3cret")).0,
        "200"
    );

    for (user, why) in [
        (Some("prom:wrong"), "wrong password"),
        (Some("nobody:s3cret"), "unknown user"),
        (None, "no credentials"),
    ] {
        let (code, body) = curl(&dir.0, &format!("{base}/metrics"), user);
        assert_eq!(code, "401", "{why}: {body}");
        assert!(
            !body.contains("sockleak_build_info"),
            "{why}: metrics leaked"
        );
    }
    // /healthz stays open for probes; it says nothing but "ok".
    assert_eq!(curl(&dir.0, &format!("{base}/healthz"), None).0, "200");
    // Plain HTTP on the TLS port: no HTTP answer at all.
    let plain = get(exporter.addr, "/metrics", &[]);
    assert!(
        plain.as_ref().map_or(true, |r| r.status != 200),
        "plain HTTP answered {:?}",
        plain.map(|r| r.status)
    );
    // The refusals are counted (rendered at the next scan).
    exporter.wait_until(
        std::time::Duration::from_secs(10),
        "the 401 counter",
        || {
            let (_, body) = curl(&dir.0, &format!("{base}/metrics"), Some("prom:s3cret"));
            value_of(&body, "sockleak_http_unauthorized_total", &[]).is_some_and(|n| n >= 3.0)
        },
    );
}

#[test]
fn a_bad_web_config_is_refused_at_startup() {
    let dir = TempDir::new("badweb");
    let path = dir.0.join("web.yml");
    std::fs::write(&path, "basic_auth_users:\n  prom: plaintext-password\n").expect("write");
    let p = path.to_str().expect("utf-8 path");
    let (code, _, err) = run(&["serve", "--listen", "127.0.0.1:0", "--web-config", p]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(p) && err.contains("not a bcrypt hash"),
        "{err}"
    );
    std::fs::write(
        &path,
        "tls_server_config:\n  cert_file: x.pem\n  key_file: y.pem\n  client_ca_file: ca.pem\n",
    )
    .expect("write");
    let (code, _, err) = run(&["serve", "--listen", "127.0.0.1:0", "--web-config", p]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("client_ca_file is not supported"), "{err}");
    // A bcrypt cost far above the maximum (31 would pin a core for days per
    // verification): refused at startup, naming the user and the cost. The
    // hash is a real cost-4 one with its cost field raised, never computed.
    let cheap = bcrypt::hash("pw", 4).expect("bcrypt hash");
    let costly = cheap.replacen("$04$", "$31$", 1);
    std::fs::write(
        &path,
        format!("basic_auth_users:\n  ok: '{cheap}'\n  slowpoke: '{costly}'\n"),
    )
    .expect("write");
    let t = std::time::Instant::now();
    let (code, _, err) = run(&["serve", "--listen", "127.0.0.1:0", "--web-config", p]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(p) && err.contains("slowpoke: bcrypt cost 31 is above the maximum 12"),
        "{err}"
    );
    assert!(
        t.elapsed() < std::time::Duration::from_secs(10),
        "refused at once"
    );
    // Broken YAML: the file, the parser's problem and where it is.
    std::fs::write(&path, "basic_auth_users:\n  prom: \"unterminated\n").expect("write");
    let (code, _, err) = run(&["serve", "--listen", "127.0.0.1:0", "--web-config", p]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(p) && err.contains("parse YAML") && err.contains("line 2"),
        "{err}"
    );
}
