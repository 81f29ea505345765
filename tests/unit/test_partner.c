/* Partner domains (aggproxy/partner.c): the `partner` line, domain names, where a domain is
 * served, the request limit and the metrics. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

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

/* A self-signed P-256 certificate and its key, written to dir/cert.pem and dir/cert.key. */
static int write_self_signed(const char *dir)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    if (!k || !x)
        return -1;
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, k);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)"aggproxy", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_sign(x, k, EVP_sha256());
    char p[256];
    snprintf(p, sizeof p, "%s/cert.pem", dir);
    FILE *f = fopen(p, "w");
    int rc = f && PEM_write_X509(f, x) ? 0 : -1;
    if (f)
        fclose(f);
    snprintf(p, sizeof p, "%s/cert.key", dir);
    f = fopen(p, "w");
    if (!f || !PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL))
        rc = -1;
    if (f)
        fclose(f);
    X509_free(x);
    EVP_PKEY_free(k);
    return rc;
}

/* A partner made for real (its client certificate loaded): lookup, the request limit, the
 * counters and the histogram as /metrics writes them. */
static void test_partner_limit_metrics(void)
{
    char dir[] = "/tmp/xdm-test-partner-XXXXXX";
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    CU_ASSERT_EQUAL_FATAL(write_self_signed(dir), 0);
    char line[1024], err[768];
    snprintf(line, sizeof line,
             "Partner.Example https://127.0.0.1:1 https://127.0.0.2:1 ca=%s/cert.pem "
             "cert=%s/cert.pem key=%s/cert.key max_requests=2",
             dir, dir, dir);
    struct partner_spec s;
    CU_ASSERT_EQUAL_FATAL(partner_spec_parse(line, &s, err, sizeof err), 0);
    struct partners *ps = partners_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(ps);
    CU_ASSERT_EQUAL(partners_add_local(ps, "operator.example", err, sizeof err), 0);
    struct forward_options fo = {.timeout_ms = 1000};
    CU_ASSERT_EQUAL_FATAL(partners_add(ps, "/xcap-root", &s, &fo, err, sizeof err), 0);
    CU_ASSERT_EQUAL(partners_add(ps, "/xcap-root", &s, &fo, err, sizeof err), -1); /* twice */
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "configured twice"));
    CU_ASSERT_EQUAL(partners_add_local(ps, "partner.example", err, sizeof err), -1);
    CU_ASSERT_EQUAL(partners_count(ps), 1);
    struct partner *p = NULL;
    CU_ASSERT_EQUAL(partners_lookup(ps, "PARTNER.example", &p), PARTNERS_REMOTE);
    CU_ASSERT_PTR_EQUAL(p, partners_get(ps, 0));
    CU_ASSERT_STRING_EQUAL(partner_domain(p), "partner.example");
    /* every default AUID goes to the partner's list */
    struct route_match m;
    route_match(partner_routes(p), "/xcap-root/rls-services/users/sip:b@partner.example/index", &m);
    CU_ASSERT_EQUAL(m.kind, ROUTE_UPSTREAM);
    CU_ASSERT_STRING_EQUAL(m.upstream, "https://127.0.0.1:1 https://127.0.0.2:1");
    /* partner_route: one AUID elsewhere */
    CU_ASSERT_EQUAL(
        partners_route(ps, "partner.example pres-rules https://127.0.0.3:1", err, sizeof err), 0);
    route_match(partner_routes(p), "/xcap-root/pres-rules/users/sip:b@partner.example/index", &m);
    CU_ASSERT_STRING_EQUAL(m.upstream, "https://127.0.0.3:1");
    CU_ASSERT_EQUAL(partners_lookup(ps, "operator.example", &p), PARTNERS_LOCAL);
    CU_ASSERT_EQUAL(partners_lookup(ps, "other.example", &p), PARTNERS_UNKNOWN);
    p = partners_get(ps, 0);

    /* max_requests=2: the third at once is rejected */
    CU_ASSERT_TRUE(partner_begin(p));
    CU_ASSERT_TRUE(partner_begin(p));
    CU_ASSERT_FALSE(partner_begin(p));
    partner_end(p, 200, 0.003);
    CU_ASSERT_TRUE(partner_begin(p));
    partner_end(p, 502, 0.7);
    partner_end(p, 504, 30);
    struct buf out;
    buf_init(&out, 1 << 20);
    CU_ASSERT_EQUAL(partners_metrics(ps, &out), 0);
    CU_ASSERT_EQUAL(buf_puts(&out, ""), 0);
    static const char *const want[] = {
        "# TYPE xdm_partner_requests_total counter\n",
        "xdm_partner_requests_total{partner=\"partner.example\"} 3\n",
        "xdm_partner_errors_total{partner=\"partner.example\"} 2\n",
        "xdm_partner_rejected_total{partner=\"partner.example\"} 1\n",
        "xdm_partner_in_flight{partner=\"partner.example\"} 0\n",
        "# TYPE xdm_partner_request_duration_seconds histogram\n",
        "xdm_partner_request_duration_seconds_bucket{partner=\"partner.example\",le=\"0.005\"} 1\n",
        "xdm_partner_request_duration_seconds_bucket{partner=\"partner.example\",le=\"0.5\"} 1\n",
        "xdm_partner_request_duration_seconds_bucket{partner=\"partner.example\",le=\"1\"} 2\n",
        "xdm_partner_request_duration_seconds_bucket{partner=\"partner.example\",le=\"10\"} 2\n",
        "xdm_partner_request_duration_seconds_bucket{partner=\"partner.example\",le=\"+Inf\"} 3\n",
        "xdm_partner_request_duration_seconds_sum{partner=\"partner.example\"} 30.703000\n",
        "xdm_partner_request_duration_seconds_count{partner=\"partner.example\"} 3\n",
        "xdm_partner_instance_up{partner=\"partner.example\",upstream=\"https://127.0.0.1:1\"} 1\n",
        "xdm_partner_instance_up{partner=\"partner.example\",upstream=\"https://127.0.0.3:1\"} 1\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (!strstr(out.data, want[i]))
            printf("\n  missing: %s", want[i]);
        CU_ASSERT_PTR_NOT_NULL(strstr(out.data, want[i]));
    }
    buf_release(&out);
    partners_free(ps);
    partner_spec_release(&s);
    char path[256];
    snprintf(path, sizeof path, "%s/cert.pem", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/cert.key", dir);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    log_init("test_partner", LOG_LEVEL_ERROR);
    static CU_TestInfo tests[] = {
        {"partner lines", test_spec_parse},
        {"partner_route lines", test_route_parse},
        {"domain names", test_domain_norm},
        {"local domains and lookup", test_lookup_local},
        {"a partner: routes, request limit, metrics", test_partner_limit_metrics},
        CU_TEST_INFO_NULL,
    };
    CU_SuiteInfo suites[] = {
        {"partner", NULL, NULL, NULL, NULL, tests},
        CU_SUITE_INFO_NULL,
    };
    return unit_run(suites);
}
