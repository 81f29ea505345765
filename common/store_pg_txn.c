/* PostgreSQL backend: the connection pool and the beginning and end of transactions, a leaf the
 * other PostgreSQL files call (store_pg.c for its own transactions, store_pg_group.c for a
 * group's shared one). A transaction takes a pooled connection for its whole life. */
#include "store_backend.h"
#include "store_pg_internal.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "log.h"

/* Pool ------------------------------------------------------------------------------------- */

/* Takes a free connection, waiting for one at most the store's timeout, and connects it when it
 * has none (or lost it). */
static enum store_rc store_pg_txn_acquire(struct store_pg *s, struct pg_slot **out)
{
    *out = NULL;
    struct timespec d = store_pg_deadline(s->timeout);
    struct pg_slot *slot = NULL;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        for (size_t i = 0; i < s->pool_size && slot == NULL; i++)
            if (!s->pool[i].busy)
                slot = &s->pool[i];
        if (slot != NULL)
            break;
        if (pthread_cond_timedwait(&s->cv, &s->mu, &d) == ETIMEDOUT) {
            pthread_mutex_unlock(&s->mu);
            log_error("store: postgresql: all %zu connections stayed busy for %u s "
                      "(pg_pool_size, pg_timeout)",
                      s->pool_size, s->timeout);
            return STORE_UNAVAILABLE;
        }
    }
    slot->busy = true;
    pthread_mutex_unlock(&s->mu);
    /* An idle connection has nothing to read, unless the server ended it meanwhile (a restart,
     * a failover, an administrator: its last message and the end of the stream are waiting):
     * it is made again now rather than failing this transaction. */
    struct pollfd p = {.fd = slot->conn != NULL ? PQsocket(slot->conn) : -1, .events = POLLIN};
    if (slot->conn != NULL &&
        (PQstatus(slot->conn) != CONNECTION_OK || p.fd < 0 || poll(&p, 1, 0) != 0)) {
        PQfinish(slot->conn);
        slot->conn = NULL;
    }
    enum store_rc src = slot->conn == NULL ? store_pg_connect(s, &d, &slot->conn) : STORE_OK;
    if (src == STORE_OK && PQtransactionStatus(slot->conn) != PQTRANS_IDLE)
        src = STORE_ERROR; /* cannot happen: every transaction ends before its release */
    if (src != STORE_OK) {
        pthread_mutex_lock(&s->mu);
        slot->busy = false;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        return src;
    }
    *out = slot;
    return STORE_OK;
}

static void store_pg_txn_release(struct store_pg *s, struct pg_slot *slot, bool reset)
{
    if (reset && slot->conn != NULL) {
        PQfinish(slot->conn);
        slot->conn = NULL;
    }
    pthread_mutex_lock(&s->mu);
    slot->busy = false;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Takes a connection and begins a transaction on it: t is filled in either case; on failure the
 * connection is back in the pool. */
enum store_rc store_pg_txn_open(struct store_pg *s, enum pg_mode mode, struct store_pg_txn *t)
{
    static const char *const begin[] = {
        [PG_READ] = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        /* A writer takes the lock first: in READ COMMITTED each later statement then sees every
         * commit made before the lock was granted, and no other writer runs until this one
         * ends (the lock is held to the commit). */
        [PG_WRITE] = "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT "
                     "pg_advisory_xact_lock(" STORE_PG_LOCK_WRITE
                     ", hashtext(coalesce(current_schema(), '')))",
        [PG_SCHEMA] = "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT "
                      "pg_advisory_xact_lock(" STORE_PG_LOCK_SCHEMA
                      ", hashtext(coalesce(current_schema(), ''))); "
                      "CREATE TABLE IF NOT EXISTS xdm_schema (version int PRIMARY KEY, "
                      "applied timestamptz NOT NULL DEFAULT now())",
    };
    memset(t, 0, sizeof *t);
    t->base.ops = s->base.ops;
    t->s = s;
    t->write = mode != PG_READ;
    if (mode == PG_WRITE) {
        struct timespec d;
        clock_gettime(CLOCK_REALTIME, &d);
        d.tv_sec += s->timeout;
        if (pthread_mutex_timedlock(&s->write_mu, &d) != 0) {
            log_error("store: postgresql: another write of this process held the store for %u s "
                      "(pg_timeout)",
                      s->timeout);
            return STORE_UNAVAILABLE;
        }
        t->writer = true;
    }
    enum store_rc src = store_pg_txn_acquire(s, &t->slot);
    if (src != STORE_OK) {
        if (t->writer)
            pthread_mutex_unlock(&s->write_mu);
        return src;
    }
    src = store_pg_exec(t, mode == PG_READ ? "begin read transaction" : "begin write transaction",
                        begin[mode], NULL, NULL);
    if (src != STORE_OK) {
        /* Out of step (a statement of the pair may have run): the connection goes. */
        store_pg_txn_release(s, t->slot, true);
        t->slot = NULL;
        if (t->writer)
            pthread_mutex_unlock(&s->write_mu);
    }
    return src;
}

/* The end of a transaction: COMMIT or ROLLBACK, then the connection goes back to the pool (or is
 * dropped when it is out of step). */
enum store_rc store_pg_txn_end(struct store_pg_txn *t, bool commit)
{
    enum store_rc src = STORE_OK;
    if (commit && t->failed) {
        src = t->broken ? STORE_UNAVAILABLE : STORE_ERROR;
        commit = false;
    }
    if (!t->broken) {
        PGresult *r = NULL;
        bool was_failed = t->failed;
        t->failed = false;
        enum store_rc e = store_pg_exec(t, commit ? "commit" : "rollback",
                                        commit ? "COMMIT" : "ROLLBACK", &(struct pg_params){0}, &r);
        /* COMMIT of a transaction PostgreSQL already aborted answers "ROLLBACK". */
        if (e == STORE_OK && commit && strcmp(PQcmdStatus(r), "COMMIT") != 0)
            e = STORE_ERROR;
        PQclear(r);
        if (e != STORE_OK) {
            t->broken = true;
            if (src == STORE_OK)
                src = e;
        }
        t->failed = was_failed;
    }
    store_pg_txn_release(t->s, t->slot, t->broken);
    if (t->writer)
        pthread_mutex_unlock(&t->s->write_mu);
    return src;
}
