#!/usr/bin/env python3
"""A subscription ends when its granted duration runs out, neither before nor long after
(RFC 6665 §4.1.2.2 and §4.2.2: "terminated;reason=timeout"), whatever the other subscriptions.

One `xdms --role shared-list` (min_expires = 1) holds a few hundred long subscriptions (an hour);
then eight short ones (Expires: 2) are sent 125 ms apart, so their ends fall at eight different
points of a second. This test plays the SIP proxy (P-Asserted-Identity from 127.0.0.1) and every
subscriber, over TCP, in one process, and checks, each step bounded in time:

1. every subscription is accepted (200, then its initial NOTIFY);
2. each short subscription gets its final NOTIFY with "terminated;reason=timeout" no sooner than
   2 s after its SUBSCRIBE was sent and at most 2 s + SLACK after its 200 arrived (a notifier that
   looks at expiries only once a second ends some of them early or late by up to a second: eight
   ends spread over a second cannot all fall in a window of SLACK < 0.8 s that way); a round
   with a late end and no early one is repeated once (a busy machine may hold a process back;
   nothing makes an end early);
3. a refresh moves the end: a subscription of 2 s refreshed after 1 s for 3 s more ends 3 s after
   the refresh (not at its first end), and the NOTIFY that answers the refresh says
   "active;expires=N" with N the whole seconds left (2 or 3);
4. no long subscription was ended meanwhile;
5. the XDMS stops cleanly (exit 0, no sanitizer report).

    python3 tests/e2e/notify_expiry.py --build build [-v] [--others 300]

Prints one PASS/FAIL line per check and `counts: P passed, F failed`; exits non-zero when a check
failed. Standard library only.
"""

import argparse
import http.client
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SANITIZER_RE = re.compile(rb"ERROR: (Address|Leak|Undefined)Sanitizer|runtime error:")
ALICE = "sip:alice@example.com"
DOC_PATH = "/xcap-root/resource-lists/users/%s/index" % ALICE
DOC = ('<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists '
       'xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="v%d"/></resource-lists>\n')
CONTENT_LENGTH = re.compile(rb"\r\n(?:[Cc]ontent-[Ll]ength|l)[ \t]*:[ \t]*([0-9]+)")
PER_IDENTITY = 100
SHORT = 2          # seconds granted to the short subscriptions
SHORTS = 8         # short subscriptions, sent SPACING apart
SPACING = 0.125
SLACK = 0.6        # how long after its end a final NOTIFY may arrive

results = []


def check(cond, what):
    results.append(bool(cond))
    print("%s %s" % ("PASS" if cond else "FAIL", what))
    sys.stdout.flush()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def header(head, names):
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() in names:
            return v.strip()
    return b""


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        sock.setblocking(False)

    def feed(self):
        try:
            data = self.sock.recv(1 << 20)
        except BlockingIOError:
            return []
        except ConnectionError:
            return None
        if not data:
            return None
        buf = self.buf + data
        out, pos = [], 0
        while True:
            end = buf.find(b"\r\n\r\n", pos)
            if end < 0:
                break
            m = CONTENT_LENGTH.search(buf[pos:end + 4])
            length = int(m.group(1)) if m else 0
            if len(buf) < end + 4 + length:
                break
            out.append((buf[pos:end + 4], buf[end + 4:end + 4 + length]))
            pos = end + 4 + length
        self.buf = buf[pos:]
        return out

    def send(self, data):
        view = memoryview(data)
        end = time.monotonic() + 10
        while view:
            try:
                view = view[self.sock.send(view):]
            except BlockingIOError:
                if time.monotonic() > end:
                    raise RuntimeError("cannot send to the XDMS")
                time.sleep(0.005)


class Sub:
    def __init__(self, i, identity, entry, expires):
        self.i, self.identity, self.entry, self.expires = i, identity, entry, expires
        self.call_id = "exp-%d@127.0.0.1" % i
        self.to = None
        self.cseq = 1
        self.sent = None        # monotonic time the (last) SUBSCRIBE was sent
        self.answered = None    # ... and its 200 arrived
        self.initial = False
        self.states = []        # (time, Subscription-State) of the NOTIFYs after the initial
        self.ended = None       # time of the terminated NOTIFY
        self.reason = b""
        self.refused = None


class Test:
    def __init__(self, args):
        self.args = args
        shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        self.tmp = tempfile.mkdtemp(prefix="xdm-notify-expiry-", dir=shm)
        self.http_port, self.sip_port = free_port(), free_port()
        self.sock_path = os.path.join(self.tmp, "data", "xdms.sock")
        self.sel = selectors.DefaultSelector()
        self.subs = {}
        self.proc = None
        self.out = None
        self.log_path = os.path.join(self.tmp, "xdms.log")
        self.branch = 0
        self.count = 0

    def start(self):
        with open(os.path.join(self.tmp, "xdm.conf"), "w") as f:
            f.write("[xdms]\nsip_trusted_peer = 127.0.0.1\nmetrics = off\nmin_expires = 1\n"
                    "notify_min_interval_ms = 0\n")
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [os.path.join(self.args.build, "xdms", "xdms"), "--role", "shared-list", "--config",
             os.path.join(self.tmp, "xdm.conf"), "--data", os.path.join(self.tmp, "data"),
             "--http", "127.0.0.1:%d" % self.http_port, "--sip", "127.0.0.1:%d" % self.sip_port,
             "--xcap-root", "http://127.0.0.1:%d/xcap-root/" % self.http_port,
             "--log-level", "warn"], stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        log.close()
        end = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.http_port), timeout=1).close()
                if os.path.exists(self.sock_path):
                    break
            except OSError:
                pass
            if time.monotonic() > end or self.proc.poll() is not None:
                raise RuntimeError("the XDMS did not start:\n"
                                   + self.output().decode(errors="replace"))
            time.sleep(0.05)
        self.out = Conn(socket.create_connection(("127.0.0.1", self.sip_port), timeout=5))
        self.sel.register(self.out.sock, selectors.EVENT_READ, self.out)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            end = time.monotonic() + 15
            while self.proc.poll() is None and time.monotonic() < end:
                self.pump(0.05)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else 0

    def output(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()
        except OSError:
            return b""

    def listen(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.contact = self.listener.getsockname()[1]
        self.sel.register(self.listener, selectors.EVENT_READ, None)

    def put(self, k):
        conn = http.client.HTTPConnection("localhost", timeout=30)
        conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.sock.settimeout(30)
        conn.sock.connect(self.sock_path)
        conn.request("PUT", DOC_PATH, body=(DOC % k).encode(),
                     headers={"Content-Type": "application/resource-lists+xml",
                              "X-3GPP-Asserted-Identity": '"%s"' % ALICE})
        r = conn.getresponse()
        r.read()
        conn.close()
        return r.status

    def add(self, identity, entry, expires):
        s = Sub(self.count, identity, entry, expires)
        self.count += 1
        self.subs[s.call_id] = s
        return s

    def subscribe(self, s, expires=None, in_dialog=False):
        self.branch += 1
        body = ('<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list>'
                '<entry uri="%s"/></list></resource-lists>' % s.entry).encode()
        if in_dialog:
            s.cseq += 1
            body = b""
        msg = ("SUBSCRIBE sip:alice@example.com SIP/2.0\r\n"
               "Via: SIP/2.0/TCP 127.0.0.1:%d;branch=z9hG4bK-exp%d\r\n"
               "Max-Forwards: 70\r\nFrom: <%s>;tag=f%d\r\nTo: %s\r\n"
               "Call-ID: %s\r\nCSeq: %d SUBSCRIBE\r\n"
               "Contact: <sip:exp@127.0.0.1:%d;transport=tcp>\r\nEvent: xcap-diff\r\n"
               "Expires: %d\r\nP-Asserted-Identity: <%s>\r\n"
               % (self.contact, self.branch, s.identity, s.i,
                  s.to.decode() if in_dialog else "<sip:alice@example.com>", s.call_id, s.cseq,
                  self.contact, s.expires if expires is None else expires, s.identity))
        if body:
            msg += "Content-Type: application/resource-lists+xml\r\n"
        msg += "Content-Length: %d\r\n\r\n" % len(body)
        s.answered = None
        s.sent = time.monotonic()
        self.out.send(msg.encode() + body)

    def pump(self, timeout):
        for key, _ in self.sel.select(timeout):
            now = time.monotonic()
            if key.data is None:
                try:
                    sock, _ = self.listener.accept()
                except BlockingIOError:
                    continue
                self.sel.register(sock, selectors.EVENT_READ, Conn(sock))
                continue
            conn = key.data
            msgs = conn.feed()
            if msgs is None:
                self.sel.unregister(conn.sock)
                conn.sock.close()
                if conn is self.out:
                    self.out = None
                continue
            answers = []
            for head, _ in msgs:
                s = self.subs.get(header(head, (b"call-id", b"i")).decode())
                if head.startswith(b"SIP/2.0 "):
                    if s and b"SUBSCRIBE" in header(head, (b"cseq",)):
                        if head[8:9] == b"2":
                            s.answered = now
                            s.to = header(head, (b"to", b"t"))
                        elif head[8:9] != b"1":
                            s.refused = head.split(b"\r\n")[0]
                    continue
                if not head.startswith(b"NOTIFY "):
                    continue
                lines = [b"SIP/2.0 200 OK"]
                for line in head.split(b"\r\n")[1:]:
                    k = line.partition(b":")[0].strip().lower()
                    if k in (b"via", b"v", b"from", b"f", b"to", b"t", b"call-id", b"i", b"cseq"):
                        lines.append(line)
                lines.append(b"Content-Length: 0\r\n\r\n")
                answers.append(b"\r\n".join(lines))
                if not s:
                    continue
                state = header(head, (b"subscription-state",))
                if not s.initial:
                    s.initial = True
                else:
                    s.states.append((now, state))
                if state.startswith(b"terminated") and s.ended is None:
                    s.ended = now
                    s.reason = state
            if answers:
                conn.send(b"".join(answers))

    def wait(self, what, cond, limit):
        end = time.monotonic() + limit
        while not cond():
            if time.monotonic() > end:
                raise RuntimeError("time limit waiting for %s" % what)
            refused = [s for s in self.subs.values() if s.refused]
            if refused:
                raise RuntimeError("SUBSCRIBE refused: %s" % refused[0].refused)
            self.pump(0.01)

    def run(self):
        self.listen()
        self.start()
        if self.put(0) not in (200, 201):
            raise RuntimeError("initial PUT failed")
        longs = []
        for k in range(self.args.others):
            who = "sip:u%d@example.com" % (k // PER_IDENTITY)
            longs.append(self.add(who, "resource-lists/users/%s/d%d" % (who, k), 3600))
        sent = 0
        end = time.monotonic() + 60
        while not all(s.initial and s.answered for s in longs):
            while sent < len(longs) and sent - sum(1 for s in longs[:sent] if s.initial) < 200:
                self.subscribe(longs[sent])
                sent += 1
            self.pump(0.05)
            if time.monotonic() > end:
                raise RuntimeError("time limit while subscribing")
        # A round of short subscriptions; a second round only when the first saw an end late
        # and none early: a busy machine may hold a process back, but no delay makes an end
        # come early.
        for attempt in (1, 2):
            result = self.round(longs)
            if result["ok"] or result["early"] or attempt == 2:
                break
            print("NOTE round 1 saw a late end (a busy machine?): %s; once more"
                  % result["spread"])
        check(result["accepted"], "%d subscriptions accepted, each with its initial NOTIFY"
              % (len(longs) + SHORTS + 1))
        check(result["shorts_ok"],
              "each of %d subscriptions of %d s ends with reason=timeout after %d s to %d.%d s "
              "(seconds from each SUBSCRIBE to its final NOTIFY: %s)"
              % (SHORTS, SHORT, SHORT, SHORT, int(SLACK * 10), result["spread"]))
        check(result["refresh_ok"], result["refresh"])
        check(result["state_ok"], result["state"])
        check(not any(s.ended for s in longs),
              "none of the %d subscriptions of an hour ended" % len(longs))

    def round(self, longs):
        user = "resource-lists/users/%s/" % ALICE
        shorts = [self.add(ALICE, user + "index", SHORT) for _ in range(SHORTS)]
        refreshed = self.add(ALICE, user + "index", SHORT)
        self.subscribe(refreshed)
        for s in shorts:
            self.subscribe(s)
            t = time.monotonic() + SPACING
            while time.monotonic() < t:
                self.pump(max(0.0, t - time.monotonic()))
        self.wait("the short subscriptions' 200s and initial NOTIFYs",
                  lambda: all(s.answered and s.initial for s in shorts + [refreshed]), 10)
        r = {"accepted": all(s.initial for s in longs + shorts + [refreshed])}
        # The refresh, one second into the first grant of SHORT seconds.
        t = refreshed.sent + 1.0
        while time.monotonic() < t:
            self.pump(max(0.0, t - time.monotonic()))
        first_sent = refreshed.sent
        self.subscribe(refreshed, expires=SHORT + 1, in_dialog=True)
        self.wait("the final NOTIFYs of the short subscriptions",
                  lambda: all(s.ended for s in shorts + [refreshed]), SHORT + 10)
        early = [s for s in shorts if s.ended - s.sent < SHORT - 1e-4]
        late = [s for s in shorts if s.ended - s.answered > SHORT + SLACK]
        r["spread"] = " ".join("%.3f" % (s.ended - s.sent) for s in shorts)
        r["shorts_ok"] = (all(s.reason.startswith(b"terminated;reason=timeout") for s in shorts)
                          and not early and not late)
        after = refreshed.ended - refreshed.sent
        r["early"] = bool(early) or refreshed.ended - first_sent < SHORT + 1 or after < SHORT + 1
        r["refresh_ok"] = (refreshed.reason.startswith(b"terminated;reason=timeout")
                           and not r["early"]
                           and after <= SHORT + 1 + SLACK + (refreshed.answered - refreshed.sent))
        r["refresh"] = ("a refresh after 1 s for %d s more moves the end: final NOTIFY %.2f s after "
                        "the refresh, %.2f s after the first SUBSCRIBE"
                        % (SHORT + 1, after, refreshed.ended - first_sent))
        states = [st for at, st in refreshed.states if at >= refreshed.sent]
        r["state_ok"] = len(states) >= 2 and states[0] in (b"active;expires=%d" % (SHORT + 1),
                                                             b"active;expires=%d" % SHORT)
        r["state"] = ("the NOTIFY answering the refresh says the whole seconds left: %s"
                      % (states[0].decode() if states else "none"))
        r["ok"] = r["accepted"] and r["shorts_ok"] and r["refresh_ok"] and r["state_ok"]
        return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--others", type=int, default=300)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("-v", action="store_true")
    ap.add_argument("--filter", action="append")
    args = ap.parse_args()
    t = Test(args)
    try:
        t.run()
    except (RuntimeError, OSError) as e:
        check(False, "scenario: %s" % e)
    finally:
        rc = t.stop()
        out = t.output()
        check(rc == 0, "the XDMS stops cleanly (exit %s)" % rc)
        check(not SANITIZER_RE.search(out), "no sanitizer report in the XDMS's output")
        if args.v or not all(results):
            sys.stdout.write(out.decode(errors="replace")[-3000:])
        if args.keep:
            print("kept %s" % t.tmp)
        else:
            shutil.rmtree(t.tmp, ignore_errors=True)
    passed = sum(results)
    print("counts: %d passed, %d failed" % (passed, len(results) - passed))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
