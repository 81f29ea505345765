/* PostgreSQL backend (store_pg.c): documents and the per-user byte counts. */
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

#define PG_DOC_WHERE "auid = $1 AND tree = $2 AND xui = $3 AND path = $4"

static void store_pg_key_params(struct pg_params *p, const struct doc_key *k)
{
    store_pg_str(p, k->auid);
    store_pg_str(p, k->tree);
    store_pg_str(p, k->xui);
    store_pg_str(p, k->path);
}

enum store_rc store_pg_doc_get(struct store_txn *base_t, const struct doc_key *k,
                               struct store_doc *out)
{
    struct store_pg_txn *t = (struct store_pg_txn *)base_t;
    memset(out, 0, sizeof *out);
    if (!store_doc_key_valid(k, STORE_KEY_MAX))
        return STORE_INVALID;
    struct pg_params p = {0};
    store_pg_key_params(&p, k);
    PGresult *r;
    enum store_rc src = store_pg_exec(
        t, "get document", "SELECT etag, mtime, bytes FROM xdm_docs WHERE " PG_DOC_WHERE, &p, &r);
    if (src != STORE_OK)
        return src;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return STORE_NOTFOUND;
    }
    size_t etag_len = (size_t)PQgetlength(r, 0, 0);
    size_t len = (size_t)PQgetlength(r, 0, 2);
    if (etag_len >= STORE_ETAG_MAX || (out->data = malloc(len + 1)) == NULL) {
        PQclear(r);
        return STORE_ERROR;
    }
    memcpy(out->etag, PQgetvalue(r, 0, 0), etag_len);
    out->etag[etag_len] = '\0';
    out->mtime = store_pg_get_int(r, 0, 1);
    memcpy(out->data, PQgetvalue(r, 0, 2), len);
    out->data[len] = '\0';
    out->len = len;
    PQclear(r);
    return STORE_OK;
}

/* Length of the stored document of k, 0 when there is none. */
static enum store_rc store_pg_doc_len(struct store_pg_txn *t, const struct doc_key *k,
                                      uint64_t *len)
{
    struct pg_params p = {0};
    store_pg_key_params(&p, k);
    PGresult *r;
    enum store_rc src =
        store_pg_exec(t, "get document",
                      "SELECT octet_length(bytes)::int8 FROM xdm_docs WHERE " PG_DOC_WHERE, &p, &r);
    *len = src == STORE_OK && PQntuples(r) == 1 ? (uint64_t)store_pg_get_int(r, 0, 0) : 0;
    PQclear(r);
    return src;
}

/* The bytes of xui go down by sub, then up by add; a user with nothing left has no row. */
static enum store_rc store_pg_quota_add(struct store_pg_txn *t, const char *xui, uint64_t sub,
                                        uint64_t add)
{
    struct pg_params p = {0};
    store_pg_str(&p, xui);
    PGresult *r;
    enum store_rc src =
        store_pg_exec(t, "read quota", "SELECT bytes FROM xdm_quota WHERE xui = $1", &p, &r);
    if (src != STORE_OK)
        return src;
    uint64_t cur = PQntuples(r) == 1 ? (uint64_t)store_pg_get_int(r, 0, 0) : 0;
    PQclear(r);
    cur = (cur > sub ? cur - sub : 0) + add;
    if (cur == 0)
        return store_pg_exec(t, "write quota", "DELETE FROM xdm_quota WHERE xui = $1", &p, NULL);
    store_pg_int(&p, (int64_t)cur);
    return store_pg_exec(t, "write quota",
                         "INSERT INTO xdm_quota (xui, bytes) VALUES ($1, $2) "
                         "ON CONFLICT (xui) DO UPDATE SET bytes = EXCLUDED.bytes",
                         &p, NULL);
}

/* The next value of a counter in xdm_meta; under the writer lock, so values follow commits. */
enum store_rc store_pg_meta_next(struct store_pg_txn *t, const char *name, int64_t *out)
{
    struct pg_params p = {0};
    store_pg_text(&p, name);
    PGresult *r;
    enum store_rc src = store_pg_exec(
        t, "write meta", "UPDATE xdm_meta SET num = num + 1 WHERE name = $1 RETURNING num", &p, &r);
    if (src == STORE_OK && PQntuples(r) != 1) {
        log_error("store: postgresql: xdm_meta has no %s", name);
        src = STORE_ERROR;
    }
    *out = src == STORE_OK ? store_pg_get_int(r, 0, 0) : 0;
    PQclear(r);
    return src;
}

/* ETags as on LMDB: "<counter>-<first 8 hex of the instance id>", the counter in xdm_meta only
 * grows, within the writing transaction and under the writer lock, so no value repeats in this
 * database whichever process writes (RFC 4825 §7.11). */
enum store_rc store_pg_doc_put(struct store_txn *base_t, const struct doc_key *k, const char *data,
                               size_t len, char etag_out[STORE_ETAG_MAX])
{
    struct store_pg_txn *t = (struct store_pg_txn *)base_t;
    if (!t->write || (data == NULL && len != 0) || len > INT32_MAX / 2)
        return STORE_INVALID;
    if (!store_doc_key_valid(k, STORE_KEY_MAX))
        return STORE_INVALID;
    bool counted = store_key_counted(k);
    uint64_t old_len = 0;
    enum store_rc src = counted ? store_pg_doc_len(t, k, &old_len) : STORE_OK;
    int64_t counter = 0;
    if (src == STORE_OK)
        src = store_pg_meta_next(t, "etag_counter", &counter);
    if (src != STORE_OK)
        return src;
    char etag[STORE_ETAG_MAX];
    snprintf(etag, sizeof etag, "%" PRId64 "-%.8s", counter, t->s->instance);
    struct pg_params p = {0};
    store_pg_key_params(&p, k);
    store_pg_text(&p, etag);
    store_pg_int(&p, (int64_t)time(NULL));
    store_pg_bytes(&p, data, len);
    src = store_pg_exec(
        t, "put document",
        "INSERT INTO xdm_docs (auid, tree, xui, path, etag, mtime, bytes) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (auid, tree, xui, path) DO "
        "UPDATE SET etag = EXCLUDED.etag, mtime = EXCLUDED.mtime, bytes = EXCLUDED.bytes",
        &p, NULL);
    if (src == STORE_OK && counted)
        src = store_pg_quota_add(t, k->xui, old_len, len);
    if (src == STORE_OK && etag_out != NULL)
        memcpy(etag_out, etag, strlen(etag) + 1);
    return src;
}

enum store_rc store_pg_doc_del(struct store_txn *base_t, const struct doc_key *k)
{
    struct store_pg_txn *t = (struct store_pg_txn *)base_t;
    if (!t->write || !store_doc_key_valid(k, STORE_KEY_MAX))
        return STORE_INVALID;
    struct pg_params p = {0};
    store_pg_key_params(&p, k);
    PGresult *r;
    enum store_rc src = store_pg_exec(
        t, "delete document",
        "DELETE FROM xdm_docs WHERE " PG_DOC_WHERE " RETURNING octet_length(bytes)::int8", &p, &r);
    if (src != STORE_OK)
        return src;
    bool found = PQntuples(r) == 1;
    uint64_t old_len = found ? (uint64_t)store_pg_get_int(r, 0, 0) : 0;
    PQclear(r);
    if (!found)
        return STORE_NOTFOUND;
    return store_key_counted(k) ? store_pg_quota_add(t, k->xui, old_len, 0) : STORE_OK;
}

/* Calls fn for the rows of r (auid, tree, xui, path, etag, mtime, length); *stopped when fn
 * returned non-zero. */
static enum store_rc store_pg_doc_rows(const PGresult *r,
                                       int (*fn)(void *cls, const struct store_doc_view *d),
                                       void *cls, bool *stopped)
{
    *stopped = false;
    for (int i = 0; i < PQntuples(r); i++) {
        /* Views: binary bytea values are NUL-terminated by libpq, and a key component holds no
         * NUL, so each is a C string. */
        char etag[STORE_ETAG_MAX];
        size_t etag_len = (size_t)PQgetlength(r, i, 4);
        if (etag_len >= sizeof etag)
            return STORE_ERROR;
        memcpy(etag, PQgetvalue(r, i, 4), etag_len);
        etag[etag_len] = '\0';
        struct store_doc_view v = {
            .key = {PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2),
                    PQgetvalue(r, i, 3)},
            .etag = etag,
            .mtime = store_pg_get_int(r, i, 5),
            .len = (size_t)store_pg_get_int(r, i, 6),
        };
        if (fn(cls, &v) != 0) {
            *stopped = true;
            return STORE_OK;
        }
    }
    return STORE_OK;
}

#define PG_DOC_COLS "auid, tree, xui, path, etag, mtime, octet_length(bytes)::int8"
#define PG_DOC_ORDER " ORDER BY auid, tree, xui, path"

enum store_rc store_pg_doc_list(struct store_txn *base_t, const char *auid, const char *tree,
                                const char *xui, const char *path_prefix,
                                int (*fn)(void *cls, const struct store_doc_view *d), void *cls)
{
    struct store_pg_txn *t = (struct store_pg_txn *)base_t;
    if (tree == NULL || xui == NULL || path_prefix == NULL)
        return STORE_INVALID;
    /* The same bound as a key: a prefix longer than any key matches nothing (LMDB: invalid when
     * the AUID is given). */
    size_t klen =
        strlen(auid != NULL ? auid : "") + strlen(tree) + strlen(xui) + strlen(path_prefix) + 3;
    if (klen > STORE_KEY_MAX)
        return auid != NULL ? STORE_INVALID : STORE_OK;
    struct pg_params p = {0};
    store_pg_str(&p, tree);
    store_pg_str(&p, xui);
    store_pg_str(&p, path_prefix);
    if (auid != NULL)
        store_pg_str(&p, auid);
    PGresult *r;
    enum store_rc src = store_pg_exec(
        t, "list documents",
        auid != NULL
            ? "SELECT " PG_DOC_COLS " FROM xdm_docs WHERE tree = $1 AND xui = $2 AND "
              "path >= $3 AND substring(path from 1 for octet_length($3)) = $3 AND "
              "auid = $4" PG_DOC_ORDER
            : "SELECT " PG_DOC_COLS " FROM xdm_docs WHERE tree = $1 AND xui = $2 AND "
              "path >= $3 AND substring(path from 1 for octet_length($3)) = $3" PG_DOC_ORDER,
        &p, &r);
    if (src != STORE_OK)
        return src;
    bool stopped;
    src = store_pg_doc_rows(r, fn, cls, &stopped);
    PQclear(r);
    return src;
}

/* Every document in batches (keyset pagination: one snapshot, so no row is missed or seen
 * twice), so that the memory held stays bounded whatever the store's size. */
enum store_rc store_pg_doc_each(struct store_txn *base_t,
                                int (*fn)(void *cls, const struct store_doc_view *d), void *cls)
{
    struct store_pg_txn *t = (struct store_pg_txn *)base_t;
    PGresult *r = NULL;
    enum store_rc src =
        store_pg_exec(t, "list documents",
                      "SELECT " PG_DOC_COLS " FROM xdm_docs" PG_DOC_ORDER " LIMIT " STORE_PG_BATCH,
                      &(struct pg_params){0}, &r);
    while (src == STORE_OK) {
        bool stopped;
        int n = PQntuples(r);
        src = store_pg_doc_rows(r, fn, cls, &stopped);
        if (src != STORE_OK || stopped || n < atoi(STORE_PG_BATCH))
            break;
        struct pg_params p = {0};
        for (int c = 0; c < 4; c++)
            store_pg_bytes(&p, PQgetvalue(r, n - 1, c), (size_t)PQgetlength(r, n - 1, c));
        PGresult *next;
        src = store_pg_exec(t, "list documents",
                            "SELECT " PG_DOC_COLS " FROM xdm_docs WHERE (auid, tree, xui, path) > "
                            "($1, $2, $3, $4)" PG_DOC_ORDER " LIMIT " STORE_PG_BATCH,
                            &p, &next);
        PQclear(r);
        r = next;
    }
    PQclear(r);
    return src;
}

enum store_rc store_pg_count(struct store_pg_txn *t, const char *what, const char *sql,
                             const struct pg_params *p, uint64_t *out)
{
    PGresult *r;
    enum store_rc src = store_pg_exec(t, what, sql, p, &r);
    *out = src == STORE_OK && PQntuples(r) == 1 ? (uint64_t)store_pg_get_int(r, 0, 0) : 0;
    PQclear(r);
    return src;
}

enum store_rc store_pg_doc_count_user(struct store_txn *base_t, const char *xui, uint64_t *out)
{
    *out = 0;
    if (xui == NULL)
        return STORE_INVALID;
    struct pg_params p = {0};
    store_pg_str(&p, xui);
    return store_pg_count((struct store_pg_txn *)base_t, "count documents",
                          "SELECT count(*) FROM xdm_docs WHERE xui = $1 AND tree = 'users'::bytea",
                          &p, out);
}

enum store_rc store_pg_user_bytes(struct store_txn *base_t, const char *xui, uint64_t *out)
{
    *out = 0;
    if (xui == NULL)
        return STORE_INVALID;
    if (xui[0] == '\0')
        return STORE_OK;
    struct pg_params p = {0};
    store_pg_str(&p, xui);
    return store_pg_count((struct store_pg_txn *)base_t, "read quota",
                          "SELECT bytes FROM xdm_quota WHERE xui = $1", &p, out);
}

/* No map, no high-water mark: a full disk fails the write itself (STORE_ERROR). */
enum store_rc store_pg_space_check(struct store_txn *base_t, uint64_t incoming)
{
    (void)base_t;
    (void)incoming;
    return STORE_OK;
}

enum store_rc store_pg_usage_get(struct store_txn *base_t, struct store_usage *out)
{
    struct store_pg_txn *t = (struct store_pg_txn *)base_t;
    memset(out, 0, sizeof *out);
    PGresult *r;
    enum store_rc src =
        store_pg_exec(t, "read usage",
                      "SELECT pg_database_size(current_database())::int8, "
                      "(SELECT count(*) FROM xdm_docs), (SELECT count(*) FROM xdm_quota), "
                      "(SELECT num FROM xdm_meta WHERE name = 'change_count'), "
                      "(SELECT num FROM xdm_meta WHERE name = 'change_bytes')",
                      &(struct pg_params){0}, &r);
    if (src != STORE_OK)
        return src;
    /* No map: map_bytes and limit_bytes stay 0, used_bytes is the database's size on disk. */
    out->used_bytes = (uint64_t)store_pg_get_int(r, 0, 0);
    out->documents = (uint64_t)store_pg_get_int(r, 0, 1);
    out->users = (uint64_t)store_pg_get_int(r, 0, 2);
    out->change_records = (uint64_t)store_pg_get_int(r, 0, 3);
    out->change_bytes = (uint64_t)store_pg_get_int(r, 0, 4);
    PQclear(r);
    return STORE_OK;
}

/* Change log -------------------------------------------------------------------------------- */
