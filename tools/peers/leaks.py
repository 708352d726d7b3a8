#!/usr/bin/env python3
"""Reproduces the incidents of docs/scenarios.md on loopback, one subcommand
each, for sockleak's findings tests (crates/sockleak/tests/it/findings_*.rs).

Every subcommand builds its sockets with real processes, prints ONE JSON line
describing what it built (pids by role, endpoints, counts the test must find),
then waits until stdin closes or it gets SIGTERM (at most 10 minutes). Its
children exit when it does: they block on (or poll) a "life" pipe whose only
write end this process holds, and it also kills them by pid on SIGTERM. Every
loop is bounded in count and time. Only loopback addresses are used (or the
network namespace the test runs this in).

Leaks (what the findings engine must report):
  close-wait-server  a server that reads each request to EOF and never closes
                     the connection, leaking pipe fds with each connection
                     as incident 1 did (two per connection by default)
                     [--conns N] [--pipe-fds-per-conn EVEN] [--idle-before-fin S]
                     [--nofile SOFT_RLIMIT_NOFILE]
  unread-responses   a pooled client that never reads its responses while the
                     server closes idle keep-alive connections (incident 2)
                     [--conns N] [--body BYTES]
  error-path         a C-style client that returns on an error without close()
                     while the server shut down its side and keeps its fd:
                     client CLOSE_WAIT <-> owned server FIN_WAIT2 (incident 3)
                     [--conns N]
  time-wait          N short connections, the client closes first: N TIME_WAIT
                     toward one destination (incident 5) [--count N] [--port P]
  fd-limit           a process holding exactly N fds under a soft
                     RLIMIT_NOFILE of L [--limit L] [--fds N]
  no-accept          a server that never calls accept(): its accept queue
                     fills up [--backlog B] [--clients N]
  reset              a client that keeps the fd of a connection its peer reset
                     (SO_LINGER 0): closed but held
  shared             a server whose accepted socket is inherited by a helper it
                     fork+execs without CLOEXEC; the client hangs up: CLOSE_WAIT
                     held by both
Healthy controls (must stay quiet):
  keepalive-pool     a client pool with N stable ESTABLISHED connections
                     [--conns N]
  churn              a server that closes each connection DELAY after EOF while
                     a client connects and hangs up for S seconds
                     [--seconds S] [--close-delay DELAY] [--max-conns N]
"""
import json
import os
import resource
import select
import signal
import socket
import stat
import struct
import subprocess
import sys
import time

LO = "127.0.0.1"
REQUEST = b"GET /config HTTP/1.1\r\nHost: localhost\r\n\r\n"

# TCP states as tcpi_state reports them (include/net/tcp_states.h).
TCP_ESTABLISHED = 1
TCP_FIN_WAIT2 = 5
TCP_CLOSE = 7
TCP_CLOSE_WAIT = 8


def ep(addr):
    return "%s:%d" % (addr[0], addr[1])


def listener(port=0, backlog=64):
    l = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind((LO, port))
    l.listen(backlog)
    return l


def tcp_state(sock):
    """tcpi_state, the first byte of struct tcp_info (linux/tcp.h)."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


def wait_until(what, pred, timeout=5.0):
    """Polls pred() every 10 ms; fails loudly after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise SystemExit("leaks.py: timed out waiting for " + what)
        time.sleep(0.01)


def recv_exact(sock, n, timeout=5.0):
    sock.settimeout(timeout)
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def read_to_eof(sock, timeout=5.0):
    """Reads until the peer's FIN (bounded by `timeout` per read)."""
    sock.settimeout(timeout)
    data = b""
    for _ in range(10000):
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    raise SystemExit("leaks.py: no EOF after 10000 reads")


def read_byte(fd, timeout, what):
    """Bounded one-byte read from a sync pipe."""
    r, _, _ = select.select([fd], [], [], timeout)
    if not r or not os.read(fd, 1):
        raise SystemExit("leaks.py: timed out waiting for " + what)


def count_fds():
    """Open fds of this process (the listing's own fd excluded)."""
    return len(os.listdir("/proc/self/fd")) - 1


def count_fifos():
    """Pipe fds of this process, by fstat (independent of link targets)."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if stat.S_ISFIFO(os.fstat(int(fd)).st_mode):
                n += 1
        except OSError:
            pass  # the fd listdir itself used
    return n


class Family:
    """This process and its children. Children exit when the life pipe's
    write end (held only here) closes, i.e. when this process exits."""

    def __init__(self):
        self.life_r, self.life_w = os.pipe()
        self.children = []

    def fork(self, body):
        """Runs body() in a child, which then waits for this process to exit,
        keeping what body() returned (its sockets stay open meanwhile)."""
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.close(self.life_w)
                kept = body()
                os.read(self.life_r, 1)  # EOF when the parent is gone
                del kept
            except BaseException as e:  # report, never fall back into the parent's code
                sys.stderr.write("leaks.py child %d: %r\n" % (os.getpid(), e))
                code = 1
            finally:
                os._exit(code)
        self.children.append(pid)
        return pid

    def stop(self, *_):
        for pid in self.children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os._exit(0)

    def publish(self, info):
        """Prints the JSON line, then waits for stdin EOF or SIGTERM."""
        signal.signal(signal.SIGTERM, self.stop)
        info.setdefault("netns_inode", os.stat("/proc/self/ns/net").st_ino)
        print(json.dumps(info), flush=True)
        select.select([sys.stdin], [], [], 600)
        self.stop()


# --- leaks -----------------------------------------------------------------


def close_wait_server(opts):
    n = opts.get("conns", 5)
    pairs = opts.get("pipe-fds-per-conn", 2) // 2
    idle = float(opts.get("idle-before-fin", 0))
    if "nofile" in opts:  # incident 1 ran into its fd limit
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (opts["nofile"], hard))
    fam = Family()
    l = listener()
    server_ep = ep(l.getsockname())
    port = l.getsockname()[1]

    def client():
        l.close()
        conns = []
        for _ in range(n):
            c = socket.create_connection((LO, port), timeout=5)
            c.sendall(REQUEST)
            conns.append(c)
        time.sleep(idle)  # connections idle in ESTABLISHED before the FIN
        for c in conns:
            c.close()

    client_pid = fam.fork(client)
    accepted, leaked_pipes = [], []
    l.settimeout(10)
    for _ in range(n):
        s, _ = l.accept()
        accepted.append(s)
        # Incident 1 also leaked two pipe fds per request (a pipe per
        # request, e.g. to a helper process, never closed).
        for _ in range(pairs):
            leaked_pipes.extend(os.pipe())
    for s in accepted:
        # The bug: read() returned 0 (end of stream) and the loop just stops
        # without close().
        read_to_eof(s, timeout=10 + idle)
    for s in accepted:
        wait_until("CLOSE_WAIT", lambda s=s: tcp_state(s) == TCP_CLOSE_WAIT)
    time.sleep(0.05)
    fam.publish({
        "pids": {"server": os.getpid(), "client": client_pid},
        "listen": server_ep,
        "port": port,
        "conns": n,
        "leaked_pipe_fds": len(leaked_pipes),
        "pipes": count_fifos(),
        "fds": count_fds(),
    })


def unread_responses(opts):
    n = opts.get("conns", 3)
    body = opts.get("body", 2486)  # incident 2: 2486 bytes in each Recv-Q
    fam = Family()
    l = listener()
    port = l.getsockname()[1]

    def server():
        l.settimeout(10)
        conns = [l.accept()[0] for _ in range(n)]
        for s in conns:
            if recv_exact(s, len(REQUEST)) != REQUEST:
                raise SystemExit("short request")
            s.sendall(b"x" * body)
        # Keep-alive idle timeout: the server closes idle connections. It has
        # read everything the client sent, so close() sends a FIN (not a RST).
        time.sleep(0.1)
        for s in conns:
            s.close()

    server_pid = fam.fork(server)
    l.close()
    pool = []
    for _ in range(n):
        c = socket.create_connection((LO, port), timeout=5)
        c.sendall(REQUEST)
        pool.append(c)  # the bug: the response is never read nor closed
    for c in pool:
        wait_until("client CLOSE_WAIT", lambda c=c: tcp_state(c) == TCP_CLOSE_WAIT)
    time.sleep(0.05)
    fam.publish({
        "pids": {"client": os.getpid(), "server": server_pid},
        "server": "%s:%d" % (LO, port),
        "port": port,
        "conns": n,
        "body": body,
    })


def error_path(opts):
    n = opts.get("conns", 3)
    fam = Family()
    l = listener()
    port = l.getsockname()[1]
    ready_r, ready_w = os.pipe()

    def server():
        l.settimeout(10)
        conns = []
        for _ in range(n):
            s, _ = l.accept()
            recv_exact(s, len(REQUEST))
            s.sendall(b"ERR 503 busy\n")
            # The server closes its sending side first and keeps the fd until
            # the client closes: an owned FIN_WAIT2 once the client ACKs.
            s.shutdown(socket.SHUT_WR)
            conns.append(s)
        for s in conns:
            wait_until("server FIN_WAIT2", lambda s=s: tcp_state(s) == TCP_FIN_WAIT2)
        os.write(ready_w, b"r")
        return conns

    server_pid = fam.fork(server)
    l.close()
    leaked = []
    for _ in range(n):
        c = socket.create_connection((LO, port), timeout=5)
        c.sendall(REQUEST)
        reply = read_to_eof(c)
        if reply.startswith(b"ERR"):
            # The bug, as in C: `if (err) return -1;` without close(fd). The
            # fd is detached from the Python object so nothing ever closes it.
            leaked.append(c.detach())
    read_byte(ready_r, 10, "the server's FIN_WAIT2")
    time.sleep(0.05)
    fam.publish({
        "pids": {"client": os.getpid(), "server": server_pid},
        "server": "%s:%d" % (LO, port),
        "port": port,
        "conns": n,
        "leaked_fds": leaked,
    })


def time_wait(opts):
    n = opts.get("count", 60)
    l = listener(opts.get("port", 0), backlog=128)
    dest = l.getsockname()
    made, failed = 0, None
    deadline = time.monotonic() + 20
    for _ in range(n):
        if time.monotonic() > deadline:
            failed = "time"
            break
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            c.connect(dest)
        except OSError as e:  # EADDRNOTAVAIL when the ports run out
            c.close()
            failed = e.strerror
            break
        s, _ = l.accept()
        c.close()  # the client closes first: TIME_WAIT lands on its side
        read_to_eof(s)
        s.close()
        made += 1
    time.sleep(0.05)  # the last ACKs
    # The listener goes, so a later batch can listen on the same port; the
    # TIME_WAIT sockets stay for 60 s regardless.
    l.close()
    Family().publish({
        "pids": {"client": os.getpid()},
        "remote": ep(dest),
        "port": dest[1],
        "made": made,
        "failed": failed,
    })


def fd_limit(opts):
    limit = opts.get("limit", 100)
    want = opts.get("fds", 92)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    held = []
    for _ in range(limit):
        if count_fds() >= want:
            break
        held.append(os.open("/dev/null", os.O_RDONLY))
    fam = Family()  # its life pipe takes 2 fds: count after it
    while count_fds() > want and held:
        os.close(held.pop())
    while count_fds() < want:
        held.append(os.open("/dev/null", os.O_RDONLY))
    fam.publish({
        "pids": {"process": os.getpid()},
        "limit": limit,
        "fds": count_fds(),
        "fd_dir_size": os.stat("/proc/self/fd").st_size,
    })


def read_accept_queue(port):
    """(Recv-Q, listening) of our listener from /proc/net/tcp: for a LISTEN
    socket rx_queue is the accept queue length."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, st = fields[1], fields[3]
            if st == "0A" and int(local.split(":")[1], 16) == port:
                return int(fields[4].split(":")[1], 16)
    return None


def no_accept(opts):
    backlog = opts.get("backlog", 4)
    clients = opts.get("clients", 10)
    fam = Family()
    l = listener(backlog=backlog)  # and never accept()
    port = l.getsockname()[1]

    def client():
        l.close()
        held = []
        for _ in range(clients):
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.setblocking(False)
            c.connect_ex((LO, port))
            held.append(c)
        return held

    client_pid = fam.fork(client)
    # Full: Linux queues up to backlog + 1 (sk_acceptq_is_full uses ">").
    wait_until("a full accept queue",
               lambda: (read_accept_queue(port) or 0) > backlog)
    time.sleep(0.1)
    fam.publish({
        "pids": {"server": os.getpid(), "client": client_pid},
        "listen": "%s:%d" % (LO, port),
        "port": port,
        "backlog": backlog,
        "clients": clients,
        "accept_queue": read_accept_queue(port),
    })


def reset(opts):
    fam = Family()
    l = listener()
    port = l.getsockname()[1]

    def server():
        l.settimeout(10)
        s, _ = l.accept()
        recv_exact(s, len(REQUEST))  # connect() has returned on the client
        # SO_LINGER {on, 0}: close() aborts the connection with a RST.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()

    server_pid = fam.fork(server)
    l.close()
    c = socket.create_connection((LO, port), timeout=5)
    c.sendall(REQUEST)
    wait_until("the reset", lambda: tcp_state(c) == TCP_CLOSE)
    time.sleep(0.05)
    fam.publish({
        "pids": {"client": os.getpid(), "server": server_pid},
        "port": port,
        "fd": c.fileno(),  # never closed: the bug
    })


# The helper the server of `shared` starts: it signals that it runs, then
# lives until the server exits (its inherited life pipe closes).
HELPER = "import os,sys; os.write(int(sys.argv[2]), b'r'); os.read(int(sys.argv[1]), 1)"


def shared(opts):
    fam = Family()
    l = listener()
    port = l.getsockname()[1]

    def client():
        l.close()
        c = socket.create_connection((LO, port), timeout=5)
        c.sendall(REQUEST)
        c.close()

    client_pid = fam.fork(client)
    l.settimeout(10)
    s, _ = l.accept()
    read_to_eof(s)  # EOF seen, and the server still never closes
    # The bug: the accepted socket is inheritable (no CLOEXEC), so the helper
    # the server starts holds it too.
    os.set_inheritable(s.fileno(), True)
    os.set_inheritable(fam.life_r, True)
    ready_r, ready_w = os.pipe()
    os.set_inheritable(ready_w, True)
    helper = subprocess.Popen(
        [sys.executable, "-c", HELPER, str(fam.life_r), str(ready_w)],
        close_fds=False, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    fam.children.append(helper.pid)
    os.close(ready_w)
    read_byte(ready_r, 10, "the helper")
    wait_until("CLOSE_WAIT", lambda: tcp_state(s) == TCP_CLOSE_WAIT)
    time.sleep(0.05)
    fam.publish({
        "pids": {"server": os.getpid(), "child": helper.pid, "client": client_pid},
        "listen": "%s:%d" % (LO, port),
        "port": port,
        "fd": s.fileno(),
    })


# --- healthy controls --------------------------------------------------------


def keepalive_pool(opts):
    n = opts.get("conns", 4)
    fam = Family()
    l = listener()
    port = l.getsockname()[1]

    def server():
        l.settimeout(10)
        conns = [l.accept()[0] for _ in range(n)]
        l.close()
        deadline = time.monotonic() + 600
        while conns and time.monotonic() < deadline:
            r, _, _ = select.select(conns + [fam.life_r], [], [], 1.0)
            if fam.life_r in r:
                return
            for s in r:
                data = s.recv(4096)
                if data:
                    s.sendall(b"OK\n")
                else:  # a well-behaved server closes on EOF
                    s.close()
                    conns.remove(s)

    server_pid = fam.fork(server)
    l.close()
    pool = [socket.create_connection((LO, port), timeout=5) for _ in range(n)]
    for _ in range(3):
        for c in pool:
            c.sendall(b"ping\n")
            if recv_exact(c, 3) != b"OK\n":
                raise SystemExit("bad reply")
    for c in pool:
        wait_until("ESTABLISHED", lambda c=c: tcp_state(c) == TCP_ESTABLISHED)
    fam.publish({
        "pids": {"client": os.getpid(), "server": server_pid},
        "server": "%s:%d" % (LO, port),
        "port": port,
        "conns": n,
    })


def churn(opts):
    seconds = float(opts.get("seconds", 2))
    delay = float(opts.get("close-delay", 0.2))
    max_conns = opts.get("max-conns", 150)
    fam = Family()
    l = listener(backlog=128)
    port = l.getsockname()[1]

    def client():
        l.close()
        end = time.monotonic() + seconds
        for _ in range(max_conns):
            if time.monotonic() > end:
                break
            c = socket.create_connection((LO, port), timeout=5)
            c.sendall(REQUEST)
            c.close()  # the client hangs up; the server must notice
            time.sleep(0.01)

    client_pid = fam.fork(client)
    signal.signal(signal.SIGTERM, fam.stop)
    info = {
        "pids": {"server": os.getpid(), "client": client_pid},
        "listen": "%s:%d" % (LO, port),
        "port": port,
        "seconds": seconds,
        "close_delay": delay,
        "netns_inode": os.stat("/proc/self/ns/net").st_ino,
    }
    print(json.dumps(info), flush=True)
    # The server: sees EOF, closes `delay` later. Bounded: until stdin closes,
    # SIGTERM, or 10 minutes.
    open_conns, closing = [], []  # closing: (due, socket)
    served = 0
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        now = time.monotonic()
        for due, s in [x for x in closing if x[0] <= now]:
            s.close()
            closing.remove((due, s))
        timeout = min([d for d, _ in closing], default=now + 1.0) - now
        r, _, _ = select.select([l, sys.stdin] + open_conns, [], [], max(timeout, 0))
        if sys.stdin in r and not os.read(sys.stdin.fileno(), 1):
            break
        for s in r:
            if s is l:
                conn, _ = l.accept()
                open_conns.append(conn)
                served += 1
            elif s is not sys.stdin:
                if not s.recv(65536):
                    open_conns.remove(s)
                    closing.append((time.monotonic() + delay, s))
    fam.stop()


COMMANDS = {
    "close-wait-server": close_wait_server,
    "unread-responses": unread_responses,
    "error-path": error_path,
    "time-wait": time_wait,
    "fd-limit": fd_limit,
    "no-accept": no_accept,
    "reset": reset,
    "shared": shared,
    "keepalive-pool": keepalive_pool,
    "churn": churn,
}


def parse(argv):
    """`--name value` pairs; integers where they parse."""
    opts = {}
    it = iter(argv)
    for a in it:
        if not a.startswith("--"):
            raise SystemExit("leaks.py: unexpected argument " + a)
        v = next(it, None)
        if v is None:
            raise SystemExit("leaks.py: %s needs a value" % a)
        try:
            opts[a[2:]] = int(v)
        except ValueError:
            opts[a[2:]] = v
    return opts


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.stderr.write(__doc__)
        sys.exit(2)
    COMMANDS[sys.argv[1]](parse(sys.argv[2:]))


if __name__ == "__main__":
    main()
