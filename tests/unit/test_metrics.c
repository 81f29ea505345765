/* common/metrics.c: the AUID label is one of the list its caller gave whatever the path, requests
 * land in the right series and histogram buckets, and the exposition is well formed (every sample
 * after its # HELP and # TYPE lines). */
#include <CUnit/CUnit.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "metrics.h"
#include "unit.h"

/* The AUIDs the callers pass: the XDMSs' (appusage_auids()) and the proxy's. */
static const char *const test_auids[] = {"resource-lists", "pres-rules", "xcap-caps", NULL};

static void test_auid_label(void)
{
    metrics_init("unit", "/xcap-root", test_auids);
    CU_ASSERT_STRING_EQUAL(
        metrics_auid_label("/xcap-root", "/xcap-root/resource-lists/users/sip:a@b/index"),
        "resource-lists");
    CU_ASSERT_STRING_EQUAL(metrics_auid_label("/xcap-root/", "/xcap-root/xcap-caps/global/index"),
                           "xcap-caps");
    CU_ASSERT_STRING_EQUAL(metrics_auid_label("/xcap-root", "/xcap-root/"), "root");
    CU_ASSERT_STRING_EQUAL(metrics_auid_label("/xcap-root", "/xcap-root"), "root");
    /* Unknown AUIDs and paths outside the root do not make new label values. */
    CU_ASSERT_STRING_EQUAL(metrics_auid_label("/xcap-root", "/xcap-root/made-up/x"), "other");
    CU_ASSERT_STRING_EQUAL(metrics_auid_label("/xcap-root", "/xcap-rootx/resource-lists"), "other");
    CU_ASSERT_STRING_EQUAL(metrics_auid_label("/xcap-root", "/elsewhere"), "other");
    /* A prefix of a known AUID is not that AUID. */
    CU_ASSERT_STRING_EQUAL(metrics_auid_label("/xcap-root", "/xcap-root/resource-list/x"), "other");
    /* Root "" (the server root). */
    CU_ASSERT_STRING_EQUAL(metrics_auid_label("", "/pres-rules/users/x/index"), "pres-rules");
}

static void test_render(void)
{
    metrics_init("unit", "/xcap-root", test_auids);
    metrics_request("PUT", "/xcap-root/resource-lists/users/x/index", 201, 0.0007);
    metrics_request("PUT", "/xcap-root/resource-lists/users/x/index", 409, 0.003);
    metrics_request("BREW", "/coffee", 418, 20.0);
    metrics_auth_failure(METRICS_AUTH_STALE);
    metrics_upstream_error(METRICS_UPSTREAM_TIMEOUT);
    metrics_count(METRICS_NOTIFY_SENT, 3);
    struct buf b;
    buf_init(&b, METRICS_MAX_BODY);
    CU_ASSERT_EQUAL(metrics_render(&b, NULL, NULL), 0);
    const char *t = b.data;
    const char *bi = strstr(t, "\nxdm_build_info{version=\"");
    CU_ASSERT_PTR_NOT_NULL_FATAL(bi);
    CU_ASSERT_PTR_NOT_NULL(strstr(bi, "\",process=\"unit\"} 1\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "xdm_http_requests_total{method=\"PUT\","
                                     "auid=\"resource-lists\",code_class=\"2xx\"} 1\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "xdm_http_requests_total{method=\"PUT\","
                                     "auid=\"resource-lists\",code_class=\"4xx\"} 1\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "xdm_http_requests_total{method=\"other\","
                                     "auid=\"other\",code_class=\"4xx\"} 1\n"));
    /* 0.0007 s falls in le=0.001, 0.003 in le=0.005, 20 s only in +Inf. */
    CU_ASSERT_PTR_NOT_NULL(
        strstr(t, "xdm_http_request_duration_seconds_bucket{le=\"0.0005\"} 0\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "xdm_http_request_duration_seconds_bucket{le=\"0.001\"} 1\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "xdm_http_request_duration_seconds_bucket{le=\"0.005\"} 2\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "xdm_http_request_duration_seconds_bucket{le=\"10\"} 2\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "xdm_http_request_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "xdm_http_request_duration_seconds_count 3\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "xdm_http_request_duration_seconds_sum 20.003700\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "xdm_auth_failures_total{reason=\"stale\"} 1\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "xdm_upstream_errors_total{kind=\"timeout\"} 1\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "xdm_sip_notify_sent_total 3\n"));
    /* Every sample belongs to the family that the last # TYPE line announced. */
    char family[128] = "";
    size_t samples = 0;
    for (const char *line = t; *line;) {
        const char *end = strchr(line, '\n');
        CU_ASSERT_PTR_NOT_NULL_FATAL(end);
        if (strncmp(line, "# TYPE ", 7) == 0) {
            size_t n = strcspn(line + 7, " ");
            CU_ASSERT_FATAL(n < sizeof family);
            memcpy(family, line + 7, n);
            family[n] = '\0';
        } else if (line[0] != '#') {
            CU_ASSERT(family[0] && strncmp(line, family, strlen(family)) == 0);
            samples++;
        }
        line = end + 1;
    }
    CU_ASSERT(samples > 20);
    buf_release(&b);
}

static void test_render_bounded(void)
{
    struct buf b;
    buf_init(&b, 64); /* far too small: refused, not truncated */
    CU_ASSERT_EQUAL(metrics_render(&b, NULL, NULL), -1);
    buf_release(&b);
}

int main(void)
{
    CU_TestInfo tests[] = {
        {"auid label", test_auid_label},
        {"render", test_render},
        {"render bounded", test_render_bounded},
        CU_TEST_INFO_NULL,
    };
    CU_SuiteInfo suites[] = {{"metrics", NULL, NULL, NULL, NULL, tests}, CU_SUITE_INFO_NULL};
    return unit_run(suites);
}
