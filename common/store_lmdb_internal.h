/* What the files of the LMDB backend share (store_lmdb.c: environment, transactions and the
 * operations table; store_lmdb_doc.c: documents and quotas; store_lmdb_log.c: change log and
 * space; store_lmdb_kv.c: extra tables, copy; store_lmdb_util.c: results, meta counters and keys,
 * a leaf). store_lmdb.c calls the operation files, store_lmdb_log.c calls store_lmdb_doc.c, all
 * call store_lmdb_util.c; nothing calls back. Not for use outside common/store_lmdb*.c. */
#ifndef XDM_STORE_LMDB_INTERNAL_H
#define XDM_STORE_LMDB_INTERNAL_H

#include <lmdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store_backend.h"

/* Named databases besides the extra tables: docs, meta, changes, quota. */
#define STORE_BUILTIN_DBS 4
#define STORE_DIR_MAX 4096
/* Reader slots (one per open read transaction, across all processes). LMDB's default of 126 is
 * below what a large HTTP thread pool plus the SIP thread and xdmctl may hold at once; a slot costs
 * 64 bytes of lock file. The first process to create the lock file fixes the number. */
#define STORE_MAX_READERS 1024

#define STORE_DOC_VERSION 1
#define STORE_DOC_HDR (1 + 1 + 8 + 8)

#define STORE_META_INSTANCE "instance"
#define STORE_META_ETAG "etag_counter"
#define STORE_META_SEQ "change_seq"
#define STORE_META_CHANGE_BYTES "change_bytes"
#define STORE_META_QUOTA_READY "quota_ready"

struct store_table {
    char *name;
    MDB_dbi dbi;
};

struct store_lmdb_job;

/* Group commit (store_lmdb_group.c): the write transactions of concurrent requests run one after
 * the other, each nested in one shared top-level transaction, and are acknowledged together after
 * its one durable commit. Everything below is under lock. */
struct store_lmdb_group {
    pthread_mutex_t lock;
    pthread_cond_t join;   /* threads waiting to join (or lead) a group: one is woken at a time */
    pthread_cond_t lead;   /* the leader waiting for the end of the group's transactions */
    pthread_cond_t done;   /* members waiting for the group's commit */
    bool on;               /* max_requests > 1 and nested transactions possible */
    unsigned max_requests; /* requests in one commit */
    uint64_t max_bytes;    /* bytes written by the requests of one commit */
    enum { GROUP_IDLE, GROUP_OPENING, GROUP_OPEN, GROUP_COMMITTING } phase;
    MDB_txn *parent;                  /* the shared transaction while OPEN */
    struct store_lmdb_txn *leader;    /* the request whose thread began (and commits) it */
    bool child_active;                /* one nested transaction at a time (LMDB) */
    unsigned waiting;                 /* threads in store_txn_begin waiting to join */
    unsigned members;                 /* requests committed into parent */
    uint64_t bytes;                   /* bytes they wrote */
    struct store_lmdb_txn *followers; /* committed members other than the leader */
    struct store_lmdb_job *queue;     /* store_write() calls waiting for a leader to run them */
    struct store_lmdb_job *queue_tail;
    struct store_lmdb_job *ran; /* the jobs committed into parent */
    /* A batch (store_batch_begin): the group is open with batch_owner's thread as its leader
     * until store_batch_end; that thread's writes run nested at once and do not wait. */
    bool batch;
    pthread_t batch_owner;
    struct store_group_stats stats;
};

struct store_lmdb {
    struct store base; /* first: store.c reaches the operations through it */
    MDB_env *env;
    MDB_dbi docs;
    MDB_dbi meta;
    MDB_dbi changes;
    MDB_dbi quota;
    struct store_table *tables;
    size_t n_tables;
    uint64_t retention;
    uint64_t change_max_bytes;
    uint64_t change_max_age;
    unsigned high_water;
    bool read_only;
    size_t key_max;
    char instance[STORE_INSTANCE_HEX + 1];
    struct store_lmdb_group group;
};

struct store_lmdb_txn {
    struct store_txn base;
    struct store_lmdb *s;
    MDB_txn *txn;
    bool write;
    bool nested;                 /* a member of a group commit: txn is a child of group.parent */
    uint64_t written;            /* bytes of keys and values this transaction wrote */
    uint64_t batch_before;       /* bytes the earlier members of its group wrote */
    struct store_lmdb_txn *next; /* in group.followers */
    bool done;                   /* the group's commit finished; rc is its result */
    enum store_rc rc;
    bool in_batch; /* begun by a batch's owner: its commit merges and returns at once */
};

/* A docs key built on the stack; STORE_KEY_MAX bounds it. */
struct store_key {
    char bytes[STORE_KEY_MAX + 1];
    size_t len;
};

/* The operations (store_lmdb_doc_*, _change_*, _kv_*, ...) are the entries of the operations
 * table in store_lmdb.c: each behaves as the store.h function of the same name without the
 * backend part, on a transaction of this backend. The rest are helpers of one transaction, with
 * the contract of store.h's results (STORE_OK, STORE_NOT_FOUND, ...). */

/* store_lmdb_util.c: results, meta counters, keys. */
enum store_rc store_lmdb_doc_key(const struct store_lmdb *s, struct store_key *out,
                                 const struct doc_key *k);
enum store_rc store_lmdb_find_u64(MDB_txn *txn, MDB_dbi dbi, const char *key, const char *what,
                                  uint64_t *out);
enum store_rc store_lmdb_key_build(const struct store_lmdb *s, struct store_key *k,
                                   const char *auid, const char *tree, const char *xui,
                                   const char *last);
bool store_lmdb_key_split(char *buf, size_t len, struct doc_key *out);
enum store_rc store_lmdb_meta_find_u64(MDB_txn *txn, MDB_dbi meta, const char *name, uint64_t *out);
enum store_rc store_lmdb_meta_get_u64(MDB_txn *txn, MDB_dbi meta, const char *name, uint64_t *out);
enum store_rc store_lmdb_meta_put_u64(MDB_txn *txn, MDB_dbi meta, const char *name, uint64_t value);
enum store_rc store_lmdb_rc_from_mdb(int rc, const char *what);

/* store_lmdb_doc.c: documents and quotas (operations of the table). */
enum store_rc store_lmdb_doc_count_user(struct store_txn *base_t, const char *xui, uint64_t *out);
enum store_rc store_lmdb_doc_del(struct store_txn *base_t, const struct doc_key *k);
enum store_rc store_lmdb_doc_each(struct store_txn *base_t,
                                  int (*fn)(void *cls, const struct store_doc_view *d), void *cls);
enum store_rc store_lmdb_doc_get(struct store_txn *base_t, const struct doc_key *k,
                                 struct store_doc *out);
enum store_rc store_lmdb_doc_list(struct store_txn *base_t, const char *auid, const char *tree,
                                  const char *xui, const char *path_prefix,
                                  int (*fn)(void *cls, const struct store_doc_view *d), void *cls);
enum store_rc store_lmdb_doc_put(struct store_txn *base_t, const struct doc_key *k,
                                 const char *data, size_t len, char etag_out[STORE_ETAG_MAX]);
enum store_rc store_lmdb_quota_ensure(struct store_lmdb_txn *t);
enum store_rc store_lmdb_user_bytes(struct store_txn *base_t, const char *xui, uint64_t *out);

/* store_lmdb_group.c: group commit. _init reads the options and the environment's flags (no
 * nesting under MDB_WRITEMAP: group commit stays off; _start turns it on once the environment is
 * open); _begin, _commit and _abort are the write
 * halves of the table's txn_begin, txn_commit and txn_abort. */
void store_lmdb_group_init(struct store_lmdb *s, const struct store_options *opts);
void store_lmdb_group_start(struct store_lmdb *s);
void store_lmdb_group_destroy(struct store_lmdb *s);
enum store_rc store_lmdb_group_begin(struct store_lmdb *s, struct store_lmdb_txn *t);
enum store_rc store_lmdb_group_commit(struct store_lmdb_txn *t);
void store_lmdb_group_abort(struct store_lmdb_txn *t);
enum store_rc store_lmdb_write(struct store *base_s, store_write_fn fn, void *cls, int *result);
void store_lmdb_group_stats(struct store *base_s, struct store_group_stats *out);
/* store.h store_batch_begin() and store_batch_end() on LMDB (STORE_INVALID when group commit is
 * off). */
enum store_rc store_lmdb_batch_begin(struct store *base_s);
enum store_rc store_lmdb_batch_end(struct store *base_s);

/* store_lmdb_log.c: change log and space (operations of the table). */
enum store_rc store_lmdb_change_append(struct store_txn *base_t, struct store_change *c);
enum store_rc store_lmdb_change_last(struct store_txn *base_t, uint64_t *out);
enum store_rc store_lmdb_change_read(struct store_txn *base_t, uint64_t after,
                                     int (*fn)(void *cls, const struct store_change *c), void *cls);
void store_lmdb_headroom(struct store_lmdb *s);
void store_lmdb_maintain(struct store_lmdb *s);
enum store_rc store_lmdb_space_check(struct store_txn *base_t, uint64_t incoming);
enum store_rc store_lmdb_usage_get(struct store_txn *base_t, struct store_usage *out);

/* store_lmdb_kv.c: extra tables (operations of the table). */
enum store_rc store_lmdb_kv_del(struct store_txn *base_t, const char *table, const void *key,
                                size_t klen);
enum store_rc store_lmdb_kv_get(struct store_txn *base_t, const char *table, const void *key,
                                size_t klen, void **val, size_t *vlen);
enum store_rc store_lmdb_kv_put(struct store_txn *base_t, const char *table, const void *key,
                                size_t klen, const void *val, size_t vlen);
enum store_rc
store_lmdb_kv_scan(struct store_txn *base_t, const char *table, const void *prefix, size_t plen,
                   int (*fn)(void *cls, const void *key, size_t klen, const void *val, size_t vlen),
                   void *cls);

#endif
