/* PostgreSQL: group commit of store_write() (store.h, docs/storage.md "Group commit").
 *
 * Every write transaction holds the store's advisory lock until its COMMIT, and the COMMIT waits
 * for the WAL flush (and a synchronous standby): concurrent writes commit one after the other,
 * each waiting for a flush of its own, so PostgreSQL's own group commit never gets two commits
 * to flush together. Here the store_write() calls of one process share one transaction: the
 * first call while none is active leads; it begins the write transaction (connection, advisory
 * lock) and runs its own function, then every call queued meanwhile, each between SAVEPOINT and
 * RELEASE SAVEPOINT — a function that refuses or a statement that fails rolls back to its
 * savepoint, dropping that call's writes alone — and then commits once and hands the result to
 * every call that released its savepoint. A call alone commits at once. Calls queued during the
 * commit are led by the first of them. store_txn_begin() writers are not grouped: they queue for
 * the process's writer mutex as before. */
#include "store_backend.h"
#include "store_pg_internal.h"

#include <pthread.h>
#include <string.h>

struct store_pg_job {
    store_write_fn fn;
    void *cls;
    int result;
    enum store_rc rc;
    bool done;      /* rc and result are final */
    bool lead;      /* woken to lead the next group */
    bool committed; /* its savepoint was released: its result is the commit's */
    pthread_cond_t cond;
    struct store_pg_job *next;
};

void store_pg_group_init(struct store_pg *s, const struct store_options *opts)
{
    pthread_mutex_init(&s->group_mu, NULL);
    unsigned req = opts != NULL ? opts->group_max_requests : 0;
    if (req == 0)
        req = STORE_GROUP_DEFAULT_REQUESTS;
    s->group_max = req > STORE_GROUP_MAX_REQUESTS ? STORE_GROUP_MAX_REQUESTS : req;
}

void store_pg_group_destroy(struct store_pg *s)
{
    pthread_mutex_destroy(&s->group_mu);
}

/* One call between SAVEPOINT and RELEASE SAVEPOINT (or ROLLBACK TO SAVEPOINT) in the leader's
 * transaction t. */
static void store_pg_group_run(struct store_pg_txn *t, struct store_pg_job *job)
{
    bool notified = t->notified;
    job->rc = store_pg_exec(t, "savepoint", "SAVEPOINT xdm_write", &(struct pg_params){0}, NULL);
    if (job->rc != STORE_OK)
        return;
    job->result = job->fn(job->cls, &t->base);
    if (job->result == 0 && !t->failed) {
        job->rc = store_pg_exec(t, "release savepoint", "RELEASE SAVEPOINT xdm_write",
                                &(struct pg_params){0}, NULL);
        job->committed = job->rc == STORE_OK;
        return;
    }
    /* Refused, or a statement failed: drop this call's writes, keep the others'. */
    if (t->broken) {
        job->rc = STORE_UNAVAILABLE;
        return;
    }
    bool failed = t->failed;
    t->failed = false;
    enum store_rc src = store_pg_exec(
        t, "rollback to savepoint", "ROLLBACK TO SAVEPOINT xdm_write; RELEASE SAVEPOINT xdm_write",
        NULL, NULL);        /* two statements: the simple protocol */
    t->notified = notified; /* a NOTIFY sent after the savepoint is rolled back with it */
    job->rc = src != STORE_OK ? src : failed ? STORE_ERROR : STORE_OK;
}

static struct store_pg_job *store_pg_group_pop(struct store_pg *s)
{
    struct store_pg_job *job = s->queue;
    if (job != NULL) {
        s->queue = job->next;
        if (s->queue == NULL)
            s->queue_tail = NULL;
    }
    return job;
}

static void store_pg_group_count(struct store_pg *s, unsigned members)
{
    struct store_group_stats *g = &s->group_stats;
    g->commits++;
    g->requests += members;
    size_t b = 0;
    while (b < STORE_GROUP_BUCKETS && members > STORE_GROUP_BUCKET(b))
        b++;
    g->buckets[b]++;
}

enum store_rc store_pg_write(struct store *base_s, store_write_fn fn, void *cls, int *result)
{
    struct store_pg *s = (struct store_pg *)base_s;
    *result = 0;
    if (s->read_only)
        return STORE_INVALID;
    if (s->group_max <= 1) /* each call its own transaction, as without group commit */
        return store_write_alone(base_s, fn, cls, result);
    struct store_pg_job self = {.fn = fn, .cls = cls};
    pthread_cond_init(&self.cond, NULL);
    pthread_mutex_lock(&s->group_mu);
    if (s->group_active) {
        if (s->queue_tail != NULL)
            s->queue_tail->next = &self;
        else
            s->queue = &self;
        s->queue_tail = &self;
        while (!self.done && !self.lead)
            pthread_cond_wait(&self.cond, &s->group_mu);
        if (self.done) {
            pthread_mutex_unlock(&s->group_mu);
            pthread_cond_destroy(&self.cond);
            *result = self.result;
            return self.rc;
        }
    }
    s->group_active = true; /* led by this call (or handed over to it) */
    pthread_mutex_unlock(&s->group_mu);

    struct store_pg_txn t;
    struct store_pg_job *ran = NULL;
    unsigned members = 0, runs = 0;
    enum store_rc src = store_pg_txn_open(s, PG_WRITE, &t);
    if (src == STORE_OK) {
        struct store_pg_job *job = &self;
        pthread_mutex_lock(&s->group_mu);
        while (job != NULL) {
            pthread_mutex_unlock(&s->group_mu);
            if (!t.broken)
                store_pg_group_run(&t, job);
            else
                job->rc = STORE_UNAVAILABLE;
            runs++;
            pthread_mutex_lock(&s->group_mu);
            if (job->committed) {
                job->next = ran;
                ran = job;
                members++;
            } else if (job != &self) {
                job->done = true;
                pthread_cond_signal(&job->cond);
            }
            job = runs < s->group_max ? store_pg_group_pop(s) : NULL;
        }
        pthread_mutex_unlock(&s->group_mu);
        src = store_pg_txn_end(&t, members > 0); /* the one COMMIT (and flush) of the group */
    } else {
        self.rc = src;
    }
    pthread_mutex_lock(&s->group_mu);
    if (members == 0 && src != STORE_OK && runs == 0) {
        /* No transaction (the database does not answer within pg_timeout): the calls queued
         * meanwhile get the same answer now rather than one pg_timeout after the other. */
        for (struct store_pg_job *j; (j = store_pg_group_pop(s)) != NULL;) {
            j->rc = src;
            j->done = true;
            pthread_cond_signal(&j->cond);
        }
    }
    for (struct store_pg_job *j = ran, *next; j != NULL; j = next) {
        next = j->next; /* j may be gone once signalled and the lock released */
        j->rc = src;
        j->done = true;
        if (j != &self)
            pthread_cond_signal(&j->cond);
    }
    if (members > 0 && src == STORE_OK)
        store_pg_group_count(s, members);
    struct store_pg_job *next_leader = store_pg_group_pop(s);
    if (next_leader != NULL) { /* the group stays active: handed over */
        next_leader->lead = true;
        pthread_cond_signal(&next_leader->cond);
    } else {
        s->group_active = false;
    }
    pthread_mutex_unlock(&s->group_mu);
    pthread_cond_destroy(&self.cond);
    *result = self.result;
    return self.rc;
}

void store_pg_group_stats(struct store *base_s, struct store_group_stats *out)
{
    struct store_pg *s = (struct store_pg *)base_s;
    pthread_mutex_lock(&s->group_mu);
    *out = s->group_stats;
    pthread_mutex_unlock(&s->group_mu);
}
