/* The watched set of a subscription (RFC 5875 §4.3-§4.5): the resource list of a
 * SUBSCRIBE parsed into watches, their authorization, whether a changed document concerns a
 * watch, and the document selectors reports name. Pure functions, declared in notify_internal.h;
 * none touches SIP, storage or shared state. */
#include "notify_internal.h"

#include <ctype.h>
#include <libxml/tree.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "nodesel.h"
#include "prescan.h"
#include "status.h"
#include "usage.h"
#include "xcap_uri.h"
#include "xdoc.h"

#define NOTIFY_NS_LISTS "urn:ietf:params:xml:ns:resource-lists"

static void notify_watch_release(struct notify_watch *w)
{
    free(w->auid);
    free(w->xui);
    free(w->path);
    free(w->node_sel);
    free(w->query);
    if (w->sel) {
        nodesel_release(w->sel);
        free(w->sel);
    }
    free(w->sel_text);
    free(w->decls);
    memset(w, 0, sizeof *w);
}

void notify_watch_list_release(struct notify_watchlist *wl)
{
    for (size_t i = 0; i < wl->n; i++)
        notify_watch_release(&wl->items[i]);
    free(wl->items);
    wl->items = NULL;
    wl->n = 0;
}

static bool notify_str_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool notify_watch_same(const struct notify_watch *a, const struct notify_watch *b)
{
    return a->kind == b->kind && a->global == b->global && a->all_users == b->all_users &&
           strcmp(a->auid, b->auid) == 0 && strcmp(a->path, b->path) == 0 &&
           (a->global || a->all_users || (a->xui && b->xui && strcmp(a->xui, b->xui) == 0)) &&
           notify_str_eq(a->node_sel, b->node_sel) && notify_str_eq(a->query, b->query);
}

/* Length of the path part of an absolute http(s) root ("http://h:p/xcap-root/" -> "/xcap-root"),
 * without the trailing slash; *path points at it. */
static size_t notify_root_path(const char *root, const char **path)
{
    const char *p = strstr(root, "://");
    p = p ? strchr(p + 3, '/') : NULL;
    if (!p) {
        *path = "";
        return 0;
    }
    size_t len = strlen(p);
    while (len > 0 && p[len - 1] == '/')
        len--;
    *path = p;
    return len;
}

/* Maps an entry URI to a selector relative to the XCAP root (RFC 5875 §4.3: relative references
 * resolve against the root). Returns a pointer into uri, or NULL when it is not below this root. */
static const char *notify_entry_relative(const char *uri, const char *xcap_root)
{
    size_t rlen = strlen(xcap_root);
    while (rlen > 0 && xcap_root[rlen - 1] == '/')
        rlen--;
    if (strstr(uri, "://")) {
        if (rlen == 0 || strncasecmp(uri, xcap_root, rlen) != 0 || uri[rlen] != '/')
            return NULL;
        return uri + rlen + 1;
    }
    if (uri[0] == '/') {
        const char *rp;
        size_t plen = notify_root_path(xcap_root, &rp);
        if (plen == 0 || strncmp(uri, rp, plen) != 0 || uri[plen] != '/')
            return NULL;
        return uri + plen + 1;
    }
    return uri;
}

/* The namespace declarations for the xmlns(prefix=uri) parts of a decoded query (RFC 4825 §6.4),
 * as " xmlns:p=\"uri\"" attributes for the report's sel (RFC 5874 §4 resolves its prefixes with
 * the xcap-diff document's declarations). NULL on a malformed query or out of memory. */
static char *notify_query_decls(const char *query)
{
    struct buf b;
    buf_init(&b, 64 * 1024);
    int rc = buf_puts(&b, "");
    const char *p = query ? query : "";
    while (rc == 0 && *p) {
        if (strncmp(p, "xmlns(", 6) != 0) {
            rc = -1;
            break;
        }
        p += 6;
        const char *eq = strchr(p, '='), *close = eq ? strchr(eq, ')') : NULL;
        if (!eq || !close || eq == p) {
            rc = -1;
            break;
        }
        rc |= buf_printf(&b, " xmlns:%.*s=\"", (int)(eq - p), p);
        rc |= buf_xml_escape(&b, eq + 1, (size_t)(close - eq - 1));
        rc |= buf_puts(&b, "\"");
        p = close + 1;
    }
    char *out = rc == 0 ? buf_detach(&b, NULL) : NULL;
    buf_release(&b);
    return out;
}

/* "<auid>/users" or "<auid>/users/": every user's documents of that AUID. */
static bool notify_is_all_users(const char *rel, char **auid)
{
    const char *slash = strchr(rel, '/');
    if (!slash || slash == rel)
        return false;
    if (strcmp(slash, "/users") != 0 && strcmp(slash, "/users/") != 0)
        return false;
    *auid = xcap_uri_decode(rel, (size_t)(slash - rel));
    return *auid != NULL;
}

/* Completes an element or attribute watch from its parsed URI: the node selector (RFC 4825 §6.3,
 * the AUID's default namespace for unprefixed names), the report's sel and declarations. Returns
 * 1 ready, 0 not watchable (namespace selector, bad selector), -1 out of memory. */
static int notify_watch_node(struct notify_watch *w, const struct xcap_uri *u)
{
    struct nodesel *ns = calloc(1, sizeof *ns);
    if (!ns)
        return -1;
    struct xcap_err err = {0};
    enum xcap_status st = nodesel_parse(u->node_sel, u->query, w->au->default_ns, ns, &err);
    xcap_err_release(&err);
    if (st != XCAP_OK) {
        free(ns);
        return 0;
    }
    w->sel = ns;
    if (ns->terminal == NODESEL_NAMESPACE)
        return 0;
    w->kind = ns->terminal == NODESEL_ATTRIBUTE ? NOTIFY_WATCH_ATTRIBUTE : NOTIFY_WATCH_ELEMENT;
    if (!(w->node_sel = strdup(u->node_sel)) || (u->query && !(w->query = strdup(u->query))))
        return -1;
    if (!(w->decls = notify_query_decls(u->query)))
        return 0;
    struct buf b;
    buf_init(&b, NOTIFY_SEL_MAX);
    struct doc_key k = {w->auid, w->global ? "global" : "users", w->xui ? w->xui : "", w->path};
    int rc = notify_watch_sel_append(&b, &k);
    rc |= buf_puts(&b, "/~~/");
    /* The node selector's own '/' separate steps; everything else outside pchar is encoded
     * (RFC 4825 §6.3: [ ] " and spaces travel percent-encoded). */
    for (const char *p = u->node_sel; rc == 0 && *p; p++)
        rc = xcap_uri_encode(&b, p, 1, true);
    w->sel_text = rc == 0 ? buf_detach(&b, NULL) : NULL;
    buf_release(&b);
    return w->sel_text ? 1 : 0;
}

/* Turns one entry into a watch. Returns 1 added, 0 left out, -1 out of memory. */
static int notify_entry_add(const char *uri, const char *xcap_root, enum xdms_role role,
                            struct notify_watchlist *wl)
{
    const char *rel = notify_entry_relative(uri, xcap_root);
    if (!rel || *rel == '\0' || strchr(rel, '#'))
        return 0;
    struct notify_watch w = {.kind = NOTIFY_WATCH_DOCUMENT};
    char *all_auid = NULL;
    struct xcap_uri u;
    memset(&u, 0, sizeof u);
    bool have_uri = false;
    int rc = 1;
    if (notify_is_all_users(rel, &all_auid)) {
        w.au = appusage_find(role, all_auid);
        w.auid = all_auid;
        w.all_users = true;
        w.kind = NOTIFY_WATCH_DIRECTORY;
        w.is_dir = true;
        if (!(w.path = strdup("")))
            rc = -1;
        else if (!w.au)
            rc = 0;
    } else {
        /* The query (xmlns() bindings) belongs to element and attribute entries only. */
        const char *q = strchr(rel, '?');
        size_t plen = q ? (size_t)(q - rel) : strlen(rel);
        char *raw = malloc(plen + 2);
        if (!raw)
            return -1;
        raw[0] = '/';
        memcpy(raw + 1, rel, plen);
        raw[plen + 1] = '\0';
        struct xcap_err err = {0};
        enum xcap_status st = xcap_uri_parse("", raw, q ? q + 1 : NULL, &u, &err);
        free(raw);
        xcap_err_release(&err);
        if (st != XCAP_OK)
            return 0;
        have_uri = true;
        w.au = appusage_find(role, u.auid);
        w.auid = u.auid;
        w.global = u.tree == XCAP_TREE_GLOBAL;
        w.xui = NULL;
        if (u.tree == XCAP_TREE_USERS && !(w.xui = xcap_uri_xui_canonical(u.xui)))
            rc = -1;
        w.path = u.path;
        w.is_dir = u.is_dir;
        w.kind = u.is_dir ? NOTIFY_WATCH_DIRECTORY : NOTIFY_WATCH_DOCUMENT;
        /* The watch owns auid and path now, and the canonical copy of the XUI. */
        u.auid = u.path = NULL;
        if (rc == 1 && (!w.au || (q && !u.node_sel) || (u.node_sel && u.is_dir)))
            rc = 0;
        else if (rc == 1 && u.node_sel)
            rc = notify_watch_node(&w, &u);
        if (rc == 1 && w.is_dir && w.path[0] != '\0') {
            size_t pl = strlen(w.path);
            char *np = realloc(w.path, pl + 2);
            if (!np) {
                rc = -1;
            } else {
                np[pl] = '/';
                np[pl + 1] = '\0';
                w.path = np;
            }
        }
    }
    for (size_t i = 0; rc == 1 && i < wl->n; i++)
        if (notify_watch_same(&wl->items[i], &w))
            rc = 0;
    if (rc == 1) {
        struct notify_watch *items = realloc(wl->items, (wl->n + 1) * sizeof *items);
        if (!items) {
            rc = -1;
        } else {
            wl->items = items;
            wl->items[wl->n++] = w;
        }
    }
    if (rc != 1)
        notify_watch_release(&w);
    if (have_uri)
        xcap_uri_release(&u);
    return rc;
}

static bool notify_is_lists_element(const xmlNode *node, const char *name)
{
    return node->type == XML_ELEMENT_NODE && node->ns &&
           strcmp((const char *)node->ns->href, NOTIFY_NS_LISTS) == 0 &&
           strcmp((const char *)node->name, name) == 0;
}

int notify_watch_parse(const char *body, size_t len, const char *xcap_root, enum xdms_role role,
                       struct notify_watchlist *out, size_t *skipped)
{
    memset(out, 0, sizeof *out);
    *skipped = 0;
    xmlDocPtr doc = NULL;
    struct xcap_err err = {0};
    /* Shape first (prescan.h, default limits): libxml2's cost grows with the square of the
     * attributes of one element. Then xdoc_parse: no network, no entity substitution, DOCTYPE
     * refused, depth bounded. */
    if (prescan_check(body, len, NULL, NULL, &err) != XCAP_OK) {
        xcap_err_release(&err);
        return 413;
    }
    enum xcap_status st = xdoc_parse(body, len, &doc, &err);
    xcap_err_release(&err);
    if (st != XCAP_OK)
        return 400;
    xmlNode *root = xmlDocGetRootElement(doc);
    if (!root || !notify_is_lists_element(root, "resource-lists")) {
        xmlFreeDoc(doc);
        return 400;
    }
    int rc = 0;
    size_t entries = 0;
    /* Iterative pre-order walk: entries may sit in nested <list> elements (RFC 4826 §3.2). */
    xmlNode *node = root->children;
    while (node && node != root) {
        if (notify_is_lists_element(node, "entry")) {
            if (++entries > NOTIFY_MAX_ENTRIES) {
                rc = 413;
                break;
            }
            xmlChar *uri = xmlGetNoNsProp(node, (const xmlChar *)"uri");
            int added = uri ? notify_entry_add((const char *)uri, xcap_root, role, out) : 0;
            xmlFree(uri);
            if (added < 0) {
                rc = 500;
                break;
            }
            if (added == 0)
                (*skipped)++;
        } else if (notify_is_lists_element(node, "list") && node->children) {
            node = node->children;
            continue;
        }
        while (node && node != root && !node->next)
            node = node->parent;
        if (node && node != root)
            node = node->next;
    }
    xmlFreeDoc(doc);
    if (rc != 0)
        notify_watch_list_release(out);
    return rc;
}

size_t notify_watch_list_authorize(struct notify_watchlist *wl, const char *identity,
                                   bool is_server)
{
    size_t kept = 0, removed = 0;
    for (size_t i = 0; i < wl->n; i++) {
        struct notify_watch *w = &wl->items[i];
        /* RFC 4825 §5.7: own home directory and global/ are readable; OMA Presence SIMPLE XDM 2.0
         * §5: servers read every user's documents, and only they may watch a whole users tree. */
        bool ok = is_server || w->global ||
                  (!w->all_users && w->xui && xcap_uri_xui_equal(w->xui, identity));
        /* RFC 4826 §4.4.8: server-maintained global documents are for trusted
         * servers only, as for an HTTP GET. */
        if (ok && w->global && !is_server) {
            struct doc_key k = {w->auid, "global", "", w->path};
            if (w->is_dir)
                w->hide_server_owned = true;
            else if (usage_server_owned(w->au, &k))
                ok = false;
        }
        if (ok) {
            wl->items[kept++] = *w;
        } else {
            notify_watch_release(w);
            removed++;
        }
    }
    wl->n = kept;
    return removed;
}

bool notify_watch_matches(const struct notify_watch *w, const struct doc_key *k)
{
    if (strcmp(w->auid, k->auid) != 0)
        return false;
    bool global = strcmp(k->tree, "global") == 0;
    if (global != w->global)
        return false;
    /* Both XUIs are canonical: the watch's (notify_entry_add()) and the store's (the XDMS stores
     * documents under the canonical XUI only). */
    if (!global && !w->all_users && strcmp(w->xui, k->xui) != 0)
        return false;
    if (w->is_dir ? strncmp(k->path, w->path, strlen(w->path)) != 0 : strcmp(k->path, w->path) != 0)
        return false;
    return !(w->hide_server_owned && usage_server_owned(w->au, k));
}

int notify_watch_sel_append(struct buf *b, const struct doc_key *k)
{
    bool global = strcmp(k->tree, "global") == 0;
    if (xcap_uri_encode(b, k->auid, strlen(k->auid), false) < 0 ||
        buf_puts(b, global ? "/global/" : "/users/") < 0)
        return -1;
    if (!global) {
        if (xcap_uri_encode(b, k->xui, strlen(k->xui), false) < 0 || buf_puts(b, "/") < 0)
            return -1;
    }
    /* The stored path is '/'-joined decoded segments: encode each, keep the separators. */
    const char *p = k->path;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (xcap_uri_encode(b, p, len, false) < 0)
            return -1;
        if (!slash)
            break;
        if (buf_puts(b, "/") < 0)
            return -1;
        p = slash + 1;
    }
    return 0;
}
