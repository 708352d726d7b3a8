#!/usr/bin/env python3
"""Process and socket churn for robustness tests: for at most --seconds
(default 4), forks short-lived children that each open a loopback connection
to a local listener and exit after a few ms, so processes, fds and sockets
vanish while sockleak scans. Prints one JSON line ({"pid": ..., "port": ...})
first; stops on SIGTERM or when stdin closes. Loopback only; bounded.

--hold-ms N --alive K --log FILE: each child instead holds its connection for
a random N/2..N ms, at most K children live at once, and appends one line
"pid cookie" (its socket's SO_COOKIE) to FILE before it starts holding, so a
test can check every owner sockleak names against the real holder. The
server closes what it accepted one second later."""
import collections
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time

SO_COOKIE = 57


def arg(name, default, kind=float):
    if name in sys.argv:
        return kind(sys.argv[sys.argv.index(name) + 1])
    return default


def main():
    seconds = arg("--seconds", 4.0)
    hold_ms = arg("--hold-ms", 0.0)
    alive = arg("--alive", 1, int)
    log = arg("--log", None, str)
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(512)
    lst.setblocking(False)
    port = lst.getsockname()[1]
    print(json.dumps({"pids": {"server": os.getpid()}, "port": port}), flush=True)
    children = set()

    def stop(*_):
        # Stopped by the test: the children go too, each by its own pid.
        for p in list(children):
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    deadline = time.time() + seconds
    accepted = collections.deque()
    spawned = 0
    while time.time() < deadline and spawned < 5000:
        if len(children) < alive:
            hold = random.uniform(hold_ms / 2, hold_ms) / 1000 if hold_ms else 0.005
            pid = os.fork()
            if pid == 0:
                try:
                    c = socket.create_connection(("127.0.0.1", port))
                    if log:
                        raw = c.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8)
                        cookie = struct.unpack("=Q", raw)[0]
                        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                        os.write(fd, f"{os.getpid()} {cookie}\n".encode())
                        os.close(fd)
                    time.sleep(hold)
                    c.close()
                finally:
                    os._exit(0)
            spawned += 1
            children.add(pid)
        select.select([lst], [], [], 0.002)
        while True:
            try:
                conn, _ = lst.accept()
            except OSError:
                break
            if hold_ms:
                accepted.append((time.time(), conn))
            else:
                conn.close()
        while accepted and accepted[0][0] < time.time() - 1.0:
            accepted.popleft()[1].close()
        for p in list(children):
            done, _ = os.waitpid(p, os.WNOHANG)
            if done:
                children.discard(p)
        r, _, _ = select.select([sys.stdin], [], [], 0)
        if r and not sys.stdin.read(1):
            break
    for p in children:
        try:
            os.kill(p, signal.SIGKILL)
            os.waitpid(p, 0)
        except OSError:
            pass
    for _, c in accepted:
        c.close()
    print(json.dumps({"spawned": spawned}), flush=True)
    select.select([sys.stdin], [], [], 30)


if __name__ == "__main__":
    main()
