/* rls-services interdependencies (RFC 4826 §4.4.5, §4.4.7-4.4.8; SPEC RLS-3, RLS-7, RLS-9).
 *
 * Two tables, written in the caller's transaction, make every step proportional to one
 * document, never to all of them:
 *   rls_uri  service URI -> owner XUI \0 document path \0 the <service> element serialized on
 *            its own (its namespace declarations included), as it goes into the global index
 *   rls_doc  XUI \0 document path -> the document's service URIs, each followed by \0
 * The global index (rls-services/global/index) is rebuilt from rls_uri alone, in URI order. */
#include <libxml/tree.h>
#include <stdlib.h>
#include <string.h>

#include "usage.h"
#include "usage_internal.h"

/* The global index may grow with the number of services; beyond this it is refused rather than
 * built without bound. */
#define RLS_INDEX_MAX (256u << 20)

static const struct doc_key rls_index_key = {"rls-services", "global", "", "index"};

struct rls_svc {
    const char *uri; /* borrowed from the tree */
    xmlNodePtr node;
    size_t order;
};

static int rls_uri_cmp(const void *a, const void *b)
{
    const struct rls_svc *x = a, *y = b;
    int c = strcmp(x->uri, y->uri);
    if (c)
        return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

static enum xcap_status rls_store_fail(struct xcap_err *err, enum store_rc rc)
{
    if (rc == STORE_FULL) /* RFC 4918 §11.5 */
        return xcap_fail(err, XCAP_INSUFFICIENT_STORAGE, "%s", STORE_FULL_TEXT);
    return xcap_fail(err, XCAP_STORAGE, "storage error: %s", store_strerror(rc));
}

/* The services of the document, sorted by URI (then document order). */
static int rls_collect(xmlNodePtr root, struct rls_svc **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    size_t cap = 0;
    for (xmlNodePtr s = usage_first_child(root); s; s = usage_next(s))
        if (usage_is(s, USAGE_NS_RLS, "service"))
            cap++;
    if (cap == 0)
        return 0;
    struct rls_svc *v = calloc(cap, sizeof *v);
    if (!v)
        return -1;
    size_t m = 0, order = 0;
    for (xmlNodePtr s = usage_first_child(root); s; s = usage_next(s), order++) {
        const char *uri = usage_is(s, USAGE_NS_RLS, "service") ? usage_attr(s, "uri") : NULL;
        if (uri)
            v[m++] = (struct rls_svc){uri, s, order};
    }
    qsort(v, m, sizeof *v, rls_uri_cmp);
    *out = v;
    *n = m;
    return 0;
}

static bool rls_has(const struct rls_svc *v, size_t n, const char *uri)
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
struct rls_taken {
    struct store_txn *t;
    const struct rls_svc *svcs;
    size_t n;
    const struct xcap_err *err;
};

static int rls_taken(void *cls, const char *cand)
{
    const struct rls_taken *k = cls;
    if (rls_has(k->svcs, k->n, cand))
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
struct rls_bad {
    const struct rls_svc *s;
    bool in_doc;
};

static int rls_bad_cmp(const void *a, const void *b)
{
    const struct rls_bad *x = a, *y = b;
    return x->s->order < y->s->order ? -1 : x->s->order > y->s->order;
}

static int rls_report(struct xcap_err *err, const struct rls_bad *b, struct rls_taken *taken)
{
    if (err->n_exists >= USAGE_MAX_EXISTS)
        return 0;
    const struct rls_svc *s = b->s;
    struct buf field;
    buf_init(&field, 4096);
    struct xcap_exists *ex = NULL;
    int rc = usage_field(s->node, "uri", USAGE_NS_RLS, !b->in_doc, &field);
    if (rc == 0 && !(ex = xcap_err_add_exists(err, field.data)))
        rc = -1;
    buf_release(&field);
    if (rc == 0)
        rc = usage_suggest(s->uri, true, rls_taken, taken, ex);
    return rc;
}

/* True when the rls_uri value val names the document owner_key (XUI \0 path \0). */
static bool rls_owned_by(const char *val, size_t vlen, const char *owner_key, size_t owner_len)
{
    return vlen >= owner_len && memcmp(val, owner_key, owner_len) == 0;
}

enum xcap_status usage_rls_unique(struct store_txn *t, const char *owner_key, size_t owner_len,
                                  xmlNodePtr root, struct xcap_err *err)
{
    struct rls_svc *v;
    size_t n;
    if (rls_collect(root, &v, &n) < 0)
        return xcap_fail(err, XCAP_INTERNAL, "out of memory");
    /* The offending services in document order: a second (third, ...) use of a URI within the
     * document, and any URI another document already owns. */
    struct rls_bad *bad = n ? calloc(n, sizeof *bad) : NULL;
    enum xcap_status st = XCAP_OK;
    if (n && !bad) {
        st = xcap_fail(err, XCAP_INTERNAL, "out of memory");
        goto done;
    }
    size_t nb = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(v[i].uri, v[i - 1].uri) == 0) {
            bad[nb++] = (struct rls_bad){&v[i], true};
            continue;
        }
        if (!t)
            continue;
        void *val = NULL;
        size_t vlen = 0;
        enum store_rc rc =
            store_kv_get(t, USAGE_RLS_URI_TABLE, v[i].uri, strlen(v[i].uri), &val, &vlen);
        if (rc == STORE_OK && !rls_owned_by(val, vlen, owner_key, owner_len))
            bad[nb++] = (struct rls_bad){&v[i], false};
        free(val);
        if (rc != STORE_OK && rc != STORE_NOTFOUND) {
            st = rls_store_fail(err, rc);
            goto done;
        }
    }
    qsort(bad, nb, sizeof *bad, rls_bad_cmp);
    struct rls_taken taken = {t, v, n, err};
    for (size_t i = 0; i < nb; i++)
        if (rls_report(err, &bad[i], &taken) < 0) {
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
static int rls_fragment(xmlNodePtr service, struct buf *out)
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

struct rls_index {
    struct buf out;
    bool broken;
};

static int rls_index_add(void *cls, const void *key, size_t klen, const void *val, size_t vlen)
{
    struct rls_index *x = cls;
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
    if (buf_append(&x->out, p, (size_t)(end - p)) < 0 || buf_puts(&x->out, "\n") < 0) {
        x->broken = true;
        return 1;
    }
    return 0;
}

/* RLS-7, RLS-9: the union of every user's services, stored with a new ETag and logged, so
 * subscribers to the index are told. */
static enum xcap_status rls_rebuild_index(struct store_txn *t, struct xcap_err *err)
{
    struct rls_index x = {.broken = false};
    buf_init(&x.out, RLS_INDEX_MAX);
    enum xcap_status st = XCAP_OK;
    if (buf_puts(&x.out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                         "<rls-services xmlns=\"" USAGE_NS_RLS "\">\n") < 0) {
        st = xcap_fail(err, XCAP_INTERNAL, "out of memory");
        goto done;
    }
    size_t head = x.out.len;
    enum store_rc rc = store_kv_scan(t, USAGE_RLS_URI_TABLE, NULL, 0, rls_index_add, &x);
    if (rc != STORE_OK) {
        st = rls_store_fail(err, rc);
        goto done;
    }
    if (x.broken) {
        st = xcap_fail(err, XCAP_INTERNAL, "the global index cannot be built (too large?)");
        goto done;
    }
    if (x.out.len == head) { /* no service left: an empty index */
        x.out.len = head - 2;
        x.out.data[x.out.len] = '\0';
        if (buf_puts(&x.out, "/>\n") < 0)
            st = xcap_fail(err, XCAP_INTERNAL, "out of memory");
    } else if (buf_puts(&x.out, "</rls-services>\n") < 0) {
        st = xcap_fail(err, XCAP_INTERNAL, "the global index is too large");
    }
    if (st != XCAP_OK)
        goto done;
    struct store_doc old = {0};
    rc = store_doc_get(t, &rls_index_key, &old);
    if (rc != STORE_OK && rc != STORE_NOTFOUND) {
        st = rls_store_fail(err, rc);
        goto done;
    }
    char prev[STORE_ETAG_MAX];
    memcpy(prev, rc == STORE_OK ? old.etag : "", rc == STORE_OK ? sizeof prev : 1);
    store_doc_release(&old);
    char etag[STORE_ETAG_MAX];
    if ((rc = store_doc_put(t, &rls_index_key, x.out.data, x.out.len, etag)) != STORE_OK) {
        st = rls_store_fail(err, rc);
        goto done;
    }
    struct store_change ch = {
        .kind = STORE_CHANGE_PUT,
        .key = rls_index_key,
        .prev_etag = prev,
        .new_etag = etag,
        .detail = "",
        .detail_len = 0,
    };
    if ((rc = store_change_append(t, &ch)) != STORE_OK)
        st = rls_store_fail(err, rc);
done:
    buf_release(&x.out);
    return st;
}

/* Drops the URIs the document had and no longer has. owner_key is XUI \0 path \0; the rls_doc
 * key is the same without the last \0. */
static enum xcap_status rls_forget(struct store_txn *t, const char *owner_key, size_t owner_len,
                                   const struct rls_svc *v, size_t n, struct xcap_err *err)
{
    void *old = NULL;
    size_t olen = 0;
    enum store_rc rc = store_kv_get(t, USAGE_RLS_DOC_TABLE, owner_key, owner_len - 1, &old, &olen);
    if (rc == STORE_NOTFOUND)
        return XCAP_OK;
    if (rc != STORE_OK)
        return rls_store_fail(err, rc);
    enum xcap_status st = XCAP_OK;
    for (const char *p = old, *end = p + olen; p < end && st == XCAP_OK;) {
        const char *z = memchr(p, '\0', (size_t)(end - p));
        size_t ulen = z ? (size_t)(z - p) : (size_t)(end - p);
        if (ulen && !rls_has(v, n, p)) {
            rc = store_kv_del(t, USAGE_RLS_URI_TABLE, p, ulen);
            if (rc != STORE_OK && rc != STORE_NOTFOUND)
                st = rls_store_fail(err, rc);
        }
        p += ulen + 1;
    }
    free(old);
    return st;
}

/* Records the document's services: rls_uri rows (owner, then the fragment) and the rls_doc row. */
static enum xcap_status rls_record(struct store_txn *t, const char *owner_key, size_t owner_len,
                                   const struct rls_svc *v, size_t n, struct xcap_err *err)
{
    struct buf row, list;
    buf_init(&row, RLS_INDEX_MAX);
    buf_init(&list, RLS_INDEX_MAX);
    enum xcap_status st = XCAP_OK;
    enum store_rc rc = STORE_OK;
    for (size_t i = 0; i < n && st == XCAP_OK; i++) {
        size_t ulen = strlen(v[i].uri);
        buf_reset(&row);
        if (buf_append(&row, owner_key, owner_len) < 0 || rls_fragment(v[i].node, &row) < 0 ||
            buf_append(&list, v[i].uri, ulen + 1) < 0) {
            st = xcap_fail(err, XCAP_INTERNAL, "out of memory");
            break;
        }
        rc = store_kv_put(t, USAGE_RLS_URI_TABLE, v[i].uri, ulen, row.data, row.len);
        if (rc != STORE_OK)
            st = rls_store_fail(err, rc);
    }
    if (st == XCAP_OK) {
        rc = n ? store_kv_put(t, USAGE_RLS_DOC_TABLE, owner_key, owner_len - 1, list.data, list.len)
               : store_kv_del(t, USAGE_RLS_DOC_TABLE, owner_key, owner_len - 1);
        if (rc != STORE_OK && rc != STORE_NOTFOUND)
            st = rls_store_fail(err, rc);
    }
    buf_release(&row);
    buf_release(&list);
    return st;
}

enum xcap_status usage_rls_interdepend(struct store_txn *t, const struct doc_key *k, xmlDocPtr doc,
                                       struct xcap_err *err)
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
    struct rls_svc *v = NULL;
    size_t n = 0;
    enum xcap_status st = XCAP_OK;
    if (root && (st = usage_rls_unique(t, owner.data, owner.len, root, err)) != XCAP_OK)
        goto done;
    if (root && rls_collect(root, &v, &n) < 0) {
        st = xcap_fail(err, XCAP_INTERNAL, "out of memory");
        goto done;
    }
    if ((st = rls_forget(t, owner.data, owner.len, v, n, err)) != XCAP_OK ||
        (st = rls_record(t, owner.data, owner.len, v, n, err)) != XCAP_OK)
        goto done;
    st = rls_rebuild_index(t, err);
done:
    free(v);
    buf_release(&owner);
    return st;
}
