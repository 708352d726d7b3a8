"""Builds, checks and tears down the benchmark's TCP socket population.

A population of about N sockets (both ends counted) lives on loopback only,
in the runner's own network namespace ("host") and in network namespaces the
runner creates (`ip netns add sockleak-bench-K`), spread over pairs of worker
processes (tools/bench/worker.py): server i listens on 127.S.<ns>.<i+1>,
client i connects from 127.C.<ns>.<i+1> (and 127.C.<ns>.<i+101> for the
TIME_WAIT connections), where S and C are a pair of /16 blocks no other
socket of the host uses. One IPv6 listener per server on ::1.

Mix, as fractions of the non-listening sockets R of each namespace:
  ESTABLISHED pairs            44 %  (10 % of the pairs over IPv6 ::1)
  server-side CLOSE_WAIT       20 %  (client closed, server holds)
  client-side CLOSE_WAIT       10 %  (server wrote 1..200 bytes and closed;
                                      the client holds them unread)
  FIN_WAIT2 + CLOSE_WAIT pairs 10 %  (client shutdown(SHUT_WR), both hold)
  TIME_WAIT                   ~16 %  (client closed first, server then closed)
plus 6 LISTEN sockets per server (5 IPv4 kinds + 1 IPv6).

TIME_WAIT lasts 60 s: it is created last, in "generations"; the runner
destroys a generation (SOCK_DESTROY through `ss -K`, restricted to the
benchmark's client block; it falls back to waiting for expiry) and creates
the next one whenever a measurement would not finish inside the current
generation's 60 s. A generation is exact: TIME_WAIT sockets that a kernel
race ends early (see tw_create) are made again.

The population is checked with `ss -tan` in every namespace: exact count per
state, and the summed Recv-Q of CLOSE_WAIT (a FIN counts 1, plus the unread
bytes). Teardown closes every socket with a RST and stops every worker by pid.
"""
import json
import os
import random
import select
import signal
import subprocess
import sys
import time

from counts import BenchFilter, Counts, compare, count_ss

HOST = "host"  # key of the runner's own namespace
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")
KINDS = ("estab", "estab6", "scw", "ccw", "fw2", "tw")
TIME_WAIT_LEN = 60.0  # TCP_TIMEWAIT_LEN, include/net/tcp.h


class BenchError(Exception):
    """The population could not be built or checked."""


def ss_cmd(ns, *args):
    """ss in namespace ns (-N enters an `ip netns` name)."""
    return ["ss"] + (["-N", ns] if ns != HOST else []) + list(args)


def run_ss(ns, *args, timeout=120):
    r = subprocess.run(ss_cmd(ns, *args), capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise BenchError("%s: exit %d: %s" % (" ".join(ss_cmd(ns, *args)), r.returncode, r.stderr.strip()))
    return r.stdout


class Namespaces:
    """Network namespaces this run created; deleted by delete() (also on failure)."""

    def __init__(self, log):
        self.log = log
        self.names = []

    def create(self, count):
        existing = set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
                       .stdout.split())
        k = 1
        while len(self.names) < count:
            name = "sockleak-bench-%d" % k
            k += 1
            if name in existing or os.path.exists("/run/netns/" + name):
                continue  # another run's (or a leftover): never touch it
            r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
            if r.returncode != 0:
                raise BenchError("ip netns add %s: %s" % (name, r.stderr.strip()))
            self.names.append(name)
            r = subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], capture_output=True, text=True)
            if r.returncode != 0:
                raise BenchError("ip -n %s link set lo up: %s" % (name, r.stderr.strip()))
        return list(self.names)

    def delete(self):
        for name in self.names:
            r = subprocess.run(["ip", "netns", "del", name], capture_output=True, text=True)
            if r.returncode != 0:
                self.log("warning: ip netns del %s: %s" % (name, r.stderr.strip()))
        self.names = []

    @staticmethod
    def inode(ns):
        return os.stat("/proc/self/ns/net" if ns == HOST else "/run/netns/" + ns).st_ino


def pick_blocks(used):
    """A (server, client) pair of 127.x.0.0/16 blocks no socket of the host uses."""
    busy = set()
    for line in run_ss(HOST, "-Htan").splitlines():
        for field in line.split()[3:5]:
            if field.startswith("127."):
                busy.add(int(field.split(".")[1]))
    options = [b for b in range(64, 190, 2) if b not in used and b not in busy and b + 1 not in busy]
    if not options:
        raise BenchError("no free 127.x.0.0/16 block pair for the population")
    b = random.Random(os.getpid() + time.time_ns()).choice(options)
    return b, b + 1


def split(n, parts):
    """n as `parts` near-equal integers."""
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


class Worker:
    """One worker process (own process group; stopped by its pid)."""

    def __init__(self, argv, log_path):
        self.log_path = log_path
        self.err = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err, process_group=0, close_fds=True)
        self.pid = self.proc.pid
        self.buf = b""
        self.replies = []

    def send(self, obj):
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())
        self.proc.stdin.flush()

    def feed(self):
        chunk = os.read(self.proc.stdout.fileno(), 1 << 20)
        if not chunk:
            raise BenchError("worker %d exited (%s)" % (self.pid, self.tail()))
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        for l in lines:
            if l.strip():
                r = json.loads(l)
                if r.get("op") == "error":
                    raise BenchError("worker %d: %s" % (self.pid, r["error"]))
                self.replies.append(r)

    def tail(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-400:].decode(errors="replace").strip() or "no stderr"
        except OSError:
            return "no log"


def collect(workers, op, timeout):
    """Waits until each worker has sent a reply with this op; returns them in order."""
    end = time.monotonic() + timeout
    pending = {w.proc.stdout.fileno(): w for w in workers if not any(r["op"] == op for r in w.replies)}
    while pending:
        left = end - time.monotonic()
        if left <= 0:
            raise BenchError("%d workers did not answer %r within %.0f s" % (len(pending), op, timeout))
        r, _, _ = select.select(list(pending), [], [], left)
        for fd in r:
            w = pending[fd]
            w.feed()
            if any(x["op"] == op for x in w.replies):
                del pending[fd]
    out = []
    for w in workers:
        i = next(i for i, x in enumerate(w.replies) if x["op"] == op)
        out.append(w.replies.pop(i))
    return out


class Population:
    """About `total` sockets over `pairs` (namespace -> number of server/client
    pairs) with `weights` (namespace -> share of the sockets)."""

    def __init__(self, label, total, pairs, weights, blocks, logdir, lifetime, log):
        self.label, self.total, self.pairs, self.weights = label, total, pairs, weights
        self.sblock, self.cblock = blocks
        self.logdir, self.lifetime, self.log = logdir, lifetime, log
        self.namespaces = list(pairs)
        self.servers = {ns: [] for ns in pairs}
        self.clients = {ns: [] for ns in pairs}
        self.plan = {}  # ns -> kind -> [count per pair]
        self.v6_ports = set()
        self.tw_gen = None  # (g0, g1): first possible entry into TIME_WAIT, all present
        self.tw_generations = 0
        self.tw_destroy_ok = None
        self.tw_sent = {}  # (ns, pair) -> TIME_WAIT connections sent to that server so far
        self.tw_topped_up = 0  # TIME_WAIT lost to a stray RST and made again

    # -- building ---------------------------------------------------------

    def ns_index(self, ns):
        return self.namespaces.index(ns)

    def spawn(self, ns, role, i, extra):
        argv = [sys.executable, "-I", "-S", WORKER, role, "--netns", "" if ns == HOST else ns,
                "--lifetime", str(int(self.lifetime))] + extra
        log = os.path.join(self.logdir, "%s-%s-%s-%d.log" % (self.label, ns, role, i))
        return Worker(argv, log)

    @property
    def workers(self):
        return [w for ns in self.namespaces for w in self.servers[ns] + self.clients[ns]]

    @property
    def pids(self):
        return [w.pid for w in self.workers]

    def make_plan(self, v6_ok):
        max_per_task = 0
        for ns in self.namespaces:
            p = self.pairs[ns]
            n_ns = round(self.total * self.weights[ns])
            listen = p * (6 if v6_ok[ns] else 5)
            r = max(n_ns - listen, 0)
            estab_pairs = round(0.22 * r)
            estab6 = round(0.10 * estab_pairs) if v6_ok[ns] else 0
            scw, ccw, fw2 = round(0.20 * r), round(0.10 * r), round(0.05 * r)
            tw = max(r - 2 * estab_pairs - scw - ccw - 2 * fw2, 0)
            self.plan[ns] = {
                "estab": split(estab_pairs - estab6, p), "estab6": split(estab6, p),
                "scw": split(scw, p), "ccw": split(ccw, p), "fw2": split(fw2, p), "tw": split(tw, p),
                "listen": listen,
            }
            max_per_task = max(max_per_task, *(max(self.plan[ns][k]) for k in KINDS))
        if max_per_task > 3500:  # the listen backlog is 4096 (net.core.somaxconn here)
            raise BenchError("%d connections per listener: use more processes (--processes)" % max_per_task)
        for ns in self.namespaces:  # source ports per client (worker.Ports) and fds per worker
            p = self.plan[ns]
            for i in range(self.pairs[ns]):
                ports = sum(p[k][i] for k in ("estab", "ccw", "fw2", "scw"))  # IPv4, never reused
                client = p["estab"][i] + p["estab6"][i] + p["ccw"][i] + p["fw2"][i]
                server = p["estab"][i] + p["estab6"][i] + p["scw"][i] + p["fw2"][i] + 6
                if ports > 60000 or max(client, server) > 19000 or p["tw"][i] > 30000:
                    raise BenchError("too many sockets per worker (%d fds, %d source ports): use more "
                                     "processes (--processes)" % (max(client, server), ports))

    def expected(self, ns):
        """(states, owned) per state for namespace ns: what every tool must show."""
        p = self.plan[ns]
        t = {k: sum(p[k]) for k in KINDS}
        states = {"ESTABLISHED": 2 * (t["estab"] + t["estab6"]),
                  "CLOSE_WAIT": t["scw"] + t["ccw"] + t["fw2"],
                  "FIN_WAIT2": t["fw2"], "TIME_WAIT": t["tw"], "LISTEN": p["listen"]}
        owned = dict(states, TIME_WAIT=0)
        return {k: v for k, v in states.items() if v}, {k: v for k, v in owned.items() if v}

    def expected_close_wait_recv_q(self, ns):
        """Summed Recv-Q of CLOSE_WAIT: a FIN counts 1 (kernel-notes), plus the
        1..200 bytes each ccw server wrote (the worker's formula)."""
        p = self.plan[ns]
        unread = sum(1 + j % 200 for n in p["ccw"] for j in range(n))
        return sum(p["scw"]) + sum(p["fw2"]) + sum(p["ccw"]) + unread

    def sockets(self, ns=None):
        nss = [ns] if ns else self.namespaces
        return sum(sum(self.expected(n)[0].values()) for n in nss)

    def is_bench(self):
        return BenchFilter([self.sblock, self.cblock], self.v6_ports)

    def start(self, timeout):
        t0 = time.monotonic()
        for ns in self.namespaces:
            k = self.ns_index(ns)
            for i in range(self.pairs[ns]):
                self.servers[ns].append(self.spawn(ns, "server", i, [
                    "--ip", "127.%d.%d.%d" % (self.sblock, k, i + 1), "--port-base", str(20000 + 10 * i)]))
        ready = {ns: collect(self.servers[ns], "ready", 60) for ns in self.namespaces}
        v6_ok = {ns: all(r["v6_port"] for r in ready[ns]) for ns in self.namespaces}
        for ns in self.namespaces:
            for w, r in zip(self.servers[ns], ready[ns]):
                w.ports, w.v6 = r["ports"], r["v6_port"]
                if w.v6:
                    self.v6_ports.add(w.v6)
        self.make_plan(v6_ok)
        for ns in self.namespaces:
            k = self.ns_index(ns)
            for i in range(self.pairs[ns]):
                self.clients[ns].append(self.spawn(ns, "client", i, [
                    "--src", "127.%d.%d.%d" % (self.cblock, k, i + 1),
                    "--tw-src", "127.%d.%d.%d" % (self.cblock, k, i + 101)]))
        for ns in self.namespaces:
            collect(self.clients[ns], "ready", 60)
        # Held kinds first; the client of pair i connects to server i only.
        for ns in self.namespaces:
            p = self.plan[ns]
            for i, (c, s) in enumerate(zip(self.clients[ns], self.servers[ns])):
                ip = "127.%d.%d.%d" % (self.sblock, self.ns_index(ns), i + 1)
                tasks = []
                for kind in ("estab", "estab6", "ccw", "fw2", "scw"):
                    if p[kind][i]:
                        dst = ["::1", s.v6] if kind == "estab6" else [ip, s.ports[kind]]
                        tasks.append({"kind": kind, "dst": dst, "n": p[kind][i]})
                c.send({"op": "connect", "id": "held", "tasks": tasks})
        left = timeout - (time.monotonic() - t0)
        for ns in self.namespaces:
            for c, r in zip(self.clients[ns], collect(self.clients[ns], "connected", left)):
                if r["errors"]:
                    raise BenchError("client %d: %s" % (c.pid, "; ".join(r["errors"][:3])))
        # Servers accepted everything; orphaned FIN_WAIT2 (TCP_LINGER2 1 s) are gone.
        end = t0 + timeout
        stable = {ns: {k: v for k, v in self.expected(ns)[0].items() if k != "TIME_WAIT"}
                  for ns in self.namespaces}
        while True:
            diffs = []
            for ns in self.namespaces:
                c = self.ss_counts(ns)
                got = {k: v for k, v in c.states.items() if v}
                if got != stable[ns]:
                    diffs.append("%s: want %s, ss shows %s" % (ns, stable[ns], got))
            if not diffs:
                break
            if time.monotonic() > end:
                raise BenchError("population did not settle: " + "; ".join(diffs))
            time.sleep(0.5)
        return time.monotonic() - t0

    # -- checking ---------------------------------------------------------

    def ss_counts(self, ns):
        return count_ss(run_ss(ns, "-tan").splitlines(), self.is_bench())

    def tw_count(self, ns):
        out = run_ss(ns, "-Htan", "state", "time-wait", "src", "127.%d.0.0/16" % self.cblock)
        return sum(1 for l in out.splitlines() if l.strip())

    def verify(self):
        """Exact per-state counts and CLOSE_WAIT Recv-Q per namespace with ss -tan.
        Returns (per-namespace Counts, list of differences)."""
        diffs, seen = [], {}
        for ns in self.namespaces:
            c = self.ss_counts(ns)
            seen[ns] = c
            states, _ = self.expected(ns)
            diffs += compare(states, c.states, "%s: " % ns)
            want_q = self.expected_close_wait_recv_q(ns)
            if c.recv_q.get("CLOSE_WAIT", 0) != want_q:
                diffs.append("%s: CLOSE_WAIT Recv-Q sum expected %d, got %d"
                             % (ns, want_q, c.recv_q.get("CLOSE_WAIT", 0)))
        return seen, diffs

    # -- TIME_WAIT generations ----------------------------------------------

    def tw_window_left(self):
        """Seconds until the oldest TIME_WAIT of the current generation may expire."""
        if not self.tw_gen:
            return 0.0
        return self.tw_gen[0] + TIME_WAIT_LEN - 1.0 - time.monotonic()

    def tw_clean(self, start, end):
        """Did a run from start to end (monotonic) see the whole generation?"""
        return bool(self.tw_gen) and start >= self.tw_gen[1] and end <= self.tw_gen[0] + TIME_WAIT_LEN - 0.5

    def tw_destroy(self):
        """Removes the current generation: SOCK_DESTROY on the benchmark's client
        block only, else wait for the kernel to expire it."""
        if not self.tw_gen:
            return
        for ns in self.namespaces:
            subprocess.run(ss_cmd(ns, "-K", "-tan", "state", "time-wait", "src", "127.%d.0.0/16" % self.cblock),
                           capture_output=True, timeout=60)
        end = self.tw_gen[1] + TIME_WAIT_LEN + 5
        while any(self.tw_count(ns) for ns in self.namespaces):
            if self.tw_destroy_ok is None:
                self.tw_destroy_ok = False
                self.log("  note: ss -K did not destroy TIME_WAIT (no SOCK_DESTROY?): waiting for expiry")
            if time.monotonic() > end:
                raise BenchError("TIME_WAIT of the previous generation did not expire")
            time.sleep(0.5)
        if self.tw_destroy_ok is None:
            self.tw_destroy_ok = True
        self.tw_gen = None

    def tw_send(self, ns, i, n):
        ip = "127.%d.%d.%d" % (self.sblock, self.ns_index(ns), i + 1)
        self.clients[ns][i].send({"op": "connect", "id": "tw", "tasks": [
            {"kind": "tw", "dst": [ip, self.servers[ns][i].ports["tw"]], "n": n}]})
        self.tw_sent[(ns, i)] = self.tw_sent.get((ns, i), 0) + n

    def tw_wait_closed(self, end):
        """Until every server has closed every TIME_WAIT connection sent its way."""
        while True:
            behind = 0
            for ns in self.namespaces:
                for s in self.servers[ns]:
                    s.send({"op": "status"})
                for i, r in enumerate(collect(self.servers[ns], "status", max(end - time.monotonic(), 1))):
                    behind += max(self.tw_sent.get((ns, i), 0) - r["tw_closed"], 0)
            if not behind:
                return
            if time.monotonic() > end:
                raise BenchError("TIME_WAIT generation: servers still hold %d connections" % behind)
            time.sleep(0.1)

    def tw_create(self, timeout=120):
        """A new TIME_WAIT generation, exact per namespace.

        Now and then (about 1 in 10k connections on loopback, even with the
        server's TCP_QUICKACK) a stray ACK after the server's FIN makes the
        closed server socket answer the client's TIME_WAIT with a RST, which
        ends that TIME_WAIT (tcp_rfc1337=0). The missing ones are topped up."""
        self.tw_destroy()
        g0 = time.monotonic()
        end = g0 + timeout
        for ns in self.namespaces:
            for i in range(self.pairs[ns]):
                self.tw_send(ns, i, self.plan[ns]["tw"][i])
        want = {ns: self.expected(ns)[0].get("TIME_WAIT", 0) for ns in self.namespaces}
        for attempt in range(6):
            for ns in self.namespaces:
                for c, r in zip(self.clients[ns], collect(self.clients[ns], "connected", max(end - time.monotonic(), 1))):
                    if r["errors"]:
                        raise BenchError("client %d: %s" % (c.pid, "; ".join(r["errors"][:3])))
            self.tw_wait_closed(end)
            time.sleep(0.2)  # the clients' last ACKs
            got = {ns: self.tw_count(ns) for ns in self.namespaces}
            if got == want:
                break
            if attempt == 5 or any(got[ns] > want[ns] for ns in got):
                raise BenchError("TIME_WAIT generation: want %s, ss shows %s" % (want, got))
            self.tw_topped_up += sum(want[ns] - got[ns] for ns in got)
            for ns in self.namespaces:
                for i in range(self.pairs[ns]):  # every client answers once per round
                    self.tw_send(ns, i, (want[ns] - got[ns]) if i == 0 else 0)
        self.tw_gen = (g0, time.monotonic())
        self.tw_generations += 1
        return self.tw_gen[1] - g0

    # -- teardown -----------------------------------------------------------

    def stop(self):
        """Stops every worker by pid: a stop command (sockets closed with RST),
        then SIGKILL to its own process group for any that did not exit."""
        ws = self.workers
        for w in ws:
            try:
                w.send({"op": "stop"})
                w.proc.stdin.close()
            except (OSError, ValueError):
                pass
        end = time.monotonic() + 10
        for w in ws:
            try:
                w.proc.wait(timeout=max(end - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                for kill in (lambda: os.killpg(w.pid, signal.SIGKILL), lambda: os.kill(w.pid, signal.SIGKILL)):
                    try:
                        kill()
                    except (ProcessLookupError, PermissionError):
                        pass
                try:
                    w.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.log("warning: worker %d did not exit" % w.pid)
            for f in (w.proc.stdout, w.err):
                try:
                    f.close()
                except OSError:
                    pass
        for ns in self.namespaces:
            self.servers[ns], self.clients[ns] = [], []
        # Anything left in our blocks (TIME_WAIT of the last generation): destroy.
        for ns in self.namespaces:
            for block in (self.sblock, self.cblock):
                try:
                    subprocess.run(ss_cmd(ns, "-K", "-tan", "src", "127.%d.0.0/16" % block),
                                   capture_output=True, timeout=60)
                except (subprocess.TimeoutExpired, OSError):
                    pass


__all__ = ["BenchError", "Counts", "HOST", "Namespaces", "Population", "pick_blocks", "run_ss", "ss_cmd"]
