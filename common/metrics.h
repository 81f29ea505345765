/* Process metrics in the Prometheus text exposition format 0.0.4, and the admin HTTP listener
 * that serves them with /healthz and /readyz (docs/operations.md lists every metric).
 *
 * Counters live in fixed arrays of C11 atomics, one set per process, so recording on the request
 * path takes no lock and allocates nothing. Label values come from fixed lists (method, AUID,
 * status class), so the number of series is bounded whatever clients send.
 *
 * Thread-safety: every function may be called from any thread once metrics_init() has returned. */
#ifndef XDM_METRICS_H
#define XDM_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

struct httpd;

/* Default admin listeners (configuration key metrics). */
#define METRICS_DEFAULT_PROXY "127.0.0.1:9080"
#define METRICS_DEFAULT_SHARED_LIST "127.0.0.1:9181"
#define METRICS_DEFAULT_PRESENCE "127.0.0.1:9182"
#define METRICS_DEFAULT_RLS "127.0.0.1:9183"
#define METRICS_DEFAULT_UT "127.0.0.1:9184"

/* Largest /metrics body. */
#define METRICS_MAX_BODY (256u * 1024u)
/* Longest /readyz reason. */
#define METRICS_REASON_MAX 256

/* Counters without labels (the process-specific ones are zero, and still exported, where they do
 * not apply, so that a dashboard shows every series for every process). */
enum metrics_counter {
    METRICS_NOTIFY_SENT,      /* xdm_sip_notify_sent_total */
    METRICS_NOTIFY_FAILED,    /* xdm_sip_notify_failed_total */
    METRICS_NOTIFY_RETRIED,   /* xdm_sip_notify_retried_total */
    METRICS_CONN_REFUSED,     /* xdm_http_connections_refused_total */
    METRICS_UPSTREAM_RETRIED, /* xdm_upstream_retries_total (proxy) */
    METRICS_SUBS_TAKEN,       /* xdm_sip_subscriptions_taken_over_total */
    METRICS_CHARGING_SENT,    /* xdm_charging_sent_total (XDMS) */
    METRICS_CHARGING_FAILED,  /* xdm_charging_failed_total (XDMS) */
    METRICS_CHARGING_DROPPED, /* xdm_charging_dropped_total (XDMS) */
    /* xdm_charging_rejected_total (XDMS) */
    METRICS_CHARGING_REJECTED,
    METRICS_COUNTER_COUNT
};

/* Gauges without labels, set by their owner. */
enum metrics_gauge {
    METRICS_SUBSCRIPTIONS,    /* xdm_sip_subscriptions_active */
    METRICS_CHARGING_BACKLOG, /* xdm_charging_backlog (XDMS) */
    METRICS_GAUGE_COUNT
};

/* Reasons of a failed authentication at the proxy (xdm_auth_failures_total{reason}). */
enum metrics_auth_reason {
    METRICS_AUTH_MISSING,   /* no credentials: the first 401 of a Digest exchange */
    METRICS_AUTH_REJECTED,  /* wrong digest, unknown user or a replayed nonce count */
    METRICS_AUTH_STALE,     /* expired nonce */
    METRICS_AUTH_MALFORMED, /* an Authorization header that does not parse */
    METRICS_AUTH_REASON_COUNT
};

/* Kinds of upstream errors at the proxy (xdm_upstream_errors_total{kind}). */
enum metrics_upstream_kind {
    METRICS_UPSTREAM_UNREACHABLE, /* refused, reset, not HTTP, too large: answered 502 */
    METRICS_UPSTREAM_TIMEOUT,     /* no answer within upstream_timeout_ms: answered 504 */
    METRICS_UPSTREAM_KIND_COUNT
};

/* Extra series of one process, written at scrape time (e.g. store gauges read in one read
 * transaction). Appends complete metric families (# HELP, # TYPE, samples) to out; returns 0 or
 * -1 (the scrape answers 500). */
typedef int (*metrics_collect_fn)(void *cls, struct buf *out);
/* Readiness: returns true, or false with a one-line reason in reason (METRICS_REASON_MAX). */
typedef bool (*metrics_ready_fn)(void *cls, char *reason, size_t len);

/* Most AUIDs with a label value of their own. */
#define METRICS_AUIDS_MAX 16

/* Sets the process's identity (xdm_build_info{version,process}), the XCAP root path whose first
 * segment below it is the AUID label (e.g. "/xcap-root") and the AUIDs that label values may name
 * (NULL-terminated, NULL for none; the first METRICS_AUIDS_MAX of at most 63 bytes without a
 * quote, backslash or line break): the callers know the AUIDs, this module knows none. Strings
 * are copied. Call once, before any thread records. */
void metrics_init(const char *process, const char *root_path, const char *const *auids);

/* Records one answered request: method, raw request path, status, seconds it took. */
void metrics_request(const char *method, const char *path, int status, double seconds);
void metrics_count(enum metrics_counter c, uint64_t n);
/* Sets a counter kept elsewhere (e.g. by the SIP stack) to its current total. */
void metrics_count_set(enum metrics_counter c, uint64_t total);
void metrics_gauge_set(enum metrics_gauge g, int64_t v);
void metrics_auth_failure(enum metrics_auth_reason r);
void metrics_upstream_error(enum metrics_upstream_kind k);
/* Connection gauge (xdm_http_connections_open): +1 when one opens, -1 when it closes. */
void metrics_connections_add(int delta);

/* The AUID label of a raw path below root_path: one of the AUIDs given to metrics_init(), "root"
 * for paths that name none, "other" for anything else. Exposed for tests. */
const char *metrics_auid_label(const char *root_path, const char *path);

/* Writes every metric in the text format 0.0.4, then collect's families (collect may be NULL).
 * Returns 0 or -1 (out of memory / over out's maximum). */
int metrics_render(struct buf *out, metrics_collect_fn collect, void *cls);

/* Admin listener on host:port: GET /metrics, /healthz ("ok" while the process runs) and /readyz
 * (200 "ready", or 503 with ready's reason); 404 for any other path, 405 for other methods.
 * One thread, small bounds. Returns 0 with *out set, or -1 (logged). collect and ready may be
 * NULL (ready: always ready). */
int metrics_admin_start(const char *host, uint16_t port, metrics_collect_fn collect,
                        metrics_ready_fn ready, void *cls, struct httpd **out);

#endif
