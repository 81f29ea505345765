"""The harness shared by the end-to-end runner (run.py) and the scenario scripts of tests/e2e/:
free loopback ports, process start with wait-until-ready, stop by PID with a bounded wait and a
kill, log tails and sanitizer scans, the one rule for a port taken before the server bound it,
the configuration-file writer, the PASS/FAIL tally, and the Deployment (proxy and four XDMSs)
of the case runner.

Python 3 standard library only. Every wait here is bounded in time; every process is stopped by
its own PID (each runs in a session of its own, so a terminal's Ctrl-C does not reach it).
"""

import hashlib
import http.client
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.dirname(os.path.dirname(HERE))
LOOPBACK = "127.0.0.1"

# Binaries, relative to the build directory.
BIN_XDMS = "xdms/xdms"
BIN_PROXY = "aggproxy/aggproxy"
BIN_XDMCTL = "tools/xdmctl"
BIN_SIPUA = "tests/sipua/xdm-sipua"

XDMS_ROLES = ("shared-list", "presence", "rls", "ut")
ALL_PROCS = ("proxy",) + XDMS_ROLES
PROXY_URL_KEYS = {"shared-list": "shared_list_url", "presence": "presence_url", "rls": "rls_url",
                  "ut": "ut_url"}

# A line holding one of these in a process's output fails the test that started it.
SANITIZER_PATTERNS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",
    "WARNING: ThreadSanitizer",
)

# Multiplies every timeout (slow machines, sanitizers).
TIME_SCALE = float(os.environ.get("XDM_E2E_TIME_SCALE", "1"))


class Fail(Exception):
    """A failed check or step: the message becomes the FAIL reason."""


class PortTaken(Fail):
    """The process exited at start because a port it was given was taken meanwhile."""

    def __init__(self, message, port):
        super().__init__(message)
        self.port = port


def expect(cond, what):
    if not cond:
        raise Fail(what)


# --------------------------------------------------------------------------------------------
# Ports

_port_lock = threading.Lock()
_ports_given = set()
_random = random.SystemRandom()
# Ports are picked below the kernel's ephemeral range (ip_local_port_range): that range is where
# every outgoing connection and every bind to port 0 gets its port, so a port found free there
# is easily taken before the server binds it. Above PICK_LOW: no well-known service.
PICK_LOW = 10000


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _bindable(port, kind):
    s = socket.socket(socket.AF_INET, kind)
    try:
        s.bind((LOOPBACK, port))
        return s.getsockname()[1]
    except OSError:
        return None
    finally:
        s.close()


def free_port(udp_too=False):
    """A loopback port free now for TCP (and, with udp_too, for UDP too: the SIP listeners bind
    both), never handed out twice in one run, so parallel users do not collide. Picked at random
    between PICK_LOW and the ephemeral range when there is room, else by binding port 0."""
    low = _ephemeral_low()
    for _ in range(200):
        pick = _random.randrange(PICK_LOW, low) if low > PICK_LOW + 1000 else 0
        port = _bindable(pick, socket.SOCK_STREAM)
        if port is None or (udp_too and _bindable(port, socket.SOCK_DGRAM) is None):
            continue
        with _port_lock:
            if port in _ports_given:
                continue
            _ports_given.add(port)
        return port
    raise Fail("could not find a free loopback port")


# The servers' own words when a listener cannot be opened: common/httpd.c ("cannot listen on
# HOST port N") and the SIP notifier ("cannot listen on sip:HOST:N").
_TAKEN_RE = re.compile(rb"cannot (?:listen on|bind) (\S+)(?: port |:)(\d+)\b")


def taken_port(log, since=0):
    """The port a server's log (from byte `since`) says it could not listen on, or None."""
    m = _TAKEN_RE.search(read_bytes(log)[since:])
    return int(m.group(2)) if m else None


def retry_on_taken_port(start, repick, attempts=3):
    """The one rule for a port taken before the server bound it: a port found free can be taken
    by someone's outgoing connection (the kernel hands the same range to both) before the server
    binds it. start() starts a process and waits until it is ready; when it raises PortTaken,
    repick(port) picks a new port for that one and returns True, or returns False when the port
    cannot change any more (something else was already told about it). At most `attempts`
    starts."""
    for attempt in range(attempts):
        try:
            return start()
        except PortTaken as e:
            if attempt == attempts - 1 or not repick(e.port):
                raise


def wait_for(what, fn, limit):
    """Polls fn() every 50 ms until it returns something true, and returns that; fails naming
    what when limit s (times TIME_SCALE) pass without."""
    limit *= TIME_SCALE
    deadline = time.monotonic() + limit
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise Fail("timed out after %.1fs waiting for %s" % (limit, what))
        time.sleep(0.05)


# --------------------------------------------------------------------------------------------
# Logs

def read_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def tail(path, lines=25):
    """The last lines of a log, indented, for a failure message."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return "(no log)"
    text = data.decode("utf-8", "replace").rstrip("\n").split("\n")
    return "\n".join("    | " + l for l in text[-lines:])


def describe_rc(rc):
    if rc is None:
        return "no exit status"
    if rc < 0:
        try:
            return "signal %s" % signal.Signals(-rc).name
        except ValueError:
            return "signal %d" % -rc
    return "exit code %d" % rc


def has_sanitizer_report(output):
    """Whether a process's output (bytes or text) holds a sanitizer report."""
    if isinstance(output, bytes):
        output = output.decode("utf-8", "replace")
    return any(pat in output for pat in SANITIZER_PATTERNS)


def sanitizer_reports(logs):
    """One problem per log whose text holds a sanitizer report (its first such line)."""
    found = []
    for log in logs:
        text = read_bytes(log).decode("utf-8", "replace")
        for line in text.split("\n"):
            if any(pat in line for pat in SANITIZER_PATTERNS):
                found.append("sanitizer report in %s: %s" % (os.path.basename(log),
                                                              line.strip()[:300]))
                break
    return found


def logs_in(directory):
    """The *.log files directly in a directory, sorted."""
    try:
        return sorted(os.path.join(directory, f) for f in os.listdir(directory)
                      if f.endswith(".log"))
    except OSError:
        return []


# --------------------------------------------------------------------------------------------
# Configuration files

def write_config(path, sections=(), comment=None):
    """Writes an xdm.conf: an optional comment line, then each (section, [(key, value), ...]) in
    order (a key may repeat, e.g. trusted_peer). sections may also be a dict section -> dict or
    list. The file is replaced atomically (a running server may reload it). Returns path."""
    items = sections.items() if isinstance(sections, dict) else sections
    out = []
    if comment:
        out.append("# " + comment)
    for section, keys in items:
        out.append("[%s]" % section)
        pairs = keys.items() if isinstance(keys, dict) else keys
        out += ["%s = %s" % (k, v) for k, v in pairs]
    with open(path + ".new", "w") as f:
        f.write("\n".join(out) + "\n")
    os.replace(path + ".new", path)
    return path


# --------------------------------------------------------------------------------------------
# Processes

def spawn(argv, log, cwd=None, env=None, mode="wb", stdout_pipe=False, stdin_pipe=False):
    """Starts argv in a session of its own with its output in `log` (after a first line "# argv";
    mode "ab" appends to an earlier incarnation's). With stdout_pipe only stderr goes to the log.
    The Popen gets .log (the path) and .log_start (where this incarnation's output begins)."""
    with open(log, mode) as lf:
        lf.write(("# " + " ".join(shlex.quote(a) for a in argv) + "\n").encode())
        lf.flush()
        start = lf.tell()
        popen = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
                                 stdout=subprocess.PIPE if stdout_pipe else lf,
                                 stderr=lf if stdout_pipe else subprocess.STDOUT, cwd=cwd,
                                 env=env, start_new_session=True)
    popen.log, popen.log_start = log, start
    return popen


def _connects(addr, family=socket.AF_INET):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(0.5)
    try:
        s.connect(addr)
        return True
    except OSError:
        return False
    finally:
        s.close()


def _exited(popen, name, when):
    """The failure of a process that exited at start: PortTaken when its log names a port it
    could not listen on, else Fail; both with the log's tail."""
    taken = taken_port(popen.log, popen.log_start)
    msg = "%s exited with %s %s\n%s" % (name, describe_rc(popen.returncode), when,
                                       tail(popen.log))
    return PortTaken(msg, taken) if taken is not None else Fail(msg)


def wait_ready(popen, name, port=None, socket_path=None, limit=20.0, line=b"listening",
               line_wait=3.0, line_required=False):
    """Waits until the process accepts connections: on LOOPBACK:port and/or its UNIX-domain
    socket (within `limit` s); then up to line_wait s for `line` in this incarnation's output
    (the HTTP port may open before the SIP stack), failing only when line_required, or when it
    exited meanwhile (a port that accepted may be another process's listener, or one of its own
    listeners came up before another failed). Raises PortTaken when it exited naming a taken
    port, else Fail, both with the log's tail."""
    deadline = time.monotonic() + limit
    while True:
        if popen.poll() is not None:
            raise _exited(popen, name, "before accepting connections")
        if (port is None or _connects((LOOPBACK, port))) and \
                (socket_path is None or _connects(socket_path, socket.AF_UNIX)):
            break
        if time.monotonic() > deadline:
            where = ", ".join(x for x in ("%s:%d" % (LOOPBACK, port) if port else None,
                                          socket_path) if x)
            raise Fail("%s did not accept connections on %s within %.0fs\n%s"
                       % (name, where, limit, tail(popen.log)))
        time.sleep(0.05)
    if not line:
        return
    grace = time.monotonic() + line_wait
    seen = False
    while time.monotonic() < grace and not seen:
        seen = line in read_bytes(popen.log)[popen.log_start:]
        if popen.poll() is not None:
            raise _exited(popen, name, "at start, after its port accepted a connection")
        if not seen:
            time.sleep(0.05)
    if line_required and not seen:
        raise Fail("%s did not log %r within %.0fs\n%s" % (name, line.decode(), line_wait,
                                                           tail(popen.log)))


def stop_popen(popen, name, sig=signal.SIGTERM, timeout=10.0):
    """Stops a process by its PID: sig, then up to timeout s for its exit, then SIGKILL. Returns
    a problem (not exited in time, or an exit status other than 0 or by that signal) or None.
    A process that had already exited is no problem here (see Server.died)."""
    if popen is None or popen.poll() is not None:
        return None
    try:
        popen.send_signal(sig)
    except ProcessLookupError:
        pass
    if sig == signal.SIGKILL:
        popen.wait()
        return None
    try:
        popen.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait()
        return "%s did not exit within %.0fs of %s (killed)" % (name, timeout,
                                                               signal.Signals(sig).name)
    rc = popen.returncode
    if rc not in (0, -sig):
        log = getattr(popen, "log", None)
        return "%s exited with %s after %s%s" % (name, describe_rc(rc), signal.Signals(sig).name,
                                                 "\n" + tail(log) if log else "")
    return None


class Server:
    """One process a script starts (a server, a tool in the background): its own log (appended
    to across restarts), ready when its port and/or UNIX-domain socket accept a connection,
    stopped by PID. `popen`, `log` and `name` are what checks use directly."""

    def __init__(self, name, argv, log, port=None, socket=None, cwd=None, env=None,
                 line=b"listening", line_wait=3.0, line_required=False, limit=20.0):
        self.name, self.argv, self.log = name, argv, log
        self.port, self.socket = port, socket
        self.cwd, self.env = cwd, env
        self.line, self.line_wait, self.line_required = line, line_wait, line_required
        self.limit = limit
        self.popen = None
        self.expected_exit = True
        self.signalled = False

    def start(self, wait=True, port=None):
        """Starts it (again); with wait, until ready (port: the one to wait on, if not the
        constructor's)."""
        if port is not None:
            self.port = port
        if not os.path.exists(self.argv[0]) and os.path.isabs(self.argv[0]):
            raise Fail("binary not found: %s" % self.argv[0])
        self.popen = spawn(self.argv, self.log, cwd=self.cwd, env=self.env, mode="ab")
        self.expected_exit = False
        self.signalled = False
        if wait:
            wait_ready(self.popen, self.name, self.port, self.socket,
                       limit=self.limit * TIME_SCALE, line=self.line,
                       line_wait=self.line_wait * TIME_SCALE, line_required=self.line_required)
        return self

    def running(self):
        return self.popen is not None and self.popen.poll() is None

    def term(self):
        """One SIGTERM (a second call sends none)."""
        if not self.signalled and self.running():
            self.expected_exit = True
            self.popen.send_signal(signal.SIGTERM)
        self.signalled = True

    def wait_exit(self, timeout=10.0):
        """Its exit status within timeout s; else it is killed and that fails."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise Fail("%s did not exit within %.0f s of SIGTERM" % (self.name, timeout))

    def stop(self, timeout=10.0):
        """SIGTERM and a bounded wait (then SIGKILL); a problem or None."""
        if self.popen is None:
            return None
        self.expected_exit = True
        return stop_popen(self.popen, self.name, timeout=timeout * TIME_SCALE)

    def kill9(self):
        if self.running():
            self.expected_exit = True
            self.popen.kill()
            self.popen.wait(timeout=10)

    def died(self):
        """A problem when it exited without being told to (reported once), else None."""
        if self.popen is not None and not self.expected_exit and self.popen.poll() is not None:
            self.expected_exit = True
            return "%s exited unexpectedly with %s\n%s" % (
                self.name, describe_rc(self.popen.returncode), tail(self.log))
        return None

    def output(self):
        return read_bytes(self.log)


def run_tool(argv, log, cwd=None, env=None, timeout=60):
    """Runs a command to its end with its output appended to log; fails on a non-zero exit."""
    with open(log, "ab") as f:
        f.write(("# " + " ".join(shlex.quote(a) for a in argv) + "\n").encode())
        f.flush()
        try:
            rc = subprocess.call(argv, stdout=f, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, cwd=cwd, env=env, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Fail("%s did not finish within %d s, see %s" % (" ".join(argv[:3]), timeout,
                                                                log))
    if rc != 0:
        raise Fail("%s failed (%s), see %s\n%s" % (" ".join(argv[:3]), describe_rc(rc), log,
                                                  tail(log)))


def make_certs(d, log, cas=(), leaves=(), keys=()):
    """Certificates for TLS tests, made with the openssl command in directory d (its output
    appended to log), each key EC P-256 and each certificate valid two days: for each (name,
    subject) of cas a self-signed CA, NAME.pem with NAME.key; then for each (name, subject,
    issuer, extensions) of leaves a certificate NAME.pem with NAME.key issued by the CA named
    issuer (made before it), the extensions being the lines of its -extfile (NAME.ext); for each
    name of keys a lone key NAME.key (one that matches no certificate)."""
    def key(name):
        run_tool(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                  "-out", os.path.join(d, name + ".key")], log)

    for name, subj in cas:
        key(name)
        run_tool(["openssl", "req", "-x509", "-new", "-key", os.path.join(d, name + ".key"),
                  "-days", "2", "-subj", subj, "-out", os.path.join(d, name + ".pem")], log)
    for name, subj, issuer, ext in leaves:
        key(name)
        csr = os.path.join(d, name + ".csr")
        run_tool(["openssl", "req", "-new", "-key", os.path.join(d, name + ".key"), "-subj", subj,
                  "-out", csr], log)
        extf = os.path.join(d, name + ".ext")
        with open(extf, "w") as f:
            f.write(ext + "\n")
        run_tool(["openssl", "x509", "-req", "-in", csr, "-CA", os.path.join(d, issuer + ".pem"),
                  "-CAkey", os.path.join(d, issuer + ".key"), "-CAcreateserial", "-days", "2",
                  "-extfile", extf, "-out", os.path.join(d, name + ".pem")], log)
    for name in keys:
        key(name)


def server_env():
    """The environment of the servers: sanitizer reports with stack traces and leak checks."""
    env = dict(os.environ)
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    return env


class Workspace:
    """A temporary directory (with data/ and an xdm.conf) and the Servers a script starts in
    it: shutdown() stops them in reverse order of start and scans every log for sanitizer
    reports."""

    def __init__(self, build, prefix, verbose=False, conf=None):
        self.build = os.path.abspath(build)
        self.verbose = verbose
        self.tmp = tempfile.mkdtemp(prefix=prefix)
        self.data = os.path.join(self.tmp, "data")
        os.makedirs(self.data)
        self.logs, self.procs = [], []
        self.conf = os.path.join(self.tmp, "xdm.conf")
        write_config(self.conf, conf or (), "the script passes the rest on the command line")

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def binary(self, rel):
        return os.path.join(self.build, rel)

    def server(self, name, argv, port=None, socket=None, start=True, **kw):
        """A Server with its own log in the workspace (NAME.N.log), registered for shutdown and
        started (and waited for) unless start is False."""
        log = self.path("%s.%d.log" % (name, len(self.logs)))
        self.logs.append(log)
        s = Server(name, argv, log, port=port, socket=socket, cwd=self.tmp, env=server_env(),
                   **kw)
        if start:
            s.start()
        self.procs.append(s)
        return s

    def xdmctl(self, *args):
        run_tool([self.binary(BIN_XDMCTL), "--data", self.data] + list(args),
                 self.path("xdmctl.log"))

    def died(self):
        """Problems of the servers that exited without being told to."""
        return [m for m in (p.died() for p in self.procs) if m]

    def shutdown(self):
        """Stops every server (reverse order); the problems, sanitizer reports included. (A
        server that exited by itself is no problem here: checks that signal a server themselves
        ask died() after each check.)"""
        problems = []
        for p in reversed(self.procs):
            msg = p.stop()
            if msg:
                problems.append(msg)
        return problems + sanitizer_reports(self.logs)

    def remove(self, keep):
        if not keep:
            shutil.rmtree(self.tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# HTTP (also over TLS) with an RFC 7616 Digest client, for the scenario scripts (proxy_tls_gaa.py,
# partner_domains.py, proxy_multi.py, reload_tls.py, graceful_stop.py). `env` is anything with
# .verbose (echo each exchange) and, optionally, .tls_name: the server name sent and verified on
# TLS when a call names none (else localhost).

class Resp:
    def __init__(self, status, headers, body, cipher=None):
        self.status, self.headers, self.body, self.cipher = status, headers, body, cipher

    def header(self, name):
        vals = [v for n, v in self.headers if n.lower() == name.lower()]
        return ", ".join(vals) if vals else None

    def all(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]


def tls_context(cert=None, key=None, ca=None, tls13=False):
    ctx = ssl.create_default_context(cafile=ca)
    if tls13:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def exchange(env, port, method, target, headers=(), body=None, tls=None, host=None, sni=None):
    """One request on a fresh connection to LOOPBACK:port. tls: an SSLContext for HTTPS, with
    sni (else env.tls_name, else localhost) as the server name."""
    sock = socket.create_connection((LOOPBACK, port), timeout=15)
    cipher = None
    if tls is not None:
        sock = tls.wrap_socket(sock, server_hostname=sni or getattr(env, "tls_name", "localhost"))
        cipher = sock.cipher()
    lines = ["%s %s HTTP/1.1" % (method, target), "Host: %s" % (host or "%s:%d" % (LOOPBACK, port))]
    lines += ["%s: %s" % hv for hv in headers]
    if body is not None:
        lines.append("Content-Length: %d" % len(body))
    lines.append("Connection: close")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
    r = http.client.HTTPResponse(sock, method=method)
    r.begin()
    data = r.read()
    sock.close()
    resp = Resp(r.status, r.getheaders(), data, cipher)
    if env.verbose:
        print("    %s %s -> %d %s" % (method, target, r.status, data[:200]))
    return resp


def H(alg, s):
    if isinstance(s, str):
        s = s.encode("latin-1")
    return (hashlib.md5 if alg == "MD5" else hashlib.sha256)(s).hexdigest()


def parse_challenges(values):
    out = []
    for v in values:
        for part in re.split(r",\s*(?=Digest\s)", v):
            if not part.startswith("Digest "):
                continue
            params = dict((m.group(1).lower(), m.group(2) if m.group(2) is not None else m.group(3))
                          for m in re.finditer(r'([A-Za-z-]+)=(?:"([^"]*)"|([^,\s]+))', part))
            out.append(params)
    return out


class Digest:
    """RFC 7616 client keeping one nonce for many requests (nc 1, 2, ...), like a real UE."""

    def __init__(self, username, password, algorithm="MD5"):
        self.username, self.password, self.algorithm = username, password, algorithm
        self.chal = None
        self.nc = 0
        self.challenges = 0

    def adopt(self, resp):
        chals = parse_challenges(resp.all("WWW-Authenticate"))
        chosen = [c for c in chals if c.get("algorithm", "MD5").upper() == self.algorithm]
        if not chosen:
            raise Fail("no %s challenge in %s" % (self.algorithm, chals))
        self.chal = chosen[0]
        self.nc = 0
        self.challenges += 1

    def header(self, method, uri, body=b"", qop="auth"):
        c = self.chal
        self.nc += 1
        nc = "%08x" % self.nc
        cnonce = os.urandom(8).hex()
        pw = self.password if isinstance(self.password, bytes) else self.password.encode()
        ha1 = H(self.algorithm, self.username.encode() + b":" + c["realm"].encode() + b":" + pw)
        a2 = "%s:%s" % (method, uri) + (":" + H(self.algorithm, body) if qop == "auth-int" else "")
        resp = H(self.algorithm, "%s:%s:%s:%s:%s:%s" % (ha1, c["nonce"], nc, cnonce, qop,
                                                        H(self.algorithm, a2)))
        self.last = {"ha1": ha1, "nonce": c["nonce"], "nc": nc, "cnonce": cnonce, "uri": uri,
                     "qop": qop}
        return ('Digest username="%s", realm="%s", nonce="%s", uri="%s", algorithm=%s, qop=%s, '
                'nc=%s, cnonce="%s", response="%s", opaque="%s"'
                % (self.username, c["realm"], c["nonce"], uri, self.algorithm, qop, nc, cnonce,
                   resp, c.get("opaque", "")))

    def rspauth_ok(self, resp):
        info = resp.header("Authentication-Info") or ""
        m = re.search(r'rspauth="([0-9a-f]+)"', info)
        if not m:
            return False
        l = self.last
        a2 = ":" + l["uri"] + (":" + H(self.algorithm, resp.body) if l["qop"] == "auth-int" else "")
        want = H(self.algorithm, "%s:%s:%s:%s:%s:%s" % (l["ha1"], l["nonce"], l["nc"], l["cnonce"],
                                                        l["qop"], H(self.algorithm, a2)))
        return m.group(1) == want


def request(env, port, method, target, auth=None, headers=(), body=None, tls=None, host=None,
            qop="auth", retry=True):
    """A request with Digest state: preemptive when a nonce is known, one retry after a 401."""
    headers = list(headers)
    for attempt in (0, 1):
        h = list(headers)
        if auth is not None and auth.chal is not None:
            h.append(("Authorization", auth.header(method, target, body or b"", qop)))
        r = exchange(env, port, method, target, h, body, tls, host)
        r.challenged = attempt == 1
        if r.status != 401 or auth is None or not retry or attempt == 1:
            return r
        auth.adopt(r)
    return r


# --------------------------------------------------------------------------------------------
# The PASS/FAIL lines and the closing count

# What a failing check may raise besides Fail (a refused connection, a broken response, a tool
# that did not finish); anything else is a harness error and shown with its type.
CHECK_ERRORS = (Fail, OSError, ValueError, subprocess.SubprocessError)


class Tally:
    """Counts checks: one `PASS name (secs)` or `FAIL name: reason` line each, and at the end
    `counts: P passed, F failed`, the line tools/xdm test adds up."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, fn, *args, errors=CHECK_ERRORS, after=None):
        """Runs fn(*args); after() (may raise) runs when fn passed. Returns whether it passed."""
        t0 = time.monotonic()
        try:
            fn(*args)
            if after is not None:
                after()
        except errors as e:
            self.fail("%s (%.1fs): %s" % (name, time.monotonic() - t0, e))
            return False
        self.passed += 1
        print("PASS %s (%.1fs)" % (name, time.monotonic() - t0))
        sys.stdout.flush()
        return True

    def check_fresh(self, name, make, fn, keep=False, errors=CHECK_ERRORS):
        """Runs fn(env) on a fresh env = make() (a Workspace): the problems of its shutdown fail
        the check too; its directory is named when the check failed and removed when it passed
        (unless keep)."""
        made = []

        def run():
            try:
                made.append(make())
                fn(made[0])
            finally:
                problems = made[0].shutdown() if made else []
            expect(not problems, "; ".join(problems))

        ok = self.check(name, run, errors=errors)
        if made:
            if not ok:
                print("kept %s" % made[0].tmp)
            made[0].remove(keep or not ok)
        return ok

    def fail(self, text):
        self.failed += 1
        print("FAIL %s" % text)
        sys.stdout.flush()

    def finish(self):
        """Prints the count line; the exit status."""
        print("counts: %d passed, %d failed" % (self.passed, self.failed))
        return 1 if self.failed else 0


def selected(checks, filters, name=lambda c: c.__name__):
    """The checks whose name contains one of the --filter values (all without one)."""
    return [c for c in checks if not filters or any(f in name(c) for f in filters)]


def script_args(doc, *extra):
    """The options every scenario script takes: --build, --filter (repeatable), --keep, -v;
    extra: (args, kwargs) of more add_argument calls."""
    import argparse
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--build", default="build", help="build directory with the binaries")
    ap.add_argument("--filter", action="append", default=[],
                    help="run only checks whose name contains SUBSTR (repeatable)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directories")
    ap.add_argument("-v", "--verbose", action="store_true")
    for a, kw in extra:
        ap.add_argument(*a, **kw)
    return ap.parse_args()


def run_checks(args, name, make_env, checks, errors=CHECK_ERRORS, needs=(), setup=None):
    """The main() of a scenario script whose checks share one Workspace: fails at once (status
    2) when a command of needs is missing; env = make_env(args), then setup(env) when given;
    each check selected by --filter (named without its "check_") is run on env, any server that
    died meanwhile failing too. A set-up that raises one of errors is a failed check too.
    Then env is shut down (its problems fail) and removed unless kept (--keep, or a failure:
    its directory is named). The exit status."""
    for tool in needs:
        if not shutil.which(tool):
            print("%s: the %s command is needed" % (name, tool))
            return 2
    tally = Tally()
    env = None
    try:
        env = make_env(args)
        if setup is not None:
            setup(env)
        for c in selected(checks, args.filter):
            tally.check(c.__name__[6:], c, env, errors=errors)
            for msg in env.died():
                tally.fail(msg)
    except errors as e:
        tally.fail("setup: %s" % e)
    finally:
        if env:
            for msg in env.shutdown():
                tally.fail(msg)
            if args.keep or tally.failed:
                print("kept %s" % env.tmp)
            env.remove(args.keep or tally.failed)
    return tally.finish()


# --------------------------------------------------------------------------------------------
# The Deployment of the case runner: the proxy and the four XDMSs on free ports, in a temporary
# directory of their own. Its runner gives build, env, time_scale, log_level and keep (Settings);
# run.py's Runner adds the PostgreSQL store.

class Settings:
    """What a Deployment needs of its runner."""

    def __init__(self, build, keep=False, verbose=False, log_level=None, time_scale=None):
        self.build = os.path.abspath(build)
        self.keep = keep
        self.verbose = verbose
        self.log_level = log_level
        self.time_scale = TIME_SCALE if time_scale is None else time_scale
        self.env = server_env()

    @classmethod
    def of(cls, args):
        return cls(args.build, keep=getattr(args, "keep", False),
                   verbose=getattr(args, "verbose", False))


class Proc:
    """One server process (proxy or an XDMS) of a deployment. Keeps its ports and data directory
    across restarts; every incarnation writes its own log file."""

    def __init__(self, dep, name):
        self.dep = dep
        self.name = name
        self.http_port = free_port()
        self.sip_port = free_port(udp_too=True) if name in XDMS_ROLES else None
        # Every process's admin listener (/metrics, /healthz, /readyz) gets a port of its own, so
        # that parallel cases never meet on the defaults (9080, 9181-9184).
        self.metrics_port = free_port()
        self.data = os.path.join(dep.tmp, "data", "aggproxy" if name == "proxy" else name)
        # An XDMS's default UNIX-domain socket (<data>/xdms.sock): the proxy's way in, and the
        # runner's for `via ROLE as XUI`.
        self.socket = os.path.join(self.data, "xdms.sock") if name in XDMS_ROLES else None
        self.options = []
        self.popen = None
        self.logs = []
        self.expected_exit = True
        self.incarnation = 0

    @property
    def binary(self):
        return os.path.join(self.dep.build, BIN_PROXY if self.name == "proxy" else BIN_XDMS)

    @property
    def http_addr(self):
        return "%s:%d" % (LOOPBACK, self.http_port)

    @property
    def socket_addr(self):
        return "unix:" + self.socket

    def argv(self, extra=()):
        d = self.dep
        if self.name == "proxy":
            argv = [self.binary, "--config", d.config, "--data", self.data,
                    "--http", self.http_addr, "--realm", "example.com"]
            # The proxy reaches every XDMS over its UNIX-domain socket, as `tools/xdm run` wires
            # it: the one hop on which an XDMS believes X-3GPP-Asserted-Identity without TLS.
            for role in XDMS_ROLES:
                argv += ["--option", "%s=%s" % (PROXY_URL_KEYS[role],
                                                d.procs[role].socket_addr)]
        else:
            argv = [self.binary, "--role", self.name, "--config", d.config, "--data", self.data,
                    "--http", self.http_addr, "--sip", "%s:%d" % (LOOPBACK, self.sip_port),
                    "--xcap-root", d.xcap_root + "/"]
            # With --store postgresql every XDMS gets a fresh database of its own, before the
            # case's options (so a case may still name its own store settings).
            if d.pg is not None:
                argv += ["--option", "store=postgresql",
                         "--option", "pg_conninfo=" + d.pg_conninfo(self.name)]
        argv += ["--option", "metrics=%s:%d" % (LOOPBACK, self.metrics_port)]
        for kv in list(self.options) + list(extra):
            argv += ["--option", kv]
        if d.runner.log_level:
            argv += ["--log-level", d.runner.log_level]
        return argv

    def running(self):
        return self.popen is not None and self.popen.poll() is None

    def _spawn(self, extra=()):
        if not os.path.exists(self.binary):
            raise Fail("binary not found: %s" % self.binary)
        os.makedirs(self.data, exist_ok=True)
        self.incarnation += 1
        log = os.path.join(self.dep.tmp, "%s.%d.log" % (self.name, self.incarnation))
        self.logs.append(log)
        return spawn(self.argv(extra), log, cwd=self.dep.tmp, env=self.dep.runner.env)

    def start(self):
        if self.running():
            raise Fail("%s: start while already running" % self.name)
        # Only on the first start may a taken port change: later, others know it.
        first = not self.logs

        def once():
            self.popen = self._spawn()
            self.expected_exit = False
            self.wait_ready()

        retry_on_taken_port(once, self.repick if first else lambda port: False)

    def repick(self, port):
        """A new port for one nothing else was told about yet (the admin listener; an XDMS's
        HTTP and SIP ports: the proxy reaches it over its UNIX socket). Returns whether one
        was picked."""
        if port == self.metrics_port:
            self.metrics_port = free_port()
        elif self.name in XDMS_ROLES and port == self.http_port:
            self.http_port = free_port()
        elif self.name in XDMS_ROLES and port == self.sip_port:
            self.sip_port = free_port(udp_too=True)
        else:
            return False
        return True

    def wait_ready(self):
        scale = self.dep.runner.time_scale
        # The HTTP port may open before the SIP stack; the "listening" log line marks readiness
        # of both. Give it a short grace period, without failing when the wording differs.
        wait_ready(self.popen, self.name, self.http_port, limit=20 * scale,
                   line=b"listening" if self.name in XDMS_ROLES else None, line_wait=3 * scale)

    def start_expect_failure(self, extra):
        """Starts the process with extra --option values and waits for it to exit; returns
        (exit status, its output). Fails when it is still running after 10 s (then stopped)."""
        if self.running():
            raise Fail("%s: expect-start-failure while it is running" % self.name)
        popen = self._spawn(extra)
        limit = 10 * self.dep.runner.time_scale
        try:
            rc = popen.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
            raise Fail("%s was expected to fail at start but still ran after %.0fs\n%s"
                       % (self.name, limit, tail(popen.log)))
        text = read_bytes(popen.log)[popen.log_start:].decode("utf-8", "replace")
        return rc, text

    def stop(self, sig=signal.SIGTERM):
        """Stops the process; returns a problem description or None."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.expected_exit = True
        return stop_popen(self.popen, self.name, sig, 10 * self.dep.runner.time_scale)

    def unexpected_death(self):
        if self.popen is not None and not self.expected_exit and self.popen.poll() is not None:
            self.expected_exit = True
            return "%s exited unexpectedly with %s\n%s" % (
                self.name, describe_rc(self.popen.returncode), tail(self.logs[-1]))
        return None


class EventProcess:
    """A background process (xdm-sipua) that prints one JSON object per line on stdout: the
    lines are queued as events for take(); stderr goes to its log. A line that is not a JSON
    object becomes {"event": "raw", "line": ...} with keep_raw, else it is dropped. With stamp
    every event gets its arrival time (time.monotonic()) as "_t"; with echo each line is also
    printed on stderr. With stdin, command() writes lines to it."""

    def __init__(self, name, argv, log, cwd=None, env=None, stdin=False, keep_raw=False,
                 stamp=False, echo=False):
        if not os.path.exists(argv[0]):
            raise Fail("binary not found: %s" % argv[0])
        self.name, self.argv, self.log = name, argv, log
        self.keep_raw, self.stamp, self.echo = keep_raw, stamp, echo
        self.events = []
        self.cond = threading.Condition()
        self.popen = spawn(argv, log, cwd=cwd, env=env, stdout_pipe=True, stdin_pipe=stdin)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.popen.stdout:
            now = time.monotonic()
            line = raw.decode("utf-8", "replace").strip()
            if not line:
                continue
            try:
                ev = json.loads(line)
                if not isinstance(ev, dict):
                    raise ValueError("not an object")
            except ValueError:
                if not self.keep_raw:
                    continue
                ev = {"event": "raw", "line": line}
            if self.stamp:
                ev["_t"] = now
            if self.echo:
                print("  %s: %s" % (self.name, line), file=sys.stderr)
            with self.cond:
                self.events.append(ev)
                self.cond.notify_all()
        with self.cond:
            self.events.append({"event": "exit"})
            self.cond.notify_all()

    def take(self, kind, timeout):
        """The first queued event of that kind (removed from the queue), waiting up to timeout
        s; fails when the process exited without one or none came in time."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for i, ev in enumerate(self.events):
                    if ev.get("event") == kind:
                        return self.events.pop(i)
                if any(e.get("event") == "exit" for e in self.events) and kind != "exit":
                    seen = [e for e in self.events if e.get("event") != "exit"]
                    raise Fail("%s exited (%s) without a '%s' event; pending events: %s\n%s"
                               % (self.name, describe_rc(self.popen.poll()), kind,
                                  json.dumps(seen)[:800], tail(self.log)))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Fail("%s: no '%s' event within %.1fs; pending events: %s"
                               % (self.name, kind, timeout, json.dumps(self.events)[:800]))
                self.cond.wait(left)

    def drain(self, kind):
        """Every queued event of that kind, removed from the queue."""
        with self.cond:
            out = [e for e in self.events if e.get("event") == kind]
            self.events = [e for e in self.events if e.get("event") != kind]
            return out

    def command(self, line):
        self.popen.stdin.write((line + "\n").encode())
        self.popen.stdin.flush()

    def stop(self):
        """SIGTERM, 5 s for the exit, then SIGKILL."""
        stop_popen(self.popen, self.name, timeout=5)
        self.reader.join(timeout=2)


class SipUA(EventProcess):
    """A background xdm-sipua of a case, subscribing at an XDMS's SIP port; its events are
    queued for `await`."""

    def __init__(self, dep, name, proc, args):
        self.dep = dep
        argv = [os.path.join(dep.build, BIN_SIPUA),
                "--server", "%s:%d" % (LOOPBACK, proc.sip_port)] + args
        super().__init__("sipua " + name, argv, os.path.join(dep.tmp, "sipua-%s.log" % name),
                         cwd=dep.tmp, env=dep.runner.env, keep_raw=True)


# Live deployments, so an interrupted run (Ctrl-C, SIGTERM) can still stop every process it
# started: the servers run in their own sessions and would not see the terminal's signal.
_live_lock = threading.Lock()
_live = set()


def kill_all_live():
    with _live_lock:
        deps = list(_live)
    for d in deps:
        for ua in d.uas.values():
            if ua.popen.poll() is None:
                ua.popen.kill()
        for p in d.procs.values():
            if p.running():
                p.expected_exit = True
                p.popen.kill()


class Deployment:
    """The proxy and the four XDMSs of one case (or one scenario), with ports reserved up front
    so that the proxy's *_url options and the XDMSs' --xcap-root are known before anything
    starts. `case`: a name, or anything with .name; `runner`: a Settings (or run.py's Runner)."""

    def __init__(self, runner, case):
        with _live_lock:
            _live.add(self)
        self.runner = runner
        self.build = runner.build
        name = case if isinstance(case, str) else case.name
        # Short enough that <tmp>/data/shared-list/xdms.sock fits a UNIX socket address.
        self.tmp = tempfile.mkdtemp(prefix="xdm-e2e-%s-" % name[:32])
        os.makedirs(os.path.join(self.tmp, "data"), exist_ok=True)
        self.config = write_config(os.path.join(self.tmp, "xdm.conf"), (),
                                   "empty: the e2e runner passes everything on the command line")
        self.procs = {n: Proc(self, n) for n in ALL_PROCS}
        self.xcap_root = "http://%s/xcap-root" % self.procs["proxy"].http_addr
        self.uas = {}
        self.extra_logs = []
        self.databases = {}  # XDMS role -> database name (--store postgresql)
        # Other scripts drive Deployment with runners of their own that know no store: LMDB.
        self.pg = getattr(runner, "pg", None)
        self.store = getattr(runner, "store", "lmdb")

    def pg_conninfo(self, role):
        """The libpq connection string of that XDMS's own database, created on first use."""
        if role not in self.databases:
            self.databases[role] = self.runner.create_database(role)
        return self.runner.conninfo(self.databases[role])

    def drop_databases(self):
        problems = []
        for role, db in sorted(self.databases.items()):
            try:
                self.runner.drop_database(db)
            except Exception as e:
                problems.append("could not drop the database %s of %s: %s" % (db, role, e))
        self.databases = {}
        return problems

    def vars(self):
        v = {"root": self.xcap_root, "proxy": self.procs["proxy"].http_addr,
             "config": self.config, "store": self.store, "source": SOURCE_ROOT}
        for r in XDMS_ROLES:
            v["http." + r] = self.procs[r].http_addr
            v["sip." + r] = "%s:%d" % (LOOPBACK, self.procs[r].sip_port)
            v["root." + r] = "http://%s/xcap-root" % self.procs[r].http_addr
            v["socket." + r] = self.procs[r].socket
            v["data." + r] = self.procs[r].data
        for n in ALL_PROCS:
            v["metrics." + n] = "%s:%d" % (LOOPBACK, self.procs[n].metrics_port)
        return v

    def start(self, procs=XDMS_ROLES + ("proxy",)):
        """Starts the given processes, the XDMSs before the proxy."""
        for name in XDMS_ROLES + ("proxy",):
            if name in procs:
                self.procs[name].start()
        return self

    def add_user(self, label, uri, password):
        xdmctl = os.path.join(self.build, BIN_XDMCTL)
        if not os.path.exists(xdmctl):
            raise Fail("binary not found: %s" % xdmctl)
        log = os.path.join(self.tmp, "xdmctl-%s.log" % label)
        self.extra_logs.append(log)
        run_tool([xdmctl, "--data", os.path.join(self.tmp, "data"), "user", "add", uri,
                  "--password", password], log, cwd=self.tmp, env=self.runner.env, timeout=30)

    def check_alive(self):
        for p in self.procs.values():
            msg = p.unexpected_death()
            if msg:
                raise Fail(msg)

    def shutdown(self):
        with _live_lock:
            _live.discard(self)
        problems = []
        for ua in self.uas.values():
            ua.stop()
        # The proxy first, so XDMS shutdown does not race with forwarded requests.
        for name in ALL_PROCS:
            p = self.procs[name]
            died = p.unexpected_death()
            if died:
                problems.append(died)
            msg = p.stop()
            if msg:
                problems.append(msg)
        if self.databases and not self.runner.keep:
            problems += self.drop_databases()
        return problems

    def logs(self):
        return ([l for p in self.procs.values() for l in p.logs] +
                [ua.log for ua in self.uas.values()] + self.extra_logs)

    def sanitizer_reports(self):
        return sanitizer_reports(self.logs())

    def finish(self, keep):
        """shutdown() and the sanitizer scan; the directory is removed unless keep or a
        problem. Returns the problems."""
        problems = self.shutdown() + self.sanitizer_reports()
        if keep or problems:
            print("kept %s" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return problems
