#!/usr/bin/env python3
"""End-to-end test runner for the XDM server family.

Starts the real binaries (aggproxy and the three XDMS roles) on free loopback ports with
temporary data directories, runs the declarative case files in tests/e2e/cases/ against them and
prints one PASS/FAIL/SKIP line per case, then `counts: P passed, F failed, S skipped by design`.
The case format is described in tests/e2e/README.md. Standard library only (with --store
postgresql also tools/pglocal.py and the PostgreSQL server binaries).
"""

import argparse
import codecs
import concurrent.futures
import gzip
import hashlib
import http.client
import json
import os
import re
import shlex
import shutil
import select
import signal
import socket
import subprocess
import string
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
# The shared harness: ports, processes, logs and the Deployment live there. The names below are
# re-exported, as other scripts import them from here.
from harness import (  # noqa: E402,F401
    ALL_PROCS, BIN_PROXY, BIN_SIPUA, BIN_XDMCTL, BIN_XDMS, LOOPBACK, PROXY_URL_KEYS,
    SANITIZER_PATTERNS, SOURCE_ROOT, XDMS_ROLES, Deployment, Proc, Settings, SipUA, describe_rc,
    free_port, kill_all_live, read_bytes, tail)
from harness import Fail as CaseError  # noqa: E402  (a failed step: the message is the reason)

# Store backends of the XDMSs (--store); the first is the default.
STORES = ("lmdb", "postgresql")
PG_DB = "xdm"  # the database tools/pglocal.py creates (owner PG_USER); cases get their own
PG_USER = "xdm"

# Namespace prefixes usable in XML assertion paths without an `ns` statement.
DEFAULT_NS = {
    "xe": "urn:ietf:params:xml:ns:xcap-error",
    "caps": "urn:ietf:params:xml:ns:xcap-caps",
    "rl": "urn:ietf:params:xml:ns:resource-lists",
    "rls": "urn:ietf:params:xml:ns:rls-services",
    "cp": "urn:ietf:params:xml:ns:common-policy",
    "pr": "urn:ietf:params:xml:ns:pres-rules",
    "pidf": "urn:ietf:params:xml:ns:pidf",
    "xd": "urn:ietf:params:xml:ns:xcap-diff",
    "dir": "urn:oma:xml:xdm:xcap-directory",
    "oxe": "urn:oma:xml:xdm:xcap-error",
    "ocp": "urn:oma:xml:xdm:common-policy",
    "opr": "urn:oma:xml:prs:pres-rules",
    "pc": "urn:oma:xml:prs:pres-content",
    "ss": "http://uri.etsi.org/ngn/params/xml/simservs/xcap",
}

VAR_RE = re.compile(r"\$\{([A-Za-z0-9_.:-]+)\}")


class ParseError(Exception):
    pass


# --------------------------------------------------------------------------------------------
# HTTP and Digest (RFC 7616)

class Response:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value) in arrival order
        self.body = body
        self.challenged = False
        self.auth = None  # the Digest parameters used, for rspauth checking
        self.reused = False

    def header_values(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def header(self, name):
        vals = self.header_values(name)
        return ", ".join(vals) if vals else None

    def summary(self):
        lines = ["HTTP %d %s" % (self.status, self.reason)]
        lines += ["%s: %s" % hv for hv in self.headers]
        body = self.body.decode("utf-8", "replace")
        if len(body) > 1200:
            body = body[:1200] + "... (%d bytes)" % len(self.body)
        if body:
            lines += ["", body]
        return "\n".join(lines)


def http_exchange(addr, method, target, headers, body, timeout, source=None, pool=None):
    """One request. addr: "HOST:PORT", or "unix:PATH" for an XDMS's UNIX-domain socket (Host is
    then "localhost"). headers: list of (name, value); source: local address to connect from
    (another 127.x address looks like another peer). Without pool the request goes on a fresh
    connection with `Connection: close`; with pool (a dict) the connection to (addr, source) is
    kept and reused like a browser's, and a fresh one is opened when the server has closed it.
    Returns Response; its `reused` says whether it came on a kept connection."""
    key = (addr, source)
    sock = pool.get(key) if pool is not None else None
    if sock is not None:
        try:
            return _exchange_on(sock, addr, method, target, headers, body, pool, key, True)
        except _StaleConnection:
            pass
    try:
        if addr.startswith("unix:"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(addr[5:])
            except OSError:
                sock.close()
                raise
        else:
            host, port = addr.rsplit(":", 1)
            sock = socket.create_connection((host, int(port)), timeout=timeout,
                                            source_address=(source, 0) if source else None)
    except OSError as e:
        raise CaseError("cannot connect to %s: %s" % (addr, e))
    if pool is not None:
        pool[key] = sock
    try:
        return _exchange_on(sock, addr, method, target, headers, body, pool, key, False)
    except _StaleConnection as e:
        raise CaseError("%s %s to %s: connection closed without a response (%s)" % (
            method, target, addr, e))


class _StaleConnection(Exception):
    pass


def _exchange_on(sock, addr, method, target, headers, body, pool, key, reused):
    names = {n.lower() for n, _ in headers}
    lines = ["%s %s HTTP/1.1" % (method, target)]
    if "host" not in names:
        lines.append("Host: %s" % ("localhost" if addr.startswith("unix:") else addr))
    lines += ["%s: %s" % (n, v) for n, v in headers]
    if body is not None and "content-length" not in names:
        lines.append("Content-Length: %d" % len(body))
    if "connection" not in names and pool is None:
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
    keep = False
    try:
        send_error = None
        try:
            sock.sendall(head)
            if body:
                sock.sendall(body)
        except OSError as e:
            if reused:
                raise _StaleConnection(str(e))
            # A server may answer (e.g. 413) and close before reading the whole body; the
            # response can still be read.
            send_error = e
        resp = http.client.HTTPResponse(sock, method=method)
        try:
            resp.begin()
            data = resp.read()
        except (http.client.RemoteDisconnected, ConnectionResetError) as e:
            if reused:
                raise _StaleConnection(str(e))
            extra = " (sending failed first: %s)" % send_error if send_error else ""
            raise CaseError("%s %s to %s: no valid response: %r%s" % (method, target, addr, e,
                                                                       extra))
        except (OSError, http.client.HTTPException) as e:
            extra = " (sending failed first: %s)" % send_error if send_error else ""
            raise CaseError("%s %s to %s: no valid response: %r%s" % (method, target, addr, e,
                                                                       extra))
        keep = pool is not None and not resp.will_close and send_error is None
        r = Response(resp.status, resp.reason, list(resp.getheaders()), data)
        r.reused = reused
        enc = (r.header("Content-Encoding") or "").strip().lower()
        if enc == "gzip" and data:
            # Body assertions compare the identity representation (OMA XDM Core §5.1; RFC 9110 §8.4.1.3); the header itself
            # stays visible to header assertions.
            try:
                r.body = gzip.decompress(data)
                r.wire_body = data
            except (OSError, EOFError) as e:
                raise CaseError("%s %s: Content-Encoding: gzip body does not decompress: %s"
                                % (method, target, e))
        return r
    finally:
        if not keep:
            sock.close()
            if pool is not None and pool.get(key) is sock:
                del pool[key]


def parse_challenges(values):
    """Parses WWW-Authenticate header values into [(scheme, {param: value})], in order. Handles
    several challenges in one header line and one challenge per line."""
    out = []
    for text in values:
        i, n = 0, len(text)
        current = None
        while i < n:
            while i < n and text[i] in " \t,":
                i += 1
            if i >= n:
                break
            m = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+").match(text, i)
            if not m:
                raise CaseError("unparsable WWW-Authenticate: %r" % text)
            token = m.group(0)
            j = m.end()
            k = j
            while k < n and text[k] in " \t":
                k += 1
            if k < n and text[k] == "=":
                # auth-param
                k += 1
                while k < n and text[k] in " \t":
                    k += 1
                if k < n and text[k] == '"':
                    k += 1
                    val = []
                    while k < n and text[k] != '"':
                        if text[k] == "\\" and k + 1 < n:
                            k += 1
                        val.append(text[k])
                        k += 1
                    k += 1
                    value = "".join(val)
                else:
                    m2 = re.compile(r"[^,\s]*").match(text, k)
                    value = m2.group(0)
                    k = m2.end()
                if current is None:
                    raise CaseError("auth-param before scheme in %r" % text)
                current[1][token.lower()] = value
                i = k
            else:
                current = (token, {})
                out.append(current)
                i = j
    return out


def digest_hash(alg, text):
    a = alg.upper()
    if a == "MD5":
        return hashlib.md5(text.encode("utf-8")).hexdigest()
    if a == "SHA-256":
        return hashlib.sha256(text.encode("utf-8")).hexdigest()
    raise CaseError("unsupported digest algorithm %s" % alg)


class DigestUser:
    """Client-side Digest state of one user, kept across the requests of a case like a real
    client: the nonce is reused with an increasing nc until the server refuses it."""

    def __init__(self, label, uri, password):
        self.label = label
        self.uri = uri
        self.password = password
        self.challenge = None  # params dict of the chosen challenge
        self.algorithm = None
        self.nc = 0
        self.last_authorization = None

    def adopt(self, resp, algorithm):
        chals = [p for s, p in parse_challenges(resp.header_values("WWW-Authenticate"))
                 if s.lower() == "digest"]
        if not chals:
            raise CaseError("401 without a Digest challenge:\n%s" % resp.summary())
        chosen = None
        for p in chals:
            alg = p.get("algorithm", "MD5")
            if algorithm is None or alg.upper() == algorithm.upper():
                chosen = p
                break
        if chosen is None:
            raise CaseError("no Digest challenge with algorithm=%s among %s" % (
                algorithm, [p.get("algorithm", "MD5") for p in chals]))
        qops = [q.strip() for q in chosen.get("qop", "").split(",")]
        if "auth" not in qops:
            raise CaseError("Digest challenge without qop=auth: %s" % chosen)
        if "nonce" not in chosen or "realm" not in chosen:
            raise CaseError("Digest challenge without nonce or realm: %s" % chosen)
        self.challenge = chosen
        self.algorithm = chosen.get("algorithm", "MD5")
        self.nc = 0

    def authorization(self, method, uri, password, algorithm=None):
        """algorithm: hash and label the answer with this one instead of the challenge's (a
        client using an algorithm that was not offered)."""
        c = self.challenge
        self.nc += 1
        nc = "%08x" % self.nc
        cnonce = os.urandom(8).hex()
        alg = algorithm or self.algorithm
        ha1 = digest_hash(alg, "%s:%s:%s" % (self.label, c["realm"], password))
        ha2 = digest_hash(alg, "%s:%s" % (method, uri))
        response = digest_hash(alg, "%s:%s:%s:%s:auth:%s" % (ha1, c["nonce"], nc, cnonce, ha2))
        parts = ['username="%s"' % self.label, 'realm="%s"' % c["realm"],
                 'nonce="%s"' % c["nonce"], 'uri="%s"' % uri, "algorithm=%s" % alg, "qop=auth",
                 "nc=%s" % nc, 'cnonce="%s"' % cnonce, 'response="%s"' % response]
        if "opaque" in c:
            parts.append('opaque="%s"' % c["opaque"])
        value = "Digest " + ", ".join(parts)
        info = {"ha1": ha1, "nonce": c["nonce"], "nc": nc, "cnonce": cnonce, "uri": uri,
                "algorithm": alg}
        return value, info


# --------------------------------------------------------------------------------------------
# Case files

def subst(text, variables, lineno):
    def rep(m):
        k = m.group(1)
        if k not in variables:
            raise CaseError("line %d: undefined variable ${%s}" % (lineno, k))
        return variables[k]
    return VAR_RE.sub(rep, text)


OPS = ("~:", "!~:", "*:", "->", "!=:")


class Assertion:
    """One `<` line: a subject (status, header, @directive) and an operator with its value."""

    def __init__(self, lineno, text, heredoc=None):
        self.lineno = lineno
        self.text = text
        self.heredoc = heredoc
        toks = [(m.group(0), m.start(), m.end()) for m in re.finditer(r"\S+", text)]
        if not toks:
            raise ParseError("line %d: empty assertion" % lineno)
        if len(toks) == 1 and re.fullmatch(r"\d{3}(\|\d{3})*", toks[0][0]):
            self.subject = ["@status"]
            self.op = ":"
            self.value = toks[0][0]
            return
        subject = []
        self.op = None
        self.value = None
        for idx, (tok, start, end) in enumerate(toks):
            if idx > 0 and tok in OPS:
                self.op = tok
                self.value = text[end:][1:] if text[end:].startswith(" ") else text[end:]
                break
            if idx > 0 and tok == "absent" and idx == len(toks) - 1:
                self.op = "absent"
                break
            if tok.endswith(":") and tok not in OPS:
                subject.append(tok[:-1])
                self.op = ":"
                self.value = text[end:][1:] if text[end:].startswith(" ") else text[end:]
                break
            subject.append(tok)
        else:
            self.op = "flag"
        self.subject = subject
        head = subject[0]
        if head.startswith("@"):
            known = {"@status": 0, "@challenged": 0, "@challenges": 0, "@challenge": 2,
                     "@rspauth": 0, "@content-type": 0, "@body": 0, "@body-equals": 0,
                     "@body-equals-template": 0, "@body-equals-var": 0, "@body-contains": 0,
                     "@body-regex": 0, "@body-empty": 0, "@xml-root": 0, "@xcap-error": 0,
                     "@xml-count": 1, "@xml-attr": 2, "@xml-text": 1, "@field": 1,
                     "@reused": 0}
            if head not in known:
                raise ParseError("line %d: unknown assertion %s" % (lineno, head))
            if len(subject) - 1 != known[head]:
                raise ParseError("line %d: %s takes %d argument(s)" % (lineno, head, known[head]))
            if head == "@body-empty":
                if self.op != "flag":
                    raise ParseError("line %d: @body-empty takes no value" % lineno)
            elif self.op == "flag":
                raise ParseError("line %d: missing operator (':', '~:', '!~:', '*:', '!=:', "
                                 "'->' or 'absent')" % lineno)
        elif self.op == "flag" or len(subject) != 1:
            raise ParseError("line %d: expected 'Header: value' or 'Header OP value'" % lineno)
        if self.value is not None and (self.op in ("~:", "!~:") or head == "@body-regex"):
            try:
                re.compile(VAR_RE.sub("x", self.value))
            except re.error as e:
                raise ParseError("line %d: bad regex: %s" % (lineno, e))


class Step:
    def __init__(self, lineno, kind, args, **kw):
        self.lineno = lineno
        self.kind = kind
        self.args = args
        self.__dict__.update(kw)


class Case:
    def __init__(self, path):
        self.path = path
        self.name = os.path.splitext(os.path.basename(path))[0]
        self.deploy = None
        self.config = None  # (lineno, "text" | None, "path" | None) for the case's xdm.conf
        self.options = {}
        self.sip_trust = {}  # role -> SIP peer addresses (empty: none), from `sip-trust`
        self.users = []
        self.timeout = 60.0
        self.requires_store = None  # `requires store lmdb|postgresql`: skipped on the other
        self.ns = dict(DEFAULT_NS)
        self.steps = []
        self.parse()

    def parse(self):
        with open(self.path, "r", encoding="utf-8") as f:
            raw = f.read().split("\n")
        lines = []  # (lineno, text, heredoc)
        i = 0
        while i < len(raw):
            text = raw[i].rstrip("\r")
            lineno = i + 1
            i += 1
            stripped = text.strip()
            if not stripped or stripped.startswith("#"):
                continue
            heredoc = None
            m = re.search(r"\s<<([A-Za-z_][A-Za-z0-9_]*)$", stripped)
            if m:
                end = m.group(1)
                stripped = stripped[:m.start()].rstrip()
                body = []
                while True:
                    if i >= len(raw):
                        raise ParseError("line %d: heredoc %s not terminated" % (lineno, end))
                    l = raw[i].rstrip("\r")
                    i += 1
                    if l == end:
                        break
                    body.append(l + "\n")
                heredoc = "".join(body)
            lines.append((lineno, stripped, heredoc))

        cur = None  # the step that `<` lines attach to
        for lineno, text, heredoc in lines:
            if text.startswith(">"):
                t = text[1:].strip()
                if cur is None or cur.kind != "request" or cur.expect:
                    m = re.fullmatch(r"([A-Z]+)\s+(\S+)", t)
                    if not m:
                        raise ParseError("line %d: a request starts with '> METHOD TARGET'"
                                         % lineno)
                    cur = Step(lineno, "request", [], method=m.group(1), target=m.group(2),
                               headers=[], directives=[], expect=[])
                    self.steps.append(cur)
                elif t.startswith("@"):
                    m = re.fullmatch(r"(@[a-z-]+)(?::\s?(.*))?", t)
                    if not m:
                        raise ParseError("line %d: bad request directive" % lineno)
                    d, v = m.group(1), m.group(2)
                    if d not in ("@body", "@body-file", "@body-template", "@body-escaped",
                                 "@body-pad", "@body-list", "@auth", "@timeout", "@gzip"):
                        raise ParseError("line %d: unknown request directive %s" % (lineno, d))
                    if d == "@body" and heredoc is None:
                        raise ParseError("line %d: @body needs a heredoc (@body <<EOT)" % lineno)
                    cur.directives.append((lineno, d, v, heredoc))
                else:
                    m = re.fullmatch(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+):\s?(.*)", t)
                    if not m:
                        raise ParseError("line %d: bad request header" % lineno)
                    cur.headers.append((lineno, m.group(1), m.group(2)))
                continue
            if text.startswith("<"):
                if cur is None or cur.kind not in ("request", "await", "expect_start_failure",
                                                   "stat", "exec", "reload",
                                                   "log"):
                    raise ParseError("line %d: '<' without a request, await, exec, reload, "
                                     "expect-start-failure or stat" % lineno)
                cur.expect.append(Assertion(lineno, text[1:].strip(), heredoc))
                continue
            cur = None
            words = shlex.split(text, comments=False)
            kw = words[0]
            args = words[1:]
            if kw == "deploy":
                bad = [a for a in args if a not in ALL_PROCS]
                if args == ["none"]:
                    self.deploy = []
                elif bad or not args:
                    raise ParseError("line %d: deploy takes some of %s, or none"
                                     % (lineno, ALL_PROCS))
                else:
                    self.deploy = args
            elif kw in ("config", "config-file"):
                if self.config is not None:
                    raise ParseError("line %d: the configuration is already given" % lineno)
                if kw == "config" and (args or heredoc is None):
                    raise ParseError("line %d: config <<EOT (the file's lines follow)" % lineno)
                if kw == "config-file" and len(args) != 1:
                    raise ParseError("line %d: config-file PATH" % lineno)
                self.config = (lineno, heredoc if kw == "config" else None,
                               args[0] if kw == "config-file" else None)
            elif kw == "exec":
                if not args or args[0] not in ALL_PROCS:
                    raise ParseError("line %d: exec PROC [ARGS...]" % lineno)
                cur = Step(lineno, "exec", args, expect=[])
                self.steps.append(cur)
            elif kw == "option":
                if len(args) != 2 or args[0] not in ALL_PROCS or "=" not in args[1]:
                    raise ParseError("line %d: option PROC KEY=VALUE" % lineno)
                self.options.setdefault(args[0], []).append(args[1])
            elif kw == "sip-trust":
                if len(args) < 2 or args[0] not in XDMS_ROLES or \
                        ("none" in args[1:] and len(args) != 2):
                    raise ParseError("line %d: sip-trust XDMS-ROLE none|ADDRESS..." % lineno)
                self.sip_trust[args[0]] = [a for a in args[1:] if a != "none"]
            elif kw == "user":
                if len(args) not in (3, 4) or (len(args) == 4 and args[3] != "unregistered"):
                    raise ParseError("line %d: user LABEL SIP-URI PASSWORD [unregistered]"
                                     % lineno)
                self.users.append((args[0], args[1], args[2], len(args) == 3))
            elif kw == "timeout":
                self.timeout = float(args[0])
            elif kw == "requires":
                if len(args) != 2 or args[0] != "store" or args[1] not in STORES:
                    raise ParseError("line %d: requires store %s" % (lineno, "|".join(STORES)))
                self.requires_store = args[1]
            elif kw == "ns":
                if len(args) != 2:
                    raise ParseError("line %d: ns PREFIX URI" % lineno)
                self.ns[args[0]] = args[1]
            elif kw == "via":
                self.steps.append(Step(lineno, "via", args, **parse_via(lineno, args)))
            elif kw == "set":
                if len(args) < 2:
                    raise ParseError("line %d: set VAR VALUE" % lineno)
                self.steps.append(Step(lineno, "set", args))
            elif kw in ("restart", "kill", "stop", "start"):
                if len(args) != 1 or args[0] not in ALL_PROCS:
                    raise ParseError("line %d: %s PROC" % (lineno, kw))
                self.steps.append(Step(lineno, kw, args))
            elif kw == "keepalive":
                if args not in (["on"], ["off"]):
                    raise ParseError("line %d: keepalive on|off" % lineno)
                self.steps.append(Step(lineno, "keepalive", args))
            elif kw == "sleep":
                self.steps.append(Step(lineno, "sleep", [float(args[0])]))
            elif kw == "subscribe":
                if len(args) < 2 or args[1] not in XDMS_ROLES:
                    raise ParseError("line %d: subscribe NAME XDMS-ROLE ARGS..." % lineno)
                self.steps.append(Step(lineno, "subscribe", args))
            elif kw == "await":
                if len(args) < 2:
                    raise ParseError("line %d: await NAME EVENT [timeout=S]" % lineno)
                cur = Step(lineno, "await", args, expect=[])
                self.steps.append(cur)
            elif kw == "expect-start-failure":
                if not args or args[0] not in ALL_PROCS or \
                        any("=" not in a for a in args[1:]):
                    raise ParseError("line %d: expect-start-failure PROC [KEY=VALUE...]" % lineno)
                cur = Step(lineno, "expect_start_failure", args, expect=[])
                self.steps.append(cur)
            elif kw == "stat":
                if len(args) != 1:
                    raise ParseError("line %d: stat PATH" % lineno)
                cur = Step(lineno, "stat", args, expect=[])
                self.steps.append(cur)
            elif kw == "rewrite-config":
                if args or heredoc is None:
                    raise ParseError("line %d: rewrite-config <<EOT (the new lines follow)"
                                     % lineno)
                self.steps.append(Step(lineno, "rewrite_config", args, text=heredoc))
            elif kw == "log":
                if len(args) != 1 or args[0] not in ALL_PROCS:
                    raise ParseError("line %d: log PROC" % lineno)
                cur = Step(lineno, "log", args, expect=[])
                self.steps.append(cur)
            elif kw == "reload":
                if len(args) != 1 or args[0] not in ALL_PROCS:
                    raise ParseError("line %d: reload PROC" % lineno)
                cur = Step(lineno, "reload", args, expect=[])
                self.steps.append(cur)
            elif kw == "run":
                if not args or args[0] not in BUILTINS:
                    raise ParseError("line %d: run one of %s" % (lineno, sorted(BUILTINS)))
                self.steps.append(Step(lineno, "run", args))
            else:
                raise ParseError("line %d: unknown statement %r" % (lineno, kw))
        for s in self.steps:
            if s.kind == "request" and not s.expect:
                raise ParseError("line %d: request without any '<' expectation" % s.lineno)


def parse_via(lineno, args):
    """via proxy [as LABEL] [algorithm=ALG] | via ROLE [socket|tcp] [from ADDR] [as SIP-URI]
    | via PROC admin (its admin listener: /metrics, /healthz, /readyz)

    To an XDMS a request with an identity (`as`) goes over its UNIX-domain socket, like the
    proxy's, unless `tcp` or `from` is given; without one it goes over TCP unless `socket`."""
    if not args or args[0] not in ALL_PROCS:
        raise ParseError("line %d: via PROC [socket|tcp] [from ADDR] [as WHO] [algorithm=ALG]"
                         % lineno)
    out = {"dest": args[0], "who": None, "algorithm": None, "source": None, "transport": None}
    rest = args[1:]
    while rest:
        if rest[0] in ("socket", "tcp") and args[0] in XDMS_ROLES:
            out["transport"] = rest[0]
            rest = rest[1:]
        elif rest[0] == "admin":
            out["transport"] = "admin"
            rest = rest[1:]
        elif rest[0] == "as" and len(rest) >= 2:
            out["who"] = rest[1]
            rest = rest[2:]
        elif rest[0] == "from" and len(rest) >= 2:
            if not re.fullmatch(r"127\.\d+\.\d+\.\d+", rest[1]):
                raise ParseError("line %d: 'from' takes a 127.x.y.z address" % lineno)
            out["source"] = rest[1]
            rest = rest[2:]
        elif rest[0].startswith("algorithm="):
            out["algorithm"] = rest[0].split("=", 1)[1]
            rest = rest[1:]
        else:
            raise ParseError("line %d: unexpected %r in via" % (lineno, rest[0]))
    if out["transport"] == "socket" and out["source"]:
        raise ParseError("line %d: 'from' needs TCP, not the socket" % lineno)
    if out["transport"] is None and args[0] in XDMS_ROLES:
        out["transport"] = "socket" if out["who"] is not None and not out["source"] else "tcp"
    return out


# --------------------------------------------------------------------------------------------
# Execution

class CaseRun:
    def __init__(self, runner, case):
        self.runner = runner
        self.case = case
        self.dep = None
        self.vars = {}
        self.users = {}
        self.via = None
        self.transcript = []
        self.deadline = None
        self.pool = None  # kept-alive connections when `keepalive on`

    def log(self, text):
        self.transcript.append(text)

    def file_path(self, name, lineno):
        for base in (os.path.dirname(self.case.path), HERE, SOURCE_ROOT):
            p = os.path.join(base, name)
            if os.path.exists(p):
                return p
        raise CaseError("line %d: file not found: %s" % (lineno, name))

    def read_file(self, name, lineno):
        with open(self.file_path(name, lineno), "rb") as f:
            return f.read()

    def s(self, text, lineno):
        return subst(text, self.vars, lineno)

    def run(self):
        case = self.case
        try:
            self.dep = Deployment(self.runner, case)
        except (CaseError, OSError) as e:
            return ["cannot prepare the deployment: %s" % e]
        self.deadline = time.monotonic() + case.timeout * self.runner.time_scale
        self.vars.update(self.dep.vars())
        failures = []
        try:
            for label, uri, pw, register in case.users:
                self.users[label] = DigestUser(label, uri, pw)
                if register:
                    self.dep.add_user(label, uri, pw)
            for name, opts in case.options.items():
                self.dep.procs[name].options += [subst(o, self.dep.vars(), 0) for o in opts]
            if case.config is not None:
                lineno, text, path = case.config
                data = text.encode("utf-8") if text is not None else self.read_file(path, lineno)
                with open(self.dep.config, "wb") as f:
                    f.write(data)
            # xdm-sipua plays the SIP proxy in front (it sends P-Asserted-Identity from
            # 127.0.0.1): an XDMS it subscribes to trusts that address, unless the case says
            # otherwise with `sip-trust` or its own sip_trusted_peer option.
            for role, addrs in case.sip_trust.items():
                self.dep.procs[role].options += ["sip_trusted_peer=" + a for a in addrs]
            for role in {s.args[1] for s in case.steps if s.kind == "subscribe"}:
                if role not in case.sip_trust and not any(
                        o.startswith("sip_trusted_peer=") for o in case.options.get(role, [])):
                    self.dep.procs[role].options.append("sip_trusted_peer=" + LOOPBACK)
            deploy = case.deploy if case.deploy is not None else list(ALL_PROCS)
            # XDMSs first: the proxy may probe them at start.
            for name in XDMS_ROLES + ("proxy",):
                if name in deploy:
                    self.dep.procs[name].start()
            for step in case.steps:
                if time.monotonic() > self.deadline:
                    raise CaseError("case timeout (%.0fs) before line %d"
                                    % (case.timeout * self.runner.time_scale, step.lineno))
                getattr(self, "step_" + step.kind)(step)
                self.dep.check_alive()
        except CaseError as e:
            failures.append(str(e))
        except Exception as e:  # a runner bug must not hide the other cases
            import traceback
            failures.append("runner error: %r\n%s" % (e, traceback.format_exc()))
        finally:
            self.close_pool()
            failures += self.dep.shutdown()
            failures += self.dep.sanitizer_reports()
        return failures

    # --- steps

    def step_via(self, step):
        if step.dest not in (self.case.deploy if self.case.deploy is not None else ALL_PROCS):
            raise CaseError("line %d: via %s, which is not deployed" % (step.lineno, step.dest))
        if step.dest == "proxy" and step.who is not None and step.who not in self.users:
            raise CaseError("line %d: unknown user %s" % (step.lineno, step.who))
        self.via = step

    def step_set(self, step):
        self.vars[step.args[0]] = self.s(" ".join(step.args[1:]), step.lineno)

    def step_keepalive(self, step):
        if step.args[0] == "on":
            if self.pool is None:
                self.pool = {}
        else:
            self.close_pool()

    def close_pool(self):
        if self.pool:
            for sock in self.pool.values():
                sock.close()
        self.pool = None

    def step_sleep(self, step):
        time.sleep(step.args[0] * self.runner.time_scale)

    def step_restart(self, step):
        p = self.dep.procs[step.args[0]]
        msg = p.stop()
        if msg:
            raise CaseError("line %d: %s" % (step.lineno, msg))
        p.start()

    def step_stop(self, step):
        msg = self.dep.procs[step.args[0]].stop()
        if msg:
            raise CaseError("line %d: %s" % (step.lineno, msg))

    def step_kill(self, step):
        self.dep.procs[step.args[0]].stop(signal.SIGKILL)

    def step_start(self, step):
        self.dep.procs[step.args[0]].start()

    def step_subscribe(self, step):
        name, role = step.args[0], step.args[1]
        if name in self.dep.uas:
            raise CaseError("line %d: subscriber %s already exists" % (step.lineno, name))
        args = [self.s(a, step.lineno) for a in step.args[2:]]
        self.dep.uas[name] = SipUA(self.dep, name, self.dep.procs[role], args)
        self.log("line %d: subscribe %s: %s" % (step.lineno, name,
                                                 " ".join(self.dep.uas[name].argv)))

    def step_await(self, step):
        name, kind = step.args[0], step.args[1]
        timeout = 10.0
        for a in step.args[2:]:
            if a.startswith("timeout="):
                timeout = float(a.split("=", 1)[1])
        if name not in self.dep.uas:
            raise CaseError("line %d: no subscriber %s" % (step.lineno, name))
        try:
            ev = self.dep.uas[name].take(kind, timeout * self.runner.time_scale)
        except CaseError as e:
            raise CaseError("line %d: %s" % (step.lineno, e))
        self.log("line %d: event %s" % (step.lineno, json.dumps(ev)))
        for a in step.expect:
            self.check(a, event=ev)

    def step_expect_start_failure(self, step):
        """The process, started with the case's options plus the given ones, must exit non-zero
        by itself; `<` lines then check `@field exit` and the output as `@body`."""
        proc = self.dep.procs[step.args[0]]
        extra = [self.s(a, step.lineno) for a in step.args[1:]]
        rc, text = proc.start_expect_failure(extra)
        self.log("line %d: %s exited with %s\n%s" % (step.lineno, proc.name, describe_rc(rc),
                                                     indent(text.rstrip("\n"))))
        if rc == 0 or rc < 0:
            raise CaseError("line %d: %s exited with %s; expected a start failure (non-zero "
                            "exit)\n%s" % (step.lineno, proc.name, describe_rc(rc), tail(
                                proc.logs[-1])))
        ev = {"event": "exit", "exit": str(rc), "body": text}
        for a in step.expect:
            self.check(a, event=ev)

    def step_stat(self, step):
        """`<` lines check `@field type` (socket, directory, file, missing, other) and
        `@field mode` (permission bits in octal, e.g. 0600) of PATH, not following links."""
        import stat as st
        path = self.s(step.args[0], step.lineno)
        try:
            info = os.lstat(path)
            mode = info.st_mode
            kind = ("socket" if st.S_ISSOCK(mode) else "directory" if st.S_ISDIR(mode)
                    else "file" if st.S_ISREG(mode) else "other")
            ev = {"event": "stat", "type": kind, "mode": "%04o" % st.S_IMODE(mode)}
        except FileNotFoundError:
            ev = {"event": "stat", "type": "missing"}
        self.log("line %d: stat %s: %s" % (step.lineno, path, json.dumps(ev)))
        for a in step.expect:
            self.check(a, event=ev)

    def step_exec(self, step):
        """Runs a process's command line (as `start` would) plus ARGS and waits for its exit; the
        `<` lines check the event fields exit, stdout and stderr."""
        proc = self.dep.procs[step.args[0]]
        argv = proc.argv() + [self.s(a, step.lineno) for a in step.args[1:]]
        if not os.path.exists(argv[0]):
            raise CaseError("binary not found: %s" % argv[0])
        os.makedirs(proc.data, exist_ok=True)
        n = len(self.dep.extra_logs) + 1
        log = os.path.join(self.dep.tmp, "exec-%s.%d.log" % (proc.name, n))
        self.dep.extra_logs.append(log)
        limit = 10 * self.runner.time_scale
        try:
            r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                               cwd=self.dep.tmp, env=self.runner.env, timeout=limit)
            rc, out, err = r.returncode, r.stdout, r.stderr
        except subprocess.TimeoutExpired as e:
            rc, out, err = None, e.stdout or b"", e.stderr or b""
        with open(log, "wb") as f:
            f.write(("# " + " ".join(shlex.quote(a) for a in argv) + "\n").encode())
            f.write(out + err + ("# exit %s\n" % rc).encode())
        ev = {"event": "exit", "exit": str(rc), "stdout": out.decode("utf-8", "replace"),
              "stderr": err.decode("utf-8", "replace")}
        self.log("line %d: exec %s: %s" % (step.lineno, " ".join(argv), json.dumps(ev)))
        if rc is None:
            raise CaseError("line %d: %s did not exit within %.0fs (it started?)\n%s"
                            % (step.lineno, proc.name, limit, tail(log)))
        for a in step.expect:
            self.check(a, event=ev)

    def step_rewrite_config(self, step):
        """Replaces the case's xdm.conf while the processes run (for `reload`)."""
        with open(self.dep.config, "w") as f:
            f.write(self.s(step.text, step.lineno))

    def step_log(self, step):
        """The `<` lines check what the process has logged since it (last) started as `@body`,
        one line per line, each without its time stamp."""
        proc = self.dep.procs[step.args[0]]
        text = read_bytes(proc.logs[-1]).decode("utf-8", "replace").split("\n", 1)[-1]
        body = "".join((l.split(" ", 1)[1] if " " in l else l) + "\n"
                       for l in text.split("\n") if l)
        ev = {"event": "log", "body": body}
        for a in step.expect:
            self.check(a, event=ev)

    def step_reload(self, step):
        """SIGHUP, then waits (10 s) for the process to log the outcome: a line with
        "configuration reloaded" or "reload refused". The `<` lines check the lines it logged
        meanwhile as `@body`, each without its time stamp."""
        proc = self.dep.procs[step.args[0]]
        if not proc.running():
            raise CaseError("line %d: reload %s, which is not running" % (step.lineno, proc.name))
        log = proc.logs[-1]
        start = len(read_bytes(log))
        proc.popen.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10 * self.runner.time_scale
        while True:
            new = read_bytes(log)[start:].decode("utf-8", "replace")
            done = [l for l in new.split("\n")
                    if "configuration reloaded" in l or "reload refused" in l]
            if done and new.endswith("\n"):
                break
            if time.monotonic() > deadline or not proc.running():
                raise CaseError("line %d: %s logged no reload outcome within 10 s\n%s"
                                % (step.lineno, proc.name, tail(log)))
            time.sleep(0.05)
        lines = [l.split(" ", 1)[1] if " " in l else l for l in new.split("\n") if l]
        body = "".join(l + "\n" for l in lines)
        self.log("line %d: reload %s:\n%s" % (step.lineno, proc.name, indent(body.rstrip())))
        ev = {"event": "reload", "body": body}
        for a in step.expect:
            self.check(a, event=ev)

    def step_run(self, step):
        BUILTINS[step.args[0]](self, step)

    def step_request(self, step):
        ln = step.lineno
        if self.via is None:
            raise CaseError("line %d: no 'via' before the first request" % ln)
        method = step.method
        target = self.s(step.target, ln)
        headers = [(n, self.s(v, ln)) for _, n, v in step.headers]
        body = None
        auth_mode = {}
        timeout = 15.0
        gzip_body = False
        for dl, d, v, heredoc in step.directives:
            if d == "@body":
                body = self.s(heredoc, dl).encode("utf-8")
            elif d == "@body-file":
                body = self.read_file(v.strip(), dl)
            elif d == "@body-template":
                body = self.s(self.read_file(v.strip(), dl).decode("utf-8"), dl).encode("utf-8")
            elif d == "@body-escaped":
                body = codecs.escape_decode(self.s(v, dl).encode("utf-8"))[0]
            elif d == "@body-pad":
                parts = v.split()
                base = self.read_file(parts[0], dl)
                size = int(parts[1])
                body = pad_xml(base, size, dl)
            elif d == "@body-list":
                parts = self.s(v, dl).split()
                body = big_list(int(parts[0]))
                if len(parts) > 1:
                    body = pad_xml(body, int(parts[1]), dl)
                self.vars["generated"] = body.decode("utf-8")
            elif d == "@auth":
                for tok in v.replace(",", " ").split():
                    if "=" in tok:
                        k, val = tok.split("=", 1)
                        auth_mode[k] = self.s(val, dl)
                    else:
                        auth_mode[tok] = True
                unknown = set(auth_mode) - {"none", "replay", "no-retry", "password",
                                            "algorithm", "uri", "hash"}
                if unknown:
                    raise CaseError("line %d: unknown @auth option(s) %s" % (dl, sorted(unknown)))
            elif d == "@timeout":
                timeout = float(v)
            elif d == "@gzip":
                gzip_body = True
        if method in ("PUT", "POST") and body is None:
            body = b""
        if gzip_body:
            body = gzip.compress(body or b"")
            headers = headers + [("Content-Encoding", "gzip")]
        via = self.via
        if getattr(via, "transport", None) == "admin":
            resp = self.send(self.dep.procs[via.dest], method, target, headers, body, timeout)
        elif via.dest == "proxy":
            resp = self.send_proxy(via, method, target, headers, body, auth_mode, timeout)
        else:
            if via.who is not None:
                headers = [("X-3GPP-Asserted-Identity", '"%s"' % self.s(via.who, ln))] + headers
            resp = self.send(self.dep.procs[via.dest], method, target, headers, body, timeout)
        self.log("line %d: %s %s via %s%s%s%s\n%s" % (
            ln, method, target, via.dest,
            (" (%s)" % via.transport) if getattr(via, "transport", None) else "",
            (" as " + via.who) if via.who else "",
            " (kept connection)" if resp.reused else "", indent(resp.summary())))
        self.last = resp
        for a in step.expect:
            self.check(a, resp=resp, req_target=target)

    def send(self, proc, method, target, headers, body, timeout):
        source = self.via.source if self.via is not None else None
        if not proc.running():
            # Still send: the point may be to see a refused connection, which is then reported.
            pass
        over_socket = self.via is not None and self.via.dest == proc.name and \
            getattr(self.via, "transport", None) == "socket"
        addr = proc.socket_addr if over_socket else proc.http_addr
        if self.via is not None and getattr(self.via, "transport", None) == "admin":
            addr = "%s:%d" % (LOOPBACK, proc.metrics_port)
        try:
            return http_exchange(addr, method, target, headers, body,
                                 timeout * self.runner.time_scale, source, self.pool)
        except CaseError as e:
            died = proc.unexpected_death()
            raise CaseError(str(e) + ("\n" + died if died else ""))

    def send_proxy(self, via, method, target, headers, body, mode, timeout):
        proxy = self.dep.procs["proxy"]
        if via.who is None or mode.get("none"):
            return self.send(proxy, method, target, headers, body, timeout)
        user = self.users[via.who]
        if mode.get("replay"):
            if user.last_authorization is None:
                raise CaseError("@auth: replay before any authorized request")
            return self.send(proxy, method, target,
                             headers + [("Authorization", user.last_authorization)], body,
                             timeout)
        algorithm = mode.get("algorithm") or via.algorithm
        password = mode.get("password") or user.password
        digest_uri = mode.get("uri") or target
        hash_alg = mode.get("hash")
        challenged = False
        if user.challenge is not None and (algorithm is None or
                                           user.algorithm.upper() == algorithm.upper()):
            value, info = user.authorization(method, digest_uri, password, hash_alg)
            resp = self.send(proxy, method, target, headers + [("Authorization", value)], body,
                             timeout)
            if resp.status != 401:
                user.last_authorization = value
                resp.auth = info
                return resp
            challenged = True
            if "WWW-Authenticate".lower() in (n.lower() for n, _ in resp.headers):
                user.adopt(resp, algorithm)
            if mode.get("no-retry"):
                resp.challenged = True
                return resp
        else:
            resp = self.send(proxy, method, target, headers, body, timeout)
            if resp.status != 401:
                return resp
            challenged = True
            user.adopt(resp, algorithm)
        value, info = user.authorization(method, digest_uri, password, hash_alg)
        resp = self.send(proxy, method, target, headers + [("Authorization", value)], body,
                         timeout)
        resp.challenged = challenged
        if resp.status != 401:
            user.last_authorization = value
            resp.auth = info
        elif resp.header_values("WWW-Authenticate"):
            try:
                user.adopt(resp, algorithm)
            except CaseError:
                pass
        return resp

    # --- assertions

    def check(self, a, resp=None, event=None, req_target=None):
        ln = a.lineno
        head = a.subject[0]
        where = "line %d (%s)" % (ln, a.text if len(a.text) < 120 else a.text[:117] + "...")

        def fail(msg):
            raise CaseError("%s: %s" % (where, msg))

        if event is not None:
            body = event.get("body")
            body = body.encode("utf-8") if isinstance(body, str) else None
        else:
            body = resp.body

        # Subjects with their own semantics.
        if head == "@body-equals" or head == "@body-equals-template" or head == "@body-equals-var":
            if a.heredoc is not None:
                expected = self.s(a.heredoc, ln).encode("utf-8")
            elif head == "@body-equals":
                expected = self.read_file(a.value.strip(), ln)
            elif head == "@body-equals-template":
                expected = self.s(self.read_file(a.value.strip(), ln).decode("utf-8"),
                                  ln).encode("utf-8")
            else:
                var = a.value.strip()
                if var not in self.vars:
                    fail("undefined variable %s" % var)
                expected = self.vars[var].encode("utf-8")
            if body is None:
                fail("no body")
            if body != expected:
                fail("body differs from expected (%d vs %d bytes): %s" % (
                    len(body), len(expected), first_difference(body, expected)))
            return
        if head == "@body-empty":
            if body:
                fail("expected an empty body, got %d bytes: %r" % (len(body), body[:200]))
            return
        if head == "@xcap-error":
            cond = self.s(a.value.strip(), ln)
            root = self.xml(body, fail)
            ns = DEFAULT_NS["xe"]
            if root.tag != "{%s}xcap-error" % ns:
                fail("root element is %s, not {%s}xcap-error" % (root.tag, ns))
            kids = [c for c in root if isinstance(c.tag, str)]
            if len(kids) != 1:
                fail("xcap-error has %d child elements, expected exactly 1" % len(kids))
            if kids[0].tag != "{%s}%s" % (ns, cond):
                fail("condition is %s, expected {%s}%s" % (kids[0].tag, ns, cond))
            return

        # Everything else: compute the actual value, then apply the operator.
        actual = None
        if head == "@status":
            actual = str(event.get("status")) if event is not None else str(resp.status)
            allowed = a.value.split("|")
            if actual not in allowed:
                fail("expected status %s, got %s" % (a.value, actual))
            return
        elif head == "@challenged":
            actual = "yes" if resp.challenged else "no"
        elif head == "@reused":
            actual = "yes" if resp.reused else "no"
        elif head == "@challenges":
            chals = parse_challenges(resp.header_values("WWW-Authenticate"))
            actual = ", ".join(p.get("algorithm", "MD5") for s, p in chals
                               if s.lower() == "digest")
        elif head == "@challenge":
            alg, param = a.subject[1], a.subject[2].lower()
            chals = [p for s, p in parse_challenges(resp.header_values("WWW-Authenticate"))
                     if s.lower() == "digest" and p.get("algorithm", "MD5").upper() == alg.upper()]
            if not chals:
                fail("no Digest challenge with algorithm=%s" % alg)
            actual = chals[0].get(param)
        elif head == "@rspauth":
            actual = self.rspauth(resp)
        elif head == "@content-type":
            ct = resp.header("Content-Type") if event is None else event.get("content_type")
            actual = ct.split(";")[0].strip().lower() if ct is not None else None
        elif head == "@body" or head == "@body-contains" or head == "@body-regex":
            actual = body.decode("utf-8", "replace") if body is not None else None
            if head == "@body-contains":
                a = clone_op(a, "*:")
            elif head == "@body-regex":
                a = clone_op(a, "~:")
        elif head == "@xml-root":
            actual = self.xml(body, fail).tag
        elif head in ("@xml-count", "@xml-attr", "@xml-text"):
            root = self.xml(body, fail)
            path = self.s(a.subject[1], ln)
            try:
                found = [root] if path == "." else root.findall(path, self.case.ns)
            except (SyntaxError, KeyError) as e:
                fail("bad path %s: %s" % (path, e))
            if head == "@xml-count":
                actual = str(len(found))
            elif not found:
                if a.op not in ("absent", "!~:"):
                    fail("no element matches %s in:\n%s" % (path, indent(body.decode(
                        "utf-8", "replace")[:1500])))
                actual = None
            elif head == "@xml-attr":
                actual = found[0].get(a.subject[2])
            else:
                actual = found[0].text or ""
        elif head == "@field":
            v = event.get(a.subject[1]) if event is not None else None
            actual = None if v is None else (v if isinstance(v, str) else json.dumps(v))
        else:
            actual = resp.header(head) if resp is not None else None
        self.apply_op(a, actual, fail)

    def apply_op(self, a, actual, fail):
        ln = a.lineno
        op = a.op
        if op == "absent":
            if actual is not None:
                fail("expected absent, got %r" % actual)
            return
        if op == "->":
            if actual is None:
                fail("nothing to capture (absent)")
            self.vars[a.value.strip()] = actual
            return
        if op == "!~:":
            if actual is not None and re.search(self.s(a.value, ln), actual):
                fail("%r matches %r" % (actual, a.value))
            return
        if actual is None:
            fail("absent")
        if a.heredoc is not None and op in (":", "*:", "!=:"):
            a = clone_op(a, op)
            a.value = a.heredoc
        if op == ":":
            expected = self.s(a.value, ln)
            if actual != expected:
                fail("expected %r, got %r" % (expected, actual))
        elif op == "!=:":
            expected = self.s(a.value, ln)
            if actual == expected:
                fail("expected a value other than %r" % expected)
        elif op == "*:":
            expected = self.s(a.value, ln)
            if expected not in actual:
                fail("%r does not contain %r" % (shorten(actual), expected))
        elif op == "~:":
            m = re.search(self.s(a.value, ln), actual, re.S)
            if not m:
                fail("%r does not match %r" % (shorten(actual), a.value))
            for k, v in m.groupdict().items():
                if v is not None:
                    self.vars[k] = v

    def xml(self, body, fail):
        if body is None or not body:
            fail("expected an XML body, got none")
        try:
            return ET.fromstring(body)
        except ET.ParseError as e:
            fail("body is not well-formed XML (%s): %r" % (e, body[:300]))

    def rspauth(self, resp):
        info = resp.auth
        if info is None:
            return None
        hv = resp.header("Authentication-Info")
        if hv is None:
            return None
        params = parse_challenges(["X " + hv])[0][1]
        ha2 = digest_hash(info["algorithm"], ":" + info["uri"])
        expected = digest_hash(info["algorithm"], "%s:%s:%s:%s:auth:%s" % (
            info["ha1"], info["nonce"], info["nc"], info["cnonce"], ha2))
        if params.get("rspauth") != expected:
            return "invalid (rspauth %s, expected %s)" % (params.get("rspauth"), expected)
        if params.get("cnonce") not in (None, info["cnonce"]) or \
                params.get("nc") not in (None, info["nc"]):
            return "invalid (cnonce/nc echo %s/%s)" % (params.get("cnonce"), params.get("nc"))
        return "valid"


def clone_op(a, op):
    b = Assertion.__new__(Assertion)
    b.__dict__.update(a.__dict__)
    if b.op == ":":
        b.op = op
    return b


def pad_xml(base, size, lineno):
    """base with an XML comment inserted before the root's closing tag, so the result is exactly
    size bytes and still well-formed (for body-size limits)."""
    i = base.rstrip().rfind(b"</")
    if i < 0:
        raise CaseError("line %d: @body-pad needs a document with a closing root tag" % lineno)
    fill = size - len(base) - len(b"<!---->")
    if fill < 0:
        raise CaseError("line %d: @body-pad size smaller than the document" % lineno)
    return base[:i] + b"<!--" + b"x" * fill + b"-->" + base[i:]


def big_list(n):
    """A resource-lists document with one list "big" of n entries (for size tests)."""
    rows = [b'<?xml version="1.0" encoding="UTF-8"?>\n'
            b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">\n<list name="big">\n']
    for i in range(n):
        rows.append(b'<entry uri="sip:user%d@example.com"><display-name>User %d</display-name>'
                    b'</entry>\n' % (i, i))
    rows.append(b"</list>\n</resource-lists>\n")
    return b"".join(rows)


def shorten(s, n=300):
    return s if len(s) <= n else s[:n] + "..."


def indent(text):
    return "\n".join("    " + l for l in text.split("\n"))


def first_difference(a, b):
    n = min(len(a), len(b))
    i = next((k for k in range(n) if a[k] != b[k]), n)
    return "first difference at byte %d: got %r, expected %r" % (i, a[max(0, i - 20):i + 40],
                                                                 b[max(0, i - 20):i + 40])


# --------------------------------------------------------------------------------------------
# Built-in scenarios that are easier to write in Python than as case lines

def commit_batches(proc):
    """The XDMS's group-commit histogram from its /metrics: {bound: commits of at most bound
    write requests (cumulative)}, with "+Inf" for all of them."""
    r = http_exchange("%s:%d" % (LOOPBACK, proc.metrics_port), "GET", "/metrics", [], None, 10)
    if r.status != 200:
        raise CaseError("GET /metrics of %s: status %d" % (proc.name, r.status))
    out = {}
    for m in re.finditer(rb'^xdm_store_commit_batch_size_bucket\{le="([^"]+)"\} (\d+)$', r.body,
                         re.M):
        out[m.group(1).decode()] = int(m.group(2))
    return out


def builtin_kill9_durability(run, step):
    """run kill9-durability ROLE [writers=N] [puts=N] [seconds=S] [kill_after=N] [cycles=N]
                              [batch_over=B]

    Concurrent writers PUT new versions of one resource-lists document each, directly to the
    XDMS over its UNIX-domain socket (identity header set). After kill_after acknowledged PUTs the
    XDMS gets SIGKILL while requests are in flight. It is restarted, and every document must read
    back as its last acknowledged version with that ETag, or as the version whose PUT was in flight
    at the kill (committed, answer lost). A 2xx is sent only after the commit is on disk
    (docs/storage.md). cycles repeats write, kill and check that many times (puts and seconds
    bound each cycle). batch_over=B: before each kill, the XDMS's group-commit histogram
    (xdm_store_commit_batch_size) must show a commit of more than B write requests, so the
    acknowledged writes shared commits when the process died."""
    ln = step.lineno
    role = step.args[1]
    opts = dict(a.split("=", 1) for a in step.args[2:])
    writers = int(opts.get("writers", 4))
    max_puts = int(opts.get("puts", 300))
    max_seconds = float(opts.get("seconds", 20))
    kill_after = int(opts.get("kill_after", 120))
    cycles = int(opts.get("cycles", 1))
    batch_over = opts.get("batch_over")
    proc = run.dep.procs[role]
    if role != "shared-list":
        raise CaseError("line %d: kill9-durability writes resource-lists; use shared-list" % ln)
    if not 1 <= cycles <= 100:
        raise CaseError("line %d: cycles must be 1..100" % ln)
    seen_etags = {}
    acked = [None] * writers     # (etag, body, n), across cycles
    for cycle in range(cycles):
        kill9_cycle(run, ln, proc, cycle, writers, max_puts, max_seconds, kill_after,
                    batch_over, acked, seen_etags)


def kill9_cycle(run, ln, proc, cycle, writers, max_puts, max_seconds, kill_after, batch_over,
                acked, seen_etags):
    """One write, kill -9, restart and check cycle of builtin_kill9_durability."""
    lock = threading.Lock()
    state = {"count": 0, "acked": 0, "stop": False, "killed": False}
    inflight = [None] * writers  # body of the PUT without an answer
    errors = []

    def uri(i):
        return "/xcap-root/resource-lists/users/sip:k9w%d@example.com/index" % i

    def ident(i):
        return '"sip:k9w%d@example.com"' % i

    def body(i, n):
        return ('<?xml version="1.0" encoding="UTF-8"?>\n'
                '<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">\n'
                '  <list name="w%d">\n    <entry uri="sip:v%d@example.com"/>\n  </list>\n'
                '</resource-lists>\n' % (i, n)).encode()

    start = time.monotonic()

    def writer(i):
        n = cycle * 1000000
        while True:
            with lock:
                if state["stop"] or state["count"] >= max_puts or \
                        time.monotonic() - start > max_seconds:
                    return
                state["count"] += 1
            n += 1
            b = body(i, n)
            inflight[i] = b
            try:
                r = http_exchange(proc.socket_addr, "PUT", uri(i),
                                  [("X-3GPP-Asserted-Identity", ident(i)),
                                   ("Content-Type", "application/resource-lists+xml")], b, 10)
            except CaseError as e:
                with lock:
                    if not state["killed"]:
                        errors.append("writer %d PUT %d before the kill: %s" % (i, n, e))
                return
            inflight[i] = None
            if r.status not in (200, 201):
                with lock:
                    errors.append("writer %d PUT %d: status %d %s" % (i, n, r.status,
                                                                     r.body[:200]))
                return
            etag = r.header("ETag")
            with lock:
                if etag is None:
                    errors.append("writer %d PUT %d: no ETag" % (i, n))
                    return
                if etag in seen_etags:
                    errors.append("ETag %s reused (writer %d PUT %d and %s)" % (
                        etag, i, n, seen_etags[etag]))
                seen_etags[etag] = "writer %d PUT %d" % (i, n)
                acked[i] = (etag, b, n)
                state["acked"] += 1

    threads = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(writers)]
    for t in threads:
        t.start()
    while True:
        with lock:
            done = state["acked"] >= kill_after or errors
        if done or not any(t.is_alive() for t in threads):
            break
        if time.monotonic() - start > max_seconds:
            break
        time.sleep(0.002)
    batches = None
    if batch_over is not None and not errors:
        batches = commit_batches(proc)  # writers still running: the kill follows at once
    with lock:
        state["killed"] = True
    proc.stop(signal.SIGKILL)
    with lock:
        state["stop"] = True
    for t in threads:
        t.join(timeout=15)
    run.log("line %d: cycle %d: kill -9 after %d acknowledged PUTs (%d sent)%s" % (
        ln, cycle + 1, state["acked"], state["count"],
        "; commits by size %s" % batches if batches is not None else ""))
    if errors:
        raise CaseError("line %d: cycle %d: %s" % (ln, cycle + 1, "; ".join(errors[:5])))
    if state["acked"] < min(kill_after, 10):
        raise CaseError("line %d: cycle %d: only %d PUTs acknowledged before the kill" % (
            ln, cycle + 1, state["acked"]))
    if batch_over is not None:
        if batch_over not in batches or "+Inf" not in batches:
            raise CaseError("line %d: /metrics has no xdm_store_commit_batch_size bucket le=\"%s\" "
                            "(%s)" % (ln, batch_over, batches))
        if batches["+Inf"] - batches[batch_over] < 1:
            raise CaseError("line %d: cycle %d: no commit of more than %s write requests among "
                            "%d commits: the writes did not share commits" % (
                                ln, cycle + 1, batch_over, batches["+Inf"]))
    proc.start()
    problems = []
    for i in range(writers):
        r = http_exchange(proc.socket_addr, "GET", uri(i),
                          [("X-3GPP-Asserted-Identity", ident(i))], None, 10)
        if acked[i] is None:
            continue
        etag, b, n = acked[i]
        if r.status == 200 and r.body == b and r.header("ETag") == etag:
            continue
        if inflight[i] is not None and r.status == 200 and r.body == inflight[i]:
            if r.header("ETag") in seen_etags:
                problems.append("writer %d: in-flight version stored with an old ETag %s" % (
                    i, r.header("ETag")))
            # committed, answer lost: the next cycle's check starts from this version
            acked[i] = (r.header("ETag"), r.body, n + 1)
            seen_etags[r.header("ETag")] = "writer %d in-flight PUT of cycle %d" % (i, cycle + 1)
            continue
        problems.append("writer %d: last acknowledged PUT %d (ETag %s) reads back as %d, ETag %s, "
                        "%s" % (i, n, etag, r.status, r.header("ETag"),
                                "same body" if r.body == b else first_difference(r.body, b)))
    # ETags are never reused, not even across a crash.
    r = http_exchange(proc.socket_addr, "PUT", uri(0),
                      [("X-3GPP-Asserted-Identity", ident(0)),
                       ("Content-Type", "application/resource-lists+xml")],
                      body(0, cycle * 1000000 + 999999), 10)
    if r.status not in (200, 201):
        problems.append("PUT after restart: status %d" % r.status)
    elif r.header("ETag") in seen_etags:
        problems.append("PUT after restart reused ETag %s of %s" % (
            r.header("ETag"), seen_etags[r.header("ETag")]))
    else:
        seen_etags[r.header("ETag")] = "PUT after restart %d" % (cycle + 1)
        acked[0] = (r.header("ETag"), body(0, cycle * 1000000 + 999999), 999999)
    if problems:
        raise CaseError("line %d: cycle %d: %s" % (ln, cycle + 1, "; ".join(problems)))


def builtin_if_match_race(run, step):
    """run if-match-race ROLE [writers=N] [rounds=N]

    N writers PUT different versions of one document at the same moment, all with If-Match of the
    same current ETag. Exactly one may win (200); every other one must get 412, and the document
    must then read back as the winner's version with the winner's ETag (RFC 4825 §8.2: the ETag
    compare happens inside the write transaction)."""
    ln = step.lineno
    role = step.args[1]
    opts = dict(a.split("=", 1) for a in step.args[2:])
    writers = int(opts.get("writers", 16))
    rounds = int(opts.get("rounds", 3))
    if role != "shared-list":
        raise CaseError("line %d: if-match-race writes resource-lists; use shared-list" % ln)
    proc = run.dep.procs[role]
    uri = "/xcap-root/resource-lists/users/sip:alice@example.com/index"
    ident = [("X-3GPP-Asserted-Identity", '"sip:alice@example.com"')]
    ctype = [("Content-Type", "application/resource-lists+xml")]

    def body(tag):
        return ('<?xml version="1.0" encoding="UTF-8"?>\n'
                '<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">'
                '<list name="%s"/></resource-lists>\n' % tag).encode()

    r = http_exchange(proc.socket_addr, "PUT", uri, ident + ctype, body("start"), 10)
    if r.status not in (200, 201) or r.header("ETag") is None:
        raise CaseError("line %d: initial PUT: %d" % (ln, r.status))
    etag = r.header("ETag")
    for rnd in range(rounds):
        barrier = threading.Barrier(writers)
        results = [None] * writers

        def writer(i):
            b = body("r%dw%d" % (rnd, i))
            try:
                barrier.wait(timeout=10)
                results[i] = (http_exchange(proc.socket_addr, "PUT", uri,
                                            ident + ctype + [("If-Match", etag)], b, 15), b)
            except (CaseError, threading.BrokenBarrierError) as e:
                results[i] = (e, b)

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        winners = []
        for i, (res, b) in enumerate(results):
            if not isinstance(res, Response):
                raise CaseError("line %d: round %d writer %d: %s" % (ln, rnd, i, res))
            if res.status == 200:
                winners.append((res, b))
            elif res.status != 412:
                raise CaseError("line %d: round %d writer %d: status %d, expected 200 or 412"
                                % (ln, rnd, i, res.status))
        if len(winners) != 1:
            raise CaseError("line %d: round %d: %d of %d conditional PUTs on ETag %s succeeded, "
                            "expected exactly 1" % (ln, rnd, len(winners), writers, etag))
        win, b = winners[0]
        g = http_exchange(proc.socket_addr, "GET", uri, ident, None, 10)
        if g.status != 200 or g.body != b or g.header("ETag") != win.header("ETag"):
            raise CaseError("line %d: round %d: document reads back as %d ETag %s, expected the "
                            "winner's version with ETag %s" % (ln, rnd, g.status,
                                                                g.header("ETag"),
                                                                win.header("ETag")))
        run.log("line %d: round %d: 1 of %d won with ETag %s" % (ln, rnd, writers,
                                                                win.header("ETag")))
        etag = win.header("ETag")


def digest_request(addr, user, method, target, headers, body, timeout):
    """The plain client flow for built-ins: preemptive with the user's nonce, one retry on 401."""
    challenged = False
    if user.challenge is not None:
        value, _ = user.authorization(method, target, user.password)
        r = http_exchange(addr, method, target, headers + [("Authorization", value)], body,
                          timeout)
        if r.status != 401:
            return r
        user.adopt(r, "SHA-256")
        challenged = True
    else:
        r = http_exchange(addr, method, target, headers, body, timeout)
        if r.status != 401:
            return r
        user.adopt(r, "SHA-256")
        challenged = True
    value, _ = user.authorization(method, target, user.password)
    r = http_exchange(addr, method, target, headers + [("Authorization", value)], body, timeout)
    r.challenged = challenged
    return r


def builtin_parallel_clients(run, step):
    """run parallel-clients proxy [clients=N] [cycles=N]

    N concurrent Digest clients (spread over the case's users, each with its own nonce) run
    `cycles` rounds of PUT (create) / GET / conditional PUT / GET / DELETE / GET on their own
    resource-lists document through the proxy. Every answer must be the expected one: a shared
    nonce table, per-thread upstream handles or buffers that are not thread-safe show up here
    (and in the sanitizer build as reports)."""
    ln = step.lineno
    opts = dict(a.split("=", 1) for a in step.args[2:])
    clients = int(opts.get("clients", 8))
    cycles = int(opts.get("cycles", 5))
    users = list(run.users.values())
    if not users:
        raise CaseError("line %d: parallel-clients needs at least one user" % ln)
    addr = run.dep.procs["proxy"].http_addr
    errors = []
    lock = threading.Lock()
    counted = [0]

    def client(i):
        base = users[i % len(users)]
        user = DigestUser(base.label, base.uri, base.password)
        uri = "/xcap-root/resource-lists/users/%s/c%d" % (user.uri, i)
        ct = [("Content-Type", "application/resource-lists+xml")]

        def doc(n):
            return ('<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists xmlns='
                    '"urn:ietf:params:xml:ns:resource-lists"><list name="c%d-%d"><entry uri='
                    '"sip:x%d@example.com"/></list></resource-lists>\n' % (i, n, n)).encode()

        def expect(what, r, status, body=None, etag=None):
            ok = r.status == status and (body is None or r.body == body) and \
                (etag is None or r.header("ETag") == etag)
            with lock:
                counted[0] += 1
                if not ok:
                    errors.append("client %d %s: status %d ETag %s body %r (expected %d%s)" % (
                        i, what, r.status, r.header("ETag"), r.body[:80], status,
                        ", ETag %s" % etag if etag else ""))
            return ok

        try:
            for n in range(cycles):
                b1, b2 = doc(2 * n), doc(2 * n + 1)
                r = digest_request(addr, user, "PUT", uri, ct, b1, 15)
                if not expect("PUT create", r, 201):
                    return
                e1 = r.header("ETag")
                if not expect("GET", digest_request(addr, user, "GET", uri, [], None, 15), 200,
                              b1, e1):
                    return
                r = digest_request(addr, user, "PUT", uri, ct + [("If-Match", e1)], b2, 15)
                if not expect("PUT If-Match", r, 200):
                    return
                e2 = r.header("ETag")
                if not expect("GET", digest_request(addr, user, "GET", uri, [], None, 15), 200,
                              b2, e2):
                    return
                if not expect("DELETE", digest_request(addr, user, "DELETE", uri,
                                                       [("If-Match", e2)], None, 15), 200):
                    return
                if not expect("GET deleted", digest_request(addr, user, "GET", uri, [], None,
                                                            15), 404):
                    return
        except CaseError as e:
            with lock:
                errors.append("client %d: %s" % (i, e))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    run.log("line %d: %d requests by %d clients" % (ln, counted[0], clients))
    if errors:
        raise CaseError("line %d: %d failure(s): %s" % (ln, len(errors), "; ".join(errors[:4])))


def builtin_store_flood(run, step):
    """run store-flood ROLE [user=XUI] [puts=N] [size=BYTES]

    One user replaces one element of its resource-lists document `puts` times with an element of
    about `size` bytes, directly at the XDMS, as fast as answers come. Every element PUT must be
    answered 200: however large the edits, the change log stays within its bounds and the store
    keeps room (run it with a small map_size). The document is created first (201)."""
    ln = step.lineno
    role = step.args[1]
    opts = dict(a.split("=", 1) for a in step.args[2:])
    user = opts.get("user", "sip:flood@example.com")
    puts = int(opts.get("puts", 40))
    size = int(opts.get("size", 600000))
    if role != "shared-list":
        raise CaseError("line %d: store-flood writes resource-lists; use shared-list" % ln)
    addr = run.dep.procs[role].socket_addr
    doc = "/xcap-root/resource-lists/users/%s/index" % user
    ident = [("X-3GPP-Asserted-Identity", '"%s"' % user)]
    r = http_exchange(addr, "PUT", doc, ident + [("Content-Type", "application/resource-lists+xml")],
                      b'<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists xmlns="urn:ietf:'
                      b'params:xml:ns:resource-lists"><list name="flood"><entry uri="sip:x@'
                      b'example.com"/></list></resource-lists>\n', 15)
    if r.status != 201:
        raise CaseError("line %d: creating %s: %d %r" % (ln, doc, r.status, r.body[:200]))
    el = doc + "/~~/resource-lists/list/entry%5B@uri=%22sip:x@example.com%22%5D"
    ct = [("Content-Type", "application/xcap-el+xml")]
    t0 = time.monotonic()
    for i in range(puts):
        body = (b'<entry uri="sip:x@example.com"><display-name>%d ' % i) + \
            b"x" * max(0, size - 80) + b"</display-name></entry>"
        r = http_exchange(addr, "PUT", el, ident + ct, body, 30)
        if r.status != 200:
            raise CaseError("line %d: element PUT %d of %d (%d bytes): %d %r" % (
                ln, i + 1, puts, len(body), r.status, r.body[:300]))
    run.log("line %d: %d element PUTs of %d bytes answered 200 in %.1fs" % (
        ln, puts, size, time.monotonic() - t0))


def builtin_fill_store(run, step):
    """run fill-store ROLE [user=XUI] [size=BYTES] [max=N]

    PUTs new resource-lists documents fill1, fill2, ... of exactly `size` bytes for one user,
    directly at the XDMS, until one is refused. Each must be 201 until then; the refusal must be
    507 with a text/plain explanation, within `max` PUTs. The number stored goes into the
    variable fill.count (at least 1). For the behaviour of a full store (run it with a small
    map_size and max_bytes_per_user=0)."""
    ln = step.lineno
    role = step.args[1]
    opts = dict(a.split("=", 1) for a in step.args[2:])
    user = opts.get("user", "sip:alice@example.com")
    size = int(opts.get("size", 700000))
    most = int(opts.get("max", 64))
    if role != "shared-list":
        raise CaseError("line %d: fill-store writes resource-lists; use shared-list" % ln)
    addr = run.dep.procs[role].socket_addr
    hdrs = [("X-3GPP-Asserted-Identity", '"%s"' % user),
            ("Content-Type", "application/resource-lists+xml")]
    body = pad_xml(b'<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists xmlns="urn:ietf:'
                   b'params:xml:ns:resource-lists"><list name="fill"/></resource-lists>\n', size,
                   ln)
    for i in range(1, most + 1):
        r = http_exchange(addr, "PUT", "/xcap-root/resource-lists/users/%s/fill%d" % (user, i),
                          hdrs, body, 30)
        if r.status == 201:
            continue
        ct = (r.header("Content-Type") or "").split(";")[0].strip()
        if r.status != 507 or ct != "text/plain" or b"Insufficient storage" not in r.body:
            raise CaseError("line %d: PUT fill%d: %d %s %r, expected 201 or 507 text/plain" % (
                ln, i, r.status, ct, r.body[:300]))
        if i == 1:
            raise CaseError("line %d: the first PUT was already refused" % ln)
        run.vars["fill.count"] = str(i - 1)
        run.log("line %d: %d documents of %d bytes stored, then 507" % (ln, i - 1, size))
        return
    raise CaseError("line %d: %d PUTs of %d bytes and no 507" % (ln, most, size))


def flood_attributes(n):
    """n distinct attributes of 7 bytes each (' Abc=""'): names of three characters, the first a
    letter, so 143 000 of them make a body of about 1 MB."""
    first = string.ascii_letters
    rest = string.ascii_letters + string.digits + "-_."
    names = (a + b + c for a in first for b in rest for c in rest if a + b + c != "uri")
    return "".join(' %s=""' % name for name, _ in zip(names, range(n)))


def builtin_attribute_flood(run, step):
    """run attribute-flood proxy [attributes=N] [bound_ms=N]

    The CPU attack on the XML parser: an element body of one <entry> with N attributes (default
    143 000, about 1 MB), PUT below the first user's document through the proxy, while the second
    user PUTs small elements into their own document at the same moment and 50 ms later (when
    the attack's body has arrived and, before the pre-scan, held the writer lock for its whole
    parse). The attack must be
    refused with 409 constraint-failure naming max_attributes within bound_ms (default 100; times
    --time-scale), the small PUTs must succeed (201) within 1 s (times --time-scale), and the
    attacker's document must be unchanged. Before the pre-scan, libxml2 spent about a minute on
    that body inside the write transaction, and every other writer waited."""
    ln = step.lineno
    opts = dict(a.split("=", 1) for a in step.args[2:])
    n_attrs = int(opts.get("attributes", 143000))
    bound = float(opts.get("bound_ms", 100)) / 1000.0 * run.runner.time_scale
    users = list(run.users.values())
    if len(users) < 2:
        raise CaseError("line %d: attribute-flood needs two users (attacker, other)" % ln)
    addr = run.dep.procs["proxy"].http_addr
    attacker, other = (DigestUser(u.label, u.uri, u.password) for u in users[:2])
    timeout = 15 * run.runner.time_scale

    def doc_uri(user):
        return "/xcap-root/resource-lists/users/%s/index" % user.uri

    def list_doc(name):
        return ('<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists xmlns='
                '"urn:ietf:params:xml:ns:resource-lists"><list name="%s"/></resource-lists>\n'
                % name).encode()

    ct_doc = [("Content-Type", "application/resource-lists+xml")]
    ct_el = [("Content-Type", "application/xcap-el+xml")]
    etags = {}
    for user, name in ((attacker, "a"), (other, "o")):
        # also fetches each user's nonce, so the timed requests go without a 401 round trip
        r = digest_request(addr, user, "PUT", doc_uri(user), ct_doc, list_doc(name), timeout)
        if r.status != 201:
            raise CaseError("line %d: setting up %s's document: %d" % (ln, user.label, r.status))
        etags[user.label] = r.header("ETag")
    sel = "/~~/resource-lists/list%5B@name=%22{}%22%5D/entry"
    attack = ('<entry uri="sip:flood@example.com"%s/>' % flood_attributes(n_attrs)).encode()
    barrier = threading.Barrier(3)
    results = {}

    def put(key, user, target, body, delay):
        try:
            barrier.wait(timeout=10)
            time.sleep(delay)
            t0 = time.monotonic()
            r = digest_request(addr, user, "PUT", target, ct_el, body, timeout)
            results[key] = (r, time.monotonic() - t0)
        except (CaseError, threading.BrokenBarrierError) as e:
            results[key] = (e, None)

    # The other user's PUTs: one together with the attack, one 50 ms later, when the attack's
    # body has long arrived (before the pre-scan it then held the writer lock).
    smalls = {"small": ("friend", 0.0), "small+50ms": ("later", 0.05)}
    threads = [threading.Thread(target=put, args=("attack", attacker,
                                                  doc_uri(attacker) + sel.format("a"), attack,
                                                  0.0))]
    for key, (who, delay) in smalls.items():
        target = doc_uri(other) + sel.format("o") + "%5B@uri=%22sip:" + who + "@example.com%22%5D"
        body = ('<entry uri="sip:%s@example.com"/>' % who).encode()
        threads.append(threading.Thread(target=put, args=(key, other, target, body, delay)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=2 * timeout + 10)
    problems = []
    for key in ["attack"] + list(smalls):
        if key not in results or not isinstance(results[key][0], Response):
            problems.append("%s PUT: %s" % (key, results.get(key, ("no answer",))[0]))
    if problems:
        raise CaseError("line %d: %s" % (ln, "; ".join(problems)))
    ra, ta = results["attack"]
    run.log("line %d: %d attributes (%d bytes): %d in %.1f ms; %s"
            % (ln, n_attrs, len(attack), ra.status, ta * 1000,
               "; ".join("%s PUT: %d in %.1f ms" % (k, results[k][0].status, results[k][1] * 1000)
                         for k in smalls)))
    body = ra.body.decode("utf-8", "replace")
    if ra.status != 409 or "<constraint-failure" not in body or "max_attributes" not in body:
        problems.append("the attack got %d, expected 409 constraint-failure naming "
                        "max_attributes:\n%s" % (ra.status, ra.summary()))
    if ta > bound:
        problems.append("the attack was answered after %.1f ms, bound %.1f ms"
                        % (ta * 1000, bound * 1000))
    for key in smalls:
        rs, ts = results[key]
        if rs.status != 201:
            problems.append("the other user's %s PUT got %d, expected 201" % (key, rs.status))
        if ts > 1.0 * run.runner.time_scale:
            problems.append("the other user's %s PUT took %.1f ms" % (key, ts * 1000))
    g = digest_request(addr, attacker, "GET", doc_uri(attacker), [], None, timeout)
    if g.status != 200 or g.body != list_doc("a") or g.header("ETag") != etags[attacker.label]:
        problems.append("the attacker's document changed: %d ETag %s"
                        % (g.status, g.header("ETag")))
    if problems:
        raise CaseError("line %d: %s" % (ln, "; ".join(problems)))


def builtin_parked_writes(run, step):
    """run parked-writes shared-list

    Parked writes (docs/performance.md): a write waiting for its commit holds no HTTP thread. The
    case gives the XDMS threads=1, write_threads=1, max_parked_writes=1 and log_level=debug. A
    helper process takes LMDB's writer lock, so a PUT cannot commit: it is parked (its "write
    parked" debug line is awaited). Meanwhile the one HTTP thread still answers a GET (the old
    version), and a second PUT gets 503 with Retry-After: 1 (the bound). Then SIGTERM: the XDMS
    keeps draining while the write waits; once the lock is released the parked PUT is answered
    200 after its commit and the XDMS exits 0; restarted, it serves the new version."""
    ln = step.lineno
    proc = run.dep.procs[step.args[1]]
    uri = "/xcap-root/resource-lists/users/sip:parked@example.com/index"
    hdrs = [("X-3GPP-Asserted-Identity", '"sip:parked@example.com"'),
            ("Content-Type", "application/resource-lists+xml")]

    def body(n):
        return ('<?xml version="1.0" encoding="UTF-8"?>\n'
                '<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">\n'
                '  <list name="v%d"/>\n</resource-lists>\n' % n).encode()

    def fail(msg):
        raise CaseError("line %d: %s" % (ln, msg))

    r = http_exchange(proc.socket_addr, "PUT", uri, hdrs, body(1), 10)
    if r.status != 201:
        fail("first PUT: status %d" % r.status)
    e1 = r.header("ETag")
    poke = os.path.join(run.dep.build, "tests", "store_poke")
    holder = subprocess.Popen([poke, proc.data, "hold"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    result = {}

    def parked_put():
        try:
            result["r"] = http_exchange(proc.socket_addr, "PUT", uri, hdrs, body(2), 30)
        except CaseError as e:
            result["e"] = str(e)

    writer = threading.Thread(target=parked_put, daemon=True)
    try:
        ready, _, _ = select.select([holder.stdout], [], [], 10)
        if not ready or holder.stdout.readline() != b"held\n":
            fail("store_poke hold did not take the writer lock")
        # Only a line written after this point is the second PUT's: the first PUT was parked
        # too (write_threads=1) and left the same line. Sending the third PUT before the second
        # is parked would race the two, and the one parked could be the third.
        with open(proc.logs[-1], "rb") as f:
            seen = len(f.read())
        writer.start()
        deadline = time.monotonic() + 10
        while True:
            with open(proc.logs[-1], "rb") as f:
                f.seek(seen)
                if b"write parked: PUT " + uri.encode() in f.read():
                    break
            if time.monotonic() > deadline:
                fail("no 'write parked' line within 10 s")
            time.sleep(0.05)
        r = http_exchange(proc.socket_addr, "GET", uri, hdrs[:1], None, 5)
        if r.status != 200 or r.body != body(1) or r.header("ETag") != e1:
            fail("GET while a write is parked: %d ETag %s" % (r.status, r.header("ETag")))
        r = http_exchange(proc.socket_addr, "PUT", uri, hdrs, body(3), 5)
        want = (b"too many writes waiting for their commit (max_parked_writes = 1); retry after "
                b"the time in Retry-After\n")
        if r.status != 503 or r.header("Retry-After") != "1" or r.body != want:
            fail("PUT beyond max_parked_writes: %d Retry-After %s %r" % (
                r.status, r.header("Retry-After"), r.body))
        proc.expected_exit = True
        proc.popen.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        if proc.popen.poll() is not None:
            fail("the XDMS exited (%s) with a write parked" % proc.popen.returncode)
        if "r" in result or "e" in result:
            fail("the parked PUT was answered before its commit: %r" % result)
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    writer.join(timeout=20)
    if "r" not in result or result["r"].status != 200:
        fail("parked PUT: %r" % (result.get("r").status if "r" in result else result))
    e2 = result["r"].header("ETag")
    try:
        rc = proc.popen.wait(timeout=10)
    except subprocess.TimeoutExpired:
        fail("the XDMS did not exit within 10 s of SIGTERM")
    if rc != 0:
        fail("the XDMS exited with %s after SIGTERM" % rc)
    proc.start()
    r = http_exchange(proc.socket_addr, "GET", uri, hdrs[:1], None, 10)
    if r.status != 200 or r.body != body(2) or r.header("ETag") != e2 or e2 == e1:
        fail("after the restart: %d ETag %s (parked PUT's %s)" % (r.status, r.header("ETag"),
                                                                 e2))


BUILTINS = {"parked-writes": builtin_parked_writes, "kill9-durability": builtin_kill9_durability, "if-match-race": builtin_if_match_race,
            "parallel-clients": builtin_parallel_clients, "store-flood": builtin_store_flood,
            "fill-store": builtin_fill_store, "attribute-flood": builtin_attribute_flood}


# --------------------------------------------------------------------------------------------
# Runner

class Runner(Settings):
    """The Settings of the case runner plus the store of the run."""

    def __init__(self, args):
        super().__init__(args.build, keep=args.keep, verbose=args.verbose,
                         log_level=args.log_level, time_scale=args.time_scale)
        self.store = getattr(args, "store", "lmdb")
        self.pg = None  # the PostgreSQL server of the whole run (--store postgresql)
        self.pg_dir = None
        self._db_lock = threading.Lock()
        self._db_next = 0

    # --- PostgreSQL (--store postgresql): one server for the run, one database per XDMS

    def start_store(self):
        if self.store != "postgresql":
            return
        sys.path.insert(0, os.path.join(SOURCE_ROOT, "tools"))
        import pglocal
        self.pg_dir = tempfile.mkdtemp(prefix="xdm-e2e-pg-")
        self.pg = pglocal.PgCluster(self.pg_dir)
        self.pg.start(standby=False)

    def stop_store(self):
        if self.pg is not None:
            self.pg.stop()
            self.pg = None
        if self.pg_dir and not self.keep:
            shutil.rmtree(self.pg_dir, ignore_errors=True)

    def create_database(self, role):
        with self._db_lock:
            self._db_next += 1
            name = "e2e_%d_%s" % (self._db_next, role.replace("-", "_"))
        try:
            self.pg.psql("primary", "CREATE DATABASE %s OWNER %s" % (name, PG_USER),
                         db="postgres")
        except subprocess.CalledProcessError as e:
            raise CaseError("CREATE DATABASE %s failed: %s" % (name, (e.stderr or "").strip()))
        return name

    def drop_database(self, name):
        # WITH (FORCE): a killed XDMS may leave a backend behind for a moment.
        try:
            self.pg.psql("primary", "DROP DATABASE IF EXISTS %s WITH (FORCE)" % name,
                         db="postgres")
        except subprocess.CalledProcessError as e:
            raise CaseError((e.stderr or "").strip())

    def conninfo(self, db):
        return "host=%s port=%d dbname=%s user=%s" % (LOOPBACK, self.pg.nodes["primary"]["port"],
                                                       db, PG_USER)

    def run_case(self, path):
        """Returns (outcome "pass" | "fail" | "skip", failures or the skip reason, transcript,
        kept directory, seconds)."""
        t0 = time.monotonic()
        try:
            case = Case(path)
        except (ParseError, OSError, ValueError) as e:
            return "fail", ["parse error: %s" % e], [], None, 0.0
        if case.requires_store is not None and case.requires_store != self.store:
            return "skip", ["requires store %s (this run: %s)" % (case.requires_store,
                                                                 self.store)], [], None, 0.0
        run = CaseRun(self, case)
        try:
            failures = run.run()
        except Exception as e:  # never lose the summary line over one case
            failures = ["runner error: %r" % e]
        finally:
            tmp = run.dep.tmp if run.dep else None
            if tmp and not self.keep:
                shutil.rmtree(tmp, ignore_errors=True)
                tmp = None
        return ("fail" if failures else "pass", failures, run.transcript, tmp,
                time.monotonic() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    ap.add_argument("--build", default="build", help="build directory with the binaries")
    ap.add_argument("--cases", default=os.path.join(HERE, "cases"), help="case directory")
    ap.add_argument("--filter", action="append", default=[],
                    help="run only cases whose name contains SUBSTR (repeatable)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directories")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every exchange")
    ap.add_argument("-j", "--jobs", type=int, default=min(4, 2 * (os.cpu_count() or 1)),
                    help="cases run in parallel")
    ap.add_argument("--time-scale", type=float,
                    default=float(os.environ.get("XDM_E2E_TIME_SCALE", "1")),
                    help="multiply every timeout (slow machines, sanitizers)")
    ap.add_argument("--log-level", default=None, help="--log-level passed to the servers")
    ap.add_argument("--check", action="store_true", help="only parse the case files")
    ap.add_argument("--store", choices=STORES, default=os.environ.get("XDM_E2E_STORE", "lmdb"),
                    help="the XDMSs' store backend; postgresql starts one local PostgreSQL "
                    "(tools/pglocal.py) for the run and gives every XDMS its own database")
    args = ap.parse_args()
    if args.store not in STORES:
        ap.error("--store: one of %s" % ", ".join(STORES))

    paths = sorted(os.path.join(args.cases, f) for f in os.listdir(args.cases)
                   if f.endswith(".case"))
    if args.filter:
        paths = [p for p in paths if any(f in os.path.basename(p) for f in args.filter)]
    if not paths:
        print("no cases selected")
        print("counts: 0 passed, 0 failed")
        return 1
    if args.check:
        bad = 0
        for p in paths:
            try:
                Case(p)
            except (ParseError, OSError, ValueError) as e:
                bad += 1
                print("%s: %s" % (os.path.basename(p), e))
        print("%d case files, %d with errors" % (len(paths), bad))
        return 1 if bad else 0
    runner = Runner(args)
    passed = failed = skipped = 0
    failed_names = []
    t0 = time.monotonic()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        runner.start_store()
    except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
        runner.stop_store()
        print("cannot start the %s store: %s" % (args.store, e))
        print("counts: 0 passed, 1 failed")
        return 1
    except KeyboardInterrupt:
        runner.stop_store()
        print("interrupted")
        print("counts: 0 passed, 1 failed")
        return 130
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs))
    try:
        futs = [(p, pool.submit(runner.run_case, p)) for p in paths]
        for p, fut in futs:
            name = os.path.splitext(os.path.basename(p))[0]
            outcome, failures, transcript, tmp, secs = fut.result()
            ok = outcome != "fail"
            if outcome == "skip":
                skipped += 1
                print("SKIP %s: %s" % (name, failures[0]))
            elif ok:
                passed += 1
                print("PASS %s (%.1fs)" % (name, secs))
            else:
                failed += 1
                failed_names.append(name)
                first = failures[0].split("\n")
                print("FAIL %s (%.1fs): %s" % (name, secs, first[0]))
                rest = first[1:] + [l for f in failures[1:] for l in f.split("\n")]
                for l in rest[:60]:
                    print("    " + l)
                if tmp:
                    print("    kept: %s" % tmp)
            if args.verbose or (not ok and transcript):
                shown = transcript if args.verbose else transcript[-2:]
                for t in shown:
                    print(indent(t))
            sys.stdout.flush()
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)
        kill_all_live()
        runner.stop_store()
        print("interrupted: stopped every started process")
        print("counts: %d passed, %d failed" % (passed, failed + 1))
        return 130
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        kill_all_live()
        runner.stop_store()
        raise
    pool.shutdown(wait=True)
    runner.stop_store()
    print("e2e: %.1fs, build %s, store %s" % (time.monotonic() - t0, runner.build, args.store))
    if failed_names:
        print("failed: " + " ".join(failed_names))
    # Skipped cases test what only the other backend has (`requires store`): not passed.
    print("counts: %d passed, %d failed, %d skipped by design" % (passed, failed, skipped))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
