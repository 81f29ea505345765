#include "gba.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "log.h"
#include "store.h"

const char *const gba_tables[] = {"gba", NULL};

/* Record versions (gba.h): 1 = every AUID allowed, 2 = an allowed-AUID list follows the IMPUs. */
#define GBA_RECORD_V1 1
#define GBA_RECORD_V2 2
#define GBA_FIXED_LEN (1 + GBA_KS_LEN + GBA_RAND_LEN + 8)
#define GBA_VALUE_MAX                                                                              \
    (GBA_FIXED_LEN + GBA_IMPI_MAX + 1 + GBA_IMPUS_MAX * (GBA_IMPU_MAX + 1) + 1 +                   \
     GBA_AUIDS_MAX * (GBA_AUID_MAX + 1))

/* ---- Key derivation ------------------------------------------------------------------------- */

static int gba_put_param(unsigned char *s, size_t *pos, size_t cap, const void *p, size_t len)
{
    if (len > 0xffff || cap - *pos < len + 2)
        return -1;
    memcpy(s + *pos, p, len);
    s[*pos + len] = (unsigned char)(len >> 8);
    s[*pos + len + 1] = (unsigned char)(len & 0xff);
    *pos += len + 2;
    return 0;
}

int gba_kdf(const unsigned char ks[GBA_KS_LEN], const unsigned char rand[GBA_RAND_LEN],
            const char *impi, const unsigned char *naf_id, size_t naf_id_len,
            unsigned char out[GBA_KEY_LEN])
{
    size_t impi_len = strnlen(impi, GBA_IMPI_MAX + 1);
    if (impi_len > GBA_IMPI_MAX || naf_id_len > GBA_NAF_ID_MAX)
        return -1;
    /* TS 33.220 Annex B.2.1: FC, then each parameter followed by its 2-octet length. */
    unsigned char s[1 + 8 + GBA_RAND_LEN + GBA_IMPI_MAX + GBA_NAF_ID_MAX + 8];
    size_t pos = 0;
    s[pos++] = 0x01;
    if (gba_put_param(s, &pos, sizeof s, "gba-me", 6) < 0 ||
        gba_put_param(s, &pos, sizeof s, rand, GBA_RAND_LEN) < 0 ||
        gba_put_param(s, &pos, sizeof s, impi, impi_len) < 0 ||
        gba_put_param(s, &pos, sizeof s, naf_id, naf_id_len) < 0)
        return -1;
    unsigned int mdlen = 0;
    unsigned char *rc = HMAC(EVP_sha256(), ks, GBA_KS_LEN, s, pos, out, &mdlen);
    OPENSSL_cleanse(s, sizeof s);
    return rc && mdlen == GBA_KEY_LEN ? 0 : -1;
}

void gba_ua_id(int tls_cipher, unsigned char out[GBA_UA_ID_LEN])
{
    out[0] = 0x01;
    out[1] = 0x00;
    if (tls_cipher < 0) {
        out[2] = 0x00;
        out[3] = 0x00;
        out[4] = 0x02;
    } else {
        out[2] = 0x01;
        out[3] = (unsigned char)((tls_cipher >> 8) & 0xff);
        out[4] = (unsigned char)(tls_cipher & 0xff);
    }
}

int gba_naf_id(const char *fqdn, int tls_cipher, unsigned char out[GBA_NAF_ID_MAX], size_t *len)
{
    size_t n = strnlen(fqdn, GBA_FQDN_MAX + 1);
    if (n == 0 || n > GBA_FQDN_MAX)
        return -1;
    for (size_t i = 0; i < n; i++)
        out[i] = (unsigned char)tolower((unsigned char)fqdn[i]);
    gba_ua_id(tls_cipher, out + n);
    *len = n + GBA_UA_ID_LEN;
    return 0;
}

/* ---- Request inspection --------------------------------------------------------------------- */

bool gba_user_agent(const char *ua)
{
    if (!ua)
        return false;
    /* RFC 9110 §10.1.5: product *( RWS ( product / comment ) ), product = token ["/" version]. */
    const char *p = ua;
    int depth = 0;
    while (*p) {
        if (*p == '(') {
            depth++;
            p++;
            continue;
        }
        if (*p == ')') {
            if (depth > 0)
                depth--;
            p++;
            continue;
        }
        if (depth > 0) {
            if (*p == '\\' && p[1])
                p++;
            p++;
            continue;
        }
        if (*p == ' ' || *p == '\t') {
            p++;
            continue;
        }
        size_t n = strcspn(p, " \t/(");
        if (n == 8 && strncasecmp(p, "3gpp-gba", 8) == 0)
            return true;
        p += n;
        if (*p == '/')
            p += strcspn(p, " \t(");
    }
    return false;
}

int gba_host_name(const char *host, char *out, size_t outlen)
{
    if (!host || outlen == 0)
        return -1;
    size_t len;
    if (host[0] == '[') {
        const char *close = strchr(host, ']');
        if (!close)
            return -1;
        len = (size_t)(close - host) + 1;
    } else {
        len = strcspn(host, ":");
    }
    const char *rest = host + len;
    if (*rest == ':') {
        rest++;
        if (!*rest || strspn(rest, "0123456789") != strlen(rest) || strlen(rest) > 5)
            return -1;
    } else if (*rest) {
        return -1;
    }
    if (len == 0 || len >= outlen || len > GBA_FQDN_MAX)
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)host[i];
        /* RFC 3986 §3.2.2 reg-name (no percent escapes) or IP literal characters. */
        if (!(isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '[' || c == ']' ||
              c == ':'))
            return -1;
        out[i] = (char)tolower(c);
    }
    out[len] = '\0';
    return 0;
}

int gba_realm(const char *fqdn, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s%s", GBA_REALM_PREFIX, fqdn);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

int gba_password(const unsigned char ks_naf[GBA_KEY_LEN], enum gba_password_form form,
                 char out[GBA_PASSWORD_MAX], size_t *len)
{
    switch (form) {
    case GBA_PASSWORD_BASE64: {
        /* 32 bytes -> 44 characters with padding (RFC 2045 alphabet). */
        int n = EVP_EncodeBlock((unsigned char *)out, ks_naf, GBA_KEY_LEN);
        if (n != 44)
            return -1;
        *len = (size_t)n;
        return 0;
    }
    case GBA_PASSWORD_RAW:
        memcpy(out, ks_naf, GBA_KEY_LEN);
        out[GBA_KEY_LEN] = '\0';
        *len = GBA_KEY_LEN;
        return 0;
    }
    return -1;
}

int gba_base64_decode(const char *s, size_t slen, unsigned char *out, size_t n)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    while (slen > 0 && s[slen - 1] == '=')
        slen--;
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < slen; i++) {
        const char *pos = s[i] ? strchr(alphabet, s[i]) : NULL;
        if (!pos)
            return -1;
        acc = (acc << 6) | (uint32_t)(pos - alphabet);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= n)
                return -1;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    return o == n && (acc & ((1u << bits) - 1)) == 0 ? 0 : -1;
}

/* ---- Keys ----------------------------------------------------------------------------------- */

void gba_key_release(struct gba_key *k)
{
    OPENSSL_cleanse(k->ks_naf, sizeof k->ks_naf);
    free(k->impi);
    for (size_t i = 0; i < k->n_impus; i++)
        free(k->impus[i]);
    free(k->impus);
    for (size_t i = 0; i < k->n_auids; i++)
        free(k->auids[i]);
    free(k->auids);
    memset(k, 0, sizeof *k);
}

/* ---- Authorisation -------------------------------------------------------------------------- */

bool gba_auid_allowed(const char *const *auids, size_t n_auids, const char *auid, size_t auid_len)
{
    /* TS 24.109 §7.3: the GUSS names the application servers a subscriber may use; a record without
     * that part restricts nothing (the built-in store's records from before it existed). */
    if (n_auids == 0)
        return true;
    for (size_t i = 0; i < n_auids; i++)
        if (auid_len > 0 && strlen(auids[i]) == auid_len && memcmp(auids[i], auid, auid_len) == 0)
            return true;
    return false;
}

bool gba_auid_ok(const char *s)
{
    size_t len = strnlen(s, GBA_AUID_MAX + 1);
    /* "*" is what gba list prints for "every AUID". */
    if (len == 0 || len > GBA_AUID_MAX || strcmp(s, "*") == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f || strchr("/?#,", c))
            return false;
    }
    return true;
}

/* ---- Built-in store ------------------------------------------------------------------------- */

const char *gba_strerror(enum gba_rc rc)
{
    switch (rc) {
    case GBA_OK:
        return "ok";
    case GBA_EXISTS:
        return "a record for this B-TID exists";
    case GBA_NOT_FOUND:
        return "no record for this B-TID";
    case GBA_BAD:
        return "bad B-TID, IMPI, IMPU or AUID";
    case GBA_ERROR:
        return "storage error";
    }
    return "?";
}

/* The B-TID is the Digest username, sent quoted by the UE: printable ASCII without quote,
 * backslash or space keeps it a plain token-like value. */
static bool gba_btid_ok(const char *b)
{
    size_t len = strnlen(b, GBA_BTID_MAX + 1);
    if (len == 0 || len > GBA_BTID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)b[i];
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\')
            return false;
    }
    return true;
}

static bool gba_text_ok(const char *s, size_t max)
{
    size_t len = strnlen(s, max + 1);
    if (len == 0 || len > max)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

/* Public identities are asserted as quoted header values (TS 24.109 §7): a URI with a scheme and
 * none of the characters that would break the quoting or a comma-separated list. */
static bool gba_impu_ok(const char *u)
{
    size_t len = strnlen(u, GBA_IMPU_MAX + 1);
    if (len == 0 || len > GBA_IMPU_MAX || !isalpha((unsigned char)u[0]))
        return false;
    size_t i = 0;
    while (isalnum((unsigned char)u[i]) || u[i] == '+' || u[i] == '-' || u[i] == '.')
        i++;
    if (u[i] != ':' || u[i + 1] == '\0')
        return false;
    for (; i < len; i++) {
        unsigned char c = (unsigned char)u[i];
        if (c <= 0x20 || c >= 0x7f || strchr("\"<>\\,", c))
            return false;
    }
    return true;
}

enum gba_rc gba_record_check(const struct gba_record *r)
{
    if (!r->btid || !gba_btid_ok(r->btid) || !r->impi || !gba_text_ok(r->impi, GBA_IMPI_MAX) ||
        r->n_impus == 0 || r->n_impus > GBA_IMPUS_MAX)
        return GBA_BAD;
    for (size_t i = 0; i < r->n_impus; i++)
        if (!r->impus[i] || !gba_impu_ok(r->impus[i]))
            return GBA_BAD;
    if (r->n_auids > GBA_AUIDS_MAX || (r->n_auids && !r->auids))
        return GBA_BAD;
    for (size_t i = 0; i < r->n_auids; i++) {
        if (!r->auids[i] || !gba_auid_ok(r->auids[i]))
            return GBA_BAD;
        for (size_t j = 0; j < i; j++)
            if (strcmp(r->auids[i], r->auids[j]) == 0)
                return GBA_BAD;
    }
    return GBA_OK;
}

static enum gba_rc gba_from_store(enum store_rc rc)
{
    switch (rc) {
    case STORE_OK:
        return GBA_OK;
    case STORE_NOTFOUND:
        return GBA_NOT_FOUND;
    case STORE_FULL:
    case STORE_INVALID:
    case STORE_ERROR:
    case STORE_UNAVAILABLE:
        return GBA_ERROR;
    }
    return GBA_ERROR;
}

enum gba_rc gba_add(struct store *s, const struct gba_record *r)
{
    if (gba_record_check(r) != GBA_OK)
        return GBA_BAD;
    unsigned char *v = malloc(GBA_VALUE_MAX);
    if (!v)
        return GBA_ERROR;
    size_t pos = 0;
    v[pos++] = r->n_auids ? GBA_RECORD_V2 : GBA_RECORD_V1;
    memcpy(v + pos, r->ks, GBA_KS_LEN);
    pos += GBA_KS_LEN;
    memcpy(v + pos, r->rand, GBA_RAND_LEN);
    pos += GBA_RAND_LEN;
    uint64_t e = (uint64_t)r->expires;
    for (int i = 7; i >= 0; i--)
        v[pos++] = (unsigned char)(e >> (8 * i));
    size_t l = strlen(r->impi) + 1;
    memcpy(v + pos, r->impi, l);
    pos += l;
    for (size_t i = 0; i < r->n_impus; i++) {
        l = strlen(r->impus[i]) + 1;
        memcpy(v + pos, r->impus[i], l);
        pos += l;
    }
    if (r->n_auids) {
        v[pos++] = '\0';
        for (size_t i = 0; i < r->n_auids; i++) {
            l = strlen(r->auids[i]) + 1;
            memcpy(v + pos, r->auids[i], l);
            pos += l;
        }
    }

    enum gba_rc out = GBA_ERROR;
    struct store_txn *t;
    if (store_txn_begin(s, true, &t) == STORE_OK) {
        void *old = NULL;
        size_t oldlen;
        size_t klen = strlen(r->btid);
        enum store_rc rc = store_kv_get(t, "gba", r->btid, klen, &old, &oldlen);
        free(old);
        if (rc == STORE_OK)
            out = GBA_EXISTS;
        else if (rc == STORE_NOTFOUND && store_kv_put(t, "gba", r->btid, klen, v, pos) == STORE_OK)
            out = GBA_OK;
        if (out == GBA_OK)
            out = store_txn_commit(t) == STORE_OK ? GBA_OK : GBA_ERROR;
        else
            store_txn_abort(t);
    }
    OPENSSL_cleanse(v, pos);
    free(v);
    return out;
}

enum gba_rc gba_del(struct store *s, const char *btid)
{
    if (!gba_btid_ok(btid))
        return GBA_BAD;
    struct store_txn *t;
    if (store_txn_begin(s, true, &t) != STORE_OK)
        return GBA_ERROR;
    enum gba_rc rc = gba_from_store(store_kv_del(t, "gba", btid, strlen(btid)));
    if (rc != GBA_OK) {
        store_txn_abort(t);
        return rc;
    }
    return store_txn_commit(t) == STORE_OK ? GBA_OK : GBA_ERROR;
}

/* Room for the string arrays a decoded record points into. */
struct gba_decoded {
    const char *impus[GBA_IMPUS_MAX];
    const char *auids[GBA_AUIDS_MAX];
};

/* Reads a stored value of version 1 or 2 into r; the strings point into v (whose last byte is a
 * NUL, checked) and the arrays into d. */
static int gba_decode(const unsigned char *v, size_t vlen, struct gba_record *r,
                      struct gba_decoded *d)
{
    if (vlen < GBA_FIXED_LEN + 2 || (v[0] != GBA_RECORD_V1 && v[0] != GBA_RECORD_V2) ||
        v[vlen - 1] != '\0')
        return -1;
    bool restricted = v[0] == GBA_RECORD_V2;
    size_t pos = 1;
    memcpy(r->ks, v + pos, GBA_KS_LEN);
    pos += GBA_KS_LEN;
    memcpy(r->rand, v + pos, GBA_RAND_LEN);
    pos += GBA_RAND_LEN;
    uint64_t e = 0;
    for (int i = 0; i < 8; i++)
        e = (e << 8) | v[pos++];
    r->expires = (int64_t)e;
    r->impi = (const char *)v + pos;
    pos += strlen(r->impi) + 1;
    r->n_impus = 0;
    r->n_auids = 0;
    r->impus = d->impus;
    r->auids = NULL;
    while (pos < vlen) {
        const char *str = (const char *)v + pos;
        size_t len = strlen(str);
        pos += len + 1;
        if (len == 0) {
            if (!restricted)
                return -1;
            break; /* version 2: the AUIDs follow */
        }
        if (r->n_impus == GBA_IMPUS_MAX)
            return -1;
        d->impus[r->n_impus++] = str;
    }
    if (r->n_impus == 0)
        return -1;
    if (!restricted)
        return 0;
    while (pos < vlen) {
        const char *str = (const char *)v + pos;
        if (r->n_auids == GBA_AUIDS_MAX || !gba_auid_ok(str))
            return -1;
        d->auids[r->n_auids++] = str;
        pos += strlen(str) + 1;
    }
    /* A version 2 record restricts: an empty list would read back as "every AUID". */
    if (r->n_auids == 0)
        return -1;
    r->auids = d->auids;
    return 0;
}

struct gba_list_ctx {
    int (*fn)(void *cls, const struct gba_record *r);
    void *cls;
    bool corrupt;
};

static int gba_list_one(void *cls, const void *key, size_t klen, const void *val, size_t vlen)
{
    struct gba_list_ctx *lc = cls;
    /* Views are not NUL-terminated: copy both first. */
    char btid[GBA_BTID_MAX + 1];
    unsigned char *v = malloc(vlen + 1);
    if (!v || klen == 0 || klen > GBA_BTID_MAX || vlen > GBA_VALUE_MAX) {
        free(v);
        lc->corrupt = true;
        return 1;
    }
    memcpy(btid, key, klen);
    btid[klen] = '\0';
    memcpy(v, val, vlen);
    v[vlen] = '\0';
    struct gba_record r = {.btid = btid};
    struct gba_decoded d;
    int rc;
    if (gba_decode(v, vlen, &r, &d) < 0) {
        lc->corrupt = true;
        rc = 1;
    } else {
        rc = lc->fn(lc->cls, &r);
    }
    OPENSSL_cleanse(v, vlen);
    OPENSSL_cleanse(&r, sizeof r);
    free(v);
    return rc;
}

enum gba_rc gba_list(struct store *s, int (*fn)(void *cls, const struct gba_record *r), void *cls)
{
    struct store_txn *t;
    if (store_txn_begin(s, false, &t) != STORE_OK)
        return GBA_ERROR;
    struct gba_list_ctx lc = {fn, cls, false};
    enum store_rc rc = store_kv_scan(t, "gba", NULL, 0, gba_list_one, &lc);
    store_txn_abort(t);
    return rc == STORE_OK && !lc.corrupt ? GBA_OK : GBA_ERROR;
}

int gba_store_fetch(void *cls, const char *btid, const unsigned char *naf_id, size_t naf_id_len,
                    int64_t now, struct gba_key *out)
{
    memset(out, 0, sizeof *out);
    if (!gba_btid_ok(btid))
        return 1;
    struct store_txn *t;
    if (store_txn_begin(cls, false, &t) != STORE_OK)
        return -1;
    void *v = NULL;
    size_t vlen = 0;
    enum store_rc src = store_kv_get(t, "gba", btid, strlen(btid), &v, &vlen);
    store_txn_abort(t);
    if (src == STORE_NOTFOUND)
        return 1;
    if (src != STORE_OK)
        return -1;
    struct gba_record r = {.btid = btid};
    struct gba_decoded d;
    int rc = -1;
    if (gba_decode(v, vlen, &r, &d) < 0) {
        log_error("gba: the record of B-TID %s is corrupt or of an unknown version", btid);
        goto done;
    }
    /* TS 33.220 §4.5.3: never use a key past its lifetime. */
    if (now >= r.expires) {
        rc = 1;
        goto done;
    }
    if (gba_kdf(r.ks, r.rand, r.impi, naf_id, naf_id_len, out->ks_naf) < 0)
        goto done;
    out->expires = r.expires;
    out->impi = strdup(r.impi);
    out->impus = calloc(r.n_impus, sizeof *out->impus);
    if (!out->impi || !out->impus)
        goto done;
    for (size_t i = 0; i < r.n_impus; i++) {
        if (!(out->impus[i] = strdup(r.impus[i])))
            goto done;
        out->n_impus++;
    }
    if (r.n_auids && !(out->auids = calloc(r.n_auids, sizeof *out->auids)))
        goto done;
    for (size_t i = 0; i < r.n_auids; i++) {
        if (!(out->auids[i] = strdup(r.auids[i])))
            goto done;
        out->n_auids++;
    }
    rc = 0;
done:
    if (rc != 0)
        gba_key_release(out);
    OPENSSL_cleanse(&r, sizeof r);
    if (v)
        OPENSSL_cleanse(v, vlen);
    free(v);
    return rc;
}
