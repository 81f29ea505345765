/* Element and attribute edits on document bytes (RFC 4825 §8.2.3, §8.2.4, §8.4): the RFC's
 * worked insertion examples, replacement in place, the idempotency checks, body checks. */
#include <CUnit/CUnit.h>
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"
#include "unit.h"
#include "xdoc.h"

#define NS "urn:ietf:params:xml:ns:resource-lists"

static const struct appusage au = {.auid = "resource-lists",
                                   .mime = "application/resource-lists+xml",
                                   .default_ns = NS,
                                   .role = ROLE_SHARED_LIST};

/* The document of the RFC 4825 §8.2.3 examples. */
static const char start[] = "<?xml version='1.0' encoding='UTF-8'?>\n"
                            "<root xmlns=\"" NS "\">\n"
                            "<el1 att=\"first\"/>\n"
                            "<el1 att=\"second\"/>\n"
                            "<!-- comment -->\n"
                            "<el2 att=\"first\"/>\n"
                            "</root>";

#define DOC_HEAD "<?xml version='1.0' encoding='UTF-8'?>\n<root xmlns=\"" NS "\">\n"

/* Runs one request on doc; returns the status and leaves the new bytes in out. */
static enum xcap_status run_q(const char *doc, enum engine_method m, const char *sel,
                              const char *query, const char *ctype, const char *body,
                              struct buf *out, bool *created, struct xcap_err *err)
{
    char auid[] = "resource-lists", xui[] = "sip:alice@example.com", path[] = "index";
    char doc_sel[] = "resource-lists/users/sip:alice@example.com/index";
    char *node_sel = strdup(sel);
    char *q = query ? strdup(query) : NULL;
    struct xcap_uri uri = {.auid = auid,
                           .tree = XCAP_TREE_USERS,
                           .xui = xui,
                           .path = path,
                           .node_sel = node_sel,
                           .query = q,
                           .doc_sel = doc_sel};
    struct engine_request req = {.method = m,
                                 .uri = &uri,
                                 .au = &au,
                                 .content_type = ctype,
                                 .body = body ? body : "",
                                 .body_len = body ? strlen(body) : 0};
    buf_reset(out);
    enum xcap_status st = engine_node_transform("http://x.example.com/xcap-root/", &req, doc,
                                                strlen(doc), out, created, err);
    free(node_sel);
    free(q);
    return st;
}

static enum xcap_status run(const char *doc, enum engine_method m, const char *sel,
                            const char *ctype, const char *body, struct buf *out, bool *created,
                            struct xcap_err *err)
{
    return run_q(doc, m, sel, NULL, ctype, body, out, created, err);
}

static void expect_put(const char *sel, const char *body, enum xcap_status want,
                       const char *want_doc)
{
    struct buf out;
    buf_init(&out, SIZE_MAX);
    struct xcap_err err = {0};
    bool created = false;
    enum xcap_status st =
        run(start, ENGINE_PUT, sel, "application/xcap-el+xml", body, &out, &created, &err);
    if (st != want)
        fprintf(stderr, "\n  PUT %s: got %s (%s)\n", sel, status_name(st),
                err.phrase ? err.phrase : "");
    CU_ASSERT_EQUAL(st, want);
    if (st == XCAP_OK && want_doc) {
        if (strcmp(out.data, want_doc) != 0)
            fprintf(stderr, "\n  PUT %s gave:\n%s\n", sel, out.data);
        CU_ASSERT_STRING_EQUAL(out.data, want_doc);
        /* DELETE of the same URI gives back exactly the document before the PUT */
        struct buf back;
        buf_init(&back, SIZE_MAX);
        if (created) {
            CU_ASSERT_EQUAL(run(out.data, ENGINE_DELETE, sel, NULL, NULL, &back, &created, &err),
                            XCAP_OK);
            CU_ASSERT_STRING_EQUAL(back.data ? back.data : "", start);
        }
        buf_release(&back);
    }
    xcap_err_release(&err);
    buf_release(&out);
}

static void test_rfc_insertion_examples(void)
{
    static const char third[] = DOC_HEAD "<el1 att=\"first\"/>\n"
                                         "<el1 att=\"second\"/><el1 att=\"third\"/>\n"
                                         "<!-- comment -->\n"
                                         "<el2 att=\"first\"/>\n"
                                         "</root>";
    expect_put("root/el1[@att=\"third\"]", "<el1 att=\"third\"/>", XCAP_OK, third);
    expect_put("root/el1[3][@att=\"third\"]", "<el1 att=\"third\"/>", XCAP_OK, third);
    expect_put("root/*[3][@att=\"third\"]", "<el1 att=\"third\"/>", XCAP_OK, third);
    expect_put("root/el3", "<el3 att=\"first\"/>", XCAP_OK,
               DOC_HEAD "<el1 att=\"first\"/>\n<el1 att=\"second\"/>\n<!-- comment -->\n"
                        "<el2 att=\"first\"/>\n<el3 att=\"first\"/></root>");
    static const char el2_after[] = DOC_HEAD "<el1 att=\"first\"/>\n<el1 att=\"second\"/>\n"
                                             "<!-- comment -->\n"
                                             "<el2 att=\"first\"/><el2 att=\"2\"/>\n</root>";
    expect_put("root/el2[@att=\"2\"]", "<el2 att=\"2\"/>", XCAP_OK, el2_after);
    expect_put("root/el2[2][@att=\"2\"]", "<el2 att=\"2\"/>", XCAP_OK, el2_after);
    expect_put("root/*[2][@att=\"2\"]", "<el2 att=\"2\"/>", XCAP_OK,
               DOC_HEAD "<el1 att=\"first\"/><el2 att=\"2\"/>\n<el1 att=\"second\"/>\n"
                        "<!-- comment -->\n<el2 att=\"first\"/>\n</root>");
    expect_put("root/el2[1][@att=\"2\"]", "<el2 att=\"2\"/>", XCAP_OK,
               DOC_HEAD "<el1 att=\"first\"/>\n<el1 att=\"second\"/>\n<!-- comment -->\n"
                        "<el2 att=\"2\"/><el2 att=\"first\"/>\n</root>");
    /* "*" with an attribute test takes the element name from the body */
    expect_put("root/*[@att=\"2\"]", "<el1 att=\"2\"/>", XCAP_OK,
               DOC_HEAD "<el1 att=\"first\"/>\n<el1 att=\"second\"/><el1 att=\"2\"/>\n"
                        "<!-- comment -->\n<el2 att=\"first\"/>\n</root>");
    expect_put("root/*[@att=\"2\"]", "<el3 att=\"2\"/>", XCAP_OK,
               DOC_HEAD "<el1 att=\"first\"/>\n<el1 att=\"second\"/>\n<!-- comment -->\n"
                        "<el2 att=\"first\"/>\n<el3 att=\"2\"/></root>");
}

static void test_cannot_insert(void)
{
    expect_put("root/el1[4][@att=\"third\"]", "<el1 att=\"third\"/>", XCAP_CANNOT_INSERT, NULL);
    expect_put("root/*[0][@att=\"third\"]", "<el1 att=\"third\"/>", XCAP_CANNOT_INSERT, NULL);
    expect_put("root/el1[@att=\"third\"]", "<el1 att=\"fourth\"/>", XCAP_CANNOT_INSERT, NULL);
    expect_put("root/el1[3][@att=\"third\"]", "<el1 att=\"fourth\"/>", XCAP_CANNOT_INSERT, NULL);
    expect_put("root/*[3][@att=\"third\"]", "<el1 att=\"fourth\"/>", XCAP_CANNOT_INSERT, NULL);
    expect_put("root/el3", "<el4/>", XCAP_CANNOT_INSERT, NULL);
    /* replacing an element by one the URI no longer selects */
    expect_put("root/el1[@att=\"first\"]", "<el1 att=\"third\"/>", XCAP_CANNOT_INSERT, NULL);
    expect_put("root/el1[1][@att=\"first\"]", "<el1 att=\"third\"/>", XCAP_CANNOT_INSERT, NULL);
    expect_put("root/*[1][@att=\"first\"]", "<el1 att=\"third\"/>", XCAP_CANNOT_INSERT, NULL);
    /* ambiguous target */
    expect_put("root/el1", "<el1/>", XCAP_CANNOT_INSERT, NULL);
    /* a second root */
    expect_put("other", "<other/>", XCAP_CANNOT_INSERT, NULL);
}

static void test_replacement_in_place(void)
{
    static const char want[] = DOC_HEAD "<el1 att=\"third\"/>\n<el1 att=\"second\"/>\n"
                                        "<!-- comment -->\n<el2 att=\"first\"/>\n</root>";
    expect_put("root/el1[1]", "<el1 att=\"third\"/>", XCAP_OK, want);
    expect_put("root/*[1]", "<el1 att=\"third\"/>", XCAP_OK, want);
    /* the body's bytes are kept exactly, quoting and spacing included */
    expect_put("root/el2", "<el2   att='x' ><!--k--><c/></el2 >", XCAP_OK,
               DOC_HEAD "<el1 att=\"first\"/>\n<el1 att=\"second\"/>\n<!-- comment -->\n"
                        "<el2   att='x' ><!--k--><c/></el2 >\n</root>");
}

static void test_no_parent(void)
{
    struct buf out;
    buf_init(&out, SIZE_MAX);
    struct xcap_err err = {0};
    bool created;
    CU_ASSERT_EQUAL(run(start, ENGINE_PUT, "root/el1[1]/x/y", "application/xcap-el+xml", "<y/>",
                        &out, &created, &err),
                    XCAP_NO_PARENT);
    CU_ASSERT_STRING_EQUAL(err.ancestor ? err.ancestor : "",
                           "http://x.example.com/xcap-root/resource-lists/users/"
                           "sip:alice@example.com/index/~~/root/el1%5B1%5D");
    xcap_err_release(&err);
    CU_ASSERT_EQUAL(
        run(start, ENGINE_PUT, "nope/x", "application/xcap-el+xml", "<x/>", &out, &created, &err),
        XCAP_NO_PARENT);
    CU_ASSERT_STRING_EQUAL(err.ancestor ? err.ancestor : "",
                           "http://x.example.com/xcap-root/resource-lists/users/"
                           "sip:alice@example.com/index");
    xcap_err_release(&err);
    buf_release(&out);
}

static void test_body_checks(void)
{
    expect_put("root/el3", "<el3/><el4/>", XCAP_NOT_XML_FRAG, NULL);
    expect_put("root/el3", "text", XCAP_NOT_XML_FRAG, NULL);
    expect_put("root/el3", "<el3>", XCAP_NOT_XML_FRAG, NULL);
    expect_put("root/el3", "", XCAP_NOT_XML_FRAG, NULL);
    expect_put("root/el3", "<!DOCTYPE x><el3/>", XCAP_NOT_XML_FRAG, NULL);
    expect_put("root/el3", "<el3 a=\"\xC3\x28\"/>", XCAP_NOT_UTF8, NULL);
    expect_put("root/el3", "<p:el3/>", XCAP_NOT_XML_FRAG, NULL); /* unbound prefix */
    /* an XML declaration and white space around the element are not part of it */
    expect_put("root/el3", "<?xml version=\"1.0\"?>\n  <el3/>\n", XCAP_OK,
               DOC_HEAD "<el1 att=\"first\"/>\n<el1 att=\"second\"/>\n<!-- comment -->\n"
                        "<el2 att=\"first\"/>\n<el3/></root>");
    struct buf out;
    buf_init(&out, SIZE_MAX);
    struct xcap_err err = {0};
    bool created;
    CU_ASSERT_EQUAL(run(start, ENGINE_PUT, "root/el3", "application/resource-lists+xml", "<el3/>",
                        &out, &created, &err),
                    XCAP_UNSUPPORTED_MEDIA);
    CU_ASSERT_EQUAL(run(start, ENGINE_PUT, "root/el3", "application/xcap-el+xml; charset=UTF-8",
                        "<el3/>", &out, &created, &err),
                    XCAP_OK);
    CU_ASSERT_EQUAL(run(start, ENGINE_PUT, "root/namespace::*", "application/xcap-el+xml", "<x/>",
                        &out, &created, &err),
                    XCAP_METHOD_NOT_ALLOWED);
    CU_ASSERT_STRING_EQUAL(err.allow ? err.allow : "", "GET, HEAD");
    xcap_err_release(&err);
    buf_release(&out);
}

static char *nested(const char *head, const char *open, const char *close, int n, const char *tail)
{
    struct buf b;
    buf_init(&b, SIZE_MAX);
    int rc = buf_puts(&b, head);
    for (int i = 0; i < n; i++)
        rc |= buf_puts(&b, open);
    for (int i = 0; i < n; i++)
        rc |= buf_puts(&b, close);
    rc |= buf_puts(&b, tail);
    CU_ASSERT_EQUAL(rc, 0);
    return buf_detach(&b, NULL);
}

/* The default limits (prescan.h) on element bodies and on the documents node writes produce. */
static void test_limits(void)
{
    /* 256 attributes in the body pass, 257 are refused before anything else is looked at */
    struct buf b;
    buf_init(&b, SIZE_MAX);
    CU_ASSERT_EQUAL(buf_puts(&b, "<el3"), 0);
    for (int i = 0; i < 257; i++)
        CU_ASSERT_EQUAL(buf_printf(&b, " a%d=''", i), 0);
    CU_ASSERT_EQUAL(buf_puts(&b, "/>"), 0);
    expect_put("root/el3", b.data, XCAP_CONSTRAINT_FAILURE, NULL);
    b.data[b.len - 2 - strlen(" a256=''")] = '/';
    b.data[b.len - 1 - strlen(" a256=''")] = '>';
    b.data[b.len - strlen(" a256=''")] = '\0';
    expect_put("root/el3", b.data, XCAP_OK, NULL);
    buf_release(&b);

    /* a body that is shallow on its own may nest the result too deep: 62 levels in the
     * document, and a body of 3 more */
    char *deep = nested("<r xmlns=\"" NS "\">", "<d>", "</d>", 61, "</r>");
    char *sel = nested("r", "/d", "", 61, "/x");
    struct buf out;
    buf_init(&out, SIZE_MAX);
    struct xcap_err err = {0};
    bool created;
    CU_ASSERT_EQUAL(
        run(deep, ENGINE_PUT, sel, "application/xcap-el+xml", "<x><y/></x>", &out, &created, &err),
        XCAP_OK); /* levels 63 and 64 */
    CU_ASSERT_EQUAL(run(deep, ENGINE_PUT, sel, "application/xcap-el+xml", "<x><y><z/></y></x>",
                        &out, &created, &err),
                    XCAP_CONSTRAINT_FAILURE);
    CU_ASSERT(err.phrase && strstr(err.phrase, "the resulting document: "));
    CU_ASSERT(err.phrase && strstr(err.phrase, "(max_depth)"));
    xcap_err_release(&err);

    /* the body's verdict comes after the parent's: no-parent first (RFC 4825 §8.2.1) */
    CU_ASSERT_EQUAL(run(start, ENGINE_PUT, "root/none/el3", "application/xcap-el+xml", "<el3", &out,
                        &created, &err),
                    XCAP_NO_PARENT);
    xcap_err_release(&err);

    /* an attribute PUT that would give an element its 257th attribute */
    struct buf doc;
    buf_init(&doc, SIZE_MAX);
    CU_ASSERT_EQUAL(buf_puts(&doc, "<r xmlns=\"" NS "\"><e"), 0);
    for (int i = 0; i < 256; i++)
        CU_ASSERT_EQUAL(buf_printf(&doc, " a%d=''", i), 0);
    CU_ASSERT_EQUAL(buf_puts(&doc, "/></r>"), 0);
    CU_ASSERT_EQUAL(
        run(doc.data, ENGINE_PUT, "r/e/@b", "application/xcap-att+xml", "1", &out, &created, &err),
        XCAP_CONSTRAINT_FAILURE);
    CU_ASSERT(err.phrase && strstr(err.phrase, "(max_attributes)"));
    xcap_err_release(&err);
    CU_ASSERT_EQUAL(
        run(doc.data, ENGINE_PUT, "r/e/@a0", "application/xcap-att+xml", "1", &out, &created, &err),
        XCAP_OK);
    buf_release(&doc);
    buf_release(&out);
    free(deep);
    free(sel);
}

/* The body's element name is resolved where it goes: its own declarations first, then the
 * bindings in scope at the parent; a prefix bound nowhere is not-xml-frag. */
static void test_body_names(void)
{
    expect_put("root/el3", "<p:el3 xmlns:p=\"" NS "\"/>", XCAP_OK,
               DOC_HEAD "<el1 att=\"first\"/>\n<el1 att=\"second\"/>\n<!-- comment -->\n"
                        "<el2 att=\"first\"/>\n<p:el3 xmlns:p=\"" NS "\"/></root>");
    /* xmlns="" takes the element out of the default namespace: the selector no longer
     * matches */
    expect_put("root/el3", "<el3 xmlns=\"\"/>", XCAP_CANNOT_INSERT, NULL);
    /* a prefix bound only inside the body does not name the element */
    expect_put("root/el3", "<p:el3><q xmlns:p=\"" NS "\"/></p:el3>", XCAP_NOT_XML_FRAG, NULL);
    /* a prefix used by a child and bound nowhere: the spliced document says so */
    expect_put("root/el3", "<el3><p:q/></el3>", XCAP_NOT_XML_FRAG, NULL);
}

static void test_namespace_context(void)
{
    /* RFC 4825 §7.4, §8.2.2: an unprefixed body takes the default namespace in scope at the parent;
     * a prefix declared in the document may be used in the body */
    static const char doc[] = "<rl:resource-lists xmlns:rl=\"" NS "\" xmlns=\"" NS "\">"
                              "<rl:list name=\"f\"/></rl:resource-lists>";
    struct buf out;
    buf_init(&out, SIZE_MAX);
    struct xcap_err err = {0};
    bool created;
    CU_ASSERT_EQUAL(run(doc, ENGINE_PUT, "resource-lists/list/entry[@uri=\"sip:b@x\"]",
                        "application/xcap-el+xml", "<entry uri=\"sip:b@x\"/>", &out, &created,
                        &err),
                    XCAP_OK);
    CU_ASSERT_TRUE(created);
    CU_ASSERT_STRING_EQUAL(out.data, "<rl:resource-lists xmlns:rl=\"" NS "\" xmlns=\"" NS "\">"
                                     "<rl:list name=\"f\"><entry uri=\"sip:b@x\"/></rl:list>"
                                     "</rl:resource-lists>");
    CU_ASSERT_EQUAL(run(doc, ENGINE_PUT, "resource-lists/list/entry[@uri=\"sip:c@x\"]",
                        "application/xcap-el+xml", "<rl:entry uri=\"sip:c@x\"/>", &out, &created,
                        &err),
                    XCAP_OK);
    /* an element of another namespace is not selected by an unprefixed step */
    CU_ASSERT_EQUAL(run(doc, ENGINE_PUT, "resource-lists/list/entry[@uri=\"sip:d@x\"]",
                        "application/xcap-el+xml", "<entry xmlns=\"urn:other\" uri=\"sip:d@x\"/>",
                        &out, &created, &err),
                    XCAP_CANNOT_INSERT);
    xcap_err_release(&err);
    buf_release(&out);
}

static void test_delete(void)
{
    struct buf out;
    buf_init(&out, SIZE_MAX);
    struct xcap_err err = {0};
    bool created;
    /* entry[1] would select the second el1 afterwards: not idempotent */
    CU_ASSERT_EQUAL(run(start, ENGINE_DELETE, "root/el1[1]", NULL, NULL, &out, &created, &err),
                    XCAP_CANNOT_DELETE);
    CU_ASSERT_EQUAL(
        run(start, ENGINE_DELETE, "root/el1[@att=\"first\"]", NULL, NULL, &out, &created, &err),
        XCAP_OK);
    CU_ASSERT_STRING_EQUAL(out.data, DOC_HEAD "\n<el1 att=\"second\"/>\n<!-- comment -->\n"
                                              "<el2 att=\"first\"/>\n</root>");
    CU_ASSERT_EQUAL(run(start, ENGINE_DELETE, "root", NULL, NULL, &out, &created, &err),
                    XCAP_CANNOT_DELETE);
    CU_ASSERT_EQUAL(run(start, ENGINE_DELETE, "root/el9", NULL, NULL, &out, &created, &err),
                    XCAP_NOT_FOUND);
    CU_ASSERT_EQUAL(run(start, ENGINE_DELETE, "root/el1", NULL, NULL, &out, &created, &err),
                    XCAP_NOT_FOUND); /* ambiguous */
    CU_ASSERT_EQUAL(run(start, ENGINE_DELETE, "root/el2/@att", NULL, NULL, &out, &created, &err),
                    XCAP_OK);
    CU_ASSERT_TRUE(strstr(out.data, "<el2/>") != NULL);
    CU_ASSERT_EQUAL(run(start, ENGINE_DELETE, "root/el2/@nope", NULL, NULL, &out, &created, &err),
                    XCAP_NOT_FOUND);
    CU_ASSERT_EQUAL(
        run(start, ENGINE_DELETE, "root/namespace::*", NULL, NULL, &out, &created, &err),
        XCAP_METHOD_NOT_ALLOWED);
    xcap_err_release(&err);
    buf_release(&out);
}

static void test_attributes(void)
{
    struct buf out;
    buf_init(&out, SIZE_MAX);
    struct xcap_err err = {0};
    bool created;
    const char *att = "application/xcap-att+xml";
    CU_ASSERT_EQUAL(run(start, ENGINE_PUT, "root/el2/@att", att, "new", &out, &created, &err),
                    XCAP_OK);
    CU_ASSERT_FALSE(created);
    CU_ASSERT_TRUE(strstr(out.data, "<el2 att=\"new\"/>") != NULL);
    CU_ASSERT_EQUAL(run(start, ENGINE_PUT, "root/el2/@b", att, "say \"hi\"", &out, &created, &err),
                    XCAP_OK);
    CU_ASSERT_TRUE(created);
    CU_ASSERT_TRUE(strstr(out.data, "<el2 att=\"first\" b='say \"hi\"'/>") != NULL);
    CU_ASSERT_EQUAL(
        run(start, ENGINE_PUT, "root/el2/@b", att, "a&amp;b &#233;", &out, &created, &err),
        XCAP_OK);
    CU_ASSERT_EQUAL(run(start, ENGINE_PUT, "root/el2/@b", att, "a<b", &out, &created, &err),
                    XCAP_NOT_XML_ATT_VALUE);
    CU_ASSERT_EQUAL(run(start, ENGINE_PUT, "root/el2/@b", att, "a&b", &out, &created, &err),
                    XCAP_NOT_XML_ATT_VALUE);
    CU_ASSERT_EQUAL(run(start, ENGINE_PUT, "root/el2/@b", att, "&bogus;", &out, &created, &err),
                    XCAP_NOT_XML_ATT_VALUE);
    CU_ASSERT_EQUAL(run(start, ENGINE_PUT, "root/el9/@b", att, "v", &out, &created, &err),
                    XCAP_NO_PARENT);
    CU_ASSERT_EQUAL(
        run(start, ENGINE_PUT, "root/el2/@b", "application/xcap-el+xml", "v", &out, &created, &err),
        XCAP_UNSUPPORTED_MEDIA);
    /* changing the attribute a predicate tests: the URI would no longer select it */
    CU_ASSERT_EQUAL(
        run(start, ENGINE_PUT, "root/el2[@att=\"first\"]/@att", att, "other", &out, &created, &err),
        XCAP_CANNOT_INSERT);
    /* xml:lang: the xml prefix is used, never declared */
    CU_ASSERT_EQUAL(run_q(start, ENGINE_PUT, "root/el2/@x:lang",
                          "xmlns(x=http://www.w3.org/XML/1998/namespace)", att, "en", &out,
                          &created, &err),
                    XCAP_OK);
    CU_ASSERT_TRUE(out.data && strstr(out.data, "<el2 att=\"first\" xml:lang=\"en\"/>"));
    /* a malformed attribute name in the selector */
    CU_ASSERT_EQUAL(run(start, ENGINE_PUT, "root/el2/@x:b?", att, "v", &out, &created, &err),
                    XCAP_BAD_REQUEST);
    xcap_err_release(&err);
    buf_release(&out);
}

int main(void)
{
    xdoc_global_init();
    CU_TestInfo tests[] = {
        {"RFC 4825 8.2.3 insertion examples", test_rfc_insertion_examples},
        {"cannot-insert", test_cannot_insert},
        {"replacement in place", test_replacement_in_place},
        {"no-parent with ancestor", test_no_parent},
        {"element body checks", test_body_checks},
        {"namespace context of the body", test_namespace_context},
        {"limits on bodies and results", test_limits},
        {"the body's element name", test_body_names},
        {"delete and cannot-delete", test_delete},
        {"attributes", test_attributes},
        CU_TEST_INFO_NULL,
    };
    CU_SuiteInfo suites[] = {{"engine_node", NULL, NULL, NULL, NULL, tests}, CU_SUITE_INFO_NULL};
    int rc = unit_run(suites);
    xdoc_global_cleanup();
    return rc;
}
