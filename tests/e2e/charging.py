#!/usr/bin/env python3
"""End-to-end checks of offline charging (docs/charging.md) that the case language cannot
express: CDR files on disk and a real Diameter charging function.

- CDR files: every committed write (document created, replaced, deleted; element and attribute
  PUT and DELETE) is one JSON line with the exact fields; requests that fail (412, 409, 404) give
  none; record numbers are gap-free; files rotate by size (each closed file reached
  cdr_rotate_bytes) and by age (cdr_rotate_age), and no line is lost or repeated across files.
- Diameter Rf: freeDiameterd (Debian freediameterd), started here on a free port in a temporary
  directory with its own configuration and certificates (made with openssl), loads the test
  extension tests/charging/test_acct.fdx, which answers every Accounting-Request with
  DIAMETER_SUCCESS and writes what it got to a file. Checked: the AVPs of an ACR (RFC 6733 §9.7.1
  and the XDM set of docs/charging.md); with the peer stopped, writes still succeed at once, the
  backlog metric counts them, and after the peer starts again every record arrives (the set of
  XDM-Record-Sequence values is complete; a repeat carries the same Session-Id and number);
  after kill -9 of the XDMS between commit and delivery, a restart delivers the records; a full
  queue (charging_queue_max) refuses no write and counts the events it could not queue.
- Subscriptions: an xcap-diff SUBSCRIBE, its refresh and its end are START, INTERIM and STOP
  records of one Session-Id with Accounting-Record-Number 0, 1, 2; each NOTIFY sent is a
  notify-sent record.

    python3 tests/e2e/charging.py --build build [--store postgresql] [-v] [--keep]

freeDiameter drops loopback addresses given in ListenOn, so the test extension binds the peer's
server sockets to 127.0.0.1 itself (checked from /proc/net/tcp), and the XDMS's own Diameter
client opens no server socket (Port = 0, SecPort = 0 in its rf_config; any other port is refused). Prints one PASS/FAIL line per
check and `counts: P passed, F failed`; exits non-zero when a check failed, a process died or a
sanitizer report appears in a log. Every process is stopped by its PID; every wait is bounded.
"""

import argparse
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import run as e2e  # noqa: E402  (the case runner: deployments, HTTP)
from harness import Fail, Server, expect, free_port, stop_popen, wait_for  # noqa: E402

ALICE = "sip:alice@example.com"
ROLE = "shared-list"
DOC = "/xcap-root/resource-lists/users/%s/index" % ALICE
DOC_SEL = "resource-lists/users/%s/index" % ALICE
LISTS = "application/resource-lists+xml"
NODE = "%s@%s" % (ROLE, socket.gethostname())
FREEDIAMETERD = shutil.which("freeDiameterd") or "/usr/bin/freeDiameterd"
# The test extension answers DIAMETER_UNABLE_TO_COMPLY (5012) to an ACR for this user.
REJECTED_USER = "sip:refused@example.com"
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def body(n):
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists '
            'xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="l%d"/></resource-lists>\n'
            % n).encode()


class Peer:
    """freeDiameterd playing the charging function, with test_acct.fdx."""

    def __init__(self, ctx, name):
        self.ctx = ctx
        self.dir = os.path.join(ctx.tmp, name)
        os.makedirs(self.dir)
        self.port = free_port()
        self.identity = "cdf.xdm.test"
        self.out = os.path.join(self.dir, "acr.jsonl")
        self.server = None
        cert, key = ctx.certificate(self.dir, self.identity)
        ext = os.path.join(ctx.args.build, "tests", "test_acct.fdx")
        self.conf = os.path.join(self.dir, "cdf.conf")
        with open(self.conf, "w") as f:
            f.write('Identity = "%s";\nRealm = "xdm.test";\nPort = %d;\nSecPort = 0;\n'
                    'No_SCTP;\nNo_IPv6;\nTcTimer = 1;\nTwTimer = 6;\n'
                    'TLS_Cred = "%s", "%s";\nTLS_CA = "%s";\n'
                    'LoadExtension = "%s" : "%s";\n'
                    % (self.identity, self.port, cert, key, cert, os.path.abspath(ext),
                       "listen=%s;reject=%s;out=%s" % (e2e.LOOPBACK, REJECTED_USER, self.out)))

    def start(self):
        """Starts it (again, appending to its log) and waits until its port accepts."""
        if self.server is None:
            self.server = Server("freeDiameterd", [FREEDIAMETERD, "-c", self.conf],
                                 os.path.join(self.dir, "cdf.log"), port=self.port, cwd=self.dir,
                                 line=None)
        self.server.start()

    def stop(self, sig=signal.SIGTERM):
        if self.server is not None:
            stop_popen(self.server.popen, "freeDiameterd", sig)

    def records(self):
        if not os.path.exists(self.out):
            return []
        with open(self.out) as f:
            return [json.loads(line) for line in f if line.strip()]


class Ctx:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="xdm-e2e-charging-")
        os.chmod(self.tmp, 0o711)  # PostgreSQL (run as its own user) keeps its files below
        self.runner = e2e.Runner(types.SimpleNamespace(
            build=args.build, keep=args.keep, verbose=args.verbose, log_level=None,
            time_scale=float(os.environ.get("XDM_E2E_TIME_SCALE", "1")), store=args.store))
        # freeDiameter's own allocations at exit are not ours to fix: the sanitizer still checks
        # everything else (tests/charging/lsan.supp).
        supp = os.path.join(ROOT, "tests", "charging", "lsan.supp")
        self.runner.env["LSAN_OPTIONS"] = "suppressions=%s:print_suppressions=0" % supp
        self.deps = []
        self.peers = []
        self.n_certs = 0

    def certificate(self, where, cn):
        """A self-signed certificate and key for cn: freeDiameter wants TLS credentials in its
        configuration even when no connection uses TLS."""
        self.n_certs += 1
        cert = os.path.join(where, "cert%d.pem" % self.n_certs)
        key = os.path.join(where, "key%d.pem" % self.n_certs)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        key, "-out", cert, "-days", "2", "-subj", "/CN=" + cn],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=60)
        return cert, key

    def peer(self, name):
        p = Peer(self, name)
        self.peers.append(p)
        return p

    def rf_options(self, peer, name, port=0):
        """The XDMS's Diameter client: its own freeDiameter configuration towards peer. Port 0
        (and SecPort 0): the XDMS opens no Diameter server socket (docs/charging.md)."""
        d = os.path.join(self.tmp, name)
        os.makedirs(d, exist_ok=True)
        ident = "xdms.xdm.test"
        cert, key = self.certificate(d, ident)
        conf = os.path.join(d, "rf.conf")
        with open(conf, "w") as f:
            f.write('Identity = "%s";\nRealm = "xdm.test";\nPort = %d;\nSecPort = 0;\n'
                    'No_SCTP;\nNo_IPv6;\nTcTimer = 1;\nTwTimer = 6;\n'
                    'TLS_Cred = "%s", "%s";\nTLS_CA = "%s";\n'
                    'ConnectPeer = "%s" { ConnectTo = "%s"; Port = %d; No_TLS; };\n'
                    % (ident, port, cert, key, cert, peer.identity, e2e.LOOPBACK,
                       peer.port))
        return ["rf_config=" + conf, "rf_destination_realm=xdm.test",
                "charging_retry_min_ms=200", "charging_retry_max_ms=1000",
                "rf_answer_timeout_ms=2000"]

    def deployment(self, name, options):
        dep = e2e.Deployment(self.runner, types.SimpleNamespace(name="charging-" + name))
        self.deps.append(dep)
        dep.procs[ROLE].options = list(options)
        dep.procs[ROLE].start()
        return dep

    def deployment_stopped(self, name, options):
        dep = e2e.Deployment(self.runner, types.SimpleNamespace(name="charging-" + name))
        self.deps.append(dep)
        dep.procs[ROLE].options = list(options)
        return dep

    def close(self, dep):
        problems = dep.shutdown() + dep.sanitizer_reports()
        self.deps.remove(dep)
        if problems:
            raise Fail("; ".join(problems))


def xcap(dep, method, target, data=b"", ctype=None, headers=()):
    h = [("X-3GPP-Asserted-Identity", '"%s"' % ALICE)] + list(headers)
    if ctype:
        h.append(("Content-Type", ctype))
    return e2e.http_exchange(dep.procs[ROLE].socket_addr, method, target, h, data, 10)


def write(dep, method, target, data, ctype, status, rid=None, headers=()):
    hs = list(headers) + ([("X-Request-ID", rid)] if rid else [])
    r = xcap(dep, method, target, data, ctype, hs)
    expect(r.status == status, "%s %s: expected %d, got %s" % (method, target, status,
                                                             r.summary()))
    return r


def metric(dep, name):
    p = dep.procs[ROLE]
    r = e2e.http_exchange("%s:%d" % (e2e.LOOPBACK, p.metrics_port), "GET", "/metrics", [], b"", 5)
    m = re.search(r"^%s (\d+)$" % re.escape(name), r.body.decode(), re.M)
    expect(m is not None, "metric %s missing" % name)
    return int(m.group(1))


def cdr_lines(cdr):
    out = []
    for path in sorted(glob.glob(os.path.join(cdr, "xdm-*.jsonl"))):
        with open(path) as f:
            out += [json.loads(line) for line in f if line.strip()]
    return sorted(out, key=lambda x: x["seq"])


ELEMENT = DOC + '/~~/resource-lists/list%5b@name=%22l1%22%5d/entry'
ATTRIBUTE = DOC + '/~~/resource-lists/list%5b@name=%22l1%22%5d/entry/@uri'


def check_cdr_fields(ctx):
    cdr = os.path.join(ctx.tmp, "cdr-fields")
    dep = ctx.deployment("cdr-fields", ["cdr_dir=" + cdr])
    t0 = time.time()
    write(dep, "PUT", DOC, body(1), LISTS, 201, "rid-create")
    write(dep, "PUT", DOC, body(1), LISTS, 200, "rid-replace")
    el = b'<entry uri="sip:bob@example.com"/>'
    write(dep, "PUT", ELEMENT, el, "application/xcap-el+xml", 201, "rid-el")
    write(dep, "PUT", ATTRIBUTE, b"sip:carol@example.com", "application/xcap-att+xml", 200,
          "rid-att")
    write(dep, "DELETE", ELEMENT, b"", None, 200, "rid-del-el")
    # Failed before or in the store: charged never.
    write(dep, "PUT", DOC, body(2), LISTS, 412, "rid-412", [("If-Match", '"nope"')])
    write(dep, "PUT", DOC, b"<not-a-list/>", LISTS, 409, "rid-409")
    write(dep, "DELETE", DOC + "-missing", b"", None, 404, "rid-404")
    write(dep, "DELETE", DOC, b"", None, 200, "rid-delete")
    lines = wait_for("6 CDR lines", lambda: (lambda ls: ls if len(ls) >= 6 else None)(
        cdr_lines(cdr)), 15)
    time.sleep(0.5)
    lines = cdr_lines(cdr)
    expect(len(lines) == 6, "expected 6 CDR lines, got %d: %s" % (len(lines), lines))
    want = [("document-created", "PUT document", 201, len(body(1)), "rid-create"),
            ("document-replaced", "PUT document", 200, len(body(1)), "rid-replace"),
            ("node-changed", "PUT element", 201, len(el), "rid-el"),
            ("node-changed", "PUT attribute", 200, 21, "rid-att"),
            ("node-changed", "DELETE element", 200, 0, "rid-del-el"),
            ("document-deleted", "DELETE document", 200, 0, "rid-delete")]
    keys = ["seq", "event", "user", "auid", "document", "operation", "result", "bytes_in",
            "bytes_out", "time", "start", "node", "correlation_id", "record_type",
            "record_number"]
    for i, (line, (ev, op, res, nin, rid)) in enumerate(zip(lines, want)):
        expect(list(line.keys()) == keys, "fields of line %d: %s" % (i + 1, list(line.keys())))
        fixed = {k: line[k] for k in keys if k not in ("time", "start")}
        expect(fixed == {"seq": i + 1, "event": ev, "user": ALICE, "auid": "resource-lists",
                         "document": DOC_SEL, "operation": op, "result": res, "bytes_in": nin,
                         "bytes_out": 0, "node": NODE, "correlation_id": rid,
                         "record_type": "EVENT_RECORD", "record_number": 0},
               "line %d: %s" % (i + 1, line))
        for k in ("time", "start"):
            expect(TIME_RE.match(line[k]), "line %d: %s %r" % (i + 1, k, line[k]))
        when = time.mktime(time.strptime(line["time"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        expect(t0 - 5 <= when <= time.time() + 5, "line %d: time %s" % (i + 1, line["time"]))
        expect(line["start"] <= line["time"], "line %d: start after time" % (i + 1))
    wait_for("sent_total 6", lambda: metric(dep, "xdm_charging_sent_total") == 6, 15)
    wait_for("backlog 0", lambda: metric(dep, "xdm_charging_backlog") == 0, 15)
    ctx.close(dep)
    return "6 writes, 6 lines with the exact fields; 412, 409 and 404 charged nothing"


def check_cdr_concurrent(ctx):
    """32 writers at once: group commit runs a request's transaction on another request's
    thread, and a parked write runs on a write thread, yet each record carries its own
    request's id (its correlation_id)."""
    cdr = os.path.join(ctx.tmp, "cdr-concurrent")
    dep = ctx.deployment("cdr-concurrent", ["cdr_dir=" + cdr])
    n = 32
    errors = []

    def one(i):
        try:
            write(dep, "PUT", "%s-c%d" % (DOC, i), body(i), LISTS, 201, "rid-c%d" % i)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(str(e))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    expect(not errors, "concurrent PUTs: %s" % errors[:3])
    lines = wait_for("%d CDR lines" % n, lambda: (lambda ls: ls if len(ls) >= n else None)(
        cdr_lines(cdr)), 15)
    got = {line["document"]: line["correlation_id"] for line in lines}
    want = {"%s-c%d" % (DOC_SEL, i): "rid-c%d" % i for i in range(n)}
    expect(got == want, "correlation ids: %s" % sorted(
        (d, c) for d, c in got.items() if want.get(d) != c)[:5])
    batches = metric(dep, "xdm_store_commit_batch_size_count")
    ctx.close(dep)
    return "%d concurrent PUTs (%s commits), each CDR line with its own request id" % (
        n, batches)


def check_cdr_rotation(ctx):
    cdr = os.path.join(ctx.tmp, "cdr-rotate")
    dep = ctx.deployment("cdr-rotate", ["cdr_dir=" + cdr, "cdr_rotate_bytes=1024"])
    for i in range(12):
        write(dep, "PUT", DOC, body(i), LISTS, 201 if i == 0 else 200)
    wait_for("12 lines", lambda: len(cdr_lines(cdr)) >= 12, 15)
    files = sorted(glob.glob(os.path.join(cdr, "xdm-*.jsonl")), key=os.path.getmtime)
    expect(len(files) >= 3, "size rotation: %d file(s)" % len(files))
    seqs = []
    for f in files:
        expect(re.match(r"^xdm-%s-\d{8}T\d{6}Z-\d+\.jsonl$" % re.escape(
            re.sub(r"[^A-Za-z0-9._-]", "_", NODE)), os.path.basename(f)), "file name %s" % f)
        with open(f) as fh:
            data = fh.read()
        expect(data.endswith("\n"), "%s ends in a partial line" % f)
        file_seqs = [json.loads(line)["seq"] for line in data.splitlines()]
        expect(os.path.basename(f).endswith("-%d.jsonl" % file_seqs[0]),
               "%s is not named for its first record %d" % (f, file_seqs[0]))
        seqs += file_seqs
    for f in files[:-1]:
        expect(os.path.getsize(f) >= 1024, "%s closed below cdr_rotate_bytes" % f)
    expect(seqs == list(range(1, 13)), "records across files: %s" % seqs)
    ctx.close(dep)

    cdr2 = os.path.join(ctx.tmp, "cdr-age")
    dep = ctx.deployment("cdr-age", ["cdr_dir=" + cdr2, "cdr_rotate_age=1"])
    write(dep, "PUT", DOC, body(1), LISTS, 201)
    wait_for("first line", lambda: len(cdr_lines(cdr2)) == 1, 15)
    time.sleep(2.2)
    write(dep, "PUT", DOC, body(2), LISTS, 200)
    wait_for("second line", lambda: len(cdr_lines(cdr2)) == 2, 15)
    files = glob.glob(os.path.join(cdr2, "*.jsonl"))
    expect(len(files) == 2, "age rotation: %d file(s)" % len(files))
    ctx.close(dep)
    return "%d files by size, each closed at >= 1024 bytes, records 1..12 once; 2 by age" % (
        len(glob.glob(os.path.join(cdr, "xdm-*.jsonl"))))


def tcp_listeners():
    """Every listening TCP socket of the host (/proc/net/tcp, tcp6): (address, port, inode)."""
    out = []
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(path):
            continue
        with open(path) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] != "0A":  # TCP_LISTEN
                    continue
                addr, port = fields[1].split(":")
                raw = bytes.fromhex(addr)
                # The kernel prints each 32-bit word of the address in host (little-endian) order.
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
                out.append((socket.inet_ntop(family, raw), int(port, 16), int(fields[9])))
    return out


def socket_inodes(pid):
    inodes = set()
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            m = re.match(r"socket:\[(\d+)\]$", os.readlink(os.path.join(fd_dir, fd)))
        except OSError:
            continue
        if m:
            inodes.add(int(m.group(1)))
    return inodes


def check_rf_loopback(ctx):
    peer = ctx.peer("cdf-loopback")
    peer.start()
    bound = sorted((a, p) for a, p, _ in tcp_listeners() if p == peer.port)
    expect(bound == [(e2e.LOOPBACK, peer.port)],
           "freeDiameterd listens on %s, want only %s:%d" % (bound, e2e.LOOPBACK, peer.port))
    dep = ctx.deployment("rf-loopback", ctx.rf_options(peer, "rf-loopback"))
    write(dep, "PUT", DOC, body(1), LISTS, 201)
    wait_for("one ACR", lambda: len(peer.records()) == 1, 20)
    proc = dep.procs[ROLE]
    mine = socket_inodes(proc.popen.pid)
    ports = sorted({p for _, p, inode in tcp_listeners() if inode in mine})
    want = sorted({proc.http_port, proc.metrics_port, proc.sip_port} & set(ports))
    expect(proc.metrics_port in ports, "no listener of the XDMS found in /proc/net/tcp: %s" % ports)
    expect(ports == want and 3868 not in ports and 5868 not in ports,
           "the XDMS listens on TCP ports %s; only its HTTP, SIP and metrics ports %s expected"
           % (ports, [proc.http_port, proc.sip_port, proc.metrics_port]))
    ctx.close(dep)

    # An rf_config with a server port: refused at start, naming the file and the lines to add.
    opts = ctx.rf_options(peer, "rf-listening", port=e2e.free_port())
    bad = ctx.deployment_stopped("rf-listening", opts)
    rc, text = bad.procs[ROLE].start_expect_failure([])
    conf = opts[0].split("=", 1)[1]
    expect(rc == 2, "exit status %s for an rf_config with Port != 0, want 2:\n%s" % (rc, text))
    expect(conf in text and '"Port = 0;"' in text and '"SecPort = 0;"' in text,
           "the refusal names neither %s nor the lines to add:\n%s" % (conf, text))
    ctx.deps.remove(bad)
    bad.shutdown()
    peer.stop()
    return "freeDiameterd bound to %s only; the XDMS opens no Diameter server socket and " \
           "refuses an rf_config with Port != 0 (exit 2)" % e2e.LOOPBACK


def seqs_of(records):
    return sorted({r["XDM-Record-Sequence"] for r in records})


def check_rf_acr(ctx):
    peer = ctx.peer("cdf-acr")
    peer.start()
    dep = ctx.deployment("rf-acr", ctx.rf_options(peer, "rf-acr"))
    write(dep, "PUT", DOC, body(1), LISTS, 201, "rid-acr")
    recs = wait_for("one ACR", lambda: peer.records(), 20)
    r = recs[0]
    ts = r.pop("Event-Timestamp")
    ntp = int.from_bytes(ts.encode("latin-1"), "big") - 2208988800
    expect(abs(ntp - time.time()) < 30, "Event-Timestamp %r" % ts)
    for k in ("XDM-Request-Time-Ms", "XDM-Event-Time-Ms"):
        expect(abs(r.pop(k) / 1000 - time.time()) < 30, k)
    want = {
        "Session-Id": "xdms.xdm.test;0;1;xdm-" + NODE,
        "Origin-Host": "xdms.xdm.test",
        "Origin-Realm": "xdm.test",
        "Destination-Realm": "xdm.test",
        "Accounting-Record-Type": 1,
        "Accounting-Record-Number": 0,
        "Acct-Application-Id": 3,
        "User-Name": ALICE,
        "Service-Context-Id": "xdm@openmobilealliance.org",
        "XDM-Event": "document-created",
        "XDM-Served-User": ALICE,
        "XDM-AUID": "resource-lists",
        "XDM-Document": DOC_SEL,
        "XDM-Operation": "PUT document",
        "XDM-Result-Code": 201,
        "XDM-Bytes-In": len(body(1)),
        "XDM-Bytes-Out": 0,
        "XDM-Serving-Node": NODE,
        "XDM-Correlation-Id": "rid-acr",
        "XDM-Record-Sequence": 1,
        "Route-Record": "xdms.xdm.test",
    }
    expect(r == want, "ACR AVPs:\n got %s\nwant %s" % (r, want))
    # Counted once the answer came and the record left the queue, just after the peer wrote it.
    wait_for("sent_total 1", lambda: metric(dep, "xdm_charging_sent_total") == 1, 15)
    ctx.close(dep)
    peer.stop()
    return "ACR with the AVPs of RFC 6733 §9.7.1 and the XDM set, ACA DIAMETER_SUCCESS"


def check_rf_rejected(ctx):
    """A record the charging function refuses for good (5012, RFC 6733 §7.1.5) leaves the queue
    for the dead-letter file; the records behind it are delivered."""
    peer = ctx.peer("cdf-rejected")
    peer.start()
    refused_doc = "/xcap-root/resource-lists/users/%s/index" % REJECTED_USER
    results = []
    for cdr in (False, True):
        name = "rf-rejected" + ("-cdr" if cdr else "")
        opts = ctx.rf_options(peer, name)
        cdr_dir = os.path.join(ctx.tmp, name, "cdr")
        if cdr:
            opts.append("cdr_dir=" + cdr_dir)
        dep = ctx.deployment(name, opts)
        first = len(peer.records())
        write(dep, "PUT", DOC, body(1), LISTS, 201)
        r = e2e.http_exchange(dep.procs[ROLE].socket_addr, "PUT", refused_doc,
                              [("X-3GPP-Asserted-Identity", '"%s"' % REJECTED_USER),
                               ("Content-Type", LISTS)], body(2), 10)
        expect(r.status == 201, "PUT %s: %s" % (refused_doc, r.summary()))
        write(dep, "PUT", DOC, body(3), LISTS, 200)
        write(dep, "DELETE", DOC, b"", None, 200)
        wait_for("records 1..4 at the peer",
                 lambda: seqs_of(peer.records()[first:]) == [1, 2, 3, 4], 20)
        wait_for("backlog 0", lambda: metric(dep, "xdm_charging_backlog") == 0, 15)
        expect(metric(dep, "xdm_charging_sent_total") == 3, "sent_total != 3")
        expect(metric(dep, "xdm_charging_rejected_total") == 1, "rejected_total != 1")
        where = cdr_dir if cdr else dep.procs[ROLE].data
        dead = os.path.join(where, "rejected-%s.jsonl" % re.sub(r"[^A-Za-z0-9._-]", "_", NODE))
        expect(os.path.exists(dead), "no dead-letter file %s: %s" % (dead, os.listdir(where)))
        with open(dead) as f:
            lines = [json.loads(line) for line in f if line.strip()]
        expect(len(lines) == 1, "dead-letter lines: %s" % lines)
        d = lines[0]
        expect((d["seq"], d["user"], d["event"], d["result"], d["rf_result_code"])
               == (2, REJECTED_USER, "document-created", 201, 5012), "dead letter %s" % d)
        expect(list(d)[-1] == "rf_result_code", "rf_result_code is not the last key: %s" % d)
        log = e2e.read_bytes(dep.procs[ROLE].logs[-1]).decode("utf-8", "replace")
        expect(log.count("refused for good") == 1, "not logged exactly once:\n%s" % log)
        if cdr:
            # The CDR files are a charging sink of their own: every record has its line.
            expect([x["seq"] for x in cdr_lines(cdr_dir)] == [1, 2, 3, 4],
                   "CDR lines %s" % [x["seq"] for x in cdr_lines(cdr_dir)])
        ctx.close(dep)
        results.append(os.path.relpath(dead, ctx.tmp))
    peer.stop()
    return "5012 for record 2: moved to %s, records 3 and 4 delivered after it, counted and " \
           "logged once" % " and ".join(results)


def xdmctl(ctx, dep, *args):
    """Runs xdmctl on the deployment's stores (its PostgreSQL database named in a configuration
    file with --store postgresql); returns (exit status, stdout, stderr)."""
    argv = [os.path.join(ctx.args.build, "tools", "xdmctl"), "--data", os.path.join(dep.tmp, "data")]
    if dep.pg is not None:
        conf = os.path.join(dep.tmp, "xdmctl.conf")
        with open(conf, "w") as f:
            f.write("[%s]\nstore = postgresql\npg_conninfo = %s\n" % (ROLE, dep.pg_conninfo(ROLE)))
        argv += ["--config", conf]
    r = subprocess.run(argv + list(args), stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=60, env=ctx.runner.env)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def check_drain(ctx):
    """The queue of an instance that never comes back: listed by xdmctl charging list, moved by
    xdmctl charging drain to a running instance, which delivers it."""
    peer = ctx.peer("cdf-drain")
    opts = ctx.rf_options(peer, "rf-drain")
    dep = ctx.deployment("drain", opts + ["instance=node-a"])  # the peer is down
    write(dep, "PUT", DOC, body(0), LISTS, 201)
    for i in range(1, 3):
        write(dep, "PUT", DOC, body(i), LISTS, 200)
    wait_for("backlog 3", lambda: metric(dep, "xdm_charging_backlog") == 3, 15)
    proc = dep.procs[ROLE]
    proc.stop(signal.SIGKILL)
    got = xdmctl(ctx, dep, "charging", "list", "--role", ROLE)
    expect(got == (0, "node-a\t3\n", ""), "charging list: %r" % (got,))
    got = xdmctl(ctx, dep, "charging", "drain", "--role", ROLE, "--node", "node-a")
    expect(got[0] == 2 and "--to" in got[2], "drain without --to: %r" % (got,))
    got = xdmctl(ctx, dep, "charging", "drain", "--role", ROLE, "--node", "node-a", "--to",
                 "node-b")
    expect(got == (0, "%s: 3 records moved from node-a to node-b\n" % ROLE, ""),
           "charging drain: %r" % (got,))
    got = xdmctl(ctx, dep, "charging", "list", "--role", ROLE)
    expect(got == (0, "node-a\t0\nnode-b\t3\n", ""), "charging list after drain: %r" % (got,))
    peer.start()
    proc.options = opts + ["instance=node-b"]
    proc.start()
    wait_for("3 records at the peer", lambda: len(peer.records()) == 3, 30)
    recs = peer.records()
    expect([r["XDM-Served-User"] for r in recs] == [ALICE] * 3 and
           [r["XDM-Serving-Node"] for r in recs] == ["node-a"] * 3 and
           [r["XDM-Event"] for r in recs] == ["document-created", "document-replaced",
                                              "document-replaced"],
           "records delivered after the drain: %s" % recs)
    wait_for("backlog 0", lambda: metric(dep, "xdm_charging_backlog") == 0, 15)
    ctx.close(dep)
    peer.stop()
    return "3 records of node-a listed, drained to node-b and delivered by it, in order"


def check_rf_outage(ctx):
    peer = ctx.peer("cdf-outage")
    peer.start()
    dep = ctx.deployment("rf-outage", ctx.rf_options(peer, "rf-outage"))
    write(dep, "PUT", DOC, body(0), LISTS, 201)
    wait_for("first ACR", lambda: len(peer.records()) == 1, 20)
    peer.stop(signal.SIGKILL)
    for i in range(1, 6):
        t = time.monotonic()
        write(dep, "PUT", DOC, body(i), LISTS, 200)
        expect(time.monotonic() - t < 2, "a write waited for charging (%.1fs)" % (
            time.monotonic() - t))
    wait_for("backlog 5", lambda: metric(dep, "xdm_charging_backlog") == 5, 15)
    wait_for("a failed delivery", lambda: metric(dep, "xdm_charging_failed_total") >= 1, 15)
    peer.start()
    wait_for("6 records", lambda: seqs_of(peer.records()) == list(range(1, 7)), 30)
    wait_for("backlog 0", lambda: metric(dep, "xdm_charging_backlog") == 0, 15)
    # Every repeat of a record (if any) carries the same Session-Id and number: the charging
    # function drops it (RFC 6733 §9.8.3).
    by_seq = {}
    for r in peer.records():
        key = (r["Session-Id"], r["Accounting-Record-Number"])
        expect(by_seq.setdefault(r["XDM-Record-Sequence"], key) == key,
               "record %d sent with two identities" % r["XDM-Record-Sequence"])

    # kill -9 between commit and delivery: the records wait in the store.
    peer.stop(signal.SIGKILL)
    for i in range(6, 9):
        write(dep, "PUT", DOC, body(i), LISTS, 200)
    wait_for("backlog 3", lambda: metric(dep, "xdm_charging_backlog") == 3, 15)
    dep.procs[ROLE].stop(signal.SIGKILL)
    peer.start()
    dep.procs[ROLE].start()
    wait_for("9 records", lambda: seqs_of(peer.records()) == list(range(1, 10)), 30)
    ctx.close(dep)
    peer.stop()
    return "writes answered at once while the peer was down; records 1..9 delivered after the " \
           "peer came back and after kill -9 of the XDMS"


def check_queue_full(ctx):
    peer = ctx.peer("cdf-full")
    opts = ctx.rf_options(peer, "rf-full") + ["charging_queue_max=2"]
    dep = ctx.deployment("queue-full", opts)  # the peer is not running yet
    write(dep, "PUT", DOC, body(0), LISTS, 201)
    for i in range(1, 4):
        write(dep, "PUT", DOC, body(i), LISTS, 200)
    wait_for("backlog 2", lambda: metric(dep, "xdm_charging_backlog") == 2, 15)
    expect(metric(dep, "xdm_charging_dropped_total") == 2, "dropped_total != 2")
    log = e2e.read_bytes(dep.procs[ROLE].logs[-1]).decode()
    expect("charging: queue full (2 records, charging_queue_max)" in log, "no queue-full line")
    peer.start()
    wait_for("2 records", lambda: seqs_of(peer.records()) == [1, 2], 30)
    ctx.close(dep)
    peer.stop()
    return "4 writes accepted with charging_queue_max=2: 2 queued and delivered, 2 counted and " \
           "logged"


def check_subscription(ctx):
    peer = ctx.peer("cdf-sub")
    peer.start()
    cdr = os.path.join(ctx.tmp, "cdr-sub")
    opts = ctx.rf_options(peer, "rf-sub") + ["cdr_dir=" + cdr, "sip_trusted_peer=127.0.0.1"]
    dep = ctx.deployment("subscription", opts)
    write(dep, "PUT", DOC, body(1), LISTS, 201)
    entry = dep.xcap_root + "/" + DOC_SEL
    ua = e2e.SipUA(dep, "sub", dep.procs[ROLE],
                   ["--target", ALICE, "--entry", entry, "--expires", "600",
                    "--refresh-after", "1", "--duration", "3"])
    dep.uas["sub"] = ua
    ua.take("exit", 30)
    expect(ua.popen.wait(timeout=10) == 0, "the subscriber failed")
    want = ["document-created", "subscription-started", "notify-sent", "subscription-refreshed",
            "notify-sent", "notify-sent", "subscription-ended"]
    lines = wait_for("7 CDR lines", lambda: (lambda ls: ls if len(ls) >= 7 else None)(
        cdr_lines(cdr)), 20)
    time.sleep(0.5)
    lines = cdr_lines(cdr)
    expect([x["event"] for x in lines] == want, "events: %s" % [x["event"] for x in lines])
    subs = [x for x in lines if x["event"].startswith("subscription")]
    expect([(x["record_type"], x["record_number"]) for x in subs] ==
           [("START_RECORD", 0), ("INTERIM_RECORD", 1), ("STOP_RECORD", 2)],
           "records of the subscription: %s" % subs)
    session = subs[0]["session"]
    call_id = subs[0]["correlation_id"]
    for x in lines[1:]:
        expect(x["user"] == ALICE and x["session"] == session and x["correlation_id"] == call_id,
               "line %s" % x)
        expect(x["operation"] == ("NOTIFY" if x["event"] == "notify-sent" else "SUBSCRIBE"),
               "operation of %s" % x)
        expect(x["result"] == 200, "result of %s" % x)
        if x["event"] == "notify-sent":
            expect(x["bytes_out"] > 100 and x["record_type"] == "EVENT_RECORD", "NOTIFY %s" % x)
    recs = wait_for("7 ACRs", lambda: (lambda rs: rs if len(rs) >= 7 else None)(
        peer.records()), 20)
    acr = [(r["XDM-Event"], r["Accounting-Record-Type"], r["Accounting-Record-Number"])
           for r in sorted(recs, key=lambda r: r["XDM-Record-Sequence"])]
    expect(acr == [("document-created", 1, 0), ("subscription-started", 2, 0),
                   ("notify-sent", 1, 0), ("subscription-refreshed", 3, 1),
                   ("notify-sent", 1, 0), ("notify-sent", 1, 0),
                   ("subscription-ended", 4, 2)], "ACRs: %s" % acr)
    sids = {r["Session-Id"] for r in recs if r["Accounting-Record-Type"] != 1}
    expect(sids == {"xdms.xdm.test;0;0;xdm-sub-" + session}, "Session-Ids: %s" % sids)
    ctx.close(dep)
    peer.stop()
    return "SUBSCRIBE, refresh, unsubscribe: START 0, INTERIM 1, STOP 2 of one Session-Id; " \
           "3 NOTIFYs charged"


CHECKS = [check_cdr_fields, check_cdr_concurrent, check_cdr_rotation, check_rf_loopback, check_rf_acr, check_rf_rejected,
          check_rf_outage, check_queue_full, check_subscription, check_drain]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--store", choices=("lmdb", "postgresql"), default="lmdb")
    ap.add_argument("--filter", default="")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    for b in (os.path.join(args.build, "xdms", "xdms"),
              os.path.join(args.build, "tests", "test_acct.fdx"), FREEDIAMETERD):
        if not os.path.exists(b):
            print("FAIL not found: %s (Debian freediameterd, libfreediameter-dev)" % b)
            print("counts: 0 passed, 1 failed")
            return 1
    ctx = Ctx(args)
    passed = failed = 0
    try:
        ctx.runner.start_store()
        print("store: %s" % args.store)
        for check in CHECKS:
            if args.filter not in check.__name__:
                continue
            t = time.monotonic()
            try:
                what = check(ctx)
                print("PASS %s: %s (%.1fs)" % (check.__name__, what, time.monotonic() - t))
                passed += 1
            except (Fail, e2e.CaseError, OSError, ValueError, KeyError) as e:
                print("FAIL %s: %s" % (check.__name__, e))
                failed += 1
                for dep in list(ctx.deps):
                    if args.verbose:
                        for log in dep.procs[ROLE].logs:
                            print("---- %s\n%s" % (log, e2e.tail(log, 60)))
                    dep.shutdown()
                    ctx.deps.remove(dep)
            finally:
                for p in ctx.peers:
                    p.stop()
    finally:
        for dep in ctx.deps:
            dep.shutdown()
        for p in ctx.peers:
            p.stop()
        ctx.runner.stop_store()
        if args.keep:
            print("kept %s" % ctx.tmp)
        else:
            shutil.rmtree(ctx.tmp, ignore_errors=True)
    print("counts: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
