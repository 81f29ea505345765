#!/usr/bin/env python3
"""End-to-end checks of the admin listeners with the Prometheus tools themselves, which the case
runner (run.py) cannot express:

- after traffic through the proxy, the /metrics output of every process (aggproxy and the three
  XDMS roles) passes `promtool check metrics` (text exposition format 0.0.4 and the naming
  conventions), with no complaint at all;
- a real Prometheus server, started here on a free loopback port with a temporary configuration
  that scrapes the four admin listeners once a second, reports every target up and, through its
  query API (/api/v1/query), the series xdm_build_info and xdm_http_requests_total of each job;
- the two Prometheus snippets of docs/operations.md (the scrape configuration and the alert
  rules), taken from the document itself, pass `promtool check config` and `promtool check
  rules`, and every metric an alert expression names is one the servers expose;
- the access log: one PUT through the proxy, sent with the client's own X-Request-ID, shows in the
  proxy's log with a fresh id and the client's next to it, and the XDMS logs the same fresh id
  (the proxy forwards it as X-Request-ID); as text lines, and as JSON lines with access_log=json.

    python3 tests/e2e/metrics_prom.py --build build [-v] [--keep]

Uses run.py's deployments (real binaries, free loopback ports, temporary data). Needs the Debian
package prometheus (promtool, prometheus). Prints one PASS/FAIL line per check and `counts: P
passed, F failed`; exits non-zero when a check failed, a process died or a sanitizer report
appears in a log. Prometheus is stopped by its PID. Every wait is bounded in time.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import run as e2e  # noqa: E402  (the case runner: HTTP and the Digest client)
from harness import (LOOPBACK, XDMS_ROLES, Deployment, Fail, Server, Settings,  # noqa: E402
                     Tally, describe_rc, expect, free_port, script_args, selected, tail)

ALICE = "sip:alice@example.com"
DOC = "/xcap-root/resource-lists/users/%s/index" % ALICE
DOC_BODY = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
            b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">'
            b'<list name="friends"><entry uri="sip:bob@example.com"/></list></resource-lists>\n')
CLIENT_ID = "client-chosen-id-1"
JOBS = ("aggproxy",) + XDMS_ROLES  # job name = process; the proxy's Proc is "proxy"


def proc_of(dep, job):
    return dep.procs["proxy" if job == "aggproxy" else job]


def get(url, timeout=10):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as r:
        return r.status, r.headers, r.read()


class Ctx:
    def __init__(self, args):
        self.args = args
        self.runner = Settings.of(args)
        self.dep = None
        self.tmp = tempfile.mkdtemp(prefix="xdm-e2e-prom-")
        self.prom = None
        self.extra = []

    def log(self, text):
        if self.args.verbose:
            print("    " + text.replace("\n", "\n    "))

    def traffic(self, dep=None):
        """Digest-authenticated PUT and GET of a document, the aggregated xcap-caps (which the
        proxy asks every XDMS for) and one request without credentials (401). The PUT carries the
        client's own X-Request-ID: CLIENT_ID."""
        dep = dep or self.dep
        user = e2e.DigestUser("alice", ALICE, "secret")
        proxy = dep.procs["proxy"]
        for method, target, body, want in (("PUT", DOC, DOC_BODY, 201), ("GET", DOC, None, 200),
                                           ("GET", "/xcap-root/xcap-caps/global/index", None,
                                            200)):
            headers = [("Content-Type", "application/resource-lists+xml"),
                       ("X-Request-ID", CLIENT_ID)] if body else []
            resp = e2e.http_exchange(proxy.http_addr, method, target, headers, body, 15)
            if resp.status == 401:
                user.adopt(resp, None)
                auth, _ = user.authorization(method, target, "secret")
                resp = e2e.http_exchange(proxy.http_addr, method, target,
                                         headers + [("Authorization", auth)], body, 15)
            self.log("%s %s -> %d" % (method, target, resp.status))
            expect(resp.status == want, "%s %s: %d, wanted %d: %r" % (
                method, target, resp.status, want, resp.body[:200]))


def check_promtool(ctx):
    """Every process's /metrics passes `promtool check metrics` without a single remark."""
    for job in JOBS:
        p = proc_of(ctx.dep, job)
        status, headers, body = get("http://%s:%d/metrics" % (LOOPBACK, p.metrics_port))
        expect(status == 200, "%s /metrics: %d" % (job, status))
        expect(headers.get("Content-Type") == "text/plain; version=0.0.4; charset=utf-8",
               "%s /metrics Content-Type %r" % (job, headers.get("Content-Type")))
        expect(b"xdm_http_requests_total{" in body, "%s: no request counted:\n%s" % (
            job, body.decode()[:2000]))
        r = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True,
                           timeout=30)
        out = (r.stdout + r.stderr).decode("utf-8", "replace").strip()
        ctx.log("promtool check metrics (%s, %d bytes): exit %d %s" % (job, len(body),
                                                                       r.returncode, out))
        expect(r.returncode == 0 and out == "",
               "promtool check metrics on %s: exit %d:\n%s" % (job, r.returncode, out))


def check_prometheus_scrape(ctx):
    """A Prometheus server scrapes all four admin listeners; its query API shows every target up
    and xdm_build_info and xdm_http_requests_total for each job."""
    port = free_port()
    conf = os.path.join(ctx.tmp, "prometheus.yml")
    with open(conf, "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n")
        for job in JOBS:
            p = proc_of(ctx.dep, job)
            f.write("  - job_name: %s\n    static_configs:\n      - targets: ['%s:%d']\n" % (
                job, LOOPBACK, p.metrics_port))
    log_path = os.path.join(ctx.tmp, "prometheus.log")
    ctx.prom = Server("prometheus", [
        "prometheus", "--config.file=" + conf,
        "--storage.tsdb.path=" + os.path.join(ctx.tmp, "tsdb"),
        "--web.listen-address=%s:%d" % (LOOPBACK, port)], log_path, cwd=ctx.tmp).start(wait=False)
    api = "http://%s:%d/api/v1/query?query=" % (LOOPBACK, port)

    def jobs_with(query):
        try:
            status, _, body = get(api + urllib.parse.quote(query), timeout=2)
        except OSError:
            return set()
        data = json.loads(body)
        if status != 200 or data.get("status") != "success":
            return set()
        return {s["metric"].get("job") for s in data["data"]["result"]}

    queries = ("up == 1", "xdm_build_info", "sum by (job) (xdm_http_requests_total)")
    deadline = time.monotonic() + 60 * ctx.runner.time_scale
    seen = {}
    while time.monotonic() < deadline:
        expect(ctx.prom.running(), "prometheus exited (%s):\n%s" % (
            describe_rc(ctx.prom.popen.returncode), tail(log_path)))
        seen = {q: jobs_with(q) for q in queries}
        if all(seen[q] >= set(JOBS) for q in queries):
            break
        time.sleep(0.5)
    ctx.log("prometheus saw: %r" % seen)
    for q in queries:
        expect(seen.get(q, set()) >= set(JOBS), "query %r: jobs %s, wanted %s\n%s" % (
            q, sorted(j for j in seen.get(q, set()) if j), sorted(JOBS), tail(log_path)))


def log_text(proc):
    with open(proc.logs[-1], "rb") as f:
        return f.read().decode("utf-8", "replace")


TEXT_LINE = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ACCESS (?P<prog>\S+): '
                       r'(?P<peer>\S+) "(?P<method>\S+) (?P<target>\S+)" (?P<status>\d{3}) '
                       r'(?P<bytes>\d+) (?P<seconds>\d+\.\d{6}) id=(?P<id>\S+) '
                       r'client_id=(?P<client_id>\S+)$', re.M)


def check_access_log_text(ctx):
    """The default text access log: the PUT's line at the proxy has a fresh 24-hex-digit id and
    the client's id apart; the shared-list XDMS's line for it has the same id."""
    proxy = [m.groupdict() for m in TEXT_LINE.finditer(log_text(ctx.dep.procs["proxy"]))]
    xdms = [m.groupdict() for m in TEXT_LINE.finditer(log_text(ctx.dep.procs["shared-list"]))]
    puts = [e for e in proxy if e["method"] == "PUT" and e["status"] == "201"]
    expect(len(puts) == 1, "proxy PUT 201 access lines: %r" % proxy)
    p = puts[0]
    expect(p["prog"] == "aggproxy" and p["peer"] == "127.0.0.1" and p["target"] == DOC,
           "proxy line %r" % p)
    expect(re.fullmatch(r"[0-9a-f]{24}", p["id"]) and p["client_id"] == CLIENT_ID,
           "proxy ids: %r" % p)
    same = [e for e in xdms if e["id"] == p["id"]]
    expect(len(same) == 1, "XDMS lines with id %s: %r (all: %r)" % (p["id"], same, xdms))
    x = same[0]
    expect(x["prog"] == "xdms(shared-list)" and x["peer"] == "unix" and x["method"] == "PUT" and
           x["target"] == DOC and x["status"] == "201" and x["client_id"] == "-",
           "XDMS line %r" % x)
    # Every request got a line of its own with an id of its own at the proxy.
    ids = [e["id"] for e in proxy]
    expect(len(ids) == len(set(ids)) and len(ids) >= 4, "proxy ids %r" % ids)


def check_access_log_json(ctx):
    """access_log = json: every access line is one JSON object; the PUT's id is the same at the
    proxy and at the XDMS."""
    dep = Deployment(ctx.runner, "prom-json")
    ctx.extra.append(dep)
    dep.add_user("alice", ALICE, "secret")
    for n in ("shared-list", "presence", "rls", "proxy"):
        dep.procs[n].options.append("access_log=json")
        dep.procs[n].start()
    ctx.traffic(dep)

    def entries(proc):
        out = []
        for line in log_text(proc).splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
            else:
                expect(" ACCESS " not in line, "a text access line with access_log=json: %r" % line)
        return out
    proxy, xdms = entries(dep.procs["proxy"]), entries(dep.procs["shared-list"])
    keys = ["time", "process", "peer", "method", "target", "status", "bytes", "seconds", "id",
            "client_id"]
    for e in proxy + xdms:
        expect(list(e) == keys, "JSON keys %r" % list(e))
    puts = [e for e in proxy if e["method"] == "PUT" and e["status"] == 201]
    expect(len(puts) == 1 and puts[0]["client_id"] == CLIENT_ID and
           puts[0]["process"] == "aggproxy" and puts[0]["target"] == DOC,
           "proxy JSON PUT lines %r" % puts)
    same = [e for e in xdms if e["id"] == puts[0]["id"]]
    expect(len(same) == 1 and same[0]["method"] == "PUT" and same[0]["status"] == 201 and
           same[0]["client_id"] is None and same[0]["process"] == "xdms(shared-list)",
           "XDMS JSON lines for id %s: %r" % (puts[0]["id"], same))


def doc_yaml_blocks():
    """The ```yaml blocks of docs/operations.md, in order."""
    with open(os.path.join(ROOT, "docs", "operations.md")) as f:
        return re.findall(r"^```yaml\n(.*?)^```$", f.read(), re.M | re.S)


def check_docs_snippets(ctx):
    """The scrape configuration and the alert rules operators copy from docs/operations.md."""
    blocks = doc_yaml_blocks()
    expect(len(blocks) == 2 and "scrape_configs:" in blocks[0] and "groups:" in blocks[1],
           "docs/operations.md: expected the scrape configuration and the alert rules, found %d "
           "yaml block(s)" % len(blocks))
    for kind, text in (("config", blocks[0]), ("rules", blocks[1])):
        path = os.path.join(ctx.tmp, "docs-%s.yml" % kind)
        with open(path, "w") as f:
            f.write(text)
        r = subprocess.run(["promtool", "check", kind, path], capture_output=True, timeout=60)
        out = (r.stdout + r.stderr).decode(errors="replace")
        ctx.log("promtool check %s (docs/operations.md): exit %d %s" % (kind, r.returncode, out))
        expect(r.returncode == 0 and "SUCCESS" in out,
               "promtool check %s of the docs' snippet: exit %d:\n%s" % (kind, r.returncode, out))
    # Every xdm_ series an alert uses exists (histograms by their _bucket series).
    status, _, body = get("http://%s:%d/metrics" % (LOOPBACK,
                                                    ctx.dep.procs["shared-list"].metrics_port))
    expect(status == 200, "/metrics: %d" % status)
    exposed = set(re.findall(r"^(xdm_[a-z_]+)", body.decode(), re.M))
    used = set(re.findall(r"\b(xdm_[a-z_]+)", blocks[1]))
    missing = sorted(used - exposed)
    expect(used and not missing, "alert rules name series no server exposes: %s" % missing)


CHECKS = [check_promtool, check_prometheus_scrape, check_docs_snippets, check_access_log_text,
          check_access_log_json]


def main():
    args = script_args(__doc__)
    ctx = Ctx(args)
    tally = Tally()

    def alive():
        for d in [ctx.dep] + ctx.extra:
            d.check_alive()

    try:
        for tool in ("promtool", "prometheus"):
            expect(shutil.which(tool), "%s not found: install the Debian package prometheus" % tool)
        ctx.dep = Deployment(ctx.runner, "prom")
        ctx.dep.add_user("alice", ALICE, "secret")
        ctx.dep.start()
        ctx.traffic()
        for c in selected(CHECKS, args.filter):
            tally.check(c.__name__[6:], c, ctx, after=alive)
    except (Fail, OSError) as e:
        tally.fail("setup: %s" % e)
    finally:
        if ctx.prom is not None:
            ctx.prom.stop(timeout=15)  # Prometheus is stopped by its PID
        for dep in ([ctx.dep] if ctx.dep else []) + ctx.extra:
            for msg in dep.finish(args.keep or tally.failed):
                tally.fail(msg)
        if args.keep or tally.failed:
            print("kept %s" % ctx.tmp)
        else:
            shutil.rmtree(ctx.tmp, ignore_errors=True)
    return tally.finish()


if __name__ == "__main__":
    sys.exit(main())
