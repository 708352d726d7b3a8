//! `sockleak explain`: plain-language text for every TCP state and every
//! finding kind: what it means, which side is at fault, whether it times out,
//! how it typically arises and how to fix it; and for the error messages
//! leaks end in (symptoms: "Too many open files", ECONNRESET, ...): what they
//! mean, which leak they signal, what to run and what to read next.
//!
//! The texts follow RFC 9293's state machine and say where Linux differs or
//! adds detail (the fixed 60 s TIME_WAIT, tcp_fin_timeout only for orphans,
//! the FIN counted in Recv-Q, SOCK_DESTROY leaving the fd open). They are
//! wrapped at 78 columns so they print as they are.

use crate::findings::FindingKind;
use crate::socket::TcpState;

const ESTABLISHED: &str = "\
ESTABLISHED: an open connection; data can flow both ways.

What it means: the three-way handshake is done and neither side has closed.
Idle connections in a keep-alive pool sit here, and that is normal.

Does it time out: no. TCP keeps an idle connection forever unless the
application sets an idle timeout, enables TCP keepalive (SO_KEEPALIVE; the
first probe after net.ipv4.tcp_keepalive_time, 2 hours by default) or sets
TCP_USER_TIMEOUT for unacknowledged data.

When it is a problem: a count that only grows. Typical causes: a new HTTP
client, session or connection pool created per request and never closed
(Go: a new http.Transport per request; Python: a requests.Session per call;
Java: a new HttpClient per request), each keeping its idle connections.
Recv-Q that stays high means this application does not read; Send-Q that
stays high means the peer does not read or the network is slow.

Fix: share one client or pool per destination, bound its size, and give it
an idle timeout shorter than the server's keep-alive timeout.
";

const SYN_SENT: &str = "\
SYN_SENT: connect() was called and the SYN is out; no answer yet.

What it means: this side asked for a connection and waits for the peer's
SYN-ACK. Normally this lasts one round trip.

Does it time out: yes. Linux retransmits the SYN net.ipv4.tcp_syn_retries
times (6 by default, about 127 s in all), then connect() fails with
ETIMEDOUT. A refusal (RST) ends it at once with ECONNREFUSED.

Who is at fault: usually not this side. The destination is down, a firewall
drops the SYN silently, the route is wrong, or the server is so overloaded
that its listen queue drops SYNs.

Fix: check that the destination is reachable (ping, traceroute, nc -vz
HOST PORT), give connect() a timeout shorter than the kernel's, and stop
retrying a dead destination (circuit breaker).
";

const SYN_RECV: &str = "\
SYN_RECV: a listener received a SYN and answered SYN-ACK; it waits for the
client's final ACK.

What it means: half an incoming handshake. Linux keeps these as small
request sockets attached to the listener (ss shows them as SYN-RECV) and
creates the real socket only when the ACK arrives.

Does it time out: yes. The SYN-ACK is retransmitted
net.ipv4.tcp_synack_retries times (5 by default, about a minute), then the
request is dropped.

Who is at fault: usually the client or the network: clients that vanish, a
lossy path, or a SYN flood with forged sources (net.ipv4.tcp_syncookies
protects against that). It is this server's fault when its accept queue is
full: the kernel then drops the completing ACK, and the connection lingers
here until the client retries (see accept-queue-overflow).

Fix: for floods, keep syncookies on; for a full accept queue, make the
server accept faster.
";

const FIN_WAIT1: &str = "\
FIN_WAIT1: this side closed (close() or shutdown(SHUT_WR)); its FIN is sent
or queued, and not yet acknowledged.

What it means: the active close has begun. Normally it lasts one round trip
before FIN_WAIT2 (or CLOSING, or TIME_WAIT).

Does it time out: yes. The FIN and any data still queued before it are
retransmitted; a socket the process still holds gives up after
net.ipv4.tcp_retries2 (15 retries, about 15 minutes); an orphan (already
closed by its process) after net.ipv4.tcp_orphan_retries (0 means 8).

Who is at fault: usually the peer or the network. Many FIN_WAIT1 sockets
with a large Send-Q mean the peer advertises a zero window (it stopped
reading) so the remaining data and the FIN cannot be sent; with nothing in
Send-Q the peer is unreachable.

Fix: look at the peer: is it hung or not reading? Orphans count against
net.ipv4.tcp_max_orphans (see orphan-pressure).
";

const FIN_WAIT2: &str = "\
FIN_WAIT2: this side closed its sending direction and the peer acknowledged
the FIN; it now waits for the peer to close too.

What it means: half closed. The peer's TCP has the FIN (its socket is in
CLOSE_WAIT) but the peer's application has not called close().

Who is at fault: the peer, almost always. Its application missed the end of
the stream (read() returning 0) or an error path skipped close(). When the
peer is a process on this host, sockleak finds its CLOSE_WAIT socket by the
mirrored address pair and names it.

Does it time out: it depends on who holds the socket.
- Orphaned (this process called close()): Linux drops it after
  net.ipv4.tcp_fin_timeout (60 s by default; TCP_LINGER2 per socket). The
  peer's CLOSE_WAIT stays: it never times out.
- Still held (this process called shutdown(SHUT_WR) and keeps the fd): it
  waits as long as the peer keeps its end open, without a timeout. TCP
  keepalive notices a peer that disappeared, not one that is merely idle.

How it arises: the other half of a CLOSE_WAIT leak (see close-wait): a C
client whose error path returns without close(), a server that ignores EOF,
an HTTP client that never closes response streams.

Fix: fix the peer (see close-wait). On this side, close() after shutdown()
once a timeout passes. Lowering tcp_fin_timeout only frees orphans sooner.
";

const TIME_WAIT: &str = "\
TIME_WAIT: the connection is over; the side that closed first remembers it
for a while.

What it means: this side sent the first FIN, got the peer's FIN and
acknowledged it. The kernel keeps the connection's addresses and sequence
numbers (no process, no fd, little memory) to retransmit the last ACK if it
was lost and to keep delayed segments from corrupting a new connection that
reuses the same address pair.

Does it time out: yes, always. RFC 9293 says 2*MSL; Linux uses a fixed
60 s (TCP_TIMEWAIT_LEN). net.ipv4.tcp_fin_timeout does not change it.
ss -o shows the time left.

Who is at fault: nobody. It is protection, not a leak.

When it is a problem: a client that opens and closes many short connections
to one destination (ip:port) needs a distinct local port for each, and
each port stays in TIME_WAIT for 60 s. When the ephemeral range
(net.ipv4.ip_local_port_range minus ip_local_reserved_ports) runs out,
connect() fails with EADDRNOTAVAIL (\"Cannot assign requested address\").
Roughly: connections per second x 60 must stay well below the range.

Fix, in this order:
1. Reuse connections: HTTP keep-alive and a connection pool.
2. More ephemeral ports: widen net.ipv4.ip_local_port_range.
3. Let the server close first (e.g. Connection: close from the server):
   TIME_WAIT then lands on the server, on its one listening port.
4. SO_REUSEADDR for sockets that bind a fixed port;
   net.ipv4.tcp_tw_reuse (1: on, 2: loopback only) lets outgoing
   connections reuse a TIME_WAIT port when TCP timestamps make it safe.
5. Last resort: SO_LINGER with a 0 timeout closes with a RST and skips
   TIME_WAIT, giving up TCP's guarantee that the last data arrived.
(net.ipv4.tcp_tw_recycle was removed in Linux 4.12; do not look for it.)
";

const CLOSE: &str = "\
CLOSE (ss: UNCONN): no connection.

What it means: RFC 9293's CLOSED, the state before and after a connection.
Linux lists a TCP socket in this state when it is bound but neither
listening nor connected (newer kernels and ss show these as bound-inactive).
A connection that was reset or aborted also ends here and then leaves the
kernel's tables, while the process may still hold its fd.

Does it time out: there is nothing to time out; the fd stays until close().

Who is at fault: for a bound-only socket, nobody (a server between bind()
and listen(), or a client between bind() and connect()). Socket fds of a
process that appear in no TCP table are connections the peer reset, that
timed out, or that were killed (ss -K), and that the process never closed:
sockleak reports those as closed_but_held.

Fix: close sockets on every error path (ECONNRESET, EPIPE, ETIMEDOUT).
";

const CLOSE_WAIT: &str = "\
CLOSE_WAIT: the peer hung up, and this application has not.

What it means: the remote sent a FIN (it closed its sending direction), this
host's TCP acknowledged it, and now the local application must call close().
Until it does, the socket, its fd and its buffers stay.

Who is at fault: the application on THIS side, or a library it uses. The
kernel has done its part; only the process can finish the close.

Does it time out: no. CLOSE_WAIT has no timer and lasts until the process
closes the socket or exits. (If the application enabled TCP keepalive and
the peer has forgotten the connection, a probe draws a RST and the socket
is reset, yet the fd still stays: see closed-but-held.) Many CLOSE_WAIT
sockets therefore mean a leak that grows until the process runs out of
file descriptors (\"Too many open files\").

Reading Recv-Q: the FIN counts as 1 until a read reaches it. Recv-Q 1: the
application never read to the end. Recv-Q above 1: data it never read (a
response body left in the buffer). Recv-Q 0: it even read the end of stream
(read() returned 0) and still did not close.

How it typically arises:
- Servers whose loop ignores read() returning 0 (-1 in Java) and keeps the
  connection, or forgets close() on an error or timeout path.
- C code that returns early on a connect/write/read error without close().
- Java HttpClient, Apache HttpClient and the AWS SDK: a response
  InputStream (S3 getObject, ResponseInputStream) copied or abandoned
  without close(); the pool never gets the connection back and callers see
  \"Timeout waiting for connection from pool\".
- Python requests/urllib3: stream=True responses never closed; urllib3 and
  httplib2 keep idle pooled connections that the server has closed in
  CLOSE_WAIT until they are reused or the pool is closed; httplib2.Http
  objects created per request keep their connections until collected.
- Go net/http: a resp.Body that is never closed (it must also be read to
  EOF for the connection to be reused), or a new Transport per request.
- Node.js: responses of an http.Agent never consumed (no res.resume() or
  res.destroy()), or net sockets with allowHalfOpen: true that never call
  socket.end().

Fix: close on every path. Java: try-with-resources on the response or its
stream; Python: with requests.get(...) as r, or r.close(); Go: defer
resp.Body.Close(); Node: consume or destroy every response; C: one cleanup
path that closes the fd. Pools: evict idle connections before the server's
keep-alive timeout. Right now, only the process can free them: restart it,
or close the fd inside it (gdb -p PID -batch -ex 'call (int)close(FD)').
ss -K (SOCK_DESTROY) frees the TCP state and resets the peer, but the
process keeps the fd.
";

const LAST_ACK: &str = "\
LAST_ACK: the peer closed first, then this side closed too; its FIN waits
for the peer's acknowledgement.

What it means: the end of a passive close. A CLOSE_WAIT socket moves here
when its application finally calls close(). Normally it lasts one round
trip, and the socket is usually already an orphan (no fd).

Does it time out: yes. The FIN is retransmitted and the socket is dropped
after net.ipv4.tcp_orphan_retries (0 means 8) unanswered retransmissions,
or at once when the peer answers with a RST.

Who is at fault: usually the network or the peer: many LAST_ACK sockets mean
the peer vanished (host down, NAT or firewall state expired) before the
close finished. Many at once right after a fix or restart are CLOSE_WAIT
sockets being released.

Fix: usually nothing; look at the path to the peer if they persist.
";

const LISTEN: &str = "\
LISTEN: a server socket waiting for connections.

What it means: listen() was called. Completed handshakes wait in the accept
queue until the application calls accept(). For a listener, ss shows the
accept queue length as Recv-Q and the backlog as Send-Q: the backlog is the
listen() argument capped by net.core.somaxconn.

Does it time out: no; it lasts until the socket is closed.

When it is a problem: Recv-Q reaching Send-Q. The accept queue is full, so
the kernel drops new handshakes (TcpExt ListenOverflows and ListenDrops
grow) and clients see timeouts.

Who is at fault: the listening process. It stopped accepting: it is hung,
blocked, or overloaded (see accept-queue-overflow).

Fix: find what the accepting thread is doing (jstack, py-spy dump, gdb,
/proc/PID/stack). A larger backlog only absorbs bursts.
";

const CLOSING: &str = "\
CLOSING: both sides closed at the same time.

What it means: a simultaneous close. This side sent its FIN and received the
peer's FIN before the acknowledgement of its own. It moves to TIME_WAIT when
that acknowledgement arrives. Rare and brief.

Does it time out: yes; the FIN is retransmitted and the socket dropped after
the retries run out.

Who is at fault: nobody; many CLOSING sockets that persist point at lost
packets on the path.

Fix: usually nothing.
";

const CLOSE_WAIT_LEAK: &str = "\
close_wait_leak: a process holds connections that the peer closed.

What sockleak reports: per process and group (server connections by the
listening endpoint they came in on, client connections by the peer they go
to), the CLOSE_WAIT sockets at least --min-age old (30 s by default; younger
ones are normal churn: a server may notice EOF a moment later). Evidence:
count, age of the oldest, bytes never read, cookies of the oldest sockets,
the peer process if it is on this host, other processes holding the same
sockets.

How old: CLOSE_WAIT has no timer. From a single snapshot sockleak uses
tcp_info's time since the last ACK-bearing segment: the FIN is the last one
on an idle CLOSE_WAIT socket, so this approximates the time since the peer
closed (a lower bound if data was exchanged after it); it is labelled an
estimate (\"about\", age_source tcp_info). watch uses the first sighting
(first_seen), and the eBPF collector the exact time of the change (ebpf).
Sockets of unknown age are counted and listed as age_unknown; a finding made
only of them is info, since one snapshot cannot tell them from churn.

Severity: warning; critical from 100 sockets or when the process uses 80 %
of its fd limit.

Does it time out: no. CLOSE_WAIT has no timer; the sockets stay until the
process closes them or exits.

Who is at fault: the process holding the CLOSE_WAIT sockets. Server role:
it misses EOF from clients. Client role with unread bytes: responses were
never read to the end nor closed (the pool/stream leak). Client role
without unread bytes: an error path or end-of-stream branch skips close().

Fix: close every connection on every path; see close-wait for the causes in
common stacks and their fixes.
";

const FIN_WAIT2_STUCK: &str = "\
fin_wait2_stuck: connections this side closed, waiting for a peer that never
closes.

What sockleak reports: FIN_WAIT2 sockets per holding process (or without a
process: orphans) and group, at least --min-age old. When the peer socket is
on this host (the mirrored address pair in the same network namespace, in
CLOSE_WAIT), the finding names that process (peer_pid): it is at fault, and
its close_wait_leak finding points back here.

Severity: warning for sockets a process still holds (they never time out);
info for orphans, which the kernel drops after net.ipv4.tcp_fin_timeout
(fin_timeout_s in the finding).

Fix: fix the peer (see close-wait and fin-wait-2).
";

const TIME_WAIT_PRESSURE: &str = "\
time_wait_pressure: many TIME_WAIT sockets toward one destination.

What sockleak reports: outgoing connections in TIME_WAIT per network
namespace, local address and remote ip:port, as a share of the namespace's
usable ephemeral ports (net.ipv4.ip_local_port_range minus
ip_local_reserved_ports): each needs its own local port toward that
destination for 60 s. TIME_WAIT on a server's listening port is not counted:
it uses no ephemeral port.

Severity: info below 50 % (and only from 100 sockets and 1 % of the range,
so a quiet host says nothing), warning from 50 %, critical from 90 %.

Who is at fault: nobody; this is not a leak. It is the load pattern of a
client that opens a new connection per request. At 100 %, connect() fails
with EADDRNOTAVAIL.

Does it time out: each socket does, after 60 s; the pressure lasts as long
as the connection rate.

Fix, in order: keep-alive and pooling; more ephemeral ports; let the server
close first; SO_REUSEADDR / net.ipv4.tcp_tw_reuse; SO_LINGER 0 only as a
last resort. See time-wait.
";

const FD_EXHAUSTION: &str = "\
fd_exhaustion: a process is close to its limit of open file descriptors.

What sockleak reports: open fds against the soft RLIMIT_NOFILE (\"Max open
files\" in /proc/PID/limits), with the fds by kind. Warning from 80 %,
critical from 95 %.

What happens at the limit: every call that creates an fd (accept(),
socket(), open(), pipe(), epoll_create()) fails with EMFILE, \"Too many
open files\" (java.net.SocketException in Java). Servers usually stop
serving, some spin on a failing accept().

Does it time out: no. Open fds stay until the process closes them or exits.

Who is at fault: the process. The kind that dominates says where to look:
sockets (CLOSE_WAIT or closed-but-held leaks), pipes (child processes whose
pipes are never closed, or pipes created per request), files opened and
never closed, eventfd/epoll/timerfd created per task.

Fix: fix the leak. Raising the limit (ulimit -n, systemd LimitNOFILE=, the
container runtime's nofile) helps only when the process really needs that
many fds; with a leak it only delays the failure.
";

const CLOSED_BUT_HELD: &str = "\
closed_but_held: socket fds whose connection the kernel has already ended.

What sockleak reports: per process, TCP socket fds (socket:[inode] in
/proc/PID/fd) that appear in no TCP table. The connection was reset by the
peer, aborted (timeout, keepalive failure) or killed with ss -K
(SOCK_DESTROY), and the process never called close(). lsof shows them as
\"sock ... protocol: TCP\"; ss shows nothing.

Severity: warning from one socket.

Does it time out: no. The fd stays until the process closes it or exits,
and counts against its fd limit.

Who is at fault: the process: an error path (ECONNRESET, EPIPE, ETIMEDOUT)
that returns without closing the socket.

Fix: close the socket on every error path.
";

const ACCEPT_QUEUE_OVERFLOW: &str = "\
accept_queue_overflow: a server stopped accepting connections.

What sockleak reports: a LISTEN socket whose accept queue (Recv-Q) has
reached its backlog (Send-Q), with the namespace's ListenOverflows counter
(cumulative since boot). Always critical.

What happens: the kernel finishes handshakes but nobody takes them, so new
connection attempts are dropped: clients see connect timeouts or
connections that hang, and SYN_RECV entries pile up under the listener.

Does it time out: no. The queue drains only when the process accepts again.

Who is at fault: the listening process: hung (deadlock, blocked I/O, a full
thread pool), paused, or overloaded. Incident pattern: a process that hit
its fd limit cannot accept() any more.

Fix: look at its accepting thread (jstack, py-spy dump, gdb, /proc/PID/stack)
and at fd_exhaustion findings. A larger backlog (listen() argument,
net.core.somaxconn) only absorbs bursts.
";

const ORPHAN_PRESSURE: &str = "\
orphan_pressure: the host is close to its limit of orphaned TCP sockets.

What sockleak reports: sockstat's orphan count against
net.ipv4.tcp_max_orphans. Both are host-wide. Warning from 80 %, critical
from 95 %.

What it means: orphans are sockets their process closed while the kernel
still finishes the close (FIN_WAIT1, FIN_WAIT2, CLOSING, LAST_ACK). Beyond
the limit (reduced further under memory pressure) the kernel resets
connections instead of closing them gracefully and logs \"too many orphaned
sockets\".

Does it time out: each orphan does (tcp_fin_timeout for FIN_WAIT2,
tcp_orphan_retries for the others); the pressure lasts as long as the cause.

Who is at fault: peers that do not acknowledge or do not close, or a slow
or lossy network.

Fix: find the peers (fin_wait2_stuck findings, ss -tan state fin-wait-1),
lower net.ipv4.tcp_fin_timeout or tcp_orphan_retries, or raise
tcp_max_orphans if memory allows.
";

const TIME_WAIT_BUCKETS: &str = "\
time_wait_buckets: a namespace is close to net.ipv4.tcp_max_tw_buckets.

What sockleak reports: sockstat's TIME_WAIT count of a network namespace
against its tcp_max_tw_buckets. Warning from 80 %, critical from 95 %.

What happens at the limit: the kernel logs \"time wait bucket table
overflow\" and closes connections without TIME_WAIT, so delayed segments
of an old connection may corrupt a new one on the same address pair.

Does it time out: each TIME_WAIT socket does, after 60 s; the pressure
lasts as long as the connection rate.

Who is at fault: nobody in particular; this is the load pattern of many
short-lived connections.

Fix: fewer short-lived connections (keep-alive, pooling), or a higher
limit if memory allows. See time-wait.
";

const FD_LEAK: &str = "\
fd_leak: a kind of file descriptor in a process grows steadily over time.

What sockleak reports (sockleak watch only; one snapshot cannot see
growth): a process whose sockets, pipes, files or anonymous inodes keep
increasing across the watch window, with the rate per minute and, when the
process has a limit, the estimated time until it hits it.

Does it time out: no. Leaked fds stay until the process closes them or
exits; the growth ends at the fd limit (see fd-exhaustion).

Who is at fault: the process. Growing pipes usually mean child processes
started per request whose pipes are never closed (or never waited for);
growing sockets are a CLOSE_WAIT or closed-but-held leak or unbounded
connection pools.

Fix: close what is opened on every path; reap child processes and close
both ends of their pipes.
";

const HALF_CLOSED: &str = "\
half_closed: CLOSE_WAIT sockets whose process is still writing to them.

What sockleak reports: sockets in CLOSE_WAIT (the peer sent its FIN) on
which the owning process sent data after the FIN arrived, and recently
(within the last 10 s). Severity info: this is not a leak.

Why it is legal: a FIN only says the peer will send no more. TCP lets the
other side keep sending until it closes too (shutdown(SHUT_WR) on the
peer, then reading the rest). Proxies relay the tail of a stream this way,
and a server may still be streaming a response when the client half-closes.

Does it time out: no, like any CLOSE_WAIT; but it ends when the process has
written what it had and calls close().

Who is at fault: nobody yet; the peer closed its half on purpose and the
process is finishing its own.

Fix: nothing while the writes go on. When they stop and the sockets stay,
it is a leak: sockleak watch then reports a close_wait_leak, with its age
and rate, and the fix is to close() once the last write is done.
";

const RECV_Q: &str = "\
recv-q: what the Recv-Q and Send-Q columns mean.

Connected sockets: Recv-Q is data received and not yet read by the
application; Send-Q is data sent and not yet acknowledged by the peer.

A FIN counts as 1 in Recv-Q until a read reaches it: a CLOSE_WAIT socket
with Recv-Q 1 has no unread data, only the end of stream. Unread data is
Recv-Q minus 1. A read that drains the data also consumes the FIN and
leaves 0: the application saw end of stream and still did not close.

Listening sockets: Recv-Q is the accept queue length and Send-Q the backlog
(see listen).
";

const KILL: &str = "\
kill: what ss -K and SOCK_DESTROY do, and what they do not.

SOCK_DESTROY (sock_diag, used by ss -K) aborts one socket by its addresses
and cookie: the kernel frees the TCP state and sends a RST to the peer. It
needs CAP_NET_ADMIN, a socket opened inside the target network namespace,
and a kernel built with CONFIG_INET_DIAG_DESTROY (many distribution and
container kernels lack it, and ss -K then skips sockets silently).

What it does not do: close the owner's file descriptor. The process keeps
the fd (lsof shows \"sock ... protocol: TCP\", ss shows nothing: a
closed-but-held socket) until it calls close(). It frees a stuck peer
(FIN_WAIT2) and the kernel memory, not the process's fd limit.

Only close() inside the process frees the fd: restart the process, or call
close() in it with a debugger (gdb -p PID -batch -ex 'call (int)close(FD)'),
which pauses the process and is risky if it uses the fd concurrently.
";

const CLOEXEC: &str = "\
cloexec: sockets shared with child processes.

A socket fd is copied into every child created by fork() and survives
exec() unless it has the close-on-exec flag. The connection is closed only
when the last holder closes it, so a parent that closes correctly still
leaves the socket in CLOSE_WAIT (or ESTABLISHED) while a long-running child
holds its copy. The socket does not time out while any holder keeps it.

Who is at fault: the process that created the socket without close-on-exec,
or the child that keeps what it does not use. sockleak charges a shared
socket to the holder that did not inherit it and lists the others
(also_held_by, inherited: true).

Fix: create sockets with SOCK_CLOEXEC (socket() and accept4() flags;
O_CLOEXEC for open()) so a child that calls exec() does not keep them. Go,
Python 3.4+ and Node do this by default and Java closes other fds when it
starts a child, so shared sockets usually come from C code, explicit fd
passing, or fork() without exec() (pre-fork servers, daemons): there the
child must close the fds it does not use, since close-on-exec acts only at
exec().
";

const AGE: &str = "\
age: how sockleak knows how long a socket has been in its state.

The kernel keeps no \"entered this state at\" time. sockleak uses, best
first:
- ebpf: the exact time of the state change, seen by the
  inet_sock_set_state tracepoint (sockleak watch with the eBPF collector).
- tcp_info (one snapshot): for CLOSE_WAIT and FIN_WAIT2, the time since the
  last ACK-bearing segment arrived (tcpi_last_ack_recv). On an idle
  CLOSE_WAIT socket the FIN is that segment, so this is the time since the
  peer closed; if data was exchanged later, it is a lower bound. For
  TIME_WAIT, 60 s minus the remaining timer; for orphaned FIN_WAIT2, the
  fin timeout minus the remaining timer. Shown as \"about\".
- first_seen: the first watch sample that saw the socket in this state, a
  lower bound. Shown as \"at least\".

The timestamps of /proc/PID/fd entries are not socket ages: they record
when something first looked at the fd.
";

// Symptoms: the error messages people paste. Each text says what the error
// means in TCP and fd terms, which leak it usually signals, what to run and
// which topics to read next. Numbers are Linux's errno values (asm-generic
// errno-base.h / errno.h, the same on x86_64 and arm64).

const EMFILE: &str = "\
\"Too many open files\" (EMFILE, errno 24): a process reached its limit of
open file descriptors.

What it means: the process holds as many fds as its soft RLIMIT_NOFILE
allows (\"Max open files\" in /proc/PID/limits), so every call that creates
one fails: accept() and socket() for connections, open(), pipe(). A server
stops taking connections (some spin on a failing accept()) and a client
cannot connect. Java reports it as java.net.SocketException or
IOException, Python as OSError [Errno 24], Go as \"accept4: too many open
files\", Node as EMFILE.

What it usually signals: an fd leak, most often sockets: connections the
peer closed and the application did not (CLOSE_WAIT), or sockets whose
connection the kernel already ended (closed-but-held). Pipes, files or
eventfds created per request leak the same way. A limit of 1024 can also
be too low for an honest load: the fds by kind tell which.

Run:
  sockleak scan --pid PID
    its fds by kind, fd_exhaustion and the leak findings behind it
  sockleak watch --pid PID
    which kind of fd grows, how fast, and when it hits the limit

Read next: fd-exhaustion, close-wait, closed-but-held, fd-leak,
accept-queue-overflow
";

const ENFILE: &str = "\
\"Too many open files in system\" (ENFILE, errno 23): the host's table of
open files is full.

What it means: the whole host, not one process, reached fs.file-max
(/proc/sys/fs/file-nr shows allocated and maximum; the kernel logs
\"VFS: file-max limit N reached\"). Every process without CAP_SYS_ADMIN
that opens a file, socket or pipe fails, including ones not to blame.

What it usually signals: one process (or a few) leaking fds with no
per-process limit low enough to stop it first, typically a service run
with LimitNOFILE=infinity or a huge ulimit -n: a socket leak (CLOSE_WAIT,
closed-but-held) or a pipe leak grown to hundreds of thousands of fds.

Run:
  sockleak scan
    every process's fds (FDS column) and the leak findings
  sockleak watch
    which process's fds grow, and how fast

Read next: fd-leak, fd-exhaustion, close-wait, closed-but-held
";

const EADDRNOTAVAIL: &str = "\
\"Cannot assign requested address\" (EADDRNOTAVAIL, errno 99): connect()
found no free local port toward that destination.

What it means: every outgoing connection to one destination ip:port needs
its own local (ephemeral) port from net.ipv4.ip_local_port_range minus
ip_local_reserved_ports. When all are taken, by open connections or by
TIME_WAIT sockets that keep theirs for 60 s, connect() fails at once. (The
other cause: bind() to an address this host does not have, or not yet: a
service that starts before its network.)

What it usually signals: a client that opens a new connection per request
and closes it, so TIME_WAIT piles up toward one destination
(time_wait_pressure: a load pattern, not a leak); or a client that never
closes or reuses its connections, so ESTABLISHED or CLOSE_WAIT sockets
toward one destination keep growing (a new client or pool per request).

Run:
  sockleak scan --state time-wait
    TIME_WAIT per destination, as a share of the usable ports
  sockleak watch --process NAME
    whose connections grow, toward whom, and how fast

Read next: time-wait-pressure, time-wait, established, close-wait
";

const POOL_TIMEOUT: &str = "\
\"Timeout waiting for connection from pool\": a connection pool has no free
connection left, and the caller gave up waiting.

What it means: not a kernel error. Pooling clients lend each connection
to one request at a time and make the next one wait when all are lent:
Apache HttpClient (ConnectionPoolTimeoutException), the AWS SDK for Java
(\"Unable to execute HTTP request: Timeout waiting for connection from
pool\"), urllib3 (EmptyPoolError), httpx (PoolTimeout), HikariCP
(\"Connection is not available, request timed out\"). Pools are small (50
connections in the AWS SDK, 2 per route in HttpClient 4), so a leak shows
here long before any fd limit.

What it usually signals: connections lent and never given back: a response
or its stream (S3 getObject, ResponseInputStream, an HttpEntity) that the
code neither read to the end nor closed. Those connections sit in
ESTABLISHED with unread bytes in Recv-Q, and in CLOSE_WAIT once the server
times them out and closes. Less often the pool is too small for the
concurrency, or the server too slow.

Run:
  sockleak scan --process NAME --state close-wait,established
    the pool's connections, their unread bytes and ages
  sockleak watch --process NAME
    whether they keep growing instead of going back to the pool

Read next: close-wait, close-wait-leak, recv-q, established
";

const ECONNRESET: &str = "\
\"Connection reset by peer\" (ECONNRESET, errno 104): the peer answered with
a RST and aborted the connection.

What it means: the other side's kernel threw the connection away: its
process closed the socket with data unread, exited or crashed, set
SO_LINGER 0, or no longer knew the connection (restarted, or a NAT or
firewall forgot it). The next read() or write() here fails. Java says
\"Connection reset\", Node ECONNRESET or \"socket hang up\", Python
ConnectionResetError.

What it usually signals: a stale pooled connection. The server closed an
idle keep-alive connection (its keep-alive timeout is shorter than the
client pool's idle timeout), the client's socket waited in CLOSE_WAIT in
the pool, and the next request written to it drew the RST. On a server, a
reset is often a client that gave up (a timeout) with data unread. A
socket that got a RST and is not closed keeps its fd: closed-but-held.

Run:
  sockleak scan --process NAME --state close-wait
    pooled connections the server has already closed
  sockleak scan --process NAME
    closed_but_held: reset connections whose fds are still open

Read next: close-wait, closed-but-held, established, kill
";

const EPIPE: &str = "\
\"Broken pipe\" (EPIPE, errno 32): a write to a connection that is gone.

What it means: this side wrote to a TCP socket after the peer reset it
(the first write after the RST reports ECONNRESET, later ones EPIPE) or
after this side shut it down for writing. The kernel also raises SIGPIPE,
which most runtimes ignore so the write returns the error. (For a pipe, the
reading process is gone.) Java says \"java.io.IOException: Broken pipe\",
Python BrokenPipeError, Go \"write: broken pipe\".

What it usually signals: the same as a reset: the peer closed or dropped
a connection this side kept using, typically a stale pooled connection
(CLOSE_WAIT in the pool), or a client that went away while a server was
still sending its response (a client timeout). After the error the socket
must be closed; one kept open is a closed-but-held leak.

Run:
  sockleak scan --process NAME --state close-wait
    connections the peer has closed and this process still uses
  sockleak scan --process NAME
    closed_but_held: dead connections whose fds are still open

Read next: close-wait, closed-but-held, established
";

const ECONNREFUSED: &str = "\
\"Connection refused\" (ECONNREFUSED, errno 111): nothing listens on that
address and port.

What it means: the destination answered the SYN with a RST. No socket
listens on that port in that network namespace and on that address (a
server bound to 127.0.0.1 refuses the host's other addresses), or a
firewall rejects with tcp-reset. connect() fails at once.

What it usually signals: the server is down or restarting, not a leak on
this side. Leaks lead here when the server died of one: it crashed or was
restarted after running out of fds, or failed its health checks. A server
that only stopped accepting does not refuse: its full accept queue drops
the SYNs and clients time out instead (unless
net.ipv4.tcp_abort_on_overflow is 1).

Run:
  sockleak scan --state listening
    which process listens where, in which namespace
  sockleak scan --process NAME
    whether the server is near its fd limit (fd_exhaustion)

Read next: listen, accept-queue-overflow, fd-exhaustion, syn-sent
";

const EADDRINUSE: &str = "\
\"Address already in use\" (EADDRINUSE, errno 98): bind() or listen() on a
port that another socket still has.

What it means: a socket already owns that local address and port: another
listener (an old instance still running, or a child process that inherited
the listening socket), or connections the previous instance left on the
port (TIME_WAIT for 60 s, FIN_WAIT2, CLOSE_WAIT) when the new one does not
set SO_REUSEADDR. On a client, bind() to port 0 ran out of ephemeral ports.

What it usually signals: a restart that races the old process, or a
listening socket shared with children that outlive their parent (created
without close-on-exec). As a leak: an old process still holds the port's
sockets.

Run:
  sockleak scan --port PORT
    every socket on the port and the processes that hold it
  sockleak scan --state listening
    which process listens where, in which namespace

Read next: listen, time-wait, cloexec, time-wait-pressure
";

const ETIMEDOUT: &str = "\
\"Connection timed out\" (ETIMEDOUT, errno 110): the peer did not answer in
time.

What it means: connect() sent SYNs and got no answer
(net.ipv4.tcp_syn_retries: about 127 s), or data on an open connection
stayed unacknowledged until TCP gave up (tcp_retries2: about 15 min), or a
keepalive probe or TCP_USER_TIMEOUT expired. Java's own connect timeout
says \"connect timed out\".

What it usually signals: a destination that is down or filtered, or a
server that stopped accepting: its accept queue is full, the kernel drops
the SYNs, and clients time out (a server at its fd limit does this). On
the client, SYN_SENT sockets pile up while it waits.

Run:
  sockleak scan --state listening
    listeners whose accept queue is full (accept_queue_overflow)
  sockleak scan --state syn-sent
    connection attempts still waiting, and toward whom

Read next: accept-queue-overflow, syn-sent, syn-recv, fd-exhaustion
";

/// An error message as users paste it, with what it usually means.
#[derive(Debug)]
pub struct Symptom {
    /// The message as libc prints it (`strerror`), or the pool's message.
    pub message: &'static str,
    /// The errno name and its Linux number, when it is an errno.
    pub errno: Option<(&'static str, u16)>,
    /// One line for the list of `sockleak explain` alone.
    pub line: &'static str,
    /// The whole text.
    pub text: &'static str,
    /// Phrases that identify it in a pasted line, normalized as
    /// [`normalize`] does (lowercase words separated by one space).
    phrases: &'static [&'static str],
}

/// Every symptom, in the order `sockleak explain` lists them.
const SYMPTOMS: &[Symptom] = &[
    Symptom {
        message: "Too many open files",
        errno: Some(("EMFILE", 24)),
        line: "EMFILE: a process at its fd limit",
        text: EMFILE,
        phrases: &["too many open files"],
    },
    Symptom {
        message: "Too many open files in system",
        errno: Some(("ENFILE", 23)),
        line: "ENFILE: the host's file table is full",
        text: ENFILE,
        phrases: &[
            "too many open files in system",
            "file table overflow",
            "file max limit",
        ],
    },
    Symptom {
        message: "Cannot assign requested address",
        errno: Some(("EADDRNOTAVAIL", 99)),
        line: "EADDRNOTAVAIL: no free local port",
        text: EADDRNOTAVAIL,
        phrases: &[
            "cannot assign requested address",
            "addrnotavailable",
            "address not available",
        ],
    },
    Symptom {
        message: "Timeout waiting for connection",
        errno: None,
        line: "pool empty: responses never closed",
        text: POOL_TIMEOUT,
        phrases: &[
            "timeout waiting for connection",
            "connectionpooltimeoutexception",
            "connection pool timeout",
            "pooltimeout",
            "emptypoolerror",
            "pool reached maximum size",
            "connection is not available request timed out",
            "acquire operation took longer than",
        ],
    },
    Symptom {
        message: "Connection reset by peer",
        errno: Some(("ECONNRESET", 104)),
        line: "ECONNRESET: the peer aborted the connection",
        text: ECONNRESET,
        phrases: &[
            "connection reset by peer",
            "connection reset",
            "connectionreseterror",
            "socket hang up",
        ],
    },
    Symptom {
        message: "Broken pipe",
        errno: Some(("EPIPE", 32)),
        line: "EPIPE: a write after the peer dropped it",
        text: EPIPE,
        phrases: &["broken pipe", "brokenpipeerror"],
    },
    Symptom {
        message: "Connection refused",
        errno: Some(("ECONNREFUSED", 111)),
        line: "ECONNREFUSED: nothing listens there",
        text: ECONNREFUSED,
        phrases: &["connection refused", "connectionrefusederror"],
    },
    Symptom {
        message: "Address already in use",
        errno: Some(("EADDRINUSE", 98)),
        line: "EADDRINUSE: the port is still taken",
        text: EADDRINUSE,
        phrases: &["address already in use", "addrinuse"],
    },
    Symptom {
        message: "Connection timed out",
        errno: Some(("ETIMEDOUT", 110)),
        line: "ETIMEDOUT: no answer from the peer",
        text: ETIMEDOUT,
        phrases: &["connection timed out", "connect timed out"],
    },
];

/// Every symptom, for `sockleak explain` alone.
pub fn symptoms() -> &'static [Symptom] {
    SYMPTOMS
}

/// Lowercase ASCII words separated by one space: punctuation, quotes,
/// brackets and `.`/`:`/`=` all become separators, so
/// `OSError: [Errno 24] Too many open files` is
/// `oserror errno 24 too many open files`.
fn normalize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with(' ') {
            out.push(' ');
        }
    }
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

/// The errno numbers an input cites: `errno 24`, `[Errno 24]`, `errno=24`,
/// `(os error 24)` (Rust), or the input being only a number.
fn cited_errnos(words: &[&str]) -> Vec<u16> {
    if let [only] = words {
        return only.parse().ok().into_iter().collect();
    }
    words
        .windows(2)
        .enumerate()
        .filter(|(i, w)| w[0] == "errno" || (w[0] == "error" && *i > 0 && words[i - 1] == "os"))
        .filter_map(|(_, w)| w[1].parse().ok())
        .collect()
}

/// The symptom an error message describes, or `None`. Forgiving: case,
/// quotes, punctuation and surrounding words do not matter; it matches the
/// message itself (`connect: Cannot assign requested address`), a runtime's
/// name for it (`ConnectionResetError`, `socket hang up`), the errno name
/// (`EMFILE`) or its number (`errno 99`, `[Errno 24]`, `os error 104`, `99`).
/// An errno name or number beats a phrase; among phrases the longest match
/// wins, so `Too many open files in system` is ENFILE, not EMFILE.
pub fn symptom(input: &str) -> Option<&'static Symptom> {
    let norm = normalize(input);
    if norm.is_empty() {
        return None;
    }
    let words: Vec<&str> = norm.split(' ').collect();
    let numbers = cited_errnos(&words);
    let padded = format!(" {norm} ");
    let contains = |phrase: &str| padded.contains(&format!(" {phrase} "));
    let mut best: Option<(usize, &'static Symptom)> = None;
    for s in SYMPTOMS {
        let mut score = 0;
        if let Some((name, number)) = s.errno {
            if words.iter().any(|w| w.eq_ignore_ascii_case(name)) || numbers.contains(&number) {
                score = usize::MAX;
            }
        }
        for p in s.phrases {
            if contains(p) {
                score = score.max(p.len());
            }
        }
        if score > 0 && best.is_none_or(|(b, _)| score > b) {
            best = Some((score, s));
        }
    }
    best.map(|(_, s)| s)
}

/// Every topic and a one-line description, in the order `sockleak explain`
/// lists them: states first (kernel order), then finding kinds, then notes.
const TOPICS: &[(&str, &str, &str)] = &[
    (
        "established",
        "ESTABLISHED: an open connection",
        ESTABLISHED,
    ),
    (
        "syn-sent",
        "SYN_SENT: connect() waiting for an answer",
        SYN_SENT,
    ),
    (
        "syn-recv",
        "SYN_RECV: half of an incoming handshake",
        SYN_RECV,
    ),
    (
        "fin-wait-1",
        "FIN_WAIT1: this side closed, FIN not yet acked",
        FIN_WAIT1,
    ),
    (
        "fin-wait-2",
        "FIN_WAIT2: this side closed, the peer has not",
        FIN_WAIT2,
    ),
    (
        "time-wait",
        "TIME_WAIT: 60 s of protection after a close, not a leak",
        TIME_WAIT,
    ),
    (
        "close",
        "CLOSE: no connection (bound-only, or reset and still held)",
        CLOSE,
    ),
    (
        "close-wait",
        "CLOSE_WAIT: the peer hung up and this application has not",
        CLOSE_WAIT,
    ),
    ("last-ack", "LAST_ACK: passive close finishing", LAST_ACK),
    (
        "listen",
        "LISTEN: a server socket and its accept queue",
        LISTEN,
    ),
    (
        "closing",
        "CLOSING: both sides closed at the same time",
        CLOSING,
    ),
    (
        "close-wait-leak",
        "finding: a process holds connections the peer closed",
        CLOSE_WAIT_LEAK,
    ),
    (
        "fin-wait2-stuck",
        "finding: closed connections waiting for a peer",
        FIN_WAIT2_STUCK,
    ),
    (
        "time-wait-pressure",
        "finding: TIME_WAIT using up ephemeral ports",
        TIME_WAIT_PRESSURE,
    ),
    (
        "fd-exhaustion",
        "finding: a process near its open-file limit",
        FD_EXHAUSTION,
    ),
    (
        "closed-but-held",
        "finding: fds of connections that are already gone",
        CLOSED_BUT_HELD,
    ),
    (
        "accept-queue-overflow",
        "finding: a server that stopped accepting",
        ACCEPT_QUEUE_OVERFLOW,
    ),
    (
        "orphan-pressure",
        "finding: too many orphaned sockets on the host",
        ORPHAN_PRESSURE,
    ),
    (
        "time-wait-buckets",
        "finding: near net.ipv4.tcp_max_tw_buckets",
        TIME_WAIT_BUCKETS,
    ),
    (
        "fd-leak",
        "finding (watch): an fd kind growing over time",
        FD_LEAK,
    ),
    (
        "half-closed",
        "finding: CLOSE_WAIT still written to (relay), not a leak",
        HALF_CLOSED,
    ),
    (
        "recv-q",
        "what Recv-Q and Send-Q mean (the FIN counts 1)",
        RECV_Q,
    ),
    (
        "kill",
        "ss -K / SOCK_DESTROY: frees TCP state, not the fd",
        KILL,
    ),
    ("cloexec", "sockets inherited by child processes", CLOEXEC),
    (
        "age",
        "how sockleak estimates how long a socket is in its state",
        AGE,
    ),
];

/// Other spellings of the note topics.
const ALIASES: &[(&str, &str)] = &[
    ("send-q", "recv-q"),
    ("ss-k", "kill"),
    ("sock-destroy", "kill"),
    ("destroy", "kill"),
    ("inherited", "cloexec"),
    ("fork", "cloexec"),
    ("ages", "age"),
    ("fin-wait-2-stuck", "fin-wait2-stuck"),
    ("half-close", "half-closed"),
];

static TOPIC_LIST: [(&str, &str); TOPICS.len()] = {
    let mut out = [("", ""); TOPICS.len()];
    let mut i = 0;
    while i < TOPICS.len() {
        out[i] = (TOPICS[i].0, TOPICS[i].1);
        i += 1;
    }
    out
};

/// Every topic with a one-line description, for `sockleak explain` alone.
pub fn topics() -> &'static [(&'static str, &'static str)] {
    &TOPIC_LIST
}

/// The topic a TCP state is explained under (`close-wait`, ...).
pub fn state_topic(s: TcpState) -> &'static str {
    match s {
        TcpState::Established => "established",
        TcpState::SynSent => "syn-sent",
        TcpState::SynRecv => "syn-recv",
        TcpState::FinWait1 => "fin-wait-1",
        TcpState::FinWait2 => "fin-wait-2",
        TcpState::TimeWait => "time-wait",
        TcpState::Close => "close",
        TcpState::CloseWait => "close-wait",
        TcpState::LastAck => "last-ack",
        TcpState::Listen => "listen",
        TcpState::Closing => "closing",
    }
}

/// The canonical topic for any accepted spelling: topic names, kernel and
/// `ss` state names (`CLOSE_WAIT`, `close-wait`, `FIN-WAIT-2`, `estab`,
/// `listening`), finding kinds (`close_wait_leak`) and a few aliases. Case,
/// `_` and spaces do not matter.
pub fn canonical(topic: &str) -> Option<&'static str> {
    let norm = topic.trim().to_ascii_lowercase().replace(['_', ' '], "-");
    if let Some((name, _, _)) = TOPICS.iter().find(|(name, _, _)| *name == norm) {
        return Some(name);
    }
    if let Some((_, to)) = ALIASES.iter().find(|(from, _)| *from == norm) {
        return Some(to);
    }
    if let Some(k) = FindingKind::ALL
        .iter()
        .find(|k| k.as_str().replace('_', "-") == norm)
    {
        return Some(k.topic());
    }
    TcpState::parse(&norm).map(state_topic)
}

/// The text of a topic (any spelling [`canonical`] accepts), else of the
/// symptom the input describes (see [`symptom`]). Topics come first, so a
/// state or finding name always means its topic.
pub fn explain(topic: &str) -> Option<&'static str> {
    match canonical(topic) {
        Some(name) => TOPICS
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, _, text)| *text),
        None => symptom(topic).map(|s| s.text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_has_a_text_under_every_spelling() {
        for s in TcpState::ALL {
            let text = explain(state_topic(s)).expect("state topic");
            assert!(text.starts_with(s.kernel_name()), "{s}: {text}");
            assert_eq!(explain(s.kernel_name()), Some(text), "{s}");
            assert_eq!(explain(s.ss_name()), Some(text), "{s}");
        }
        assert_eq!(canonical("CLOSE_WAIT"), Some("close-wait"));
        assert_eq!(canonical(" Close-Wait "), Some("close-wait"));
        assert_eq!(canonical("fin-wait2"), Some("fin-wait-2"));
        assert_eq!(canonical("estab"), Some("established"));
        assert_eq!(canonical("listening"), Some("listen"));
        assert_eq!(canonical("TIME-WAIT"), Some("time-wait"));
    }

    #[test]
    fn every_finding_kind_has_a_text() {
        for k in FindingKind::ALL {
            let text = explain(k.topic()).expect("kind topic");
            assert!(text.starts_with(k.as_str()), "{k}: {text}");
            assert_eq!(explain(k.as_str()), Some(text), "{k}");
            assert!(explain(k.explain_topic()).is_some(), "{k}");
        }
    }

    #[test]
    fn topics_are_listed_once_and_resolve_to_themselves() {
        let list = topics();
        assert_eq!(list.len(), TcpState::ALL.len() + FindingKind::ALL.len() + 4);
        for (i, (name, line)) in list.iter().enumerate() {
            assert_eq!(canonical(name), Some(*name));
            assert!(!line.is_empty());
            assert!(list[i + 1..].iter().all(|(n, _)| n != name), "{name} twice");
        }
        for (from, to) in ALIASES {
            assert_eq!(canonical(from), Some(*to));
        }
        assert_eq!(explain("no-such-topic"), None);
        assert_eq!(explain(""), None);
    }

    #[test]
    fn texts_are_wrapped_and_say_the_linux_facts() {
        for (name, _, text) in TOPICS {
            for line in text.lines() {
                assert!(line.chars().count() <= 78, "{name}: {line:?}");
            }
            assert!(text.ends_with('\n'), "{name}");
        }
        // States and finding kinds all say who is at fault and what to do.
        for (name, _, text) in &TOPICS[..TcpState::ALL.len() + FindingKind::ALL.len()] {
            assert!(text.contains("fault"), "{name}");
            assert!(text.contains("Fix"), "{name}");
            assert!(text.contains("time out"), "{name}");
        }
        let tw = explain("time-wait").unwrap_or_default();
        assert!(tw.contains("fixed\n60 s") || tw.contains("fixed 60 s"));
        assert!(tw.contains("not a leak"));
        let cw = explain("close-wait").unwrap_or_default();
        assert!(cw.contains("never times out") || cw.contains("Does it time out: no"));
        assert!(cw.contains("FIN counts as 1"));
        assert!(cw.contains("keeps the fd"));
        assert!(cw.contains("resp.Body.Close()"));
        let fw2 = explain("fin-wait-2").unwrap_or_default();
        assert!(fw2.contains("tcp_fin_timeout"));
        assert!(fw2.contains("Orphaned"));
        let kill = explain("kill").unwrap_or_default();
        assert!(kill.contains("keeps\nthe fd") || kill.contains("keeps the fd"));
    }

    /// The symptom whose errno (or, for the pool, message) is `key`.
    fn by_key(key: &str) -> &'static Symptom {
        symptoms()
            .iter()
            .find(|s| s.errno.map_or(s.message, |(name, _)| name) == key)
            .unwrap_or_else(|| panic!("no symptom {key}"))
    }

    #[test]
    fn every_symptom_resolves_under_every_spelling() {
        for s in symptoms() {
            let msg = s.message;
            let mut spellings = vec![
                msg.to_string(),
                msg.to_ascii_uppercase(),
                msg.to_ascii_lowercase(),
                format!("\"{msg}\""),
                format!("'{msg}'"),
                format!("error: {msg}: retrying in 5 s"),
                format!("  {}  ", msg.replace(' ', "  ")),
            ];
            if let Some((name, number)) = s.errno {
                spellings.extend([
                    name.to_string(),
                    name.to_ascii_lowercase(),
                    format!("errno {number}"),
                    format!("errno={number}"),
                    format!("[Errno {number}]"),
                    format!("failed: os error {number}"),
                    number.to_string(),
                    format!("= -1 {name} ({msg})"),
                ]);
            }
            for sp in &spellings {
                let got = symptom(sp).map(|g| g.message);
                assert_eq!(got, Some(msg), "{sp:?}");
                assert_eq!(explain(sp), Some(s.text), "{sp:?}");
            }
        }
    }

    #[test]
    fn pasted_error_lines_resolve_to_their_symptom() {
        let lines = [
            ("java.net.SocketException: Too many open files", "EMFILE"),
            (
                "OSError: [Errno 24] Too many open files: '/tmp/x'",
                "EMFILE",
            ),
            (
                "http: Accept error: accept tcp [::]:8080: accept4: too many open files; \
                 retrying in 5ms",
                "EMFILE",
            ),
            (
                "Error: EMFILE: too many open files, open '/etc/hosts'",
                "EMFILE",
            ),
            ("Too many open files (os error 24)", "EMFILE"),
            (
                "OSError: [Errno 23] Too many open files in system",
                "ENFILE",
            ),
            ("VFS: file-max limit 65536 reached", "ENFILE"),
            (
                "dial tcp 10.0.0.7:443: connect: cannot assign requested address",
                "EADDRNOTAVAIL",
            ),
            (
                "java.net.NoRouteToHostException: Cannot assign requested address \
                 (Address not available)",
                "EADDRNOTAVAIL",
            ),
            (
                "requests.exceptions.ConnectionError: HTTPConnectionPool(host='api', \
                 port=80): Max retries exceeded with url: / (Caused by \
                 NewConnectionError('<urllib3.connection.HTTPConnection object at \
                 0x7f2>: Failed to establish a new connection: [Errno 99] Cannot \
                 assign requested address'))",
                "EADDRNOTAVAIL",
            ),
            ("connect: Cannot assign requested address", "EADDRNOTAVAIL"),
            (
                "org.apache.http.conn.ConnectionPoolTimeoutException: Timeout waiting \
                 for connection from pool",
                "Timeout waiting for connection",
            ),
            (
                "com.amazonaws.SdkClientException: Unable to execute HTTP request: \
                 Timeout waiting for connection from pool",
                "Timeout waiting for connection",
            ),
            ("httpx.PoolTimeout", "Timeout waiting for connection"),
            (
                "HikariPool-1 - Connection is not available, request timed out after \
                 30000ms.",
                "Timeout waiting for connection",
            ),
            ("java.net.SocketException: Connection reset", "ECONNRESET"),
            (
                "ConnectionResetError: [Errno 104] Connection reset by peer",
                "ECONNRESET",
            ),
            (
                "read tcp 10.0.0.1:51234->10.0.0.2:80: read: connection reset by peer",
                "ECONNRESET",
            ),
            ("Error: socket hang up", "ECONNRESET"),
            ("Error: read ECONNRESET", "ECONNRESET"),
            ("BrokenPipeError: [Errno 32] Broken pipe", "EPIPE"),
            (
                "write tcp 127.0.0.1:8080->127.0.0.1:53312: write: broken pipe",
                "EPIPE",
            ),
            ("java.io.IOException: Broken pipe", "EPIPE"),
            ("Error: connect ECONNREFUSED 127.0.0.1:5432", "ECONNREFUSED"),
            (
                "dial tcp 127.0.0.1:8080: connect: connection refused",
                "ECONNREFUSED",
            ),
            (
                "java.net.ConnectException: Connection refused (Connection refused)",
                "ECONNREFUSED",
            ),
            (
                "Error: listen EADDRINUSE: address already in use :::3000",
                "EADDRINUSE",
            ),
            (
                "java.net.BindException: Address already in use",
                "EADDRINUSE",
            ),
            ("OSError: [Errno 98] Address already in use", "EADDRINUSE"),
            (
                "java.net.SocketTimeoutException: connect timed out",
                "ETIMEDOUT",
            ),
            (
                "TimeoutError: [Errno 110] Connection timed out",
                "ETIMEDOUT",
            ),
        ];
        for (line, key) in lines {
            let want = by_key(key);
            assert_eq!(
                symptom(line).map(|s| s.message),
                Some(want.message),
                "{line:?}"
            );
            assert_eq!(explain(line), Some(want.text), "{line:?}");
        }
    }

    #[test]
    fn symptom_messages_and_numbers_are_what_libc_prints() {
        // std formats an OS error with strerror(): the message this host's
        // libc prints for that number, so a wrong number or message fails.
        for s in symptoms() {
            let Some((name, number)) = s.errno else {
                continue;
            };
            let printed = std::io::Error::from_raw_os_error(i32::from(number)).to_string();
            assert!(printed.starts_with(s.message), "{name} {number}: {printed}");
            assert_eq!(symptom(&printed).map(|g| g.message), Some(s.message));
            assert!(
                s.text
                    .starts_with(&format!("\"{}\" ({name}, errno {number})", s.message)),
                "{name}"
            );
        }
    }

    #[test]
    fn unknown_text_is_no_symptom_and_topics_win() {
        for text in [
            "",
            "   ",
            "no-such-topic",
            "hello world",
            "connection",
            "timeout",
            "too many",
            "errno 1234",
            "42",
            "reset",
        ] {
            assert!(symptom(text).is_none(), "{text:?}");
            assert_eq!(explain(text), None, "{text:?}");
        }
        // A state or finding name stays its topic.
        assert_eq!(explain("close-wait"), explain("CLOSE_WAIT"));
        assert!(explain("close-wait")
            .unwrap_or_default()
            .starts_with("CLOSE_WAIT"));
        assert!(explain("fd_exhaustion")
            .unwrap_or_default()
            .starts_with("fd_exhaustion"));
    }

    #[test]
    fn symptom_texts_say_what_to_run_and_what_to_read() {
        let list = symptoms();
        for (i, s) in list.iter().enumerate() {
            let name = s.message;
            assert!(
                list[i + 1..].iter().all(|o| o.message != name),
                "{name} twice"
            );
            assert!(!s.line.is_empty() && s.line.chars().count() <= 48, "{name}");
            if let Some((errno, _)) = s.errno {
                assert!(s.line.starts_with(errno), "{name}");
            }
            assert!(s.text.starts_with(&format!("\"{name}")), "{name}");
            assert!(s.text.ends_with('\n'), "{name}");
            for line in s.text.lines() {
                assert!(line.chars().count() <= 78, "{name}: {line:?}");
            }
            assert!(s.text.contains("\nWhat it means: "), "{name}");
            assert!(s.text.contains("\nWhat it usually signals: "), "{name}");
            let run = s.text.split("\nRun:\n").nth(1).unwrap_or_default();
            let commands = run.lines().filter(|l| l.starts_with("  sockleak ")).count();
            assert!(commands >= 1, "{name}: no command to run");
            let next = s.text.split("\nRead next: ").nth(1).unwrap_or_default();
            let topics: Vec<&str> = next
                .split([',', ' ', '\n'])
                .filter(|t| !t.is_empty())
                .collect();
            assert!(topics.len() >= 2, "{name}: {topics:?}");
            for t in topics {
                assert_eq!(canonical(t), Some(t), "{name}: read next {t:?}");
            }
        }
    }
}
