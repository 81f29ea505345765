/* Partner domains (aggproxy/partner.c): the `partner` line, domain names, where a domain is
 * served, the request limit and the metrics. */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "partner.h"
#include "unit.h"

static void test_spec_parse(void)
{
    struct partner_spec s;
    char err[512];
    CU_ASSERT_EQUAL(partner_spec_parse("Partner.Example https://127.0.0.1:8443 "
                                       "https://127.0.0.2:8443/ ca=/etc/p-ca.pem cert=/etc/px.pem "
                                       "key=/etc/px.key timeout_ms=3000 connect_timeout_ms=500 "
                                       "max_requests=8",
                                       &s, err, sizeof err),
                    0);
    CU_ASSERT_STRING_EQUAL(s.domain, "partner.example");
    CU_ASSERT_STRING_EQUAL(s.urls, "https://127.0.0.1:8443 https://127.0.0.2:8443/");
    CU_ASSERT_STRING_EQUAL(s.ca, "/etc/p-ca.pem");
    CU_ASSERT_STRING_EQUAL(s.cert, "/etc/px.pem");
    CU_ASSERT_STRING_EQUAL(s.key, "/etc/px.key");
    CU_ASSERT_EQUAL(s.timeout_ms, 3000);
    CU_ASSERT_EQUAL(s.connect_timeout_ms, 500);
    CU_ASSERT_EQUAL(s.max_requests, 8);
    partner_spec_release(&s);

    /* options before URLs, defaults left 0 */
    CU_ASSERT_EQUAL(
        partner_spec_parse("b.example ca=a cert=b key=c https://h:1", &s, err, sizeof err), 0);
    CU_ASSERT_STRING_EQUAL(s.urls, "https://h:1");
    CU_ASSERT_EQUAL(s.timeout_ms, 0);
    CU_ASSERT_EQUAL(s.max_requests, 0);
    partner_spec_release(&s);

    static const struct {
        const char *line, *why;
    } bad[] = {
        {"", "empty partner"},
        {"p.example", "has no https:// URL"},
        {"p.example http://h:1 ca=a cert=b key=c", "is not https://"},
        {"p.example unix:/x.sock ca=a cert=b key=c", "is not https://"},
        {"p.example https://h:1 cert=b key=c", "needs ca=FILE"},
        {"p.example https://h:1 ca=a key=c", "needs ca=FILE"},
        {"p.example https://h:1 ca=a cert=b key=c ca=d", "given twice"},
        {"p.example https://h:1 ca=a cert=b key=c colour=red", "unknown option"},
        {"p.example https://h:1 ca=a cert=b key=c timeout_ms=0", "wants a number"},
        {"p.example https://h:1 ca=a cert=b key=c timeout_ms=12x", "wants a number"},
        {"p.example https://h:1 ca=a cert=b key=c max_requests=100001", "wants a number"},
        {"p.example https://h:1 ca= cert=b key=c", "needs a file name"},
        {"p.example https://h:1 https://h:1 ca=a cert=b key=c", "listed twice"},
        {"p..example https://h:1 ca=a cert=b key=c", "bad partner domain"},
        {".p.example https://h:1 ca=a cert=b key=c", "bad partner domain"},
        {"p_x.example https://h:1 ca=a cert=b key=c", "bad partner domain"},
        {"https://h:1 ca=a cert=b key=c", "bad partner domain"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        int rc = partner_spec_parse(bad[i].line, &s, err, sizeof err);
        if (rc != -1 || !strstr(err, bad[i].why))
            printf("\n  [%s] -> %d %s\n", bad[i].line, rc, err);
        CU_ASSERT_EQUAL(rc, -1);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, bad[i].why));
        CU_ASSERT_PTR_NULL(s.urls);
    }
}

static void test_route_parse(void)
{
    char d[PARTNER_DOMAIN_MAX + 1], err[512];
    const char *line = "  Partner.Example  pres-rules https://h:1 https://h:2";
    long off = partner_route_parse(line, d, err, sizeof err);
    CU_ASSERT_TRUE_FATAL(off > 0);
    CU_ASSERT_STRING_EQUAL(d, "partner.example");
    CU_ASSERT_STRING_EQUAL(line + off, "pres-rules https://h:1 https://h:2");
    static const struct {
        const char *line, *why;
    } bad[] = {
        {"", "bad partner_route"},
        {"p.example", "bad partner_route"},
        {"p.example pres-rules", "bad partner_route"},
        {"p.example pres-rules http://h:1", "is not https://"},
        {"p.example pres-rules https://h:1 unix:/x", "is not https://"},
        {"p.example pres-rules https://h:1 https://h:1", "listed twice"},
        {"p_x pres-rules https://h:1", "bad partner_route"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        CU_ASSERT_EQUAL(partner_route_parse(bad[i].line, d, err, sizeof err), -1);
        if (!strstr(err, bad[i].why))
            printf("\n  [%s] -> %s\n", bad[i].line, err);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, bad[i].why));
    }
    /* a route for a domain that is no partner */
    struct partners *ps = partners_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(ps);
    CU_ASSERT_EQUAL(partners_route(ps, "p.example pres-rules https://h:1", err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "p.example is not a partner"));
    partners_free(ps);
}

static void test_domain_norm(void)
{
    char out[PARTNER_DOMAIN_MAX + 1];
    CU_ASSERT_EQUAL(partner_domain_norm("Op-1.EXAMPLE", 12, out), 0);
    CU_ASSERT_STRING_EQUAL(out, "op-1.example");
    CU_ASSERT_EQUAL(partner_domain_norm("a.example.", 10, out), -1);
    CU_ASSERT_EQUAL(partner_domain_norm("", 0, out), -1);
    CU_ASSERT_EQUAL(partner_domain_norm("a b", 3, out), -1);
    char longname[PARTNER_DOMAIN_MAX + 2];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    CU_ASSERT_EQUAL(partner_domain_norm(longname, PARTNER_DOMAIN_MAX, out), 0);
    CU_ASSERT_EQUAL(partner_domain_norm(longname, PARTNER_DOMAIN_MAX + 1, out), -1);
}

static void test_lookup_local(void)
{
    struct partner *p = (struct partner *)1;
    /* no set: everything local */
    CU_ASSERT_EQUAL(partners_lookup(NULL, "any.example", &p), PARTNERS_LOCAL);
    CU_ASSERT_PTR_NULL(p);
    struct partners *ps = partners_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(ps);
    /* no local_domain: every domain is local */
    CU_ASSERT_EQUAL(partners_lookup(ps, "any.example", &p), PARTNERS_LOCAL);
    char err[256];
    CU_ASSERT_EQUAL(partners_add_local(ps, "Operator.Example", err, sizeof err), 0);
    CU_ASSERT_EQUAL(partners_add_local(ps, "operator.example", err, sizeof err), 0); /* again */
    CU_ASSERT_EQUAL(partners_add_local(ps, "bad domain", err, sizeof err), -1);
    CU_ASSERT_EQUAL(partners_lookup(ps, "operator.example", &p), PARTNERS_LOCAL);
    CU_ASSERT_EQUAL(partners_lookup(ps, "OPERATOR.example", &p), PARTNERS_LOCAL);
    CU_ASSERT_EQUAL(partners_lookup(ps, "other.example", &p), PARTNERS_UNKNOWN);
    CU_ASSERT_PTR_NULL(p);
    /* an identity without a domain (tel:) is the operator's */
    CU_ASSERT_EQUAL(partners_lookup(ps, "", &p), PARTNERS_LOCAL);
    CU_ASSERT_EQUAL(partners_count(ps), 0);
    /* a partner whose files cannot be read is refused with the reason, and not added */
    struct partner_spec s;
    CU_ASSERT_EQUAL_FATAL(partner_spec_parse("p.example https://127.0.0.1:1 ca=/nonexistent/ca "
                                             "cert=/nonexistent/c key=/nonexistent/k",
                                             &s, err, sizeof err),
                          0);
    struct forward_options fo = {.timeout_ms = 1000};
    char aerr[768] = "";
    CU_ASSERT_EQUAL(partners_add(ps, "/xcap-root", &s, &fo, aerr, sizeof aerr), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(aerr, "/nonexistent/c"));
    CU_ASSERT_EQUAL(partners_count(ps), 0);
    partner_spec_release(&s);
    /* a partner domain that is local too is refused */
    CU_ASSERT_EQUAL_FATAL(partner_spec_parse("operator.example https://127.0.0.1:1 ca=a cert=b "
                                             "key=c",
                                             &s, err, sizeof err),
                          0);
    CU_ASSERT_EQUAL(partners_add(ps, "/xcap-root", &s, &fo, aerr, sizeof aerr), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(aerr, "local_domain"));
    partner_spec_release(&s);
    CU_ASSERT_EQUAL(partners_metrics(ps, NULL), 0); /* no partner: nothing written */
    partners_free(ps);
}

int main(void)
{
    log_init("test_partner", LOG_LEVEL_ERROR);
    static CU_TestInfo tests[] = {
        {"partner lines", test_spec_parse},
        {"partner_route lines", test_route_parse},
        {"domain names", test_domain_norm},
        {"local domains and lookup", test_lookup_local},
        CU_TEST_INFO_NULL,
    };
    CU_SuiteInfo suites[] = {
        {"partner", NULL, NULL, NULL, NULL, tests},
        CU_SUITE_INFO_NULL,
    };
    return unit_run(suites);
}
