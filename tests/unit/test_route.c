/* Unit suite for the proxy's request path: aggproxy/route.c (AUID extraction on raw paths,
 * defaults, overrides), caps.c (xcap-caps union), forward.c (byte-exact forwarding against an
 * in-process upstream) and proxy.c (the whole pipeline with Digest, behind a real listener). */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "caps.h"
#include "compress.h"
#include "digest.h"
#include "forward.h"
#include "gba.h"
#include "httpd.h"
#include "log.h"
#include "proxy.h"
#include "route.h"
#include "upstream.h"
#include "metrics.h"
#include "store.h"
#include "users.h"
#include "xcap_uri.h"
#include "xdoc.h"
#include "unit.h"

/* ---- route ---------------------------------------------------------------------------------- */

static struct route_table *new_default_table(void)
{
    char err[256];
    struct route_table *t = route_table_new(NULL, NULL, NULL, NULL, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL(t);
    return t;
}

static void expect_route(const struct route_table *t, const char *path, enum route_kind kind,
                         const char *upstream)
{
    struct route_match m;
    route_match(t, path, &m);
    if (m.kind != kind)
        printf("\n  [%s]: kind %d, want %d\n", path, m.kind, kind);
    CU_ASSERT_EQUAL(m.kind, kind);
    if (upstream && m.kind == ROUTE_UPSTREAM)
        CU_ASSERT_STRING_EQUAL(m.upstream, upstream);
}

static void test_route_defaults(void)
{
    struct route_table *t = new_default_table();
    const char *x = "/users/sip:alice@example.com/index";
    struct {
        const char *auid, *url;
    } want[] = {
        {"resource-lists", "unix:var/shared-list/xdms.sock"},
        {"pres-rules", "unix:var/presence/xdms.sock"},
        {"org.openmobilealliance.pres-rules", "unix:var/presence/xdms.sock"},
        {"pidf-manipulation", "unix:var/presence/xdms.sock"},
        {"org.openmobilealliance.pres-content", "unix:var/presence/xdms.sock"},
        {"rls-services", "unix:var/rls/xdms.sock"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, "/xcap-root/%s%s", want[i].auid, x);
        expect_route(t, path, ROUTE_UPSTREAM, want[i].url);
    }
    expect_route(t, "/xcap-root/rls-services/global/index", ROUTE_UPSTREAM,
                 "unix:var/rls/xdms.sock");
    expect_route(t, "/xcap-root/resource-lists", ROUTE_UPSTREAM, "unix:var/shared-list/xdms.sock");
    expect_route(t, "/xcap-root/xcap-caps/global/index", ROUTE_CAPS, NULL);
    const char *ups[8];
    CU_ASSERT_EQUAL(route_table_upstreams(t, ups, 8), 3);
    CU_ASSERT_STRING_EQUAL(ups[0], "unix:var/shared-list/xdms.sock");
    CU_ASSERT_STRING_EQUAL(ups[1], "unix:var/presence/xdms.sock");
    CU_ASSERT_STRING_EQUAL(ups[2], "unix:var/rls/xdms.sock");
    CU_ASSERT_STRING_EQUAL(route_table_root(t), "/xcap-root");
    route_table_free(t);
}

static void test_route_not_found(void)
{
    struct route_table *t = new_default_table();
    expect_route(t, "/xcap-root/unknown/users/sip:a@b/x", ROUTE_NOT_FOUND, NULL);
    expect_route(t, "/xcap-root/", ROUTE_NOT_FOUND, NULL);
    expect_route(t, "/xcap-root", ROUTE_NOT_FOUND, NULL);
    expect_route(t, "/xcap-root//resource-lists/global/index", ROUTE_NOT_FOUND, NULL);
    expect_route(t, "/xcap-rootx/resource-lists/global/index", ROUTE_NOT_FOUND, NULL);
    expect_route(t, "/other/resource-lists/global/index", ROUTE_NOT_FOUND, NULL);
    expect_route(t, "/resource-lists/global/index", ROUTE_NOT_FOUND, NULL);
    expect_route(t, "", ROUTE_NOT_FOUND, NULL);
    expect_route(t, "*", ROUTE_NOT_FOUND, NULL);
    /* the AUID is compared raw and exactly: no decoding, no case folding */
    expect_route(t, "/xcap-root/resource%2Dlists/global/index", ROUTE_NOT_FOUND, NULL);
    expect_route(t, "/xcap-root/Resource-Lists/global/index", ROUTE_NOT_FOUND, NULL);
    expect_route(t, "/xcap-root/resource-lists2/global/index", ROUTE_NOT_FOUND, NULL);
    expect_route(t, "/xcap-root/resource-list/global/index", ROUTE_NOT_FOUND, NULL);
    expect_route(t, "/XCAP-ROOT/resource-lists/global/index", ROUTE_NOT_FOUND, NULL);
    route_table_free(t);
}

/* in_root: the XCAP root itself and everything below it, served or not (the proxy answers 405
 * there before authentication). */
static void test_route_in_root(void)
{
    struct route_table *t = new_default_table();
    static const struct {
        const char *path;
        bool in;
    } cases[] = {
        {"/xcap-root", true},
        {"/xcap-root/", true},
        {"/xcap-root/unknown/global/index", true},
        {"/xcap-root/resource-lists/", true},
        {"/xcap-root/xcap-caps/global/index", true},
        {"/xcap-root//x", true},
        {"/xcap-rootx", false},
        {"/xcap-rootx/resource-lists/global/index", false},
        {"/xcap", false},
        {"/other", false},
        {"*", false},
        {"", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct route_match m;
        route_match(t, cases[i].path, &m);
        if (m.in_root != cases[i].in)
            printf("\n  [%s]: in_root %d, want %d\n", cases[i].path, m.in_root, cases[i].in);
        CU_ASSERT_EQUAL(m.in_root, cases[i].in);
    }
    route_table_free(t);
    /* the server root as XCAP root: every path is below it */
    char err[256];
    t = route_table_new("/", NULL, NULL, NULL, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    struct route_match m;
    route_match(t, "/", &m);
    CU_ASSERT_TRUE(m.in_root);
    route_match(t, "/resource-lists/global/index", &m);
    CU_ASSERT_TRUE(m.in_root);
    CU_ASSERT_EQUAL(m.kind, ROUTE_UPSTREAM);
    route_match(t, "*", &m);
    CU_ASSERT_FALSE(m.in_root);
    route_table_free(t);
}

static void test_route_spans(void)
{
    struct route_table *t = new_default_table();
    const char *path = "/xcap-root/resource-lists/users/sip:alice%40example.com/index/~~/"
                       "resource-lists/list%5B@name=%22a%2Fb%22%5D";
    struct route_match m;
    route_match(t, path, &m);
    CU_ASSERT_EQUAL_FATAL(m.kind, ROUTE_UPSTREAM);
    CU_ASSERT_EQUAL(m.auid_len, 14);
    CU_ASSERT_EQUAL(strncmp(m.auid, "resource-lists", m.auid_len), 0);
    CU_ASSERT_EQUAL(m.tree_len, 5);
    CU_ASSERT_EQUAL(strncmp(m.tree, "users", 5), 0);
    CU_ASSERT_EQUAL(m.xui_len, strlen("sip:alice%40example.com"));
    CU_ASSERT_EQUAL(strncmp(m.xui, "sip:alice%40example.com", m.xui_len), 0);
    CU_ASSERT_STRING_EQUAL(m.rest, "/index/~~/resource-lists/list%5B@name=%22a%2Fb%22%5D");
    char xui[64];
    CU_ASSERT_EQUAL(xcap_uri_pct_decode(m.xui, m.xui_len, xui, sizeof xui), 0);
    CU_ASSERT_STRING_EQUAL(xui, "sip:alice@example.com");

    route_match(t, "/xcap-root/pres-rules/global/index", &m);
    CU_ASSERT_EQUAL(m.xui_len, 0);
    CU_ASSERT_EQUAL(strncmp(m.tree, "global", m.tree_len), 0);
    CU_ASSERT_STRING_EQUAL(m.rest, "/index");
    /* a users tree without an XUI segment */
    route_match(t, "/xcap-root/pres-rules/users", &m);
    CU_ASSERT_EQUAL(m.kind, ROUTE_UPSTREAM);
    CU_ASSERT_EQUAL(m.xui_len, 0);
    route_match(t, "/xcap-root/pres-rules/users/", &m);
    CU_ASSERT_EQUAL(m.xui_len, 0);
    CU_ASSERT_PTR_NOT_NULL(m.xui);
    route_table_free(t);
}

static void test_route_config(void)
{
    char err[256];
    struct route_table *t =
        route_table_new("/root/", "http://127.0.0.1:9001/", "https://xdms.example:9002",
                        "http://[::1]:9003", err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT_STRING_EQUAL(route_table_root(t), "/root");
    expect_route(t, "/root/resource-lists/global/index", ROUTE_UPSTREAM, "http://127.0.0.1:9001");
    expect_route(t, "/root/pidf-manipulation/global/index", ROUTE_UPSTREAM,
                 "https://xdms.example:9002");
    expect_route(t, "/root/rls-services/global/index", ROUTE_UPSTREAM, "http://[::1]:9003");
    expect_route(t, "/xcap-root/rls-services/global/index", ROUTE_NOT_FOUND, NULL);

    /* route = AUID URL adds or overrides one AUID */
    CU_ASSERT_EQUAL(
        route_table_set_spec(t, "  org.openmobilealliance.groups \t http://h:1/ ", err, sizeof err),
        0);
    expect_route(t, "/root/org.openmobilealliance.groups/global/x", ROUTE_UPSTREAM, "http://h:1");
    CU_ASSERT_EQUAL(route_table_set_spec(t, "pres-rules http://127.0.0.1:9009", err, sizeof err),
                    0);
    expect_route(t, "/root/pres-rules/global/index", ROUTE_UPSTREAM, "http://127.0.0.1:9009");
    expect_route(t, "/root/org.openmobilealliance.pres-rules/global/index", ROUTE_UPSTREAM,
                 "https://xdms.example:9002");
    const char *ups[8];
    CU_ASSERT_EQUAL(route_table_upstreams(t, ups, 8), 5);
    CU_ASSERT_EQUAL(route_table_upstreams(t, ups, 2), 5); /* total, even when out is small */

    /* unix:PATH (absolute or relative) is kept as given */
    CU_ASSERT_EQUAL(route_table_set_spec(t, "a unix:/run/xdm/presence.sock", err, sizeof err), 0);
    expect_route(t, "/root/a/global/index", ROUTE_UPSTREAM, "unix:/run/xdm/presence.sock");
    /* whitespace separates the instances of a list: a socket path cannot contain any */
    CU_ASSERT_EQUAL(route_table_set_spec(t, "b unix:var/x y.sock", err, sizeof err), -1);
    CU_ASSERT_EQUAL(route_table_set(t, "b", "unix:var/x y.sock", err, sizeof err), -1);
    char longest[5 + 107 + 2];
    memset(longest, 'p', sizeof longest - 1);
    memcpy(longest, "unix:/", 6);
    longest[5 + 107] = '\0';
    CU_ASSERT_EQUAL(route_table_set(t, "c", longest, err, sizeof err), 0);
    longest[5 + 107] = 'p';
    longest[5 + 108] = '\0';
    CU_ASSERT_EQUAL(route_table_set(t, "c", longest, err, sizeof err), -1);

    const char *bad[] = {
        "",
        "foo",
        "foo http://h:1 extra",
        "foo http://h:1 http://h:1/",
        "foo ftp://h:1",
        "foo http://",
        "foo http:///x",
        "foo http://h:1/path",
        "foo http://h:1?x",
        "foo http://user@h:1",
        "xcap-caps http://h:1",
        "a/b http://h:1",
        "a?b http://h:1",
        "foo unix:",
        "foo unix:/run/xdm/",
        "foo unix:/run/\x01x.sock",
        "foo UNIX:/run/x.sock",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        int rc = route_table_set_spec(t, bad[i], err, sizeof err);
        if (rc != -1)
            printf("\n  spec [%s] accepted\n", bad[i]);
        CU_ASSERT_EQUAL(rc, -1);
        CU_ASSERT_NOT_EQUAL(err[0], '\0');
    }
    route_table_free(t);

    /* root "/" puts AUIDs at the top */
    t = route_table_new("/", NULL, NULL, NULL, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    expect_route(t, "/resource-lists/global/index", ROUTE_UPSTREAM,
                 "unix:var/shared-list/xdms.sock");
    route_table_free(t);
    CU_ASSERT_PTR_NULL(route_table_new("xcap-root", NULL, NULL, NULL, err, sizeof err));
    CU_ASSERT_PTR_NULL(route_table_new("/x y", NULL, NULL, NULL, err, sizeof err));
    CU_ASSERT_PTR_NULL(route_table_new(NULL, "localhost:8181", NULL, NULL, err, sizeof err));
}

/* Upstream lists: parsing, sharing of instances between lists, names, bounds. */
static void test_route_lists(void)
{
    char err[256];
    struct route_table *t = route_table_new(NULL, "unix:/a.sock \t http://127.0.0.1:1/ ",
                                            "http://127.0.0.1:1", "unix:/a.sock", err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    struct route_match m;
    route_match(t, "/xcap-root/resource-lists/users/sip:a@b/index", &m);
    CU_ASSERT_EQUAL_FATAL(m.kind, ROUTE_UPSTREAM);
    CU_ASSERT_STRING_EQUAL(m.upstream, "unix:/a.sock http://127.0.0.1:1");
    CU_ASSERT_EQUAL_FATAL(m.up->n, 2);
    CU_ASSERT_STRING_EQUAL(m.up->url[0], "unix:/a.sock");
    CU_ASSERT_STRING_EQUAL(m.up->url[1], "http://127.0.0.1:1");
    /* one instance state per URL, whatever lists name it */
    CU_ASSERT_EQUAL(route_table_instances(t), 2);
    route_match(t, "/xcap-root/rls-services/global/index", &m);
    CU_ASSERT_EQUAL(m.up->n, 1);
    CU_ASSERT_EQUAL(m.up->id[0], 0);
    const char *ups[8];
    CU_ASSERT_EQUAL(route_table_upstreams(t, ups, 8), 3);
    CU_ASSERT_STRING_EQUAL(ups[0], "unix:/a.sock http://127.0.0.1:1");
    /* route = AUID with a list; the replaced list is no longer an upstream */
    CU_ASSERT_EQUAL(
        route_table_set_spec(t, "rls-services unix:/c.sock unix:/a.sock", err, sizeof err), 0);
    CU_ASSERT_EQUAL(route_table_upstreams(t, ups, 8), 3);
    CU_ASSERT_STRING_EQUAL(ups[2], "unix:/c.sock unix:/a.sock");
    CU_ASSERT_EQUAL(route_table_instances(t), 3);
    route_table_free(t);

    CU_ASSERT_EQUAL(route_list_check("unix:/x.sock", err, sizeof err), 0);
    CU_ASSERT_EQUAL(route_list_check("", err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "empty upstream list"));
    CU_ASSERT_EQUAL(route_list_check("unix:/x.sock ftp://h", err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "'ftp://h'"));
    CU_ASSERT_EQUAL(route_list_check("unix:/x.sock unix:/x.sock", err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "listed twice"));
    char many[ROUTE_INSTANCES_MAX * 16 + 32] = "";
    for (int i = 0; i <= ROUTE_INSTANCES_MAX; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "unix:/%d ", i);
    CU_ASSERT_EQUAL(route_list_check(many, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "too many upstream URLs"));
    CU_ASSERT_PTR_NULL(route_table_new(NULL, "unix:/a unix:/b bad", NULL, NULL, err, sizeof err));
}

/* route_pick: least requests in progress, ties round robin, down instances skipped, the first
 * untried down one as a last resort, up->n when all were tried. */
static void test_route_pick(void)
{
    char err[256];
    struct route_table *t =
        route_table_new(NULL, "unix:/a unix:/b unix:/c", NULL, NULL, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    struct route_match m;
    route_match(t, "/xcap-root/resource-lists/global/index", &m);
    const struct route_upstream *up = m.up;
    CU_ASSERT_EQUAL_FATAL(up->n, 3);
    unsigned seen[3] = {0};
    for (int i = 0; i < 30; i++)
        seen[route_pick(t, up, 0)]++;
    CU_ASSERT_TRUE(seen[0] == 10 && seen[1] == 10 && seen[2] == 10);
    /* a busy instance is avoided while others are idle */
    route_instance_begin(t, up->id[0]);
    route_instance_begin(t, up->id[1]);
    for (int i = 0; i < 5; i++)
        CU_ASSERT_EQUAL(route_pick(t, up, 0), 2);
    route_instance_end(t, up->id[0]);
    route_instance_end(t, up->id[1]);
    CU_ASSERT_EQUAL(route_instance_requests(t, up->id[0]), 1);
    /* down: skipped; the reason is kept */
    CU_ASSERT_TRUE(route_instance_mark(t, up->id[1], false, "refused"));
    CU_ASSERT_FALSE(route_instance_mark(t, up->id[1], false, "refused again"));
    char why[64];
    CU_ASSERT_FALSE(route_instance_up(t, up->id[1], why, sizeof why));
    CU_ASSERT_STRING_EQUAL(why, "refused again");
    for (int i = 0; i < 10; i++)
        CU_ASSERT_NOT_EQUAL(route_pick(t, up, 0), 1);
    CU_ASSERT_EQUAL(route_pick(t, up, 1u << 0 | 1u << 2), 1); /* last resort */
    CU_ASSERT_EQUAL(route_pick(t, up, 7), 3);
    CU_ASSERT_TRUE(route_instance_mark(t, up->id[0], false, NULL));
    CU_ASSERT_TRUE(route_instance_mark(t, up->id[2], false, NULL));
    CU_ASSERT_EQUAL(route_pick(t, up, 0), 2); /* all down: the last one to go down first */
    CU_ASSERT_EQUAL(route_pick(t, up, 1u << 2), 0);
    CU_ASSERT_FALSE(route_instance_mark(t, up->id[1], true, NULL));
    CU_ASSERT_EQUAL(route_pick(t, up, 0), 1);
    route_table_free(t);
}

/* ---- xcap-caps union ------------------------------------------------------------------------ */

static void set_doc(struct buf *b, const char *text)
{
    buf_init(b, 1 << 16);
    buf_puts(b, text);
}

static void test_caps_merge(void)
{
    struct buf docs[5];
    set_doc(&docs[0], "<?xml version=\"1.0\"?><xcap-caps xmlns=\"" XCAP_CAPS_NS "\"><auids>"
                      "<auid>xcap-caps</auid><auid> resource-lists </auid></auids><namespaces>"
                      "<namespace>" XCAP_CAPS_NS "</namespace><namespace>urn:a</namespace>"
                      "</namespaces></xcap-caps>");
    set_doc(&docs[1], "garbage <");
    set_doc(&docs[2], "<xcap-caps xmlns=\"urn:other\"><auids><auid>evil</auid></auids>"
                      "</xcap-caps>");
    set_doc(&docs[3],
            "<c:xcap-caps xmlns:c=\"" XCAP_CAPS_NS "\"><c:auids><c:auid>pres-rules</c:auid>"
            "<c:auid>resource-lists</c:auid><c:auid>a&amp;b</c:auid><auid>x</auid>"
            "</c:auids><c:extensions><c:extension>ext1</c:extension></c:extensions>"
            "<c:namespaces><c:namespace>urn:b</c:namespace><c:namespace>urn:a"
            "</c:namespace></c:namespaces></c:xcap-caps>");
    set_doc(&docs[4], "<!DOCTYPE x [<!ENTITY e \"boom\">]><xcap-caps xmlns=\"" XCAP_CAPS_NS "\">"
                      "<auids><auid>&e;</auid></auids></xcap-caps>");
    struct buf out;
    buf_init(&out, 1 << 16);
    size_t merged = 99;
    CU_ASSERT_EQUAL(caps_merge(docs, 5, &out, &merged), 0);
    CU_ASSERT_EQUAL(merged, 2);
    CU_ASSERT_STRING_EQUAL(
        out.data,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xcap-caps xmlns=\"" XCAP_CAPS_NS "\"><auids>"
        "<auid>xcap-caps</auid><auid>resource-lists</auid><auid>pres-rules</auid>"
        "<auid>a&amp;b</auid></auids><extensions><extension>ext1</extension></extensions>"
        "<namespaces><namespace>" XCAP_CAPS_NS "</namespace><namespace>urn:a</namespace>"
        "<namespace>urn:b</namespace></namespaces></xcap-caps>\n");
    /* nothing usable: still a valid document listing xcap-caps itself */
    buf_reset(&out);
    CU_ASSERT_EQUAL(caps_merge(docs + 1, 1, &out, &merged), 0);
    CU_ASSERT_EQUAL(merged, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out.data, "<auids><auid>xcap-caps</auid></auids>"));
    /* <extensions> is always there, empty without extensions (RFC 4825 §12.2) */
    CU_ASSERT_PTR_NOT_NULL(strstr(out.data, "</auids><extensions></extensions><namespaces>"));
    /* the result is well-formed */
    xmlDocPtr doc = NULL;
    struct xcap_err err = {0};
    CU_ASSERT_EQUAL(xdoc_parse(out.data, out.len, &doc, &err), XCAP_OK);
    xmlFreeDoc(doc);
    xcap_err_release(&err);

    char e1[CAPS_ETAG_MAX], e2[CAPS_ETAG_MAX], e3[CAPS_ETAG_MAX];
    CU_ASSERT_EQUAL(caps_etag("abc", 3, e1), 0);
    CU_ASSERT_EQUAL(caps_etag("abc", 3, e2), 0);
    CU_ASSERT_EQUAL(caps_etag("abd", 3, e3), 0);
    CU_ASSERT_STRING_EQUAL(e1, e2);
    CU_ASSERT_STRING_NOT_EQUAL(e1, e3);
    CU_ASSERT_EQUAL(e1[0], '"');
    CU_ASSERT_EQUAL(e1[strlen(e1) - 1], '"');
    for (int i = 0; i < 5; i++)
        buf_release(&docs[i]);
    buf_release(&out);
}

/* ---- An in-process upstream (XDMS stand-in) ------------------------------------------------- */

struct echo_ctx {
    struct buf *out;
};

static int echo_header(void *cls, const char *name, const char *value)
{
    struct echo_ctx *e = cls;
    buf_printf(e->out, "H %s: %s\n", name, value);
    return 0;
}

static const char upstream_caps[] =
    "<xcap-caps xmlns=\"" XCAP_CAPS_NS "\"><auids><auid>xcap-caps</auid><auid>resource-lists</auid>"
    "</auids><namespaces><namespace>urn:ietf:params:xml:ns:resource-lists</namespace>"
    "</namespaces></xcap-caps>";

/* Echoes the request (line, headers, body, peer port) and answers with fixed headers. The path
 * decides the behaviour: .../slow sleeps, .../big sends 4 KiB, ?status=N sets the status. */
static void upstream_handler(void *cls, const struct http_request *req, struct http_response *resp)
{
    (void)cls;
    const char *path = http_request_path(req);
    if (strcmp(path, "/xcap-root/xcap-caps/global/index") == 0) {
        resp->status = 200;
        http_response_header(resp, "Content-Type", XCAP_CAPS_MIME);
        http_response_body(resp, upstream_caps, strlen(upstream_caps));
        return;
    }
    if (strstr(path, "/slow")) {
        struct timespec ts = {2, 500 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    struct buf b;
    buf_init(&b, 1 << 20);
    socklen_t len;
    const struct sockaddr *sa = http_request_peer(req, &len);
    unsigned port =
        sa && sa->sa_family == AF_INET ? ntohs(((const struct sockaddr_in *)sa)->sin_port) : 0;
    buf_printf(&b, "%s %s\nP %u\n", http_request_method(req), http_request_target(req), port);
    struct echo_ctx e = {&b};
    http_request_each_header(req, echo_header, &e);
    size_t blen;
    const char *body = http_request_body(req, &blen);
    buf_puts(&b, "B ");
    buf_append(&b, body, blen);
    buf_puts(&b, "\n");
    if (strstr(path, "/big"))
        for (int i = 0; i < 4096; i++)
            buf_puts(&b, "x");
    const char *q = http_request_query(req);
    resp->status = q && strncmp(q, "status=", 7) == 0 ? atoi(q + 7) : 200;
    http_response_header(resp, "Content-Type", "text/x-echo");
    http_response_header(resp, "ETag", "\"up-1\"");
    http_response_header(resp, "Allow", "GET, PUT, DELETE");
    http_response_header(resp, "X-Not-Relayed", "1");
    http_response_body(resp, b.data, b.len);
    buf_release(&b);
}

static struct httpd *upstream;
static char upstream_url[64];

static int forward_suite_init(void)
{
    struct httpd_config cfg = {.host = "127.0.0.1", .port = 0, .threads = 4, .max_body = 1 << 20};
    if (httpd_start(&cfg, upstream_handler, NULL, &upstream) < 0)
        return -1;
    snprintf(upstream_url, sizeof upstream_url, "http://127.0.0.1:%u", httpd_port(upstream));
    return 0;
}

static int forward_suite_clean(void)
{
    httpd_stop(upstream);
    upstream = NULL;
    return 0;
}

/* A loopback port with nothing listening (bound then released). */
static unsigned dead_port(void)
{
    struct httpd_config cfg = {.host = "127.0.0.1", .port = 0, .threads = 1, .max_body = 1};
    struct httpd *d;
    if (httpd_start(&cfg, upstream_handler, NULL, &d) < 0)
        return 1;
    unsigned port = httpd_port(d);
    httpd_stop(d);
    return port;
}

static void test_forward_headers_list(void)
{
    CU_ASSERT_TRUE(forward_header_relayed("Content-Type"));
    CU_ASSERT_TRUE(forward_header_relayed("if-match"));
    CU_ASSERT_TRUE(forward_header_relayed("IF-NONE-MATCH"));
    CU_ASSERT_TRUE(forward_header_relayed("Accept"));
    CU_ASSERT_FALSE(forward_header_relayed("Authorization"));
    CU_ASSERT_FALSE(forward_header_relayed("Proxy-Authorization"));
    CU_ASSERT_FALSE(forward_header_relayed("X-3GPP-Asserted-Identity"));
    CU_ASSERT_FALSE(forward_header_relayed("X-XCAP-Asserted-Identity"));
    CU_ASSERT_FALSE(forward_header_relayed("P-Asserted-Identity"));
    CU_ASSERT_FALSE(forward_header_relayed("Expect"));
    CU_ASSERT_FALSE(forward_header_relayed("Host"));
}

static void test_forward_exact(void)
{
    struct forward *fw = forward_new(NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(fw);
    const char *target = "/xcap-root/resource-lists/users/sip:alice@example.com/index/~~/"
                         "resource-lists/list%5B@name=%22a%2fb%22%5D/../x/./y%7e?q=%2F..&r=[1]";
    struct forward_header hs[] = {
        {"Content-Type", "application/xcap-el+xml"},
        {"If-Match", "\"abc\""},
        {"X-3GPP-Asserted-Identity", "\"sip:alice@example.com\""},
    };
    struct forward_request rq = {.method = "PUT",
                                 .base_url = upstream_url,
                                 .target = target,
                                 .headers = hs,
                                 .n_headers = 3,
                                 .body = "<list name=\"a/b\"/>",
                                 .body_len = 18};
    struct forward_response r;
    forward_response_init(&r);
    CU_ASSERT_EQUAL_FATAL(forward_do(fw, &rq, &r), XCAP_OK);
    CU_ASSERT_EQUAL(r.status, 200);
    char line[1024];
    snprintf(line, sizeof line, "PUT %s\n", target);
    CU_ASSERT_EQUAL(strncmp(r.body.data, line, strlen(line)), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body.data, "H Content-Type: application/xcap-el+xml\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body.data, "H If-Match: \"abc\"\n"));
    CU_ASSERT_PTR_NOT_NULL(
        strstr(r.body.data, "H X-3GPP-Asserted-Identity: \"sip:alice@example.com\"\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body.data, "B <list name=\"a/b\"/>\n"));
    CU_ASSERT_PTR_NULL(strstr(r.body.data, "Expect"));
    CU_ASSERT_PTR_NULL(strstr(r.body.data, "H Accept:"));
    CU_ASSERT_STRING_EQUAL(forward_response_header(&r, "etag"), "\"up-1\"");
    CU_ASSERT_STRING_EQUAL(forward_response_header(&r, "Content-Type"), "text/x-echo");
    CU_ASSERT_STRING_EQUAL(forward_response_header(&r, "Allow"), "GET, PUT, DELETE");
    CU_ASSERT_PTR_NULL(forward_response_header(&r, "X-Not-Relayed"));
    char *peer1 = strstr(r.body.data, "\nP ");
    unsigned port1 = peer1 ? (unsigned)atoi(peer1 + 3) : 0;

    /* a second request on the same thread reuses the connection */
    rq.method = "DELETE";
    rq.body = NULL;
    rq.body_len = 0;
    rq.n_headers = 0;
    rq.target = "/xcap-root/x?status=409";
    CU_ASSERT_EQUAL_FATAL(forward_do(fw, &rq, &r), XCAP_OK);
    CU_ASSERT_EQUAL(r.status, 409);
    CU_ASSERT_EQUAL(strncmp(r.body.data, "DELETE /xcap-root/x?status=409\n", 31), 0);
    CU_ASSERT_PTR_NULL(strstr(r.body.data, "H Content-Type"));
    char *peer2 = strstr(r.body.data, "\nP ");
    CU_ASSERT_TRUE(port1 != 0 && peer2 && (unsigned)atoi(peer2 + 3) == port1);

    /* HEAD is fetched as GET (so the client's HEAD gets GET's Content-Length; the HTTP layer
     * drops the body), headers relayed */
    rq.method = "HEAD";
    rq.target = "/xcap-root/y";
    CU_ASSERT_EQUAL_FATAL(forward_do(fw, &rq, &r), XCAP_OK);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_EQUAL(strncmp(r.body.data ? r.body.data : "", "GET /xcap-root/y\n", 17), 0);
    CU_ASSERT_STRING_EQUAL(forward_response_header(&r, "ETag"), "\"up-1\"");

    /* PUT without Content-Type: curl must not invent one */
    rq.method = "PUT";
    rq.body = "x";
    rq.body_len = 1;
    CU_ASSERT_EQUAL_FATAL(forward_do(fw, &rq, &r), XCAP_OK);
    CU_ASSERT_PTR_NULL(strstr(r.body.data, "H Content-Type"));
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body.data, "B x\n"));

    /* targets that cannot go on the wire unchanged */
    rq.target = "/a#b";
    CU_ASSERT_EQUAL(forward_do(fw, &rq, &r), XCAP_BAD_REQUEST);
    rq.target = "/a b";
    CU_ASSERT_EQUAL(forward_do(fw, &rq, &r), XCAP_BAD_REQUEST);
    rq.target = "a";
    CU_ASSERT_EQUAL(forward_do(fw, &rq, &r), XCAP_BAD_REQUEST);
    CU_ASSERT_PTR_NOT_NULL(r.error);
    forward_response_release(&r);
    forward_free(fw);
}

static void test_forward_failures(void)
{
    struct forward_options opts = {.timeout_ms = 1000, .max_response = 1024};
    struct forward *fw = forward_new(&opts);
    CU_ASSERT_PTR_NOT_NULL_FATAL(fw);
    struct forward_request rq = {.method = "GET", .base_url = upstream_url, .target = "/ok"};
    struct forward_response r;
    forward_response_init(&r);
    CU_ASSERT_EQUAL(forward_do(fw, &rq, &r), XCAP_OK);

    rq.target = "/big";
    CU_ASSERT_EQUAL(forward_do(fw, &rq, &r), XCAP_UPSTREAM);
    CU_ASSERT_PTR_NOT_NULL(r.error);

    rq.target = "/slow";
    CU_ASSERT_EQUAL(forward_do(fw, &rq, &r), XCAP_UPSTREAM_TIMEOUT);
    CU_ASSERT_TRUE(r.error && strstr(r.error, "in time") != NULL);

    char dead[64];
    snprintf(dead, sizeof dead, "http://127.0.0.1:%u", dead_port());
    rq.base_url = dead;
    rq.target = "/x";
    CU_ASSERT_EQUAL(forward_do(fw, &rq, &r), XCAP_UPSTREAM);
    CU_ASSERT_TRUE(r.error && strstr(r.error, dead) != NULL);

    /* the handle recovers after failures */
    rq.base_url = upstream_url;
    CU_ASSERT_EQUAL(forward_do(fw, &rq, &r), XCAP_OK);
    CU_ASSERT_EQUAL(r.status, 200);
    forward_response_release(&r);
    forward_free(fw);
}

/* The same forwarding over a UNIX-domain socket (an XDMS's socket listener): the request arrives
 * byte for byte on the local listener, the answer comes back, and a socket nobody listens on is
 * 502 "refused the connection" as for TCP. */
static void test_forward_unix(void)
{
    char dir[] = "/tmp/xdm-test-fwd-XXXXXX";
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    char path[128], url[160];
    snprintf(path, sizeof path, "%s/xdms.sock", dir);
    snprintf(url, sizeof url, "unix:%s", path);
    struct httpd_config cfg = {
        .host = "127.0.0.1", .port = 0, .threads = 2, .max_body = 1 << 20, .unix_path = path};
    struct httpd *d;
    CU_ASSERT_EQUAL_FATAL(httpd_start(&cfg, upstream_handler, NULL, &d), 0);
    struct forward *fw = forward_new(NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(fw);
    struct forward_header hs[] = {{"X-3GPP-Asserted-Identity", "\"sip:alice@example.com\""}};
    struct forward_request rq = {.method = "PUT",
                                 .base_url = url,
                                 .target = "/xcap-root/a/~~/b%5B@c=%22d%22%5D?x",
                                 .headers = hs,
                                 .n_headers = 1,
                                 .body = "<b/>",
                                 .body_len = 4};
    struct forward_response r;
    forward_response_init(&r);
    for (int i = 0; i < 2; i++) { /* the second one on the kept connection */
        CU_ASSERT_EQUAL(forward_do(fw, &rq, &r), XCAP_OK);
        CU_ASSERT_EQUAL(r.status, 200);
        CU_ASSERT_PTR_NOT_NULL(strstr(r.body.data, "PUT /xcap-root/a/~~/b%5B@c=%22d%22%5D?x\n"));
        CU_ASSERT_PTR_NOT_NULL(strstr(r.body.data, "H X-3GPP-Asserted-Identity: "));
        CU_ASSERT_PTR_NOT_NULL(strstr(r.body.data, "B <b/>\n"));
    }
    /* the xcap-caps union reaches a unix: upstream like any other */
    struct forward_request many[2] = {
        {.method = "GET", .base_url = url, .target = "/xcap-root/xcap-caps/global/index"},
        {.method = "GET", .base_url = upstream_url, .target = "/xcap-root/xcap-caps/global/index"},
    };
    struct forward_response mr[2];
    enum xcap_status mst[2];
    forward_response_init(&mr[0]);
    forward_response_init(&mr[1]);
    forward_many(fw, many, mr, mst, 2);
    CU_ASSERT_TRUE(mst[0] == XCAP_OK && mr[0].status == 200);
    CU_ASSERT_TRUE(mst[1] == XCAP_OK && mr[1].status == 200);
    forward_response_release(&mr[0]);
    forward_response_release(&mr[1]);
    httpd_stop(d);
    CU_ASSERT_NOT_EQUAL(access(path, F_OK), 0); /* removed at stop */
    CU_ASSERT_EQUAL(forward_do(fw, &rq, &r), XCAP_UPSTREAM);
    CU_ASSERT_TRUE(r.error && strstr(r.error, url) && strstr(r.error, "refused the connection"));
    forward_response_release(&r);
    forward_free(fw);
    rmdir(dir);
}

/* Several threads forward at once, each with its own handle. */
static void *forward_thread(void *cls)
{
    struct forward *fw = cls;
    long ok = 0;
    for (int i = 0; i < 20; i++) {
        struct forward_request rq = {.method = "GET", .base_url = upstream_url, .target = "/t"};
        struct forward_response r;
        forward_response_init(&r);
        if (forward_do(fw, &rq, &r) == XCAP_OK && r.status == 200)
            ok++;
        forward_response_release(&r);
    }
    return (void *)ok;
}

static void test_forward_threads(void)
{
    struct forward *fw = forward_new(NULL);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, forward_thread, fw);
    long total = 0;
    for (int i = 0; i < 4; i++) {
        void *rv;
        pthread_join(th[i], &rv);
        total += (long)rv;
    }
    CU_ASSERT_EQUAL(total, 80);
    forward_free(fw);
}

/* upstream_forward over a list of a dead and a live instance: an unsent request of any method
 * goes on to the live one and the dead one is marked down; a PUT that was sent and broke is not
 * replayed, a GET is; a list with every instance dead is 503 (XCAP_UPSTREAM_DOWN), a one-URL
 * list 502 as before; the health check brings an instance back. */
static void test_upstream_forward(void)
{
    struct forward_options opts = {.timeout_ms = 1000};
    struct forward *fw = forward_new(&opts);
    CU_ASSERT_PTR_NOT_NULL_FATAL(fw);
    char err[256], list[160], dead[64], dead2[64];
    snprintf(dead, sizeof dead, "http://127.0.0.1:%u", dead_port());
    snprintf(dead2, sizeof dead2, "http://127.0.0.1:%u", dead_port());
    snprintf(list, sizeof list, "%s %s", dead, upstream_url);
    struct route_table *t = route_table_new(NULL, list, dead, NULL, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    char spec[200];
    snprintf(spec, sizeof spec, "x %s %s", dead, dead2);
    CU_ASSERT_EQUAL_FATAL(route_table_set_spec(t, spec, err, sizeof err), 0);
    struct route_match m;
    route_match(t, "/xcap-root/resource-lists/global/index", &m);
    const struct route_upstream *up = m.up;
    struct forward_request rq = {.method = "PUT", .target = "/a", .body = "b", .body_len = 1};
    struct forward_response r;
    forward_response_init(&r);
    unsigned tries = 0;
    for (int i = 0; i < 4; i++) {
        CU_ASSERT_EQUAL(upstream_forward(fw, t, up, &rq, &r, &tries), XCAP_OK);
        CU_ASSERT_EQUAL(r.status, 200);
        CU_ASSERT_TRUE(tries >= 1 && tries <= 2);
    }
    CU_ASSERT_FALSE(route_instance_up(t, up->id[0], NULL, 0));
    CU_ASSERT_TRUE(route_instance_up(t, up->id[1], NULL, 0));
    /* the dead one is skipped now: one try each */
    CU_ASSERT_EQUAL(upstream_forward(fw, t, up, &rq, &r, &tries), XCAP_OK);
    CU_ASSERT_EQUAL(tries, 1);

    /* sent, then no answer in time: a PUT is not replayed, a GET is (on the other instance,
     * which is marked down, as a last resort) */
    rq.target = "/slow";
    CU_ASSERT_EQUAL(upstream_forward(fw, t, up, &rq, &r, &tries), XCAP_UPSTREAM_TIMEOUT);
    CU_ASSERT_EQUAL(tries, 1);
    CU_ASSERT_FALSE(r.unsent);
    rq.method = "GET";
    rq.body = NULL;
    rq.body_len = 0;
    CU_ASSERT_EQUAL(upstream_forward(fw, t, up, &rq, &r, &tries), XCAP_UPSTREAM_TIMEOUT);
    CU_ASSERT_EQUAL(tries, 2);
    CU_ASSERT_TRUE(route_instance_up(t, up->id[1], NULL, 0)); /* slow is not down */

    /* every instance dead: 503 with the list named; one URL: 502 as a single upstream */
    rq.target = "/a";
    route_match(t, "/xcap-root/x/global/index", &m);
    CU_ASSERT_EQUAL(upstream_forward(fw, t, m.up, &rq, &r, &tries), XCAP_UPSTREAM_DOWN);
    CU_ASSERT_EQUAL(tries, 2);
    CU_ASSERT_TRUE(r.error && strstr(r.error, "no instance of upstream") && strstr(r.error, dead2));
    route_match(t, "/xcap-root/pres-rules/global/index", &m);
    CU_ASSERT_EQUAL(upstream_forward(fw, t, m.up, &rq, &r, &tries), XCAP_UPSTREAM);
    CU_ASSERT_TRUE(r.error && strstr(r.error, "refused the connection"));

    /* health: the live one stays up, the dead ones down; readiness names the first dead list */
    CU_ASSERT_TRUE(route_instance_mark(t, up->id[1], false, "test"));
    upstream_check_once(fw, t, 500);
    CU_ASSERT_TRUE(route_instance_up(t, up->id[1], NULL, 0));
    CU_ASSERT_FALSE(route_instance_up(t, up->id[0], NULL, 0));
    struct upstream_check *check = upstream_check_start(fw, t, 200, 500);
    CU_ASSERT_PTR_NOT_NULL_FATAL(check);
    char reason[METRICS_REASON_MAX];
    CU_ASSERT_FALSE(upstream_ready(check, reason, sizeof reason));
    CU_ASSERT_PTR_NOT_NULL(strstr(reason, "refused the connection"));
    struct buf mb;
    buf_init(&mb, 1 << 16);
    CU_ASSERT_EQUAL(upstream_metrics(check, &mb), 0);
    char line[160];
    snprintf(line, sizeof line, "xdm_upstream_up{upstream=\"%s\"} 1\n", upstream_url);
    CU_ASSERT_PTR_NOT_NULL(strstr(mb.data, line));
    snprintf(line, sizeof line, "xdm_upstream_up{upstream=\"%s\"} 0\n", dead);
    CU_ASSERT_PTR_NOT_NULL(strstr(mb.data, line));
    CU_ASSERT_PTR_NOT_NULL(strstr(mb.data, "# TYPE xdm_upstream_requests_total counter\n"));
    buf_release(&mb);
    upstream_check_stop(check);
    forward_response_release(&r);
    route_table_free(t);
    forward_free(fw);
}

static void test_caps_compose(void)
{
    struct forward *fw = forward_new(NULL);
    char err[256];
    char dead[64];
    snprintf(dead, sizeof dead, "http://127.0.0.1:%u", dead_port());
    /* two AUIDs on the live upstream, one on a dead one: skipped */
    struct route_table *t =
        route_table_new(NULL, upstream_url, dead, upstream_url, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    struct buf out;
    buf_init(&out, 1 << 16);
    struct forward_header hdr = {"X-3GPP-Asserted-Identity", "\"sip:alice@example.com\""};
    size_t failed = 0;
    CU_ASSERT_EQUAL(caps_compose(fw, t, &hdr, 1, &out, &failed), 0);
    CU_ASSERT_EQUAL(failed, 1);
    /* the proxy's own xcap-directory follows the XDMS AUIDs */
    CU_ASSERT_PTR_NOT_NULL(strstr(out.data, "<auids><auid>xcap-caps</auid><auid>resource-lists"
                                            "</auid><auid>org.openmobilealliance.xcap-directory"
                                            "</auid></auids>"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out.data, "<namespace>urn:oma:xml:xdm:xcap-directory"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out.data, "urn:ietf:params:xml:ns:resource-lists"));
    buf_release(&out);
    route_table_free(t);
    forward_free(fw);
}

/* ---- The whole proxy ------------------------------------------------------------------------ */

struct proxy_env {
    char dir[64];
    struct store *store;
    struct digest *digest;
    struct route_table *routes;
    struct forward *fw;
    struct proxy *proxy;
    struct httpd *httpd;
    char base[64];
};

static struct proxy_env env;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int proxy_suite_init(void)
{
    if (forward_suite_init() < 0)
        return -1;
    snprintf(env.dir, sizeof env.dir, "/tmp/xdm-test-route-XXXXXX");
    if (!mkdtemp(env.dir) || users_open(env.dir, &env.store) != USERS_OK)
        return -1;
    if (users_add(env.store, "sip:alice@example.com", NULL, NULL, "pw") != USERS_OK ||
        users_add(env.store, "sip:bob@other.org", NULL, NULL, "pb") != USERS_OK)
        return -1;
    char err[256];
    env.digest = digest_new(NULL);
    env.routes = route_table_new(NULL, upstream_url, upstream_url, upstream_url, err, sizeof err);
    env.fw = forward_new(NULL);
    struct proxy_config pc = {.default_realm = "example.com",
                              .store = env.store,
                              .digest = env.digest,
                              .routes = env.routes,
                              .forward = env.fw};
    env.proxy = proxy_new(&pc);
    if (!env.digest || !env.routes || !env.fw || !env.proxy)
        return -1;
    struct httpd_config cfg = {.host = "127.0.0.1", .port = 0, .threads = 2, .max_body = 1 << 20};
    if (httpd_start(&cfg, proxy_handle, env.proxy, &env.httpd) < 0)
        return -1;
    snprintf(env.base, sizeof env.base, "http://127.0.0.1:%u", httpd_port(env.httpd));
    return 0;
}

static int proxy_suite_clean(void)
{
    httpd_stop(env.httpd);
    proxy_free(env.proxy);
    forward_free(env.fw);
    route_table_free(env.routes);
    digest_free(env.digest);
    store_close(env.store);
    nftw(env.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    memset(&env, 0, sizeof env);
    forward_suite_clean();
    return 0;
}

struct client_result {
    long status;
    struct buf body;
    struct buf headers;
};

static size_t client_write(char *p, size_t s, size_t n, void *cls)
{
    return buf_append(cls, p, s * n) == 0 ? s * n : 0;
}

/* One request with libcurl; userpw NULL = no credentials. extra: one raw request header. */
static void client(CURL *h, const char *method, const char *path, const char *userpw,
                   const char *extra, const char *body, struct client_result *out)
{
    char url[512];
    snprintf(url, sizeof url, "%s%s", env.base, path);
    buf_reset(&out->body);
    buf_reset(&out->headers);
    out->status = 0;
    struct curl_slist *hl = NULL;
    if (extra)
        hl = curl_slist_append(hl, extra);
    hl = curl_slist_append(hl, "X-XCAP-Asserted-Identity: \"sip:bob@other.org\"");
    hl = curl_slist_append(hl, "X-3GPP-Asserted-Identity: \"sip:bob@other.org\"");
    hl = curl_slist_append(hl, "P-Asserted-Identity: <sip:bob@other.org>");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROXY, ""); /* never an http_proxy of the environment */
    curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
    if (!body)
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, client_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &out->body);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, client_write);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &out->headers);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    if (userpw) {
        curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_DIGEST);
        curl_easy_setopt(h, CURLOPT_USERPWD, userpw);
    }
    CU_ASSERT_EQUAL(curl_easy_perform(h), CURLE_OK);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status);
    curl_slist_free_all(hl);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
}

#define ALICE_INDEX "/xcap-root/resource-lists/users/sip:alice@example.com/index"

static void test_proxy_challenge(void)
{
    CURL *h = curl_easy_init();
    struct client_result r;
    buf_init(&r.body, 1 << 20);
    buf_init(&r.headers, 1 << 20);
    client(h, "GET", ALICE_INDEX, NULL, NULL, NULL, &r);
    CU_ASSERT_EQUAL(r.status, 401);
    const char *sha = strstr(r.headers.data, "WWW-Authenticate: Digest realm=\"example.com\", "
                                             "qop=\"auth\", algorithm=SHA-256, nonce=\"");
    const char *md5 = strstr(r.headers.data, "WWW-Authenticate: Digest realm=\"example.com\", "
                                             "qop=\"auth\", algorithm=MD5, nonce=\"");
    CU_ASSERT_TRUE(sha && md5 && md5 < sha); /* default order: MD5 first, then SHA-256 */
    CU_ASSERT_PTR_NULL(strstr(r.headers.data, "stale"));
    /* the realm follows the XUI's domain */
    client(h, "GET", "/xcap-root/resource-lists/users/sip:bob@Other.Org/index", NULL, NULL, NULL,
           &r);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.headers.data, "realm=\"other.org\""));
    /* garbage credentials: 400 */
    client(h, "GET", ALICE_INDEX, NULL, "Authorization: Digest username=\"alice", NULL, &r);
    CU_ASSERT_EQUAL(r.status, 400);
    client(h, "GET", ALICE_INDEX, NULL, "Authorization: Basic YWxpY2U6cHc=", NULL, &r);
    CU_ASSERT_EQUAL(r.status, 401);
    /* wrong password */
    client(h, "GET", ALICE_INDEX, "alice:nope", NULL, NULL, &r);
    CU_ASSERT_EQUAL(r.status, 401);
    /* bob's credentials are for realm other.org, not example.com */
    client(h, "GET", ALICE_INDEX, "bob:pb", NULL, NULL, &r);
    CU_ASSERT_EQUAL(r.status, 401);
    buf_release(&r.body);
    buf_release(&r.headers);
    curl_easy_cleanup(h);
}

static void test_proxy_forward(void)
{
    CURL *h = curl_easy_init();
    struct client_result r;
    buf_init(&r.body, 1 << 20);
    buf_init(&r.headers, 1 << 20);
    client(h, "PUT", ALICE_INDEX "/~~/resource-lists/list%5B@name=%22x%22%5D", "alice:pw",
           "Content-Type: application/xcap-el+xml", "<list name=\"x\"/>", &r);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_EQUAL(
        strncmp(r.body.data, "PUT " ALICE_INDEX "/~~/resource-lists/list%5B@name=%22x%22%5D\n", 70),
        0);
    CU_ASSERT_PTR_NOT_NULL(
        strstr(r.body.data, "H X-3GPP-Asserted-Identity: \"sip:alice@example.com\"\n"));
    CU_ASSERT_PTR_NULL(strstr(r.body.data, "sip:bob"));
    CU_ASSERT_PTR_NULL(strstr(r.body.data, "Authorization"));
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body.data, "H Content-Type: application/xcap-el+xml\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body.data, "B <list name=\"x\"/>\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(r.headers.data, "ETag: \"up-1\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(r.headers.data, "Content-Type: text/x-echo"));
    CU_ASSERT_PTR_NOT_NULL(strstr(r.headers.data, "Allow: GET, PUT, DELETE"));
    CU_ASSERT_PTR_NULL(strstr(r.headers.data, "X-Not-Relayed"));
    CU_ASSERT_PTR_NOT_NULL(strstr(r.headers.data, "Authentication-Info: qop=auth, rspauth=\""));

    /* the same handle again (one connection); the upstream status is relayed unchanged */
    client(h, "GET", ALICE_INDEX "?status=403", "alice:pw", NULL, NULL, &r);
    CU_ASSERT_EQUAL(r.status, 403);
    long conns = -1;
    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &conns);
    CU_ASSERT_EQUAL(conns, 0);

    /* after authentication: unknown AUID or outside the root -> 404 */
    client(h, "GET", "/xcap-root/nope/global/index", "alice:pw", NULL, NULL, &r);
    CU_ASSERT_EQUAL(r.status, 404);
    client(h, "GET", "/elsewhere", "alice:pw", NULL, NULL, &r);
    CU_ASSERT_EQUAL(r.status, 404);

    /* xcap-caps, served by the proxy */
    client(h, "GET", "/xcap-root/xcap-caps/global/index", "alice:pw", NULL, NULL, &r);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.headers.data, "Content-Type: " XCAP_CAPS_MIME));
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body.data, "<auid>resource-lists</auid>"));
    const char *et = strstr(r.headers.data, "ETag: ");
    CU_ASSERT_PTR_NOT_NULL_FATAL(et);
    char inm[128];
    snprintf(inm, sizeof inm, "If-None-Match: %.*s", (int)strcspn(et + 6, "\r\n"), et + 6);
    client(h, "GET", "/xcap-root/xcap-caps/global/index", "alice:pw", inm, NULL, &r);
    CU_ASSERT_EQUAL(r.status, 304);
    client(h, "DELETE", "/xcap-root/xcap-caps/global/index", "alice:pw", NULL, NULL, &r);
    CU_ASSERT_EQUAL(r.status, 405);
    client(h, "GET", "/xcap-root/xcap-caps/users/sip:alice@example.com/index", "alice:pw", NULL,
           NULL, &r);
    CU_ASSERT_EQUAL(r.status, 404);

    /* the global tree accepts any known user of the default realm */
    client(h, "GET", "/xcap-root/rls-services/global/index", "alice:pw", NULL, NULL, &r);
    CU_ASSERT_EQUAL(r.status, 200);
    /* bob in his own realm */
    CURL *h2 = curl_easy_init();
    client(h2, "GET", "/xcap-root/pres-rules/users/sip:bob@other.org/index", "bob:pb", NULL, NULL,
           &r);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_PTR_NOT_NULL(
        strstr(r.body.data, "H X-3GPP-Asserted-Identity: \"sip:bob@other.org\""));
    curl_easy_cleanup(h2);
    buf_release(&r.body);
    buf_release(&r.headers);
    curl_easy_cleanup(h);
}

/* ---- The proxy's GAA, identities and gzip --------------------------------------------------- */

/* A second proxy in front of the echo upstream: GAA for xcap.example.com, both asserted-identity
 * headers, gzip on, a 64 KiB body bound. */
static struct proxy_env fenv;

#define GAA_BTID "EBESExQVFhcYGRobHB0eHw==@bsf.example.com"

static void gaa_inputs(unsigned char ks[GBA_KS_LEN], unsigned char rand[GBA_RAND_LEN])
{
    for (int i = 0; i < GBA_KS_LEN; i++)
        ks[i] = (unsigned char)i;
    for (int i = 0; i < GBA_RAND_LEN; i++)
        rand[i] = (unsigned char)(0x10 + i);
}

static int features_suite_init(void)
{
    if (forward_suite_init() < 0)
        return -1;
    snprintf(fenv.dir, sizeof fenv.dir, "/tmp/xdm-test-route-XXXXXX");
    if (!mkdtemp(fenv.dir) || users_open(fenv.dir, &fenv.store) != USERS_OK)
        return -1;
    const char *ids[] = {"tel:+15559999"};
    if (users_add_ids(fenv.store, "sip:carol@example.com", NULL, NULL, "cpw", ids, 1) != USERS_OK)
        return -1;
    const char *impus[] = {"sip:gaa@example.com", "tel:+15550001"};
    struct gba_record r = {.btid = GAA_BTID,
                           .impi = "gaa@ims.example.com",
                           .expires = (int64_t)time(NULL) + 600,
                           .impus = impus,
                           .n_impus = 2};
    gaa_inputs(r.ks, r.rand);
    if (gba_add(fenv.store, &r) != GBA_OK)
        return -1;
    char err[256];
    fenv.digest = digest_new(NULL);
    fenv.routes = route_table_new(NULL, upstream_url, upstream_url, upstream_url, err, sizeof err);
    fenv.fw = forward_new(NULL);
    struct gba_source src = {gba_store_fetch, fenv.store};
    const char *fqdns[] = {"XCAP.example.com"};
    struct proxy_config pc = {.default_realm = "example.com",
                              .store = fenv.store,
                              .digest = fenv.digest,
                              .routes = fenv.routes,
                              .forward = fenv.fw,
                              .gba = &src,
                              .gaa_fqdns = fqdns,
                              .n_gaa_fqdns = 1,
                              .asserted = PROXY_ASSERT_BOTH,
                              .gzip = true,
                              .max_body = 64 << 10};
    fenv.proxy = proxy_new(&pc);
    if (!fenv.digest || !fenv.routes || !fenv.fw || !fenv.proxy)
        return -1;
    struct httpd_config cfg = {.host = "127.0.0.1", .port = 0, .threads = 2, .max_body = 1 << 20};
    if (httpd_start(&cfg, proxy_handle, fenv.proxy, &fenv.httpd) < 0)
        return -1;
    snprintf(fenv.base, sizeof fenv.base, "%u", httpd_port(fenv.httpd));
    return 0;
}

static int features_suite_clean(void)
{
    httpd_stop(fenv.httpd);
    proxy_free(fenv.proxy);
    forward_free(fenv.fw);
    route_table_free(fenv.routes);
    digest_free(fenv.digest);
    store_close(fenv.store);
    nftw(fenv.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    memset(&fenv, 0, sizeof fenv);
    forward_suite_clean();
    return 0;
}

struct fclient {
    const char *method;
    const char *host; /* name in the URL, resolved to 127.0.0.1 */
    const char *path;
    const char *headers[4];
    const char *user, *password; /* Digest, or NULL */
    const void *body;
    size_t body_len;
    const char *accept_encoding; /* curl decodes the answer; NULL = none sent */
};

static void fclient_do(const struct fclient *o, struct client_result *out)
{
    CURL *h = curl_easy_init();
    char url[512], resolve[128];
    snprintf(url, sizeof url, "http://%s:%s%s", o->host, fenv.base, o->path);
    snprintf(resolve, sizeof resolve, "%s:%s:127.0.0.1", o->host, fenv.base);
    struct curl_slist *rs = curl_slist_append(NULL, resolve), *hl = NULL;
    for (size_t i = 0; i < 4 && o->headers[i]; i++)
        hl = curl_slist_append(hl, o->headers[i]);
    buf_reset(&out->body);
    buf_reset(&out->headers);
    out->status = 0;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROXY, ""); /* never an http_proxy of the environment */
    curl_easy_setopt(h, CURLOPT_RESOLVE, rs);
    curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, o->method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, client_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &out->body);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, client_write);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &out->headers);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
    if (o->accept_encoding)
        curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, o->accept_encoding);
    if (o->body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, o->body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)o->body_len);
    }
    if (o->user) {
        curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_DIGEST);
        curl_easy_setopt(h, CURLOPT_USERNAME, o->user);
        curl_easy_setopt(h, CURLOPT_PASSWORD, o->password);
    }
    CU_ASSERT_EQUAL(curl_easy_perform(h), CURLE_OK);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status);
    curl_slist_free_all(hl);
    curl_slist_free_all(rs);
    curl_easy_cleanup(h);
}

#define GAA_DOC "/xcap-root/resource-lists/users/sip:gaa@example.com/index"

static void test_proxy_gaa(void)
{
    struct client_result r;
    buf_init(&r.body, 1 << 20);
    buf_init(&r.headers, 1 << 20);
    /* The UE's password: base64 of Ks_NAF for NAF_Id = xcap.example.com || 01 00 00 00 02. */
    unsigned char ks[GBA_KS_LEN], rand[GBA_RAND_LEN], naf[GBA_NAF_ID_MAX], key[GBA_KEY_LEN];
    size_t naflen, pwlen;
    gaa_inputs(ks, rand);
    CU_ASSERT_EQUAL(gba_naf_id("xcap.example.com", -1, naf, &naflen), 0);
    CU_ASSERT_EQUAL(gba_kdf(ks, rand, "gaa@ims.example.com", naf, naflen, key), 0);
    char pw[GBA_PASSWORD_MAX];
    CU_ASSERT_EQUAL(gba_password(key, GBA_PASSWORD_BASE64, pw, &pwlen), 0);

    struct fclient o = {.method = "GET",
                        .host = "xcap.example.com",
                        .path = GAA_DOC,
                        .headers = {"User-Agent: XDMC/1.0 3gpp-gba"},
                        .user = GAA_BTID,
                        .password = pw};
    fclient_do(&o, &r);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.headers.data, "WWW-Authenticate: Digest "
                                                  "realm=\"3GPP-bootstrapping@xcap.example.com\", "
                                                  "qop=\"auth-int,auth\", algorithm=MD5"));
    CU_ASSERT_PTR_NOT_NULL(
        strstr(r.body.data, "H X-3GPP-Asserted-Identity: \"sip:gaa@example.com\"\n"));
    CU_ASSERT_PTR_NOT_NULL(
        strstr(r.body.data, "H X-XCAP-Asserted-Identity: \"sip:gaa@example.com\"\n"));
    CU_ASSERT_PTR_NULL(strstr(r.body.data, "Authorization"));
    CU_ASSERT_PTR_NOT_NULL(strstr(r.headers.data, "Authentication-Info: qop=auth, rspauth=\""));

    /* the second public identity of the record */
    o.headers[1] = "X-3GPP-Intended-Identity: \"tel:+15550001\"";
    fclient_do(&o, &r);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body.data, "H X-3GPP-Asserted-Identity: \"tel:+15550001\"\n"));
    o.headers[1] = "X-3GPP-Intended-Identity: \"sip:carol@example.com\"";
    fclient_do(&o, &r);
    CU_ASSERT_EQUAL(r.status, 403);
    o.headers[1] = NULL;

    /* a wrong key, a key for another Ua id */
    o.password = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    fclient_do(&o, &r);
    CU_ASSERT_EQUAL(r.status, 401);
    CU_ASSERT_EQUAL(gba_naf_id("xcap.example.com", 0x1301, naf, &naflen), 0);
    CU_ASSERT_EQUAL(gba_kdf(ks, rand, "gaa@ims.example.com", naf, naflen, key), 0);
    char pw2[GBA_PASSWORD_MAX];
    CU_ASSERT_EQUAL(gba_password(key, GBA_PASSWORD_BASE64, pw2, &pwlen), 0);
    o.password = pw2;
    fclient_do(&o, &r);
    CU_ASSERT_EQUAL(r.status, 401);

    /* a host that is not a served NAF name, or no 3gpp-gba token: plain Digest */
    o.password = pw;
    o.host = "localhost";
    fclient_do(&o, &r);
    CU_ASSERT_EQUAL(r.status, 401);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.headers.data, "realm=\"example.com\""));
    CU_ASSERT_PTR_NULL(strstr(r.headers.data, "3GPP-bootstrapping"));
    o.host = "xcap.example.com";
    o.headers[0] = "User-Agent: XDMC/1.0 3gpp-gba-digest";
    fclient_do(&o, &r);
    CU_ASSERT_EQUAL(r.status, 401);
    CU_ASSERT_PTR_NULL(strstr(r.headers.data, "3GPP-bootstrapping"));
    buf_release(&r.body);
    buf_release(&r.headers);
}

static void test_proxy_digest_identities(void)
{
    struct client_result r;
    buf_init(&r.body, 1 << 20);
    buf_init(&r.headers, 1 << 20);
    struct fclient o = {.method = "GET",
                        .host = "127.0.0.1",
                        .path = "/xcap-root/resource-lists/users/tel:+15559999/index",
                        .headers = {"X-3GPP-Intended-Identity: <tel:+15559999>",
                                    "X-3GPP-Asserted-Identity: \"sip:bob@other.org\""},
                        .user = "carol",
                        .password = "cpw"};
    fclient_do(&o, &r);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body.data, "H X-3GPP-Asserted-Identity: \"tel:+15559999\"\n"));
    CU_ASSERT_PTR_NULL(strstr(r.body.data, "bob"));
    CU_ASSERT_PTR_NULL(strstr(r.body.data, "Intended"));
    o.headers[0] = NULL;
    o.path = "/xcap-root/resource-lists/users/sip:carol@example.com/index";
    fclient_do(&o, &r);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_PTR_NOT_NULL(
        strstr(r.body.data, "H X-3GPP-Asserted-Identity: \"sip:carol@example.com\"\n"));
    o.headers[0] = "X-3GPP-Intended-Identity: \"tel:+15550001\"";
    fclient_do(&o, &r);
    CU_ASSERT_EQUAL(r.status, 403);
    o.headers[0] = "X-3GPP-Intended-Identity: tel:+15559999, tel:+1";
    fclient_do(&o, &r);
    CU_ASSERT_EQUAL(r.status, 400);
    buf_release(&r.body);
    buf_release(&r.headers);
}

static void test_proxy_gzip(void)
{
    struct client_result r;
    buf_init(&r.body, 1 << 20);
    buf_init(&r.headers, 1 << 20);
    struct fclient o = {.method = "GET",
                        .host = "127.0.0.1",
                        .path = "/xcap-root/resource-lists/users/sip:carol@example.com/big",
                        .user = "carol",
                        .password = "cpw",
                        .accept_encoding = "gzip"};
    fclient_do(&o, &r);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.headers.data, "Content-Encoding: gzip"));
    CU_ASSERT_PTR_NOT_NULL(strstr(r.headers.data, "Vary: Accept-Encoding"));
    CU_ASSERT_PTR_NOT_NULL(strstr(r.headers.data, "ETag: \"up-1\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body.data, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"));
    /* the XDMS is never asked for gzip (XDM-4 stays identity) */
    CU_ASSERT_PTR_NULL(strstr(r.body.data, "Accept-Encoding"));
    o.accept_encoding = NULL;
    fclient_do(&o, &r);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_PTR_NULL(strstr(r.headers.data, "Content-Encoding"));
    CU_ASSERT_PTR_NOT_NULL(strstr(r.headers.data, "Vary: Accept-Encoding"));
    /* small answers are not worth it */
    o.path = "/xcap-root/resource-lists/users/sip:carol@example.com/index";
    o.accept_encoding = "gzip";
    fclient_do(&o, &r);
    CU_ASSERT_PTR_NULL(strstr(r.headers.data, "Content-Encoding"));

    /* a gzip request body arrives decoded, without Content-Encoding */
    const char doc[] = "<list name=\"zipped\"/>";
    struct buf z;
    buf_init(&z, 1 << 20);
    CU_ASSERT_EQUAL(compress_gzip(doc, strlen(doc), 9, &z), 0);
    struct fclient put = {.method = "PUT",
                          .host = "127.0.0.1",
                          .path = o.path,
                          .headers = {"Content-Encoding: gzip", "Content-Type: application/x"},
                          .user = "carol",
                          .password = "cpw",
                          .body = z.data,
                          .body_len = z.len};
    fclient_do(&put, &r);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body.data, "B <list name=\"zipped\"/>\n"));
    CU_ASSERT_PTR_NULL(strstr(r.body.data, "Content-Encoding"));
    /* decoding past max_body (64 KiB): 413; broken: 400; unknown coding: 415 */
    buf_reset(&z);
    char *zeros = calloc(1, 200 << 10);
    CU_ASSERT_EQUAL(compress_gzip(zeros, 200 << 10, 9, &z), 0);
    free(zeros);
    put.body = z.data;
    put.body_len = z.len;
    fclient_do(&put, &r);
    CU_ASSERT_EQUAL(r.status, 413);
    put.body = "\x1f\x8b\x08junk";
    put.body_len = 7;
    fclient_do(&put, &r);
    CU_ASSERT_EQUAL(r.status, 400);
    put.headers[0] = "Content-Encoding: compress";
    fclient_do(&put, &r);
    CU_ASSERT_EQUAL(r.status, 415);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.headers.data, "Accept-Encoding: gzip"));
    buf_release(&z);
    buf_release(&r.body);
    buf_release(&r.headers);
}

/* Writes a new P-256 key to key_path and, when cert_path is given, a self-signed certificate of
 * it. */
static void make_pair(const char *cert_path, const char *key_path)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    CU_ASSERT_PTR_NOT_NULL_FATAL(k);
    FILE *f = fopen(key_path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    if (cert_path) {
        X509 *x = X509_new();
        ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
        X509_gmtime_adj(X509_getm_notBefore(x), 0);
        X509_gmtime_adj(X509_getm_notAfter(x), 3600);
        X509_set_pubkey(x, k);
        X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                                   (const unsigned char *)"aggproxy", -1, -1, 0);
        X509_set_issuer_name(x, X509_get_subject_name(x));
        CU_ASSERT(X509_sign(x, k, EVP_sha256()) > 0);
        f = fopen(cert_path, "w");
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        PEM_write_X509(f, x);
        fclose(f);
        X509_free(x);
    }
    EVP_PKEY_free(k);
}

static void test_forward_client_cert(void)
{
    char dir[] = "/tmp/xdm-fwcert-XXXXXX";
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    char cert[64], key[64], other[64], missing[64];
    snprintf(cert, sizeof cert, "%s/c.pem", dir);
    snprintf(key, sizeof key, "%s/c.key", dir);
    snprintf(other, sizeof other, "%s/o.key", dir);
    snprintf(missing, sizeof missing, "%s/none.pem", dir);
    make_pair(cert, key);
    make_pair(NULL, other);

    struct forward_options opts = {.cert_file = cert, .key_file = key};
    struct forward *fw = forward_new(&opts);
    CU_ASSERT_PTR_NOT_NULL_FATAL(fw);
    char err[512], want[256];
    CU_ASSERT_EQUAL(forward_set_client_cert(fw, cert, other, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s is not the key of the certificate %s", other, cert);
    CU_ASSERT_STRING_EQUAL(err, want);
    CU_ASSERT_EQUAL(forward_set_client_cert(fw, missing, key, err, sizeof err), -1);
    snprintf(want, sizeof want, "cannot open %s: No such file or directory", missing);
    CU_ASSERT_STRING_EQUAL(err, want);
    CU_ASSERT_EQUAL(forward_set_client_cert(fw, key, key, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: no PEM certificate", key);
    CU_ASSERT_STRING_EQUAL(err, want);
    CU_ASSERT_EQUAL(forward_set_client_cert(fw, cert, NULL, err, sizeof err), -1);
    CU_ASSERT_STRING_EQUAL(err, "upstream_cert and upstream_key go together");
    CU_ASSERT_EQUAL(forward_set_client_cert(fw, cert, key, err, sizeof err), 0);
    CU_ASSERT_EQUAL(forward_set_client_cert(fw, NULL, NULL, err, sizeof err), 0);
    forward_free(fw);

    opts.key_file = other; /* a bad pair at start: no forwarder */
    CU_ASSERT_PTR_NULL(forward_new(&opts));
    unlink(cert);
    unlink(key);
    unlink(other);
    rmdir(dir);
}

static CU_TestInfo route_tests[] = {
    {"default AUIDs", test_route_defaults},
    {"unknown AUID and outside the root", test_route_not_found},
    {"the root and below it", test_route_in_root},
    {"raw spans and XUI", test_route_spans},
    {"configured URLs and routes", test_route_config},
    {"upstream lists", test_route_lists},
    {"instance choice", test_route_pick},
    CU_TEST_INFO_NULL,
};

static CU_TestInfo caps_tests[] = {
    {"merge", test_caps_merge},
    CU_TEST_INFO_NULL,
};

static CU_TestInfo forward_tests[] = {
    {"relayed request headers", test_forward_headers_list},
    {"byte-exact forwarding", test_forward_exact},
    {"502, 504, size bound", test_forward_failures},
    {"client certificate: pair checked, replaced, removed", test_forward_client_cert},
    {"over a UNIX-domain socket", test_forward_unix},
    {"concurrent threads", test_forward_threads},
    {"instances of a list: retry and health", test_upstream_forward},
    {"xcap-caps composition", test_caps_compose},
    CU_TEST_INFO_NULL,
};

static CU_TestInfo proxy_tests[] = {
    {"challenges", test_proxy_challenge},
    {"authenticated forwarding", test_proxy_forward},
    CU_TEST_INFO_NULL,
};

/* A client that sends half a request and stalls is dropped after the idle timeout; the proxy
 * keeps answering others meanwhile. */
static void test_proxy_slow_client(void)
{
    struct httpd_config cfg = {
        .host = "127.0.0.1", .port = 0, .threads = 2, .max_body = 1 << 16, .timeout_s = 1};
    struct httpd *d;
    CU_ASSERT_EQUAL_FATAL(httpd_start(&cfg, proxy_handle, fenv.proxy, &d), 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(httpd_port(d))};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CU_ASSERT_EQUAL_FATAL(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    const char part[] =
        "PUT /xcap-root/resource-lists/users/sip:carol@example.com/index HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\nContent-Length: 100\r\n\r\n<half";
    CU_ASSERT_EQUAL(send(fd, part, sizeof part - 1, 0), (ssize_t)(sizeof part - 1));
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char buf[512];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0)
        ;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double waited = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    CU_ASSERT_EQUAL(n, 0); /* closed by the server, not our receive timeout */
    CU_ASSERT_TRUE(waited >= 0.5 && waited < 4.0);
    close(fd);
    httpd_stop(d);
}

static CU_TestInfo feature_tests[] = {
    {"slow client dropped", test_proxy_slow_client},
    {"GBA Digest (GAA)", test_proxy_gaa},
    {"Digest users with several identities", test_proxy_digest_identities},
    {"gzip both ways", test_proxy_gzip},
    CU_TEST_INFO_NULL,
};

int main(void)
{
    log_init("test_route", LOG_LEVEL_ERROR);
    xdoc_global_init();
    CU_SuiteInfo suites[] = {
        {"route", NULL, NULL, NULL, NULL, route_tests},
        {"caps", NULL, NULL, NULL, NULL, caps_tests},
        {"forward", forward_suite_init, forward_suite_clean, NULL, NULL, forward_tests},
        {"proxy", proxy_suite_init, proxy_suite_clean, NULL, NULL, proxy_tests},
        {"proxy features", features_suite_init, features_suite_clean, NULL, NULL, feature_tests},
        CU_SUITE_INFO_NULL,
    };
    int rc = unit_run(suites);
    xdoc_global_cleanup();
    return rc;
}
