#!/usr/bin/env python3
"""One process of the benchmark population: holds TCP sockets on loopback.

Started by tools/bench/population.py (never by hand), one process per role:

  server  listens on one IPv4 port per kind (and one IPv6 port on ::1) and
          treats every accepted connection according to the listener it came
          in on:
            estab, estab6  hold it                      -> ESTABLISHED
            scw            hold it; the client closed   -> CLOSE_WAIT (server side)
            fw2            hold it; the client did
                           shutdown(SHUT_WR)            -> CLOSE_WAIT (server side)
            ccw            write N bytes (1..200), then
                           shut down and close          -> the client's socket is
                                                           CLOSE_WAIT with N unread
            tw             wait for the client's FIN, then close: the client,
                           the active closer, ends in TIME_WAIT
  client  connects on command from its own 127.x.y.z source address:
            estab, estab6, ccw  hold it
            fw2            shutdown(SHUT_WR), hold it   -> FIN_WAIT2 (owned, no timer)
            scw            shut down and close it
            tw             close it at once
  Clients bind their source ports themselves (class Ports).

The sockets closed on purpose in scw (client) and ccw (server) are first
shut down for writing and closed only once the peer has acknowledged the
FIN (state FIN_WAIT2), with TCP_LINGER2 set to 1 s: tcp_close() then turns
them straight into a FIN_WAIT2 timewait mini-socket that disappears silently
after a second. Closed earlier (in FIN_WAIT1), an orphan that reaches
FIN_WAIT2 while its lock is held takes the keepalive-timer path instead, and
that path ends with a RST to the peer (tcp_keepalive_timer) which destroyed
the peer's CLOSE_WAIT about once in 5000 connections. So the population
settles to exact, stable counts.

Protocol: one JSON object per line on stdin (commands) and stdout (replies).
The process exits, closing every socket with SO_LINGER 0 (a RST: no TIME_WAIT
or orphan is left behind), on {"op": "stop"}, when stdin closes, on SIGTERM,
when its parent dies (PR_SET_PDEATHSIG) or after --lifetime seconds.
Only loopback addresses are used. Standard library only.
"""
import argparse
import ctypes
import errno
import json
import os
import resource
import select
import signal
import socket
import struct
import sys
import time

CLONE_NEWNET = 0x40000000  # <linux/sched.h>
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
KINDS_V4 = ("estab", "scw", "ccw", "fw2", "tw")
TCP_FIN_WAIT1, TCP_FIN_WAIT2 = 4, 5  # include/net/tcp_states.h; the first byte of struct tcp_info
LINGER_RST = struct.pack("ii", 1, 0)

_libc = ctypes.CDLL(None, use_errno=True)
_held = []  # every socket this process holds, closed with a RST on exit


def enter(netns, lifetime):
    """Common start: die with the parent, enter the namespace, raise the fd limit."""
    parent = os.getppid()
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(3)
    if netns:
        fd = os.open("/run/netns/" + netns, os.O_RDONLY | os.O_CLOEXEC)
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            reply({"op": "error", "error": "setns %s: %s" % (netns, os.strerror(e))})
            os._exit(3)
        os.close(fd)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    signal.signal(signal.SIGTERM, lambda *_: stop())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner handles Ctrl-C
    return time.monotonic() + lifetime


class Closer:
    """Sockets shut down for writing, closed once they reach FIN_WAIT2 (see
    the module comment for why not earlier)."""

    def __init__(self):
        self.pending = []

    def add(self, s):
        s.shutdown(socket.SHUT_WR)
        self.pending.append(s)

    def poll(self):
        """Closes those past FIN_WAIT1 (FIN_WAIT2, or anything a RST left);
        returns how many are still pending."""
        keep = []
        for s in self.pending:
            try:
                state = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
            except OSError:
                state = None
            if state == TCP_FIN_WAIT1:
                keep.append(s)
                continue
            try:
                if state == TCP_FIN_WAIT2:
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_LINGER2, 1)
            except OSError:
                pass
            s.close()  # a socket a RST ended shows up as missing in the population check
        self.pending = keep
        return len(keep)


def reply(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def stop():
    """Close everything with a RST (no TIME_WAIT, no orphans), then exit."""
    for s in _held:
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
            s.close()
        except OSError:
            pass
    os._exit(0)


class Lines:
    """Non-blocking line reader for fd 0."""

    def __init__(self):
        self.buf = b""
        os.set_blocking(0, False)

    def read(self):
        """Returns (complete lines, eof)."""
        try:
            chunk = os.read(0, 65536)
        except BlockingIOError:
            return [], False
        if not chunk:
            return [], True
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        return [json.loads(l) for l in lines if l.strip()], False


def serve(args):
    deadline = enter(args.netns, args.lifetime)
    listeners = {}
    ports = {}
    try:
        for k, kind in enumerate(KINDS_V4):
            l = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            l.bind((args.ip, args.port_base + k))
            l.listen(4096)
            listeners[kind] = l
            ports[kind] = l.getsockname()[1]
        v6 = None
        try:
            l = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            l.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            l.bind(("::1", 0))
            l.listen(4096)
            listeners["estab6"] = l
            v6 = l.getsockname()[1]
        except OSError:
            pass  # no IPv6 in this namespace: the runner plans IPv4 only
    except OSError as e:
        reply({"op": "error", "error": "listen %s: %s" % (args.ip, e)})
        os._exit(3)
    _held.extend(listeners.values())

    ep = select.epoll()
    by_fd = {}
    for kind, l in listeners.items():
        l.setblocking(False)
        ep.register(l.fileno(), select.EPOLLIN)
        by_fd[l.fileno()] = ("listen", kind, l)
    ep.register(0, select.EPOLLIN)
    lines = Lines()
    accepted = {k: 0 for k in listeners}
    tw_closed = 0
    ccw_bytes = 0
    closer = Closer()
    reply({"op": "ready", "pid": os.getpid(), "ports": ports, "v6_port": v6})

    while True:
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            stop()
        if closer.pending:
            closer.poll()
        for fd, ev in ep.poll(min(timeout, 0.02 if closer.pending else 5.0)):
            if fd == 0:
                cmds, eof = lines.read()
                if eof:
                    stop()
                for c in cmds:
                    if c["op"] == "stop":
                        stop()
                    elif c["op"] == "status":
                        reply({"op": "status", "accepted": accepted, "tw_closed": tw_closed,
                               "ccw_bytes": ccw_bytes, "closing": len(closer.pending)})
                continue
            what, kind, s = by_fd[fd]
            if what == "tw":
                # The client's FIN (EOF) arrived: close, so the client ends in TIME_WAIT.
                try:
                    data = s.recv(64)
                except OSError:
                    data = b""
                if not data:
                    ep.unregister(fd)
                    del by_fd[fd]
                    # The FIN put this socket in delayed-ACK (pingpong) mode.
                    # Send that ACK now, before our FIN: if the delayed-ACK
                    # timer fired during close(), its stale ACK would reach the
                    # client's TIME_WAIT after ours, the TIME_WAIT would answer,
                    # our closed socket would send a RST and the RST kills the
                    # TIME_WAIT (net.ipv4.tcp_rfc1337=0). Seen on loopback
                    # about once per 1000 connections.
                    try:
                        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
                    except OSError:
                        pass
                    s.close()
                    tw_closed += 1
                continue
            while True:  # accept everything queued on this listener
                try:
                    c, _ = s.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as e:
                    if e.errno in (errno.EMFILE, errno.ENFILE):
                        reply({"op": "error", "error": "accept: %s" % e})
                    break
                accepted[kind] += 1
                if kind == "ccw":
                    n = 1 + (accepted[kind] - 1) % 200
                    c.sendall(b"u" * n)
                    ccw_bytes += n
                    closer.add(c)
                elif kind == "tw":
                    c.setblocking(False)
                    ep.register(c.fileno(), select.EPOLLIN | select.EPOLLRDHUP)
                    by_fd[c.fileno()] = ("tw", kind, c)
                else:
                    _held.append(c)


class Ports:
    """Source ports a client binds explicitly, never reused while it lives.

    Why not let the kernel choose: with net.ipv4.tcp_tw_reuse=2 (the default:
    loopback only) connect() may pick a port whose 4-tuple is in TIME_WAIT and
    recycle that socket, so a TIME_WAIT generation lost a socket now and then;
    and a port freed by a closed scw client (its orphan is gone after 1 s) may
    be picked again toward the server that still holds the old CLOSE_WAIT.
    Each client owns its source address, so its ports are its own."""

    def __init__(self, first, last, wrap=False):
        self.first, self.next, self.last, self.wrap = first, first, last, wrap

    def take(self):
        if self.next > self.last:
            if not self.wrap:
                raise OSError(errno.EADDRNOTAVAIL, "source ports exhausted")
            self.next = self.first
        self.next += 1
        return self.next - 1


def connect_one(family, src, ports, dst):
    for _ in range(1000):
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            if family == socket.AF_INET:
                s.bind((src, ports.take()))
            s.settimeout(10)
            s.connect(tuple(dst))
            return s
        except OSError as e:
            s.close()
            # A host service bound to 0.0.0.0:PORT also holds PORT on our
            # address: take the next one.
            if e.errno != errno.EADDRINUSE:
                raise
    raise OSError(errno.EADDRINUSE, "no free source port")


def client(args):
    deadline = enter(args.netns, args.lifetime)
    reply({"op": "ready", "pid": os.getpid()})
    lines = Lines()
    held_ports = Ports(1024, 65535)
    # TIME_WAIT generations go on where the previous one stopped: a port comes
    # back only after ~62k connections, long after its TIME_WAIT is gone.
    tw_ports = Ports(2000, 63999, wrap=True)
    closer = Closer()
    while True:
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            stop()
        r, _, _ = select.select([0], [], [], min(timeout, 5.0))
        if not r:
            continue
        cmds, eof = lines.read()
        if eof:
            stop()
        for c in cmds:
            if c["op"] == "stop":
                stop()
            elif c["op"] == "connect":
                done = {}
                errors = []
                for t in c["tasks"]:
                    kind, n = t["kind"], t["n"]
                    family = socket.AF_INET6 if kind == "estab6" else socket.AF_INET
                    src, ports = args.src, held_ports
                    if kind == "tw":
                        src, ports = args.tw_src, tw_ports
                    ok = 0
                    for _ in range(n):
                        try:
                            s = connect_one(family, src, ports, t["dst"])
                        except OSError as e:
                            errors.append("%s %s: %s" % (kind, t["dst"], e))
                            if len(errors) > 20:
                                break
                            continue
                        ok += 1
                        if kind == "scw":
                            closer.add(s)
                        elif kind == "tw":
                            s.close()
                        else:
                            if kind == "fw2":
                                s.shutdown(socket.SHUT_WR)
                            _held.append(s)
                    done[kind] = done.get(kind, 0) + ok
                end = time.monotonic() + 30
                while closer.poll() and time.monotonic() < end:
                    time.sleep(0.01)
                if closer.pending:
                    errors.append("%d scw sockets stayed in FIN_WAIT1" % len(closer.pending))
                reply({"op": "connected", "id": c.get("id"), "done": done, "errors": errors[:20]})


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("role", choices=("server", "client"))
    p.add_argument("--netns", default="", help="ip netns name to enter; empty: stay")
    p.add_argument("--ip", help="server: IPv4 address to listen on")
    p.add_argument("--port-base", type=int, help="server: first listener port")
    p.add_argument("--src", help="client: source address of held connections")
    p.add_argument("--tw-src", help="client: source address of TIME_WAIT connections")
    p.add_argument("--lifetime", type=float, default=1800, help="exit after this many seconds")
    args = p.parse_args()
    (serve if args.role == "server" else client)(args)


if __name__ == "__main__":
    main()
