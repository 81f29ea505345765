/* The bulk loader of tools/bench-scale: fills a shared-list XDMS's LMDB store through the store API
 * (store_doc_put, store_kv_put) in large write transactions, not one HTTP PUT per document.
 *
 *   scaleload --data DIR --users N [--docs-per-user K] [--subscriptions S] [--map-size BYTES]
 *             [--batch DOCS] [--targets FILE --sample M] [--shuffle]
 *
 * Users are sip:uNNNNNNN@example.com (zero-padded, so that they come in key order and LMDB appends
 * to the right-most page instead of splitting pages in the middle; --shuffle writes the users in a
 * random order instead, as sign-ups of arbitrary names would); each has K resource-lists
 * documents (RFC 4826) of about 1 KiB: "index" and "listN". S subscriptions (xcap-diff, RFC 5875)
 * are written as the notifier saves them (table notify_subs), each watching one user's index
 * document, expiring in an hour, with a dialog towards a loopback target nobody answers (no NOTIFY
 * is due at start-up: none is pending). With --targets, M document paths of random users are
 * written one per line, for the GET load. Prints "loaded D documents of B bytes, S subscriptions in
 * T s". Exit status 0, 1 on a store failure, 2 on usage errors. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "charging.h"
#include "notify.h"
#include "notify_internal.h"
#include "store.h"
#include "usage.h"

#define SCALELOAD_MAX_USERS 10000000ull
#define SCALELOAD_MAX_DOCS_PER_USER 100ull
#define SCALELOAD_MAX_SUBS 10000000ull
#define SCALELOAD_MAX_SAMPLE 10000000ull

static double scaleload_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* xorshift64*: reproducible runs without libc's global state. */
static uint64_t scaleload_rand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static void scaleload_xui(uint64_t u, char *out, size_t max)
{
    snprintf(out, max, "sip:u%07" PRIu64 "@example.com", u);
}

static void scaleload_path(uint64_t d, char *out, size_t max)
{
    if (d == 0)
        snprintf(out, max, "index");
    else
        snprintf(out, max, "list%02" PRIu64, d);
}

/* A resource-lists document of about 1 KiB, different for every user and document. */
static int scaleload_doc(struct buf *b, uint64_t u, uint64_t d)
{
    buf_reset(b);
    int rc = buf_printf(b,
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                        "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\">\n"
                        "  <list name=\"list%" PRIu64 "\">\n",
                        d);
    for (unsigned i = 0; i < 20; i++)
        rc |= buf_printf(b, "    <entry uri=\"sip:f%02u.u%07" PRIu64 "@example.com\"/>\n", i, u);
    rc |= buf_puts(b, "  </list>\n</resource-lists>\n");
    return rc;
}

static int scaleload_sub(struct buf *b, uint64_t i, uint64_t users)
{
    char xui[64], call_id[64], local[160], remote[160], body[512];
    char target[] = "sip:127.0.0.1:9;transport=udp", route[] = "", event[] = "xcap-diff",
         owner[] = "";
    uint64_t u = i % users;
    scaleload_xui(u, xui, sizeof xui);
    snprintf(call_id, sizeof call_id, "scale-%" PRIu64 "@127.0.0.1", i);
    snprintf(local, sizeof local, "<%s>;tag=s%" PRIu64, xui, i);
    snprintf(remote, sizeof remote, "<%s>;tag=c%" PRIu64, xui, i);
    snprintf(body, sizeof body,
             "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
             "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list>"
             "<entry uri=\"resource-lists/users/%s/index\"/></list></resource-lists>\n",
             xui);
    uint64_t hash = 0;
    struct notify_record r = {
        .call_id = call_id,
        .local = local,
        .remote = remote,
        .target = target,
        .route = route,
        .identity = xui,
        .event = event,
        .mode = NOTIFY_NO_PATCHING,
        .expires = (int64_t)time(NULL) + 3600,
        .cseq = 1,
        .rseq = 1,
        .seq = 0,
        .full = false,
        .hashes = &hash,
        .n_hashes = 1,
        .body = body,
        .body_len = strlen(body),
        .owner = owner,
    };
    buf_reset(b);
    return notify_subs_record_encode(&r, b);
}

static int scaleload_usage(void)
{
    fputs("usage: scaleload --data DIR --users N [--docs-per-user K] [--subscriptions S]\n"
          "                 [--map-size BYTES] [--batch DOCS] [--targets FILE --sample M]\n"
          "                 [--shuffle]\n",
          stderr);
    return 2;
}

static int scaleload_num(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s < '0' || *s > '9' || *end || v > max)
        return -1;
    *out = v;
    return 0;
}

struct scaleload_opts {
    const char *data, *targets;
    uint64_t users, per_user, subs, map_size, batch, sample;
    bool shuffle;
};

static uint64_t scaleload_gcd(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t r = a % b;
        a = b;
        b = r;
    }
    return a;
}

static int scaleload_targets(const struct scaleload_opts *o)
{
    FILE *f = fopen(o->targets, "w");
    if (!f) {
        fprintf(stderr, "scaleload: cannot write %s\n", o->targets);
        return 1;
    }
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    for (uint64_t i = 0; i < o->sample; i++) {
        char xui[64], path[32];
        uint64_t r = scaleload_rand(&seed);
        scaleload_xui(r % o->users, xui, sizeof xui);
        scaleload_path((r >> 32) % o->per_user, path, sizeof path);
        fprintf(f, "/xcap-root/resource-lists/users/%s/%s\n", xui, path);
    }
    return fclose(f) == 0 ? 0 : 1;
}

/* Loads the documents in key order, o->batch per write transaction, then the subscriptions. */
static int scaleload_run(struct store *s, const struct scaleload_opts *o, uint64_t *docs,
                         uint64_t *bytes)
{
    struct buf b;
    buf_init(&b, 1u << 20);
    struct store_txn *t = NULL;
    enum store_rc rc = STORE_OK;
    uint64_t in_txn = 0, total = o->users * o->per_user;
    /* --shuffle: u -> (u * mul + 7) mod users, a permutation since gcd(mul, users) = 1 */
    uint64_t mul = 1;
    if (o->shuffle && o->users > 2)
        for (mul = 2654435761u % o->users; mul < 2 || scaleload_gcd(mul, o->users) != 1;)
            mul = (mul + 1) % o->users;
    for (uint64_t n = 0; n < total + o->subs && rc == STORE_OK; n++) {
        if (!t && (rc = store_txn_begin(s, true, &t)) != STORE_OK)
            break;
        if (n < total) {
            /* users in key order; each user's documents in key order ("index" < "listNN") */
            char xui[64], path[32], etag[STORE_ETAG_MAX];
            uint64_t u = n / o->per_user, d = n % o->per_user;
            if (o->shuffle && o->users > 2)
                u = (u * mul + 7) % o->users;
            scaleload_xui(u, xui, sizeof xui);
            scaleload_path(d, path, sizeof path);
            struct doc_key k = {"resource-lists", "users", xui, path};
            if (scaleload_doc(&b, u, d) != 0)
                rc = STORE_INVALID;
            else
                rc = store_doc_put(t, &k, b.data, b.len, etag);
            if (rc == STORE_OK) {
                (*docs)++;
                *bytes += b.len;
            }
        } else {
            char key[32];
            int kl = snprintf(key, sizeof key, "scale%08" PRIu64, n - total);
            if (scaleload_sub(&b, n - total, o->users) != 0)
                rc = STORE_INVALID;
            else
                rc = store_kv_put(t, NOTIFY_TABLE, key, (size_t)kl, b.data, b.len);
        }
        if (rc == STORE_OK && ++in_txn >= o->batch) {
            rc = store_txn_commit(t);
            t = NULL;
            in_txn = 0;
        }
    }
    if (t && rc == STORE_OK)
        rc = store_txn_commit(t);
    else if (t)
        store_txn_abort(t);
    buf_release(&b);
    if (rc != STORE_OK)
        fprintf(stderr, "scaleload: %s after %" PRIu64 " documents\n", store_strerror(rc), *docs);
    return rc == STORE_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    struct scaleload_opts o = {.per_user = 10, .map_size = 4ull << 30, .batch = 20000};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = !v;
        if (!strcmp(a, "--data") && v)
            o.data = v;
        else if (!strcmp(a, "--targets") && v)
            o.targets = v;
        else if (!strcmp(a, "--shuffle")) {
            o.shuffle = true;
            continue;
        } else if (!strcmp(a, "--users") && v)
            bad = scaleload_num(v, SCALELOAD_MAX_USERS, &o.users);
        else if (!strcmp(a, "--docs-per-user") && v)
            bad = scaleload_num(v, SCALELOAD_MAX_DOCS_PER_USER, &o.per_user);
        else if (!strcmp(a, "--subscriptions") && v)
            bad = scaleload_num(v, SCALELOAD_MAX_SUBS, &o.subs);
        else if (!strcmp(a, "--map-size") && v)
            bad = scaleload_num(v, 1ull << 44, &o.map_size);
        else if (!strcmp(a, "--batch") && v)
            bad = scaleload_num(v, 1000000, &o.batch);
        else if (!strcmp(a, "--sample") && v)
            bad = scaleload_num(v, SCALELOAD_MAX_SAMPLE, &o.sample);
        else
            return scaleload_usage();
        if (bad)
            return scaleload_usage();
        i++;
    }
    if (!o.data || o.users == 0 || o.per_user == 0 || o.batch == 0 || (o.targets && !o.sample))
        return scaleload_usage();
    if (o.targets && scaleload_targets(&o) != 0)
        return 1;

    /* The tables the shared-list XDMS opens (xdms/main.c), so that it finds them all. */
    const char *tables[32];
    size_t n = 0;
    for (const char *const *t = usage_store_tables(ROLE_SHARED_LIST); t && *t && n < 29; t++)
        tables[n++] = *t;
    for (const char *const *t = notify_store_tables(); t && *t && n < 30; t++)
        tables[n++] = *t;
    tables[n++] = charging_store_table();
    tables[n] = NULL;
    struct store_options so = {.map_size = o.map_size, .tables = tables, .group_max_requests = 1};
    struct store *s;
    enum store_rc rc = store_open(o.data, &so, &s);
    if (rc != STORE_OK) {
        fprintf(stderr, "scaleload: cannot open the store in %s: %s\n", o.data, store_strerror(rc));
        return 1;
    }
    double t0 = scaleload_now();
    uint64_t docs = 0, bytes = 0;
    int ret = scaleload_run(s, &o, &docs, &bytes);
    store_close(s);
    if (ret == 0)
        printf("loaded %" PRIu64 " documents of %" PRIu64 " bytes, %" PRIu64
               " subscriptions in %.1f s\n",
               docs, bytes, o.subs, scaleload_now() - t0);
    return ret;
}
