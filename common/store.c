/* The store dispatcher: store_open() picks the backend named in store_options, and every other
 * store_* function of store.h calls the operation of the handle's backend (store_backend.h).
 * What both backends share is in store_util.c, which the backends call; they never call back
 * into this file. */
#include "store_backend.h"

#include <stdlib.h>

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
    return t->ops->change_append(t, c);
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

int store_wake_fd(struct store *s)
{
    return s->ops->wake_fd(s);
}

void store_wake_drain(struct store *s)
{
    s->ops->wake_drain(s);
}
