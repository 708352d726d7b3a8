#!/usr/bin/env python3
"""Builds a known TCP population on loopback for sockleak's live tests.

Three processes: P (this one, the "server"), C (forked, the "client") and K
(forked from P, shares one socket with it through fork). Between them they
hold a listener, an established pair, a server-side CLOSE_WAIT, a client-side
CLOSE_WAIT with unread bytes, an owned FIN_WAIT2, a TIME_WAIT, an IPv6 pair, a
dual-stack listener with an IPv4 client, a socket shared after fork, and a
closed-but-held (reset) socket, plus pipes, an eventfd and an epoll fd.

It prints one JSON line describing what it built (pids, fds, 4-tuples and
expected states), then waits until stdin closes or it gets SIGTERM; its
children exit when it does. Only loopback addresses are used.

Usage: population.py [--unread N] [--small]
  --small: only a listener, an established pair and a server-side CLOSE_WAIT
           (used inside a network namespace created by the test).
"""
import json
import os
import select
import signal
import socket
import struct
import sys
import time


def ep(addr):
    host, port = addr[0], addr[1]
    if ":" in host:
        if host.startswith("::ffff:"):
            return "%s:%d" % (host[7:], port)
        return "[%s]:%d" % (host, port)
    return "%s:%d" % (host, port)


def pair(listener, family, connect_to):
    c = socket.socket(family, socket.SOCK_STREAM)
    c.connect(connect_to)
    s, _ = listener.accept()
    return c, s


def wait_eof(sock, deadline=5.0):
    """Reads until the peer's FIN (bounded)."""
    sock.settimeout(deadline)
    while sock.recv(4096):
        pass


def count_fifos():
    """Pipe fds of this process, by fstat (independent of link targets)."""
    import stat
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if stat.S_ISFIFO(os.fstat(int(fd)).st_mode):
                n += 1
        except OSError:
            pass  # the fd listdir itself used
    return n


def main():
    unread = 5
    small = "--small" in sys.argv
    if "--unread" in sys.argv:
        unread = int(sys.argv[sys.argv.index("--unread") + 1])

    lo4 = "127.0.0.1"
    l4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    l4.bind((lo4, 0))
    l4.listen(64)
    p4 = l4.getsockname()[1]
    to4 = (lo4, p4)

    sock = {}  # name -> (client_socket, server_socket)
    sock["established"] = pair(l4, socket.AF_INET, to4)
    sock["server_close_wait"] = pair(l4, socket.AF_INET, to4)
    if not small:
        sock["client_close_wait"] = pair(l4, socket.AF_INET, to4)
        sock["fin_wait2"] = pair(l4, socket.AF_INET, to4)
        sock["time_wait"] = pair(l4, socket.AF_INET, to4)
        sock["shared"] = pair(l4, socket.AF_INET, to4)
        sock["reset"] = pair(l4, socket.AF_INET, to4)
        l6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        l6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        l6.bind(("::1", 0))
        l6.listen(16)
        p6 = l6.getsockname()[1]
        sock["ipv6"] = pair(l6, socket.AF_INET6, ("::1", p6))
        ld = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        ld.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        ld.bind(("::", 0))
        ld.listen(16)
        pd = ld.getsockname()[1]
        sock["dual_stack"] = pair(ld, socket.AF_INET, (lo4, pd))
    listeners = {"l4": l4} if small else {"l4": l4, "l6": l6, "dual": ld}

    # Record 4-tuples while every socket is still connected.
    tuples = {}
    for name, (c, s) in sock.items():
        tuples[name] = (ep(c.getsockname()), ep(c.getpeername()))

    go_r, go_w = os.pipe()      # P -> C: "your turn"
    done_r, done_w = os.pipe()  # C -> P: "done"
    life_r, life_w = os.pipe()  # children exit when P's write end closes

    client_pid = os.fork()
    if client_pid == 0:
        os.close(go_w)
        os.close(done_r)
        os.close(life_w)
        for l in listeners.values():
            l.close()
        for c, s in sock.values():
            s.close()
        os.read(go_r, 1)
        sock["server_close_wait"][0].close()
        if not small:
            sock["fin_wait2"][0].shutdown(socket.SHUT_WR)
            sock["time_wait"][0].close()
        os.write(done_w, b"d")
        os.read(life_r, 1)
        os._exit(0)

    os.close(go_r)
    os.close(done_w)
    client_fds = {}
    for name, (c, s) in sock.items():
        client_fds[name] = c.fileno()
    for c, s in sock.values():
        c.close()
    os.write(go_w, b"g")
    os.read(done_r, 1)

    server_fds = {name: s.fileno() for name, (c, s) in sock.items()}
    wait_eof(sock["server_close_wait"][1])
    if not small:
        wait_eof(sock["time_wait"][1])
        # Send the delayed ACK of the client's FIN now, before our FIN: if it
        # left after it, the client's TIME_WAIT would answer it, this closed
        # socket would answer with a RST, and a RST ends a TIME_WAIT
        # (net.ipv4.tcp_rfc1337=0) -- seen once in CI as a missing TIME_WAIT.
        # tools/bench/worker.py does the same.
        sock["time_wait"][1].setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        sock["time_wait"][1].close()
        s3 = sock["client_close_wait"][1]
        s3.sendall(b"x" * unread)
        s3.close()
        wait_eof(sock["fin_wait2"][1])
        s9 = sock["reset"][1]
        s9.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s9.close()

    shared_pid = None
    if not small:
        ready_r, ready_w = os.pipe()
        shared_pid = os.fork()
        if shared_pid == 0:
            keep = {sock["shared"][1].fileno(), life_r, ready_w, 0, 1, 2}
            os.closerange(3, 3)  # no-op; explicit list below
            for fd in os.listdir("/proc/self/fd"):
                fd = int(fd)
                if fd not in keep:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            os.write(ready_w, b"r")
            os.read(life_r, 1)
            os._exit(0)
        os.close(ready_w)
        os.read(ready_r, 1)
        os.close(ready_r)

    # Non-socket fds of P, after the forks so the children do not hold them.
    extra = []
    for _ in range(3):
        extra.extend(os.pipe())
    if hasattr(os, "eventfd"):
        extra.append(os.eventfd(0))
        n_anon = 2
    else:
        n_anon = 1
    ep_fd = select.epoll()
    time.sleep(0.1)  # let the last FIN/RST/ACK land

    P, C, K = os.getpid(), client_pid, shared_pid
    expect = []

    def add(name, state, side, owners, recv_q=None, family="inet"):
        local, remote = tuples[name]
        if side == "server":
            local, remote = remote, local
        e = {"name": name, "state": state, "local": local, "remote": remote,
             "owners": owners, "family": family}
        if recv_q is not None:
            e["recv_q"] = recv_q
        expect.append(e)

    add("established", "ESTABLISHED", "client", [[C, client_fds["established"]]], 0)
    add("established", "ESTABLISHED", "server", [[P, server_fds["established"]]], 0)
    add("server_close_wait", "CLOSE_WAIT", "server", [[P, server_fds["server_close_wait"]]], 0)
    add("server_close_wait", "FIN_WAIT2", "client", [])
    if not small:
        add("client_close_wait", "CLOSE_WAIT", "client",
            [[C, client_fds["client_close_wait"]]], unread + 1)
        add("client_close_wait", "FIN_WAIT2", "server", [])
        add("fin_wait2", "FIN_WAIT2", "client", [[C, client_fds["fin_wait2"]]])
        add("fin_wait2", "CLOSE_WAIT", "server", [[P, server_fds["fin_wait2"]]], 0)
        add("time_wait", "TIME_WAIT", "client", [])
        add("shared", "ESTABLISHED", "server", [[P, server_fds["shared"]], [K, server_fds["shared"]]], 0)
        add("shared", "ESTABLISHED", "client", [[C, client_fds["shared"]]], 0)
        add("ipv6", "ESTABLISHED", "client", [[C, client_fds["ipv6"]]], 0, "inet6")
        add("ipv6", "ESTABLISHED", "server", [[P, server_fds["ipv6"]]], 0, "inet6")
        add("dual_stack", "ESTABLISHED", "client", [[C, client_fds["dual_stack"]]], 0)
        add("dual_stack", "ESTABLISHED", "server", [[P, server_fds["dual_stack"]]], 0, "inet6")
    listen = []
    for name, l in listeners.items():
        listen.append({"name": name, "local": ep(l.getsockname()), "owners": [[P, l.fileno()]],
                       "family": "inet6" if l.family == socket.AF_INET6 else "inet"})

    info = {
        "pids": {"server": P, "client": C, "shared_child": K},
        "ports": sorted({int(t[1].rsplit(":", 1)[1]) for t in tuples.values()}),
        "expect": expect,
        "listeners": listen,
        # Client holds one reset socket (closed but held); P none.
        "closed_but_held": {"client": 0 if small else 1, "server": 0},
        "fds": {"server": {"pipe": count_fifos(), "anon": n_anon}},
        "reset_fd": None if small else client_fds["reset"],
        "netns_inode": os.stat("/proc/self/ns/net").st_ino,
    }
    print(json.dumps(info), flush=True)

    def stop(*_):
        for pid in (C, K):
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    # Bounded: at most 10 minutes, or until stdin closes.
    select.select([sys.stdin], [], [], 600)
    stop()


if __name__ == "__main__":
    main()
