/* common/etag.c: one entity-tag list matcher (RFC 9110 §8.8.3, §13.1.1, §13.1.2) for If-Match
 * (strong comparison) and If-None-Match (weak comparison), with one polarity: true when the list
 * names the current representation. */
#include <stddef.h>

#include "etag.h"
#include "unit.h"

static void test_strong(void)
{
    CU_ASSERT_TRUE(etag_list_matches("\"abc\"", "abc", ETAG_STRONG));
    CU_ASSERT_TRUE(etag_list_matches("\"x\", \"abc\"", "abc", ETAG_STRONG));
    CU_ASSERT_TRUE(etag_list_matches("*", "abc", ETAG_STRONG));
    CU_ASSERT_FALSE(etag_list_matches("*", NULL, ETAG_STRONG));
    CU_ASSERT_FALSE(etag_list_matches("\"abc\"", NULL, ETAG_STRONG));
    CU_ASSERT_FALSE(etag_list_matches("W/\"abc\"", "abc", ETAG_STRONG));
    CU_ASSERT_FALSE(etag_list_matches("\"abcd\"", "abc", ETAG_STRONG));
    CU_ASSERT_FALSE(etag_list_matches("\"ab\"", "abc", ETAG_STRONG));
    CU_ASSERT_FALSE(etag_list_matches("abc", "abc", ETAG_STRONG)); /* not an entity-tag */
    CU_ASSERT_FALSE(etag_list_matches("\"ABC\"", "abc", ETAG_STRONG));
    CU_ASSERT_FALSE(etag_list_matches("\"abc", "abc", ETAG_STRONG));
    CU_ASSERT_FALSE(etag_list_matches("", "abc", ETAG_STRONG));
    CU_ASSERT_TRUE(etag_list_matches("junk, \"abc\"", "abc", ETAG_STRONG));
}

static void test_weak(void)
{
    CU_ASSERT_FALSE(etag_list_matches("*", NULL, ETAG_WEAK));
    CU_ASSERT_TRUE(etag_list_matches("*", "abc", ETAG_WEAK));
    CU_ASSERT_TRUE(etag_list_matches("\"abc\"", "abc", ETAG_WEAK));
    CU_ASSERT_TRUE(etag_list_matches("W/\"abc\"", "abc", ETAG_WEAK));
    CU_ASSERT_TRUE(etag_list_matches("\"x\" , W/\"abc\"", "abc", ETAG_WEAK));
    CU_ASSERT_FALSE(etag_list_matches("\"x\"", "abc", ETAG_WEAK));
    CU_ASSERT_FALSE(etag_list_matches("\"abc\"", NULL, ETAG_WEAK));
    CU_ASSERT_FALSE(etag_list_matches(",,", "abc", ETAG_WEAK));
}

/* The proxy's generated documents keep their ETag quoted, as sent. */
static void test_quoted_current(void)
{
    const char *e = "\"dir-1\"";
    CU_ASSERT_TRUE(etag_list_matches("\"dir-1\"", e, ETAG_STRONG));
    CU_ASSERT_TRUE(etag_list_matches("\"x\", \"dir-1\"", e, ETAG_STRONG));
    CU_ASSERT_FALSE(etag_list_matches("W/\"dir-1\"", e, ETAG_STRONG));
    CU_ASSERT_FALSE(etag_list_matches("dir-1", e, ETAG_STRONG));
    CU_ASSERT_TRUE(etag_list_matches("W/\"dir-1\"", e, ETAG_WEAK));
    CU_ASSERT_TRUE(etag_list_matches(" \"a\" , \"dir-1\" ", e, ETAG_WEAK));
    CU_ASSERT_FALSE(etag_list_matches("\"dir-10\"", e, ETAG_WEAK));
    /* a comma inside a quoted tag is part of the tag (etagc, RFC 9110 §8.8.3) */
    CU_ASSERT_TRUE(etag_list_matches("\"a,b\"", "a,b", ETAG_STRONG));
    CU_ASSERT_FALSE(etag_list_matches("\"a,b\"", "b", ETAG_STRONG));
}

static CU_TestInfo etag_tests[] = {
    {"strong comparison (If-Match)", test_strong},
    {"weak comparison (If-None-Match)", test_weak},
    {"quoted current tag; commas inside tags", test_quoted_current},
    CU_TEST_INFO_NULL,
};

int main(void)
{
    CU_SuiteInfo suites[] = {
        {"etag", NULL, NULL, NULL, NULL, etag_tests},
        CU_SUITE_INFO_NULL,
    };
    return unit_run(suites);
}
