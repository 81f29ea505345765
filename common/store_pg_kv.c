/* PostgreSQL backend (store_pg.c): the extra tables (generic keys and values). */
#include "store_backend.h"
#include "store_pg_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

static enum store_rc store_pg_table_check(const struct store_pg_txn *t, const char *table)
{
    if (table == NULL)
        return STORE_INVALID;
    for (size_t i = 0; i < t->s->n_tables; i++)
        if (strcmp(t->s->tables[i], table) == 0)
            return STORE_OK;
    return STORE_INVALID;
}

static enum store_rc store_pg_kv_check(const struct store_pg_txn *t, const char *table,
                                       const void *key, size_t klen)
{
    if (key == NULL || klen == 0 || klen > STORE_KEY_MAX)
        return STORE_INVALID;
    return store_pg_table_check(t, table);
}

enum store_rc store_pg_kv_get(struct store_txn *base_t, const char *table, const void *key,
                              size_t klen, void **val, size_t *vlen)
{
    struct store_pg_txn *t = (struct store_pg_txn *)base_t;
    *val = NULL;
    *vlen = 0;
    enum store_rc src = store_pg_kv_check(t, table, key, klen);
    if (src != STORE_OK)
        return src;
    struct pg_params p = {0};
    store_pg_text(&p, table);
    store_pg_bytes(&p, key, klen);
    PGresult *r;
    src = store_pg_exec(t, "get", "SELECT value FROM xdm_kv WHERE tbl = $1 AND key = $2", &p, &r);
    if (src != STORE_OK)
        return src;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return STORE_NOTFOUND;
    }
    size_t len = (size_t)PQgetlength(r, 0, 0);
    char *copy = malloc(len + 1);
    if (copy == NULL) {
        PQclear(r);
        return STORE_ERROR;
    }
    memcpy(copy, PQgetvalue(r, 0, 0), len);
    copy[len] = '\0';
    PQclear(r);
    *val = copy;
    *vlen = len;
    return STORE_OK;
}

enum store_rc store_pg_kv_put(struct store_txn *base_t, const char *table, const void *key,
                              size_t klen, const void *val, size_t vlen)
{
    struct store_pg_txn *t = (struct store_pg_txn *)base_t;
    if (!t->write || (val == NULL && vlen != 0) || vlen > INT32_MAX / 2)
        return STORE_INVALID;
    enum store_rc src = store_pg_kv_check(t, table, key, klen);
    if (src != STORE_OK)
        return src;
    struct pg_params p = {0};
    store_pg_text(&p, table);
    store_pg_bytes(&p, key, klen);
    store_pg_bytes(&p, val, vlen);
    return store_pg_exec(t, "put",
                         "INSERT INTO xdm_kv (tbl, key, value) VALUES ($1, $2, $3) "
                         "ON CONFLICT (tbl, key) DO UPDATE SET value = EXCLUDED.value",
                         &p, NULL);
}

enum store_rc store_pg_kv_del(struct store_txn *base_t, const char *table, const void *key,
                              size_t klen)
{
    struct store_pg_txn *t = (struct store_pg_txn *)base_t;
    if (!t->write)
        return STORE_INVALID;
    enum store_rc src = store_pg_kv_check(t, table, key, klen);
    if (src != STORE_OK)
        return src;
    struct pg_params p = {0};
    store_pg_text(&p, table);
    store_pg_bytes(&p, key, klen);
    PGresult *r;
    src = store_pg_exec(t, "delete", "DELETE FROM xdm_kv WHERE tbl = $1 AND key = $2", &p, &r);
    if (src != STORE_OK)
        return src;
    bool found = strcmp(PQcmdTuples(r), "0") != 0;
    PQclear(r);
    return found ? STORE_OK : STORE_NOTFOUND;
}

enum store_rc
store_pg_kv_scan(struct store_txn *base_t, const char *table, const void *prefix, size_t plen,
                 int (*fn)(void *cls, const void *key, size_t klen, const void *val, size_t vlen),
                 void *cls)
{
    struct store_pg_txn *t = (struct store_pg_txn *)base_t;
    if (plen > STORE_KEY_MAX || (prefix == NULL && plen != 0))
        return STORE_INVALID;
    enum store_rc src = store_pg_table_check(t, table);
    if (src != STORE_OK)
        return src;
    PGresult *r = NULL;
    for (bool first = true;; first = false) {
        struct pg_params p = {0};
        store_pg_text(&p, table);
        store_pg_bytes(&p, prefix, plen);
        if (!first)
            store_pg_bytes(&p, PQgetvalue(r, PQntuples(r) - 1, 0),
                           (size_t)PQgetlength(r, PQntuples(r) - 1, 0));
        PGresult *next;
        src =
            store_pg_exec(t, "scan",
                          first ? "SELECT key, value FROM xdm_kv WHERE tbl = $1 AND key >= $2 AND "
                                  "substring(key from 1 for octet_length($2)) = $2 ORDER BY key "
                                  "LIMIT " STORE_PG_BATCH
                                : "SELECT key, value FROM xdm_kv WHERE tbl = $1 AND key > $3 AND "
                                  "substring(key from 1 for octet_length($2)) = $2 ORDER BY key "
                                  "LIMIT " STORE_PG_BATCH,
                          &p, &next);
        PQclear(r);
        r = next;
        if (src != STORE_OK)
            break;
        int n = PQntuples(r);
        for (int i = 0; i < n; i++)
            if (fn(cls, PQgetvalue(r, i, 0), (size_t)PQgetlength(r, i, 0), PQgetvalue(r, i, 1),
                   (size_t)PQgetlength(r, i, 1)) != 0)
                goto done;
        if (n < atoi(STORE_PG_BATCH))
            break;
    }
done:
    PQclear(r);
    return src;
}

/* Wake-up ------------------------------------------------------------------------------------ */
