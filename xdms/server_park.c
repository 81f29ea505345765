/* server_park: the parked-writes queue, its committer or write threads (server_park.h). */
#include "server_park.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "log.h"
#include "server.h"

void server_park_init(struct server_park *p)
{
    pthread_mutex_init(&p->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cond, &ca);
    pthread_condattr_destroy(&ca);
}

/* Runs a batch of n items taken from the queue (list linked by next), answers them. */
static void server_park_run_batch(struct server_park *p, struct server_park_item *list)
{
    bool batch = p->ops.begin && p->ops.begin(p->cls);
    for (struct server_park_item *w = list, *next; w; w = next) {
        next = w->next; /* w is gone once answered */
        p->ops.run(p->cls, w);
        if (!batch)
            p->ops.answer(p->cls, w, false);
    }
    if (!batch)
        return;
    bool failed = !p->ops.end(p->cls);
    for (struct server_park_item *w = list, *next; w; w = next) {
        next = w->next;
        p->ops.answer(p->cls, w, failed);
    }
}

/* The committer's wait for the writers it answered (p->lock held): until want items are
 * parked, at most p->wait_us. */
static void server_park_await(struct server_park *p, unsigned want)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += (long)p->wait_us * 1000;
    until.tv_sec += until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    p->want = want;
    while (p->parked < want && p->on)
        if (pthread_cond_timedwait(&p->cond, &p->lock, &until) == ETIMEDOUT)
            break;
    p->want = 0;
}

static void *server_park_thread(void *cls)
{
    struct server_park *p = cls;
    unsigned take = p->ops.begin ? p->batch_max : 1;
    unsigned answered = 0; /* by the last batch */
    pthread_mutex_lock(&p->lock);
    for (;;) {
        unsigned queued = p->parked; /* nothing runs now: all are queued */
        while (!p->head && p->on)
            pthread_cond_wait(&p->cond, &p->lock);
        if (p->ops.begin && p->wait_us && answered > 1 && queued + answered > p->parked)
            server_park_await(p, queued + answered < take ? queued + answered : take);
        struct server_park_item *list = p->head;
        if (!list)
            break; /* stopping and nothing left */
        /* The whole queue up to take items: what arrived while the last batch committed. */
        struct server_park_item *last = list;
        unsigned n = 1;
        while (n < take && last->next) {
            last = last->next;
            n++;
        }
        p->head = last->next;
        if (!p->head)
            p->tail = NULL;
        last->next = NULL;
        pthread_mutex_unlock(&p->lock);
        server_park_run_batch(p, list);
        pthread_mutex_lock(&p->lock);
        p->parked -= n;
        answered = n;
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

int server_park_start(struct server_park *p, unsigned threads, unsigned max, unsigned batch_max,
                      unsigned wait_us, const struct server_park_ops *ops, void *cls)
{
    unsigned n = threads;
    if (n == 0)
        return 0;
    if (n > SERVER_WRITE_THREADS_MAX)
        n = SERVER_WRITE_THREADS_MAX;
    if (ops->begin)
        n = 1; /* one committer: a second would only wait for the first's batch */
    p->max = max;
    p->batch_max = batch_max ? batch_max : 1;
    p->wait_us = wait_us;
    p->ops = *ops;
    p->cls = cls;
    p->writers = calloc(n, sizeof *p->writers);
    if (!p->writers)
        return -1;
    p->on = true;
    for (; p->n_writers < n; p->n_writers++) {
        if (pthread_create(&p->writers[p->n_writers], NULL, server_park_thread, p) != 0) {
            log_error("cannot start write thread %u of %u", p->n_writers + 1, n);
            return -1; /* server_park_release() stops those started */
        }
    }
    return 0;
}

void server_park_stop(struct server_park *p)
{
    pthread_mutex_lock(&p->lock);
    p->on = false;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < p->n_writers; i++)
        pthread_join(p->writers[i], NULL);
    p->n_writers = 0;
}

void server_park_release(struct server_park *p)
{
    server_park_stop(p);
    free(p->writers);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
}

enum xcap_status server_park_push(struct server_park *p, struct server_park_item *w,
                                  struct xcap_err *err)
{
    pthread_mutex_lock(&p->lock);
    if (!p->on) {
        pthread_mutex_unlock(&p->lock);
        return XCAP_INTERNAL;
    }
    if (p->parked >= p->max) {
        pthread_mutex_unlock(&p->lock);
        return xcap_fail(err, XCAP_STORAGE,
                         "too many writes waiting for their commit (max_parked_writes = %u); "
                         "retry after the time in Retry-After",
                         p->max);
    }
    if (http_request_defer(w->http) < 0) {
        pthread_mutex_unlock(&p->lock);
        return XCAP_INTERNAL;
    }
    p->parked++;
    log_debug("write parked: %s %s (%u parked)", http_request_method(w->http),
              http_request_target(w->http), p->parked);
    w->next = NULL;
    if (p->tail)
        p->tail->next = w;
    else
        p->head = w;
    p->tail = w;
    if (p->parked >= p->want) /* the committer's wait: woken once, when enough are in */
        pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
    return XCAP_OK;
}
