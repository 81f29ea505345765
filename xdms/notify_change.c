/* The change log as the subscriptions see it: each committed change is queued, shared and
 * reference-counted, on every subscription that watches its document, in commit order. For the
 * patching modes (RFC 5874 §4; RFC 5261 §5) it also gets its RFC 5261 operation: the engine's
 * detail for element and attribute edits; for a whole-document PUT, a replace of the document
 * element when the notifier knows that the version the client has had the same prolog (comments and
 * processing instructions outside the root, which such a replace cannot reach), and ETags only
 * otherwise. Those prolog digests are kept here ("known prologs"). SIP thread only. */
#include "notify_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "log.h"
#include "store.h"
#include "xcap_uri.h"
#include "xdiff.h"

#define NOTIFY_MAX_CHANGES_PER_POLL 4096
#define NOTIFY_KNOWN_MAX 65536 /* documents whose prolog digest is remembered */

/* What the notifier knows about a version of a document: the digest of its prolog and epilog.
 * A whole-document write can then be sent as a replace of the document element when the
 * version the client has had the same prolog (xdiff_op_root()). ETags are never reused, so a
 * stale entry can never match. */
struct notify_known {
    struct notify_known *next;
    char *key; /* auid \0 tree \0 xui \0 path */
    size_t key_len;
    char etag[STORE_ETAG_MAX];
    uint64_t digest;
};

void notify_change_ref(struct notify_change *c)
{
    if (c)
        c->refs++;
}

void notify_change_unref(struct notify_change *c)
{
    if (c && --c->refs == 0) {
        free(c->sel);
        xdiff_op_release(&c->op);
        for (size_t m = 0; m < sizeof c->body / sizeof c->body[0]; m++)
            free(c->body[m]);
        free(c);
    }
}

void notify_change_pending_clear(struct notify_sub *s)
{
    for (size_t i = 0; i < s->n_pending; i++)
        notify_change_unref(s->pending[i]);
    s->n_pending = 0;
}

/* ---- known prologs ---- */

size_t notify_change_key_bytes(const struct doc_key *k, char *out, size_t max)
{
    const char *parts[] = {k->auid, k->tree, k->xui, k->path};
    size_t len = 0;
    for (size_t i = 0; i < 4; i++) {
        size_t pl = strlen(parts[i]) + 1;
        if (len + pl > max)
            return 0;
        memcpy(out + len, parts[i], pl);
        len += pl;
    }
    return len;
}

static struct notify_known **notify_known_slot(struct notifier *n, const char *key, size_t len)
{
    uint64_t h = xdiff_hash(XDIFF_HASH_INIT, key, len);
    struct notify_known **pp = &n->known[h % NOTIFY_KNOWN_BUCKETS];
    while (*pp && ((*pp)->key_len != len || memcmp((*pp)->key, key, len) != 0))
        pp = &(*pp)->next;
    return pp;
}

void notify_change_known_clear(struct notifier *n)
{
    for (size_t i = 0; i < NOTIFY_KNOWN_BUCKETS; i++) {
        while (n->known[i]) {
            struct notify_known *k = n->known[i];
            n->known[i] = k->next;
            free(k->key);
            free(k);
        }
    }
    n->n_known = 0;
}

static void notify_known_forget(struct notifier *n, const struct doc_key *k)
{
    char key[NOTIFY_KEY_MAX];
    size_t len = notify_change_key_bytes(k, key, sizeof key);
    if (len == 0)
        return;
    struct notify_known **pp = notify_known_slot(n, key, len);
    if (*pp) {
        struct notify_known *e = *pp;
        *pp = e->next;
        free(e->key);
        free(e);
        n->n_known--;
    }
}

static void notify_known_set(struct notifier *n, const struct doc_key *k, const char *etag,
                             uint64_t digest)
{
    char key[NOTIFY_KEY_MAX];
    size_t len = notify_change_key_bytes(k, key, sizeof key);
    if (len == 0)
        return;
    struct notify_known **pp = notify_known_slot(n, key, len);
    if (!*pp) {
        if (n->n_known >= NOTIFY_KNOWN_MAX) {
            notify_change_known_clear(n); /* a bound, not a cache policy: it only costs fetches */
            pp = notify_known_slot(n, key, len);
        }
        struct notify_known *e = calloc(1, sizeof *e);
        if (!e || !(e->key = malloc(len))) {
            free(e);
            return;
        }
        memcpy(e->key, key, len);
        e->key_len = len;
        *pp = e;
        n->n_known++;
    }
    snprintf((*pp)->etag, sizeof(*pp)->etag, "%s", etag);
    (*pp)->digest = digest;
}

/* The digest of version etag of k, when known. */
static bool notify_known_get(struct notifier *n, const struct doc_key *k, const char *etag,
                             uint64_t *digest)
{
    char key[NOTIFY_KEY_MAX];
    size_t len = notify_change_key_bytes(k, key, sizeof key);
    if (len == 0)
        return false;
    struct notify_known *e = *notify_known_slot(n, key, len);
    if (!e || strcmp(e->etag, etag) != 0)
        return false;
    *digest = e->digest;
    return true;
}

/* Reads the prolog digests of documents just reported in a full state, so that a whole-document
 * write that follows can be sent as a patch. */
void notify_change_learn(struct notifier *n, struct store_txn *t, char **keys, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        const char *p = keys[i];
        struct doc_key k;
        k.auid = p;
        k.tree = p += strlen(p) + 1;
        k.xui = p += strlen(p) + 1;
        k.path = p + strlen(p) + 1;
        struct store_doc d;
        uint64_t digest;
        if (store_doc_get(t, &k, &d) == STORE_OK) {
            if (xdiff_prolog_digest(d.data, d.len, &digest) == 0)
                notify_known_set(n, &k, d.etag, digest);
            store_doc_release(&d);
        }
        free(keys[i]);
    }
}

void notify_change_due(struct notifier *n, struct notify_sub *s)
{
    if (s->due)
        return;
    if (n->n_due == n->cap_due) {
        size_t cap = n->cap_due ? 2 * n->cap_due : 64;
        struct notify_sub **nd = realloc(n->due, cap * sizeof *nd);
        if (!nd) {
            n->sweep = true; /* the flush visits everyone instead */
            return;
        }
        n->due = nd;
        n->cap_due = cap;
    }
    n->due[n->n_due++] = s;
    s->due = true;
}

struct notify_change_ctx {
    struct notifier *n;
    struct store_txn *t;
    size_t count;
    bool more;
};

/* Builds the operation of a change for the patching modes (RFC 5874 §4; RFC 5261 §5): from the
 * engine's detail for element and attribute edits; for a whole-document write, a replace of the
 * document element when the notifier knows that the prolog did not change. Keeps the known prologs.
 */
static void notify_change_ops(struct notifier *n, struct store_txn *t, const struct store_change *c,
                              struct notify_change *ch)
{
    if (c->kind == STORE_CHANGE_DELETE) {
        notify_known_forget(n, &c->key);
        return;
    }
    uint64_t digest;
    if (c->detail_len > 0) {
        ch->has_op =
            c->prev_etag[0] && xdiff_op_from_detail(c->detail, c->detail_len, &ch->op) == 0;
        /* Element and attribute edits splice inside the document element. */
        if (c->prev_etag[0] && notify_known_get(n, &c->key, c->prev_etag, &digest))
            notify_known_set(n, &c->key, c->new_etag, digest);
        else
            notify_known_forget(n, &c->key);
        return;
    }
    struct store_doc d;
    if (store_doc_get(t, &c->key, &d) != STORE_OK) {
        notify_known_forget(n, &c->key);
        return;
    }
    uint64_t before;
    if (strcmp(d.etag, c->new_etag) == 0 && xdiff_prolog_digest(d.data, d.len, &digest) == 0) {
        if (c->prev_etag[0] && notify_known_get(n, &c->key, c->prev_etag, &before) &&
            before == digest)
            ch->has_op = xdiff_op_root(d.data, d.len, &ch->op) == 0;
        notify_known_set(n, &c->key, c->new_etag, digest);
    } else {
        notify_known_forget(n, &c->key); /* a later version is stored already */
    }
    store_doc_release(&d);
}

/* Queues one committed change on every subscription that watches its document, and marks the
 * element and attribute watches of that document for a check. */
static int notify_on_change(void *cls, const struct store_change *c)
{
    struct notify_change_ctx *ctx = cls;
    struct notifier *n = ctx->n;
    if (ctx->count >= NOTIFY_MAX_CHANGES_PER_POLL) {
        ctx->more = true;
        return 1;
    }
    ctx->count++;
    if (n->cursor != 0 && c->seq != n->cursor + 1) {
        /* Records were pruned before we read them: the ETag chains of the subscriptions that
         * needed them are broken, so those get the full state instead. (A subscription taken
         * over from another instance may be ahead of the cursor, which went back for it.) */
        log_warn("notifier: change log skipped from %llu to %llu; sending full state",
                 (unsigned long long)n->cursor, (unsigned long long)c->seq);
        for (struct notify_sub *s = n->subs; s; s = s->next) {
            uint64_t done = s->seq > n->cursor ? s->seq : n->cursor;
            if (done + 1 >= c->seq)
                continue;
            notify_change_pending_clear(s);
            s->full_pending = true;
        }
        n->sweep = true;
    }
    n->cursor = c->seq;
    struct notify_change *ch = NULL;
    bool ops_done = false;
    if (notify_index_lookup(&n->index, &c->key) < 0) {
        /* Out of memory: the subscriptions the lookup did not reach cannot be told which
         * changed, so every one gets the full state (RFC 5875 §4.6). */
        log_warn("notifier: cannot look change %llu up; sending full state",
                 (unsigned long long)c->seq);
        for (struct notify_sub *s = n->subs; s; s = s->next) {
            notify_change_pending_clear(s);
            s->full_pending = true;
        }
        n->sweep = true;
        return 0;
    }
    for (size_t h = 0; h < n->index.n_hits; h++) {
        struct notify_sub *s = n->index.hits[h].sub;
        if (s->dead || s->final_sent || s->full_pending || c->seq <= s->seq)
            continue;
        bool doc_hit = n->index.hits[h].doc;
        s->nodes_due |= n->index.hits[h].node;
        notify_change_due(n, s);
        if (!doc_hit)
            continue;
        if (!ch) {
            struct buf b;
            buf_init(&b, NOTIFY_SEL_MAX);
            ch = calloc(1, sizeof *ch);
            if (!ch || notify_watch_sel_append(&b, &c->key) < 0 ||
                !(ch->sel = buf_detach(&b, NULL))) {
                buf_release(&b);
                free(ch);
                ch = NULL;
                log_warn("notifier: cannot queue change %llu", (unsigned long long)c->seq);
                s->full_pending = true;
                continue;
            }
            ch->refs = 1;
            ch->seq = c->seq;
            /* RFC 5874 §4: created = new-etag only, deleted = previous-etag only. */
            snprintf(ch->prev, sizeof ch->prev, "%s", c->prev_etag ? c->prev_etag : "");
            snprintf(ch->next, sizeof ch->next, "%s",
                     c->kind == STORE_CHANGE_DELETE || !c->new_etag ? "" : c->new_etag);
        }
        if (s->mode != NOTIFY_NO_PATCHING && !ops_done) {
            notify_change_ops(n, ctx->t, c, ch);
            ops_done = true;
        }
        if (s->n_pending >= NOTIFY_MAX_PENDING) {
            notify_change_pending_clear(s);
            s->full_pending = true;
            continue;
        }
        if (s->n_pending == s->cap_pending) {
            size_t cap = s->cap_pending ? 2 * s->cap_pending : 4;
            struct notify_change **np = realloc(s->pending, cap * sizeof *np);
            if (!np) {
                notify_change_pending_clear(s);
                s->full_pending = true;
                continue;
            }
            s->pending = np;
            s->cap_pending = cap;
        }
        s->pending[s->n_pending++] = ch;
        ch->refs++;
    }
    notify_change_unref(ch);
    return 0;
}

enum store_rc notify_change_read(struct notifier *n, struct store_txn *t, bool *more)
{
    struct notify_change_ctx ctx = {.n = n, .t = t};
    enum store_rc rc = store_change_read(t, n->cursor, notify_on_change, &ctx);
    *more = ctx.more;
    return rc;
}
