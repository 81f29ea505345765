#include "upstream.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "metrics.h"

/* GET and HEAD are safe (RFC 9110 §9.2.1), so sending one again after a broken exchange changes
 * nothing at any XDMS. */
static bool upstream_replayable(const char *method)
{
    return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
}

/* A failure of the exchange itself (as opposed to an HTTP answer, or a request that cannot be
 * sent anywhere, such as a bad target). */
static bool upstream_transport_failed(enum xcap_status st)
{
    return st == XCAP_UPSTREAM || st == XCAP_UPSTREAM_TIMEOUT;
}

/* Picks the next instance to try and points rq at it; false when every one has been tried. */
static bool upstream_next(struct upstream_call *u)
{
    size_t i = route_pick(u->t, u->up, u->tried);
    if (i >= u->up->n)
        return false;
    u->tried |= 1u << i;
    if (u->n++ > 0)
        metrics_count(METRICS_UPSTREAM_RETRIED, 1);
    u->cur = i;
    u->rq->base_url = u->up->url[i];
    route_instance_begin(u->t, u->up->id[i]);
    return true;
}

/* The outcome st of the attempt on instance u->cur; true when another instance is to be tried. */
static bool upstream_after(struct upstream_call *u, enum xcap_status st)
{
    const struct route_upstream *up = u->up;
    size_t id = up->id[u->cur];
    struct forward_response *resp = u->resp;
    route_instance_end(u->t, id);
    u->st = st;
    if (!upstream_transport_failed(st)) {
        if (st == XCAP_OK && !route_instance_up(u->t, id, NULL, 0) &&
            !route_instance_mark(u->t, id, true, NULL))
            log_info("upstream %s answers again", up->url[u->cur]);
        return false;
    }
    const char *why = resp->error ? resp->error : "no answer";
    if (resp->unsent) {
        if (route_instance_mark(u->t, id, false, why))
            log_warn("upstream %s marked down: %s", up->url[u->cur], why);
    } else {
        free(u->sent_error);
        u->sent_error = strdup(why);
        u->sent_st = st;
        if (!upstream_replayable(u->rq->method))
            return false; /* sent: the outcome is unknown, never replay a write */
    }
    if (route_pick(u->t, up, u->tried) >= up->n)
        return false;
    log_info("%s %s: %s; trying another instance", u->rq->method, u->rq->target, why);
    return true;
}

/* The answer once no further instance is tried. */
static enum xcap_status upstream_end(struct upstream_call *u)
{
    struct forward_response *resp = u->resp;
    enum xcap_status st = u->st;
    if (upstream_transport_failed(st) && resp->unsent) {
        if (u->sent_st != XCAP_OK) {
            /* An earlier attempt was sent and failed: that is what the client must know. */
            free(resp->error);
            resp->error = u->sent_error;
            u->sent_error = NULL;
            resp->unsent = false;
            st = u->sent_st;
        } else if (u->up->n > 1) {
            free(resp->error);
            struct buf b;
            buf_init(&b, 1024);
            buf_printf(&b, "no instance of upstream %s is reachable; the request was not sent",
                       u->up->name);
            resp->error = buf_detach(&b, NULL);
            buf_release(&b);
            st = XCAP_UPSTREAM_DOWN;
        }
    }
    free(u->sent_error);
    u->sent_error = NULL;
    return st;
}

static void upstream_call_init(struct upstream_call *u, struct forward *fw,
                               const struct route_table *t, const struct route_upstream *up,
                               struct forward_request *rq, struct forward_response *resp)
{
    u->fw = fw;
    u->t = t;
    u->up = up;
    u->rq = rq;
    u->resp = resp;
    u->tried = 0;
    u->n = 0;
    u->cur = 0;
    u->st = XCAP_UPSTREAM;
    u->sent_st = XCAP_OK;
    u->sent_error = NULL;
}

enum xcap_status upstream_forward(struct forward *fw, const struct route_table *t,
                                  const struct route_upstream *up, struct forward_request *rq,
                                  struct forward_response *resp, unsigned *tries)
{
    struct upstream_call u;
    upstream_call_init(&u, fw, t, up, rq, resp);
    while (upstream_next(&u) && upstream_after(&u, forward_do(fw, rq, resp)))
        ;
    if (tries)
        *tries = u.n;
    return upstream_end(&u);
}

static void upstream_step(struct upstream_call *u);

static void upstream_on_done(void *cls, enum xcap_status st)
{
    struct upstream_call *u = cls;
    if (upstream_after(u, st))
        upstream_step(u);
    else
        u->done(u->cls, upstream_end(u));
}

static void upstream_step(struct upstream_call *u)
{
    if (upstream_next(u))
        forward_submit(u->loop, u->fw, u->rq, u->resp, upstream_on_done, u);
    else
        u->done(u->cls, upstream_end(u));
}

void upstream_submit(struct upstream_call *u, struct forward_loop *loop, struct forward *fw,
                     const struct route_table *t, const struct route_upstream *up,
                     struct forward_request *rq, struct forward_response *resp,
                     forward_done_fn done, void *cls)
{
    upstream_call_init(u, fw, t, up, rq, resp);
    u->loop = loop;
    u->done = done;
    u->cls = cls;
    upstream_step(u);
}

const char *upstream_first(const struct route_table *t, const struct route_upstream *up)
{
    size_t i = route_pick(t, up, 0);
    return up->url[i < up->n ? i : 0];
}

/* ---- Health check ---------------------------------------------------------------------------- */

void upstream_check_once(struct forward *fw, const struct route_table *t, unsigned timeout_ms)
{
    /* Every distinct instance of every routed list, once. */
    const struct route_upstream *lists[FORWARD_MANY_MAX];
    size_t nl = route_table_upstream_lists(t, lists, FORWARD_MANY_MAX);
    if (nl > FORWARD_MANY_MAX)
        nl = FORWARD_MANY_MAX;
    size_t ids[FORWARD_MANY_MAX], n = 0;
    for (size_t l = 0; l < nl; l++) {
        /* A one-URL list is always tried, whatever its state: it needs no check (and its XDMS
         * sees no traffic but the clients'). */
        for (size_t k = 0; k < lists[l]->n && lists[l]->n > 1; k++) {
            bool seen = false;
            for (size_t j = 0; j < n && !seen; j++)
                seen = ids[j] == lists[l]->id[k];
            if (!seen && n < FORWARD_MANY_MAX)
                ids[n++] = lists[l]->id[k];
        }
    }
    char target[ROUTE_URL_MAX];
    snprintf(target, sizeof target, "%s/xcap-caps/global/index", route_table_root(t));
    struct forward_request rq[FORWARD_MANY_MAX];
    struct forward_response resp[FORWARD_MANY_MAX];
    enum xcap_status st[FORWARD_MANY_MAX];
    for (size_t i = 0; i < n; i++) {
        rq[i] = (struct forward_request){.method = "GET",
                                         .base_url = route_instance_url(t, ids[i]),
                                         .target = target,
                                         .timeout_ms = timeout_ms};
        forward_response_init(&resp[i]);
    }
    forward_many(fw, rq, resp, st, n);
    for (size_t i = 0; i < n; i++) {
        const char *url = route_instance_url(t, ids[i]);
        bool ok = st[i] == XCAP_OK && resp[i].status < 500;
        if (ok) {
            if (!route_instance_mark(t, ids[i], true, NULL))
                log_info("upstream %s answers again", url);
        } else {
            char why[256];
            if (st[i] == XCAP_OK)
                snprintf(why, sizeof why, "upstream %s answered its health check with %d", url,
                         resp[i].status);
            else
                snprintf(why, sizeof why, "%s",
                         resp[i].error ? resp[i].error : "health check failed");
            if (route_instance_mark(t, ids[i], false, why))
                log_warn("upstream %s marked down: %s", url, why);
        }
        forward_response_release(&resp[i]);
    }
}

struct upstream_check {
    struct forward *fw;
    const struct route_table *t;
    unsigned interval_ms;
    unsigned timeout_ms;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stop;
    bool running; /* the thread runs (some list has several instances) */
};

static void *upstream_check_run(void *cls)
{
    struct upstream_check *c = cls;
    pthread_mutex_lock(&c->lock);
    while (!c->stop) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += c->interval_ms / 1000;
        until.tv_nsec += (long)(c->interval_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (!c->stop && pthread_cond_timedwait(&c->wake, &c->lock, &until) != ETIMEDOUT)
            ;
        if (c->stop)
            break;
        pthread_mutex_unlock(&c->lock);
        upstream_check_once(c->fw, c->t, c->timeout_ms);
        pthread_mutex_lock(&c->lock);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

struct upstream_check *upstream_check_start(struct forward *fw, const struct route_table *t,
                                            unsigned interval_ms, unsigned timeout_ms)
{
    struct upstream_check *c = calloc(1, sizeof *c);
    if (!c) {
        log_error("upstream health check: out of memory");
        return NULL;
    }
    c->fw = fw;
    c->t = t;
    c->interval_ms = interval_ms ? interval_ms : 500;
    c->timeout_ms = timeout_ms ? timeout_ms : 1000;
    pthread_mutex_init(&c->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->wake, &ca);
    pthread_condattr_destroy(&ca);
    const struct route_upstream *lists[FORWARD_MANY_MAX];
    size_t nl = route_table_upstream_lists(t, lists, FORWARD_MANY_MAX);
    for (size_t l = 0; l < nl && l < FORWARD_MANY_MAX; l++)
        c->running |= lists[l]->n > 1;
    if (!c->running)
        return c; /* one URL per list: nothing to check */
    upstream_check_once(fw, t, c->timeout_ms);
    if (pthread_create(&c->thread, NULL, upstream_check_run, c) != 0) {
        log_error("upstream health check: cannot start its thread");
        pthread_cond_destroy(&c->wake);
        pthread_mutex_destroy(&c->lock);
        free(c);
        return NULL;
    }
    return c;
}

void upstream_check_stop(struct upstream_check *c)
{
    if (!c)
        return;
    if (c->running) {
        pthread_mutex_lock(&c->lock);
        c->stop = true;
        pthread_cond_signal(&c->wake);
        pthread_mutex_unlock(&c->lock);
        pthread_join(c->thread, NULL);
    }
    pthread_cond_destroy(&c->wake);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* ---- Metrics and readiness ------------------------------------------------------------------- */

/* A label value in the text format: backslash, double quote and newline escaped. */
static int upstream_label(struct buf *out, const char *v)
{
    int rc = 0;
    for (const char *p = v; *p && rc == 0; p++) {
        if (*p == '\\' || *p == '"')
            rc = buf_printf(out, "\\%c", *p);
        else if (*p == '\n')
            rc = buf_puts(out, "\\n");
        else
            rc = buf_append(out, p, 1);
    }
    return rc;
}

int upstream_metrics(void *cls, struct buf *out)
{
    const struct route_table *t = ((const struct upstream_check *)cls)->t;
    size_t n = route_table_instances(t);
    int rc = buf_puts(out, "# HELP xdm_upstream_up Whether an XDMS instance is in rotation (1) or "
                           "marked down (0).\n# TYPE xdm_upstream_up gauge\n");
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc |= buf_puts(out, "xdm_upstream_up{upstream=\"");
        rc |= upstream_label(out, route_instance_url(t, i));
        rc |= buf_printf(out, "\"} %d\n", route_instance_up(t, i, NULL, 0) ? 1 : 0);
    }
    rc |= buf_puts(out, "# HELP xdm_upstream_requests_total Requests the proxy sent to an XDMS "
                        "instance (retries included).\n# TYPE xdm_upstream_requests_total "
                        "counter\n");
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc |= buf_puts(out, "xdm_upstream_requests_total{upstream=\"");
        rc |= upstream_label(out, route_instance_url(t, i));
        rc |= buf_printf(out, "\"} %llu\n", (unsigned long long)route_instance_requests(t, i));
    }
    return rc ? -1 : 0;
}

/* A one-URL list is ready while its XDMS answers HTTP at all (any status) to a GET of the XCAP
 * root path, asked now. */
static bool upstream_probe(struct forward *fw, const struct route_table *t, const char *url,
                           char *reason, size_t len)
{
    char target[300];
    snprintf(target, sizeof target, "%s/", route_table_root(t));
    struct forward_request rq = {.method = "GET", .base_url = url, .target = target};
    struct forward_response fr;
    forward_response_init(&fr);
    bool ok = forward_do(fw, &rq, &fr) == XCAP_OK;
    if (!ok)
        snprintf(reason, len, "%s", fr.error ? fr.error : "no answer");
    forward_response_release(&fr);
    return ok;
}

bool upstream_ready(void *cls, char *reason, size_t len)
{
    const struct upstream_check *c = cls;
    const struct route_table *t = c->t;
    const struct route_upstream *lists[FORWARD_MANY_MAX];
    size_t nl = route_table_upstream_lists(t, lists, FORWARD_MANY_MAX);
    if (nl > FORWARD_MANY_MAX)
        nl = FORWARD_MANY_MAX;
    for (size_t l = 0; l < nl; l++) {
        if (lists[l]->n == 1) {
            if (!upstream_probe(c->fw, t, lists[l]->url[0], reason, len))
                return false;
            continue;
        }
        bool any = false;
        for (size_t k = 0; k < lists[l]->n && !any; k++)
            any = route_instance_up(t, lists[l]->id[k], NULL, 0);
        if (any)
            continue;
        char why[256] = "";
        route_instance_up(t, lists[l]->id[0], why, sizeof why);
        snprintf(reason, len, "no instance of upstream %s is up; %s", lists[l]->name, why);
        return false;
    }
    return true;
}
