/* common/xcap_uri.c: a table of request paths with the expected status and every parsed field
 * (RFC 4825 §4, §5.2, §5.5, §6, §15.1), plus XUI comparison. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "unit.h"
#include "xcap_uri.h"

#define ROOT "/xcap-root"
#define ALICE "sip:alice@example.com"
#define RL_ALICE ROOT "/resource-lists/users/" ALICE

struct uri_case {
    const char *root;  /* NULL = ROOT */
    const char *path;  /* raw request path */
    const char *query; /* raw query or NULL */
    enum xcap_status status;
    /* expected fields when status is XCAP_OK (NULL xui/node_sel/query: must be NULL) */
    const char *auid;
    enum xcap_tree tree;
    const char *xui;
    const char *doc_path;
    bool is_dir;
    const char *node_sel;
    const char *dec_query;
    const char *doc_sel;
};

#define OK XCAP_OK
#define BAD XCAP_BAD_REQUEST
#define NOTFOUND XCAP_NOT_FOUND
#define U XCAP_TREE_USERS
#define G XCAP_TREE_GLOBAL
/* a row that must fail: the fields are not looked at */
#define FAIL(root, path, query, status)                                                            \
    {                                                                                              \
        root, path, query, status, NULL, G, NULL, NULL, false, NULL, NULL, NULL                    \
    }

static const struct uri_case uri_cases[] = {
    /* users and global trees (RFC 4825 §6.2) */
    {NULL, RL_ALICE "/index", NULL, OK, "resource-lists", U, ALICE, "index", false, NULL, NULL,
     "resource-lists/users/" ALICE "/index"},
    {NULL, ROOT "/rls-services/global/index", NULL, OK, "rls-services", G, NULL, "index", false,
     NULL, NULL, "rls-services/global/index"},
    {NULL, ROOT "/xcap-caps/global/index", NULL, OK, "xcap-caps", G, NULL, "index", false, NULL,
     NULL, "xcap-caps/global/index"},
    {NULL, ROOT "/pres-rules/users/tel:+4912345/index", NULL, OK, "pres-rules", U, "tel:+4912345",
     "index", false, NULL, NULL, "pres-rules/users/tel:+4912345/index"},
    /* an unknown AUID parses; the app-usage registry refuses it later (RFC 4825 §6.2, §15.1) */
    {NULL, ROOT "/no-such-auid/global/x", NULL, OK, "no-such-auid", G, NULL, "x", false, NULL, NULL,
     "no-such-auid/global/x"},
    /* XUIs: %2F stays inside the XUI, both hex cases, other escapes decoded (RFC 4825 §4, §6.2) */
    {NULL, ROOT "/resource-lists/users/sip:a%2Fb@example.com/index", NULL, OK, "resource-lists", U,
     "sip:a/b@example.com", "index", false, NULL, NULL,
     "resource-lists/users/sip:a%2Fb@example.com/index"},
    {NULL, ROOT "/resource-lists/users/sip:a%2fb@example.com/index", NULL, OK, "resource-lists", U,
     "sip:a/b@example.com", "index", false, NULL, NULL,
     "resource-lists/users/sip:a%2fb@example.com/index"},
    {NULL, ROOT "/resource-lists/users/sip%3Aalice%40example.com/index", NULL, OK, "resource-lists",
     U, ALICE, "index", false, NULL, NULL, "resource-lists/users/sip%3Aalice%40example.com/index"},
    {NULL, ROOT "/resource-lists/users/sip%3aalice%40example.com/index", NULL, OK, "resource-lists",
     U, ALICE, "index", false, NULL, NULL, "resource-lists/users/sip%3aalice%40example.com/index"},
    {NULL, ROOT "/resource-lists/users/%2F%2F/index", NULL, OK, "resource-lists", U, "//", "index",
     false, NULL, NULL, "resource-lists/users/%2F%2F/index"},
    /* document paths: decoded per segment, sub-directories (RFC 4825 §5.5, §6.2) */
    {NULL, RL_ALICE "/my%20list", NULL, OK, "resource-lists", U, ALICE, "my list", false, NULL,
     NULL, "resource-lists/users/" ALICE "/my%20list"},
    {NULL,
     ROOT "/org.openmobilealliance.pres-content/users/" ALICE "/oma_status-icon/rcs_status_icon",
     NULL, OK, "org.openmobilealliance.pres-content", U, ALICE, "oma_status-icon/rcs_status_icon",
     false, NULL, NULL,
     "org.openmobilealliance.pres-content/users/" ALICE "/oma_status-icon/rcs_status_icon"},
    {NULL, RL_ALICE "/a~~b", NULL, OK, "resource-lists", U, ALICE, "a~~b", false, NULL, NULL,
     "resource-lists/users/" ALICE "/a~~b"},
    {NULL, RL_ALICE "/...", NULL, OK, "resource-lists", U, ALICE, "...", false, NULL, NULL,
     "resource-lists/users/" ALICE "/..."},
    {NULL, RL_ALICE "/~", NULL, OK, "resource-lists", U, ALICE, "~", false, NULL, NULL,
     "resource-lists/users/" ALICE "/~"},
    /* directories */
    {NULL, RL_ALICE "/", NULL, OK, "resource-lists", U, ALICE, "", true, NULL, NULL,
     "resource-lists/users/" ALICE "/"},
    {NULL, RL_ALICE, NULL, OK, "resource-lists", U, ALICE, "", true, NULL, NULL,
     "resource-lists/users/" ALICE},
    {NULL, ROOT "/resource-lists/global/", NULL, OK, "resource-lists", G, NULL, "", true, NULL,
     NULL, "resource-lists/global/"},
    {NULL, ROOT "/resource-lists/global", NULL, OK, "resource-lists", G, NULL, "", true, NULL, NULL,
     "resource-lists/global"},
    {NULL, ROOT "/org.openmobilealliance.pres-content/users/" ALICE "/oma_status-icon/", NULL, OK,
     "org.openmobilealliance.pres-content", U, ALICE, "oma_status-icon", true, NULL, NULL,
     "org.openmobilealliance.pres-content/users/" ALICE "/oma_status-icon/"},
    /* node selectors: decoded once, upper and lower hex, raw forms (RFC 4825 §6) */
    {NULL, RL_ALICE "/index/~~/resource-lists/list%5B@name=%22friends%22%5D", NULL, OK,
     "resource-lists", U, ALICE, "index", false, "resource-lists/list[@name=\"friends\"]", NULL,
     "resource-lists/users/" ALICE "/index"},
    {NULL, RL_ALICE "/index/~~/resource-lists/list%5b@name=%22friends%22%5d", NULL, OK,
     "resource-lists", U, ALICE, "index", false, "resource-lists/list[@name=\"friends\"]", NULL,
     "resource-lists/users/" ALICE "/index"},
    {NULL, RL_ALICE "/index/~~/resource-lists/list[@name=\"friends\"]", NULL, OK, "resource-lists",
     U, ALICE, "index", false, "resource-lists/list[@name=\"friends\"]", NULL,
     "resource-lists/users/" ALICE "/index"},
    /* a raw '"' (Python's urllib, xcaplib) is taken as %22: the same fields as the encoded
     * form, and the document selector a server writes back into URIs carries %22 */
    {NULL, RL_ALICE "/index/~~/resource-lists/list[@name=\"friends\"]/entry[@uri=\"sip:b@x\"]/@uri",
     NULL, OK, "resource-lists", U, ALICE, "index", false,
     "resource-lists/list[@name=\"friends\"]/entry[@uri=\"sip:b@x\"]/@uri", NULL,
     "resource-lists/users/" ALICE "/index"},
    {NULL, RL_ALICE "/in\"dex/~~/resource-lists", NULL, OK, "resource-lists", U, ALICE, "in\"dex",
     false, "resource-lists", NULL, "resource-lists/users/" ALICE "/in%22dex"},
    {NULL, ROOT "/resource-lists/users/sip:\"a\"@example.com/index", NULL, OK, "resource-lists", U,
     "sip:\"a\"@example.com", "index", false, NULL, NULL,
     "resource-lists/users/sip:%22a%22@example.com/index"},
    {NULL, RL_ALICE "/index/~~/resource-lists/list%5B@name=%22a%2525b%22%5D", NULL, OK,
     "resource-lists", U, ALICE, "index", false, "resource-lists/list[@name=\"a%25b\"]", NULL,
     "resource-lists/users/" ALICE "/index"},
    {NULL, RL_ALICE "/index/~~/resource-lists/list%5B@name=%22a%2Fb%22%5D/entry", NULL, OK,
     "resource-lists", U, ALICE, "index", false, "resource-lists/list[@name=\"a/b\"]/entry", NULL,
     "resource-lists/users/" ALICE "/index"},
    {NULL, RL_ALICE "/index/~~/resource-lists/list%5B@name=%22my%20friends%22%5D", NULL, OK,
     "resource-lists", U, ALICE, "index", false, "resource-lists/list[@name=\"my friends\"]", NULL,
     "resource-lists/users/" ALICE "/index"},
    {NULL, RL_ALICE "/index/~~/resource-lists/list/@name", NULL, OK, "resource-lists", U, ALICE,
     "index", false, "resource-lists/list/@name", NULL, "resource-lists/users/" ALICE "/index"},
    {NULL, RL_ALICE "/index/~~/resource-lists/list/namespace::*", NULL, OK, "resource-lists", U,
     ALICE, "index", false, "resource-lists/list/namespace::*", NULL,
     "resource-lists/users/" ALICE "/index"},
    {NULL, RL_ALICE "/index/~~/resource-lists/list%5B2%5D", NULL, OK, "resource-lists", U, ALICE,
     "index", false, "resource-lists/list[2]", NULL, "resource-lists/users/" ALICE "/index"},
    /* only the first "~~" segment separates; later ones belong to the selector */
    {NULL, RL_ALICE "/index/~~/a/~~/b", NULL, OK, "resource-lists", U, ALICE, "index", false,
     "a/~~/b", NULL, "resource-lists/users/" ALICE "/index"},
    {NULL, RL_ALICE "/index/~~/a%5B@x=%22~~%22%5D", NULL, OK, "resource-lists", U, ALICE, "index",
     false, "a[@x=\"~~\"]", NULL, "resource-lists/users/" ALICE "/index"},
    {NULL, ROOT "/rls-services/global/index/~~/rls-services/service", NULL, OK, "rls-services", G,
     NULL, "index", false, "rls-services/service", NULL, "rls-services/global/index"},
    {NULL, ROOT "/org.openmobilealliance.pres-content/users/" ALICE "/oma_status-icon/x/~~/content",
     NULL, OK, "org.openmobilealliance.pres-content", U, ALICE, "oma_status-icon/x", false,
     "content", NULL, "org.openmobilealliance.pres-content/users/" ALICE "/oma_status-icon/x"},
    /* queries: decoded once (RFC 4825 §6.4); an empty query is no query */
    {NULL, RL_ALICE "/index/~~/rl:resource-lists",
     "xmlns(rl=urn:ietf:params:xml:ns:resource-lists)", OK, "resource-lists", U, ALICE, "index",
     false, "rl:resource-lists", "xmlns(rl=urn:ietf:params:xml:ns:resource-lists)",
     "resource-lists/users/" ALICE "/index"},
    {NULL, RL_ALICE "/index/~~/rl:resource-lists",
     "xmlns%28rl=urn:ietf:params:xml:ns:resource-lists%29xmlns%28cp=urn%3aietf%29", OK,
     "resource-lists", U, ALICE, "index", false, "rl:resource-lists",
     "xmlns(rl=urn:ietf:params:xml:ns:resource-lists)xmlns(cp=urn:ietf)",
     "resource-lists/users/" ALICE "/index"},
    {NULL, RL_ALICE "/index", "a%2525", OK, "resource-lists", U, ALICE, "index", false, NULL,
     "a%25", "resource-lists/users/" ALICE "/index"},
    {NULL, RL_ALICE "/index", "", OK, "resource-lists", U, ALICE, "index", false, NULL, NULL,
     "resource-lists/users/" ALICE "/index"},
    /* other roots */
    {"", "/resource-lists/users/" ALICE "/index", NULL, OK, "resource-lists", U, ALICE, "index",
     false, NULL, NULL, "resource-lists/users/" ALICE "/index"},
    {"/services/xcap", "/services/xcap/resource-lists/global/index", NULL, OK, "resource-lists", G,
     NULL, "index", false, NULL, NULL, "resource-lists/global/index"},

    /* not under the root, or no document selector: 404 (RFC 4825 §6.1) */
    FAIL(NULL, "/other/resource-lists/users/" ALICE "/index", NULL, NOTFOUND),
    FAIL(NULL, ROOT "x/resource-lists/global/index", NULL, NOTFOUND),
    FAIL(NULL, "/XCAP-ROOT/resource-lists/global/index", NULL, NOTFOUND),
    FAIL(NULL, ROOT, NULL, NOTFOUND),
    FAIL(NULL, ROOT "/", NULL, NOTFOUND),
    FAIL(NULL, "/", NULL, NOTFOUND),
    FAIL(NULL, "", NULL, NOTFOUND),
    FAIL("/services/xcap", "/services/resource-lists/global/index", NULL, NOTFOUND),
    FAIL(NULL, ROOT "//resource-lists/global/index", NULL, NOTFOUND),
    FAIL(NULL, ROOT "/resource-lists", NULL, NOTFOUND),
    FAIL(NULL, ROOT "/resource-lists/", NULL, NOTFOUND),
    FAIL(NULL, ROOT "/resource-lists/users", NULL, NOTFOUND),
    FAIL(NULL, ROOT "/resource-lists/users/", NULL, NOTFOUND),
    /* unknown tree: 404 (RFC 4825 §6.2) */
    FAIL(NULL, ROOT "/resource-lists/user/" ALICE "/index", NULL, NOTFOUND),
    FAIL(NULL, ROOT "/resource-lists/Users/" ALICE "/index", NULL, NOTFOUND),
    FAIL(NULL, ROOT "/resource-lists/GLOBAL/index", NULL, NOTFOUND),
    /* the tree name is compared after decoding */
    {NULL, ROOT "/resource-lists/%67lobal/index", NULL, OK, "resource-lists", G, NULL, "index",
     false, NULL, NULL, "resource-lists/%67lobal/index"},
    /* a directory has no node selector */
    FAIL(NULL, RL_ALICE "/~~/resource-lists", NULL, NOTFOUND),
    /* empty node selector: 400 (RFC 4825 §6) */
    FAIL(NULL, RL_ALICE "/index/~~", NULL, BAD),
    FAIL(NULL, RL_ALICE "/index/~~/", NULL, BAD),
    FAIL(NULL, ROOT "/~~/resource-lists", NULL, BAD),
    /* dot segments, raw or encoded, anywhere in the document selector (RFC 4825 §6) */
    FAIL(NULL, RL_ALICE "/../bob/index", NULL, BAD),
    FAIL(NULL, RL_ALICE "/./index", NULL, BAD),
    FAIL(NULL, RL_ALICE "/index/..", NULL, BAD),
    FAIL(NULL, RL_ALICE "/%2E%2E/index", NULL, BAD),
    FAIL(NULL, RL_ALICE "/%2e/index", NULL, BAD),
    FAIL(NULL, ROOT "/resource-lists/users/../index", NULL, BAD),
    FAIL(NULL, ROOT "/resource-lists/users/%2E/index", NULL, BAD),
    FAIL(NULL, ROOT "/../resource-lists/global/index", NULL, BAD),
    FAIL(NULL, ROOT "/resource-lists/global/../index", NULL, BAD),
    /* empty segments inside the document path */
    FAIL(NULL, RL_ALICE "//index", NULL, BAD),
    FAIL(NULL, ROOT "/resource-lists//global/index", NULL, BAD),
    FAIL(NULL, RL_ALICE "/dir//index/~~/a", NULL, BAD),
    /* '/' smuggled as %2F outside the XUI */
    FAIL(NULL, RL_ALICE "/dir%2Findex", NULL, BAD),
    FAIL(NULL, ROOT "/resource%2Flists/global/index", NULL, BAD),
    /* %00 anywhere */
    FAIL(NULL, RL_ALICE "/in%00dex", NULL, BAD),
    FAIL(NULL, ROOT "/resource-lists/users/sip:a%00@example.com/index", NULL, BAD),
    FAIL(NULL, RL_ALICE "/index/~~/resource-lists%00", NULL, BAD),
    FAIL(NULL, RL_ALICE "/index", "xmlns(a=b%00)", BAD),
    /* bad escapes in every part */
    FAIL(NULL, RL_ALICE "/in%G1dex", NULL, BAD),
    FAIL(NULL, RL_ALICE "/index%", NULL, BAD),
    FAIL(NULL, RL_ALICE "/index%4", NULL, BAD),
    FAIL(NULL, RL_ALICE "/index%zz", NULL, BAD),
    FAIL(NULL, ROOT "/resource-lists/users/sip:%alice@example.com/index", NULL, BAD),
    FAIL(NULL, RL_ALICE "/index/~~/resource-lists/list%5", NULL, BAD),
    FAIL(NULL, RL_ALICE "/index/~~/resource-lists/list%%5B", NULL, BAD),
    FAIL(NULL, RL_ALICE "/index", "xmlns%2", BAD),
    FAIL(NULL, RL_ALICE "/index", "%", BAD),
    FAIL(NULL, RL_ALICE "/index", "a%-1", BAD),
};

static bool uri_str_eq(const char *got, const char *want)
{
    if (!got || !want)
        return got == want;
    return strcmp(got, want) == 0;
}

static void uri_check(const struct uri_case *c, size_t i)
{
    struct xcap_uri u;
    struct xcap_err err = {0};
    memset(&u, 0x5A, sizeof u); /* the parser must set every field */
    enum xcap_status st = xcap_uri_parse(c->root ? c->root : ROOT, c->path, c->query, &u, &err);
    bool ok = st == c->status;
    if (st == XCAP_OK && ok) {
        ok = uri_str_eq(u.auid, c->auid) && u.tree == c->tree && uri_str_eq(u.xui, c->xui) &&
             uri_str_eq(u.path, c->doc_path) && u.is_dir == c->is_dir &&
             uri_str_eq(u.node_sel, c->node_sel) && uri_str_eq(u.query, c->dec_query) &&
             uri_str_eq(u.doc_sel, c->doc_sel);
    }
    if (st != XCAP_OK) {
        /* err carries the same status, and out was released */
        ok = ok && err.status == st && !u.auid && !u.xui && !u.path && !u.node_sel && !u.query &&
             !u.doc_sel;
    }
    if (!ok) {
        fprintf(stderr, "\n  case %zu: \"%s\" ?\"%s\": want %s, got %s", i, c->path,
                c->query ? c->query : "(none)", status_name(c->status), status_name(st));
        if (st == XCAP_OK)
            fprintf(stderr, " auid=%s tree=%d xui=%s path=%s dir=%d sel=%s q=%s doc_sel=%s", u.auid,
                    (int)u.tree, u.xui ? u.xui : "(null)", u.path, (int)u.is_dir,
                    u.node_sel ? u.node_sel : "(null)", u.query ? u.query : "(null)", u.doc_sel);
        else
            fprintf(stderr, " (%s)", err.phrase ? err.phrase : "");
    }
    CU_ASSERT(ok);
    if (st == XCAP_OK)
        xcap_uri_release(&u);
    xcap_err_release(&err);
}

static void test_uri_table(void)
{
    size_t n = sizeof uri_cases / sizeof uri_cases[0];
    CU_ASSERT(n >= 50);
    for (size_t i = 0; i < n; i++)
        uri_check(&uri_cases[i], i);
}

/* Builds ROOT "/resource-lists/users/<xui>/<doc>" with one segment of n bytes. */
static char *uri_with_long_segment(size_t n, bool in_xui)
{
    char *seg = malloc(n + 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(seg);
    memset(seg, 'a', n);
    seg[n] = '\0';
    char *path = NULL;
    int rc = in_xui ? asprintf(&path, ROOT "/resource-lists/users/%s/index", seg)
                    : asprintf(&path, RL_ALICE "/%s", seg);
    free(seg);
    CU_ASSERT_FATAL(rc > 0);
    return path;
}

static void test_uri_segment_length(void)
{
    struct xcap_uri u;
    struct xcap_err err = {0};
    char *p = uri_with_long_segment(XCAP_URI_MAX_SEGMENT, false);
    CU_ASSERT_EQUAL(xcap_uri_parse(ROOT, p, NULL, &u, &err), XCAP_OK);
    CU_ASSERT_EQUAL(strlen(u.path), XCAP_URI_MAX_SEGMENT);
    xcap_uri_release(&u);
    free(p);

    p = uri_with_long_segment(XCAP_URI_MAX_SEGMENT + 1, false);
    CU_ASSERT_EQUAL(xcap_uri_parse(ROOT, p, NULL, &u, &err), XCAP_BAD_REQUEST);
    free(p);

    p = uri_with_long_segment(XCAP_URI_MAX_SEGMENT + 1, true);
    CU_ASSERT_EQUAL(xcap_uri_parse(ROOT, p, NULL, &u, &err), XCAP_BAD_REQUEST);
    free(p);

    p = uri_with_long_segment(100000, false);
    CU_ASSERT_EQUAL(xcap_uri_parse(ROOT, p, NULL, &u, &err), XCAP_BAD_REQUEST);
    free(p);
    xcap_err_release(&err);
}

static void test_uri_decode(void)
{
    char *d = xcap_uri_decode("a%41%62c", 8);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_STRING_EQUAL(d, "aAbc");
    free(d);
    /* the length bounds the input: the escape after it is not read */
    d = xcap_uri_decode("ab%zz", 2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_STRING_EQUAL(d, "ab");
    free(d);
    /* an escape cut by the length is invalid */
    CU_ASSERT_PTR_NULL(xcap_uri_decode("a%41", 3));
    CU_ASSERT_PTR_NULL(xcap_uri_decode("a\0b", 3));
    CU_ASSERT_PTR_NULL(xcap_uri_decode("%00", 3));
    d = xcap_uri_decode("%FF%c3%A9+", 10);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_STRING_EQUAL(d, "\xFF\xC3\xA9+"); /* '+' is not a space in a path */
    free(d);
    d = xcap_uri_decode("", 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_STRING_EQUAL(d, "");
    free(d);
}

/* The one percent-encoder: a segment, a path with its '/' kept, bytes with a NUL, a full buffer. */
static void test_uri_encode(void)
{
    struct buf b;
    buf_init(&b, 256);
    CU_ASSERT_EQUAL(xcap_uri_encode_segment(&b, "a b/c%d\"[]~-._!$&'()*+,;=:@"), 0);
    CU_ASSERT_EQUAL(b.len, strlen("a%20b%2Fc%25d%22%5B%5D~-._!$&'()*+,;=:@"));
    CU_ASSERT_EQUAL(memcmp(b.data, "a%20b%2Fc%25d%22%5B%5D~-._!$&'()*+,;=:@", b.len), 0);
    buf_reset(&b);
    CU_ASSERT_EQUAL(xcap_uri_encode(&b, "x/y z\0\xc3\xa9", 8, true), 0);
    CU_ASSERT_EQUAL(b.len, strlen("x/y%20z%00%C3%A9"));
    CU_ASSERT_EQUAL(memcmp(b.data, "x/y%20z%00%C3%A9", b.len), 0);
    buf_reset(&b);
    CU_ASSERT_EQUAL(xcap_uri_encode(&b, "x/y", 1, false), 0); /* the length bounds the input */
    CU_ASSERT_EQUAL(b.len, 1);
    buf_release(&b);
    buf_init(&b, 4);
    CU_ASSERT_EQUAL(xcap_uri_encode(&b, "a b", 3, false), -1);
    buf_release(&b);
}

/* The canonical spelling (xcap_uri_xui_canonical()). */
static void test_xui_canonical(void)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"sip:alice@example.com", "sip:alice@example.com"},
        {"sip:alice@EXAMPLE.com", "sip:alice@example.com"},
        {"SIP:alice@example.com", "sip:alice@example.com"},
        {"SiPs:Alice@Example.COM:5061", "sips:Alice@example.com:5061"},
        {"sip:EXAMPLE.com", "sip:example.com"},
        {"sip:%61lice@%45xample.com", "sip:alice@example.com"},
        {"sip:%7e%2d%2E%5F@x", "sip:~-._@x"},
        {"sip:a%2fb%3a%40c@x", "sip:a%2Fb%3A%40c@x"},
        {"sip:100%@x", "sip:100%@x"},
        {"sip:100%4@x", "sip:100%4@x"},
        {"sip:x@h%", "sip:x@h%"},
        {"sip:x@h%4", "sip:x@h%4"},
        {"sip:x%zz@H", "sip:x%zz@h"},
        /* a decoded hex digit never completes an escape with a bare '%' before it */
        {"sip:%%38f@x", "sip:%%38f@x"},
        {"sip:%%6141@x", "sip:%%6141@x"},
        {"sip:%4%31@x", "sip:%4%31@x"},
        {"sip:%%4a@x", "sip:%J@x"},
        {"sip:%%%38F@x", "sip:%%%38F@x"},
        {"sip:a@h%%38f", "sip:a@h%%38f"},
        {"sip:a@b@C.com", "sip:a@b@c.com"},
        /* URI parameters: without case, in one order (RFC 3261 §19.1.4); headers as sent */
        {"sip:alice@EXAMPLE.com;Transport=TCP?Subject=X",
         "sip:alice@example.com;transport=tcp?Subject=X"},
        {"sip:alice@example.com;transport=tcp;LR", "sip:alice@example.com;lr;transport=tcp"},
        /* tel: URIs (RFC 3966 §4, §5.1.1): visual separators, case, parameter order */
        {"tel:+1-555-ABC", "tel:+1555abc"},
        {"tel:+49-30-123456", "tel:+4930123456"},
        {"TEL:+49(30)123.456", "tel:+4930123456"},
        {"tel:7042;Phone-Context=EXAMPLE.com", "tel:7042;phone-context=example.com"},
        {"tel:7042;phone-context=+1-555", "tel:7042;phone-context=+1555"},
        {"tel:+1234;foo=Bar;phone-context=x;ext=12-3", "tel:+1234;ext=123;phone-context=x;foo=bar"},
        {"tel:+1234?x=Y", "tel:+1234?x=Y"},
        {"tel:+1;a=2;A=1;a", "tel:+1;a;a=1;a=2"},
        {"tel:+1;a=1;a=2;a", "tel:+1;a;a=1;a=2"},
        /* a number or value with a bare '%' keeps its separators: removing one could make an
         * escape; around a complete escape they go */
        {"tel:%2B49-30-123456", "tel:%2b4930123456"},
        {"tel:%4(4", "tel:%4(4"},
        {"tel:+1;ext=%4-4", "tel:+1;ext=%4-4"},
        {"sip:%4-4@x;user=phone", "sip:%4-4@x;user=phone"},
        /* sip: with user=phone: the user part is a telephone-subscriber (RFC 3261 §19.1.6) */
        {"sip:+49-30-123456@IMS.example.com;user=phone",
         "sip:+4930123456@ims.example.com;user=phone"},
        {"sip:+49-30-123456@ims.example.com;User=Phone",
         "sip:+4930123456@ims.example.com;user=phone"},
        {"sip:+1-555;ISUB=12-34@h;user=phone;lr", "sip:+1555;isub=1234@h;lr;user=phone"},
        {"sip:+49-30-123456@ims.example.com", "sip:+49-30-123456@ims.example.com"},
        {"sip:A-B@h;user=ip", "sip:A-B@h;user=ip"},
        {"Alice", "Alice"},
        {"Alice@EXAMPLE.com", "Alice@example.com"},
        {"1sip:X@Y", "1sip:X@y"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *got = xcap_uri_xui_canonical(cases[i].in);
        CU_ASSERT_PTR_NOT_NULL_FATAL(got);
        if (strcmp(got, cases[i].want) != 0)
            fprintf(stderr, "canonical(%s) = %s, want %s\n", cases[i].in, got, cases[i].want);
        CU_ASSERT_STRING_EQUAL(got, cases[i].want);
        /* Idempotent. */
        char *again = xcap_uri_xui_canonical(got);
        CU_ASSERT_PTR_NOT_NULL_FATAL(again);
        CU_ASSERT_STRING_EQUAL(again, got);
        free(again);
        free(got);
    }
}

/* The canonical form is a fixed point on any input: random strings over the characters that
 * matter (schemes, separators, parameters, escapes). */
static void test_xui_canonical_fixed_point(void)
{
    static const char *const parts[] = {"sip:",
                                        "sips:",
                                        "tel:",
                                        "+",
                                        "49",
                                        "-",
                                        ".",
                                        "(",
                                        ")",
                                        "@",
                                        "H",
                                        ";",
                                        "user=phone",
                                        "USER=PHONE",
                                        "ext=1-2",
                                        "isub=",
                                        "phone-context=",
                                        "=",
                                        "?",
                                        "%2B",
                                        "%41",
                                        "a",
                                        "Z",
                                        ";",
                                        ";user=phone"};
    unsigned seed = 12345;
    for (int i = 0; i < 20000; i++) {
        char in[128] = "";
        size_t len = 0;
        int n = 1 + (int)((seed = seed * 1103515245u + 12345u) >> 16) % 12;
        for (int k = 0; k < n; k++) {
            const char *p = parts[((seed = seed * 1103515245u + 12345u) >> 16) %
                                  (sizeof parts / sizeof *parts)];
            size_t pl = strlen(p);
            if (len + pl >= sizeof in)
                break;
            memcpy(in + len, p, pl + 1);
            len += pl;
        }
        char *once = xcap_uri_xui_canonical(in);
        CU_ASSERT_PTR_NOT_NULL_FATAL(once);
        char *twice = xcap_uri_xui_canonical(once);
        CU_ASSERT_PTR_NOT_NULL_FATAL(twice);
        if (strcmp(once, twice) != 0)
            fprintf(stderr, "canonical(%s) = %s, then %s\n", in, once, twice);
        CU_ASSERT_STRING_EQUAL(once, twice);
        CU_ASSERT(strlen(once) <= len);
        free(once);
        free(twice);
    }
}

static void test_xui_equal(void)
{
    static const struct {
        const char *a, *b;
        bool equal;
    } cases[] = {
        {ALICE, ALICE, true},
        {"SIP:alice@example.com", ALICE, true},
        {"Sip:alice@EXAMPLE.COM", ALICE, true},
        {"sip:alice@Example.Com:5060", "sip:alice@example.com:5060", true},
        {"sip:Alice@example.com", ALICE, false},
        {"sip:ALICE@example.com", "sip:alice@EXAMPLE.com", false},
        {"sips:alice@example.com", ALICE, false},
        {"sip:alice@example.org", ALICE, false},
        {"sip:alice@example.co", ALICE, false},
        {"sip:alice@example.com ", ALICE, false},
        {"sip:alic@example.com", ALICE, false},
        {"sip:alice", ALICE, false},
        {"tel:+4912345", "tel:+4912345", true},
        {"TEL:+4912345", "tel:+4912345", true},
        {"tel:+4912345", "tel:+4912346", false},
        {"tel:+49-12-345", "tel:+4912345", true},
        {"tel:+49 12345", "tel:+4912345", false},
        {"tel:1234;phone-context=Example.COM", "tel:1234;phone-context=example.com", true},
        {"tel:1234;phone-context=example.com", "tel:1234;phone-context=example.org", false},
        {"sip:+49-12-345@ims.example.com;user=phone", "sip:+4912345@IMS.example.com;USER=PHONE",
         true},
        {"sip:+4912345@ims.example.com;user=phone", "sip:+4912345@ims.example.com", false},
        {"sip:+4912345@ims.example.com;user=phone", "tel:+4912345", false},
        {"tel:+4912345", "sip:+4912345", false},
        {"alice", "alice", true},
        {"alice", "Alice", false},
        {"sip:a/b@example.com", "sip:a/b@example.com", true},
        {"sip:a/b@example.com", "sip:a/B@example.com", false},
        /* A host-only XUI compares its host without case, like any host. */
        {"sip:EXAMPLE.com", "sip:example.com", true},
        {"SIP:example.COM", "sip:example.com", true},
        {"sip:example.com", "sip:example.org", false},
        /* Percent-encoding of the SIP URI itself is normalised (RFC 3986 §6.2.2). */
        {"sip:%61lice@example.com", ALICE, true},
        {"sip:alice@%65xample.com", ALICE, true},
        {"sip:a%2fb@example.com", "sip:a%2Fb@example.com", true},
        {"sip:a%2fb@example.com", "sip:a/b@example.com", false},
        {"sip:%41lice@example.com", ALICE, false},
        /* Parameters are not host: they keep their case. */
        {"sip:alice@EXAMPLE.com;transport=TCP", "sip:alice@example.com;transport=TCP", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool got = xcap_uri_xui_equal(cases[i].a, cases[i].b);
        bool rev = xcap_uri_xui_equal(cases[i].b, cases[i].a);
        if (got != cases[i].equal || rev != cases[i].equal)
            fprintf(stderr, "\n  xui case \"%s\" vs \"%s\": got %d/%d", cases[i].a, cases[i].b,
                    (int)got, (int)rev);
        CU_ASSERT_EQUAL(got, cases[i].equal);
        CU_ASSERT_EQUAL(rev, cases[i].equal);
    }
}

static void test_xcap_uri_pct_decode(void)
{
    char out[16];
    CU_ASSERT_EQUAL(xcap_uri_pct_decode("a%3ab%3A%25", 11, out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, "a:b:%");
    CU_ASSERT_EQUAL(xcap_uri_pct_decode("abc", 2, out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, "ab");
    CU_ASSERT_EQUAL(xcap_uri_pct_decode("", 0, out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, "");
    CU_ASSERT_EQUAL(xcap_uri_pct_decode("%4", 2, out, sizeof out), -1);
    CU_ASSERT_EQUAL(xcap_uri_pct_decode("%41", 2, out, sizeof out), -1); /* escape cut by len */
    CU_ASSERT_EQUAL(xcap_uri_pct_decode("%zz", 3, out, sizeof out), -1);
    CU_ASSERT_EQUAL(xcap_uri_pct_decode("a%00b", 5, out, sizeof out), -1);
    CU_ASSERT_EQUAL(xcap_uri_pct_decode("0123456789abcdef", 16, out, sizeof out), -1);
    CU_ASSERT_EQUAL(xcap_uri_pct_decode("0123456789abcde", 15, out, sizeof out), 0);
    CU_ASSERT_EQUAL(xcap_uri_pct_decode("a", 1, out, 0), -1);
    /* in place, as Digest decodes an RFC 8187 ext-value */
    char s[] = "%41b%2Fc";
    CU_ASSERT_EQUAL(xcap_uri_pct_decode(s, strlen(s), s, sizeof s), 0);
    CU_ASSERT_STRING_EQUAL(s, "Ab/c");
}

static CU_TestInfo xcap_uri_tests[] = {
    {"URI table", test_uri_table},
    {"segment length bound", test_uri_segment_length},
    {"percent decoding", test_uri_decode},
    {"percent encoding", test_uri_encode},
    {"XUI comparison", test_xui_equal},
    {"XUI canonical form", test_xui_canonical},
    {"XUI canonical form is a fixed point", test_xui_canonical_fixed_point},
    {"percent-decoding into a bounded buffer", test_xcap_uri_pct_decode},
    CU_TEST_INFO_NULL,
};

int main(void)
{
    CU_SuiteInfo suites[] = {
        {"xcap_uri", NULL, NULL, NULL, NULL, xcap_uri_tests},
        CU_SUITE_INFO_NULL,
    };
    return unit_run(suites);
}
