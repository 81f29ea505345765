#!/usr/bin/env python3
"""End-to-end failover checks: two XDMS instances per role behind the proxy over one replicated
PostgreSQL (primary + synchronous standby), writers PUTting through the proxy while something
dies. Nothing acknowledged may be lost.

    python3 tests/e2e/failover.py --build build [-v] [--keep] [--filter NAME] [--store S]

instance-kill  SIGKILL of one shared-list instance under load: PUTs in flight on it may fail
               (502/503, never 500), every later one is answered 2xx by the other instance (the
               proxy routes around the dead one within 1 s), and every acknowledged write reads
               back with its ETag, through the proxy and from the restarted instance.
db-failover    SIGKILL of the PostgreSQL primary under load, then promotion of the standby: the
               writes in the gap get 503 with Retry-After (never 500, never a 2xx that is then
               missing), the XDMS reconnect by themselves (libpq's target_session_attrs=read-write
               over both hosts finds the new primary), and every write acknowledged before or
               after reads back with its ETag.

Each check starts its own cluster with tools/xdmcluster.py on free loopback ports in a temporary
directory, and stops it (PostgreSQL included) also when the check fails. With `--store lmdb` the
instances of a role share one LMDB directory and only instance-kill runs. Every writer is bounded
in PUTs and seconds. Prints one PASS/FAIL line per check, the measured gaps, and `counts: P
passed, F failed`. Standard library only.
"""

import hashlib
import http.client
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "tools"))
import xdmcluster  # noqa: E402  (the cluster: PostgreSQL, XDMS instances, the proxy)
from harness import (SOURCE_ROOT, Fail, Tally, logs_in, run_tool, sanitizer_reports,  # noqa: E402
                     script_args, spawn, stop_popen, write_config)

XUI = "sip:alice@example.com"
USER, PASSWORD = "alice", "failover-secret"
CT = "application/resource-lists+xml"
WRITERS = 4
PUTS_PER_WRITER = 400  # upper bound; the time bound below usually ends the writers first
REQUEST_TIMEOUT = 20   # seconds per request: longer than pg_timeout and the proxy's deadline
PG_TIMEOUT = 2         # pg_timeout of the XDMS in these checks (503 after it)
ROUTE_AROUND = 1.0     # seconds after an instance's death within which the proxy avoids it


def body(writer, version):
    """A resource-lists document naming its writer and version, so a read tells which PUT it is."""
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">\n'
            '  <list name="w%d"><entry uri="sip:v%d@example.com"/></list>\n'
            '</resource-lists>\n' % (writer, version)).encode()


VERSION_RE = re.compile(rb'<list name="w(\d+)"><entry uri="sip:v(\d+)@example\.com"/>')


def doc_path(writer):
    return "/xcap-root/resource-lists/users/%s/fo%d" % (XUI, writer)


# --------------------------------------------------------------------------------------------
# HTTP with Digest (RFC 7616, MD5, qop=auth), one nonce per writer with an increasing nc

def parse_challenge(value):
    params = dict((k.lower(), v1 if v1 else v2) for k, v1, v2 in
                  re.findall(r'(\w+)=(?:"([^"]*)"|([^\s,]+))', value))
    return params


class Client:
    def __init__(self, addr):
        self.host, port = addr.rsplit(":", 1)
        self.port = int(port)
        self.chal = None
        self.nc = 0

    def _auth(self, method, uri):
        c = self.chal
        self.nc += 1
        nc = "%08x" % self.nc
        cnonce = os.urandom(8).hex()

        def md5(s):
            return hashlib.md5(s.encode()).hexdigest()
        ha1 = md5("%s:%s:%s" % (USER, c["realm"], PASSWORD))
        resp = md5("%s:%s:%s:%s:auth:%s" % (ha1, c["nonce"], nc, cnonce,
                                            md5("%s:%s" % (method, uri))))
        return ('Digest username="%s", realm="%s", nonce="%s", uri="%s", algorithm=MD5, '
                'qop=auth, nc=%s, cnonce="%s", response="%s", opaque="%s"'
                % (USER, c["realm"], c["nonce"], uri, nc, cnonce, resp, c.get("opaque", "")))

    def _once(self, method, uri, data, headers):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT)
        try:
            h = dict(headers)
            h["Connection"] = "close"
            if self.chal:
                h["Authorization"] = self._auth(method, uri)
            conn.request(method, uri, body=data, headers=h)
            r = conn.getresponse()
            return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read(), \
                r.getheader("WWW-Authenticate") if r.status == 401 else None
        finally:
            conn.close()

    def request(self, method, uri, data=None, headers=()):
        """(status, headers with lower-case names, body); status 0 when no answer came."""
        try:
            for _ in range(3):
                st, h, b, www = self._once(method, uri, data, headers)
                if st != 401:
                    return st, h, b
                # Take the MD5 challenge and retry (a 401 happens before anything is stored).
                for v in [www] if www else []:
                    chal = parse_challenge(v[len("Digest "):] if v.startswith("Digest ") else v)
                    self.chal, self.nc = chal, 0
            return st, h, b
        except (OSError, http.client.HTTPException) as e:
            return 0, {}, str(e).encode()

    def request_get(self, uri):
        return self.request("GET", uri)


# --------------------------------------------------------------------------------------------
# Writers

class Writer(threading.Thread):
    """PUTs version 1, 2, ... of its own document through the proxy until told to stop or its
    bound is reached; records every answer."""

    def __init__(self, n, addr, stop, deadline):
        super().__init__(daemon=True)
        self.n = n
        self.client = Client(addr)
        self.stop_ev = stop
        self.deadline = deadline
        self.log = []  # (version, status, etag, sent, answered, retry_after)

    def run(self):
        for v in range(1, PUTS_PER_WRITER + 1):
            if self.stop_ev.is_set() or time.monotonic() > self.deadline:
                break
            sent = time.monotonic()
            st, h, _ = self.client.request("PUT", doc_path(self.n), body(self.n, v),
                                           {"Content-Type": CT})
            self.log.append((v, st, h.get("etag"), sent, time.monotonic(),
                             h.get("retry-after")))
            if st not in (200, 201):
                time.sleep(0.05)  # no busy loop while the service is down

    def acked(self):
        return [e for e in self.log if e[1] in (200, 201)]


def start_writers(addr, seconds):
    stop = threading.Event()
    deadline = time.monotonic() + seconds
    ws = [Writer(i + 1, addr, stop, deadline) for i in range(WRITERS)]
    for w in ws:
        w.start()
    return ws, stop


def wait_acks(ws, total, limit):
    deadline = time.monotonic() + limit
    while sum(len(w.acked()) for w in ws) < total:
        if time.monotonic() > deadline:
            raise Fail("only %d of %d PUTs acknowledged within %ds: %s" % (
                sum(len(w.acked()) for w in ws), total, limit, statuses(ws)))
        time.sleep(0.02)


def statuses(ws):
    count = {}
    for w in ws:
        for e in w.log:
            count[e[1]] = count.get(e[1], 0) + 1
    return ", ".join("%s: %d" % (k, v) for k, v in sorted(count.items()))


def join(ws, stop):
    stop.set()
    for w in ws:
        w.join(REQUEST_TIMEOUT + 5)
        if w.is_alive():
            raise Fail("writer %d did not finish" % w.n)


def check_durable(ws, read, where):
    """Every writer's document reads back as its last acknowledged version with that ETag, or as
    a later version whose PUT got no 2xx (its outcome was unknown to the client: sent when the
    server died) with an ETag never handed out before. No ETag was handed out twice."""
    seen = {}
    for w in ws:
        for e in w.acked():
            if e[2] in seen:
                raise Fail("ETag %s handed out twice (writer %d v%d and %s)" % (
                    e[2], w.n, e[0], seen[e[2]]))
            seen[e[2]] = "writer %d v%d" % (w.n, e[0])
    for w in ws:
        acked = w.acked()
        if not acked:
            raise Fail("writer %d: no PUT acknowledged at all (%s)" % (w.n, statuses([w])))
        last = acked[-1]
        st, h, b = read(doc_path(w.n))
        if st != 200:
            raise Fail("%s: GET of writer %d's document: %s %r" % (where, w.n, st, b[:200]))
        m = VERSION_RE.search(b)
        if not m or int(m.group(1)) != w.n:
            raise Fail("%s: writer %d's document holds %r" % (where, w.n, b[:200]))
        v, etag = int(m.group(2)), h.get("etag")
        if v == last[0]:
            if etag != last[2]:
                raise Fail("%s: writer %d v%d reads back with ETag %s, acknowledged with %s" % (
                    where, w.n, v, etag, last[2]))
        elif v > last[0]:
            later = [e for e in w.log if e[0] == v]
            if not later or later[0][1] in (200, 201):
                raise Fail("%s: writer %d reads v%d, never sent or acknowledged later than "
                           "v%d" % (where, w.n, v, last[0]))
            if etag in seen:
                raise Fail("%s: writer %d's in-flight v%d carries the used ETag %s" % (
                    where, w.n, v, etag))
        else:
            raise Fail("%s: writer %d: acknowledged v%d (ETag %s) LOST: the document reads "
                       "v%d (ETag %s)" % (where, w.n, last[0], last[2], v, etag))


def direct_read(server):
    """GET over an XDMS instance's UNIX-domain socket, acting for the user as the proxy does."""
    def read(path):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(REQUEST_TIMEOUT)
        try:
            s.connect(server.socket)
            s.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                       "X-3GPP-Asserted-Identity: \"%s\"\r\n\r\n" % (path, XUI)).encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        finally:
            s.close()
        head, _, b = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        st = int(lines[0].split()[1])
        h = dict((l.split(":", 1)[0].strip().lower(), l.split(":", 1)[1].strip())
                 for l in lines[1:] if ":" in l)
        return st, h, b
    return read


# --------------------------------------------------------------------------------------------
# Checks

class Env:
    def __init__(self, args, name, **kw):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="xdm-fo-%s-" % name[:12])
        conf = write_config(os.path.join(self.tmp, "xdm.conf"),
                            {"xdms": {"log_level": args.log_level}}, "written by failover.py")
        self.cluster = xdmcluster.Cluster(args.build, self.tmp, config=conf, ports="free",
                                          instances=2, store=args.store, **kw)

    def start(self):
        self.cluster.start()
        self.cluster.add_user(XUI, PASSWORD)
        return self.cluster

    def finish(self, failed):
        problems = []
        c = self.cluster
        for s in c.dead():
            problems.append("%s exited unexpectedly (status %s)%s" % (
                s.name, s.popen.returncode, s.tail()))
        rcs = c.stop()
        for name, rc in sorted(rcs.items()):
            if rc not in (0, -15) and not next(s for s in c.servers() if s.name == name).killed:
                problems.append("%s exited with status %s when stopped" % (name, rc))
        problems += sanitizer_reports(logs_in(c.logs) if c.logs else [])
        if (failed or problems) and (self.args.keep or self.args.verbose):
            print("    kept: %s" % self.tmp)
        elif not self.args.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return problems


def check_instance_kill(env, out):
    c = env.start()
    ws, stop = start_writers(c.proxy_addr, 30)
    try:
        wait_acks(ws, 40, 20)
        victim = c.xdms["shared-list"][0]
        t_kill = time.monotonic()
        c.kill(victim)
        # Keep writing on the survivor for a while: at least 2 s and 80 more acknowledged PUTs.
        wait_acks(ws, sum(len(w.acked()) for w in ws) + 80, 20)
        time.sleep(max(0.0, t_kill + 2 - time.monotonic()))
    finally:
        join(ws, stop)
    bad = []
    for w in ws:
        for v, st, etag, sent, answered, ra in w.log:
            if st in (200, 201):
                continue
            if st == 500:
                bad.append("writer %d v%d: 500" % (w.n, v))
            elif st not in (502, 503):
                bad.append("writer %d v%d: %s (a PUT may fail only with 502 or 503)" % (w.n, v, st))
            elif sent < t_kill - 1 or sent > t_kill + ROUTE_AROUND:
                bad.append("writer %d v%d: %s, sent %.2fs after the kill (the proxy must route "
                           "around a dead instance within %.0fs)" % (w.n, v, st, sent - t_kill,
                                                                     ROUTE_AROUND))
    if bad:
        raise Fail("; ".join(bad[:6]))
    failed = sum(1 for w in ws for e in w.log if e[1] not in (200, 201))
    after = sum(1 for w in ws for e in w.acked() if e[3] > t_kill)
    out.append("%d PUTs acknowledged (%d after the kill), %d failed at the kill (%s)" % (
        sum(len(w.acked()) for w in ws), after, failed, statuses(ws)))
    check_durable(ws, Client(c.proxy_addr).request_get, "through the proxy")
    # The killed instance comes back and sees the same documents (one shared store).
    c.restart(victim)
    check_durable(ws, direct_read(victim), "at the restarted %s" % victim.name)
    check_durable(ws, direct_read(c.xdms["shared-list"][1]), "at %s" % c.xdms["shared-list"][1].name)


def check_db_failover(env, out):
    c = env.start()
    ws, stop = start_writers(c.proxy_addr, 45)
    try:
        wait_acks(ws, 40, 20)
        t_kill = time.monotonic()
        c.pg.kill("primary")
        # A gap in which no server takes writes: the XDMS answer 503 (within pg_timeout).
        time.sleep(1.0)
        t_promote = time.monotonic()
        c.pg.promote("standby")
        t_promoted = time.monotonic()
        # Every writer gets writes through again, on the new primary, without any restart.
        deadline = time.monotonic() + 30
        while any(not [e for e in w.acked() if e[3] > t_promoted] for w in ws) or \
                sum(1 for w in ws for e in w.acked() if e[3] > t_promoted) < 40:
            if time.monotonic() > deadline:
                raise Fail("writes did not get through within 30 s of the promotion: %s" %
                           statuses(ws))
            for w in ws:
                if not w.is_alive():
                    raise Fail("writer %d ended before its writes got through again: %s" % (
                        w.n, statuses([w])))
            time.sleep(0.05)
    finally:
        join(ws, stop)
    bad = []
    for w in ws:
        for v, st, etag, sent, answered, ra in w.log:
            if st in (200, 201):
                continue
            if st != 503:
                bad.append("writer %d v%d: %s (writes in the gap must get 503)" % (w.n, v, st))
            elif not ra or not ra.isdigit():
                bad.append("writer %d v%d: 503 without a Retry-After in seconds (%r)" % (
                    w.n, v, ra))
            elif answered < t_kill:
                bad.append("writer %d v%d: 503 before the primary was killed" % (w.n, v))
            elif answered - sent > PG_TIMEOUT + 3:
                bad.append("writer %d v%d: the 503 took %.1fs (pg_timeout %ds)" % (
                    w.n, v, answered - sent, PG_TIMEOUT))
    if bad:
        raise Fail("; ".join(bad[:6]))
    first_ok = min(e[4] for w in ws for e in w.acked() if e[3] > t_promoted)
    gap = sum(1 for w in ws for e in w.log if e[1] == 503)
    out.append("%d PUTs acknowledged, %d answered 503 in the gap; writes accepted again %.2fs "
               "after the promotion (%.2fs after the kill; the promotion took %.2fs)" % (
                   sum(len(w.acked()) for w in ws), gap, first_ok - t_promoted,
                   first_ok - t_kill, t_promoted - t_promote))
    check_durable(ws, Client(c.proxy_addr).request_get, "through the proxy")
    for s in c.xdms["shared-list"]:
        check_durable(ws, direct_read(s), "at %s" % s.name)


def check_cluster_run(env, out):
    """`tools/xdmcluster.py run`, as `tools/xdm run --cluster` starts it (here on free ports):
    ready with the addresses, a document written through the proxy is seen by both instances,
    SIGINT (Ctrl-C) stops every process it started, PostgreSQL included, and it exits 0."""
    import json
    import signal
    import subprocess
    c = env.cluster
    ready = os.path.join(c.data, "ready.json")
    run_tool([os.path.join(c.build, "tools/xdmctl"), "--data", c.data, "user", "add", XUI,
              "--password", PASSWORD], os.path.join(c.data, "xdmctl.log"))
    log = os.path.join(c.data, "run.log")
    argv = [sys.executable, os.path.join(SOURCE_ROOT, "tools", "xdmcluster.py"), "run",
            "--build", c.build, "--data", c.data, "--config", c.config, "--ports", "free",
            "--store", c.store, "--logs", "--ready-file", ready] + [
                "--xdms-option=" + o for o in c.xdms_options]
    p = spawn(argv, log)
    try:
        deadline = time.monotonic() + 120
        while not os.path.exists(ready):
            if p.poll() is not None or time.monotonic() > deadline:
                with open(log, "rb") as f:
                    raise Fail("xdmcluster.py run did not get ready (%s): %s" % (
                        p.poll(), f.read().decode("utf-8", "replace")[-1500:]))
            time.sleep(0.1)
        with open(ready) as f:
            info = json.load(f)
        if len(info["xdms"]["shared-list"]) != 2 or (c.store == "postgresql") != bool(info["pg"]):
            raise Fail("unexpected cluster: %s" % info)
        cl = Client(info["proxy"])
        st, h, b = cl.request("PUT", doc_path(1), body(1, 1), {"Content-Type": CT})
        if st != 201 or not h.get("etag"):
            raise Fail("PUT through the proxy: %s %r" % (st, b[:200]))
        for inst in info["xdms"]["shared-list"]:
            srv = type("S", (), {"socket": inst["socket"]})
            st2, h2, b2 = direct_read(srv)(doc_path(1))
            if st2 != 200 or h2.get("etag") != h["etag"] or b2 != body(1, 1):
                raise Fail("GET at %s: %s ETag %s (PUT gave %s)" % (inst["socket"], st2,
                                                                   h2.get("etag"), h["etag"]))
        # Every PID it started, read before the stop.
        pids = []
        for name in ("primary", "standby"):
            pidfile = os.path.join(c.data, "pg", name, "postmaster.pid")
            if os.path.exists(pidfile):
                with open(pidfile) as f:
                    pids.append(int(f.readline()))
        pids += [int(x) for x in subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(p.pid)], stdout=subprocess.PIPE,
            text=True).stdout.split()]
        if len(pids) != 7 + (2 if c.store == "postgresql" else 0):
            raise Fail("expected 7 servers (+ 2 PostgreSQL), found PIDs %s" % pids)
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)
        rc = p.wait(timeout=60)
        if rc != 0:
            raise Fail("xdmcluster.py run exited %s after SIGINT" % rc)
        left = [pid for pid in pids if xdmcluster._alive(pid)]
        if left:
            raise Fail("still running after the stop: %s" % left)
        out.append("started 7 servers%s; stopped by SIGINT in %.1fs" % (
            " and PostgreSQL primary + standby" if c.store == "postgresql" else "",
            time.monotonic() - t0))
    finally:
        if p.poll() is None:
            stop_popen(p, "xdmcluster.py run", signal.SIGKILL)
            for s in subprocess.run(["ps", "-o", "pid=", "--ppid", str(p.pid)],
                                    stdout=subprocess.PIPE, text=True).stdout.split():
                os.kill(int(s), signal.SIGKILL)
        if os.path.isdir(os.path.join(c.data, "pg")):
            xdmcluster.pglocal.PgCluster(os.path.join(c.data, "pg")).stop()


CHECKS = [
    ("cluster-run", check_cluster_run, ("lmdb", "postgresql")),
    ("instance-kill", check_instance_kill, ("lmdb", "postgresql")),
    ("db-failover", check_db_failover, ("postgresql",)),
]


def main():
    args = script_args(__doc__, (("--store",), {"choices": ("postgresql", "lmdb"),
                                                "default": "postgresql"}),
                       (("--log-level",), {"default": "warn",
                                           "help": "log_level of the servers"}))
    tally = Tally()
    for name, fn, stores in CHECKS:
        if args.filter and not any(f in name for f in args.filter):
            continue
        if args.store not in stores:
            print("SKIP %s: needs store %s" % (name, " or ".join(stores)))
            continue
        out = []

        def run():
            env, problems = None, []
            try:
                env = Env(args, name, xdms_options=["pg_timeout=%d" % PG_TIMEOUT]
                          if args.store == "postgresql" else [])
                fn(env, out)
            except (Fail, RuntimeError) as e:
                problems.append(str(e))
            except Exception as e:  # a harness error must not hide the other check
                import traceback
                problems.append("error: %r\n%s" % (e, traceback.format_exc()))
            finally:
                if env is not None:
                    problems += env.finish(bool(problems))
            if problems:
                raise Fail("\n    ".join(problems))

        tally.check(name, run, errors=(Fail,))
        for line in out:
            print("    " + line)
        sys.stdout.flush()
    return tally.finish()


if __name__ == "__main__":
    sys.exit(main())
