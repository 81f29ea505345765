/* HTTP Digest nonces (RFC 7616 §3.3, §5.5) and their replay state (§3.4, §5.12): the proxy's one
 * struct digest, the only state of the Digest code that requests share. The replay table is split
 * into stripes by the nonce's random bits, each a table of its own with its own mutex, capacity
 * and eviction floor, so requests with different nonces seldom wait for each other (a small
 * table, under DIGEST_STRIPE_MIN nonces a stripe, stays one stripe); everything else is set once
 * in digest_new(). Format of a nonce: digest.h. */
#include "digest.h"
#include "digest_internal.h"

#include <pthread.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#define DIGEST_NONCE_RAND_LEN 16
#define DIGEST_NONCE_MAC_LEN 16
#define DIGEST_NONCE_RAW_LEN (DIGEST_NONCE_ID_LEN + DIGEST_NONCE_MAC_LEN)
/* base64url without padding: ceil(40 * 8 / 6) characters. */
#define DIGEST_NONCE_B64_LEN ((DIGEST_NONCE_RAW_LEN * 8 + 5) / 6)
#define DIGEST_SECRET_LEN 32

_Static_assert(DIGEST_NONCE_B64_LEN < DIGEST_NONCE_MAX, "nonce buffer too small");

struct digest_nonce_entry {
    unsigned char id[DIGEST_NONCE_ID_LEN]; /* ts || random */
    uint64_t ts;
    uint32_t nc; /* highest accepted */
    struct digest_nonce_entry *hnext;
    struct digest_nonce_entry *older, *newer;
};

/* Stripes of the replay table: at most DIGEST_STRIPES_MAX (a power of two), and no more than
 * leave DIGEST_STRIPE_MIN nonces to each. */
#define DIGEST_STRIPES_MAX 64
#define DIGEST_STRIPE_MIN 1024

/* One stripe. Invariants: every entry is in exactly one bucket chain and in the age list
 * (oldest..newest by insertion); count <= max. floor_ts: when an unexpired entry had to be
 * evicted, nonces of this stripe issued at or before the newest such entry's ts and absent from
 * it are treated as stale, so eviction can never let an nc be replayed. Each stripe on its own
 * cache lines. */
struct digest_nonce_stripe {
    alignas(64) pthread_mutex_t lock;
    struct digest_nonce_entry **buckets;
    size_t nbuckets; /* power of two */
    size_t count, max;
    struct digest_nonce_entry *oldest, *newest;
    bool has_floor;
    uint64_t floor_ts;
};

struct digest {
    unsigned char secret[DIGEST_SECRET_LEN];
    char opaque[DIGEST_OPAQUE_HEX_LEN + 1];
    uint64_t lifetime;
    size_t max_nonces;
    size_t nstripes; /* power of two */
    struct digest_nonce_stripe *stripes;
};

void digest_hex_encode(const unsigned char *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0xf];
    }
    out[2 * len] = '\0';
}

uint64_t digest_clock_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec;
}

size_t digest_nonce_stripes(size_t max_nonces)
{
    size_t n = 1;
    while (n < DIGEST_STRIPES_MAX && max_nonces / (n * 2) >= DIGEST_STRIPE_MIN)
        n <<= 1;
    return n;
}

static void digest_stripe_release(struct digest_nonce_stripe *st)
{
    struct digest_nonce_entry *e = st->oldest;
    while (e) {
        struct digest_nonce_entry *next = e->newer;
        free(e);
        e = next;
    }
    free(st->buckets);
    pthread_mutex_destroy(&st->lock);
}

void digest_free(struct digest *d)
{
    if (!d)
        return;
    for (size_t i = 0; d->stripes && i < d->nstripes; i++)
        digest_stripe_release(&d->stripes[i]);
    free(d->stripes);
    OPENSSL_cleanse(d->secret, sizeof d->secret);
    free(d);
}

struct digest *digest_new(const struct digest_options *opts)
{
    struct digest *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->lifetime = opts && opts->nonce_lifetime_s ? opts->nonce_lifetime_s : 300;
    d->max_nonces = opts && opts->max_nonces ? opts->max_nonces : 100000;
    size_t n = digest_nonce_stripes(d->max_nonces);
    d->stripes = aligned_alloc(64, n * sizeof *d->stripes);
    if (!d->stripes) {
        free(d);
        return NULL;
    }
    memset(d->stripes, 0, n * sizeof *d->stripes);
    for (size_t i = 0; i < n; i++) {
        struct digest_nonce_stripe *st = &d->stripes[i];
        /* The capacities add up to max_nonces. */
        st->max = d->max_nonces / n + (i < d->max_nonces % n);
        st->nbuckets = 16;
        while (st->nbuckets < st->max / 2 && st->nbuckets < ((size_t)1 << 24))
            st->nbuckets <<= 1;
        st->buckets = calloc(st->nbuckets, sizeof *st->buckets);
        if (!st->buckets || pthread_mutex_init(&st->lock, NULL) != 0) {
            free(st->buckets);
            d->nstripes = i;
            digest_free(d);
            return NULL;
        }
        d->nstripes = i + 1;
    }
    unsigned char op[DIGEST_OPAQUE_HEX_LEN / 2];
    if (RAND_bytes(d->secret, sizeof d->secret) != 1 || RAND_bytes(op, sizeof op) != 1) {
        digest_free(d);
        return NULL;
    }
    digest_hex_encode(op, sizeof op, d->opaque);
    return d;
}

const char *digest_opaque(const struct digest *d)
{
    return d->opaque;
}

static const char digest_nonce_b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void digest_nonce_b64_encode(const unsigned char *in, size_t len, char *out)
{
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = digest_nonce_b64[(acc >> bits) & 0x3f];
        }
    }
    if (bits > 0)
        out[o++] = digest_nonce_b64[(acc << (6 - bits)) & 0x3f];
    out[o] = '\0';
}

/* Decodes exactly DIGEST_NONCE_RAW_LEN bytes; refuses other lengths, foreign characters and
 * non-zero padding bits (so each nonce has one spelling). */
static int digest_nonce_b64_decode(const char *s, unsigned char out[DIGEST_NONCE_RAW_LEN])
{
    if (strnlen(s, DIGEST_NONCE_B64_LEN + 1) != DIGEST_NONCE_B64_LEN)
        return -1;
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < DIGEST_NONCE_B64_LEN; i++) {
        const char *pos = strchr(digest_nonce_b64, s[i]);
        if (!pos || s[i] == '\0')
            return -1;
        acc = (acc << 6) | (uint32_t)(pos - digest_nonce_b64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    if (o != DIGEST_NONCE_RAW_LEN || (acc & ((1u << bits) - 1)) != 0)
        return -1;
    return 0;
}

static int digest_nonce_mac(const struct digest *d, const unsigned char id[DIGEST_NONCE_ID_LEN],
                            unsigned char mac[DIGEST_NONCE_MAC_LEN])
{
    unsigned char full[EVP_MAX_MD_SIZE];
    unsigned int flen = 0;
    if (!HMAC(EVP_sha256(), d->secret, sizeof d->secret, id, DIGEST_NONCE_ID_LEN, full, &flen) ||
        flen < DIGEST_NONCE_MAC_LEN)
        return -1;
    memcpy(mac, full, DIGEST_NONCE_MAC_LEN);
    return 0;
}

int digest_nonce_new(const struct digest *d, uint64_t now, char out[DIGEST_NONCE_MAX])
{
    unsigned char raw[DIGEST_NONCE_RAW_LEN];
    for (int i = 0; i < DIGEST_NONCE_TS_LEN; i++)
        raw[i] = (unsigned char)(now >> (8 * (DIGEST_NONCE_TS_LEN - 1 - i)));
    if (RAND_bytes(raw + DIGEST_NONCE_TS_LEN, DIGEST_NONCE_RAND_LEN) != 1)
        return -1;
    if (digest_nonce_mac(d, raw, raw + DIGEST_NONCE_ID_LEN) < 0)
        return -1;
    digest_nonce_b64_encode(raw, sizeof raw, out);
    return 0;
}

/* Checks the MAC and extracts the issue time. */
int digest_nonce_open(const struct digest *d, const char *nonce,
                      unsigned char id[DIGEST_NONCE_ID_LEN], uint64_t *ts)
{
    unsigned char raw[DIGEST_NONCE_RAW_LEN], mac[DIGEST_NONCE_MAC_LEN];
    if (digest_nonce_b64_decode(nonce, raw) < 0 || digest_nonce_mac(d, raw, mac) < 0)
        return -1;
    if (CRYPTO_memcmp(mac, raw + DIGEST_NONCE_ID_LEN, DIGEST_NONCE_MAC_LEN) != 0)
        return -1;
    memcpy(id, raw, DIGEST_NONCE_ID_LEN);
    uint64_t t = 0;
    for (int i = 0; i < DIGEST_NONCE_TS_LEN; i++)
        t = (t << 8) | raw[i];
    *ts = t;
    return 0;
}

/* The random part is uniformly distributed and server-made: no hash flooding possible. Its first
 * eight bytes pick the bucket, the ninth the stripe. */
static struct digest_nonce_stripe *digest_nonce_stripe(struct digest *d,
                                                       const unsigned char id[DIGEST_NONCE_ID_LEN])
{
    return &d->stripes[id[DIGEST_NONCE_TS_LEN + 8] & (d->nstripes - 1)];
}

static size_t digest_nonce_bucket(const struct digest_nonce_stripe *st,
                                  const unsigned char id[DIGEST_NONCE_ID_LEN])
{
    uint64_t h = 0;
    memcpy(&h, id + DIGEST_NONCE_TS_LEN, sizeof h);
    return (size_t)h & (st->nbuckets - 1);
}

static void digest_nonce_unlink(struct digest_nonce_stripe *st, struct digest_nonce_entry *e)
{
    struct digest_nonce_entry **pp = &st->buckets[digest_nonce_bucket(st, e->id)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    if (e->older)
        e->older->newer = e->newer;
    else
        st->oldest = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        st->newest = e->older;
    st->count--;
}

bool digest_nonce_expired(const struct digest *d, uint64_t ts, uint64_t now)
{
    return now >= ts + d->lifetime || ts > now;
}

enum digest_nc_check digest_nonce_accept_nc(struct digest *d,
                                            const unsigned char id[DIGEST_NONCE_ID_LEN],
                                            uint64_t ts, uint32_t nc, uint64_t now)
{
    enum digest_nc_check rc = DIGEST_NC_OK;
    struct digest_nonce_stripe *st = digest_nonce_stripe(d, id);
    pthread_mutex_lock(&st->lock);
    struct digest_nonce_entry *e = st->buckets[digest_nonce_bucket(st, id)];
    while (e && memcmp(e->id, id, DIGEST_NONCE_ID_LEN) != 0)
        e = e->hnext;
    if (e) {
        if (nc <= e->nc)
            rc = DIGEST_NC_REPLAY;
        else
            e->nc = nc;
        goto out;
    }
    if (nc == 0) {
        rc = DIGEST_NC_REPLAY; /* counting starts at 1: 0 is never above the highest accepted */
        goto out;
    }
    if (st->has_floor && ts <= st->floor_ts) {
        rc =
            DIGEST_NC_STALE; /* its state may have been evicted: make the client take a new nonce */
        goto out;
    }
    while (st->oldest && (digest_nonce_expired(d, st->oldest->ts, now) || st->count >= st->max)) {
        struct digest_nonce_entry *old = st->oldest;
        if (!digest_nonce_expired(d, old->ts, now) && (!st->has_floor || old->ts > st->floor_ts)) {
            st->has_floor = true;
            st->floor_ts = old->ts;
        }
        digest_nonce_unlink(st, old);
        free(old);
    }
    if (st->has_floor && ts <= st->floor_ts) {
        rc = DIGEST_NC_STALE;
        goto out;
    }
    e = calloc(1, sizeof *e);
    if (!e) {
        rc = DIGEST_NC_NOMEM;
        goto out;
    }
    memcpy(e->id, id, DIGEST_NONCE_ID_LEN);
    e->ts = ts;
    e->nc = nc;
    size_t b = digest_nonce_bucket(st, id);
    e->hnext = st->buckets[b];
    st->buckets[b] = e;
    e->older = st->newest;
    if (st->newest)
        st->newest->newer = e;
    else
        st->oldest = e;
    st->newest = e;
    st->count++;
out:
    pthread_mutex_unlock(&st->lock);
    return rc;
}
