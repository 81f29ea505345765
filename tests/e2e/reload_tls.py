#!/usr/bin/env python3
"""End-to-end checks of certificate rotation without a restart: the HTTPS listeners of the
Aggregation Proxy and of an XDMS take new certificate and key files on SIGHUP.

    python3 tests/e2e/reload_tls.py --build build [-v] [--keep] [--filter NAME]

Client threads keep doing authenticated HTTPS GETs through the proxy, each on a new connection,
while the certificate files are replaced and SIGHUP sent: no request may fail, every connection
made after the reload was logged presents the new certificate (by its SHA-256 fingerprint), and
a connection established before the reload goes on with the old one. A certificate whose key
does not match is refused and the running one stays.

The proxy's own client certificate towards an https XDMS (upstream_cert, upstream_key) is
rotated the same way under load: the rls XDMS trusts the proxy by the SHA-256 fingerprint of
that certificate only (mutual TLS); it is told to trust the old and the new one, the proxy's
files are replaced and SIGHUP sent, then the XDMS trusts only the new one: no request fails, and
the XDMS now refuses the old certificate and serves the new one. Prints one PASS/FAIL line per check and
`counts: P passed, F failed`. Needs the openssl command. Standard library only.
"""

import hashlib
import http.client
import os
import shutil
import signal
import ssl
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (LOOPBACK, Digest, Fail, Resp, Workspace, expect, free_port,  # noqa: E402
                     make_certs, run_checks, script_args, tail, write_config)

DOC = "/xcap-root/resource-lists/users/sip:alice@example.com/index"
RL_DOC = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
          b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">\n'
          b'  <list name="friends"><entry uri="sip:bob@example.com"/></list>\n'
          b'</resource-lists>\n')
CLIENTS = 3          # client threads during a rotation
LOAD_SECONDS = 1.5   # load before and after the reload, each
RELOAD_WAIT = 10     # seconds for the reload's log line


# The certificates (make_certs): a CA and two server certificates of it (a and b, own keys),
# plus a key that matches neither (mismatch.key); the proxy's client certificates towards an
# XDMS (mutual TLS).
SERVER_EXT = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth"
CLIENT_EXT = "extendedKeyUsage=clientAuth"
CERT_CAS = [("ca", "/CN=XDM Rotation Test CA")]
CERT_LEAVES = [("a", "/CN=xcap a", "ca", SERVER_EXT), ("b", "/CN=xcap b", "ca", SERVER_EXT),
               ("client-a", "/O=Example/CN=aggproxy client-a", "ca", CLIENT_EXT),
               ("client-b", "/O=Example/CN=aggproxy client-b", "ca", CLIENT_EXT)]
CERT_KEYS = ["mismatch"]


def fingerprint(pem_path):
    der = ssl.PEM_cert_to_DER_cert(open(pem_path).read())
    return hashlib.sha256(der).hexdigest()


def trusted_fp(pem_path):
    """The certificate's fingerprint as trusted_peer takes it (openssl x509 -fingerprint)."""
    der = ssl.PEM_cert_to_DER_cert(open(pem_path).read())
    return ":".join("%02X" % b for b in hashlib.sha256(der).digest())


def install(src_cert, src_key, cert, key):
    """Replaces the live files the way a certificate tool does: new files renamed over."""
    for src, dst in ((src_cert, cert), (src_key, key)):
        shutil.copyfile(src, dst + ".new")
        os.replace(dst + ".new", dst)


class Env(Workspace):
    def __init__(self, args):
        super().__init__(args.build, "xdm-e2e-reload-tls-", args.verbose)
        self.certs = self.path("certs")
        os.makedirs(self.certs)
        make_certs(self.certs, self.path("openssl.log"), CERT_CAS, CERT_LEAVES, CERT_KEYS)
        self.ca = self.cert("ca.pem")
        # The live files the configuration names; rotation replaces them.
        self.live_cert, self.live_key = self.cert("live.pem"), self.cert("live.key")
        install(self.cert("a.pem"), self.cert("a.key"), self.live_cert, self.live_key)
        # The proxy's client certificate towards the rls XDMS, rotated like the others.
        self.up_cert, self.up_key = self.cert("up.pem"), self.cert("up.key")
        install(self.cert("client-a.pem"), self.cert("client-a.key"), self.up_cert, self.up_key)
        self.write_conf(["client-a"])
        self.xdms_port, self.port = free_port(), free_port()
        self.rls_port = free_port()
        self.rls = self.server("rls", [
            self.binary("xdms/xdms"), "--role", "rls", "--config", self.conf,
            "--data", os.path.join(self.data, "rls"),
            "--http", "%s:%d" % (LOOPBACK, self.rls_port), "--sip", "%s:%d" % (LOOPBACK, 0),
            "--xcap-root", "https://%s:%d/xcap-root/" % (LOOPBACK, self.port)],
            port=self.rls_port)
        self.xdms = self.server("shared-list", [
            self.binary("xdms/xdms"), "--role", "shared-list", "--config", self.conf,
            "--data", os.path.join(self.data, "shared-list"),
            "--http", "%s:%d" % (LOOPBACK, self.xdms_port), "--sip", "%s:%d" % (LOOPBACK, 0),
            "--xcap-root", "https://%s:%d/xcap-root/" % (LOOPBACK, self.port)],
            port=self.xdms_port)
        sock = "unix:" + os.path.join(self.data, "shared-list", "xdms.sock")
        self.proxy = self.server("proxy", [
            self.binary("aggproxy/aggproxy"), "--config", self.conf,
            "--data", os.path.join(self.data, "aggproxy"), "--realm", "example.com",
            "--http", "off", "--https", "%s:%d" % (LOOPBACK, self.port),
            "--option", "shared_list_url=" + sock,
            "--option", "rls_url=https://%s:%d" % (LOOPBACK, self.rls_port)], port=self.port)
        self.xdmctl("user", "add", "sip:alice@example.com", "--password", "secret")
        self.ctx = ssl.create_default_context(cafile=self.ca)
        r, _ = self.get(Digest("alice", "secret"), "PUT", RL_DOC)
        expect(r.status in (200, 201), "set-up PUT: %d %s" % (r.status, r.body))

    def cert(self, name):
        return os.path.join(self.certs, name)

    def write_conf(self, trusted):
        """xdm.conf: the listeners' live certificate; the proxy's client certificate towards
        the rls XDMS, which trusts as the proxy exactly the client certificates named."""
        live = [("tls_cert", self.live_cert), ("tls_key", self.live_key), ("metrics", "off")]
        write_config(self.conf, [
            ("aggproxy", live + [("upstream_ca", self.ca), ("upstream_cert", self.up_cert),
                                 ("upstream_key", self.up_key)]),
            ("shared-list", live),
            ("rls", [("tls_cert", self.cert("a.pem")), ("tls_key", self.cert("a.key")),
                     ("tls_client_ca", self.ca), ("metrics", "off")] +
             [("trusted_peer", "sha256:%s proxy" % trusted_fp(self.cert(name + ".pem")))
              for name in trusted])])

    def get(self, auth, method="GET", body=None, port=None, conn=None, doc=DOC, ctype=None):
        """One authenticated request (a new connection unless conn is given, and one more after a
        401); returns (Resp, the SHA-256 fingerprint of the server's certificate)."""
        for attempt in (0, 1):
            c = conn or http.client.HTTPSConnection(LOOPBACK, port or self.port,
                                                    context=self.ctx, timeout=15)
            h = {}
            if body is not None:
                h["Content-Type"] = ctype or "application/resource-lists+xml"
            if auth.chal is not None:
                h["Authorization"] = auth.header(method, doc, body or b"")
            c.request(method, doc, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            fp = hashlib.sha256(c.sock.getpeercert(binary_form=True)).hexdigest()
            if conn is None:
                c.close()
            resp = Resp(r.status, r.getheaders(), data)
            if r.status != 401 or attempt == 1:
                return resp, fp
            auth.adopt(resp)
        return resp, fp

    def reload(self, proc):
        """SIGHUP; waits for the reload's outcome line and returns it."""
        start = os.path.getsize(proc.log)
        proc.popen.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + RELOAD_WAIT
        while time.monotonic() < deadline:
            with open(proc.log, "rb") as f:
                f.seek(start)
                new = f.read().decode("utf-8", "replace")
            for line in new.split("\n"):
                if "configuration reloaded" in line or "reload refused" in line:
                    return new
            time.sleep(0.02)
        raise Fail("%s logged no reload outcome within %d s:\n%s"
                   % (proc.name, RELOAD_WAIT, tail(proc.log)))


def rotate(env, to):
    install(env.cert(to + ".pem"), env.cert(to + ".key"), env.live_cert, env.live_key)


def check_proxy_rotation_under_load(env):
    """Client threads keep doing GETs, each on a new connection, while the proxy's certificate
    is replaced (a -> b) and SIGHUP sent: every request answers 200, connections before the
    reload present a, every one begun after the reload's log line presents b."""
    fp_a, fp_b = fingerprint(env.cert("a.pem")), fingerprint(env.cert("b.pem"))
    expect(env.get(Digest("alice", "secret"))[1] == fp_a, "the proxy does not present a at first")
    # An established connection made before the rotation.
    keep = http.client.HTTPSConnection(LOOPBACK, env.port, context=env.ctx, timeout=15)
    keep_auth = Digest("alice", "secret")
    r, fp = env.get(keep_auth, conn=keep)
    expect(r.status == 200 and fp == fp_a, "keep-alive connection: %d" % r.status)
    results, errors = [], []
    stop = threading.Event()
    reloaded_at = [None]

    def client():
        auth = Digest("alice", "secret")
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                resp, fp = env.get(auth)
                results.append((t0, resp.status, fp))
            except Exception as e:  # any failed request fails the check
                errors.append("%s: %s" % (type(e).__name__, e))

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    try:
        time.sleep(LOAD_SECONDS)
        rotate(env, "b")
        out = env.reload(env.proxy)
        reloaded_at[0] = time.monotonic()
        expect("configuration reloaded" in out and "certificate " + env.live_cert in out,
               "proxy reload: %s" % out)
        time.sleep(LOAD_SECONDS)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    expect(not errors, "%d request(s) failed during the rotation, first: %s"
           % (len(errors), errors[:1]))
    bad = [s for _, s, _ in results if s != 200]
    expect(not bad, "statuses other than 200 during the rotation: %s" % sorted(set(bad)))
    before = [fp for t0, _, fp in results if t0 < reloaded_at[0]]
    after = [fp for t0, _, fp in results if t0 >= reloaded_at[0]]
    expect(before and after, "requests before/after the reload: %d/%d" % (len(before), len(after)))
    expect(fp_a in before, "no connection presented a before the reload")
    expect(set(after) == {fp_b}, "after the reload %d connection(s) presented another "
           "certificate than b" % sum(1 for fp in after if fp != fp_b))
    # The connection established before the rotation goes on, with a.
    r, fp = env.get(keep_auth, conn=keep)
    keep.close()
    expect(r.status == 200 and fp == fp_a,
           "the established connection after the rotation: %d, %s" % (r.status,
                                                                      "a" if fp == fp_a else fp))
    if env.verbose:
        print("    %d requests, %d after the reload" % (len(results), len(after)))


def check_bad_pair_refused(env):
    """A key that does not match the certificate: the reload is refused, the running
    certificate stays, and new connections still succeed with it."""
    cur = env.get(Digest("alice", "secret"))[1]
    shutil.copyfile(env.cert("mismatch.key"), env.live_key + ".new")
    os.replace(env.live_key + ".new", env.live_key)
    out = env.reload(env.proxy)
    expect("reload refused: the running configuration stays" in out, "reload: %s" % out)
    r, fp = env.get(Digest("alice", "secret"))
    expect(r.status == 200 and fp == cur, "after a refused reload: %d" % r.status)
    # Repair: the pair of the current certificate again.
    name = "a" if cur == fingerprint(env.cert("a.pem")) else "b"
    rotate(env, name)


def check_xdms_rotation(env):
    """The XDMS's HTTPS listener takes the new files on SIGHUP too: a new connection presents
    the new certificate (403 without a trusted peer, but over the new certificate)."""
    fp_a, fp_b = fingerprint(env.cert("a.pem")), fingerprint(env.cert("b.pem"))

    def probe():
        c = http.client.HTTPSConnection(LOOPBACK, env.xdms_port, context=env.ctx, timeout=15)
        c.request("GET", DOC)
        r = c.getresponse()
        r.read()
        fp = hashlib.sha256(c.sock.getpeercert(binary_form=True)).hexdigest()
        c.close()
        return r.status, fp

    status, before = probe()
    expect(status == 403 and before in (fp_a, fp_b), "XDMS before: %d" % status)
    to = "a" if before == fp_b else "b"
    rotate(env, to)
    out = env.reload(env.xdms)
    expect("configuration reloaded" in out and "certificate " + env.live_cert in out,
           "XDMS reload: %s" % out)
    status, after = probe()
    expect(status == 403 and after == fingerprint(env.cert(to + ".pem")),
           "XDMS after the reload: %d, old certificate: %s" % (status, after == before))


RLS_DOC = "/xcap-root/rls-services/users/sip:alice@example.com/index"


def direct_rls(env, client):
    """A GET straight to the rls XDMS over mutual TLS with the given client certificate,
    asserting alice as the proxy does; returns the status."""
    ctx = ssl.create_default_context(cafile=env.ca)
    ctx.load_cert_chain(env.cert(client + ".pem"), env.cert(client + ".key"))
    c = http.client.HTTPSConnection(LOOPBACK, env.rls_port, context=ctx, timeout=15)
    c.request("GET", RLS_DOC, headers={"X-3GPP-Asserted-Identity": '"sip:alice@example.com"'})
    r = c.getresponse()
    r.read()
    c.close()
    return r.status


def check_upstream_cert_rotation(env):
    """Client threads keep GETting an rls-services document through the proxy, which forwards
    over mutual TLS to the rls XDMS, while the proxy's client certificate is rotated (client-a ->
    client-b): the XDMS first trusts a and b, the proxy takes b on SIGHUP, then the XDMS trusts
    only b. Every request answers 200; afterwards the XDMS refuses a and serves b."""
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "files", "rls1.xml"),
              "rb") as f:
        rls = f.read()
    r, _ = env.get(Digest("alice", "secret"), "PUT", rls, doc=RLS_DOC,
                   ctype="application/rls-services+xml")
    expect(r.status in (200, 201), "PUT over the proxy's client certificate a: %d %s"
           % (r.status, r.body))
    expect(direct_rls(env, "client-a") == 200 and direct_rls(env, "client-b") == 403,
           "at first the XDMS must trust client-a only")
    results, errors = [], []
    stop = threading.Event()

    def client():
        auth = Digest("alice", "secret")
        while not stop.is_set():
            try:
                resp, _ = env.get(auth, doc=RLS_DOC)
                results.append(resp.status)
            except Exception as e:  # any failed request fails the check
                errors.append("%s: %s" % (type(e).__name__, e))

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    try:
        time.sleep(LOAD_SECONDS / 2)
        env.write_conf(["client-a", "client-b"])
        out = env.reload(env.rls)
        expect("configuration reloaded" in out, "rls reload (a and b): %s" % out)
        time.sleep(LOAD_SECONDS / 2)
        install(env.cert("client-b.pem"), env.cert("client-b.key"), env.up_cert, env.up_key)
        out = env.reload(env.proxy)
        expect("configuration reloaded" in out and "upstream certificate " + env.up_cert in out,
               "proxy reload: %s" % out)
        time.sleep(LOAD_SECONDS / 2)
        env.write_conf(["client-b"])
        out = env.reload(env.rls)
        expect("configuration reloaded" in out, "rls reload (b only): %s" % out)
        n_before = len(results)
        time.sleep(LOAD_SECONDS)
        n_after = len(results) - n_before
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    expect(not errors, "%d request(s) failed during the rotation, first: %s"
           % (len(errors), errors[:1]))
    bad = [st for st in results if st != 200]
    expect(not bad, "statuses other than 200 during the rotation: %s (%d of %d)"
           % (sorted(set(bad)), len(bad), len(results)))
    expect(n_after > 0, "no request once the XDMS trusted only the new certificate")
    expect(direct_rls(env, "client-a") == 403 and direct_rls(env, "client-b") == 200,
           "at the end the XDMS must trust client-b only")
    r, _ = env.get(Digest("alice", "secret"), doc=RLS_DOC)
    expect(r.status == 200 and r.body == rls, "GET through the proxy at the end: %d" % r.status)
    # A key that is not the certificate's refuses the proxy's reload; the running pair stays.
    shutil.copyfile(env.cert("mismatch.key"), env.up_key + ".new")
    os.replace(env.up_key + ".new", env.up_key)
    out = env.reload(env.proxy)
    expect("%s is not the key of the certificate %s" % (env.up_key, env.up_cert) in out and
           "reload refused: the running configuration stays" in out, "bad pair: %s" % out)
    r, _ = env.get(Digest("alice", "secret"), doc=RLS_DOC)
    expect(r.status == 200, "GET after the refused reload: %d" % r.status)
    install(env.cert("client-b.pem"), env.cert("client-b.key"), env.up_cert, env.up_key)
    if env.verbose:
        print("    %d requests, %d after the XDMS dropped the old certificate"
              % (len(results), n_after))


CHECKS = [check_proxy_rotation_under_load, check_bad_pair_refused, check_xdms_rotation,
          check_upstream_cert_rotation]


def main():
    return run_checks(script_args(__doc__), "reload_tls", Env, CHECKS, needs=("openssl",),
                      errors=(Fail, OSError, http.client.HTTPException, ssl.SSLError))


if __name__ == "__main__":
    sys.exit(main())
