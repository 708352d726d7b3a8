//! `--web-config FILE`: the YAML format of the Prometheus exporter toolkit
//! (the file node_exporter and friends take), so one file serves a fleet:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt      # relative paths: to the config file's folder
//!   key_file: server.key
//!   min_version: TLS12         # optional: TLS12 (default) or TLS13
//! basic_auth_users:
//!   prometheus: $2y$10$...     # bcrypt hashes (htpasswd -nBC 10 "" | tr -d ':\n')
//! ```
//!
//! Settings sockleak does not implement (client certificates, cipher suites,
//! HTTP headers, HTTP/2) are refused by name rather than ignored: a silently
//! ignored security setting is worse than an error. A bcrypt cost above
//! [`MAX_BCRYPT_COST`] is refused too: the cost is exponential (31 would take
//! days per verification), and every scrape with uncached credentials pays it.

use anyhow::{bail, Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Highest bcrypt cost accepted. Each step doubles the verification time:
/// 10 (htpasswd's usual choice) is tens of ms, 12 a few hundred, 14 over a
/// second of one core, and the format allows up to 31.
pub const MAX_BCRYPT_COST: u32 = 12;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    tls_server_config: Option<RawTls>,
    basic_auth_users: Option<BTreeMap<String, String>>,
    /// exporter-toolkit's `http_server_config` (headers, http2): refused.
    http_server_config: Option<serde_norway::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: Option<String>,
    key_file: Option<String>,
    min_version: Option<String>,
    max_version: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    cipher_suites: Option<serde_norway::Value>,
    curve_preferences: Option<serde_norway::Value>,
    prefer_server_cipher_suites: Option<serde_norway::Value>,
}

/// The validated web configuration.
#[derive(Clone, Default)]
pub struct WebConfig {
    /// TLS for every connection, when configured.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// user → bcrypt hash; empty: no authentication.
    pub users: BTreeMap<String, String>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl WebConfig {
    /// Reads and validates `path`: the certificate and key load, every hash
    /// is a bcrypt hash.
    pub fn load(path: &Path) -> Result<WebConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--web-config {}: read", path.display()))?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        WebConfig::parse(&text, base).with_context(|| format!("--web-config {}", path.display()))
    }

    /// Parses the YAML text; relative file names are resolved against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<WebConfig> {
        // An empty file is a valid config that turns nothing on.
        let raw: RawWebConfig = if text.trim().is_empty() {
            RawWebConfig {
                tls_server_config: None,
                basic_auth_users: None,
                http_server_config: None,
            }
        } else {
            serde_norway::from_str(text).context("parse YAML")?
        };
        if raw.http_server_config.is_some() {
            bail!("http_server_config (headers, http2) is not supported by sockleak");
        }
        let mut users = BTreeMap::new();
        for (user, hash) in raw.basic_auth_users.unwrap_or_default() {
            if user.contains(':') {
                bail!("basic_auth_users: user name {user:?} must not contain ':'");
            }
            let parts = hash.parse::<bcrypt::HashParts>().map_err(|e| {
                anyhow::anyhow!("basic_auth_users: {user}: not a bcrypt hash ({e})")
            })?;
            let cost = parts.get_cost();
            if cost > MAX_BCRYPT_COST {
                bail!(
                    "basic_auth_users: {user}: bcrypt cost {cost} is above the maximum \
                     {MAX_BCRYPT_COST} (every verification would pin a CPU for seconds or \
                     more): rehash the password with a lower cost (htpasswd -nBC 10 {user})"
                );
            }
            users.insert(user, hash);
        }
        let tls = match raw.tls_server_config {
            Some(t) => Some(Arc::new(tls_config(t, base)?)),
            None => None,
        };
        Ok(WebConfig { tls, users })
    }
}

fn resolve(base: &Path, file: &str) -> PathBuf {
    let p = Path::new(file);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn version(name: &str, field: &str) -> Result<&'static rustls::SupportedProtocolVersion> {
    match name {
        "TLS12" => Ok(&rustls::version::TLS12),
        "TLS13" => Ok(&rustls::version::TLS13),
        // TLS 1.0 and 1.1 are not offered by rustls at all.
        "TLS10" | "TLS11" => {
            bail!("tls_server_config.{field}: {name} is not supported (TLS12 or TLS13)")
        }
        other => bail!("tls_server_config.{field}: {other:?}: expected TLS12 or TLS13"),
    }
}

fn tls_config(t: RawTls, base: &Path) -> Result<rustls::ServerConfig> {
    for (set, name) in [
        (t.cipher_suites.is_some(), "cipher_suites"),
        (t.curve_preferences.is_some(), "curve_preferences"),
        (
            t.prefer_server_cipher_suites.is_some(),
            "prefer_server_cipher_suites",
        ),
        (t.client_ca_file.is_some(), "client_ca_file"),
    ] {
        if set {
            bail!("tls_server_config.{name} is not supported by sockleak (rustls picks safe defaults; client certificates are not implemented: use basic auth)");
        }
    }
    match t.client_auth_type.as_deref() {
        None | Some("NoClientCert") => {}
        Some(other) => bail!(
            "tls_server_config.client_auth_type {other:?} is not supported by sockleak (only NoClientCert): use basic auth"
        ),
    }
    let (Some(cert_file), Some(key_file)) = (t.cert_file, t.key_file) else {
        bail!("tls_server_config needs both cert_file and key_file");
    };
    let cert_path = resolve(base, &cert_file);
    let key_path = resolve(base, &key_file);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("cert_file {}: {e}", cert_path.display()))?;
    if certs.is_empty() {
        bail!("cert_file {}: no certificate in it", cert_path.display());
    }
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| anyhow::anyhow!("key_file {}: {e}", key_path.display()))?;

    let min = version(t.min_version.as_deref().unwrap_or("TLS12"), "min_version")?;
    let max = version(t.max_version.as_deref().unwrap_or("TLS13"), "max_version")?;
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [&rustls::version::TLS12, &rustls::version::TLS13]
            .into_iter()
            .filter(|v| {
                let n = u16::from(v.version);
                n >= u16::from(min.version) && n <= u16::from(max.version)
            })
            .collect();
    if versions.is_empty() {
        bail!("tls_server_config: min_version is above max_version");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("certificate and key do not form a usable pair")?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_checked_as_bcrypt_hashes() {
        let hash = bcrypt::hash("pw", 4).expect("hash");
        let ok = WebConfig::parse(
            &format!("basic_auth_users:\n  alice: '{hash}'\n"),
            Path::new("."),
        )
        .expect("valid");
        assert_eq!(ok.users.len(), 1);
        assert!(ok.tls.is_none());
        let err = WebConfig::parse("basic_auth_users:\n  alice: plaintext\n", Path::new("."))
            .expect_err("not a hash");
        assert!(
            format!("{err:#}").contains("alice: not a bcrypt hash"),
            "{err:#}"
        );
    }

    #[test]
    fn bcrypt_costs_above_the_maximum_are_refused_naming_user_and_cost() {
        let at_max = bcrypt::hash_with_salt("pw", MAX_BCRYPT_COST, [7; 16])
            .expect("hash")
            .to_string();
        let ok = WebConfig::parse(
            &format!("basic_auth_users:\n  bob: '{at_max}'\n"),
            Path::new("."),
        )
        .expect("the maximum cost is accepted");
        assert_eq!(ok.users.len(), 1);
        // The same salt and digest with a higher cost field: parsing must
        // refuse it without ever hashing at that cost.
        for cost in [13, 31] {
            let hash = at_max.replacen("$12$", &format!("${cost}$"), 1);
            assert_ne!(hash, at_max);
            let err = WebConfig::parse(
                &format!("basic_auth_users:\n  alice: '{at_max}'\n  carol: '{hash}'\n"),
                Path::new("."),
            )
            .expect_err("too costly");
            let msg = format!("{err:#}");
            assert!(
                msg.contains(&format!(
                    "carol: bcrypt cost {cost} is above the maximum 12"
                )),
                "{msg}"
            );
        }
    }

    #[test]
    fn unsupported_settings_are_refused_by_name() {
        for (yaml, word) in [
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n",
                "client_ca_file",
            ),
            (
                "tls_server_config:\n  client_auth_type: RequireAndVerifyClientCert\n",
                "client_auth_type",
            ),
            (
                "http_server_config:\n  http2: false\n",
                "http_server_config",
            ),
            ("tls_config:\n  cert_file: a\n", "tls_config"),
            (
                "tls_server_config:\n  cert_file: a\n",
                "both cert_file and key_file",
            ),
        ] {
            let err = WebConfig::parse(yaml, Path::new(".")).expect_err(yaml);
            assert!(format!("{err:#}").contains(word), "{yaml}: {err:#}");
        }
        assert!(WebConfig::parse("", Path::new(".")).is_ok());
    }

    #[test]
    fn missing_certificate_files_name_the_path() {
        let err = WebConfig::parse(
            "tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n",
            Path::new("/nonexistent-dir"),
        )
        .expect_err("missing");
        assert!(
            format!("{err:#}").contains("/nonexistent-dir/nope.crt"),
            "{err:#}"
        );
    }
}
