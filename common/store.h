/* The one storage interface (docs/storage.md). Everything above it speaks to the database only
 * through these functions; no backend type ever leaves the store (store.c dispatches to
 * store_lmdb.c or store_pg.c): every value handed out is a copy the caller owns, or a view valid
 * only inside a callback. The engine, the usages, the notifier and xdmctl do not know which backend
 * runs.
 *
 * Two backends (store_options.backend):
 *   LMDB        one environment in one directory. Several processes may open the same directory
 *               at once (the servers and xdmctl); LMDB serialises writers.
 *   PostgreSQL  one database (or schema) named by a libpq connection string, shared by any number
 *               of processes on any hosts. Write transactions take one transaction-scoped advisory
 *               lock first, so that, as on LMDB, one writer runs at a time across all of them:
 *               what a writer reads (an ETag it compares with If-Match) is still true when it
 *               commits, and the counters below are assigned in commit order. Read transactions
 *               are REPEATABLE READ READ ONLY: one snapshot.
 * A write transaction is committed durably before store_txn_commit() returns (LMDB: fsync;
 * PostgreSQL: the commit record flushed, synchronous_commit as configured on the server), so a
 * 2xx may be sent after it.
 *
 * Tables always present:
 *   docs     key auid \0 tree \0 xui \0 path -> record (etag, mtime, bytes)
 *   meta     instance id, ETag counter, change-log sequence and size
 *   changes  seq -> change record
 *   quota    xui -> bytes of that user's documents (the "users" tree, every AUID)
 * plus the extra named tables given to store_open() (generic key/value, e.g. "users", "subs").
 * Listings are in key order, the byte order of the keys on both backends.
 *
 * Change-log order: the sequence number comes from a counter in meta, incremented by
 * store_change_append() inside the writing transaction while it holds the writer lock (LMDB's
 * writer mutex; PostgreSQL's advisory lock, held until the commit). The next writer can only take
 * the lock after that commit, so sequence numbers are gap-free at commit and follow commit order
 * across every process writing to the store; pruning removes only the oldest.
 *
 * Bounds (invariants after every committed write):
 *   - the change log holds at most change_retention records and about change_max_bytes bytes,
 *     none older than change_max_age (the newest record may exceed a bound on its own). Records
 *     are pruned oldest first, before a new one is appended, in the appending transaction;
 *     store_open() prunes too (always keeping the newest record, so a reader that lags behind
 *     still sees the gap in the sequence numbers).
 *   - quota holds, for every user, exactly the sum of the lengths of its documents: kept by
 *     store_doc_put() and store_doc_del() in the writing transaction, built from the documents
 *     on the first write to a store made before the table existed.
 *   - LMDB: store_space_check() refuses writes that would take the map's used pages above the
 *     high-water mark, so that the pages above it remain for deletions (which need free pages
 *     too). PostgreSQL has no map: the check always passes (the database's disk is watched
 *     outside the store).
 *   - PostgreSQL: at most pg_pool_size connections per handle (plus one listener for
 *     store_wake_fd()); a transaction waits at most pg_timeout seconds for a connection and each
 *     statement at most pg_timeout seconds, else STORE_UNAVAILABLE. A broken connection is
 *     dropped and made again on its next use (a multi-host conninfo with
 *     target_session_attrs=read-write then finds a promoted standby).
 *
 * Group commit (LMDB; group_max_requests > 1): the write transactions of concurrent threads share
 * one durable commit. The first writer (the leader) begins LMDB's top-level write transaction;
 * every write transaction (the leader's too) is a transaction nested in it, run one at a time, so
 * a write that fails or is aborted leaves the others intact. store_txn_commit() of a nested
 * transaction merges it into the shared one and returns only after the shared one is on disk;
 * the leader commits it as soon as no other thread is waiting to join or the group reached
 * group_max_requests requests or group_max_bytes bytes, so a writer alone does not wait. Readers
 * see a group's writes when it is committed. Whatever a write transaction does (documents,
 * change log, extra tables) belongs to that transaction alone, committed or dropped as a whole.
 *
 * Thread-safety: a struct store is shared by all threads; a transaction belongs to the thread that
 * began it. At most one write transaction is open at a time (others wait in store_txn_begin; on
 * PostgreSQL at the lock, up to pg_timeout). Every function returns an enum store_rc; a failed
 * transaction must be aborted, never continued.
 */
#ifndef XDM_STORE_H
#define XDM_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_ETAG_MAX 48

enum store_rc {
    STORE_OK = 0,
    STORE_NOTFOUND,    /* no such key */
    STORE_FULL,        /* the map size or its high-water mark is reached */
    STORE_INVALID,     /* bad argument (e.g. key too long) */
    STORE_ERROR,       /* I/O or database failure; logged by the store */
    STORE_UNAVAILABLE, /* PostgreSQL: the database did not answer within pg_timeout or the
                          connection was lost; logged; a retry later may succeed (503) */
};

struct store;
struct store_txn;

/* The explanation given to a client whose write STORE_FULL refused (text/plain of a 507). */
#define STORE_FULL_TEXT                                                                            \
    "Insufficient storage: the document store of this server is full. Deleting documents frees "   \
    "space (DELETE is still accepted); other writes are refused until then."

enum store_backend { STORE_BACKEND_LMDB = 0, STORE_BACKEND_POSTGRESQL };

#define STORE_PG_DEFAULT_POOL 4
#define STORE_PG_DEFAULT_TIMEOUT 5
#define STORE_PG_MAX_POOL 256
#define STORE_PG_MAX_TIMEOUT 3600

struct store_options {
    enum store_backend backend; /* LMDB (default): dir names the environment; PostgreSQL: dir
                                   is not used */
    const char *pg_conninfo;    /* PostgreSQL: libpq connection string (several hosts and
                                   target_session_attrs allowed); required */
    unsigned pg_pool_size;      /* PostgreSQL: connections; 0 = STORE_PG_DEFAULT_POOL; at most
                                   STORE_PG_MAX_POOL */
    unsigned pg_timeout;        /* PostgreSQL: seconds a transaction waits for a connection and a
                                   statement runs at most; 0 = STORE_PG_DEFAULT_TIMEOUT; at most
                                   STORE_PG_MAX_TIMEOUT */
    uint64_t map_size;          /* bytes; 0 = default (1 GiB) */
    uint64_t change_retention;  /* change records kept; older ones are pruned; 0 = default 100000 */
    uint64_t change_max_bytes;  /* bytes of change records kept; 0 = map_size / 8 */
    uint64_t change_max_age;    /* seconds a change record is kept; 0 = no age bound */
    unsigned high_water;        /* percent of the map writes may fill (store_space_check());
                                   0 = default 90; at most 99 */
    const char *const *tables;  /* NULL-terminated extra table names, or NULL */
    unsigned group_max_requests; /* LMDB: write transactions sharing one commit; 0 = default
                                    STORE_GROUP_DEFAULT_REQUESTS; 1 = each commits alone; at
                                    most STORE_GROUP_MAX_REQUESTS */
    uint64_t group_max_bytes;    /* LMDB: bytes written by one group before it commits; 0 =
                                    STORE_GROUP_DEFAULT_BYTES */
    bool read_only;              /* open an existing environment for reading only: nothing is
                                    created, pruned or grown (for xdmctl while the servers run);
                                    STORE_NOTFOUND when dir or one of the tables is missing, and
                                    write transactions fail */
};

#define STORE_GROUP_DEFAULT_REQUESTS 64u
#define STORE_GROUP_MAX_REQUESTS 1024u
#define STORE_GROUP_DEFAULT_BYTES (8ull << 20)

/* Group commits so far: a histogram of the write transactions per durable commit (bucket i counts
 * the commits of at most STORE_GROUP_BUCKET(i) transactions; the last bucket counts the rest). */
#define STORE_GROUP_BUCKETS 11
#define STORE_GROUP_BUCKET(i) (1u << (i))
struct store_group_stats {
    uint64_t commits;                          /* durable commits of write transactions */
    uint64_t requests;                         /* write transactions committed by them */
    uint64_t buckets[STORE_GROUP_BUCKETS + 1]; /* not cumulative; the last: above 1024 */
};

/* Space used by a store, for the high-water check, logs and tests. */
struct store_usage {
    uint64_t map_bytes;      /* size of the map (PostgreSQL: the database's size on disk) */
    uint64_t used_bytes;     /* pages in use (not on LMDB's free list) times the page size
                                (PostgreSQL: the database's size, pg_database_size()) */
    uint64_t limit_bytes;    /* the high-water mark: map_bytes * high_water / 100 (PostgreSQL:
                                map_bytes, as there is no mark) */
    uint64_t change_records; /* records in the change log */
    uint64_t change_bytes;   /* their total size */
    uint64_t documents;      /* documents stored (both trees) */
    uint64_t users;          /* users with at least one document (entries of the quota table) */
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
    int64_t time; /* seconds since the epoch, set by store_change_append(); 0 = unknown (a record
                     written before records carried a time) */
    enum store_change_kind kind;
    struct doc_key key;
    const char *prev_etag;
    const char *new_etag;
    const char *detail;
    size_t detail_len;
    /* Optional charging record (docs/charging.md), queued by store_change_append() in the same
     * transaction, with store_charge_append(charge_queue, charge, charge_len, charge_max);
     * charge NULL: none. charge_seq (out) is its queue number, 0 when it was not queued;
     * charge_full (out) is set when the queue held charge_max records: the change is still
     * appended (a full queue never refuses a write) and the caller logs and counts the loss. */
    const char *charge_queue;
    const void *charge;
    size_t charge_len;
    uint64_t charge_max;
    uint64_t charge_seq;
    bool charge_full;
};

/* LMDB: opens (creating when missing, with mode 0700) the environment in dir. PostgreSQL:
 * connects to opts->pg_conninfo and creates or migrates the schema (under an advisory lock, so
 * that instances starting together do not race); read_only creates nothing (STORE_NOTFOUND when
 * the schema is missing). STORE_UNAVAILABLE when the database does not answer within pg_timeout,
 * STORE_ERROR (logged) when its schema is newer than this program's. */
enum store_rc store_open(const char *dir, const struct store_options *opts, struct store **out);
void store_close(struct store *s);
/* Random identifier made when the environment was created (hex). Borrowed. */
const char *store_instance_id(const struct store *s);
const char *store_strerror(enum store_rc rc);

enum store_rc store_txn_begin(struct store *s, bool write, struct store_txn **out);

/* A write transaction as one call: runs fn(cls, t) in a write transaction of its own; when fn
 * returns 0 the transaction is committed (durably, before this returns), otherwise it is
 * aborted. *result receives fn's return value. Returns STORE_OK when fn ran and its transaction
 * was committed or aborted as fn asked; otherwise the store's failure (fn's writes are then not
 * committed; *result still tells what fn returned, or 0 when it did not run).
 * fn must not commit or abort t, must not begin another write transaction, and may run on
 * another thread than the caller's (the leader of a group commit runs the queued functions of
 * the others back to back, so a group costs no thread switch per member): it may use only what
 * cls points to, and must not parse untrusted input (do that before the call). */
typedef int (*store_write_fn)(void *cls, struct store_txn *t);
enum store_rc store_write(struct store *s, store_write_fn fn, void *cls, int *result);
/* Batches (LMDB with group commit on; other stores return STORE_INVALID and the caller writes
 * as usual): store_batch_begin() opens a shared write transaction led by the calling thread (it
 * waits while another thread's group is open or committing). Until store_batch_end(), every
 * store_write() and write store_txn_begin()/store_txn_commit() of that thread runs in its own
 * transaction nested in the shared one and returns as soon as it is merged, without waiting
 * for the sync: its STORE_OK says only that it is in the batch, and what it wrote is durable
 * (and visible to readers) only once store_batch_end() returned STORE_OK. Other threads' write
 * transactions may join the batch as members of the group, as they join any group.
 * store_batch_end() commits the shared transaction with one sync and returns its result: when
 * it fails, none of the batch's writes is stored. A thread between the two must not wait for
 * another thread's write (it would wait for itself). Thread-safe; one batch at a time. */
enum store_rc store_batch_begin(struct store *s);
enum store_rc store_batch_end(struct store *s);
/* Commits (durably for write transactions) and frees the transaction, also on failure. */
enum store_rc store_txn_commit(struct store_txn *t);
void store_txn_abort(struct store_txn *t);

/* The group-commit histogram so far (all zero on PostgreSQL and while group commit is off).
 * Thread-safe. */
void store_group_stats(struct store *s, struct store_group_stats *out);

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
/* Lists every document of the store (all AUIDs, trees and users), in key order; fn as above. */
enum store_rc store_doc_each(struct store_txn *t,
                             int (*fn)(void *cls, const struct store_doc_view *d), void *cls);
/* Counts the documents of one user (all AUIDs), for quotas. */
enum store_rc store_doc_count_user(struct store_txn *t, const char *xui, uint64_t *out);
/* Sum of the lengths of one user's documents (all AUIDs), for quotas: O(1) from the quota table
 * (a scan of the user's documents in a read transaction of a store whose table is not built yet).
 */
enum store_rc store_user_bytes(struct store_txn *t, const char *xui, uint64_t *out);

/* Whether a write that adds about incoming bytes keeps the map's used pages at or below the
 * high-water mark: STORE_OK, or STORE_FULL (nothing written; the caller refuses the write).
 * Call it before writing in a write transaction; deletions skip it, so that the pages above the
 * mark are left for them. */
enum store_rc store_space_check(struct store_txn *t, uint64_t incoming);
enum store_rc store_usage_get(struct store_txn *t, struct store_usage *out);

/* Change log. Appending assigns c->seq and c->time (written back). First, in the same
 * transaction, the oldest records go while the log with the new record would exceed a bound of
 * store_options. */
enum store_rc store_change_append(struct store_txn *t, struct store_change *c);
/* Calls fn for every record with seq > after, in order, until fn returns non-zero. */
enum store_rc store_change_read(struct store_txn *t, uint64_t after,
                                int (*fn)(void *cls, const struct store_change *c), void *cls);
/* Sequence of the newest record (0 when the log is empty). */
enum store_rc store_change_last(struct store_txn *t, uint64_t *out);

/* Cross-process wake-up. store_wake_fd() returns a descriptor that becomes readable after a
 * change-log record was committed by any process (PostgreSQL: a listener connection that LISTENs
 * to the channel the appending transaction NOTIFYs, delivered at its commit), or -1 when there is
 * none (LMDB; or the listener cannot connect right now): the caller then polls the change log.
 * After the descriptor became readable, call store_wake_drain() (which consumes the wake-ups and
 * reconnects a lost listener), then read the change log — it is the truth, a wake-up only says
 * "look"; wake-ups lost while the listener was disconnected are covered by that read. The
 * descriptor may change after store_wake_drain(): call store_wake_fd() again each time. Both are
 * for one thread at a time (the notifier's); neither blocks longer than pg_timeout. */
int store_wake_fd(struct store *s);
void store_wake_drain(struct store *s);

/* Online backup: copies the environment in src_dir into the existing directory dst_dir (which
 * must hold no data.mdb; only data.mdb is made there): every table, read in one read transaction,
 * so the copy is exactly the state of one commit while other processes keep writing, and written
 * in key order with MDB_APPEND, so its pages are full (a compacted copy whatever order the source
 * was written in; free pages are left out). Opens src_dir read-only and creates nothing there
 * (STORE_NOTFOUND when it holds no data.mdb). The copy is fsync'ed before this returns. */
enum store_rc store_copy(const char *src_dir, const char *dst_dir);
/* (store_copy() and store_in_use() are LMDB operations on directories.) */
/* Whether a process has the environment in dir open (it holds LMDB's lock on dir/lock.mdb):
 * STORE_OK and *out set, STORE_ERROR when the lock cannot be tested. */
enum store_rc store_in_use(const char *dir, bool *out);

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

/* The charging queue (docs/charging.md): records waiting for their delivery to a charging
 * function or a CDR file, kept in the extra table STORE_CHARGE_TABLE, which the caller names in
 * store_options.tables (STORE_INVALID from these functions otherwise). Records are opaque bytes
 * above the store. Each record is in one named queue (the serving node that wrote it, so that
 * several instances of a role over one store each deliver their own records); numbers come from
 * one counter of the table, strictly increasing and never reused, also across restarts and
 * queues. A record is queued in the write transaction of the change it describes (see struct
 * store_change) or in a write transaction of its own; it leaves the queue only with
 * store_charge_del(), after its delivery. Queue names are 1..STORE_CHARGE_QUEUE_MAX bytes
 * without NUL. */
#define STORE_CHARGE_TABLE "charging"
#define STORE_CHARGE_QUEUE_MAX 64
/* Appends a record to queue in the write transaction t and sets *seq_out (may be NULL) to its
 * number. STORE_FULL (nothing written, t still usable) when the queue already holds max records
 * (max 0: unbounded). */
enum store_rc store_charge_append(struct store_txn *t, const char *queue, const void *rec,
                                  size_t len, uint64_t max, uint64_t *seq_out);
/* Calls fn for the oldest records of queue, in number order, at most max_records of them, until
 * fn returns non-zero. Views are valid only inside fn. */
enum store_rc store_charge_read(struct store_txn *t, const char *queue, size_t max_records,
                                int (*fn)(void *cls, uint64_t seq, const void *rec, size_t len),
                                void *cls);
/* Removes record seq of queue (write transaction); STORE_NOTFOUND when it is not there (already
 * removed, e.g. by an earlier delivery). */
enum store_rc store_charge_del(struct store_txn *t, const char *queue, uint64_t seq);
/* Records in queue (O(1): a counter kept with the records). */
enum store_rc store_charge_count(struct store_txn *t, const char *queue, uint64_t *out);
/* Calls fn for every queue that ever held a record, in name order, with its record count (0 for
 * an emptied queue), until fn returns non-zero. queue is NUL-terminated and valid only inside fn.
 */
enum store_rc store_charge_queues(struct store_txn *t,
                                  int (*fn)(void *cls, const char *queue, uint64_t count),
                                  void *cls);

#endif
