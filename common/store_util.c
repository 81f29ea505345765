/* What both store backends share (store_backend.h), and store_strerror() of store.h: the option
 * defaults, the checks of the extra tables and of document keys, the change-record encoding and
 * the instance id, so that a record, a bound or a key means the same bytes whichever backend keeps
 * it. A leaf of the store: the dispatcher (store.c) and the backends (store_lmdb*.c,
 * store_pg*.c) call it, it calls none of them. */
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
