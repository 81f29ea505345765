/* Byte spans of elements and attributes (the basis of splice-based XCAP edits). */
#include <CUnit/CUnit.h>
#include <string.h>

#include "unit.h"
#include "xspan.h"

static const char doc[] = "<?xml version='1.0'?>\n<!-- c <a> -->\n"
                          "<r xmlns=\"urn:r\" a='x>y' b = \"1\">"
                          "<![CDATA[<fake/>]]><e/><f k=\"v\">t<?pi <x/>?></f>"
                          "<g\n/></r>\n";

static const char *span(const struct xspan_el *e, size_t *len)
{
    *len = e->end - e->start;
    return doc + e->start;
}

static void test_elements(void)
{
    struct xspan s;
    CU_ASSERT_FATAL(xspan_scan(doc, strlen(doc), &s) == 0);
    CU_ASSERT_EQUAL(s.n_els, 4);
    size_t len;
    const char *p = span(&s.els[1], &len);
    CU_ASSERT_EQUAL(len, 4);
    CU_ASSERT_NSTRING_EQUAL(p, "<e/>", 4);
    CU_ASSERT_TRUE(s.els[1].empty);
    p = span(&s.els[2], &len);
    CU_ASSERT_NSTRING_EQUAL(p, "<f k=\"v\">t<?pi <x/>?></f>", len);
    CU_ASSERT_EQUAL(s.els[2].parent, 0);
    CU_ASSERT_EQUAL(doc[s.els[2].etag_start], '<');
    CU_ASSERT_EQUAL(doc[s.els[2].etag_start + 1], '/');
    p = span(&s.els[3], &len);
    CU_ASSERT_NSTRING_EQUAL(p, "<g\n/>", len);
    CU_ASSERT_EQUAL(s.els[0].parent, UINT32_MAX);
    CU_ASSERT_EQUAL(s.els[0].name_len, 1);
    CU_ASSERT_EQUAL(doc[s.els[0].end - 1], '>');
    CU_ASSERT_NSTRING_EQUAL(doc + s.els[0].etag_start, "</r>", 4);
    xspan_release(&s);
}

static void test_attributes(void)
{
    struct xspan s;
    CU_ASSERT_FATAL(xspan_scan(doc, strlen(doc), &s) == 0);
    CU_ASSERT_EQUAL(s.els[0].n_attr, 3); /* xmlns, a, b */
    const struct xspan_attr *a = &s.attrs[s.els[0].first_attr + 1];
    CU_ASSERT_NSTRING_EQUAL(doc + a->name, "a", a->name_len);
    CU_ASSERT_NSTRING_EQUAL(doc + a->value, "x>y", a->value_len);
    CU_ASSERT_EQUAL(a->value_len, 3);
    const struct xspan_attr *b = &s.attrs[s.els[0].first_attr + 2];
    CU_ASSERT_NSTRING_EQUAL(doc + b->ws, " b = \"1\"", b->end - b->ws);
    CU_ASSERT_EQUAL(s.els[2].n_attr, 1);
    xspan_release(&s);
}

static void test_malformed(void)
{
    static const char *const bad[] = {"",
                                      "text only",
                                      "<a>",
                                      "<a></a></b>",
                                      "<a b></a>",
                                      "<a b=\"1></a>",
                                      "<!DOCTYPE a><a/>",
                                      "<a><!-- x</a>"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct xspan s;
        CU_ASSERT_EQUAL(xspan_scan(bad[i], strlen(bad[i]), &s), -1);
    }
}

int main(void)
{
    CU_TestInfo tests[] = {
        {"element spans", test_elements},
        {"attribute spans", test_attributes},
        {"malformed input refused", test_malformed},
        CU_TEST_INFO_NULL,
    };
    CU_SuiteInfo suites[] = {{"xspan", NULL, NULL, NULL, NULL, tests}, CU_SUITE_INFO_NULL};
    return unit_run(suites);
}
