/* Process metrics (metrics.h): the counters and their text rendering. A leaf: common/httpd.c counts
 * its connections here, and the admin listener (metrics_admin.c) serves the rendering. */
#include "metrics.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

#ifndef XDM_VERSION
#define XDM_VERSION "unknown"
#endif

/* Label values (bounded lists; metrics.h). */
static const char *const metrics_methods[] = {"GET",     "PUT",  "DELETE", "POST",
                                              "OPTIONS", "HEAD", "other"};
#define METRICS_N_METHODS (sizeof metrics_methods / sizeof metrics_methods[0])
/* AUID label values: the first n_auids slots hold the AUIDs metrics_init() was given, then
 * "root" and "other". */
#define METRICS_AUID_LEN 64
#define METRICS_AUID_ROOT METRICS_AUIDS_MAX
#define METRICS_AUID_OTHER (METRICS_AUIDS_MAX + 1)
#define METRICS_N_AUIDS (METRICS_AUIDS_MAX + 2)
#define METRICS_N_CLASSES 5 /* 1xx .. 5xx */

/* Upper bounds of the latency histogram, seconds. */
static const double metrics_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                         0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define METRICS_N_BUCKETS (sizeof metrics_buckets / sizeof metrics_buckets[0])

static const char *const metrics_auth_reasons[] = {"missing", "rejected", "stale", "malformed"};
static const char *const metrics_upstream_kinds[] = {"unreachable", "timeout"};

static struct {
    char process[32];
    char root[256];
    size_t root_len;
    char auids[METRICS_AUIDS_MAX][METRICS_AUID_LEN];
    size_t n_auids;
    atomic_uint_fast64_t requests[METRICS_N_METHODS][METRICS_N_AUIDS][METRICS_N_CLASSES];
    atomic_uint_fast64_t buckets[METRICS_N_BUCKETS + 1]; /* last: +Inf */
    atomic_uint_fast64_t duration_us;                    /* sum, microseconds */
    atomic_uint_fast64_t counters[METRICS_COUNTER_COUNT];
    atomic_uint_fast64_t auth[METRICS_AUTH_REASON_COUNT];
    atomic_uint_fast64_t upstream[METRICS_UPSTREAM_KIND_COUNT];
    atomic_int_fast64_t connections;
    atomic_int_fast64_t gauges[METRICS_GAUGE_COUNT];
} metrics;

void metrics_init(const char *process, const char *root_path, const char *const *auids)
{
    snprintf(metrics.process, sizeof metrics.process, "%s", process);
    snprintf(metrics.root, sizeof metrics.root, "%s", root_path ? root_path : "");
    metrics.root_len = strlen(metrics.root);
    while (metrics.root_len && metrics.root[metrics.root_len - 1] == '/')
        metrics.root[--metrics.root_len] = '\0';
    /* A label value is written between quotes as it is: no quote, backslash or line break. */
    metrics.n_auids = 0;
    for (size_t i = 0; auids && auids[i] && metrics.n_auids < METRICS_AUIDS_MAX; i++)
        if (auids[i][0] && strlen(auids[i]) < METRICS_AUID_LEN && !strpbrk(auids[i], "\"\\\n"))
            snprintf(metrics.auids[metrics.n_auids++], METRICS_AUID_LEN, "%s", auids[i]);
}

static const char *metrics_auid_name(size_t a)
{
    return a == METRICS_AUID_ROOT ? "root" : a == METRICS_AUID_OTHER ? "other" : metrics.auids[a];
}

/* The label slot of a raw path below root_path (metrics_auid_label()). */
static size_t metrics_auid_slot(const char *root_path, const char *path)
{
    size_t rl = strlen(root_path);
    while (rl && root_path[rl - 1] == '/')
        rl--;
    if (strncmp(path, root_path, rl) != 0 || (path[rl] != '/' && path[rl] != '\0'))
        return METRICS_AUID_OTHER;
    const char *a = path + rl;
    while (*a == '/')
        a++;
    size_t n = strcspn(a, "/?");
    if (n == 0)
        return METRICS_AUID_ROOT;
    for (size_t i = 0; i < metrics.n_auids; i++)
        if (strlen(metrics.auids[i]) == n && memcmp(metrics.auids[i], a, n) == 0)
            return i;
    return METRICS_AUID_OTHER;
}

const char *metrics_auid_label(const char *root_path, const char *path)
{
    return metrics_auid_name(metrics_auid_slot(root_path, path));
}

static size_t metrics_index(const char *const *list, size_t n, const char *v)
{
    for (size_t i = 0; i + 1 < n; i++)
        if (strcmp(list[i], v) == 0)
            return i;
    return n - 1;
}

void metrics_request(const char *method, const char *path, int status, double seconds)
{
    size_t m = metrics_index(metrics_methods, METRICS_N_METHODS, method ? method : "");
    size_t a = metrics_auid_slot(metrics.root, path ? path : "");
    int cls = status / 100;
    if (cls < 1 || cls > METRICS_N_CLASSES)
        cls = 5;
    atomic_fetch_add_explicit(&metrics.requests[m][a][cls - 1], 1, memory_order_relaxed);
    size_t b = 0;
    while (b < METRICS_N_BUCKETS && seconds > metrics_buckets[b])
        b++;
    atomic_fetch_add_explicit(&metrics.buckets[b], 1, memory_order_relaxed);
    if (seconds < 0)
        seconds = 0;
    atomic_fetch_add_explicit(&metrics.duration_us, (uint64_t)(seconds * 1e6),
                              memory_order_relaxed);
}

void metrics_count(enum metrics_counter c, uint64_t n)
{
    if ((unsigned)c < METRICS_COUNTER_COUNT)
        atomic_fetch_add_explicit(&metrics.counters[c], n, memory_order_relaxed);
}

void metrics_count_set(enum metrics_counter c, uint64_t total)
{
    if ((unsigned)c < METRICS_COUNTER_COUNT)
        atomic_store_explicit(&metrics.counters[c], total, memory_order_relaxed);
}

void metrics_gauge_set(enum metrics_gauge g, int64_t v)
{
    if ((unsigned)g < METRICS_GAUGE_COUNT)
        atomic_store_explicit(&metrics.gauges[g], v, memory_order_relaxed);
}

void metrics_auth_failure(enum metrics_auth_reason r)
{
    if ((unsigned)r < METRICS_AUTH_REASON_COUNT)
        atomic_fetch_add_explicit(&metrics.auth[r], 1, memory_order_relaxed);
}

void metrics_upstream_error(enum metrics_upstream_kind k)
{
    if ((unsigned)k < METRICS_UPSTREAM_KIND_COUNT)
        atomic_fetch_add_explicit(&metrics.upstream[k], 1, memory_order_relaxed);
}

void metrics_connections_add(int delta)
{
    atomic_fetch_add_explicit(&metrics.connections, delta, memory_order_relaxed);
}

static uint64_t metrics_load(atomic_uint_fast64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

static int metrics_family(struct buf *out, const char *name, const char *type, const char *help)
{
    return buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

int metrics_render(struct buf *out, metrics_collect_fn collect, void *cls)
{
    int rc = 0;
    rc |= metrics_family(out, "xdm_build_info", "gauge", "Build of this process (always 1).");
    rc |= buf_printf(out, "xdm_build_info{version=\"%s\",process=\"%s\"} 1\n", XDM_VERSION,
                     metrics.process);

    rc |= metrics_family(out, "xdm_http_requests_total", "counter",
                         "HTTP requests answered, by method, AUID and status class.");
    for (size_t m = 0; m < METRICS_N_METHODS; m++)
        for (size_t a = 0; a < METRICS_N_AUIDS; a++)
            for (size_t c = 0; c < METRICS_N_CLASSES; c++) {
                uint64_t v = metrics_load(&metrics.requests[m][a][c]);
                if (v)
                    rc |= buf_printf(out,
                                     "xdm_http_requests_total{method=\"%s\",auid=\"%s\","
                                     "code_class=\"%zuxx\"} %" PRIu64 "\n",
                                     metrics_methods[m], metrics_auid_name(a), c + 1, v);
            }

    rc |= metrics_family(out, "xdm_http_request_duration_seconds", "histogram",
                         "Time from the complete request to the response, seconds.");
    uint64_t cum = 0;
    for (size_t b = 0; b <= METRICS_N_BUCKETS; b++) {
        cum += metrics_load(&metrics.buckets[b]);
        if (b < METRICS_N_BUCKETS)
            rc |=
                buf_printf(out, "xdm_http_request_duration_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                           metrics_buckets[b], cum);
        else
            rc |= buf_printf(
                out, "xdm_http_request_duration_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", cum);
    }
    uint64_t us = metrics_load(&metrics.duration_us);
    rc |= buf_printf(out, "xdm_http_request_duration_seconds_sum %" PRIu64 ".%06" PRIu64 "\n",
                     us / 1000000, us % 1000000);
    rc |= buf_printf(out, "xdm_http_request_duration_seconds_count %" PRIu64 "\n", cum);

    rc |= metrics_family(out, "xdm_http_connections_open", "gauge",
                         "HTTP connections open now (every listener of the process).");
    rc |= buf_printf(out, "xdm_http_connections_open %" PRIdFAST64 "\n",
                     atomic_load_explicit(&metrics.connections, memory_order_relaxed));

    rc |= metrics_family(out, "xdm_sip_subscriptions_active", "gauge",
                         "SIP xcap-diff subscriptions held now.");
    rc |= buf_printf(
        out, "xdm_sip_subscriptions_active %" PRIdFAST64 "\n",
        atomic_load_explicit(&metrics.gauges[METRICS_SUBSCRIPTIONS], memory_order_relaxed));

    rc |= metrics_family(out, "xdm_charging_backlog", "gauge",
                         "Charging records queued and not delivered yet (docs/charging.md).");
    rc |= buf_printf(
        out, "xdm_charging_backlog %" PRIdFAST64 "\n",
        atomic_load_explicit(&metrics.gauges[METRICS_CHARGING_BACKLOG], memory_order_relaxed));

    static const struct {
        enum metrics_counter c;
        const char *name, *help;
    } plain[] = {
        {METRICS_NOTIFY_SENT, "xdm_sip_notify_sent_total", "SIP NOTIFY requests sent."},
        {METRICS_NOTIFY_FAILED, "xdm_sip_notify_failed_total",
         "SIP NOTIFY requests answered with an error or never answered."},
        {METRICS_NOTIFY_RETRIED, "xdm_sip_notify_retried_total",
         "SIP NOTIFY retransmissions (over UDP, RFC 3261 §17.1.2; updated once a second)."},
        {METRICS_SUBS_TAKEN, "xdm_sip_subscriptions_taken_over_total",
         "SIP subscriptions taken over from another instance of the role whose lease expired."},
        {METRICS_CONN_REFUSED, "xdm_http_connections_refused_total",
         "HTTP connections closed by the connection bounds (malformed request line, head or "
         "body too slow, connection limit or per-address limit reached)."},
        {METRICS_UPSTREAM_RETRIED, "xdm_upstream_retries_total",
         "Requests the proxy sent again to another instance of an upstream list."},
        {METRICS_CHARGING_SENT, "xdm_charging_sent_total",
         "Charging records delivered (ACA with DIAMETER_SUCCESS, or CDR line on disk)."},
        {METRICS_CHARGING_FAILED, "xdm_charging_failed_total",
         "Charging delivery attempts that failed; the records stay queued and are retried."},
        {METRICS_CHARGING_DROPPED, "xdm_charging_dropped_total",
         "Chargeable events not queued because the queue held charging_queue_max records."},
    };
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
        rc |= metrics_family(out, plain[i].name, "counter", plain[i].help);
        rc |= buf_printf(out, "%s %" PRIu64 "\n", plain[i].name,
                         metrics_load(&metrics.counters[plain[i].c]));
    }

    rc |= metrics_family(out, "xdm_auth_failures_total", "counter",
                         "Failed Digest/GAA authentications at the proxy, by reason.");
    for (size_t i = 0; i < METRICS_AUTH_REASON_COUNT; i++)
        rc |= buf_printf(out, "xdm_auth_failures_total{reason=\"%s\"} %" PRIu64 "\n",
                         metrics_auth_reasons[i], metrics_load(&metrics.auth[i]));
    rc |= metrics_family(out, "xdm_upstream_errors_total", "counter",
                         "Requests the proxy could not forward to an XDMS, by kind.");
    for (size_t i = 0; i < METRICS_UPSTREAM_KIND_COUNT; i++)
        rc |= buf_printf(out, "xdm_upstream_errors_total{kind=\"%s\"} %" PRIu64 "\n",
                         metrics_upstream_kinds[i], metrics_load(&metrics.upstream[i]));
    if (rc == 0 && collect)
        rc = collect(cls, out);
    return rc ? -1 : 0;
}
