/* common/buf.c: the maximum is a hard bound, a failed append changes nothing, XML escaping,
 * detach hands the bytes over. */
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "unit.h"

static void test_empty_buffer(void)
{
    struct buf b;
    buf_init(&b, 16);
    CU_ASSERT_PTR_NULL(b.data);
    CU_ASSERT_EQUAL(b.len, 0);
    CU_ASSERT_EQUAL(b.max, 16);
    CU_ASSERT_EQUAL(buf_append(&b, "", 0), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b.data);
    CU_ASSERT_STRING_EQUAL(b.data, "");
    buf_release(&b);
    CU_ASSERT_PTR_NULL(b.data);
}

static void test_append_and_terminate(void)
{
    struct buf b;
    buf_init(&b, 64);
    CU_ASSERT_EQUAL(buf_append(&b, "abc", 3), 0);
    CU_ASSERT_EQUAL(buf_puts(&b, "def"), 0);
    CU_ASSERT_EQUAL(buf_printf(&b, "-%d-%s", 42, "x"), 0);
    CU_ASSERT_EQUAL(b.len, 11);
    CU_ASSERT_STRING_EQUAL(b.data, "abcdef-42-x");
    /* binary bytes, including NUL, are kept; a NUL follows len */
    CU_ASSERT_EQUAL(buf_append(&b, "\0z", 2), 0);
    CU_ASSERT_EQUAL(b.len, 13);
    CU_ASSERT_EQUAL(memcmp(b.data, "abcdef-42-x\0z", 13), 0);
    CU_ASSERT_EQUAL(b.data[13], '\0');
    buf_release(&b);
}

static void test_max_exact_fit(void)
{
    struct buf b;
    buf_init(&b, 5);
    CU_ASSERT_EQUAL(buf_puts(&b, "12345"), 0);
    CU_ASSERT_EQUAL(b.len, 5);
    CU_ASSERT_STRING_EQUAL(b.data, "12345");
    CU_ASSERT_EQUAL(buf_append(&b, "", 0), 0);
    CU_ASSERT_EQUAL(buf_puts(&b, "6"), -1);
    CU_ASSERT_EQUAL(b.len, 5);
    CU_ASSERT_STRING_EQUAL(b.data, "12345");
    buf_release(&b);
}

static void test_failed_append_leaves_buffer(void)
{
    struct buf b;
    buf_init(&b, 10);
    CU_ASSERT_EQUAL(buf_puts(&b, "hello"), 0);
    CU_ASSERT_EQUAL(buf_puts(&b, "world!"), -1); /* 11 > 10 */
    CU_ASSERT_EQUAL(b.len, 5);
    CU_ASSERT_STRING_EQUAL(b.data, "hello");
    CU_ASSERT_EQUAL(buf_printf(&b, "%s", "123456"), -1);
    CU_ASSERT_EQUAL(b.len, 5);
    CU_ASSERT_STRING_EQUAL(b.data, "hello");
    /* a huge length must not wrap around the bound check */
    CU_ASSERT_EQUAL(buf_append(&b, "x", (size_t)-1), -1);
    CU_ASSERT_EQUAL(b.len, 5);
    /* the buffer is still usable up to its maximum */
    CU_ASSERT_EQUAL(buf_puts(&b, "12345"), 0);
    CU_ASSERT_STRING_EQUAL(b.data, "hello12345");
    buf_release(&b);
}

static void test_growth_beyond_initial_capacity(void)
{
    struct buf b;
    buf_init(&b, 100000);
    char chunk[1000];
    memset(chunk, 'q', sizeof chunk);
    for (int i = 0; i < 100; i++)
        CU_ASSERT_EQUAL_FATAL(buf_append(&b, chunk, sizeof chunk), 0);
    CU_ASSERT_EQUAL(b.len, 100000);
    CU_ASSERT(b.cap > b.len);
    CU_ASSERT_EQUAL(b.data[99999], 'q');
    CU_ASSERT_EQUAL(b.data[100000], '\0');
    CU_ASSERT_EQUAL(buf_append(&b, "q", 1), -1);
    CU_ASSERT_EQUAL(b.len, 100000);
    buf_release(&b);
}

static void test_reset_keeps_memory(void)
{
    struct buf b;
    buf_init(&b, 64);
    CU_ASSERT_EQUAL(buf_puts(&b, "some text"), 0);
    char *before = b.data;
    size_t cap = b.cap;
    buf_reset(&b);
    CU_ASSERT_EQUAL(b.len, 0);
    CU_ASSERT_PTR_EQUAL(b.data, before);
    CU_ASSERT_EQUAL(b.cap, cap);
    CU_ASSERT_STRING_EQUAL(b.data, "");
    CU_ASSERT_EQUAL(buf_puts(&b, "new"), 0);
    CU_ASSERT_STRING_EQUAL(b.data, "new");
    buf_release(&b);
    /* reset of a never-used buffer is harmless */
    buf_init(&b, 4);
    buf_reset(&b);
    CU_ASSERT_EQUAL(b.len, 0);
    buf_release(&b);
}

static void test_xml_escape_all_five(void)
{
    struct buf b;
    buf_init(&b, 256);
    const char *in = "a<b>c&d\"e'f";
    CU_ASSERT_EQUAL(buf_xml_escape(&b, in, strlen(in)), 0);
    CU_ASSERT_STRING_EQUAL(b.data, "a&lt;b&gt;c&amp;d&quot;e&apos;f");
    buf_reset(&b);
    CU_ASSERT_EQUAL(buf_xml_escape(&b, "&&", 2), 0);
    CU_ASSERT_STRING_EQUAL(b.data, "&amp;&amp;");
    buf_reset(&b);
    /* nothing to escape, and the length argument is honoured (no strlen) */
    CU_ASSERT_EQUAL(buf_xml_escape(&b, "plain<text", 5), 0);
    CU_ASSERT_STRING_EQUAL(b.data, "plain");
    buf_reset(&b);
    /* UTF-8 passes through untouched */
    CU_ASSERT_EQUAL(buf_xml_escape(&b, "\xC3\xA9<", 3), 0);
    CU_ASSERT_STRING_EQUAL(b.data, "\xC3\xA9&lt;");
    buf_release(&b);
}

static void test_xml_escape_failure_rolls_back(void)
{
    struct buf b;
    buf_init(&b, 12);
    CU_ASSERT_EQUAL(buf_puts(&b, "pre:"), 0);
    /* "ab&lt;" fits (4 + 6 = 10) but the following "&gt;" does not: nothing may remain */
    CU_ASSERT_EQUAL(buf_xml_escape(&b, "ab<>", 4), -1);
    CU_ASSERT_EQUAL(b.len, 4);
    CU_ASSERT_STRING_EQUAL(b.data, "pre:");
    /* a tail without specials that does not fit */
    CU_ASSERT_EQUAL(buf_xml_escape(&b, "<abcdefgh", 9), -1);
    CU_ASSERT_EQUAL(b.len, 4);
    CU_ASSERT_STRING_EQUAL(b.data, "pre:");
    CU_ASSERT_EQUAL(buf_xml_escape(&b, "<ab", 3), 0);
    CU_ASSERT_STRING_EQUAL(b.data, "pre:&lt;ab");
    buf_release(&b);
}

static void test_detach(void)
{
    struct buf b;
    buf_init(&b, 32);
    CU_ASSERT_EQUAL(buf_puts(&b, "payload"), 0);
    size_t len = 0;
    char *p = buf_detach(&b, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL(len, 7);
    CU_ASSERT_STRING_EQUAL(p, "payload");
    CU_ASSERT_PTR_NULL(b.data);
    CU_ASSERT_EQUAL(b.len, 0);
    CU_ASSERT_EQUAL(b.cap, 0);
    /* the buffer is reusable and keeps its maximum */
    CU_ASSERT_EQUAL(b.max, 32);
    CU_ASSERT_EQUAL(buf_puts(&b, "again"), 0);
    CU_ASSERT_STRING_EQUAL(b.data, "again");
    CU_ASSERT_PTR_NOT_EQUAL(b.data, p);
    free(p);
    buf_release(&b);

    /* an empty buffer detaches to a fresh empty string; len may be NULL */
    buf_init(&b, 32);
    p = buf_detach(&b, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL(len, 0);
    CU_ASSERT_STRING_EQUAL(p, "");
    free(p);
    CU_ASSERT_EQUAL(buf_puts(&b, "x"), 0);
    p = buf_detach(&b, NULL);
    CU_ASSERT_STRING_EQUAL(p, "x");
    free(p);
    buf_release(&b);
}

static void test_zero_max(void)
{
    struct buf b;
    buf_init(&b, 0);
    CU_ASSERT_EQUAL(buf_puts(&b, "a"), -1);
    CU_ASSERT_EQUAL(b.len, 0);
    CU_ASSERT_EQUAL(buf_printf(&b, "%c", 'a'), -1);
    CU_ASSERT_EQUAL(buf_xml_escape(&b, "<", 1), -1);
    CU_ASSERT_EQUAL(b.len, 0);
    buf_release(&b);
}

static CU_TestInfo buf_tests[] = {
    {"empty buffer", test_empty_buffer},
    {"append keeps a terminating NUL", test_append_and_terminate},
    {"max is reachable, not exceedable", test_max_exact_fit},
    {"failed append leaves the buffer unchanged", test_failed_append_leaves_buffer},
    {"growth to 100 KB", test_growth_beyond_initial_capacity},
    {"reset keeps memory", test_reset_keeps_memory},
    {"xml escape of the five specials", test_xml_escape_all_five},
    {"xml escape failure rolls back", test_xml_escape_failure_rolls_back},
    {"detach moves ownership", test_detach},
    {"zero maximum refuses everything", test_zero_max},
    CU_TEST_INFO_NULL,
};

int main(void)
{
    CU_SuiteInfo suites[] = {
        {"buf", NULL, NULL, NULL, NULL, buf_tests},
        CU_SUITE_INFO_NULL,
    };
    return unit_run(suites);
}
