#include "route.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ROUTES_MAX 256

struct route {
    char *auid;
    char *url;
};

struct route_table {
    char *root; /* without trailing slash; "" for "/" */
    size_t root_len;
    struct route *routes;
    size_t n;
};

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen, const char *fmt,
                                                      ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* DESIGN §1: the default AUID -> XDMS assignment. */
static const struct {
    const char *auid;
    int upstream; /* 0 shared-list, 1 presence, 2 rls */
} default_routes[] = {
    {"resource-lists", 0},
    {"pres-rules", 1},
    {"org.openmobilealliance.pres-rules", 1},
    {"pidf-manipulation", 1},
    {"org.openmobilealliance.pres-content", 1},
    {"rls-services", 2},
};

struct route_table *route_table_new(const char *root_path, const char *shared_list_url,
                                    const char *presence_url, const char *rls_url, char *err,
                                    size_t errlen)
{
    if (!root_path)
        root_path = ROUTE_DEFAULT_ROOT;
    size_t len = strlen(root_path);
    if (root_path[0] != '/' || len > 256 || strpbrk(root_path, "?#") != NULL) {
        fail(err, errlen, "bad xcap_root_path '%s' (must be an absolute path)", root_path);
        return NULL;
    }
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)root_path[i] <= 0x20 || root_path[i] == 0x7f) {
            fail(err, errlen, "bad xcap_root_path '%s' (must be an absolute path)", root_path);
            return NULL;
        }
    }
    while (len > 0 && root_path[len - 1] == '/')
        len--;
    struct route_table *t = calloc(1, sizeof *t);
    if (!t || !(t->root = strndup(root_path, len))) {
        free(t);
        fail(err, errlen, "out of memory");
        return NULL;
    }
    t->root_len = len;
    const char *urls[3] = {
        shared_list_url ? shared_list_url : ROUTE_DEFAULT_SHARED_LIST,
        presence_url ? presence_url : ROUTE_DEFAULT_PRESENCE,
        rls_url ? rls_url : ROUTE_DEFAULT_RLS,
    };
    for (size_t i = 0; i < sizeof default_routes / sizeof default_routes[0]; i++) {
        if (route_table_set(t, default_routes[i].auid, urls[default_routes[i].upstream], err,
                            errlen) < 0) {
            route_table_free(t);
            return NULL;
        }
    }
    return t;
}

void route_table_free(struct route_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++) {
        free(t->routes[i].auid);
        free(t->routes[i].url);
    }
    free(t->routes);
    free(t->root);
    free(t);
}

const char *route_table_root(const struct route_table *t)
{
    return t->root;
}

/* "unix:PATH": an XDMS's UNIX-domain socket (absolute, or relative to the working directory).
 * The path must fit struct sockaddr_un and name a file, not a directory. */
static char *normalize_unix_url(const char *url)
{
    const char *path = url + ROUTE_UNIX_PREFIX_LEN;
    size_t len = strlen(path);
    if (len == 0 || len > ROUTE_UNIX_PATH_MAX || path[len - 1] == '/')
        return NULL;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)path[i];
        if (c < 0x20 || c == 0x7f)
            return NULL;
    }
    return strdup(url);
}

/* scheme://authority, nothing after it but optional slashes; or unix:PATH. */
static char *normalize_url(const char *url)
{
    if (strncmp(url, ROUTE_UNIX_PREFIX, ROUTE_UNIX_PREFIX_LEN) == 0)
        return normalize_unix_url(url);
    size_t skip;
    if (strncasecmp(url, "http://", 7) == 0)
        skip = 7;
    else if (strncasecmp(url, "https://", 8) == 0)
        skip = 8;
    else
        return NULL;
    size_t len = strlen(url);
    if (len > ROUTE_URL_MAX)
        return NULL;
    while (len > skip && url[len - 1] == '/')
        len--;
    if (len == skip)
        return NULL;
    for (size_t i = skip; i < len; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c <= 0x20 || c == 0x7f || c == '/' || c == '?' || c == '#' || c == '@')
            return NULL;
    }
    return strndup(url, len);
}

static bool auid_ok(const char *auid)
{
    size_t len = strlen(auid);
    if (len == 0 || len > ROUTE_AUID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)auid[i];
        if (c <= 0x20 || c == 0x7f || c == '/' || c == '?' || c == '#')
            return false;
    }
    return strcmp(auid, ROUTE_CAPS_AUID) != 0 && strcmp(auid, ROUTE_DIRECTORY_AUID) != 0;
}

int route_table_set(struct route_table *t, const char *auid, const char *url, char *err,
                    size_t errlen)
{
    if (!auid_ok(auid))
        return fail(err, errlen, "bad or reserved AUID '%s'", auid);
    char *u = normalize_url(url);
    if (!u)
        return fail(err, errlen,
                    "bad upstream URL '%s' (want unix:/path/to/xdms.sock or http://host:port)",
                    url);
    for (size_t i = 0; i < t->n; i++) {
        if (strcmp(t->routes[i].auid, auid) == 0) {
            free(t->routes[i].url);
            t->routes[i].url = u;
            return 0;
        }
    }
    if (t->n >= ROUTES_MAX) {
        free(u);
        return fail(err, errlen, "too many routes (at most %d)", ROUTES_MAX);
    }
    struct route *r = realloc(t->routes, (t->n + 1) * sizeof *r);
    char *a = strdup(auid);
    if (!r || !a) {
        if (r)
            t->routes = r;
        free(a);
        free(u);
        return fail(err, errlen, "out of memory");
    }
    t->routes = r;
    t->routes[t->n].auid = a;
    t->routes[t->n].url = u;
    t->n++;
    return 0;
}

int route_table_set_spec(struct route_table *t, const char *spec, char *err, size_t errlen)
{
    const char *p = spec;
    while (isspace((unsigned char)*p))
        p++;
    size_t alen = 0;
    while (p[alen] && !isspace((unsigned char)p[alen]))
        alen++;
    const char *u = p + alen;
    while (isspace((unsigned char)*u))
        u++;
    size_t ulen = 0;
    while (u[ulen] && !isspace((unsigned char)u[ulen]))
        ulen++;
    const char *end = u + ulen;
    while (isspace((unsigned char)*end))
        end++;
    if (alen == 0 || ulen == 0 || *end || alen > ROUTE_AUID_MAX || ulen > ROUTE_URL_MAX)
        return fail(err, errlen, "bad route '%s' (want: route = AUID URL)", spec);
    char auid[ROUTE_AUID_MAX + 1], url[ROUTE_URL_MAX + 1];
    memcpy(auid, p, alen);
    auid[alen] = '\0';
    memcpy(url, u, ulen);
    url[ulen] = '\0';
    return route_table_set(t, auid, url, err, errlen);
}

size_t route_table_upstreams(const struct route_table *t, const char **out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < t->n; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(t->routes[j].url, t->routes[i].url) == 0;
        if (seen)
            continue;
        if (n < max)
            out[n] = t->routes[i].url;
        n++;
    }
    return n;
}

size_t route_table_routes(const struct route_table *t, const char **auids, const char **urls,
                          size_t max)
{
    for (size_t i = 0; i < t->n && i < max; i++) {
        auids[i] = t->routes[i].auid;
        urls[i] = t->routes[i].url;
    }
    return t->n;
}

static size_t segment_len(const char *s)
{
    return strcspn(s, "/");
}

void route_match(const struct route_table *t, const char *path, struct route_match *m)
{
    memset(m, 0, sizeof *m);
    m->kind = ROUTE_NOT_FOUND;
    /* RFC 4825 §6: XCAP URI = root "/" auid "/" tree "/" ... */
    if (strncmp(path, t->root, t->root_len) != 0 ||
        (path[t->root_len] != '/' && path[t->root_len] != '\0'))
        return;
    m->in_root = true;
    if (path[t->root_len] != '/')
        return;
    const char *p = path + t->root_len + 1;
    m->auid = p;
    m->auid_len = segment_len(p);
    if (m->auid_len == 0)
        return;
    p += m->auid_len;
    if (*p == '/') {
        p++;
        m->tree = p;
        m->tree_len = segment_len(p);
        p += m->tree_len;
        if (m->tree_len == 5 && memcmp(m->tree, "users", 5) == 0 && *p == '/') {
            p++;
            m->xui = p;
            m->xui_len = segment_len(p);
            p += m->xui_len;
        }
        m->rest = p;
        m->rest_len = strlen(p);
    }

    if (m->auid_len == strlen(ROUTE_CAPS_AUID) &&
        memcmp(m->auid, ROUTE_CAPS_AUID, m->auid_len) == 0) {
        m->kind = ROUTE_CAPS;
        return;
    }
    if (m->auid_len == strlen(ROUTE_DIRECTORY_AUID) &&
        memcmp(m->auid, ROUTE_DIRECTORY_AUID, m->auid_len) == 0) {
        m->kind = ROUTE_DIRECTORY;
        return;
    }
    for (size_t i = 0; i < t->n; i++) {
        const char *a = t->routes[i].auid;
        if (strlen(a) == m->auid_len && memcmp(a, m->auid, m->auid_len) == 0) {
            m->kind = ROUTE_UPSTREAM;
            m->upstream = t->routes[i].url;
            return;
        }
    }
}

static int unhex(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (unsigned char)tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int route_decode(const char *s, size_t len, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            if (len - i < 3)
                return -1;
            int h = unhex((unsigned char)s[i + 1]);
            int l = h < 0 ? -1 : unhex((unsigned char)s[i + 2]);
            if (l < 0 || (h == 0 && l == 0))
                return -1;
            c = (unsigned char)(h * 16 + l);
            i += 2;
        }
        if (c == '\0' || o + 1 >= outlen)
            return -1;
        out[o++] = (char)c;
    }
    if (outlen == 0)
        return -1;
    out[o] = '\0';
    return 0;
}
