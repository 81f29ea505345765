#include "directory.h"

#include "xcap_uri.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

struct directory_walk {
    struct buf *out;
    const char *root;
    const char *xui;
    uint64_t hash;
    int rc;
};

/* FNV-1a over the listing, folded into the directory's ETag. */
static void directory_hash(uint64_t *h, const char *s)
{
    for (; *s; s++)
        *h = (*h ^ (unsigned char)*s) * 1099511628211ull;
    *h = (*h ^ 0xFF) * 1099511628211ull;
}

static int directory_entry(void *cls, const struct store_doc_view *d)
{
    struct directory_walk *w = cls;
    struct buf uri;
    buf_init(&uri, 1 << 16);
    int rc = buf_puts(&uri, w->root) | xcap_uri_encode_segment(&uri, d->key.auid) |
             buf_puts(&uri, "/users/") | xcap_uri_encode_segment(&uri, w->xui);
    /* the document path may have sub-directories: encode each segment */
    const char *p = d->key.path;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        char seg[1025];
        if (n >= sizeof seg) {
            rc = -1;
            break;
        }
        memcpy(seg, p, n);
        seg[n] = '\0';
        rc |= buf_puts(&uri, "/") | xcap_uri_encode_segment(&uri, seg);
        p += n + (slash ? 1 : 0);
    }
    struct tm tm;
    time_t t = (time_t)d->mtime;
    char when[32];
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    rc |= buf_puts(w->out, "<entry uri=\"");
    rc |= buf_xml_escape(w->out, uri.data ? uri.data : "", uri.len);
    rc |= buf_puts(w->out, "\" etag=\"");
    rc |= buf_xml_escape(w->out, d->etag, strlen(d->etag));
    rc |= buf_printf(w->out, "\" last-modified=\"%s\" size=\"%zu\"/>", when, d->len);
    if (uri.data)
        directory_hash(&w->hash, uri.data);
    directory_hash(&w->hash, d->etag);
    buf_release(&uri);
    w->rc |= rc;
    return rc ? 1 : 0;
}

int directory_render(struct store *store, enum xdms_role role, const char *xcap_root,
                     const char *xui, struct buf *out, char etag_out[STORE_ETAG_MAX])
{
    struct store_txn *t;
    if (store_txn_begin(store, false, &t) != STORE_OK)
        return -1;
    struct directory_walk w = {
        .out = out, .root = xcap_root, .xui = xui, .hash = 14695981039346656037ull};
    int rc = buf_puts(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                           "<xcap-directory xmlns=\"" XDM_DIRECTORY_NS "\">");
    const struct appusage *const *rows;
    size_t n = appusage_list(role, &rows);
    for (size_t i = 0; i < n && rc == 0 && w.rc == 0; i++) {
        rc |= buf_printf(out, "<folder auid=\"%s\">", rows[i]->auid);
        directory_hash(&w.hash, rows[i]->auid);
        if (store_doc_list(t, rows[i]->auid, "users", xui, "", directory_entry, &w) != STORE_OK)
            rc = -1;
        rc |= buf_puts(out, "</folder>");
    }
    rc |= buf_puts(out, "</xcap-directory>\n");
    store_txn_abort(t);
    snprintf(etag_out, STORE_ETAG_MAX, "dir-%016llx", (unsigned long long)w.hash);
    return rc || w.rc ? -1 : 0;
}
