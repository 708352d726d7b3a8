"""Counting the benchmark's own sockets in each tool's output.

Every tool is checked before it is timed: the sockets it reports inside the
benchmark's address block, per TCP state (and, for tools that show owners,
how many of them have an owner), must equal what the population holds in the
namespaces that tool can see. A tool whose counts disagree is not compared.

A socket belongs to the benchmark when one of its addresses lies in the
run's two 127.x.0.0/16 blocks (servers, clients), or when it is on ::1 and one
of its ports is one of the run's IPv6 listener ports. The host's other
sockets (this machine is shared) are counted apart and never compared.
"""
import collections

# ss state names -> kernel names (include/net/tcp_states.h); netstat, lsof
# and sockleak already print kernel names.
SS_STATES = {
    "ESTAB": "ESTABLISHED", "SYN-SENT": "SYN_SENT", "SYN-RECV": "SYN_RECV",
    "FIN-WAIT-1": "FIN_WAIT1", "FIN-WAIT-2": "FIN_WAIT2", "TIME-WAIT": "TIME_WAIT",
    "UNCONN": "CLOSE", "CLOSE-WAIT": "CLOSE_WAIT", "LAST-ACK": "LAST_ACK",
    "LISTEN": "LISTEN", "CLOSING": "CLOSING",
}
KERNEL_STATES = set(SS_STATES.values())
# netstat spells two states differently
NETSTAT_STATES = {"FIN_WAIT1": "FIN_WAIT1", "FIN_WAIT2": "FIN_WAIT2", "CLOSE": "CLOSE"}


def split_endpoint(text):
    """'127.0.0.1:80', '[::1]:80', '::1:80' (netstat), '*:80', '[::ffff:1.2.3.4]:80',
    '127.0.0.53%lo:53' -> (address, port or None). IPv4-mapped addresses become IPv4."""
    host, _, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    host = host.split("%", 1)[0]
    if host.lower().startswith("::ffff:") and "." in host:
        host = host[7:]
    try:
        p = int(port)
    except ValueError:
        p = None
    return host, p


class BenchFilter:
    """Which sockets are the benchmark's: by address block, and IPv6 listener port."""

    def __init__(self, blocks, v6_ports):
        self.prefixes = tuple("127.%d." % b for b in blocks)
        self.v6_ports = set(v6_ports)

    def __call__(self, local, remote):
        lh, lp = split_endpoint(local)
        rh, rp = split_endpoint(remote)
        if lh.startswith(self.prefixes) or rh.startswith(self.prefixes):
            return True
        if lh == "::1" and (lp in self.v6_ports or (rh == "::1" and rp in self.v6_ports)):
            return True
        return False


class Counts:
    """Per-state counts of the benchmark's sockets in one tool's output."""

    def __init__(self):
        self.states = collections.Counter()
        self.owned = collections.Counter()  # sockets shown with an owner
        self.recv_q = collections.Counter()  # summed Recv-Q per state (ss only)
        self.other = 0  # sockets outside the benchmark (the host's own)
        self.lines = 0

    def add(self, state, owned=None, recv_q=None):
        self.states[state] += 1
        if owned:
            self.owned[state] += 1
        if recv_q is not None:
            self.recv_q[state] += recv_q

    def as_dict(self):
        return {"states": dict(self.states), "owned": dict(self.owned),
                "recv_q": dict(self.recv_q), "other": self.other}


def count_ss(lines, is_bench):
    """ss -tan / -tanp / -tanpi: 'STATE RECVQ SENDQ LOCAL PEER [users:((...))]';
    -i adds indented lines, which are skipped."""
    c = Counts()
    for line in lines:
        if not line or line[0] in " \t":
            continue
        f = line.split()
        if len(f) < 5 or f[0] not in SS_STATES:
            continue
        c.lines += 1
        if not is_bench(f[3], f[4]):
            c.other += 1
            continue
        c.add(SS_STATES[f[0]], owned="users:(" in line, recv_q=int(f[1]))
    return c


def count_netstat(lines, is_bench):
    """netstat -antp: 'tcp[6] RECVQ SENDQ LOCAL FOREIGN STATE PID/PROGRAM|-'."""
    c = Counts()
    for line in lines:
        f = line.split()
        if len(f) < 6 or f[0] not in ("tcp", "tcp6"):
            continue
        c.lines += 1
        if not is_bench(f[3], f[4]):
            c.other += 1
            continue
        state = NETSTAT_STATES.get(f[5], f[5])
        owned = len(f) >= 7 and f[6] != "-" and "/" in f[6]
        c.add(state, owned=owned, recv_q=int(f[1]))
    return c


def count_lsof(lines, is_bench):
    """lsof -nP -iTCP: one line per (process, fd); NAME is 'L->R (STATE)' or 'L (LISTEN)'.
    Only fd-held sockets of lsof's own namespace appear; every line has an owner."""
    c = Counts()
    for line in lines:
        if not line.endswith(")") or " TCP " not in line:
            continue
        name, _, state = line.rpartition(" (")
        state = state[:-1]
        addr = name.split()[-1]
        local, _, remote = addr.partition("->")
        c.lines += 1
        if not is_bench(local, remote or "*:*"):
            c.other += 1
            continue
        c.add(state, owned=True)
    return c


def count_sockleak(doc, is_bench, netns_key):
    """sockleak scan --json (sockleak.scan/v1): {namespace key: Counts}.
    netns_key(socket) says which namespace a socket is in (None: not ours)."""
    per = collections.defaultdict(Counts)
    for s in doc.get("sockets", []):
        key = netns_key(s)
        c = per[key]
        c.lines += 1
        if key is None or not is_bench(s["local"], s["remote"]):
            c.other += 1
            continue
        c.add(s["state"], owned=bool(s.get("owners")), recv_q=s.get("recv_q"))
    return per


def sockleak_summary(lines, pids):
    """The per-process summary table of human `sockleak scan` output (header
    'PID USER COMM ... TCP CL-WAIT ESTAB ...'). Returns (column names found,
    {column: sum over the rows of `pids`}, rows found). Columns are taken by
    header position; the workers' COMM has no spaces."""
    pids = {str(p) for p in pids}
    header = None
    sums = collections.Counter()
    rows = 0
    for line in lines:
        f = line.split()
        if not f:
            if header and rows:
                break  # the table ended
            continue
        if f[0] == "PID" and header is None:
            header = f
            continue
        if header and f[0] in pids and len(f) == len(header):
            rows += 1
            for name, value in zip(header, f):
                if value.isdigit():
                    sums[name] += int(value)
    return (set(header) if header else set()), dict(sums), rows


def compare(expected, got, what):
    """Differences between expected and observed per-state counts, as text
    lines ('CLOSE_WAIT: expected 10, got 9'); empty when they agree."""
    diffs = []
    for state in sorted(set(expected) | set(got)):
        e, g = expected.get(state, 0), got.get(state, 0)
        if e != g:
            diffs.append("%s%s: expected %d, got %d" % (what, state, e, g))
    return diffs


# Canned lines from the real tools (iproute2 6.1, net-tools 2.10, lsof 4.95)
# for the parser self-check in `run --selftest`.
SAMPLES = {
    "ss": [
        "State      Recv-Q Send-Q Local Address:Port  Peer Address:Port Process",
        "LISTEN     0      4096     127.90.0.1:20000      0.0.0.0:*    users:((\"python3\",pid=7,fd=3))",
        "CLOSE-WAIT 1      0        127.90.0.1:20001   127.91.0.1:39826",
        "FIN-WAIT-2 0      0        127.91.0.1:39826   127.90.0.1:20001 users:((\"python3\",pid=8,fd=9))",
        "\t cubic wscale:7,7 rto:204 rtt:0.03/0.015",
        "TIME-WAIT  0      0        127.91.0.101:40000 127.90.0.1:20004",
        "ESTAB      0      0             [::1]:5555        [::1]:41000",
        "ESTAB      0      0             [::1]:41000       [::1]:5555",
        "ESTAB      0      0             [::1]:22          [::1]:41001",
        "ESTAB      0      36        10.0.0.5:22       10.0.0.9:5000",
    ],
    "netstat": [
        "Active Internet connections (servers and established)",
        "Proto Recv-Q Send-Q Local Address           Foreign Address         State       PID/Program name",
        "tcp        0      0 127.90.0.1:20000        0.0.0.0:*               LISTEN      7/python3",
        "tcp        6      0 127.91.0.1:40000        127.90.0.1:20002        CLOSE_WAIT  8/python3",
        "tcp        0      0 127.91.0.101:40000      127.90.0.1:20004        TIME_WAIT   -",
        "tcp6       0      0 ::1:5555                ::1:41000               ESTABLISHED 7/python3",
        "tcp        0      0 10.0.0.5:22             10.0.0.9:5000           ESTABLISHED 1/sshd: root",
    ],
    "lsof": [
        "COMMAND PID USER   FD   TYPE DEVICE SIZE/OFF NODE NAME",
        "python3   7 root    3u  IPv4 170089      0t0  TCP 127.90.0.1:20000 (LISTEN)",
        "python3   7 root    4u  IPv4 170090      0t0  TCP 127.90.0.1:20001->127.91.0.1:39826 (CLOSE_WAIT)",
        "python3   7 root    5u  IPv6 170091      0t0  TCP [::1]:5555->[::1]:41000 (ESTABLISHED)",
        "sshd      1 root    3u  IPv4 170092      0t0  TCP 10.0.0.5:22->10.0.0.9:5000 (ESTABLISHED)",
    ],
}


def selfcheck():
    """Parsers against SAMPLES; returns a list of failures."""
    f = BenchFilter([90, 91], [5555])
    fails = []
    ss = count_ss(SAMPLES["ss"], f)
    want = {"LISTEN": 1, "CLOSE_WAIT": 1, "FIN_WAIT2": 1, "TIME_WAIT": 1, "ESTABLISHED": 2}
    fails += compare(want, ss.states, "ss ")
    fails += compare({"LISTEN": 1, "FIN_WAIT2": 1}, ss.owned, "ss owned ")
    fails += compare({"CLOSE_WAIT": 1}, {k: v for k, v in ss.recv_q.items() if v}, "ss recv-q ")
    if ss.other != 2:
        fails.append("ss other: expected 2, got %d" % ss.other)
    ns = count_netstat(SAMPLES["netstat"], f)
    fails += compare({"LISTEN": 1, "CLOSE_WAIT": 1, "TIME_WAIT": 1, "ESTABLISHED": 1}, ns.states, "netstat ")
    fails += compare({"LISTEN": 1, "CLOSE_WAIT": 1, "ESTABLISHED": 1}, ns.owned, "netstat owned ")
    ls = count_lsof(SAMPLES["lsof"], f)
    fails += compare({"LISTEN": 1, "CLOSE_WAIT": 1, "ESTABLISHED": 1}, ls.states, "lsof ")
    if ls.other != 1:
        fails.append("lsof other: expected 1, got %d" % ls.other)
    doc = {"sockets": [
        {"state": "CLOSE_WAIT", "local": "127.90.0.1:20001", "remote": "127.91.0.1:3", "owners": [{"pid": 1, "fd": 3}], "recv_q": 1, "netns": 1},
        {"state": "TIME_WAIT", "local": "127.91.0.101:4", "remote": "127.90.0.1:20004", "owners": [], "recv_q": 0, "netns": 2},
        {"state": "ESTABLISHED", "local": "10.0.0.5:22", "remote": "10.0.0.9:5", "owners": [], "recv_q": 0, "netns": 1},
    ]}
    per = count_sockleak(doc, f, lambda s: s["netns"])
    fails += compare({"CLOSE_WAIT": 1}, per[1].owned, "sockleak ns1 owned ")
    fails += compare({"TIME_WAIT": 1}, per[2].states, "sockleak ns2 ")
    found, sums, rows = sockleak_summary([
        "    PID USER     COMM              FDS  LIMIT USE%   SOCK   PIPE    TCP CL-WAIT  ESTAB  CBH NETNS",
        "  17715 root     python3            14  20000    0      3     10      3       1      2    0 host",
        "  17758 root     python3             8  20000    0      2      5      2       0      2    0 sockleak-bench-1",
        "      9 root     sshd                8  20000    0      2      5      2       0      2    0 host",
        "", "python3 (pid 17715) ..."], [17715, 17758])
    if rows != 2 or sums.get("TCP") != 5 or sums.get("CL-WAIT") != 1 or "ESTAB" not in found:
        fails.append("sockleak_summary: rows %d, sums %s" % (rows, sums))
    for text, want in (("[::ffff:127.90.0.1]:80", ("127.90.0.1", 80)), ("*:*", ("*", None)),
                       ("::1:5555", ("::1", 5555)), ("127.0.0.53%lo:53", ("127.0.0.53", 53))):
        if split_endpoint(text) != want:
            fails.append("split_endpoint(%r) = %r, want %r" % (text, split_endpoint(text), want))
    return fails
