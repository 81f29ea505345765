/* common/nodeget.c: a node GET (RFC 4825 §7.4-7.10, §8.3) answers the selected node's bytes as
 * the document has them: elements and attribute values cut from the source, namespace bindings
 * with the element's name as written; the statuses of a missing, ambiguous or bad selection. */
#include <string.h>

#include "buf.h"
#include "nodeget.h"
#include "unit.h"
#include "xcap_names.h"

#define NG_NS "urn:example:ng"

static const char ng_doc[] = "<?xml version='1.0'?>\n"
                             "<r xmlns='" NG_NS "' xmlns:x='urn:example:x'>"
                             "<item  id = 'a&amp;b&apos;c' ></item>"
                             "<item id=\"2\"/>"
                             "<x:e k=\"v\">text &lt; more</x:e>"
                             "</r>";

/* Runs one GET; returns the status, out holds the body, *mime its media type. */
static enum xcap_status ng_get(const char *sel, const char *query, struct buf *out,
                               const char **mime)
{
    struct xcap_err err = {0};
    buf_reset(out);
    *mime = NULL;
    enum xcap_status st =
        nodeget_select(sel, query, NG_NS, ng_doc, sizeof ng_doc - 1, out, mime, &err);
    if (st != XCAP_OK)
        CU_ASSERT_PTR_NOT_NULL(err.phrase);
    xcap_err_release(&err);
    return st;
}

static void test_exact_bytes(void)
{
    struct buf out;
    buf_init(&out, 1 << 16);
    const char *mime;
    CU_ASSERT_EQUAL_FATAL(ng_get("r/item[1]", NULL, &out, &mime), XCAP_OK);
    CU_ASSERT_STRING_EQUAL(out.data, "<item  id = 'a&amp;b&apos;c' ></item>");
    CU_ASSERT_STRING_EQUAL(mime, XCAP_MIME_ELEMENT);
    CU_ASSERT_EQUAL_FATAL(ng_get("r/item[1]/@id", NULL, &out, &mime), XCAP_OK);
    CU_ASSERT_STRING_EQUAL(out.data, "a&amp;b&apos;c"); /* the AttValue as written */
    CU_ASSERT_STRING_EQUAL(mime, XCAP_MIME_ATTRIBUTE);
    CU_ASSERT_EQUAL_FATAL(ng_get("r/item[@id=\"2\"]", NULL, &out, &mime), XCAP_OK);
    CU_ASSERT_STRING_EQUAL(out.data, "<item id=\"2\"/>");
    CU_ASSERT_EQUAL_FATAL(ng_get("r/y:e", "xmlns(y=urn:example:x)", &out, &mime), XCAP_OK);
    CU_ASSERT_STRING_EQUAL(out.data, "<x:e k=\"v\">text &lt; more</x:e>");
    buf_release(&out);
}

static void test_namespaces(void)
{
    struct buf out;
    buf_init(&out, 1 << 16);
    const char *mime;
    CU_ASSERT_EQUAL_FATAL(ng_get("r/y:e/namespace::*", "xmlns(y=urn:example:x)", &out, &mime),
                          XCAP_OK);
    CU_ASSERT_STRING_EQUAL(mime, XCAP_MIME_NAMESPACE);
    /* the qualified name as written; one declaration per binding in scope */
    CU_ASSERT_PTR_NOT_NULL(strstr(out.data, "<x:e "));
    CU_ASSERT_PTR_NOT_NULL(strstr(out.data, " xmlns=\"" NG_NS "\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(out.data, " xmlns:x=\"urn:example:x\""));
    CU_ASSERT_PTR_NULL(strstr(out.data, "xmlns:xml"));
    CU_ASSERT_EQUAL(strcmp(out.data + out.len - 2, "/>"), 0);
    buf_release(&out);
}

static void test_failures(void)
{
    struct buf out;
    buf_init(&out, 1 << 16);
    const char *mime;
    CU_ASSERT_EQUAL(ng_get("r/item", NULL, &out, &mime), XCAP_NOT_FOUND); /* two match */
    CU_ASSERT_EQUAL(ng_get("r/item[3]", NULL, &out, &mime), XCAP_NOT_FOUND);
    CU_ASSERT_EQUAL(ng_get("r/item[1]/@nope", NULL, &out, &mime), XCAP_NOT_FOUND);
    CU_ASSERT_EQUAL(ng_get("r/item[", NULL, &out, &mime), XCAP_BAD_REQUEST);
    CU_ASSERT_EQUAL(out.len, 0);
    struct xcap_err err = {0};
    CU_ASSERT_EQUAL(nodeget_select("r", NULL, NG_NS, "<r>", 3, &out, &mime, &err), XCAP_INTERNAL);
    xcap_err_release(&err);
    buf_release(&out);
}

static CU_TestInfo nodeget_tests[] = {
    {"elements and attributes are the source bytes", test_exact_bytes},
    {"namespace bindings", test_namespaces},
    {"missing, ambiguous, bad selector, bad document", test_failures},
    CU_TEST_INFO_NULL,
};

int main(void)
{
    CU_SuiteInfo suites[] = {
        {"nodeget", NULL, NULL, NULL, NULL, nodeget_tests},
        CU_SUITE_INFO_NULL,
    };
    return unit_run(suites);
}
