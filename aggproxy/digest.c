#include "digest.h"

#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "buf.h"

#define NONCE_TS_LEN 8
#define NONCE_RAND_LEN 16
#define NONCE_MAC_LEN 16
#define NONCE_ID_LEN (NONCE_TS_LEN + NONCE_RAND_LEN)
#define NONCE_RAW_LEN (NONCE_ID_LEN + NONCE_MAC_LEN)
/* base64url without padding: ceil(40 * 8 / 6) characters. */
#define NONCE_B64_LEN ((NONCE_RAW_LEN * 8 + 5) / 6)
#define SECRET_LEN 32
#define OPAQUE_HEX_LEN 32
#define PARAMS_MAX 64
#define CNONCE_MAX 256

_Static_assert(NONCE_B64_LEN < DIGEST_NONCE_MAX, "nonce buffer too small");

/* ---- Hashing -------------------------------------------------------------------------------- */

const char *digest_alg_name(enum digest_alg alg)
{
    switch (alg) {
    case DIGEST_MD5:
        return "MD5";
    case DIGEST_MD5_SESS:
        return "MD5-sess";
    case DIGEST_SHA256:
        return "SHA-256";
    case DIGEST_SHA256_SESS:
        return "SHA-256-sess";
    }
    return "?";
}

int digest_alg_parse(const char *s, enum digest_alg *out)
{
    static const enum digest_alg all[] = {DIGEST_MD5, DIGEST_MD5_SESS, DIGEST_SHA256,
                                          DIGEST_SHA256_SESS};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (strcasecmp(s, digest_alg_name(all[i])) == 0) {
            *out = all[i];
            return 0;
        }
    }
    return -1;
}

void digest_algs_default(struct digest_algs *out)
{
    out->v[0] = DIGEST_MD5;
    out->v[1] = DIGEST_SHA256;
    out->n = 2;
}

bool digest_algs_has(const struct digest_algs *a, enum digest_alg alg)
{
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i] == alg)
            return true;
    return false;
}

int digest_algs_parse(const char *s, struct digest_algs *out, char err[DIGEST_ALGS_ERR_MAX])
{
    out->n = 0;
    const char *p = s ? s : "";
    for (;;) {
        p += strspn(p, " \t,");
        if (*p == '\0')
            break;
        size_t len = strcspn(p, " \t,");
        char name[16];
        enum digest_alg alg = DIGEST_MD5;
        bool known = len < sizeof name;
        if (known) {
            memcpy(name, p, len);
            name[len] = '\0';
            known = digest_alg_parse(name, &alg) == 0;
        }
        if (!known) {
            snprintf(err, DIGEST_ALGS_ERR_MAX, "unknown algorithm \"%.*s\" (MD5 and SHA-256 exist)",
                     (int)(len > 40 ? 40 : len), p);
            return -1;
        }
        if (digest_alg_is_sess(alg)) {
            snprintf(err, DIGEST_ALGS_ERR_MAX,
                     "%s is not supported (the -sess variants are not offered; use MD5 and/or "
                     "SHA-256)",
                     digest_alg_name(alg));
            return -1;
        }
        if (digest_algs_has(out, alg)) {
            snprintf(err, DIGEST_ALGS_ERR_MAX, "%s is listed twice", digest_alg_name(alg));
            return -1;
        }
        out->v[out->n++] = alg; /* at most MD5 and SHA-256 get here: n <= 2 */
        p += len;
    }
    if (out->n == 0) {
        snprintf(err, DIGEST_ALGS_ERR_MAX, "the list is empty (give MD5 and/or SHA-256)");
        return -1;
    }
    return 0;
}

static bool alg_is_md5(enum digest_alg alg)
{
    return alg == DIGEST_MD5 || alg == DIGEST_MD5_SESS;
}

size_t digest_alg_hexlen(enum digest_alg alg)
{
    return alg_is_md5(alg) ? 32 : 64;
}

bool digest_alg_is_sess(enum digest_alg alg)
{
    return alg == DIGEST_MD5_SESS || alg == DIGEST_SHA256_SESS;
}

static void hex_encode(const unsigned char *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0xf];
    }
    out[2 * len] = '\0';
}

/* H(parts[0] ":" parts[1] ":" ... ) in hex: every digest of RFC 7616 §3.4 has this shape. */
static int hash_parts(enum digest_alg alg, const char *const *parts, size_t n,
                      char out[DIGEST_HEX_MAX])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx)
        return -1;
    int ok = EVP_DigestInit_ex(ctx, alg_is_md5(alg) ? EVP_md5() : EVP_sha256(), NULL);
    for (size_t i = 0; ok && i < n; i++) {
        if (i > 0)
            ok = EVP_DigestUpdate(ctx, ":", 1);
        if (ok)
            ok = EVP_DigestUpdate(ctx, parts[i], strlen(parts[i]));
    }
    if (ok)
        ok = EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    if (!ok || mdlen * 2 != digest_alg_hexlen(alg))
        return -1;
    hex_encode(md, mdlen, out);
    return 0;
}

int digest_hash_hex(enum digest_alg alg, const void *data, size_t len, char out[DIGEST_HEX_MAX])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(data, len, md, &mdlen, alg_is_md5(alg) ? EVP_md5() : EVP_sha256(), NULL))
        return -1;
    hex_encode(md, mdlen, out);
    return 0;
}

int digest_ha1(enum digest_alg alg, const char *username, const char *realm, const char *password,
               char out[DIGEST_HEX_MAX])
{
    if (!username || !realm || !password)
        return -1;
    const char *parts[] = {username, realm, password};
    return hash_parts(alg, parts, 3, out);
}

int digest_ha1_raw(enum digest_alg alg, const char *username, const char *realm,
                   const void *password, size_t pwlen, char out[DIGEST_HEX_MAX])
{
    if (!username || !realm || !password)
        return -1;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx)
        return -1;
    int ok = EVP_DigestInit_ex(ctx, alg_is_md5(alg) ? EVP_md5() : EVP_sha256(), NULL) &&
             EVP_DigestUpdate(ctx, username, strlen(username)) && EVP_DigestUpdate(ctx, ":", 1) &&
             EVP_DigestUpdate(ctx, realm, strlen(realm)) && EVP_DigestUpdate(ctx, ":", 1) &&
             EVP_DigestUpdate(ctx, password, pwlen) && EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    if (!ok || mdlen * 2 != digest_alg_hexlen(alg))
        return -1;
    hex_encode(md, mdlen, out);
    return 0;
}

int digest_response(const struct digest_input *in, char out[DIGEST_HEX_MAX])
{
    if (!in->ha1 || !in->nonce || !in->nc || !in->cnonce || !in->qop || !in->method || !in->uri)
        return -1;
    bool auth_int = strcmp(in->qop, "auth-int") == 0;
    if (auth_int && !in->body_hash)
        return -1;

    /* RFC 7616 §3.4.2: the -sess HA1 binds the stored hash to this nonce and cnonce. */
    char sess_ha1[DIGEST_HEX_MAX];
    const char *ha1 = in->ha1;
    if (digest_alg_is_sess(in->alg)) {
        const char *parts[] = {in->ha1, in->nonce, in->cnonce};
        if (hash_parts(in->alg, parts, 3, sess_ha1) < 0)
            return -1;
        ha1 = sess_ha1;
    }

    /* §3.4.3: HA2 = H(method ":" uri [":" H(entity-body)]). */
    char ha2[DIGEST_HEX_MAX];
    const char *a2[] = {in->method, in->uri, in->body_hash};
    if (hash_parts(in->alg, a2, auth_int ? 3 : 2, ha2) < 0)
        return -1;

    const char *parts[] = {ha1, in->nonce, in->nc, in->cnonce, in->qop, ha2};
    return hash_parts(in->alg, parts, 6, out);
}

/* ---- Authorization header parser ------------------------------------------------------------ */

/* RFC 9110 §5.6.2 tchar. */
static bool is_tchar(unsigned char c)
{
    return isalnum(c) || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static const char *skip_ows(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* RFC 8187 ext-value: charset "'" [language] "'" pct-encoded value. Decodes in place (the result
 * is never longer than the input). Only UTF-8 is accepted; an encoded NUL is refused. */
static int decode_ext_value(char *s)
{
    char *q1 = strchr(s, '\'');
    if (!q1 || (size_t)(q1 - s) != 5 || strncasecmp(s, "UTF-8", 5) != 0)
        return -1;
    char *q2 = strchr(q1 + 1, '\'');
    if (!q2)
        return -1;
    const char *r = q2 + 1;
    char *w = s;
    while (*r) {
        if (*r == '%') {
            int hi = hexval((unsigned char)r[1]);
            int lo = hi < 0 ? -1 : hexval((unsigned char)r[2]);
            if (lo < 0 || (hi == 0 && lo == 0))
                return -1;
            *w++ = (char)(hi * 16 + lo);
            r += 3;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
    return w == s ? -1 : 0;
}

static int params_assign(struct digest_params *p, const char *name, size_t nlen, const char *val,
                         const char **username_star)
{
    struct {
        const char *name;
        const char **slot;
    } known[] = {
        {"username", &p->username},
        {"username*", username_star},
        {"realm", &p->realm},
        {"nonce", &p->nonce},
        {"uri", &p->uri},
        {"response", &p->response},
        {"algorithm", &p->algorithm},
        {"cnonce", &p->cnonce},
        {"opaque", &p->opaque},
        {"qop", &p->qop},
        {"nc", &p->nc},
        {"userhash", &p->userhash},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (strlen(known[i].name) == nlen && strncasecmp(known[i].name, name, nlen) == 0) {
            if (*known[i].slot)
                return -1; /* a duplicate is ambiguous: refuse rather than pick one */
            *known[i].slot = val;
            return 0;
        }
    }
    return 0;
}

void digest_params_release(struct digest_params *p)
{
    free(p->buf);
    memset(p, 0, sizeof *p);
}

/* The raw form of uri="..." (see digest_parse_authorization in the header): p is just after the
 * opening quote. Returns the length of the value (that of target) when it applies, else 0. */
static size_t raw_uri_len(const char *p, const char *target)
{
    size_t tlen = target ? strlen(target) : 0;
    if (tlen == 0 || strncmp(p, target, tlen) != 0 || p[tlen] != '"')
        return 0;
    const char *after = skip_ows(p + tlen + 1);
    return *after == ',' || *after == '\0' ? tlen : 0;
}

int digest_parse_authorization(const char *h, const char *target, struct digest_params *out)
{
    memset(out, 0, sizeof *out);
    if (!h)
        return DIGEST_PARSE_NOT_DIGEST;
    size_t len = strnlen(h, DIGEST_HEADER_MAX + 1);
    if (len > DIGEST_HEADER_MAX)
        return DIGEST_PARSE_MALFORMED;

    const char *p = skip_ows(h);
    const char *scheme = p;
    while (is_tchar((unsigned char)*p))
        p++;
    if (p == scheme)
        return DIGEST_PARSE_MALFORMED;
    if (p - scheme != 6 || strncasecmp(scheme, "Digest", 6) != 0)
        return DIGEST_PARSE_NOT_DIGEST;
    if (*p != ' ' && *p != '\t')
        return DIGEST_PARSE_MALFORMED;

    /* Every decoded value is at most as long as its source span, and its NUL is paid for by the
     * '=' before it, so len + 1 bytes always suffice. */
    out->buf = malloc(len + 1);
    if (!out->buf)
        return DIGEST_PARSE_MALFORMED;
    char *w = out->buf;
    const char *username_star = NULL;
    int nparams = 0;

    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '\0')
            break;
        const char *name = p;
        while (is_tchar((unsigned char)*p))
            p++;
        size_t nlen = (size_t)(p - name);
        if (nlen == 0)
            goto malformed;
        p = skip_ows(p);
        if (*p != '=')
            goto malformed;
        p = skip_ows(p + 1);

        char *val = w;
        size_t raw = 0;
        if (*p == '"' && nlen == 3 && strncasecmp(name, "uri", 3) == 0)
            raw = raw_uri_len(p + 1, target);
        if (raw) {
            /* The request-target's own bytes, which lie inside the header: the copy fits the
             * len + 1 bytes of buf like any other value. */
            memcpy(w, p + 1, raw);
            w += raw;
            p += raw + 2;
        } else if (*p == '"') {
            /* RFC 9110 §5.6.4 quoted-string with quoted-pair. */
            p++;
            for (;;) {
                unsigned char c = (unsigned char)*p;
                if (c == '\0')
                    goto malformed;
                if (c == '"') {
                    p++;
                    break;
                }
                if (c == '\\') {
                    p++;
                    c = (unsigned char)*p;
                    if (c == '\0')
                        goto malformed;
                }
                if ((c < 0x20 && c != '\t') || c == 0x7f)
                    goto malformed;
                *w++ = (char)c;
                p++;
            }
        } else {
            while (is_tchar((unsigned char)*p))
                *w++ = *p++;
            if (w == val)
                goto malformed;
        }
        *w++ = '\0';
        p = skip_ows(p);
        if (*p != '\0' && *p != ',')
            goto malformed;
        if (++nparams > PARAMS_MAX)
            goto malformed;
        if (params_assign(out, name, nlen, val, &username_star) < 0)
            goto malformed;
    }
    if (nparams == 0)
        goto malformed;
    if (username_star) {
        if (out->username)
            goto malformed; /* RFC 7616 §3.4: never both */
        /* username_star points into out->buf, which this function owns and may rewrite. */
        char *ext = out->buf + (username_star - out->buf);
        if (decode_ext_value(ext) < 0)
            goto malformed;
        out->username = username_star;
        out->username_ext = true;
    }
    return DIGEST_PARSE_OK;

malformed:
    digest_params_release(out);
    return DIGEST_PARSE_MALFORMED;
}

/* ---- Nonces and their replay state ---------------------------------------------------------- */

struct nonce_entry {
    unsigned char id[NONCE_ID_LEN]; /* ts || random */
    uint64_t ts;
    uint32_t nc; /* highest accepted */
    struct nonce_entry *hnext;
    struct nonce_entry *older, *newer;
};

/* Invariants: every entry is in exactly one bucket chain and in the age list (oldest..newest by
 * insertion); count <= max_nonces. floor_ts: when an unexpired entry had to be evicted, nonces
 * issued at or before the newest such entry's ts and absent from the table are treated as stale,
 * so eviction can never let an nc be replayed. */
struct digest {
    unsigned char secret[SECRET_LEN];
    char opaque[OPAQUE_HEX_LEN + 1];
    uint64_t lifetime;
    size_t max_nonces;

    pthread_mutex_t lock;
    struct nonce_entry **buckets;
    size_t nbuckets; /* power of two */
    size_t count;
    struct nonce_entry *oldest, *newest;
    bool has_floor;
    uint64_t floor_ts;
};

uint64_t digest_clock_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec;
}

struct digest *digest_new(const struct digest_options *opts)
{
    struct digest *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->lifetime = opts && opts->nonce_lifetime_s ? opts->nonce_lifetime_s : 300;
    d->max_nonces = opts && opts->max_nonces ? opts->max_nonces : 100000;
    d->nbuckets = 16;
    while (d->nbuckets < d->max_nonces / 2 && d->nbuckets < ((size_t)1 << 24))
        d->nbuckets <<= 1;
    d->buckets = calloc(d->nbuckets, sizeof *d->buckets);
    unsigned char op[OPAQUE_HEX_LEN / 2];
    if (!d->buckets || RAND_bytes(d->secret, sizeof d->secret) != 1 ||
        RAND_bytes(op, sizeof op) != 1 || pthread_mutex_init(&d->lock, NULL) != 0) {
        free(d->buckets);
        free(d);
        return NULL;
    }
    hex_encode(op, sizeof op, d->opaque);
    return d;
}

void digest_free(struct digest *d)
{
    if (!d)
        return;
    struct nonce_entry *e = d->oldest;
    while (e) {
        struct nonce_entry *next = e->newer;
        free(e);
        e = next;
    }
    free(d->buckets);
    pthread_mutex_destroy(&d->lock);
    OPENSSL_cleanse(d->secret, sizeof d->secret);
    free(d);
}

const char *digest_opaque(const struct digest *d)
{
    return d->opaque;
}

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void b64url_encode(const unsigned char *in, size_t len, char *out)
{
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = b64url[(acc >> bits) & 0x3f];
        }
    }
    if (bits > 0)
        out[o++] = b64url[(acc << (6 - bits)) & 0x3f];
    out[o] = '\0';
}

/* Decodes exactly NONCE_RAW_LEN bytes; refuses other lengths, foreign characters and non-zero
 * padding bits (so each nonce has one spelling). */
static int b64url_decode_nonce(const char *s, unsigned char out[NONCE_RAW_LEN])
{
    if (strnlen(s, NONCE_B64_LEN + 1) != NONCE_B64_LEN)
        return -1;
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < NONCE_B64_LEN; i++) {
        const char *pos = strchr(b64url, s[i]);
        if (!pos || s[i] == '\0')
            return -1;
        acc = (acc << 6) | (uint32_t)(pos - b64url);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    if (o != NONCE_RAW_LEN || (acc & ((1u << bits) - 1)) != 0)
        return -1;
    return 0;
}

static int nonce_mac(const struct digest *d, const unsigned char id[NONCE_ID_LEN],
                     unsigned char mac[NONCE_MAC_LEN])
{
    unsigned char full[EVP_MAX_MD_SIZE];
    unsigned int flen = 0;
    if (!HMAC(EVP_sha256(), d->secret, sizeof d->secret, id, NONCE_ID_LEN, full, &flen) ||
        flen < NONCE_MAC_LEN)
        return -1;
    memcpy(mac, full, NONCE_MAC_LEN);
    return 0;
}

int digest_nonce_new(const struct digest *d, uint64_t now, char out[DIGEST_NONCE_MAX])
{
    unsigned char raw[NONCE_RAW_LEN];
    for (int i = 0; i < NONCE_TS_LEN; i++)
        raw[i] = (unsigned char)(now >> (8 * (NONCE_TS_LEN - 1 - i)));
    if (RAND_bytes(raw + NONCE_TS_LEN, NONCE_RAND_LEN) != 1)
        return -1;
    if (nonce_mac(d, raw, raw + NONCE_ID_LEN) < 0)
        return -1;
    b64url_encode(raw, sizeof raw, out);
    return 0;
}

/* Checks the MAC and extracts the issue time. */
static int nonce_open(const struct digest *d, const char *nonce, unsigned char id[NONCE_ID_LEN],
                      uint64_t *ts)
{
    unsigned char raw[NONCE_RAW_LEN], mac[NONCE_MAC_LEN];
    if (b64url_decode_nonce(nonce, raw) < 0 || nonce_mac(d, raw, mac) < 0)
        return -1;
    if (CRYPTO_memcmp(mac, raw + NONCE_ID_LEN, NONCE_MAC_LEN) != 0)
        return -1;
    memcpy(id, raw, NONCE_ID_LEN);
    uint64_t t = 0;
    for (int i = 0; i < NONCE_TS_LEN; i++)
        t = (t << 8) | raw[i];
    *ts = t;
    return 0;
}

static size_t nonce_bucket(const struct digest *d, const unsigned char id[NONCE_ID_LEN])
{
    /* The random part is uniformly distributed and server-made: no hash flooding possible. */
    uint64_t h = 0;
    memcpy(&h, id + NONCE_TS_LEN, sizeof h);
    return (size_t)h & (d->nbuckets - 1);
}

static void nonce_unlink(struct digest *d, struct nonce_entry *e)
{
    struct nonce_entry **pp = &d->buckets[nonce_bucket(d, e->id)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    if (e->older)
        e->older->newer = e->newer;
    else
        d->oldest = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        d->newest = e->older;
    d->count--;
}

static bool nonce_expired(const struct digest *d, uint64_t ts, uint64_t now)
{
    return now >= ts + d->lifetime || ts > now;
}

enum nc_check { NC_OK, NC_REPLAY, NC_STALE, NC_NOMEM };

/* RFC 7616 §3.4, §5.12: nc must grow strictly per nonce. Called with a verified digest. */
static enum nc_check nonce_accept_nc(struct digest *d, const unsigned char id[NONCE_ID_LEN],
                                     uint64_t ts, uint32_t nc, uint64_t now)
{
    enum nc_check rc = NC_OK;
    pthread_mutex_lock(&d->lock);
    struct nonce_entry *e = d->buckets[nonce_bucket(d, id)];
    while (e && memcmp(e->id, id, NONCE_ID_LEN) != 0)
        e = e->hnext;
    if (e) {
        if (nc <= e->nc)
            rc = NC_REPLAY;
        else
            e->nc = nc;
        goto out;
    }
    if (nc == 0) {
        rc = NC_REPLAY; /* counting starts at 1: 0 is never above the highest accepted */
        goto out;
    }
    if (d->has_floor && ts <= d->floor_ts) {
        rc = NC_STALE; /* its state may have been evicted: make the client take a new nonce */
        goto out;
    }
    while (d->oldest && (nonce_expired(d, d->oldest->ts, now) || d->count >= d->max_nonces)) {
        struct nonce_entry *old = d->oldest;
        if (!nonce_expired(d, old->ts, now) && (!d->has_floor || old->ts > d->floor_ts)) {
            d->has_floor = true;
            d->floor_ts = old->ts;
        }
        nonce_unlink(d, old);
        free(old);
    }
    if (d->has_floor && ts <= d->floor_ts) {
        rc = NC_STALE;
        goto out;
    }
    e = calloc(1, sizeof *e);
    if (!e) {
        rc = NC_NOMEM;
        goto out;
    }
    memcpy(e->id, id, NONCE_ID_LEN);
    e->ts = ts;
    e->nc = nc;
    size_t b = nonce_bucket(d, id);
    e->hnext = d->buckets[b];
    d->buckets[b] = e;
    e->older = d->newest;
    if (d->newest)
        d->newest->newer = e;
    else
        d->oldest = e;
    d->newest = e;
    d->count++;
out:
    pthread_mutex_unlock(&d->lock);
    return rc;
}

/* ---- Challenge and verification ------------------------------------------------------------- */

static int append_quoted(struct buf *out, const char *s)
{
    if (buf_puts(out, "\"") < 0)
        return -1;
    for (; *s; s++) {
        if ((*s == '"' || *s == '\\') && buf_puts(out, "\\") < 0)
            return -1;
        if (buf_append(out, s, 1) < 0)
            return -1;
    }
    return buf_puts(out, "\"");
}

int digest_challenge(const struct digest *d, enum digest_alg alg, const char *realm,
                     const char *nonce, bool stale, struct buf *out)
{
    return digest_challenge_qop(d, alg, realm, nonce, stale, "auth", out);
}

int digest_challenge_qop(const struct digest *d, enum digest_alg alg, const char *realm,
                         const char *nonce, bool stale, const char *qop, struct buf *out)
{
    size_t mark = out->len;
    if (buf_puts(out, "Digest realm=") < 0 || append_quoted(out, realm) < 0 ||
        buf_puts(out, ", qop=") < 0 || append_quoted(out, qop) < 0 ||
        buf_printf(out, ", algorithm=%s, nonce=\"%s\", opaque=\"%s\"%s", digest_alg_name(alg),
                   nonce, d->opaque, stale ? ", stale=true" : "") < 0) {
        out->len = mark;
        if (out->data)
            out->data[mark] = '\0';
        return -1;
    }
    return 0;
}

void digest_auth_release(struct digest_auth *a)
{
    free(a->identity);
    free(a->username);
    free(a->cnonce);
    free(a->uri);
    OPENSSL_cleanse(a->ha1, sizeof a->ha1);
    memset(a, 0, sizeof *a);
}

static bool is_hex_string(const char *s, size_t len)
{
    if (strnlen(s, len + 1) != len)
        return false;
    for (size_t i = 0; i < len; i++)
        if (hexval((unsigned char)s[i]) < 0)
            return false;
    return true;
}

#define VERDICT(code, why)                                                                         \
    do {                                                                                           \
        result = (code);                                                                           \
        *detail = (why);                                                                           \
        goto done;                                                                                 \
    } while (0)

enum digest_result digest_verify(struct digest *d, const char *authorization,
                                 const struct digest_request *rq, digest_lookup_fn lookup,
                                 void *lookup_cls, struct digest_auth *auth, const char **detail)
{
    const char *ignored;
    if (!detail)
        detail = &ignored;
    memset(auth, 0, sizeof *auth);
    enum digest_result result = DIGEST_ERROR;
    struct digest_params p;
    struct digest_cred cred = {{0}, NULL};

    if (!authorization) {
        memset(&p, 0, sizeof p);
        VERDICT(DIGEST_CHALLENGE, "no credentials");
    }
    switch (digest_parse_authorization(authorization, rq->uri, &p)) {
    case DIGEST_PARSE_OK:
        break;
    case DIGEST_PARSE_NOT_DIGEST:
        VERDICT(DIGEST_CHALLENGE, "not a Digest authorization");
    case DIGEST_PARSE_MALFORMED:
        VERDICT(DIGEST_BAD_REQUEST, "malformed Authorization header");
    }
    if (!p.username || !p.realm || !p.nonce || !p.uri || !p.response)
        VERDICT(DIGEST_BAD_REQUEST, "missing Digest parameter");

    /* RFC 7616 §3.4, §5.4: only what was offered. Without qop (RFC 2069) there is no replay
     * protection, so it is refused. auth-int is accepted although only auth is advertised: it is
     * the same scheme plus integrity of the body, never a downgrade. */
    if (!p.qop || (strcmp(p.qop, "auth") != 0 && strcmp(p.qop, "auth-int") != 0))
        VERDICT(DIGEST_CHALLENGE, "qop not offered");
    if (!p.cnonce || !p.nc)
        VERDICT(DIGEST_BAD_REQUEST, "qop without cnonce or nc");
    if (!is_hex_string(p.nc, 8))
        VERDICT(DIGEST_BAD_REQUEST, "nc is not 8 hex digits");
    if (strlen(p.cnonce) > CNONCE_MAX)
        VERDICT(DIGEST_BAD_REQUEST, "cnonce too long");
    enum digest_alg alg = DIGEST_MD5; /* RFC 7616 §3.4: absent means MD5 */
    if (p.algorithm && digest_alg_parse(p.algorithm, &alg) < 0)
        VERDICT(DIGEST_CHALLENGE, "unknown algorithm");
    if (digest_alg_is_sess(alg))
        VERDICT(DIGEST_CHALLENGE, "-sess algorithm not offered");
    struct digest_algs dflt;
    digest_algs_default(&dflt);
    if (!digest_algs_has(rq->offered ? rq->offered : &dflt, alg))
        VERDICT(DIGEST_CHALLENGE, "algorithm not offered");
    if (p.userhash && strcasecmp(p.userhash, "false") != 0)
        VERDICT(DIGEST_CHALLENGE, "userhash not offered");
    if (rq->realm && strcmp(p.realm, rq->realm) != 0)
        VERDICT(DIGEST_CHALLENGE, "realm does not match");
    if (!p.opaque || strlen(p.opaque) != OPAQUE_HEX_LEN ||
        CRYPTO_memcmp(p.opaque, d->opaque, OPAQUE_HEX_LEN) != 0)
        VERDICT(DIGEST_CHALLENGE, "opaque does not match");
    /* RFC 7616 §3.4.6: the uri parameter must name the request-target. */
    if (strcmp(p.uri, rq->uri) != 0)
        VERDICT(DIGEST_BAD_REQUEST, "uri does not match the request target");

    unsigned char id[NONCE_ID_LEN];
    uint64_t ts;
    if (nonce_open(d, p.nonce, id, &ts) < 0)
        VERDICT(DIGEST_CHALLENGE, "nonce not issued here");

    size_t hexlen = digest_alg_hexlen(alg);
    char given[DIGEST_HEX_MAX];
    if (!is_hex_string(p.response, hexlen))
        VERDICT(DIGEST_CHALLENGE, "response has the wrong length");
    for (size_t i = 0; i <= hexlen; i++)
        given[i] = (char)tolower((unsigned char)p.response[i]);

    switch (lookup(lookup_cls, p.realm, p.username, alg, &cred)) {
    case 0:
        break;
    case 1:
        VERDICT(DIGEST_CHALLENGE, "unknown user");
    default:
        VERDICT(DIGEST_ERROR, "credential lookup failed");
    }
    if (!cred.identity || strlen(cred.ha1) != hexlen)
        VERDICT(DIGEST_ERROR, "credential lookup returned no identity");

    char body_hash[DIGEST_HEX_MAX];
    bool auth_int = strcmp(p.qop, "auth-int") == 0;
    if (auth_int && digest_hash_hex(alg, rq->body ? rq->body : "", rq->body_len, body_hash) < 0)
        VERDICT(DIGEST_ERROR, "hash failure");
    struct digest_input in = {
        .alg = alg,
        .ha1 = cred.ha1,
        .nonce = p.nonce,
        .nc = p.nc,
        .cnonce = p.cnonce,
        .qop = p.qop,
        .method = rq->method,
        .uri = p.uri,
        .body_hash = auth_int ? body_hash : NULL,
    };
    char expect[DIGEST_HEX_MAX];
    if (digest_response(&in, expect) < 0)
        VERDICT(DIGEST_ERROR, "hash failure");
    if (CRYPTO_memcmp(expect, given, hexlen) != 0)
        VERDICT(DIGEST_CHALLENGE, "wrong digest");

    /* RFC 7616 §3.3, §5.5: right credentials on an old nonce -> stale; the client retries. */
    if (nonce_expired(d, ts, rq->now))
        VERDICT(DIGEST_STALE, "nonce expired");
    uint32_t nc = (uint32_t)strtoul(p.nc, NULL, 16);
    switch (nonce_accept_nc(d, id, ts, nc, rq->now)) {
    case NC_OK:
        break;
    case NC_REPLAY:
        VERDICT(DIGEST_CHALLENGE, "nc replayed");
    case NC_STALE:
        VERDICT(DIGEST_STALE, "nonce state evicted");
    case NC_NOMEM:
        VERDICT(DIGEST_ERROR, "out of memory");
    }

    auth->identity = cred.identity;
    cred.identity = NULL;
    auth->username = strdup(p.username);
    auth->cnonce = strdup(p.cnonce);
    auth->uri = strdup(p.uri);
    auth->alg = alg;
    memcpy(auth->ha1, cred.ha1, sizeof auth->ha1);
    snprintf(auth->nonce, sizeof auth->nonce, "%s", p.nonce);
    memcpy(auth->nc, p.nc, sizeof auth->nc);
    snprintf(auth->qop, sizeof auth->qop, "%s", p.qop);
    if (!auth->username || !auth->cnonce || !auth->uri) {
        digest_auth_release(auth);
        VERDICT(DIGEST_ERROR, "out of memory");
    }
    result = DIGEST_OK;
    *detail = "ok";

done:
    free(cred.identity);
    OPENSSL_cleanse(cred.ha1, sizeof cred.ha1);
    digest_params_release(&p);
    return result;
}

int digest_auth_info(const struct digest_auth *a, const void *resp_body, size_t resp_len,
                     struct buf *out)
{
    char body_hash[DIGEST_HEX_MAX];
    bool auth_int = strcmp(a->qop, "auth-int") == 0;
    if (auth_int && digest_hash_hex(a->alg, resp_body ? resp_body : "", resp_len, body_hash) < 0)
        return -1;
    /* RFC 7616 §3.5: rspauth is the response digest with an empty method. */
    struct digest_input in = {
        .alg = a->alg,
        .ha1 = a->ha1,
        .nonce = a->nonce,
        .nc = a->nc,
        .cnonce = a->cnonce,
        .qop = a->qop,
        .method = "",
        .uri = a->uri,
        .body_hash = auth_int ? body_hash : NULL,
    };
    char rspauth[DIGEST_HEX_MAX];
    if (digest_response(&in, rspauth) < 0)
        return -1;
    size_t mark = out->len;
    if (buf_printf(out, "qop=%s, rspauth=\"%s\", cnonce=", a->qop, rspauth) < 0 ||
        append_quoted(out, a->cnonce) < 0 || buf_printf(out, ", nc=%s", a->nc) < 0) {
        out->len = mark;
        if (out->data)
            out->data[mark] = '\0';
        return -1;
    }
    return 0;
}
