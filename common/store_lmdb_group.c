/* LMDB: group commit (store.h, docs/storage.md "Group commit").
 *
 * Every LMDB write transaction ends with a sync of the data file, and only one runs at a time, so
 * writers acknowledged one by one wait for one sync each. Here the write transactions of
 * concurrent threads share one: the first writer to arrive while no group is open becomes the
 * leader and begins LMDB's top-level write transaction (the parent); every writer of the group,
 * the leader included, then runs its own transaction nested in the parent (mdb_txn_begin with a
 * parent), one at a time, as LMDB allows one child per transaction. A nested transaction that
 * fails or is aborted is dropped alone; one that commits is merged into the parent, and its
 * thread waits. When the leader's own transaction has ended and no thread is waiting to join
 * (or the group is full: max_requests transactions or max_bytes written), the leader commits the
 * parent, with its one sync, and hands its result to every member. Nobody waits for company: a
 * writer alone commits at once. Threads arriving during the sync form the next group.
 *
 * Two ways in. store_txn_begin()/store_txn_commit() keep the store API: the writer's thread runs
 * its own nested transaction when its turn comes (one thread switch per member to pass the turn
 * on). store_write() hands the whole transaction over as a function: a writer that finds a group
 * open queues it and sleeps, and the leader runs the queued functions back to back on its own
 * thread (no switch between members). Measured with 32 writers on 16 threads
 * (docs/performance.md): waking every waiter at each turn gave 1 950 PUT/s, waking one at a time
 * 4 500, running queued functions in the leader 4 900.
 *
 * Why a leader and not a writer thread: LMDB's writer lock is a mutex of the lock file owned by
 * the thread that began the top-level transaction, which must also commit it; with a leader the
 * thread that begins is the thread that commits, and a writer alone runs on its own thread with
 * no switch at all, so its latency is what it was without group commit.
 *
 * A third way: a batch (store_batch_begin()/store_batch_end()). The calling thread opens the
 * group and leads it until it ends the batch; its own writes run nested at once, one after the
 * other, and return when merged, without waiting for the sync, which store_batch_end() does once
 * for all of them. The XDMS's committer runs every parked write this way and answers them all
 * after that one sync: no thread switch per write at all (docs/performance.md). Other threads
 * join a batch's group as they join any group.
 *
 * Nested transactions do not work with MDB_WRITEMAP (LMDB returns EINVAL): the environment is
 * opened without it, and group commit stays off if it were set.
 *
 * Lock order: group.lock is never held across LMDB's writer lock being taken or a sync; LMDB's
 * writer lock is taken by the leader with group.lock released (phase OPENING). */
#include "store_backend.h"
#include "store_lmdb_internal.h"

#include <lmdb.h>
#include <pthread.h>
#include <string.h>

void store_lmdb_group_init(struct store_lmdb *s, const struct store_options *opts)
{
    struct store_lmdb_group *g = &s->group;
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->join, NULL);
    pthread_cond_init(&g->lead, NULL);
    pthread_cond_init(&g->done, NULL);
    unsigned req = opts != NULL ? opts->group_max_requests : 0;
    if (req == 0)
        req = STORE_GROUP_DEFAULT_REQUESTS;
    g->max_requests = req > STORE_GROUP_MAX_REQUESTS ? STORE_GROUP_MAX_REQUESTS : req;
    g->max_bytes = opts != NULL && opts->group_max_bytes != 0 ? opts->group_max_bytes
                                                              : STORE_GROUP_DEFAULT_BYTES;
    g->on = false; /* store_lmdb_group_start(), once the environment is open */
}

void store_lmdb_group_start(struct store_lmdb *s)
{
    unsigned flags = 0;
    if (mdb_env_get_flags(s->env, &flags) != MDB_SUCCESS)
        return;
    s->group.on = !s->read_only && s->group.max_requests > 1 && (flags & MDB_WRITEMAP) == 0;
}

void store_lmdb_group_destroy(struct store_lmdb *s)
{
    pthread_mutex_destroy(&s->group.lock);
    pthread_cond_destroy(&s->group.join);
    pthread_cond_destroy(&s->group.lead);
    pthread_cond_destroy(&s->group.done);
}

static bool store_lmdb_group_full(const struct store_lmdb_group *g)
{
    return g->members >= g->max_requests || g->bytes >= g->max_bytes;
}

static void store_lmdb_group_count(struct store_lmdb_group *g, unsigned members)
{
    g->stats.commits++;
    g->stats.requests += members;
    size_t b = 0;
    while (b < STORE_GROUP_BUCKETS && members > STORE_GROUP_BUCKET(b))
        b++;
    g->stats.buckets[b]++;
}

/* A store_write() call: its function, its result, and how its thread waits. Lives on the stack of
 * the calling thread, which sleeps until done (or until it is asked to lead). */
struct store_lmdb_job {
    store_write_fn fn;
    void *cls;
    int result;
    enum store_rc rc;
    bool done; /* rc and result are final */
    bool lead; /* woken to lead the next group */
    pthread_cond_t cond;
    struct store_lmdb_txn txn; /* its nested transaction while it runs */
    struct store_lmdb_job *next;
};

/* Runs one queued (or the leader's own) job in a nested transaction of the open group; g->lock
 * held on entry and on return, released while fn runs. A job whose transaction committed joins
 * g->ran and learns its result with the group's commit; any other is finished here. */
static void store_lmdb_group_run(struct store_lmdb *s, struct store_lmdb_job *job)
{
    struct store_lmdb_group *g = &s->group;
    g->child_active = true;
    job->txn = (struct store_lmdb_txn){
        .base.ops = s->base.ops, .s = s, .write = true, .nested = true, .batch_before = g->bytes};
    MDB_txn *parent = g->parent;
    pthread_mutex_unlock(&g->lock);
    bool committed = false;
    int rc = mdb_txn_begin(s->env, parent, 0, &job->txn.txn);
    if (rc != MDB_SUCCESS) {
        job->rc = store_lmdb_rc_from_mdb(rc, "begin nested write transaction");
    } else {
        job->result = job->fn(job->cls, &job->txn.base);
        if (job->result == 0) {
            job->rc =
                store_lmdb_rc_from_mdb(mdb_txn_commit(job->txn.txn), "commit nested transaction");
            committed = job->rc == STORE_OK;
        } else {
            mdb_txn_abort(job->txn.txn);
            job->rc = STORE_OK;
        }
    }
    job->txn.txn = NULL;
    pthread_mutex_lock(&g->lock);
    g->child_active = false;
    if (g->waiting > 0)
        pthread_cond_signal(&g->join); /* a store_txn_begin() waiting for its turn */
    if (committed) {
        g->members++;
        g->bytes += job->txn.written;
        job->next = g->ran;
        g->ran = job;
    } else {
        job->done = true;
        pthread_cond_signal(&job->cond);
    }
}

/* A transaction of the group ended (g->lock held): the leader may commit, or one waiting thread
 * may begin the next. Waking one at a time keeps a large group from stampeding on the lock; a
 * thread woken that cannot go on means none could (they all wait for the same condition). */
static void store_lmdb_group_next(struct store_lmdb_group *g)
{
    pthread_cond_signal(&g->lead);
    if (g->waiting > 0)
        pthread_cond_signal(&g->join);
}

/* No group is open (g->lock held): wakes a thread to lead the next one: the first queued
 * store_write() call, and a thread waiting in store_txn_begin(). Whichever comes first leads and
 * runs the queue; a queued call that finds a group open goes back to the head of the queue. */
static void store_lmdb_group_wake_leader(struct store_lmdb_group *g)
{
    if (g->queue != NULL) {
        struct store_lmdb_job *job = g->queue;
        g->queue = job->next;
        if (g->queue == NULL)
            g->queue_tail = NULL;
        job->lead = true;
        pthread_cond_signal(&job->cond);
    }
    if (g->waiting > 0)
        pthread_cond_signal(&g->join); /* it wakes the next member, and so on */
}

/* The leader, with g->lock held and its own transaction ended: waits while a member runs or a
 * thread waits to join a group that is not full, then commits the parent (aborts it when no
 * member committed) with the lock released, hands the result to the members and opens the way
 * for the next group. Returns the commit's result. */
static enum store_rc store_lmdb_group_finish(struct store_lmdb *s)
{
    struct store_lmdb_group *g = &s->group;
    for (;;) {
        bool full = store_lmdb_group_full(g);
        if (!g->child_active && g->queue != NULL && !full) {
            struct store_lmdb_job *job = g->queue;
            g->queue = job->next;
            if (g->queue == NULL)
                g->queue_tail = NULL;
            store_lmdb_group_run(s, job);
            continue;
        }
        if (!g->child_active && !(g->waiting > 0 && !full))
            break;
        pthread_cond_wait(&g->lead, &g->lock);
    }
    g->phase = GROUP_COMMITTING;
    MDB_txn *parent = g->parent;
    unsigned members = g->members;
    pthread_mutex_unlock(&g->lock);
    int rc = MDB_SUCCESS;
    if (members > 0)
        rc = mdb_txn_commit(parent); /* the one sync of the group */
    else
        mdb_txn_abort(parent);
    enum store_rc src = store_lmdb_rc_from_mdb(rc, "commit");
    pthread_mutex_lock(&g->lock);
    for (struct store_lmdb_txn *f = g->followers; f != NULL; f = f->next) {
        f->rc = src;
        f->done = true;
    }
    for (struct store_lmdb_job *j = g->ran, *next; j != NULL; j = next) {
        next = j->next; /* j may be gone once signalled and the lock released */
        j->rc = src;
        j->done = true;
        pthread_cond_signal(&j->cond);
    }
    g->ran = NULL;
    if (members > 0 && src == STORE_OK)
        store_lmdb_group_count(g, members);
    g->parent = NULL;
    g->leader = NULL;
    g->followers = NULL;
    g->members = 0;
    g->bytes = 0;
    g->phase = GROUP_IDLE;
    pthread_cond_broadcast(&g->done);
    store_lmdb_group_wake_leader(g);
    return src;
}

/* Whether the calling thread leads the open batch (g->lock held). */
static bool store_lmdb_batch_mine(const struct store_lmdb_group *g)
{
    return g->batch && pthread_equal(g->batch_owner, pthread_self());
}

/* A write transaction of the batch's owner (g->lock held, released on return): nested in the
 * batch's parent as soon as no other member's is active; its commit merges and returns. */
static enum store_rc store_lmdb_batch_nest(struct store_lmdb *s, struct store_lmdb_txn *t)
{
    struct store_lmdb_group *g = &s->group;
    while (g->child_active)
        pthread_cond_wait(&g->lead, &g->lock); /* signalled when a member's transaction ends */
    int rc = mdb_txn_begin(s->env, g->parent, 0, &t->txn);
    if (rc != MDB_SUCCESS) {
        t->txn = NULL;
        pthread_mutex_unlock(&g->lock);
        return store_lmdb_rc_from_mdb(rc, "begin nested write transaction");
    }
    g->child_active = true;
    t->nested = true;
    t->in_batch = true;
    t->batch_before = g->bytes;
    pthread_mutex_unlock(&g->lock);
    return STORE_OK;
}

enum store_rc store_lmdb_group_begin(struct store_lmdb *s, struct store_lmdb_txn *t)
{
    struct store_lmdb_group *g = &s->group;
    pthread_mutex_lock(&g->lock);
    if (store_lmdb_batch_mine(g))
        return store_lmdb_batch_nest(s, t);
    g->waiting++;
    for (;;) {
        if (g->phase == GROUP_IDLE) {
            /* Become the leader. LMDB's writer lock may be held by another process: wait for it
             * without the group's lock, the others wait for OPEN. */
            g->phase = GROUP_OPENING;
            pthread_mutex_unlock(&g->lock);
            MDB_txn *parent = NULL;
            int rc = mdb_txn_begin(s->env, NULL, 0, &parent);
            pthread_mutex_lock(&g->lock);
            if (rc != MDB_SUCCESS) {
                g->phase = GROUP_IDLE;
                g->waiting--;
                pthread_cond_broadcast(&g->done); /* a store_batch_begin() waiting for IDLE */
                store_lmdb_group_wake_leader(g);
                pthread_mutex_unlock(&g->lock);
                return store_lmdb_rc_from_mdb(rc, "begin write transaction");
            }
            g->parent = parent;
            g->leader = t;
            g->phase = GROUP_OPEN;
        }
        if (g->phase == GROUP_OPEN && !g->child_active &&
            (g->leader == t || !store_lmdb_group_full(g)))
            break;
        pthread_cond_wait(&g->join, &g->lock);
    }
    g->waiting--;
    int rc = mdb_txn_begin(s->env, g->parent, 0, &t->txn);
    if (rc != MDB_SUCCESS) {
        t->txn = NULL;
        enum store_rc src = store_lmdb_rc_from_mdb(rc, "begin nested write transaction");
        if (g->leader == t) {
            store_lmdb_group_finish(s);
        } else {
            pthread_cond_signal(&g->lead);
            pthread_cond_signal(&g->join);
        }
        pthread_mutex_unlock(&g->lock);
        return src;
    }
    g->child_active = true;
    t->nested = true;
    t->batch_before = g->bytes;
    pthread_mutex_unlock(&g->lock);
    return STORE_OK;
}

enum store_rc store_lmdb_group_commit(struct store_lmdb_txn *t)
{
    struct store_lmdb_group *g = &t->s->group;
    /* Merges into the parent: no I/O. The parent is not touched by anyone else while a child
     * is active. On failure LMDB has aborted the child; the parent is intact. */
    enum store_rc src = store_lmdb_rc_from_mdb(mdb_txn_commit(t->txn), "commit nested transaction");
    t->txn = NULL;
    pthread_mutex_lock(&g->lock);
    g->child_active = false;
    if (src == STORE_OK) {
        g->members++;
        g->bytes += t->written;
    }
    store_lmdb_group_next(g);
    if (t->in_batch) {
        /* durable at store_batch_end() */
    } else if (g->leader == t) {
        enum store_rc grc = store_lmdb_group_finish(t->s);
        if (src == STORE_OK)
            src = grc;
    } else if (src == STORE_OK) {
        t->done = false;
        t->next = g->followers;
        g->followers = t;
        while (!t->done)
            pthread_cond_wait(&g->done, &g->lock);
        src = t->rc;
    }
    pthread_mutex_unlock(&g->lock);
    return src;
}

void store_lmdb_group_abort(struct store_lmdb_txn *t)
{
    struct store_lmdb_group *g = &t->s->group;
    mdb_txn_abort(t->txn);
    t->txn = NULL;
    pthread_mutex_lock(&g->lock);
    g->child_active = false;
    store_lmdb_group_next(g);
    if (g->leader == t)
        store_lmdb_group_finish(t->s); /* the others' result; this one wrote nothing */
    pthread_mutex_unlock(&g->lock);
}

/* Opens a group with the calling thread as its leader (g->lock held, phase IDLE): takes LMDB's
 * writer lock with g->lock released (phase OPENING). */
static enum store_rc store_lmdb_group_open(struct store_lmdb *s, struct store_lmdb_txn *leader)
{
    struct store_lmdb_group *g = &s->group;
    g->phase = GROUP_OPENING;
    pthread_mutex_unlock(&g->lock);
    MDB_txn *parent = NULL;
    int rc = mdb_txn_begin(s->env, NULL, 0, &parent);
    pthread_mutex_lock(&g->lock);
    if (rc != MDB_SUCCESS) {
        g->phase = GROUP_IDLE;
        pthread_cond_broadcast(&g->done); /* a store_batch_begin() waiting for IDLE */
        store_lmdb_group_wake_leader(g);
        return store_lmdb_rc_from_mdb(rc, "begin write transaction");
    }
    g->parent = parent;
    g->leader = leader;
    g->phase = GROUP_OPEN;
    return STORE_OK;
}

enum store_rc store_lmdb_write(struct store *base_s, store_write_fn fn, void *cls, int *result)
{
    struct store_lmdb *s = (struct store_lmdb *)base_s;
    struct store_lmdb_group *g = &s->group;
    *result = 0;
    if (!g->on)
        return store_write_alone(base_s, fn, cls, result);
    pthread_mutex_lock(&g->lock);
    if (store_lmdb_batch_mine(g)) {
        struct store_lmdb_txn t = {.base.ops = s->base.ops, .s = s, .write = true};
        enum store_rc src = store_lmdb_batch_nest(s, &t); /* releases g->lock */
        if (src != STORE_OK)
            return src;
        *result = fn(cls, &t.base);
        if (*result != 0) {
            store_lmdb_group_abort(&t);
            return STORE_OK;
        }
        return store_lmdb_group_commit(&t);
    }
    struct store_lmdb_job job = {.fn = fn, .cls = cls};
    pthread_cond_init(&job.cond, NULL);
    enum store_rc src = STORE_OK;
    for (;;) {
        if (g->phase == GROUP_IDLE) {
            src = store_lmdb_group_open(s, &job.txn);
            break;
        }
        /* A group is open or committing: its leader runs this call (now, or in the next group
         * it is woken to lead). */
        if (job.lead) { /* woken to lead, but another thread came first: keep its place */
            job.next = g->queue;
            g->queue = &job;
            if (g->queue_tail == NULL)
                g->queue_tail = &job;
        } else {
            job.next = NULL;
            if (g->queue_tail != NULL)
                g->queue_tail->next = &job;
            else
                g->queue = &job;
            g->queue_tail = &job;
        }
        job.lead = false;
        pthread_cond_signal(&g->lead);
        while (!job.done && !job.lead)
            pthread_cond_wait(&job.cond, &g->lock);
        if (job.done)
            break;
    }
    if (!job.done && src == STORE_OK) {
        store_lmdb_group_run(s, &job);
        enum store_rc grc = store_lmdb_group_finish(s); /* sets job.rc when it committed */
        (void)grc;
    } else if (!job.done) {
        job.rc = src;
        job.done = true;
    }
    pthread_mutex_unlock(&g->lock);
    pthread_cond_destroy(&job.cond);
    *result = job.result;
    return job.rc;
}

enum store_rc store_lmdb_batch_begin(struct store *base_s)
{
    struct store_lmdb *s = (struct store_lmdb *)base_s;
    struct store_lmdb_group *g = &s->group;
    if (!g->on)
        return STORE_INVALID;
    pthread_mutex_lock(&g->lock);
    if (store_lmdb_batch_mine(g)) {
        pthread_mutex_unlock(&g->lock);
        return STORE_INVALID; /* one batch at a time */
    }
    while (g->phase != GROUP_IDLE)
        pthread_cond_wait(&g->done, &g->lock); /* broadcast when a group ends */
    enum store_rc src = store_lmdb_group_open(s, NULL);
    if (src == STORE_OK) {
        g->batch = true;
        g->batch_owner = pthread_self();
    }
    pthread_mutex_unlock(&g->lock);
    return src;
}

enum store_rc store_lmdb_batch_end(struct store *base_s)
{
    struct store_lmdb *s = (struct store_lmdb *)base_s;
    struct store_lmdb_group *g = &s->group;
    pthread_mutex_lock(&g->lock);
    if (!store_lmdb_batch_mine(g)) {
        pthread_mutex_unlock(&g->lock);
        return STORE_INVALID;
    }
    g->batch = false;
    /* Runs what other threads queued meanwhile, waits for the members that are joining, then
     * commits with the one sync. */
    enum store_rc src = store_lmdb_group_finish(s);
    pthread_mutex_unlock(&g->lock);
    return src;
}

void store_lmdb_group_stats(struct store *base_s, struct store_group_stats *out)
{
    struct store_lmdb *s = (struct store_lmdb *)base_s;
    pthread_mutex_lock(&s->group.lock);
    *out = s->group.stats;
    pthread_mutex_unlock(&s->group.lock);
}
