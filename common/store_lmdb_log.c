/* LMDB backend (store_lmdb.c): the change log, its bounds and pruning, and the map's space
 * (usage, headroom, maintenance). */
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

/* The total size of the change records: kept in meta, summed from the records of a store made
 * before it was. */
static enum store_rc store_lmdb_change_bytes(struct store_lmdb_txn *t, uint64_t *out)
{
    enum store_rc src = store_lmdb_meta_find_u64(t->txn, t->s->meta, STORE_META_CHANGE_BYTES, out);
    if (src != STORE_NOTFOUND)
        return src;
    MDB_cursor *c;
    int rc = mdb_cursor_open(t->txn, t->s->changes, &c);
    if (rc != MDB_SUCCESS)
        return store_lmdb_rc_from_mdb(rc, "open cursor");
    MDB_val k, v;
    uint64_t sum = 0;
    while ((rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) == MDB_SUCCESS)
        sum += v.mv_size;
    mdb_cursor_close(c);
    if (rc != MDB_NOTFOUND)
        return store_lmdb_rc_from_mdb(rc, "scan changes");
    *out = sum;
    return STORE_OK;
}

/* Drops the oldest records, but never the newest keep ones, while the log together with `adding`
 * more records of `incoming` bytes would exceed a bound: the count, the bytes, or the age of the
 * oldest record (a version 1 record counts as old). *bytes is the log's size, kept up to date. */
static enum store_rc store_lmdb_change_prune(struct store_lmdb_txn *t, uint64_t adding,
                                             uint64_t incoming, uint64_t keep, uint64_t *bytes)
{
    const struct store_lmdb *s = t->s;
    MDB_stat st;
    int rc = mdb_stat(t->txn, s->changes, &st);
    if (rc != MDB_SUCCESS)
        return store_lmdb_rc_from_mdb(rc, "count changes");
    uint64_t entries = st.ms_entries;
    int64_t now = (int64_t)time(NULL);
    MDB_cursor *c;
    rc = mdb_cursor_open(t->txn, s->changes, &c);
    if (rc != MDB_SUCCESS)
        return store_lmdb_rc_from_mdb(rc, "open cursor");
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
                                                   : store_lmdb_rc_from_mdb(rc, "prune changes");
}

enum store_rc store_lmdb_change_append(struct store_txn *base_t, struct store_change *c)
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
    enum store_rc src = store_lmdb_change_bytes(t, &bytes);
    if (src == STORE_OK)
        src = store_lmdb_change_prune(t, 1, total, 0, &bytes);
    if (src != STORE_OK)
        return src;
    uint64_t seq;
    src = store_lmdb_meta_get_u64(t->txn, t->s->meta, STORE_META_SEQ, &seq);
    if (src != STORE_OK)
        return src;
    seq++;
    src = store_lmdb_meta_put_u64(t->txn, t->s->meta, STORE_META_SEQ, seq);
    if (src == STORE_OK)
        src = store_lmdb_meta_put_u64(t->txn, t->s->meta, STORE_META_CHANGE_BYTES, bytes + total);
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
        return store_lmdb_rc_from_mdb(rc, "append change");
    t->written += sizeof kb + total;
    int64_t now = (int64_t)time(NULL);
    store_change_encode(c, now, mv.mv_data);
    c->seq = seq;
    c->time = now;
    return STORE_OK;
}

/* Pages on LMDB's free list. LMDB lets only a read transaction look at it; under MDB_NOTLS a
 * thread may hold one beside its write transaction, and both see the same committed state. */
static enum store_rc store_lmdb_free_pages(struct store_lmdb *s, uint64_t *out)
{
    *out = 0;
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    if (rc != MDB_SUCCESS)
        return store_lmdb_rc_from_mdb(rc, "begin read transaction");
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
                                                   : store_lmdb_rc_from_mdb(rc, "read free list");
}

static enum store_rc store_lmdb_space(struct store_lmdb *s, struct store_usage *out)
{
    memset(out, 0, sizeof *out);
    MDB_envinfo info;
    MDB_stat st;
    int rc = mdb_env_info(s->env, &info);
    if (rc == MDB_SUCCESS)
        rc = mdb_env_stat(s->env, &st);
    if (rc != MDB_SUCCESS)
        return store_lmdb_rc_from_mdb(rc, "read environment info");
    uint64_t free_pages;
    enum store_rc src = store_lmdb_free_pages(s, &free_pages);
    if (src != STORE_OK)
        return src;
    uint64_t pages = (uint64_t)info.me_last_pgno + 1;
    out->map_bytes = info.me_mapsize;
    out->used_bytes = (pages > free_pages ? pages - free_pages : 0) * st.ms_psize;
    out->limit_bytes =
        out->map_bytes / 100 * s->high_water + out->map_bytes % 100 * s->high_water / 100;
    return STORE_OK;
}

enum store_rc store_lmdb_space_check(struct store_txn *base_t, uint64_t incoming)
{
    struct store_lmdb_txn *t = (struct store_lmdb_txn *)base_t;
    struct store_usage u;
    enum store_rc src = store_lmdb_space(t->s, &u);
    if (src != STORE_OK)
        return src;
    /* The earlier transactions of a group commit are not in the committed state measured above:
     * count what they wrote (with no group, batch_before is 0). */
    incoming = incoming > UINT64_MAX - t->batch_before ? UINT64_MAX : incoming + t->batch_before;
    if (u.used_bytes > u.limit_bytes || incoming > u.limit_bytes - u.used_bytes)
        return STORE_FULL;
    return STORE_OK;
}

enum store_rc store_lmdb_usage_get(struct store_txn *base_t, struct store_usage *out)
{
    struct store_lmdb_txn *t = (struct store_lmdb_txn *)base_t;
    enum store_rc src = store_lmdb_space(t->s, out);
    MDB_stat st;
    if (src == STORE_OK)
        src = store_lmdb_rc_from_mdb(mdb_stat(t->txn, t->s->changes, &st), "count changes");
    if (src == STORE_OK) {
        out->change_records = st.ms_entries;
        src = store_lmdb_change_bytes(t, &out->change_bytes);
    }
    /* Entry counts LMDB keeps in each database's root: O(1), no scan. */
    if (src == STORE_OK)
        src = store_lmdb_rc_from_mdb(mdb_stat(t->txn, t->s->docs, &st), "count documents");
    if (src == STORE_OK) {
        out->documents = st.ms_entries;
        src = store_lmdb_rc_from_mdb(mdb_stat(t->txn, t->s->quota, &st), "count users");
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
void store_lmdb_headroom(struct store_lmdb *s)
{
    struct store_usage u;
    if (store_lmdb_space(s, &u) != STORE_OK)
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
void store_lmdb_maintain(struct store_lmdb *s)
{
    struct store_lmdb_txn t = {.s = s, .write = true};
    int rc = mdb_txn_begin(s->env, NULL, 0, &t.txn);
    if (rc != MDB_SUCCESS) {
        log_warn("store: no maintenance at open: %s", mdb_strerror(rc));
        return;
    }
    uint64_t bytes = 0;
    enum store_rc src = store_lmdb_quota_ensure(&t);
    if (src == STORE_OK)
        src = store_lmdb_change_bytes(&t, &bytes);
    if (src == STORE_OK)
        src = store_lmdb_change_prune(&t, 0, 0, 1, &bytes);
    if (src == STORE_OK)
        src = store_lmdb_meta_put_u64(t.txn, s->meta, STORE_META_CHANGE_BYTES, bytes);
    if (src == STORE_OK)
        src = store_lmdb_rc_from_mdb(mdb_txn_commit(t.txn), "commit maintenance");
    else
        mdb_txn_abort(t.txn);
    if (src != STORE_OK)
        log_warn("store: maintenance at open failed (%s); the next write retries",
                 store_strerror(src));
}

static enum store_rc store_lmdb_change_decode_mdb(const MDB_val *k, const MDB_val *v,
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

enum store_rc store_lmdb_change_read(struct store_txn *base_t, uint64_t after,
                                     int (*fn)(void *cls, const struct store_change *c), void *cls)
{
    struct store_lmdb_txn *t = (struct store_lmdb_txn *)base_t;
    if (after == UINT64_MAX)
        return STORE_OK;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(t->txn, t->s->changes, &cur);
    if (rc != MDB_SUCCESS)
        return store_lmdb_rc_from_mdb(rc, "open cursor");
    unsigned char kb[8];
    store_put_u64(kb, after + 1);
    MDB_val k = {sizeof kb, kb};
    MDB_val v;
    enum store_rc src = STORE_OK;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == MDB_SUCCESS) {
        struct store_change c;
        src = store_lmdb_change_decode_mdb(&k, &v, &c);
        if (src != STORE_OK || fn(cls, &c) != 0)
            break;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (src != STORE_OK)
        return src;
    return rc == MDB_SUCCESS || rc == MDB_NOTFOUND ? STORE_OK
                                                   : store_lmdb_rc_from_mdb(rc, "read changes");
}

enum store_rc store_lmdb_change_last(struct store_txn *base_t, uint64_t *out)
{
    struct store_lmdb_txn *t = (struct store_lmdb_txn *)base_t;
    *out = 0;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(t->txn, t->s->changes, &cur);
    if (rc != MDB_SUCCESS)
        return store_lmdb_rc_from_mdb(rc, "open cursor");
    MDB_val k, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND)
        return STORE_OK;
    if (rc != MDB_SUCCESS)
        return store_lmdb_rc_from_mdb(rc, "read last change");
    if (k.mv_size != 8) {
        log_error("store: corrupt change key");
        return STORE_ERROR;
    }
    *out = store_get_u64(k.mv_data);
    return STORE_OK;
}
