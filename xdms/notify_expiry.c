/* The subscriptions in expiry order: a binary min-heap of subscriptions keyed on expires_ms
 * (declared in notify_internal.h). The notifier's expiry timer is set for the root, so finding
 * the subscriptions that expired costs a look at the root and O(log n) per expired one, never a
 * visit of the others (RFC 6665 §4.2.2 ends a subscription when its duration runs out). Each
 * subscription knows its place, so a refresh re-keys it and an end removes it in O(log n). SIP
 * thread only; calls nothing else of the notifier. */
#include "notify_internal.h"

#include <stdint.h>
#include <stdlib.h>

static bool notify_expiry_before(const struct notify_sub *a, const struct notify_sub *b)
{
    return a->expires_ms < b->expires_ms;
}

static void notify_expiry_put(struct notify_expiry *h, size_t i, struct notify_sub *s)
{
    h->v[i] = s;
    s->expiry_pos = i + 1;
}

static void notify_expiry_up(struct notify_expiry *h, size_t i)
{
    struct notify_sub *s = h->v[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!notify_expiry_before(s, h->v[parent]))
            break;
        notify_expiry_put(h, i, h->v[parent]);
        i = parent;
    }
    notify_expiry_put(h, i, s);
}

static void notify_expiry_down(struct notify_expiry *h, size_t i)
{
    struct notify_sub *s = h->v[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && notify_expiry_before(h->v[c + 1], h->v[c]))
            c++;
        if (!notify_expiry_before(h->v[c], s))
            break;
        notify_expiry_put(h, i, h->v[c]);
        i = c;
    }
    notify_expiry_put(h, i, s);
}

int notify_expiry_reserve(struct notify_expiry *h, size_t want)
{
    if (want <= h->cap)
        return 0;
    size_t cap = h->cap ? h->cap : 64;
    while (cap < want)
        cap *= 2;
    struct notify_sub **v = realloc(h->v, cap * sizeof *v);
    if (!v)
        return -1;
    h->v = v;
    h->cap = cap;
    return 0;
}

int notify_expiry_add(struct notify_expiry *h, struct notify_sub *s)
{
    if (s->expiry_pos != 0) {
        notify_expiry_update(h, s);
        return 0;
    }
    if (notify_expiry_reserve(h, h->n + 1) < 0)
        return -1;
    notify_expiry_put(h, h->n++, s);
    notify_expiry_up(h, h->n - 1);
    return 0;
}

void notify_expiry_update(struct notify_expiry *h, struct notify_sub *s)
{
    if (s->expiry_pos == 0)
        return;
    notify_expiry_up(h, s->expiry_pos - 1);
    notify_expiry_down(h, s->expiry_pos - 1);
}

void notify_expiry_remove(struct notify_expiry *h, struct notify_sub *s)
{
    if (s->expiry_pos == 0)
        return;
    size_t i = s->expiry_pos - 1;
    s->expiry_pos = 0;
    struct notify_sub *last = h->v[--h->n];
    if (i == h->n)
        return;
    notify_expiry_put(h, i, last);
    notify_expiry_up(h, i);
    notify_expiry_down(h, last->expiry_pos - 1);
}

struct notify_sub *notify_expiry_first(const struct notify_expiry *h)
{
    return h->n > 0 ? h->v[0] : NULL;
}

void notify_expiry_release(struct notify_expiry *h)
{
    for (size_t i = 0; i < h->n; i++)
        h->v[i]->expiry_pos = 0;
    free(h->v);
    h->v = NULL;
    h->n = h->cap = 0;
}
