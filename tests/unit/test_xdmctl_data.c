/* Unit tests of xdmctl's data management helpers (tools/xdmctl_data.h): the file name of one
 * document selector segment (never ".", "..", hidden, or with a '/'). */
#include "unit.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xdmctl_data.h"

static void check_segment(const char *seg, const char *want)
{
    char out[64];
    CU_ASSERT_EQUAL_FATAL(xdmctl_data_segment(seg, strlen(seg), out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, want);
}

static void test_segment(void)
{
    check_segment("index", "index");
    check_segment("sip:alice@example.com", "sip:alice@example.com");
    check_segment("my friends?%", "my%20friends%3F%25");
    check_segment("a/b", "a%2Fb");
    check_segment(".hidden", "%2Ehidden");
    check_segment(".", "%2E");
    check_segment("..", "%2E.");
    check_segment("tel:+1-555;phone-context=x", "tel:+1-555;phone-context=x");
    check_segment("\xc3\xa9", "%C3%A9");
    char out[8];
    CU_ASSERT_EQUAL(xdmctl_data_segment("", 0, out, sizeof out), -1);
    CU_ASSERT_EQUAL(xdmctl_data_segment("a\0b", 3, out, sizeof out), -1);
    CU_ASSERT_EQUAL(xdmctl_data_segment("abcdefgh", 8, out, sizeof out), -1); /* no room for NUL */
    CU_ASSERT_EQUAL(xdmctl_data_segment("abcdefg", 7, out, sizeof out), 0);
    CU_ASSERT_EQUAL(xdmctl_data_segment("%%", 2, out, 6), -1); /* "%25%25" needs 7 */
}

int main(void)
{
    CU_TestInfo tests[] = {
        {"segment file names", test_segment},
        CU_TEST_INFO_NULL,
    };
    CU_SuiteInfo suites[] = {
        {"xdmctl_data", NULL, NULL, NULL, NULL, tests},
        CU_SUITE_INFO_NULL,
    };
    return unit_run(suites);
}
