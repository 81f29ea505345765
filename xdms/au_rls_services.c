/* The rls-services application usage (RFC 4826 §4.4), served by the rls XDMS: its constraints
 * (§4.4.5) and its interdependencies (§4.4.7-4.4.8).
 *
 * Two tables, written in the caller's transaction, make every step proportional to one
 * document, never to all of them:
 *   rls_uri  service URI -> owner XUI \0 document path \0 the <service> element serialized on
 *            its own (its namespace declarations included), as it goes into the global index
 *   rls_doc  XUI \0 document path -> the document's service URIs, each followed by \0
 * The global index (global/index) is rebuilt from rls_uri alone, in URI order. */
#include <ctype.h>
#include <libxml/tree.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "appusage.h"
#include "au_lists.h"
#include "buf.h"
#include "usage.h"
#include "xdoc.h"

/* The global index may grow with the number of services; beyond this it is refused rather than
 * built without bound. */
#define AU_RLS_SERVICES_INDEX_MAX (256u << 20)

#define AU_RLS_SERVICES_INDEX "index" /* its path in the global tree */

static const struct doc_key au_rls_services_index_key = {"rls-services", "global", "",
                                                         AU_RLS_SERVICES_INDEX};

struct au_rls_services_svc {
    const char *uri; /* borrowed from the tree */
    xmlNodePtr node;
    size_t order;
};

static int au_rls_services_uri_cmp(const void *a, const void *b)
{
    const struct au_rls_services_svc *x = a, *y = b;
    int c = strcmp(x->uri, y->uri);
    if (c)
        return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

static enum xcap_status au_rls_services_store_fail(struct xcap_err *err, enum store_rc rc)
{
    if (rc == STORE_FULL) /* RFC 4918 §11.5 */
        return xcap_fail(err, XCAP_INSUFFICIENT_STORAGE, "%s", STORE_FULL_TEXT);
    return xcap_fail(err, XCAP_STORAGE, "storage error: %s", store_strerror(rc));
}

/* The services of the document, sorted by URI (then document order). */
static int au_rls_services_collect(xmlNodePtr root, struct au_rls_services_svc **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    size_t cap = 0;
    for (xmlNodePtr s = xdoc_first_child(root); s; s = xdoc_next(s))
        if (xdoc_is(s, AU_LISTS_NS_RLS, "service"))
            cap++;
    if (cap == 0)
        return 0;
    struct au_rls_services_svc *v = calloc(cap, sizeof *v);
    if (!v)
        return -1;
    size_t m = 0, order = 0;
    for (xmlNodePtr s = xdoc_first_child(root); s; s = xdoc_next(s), order++) {
        const char *uri = xdoc_is(s, AU_LISTS_NS_RLS, "service") ? xdoc_attr(s, "uri") : NULL;
        if (uri)
            v[m++] = (struct au_rls_services_svc){uri, s, order};
    }
    qsort(v, m, sizeof *v, au_rls_services_uri_cmp);
    *out = v;
    *n = m;
    return 0;
}

static bool au_rls_services_has(const struct au_rls_services_svc *v, size_t n, const char *uri)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(v[mid].uri, uri);
        if (c == 0)
            return true;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

/* A URI is free for a suggestion when neither this document nor (with a transaction) any
 * other document has it. */
struct au_rls_services_taken {
    struct store_txn *t;
    const struct au_rls_services_svc *svcs;
    size_t n;
    const struct xcap_err *err;
};

static int au_rls_services_taken(void *cls, const char *cand)
{
    const struct au_rls_services_taken *k = cls;
    if (au_rls_services_has(k->svcs, k->n, cand))
        return 1;
    for (size_t i = 0; i < k->err->n_exists; i++)
        for (size_t j = 0; j < k->err->exists[i].n_alt; j++)
            if (strcmp(k->err->exists[i].alt_values[j], cand) == 0)
                return 1;
    if (!k->t)
        return 0;
    void *val = NULL;
    size_t vlen;
    enum store_rc rc = store_kv_get(k->t, USAGE_RLS_URI_TABLE, cand, strlen(cand), &val, &vlen);
    free(val);
    if (rc == STORE_OK)
        return 1;
    return rc == STORE_NOTFOUND ? 0 : -1;
}

/* A service whose URI is taken: by an earlier service of the same document (named by position,
 * the URI does not single it out) or by another document (named by its URI). */
struct au_rls_services_bad {
    const struct au_rls_services_svc *s;
    bool in_doc;
};

static int au_rls_services_bad_cmp(const void *a, const void *b)
{
    const struct au_rls_services_bad *x = a, *y = b;
    return x->s->order < y->s->order ? -1 : x->s->order > y->s->order;
}

static int au_rls_services_report(struct xcap_err *err, const struct au_rls_services_bad *b,
                                  struct au_rls_services_taken *taken)
{
    if (err->n_exists >= AU_LISTS_MAX_EXISTS)
        return 0;
    const struct au_rls_services_svc *s = b->s;
    struct buf field;
    buf_init(&field, 4096);
    struct xcap_exists *ex = NULL;
    int rc = au_lists_field(s->node, "uri", AU_LISTS_NS_RLS, !b->in_doc, &field);
    if (rc == 0 && !(ex = xcap_err_add_exists(err, field.data)))
        rc = -1;
    buf_release(&field);
    if (rc == 0)
        rc = au_lists_suggest(s->uri, true, USAGE_RLS_URI_MAX, au_rls_services_taken, taken, ex);
    return rc;
}

/* True when the au_rls_services_uri value val names the document owner_key (XUI \0 path \0). */
static bool au_rls_services_owned_by(const char *val, size_t vlen, const char *owner_key,
                                     size_t owner_len)
{
    return vlen >= owner_len && memcmp(val, owner_key, owner_len) == 0;
}

static enum xcap_status au_rls_services_unique(struct store_txn *t, const char *owner_key,
                                               size_t owner_len, xmlNodePtr root,
                                               struct xcap_err *err)
{
    struct au_rls_services_svc *v;
    size_t n;
    if (au_rls_services_collect(root, &v, &n) < 0)
        return xcap_fail(err, XCAP_INTERNAL, "out of memory");
    /* The offending services in document order: a second (third, ...) use of a URI within the
     * document, and any URI another document already owns. */
    struct au_rls_services_bad *bad = n ? calloc(n, sizeof *bad) : NULL;
    enum xcap_status st = XCAP_OK;
    if (n && !bad) {
        st = xcap_fail(err, XCAP_INTERNAL, "out of memory");
        goto done;
    }
    size_t nb = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(v[i].uri, v[i - 1].uri) == 0) {
            bad[nb++] = (struct au_rls_services_bad){&v[i], true};
            continue;
        }
        if (!t)
            continue;
        void *val = NULL;
        size_t vlen = 0;
        enum store_rc rc =
            store_kv_get(t, USAGE_RLS_URI_TABLE, v[i].uri, strlen(v[i].uri), &val, &vlen);
        if (rc == STORE_OK && !au_rls_services_owned_by(val, vlen, owner_key, owner_len))
            bad[nb++] = (struct au_rls_services_bad){&v[i], false};
        free(val);
        if (rc != STORE_OK && rc != STORE_NOTFOUND) {
            st = au_rls_services_store_fail(err, rc);
            goto done;
        }
    }
    qsort(bad, nb, sizeof *bad, au_rls_services_bad_cmp);
    struct au_rls_services_taken taken = {t, v, n, err};
    for (size_t i = 0; i < nb; i++)
        if (au_rls_services_report(err, &bad[i], &taken) < 0) {
            st = xcap_fail(err, XCAP_INTERNAL, "out of memory or storage error");
            goto done;
        }
    if (nb)
        st = xcap_fail(err, XCAP_UNIQUENESS_FAILURE,
                       "a service URI must be unique across all users' rls-services documents "
                       "(RFC 4826 §4.4.5)");
done:
    free(bad);
    free(v);
    return st;
}

/* The service element as a stand-alone fragment: copied into a document of its own so that
 * every namespace it uses is declared on it, then serialized. */
static int au_rls_services_fragment(xmlNodePtr service, struct buf *out)
{
    xmlDocPtr tmp = xmlNewDoc((const xmlChar *)"1.0");
    if (!tmp)
        return -1;
    int rc = -1;
    xmlNodePtr copy = xmlDocCopyNode(service, tmp, 1);
    xmlBufferPtr b = xmlBufferCreate();
    if (copy && b) {
        xmlDocSetRootElement(tmp, copy);
        if (xmlNodeDump(b, tmp, copy, 0, 0) >= 0)
            rc = buf_append(out, xmlBufferContent(b), (size_t)xmlBufferLength(b));
    } else if (copy) {
        xmlFreeNode(copy);
    }
    if (b)
        xmlBufferFree(b);
    xmlFreeDoc(tmp);
    return rc;
}

struct au_rls_services_index {
    struct buf *out;
    bool broken;
};

static int au_rls_services_index_add(void *cls, const void *key, size_t klen, const void *val,
                                     size_t vlen)
{
    struct au_rls_services_index *x = cls;
    /* Skip owner XUI \0 path \0 to the fragment. */
    const char *p = val, *end = p + vlen;
    for (int nul = 0; nul < 2; nul++) {
        const char *z = memchr(p, '\0', (size_t)(end - p));
        if (!z) {
            x->broken = true;
            return 1;
        }
        p = z + 1;
    }
    if (buf_append(x->out, p, (size_t)(end - p)) < 0 || buf_puts(x->out, "\n") < 0) {
        x->broken = true;
        return 1;
    }
    return 0;
}

/* The global index document: the <service> fragments of rls_uri, in URI order. */
static enum xcap_status au_rls_services_index_body(struct store_txn *t, struct buf *out,
                                                   struct xcap_err *err)
{
    struct au_rls_services_index x = {.out = out, .broken = false};
    enum xcap_status st = XCAP_OK;
    if (buf_puts(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                      "<rls-services xmlns=\"" AU_LISTS_NS_RLS "\">\n") < 0)
        return xcap_fail(err, XCAP_INTERNAL, "out of memory");
    size_t head = out->len;
    enum store_rc rc =
        store_kv_scan(t, USAGE_RLS_URI_TABLE, NULL, 0, au_rls_services_index_add, &x);
    if (rc != STORE_OK) {
        st = au_rls_services_store_fail(err, rc);
    } else if (x.broken) {
        st = xcap_fail(err, XCAP_INTERNAL, "the global index cannot be built (too large?)");
    } else if (out->len == head) { /* no service left: an empty index */
        out->len = head - 2;
        out->data[out->len] = '\0';
        if (buf_puts(out, "/>\n") < 0)
            st = xcap_fail(err, XCAP_INTERNAL, "out of memory");
    } else if (buf_puts(out, "</rls-services>\n") < 0) {
        st = xcap_fail(err, XCAP_INTERNAL, "the global index is too large");
    }
    return st;
}

/* RFC 4826 §4.4.8: the union of every user's services, stored with a new ETag and logged, so
 * subscribers to the index are told. */
static enum xcap_status au_rls_services_rebuild_index(struct store_txn *t, struct xcap_err *err)
{
    struct buf body;
    buf_init(&body, AU_RLS_SERVICES_INDEX_MAX);
    enum xcap_status st = au_rls_services_index_body(t, &body, err);
    if (st != XCAP_OK)
        goto done;
    struct store_doc old = {0};
    enum store_rc rc = store_doc_get(t, &au_rls_services_index_key, &old);
    if (rc != STORE_OK && rc != STORE_NOTFOUND) {
        st = au_rls_services_store_fail(err, rc);
        goto done;
    }
    char prev[STORE_ETAG_MAX];
    memcpy(prev, rc == STORE_OK ? old.etag : "", rc == STORE_OK ? sizeof prev : 1);
    store_doc_release(&old);
    char etag[STORE_ETAG_MAX];
    if ((rc = store_doc_put(t, &au_rls_services_index_key, body.data, body.len, etag)) !=
        STORE_OK) {
        st = au_rls_services_store_fail(err, rc);
        goto done;
    }
    struct store_change ch = {
        .kind = STORE_CHANGE_PUT,
        .key = au_rls_services_index_key,
        .prev_etag = prev,
        .new_etag = etag,
        .detail = "",
        .detail_len = 0,
    };
    if ((rc = store_change_append(t, &ch)) != STORE_OK)
        st = au_rls_services_store_fail(err, rc);
done:
    buf_release(&body);
    return st;
}

/* Drops the URIs the document had and no longer has. owner_key is XUI \0 path \0; the
 * au_rls_services_doc key is the same without the last \0. */
static enum xcap_status au_rls_services_forget(struct store_txn *t, const char *owner_key,
                                               size_t owner_len,
                                               const struct au_rls_services_svc *v, size_t n,
                                               struct xcap_err *err)
{
    void *old = NULL;
    size_t olen = 0;
    enum store_rc rc = store_kv_get(t, USAGE_RLS_DOC_TABLE, owner_key, owner_len - 1, &old, &olen);
    if (rc == STORE_NOTFOUND)
        return XCAP_OK;
    if (rc != STORE_OK)
        return au_rls_services_store_fail(err, rc);
    enum xcap_status st = XCAP_OK;
    for (const char *p = old, *end = p + olen; p < end && st == XCAP_OK;) {
        const char *z = memchr(p, '\0', (size_t)(end - p));
        size_t ulen = z ? (size_t)(z - p) : (size_t)(end - p);
        if (ulen && !au_rls_services_has(v, n, p)) {
            rc = store_kv_del(t, USAGE_RLS_URI_TABLE, p, ulen);
            if (rc != STORE_OK && rc != STORE_NOTFOUND)
                st = au_rls_services_store_fail(err, rc);
        }
        p += ulen + 1;
    }
    free(old);
    return st;
}

/* Records the document's services: au_rls_services_uri rows (owner, then the fragment) and the
 * au_rls_services_doc row. */
static enum xcap_status au_rls_services_record(struct store_txn *t, const char *owner_key,
                                               size_t owner_len,
                                               const struct au_rls_services_svc *v, size_t n,
                                               struct xcap_err *err)
{
    struct buf row, list;
    buf_init(&row, AU_RLS_SERVICES_INDEX_MAX);
    buf_init(&list, AU_RLS_SERVICES_INDEX_MAX);
    enum xcap_status st = XCAP_OK;
    enum store_rc rc = STORE_OK;
    for (size_t i = 0; i < n && st == XCAP_OK; i++) {
        size_t ulen = strlen(v[i].uri);
        buf_reset(&row);
        if (buf_append(&row, owner_key, owner_len) < 0 ||
            au_rls_services_fragment(v[i].node, &row) < 0 ||
            buf_append(&list, v[i].uri, ulen + 1) < 0) {
            st = xcap_fail(err, XCAP_INTERNAL, "out of memory");
            break;
        }
        rc = store_kv_put(t, USAGE_RLS_URI_TABLE, v[i].uri, ulen, row.data, row.len);
        if (rc != STORE_OK)
            st = au_rls_services_store_fail(err, rc);
    }
    if (st == XCAP_OK) {
        rc = n ? store_kv_put(t, USAGE_RLS_DOC_TABLE, owner_key, owner_len - 1, list.data, list.len)
               : store_kv_del(t, USAGE_RLS_DOC_TABLE, owner_key, owner_len - 1);
        if (rc != STORE_OK && rc != STORE_NOTFOUND)
            st = au_rls_services_store_fail(err, rc);
    }
    buf_release(&row);
    buf_release(&list);
    return st;
}

static enum xcap_status au_rls_services_interdepend(struct store_txn *t, const struct doc_key *k,
                                                    xmlDocPtr doc, struct xcap_err *err)
{
    /* Only users' documents make up the index (RFC 4826 §4.4.7). */
    if (strcmp(k->tree, "users") != 0)
        return XCAP_OK;
    struct buf owner;
    buf_init(&owner, 4096);
    if (buf_puts(&owner, k->xui) < 0 || buf_append(&owner, "", 1) < 0 ||
        buf_puts(&owner, k->path) < 0 || buf_append(&owner, "", 1) < 0) {
        buf_release(&owner);
        return xcap_fail(err, XCAP_INTERNAL, "out of memory");
    }
    xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
    struct au_rls_services_svc *v = NULL;
    size_t n = 0;
    enum xcap_status st = XCAP_OK;
    if (root && (st = au_rls_services_unique(t, owner.data, owner.len, root, err)) != XCAP_OK)
        goto done;
    if (root && au_rls_services_collect(root, &v, &n) < 0) {
        st = xcap_fail(err, XCAP_INTERNAL, "out of memory");
        goto done;
    }
    if ((st = au_rls_services_forget(t, owner.data, owner.len, v, n, err)) != XCAP_OK ||
        (st = au_rls_services_record(t, owner.data, owner.len, v, n, err)) != XCAP_OK)
        goto done;
    st = au_rls_services_rebuild_index(t, err);
done:
    free(v);
    buf_release(&owner);
    return st;
}

/* ---- xdmctl check: the index against the documents ---- */

/* Formats one problem for report; a problem longer than the buffer (a URI of many kilobytes in a
 * damaged document) is cut. */
__attribute__((format(printf, 4, 5))) static void au_rls_services_problem(appusage_report_fn report,
                                                                          void *cls,
                                                                          const struct doc_key *k,
                                                                          const char *fmt, ...)
{
    char msg[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    report(cls, k, msg);
}

static int au_rls_services_str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorts a list of strings each followed by \0 (len bytes) in place. */
static int au_rls_services_sort_list(char *list, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += list[i] == '\0';
    if (n < 2)
        return 0;
    char **items = calloc(n, sizeof *items), *copy = malloc(len);
    if (!items || !copy) {
        free(items);
        free(copy);
        return -1;
    }
    memcpy(copy, list, len);
    for (size_t i = 0, at = 0; i < n; i++, at += strlen(copy + at) + 1)
        items[i] = copy + at;
    qsort(items, n, sizeof *items, au_rls_services_str_cmp);
    for (size_t i = 0, at = 0; i < n; i++) {
        size_t l = strlen(items[i]) + 1;
        memcpy(list + at, items[i], l);
        at += l;
    }
    free(items);
    free(copy);
    return 0;
}

/* The rls_uri entries of the services (want: their URIs, each followed by \0) name the document
 * whose rls_doc key is key (XUI \0 path). */
static void au_rls_services_check_uris(struct store_txn *t, const struct doc_key *k,
                                       const struct buf *want, const struct buf *key,
                                       appusage_report_fn report, void *cls)
{
    for (size_t at = 0; at < want->len; at += strlen(want->data + at) + 1) {
        void *o = NULL;
        size_t ol = 0;
        const char *uri = want->data + at;
        enum store_rc rc = store_kv_get(t, USAGE_RLS_URI_TABLE, uri, strlen(uri), &o, &ol);
        if (rc != STORE_OK || ol < key->len + 1 || memcmp(o, key->data, key->len) != 0 ||
            ((char *)o)[key->len] != '\0')
            au_rls_services_problem(report, cls, k, "service URI %s is not indexed to it in %s",
                                    uri, USAGE_RLS_URI_TABLE);
        free(o);
    }
}

/* The rls_doc entry of the users' document k lists exactly its service URIs, and each of them
 * has its rls_uri entry. */
static int au_rls_services_index_doc(struct store_txn *t, const struct doc_key *k, xmlDocPtr doc,
                                     appusage_report_fn report, void *cls)
{
    if (strcmp(k->tree, "users") != 0)
        return 0;
    xmlNodePtr root = xmlDocGetRootElement(doc);
    struct au_rls_services_svc *svcs = NULL;
    size_t n = 0;
    if (root && xdoc_is(root, AU_LISTS_NS_RLS, "rls-services") &&
        au_rls_services_collect(root, &svcs, &n) < 0)
        return -1;
    struct buf want, key;
    buf_init(&want, AU_RLS_SERVICES_INDEX_MAX);
    buf_init(&key, AU_RLS_SERVICES_INDEX_MAX);
    int bad = 0;
    for (size_t i = 0; i < n && !bad; i++)
        bad = buf_append(&want, svcs[i].uri, strlen(svcs[i].uri) + 1);
    free(svcs);
    void *v = NULL;
    size_t vl = 0;
    if (bad || buf_append(&key, k->xui, strlen(k->xui) + 1) || buf_puts(&key, k->path)) {
        bad = -1;
    } else {
        enum store_rc rc = store_kv_get(t, USAGE_RLS_DOC_TABLE, key.data, key.len, &v, &vl);
        if (rc == STORE_OK && au_rls_services_sort_list(v, vl) < 0)
            bad = -1;
        if (want.len && rc != STORE_OK)
            au_rls_services_problem(report, cls, k, "its service URIs are not in the index %s",
                                    USAGE_RLS_DOC_TABLE);
        else if (rc == STORE_OK && (vl != want.len || memcmp(v, want.data, vl) != 0))
            au_rls_services_problem(report, cls, k, "the index %s lists other service URIs",
                                    USAGE_RLS_DOC_TABLE);
        au_rls_services_check_uris(t, k, &want, &key, report, cls);
    }
    free(v);
    buf_release(&want);
    buf_release(&key);
    return bad ? -1 : 0;
}

struct au_rls_services_scan {
    struct store_txn *t;
    const char *table;
    appusage_report_fn report;
    void *cls;
    bool oom;
};

/* Whether the rls_doc entry of the document xui/path lists the service URI uri[0..ulen). */
static bool au_rls_services_doc_lists(struct store_txn *t, const char *xui, size_t xl,
                                      const char *path, size_t pl, const void *uri, size_t ulen)
{
    struct buf dk;
    buf_init(&dk, AU_RLS_SERVICES_INDEX_MAX);
    void *v = NULL;
    size_t vl = 0;
    bool listed = false;
    if (buf_append(&dk, xui, xl + 1) == 0 && buf_append(&dk, path, pl) == 0 &&
        store_kv_get(t, USAGE_RLS_DOC_TABLE, dk.data, dk.len, &v, &vl) == STORE_OK)
        for (size_t at = 0; at < vl && !listed; at += strlen((char *)v + at) + 1)
            listed = strlen((char *)v + at) == ulen && memcmp((char *)v + at, uri, ulen) == 0;
    free(v);
    buf_release(&dk);
    return listed;
}

/* store_kv_scan() of rls_doc and rls_uri: every entry belongs to an existing document that lists
 * it. */
static int au_rls_services_index_entry(void *cls, const void *key, size_t klen, const void *val,
                                       size_t vlen)
{
    struct au_rls_services_scan *sc = cls;
    bool doc_table = strcmp(sc->table, USAGE_RLS_DOC_TABLE) == 0;
    const char *xui = doc_table ? key : val;
    size_t avail = doc_table ? klen : vlen;
    size_t xl = strnlen(xui, avail);
    const char *path = xl < avail ? xui + xl + 1 : NULL;
    size_t pl = path ? strnlen(path, avail - xl - 1) : 0;
    if (!path || xl + 1 + pl >= avail + (doc_table ? 1 : 0)) {
        au_rls_services_problem(sc->report, sc->cls, NULL, "%s: a malformed entry", sc->table);
        return 0;
    }
    char *x = strndup(xui, xl), *pa = strndup(path, pl);
    if (!x || !pa) {
        free(x);
        free(pa);
        return sc->oom = true, 1;
    }
    struct doc_key k = {au_rls_services_index_key.auid, "users", x, pa};
    struct store_doc d;
    enum store_rc rc = store_doc_get(sc->t, &k, &d);
    if (rc == STORE_OK) {
        /* A URI must be one of the document's: its rls_doc entry lists it. */
        if (!doc_table && !au_rls_services_doc_lists(sc->t, x, xl, pa, pl, key, klen))
            au_rls_services_problem(sc->report, sc->cls, NULL,
                                    "%s: service URI %.*s is indexed to %s/%s, which does not "
                                    "list it",
                                    sc->table, (int)klen, (const char *)key, x, pa);
        store_doc_release(&d);
    } else {
        au_rls_services_problem(sc->report, sc->cls, NULL,
                                "%s: an entry for the missing document %s/%s", sc->table, x, pa);
    }
    free(x);
    free(pa);
    return 0;
}

static int au_rls_services_index_check(struct store_txn *t, const struct doc_key *k, xmlDocPtr doc,
                                       appusage_report_fn report, void *cls)
{
    if (k)
        return au_rls_services_index_doc(t, k, doc, report, cls);
    struct au_rls_services_scan a = {t, USAGE_RLS_DOC_TABLE, report, cls, false};
    struct au_rls_services_scan b = {t, USAGE_RLS_URI_TABLE, report, cls, false};
    store_kv_scan(t, USAGE_RLS_DOC_TABLE, NULL, 0, au_rls_services_index_entry, &a);
    store_kv_scan(t, USAGE_RLS_URI_TABLE, NULL, 0, au_rls_services_index_entry, &b);
    return a.oom || b.oom ? -1 : 0;
}

/* RFC 3265 §7.2 event package names: tokens (a template package adds ".name", also a token). */
static bool au_rls_services_token(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("-.!%*_+`'~", *s))
            return false;
    return true;
}

static enum xcap_status au_rls_services_check_lists(xmlNodePtr root, const char *owner,
                                                    const struct au_lists_refs *refs,
                                                    struct xcap_err *err)
{
    struct au_lists_ctx c = {
        .owner = owner, .refs = refs, .default_ns = AU_LISTS_NS_RLS, .err = err};
    char why[160];
    for (xmlNodePtr svc = xdoc_first_child(root); svc && !c.oom; svc = xdoc_next(svc)) {
        if (!xdoc_is(svc, AU_LISTS_NS_RLS, "service"))
            continue;
        const char *uri = xdoc_attr(svc, "uri");
        if (uri && !uri[0])
            au_lists_constraint(&c, "a service needs a non-empty uri");
        if (uri && strlen(uri) > USAGE_RLS_URI_MAX) {
            au_lists_constraint(&c, "service uri \"%.80s...\" is longer than %d bytes", uri,
                                USAGE_RLS_URI_MAX);
        }
        for (xmlNodePtr ch = xdoc_first_child(svc); ch && !c.oom; ch = xdoc_next(ch)) {
            if (xdoc_is(ch, AU_LISTS_NS_RLS, "list")) {
                au_lists_walk(&c, ch, 2); /* RFC 4826 §4.4.5: an inline list obeys §3.4.5 */
            } else if (xdoc_is(ch, AU_LISTS_NS_RLS, "resource-list")) {
                /* RFC 4826 §4.4.5 (an absolute URI of a list); as for OMA
                 * external lists, the list must be the owner's: the RLS reads it with server
                 * rights, so another user's list would leak through a service. */
                char *ref = xdoc_text_dup(ch);
                if (!ref)
                    c.oom = true;
                else if (!au_lists_ref_ok(ref, AU_LISTS_REF_ABSOLUTE, "list", owner, refs, why,
                                          sizeof why))
                    au_lists_constraint(&c, "resource-list \"%.200s\" %s", ref, why);
                free(ref);
            } else if (xdoc_is(ch, AU_LISTS_NS_RLS, "packages")) {
                for (xmlNodePtr pk = xdoc_first_child(ch); pk && !c.oom; pk = xdoc_next(pk)) {
                    if (!xdoc_is(pk, AU_LISTS_NS_RLS, "package"))
                        continue;
                    char *name = xdoc_text_dup(pk);
                    if (!name)
                        c.oom = true;
                    else if (!au_rls_services_token(name))
                        au_lists_constraint(&c, "package \"%.100s\" is not an event package name",
                                            name);
                    free(name);
                }
            }
        }
    }
    return au_lists_finish(&c);
}

/* RFC 4826 §4.4.5. In the users tree, URI uniqueness is checked by the interdependency step
 * against the index as well, with alt-values that are free there; elsewhere only the document
 * counts. */
static enum xcap_status au_rls_services_check(const struct appusage_check *c, xmlNodePtr root,
                                              struct xcap_err *err)
{
    enum xcap_status st = au_rls_services_check_lists(root, c->owner, c->refs, err);
    if (st != XCAP_OK)
        return st;
    return c->owner ? XCAP_OK : au_rls_services_unique(NULL, NULL, 0, root, err);
}

/* RFC 4826 §4.4.8: the global index is made by the server from all users' documents. */
static bool au_rls_services_server_owned(const struct doc_key *k)
{
    return strcmp(k->tree, "global") == 0 && strcmp(k->path, AU_RLS_SERVICES_INDEX) == 0;
}

static const char *const au_rls_services_tables[] = {USAGE_RLS_URI_TABLE, USAGE_RLS_DOC_TABLE,
                                                     NULL};

/* Inline lists of a service are resource-lists <list>s (RFC 4826 §4.2). */
static const char *const au_rls_services_namespaces[] = {
    AU_LISTS_NS_RL,
    NULL,
};

const struct appusage au_rls_services = {
    .auid = "rls-services",
    .mime = "application/rls-services+xml",
    /* RFC 4826 §4.4 (rls-services usage), "Default Namespace" */
    .default_ns = AU_LISTS_NS_RLS,
    .role = ROLE_RLS,
    .root = "rls-services",
    .xsd = "rls-services.xsd",
    .namespaces = au_rls_services_namespaces,
    .tables = au_rls_services_tables,
    .check = au_rls_services_check,
    .interdepend = au_rls_services_interdepend,
    .server_owned = au_rls_services_server_owned,
    .index_check = au_rls_services_index_check,
};
