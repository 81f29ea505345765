/* server_park: the queue of parked writes and the threads that run them (server.h, "Parked
 * writes"; docs/performance.md). Internal to xdms/server*.c. The queue knows nothing of a request
 * but its connection: server.c embeds a struct server_park_item first in its write and gives the
 * functions that run, answer and batch them, so the queue never calls back into server.c by
 * name.
 *
 * Two ways to run them. With batches (ops.begin set: a store that takes them), one thread, the
 * committer, takes every parked write at once (at most batch_max), opens a batch, runs each
 * (its transaction nested in the batch's, no waiting), ends the batch with one sync and only
 * then answers them all: one thread switch per batch, none per write. Without, write_threads
 * threads each run one write at a time and answer it; their transactions share commits through
 * the store's group commit. */
#ifndef XDMS_SERVER_PARK_H
#define XDMS_SERVER_PARK_H

#include <pthread.h>
#include <stdbool.h>

#include "httpd.h"
#include "status.h"

struct server_park_item {
    struct server_park_item *next; /* in the queue, then in the batch */
    const struct http_request *http;
};

struct server_park_ops {
    /* Runs item's write; its answer waits for answer(). */
    void (*run)(void *cls, struct server_park_item *item);
    /* Answers item, which is the callee's from then on (it frees it). batch_failed: the batch's
     * one commit failed, so a write that changed something must not be acknowledged. */
    void (*answer)(void *cls, struct server_park_item *item, bool batch_failed);
    /* Opens a batch on the calling thread: true, or false (the writes then run outside any
     * batch, each answered after its own run). NULL: no batches. */
    bool (*begin)(void *cls);
    /* Ends the batch with its one commit: true when it is on disk. */
    bool (*end)(void *cls);
};

/* A queue under lock, run by the write threads. */
struct server_park {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct server_park_item *head, *tail;
    unsigned parked; /* queued or running */
    bool on;         /* write threads running, accepting writes */
    unsigned max;    /* max_parked_writes */
    unsigned batch_max;
    unsigned wait_us; /* the committer's wait for the writers it answered last */
    unsigned want;    /* the committer sleeps until this many are parked (0: any) */
    pthread_t *writers;
    unsigned n_writers;
    struct server_park_ops ops;
    void *cls;
};

/* Initialises p (off: nothing parks until server_park_start). */
void server_park_init(struct server_park *p);

/* Starts the threads that run parked items: with ops->begin, one committer taking batches of at
 * most batch_max items; without, threads write threads (at most SERVER_WRITE_THREADS_MAX) taking
 * one item at a time. threads 0: parking stays off. At most max items wait or run at once.
 *
 * wait_us (committer only): before a batch, when the last one answered n writes, the committer
 * waits up to wait_us microseconds until n more than were queued when it finished are parked:
 * the writers it just answered send their next writes, and these join this batch rather than
 * forming a second group that waits for this one's sync (PostgreSQL's commit_delay, with
 * the last batch as commit_siblings). A writer alone is never delayed (it is the one awaited).
 * 0: no wait.
 *
 * 0 or -1 (a thread could not start; server_park_release() stops those started). */
int server_park_start(struct server_park *p, unsigned threads, unsigned max, unsigned batch_max,
                      unsigned wait_us, const struct server_park_ops *ops, void *cls);

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
