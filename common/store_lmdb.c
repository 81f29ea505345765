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
};

struct store_lmdb_txn {
    struct store_txn base;
    struct store_lmdb *s;
    MDB_txn *txn;
    bool write;
};

/* A docs key built on the stack; STORE_KEY_MAX bounds it. */
struct store_key {
    char bytes[STORE_KEY_MAX + 1];
    size_t len;
};

/* Maps an LMDB result to a store_rc. Expected outcomes (not found, map full) are returned
 * silently: the caller answers them (404, 503). Anything else is unexpected and logged here, the
 * one place that still knows the LMDB error text. */
static enum store_rc store_rc_from_mdb(int rc, const char *what)
{
    switch (rc) {
    case MDB_SUCCESS:
        return STORE_OK;
    case MDB_NOTFOUND:
        return STORE_NOTFOUND;
    case MDB_MAP_FULL:
    case MDB_TXN_FULL:
        return STORE_FULL;
    case MDB_READERS_FULL:
        /* Not a full store: the client is not at fault and a retry may succeed (503). */
        log_error("store: %s: %s (more concurrent readers than STORE_MAX_READERS)", what,
                  mdb_strerror(rc));
        return STORE_ERROR;
    case MDB_BAD_VALSIZE:
        return STORE_INVALID;
    default:
        log_error("store: %s: %s", what, mdb_strerror(rc));
        return STORE_ERROR;
    }
}

/* mkdir -p with mode 0700 for every directory it creates. */
static enum store_rc store_mkdirs(const char *dir)
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

/* Reads an 8-byte counter of table dbi ("what" names the table in messages): STORE_NOTFOUND
 * (*out = 0) when it was never written. */
static enum store_rc store_find_u64(MDB_txn *txn, MDB_dbi dbi, const char *key, const char *what,
                                    uint64_t *out)
{
    *out = 0;
    MDB_val k = {strlen(key), (void *)key};
    MDB_val v;
    int rc = mdb_get(txn, dbi, &k, &v);
    if (rc != MDB_SUCCESS)
        return store_rc_from_mdb(rc, what);
    if (v.mv_size != 8) {
        log_error("store: %s record %s has a bad size (%zu)", what, key, v.mv_size);
        return STORE_ERROR;
    }
    *out = store_get_u64(v.mv_data);
    return STORE_OK;
}

/* Reads a uint64 meta value: STORE_NOTFOUND (*out = 0) when it was never written. */
static enum store_rc store_meta_find_u64(MDB_txn *txn, MDB_dbi meta, const char *name,
                                         uint64_t *out)
{
    return store_find_u64(txn, meta, name, "meta", out);
}

/* Reads a uint64 meta value; 0 when it was never written. */
static enum store_rc store_meta_get_u64(MDB_txn *txn, MDB_dbi meta, const char *name, uint64_t *out)
{
    enum store_rc src = store_meta_find_u64(txn, meta, name, out);
    return src == STORE_NOTFOUND ? STORE_OK : src;
}

static enum store_rc store_meta_put_u64(MDB_txn *txn, MDB_dbi meta, const char *name,
                                        uint64_t value)
{
    unsigned char bytes[8];
    store_put_u64(bytes, value);
    MDB_val k = {strlen(name), (void *)name};
    MDB_val v = {sizeof bytes, bytes};
    return store_rc_from_mdb(mdb_put(txn, meta, &k, &v, 0), "write meta");
}

/* Reads the instance id, creating it on the first open of the environment. Runs inside the open
 * write transaction, so two processes opening a new directory at once agree on one id. */
static enum store_rc store_instance_init(struct store_lmdb *s, MDB_txn *txn)
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
        return store_rc_from_mdb(rc, "read instance id");
    if (s->read_only)
        return STORE_NOTFOUND;

    enum store_rc src = store_instance_new(s->instance);
    if (src != STORE_OK)
        return src;
    v.mv_size = STORE_INSTANCE_HEX;
    v.mv_data = s->instance;
    return store_rc_from_mdb(mdb_put(txn, s->meta, &k, &v, 0), "write instance id");
}

static enum store_rc store_open_tables(struct store_lmdb *s, const struct store_options *opts)
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
static void store_headroom(struct store_lmdb *s);
static void store_maintain(struct store_lmdb *s);

static void lmdb_close(struct store *base_s)
{
    struct store_lmdb *s = (struct store_lmdb *)base_s;
    if (s == NULL)
        return;
    if (s->env != NULL)
        mdb_env_close(s->env);
    for (size_t i = 0; i < s->n_tables; i++)
        free(s->tables[i].name);
    free(s->tables);
    free(s);
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
    s->retention = b.retention;
    uint64_t map_size = b.map_size;
    s->change_max_bytes = b.change_max_bytes;
    s->change_max_age = b.change_max_age;
    s->high_water = b.high_water;

    s->read_only = opts != NULL && opts->read_only;
    src = store_open_tables(s, opts);
    struct stat st;
    if (src == STORE_OK && s->read_only)
        src = stat(dir, &st) == 0 && S_ISDIR(st.st_mode) ? STORE_OK : STORE_NOTFOUND;
    else if (src == STORE_OK)
        src = store_mkdirs(dir);
    if (src != STORE_OK) {
        lmdb_close(&s->base);
        return src;
    }

    int rc = mdb_env_create(&s->env);
    if (rc != MDB_SUCCESS) {
        s->env = NULL;
        lmdb_close(&s->base);
        return store_rc_from_mdb(rc, "create environment");
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
    if (rc == ENOENT && s->read_only) {
        lmdb_close(&s->base);
        return STORE_NOTFOUND;
    }
    if (rc != MDB_SUCCESS) {
        log_error("store: open %s: %s", dir, mdb_strerror(rc));
        lmdb_close(&s->base);
        return rc == MDB_MAP_FULL ? STORE_FULL : STORE_ERROR;
    }
    int maxkey = mdb_env_get_maxkeysize(s->env);
    s->key_max = maxkey > 0 && maxkey < STORE_KEY_MAX ? (size_t)maxkey : STORE_KEY_MAX;

    /* A process killed while reading leaves its reader slot behind; a stale slot pins old pages
     * and makes the file grow. Clearing them is cheap and safe at every open. */
    int dead = 0;
    mdb_reader_check(s->env, &dead);

    MDB_txn *txn;
    rc = mdb_txn_begin(s->env, NULL, s->read_only ? MDB_RDONLY : 0, &txn);
    if (rc != MDB_SUCCESS) {
        src = store_rc_from_mdb(rc, "begin open transaction");
        lmdb_close(&s->base);
        return src;
    }
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
    if (rc == MDB_NOTFOUND && s->read_only)
        src = STORE_NOTFOUND;
    else
        src =
            rc == MDB_SUCCESS ? store_instance_init(s, txn) : store_rc_from_mdb(rc, "open tables");
    if (src != STORE_OK) {
        mdb_txn_abort(txn);
        lmdb_close(&s->base);
        return src;
    }
    rc = mdb_txn_commit(txn);
    if (rc != MDB_SUCCESS) {
        src = store_rc_from_mdb(rc, "commit open transaction");
        lmdb_close(&s->base);
        return src;
    }
    if (!s->read_only) {
        store_headroom(s);
        store_maintain(s);
    }
    *out = &s->base;
    return STORE_OK;
}

static const char *lmdb_instance_id(const struct store *base_s)
{
    const struct store_lmdb *s = (const struct store_lmdb *)base_s;
    return s->instance;
}

static enum store_rc lmdb_txn_begin(struct store *base_s, bool write, struct store_txn **out)
{
    struct store_lmdb *s = (struct store_lmdb *)base_s;
    *out = NULL;
    struct store_lmdb_txn *t = calloc(1, sizeof *t);
    if (t == NULL)
        return STORE_ERROR;
    /* A write begin blocks on LMDB's writer lock (shared between processes). A thread that
     * already holds a write transaction must not begin another: it would wait for itself. */
    int rc = mdb_txn_begin(s->env, NULL, write ? 0 : MDB_RDONLY, &t->txn);
    /* A writer in another process grew the map: a read-only opener follows (LMDB: set the map
     * size 0 to adopt the current one). */
    if (rc == MDB_MAP_RESIZED && s->read_only && mdb_env_set_mapsize(s->env, 0) == MDB_SUCCESS)
        rc = mdb_txn_begin(s->env, NULL, write ? 0 : MDB_RDONLY, &t->txn);
    if (rc != MDB_SUCCESS) {
        free(t);
        return store_rc_from_mdb(rc, write ? "begin write transaction" : "begin read transaction");
    }
    t->base.ops = s->base.ops;
    t->s = s;
    t->write = write;
    *out = &t->base;
    return STORE_OK;
}

static enum store_rc lmdb_txn_commit(struct store_txn *base_t)
{
    struct store_lmdb_txn *t = (struct store_lmdb_txn *)base_t;
    int rc = mdb_txn_commit(t->txn);
    free(t);
    return store_rc_from_mdb(rc, "commit");
}

static void lmdb_txn_abort(struct store_txn *base_t)
{
    struct store_lmdb_txn *t = (struct store_lmdb_txn *)base_t;
    if (t == NULL)
        return;
    mdb_txn_abort(t->txn);
    free(t);
}

static bool store_key_append(struct store_key *k, size_t max, const char *part, bool nul)
{
    size_t len = strlen(part);
    if (len > max || k->len > max - len - (nul ? 1 : 0))
        return false;
    memcpy(k->bytes + k->len, part, len);
    k->len += len;
    if (nul)
        k->bytes[k->len++] = '\0';
    return true;
}

/* Builds auid \0 tree \0 xui \0 last. Components are C strings, so none contains a NUL and the
 * encoding is unambiguous (RFC 4825 §6). */
static enum store_rc store_key_build(const struct store_lmdb *s, struct store_key *k,
                                     const char *auid, const char *tree, const char *xui,
                                     const char *last)
{
    if (auid == NULL || tree == NULL || xui == NULL || last == NULL)
        return STORE_INVALID;
    k->len = 0;
    if (!store_key_append(k, s->key_max, auid, true) ||
        !store_key_append(k, s->key_max, tree, true) ||
        !store_key_append(k, s->key_max, xui, true) ||
        !store_key_append(k, s->key_max, last, false))
        return STORE_INVALID;
    return STORE_OK;
}

/* A document key needs an AUID, a tree and a document path; the xui is "" in the global tree. */
static enum store_rc store_doc_key(const struct store_lmdb *s, struct store_key *out,
                                   const struct doc_key *k)
{
    if (k == NULL || k->auid == NULL || k->auid[0] == '\0' || k->tree == NULL ||
        k->tree[0] == '\0' || k->path == NULL || k->path[0] == '\0')
        return STORE_INVALID;
    return store_key_build(s, out, k->auid, k->tree, k->xui, k->path);
}

/* Splits a docs key copied into buf (k->len + 1 bytes) into its four components. */
static bool store_key_split(char *buf, size_t len, struct doc_key *out)
{
    const char *parts[4];
    size_t n = 0;
    parts[n++] = buf;
    for (size_t i = 0; i < len && n < 4; i++)
        if (buf[i] == '\0')
            parts[n++] = buf + i + 1;
    if (n != 4)
        return false;
    buf[len] = '\0';
    out->auid = parts[0];
    out->tree = parts[1];
    out->xui = parts[2];
    out->path = parts[3];
    return true;
}

struct store_doc_rec {
    const char *etag;
    size_t etag_len;
    int64_t mtime;
    const char *data;
    size_t len;
};

static enum store_rc store_doc_decode(const MDB_val *v, struct store_doc_rec *r)
{
    const unsigned char *p = v->mv_data;
    if (v->mv_size < STORE_DOC_HDR || p[0] != STORE_DOC_VERSION)
        goto bad;
    r->etag_len = p[1];
    r->mtime = (int64_t)store_get_u64(p + 2);
    uint64_t len = store_get_u64(p + 10);
    if (r->etag_len >= STORE_ETAG_MAX || v->mv_size - STORE_DOC_HDR < r->etag_len ||
        len != v->mv_size - STORE_DOC_HDR - r->etag_len)
        goto bad;
    r->etag = (const char *)p + STORE_DOC_HDR;
    r->data = r->etag + r->etag_len;
    r->len = (size_t)len;
    return STORE_OK;
bad:
    log_error("store: corrupt document record (%zu bytes)", v->mv_size);
    return STORE_ERROR;
}

/* ---- per-user byte counts (the quota table) ---- */

static enum store_rc store_quota_get(MDB_txn *txn, MDB_dbi quota, const char *xui, uint64_t *out)
{
    enum store_rc rc = store_find_u64(txn, quota, xui, "quota", out);
    return rc == STORE_NOTFOUND ? STORE_OK : rc;
}

/* The count of xui goes down by sub, then up by add; a user with nothing left has no record. */
static enum store_rc store_quota_add(MDB_txn *txn, MDB_dbi quota, const char *xui, uint64_t sub,
                                     uint64_t add)
{
    uint64_t cur;
    enum store_rc src = store_quota_get(txn, quota, xui, &cur);
    if (src != STORE_OK)
        return src;
    cur = (cur > sub ? cur - sub : 0) + add;
    MDB_val k = {strlen(xui), (void *)xui};
    if (cur == 0) {
        int rc = mdb_del(txn, quota, &k, NULL);
        return rc == MDB_NOTFOUND ? STORE_OK : store_rc_from_mdb(rc, "delete quota");
    }
    unsigned char bytes[8];
    store_put_u64(bytes, cur);
    MDB_val v = {sizeof bytes, bytes};
    return store_rc_from_mdb(mdb_put(txn, quota, &k, &v, 0), "write quota");
}

/* Builds the quota table from the documents: once, in the first write transaction of a store
 * made before the table existed, so that its counts are exact from then on. */
static enum store_rc store_quota_ensure(struct store_lmdb_txn *t)
{
    uint64_t ready;
    enum store_rc src = store_meta_get_u64(t->txn, t->s->meta, STORE_META_QUOTA_READY, &ready);
    if (src != STORE_OK || ready != 0)
        return src;
    int rc = mdb_drop(t->txn, t->s->quota, 0);
    if (rc != MDB_SUCCESS)
        return store_rc_from_mdb(rc, "clear quota");
    MDB_cursor *c;
    rc = mdb_cursor_open(t->txn, t->s->docs, &c);
    if (rc != MDB_SUCCESS)
        return store_rc_from_mdb(rc, "open cursor");
    MDB_val k, v;
    uint64_t docs = 0;
    while (src == STORE_OK && (rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) == MDB_SUCCESS) {
        char key[STORE_KEY_MAX + 1];
        struct doc_key dk;
        struct store_doc_rec r;
        if (k.mv_size > STORE_KEY_MAX || store_doc_decode(&v, &r) != STORE_OK) {
            src = STORE_ERROR;
            break;
        }
        memcpy(key, k.mv_data, k.mv_size);
        if (!store_key_split(key, k.mv_size, &dk)) {
            log_error("store: corrupt document key");
            src = STORE_ERROR;
            break;
        }
        if (strcmp(dk.tree, "users") == 0 && dk.xui[0] != '\0' && r.len > 0) {
            /* Writing to another table keeps this cursor valid. */
            src = store_quota_add(t->txn, t->s->quota, dk.xui, 0, r.len);
            docs++;
        }
    }
    mdb_cursor_close(c);
    if (src != STORE_OK)
        return src;
    if (rc != MDB_NOTFOUND)
        return store_rc_from_mdb(rc, "scan documents");
    if (docs > 0)
        log_info("store: per-user byte counts built from %" PRIu64 " document(s)", docs);
    return store_meta_put_u64(t->txn, t->s->meta, STORE_META_QUOTA_READY, 1);
}

/* Length of the stored document under mk, 0 when there is none. */
static enum store_rc store_doc_len(struct store_lmdb_txn *t, MDB_val *mk, uint64_t *len)
{
    *len = 0;
    MDB_val mv;
    int rc = mdb_get(t->txn, t->s->docs, mk, &mv);
    if (rc == MDB_NOTFOUND)
        return STORE_OK;
    if (rc != MDB_SUCCESS)
        return store_rc_from_mdb(rc, "get document");
    struct store_doc_rec r;
    enum store_rc src = store_doc_decode(&mv, &r);
    if (src == STORE_OK)
        *len = r.len;
    return src;
}

static enum store_rc lmdb_doc_get(struct store_txn *base_t, const struct doc_key *k,
                                  struct store_doc *out)
{
    struct store_lmdb_txn *t = (struct store_lmdb_txn *)base_t;
    memset(out, 0, sizeof *out);
    struct store_key key;
    enum store_rc src = store_doc_key(t->s, &key, k);
    if (src != STORE_OK)
        return src;
    MDB_val mk = {key.len, key.bytes};
    MDB_val mv;
    int rc = mdb_get(t->txn, t->s->docs, &mk, &mv);
    if (rc != MDB_SUCCESS)
        return store_rc_from_mdb(rc, "get document");
    struct store_doc_rec r;
    src = store_doc_decode(&mv, &r);
    if (src != STORE_OK)
        return src;
    out->data = malloc(r.len + 1);
    if (out->data == NULL)
        return STORE_ERROR;
    memcpy(out->data, r.data, r.len);
    out->data[r.len] = '\0';
    out->len = r.len;
    memcpy(out->etag, r.etag, r.etag_len);
    out->etag[r.etag_len] = '\0';
    out->mtime = r.mtime;
    return STORE_OK;
}

/* ETags: "<counter>-<first 8 hex of the instance id>". The counter lives in meta and only grows,
 * within the caller's transaction, so no value repeats in this environment even across delete and
 * re-create of a document (RFC 4825 §8.5); the instance part keeps two environments (e.g. a
 * restored backup and a fresh one) from handing out the same tags. */
static enum store_rc store_etag_next(struct store_lmdb_txn *t, char etag[STORE_ETAG_MAX])
{
    uint64_t counter;
    enum store_rc src = store_meta_get_u64(t->txn, t->s->meta, STORE_META_ETAG, &counter);
    if (src != STORE_OK)
        return src;
    counter++;
    src = store_meta_put_u64(t->txn, t->s->meta, STORE_META_ETAG, counter);
    if (src != STORE_OK)
        return src;
    snprintf(etag, STORE_ETAG_MAX, "%" PRIu64 "-%.8s", counter, t->s->instance);
    return STORE_OK;
}

static enum store_rc lmdb_doc_put(struct store_txn *base_t, const struct doc_key *k,
                                  const char *data, size_t len, char etag_out[STORE_ETAG_MAX])
{
    struct store_lmdb_txn *t = (struct store_lmdb_txn *)base_t;
    if (!t->write || (data == NULL && len != 0) || len > SIZE_MAX - STORE_DOC_HDR - STORE_ETAG_MAX)
        return STORE_INVALID;
    struct store_key key;
    enum store_rc src = store_doc_key(t->s, &key, k);
    if (src != STORE_OK)
        return src;
    MDB_val mk = {key.len, key.bytes};
    bool counted = store_key_counted(k);
    uint64_t old_len = 0;
    if (counted && ((src = store_quota_ensure(t)) != STORE_OK ||
                    (src = store_doc_len(t, &mk, &old_len)) != STORE_OK))
        return src;
    char etag[STORE_ETAG_MAX];
    src = store_etag_next(t, etag);
    if (src != STORE_OK)
        return src;
    size_t etag_len = strlen(etag);

    MDB_val mv = {STORE_DOC_HDR + etag_len + len, NULL};
    /* MDB_RESERVE: the record is written in place, the document is copied once. */
    int rc = mdb_put(t->txn, t->s->docs, &mk, &mv, MDB_RESERVE);
    if (rc != MDB_SUCCESS)
        return store_rc_from_mdb(rc, "put document");
    unsigned char *p = mv.mv_data;
    p[0] = STORE_DOC_VERSION;
    p[1] = (unsigned char)etag_len;
    store_put_u64(p + 2, (uint64_t)(int64_t)time(NULL));
    store_put_u64(p + 10, (uint64_t)len);
    memcpy(p + STORE_DOC_HDR, etag, etag_len);
    if (len > 0)
        memcpy(p + STORE_DOC_HDR + etag_len, data, len);
    if (counted && (src = store_quota_add(t->txn, t->s->quota, k->xui, old_len, len)) != STORE_OK)
        return src;
    if (etag_out != NULL)
        memcpy(etag_out, etag, etag_len + 1);
    return STORE_OK;
}

static enum store_rc lmdb_doc_del(struct store_txn *base_t, const struct doc_key *k)
{
    struct store_lmdb_txn *t = (struct store_lmdb_txn *)base_t;
    if (!t->write)
        return STORE_INVALID;
    struct store_key key;
    enum store_rc src = store_doc_key(t->s, &key, k);
    if (src != STORE_OK)
        return src;
    MDB_val mk = {key.len, key.bytes};
    bool counted = store_key_counted(k);
    uint64_t old_len = 0;
    if (counted && ((src = store_quota_ensure(t)) != STORE_OK ||
                    (src = store_doc_len(t, &mk, &old_len)) != STORE_OK))
        return src;
    src = store_rc_from_mdb(mdb_del(t->txn, t->s->docs, &mk, NULL), "delete document");
    if (src == STORE_OK && counted)
        src = store_quota_add(t->txn, t->s->quota, k->xui, old_len, 0);
    return src;
}

/* Visits every docs key that starts with prefix, in key order. visit returns 0 to go on. */
typedef int (*store_visit_fn)(void *cls, const MDB_val *k, const MDB_val *v, enum store_rc *err);

static enum store_rc store_prefix_walk(MDB_cursor *c, const char *prefix, size_t plen,
                                       store_visit_fn visit, void *cls, bool *stopped)
{
    MDB_val k = {plen, (void *)prefix};
    MDB_val v;
    int rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    while (rc == MDB_SUCCESS) {
        if (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0)
            return STORE_OK;
        enum store_rc err = STORE_OK;
        if (visit(cls, &k, &v, &err) != 0) {
            *stopped = true;
            return err;
        }
        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    return rc == MDB_NOTFOUND ? STORE_OK : store_rc_from_mdb(rc, "scan documents");
}

/* Walks the docs of (tree, xui, path_prefix) in every AUID without reading the other AUIDs'
 * documents: for each AUID met, seek to auid\0tree\0xui\0prefix, walk that range, then skip to the
 * first key after the AUID ("auid\1", since the AUID ends with \0 in every key). The cost is one
 * B-tree seek per distinct AUID plus the matching documents, O(A log n + m) — there are only a
 * handful of AUIDs per XDMS. */
static enum store_rc store_walk_all_auids(MDB_cursor *c, const struct store_lmdb *s,
                                          const char *tree, const char *xui,
                                          const char *path_prefix, store_visit_fn visit, void *cls)
{
    struct store_key seek = {.len = 0};
    MDB_val k = {0, seek.bytes};
    MDB_val v;
    int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
    while (rc == MDB_SUCCESS) {
        const char *kb = k.mv_data;
        const char *nul = memchr(kb, '\0', k.mv_size);
        if (nul == NULL) {
            log_error("store: corrupt document key");
            return STORE_ERROR;
        }
        size_t auid_len = (size_t)(nul - kb);
        /* Copy before the walk moves the cursor (k points into the map). */
        char auid[STORE_KEY_MAX + 1];
        memcpy(auid, kb, auid_len);
        auid[auid_len] = '\0';

        struct store_key prefix;
        enum store_rc src = store_key_build(s, &prefix, auid, tree, xui, path_prefix);
        if (src == STORE_INVALID) {
            /* The prefix is longer than any key can be: nothing under this AUID matches. */
            src = STORE_OK;
        } else {
            bool stopped = false;
            src = store_prefix_walk(c, prefix.bytes, prefix.len, visit, cls, &stopped);
            if (src != STORE_OK || stopped)
                return src;
        }
        memcpy(seek.bytes, auid, auid_len);
        seek.bytes[auid_len] = '\1';
        k.mv_size = auid_len + 1;
        k.mv_data = seek.bytes;
        rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    }
    return rc == MDB_NOTFOUND ? STORE_OK : store_rc_from_mdb(rc, "scan documents");
}

static enum store_rc store_doc_walk(struct store_lmdb_txn *t, const char *auid, const char *tree,
                                    const char *xui, const char *path_prefix, store_visit_fn visit,
                                    void *cls)
{
    if (tree == NULL || xui == NULL || path_prefix == NULL)
        return STORE_INVALID;
    MDB_cursor *c;
    int rc = mdb_cursor_open(t->txn, t->s->docs, &c);
    if (rc != MDB_SUCCESS)
        return store_rc_from_mdb(rc, "open cursor");
    enum store_rc src;
    if (auid != NULL) {
        struct store_key prefix;
        src = store_key_build(t->s, &prefix, auid, tree, xui, path_prefix);
        bool stopped = false;
        if (src == STORE_OK)
            src = store_prefix_walk(c, prefix.bytes, prefix.len, visit, cls, &stopped);
    } else {
        src = store_walk_all_auids(c, t->s, tree, xui, path_prefix, visit, cls);
    }
    mdb_cursor_close(c);
    return src;
}

struct store_list_ctx {
    int (*fn)(void *cls, const struct store_doc_view *d);
    void *cls;
};

static int store_list_visit(void *cls, const MDB_val *k, const MDB_val *v, enum store_rc *err)
{
    struct store_list_ctx *ctx = cls;
    char key[STORE_KEY_MAX + 1];
    struct store_doc_view view;
    struct store_doc_rec r;
    if (k->mv_size > STORE_KEY_MAX || store_doc_decode(v, &r) != STORE_OK) {
        *err = STORE_ERROR;
        return 1;
    }
    memcpy(key, k->mv_data, k->mv_size);
    if (!store_key_split(key, k->mv_size, &view.key)) {
        log_error("store: corrupt document key");
        *err = STORE_ERROR;
        return 1;
    }
    char etag[STORE_ETAG_MAX];
    memcpy(etag, r.etag, r.etag_len);
    etag[r.etag_len] = '\0';
    view.etag = etag;
    view.mtime = r.mtime;
    view.len = r.len;
    return ctx->fn(ctx->cls, &view);
}

static enum store_rc lmdb_doc_list(struct store_txn *base_t, const char *auid, const char *tree,
                                   const char *xui, const char *path_prefix,
                                   int (*fn)(void *cls, const struct store_doc_view *d), void *cls)
{
    struct store_lmdb_txn *t = (struct store_lmdb_txn *)base_t;
    struct store_list_ctx ctx = {fn, cls};
    return store_doc_walk(t, auid, tree, xui, path_prefix, store_list_visit, &ctx);
}

static enum store_rc lmdb_doc_each(struct store_txn *base_t,
                                   int (*fn)(void *cls, const struct store_doc_view *d), void *cls)
{
    struct store_lmdb_txn *t = (struct store_lmdb_txn *)base_t;
    MDB_cursor *c;
    int rc = mdb_cursor_open(t->txn, t->s->docs, &c);
    if (rc != MDB_SUCCESS)
        return store_rc_from_mdb(rc, "open cursor");
    struct store_list_ctx ctx = {fn, cls};
    MDB_val k, v;
    enum store_rc src = STORE_OK;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == MDB_SUCCESS;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
        if (store_list_visit(&ctx, &k, &v, &src) != 0)
            break;
    mdb_cursor_close(c);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
        return store_rc_from_mdb(rc, "scan documents");
    return src;
}

static int store_count_visit(void *cls, const MDB_val *k, const MDB_val *v, enum store_rc *err)
{
    (*(uint64_t *)cls)++;
    return 0;
}

/* A user's documents live in the "users" tree of each AUID; the same per-AUID skip scan as a
 * listing with auid NULL, so the cost is O(A log n + d) for A AUIDs and the user's d documents. */
static enum store_rc lmdb_doc_count_user(struct store_txn *base_t, const char *xui, uint64_t *out)
{
    struct store_lmdb_txn *t = (struct store_lmdb_txn *)base_t;
    *out = 0;
    if (xui == NULL)
        return STORE_INVALID;
    uint64_t n = 0;
    enum store_rc src = store_doc_walk(t, NULL, "users", xui, "", store_count_visit, &n);
    if (src == STORE_OK)
        *out = n;
    return src;
}

static int store_bytes_visit(void *cls, const MDB_val *k, const MDB_val *v, enum store_rc *err)
{
    struct store_doc_rec r;
    if (store_doc_decode(v, &r) != STORE_OK) {
        *err = STORE_ERROR;
        return 1;
    }
    *(uint64_t *)cls += r.len;
    return 0;
}

static enum store_rc lmdb_user_bytes(struct store_txn *base_t, const char *xui, uint64_t *out)
{
    struct store_lmdb_txn *t = (struct store_lmdb_txn *)base_t;
    *out = 0;
    if (xui == NULL)
        return STORE_INVALID;
    uint64_t ready;
    enum store_rc src = store_meta_get_u64(t->txn, t->s->meta, STORE_META_QUOTA_READY, &ready);
    if (src != STORE_OK)
        return src;
    if (ready != 0)
        return xui[0] != '\0' ? store_quota_get(t->txn, t->s->quota, xui, out) : STORE_OK;
    uint64_t n = 0;
    src = store_doc_walk(t, NULL, "users", xui, "", store_bytes_visit, &n);
    if (src == STORE_OK)
        *out = n;
    return src;
}

/* The total size of the change records: kept in meta, summed from the records of a store made
 * before it was. */
static enum store_rc store_change_bytes(struct store_lmdb_txn *t, uint64_t *out)
{
    enum store_rc src = store_meta_find_u64(t->txn, t->s->meta, STORE_META_CHANGE_BYTES, out);
    if (src != STORE_NOTFOUND)
        return src;
    MDB_cursor *c;
    int rc = mdb_cursor_open(t->txn, t->s->changes, &c);
    if (rc != MDB_SUCCESS)
        return store_rc_from_mdb(rc, "open cursor");
    MDB_val k, v;
    uint64_t sum = 0;
    while ((rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) == MDB_SUCCESS)
        sum += v.mv_size;
    mdb_cursor_close(c);
    if (rc != MDB_NOTFOUND)
        return store_rc_from_mdb(rc, "scan changes");
    *out = sum;
    return STORE_OK;
}

/* Drops the oldest records, but never the newest keep ones, while the log together with `adding`
 * more records of `incoming` bytes would exceed a bound: the count, the bytes, or the age of the
 * oldest record (a version 1 record counts as old). *bytes is the log's size, kept up to date. */
static enum store_rc store_change_prune(struct store_lmdb_txn *t, uint64_t adding,
                                        uint64_t incoming, uint64_t keep, uint64_t *bytes)
{
    const struct store_lmdb *s = t->s;
    MDB_stat st;
    int rc = mdb_stat(t->txn, s->changes, &st);
    if (rc != MDB_SUCCESS)
        return store_rc_from_mdb(rc, "count changes");
    uint64_t entries = st.ms_entries;
    int64_t now = (int64_t)time(NULL);
    MDB_cursor *c;
    rc = mdb_cursor_open(t->txn, s->changes, &c);
    if (rc != MDB_SUCCESS)
        return store_rc_from_mdb(rc, "open cursor");
    MDB_val k, v;
    while (entries > keep && (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST)) == MDB_SUCCESS) {
        bool over = entries + adding > s->retention || *bytes + incoming > s->change_max_bytes;
        if (!over && s->change_max_age != 0) {
            int64_t when = store_change_time(v.mv_data, v.mv_size);
            over = when <= 0 || (now > when && (uint64_t)(now - when) > s->change_max_age);
        }
        if (!over)
            break;
        size_t size = v.mv_size;
        rc = mdb_cursor_del(c, 0);
        if (rc != MDB_SUCCESS)
            break;
        entries--;
        *bytes = *bytes > size ? *bytes - size : 0;
    }
    mdb_cursor_close(c);
    return rc == MDB_SUCCESS || rc == MDB_NOTFOUND ? STORE_OK
                                                   : store_rc_from_mdb(rc, "prune changes");
}

static enum store_rc lmdb_change_append(struct store_txn *base_t, struct store_change *c)
{
    struct store_lmdb_txn *t = (struct store_lmdb_txn *)base_t;
    if (!t->write || c == NULL || (c->kind != STORE_CHANGE_PUT && c->kind != STORE_CHANGE_DELETE) ||
        (c->detail == NULL && c->detail_len != 0))
        return STORE_INVALID;
    size_t total = store_change_size(c);
    if (total == 0)
        return STORE_INVALID;
    /* Prune first: the record always finds the log within its bounds, so the log cannot grow
     * beyond them whatever the writes are. */
    uint64_t bytes;
    enum store_rc src = store_change_bytes(t, &bytes);
    if (src == STORE_OK)
        src = store_change_prune(t, 1, total, 0, &bytes);
    if (src != STORE_OK)
        return src;
    uint64_t seq;
    src = store_meta_get_u64(t->txn, t->s->meta, STORE_META_SEQ, &seq);
    if (src != STORE_OK)
        return src;
    seq++;
    src = store_meta_put_u64(t->txn, t->s->meta, STORE_META_SEQ, seq);
    if (src == STORE_OK)
        src = store_meta_put_u64(t->txn, t->s->meta, STORE_META_CHANGE_BYTES, bytes + total);
    if (src != STORE_OK)
        return src;

    unsigned char kb[8];
    store_put_u64(kb, seq);
    MDB_val mk = {sizeof kb, kb};
    MDB_val mv = {total, NULL};
    /* Sequences only grow, so MDB_APPEND lets LMDB fill pages completely. */
    int rc = mdb_put(t->txn, t->s->changes, &mk, &mv, MDB_RESERVE | MDB_APPEND);
    if (rc == MDB_KEYEXIST)
        rc = mdb_put(t->txn, t->s->changes, &mk, &mv, MDB_RESERVE);
    if (rc != MDB_SUCCESS)
        return store_rc_from_mdb(rc, "append change");
    int64_t now = (int64_t)time(NULL);
    store_change_encode(c, now, mv.mv_data);
    c->seq = seq;
    c->time = now;
    return STORE_OK;
}

/* Pages on LMDB's free list. LMDB lets only a read transaction look at it; under MDB_NOTLS a
 * thread may hold one beside its write transaction, and both see the same committed state. */
static enum store_rc store_free_pages(struct store_lmdb *s, uint64_t *out)
{
    *out = 0;
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    if (rc != MDB_SUCCESS)
        return store_rc_from_mdb(rc, "begin read transaction");
    MDB_cursor *c;
    rc = mdb_cursor_open(txn, 0, &c); /* 0: the free list */
    if (rc == MDB_SUCCESS) {
        MDB_val k, v;
        /* Each record is a page list whose first word is its length (lmdb.h, mdb_stat -f). */
        while ((rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) == MDB_SUCCESS) {
            size_t n;
            if (v.mv_size >= sizeof n) {
                memcpy(&n, v.mv_data, sizeof n);
                *out += n;
            }
        }
        mdb_cursor_close(c);
    }
    mdb_txn_abort(txn);
    return rc == MDB_SUCCESS || rc == MDB_NOTFOUND ? STORE_OK
                                                   : store_rc_from_mdb(rc, "read free list");
}

static enum store_rc store_space(struct store_lmdb *s, struct store_usage *out)
{
    memset(out, 0, sizeof *out);
    MDB_envinfo info;
    MDB_stat st;
    int rc = mdb_env_info(s->env, &info);
    if (rc == MDB_SUCCESS)
        rc = mdb_env_stat(s->env, &st);
    if (rc != MDB_SUCCESS)
        return store_rc_from_mdb(rc, "read environment info");
    uint64_t free_pages;
    enum store_rc src = store_free_pages(s, &free_pages);
    if (src != STORE_OK)
        return src;
    uint64_t pages = (uint64_t)info.me_last_pgno + 1;
    out->map_bytes = info.me_mapsize;
    out->used_bytes = (pages > free_pages ? pages - free_pages : 0) * st.ms_psize;
    out->limit_bytes =
        out->map_bytes / 100 * s->high_water + out->map_bytes % 100 * s->high_water / 100;
    return STORE_OK;
}

static enum store_rc lmdb_space_check(struct store_txn *base_t, uint64_t incoming)
{
    struct store_lmdb_txn *t = (struct store_lmdb_txn *)base_t;
    struct store_usage u;
    enum store_rc src = store_space(t->s, &u);
    if (src != STORE_OK)
        return src;
    if (u.used_bytes > u.limit_bytes || incoming > u.limit_bytes - u.used_bytes)
        return STORE_FULL;
    return STORE_OK;
}

static enum store_rc lmdb_usage_get(struct store_txn *base_t, struct store_usage *out)
{
    struct store_lmdb_txn *t = (struct store_lmdb_txn *)base_t;
    enum store_rc src = store_space(t->s, out);
    MDB_stat st;
    if (src == STORE_OK)
        src = store_rc_from_mdb(mdb_stat(t->txn, t->s->changes, &st), "count changes");
    if (src == STORE_OK) {
        out->change_records = st.ms_entries;
        src = store_change_bytes(t, &out->change_bytes);
    }
    /* Entry counts LMDB keeps in each database's root: O(1), no scan. */
    if (src == STORE_OK)
        src = store_rc_from_mdb(mdb_stat(t->txn, t->s->docs, &st), "count documents");
    if (src == STORE_OK) {
        out->documents = st.ms_entries;
        src = store_rc_from_mdb(mdb_stat(t->txn, t->s->quota, &st), "count users");
    }
    if (src == STORE_OK)
        out->users = st.ms_entries;
    return src;
}

/* At open: a store filled to the end of its map (by a version without the high-water mark, or
 * reopened with a smaller map_size) could not even delete, as LMDB needs free pages for that too.
 * When less than half the reserve above the high-water mark is left, the map grows until what is
 * in use sits at the mark again: writes stay refused (507), DELETE and the pruning work, and the
 * file only grows by the pages they take. */
static void store_headroom(struct store_lmdb *s)
{
    struct store_usage u;
    if (store_space(s, &u) != STORE_OK)
        return;
    uint64_t reserve = u.map_bytes - u.limit_bytes;
    if (u.used_bytes < u.map_bytes && u.map_bytes - u.used_bytes >= reserve / 2)
        return;
    uint64_t unit = 64u << 10; /* a multiple of every page size LMDB runs with */
    uint64_t want = (u.used_bytes / s->high_water * 100 + unit) / unit * unit;
    if (want <= u.map_bytes || want > SIZE_MAX)
        return;
    int rc = mdb_env_set_mapsize(s->env, (size_t)want);
    if (rc != MDB_SUCCESS) {
        log_error("store: %" PRIu64 " of %" PRIu64 " bytes in use and the map cannot grow: %s",
                  u.used_bytes, u.map_bytes, mdb_strerror(rc));
        return;
    }
    log_warn("store: %" PRIu64 " of %" PRIu64 " bytes in use, above the high-water mark; the map "
             "grows to %" PRIu64 " bytes so that DELETE has room (raise map_size or delete "
             "documents)",
             u.used_bytes, u.map_bytes, want);
}

/* At open: builds what a store made by an older version lacks (the quota table, the change-log
 * size) and prunes the change log to its bounds, keeping the newest record. Best effort: a store
 * too full for it still opens, and the next write tries again. */
static void store_maintain(struct store_lmdb *s)
{
    struct store_lmdb_txn t = {.s = s, .write = true};
    int rc = mdb_txn_begin(s->env, NULL, 0, &t.txn);
    if (rc != MDB_SUCCESS) {
        log_warn("store: no maintenance at open: %s", mdb_strerror(rc));
        return;
    }
    uint64_t bytes = 0;
    enum store_rc src = store_quota_ensure(&t);
    if (src == STORE_OK)
        src = store_change_bytes(&t, &bytes);
    if (src == STORE_OK)
        src = store_change_prune(&t, 0, 0, 1, &bytes);
    if (src == STORE_OK)
        src = store_meta_put_u64(t.txn, s->meta, STORE_META_CHANGE_BYTES, bytes);
    if (src == STORE_OK)
        src = store_rc_from_mdb(mdb_txn_commit(t.txn), "commit maintenance");
    else
        mdb_txn_abort(t.txn);
    if (src != STORE_OK)
        log_warn("store: maintenance at open failed (%s); the next write retries",
                 store_strerror(src));
}

static enum store_rc store_change_decode_mdb(const MDB_val *k, const MDB_val *v,
                                             struct store_change *c)
{
    if (k->mv_size != 8) {
        log_error("store: corrupt change key");
        return STORE_ERROR;
    }
    enum store_rc src = store_change_decode(v->mv_data, v->mv_size, c);
    if (src == STORE_OK)
        c->seq = store_get_u64(k->mv_data);
    return src;
}

static enum store_rc lmdb_change_read(struct store_txn *base_t, uint64_t after,
                                      int (*fn)(void *cls, const struct store_change *c), void *cls)
{
    struct store_lmdb_txn *t = (struct store_lmdb_txn *)base_t;
    if (after == UINT64_MAX)
        return STORE_OK;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(t->txn, t->s->changes, &cur);
    if (rc != MDB_SUCCESS)
        return store_rc_from_mdb(rc, "open cursor");
    unsigned char kb[8];
    store_put_u64(kb, after + 1);
    MDB_val k = {sizeof kb, kb};
    MDB_val v;
    enum store_rc src = STORE_OK;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == MDB_SUCCESS) {
        struct store_change c;
        src = store_change_decode_mdb(&k, &v, &c);
        if (src != STORE_OK || fn(cls, &c) != 0)
            break;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (src != STORE_OK)
        return src;
    return rc == MDB_SUCCESS || rc == MDB_NOTFOUND ? STORE_OK
                                                   : store_rc_from_mdb(rc, "read changes");
}

static enum store_rc lmdb_change_last(struct store_txn *base_t, uint64_t *out)
{
    struct store_lmdb_txn *t = (struct store_lmdb_txn *)base_t;
    *out = 0;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(t->txn, t->s->changes, &cur);
    if (rc != MDB_SUCCESS)
        return store_rc_from_mdb(rc, "open cursor");
    MDB_val k, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND)
        return STORE_OK;
    if (rc != MDB_SUCCESS)
        return store_rc_from_mdb(rc, "read last change");
    if (k.mv_size != 8) {
        log_error("store: corrupt change key");
        return STORE_ERROR;
    }
    *out = store_get_u64(k.mv_data);
    return STORE_OK;
}

static enum store_rc store_table_find(struct store_lmdb_txn *t, const char *table, MDB_dbi *dbi)
{
    if (table == NULL)
        return STORE_INVALID;
    for (size_t i = 0; i < t->s->n_tables; i++) {
        if (strcmp(t->s->tables[i].name, table) == 0) {
            *dbi = t->s->tables[i].dbi;
            return STORE_OK;
        }
    }
    return STORE_INVALID;
}

/* LMDB keys are 1..maxkeysize bytes. */
static enum store_rc store_kv_check(struct store_lmdb_txn *t, const char *table, const void *key,
                                    size_t klen, MDB_dbi *dbi)
{
    if (key == NULL || klen == 0 || klen > t->s->key_max)
        return STORE_INVALID;
    return store_table_find(t, table, dbi);
}

static enum store_rc lmdb_kv_get(struct store_txn *base_t, const char *table, const void *key,
                                 size_t klen, void **val, size_t *vlen)
{
    struct store_lmdb_txn *t = (struct store_lmdb_txn *)base_t;
    *val = NULL;
    *vlen = 0;
    MDB_dbi dbi;
    enum store_rc src = store_kv_check(t, table, key, klen, &dbi);
    if (src != STORE_OK)
        return src;
    MDB_val mk = {klen, (void *)key};
    MDB_val mv;
    int rc = mdb_get(t->txn, dbi, &mk, &mv);
    if (rc != MDB_SUCCESS)
        return store_rc_from_mdb(rc, "get");
    char *copy = malloc(mv.mv_size + 1);
    if (copy == NULL)
        return STORE_ERROR;
    if (mv.mv_size > 0)
        memcpy(copy, mv.mv_data, mv.mv_size);
    copy[mv.mv_size] = '\0';
    *val = copy;
    *vlen = mv.mv_size;
    return STORE_OK;
}

static enum store_rc lmdb_kv_put(struct store_txn *base_t, const char *table, const void *key,
                                 size_t klen, const void *val, size_t vlen)
{
    struct store_lmdb_txn *t = (struct store_lmdb_txn *)base_t;
    MDB_dbi dbi;
    if (!t->write || (val == NULL && vlen != 0))
        return STORE_INVALID;
    enum store_rc src = store_kv_check(t, table, key, klen, &dbi);
    if (src != STORE_OK)
        return src;
    MDB_val mk = {klen, (void *)key};
    MDB_val mv = {vlen, (void *)(val != NULL ? val : "")};
    return store_rc_from_mdb(mdb_put(t->txn, dbi, &mk, &mv, 0), "put");
}

static enum store_rc lmdb_kv_del(struct store_txn *base_t, const char *table, const void *key,
                                 size_t klen)
{
    struct store_lmdb_txn *t = (struct store_lmdb_txn *)base_t;
    MDB_dbi dbi;
    if (!t->write)
        return STORE_INVALID;
    enum store_rc src = store_kv_check(t, table, key, klen, &dbi);
    if (src != STORE_OK)
        return src;
    MDB_val mk = {klen, (void *)key};
    return store_rc_from_mdb(mdb_del(t->txn, dbi, &mk, NULL), "delete");
}

static enum store_rc
lmdb_kv_scan(struct store_txn *base_t, const char *table, const void *prefix, size_t plen,
             int (*fn)(void *cls, const void *key, size_t klen, const void *val, size_t vlen),
             void *cls)
{
    struct store_lmdb_txn *t = (struct store_lmdb_txn *)base_t;
    MDB_dbi dbi;
    if (plen > t->s->key_max || (prefix == NULL && plen != 0))
        return STORE_INVALID;
    enum store_rc src = store_table_find(t, table, &dbi);
    if (src != STORE_OK)
        return src;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(t->txn, dbi, &cur);
    if (rc != MDB_SUCCESS)
        return store_rc_from_mdb(rc, "open cursor");
    MDB_val k = {plen, (void *)prefix};
    MDB_val v;
    rc = mdb_cursor_get(cur, &k, &v, plen > 0 ? MDB_SET_RANGE : MDB_FIRST);
    while (rc == MDB_SUCCESS) {
        if (k.mv_size < plen || (plen > 0 && memcmp(k.mv_data, prefix, plen) != 0))
            break;
        if (fn(cls, k.mv_data, k.mv_size, v.mv_data, v.mv_size) != 0)
            break;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    return rc == MDB_SUCCESS || rc == MDB_NOTFOUND ? STORE_OK : store_rc_from_mdb(rc, "scan");
}

/* Backup ------------------------------------------------------------------------------------- */

#define STORE_COPY_RETRIES 3

enum store_rc store_copy(const char *src_dir, const char *dst_dir)
{
    char path[STORE_DIR_MAX + 16];
    struct stat st;
    if (!src_dir || !dst_dir || strlen(src_dir) > STORE_DIR_MAX || strlen(dst_dir) > STORE_DIR_MAX)
        return STORE_INVALID;
    snprintf(path, sizeof path, "%s/data.mdb", src_dir);
    if (stat(path, &st) < 0)
        return errno == ENOENT ? STORE_NOTFOUND : STORE_ERROR;

    /* Phase 1: open the source read-only (the lock file is still shared with the writers, so
     * their readers and ours see each other). */
    MDB_env *env;
    int rc = mdb_env_create(&env);
    if (rc != MDB_SUCCESS)
        return store_rc_from_mdb(rc, "create environment");
    rc = mdb_env_set_maxdbs(env, STORE_BUILTIN_DBS + STORE_MAX_TABLES);
    if (rc == MDB_SUCCESS)
        rc = mdb_env_set_maxreaders(env, STORE_MAX_READERS);
    if (rc == MDB_SUCCESS)
        rc = mdb_env_open(env, src_dir, MDB_NOTLS | MDB_RDONLY, 0600);
    if (rc != MDB_SUCCESS) {
        log_error("store: open %s for a copy: %s", src_dir, mdb_strerror(rc));
        mdb_env_close(env);
        return STORE_ERROR;
    }

    /* Phase 2: the compacting copy into a new file. A writer may grow the map meanwhile; the
     * copy's read transaction then fails with MDB_MAP_RESIZED and is retried at the new size. */
    snprintf(path, sizeof path, "%s/data.mdb", dst_dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        log_error("store: create %s: %s", path, strerror(errno));
        mdb_env_close(env);
        return errno == EEXIST ? STORE_INVALID : STORE_ERROR;
    }
    for (int i = 0; i < STORE_COPY_RETRIES; i++) {
        rc = mdb_env_copyfd2(env, fd, MDB_CP_COMPACT);
        if (rc != MDB_MAP_RESIZED)
            break;
        if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0) {
            rc = errno;
            break;
        }
        rc = mdb_env_set_mapsize(env, 0);
        if (rc != MDB_SUCCESS)
            break;
    }
    mdb_env_close(env);

    /* Phase 3: durable before success is reported. */
    if (rc == MDB_SUCCESS && fsync(fd) < 0)
        rc = errno;
    if (close(fd) < 0 && rc == MDB_SUCCESS)
        rc = errno;
    if (rc == MDB_SUCCESS) {
        int dfd = open(dst_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            if (fsync(dfd) < 0)
                rc = errno;
            close(dfd);
        }
    }
    if (rc != MDB_SUCCESS) {
        log_error("store: copy %s to %s: %s", src_dir, dst_dir, mdb_strerror(rc));
        unlink(path);
        return STORE_ERROR;
    }
    return STORE_OK;
}

enum store_rc store_in_use(const char *dir, bool *out)
{
    char path[STORE_DIR_MAX + 16];
    *out = false;
    if (!dir || strlen(dir) > STORE_DIR_MAX)
        return STORE_INVALID;
    snprintf(path, sizeof path, "%s/lock.mdb", dir);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? STORE_OK : STORE_ERROR;
    /* Every process with the environment open holds a lock on the first byte of the lock file
     * (LMDB's mdb_env_excl_lock(): exclusive while alone at open, shared afterwards). */
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    int rc = fcntl(fd, F_GETLK, &fl);
    close(fd);
    if (rc < 0)
        return STORE_ERROR;
    *out = fl.l_type != F_UNLCK;
    return STORE_OK;
}

static int lmdb_wake_fd(struct store *s)
{
    (void)s;
    return -1; /* no cross-process signal on LMDB: callers poll the change log */
}

static void lmdb_wake_drain(struct store *s)
{
    (void)s;
}

static const struct store_ops store_lmdb_ops = {
    .close = lmdb_close,
    .instance_id = lmdb_instance_id,
    .txn_begin = lmdb_txn_begin,
    .txn_commit = lmdb_txn_commit,
    .txn_abort = lmdb_txn_abort,
    .doc_get = lmdb_doc_get,
    .doc_put = lmdb_doc_put,
    .doc_del = lmdb_doc_del,
    .doc_list = lmdb_doc_list,
    .doc_each = lmdb_doc_each,
    .doc_count_user = lmdb_doc_count_user,
    .user_bytes = lmdb_user_bytes,
    .space_check = lmdb_space_check,
    .usage_get = lmdb_usage_get,
    .change_append = lmdb_change_append,
    .change_read = lmdb_change_read,
    .change_last = lmdb_change_last,
    .kv_get = lmdb_kv_get,
    .kv_put = lmdb_kv_put,
    .kv_del = lmdb_kv_del,
    .kv_scan = lmdb_kv_scan,
    .wake_fd = lmdb_wake_fd,
    .wake_drain = lmdb_wake_drain,
};
