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
#include "store_pg_internal.h"

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

static const struct store_ops store_pg_ops;

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

/* The schema's version: -1 when there is none. */
static enum store_rc store_pg_schema_version(struct store_pg_txn *t, int64_t *out)
{
    PGresult *r;
    enum store_rc src =
        store_pg_exec(t, "read schema version",
                      "SELECT CASE WHEN to_regclass('xdm_schema') IS NULL THEN -1::int8 ELSE "
                      "(SELECT coalesce(max(version), 0)::int8 FROM xdm_schema) END",
                      &(struct pg_params){0}, &r);
    *out = src == STORE_OK ? store_pg_get_int(r, 0, 0) : 0;
    PQclear(r);
    return src;
}

/* Applies the missing migration steps in one transaction under the schema lock: a second
 * instance starting at the same time waits, then finds them applied. */
static enum store_rc store_pg_migrate(struct store_pg *s)
{
    struct store_pg_txn t;
    enum store_rc src = store_pg_txn_open(s, PG_SCHEMA, &t);
    if (src != STORE_OK)
        return src;
    int64_t version = 0;
    src = store_pg_schema_version(&t, &version);
    if (src == STORE_OK && version > STORE_PG_SCHEMA_VERSION) {
        log_error("store: postgresql: the database's schema is at version %" PRId64
                  ", newer than this program's (%d): run the newer version",
                  version, STORE_PG_SCHEMA_VERSION);
        src = STORE_ERROR;
    }
    for (int64_t v = version + 1; src == STORE_OK && v <= STORE_PG_SCHEMA_VERSION; v++) {
        src = store_pg_exec(&t, "migrate schema", pg_migrations[v - 1], NULL, NULL);
        struct pg_params p = {0};
        store_pg_int(&p, v);
        if (src == STORE_OK)
            src =
                store_pg_exec(&t, "migrate schema",
                              "INSERT INTO xdm_schema (version) VALUES ($1::int8::int4)", &p, NULL);
        if (src == STORE_OK)
            log_info("store: postgresql: schema migrated to version %" PRId64, v);
    }
    char fresh[STORE_INSTANCE_HEX + 1];
    if (src == STORE_OK && (src = store_instance_new(fresh)) == STORE_OK) {
        struct pg_params p = {0};
        store_pg_text(&p, fresh);
        src = store_pg_exec(&t, "write instance id",
                            "INSERT INTO xdm_meta (name, str) VALUES ('instance', $1) "
                            "ON CONFLICT DO NOTHING",
                            &p, NULL);
    }
    enum store_rc e = store_pg_txn_end(&t, src == STORE_OK);
    return src != STORE_OK ? src : e;
}

/* At open: the schema (created or migrated unless read_only), the instance id, and the change
 * log pruned to its bounds keeping the newest record, as on LMDB. */
static enum store_rc store_pg_schema(struct store_pg *s)
{
    enum store_rc src = s->read_only ? STORE_OK : store_pg_migrate(s);
    if (src != STORE_OK)
        return src;
    struct store_pg_txn t;
    if ((src = store_pg_txn_open(s, s->read_only ? PG_READ : PG_WRITE, &t)) != STORE_OK)
        return src;
    int64_t version = 0;
    src = store_pg_schema_version(&t, &version);
    if (src == STORE_OK && version != STORE_PG_SCHEMA_VERSION) {
        if (version > STORE_PG_SCHEMA_VERSION)
            log_error("store: postgresql: the database's schema is at version %" PRId64
                      ", newer than this program's (%d)",
                      version, STORE_PG_SCHEMA_VERSION);
        src = version > STORE_PG_SCHEMA_VERSION ? STORE_ERROR : STORE_NOTFOUND;
    }
    PGresult *r = NULL;
    if (src == STORE_OK)
        src = store_pg_exec(&t, "read instance id",
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
        src = store_pg_prune(&t, 0, 0, 1);
    enum store_rc e = store_pg_txn_end(&t, src == STORE_OK);
    return src != STORE_OK ? src : e;
}

static void store_pg_close(struct store *base_s)
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
    store_pg_group_destroy(s);
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
    store_pg_group_init(s, opts);
    enum store_rc src = store_bounds_get(opts, &s->b);
    if (src == STORE_OK)
        src = store_tables_check(opts, &n_tables);
    if (src == STORE_OK && (opts->pg_conninfo == NULL || opts->pg_pool_size > STORE_PG_MAX_POOL ||
                            opts->pg_timeout > STORE_PG_MAX_TIMEOUT))
        src = STORE_INVALID;
    if (src != STORE_OK) {
        store_pg_close(&s->base);
        return src;
    }
    s->read_only = opts->read_only;
    s->timeout = opts->pg_timeout != 0 ? opts->pg_timeout : STORE_PG_DEFAULT_TIMEOUT;
    s->pool_size = opts->pg_pool_size != 0 ? opts->pg_pool_size : STORE_PG_DEFAULT_POOL;
    s->conninfo = strdup(opts->pg_conninfo);
    s->pool = calloc(s->pool_size, sizeof *s->pool);
    s->tables = n_tables > 0 ? calloc(n_tables, sizeof *s->tables) : NULL;
    if (s->conninfo == NULL || s->pool == NULL || (n_tables > 0 && s->tables == NULL)) {
        store_pg_close(&s->base);
        return STORE_ERROR;
    }
    for (size_t i = 0; i < n_tables; i++) {
        if ((s->tables[i] = strdup(opts->tables[i])) == NULL) {
            store_pg_close(&s->base);
            return STORE_ERROR;
        }
        s->n_tables = i + 1;
    }
    src = store_pg_schema(s);
    if (src != STORE_OK) {
        store_pg_close(&s->base);
        return src;
    }
    *out = &s->base;
    return STORE_OK;
}

static const char *store_pg_instance_id(const struct store *base_s)
{
    return ((const struct store_pg *)base_s)->instance;
}

static enum store_rc store_pg_txn_begin(struct store *base_s, bool write, struct store_txn **out)
{
    struct store_pg *s = (struct store_pg *)base_s;
    *out = NULL;
    if (write && s->read_only)
        return STORE_INVALID;
    struct store_pg_txn *t = malloc(sizeof *t);
    if (t == NULL)
        return STORE_ERROR;
    enum store_rc src = store_pg_txn_open(s, write ? PG_WRITE : PG_READ, t);
    if (src != STORE_OK) {
        free(t);
        return src;
    }
    *out = &t->base;
    return STORE_OK;
}

static enum store_rc store_pg_txn_commit(struct store_txn *base_t)
{
    struct store_pg_txn *t = (struct store_pg_txn *)base_t;
    enum store_rc src = store_pg_txn_end(t, true);
    free(t);
    return src;
}

static void store_pg_txn_abort(struct store_txn *base_t)
{
    struct store_pg_txn *t = (struct store_pg_txn *)base_t;
    store_pg_txn_end(t, false);
    free(t);
}

/* Documents -------------------------------------------------------------------------------- */

/* The listener: its own connection (not one of the pool's, which go back and forth), LISTENing
 * to the channel that store_change_append() NOTIFYs. */
static int store_pg_wake_fd(struct store *base_s)
{
    struct store_pg *s = (struct store_pg *)base_s;
    if (s->listener == NULL) {
        struct timespec d = store_pg_deadline(s->timeout);
        PGconn *c;
        if (store_pg_connect(s, &d, &c) != STORE_OK)
            return -1;
        bool reset;
        char sql[96]; /* quoted: pg_notify() names the channel case-sensitively */
        snprintf(sql, sizeof sql, "LISTEN \"" STORE_PG_CHANNEL "%s\"", s->instance);
        if (store_pg_exec_conn(c, s->timeout, "listen", sql, NULL, NULL, &reset) != STORE_OK) {
            PQfinish(c);
            return -1;
        }
        s->listener = c;
    }
    return PQsocket(s->listener);
}

static void store_pg_wake_drain(struct store *base_s)
{
    struct store_pg *s = (struct store_pg *)base_s;
    if (s->listener == NULL) {
        store_pg_wake_fd(base_s);
        return;
    }
    if (PQconsumeInput(s->listener) == 0 || PQstatus(s->listener) != CONNECTION_OK) {
        store_pg_log_failure("listener", PQerrorMessage(s->listener));
        PQfinish(s->listener);
        s->listener = NULL;
        store_pg_wake_fd(base_s);
        return;
    }
    PGnotify *n;
    while ((n = PQnotifies(s->listener)) != NULL)
        PQfreemem(n);
}

static const struct store_ops store_pg_ops = {
    .close = store_pg_close,
    .instance_id = store_pg_instance_id,
    .txn_begin = store_pg_txn_begin,
    .txn_commit = store_pg_txn_commit,
    .txn_abort = store_pg_txn_abort,
    .doc_get = store_pg_doc_get,
    .doc_put = store_pg_doc_put,
    .doc_del = store_pg_doc_del,
    .doc_list = store_pg_doc_list,
    .doc_each = store_pg_doc_each,
    .doc_count_user = store_pg_doc_count_user,
    .user_bytes = store_pg_user_bytes,
    .space_check = store_pg_space_check,
    .usage_get = store_pg_usage_get,
    .change_append = store_pg_change_append,
    .change_read = store_pg_change_read,
    .change_last = store_pg_change_last,
    .kv_get = store_pg_kv_get,
    .kv_put = store_pg_kv_put,
    .kv_del = store_pg_kv_del,
    .kv_scan = store_pg_kv_scan,
    .group_stats = store_pg_group_stats,
    .write = store_pg_write,
    .wake_fd = store_pg_wake_fd,
    .wake_drain = store_pg_wake_drain,
};
