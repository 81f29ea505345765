#!/usr/bin/env python3
"""End-to-end checks of the proxy's asynchronous forwarding (docs/proxy.md, "Forwarding without
holding a thread"), which need an XDMS that holds its answer as long as the check wants: here a
stand-in upstream in this process (HTTP/1.1, keep-alive, on a loopback port) answers every GET
with a fixed document at once, except targets ending in "slow", held until the check releases
them. The proxy runs with one HTTP thread (threads = 1).

- not_blocked: while a GET waits for its (held) upstream answer, another GET through the same
  single-threaded proxy is answered 200 at once; the held one is answered 200 once released,
  both with the upstream's exact body and ETag; the upstream saw the asserted identity;
- in_flight_bound: with upstream_max_in_flight = 2 and two requests waiting, a third (a GET, then
  a PUT with a body) is answered 503 with Retry-After: 1 and its text at once, never sent
  upstream; the two are answered 200;
- keep_alive: 20 sequential GETs through the proxy reach the upstream on one connection;
- stop_answers_waiting: SIGTERM with shutdown_timeout = 1 while a request waits for a held answer:
  within 3 s that request is answered 503 (Retry-After: 1, "the proxy is stopping") and the proxy
  exits 0.

    python3 tests/e2e/proxy_async.py --build build [-v] [--keep] [--filter NAME]

Prints one PASS/FAIL line per check and `counts: P passed, F failed`; exits non-zero when a check
failed, a process exited badly or a sanitizer report appears in a log. Every loop and wait is
bounded in count and time. Standard library only.
"""

import http.client
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (LOOPBACK, Digest, Fail, Tally, Workspace, expect, free_port,  # noqa: E402
                     request, script_args, selected, tail)

XUI = "sip:alice@example.com"
DOCS = "/xcap-root/resource-lists/users/%s/" % XUI
BODY = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"/>\n')
ETAG = '"stand-in-1"'
HOLD_LIMIT = 20.0  # a held answer is released after this many seconds whatever happens


class Upstream(http.server.ThreadingHTTPServer):
    """The stand-in XDMS: counts connections and requests, holds the "slow" ones."""

    daemon_threads = True

    def __init__(self):
        self.port = free_port()
        super().__init__((LOOPBACK, self.port), UpstreamHandler)
        self.lock = threading.Lock()
        self.connections = 0
        self.requests = []  # (method, path, X-3GPP-Asserted-Identity)
        self.waiting = 0
        self.release = threading.Event()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def held(self):
        with self.lock:
            return self.waiting

    def stop(self):
        self.release.set()
        self.shutdown()
        self.server_close()


class UpstreamHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server
        with srv.lock:
            srv.requests.append((self.command, self.path,
                                 self.headers.get("X-3GPP-Asserted-Identity")))
        if self.path.endswith("slow"):
            with srv.lock:
                srv.waiting += 1
            srv.release.wait(HOLD_LIMIT)
            with srv.lock:
                srv.waiting -= 1
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/resource-lists+xml")
            self.send_header("ETag", ETAG)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)
        except OSError:
            self.close_connection = True  # the proxy gave up on it (stopped): nothing to do


class Env(Workspace):
    """The stand-in upstream for every AUID and the proxy (one HTTP thread) in front of it."""

    def __init__(self, args, name, options=()):
        super().__init__(args.build, "xdm-e2e-async-%s-" % name[:16], args.verbose,
                         conf={"aggproxy": {"metrics": "off"}})
        self.upstream = Upstream()
        url = "http://%s:%d" % (LOOPBACK, self.upstream.port)
        self.port = free_port()
        argv = [self.binary("aggproxy/aggproxy"), "--config", self.conf,
                "--data", os.path.join(self.data, "aggproxy"), "--realm", "example.com",
                "--http", "%s:%d" % (LOOPBACK, self.port), "--option", "threads=1",
                "--option", "upstream_timeout_ms=15000"]
        for key in ("shared_list_url", "presence_url", "rls_url"):
            argv += ["--option", "%s=%s" % (key, url)]
        for o in options:
            argv += ["--option", o]
        self.xdmctl("user", "add", XUI, "--password", "secret")
        self.proxy = self.server("proxy", argv, port=self.port)

    def shutdown(self):
        self.upstream.release.set()
        problems = super().shutdown()
        self.upstream.stop()
        return problems


def wait_until(what, cond, limit):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise Fail("%s: not within %.1f s" % (what, limit))


class Background:
    """One request through the proxy on a thread of its own; join() gives its response."""

    def __init__(self, env, auth, target):
        self.resp, self.error = None, None
        self.thread = threading.Thread(target=self.run, args=(env, auth, target), daemon=True)
        self.thread.start()

    def run(self, env, auth, target):
        try:
            self.resp = request(env, env.port, "GET", target, auth=auth)
        except (OSError, http.client.HTTPException) as e:
            self.error = e

    def join(self, limit):
        self.thread.join(limit)
        expect(not self.thread.is_alive(), "no answer within %.1f s" % limit)
        expect(self.error is None, "request failed: %s" % self.error)
        return self.resp


def authed(env):
    """A Digest client that already holds a nonce (one 401 round trip done here)."""
    auth = Digest("alice", "secret")
    r = request(env, env.port, "GET", DOCS + "index", auth=auth)
    expect(r.status == 200 and r.body == BODY, "first GET: %d %s" % (r.status, r.body))
    return auth


def expect_relayed(r, what):
    expect(r.status == 200 and r.body == BODY and r.header("ETag") == ETAG and
           r.header("Content-Type") == "application/resource-lists+xml",
           "%s: %d %s %s" % (what, r.status, r.headers, r.body[:200]))


def check_not_blocked(env):
    auth = authed(env)
    held = Background(env, Digest("alice", "secret"), DOCS + "slow")
    wait_until("the held request reaches the upstream", lambda: env.upstream.held() == 1, 5)
    t0 = time.monotonic()
    r = request(env, env.port, "GET", DOCS + "index", auth=auth)
    took = time.monotonic() - t0
    expect_relayed(r, "GET while another waits")
    expect(took < 2.0, "GET while another waits took %.2f s" % took)
    expect(held.thread.is_alive(), "the held request was answered before its release")
    env.upstream.release.set()
    expect_relayed(held.join(10), "the held GET")
    ids = {i for (_, _, i) in env.upstream.requests}
    expect(ids == {'"%s"' % XUI}, "asserted identities upstream: %s" % ids)


def check_in_flight_bound(env):
    auth = authed(env)
    held = [Background(env, Digest("alice", "secret"), DOCS + "slow") for _ in range(2)]
    wait_until("two held requests", lambda: env.upstream.held() == 2, 5)
    sent = len(env.upstream.requests)
    t0 = time.monotonic()
    r = request(env, env.port, "GET", DOCS + "index", auth=auth)
    took = time.monotonic() - t0
    expect(r.status == 503 and r.header("Retry-After") == "1" and
           r.header("Content-Type") == "text/plain; charset=utf-8" and
           r.body == b"too many requests waiting for their XDMS; retry after the time in "
                     b"Retry-After\n",
           "third request: %d %s %s" % (r.status, r.headers, r.body))
    expect(took < 2.0, "the 503 took %.2f s" % took)
    # a write with a body is refused the same way, as soon as its body is in
    t0 = time.monotonic()
    r = request(env, env.port, "PUT", DOCS + "other", auth=auth, body=BODY * 16,
                headers=[("Content-Type", "application/resource-lists+xml")])
    took = time.monotonic() - t0
    expect(r.status == 503 and r.header("Retry-After") == "1",
           "PUT over the bound: %d %s %s" % (r.status, r.headers, r.body))
    expect(took < 2.0, "the 503 to the PUT took %.2f s" % took)
    expect(len(env.upstream.requests) == sent, "a refused request went upstream")
    env.upstream.release.set()
    for b in held:
        expect_relayed(b.join(10), "a held GET")
    r = request(env, env.port, "GET", DOCS + "index", auth=auth)
    expect_relayed(r, "GET after the release")


def check_keep_alive(env):
    auth = authed(env)
    for i in range(20):
        r = request(env, env.port, "GET", DOCS + "index", auth=auth)
        expect_relayed(r, "GET %d" % i)
    expect(env.upstream.connections == 1,
           "upstream connections for 21 GETs: %d" % env.upstream.connections)


def check_stop_answers_waiting(env):
    authed(env)
    held = Background(env, Digest("alice", "secret"), DOCS + "slow")
    wait_until("the held request reaches the upstream", lambda: env.upstream.held() == 1, 5)
    t0 = time.monotonic()
    env.proxy.popen.send_signal(signal.SIGTERM)
    r = held.join(3)
    expect(r.status == 503 and r.header("Retry-After") == "1" and
           r.body == b"the proxy is stopping\n",
           "the waiting request at SIGTERM: %d %s %s" % (r.status, r.headers, r.body))
    try:
        rc = env.proxy.popen.wait(5)
    except subprocess.TimeoutExpired:
        raise Fail("the proxy did not exit within 5 s of SIGTERM")
    expect(rc == 0, "the proxy exited with %s:\n%s" % (rc, tail(env.proxy.log)))
    took = time.monotonic() - t0
    expect(took < 4.0, "stop took %.1f s with shutdown_timeout = 1" % took)


# Each check with the proxy options it gets.
CHECKS = [(check_not_blocked, []),
          (check_in_flight_bound, ["upstream_max_in_flight=2"]),
          (check_keep_alive, []),
          (check_stop_answers_waiting, ["shutdown_timeout=1"])]


def main():
    args = script_args(__doc__)
    tally = Tally()
    for c, opts in selected(CHECKS, args.filter, lambda c: c[0].__name__):
        name = c.__name__[6:]
        tally.check_fresh(name, lambda: Env(args, name, opts), c, args.keep,
                          errors=(Fail, OSError, http.client.HTTPException))
    return tally.finish()


if __name__ == "__main__":
    sys.exit(main())
