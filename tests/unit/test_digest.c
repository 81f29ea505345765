/* Unit suite for aggproxy/digest.c: RFC 7616 test vectors, the Authorization parser, nonces
 * (validity, expiry, tampering, eviction, stripes, concurrent use), nc replay, and the checks of
 * RFC 7616 §3.3-§3.5. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "digest.h"
#include "digest_internal.h"
#include "unit.h"

/* ---- RFC vectors ---------------------------------------------------------------------------- */

/* RFC 7616 §3.9.1: the inputs stated in the RFC and the published response values. */
#define RFC7616_USER "Mufasa"
#define RFC7616_REALM "http-auth@example.org"
#define RFC7616_PASSWORD "Circle of Life"
#define RFC7616_URI "/dir/index.html"
#define RFC7616_NONCE "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
#define RFC7616_CNONCE "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"

static void rfc7616_vector(enum digest_alg alg, const char *published)
{
    char ha1[DIGEST_HEX_MAX], resp[DIGEST_HEX_MAX];
    CU_ASSERT_EQUAL_FATAL(digest_ha1(alg, RFC7616_USER, RFC7616_REALM, RFC7616_PASSWORD, ha1), 0);
    struct digest_input in = {
        .alg = alg,
        .ha1 = ha1,
        .nonce = RFC7616_NONCE,
        .nc = "00000001",
        .cnonce = RFC7616_CNONCE,
        .qop = "auth",
        .method = "GET",
        .uri = RFC7616_URI,
    };
    CU_ASSERT_EQUAL_FATAL(digest_response(&in, resp), 0);
    CU_ASSERT_STRING_EQUAL(resp, published);
}

static void test_rfc7616_md5(void)
{
    rfc7616_vector(DIGEST_MD5, "8ca523f5e9506fed4657c9700eebdbec");
}

static void test_rfc7616_sha256(void)
{
    rfc7616_vector(DIGEST_SHA256,
                   "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1");
}

/* RFC 2617 §3.5 example (password "Circle Of Life", realm testrealm@host.com). */
static void test_rfc2617_md5(void)
{
    char ha1[DIGEST_HEX_MAX], resp[DIGEST_HEX_MAX];
    CU_ASSERT_EQUAL_FATAL(
        digest_ha1(DIGEST_MD5, "Mufasa", "testrealm@host.com", "Circle Of Life", ha1), 0);
    CU_ASSERT_STRING_EQUAL(ha1, "939e7578ed9e3c518a452acee763bce9");
    struct digest_input in = {.alg = DIGEST_MD5,
                              .ha1 = ha1,
                              .nonce = "dcd98b7102dd2f0e8b11d0f600bfb0c093",
                              .nc = "00000001",
                              .cnonce = "0a4f113b",
                              .qop = "auth",
                              .method = "GET",
                              .uri = "/dir/index.html"};
    CU_ASSERT_EQUAL_FATAL(digest_response(&in, resp), 0);
    CU_ASSERT_STRING_EQUAL(resp, "6629fae49393a05397450978507c4ef1");
}

/* The -sess and auth-int variants, recomputed step by step from RFC 7616 §3.4.2-3.4.3. */
static void test_sess_and_auth_int(void)
{
    char ha1[DIGEST_HEX_MAX], sess[DIGEST_HEX_MAX], ha2[DIGEST_HEX_MAX], bodyh[DIGEST_HEX_MAX];
    char expect[DIGEST_HEX_MAX], got[DIGEST_HEX_MAX];
    struct buf b;
    buf_init(&b, 4096);
    digest_ha1(DIGEST_SHA256, "u", "r", "p", ha1);
    buf_printf(&b, "%s:n1:c1", ha1);
    digest_hash_hex(DIGEST_SHA256, b.data, b.len, sess);
    digest_hash_hex(DIGEST_SHA256, "<x/>", 4, bodyh);
    buf_reset(&b);
    buf_printf(&b, "PUT:/a:%s", bodyh);
    digest_hash_hex(DIGEST_SHA256, b.data, b.len, ha2);
    buf_reset(&b);
    buf_printf(&b, "%s:n1:0000000a:c1:auth-int:%s", sess, ha2);
    digest_hash_hex(DIGEST_SHA256, b.data, b.len, expect);
    buf_release(&b);

    struct digest_input in = {.alg = DIGEST_SHA256_SESS,
                              .ha1 = ha1,
                              .nonce = "n1",
                              .nc = "0000000a",
                              .cnonce = "c1",
                              .qop = "auth-int",
                              .method = "PUT",
                              .uri = "/a",
                              .body_hash = bodyh};
    CU_ASSERT_EQUAL_FATAL(digest_response(&in, got), 0);
    CU_ASSERT_STRING_EQUAL(got, expect);
    in.body_hash = NULL;
    CU_ASSERT_EQUAL(digest_response(&in, got), -1);
}

static void test_alg_names(void)
{
    enum digest_alg a;
    CU_ASSERT_EQUAL(digest_alg_parse("sha-256", &a), 0);
    CU_ASSERT_EQUAL(a, DIGEST_SHA256);
    CU_ASSERT_EQUAL(digest_alg_parse("MD5-sess", &a), 0);
    CU_ASSERT_EQUAL(a, DIGEST_MD5_SESS);
    CU_ASSERT_EQUAL(digest_alg_parse("SHA-512-256", &a), -1);
    CU_ASSERT_EQUAL(digest_alg_parse("", &a), -1);
    CU_ASSERT_EQUAL(digest_alg_hexlen(DIGEST_MD5), 32);
    CU_ASSERT_EQUAL(digest_alg_hexlen(DIGEST_SHA256_SESS), 64);
    CU_ASSERT_STRING_EQUAL(digest_alg_name(DIGEST_SHA256), "SHA-256");
}

static void test_algs_parse(void)
{
    struct digest_algs a;
    char err[DIGEST_ALGS_ERR_MAX];
    digest_algs_default(&a);
    CU_ASSERT_EQUAL(a.n, 2);
    CU_ASSERT_EQUAL(a.v[0], DIGEST_MD5);
    CU_ASSERT_EQUAL(a.v[1], DIGEST_SHA256);

    CU_ASSERT_EQUAL_FATAL(digest_algs_parse("MD5 SHA-256", &a, err), 0);
    CU_ASSERT_EQUAL(a.n, 2);
    CU_ASSERT_EQUAL(a.v[0], DIGEST_MD5);
    CU_ASSERT_EQUAL(a.v[1], DIGEST_SHA256);
    CU_ASSERT_EQUAL_FATAL(digest_algs_parse(" sha-256 ,\tmd5, ", &a, err), 0);
    CU_ASSERT_EQUAL(a.n, 2);
    CU_ASSERT_EQUAL(a.v[0], DIGEST_SHA256);
    CU_ASSERT_EQUAL(a.v[1], DIGEST_MD5);
    CU_ASSERT_EQUAL_FATAL(digest_algs_parse("SHA-256", &a, err), 0);
    CU_ASSERT_EQUAL(a.n, 1);
    CU_ASSERT_TRUE(digest_algs_has(&a, DIGEST_SHA256));
    CU_ASSERT_FALSE(digest_algs_has(&a, DIGEST_MD5));

    CU_ASSERT_EQUAL(digest_algs_parse("", &a, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "empty"));
    CU_ASSERT_EQUAL(digest_algs_parse(" , ,", &a, err), -1);
    CU_ASSERT_EQUAL(digest_algs_parse(NULL, &a, err), -1);
    CU_ASSERT_EQUAL(digest_algs_parse("MD5 SHA-512-256", &a, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "unknown algorithm \"SHA-512-256\""));
    CU_ASSERT_EQUAL(digest_algs_parse("MD5;SHA-256", &a, err), -1);
    CU_ASSERT_EQUAL(digest_algs_parse("MD5-sess", &a, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "MD5-sess is not supported"));
    CU_ASSERT_EQUAL(digest_algs_parse("SHA-256 sha-256", &a, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "SHA-256 is listed twice"));
    CU_ASSERT_EQUAL(
        digest_algs_parse("MD5MD5MD5MD5MD5MD5MD5MD5MD5MD5MD5MD5MD5MD5MD5MD5MD5MD5MD5", &a, err),
        -1);
    CU_ASSERT_TRUE(strlen(err) < DIGEST_ALGS_ERR_MAX);
}

/* ---- Parser --------------------------------------------------------------------------------- */

static void test_parse_basic(void)
{
    struct digest_params p;
    int rc = digest_parse_authorization(
        "Digest username=\"Mufasa\", realm=\"http-auth@example.org\", uri=\"/dir/index.html\", "
        "algorithm=SHA-256, nonce=\"abc\", nc=00000001, cnonce=\"xyz\", qop=auth, "
        "response=\"0123\", opaque=\"FQhe\"",
        NULL, &p);
    CU_ASSERT_EQUAL_FATAL(rc, DIGEST_PARSE_OK);
    CU_ASSERT_STRING_EQUAL(p.username, "Mufasa");
    CU_ASSERT_FALSE(p.username_ext);
    CU_ASSERT_STRING_EQUAL(p.realm, "http-auth@example.org");
    CU_ASSERT_STRING_EQUAL(p.uri, "/dir/index.html");
    CU_ASSERT_STRING_EQUAL(p.algorithm, "SHA-256");
    CU_ASSERT_STRING_EQUAL(p.nonce, "abc");
    CU_ASSERT_STRING_EQUAL(p.nc, "00000001");
    CU_ASSERT_STRING_EQUAL(p.cnonce, "xyz");
    CU_ASSERT_STRING_EQUAL(p.qop, "auth");
    CU_ASSERT_STRING_EQUAL(p.response, "0123");
    CU_ASSERT_STRING_EQUAL(p.opaque, "FQhe");
    CU_ASSERT_PTR_NULL(p.userhash);
    digest_params_release(&p);
}

static void test_parse_quoting_and_spacing(void)
{
    struct digest_params p;
    /* escapes, tabs, spaces around '=', empty list elements, case-insensitive names and scheme,
     * unknown parameters, trailing comma */
    int rc = digest_parse_authorization(" dIgEsT \t,USERNAME = \"a\\\"b\\\\c\" ,, realm=\"\","
                                        "\tfoo=\"bar, baz\" , Nonce=n ,uri=\"/x,y\",",
                                        NULL, &p);
    CU_ASSERT_EQUAL_FATAL(rc, DIGEST_PARSE_OK);
    CU_ASSERT_STRING_EQUAL(p.username, "a\"b\\c");
    CU_ASSERT_STRING_EQUAL(p.realm, "");
    CU_ASSERT_STRING_EQUAL(p.nonce, "n");
    CU_ASSERT_STRING_EQUAL(p.uri, "/x,y");
    CU_ASSERT_PTR_NULL(p.response);
    digest_params_release(&p);
}

static void test_parse_username_ext(void)
{
    struct digest_params p;
    CU_ASSERT_EQUAL_FATAL(digest_parse_authorization(
                              "Digest username*=UTF-8''J%C3%A4s%c3%B8n%20Doe, realm=r", NULL, &p),
                          DIGEST_PARSE_OK);
    CU_ASSERT_STRING_EQUAL(p.username, "J\xc3\xa4s\xc3\xb8n Doe");
    CU_ASSERT_TRUE(p.username_ext);
    digest_params_release(&p);
    CU_ASSERT_EQUAL(digest_parse_authorization("Digest username*=UTF-8'en'x%41", NULL, &p),
                    DIGEST_PARSE_OK);
    CU_ASSERT_STRING_EQUAL(p.username, "xA");
    digest_params_release(&p);
}

/* uri="..." with the request-target's raw '"' inside (Python's urllib, xcaplib): taken byte for
 * byte when it is exactly the target followed by '"' and ',' or the end. */
#define RAW_TARGET "/r/users/sip:a@b/index/~~/resource-lists/list[@name=\"f\"]/@name"

static void test_parse_raw_uri(void)
{
    struct digest_params p;
    CU_ASSERT_EQUAL_FATAL(digest_parse_authorization("Digest username=\"a\", uri=\"" RAW_TARGET
                                                     "\", realm=\"r\"",
                                                     RAW_TARGET, &p),
                          DIGEST_PARSE_OK);
    CU_ASSERT_STRING_EQUAL(p.uri, RAW_TARGET);
    CU_ASSERT_STRING_EQUAL(p.realm, "r");
    digest_params_release(&p);
    /* at the end of the header, with white space before the comma, any case of the name */
    CU_ASSERT_EQUAL_FATAL(
        digest_parse_authorization("Digest URI=\"" RAW_TARGET "\"", RAW_TARGET, &p),
        DIGEST_PARSE_OK);
    CU_ASSERT_STRING_EQUAL(p.uri, RAW_TARGET);
    digest_params_release(&p);
    CU_ASSERT_EQUAL_FATAL(
        digest_parse_authorization("Digest uri=\"" RAW_TARGET "\" \t,nc=1", RAW_TARGET, &p),
        DIGEST_PARSE_OK);
    CU_ASSERT_STRING_EQUAL(p.uri, RAW_TARGET);
    CU_ASSERT_STRING_EQUAL(p.nc, "1");
    digest_params_release(&p);
    /* the escaped form (RFC 9110 quoted-pair) still works with the same target */
    CU_ASSERT_EQUAL_FATAL(
        digest_parse_authorization(
            "Digest uri=\"/r/users/sip:a@b/index/~~/resource-lists/list[@name=\\\"f\\\"]/@name\"",
            RAW_TARGET, &p),
        DIGEST_PARSE_OK);
    CU_ASSERT_STRING_EQUAL(p.uri, RAW_TARGET);
    digest_params_release(&p);
    /* no target, another target, or something else after the closing quote: ordinary
     * quoted-string rules, so the raw form is malformed */
    CU_ASSERT_EQUAL(digest_parse_authorization("Digest uri=\"" RAW_TARGET "\"", NULL, &p),
                    DIGEST_PARSE_MALFORMED);
    CU_ASSERT_EQUAL(digest_parse_authorization("Digest uri=\"" RAW_TARGET "\"", "/other", &p),
                    DIGEST_PARSE_MALFORMED);
    CU_ASSERT_EQUAL(
        digest_parse_authorization("Digest uri=\"" RAW_TARGET "\"x, nc=1", RAW_TARGET, &p),
        DIGEST_PARSE_MALFORMED);
    /* a prefix or an extension of the target is not the target */
    CU_ASSERT_EQUAL(digest_parse_authorization("Digest uri=\"" RAW_TARGET "x\"", RAW_TARGET, &p),
                    DIGEST_PARSE_MALFORMED);
    CU_ASSERT_EQUAL(digest_parse_authorization("Digest uri=\"/r/users/sip:a@b/index/~~/"
                                               "resource-lists/list[@name=\"f\"",
                                               RAW_TARGET, &p),
                    DIGEST_PARSE_MALFORMED);
    /* only uri gets this treatment */
    CU_ASSERT_EQUAL(digest_parse_authorization("Digest realm=\"" RAW_TARGET "\"", RAW_TARGET, &p),
                    DIGEST_PARSE_MALFORMED);
    /* a target that itself looks like parameters cannot smuggle any: the span is the target */
    const char *sly = "/x\",realm=\"evil";
    CU_ASSERT_EQUAL_FATAL(digest_parse_authorization(
                              "Digest uri=\"/x\",realm=\"evil\", realm=\"example.com\"", sly, &p),
                          DIGEST_PARSE_OK);
    CU_ASSERT_STRING_EQUAL(p.uri, sly);
    CU_ASSERT_STRING_EQUAL(p.realm, "example.com");
    digest_params_release(&p);
    /* a backslash is taken as it is in the raw form */
    CU_ASSERT_EQUAL_FATAL(digest_parse_authorization("Digest uri=\"/a\\b\"", "/a\\b", &p),
                          DIGEST_PARSE_OK);
    CU_ASSERT_STRING_EQUAL(p.uri, "/a\\b");
    digest_params_release(&p);
    /* every prefix of a raw header parses or fails cleanly (run under ASan) */
    const char *h = "Digest username=\"a\", uri=\"" RAW_TARGET "\", nc=00000001";
    for (size_t i = 0; i <= strlen(h); i++) {
        char *copy = strndup(h, i);
        digest_parse_authorization(copy, RAW_TARGET, &p);
        digest_params_release(&p);
        free(copy);
    }
}

static void expect_parse(const char *h, int want)
{
    struct digest_params p;
    int rc = digest_parse_authorization(h, NULL, &p);
    if (rc != want)
        printf("\n  header [%s]: got %d, want %d\n", h ? h : "(null)", rc, want);
    CU_ASSERT_EQUAL(rc, want);
    digest_params_release(&p);
}

static void test_parse_errors(void)
{
    expect_parse(NULL, DIGEST_PARSE_NOT_DIGEST);
    expect_parse("Basic YWxhZGRpbjpvcGVuc2VzYW1l", DIGEST_PARSE_NOT_DIGEST);
    expect_parse("Digestive username=\"a\"", DIGEST_PARSE_NOT_DIGEST);
    expect_parse("", DIGEST_PARSE_MALFORMED);
    expect_parse("   ", DIGEST_PARSE_MALFORMED);
    expect_parse("Digest", DIGEST_PARSE_MALFORMED);
    expect_parse("Digest ", DIGEST_PARSE_MALFORMED);
    expect_parse("Digest ,,, ", DIGEST_PARSE_MALFORMED);
    expect_parse("Digest username=\"a", DIGEST_PARSE_MALFORMED);
    expect_parse("Digest username=\"a\\", DIGEST_PARSE_MALFORMED);
    expect_parse("Digest username", DIGEST_PARSE_MALFORMED);
    expect_parse("Digest username=", DIGEST_PARSE_MALFORMED);
    expect_parse("Digest =a", DIGEST_PARSE_MALFORMED);
    expect_parse("Digest username=\"a\" realm=\"b\"", DIGEST_PARSE_MALFORMED);
    expect_parse("Digest username=\"a\"x", DIGEST_PARSE_MALFORMED);
    expect_parse("Digest uri=/a/b", DIGEST_PARSE_MALFORMED);
    expect_parse("Digest username=\"a\", USERNAME=\"b\"", DIGEST_PARSE_MALFORMED);
    expect_parse("Digest nc=1, nc=2", DIGEST_PARSE_MALFORMED);
    expect_parse("Digest username=\"a\", username*=UTF-8''b", DIGEST_PARSE_MALFORMED);
    expect_parse("Digest username*=ISO-8859-1''b", DIGEST_PARSE_MALFORMED);
    expect_parse("Digest username*=UTF-8''a%00b", DIGEST_PARSE_MALFORMED);
    expect_parse("Digest username*=UTF-8''a%4", DIGEST_PARSE_MALFORMED);
    expect_parse("Digest username*=UTF-8''", DIGEST_PARSE_MALFORMED);
    expect_parse("Digest username=\"a\x01\"", DIGEST_PARSE_MALFORMED);
    expect_parse("Digest username=\"a\x7f\"", DIGEST_PARSE_MALFORMED);
    expect_parse("Digest a=1; b=2", DIGEST_PARSE_MALFORMED);
    /* duplicates of unknown parameters are harmless and ignored */
    expect_parse("Digest foo=1, foo=2, realm=r", DIGEST_PARSE_OK);

    /* parameter-count and length bounds */
    struct buf b;
    buf_init(&b, 1 << 20);
    buf_puts(&b, "Digest ");
    for (int i = 0; i < 65; i++)
        buf_printf(&b, "p%d=1,", i);
    expect_parse(b.data, DIGEST_PARSE_MALFORMED);
    buf_reset(&b);
    buf_puts(&b, "Digest username=\"");
    for (int i = 0; i < DIGEST_HEADER_MAX; i++)
        buf_puts(&b, "a");
    buf_puts(&b, "\"");
    expect_parse(b.data, DIGEST_PARSE_MALFORMED);
    buf_release(&b);
}

/* Every prefix of a valid header must parse or fail cleanly (run under ASan). */
static void test_parse_prefixes(void)
{
    const char *h = "Digest username=\"a\\\"b\", realm=\"r\", nonce=abc, uri=\"/x\", nc=00000001, "
                    "username*=UTF-8''%41";
    size_t len = strlen(h);
    int ok = 0;
    for (size_t i = 0; i <= len; i++) {
        char *copy = strndup(h, i);
        struct digest_params p;
        if (digest_parse_authorization(copy, NULL, &p) == DIGEST_PARSE_OK)
            ok++;
        digest_params_release(&p);
        free(copy);
    }
    CU_ASSERT_TRUE(ok > 0);
    struct digest_params p;
    /* the full header has both username and username*: malformed */
    CU_ASSERT_EQUAL(digest_parse_authorization(h, NULL, &p), DIGEST_PARSE_MALFORMED);
    digest_params_release(&p);
}

/* ---- Server side ---------------------------------------------------------------------------- */

#define T_REALM "example.com"
#define T_USER "alice"
#define T_PASS "secret"
#define T_XUI "sip:alice@example.com"
#define T_URI "/xcap-root/resource-lists/users/sip:alice@example.com/index"

struct lookup_stub {
    int calls;
    int fail; /* -1: storage error */
};

static int stub_lookup(void *cls, const char *realm, const char *username, enum digest_alg alg,
                       struct digest_cred *out)
{
    struct lookup_stub *s = cls;
    s->calls++;
    if (s->fail)
        return -1;
    if (strcmp(realm, T_REALM) != 0 || strcmp(username, T_USER) != 0)
        return 1;
    if (digest_ha1(alg, T_USER, T_REALM, T_PASS, out->ha1) < 0)
        return -1;
    out->identity = strdup(T_XUI);
    return out->identity ? 0 : -1;
}

struct cred_opts {
    const char *alg;      /* "SHA-256", "MD5", ... or NULL to omit */
    const char *user;     /* default T_USER */
    const char *password; /* default T_PASS */
    const char *realm;    /* default T_REALM */
    const char *uri;      /* default T_URI */
    const char *method;   /* default GET */
    const char *qop;      /* default auth; "" to omit */
    const char *opaque;   /* default the context's */
    const char *extra;    /* appended raw */
    const char *body;     /* for auth-int */
    unsigned nc;          /* 0 = 1 */
    bool zero_nc;         /* send nc=00000000 */
    /* the server's offered algorithms; default NULL (MD5 and SHA-256) */
    const struct digest_algs *offered;
    /* the request-target the server sees; default T_URI */
    const char *target;
};

/* Builds an Authorization header value the way a client computes it. */
static char *make_auth(struct digest *d, const char *nonce, const struct cred_opts *o)
{
    enum digest_alg alg = DIGEST_MD5;
    if (o->alg)
        digest_alg_parse(o->alg, &alg);
    const char *user = o->user ? o->user : T_USER;
    const char *realm = o->realm ? o->realm : T_REALM;
    const char *uri = o->uri ? o->uri : T_URI;
    const char *qop = o->qop ? o->qop : "auth";
    char ha1[DIGEST_HEX_MAX], resp[DIGEST_HEX_MAX], nc[16], bodyh[DIGEST_HEX_MAX];
    snprintf(nc, sizeof nc, "%08x", o->zero_nc ? 0 : o->nc ? o->nc : 1);
    digest_ha1(alg, user, realm, o->password ? o->password : T_PASS, ha1);
    const char *body = o->body ? o->body : "";
    digest_hash_hex(alg, body, strlen(body), bodyh);
    struct digest_input in = {.alg = alg,
                              .ha1 = ha1,
                              .nonce = nonce,
                              .nc = nc,
                              .cnonce = "0a4f113b",
                              .qop = qop[0] ? qop : "auth",
                              .method = o->method ? o->method : "GET",
                              .uri = uri,
                              .body_hash = bodyh};
    digest_response(&in, resp);
    struct buf b;
    buf_init(&b, 1 << 16);
    buf_printf(&b,
               "Digest username=\"%s\", realm=\"%s\", nonce=\"%s\", uri=\"%s\", response=\"%s\"",
               user, realm, nonce, uri, resp);
    if (o->alg)
        buf_printf(&b, ", algorithm=%s", o->alg);
    if (qop[0])
        buf_printf(&b, ", qop=%s, nc=%s, cnonce=\"0a4f113b\"", qop, nc);
    buf_printf(&b, ", opaque=\"%s\"", o->opaque ? o->opaque : digest_opaque(d));
    if (o->extra)
        buf_puts(&b, o->extra);
    return buf_detach(&b, NULL);
}

static enum digest_result verify(struct digest *d, const char *h, uint64_t now,
                                 const struct cred_opts *o, struct digest_auth *auth)
{
    struct lookup_stub stub = {0, 0};
    const char *body = o && o->body ? o->body : NULL;
    struct digest_request rq = {.method = o && o->method ? o->method : "GET",
                                .uri = o && o->target ? o->target : T_URI,
                                .offered = o ? o->offered : NULL,
                                .realm = T_REALM,
                                .body = body,
                                .body_len = body ? strlen(body) : 0,
                                .now = now};
    const char *why = NULL;
    struct digest_auth local;
    enum digest_result r = digest_verify(d, h, &rq, stub_lookup, &stub, auth ? auth : &local, &why);
    CU_ASSERT_PTR_NOT_NULL(why);
    if (!auth && r == DIGEST_OK)
        digest_auth_release(&local);
    return r;
}

static enum digest_result try_cred(struct digest *d, const char *nonce, uint64_t now,
                                   const struct cred_opts *o)
{
    char *h = make_auth(d, nonce, o);
    enum digest_result r = verify(d, h, now, o, NULL);
    free(h);
    return r;
}

static void test_verify_ok_and_auth_info(void)
{
    struct digest *d = digest_new(NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    char nonce[DIGEST_NONCE_MAX];
    CU_ASSERT_EQUAL_FATAL(digest_nonce_new(d, 1000, nonce), 0);
    struct cred_opts o = {.alg = "SHA-256"};
    char *h = make_auth(d, nonce, &o);
    struct digest_auth a;
    CU_ASSERT_EQUAL_FATAL(verify(d, h, 1000, &o, &a), DIGEST_OK);
    free(h);
    CU_ASSERT_STRING_EQUAL(a.identity, T_XUI);
    CU_ASSERT_STRING_EQUAL(a.username, T_USER);
    CU_ASSERT_EQUAL(a.alg, DIGEST_SHA256);

    /* rspauth = H(HA1:nonce:nc:cnonce:qop:H(":" uri)) (RFC 7616 §3.5) */
    char ha1[DIGEST_HEX_MAX], ha2[DIGEST_HEX_MAX], rsp[DIGEST_HEX_MAX];
    digest_ha1(DIGEST_SHA256, T_USER, T_REALM, T_PASS, ha1);
    digest_hash_hex(DIGEST_SHA256, ":" T_URI, strlen(":" T_URI), ha2);
    struct buf b;
    buf_init(&b, 4096);
    buf_printf(&b, "%s:%s:00000001:0a4f113b:auth:%s", ha1, nonce, ha2);
    digest_hash_hex(DIGEST_SHA256, b.data, b.len, rsp);
    buf_reset(&b);
    CU_ASSERT_EQUAL(digest_auth_info(&a, "body", 4, &b), 0);
    char want[256];
    snprintf(want, sizeof want, "qop=auth, rspauth=\"%s\", cnonce=\"0a4f113b\", nc=00000001", rsp);
    CU_ASSERT_STRING_EQUAL(b.data, want);
    buf_release(&b);
    digest_auth_release(&a);

    /* MD5 on a fresh nonce, upper-case hex in the response is accepted */
    digest_nonce_new(d, 1000, nonce);
    o.alg = "MD5";
    h = make_auth(d, nonce, &o);
    char *r = strstr(h, "response=\"");
    for (char *p = r + 10; *p != '"'; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 32);
    CU_ASSERT_EQUAL(verify(d, h, 1001, &o, NULL), DIGEST_OK);
    free(h);
    /* no algorithm parameter means MD5 */
    digest_nonce_new(d, 1000, nonce);
    o.alg = NULL;
    CU_ASSERT_EQUAL(try_cred(d, nonce, 1001, &o), DIGEST_OK);
    digest_free(d);
}

static void test_challenge_format(void)
{
    struct digest *d = digest_new(NULL);
    char nonce[DIGEST_NONCE_MAX];
    digest_nonce_new(d, 5, nonce);
    struct buf b;
    buf_init(&b, 4096);
    CU_ASSERT_EQUAL(digest_challenge(d, DIGEST_SHA256, "example.com", nonce, false, &b), 0);
    char want[512];
    snprintf(want, sizeof want,
             "Digest realm=\"example.com\", qop=\"auth\", algorithm=SHA-256, nonce=\"%s\", "
             "opaque=\"%s\"",
             nonce, digest_opaque(d));
    CU_ASSERT_STRING_EQUAL(b.data, want);
    buf_reset(&b);
    CU_ASSERT_EQUAL(digest_challenge(d, DIGEST_MD5, "a\"b", nonce, true, &b), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(b.data, "realm=\"a\\\"b\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(b.data, "algorithm=MD5"));
    CU_ASSERT_PTR_NOT_NULL(strstr(b.data, ", stale=true"));
    buf_release(&b);
    /* nonces are unpredictable: two in the same second differ; the alphabet is base64url */
    char n2[DIGEST_NONCE_MAX];
    digest_nonce_new(d, 5, n2);
    CU_ASSERT_STRING_NOT_EQUAL(nonce, n2);
    CU_ASSERT_EQUAL(
        strspn(nonce, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
        strlen(nonce));
    digest_free(d);
}

static void test_nonce_expiry_and_tamper(void)
{
    struct digest_options opts = {.nonce_lifetime_s = 60};
    struct digest *d = digest_new(&opts);
    char nonce[DIGEST_NONCE_MAX];
    digest_nonce_new(d, 1000, nonce);
    struct cred_opts o = {.alg = "SHA-256"};
    CU_ASSERT_EQUAL(try_cred(d, nonce, 1059, &o), DIGEST_OK);
    o.nc = 2;
    CU_ASSERT_EQUAL(try_cred(d, nonce, 1060, &o), DIGEST_STALE);
    CU_ASSERT_EQUAL(try_cred(d, nonce, 5000, &o), DIGEST_STALE);
    /* a wrong password on an expired nonce is not stale: the client must not retry silently */
    o.password = "wrong";
    CU_ASSERT_EQUAL(try_cred(d, nonce, 5000, &o), DIGEST_CHALLENGE);
    o.password = NULL;
    /* a nonce from the future (clock mismatch) is not accepted */
    digest_nonce_new(d, 9000, nonce);
    CU_ASSERT_NOT_EQUAL(try_cred(d, nonce, 8000, &o), DIGEST_OK);

    /* every single-character change of the nonce is refused */
    digest_nonce_new(d, 1000, nonce);
    size_t len = strlen(nonce);
    int accepted = 0;
    for (size_t i = 0; i < len; i++) {
        char t[DIGEST_NONCE_MAX];
        memcpy(t, nonce, len + 1);
        t[i] = t[i] == 'A' ? 'B' : 'A';
        o.nc = 1;
        if (try_cred(d, t, 1001, &o) != DIGEST_CHALLENGE)
            accepted++;
    }
    CU_ASSERT_EQUAL(accepted, 0);
    /* truncated, extended, foreign nonces */
    char t[DIGEST_NONCE_MAX + 2];
    snprintf(t, sizeof t, "%.*s", (int)len - 1, nonce);
    CU_ASSERT_EQUAL(try_cred(d, t, 1001, &o), DIGEST_CHALLENGE);
    snprintf(t, sizeof t, "%sA", nonce);
    CU_ASSERT_EQUAL(try_cred(d, t, 1001, &o), DIGEST_CHALLENGE);
    CU_ASSERT_EQUAL(try_cred(d, RFC7616_NONCE, 1001, &o), DIGEST_CHALLENGE);
    struct digest *other = digest_new(&opts);
    char foreign[DIGEST_NONCE_MAX];
    digest_nonce_new(other, 1000, foreign);
    CU_ASSERT_EQUAL(try_cred(d, foreign, 1001, &o), DIGEST_CHALLENGE);
    /* the untouched nonce still works */
    CU_ASSERT_EQUAL(try_cred(d, nonce, 1001, &o), DIGEST_OK);
    digest_free(other);
    digest_free(d);
}

static void test_nc_replay(void)
{
    struct digest *d = digest_new(NULL);
    char nonce[DIGEST_NONCE_MAX], n2[DIGEST_NONCE_MAX];
    digest_nonce_new(d, 100, nonce);
    digest_nonce_new(d, 100, n2);
    struct cred_opts o = {.alg = "SHA-256", .nc = 1};
    CU_ASSERT_EQUAL(try_cred(d, nonce, 100, &o), DIGEST_OK);
    CU_ASSERT_EQUAL(try_cred(d, nonce, 100, &o), DIGEST_CHALLENGE); /* same nc */
    o.nc = 2;
    CU_ASSERT_EQUAL(try_cred(d, nonce, 101, &o), DIGEST_OK);
    o.nc = 7;
    CU_ASSERT_EQUAL(try_cred(d, nonce, 101, &o), DIGEST_OK); /* gaps are fine */
    o.nc = 6;
    CU_ASSERT_EQUAL(try_cred(d, nonce, 101, &o), DIGEST_CHALLENGE); /* lower */
    o.nc = 7;
    CU_ASSERT_EQUAL(try_cred(d, nonce, 101, &o), DIGEST_CHALLENGE);
    /* another nonce has its own counter */
    o.nc = 1;
    CU_ASSERT_EQUAL(try_cred(d, n2, 101, &o), DIGEST_OK);
    /* a wrong digest does not advance the counter */
    o.nc = 50;
    o.password = "wrong";
    CU_ASSERT_EQUAL(try_cred(d, nonce, 101, &o), DIGEST_CHALLENGE);
    o.password = NULL;
    o.nc = 8;
    CU_ASSERT_EQUAL(try_cred(d, nonce, 101, &o), DIGEST_OK);
    /* nc starts at 1 (RFC 7616 §3.4): 0 on a fresh nonce is refused, 1 then works */
    digest_nonce_new(d, 100, n2);
    o.zero_nc = true;
    CU_ASSERT_EQUAL(try_cred(d, n2, 101, &o), DIGEST_CHALLENGE);
    o.zero_nc = false;
    o.nc = 1;
    CU_ASSERT_EQUAL(try_cred(d, n2, 101, &o), DIGEST_OK);
    digest_free(d);
}

static void test_nonce_eviction(void)
{
    /* room for two nonces: using a third evicts the oldest; that one must then be stale, never
     * accepted again with a lower nc */
    struct digest_options opts = {.nonce_lifetime_s = 100, .max_nonces = 2};
    struct digest *d = digest_new(&opts);
    char n1[DIGEST_NONCE_MAX], n2[DIGEST_NONCE_MAX], n3[DIGEST_NONCE_MAX];
    char n4[DIGEST_NONCE_MAX];
    digest_nonce_new(d, 10, n1);
    digest_nonce_new(d, 11, n2);
    digest_nonce_new(d, 12, n3);
    digest_nonce_new(d, 200, n4);
    struct cred_opts o = {.alg = "MD5", .nc = 5};
    CU_ASSERT_EQUAL(try_cred(d, n1, 20, &o), DIGEST_OK);
    CU_ASSERT_EQUAL(try_cred(d, n2, 20, &o), DIGEST_OK);
    CU_ASSERT_EQUAL(try_cred(d, n3, 20, &o), DIGEST_OK); /* evicts n1 */
    o.nc = 1;
    CU_ASSERT_EQUAL(try_cred(d, n1, 21, &o), DIGEST_STALE);
    o.nc = 6;
    CU_ASSERT_EQUAL(try_cred(d, n2, 21, &o), DIGEST_OK);
    CU_ASSERT_EQUAL(try_cred(d, n3, 21, &o), DIGEST_OK);
    /* once they have expired, they go first and leave no floor behind */
    o.nc = 1;
    CU_ASSERT_EQUAL(try_cred(d, n4, 250, &o), DIGEST_OK);
    o.nc = 2;
    CU_ASSERT_EQUAL(try_cred(d, n4, 251, &o), DIGEST_OK);
    digest_free(d);
}

static void test_nonce_stripe_count(void)
{
    CU_ASSERT_EQUAL(digest_nonce_stripes(1), 1);
    CU_ASSERT_EQUAL(digest_nonce_stripes(2), 1);
    CU_ASSERT_EQUAL(digest_nonce_stripes(2047), 1);
    CU_ASSERT_EQUAL(digest_nonce_stripes(2048), 2);
    CU_ASSERT_EQUAL(digest_nonce_stripes(4096), 4);
    CU_ASSERT_EQUAL(digest_nonce_stripes(65535), 32);
    CU_ASSERT_EQUAL(digest_nonce_stripes(65536), 64);
    CU_ASSERT_EQUAL(digest_nonce_stripes(100000), 64);
    CU_ASSERT_EQUAL(digest_nonce_stripes(10000000), 64);
}

/* The id and issue time of a fresh nonce of d. */
static void fresh_id(struct digest *d, uint64_t now, unsigned char id[DIGEST_NONCE_ID_LEN],
                     uint64_t *ts)
{
    char nonce[DIGEST_NONCE_MAX];
    CU_ASSERT_EQUAL_FATAL(digest_nonce_new(d, now, nonce), 0);
    CU_ASSERT_EQUAL_FATAL(digest_nonce_open(d, nonce, id, ts), 0);
}

#define STRIPED_N 4096

/* With stripes (4096 nonces: 4 of 1024), replay protection is what one table gives: an nc once
 * accepted is never accepted again, whether its nonce's state is still held (REPLAY) or was
 * evicted by later nonces of its stripe (STALE); a held one takes a higher nc. */
static void test_nonce_stripes_replay(void)
{
    struct digest_options opts = {.nonce_lifetime_s = 100000, .max_nonces = STRIPED_N};
    struct digest *d = digest_new(&opts);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    static unsigned char ids[2 * STRIPED_N][DIGEST_NONCE_ID_LEN];
    static uint64_t ts[2 * STRIPED_N];
    const uint64_t now = 10 + 2 * STRIPED_N;
    for (size_t i = 0; i < 2 * STRIPED_N; i++)
        fresh_id(d, 10 + i, ids[i], &ts[i]); /* issued one second apart, oldest first */
    size_t ok = 0;
    for (size_t i = 0; i < STRIPED_N; i++)
        ok += digest_nonce_accept_nc(d, ids[i], ts[i], 1, now) == DIGEST_NC_OK;
    /* a stripe that drew more than its 1024 evicted its oldest, the newer ones were taken */
    CU_ASSERT_EQUAL(ok, STRIPED_N);
    size_t replay = 0, stale = 0;
    for (size_t i = 0; i < STRIPED_N; i++) {
        enum digest_nc_check rc = digest_nonce_accept_nc(d, ids[i], ts[i], 1, now);
        replay += rc == DIGEST_NC_REPLAY;
        stale += rc == DIGEST_NC_STALE;
    }
    CU_ASSERT_EQUAL(replay + stale, STRIPED_N);
    CU_ASSERT(replay >= STRIPED_N / 2);
    /* a second generation as large as the table evicts most of the first */
    for (size_t i = STRIPED_N; i < 2 * STRIPED_N; i++)
        CU_ASSERT_EQUAL(digest_nonce_accept_nc(d, ids[i], ts[i], 1, now), DIGEST_NC_OK);
    size_t held = 0;
    stale = 0;
    for (size_t i = 0; i < STRIPED_N; i++) {
        CU_ASSERT_NOT_EQUAL(digest_nonce_accept_nc(d, ids[i], ts[i], 1, now), DIGEST_NC_OK);
        enum digest_nc_check rc = digest_nonce_accept_nc(d, ids[i], ts[i], 2, now);
        CU_ASSERT(rc == DIGEST_NC_OK || rc == DIGEST_NC_STALE);
        held += rc == DIGEST_NC_OK;
        stale += rc == DIGEST_NC_STALE;
    }
    CU_ASSERT(stale >= STRIPED_N / 2);
    CU_ASSERT_EQUAL(held + stale, STRIPED_N);
    digest_free(d);
}

#define RACE_THREADS 4
#define RACE_NC 3000

struct race {
    struct digest *d;
    unsigned char shared[DIGEST_NONCE_ID_LEN];
    uint64_t shared_ts;
    atomic_uint accepted[RACE_NC + 1];
    atomic_uint own_ok;
};

static void *race_run(void *cls)
{
    struct race *r = cls;
    unsigned char own[DIGEST_NONCE_ID_LEN];
    uint64_t own_ts;
    char nonce[DIGEST_NONCE_MAX];
    if (digest_nonce_new(r->d, 100, nonce) < 0 || digest_nonce_open(r->d, nonce, own, &own_ts) < 0)
        return NULL;
    for (uint32_t nc = 1; nc <= RACE_NC; nc++) {
        if (digest_nonce_accept_nc(r->d, r->shared, r->shared_ts, nc, 100) == DIGEST_NC_OK)
            atomic_fetch_add(&r->accepted[nc], 1);
        if (digest_nonce_accept_nc(r->d, own, own_ts, nc, 100) == DIGEST_NC_OK)
            atomic_fetch_add(&r->own_ok, 1);
    }
    return NULL;
}

/* Threads racing on one nonce with the same nc values: each nc is accepted at most once (nc
 * strictly increasing per nonce, RFC 7616 §3.4), and each thread's own nonce takes all of its
 * own. */
static void test_nonce_concurrent(void)
{
    struct race *r = calloc(1, sizeof *r);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    r->d = digest_new(NULL); /* 100000 nonces: 64 stripes */
    CU_ASSERT_PTR_NOT_NULL_FATAL(r->d);
    fresh_id(r->d, 100, r->shared, &r->shared_ts);
    pthread_t t[RACE_THREADS];
    for (int i = 0; i < RACE_THREADS; i++)
        CU_ASSERT_EQUAL_FATAL(pthread_create(&t[i], NULL, race_run, r), 0);
    for (int i = 0; i < RACE_THREADS; i++)
        pthread_join(t[i], NULL);
    unsigned total = 0, twice = 0;
    for (int nc = 1; nc <= RACE_NC; nc++) {
        unsigned a = atomic_load(&r->accepted[nc]);
        total += a;
        twice += a > 1;
    }
    CU_ASSERT_EQUAL(twice, 0);
    CU_ASSERT(total >= 1 && total <= RACE_NC);
    CU_ASSERT_EQUAL(atomic_load(&r->own_ok), RACE_THREADS * RACE_NC);
    digest_free(r->d);
    free(r);
}

static void test_verify_checks(void)
{
    struct digest *d = digest_new(NULL);
    char nonce[DIGEST_NONCE_MAX];
    digest_nonce_new(d, 100, nonce);
    struct cred_opts o;

    CU_ASSERT_EQUAL(verify(d, NULL, 100, NULL, NULL), DIGEST_CHALLENGE);
    CU_ASSERT_EQUAL(verify(d, "Basic YTpi", 100, NULL, NULL), DIGEST_CHALLENGE);
    CU_ASSERT_EQUAL(verify(d, "Digest username=\"a", 100, NULL, NULL), DIGEST_BAD_REQUEST);
    CU_ASSERT_EQUAL(verify(d, "Digest username=\"alice\"", 100, NULL, NULL), DIGEST_BAD_REQUEST);

    o = (struct cred_opts){.alg = "SHA-256", .user = "bob"};
    CU_ASSERT_EQUAL(try_cred(d, nonce, 100, &o), DIGEST_CHALLENGE); /* unknown user */
    o = (struct cred_opts){.alg = "SHA-256", .password = "nope"};
    CU_ASSERT_EQUAL(try_cred(d, nonce, 100, &o), DIGEST_CHALLENGE);
    o = (struct cred_opts){.alg = "SHA-256", .realm = "other.org"};
    CU_ASSERT_EQUAL(try_cred(d, nonce, 100, &o), DIGEST_CHALLENGE);
    o = (struct cred_opts){.alg = "SHA-256", .uri = "/xcap-root/other"};
    CU_ASSERT_EQUAL(try_cred(d, nonce, 100, &o), DIGEST_BAD_REQUEST);
    o = (struct cred_opts){.alg = "SHA-256", .method = "PUT"};
    struct cred_opts get = {.alg = "SHA-256"};
    char *h = make_auth(d, nonce, &o); /* digest made for PUT, sent with GET */
    CU_ASSERT_EQUAL(verify(d, h, 100, &get, NULL), DIGEST_CHALLENGE);
    free(h);
    o = (struct cred_opts){.alg = "SHA-256", .opaque = "00000000000000000000000000000000"};
    CU_ASSERT_EQUAL(try_cred(d, nonce, 100, &o), DIGEST_CHALLENGE);
    o = (struct cred_opts){.alg = "SHA-512-256"};
    CU_ASSERT_EQUAL(try_cred(d, nonce, 100, &o), DIGEST_CHALLENGE);
    o = (struct cred_opts){.alg = "SHA-256-sess"};
    CU_ASSERT_EQUAL(try_cred(d, nonce, 100, &o), DIGEST_CHALLENGE); /* not offered */
    o = (struct cred_opts){.alg = "SHA-256", .qop = ""};
    CU_ASSERT_EQUAL(try_cred(d, nonce, 100, &o), DIGEST_CHALLENGE); /* RFC 2069 style */
    o = (struct cred_opts){.alg = "SHA-256", .qop = "auth-conf"};
    CU_ASSERT_EQUAL(try_cred(d, nonce, 100, &o), DIGEST_CHALLENGE);
    o = (struct cred_opts){.alg = "SHA-256", .extra = ", userhash=true"};
    CU_ASSERT_EQUAL(try_cred(d, nonce, 100, &o), DIGEST_CHALLENGE);
    o = (struct cred_opts){.alg = "SHA-256", .extra = ", algorithm=MD5"};
    CU_ASSERT_EQUAL(try_cred(d, nonce, 100, &o), DIGEST_BAD_REQUEST); /* duplicate */

    /* nc must be 8 hex digits */
    o = (struct cred_opts){.alg = "SHA-256"};
    h = make_auth(d, nonce, &o);
    char *nc = strstr(h, "nc=00000001");
    CU_ASSERT_PTR_NOT_NULL_FATAL(nc);
    nc[10] = 'g';
    CU_ASSERT_EQUAL(verify(d, h, 100, &o, NULL), DIGEST_BAD_REQUEST);
    free(h);
    /* a response of the wrong length */
    o = (struct cred_opts){.alg = "MD5", .extra = ""};
    h = make_auth(d, nonce, &o);
    char *r = strstr(h, "response=\"");
    memmove(r + 11, r + 12, strlen(r + 12) + 1);
    CU_ASSERT_EQUAL(verify(d, h, 100, &o, NULL), DIGEST_CHALLENGE);
    free(h);

    /* a failing credential store is an internal error, not a 401 */
    o = (struct cred_opts){.alg = "SHA-256"};
    h = make_auth(d, nonce, &o);
    struct lookup_stub broken = {0, 1};
    struct digest_request rq = {.method = "GET", .uri = T_URI, .realm = T_REALM, .now = 100};
    struct digest_auth a;
    CU_ASSERT_EQUAL(digest_verify(d, h, &rq, stub_lookup, &broken, &a, NULL), DIGEST_ERROR);
    CU_ASSERT_EQUAL(broken.calls, 1);
    /* realm NULL: any realm the lookup knows */
    struct lookup_stub ok = {0, 0};
    rq.realm = NULL;
    CU_ASSERT_EQUAL(digest_verify(d, h, &rq, stub_lookup, &ok, &a, NULL), DIGEST_OK);
    digest_auth_release(&a);
    free(h);
    digest_free(d);
}

/* Only the offered algorithms are accepted (RFC 7616 §3.7); no algorithm parameter means MD5. */
static void test_verify_offered(void)
{
    struct digest *d = digest_new(NULL);
    char nonce[DIGEST_NONCE_MAX];
    digest_nonce_new(d, 100, nonce);
    struct digest_algs sha_only = {{DIGEST_SHA256}, 1}, md5_only = {{DIGEST_MD5}, 1};
    struct cred_opts o = {.alg = "MD5", .offered = &sha_only};
    CU_ASSERT_EQUAL(try_cred(d, nonce, 100, &o), DIGEST_CHALLENGE);
    o = (struct cred_opts){.alg = NULL, .offered = &sha_only};
    CU_ASSERT_EQUAL(try_cred(d, nonce, 100, &o), DIGEST_CHALLENGE);
    o = (struct cred_opts){.alg = "SHA-256", .offered = &sha_only};
    CU_ASSERT_EQUAL(try_cred(d, nonce, 100, &o), DIGEST_OK);
    o = (struct cred_opts){.alg = "SHA-256", .offered = &md5_only, .nc = 2};
    CU_ASSERT_EQUAL(try_cred(d, nonce, 100, &o), DIGEST_CHALLENGE);
    o = (struct cred_opts){.alg = "MD5", .offered = &md5_only, .nc = 3};
    CU_ASSERT_EQUAL(try_cred(d, nonce, 100, &o), DIGEST_OK);
    o = (struct cred_opts){.alg = NULL, .offered = &md5_only, .nc = 4};
    CU_ASSERT_EQUAL(try_cred(d, nonce, 100, &o), DIGEST_OK);
    digest_free(d);
}

/* A raw '"' of the request-target in uri="..." verifies like the escaped form; a raw uri that is
 * not the target stays a 400 (or a malformed header). */
static void test_verify_raw_uri(void)
{
    struct digest *d = digest_new(NULL);
    char nonce[DIGEST_NONCE_MAX];
    digest_nonce_new(d, 100, nonce);
    struct cred_opts o = {.uri = RAW_TARGET, .target = RAW_TARGET};
    CU_ASSERT_EQUAL(try_cred(d, nonce, 100, &o), DIGEST_OK);
    o = (struct cred_opts){.uri = RAW_TARGET, .target = RAW_TARGET, .method = "PUT", .nc = 2};
    struct cred_opts sent_as_get = o;
    sent_as_get.method = "GET";
    char *h = make_auth(d, nonce, &o);
    CU_ASSERT_EQUAL(verify(d, h, 100, &sent_as_get, NULL), DIGEST_CHALLENGE); /* digest binds */
    free(h);
    o = (struct cred_opts){.uri = RAW_TARGET, .target = "/r/users/sip:a@b/index", .nc = 3};
    CU_ASSERT_EQUAL(try_cred(d, nonce, 100, &o), DIGEST_BAD_REQUEST);
    o = (struct cred_opts){.uri = "/r/users/sip:a@b/index", .target = RAW_TARGET, .nc = 4};
    CU_ASSERT_EQUAL(try_cred(d, nonce, 100, &o), DIGEST_BAD_REQUEST);
    digest_free(d);
}

static void test_auth_int(void)
{
    struct digest *d = digest_new(NULL);
    char nonce[DIGEST_NONCE_MAX];
    digest_nonce_new(d, 100, nonce);
    struct cred_opts o = {.alg = "SHA-256", .qop = "auth-int", .method = "PUT", .body = "<a/>"};
    char *h = make_auth(d, nonce, &o);
    struct digest_auth a;
    CU_ASSERT_EQUAL_FATAL(verify(d, h, 100, &o, &a), DIGEST_OK);
    struct buf b;
    buf_init(&b, 4096);
    CU_ASSERT_EQUAL(digest_auth_info(&a, "resp", 4, &b), 0);
    CU_ASSERT_EQUAL(strncmp(b.data, "qop=auth-int, rspauth=\"", 23), 0);
    buf_release(&b);
    digest_auth_release(&a);
    /* a different body breaks the digest */
    struct cred_opts tampered = o;
    tampered.body = "<b/>";
    CU_ASSERT_EQUAL(verify(d, h, 100, &tampered, NULL), DIGEST_CHALLENGE);
    free(h);
    digest_free(d);
}

static CU_TestInfo vector_tests[] = {
    {"RFC 7616 3.9.1 MD5", test_rfc7616_md5},
    {"RFC 7616 3.9.1 SHA-256", test_rfc7616_sha256},
    {"RFC 2617 3.5 MD5", test_rfc2617_md5},
    {"-sess and auth-int", test_sess_and_auth_int},
    {"algorithm names", test_alg_names},
    {"offered algorithm lists", test_algs_parse},
    CU_TEST_INFO_NULL,
};

static CU_TestInfo parser_tests[] = {
    {"basic header", test_parse_basic},
    {"quoting and spacing", test_parse_quoting_and_spacing},
    {"username* (RFC 8187)", test_parse_username_ext},
    {"malformed headers", test_parse_errors},
    {"every prefix", test_parse_prefixes},
    {"raw '\"' in uri", test_parse_raw_uri},
    CU_TEST_INFO_NULL,
};

static CU_TestInfo server_tests[] = {
    {"verify and Authentication-Info", test_verify_ok_and_auth_info},
    {"challenge format", test_challenge_format},
    {"nonce expiry and tampering", test_nonce_expiry_and_tamper},
    {"nc replay", test_nc_replay},
    {"nonce table eviction", test_nonce_eviction},
    {"nonce table stripes", test_nonce_stripe_count},
    {"replay protection with stripes", test_nonce_stripes_replay},
    {"concurrent nc checks", test_nonce_concurrent},
    {"parameter checks", test_verify_checks},
    {"qop=auth-int", test_auth_int},
    {"only offered algorithms", test_verify_offered},
    {"raw '\"' in uri", test_verify_raw_uri},
    CU_TEST_INFO_NULL,
};

int main(void)
{
    CU_SuiteInfo suites[] = {
        {"digest vectors", NULL, NULL, NULL, NULL, vector_tests},
        {"digest parser", NULL, NULL, NULL, NULL, parser_tests},
        {"digest server", NULL, NULL, NULL, NULL, server_tests},
        CU_SUITE_INFO_NULL,
    };
    return unit_run(suites);
}
