/* The XDMS request path's peer rules (xdms/server.c): trusted_peer specs with a domain
 * restriction, and whether an asserted identity is of one of the allowed domains. */
#include <string.h>

#include "log.h"
#include "server.h"
#include "unit.h"

static void test_identity_in_domains(void)
{
    const char *d = "partner.example,b.example";
    CU_ASSERT_TRUE(server_identity_in_domains("sip:bob@partner.example", d));
    CU_ASSERT_TRUE(server_identity_in_domains("sips:bob@b.example", d));
    CU_ASSERT_TRUE(server_identity_in_domains("sip:bob@partner.example:5061;transport=tls", d));
    CU_ASSERT_TRUE(server_identity_in_domains("sip:bob@PARTNER.example", d));
    CU_ASSERT_FALSE(server_identity_in_domains("sip:alice@operator.example", d));
    CU_ASSERT_FALSE(server_identity_in_domains("sip:bob@xpartner.example", d));
    CU_ASSERT_FALSE(server_identity_in_domains("sip:bob@partner.example.evil", d));
    CU_ASSERT_FALSE(server_identity_in_domains("sip:bob@example", d));
    CU_ASSERT_FALSE(server_identity_in_domains("sip:partner.example", d)); /* no user part */
    CU_ASSERT_FALSE(server_identity_in_domains("tel:+15550100", d));
    CU_ASSERT_FALSE(server_identity_in_domains("mailto:bob@partner.example", d));
    CU_ASSERT_TRUE(server_identity_in_domains("sip:x@b.example", "b.example"));
}

static void test_peer_specs(void)
{
    struct xdms_server_config cfg = {.role = ROLE_SHARED_LIST, .root_path = "/xcap-root"};
    struct xdms_server *s = server_new(&cfg, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_EQUAL(server_add_peer(s, "subject:CN=aggproxy,O=Operator proxy domain=p.example"), 0);
    CU_ASSERT_EQUAL(
        server_add_peer(s, "subject:CN=a b,O=Operator  proxy   domain=P.example,q.example"), 0);
    CU_ASSERT_EQUAL(server_add_peer(s, "sha256:"
                                       "0123456789abcdef0123456789abcdef"
                                       "0123456789abcdef0123456789abcdef proxy domain=p.example"),
                    0);
    CU_ASSERT_EQUAL(server_add_peer(s, "subject:CN=aggproxy proxy"), 0);
    CU_ASSERT_EQUAL(server_peer_count(s), 4);
    static const char *const bad[] = {
        "subject:CN=rls server domain=p.example",
        "127.0.0.1 server domain=p.example",
        "subject:CN=aggproxy proxy domain=",
        "subject:CN=aggproxy proxy domain=p..example",
        "subject:CN=aggproxy proxy domain=.p.example",
        "subject:CN=aggproxy proxy domain=p.example,",
        "subject:CN=aggproxy proxy domain=p.example,,q.example",
        "subject:CN=aggproxy proxy domain=p_x.example",
        "subject:CN=aggproxy domain=p.example",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CU_ASSERT_EQUAL(server_add_peer(s, bad[i]), -1);
    CU_ASSERT_EQUAL(server_peer_count(s), 4);
    server_free(s);
}

int main(void)
{
    log_init("test_server", LOG_LEVEL_ERROR);
    static CU_TestInfo tests[] = {
        {"identity in domains", test_identity_in_domains},
        {"trusted_peer with domain=", test_peer_specs},
        CU_TEST_INFO_NULL,
    };
    CU_SuiteInfo suites[] = {
        {"server", NULL, NULL, NULL, NULL, tests},
        CU_SUITE_INFO_NULL,
    };
    return unit_run(suites);
}
