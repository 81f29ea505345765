/* LMDB backend of the store interface (docs/storage.md).
 *
 * Layout of the environment:
 *   docs     auid \0 tree \0 xui \0 path -> DOC record (below)
 *   meta     "instance" -> 16 hex chars; "etag_counter", "change_seq", "change_bytes" (sum of the
 *            change records' sizes), "quota_ready" (the quota table is complete) -> uint64 BE
 *   changes  seq as uint64 big-endian -> CHANGE record (below)
 *   quota    xui -> uint64 BE, the bytes of that user's documents; no key for a user with none
 *   <extra>  one named database per store_options.tables entry, opaque keys and values
 *
 * DOC record, version 1:
 *   u8 version, u8 etag_len, i64 mtime (BE), u64 data_len (BE), etag bytes, data bytes
 * CHANGE record, version 2 (version 1 is the same without the time, still read):
 *   u8 version, u8 kind, i64 time (BE), then seven fields auid, tree, xui, path, prev_etag,
 *   new_etag, detail, each u32 length (BE) + bytes + one NUL byte. The NUL lets
 *   store_change_read() hand out views straight into the map instead of copying.
 * Integers are big-endian so that seq keys sort numerically under LMDB's memcmp order and the file
 * does not depend on the host.
 *
 * Views handed to callbacks point into the map or into the caller's stack frame; a callback must
 * not write to the store through the same transaction (a write may move the pages it points to). */
#include "store_backend.h"
#include "store_lmdb_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* mkdir -p with mode 0700 for every directory it creates. */
static enum store_rc store_lmdb_mkdirs(const char *dir)
{
    size_t len = strlen(dir);
    if (len == 0 || len >= STORE_DIR_MAX)
        return STORE_INVALID;
    char path[STORE_DIR_MAX];
    memcpy(path, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        char saved = path[i];
        path[i] = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
            log_error("store: mkdir %s: %s", path, strerror(errno));
            return STORE_ERROR;
        }
        path[i] = saved;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        log_error("store: %s is not a directory", dir);
        return STORE_ERROR;
    }
    return STORE_OK;
}

/* Reads the instance id, creating it on the first open of the environment. Runs inside the open
 * write transaction, so two processes opening a new directory at once agree on one id. */
static enum store_rc store_lmdb_instance_init(struct store_lmdb *s, MDB_txn *txn)
{
    MDB_val k = {strlen(STORE_META_INSTANCE), (void *)STORE_META_INSTANCE};
    MDB_val v;
    int rc = mdb_get(txn, s->meta, &k, &v);
    if (rc == MDB_SUCCESS) {
        if (v.mv_size != STORE_INSTANCE_HEX) {
            log_error("store: meta instance has a bad size (%zu)", v.mv_size);
            return STORE_ERROR;
        }
        memcpy(s->instance, v.mv_data, STORE_INSTANCE_HEX);
        s->instance[STORE_INSTANCE_HEX] = '\0';
        return STORE_OK;
    }
    if (rc != MDB_NOTFOUND)
        return store_lmdb_rc_from_mdb(rc, "read instance id");
    if (s->read_only)
        return STORE_NOTFOUND;

    enum store_rc src = store_instance_new(s->instance);
    if (src != STORE_OK)
        return src;
    v.mv_size = STORE_INSTANCE_HEX;
    v.mv_data = s->instance;
    return store_lmdb_rc_from_mdb(mdb_put(txn, s->meta, &k, &v, 0), "write instance id");
}

static enum store_rc store_lmdb_open_tables(struct store_lmdb *s, const struct store_options *opts)
{
    size_t n = 0;
    enum store_rc src = store_tables_check(opts, &n);
    if (src != STORE_OK)
        return src;
    if (n == 0)
        return STORE_OK;
    s->tables = calloc(n, sizeof *s->tables);
    if (s->tables == NULL)
        return STORE_ERROR;
    for (size_t i = 0; i < n; i++) {
        s->tables[i].name = strdup(opts->tables[i]);
        if (s->tables[i].name == NULL)
            return STORE_ERROR;
        s->n_tables = i + 1;
    }
    return STORE_OK;
}

static const struct store_ops store_lmdb_ops;

static void store_lmdb_close(struct store *base_s)
{
    struct store_lmdb *s = (struct store_lmdb *)base_s;
    if (s == NULL)
        return;
    if (s->env != NULL)
        mdb_env_close(s->env);
    store_lmdb_group_destroy(s);
    for (size_t i = 0; i < s->n_tables; i++)
        free(s->tables[i].name);
    free(s->tables);
    free(s);
}

/* Creates and opens s's environment in dir with the map size; s->key_max is set. On failure
 * the caller closes s. */
static enum store_rc store_lmdb_env_open(struct store_lmdb *s, const char *dir, uint64_t map_size)
{
    int rc = mdb_env_create(&s->env);
    if (rc != MDB_SUCCESS) {
        s->env = NULL;
        return store_lmdb_rc_from_mdb(rc, "create environment");
    }
    rc = mdb_env_set_maxdbs(s->env, (MDB_dbi)(STORE_BUILTIN_DBS + s->n_tables));
    if (rc == MDB_SUCCESS && !s->read_only) /* read-only: the size the writers gave the map */
        rc = mdb_env_set_mapsize(s->env, (size_t)map_size);
    if (rc == MDB_SUCCESS)
        rc = mdb_env_set_maxreaders(s->env, STORE_MAX_READERS);
    /* MDB_NOTLS: read transactions are begun and ended by whichever pool thread serves a request,
     * and one thread may hold several. Sync flags stay at LMDB's durable default: a commit has
     * reached the disk when mdb_txn_commit() returns (a 2xx follows the commit: RFC 4825 §8.2 makes
     * a success final). */
    if (rc == MDB_SUCCESS)
        rc = mdb_env_open(s->env, dir, MDB_NOTLS | (s->read_only ? MDB_RDONLY : 0), 0600);
    if (rc == ENOENT && s->read_only)
        return STORE_NOTFOUND;
    if (rc != MDB_SUCCESS) {
        log_error("store: open %s: %s", dir, mdb_strerror(rc));
        return rc == MDB_MAP_FULL ? STORE_FULL : STORE_ERROR;
    }
    int maxkey = mdb_env_get_maxkeysize(s->env);
    s->key_max = maxkey > 0 && maxkey < STORE_KEY_MAX ? (size_t)maxkey : STORE_KEY_MAX;

    /* A process killed while reading leaves its reader slot behind; a stale slot pins old pages
     * and makes the file grow. Clearing them is cheap and safe at every open. */
    int dead = 0;
    mdb_reader_check(s->env, &dead);
    return STORE_OK;
}

/* Opens (a writer: creates) the named databases and the instance id in one transaction. On
 * failure the caller closes s. */
static enum store_rc store_lmdb_open_dbs(struct store_lmdb *s)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, s->read_only ? MDB_RDONLY : 0, &txn);
    if (rc != MDB_SUCCESS)
        return store_lmdb_rc_from_mdb(rc, "begin open transaction");
    unsigned create = s->read_only ? 0 : MDB_CREATE;
    rc = mdb_dbi_open(txn, "docs", create, &s->docs);
    if (rc == MDB_SUCCESS)
        rc = mdb_dbi_open(txn, "meta", create, &s->meta);
    if (rc == MDB_SUCCESS)
        rc = mdb_dbi_open(txn, "changes", create, &s->changes);
    if (rc == MDB_SUCCESS)
        rc = mdb_dbi_open(txn, "quota", create, &s->quota);
    for (size_t i = 0; rc == MDB_SUCCESS && i < s->n_tables; i++)
        rc = mdb_dbi_open(txn, s->tables[i].name, create, &s->tables[i].dbi);
    enum store_rc src;
    if (rc == MDB_NOTFOUND && s->read_only)
        src = STORE_NOTFOUND;
    else
        src = rc == MDB_SUCCESS ? store_lmdb_instance_init(s, txn)
                                : store_lmdb_rc_from_mdb(rc, "open tables");
    if (src != STORE_OK) {
        mdb_txn_abort(txn);
        return src;
    }
    rc = mdb_txn_commit(txn);
    return rc == MDB_SUCCESS ? STORE_OK : store_lmdb_rc_from_mdb(rc, "commit open transaction");
}

enum store_rc store_lmdb_open(const char *dir, const struct store_options *opts, struct store **out)
{
    *out = NULL;
    struct store_bounds b;
    enum store_rc src = store_bounds_get(opts, &b);
    if (src != STORE_OK)
        return src;
    if (dir == NULL)
        return STORE_INVALID;
    struct store_lmdb *s = calloc(1, sizeof *s);
    if (s == NULL)
        return STORE_ERROR;
    s->base.ops = &store_lmdb_ops;
    store_lmdb_group_init(s, opts);
    s->retention = b.retention;
    s->change_max_bytes = b.change_max_bytes;
    s->change_max_age = b.change_max_age;
    s->high_water = b.high_water;

    s->read_only = opts != NULL && opts->read_only;
    src = store_lmdb_open_tables(s, opts);
    struct stat st;
    if (src == STORE_OK && s->read_only)
        src = stat(dir, &st) == 0 && S_ISDIR(st.st_mode) ? STORE_OK : STORE_NOTFOUND;
    else if (src == STORE_OK)
        src = store_lmdb_mkdirs(dir);
    if (src == STORE_OK)
        src = store_lmdb_env_open(s, dir, b.map_size);
    if (src == STORE_OK)
        src = store_lmdb_open_dbs(s);
    if (src != STORE_OK) {
        store_lmdb_close(&s->base);
        return src;
    }
    if (!s->read_only) {
        store_lmdb_headroom(s);
        store_lmdb_maintain(s);
    }
    store_lmdb_group_start(s);
    *out = &s->base;
    return STORE_OK;
}

static const char *store_lmdb_instance_id(const struct store *base_s)
{
    const struct store_lmdb *s = (const struct store_lmdb *)base_s;
    return s->instance;
}

static enum store_rc store_lmdb_txn_begin(struct store *base_s, bool write, struct store_txn **out)
{
    struct store_lmdb *s = (struct store_lmdb *)base_s;
    *out = NULL;
    struct store_lmdb_txn *t = calloc(1, sizeof *t);
    if (t == NULL)
        return STORE_ERROR;
    t->base.ops = s->base.ops;
    t->s = s;
    t->write = write;
    if (write && s->group.on) {
        enum store_rc src = store_lmdb_group_begin(s, t);
        if (src != STORE_OK) {
            free(t);
            return src;
        }
        *out = &t->base;
        return STORE_OK;
    }
    /* A write begin blocks on LMDB's writer lock (shared between processes). A thread that
     * already holds a write transaction must not begin another: it would wait for itself. */
    int rc = mdb_txn_begin(s->env, NULL, write ? 0 : MDB_RDONLY, &t->txn);
    /* A writer in another process grew the map: a read-only opener follows (LMDB: set the map
     * size 0 to adopt the current one). */
    if (rc == MDB_MAP_RESIZED && s->read_only && mdb_env_set_mapsize(s->env, 0) == MDB_SUCCESS)
        rc = mdb_txn_begin(s->env, NULL, write ? 0 : MDB_RDONLY, &t->txn);
    if (rc != MDB_SUCCESS) {
        free(t);
        return store_lmdb_rc_from_mdb(rc,
                                      write ? "begin write transaction" : "begin read transaction");
    }
    *out = &t->base;
    return STORE_OK;
}

static enum store_rc store_lmdb_txn_commit(struct store_txn *base_t)
{
    struct store_lmdb_txn *t = (struct store_lmdb_txn *)base_t;
    if (t->nested) {
        enum store_rc src = store_lmdb_group_commit(t);
        free(t);
        return src;
    }
    int rc = mdb_txn_commit(t->txn);
    free(t);
    return store_lmdb_rc_from_mdb(rc, "commit");
}

static void store_lmdb_txn_abort(struct store_txn *base_t)
{
    struct store_lmdb_txn *t = (struct store_lmdb_txn *)base_t;
    if (t == NULL)
        return;
    if (t->nested)
        store_lmdb_group_abort(t);
    else
        mdb_txn_abort(t->txn);
    free(t);
}

static int store_lmdb_wake_fd(struct store *s)
{
    (void)s;
    return -1; /* no cross-process signal on LMDB: callers poll the change log */
}

static void store_lmdb_wake_drain(struct store *s)
{
    (void)s;
}

static const struct store_ops store_lmdb_ops = {
    .close = store_lmdb_close,
    .instance_id = store_lmdb_instance_id,
    .txn_begin = store_lmdb_txn_begin,
    .txn_commit = store_lmdb_txn_commit,
    .txn_abort = store_lmdb_txn_abort,
    .doc_get = store_lmdb_doc_get,
    .doc_put = store_lmdb_doc_put,
    .doc_del = store_lmdb_doc_del,
    .doc_list = store_lmdb_doc_list,
    .doc_each = store_lmdb_doc_each,
    .doc_count_user = store_lmdb_doc_count_user,
    .user_bytes = store_lmdb_user_bytes,
    .space_check = store_lmdb_space_check,
    .usage_get = store_lmdb_usage_get,
    .change_append = store_lmdb_change_append,
    .change_read = store_lmdb_change_read,
    .change_last = store_lmdb_change_last,
    .kv_get = store_lmdb_kv_get,
    .kv_put = store_lmdb_kv_put,
    .kv_del = store_lmdb_kv_del,
    .kv_scan = store_lmdb_kv_scan,
    .group_stats = store_lmdb_group_stats,
    .write = store_lmdb_write,
    .batch_begin = store_lmdb_batch_begin,
    .batch_end = store_lmdb_batch_end,
    .wake_fd = store_lmdb_wake_fd,
    .wake_drain = store_lmdb_wake_drain,
};
