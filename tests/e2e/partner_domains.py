#!/usr/bin/env python3
"""End-to-end checks of partner domains (docs/partners.md): one operator's proxy in front of the
operator's own XDMSs and of a partner provider's XDMS, routed by the user's domain.

    python3 tests/e2e/partner_domains.py --build build [-v] [--keep] [--filter NAME]

Two domains on loopback:
  - operator.example: the proxy and the three local XDMSs (over their UNIX-domain sockets);
  - partner.example: two instances of a shared-list XDMS over one data directory of its own,
    with its own CA and server certificate, reached by the proxy over mutual TLS with a client certificate of the operator's
    CA, which the partner trusts for identities of partner.example only
    (trusted_peer = subject:... proxy domain=partner.example);
    and a presence XDMS of the partner for pres-rules (partner_route);
  - slow.example: a partner whose "XDMS" (a TLS socket here) accepts and never answers, for the
    per-partner timeout and request limit.
Users of each domain are added with xdmctl and authenticate with Digest at the proxy.

Prints one PASS/FAIL line per check and `counts: P passed, F failed`; exits non-zero when a check
failed, a process died, or a sanitizer report appears in a log. Needs the openssl command.
Standard library only; the ports, processes, HTTP and Digest functions come from harness.py.
"""

import http.client
import os
import re
import shutil
import signal
import socket
import ssl
import sys
import threading
import time
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (LOOPBACK, PROXY_URL_KEYS, XDMS_ROLES, Digest, Fail, Workspace,  # noqa: E402
                     exchange, expect, free_port, make_certs, request, retry_on_taken_port,
                     run_checks, script_args, tail, tls_context, wait_for)

DIR_NS = "{urn:oma:xml:xdm:xcap-directory}"
CAPS_NS = "{urn:ietf:params:xml:ns:xcap-caps}"
RL_CT = ("Content-Type", "application/resource-lists+xml")
PROXY_SUBJECT = "CN=aggproxy,O=Operator"


PR_DOC = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
          b'<cr:ruleset xmlns="urn:ietf:params:xml:ns:pres-rules" '
          b'xmlns:cr="urn:ietf:params:xml:ns:common-policy">\n'
          b'  <cr:rule id="a"><cr:conditions/><cr:actions><sub-handling>allow</sub-handling>'
          b'</cr:actions><cr:transformations/></cr:rule>\n</cr:ruleset>\n')


def rl_doc(owner):
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">\n'
            '  <list name="friends"><entry uri="sip:friend-of-%s"/></list>\n'
            '</resource-lists>\n' % owner).encode()


# The certificates (make_certs).
SERVER_EXT = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth"
CLIENT_EXT = "extendedKeyUsage=clientAuth"
CERT_CAS = [("operator-ca", "/CN=Operator CA"), ("partner-ca", "/CN=Partner CA"),
            ("rogue-ca", "/CN=Rogue CA")]
CERT_LEAVES = [
    # the partner's XDMS (and the silent one of slow.example), certified by the partner's CA
    ("partner-server", "/CN=xdms.partner.example", "partner-ca", SERVER_EXT),
    # the client certificate the operator's proxy presents to partners
    ("proxy-client", "/O=Operator/CN=aggproxy", "operator-ca", CLIENT_EXT),
    # the same subject from another CA, and another subject of the operator's CA
    ("rogue-client", "/O=Operator/CN=aggproxy", "rogue-ca", CLIENT_EXT),
    ("other-client", "/O=Operator/CN=someone", "operator-ca", CLIENT_EXT)]


class SilentPartner:
    """A TLS listener that completes handshakes, reads requests and never answers: a partner
    that hangs. Connections are held until stop()."""

    def __init__(self, cert, key):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.sock = socket.socket()
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.held = []
        self.requests = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.done.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            try:
                conn.settimeout(2)
                tls = self.ctx.wrap_socket(conn, server_side=True)
                if tls.recv(65536):
                    self.requests += 1
                self.held.append(tls)
            except (OSError, ssl.SSLError):
                conn.close()

    def stop(self):
        self.done.set()
        self.thread.join(5)
        for c in self.held:
            c.close()
        self.sock.close()


class Env(Workspace):
    def __init__(self, args):
        super().__init__(args.build, "xdm-e2e-partner-", args.verbose)
        self.certs = self.path("certs")
        os.makedirs(self.certs)
        make_certs(self.certs, self.path("openssl.log"), CERT_CAS, CERT_LEAVES)
        self.op_data = self.data  # the operator's XDMSs, proxy and users (xdmctl)
        self.pt_data = self.path("partner")
        self.proxy_http = free_port()
        self.metrics = free_port()
        self.root = "http://%s:%d/xcap-root" % (LOOPBACK, self.proxy_http)
        self.partner_port = {}  # instance name ("a", "b", "presence") -> port
        self.partner = {}       # instance name -> Server
        self.silent = None

    def setup(self):
        for r in XDMS_ROLES:
            self.start_xdms(r)
        self.start_partner("a")
        self.start_partner("b")
        self.start_partner("presence", "presence")
        self.silent = SilentPartner(self.cert("partner-server.pem"), self.cert("partner-server.key"))
        self.proxy = self.start_proxy()
        self.users()

    def cert(self, name):
        return os.path.join(self.certs, name)

    def start_xdms(self, role):
        # The proxy reaches it over its UNIX-domain socket: both ports may change.
        ports = [free_port(), free_port(udp_too=True)]

        def once():
            http, sip = ports
            argv = [self.binary("xdms/xdms"), "--role", role, "--config", self.conf,
                    "--data", os.path.join(self.op_data, role),
                    "--http", "%s:%d" % (LOOPBACK, http), "--sip", "%s:%d" % (LOOPBACK, sip),
                    "--xcap-root", self.root + "/", "--option", "metrics=off"]
            return self.server(role, argv, port=http)

        def repick(port):
            ports[:] = [free_port(), free_port(udp_too=True)]
            return True
        return retry_on_taken_port(once, repick)

    def start_partner(self, name, role="shared-list"):
        """One instance of the partner's XDMS (two share one data directory, as several
        instances of a role over one store): its own data, CA and server certificate; it trusts
        client certificates of the operator's CA, and the proxy's only for partner.example. No
        UNIX-domain socket: the partner is reached over TLS only. Started again (a new Server
        and log), it keeps its HTTPS port: the proxy knows it."""
        first = name not in self.partner_port
        if first:
            self.partner_port[name] = free_port()
        else:
            self.procs.remove(self.partner[name])
        sip = [free_port(udp_too=True)]

        def once():
            port = self.partner_port[name]
            argv = [self.binary("xdms/xdms"), "--role", role,
                    "--config", self.conf, "--data", os.path.join(self.pt_data, role),
                    "--http", "%s:%d" % (LOOPBACK, port), "--sip", "%s:%d" % (LOOPBACK, sip[0]),
                    "--xcap-root", "https://%s:%d/xcap-root/" % (LOOPBACK, port),
                    "--option", "socket=off", "--option", "instance=partner-" + name,
                    "--option", "metrics=off", "--option", "default_domain=partner.example",
                    "--option", "tls_cert=" + self.cert("partner-server.pem"),
                    "--option", "tls_key=" + self.cert("partner-server.key"),
                    "--option", "tls_client_ca=" + self.cert("operator-ca.pem"),
                    "--option", "trusted_peer=subject:%s proxy domain=partner.example"
                    % PROXY_SUBJECT]
            self.partner[name] = self.server("partner-" + name, argv, port=port)
            return self.partner[name]

        def repick(port):
            if port == sip[0]:
                sip[0] = free_port(udp_too=True)
            elif first and port == self.partner_port[name]:
                self.partner_port[name] = free_port()
            else:
                return False
            return True
        return retry_on_taken_port(once, repick)

    def partner_url(self, name):
        return "https://%s:%d" % (LOOPBACK, self.partner_port[name])

    def start_proxy(self):
        # Its HTTP port is in the XDMSs' --xcap-root already; only the admin port may change.
        def once():
            argv = [self.binary("aggproxy/aggproxy"), "--config", self.conf,
                    "--data", os.path.join(self.op_data, "aggproxy"), "--realm", "operator.example",
                    "--http", "%s:%d" % (LOOPBACK, self.proxy_http),
                    "--option", "metrics=%s:%d" % (LOOPBACK, self.metrics),
                    "--option", "caps_ttl=1", "--option", "caps_retry=1",
                    "--option", "local_domain=operator.example",
                    "--option", "upstream_check_interval=200",
                    "--option", "partner=partner.example %s %s ca=%s cert=%s key=%s "
                    "timeout_ms=3000 connect_timeout_ms=1000"
                    % (self.partner_url("a"), self.partner_url("b"), self.cert("partner-ca.pem"),
                       self.cert("proxy-client.pem"), self.cert("proxy-client.key")),
                    # the partner's presence XDMS serves its users' pres-rules
                    "--option", "partner_route=partner.example pres-rules " +
                    self.partner_url("presence"),
                    "--option", "partner=slow.example https://%s:%d ca=%s cert=%s key=%s "
                    "timeout_ms=1500 max_requests=1"
                    % (LOOPBACK, self.silent.port, self.cert("partner-ca.pem"),
                       self.cert("proxy-client.pem"), self.cert("proxy-client.key"))]
            for r in XDMS_ROLES:
                argv += ["--option", "%s=unix:%s" % (PROXY_URL_KEYS[r],
                                                     os.path.join(self.op_data, r, "xdms.sock"))]
            return self.server("proxy", argv, port=self.proxy_http)

        def repick(port):
            if port != self.metrics:
                return False
            self.metrics = free_port()
            return True
        return retry_on_taken_port(once, repick)

    def users(self):
        self.xdmctl("user", "add", "sip:alice@operator.example", "--password", "alicepw")
        # a partner user with a further identity in the operator's domain (provisioned by
        # mistake): it must not become a way into either side
        self.xdmctl("user", "add", "sip:bob@partner.example", "--password", "bobpw", "--impu",
                    "sip:bob-op@operator.example")
        self.xdmctl("user", "add", "sip:carol@elsewhere.example", "--password", "carolpw")
        self.xdmctl("user", "add", "sip:dave@slow.example", "--password", "davepw")

    def shutdown(self):
        if self.silent:
            self.silent.stop()
        return super().shutdown()


def doc_uri(user, domain):
    return "/xcap-root/resource-lists/users/sip:%s@%s/index" % (user, domain)


def dir_uri(user, domain):
    return ("/xcap-root/org.openmobilealliance.xcap-directory/users/sip:%s@%s/directory.xml"
            % (user, domain))


def folders(body):
    root = ET.fromstring(body)
    out = {}
    for f in root.findall(DIR_NS + "folder"):
        err = f.find(DIR_NS + "error-code")
        out[f.get("auid")] = ("error", err.text) if err is not None else \
            [e.get("uri") for e in f.findall(DIR_NS + "entry")]
    return out


def metrics(env):
    c = http.client.HTTPConnection(LOOPBACK, env.metrics, timeout=10)
    c.request("GET", "/metrics")
    r = c.getresponse()
    body = r.read().decode()
    c.close()
    expect(r.status == 200, "/metrics: %d" % r.status)
    out = {}
    for line in body.split("\n"):
        m = re.match(r'^(xdm_partner_[a-z_]+)\{([^}]*)\} (\S+)$', line)
        if m:
            out[(m.group(1), m.group(2))] = float(m.group(3))
    return out


def partner_direct(env, method, target, identity, cert=None, body=None, headers=()):
    """A request straight to the partner's XDMS over TLS, verifying it with the partner's CA,
    presenting cert (a name under certs/, or None)."""
    ctx = tls_context(env.cert(cert + ".pem") if cert else None,
                      env.cert(cert + ".key") if cert else None, env.cert("partner-ca.pem"))
    h = list(headers)
    if identity:
        h.append(("X-3GPP-Asserted-Identity", '"%s"' % identity))
    return exchange(env, env.partner_port["a"], method, target, h, body, tls=ctx, sni="localhost")


# ------------------------------------------------------------------------------------------------
# Checks

def check_local_user(env):
    """A user of the operator's domain: PUT, GET, DELETE through the proxy go to the local
    XDMS; the partner never sees them."""
    a = Digest("alice", "alicepw")
    uri = doc_uri("alice", "operator.example")
    before = metrics(env)
    r = request(env, env.proxy_http, "PUT", uri, a, [RL_CT], rl_doc("alice"))
    expect(r.status == 201 and r.header("ETag"), "PUT: %d %s" % (r.status, r.body))
    r = request(env, env.proxy_http, "GET", uri, a)
    expect(r.status == 200 and r.body == rl_doc("alice"), "GET: %d %s" % (r.status, r.body))
    r = request(env, env.proxy_http, "DELETE", uri, a)
    expect(r.status == 200, "DELETE: %d %s" % (r.status, r.body))
    r = request(env, env.proxy_http, "GET", uri, a)
    expect(r.status == 404, "GET after DELETE: %d" % r.status)
    r = request(env, env.proxy_http, "PUT", uri, a, [RL_CT], rl_doc("alice"))
    expect(r.status == 201, "PUT again: %d" % r.status)
    after = metrics(env)
    key = ("xdm_partner_requests_total", 'partner="partner.example"')
    expect(after[key] == before[key], "a local user's requests went to the partner: %s -> %s"
           % (before[key], after[key]))
    # the document is not at the partner (asked as the proxy would, for a partner identity)
    r = partner_direct(env, "GET", uri, "sip:bob@partner.example", "proxy-client")
    expect(r.status == 403, "alice's document at the partner, as bob: %d" % r.status)


def check_partner_user(env):
    """A user of partner.example: PUT, GET, DELETE through the proxy (Digest at the proxy) are
    served by the partner's XDMS over mutual TLS, with the identity asserted; the document lives
    in the partner's store, not the operator's."""
    b = Digest("bob", "bobpw")
    uri = doc_uri("bob", "partner.example")
    before = metrics(env)
    r = request(env, env.proxy_http, "PUT", uri, b, [RL_CT], rl_doc("bob"))
    expect(r.status == 201, "PUT: %d %s" % (r.status, r.body))
    etag = r.header("ETag")
    expect(etag and b.rspauth_ok(r), "ETag %s, Authentication-Info %s"
           % (etag, r.header("Authentication-Info")))
    r = request(env, env.proxy_http, "GET", uri, b)
    expect(r.status == 200 and r.body == rl_doc("bob") and r.header("ETag") == etag,
           "GET: %d %s %s" % (r.status, r.header("ETag"), r.body))
    # at the partner, with the proxy's certificate and bob's identity
    r = partner_direct(env, "GET", uri, "sip:bob@partner.example", "proxy-client")
    expect(r.status == 200 and r.body == rl_doc("bob") and r.header("ETag") == etag,
           "at the partner: %d %s" % (r.status, r.body))
    r = request(env, env.proxy_http, "DELETE", uri, b, [("If-Match", etag)])
    expect(r.status == 200, "DELETE: %d %s" % (r.status, r.body))
    r = partner_direct(env, "GET", uri, "sip:bob@partner.example", "proxy-client")
    expect(r.status == 404, "at the partner after DELETE: %d" % r.status)
    r = request(env, env.proxy_http, "PUT", uri, b, [RL_CT], rl_doc("bob"))
    expect(r.status == 201, "PUT again: %d" % r.status)
    after = metrics(env)
    key = ("xdm_partner_requests_total", 'partner="partner.example"')
    expect(after[key] == before[key] + 4, "partner requests %s -> %s" % (before[key], after[key]))
    cnt = ("xdm_partner_request_duration_seconds_count", 'partner="partner.example"')
    expect(after[cnt] == after[key], "latency count %s, requests %s" % (after[cnt], after[key]))


def check_isolation(env):
    """Neither side reaches the other's documents: another domain's XUI is challenged in that
    domain's realm (401 for the wrong credentials); an identity of the other domain cannot be
    chosen (403 at the proxy); the global tree goes by the user's own domain; a domain that is
    neither the operator's nor a partner's is refused (403)."""
    a, b = Digest("alice", "alicepw"), Digest("bob", "bobpw")
    r = request(env, env.proxy_http, "GET", doc_uri("alice", "operator.example"), b)
    expect(r.status == 401, "bob reading alice's document: %d" % r.status)
    r = request(env, env.proxy_http, "GET", doc_uri("bob", "partner.example"), a)
    expect(r.status == 401, "alice reading bob's document: %d" % r.status)
    r = request(env, env.proxy_http, "PUT", doc_uri("bob", "partner.example"), a, [RL_CT],
                rl_doc("mallory"))
    expect(r.status == 401, "alice writing bob's document: %d" % r.status)
    # bob asks to act as alice: not one of his identities
    r = request(env, env.proxy_http, "GET", doc_uri("bob", "partner.example"), b,
                [("X-3GPP-Intended-Identity", '"sip:alice@operator.example"')])
    expect(r.status == 403 and b"not one of yours" in r.body, "bob as alice: %d %s"
           % (r.status, r.body))
    # bob's further identity of the operator's domain is refused towards the partner by the proxy
    r = request(env, env.proxy_http, "GET", doc_uri("bob", "partner.example"), b,
                [("X-3GPP-Intended-Identity", '"sip:bob-op@operator.example"')])
    expect(r.status == 403 and r.body ==
           b"the identity sip:bob-op@operator.example cannot act in partner domain "
           b"partner.example\n", "bob as bob-op towards the partner: %d %s" % (r.status, r.body))
    # global tree: by the user's own domain (the partner answers bob's, the local XDMS alice's)
    before = metrics(env)
    g = "/xcap-root/resource-lists/global/nothing-here"
    r = request(env, env.proxy_http, "GET", g, b)
    expect(r.status == 404, "bob's global GET: %d %s" % (r.status, r.body))
    r = request(env, env.proxy_http, "GET", g, a)
    expect(r.status == 404, "alice's global GET: %d %s" % (r.status, r.body))
    after = metrics(env)
    key = ("xdm_partner_requests_total", 'partner="partner.example"')
    expect(after[key] == before[key] + 1, "global requests at the partner: %s -> %s"
           % (before[key], after[key]))
    # a domain served by nobody
    c = Digest("carol", "carolpw")
    r = request(env, env.proxy_http, "GET", doc_uri("carol", "elsewhere.example"), c)
    expect(r.status == 403 and r.body ==
           b"users of domain elsewhere.example are not served here\n",
           "carol: %d %s" % (r.status, r.body))
    r = request(env, env.proxy_http, "GET", "/xcap-root/resource-lists/global/x", c)
    expect(r.status == 403, "carol's global GET: %d" % r.status)


def check_forged_identity(env):
    """The partner's XDMS believes the operator proxy's certificate for partner.example only:
    that certificate asserting an operator identity, a certificate of another CA with the same
    subject, another subject of the operator's CA, or none at all, are all refused."""
    uri = doc_uri("bob", "partner.example")
    r = partner_direct(env, "GET", uri, "sip:bob@partner.example", "proxy-client")
    expect(r.status == 200, "control, the proxy's certificate for bob: %d" % r.status)
    # the operator's proxy asserting an operator-domain identity
    auri = doc_uri("alice", "operator.example")
    r = partner_direct(env, "PUT", auri, "sip:alice@operator.example", "proxy-client",
                       rl_doc("alice"), [RL_CT])
    expect(r.status == 403 and r.body ==
           b"this peer may assert identities of partner.example only, not "
           b"sip:alice@operator.example\n", "operator identity at the partner: %d %s"
           % (r.status, r.body))
    r = partner_direct(env, "GET", "/xcap-root/resource-lists/global/x",
                       "tel:+15550100", "proxy-client")
    expect(r.status == 403, "tel: identity at the partner: %d" % r.status)
    # the same subject from another CA
    try:
        r = partner_direct(env, "GET", uri, "sip:bob@partner.example", "rogue-client")
        expect(r.status == 403, "rogue CA: %d %s" % (r.status, r.body))
    except (ssl.SSLError, ConnectionError):
        pass
    r = partner_direct(env, "GET", uri, "sip:bob@partner.example", "other-client")
    expect(r.status == 403 and r.body == b"not a trusted peer\n", "other subject: %d %s"
           % (r.status, r.body))
    r = partner_direct(env, "GET", uri, "sip:bob@partner.example", None)
    expect(r.status == 403, "no client certificate: %d" % r.status)


def check_directory(env):
    """Each user's xcap-directory comes from the XDMSs of the user's domain: bob's from the
    partner (entries re-rooted under the proxy's root), alice's from the local XDMSs."""
    b, a = Digest("bob", "bobpw"), Digest("alice", "alicepw")
    r = request(env, env.proxy_http, "PUT", doc_uri("bob", "partner.example"), b, [RL_CT],
                rl_doc("bob"))
    expect(r.status in (200, 201), "bob's PUT: %d" % r.status)
    r = request(env, env.proxy_http, "PUT", doc_uri("alice", "operator.example"), a, [RL_CT],
                rl_doc("alice"))
    expect(r.status in (200, 201), "alice's PUT: %d" % r.status)
    # pres-rules go to the partner's presence XDMS (partner_route)
    pr = "/xcap-root/pres-rules/users/sip:bob@partner.example/index"
    r = request(env, env.proxy_http, "PUT", pr, b,
                [("Content-Type", "application/auth-policy+xml")], PR_DOC)
    expect(r.status in (200, 201), "bob's pres-rules PUT: %d %s" % (r.status, r.body))
    ctx = tls_context(env.cert("proxy-client.pem"), env.cert("proxy-client.key"),
                      env.cert("partner-ca.pem"))
    r = exchange(env, env.partner_port["presence"], "GET", pr,
                 [("X-3GPP-Asserted-Identity", '"sip:bob@partner.example"')], tls=ctx,
                 sni="localhost")
    expect(r.status == 200 and r.body == PR_DOC, "pres-rules at the partner's presence XDMS: %d"
           % r.status)
    r = request(env, env.proxy_http, "GET", dir_uri("bob", "partner.example"), b)
    expect(r.status == 200, "bob's directory: %d %s" % (r.status, r.body))
    f = folders(r.body)
    expect(f.get("pres-rules") == [env.root + pr[len("/xcap-root"):]], "bob's pres-rules folder: %s"
           % f)
    expect(f.get("resource-lists") == [env.root + doc_uri("bob", "partner.example")[len(
        "/xcap-root"):]], "bob's folders: %s" % f)
    r = request(env, env.proxy_http, "GET", dir_uri("alice", "operator.example"), a)
    expect(r.status == 200, "alice's directory: %d %s" % (r.status, r.body))
    f = folders(r.body)
    expect(f.get("resource-lists") == [env.root + doc_uri("alice", "operator.example")[len(
        "/xcap-root"):]], "alice's folders: %s" % f)
    expect("rls-services" in f and "pres-rules" in f, "alice's local folders: %s" % f)


def caps_auids(body):
    return [e.text for e in ET.fromstring(body).find(CAPS_NS + "auids")]


def check_caps(env):
    """xcap-caps is the union of the local XDMSs and the partners: the partner's XDMS is asked
    (without an identity, which it would not believe), and a partner that does not answer is
    skipped, not a failure."""
    a = Digest("alice", "alicepw")
    time.sleep(1.1)  # caps_ttl=1: the next request composes again
    r = request(env, env.proxy_http, "GET", "/xcap-root/xcap-caps/global/index", a)
    expect(r.status == 200, "xcap-caps: %d" % r.status)
    auids = caps_auids(r.body)
    for want in ("xcap-caps", "resource-lists", "rls-services", "pres-rules",
                 "org.openmobilealliance.xcap-directory"):
        expect(want in auids, "%s missing from %s" % (want, auids))
    logs = "".join(open(p.log, encoding="utf-8", errors="replace").read()
                   for p in env.partner.values())
    expect(re.search(r"GET /xcap-root/xcap-caps/global/index\S* 200 ", logs),
           "the partner was not asked for its xcap-caps:\n%s" % tail(env.partner["a"].log))


def check_limits_and_timeout(env):
    """slow.example accepts and never answers: a request waits its own timeout_ms (1.5 s, not
    the proxy's 10 s) and gets 504; meanwhile a second one finds max_requests=1 in flight and
    gets 503 with Retry-After at once; the local users are served all along."""
    results = {}

    def first():
        d = Digest("dave", "davepw")
        r = request(env, env.proxy_http, "GET", doc_uri("dave", "slow.example"), d)
        results["first"] = r

    # the 401 round trip first, so the timed request is the second one with credentials
    d2 = Digest("dave", "davepw")
    r = request(env, env.proxy_http, "GET", "/xcap-root/xcap-caps/global/index", d2)
    before = metrics(env)
    seen = env.silent.requests
    t0 = time.monotonic()
    th = threading.Thread(target=first)
    th.start()
    deadline = time.monotonic() + 5
    while env.silent.requests == seen and time.monotonic() < deadline:
        time.sleep(0.02)
    expect(env.silent.requests > seen, "the slow partner got no request")
    r = request(env, env.proxy_http, "GET", doc_uri("dave", "slow.example"), d2)
    expect(r.status == 503 and r.header("Retry-After") == "1" and
           r.body == b"partner slow.example is busy; try again\n",
           "second request: %d %s %s" % (r.status, r.header("Retry-After"), r.body))
    a = Digest("alice", "alicepw")
    r = request(env, env.proxy_http, "GET", doc_uri("alice", "operator.example"), a)
    expect(r.status == 200, "alice meanwhile: %d" % r.status)
    th.join(15)
    took = time.monotonic() - t0
    r = results.get("first")
    expect(r is not None and r.status == 504, "first request: %s %s"
           % (r and r.status, r and r.body))
    expect(1.3 < took < 6, "the slow partner's timeout took %.1f s" % took)
    after = metrics(env)
    lab = 'partner="slow.example"'
    expect(after[("xdm_partner_rejected_total", lab)] ==
           before[("xdm_partner_rejected_total", lab)] + 1, "rejected: %s" % after)
    expect(after[("xdm_partner_errors_total", lab)] ==
           before[("xdm_partner_errors_total", lab)] + 1, "errors: %s" % after)
    expect(after[("xdm_partner_in_flight", lab)] == 0, "in flight: %s" % after)
    inf = ("xdm_partner_request_duration_seconds_bucket", lab + ',le="+Inf"')
    one = ("xdm_partner_request_duration_seconds_bucket", lab + ',le="1"')
    expect(after[inf] - after[one] >= 1, "the 1.5 s request is not above the 1 s bucket: %s"
           % {k: v for k, v in after.items() if "slow" in k[1]})


def check_partner_down(env):
    """The partner's XDMS stops: bob's directory is still 200, each of its folders an
    <error-code> (OMA XDM Core xcap-directory), his document 503; xcap-caps is still 200; the
    operator's users are unaffected and the proxy stays ready; the errors are counted. Started
    again, the partner serves at once."""
    b, a = Digest("bob", "bobpw"), Digest("alice", "alicepw")
    before = metrics(env)
    for p in env.partner.values():
        msg = p.stop()
        expect(msg is None, msg or "")
    r = request(env, env.proxy_http, "GET", dir_uri("bob", "partner.example"), b)
    expect(r.status == 200, "bob's directory with the partner down: %d %s" % (r.status, r.body))
    f = folders(r.body)
    expect(f and all(v == ("error", "502") for v in f.values()) and "resource-lists" in f,
           "bob's folders: %s" % f)
    # neither instance reachable, the request sent nowhere: 503 with Retry-After (a one-URL
    # partner would answer 502, as a local one-URL upstream)
    r = request(env, env.proxy_http, "GET", doc_uri("bob", "partner.example"), b)
    expect(r.status == 503 and r.header("Retry-After") == "1" and
           b"the request was not sent" in r.body, "bob's document: %d %s" % (r.status, r.body))
    r = request(env, env.proxy_http, "GET", doc_uri("alice", "operator.example"), a)
    expect(r.status == 200, "alice: %d" % r.status)
    r = request(env, env.proxy_http, "GET", dir_uri("alice", "operator.example"), a)
    f = folders(r.body) if r.status == 200 else {}
    expect(r.status == 200 and f.get("resource-lists") and
           all(not isinstance(v, tuple) for v in f.values()), "alice's directory: %d %s" % (r.status, f))
    time.sleep(1.1)
    r = request(env, env.proxy_http, "GET", "/xcap-root/xcap-caps/global/index", a)
    expect(r.status == 200 and "resource-lists" in caps_auids(r.body), "xcap-caps: %d" % r.status)
    c = http.client.HTTPConnection(LOOPBACK, env.metrics, timeout=10)
    c.request("GET", "/readyz")
    rr = c.getresponse()
    rr.read()
    c.close()
    expect(rr.status == 200, "/readyz with the partner down: %d" % rr.status)
    after = metrics(env)
    lab = 'partner="partner.example"'
    expect(after[("xdm_partner_errors_total", lab)] ==
           before[("xdm_partner_errors_total", lab)] + 1,
           "partner errors %s -> %s" % (before[("xdm_partner_errors_total", lab)],
                                        after[("xdm_partner_errors_total", lab)]))
    for name in ("a", "b", "presence"):
        env.start_partner(name, "presence" if name == "presence" else "shared-list")
    r = request(env, env.proxy_http, "GET", doc_uri("bob", "partner.example"), b)
    expect(r.status == 200 and r.body == rl_doc("bob"), "bob after the restart: %d" % r.status)


def instance_up(env, name):
    return metrics(env).get(("xdm_partner_instance_up", 'partner="partner.example",upstream="%s"'
                             % env.partner_url(name)))


def check_partner_instances(env):
    """The partner's two instances are health-checked like a local list of several: one stops,
    the check reports it down within a second and the partner user is served by the other one
    without an error; started again, it is reported up."""
    b = Digest("bob", "bobpw")
    expect(instance_up(env, "a") == 1 and instance_up(env, "b") == 1,
           "instances up: a %s, b %s" % (instance_up(env, "a"), instance_up(env, "b")))
    msg = env.partner["a"].stop()
    expect(msg is None, msg or "")
    wait_for("instance a reported down", lambda: instance_up(env, "a") == 0, 1.5)
    expect(instance_up(env, "b") == 1, "instance b reported down")
    for i in range(6):
        r = request(env, env.proxy_http, "GET", doc_uri("bob", "partner.example"), b)
        expect(r.status == 200 and r.body == rl_doc("bob"), "GET %d with a down: %d %s"
               % (i, r.status, r.body))
    env.start_partner("a")
    wait_for("instance a reported up", lambda: instance_up(env, "a") == 1, 3.0)


def reload_proxy(env, want):
    """SIGHUP to the proxy; waits for one more log line containing want."""
    def count():
        return open(env.proxy.log, encoding="utf-8", errors="replace").read().count(want)
    n = count()
    env.proxy.popen.send_signal(signal.SIGHUP)
    wait_for("log line %r after SIGHUP" % want, lambda: count() > n, 5.0)


def put_file(src, dst):
    """Replaces dst by a copy of src the way an operator rotates a file: written beside, then
    renamed over."""
    shutil.copyfile(src, dst + ".new")
    os.replace(dst + ".new", dst)


def check_reload_partner_cert(env):
    """The client certificate presented to a partner rotates on SIGHUP like upstream_cert: new
    files under the same names are used by the next request (here a certificate the partner does
    not trust: its 403 is relayed); a broken pair refuses the reload and the running one stays;
    the original files back, the partner trusts the proxy again."""
    b = Digest("bob", "bobpw")
    uri = doc_uri("bob", "partner.example")
    cert, key = env.cert("proxy-client.pem"), env.cert("proxy-client.key")
    shutil.copyfile(cert, cert + ".orig")
    shutil.copyfile(key, key + ".orig")
    try:
        put_file(env.cert("other-client.pem"), cert)
        put_file(env.cert("other-client.key"), key)
        reload_proxy(env, "configuration reloaded")
        r = request(env, env.proxy_http, "GET", uri, b)
        expect(r.status == 403 and r.body == b"not a trusted peer\n",
               "with a certificate the partner does not trust: %d %s" % (r.status, r.body))
        # a key that is not the certificate's: refused, the running pair stays
        put_file(cert + ".orig", cert)
        reload_proxy(env, "reload refused")
        r = request(env, env.proxy_http, "GET", uri, b)
        expect(r.status == 403, "after a refused reload: %d" % r.status)
    finally:
        put_file(cert + ".orig", cert)
        put_file(key + ".orig", key)
    reload_proxy(env, "configuration reloaded")
    r = request(env, env.proxy_http, "GET", uri, b)
    expect(r.status == 200 and r.body == rl_doc("bob"), "rotated back: %d %s" % (r.status, r.body))


CHECKS = [check_local_user, check_partner_user, check_isolation, check_forged_identity,
          check_directory, check_caps, check_partner_instances, check_limits_and_timeout,
          check_reload_partner_cert, check_partner_down]


def main():
    return run_checks(script_args(__doc__), "partner_domains", Env, CHECKS, needs=("openssl",),
                      setup=Env.setup, errors=(Fail, OSError, http.client.HTTPException,
                                               ssl.SSLError, KeyError))


if __name__ == "__main__":
    sys.exit(main())
