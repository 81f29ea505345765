#!/usr/bin/env python3
"""The servers' readiness and watchdog towards systemd (sd_notify(3)), without systemd as PID 1:
the test plays the service manager. It binds the datagram socket that NOTIFY_SOCKET names,
starts a real xdms and a real aggproxy with it (and WATCHDOG_USEC, as systemd sets it for a unit
with WatchdogSec=) and checks what arrives:

- READY=1 once the listeners are up: at that moment the HTTP port and the UNIX-domain socket
  already accept connections (a unit ordered after the XDMS finds its socket);
- WATCHDOG=1 about every WATCHDOG_USEC/2 while running, none without WATCHDOG_USEC;
- on SIGHUP, RELOADING=1 with MONOTONIC_USEC= (CLOCK_MONOTONIC microseconds, taken between the
  signal and the message, as sd_notify(3) documents for Type=notify-reload) before the reload,
  then READY=1 once it is over, for an applied and for a refused reload;
- STOPPING=1 on SIGTERM, then exit status 0;
- without NOTIFY_SOCKET the servers start and stop as before.

    python3 tests/e2e/sd_notify.py --build build [-v]

Prints one PASS/FAIL line per check and `counts: P passed, F failed`; exits non-zero when a check
failed or a sanitizer report appears in a server's output. Every wait is bounded in time.
Standard library only.
"""

import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from harness import (Fail, Server, Tally, expect, has_sanitizer_report, logs_in,  # noqa: E402
                     read_bytes, script_args, selected, write_config)


class Manager:
    """The service manager's side: a datagram socket in a private directory."""

    def __init__(self, tmp):
        self.path = os.path.join(tmp, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)

    def recv(self, timeout):
        """One notification as a list of lines, or None when none came within timeout."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            return None
        return data.decode().split("\n")

    def wait_for(self, line, timeout):
        """Messages until one has `line`; returns (seconds waited, messages seen before)."""
        start = time.monotonic()
        seen = []
        while True:
            left = timeout - (time.monotonic() - start)
            expect(left > 0, "no %s within %.1f s (got %r)" % (line, timeout, seen))
            msg = self.recv(left)
            expect(msg is not None, "no %s within %.1f s (got %r)" % (line, timeout, seen))
            if line in msg:
                return time.monotonic() - start, seen
            seen.append(msg)

    def close(self):
        self.sock.close()


class Daemon(Server):
    """A server started as systemd starts it: its readiness is what it sends on NOTIFY_SOCKET,
    so start() does not wait for a port."""

    def __init__(self, argv, env, log_path):
        super().__init__(os.path.basename(argv[0]), argv, log_path,
                         cwd=os.path.dirname(log_path), env=env)
        self.start(wait=False)

    def stop(self, timeout=10):
        """One SIGTERM (none when sent before); the exit status within timeout s."""
        self.term()
        return self.wait_exit(timeout)

    def http_port(self, timeout=5):
        """The HTTP port from the 'listening on' log line."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(rb"listening on https?://[0-9.]+:(\d+)", self.output())
            if m:
                return int(m.group(1))
            time.sleep(0.02)
        raise Fail("no 'listening on' line in the log")


def env_with(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    env.update(extra)
    return env


def xdms_argv(build, data):
    return [os.path.join(build, "xdms", "xdms"), "--role", "shared-list", "--data", data,
            "--http", "127.0.0.1:0", "--sip", "127.0.0.1:0", "--option", "metrics=127.0.0.1:0"]


def aggproxy_argv(build, data):
    return [os.path.join(build, "aggproxy", "aggproxy"), "--data", data, "--http", "127.0.0.1:0",
            "--option", "shared_list_url=unix:%s/sl/xdms.sock" % os.path.dirname(data),
            "--option", "metrics=127.0.0.1:0"]


def connects(family, addr):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(addr)
        return True
    except OSError:
        return False
    finally:
        s.close()


def check_xdms_ready_watchdog_stopping(build, tmp):
    mgr = Manager(tmp)
    data = os.path.join(tmp, "sl")
    srv = Daemon(xdms_argv(build, data),
                 env_with(NOTIFY_SOCKET=mgr.path, WATCHDOG_USEC="400000"),
                 os.path.join(tmp, "xdms.log"))
    try:
        _, before = mgr.wait_for("READY=1", 20)
        expect(before == [], "messages before READY=1: %r" % before)
        # READY=1 has arrived: both listeners must accept now, without waiting.
        port = srv.http_port(1)
        expect(connects(socket.AF_INET, ("127.0.0.1", port)), "HTTP port %d refused" % port)
        expect(connects(socket.AF_UNIX, os.path.join(data, "xdms.sock")), "xdms.sock refused")
        # Pings at half of 400 ms: five within 1.5 s at most, none later than 0.4 s apart.
        gaps = []
        t0 = time.monotonic()
        for _ in range(5):
            waited, others = mgr.wait_for("WATCHDOG=1", 1.0)
            expect(others == [], "unexpected notifications %r" % others)
            gaps.append(waited)
        expect(time.monotonic() - t0 < 1.5, "five pings took %.2f s" % (time.monotonic() - t0))
        expect(max(gaps[1:]) < 0.4, "a gap between pings of %.3f s (interval 0.2 s)" % max(gaps))
        srv.term()
        _, others = mgr.wait_for("STOPPING=1", 5)
        expect(all(m == ["WATCHDOG=1"] for m in others), "before STOPPING=1: %r" % others)
        rc = srv.stop()
        expect(rc == 0, "exit status %d after SIGTERM" % rc)
        # The watchdog thread is joined: nothing arrives after the process ended.
        late = mgr.recv(0.3)
        expect(late is None or late == ["WATCHDOG=1"], "after exit: %r" % late)
        expect(mgr.recv(0.3) is None, "notifications after the process ended")
    finally:
        srv.stop()
        mgr.close()
    return srv


def reload_and_expect(mgr, srv, log_line):
    """SIGHUP; RELOADING=1 + MONOTONIC_USEC, then the log line, then READY=1."""
    before = time.clock_gettime(time.CLOCK_MONOTONIC)
    srv.popen.send_signal(signal.SIGHUP)
    msg = mgr.recv(5)
    after = time.clock_gettime(time.CLOCK_MONOTONIC)
    expect(msg is not None and len(msg) == 2 and msg[0] == "RELOADING=1"
           and re.fullmatch(r"MONOTONIC_USEC=\d+", msg[1]), "after SIGHUP got %r" % msg)
    usec = int(msg[1].split("=")[1])
    expect(before * 1e6 - 1000 <= usec <= after * 1e6 + 1000,
           "MONOTONIC_USEC=%d is not between %d and %d" % (usec, before * 1e6, after * 1e6))
    msg = mgr.recv(5)
    expect(msg == ["READY=1"], "after RELOADING=1 got %r" % msg)
    expect(log_line in srv.output(), "no %r in the log" % log_line)


def check_reload_notifications(build, tmp):
    mgr = Manager(tmp)
    conf = os.path.join(tmp, "xdm.conf")
    write_config(conf, {"xdms": {"log_level": "info"}})
    srv = Daemon(xdms_argv(build, os.path.join(tmp, "sl")) + ["--config", conf],
                 env_with(NOTIFY_SOCKET=mgr.path), os.path.join(tmp, "xdms.log"))
    try:
        mgr.wait_for("READY=1", 20)
        reload_and_expect(mgr, srv, b"configuration reloaded")
        write_config(conf, {"xdms": {"log_level": "loud"}})
        reload_and_expect(mgr, srv, b"reload refused")
        expect(mgr.recv(0.3) is None, "more notifications after the reloads")
        srv.term()
        mgr.wait_for("STOPPING=1", 5)
        rc = srv.stop()
        expect(rc == 0, "exit status %d after SIGTERM" % rc)
    finally:
        srv.stop()
        mgr.close()
    return srv


def check_aggproxy_ready_no_watchdog(build, tmp):
    mgr = Manager(tmp)
    srv = Daemon(aggproxy_argv(build, os.path.join(tmp, "agg")), env_with(NOTIFY_SOCKET=mgr.path),
                 os.path.join(tmp, "aggproxy.log"))
    try:
        mgr.wait_for("READY=1", 20)
        port = srv.http_port(1)
        expect(connects(socket.AF_INET, ("127.0.0.1", port)), "HTTP port %d refused" % port)
        # No WATCHDOG_USEC: no pings.
        msg = mgr.recv(0.6)
        expect(msg is None, "without WATCHDOG_USEC got %r" % msg)
        srv.term()
        mgr.wait_for("STOPPING=1", 5)
        rc = srv.stop()
        expect(rc == 0, "exit status %d after SIGTERM" % rc)
    finally:
        srv.stop()
        mgr.close()
    return srv


def check_without_notify_socket(build, tmp):
    srv = Daemon(xdms_argv(build, os.path.join(tmp, "sl")), env_with(WATCHDOG_USEC="400000"),
                 os.path.join(tmp, "plain.log"))
    try:
        port = srv.http_port(20)
        expect(connects(socket.AF_INET, ("127.0.0.1", port)), "HTTP port %d refused" % port)
        rc = srv.stop()
        expect(rc == 0, "exit status %d after SIGTERM" % rc)
        expect(b"watchdog" not in srv.output(), "a watchdog started without NOTIFY_SOCKET")
    finally:
        srv.stop()
    return srv


CHECKS = [
    ("xdms: READY=1 after the listeners, WATCHDOG=1 every half interval, STOPPING=1",
     check_xdms_ready_watchdog_stopping),
    ("aggproxy: READY=1 after the listener, no WATCHDOG=1 without WATCHDOG_USEC, STOPPING=1",
     check_aggproxy_ready_no_watchdog),
    ("xdms: SIGHUP sends RELOADING=1 with MONOTONIC_USEC, then READY=1 (applied and refused)",
     check_reload_notifications),
    ("xdms without NOTIFY_SOCKET: starts and stops as before", check_without_notify_socket),
]


def main():
    args = script_args(__doc__)
    build = os.path.abspath(os.path.join(ROOT, args.build))
    tally = Tally()
    for name, check in selected(CHECKS, args.filter, lambda c: c[0]):
        tmp = tempfile.mkdtemp(prefix="xdm-sdnotify-")

        def run():
            srv = check(build, tmp)
            out = srv.output()
            if has_sanitizer_report(out):
                raise Fail("sanitizer report:\n" + out.decode(errors="replace")[-3000:])

        if not tally.check(name, run, errors=(Fail,)):
            for log in logs_in(tmp):
                print("  %s:\n%s" % (os.path.basename(log),
                                     read_bytes(log).decode(errors="replace")[-2000:]))
        shutil.rmtree(tmp, ignore_errors=True)
    return tally.finish()


if __name__ == "__main__":
    sys.exit(main())
