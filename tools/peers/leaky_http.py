#!/usr/bin/env python3
"""A tiny HTTP/1.1 server that leaks like incident 1 (sockleak check's peer).

Each connection is served by a thread: requests are answered (keep-alive, or
closed by the server after the response when the request says
`Connection: close`). When the client hangs up (read returns EOF) the buggy
server forgets the socket without close(): it stays in CLOSE_WAIT. With
--fixed it closes it. A reset (ECONNRESET) is handled the same way: leaked
(closed-but-held) or closed with --fixed.

--leak-pipes N: every connection also opens N pipes and never closes them
(2N fds), also with --fixed (a server whose sockets are fine but whose fds
grow).
--crash-after N: exit with status 3 after answering N requests.
--peek-eof-ms N: after reading a request, wait up to N ms for the client's
FIN before answering and count it as "half_closed" (proves a half-close:
the client shut down its sending side right after the request).
--stats FILE: after every event, write JSON counts (connections, requests,
eof, reset, send_error, server_closed) to FILE (atomically).
--port P: listen on P (default: a free port). Only 127.0.0.1 is used.

Prints one JSON line {"pid": ..., "port": ...} once it listens, then serves
until SIGTERM/SIGINT.
"""
import argparse
import json
import os
import select
import signal
import socket
import sys
import threading

LEAKED = []  # sockets and pipe fds kept forever: the leak
LOCK = threading.Lock()
STATS = {"connections": 0, "requests": 0, "eof": 0, "reset": 0,
         "send_error": 0, "server_closed": 0, "half_closed": 0}


def bump(args, key):
    with LOCK:
        STATS[key] += 1
        if args.stats:
            tmp = args.stats + ".tmp"
            with open(tmp, "w") as f:
                json.dump(STATS, f)
            os.replace(tmp, args.stats)


def read_head(conn, buf):
    """Reads until a blank line. Returns (head, rest) or (None, b'') on EOF."""
    while b"\r\n\r\n" not in buf:
        data = conn.recv(65536)
        if not data:
            return None, b""
        buf += data
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head, rest


def saw_fin(conn, ms):
    """True when the peer's FIN is the next thing to read (within ms)."""
    r, _, _ = select.select([conn], [], [], ms / 1000.0)
    if not r:
        return False
    try:
        return conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return False


def serve(conn, args):
    bump(args, "connections")
    for _ in range(args.leak_pipes):
        LEAKED.extend(os.pipe())
    body = b"x" * args.body
    buf = b""
    try:
        while True:
            head, buf = read_head(conn, buf)
            if head is None:
                bump(args, "eof")
                break
            close = b"connection: close" in head.lower()
            if args.peek_eof_ms and not buf and saw_fin(conn, args.peek_eof_ms):
                bump(args, "half_closed")
            hdr = ("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                   "Content-Length: %d\r\n%s\r\n"
                   % (len(body), "Connection: close\r\n" if close else ""))
            try:
                conn.sendall(hdr.encode() + body)
            except OSError:
                bump(args, "send_error")
                break
            bump(args, "requests")
            if args.crash_after and STATS["requests"] >= args.crash_after:
                os._exit(3)
            if close:
                # The server closes first: TIME_WAIT lands on this side.
                conn.close()
                bump(args, "server_closed")
                return
    except ConnectionResetError:
        bump(args, "reset")
    if args.fixed:
        conn.close()
    else:
        LEAKED.append(conn)  # the bug: no close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixed", action="store_true")
    ap.add_argument("--leak-pipes", type=int, default=0)
    ap.add_argument("--crash-after", type=int, default=0)
    ap.add_argument("--body", type=int, default=64)
    ap.add_argument("--peek-eof-ms", type=int, default=0)
    ap.add_argument("--stats")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", args.port))
    ls.listen(512)
    if args.stats:
        with open(args.stats, "w") as f:
            json.dump(STATS, f)
    print(json.dumps({"pid": os.getpid(), "port": ls.getsockname()[1]}),
          flush=True)
    while True:
        conn, _ = ls.accept()
        threading.Thread(target=serve, args=(conn, args), daemon=True).start()


if __name__ == "__main__":
    main()
