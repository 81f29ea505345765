/* The store dispatcher: store_open() picks the backend named in store_options, and every other
 * store_* function of store.h calls the operation of the handle's backend (store_backend.h).
 * What both backends share is in store_util.c, which the backends call; they never call back
 * into this file. */
#include "store_backend.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

enum store_rc store_open(const char *dir, const struct store_options *opts, struct store **out)
{
    *out = NULL;
    if (opts != NULL && opts->backend == STORE_BACKEND_POSTGRESQL)
        return store_pg_open(opts, out);
    return store_lmdb_open(dir, opts, out);
}

void store_close(struct store *s)
{
    if (s != NULL)
        s->ops->close(s);
}

const char *store_instance_id(const struct store *s)
{
    return s->ops->instance_id(s);
}

enum store_rc store_txn_begin(struct store *s, bool write, struct store_txn **out)
{
    return s->ops->txn_begin(s, write, out);
}

enum store_rc store_write(struct store *s, store_write_fn fn, void *cls, int *result)
{
    *result = 0;
    if (s->ops->write != NULL)
        return s->ops->write(s, fn, cls, result);
    struct store_txn *t;
    enum store_rc rc = store_txn_begin(s, true, &t);
    if (rc != STORE_OK)
        return rc;
    *result = fn(cls, t);
    if (*result != 0) {
        store_txn_abort(t);
        return STORE_OK;
    }
    return store_txn_commit(t);
}

enum store_rc store_batch_begin(struct store *s)
{
    return s->ops->batch_begin != NULL ? s->ops->batch_begin(s) : STORE_INVALID;
}

enum store_rc store_batch_end(struct store *s)
{
    return s->ops->batch_end != NULL ? s->ops->batch_end(s) : STORE_INVALID;
}

enum store_rc store_txn_commit(struct store_txn *t)
{
    return t->ops->txn_commit(t);
}

void store_txn_abort(struct store_txn *t)
{
    if (t != NULL)
        t->ops->txn_abort(t);
}

enum store_rc store_doc_get(struct store_txn *t, const struct doc_key *k, struct store_doc *out)
{
    return t->ops->doc_get(t, k, out);
}

enum store_rc store_doc_put(struct store_txn *t, const struct doc_key *k, const char *data,
                            size_t len, char etag_out[STORE_ETAG_MAX])
{
    return t->ops->doc_put(t, k, data, len, etag_out);
}

enum store_rc store_doc_del(struct store_txn *t, const struct doc_key *k)
{
    return t->ops->doc_del(t, k);
}

void store_doc_release(struct store_doc *d)
{
    if (d == NULL)
        return;
    free(d->data);
    d->data = NULL;
    d->len = 0;
}

enum store_rc store_doc_list(struct store_txn *t, const char *auid, const char *tree,
                             const char *xui, const char *path_prefix,
                             int (*fn)(void *cls, const struct store_doc_view *d), void *cls)
{
    return t->ops->doc_list(t, auid, tree, xui, path_prefix, fn, cls);
}

enum store_rc store_doc_each(struct store_txn *t,
                             int (*fn)(void *cls, const struct store_doc_view *d), void *cls)
{
    return t->ops->doc_each(t, fn, cls);
}

enum store_rc store_doc_count_user(struct store_txn *t, const char *xui, uint64_t *out)
{
    return t->ops->doc_count_user(t, xui, out);
}

enum store_rc store_user_bytes(struct store_txn *t, const char *xui, uint64_t *out)
{
    return t->ops->user_bytes(t, xui, out);
}

enum store_rc store_space_check(struct store_txn *t, uint64_t incoming)
{
    return t->ops->space_check(t, incoming);
}

enum store_rc store_usage_get(struct store_txn *t, struct store_usage *out)
{
    return t->ops->usage_get(t, out);
}

enum store_rc store_change_append(struct store_txn *t, struct store_change *c)
{
    c->charge_seq = 0;
    c->charge_full = false;
    enum store_rc rc = t->ops->change_append(t, c);
    if (rc != STORE_OK || c->charge == NULL)
        return rc;
    /* The charging record of the change lands in the same transaction as its change-log record,
     * so that one is committed exactly when the other is. */
    rc = store_charge_append(t, c->charge_queue, c->charge, c->charge_len, c->charge_max,
                             &c->charge_seq);
    if (rc == STORE_FULL) {
        c->charge_full = true;
        return STORE_OK;
    }
    return rc;
}

/* Keys of the charging table: 'N' the counter of record numbers; 'C' queue: the records of
 * queue; 'Q' queue \0 seq (8 bytes, big-endian, so key order is number order): one record. */
#define STORE_CHARGE_KEY_MAX (1 + STORE_CHARGE_QUEUE_MAX + 1 + 8)

static size_t store_charge_key(char tag, const char *queue, uint64_t seq, bool with_seq,
                               unsigned char out[STORE_CHARGE_KEY_MAX])
{
    size_t n = strlen(queue);
    out[0] = (unsigned char)tag;
    memcpy(out + 1, queue, n);
    if (tag == 'C')
        return 1 + n;
    out[1 + n] = '\0';
    if (!with_seq)
        return 2 + n;
    store_put_u64(out + 2 + n, seq);
    return 2 + n + 8;
}

static bool store_charge_queue_ok(const char *queue)
{
    return queue != NULL && queue[0] != '\0' && strlen(queue) <= STORE_CHARGE_QUEUE_MAX;
}

static enum store_rc store_charge_u64(struct store_txn *t, const void *key, size_t klen,
                                      uint64_t *out)
{
    void *v = NULL;
    size_t vlen = 0;
    *out = 0;
    enum store_rc rc = store_kv_get(t, STORE_CHARGE_TABLE, key, klen, &v, &vlen);
    if (rc == STORE_NOTFOUND)
        return STORE_OK;
    if (rc == STORE_OK && vlen == 8)
        *out = store_get_u64(v);
    else if (rc == STORE_OK) {
        log_error("store: corrupt charging counter");
        rc = STORE_ERROR;
    }
    free(v);
    return rc;
}

static enum store_rc store_charge_u64_put(struct store_txn *t, const void *key, size_t klen,
                                          uint64_t v)
{
    unsigned char b[8];
    store_put_u64(b, v);
    return store_kv_put(t, STORE_CHARGE_TABLE, key, klen, b, sizeof b);
}

enum store_rc store_charge_append(struct store_txn *t, const char *queue, const void *rec,
                                  size_t len, uint64_t max, uint64_t *seq_out)
{
    if (!store_charge_queue_ok(queue) || (rec == NULL && len != 0))
        return STORE_INVALID;
    unsigned char ck[STORE_CHARGE_KEY_MAX], qk[STORE_CHARGE_KEY_MAX];
    size_t cklen = store_charge_key('C', queue, 0, false, ck);
    uint64_t count, seq;
    enum store_rc rc = store_charge_u64(t, ck, cklen, &count);
    if (rc != STORE_OK)
        return rc;
    if (max != 0 && count >= max)
        return STORE_FULL;
    if ((rc = store_charge_u64(t, "N", 1, &seq)) != STORE_OK)
        return rc;
    seq++;
    size_t qklen = store_charge_key('Q', queue, seq, true, qk);
    if ((rc = store_charge_u64_put(t, "N", 1, seq)) == STORE_OK &&
        (rc = store_charge_u64_put(t, ck, cklen, count + 1)) == STORE_OK)
        rc = store_kv_put(t, STORE_CHARGE_TABLE, qk, qklen, rec, len);
    if (rc == STORE_OK && seq_out)
        *seq_out = seq;
    return rc;
}

struct store_charge_scan {
    size_t left;
    size_t prefix;
    int (*fn)(void *cls, uint64_t seq, const void *rec, size_t len);
    void *cls;
};

static int store_charge_each(void *cls, const void *key, size_t klen, const void *val, size_t vlen)
{
    struct store_charge_scan *sc = cls;
    if (sc->left == 0)
        return 1;
    if (klen != sc->prefix + 8)
        return 0; /* not a record of this queue (a longer name with this one as prefix) */
    sc->left--;
    return sc->fn(sc->cls, store_get_u64((const unsigned char *)key + sc->prefix), val, vlen);
}

enum store_rc store_charge_read(struct store_txn *t, const char *queue, size_t max_records,
                                int (*fn)(void *cls, uint64_t seq, const void *rec, size_t len),
                                void *cls)
{
    if (!store_charge_queue_ok(queue))
        return STORE_INVALID;
    unsigned char qk[STORE_CHARGE_KEY_MAX];
    size_t plen = store_charge_key('Q', queue, 0, false, qk);
    struct store_charge_scan sc = {max_records, plen, fn, cls};
    return store_kv_scan(t, STORE_CHARGE_TABLE, qk, plen, store_charge_each, &sc);
}

enum store_rc store_charge_del(struct store_txn *t, const char *queue, uint64_t seq)
{
    if (!store_charge_queue_ok(queue))
        return STORE_INVALID;
    unsigned char ck[STORE_CHARGE_KEY_MAX], qk[STORE_CHARGE_KEY_MAX];
    size_t cklen = store_charge_key('C', queue, 0, false, ck);
    size_t qklen = store_charge_key('Q', queue, seq, true, qk);
    enum store_rc rc = store_kv_del(t, STORE_CHARGE_TABLE, qk, qklen);
    if (rc != STORE_OK)
        return rc;
    uint64_t count;
    if ((rc = store_charge_u64(t, ck, cklen, &count)) != STORE_OK)
        return rc;
    return store_charge_u64_put(t, ck, cklen, count ? count - 1 : 0);
}

enum store_rc store_charge_count(struct store_txn *t, const char *queue, uint64_t *out)
{
    *out = 0;
    if (!store_charge_queue_ok(queue))
        return STORE_INVALID;
    unsigned char ck[STORE_CHARGE_KEY_MAX];
    size_t cklen = store_charge_key('C', queue, 0, false, ck);
    return store_charge_u64(t, ck, cklen, out);
}

struct store_charge_queue_scan {
    int (*fn)(void *cls, const char *queue, uint64_t count);
    void *cls;
};

static int store_charge_queue_each(void *cls, const void *key, size_t klen, const void *val,
                                   size_t vlen)
{
    struct store_charge_queue_scan *sc = cls;
    char queue[STORE_CHARGE_QUEUE_MAX + 1];
    if (klen < 2 || klen - 1 > STORE_CHARGE_QUEUE_MAX || vlen != 8)
        return 0;
    memcpy(queue, (const char *)key + 1, klen - 1);
    queue[klen - 1] = '\0';
    return sc->fn(sc->cls, queue, store_get_u64(val));
}

enum store_rc store_charge_queues(struct store_txn *t,
                                  int (*fn)(void *cls, const char *queue, uint64_t count),
                                  void *cls)
{
    struct store_charge_queue_scan sc = {fn, cls};
    return store_kv_scan(t, STORE_CHARGE_TABLE, "C", 1, store_charge_queue_each, &sc);
}

enum store_rc store_change_read(struct store_txn *t, uint64_t after,
                                int (*fn)(void *cls, const struct store_change *c), void *cls)
{
    return t->ops->change_read(t, after, fn, cls);
}

enum store_rc store_change_last(struct store_txn *t, uint64_t *out)
{
    return t->ops->change_last(t, out);
}

enum store_rc store_kv_get(struct store_txn *t, const char *table, const void *key, size_t klen,
                           void **val, size_t *vlen)
{
    return t->ops->kv_get(t, table, key, klen, val, vlen);
}

enum store_rc store_kv_put(struct store_txn *t, const char *table, const void *key, size_t klen,
                           const void *val, size_t vlen)
{
    return t->ops->kv_put(t, table, key, klen, val, vlen);
}

enum store_rc store_kv_del(struct store_txn *t, const char *table, const void *key, size_t klen)
{
    return t->ops->kv_del(t, table, key, klen);
}

enum store_rc store_kv_scan(struct store_txn *t, const char *table, const void *prefix, size_t plen,
                            int (*fn)(void *cls, const void *key, size_t klen, const void *val,
                                      size_t vlen),
                            void *cls)
{
    return t->ops->kv_scan(t, table, prefix, plen, fn, cls);
}

void store_group_stats(struct store *s, struct store_group_stats *out)
{
    memset(out, 0, sizeof *out);
    if (s->ops->group_stats != NULL)
        s->ops->group_stats(s, out);
}

int store_wake_fd(struct store *s)
{
    return s->ops->wake_fd(s);
}

void store_wake_drain(struct store *s)
{
    s->ops->wake_drain(s);
}
