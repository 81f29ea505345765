/* The event loops of forward_submit() (forward.h): each thread owns one curl multi handle, its
 * connection cache and the exchanges running on it. Other threads reach a loop only through its
 * queue (under the loop's lock, held for a list operation) and curl_multi_wakeup(). */
#include "forward.h"
#include "forward_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* One submitted exchange. x comes first: CURLOPT_PRIVATE points at it. */
struct forward_async {
    struct forward_exchange x;
    CURL *h;
    forward_done_fn done;
    void *cls;
    enum xcap_status st; /* a set-up failure, answered by the loop without a transfer */
    struct forward_async *next, *prev;
};

struct forward_loop_thread {
    struct forward_loop *loop;
    pthread_t thread;
    CURLM *multi;
    pthread_mutex_t lock;
    /* under lock */
    struct forward_async *queue, *queue_tail; /* submitted, not yet on the multi handle */
    CURL *spare[64];                          /* handles of finished exchanges, reset */
    size_t n_spare;
    bool stop, stopped;
    bool joined; /* by forward_loop_stop() */
    /* True while the loop thread is in (or about to enter) curl_multi_poll: only then does a
     * submission need curl_multi_wakeup (two system calls and a wakeup less per exchange while
     * the loop is busy). */
    atomic_bool polling;
    /* the loop thread's own */
    struct forward_async *running; /* on the multi handle */
};

struct forward_loop {
    unsigned n;
    atomic_uint next; /* round robin over the threads */
    struct forward_loop_thread t[FORWARD_LOOP_THREADS_MAX];
};

/* Ends a, whose handle is off the multi handle: the handle goes back to the spares (or is freed),
 * then done is called, with nothing of a left. */
static void forward_async_complete(struct forward_loop_thread *t, struct forward_async *a,
                                   enum xcap_status st)
{
    forward_done_fn done = a->done;
    void *cls = a->cls;
    CURL *h = a->h;
    forward_exchange_release(&a->x);
    free(a);
    if (h) {
        /* Reset keeps nothing of the exchange; the connections stay with the multi handle. */
        curl_easy_reset(h);
        pthread_mutex_lock(&t->lock);
        if (t->n_spare < sizeof t->spare / sizeof t->spare[0]) {
            t->spare[t->n_spare++] = h;
            h = NULL;
        }
        pthread_mutex_unlock(&t->lock);
        curl_easy_cleanup(h);
    }
    done(cls, st);
}

static void forward_async_stopping(struct forward_loop_thread *t, struct forward_async *a)
{
    forward_set_error(a->x.resp, "the proxy is stopping");
    a->x.resp->unsent = true;
    forward_async_complete(t, a, XCAP_UPSTREAM_DOWN);
}

/* Moves the queued exchanges onto the multi handle (or, when stopping, ends them). */
static bool forward_async_take(struct forward_loop_thread *t)
{
    pthread_mutex_lock(&t->lock);
    struct forward_async *a = t->queue;
    t->queue = t->queue_tail = NULL;
    bool stop = t->stop;
    pthread_mutex_unlock(&t->lock);
    while (a) {
        struct forward_async *next = a->next;
        if (stop) {
            forward_async_stopping(t, a);
        } else if (a->st != XCAP_OK) {
            forward_async_complete(t, a, a->st);
        } else if (curl_multi_add_handle(t->multi, a->h) != CURLM_OK) {
            forward_set_error(a->x.resp, "cannot start the request");
            a->x.resp->unsent = true;
            forward_async_complete(t, a, XCAP_INTERNAL);
        } else {
            a->prev = NULL;
            a->next = t->running;
            if (t->running)
                t->running->prev = a;
            t->running = a;
        }
        a = next;
    }
    return stop;
}

static void forward_async_unlink(struct forward_loop_thread *t, struct forward_async *a)
{
    if (a->prev)
        a->prev->next = a->next;
    else
        t->running = a->next;
    if (a->next)
        a->next->prev = a->prev;
    curl_multi_remove_handle(t->multi, a->h);
}

static void *forward_async_run(void *cls)
{
    struct forward_loop_thread *t = cls;
    for (;;) {
        if (forward_async_take(t))
            break;
        int still = 0;
        curl_multi_perform(t->multi, &still);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(t->multi, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct forward_async *a = NULL;
            CURL *h = msg->easy_handle;
            CURLcode rc = msg->data.result;
            curl_easy_getinfo(h, CURLINFO_PRIVATE, (char **)&a);
            if (!a)
                continue;
            enum xcap_status st = forward_exchange_finish(h, &a->x, rc);
            forward_async_unlink(t, a); /* msg is invalid from here */
            forward_async_complete(t, a, st);
        }
        /* Wakes for socket activity, curl's next timeout, or curl_multi_wakeup (a submission,
         * the stop); the 1 s bound is a safety net only. polling is set before the queue is
         * looked at, and a submitter looks at polling after queueing (both under or after the
         * lock): either this sees the new exchange or the submitter sees polling and wakes it. */
        atomic_store(&t->polling, true);
        pthread_mutex_lock(&t->lock);
        bool idle = !t->queue && !t->stop;
        pthread_mutex_unlock(&t->lock);
        if (idle)
            curl_multi_poll(t->multi, NULL, 0, 1000, NULL);
        atomic_store(&t->polling, false);
    }
    while (t->running) {
        struct forward_async *a = t->running;
        forward_async_unlink(t, a);
        forward_async_stopping(t, a);
    }
    pthread_mutex_lock(&t->lock);
    t->stopped = true;
    pthread_mutex_unlock(&t->lock);
    /* A submission that raced with the stop and is still queued. */
    forward_async_take(t);
    return NULL;
}

static void forward_loop_thread_release(struct forward_loop_thread *t)
{
    for (size_t i = 0; i < t->n_spare; i++)
        curl_easy_cleanup(t->spare[i]);
    t->n_spare = 0;
    if (t->multi)
        curl_multi_cleanup(t->multi);
    pthread_mutex_destroy(&t->lock);
}

struct forward_loop *forward_loop_start(unsigned n_threads)
{
    if (n_threads < 1 || n_threads > FORWARD_LOOP_THREADS_MAX) {
        log_error("forward loop: %u threads (1..%d)", n_threads, FORWARD_LOOP_THREADS_MAX);
        return NULL;
    }
    struct forward_loop *l = calloc(1, sizeof *l);
    if (!l) {
        log_error("forward loop: out of memory");
        return NULL;
    }
    for (unsigned i = 0; i < n_threads; i++) {
        struct forward_loop_thread *t = &l->t[i];
        t->loop = l;
        pthread_mutex_init(&t->lock, NULL);
        if (!(t->multi = curl_multi_init())) {
            log_error("forward loop: cannot make a curl multi handle");
            forward_loop_thread_release(t);
            break;
        }
        /* Connections kept alive for reuse (the pool), bounded. */
        curl_multi_setopt(t->multi, CURLMOPT_MAXCONNECTS, (long)FORWARD_LOOP_MAX_CONNECTS);
        if (pthread_create(&t->thread, NULL, forward_async_run, t) != 0) {
            log_error("forward loop: cannot start a thread");
            forward_loop_thread_release(t);
            break;
        }
        l->n++;
    }
    if (l->n < n_threads) {
        forward_loop_free(l);
        return NULL;
    }
    return l;
}

void forward_loop_stop(struct forward_loop *l)
{
    if (!l)
        return;
    for (unsigned i = 0; i < l->n; i++) {
        struct forward_loop_thread *t = &l->t[i];
        pthread_mutex_lock(&t->lock);
        t->stop = true;
        pthread_mutex_unlock(&t->lock);
        curl_multi_wakeup(t->multi);
    }
    for (unsigned i = 0; i < l->n; i++)
        if (!l->t[i].joined) {
            pthread_join(l->t[i].thread, NULL);
            l->t[i].joined = true;
        }
}

void forward_loop_free(struct forward_loop *l)
{
    if (!l)
        return;
    forward_loop_stop(l);
    for (unsigned i = 0; i < l->n; i++)
        forward_loop_thread_release(&l->t[i]);
    free(l);
}

void forward_submit(struct forward_loop *l, struct forward *fw, const struct forward_request *rq,
                    struct forward_response *resp, forward_done_fn done, void *cls)
{
    struct forward_loop_thread *t = &l->t[atomic_fetch_add(&l->next, 1) % l->n];
    struct forward_async *a = calloc(1, sizeof *a);
    if (!a) {
        forward_set_error(resp, "out of memory");
        resp->unsent = true;
        done(cls, XCAP_INTERNAL);
        return;
    }
    a->x.rq = rq;
    a->x.resp = resp;
    a->done = done;
    a->cls = cls;
    pthread_mutex_lock(&t->lock);
    a->h = t->n_spare ? t->spare[--t->n_spare] : NULL;
    pthread_mutex_unlock(&t->lock);
    if (!a->h)
        a->h = curl_easy_init();
    if (!a->h) {
        forward_set_error(resp, "cannot make an HTTP client handle");
        a->st = XCAP_INTERNAL;
    } else {
        /* Set up here, on the submitting thread: the loop thread only moves bytes. */
        a->st = forward_exchange_setup(fw, a->h, &a->x);
        if (a->st != XCAP_OK)
            resp->unsent = true;
    }
    pthread_mutex_lock(&t->lock);
    bool stopped = t->stopped;
    if (!stopped) {
        a->next = NULL;
        if (t->queue_tail)
            t->queue_tail->next = a;
        else
            t->queue = a;
        t->queue_tail = a;
    }
    pthread_mutex_unlock(&t->lock);
    if (stopped)
        forward_async_stopping(t, a);
    else if (atomic_load(&t->polling))
        curl_multi_wakeup(t->multi);
}
