/* PostgreSQL backend of the store interface (store.h), on libpq.
 *
 * Schema (version STORE_PG_SCHEMA_VERSION, in the database or schema the conninfo selects):
 *   xdm_schema   version int: one row per migration step applied
 *   xdm_docs     auid, tree, xui, path bytea (primary key, in that order) -> etag text,
 *                mtime bigint, bytes bytea (the document's exact bytes)
 *   xdm_meta     name text -> num bigint, str text: "instance" (str), "etag_counter",
 *                "change_seq", "change_count", "change_bytes" (num)
 *   xdm_changes  seq bigint primary key -> time bigint, record bytea (store.c's encoding)
 *   xdm_quota    xui bytea -> bytes bigint; no row for a user with none
 *   xdm_kv       tbl text, key bytea (primary key) -> value bytea: the extra tables
 * Keys are bytea so that ORDER BY compares bytes as LMDB's memcmp does (the components hold no
 * NUL, so ordering by the four columns equals ordering by LMDB's auid \0 tree \0 xui \0 path),
 * whatever the database's encoding and collation.
 *
 * Migrations are numbered steps, each idempotent (IF NOT EXISTS, ON CONFLICT DO NOTHING), run in
 * one transaction under an advisory lock at store_pg_open(): instances starting together apply
 * them once, in order.
 *
 * Every statement is sent with the asynchronous API and waited for with poll() up to the deadline
 * (pg_timeout), so a database that does not answer — stopped, unreachable, a lost packet — costs a
 * request at most that long: STORE_UNAVAILABLE, the connection is dropped and made again on its
 * next use. The server's statement_timeout is set to the same bound. All parameters and results
 * use the binary format: bytes go as they are, with no escaping. */
#include "store_backend.h"

#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

#define STORE_PG_SCHEMA_VERSION 1
/* Advisory lock keys (class, then hashtext(current_schema())): one writer at a time per schema,
 * one migration at a time per schema. */
#define STORE_PG_LOCK_WRITE "1480871217"  /* "XDM1" */
#define STORE_PG_LOCK_SCHEMA "1480871216" /* "XDM0" */
/* The wake-up channel of one store: "xdm_change_" and its instance id, so that the stores of
 * several roles (schemas) in one database do not wake each other. */
#define STORE_PG_CHANNEL "xdm_change_"
#define STORE_PG_PARAMS 8
#define STORE_PG_BATCH "512"
#define STORE_PG_INT8OID 20
#define STORE_PG_BYTEAOID 17
#define STORE_PG_TEXTOID 25

struct pg_slot {
    PGconn *conn;
    bool busy;
};

struct store_pg {
    struct store base; /* first: store.c reaches the operations through it */
    char *conninfo;
    unsigned timeout; /* seconds */
    struct store_bounds b;
    bool read_only;
    char **tables;
    size_t n_tables;
    char instance[STORE_INSTANCE_HEX + 1];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* Held by this process's one write transaction, as LMDB's writer mutex: writers of one
     * process queue here, not on pooled connections, so the pool stays free for readers. */
    pthread_mutex_t write_mu;
    struct pg_slot *pool;
    size_t pool_size;
    PGconn *listener; /* store_wake_fd(); used by one thread */
};

struct store_pg_txn {
    struct store_txn base;
    struct store_pg *s;
    struct pg_slot *slot;
    bool write;
    bool broken;   /* the connection is lost or out of step: dropped at the end */
    bool failed;   /* a statement failed: the transaction can only be aborted */
    bool notified; /* NOTIFY sent in this transaction */
    bool writer;   /* holds s->write_mu */
};

/* Parameters of one statement, all in binary format. */
struct pg_params {
    int n;
    Oid types[STORE_PG_PARAMS];
    const char *vals[STORE_PG_PARAMS];
    int lens[STORE_PG_PARAMS];
    int fmts[STORE_PG_PARAMS];
    unsigned char ints[STORE_PG_PARAMS][8];
};

static const struct store_ops store_pg_ops;

static void pg_param(struct pg_params *p, Oid type, const void *v, size_t len)
{
    p->types[p->n] = type;
    p->vals[p->n] = v != NULL ? v : "";
    p->lens[p->n] = (int)len;
    p->fmts[p->n] = 1;
    p->n++;
}

static void pg_bytes(struct pg_params *p, const void *v, size_t len)
{
    pg_param(p, STORE_PG_BYTEAOID, v, len);
}

static void pg_str(struct pg_params *p, const char *v)
{
    pg_param(p, STORE_PG_BYTEAOID, v, strlen(v));
}

static void pg_text(struct pg_params *p, const char *v)
{
    pg_param(p, STORE_PG_TEXTOID, v, strlen(v));
}

static void pg_int(struct pg_params *p, int64_t v)
{
    store_put_u64(p->ints[p->n], (uint64_t)v);
    pg_param(p, STORE_PG_INT8OID, p->ints[p->n], 8);
}

static int64_t pg_get_int(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 8)
        return 0;
    return (int64_t)store_get_u64((const unsigned char *)PQgetvalue(r, row, col));
}

static struct timespec pg_deadline(unsigned seconds)
{
    struct timespec d;
    clock_gettime(CLOCK_MONOTONIC, &d);
    d.tv_sec += seconds;
    return d;
}

/* Milliseconds left until d, at least 0. */
static int pg_left_ms(const struct timespec *d)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t ms = (int64_t)(d->tv_sec - now.tv_sec) * 1000 + (d->tv_nsec - now.tv_nsec) / 1000000;
    return ms < 0 ? 0 : ms > INT32_MAX ? INT32_MAX : (int)ms;
}

/* Waits until the socket of c is ready for events or the deadline passes: 1 ready, 0 timeout,
 * -1 error. */
static int pg_wait(PGconn *c, short events, const struct timespec *d)
{
    for (;;) {
        int ms = pg_left_ms(d);
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
static void pg_log(const char *what, const char *msg)
{
    size_t len = strlen(msg);
    while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
        len--;
    log_error("store: postgresql: %s: %.*s", what, (int)len, msg);
}

static enum store_rc pg_exec_conn(PGconn *c, unsigned timeout, const char *what, const char *sql,
                                  const struct pg_params *p, PGresult **out, bool *reset);

/* Notices ("already exists, skipping" of the idempotent migration) are not errors. */
static void pg_notice(void *cls, const char *msg)
{
    (void)cls;
    (void)msg;
}

/* Connects within the deadline and prepares the session: statement_timeout = the store's bound
 * (PostgreSQL's own cancel comes before ours), and a non-blocking socket. */
static enum store_rc pg_connect(const struct store_pg *s, const struct timespec *d, PGconn **out)
{
    *out = NULL;
    PGconn *c = PQconnectStart(s->conninfo);
    if (c == NULL)
        return STORE_ERROR;
    if (PQstatus(c) == CONNECTION_BAD) {
        pg_log("connect", PQerrorMessage(c));
        PQfinish(c);
        return STORE_UNAVAILABLE;
    }
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    while (st != PGRES_POLLING_OK) {
        if (st == PGRES_POLLING_FAILED) {
            pg_log("connect", PQerrorMessage(c));
            PQfinish(c);
            return STORE_UNAVAILABLE;
        }
        int w = pg_wait(c, st == PGRES_POLLING_READING ? POLLIN : POLLOUT, d);
        if (w <= 0) {
            log_error("store: postgresql: connect: no answer within %u s", s->timeout);
            PQfinish(c);
            return STORE_UNAVAILABLE;
        }
        st = PQconnectPoll(c);
    }
    PQsetNoticeProcessor(c, pg_notice, NULL);
    if (PQsetnonblocking(c, 1) != 0) {
        pg_log("connect", PQerrorMessage(c));
        PQfinish(c);
        return STORE_ERROR;
    }
    /* The server cancels a statement at the same bound as we stop waiting for it (a lock wait
     * included), so that an abandoned statement does not run on. */
    char set[64];
    snprintf(set, sizeof set, "SET statement_timeout = %u", s->timeout * 1000);
    bool reset;
    unsigned left = (unsigned)((pg_left_ms(d) + 999) / 1000);
    enum store_rc src = pg_exec_conn(c, left > 0 ? left : 1, "connect", set, NULL, NULL, &reset);
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
static bool pg_state_unavailable(const char *state, bool *reset)
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
static enum store_rc pg_exec_conn(PGconn *c, unsigned timeout, const char *what, const char *sql,
                                  const struct pg_params *p, PGresult **out, bool *reset)
{
    if (out != NULL)
        *out = NULL;
    *reset = false;
    struct timespec d = pg_deadline(timeout);
    /* Several statements (no parameters) go by the simple protocol, one by the extended one
     * with binary results. */
    int sent = p == NULL ? PQsendQuery(c, sql)
                         : PQsendQueryParams(c, sql, p->n, p->types, p->vals, p->lens, p->fmts, 1);
    if (sent == 0) {
        pg_log(what, PQerrorMessage(c));
        *reset = true;
        return STORE_UNAVAILABLE;
    }
    int f;
    while ((f = PQflush(c)) == 1) {
        if (pg_wait(c, POLLOUT | POLLIN, &d) <= 0 || PQconsumeInput(c) == 0) {
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
            int w = pg_wait(c, POLLIN, &d);
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
            src = pg_state_unavailable(state, &rs) ? STORE_UNAVAILABLE : STORE_ERROR;
            *reset = *reset || rs;
            pg_log(what, PQresultErrorMessage(r));
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
    pg_log(what, PQerrorMessage(c));
    *reset = true;
    return STORE_UNAVAILABLE;
}

/* A statement of transaction t. A failure marks t failed (only abort is left). */
static enum store_rc pg_exec(struct store_pg_txn *t, const char *what, const char *sql,
                             const struct pg_params *p, PGresult **out)
{
    if (out != NULL)
        *out = NULL;
    if (t->failed)
        return t->broken ? STORE_UNAVAILABLE : STORE_ERROR;
    bool reset;
    enum store_rc src = pg_exec_conn(t->slot->conn, t->s->timeout, what, sql, p, out, &reset);
    if (src != STORE_OK) {
        t->failed = true;
        t->broken = t->broken || reset;
    }
    return src;
}

/* Pool ------------------------------------------------------------------------------------- */

/* Takes a free connection, waiting for one at most the store's timeout, and connects it when it
 * has none (or lost it). */
static enum store_rc pg_acquire(struct store_pg *s, struct pg_slot **out)
{
    *out = NULL;
    struct timespec d = pg_deadline(s->timeout);
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
    enum store_rc src = slot->conn == NULL ? pg_connect(s, &d, &slot->conn) : STORE_OK;
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

static void pg_release(struct store_pg *s, struct pg_slot *slot, bool reset)
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

/* Schema ----------------------------------------------------------------------------------- */

/* Step n brings the schema from version n-1 to n. Each is idempotent. */
static const char *const pg_migrations[STORE_PG_SCHEMA_VERSION] = {
    "CREATE TABLE IF NOT EXISTS xdm_docs (auid bytea NOT NULL, tree bytea NOT NULL, "
    "xui bytea NOT NULL, path bytea NOT NULL, etag text NOT NULL, mtime bigint NOT NULL, "
    "bytes bytea NOT NULL, PRIMARY KEY (auid, tree, xui, path));"
    "CREATE INDEX IF NOT EXISTS xdm_docs_user ON xdm_docs (xui, tree);"
    "CREATE TABLE IF NOT EXISTS xdm_meta (name text PRIMARY KEY, num bigint NOT NULL DEFAULT 0, "
    "str text);"
    "INSERT INTO xdm_meta (name, num) VALUES ('etag_counter', 0), ('change_seq', 0), "
    "('change_count', 0), ('change_bytes', 0) ON CONFLICT DO NOTHING;"
    "CREATE TABLE IF NOT EXISTS xdm_changes (seq bigint PRIMARY KEY, time bigint NOT NULL, "
    "record bytea NOT NULL);"
    "CREATE TABLE IF NOT EXISTS xdm_quota (xui bytea PRIMARY KEY, bytes bigint NOT NULL);"
    "CREATE TABLE IF NOT EXISTS xdm_kv (tbl text NOT NULL, key bytea NOT NULL, "
    "value bytea NOT NULL, PRIMARY KEY (tbl, key));",
};

enum pg_mode { PG_READ, PG_WRITE, PG_SCHEMA };

/* Takes a connection and begins a transaction on it: t is filled in either case; on failure the
 * connection is back in the pool. */
static enum store_rc pg_txn_open(struct store_pg *s, enum pg_mode mode, struct store_pg_txn *t)
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
    t->base.ops = &store_pg_ops;
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
    enum store_rc src = pg_acquire(s, &t->slot);
    if (src != STORE_OK) {
        if (t->writer)
            pthread_mutex_unlock(&s->write_mu);
        return src;
    }
    src = pg_exec(t, mode == PG_READ ? "begin read transaction" : "begin write transaction",
                  begin[mode], NULL, NULL);
    if (src != STORE_OK) {
        /* Out of step (a statement of the pair may have run): the connection goes. */
        pg_release(s, t->slot, true);
        t->slot = NULL;
        if (t->writer)
            pthread_mutex_unlock(&s->write_mu);
    }
    return src;
}

/* The end of a transaction: COMMIT or ROLLBACK, then the connection goes back to the pool (or is
 * dropped when it is out of step). */
static enum store_rc pg_txn_end(struct store_pg_txn *t, bool commit)
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
        enum store_rc e = pg_exec(t, commit ? "commit" : "rollback", commit ? "COMMIT" : "ROLLBACK",
                                  &(struct pg_params){0}, &r);
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
    pg_release(t->s, t->slot, t->broken);
    if (t->writer)
        pthread_mutex_unlock(&t->s->write_mu);
    return src;
}

static enum store_rc pg_prune(struct store_pg_txn *t, uint64_t adding, uint64_t incoming,
                              uint64_t keep);

/* The schema's version: -1 when there is none. */
static enum store_rc pg_schema_version(struct store_pg_txn *t, int64_t *out)
{
    PGresult *r;
    enum store_rc src =
        pg_exec(t, "read schema version",
                "SELECT CASE WHEN to_regclass('xdm_schema') IS NULL THEN -1::int8 ELSE "
                "(SELECT coalesce(max(version), 0)::int8 FROM xdm_schema) END",
                &(struct pg_params){0}, &r);
    *out = src == STORE_OK ? pg_get_int(r, 0, 0) : 0;
    PQclear(r);
    return src;
}

/* Applies the missing migration steps in one transaction under the schema lock: a second
 * instance starting at the same time waits, then finds them applied. */
static enum store_rc pg_migrate(struct store_pg *s)
{
    struct store_pg_txn t;
    enum store_rc src = pg_txn_open(s, PG_SCHEMA, &t);
    if (src != STORE_OK)
        return src;
    int64_t version = 0;
    src = pg_schema_version(&t, &version);
    if (src == STORE_OK && version > STORE_PG_SCHEMA_VERSION) {
        log_error("store: postgresql: the database's schema is at version %" PRId64
                  ", newer than this program's (%d): run the newer version",
                  version, STORE_PG_SCHEMA_VERSION);
        src = STORE_ERROR;
    }
    for (int64_t v = version + 1; src == STORE_OK && v <= STORE_PG_SCHEMA_VERSION; v++) {
        src = pg_exec(&t, "migrate schema", pg_migrations[v - 1], NULL, NULL);
        struct pg_params p = {0};
        pg_int(&p, v);
        if (src == STORE_OK)
            src = pg_exec(&t, "migrate schema",
                          "INSERT INTO xdm_schema (version) VALUES ($1::int8::int4)", &p, NULL);
        if (src == STORE_OK)
            log_info("store: postgresql: schema migrated to version %" PRId64, v);
    }
    char fresh[STORE_INSTANCE_HEX + 1];
    if (src == STORE_OK && (src = store_instance_new(fresh)) == STORE_OK) {
        struct pg_params p = {0};
        pg_text(&p, fresh);
        src = pg_exec(&t, "write instance id",
                      "INSERT INTO xdm_meta (name, str) VALUES ('instance', $1) "
                      "ON CONFLICT DO NOTHING",
                      &p, NULL);
    }
    enum store_rc e = pg_txn_end(&t, src == STORE_OK);
    return src != STORE_OK ? src : e;
}

/* At open: the schema (created or migrated unless read_only), the instance id, and the change
 * log pruned to its bounds keeping the newest record, as on LMDB. */
static enum store_rc pg_schema(struct store_pg *s)
{
    enum store_rc src = s->read_only ? STORE_OK : pg_migrate(s);
    if (src != STORE_OK)
        return src;
    struct store_pg_txn t;
    if ((src = pg_txn_open(s, s->read_only ? PG_READ : PG_WRITE, &t)) != STORE_OK)
        return src;
    int64_t version = 0;
    src = pg_schema_version(&t, &version);
    if (src == STORE_OK && version != STORE_PG_SCHEMA_VERSION) {
        if (version > STORE_PG_SCHEMA_VERSION)
            log_error("store: postgresql: the database's schema is at version %" PRId64
                      ", newer than this program's (%d)",
                      version, STORE_PG_SCHEMA_VERSION);
        src = version > STORE_PG_SCHEMA_VERSION ? STORE_ERROR : STORE_NOTFOUND;
    }
    PGresult *r = NULL;
    if (src == STORE_OK)
        src = pg_exec(&t, "read instance id",
                      "SELECT str FROM xdm_meta WHERE name = 'instance' AND str IS NOT NULL",
                      &(struct pg_params){0}, &r);
    if (src == STORE_OK) {
        if (PQntuples(r) != 1 || PQgetlength(r, 0, 0) != STORE_INSTANCE_HEX) {
            log_error("store: postgresql: xdm_meta has no valid instance id");
            src = STORE_ERROR;
        } else {
            memcpy(s->instance, PQgetvalue(r, 0, 0), STORE_INSTANCE_HEX);
            s->instance[STORE_INSTANCE_HEX] = '\0';
        }
    }
    PQclear(r);
    if (src == STORE_OK && !s->read_only)
        src = pg_prune(&t, 0, 0, 1);
    enum store_rc e = pg_txn_end(&t, src == STORE_OK);
    return src != STORE_OK ? src : e;
}

static void pg_close(struct store *base_s)
{
    struct store_pg *s = (struct store_pg *)base_s;
    for (size_t i = 0; s->pool != NULL && i < s->pool_size; i++)
        if (s->pool[i].conn != NULL)
            PQfinish(s->pool[i].conn);
    if (s->listener != NULL)
        PQfinish(s->listener);
    free(s->pool);
    for (size_t i = 0; i < s->n_tables; i++)
        free(s->tables[i]);
    free(s->tables);
    free(s->conninfo);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->write_mu);
    free(s);
}

enum store_rc store_pg_open(const struct store_options *opts, struct store **out)
{
    *out = NULL;
    size_t n_tables;
    struct store_pg *s = calloc(1, sizeof *s);
    if (s == NULL)
        return STORE_ERROR;
    s->base.ops = &store_pg_ops;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->write_mu, NULL);
    enum store_rc src = store_bounds_get(opts, &s->b);
    if (src == STORE_OK)
        src = store_tables_check(opts, &n_tables);
    if (src == STORE_OK && (opts->pg_conninfo == NULL || opts->pg_pool_size > STORE_PG_MAX_POOL ||
                            opts->pg_timeout > STORE_PG_MAX_TIMEOUT))
        src = STORE_INVALID;
    if (src != STORE_OK) {
        pg_close(&s->base);
        return src;
    }
    s->read_only = opts->read_only;
    s->timeout = opts->pg_timeout != 0 ? opts->pg_timeout : STORE_PG_DEFAULT_TIMEOUT;
    s->pool_size = opts->pg_pool_size != 0 ? opts->pg_pool_size : STORE_PG_DEFAULT_POOL;
    s->conninfo = strdup(opts->pg_conninfo);
    s->pool = calloc(s->pool_size, sizeof *s->pool);
    s->tables = n_tables > 0 ? calloc(n_tables, sizeof *s->tables) : NULL;
    if (s->conninfo == NULL || s->pool == NULL || (n_tables > 0 && s->tables == NULL)) {
        pg_close(&s->base);
        return STORE_ERROR;
    }
    for (size_t i = 0; i < n_tables; i++) {
        if ((s->tables[i] = strdup(opts->tables[i])) == NULL) {
            pg_close(&s->base);
            return STORE_ERROR;
        }
        s->n_tables = i + 1;
    }
    src = pg_schema(s);
    if (src != STORE_OK) {
        pg_close(&s->base);
        return src;
    }
    *out = &s->base;
    return STORE_OK;
}

static const char *pg_instance_id(const struct store *base_s)
{
    return ((const struct store_pg *)base_s)->instance;
}

static enum store_rc pg_txn_begin(struct store *base_s, bool write, struct store_txn **out)
{
    struct store_pg *s = (struct store_pg *)base_s;
    *out = NULL;
    if (write && s->read_only)
        return STORE_INVALID;
    struct store_pg_txn *t = malloc(sizeof *t);
    if (t == NULL)
        return STORE_ERROR;
    enum store_rc src = pg_txn_open(s, write ? PG_WRITE : PG_READ, t);
    if (src != STORE_OK) {
        free(t);
        return src;
    }
    *out = &t->base;
    return STORE_OK;
}

static enum store_rc pg_txn_commit(struct store_txn *base_t)
{
    struct store_pg_txn *t = (struct store_pg_txn *)base_t;
    enum store_rc src = pg_txn_end(t, true);
    free(t);
    return src;
}

static void pg_txn_abort(struct store_txn *base_t)
{
    struct store_pg_txn *t = (struct store_pg_txn *)base_t;
    pg_txn_end(t, false);
    free(t);
}

/* Documents -------------------------------------------------------------------------------- */

#define PG_DOC_WHERE "auid = $1 AND tree = $2 AND xui = $3 AND path = $4"

static void pg_key_params(struct pg_params *p, const struct doc_key *k)
{
    pg_str(p, k->auid);
    pg_str(p, k->tree);
    pg_str(p, k->xui);
    pg_str(p, k->path);
}

static enum store_rc pg_doc_get(struct store_txn *base_t, const struct doc_key *k,
                                struct store_doc *out)
{
    struct store_pg_txn *t = (struct store_pg_txn *)base_t;
    memset(out, 0, sizeof *out);
    if (!store_doc_key_valid(k, STORE_KEY_MAX))
        return STORE_INVALID;
    struct pg_params p = {0};
    pg_key_params(&p, k);
    PGresult *r;
    enum store_rc src = pg_exec(
        t, "get document", "SELECT etag, mtime, bytes FROM xdm_docs WHERE " PG_DOC_WHERE, &p, &r);
    if (src != STORE_OK)
        return src;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return STORE_NOTFOUND;
    }
    size_t etag_len = (size_t)PQgetlength(r, 0, 0);
    size_t len = (size_t)PQgetlength(r, 0, 2);
    if (etag_len >= STORE_ETAG_MAX || (out->data = malloc(len + 1)) == NULL) {
        PQclear(r);
        return STORE_ERROR;
    }
    memcpy(out->etag, PQgetvalue(r, 0, 0), etag_len);
    out->etag[etag_len] = '\0';
    out->mtime = pg_get_int(r, 0, 1);
    memcpy(out->data, PQgetvalue(r, 0, 2), len);
    out->data[len] = '\0';
    out->len = len;
    PQclear(r);
    return STORE_OK;
}

/* Length of the stored document of k, 0 when there is none. */
static enum store_rc pg_doc_len(struct store_pg_txn *t, const struct doc_key *k, uint64_t *len)
{
    struct pg_params p = {0};
    pg_key_params(&p, k);
    PGresult *r;
    enum store_rc src =
        pg_exec(t, "get document",
                "SELECT octet_length(bytes)::int8 FROM xdm_docs WHERE " PG_DOC_WHERE, &p, &r);
    *len = src == STORE_OK && PQntuples(r) == 1 ? (uint64_t)pg_get_int(r, 0, 0) : 0;
    PQclear(r);
    return src;
}

/* The bytes of xui go down by sub, then up by add; a user with nothing left has no row. */
static enum store_rc pg_quota_add(struct store_pg_txn *t, const char *xui, uint64_t sub,
                                  uint64_t add)
{
    struct pg_params p = {0};
    pg_str(&p, xui);
    PGresult *r;
    enum store_rc src =
        pg_exec(t, "read quota", "SELECT bytes FROM xdm_quota WHERE xui = $1", &p, &r);
    if (src != STORE_OK)
        return src;
    uint64_t cur = PQntuples(r) == 1 ? (uint64_t)pg_get_int(r, 0, 0) : 0;
    PQclear(r);
    cur = (cur > sub ? cur - sub : 0) + add;
    if (cur == 0)
        return pg_exec(t, "write quota", "DELETE FROM xdm_quota WHERE xui = $1", &p, NULL);
    pg_int(&p, (int64_t)cur);
    return pg_exec(t, "write quota",
                   "INSERT INTO xdm_quota (xui, bytes) VALUES ($1, $2) "
                   "ON CONFLICT (xui) DO UPDATE SET bytes = EXCLUDED.bytes",
                   &p, NULL);
}

/* The next value of a counter in xdm_meta; under the writer lock, so values follow commits. */
static enum store_rc pg_meta_next(struct store_pg_txn *t, const char *name, int64_t *out)
{
    struct pg_params p = {0};
    pg_text(&p, name);
    PGresult *r;
    enum store_rc src = pg_exec(
        t, "write meta", "UPDATE xdm_meta SET num = num + 1 WHERE name = $1 RETURNING num", &p, &r);
    if (src == STORE_OK && PQntuples(r) != 1) {
        log_error("store: postgresql: xdm_meta has no %s", name);
        src = STORE_ERROR;
    }
    *out = src == STORE_OK ? pg_get_int(r, 0, 0) : 0;
    PQclear(r);
    return src;
}

/* ETags as on LMDB: "<counter>-<first 8 hex of the instance id>", the counter in xdm_meta only
 * grows, within the writing transaction and under the writer lock, so no value repeats in this
 * database whichever process writes (RFC 4825 §7.11). */
static enum store_rc pg_doc_put(struct store_txn *base_t, const struct doc_key *k, const char *data,
                                size_t len, char etag_out[STORE_ETAG_MAX])
{
    struct store_pg_txn *t = (struct store_pg_txn *)base_t;
    if (!t->write || (data == NULL && len != 0) || len > INT32_MAX / 2)
        return STORE_INVALID;
    if (!store_doc_key_valid(k, STORE_KEY_MAX))
        return STORE_INVALID;
    bool counted = store_key_counted(k);
    uint64_t old_len = 0;
    enum store_rc src = counted ? pg_doc_len(t, k, &old_len) : STORE_OK;
    int64_t counter = 0;
    if (src == STORE_OK)
        src = pg_meta_next(t, "etag_counter", &counter);
    if (src != STORE_OK)
        return src;
    char etag[STORE_ETAG_MAX];
    snprintf(etag, sizeof etag, "%" PRId64 "-%.8s", counter, t->s->instance);
    struct pg_params p = {0};
    pg_key_params(&p, k);
    pg_text(&p, etag);
    pg_int(&p, (int64_t)time(NULL));
    pg_bytes(&p, data, len);
    src = pg_exec(t, "put document",
                  "INSERT INTO xdm_docs (auid, tree, xui, path, etag, mtime, bytes) "
                  "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (auid, tree, xui, path) DO "
                  "UPDATE SET etag = EXCLUDED.etag, mtime = EXCLUDED.mtime, bytes = EXCLUDED.bytes",
                  &p, NULL);
    if (src == STORE_OK && counted)
        src = pg_quota_add(t, k->xui, old_len, len);
    if (src == STORE_OK && etag_out != NULL)
        memcpy(etag_out, etag, strlen(etag) + 1);
    return src;
}

static enum store_rc pg_doc_del(struct store_txn *base_t, const struct doc_key *k)
{
    struct store_pg_txn *t = (struct store_pg_txn *)base_t;
    if (!t->write || !store_doc_key_valid(k, STORE_KEY_MAX))
        return STORE_INVALID;
    struct pg_params p = {0};
    pg_key_params(&p, k);
    PGresult *r;
    enum store_rc src = pg_exec(
        t, "delete document",
        "DELETE FROM xdm_docs WHERE " PG_DOC_WHERE " RETURNING octet_length(bytes)::int8", &p, &r);
    if (src != STORE_OK)
        return src;
    bool found = PQntuples(r) == 1;
    uint64_t old_len = found ? (uint64_t)pg_get_int(r, 0, 0) : 0;
    PQclear(r);
    if (!found)
        return STORE_NOTFOUND;
    return store_key_counted(k) ? pg_quota_add(t, k->xui, old_len, 0) : STORE_OK;
}

/* Calls fn for the rows of r (auid, tree, xui, path, etag, mtime, length); *stopped when fn
 * returned non-zero. */
static enum store_rc pg_doc_rows(const PGresult *r,
                                 int (*fn)(void *cls, const struct store_doc_view *d), void *cls,
                                 bool *stopped)
{
    *stopped = false;
    for (int i = 0; i < PQntuples(r); i++) {
        /* Views: binary bytea values are NUL-terminated by libpq, and a key component holds no
         * NUL, so each is a C string. */
        char etag[STORE_ETAG_MAX];
        size_t etag_len = (size_t)PQgetlength(r, i, 4);
        if (etag_len >= sizeof etag)
            return STORE_ERROR;
        memcpy(etag, PQgetvalue(r, i, 4), etag_len);
        etag[etag_len] = '\0';
        struct store_doc_view v = {
            .key = {PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2),
                    PQgetvalue(r, i, 3)},
            .etag = etag,
            .mtime = pg_get_int(r, i, 5),
            .len = (size_t)pg_get_int(r, i, 6),
        };
        if (fn(cls, &v) != 0) {
            *stopped = true;
            return STORE_OK;
        }
    }
    return STORE_OK;
}

#define PG_DOC_COLS "auid, tree, xui, path, etag, mtime, octet_length(bytes)::int8"
#define PG_DOC_ORDER " ORDER BY auid, tree, xui, path"

static enum store_rc pg_doc_list(struct store_txn *base_t, const char *auid, const char *tree,
                                 const char *xui, const char *path_prefix,
                                 int (*fn)(void *cls, const struct store_doc_view *d), void *cls)
{
    struct store_pg_txn *t = (struct store_pg_txn *)base_t;
    if (tree == NULL || xui == NULL || path_prefix == NULL)
        return STORE_INVALID;
    /* The same bound as a key: a prefix longer than any key matches nothing (LMDB: invalid when
     * the AUID is given). */
    size_t klen =
        strlen(auid != NULL ? auid : "") + strlen(tree) + strlen(xui) + strlen(path_prefix) + 3;
    if (klen > STORE_KEY_MAX)
        return auid != NULL ? STORE_INVALID : STORE_OK;
    struct pg_params p = {0};
    pg_str(&p, tree);
    pg_str(&p, xui);
    pg_str(&p, path_prefix);
    if (auid != NULL)
        pg_str(&p, auid);
    PGresult *r;
    enum store_rc src = pg_exec(
        t, "list documents",
        auid != NULL
            ? "SELECT " PG_DOC_COLS " FROM xdm_docs WHERE tree = $1 AND xui = $2 AND "
              "path >= $3 AND substring(path from 1 for octet_length($3)) = $3 AND "
              "auid = $4" PG_DOC_ORDER
            : "SELECT " PG_DOC_COLS " FROM xdm_docs WHERE tree = $1 AND xui = $2 AND "
              "path >= $3 AND substring(path from 1 for octet_length($3)) = $3" PG_DOC_ORDER,
        &p, &r);
    if (src != STORE_OK)
        return src;
    bool stopped;
    src = pg_doc_rows(r, fn, cls, &stopped);
    PQclear(r);
    return src;
}

/* Every document in batches (keyset pagination: one snapshot, so no row is missed or seen
 * twice), so that the memory held stays bounded whatever the store's size. */
static enum store_rc pg_doc_each(struct store_txn *base_t,
                                 int (*fn)(void *cls, const struct store_doc_view *d), void *cls)
{
    struct store_pg_txn *t = (struct store_pg_txn *)base_t;
    PGresult *r = NULL;
    enum store_rc src =
        pg_exec(t, "list documents",
                "SELECT " PG_DOC_COLS " FROM xdm_docs" PG_DOC_ORDER " LIMIT " STORE_PG_BATCH,
                &(struct pg_params){0}, &r);
    while (src == STORE_OK) {
        bool stopped;
        int n = PQntuples(r);
        src = pg_doc_rows(r, fn, cls, &stopped);
        if (src != STORE_OK || stopped || n < atoi(STORE_PG_BATCH))
            break;
        struct pg_params p = {0};
        for (int c = 0; c < 4; c++)
            pg_bytes(&p, PQgetvalue(r, n - 1, c), (size_t)PQgetlength(r, n - 1, c));
        PGresult *next;
        src = pg_exec(t, "list documents",
                      "SELECT " PG_DOC_COLS " FROM xdm_docs WHERE (auid, tree, xui, path) > "
                      "($1, $2, $3, $4)" PG_DOC_ORDER " LIMIT " STORE_PG_BATCH,
                      &p, &next);
        PQclear(r);
        r = next;
    }
    PQclear(r);
    return src;
}

static enum store_rc pg_count(struct store_pg_txn *t, const char *what, const char *sql,
                              const struct pg_params *p, uint64_t *out)
{
    PGresult *r;
    enum store_rc src = pg_exec(t, what, sql, p, &r);
    *out = src == STORE_OK && PQntuples(r) == 1 ? (uint64_t)pg_get_int(r, 0, 0) : 0;
    PQclear(r);
    return src;
}

static enum store_rc pg_doc_count_user(struct store_txn *base_t, const char *xui, uint64_t *out)
{
    *out = 0;
    if (xui == NULL)
        return STORE_INVALID;
    struct pg_params p = {0};
    pg_str(&p, xui);
    return pg_count((struct store_pg_txn *)base_t, "count documents",
                    "SELECT count(*) FROM xdm_docs WHERE xui = $1 AND tree = 'users'::bytea", &p,
                    out);
}

static enum store_rc pg_user_bytes(struct store_txn *base_t, const char *xui, uint64_t *out)
{
    *out = 0;
    if (xui == NULL)
        return STORE_INVALID;
    if (xui[0] == '\0')
        return STORE_OK;
    struct pg_params p = {0};
    pg_str(&p, xui);
    return pg_count((struct store_pg_txn *)base_t, "read quota",
                    "SELECT bytes FROM xdm_quota WHERE xui = $1", &p, out);
}

/* No map, no high-water mark: a full disk fails the write itself (STORE_ERROR). */
static enum store_rc pg_space_check(struct store_txn *base_t, uint64_t incoming)
{
    (void)base_t;
    (void)incoming;
    return STORE_OK;
}

static enum store_rc pg_usage_get(struct store_txn *base_t, struct store_usage *out)
{
    struct store_pg_txn *t = (struct store_pg_txn *)base_t;
    memset(out, 0, sizeof *out);
    PGresult *r;
    enum store_rc src =
        pg_exec(t, "read usage",
                "SELECT pg_database_size(current_database())::int8, "
                "(SELECT count(*) FROM xdm_docs), (SELECT count(*) FROM xdm_quota), "
                "(SELECT num FROM xdm_meta WHERE name = 'change_count'), "
                "(SELECT num FROM xdm_meta WHERE name = 'change_bytes')",
                &(struct pg_params){0}, &r);
    if (src != STORE_OK)
        return src;
    /* No map: map_bytes and limit_bytes stay 0, used_bytes is the database's size on disk. */
    out->used_bytes = (uint64_t)pg_get_int(r, 0, 0);
    out->documents = (uint64_t)pg_get_int(r, 0, 1);
    out->users = (uint64_t)pg_get_int(r, 0, 2);
    out->change_records = (uint64_t)pg_get_int(r, 0, 3);
    out->change_bytes = (uint64_t)pg_get_int(r, 0, 4);
    PQclear(r);
    return STORE_OK;
}

/* Change log -------------------------------------------------------------------------------- */

static enum store_rc pg_change_size(struct store_pg_txn *t, uint64_t *count, uint64_t *bytes)
{
    PGresult *r;
    enum store_rc src = pg_exec(t, "read change-log size",
                                "SELECT (SELECT num FROM xdm_meta WHERE name = 'change_count'), "
                                "(SELECT num FROM xdm_meta WHERE name = 'change_bytes')",
                                &(struct pg_params){0}, &r);
    *count = src == STORE_OK ? (uint64_t)pg_get_int(r, 0, 0) : 0;
    *bytes = src == STORE_OK ? (uint64_t)pg_get_int(r, 0, 1) : 0;
    PQclear(r);
    return src;
}

static enum store_rc pg_change_size_put(struct store_pg_txn *t, uint64_t count, uint64_t bytes)
{
    struct pg_params p = {0};
    pg_int(&p, (int64_t)count);
    pg_int(&p, (int64_t)bytes);
    return pg_exec(t, "write change-log size",
                   "UPDATE xdm_meta SET num = CASE name WHEN 'change_count' THEN $1 ELSE $2 END "
                   "WHERE name IN ('change_count', 'change_bytes')",
                   &p, NULL);
}

/* As on LMDB: drops the oldest records, never the newest keep ones, while the log with `adding`
 * more records of `incoming` bytes would exceed a bound (count, bytes, age). */
static enum store_rc pg_prune(struct store_pg_txn *t, uint64_t adding, uint64_t incoming,
                              uint64_t keep)
{
    uint64_t count, bytes;
    enum store_rc src = pg_change_size(t, &count, &bytes);
    const struct store_bounds *b = &t->s->b;
    int64_t now = (int64_t)time(NULL);
    bool changed = false;
    while (src == STORE_OK && count > keep) {
        PGresult *r;
        src = pg_exec(t, "prune changes",
                      "SELECT seq, time, octet_length(record)::int8 FROM xdm_changes "
                      "ORDER BY seq LIMIT 1",
                      &(struct pg_params){0}, &r);
        if (src != STORE_OK)
            break;
        if (PQntuples(r) != 1) {
            PQclear(r);
            count = 0; /* the count was out of step: nothing is left */
            changed = true;
            break;
        }
        int64_t seq = pg_get_int(r, 0, 0), when = pg_get_int(r, 0, 1);
        uint64_t size = (uint64_t)pg_get_int(r, 0, 2);
        PQclear(r);
        bool over = count + adding > b->retention || bytes + incoming > b->change_max_bytes;
        if (!over && b->change_max_age != 0)
            over = when <= 0 || (now > when && (uint64_t)(now - when) > b->change_max_age);
        if (!over)
            break;
        struct pg_params p = {0};
        pg_int(&p, seq);
        src = pg_exec(t, "prune changes", "DELETE FROM xdm_changes WHERE seq = $1", &p, NULL);
        count--;
        bytes = bytes > size ? bytes - size : 0;
        changed = true;
    }
    if (src == STORE_OK && changed)
        src = pg_change_size_put(t, count, bytes);
    return src;
}

/* The sequence number is taken from xdm_meta under the writer lock, so it is gap-free and in
 * commit order across every process; the NOTIFY is delivered to listeners at the commit. */
static enum store_rc pg_change_append(struct store_txn *base_t, struct store_change *c)
{
    struct store_pg_txn *t = (struct store_pg_txn *)base_t;
    if (!t->write || c == NULL || (c->kind != STORE_CHANGE_PUT && c->kind != STORE_CHANGE_DELETE) ||
        (c->detail == NULL && c->detail_len != 0))
        return STORE_INVALID;
    size_t total = store_change_size(c);
    if (total == 0 || total > INT32_MAX / 2)
        return STORE_INVALID;
    unsigned char *rec = malloc(total);
    if (rec == NULL)
        return STORE_ERROR;
    int64_t now = (int64_t)time(NULL), seq = 0;
    store_change_encode(c, now, rec);
    enum store_rc src = pg_prune(t, 1, total, 0);
    if (src == STORE_OK)
        src = pg_meta_next(t, "change_seq", &seq);
    if (src == STORE_OK) {
        struct pg_params p = {0};
        pg_int(&p, seq);
        pg_int(&p, now);
        pg_bytes(&p, rec, total);
        src = pg_exec(t, "append change",
                      "INSERT INTO xdm_changes (seq, time, record) VALUES ($1, $2, $3)", &p, NULL);
    }
    free(rec);
    if (src == STORE_OK) {
        struct pg_params p = {0};
        pg_int(&p, 1);
        pg_int(&p, (int64_t)total);
        src = pg_exec(t, "write change-log size",
                      "UPDATE xdm_meta SET num = num + CASE name WHEN 'change_count' THEN $1 "
                      "ELSE $2 END WHERE name IN ('change_count', 'change_bytes')",
                      &p, NULL);
    }
    if (src == STORE_OK && !t->notified) {
        char sql[96]; /* the instance id is hex: nothing to quote */
        snprintf(sql, sizeof sql, "SELECT pg_notify('" STORE_PG_CHANNEL "%s', '')", t->s->instance);
        src = pg_exec(t, "notify", sql, &(struct pg_params){0}, NULL);
        t->notified = src == STORE_OK;
    }
    if (src == STORE_OK) {
        c->seq = (uint64_t)seq;
        c->time = now;
    }
    return src;
}

static enum store_rc pg_change_read(struct store_txn *base_t, uint64_t after,
                                    int (*fn)(void *cls, const struct store_change *c), void *cls)
{
    struct store_pg_txn *t = (struct store_pg_txn *)base_t;
    if (after >= (uint64_t)INT64_MAX)
        return STORE_OK;
    for (;;) {
        struct pg_params p = {0};
        pg_int(&p, (int64_t)after);
        PGresult *r;
        enum store_rc src = pg_exec(t, "read changes",
                                    "SELECT seq, record FROM xdm_changes WHERE seq > $1 "
                                    "ORDER BY seq LIMIT " STORE_PG_BATCH,
                                    &p, &r);
        if (src != STORE_OK)
            return src;
        int n = PQntuples(r);
        for (int i = 0; i < n; i++) {
            struct store_change c;
            src = store_change_decode((const unsigned char *)PQgetvalue(r, i, 1),
                                      (size_t)PQgetlength(r, i, 1), &c);
            if (src != STORE_OK) {
                PQclear(r);
                return src;
            }
            c.seq = (uint64_t)pg_get_int(r, i, 0);
            after = c.seq;
            if (fn(cls, &c) != 0) {
                PQclear(r);
                return STORE_OK;
            }
        }
        PQclear(r);
        if (n < atoi(STORE_PG_BATCH))
            return STORE_OK;
    }
}

static enum store_rc pg_change_last(struct store_txn *base_t, uint64_t *out)
{
    return pg_count((struct store_pg_txn *)base_t, "read last change",
                    "SELECT max(seq) FROM xdm_changes", &(struct pg_params){0}, out);
}

/* Generic tables --------------------------------------------------------------------------------
 */

static enum store_rc pg_table_check(const struct store_pg_txn *t, const char *table)
{
    if (table == NULL)
        return STORE_INVALID;
    for (size_t i = 0; i < t->s->n_tables; i++)
        if (strcmp(t->s->tables[i], table) == 0)
            return STORE_OK;
    return STORE_INVALID;
}

static enum store_rc pg_kv_check(const struct store_pg_txn *t, const char *table, const void *key,
                                 size_t klen)
{
    if (key == NULL || klen == 0 || klen > STORE_KEY_MAX)
        return STORE_INVALID;
    return pg_table_check(t, table);
}

static enum store_rc pg_kv_get(struct store_txn *base_t, const char *table, const void *key,
                               size_t klen, void **val, size_t *vlen)
{
    struct store_pg_txn *t = (struct store_pg_txn *)base_t;
    *val = NULL;
    *vlen = 0;
    enum store_rc src = pg_kv_check(t, table, key, klen);
    if (src != STORE_OK)
        return src;
    struct pg_params p = {0};
    pg_text(&p, table);
    pg_bytes(&p, key, klen);
    PGresult *r;
    src = pg_exec(t, "get", "SELECT value FROM xdm_kv WHERE tbl = $1 AND key = $2", &p, &r);
    if (src != STORE_OK)
        return src;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return STORE_NOTFOUND;
    }
    size_t len = (size_t)PQgetlength(r, 0, 0);
    char *copy = malloc(len + 1);
    if (copy == NULL) {
        PQclear(r);
        return STORE_ERROR;
    }
    memcpy(copy, PQgetvalue(r, 0, 0), len);
    copy[len] = '\0';
    PQclear(r);
    *val = copy;
    *vlen = len;
    return STORE_OK;
}

static enum store_rc pg_kv_put(struct store_txn *base_t, const char *table, const void *key,
                               size_t klen, const void *val, size_t vlen)
{
    struct store_pg_txn *t = (struct store_pg_txn *)base_t;
    if (!t->write || (val == NULL && vlen != 0) || vlen > INT32_MAX / 2)
        return STORE_INVALID;
    enum store_rc src = pg_kv_check(t, table, key, klen);
    if (src != STORE_OK)
        return src;
    struct pg_params p = {0};
    pg_text(&p, table);
    pg_bytes(&p, key, klen);
    pg_bytes(&p, val, vlen);
    return pg_exec(t, "put",
                   "INSERT INTO xdm_kv (tbl, key, value) VALUES ($1, $2, $3) "
                   "ON CONFLICT (tbl, key) DO UPDATE SET value = EXCLUDED.value",
                   &p, NULL);
}

static enum store_rc pg_kv_del(struct store_txn *base_t, const char *table, const void *key,
                               size_t klen)
{
    struct store_pg_txn *t = (struct store_pg_txn *)base_t;
    if (!t->write)
        return STORE_INVALID;
    enum store_rc src = pg_kv_check(t, table, key, klen);
    if (src != STORE_OK)
        return src;
    struct pg_params p = {0};
    pg_text(&p, table);
    pg_bytes(&p, key, klen);
    PGresult *r;
    src = pg_exec(t, "delete", "DELETE FROM xdm_kv WHERE tbl = $1 AND key = $2", &p, &r);
    if (src != STORE_OK)
        return src;
    bool found = strcmp(PQcmdTuples(r), "0") != 0;
    PQclear(r);
    return found ? STORE_OK : STORE_NOTFOUND;
}

static enum store_rc
pg_kv_scan(struct store_txn *base_t, const char *table, const void *prefix, size_t plen,
           int (*fn)(void *cls, const void *key, size_t klen, const void *val, size_t vlen),
           void *cls)
{
    struct store_pg_txn *t = (struct store_pg_txn *)base_t;
    if (plen > STORE_KEY_MAX || (prefix == NULL && plen != 0))
        return STORE_INVALID;
    enum store_rc src = pg_table_check(t, table);
    if (src != STORE_OK)
        return src;
    PGresult *r = NULL;
    for (bool first = true;; first = false) {
        struct pg_params p = {0};
        pg_text(&p, table);
        pg_bytes(&p, prefix, plen);
        if (!first)
            pg_bytes(&p, PQgetvalue(r, PQntuples(r) - 1, 0),
                     (size_t)PQgetlength(r, PQntuples(r) - 1, 0));
        PGresult *next;
        src = pg_exec(t, "scan",
                      first ? "SELECT key, value FROM xdm_kv WHERE tbl = $1 AND key >= $2 AND "
                              "substring(key from 1 for octet_length($2)) = $2 ORDER BY key "
                              "LIMIT " STORE_PG_BATCH
                            : "SELECT key, value FROM xdm_kv WHERE tbl = $1 AND key > $3 AND "
                              "substring(key from 1 for octet_length($2)) = $2 ORDER BY key "
                              "LIMIT " STORE_PG_BATCH,
                      &p, &next);
        PQclear(r);
        r = next;
        if (src != STORE_OK)
            break;
        int n = PQntuples(r);
        for (int i = 0; i < n; i++)
            if (fn(cls, PQgetvalue(r, i, 0), (size_t)PQgetlength(r, i, 0), PQgetvalue(r, i, 1),
                   (size_t)PQgetlength(r, i, 1)) != 0)
                goto done;
        if (n < atoi(STORE_PG_BATCH))
            break;
    }
done:
    PQclear(r);
    return src;
}

/* Wake-up ------------------------------------------------------------------------------------ */

/* The listener: its own connection (not one of the pool's, which go back and forth), LISTENing
 * to the channel that store_change_append() NOTIFYs. */
static int pg_wake_fd(struct store *base_s)
{
    struct store_pg *s = (struct store_pg *)base_s;
    if (s->listener == NULL) {
        struct timespec d = pg_deadline(s->timeout);
        PGconn *c;
        if (pg_connect(s, &d, &c) != STORE_OK)
            return -1;
        bool reset;
        char sql[96]; /* quoted: pg_notify() names the channel case-sensitively */
        snprintf(sql, sizeof sql, "LISTEN \"" STORE_PG_CHANNEL "%s\"", s->instance);
        if (pg_exec_conn(c, s->timeout, "listen", sql, NULL, NULL, &reset) != STORE_OK) {
            PQfinish(c);
            return -1;
        }
        s->listener = c;
    }
    return PQsocket(s->listener);
}

static void pg_wake_drain(struct store *base_s)
{
    struct store_pg *s = (struct store_pg *)base_s;
    if (s->listener == NULL) {
        pg_wake_fd(base_s);
        return;
    }
    if (PQconsumeInput(s->listener) == 0 || PQstatus(s->listener) != CONNECTION_OK) {
        pg_log("listener", PQerrorMessage(s->listener));
        PQfinish(s->listener);
        s->listener = NULL;
        pg_wake_fd(base_s);
        return;
    }
    PGnotify *n;
    while ((n = PQnotifies(s->listener)) != NULL)
        PQfreemem(n);
}

static const struct store_ops store_pg_ops = {
    .close = pg_close,
    .instance_id = pg_instance_id,
    .txn_begin = pg_txn_begin,
    .txn_commit = pg_txn_commit,
    .txn_abort = pg_txn_abort,
    .doc_get = pg_doc_get,
    .doc_put = pg_doc_put,
    .doc_del = pg_doc_del,
    .doc_list = pg_doc_list,
    .doc_each = pg_doc_each,
    .doc_count_user = pg_doc_count_user,
    .user_bytes = pg_user_bytes,
    .space_check = pg_space_check,
    .usage_get = pg_usage_get,
    .change_append = pg_change_append,
    .change_read = pg_change_read,
    .change_last = pg_change_last,
    .kv_get = pg_kv_get,
    .kv_put = pg_kv_put,
    .kv_del = pg_kv_del,
    .kv_scan = pg_kv_scan,
    .wake_fd = pg_wake_fd,
    .wake_drain = pg_wake_drain,
};
