#!/usr/bin/env python3
"""End-to-end checks of Ut (3GPP TS 24.623 simservs over XCAP, docs/ut.md) that the case runner
cannot express: subscribers with several public identities (tel: and sip:...;user=phone IMPUs of
one implicit registration set), the XUI spellings handsets send, Digest and GBA Digest over HTTPS
through the proxy with the 3GPP xcap. host name, a GUSS that allows simservs only, and the
application-server example tools/ut-forwarding-example against a trusted read.

    python3 tests/e2e/ut.py --build build [-v] [--keep] [--filter NAME]

Starts the ut and shared-list XDMSs and the proxy (HTTP and HTTPS) on free loopback ports with
temporary data, prints one PASS/FAIL line per check and `counts: P passed, F failed`; exits
non-zero when a check failed, a process died, or a sanitizer report appears in a log. Needs the
openssl command. Standard library only. GBA keys are computed here from TS 33.220 Annex B.
"""

import base64
import hashlib
import hmac
import http.client
import os
import ssl
import subprocess
import sys
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import (LOOPBACK, SOURCE_ROOT, Digest, Fail, Workspace, exchange, expect,  # noqa: E402
                     free_port, make_certs, request, retry_on_taken_port, run_checks, script_args,
                     tls_context)

# The XCAP server name handsets are given (TS 23.003 §13.9), also the NAF FQDN of GBA.
NAF = "xcap.ims.mnc001.mcc001.pub.3gppnetwork.org"
AUID = "simservs.ngn.etsi.org"
SS = "{http://uri.etsi.org/ngn/params/xml/simservs/xcap}"
CP_QUERY = "?xmlns(cp=urn:ietf:params:xml:ns:common-policy)"
EL = [("Content-Type", "application/xcap-el+xml")]
ATT = [("Content-Type", "application/xcap-att+xml")]
DOC_CT = [("Content-Type", "application/vnd.etsi.simservs+xml")]
TLS13_SUITES = {"TLS_AES_128_GCM_SHA256": 0x1301, "TLS_AES_256_GCM_SHA384": 0x1302,
                "TLS_CHACHA20_POLY1305_SHA256": 0x1303}
# The user agent of a handset that does GBA (TS 24.109 §5.2.1: the "3gpp-gba" product token).
UA = [("User-Agent", "Handset/1.0 3gpp-gba")]

ALICE = "sip:alice@ims.example.com"
ALICE_TEL = "tel:+4930123456"
ALICE_PHONE = "sip:+4930123456@ims.example.com;user=phone"
CDIV_BUSY = (b'<communication-diversion active="true" '
             b'xmlns="http://uri.etsi.org/ngn/params/xml/simservs/xcap" '
             b'xmlns:cp="urn:ietf:params:xml:ns:common-policy"><NoReplyTimer>20</NoReplyTimer>'
             b'<cp:ruleset><cp:rule id="cfb"><cp:conditions><busy/></cp:conditions><cp:actions>'
             b'<forward-to><target>tel:+4930555111</target></forward-to></cp:actions></cp:rule>'
             b'</cp:ruleset></communication-diversion>')


# The certificates (make_certs): a CA and the server certificate of the NAF.
CERT_CAS = [("ca", "/CN=Ut Test CA")]
CERT_LEAVES = [("server", "/CN=" + NAF, "ca",
                "subjectAltName=DNS:%s,IP:127.0.0.1\nextendedKeyUsage=serverAuth" % NAF)]


class Env(Workspace):
    def __init__(self, args):
        super().__init__(args.build, "xdm-e2e-ut-", args.verbose)
        self.tls_name = NAF
        self.certs = self.path("certs")
        os.makedirs(self.certs)
        make_certs(self.certs, self.path("openssl.log"), CERT_CAS, CERT_LEAVES)
        self.http = {r: free_port() for r in ("ut", "shared-list")}
        self.sip = {r: free_port(udp_too=True) for r in ("ut", "shared-list")}
        self.proxy_http, self.proxy_https = free_port(), free_port()
        self.root = "https://%s:%d/xcap-root" % (NAF, self.proxy_https)
        for r in ("ut", "shared-list"):
            self.start_xdms(r)
        argv = [self.binary("aggproxy/aggproxy"), "--config", self.conf,
                "--data", os.path.join(self.data, "aggproxy"), "--realm", "ims.example.com",
                "--http", "%s:%d" % (LOOPBACK, self.proxy_http),
                "--https", "%s:%d" % (LOOPBACK, self.proxy_https),
                "--option", "tls_cert=" + os.path.join(self.certs, "server.pem"),
                "--option", "tls_key=" + os.path.join(self.certs, "server.key"),
                "--option", "gaa_fqdn=" + NAF, "--option", "metrics=off",
                "--option", "ut_url=unix:" + os.path.join(self.data, "ut", "xdms.sock"),
                "--option", "shared_list_url=unix:" + os.path.join(self.data, "shared-list",
                                                                   "xdms.sock")]
        self.proxy = self.server("proxy", argv, port=self.proxy_http)
        self.xdmctl("user", "add", ALICE, "--password", "secret", "--impu", ALICE_TEL,
                    "--impu", ALICE_PHONE)
        self.alice = Digest("alice", "secret", "SHA-256")

    def start_xdms(self, role):
        def repick(port):
            self.http[role] = free_port()
            self.sip[role] = free_port(udp_too=True)
            return True

        def once():
            argv = [self.binary("xdms/xdms"), "--role", role, "--config", self.conf,
                    "--data", os.path.join(self.data, role),
                    "--http", "%s:%d" % (LOOPBACK, self.http[role]),
                    "--sip", "%s:%d" % (LOOPBACK, self.sip[role]), "--xcap-root", self.root + "/",
                    "--option", "metrics=off", "--option", "trusted_peer=127.0.0.1 server"]
            self.server(role, argv, port=self.http[role])
        retry_on_taken_port(once, repick)

    def ctx(self):
        return tls_context(ca=os.path.join(self.certs, "ca.pem"), tls13=True)


def doc_of(xui):
    return "/xcap-root/%s/users/%s/simservs.xml" % (AUID, xui)


def ks_naf(ks, rand, impi, fqdn, ua_id):
    """TS 33.220 Annex B.2: HMAC-SHA-256(Ks, FC || P0 || L0 || ... || P3 || L3)."""
    s = b"\x01"
    for p in (b"gba-me", rand, impi.encode(), fqdn.encode() + ua_id):
        s += p + len(p).to_bytes(2, "big")
    return hmac.new(ks, s, hashlib.sha256).digest()


# ------------------------------------------------------------------------------------------------
# Checks

def check_tel_xui(env):
    """A tel: IMPU of the subscriber's set (RFC 3966): the document of tel:+4930123456 is reached
    with the intended identity quoted, bare or in angle brackets and with visual separators, and
    with the XUI spelt with separators or a percent-encoded '+' (one document, one ETag); without
    the intended identity, or naming a number outside the set, it is 403."""
    p, a = env.proxy_http, env.alice
    r = request(env, p, "GET", doc_of(ALICE_TEL), a,
                [("X-3GPP-Intended-Identity", '"%s"' % ALICE_TEL)])
    expect(r.status == 200, "first GET: %d %r" % (r.status, r.body[:200]))
    etag = r.header("ETag")
    for xui, intended in (("tel:+49-30-123456", ALICE_TEL),
                          ("tel:%2B4930123456", "<tel:+49-30-123456>"),
                          ("TEL:+49(30)123456", "tel:+49.30.123456")):
        r = request(env, p, "GET", doc_of(xui), a, [("X-3GPP-Intended-Identity", intended)])
        expect(r.status == 200 and r.header("ETag") == etag,
               "GET %s as %s: %d %s (want ETag %s)" % (xui, intended, r.status,
                                                       r.header("ETag"), etag))
    r = request(env, p, "PUT", doc_of("tel:+49-30-123456") + "/~~/simservs/communication-waiting"
                "/@active", a, ATT + [("X-3GPP-Intended-Identity", "tel:+4930123456")], b"true")
    expect(r.status == 200, "attribute PUT: %d %r" % (r.status, r.body))
    r = request(env, p, "GET", doc_of(ALICE_TEL), a)
    expect(r.status == 403, "without the intended identity: %d" % r.status)
    r = request(env, p, "GET", doc_of("tel:+4930123457"), a,
                [("X-3GPP-Intended-Identity", '"tel:+4930123457"')])
    expect(r.status == 403 and not r.challenged, "a number outside the set: %d" % r.status)


def check_user_phone_xui(env):
    """A sip: IMPU with user=phone (RFC 3261 §19.1.6): its document is reached with the number
    spelt with separators, the host and the parameter in any case; it is another document than
    the tel: one (RFC 3261 §19.1.4) and than the default IMPU's."""
    p, a = env.proxy_http, env.alice
    want = [("X-3GPP-Intended-Identity", '"%s"' % ALICE_PHONE)]
    r = request(env, p, "PUT", doc_of(ALICE_PHONE) + "/~~/simservs/communication-diversion", a,
                EL + want, CDIV_BUSY)
    expect(r.status == 200, "element PUT: %d %r" % (r.status, r.body[:300]))
    etag = r.header("ETag")
    for xui, intended in (("sip:+49-30-123456@IMS.example.com;User=Phone",
                           "<sip:+49-30-123456@ims.EXAMPLE.com;user=PHONE>"),
                          ("sip:+4930123456@ims.example.com;user=phone",
                           "sip:+49(30)123456@ims.example.com;user=phone")):
        r = request(env, p, "GET", doc_of(xui) + "/~~/simservs/communication-diversion/@active", a,
                    [("X-3GPP-Intended-Identity", intended)])
        expect(r.status == 200 and r.body == b"true" and r.header("ETag") == etag,
               "GET %s: %d %r %s" % (xui, r.status, r.body, r.header("ETag")))
    for other, intended in ((ALICE_TEL, ALICE_TEL), (ALICE, ALICE)):
        r = request(env, p, "GET", doc_of(other) + "/~~/simservs/communication-diversion/@active",
                    a, [("X-3GPP-Intended-Identity", intended)])
        expect(r.status == 200 and r.body == b"false", "%s's own settings: %d %r"
               % (other, r.status, r.body))
    # Without user=phone the user part is not a number: another URI (and not one of alice's).
    r = request(env, p, "GET", doc_of("sip:+49-30-123456@ims.example.com"), a,
                [("X-3GPP-Intended-Identity", "sip:+49-30-123456@ims.example.com")])
    expect(r.status == 403, "the URI without user=phone: %d" % r.status)


def check_digest_https(env):
    """Plain Digest over HTTPS through the proxy at the xcap. host name: the whole document PUT
    with the document type, read back, and the XCAP root in errors is the one the client used."""
    p, ctx, host = env.proxy_https, env.ctx(), "%s:%d" % (NAF, env.proxy_https)
    a = Digest("alice", "secret", "MD5")
    r = request(env, p, "GET", doc_of(ALICE), a, tls=ctx, host=host)
    expect(r.status == 200 and r.challenged, "GET: %d" % r.status)
    root = ET.fromstring(r.body)
    cw = root.find(SS + "communication-waiting")
    cw.set("active", "true")
    body = ET.tostring(root)
    r = request(env, p, "PUT", doc_of(ALICE), a, DOC_CT + [("If-Match", r.header("ETag"))], body,
                tls=ctx, host=host)
    expect(r.status == 200 and not r.challenged and a.rspauth_ok(r), "PUT: %d %r"
           % (r.status, r.body))
    r = request(env, p, "GET", doc_of(ALICE) + "/~~/simservs/communication-waiting/@active", a,
                tls=ctx, host=host)
    expect(r.status == 200 and r.body == b"true", "read back: %d %r" % (r.status, r.body))
    r = request(env, p, "PUT", doc_of(ALICE) + "/~~/simservs/communication-diversion"
                "/NoReplyTimer", a, EL, b'<NoReplyTimer xmlns="http://uri.etsi.org/ngn/params'
                b'/xml/simservs/xcap">4</NoReplyTimer>', tls=ctx, host=host)
    expect(r.status == 409 and b"<constraint-failure" in r.body, "timer 4: %d %r"
           % (r.status, r.body))


def check_gba_https_guss(env):
    """GBA Digest over HTTPS (TS 33.222 §5.3; NAF_Id with the TLS suite, TS 33.220 Annex H.3) for
    a subscriber whose GUSS allows simservs.ngn.etsi.org only (TS 24.109 §7.3): its Ut requests,
    as its default IMPU and as its tel: IMPU, are served (every service read, enabled and
    disabled); resource-lists is 403 without a new
    challenge; xcap-caps stays readable and lists the simservs usage."""
    ks, rand = bytes(range(0x20, 0x40)), bytes(range(0x70, 0x80))
    btid = base64.b64encode(rand).decode() + "@bsf.ims.example.com"
    impi = "ue1@ims.example.com"
    env.xdmctl("gba", "add", "--btid", btid, "--impi", impi, "--ks", ks.hex(),
               "--impu", "sip:ue1@ims.example.com", "--impu", "tel:+4930777000",
               "--allow", AUID, "--lifetime", "3600")
    ctx, p, host = env.ctx(), env.proxy_https, "%s:%d" % (NAF, env.proxy_https)
    doc = doc_of("sip:ue1@ims.example.com")
    r = exchange(env, p, "GET", doc, UA, tls=ctx, host=host)
    expect(r.status == 401, "first request: %d" % r.status)
    code = TLS13_SUITES.get(r.cipher[0])
    expect(code is not None, "unexpected TLS 1.3 suite %s" % (r.cipher,))
    key = ks_naf(ks, rand, impi, NAF, b"\x01\x00\x01" + code.to_bytes(2, "big"))
    auth = Digest(btid, base64.b64encode(key).decode(), "MD5")
    auth.adopt(r)
    r = request(env, p, "GET", doc + "/~~/simservs/communication-diversion", auth, UA, tls=ctx,
                host=host)
    expect(r.status == 200 and auth.rspauth_ok(r), "element GET: %d %r" % (r.status, r.body))
    r = request(env, p, "PUT", doc + "/~~/simservs/communication-diversion", auth, UA + DOC_CT,
                CDIV_BUSY, tls=ctx, host=host)
    expect(r.status == 200, "element PUT: %d %r" % (r.status, r.body))
    tel = doc_of("tel:+49-30-777000")
    r = request(env, p, "PUT", tel + "/~~/simservs/originating-identity-presentation-restriction"
                "/@active", auth, UA + ATT + [("X-3GPP-Intended-Identity", '"tel:+4930777000"')],
                b"true", tls=ctx, host=host)
    expect(r.status == 200, "tel: IMPU attribute PUT: %d %r" % (r.status, r.body))
    # Every service read, enabled and disabled over GBA, as a handset's settings screen does.
    for svc in SERVICES:
        node = doc + "/~~/simservs/" + svc
        r = request(env, p, "GET", node, auth, UA, tls=ctx, host=host)
        expect(r.status == 200 and r.body.startswith(b"<" + svc.encode()),
               "GET %s: %d %r" % (svc, r.status, r.body[:100]))
        for value in (b"true", b"false"):
            r = request(env, p, "PUT", node + "/@active", auth, UA + ATT, value, tls=ctx,
                        host=host)
            expect(r.status == 200, "PUT %s/@active %s: %d %r" % (svc, value, r.status, r.body))
            r = request(env, p, "GET", node + "/@active", auth, UA, tls=ctx, host=host)
            expect(r.status == 200 and r.body == value, "GET %s/@active: %d %r"
                   % (svc, r.status, r.body))
    r = request(env, p, "GET", "/xcap-root/resource-lists/users/sip:ue1@ims.example.com/index",
                auth, UA, tls=ctx, host=host)
    expect(r.status == 403 and not r.challenged, "resource-lists: %d" % r.status)
    r = request(env, p, "GET", "/xcap-root/xcap-caps/global/index", auth, UA, tls=ctx, host=host)
    expect(r.status == 200 and b"<auid>simservs.ngn.etsi.org</auid>" in r.body,
           "xcap-caps: %d" % r.status)
    expect(auth.challenges == 1, "one challenge for all requests, got %d" % auth.challenges)


def check_forwarding_example(env):
    """tools/ut-forwarding-example, the application server's decision (docs/ut.md), against the
    ut XDMS read as a trusted server: forward on busy to the handset's target; no forwarding once
    the handset turned the service off; a subscriber who never wrote has the defaults."""
    p, a = env.proxy_http, env.alice
    tool = os.path.join(SOURCE_ROOT, "tools", "ut-forwarding-example")
    root = "http://%s:%d/xcap-root" % (LOOPBACK, env.http["ut"])

    def decide(user, condition):
        out = subprocess.run([sys.executable, tool, "--xcap-root", root, "--user", user,
                              "--condition", condition], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, timeout=30)
        expect(out.returncode == 0, "exit %d: %r" % (out.returncode, out.stderr))
        return out.stdout.decode().strip()

    want = [("X-3GPP-Intended-Identity", ALICE_TEL)]
    r = request(env, p, "PUT", doc_of(ALICE_TEL) + "/~~/simservs/communication-diversion", a,
                EL + want, CDIV_BUSY)
    expect(r.status == 200, "element PUT: %d %r" % (r.status, r.body))
    got = decide(ALICE_TEL, "busy")
    expect(got == "forward-to tel:+4930555111 rule=cfb", "busy: %r" % got)
    got = decide("tel:+49-30-123456", "no-answer")
    expect(got == "no-forwarding no rule applies to no-answer", "no-answer: %r" % got)
    r = request(env, p, "PUT", doc_of(ALICE_TEL) + "/~~/simservs/communication-diversion/@active",
                a, ATT + want, b"false")
    expect(r.status == 200, "attribute PUT: %d" % r.status)
    got = decide(ALICE_TEL, "busy")
    expect(got == "no-forwarding communication-diversion is not active", "off: %r" % got)
    got = decide("sip:nobody@ims.example.com", "busy")
    expect(got == "no-forwarding communication-diversion is not active", "defaults: %r" % got)


SERVICES = ("communication-diversion", "incoming-communication-barring",
            "outgoing-communication-barring", "originating-identity-presentation",
            "originating-identity-presentation-restriction", "terminating-identity-presentation",
            "terminating-identity-presentation-restriction", "communication-waiting")

CHECKS = [check_tel_xui, check_user_phone_xui, check_digest_https, check_gba_https_guss,
          check_forwarding_example]


def main():
    return run_checks(script_args(__doc__), "ut", Env, CHECKS, needs=("openssl",),
                      errors=(Fail, OSError, http.client.HTTPException, ssl.SSLError,
                              ET.ParseError))


if __name__ == "__main__":
    sys.exit(main())
