#!/usr/bin/env python3
"""Process and socket churn for robustness tests: for at most --seconds
(default 4), forks short-lived children that each open a loopback connection
to a local listener and exit after a few ms, so processes, fds and sockets
vanish while sockleak scans. Prints one JSON line ({"pid": ..., "port": ...})
first; stops on SIGTERM or when stdin closes. Loopback only; bounded."""
import json
import os
import select
import signal
import socket
import sys
import time


def main():
    seconds = 4.0
    if "--seconds" in sys.argv:
        seconds = float(sys.argv[sys.argv.index("--seconds") + 1])
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(512)
    port = lst.getsockname()[1]
    print(json.dumps({"pids": {"server": os.getpid()}, "port": port}), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    deadline = time.time() + seconds
    children = set()
    spawned = 0
    while time.time() < deadline and spawned < 5000:
        pid = os.fork()
        if pid == 0:
            c = socket.create_connection(("127.0.0.1", port))
            time.sleep(0.005)
            c.close()
            os._exit(0)
        spawned += 1
        children.add(pid)
        try:
            conn, _ = lst.accept()
            conn.close()
        except OSError:
            pass
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
    select.select([sys.stdin], [], [], 30)


if __name__ == "__main__":
    main()
