/* What the files of the PostgreSQL backend share (store_pg.c: the pool, transactions, schema and
 * the operations table; store_pg_conn.c: connections, parameters and statements, a leaf;
 * store_pg_doc.c: documents and quotas; store_pg_log.c: the change log; store_pg_kv.c: extra
 * tables). store_pg.c calls the others, store_pg_log.c calls store_pg_doc.c, all call
 * store_pg_conn.c; nothing calls back. Not for use outside common/store_pg*.c. */
#ifndef XDM_STORE_PG_INTERNAL_H
#define XDM_STORE_PG_INTERNAL_H

#include <libpq-fe.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "store_backend.h"

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
    /* Group commit of store_write() (store_pg_group.c), under group_mu. */
    pthread_mutex_t group_mu;
    bool group_active;          /* a leader has the group's transaction */
    unsigned group_max;         /* store_write() calls in one commit; 1 = off */
    struct store_pg_job *queue; /* calls waiting for a leader to run them */
    struct store_pg_job *queue_tail;
    struct store_group_stats group_stats;
};

struct store_pg_job;

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

enum pg_mode { PG_READ, PG_WRITE, PG_SCHEMA };

/* store_pg.c: a transaction on a pooled connection (t filled in either case; on failure the
 * connection is back in the pool), and its end (COMMIT or ROLLBACK, the connection back). */
enum store_rc store_pg_txn_open(struct store_pg *s, enum pg_mode mode, struct store_pg_txn *t);
enum store_rc store_pg_txn_end(struct store_pg_txn *t, bool commit);

/* store_pg_group.c: group commit of store_write() (the table's write and group_stats). */
void store_pg_group_init(struct store_pg *s, const struct store_options *opts);
void store_pg_group_destroy(struct store_pg *s);
enum store_rc store_pg_write(struct store *base_s, store_write_fn fn, void *cls, int *result);
void store_pg_group_stats(struct store *base_s, struct store_group_stats *out);

/* The operations (store_pg_doc_*, _change_*, _kv_*, ...) are the entries of the operations table
 * in store_pg.c: each behaves as the store.h function of the same name, on a transaction of this
 * backend. The rest are helpers of one transaction, with store.h's results. */

/* store_pg_conn.c: statement parameters, results, connections, statements. */
/* A CLOCK_MONOTONIC deadline seconds from now. */
struct timespec store_pg_deadline(unsigned seconds);
/* Connects s's conninfo within the deadline d and prepares the session (statement_timeout, a
 * non-blocking socket): STORE_OK with *out set, or STORE_UNAVAILABLE (logged). */
enum store_rc store_pg_connect(const struct store_pg *s, const struct timespec *d, PGconn **out);
/* One statement on c within timeout seconds; *reset is set when c is lost or out of step and must
 * be dropped. Failures are logged with what. */
enum store_rc store_pg_exec_conn(PGconn *c, unsigned timeout, const char *what, const char *sql,
                                 const struct pg_params *p, PGresult **out, bool *reset);
/* Logs a libpq message (trailing new lines dropped) as the failure of what. */
void store_pg_log_failure(const char *what, const char *msg);
void store_pg_bytes(struct pg_params *p, const void *v, size_t len);
enum store_rc store_pg_exec(struct store_pg_txn *t, const char *what, const char *sql,
                            const struct pg_params *p, PGresult **out);
int64_t store_pg_get_int(const PGresult *r, int row, int col);
void store_pg_int(struct pg_params *p, int64_t v);
void store_pg_str(struct pg_params *p, const char *v);
void store_pg_text(struct pg_params *p, const char *v);

/* store_pg_doc.c: documents and quotas. */
enum store_rc store_pg_count(struct store_pg_txn *t, const char *what, const char *sql,
                             const struct pg_params *p, uint64_t *out);
enum store_rc store_pg_doc_count_user(struct store_txn *base_t, const char *xui, uint64_t *out);
enum store_rc store_pg_doc_del(struct store_txn *base_t, const struct doc_key *k);
enum store_rc store_pg_doc_each(struct store_txn *base_t,
                                int (*fn)(void *cls, const struct store_doc_view *d), void *cls);
enum store_rc store_pg_doc_get(struct store_txn *base_t, const struct doc_key *k,
                               struct store_doc *out);
enum store_rc store_pg_doc_list(struct store_txn *base_t, const char *auid, const char *tree,
                                const char *xui, const char *path_prefix,
                                int (*fn)(void *cls, const struct store_doc_view *d), void *cls);
enum store_rc store_pg_doc_put(struct store_txn *base_t, const struct doc_key *k, const char *data,
                               size_t len, char etag_out[STORE_ETAG_MAX]);
enum store_rc store_pg_meta_next(struct store_pg_txn *t, const char *name, int64_t *out);
enum store_rc store_pg_space_check(struct store_txn *base_t, uint64_t incoming);
enum store_rc store_pg_usage_get(struct store_txn *base_t, struct store_usage *out);
enum store_rc store_pg_user_bytes(struct store_txn *base_t, const char *xui, uint64_t *out);

/* store_pg_log.c: the change log. */
enum store_rc store_pg_change_append(struct store_txn *base_t, struct store_change *c);
enum store_rc store_pg_change_last(struct store_txn *base_t, uint64_t *out);
enum store_rc store_pg_change_read(struct store_txn *base_t, uint64_t after,
                                   int (*fn)(void *cls, const struct store_change *c), void *cls);
enum store_rc store_pg_prune(struct store_pg_txn *t, uint64_t adding, uint64_t incoming,
                             uint64_t keep);

/* store_pg_kv.c: extra tables. */
enum store_rc store_pg_kv_del(struct store_txn *base_t, const char *table, const void *key,
                              size_t klen);
enum store_rc store_pg_kv_get(struct store_txn *base_t, const char *table, const void *key,
                              size_t klen, void **val, size_t *vlen);
enum store_rc store_pg_kv_put(struct store_txn *base_t, const char *table, const void *key,
                              size_t klen, const void *val, size_t vlen);
enum store_rc
store_pg_kv_scan(struct store_txn *base_t, const char *table, const void *prefix, size_t plen,
                 int (*fn)(void *cls, const void *key, size_t klen, const void *val, size_t vlen),
                 void *cls);

#endif
