/* The subscription index: from a changed document to the subscriptions that watch it, without
 * visiting the others (declared in notify_internal.h). Each watch is posted under one key,
 * by its form (RFC 5875 §4.3: a document, an element or attribute of one, a directory, "users/"
 * of an AUID); a document key k is looked up under the three keys that can concern it, and every
 * posting found is confirmed with notify_watch_matches(), so a hash collision or a directory
 * prefix that does not match costs a comparison, never a wrong NOTIFY. Chained hash table with
 * doubly linked postings: removing a subscription costs its own watches only. SIP thread only. */
#include "notify_internal.h"

#include <stdlib.h>
#include <string.h>

#include "xcap_uri.h"
#include "xdiff.h"

#define NOTIFY_INDEX_MIN_BUCKETS 1024

static uint64_t notify_index_hash(char form, const char *auid, const char *tree, const char *xui,
                                  const char *path)
{
    uint64_t h = xdiff_hash(XDIFF_HASH_INIT, &form, 1);
    h = xdiff_hash(h, auid, strlen(auid) + 1);
    if (tree)
        h = xdiff_hash(h, tree, strlen(tree) + 1);
    if (xui)
        h = xdiff_hash(h, xui, strlen(xui) + 1);
    if (path)
        h = xdiff_hash(h, path, strlen(path) + 1);
    return h;
}

/* The key a watch is posted under. */
static uint64_t notify_index_watch_hash(const struct notify_watch *w)
{
    const char *tree = w->global ? "global" : "users";
    const char *xui = w->global || !w->xui ? "" : w->xui;
    if (w->all_users)
        return notify_index_hash('A', w->auid, NULL, NULL, NULL);
    if (w->is_dir)
        return notify_index_hash('P', w->auid, tree, xui, NULL);
    return notify_index_hash('D', w->auid, tree, xui, w->path);
}

static void notify_index_link(struct notify_index *ix, struct notify_post *p)
{
    struct notify_post **head = &ix->buckets[p->hash & (ix->n_buckets - 1)];
    p->next = *head;
    if (*head)
        (*head)->pprev = &p->next;
    p->pprev = head;
    *head = p;
}

/* Doubles the table when it holds more than two postings per bucket. Returns 0 or -1. */
static int notify_index_grow(struct notify_index *ix, size_t want)
{
    if (ix->n_buckets > 0 && want <= 2 * ix->n_buckets)
        return 0;
    size_t nb = ix->n_buckets ? ix->n_buckets : NOTIFY_INDEX_MIN_BUCKETS;
    while (want > 2 * nb)
        nb *= 2;
    struct notify_post **b = calloc(nb, sizeof *b);
    if (!b)
        return ix->n_buckets > 0 ? 0 : -1; /* a fuller table is slower, not wrong */
    struct notify_post **old = ix->buckets;
    size_t old_n = ix->n_buckets;
    ix->buckets = b;
    ix->n_buckets = nb;
    for (size_t i = 0; i < old_n; i++) {
        while (old[i]) {
            struct notify_post *p = old[i];
            old[i] = p->next;
            notify_index_link(ix, p);
        }
    }
    free(old);
    return 0;
}

/* The key of the subscriptions of one subscriber: its canonical identity. */
static int notify_index_identity_hash(const char *identity, uint64_t *h)
{
    char *canon = xcap_uri_xui_canonical(identity);
    if (!canon)
        return -1;
    *h = notify_index_hash('I', canon, NULL, NULL, NULL);
    free(canon);
    return 0;
}

int notify_index_add(struct notify_index *ix, struct notify_sub *s)
{
    /* One posting per watch, and one more (watch = SIZE_MAX) under the subscriber's identity. */
    size_t count = s->watches.n + 1;
    uint64_t idh;
    if (notify_index_identity_hash(s->identity, &idh) < 0 ||
        notify_index_grow(ix, ix->n_posts + count) < 0)
        return -1;
    struct notify_post *posts = calloc(count, sizeof *posts);
    if (!posts)
        return -1;
    for (size_t i = 0; i < count; i++) {
        posts[i].sub = s;
        posts[i].watch = i < s->watches.n ? i : SIZE_MAX;
        posts[i].hash = i < s->watches.n ? notify_index_watch_hash(&s->watches.items[i]) : idh;
        notify_index_link(ix, &posts[i]);
    }
    s->posts = posts;
    s->n_posts = count;
    ix->n_posts += s->n_posts;
    return 0;
}

void notify_index_remove(struct notify_index *ix, struct notify_sub *s)
{
    for (size_t i = 0; i < s->n_posts; i++) {
        struct notify_post *p = &s->posts[i];
        *p->pprev = p->next;
        if (p->next)
            p->next->pprev = p->pprev;
    }
    ix->n_posts -= s->n_posts;
    free(s->posts);
    s->posts = NULL;
    s->n_posts = 0;
}

/* Adds the postings of one chain that match k to the hits. Returns 0 or -1 (out of memory). */
static int notify_index_visit(struct notify_index *ix, uint64_t h, const struct doc_key *k)
{
    for (struct notify_post *p = ix->buckets[h & (ix->n_buckets - 1)]; p; p = p->next) {
        if (p->hash != h || p->watch == SIZE_MAX)
            continue;
        struct notify_sub *s = p->sub;
        const struct notify_watch *w = &s->watches.items[p->watch];
        if (!notify_watch_matches(w, k))
            continue;
        if (s->hit_stamp != ix->stamp) {
            if (ix->n_hits == ix->cap_hits) {
                size_t cap = ix->cap_hits ? 2 * ix->cap_hits : 64;
                struct notify_hit *nh = realloc(ix->hits, cap * sizeof *nh);
                if (!nh)
                    return -1;
                ix->hits = nh;
                ix->cap_hits = cap;
            }
            s->hit_stamp = ix->stamp;
            s->hit_slot = ix->n_hits;
            ix->hits[ix->n_hits++] = (struct notify_hit){.sub = s};
        }
        struct notify_hit *hit = &ix->hits[s->hit_slot];
        if (w->kind == NOTIFY_WATCH_ELEMENT || w->kind == NOTIFY_WATCH_ATTRIBUTE)
            hit->node = true;
        else
            hit->doc = true;
    }
    return 0;
}

int notify_index_lookup(struct notify_index *ix, const struct doc_key *k)
{
    ix->n_hits = 0;
    ix->stamp++;
    if (ix->n_buckets == 0)
        return 0;
    bool global = strcmp(k->tree, "global") == 0;
    const char *xui = global ? "" : k->xui;
    int rc = notify_index_visit(ix, notify_index_hash('D', k->auid, k->tree, xui, k->path), k);
    if (rc == 0)
        rc = notify_index_visit(ix, notify_index_hash('P', k->auid, k->tree, xui, NULL), k);
    if (rc == 0 && !global)
        rc = notify_index_visit(ix, notify_index_hash('A', k->auid, NULL, NULL, NULL), k);
    return rc;
}

size_t notify_index_count_identity(const struct notify_index *ix, const char *identity)
{
    uint64_t h;
    if (ix->n_buckets == 0 || notify_index_identity_hash(identity, &h) < 0)
        return 0;
    size_t count = 0;
    for (const struct notify_post *p = ix->buckets[h & (ix->n_buckets - 1)]; p; p = p->next)
        if (p->hash == h && p->watch == SIZE_MAX && !p->sub->dead &&
            xcap_uri_xui_equal(p->sub->identity, identity))
            count++;
    return count;
}

void notify_index_release(struct notify_index *ix)
{
    free(ix->buckets);
    free(ix->hits);
    memset(ix, 0, sizeof *ix);
}
