/* LMDB backend (store_lmdb.c): documents, their records and the per-user byte counts (quota). */
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

struct store_doc_rec {
    const char *etag;
    size_t etag_len;
    int64_t mtime;
    const char *data;
    size_t len;
};

static enum store_rc store_lmdb_doc_decode(const MDB_val *v, struct store_doc_rec *r)
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

static enum store_rc store_lmdb_quota_get(MDB_txn *txn, MDB_dbi quota, const char *xui,
                                          uint64_t *out)
{
    enum store_rc rc = store_lmdb_find_u64(txn, quota, xui, "quota", out);
    return rc == STORE_NOTFOUND ? STORE_OK : rc;
}

/* The count of xui goes down by sub, then up by add; a user with nothing left has no record. */
static enum store_rc store_lmdb_quota_add(MDB_txn *txn, MDB_dbi quota, const char *xui,
                                          uint64_t sub, uint64_t add)
{
    uint64_t cur;
    enum store_rc src = store_lmdb_quota_get(txn, quota, xui, &cur);
    if (src != STORE_OK)
        return src;
    cur = (cur > sub ? cur - sub : 0) + add;
    MDB_val k = {strlen(xui), (void *)xui};
    if (cur == 0) {
        int rc = mdb_del(txn, quota, &k, NULL);
        return rc == MDB_NOTFOUND ? STORE_OK : store_lmdb_rc_from_mdb(rc, "delete quota");
    }
    unsigned char bytes[8];
    store_put_u64(bytes, cur);
    MDB_val v = {sizeof bytes, bytes};
    return store_lmdb_rc_from_mdb(mdb_put(txn, quota, &k, &v, 0), "write quota");
}

/* Builds the quota table from the documents: once, in the first write transaction of a store
 * made before the table existed, so that its counts are exact from then on. */
enum store_rc store_lmdb_quota_ensure(struct store_lmdb_txn *t)
{
    uint64_t ready;
    enum store_rc src = store_lmdb_meta_get_u64(t->txn, t->s->meta, STORE_META_QUOTA_READY, &ready);
    if (src != STORE_OK || ready != 0)
        return src;
    int rc = mdb_drop(t->txn, t->s->quota, 0);
    if (rc != MDB_SUCCESS)
        return store_lmdb_rc_from_mdb(rc, "clear quota");
    MDB_cursor *c;
    rc = mdb_cursor_open(t->txn, t->s->docs, &c);
    if (rc != MDB_SUCCESS)
        return store_lmdb_rc_from_mdb(rc, "open cursor");
    MDB_val k, v;
    uint64_t docs = 0;
    while (src == STORE_OK && (rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) == MDB_SUCCESS) {
        char key[STORE_KEY_MAX + 1];
        struct doc_key dk;
        struct store_doc_rec r;
        if (k.mv_size > STORE_KEY_MAX || store_lmdb_doc_decode(&v, &r) != STORE_OK) {
            src = STORE_ERROR;
            break;
        }
        memcpy(key, k.mv_data, k.mv_size);
        if (!store_lmdb_key_split(key, k.mv_size, &dk)) {
            log_error("store: corrupt document key");
            src = STORE_ERROR;
            break;
        }
        if (strcmp(dk.tree, "users") == 0 && dk.xui[0] != '\0' && r.len > 0) {
            /* Writing to another table keeps this cursor valid. */
            src = store_lmdb_quota_add(t->txn, t->s->quota, dk.xui, 0, r.len);
            docs++;
        }
    }
    mdb_cursor_close(c);
    if (src != STORE_OK)
        return src;
    if (rc != MDB_NOTFOUND)
        return store_lmdb_rc_from_mdb(rc, "scan documents");
    if (docs > 0)
        log_info("store: per-user byte counts built from %" PRIu64 " document(s)", docs);
    return store_lmdb_meta_put_u64(t->txn, t->s->meta, STORE_META_QUOTA_READY, 1);
}

/* Length of the stored document under mk, 0 when there is none. */
static enum store_rc store_lmdb_doc_len(struct store_lmdb_txn *t, MDB_val *mk, uint64_t *len)
{
    *len = 0;
    MDB_val mv;
    int rc = mdb_get(t->txn, t->s->docs, mk, &mv);
    if (rc == MDB_NOTFOUND)
        return STORE_OK;
    if (rc != MDB_SUCCESS)
        return store_lmdb_rc_from_mdb(rc, "get document");
    struct store_doc_rec r;
    enum store_rc src = store_lmdb_doc_decode(&mv, &r);
    if (src == STORE_OK)
        *len = r.len;
    return src;
}

enum store_rc store_lmdb_doc_get(struct store_txn *base_t, const struct doc_key *k,
                                 struct store_doc *out)
{
    struct store_lmdb_txn *t = (struct store_lmdb_txn *)base_t;
    memset(out, 0, sizeof *out);
    struct store_key key;
    enum store_rc src = store_lmdb_doc_key(t->s, &key, k);
    if (src != STORE_OK)
        return src;
    MDB_val mk = {key.len, key.bytes};
    MDB_val mv;
    int rc = mdb_get(t->txn, t->s->docs, &mk, &mv);
    if (rc != MDB_SUCCESS)
        return store_lmdb_rc_from_mdb(rc, "get document");
    struct store_doc_rec r;
    src = store_lmdb_doc_decode(&mv, &r);
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
static enum store_rc store_lmdb_etag_next(struct store_lmdb_txn *t, char etag[STORE_ETAG_MAX])
{
    uint64_t counter;
    enum store_rc src = store_lmdb_meta_get_u64(t->txn, t->s->meta, STORE_META_ETAG, &counter);
    if (src != STORE_OK)
        return src;
    counter++;
    src = store_lmdb_meta_put_u64(t->txn, t->s->meta, STORE_META_ETAG, counter);
    if (src != STORE_OK)
        return src;
    snprintf(etag, STORE_ETAG_MAX, "%" PRIu64 "-%.8s", counter, t->s->instance);
    return STORE_OK;
}

/* Adds MDB_APPEND to *flags when mk sorts after the last key of the documents table. */
static enum store_rc store_lmdb_doc_after_last(struct store_lmdb_txn *t, MDB_val *mk,
                                               unsigned *flags)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(t->txn, t->s->docs, &c);
    if (rc != MDB_SUCCESS)
        return store_lmdb_rc_from_mdb(rc, "open cursor");
    MDB_val lk, lv;
    rc = mdb_cursor_get(c, &lk, &lv, MDB_LAST);
    if (rc == MDB_NOTFOUND || (rc == MDB_SUCCESS && mdb_cmp(t->txn, t->s->docs, mk, &lk) > 0))
        *flags |= MDB_APPEND;
    mdb_cursor_close(c);
    return rc == MDB_SUCCESS || rc == MDB_NOTFOUND ? STORE_OK
                                                   : store_lmdb_rc_from_mdb(rc, "last document");
}

enum store_rc store_lmdb_doc_put(struct store_txn *base_t, const struct doc_key *k,
                                 const char *data, size_t len, char etag_out[STORE_ETAG_MAX])
{
    struct store_lmdb_txn *t = (struct store_lmdb_txn *)base_t;
    if (!t->write || (data == NULL && len != 0) || len > SIZE_MAX - STORE_DOC_HDR - STORE_ETAG_MAX)
        return STORE_INVALID;
    struct store_key key;
    enum store_rc src = store_lmdb_doc_key(t->s, &key, k);
    if (src != STORE_OK)
        return src;
    MDB_val mk = {key.len, key.bytes};
    bool counted = store_key_counted(k);
    uint64_t old_len = 0;
    if (counted && ((src = store_lmdb_quota_ensure(t)) != STORE_OK ||
                    (src = store_lmdb_doc_len(t, &mk, &old_len)) != STORE_OK))
        return src;
    char etag[STORE_ETAG_MAX];
    src = store_lmdb_etag_next(t, etag);
    if (src != STORE_OK)
        return src;
    size_t etag_len = strlen(etag);

    MDB_val mv = {STORE_DOC_HDR + etag_len + len, NULL};
    /* MDB_RESERVE: the record is written in place, the document is copied once. MDB_APPEND for a
     * key above every stored one: LMDB then splits a full page at the new key instead of in the
     * middle, so documents written in key order (imports, restores, new users in order) fill
     * their pages instead of leaving each one half empty. */
    unsigned flags = MDB_RESERVE;
    src = store_lmdb_doc_after_last(t, &mk, &flags);
    if (src != STORE_OK)
        return src;
    int rc = mdb_put(t->txn, t->s->docs, &mk, &mv, flags);
    if (rc != MDB_SUCCESS)
        return store_lmdb_rc_from_mdb(rc, "put document");
    unsigned char *p = mv.mv_data;
    p[0] = STORE_DOC_VERSION;
    p[1] = (unsigned char)etag_len;
    store_put_u64(p + 2, (uint64_t)(int64_t)time(NULL));
    store_put_u64(p + 10, (uint64_t)len);
    memcpy(p + STORE_DOC_HDR, etag, etag_len);
    if (len > 0)
        memcpy(p + STORE_DOC_HDR + etag_len, data, len);
    if (counted &&
        (src = store_lmdb_quota_add(t->txn, t->s->quota, k->xui, old_len, len)) != STORE_OK)
        return src;
    if (etag_out != NULL)
        memcpy(etag_out, etag, etag_len + 1);
    t->written += mk.mv_size + mv.mv_size;
    return STORE_OK;
}

enum store_rc store_lmdb_doc_del(struct store_txn *base_t, const struct doc_key *k)
{
    struct store_lmdb_txn *t = (struct store_lmdb_txn *)base_t;
    if (!t->write)
        return STORE_INVALID;
    struct store_key key;
    enum store_rc src = store_lmdb_doc_key(t->s, &key, k);
    if (src != STORE_OK)
        return src;
    MDB_val mk = {key.len, key.bytes};
    bool counted = store_key_counted(k);
    uint64_t old_len = 0;
    if (counted && ((src = store_lmdb_quota_ensure(t)) != STORE_OK ||
                    (src = store_lmdb_doc_len(t, &mk, &old_len)) != STORE_OK))
        return src;
    src = store_lmdb_rc_from_mdb(mdb_del(t->txn, t->s->docs, &mk, NULL), "delete document");
    if (src == STORE_OK && counted)
        src = store_lmdb_quota_add(t->txn, t->s->quota, k->xui, old_len, 0);
    t->written += mk.mv_size;
    return src;
}

/* Visits every docs key that starts with prefix, in key order. visit returns 0 to go on. */
typedef int (*store_visit_fn)(void *cls, const MDB_val *k, const MDB_val *v, enum store_rc *err);

static enum store_rc store_lmdb_prefix_walk(MDB_cursor *c, const char *prefix, size_t plen,
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
    return rc == MDB_NOTFOUND ? STORE_OK : store_lmdb_rc_from_mdb(rc, "scan documents");
}

/* Walks the docs of (tree, xui, path_prefix) in every AUID without reading the other AUIDs'
 * documents: for each AUID met, seek to auid\0tree\0xui\0prefix, walk that range, then skip to the
 * first key after the AUID ("auid\1", since the AUID ends with \0 in every key). The cost is one
 * B-tree seek per distinct AUID plus the matching documents, O(A log n + m) — there are only a
 * handful of AUIDs per XDMS. */
static enum store_rc store_lmdb_walk_all_auids(MDB_cursor *c, const struct store_lmdb *s,
                                               const char *tree, const char *xui,
                                               const char *path_prefix, store_visit_fn visit,
                                               void *cls)
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
        enum store_rc src = store_lmdb_key_build(s, &prefix, auid, tree, xui, path_prefix);
        if (src == STORE_INVALID) {
            /* The prefix is longer than any key can be: nothing under this AUID matches. */
            src = STORE_OK;
        } else {
            bool stopped = false;
            src = store_lmdb_prefix_walk(c, prefix.bytes, prefix.len, visit, cls, &stopped);
            if (src != STORE_OK || stopped)
                return src;
        }
        memcpy(seek.bytes, auid, auid_len);
        seek.bytes[auid_len] = '\1';
        k.mv_size = auid_len + 1;
        k.mv_data = seek.bytes;
        rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    }
    return rc == MDB_NOTFOUND ? STORE_OK : store_lmdb_rc_from_mdb(rc, "scan documents");
}

static enum store_rc store_lmdb_doc_walk(struct store_lmdb_txn *t, const char *auid,
                                         const char *tree, const char *xui, const char *path_prefix,
                                         store_visit_fn visit, void *cls)
{
    if (tree == NULL || xui == NULL || path_prefix == NULL)
        return STORE_INVALID;
    MDB_cursor *c;
    int rc = mdb_cursor_open(t->txn, t->s->docs, &c);
    if (rc != MDB_SUCCESS)
        return store_lmdb_rc_from_mdb(rc, "open cursor");
    enum store_rc src;
    if (auid != NULL) {
        struct store_key prefix;
        src = store_lmdb_key_build(t->s, &prefix, auid, tree, xui, path_prefix);
        bool stopped = false;
        if (src == STORE_OK)
            src = store_lmdb_prefix_walk(c, prefix.bytes, prefix.len, visit, cls, &stopped);
    } else {
        src = store_lmdb_walk_all_auids(c, t->s, tree, xui, path_prefix, visit, cls);
    }
    mdb_cursor_close(c);
    return src;
}

struct store_list_ctx {
    int (*fn)(void *cls, const struct store_doc_view *d);
    void *cls;
};

static int store_lmdb_list_visit(void *cls, const MDB_val *k, const MDB_val *v, enum store_rc *err)
{
    struct store_list_ctx *ctx = cls;
    char key[STORE_KEY_MAX + 1];
    struct store_doc_view view;
    struct store_doc_rec r;
    if (k->mv_size > STORE_KEY_MAX || store_lmdb_doc_decode(v, &r) != STORE_OK) {
        *err = STORE_ERROR;
        return 1;
    }
    memcpy(key, k->mv_data, k->mv_size);
    if (!store_lmdb_key_split(key, k->mv_size, &view.key)) {
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

enum store_rc store_lmdb_doc_list(struct store_txn *base_t, const char *auid, const char *tree,
                                  const char *xui, const char *path_prefix,
                                  int (*fn)(void *cls, const struct store_doc_view *d), void *cls)
{
    struct store_lmdb_txn *t = (struct store_lmdb_txn *)base_t;
    struct store_list_ctx ctx = {fn, cls};
    return store_lmdb_doc_walk(t, auid, tree, xui, path_prefix, store_lmdb_list_visit, &ctx);
}

enum store_rc store_lmdb_doc_each(struct store_txn *base_t,
                                  int (*fn)(void *cls, const struct store_doc_view *d), void *cls)
{
    struct store_lmdb_txn *t = (struct store_lmdb_txn *)base_t;
    MDB_cursor *c;
    int rc = mdb_cursor_open(t->txn, t->s->docs, &c);
    if (rc != MDB_SUCCESS)
        return store_lmdb_rc_from_mdb(rc, "open cursor");
    struct store_list_ctx ctx = {fn, cls};
    MDB_val k, v;
    enum store_rc src = STORE_OK;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == MDB_SUCCESS;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
        if (store_lmdb_list_visit(&ctx, &k, &v, &src) != 0)
            break;
    mdb_cursor_close(c);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
        return store_lmdb_rc_from_mdb(rc, "scan documents");
    return src;
}

static int store_lmdb_count_visit(void *cls, const MDB_val *k, const MDB_val *v, enum store_rc *err)
{
    (*(uint64_t *)cls)++;
    return 0;
}

/* A user's documents live in the "users" tree of each AUID; the same per-AUID skip scan as a
 * listing with auid NULL, so the cost is O(A log n + d) for A AUIDs and the user's d documents. */
enum store_rc store_lmdb_doc_count_user(struct store_txn *base_t, const char *xui, uint64_t *out)
{
    struct store_lmdb_txn *t = (struct store_lmdb_txn *)base_t;
    *out = 0;
    if (xui == NULL)
        return STORE_INVALID;
    uint64_t n = 0;
    enum store_rc src = store_lmdb_doc_walk(t, NULL, "users", xui, "", store_lmdb_count_visit, &n);
    if (src == STORE_OK)
        *out = n;
    return src;
}

static int store_lmdb_bytes_visit(void *cls, const MDB_val *k, const MDB_val *v, enum store_rc *err)
{
    struct store_doc_rec r;
    if (store_lmdb_doc_decode(v, &r) != STORE_OK) {
        *err = STORE_ERROR;
        return 1;
    }
    *(uint64_t *)cls += r.len;
    return 0;
}

enum store_rc store_lmdb_user_bytes(struct store_txn *base_t, const char *xui, uint64_t *out)
{
    struct store_lmdb_txn *t = (struct store_lmdb_txn *)base_t;
    *out = 0;
    if (xui == NULL)
        return STORE_INVALID;
    uint64_t ready;
    enum store_rc src = store_lmdb_meta_get_u64(t->txn, t->s->meta, STORE_META_QUOTA_READY, &ready);
    if (src != STORE_OK)
        return src;
    if (ready != 0)
        return xui[0] != '\0' ? store_lmdb_quota_get(t->txn, t->s->quota, xui, out) : STORE_OK;
    uint64_t n = 0;
    src = store_lmdb_doc_walk(t, NULL, "users", xui, "", store_lmdb_bytes_visit, &n);
    if (src == STORE_OK)
        *out = n;
    return src;
}
