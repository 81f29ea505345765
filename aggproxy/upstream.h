/* Several XDMS instances behind one upstream list (route.h): which instance a request goes to,
 * when it may go to another one, and the background health check that takes an instance out of
 * rotation and puts it back.
 *
 * Retry rules (RFC 9110 §9.2.2): a request that no instance received (forward_response.unsent:
 * refused, no socket, connect timeout) is tried on the next instance; a request that was written
 * to a connection is tried again only when its method is GET or HEAD. PUT is idempotent in HTTP,
 * but an XCAP PUT carries the state of one moment (If-Match on an ETag, a new ETag made by the
 * first execution): replayed after it was applied, it would answer 412 or make a second change
 * the client never asked for, so it is not replayed. Each instance of the list is tried at most
 * once.
 *
 * Answers: the instance's HTTP answer, whatever its status; 503 (XCAP_UPSTREAM_DOWN) when the
 * list has several instances and none received the request; otherwise what the last attempt gave
 * (502 connection broken or bad answer, 504 no answer in time: for a write, the outcome is then
 * unknown). A one-URL list answers as a plain forward_do() does (502 when it is not running).
 *
 * Thread-safety: upstream_forward() runs on any number of threads; the health check runs in its
 * own thread between upstream_check_start() and upstream_check_stop(). */
#ifndef XDM_AGGPROXY_UPSTREAM_H
#define XDM_AGGPROXY_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "forward.h"
#include "route.h"

/* Default upstream_check_interval, and its bounds (milliseconds). */
#define UPSTREAM_CHECK_INTERVAL_DEFAULT "500"
#define UPSTREAM_CHECK_INTERVAL_MIN 50
#define UPSTREAM_CHECK_INTERVAL_MAX 60000
/* Retry-After of a 503 when no instance is left (seconds). */
#define UPSTREAM_RETRY_AFTER "1"

/* Sends rq (its base_url is set to each instance tried) to the instances of up and collects the
 * answer into resp (initialised). Marks an instance that did not receive the request down.
 * Returns what forward_do() returns, or XCAP_UPSTREAM_DOWN as above. *tries (may be NULL) gets
 * the number of instances tried. */
enum xcap_status upstream_forward(struct forward *fw, const struct route_table *t,
                                  const struct route_upstream *up, struct forward_request *rq,
                                  struct forward_response *resp, unsigned *tries);

/* The state of one upstream_submit(): the caller's memory, untouched by the caller until done. */
struct upstream_call {
    struct forward_loop *loop;
    struct forward *fw;
    const struct route_table *t;
    const struct route_upstream *up;
    struct forward_request *rq;
    struct forward_response *resp;
    forward_done_fn done;
    void *cls;
    uint32_t tried; /* bit i: up->url[i] tried */
    unsigned n;     /* instances tried */
    size_t cur;     /* the instance of the attempt running */
    enum xcap_status st, sent_st;
    char *sent_error; /* the failure of an attempt that was sent: it says what happened */
};

/* upstream_forward() without holding the calling thread: each attempt goes through
 * forward_submit() on loop, the next instance (same rules) is tried from the loop thread, and
 * done(cls, st) gets what upstream_forward() would have returned, once, from a loop thread (see
 * forward_done_fn). u, rq (everything it points to) and resp must stay valid until then. */
void upstream_submit(struct upstream_call *u, struct forward_loop *loop, struct forward *fw,
                     const struct route_table *t, const struct route_upstream *up,
                     struct forward_request *rq, struct forward_response *resp,
                     forward_done_fn done, void *cls);

/* The first instance a new request of a parallel fan-out (xcap-caps, xcap-directory) goes to: the
 * one route_pick() gives. Borrowed URL. */
const char *upstream_first(const struct route_table *t, const struct route_upstream *up);

struct upstream_check;

/* Starts the health check: every interval_ms, GET <root>/xcap-caps/global/index of every instance
 * of every routed list of several instances, all at once through fw (same transport, same client
 * certificate), each bounded by timeout_ms. An instance that answers with any status below 500
 * (an XDMS answers 403 without an asserted identity: it runs and serves) is up; anything else
 * marks it down with the reason. The first round runs before this returns, so the state is known
 * when the proxy starts serving. One-URL lists are not checked (they are always tried), and
 * without lists of several instances no thread starts. Returns NULL (logged) on failure. */
struct upstream_check *upstream_check_start(struct forward *fw, const struct route_table *t,
                                            unsigned interval_ms, unsigned timeout_ms);
/* Stops and joins the thread; NULL is fine. */
void upstream_check_stop(struct upstream_check *c);
/* One round of checks now, on the calling thread (what the thread does every interval). */
void upstream_check_once(struct forward *fw, const struct route_table *t, unsigned timeout_ms);

/* metrics_collect_fn for the proxy (cls: the struct upstream_check): xdm_upstream_up{upstream}
 * (1/0) and xdm_upstream_requests_total{upstream}, one series per instance URL. (Retries are
 * counted in xdm_upstream_retries_total, metrics.h.) */
int upstream_metrics(void *cls, struct buf *out);

/* metrics_ready_fn (cls: the struct upstream_check): ready when every routed list of several
 * instances has one up (else the reason its first instance went down) and every one-URL list's
 * XDMS answers HTTP at all to a GET of the XCAP root path, asked now. */
bool upstream_ready(void *cls, char *reason, size_t len);

#endif
