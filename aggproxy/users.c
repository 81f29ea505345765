#include "users.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "gba.h"
#include "store.h"
#include "xcap_uri.h"

/* "gba" is gba.h's table (gba_tables): the proxy's one store holds both. */
const char *const users_tables[] = {"users", "creds", "ids", "gba", NULL};

#define CREDS_KEY_MAX (2 * USERS_NAME_MAX + 2)

const char *users_strerror(enum users_rc rc)
{
    switch (rc) {
    case USERS_OK:
        return "ok";
    case USERS_EXISTS:
        return "user exists";
    case USERS_CRED_TAKEN:
        return "username already taken in this realm";
    case USERS_NOT_FOUND:
        return "user not found";
    case USERS_BAD_XUI:
        return "bad XUI";
    case USERS_BAD_NAME:
        return "bad username, realm or password";
    case USERS_BAD_ID:
        return "bad or repeated further identity";
    case USERS_ERROR:
        return "storage error";
    }
    return "?";
}

static int users_mkdirs(const char *dir)
{
    size_t len = strlen(dir);
    char *path = malloc(len + 1);
    if (!path)
        return -1;
    memcpy(path, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        char c = path[i];
        path[i] = '\0';
        if (mkdir(path, 0700) < 0 && errno != EEXIST) {
            free(path);
            return -1;
        }
        path[i] = c;
    }
    free(path);
    return 0;
}

enum users_rc users_open(const char *dir, struct store **out)
{
    *out = NULL;
    if (users_mkdirs(dir) < 0)
        return USERS_ERROR;
    struct store_options opts = {.tables = users_tables};
    return store_open(dir, &opts, out) == STORE_OK ? USERS_OK : USERS_ERROR;
}

/* Characters that cannot appear in an XUI used as a path segment and quoted header value. */
static bool users_xui_char_ok(unsigned char c)
{
    return c > 0x20 && c != 0x7f && strchr("\"<>\\/?#,", c) == NULL;
}

static enum users_rc users_copy_span(const char *s, size_t len, char *out, size_t outlen)
{
    if (len == 0 || len >= outlen)
        return USERS_BAD_XUI;
    memcpy(out, s, len);
    out[len] = '\0';
    return USERS_OK;
}

enum users_rc users_xui_split(const char *xui, char *user, size_t userlen, char *domain,
                              size_t domainlen)
{
    if (userlen)
        user[0] = '\0';
    if (domainlen)
        domain[0] = '\0';
    size_t len = strnlen(xui, USERS_XUI_MAX + 1);
    if (len == 0 || len > USERS_XUI_MAX)
        return USERS_BAD_XUI;
    for (size_t i = 0; i < len; i++)
        if (!users_xui_char_ok((unsigned char)xui[i]))
            return USERS_BAD_XUI;
    /* RFC 3986 §3.1 scheme. */
    size_t i = 0;
    if (!isalpha((unsigned char)xui[0]))
        return USERS_BAD_XUI;
    while (isalnum((unsigned char)xui[i]) || xui[i] == '+' || xui[i] == '-' || xui[i] == '.')
        i++;
    if (xui[i] != ':' || xui[i + 1] == '\0')
        return USERS_BAD_XUI;
    bool sip =
        (i == 3 && strncasecmp(xui, "sip", 3) == 0) || (i == 4 && strncasecmp(xui, "sips", 4) == 0);
    if (!sip)
        return USERS_OK;

    /* RFC 3261 §19.1.1: sip:user[:password]@host[:port][;params]. */
    const char *rest = xui + i + 1;
    const char *at = strchr(rest, '@');
    if (!at)
        return USERS_BAD_XUI;
    size_t ulen = strcspn(rest, ":@");
    if (users_copy_span(rest, ulen, user, userlen) != USERS_OK)
        return USERS_BAD_XUI;
    const char *host = at + 1;
    size_t hlen;
    if (*host == '[') {
        const char *close = strchr(host, ']');
        if (!close)
            return USERS_BAD_XUI;
        hlen = (size_t)(close - host) + 1;
    } else {
        hlen = strcspn(host, ":;@");
    }
    if (host[hlen] == '@' || users_copy_span(host, hlen, domain, domainlen) != USERS_OK) {
        user[0] = '\0';
        return USERS_BAD_XUI;
    }
    for (char *p = domain; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return USERS_OK;
}

/* Usernames and realms go into quoted header values and NUL-separated keys. */
static bool users_name_ok(const char *s)
{
    size_t len = strnlen(s, USERS_NAME_MAX + 1);
    if (len == 0 || len > USERS_NAME_MAX)
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f || *p == '"' || *p == '\\')
            return false;
    return true;
}

static size_t users_creds_key(const char *realm, const char *username, char key[CREDS_KEY_MAX])
{
    size_t rl = strlen(realm), ul = strlen(username);
    memcpy(key, realm, rl);
    key[rl] = '\0';
    memcpy(key + rl + 1, username, ul);
    return rl + 1 + ul;
}

static enum users_rc users_from_store(enum store_rc rc)
{
    switch (rc) {
    case STORE_OK:
        return USERS_OK;
    case STORE_NOTFOUND:
        return USERS_NOT_FOUND;
    case STORE_FULL:
    case STORE_INVALID:
    case STORE_ERROR:
    case STORE_UNAVAILABLE:
        return USERS_ERROR;
    }
    return USERS_ERROR;
}

enum users_rc users_add(struct store *s, const char *xui, const char *username, const char *realm,
                        const char *password)
{
    return users_add_ids(s, xui, username, realm, password, NULL, 0);
}

/* Checks the further identities and packs them as id \0 id \0 ... into out (malloc'd). */
static enum users_rc users_pack_ids(const char *xui, const char *const *ids, size_t n, char **out,
                                    size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    if (n > USERS_IDS_MAX)
        return USERS_BAD_ID;
    char u[USERS_NAME_MAX + 1], d[USERS_NAME_MAX + 1];
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (users_xui_split(ids[i], u, sizeof u, d, sizeof d) != USERS_OK ||
            xcap_uri_xui_equal(ids[i], xui))
            return USERS_BAD_ID;
        for (size_t j = 0; j < i; j++)
            if (xcap_uri_xui_equal(ids[i], ids[j]))
                return USERS_BAD_ID;
        total += strlen(ids[i]) + 1;
    }
    if (n == 0)
        return USERS_OK;
    char *p = malloc(total);
    if (!p)
        return USERS_ERROR;
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(ids[i]) + 1;
        memcpy(p + pos, ids[i], l);
        pos += l;
    }
    *out = p;
    *outlen = total;
    return USERS_OK;
}

enum users_rc users_add_ids(struct store *s, const char *xui, const char *username,
                            const char *realm, const char *password, const char *const *ids,
                            size_t n_ids)
{
    char user[USERS_NAME_MAX + 1], domain[USERS_NAME_MAX + 1];
    if (users_xui_split(xui, user, sizeof user, domain, sizeof domain) != USERS_OK)
        return USERS_BAD_XUI;
    if (!username)
        username = user;
    if (!realm)
        realm = domain;
    if (!username[0] || !realm[0])
        return USERS_BAD_XUI; /* not sip:, and no explicit username/realm */
    if (!users_name_ok(username) || !users_name_ok(realm) || !password ||
        strnlen(password, USERS_PASSWORD_MAX + 1) > USERS_PASSWORD_MAX)
        return USERS_BAD_NAME;

    /* Value: xui \0 ha1_md5 \0 ha1_sha256. */
    char val[USERS_XUI_MAX + 1 + 2 * DIGEST_HEX_MAX];
    size_t xl = strlen(xui);
    memcpy(val, xui, xl + 1);
    if (digest_ha1(DIGEST_MD5, username, realm, password, val + xl + 1) < 0 ||
        digest_ha1(DIGEST_SHA256, username, realm, password, val + xl + 1 + 33) < 0)
        return USERS_ERROR;
    size_t vlen = xl + 1 + 32 + 1 + 64;

    char key[CREDS_KEY_MAX];
    size_t klen = users_creds_key(realm, username, key);
    char uval[2 * USERS_NAME_MAX + 2];
    size_t uvlen = users_creds_key(username, realm, uval);
    char *idv;
    size_t idvlen;
    enum users_rc prc = users_pack_ids(xui, ids, n_ids, &idv, &idvlen);
    if (prc != USERS_OK)
        return prc;

    struct store_txn *t;
    if (store_txn_begin(s, true, &t) != STORE_OK) {
        free(idv);
        return USERS_ERROR;
    }
    void *old = NULL;
    size_t oldlen;
    enum store_rc rc = store_kv_get(t, "users", xui, xl, &old, &oldlen);
    free(old);
    old = NULL;
    enum users_rc out = USERS_OK;
    if (rc == STORE_OK) {
        out = USERS_EXISTS;
    } else if (rc != STORE_NOTFOUND) {
        out = USERS_ERROR;
    } else {
        rc = store_kv_get(t, "creds", key, klen, &old, &oldlen);
        free(old);
        if (rc == STORE_OK)
            out = USERS_CRED_TAKEN;
        else if (rc != STORE_NOTFOUND)
            out = USERS_ERROR;
    }
    if (out == USERS_OK) {
        if (store_kv_put(t, "users", xui, xl, uval, uvlen) != STORE_OK ||
            store_kv_put(t, "creds", key, klen, val, vlen) != STORE_OK ||
            (idv && store_kv_put(t, "ids", xui, xl, idv, idvlen) != STORE_OK))
            out = USERS_ERROR;
    }
    free(idv);
    if (out != USERS_OK) {
        store_txn_abort(t);
        return out;
    }
    return store_txn_commit(t) == STORE_OK ? USERS_OK : USERS_ERROR;
}

/* Splits a stored "a \0 b" value (NUL-terminated after len bytes); both parts must be non-empty
 * and b must hold no NUL. */
static int users_split2(const char *v, size_t len, const char **a, const char **b)
{
    const char *nul = memchr(v, '\0', len);
    if (!nul || nul == v || (size_t)(nul - v) + 1 >= len)
        return -1;
    if (memchr(nul + 1, '\0', len - (size_t)(nul - v) - 1))
        return -1;
    *a = v;
    *b = nul + 1;
    return 0;
}

enum users_rc users_del(struct store *s, const char *xui)
{
    size_t xl = strnlen(xui, USERS_XUI_MAX + 1);
    if (xl == 0 || xl > USERS_XUI_MAX)
        return USERS_BAD_XUI;
    struct store_txn *t;
    if (store_txn_begin(s, true, &t) != STORE_OK)
        return USERS_ERROR;
    void *v = NULL;
    size_t vlen;
    enum users_rc out = users_from_store(store_kv_get(t, "users", xui, xl, &v, &vlen));
    const char *username, *realm;
    if (out == USERS_OK && users_split2(v, vlen, &username, &realm) < 0)
        out = USERS_ERROR;
    if (out == USERS_OK) {
        char key[CREDS_KEY_MAX];
        size_t klen = users_creds_key(realm, username, key);
        void *c = NULL;
        size_t clen;
        enum store_rc rc = store_kv_get(t, "creds", key, klen, &c, &clen);
        /* Delete the credentials only if they belong to this XUI. */
        if (rc == STORE_OK && clen > xl && memcmp(c, xui, xl + 1) == 0)
            rc = store_kv_del(t, "creds", key, klen);
        else if (rc == STORE_NOTFOUND || rc == STORE_OK)
            rc = STORE_OK;
        free(c);
        if (rc == STORE_OK) {
            rc = store_kv_del(t, "ids", xui, xl);
            if (rc == STORE_NOTFOUND)
                rc = STORE_OK;
        }
        if (rc != STORE_OK || store_kv_del(t, "users", xui, xl) != STORE_OK)
            out = USERS_ERROR;
    }
    free(v);
    if (out != USERS_OK) {
        store_txn_abort(t);
        return out;
    }
    return store_txn_commit(t) == STORE_OK ? USERS_OK : USERS_ERROR;
}

struct list_ctx {
    int (*fn)(void *cls, const struct users_entry *u);
    void *cls;
    struct store_txn *t;
    bool corrupt;
};

/* Splits a stored "id \0 id \0 ..." value (followed by an extra NUL) into pointers into it. */
static int users_unpack_ids(const char *v, size_t vlen, const char **ids, size_t *n)
{
    *n = 0;
    if (vlen == 0 || v[vlen - 1] != '\0')
        return -1;
    for (size_t pos = 0; pos < vlen;) {
        size_t l = strlen(v + pos);
        if (l == 0 || *n == USERS_IDS_MAX)
            return -1;
        ids[(*n)++] = v + pos;
        pos += l + 1;
    }
    return 0;
}

/* Reads the further identities of xui inside t: *raw owns the bytes ids point into. */
static enum users_rc users_read_ids(struct store_txn *t, const char *xui, void **raw,
                                    const char **ids, size_t *n)
{
    size_t vlen;
    *raw = NULL;
    *n = 0;
    enum store_rc rc = store_kv_get(t, "ids", xui, strlen(xui), raw, &vlen);
    if (rc == STORE_NOTFOUND)
        return USERS_OK;
    if (rc != STORE_OK)
        return USERS_ERROR;
    if (users_unpack_ids(*raw, vlen, ids, n) < 0) {
        free(*raw);
        *raw = NULL;
        return USERS_ERROR;
    }
    return USERS_OK;
}

static int users_list_one(void *cls, const void *key, size_t klen, const void *val, size_t vlen)
{
    struct list_ctx *lc = cls;
    /* Views are not NUL-terminated: copy them first. */
    char xui[USERS_XUI_MAX + 1], v[2 * USERS_NAME_MAX + 2];
    const char *username, *realm;
    if (klen == 0 || klen > USERS_XUI_MAX || memchr(key, '\0', klen) || vlen >= sizeof v) {
        lc->corrupt = true;
        return 1;
    }
    memcpy(v, val, vlen);
    v[vlen] = '\0';
    if (users_split2(v, vlen, &username, &realm) < 0) {
        lc->corrupt = true;
        return 1;
    }
    memcpy(xui, key, klen);
    xui[klen] = '\0';
    const char *ids[USERS_IDS_MAX];
    void *raw;
    struct users_entry u = {xui, username, realm, ids, 0};
    if (users_read_ids(lc->t, xui, &raw, ids, &u.n_ids) != USERS_OK) {
        lc->corrupt = true;
        return 1;
    }
    int rc = lc->fn(lc->cls, &u);
    free(raw);
    return rc;
}

enum users_rc users_list(struct store *s, int (*fn)(void *cls, const struct users_entry *u),
                         void *cls)
{
    struct store_txn *t;
    if (store_txn_begin(s, false, &t) != STORE_OK)
        return USERS_ERROR;
    struct list_ctx lc = {fn, cls, t, false};
    enum store_rc rc = store_kv_scan(t, "users", NULL, 0, users_list_one, &lc);
    store_txn_abort(t);
    return rc == STORE_OK && !lc.corrupt ? USERS_OK : USERS_ERROR;
}

void users_cred_release(struct users_cred *c)
{
    free(c->xui);
    for (size_t i = 0; i < c->n_ids; i++)
        free(c->ids[i]);
    free(c->ids);
    memset(c, 0, sizeof *c);
}

enum users_rc users_lookup(struct store *s, const char *realm, const char *username,
                           struct users_cred *out)
{
    memset(out, 0, sizeof *out);
    if (!users_name_ok(realm) || !users_name_ok(username))
        return USERS_NOT_FOUND;
    char key[CREDS_KEY_MAX];
    size_t klen = users_creds_key(realm, username, key);
    struct store_txn *t;
    if (store_txn_begin(s, false, &t) != STORE_OK)
        return USERS_ERROR;
    void *v = NULL, *raw = NULL;
    size_t vlen;
    const char *ids[USERS_IDS_MAX];
    size_t n_ids = 0;
    enum users_rc rc = users_from_store(store_kv_get(t, "creds", key, klen, &v, &vlen));
    /* xui \0 md5(32) \0 sha256(64) */
    const char *xui = v;
    size_t xl = rc == USERS_OK ? strnlen(xui, vlen) : 0;
    if (rc == USERS_OK && (xl == 0 || xl > USERS_XUI_MAX || vlen != xl + 1 + 33 + 64))
        rc = USERS_ERROR;
    if (rc == USERS_OK)
        rc = users_read_ids(t, xui, &raw, ids, &n_ids);
    store_txn_abort(t);
    if (rc != USERS_OK) {
        free(v);
        return rc;
    }
    const char *md5 = xui + xl + 1;
    const char *sha = md5 + 33;
    if (strlen(md5) != 32 || strlen(sha) != 64 || !(out->xui = strdup(xui)) ||
        (n_ids && !(out->ids = calloc(n_ids, sizeof *out->ids))))
        rc = USERS_ERROR;
    for (size_t i = 0; rc == USERS_OK && i < n_ids; i++) {
        if (!(out->ids[i] = strdup(ids[i])))
            rc = USERS_ERROR;
        else
            out->n_ids++;
    }
    if (rc == USERS_OK) {
        memcpy(out->ha1_md5, md5, 33);
        memcpy(out->ha1_sha256, sha, 65);
    }
    free(raw);
    free(v);
    if (rc != USERS_OK)
        users_cred_release(out);
    return rc;
}

int users_digest_cred(struct store *s, const char *realm, const char *username, enum digest_alg alg,
                      struct digest_cred *out, struct users_cred *uc)
{
    switch (users_lookup(s, realm, username, uc)) {
    case USERS_OK:
        break;
    case USERS_NOT_FOUND:
        return 1;
    case USERS_EXISTS:
    case USERS_CRED_TAKEN:
    case USERS_BAD_XUI:
    case USERS_BAD_NAME:
    case USERS_BAD_ID:
    case USERS_ERROR:
        return -1;
    }
    bool md5 = alg == DIGEST_MD5 || alg == DIGEST_MD5_SESS;
    memcpy(out->ha1, md5 ? uc->ha1_md5 : uc->ha1_sha256, DIGEST_HEX_MAX);
    return 0;
}

int users_digest_lookup(void *cls, const char *realm, const char *username, enum digest_alg alg,
                        struct digest_cred *out)
{
    struct users_cred c;
    int rc = users_digest_cred(cls, realm, username, alg, out, &c);
    if (rc != 0)
        return rc;
    out->identity = c.xui;
    c.xui = NULL;
    users_cred_release(&c);
    return 0;
}
