/* PostgreSQL backend (store_pg.c): the change log, its bounds and pruning. */
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

static enum store_rc store_pg_change_size(struct store_pg_txn *t, uint64_t *count, uint64_t *bytes)
{
    PGresult *r;
    enum store_rc src =
        store_pg_exec(t, "read change-log size",
                      "SELECT (SELECT num FROM xdm_meta WHERE name = 'change_count'), "
                      "(SELECT num FROM xdm_meta WHERE name = 'change_bytes')",
                      &(struct pg_params){0}, &r);
    *count = src == STORE_OK ? (uint64_t)store_pg_get_int(r, 0, 0) : 0;
    *bytes = src == STORE_OK ? (uint64_t)store_pg_get_int(r, 0, 1) : 0;
    PQclear(r);
    return src;
}

static enum store_rc store_pg_change_size_put(struct store_pg_txn *t, uint64_t count,
                                              uint64_t bytes)
{
    struct pg_params p = {0};
    store_pg_int(&p, (int64_t)count);
    store_pg_int(&p, (int64_t)bytes);
    return store_pg_exec(
        t, "write change-log size",
        "UPDATE xdm_meta SET num = CASE name WHEN 'change_count' THEN $1 ELSE $2 END "
        "WHERE name IN ('change_count', 'change_bytes')",
        &p, NULL);
}

/* As on LMDB: drops the oldest records, never the newest keep ones, while the log with `adding`
 * more records of `incoming` bytes would exceed a bound (count, bytes, age). */
enum store_rc store_pg_prune(struct store_pg_txn *t, uint64_t adding, uint64_t incoming,
                             uint64_t keep)
{
    uint64_t count, bytes;
    enum store_rc src = store_pg_change_size(t, &count, &bytes);
    const struct store_bounds *b = &t->s->b;
    int64_t now = (int64_t)time(NULL);
    bool changed = false;
    while (src == STORE_OK && count > keep) {
        PGresult *r;
        src = store_pg_exec(t, "prune changes",
                            "SELECT seq, time, octet_length(record)::int8 FROM xdm_changes "
                            "ORDER BY seq LIMIT 1",
                            &(struct pg_params){0}, &r);
        if (src != STORE_OK)
            break;
        if (PQntuples(r) != 1) {
            PQclear(r);
            count = 0; /* the count was out of step: nothing is left */
            changed = true;
            break;
        }
        int64_t seq = store_pg_get_int(r, 0, 0), when = store_pg_get_int(r, 0, 1);
        uint64_t size = (uint64_t)store_pg_get_int(r, 0, 2);
        PQclear(r);
        bool over = count + adding > b->retention || bytes + incoming > b->change_max_bytes;
        if (!over && b->change_max_age != 0)
            over = when <= 0 || (now > when && (uint64_t)(now - when) > b->change_max_age);
        if (!over)
            break;
        struct pg_params p = {0};
        store_pg_int(&p, seq);
        src = store_pg_exec(t, "prune changes", "DELETE FROM xdm_changes WHERE seq = $1", &p, NULL);
        count--;
        bytes = bytes > size ? bytes - size : 0;
        changed = true;
    }
    if (src == STORE_OK && changed)
        src = store_pg_change_size_put(t, count, bytes);
    return src;
}

/* The sequence number is taken from xdm_meta under the writer lock, so it is gap-free and in
 * commit order across every process; the NOTIFY is delivered to listeners at the commit. */
enum store_rc store_pg_change_append(struct store_txn *base_t, struct store_change *c)
{
    struct store_pg_txn *t = (struct store_pg_txn *)base_t;
    if (!t->write || c == NULL || (c->kind != STORE_CHANGE_PUT && c->kind != STORE_CHANGE_DELETE) ||
        (c->detail == NULL && c->detail_len != 0))
        return STORE_INVALID;
    size_t total = store_change_size(c);
    if (total == 0 || total > INT32_MAX / 2)
        return STORE_INVALID;
    unsigned char *rec = malloc(total);
    if (rec == NULL)
        return STORE_ERROR;
    int64_t now = (int64_t)time(NULL), seq = 0;
    store_change_encode(c, now, rec);
    enum store_rc src = store_pg_prune(t, 1, total, 0);
    if (src == STORE_OK)
        src = store_pg_meta_next(t, "change_seq", &seq);
    if (src == STORE_OK) {
        struct pg_params p = {0};
        store_pg_int(&p, seq);
        store_pg_int(&p, now);
        store_pg_bytes(&p, rec, total);
        src = store_pg_exec(t, "append change",
                            "INSERT INTO xdm_changes (seq, time, record) VALUES ($1, $2, $3)", &p,
                            NULL);
    }
    free(rec);
    if (src == STORE_OK) {
        struct pg_params p = {0};
        store_pg_int(&p, 1);
        store_pg_int(&p, (int64_t)total);
        src = store_pg_exec(t, "write change-log size",
                            "UPDATE xdm_meta SET num = num + CASE name WHEN 'change_count' THEN $1 "
                            "ELSE $2 END WHERE name IN ('change_count', 'change_bytes')",
                            &p, NULL);
    }
    if (src == STORE_OK && !t->notified) {
        char sql[96]; /* the instance id is hex: nothing to quote */
        snprintf(sql, sizeof sql, "SELECT pg_notify('" STORE_PG_CHANNEL "%s', '')", t->s->instance);
        src = store_pg_exec(t, "notify", sql, &(struct pg_params){0}, NULL);
        t->notified = src == STORE_OK;
    }
    if (src == STORE_OK) {
        c->seq = (uint64_t)seq;
        c->time = now;
    }
    return src;
}

enum store_rc store_pg_change_read(struct store_txn *base_t, uint64_t after,
                                   int (*fn)(void *cls, const struct store_change *c), void *cls)
{
    struct store_pg_txn *t = (struct store_pg_txn *)base_t;
    if (after >= (uint64_t)INT64_MAX)
        return STORE_OK;
    for (;;) {
        struct pg_params p = {0};
        store_pg_int(&p, (int64_t)after);
        PGresult *r;
        enum store_rc src = store_pg_exec(t, "read changes",
                                          "SELECT seq, record FROM xdm_changes WHERE seq > $1 "
                                          "ORDER BY seq LIMIT " STORE_PG_BATCH,
                                          &p, &r);
        if (src != STORE_OK)
            return src;
        int n = PQntuples(r);
        for (int i = 0; i < n; i++) {
            struct store_change c;
            src = store_change_decode((const unsigned char *)PQgetvalue(r, i, 1),
                                      (size_t)PQgetlength(r, i, 1), &c);
            if (src != STORE_OK) {
                PQclear(r);
                return src;
            }
            c.seq = (uint64_t)store_pg_get_int(r, i, 0);
            after = c.seq;
            if (fn(cls, &c) != 0) {
                PQclear(r);
                return STORE_OK;
            }
        }
        PQclear(r);
        if (n < atoi(STORE_PG_BATCH))
            return STORE_OK;
    }
}

enum store_rc store_pg_change_last(struct store_txn *base_t, uint64_t *out)
{
    return store_pg_count((struct store_pg_txn *)base_t, "read last change",
                          "SELECT max(seq) FROM xdm_changes", &(struct pg_params){0}, out);
}

/* Generic tables --------------------------------------------------------------------------------
 */
