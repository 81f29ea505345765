/* RFC 4826 list constraints that a schema cannot express (§3.4.5, §4.4.5): uniqueness among
 * siblings and the shape of references; plus the node selectors that name an offending value in
 * a uniqueness-failure report (RFC 4825 §11). */
#include "au_lists.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "nodesel.h"
#include "xcap_uri.h"
#include "xdoc.h"

/* ---- field selectors ---- */

/* The name test of a step for el: "*" when el's namespace has no prefix to write it with. */
static bool au_lists_star(xmlNodePtr el, const char *default_ns)
{
    if (el->ns && el->ns->href && strcmp((const char *)el->ns->href, default_ns) == 0)
        return false;
    return !(el->ns && el->ns->prefix);
}

static bool au_lists_same_name(xmlNodePtr a, xmlNodePtr b, bool star)
{
    if (star)
        return true;
    if (strcmp((const char *)a->name, (const char *)b->name) != 0)
        return false;
    if (!a->ns || !b->ns)
        return !a->ns && !b->ns;
    return strcmp((const char *)a->ns->href, (const char *)b->ns->href) == 0;
}

/* The attribute that identifies an element among its siblings in a readable selector. */
static const char *au_lists_key_attr(xmlNodePtr el)
{
    if (xdoc_is(el, AU_LISTS_NS_RL, "list"))
        return "name";
    if (xdoc_is(el, AU_LISTS_NS_RLS, "service"))
        return "uri";
    return NULL;
}

int au_lists_field(xmlNodePtr el, const char *attr, const char *default_ns, bool by_key,
                   struct buf *out)
{
    xmlNodePtr chain[XDOC_MAX_DEPTH + 1];
    size_t depth = 0;
    for (xmlNodePtr n = el; n && n->type == XML_ELEMENT_NODE; n = n->parent) {
        if (depth == sizeof chain / sizeof chain[0])
            return -1;
        chain[depth++] = n;
    }
    int rc = 0;
    for (size_t i = depth; i-- > 0 && rc == 0;) {
        xmlNodePtr n = chain[i];
        bool star = au_lists_star(n, default_ns);
        if (i + 1 != depth)
            rc |= buf_puts(out, "/");
        if (star) {
            rc |= buf_puts(out, "*");
        } else {
            if (n->ns && n->ns->href && strcmp((const char *)n->ns->href, default_ns) != 0) {
                rc |= xcap_uri_encode(out, (const char *)n->ns->prefix,
                                      strlen((const char *)n->ns->prefix), false);
                rc |= buf_puts(out, ":");
            }
            rc |= xcap_uri_encode(out, (const char *)n->name, strlen((const char *)n->name), true);
        }
        if (i + 1 == depth) /* the document element: exactly one */
            continue;
        /* Position among the siblings the name test matches, and how many share the key. */
        size_t pos = 0, same = 0, same_key = 0;
        const char *key = i == 0 && !by_key ? NULL : au_lists_key_attr(n);
        const char *kv = key ? xdoc_attr(n, key) : NULL;
        for (xmlNodePtr s = xdoc_first_child(n->parent); s; s = xdoc_next(s)) {
            if (!au_lists_same_name(s, n, star))
                continue;
            same++;
            if (s == n)
                pos = same;
            if (kv) {
                const char *sv = xdoc_attr(s, key);
                if (sv && strcmp(sv, kv) == 0)
                    same_key++;
            }
        }
        if (kv && same_key == 1 && !strchr(kv, '"')) {
            rc |= buf_printf(out, "%%5B@%s=%%22", key);
            rc |= xcap_uri_encode(out, kv, strlen(kv), false);
            rc |= buf_puts(out, "%22%5D");
        } else if (i == 0 || same > 1) {
            rc |= buf_printf(out, "%%5B%zu%%5D", pos);
        }
    }
    rc |= buf_puts(out, "/@");
    rc |= xcap_uri_encode(out, attr, strlen(attr), true);
    return rc ? -1 : 0;
}

/* ---- alternative values ---- */

static bool au_lists_suggested(const struct xcap_exists *ex, const char *v)
{
    for (size_t i = 0; i < ex->n_alt; i++)
        if (strcmp(ex->alt_values[i], v) == 0)
            return true;
    return false;
}

int au_lists_suggest(const char *value, bool uri, size_t max_len,
                     int (*is_taken)(void *cls, const char *candidate), void *cls,
                     struct xcap_exists *ex)
{
    /* A URI keeps its scheme and host: the user part gets the suffix. */
    const char *at = uri ? strchr(value, '@') : NULL;
    size_t head = at ? (size_t)(at - value) : strlen(value);
    const char *tail = value + head;
    /* "friends-2" suggests "friends-3", not "friends-2-1". */
    size_t k = head;
    while (k > 0 && isdigit((unsigned char)value[k - 1]))
        k--;
    if (k < head && k > 1 && value[k - 1] == '-')
        head = k - 1;
    size_t cap = head + strlen(tail) + 16;
    char *cand = malloc(cap);
    if (!cand)
        return -1;
    int rc = 0;
    for (unsigned i = 1; i <= 64 && ex->n_alt < AU_LISTS_MAX_ALTS; i++) {
        snprintf(cand, cap, "%.*s-%u%s", (int)head, value, i, tail);
        if (strcmp(cand, value) == 0 || au_lists_suggested(ex, cand))
            continue;
        if (max_len && strlen(cand) > max_len)
            break;
        int taken = is_taken(cls, cand);
        if (taken < 0 || (!taken && xcap_exists_add_alt(ex, cand) < 0)) {
            rc = -1;
            break;
        }
    }
    free(cand);
    return rc;
}

/* ---- references ---- */

static bool au_lists_scheme_is(const char *s, size_t n, const char *want)
{
    return n == strlen(want) && strncasecmp(s, want, n) == 0;
}

/* A reference split for xcap_uri_parse(): root path, path (with a leading '/', still
 * percent-encoded, without query and fragment) and query. */
struct au_lists_ref {
    char *root;
    char *path;
    char *query;
};

static void au_lists_ref_release(struct au_lists_ref *r)
{
    free(r->root);
    free(r->path);
    free(r->query);
}

/* The host and port of an authority ("user@Host.Example:8080", "[::1]:80"), normalised for
 * comparison (RFC 3986 §6.2.2.1, §6.2.3): user information dropped, host in lower case without
 * a trailing dot, an empty or missing port replaced by the scheme's default. Returns false when
 * there is no host. */
static bool au_lists_authority(const char *a, size_t len, bool https, char *host, size_t host_len,
                               unsigned *port)
{
    const char *at = NULL;
    for (size_t i = 0; i < len; i++)
        if (a[i] == '@')
            at = a + i;
    if (at) {
        len -= (size_t)(at + 1 - a);
        a = at + 1;
    }
    size_t hl = len;
    if (len && a[0] == '[') {
        const char *rb = memchr(a, ']', len);
        hl = rb ? (size_t)(rb - a) + 1 : len;
    } else {
        const char *colon = memchr(a, ':', len);
        hl = colon ? (size_t)(colon - a) : len;
    }
    *port = https ? 443 : 80;
    if (hl < len && a[hl] == ':' && hl + 1 < len) {
        unsigned long v = 0;
        for (size_t i = hl + 1; i < len; i++) {
            if (a[i] < '0' || a[i] > '9' || v > 65535)
                return false;
            v = v * 10 + (unsigned long)(a[i] - '0');
        }
        *port = (unsigned)v;
    }
    while (hl && a[hl - 1] == '.')
        hl--;
    if (hl == 0 || hl >= host_len)
        return false;
    for (size_t i = 0; i < hl; i++)
        host[i] = (char)tolower((unsigned char)a[i]);
    host[hl] = '\0';
    return true;
}

/* Whether the path p[0..len) lies under the root path root (percent-escapes in p decoded, RFC
 * 3986 §6.2.2.2, so "/%78cap-root" is "/xcap-root"); *used receives the bytes of p the root
 * takes. The root ends where p ends or at a '/' of p; each such prefix is decoded with the shared
 * decoder until one equals the root (an escape takes three bytes for one, so no prefix longer than
 * three times the root can). */
static bool au_lists_under_root(const char *root, const char *p, size_t len, size_t *used)
{
    size_t rl = strlen(root);
    char dec[sizeof((struct au_lists_refs *)0)->path];
    if (rl >= sizeof dec)
        return false;
    for (size_t e = 0; e <= len && e <= 3 * rl; e++) {
        if (e < len && p[e] != '/')
            continue;
        if (xcap_uri_pct_decode(p, e, dec, sizeof dec) == 0 && strcmp(dec, root) == 0) {
            *used = e;
            return true;
        }
    }
    return false;
}

int au_lists_refs_init(struct au_lists_refs *r, const char *xcap_root, bool allow_foreign)
{
    memset(r, 0, sizeof *r);
    r->allow_foreign = allow_foreign;
    size_t scheme = strspn(xcap_root, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ");
    if (!au_lists_scheme_is(xcap_root, scheme, "http") &&
        !au_lists_scheme_is(xcap_root, scheme, "https"))
        return -1;
    if (strncmp(xcap_root + scheme, "://", 3) != 0)
        return -1;
    r->https = scheme == 5;
    const char *auth = xcap_root + scheme + 3;
    size_t alen = strcspn(auth, "/?#");
    if (!au_lists_authority(auth, alen, r->https, r->host, sizeof r->host, &r->port))
        return -1;
    const char *path = auth + alen;
    size_t plen = strcspn(path, "?#");
    while (plen && path[plen - 1] == '/')
        plen--;
    if (plen >= sizeof r->path)
        return -1;
    memcpy(r->path, path, plen);
    r->path[plen] = '\0';
    r->known = true;
    return 0;
}

/* The server part of the absolute reference ref[0..len) (scheme: length of its scheme): returns
 * NULL or why it is refused; sets *foreign when refs names another server, else *path to the
 * start of the path and *root_used to the bytes of it this server's XCAP root takes. */
static const char *au_lists_ref_server(const char *ref, size_t len, size_t scheme,
                                       const struct au_lists_refs *refs, bool *foreign,
                                       const char **path, size_t *root_used)
{
    if (!au_lists_scheme_is(ref, scheme, "http") && !au_lists_scheme_is(ref, scheme, "https"))
        return "must be an http or https URI";
    if (len < scheme + 3 || strncmp(ref + scheme, "://", 3) != 0)
        return "has no host";
    const char *auth = ref + scheme + 3;
    size_t alen = 0;
    while (auth + alen < ref + len && !strchr("/?#", auth[alen]))
        alen++;
    char host[256];
    unsigned port;
    bool https = au_lists_scheme_is(ref, scheme, "https");
    if (!au_lists_authority(auth, alen, https, host, sizeof host, &port))
        return "has no host";
    const char *p = auth + alen;
    *path = p;
    if (refs && refs->known) {
        /* RFC 4826 §3.2: an external list may be on any server; only a reference to this
         * one (same scheme, host, port, and under its XCAP root) can be judged here. */
        size_t plen0 = 0, used = 0;
        while (p + plen0 < ref + len && p[plen0] != '?' && p[plen0] != '#')
            plen0++;
        if (https != refs->https || port != refs->port || strcmp(host, refs->host) != 0 ||
            !au_lists_under_root(refs->path, p, plen0, &used)) {
            *foreign = true;
            return NULL;
        }
        *root_used = used;
    }
    if (p == ref + len || *p != '/')
        return "has no path";
    return NULL;
}

/* The XCAP root of r->path when the server's root is unknown: it ends where the document
 * selector of a resource-lists document begins (RFC 4825 §6). Returns NULL or why not. */
static const char *au_lists_ref_guess_root(struct au_lists_ref *r)
{
    const char *hit = NULL;
    for (const char *q = r->path; !hit && (q = strstr(q, "/resource-lists/")) != NULL; q++)
        if (strncmp(q + 16, "users/", 6) == 0 || strncmp(q + 16, "global/", 7) == 0)
            hit = q;
    if (!hit)
        return "is not the URI of a resource-lists document";
    if (!(r->root = strndup(r->path, (size_t)(hit - r->path))))
        return "cannot be checked (out of memory)";
    return NULL;
}

/* Splits ref[0..len); returns NULL or why it cannot be an XCAP URI of the wanted form. An
 * absolute URI on another server than refs names sets *foreign and is not split further. */
static const char *au_lists_ref_split(const char *ref, size_t len, enum au_lists_ref_form form,
                                      const struct au_lists_refs *refs, bool *foreign,
                                      struct au_lists_ref *r)
{
    *foreign = false;
    size_t scheme =
        strspn(ref, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-");
    bool absolute = scheme > 0 && scheme < len && ref[scheme] == ':';
    if (absolute && form == AU_LISTS_REF_RELATIVE)
        return "must be a path relative to the XCAP root, not an absolute URI";
    if (!absolute && form == AU_LISTS_REF_ABSOLUTE)
        return "must be an absolute http or https URI";
    const char *p = ref;  /* start of the path */
    size_t root_used = 0; /* bytes of the path a known XCAP root takes */
    if (absolute) {
        const char *why = au_lists_ref_server(ref, len, scheme, refs, foreign, &p, &root_used);
        if (why || *foreign)
            return why;
    } else if (ref[0] == '/') {
        return "must be relative to the XCAP root (no leading '/')";
    }
    size_t plen = len - (size_t)(p - ref);
    size_t cut = 0;
    while (cut < plen && p[cut] != '?' && p[cut] != '#')
        cut++;
    if (!(r->path = malloc(cut + 2)))
        return "cannot be checked (out of memory)";
    if (absolute) {
        /* with a known root, the path below it; the root itself is then "" */
        memcpy(r->path, p + root_used, cut - root_used);
        r->path[cut - root_used] = '\0';
    } else {
        r->path[0] = '/';
        memcpy(r->path + 1, p, cut);
        r->path[cut + 1] = '\0';
    }
    if (cut < plen && p[cut] == '?') {
        size_t q = cut + 1, qe = q;
        while (qe < plen && p[qe] != '#')
            qe++;
        if (!(r->query = strndup(p + q, qe - q)))
            return "cannot be checked (out of memory)";
    }
    if (absolute && !(refs && refs->known))
        return au_lists_ref_guess_root(r);
    if (!(r->root = strdup("")))
        return "cannot be checked (out of memory)";
    return NULL;
}

/* Checks a parsed XCAP URI; returns NULL or why it is refused. */
static const char *au_lists_ref_target(const struct xcap_uri *u, const char *target,
                                       const char *owner, bool *wrong_target)
{
    if (strcmp(u->auid, "resource-lists") != 0)
        return "does not point into a resource-lists document";
    if (u->is_dir || !u->node_sel)
        return "has no node selector (/~~/)";
    struct nodesel sel;
    struct xcap_err e = {0};
    enum xcap_status st = nodesel_parse(u->node_sel, u->query, AU_LISTS_NS_RL, &sel, &e);
    xcap_err_release(&e);
    if (st != XCAP_OK)
        return "has an invalid node selector";
    const struct nodesel_step *last = &sel.steps[sel.n_steps - 1];
    *wrong_target = sel.terminal != NODESEL_ELEMENT || !last->local ||
                    strcmp(last->local, target) != 0 || !last->ns ||
                    strcmp(last->ns, AU_LISTS_NS_RL) != 0;
    nodesel_release(&sel);
    if (*wrong_target)
        return "";
    if (owner && u->tree == XCAP_TREE_USERS && !xcap_uri_xui_equal(u->xui, owner))
        return "points into another user's documents";
    return NULL;
}

bool au_lists_ref_ok(const char *ref, enum au_lists_ref_form form, const char *target,
                     const char *owner, const struct au_lists_refs *refs, char *why, size_t why_len)
{
    why[0] = '\0';
    /* With allow_foreign_references, another user's documents are fair game: the Resource List
     * Server that dereferences them must then apply that user's rights. */
    if (refs && refs->allow_foreign)
        owner = NULL;
    /* xs:anyURI values may carry surrounding white space; it is not part of the URI. */
    ref += strspn(ref, " \t\r\n");
    size_t len = strlen(ref);
    while (len && strchr(" \t\r\n", ref[len - 1]))
        len--;
    struct au_lists_ref r = {0};
    bool foreign = false;
    const char *msg = au_lists_ref_split(ref, len, form, refs, &foreign, &r);
    if (foreign) {
        au_lists_ref_release(&r);
        return true;
    }
    if (!msg) {
        struct xcap_uri u;
        struct xcap_err e = {0};
        enum xcap_status st = xcap_uri_parse(r.root, r.path, r.query, &u, &e);
        xcap_err_release(&e);
        if (st != XCAP_OK) {
            msg = "is not a valid XCAP URI";
        } else {
            bool wrong_target = false;
            msg = au_lists_ref_target(&u, target, owner, &wrong_target);
            if (wrong_target)
                snprintf(why, why_len, "does not select a <%s> element", target);
            xcap_uri_release(&u);
        }
    }
    au_lists_ref_release(&r);
    if (msg && msg[0])
        snprintf(why, why_len, "%s", msg);
    return msg == NULL;
}

/* ---- sibling uniqueness (RFC 4826 §3.4.5) ---- */

enum au_lists_kind { AU_LISTS_LIST, AU_LISTS_ENTRY, AU_LISTS_ENTRY_REF, AU_LISTS_EXTERNAL };

static const char *const au_lists_kind_attr[] = {
    [AU_LISTS_LIST] = "name",
    [AU_LISTS_ENTRY] = "uri",
    [AU_LISTS_ENTRY_REF] = "ref",
    [AU_LISTS_EXTERNAL] = "anchor",
};

struct au_lists_item {
    enum au_lists_kind kind;
    const char *value;
    xmlNodePtr node;
    size_t order;
};

static int au_lists_item_cmp(const void *a, const void *b)
{
    const struct au_lists_item *x = a, *y = b;
    if (x->kind != y->kind)
        return x->kind < y->kind ? -1 : 1;
    int c = strcmp(x->value, y->value);
    if (c)
        return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

static int au_lists_order_cmp(const void *a, const void *b)
{
    const struct au_lists_item *x = *(struct au_lists_item *const *)a;
    const struct au_lists_item *y = *(struct au_lists_item *const *)b;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Keeps the first constraint failure: the report names one condition (RFC 4825 §11). */
void au_lists_constraint(struct au_lists_ctx *c, const char *fmt, ...)
{
    if (c->constraint[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->constraint, sizeof c->constraint, fmt, ap);
    va_end(ap);
}

/* Taken list names for suggestions: the siblings' names, and what earlier items of the same
 * parent were already offered. */
struct au_lists_taken {
    const struct au_lists_item *items; /* sorted by au_lists_item_cmp */
    size_t n;
    const struct xcap_err *err;
    size_t first_exists; /* reports of this parent start here */
};

static int au_lists_name_taken(void *cls, const char *cand)
{
    const struct au_lists_taken *t = cls;
    struct au_lists_item key = {.kind = AU_LISTS_LIST, .value = cand, .order = 0};
    size_t lo = 0, hi = t->n;
    while (lo < hi) { /* first item not below (LIST, cand, 0) */
        size_t mid = lo + (hi - lo) / 2;
        if (au_lists_item_cmp(&t->items[mid], &key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < t->n && t->items[lo].kind == AU_LISTS_LIST && strcmp(t->items[lo].value, cand) == 0)
        return 1;
    for (size_t i = t->first_exists; i < t->err->n_exists; i++)
        if (au_lists_suggested(&t->err->exists[i], cand))
            return 1;
    return 0;
}

static void au_lists_report(struct au_lists_ctx *c, const struct au_lists_item *it,
                            struct au_lists_taken *taken)
{
    if (c->err->n_exists >= AU_LISTS_MAX_EXISTS)
        return;
    struct buf field;
    buf_init(&field, 4096);
    struct xcap_exists *ex = NULL;
    if (au_lists_field(it->node, au_lists_kind_attr[it->kind], c->default_ns, false, &field) < 0 ||
        !(ex = xcap_err_add_exists(c->err, field.data))) {
        c->oom = true;
    } else if (it->kind == AU_LISTS_LIST) {
        /* Only a list name has an obvious free variant; a duplicate URI or reference is a
         * mistake no other value would fix. */
        if (au_lists_suggest(it->value, false, 0, au_lists_name_taken, taken, ex) < 0)
            c->oom = true;
    }
    buf_release(&field);
}

/* One member of a list: remembers its key value and checks references. */
static bool au_lists_member(struct au_lists_ctx *c, xmlNodePtr ch, struct au_lists_item *item)
{
    char why[160];
    if (xdoc_is(ch, AU_LISTS_NS_RL, "list")) {
        item->kind = AU_LISTS_LIST;
    } else if (xdoc_is(ch, AU_LISTS_NS_RL, "entry")) {
        item->kind = AU_LISTS_ENTRY;
    } else if (xdoc_is(ch, AU_LISTS_NS_RL, "entry-ref")) {
        item->kind = AU_LISTS_ENTRY_REF;
        /* RFC 4826 §3.2: a path relative to the XCAP root naming an <entry>. */
        const char *ref = xdoc_attr(ch, "ref");
        if (ref && !au_lists_ref_ok(ref, AU_LISTS_REF_RELATIVE, "entry", c->owner, c->refs, why,
                                    sizeof why))
            au_lists_constraint(c, "entry-ref \"%.200s\" %s", ref, why);
    } else if (xdoc_is(ch, AU_LISTS_NS_RL, "external")) {
        item->kind = AU_LISTS_EXTERNAL;
        /* RFC 4826 §3.2: an absolute http(s) URI naming a <list>. */
        const char *anchor = xdoc_attr(ch, "anchor");
        if (anchor && !au_lists_ref_ok(anchor, AU_LISTS_REF_ABSOLUTE, "list", c->owner, c->refs,
                                       why, sizeof why))
            au_lists_constraint(c, "external anchor \"%.200s\" %s", anchor, why);
    } else {
        return false;
    }
    item->value = xdoc_attr(ch, au_lists_kind_attr[item->kind]);
    item->node = ch;
    return item->value != NULL;
}

void au_lists_walk(struct au_lists_ctx *c, xmlNodePtr parent, unsigned depth)
{
    if (c->oom || depth > XDOC_MAX_DEPTH)
        return;
    size_t n = 0;
    for (xmlNodePtr ch = xdoc_first_child(parent); ch; ch = xdoc_next(ch))
        n++;
    if (n == 0)
        return;
    struct au_lists_item *items = calloc(n, sizeof *items);
    struct au_lists_item **dups = calloc(n, sizeof *dups);
    if (!items || !dups) {
        c->oom = true;
        goto done;
    }
    size_t m = 0, order = 0;
    for (xmlNodePtr ch = xdoc_first_child(parent); ch; ch = xdoc_next(ch)) {
        items[m].order = order++;
        if (au_lists_member(c, ch, &items[m]))
            m++;
    }
    /* Sorting by (kind, value) puts equal siblings next to each other: O(n log n) even for
     * lists of many thousand entries. */
    qsort(items, m, sizeof *items, au_lists_item_cmp);
    size_t nd = 0;
    for (size_t i = 1; i < m; i++)
        if (items[i].kind == items[i - 1].kind && strcmp(items[i].value, items[i - 1].value) == 0)
            dups[nd++] = &items[i];
    qsort(dups, nd, sizeof *dups, au_lists_order_cmp);
    struct au_lists_taken taken = {items, m, c->err, c->err->n_exists};
    for (size_t i = 0; i < nd && !c->oom; i++)
        au_lists_report(c, dups[i], &taken);
    free(items);
    free(dups);
    items = NULL;
    dups = NULL;
    /* A container's own duplicates are reported before those of the lists inside it. */
    for (xmlNodePtr ch = xdoc_first_child(parent); ch && !c->oom; ch = xdoc_next(ch))
        if (xdoc_is(ch, AU_LISTS_NS_RL, "list"))
            au_lists_walk(c, ch, depth + 1);
done:
    free(items);
    free(dups);
}

enum xcap_status au_lists_finish(struct au_lists_ctx *c)
{
    if (c->oom)
        return xcap_fail(c->err, XCAP_INTERNAL, "out of memory");
    if (c->err->n_exists)
        return xcap_fail(c->err, XCAP_UNIQUENESS_FAILURE,
                         "%zu value%s not unique among siblings (RFC 4826 §3.4.5)",
                         c->err->n_exists, c->err->n_exists == 1 ? " is" : "s are");
    if (c->constraint[0])
        return xcap_fail(c->err, XCAP_CONSTRAINT_FAILURE, "%s", c->constraint);
    return XCAP_OK;
}

enum xcap_status au_lists_check(xmlNodePtr root, const char *owner,
                                const struct au_lists_refs *refs, struct xcap_err *err)
{
    struct au_lists_ctx c = {
        .owner = owner, .refs = refs, .default_ns = AU_LISTS_NS_RL, .err = err};
    au_lists_walk(&c, root, 1);
    return au_lists_finish(&c);
}
