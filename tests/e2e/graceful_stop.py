#!/usr/bin/env python3
"""End-to-end checks of the graceful stop: on SIGTERM a server stops accepting connections, lets
the requests in progress finish within shutdown_timeout, then exits 0.

    python3 tests/e2e/graceful_stop.py --build build [-v] [--keep] [--filter NAME]

A PUT whose body is still arriving when SIGTERM comes completes with 201, sent directly to an
XDMS over its UNIX-domain socket and through the proxy over TCP with Digest; a request that
never finishes holds the stop no longer than shutdown_timeout. Prints one PASS/FAIL line per
check and `counts: P passed, F failed`. Standard library only.
"""

import http.client
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (LOOPBACK, Digest, Fail, Resp, Tally, Workspace, expect,  # noqa: E402
                     free_port, script_args, selected, tail)

XUI = "sip:alice@example.com"
CT = "application/resource-lists+xml"
# A body of some kilobytes: sent in pieces around the SIGTERM.
BODY = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">\n'
        b'  <list name="friends">\n' +
        b"".join(b'    <entry uri="sip:friend%03d@example.com"/>\n' % i for i in range(100)) +
        b'  </list>\n</resource-lists>\n')
EXIT_WAIT = 15  # seconds a stopping process may take in these checks at most


class Env(Workspace):
    """A fresh deployment per check: one XDMS (shared-list) and, when asked, the proxy."""

    def __init__(self, args, name, proxy=False, options=()):
        # No admin listeners: parallel runs share no port.
        super().__init__(args.build, "xdm-e2e-stop-%s-" % name[:16], args.verbose,
                         conf={"xdms": {"metrics": "off"}, "aggproxy": {"metrics": "off"}})
        self.xdms_port, self.port = free_port(), free_port()
        opts = []
        for kv in options:
            opts += ["--option", kv]
        self.socket = os.path.join(self.data, "shared-list", "xdms.sock")
        self.xdms = self.server("shared-list", [
            self.binary("xdms/xdms"), "--role", "shared-list", "--config", self.conf,
            "--data", os.path.join(self.data, "shared-list"),
            "--http", "%s:%d" % (LOOPBACK, self.xdms_port), "--sip", "%s:0" % LOOPBACK,
            "--xcap-root", "http://%s:%d/xcap-root/" % (LOOPBACK, self.port)] + opts,
            port=self.xdms_port)
        self.proxy = None
        if proxy:
            self.proxy = self.server("proxy", [
                self.binary("aggproxy/aggproxy"), "--config", self.conf,
                "--data", os.path.join(self.data, "aggproxy"), "--realm", "example.com",
                "--http", "%s:%d" % (LOOPBACK, self.port),
                "--option", "shared_list_url=unix:" + self.socket] + opts, port=self.port)
            self.xdmctl("user", "add", XUI, "--password", "secret")


def head(target, extra=()):
    lines = ["PUT %s HTTP/1.1" % target, "Host: xcap.example.com", "Content-Type: " + CT,
             "Content-Length: %d" % len(BODY), "Connection: close"] + list(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def wait_log(proc, text, limit=5):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if text in open(proc.log, encoding="utf-8", errors="replace").read():
            return
        time.sleep(0.02)
    raise Fail("%s did not log %r within %d s:\n%s" % (proc.name, text, limit, tail(proc.log)))


def slow_put_across_sigterm(sock, target, extra, proc):
    """Sends the head and a first part of the body, SIGTERMs proc, sends the rest in pieces
    while checking that proc still runs; returns the response (status, body)."""
    sock.sendall(head(target, extra) + BODY[:1000])
    time.sleep(0.3)
    proc.popen.send_signal(signal.SIGTERM)
    wait_log(proc, "stopping; requests in progress get up to")
    rest = BODY[1000:]
    for i in range(0, len(rest), 500):  # about 1 s in all, far above body_min_rate (1K/s)
        expect(proc.popen.poll() is None, "%s exited with the request in progress" % proc.name)
        sock.sendall(rest[i:i + 500])
        time.sleep(0.1)
    r = http.client.HTTPResponse(sock, method="PUT")
    r.begin()
    return r.status, r.read()


def wait_exit(proc, limit=EXIT_WAIT):
    t0 = time.monotonic()
    try:
        rc = proc.popen.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        raise Fail("%s did not exit within %d s of SIGTERM" % (proc.name, limit))
    expect(rc == 0, "%s exited with %s after SIGTERM:\n%s" % (proc.name, rc, tail(proc.log)))
    return time.monotonic() - t0


def check_xdms_finishes_put(env):
    """Directly at the XDMS over its UNIX-domain socket: the PUT in progress at SIGTERM gets its
    201, the process exits 0, and the document is stored (seen after a restart on the same
    data)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(15)
    s.connect(env.socket)
    target = "/xcap-root/resource-lists/users/%s/index" % XUI
    status, body = slow_put_across_sigterm(
        s, target, ['X-3GPP-Asserted-Identity: "%s"' % XUI], env.xdms)
    s.close()
    expect(status == 201, "PUT across SIGTERM: %d %s" % (status, body))
    wait_exit(env.xdms)
    # The answer was durable: a new process on the same data has the document.
    env.xdms.log = env.path("shared-list.restart.log")
    env.logs.append(env.xdms.log)
    env.xdms.start()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(15)
    s.connect(env.socket)
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nX-3GPP-Asserted-Identity: \"%s\"\r\n"
               "Connection: close\r\n\r\n" % (target, XUI)).encode())
    r = http.client.HTTPResponse(s, method="GET")
    r.begin()
    data = r.read()
    s.close()
    expect(r.status == 200 and data == BODY, "GET after the restart: %d" % r.status)


def check_proxy_finishes_put(env):
    """Through the proxy over TCP with Digest: the PUT whose body is arriving at SIGTERM gets
    its 201 (the proxy forwards it to the XDMS, still running), then the proxy exits 0."""
    target = "/xcap-root/resource-lists/users/%s/index" % XUI
    auth = Digest("alice", "secret")
    c = http.client.HTTPConnection(LOOPBACK, env.port, timeout=15)
    c.request("GET", target)
    r = c.getresponse()
    body = r.read()
    c.close()
    expect(r.status == 401, "challenge: %d" % r.status)
    auth.adopt(Resp(r.status, r.getheaders(), body))
    s = socket.create_connection((LOOPBACK, env.port), timeout=15)
    status, body = slow_put_across_sigterm(
        s, target, ["Authorization: " + auth.header("PUT", target)], env.proxy)
    s.close()
    expect(status == 201, "PUT across SIGTERM: %d %s" % (status, body))
    wait_exit(env.proxy)


def check_bounded_by_shutdown_timeout(env):
    """A request that never finishes holds the stop only shutdown_timeout (1 s here): the
    process exits 0 soon after, naming the unfinished request."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(15)
    s.connect(env.socket)
    s.sendall(head("/xcap-root/resource-lists/users/%s/index" % XUI,
                   ['X-3GPP-Asserted-Identity: "%s"' % XUI]) + BODY[:1000])
    time.sleep(0.3)
    env.xdms.popen.send_signal(signal.SIGTERM)
    took = wait_exit(env.xdms, 10)
    s.close()
    expect(0.8 <= took < 5, "stop took %.1f s with shutdown_timeout = 1" % took)
    wait_log(env.xdms, "stopping with 1 request(s) unfinished after shutdown_timeout (1 s)")


# Each check with the deployment it gets: (function, Env keyword arguments).
CHECKS = [(check_xdms_finishes_put, {}), (check_proxy_finishes_put, {"proxy": True}),
          (check_bounded_by_shutdown_timeout, {"options": ["shutdown_timeout=1"]})]


def main():
    args = script_args(__doc__)
    tally = Tally()
    for c, kw in selected(CHECKS, args.filter, lambda c: c[0].__name__):
        name = c.__name__[6:]
        tally.check_fresh(name, lambda: Env(args, name, **kw), c, args.keep,
                          errors=(Fail, OSError, http.client.HTTPException))
    return tally.finish()


if __name__ == "__main__":
    sys.exit(main())
