/* xcap-diff NOTIFY bodies (RFC 5874 §4, RFC 5875 §4.6). The initial NOTIFY (and one
 * after a refresh that changes the watched set) carries the full state: every watched document
 * with its ETag, every watched element or attribute with its content or exists="0". Later ones
 * report the change-log records in commit order: with no-patching one <document> per document
 * with the oldest previous and the newest ETag; with xcap-patching one <document> per change, the
 * ETags forming a chain, each with its RFC 5261 operations (xdiff.c) when they can be rendered
 * exactly; with aggregate one <document> per document whose operations are the simplified
 * concatenation of the changes', or <body-not-changed/> when they cancel out. A <document>
 * without operations tells the client to fetch it (RFC 5874 §4). Element and attribute watches
 * report their current content whenever it changed. The document builders are pure; the
 * subscription renderers run in the SIP thread. */
#include "notify_internal.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "log.h"
#include "store.h"
#include "xcap_uri.h"
#include "xdiff.h"

#define NOTIFY_LEARN_MAX 64 /* documents read for their prolog per full-state NOTIFY */

int notify_diff_open(struct buf *b, const char *xcap_root)
{
    if (buf_puts(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                    "<xcap-diff xmlns=\"urn:ietf:params:xml:ns:xcap-diff\" xcap-root=\"") < 0 ||
        buf_xml_escape(b, xcap_root, strlen(xcap_root)) < 0 || buf_puts(b, "\">\n") < 0)
        return -1;
    return 0;
}

static int notify_diff_document_start(struct buf *b, const char *sel, const char *prev_etag,
                                      const char *new_etag)
{
    if (buf_puts(b, "  <document sel=\"") < 0 || buf_xml_escape(b, sel, strlen(sel)) < 0 ||
        buf_puts(b, "\"") < 0)
        return -1;
    if (prev_etag && *prev_etag) {
        if (buf_puts(b, " previous-etag=\"") < 0 ||
            buf_xml_escape(b, prev_etag, strlen(prev_etag)) < 0 || buf_puts(b, "\"") < 0)
            return -1;
    }
    if (new_etag && *new_etag) {
        if (buf_puts(b, " new-etag=\"") < 0 || buf_xml_escape(b, new_etag, strlen(new_etag)) < 0 ||
            buf_puts(b, "\"") < 0)
            return -1;
    }
    return 0;
}

int notify_diff_document(struct buf *b, const char *sel, const char *prev_etag,
                         const char *new_etag)
{
    if (notify_diff_document_start(b, sel, prev_etag, new_etag) < 0)
        return -1;
    return buf_puts(b, "/>\n") < 0 ? -1 : 0;
}

int notify_diff_document_open(struct buf *b, const char *sel, const char *prev_etag,
                              const char *new_etag)
{
    if (notify_diff_document_start(b, sel, prev_etag, new_etag) < 0)
        return -1;
    return buf_puts(b, ">\n") < 0 ? -1 : 0;
}

int notify_diff_document_close(struct buf *b)
{
    return buf_puts(b, "  </document>\n") < 0 ? -1 : 0;
}

int notify_diff_close(struct buf *b)
{
    return buf_puts(b, "</xcap-diff>\n") < 0 ? -1 : 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Subscriptions (SIP thread)                                                                  */

static void notify_doc_key(const struct notify_watch *w, struct doc_key *k)
{
    k->auid = w->auid;
    k->tree = w->global ? "global" : "users";
    k->xui = w->global ? "" : w->xui;
    k->path = w->path;
}

struct notify_full_ctx {
    const struct notify_sub *s;
    size_t index; /* the watch being expanded */
    struct buf *b;
    int rc;
    char **learn; /* documents whose prolog to read (patching modes) */
    size_t n_learn;
};

/* True when an earlier document watch of s already reported k (overlapping directory and
 * document watches must not list a document twice). */
static bool notify_diff_seen_earlier(const struct notify_sub *s, size_t index,
                                     const struct doc_key *k)
{
    for (size_t i = 0; i < index; i++) {
        const struct notify_watch *w = &s->watches.items[i];
        if ((w->kind == NOTIFY_WATCH_DOCUMENT || w->kind == NOTIFY_WATCH_DIRECTORY) &&
            notify_watch_matches(w, k))
            return true;
    }
    return false;
}

static int notify_full_doc(void *cls, const struct store_doc_view *d)
{
    struct notify_full_ctx *c = cls;
    if (!notify_watch_matches(&c->s->watches.items[c->index], &d->key))
        return 0;
    if (notify_diff_seen_earlier(c->s, c->index, &d->key))
        return 0;
    struct buf sel;
    buf_init(&sel, NOTIFY_SEL_MAX);
    int rc = notify_watch_sel_append(&sel, &d->key);
    if (rc == 0)
        rc = notify_diff_document(c->b, sel.data, NULL, d->etag);
    buf_release(&sel);
    if (rc < 0) {
        c->rc = -1;
        return 1;
    }
    if (c->learn && c->n_learn < NOTIFY_LEARN_MAX) {
        char key[NOTIFY_KEY_MAX];
        size_t len = notify_change_key_bytes(&d->key, key, sizeof key);
        char *copy = len ? malloc(len) : NULL;
        if (copy) {
            memcpy(copy, key, len);
            c->learn[c->n_learn++] = copy;
        }
    }
    return 0;
}

/* Element and attribute reports (RFC 5874 §4; RFC 5875 §4.6): all of them, or only those whose
 * content changed since the last report. Counts what was written in *items. Returns 0 or -1. */
int notify_diff_nodes(struct notify_sub *s, struct store_txn *t, struct buf *b, bool all,
                      size_t *items)
{
    struct buf one;
    buf_init(&one, NOTIFY_MAX_NOTIFY_BODY);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < s->watches.n; i++) {
        struct notify_watch *w = &s->watches.items[i];
        if (w->kind != NOTIFY_WATCH_ELEMENT && w->kind != NOTIFY_WATCH_ATTRIBUTE)
            continue;
        struct doc_key k;
        notify_doc_key(w, &k);
        struct store_doc d = {0};
        bool have = store_doc_get(t, &k, &d) == STORE_OK;
        uint64_t h;
        buf_reset(&one);
        rc = xdiff_node_report(&one, w->sel_text, w->decls, have ? d.data : NULL, have ? d.len : 0,
                               w->sel, &h);
        if (have)
            store_doc_release(&d);
        if (rc == 0 && (all || h != w->last_hash)) {
            rc = buf_append(b, one.data, one.len);
            w->last_hash = h;
            notify_subs_mark(s);
            (*items)++;
        }
    }
    buf_release(&one);
    return rc;
}

/* Full state for the initial NOTIFY and refreshes (RFC 5875 §4.6): every existing watched document,
 * directories expanded, missing documents omitted; every element and attribute watch. Returns 0
 * or -1. */
int notify_diff_full(struct notify_sub *s, struct store_txn *t, struct buf *b)
{
    char *learn[NOTIFY_LEARN_MAX];
    size_t n_learn = 0;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < s->watches.n; i++) {
        const struct notify_watch *w = &s->watches.items[i];
        /* A whole users tree is not listed: its state would outgrow any NOTIFY, and the
         * trusted servers that watch one read the documents they need; they get every change. */
        if ((w->kind != NOTIFY_WATCH_DOCUMENT && w->kind != NOTIFY_WATCH_DIRECTORY) || w->all_users)
            continue;
        /* A prefix listing; notify_watch_matches() then keeps the exact document of a
         * document watch and drops hidden ones. */
        struct notify_full_ctx c = {.s = s, .index = i, .b = b, .rc = 0};
        if (s->mode != NOTIFY_NO_PATCHING) {
            c.learn = learn;
            c.n_learn = n_learn;
        }
        enum store_rc src = store_doc_list(t, w->auid, w->global ? "global" : "users",
                                           w->global ? "" : w->xui, w->path, notify_full_doc, &c);
        if (c.learn)
            n_learn = c.n_learn;
        if (src != STORE_OK) {
            log_warn("notifier: listing %s for a NOTIFY failed: %s", w->auid, store_strerror(src));
            rc = -1;
        } else if (c.rc < 0) {
            rc = -1;
        }
    }
    notify_change_learn(s->n, t, learn, n_learn);
    size_t items = 0;
    if (rc == 0)
        rc = notify_diff_nodes(s, t, b, true, &items);
    return rc;
}

/* One <document> with the operations of changes [from, to) of s (all of one document), or
 * <body-not-changed/> when they cancel out; an empty <document> when they cannot all be
 * rendered exactly. */
static int notify_diff_render_ops(struct notify_sub *s, size_t from, size_t to, const char *prev,
                                  const char *next, bool simplify, struct buf *b)
{
    struct notify_change **p = s->pending;
    bool exact = prev[0] && next[0];
    for (size_t i = from; exact && i < to; i++)
        exact = p[i]->has_op;
    if (!exact)
        return notify_diff_document(b, p[from]->sel, prev, next);
    size_t n = to - from;
    struct xdiff_op *ops = calloc(n, sizeof *ops);
    if (!ops)
        return notify_diff_document(b, p[from]->sel, prev, next);
    size_t made = 0;
    for (size_t i = from; i < to; i++) {
        if (xdiff_op_copy(&p[i]->op, &ops[made]) < 0)
            break;
        made++;
    }
    int rc;
    if (made < n) {
        rc = notify_diff_document(b, p[from]->sel, prev, next);
    } else {
        if (simplify)
            xdiff_ops_simplify(ops, &made);
        rc = notify_diff_document_open(b, p[from]->sel, prev, next);
        if (rc == 0 && made == 0)
            rc = buf_puts(b, "    <body-not-changed/>\n");
        for (size_t i = 0; rc == 0 && i < made; i++)
            rc = xdiff_op_render(b, &ops[i]);
        if (rc == 0)
            rc = notify_diff_document_close(b);
    }
    for (size_t i = 0; i < made; i++)
        xdiff_op_release(&ops[i]);
    free(ops);
    return rc;
}

/* The queued changes of s by mode (RFC 5875 §4.6). Counts <document>s written in *items. */
int notify_diff_pending(struct notify_sub *s, struct buf *b, size_t *items)
{
    struct notify_change **p = s->pending;
    size_t n = s->n_pending;
    if (s->mode == NOTIFY_XCAP_PATCHING) {
        /* Every change, in commit order: the ETags form a chain without gaps. */
        for (size_t i = 0; i < n; i++) {
            if (notify_diff_render_ops(s, i, i + 1, p[i]->prev, p[i]->next, false, b) < 0)
                return -1;
            (*items)++;
        }
        return 0;
    }
    /* no-patching and aggregate: one <document> per document, from its oldest previous ETag to
     * its newest; grouping keeps each document's changes in order. */
    bool *done = calloc(n ? n : 1, sizeof *done);
    size_t *group = calloc(n ? n : 1, sizeof *group);
    struct notify_change **sorted = calloc(n ? n : 1, sizeof *sorted);
    int rc = done && group && sorted ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (done[i])
            continue;
        size_t g = 0;
        for (size_t j = i; j < n; j++) {
            if (!done[j] && strcmp(p[j]->sel, p[i]->sel) == 0) {
                done[j] = true;
                group[g++] = j;
            }
        }
        const char *prev = p[group[0]]->prev, *next = p[group[g - 1]]->next;
        if (!prev[0] && !next[0])
            continue; /* created and deleted again: nothing the client ever saw */
        if (s->mode == NOTIFY_NO_PATCHING) {
            rc = notify_diff_document(b, p[i]->sel, prev, next);
        } else {
            /* notify_diff_render_ops() reads a contiguous range: present the group as one. */
            struct notify_change **saved = s->pending;
            for (size_t k = 0; k < g; k++)
                sorted[k] = p[group[k]];
            s->pending = sorted;
            rc = notify_diff_render_ops(s, 0, g, prev, next, true, b);
            s->pending = saved;
        }
        (*items)++;
    }
    free(done);
    free(group);
    free(sorted);
    return rc;
}
