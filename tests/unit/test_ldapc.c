/* common/ldapc.c: the pure parts of the LDAP client: RFC 4515 escaping of assertion values,
 * filter templates, the URI an attribute value stands for, and the bind password from a file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ldapc.h"
#include "unit.h"

static void test_escape(void)
{
    char out[64];
    CU_ASSERT_EQUAL(ldapc_filter_escape("alice", out, sizeof out), 5);
    CU_ASSERT_STRING_EQUAL(out, "alice");
    /* RFC 4515 §3: '*', '(', ')', '\' and NUL (and here any control byte) as \XX */
    CU_ASSERT_EQUAL(ldapc_filter_escape("a*b(c)d\\e", out, sizeof out), 17);
    CU_ASSERT_STRING_EQUAL(out, "a\\2ab\\28c\\29d\\5ce");
    CU_ASSERT(ldapc_filter_escape("x\n\x7f", out, sizeof out) > 0);
    CU_ASSERT_STRING_EQUAL(out, "x\\0a\\7f");
    /* UTF-8 passes as it is (RFC 4515 §3: UTF-8 is allowed unescaped) */
    CU_ASSERT(ldapc_filter_escape("J\xc3\xbcrgen", out, sizeof out) > 0);
    CU_ASSERT_STRING_EQUAL(out, "J\xc3\xbcrgen");
    CU_ASSERT_EQUAL(ldapc_filter_escape("", out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, "");
    /* too small: -1, never a cut escape */
    CU_ASSERT_EQUAL(ldapc_filter_escape("abc", out, 3), -1);
    CU_ASSERT_EQUAL(ldapc_filter_escape("*", out, 3), -1);
    CU_ASSERT_EQUAL(ldapc_filter_escape("*", out, 4), 3);
}

static void test_fill(void)
{
    char out[128];
    CU_ASSERT_EQUAL(ldapc_filter_fill("(uid=%u)", "c*", NULL, out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, "(uid=c\\2a)");
    CU_ASSERT_EQUAL(
        ldapc_filter_fill("(&(uid=%u)(o=%d)(x=100%%))", "a)(uid=*", "ex.com", out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, "(&(uid=a\\29\\28uid=\\2a)(o=ex.com)(x=100%))");
    CU_ASSERT_EQUAL(ldapc_filter_fill("(uid=%x)", "a", NULL, out, sizeof out), -1);
    CU_ASSERT_EQUAL(ldapc_filter_fill("(uid=%", "a", NULL, out, sizeof out), -1);
    CU_ASSERT_EQUAL(ldapc_filter_fill("(uid=%u)", "abcdefgh", NULL, out, 10), -1);
    CU_ASSERT_TRUE(ldapc_filter_template_ok("(uid=%u)"));
    CU_ASSERT_TRUE(ldapc_filter_template_ok("(&(objectClass=person)(mail=%u@%d))"));
    CU_ASSERT_FALSE(ldapc_filter_template_ok("uid=%u"));
    CU_ASSERT_FALSE(ldapc_filter_template_ok("(uid=%s)"));
    CU_ASSERT_FALSE(ldapc_filter_template_ok(""));
    CU_ASSERT_FALSE(ldapc_filter_template_ok(NULL));
}

static void test_value_uri(void)
{
    char out[64];
    CU_ASSERT_EQUAL(ldapc_value_uri("sip:alice@example.com", out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, "sip:alice@example.com");
    /* labeledURI: the URI, then a label after a space (RFC 2079) */
    CU_ASSERT_EQUAL(ldapc_value_uri("SIP:alice@example.com Alice's phone", out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, "sip:alice@example.com");
    CU_ASSERT_EQUAL(ldapc_value_uri("sips:a@b", out, sizeof out), 0);
    CU_ASSERT_EQUAL(ldapc_value_uri("tel:+1-555-0100", out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, "tel:+1-555-0100");
    /* a global number without its visual separators (RFC 3966 §5.1.4, §5.1.1) */
    CU_ASSERT_EQUAL(ldapc_value_uri("+44 (20) 7946-0000", out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, "tel:+442079460000");
    CU_ASSERT_EQUAL(ldapc_value_uri("020 7946 0000", out, sizeof out), -1); /* local number */
    CU_ASSERT_EQUAL(ldapc_value_uri("+", out, sizeof out), -1);
    CU_ASSERT_EQUAL(ldapc_value_uri("+1 555 x100", out, sizeof out), -1);
    CU_ASSERT_EQUAL(ldapc_value_uri("http://example.com/", out, sizeof out), -1);
    CU_ASSERT_EQUAL(ldapc_value_uri("sip:", out, sizeof out), -1);
    CU_ASSERT_EQUAL(ldapc_value_uri("sip:a\"b@example.com", out, sizeof out), -1);
    CU_ASSERT_EQUAL(ldapc_value_uri("sip:alice@example.com", out, 10), -1);
    CU_ASSERT_EQUAL(ldapc_value_uri("", out, sizeof out), -1);
}

static void test_password(void)
{
    char out[32];
    CU_ASSERT_EQUAL(ldapc_password("inline", NULL, out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, "inline");
    CU_ASSERT_EQUAL(ldapc_password(NULL, NULL, out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, "");
    char path[] = "/tmp/test_ldapc_XXXXXX";
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("from file\nsecond line\n", f);
    fclose(f);
    /* the file wins over the inline value; its first line, without the line end */
    CU_ASSERT_EQUAL(ldapc_password("inline", path, out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, "from file");
    f = fopen(path, "w");
    fputs("0123456789012345678901234567890123456789\n", f);
    fclose(f);
    CU_ASSERT_EQUAL(ldapc_password(NULL, path, out, sizeof out), -1);
    unlink(path);
    CU_ASSERT_EQUAL(ldapc_password(NULL, path, out, sizeof out), -1);
}

static CU_TestInfo ldapc_tests[] = {
    {"RFC 4515 escaping", test_escape},
    {"filter templates", test_fill},
    {"URIs from attribute values", test_value_uri},
    {"bind password from a file", test_password},
    CU_TEST_INFO_NULL,
};

int main(void)
{
    CU_SuiteInfo suites[] = {
        {"ldapc", NULL, NULL, NULL, NULL, ldapc_tests},
        CU_SUITE_INFO_NULL,
    };
    return unit_run(suites);
}
