"""What the notification scenarios with many subscriptions share (notify_index.py,
notify_expiry.py): one `xdms --role shared-list` in a temporary directory (on tmpfs when there is
one), PUTs of alice's index over its UNIX-domain socket, and one in-process SIP peer over TCP that
plays the SIP proxy (P-Asserted-Identity from 127.0.0.1) and every subscriber: SUBSCRIBEs on one
connection to the XDMS, NOTIFYs accepted on a listener of its own and answered 200.

A scenario subclasses Peer and says what a NOTIFY means to it (notified()); its subscriptions are
Sub objects (or subclasses) in self.subs by Call-ID. Also the PASS/FAIL lines of these scripts
(check, results). Standard library only.
"""

import http.client
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time

from harness import free_port

ALICE = "sip:alice@example.com"
DOC_PATH = "/xcap-root/resource-lists/users/%s/index" % ALICE
CONTENT_LENGTH = re.compile(rb"\r\n(?:[Cc]ontent-[Ll]ength|l)[ \t]*:[ \t]*([0-9]+)")
# The headers a 200 to a NOTIFY copies from it (full and compact forms).
ANSWER_HEADERS = (b"via", b"v", b"from", b"f", b"to", b"t", b"call-id", b"i", b"cseq")

results = []


def check(cond, what):
    results.append(bool(cond))
    print("%s %s" % ("PASS" if cond else "FAIL", what))
    sys.stdout.flush()


def header(head, names):
    """The value of the first header of a SIP message head named one of names (lower case)."""
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() in names:
            return v.strip()
    return b""


def answer(head):
    """The 200 OK that answers the request whose head this is."""
    lines = [b"SIP/2.0 200 OK"]
    for line in head.split(b"\r\n")[1:]:
        if line.partition(b":")[0].strip().lower() in ANSWER_HEADERS:
            lines.append(line)
    lines.append(b"Content-Length: 0\r\n\r\n")
    return b"\r\n".join(lines)


class Conn:
    """A non-blocking SIP-over-TCP connection: feed() returns the whole messages received so
    far as (head, body) (None once the peer closed it); send() writes all (10 s limit)."""

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
    """One subscription: the identity asserted, the resource-lists entry it watches, the
    Expires it asks for."""

    def __init__(self, tag, i, identity, entry, expires):
        self.i, self.identity, self.entry, self.expires = i, identity, entry, expires
        self.call_id = "%s-%d@127.0.0.1" % (tag, i)
        self.to = None          # the To of the 200, with the XDMS's tag
        self.cseq = 1
        self.sent = None        # monotonic time the (last) SUBSCRIBE was sent
        self.answered = None    # ... and its 200 arrived
        self.initial = False    # its initial NOTIFY arrived
        self.refused = None     # the status line of a final answer other than 2xx


class Peer:
    """The XDMS and the SIP peer of one scenario; tag tells its Call-IDs, branches and Contact
    apart, prefix names its temporary directory."""

    DOC = ('<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists '
           'xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="v%d"/></resource-lists>\n')

    def __init__(self, args, prefix, tag):
        self.args, self.tag = args, tag
        # tmpfs when there is one: each SUBSCRIBE is saved with a durable commit, which on a
        # disk would make the set-up of thousands take minutes; durability is not tested here.
        shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        self.tmp = tempfile.mkdtemp(prefix=prefix, dir=shm)
        self.http_port, self.sip_port = free_port(), free_port(udp_too=True)
        self.sock_path = os.path.join(self.tmp, "data", "xdms.sock")
        self.log_path = os.path.join(self.tmp, "xdms.log")
        self.sel = selectors.DefaultSelector()
        self.subs = {}
        self.proc = None
        self.out = None
        self.listener = None
        self.contact = None
        self.branch = 0

    def config(self):
        """Lines of the [xdms] section besides the trusted SIP proxy, no admin listener,
        min_expires = 1 and notifications without a minimum interval."""
        return ""

    def start(self):
        with open(os.path.join(self.tmp, "xdm.conf"), "w") as f:
            f.write("[xdms]\nsip_trusted_peer = 127.0.0.1\nmetrics = off\nmin_expires = 1\n"
                    "notify_min_interval_ms = 0\n" + self.config())
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
        """SIGTERM (answering any NOTIFY sent while it stops), SIGKILL after 15 s; closes the
        connection to it. Its exit status."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            end = time.monotonic() + 15
            while self.proc.poll() is None and time.monotonic() < end:
                self.pump(0.05)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        if self.out:
            self.sel.unregister(self.out.sock)
            self.out.sock.close()
            self.out = None
        return self.proc.returncode if self.proc else 0

    def output(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()
        except OSError:
            return b""

    def listen(self):
        """The listener the XDMS connects to for its NOTIFYs (the subscribers' Contact)."""
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.contact = self.listener.getsockname()[1]
        self.sel.register(self.listener, selectors.EVENT_READ, None)

    def put(self, k):
        """PUTs version k of alice's index (DOC % k) over the socket; the status."""
        conn = http.client.HTTPConnection("localhost", timeout=30)
        conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.sock.settimeout(30)
        conn.sock.connect(self.sock_path)
        conn.request("PUT", DOC_PATH, body=(self.DOC % k).encode(),
                     headers={"Content-Type": "application/resource-lists+xml",
                              "X-3GPP-Asserted-Identity": '"%s"' % ALICE})
        r = conn.getresponse()
        r.read()
        conn.close()
        return r.status

    def subscribe(self, s, expires=None, in_dialog=False):
        """Sends s's SUBSCRIBE (in_dialog: a refresh, or with expires=0 an unsubscribe)."""
        self.branch += 1
        body = ('<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list>'
                '<entry uri="%s"/></list></resource-lists>' % s.entry).encode()
        if in_dialog:
            s.cseq += 1
            body = b""
        msg = ("SUBSCRIBE sip:alice@example.com SIP/2.0\r\n"
               "Via: SIP/2.0/TCP 127.0.0.1:%d;branch=z9hG4bK-%s%d\r\n"
               "Max-Forwards: 70\r\nFrom: <%s>;tag=f%d\r\nTo: %s\r\n"
               "Call-ID: %s\r\nCSeq: %d SUBSCRIBE\r\n"
               "Contact: <sip:%s@127.0.0.1:%d;transport=tcp>\r\nEvent: xcap-diff\r\n"
               "Expires: %d\r\nP-Asserted-Identity: <%s>\r\n"
               % (self.contact, self.tag, self.branch, s.identity, s.i,
                  s.to.decode() if in_dialog else "<sip:alice@example.com>", s.call_id, s.cseq,
                  self.tag, self.contact, s.expires if expires is None else expires, s.identity))
        if body:
            msg += "Content-Type: application/resource-lists+xml\r\n"
        msg += "Content-Length: %d\r\n\r\n" % len(body)
        s.answered = None
        s.sent = time.monotonic()
        self.out.send(msg.encode() + body)

    def notified(self, s, state, body, now, initial):
        """A NOTIFY of s arrived at now with that Subscription-State and body (initial: its
        first)."""

    def pump(self, timeout):
        """Waits up to timeout for messages and handles them: 200s and refusals of SUBSCRIBEs,
        NOTIFYs (answered 200, then notified())."""
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
            for head, body in msgs:
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
                answers.append(answer(head))
                if s:
                    initial = not s.initial
                    s.initial = True
                    self.notified(s, header(head, (b"subscription-state",)), body, now, initial)
            if answers:
                conn.send(b"".join(answers))
