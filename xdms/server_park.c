/* server_park: the parked-writes queue and its write threads (server_park.h). */
#include "server_park.h"

#include <stdlib.h>

#include "log.h"
#include "server.h"

void server_park_init(struct server_park *p)
{
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
}

static void *server_park_thread(void *cls)
{
    struct server_park *p = cls;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->head && p->on)
            pthread_cond_wait(&p->cond, &p->lock);
        struct server_park_item *w = p->head;
        if (!w)
            break; /* stopping and nothing left */
        p->head = w->next;
        if (!p->head)
            p->tail = NULL;
        pthread_mutex_unlock(&p->lock);
        p->run(p->cls, w);
        pthread_mutex_lock(&p->lock);
        p->parked--;
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

int server_park_start(struct server_park *p, unsigned threads, unsigned max,
                      server_park_run_fn *run, void *cls)
{
    unsigned n = threads;
    if (n == 0)
        return 0;
    if (n > SERVER_WRITE_THREADS_MAX)
        n = SERVER_WRITE_THREADS_MAX;
    p->max = max;
    p->run = run;
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
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
    return XCAP_OK;
}
