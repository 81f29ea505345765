/* Unit suite for what the proxy composes from several XDMSs: aggproxy/aggdir.c (the OMA
 * xcap-directory: URI re-rooting, folder order, error folders, ETag, conditional and node-selector
 * reads), aggproxy/caps.c (the cached xcap-caps union) and forward_many() (parallel requests),
 * against in-process upstream servers on loopback. Composed documents are validated against the
 * project's XSDs (schemas/xdm_xcapDirectory-v1_0.xsd, schemas/xcap-caps.xsd). */
#include <libxml/xmlschemas.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aggdir.h"
#include "caps.h"
#include "forward.h"
#include "httpd.h"
#include "log.h"
#include "route.h"
#include "xdoc.h"
#include "unit.h"

/* ---- Schema validation -------------------------------------------------------------------- */

static bool valid_against(const char *xsd, const char *doc, size_t len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", XDM_SCHEMA_DIR, xsd);
    xmlSchemaParserCtxtPtr pc = xmlSchemaNewParserCtxt(path);
    xmlSchemaPtr schema = pc ? xmlSchemaParse(pc) : NULL;
    xmlSchemaValidCtxtPtr vc = schema ? xmlSchemaNewValidCtxt(schema) : NULL;
    xmlDocPtr d = NULL;
    struct xcap_err err = {0};
    bool ok = vc && xdoc_parse(doc, len, &d, &err) == XCAP_OK && xmlSchemaValidateDoc(vc, d) == 0;
    xcap_err_release(&err);
    xmlFreeDoc(d);
    xmlSchemaFreeValidCtxt(vc);
    xmlSchemaFree(schema);
    xmlSchemaFreeParserCtxt(pc);
    return ok;
}

/* ---- URI re-rooting ----------------------------------------------------------------------- */

static void expect_uri(const char *uri, const char *root_path, const char *client, const char *want)
{
    struct buf b;
    buf_init(&b, 4096);
    CU_ASSERT_EQUAL(aggdir_rewrite_uri(uri, root_path, client, &b), 0);
    if (!b.data || strcmp(b.data, want) != 0)
        printf("\n  [%s] -> [%s], want [%s]\n", uri, b.data ? b.data : "", want);
    CU_ASSERT_STRING_EQUAL(b.data ? b.data : "", want);
    buf_release(&b);
}

static void test_rewrite(void)
{
    const char *c = "https://xcap.example.com:8443/xcap-root";
    expect_uri("http://127.0.0.1:8080/xcap-root/resource-lists/users/sip:a@b/index", "/xcap-root",
               c, "https://xcap.example.com:8443/xcap-root/resource-lists/users/sip:a@b/index");
    /* relative document selector (OMA XDM Core 1.1 Appendix B) */
    expect_uri("resource-lists/users/sip:a@b/index", "/xcap-root", c,
               "https://xcap.example.com:8443/xcap-root/resource-lists/users/sip:a@b/index");
    /* absolute path */
    expect_uri("/xcap-root/pres-rules/users/sip:a@b/index", "/xcap-root", c,
               "https://xcap.example.com:8443/xcap-root/pres-rules/users/sip:a@b/index");
    /* not under the root: unchanged */
    expect_uri("http://other/elsewhere/x", "/xcap-root", c, "http://other/elsewhere/x");
    expect_uri("http://other/xcap-rootx/x", "/xcap-root", c, "http://other/xcap-rootx/x");
    expect_uri("http://host-only", "/xcap-root", c, "http://host-only");
    /* root "/" (root_path "") */
    expect_uri("http://10.0.0.1/resource-lists/users/x/index", "", "http://p:1",
               "http://p:1/resource-lists/users/x/index");
    /* no client root: as given */
    expect_uri("http://127.0.0.1:8080/xcap-root/a", "/xcap-root", NULL,
               "http://127.0.0.1:8080/xcap-root/a");
    /* a colon inside the relative selector is not a scheme */
    expect_uri("rls-services/users/sip:a@b/x://y", "/xcap-root", c,
               "https://xcap.example.com:8443/xcap-root/rls-services/users/sip:a@b/x://y");
}

/* ---- Composition without network ---------------------------------------------------------- */

#define UP_A "http://127.0.0.1:1"
#define UP_B "http://127.0.0.1:2"
#define UP_C "http://127.0.0.1:3"

static const char listing_a[] =
    "<?xml version=\"1.0\"?><xcap-directory xmlns=\"" XDM_DIRECTORY_NS "\">"
    "<folder auid=\"resource-lists\"><entry uri=\"http://int:1/xcap-root/resource-lists/users/"
    "sip:a@b/index\" etag=\"e1\" last-modified=\"2026-01-01T00:00:00Z\" size=\"12\" foo=\"x\"/>"
    "<entry uri=\"resource-lists/users/sip:a@b/two\" etag=\"e2\"/></folder>"
    "<folder auid=\"not-routed-here\"><entry uri=\"x\" etag=\"y\"/></folder>"
    "</xcap-directory>";
static const char listing_c[] = "<xcap-directory xmlns=\"" XDM_DIRECTORY_NS
                                "\"><folder auid=\"rls-services\"/></xcap-directory>";

static struct route_table *three_upstreams(void)
{
    char err[256];
    struct route_table *t = route_table_new(NULL, UP_A, UP_B, UP_C, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL(t);
    return t;
}

static void test_compose(void)
{
    struct route_table *t = three_upstreams();
    struct aggdir_part parts[] = {
        {UP_A, 200, listing_a, sizeof listing_a - 1},
        {UP_B, 504, NULL, 0},
        {UP_C, 200, listing_c, sizeof listing_c - 1},
    };
    struct buf out;
    buf_init(&out, 1 << 20);
    char etag[AGGDIR_ETAG_MAX], etag2[AGGDIR_ETAG_MAX];
    CU_ASSERT_EQUAL_FATAL(aggdir_compose(t, parts, 3, "http://pub:80/xcap-root", &out, etag), 0);
    CU_ASSERT_STRING_EQUAL(
        out.data,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xcap-directory xmlns=\"" XDM_DIRECTORY_NS
        "\">"
        "<folder auid=\"resource-lists\"><entry uri=\"http://pub:80/xcap-root/resource-lists/users/"
        "sip:a@b/index\" etag=\"e1\" last-modified=\"2026-01-01T00:00:00Z\" size=\"12\"/>"
        "<entry uri=\"http://pub:80/xcap-root/resource-lists/users/sip:a@b/two\" etag=\"e2\"/>"
        "</folder>"
        "<folder auid=\"pres-rules\"><error-code>504</error-code></folder>"
        "<folder auid=\"org.openmobilealliance.pres-rules\"><error-code>504</error-code></folder>"
        "<folder auid=\"pidf-manipulation\"><error-code>504</error-code></folder>"
        "<folder auid=\"org.openmobilealliance.pres-content\"><error-code>504</error-code>"
        "</folder><folder auid=\"rls-services\"></folder></xcap-directory>\n");
    CU_ASSERT_TRUE(valid_against("xdm_xcapDirectory-v1_0.xsd", out.data, out.len));
    CU_ASSERT_EQUAL(etag[0], '"');
    CU_ASSERT_EQUAL(strncmp(etag, "\"dir-", 5), 0);
    CU_ASSERT_EQUAL(strlen(etag), 5 + 32 + 1);

    /* the same inputs give the same ETag; another error code, client root or etag another one */
    buf_reset(&out);
    CU_ASSERT_EQUAL(aggdir_compose(t, parts, 3, "http://pub:80/xcap-root", &out, etag2), 0);
    CU_ASSERT_STRING_EQUAL(etag, etag2);
    parts[1].status = 502;
    buf_reset(&out);
    CU_ASSERT_EQUAL(aggdir_compose(t, parts, 3, "http://pub:80/xcap-root", &out, etag2), 0);
    CU_ASSERT_STRING_NOT_EQUAL(etag, etag2);
    parts[1].status = 504;
    buf_reset(&out);
    CU_ASSERT_EQUAL(aggdir_compose(t, parts, 3, "https://pub/xcap-root", &out, etag2), 0);
    CU_ASSERT_STRING_NOT_EQUAL(etag, etag2);

    /* a part that is not an xcap-directory counts as 502; a missing part too */
    struct aggdir_part junk[] = {
        {UP_A, 200, "<x/>", 4},
        {UP_C, 200, "not xml", 7},
    };
    buf_reset(&out);
    CU_ASSERT_EQUAL(aggdir_compose(t, junk, 2, NULL, &out, etag2), 0);
    CU_ASSERT_PTR_NOT_NULL(
        strstr(out.data, "<folder auid=\"resource-lists\"><error-code>502</error-code>"));
    CU_ASSERT_PTR_NOT_NULL(
        strstr(out.data, "<folder auid=\"pres-rules\"><error-code>502</error-code>"));
    CU_ASSERT_PTR_NOT_NULL(
        strstr(out.data, "<folder auid=\"rls-services\"><error-code>502</error-code>"));
    CU_ASSERT_TRUE(valid_against("xdm_xcapDirectory-v1_0.xsd", out.data, out.len));

    /* a full buffer fails without leaving half a document */
    struct buf small;
    buf_init(&small, 64);
    CU_ASSERT_EQUAL(aggdir_compose(t, parts, 3, NULL, &small, etag2), -1);
    CU_ASSERT_EQUAL(small.len, 0);
    buf_release(&small);
    buf_release(&out);
    route_table_free(t);
}

static void test_caps_schema(void)
{
    struct buf docs[1], out;
    const char *xdms = "<xcap-caps xmlns=\"" XCAP_CAPS_NS "\"><auids><auid>resource-lists</auid>"
                       "</auids><extensions><extension>e</extension></extensions><namespaces>"
                       "<namespace>urn:ietf:params:xml:ns:resource-lists</namespace>"
                       "</namespaces></xcap-caps>";
    buf_init(&docs[0], 4096);
    buf_puts(&docs[0], xdms);
    buf_init(&out, 1 << 16);
    CU_ASSERT_EQUAL(caps_merge(docs, 1, &out, NULL), 0);
    CU_ASSERT_TRUE(valid_against("xcap-caps.xsd", out.data, out.len));
    /* order per RFC 4825 §12.2: auids, extensions, namespaces */
    const char *a = strstr(out.data, "<auids>"), *e = strstr(out.data, "<extensions>"),
               *n = strstr(out.data, "<namespaces>");
    CU_ASSERT_TRUE(a && e && n && a < e && e < n);
    buf_reset(&out);
    CU_ASSERT_EQUAL(caps_merge(NULL, 0, &out, NULL), 0);
    CU_ASSERT_TRUE(valid_against("xcap-caps.xsd", out.data, out.len));
    CU_ASSERT_PTR_NOT_NULL(strstr(out.data, "</auids><extensions></extensions><namespaces>"));
    buf_release(&docs[0]);
    buf_release(&out);
}

/* ---- Against upstream servers ------------------------------------------------------------- */

/* Two upstreams run this handler; each counts its xcap-caps fetches. Paths:
 *   .../xcap-caps/global/index                  an xcap-caps document naming the upstream's AUIDs
 *   .../users/sip:alice@example.com/directory.xml   a listing (absolute URIs under "public")
 *   .../users/sip:bob@example.com/directory.xml     403
 *   .../slow...                                  answers after 1 s */
struct upstream {
    struct httpd *d;
    char url[64];
    int which; /* 0 = shared-list, 1 = presence */
    atomic_int caps_fetches;
    atomic_int requests;
};

static struct upstream ups[2];
static char dead_url[64];

static void up_handler(void *cls, const struct http_request *req, struct http_response *resp)
{
    struct upstream *u = cls;
    const char *path = http_request_path(req);
    atomic_fetch_add(&u->requests, 1);
    if (strstr(path, "/slow")) {
        struct timespec ts = {1, 0};
        nanosleep(&ts, NULL);
    }
    if (!http_request_header(req, "X-3GPP-Asserted-Identity")) {
        http_response_text(resp, 403, "no asserted identity");
        return;
    }
    if (strstr(path, "/xcap-caps/global/index")) {
        atomic_fetch_add(&u->caps_fetches, 1);
        char doc[512];
        snprintf(doc, sizeof doc,
                 "<xcap-caps xmlns=\"" XCAP_CAPS_NS "\"><auids><auid>%s</auid></auids><namespaces>"
                 "<namespace>urn:x:%d</namespace></namespaces></xcap-caps>",
                 u->which == 0 ? "resource-lists" : "pres-rules", u->which);
        resp->status = 200;
        http_response_header(resp, "Content-Type", XCAP_CAPS_MIME);
        http_response_body(resp, doc, strlen(doc));
        return;
    }
    if (strstr(path, "sip:bob@example.com/directory.xml")) {
        http_response_text(resp, 403, "not yours");
        return;
    }
    if (strstr(path, "/directory.xml")) {
        char doc[1024];
        if (u->which == 0)
            snprintf(doc, sizeof doc,
                     "<xcap-directory xmlns=\"" XDM_DIRECTORY_NS
                     "\"><folder auid=\"resource-lists\">"
                     "<entry uri=\"http://public:8080/xcap-root/resource-lists/users/"
                     "sip:alice@example.com/index\" etag=\"rl-1\" size=\"10\"/></folder>"
                     "</xcap-directory>");
        else
            snprintf(doc, sizeof doc,
                     "<xcap-directory xmlns=\"" XDM_DIRECTORY_NS "\"><folder auid=\"pres-rules\">"
                     "<entry uri=\"http://public:8080/xcap-root/pres-rules/users/"
                     "sip:alice@example.com/index\" etag=\"pr-1\"/></folder>"
                     "<folder auid=\"pidf-manipulation\"/></xcap-directory>");
        resp->status = 200;
        http_response_header(resp, "Content-Type", XDM_DIRECTORY_MIME);
        http_response_body(resp, doc, strlen(doc));
        return;
    }
    resp->status = 200;
    http_response_body(resp, path, strlen(path));
}

static int net_init(void)
{
    for (int i = 0; i < 2; i++) {
        ups[i].which = i;
        struct httpd_config cfg = {.host = "127.0.0.1", .port = 0, .threads = 4, .max_body = 1024};
        if (httpd_start(&cfg, up_handler, &ups[i], &ups[i].d) < 0)
            return -1;
        snprintf(ups[i].url, sizeof ups[i].url, "http://127.0.0.1:%u", httpd_port(ups[i].d));
    }
    struct httpd_config cfg = {.host = "127.0.0.1", .port = 0, .threads = 1, .max_body = 1};
    struct httpd *d;
    if (httpd_start(&cfg, up_handler, &ups[0], &d) < 0)
        return -1;
    snprintf(dead_url, sizeof dead_url, "http://127.0.0.1:%u", httpd_port(d));
    httpd_stop(d);
    return 0;
}

static int net_clean(void)
{
    for (int i = 0; i < 2; i++)
        httpd_stop(ups[i].d);
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const struct forward_header alice_hdr = {"X-3GPP-Asserted-Identity",
                                                "\"sip:alice@example.com\""};

static void test_forward_many(void)
{
    struct forward_options fo = {.timeout_ms = 3000};
    struct forward *fw = forward_new(&fo);
    CU_ASSERT_PTR_NOT_NULL_FATAL(fw);
    struct forward_request rq[4] = {
        {.method = "GET",
         .base_url = ups[0].url,
         .target = "/a/slow1",
         .headers = &alice_hdr,
         .n_headers = 1},
        {.method = "GET",
         .base_url = ups[1].url,
         .target = "/b/slow2",
         .headers = &alice_hdr,
         .n_headers = 1},
        {.method = "GET",
         .base_url = ups[0].url,
         .target = "/c/slow3",
         .headers = &alice_hdr,
         .n_headers = 1},
        {.method = "GET",
         .base_url = dead_url,
         .target = "/d",
         .headers = &alice_hdr,
         .n_headers = 1},
    };
    struct forward_response resp[4];
    enum xcap_status st[4];
    for (int i = 0; i < 4; i++)
        forward_response_init(&resp[i]);
    double t0 = now_s();
    forward_many(fw, rq, resp, st, 4);
    double took = now_s() - t0;
    /* three 1-second answers in parallel */
    CU_ASSERT_TRUE(took >= 0.9 && took < 2.5);
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL(st[i], XCAP_OK);
        CU_ASSERT_EQUAL(resp[i].status, 200);
        CU_ASSERT_STRING_EQUAL(resp[i].body.data ? resp[i].body.data : "", rq[i].target);
    }
    CU_ASSERT_EQUAL(st[3], XCAP_UPSTREAM);
    CU_ASSERT_TRUE(resp[3].error && strstr(resp[3].error, "refused") != NULL);
    for (int i = 0; i < 4; i++)
        forward_response_release(&resp[i]);

    /* over the timeout: 504, and the others are not held back */
    struct forward_options fast = {.timeout_ms = 300};
    struct forward *fw2 = forward_new(&fast);
    struct forward_request r2[2] = {
        {.method = "GET",
         .base_url = ups[0].url,
         .target = "/slow",
         .headers = &alice_hdr,
         .n_headers = 1},
        {.method = "GET",
         .base_url = ups[1].url,
         .target = "/quick",
         .headers = &alice_hdr,
         .n_headers = 1},
    };
    for (int i = 0; i < 2; i++)
        forward_response_init(&resp[i]);
    forward_many(fw2, r2, resp, st, 2);
    CU_ASSERT_EQUAL(st[0], XCAP_UPSTREAM_TIMEOUT);
    CU_ASSERT_EQUAL(st[1], XCAP_OK);
    for (int i = 0; i < 2; i++)
        forward_response_release(&resp[i]);
    forward_free(fw2);
    forward_free(fw);
    /* let the slow handler finish before the suite moves on */
    struct timespec ts = {1, 0};
    nanosleep(&ts, NULL);
}

static void test_caps_cache(void)
{
    char err[256];
    struct route_table *t =
        route_table_new(NULL, ups[0].url, ups[1].url, dead_url, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    struct forward *fw = forward_new(NULL);
    struct caps_cache *c = caps_cache_new(fw, t, 100, 2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    atomic_store(&ups[0].caps_fetches, 0);
    struct buf doc;
    buf_init(&doc, 1 << 16);
    char e1[CAPS_ETAG_MAX], e2[CAPS_ETAG_MAX];
    CU_ASSERT_EQUAL(caps_cache_get(c, &alice_hdr, 1, 1000, &doc, e1), 0);
    CU_ASSERT_EQUAL(atomic_load(&ups[0].caps_fetches), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(doc.data, "<auid>resource-lists</auid><auid>pres-rules</auid>"
                                            "<auid>org.openmobilealliance.xcap-directory</auid>"));
    CU_ASSERT_TRUE(valid_against("xcap-caps.xsd", doc.data, doc.len));
    /* served from the cache; the dead upstream makes it retry after 2 s, not 100 s */
    buf_reset(&doc);
    CU_ASSERT_EQUAL(caps_cache_get(c, &alice_hdr, 1, 1001, &doc, e2), 0);
    CU_ASSERT_EQUAL(atomic_load(&ups[0].caps_fetches), 1);
    CU_ASSERT_STRING_EQUAL(e1, e2);
    buf_reset(&doc);
    CU_ASSERT_EQUAL(caps_cache_get(c, &alice_hdr, 1, 1002, &doc, e2), 0);
    CU_ASSERT_EQUAL(atomic_load(&ups[0].caps_fetches), 2);
    caps_cache_free(c);

    /* all upstreams answering: kept for the whole ttl */
    route_table_free(t);
    t = route_table_new(NULL, ups[0].url, ups[1].url, ups[1].url, err, sizeof err);
    c = caps_cache_new(fw, t, 100, 2);
    atomic_store(&ups[0].caps_fetches, 0);
    for (uint64_t now = 1000; now < 1100; now += 10) {
        buf_reset(&doc);
        CU_ASSERT_EQUAL(caps_cache_get(c, &alice_hdr, 1, now, &doc, e2), 0);
    }
    CU_ASSERT_EQUAL(atomic_load(&ups[0].caps_fetches), 1);
    buf_reset(&doc);
    CU_ASSERT_EQUAL(caps_cache_get(c, &alice_hdr, 1, 1100, &doc, e2), 0);
    CU_ASSERT_EQUAL(atomic_load(&ups[0].caps_fetches), 2);
    caps_cache_free(c);
    buf_release(&doc);
    forward_free(fw);
    route_table_free(t);
}

static void dir_get(struct forward *fw, const struct route_table *t, const char *method,
                    const char *path, const char *inm, const char *im, struct http_response *r)
{
    for (size_t i = 0; i < r->n_headers; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->headers);
    r->headers = NULL;
    r->n_headers = 0;
    r->status = 500;
    buf_reset(&r->body);
    const char *q = strchr(path, '?');
    char p[1024];
    snprintf(p, sizeof p, "%.*s", q ? (int)(q - path) : (int)strlen(path), path);
    struct aggdir_request rq = {
        .method = method,
        .path = p,
        .query = q ? q + 1 : NULL,
        .if_match = im,
        .if_none_match = inm,
        .client_root = "https://xcap.example.com/xcap-root",
        .id_headers = &alice_hdr,
        .n_id_headers = 1,
    };
    struct xcap_err err = {0};
    r->status = status_http(aggdir_handle(fw, t, &rq, r, &err));
    if (err.allow)
        http_response_header(r, "Allow", err.allow);
    xcap_err_release(&err);
}

#define ALICE_DIR "/xcap-root/org.openmobilealliance.xcap-directory/users/sip:alice@example.com/"

static void test_directory_requests(void)
{
    char err[256];
    struct route_table *t =
        route_table_new(NULL, ups[0].url, ups[1].url, dead_url, err, sizeof err);
    struct forward *fw = forward_new(NULL);
    struct http_response r = {0};
    buf_init(&r.body, 1 << 20);

    dir_get(fw, t, "GET", ALICE_DIR "directory.xml", NULL, NULL, &r);
    CU_ASSERT_EQUAL_FATAL(r.status, 200);
    CU_ASSERT_STRING_EQUAL(http_response_get_header(&r, "Content-Type"), XDM_DIRECTORY_MIME);
    CU_ASSERT_TRUE(valid_against("xdm_xcapDirectory-v1_0.xsd", r.body.data, r.body.len));
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body.data, "<folder auid=\"resource-lists\"><entry uri=\""
                                               "https://xcap.example.com/xcap-root/resource-lists/"
                                               "users/sip:alice@example.com/index\" etag=\"rl-1\" "
                                               "size=\"10\"/></folder><folder auid=\"pres-rules\">"
                                               "<entry uri=\"https://xcap.example.com/xcap-root/"
                                               "pres-rules/"));
    /* the presence XDMS lists pidf-manipulation empty and nothing for the OMA AUIDs */
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body.data, "<folder auid=\"pidf-manipulation\"></folder>"));
    CU_ASSERT_PTR_NULL(strstr(r.body.data, "org.openmobilealliance.pres-rules"));
    CU_ASSERT_PTR_NOT_NULL(
        strstr(r.body.data, "<folder auid=\"rls-services\"><error-code>502</error-code>"));
    char etag[AGGDIR_ETAG_MAX];
    snprintf(etag, sizeof etag, "%s", http_response_get_header(&r, "ETag"));

    dir_get(fw, t, "GET", ALICE_DIR "directory.xml", etag, NULL, &r);
    CU_ASSERT_EQUAL(r.status, 304);
    CU_ASSERT_EQUAL(r.body.len, 0);
    dir_get(fw, t, "GET", ALICE_DIR "directory.xml", "\"other\"", NULL, &r);
    CU_ASSERT_EQUAL(r.status, 200);
    dir_get(fw, t, "GET", ALICE_DIR "directory.xml", NULL, "\"other\"", &r);
    CU_ASSERT_EQUAL(r.status, 412);
    dir_get(fw, t, "HEAD", ALICE_DIR "directory.xml", NULL, etag, &r);
    CU_ASSERT_EQUAL(r.status, 200);

    /* node selectors on the composed document, with its ETag */
    dir_get(fw, t, "GET",
            ALICE_DIR "directory.xml/~~/xcap-directory/folder%5B@auid=%22pres-rules%22%5D", NULL,
            NULL, &r);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_STRING_EQUAL(http_response_get_header(&r, "Content-Type"), "application/xcap-el+xml");
    CU_ASSERT_STRING_EQUAL(http_response_get_header(&r, "ETag"), etag);
    CU_ASSERT_STRING_EQUAL(r.body.data,
                           "<folder auid=\"pres-rules\"><entry uri=\"https://xcap.example.com/"
                           "xcap-root/pres-rules/users/sip:alice@example.com/index\" "
                           "etag=\"pr-1\"/></folder>");
    dir_get(fw, t, "GET", ALICE_DIR "directory.xml/~~/xcap-directory/folder%5B1%5D/entry/@uri",
            NULL, NULL, &r);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_STRING_EQUAL(r.body.data, "https://xcap.example.com/xcap-root/resource-lists/users/"
                                        "sip:alice@example.com/index");
    dir_get(fw, t, "GET",
            ALICE_DIR "directory.xml/~~/d:xcap-directory/d:folder%5B3%5D?xmlns(d=" XDM_DIRECTORY_NS
                      ")",
            NULL, NULL, &r);
    CU_ASSERT_EQUAL(r.status, 200);
    /* the element's bytes as the composed document has them (RFC 4825 §8.3, as at an XDMS) */
    CU_ASSERT_STRING_EQUAL(r.body.data, "<folder auid=\"pidf-manipulation\"></folder>");
    dir_get(fw, t, "GET", ALICE_DIR "directory.xml/~~/xcap-directory/namespace::*", NULL, NULL, &r);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_STRING_EQUAL(r.body.data, "<xcap-directory xmlns=\"" XDM_DIRECTORY_NS "\"/>");
    dir_get(fw, t, "GET", ALICE_DIR "directory.xml/~~/xcap-directory/folder", NULL, NULL, &r);
    CU_ASSERT_EQUAL(r.status, 404); /* ambiguous */
    dir_get(fw, t, "GET", ALICE_DIR "directory.xml/~~/xcap-directory/folder%5B9%5D", NULL, NULL,
            &r);
    CU_ASSERT_EQUAL(r.status, 404);
    dir_get(fw, t, "GET", ALICE_DIR "directory.xml/~~/xcap-directory/folder%5B@", NULL, NULL, &r);
    CU_ASSERT_EQUAL(r.status, 400);
    dir_get(fw, t, "GET",
            ALICE_DIR "directory.xml/~~/xcap-directory/folder%5B@auid=%22pres-rules%22%5D",
            "\"no\"", "\"no\"", &r);
    CU_ASSERT_EQUAL(r.status, 412);

    /* read-only, one document only, another user's directory */
    dir_get(fw, t, "PUT", ALICE_DIR "directory.xml", NULL, NULL, &r);
    CU_ASSERT_EQUAL(r.status, 405);
    CU_ASSERT_STRING_EQUAL(http_response_get_header(&r, "Allow"), "GET, HEAD");
    dir_get(fw, t, "GET", ALICE_DIR "other.xml", NULL, NULL, &r);
    CU_ASSERT_EQUAL(r.status, 404);
    dir_get(fw, t, "GET", ALICE_DIR, NULL, NULL, &r);
    CU_ASSERT_EQUAL(r.status, 404);
    dir_get(fw, t, "GET", "/xcap-root/org.openmobilealliance.xcap-directory/global/directory.xml",
            NULL, NULL, &r);
    CU_ASSERT_EQUAL(r.status, 404);
    dir_get(fw, t, "GET",
            "/xcap-root/org.openmobilealliance.xcap-directory/users/sip:bob@example.com/"
            "directory.xml",
            NULL, NULL, &r);
    CU_ASSERT_EQUAL(r.status, 403);
    dir_get(fw, t, "GET", "/xcap-root/org.openmobilealliance.xcap-directory/users/%00/x", NULL,
            NULL, &r);
    CU_ASSERT_EQUAL(r.status, 400);

    for (size_t i = 0; i < r.n_headers; i++) {
        free(r.headers[i].name);
        free(r.headers[i].value);
    }
    free(r.headers);
    buf_release(&r.body);
    forward_free(fw);
    route_table_free(t);
}

static CU_TestInfo compose_tests[] = {
    {"URI re-rooting", test_rewrite},
    {"folders, errors, ETag, schema", test_compose},
    {"xcap-caps union against the schema", test_caps_schema},
    CU_TEST_INFO_NULL,
};

static CU_TestInfo net_tests[] = {
    {"parallel requests", test_forward_many},
    {"xcap-caps cache", test_caps_cache},
    {"directory requests", test_directory_requests},
    CU_TEST_INFO_NULL,
};

int main(void)
{
    log_init("test_aggdir", LOG_LEVEL_ERROR);
    xdoc_global_init();
    CU_SuiteInfo suites[] = {
        {"compose", NULL, NULL, NULL, NULL, compose_tests},
        {"upstreams", net_init, net_clean, NULL, NULL, net_tests},
        CU_SUITE_INFO_NULL,
    };
    int rc = unit_run(suites);
    xdoc_global_cleanup();
    return rc;
}
