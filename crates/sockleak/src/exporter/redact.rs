//! Hides secrets in a command line before it becomes a metric label
//! (`--label-cmdline`): metrics leave the host, land in a TSDB and on
//! dashboards, and command lines routinely carry passwords and tokens.
//!
//! The rules err on the side of hiding (a port after `-p` is hidden too):
//!
//! - the value after a secret-looking flag: `--password X`, `--token X`,
//!   `-p X`, and `--db-password=X` / `-pX` forms;
//! - the value of any `key=value` whose key looks secret (`PASSWORD=`,
//!   `api_key=`, a `?token=` inside a URL), up to `&`, `;` or `,`;
//! - the password of a URL (`postgres://user:pw@host`);
//! - the word after `Bearer` / `Basic`, and after a header name such as
//!   `Authorization:`.
//!
//! A secret passed as a bare positional argument cannot be recognised: keep
//! `--label-cmdline` off where that happens.

/// What replaces a hidden value.
pub const REDACTED: &str = "<redacted>";

/// Lower-case fragments that make a flag or key name secret.
const SECRET_WORDS: [&str; 9] = [
    "pass",
    "pwd",
    "secret",
    "token",
    "key",
    "auth",
    "credential",
    "cookie",
    "session",
];

fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| n.contains(w))
}

/// The command line with secrets replaced by `<redacted>`, cut to
/// `max_chars` characters (a cut is marked with '…').
pub fn redact_cmdline(cmdline: &str, max_chars: usize) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut hide_next = false;
    for tok in cmdline.split(' ') {
        if tok.is_empty() {
            out.push(String::new());
            continue;
        }
        if hide_next && !tok.starts_with("--") {
            // "Authorization: Bearer X": the scheme word stays, X goes.
            let scheme = tok.eq_ignore_ascii_case("bearer") || tok.eq_ignore_ascii_case("basic");
            out.push(if scheme {
                tok.to_string()
            } else {
                REDACTED.to_string()
            });
            hide_next = scheme;
            continue;
        }
        let (tok, next) = redact_token(tok);
        hide_next = next;
        out.push(tok);
    }
    crate::output::truncate(&out.join(" "), max_chars)
}

/// Redacts one token; the bool says whether the next token is a value to hide.
fn redact_token(tok: &str) -> (String, bool) {
    let lower = tok.to_ascii_lowercase();
    if lower == "bearer" || lower == "basic" {
        return (tok.to_string(), true);
    }
    if let Some(name) = tok.strip_prefix('-') {
        let name_only = name.trim_start_matches('-');
        if let Some((flag, _)) = name_only.split_once('=') {
            if flag == "p" || is_secret_name(flag) {
                let keep = tok.len() - name_only.len() + flag.len() + 1;
                return (format!("{}{REDACTED}", &tok[..keep]), false);
            }
            // Not a secret flag: its value may still hold key=value pairs.
            return (redact_pairs(&redact_url(tok)), false);
        }
        if !name.starts_with('-') && name.starts_with('p') && name.len() > 1 {
            // mysql-style `-pSECRET` (no space): hide everything after -p.
            return (format!("-p{REDACTED}"), false);
        }
        return (
            tok.to_string(),
            name_only == "p" || is_secret_name(name_only),
        );
    }
    // "Authorization:" and friends, as in curl -H 'Authorization: Bearer x'.
    if lower.ends_with(':') && is_secret_name(&lower) {
        return (tok.to_string(), true);
    }
    (redact_pairs(&redact_url(tok)), false)
}

/// `scheme://user:password@host` → `scheme://user:<redacted>@host`.
fn redact_url(tok: &str) -> String {
    let Some(start) = tok.find("://").map(|i| i + 3) else {
        return tok.to_string();
    };
    let rest = &tok[start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return tok.to_string();
    };
    let Some(colon) = authority[..at].find(':') else {
        return tok.to_string();
    };
    format!(
        "{}{}:{REDACTED}{}",
        &tok[..start],
        &authority[..colon],
        &rest[at..]
    )
}

/// Hides the value of every `key=value` whose key looks secret, up to the
/// next `&`, `;` or `,` (query strings, DSNs, env-style assignments).
fn redact_pairs(tok: &str) -> String {
    let mut out = String::with_capacity(tok.len());
    let mut rest = tok;
    while let Some(eq) = rest.find('=') {
        let key_start = rest[..eq]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'))
            .map_or(0, |i| i + 1);
        let key = &rest[key_start..eq];
        out.push_str(&rest[..=eq]);
        let after = &rest[eq + 1..];
        let value_end = after.find(['&', ';', ',']).unwrap_or(after.len());
        if is_secret_name(key) && value_end > 0 {
            out.push_str(REDACTED);
            rest = &after[value_end..];
        } else {
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> String {
        redact_cmdline(s, 1000)
    }

    #[test]
    fn flag_values_are_hidden() {
        assert_eq!(
            r("app --password hunter2 --port 80"),
            "app --password <redacted> --port 80"
        );
        assert_eq!(r("app --token=abc --x=1"), "app --token=<redacted> --x=1");
        assert_eq!(r("app -p hunter2 -v"), "app -p <redacted> -v");
        assert_eq!(
            r("mysql -uroot -phunter2 db"),
            "mysql -uroot -p<redacted> db"
        );
        assert_eq!(r("app --api-key K1 x"), "app --api-key <redacted> x");
        assert_eq!(r("app -db-password=pw"), "app -db-password=<redacted>");
        // A boolean secret-looking flag followed by another flag hides nothing.
        assert_eq!(r("app --no-auth --verbose"), "app --no-auth --verbose");
    }

    #[test]
    fn key_value_pairs_and_urls_are_hidden() {
        assert_eq!(
            r("env PGPASSWORD=pw DB_USER=bob"),
            "env PGPASSWORD=<redacted> DB_USER=bob"
        );
        assert_eq!(
            r("curl https://h/x?user=a&access_token=t0k&z=1"),
            "curl https://h/x?user=a&access_token=<redacted>&z=1"
        );
        assert_eq!(
            r("psql postgres://bob:s3cret@db:5432/app"),
            "psql postgres://bob:<redacted>@db:5432/app"
        );
        assert_eq!(
            r("java -Djavax.net.ssl.keyStorePassword=pw -jar a.jar"),
            "java -Djavax.net.ssl.keyStorePassword=<redacted> -jar a.jar"
        );
        assert_eq!(
            r("curl -H Authorization: Bearer abc.def http://x"),
            "curl -H Authorization: Bearer <redacted> http://x"
        );
    }

    #[test]
    fn plain_command_lines_are_unchanged_and_long_ones_cut() {
        let plain = "nginx -g daemon off; --port 8080 /etc/nginx.conf";
        assert_eq!(r(plain), plain);
        let long = "x".repeat(300);
        let cut = redact_cmdline(&long, 256);
        assert_eq!(cut.chars().count(), 256);
        assert!(cut.ends_with('…'));
    }
}
