#!/usr/bin/env python3
"""End-to-end checks with a real, unmodified client library: Python's urllib with
HTTPDigestAuthHandler, the HTTP layer of python3-xcaplib (which is not packaged for Debian 12, so
its own code cannot be used here) and of every other client built the same way.

    python3 tests/e2e/urllib_client.py --build build [-v] [--keep] [--filter NAME]

urllib's Digest handler reads only the first WWW-Authenticate header and knows MD5 (and SHA-1),
not SHA-256; it copies the request-target unescaped into uri="...", and, like xcaplib, the
targets carry node selectors with raw '"'. The checks drive a real deployment (the servers
started by run.py's classes, on free loopback ports with temporary data) through the client
library exactly as an XCAP client built on it would, and check each answer. Prints one PASS/FAIL
line per check and `counts: P passed, F failed`; exits non-zero when a check failed, a process
died or a sanitizer report appears in a log. Standard library only.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import types
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run  # noqa: E402  (the case runner: its Deployment starts and stops the servers)

ALICE = "sip:alice@example.com"
DOC = "/resource-lists/users/%s/index" % ALICE
# Node selectors as xcaplib writes them: raw quotes, brackets, '@'.
FRIENDS = '/~~/resource-lists/list[@name="friends"]'
DAVE = FRIENDS + '/entry[@uri="sip:dave@example.com"]'
LIST = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">\n'
        b'  <list name="friends">\n'
        b'    <entry uri="sip:bob@example.com"><display-name>Bob</display-name></entry>\n'
        b'    <entry uri="sip:carol@example.com"/>\n'
        b'  </list>\n'
        b'</resource-lists>\n')


class Fail(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise Fail(what)


# --------------------------------------------------------------------------------------------
# The client, as xcaplib's httpclient.py builds it on urllib: a Request subclass that carries
# the method, an opener with HTTPDigestAuthHandler holding (realm, base URL, user, password), and
# HTTP errors turned into ordinary responses.

class XcapRequest(urllib.request.Request):
    def __init__(self, url, method="GET", data=None, headers=None):
        urllib.request.Request.__init__(self, url, data, headers or {})
        self.xcap_method = method

    def get_method(self):
        return self.xcap_method


class Answer:
    def __init__(self, status, headers, body, authorization):
        self.status = status
        self.headers = headers
        self.body = body
        self.authorization = authorization  # the Authorization header urllib sent last

    def header(self, name):
        return self.headers.get(name)


class XcapClient:
    def __init__(self, root, username, realm, password, log):
        self.root = root.rstrip("/")
        self.log = log
        auth = urllib.request.HTTPDigestAuthHandler()
        auth.add_password(realm, self.root + "/", username, password)
        # ProxyHandler({}): never an http_proxy of the environment for loopback tests.
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), auth)

    def request(self, method, path, data=None, headers=None):
        req = XcapRequest(self.root + path, method, data, headers)
        try:
            with self.opener.open(req, timeout=15) as r:
                ans = Answer(r.status, r.headers, r.read(), req.get_header("Authorization"))
        except urllib.error.HTTPError as e:
            ans = Answer(e.code, e.headers, e.read(), req.get_header("Authorization"))
        self.log("%s %s -> %d\n    Authorization: %s\n    %s" % (
            method, path, ans.status, ans.authorization,
            ans.body[:300].decode("utf-8", "replace").replace("\n", "\n    ")))
        return ans


def etag_of(ans):
    m = re.fullmatch(r'"([^"]+)"', ans.header("ETag") or "")
    expect(m, "no strong ETag in %r" % ans.header("ETag"))
    return m.group(1)


# --------------------------------------------------------------------------------------------
# Deployments through run.py's classes

class Env:
    def __init__(self, args):
        self.args = args
        self.runner = run.Runner(types.SimpleNamespace(
            build=args.build, keep=args.keep, verbose=args.verbose, log_level=None,
            time_scale=float(os.environ.get("XDM_E2E_TIME_SCALE", "1"))))
        self.deps = []
        self.temps = []

    def tmp(self):
        d = tempfile.mkdtemp(prefix="xdm-e2e-urllib-")
        self.temps.append(d)
        return d

    def deploy(self, name, roles, proxy_options=()):
        dep = run.Deployment(self.runner, types.SimpleNamespace(name="urllib-" + name))
        self.deps.append(dep)
        dep.procs["proxy"].options = list(proxy_options)
        dep.add_user("alice", ALICE, "secret")
        for r in roles:
            dep.procs[r].start()
        dep.procs["proxy"].start()
        return dep

    def log(self, text):
        if self.args.verbose:
            print("    " + text.replace("\n", "\n    "))

    def client(self, dep):
        return XcapClient(dep.xcap_root, "alice", "example.com", "secret", self.log)

    def shutdown(self):
        problems = []
        for dep in self.deps:
            problems += dep.shutdown()
            problems += dep.sanitizer_reports()
        return problems


# --------------------------------------------------------------------------------------------
# Checks

def check_default_crud(env):
    """With the default digest_algorithms (MD5 first) urllib logs in, and a resource-lists
    document goes through PUT, GET, element PUT/GET/DELETE and attribute GET with raw '"' in
    the targets and in the Digest uri."""
    dep = env.deploy("crud", ["shared-list"])
    c = env.client(dep)
    ct = {"Content-Type": "application/resource-lists+xml"}

    a = c.request("PUT", DOC, LIST, ct)
    expect(a.status == 201, "document PUT: %d %r" % (a.status, a.body))
    expect('algorithm="MD5"' in (a.authorization or ""),
           "urllib did not answer the MD5 challenge: %r" % a.authorization)
    e1 = etag_of(a)
    a = c.request("GET", DOC)
    expect(a.status == 200 and a.body == LIST, "document GET: %d %r" % (a.status, a.body))
    expect(etag_of(a) == e1, "GET ETag %r, PUT gave %r" % (a.header("ETag"), e1))

    # Element PUT: the target holds raw quotes, and urllib copies it into uri="..." unescaped.
    a = c.request("PUT", DOC + DAVE, b'<entry uri="sip:dave@example.com"/>',
                  {"Content-Type": "application/xcap-el+xml", "If-Match": '"%s"' % e1})
    expect(a.status == 201, "element PUT: %d %r" % (a.status, a.body))
    raw_uri = 'uri="/xcap-root%s%s"' % (DOC, DAVE)
    expect(raw_uri in (a.authorization or ""),
           "the Authorization header did not carry the raw target: %r" % a.authorization)
    e2 = etag_of(a)
    expect(e2 != e1, "element PUT kept the ETag")

    a = c.request("GET", DOC + DAVE)
    expect(a.status == 200, "element GET: %d %r" % (a.status, a.body))
    expect(re.fullmatch(rb'<entry\b[^>]*\buri="sip:dave@example.com"[^>]*/>\s*', a.body),
           "element GET body %r" % a.body)
    expect(a.header("Content-Type") == "application/xcap-el+xml",
           "element GET Content-Type %r" % a.header("Content-Type"))
    expect(etag_of(a) == e2, "element GET ETag")

    a = c.request("GET", DOC + FRIENDS + '/entry[@uri="sip:bob@example.com"]/display-name')
    expect(a.status == 200 and b">Bob</display-name>" in a.body,
           "display-name GET: %d %r" % (a.status, a.body))

    a = c.request("GET", DOC + DAVE + "/@uri")
    expect(a.status == 200 and a.body == b"sip:dave@example.com",
           "attribute GET: %d %r" % (a.status, a.body))
    expect(a.header("Content-Type") == "application/xcap-att+xml",
           "attribute GET Content-Type %r" % a.header("Content-Type"))

    a = c.request("DELETE", DOC + DAVE, headers={"If-Match": '"%s"' % e2})
    expect(a.status == 200, "element DELETE: %d %r" % (a.status, a.body))
    e3 = etag_of(a)
    a = c.request("GET", DOC + DAVE)
    expect(a.status == 404, "deleted element GET: %d" % a.status)
    a = c.request("GET", DOC)
    expect(a.status == 200 and etag_of(a) == e3, "document after element DELETE: %d" % a.status)
    expect(a.body.count(b"<entry ") == 2 and b"dave" not in a.body,
           "document after element DELETE: %r" % a.body)

    # A stale ETag is a 412, not an authentication problem.
    a = c.request("DELETE", DOC, headers={"If-Match": '"%s"' % e1})
    expect(a.status == 412, "DELETE with a stale If-Match: %d" % a.status)
    a = c.request("DELETE", DOC)
    expect(a.status == 200, "document DELETE: %d %r" % (a.status, a.body))
    a = c.request("GET", DOC)
    expect(a.status == 404, "deleted document GET: %d" % a.status)

    a = c.request("GET", "/xcap-caps/global/index")
    expect(a.status == 200 and b"<extensions" in a.body,
           "xcap-caps: %d %r" % (a.status, a.body[:200]))


def check_sha256_first(env):
    """With SHA-256 offered first, urllib cannot log in even though MD5 is offered too: it reads
    the first challenge only. This is why MD5 comes first by default (docs/proxy.md)."""
    dep = env.deploy("sha256-first", [], ["digest_algorithms=SHA-256 MD5"])
    c = env.client(dep)
    try:
        a = c.request("GET", "/xcap-caps/global/index")
    except ValueError as e:
        expect("SHA-256" in str(e), "unexpected urllib error: %s" % e)
        return
    raise Fail("urllib got %d with SHA-256 offered first; it was expected to give up" % a.status)


def check_bad_config(env):
    """A digest_algorithms value that cannot be honoured stops the proxy at start, saying why."""
    proxy = os.path.join(os.path.abspath(env.args.build), run.BIN_PROXY)
    tmp = env.tmp()
    cases = {
        "SHA-512": 'digest_algorithms: unknown algorithm "SHA-512"',
        "": "digest_algorithms: the list is empty",
        " , ": "digest_algorithms: the list is empty",
        "MD5 MD5-sess": "digest_algorithms: MD5-sess is not supported",
        "SHA-256,sha-256": "digest_algorithms: SHA-256 is listed twice",
    }
    for value, message in cases.items():
        argv = [proxy, "--data", os.path.join(tmp, "data"), "--http", "127.0.0.1:0",
                "--option", "digest_algorithms=" + value]
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, env=env.runner.env)
        try:
            out, _ = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            raise Fail("digest_algorithms=%r: the proxy started anyway" % value)
        text = out.decode("utf-8", "replace")
        env.log("digest_algorithms=%r -> exit %d: %s" % (value, p.returncode, text.strip()))
        expect(p.returncode == 2, "digest_algorithms=%r: exit %d\n%s" % (value, p.returncode, text))
        expect(message in text, "digest_algorithms=%r: no %r in\n%s" % (value, message, text))
        expect(not any(s in text for s in run.SANITIZER_PATTERNS), "sanitizer report:\n" + text)


CHECKS = [check_default_crud, check_sha256_first, check_bad_config]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--filter", action="append", default=[])
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    checks = [c for c in CHECKS if not args.filter or any(f in c.__name__ for f in args.filter)]
    env = Env(args)
    passed = failed = 0
    try:
        for c in checks:
            t0 = time.monotonic()
            try:
                c(env)
                passed += 1
                print("PASS %s (%.1fs)" % (c.__name__[6:], time.monotonic() - t0))
            except (Fail, run.CaseError) as e:
                failed += 1
                print("FAIL %s: %s" % (c.__name__[6:], e))
            except Exception as e:  # a client library error: report it, keep the summary
                failed += 1
                print("FAIL %s: %r" % (c.__name__[6:], e))
            for dep in env.deps:
                try:
                    dep.check_alive()
                except run.CaseError as e:
                    failed += 1
                    print("FAIL %s" % e)
    finally:
        for msg in env.shutdown():
            failed += 1
            print("FAIL %s" % msg)
        dirs = [d.tmp for d in env.deps] + env.temps
        if args.keep or failed:
            print("kept %s" % " ".join(dirs))
        else:
            for d in dirs:
                shutil.rmtree(d, ignore_errors=True)
    print("counts: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
