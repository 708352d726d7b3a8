//! The language runtime a process runs, guessed from its command name and
//! line, so advice leads with the fix in that runtime's words. A guess from
//! names only: a Go or C binary carries no marker there, and both get the
//! native advice.

use crate::process::Process;

/// A runtime with its own idioms for closing connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// The JVM: `java`, and launchers whose command line runs `java`.
    Java,
    /// CPython and friends: `python`, `python3.11`, `gunicorn` workers.
    Python,
    /// Node.js: `node`, `nodejs`.
    Node,
    /// Anything else: C, C++, Go, Rust.
    Native,
}

impl Runtime {
    /// The runtime of `comm` / `cmdline` (arguments joined by spaces).
    pub fn guess(comm: &str, cmdline: &str) -> Runtime {
        let exe = cmdline
            .split_whitespace()
            .next()
            .map(|a| a.rsplit('/').next().unwrap_or(a))
            .unwrap_or("");
        let is = |name: &str, p: &str| name == p || name.starts_with(&format!("{p}."));
        for name in [comm, exe] {
            if name == "java" || name.starts_with("java") && !name.starts_with("javac") {
                return Runtime::Java;
            }
            if name.starts_with("python")
                || is(name, "pypy")
                || name == "gunicorn"
                || name == "uwsgi"
            {
                return Runtime::Python;
            }
            if name == "node" || name == "nodejs" || name.starts_with("node-") {
                return Runtime::Node;
            }
        }
        Runtime::Native
    }

    /// [`Self::guess`] for a process.
    pub fn of(p: &Process) -> Runtime {
        Runtime::guess(&p.comm, &p.cmdline)
    }

    /// How a server in this runtime closes a connection its client hung up.
    pub fn server_close_fix(self) -> &'static str {
        match self {
            Runtime::Java => {
                "Java: when read() returns -1, close the Socket (or the request's \
                 InputStream/HttpExchange) in a finally block or try-with-resources, also on \
                 every exception path. "
            }
            Runtime::Python => {
                "Python: when recv() returns b'' (or a stream's read() returns empty), call \
                 conn.close(); a `with conn:` block or contextlib.closing does it on every \
                 path, exceptions included. "
            }
            Runtime::Node => {
                "Node: end or destroy the socket on its 'end' event (or create the server \
                 with allowHalfOpen: false) and destroy it on 'error'. "
            }
            Runtime::Native => {
                "C: close(fd) when read() returns 0 and before each early return (one \
                 cleanup label); Go: defer conn.Close() right after Accept. "
            }
        }
    }

    /// How a client in this runtime releases a response it did not read.
    pub fn unread_response_fix(self) -> &'static str {
        match self {
            Runtime::Java => {
                "Java: close every response InputStream (AWS SDK S3Object content, Apache \
                 HttpClient EntityUtils.consume) in try-with-resources, so the pool gets the \
                 connection back. "
            }
            Runtime::Python => {
                "Python requests/urllib3: use `with session.get(...) as resp:` or call \
                 resp.close() (with stream=True, read or close the body), so urllib3 returns \
                 the connection to its pool. "
            }
            Runtime::Node => {
                "Node: consume every response (res.resume()) or call res.destroy() on the \
                 paths that do not read it. "
            }
            Runtime::Native => {
                "Go: defer resp.Body.Close() (and drain it to reuse the connection); C: \
                 close the connection once the response is handled or abandoned. "
            }
        }
    }

    /// How a client in this runtime closes a connection the server hung up.
    pub fn client_close_fix(self) -> &'static str {
        match self {
            Runtime::Java => {
                "Java: close the Socket or connection in try-with-resources, also when a \
                 read returns -1 or throws. "
            }
            Runtime::Python => {
                "Python: close the socket when recv() returns b'' and on exceptions (`with \
                 socket.create_connection(...) as s:`). "
            }
            Runtime::Node => {
                "Node: listen for 'end' and 'close' and destroy the socket; do not keep a \
                 reference to ended sockets. "
            }
            Runtime::Native => {
                "C: close() before each early return, on error paths too; Go: defer \
                 conn.Close() right after Dial. "
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtimes_are_told_by_command_name_or_first_argument() {
        assert_eq!(
            Runtime::guess("java", "/usr/bin/java -jar app.jar"),
            Runtime::Java
        );
        assert_eq!(
            Runtime::guess("app-launcher", "/opt/jdk/bin/java -cp x Main"),
            Runtime::Java
        );
        assert_eq!(
            Runtime::guess("python3", "python3 -m http.server"),
            Runtime::Python
        );
        assert_eq!(
            Runtime::guess(
                "python3.11",
                "/root/.pyenv/versions/3.11.7/bin/python3 x.py"
            ),
            Runtime::Python
        );
        assert_eq!(Runtime::guess("node", "node server.js"), Runtime::Node);
        assert_eq!(
            Runtime::guess("nginx", "nginx: worker process"),
            Runtime::Native
        );
        assert_eq!(Runtime::guess("javac", "javac Main.java"), Runtime::Native);
        assert_eq!(Runtime::guess("", ""), Runtime::Native);
    }

    #[test]
    fn every_runtime_leads_with_its_own_words() {
        for (rt, word) in [
            (Runtime::Java, "Java"),
            (Runtime::Python, "Python"),
            (Runtime::Node, "Node"),
            (Runtime::Native, "C"),
        ] {
            for text in [
                rt.server_close_fix(),
                rt.unread_response_fix(),
                rt.client_close_fix(),
            ] {
                assert!(text.contains(word), "{rt:?}: {text}");
            }
        }
    }
}
