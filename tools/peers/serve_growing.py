#!/usr/bin/env python3
"""A CLOSE_WAIT leak that grows, for sockleak serve's history test.

This process (the server, soft RLIMIT_NOFILE 256) listens on loopback and
accepts connections it never closes; a forked client opens one connection
every PERIOD seconds and closes it at once, so the server's CLOSE_WAIT count
and open fds grow steadily. Prints one JSON line {"pids": {"server": P,
"client": C}, "port": PORT} first, then grows; stops after COUNT connections
(bounded), and exits when stdin closes or on SIGTERM (killing the client by
pid). At most 10 minutes.

Usage: serve_growing.py [--count N] [--period S]
"""
import json
import os
import resource
import select
import signal
import socket
import sys
import time


def arg(name, default, conv):
    if name in sys.argv:
        return conv(sys.argv[sys.argv.index(name) + 1])
    return default


def main():
    count = arg("--count", 120, int)
    period = arg("--period", 0.25, float)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    life_r, life_w = os.pipe()
    client = os.fork()
    if client == 0:
        os.close(life_w)
        listener.close()
        for _ in range(count):
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
            c.close()
            r, _, _ = select.select([life_r], [], [], period)
            if r:
                break
        select.select([life_r], [], [], 600)
        os._exit(0)
    os.close(life_r)

    def stop(*_):
        try:
            os.kill(client, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    print(json.dumps({"pids": {"server": os.getpid(), "client": client}, "port": port}),
          flush=True)
    held = []
    deadline = time.time() + 600
    while time.time() < deadline:
        r, _, _ = select.select([listener, sys.stdin], [], [], 1.0)
        if sys.stdin in r:
            break
        if listener in r and len(held) < count:
            conn, _ = listener.accept()
            held.append(conn)  # never closed: the leak
    stop()


if __name__ == "__main__":
    main()
