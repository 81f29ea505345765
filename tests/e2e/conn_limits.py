#!/usr/bin/env python3
"""End-to-end checks of the connection bounds of both servers (common/httpd.c) that need many
sockets and timing, which the case runner (run.py) cannot express:

- 1 500 slow connections from 127.0.0.1, each with a partial request head and one more byte every
  second: the ones beyond max_connections_per_ip are closed at once, the others get 408 at
  header_timeout (not extended by the bytes), and a client from 127.0.0.2 is served meanwhile in
  under a second (proxy in front of a real XDMS, then an XDMS directly); the server's
  xdm_http_connections_refused_total (its /metrics) grows by exactly the connections it closed:
  those refused by libmicrohttpd's per-address limit and those cut at header_timeout;
- a body slower than body_min_rate gets 408 after the allowance, a faster one is answered;
- malformed request lines get `HTTP/1.1 400 Bad Request`, not a silent close;
- beyond max_connections a new connection waits until a slot frees; the open-file limit is raised
  to the hard limit at start.

    python3 tests/e2e/conn_limits.py --build build [-v] [--keep] [--filter NAME]

Uses run.py's deployments (real binaries, free loopback ports, temporary data); prints one
PASS/FAIL line per check and `counts: P passed, F failed`; exits non-zero when a check failed, a
process died or a sanitizer report appears in a log. Every loop is bounded in count and time.
Standard library only; Linux (reads /proc/PID/limits).
"""

import os
import re
import resource
import select
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run as e2e  # noqa: E402  (the case runner: HTTP and the Digest client)
from harness import (LOOPBACK, Deployment, Fail, Settings, Tally, expect,  # noqa: E402
                     script_args, selected)

HEADER_TIMEOUT = 2      # seconds, set on every server here (default 10)
PER_IP = 64             # max_connections_per_ip default
ATTACKER = "127.0.0.1"
CLIENT = "127.0.0.2"
ALICE = "sip:alice@example.com"
DOC = "/xcap-root/resource-lists/users/%s/index" % ALICE
DOC_BODY = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
            b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">'
            b'<list name="friends"><entry uri="sip:bob@example.com"/></list></resource-lists>\n')
DATE_RE = rb"Date: [A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT\r\n"


def raw_response(status, reason, text):
    """The exact bytes common/httpd.c writes itself (400, 408), as a regex over the Date."""
    body = text.encode() + b"\n"
    return re.compile(re.escape(b"HTTP/1.1 %d %s\r\n" % (status, reason.encode())) + DATE_RE +
                      re.escape(b"Connection: close\r\nContent-Type: text/plain; charset=utf-8\r\n"
                                b"Content-Length: %d\r\n\r\n" % len(body) + body) + b"$")


HEAD_408 = raw_response(408, "Request Timeout",
                        "the request head did not arrive within %d s" % HEADER_TIMEOUT)
BODY_408 = raw_response(408, "Request Timeout", "the request body arrived slower than 1024 bytes/s")
BAD_400 = raw_response(400, "Bad Request", "malformed request line")


def deploy(ctx, name, procs, options, users=()):
    dep = Deployment(ctx.runner, "conn-" + name)
    ctx.deps.append(dep)
    for label, uri, pw in users:
        dep.add_user(label, uri, pw)
    for proc, opts in options.items():
        dep.procs[proc].options += opts
    return dep.start(procs)


def addr_of(proc):
    return (LOOPBACK, proc.http_port)


# --------------------------------------------------------------------------------------------
# Raw connections

class Conn:
    """One client connection: what it received and when the server closed it."""

    def __init__(self, sock, t_conn):
        self.sock = sock
        self.t_conn = t_conn
        self.data = b""
        self.t_closed = None
        self.error = None

    @property
    def open(self):
        return self.t_closed is None

    def close_seen(self, now, error=None):
        self.t_closed = now
        self.error = error
        self.sock.close()


def connect(addr, source, first=b""):
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(3)
    s.connect(addr)
    c = Conn(s, time.monotonic())
    try:
        if first:
            s.sendall(first)
    except OSError as e:
        c.close_seen(time.monotonic(), e)
        return c
    s.setblocking(False)
    return c


def pump(conns, until, dribble=None, every=1.0, stop_when=None):
    """Reads from the open connections until the monotonic time `until` (or until none is open,
    or stop_when() is true); every `every` seconds sends `dribble()` bytes on each open one."""
    poller = select.poll()
    by_fd = {}
    for c in conns:
        if c.open:
            poller.register(c.sock.fileno(), select.POLLIN)
            by_fd[c.sock.fileno()] = c
    next_drip = time.monotonic() + every
    while by_fd and time.monotonic() < until and not (stop_when and stop_when()):
        for fd, _ in poller.poll(50):
            c = by_fd[fd]
            try:
                chunk = c.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError as e:
                chunk, err = b"", e
            else:
                err = None
            if chunk:
                c.data += chunk
                continue
            poller.unregister(fd)
            del by_fd[fd]
            c.close_seen(time.monotonic(), err)
        now = time.monotonic()
        if dribble is not None and now >= next_drip:
            next_drip = now + every
            for c in list(by_fd.values()):
                piece = dribble(c)
                if piece:
                    try:
                        c.sock.send(piece)
                    except OSError:
                        pass  # the close shows up on the read side


def close_all(conns):
    for c in conns:
        if c.open:
            c.close_seen(time.monotonic())


def exchange(addr, source, request, timeout=5.0):
    """Sends raw bytes on a fresh connection and reads until the server closes it."""
    c = connect(addr, source)
    c.sock.setblocking(True)
    c.sock.settimeout(timeout)
    c.sock.sendall(request)
    while True:
        try:
            chunk = c.sock.recv(65536)
        except OSError as e:
            raise Fail("%r: no complete answer (%s), got %r" % (request[:40], e, c.data[:200]))
        if not chunk:
            break
        c.data += chunk
    c.sock.close()
    return c.data


def http(addr, source, method, target, headers=(), body=None, timeout=5.0):
    return e2e.http_exchange("%s:%d" % addr, method, target, list(headers), body, timeout, source)


def digest(addr, source, user, method, target, headers=(), body=None):
    """One Digest request as run.py's client makes it: preemptive with the user's nonce once it
    has one, one retry after a 401."""
    if user.challenge is not None:
        value, _ = user.authorization(method, target, user.password)
        r = http(addr, source, method, target, list(headers) + [("Authorization", value)], body)
        if r.status != 401:
            return r
    else:
        r = http(addr, source, method, target, headers, body)
        if r.status != 401:
            return r
    user.adopt(r, None)
    value, _ = user.authorization(method, target, user.password)
    return http(addr, source, method, target, list(headers) + [("Authorization", value)], body)


# --------------------------------------------------------------------------------------------
# Checks

REFUSED_RE = re.compile(rb"^xdm_http_connections_refused_total (\d+)$", re.M)


def refused_total(proc):
    """xdm_http_connections_refused_total from proc's admin listener (CLIENT's address)."""
    r = http((LOOPBACK, proc.metrics_port), CLIENT, "GET", "/metrics")
    m = REFUSED_RE.search(r.body)
    expect(r.status == 200 and m, "/metrics: %d, no xdm_http_connections_refused_total" % r.status)
    return int(m.group(1))


def slow_heads(proc, count, probe, verbose):
    """Opens `count` connections from ATTACKER to proc, each with a request line and a partial
    header, then one byte a second; runs probe() from CLIENT meanwhile. Checks what the bounds
    promise and returns the probe's result."""
    refused_before = refused_total(proc)
    addr = addr_of(proc)
    head = (b"GET /xcap-root/xcap-caps/global/index HTTP/1.1\r\nHost: %s:%d\r\nX-Slow: "
            % (addr[0].encode(), addr[1]))
    conns = [connect(addr, ATTACKER, head) for _ in range(count)]
    t_open = time.monotonic()

    def settled():
        return sum(1 for c in conns if c.open) <= PER_IP

    # The ones beyond the per-address limit are closed as soon as the server accepts them.
    pump(conns, t_open + 1.0, lambda c: b"x", 1.0, stop_when=settled)
    open_now = sum(1 for c in conns if c.open)
    t0 = time.monotonic()
    result = probe()
    probe_s = time.monotonic() - t0
    pump(conns, t_open + HEADER_TIMEOUT + 4.0, lambda c: b"x", 1.0)
    close_all(conns)
    refused = [c for c in conns if not c.data and c.t_closed - c.t_conn < 1.0]
    kept = [c for c in conns if c not in refused]
    if verbose:
        print("    %d connections opened in %.2fs; %d refused at once, %d held; probe %.3fs"
              % (count, t_open - conns[0].t_conn, len(refused), len(kept), probe_s))
    expect(open_now == PER_IP, "%d connections open after the burst, expected %d (the per-address"
           " limit)" % (open_now, PER_IP))
    expect(len(refused) == count - PER_IP and len(kept) == PER_IP,
           "%d connections closed at once and %d held, expected %d and %d"
           % (len(refused), len(kept), count - PER_IP, PER_IP))
    expect(probe_s < 1.0, "the client from %s waited %.2fs for its answer" % (CLIENT, probe_s))
    for c in kept:
        held = c.t_closed - c.t_conn
        expect(HEADER_TIMEOUT - 0.3 <= held <= HEADER_TIMEOUT + 2.5,
               "a slow connection was closed after %.2fs (header_timeout %d s, bytes every 1 s)"
               % (held, HEADER_TIMEOUT))
        expect(HEAD_408.match(c.data), "a slow connection got %r (error %s), expected the 408"
               % (c.data[:300], c.error))
    # Every connection was closed by a bound: count - PER_IP at the per-address limit (inside
    # libmicrohttpd), PER_IP at header_timeout.
    counted = refused_total(proc) - refused_before
    expect(counted == count, "xdm_http_connections_refused_total grew by %d, expected %d (%d "
           "refused at the per-address limit, %d cut at header_timeout)"
           % (counted, count, count - PER_IP, PER_IP))
    return result


def check_slow_heads_proxy(ctx):
    dep = ctx.proxy_dep
    proxy = dep.procs["proxy"]
    alice = e2e.DigestUser("alice", ALICE, "secret")
    ct = [("Content-Type", "application/resource-lists+xml")]
    r = digest(addr_of(proxy), ATTACKER, alice, "PUT", DOC, ct, DOC_BODY)
    expect(r.status == 201, "PUT before the burst: %d" % r.status)
    etag = r.header("ETag")

    def probe():
        return digest(addr_of(proxy), CLIENT, alice, "GET", DOC)

    r = slow_heads(proxy, 1500, probe, ctx.verbose)
    expect(r.status == 200 and r.body == DOC_BODY and r.header("ETag") == etag and
           r.header("Content-Type") == "application/resource-lists+xml",
           "the client from %s got:\n%s" % (CLIENT, r.summary()))
    # The slots are free again: the attacker's address is served like anyone's.
    r = http(addr_of(proxy), ATTACKER, "GET", DOC)
    expect(r.status == 401 and r.header("WWW-Authenticate"), "after the burst: %d" % r.status)


def check_slow_heads_xdms(ctx):
    xdms = ctx.xdms_dep.procs["shared-list"]

    def probe():
        return http(addr_of(xdms), CLIENT, "GET", "/xcap-root/xcap-caps/global/index")

    r = slow_heads(xdms, 1500, probe, ctx.verbose)
    expect(r.status == 200 and r.header("Content-Type") == "application/xcap-caps+xml" and
           b"<auid>resource-lists</auid>" in r.body,
           "the trusted server at %s got:\n%s" % (CLIENT, r.summary()))


def check_slow_body(ctx):
    """On the proxy and an XDMS at once: a PUT body at 200 bytes/s is cut with 408 once the
    allowance (header_timeout + 1 s per 1024 bytes) runs out; one at 3 KiB/s, still sending after
    the first header_timeout seconds, arrives whole and is answered (401 / 403: neither client is
    authorised; the answer comes after the whole body)."""
    targets = [("proxy", ctx.proxy_dep.procs["proxy"], "401 Unauthorized",
                b"authentication required\n"),
               ("xdms", ctx.xdms_dep.procs["shared-list"], "403 Forbidden",
                b"not a trusted peer\n")]
    slow, fast = [], []
    total_fast = 12288
    for name, proc, _, _ in targets:
        addr = addr_of(proc)
        put = (b"PUT /xcap-root/resource-lists/users/%s/slow HTTP/1.1\r\nHost: %s:%d\r\n"
               b"Content-Type: application/resource-lists+xml\r\nContent-Length: %d\r\n"
               b"Connection: close\r\n\r\n")
        slow.append(connect(addr, ATTACKER, put % (ALICE.encode(), addr[0].encode(), addr[1],
                                                   100000) + b"<" * 100))
        fast.append(connect(addr, ATTACKER, put % (ALICE.encode(), addr[0].encode(), addr[1],
                                                   total_fast)))
        fast[-1].sent = 0
    for c in slow:
        c.sent = 100

    def drip(c):
        if c in slow:
            c.sent += 100
            return b"<" * 100
        n = min(1536, total_fast - c.sent)
        c.sent += n
        return b" " * n

    conns = slow + fast
    t0 = time.monotonic()
    pump(conns, t0 + 8.0, drip, 0.5)
    close_all(conns)
    for (name, _, status, text), c in zip(targets, slow):
        held = c.t_closed - c.t_conn
        expect(BODY_408.match(c.data), "%s: the slow body got %r (error %s) after %.2fs" % (
            name, c.data[:300], c.error, held))
        expect(HEADER_TIMEOUT + 0.2 <= held <= HEADER_TIMEOUT + 3.0,
               "%s: the slow body was cut after %.2fs" % (name, held))
    for (name, _, status, text), c in zip(targets, fast):
        expect(c.sent == total_fast, "%s: only %d body bytes could be sent" % (name, c.sent))
        expect(c.data.startswith(b"HTTP/1.1 " + status.encode() + b"\r\n") and
               c.data.endswith(b"\r\n\r\n" + text),
               "%s: the 3 KiB/s body got %r (error %s)" % (name, c.data[:300], c.error))
        expect(c.t_closed - c.t_conn >= HEADER_TIMEOUT + 1.0,
               "%s: the 3 KiB/s body was answered after %.2fs only" % (name, c.t_closed - c.t_conn))


MALFORMED = [b"\r\r\r\n\r\n1", b"GARBAGE\r\n\r\n", b"GET\r\n\r\n", b" GET / HTTP/1.1\r\n\r\n",
             b"\x00\x01\r\n\r\n", b"\r\nG@T /xcap-root/ HTTP/1.1\r\nHost: x\r\n\r\n"]


def check_malformed_request_line(ctx):
    for name, proc in (("proxy", ctx.proxy_dep.procs["proxy"]),
                       ("xdms", ctx.xdms_dep.procs["shared-list"])):
        for raw in MALFORMED:
            got = exchange(addr_of(proc), ATTACKER, raw)
            expect(BAD_400.match(got), "%s: %r got %r" % (name, raw, got[:300]))
        # Empty lines before a good request line are allowed (RFC 9112 §2.2).
        got = exchange(addr_of(proc), CLIENT, b"\r\nGET /xcap-root/xcap-caps/global/index "
                       b"HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        want = b"HTTP/1.1 401 Unauthorized\r\n" if name == "proxy" else b"HTTP/1.1 200 OK\r\n"
        expect(got.startswith(want), "%s: a good request after an empty line got %r"
               % (name, got[:200]))


def nofile_limits(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return soft, hard
    raise Fail("no open-file limit in /proc/%d/limits" % pid)


def check_global_limit(ctx):
    """An XDMS with max_connections=8, started with a soft open-file limit of 1024: it raises the
    soft limit to the hard one; 8 slow connections fill it, so a 9th waits (unanswered, not
    closed) until the deadline frees their slots, and is then served."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(1024, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
    try:
        dep = deploy(ctx, "global", ["shared-list"], {"shared-list": [
            "header_timeout=%d" % HEADER_TIMEOUT, "max_connections=8",
            "trusted_peer=%s server" % CLIENT]})
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    xdms = dep.procs["shared-list"]
    got = nofile_limits(xdms.popen.pid)
    want = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
    expect(got == (want, want), "the XDMS runs with open-file limits %s/%s, expected %s/%s"
           % (got + (want, want)))
    addr = addr_of(xdms)
    head = b"GET /xcap-root/xcap-caps/global/index HTTP/1.1\r\nHost: x\r\nX-Slow: "
    conns = [connect(addr, ATTACKER, head) for _ in range(8)]
    pump(conns, time.monotonic() + 0.5, lambda c: b"x", 1.0)
    expect(all(c.open for c in conns), "a connection within max_connections was closed early")
    probe = connect(addr, CLIENT, b"GET /xcap-root/xcap-caps/global/index HTTP/1.1\r\nHost: x\r\n"
                    b"Connection: close\r\n\r\n")
    t0 = time.monotonic()
    pump(conns + [probe], t0 + HEADER_TIMEOUT + 4.0, lambda c: b"x" if c is not probe else b"",
         1.0, stop_when=lambda: not probe.open)
    close_all(conns + [probe])
    waited = probe.t_closed - t0
    expect(probe.data.startswith(b"HTTP/1.1 200 OK\r\n"),
           "the 9th connection got %r (error %s)" % (probe.data[:200], probe.error))
    expect(HEADER_TIMEOUT - 1.0 <= waited <= HEADER_TIMEOUT + 3.0,
           "the 9th connection was answered after %.2fs; expected once the 8 slow ones were cut"
           " (%d s)" % (waited, HEADER_TIMEOUT))
    for c in conns:
        expect(HEAD_408.match(c.data), "a slow connection got %r" % c.data[:200])


CHECKS = [check_slow_heads_proxy, check_slow_heads_xdms, check_slow_body,
          check_malformed_request_line, check_global_limit]


class Context:
    def __init__(self, args):
        self.runner = Settings.of(args)
        self.verbose = args.verbose
        self.deps = []
        self.proxy_dep = None
        self.xdms_dep = None

    def setup(self):
        # The proxy in front of a real XDMS; an XDMS alone that trusts CLIENT as a server.
        self.proxy_dep = deploy(self, "proxy", ["proxy", "shared-list"],
                                {"proxy": ["header_timeout=%d" % HEADER_TIMEOUT]},
                                users=[("alice", ALICE, "secret")])
        self.xdms_dep = deploy(self, "xdms", ["shared-list"], {"shared-list": [
            "header_timeout=%d" % HEADER_TIMEOUT, "trusted_peer=%s server" % CLIENT]})


def main():
    args = script_args(__doc__)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2000:
        print("conn_limits: the open-file hard limit (%d) is below the 2000 this test needs" % hard)
        print("counts: 0 passed, 1 failed")
        return 1
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tally = Tally()
    ctx = Context(args)
    errors = (Fail, OSError)

    def alive():
        for d in ctx.deps:
            d.check_alive()

    try:
        ctx.setup()
        for c in selected(CHECKS, args.filter):
            tally.check(c.__name__[6:], c, ctx, errors=errors, after=alive)
    except errors as e:
        tally.fail("setup: %s" % e)
    finally:
        for d in ctx.deps:
            for msg in d.finish(args.keep or tally.failed):
                tally.fail(msg)
    return tally.finish()


if __name__ == "__main__":
    sys.exit(main())
