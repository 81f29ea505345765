#!/usr/bin/env python3
"""An XDMS on the PostgreSQL store (`store = postgresql`), end to end, with a real PostgreSQL
started by tools/pglocal.py on a free loopback port:

- `xdmctl db init` creates the schema from the server's configuration file, `db migrate` finds it
  up to date (same store instance), a role on LMDB has no schema to make;
- PUT/GET/DELETE with ETags over the XDMS's UNIX-domain socket (the proxy's hop): 201 then 200,
  the bytes read back are the bytes written, a new ETag on every change, 412 for a stale If-Match,
  404 after DELETE;
- the documents and their ETags survive a restart of the XDMS;
- with PostgreSQL stopped, a GET and a PUT answer 503 with Retry-After within pg_timeout + 1 s
  (never a hang, never a 500);
- once PostgreSQL is back, the same XDMS process serves again, without a restart.

    python3 tests/e2e/pg_store.py --build build [-v] [--keep]

Prints one PASS/FAIL line per check and `counts: P passed, F failed`; exits non-zero when a check
failed, a server exited non-zero, or a sanitizer report appears in its output. Every wait is
bounded in time. Standard library only.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))
import run as e2e  # noqa: E402  (HTTP over the XDMS's socket)
from harness import (Fail, Server, Tally, expect, free_port, has_sanitizer_report,  # noqa: E402
                     sanitizer_reports, server_env, tail, write_config)
import pglocal  # noqa: E402  (local PostgreSQL servers)

PG_TIMEOUT = 2
DOC = "/xcap-root/pidf-manipulation/users/sip:alice@example.com/index"
DOC2 = "/xcap-root/pidf-manipulation/users/sip:alice@example.com/second"
IDENT = [("X-3GPP-Asserted-Identity", '"sip:alice@example.com"')]
CT = [("Content-Type", "application/pidf+xml")]


def read(name):
    with open(os.path.join(HERE, "files", name), "rb") as f:
        return f.read()


class Xdms:
    def __init__(self, build, tmp, conninfo):
        self.binary = os.path.join(build, "xdms", "xdms")
        self.tmp = tmp
        self.data = os.path.join(tmp, "presence")
        self.socket = "unix:" + os.path.join(self.data, "xdms.sock")
        self.config = write_config(os.path.join(tmp, "xdm.conf"), {"xdms": {
            "store": "postgresql", "pg_conninfo": conninfo, "pg_timeout": PG_TIMEOUT,
            "pg_pool_size": 2}})
        self.http = free_port()
        self.sip = free_port(udp_too=True)
        self.server = None
        self.logs = []

    def start(self):
        """Started, ready when its UNIX-domain socket accepts a connection (20 s at most)."""
        log = os.path.join(self.tmp, "presence.%d.log" % (len(self.logs) + 1))
        self.logs.append(log)
        argv = [self.binary, "--role", "presence", "--config", self.config, "--data", self.data,
                "--http", "127.0.0.1:%d" % self.http, "--sip", "127.0.0.1:%d" % self.sip,
                "--option", "metrics=off"]
        self.server = Server("xdms", argv, log, socket=self.socket[5:], env=server_env())
        self.server.start()

    def stop(self):
        """SIGTERM; the exit status (a Fail when it did not exit within 15 s: killed)."""
        if self.server is None:
            return 0
        self.server.term()
        return self.server.wait_exit(15)

    def request(self, method, target, headers=(), body=None, timeout=10):
        return e2e.http_exchange(self.socket, method, target, IDENT + list(headers), body,
                                 timeout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("-v", action="store_true")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    tmp = tempfile.mkdtemp(prefix="xdm-e2e-pgstore-")
    os.chmod(tmp, 0o711)  # the PostgreSQL servers run as their own user, under tmp/pg
    pg = pglocal.PgCluster(os.path.join(tmp, "pg"))
    xdms = None
    tally = Tally()
    pidf1, pidf2 = read("pidf1.xml"), read("pidf2.xml")

    def check(name, fn):
        if not tally.check(name, fn, errors=(Fail,)) and xdms is not None and xdms.logs:
            print(e2e.indent(tail(xdms.logs[-1])))

    state = {}

    def crud():
        r = xdms.request("GET", DOC)
        expect(r.status == 404, "GET before PUT: %d" % r.status)
        r = xdms.request("PUT", DOC, CT, pidf1)
        expect(r.status == 201, "PUT: %d %s" % (r.status, r.body[:200]))
        e1 = r.header("ETag")
        expect(e1 and re.fullmatch(r'"[^"]+"', e1), "PUT ETag %r" % e1)
        r = xdms.request("GET", DOC)
        expect(r.status == 200 and r.body == pidf1, "GET: %d" % r.status)
        expect(r.header("ETag") == e1, "GET ETag %r, want %r" % (r.header("ETag"), e1))
        expect(r.header("Content-Type") == "application/pidf+xml",
               "Content-Type %r" % r.header("Content-Type"))
        r = xdms.request("PUT", DOC, CT + [("If-Match", e1)], pidf2)
        expect(r.status == 200, "PUT If-Match: %d" % r.status)
        e2 = r.header("ETag")
        expect(e2 and e2 != e1, "replace ETag %r (was %r)" % (e2, e1))
        r = xdms.request("PUT", DOC, CT + [("If-Match", e1)], pidf1)
        expect(r.status == 412, "PUT stale If-Match: %d" % r.status)
        r = xdms.request("PUT", DOC2, CT, pidf1)
        expect(r.status == 201, "PUT second: %d" % r.status)
        e3 = r.header("ETag")
        expect(e3 not in (e1, e2), "second ETag %r reused" % e3)
        r = xdms.request("DELETE", DOC2)
        expect(r.status == 200, "DELETE: %d" % r.status)
        r = xdms.request("GET", DOC2)
        expect(r.status == 404, "GET after DELETE: %d" % r.status)
        state["etag"] = e2

    def restart():
        rc = xdms.stop()
        expect(rc == 0, "xdms exit status %s on SIGTERM" % rc)
        xdms.start()
        r = xdms.request("GET", DOC)
        expect(r.status == 200 and r.body == pidf2, "GET after restart: %d" % r.status)
        expect(r.header("ETag") == state["etag"],
               "ETag after restart %r, want %r" % (r.header("ETag"), state["etag"]))
        r = xdms.request("GET", DOC2)
        expect(r.status == 404, "deleted document after restart: %d" % r.status)

    def database_down():
        pg.stop()
        for method, body, headers in (("GET", None, []), ("PUT", pidf1, CT)):
            t0 = time.time()
            r = xdms.request(method, DOC, headers, body, timeout=PG_TIMEOUT + 5)
            took = time.time() - t0
            expect(r.status == 503, "%s with the database stopped: %d %s" % (
                method, r.status, r.body[:200]))
            expect(r.header("Retry-After") == "1", "%s Retry-After %r" % (
                method, r.header("Retry-After")))
            expect(took <= PG_TIMEOUT + 1, "%s answered after %.2f s" % (method, took))

    def database_back():
        pg._start("primary")
        pg._wait_ready("primary")
        r = xdms.request("GET", DOC)
        expect(r.status == 200 and r.body == pidf2, "GET with the database back: %d" % r.status)
        expect(r.header("ETag") == state["etag"], "ETag %r" % r.header("ETag"))
        r = xdms.request("PUT", DOC, CT + [("If-Match", state["etag"])], pidf1)
        expect(r.status == 200, "PUT with the database back: %d" % r.status)
        expect(r.header("ETag") != state["etag"], "new ETag")

    def xdmctl_db():
        xdmctl = os.path.join(build, "tools", "xdmctl")
        env = dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") or
                   "detect_leaks=1")
        outs = []
        for cmd in ("init", "migrate"):
            r = subprocess.run([xdmctl, "db", cmd, "--config", xdms.config, "--role", "presence"],
                               capture_output=True, timeout=30, env=env)
            expect(r.returncode == 0, "db %s: exit %d %s" % (cmd, r.returncode, r.stderr))
            m = re.fullmatch(rb"presence: database schema up to date "
                             rb"\(store instance [0-9a-f]{16}\)\n", r.stdout)
            expect(m, "db %s printed %r" % (cmd, r.stdout))
            expect(not has_sanitizer_report(r.stderr), "sanitizer report: %r" % r.stderr)
            outs.append(r.stdout)
        expect(outs[0] == outs[1], "db migrate changed the instance: %r" % outs)
        v = pg.psql("primary", "SELECT max(version) FROM xdm_schema")
        expect(v == "1", "schema version %r" % v)
        lmdb = os.path.join(tmp, "lmdb.conf")
        with open(lmdb, "w") as f:
            f.write("[xdms]\nmax_body = 1M\n")
        r = subprocess.run([xdmctl, "db", "init", "--config", lmdb, "--role", "rls"],
                           capture_output=True, timeout=30, env=env)
        expect(r.returncode == 1 and r.stdout == b"" and
               b"does not use store = postgresql" in r.stderr,
               "db init of an LMDB role: %d %r %r" % (r.returncode, r.stdout, r.stderr))

    try:
        pg.start()
        xdms = Xdms(build, tmp, pg.conninfo())
        check("xdmctl db init|migrate makes the schema from the server's configuration",
              xdmctl_db)
        check("xdms starts on the PostgreSQL database", xdms.start)
        check("PUT/GET/DELETE with ETags", crud)
        check("documents and ETags survive an XDMS restart", restart)
        check("database stopped: 503 + Retry-After within pg_timeout + 1 s", database_down)
        check("database back: served again without an XDMS restart", database_back)

        def clean_exit():
            rc = xdms.stop()
            expect(rc == 0, "xdms exit status %s on SIGTERM" % rc)
            reports = sanitizer_reports(xdms.logs)
            expect(not reports, "; ".join(reports))
        check("clean exit, no sanitizer report", clean_exit)
    except Exception as e:  # a set-up failure counts as one
        tally.fail("set-up: %s" % e)
    finally:
        if xdms is not None:
            try:
                xdms.stop()
            except Fail as e:
                tally.fail(str(e))
        pg.stop()
        if a.keep:
            print("kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return tally.finish()


if __name__ == "__main__":
    sys.exit(main())
