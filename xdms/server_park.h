/* server_park: the queue of parked writes and the write threads that run them (server.h,
 * "Parked writes"; docs/performance.md). Internal to xdms/server*.c. The queue knows nothing of
 * a request but its connection: server.c embeds a struct server_park_item first in its write and
 * gives the function that runs one, so the queue never calls back into server.c by name. */
#ifndef XDMS_SERVER_PARK_H
#define XDMS_SERVER_PARK_H

#include <pthread.h>
#include <stdbool.h>

#include "httpd.h"
#include "status.h"

struct server_park_item {
    struct server_park_item *next; /* in the queue */
    const struct http_request *http;
};

/* Runs and answers item on a write thread; item is the runner's from then on (it frees it). */
typedef void server_park_run_fn(void *cls, struct server_park_item *item);

/* A queue under lock, run by the write threads. */
struct server_park {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct server_park_item *head, *tail;
    unsigned parked; /* queued or running */
    bool on;         /* write threads running, accepting writes */
    unsigned max;    /* max_parked_writes */
    pthread_t *writers;
    unsigned n_writers;
    server_park_run_fn *run;
    void *cls;
};

/* Initialises p (off: nothing parks until server_park_start). */
void server_park_init(struct server_park *p);

/* Starts threads write threads (at most SERVER_WRITE_THREADS_MAX; 0: parking stays off) that
 * call run(cls, item) for each parked item; at most max wait or run at once. 0 or -1 (a thread
 * could not start; server_park_release() stops those started). */
int server_park_start(struct server_park *p, unsigned threads, unsigned max,
                      server_park_run_fn *run, void *cls);

/* Parks item and defers its answer (http_request_defer). XCAP_OK: parked, item is the write
 * threads'. XCAP_STORAGE: max are waiting (err set; 503 with Retry-After). Any other status:
 * parking is off or the request cannot be deferred; the caller runs the write itself. */
enum xcap_status server_park_push(struct server_park *p, struct server_park_item *item,
                                  struct xcap_err *err);

/* Every item parked so far is run, then the write threads end; later pushes are refused. */
void server_park_stop(struct server_park *p);

/* Stops p and releases what it holds. */
void server_park_release(struct server_park *p);

#endif
