#!/usr/bin/env python3
"""A command for `sockleak run` tests: it forks a child that talks to a
local server and either leaks (keeps N CLOSE_WAIT sockets and N pipes open)
or cleans up, then both exit.

Usage: run_script.py leaky|clean [--count N] [--exit CODE] [--hold SECONDS]

The parent listens on 127.0.0.1 (free port); the child connects N times, the
parent accepts and closes its ends at once (the child sees EOF). A leaky
child keeps its sockets (CLOSE_WAIT) and opens N pipes it never closes; a
clean child closes everything. The child holds for --hold seconds (so
samples see it), exits, and the parent exits with --exit.
Only loopback is used; nothing outlives the script.
"""
import argparse
import os
import socket
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["leaky", "clean"])
    ap.add_argument("--count", type=int, default=10)
    ap.add_argument("--exit", type=int, default=0)
    ap.add_argument("--hold", type=float, default=1.6)
    args = ap.parse_args()

    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.bind(("127.0.0.1", 0))
    ls.listen(args.count + 8)
    port = ls.getsockname()[1]
    pid = os.fork()
    if pid == 0:
        ls.close()
        # Let sockleak take a first sample before anything is opened, so
        # the growth is seen.
        time.sleep(0.6)
        keep = []
        for _ in range(args.count):
            c = socket.create_connection(("127.0.0.1", port))
            keep.append(c)
        # Wait for the server's FINs (bounded), as a real client would see.
        for c in keep:
            c.settimeout(5)
            c.recv(1)
        pipes = []
        if args.mode == "leaky":
            for _ in range(args.count):
                pipes.extend(os.pipe())
        else:
            for c in keep:
                c.close()
            keep = []
        time.sleep(args.hold)
        os._exit(0)
    for _ in range(args.count):
        s, _ = ls.accept()
        s.close()
    ls.close()
    os.waitpid(pid, 0)
    sys.exit(args.exit)


if __name__ == "__main__":
    main()
