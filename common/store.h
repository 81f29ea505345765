/* The one storage interface (DESIGN §4). Everything above it speaks to LMDB only through these
 * functions; MDB_val data never leaves store.c (it dies with its transaction): every value handed
 * out is a copy the caller owns, or a view valid only inside a callback.
 *
 * One store is one LMDB environment in one directory. Several processes may open the same
 * directory at once (the servers and xdmctl); LMDB serialises writers. A write transaction is
 * committed durably (fsync) before store_txn_commit() returns, so a 2xx may be sent after it.
 *
 * Tables always present:
 *   docs     key auid \0 tree \0 xui \0 path -> record (etag, mtime, bytes)
 *   meta     instance id, ETag counter, change-log sequence
 *   changes  seq (8 bytes big-endian) -> change record
 * plus the extra named tables given to store_open() (generic key/value, e.g. "users", "subs").
 *
 * Thread-safety: a struct store is shared by all threads; a transaction belongs to the thread that
 * began it. At most one write transaction is open at a time (others wait in store_txn_begin).
 * Every function returns an enum store_rc; a failed transaction must be aborted, never continued.
 */
#ifndef XDM_STORE_H
#define XDM_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_ETAG_MAX 48

enum store_rc {
    STORE_OK = 0,
    STORE_NOTFOUND, /* no such key */
    STORE_FULL,     /* the map size or a configured bound is reached */
    STORE_INVALID,  /* bad argument (e.g. key too long) */
    STORE_ERROR,    /* I/O or LMDB failure; logged by store.c */
};

struct store;
struct store_txn;

struct store_options {
    uint64_t map_size;         /* bytes; 0 = default (1 GiB) */
    uint64_t change_retention; /* change records kept; older ones are pruned; 0 = default 100000 */
    const char *const *tables; /* NULL-terminated extra table names, or NULL */
};

/* The key of a document. xui is "" for the global tree; tree is "global" or "users". */
struct doc_key {
    const char *auid;
    const char *tree;
    const char *xui;
    const char *path;
};

struct store_doc {
    char etag[STORE_ETAG_MAX]; /* opaque, without quotes */
    int64_t mtime;             /* seconds since the epoch of the last change */
    char *data;                /* owned copy, NUL-terminated; free with store_doc_release() */
    size_t len;
};

/* Borrowed view of one document during a listing (valid only inside the callback). */
struct store_doc_view {
    struct doc_key key;
    const char *etag;
    int64_t mtime;
    size_t len;
};

enum store_change_kind { STORE_CHANGE_PUT, STORE_CHANGE_DELETE };

/* One change-log record. When read back, pointers are borrowed views valid only inside the
 * callback. prev_etag is "" for a created document, new_etag "" for a deleted one. detail is opaque
 * bytes above the store (e.g. xcap-diff patch operations), may be empty. */
struct store_change {
    uint64_t seq; /* assigned by store_change_append(); strictly increasing, never reused */
    enum store_change_kind kind;
    struct doc_key key;
    const char *prev_etag;
    const char *new_etag;
    const char *detail;
    size_t detail_len;
};

/* Opens (creating when missing, with mode 0700) the environment in dir. */
enum store_rc store_open(const char *dir, const struct store_options *opts, struct store **out);
void store_close(struct store *s);
/* Random identifier made when the environment was created (hex). Borrowed. */
const char *store_instance_id(const struct store *s);
const char *store_strerror(enum store_rc rc);

enum store_rc store_txn_begin(struct store *s, bool write, struct store_txn **out);
/* Commits (durably for write transactions) and frees the transaction, also on failure. */
enum store_rc store_txn_commit(struct store_txn *t);
void store_txn_abort(struct store_txn *t);

/* Documents. store_doc_put() assigns a new ETag that was never used in this environment (counter
 * in meta, combined with the instance id) and writes it to etag_out; mtime is now. */
enum store_rc store_doc_get(struct store_txn *t, const struct doc_key *k, struct store_doc *out);
enum store_rc store_doc_put(struct store_txn *t, const struct doc_key *k, const char *data,
                            size_t len, char etag_out[STORE_ETAG_MAX]);
enum store_rc store_doc_del(struct store_txn *t, const struct doc_key *k);
void store_doc_release(struct store_doc *d);

/* Lists documents of (auid, tree, xui) whose path starts with path_prefix ("" = all), in key
 * order. auid NULL lists every AUID of that tree/xui (tree and xui then still filter). fn returns
 * 0 to go on, non-zero to stop (that value is returned as STORE_OK). */
enum store_rc store_doc_list(struct store_txn *t, const char *auid, const char *tree,
                             const char *xui, const char *path_prefix,
                             int (*fn)(void *cls, const struct store_doc_view *d), void *cls);
/* Counts the documents of one user (all AUIDs), for quotas. */
enum store_rc store_doc_count_user(struct store_txn *t, const char *xui, uint64_t *out);

/* Change log. Appending assigns c->seq (written back). Records older than the retention bound are
 * pruned in the same transaction. */
enum store_rc store_change_append(struct store_txn *t, struct store_change *c);
/* Calls fn for every record with seq > after, in order, until fn returns non-zero. */
enum store_rc store_change_read(struct store_txn *t, uint64_t after,
                                int (*fn)(void *cls, const struct store_change *c), void *cls);
/* Sequence of the newest record (0 when the log is empty). */
enum store_rc store_change_last(struct store_txn *t, uint64_t *out);

/* Generic tables named in store_options.tables. Values returned are malloc'd copies with an
 * extra NUL byte after vlen bytes (free with free()). */
enum store_rc store_kv_get(struct store_txn *t, const char *table, const void *key, size_t klen,
                           void **val, size_t *vlen);
enum store_rc store_kv_put(struct store_txn *t, const char *table, const void *key, size_t klen,
                           const void *val, size_t vlen);
enum store_rc store_kv_del(struct store_txn *t, const char *table, const void *key, size_t klen);
/* Calls fn for each entry whose key starts with prefix (plen 0 = all), in key order. Views are
 * valid only inside fn. fn returns 0 to go on. */
enum store_rc store_kv_scan(struct store_txn *t, const char *table, const void *prefix, size_t plen,
                            int (*fn)(void *cls, const void *key, size_t klen, const void *val,
                                      size_t vlen),
                            void *cls);

#endif
