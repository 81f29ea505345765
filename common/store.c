/* The store dispatcher: store_open() picks the backend named in store_options, and every other
 * store_* function of store.h calls the operation of the handle's backend (store_backend.h).
 * What both backends share lives here: the option defaults, the checks of the extra tables and
 * of document keys, and the change-record encoding, so that a record, a bound or a key means the
 * same bytes whichever backend keeps it. */
#include "store_backend.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "log.h"

const char *store_strerror(enum store_rc rc)
{
    switch (rc) {
    case STORE_OK:
        return "ok";
    case STORE_NOTFOUND:
        return "not found";
    case STORE_FULL:
        return "storage full";
    case STORE_INVALID:
        return "invalid argument";
    case STORE_ERROR:
        return "storage error";
    case STORE_UNAVAILABLE:
        return "database unavailable";
    }
    return "unknown store error";
}

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

/* Shared helpers --------------------------------------------------------------------------- */

enum store_rc store_bounds_get(const struct store_options *opts, struct store_bounds *out)
{
    out->retention = (opts != NULL && opts->change_retention != 0) ? opts->change_retention
                                                                   : STORE_DEFAULT_RETENTION;
    out->map_size = (opts != NULL && opts->map_size != 0) ? opts->map_size : STORE_DEFAULT_MAP_SIZE;
    out->change_max_bytes = (opts != NULL && opts->change_max_bytes != 0)
                                ? opts->change_max_bytes
                                : out->map_size / STORE_DEFAULT_CHANGE_SHARE;
    out->change_max_age = opts != NULL ? opts->change_max_age : 0;
    out->high_water =
        (opts != NULL && opts->high_water != 0) ? opts->high_water : STORE_DEFAULT_HIGH_WATER;
    return out->high_water > STORE_MAX_HIGH_WATER ? STORE_INVALID : STORE_OK;
}

enum store_rc store_tables_check(const struct store_options *opts, size_t *count)
{
    static const char *const builtin[] = {"docs", "meta", "changes", "quota"};
    size_t n = 0;
    *count = 0;
    if (opts == NULL || opts->tables == NULL)
        return STORE_OK;
    while (opts->tables[n] != NULL) {
        const char *name = opts->tables[n];
        size_t len = strlen(name);
        if (len == 0 || len > STORE_TABLE_NAME_MAX || n >= STORE_MAX_TABLES)
            return STORE_INVALID;
        for (size_t b = 0; b < sizeof builtin / sizeof builtin[0]; b++)
            if (strcmp(name, builtin[b]) == 0)
                return STORE_INVALID;
        for (size_t j = 0; j < n; j++)
            if (strcmp(name, opts->tables[j]) == 0)
                return STORE_INVALID;
        n++;
    }
    *count = n;
    return STORE_OK;
}

void store_put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

uint64_t store_get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static void store_put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static uint32_t store_get_u32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static const char *store_change_field(const struct store_change *c, size_t i, size_t *len)
{
    const char *f = NULL;
    switch (i) {
    case 0:
        f = c->key.auid;
        break;
    case 1:
        f = c->key.tree;
        break;
    case 2:
        f = c->key.xui;
        break;
    case 3:
        f = c->key.path;
        break;
    case 4:
        f = c->prev_etag;
        break;
    case 5:
        f = c->new_etag;
        break;
    case 6:
        *len = c->detail_len;
        return c->detail != NULL ? c->detail : "";
    }
    f = f != NULL ? f : "";
    *len = strlen(f);
    return f;
}

/* CHANGE record, version 2 (version 1 is the same without the time, still read):
 *   u8 version, u8 kind, i64 time (BE), then seven fields auid, tree, xui, path, prev_etag,
 *   new_etag, detail, each u32 length (BE) + bytes + one NUL byte. The NUL lets a reader hand out
 *   views straight into the record instead of copying. */
size_t store_change_size(const struct store_change *c)
{
    size_t total = STORE_CHANGE_HDR;
    for (size_t i = 0; i < STORE_CHANGE_FIELDS; i++) {
        size_t len;
        store_change_field(c, i, &len);
        if (len > UINT32_MAX - 1 || total > SIZE_MAX - 5 - len)
            return 0;
        total += 4 + len + 1;
    }
    return total;
}

void store_change_encode(const struct store_change *c, int64_t now, unsigned char *p)
{
    p[0] = STORE_CHANGE_VERSION;
    p[1] = (unsigned char)c->kind;
    store_put_u64(p + 2, (uint64_t)now);
    size_t off = STORE_CHANGE_HDR;
    for (size_t i = 0; i < STORE_CHANGE_FIELDS; i++) {
        size_t len;
        const char *f = store_change_field(c, i, &len);
        store_put_u32(p + off, (uint32_t)len);
        off += 4;
        if (len > 0)
            memcpy(p + off, f, len);
        off += len;
        p[off++] = '\0';
    }
}

int64_t store_change_time(const unsigned char *p, size_t size)
{
    if (size >= STORE_CHANGE_HDR && p[0] == STORE_CHANGE_VERSION)
        return (int64_t)store_get_u64(p + 2);
    return 0;
}

enum store_rc store_change_decode(const unsigned char *p, size_t size, struct store_change *c)
{
    const char *fields[STORE_CHANGE_FIELDS];
    size_t lens[STORE_CHANGE_FIELDS];
    if (size < 2 || (p[0] != STORE_CHANGE_VERSION && p[0] != STORE_CHANGE_V1) ||
        (p[1] != STORE_CHANGE_PUT && p[1] != STORE_CHANGE_DELETE))
        goto bad;
    size_t off = p[0] == STORE_CHANGE_V1 ? 2 : STORE_CHANGE_HDR;
    if (size < off)
        goto bad;
    for (size_t i = 0; i < STORE_CHANGE_FIELDS; i++) {
        if (size - off < 4)
            goto bad;
        size_t len = store_get_u32(p + off);
        off += 4;
        if (size - off < len + 1 || p[off + len] != '\0')
            goto bad;
        fields[i] = (const char *)p + off;
        lens[i] = len;
        off += len + 1;
    }
    if (off != size)
        goto bad;
    c->seq = 0;
    c->time = store_change_time(p, size);
    c->kind = p[1] == STORE_CHANGE_PUT ? STORE_CHANGE_PUT : STORE_CHANGE_DELETE;
    c->key.auid = fields[0];
    c->key.tree = fields[1];
    c->key.xui = fields[2];
    c->key.path = fields[3];
    c->prev_etag = fields[4];
    c->new_etag = fields[5];
    c->detail = fields[6];
    c->detail_len = lens[6];
    return STORE_OK;
bad:
    log_error("store: corrupt change record (%zu bytes)", size);
    return STORE_ERROR;
}

enum store_rc store_instance_new(char out[STORE_INSTANCE_HEX + 1])
{
    unsigned char rnd[STORE_INSTANCE_HEX / 2];
    size_t got = 0;
    while (got < sizeof rnd) {
        ssize_t n = getrandom(rnd + got, sizeof rnd - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            log_error("store: getrandom: %s", strerror(errno));
            return STORE_ERROR;
        }
        got += (size_t)n;
    }
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof rnd; i++) {
        out[2 * i] = hex[rnd[i] >> 4];
        out[2 * i + 1] = hex[rnd[i] & 0xf];
    }
    out[STORE_INSTANCE_HEX] = '\0';
    return STORE_OK;
}

bool store_doc_key_valid(const struct doc_key *k, size_t key_max)
{
    if (k == NULL || k->auid == NULL || k->auid[0] == '\0' || k->tree == NULL ||
        k->tree[0] == '\0' || k->xui == NULL || k->path == NULL || k->path[0] == '\0')
        return false;
    size_t a = strlen(k->auid), t = strlen(k->tree), x = strlen(k->xui), p = strlen(k->path);
    return a <= key_max && t <= key_max && x <= key_max && p <= key_max &&
           a + t + x + p + 3 <= key_max;
}

bool store_key_counted(const struct doc_key *k)
{
    return strcmp(k->tree, "users") == 0 && k->xui != NULL && k->xui[0] != '\0';
}
