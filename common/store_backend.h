/* Between the store dispatcher (store.c) and its backends (store_lmdb.c, store_pg.c); nothing
 * above the store includes this file.
 *
 * A backend's handle and transaction start with the common parts below (struct store, struct
 * store_txn), so that store.c finds the operations table of any handle. Every store_* function of
 * store.h that takes a handle or a transaction is one entry of the table; store.c checks nothing
 * a backend would check again, it only dispatches. Shared helpers (the change-record encoding,
 * document keys, option defaults) live in store_util.c so that both backends keep the same bounds
 * and the same bytes; a backend calls store_util.c, never store.c. */
#ifndef XDM_STORE_BACKEND_H
#define XDM_STORE_BACKEND_H

#include "store.h"

#define STORE_DEFAULT_MAP_SIZE (1ull << 30)
#define STORE_DEFAULT_RETENTION 100000u
/* The change log may take an eighth of the map unless configured otherwise. */
#define STORE_DEFAULT_CHANGE_SHARE 8
#define STORE_DEFAULT_HIGH_WATER 90u
#define STORE_MAX_HIGH_WATER 99u
#define STORE_MAX_TABLES 32
#define STORE_TABLE_NAME_MAX 64
/* Longest key (docs: auid \0 tree \0 xui \0 path; generic tables: the caller's bytes): LMDB's
 * compiled-in default, the same bound on every backend so that a key valid on one is valid on
 * the other. */
#define STORE_KEY_MAX 511

#define STORE_CHANGE_V1 1
#define STORE_CHANGE_VERSION 2
#define STORE_CHANGE_HDR (1 + 1 + 8)
#define STORE_CHANGE_FIELDS 7

struct store_ops;

struct store {
    const struct store_ops *ops;
};

struct store_txn {
    const struct store_ops *ops;
};

struct store_ops {
    void (*close)(struct store *s);
    const char *(*instance_id)(const struct store *s);
    enum store_rc (*txn_begin)(struct store *s, bool write, struct store_txn **out);
    enum store_rc (*txn_commit)(struct store_txn *t);
    void (*txn_abort)(struct store_txn *t);
    enum store_rc (*doc_get)(struct store_txn *t, const struct doc_key *k, struct store_doc *out);
    enum store_rc (*doc_put)(struct store_txn *t, const struct doc_key *k, const char *data,
                             size_t len, char etag_out[STORE_ETAG_MAX]);
    enum store_rc (*doc_del)(struct store_txn *t, const struct doc_key *k);
    enum store_rc (*doc_list)(struct store_txn *t, const char *auid, const char *tree,
                              const char *xui, const char *path_prefix,
                              int (*fn)(void *cls, const struct store_doc_view *d), void *cls);
    enum store_rc (*doc_each)(struct store_txn *t,
                              int (*fn)(void *cls, const struct store_doc_view *d), void *cls);
    enum store_rc (*doc_count_user)(struct store_txn *t, const char *xui, uint64_t *out);
    enum store_rc (*user_bytes)(struct store_txn *t, const char *xui, uint64_t *out);
    enum store_rc (*space_check)(struct store_txn *t, uint64_t incoming);
    enum store_rc (*usage_get)(struct store_txn *t, struct store_usage *out);
    enum store_rc (*change_append)(struct store_txn *t, struct store_change *c);
    enum store_rc (*change_read)(struct store_txn *t, uint64_t after,
                                 int (*fn)(void *cls, const struct store_change *c), void *cls);
    enum store_rc (*change_last)(struct store_txn *t, uint64_t *out);
    enum store_rc (*kv_get)(struct store_txn *t, const char *table, const void *key, size_t klen,
                            void **val, size_t *vlen);
    enum store_rc (*kv_put)(struct store_txn *t, const char *table, const void *key, size_t klen,
                            const void *val, size_t vlen);
    enum store_rc (*kv_del)(struct store_txn *t, const char *table, const void *key, size_t klen);
    enum store_rc (*kv_scan)(struct store_txn *t, const char *table, const void *prefix,
                             size_t plen,
                             int (*fn)(void *cls, const void *key, size_t klen, const void *val,
                                       size_t vlen),
                             void *cls);
    void (*group_stats)(struct store *s, struct store_group_stats *out); /* NULL: none */
    /* NULL: store_write() is begin, fn, commit or abort */
    enum store_rc (*write)(struct store *s, store_write_fn fn, void *cls, int *result);
    /* NULL: no batches (store_batch_begin() returns STORE_INVALID) */
    enum store_rc (*batch_begin)(struct store *s);
    enum store_rc (*batch_end)(struct store *s);
    int (*wake_fd)(struct store *s);
    void (*wake_drain)(struct store *s);
};

/* The bounds of store_options with their defaults applied. */
struct store_bounds {
    uint64_t map_size;
    uint64_t retention;
    uint64_t change_max_bytes;
    uint64_t change_max_age;
    unsigned high_water;
};

/* Applies the defaults of store.h; STORE_INVALID for a high_water above STORE_MAX_HIGH_WATER. */
enum store_rc store_bounds_get(const struct store_options *opts, struct store_bounds *out);
/* Checks store_options.tables (names 1..STORE_TABLE_NAME_MAX bytes, at most STORE_MAX_TABLES,
 * distinct, none a built-in table name) and sets *count. */
enum store_rc store_tables_check(const struct store_options *opts, size_t *count);

void store_put_u64(unsigned char *p, uint64_t v);
uint64_t store_get_u64(const unsigned char *p);

/* Bytes of the change record of c (version STORE_CHANGE_VERSION), or 0 when a field is too long
 * (STORE_INVALID for the caller). */
size_t store_change_size(const struct store_change *c);
/* Writes the record of c with time `now` into p (store_change_size(c) bytes). */
void store_change_encode(const struct store_change *c, int64_t now, unsigned char *p);
/* Decodes a record of either version into views into p (which must stay valid while c is used);
 * seq is set by the caller. STORE_ERROR (logged) for a corrupt record. */
enum store_rc store_change_decode(const unsigned char *p, size_t size, struct store_change *c);
/* The time of a record; 0 for a version 1 record, which has none. */
int64_t store_change_time(const unsigned char *p, size_t size);

/* Generates the random instance id (STORE_INSTANCE_HEX hex chars + NUL). */
#define STORE_INSTANCE_HEX 16
enum store_rc store_instance_new(char out[STORE_INSTANCE_HEX + 1]);

/* Whether k names a document: AUID, tree and path non-empty, the xui present ("" in the global
 * tree), and auid \0 tree \0 xui \0 path at most key_max bytes. */
bool store_doc_key_valid(const struct doc_key *k, size_t key_max);
/* Whether a document of k counts towards its user's bytes (the "users" tree, a non-empty xui). */
bool store_key_counted(const struct doc_key *k);
/* store_write() without group commit: fn in a write transaction of its own, committed when it
 * returns 0 and aborted (STORE_OK, *result set) otherwise. */
enum store_rc store_write_alone(struct store *s, store_write_fn fn, void *cls, int *result);

enum store_rc store_lmdb_open(const char *dir, const struct store_options *opts,
                              struct store **out);
enum store_rc store_pg_open(const struct store_options *opts, struct store **out);

#endif
