/* The proxy's method, authenticate and authorise phases (proxy_internal.h): HTTP Digest
 * (RFC 7616) against the proxy's users, then the users of an LDAP directory, or GBA (TS 33.222);
 * HTTP Basic (RFC 7617) over HTTPS for LDAP users; and the AUIDs a GBA subscriber may use
 * (TS 24.109). */
#include "proxy_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "gba.h"
#include "ldapusers.h"
#include "log.h"
#include "metrics.h"
#include "users.h"

/* GBA Digest: TS 24.109 §5.2 and TS 33.222 §5.3 build on RFC 2617 Digest, which defines MD5
 * (and MD5-sess) only, so a 3GPP terminal must find MD5, first (for clients that read one
 * challenge only); SHA-256 is offered as well. digest_algorithms does not apply: the password is
 * derived from Ks_(ext)_NAF (256 bits, per B-TID, with a lifetime), so MD5's weakness against
 * guessing a human password does not matter here. */
static const struct digest_algs proxy_auth_gaa_algs = {{DIGEST_MD5, DIGEST_SHA256}, 2};

/* The algorithms offered to (and accepted from) this request's client. */
static const struct digest_algs *proxy_auth_offered(const struct proxy *p,
                                                    const struct proxy_call *c)
{
    return c->gaa ? &proxy_auth_gaa_algs : &p->algs;
}

/* Whether this request may authenticate with HTTP Basic: LDAP users with ldap_basic, over TLS. */
static bool proxy_auth_basic_offered(const struct proxy *p, const struct proxy_call *c)
{
    return p->ldap && p->ldap_basic && c->tls_cipher >= 0 && !c->gaa;
}

/* A 401 with one challenge per offered algorithm, in the configured order: RFC 7616 §3.7 has the
 * client use the first one it supports, and many clients (Python's urllib, xcaplib, SIP phones)
 * read only the first WWW-Authenticate header at all. GBA (TS 24.109 §5.2): qop "auth-int,auth". */
static enum xcap_status proxy_auth_challenge(struct proxy *p, struct proxy_call *c, bool stale)
{
    char nonce[DIGEST_NONCE_MAX];
    if (digest_nonce_new(p->digest, digest_clock_now(), nonce) < 0)
        return xcap_fail(&c->err, XCAP_INTERNAL, "cannot make a nonce");
    xcap_fail(&c->err, XCAP_UNAUTHORIZED, "authentication required");
    struct buf v;
    buf_init(&v, 4096);
    const struct digest_algs *offered = proxy_auth_offered(p, c);
    for (size_t i = 0; i < offered->n; i++) {
        buf_reset(&v);
        if (digest_challenge_qop(p->digest, offered->v[i], c->realm, nonce, stale,
                                 c->gaa ? "auth-int,auth" : "auth", &v) == 0)
            xcap_err_add_header(&c->err, "WWW-Authenticate", v.data);
    }
    /* RFC 7617 §2: Basic, after the Digest challenges (a client takes the first it supports),
     * only where the password travels encrypted (§4) and only for LDAP users (a bind checks it) */
    if (proxy_auth_basic_offered(p, c)) {
        buf_reset(&v);
        if (buf_printf(&v, "Basic realm=\"%s\", charset=\"UTF-8\"", ldapusers_realm(p->ldap)) == 0)
            xcap_err_add_header(&c->err, "WWW-Authenticate", v.data);
    }
    buf_release(&v);
    return XCAP_UNAUTHORIZED;
}

static int proxy_auth_ids_add(struct proxy_call *c, const char *id)
{
    if (c->n_ids == PROXY_IDS_MAX)
        return 0;
    if (!(c->ids[c->n_ids] = strdup(id)))
        return -1;
    c->n_ids++;
    return 0;
}

/* GBA credentials (TS 33.222 §5.3; TS 33.220 §4.5.3): username = B-TID, password from Ks_(ext)_NAF
 * for this NAF_Id; the public identities and the allowed AUIDs (TS 24.109 §7.3) come with the key.
 * The AUIDs are moved into the call. */
static int proxy_auth_lookup_gaa(struct proxy_call *c, const char *realm, const char *btid,
                                 enum digest_alg alg, struct digest_cred *out)
{
    struct proxy *p = c->p;
    struct gba_key key;
    int rc = p->gba.fetch(p->gba.cls, btid, c->naf_id, c->naf_id_len, (int64_t)time(NULL), &key);
    if (rc != 0) {
        if (rc > 0)
            log_info("%s %s: B-TID %s unknown or expired: new challenge", c->method, c->target,
                     btid);
        return rc;
    }
    char pw[GBA_PASSWORD_MAX];
    size_t pwlen;
    rc = -1;
    if (gba_password(key.ks_naf, p->gaa_password, pw, &pwlen) == 0 &&
        digest_ha1_raw(alg, btid, realm, pw, pwlen, out->ha1) == 0 &&
        (out->identity = strdup(key.impus[0])) != NULL) {
        rc = 0;
        for (size_t i = 0; i < key.n_impus && rc == 0; i++)
            rc = proxy_auth_ids_add(c, key.impus[i]);
        if (key.n_auids > GBA_AUIDS_MAX)
            rc = -1;
        for (size_t i = 0; i < key.n_auids && rc == 0; i++) {
            c->auids[c->n_auids++] = key.auids[i];
            key.auids[i] = NULL;
        }
    }
    OPENSSL_cleanse(pw, sizeof pw);
    gba_key_release(&key);
    return rc;
}

static int proxy_auth_ids_take(struct proxy_call *c, struct digest_cred *out,
                               struct users_cred *uc);

/* A Digest user from the LDAP directory: 0 with out->ha1 and *uc filled, 1 for an unknown user
 * or one without an HA1 for alg, -1 when the directory failed (c->ldap_down: it could not be
 * asked, which the client is told with 503). */
static int proxy_auth_lookup_ldap(struct proxy_call *c, const char *realm, const char *username,
                                  enum digest_alg alg, struct digest_cred *out,
                                  struct users_cred *uc)
{
    switch (ldapusers_lookup(c->p->ldap, realm, username, digest_clock_now(), uc)) {
    case LDAPUSERS_OK:
        break;
    case LDAPUSERS_UNKNOWN:
    case LDAPUSERS_BAD_PASSWORD:
        return 1;
    case LDAPUSERS_UNAVAILABLE:
        c->ldap_down = true;
        return -1;
    case LDAPUSERS_ERROR:
        return -1;
    }
    bool md5 = alg == DIGEST_MD5 || alg == DIGEST_MD5_SESS;
    const char *ha1 = md5 ? uc->ha1_md5 : uc->ha1_sha256;
    if (!ha1[0]) {
        proxy_note(c, "LDAP user %.64s has no %s HA1", username, md5 ? "MD5" : "SHA-256");
        users_cred_release(uc);
        return 1;
    }
    memcpy(out->ha1, ha1, DIGEST_HEX_MAX);
    return 0;
}

/* digest_lookup_fn; cls is the struct proxy_call. */
static int proxy_auth_lookup(void *cls, const char *realm, const char *username,
                             enum digest_alg alg, struct digest_cred *out)
{
    struct proxy_call *c = cls;
    proxy_ids_clear(c);
    if (c->gaa)
        return proxy_auth_lookup_gaa(c, realm, username, alg, out);
    struct users_cred uc;
    int rc = users_digest_cred(c->p->store, realm, username, alg, out, &uc);
    if (rc > 0 && c->p->ldap) {
        /* not a user of the proxy's store: the directory's (docs/enterprise.md, precedence) */
        rc = proxy_auth_lookup_ldap(c, realm, username, alg, out, &uc);
    }
    if (rc != 0)
        return rc;
    return proxy_auth_ids_take(c, out, &uc);
}

/* Moves the identities of uc into the call (XUI first) and releases uc. */
static int proxy_auth_ids_take(struct proxy_call *c, struct digest_cred *out, struct users_cred *uc)
{
    int rc = !out || (out->identity = strdup(uc->xui)) ? 0 : -1;
    if (rc == 0)
        rc = proxy_auth_ids_add(c, uc->xui);
    for (size_t i = 0; i < uc->n_ids && rc == 0; i++)
        rc = proxy_auth_ids_add(c, uc->ids[i]);
    users_cred_release(uc);
    return rc;
}

/* Whether the raw path ends in a node selector naming namespace bindings ("~~/.../namespace::*",
 * RFC 4825 §6.4), which are read-only (§8.2.2). */
static bool proxy_auth_namespace_selector(const char *path)
{
    const char *sel = strstr(path, "/~~/");
    const char *last = strrchr(path, '/');
    char seg[32];
    return sel && last && last > sel + 2 &&
           xcap_uri_pct_decode(last + 1, strlen(last + 1), seg, sizeof seg) == 0 &&
           strcmp(seg, "namespace::*") == 0;
}

/* Phase: method (RFC 4825 §8, RFC 9110 §15.5.6). An XCAP resource answers GET, HEAD, PUT and
 * DELETE only (xcap-caps, the composed directory and namespace bindings GET and HEAD only).
 * Anything else under the XCAP root, the root itself included, gets 405 with the resource's
 * Allow before authentication: the answer is about the kind of resource, the same for everyone,
 * and tells nothing about anybody's documents. Outside the root, authentication comes first. */
enum xcap_status proxy_method(struct proxy_call *c)
{
    static const char *const xcap_methods[] = {"GET", "HEAD", "PUT", "DELETE"};
    if (!c->route.in_root)
        return XCAP_OK;
    for (size_t i = 0; i < sizeof xcap_methods / sizeof xcap_methods[0]; i++)
        if (strcmp(c->method, xcap_methods[i]) == 0)
            return XCAP_OK;
    bool read_only = c->route.kind == ROUTE_CAPS || c->route.kind == ROUTE_DIRECTORY ||
                     proxy_auth_namespace_selector(http_request_path(c->req));
    proxy_note(c, "not an XCAP method");
    xcap_fail(&c->err, XCAP_METHOD_NOT_ALLOWED, "method %.32s is not allowed", c->method);
    c->err.allow = strdup(read_only ? "GET, HEAD" : "GET, HEAD, PUT, DELETE");
    return XCAP_METHOD_NOT_ALLOWED;
}

/* The directory was needed and could not be asked: 503 with Retry-After (RFC 9110 §15.6.4), the
 * client may try again; users of the proxy's own store are not affected. */
static enum xcap_status proxy_auth_ldap_down(struct proxy *p, struct proxy_call *c)
{
    proxy_note(c, "the LDAP directory is unavailable");
    xcap_fail(&c->err, XCAP_UPSTREAM_DOWN, "the user directory is unavailable, try again later");
    xcap_err_add_header(&c->err, "Retry-After", ldapusers_retry_after(p->ldap));
    return XCAP_UPSTREAM_DOWN;
}

/* Longest Basic credentials accepted (base64 of user-id ":" password). */
#define PROXY_AUTH_BASIC_MAX (4 * ((USERS_NAME_MAX + 1 + USERS_PASSWORD_MAX + 2) / 3))

/* HTTP Basic (RFC 7617 §2): over HTTPS only (§4: the password travels in clear text), for LDAP
 * users, verified by binding as the user (docs/enterprise.md). Elsewhere the answer is the
 * ordinary 401 with the challenges this request would get, which over plain HTTP name Digest
 * only. */
static enum xcap_status proxy_auth_basic(struct proxy *p, struct proxy_call *c, const char *cred)
{
    if (!proxy_auth_basic_offered(p, c)) {
        metrics_auth_failure(METRICS_AUTH_REJECTED);
        proxy_note(c, "%s",
                   c->tls_cipher < 0 && p->ldap && p->ldap_basic
                       ? "Basic credentials over plain HTTP refused (RFC 7617 §4)"
                       : "Basic credentials are not accepted here");
        return proxy_auth_challenge(p, c, false);
    }
    while (*cred == ' ')
        cred++;
    size_t len = strcspn(cred, " \t");
    if (len == 0 || len > PROXY_AUTH_BASIC_MAX || len % 4 != 0 ||
        cred[len + strspn(cred + len, " \t")]) {
        metrics_auth_failure(METRICS_AUTH_MALFORMED);
        return xcap_fail(&c->err, XCAP_BAD_REQUEST, "malformed Basic credentials");
    }
    unsigned char plain[PROXY_AUTH_BASIC_MAX + 4];
    int n = EVP_DecodeBlock(plain, (const unsigned char *)cred, (int)len);
    if (n < 0) {
        metrics_auth_failure(METRICS_AUTH_MALFORMED);
        return xcap_fail(&c->err, XCAP_BAD_REQUEST, "malformed Basic credentials");
    }
    for (size_t i = len; i > 0 && cred[i - 1] == '='; i--)
        n--; /* EVP_DecodeBlock counts the padding as bytes */
    plain[n] = '\0';
    char *colon = memchr(plain, ':', (size_t)n);
    enum xcap_status st = XCAP_INTERNAL;
    if (!colon || colon == (char *)plain || memchr(plain, '\0', (size_t)n)) {
        metrics_auth_failure(METRICS_AUTH_REJECTED);
        proxy_note(c, "Basic credentials without a user-id and password");
        st = proxy_auth_challenge(p, c, false);
    } else {
        *colon = '\0';
        const char *user = (const char *)plain, *pw = colon + 1;
        struct users_cred uc;
        enum ldapusers_rc rc = ldapusers_basic(p->ldap, user, pw, digest_clock_now(), &uc);
        switch (rc) {
        case LDAPUSERS_OK:
            proxy_ids_clear(c);
            c->basic = true;
            st = proxy_auth_ids_take(c, NULL, &uc) == 0
                     ? XCAP_OK
                     : xcap_fail(&c->err, XCAP_INTERNAL, "out of memory");
            break;
        case LDAPUSERS_UNKNOWN:
        case LDAPUSERS_BAD_PASSWORD:
            metrics_auth_failure(METRICS_AUTH_REJECTED);
            proxy_note(c, "Basic: %s %.64s",
                       rc == LDAPUSERS_UNKNOWN ? "unknown user" : "wrong password for", user);
            st = proxy_auth_challenge(p, c, false);
            break;
        case LDAPUSERS_UNAVAILABLE:
            st = proxy_auth_ldap_down(p, c);
            break;
        case LDAPUSERS_ERROR:
            st = xcap_fail(&c->err, XCAP_INTERNAL, "user directory failure");
            break;
        }
    }
    OPENSSL_cleanse(plain, sizeof plain);
    return st;
}

/* Phase: authenticate (OMA XDM Core §5.1.1; RFC 7616; TS 33.222 §5.3): XCAP_OK when the request
 * may go on. */
enum xcap_status proxy_authenticate(struct proxy *p, struct proxy_call *c)
{
    if (proxy_header_count(c->req, "Authorization") > 1)
        return xcap_fail(&c->err, XCAP_BAD_REQUEST, "more than one Authorization header");
    struct digest_request drq = {
        .method = c->method,
        .uri = c->target,
        .offered = proxy_auth_offered(p, c),
        .realm = c->need_realm,
        .body = c->body,
        .body_len = c->body_len,
        .now = digest_clock_now(),
    };
    const char *authz = http_request_header(c->req, "Authorization");
    if (authz && strncasecmp(authz, "Basic", 5) == 0 && (authz[5] == ' ' || authz[5] == '\0'))
        return proxy_auth_basic(p, c, authz + 5);
    const char *why = NULL;
    enum digest_result r =
        digest_verify(p->digest, authz, &drq, proxy_auth_lookup, c, &c->auth, &why);
    switch (r) {
    case DIGEST_OK:
        c->authenticated = true;
        if (c->n_ids == 0) {
            proxy_note(c, "authenticated without an identity");
            return xcap_fail(&c->err, XCAP_INTERNAL, "no identity for the authenticated user");
        }
        return XCAP_OK;
    case DIGEST_BAD_REQUEST:
        metrics_auth_failure(METRICS_AUTH_MALFORMED);
        return xcap_fail(&c->err, XCAP_BAD_REQUEST, "%s", why);
    case DIGEST_CHALLENGE:
        metrics_auth_failure(authz ? METRICS_AUTH_REJECTED : METRICS_AUTH_MISSING);
        if (authz)
            proxy_note(c, "%s", why);
        c->quiet = !authz;
        return proxy_auth_challenge(p, c, false);
    case DIGEST_STALE:
        metrics_auth_failure(METRICS_AUTH_STALE);
        proxy_note(c, "stale: %s", why);
        c->quiet = true;
        return proxy_auth_challenge(p, c, true);
    case DIGEST_ERROR:
        if (c->ldap_down)
            return proxy_auth_ldap_down(p, c);
        proxy_note(c, "authentication failed: %s", why);
        return xcap_fail(&c->err, XCAP_INTERNAL, "authentication backend failure");
    }
    return xcap_fail(&c->err, XCAP_INTERNAL, "unknown verdict");
}

/* Phase: authorise (TS 24.109 §7.3). A GBA subscriber whose GUSS names the AUIDs it
 * may use gets 403 for any other (RFC 9110 §15.5.4: authenticated, so no new challenge). The
 * proxy's own xcap-caps stays readable: it describes the server, holds nothing of anyone, and a
 * client reads it to learn what it may ask for. The composed xcap-directory is checked as the AUID
 * it is: it would list documents of every XDMS, including the ones the subscriber may not use, so a
 * restricted subscriber needs it in the allowed set. A URI no XDMS serves stays 404 (nothing to
 * protect there). Plain Digest users have no GUSS and are not restricted. */
enum xcap_status proxy_authorise(struct proxy_call *c)
{
    if (!c->gaa || c->n_auids == 0 || c->route.kind == ROUTE_CAPS ||
        c->route.kind == ROUTE_NOT_FOUND)
        return XCAP_OK;
    if (gba_auid_allowed((const char *const *)c->auids, c->n_auids, c->route.auid,
                         c->route.auid_len))
        return XCAP_OK;
    proxy_note(c, "B-TID %.64s may not use AUID %.*s (GUSS)", c->auth.username,
               (int)(c->route.auid_len < 64 ? c->route.auid_len : 64), c->route.auid);
    return xcap_fail(&c->err, XCAP_FORBIDDEN,
                     "your subscription does not allow this application usage");
}
