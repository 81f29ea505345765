#include "route.h"

#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ROUTES_MAX 256
/* Longest remembered reason an instance went down. */
#define ROUTE_WHY_MAX 256

struct route {
    char *auid;
    struct route_upstream *up; /* one of the table's lists */
};

/* What changes while the table is read: one per distinct instance URL. */
struct route_instance {
    char *url;
    atomic_bool down;
    atomic_uint_fast32_t outstanding;
    atomic_uint_fast64_t requests;
    atomic_uint_fast64_t down_order; /* when it last went down, in table-wide order */
    char why[ROUTE_WHY_MAX];         /* under the table's lock */
};

struct route_table {
    char *root; /* without trailing slash; "" for "/" */
    size_t root_len;
    struct route *routes;
    size_t n;
    struct route_upstream **lists; /* distinct lists, in first-use order; names owned */
    size_t n_lists;
    struct route_instance *inst; /* fixed array of ROUTE_TABLE_INSTANCES_MAX: never moves */
    size_t n_inst;
    atomic_uint_fast32_t rr;         /* round-robin start for route_pick */
    atomic_uint_fast64_t down_count; /* instances gone down so far: their down_order */
    pthread_mutex_t lock;            /* the why texts */
};

__attribute__((format(printf, 3, 4))) static int route_fail(char *err, size_t errlen,
                                                            const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* The default AUID -> XDMS assignment (OMA Presence SIMPLE XDM 2.0 §5: which XDMS owns which
 * application usage). */
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
        route_fail(err, errlen, "bad xcap_root_path '%s' (must be an absolute path)", root_path);
        return NULL;
    }
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)root_path[i] <= 0x20 || root_path[i] == 0x7f) {
            route_fail(err, errlen, "bad xcap_root_path '%s' (must be an absolute path)",
                       root_path);
            return NULL;
        }
    }
    while (len > 0 && root_path[len - 1] == '/')
        len--;
    struct route_table *t = calloc(1, sizeof *t);
    if (!t || !(t->inst = calloc(ROUTE_TABLE_INSTANCES_MAX, sizeof *t->inst)) ||
        !(t->root = strndup(root_path, len))) {
        if (t)
            free(t->inst);
        free(t);
        route_fail(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&t->lock, NULL);
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
    for (size_t i = 0; i < t->n; i++)
        free(t->routes[i].auid);
    free(t->routes);
    for (size_t i = 0; i < t->n_lists; i++) {
        free((char *)t->lists[i]->name);
        free(t->lists[i]);
    }
    free(t->lists);
    for (size_t i = 0; i < t->n_inst; i++)
        free(t->inst[i].url);
    free(t->inst);
    pthread_mutex_destroy(&t->lock);
    free(t->root);
    free(t);
}

const char *route_table_root(const struct route_table *t)
{
    return t->root;
}

/* "unix:PATH": an XDMS's UNIX-domain socket (absolute, or relative to the working directory).
 * The path must fit struct sockaddr_un and name a file, not a directory. */
static char *route_normalize_unix_url(const char *url)
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
static char *route_normalize_url(const char *url)
{
    if (strncmp(url, ROUTE_UNIX_PREFIX, ROUTE_UNIX_PREFIX_LEN) == 0)
        return route_normalize_unix_url(url);
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

static bool route_auid_ok(const char *auid)
{
    size_t len = strlen(auid);
    if (len == 0 || len > ROUTE_AUID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)auid[i];
        if (c <= 0x20 || c == 0x7f || c == '/' || c == '?' || c == '#')
            return false;
    }
    return strcmp(auid, XCAP_CAPS_AUID) != 0 && strcmp(auid, XDM_DIRECTORY_AUID) != 0;
}

/* One list split and normalised: the URLs (owned) and the name they make. */
struct route_list {
    char *url[ROUTE_INSTANCES_MAX];
    size_t n;
    char *name;
};

static void route_list_release(struct route_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->url[i]);
    free(l->name);
    memset(l, 0, sizeof *l);
}

/* Splits list at whitespace and normalises each URL. Returns 0, or -1 with the reason in err
 * (and nothing to release). */
static int route_list_parse(const char *list, struct route_list *l, char *err, size_t errlen)
{
    memset(l, 0, sizeof *l);
    if (strlen(list) > ROUTE_LIST_MAX)
        return route_fail(err, errlen, "upstream list too long (at most %d bytes)", ROUTE_LIST_MAX);
    size_t name_len = 0;
    for (const char *p = list;;) {
        while (isspace((unsigned char)*p))
            p++;
        if (!*p)
            break;
        size_t len = 0;
        while (p[len] && !isspace((unsigned char)p[len]))
            len++;
        char one[ROUTE_LIST_MAX + 1];
        memcpy(one, p, len);
        one[len] = '\0';
        p += len;
        if (l->n == ROUTE_INSTANCES_MAX) {
            route_list_release(l);
            return route_fail(err, errlen, "too many upstream URLs in one list (at most %d)",
                              ROUTE_INSTANCES_MAX);
        }
        char *u = route_normalize_url(one);
        if (!u) {
            route_list_release(l);
            return route_fail(
                err, errlen,
                "bad upstream URL '%s' (want unix:/path/to/xdms.sock or http://host:port)", one);
        }
        for (size_t i = 0; i < l->n; i++) {
            if (strcmp(l->url[i], u) == 0) {
                route_list_release(l);
                route_fail(err, errlen, "upstream URL '%s' is listed twice", u);
                free(u);
                return -1;
            }
        }
        l->url[l->n++] = u;
        name_len += strlen(u) + 1;
    }
    if (l->n == 0)
        return route_fail(err, errlen,
                          "empty upstream list (want unix:/path/to/xdms.sock or "
                          "http://host:port, several separated by spaces)");
    if (!(l->name = malloc(name_len))) {
        route_list_release(l);
        return route_fail(err, errlen, "out of memory");
    }
    char *o = l->name;
    for (size_t i = 0; i < l->n; i++) {
        size_t ul = strlen(l->url[i]);
        memcpy(o, l->url[i], ul);
        o += ul;
        *o++ = i + 1 < l->n ? ' ' : '\0';
    }
    return 0;
}

int route_list_check(const char *list, char *err, size_t errlen)
{
    struct route_list l;
    if (route_list_parse(list, &l, err, errlen) < 0)
        return -1;
    route_list_release(&l);
    return 0;
}

/* The instance id of url, added when new; -1 (err) when the table has no room. */
static long route_instance_id(struct route_table *t, const char *url, char *err, size_t errlen)
{
    for (size_t i = 0; i < t->n_inst; i++)
        if (strcmp(t->inst[i].url, url) == 0)
            return (long)i;
    if (t->n_inst == ROUTE_TABLE_INSTANCES_MAX)
        return route_fail(err, errlen, "too many distinct upstream URLs (at most %d)",
                          ROUTE_TABLE_INSTANCES_MAX);
    if (!(t->inst[t->n_inst].url = strdup(url)))
        return route_fail(err, errlen, "out of memory");
    return (long)t->n_inst++;
}

/* The table's list named l->name, made from l when new. */
static struct route_upstream *route_list_find(struct route_table *t, struct route_list *l,
                                              char *err, size_t errlen)
{
    for (size_t i = 0; i < t->n_lists; i++)
        if (strcmp(t->lists[i]->name, l->name) == 0)
            return t->lists[i];
    struct route_upstream *up = calloc(1, sizeof *up);
    struct route_upstream **v = realloc(t->lists, (t->n_lists + 1) * sizeof *v);
    if (v)
        t->lists = v;
    if (!up || !v) {
        free(up);
        route_fail(err, errlen, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < l->n; i++) {
        long id = route_instance_id(t, l->url[i], err, errlen);
        if (id < 0) {
            free(up);
            return NULL;
        }
        up->id[i] = (size_t)id;
        up->url[i] = t->inst[id].url;
    }
    up->n = l->n;
    up->name = l->name;
    l->name = NULL;
    t->lists[t->n_lists++] = up;
    return up;
}

int route_table_set(struct route_table *t, const char *auid, const char *list, char *err,
                    size_t errlen)
{
    if (!route_auid_ok(auid))
        return route_fail(err, errlen, "bad or reserved AUID '%s'", auid);
    struct route_list l;
    if (route_list_parse(list, &l, err, errlen) < 0)
        return -1;
    struct route_upstream *up = route_list_find(t, &l, err, errlen);
    route_list_release(&l);
    if (!up)
        return -1;
    for (size_t i = 0; i < t->n; i++) {
        if (strcmp(t->routes[i].auid, auid) == 0) {
            t->routes[i].up = up;
            return 0;
        }
    }
    if (t->n >= ROUTES_MAX)
        return route_fail(err, errlen, "too many routes (at most %d)", ROUTES_MAX);
    struct route *r = realloc(t->routes, (t->n + 1) * sizeof *r);
    char *a = strdup(auid);
    if (!r || !a) {
        if (r)
            t->routes = r;
        free(a);
        return route_fail(err, errlen, "out of memory");
    }
    t->routes = r;
    t->routes[t->n].auid = a;
    t->routes[t->n].up = up;
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
    if (alen == 0 || !*u || alen > ROUTE_AUID_MAX || strlen(u) > ROUTE_LIST_MAX)
        return route_fail(err, errlen, "bad route '%s' (want: route = AUID URL [URL...])", spec);
    char auid[ROUTE_AUID_MAX + 1];
    memcpy(auid, p, alen);
    auid[alen] = '\0';
    return route_table_set(t, auid, u, err, errlen);
}

/* The distinct lists the routes use, in first-use order (a list replaced by a later route =
 * line is no longer used). */
size_t route_table_upstream_lists(const struct route_table *t, const struct route_upstream **out,
                                  size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < t->n; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = t->routes[j].up == t->routes[i].up;
        if (seen)
            continue;
        if (n < max)
            out[n] = t->routes[i].up;
        n++;
    }
    return n;
}

size_t route_table_upstreams(const struct route_table *t, const char **out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < t->n; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = t->routes[j].up == t->routes[i].up;
        if (seen)
            continue;
        if (n < max)
            out[n] = t->routes[i].up->name;
        n++;
    }
    return n;
}

size_t route_table_routes(const struct route_table *t, const char **auids, const char **urls,
                          size_t max)
{
    for (size_t i = 0; i < t->n && i < max; i++) {
        auids[i] = t->routes[i].auid;
        urls[i] = t->routes[i].up->name;
    }
    return t->n;
}

static size_t route_segment_len(const char *s)
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
    m->auid_len = route_segment_len(p);
    if (m->auid_len == 0)
        return;
    p += m->auid_len;
    if (*p == '/') {
        p++;
        m->tree = p;
        m->tree_len = route_segment_len(p);
        p += m->tree_len;
        if (m->tree_len == 5 && memcmp(m->tree, "users", 5) == 0 && *p == '/') {
            p++;
            m->xui = p;
            m->xui_len = route_segment_len(p);
            p += m->xui_len;
        }
        m->rest = p;
        m->rest_len = strlen(p);
    }

    if (m->auid_len == strlen(XCAP_CAPS_AUID) &&
        memcmp(m->auid, XCAP_CAPS_AUID, m->auid_len) == 0) {
        m->kind = ROUTE_CAPS;
        return;
    }
    if (m->auid_len == strlen(XDM_DIRECTORY_AUID) &&
        memcmp(m->auid, XDM_DIRECTORY_AUID, m->auid_len) == 0) {
        m->kind = ROUTE_DIRECTORY;
        return;
    }
    for (size_t i = 0; i < t->n; i++) {
        const char *a = t->routes[i].auid;
        if (strlen(a) == m->auid_len && memcmp(a, m->auid, m->auid_len) == 0) {
            m->kind = ROUTE_UPSTREAM;
            m->upstream = t->routes[i].up->name;
            m->up = t->routes[i].up;
            return;
        }
    }
}

size_t route_table_instances(const struct route_table *t)
{
    return t->n_inst;
}

const char *route_instance_url(const struct route_table *t, size_t id)
{
    return t->inst[id].url;
}

bool route_instance_mark(const struct route_table *t, size_t id, bool up, const char *why)
{
    struct route_instance *in = &t->inst[id];
    if (!up) {
        pthread_mutex_lock((pthread_mutex_t *)&t->lock);
        snprintf(in->why, sizeof in->why, "%s", why ? why : "marked down");
        pthread_mutex_unlock((pthread_mutex_t *)&t->lock);
    }
    bool was_up = !atomic_exchange(&in->down, !up);
    if (was_up && !up) {
        struct route_table *mt = (struct route_table *)t; /* only the atomic counter changes */
        atomic_store(&in->down_order, atomic_fetch_add(&mt->down_count, 1) + 1);
    }
    return was_up;
}

bool route_instance_up(const struct route_table *t, size_t id, char *why, size_t whylen)
{
    struct route_instance *in = &t->inst[id];
    bool up = !atomic_load(&in->down);
    if (!up && why && whylen) {
        pthread_mutex_lock((pthread_mutex_t *)&t->lock);
        snprintf(why, whylen, "%s", in->why);
        pthread_mutex_unlock((pthread_mutex_t *)&t->lock);
    }
    return up;
}

void route_instance_begin(const struct route_table *t, size_t id)
{
    atomic_fetch_add_explicit(&t->inst[id].outstanding, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&t->inst[id].requests, 1, memory_order_relaxed);
}

void route_instance_end(const struct route_table *t, size_t id)
{
    atomic_fetch_sub_explicit(&t->inst[id].outstanding, 1, memory_order_relaxed);
}

uint64_t route_instance_requests(const struct route_table *t, size_t id)
{
    return atomic_load_explicit(&t->inst[id].requests, memory_order_relaxed);
}

/* Least requests in progress first: a slow or busy instance gets fewer new requests than round
 * robin would give it, while equal instances still alternate (the round-robin start breaks
 * ties), which spreads sequential requests evenly and keeps every instance's connections warm.
 * With none up, the one that went down last comes first: it is the likeliest to be back (e.g.
 * one health check that came too late on a loaded host), while one that has refused for long is
 * probably still gone. */
size_t route_pick(const struct route_table *t, const struct route_upstream *up, uint32_t tried)
{
    struct route_table *mt = (struct route_table *)t; /* only the atomic counter changes */
    size_t start =
        up->n > 1 ? atomic_fetch_add_explicit(&mt->rr, 1, memory_order_relaxed) % up->n : 0;
    size_t best = up->n, fallback = up->n;
    uint_fast32_t best_load = 0;
    uint_fast64_t fallback_order = 0;
    for (size_t k = 0; k < up->n; k++) {
        size_t i = (start + k) % up->n;
        if (tried & (1u << i))
            continue;
        const struct route_instance *in = &t->inst[up->id[i]];
        if (atomic_load(&in->down)) {
            uint_fast64_t order = atomic_load(&in->down_order);
            if (fallback == up->n || order > fallback_order) {
                fallback = i;
                fallback_order = order;
            }
            continue;
        }
        uint_fast32_t load = atomic_load_explicit(&in->outstanding, memory_order_relaxed);
        if (best == up->n || load < best_load) {
            best = i;
            best_load = load;
        }
    }
    return best != up->n ? best : fallback;
}
