/* Connections and statements of the PostgreSQL backend (store_pg_internal.h): statement
 * parameters and results in binary format, connecting within a deadline, and running one
 * statement with the asynchronous API and poll() up to the store's timeout (store_pg.c explains
 * why). A leaf of the backend: the pool and transactions (store_pg.c) and the operations
 * (store_pg_doc.c, store_pg_log.c, store_pg_kv.c) call it, it calls none of them. */
#include "store_backend.h"
#include "store_pg_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

static void store_pg_param(struct pg_params *p, Oid type, const void *v, size_t len)
{
    p->types[p->n] = type;
    p->vals[p->n] = v != NULL ? v : "";
    p->lens[p->n] = (int)len;
    p->fmts[p->n] = 1;
    p->n++;
}

void store_pg_bytes(struct pg_params *p, const void *v, size_t len)
{
    store_pg_param(p, STORE_PG_BYTEAOID, v, len);
}

void store_pg_str(struct pg_params *p, const char *v)
{
    store_pg_param(p, STORE_PG_BYTEAOID, v, strlen(v));
}

void store_pg_text(struct pg_params *p, const char *v)
{
    store_pg_param(p, STORE_PG_TEXTOID, v, strlen(v));
}

void store_pg_int(struct pg_params *p, int64_t v)
{
    store_put_u64(p->ints[p->n], (uint64_t)v);
    store_pg_param(p, STORE_PG_INT8OID, p->ints[p->n], 8);
}

int64_t store_pg_get_int(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 8)
        return 0;
    return (int64_t)store_get_u64((const unsigned char *)PQgetvalue(r, row, col));
}

struct timespec store_pg_deadline(unsigned seconds)
{
    struct timespec d;
    clock_gettime(CLOCK_MONOTONIC, &d);
    d.tv_sec += seconds;
    return d;
}

/* Milliseconds left until d, at least 0. */
static int store_pg_left_ms(const struct timespec *d)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t ms = (int64_t)(d->tv_sec - now.tv_sec) * 1000 + (d->tv_nsec - now.tv_nsec) / 1000000;
    return ms < 0 ? 0 : ms > INT32_MAX ? INT32_MAX : (int)ms;
}

/* Waits until the socket of c is ready for events or the deadline passes: 1 ready, 0 timeout,
 * -1 error. */
static int store_pg_wait(PGconn *c, short events, const struct timespec *d)
{
    for (;;) {
        int ms = store_pg_left_ms(d);
        if (ms == 0)
            return 0;
        struct pollfd p = {.fd = PQsocket(c), .events = events};
        if (p.fd < 0)
            return -1;
        int n = poll(&p, 1, ms);
        if (n > 0)
            return 1;
        if (n == 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

/* The message of a libpq failure on one line. */
void store_pg_log_failure(const char *what, const char *msg)
{
    size_t len = strlen(msg);
    while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
        len--;
    log_error("store: postgresql: %s: %.*s", what, (int)len, msg);
}

/* Notices ("already exists, skipping" of the idempotent migration) are not errors. */
static void store_pg_notice(void *cls, const char *msg)
{
    (void)cls;
    (void)msg;
}

/* Connects within the deadline and prepares the session: statement_timeout = the store's bound
 * (PostgreSQL's own cancel comes before ours), and a non-blocking socket. */
enum store_rc store_pg_connect(const struct store_pg *s, const struct timespec *d, PGconn **out)
{
    *out = NULL;
    PGconn *c = PQconnectStart(s->conninfo);
    if (c == NULL)
        return STORE_ERROR;
    if (PQstatus(c) == CONNECTION_BAD) {
        store_pg_log_failure("connect", PQerrorMessage(c));
        PQfinish(c);
        return STORE_UNAVAILABLE;
    }
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    while (st != PGRES_POLLING_OK) {
        if (st == PGRES_POLLING_FAILED) {
            store_pg_log_failure("connect", PQerrorMessage(c));
            PQfinish(c);
            return STORE_UNAVAILABLE;
        }
        int w = store_pg_wait(c, st == PGRES_POLLING_READING ? POLLIN : POLLOUT, d);
        if (w <= 0) {
            log_error("store: postgresql: connect: no answer within %u s", s->timeout);
            PQfinish(c);
            return STORE_UNAVAILABLE;
        }
        st = PQconnectPoll(c);
    }
    PQsetNoticeProcessor(c, store_pg_notice, NULL);
    if (PQsetnonblocking(c, 1) != 0) {
        store_pg_log_failure("connect", PQerrorMessage(c));
        PQfinish(c);
        return STORE_ERROR;
    }
    /* The server cancels a statement at the same bound as we stop waiting for it (a lock wait
     * included), so that an abandoned statement does not run on. */
    char set[64];
    snprintf(set, sizeof set, "SET statement_timeout = %u", s->timeout * 1000);
    bool reset;
    unsigned left = (unsigned)((store_pg_left_ms(d) + 999) / 1000);
    enum store_rc src =
        store_pg_exec_conn(c, left > 0 ? left : 1, "connect", set, NULL, NULL, &reset);
    if (src != STORE_OK) {
        PQfinish(c);
        return src;
    }
    *out = c;
    return STORE_OK;
}

/* Whether a failed statement's SQLSTATE says "try again later": the connection is gone or the
 * server is going away (08, 57P0x), a bound was reached (57014 statement_timeout, 55P03
 * lock_timeout), the server is a standby (25006, after a failover until we reconnect), or a
 * conflict (40001, 40P01). */
static bool store_pg_state_unavailable(const char *state, bool *reset)
{
    *reset = false;
    if (state == NULL)
        return false;
    if (strncmp(state, "08", 2) == 0 || strncmp(state, "57P0", 4) == 0 ||
        strcmp(state, "25006") == 0) {
        *reset = true;
        return true;
    }
    return strcmp(state, "57014") == 0 || strcmp(state, "55P03") == 0 ||
           strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0;
}

/* Runs sql (one statement, or several without parameters) on c within timeout seconds. On
 * success *out (when not NULL) is the last result, to PQclear. *reset is set when the connection
 * must be dropped. */
enum store_rc store_pg_exec_conn(PGconn *c, unsigned timeout, const char *what, const char *sql,
                                 const struct pg_params *p, PGresult **out, bool *reset)
{
    if (out != NULL)
        *out = NULL;
    *reset = false;
    struct timespec d = store_pg_deadline(timeout);
    /* Several statements (no parameters) go by the simple protocol, one by the extended one
     * with binary results. */
    int sent = p == NULL ? PQsendQuery(c, sql)
                         : PQsendQueryParams(c, sql, p->n, p->types, p->vals, p->lens, p->fmts, 1);
    if (sent == 0) {
        store_pg_log_failure(what, PQerrorMessage(c));
        *reset = true;
        return STORE_UNAVAILABLE;
    }
    int f;
    while ((f = PQflush(c)) == 1) {
        if (store_pg_wait(c, POLLOUT | POLLIN, &d) <= 0 || PQconsumeInput(c) == 0) {
            f = -1;
            break;
        }
    }
    if (f != 0)
        goto lost;
    enum store_rc src = STORE_OK;
    PGresult *last = NULL;
    for (;;) {
        while (PQisBusy(c)) {
            int w = store_pg_wait(c, POLLIN, &d);
            if (w <= 0 || PQconsumeInput(c) == 0) {
                PQclear(last);
                if (w == 0) {
                    log_error("store: postgresql: %s: no answer within %u s", what, timeout);
                    *reset = true;
                    return STORE_UNAVAILABLE;
                }
                goto lost;
            }
        }
        PGresult *r = PQgetResult(c);
        if (r == NULL)
            break;
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
            PQclear(last);
            last = r;
            continue;
        }
        if (src == STORE_OK) {
            bool rs;
            const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
            src = store_pg_state_unavailable(state, &rs) ? STORE_UNAVAILABLE : STORE_ERROR;
            *reset = *reset || rs;
            store_pg_log_failure(what, PQresultErrorMessage(r));
        }
        PQclear(r);
    }
    if (PQstatus(c) != CONNECTION_OK) {
        *reset = true;
        if (src == STORE_OK)
            src = STORE_UNAVAILABLE;
    }
    if (src != STORE_OK || out == NULL)
        PQclear(last);
    else
        *out = last;
    return src;
lost:
    store_pg_log_failure(what, PQerrorMessage(c));
    *reset = true;
    return STORE_UNAVAILABLE;
}

/* A statement of transaction t. A failure marks t failed (only abort is left). */
enum store_rc store_pg_exec(struct store_pg_txn *t, const char *what, const char *sql,
                            const struct pg_params *p, PGresult **out)
{
    if (out != NULL)
        *out = NULL;
    if (t->failed)
        return t->broken ? STORE_UNAVAILABLE : STORE_ERROR;
    bool reset;
    enum store_rc src = store_pg_exec_conn(t->slot->conn, t->s->timeout, what, sql, p, out, &reset);
    if (src != STORE_OK) {
        t->failed = true;
        t->broken = t->broken || reset;
    }
    return src;
}
