/* The corporate directory document, built from LDAP (corpdir.h). */
#include "corpdir.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "notify.h"
#include "store.h"
#include "xcap_names.h"

#define CORPDIR_ATTRS_MAX 8
#define CORPDIR_AUID "resource-lists"
#define CORPDIR_NS "urn:ietf:params:xml:ns:resource-lists"

static int corpdir_cmp(const void *a, const void *b)
{
    const struct corpdir_entry *x = a, *y = b;
    int c = strcmp(x->uri, y->uri);
    if (c)
        return c;
    return strcmp(x->name ? x->name : "", y->name ? y->name : "");
}

void corpdir_docs_release(struct corpdir_doc *d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(d[i].name);
        buf_release(&d[i].body);
        d[i].name = NULL;
    }
}

static int corpdir_head(struct buf *b)
{
    return buf_puts(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                       "<resource-lists xmlns=\"" CORPDIR_NS "\">\n"
                       "  <list name=\"" CORPDIR_LIST "\">\n");
}

static int corpdir_tail(struct buf *b)
{
    return buf_puts(b, "  </list>\n</resource-lists>\n");
}

static int corpdir_entry_out(struct buf *b, const struct corpdir_entry *e)
{
    int rc = buf_puts(b, "    <entry uri=\"") | buf_xml_escape(b, e->uri, strlen(e->uri));
    if (e->name && e->name[0])
        rc |= buf_puts(b, "\"><display-name>") | buf_xml_escape(b, e->name, strlen(e->name)) |
              buf_puts(b, "</display-name></entry>\n");
    else
        rc |= buf_puts(b, "\"/>\n");
    return rc ? -1 : 0;
}

static int corpdir_doc_init(struct corpdir_doc *d, const char *name, size_t part)
{
    size_t len = strlen(name) + 24;
    if (!(d->name = malloc(len)))
        return -1;
    if (part)
        snprintf(d->name, len, "%s-%zu", name, part);
    else
        snprintf(d->name, len, "%s", name);
    buf_init(&d->body, SIZE_MAX);
    return corpdir_head(&d->body);
}

int corpdir_render(struct corpdir_entry *v, size_t n, const char *document, const char *xcap_root,
                   size_t max_entries, struct corpdir_doc *out)
{
    if (max_entries == 0)
        max_entries = 1;
    if (n > 1)
        qsort(v, n, sizeof *v, corpdir_cmp);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++)
        if (kept == 0 || strcmp(v[kept - 1].uri, v[i].uri) != 0)
            v[kept++] = v[i];
    n = kept;
    size_t parts = n > max_entries ? (n + max_entries - 1) / max_entries : 0;
    size_t ndocs = 1 + parts;
    if (corpdir_doc_init(&out[0], document, 0) < 0)
        goto fail;
    if (parts == 0) {
        for (size_t i = 0; i < n; i++)
            if (corpdir_entry_out(&out[0].body, &v[i]) < 0)
                goto fail;
    } else {
        size_t rl = strlen(xcap_root);
        while (rl && xcap_root[rl - 1] == '/')
            rl--;
        for (size_t k = 1; k <= parts; k++) {
            struct buf *b = &out[0].body;
            /* RFC 4826 §3.2: the anchor is the HTTP URI of the part's list */
            if (buf_puts(b, "    <external anchor=\"") < 0 ||
                buf_xml_escape(b, xcap_root, rl) < 0 ||
                buf_printf(b, "/" CORPDIR_AUID "/global/") < 0 ||
                buf_xml_escape(b, document, strlen(document)) < 0 ||
                buf_printf(
                    b, "-%zu/~~/resource-lists/list%%5b@name=%%22" CORPDIR_LIST "%%22%%5d\"/>\n",
                    k) < 0)
                goto fail;
            if (corpdir_doc_init(&out[k], document, k) < 0)
                goto fail;
            size_t from = (k - 1) * max_entries,
                   to = from + max_entries < n ? from + max_entries : n;
            for (size_t i = from; i < to; i++)
                if (corpdir_entry_out(&out[k].body, &v[i]) < 0)
                    goto fail;
            if (corpdir_tail(&out[k].body) < 0)
                goto fail;
        }
    }
    if (corpdir_tail(&out[0].body) < 0)
        goto fail;
    return (int)ndocs;
fail:
    corpdir_docs_release(out, ndocs);
    return -1;
}

/* ---- the refresh thread ---- */

struct corpdir {
    struct ldapc *ldap;
    struct store *store;
    struct notifier *notifier;
    char *base_dn, *filter, *name_attr, *document, *xcap_root;
    char *uri_attrs[CORPDIR_ATTRS_MAX];
    size_t n_uri_attrs;
    size_t max_entries, max_total;
    unsigned refresh_s;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool pending, stop;
    atomic_uint_fast64_t runs, failures, writes, entries, last_ok;
};

/* What one search collects. */
struct corpdir_collect {
    struct corpdir *d;
    struct corpdir_entry *v;
    size_t n, cap;
    size_t skipped;
    bool nomem;
};

/* Cuts s to at most max bytes without splitting a UTF-8 sequence. */
static void corpdir_cut(char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max)
        return;
    while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
        max--;
    s[max] = '\0';
}

static int corpdir_on_entry(void *cls, const struct ldapc_entry *e)
{
    struct corpdir_collect *c = cls;
    struct corpdir *d = c->d;
    pthread_mutex_lock(&d->lock);
    bool stop = d->stop;
    pthread_mutex_unlock(&d->lock);
    if (stop)
        return 1;
    char uri[CORPDIR_URI_MAX + 1] = "";
    bool found = false;
    for (size_t a = 0; a < d->n_uri_attrs && !found; a++) {
        char *v[16];
        size_t n = ldapc_entry_values(e, d->uri_attrs[a], v, 16);
        for (size_t i = 0; i < n && !found; i++)
            found = ldapc_value_uri(v[i], uri, sizeof uri) == 0;
        ldapc_values_free(v, n);
    }
    if (!found) {
        c->skipped++;
        return 0;
    }
    char *name = NULL;
    size_t nn = ldapc_entry_values(e, d->name_attr, &name, 1);
    if (nn)
        corpdir_cut(name, CORPDIR_NAME_MAX);
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 1024;
        struct corpdir_entry *nv = realloc(c->v, cap * sizeof *nv);
        if (!nv) {
            free(name);
            c->nomem = true;
            return 1;
        }
        c->v = nv;
        c->cap = cap;
    }
    char *u = strdup(uri);
    if (!u) {
        free(name);
        c->nomem = true;
        return 1;
    }
    c->v[c->n++] = (struct corpdir_entry){.uri = u, .name = nn ? name : NULL};
    return 0;
}

static void corpdir_collect_release(struct corpdir_collect *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free((char *)c->v[i].uri);
        free((char *)c->v[i].name);
    }
    free(c->v);
}

struct corpdir_stale {
    const char *document;
    size_t parts;
    char *names[64];
    size_t n;
    bool more;
};

/* A part NAME-K with K above the new count, to delete. */
static int corpdir_on_doc(void *cls, const struct store_doc_view *dv)
{
    struct corpdir_stale *s = cls;
    size_t dl = strlen(s->document);
    const char *p = dv->key.path;
    if (strncmp(p, s->document, dl) != 0 || p[dl] != '-' || !p[dl + 1])
        return 0;
    char *end;
    errno = 0;
    unsigned long long k = strtoull(p + dl + 1, &end, 10);
    if (*end || errno || p[dl + 1] == '0' || k <= s->parts)
        return 0;
    if (s->n == sizeof s->names / sizeof s->names[0]) {
        s->more = true; /* the rest goes at the next run */
        return 1;
    }
    if (!(s->names[s->n] = strdup(p)))
        return 1;
    s->n++;
    return 0;
}

static enum store_rc corpdir_change(struct store_txn *t, const struct doc_key *k,
                                    enum store_change_kind kind, const char *prev, const char *etag)
{
    struct store_change ch = {.kind = kind,
                              .key = *k,
                              .prev_etag = prev,
                              .new_etag = etag,
                              .detail = "",
                              .detail_len = 0};
    return store_change_append(t, &ch);
}

/* Writes the documents that changed and deletes stale parts, in one transaction. Returns the
 * number of documents written or deleted, or -1. */
static int corpdir_store(struct corpdir *d, struct corpdir_doc *docs, size_t ndocs)
{
    struct store_txn *t;
    enum store_rc rc = store_txn_begin(d->store, true, &t);
    if (rc != STORE_OK)
        return -1;
    int changed = 0;
    for (size_t i = 0; i < ndocs && rc == STORE_OK; i++) {
        struct doc_key k = {CORPDIR_AUID, "global", "", docs[i].name};
        struct store_doc old = {0};
        rc = store_doc_get(t, &k, &old);
        if (rc != STORE_OK && rc != STORE_NOTFOUND)
            break;
        bool same = rc == STORE_OK && old.len == docs[i].body.len &&
                    memcmp(old.data, docs[i].body.data, old.len) == 0;
        char prev[STORE_ETAG_MAX];
        snprintf(prev, sizeof prev, "%s", rc == STORE_OK ? old.etag : "");
        store_doc_release(&old);
        rc = STORE_OK;
        if (same)
            continue;
        char etag[STORE_ETAG_MAX];
        if ((rc = store_doc_put(t, &k, docs[i].body.data, docs[i].body.len, etag)) == STORE_OK &&
            (rc = corpdir_change(t, &k, STORE_CHANGE_PUT, prev, etag)) == STORE_OK)
            changed++;
    }
    struct corpdir_stale st = {.document = d->document, .parts = ndocs - 1};
    if (rc == STORE_OK)
        rc = store_doc_list(t, CORPDIR_AUID, "global", "", d->document, corpdir_on_doc, &st);
    for (size_t i = 0; i < st.n && rc == STORE_OK; i++) {
        struct doc_key k = {CORPDIR_AUID, "global", "", st.names[i]};
        struct store_doc old = {0};
        if ((rc = store_doc_get(t, &k, &old)) != STORE_OK)
            break;
        char prev[STORE_ETAG_MAX];
        snprintf(prev, sizeof prev, "%s", old.etag);
        store_doc_release(&old);
        if ((rc = store_doc_del(t, &k)) == STORE_OK &&
            (rc = corpdir_change(t, &k, STORE_CHANGE_DELETE, prev, "")) == STORE_OK)
            changed++;
    }
    for (size_t i = 0; i < st.n; i++)
        free(st.names[i]);
    if (rc != STORE_OK) {
        store_txn_abort(t);
        return -1;
    }
    if (changed == 0) {
        store_txn_abort(t);
        return 0;
    }
    if (store_txn_commit(t) != STORE_OK)
        return -1;
    return changed;
}

static void corpdir_run(struct corpdir *d)
{
    atomic_fetch_add(&d->runs, 1);
    const char *attrs[CORPDIR_ATTRS_MAX + 2];
    size_t na = 0;
    for (size_t i = 0; i < d->n_uri_attrs; i++)
        attrs[na++] = d->uri_attrs[i];
    attrs[na++] = d->name_attr;
    attrs[na] = NULL;
    struct corpdir_collect c = {.d = d};
    enum ldapc_rc rc =
        ldapc_search(d->ldap, d->base_dn, d->filter, attrs, d->max_total, corpdir_on_entry, &c);
    pthread_mutex_lock(&d->lock);
    bool stop = d->stop;
    pthread_mutex_unlock(&d->lock);
    if (stop) {
        corpdir_collect_release(&c);
        return;
    }
    if (rc != LDAPC_OK || c.nomem) {
        atomic_fetch_add(&d->failures, 1);
        log_warn("corporate directory: LDAP search of %s failed (%s%s): %s kept as it is",
                 d->base_dn, c.nomem ? "out of memory" : ldapc_strerror(rc),
                 rc == LDAPC_TOO_MANY ? ", see directory_max_total" : "", d->document);
        corpdir_collect_release(&c);
        return;
    }
    size_t ndocs = 1 + (c.n > d->max_entries ? (c.n + d->max_entries - 1) / d->max_entries : 0);
    struct corpdir_doc *docs = calloc(ndocs, sizeof *docs);
    int n = docs ? corpdir_render(c.v, c.n, d->document, d->xcap_root, d->max_entries, docs) : -1;
    int changed = n < 0 ? -1 : corpdir_store(d, docs, (size_t)n);
    if (n >= 0)
        corpdir_docs_release(docs, (size_t)n);
    free(docs);
    if (changed < 0) {
        atomic_fetch_add(&d->failures, 1);
        log_warn("corporate directory: %s could not be stored", d->document);
    } else {
        atomic_store(&d->entries, (uint_fast64_t)c.n);
        atomic_store(&d->last_ok, (uint_fast64_t)time(NULL));
        if (changed > 0) {
            atomic_fetch_add(&d->writes, (uint_fast64_t)changed);
            if (d->notifier)
                notifier_wake(d->notifier);
        }
        log_info("corporate directory: %zu entries from LDAP (%zu without a URI) in %d "
                 "document(s), %d changed",
                 c.n, c.skipped, n, changed);
    }
    corpdir_collect_release(&c);
}

static void *corpdir_thread(void *arg)
{
    struct corpdir *d = arg;
    pthread_mutex_lock(&d->lock);
    d->pending = true; /* the first run at start */
    while (!d->stop) {
        if (!d->pending) {
            if (d->refresh_s) {
                struct timespec until;
                clock_gettime(CLOCK_MONOTONIC, &until);
                until.tv_sec += d->refresh_s;
                if (pthread_cond_timedwait(&d->cond, &d->lock, &until) == ETIMEDOUT)
                    d->pending = true;
            } else {
                pthread_cond_wait(&d->cond, &d->lock);
            }
            continue;
        }
        d->pending = false;
        pthread_mutex_unlock(&d->lock);
        corpdir_run(d);
        pthread_mutex_lock(&d->lock);
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

static void corpdir_free(struct corpdir *d)
{
    ldapc_free(d->ldap);
    free(d->base_dn);
    free(d->filter);
    free(d->name_attr);
    free(d->document);
    free(d->xcap_root);
    for (size_t i = 0; i < d->n_uri_attrs; i++)
        free(d->uri_attrs[i]);
    pthread_mutex_destroy(&d->lock);
    pthread_cond_destroy(&d->cond);
    free(d);
}

static char *corpdir_dup(const char *s, const char *def)
{
    return strdup(s && s[0] ? s : def);
}

static bool corpdir_name_ok(const char *s)
{
    return s[0] && strlen(s) <= 128 &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") ==
               strlen(s) &&
           s[0] != '.';
}

struct corpdir *corpdir_start(const struct corpdir_options *o, struct store *store,
                              struct notifier *notifier)
{
    if (!o->base_dn || !o->base_dn[0]) {
        log_error("the corporate directory needs directory_base_dn");
        return NULL;
    }
    struct corpdir *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    pthread_mutex_init(&d->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&d->cond, &ca);
    pthread_condattr_destroy(&ca);
    d->store = store;
    d->notifier = notifier;
    d->base_dn = strdup(o->base_dn);
    d->filter = corpdir_dup(o->filter, "(objectClass=inetOrgPerson)");
    d->name_attr = corpdir_dup(o->name_attr, "displayName");
    d->document = corpdir_dup(o->document, "corporate-directory");
    d->xcap_root = corpdir_dup(o->xcap_root, "http://127.0.0.1:8080/xcap-root");
    d->max_entries = o->max_entries ? o->max_entries : 5000;
    d->max_total = o->max_total ? o->max_total : 200000;
    d->refresh_s = o->refresh_s;
    d->ldap = ldapc_new(&o->ldap);
    if (!d->base_dn || !d->filter || !d->name_attr || !d->document || !d->xcap_root || !d->ldap) {
        corpdir_free(d);
        return NULL;
    }
    if (!corpdir_name_ok(d->document)) {
        log_error("directory_document \"%s\": letters, digits, '.', '_' and '-' only", d->document);
        corpdir_free(d);
        return NULL;
    }
    const char *p = o->uri_attrs && o->uri_attrs[0] ? o->uri_attrs : "labeledURI telephoneNumber";
    while (*p) {
        p += strspn(p, " ,\t");
        size_t n = strcspn(p, " ,\t");
        if (n == 0)
            break;
        if (d->n_uri_attrs == CORPDIR_ATTRS_MAX ||
            !(d->uri_attrs[d->n_uri_attrs] = strndup(p, n))) {
            log_error("directory_uri_attributes: at most %d attributes", CORPDIR_ATTRS_MAX);
            corpdir_free(d);
            return NULL;
        }
        d->n_uri_attrs++;
        p += n;
    }
    if (pthread_create(&d->thread, NULL, corpdir_thread, d) != 0) {
        corpdir_free(d);
        return NULL;
    }
    return d;
}

void corpdir_refresh(struct corpdir *d)
{
    if (!d)
        return;
    pthread_mutex_lock(&d->lock);
    d->pending = true;
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->lock);
}

void corpdir_stop(struct corpdir *d)
{
    if (!d)
        return;
    pthread_mutex_lock(&d->lock);
    d->stop = true;
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->lock);
    pthread_join(d->thread, NULL);
    corpdir_free(d);
}

int corpdir_metrics(struct corpdir *d, struct buf *out)
{
    if (!d)
        return 0;
    int rc = buf_printf(
        out,
        "# HELP xdm_directory_refreshes_total Runs of the corporate directory from LDAP.\n"
        "# TYPE xdm_directory_refreshes_total counter\n"
        "xdm_directory_refreshes_total %" PRIu64 "\n"
        "# HELP xdm_directory_refresh_failures_total Runs that failed (the documents were kept).\n"
        "# TYPE xdm_directory_refresh_failures_total counter\n"
        "xdm_directory_refresh_failures_total %" PRIu64 "\n"
        "# HELP xdm_directory_writes_total Corporate directory documents written or deleted.\n"
        "# TYPE xdm_directory_writes_total counter\n"
        "xdm_directory_writes_total %" PRIu64 "\n"
        "# HELP xdm_directory_entries Entries of the corporate directory at the last good run.\n"
        "# TYPE xdm_directory_entries gauge\n"
        "xdm_directory_entries %" PRIu64 "\n"
        "# HELP xdm_directory_last_success_seconds Time of the last good run (Unix seconds).\n"
        "# TYPE xdm_directory_last_success_seconds gauge\n"
        "xdm_directory_last_success_seconds %" PRIu64 "\n",
        (uint64_t)atomic_load(&d->runs), (uint64_t)atomic_load(&d->failures),
        (uint64_t)atomic_load(&d->writes), (uint64_t)atomic_load(&d->entries),
        (uint64_t)atomic_load(&d->last_ok));
    return rc < 0 ? -1 : ldapc_metrics_render(out);
}
