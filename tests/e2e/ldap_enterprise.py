#!/usr/bin/env python3
"""End-to-end cases of the enterprise directory (docs/enterprise.md) against a real OpenLDAP
server: the proxy's users from LDAP (Digest with an HA1 attribute, HTTP Basic over HTTPS checked
by a bind, precedence of the proxy's own users, the directory down) and the corporate directory
document the Shared List XDMS builds from LDAP (read, referenced, refreshed, split).

    python3 tests/e2e/ldap_enterprise.py --build build [-v] [--keep] [--filter SUBSTR]

Runs the case files of tests/e2e/cases-ldap/ with run.py's case runner (the format of
tests/e2e/README.md). For every case a fresh slapd (/usr/sbin/slapd, Debian) is started on a free
loopback port in a temporary directory, with its own mdb database, a slapd.conf made here and the
entries of files/ldap/base.ldif loaded with ldapadd; it is stopped by its PID when the case ends.
The proxy also gets an HTTPS listener with a self-signed certificate made here (openssl).

Variables a case may use (also in its `option` lines and `config` block): ${ldap.uri},
${ldap.base}, ${ldap.admin}, ${ldap.pwfile} (a file holding the admin password), ${https}
(the proxy's HTTPS address), ${tls.cert}, ${tls.key}.

Steps added to the case language here (`run NAME ARGS...`):
  run ldap-modify FILE          ldapmodify with the LDIF FILE (variables substituted)
  run ldap-stop / ldap-start    stop slapd (SIGTERM, by PID) / start it again on the same port
  run ldap-bulk N               replace the people with N generated entries (slapadd, slapd
                                stopped meanwhile)
  run directory-wait [N]        wait until the shared-list XDMS has logged N (default 1) runs
                                of the corporate directory
  run directory-refresh         SIGUSR1 to the shared-list XDMS, then wait for its next run
  run https METHOD TARGET STATUS [basic=USER:PASSWORD] [challenges=Digest,Basic]
                                one request over the proxy's HTTPS listener
  run metrics PROC NAME VALUE   a sample of PROC's /metrics equals VALUE (or >=N / >0)

Prints one line per case and `counts: P passed, F failed, S skipped by design`; exits non-zero
when a case failed. Every wait is bounded.
"""

import argparse
import base64
import http.client
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run as e2e  # noqa: E402  (the case runner: cases, deployments, HTTP, Digest)

SLAPD = "/usr/sbin/slapd"
BASE = "dc=example,dc=com"
ADMIN = "cn=admin," + BASE
ADMIN_PW = "adminpw"
CASES = os.path.join(HERE, "cases-ldap")
FILES = os.path.join(HERE, "files", "ldap")
SCHEMA = """\
attributetype ( 1.3.6.1.4.1.4203.666.11.1.1 NAME 'xdmTestHA1'
  DESC 'test only: an RFC 7616 HA1 in hex' EQUALITY caseIgnoreIA5Match
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 )
objectclass ( 1.3.6.1.4.1.4203.666.11.1.2 NAME 'xdmTestUser' AUXILIARY MAY xdmTestHA1 )
"""


class Slapd:
    """One slapd on a loopback port with a database of its own."""

    def __init__(self, tmp, scale):
        self.tmp = tmp
        self.scale = scale
        self.port = e2e.free_port()
        self.uri = "ldap://%s:%d" % (e2e.LOOPBACK, self.port)
        self.db = os.path.join(tmp, "db")
        os.makedirs(self.db)
        self.conf = os.path.join(tmp, "slapd.conf")
        self.pwfile = os.path.join(tmp, "bindpw")
        with open(self.pwfile, "w") as f:
            f.write(ADMIN_PW + "\n")
        with open(os.path.join(tmp, "xdmtest.schema"), "w") as f:
            f.write(SCHEMA)
        with open(self.conf, "w") as f:
            f.write("\n".join([
                "include /etc/ldap/schema/core.schema",
                "include /etc/ldap/schema/cosine.schema",
                "include /etc/ldap/schema/inetorgperson.schema",
                "include %s/xdmtest.schema" % tmp,
                "pidfile %s/slapd.pid" % tmp,
                "modulepath /usr/lib/ldap",
                "moduleload back_mdb",
                # a server cap below the test directories, so that paging is what reads them
                "sizelimit size.soft=1000 size.hard=1000 size.prtotal=unlimited",
                "database mdb",
                "maxsize 1073741824",
                'suffix "%s"' % BASE,
                'rootdn "%s"' % ADMIN,
                "rootpw %s" % ADMIN_PW,
                "directory %s" % self.db,
                "access to attrs=userPassword by self write by anonymous auth by * none",
                "access to * by * read",
                ""]))
        self.popen = None
        self.logs = []

    def start(self):
        log = os.path.join(self.tmp, "slapd.%d.log" % (len(self.logs) + 1))
        self.logs.append(log)
        with open(log, "wb") as lf:
            self.popen = subprocess.Popen([SLAPD, "-f", self.conf, "-h", self.uri + "/", "-d", "0"],
                                          stdin=subprocess.DEVNULL, stdout=lf,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 10 * self.scale
        while True:
            if self.popen.poll() is not None:
                raise e2e.CaseError("slapd exited with %s\n%s" % (self.popen.returncode,
                                                                 e2e.tail(log)))
            try:
                with socket.create_connection((e2e.LOOPBACK, self.port), timeout=0.5):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise e2e.CaseError("slapd did not listen on %s\n%s" % (self.uri, e2e.tail(log)))
            time.sleep(0.05)

    def stop(self):
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=10 * self.scale)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()

    def ldif(self, tool, text):
        r = subprocess.run([tool, "-x", "-H", self.uri, "-D", ADMIN, "-w", ADMIN_PW],
                           input=text.encode(), capture_output=True, timeout=60 * self.scale)
        if r.returncode != 0:
            raise e2e.CaseError("%s failed (%d): %s" % (tool, r.returncode,
                                                        (r.stdout + r.stderr).decode()[-2000:]))

    def bulk(self, n):
        """The people replaced by n generated entries, loaded offline (slapadd -q)."""
        self.stop()
        shutil.rmtree(self.db)
        os.makedirs(self.db)
        path = os.path.join(self.tmp, "bulk.ldif")
        with open(os.path.join(FILES, "base.ldif")) as f:
            base = "".join(l for l in f if not l.startswith("#"))
        # only the tree's top: dc and ou=people
        top = "\n\n".join(b for b in base.split("\n\n") if b.startswith("dn: dc=") or
                          b.startswith("dn: ou="))
        with open(path, "w") as f:
            f.write(top + "\n\n")
            for i in range(n):
                f.write("dn: uid=u%06d,ou=people,%s\nobjectClass: inetOrgPerson\nuid: u%06d\n"
                        "cn: User %06d\nsn: %06d\ndisplayName: User %06d\n"
                        "labeledURI: sip:u%06d@example.com\n\n" % (i, BASE, i, i, i, i, i))
        r = subprocess.run(["/usr/sbin/slapadd", "-q", "-f", self.conf, "-l", path],
                           capture_output=True, timeout=300 * self.scale)
        if r.returncode != 0:
            raise e2e.CaseError("slapadd failed: %s" % (r.stdout + r.stderr).decode()[-2000:])
        self.start()


def make_cert(tmp):
    cert, key = os.path.join(tmp, "proxy.crt"), os.path.join(tmp, "proxy.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True, timeout=60)
    return cert, key


# --- the steps added to the case language

def _args(step):
    pos, kw = [], {}
    for a in step.args[1:]:
        if re.match(r"[a-z]+=", a):
            k, v = a.split("=", 1)
            kw[k] = v
        else:
            pos.append(a)
    return pos, kw


def builtin_ldap_modify(run, step):
    pos, _ = _args(step)
    with open(os.path.join(FILES, pos[0])) as f:
        text = run.s(f.read(), step.lineno)
    run.slapd.ldif("ldapmodify", text)
    run.log("ldapmodify %s" % pos[0])


def builtin_ldap_stop(run, step):
    run.slapd.stop()
    run.log("slapd stopped")


def builtin_ldap_start(run, step):
    run.slapd.start()
    run.log("slapd started")


def builtin_ldap_bulk(run, step):
    pos, _ = _args(step)
    t0 = time.monotonic()
    run.slapd.bulk(int(pos[0]))
    run.log("slapadd of %s entries: %.1f s" % (pos[0], time.monotonic() - t0))


DIR_RUN = re.compile(rb"corporate directory: (\d+) entries from LDAP.*?(\d+) changed|"
                     rb"corporate directory: LDAP search .* failed")


def _directory_runs(run):
    p = run.dep.procs["shared-list"]
    return sum(len(DIR_RUN.findall(e2e.read_bytes(log))) for log in p.logs)


def _directory_wait(run, want, step):
    deadline = time.monotonic() + 60 * run.runner.time_scale
    while _directory_runs(run) < want:
        if time.monotonic() > deadline:
            raise e2e.CaseError("line %d: the corporate directory did not run %d time(s)\n%s" % (
                step.lineno, want, e2e.tail(run.dep.procs["shared-list"].logs[-1])))
        run.dep.check_alive()
        time.sleep(0.05)
    run.log("corporate directory runs: %d" % _directory_runs(run))


def builtin_directory_wait(run, step):
    pos, _ = _args(step)
    _directory_wait(run, int(pos[0]) if pos else 1, step)


def builtin_directory_refresh(run, step):
    before = _directory_runs(run)
    run.dep.procs["shared-list"].popen.send_signal(signal.SIGUSR1)
    _directory_wait(run, before + 1, step)


def builtin_https(run, step):
    pos, kw = _args(step)
    method, target, status = pos[0], run.s(pos[1], step.lineno), int(pos[2])
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    host, port = run.vars["https"].rsplit(":", 1)
    conn = http.client.HTTPSConnection(host, int(port), context=ctx,
                                       timeout=15 * run.runner.time_scale)
    headers = {"Connection": "close"}
    if "basic" in kw:
        headers["Authorization"] = "Basic " + base64.b64encode(kw["basic"].encode()).decode()
    body = None
    if method == "PUT":
        body = run.read_file(kw["body"], step.lineno)
        headers["Content-Type"] = "application/resource-lists+xml"
    conn.request(method, target, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    chals = [v.split(" ", 1)[0] for k, v in r.getheaders() if k.lower() == "www-authenticate"]
    conn.close()
    run.log("https %s %s -> %d %s" % (method, target, r.status, chals))
    if r.status != status:
        raise e2e.CaseError("line %d: https %s %s: %d, expected %d\n%s" % (
            step.lineno, method, target, r.status, status, data[:500]))
    if "challenges" in kw:
        want = kw["challenges"].split(",") if kw["challenges"] else []
        got = list(dict.fromkeys(chals))  # Digest once per algorithm: the schemes in order
        if got != want:
            raise e2e.CaseError("line %d: challenges %s, expected %s" % (step.lineno, got, want))
    if "etag" in kw:
        run.vars[kw["etag"]] = (r.getheader("ETag") or "").strip('"')


def builtin_metrics(run, step):
    pos, _ = _args(step)
    proc, name, want = pos[0], pos[1], pos[2]
    p = run.dep.procs[proc]
    r = e2e.http_exchange("%s:%d" % (e2e.LOOPBACK, p.metrics_port), "GET", "/metrics", [], None,
                          10)
    m = re.search(r"^%s (\S+)$" % re.escape(name), r.body.decode(), re.M)
    if not m:
        raise e2e.CaseError("line %d: %s has no sample %s" % (step.lineno, proc, name))
    got = float(m.group(1))
    ok = got >= float(want[2:]) if want.startswith(">=") else \
        got > float(want[1:]) if want.startswith(">") else got == float(want)
    run.log("metrics %s %s = %s" % (proc, name, m.group(1)))
    if not ok:
        raise e2e.CaseError("line %d: %s %s = %s, expected %s" % (step.lineno, proc, name,
                                                                  m.group(1), want))


e2e.BUILTINS.update({
    "ldap-modify": builtin_ldap_modify, "ldap-stop": builtin_ldap_stop,
    "ldap-start": builtin_ldap_start, "ldap-bulk": builtin_ldap_bulk,
    "directory-wait": builtin_directory_wait, "directory-refresh": builtin_directory_refresh,
    "https": builtin_https, "metrics": builtin_metrics,
})


def run_case(runner, path, cert, key):
    t0 = time.monotonic()
    try:
        case = e2e.Case(path)
    except (e2e.ParseError, OSError, ValueError) as e:
        return ["parse error: %s" % e], [], time.monotonic() - t0
    tmp = tempfile.mkdtemp(prefix="xdm-e2e-ldap-")
    slapd = Slapd(tmp, runner.time_scale)
    https = "%s:%d" % (e2e.LOOPBACK, e2e.free_port())
    v = {"ldap.uri": slapd.uri, "ldap.base": BASE, "ldap.admin": ADMIN,
         "ldap.pwfile": slapd.pwfile, "https": https, "tls.cert": cert, "tls.key": key}

    def sub(text):
        for k, val in v.items():
            text = text.replace("${%s}" % k, val)
        return text
    for name, opts in case.options.items():
        case.options[name] = [sub(o) for o in opts]
    if case.config is not None and case.config[1] is not None:
        case.config = (case.config[0], sub(case.config[1]), None)
    run = e2e.CaseRun(runner, case)
    run.slapd = slapd
    run.vars.update(v)
    failures = []
    try:
        slapd.start()
        with open(os.path.join(FILES, "base.ldif")) as f:
            slapd.ldif("ldapadd", f.read())
        failures = run.run()
    except e2e.CaseError as e:
        failures = [str(e)]
    finally:
        slapd.stop()
        if runner.keep:
            print("  kept %s and %s" % (tmp, run.dep.tmp if run.dep else "-"))
        else:
            shutil.rmtree(tmp, ignore_errors=True)
            if run.dep:
                shutil.rmtree(run.dep.tmp, ignore_errors=True)
    return failures, run.transcript, time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--filter", action="append", default=[])
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    for tool in (SLAPD, "/usr/sbin/slapadd", shutil.which("ldapadd"), shutil.which("openssl")):
        if not tool or not os.path.exists(tool):
            print("FAIL: needed program missing: %s (Debian slapd, ldap-utils, openssl)" % tool)
            print("counts: 0 passed, 1 failed, 0 skipped by design")
            return 1
    runner = e2e.Runner(types.SimpleNamespace(
        build=args.build, keep=args.keep, verbose=args.verbose, log_level=None,
        time_scale=float(os.environ.get("XDM_E2E_TIME_SCALE", "1"))))
    certdir = tempfile.mkdtemp(prefix="xdm-e2e-ldap-tls-")
    cert, key = make_cert(certdir)
    passed = failed = 0
    try:
        for name in sorted(os.listdir(CASES)):
            if not name.endswith(".case") or (args.filter and
                                              not any(f in name for f in args.filter)):
                continue
            failures, transcript, secs = run_case(runner, os.path.join(CASES, name), cert, key)
            if failures:
                failed += 1
                print("FAIL %s (%.1fs)" % (name, secs))
                for f in failures:
                    print(e2e.indent(f))
                if args.verbose:
                    print(e2e.indent("\n".join(transcript)))
            else:
                passed += 1
                print("PASS %s (%.1fs)" % (name, secs))
                if args.verbose:
                    print(e2e.indent("\n".join(transcript)))
            sys.stdout.flush()
    finally:
        shutil.rmtree(certdir, ignore_errors=True)
    print("counts: %d passed, %d failed, 0 skipped by design" % (passed, failed))
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
