#!/usr/bin/env python3
"""Many processes with sockets, for sockleak serve's cardinality test.

Forks N children; each connects once to a loopback listener of this process
and holds that one ESTABLISHED socket. The parent accepts every connection
after all forks (so no child inherits another's socket), prints one JSON
line {"pids": {"server": P}, "children": [...], "port": PORT}, then waits
until stdin closes or SIGTERM, and kills every child by pid. Children also
exit when the parent's life pipe closes. Bounded: 10 minutes at most.

Usage: serve_many.py N
"""
import json
import os
import select
import signal
import socket
import sys


def main():
    n = int(sys.argv[1])
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(n + 16)
    port = listener.getsockname()[1]
    life_r, life_w = os.pipe()
    children = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            os.close(life_w)
            listener.close()
            c = socket.create_connection(("127.0.0.1", port), timeout=10)
            # Hold the connection until the parent goes away (or 10 min).
            select.select([life_r], [], [], 600)
            c.close()
            os._exit(0)
        children.append(pid)
    os.close(life_r)
    listener.settimeout(20)
    accepted = [listener.accept()[0] for _ in range(n)]

    def stop(*_):
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in children:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    print(json.dumps({"pids": {"server": os.getpid()}, "children": children,
                      "port": port, "accepted": len(accepted)}), flush=True)
    select.select([sys.stdin], [], [], 600)
    stop()


if __name__ == "__main__":
    main()
