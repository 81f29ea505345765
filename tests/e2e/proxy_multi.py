#!/usr/bin/env python3
"""End-to-end checks of several XDMS instances of one role behind the proxy, which the case runner
(run.py, one process per role) cannot express:

Two `xdms --role shared-list` processes share ONE LMDB data directory (LMDB is multi-process: a
real two-instance deployment without a database server), each with its own HTTP port, SIP port,
UNIX-domain socket and admin listener; the proxy's shared_list_url lists both sockets.

- spread: sequential GETs reach both instances (counted by each XDMS's own metrics and the
  proxy's per-instance counters);
- kill9_under_load: writers PUT new versions of their documents and readers GET a fixed one
  while one instance gets SIGKILL: every GET is 200 with the right body, every PUT is 2xx or a
  5xx (502/503/504), never anything else; afterwards every document reads back as its last
  acknowledged version with that ETag (or as a version whose PUT got a 5xx: it may have been
  committed before the instance died); the dead instance is reported down; started again it is
  reported up and receives requests again;
- skip_within_1s: with no traffic, the health check reports a killed instance down within 1 s;
  the following requests all go to the other one without any retry; with both dead the answer
  is 503 with Retry-After.

    python3 tests/e2e/proxy_multi.py --build build [-v] [--keep] [--filter NAME]

Prints one PASS/FAIL line per check and `counts: P passed, F failed`; exits non-zero when a check
failed, a process exited badly or a sanitizer report appears in a log. Every loop is bounded in
count and time. Standard library only.
"""

import http.client
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (LOOPBACK, Digest, Fail, Tally, Workspace, exchange, expect,  # noqa: E402
                     free_port, request, script_args, selected)

XUI = "sip:alice@example.com"
CT = "application/resource-lists+xml"
DOCS = "/xcap-root/resource-lists/users/%s/" % XUI
CHECK_INTERVAL_MS = 500  # the default upstream_check_interval


def doc(name, n):
    return (b'<?xml version="1.0" encoding="UTF-8"?>\n'
            b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">\n'
            b'  <list name="%s"><entry uri="sip:v%d@example.com"/></list>\n'
            b'</resource-lists>\n' % (name.encode(), n))


class Env(Workspace):
    """Two shared-list instances over one data directory, the proxy in front of both."""

    def __init__(self, args, name):
        super().__init__(args.build, "xdm-e2e-multi-%s-" % name[:16], args.verbose,
                         conf={"xdms": {}, "aggproxy": {}})
        os.makedirs(os.path.join(self.data, "shared-list"))
        self.port = free_port()
        self.metrics = free_port()
        self.inst = {}
        for name_ in ("a", "b"):
            sock = self.path("%s.sock" % name_)
            http_port, metrics = free_port(), free_port()
            self.inst[name_] = {"socket": sock, "url": "unix:" + sock, "http": http_port,
                                "metrics": metrics, "proc": None}
        for name_ in ("a", "b"):
            self.start_xdms(name_)
        # presence and rls are not part of these checks: their AUIDs go to the same list (one
        # list for the health check and /readyz).
        both = "%s %s" % (self.inst["a"]["url"], self.inst["b"]["url"])
        self.proxy = self.server("proxy", [
            self.binary("aggproxy/aggproxy"), "--config", self.conf,
            "--data", os.path.join(self.data, "aggproxy"), "--realm", "example.com",
            "--http", "%s:%d" % (LOOPBACK, self.port),
            "--option", "metrics=%s:%d" % (LOOPBACK, self.metrics),
            "--option", "shared_list_url=" + both, "--option", "presence_url=" + both,
            "--option", "rls_url=" + both, "--option", "ut_url=" + both], port=self.port)
        self.xdmctl("user", "add", XUI, "--password", "secret")

    def start_xdms(self, name):
        i = self.inst[name]
        i["proc"] = self.server("shared-list-" + name, [
            self.binary("xdms/xdms"), "--role", "shared-list", "--config", self.conf,
            "--data", os.path.join(self.data, "shared-list"), "--socket", i["socket"],
            "--http", "%s:%d" % (LOOPBACK, i["http"]), "--sip", "%s:0" % LOOPBACK,
            "--xcap-root", "http://%s:%d/xcap-root/" % (LOOPBACK, self.port),
            "--option", "metrics=%s:%d" % (LOOPBACK, i["metrics"])], port=i["http"])

    def kill9(self, name):
        self.inst[name]["proc"].kill9()


def metrics(env, port):
    r = exchange(env, port, "GET", "/metrics")
    expect(r.status == 200, "GET /metrics on %d: %d" % (port, r.status))
    return r.body.decode()


def sample(text, name, labels=None):
    """The value of one series (0 when absent)."""
    sel = "" if labels is None else "{" + labels + "}"
    m = re.search(r"(?m)^%s%s (\d+)$" % (re.escape(name), re.escape(sel)), text)
    return int(m.group(1)) if m else 0


def up(env, name):
    return sample(metrics(env, env.metrics), "xdm_upstream_up",
                  'upstream="%s"' % env.inst[name]["url"])


def sent_to(env, name):
    return sample(metrics(env, env.metrics), "xdm_upstream_requests_total",
                  'upstream="%s"' % env.inst[name]["url"])


def xdms_gets(env, name):
    return sample(metrics(env, env.inst[name]["metrics"]), "xdm_http_requests_total",
                  'method="GET",auid="resource-lists",code_class="2xx"')


def wait_for(what, cond, limit):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if cond():
            return time.monotonic()
        time.sleep(0.05)
    raise Fail("%s: not within %.1f s" % (what, limit))


def put(env, auth, name, n):
    return request(env, env.port, "PUT", DOCS + name, auth=auth, headers=[("Content-Type", CT)],
                   body=doc(name, n))


def get(env, auth, name):
    return request(env, env.port, "GET", DOCS + name, auth=auth)


def check_spread(env):
    alice = Digest("alice", "secret")
    r = put(env, alice, "index", 0)
    expect(r.status == 201, "PUT: %d %s" % (r.status, r.body))
    for _ in range(20):
        r = get(env, alice, "index")
        expect(r.status == 200 and r.body == doc("index", 0), "GET: %d %s" % (r.status, r.body))
    a, b = xdms_gets(env, "a"), xdms_gets(env, "b")
    # least requests in progress, ties round robin: sequential requests alternate
    expect(a + b == 20 and a >= 9 and b >= 9, "GETs per instance: a %d, b %d" % (a, b))
    expect(sent_to(env, "a") + sent_to(env, "b") == 21, "proxy counters")
    m = metrics(env, env.metrics)
    expect(sample(m, "xdm_upstream_retries_total") == 0, "no retry was needed")


def check_kill9_under_load(env):
    writers, puts_each, readers, gets_each = 4, 60, 2, 100
    seed = Digest("alice", "secret")
    r = put(env, seed, "fixed", 0)
    expect(r.status == 201, "PUT fixed: %d" % r.status)
    lock = threading.Lock()
    acked = [0]
    problems = []
    results = {w: [] for w in range(writers)}  # (n, status, etag)
    deadline = time.monotonic() + 30

    def writer(w):
        auth = Digest("alice", "secret")
        for n in range(1, puts_each + 1):
            if time.monotonic() > deadline:
                return
            try:
                r = put(env, auth, "w%d" % w, n)
            except (OSError, http.client.HTTPException) as e:
                with lock:
                    problems.append("PUT w%d v%d: %s" % (w, n, e))
                return
            results[w].append((n, r.status, r.header("ETag")))
            with lock:
                if r.status in (200, 201):
                    acked[0] += 1
                elif r.status not in (502, 503, 504):
                    problems.append("PUT w%d v%d: %d %s" % (w, n, r.status, r.body[:200]))

    def reader(k):
        auth = Digest("alice", "secret")
        for _ in range(gets_each):
            if time.monotonic() > deadline:
                return
            try:
                r = get(env, auth, "fixed")
            except (OSError, http.client.HTTPException) as e:
                with lock:
                    problems.append("GET: %s" % e)
                return
            with lock:
                acked[0] += 1
                if r.status != 200 or r.body != doc("fixed", 0):
                    problems.append("GET fixed: %d %s" % (r.status, r.body[:200]))

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    threads += [threading.Thread(target=reader, args=(k,)) for k in range(readers)]
    for t in threads:
        t.start()
    try:
        wait_for("60 answered requests", lambda: acked[0] >= 60, 20)
        env.kill9("a")
    finally:
        for t in threads:
            t.join(timeout=60)
    expect(not any(t.is_alive() for t in threads), "load threads did not finish")
    expect(not problems, "; ".join(problems[:5]))
    five = sum(1 for w in results for (_, s, _) in results[w] if s >= 500)
    if env.verbose:
        print("    PUTs answered 5xx around the kill: %d" % five)

    # Every acknowledged write is there with its ETag (or a later, unacknowledged one won).
    auth = Digest("alice", "secret")
    for w, res in results.items():
        expect(res, "writer %d sent nothing" % w)
        acked_at = max((i for i, (_, s, _) in enumerate(res) if s in (200, 201)), default=-1)
        expect(acked_at >= 0, "writer %d: no PUT acknowledged" % w)
        n, _, etag = res[acked_at]
        r = get(env, auth, "w%d" % w)
        expect(r.status == 200, "GET w%d: %d" % (w, r.status))
        later = [m for (m, s, _) in res[acked_at + 1:] if s >= 500]
        if r.body == doc("w%d" % w, n):
            expect(r.header("ETag") == etag, "w%d: ETag %s, acknowledged %s" % (
                w, r.header("ETag"), etag))
        else:
            expect(any(r.body == doc("w%d" % w, m) for m in later),
                   "w%d: acknowledged v%d lost: %s" % (w, n, r.body))

    wait_for("instance a reported down", lambda: up(env, "a") == 0, 1.0)
    expect(up(env, "b") == 1, "instance b reported down")
    # Started again: back in rotation, and it serves.
    env.start_xdms("a")
    wait_for("instance a reported up", lambda: up(env, "a") == 1, 3.0)
    before, gets_before = sent_to(env, "a"), xdms_gets(env, "a")
    for _ in range(10):
        r = get(env, auth, "fixed")
        expect(r.status == 200, "GET after restart: %d" % r.status)
    expect(sent_to(env, "a") >= before + 4, "restarted instance got %d of 10 requests" % (
        sent_to(env, "a") - before))
    expect(xdms_gets(env, "a") >= gets_before + 4, "restarted instance served too few")


def check_skip_within_1s(env):
    alice = Digest("alice", "secret")
    r = put(env, alice, "index", 0)
    expect(r.status == 201, "PUT: %d" % r.status)
    r = exchange(env, env.metrics, "GET", "/readyz")
    expect(r.status == 200, "/readyz: %d %s" % (r.status, r.body))
    t0 = time.monotonic()
    env.kill9("a")
    t1 = wait_for("instance a reported down without traffic", lambda: up(env, "a") == 0, 1.0)
    if env.verbose:
        print("    down after %.3f s" % (t1 - t0))
    m = metrics(env, env.metrics)
    sent, retries = sent_to(env, "a"), sample(m, "xdm_upstream_retries_total")
    for n in range(10):
        r = put(env, alice, "index", n + 1)
        expect(r.status == 200, "PUT: %d %s" % (r.status, r.body))
        r = get(env, alice, "index")
        expect(r.status == 200 and r.body == doc("index", n + 1), "GET: %d" % r.status)
    m = metrics(env, env.metrics)
    expect(sent_to(env, "a") == sent, "the dead instance was still tried")
    expect(sample(m, "xdm_upstream_retries_total") == retries, "requests were retried")
    r = exchange(env, env.metrics, "GET", "/readyz")
    expect(r.status == 200, "/readyz with one instance: %d" % r.status)
    # None left: 503 and Retry-After, for a write and a read.
    env.kill9("b")
    for method in ("PUT", "GET"):
        r = put(env, alice, "index", 99) if method == "PUT" else get(env, alice, "index")
        expect(r.status == 503, "%s with no instance: %d %s" % (method, r.status, r.body))
        expect(r.header("Retry-After") == "1", "Retry-After: %s" % r.header("Retry-After"))
        expect(b"is reachable; the request was not sent" in r.body, "body: %s" % r.body)
    wait_for("/readyz not ready",
             lambda: exchange(env, env.metrics, "GET", "/readyz").status == 503, 1.0)


CHECKS = [check_spread, check_kill9_under_load, check_skip_within_1s]


def main():
    args = script_args(__doc__)
    tally = Tally()
    for c in selected(CHECKS, args.filter):
        name = c.__name__[6:]
        tally.check_fresh(name, lambda: Env(args, name), c, args.keep,
                          errors=(Fail, OSError, http.client.HTTPException))
    return tally.finish()


if __name__ == "__main__":
    sys.exit(main())
