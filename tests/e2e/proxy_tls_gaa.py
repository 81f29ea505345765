#!/usr/bin/env python3
"""End-to-end checks of the Aggregation Proxy that the case runner (run.py) cannot express:
TLS listeners with certificates made here, mutual TLS between the proxy and an XDMS, GBA Digest
(GAA) with records added by xdmctl, per-subscriber AUID authorisation (GUSS), users with several
identities, gzip round trips, and the aggregated xcap-directory seen through HTTPS.

    python3 tests/e2e/proxy_tls_gaa.py --build build [-v] [--keep] [--filter NAME]

Starts the real binaries on free loopback ports with temporary data (one deployment shared by the
checks, plus short-lived extra proxies), prints one PASS/FAIL line per check and
`counts: P passed, F failed`; exits non-zero when a check failed, a process died, or a sanitizer
report appears in a log. Needs the openssl command. Standard library only.

Expected values are computed here from the specifications (TS 33.220 Annex B for Ks_NAF, RFC 7616
for Digest), not taken from the servers.
"""

import base64
import gzip
import hashlib
import hmac
import http.client
import os
import re
import ssl
import subprocess
import sys
import time
import warnings
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (LOOPBACK, PROXY_URL_KEYS, XDMS_ROLES, Digest, Fail, Workspace,  # noqa: E402
                     exchange, expect, free_port, make_certs, parse_challenges, request,
                     retry_on_taken_port, run_checks, script_args, tls_context)

NAF = "xcap.example.com"
DIR_NS = "{urn:oma:xml:xdm:xcap-directory}"
# TLS 1.3 suites by OpenSSL name -> IANA code (RFC 8446 B.4), for the NAF_Id of GAA over HTTPS.
TLS13_SUITES = {"TLS_AES_128_GCM_SHA256": 0x1301, "TLS_AES_256_GCM_SHA384": 0x1302,
                "TLS_CHACHA20_POLY1305_SHA256": 0x1303}

RL_DOC = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
          b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">\n'
          b'  <list name="friends">\n' +
          b"".join(b'    <entry uri="sip:friend%02d@example.com"/>\n' % i for i in range(40)) +
          b'  </list>\n</resource-lists>\n')
PR_DOC = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
          b'<cr:ruleset xmlns="urn:ietf:params:xml:ns:pres-rules" '
          b'xmlns:cr="urn:ietf:params:xml:ns:common-policy">\n'
          b'  <cr:rule id="a"><cr:conditions/><cr:actions><sub-handling>allow</sub-handling>'
          b'</cr:actions><cr:transformations/></cr:rule>\n</cr:ruleset>\n')
RLS_DOC = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
           b'<rls-services xmlns="urn:ietf:params:xml:ns:rls-services" '
           b'xmlns:rl="urn:ietf:params:xml:ns:resource-lists">\n'
           b'  <service uri="sip:alice-friends@example.com"><list name="l">'
           b'<rl:entry uri="sip:bob@example.com"/></list><packages><package>presence</package>'
           b'</packages></service>\n</rls-services>\n')


# ------------------------------------------------------------------------------------------------
# Certificates (openssl CLI)

CLIENT_EXT = "extendedKeyUsage=clientAuth"
CERT_CAS = [("ca", "/CN=XDM Test CA"), ("rogue-ca", "/CN=Rogue CA")]
CERT_LEAVES = [
    ("server", "/CN=" + NAF, "ca",
     "subjectAltName=IP:127.0.0.1,DNS:%s,DNS:localhost\nextendedKeyUsage=serverAuth" % NAF),
    ("proxy-client", "/O=Example/CN=aggproxy", "ca", CLIENT_EXT),
    ("rogue-client", "/O=Example/CN=aggproxy", "rogue-ca", CLIENT_EXT),
    ("other-client", "/O=Example/CN=someone", "ca", CLIENT_EXT)]


class Env(Workspace):
    def __init__(self, args):
        super().__init__(args.build, "xdm-e2e-proxy-tls-", args.verbose)
        self.tls_name = NAF  # the server name of TLS exchanges (the NAF's FQDN, TS 33.222)
        self.certs = self.path("certs")
        os.makedirs(self.certs)
        make_certs(self.certs, self.path("openssl.log"), CERT_CAS, CERT_LEAVES)
        self.http = {r: free_port() for r in XDMS_ROLES}
        self.sip = {r: free_port(udp_too=True) for r in XDMS_ROLES}
        self.proxy_http = free_port()
        self.proxy_https = free_port()
        self.root = "http://%s:%d/xcap-root" % (LOOPBACK, self.proxy_http)
        self.xdms = {}
        for r in XDMS_ROLES:
            self.start_xdms(r)
        self.proxy = self.start_proxy(
            ["--http", "%s:%d" % (LOOPBACK, self.proxy_http),
             "--https", "%s:%d" % (LOOPBACK, self.proxy_https),
             "--option", "gaa_fqdn=" + NAF], self.proxy_http)

    def cert(self, name):
        return os.path.join(self.certs, name)

    def start_xdms(self, role):
        # Nothing refers to an XDMS's ports before the proxy starts: both may change.
        def repick(port):
            self.http[role] = free_port()
            self.sip[role] = free_port(udp_too=True)
            return True
        return retry_on_taken_port(lambda: self.start_xdms_once(role), repick)

    def start_xdms_once(self, role):
        argv = [self.binary("xdms/xdms"), "--role", role, "--config", self.conf,
                "--data", os.path.join(self.data, role),
                "--http", "%s:%d" % (LOOPBACK, self.http[role]),
                "--sip", "%s:%d" % (LOOPBACK, self.sip[role]), "--xcap-root", self.root + "/",
                "--option", "metrics=off"]  # no admin listener: parallel runs share no port
        if role == "shared-list":
            # Mutual TLS: only the proxy's client certificate is a trusted peer.
            argv += ["--option", "tls_cert=" + self.cert("server.pem"),
                     "--option", "tls_key=" + self.cert("server.key"),
                     "--option", "tls_client_ca=" + self.cert("ca.pem"),
                     "--option", "trusted_peer=subject:CN=aggproxy,O=Example proxy"]
        self.xdms[role] = self.server(role, argv, port=self.http[role])

    def upstream_url(self, role):
        # The shared-list XDMS trusts the proxy by its TLS client certificate; the others by
        # the connection on their UNIX-domain socket (<data>/xdms.sock), as deployed by default.
        if role == "shared-list":
            return "https://%s:%d" % (LOOPBACK, self.http[role])
        return "unix:" + os.path.join(self.data, role, "xdms.sock")

    def start_proxy(self, extra, port):
        argv = [self.binary("aggproxy/aggproxy"), "--config", self.conf,
                "--data", os.path.join(self.data, "aggproxy"), "--realm", "example.com",
                "--option", "tls_cert=" + self.cert("server.pem"),
                "--option", "tls_key=" + self.cert("server.key"),
                "--option", "upstream_ca=" + self.cert("ca.pem"),
                "--option", "upstream_cert=" + self.cert("proxy-client.pem"),
                "--option", "upstream_key=" + self.cert("proxy-client.key"),
                "--option", "caps_ttl=1", "--option", "caps_retry=1",
                "--option", "metrics=off"]  # no admin listener: parallel runs share no port
        for r in XDMS_ROLES:
            argv += ["--option", "%s=%s" % (PROXY_URL_KEYS[r], self.upstream_url(r))]
        return self.server("proxy", argv + extra, port=port)

    def xdmctl_output(self, *args):
        return subprocess.run([self.binary("tools/xdmctl"), "--data", self.data] +
                              list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, timeout=60, check=True).stdout.decode()


def ks_naf(ks, rand, impi, fqdn, ua_id):
    """TS 33.220 Annex B.2: HMAC-SHA-256(Ks, FC || P0 || L0 || ... || P3 || L3)."""
    s = b"\x01"
    for p in (b"gba-me", rand, impi.encode(), fqdn.encode() + ua_id):
        s += p + len(p).to_bytes(2, "big")
    return hmac.new(ks, s, hashlib.sha256).digest()


# ------------------------------------------------------------------------------------------------
# Checks

GBA_KS = bytes(range(0x20, 0x40))
GBA_RAND = bytes(range(0x40, 0x50))
GBA_BTID = base64.b64encode(GBA_RAND).decode() + "@bsf.example.com"
GBA_IMPI = "gaa-user@ims.example.com"


def gaa_setup(env):
    if getattr(env, "gaa_ready", False):
        return
    env.xdmctl("gba", "add", "--btid", GBA_BTID, "--impi", GBA_IMPI, "--ks", GBA_KS.hex(),
               "--impu", "sip:gaa-user@example.com", "--impu", "tel:+15550001",
               "--lifetime", "3600")
    env.gaa_ready = True


def gaa_client(ua_id):
    key = ks_naf(GBA_KS, GBA_RAND, GBA_IMPI, NAF, ua_id)
    return Digest(GBA_BTID, base64.b64encode(key).decode(), "MD5")


UA = [("User-Agent", "XDMC/1.0 3gpp-gba")]


def check_gaa_http(env):
    """GBA Digest over HTTP with a record added by xdmctl (TS 24.109 §5.2, §7.1;
    TS 33.222 §5.3; TS 33.220 Annex B, H.3): realm names the Host, the
    key is Ks_NAF for NAF_Id = FQDN || 01 00 00 00 02, the identity is the record's first IMPU."""
    gaa_setup(env)
    host = "%s:%d" % (NAF, env.proxy_http)
    doc = "/xcap-root/resource-lists/users/sip:gaa-user@example.com/index"
    r = exchange(env, env.proxy_http, "GET", doc, UA, host=host)
    expect(r.status == 401, "first request: %d" % r.status)
    chals = parse_challenges(r.all("WWW-Authenticate"))
    expect(chals and chals[0].get("realm") == "3GPP-bootstrapping@" + NAF,
           "realm: %s" % chals)
    expect(chals[0].get("algorithm") == "MD5" and "auth-int" in chals[0].get("qop", ""),
           "GBA challenge: %s" % chals[0])
    auth = gaa_client(b"\x01\x00\x00\x00\x02")
    auth.adopt(r)
    r = request(env, env.proxy_http, "PUT", doc, auth,
                UA + [("Content-Type", "application/resource-lists+xml")], RL_DOC, host=host)
    expect(r.status in (200, 201), "PUT as B-TID: %d %s" % (r.status, r.body[:200]))
    expect(auth.rspauth_ok(r), "rspauth: %s" % r.header("Authentication-Info"))
    r = request(env, env.proxy_http, "GET", doc, auth, UA, host=host)
    expect(r.status == 200 and not r.challenged and r.body == RL_DOC, "GET: %d" % r.status)
    # auth-int: the body is covered too
    r = request(env, env.proxy_http, "PUT", doc, auth,
                UA + [("Content-Type", "application/resource-lists+xml")], RL_DOC, host=host,
                qop="auth-int")
    expect(r.status == 200 and not r.challenged and auth.rspauth_ok(r), "auth-int PUT: %d" % r.status)
    # the second IMPU, picked with X-3GPP-Intended-Identity
    tel = "/xcap-root/resource-lists/users/tel:+15550001/index"
    r = request(env, env.proxy_http, "PUT", tel, auth,
                UA + [("Content-Type", "application/resource-lists+xml"),
                      ("X-3GPP-Intended-Identity", '"tel:+15550001"')], RL_DOC, host=host)
    expect(r.status == 201 and not r.challenged, "PUT as tel IMPU: %d %s" % (r.status, r.body))
    r = request(env, env.proxy_http, "GET", tel, auth, UA, host=host)
    expect(r.status == 403, "tel document without intended identity: %d" % r.status)
    expect(auth.challenges == 1, "one challenge for all requests, got %d" % auth.challenges)


def check_gaa_wrong_key(env):
    """A key derived for another NAF_Id (wrong Ua id) does not authenticate; nor does an unknown
    B-TID. Both get a fresh challenge."""
    gaa_setup(env)
    host = "%s:%d" % (NAF, env.proxy_http)
    doc = "/xcap-root/resource-lists/users/sip:gaa-user@example.com/index"
    auth = gaa_client(b"\x01\x00\x01\x13\x01")
    r = request(env, env.proxy_http, "GET", doc, auth, UA, host=host)
    expect(r.status == 401 and parse_challenges(r.all("WWW-Authenticate")),
           "wrong Ua id: %d" % r.status)
    auth = Digest("AAAAAAAAAAAAAAAAAAAAAA==@bsf.example.com", "x")
    r = request(env, env.proxy_http, "GET", doc, auth, UA, host=host)
    expect(r.status == 401 and parse_challenges(r.all("WWW-Authenticate")),
           "unknown B-TID: %d" % r.status)


def check_gaa_expired(env):
    """A B-TID whose key lifetime is over gets 401 with a fresh challenge (TS 33.220 §4.5.3)."""
    rand = bytes(range(0x60, 0x70))
    btid = base64.b64encode(rand).decode() + "@bsf.example.com"
    env.xdmctl("gba", "add", "--btid", btid, "--impi", "short@ims.example.com", "--ks",
               GBA_KS.hex(), "--impu", "sip:short@example.com", "--lifetime", "2")
    host = "%s:%d" % (NAF, env.proxy_http)
    doc = "/xcap-root/resource-lists/users/sip:short@example.com/index"
    key = ks_naf(GBA_KS, rand, "short@ims.example.com", NAF, b"\x01\x00\x00\x00\x02")
    auth = Digest(btid, base64.b64encode(key).decode())
    r = request(env, env.proxy_http, "GET", doc, auth, UA, host=host)
    expect(r.status == 404, "fresh key: %d" % r.status)
    time.sleep(2.2)
    r = request(env, env.proxy_http, "GET", doc, auth, UA, host=host, retry=False)
    expect(r.status == 401 and parse_challenges(r.all("WWW-Authenticate")),
           "expired key: %d" % r.status)


def check_gaa_https(env):
    """GBA Digest inside TLS (TS 33.222 §5.3): the NAF_Id carries the negotiated cipher suite
    (01 00 01 yy zz, TS 33.220 Annex H.3); the key for plain HTTP does not fit."""
    gaa_setup(env)
    ctx = tls_context(ca=env.cert("ca.pem"), tls13=True)
    host = "%s:%d" % (NAF, env.proxy_https)
    doc = "/xcap-root/resource-lists/users/sip:gaa-user@example.com/index"
    r = exchange(env, env.proxy_https, "GET", doc, UA, tls=ctx, host=host)
    expect(r.status == 401, "first request over TLS: %d" % r.status)
    code = TLS13_SUITES.get(r.cipher[0])
    expect(code is not None, "unexpected TLS 1.3 suite %s" % (r.cipher,))
    plain = gaa_client(b"\x01\x00\x00\x00\x02")
    plain.adopt(r)
    r2 = request(env, env.proxy_https, "GET", doc, plain, UA, tls=ctx, host=host, retry=False)
    expect(r2.status == 401, "plain-HTTP key over TLS: %d" % r2.status)
    auth = gaa_client(b"\x01\x00\x01" + code.to_bytes(2, "big"))
    auth.adopt(r)
    r = request(env, env.proxy_https, "GET", doc, auth, UA, tls=ctx, host=host)
    expect(r.status == 200 and r.body == RL_DOC and auth.rspauth_ok(r),
           "GET over TLS with the suite's key: %d" % r.status)


def check_gaa_authorisation(env):
    """GUSS authorisation (TS 24.109 §7.3): a B-TID allowed only resource-lists gets 200 there and 403
    (no new challenge, text/plain reason, a log line) on pres-rules and on the composed
    directory, while xcap-caps stays readable; a B-TID without restriction gets both; one allowed
    the directory as well reads it. xdmctl gba list shows the allowed AUIDs."""
    gaa_setup(env)
    p, host = env.proxy_http, "%s:%d" % (NAF, env.proxy_http)
    ua_id = b"\x01\x00\x00\x00\x02"

    def subscriber(tag, allow):
        rand = hashlib.sha256(tag.encode()).digest()[:16]
        btid = base64.b64encode(rand).decode() + "@bsf.example.com"
        impi = "%s@ims.example.com" % tag
        args = ["gba", "add", "--btid", btid, "--impi", impi, "--ks", GBA_KS.hex(),
                "--impu", "sip:%s@example.com" % tag]
        for a in allow:
            args += ["--allow", a]
        env.xdmctl(*args)
        key = ks_naf(GBA_KS, rand, impi, NAF, ua_id)
        return btid, Digest(btid, base64.b64encode(key).decode(), "MD5")

    def doc(tag, auid):
        return "/xcap-root/%s/users/sip:%s@example.com/index" % (auid, tag)

    rl_ct = [("Content-Type", "application/resource-lists+xml")]
    pr_ct = [("Content-Type", "application/auth-policy+xml")]
    directory_auid = "org.openmobilealliance.xcap-directory"
    caps = "/xcap-root/xcap-caps/global/index"

    r_btid, r = subscriber("guss-rl", ["resource-lists"])
    d_btid, d = subscriber("guss-dir", ["resource-lists", directory_auid])
    listing = {line.split("\t")[0]: line.split("\t") for line in
               env.xdmctl_output("gba", "list").splitlines()}
    expect(listing.get(r_btid, [""])[-1] == "resource-lists", "gba list: %s" % listing.get(r_btid))
    expect(listing.get(d_btid, [""])[-1] == "resource-lists," + directory_auid,
           "gba list: %s" % listing.get(d_btid))
    expect(listing.get(GBA_BTID, [""])[-1] == "*", "gba list: %s" % listing.get(GBA_BTID))

    # restricted to resource-lists
    res = request(env, p, "PUT", doc("guss-rl", "resource-lists"), r, UA + rl_ct, RL_DOC, host=host)
    expect(res.status == 201, "allowed PUT: %d %s" % (res.status, res.body))
    res = request(env, p, "GET", doc("guss-rl", "resource-lists"), r, UA, host=host)
    expect(res.status == 200 and res.body == RL_DOC, "allowed GET: %d" % res.status)
    for method, body, hdrs in (("GET", None, []), ("PUT", PR_DOC, pr_ct), ("DELETE", None, [])):
        res = request(env, p, method, doc("guss-rl", "pres-rules"), r, UA + hdrs, body, host=host)
        expect(res.status == 403 and not res.challenged and
               not res.all("WWW-Authenticate"), "%s pres-rules: %d" % (method, res.status))
        expect((res.header("Content-Type") or "").startswith("text/plain") and
               b"application usage" in res.body, "403 answer: %s %s" % (res.headers, res.body))
        expect(r.rspauth_ok(res), "Authentication-Info on the 403")
    res = request(env, p, "GET", doc("guss-rl", "org.openmobilealliance.pres-rules"), r, UA,
                  host=host)
    expect(res.status == 403, "other presence AUID: %d" % res.status)
    res = request(env, p, "GET", "/xcap-root/%s/users/sip:guss-rl@example.com/directory.xml"
                  % directory_auid, r, UA, host=host)
    expect(res.status == 403, "directory without --allow for it: %d" % res.status)
    res = request(env, p, "GET", caps, r, UA, host=host)
    expect(res.status == 200 and b"<auid>pres-rules</auid>" in res.body,
           "xcap-caps stays readable: %d" % res.status)
    res = request(env, p, "GET", doc("guss-rl", "no-such-auid"), r, UA, host=host)
    expect(res.status == 404, "unrouted AUID: %d" % res.status)
    expect(r.challenges == 1, "one challenge for all requests, got %d" % r.challenges)
    logged = open(env.proxy.log, encoding="utf-8", errors="replace").read()
    expect(re.search(r"403: B-TID %s may not use AUID pres-rules" % re.escape(r_btid), logged),
           "no log line for the refusal")

    # the directory allowed as well: it is composed as usual
    res = request(env, p, "GET", "/xcap-root/%s/users/sip:guss-dir@example.com/directory.xml"
                  % directory_auid, d, UA, host=host)
    expect(res.status == 200 and "resource-lists" in folders(res.body),
           "directory with --allow for it: %d %s" % (res.status, res.body[:200]))
    res = request(env, p, "GET", doc("guss-dir", "rls-services"), d, UA, host=host)
    expect(res.status == 403, "rls-services for the directory subscriber: %d" % res.status)

    # no restriction: both usages
    auth = gaa_client(ua_id)
    gdoc = "/xcap-root/%s/users/sip:gaa-user@example.com/index"
    res = request(env, p, "PUT", gdoc % "resource-lists", auth, UA + rl_ct, RL_DOC, host=host)
    expect(res.status in (200, 201), "unrestricted resource-lists PUT: %d" % res.status)
    res = request(env, p, "PUT", gdoc % "pres-rules", auth, UA + pr_ct, PR_DOC, host=host)
    expect(res.status in (200, 201), "unrestricted pres-rules PUT: %d %s" % (res.status, res.body))
    for auid, want in (("resource-lists", RL_DOC), ("pres-rules", PR_DOC)):
        res = request(env, p, "GET", gdoc % auid, auth, UA, host=host)
        expect(res.status == 200 and res.body == want, "unrestricted %s GET: %d"
               % (auid, res.status))


def users_setup(env):
    if getattr(env, "users_ready", False):
        return
    env.xdmctl("user", "add", "sip:alice@example.com", "--password", "secret", "--impu",
               "tel:+15551234")
    env.xdmctl("user", "add", "sip:bob@example.com", "--password", "bobpw")
    env.users_ready = True
    env.alice = Digest("alice", "secret", "SHA-256")


def check_identities(env):
    """X-3GPP-Intended-Identity picks one of the user's identities (xdmctl user add --impu); any
    other is 403; client identity headers are ignored (TS 24.109 §7; OMA XDM Core §5.1.2)."""
    users_setup(env)
    a = env.alice
    p = env.proxy_http
    tel = "/xcap-root/resource-lists/users/tel:+15551234/index"
    ct = ("Content-Type", "application/resource-lists+xml")
    r = request(env, p, "PUT", tel, a, [ct, ("X-3GPP-Intended-Identity", '"tel:+15551234"')],
                RL_DOC)
    expect(r.status == 201, "PUT as tel identity: %d %s" % (r.status, r.body))
    r = request(env, p, "GET", tel, a, [("X-3GPP-Intended-Identity", "<tel:+15551234>")])
    expect(r.status == 200 and r.body == RL_DOC, "GET as tel identity: %d" % r.status)
    r = request(env, p, "GET", tel, a, [("X-3GPP-Intended-Identity", '"sip:bob@example.com"')])
    expect(r.status == 403 and not r.challenged, "someone else's identity: %d" % r.status)
    r = request(env, p, "GET", tel, a, [("X-3GPP-Intended-Identity", '"a", "b"')])
    expect(r.status == 400, "a list as intended identity: %d" % r.status)
    # spoofed asserted identity: the XDMS still sees alice
    bob = "/xcap-root/resource-lists/users/sip:bob@example.com/index"
    b = Digest("bob", "bobpw")
    r = request(env, p, "PUT", bob, b, [ct], RL_DOC)
    expect(r.status == 201, "bob's PUT: %d" % r.status)
    spoof = [("X-3GPP-Asserted-Identity", '"sip:bob@example.com"'),
             ("X-XCAP-Asserted-Identity", '"sip:bob@example.com"')]
    r = request(env, p, "GET", bob, a, spoof)
    expect(r.status == 403, "alice reading bob's document with spoofed headers: %d" % r.status)


def check_gzip(env):
    """gzip both ways at the proxy (OMA XDM Core §5.1; RFC 9110 §8.4.1.3): a gzip request body is decoded before the XDMS sees
    it; answers are gzipped for clients that accept it, with Vary and the identity ETag; zip
    bombs are 413, broken gzip 400, other codings 415."""
    users_setup(env)
    a, p = env.alice, env.proxy_http
    doc = "/xcap-root/resource-lists/users/sip:alice@example.com/gz"
    ct = ("Content-Type", "application/resource-lists+xml")
    r = request(env, p, "PUT", doc, a, [ct, ("Content-Encoding", "gzip")], gzip.compress(RL_DOC))
    expect(r.status == 201, "gzip PUT: %d %s" % (r.status, r.body))
    etag = r.header("ETag")
    r = request(env, p, "GET", doc, a)
    expect(r.status == 200 and r.body == RL_DOC and r.header("Content-Encoding") is None,
           "identity GET: %d %s" % (r.status, r.header("Content-Encoding")))
    expect(r.header("ETag") == etag and "Accept-Encoding" in (r.header("Vary") or ""),
           "identity GET headers: %s" % r.headers)
    r = request(env, p, "GET", doc, a, [("Accept-Encoding", "gzip, deflate")])
    expect(r.status == 200 and r.header("Content-Encoding") == "gzip", "gzip GET: %s" % r.headers)
    expect(gzip.decompress(r.body) == RL_DOC and len(r.body) < len(RL_DOC), "gzip body")
    expect(r.header("ETag") == etag and "Accept-Encoding" in (r.header("Vary") or ""),
           "gzip GET headers: %s" % r.headers)
    expect(a.rspauth_ok(r), "rspauth over the gzip body")
    r = request(env, p, "GET", doc, a, [("Accept-Encoding", "gzip;q=0, *")])
    expect(r.header("Content-Encoding") is None, "gzip;q=0 honoured")
    # conditional PUT with the ETag of the identity body
    r = request(env, p, "PUT", doc, a, [ct, ("If-Match", etag), ("Content-Encoding", "gzip")],
                gzip.compress(RL_DOC.replace(b"friend00", b"friend99")))
    expect(r.status == 200, "If-Match with the ETag seen gzipped: %d" % r.status)
    bomb = gzip.compress(b"<a>" + b" " * (8 << 20) + b"</a>")
    r = request(env, p, "PUT", doc, a, [ct, ("Content-Encoding", "gzip")], bomb)
    expect(r.status == 413, "zip bomb: %d" % r.status)
    r = request(env, p, "PUT", doc, a, [ct, ("Content-Encoding", "gzip")], b"\x1f\x8bnot gzip")
    expect(r.status == 400, "bad gzip: %d" % r.status)
    r = request(env, p, "PUT", doc, a, [ct, ("Content-Encoding", "br")], RL_DOC)
    expect(r.status == 415 and r.header("Accept-Encoding") == "gzip", "br: %d" % r.status)


def check_tls_listener(env):
    """HTTPS listener with the test certificate (verified with the test CA), TLS 1.2 and 1.3;
    Digest works the same inside; TLS 1.1 is refused."""
    users_setup(env)
    for tls13 in (False, True):
        ctx = tls_context(ca=env.cert("ca.pem"), tls13=tls13)
        if not tls13:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        a = Digest("alice", "secret")
        r = request(env, env.proxy_https, "GET", "/xcap-root/xcap-caps/global/index", a, tls=ctx)
        expect(r.status == 200 and b"<auid>resource-lists</auid>" in r.body,
               "xcap-caps over %s: %d" % (r.cipher, r.status))
        expect(b"org.openmobilealliance.xcap-directory" in r.body, "directory in xcap-caps")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(env.cert("ca.pem"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        return  # this OpenSSL cannot even offer TLS 1.1
    try:
        exchange(env, env.proxy_https, "GET", "/xcap-root/xcap-caps/global/index", tls=ctx)
        raise Fail("TLS 1.1 was accepted")
    except (ssl.SSLError, ConnectionError, OSError):
        pass


def check_https_only(env):
    """http = off: only the HTTPS listener runs."""
    port = free_port()
    p = env.start_proxy(["--http", "off", "--https", "%s:%d" % (LOOPBACK, port)], port)
    try:
        text = open(p.log).read()
        expect("listening on https://" in text and "listening on http://" not in text,
               "listeners: %s" % text)
        ctx = tls_context(ca=env.cert("ca.pem"))
        r = exchange(env, port, "GET", "/xcap-root/xcap-caps/global/index", tls=ctx)
        expect(r.status == 401, "over https: %d" % r.status)
        try:
            exchange(env, port, "GET", "/xcap-root/xcap-caps/global/index")
            raise Fail("plain HTTP answered on the TLS port")
        except (http.client.HTTPException, ConnectionError, OSError):
            pass
    finally:
        msg = p.stop()
        env.procs.remove(p)
        if msg:
            raise Fail(msg)


def check_mtls(env):
    """The shared-list XDMS trusts only the proxy's client certificate (trusted_peer by subject):
    through the proxy everything works; directly, no certificate, another CA's certificate with
    the same subject, or another subject all get 403 or a failed handshake."""
    users_setup(env)
    a, p = env.alice, env.proxy_http
    doc = "/xcap-root/resource-lists/users/sip:alice@example.com/index"
    ct = ("Content-Type", "application/resource-lists+xml")
    r = request(env, p, "PUT", doc, a, [ct], RL_DOC)
    expect(r.status in (200, 201), "PUT through the proxy (mTLS upstream): %d %s" % (r.status, r.body))
    x = env.http["shared-list"]
    ident = [("X-3GPP-Asserted-Identity", '"sip:alice@example.com"')]
    ctx = tls_context(ca=env.cert("ca.pem"))
    r = exchange(env, x, "GET", doc, ident, tls=ctx, sni="localhost")
    expect(r.status == 403, "direct without a client certificate: %d" % r.status)
    ctx = tls_context(env.cert("other-client.pem"), env.cert("other-client.key"), env.cert("ca.pem"))
    r = exchange(env, x, "GET", doc, ident, tls=ctx, sni="localhost")
    expect(r.status == 403, "direct with an untrusted subject: %d" % r.status)
    ctx = tls_context(env.cert("rogue-client.pem"), env.cert("rogue-client.key"), env.cert("ca.pem"))
    try:
        r = exchange(env, x, "GET", doc, ident, tls=ctx, sni="localhost")
        expect(r.status == 403, "direct with a certificate of another CA: %d" % r.status)
    except (ssl.SSLError, ConnectionError):
        pass
    ctx = tls_context(env.cert("proxy-client.pem"), env.cert("proxy-client.key"), env.cert("ca.pem"))
    r = exchange(env, x, "GET", doc, ident, tls=ctx, sni="localhost")
    expect(r.status == 200, "direct with the proxy's certificate: %d" % r.status)


def directory(env, port, tls=None):
    return request(env, port, "GET",
                   "/xcap-root/org.openmobilealliance.xcap-directory/users/sip:alice@example.com/"
                   "directory.xml", env.alice, tls=tls)


def folders(body):
    root = ET.fromstring(body)
    out = {}
    for f in root.findall(DIR_NS + "folder"):
        err = f.find(DIR_NS + "error-code")
        out[f.get("auid")] = ("error", err.text) if err is not None else \
            [(e.get("uri"), e.get("etag")) for e in f.findall(DIR_NS + "entry")]
    return out


def check_directory(env):
    """xcap-directory composed from the three XDMSs (OMA XDM Core 2.0 §5.3.2; OMA XDM Core 1.1 Appendix B; RFC 9110 §8.8.3), URIs under the root the client
    used (http and https), its own ETag, 304, node selector, read-only; with the presence XDMS
    stopped its folders carry an error code and the others stay."""
    users_setup(env)
    a, p = env.alice, env.proxy_http
    for auid, ct, body in (("resource-lists", "application/resource-lists+xml", RL_DOC),
                           ("pres-rules", "application/auth-policy+xml", PR_DOC),
                           ("rls-services", "application/rls-services+xml", RLS_DOC)):
        r = request(env, p, "PUT", "/xcap-root/%s/users/sip:alice@example.com/index" % auid, a,
                    [("Content-Type", ct)], body)
        expect(r.status in (200, 201), "PUT %s: %d %s" % (auid, r.status, r.body))
    r = directory(env, p)
    expect(r.status == 200 and r.header("Content-Type") == "application/vnd.oma.xcap-directory+xml",
           "directory: %d %s" % (r.status, r.body))
    f = folders(r.body)
    for auid in ("resource-lists", "pres-rules", "rls-services"):
        uris = [u for u, _ in f.get(auid, [])] if isinstance(f.get(auid), list) else []
        want = "%s/%s/users/sip:alice@example.com/index" % (env.root, auid)
        expect(want in uris, "%s folder: %s" % (auid, f.get(auid)))
    etag = r.header("ETag")
    expect(etag and etag.startswith('"'), "directory ETag: %s" % etag)
    r = request(env, p, "GET", "/xcap-root/org.openmobilealliance.xcap-directory/users/"
                "sip:alice@example.com/directory.xml", a, [("If-None-Match", etag)])
    expect(r.status == 304, "If-None-Match: %d" % r.status)
    r = directory(env, env.proxy_https, tls_context(ca=env.cert("ca.pem")))
    https_root = "https://%s:%d/xcap-root/" % (LOOPBACK, env.proxy_https)
    expect(r.status == 200 and all(u.startswith(https_root)
                                   for v in folders(r.body).values() if isinstance(v, list)
                                   for u, _ in v),
           "URIs over https: %s" % r.body[:400])
    sel = ("/xcap-root/org.openmobilealliance.xcap-directory/users/sip:alice@example.com/"
           "directory.xml/~~/xcap-directory/folder%5B@auid=%22resource-lists%22%5D")
    r = request(env, p, "GET", sel, a)
    expect(r.status == 200 and r.header("Content-Type") == "application/xcap-el+xml" and
           r.body.startswith(b'<folder auid="resource-lists">') and r.header("ETag") == etag,
           "node selector: %d %s %s" % (r.status, r.headers, r.body[:200]))
    r = request(env, p, "PUT", "/xcap-root/org.openmobilealliance.xcap-directory/users/"
                "sip:alice@example.com/directory.xml", a, [("Content-Type", "text/plain")], b"x")
    expect(r.status == 405 and "GET" in (r.header("Allow") or ""), "PUT: %d" % r.status)
    # one XDMS down
    msg = env.xdms["presence"].stop()
    expect(msg is None, msg or "")
    try:
        r = directory(env, p)
        expect(r.status == 200, "directory with presence stopped: %d" % r.status)
        f = folders(r.body)
        expect(f.get("pres-rules", ("",))[0] == "error" and
               f.get("org.openmobilealliance.pres-rules", ("",))[0] == "error",
               "presence folders: %s" % f)
        expect(isinstance(f.get("resource-lists"), list) and f["resource-lists"],
               "resource-lists still listed: %s" % f)
        expect(r.header("ETag") != etag, "ETag changed with the error folders")
    finally:
        env.procs.remove(env.xdms["presence"])
        env.start_xdms("presence")


CHECKS = [check_gaa_http, check_gaa_wrong_key, check_gaa_expired, check_gaa_https,
          check_gaa_authorisation, check_identities, check_gzip, check_tls_listener,
          check_https_only, check_mtls, check_directory]


def main():
    return run_checks(script_args(__doc__), "proxy_tls_gaa", Env, CHECKS, needs=("openssl",),
                      errors=(Fail, OSError, http.client.HTTPException, ssl.SSLError))


if __name__ == "__main__":
    sys.exit(main())
