/* aggproxy/ldapusers.c without a directory server: what is decided before asking (another realm,
 * empty names and passwords, wrong options), and a directory that cannot be reached: 503 at once
 * and, within ldap_retry_after, without asking again. The answers of a real slapd are tested end
 * to end (tests/e2e/cases-ldap/). */
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "ldapusers.h"
#include "unit.h"

static struct ldapusers_options unit_opts(void)
{
    /* port 1 on loopback: nothing listens, the connection is refused at once */
    return (struct ldapusers_options){
        .ldap = {.uri = "ldap://127.0.0.1:1", .timeout_ms = 500},
        .base_dn = "ou=people,dc=example,dc=com",
        .realm = "example.com",
        .cache_ttl_s = 60,
        .negative_ttl_s = 10,
        .retry_after_s = 7,
    };
}

static unsigned long long refused(void)
{
    struct buf b;
    buf_init(&b, 1 << 16);
    ldapc_metrics_render(&b);
    const char *p = strstr(b.data, "\nxdm_ldap_refused_total ");
    unsigned long long n = p ? strtoull(p + 24, NULL, 10) : 0;
    buf_release(&b);
    return n;
}

static void test_options(void)
{
    struct ldapusers_options o = unit_opts();
    struct ldapusers *u = ldapusers_new(&o);
    CU_ASSERT_PTR_NOT_NULL_FATAL(u);
    CU_ASSERT_STRING_EQUAL(ldapusers_realm(u), "example.com");
    CU_ASSERT_STRING_EQUAL(ldapusers_retry_after(u), "7");
    ldapusers_free(u);
    o.user_filter = "uid=%u";
    CU_ASSERT_PTR_NULL(ldapusers_new(&o));
    o = unit_opts();
    o.base_dn = "";
    CU_ASSERT_PTR_NULL(ldapusers_new(&o));
    o = unit_opts();
    o.ldap.uri = "http://x";
    CU_ASSERT_PTR_NULL(ldapusers_new(&o));
}

static void test_before_asking(void)
{
    struct ldapusers_options o = unit_opts();
    struct ldapusers *u = ldapusers_new(&o);
    CU_ASSERT_PTR_NOT_NULL_FATAL(u);
    struct users_cred c;
    /* another realm, an empty name: nobody, without a question to the directory */
    CU_ASSERT_EQUAL(ldapusers_lookup(u, "other.org", "carol", 100, &c), LDAPUSERS_UNKNOWN);
    CU_ASSERT_EQUAL(ldapusers_lookup(u, "example.com", "", 100, &c), LDAPUSERS_UNKNOWN);
    CU_ASSERT_EQUAL(ldapusers_lookup(u, NULL, "carol", 100, &c), LDAPUSERS_UNKNOWN);
    /* RFC 4513 §5.1.2: an empty password would be an unauthenticated bind */
    CU_ASSERT_EQUAL(ldapusers_basic(u, "carol", "", 100, &c), LDAPUSERS_UNKNOWN);
    CU_ASSERT_EQUAL(ldapusers_basic(u, "", "pw", 100, &c), LDAPUSERS_UNKNOWN);
    ldapusers_free(u);
}

static void test_directory_down(void)
{
    struct ldapusers_options o = unit_opts();
    struct ldapusers *u = ldapusers_new(&o);
    CU_ASSERT_PTR_NOT_NULL_FATAL(u);
    struct users_cred c;
    unsigned long long r0 = refused();
    CU_ASSERT_EQUAL(ldapusers_lookup(u, "example.com", "carol", 100, &c), LDAPUSERS_UNAVAILABLE);
    CU_ASSERT_EQUAL(refused(), r0); /* asked, and it failed */
    /* within retry_after (7 s): not asked again, for anybody */
    CU_ASSERT_EQUAL(ldapusers_lookup(u, "EXAMPLE.COM", "dave", 103, &c), LDAPUSERS_UNAVAILABLE);
    CU_ASSERT_EQUAL(ldapusers_basic(u, "erin", "pw", 106, &c), LDAPUSERS_UNAVAILABLE);
    CU_ASSERT_EQUAL(refused(), r0 + 2);
    /* after it: asked again (and down again) */
    CU_ASSERT_EQUAL(ldapusers_lookup(u, "example.com", "carol", 107, &c), LDAPUSERS_UNAVAILABLE);
    CU_ASSERT_EQUAL(refused(), r0 + 2);
    ldapusers_free(u);
}

static CU_TestInfo ldapusers_tests[] = {
    {"options", test_options},
    {"decided before asking", test_before_asking},
    {"a directory that cannot be reached", test_directory_down},
    CU_TEST_INFO_NULL,
};

int main(void)
{
    CU_SuiteInfo suites[] = {
        {"ldapusers", NULL, NULL, NULL, NULL, ldapusers_tests},
        CU_SUITE_INFO_NULL,
    };
    return unit_run(suites);
}
