#!/usr/bin/env python3
"""Checks of the shared end-to-end harness (tests/e2e/harness.py) itself, with the real XDMS
where a server's own words matter:

- free_port never hands out a port twice, and with udp_too the port is free for UDP as well;
- taken_port reads the port from both servers' messages (HTTP listener, SIP notifier);
- retry_on_taken_port: an XDMS whose HTTP or SIP port was taken before it bound (also by another
  process's listener, to which the readiness probe connects) is started again on the port
  repick() chose, and a port that cannot change ends the retries at once;
- stop_popen: a process that ignores SIGTERM is killed after the bounded wait and that is
  reported; an exit status other than 0 or the signal is reported;
- wait_ready: a process that exits at start fails with the tail of its log;
- write_config: sections in order, repeated keys, the comment line;
- wait_for: returns the first true value, fails naming what it waited for when time runs out;
- make_certs: each leaf is issued by its own CA for its purpose (openssl verify), with its key,
  and a lone key matches no certificate;
- run_checks: a failing check, a server that died and a failed set-up are each a FAIL, the
  workspace is shut down and kept after a failure, a missing command is exit status 2.

    python3 tests/e2e/harness_test.py --build build [-v] [--keep] [--filter NAME]

Prints one PASS/FAIL line per check and `counts: P passed, F failed`. Standard library only.
"""

import contextlib
import io
import os
import shutil
import signal
import ssl
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Fail, Tally, expect, script_args, selected  # noqa: E402


def check_free_port(ws):
    ports = [harness.free_port() for _ in range(50)] + [harness.free_port(True) for _ in range(20)]
    expect(len(set(ports)) == len(ports), "a port handed out twice: %s" % sorted(ports))
    for port in ports[50:]:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((harness.LOOPBACK, port))  # raises when not free for UDP


def check_taken_port_messages(ws):
    log = ws.path("messages.log")
    for text, port in (
            (b"# argv\nT ERROR xdms(rls): httpd: cannot listen on 127.0.0.1 port 4711 (in use, no "
             b"permission, or bad TLS certificate/key)\n", 4711),
            (b"# argv\nT ERROR xdms(rls): notifier: cannot listen on sip:127.0.0.1:5099 (UDP and "
             b"TCP; port in use?)\n", 5099),
            (b"# argv\nT INFO xdms(rls): listening on http://127.0.0.1:4711\n", None)):
        with open(log, "wb") as f:
            f.write(text)
        got = harness.taken_port(log)
        expect(got == port, "taken_port of %r: %s, want %s" % (text, got, port))
    expect(harness.taken_port(log, since=10 ** 6) is None, "since beyond the end")


def xdms_argv(ws, name, http, sip):
    return [ws.binary(harness.BIN_XDMS), "--role", "rls", "--config", ws.conf,
            "--data", ws.path(name), "--http", "%s:%d" % (harness.LOOPBACK, http),
            "--sip", "%s:%d" % (harness.LOOPBACK, sip), "--option", "metrics=off"]


def retry_with_taken(ws, name, kind, listen=False):
    """Holds a port (bound, not listening: as an outgoing connection holds it; with listen, as
    another process's server does) and starts an XDMS on it; returns (the held port, the ports
    repick() was asked for, the server)."""
    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM if kind == "http" else
                         socket.SOCK_DGRAM)
    held.bind((harness.LOOPBACK, 0))
    if listen:
        held.listen()
    taken = held.getsockname()[1]
    ports = {"http": harness.free_port(), "sip": harness.free_port(True)}
    ports[kind] = taken
    asked = []

    def repick(port):
        asked.append(port)
        ports[kind] = harness.free_port(kind == "sip")
        return True

    try:
        srv = harness.retry_on_taken_port(
            lambda: ws.server(name, xdms_argv(ws, name, ports["http"], ports["sip"]),
                              port=ports["http"]), repick)
    finally:
        held.close()
    return taken, asked, srv


def check_retry_http_port(ws):
    taken, asked, srv = retry_with_taken(ws, "http-taken", "http")
    expect(asked == [taken], "repick asked for %s, the taken port was %d" % (asked, taken))
    expect(srv.running(), "the XDMS does not run after the retry")


def check_retry_foreign_listener(ws):
    """Another process listens on the port: a connection to it succeeds, yet the XDMS exits."""
    taken, asked, srv = retry_with_taken(ws, "http-foreign", "http", listen=True)
    expect(asked == [taken], "repick asked for %s, the taken port was %d" % (asked, taken))
    expect(srv.running(), "the XDMS does not run after the retry")


def check_retry_sip_port(ws):
    taken, asked, srv = retry_with_taken(ws, "sip-taken", "sip")
    expect(asked == [taken], "repick asked for %s, the taken port was %d" % (asked, taken))
    expect(srv.running(), "the XDMS does not run after the retry")


def check_retry_gives_up(ws):
    held = socket.socket()
    held.bind((harness.LOOPBACK, 0))
    asked = []
    try:
        harness.retry_on_taken_port(
            lambda: ws.server("fixed", xdms_argv(ws, "fixed", held.getsockname()[1], 0),
                              port=held.getsockname()[1]),
            lambda port: asked.append(port) or False)
        raise Fail("started on a taken port")
    except harness.PortTaken as e:
        expect(asked == [e.port] and "before accepting connections" in str(e) and
               "cannot listen" in str(e), "asked %s; %s" % (asked, e))
    finally:
        held.close()


def check_stop_bounded(ws):
    log = ws.path("stubborn.log")
    p = harness.spawn([sys.executable, "-c", "import signal, time\n"
                       "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\n"
                       "time.sleep(60)"], log)
    deadline = time.monotonic() + 10
    while b"ready" not in harness.read_bytes(log)[p.log_start:] and time.monotonic() < deadline:
        time.sleep(0.02)
    t0 = time.monotonic()
    msg = harness.stop_popen(p, "stubborn", timeout=0.5)
    took = time.monotonic() - t0
    expect(p.returncode == -signal.SIGKILL, "exit status %s" % p.returncode)
    expect((msg or "").startswith("stubborn did not exit within") and
           msg.endswith("of SIGTERM (killed)"), "problem %r" % msg)
    expect(took < 5, "the stop took %.1f s" % took)
    p = harness.spawn([sys.executable, "-c", "import sys; sys.exit(3)"], ws.path("three.log"))
    p.wait(timeout=10)
    expect(harness.stop_popen(p, "three") is None, "an exited process is no problem here")
    p = harness.spawn([sys.executable, "-c", "import signal, sys, time\n"
                       "signal.signal(signal.SIGTERM, lambda *a: sys.exit(3))\n"
                       "print('ready', flush=True)\ntime.sleep(60)"], ws.path("bad.log"))
    deadline = time.monotonic() + 10
    while b"ready" not in harness.read_bytes(p.log)[p.log_start:] and time.monotonic() < deadline:
        time.sleep(0.02)
    msg = harness.stop_popen(p, "bad", timeout=10)
    expect((msg or "").startswith("bad exited with exit code 3 after SIGTERM"), "problem %r" % msg)


def check_wait_ready_exit(ws):
    srv = harness.Server("early", [sys.executable, "-c", "print('no config here'); exit(1)"],
                         ws.path("early.log"), port=harness.free_port())
    try:
        srv.start()
        raise Fail("a process that exited was ready")
    except harness.PortTaken as e:
        raise Fail("PortTaken without a taken port: %s" % e)
    except Fail as e:
        expect("early exited with exit code 1 before accepting connections" in str(e) and
               "| no config here" in str(e), "message: %s" % e)


def check_write_config(ws):
    path = harness.write_config(ws.path("w.conf"), [
        ("aggproxy", [("metrics", "off"), ("trusted_peer", "a proxy")]),
        ("rls", {"trusted_peer": "b proxy"}),
        ("rls", [("trusted_peer", "c proxy"), ("trusted_peer", "d proxy")])], "made here")
    with open(path) as f:
        text = f.read()
    want = ("# made here\n[aggproxy]\nmetrics = off\ntrusted_peer = a proxy\n[rls]\n"
            "trusted_peer = b proxy\n[rls]\ntrusted_peer = c proxy\ntrusted_peer = d proxy\n")
    expect(text == want, "wrote %r" % text)
    expect(not os.path.exists(path + ".new"), "the temporary file is left")
    harness.write_config(path, {"xdms": {}})
    with open(path) as f:
        expect(f.read() == "[xdms]\n", "an empty section")


def check_wait_for(ws):
    calls = []

    def third():
        calls.append(1)
        return len(calls) >= 3 and "ready"
    expect(harness.wait_for("three calls", third, 5) == "ready" and len(calls) == 3,
           "wait_for: %d calls" % len(calls))
    t0 = time.monotonic()
    try:
        harness.wait_for("nothing", lambda: 0, 0.2)
    except Fail as e:
        expect("waiting for nothing" in str(e), "message: %s" % e)
    else:
        raise Fail("wait_for did not fail")
    expect(time.monotonic() - t0 < 2 * harness.TIME_SCALE, "wait_for overran its limit")


def check_make_certs(ws):
    expect(shutil.which("openssl"), "the openssl command is needed")
    d, log = ws.path("certs"), ws.path("openssl.log")
    os.makedirs(d)
    server = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth"
    harness.make_certs(d, log, cas=[("ca", "/CN=A"), ("other-ca", "/CN=B")], leaves=[
        ("server", "/CN=server", "ca", server),
        ("client", "/O=Example/CN=client", "other-ca", "extendedKeyUsage=clientAuth")],
        keys=["lone"])
    p = lambda name: os.path.join(d, name)  # noqa: E731
    harness.run_tool(["openssl", "verify", "-CAfile", p("ca.pem"), "-purpose", "sslserver",
                      p("server.pem")], log)
    harness.run_tool(["openssl", "verify", "-CAfile", p("other-ca.pem"), "-purpose", "sslclient",
                      p("client.pem")], log)
    try:
        harness.run_tool(["openssl", "verify", "-CAfile", p("ca.pem"), p("client.pem")], log)
    except Fail:
        pass
    else:
        raise Fail("the client certificate verifies with the wrong CA")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(p("server.pem"), p("server.key"))
    ctx.load_cert_chain(p("client.pem"), p("client.key"))
    try:
        ctx.load_cert_chain(p("server.pem"), p("lone.key"))
    except ssl.SSLError:
        pass
    else:
        raise Fail("the lone key matches the server certificate")
    with open(p("server.ext")) as f:
        expect(f.read() == server + "\n", "the extension file of the server")


class FakeEnv:
    """What run_checks needs of a Workspace, with what happened to it."""

    def __init__(self, tmp, dead=()):
        self.tmp, self.dead, self.removed = tmp, list(dead), None
        self.stopped = False

    def died(self):
        dead, self.dead = self.dead, []
        return dead

    def shutdown(self):
        self.stopped = True
        return []

    def remove(self, keep):
        self.removed = not keep


def run_checks_quietly(args, make_env, checks, **kw):
    """run_checks's exit status and output (so that its PASS/FAIL and counts lines do not count
    here)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = harness.run_checks(args, "x", make_env, checks, **kw)
    return rc, out.getvalue()


def check_run_checks(ws):
    class Args:
        filter, keep = [], False

    def check_good(env):
        pass

    def check_bad(env):
        raise Fail("no good")

    envs = []

    def make(args, dead=()):
        envs.append(FakeEnv(ws.tmp, dead))
        return envs[-1]

    rc, out = run_checks_quietly(Args, make, [check_good])
    expect(rc == 0 and "PASS good" in out and "counts: 1 passed, 0 failed" in out,
           "a passing check: %d %r" % (rc, out))
    expect(envs[-1].stopped and envs[-1].removed, "passed: shut down and removed")
    rc, out = run_checks_quietly(Args, make, [check_bad, check_good])
    expect(rc == 1 and "FAIL bad" in out and "no good" in out and "PASS good" in out
           and "kept %s" % ws.tmp in out, "a failing check: %d %r" % (rc, out))
    expect(envs[-1].stopped and not envs[-1].removed, "failed: shut down and kept")
    rc, out = run_checks_quietly(Args, lambda a: make(a, ["rls died"]), [check_good])
    expect(rc == 1 and "FAIL rls died" in out, "a server that died: %r" % out)
    Args.filter = ["bad"]
    rc, out = run_checks_quietly(Args, make, [check_bad, check_good])
    expect("PASS good" not in out and "counts: 0 passed, 1 failed" in out, "--filter: %r" % out)
    Args.filter = []

    def setup(env):
        raise OSError("refused")
    rc, out = run_checks_quietly(Args, make, [check_good], setup=setup)
    expect(rc == 1 and "FAIL setup: refused" in out and "PASS good" not in out
           and envs[-1].stopped, "a failed set-up: %r" % out)
    n = len(envs)
    rc, out = run_checks_quietly(Args, make, [check_good], needs=["no-such-command-here"])
    expect(rc == 2 and len(envs) == n and "the no-such-command-here command is needed" in out,
           "a missing command: %d %r" % (rc, out))


CHECKS = [check_free_port, check_taken_port_messages, check_retry_http_port,
          check_retry_foreign_listener, check_retry_sip_port, check_retry_gives_up, check_stop_bounded, check_wait_ready_exit,
          check_write_config, check_wait_for, check_make_certs, check_run_checks]


def main():
    args = script_args(__doc__)
    tally = Tally()
    for c in selected(CHECKS, args.filter):
        tally.check_fresh(c.__name__[6:], lambda: harness.Workspace(args.build, "xdm-harness-"),
                          c, args.keep)
    return tally.finish()


if __name__ == "__main__":
    sys.exit(main())
