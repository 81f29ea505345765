/* The helpers every file of the LMDB backend shares (store_lmdb_internal.h): LMDB results as
 * store_rc, the uint64 counters of the meta table, and docs keys. A leaf of the backend: the
 * operations (store_lmdb_doc.c, store_lmdb_kv.c, store_lmdb_log.c) and the handle
 * (store_lmdb.c) call it, it calls none of them. */
#include "store_backend.h"
#include "store_lmdb_internal.h"

#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "log.h"

/* Maps an LMDB result to a store_rc. Expected outcomes (not found, map full) are returned
 * silently: the caller answers them (404, 503). Anything else is unexpected and logged here, the
 * one place that still knows the LMDB error text. */
enum store_rc store_lmdb_rc_from_mdb(int rc, const char *what)
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

/* Reads an 8-byte counter of table dbi ("what" names the table in messages): STORE_NOTFOUND
 * (*out = 0) when it was never written. */
enum store_rc store_lmdb_find_u64(MDB_txn *txn, MDB_dbi dbi, const char *key, const char *what,
                                  uint64_t *out)
{
    *out = 0;
    MDB_val k = {strlen(key), (void *)key};
    MDB_val v;
    int rc = mdb_get(txn, dbi, &k, &v);
    if (rc != MDB_SUCCESS)
        return store_lmdb_rc_from_mdb(rc, what);
    if (v.mv_size != 8) {
        log_error("store: %s record %s has a bad size (%zu)", what, key, v.mv_size);
        return STORE_ERROR;
    }
    *out = store_get_u64(v.mv_data);
    return STORE_OK;
}

/* Reads a uint64 meta value: STORE_NOTFOUND (*out = 0) when it was never written. */
enum store_rc store_lmdb_meta_find_u64(MDB_txn *txn, MDB_dbi meta, const char *name, uint64_t *out)
{
    return store_lmdb_find_u64(txn, meta, name, "meta", out);
}

/* Reads a uint64 meta value; 0 when it was never written. */
enum store_rc store_lmdb_meta_get_u64(MDB_txn *txn, MDB_dbi meta, const char *name, uint64_t *out)
{
    enum store_rc src = store_lmdb_meta_find_u64(txn, meta, name, out);
    return src == STORE_NOTFOUND ? STORE_OK : src;
}

enum store_rc store_lmdb_meta_put_u64(MDB_txn *txn, MDB_dbi meta, const char *name, uint64_t value)
{
    unsigned char bytes[8];
    store_put_u64(bytes, value);
    MDB_val k = {strlen(name), (void *)name};
    MDB_val v = {sizeof bytes, bytes};
    return store_lmdb_rc_from_mdb(mdb_put(txn, meta, &k, &v, 0), "write meta");
}

static bool store_lmdb_key_append(struct store_key *k, size_t max, const char *part, bool nul)
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
enum store_rc store_lmdb_key_build(const struct store_lmdb *s, struct store_key *k,
                                   const char *auid, const char *tree, const char *xui,
                                   const char *last)
{
    if (auid == NULL || tree == NULL || xui == NULL || last == NULL)
        return STORE_INVALID;
    k->len = 0;
    if (!store_lmdb_key_append(k, s->key_max, auid, true) ||
        !store_lmdb_key_append(k, s->key_max, tree, true) ||
        !store_lmdb_key_append(k, s->key_max, xui, true) ||
        !store_lmdb_key_append(k, s->key_max, last, false))
        return STORE_INVALID;
    return STORE_OK;
}

/* A document key needs an AUID, a tree and a document path; the xui is "" in the global tree. */
enum store_rc store_lmdb_doc_key(const struct store_lmdb *s, struct store_key *out,
                                 const struct doc_key *k)
{
    if (k == NULL || k->auid == NULL || k->auid[0] == '\0' || k->tree == NULL ||
        k->tree[0] == '\0' || k->path == NULL || k->path[0] == '\0')
        return STORE_INVALID;
    return store_lmdb_key_build(s, out, k->auid, k->tree, k->xui, k->path);
}

/* Splits a docs key copied into buf (k->len + 1 bytes) into its four components. */
bool store_lmdb_key_split(char *buf, size_t len, struct doc_key *out)
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
