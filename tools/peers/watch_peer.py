#!/usr/bin/env python3
"""Processes whose sockets and fds change over time, for the tests of
`sockleak watch` (crates/sockleak/tests/it/watch_*.rs).

One process per run (its pid is the subject of the test). It sets up, prints
ONE JSON line ({"pid", "port", "t0_ms", ...}), then runs its pattern on a
fixed schedule (t0 + k * every, so the true rate is exact) and keeps what it
holds until stdin closes, SIGTERM arrives, or --max-time seconds pass (60 by
default). Every loop is bounded in count and time. Loopback only.

Leaks (watch must call them leaks):
  close-wait   a server that accepts one connection every --every seconds
               (the client closes at once) and never closes its end: one more
               CLOSE_WAIT socket per step, --max steps at most
  pipes        one more pipe (2 fds) every --every seconds, --max at most
  fd-limit     sets a soft RLIMIT_NOFILE of --limit, opens fds up to --fill of
               it, then one more fd every --every seconds until open() fails
               (EMFILE); writes {"hit_ms": ...} to --hit-file at that moment

Not leaks (watch must stay quiet):
  pool         a keep-alive pool: --size connections to its own server,
               a request/response on one of them every --every seconds
  burst        --baseline CLOSE_WAIT sockets held from the start (so the group
               has a history), then after --at seconds --count more at once,
               closed again --hold seconds later
  churn        a connection every --every seconds whose server end sits in
               CLOSE_WAIT for --linger seconds before it is closed
"""
import argparse
import json
import os
import resource
import signal
import socket
import sys
import threading
import time


def now_ms():
    return int(time.time() * 1000)


def stop(*_):
    os._exit(0)


def watch_stdin():
    """Exits when the test closes our stdin (or dies)."""
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except OSError:
        pass
    os._exit(0)


class Clock:
    """A fixed schedule: tick k is at t0 + k * every."""

    def __init__(self, every, max_time):
        self.t0 = time.time()
        self.every = every
        self.end = self.t0 + max_time

    def wait_tick(self, k):
        target = self.t0 + k * self.every
        while True:
            left = target - time.time()
            if left <= 0:
                return
            time.sleep(min(left, 0.05))

    def expired(self):
        return time.time() >= self.end


def listener():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(1024)
    return s


def close_wait_pair(srv):
    """A server-side socket in CLOSE_WAIT: connect, accept, client closes."""
    c = socket.create_connection(srv.getsockname(), timeout=5)
    s, _ = srv.accept()
    c.close()
    return s


def announce(**info):
    info.setdefault("pid", os.getpid())
    info.setdefault("t0_ms", now_ms())
    sys.stdout.write(json.dumps(info) + "\n")
    sys.stdout.flush()


def hold(clock):
    while not clock.expired():
        time.sleep(0.1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["close-wait", "pipes", "fd-limit", "pool", "burst", "churn"])
    ap.add_argument("--every", type=float, default=0.1)
    ap.add_argument("--max", type=int, default=60)
    ap.add_argument("--max-time", type=float, default=60.0)
    ap.add_argument("--limit", type=int, default=600)
    ap.add_argument("--fill", type=float, default=0.81)
    ap.add_argument("--hit-file")
    ap.add_argument("--size", type=int, default=8)
    ap.add_argument("--at", type=float, default=0.8)
    ap.add_argument("--count", type=int, default=30)
    ap.add_argument("--hold", type=float, default=1.0)
    ap.add_argument("--linger", type=float, default=0.2)
    ap.add_argument("--baseline", type=int, default=2)
    a = ap.parse_args()
    a.max_time = min(a.max_time, 120.0)
    signal.signal(signal.SIGTERM, stop)
    threading.Thread(target=watch_stdin, daemon=True).start()
    held = []

    if a.mode == "close-wait":
        srv = listener()
        announce(port=srv.getsockname()[1], every=a.every, max=a.max)
        clock = Clock(a.every, a.max_time)
        for k in range(1, a.max + 1):
            if clock.expired():
                break
            clock.wait_tick(k)
            held.append(close_wait_pair(srv))
        hold(clock)

    elif a.mode == "pipes":
        announce(every=a.every, max=a.max)
        clock = Clock(a.every, a.max_time)
        for k in range(1, a.max + 1):
            if clock.expired():
                break
            clock.wait_tick(k)
            held.append(os.pipe())
        hold(clock)

    elif a.mode == "fd-limit":
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (a.limit, hard))
        target = int(a.limit * a.fill)
        # Kept open so there is an fd to write the hit file with at EMFILE.
        spare = os.open("/dev/null", os.O_RDONLY)
        while len(os.listdir("/proc/self/fd")) < target:
            held.append(os.open("/dev/null", os.O_RDONLY))
        announce(limit=a.limit, fds=len(os.listdir("/proc/self/fd")), every=a.every)
        clock = Clock(a.every, a.max_time)
        k = 0
        while not clock.expired() and k < a.limit:
            k += 1
            clock.wait_tick(k)
            try:
                held.append(os.open("/dev/null", os.O_RDONLY))
            except OSError:
                # EMFILE: the limit is reached now.
                hit = now_ms()
                os.close(spare)
                if a.hit_file:
                    with open(a.hit_file + ".tmp", "w") as f:
                        f.write(json.dumps({"hit_ms": hit, "opened": k - 1}))
                    os.rename(a.hit_file + ".tmp", a.hit_file)
                break
        hold(clock)

    elif a.mode == "pool":
        srv = listener()
        clients, servers = [], []
        for _ in range(a.size):
            clients.append(socket.create_connection(srv.getsockname(), timeout=5))
            servers.append(srv.accept()[0])
        announce(port=srv.getsockname()[1], size=a.size)
        clock = Clock(a.every, a.max_time)
        k = 0
        while not clock.expired():
            k += 1
            clock.wait_tick(k)
            i = k % a.size
            clients[i].sendall(b"GET /\n")
            servers[i].recv(64)
            servers[i].sendall(b"200 OK\n")
            clients[i].recv(64)

    elif a.mode == "burst":
        srv = listener()
        held = [close_wait_pair(srv) for _ in range(a.baseline)]
        announce(port=srv.getsockname()[1], count=a.count, baseline=a.baseline)
        clock = Clock(a.at, a.max_time)
        clock.wait_tick(1)
        burst = [close_wait_pair(srv) for _ in range(a.count)]
        time.sleep(a.hold)
        for s in burst:
            s.close()
        hold(clock)

    elif a.mode == "churn":
        srv = listener()
        announce(port=srv.getsockname()[1], every=a.every, linger=a.linger)
        clock = Clock(a.every, a.max_time)
        pending = []  # (close at, socket)
        k = 0
        while not clock.expired():
            k += 1
            clock.wait_tick(k)
            pending.append((time.time() + a.linger, close_wait_pair(srv)))
            t = time.time()
            for due, s in [p for p in pending if p[0] <= t]:
                s.close()
            pending = [p for p in pending if p[0] > t]


if __name__ == "__main__":
    main()
