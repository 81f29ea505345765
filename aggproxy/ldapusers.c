/* Users from an enterprise LDAP directory, with their cache (ldapusers.h). */
#include "ldapusers.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "log.h"

#define LDAPUSERS_BUCKETS 1024
#define LDAPUSERS_FILTER_MAX 2048
#define LDAPUSERS_ATTRS_MAX 8
#define LDAPUSERS_PW_HASH 32

struct ldapusers_entry {
    char *username;
    bool found;
    uint64_t expires;
    char *dn;
    struct users_cred cred;
    /* Basic: the last password a bind accepted / refused, salted SHA-256 */
    unsigned char ok_pw[LDAPUSERS_PW_HASH];
    uint64_t ok_until;
    unsigned char bad_pw[LDAPUSERS_PW_HASH];
    uint64_t bad_until;
    struct ldapusers_entry *chain;         /* same bucket */
    struct ldapusers_entry *older, *newer; /* insertion order, for eviction */
};

struct ldapusers {
    struct ldapc *ldap;
    char *base_dn, *filter, *xui_attr, *ha1_attr, *realm;
    char *id_attrs[LDAPUSERS_ATTRS_MAX];
    size_t n_id_attrs;
    unsigned ttl, negative_ttl, retry_after;
    char retry_text[16];
    size_t cache_max;
    unsigned timeout_ms;
    unsigned char salt[16];
    pthread_mutex_t lock; /* the cache and down_until */
    struct ldapusers_entry *buckets[LDAPUSERS_BUCKETS];
    struct ldapusers_entry *oldest, *newest;
    size_t n;
    uint64_t down_until;
    pthread_mutex_t ask; /* one request to the directory at a time */
};

static void ldapusers_entry_free(struct ldapusers_entry *e)
{
    if (!e)
        return;
    free(e->username);
    free(e->dn);
    users_cred_release(&e->cred);
    OPENSSL_cleanse(e, sizeof *e);
    free(e);
}

void ldapusers_free(struct ldapusers *u)
{
    if (!u)
        return;
    for (struct ldapusers_entry *e = u->oldest, *next; e; e = next) {
        next = e->newer;
        ldapusers_entry_free(e);
    }
    ldapc_free(u->ldap);
    free(u->base_dn);
    free(u->filter);
    free(u->xui_attr);
    free(u->ha1_attr);
    free(u->realm);
    for (size_t i = 0; i < u->n_id_attrs; i++)
        free(u->id_attrs[i]);
    pthread_mutex_destroy(&u->lock);
    pthread_mutex_destroy(&u->ask);
    free(u);
}

static char *ldapusers_dup(const char *s, const char *def)
{
    return strdup(s && s[0] ? s : def);
}

struct ldapusers *ldapusers_new(const struct ldapusers_options *o)
{
    if (!o->base_dn || !o->base_dn[0] || !o->realm || !o->realm[0]) {
        log_error("LDAP users need ldap_base_dn and a realm");
        return NULL;
    }
    struct ldapusers *u = calloc(1, sizeof *u);
    if (!u)
        return NULL;
    pthread_mutex_init(&u->lock, NULL);
    pthread_mutex_init(&u->ask, NULL);
    u->base_dn = strdup(o->base_dn);
    u->filter = ldapusers_dup(o->user_filter, "(uid=%u)");
    u->xui_attr = ldapusers_dup(o->xui_attribute, "");
    u->ha1_attr = ldapusers_dup(o->ha1_attribute, "");
    u->realm = strdup(o->realm);
    u->ttl = o->cache_ttl_s;
    u->negative_ttl = o->negative_ttl_s;
    u->retry_after = o->retry_after_s ? o->retry_after_s : 5;
    snprintf(u->retry_text, sizeof u->retry_text, "%u", u->retry_after);
    u->cache_max = o->cache_max ? o->cache_max : 10000;
    u->timeout_ms = o->ldap.timeout_ms ? o->ldap.timeout_ms : 2000;
    u->ldap = ldapc_new(&o->ldap);
    if (!u->base_dn || !u->filter || !u->xui_attr || !u->ha1_attr || !u->realm || !u->ldap ||
        RAND_bytes(u->salt, sizeof u->salt) != 1) {
        ldapusers_free(u);
        return NULL;
    }
    if (!ldapc_filter_template_ok(u->filter)) {
        log_error("ldap_user_filter \"%s\" is not a filter in parentheses with %%u, %%d, %%%% only",
                  u->filter);
        ldapusers_free(u);
        return NULL;
    }
    const char *p = o->identity_attributes ? o->identity_attributes : "";
    while (*p) {
        p += strspn(p, " ,\t");
        size_t n = strcspn(p, " ,\t");
        if (n == 0)
            break;
        if (u->n_id_attrs == LDAPUSERS_ATTRS_MAX || !(u->id_attrs[u->n_id_attrs] = strndup(p, n))) {
            log_error("ldap_identity_attributes: at most %d attributes", LDAPUSERS_ATTRS_MAX);
            ldapusers_free(u);
            return NULL;
        }
        u->n_id_attrs++;
        p += n;
    }
    return u;
}

const char *ldapusers_realm(const struct ldapusers *u)
{
    return u->realm;
}

const char *ldapusers_retry_after(const struct ldapusers *u)
{
    return u->retry_text;
}

static size_t ldapusers_bucket(const char *username)
{
    /* FNV-1a; names are compared exactly, so the hash only spreads them */
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)username; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return (size_t)(h % LDAPUSERS_BUCKETS);
}

static struct ldapusers_entry *ldapusers_find(struct ldapusers *u, const char *username)
{
    for (struct ldapusers_entry *e = u->buckets[ldapusers_bucket(username)]; e; e = e->chain)
        if (strcmp(e->username, username) == 0)
            return e;
    return NULL;
}

static void ldapusers_unlink(struct ldapusers *u, struct ldapusers_entry *e)
{
    struct ldapusers_entry **pp = &u->buckets[ldapusers_bucket(e->username)];
    while (*pp && *pp != e)
        pp = &(*pp)->chain;
    if (*pp)
        *pp = e->chain;
    if (e->older)
        e->older->newer = e->newer;
    else
        u->oldest = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        u->newest = e->older;
    u->n--;
}

/* Puts e (owned) in the cache in place of an entry of the same name; drops the oldest entry
 * when the cache is full. */
static void ldapusers_insert(struct ldapusers *u, struct ldapusers_entry *e)
{
    struct ldapusers_entry *old = ldapusers_find(u, e->username);
    if (old) {
        ldapusers_unlink(u, old);
        ldapusers_entry_free(old);
    }
    while (u->n >= u->cache_max && u->oldest) {
        struct ldapusers_entry *victim = u->oldest;
        ldapusers_unlink(u, victim);
        ldapusers_entry_free(victim);
    }
    size_t b = ldapusers_bucket(e->username);
    e->chain = u->buckets[b];
    u->buckets[b] = e;
    e->older = u->newest;
    e->newer = NULL;
    if (u->newest)
        u->newest->newer = e;
    else
        u->oldest = e;
    u->newest = e;
    u->n++;
}

static int ldapusers_cred_copy(const struct users_cred *from, struct users_cred *to)
{
    memset(to, 0, sizeof *to);
    memcpy(to->ha1_md5, from->ha1_md5, sizeof to->ha1_md5);
    memcpy(to->ha1_sha256, from->ha1_sha256, sizeof to->ha1_sha256);
    if (!(to->xui = strdup(from->xui)))
        return -1;
    if (from->n_ids && !(to->ids = calloc(from->n_ids, sizeof *to->ids))) {
        users_cred_release(to);
        return -1;
    }
    for (size_t i = 0; i < from->n_ids; i++) {
        if (!(to->ids[i] = strdup(from->ids[i]))) {
            users_cred_release(to);
            return -1;
        }
        to->n_ids++;
    }
    return 0;
}

/* What one search found. */
struct ldapusers_found {
    const struct ldapusers *u;
    const char *username;
    size_t n;
    struct ldapusers_entry *e;
    bool nomem;
};

static bool ldapusers_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strchr("0123456789abcdefABCDEF", s[i]))
            return false;
    return s[n] == '\0';
}

static int ldapusers_add_id(struct users_cred *c, const char *uri)
{
    if (strcmp(uri, c->xui) == 0 || c->n_ids == USERS_IDS_MAX)
        return 0;
    for (size_t i = 0; i < c->n_ids; i++)
        if (strcmp(c->ids[i], uri) == 0)
            return 0;
    char **ids = realloc(c->ids, (c->n_ids + 1) * sizeof *ids);
    if (!ids)
        return -1;
    c->ids = ids;
    if (!(ids[c->n_ids] = strdup(uri)))
        return -1;
    c->n_ids++;
    return 0;
}

/* The XUI: the first URI value of xui_attribute, else sip:USER@REALM. */
static int ldapusers_entry_xui(const struct ldapusers *u, const struct ldapc_entry *le,
                               const char *username, struct users_cred *c)
{
    char uri[USERS_XUI_MAX + 1], user[USERS_NAME_MAX + 1], dom[USERS_NAME_MAX + 1];
    if (u->xui_attr[0]) {
        char *v[16];
        size_t n = ldapc_entry_values(le, u->xui_attr, v, 16);
        for (size_t i = 0; i < n && !c->xui; i++)
            if (ldapc_value_uri(v[i], uri, sizeof uri) == 0 &&
                users_xui_split(uri, user, sizeof user, dom, sizeof dom) == USERS_OK &&
                !(c->xui = strdup(uri))) {
                ldapc_values_free(v, n);
                return -1;
            }
        ldapc_values_free(v, n);
        if (c->xui)
            return 0;
        return 1; /* an entry without a usable XUI is no user of ours */
    }
    if (snprintf(uri, sizeof uri, "sip:%s@%s", username, u->realm) >= (int)sizeof uri ||
        users_xui_split(uri, user, sizeof user, dom, sizeof dom) != USERS_OK)
        return 1;
    return (c->xui = strdup(uri)) ? 0 : -1;
}

static int ldapusers_on_entry(void *cls, const struct ldapc_entry *le)
{
    struct ldapusers_found *f = cls;
    const struct ldapusers *u = f->u;
    if (++f->n > 1)
        return 1; /* ambiguous: the filter must single out one entry */
    struct ldapusers_entry *e = calloc(1, sizeof *e);
    if (!e || !(e->dn = strdup(ldapc_entry_dn(le)))) {
        free(e);
        f->nomem = true;
        return 1;
    }
    int rc = ldapusers_entry_xui(u, le, f->username, &e->cred);
    if (rc != 0) {
        if (rc < 0)
            f->nomem = true;
        else
            log_info("LDAP entry %s has no usable %s: not a user", e->dn, u->xui_attr);
        ldapusers_entry_free(e);
        return rc < 0 ? 1 : 0;
    }
    char *v[16];
    for (size_t a = 0; a < u->n_id_attrs && !f->nomem; a++) {
        size_t n = ldapc_entry_values(le, u->id_attrs[a], v, 16);
        char uri[USERS_XUI_MAX + 1], user[USERS_NAME_MAX + 1], dom[USERS_NAME_MAX + 1];
        for (size_t i = 0; i < n; i++)
            if (ldapc_value_uri(v[i], uri, sizeof uri) == 0 &&
                users_xui_split(uri, user, sizeof user, dom, sizeof dom) == USERS_OK &&
                ldapusers_add_id(&e->cred, uri) < 0)
                f->nomem = true;
        ldapc_values_free(v, n);
    }
    if (u->ha1_attr[0]) {
        size_t n = ldapc_entry_values(le, u->ha1_attr, v, 16);
        for (size_t i = 0; i < n; i++) {
            char *dst = ldapusers_hex(v[i], 32)   ? e->cred.ha1_md5
                        : ldapusers_hex(v[i], 64) ? e->cred.ha1_sha256
                                                  : NULL;
            if (!dst)
                continue;
            for (size_t k = 0; v[i][k]; k++)
                dst[k] = (char)(v[i][k] | 0x20); /* hex digits in lower case */
            dst[strlen(v[i])] = '\0';
        }
        ldapc_values_free(v, n);
    }
    if (f->nomem) {
        ldapusers_entry_free(e);
        return 1;
    }
    f->e = e;
    return 0;
}

/* Asks the directory for username; on success *out is a new entry (found or not). */
static enum ldapusers_rc ldapusers_ask(struct ldapusers *u, const char *username, uint64_t now,
                                       struct ldapusers_entry **out)
{
    char filter[LDAPUSERS_FILTER_MAX];
    if (ldapc_filter_fill(u->filter, username, u->realm, filter, sizeof filter) < 0)
        return LDAPUSERS_UNKNOWN; /* a name too long for any filter names nobody */
    const char *attrs[LDAPUSERS_ATTRS_MAX + 3];
    size_t na = 0;
    if (u->xui_attr[0])
        attrs[na++] = u->xui_attr;
    if (u->ha1_attr[0])
        attrs[na++] = u->ha1_attr;
    for (size_t i = 0; i < u->n_id_attrs; i++)
        attrs[na++] = u->id_attrs[i];
    if (na == 0)
        attrs[na++] = "1.1"; /* RFC 4511 §4.5.1.8: no attributes */
    attrs[na] = NULL;
    struct ldapusers_found f = {.u = u, .username = username};
    ldapc_count(LDAPC_CACHE_MISSES);
    enum ldapc_rc rc = ldapc_search(u->ldap, u->base_dn, filter, attrs, 2, ldapusers_on_entry, &f);
    if (f.nomem) {
        ldapusers_entry_free(f.e);
        return LDAPUSERS_ERROR;
    }
    if (rc == LDAPC_TOO_MANY || f.n > 1) {
        log_warn("LDAP filter %s finds more than one entry: user %s refused", filter, username);
        ldapusers_entry_free(f.e);
        f.e = NULL;
        rc = LDAPC_OK;
    }
    if (rc == LDAPC_UNAVAILABLE) {
        ldapusers_entry_free(f.e);
        return LDAPUSERS_UNAVAILABLE;
    }
    if (rc != LDAPC_OK && rc != LDAPC_NOT_FOUND) {
        ldapusers_entry_free(f.e);
        return LDAPUSERS_ERROR;
    }
    struct ldapusers_entry *e = f.e;
    if (!e && !(e = calloc(1, sizeof *e)))
        return LDAPUSERS_ERROR;
    e->found = f.e != NULL;
    e->expires = now + (e->found ? u->ttl : u->negative_ttl);
    if (!(e->username = strdup(username))) {
        ldapusers_entry_free(e);
        return LDAPUSERS_ERROR;
    }
    *out = e;
    return LDAPUSERS_OK;
}

/* Takes the directory for one question: waits for another question at most the LDAP timeout.
 * Returns false (the caller answers UNAVAILABLE) when the directory is known down or busy. */
static bool ldapusers_take(struct ldapusers *u, uint64_t now)
{
    pthread_mutex_lock(&u->lock);
    bool down = now < u->down_until;
    pthread_mutex_unlock(&u->lock);
    if (down) {
        ldapc_count(LDAPC_REFUSED);
        return false;
    }
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += u->timeout_ms / 1000;
    until.tv_nsec += (long)(u->timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    if (pthread_mutex_timedlock(&u->ask, &until) != 0) {
        ldapc_count(LDAPC_REFUSED);
        return false;
    }
    /* the question before ours may just have found the directory down */
    pthread_mutex_lock(&u->lock);
    down = now < u->down_until;
    pthread_mutex_unlock(&u->lock);
    if (down) {
        pthread_mutex_unlock(&u->ask);
        ldapc_count(LDAPC_REFUSED);
        return false;
    }
    return true;
}

static void ldapusers_mark_down(struct ldapusers *u, uint64_t now)
{
    pthread_mutex_lock(&u->lock);
    u->down_until = now + u->retry_after;
    pthread_mutex_unlock(&u->lock);
}

/* The cached entry of username, asking the directory when it is missing or expired. Called with
 * u->lock held; returns with it held. */
static enum ldapusers_rc ldapusers_get(struct ldapusers *u, const char *username, uint64_t now,
                                       struct ldapusers_entry **out)
{
    struct ldapusers_entry *e = ldapusers_find(u, username);
    if (e && now < e->expires) {
        ldapc_count(LDAPC_CACHE_HITS);
        *out = e;
        return LDAPUSERS_OK;
    }
    pthread_mutex_unlock(&u->lock);
    enum ldapusers_rc rc = LDAPUSERS_UNAVAILABLE;
    struct ldapusers_entry *fresh = NULL;
    if (ldapusers_take(u, now)) {
        rc = ldapusers_ask(u, username, now, &fresh);
        pthread_mutex_unlock(&u->ask);
        if (rc == LDAPUSERS_UNAVAILABLE)
            ldapusers_mark_down(u, now);
    }
    pthread_mutex_lock(&u->lock);
    if (rc != LDAPUSERS_OK)
        return rc;
    ldapusers_insert(u, fresh);
    *out = fresh;
    return LDAPUSERS_OK;
}

enum ldapusers_rc ldapusers_lookup(struct ldapusers *u, const char *realm, const char *username,
                                   uint64_t now, struct users_cred *out)
{
    memset(out, 0, sizeof *out);
    if (!realm || strcasecmp(realm, u->realm) != 0 || !username[0] ||
        strlen(username) > USERS_NAME_MAX)
        return LDAPUSERS_UNKNOWN;
    pthread_mutex_lock(&u->lock);
    struct ldapusers_entry *e;
    enum ldapusers_rc rc = ldapusers_get(u, username, now, &e);
    if (rc == LDAPUSERS_OK)
        rc = !e->found                                ? LDAPUSERS_UNKNOWN
             : ldapusers_cred_copy(&e->cred, out) < 0 ? LDAPUSERS_ERROR
                                                      : LDAPUSERS_OK;
    pthread_mutex_unlock(&u->lock);
    return rc;
}

static int ldapusers_pw_hash(const struct ldapusers *u, const char *password,
                             unsigned char out[LDAPUSERS_PW_HASH])
{
    unsigned len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, u->salt, sizeof u->salt) == 1 &&
             EVP_DigestUpdate(ctx, password, strlen(password)) == 1 &&
             EVP_DigestFinal_ex(ctx, out, &len) == 1 && len == LDAPUSERS_PW_HASH;
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : -1;
}

enum ldapusers_rc ldapusers_basic(struct ldapusers *u, const char *username, const char *password,
                                  uint64_t now, struct users_cred *out)
{
    memset(out, 0, sizeof *out);
    unsigned char h[LDAPUSERS_PW_HASH];
    if (!username[0] || strlen(username) > USERS_NAME_MAX || !password[0])
        return LDAPUSERS_UNKNOWN;
    if (ldapusers_pw_hash(u, password, h) < 0)
        return LDAPUSERS_ERROR;
    pthread_mutex_lock(&u->lock);
    struct ldapusers_entry *e;
    enum ldapusers_rc rc = ldapusers_get(u, username, now, &e);
    if (rc != LDAPUSERS_OK || !e->found) {
        pthread_mutex_unlock(&u->lock);
        return rc == LDAPUSERS_OK ? LDAPUSERS_UNKNOWN : rc;
    }
    if (now < e->ok_until && CRYPTO_memcmp(e->ok_pw, h, sizeof h) == 0) {
        ldapc_count(LDAPC_CACHE_HITS);
        rc = ldapusers_cred_copy(&e->cred, out) < 0 ? LDAPUSERS_ERROR : LDAPUSERS_OK;
        pthread_mutex_unlock(&u->lock);
        return rc;
    }
    if (now < e->bad_until && CRYPTO_memcmp(e->bad_pw, h, sizeof h) == 0) {
        ldapc_count(LDAPC_CACHE_HITS);
        pthread_mutex_unlock(&u->lock);
        return LDAPUSERS_BAD_PASSWORD;
    }
    char *dn = strdup(e->dn);
    pthread_mutex_unlock(&u->lock);
    if (!dn)
        return LDAPUSERS_ERROR;
    enum ldapc_rc lr = LDAPC_UNAVAILABLE;
    if (ldapusers_take(u, now)) {
        lr = ldapc_check_password(u->ldap, dn, password);
        pthread_mutex_unlock(&u->ask);
    }
    free(dn);
    if (lr == LDAPC_UNAVAILABLE)
        ldapusers_mark_down(u, now);
    pthread_mutex_lock(&u->lock);
    /* the entry may have been replaced meanwhile: remember the verdict on the current one */
    e = ldapusers_find(u, username);
    switch (lr) {
    case LDAPC_OK:
        rc = LDAPUSERS_OK;
        if (e) {
            memcpy(e->ok_pw, h, sizeof h);
            e->ok_until = now + u->ttl;
            rc = ldapusers_cred_copy(&e->cred, out) < 0 ? LDAPUSERS_ERROR : LDAPUSERS_OK;
        } else {
            rc = LDAPUSERS_UNAVAILABLE; /* evicted meanwhile: let the client try again */
        }
        break;
    case LDAPC_BAD_PASSWORD:
    case LDAPC_NOT_FOUND:
        if (e) {
            memcpy(e->bad_pw, h, sizeof h);
            e->bad_until = now + u->negative_ttl;
        }
        rc = LDAPUSERS_BAD_PASSWORD;
        break;
    case LDAPC_UNAVAILABLE:
        rc = LDAPUSERS_UNAVAILABLE;
        break;
    case LDAPC_TOO_MANY:
    case LDAPC_ERROR:
        rc = LDAPUSERS_ERROR;
        break;
    }
    pthread_mutex_unlock(&u->lock);
    OPENSSL_cleanse(h, sizeof h);
    return rc;
}
