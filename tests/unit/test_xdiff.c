/* xdms/xdiff.c (RFC 5261 operations from change-log details, RFC 5874 element/attribute
 * reports) and the test applier tests/sipua/xpatch.c, then the property that matters
 * (RFC 5874 §4; RFC 5261 §5): over long random sequences of document, element and attribute PUTs
 * and DELETEs run by the real engine on a real store, the operations built from each change-log
 * record turn a client copy of the previous version into the new version (inclusive C14N with
 * comments equal to the stored document's), one change at a time and aggregated. */
#include <ftw.h>
#include <libxml/parser.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "buf.h"
#include "engine.h"
#include "nodesel.h"
#include "store.h"
#include "unit.h"
#include "xdiff.h"
#include "xdoc.h"
#include "xpatch.h"

#define NS_RL "urn:ietf:params:xml:ns:resource-lists"
#define NS_X "urn:example:x"
#define DIFF_OPEN "<xcap-diff xmlns=\"urn:ietf:params:xml:ns:xcap-diff\" xcap-root=\"http://h/\">"

/* ---- operations from details --------------------------------------------------------------- */

static char *render_detail(const char *detail, int *rc)
{
    struct xdiff_op op;
    *rc = xdiff_op_from_detail(detail, strlen(detail), &op);
    if (*rc != 0)
        return NULL;
    struct buf b;
    buf_init(&b, 1 << 20);
    CU_ASSERT_EQUAL(xdiff_op_render(&b, &op), 0);
    xdiff_op_release(&op);
    return buf_detach(&b, NULL);
}

static void expect_op(const char *detail, const char *want)
{
    int rc;
    char *got = render_detail(detail, &rc);
    if (rc != 0)
        fprintf(stderr, "\n  refused: %s", detail);
    CU_ASSERT_EQUAL(rc, 0);
    if (got && strcmp(got, want) != 0)
        fprintf(stderr, "\n  detail %s\n  gave %s  want %s", detail, got, want);
    CU_ASSERT_STRING_EQUAL(got ? got : "", want);
    free(got);
}

static void test_ops_from_detail(void)
{
    /* Element add: the default namespace and the prefixes the content uses (but not the unused
     * ones) are declared on the content, so the xcap-diff default cannot capture its names. */
    expect_op("op=add\nsel=/*/*[2]\npos=after\ntype=\nns= " NS_RL "\nns=x " NS_X
              "\nns=y urn:unused\n\n<entry uri=\"sip:a@b\"><x:ext x:k=\"1\"/></entry>",
              "    <add sel=\"/*/*[2]\" pos=\"after\"><entry xmlns=\"" NS_RL "\" xmlns:x=\"" NS_X
              "\" uri=\"sip:a@b\"><x:ext x:k=\"1\"/></entry></add>\n");
    /* Appended as last child: no pos. A content that declares its default keeps it. */
    expect_op("op=add\nsel=/*\npos=\ntype=\nns= " NS_RL "\n\n<list xmlns=\"urn:other\"/>",
              "    <add sel=\"/*\"><list xmlns=\"urn:other\"/></add>\n");
    /* No default namespace where it lands: xmlns="" keeps unqualified names unqualified. */
    expect_op("op=replace\nsel=/*/*[1]\npos=\ntype=\n\n<a><b/></a>",
              "    <replace sel=\"/*/*[1]\"><a xmlns=\"\"><b/></a></replace>\n");
    expect_op("op=remove\nsel=/*/*[3]/*[1]\npos=\ntype=\n\n",
              "    <remove sel=\"/*/*[3]/*[1]\"/>\n");
    /* Attributes: values become text equal to the parsed value (references expanded, literal
     * tab and newline normalized to spaces as in an attribute, CR kept by a reference). */
    expect_op("op=replace\nsel=/*/*[1]/@name\npos=\ntype=\nns= " NS_RL
              "\n\na&amp;b \"q\" &lt;\t>&#13;&#10;",
              "    <replace sel=\"/*/*[1]/@name\">a&amp;b \"q\" &lt; &gt;&#13;\n</replace>\n");
    expect_op("op=add\nsel=/*/*[1]\npos=\ntype=@x:k\nns= " NS_RL "\nns=x " NS_X "\n\nv",
              "    <add sel=\"/*/*[1]\" type=\"@x:k\" xmlns:x=\"" NS_X "\">v</add>\n");
    expect_op("op=remove\nsel=/*/*[1]/@xml:lang\npos=\ntype=\n\n",
              "    <remove sel=\"/*/*[1]/@xml:lang\"/>\n");
    expect_op("op=remove\nsel=/*/@k\npos=\ntype=\n\n", "    <remove sel=\"/*/@k\"/>\n");

    int rc;
    CU_ASSERT_PTR_NULL(render_detail("", &rc));
    CU_ASSERT_EQUAL(rc, 1); /* whole-document write */
    /* An edit too large for the change log: ETags only, no operation. */
    CU_ASSERT_PTR_NULL(render_detail(XDIFF_DETAIL_ETAGS_ONLY, &rc));
    CU_ASSERT_EQUAL(rc, -1);
    /* Cannot be exact: an attribute prefix without a binding, an unknown line, bad pieces. */
    const char *bad[] = {
        "op=remove\nsel=/*/*[1]/@x:k\npos=\ntype=\n\n",
        "op=add\nsel=/*\npos=\ntype=@p:k\nns= " NS_RL "\n\nv",
        "op=add\nsel=/*\npos=\ntype=@xdmattr0:k\nns=xdmattr0 urn:z\n\nv",
        "op=add\nsel=/*\npos=\ntype=\nfuture=1\n\n<a/>",
        "op=move\nsel=/*\npos=\ntype=\n\n",
        "op=add\nsel=/*\npos=inside\ntype=\n\n<a/>",
        "op=add\nsel=/*\npos=\ntype=\n\n<a/><b/>",
        "op=add\nsel=/*\npos=\ntype=\n\n<a>",
        "op=add\nsel=/*\npos=\ntype=\n\n<p:a/>",
        "op=add\nsel=\npos=\ntype=\n\n<a/>",
        "op=add\nsel=/*",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *got = render_detail(bad[i], &rc);
        if (rc != -1)
            fprintf(stderr, "\n  accepted: %s", bad[i]);
        CU_ASSERT_EQUAL(rc, -1);
        free(got);
    }
}

static void test_root_and_prolog(void)
{
    const char *d1 = "<?xml version=\"1.0\"?>\n<!-- c1 -->\n<r xmlns:p=\"urn:p\"><p:a/></r>\n";
    const char *d2 = "<?xml version='1.0' encoding='UTF-8'?><!-- c1 --><r><b/></r>";
    const char *d3 = "<!-- c2 --><r/>";
    const char *d4 = "<r/><?pi x?>";
    uint64_t h1, h2, h3, h4;
    CU_ASSERT_EQUAL(xdiff_prolog_digest(d1, strlen(d1), &h1), 0);
    CU_ASSERT_EQUAL(xdiff_prolog_digest(d2, strlen(d2), &h2), 0);
    CU_ASSERT_EQUAL(xdiff_prolog_digest(d3, strlen(d3), &h3), 0);
    CU_ASSERT_EQUAL(xdiff_prolog_digest(d4, strlen(d4), &h4), 0);
    CU_ASSERT_EQUAL(h1, h2); /* the XML declaration and white space do not count */
    CU_ASSERT_NOT_EQUAL(h1, h3);
    CU_ASSERT_NOT_EQUAL(h3, h4);
    CU_ASSERT_EQUAL(xdiff_prolog_digest("no element", 10, &h4), -1);

    struct xdiff_op op;
    CU_ASSERT_EQUAL_FATAL(xdiff_op_root(d1, strlen(d1), &op), 0);
    CU_ASSERT_STRING_EQUAL(op.sel, "/*");
    CU_ASSERT_EQUAL(op.kind, XDIFF_REPLACE);
    CU_ASSERT_STRING_EQUAL(op.content, "<r xmlns=\"\" xmlns:p=\"urn:p\"><p:a/></r>");
    xdiff_op_release(&op);
}

/* ---- the applier on its own ----------------------------------------------------------------- */

static xmlDocPtr parse(const char *s)
{
    return xmlReadMemory(s, (int)strlen(s), NULL, "UTF-8", XML_PARSE_NONET);
}

/* Applies the operations of a <diff> body to doc text; returns the C14N or NULL on failure. */
static char *apply_text(const char *doc, const char *diff, char *err, size_t errlen)
{
    xmlDocPtr d = parse(doc), p = parse(diff);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    int rc = xpatch_apply(d, xmlDocGetRootElement(p), err, errlen);
    char *out = rc == 0 ? xpatch_c14n(d) : NULL;
    xmlFreeDoc(d);
    xmlFreeDoc(p);
    return out;
}

static void expect_apply(const char *doc, const char *diff, const char *want)
{
    char err[256] = "";
    char *got = apply_text(doc, diff, err, sizeof err);
    char *exp = xpatch_c14n_bytes(want, strlen(want));
    CU_ASSERT_PTR_NOT_NULL(got);
    CU_ASSERT_PTR_NOT_NULL(exp);
    if (got && exp && strcmp(got, exp) != 0)
        fprintf(stderr, "\n  got  %s\n  want %s", got, exp);
    if (!got)
        fprintf(stderr, "\n  failed: %s", err);
    CU_ASSERT(got && exp && strcmp(got, exp) == 0);
    xmlFree(got);
    xmlFree(exp);
}

static void expect_apply_fails(const char *doc, const char *diff)
{
    char err[256] = "";
    char *got = apply_text(doc, diff, err, sizeof err);
    CU_ASSERT_PTR_NULL(got);
    CU_ASSERT_NOT_EQUAL(err[0], '\0');
    xmlFree(got);
}

static void test_applier(void)
{
    const char *doc = "<doc xmlns=\"urn:d\" xmlns:q=\"urn:q\"><a id=\"1\"/>\n<a id=\"2\"><b/></a>"
                      "<q:c/></doc>";
    /* Prefixes in selectors come from the patch; unprefixed names take the patch's default
     * namespace (RFC 5261 §4.2.2). */
    expect_apply(doc,
                 "<diff xmlns=\"urn:d\" xmlns:z=\"urn:q\">"
                 "<add sel=\"doc/a[@id='2']\"><n/></add>"
                 "<add sel=\"/doc/z:c\" type=\"@k\">v &amp; w</add>"
                 "<replace sel=\"doc/a[1]/@id\">3</replace>"
                 "<remove sel=\"/*/*[2]/*[1]\"/></diff>",
                 "<doc xmlns=\"urn:d\" xmlns:q=\"urn:q\"><a id=\"3\"/>\n<a id=\"2\"><n/></a>"
                 "<q:c k=\"v &amp; w\"/></doc>");
    /* Positions, pos=before/after/prepend, remove with ws, replace of an element. */
    expect_apply(doc,
                 "<d:diff xmlns:d=\"urn:diff\">"
                 "<d:add sel=\"/*/*[1]\" pos=\"after\"><e xmlns=\"urn:d\"/></d:add>"
                 "<d:add sel=\"/*/*[1]\" pos=\"before\"><f xmlns=\"\"/></d:add>"
                 "<d:add sel=\"/*/*[4]\" pos=\"prepend\"><!--x--></d:add>"
                 "<d:remove sel=\"/*/*[3]\" ws=\"after\"/>"
                 "<d:replace sel=\"/*/*[4]\"><q:c2 xmlns:q=\"urn:q\"/></d:replace></d:diff>",
                 "<doc xmlns=\"urn:d\" xmlns:q=\"urn:q\"><f xmlns=\"\"/><a id=\"1\"/>"
                 "<a id=\"2\"><!--x--><b/></a><q:c2/></doc>");
    /* Content whose unprefixed names are not re-declared lands in the patch's default
     * namespace: the rule the renderer guards against. */
    expect_apply("<r xmlns=\"urn:r\"/>",
                 "<diff xmlns=\"urn:diff\"><add sel=\"/*\"><x/></add></diff>",
                 "<r xmlns=\"urn:r\"><x xmlns=\"urn:diff\"/></r>");
    expect_apply_fails(doc, "<diff><remove sel=\"/*/*[9]\"/></diff>");
    expect_apply_fails(doc, "<diff><remove sel=\"/*/*\"/></diff>");
    expect_apply_fails(doc, "<diff><remove sel=\"/*\"/></diff>");
    expect_apply_fails(doc, "<diff><remove sel=\"/*/u:a\"/></diff>");
    expect_apply_fails(doc, "<diff><add sel=\"/*/*[1]\" type=\"@id\">x</add></diff>");
    expect_apply_fails(doc, "<diff><replace sel=\"/*/*[1]\"><a/><b/></replace></diff>");
    expect_apply_fails(doc, "<diff><remove sel=\"/*/*[1]\" ws=\"before\"/></diff>");
    expect_apply_fails(doc, "<diff><add sel=\"/*/*[1]//x\"/></diff>");
}

/* ---- aggregation ---------------------------------------------------------------------------- */

static struct xdiff_op mkop(const char *detail)
{
    struct xdiff_op op;
    CU_ASSERT_EQUAL(xdiff_op_from_detail(detail, strlen(detail), &op), 0);
    return op;
}

static void test_simplify(void)
{
    struct xdiff_op ops[8];
    size_t n = 0;
    /* add after [2] then remove [3]: gone; add attribute then remove it: gone. */
    ops[n++] = mkop("op=add\nsel=/*/*[2]\npos=after\ntype=\n\n<a/>");
    ops[n++] = mkop("op=add\nsel=/*/*[1]\npos=\ntype=@k\n\n1");
    ops[n++] = mkop("op=remove\nsel=/*/*[1]/@k\npos=\ntype=\n\n");
    ops[n++] = mkop("op=remove\nsel=/*/*[3]\npos=\ntype=\n\n");
    xdiff_ops_simplify(ops, &n);
    CU_ASSERT_EQUAL(n, 0);

    /* replace, replace: the last; add before [1], replace [1]: the add with the new content;
     * replace then remove: the remove; an append is kept (its position is unknown). */
    n = 0;
    ops[n++] = mkop("op=replace\nsel=/*/*[1]/@k\npos=\ntype=\n\n1");
    ops[n++] = mkop("op=replace\nsel=/*/*[1]/@k\npos=\ntype=\n\n2");
    ops[n++] = mkop("op=add\nsel=/*/*[1]\npos=before\ntype=\n\n<a/>");
    ops[n++] = mkop("op=replace\nsel=/*/*[1]\npos=\ntype=\n\n<b/>");
    ops[n++] = mkop("op=replace\nsel=/*/*[2]\npos=\ntype=\n\n<c/>");
    ops[n++] = mkop("op=remove\nsel=/*/*[2]\npos=\ntype=\n\n");
    ops[n++] = mkop("op=add\nsel=/*\npos=\ntype=\n\n<d/>");
    ops[n++] = mkop("op=remove\nsel=/*/*[3]\npos=\ntype=\n\n");
    xdiff_ops_simplify(ops, &n);
    CU_ASSERT_EQUAL_FATAL(n, 5);
    CU_ASSERT_STRING_EQUAL(ops[0].content, "2");
    CU_ASSERT_EQUAL(ops[1].kind, XDIFF_ADD);
    CU_ASSERT_STRING_EQUAL(ops[1].content, "<b xmlns=\"\"/>");
    CU_ASSERT_EQUAL(ops[2].kind, XDIFF_REMOVE);
    CU_ASSERT_STRING_EQUAL(ops[2].sel, "/*/*[2]");
    CU_ASSERT_EQUAL(ops[3].kind, XDIFF_ADD);
    CU_ASSERT_EQUAL(ops[4].kind, XDIFF_REMOVE);
    for (size_t i = 0; i < n; i++)
        xdiff_op_release(&ops[i]);
}

/* ---- element and attribute reports ---------------------------------------------------------- */

static void test_node_report(void)
{
    const char *doc = "<resource-lists xmlns=\"" NS_RL "\" xmlns:x=\"" NS_X "\">"
                      "<list name=\"f\" x:k=\"a&amp;b\"><entry uri=\"sip:b@x\"/><x:e/></list>"
                      "</resource-lists>";
    struct nodesel ns;
    struct xcap_err err = {0};
    CU_ASSERT_EQUAL_FATAL(nodesel_parse("resource-lists/list[@name=\"f\"]", NULL, NS_RL, &ns, &err),
                          XCAP_OK);
    struct buf b;
    buf_init(&b, 1 << 20);
    uint64_t h1 = 0, h2 = 0, h3 = 0;
    CU_ASSERT_EQUAL(xdiff_node_report(&b, "s", "", doc, strlen(doc), &ns, &h1), 0);
    CU_ASSERT_STRING_EQUAL(b.data, "  <element sel=\"s\"><list xmlns=\"" NS_RL "\" xmlns:x=\"" NS_X
                                   "\" name=\"f\" x:k=\"a&amp;b\"><entry uri=\"sip:b@x\"/>"
                                   "<x:e/></list></element>\n");
    buf_reset(&b);
    CU_ASSERT_EQUAL(xdiff_node_report(&b, "s", "", NULL, 0, &ns, &h2), 0);
    CU_ASSERT_STRING_EQUAL(b.data, "  <element sel=\"s\" exists=\"0\"/>\n");
    CU_ASSERT_NOT_EQUAL(h1, h2);
    nodesel_release(&ns);

    CU_ASSERT_EQUAL_FATAL(
        nodesel_parse("resource-lists/list/@y:k", "xmlns(y=" NS_X ")", NS_RL, &ns, &err), XCAP_OK);
    buf_reset(&b);
    CU_ASSERT_EQUAL(
        xdiff_node_report(&b, "s/@y:k", " xmlns:y=\"" NS_X "\"", doc, strlen(doc), &ns, &h3), 0);
    CU_ASSERT_STRING_EQUAL(b.data, "  <attribute sel=\"s/@y:k\" xmlns:y=\"" NS_X
                                   "\">a&amp;b</attribute>\n");
    nodesel_release(&ns);
    xcap_err_release(&err);
    buf_release(&b);
}

/* ---- the property -----------------------------------------------------------------------------
 */

#define PROP_ALICE "sip:alice@example.com"
#define PROP_DOC "/resource-lists/users/" PROP_ALICE "/index"

struct prop {
    char dir[64];
    struct store *store;
    struct engine *engine;
    uint64_t cursor;
    uint64_t rng;
    unsigned serial;
    /* client copy (NULL when the document does not exist) and its ETag */
    xmlDocPtr copy;
    char etag[STORE_ETAG_MAX];
    /* aggregated view: a second copy that receives batches */
    xmlDocPtr agg;
    char agg_etag[STORE_ETAG_MAX];
    struct xdiff_op batch[64];
    size_t n_batch;
    bool batch_exact; /* every change of the batch had exact operations */
    char batch_first[STORE_ETAG_MAX];
    /* statistics */
    unsigned writes, patched, fetched, refused, agg_patched, agg_fetched, agg_unchanged;
    uint64_t known_prolog; /* digest of the client's version, for whole-document writes */
    bool prolog_known;
};

static int prop_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static unsigned prop_rand(struct prop *p, unsigned n)
{
    p->rng ^= p->rng << 13;
    p->rng ^= p->rng >> 7;
    p->rng ^= p->rng << 17;
    return (unsigned)(p->rng % n);
}

/* Percent-encodes the characters XCAP URIs may not carry raw. */
static void prop_encode(struct buf *b, const char *s)
{
    for (; *s; s++) {
        if (strchr("[]\" <>%", *s))
            buf_printf(b, "%%%02X", (unsigned char)*s);
        else
            buf_append(b, s, 1);
    }
}

static enum xcap_status prop_run(struct prop *p, enum engine_method m, const char *node_sel,
                                 const char *query, const char *ctype, const char *body)
{
    struct buf path;
    buf_init(&path, 1 << 16);
    buf_puts(&path, PROP_DOC);
    if (node_sel) {
        buf_puts(&path, "/~~/");
        prop_encode(&path, node_sel);
    }
    struct xcap_uri u;
    struct xcap_err err = {0};
    enum xcap_status st = xcap_uri_parse("", path.data, query, &u, &err);
    buf_release(&path);
    if (st != XCAP_OK) {
        xcap_err_release(&err);
        return st;
    }
    struct engine_request req = {
        .method = m,
        .uri = &u,
        .au = appusage_find(ROLE_SHARED_LIST, "resource-lists"),
        .content_type = ctype,
        .body = body,
        .body_len = body ? strlen(body) : 0,
    };
    struct engine_reply rep;
    buf_init(&rep.body, 1 << 20);
    st = engine_execute(p->engine, &req, &rep, &err);
    buf_release(&rep.body);
    xcap_err_release(&err);
    xcap_uri_release(&u);
    return st;
}

/* The stored document (NULL when absent). */
static char *prop_stored(struct prop *p, char etag[STORE_ETAG_MAX], size_t *len)
{
    struct store_txn *t;
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(p->store, false, &t), STORE_OK);
    struct doc_key k = {"resource-lists", "users", PROP_ALICE, "index"};
    struct store_doc d;
    char *out = NULL;
    if (store_doc_get(t, &k, &d) == STORE_OK) {
        out = d.data;
        *len = d.len;
        snprintf(etag, STORE_ETAG_MAX, "%s", d.etag);
        d.data = NULL;
    } else {
        etag[0] = '\0';
    }
    store_txn_abort(t);
    return out;
}

static void prop_fetch(struct prop *p, xmlDocPtr *copy, char *etag)
{
    size_t len = 0;
    char *data = prop_stored(p, etag, &len);
    if (*copy)
        xmlFreeDoc(*copy);
    *copy = data ? xmlReadMemory(data, (int)len, NULL, "UTF-8", XML_PARSE_NONET) : NULL;
    free(data);
}

/* Client copy equals the stored document (both absent, or same C14N). */
static void prop_check(struct prop *p, xmlDocPtr copy, const char *etag, const char *what)
{
    char st_etag[STORE_ETAG_MAX];
    size_t len = 0;
    char *data = prop_stored(p, st_etag, &len);
    CU_ASSERT_STRING_EQUAL(etag, st_etag);
    if (!data || !copy) {
        CU_ASSERT_TRUE(!data && !copy);
        free(data);
        return;
    }
    char *want = xpatch_c14n_bytes(data, len);
    char *got = xpatch_c14n(copy);
    bool same = want && got && strcmp(want, got) == 0;
    if (!same)
        fprintf(stderr, "\n  %s copy differs after write %u\n  server %s\n  client %s\n", what,
                p->writes, want ? want : "(null)", got ? got : "(null)");
    CU_ASSERT_TRUE(same);
    xmlFree(want);
    xmlFree(got);
    free(data);
}

/* Applies ops to a copy through a rendered, re-parsed xcap-diff body (as a client would). */
static bool prop_apply(xmlDocPtr copy, const struct xdiff_op *ops, size_t n)
{
    struct buf b;
    buf_init(&b, 1 << 24);
    buf_puts(&b, DIFF_OPEN "<document sel=\"x\">");
    for (size_t i = 0; i < n; i++)
        CU_ASSERT_EQUAL(xdiff_op_render(&b, &ops[i]), 0);
    buf_puts(&b, "</document></xcap-diff>");
    xmlDocPtr diff = xmlReadMemory(b.data, (int)b.len, NULL, "UTF-8", XML_PARSE_NONET);
    CU_ASSERT_PTR_NOT_NULL_FATAL(diff);
    char err[512] = "";
    xmlNodePtr document = xmlDocGetRootElement(diff)->children;
    int rc = xpatch_apply(copy, document, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "\n  patch failed: %s\n  %s\n", err, b.data);
    CU_ASSERT_EQUAL(rc, 0);
    xmlFreeDoc(diff);
    buf_release(&b);
    return rc == 0;
}

static void prop_batch_reset(struct prop *p)
{
    for (size_t i = 0; i < p->n_batch; i++)
        xdiff_op_release(&p->batch[i]);
    p->n_batch = 0;
    p->batch_exact = true;
    snprintf(p->batch_first, sizeof p->batch_first, "%s", p->agg_etag);
}

/* Delivers the aggregated batch to the second copy: simplified operations, or a fetch. */
static void prop_batch_flush(struct prop *p)
{
    bool exact = p->batch_exact && p->agg && p->n_batch > 0;
    if (exact) {
        xdiff_ops_simplify(p->batch, &p->n_batch);
        if (p->n_batch == 0)
            p->agg_unchanged++; /* <body-not-changed/> */
        else
            p->agg_patched++;
        if (!prop_apply(p->agg, p->batch, p->n_batch))
            prop_fetch(p, &p->agg, p->agg_etag);
        size_t len;
        char *d = prop_stored(p, p->agg_etag, &len);
        free(d);
    } else {
        p->agg_fetched++;
        prop_fetch(p, &p->agg, p->agg_etag);
    }
    prop_check(p, p->agg, p->agg_etag, "aggregated");
    prop_batch_reset(p);
}

struct prop_change_ctx {
    struct prop *p;
    unsigned count;
};

/* What a subscriber in xcap-patching mode does with one change-log record. */
static int prop_on_change(void *cls, const struct store_change *c)
{
    struct prop_change_ctx *ctx = cls;
    struct prop *p = ctx->p;
    ctx->count++;
    p->cursor = c->seq;
    CU_ASSERT_STRING_EQUAL(c->prev_etag, p->etag);
    struct xdiff_op op;
    int rc = c->kind == STORE_CHANGE_PUT && c->prev_etag[0] && p->copy
                 ? xdiff_op_from_detail(c->detail, c->detail_len, &op)
                 : -1;
    if (rc == 1) {
        /* A whole-document write: a replace of the document element when the prolog did not
         * change (the notifier knows the prolog of the version the client has). */
        size_t len;
        char etag[STORE_ETAG_MAX];
        char *data = prop_stored(p, etag, &len);
        uint64_t h;
        rc = -1;
        if (data && strcmp(etag, c->new_etag) == 0 && p->prolog_known &&
            xdiff_prolog_digest(data, len, &h) == 0 && h == p->known_prolog)
            rc = xdiff_op_root(data, len, &op);
        free(data);
    }
    if (rc == 0) {
        p->patched++;
        if (!prop_apply(p->copy, &op, 1))
            prop_fetch(p, &p->copy, p->etag);
        snprintf(p->etag, sizeof p->etag, "%s", c->new_etag);
        if (p->batch_exact && p->n_batch < sizeof p->batch / sizeof p->batch[0]) {
            CU_ASSERT_EQUAL(xdiff_op_copy(&op, &p->batch[p->n_batch++]), 0);
        } else {
            p->batch_exact = false;
        }
        xdiff_op_release(&op);
    } else {
        if (c->kind == STORE_CHANGE_PUT && c->prev_etag[0] && c->detail_len > 0)
            p->refused++;
        p->fetched++;
        p->batch_exact = false;
        prop_fetch(p, &p->copy, p->etag);
        CU_ASSERT_STRING_EQUAL(p->etag, c->new_etag);
    }
    /* The notifier learns the prolog of a version it can read. */
    size_t len;
    char etag[STORE_ETAG_MAX];
    char *data = prop_stored(p, etag, &len);
    p->prolog_known = data && strcmp(etag, c->new_etag) == 0 &&
                      xdiff_prolog_digest(data, len, &p->known_prolog) == 0;
    free(data);
    return 0;
}

/* Builds a random positional selector of an existing element ("*" then "*[k]" steps) and
 * returns its depth (0 when the document has no element children to pick). */
static size_t prop_pick(struct prop *p, xmlDocPtr d, struct buf *sel, bool want_root_ok)
{
    xmlNodePtr n = xmlDocGetRootElement(d);
    buf_puts(sel, "*");
    size_t depth = 0;
    for (;;) {
        unsigned count = 0;
        for (xmlNodePtr c = n->children; c; c = c->next)
            count += c->type == XML_ELEMENT_NODE;
        if (count == 0 || (depth > 0 && prop_rand(p, 3) == 0) ||
            (want_root_ok && depth == 0 && prop_rand(p, 8) == 0))
            break;
        unsigned k = 1 + prop_rand(p, count), i = 0;
        for (xmlNodePtr c = n->children; c; c = c->next)
            if (c->type == XML_ELEMENT_NODE && ++i == k)
                n = c;
        buf_printf(sel, "/*[%u]", k);
        depth++;
    }
    return depth;
}

static const char *const prop_docs[] = {
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<resource-lists xmlns=\"" NS_RL "\">\n"
    "  <list name=\"a\">\n    <entry uri=\"sip:1@x\"/>\n  </list>\n</resource-lists>\n",
    "<!-- head --><rl:resource-lists xmlns:rl=\"" NS_RL "\" xmlns:x=\"" NS_X "\">"
    "<rl:list name=\"b\" x:k=\"1\"><rl:entry uri=\"sip:2@x\"><rl:display-name>B &amp; c"
    "</rl:display-name></rl:entry></rl:list><x:ext/></rl:resource-lists>",
    "<resource-lists xmlns=\"" NS_RL "\" xmlns:x=\"" NS_X "\"><list/><list><![CDATA[<t>]]><!--c-->"
    "</list></resource-lists><?pi data?>",
    "<resource-lists xmlns=\"" NS_RL "\"/>",
};

static void prop_body(struct prop *p, struct buf *b)
{
    unsigned s = ++p->serial;
    switch (prop_rand(p, 7)) {
    case 0:
        buf_printf(b, "<entry uri=\"sip:n%u@x\"/>", s);
        break;
    case 1:
        buf_printf(b,
                   "<list name=\"l%u\">\n  <entry uri=\"sip:m%u@x\"><display-name>M%u &lt;"
                   "</display-name></entry>\n</list>",
                   s, s, s);
        break;
    case 2:
        buf_printf(b, "<x:ext xmlns:x=\"" NS_X "\" x:n=\"%u\"><inner/></x:ext>", s);
        break;
    case 3:
        buf_printf(b, "<other xmlns=\"urn:example:other\"><deep a=\"%u\"/></other>", s);
        break;
    case 4:
        buf_printf(b, "<entry xmlns=\"\" uri=\"%u\"><!-- note --></entry>", s);
        break;
    case 5:
        buf_printf(b, "<list name=\"q%u\" xml:lang=\"en\">text %u<![CDATA[ & ]]></list>", s, s);
        break;
    default:
        buf_printf(b, "<entry uri=\"sip:w%u@x\">\n\t<display-name>W</display-name>\n</entry>", s);
        break;
    }
}

static void prop_value(struct prop *p, struct buf *b)
{
    static const char *const vals[] = {
        "plain",     "a&amp;b",           "\"dq\"",      "it's",
        "tab\there", "nl&#10;x",          "cr&#13;y",    "&lt;&gt;",
        "",          "both ' and &quot;", "caf\xc3\xa9",
    };
    buf_puts(b, vals[prop_rand(p, sizeof vals / sizeof vals[0])]);
}

/* One random write; returns whether it changed the document. */
static bool prop_write(struct prop *p)
{
    size_t len = 0;
    char etag[STORE_ETAG_MAX];
    char *data = prop_stored(p, etag, &len);
    xmlDocPtr d = data ? xmlReadMemory(data, (int)len, NULL, "UTF-8", XML_PARSE_NONET) : NULL;
    free(data);
    struct buf sel, body;
    buf_init(&sel, 1 << 16);
    buf_init(&body, 1 << 16);
    enum xcap_status st = XCAP_BAD_REQUEST;
    unsigned what = d ? prop_rand(p, 20) : 0;
    if (what == 0 || (what == 1 && prop_rand(p, 4) == 0)) {
        st = prop_run(p, ENGINE_PUT, NULL, NULL, "application/resource-lists+xml",
                      prop_docs[prop_rand(p, sizeof prop_docs / sizeof prop_docs[0])]);
    } else if (what == 1) {
        st = prop_run(p, ENGINE_DELETE, NULL, NULL, NULL, NULL);
    } else if (what <= 8) { /* element PUT: insert or replace */
        prop_pick(p, d, &sel, false);
        switch (prop_rand(p, 4)) {
        case 0: /* replace what was picked, when it is not the root */
            break;
        case 1:
            buf_printf(&sel, "/*[%u]", 1 + prop_rand(p, 4));
            break;
        default:
            buf_printf(&sel, "/entry[@uri=\"sip:n%u@x\"]", p->serial + 1);
            break;
        }
        if (strstr(sel.data, "entry[@uri"))
            buf_printf(&body, "<entry uri=\"sip:n%u@x\"/>", ++p->serial);
        else
            prop_body(p, &body);
        st = prop_run(p, ENGINE_PUT, sel.data, NULL, "application/xcap-el+xml", body.data);
    } else if (what <= 12) { /* element DELETE */
        if (prop_pick(p, d, &sel, false) > 0)
            st = prop_run(p, ENGINE_DELETE, sel.data, NULL, NULL, NULL);
    } else if (what <= 17) { /* attribute PUT */
        prop_pick(p, d, &sel, true);
        static const char *const names[] = {"/@name", "/@uri", "/@k", "/@x:k", "/@z:n"};
        unsigned ni = prop_rand(p, 5);
        buf_puts(&sel, names[ni]);
        prop_value(p, &body);
        st = prop_run(p, ENGINE_PUT, sel.data,
                      ni == 3   ? "xmlns(x=" NS_X ")"
                      : ni == 4 ? "xmlns(z=urn:example:z)"
                                : NULL,
                      "application/xcap-att+xml", body.data);
    } else { /* attribute DELETE of one that exists */
        xmlNodePtr root = xmlDocGetRootElement(d);
        (void)root;
        prop_pick(p, d, &sel, true);
        static const char *const names[] = {"/@name", "/@uri", "/@k", "/@x:k"};
        unsigned ni = prop_rand(p, 4);
        buf_puts(&sel, names[ni]);
        st = prop_run(p, ENGINE_DELETE, sel.data, ni == 3 ? "xmlns(x=" NS_X ")" : NULL, NULL, NULL);
    }
    buf_release(&sel);
    buf_release(&body);
    if (d)
        xmlFreeDoc(d);
    return st == XCAP_OK || st == XCAP_CREATED;
}

static void prop_run_seed(uint64_t seed, unsigned ops)
{
    struct prop *p = calloc(1, sizeof *p);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    p->rng = seed;
    snprintf(p->dir, sizeof p->dir, "/tmp/xdm-test-xdiff-XXXXXX");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(p->dir));
    CU_ASSERT_EQUAL_FATAL(store_open(p->dir, NULL, &p->store), STORE_OK);
    struct engine_config ec = {.role = ROLE_SHARED_LIST, .xcap_root = "http://h/xcap-root/"};
    p->engine = engine_new(p->store, &ec);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p->engine);
    prop_batch_reset(p);
    for (unsigned i = 0; i < ops; i++) {
        if (!prop_write(p))
            continue;
        p->writes++;
        struct store_txn *t;
        CU_ASSERT_EQUAL_FATAL(store_txn_begin(p->store, false, &t), STORE_OK);
        struct prop_change_ctx ctx = {.p = p};
        CU_ASSERT_EQUAL(store_change_read(t, p->cursor, prop_on_change, &ctx), STORE_OK);
        store_txn_abort(t);
        CU_ASSERT_EQUAL(ctx.count, 1); /* exactly one record per acknowledged write */
        prop_check(p, p->copy, p->etag, "per-change");
        if (prop_rand(p, 4) == 0)
            prop_batch_flush(p);
    }
    prop_batch_flush(p);
    fprintf(stderr,
            "\n  seed %llu: %u writes, %u patched, %u fetched (%u element edits not "
            "renderable); aggregated: %u patched, %u unchanged, %u fetched",
            (unsigned long long)seed, p->writes, p->patched, p->fetched, p->refused, p->agg_patched,
            p->agg_unchanged, p->agg_fetched);
    /* Most element and attribute edits must travel as patches. */
    CU_ASSERT_TRUE(p->patched * 10 >= p->writes * 6);
    CU_ASSERT_TRUE(p->writes * 2 >= ops);
    prop_batch_reset(p);
    if (p->copy)
        xmlFreeDoc(p->copy);
    if (p->agg)
        xmlFreeDoc(p->agg);
    engine_free(p->engine);
    store_close(p->store);
    nftw(p->dir, prop_rm, 16, FTW_DEPTH | FTW_PHYS);
    free(p);
}

static void test_property(void)
{
    static const uint64_t seeds[] = {0x9e3779b97f4a7c15ull, 42, 7, 0xdeadbeefull};
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++)
        prop_run_seed(seeds[i], 300);
}

static int suite_init(void)
{
    xdoc_global_init();
    return 0;
}

static int suite_clean(void)
{
    xdoc_global_cleanup();
    return 0;
}

int main(void)
{
    CU_TestInfo tests[] = {
        {"operations from change-log details", test_ops_from_detail},
        {"whole-document replace and prolog digest", test_root_and_prolog},
        {"RFC 5261 applier", test_applier},
        {"aggregation", test_simplify},
        {"element and attribute reports", test_node_report},
        {"property: patches are exact over random edits", test_property},
        CU_TEST_INFO_NULL,
    };
    CU_SuiteInfo suites[] = {
        {"xdiff", suite_init, suite_clean, NULL, NULL, tests},
        CU_SUITE_INFO_NULL,
    };
    return unit_run(suites);
}
