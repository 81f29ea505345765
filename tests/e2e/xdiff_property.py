#!/usr/bin/env python3
"""End-to-end property of the xcap-diff notifier (RFC 5874 §4; RFC 5261 §5; RFC 5875 §4.6): patches are exact.

Starts a shared-list XDMS on free loopback ports with a temporary store (HTTP with the asserted
identity over its UNIX-domain socket, as the proxy talks to it), and two xdm-sipua
subscribers to one document, both with --apply --verify (they keep a client copy, apply each
NOTIFY's RFC 5261 operations, fetch when a NOTIFY carries none, and compare the copy with a GET in
inclusive canonical XML): one with diff-processing=xcap-patching, one with aggregate. Then it runs
a bounded random sequence of element, attribute and document PUTs and DELETEs over HTTP and checks
after every acknowledged write that

  - the xcap-patching subscriber reports exactly that version next (the ETag chain has no gap),
    its copy equals the server's, and element and attribute edits travel as patches;
  - the aggregate subscriber's copies always equal the server's version they name, and it ends on
    the last version.

Python 3 standard library only. Usage:
  tests/e2e/xdiff_property.py --build build [--ops 300] [--seed N] [-v]
Exit status 0 when the property held; 1 with a reason otherwise.
"""
import argparse
import http.client
import os
import random
import shutil
import socket
import sys
import tempfile
import time
import urllib.parse
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import (SOURCE_ROOT, EventProcess, Fail, Server, free_port, logs_in,  # noqa: E402
                     sanitizer_reports, server_env, write_config)

RL = "urn:ietf:params:xml:ns:resource-lists"
XNS = "urn:example:x"
USER = "sip:alice@example.com"
DOC_SEL = "resource-lists/users/%s/index" % USER
DOC_PATH = "/xcap-root/" + DOC_SEL
TIME_LIMIT = 240.0

DOCS = [
    '<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists xmlns="%s" xmlns:x="%s">\n'
    '  <list name="a">\n    <entry uri="sip:1@example.com"/>\n  </list>\n</resource-lists>\n'
    % (RL, XNS),
    '<rl:resource-lists xmlns:rl="%s" xmlns:x="%s"><rl:list name="b" x:k="1">'
    '<rl:display-name>B &amp; c</rl:display-name><rl:entry uri="sip:2@example.com"/></rl:list>'
    '<rl:list/></rl:resource-lists>' % (RL, XNS),
    '<!-- kept --><resource-lists xmlns="%s" xmlns:x="%s"><list name="c"><x:ext a="1"/></list>'
    '</resource-lists>' % (RL, XNS),
]


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over the XDMS's UNIX-domain socket: the hop on which it believes
    X-3GPP-Asserted-Identity."""

    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def enc(sel):
    return urllib.parse.quote(sel, safe="/@:=*'()!$&,;+~")


class Property:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.serial = 0
        self.tmp = tempfile.mkdtemp(prefix="xdm-xdiff-property-")
        self.http_port = free_port()
        self.sip_port = free_port(udp_too=True)
        self.socket = os.path.join(self.tmp, "data", "xdms.sock")
        self.xdms = None
        self.subs = []
        self.stats = {"writes": 0, "patch": 0, "fetch": 0, "other": 0, "refused": 0}

    def say(self, msg):
        if self.args.verbose:
            print(msg, file=sys.stderr)

    def start(self):
        build = self.args.build
        xdms = os.path.join(build, "xdms", "xdms")
        ua = os.path.join(build, "tests", "sipua", "xdm-sipua")
        for b in (xdms, ua):
            if not os.path.exists(b):
                raise RuntimeError("binary not found: %s" % b)
        cfg = write_config(os.path.join(self.tmp, "xdm.conf"))
        # The subscribers play the SIP proxy in front, asserting the user from 127.0.0.1.
        self.xdms = Server("xdms", [
            xdms, "--role", "shared-list", "--config", cfg, "--data",
            os.path.join(self.tmp, "data"), "--http", "127.0.0.1:%d" % self.http_port,
            "--sip", "127.0.0.1:%d" % self.sip_port, "--xcap-root",
            "http://127.0.0.1:%d/xcap-root/" % self.http_port,
            "--option", "sip_trusted_peer=127.0.0.1", "--option", "metrics=off",
            # The source tree's XSDs, also when the build's default is an installed copy
            # (a package build runs this test before anything is installed).
            "--option", "schema_dir=%s" % os.path.join(SOURCE_ROOT, "schemas")],
            os.path.join(self.tmp, "xdms.log"), port=self.http_port, socket=self.socket,
            env=server_env()).start()
        time.sleep(0.2)
        st, _ = self.put(None, "application/resource-lists+xml", DOCS[0])
        if st != 201:
            raise RuntimeError("initial PUT: %d" % st)
        for name, mode in (("patch", "xcap-patching"), ("aggr", "aggregate")):
            argv = [ua, "--server", "127.0.0.1:%d" % self.sip_port, "--target", USER,
                    "--identity", USER, "--entry", DOC_SEL, "--event-param",
                    "diff-processing=" + mode, "--apply", "unix:" + self.socket,
                    "--verify", "--duration", str(int(TIME_LIMIT) + 60)]
            sub = EventProcess("the %s subscriber" % name, argv,
                               os.path.join(self.tmp, "sipua-%s.log" % name))
            self.subs.append(sub)
            if sub.take("response", 10).get("status") != 200:
                raise RuntimeError("SUBSCRIBE (%s) refused" % mode)
            c = sub.take("copy", 10)
            if c.get("match") is not True:
                raise RuntimeError("initial copy (%s) differs: %s" % (mode, c))

    def request(self, method, node, ctype=None, body=None, query=None):
        path = DOC_PATH
        if node:
            path += "/~~/" + enc(node)
        if query:
            path += "?" + query
        conn = UnixHTTPConnection(self.socket, timeout=10)
        headers = {"X-3GPP-Asserted-Identity": '"%s"' % USER}
        if ctype:
            headers["Content-Type"] = ctype
        conn.request(method, path, body=body.encode("utf-8") if body is not None else None,
                     headers=headers)
        r = conn.getresponse()
        data = r.read()
        etag = (r.getheader("ETag") or "").strip('"')
        conn.close()
        return r.status, etag if r.status < 300 else data.decode("utf-8", "replace")

    def put(self, node, ctype, body, query=None):
        return self.request("PUT", node, ctype, body, query)

    def current(self):
        st, _ = self.request("GET", None)
        if st != 200:
            return None
        conn = UnixHTTPConnection(self.socket, timeout=10)
        conn.request("GET", DOC_PATH, headers={"X-3GPP-Asserted-Identity": '"%s"' % USER})
        data = conn.getresponse().read()
        conn.close()
        return ET.fromstring(data)

    def pick(self, root, allow_root):
        """A positional node selector ("*" then "*[k]") of a random element, its element."""
        sel, el = "*", root
        while True:
            kids = [c for c in el if isinstance(c.tag, str)]
            if not kids or (sel != "*" and self.rng.random() < 0.35) or (
                    allow_root and sel == "*" and self.rng.random() < 0.15):
                return sel, el
            k = self.rng.randrange(len(kids))
            sel += "/*[%d]" % (k + 1)
            el = kids[k]

    def local(self, el):
        return el.tag.split("}")[-1]

    def write(self):
        """One random write; returns the HTTP status."""
        root = self.current()
        r = self.rng.random()
        self.serial += 1
        n = self.serial
        if root is None or r < 0.06:
            return self.put(None, "application/resource-lists+xml", self.rng.choice(DOCS))[0]
        if r < 0.09:
            return self.request("DELETE", None)[0]
        sel, el = self.pick(root, allow_root=True)
        kind = self.local(el)
        if r < 0.45:
            # an element inserted where the schema allows it
            if kind in ("resource-lists", "list"):
                choice = self.rng.randrange(3)
                if choice == 0:
                    return self.put(sel + '/entry[@uri="sip:n%d@example.com"]' % n,
                                    "application/xcap-el+xml",
                                    '<entry uri="sip:n%d@example.com"><display-name>N%d &amp; '
                                    'co</display-name></entry>' % (n, n))[0]
                if choice == 1:
                    return self.put(sel + '/list[@name="l%d"]' % n, "application/xcap-el+xml",
                                    '<list name="l%d">\n  <entry uri="sip:m%d@example.com"/>\n'
                                    '</list>' % (n, n))[0]
            return self.put(sel + '/x:ext[@n="%d"]' % n, "application/xcap-el+xml",
                            '<x:ext n="%d"><x:in>t%d</x:in></x:ext>' % (n, n),
                            "xmlns(x=%s)" % XNS)[0]
        if r < 0.55 and sel != "*":
            # an element replaced by an equivalent of another content
            if kind == "entry":
                body = '<entry uri="%s"><!-- r%d --></entry>' % (el.get("uri"), n)
            elif kind == "display-name":
                body = '<display-name xml:lang="en">D%d</display-name>' % n
            else:
                return 0
            return self.put(sel, "application/xcap-el+xml", body)[0]
        if r < 0.72:
            # a foreign attribute added or replaced (the document binds x)
            value = self.rng.choice(["v%d" % n, "a&amp;b", '"q"', "it's", "t\tu", "l&#10;m",
                                     "&lt;&gt;", ""])
            return self.put(sel + "/@x:k", "application/xcap-att+xml", value,
                            "xmlns(x=%s)" % XNS)[0]
        if r < 0.8 and kind == "list":
            if el.get("name") is not None and self.rng.random() < 0.5:
                return self.request("DELETE", sel + "/@name")[0]
            return self.put(sel + "/@name", "application/xcap-att+xml", "q%d" % n)[0]
        if r < 0.85:
            return self.request("DELETE", sel + "/@x:k", query="xmlns(x=%s)" % XNS)[0]
        if sel != "*":
            return self.request("DELETE", sel)[0]
        return 0

    def check(self):
        patch, aggr = self.subs
        st = self.write()
        if st not in (200, 201):
            if st not in (0, 404, 409):
                raise RuntimeError("unexpected HTTP status %d" % st)
            self.stats["refused"] += 1
            return
        self.stats["writes"] += 1
        conn = UnixHTTPConnection(self.socket, timeout=10)
        conn.request("HEAD", DOC_PATH, headers={"X-3GPP-Asserted-Identity": '"%s"' % USER})
        r = conn.getresponse()
        r.read()
        etag = (r.getheader("ETag") or "").strip('"') if r.status == 200 else ""
        conn.close()
        c = patch.take("copy", 10)
        self.say("write %d: %s" % (self.stats["writes"], c))
        if c.get("etag") != etag:
            raise RuntimeError("xcap-patching copy at %r, server at %r (a gap in the ETag chain)"
                               % (c.get("etag"), etag))
        if c.get("match") is not True:
            raise RuntimeError("xcap-patching copy differs from the server: %s" % c)
        how = c.get("how")
        self.stats[how if how in ("patch", "fetch") else "other"] += 1
        for a in aggr.drain("copy"):
            if a.get("match") is False:
                raise RuntimeError("aggregate copy differs from the server: %s" % a)

    def run(self):
        self.start()
        end = time.monotonic() + TIME_LIMIT
        for _ in range(self.args.ops):
            if time.monotonic() > end:
                raise RuntimeError("time limit reached")
            self.check()
        # the aggregate subscriber ends on the last version
        deadline = time.monotonic() + 10
        conn = UnixHTTPConnection(self.socket, timeout=10)
        conn.request("HEAD", DOC_PATH, headers={"X-3GPP-Asserted-Identity": '"%s"' % USER})
        r = conn.getresponse()
        r.read()
        etag = (r.getheader("ETag") or "").strip('"') if r.status == 200 else ""
        conn.close()
        last = None
        while time.monotonic() < deadline:
            got = self.subs[1].drain("copy")
            for a in got:
                if a.get("match") is False:
                    raise RuntimeError("aggregate copy differs from the server: %s" % a)
                last = a
            if last is not None and last.get("etag") == etag:
                break
            time.sleep(0.05)
        if last is not None and last.get("etag") != etag:
            raise RuntimeError("aggregate subscriber ended at %r, server at %r"
                               % (last.get("etag"), etag))
        s = self.stats
        print("xdiff property: %d ops, %d writes (%d refused), xcap-patching: %d patched, "
              "%d fetched, %d other" % (self.args.ops, s["writes"], s["refused"], s["patch"],
                                        s["fetch"], s["other"]))
        if s["writes"] < self.args.ops // 3 or s["patch"] * 2 < s["writes"]:
            raise RuntimeError("too few writes or patches to mean anything")

    def close(self, keep):
        for s in self.subs:
            s.stop()
        if self.xdms:
            self.xdms.stop()
        bad = sanitizer_reports(logs_in(self.tmp))
        if not keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--ops", type=int, default=300)
    ap.add_argument("--seed", type=int, default=20260601)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    prop = Property(args)
    rc = 0
    try:
        prop.run()
    except (Fail, RuntimeError, OSError, ET.ParseError) as e:
        print("xdiff property FAILED: %s (logs in %s)" % (e, prop.tmp), file=sys.stderr)
        rc = 1
        args.keep = True
    bad = prop.close(args.keep)
    if bad:
        print("xdiff property FAILED: sanitizer report in the logs (%s)" % prop.tmp,
              file=sys.stderr)
        rc = 1
    # one property, checked over the whole sequence: one test for the closing count
    print("counts: %d passed, %d failed" % (1 - rc, rc))
    sys.exit(rc)


if __name__ == "__main__":
    main()
