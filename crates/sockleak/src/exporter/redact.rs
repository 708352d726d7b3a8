//! Hides secrets in a command line before it becomes a metric label
//! (`--label-cmdline`): metrics leave the host, land in a TSDB and on
//! dashboards, and command lines routinely carry passwords and tokens.
//!
//! The rules err on the side of hiding (a port after `-p` is hidden too):
//!
//! Each argument is looked at on its own (a value with spaces is one
//! argument, hidden whole):
//!
//! - the value after a secret-looking flag: `--password X`, `--token X`,
//!   `-p X`, `-a X` (redis-cli), and `--db-password=X` / `-pX` forms; a
//!   value that starts with `--` is taken for the next flag;
//! - the password of `user:password` after `-u`/`--user` (curl, wget);
//! - the value of a secret-looking JSON member (`{"password": "x"}`) and of
//!   a header given as one argument (`Authorization: Bearer x`);
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

/// What an argument says about the one after it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Next {
    Keep,
    /// A value to hide whole (`--password VALUE`, `-a VALUE`).
    Hide,
    /// `user:password` whose password part goes (`curl -u`, `--user`).
    UserPassword,
}

/// The command line with secrets replaced by `<redacted>`, cut to
/// `max_chars` characters (a cut is marked with '…'). The line is split into
/// its arguments first (sockleak quotes those with spaces, see
/// `sockleak_model::process::join_args`), so a value with spaces is hidden
/// whole.
pub fn redact_cmdline(cmdline: &str, max_chars: usize) -> String {
    let args = sockleak_model::process::split_args(cmdline);
    let mut out: Vec<String> = Vec::with_capacity(args.len());
    let mut next = Next::Keep;
    for arg in &args {
        match std::mem::replace(&mut next, Next::Keep) {
            // A value that starts with "--" is the next flag: the one before
            // was a boolean.
            Next::Hide if !arg.starts_with("--") => {
                // "Authorization: Bearer X": the scheme word stays, X goes.
                let scheme =
                    arg.eq_ignore_ascii_case("bearer") || arg.eq_ignore_ascii_case("basic");
                if scheme {
                    out.push(arg.clone());
                    next = Next::Hide;
                } else {
                    out.push(REDACTED.to_string());
                }
                continue;
            }
            Next::UserPassword if !arg.starts_with('-') => {
                out.push(hide_password_of_user(arg));
                continue;
            }
            _ => {}
        }
        let (redacted, n) = redact_arg(arg);
        next = n;
        out.push(redacted);
    }
    crate::output::truncate(&sockleak_model::process::join_args(&out), max_chars)
}

/// `user:password` → `user:<redacted>`; a bare user stays.
fn hide_password_of_user(v: &str) -> String {
    match v.split_once(':') {
        Some((user, _)) => format!("{user}:{REDACTED}"),
        None => v.to_string(),
    }
}

/// Flags whose value is `user:password` (curl, wget, many clients).
fn is_user_flag(name: &str) -> bool {
    matches!(name, "u" | "U" | "user" | "proxy-user")
}

/// Short flags that take a password in common clients: `-p` (mysql, many
/// tools; also a port, hidden all the same), `-a` (redis-cli).
fn is_secret_short(name: &str) -> bool {
    matches!(name, "p" | "a")
}

/// Redacts one argument; says what the next one is.
fn redact_arg(arg: &str) -> (String, Next) {
    let lower = arg.to_ascii_lowercase();
    if lower == "bearer" || lower == "basic" {
        return (arg.to_string(), Next::Hide);
    }
    if let Some(name) = arg.strip_prefix('-') {
        let name_only = name.trim_start_matches('-');
        if let Some((flag, value)) = name_only.split_once('=') {
            let keep = arg.len() - name_only.len() + flag.len() + 1;
            if is_secret_short(flag) || is_secret_name(flag) {
                return (format!("{}{REDACTED}", &arg[..keep]), Next::Keep);
            }
            if is_user_flag(flag) {
                return (
                    format!("{}{}", &arg[..keep], hide_password_of_user(value)),
                    Next::Keep,
                );
            }
            // Not a secret flag: its value may still hold secrets.
            return (redact_text(arg), Next::Keep);
        }
        if !name.starts_with('-') && name.starts_with('p') && name.len() > 1 {
            // mysql-style `-pSECRET` (no space): hide everything after -p.
            return (format!("-p{REDACTED}"), Next::Keep);
        }
        let next = if is_secret_short(name_only) || is_secret_name(name_only) {
            Next::Hide
        } else if is_user_flag(name_only) {
            Next::UserPassword
        } else {
            Next::Keep
        };
        return (arg.to_string(), next);
    }
    // "Authorization:" and friends, as in curl -H Authorization: Bearer x.
    if lower.ends_with(':') && is_secret_name(&lower) {
        return (arg.to_string(), Next::Hide);
    }
    (redact_text(arg), Next::Keep)
}

/// Secrets inside one argument's text: a header (`Authorization: Bearer
/// x` as one argument), JSON (`{"password": "x"}`), a URL's password and
/// `key=value` pairs.
fn redact_text(arg: &str) -> String {
    if let Some((name, _)) = arg.split_once(':') {
        let name = name.trim();
        if !name.is_empty()
            && !name.contains(['/', '{', '"', ' ', '='])
            && is_secret_name(name)
            && !arg.contains("://")
        {
            return format!("{name}: {REDACTED}");
        }
    }
    redact_pairs(&redact_url(&redact_json(arg)))
}

/// Hides the values of JSON members whose key looks secret:
/// `{"password": "a b"}` → `{"password": "<redacted>"}`; bare values
/// (numbers, true) up to the next `,` or `}`.
fn redact_json(arg: &str) -> String {
    if !arg.contains('"') || !arg.contains(':') {
        return arg.to_string();
    }
    let b = arg.as_bytes();
    let mut out = String::with_capacity(arg.len());
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        if b[i] != b'"' {
            i += 1;
            continue;
        }
        // A string: find its end (backslash escapes).
        let Some(end) = string_end(b, i) else { break };
        let key = &arg[i + 1..end];
        let mut j = end + 1;
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        if j < b.len() && b[j] == b':' && is_secret_name(key) {
            j += 1;
            while j < b.len() && b[j].is_ascii_whitespace() {
                j += 1;
            }
            let (vs, ve) = if j < b.len() && b[j] == b'"' {
                match string_end(b, j) {
                    Some(e) => (j + 1, e),
                    None => (j + 1, b.len()),
                }
            } else {
                let e = arg[j..].find([',', '}']).map_or(b.len(), |k| j + k);
                (j, e)
            };
            out.push_str(&arg[copied..vs]);
            out.push_str(REDACTED);
            copied = ve;
            i = ve.max(j) + 1;
            continue;
        }
        i = end + 1;
    }
    out.push_str(&arg[copied.min(arg.len())..]);
    out
}

/// The index of the quote that ends the JSON string starting at `start`.
fn string_end(b: &[u8], start: usize) -> Option<usize> {
    let mut k = start + 1;
    while k < b.len() {
        match b[k] {
            b'\\' => k += 2,
            b'"' => return Some(k),
            _ => k += 1,
        }
    }
    None
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
        // After the last character that is no key character (which may be
        // wider than one byte: a lossily decoded cmdline holds U+FFFD).
        let key_start = rest[..eq]
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
            .map_or(0, |(i, c)| i + c.len_utf8());
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

    /// The audit's cases: each leaked before arguments were redacted one
    /// by one (the line was split at spaces).
    #[test]
    fn values_with_spaces_and_client_flags_are_hidden_whole() {
        let line = |args: &[&str]| sockleak_model::process::join_args(args);
        let out = r(&line(&["app", "--password", "my secret", "-v"]));
        assert_eq!(out, "app --password <redacted> -v");
        let out = r(&line(&["redis-cli", "-a", "s3cr3t", "ping"]));
        assert_eq!(out, "redis-cli -a <redacted> ping");
        let out = r(&line(&["curl", "-u", "bob:hunter2", "http://x"]));
        assert_eq!(out, "curl -u bob:<redacted> http://x");
        let out = r(&line(&["curl", "--user=bob:hunter2", "http://x"]));
        assert_eq!(out, "curl --user=bob:<redacted> http://x");
        let out = r(&line(&[
            "curl",
            "-H",
            "Authorization: Bearer abc.def",
            "http://x",
        ]));
        assert_eq!(out, "curl -H 'Authorization: <redacted>' http://x");
        let out = r(&line(&[
            "app",
            "--config",
            r#"{"user":"a","password":"p w","port":1}"#,
        ]));
        assert!(!out.contains("p w"), "{out}");
        assert!(
            out.contains(r#""user":"a""#) && out.contains(r#""port":1"#),
            "{out}"
        );
        let out = r(&line(&["app", "--data", r#"{"api_key": 12345}"#]));
        assert!(!out.contains("12345"), "{out}");
    }

    proptest::proptest! {
        /// A secret after any secret-looking flag, with spaces or quotes,
        /// never appears in the output, in either form of the flag.
        #[test]
        fn a_secret_after_a_secret_flag_never_shows(
            flag in proptest::sample::select(vec![
                "--password", "--pass", "--token", "--api-key", "--secret", "--auth",
                "--db-password", "-p", "-a", "--client-secret", "--session",
            ]),
            secret in "[A-Za-z0-9][A-Za-z0-9 '\"!@#%&*()]{5,24}",
        ) {
            let fixed = "app --verbose <redacted>";
            proptest::prop_assume!(!fixed.contains(secret.as_str()));
            let join = sockleak_model::process::join_args;
            for line in [
                join(&["app", flag, secret.as_str(), "--verbose"]),
                join(&["app", &format!("{flag}={secret}"), "--verbose"]),
            ] {
                let out = r(&line);
                proptest::prop_assert!(!out.contains(secret.as_str()), "{} -> {}", line, out);
            }
        }
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
