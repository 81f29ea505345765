/* The xcap-diff notifier (RFC 5875 event package, RFC 5874 format, RFC 6665 subscriptions).
 * DESIGN §5: one thread with its own sofia-sip event loop; HTTP threads only append to the change
 * log (in their commit) and call notifier_wake(). Everything below the "SIP thread" line runs in
 * that thread only, so the subscription list needs no lock.
 *
 * nta (transactions and dialogs) is used rather than nua: the notifier answers SUBSCRIBE itself,
 * owns the NOTIFY sequencing (one NOTIFY in flight per dialog, later changes queued behind it in
 * commit order) and decides termination, which is simpler to get right without nua's event
 * server in between; it also lets a dialog be re-created from its saved state after a restart.
 *
 * What a NOTIFY says (SPEC DIFF-12..14): the initial one (and one after a refresh that changes
 * the watched set) the full state — every watched document with its ETag, every watched element
 * or attribute with its content or exists="0". Later ones report the change-log records in
 * commit order: with no-patching one <document> per document with the oldest previous and the
 * newest ETag; with xcap-patching one <document> per change, the ETags forming a chain, each with
 * its RFC 5261 operations (xdiff.c) when they can be rendered exactly; with aggregate one
 * <document> per document whose operations are the simplified concatenation of the changes', or
 * <body-not-changed/> when they cancel out. A <document> without operations tells the client to
 * fetch it (RFC 5874 §4). Element and attribute edits carry the operations the engine described
 * in the change log; a whole-document PUT becomes a replace of the document element when the
 * notifier knows that the version the client has had the same prolog (comments and processing
 * instructions outside the root, which such a replace cannot reach), and ETags only otherwise.
 * Element and attribute watches report their current content whenever it changed.
 *
 * Subscriptions are saved in the store (NOTIFY_TABLE) when it has that table: at creation and
 * refresh at once, their progress once a second (a crash then repeats a few changes, which the
 * client recognises by their ETags), and all of them at shutdown, which then sends no final
 * NOTIFY. A restart re-creates the dialogs and resumes after the last change reported. */
#define SU_ROOT_MAGIC_T struct notifier
#define SU_WAKEUP_ARG_T struct notifier
#define SU_TIMER_ARG_T struct notifier
#define NTA_AGENT_MAGIC_T struct notifier
#define NTA_LEG_MAGIC_T void
#define NTA_OUTGOING_MAGIC_T struct notify_sub

#include "notify.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <libxml/tree.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <sofia-sip/msg_addr.h>
#include <sofia-sip/nta.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/su.h>
#include <sofia-sip/su_tagarg.h>
#include <sofia-sip/su_wait.h>
#include <sofia-sip/tport_tag.h>
#include <sofia-sip/url.h>

#include "buf.h"
#include "log.h"
#include "nodesel.h"
#include "notify_internal.h"
#include "status.h"
#include "store.h"
#include "usage.h"
#include "xcap_uri.h"
#include "xdiff.h"
#include "xdoc.h"

#define NOTIFY_NS_LISTS "urn:ietf:params:xml:ns:resource-lists"
#define NOTIFY_MAX_CHANGES_PER_POLL 4096
#define NOTIFY_STOP_WAIT_MS 900
/* What sofia's transport reads at once from a connection. Over TCP it takes all the bytes
 * waiting (several pipelined messages: a server answering thousands of NOTIFYs, or sending
 * thousands of SUBSCRIBEs) and refuses the lot, closing the connection, when they exceed this,
 * so it covers a full Linux TCP receive buffer (tcp_rmem's default maximum is 6 MiB). A single
 * message is still bounded by NOTIFY_MAX_BODY (413). */
#define NOTIFY_SIP_MAXSIZE (8 * 1024 * 1024)
#define NOTIFY_MAX_RECORD (NOTIFY_MAX_BODY + 64 * 1024)
#define NOTIFY_KNOWN_BUCKETS 1024
#define NOTIFY_KNOWN_MAX 65536    /* documents whose prolog digest is remembered */
#define NOTIFY_LEARN_MAX 64       /* documents read for their prolog per full-state NOTIFY */
#define NOTIFY_CSEQ_MARGIN 100000 /* added to a restored CSeq: saves are lazy (once a second) */
#define NOTIFY_SEL_MAX (8 * XCAP_URI_MAX_SEGMENT)

static const char *const notify_tables[] = {NOTIFY_TABLE, NULL};

const char *const *notify_store_tables(void)
{
    return notify_tables;
}

/* ------------------------------------------------------------------------------------------ */
/* Pure helpers (notify_internal.h)                                                            */

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

void notify_watchlist_release(struct notify_watchlist *wl)
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

/* RFC 3986 §3.3 pchar minus pct-encoded. */
static bool notify_is_pchar(unsigned char c)
{
    return isalnum(c) || strchr("-._~!$&'()*+,;=:@", c) != NULL;
}

static int notify_segment_append(struct buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c != '\0' && notify_is_pchar(c)) {
            if (buf_append(b, &s[i], 1) < 0)
                return -1;
        } else {
            char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
            if (buf_append(b, esc, 3) < 0)
                return -1;
        }
    }
    return 0;
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
    int rc = notify_sel_append(&b, &k);
    rc |= buf_puts(&b, "/~~/");
    /* The node selector's own '/' separate steps; everything else outside pchar is encoded
     * (RFC 4825 §6.3: [ ] " and spaces travel percent-encoded). */
    for (const char *p = u->node_sel; rc == 0 && *p; p++)
        rc = *p == '/' ? buf_puts(&b, "/") : notify_segment_append(&b, p, 1);
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
        w.xui = u.tree == XCAP_TREE_USERS ? u.xui : NULL;
        w.path = u.path;
        w.is_dir = u.is_dir;
        w.kind = u.is_dir ? NOTIFY_WATCH_DIRECTORY : NOTIFY_WATCH_DOCUMENT;
        /* The watch owns auid, xui and path now. */
        u.auid = u.path = NULL;
        if (!w.global)
            u.xui = NULL;
        if (!w.au || (q && !u.node_sel) || (u.node_sel && u.is_dir))
            rc = 0;
        else if (u.node_sel)
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

int notify_entries_parse(const char *body, size_t len, const char *xcap_root, enum xdms_role role,
                         struct notify_watchlist *out, size_t *skipped)
{
    memset(out, 0, sizeof *out);
    *skipped = 0;
    xmlDocPtr doc = NULL;
    struct xcap_err err = {0};
    /* xdoc_parse: no network, no entity substitution, DOCTYPE refused, depth bounded. */
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
        notify_watchlist_release(out);
    return rc;
}

size_t notify_watchlist_authorize(struct notify_watchlist *wl, const char *identity, bool is_server)
{
    size_t kept = 0, removed = 0;
    for (size_t i = 0; i < wl->n; i++) {
        struct notify_watch *w = &wl->items[i];
        /* XCAP-AUTH-1: own home directory and global/ are readable; XCAP-AUTH-4: servers read
         * every user's documents, and only they may watch a whole users tree. */
        bool ok = is_server || w->global ||
                  (!w->all_users && w->xui && xcap_uri_xui_equal(w->xui, identity));
        /* RFC 4826 §4.4.8 (SPEC RLS-8): server-maintained global documents are for trusted
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
    if (!global && !w->all_users && !xcap_uri_xui_equal(w->xui, k->xui))
        return false;
    if (w->is_dir ? strncmp(k->path, w->path, strlen(w->path)) != 0 : strcmp(k->path, w->path) != 0)
        return false;
    return !(w->hide_server_owned && usage_server_owned(w->au, k));
}

int notify_sel_append(struct buf *b, const struct doc_key *k)
{
    bool global = strcmp(k->tree, "global") == 0;
    if (notify_segment_append(b, k->auid, strlen(k->auid)) < 0 ||
        buf_puts(b, global ? "/global/" : "/users/") < 0)
        return -1;
    if (!global) {
        if (notify_segment_append(b, k->xui, strlen(k->xui)) < 0 || buf_puts(b, "/") < 0)
            return -1;
    }
    /* The stored path is '/'-joined decoded segments: encode each, keep the separators. */
    const char *p = k->path;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (notify_segment_append(b, p, len) < 0)
            return -1;
        if (!slash)
            break;
        if (buf_puts(b, "/") < 0)
            return -1;
        p = slash + 1;
    }
    return 0;
}

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

char *notify_identity_parse(const char *value)
{
    if (!value)
        return NULL;
    const char *p = value;
    while (*p == ' ' || *p == '\t')
        p++;
    /* First list item: find '<' outside a quoted display name, before any ','. */
    const char *lt = NULL;
    bool quoted = false;
    for (const char *q = p; *q; q++) {
        if (quoted) {
            if (*q == '\\' && q[1])
                q++;
            else if (*q == '"')
                quoted = false;
            continue;
        }
        if (*q == '"')
            quoted = true;
        else if (*q == '<') {
            lt = q;
            break;
        } else if (*q == ',')
            break;
    }
    if (quoted)
        return NULL;
    const char *uri = lt ? lt + 1 : p;
    const char *end = uri;
    /* In a name-addr the URI ends at '>'; in an addr-spec, ';' starts header parameters. */
    while (*end && *end != '>' && *end != ',' && *end != ' ' && *end != '\t' && (lt || *end != ';'))
        end++;
    if (lt && *end != '>')
        return NULL;
    const char *colon = memchr(uri, ':', (size_t)(end - uri));
    if (!colon || colon == uri)
        return NULL;
    size_t slen = (size_t)(colon - uri);
    char scheme[5];
    if (slen >= sizeof scheme)
        return NULL;
    for (size_t i = 0; i < slen; i++)
        scheme[i] = (char)tolower((unsigned char)uri[i]);
    scheme[slen] = '\0';
    if (strcmp(scheme, "sip") != 0 && strcmp(scheme, "sips") != 0 && strcmp(scheme, "tel") != 0)
        return NULL;
    /* URI parameters and headers are not part of the identity. */
    const char *rest = colon + 1, *rend = rest;
    while (rend < end && *rend != ';' && *rend != '?')
        rend++;
    if (rend == rest)
        return NULL;
    for (const char *q = rest; q < rend; q++)
        if ((unsigned char)*q <= ' ' || *q == '<' || *q == '"' || *q == 0x7f)
            return NULL;
    size_t rlen = (size_t)(rend - rest);
    char *out = malloc(slen + 1 + rlen + 1);
    if (!out)
        return NULL;
    memcpy(out, scheme, slen);
    out[slen] = ':';
    memcpy(out + slen + 1, rest, rlen);
    out[slen + 1 + rlen] = '\0';
    return out;
}

int notify_expires_decide(const struct notifier_config *cfg, bool present, unsigned long requested,
                          unsigned *out)
{
    unsigned long max = cfg->max_expires ? cfg->max_expires : NOTIFY_DEFAULT_MAX_EXPIRES;
    unsigned long want =
        present ? requested
                : (cfg->default_expires ? cfg->default_expires : NOTIFY_DEFAULT_EXPIRES);
    if (want == 0) {
        *out = 0;
        return 0;
    }
    if (present && cfg->min_expires && want < cfg->min_expires)
        return 423;
    *out = (unsigned)(want > max ? max : want);
    return 0;
}

/* Normalises an address to 16 bytes (IPv4 as IPv4-mapped IPv6). */
static bool notify_addr16(const struct sockaddr *sa, unsigned char out[16])
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (sa->sa_family == AF_INET) {
        memcpy(out, mapped, 12);
        memcpy(out + 12, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
        return true;
    }
    return false;
}

bool notify_peer_trusted(const struct sockaddr *sa, const char *const *trusted)
{
    unsigned char a[16];
    if (!sa || !notify_addr16(sa, a))
        return false;
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    bool v4 = memcmp(a, mapped, 12) == 0;
    if (!trusted) {
        static const unsigned char loop6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
        return (v4 && a[12] == 127) || memcmp(a, loop6, 16) == 0;
    }
    for (size_t i = 0; trusted[i]; i++) {
        unsigned char t[16];
        struct in_addr a4;
        if (inet_pton(AF_INET, trusted[i], &a4) == 1) {
            memcpy(t, mapped, 12);
            memcpy(t + 12, &a4, 4);
        } else if (inet_pton(AF_INET6, trusted[i], t) != 1) {
            continue;
        }
        if (memcmp(a, t, 16) == 0)
            return true;
    }
    return false;
}

bool notify_identity_is_server(const char *identity, const char *const *servers)
{
    for (size_t i = 0; servers && servers[i]; i++)
        if (xcap_uri_xui_equal(servers[i], identity))
            return true;
    return false;
}

bool notify_accept_allows(const char *const *types, size_t n)
{
    if (n == 0)
        return true;
    for (size_t i = 0; i < n; i++) {
        const char *t = types[i];
        if (t && (strcasecmp(t, NOTIFY_MIME_DIFF) == 0 || strcasecmp(t, "application/*") == 0 ||
                  strcmp(t, "*/*") == 0))
            return true;
    }
    return false;
}

enum notify_mode notify_mode_parse(const char *const *params)
{
    for (const char *const *p = params; p && *p; p++) {
        if (strncasecmp(*p, "diff-processing=", 16) != 0)
            continue;
        const char *v = *p + 16;
        size_t len = strlen(v);
        if (len >= 2 && v[0] == '"' && v[len - 1] == '"') {
            v++;
            len -= 2;
        }
        if (len == 13 && strncasecmp(v, "xcap-patching", 13) == 0)
            return NOTIFY_XCAP_PATCHING;
        if (len == 9 && strncasecmp(v, "aggregate", 9) == 0)
            return NOTIFY_AGGREGATE;
        return NOTIFY_NO_PATCHING;
    }
    return NOTIFY_NO_PATCHING;
}

const char *notify_mode_name(enum notify_mode m)
{
    switch (m) {
    case NOTIFY_NO_PATCHING:
        return "no-patching";
    case NOTIFY_XCAP_PATCHING:
        return "xcap-patching";
    case NOTIFY_AGGREGATE:
        return "aggregate";
    }
    return "no-patching";
}

/* ---- persisted record: "key value" lines, a blank line, then the resource-list body ---- */

void notify_record_release(struct notify_record *r)
{
    free(r->call_id);
    free(r->local);
    free(r->remote);
    free(r->target);
    free(r->route);
    free(r->identity);
    free(r->event);
    free(r->hashes);
    free(r->body);
    memset(r, 0, sizeof *r);
}

static bool notify_line_ok(const char *s)
{
    return s && !strpbrk(s, "\r\n");
}

int notify_record_encode(const struct notify_record *r, struct buf *out)
{
    if (!notify_line_ok(r->call_id) || !notify_line_ok(r->local) || !notify_line_ok(r->remote) ||
        !notify_line_ok(r->target) || !notify_line_ok(r->route) || !notify_line_ok(r->identity) ||
        !notify_line_ok(r->event))
        return -1;
    int rc = buf_printf(out,
                        "v 1\ncall-id %s\nlocal %s\nremote %s\ntarget %s\nroute %s\n"
                        "identity %s\nevent %s\nmode %s\nexpires %" PRId64 "\ncseq %" PRIu32
                        "\nrseq %" PRIu32 "\nseq %" PRIu64 "\nfull %d\n",
                        r->call_id, r->local, r->remote, r->target, r->route, r->identity, r->event,
                        notify_mode_name(r->mode), r->expires, r->cseq, r->rseq, r->seq,
                        r->full ? 1 : 0);
    for (size_t i = 0; i < r->n_hashes; i++)
        rc |= buf_printf(out, "hash %zu %016" PRIx64 "\n", i, r->hashes[i]);
    rc |= buf_puts(out, "\n");
    rc |= buf_append(out, r->body, r->body_len);
    return rc ? -1 : 0;
}

static char *notify_record_str(const char *v, size_t len)
{
    return strndup(v, len);
}

int notify_record_decode(const char *data, size_t len, struct notify_record *out)
{
    memset(out, 0, sizeof *out);
    size_t i = 0;
    bool version = false, body = false;
    while (i < len) {
        const char *nl = memchr(data + i, '\n', len - i);
        if (!nl)
            break;
        const char *line = data + i;
        size_t ll = (size_t)(nl - line);
        i += ll + 1;
        if (ll == 0) {
            body = true;
            break;
        }
        const char *sp = memchr(line, ' ', ll);
        if (!sp)
            goto bad;
        size_t kl = (size_t)(sp - line);
        const char *v = sp + 1;
        size_t vl = ll - kl - 1;
        char num[32];
        snprintf(num, sizeof num, "%.*s", (int)(vl < sizeof num ? vl : sizeof num - 1), v);
#define KEY(s) (kl == sizeof(s) - 1 && memcmp(line, s, kl) == 0)
        if (KEY("v")) {
            version = vl == 1 && v[0] == '1';
        } else if (KEY("call-id")) {
            free(out->call_id);
            out->call_id = notify_record_str(v, vl);
        } else if (KEY("local")) {
            free(out->local);
            out->local = notify_record_str(v, vl);
        } else if (KEY("remote")) {
            free(out->remote);
            out->remote = notify_record_str(v, vl);
        } else if (KEY("target")) {
            free(out->target);
            out->target = notify_record_str(v, vl);
        } else if (KEY("route")) {
            free(out->route);
            out->route = notify_record_str(v, vl);
        } else if (KEY("identity")) {
            free(out->identity);
            out->identity = notify_record_str(v, vl);
        } else if (KEY("event")) {
            free(out->event);
            out->event = notify_record_str(v, vl);
        } else if (KEY("mode")) {
            const char *params[] = {NULL, NULL};
            char mode[64];
            snprintf(mode, sizeof mode, "diff-processing=%s", num);
            params[0] = mode;
            out->mode = notify_mode_parse(params);
        } else if (KEY("expires")) {
            out->expires = strtoll(num, NULL, 10);
        } else if (KEY("cseq")) {
            out->cseq = (uint32_t)strtoul(num, NULL, 10);
        } else if (KEY("rseq")) {
            out->rseq = (uint32_t)strtoul(num, NULL, 10);
        } else if (KEY("seq")) {
            out->seq = strtoull(num, NULL, 10);
        } else if (KEY("full")) {
            out->full = num[0] == '1';
        } else if (KEY("hash")) {
            char *end;
            unsigned long idx = strtoul(num, &end, 10);
            if (*end != ' ' || idx > NOTIFY_MAX_ENTRIES)
                goto bad;
            uint64_t h = strtoull(end + 1, NULL, 16);
            if (idx >= out->n_hashes) {
                uint64_t *nh = realloc(out->hashes, (idx + 1) * sizeof *nh);
                if (!nh)
                    goto bad;
                for (size_t k = out->n_hashes; k <= idx; k++)
                    nh[k] = 0;
                out->hashes = nh;
                out->n_hashes = idx + 1;
            }
            out->hashes[idx] = h;
        }
        /* Unknown keys are skipped: a newer version may add some. */
#undef KEY
    }
    if (!version || !body || !out->call_id || !out->local || !out->remote || !out->target ||
        !out->route || !out->identity || !out->event)
        goto bad;
    out->body_len = len - i;
    if (!(out->body = malloc(out->body_len + 1)))
        goto bad;
    memcpy(out->body, data + i, out->body_len);
    out->body[out->body_len] = '\0';
    return 0;
bad:
    notify_record_release(out);
    return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* State                                                                                       */

/* One change-log record as the subscriptions watching its document see it, shared between them
 * and freed with its last reference. */
struct notify_change {
    unsigned refs;
    uint64_t seq;
    char *sel;
    char prev[STORE_ETAG_MAX]; /* "" for a created document */
    char next[STORE_ETAG_MAX]; /* "" for a deleted document */
    bool has_op;               /* op turns version prev into version next exactly */
    struct xdiff_op op;
};

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

/* One subscription = one dialog. Invariants: at most one NOTIFY in flight (orq); once final_sent,
 * nothing more is sent and the subscription is freed when that NOTIFY completes; a dead
 * subscription is only waiting to be freed outside any callback of its own; pending holds
 * changes in commit order, all with seq > seq. */
struct notify_sub {
    struct notify_sub *next;
    struct notifier *n;
    nta_leg_t *leg;
    nta_outgoing_t *orq;
    char *key;      /* our dialog tag; the key of the persisted record */
    char *identity; /* the subscriber (P-Asserted-Identity) */
    char *event;    /* Event header value echoed in NOTIFY (type and id, RFC 6665 §8.2.1) */
    enum notify_mode mode;
    struct notify_watchlist watches;
    char *body; /* the resource list the watches come from */
    size_t body_len;
    /* the dialog as persisted (RFC 6665 §4.1.2.2) */
    char *call_id, *local, *remote, *target, *route;
    int64_t expires_at;   /* monotonic seconds */
    int64_t expires_wall; /* the same, wall clock */
    uint64_t seq;         /* every change-log record up to seq is handled */
    int64_t last_sent_ms; /* monotonic, of the last NOTIFY reporting changes */
    struct notify_change **pending;
    size_t n_pending;
    bool full_pending;       /* the next NOTIFY carries the full state (DIFF-12) */
    bool force_notify;       /* a refresh waits for its NOTIFY (RFC 6665 §4.2.1.2) */
    bool nodes_due;          /* an element or attribute watch may have changed */
    const char *term_reason; /* set: the next NOTIFY is the final one */
    bool final_sent;
    bool dead;
    bool forget;     /* the subscription ended: its record goes too */
    bool dirty;      /* the persisted record is out of date */
    bool urgent;     /* ... and must be saved now, not at the next tick */
    bool sending;    /* inside nta_outgoing_tcreate() */
    int sync_status; /* final status reported while sending */
};

struct notifier {
    /* Set before the thread starts, read-only afterwards. */
    char *host;
    char *xcap_root;
    char **trusted;             /* NULL = loopback only */
    char **servers;             /* may be NULL */
    struct notifier_config cfg; /* string members point at the copies above */
    struct store *store;
    int efd;
    pthread_t thread;
    atomic_bool stop_requested;

    /* Start-up handshake. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int start_rc; /* 1 running, -1 failed, 0 not yet known */
    uint16_t port;

    /* SIP thread only. */
    su_root_t *root;
    nta_agent_t *agent;
    nta_leg_t *default_leg;
    su_timer_t *tick;
    su_timer_t *hold;
    su_timer_t *deadline;
    int wait_index;
    struct notify_sub *subs;
    size_t n_subs;
    uint64_t cursor; /* last change-log sequence handled */
    unsigned depth;  /* nesting of our callbacks; reaping happens at depth 0 */
    bool in_poll, poll_again, stopping, broken;
    bool persist;    /* the store has NOTIFY_TABLE */
    bool hold_armed; /* hold fires at hold_due (monotonic ms) */
    bool reap_due;   /* some subscription is dead */
    int64_t hold_due;
    struct notify_known *known[NOTIFY_KNOWN_BUCKETS];
    size_t n_known;
};

static int64_t notify_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec;
}

static int64_t notify_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t notify_wall(void)
{
    return (int64_t)time(NULL);
}

static char **notify_strv_dup(const char *const *v)
{
    if (!v)
        return NULL;
    size_t n = 0;
    while (v[n])
        n++;
    char **out = calloc(n + 1, sizeof *out);
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (!(out[i] = strdup(v[i]))) {
            for (size_t j = 0; j < i; j++)
                free(out[j]);
            free(out);
            return NULL;
        }
    }
    return out;
}

static void notify_strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

static void notify_change_unref(struct notify_change *c)
{
    if (c && --c->refs == 0) {
        free(c->sel);
        xdiff_op_release(&c->op);
        free(c);
    }
}

static void notify_pending_clear(struct notify_sub *s)
{
    for (size_t i = 0; i < s->n_pending; i++)
        notify_change_unref(s->pending[i]);
    free(s->pending);
    s->pending = NULL;
    s->n_pending = 0;
}

/* ---- known prologs ---- */

static size_t notify_key_bytes(const struct doc_key *k, char *out, size_t max)
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

static void notify_known_clear(struct notifier *n)
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
    char key[4 * XCAP_URI_MAX_SEGMENT + 8];
    size_t len = notify_key_bytes(k, key, sizeof key);
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
    char key[4 * XCAP_URI_MAX_SEGMENT + 8];
    size_t len = notify_key_bytes(k, key, sizeof key);
    if (len == 0)
        return;
    struct notify_known **pp = notify_known_slot(n, key, len);
    if (!*pp) {
        if (n->n_known >= NOTIFY_KNOWN_MAX) {
            notify_known_clear(n); /* a bound, not a cache policy: it only costs fetches */
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
    char key[4 * XCAP_URI_MAX_SEGMENT + 8];
    size_t len = notify_key_bytes(k, key, sizeof key);
    if (len == 0)
        return false;
    struct notify_known *e = *notify_known_slot(n, key, len);
    if (!e || strcmp(e->etag, etag) != 0)
        return false;
    *digest = e->digest;
    return true;
}

/* ------------------------------------------------------------------------------------------ */
/* SIP thread                                                                                  */

static void notifier_poll(struct notifier *n);

static void sub_free(struct notify_sub *s)
{
    if (s->orq)
        nta_outgoing_destroy(s->orq);
    if (s->leg)
        nta_leg_destroy(s->leg);
    notify_pending_clear(s);
    notify_watchlist_release(&s->watches);
    free(s->key);
    free(s->identity);
    free(s->event);
    free(s->body);
    free(s->call_id);
    free(s->local);
    free(s->remote);
    free(s->target);
    free(s->route);
    free(s);
}

/* Marks a subscription as ended; the memory (and its persisted record) goes at the next reap,
 * never inside one of its own callbacks. */
static void sub_kill(struct notify_sub *s)
{
    s->dead = true;
    s->forget = true;
    s->n->reap_due = true;
}

/* ---- persistence (table NOTIFY_TABLE, key = our dialog tag) ---- */

/* The last change-log record s has handled: changes still queued are not. */
static uint64_t sub_done_seq(const struct notify_sub *s)
{
    return s->n_pending > 0 ? s->pending[0]->seq - 1 : s->n->cursor;
}

static int sub_encode(const struct notify_sub *s, struct buf *out)
{
    uint64_t *hashes = s->watches.n ? calloc(s->watches.n, sizeof *hashes) : NULL;
    if (s->watches.n && !hashes)
        return -1;
    for (size_t i = 0; i < s->watches.n; i++)
        hashes[i] = s->watches.items[i].last_hash;
    struct notify_record r = {
        .call_id = s->call_id,
        .local = s->local,
        .remote = s->remote,
        .target = s->target,
        .route = s->route,
        .identity = s->identity,
        .event = s->event,
        .mode = s->mode,
        .expires = s->expires_wall,
        .cseq = s->leg ? nta_leg_get_seq(s->leg) : 0,
        .rseq = s->leg ? nta_leg_get_rseq(s->leg) : 0,
        .seq = sub_done_seq(s),
        .full = s->full_pending,
        .hashes = hashes,
        .n_hashes = s->watches.n,
        .body = s->body,
        .body_len = s->body_len,
    };
    int rc = notify_record_encode(&r, out);
    free(hashes);
    return rc;
}

/* Writes the records of subs that need it (all, or only dirty ones) and deletes those of ended
 * subscriptions, in one durable transaction. Must not run inside a store transaction. */
static void notifier_save(struct notifier *n, bool all)
{
    if (!n->persist)
        return;
    bool any = false;
    for (struct notify_sub *s = n->subs; s && !any; s = s->next)
        any = s->forget || (!s->dead && (all || s->dirty));
    if (!any)
        return;
    struct store_txn *t;
    enum store_rc rc = store_txn_begin(n->store, true, &t);
    struct buf rec;
    buf_init(&rec, NOTIFY_MAX_RECORD);
    for (struct notify_sub *s = n->subs; rc == STORE_OK && s; s = s->next) {
        if (s->forget) {
            rc = store_kv_del(t, NOTIFY_TABLE, s->key, strlen(s->key));
            if (rc == STORE_NOTFOUND)
                rc = STORE_OK;
        } else if (!s->dead && (all || s->dirty)) {
            buf_reset(&rec);
            if (sub_encode(s, &rec) < 0) {
                log_warn("notifier: cannot save the subscription of %s", s->identity);
                continue;
            }
            rc = store_kv_put(t, NOTIFY_TABLE, s->key, strlen(s->key), rec.data, rec.len);
        }
    }
    buf_release(&rec);
    if (rc == STORE_OK)
        rc = store_txn_commit(t);
    else if (t)
        store_txn_abort(t);
    if (rc != STORE_OK) {
        log_warn("notifier: cannot save subscriptions: %s", store_strerror(rc));
        return;
    }
    for (struct notify_sub *s = n->subs; s; s = s->next) {
        s->dirty = false;
        s->urgent = false;
        s->forget = false;
    }
}

static void notifier_reap(struct notifier *n)
{
    /* Every callback ends here: walking all subscriptions each time would make a fan-out of
     * n NOTIFYs cost n² when their answers come back. */
    if (!n->reap_due)
        return;
    n->reap_due = false;
    bool forget = false;
    for (struct notify_sub *s = n->subs; s; s = s->next)
        forget |= s->dead && s->forget;
    if (forget && !n->in_poll)
        notifier_save(n, false);
    for (struct notify_sub **pp = &n->subs; *pp;) {
        struct notify_sub *s = *pp;
        if (s->dead) {
            *pp = s->next;
            n->n_subs--;
            sub_free(s);
        } else {
            pp = &s->next;
        }
    }
}

static bool notifier_idle(const struct notifier *n)
{
    if (!n->persist)
        return n->n_subs == 0;
    for (const struct notify_sub *s = n->subs; s; s = s->next)
        if (s->orq)
            return false;
    return true;
}

static void notifier_enter(struct notifier *n)
{
    n->depth++;
}

static void notifier_leave(struct notifier *n)
{
    if (--n->depth > 0)
        return;
    notifier_reap(n);
    if (n->stopping && notifier_idle(n) && !n->broken) {
        n->broken = true;
        su_root_break(n->root);
    }
}

/* ---- rendering ---- */

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
static bool sub_seen_earlier(const struct notify_sub *s, size_t index, const struct doc_key *k)
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
    if (sub_seen_earlier(c->s, c->index, &d->key))
        return 0;
    struct buf sel;
    buf_init(&sel, NOTIFY_SEL_MAX);
    int rc = notify_sel_append(&sel, &d->key);
    if (rc == 0)
        rc = notify_diff_document(c->b, sel.data, NULL, d->etag);
    buf_release(&sel);
    if (rc < 0) {
        c->rc = -1;
        return 1;
    }
    if (c->learn && c->n_learn < NOTIFY_LEARN_MAX) {
        char key[4 * XCAP_URI_MAX_SEGMENT + 8];
        size_t len = notify_key_bytes(&d->key, key, sizeof key);
        char *copy = len ? malloc(len) : NULL;
        if (copy) {
            memcpy(copy, key, len);
            c->learn[c->n_learn++] = copy;
        }
    }
    return 0;
}

/* Reads the prolog digests of documents just reported in a full state, so that a whole-document
 * write that follows can be sent as a patch. */
static void notify_learn(struct notifier *n, struct store_txn *t, char **keys, size_t count)
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

/* Element and attribute reports (DIFF-5, DIFF-14): all of them, or only those whose content
 * changed since the last report. Counts what was written in *items. Returns 0 or -1. */
static int sub_render_nodes(struct notify_sub *s, struct store_txn *t, struct buf *b, bool all,
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
            s->dirty = true;
            (*items)++;
        }
    }
    buf_release(&one);
    return rc;
}

/* Full state for the initial NOTIFY and refreshes (DIFF-12): every existing watched document,
 * directories expanded, missing documents omitted; every element and attribute watch. Returns 0
 * or -1. */
static int sub_render_full(struct notify_sub *s, struct store_txn *t, struct buf *b)
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
    notify_learn(s->n, t, learn, n_learn);
    size_t items = 0;
    if (rc == 0)
        rc = sub_render_nodes(s, t, b, true, &items);
    return rc;
}

/* One <document> with the operations of changes [from, to) of s (all of one document), or
 * <body-not-changed/> when they cancel out; an empty <document> when they cannot all be
 * rendered exactly. */
static int sub_render_ops(struct notify_sub *s, size_t from, size_t to, const char *prev,
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

/* The queued changes of s by mode (DIFF-13). Counts <document>s written in *items. */
static int sub_render_pending(struct notify_sub *s, struct buf *b, size_t *items)
{
    struct notify_change **p = s->pending;
    size_t n = s->n_pending;
    if (s->mode == NOTIFY_XCAP_PATCHING) {
        /* Every change, in commit order: the ETags form a chain without gaps. */
        for (size_t i = 0; i < n; i++) {
            if (sub_render_ops(s, i, i + 1, p[i]->prev, p[i]->next, false, b) < 0)
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
            /* sub_render_ops() reads a contiguous range: present the group as one. */
            struct notify_change **saved = s->pending;
            for (size_t k = 0; k < g; k++)
                sorted[k] = p[group[k]];
            s->pending = sorted;
            rc = sub_render_ops(s, 0, g, prev, next, true, b);
            s->pending = saved;
        }
        (*items)++;
    }
    free(done);
    free(group);
    free(sorted);
    return rc;
}

static int sub_on_notify_response(struct notify_sub *s, nta_outgoing_t *orq, const sip_t *sip);

static bool sub_has_work(const struct notify_sub *s)
{
    if (s->dead || s->final_sent || s->orq)
        return false;
    /* A persisted subscription outlives a stop: nothing more is sent then. */
    if (s->n->stopping && s->n->persist && !s->term_reason)
        return false;
    return s->full_pending || s->n_pending > 0 || s->nodes_due || s->term_reason || s->force_notify;
}

static void notify_on_hold(struct notifier *n, su_timer_t *t, struct notifier *arg);

/* Asks for a poll at due (monotonic ms), for NOTIFYs held back by the minimum interval. */
static void notifier_hold(struct notifier *n, int64_t due)
{
    if (n->hold_armed && n->hold_due <= due)
        return;
    int64_t wait = due - notify_now_ms();
    if (su_timer_set_interval(n->hold, notify_on_hold, n, (su_duration_t)(wait > 1 ? wait : 1)) < 0)
        return;
    n->hold_armed = true;
    n->hold_due = due;
}

/* Sends the next NOTIFY of s when one is due and none is in flight (RFC 6665 §4.2.2: NOTIFYs of
 * a dialog are not sent in parallel, so they arrive in commit order). t may be NULL when the
 * store could not be read; a NOTIFY that needs it then waits for the next poll. */
static void sub_flush(struct notify_sub *s, struct store_txn *t)
{
    struct notifier *n = s->n;
    if (!sub_has_work(s) || ((s->full_pending || s->nodes_due) && !t))
        return;
    bool full = s->full_pending;
    /* DIFF-15: change reports keep a minimum distance; the initial, refresh and final NOTIFYs
     * are answers to the subscriber and go at once. */
    if (!full && !s->term_reason && !s->force_notify && n->cfg.min_interval_ms > 0) {
        int64_t due = s->last_sent_ms + n->cfg.min_interval_ms;
        if (notify_now_ms() < due) {
            notifier_hold(n, due);
            return;
        }
    }
    struct buf body;
    buf_init(&body, NOTIFY_MAX_NOTIFY_BODY);
    size_t items = 0;
    int rc = notify_diff_open(&body, n->cfg.xcap_root);
    if (rc == 0 && full) {
        rc = sub_render_full(s, t, &body);
        items = 1;
    } else if (rc == 0) {
        rc = sub_render_pending(s, &body, &items);
        if (rc == 0 && s->nodes_due)
            rc = sub_render_nodes(s, t, &body, false, &items);
    }
    if (rc == 0)
        rc = notify_diff_close(&body);
    bool changes = !full && items > 0;
    s->nodes_due = false;
    if (rc == 0 && items == 0 && !s->term_reason && !s->force_notify) {
        /* Nothing the subscriber can see changed (e.g. a document created and deleted again,
         * another element of a watched document). */
        notify_pending_clear(s);
        s->dirty = true;
        buf_release(&body);
        return;
    }
    if (rc < 0) {
        /* Too many documents for one NOTIFY (or out of memory): the state cannot be reported,
         * so the subscription ends (RFC 6665 §4.2.2, "deactivated": the subscriber may retry
         * with a smaller set). */
        log_warn("notifier: NOTIFY body for %s over %d bytes; ending the subscription", s->identity,
                 NOTIFY_MAX_NOTIFY_BODY);
        buf_reset(&body);
        s->term_reason = "deactivated";
        if (notify_diff_open(&body, n->cfg.xcap_root) < 0 || notify_diff_close(&body) < 0) {
            buf_release(&body);
            sub_kill(s);
            return;
        }
    }
    /* Saving advances lazily (a crash then repeats a few changes, which a client recognises by
     * their ETags), except the end of a full state: restored with "full" still set, the
     * subscriber would get the full state again instead of the next change. */
    s->urgent |= full;
    s->full_pending = false;
    s->force_notify = false;
    notify_pending_clear(s);
    s->dirty = true;
    if (changes)
        s->last_sent_ms = notify_now_ms();

    char state[64];
    if (s->term_reason) {
        snprintf(state, sizeof state, "terminated;reason=%s", s->term_reason);
    } else {
        int64_t left = s->expires_at - notify_now();
        snprintf(state, sizeof state, "active;expires=%lld", (long long)(left > 0 ? left : 0));
    }
    /* A transport error may be reported from inside nta_outgoing_tcreate(); the callback then
     * only records it (sending) and it is handled here, once orq is known. */
    s->sending = true;
    s->sync_status = 0;
    nta_outgoing_t *orq = nta_outgoing_tcreate(
        s->leg, sub_on_notify_response, s, NULL, SIP_METHOD_NOTIFY, NULL,
        SIPTAG_CONTACT(nta_agent_contact(n->agent)), SIPTAG_EVENT_STR(s->event),
        SIPTAG_SUBSCRIPTION_STATE_STR(state), SIPTAG_CONTENT_TYPE_STR(NOTIFY_MIME_DIFF),
        SIPTAG_PAYLOAD_STR(body.data), TAG_END());
    s->sending = false;
    buf_release(&body);
    if (orq && s->sync_status >= 200) {
        nta_outgoing_destroy(orq);
        orq = NULL;
    }
    if (!orq) {
        if (!s->term_reason)
            log_warn("notifier: cannot send NOTIFY to %s (%d); subscription removed", s->identity,
                     s->sync_status);
        sub_kill(s);
        return;
    }
    s->orq = orq;
    if (s->term_reason)
        s->final_sent = true;
}

/* Sends what queued up for s while its previous NOTIFY was in flight. Only s is visited: with
 * thousands of subscriptions answering a fan-out, a full poll per answer would cost n². Changes
 * committed meanwhile come with their own wake-up. */
static void sub_continue(struct notify_sub *s)
{
    struct notifier *n = s->n;
    if (n->in_poll) {
        n->poll_again = true;
        return;
    }
    struct store_txn *t = NULL;
    if ((s->full_pending || s->nodes_due) && store_txn_begin(n->store, false, &t) != STORE_OK)
        t = NULL;
    n->in_poll = true;
    sub_flush(s, t);
    n->in_poll = false;
    if (t)
        store_txn_abort(t);
    if (s->urgent && !s->dead)
        notifier_save(n, false);
}

static int sub_on_notify_response(struct notify_sub *s, nta_outgoing_t *orq, const sip_t *sip)
{
    (void)sip;
    struct notifier *n = s->n;
    int status = nta_outgoing_status(orq);
    if (status < 200)
        return 0;
    if (s->sending) {
        s->sync_status = status;
        return 0;
    }
    notifier_enter(n);
    nta_outgoing_destroy(orq);
    s->orq = NULL;
    if (status >= 300) {
        /* RFC 6665 §4.2.2: 481 (and any other failure, including the 408 nta reports on timeout)
         * ends the subscription without a further NOTIFY. */
        if (!s->final_sent)
            log_info("notifier: NOTIFY to %s answered %d; subscription removed", s->identity,
                     status);
        sub_kill(s);
    } else if (s->final_sent) {
        sub_kill(s);
    } else if (sub_has_work(s)) {
        sub_continue(s);
    }
    notifier_leave(n);
    return 0;
}

struct notify_change_ctx {
    struct notifier *n;
    struct store_txn *t;
    size_t count;
    bool more;
};

/* Builds the operation of a change for the patching modes (DIFF-6, DIFF-7): from the engine's
 * detail for element and attribute edits; for a whole-document write, a replace of the document
 * element when the notifier knows that the prolog did not change. Keeps the known prologs. */
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
        /* Records were pruned before we read them: the ETag chains are broken, so every
         * subscription gets the full state instead. */
        log_warn("notifier: change log skipped from %llu to %llu; sending full state",
                 (unsigned long long)n->cursor, (unsigned long long)c->seq);
        for (struct notify_sub *s = n->subs; s; s = s->next) {
            notify_pending_clear(s);
            s->full_pending = true;
        }
    }
    n->cursor = c->seq;
    struct notify_change *ch = NULL;
    bool ops_done = false;
    for (struct notify_sub *s = n->subs; s; s = s->next) {
        if (s->dead || s->final_sent || s->full_pending || c->seq <= s->seq)
            continue;
        bool doc_hit = false, node_hit = false;
        for (size_t i = 0; i < s->watches.n; i++) {
            const struct notify_watch *w = &s->watches.items[i];
            if (!notify_watch_matches(w, &c->key))
                continue;
            if (w->kind == NOTIFY_WATCH_ELEMENT || w->kind == NOTIFY_WATCH_ATTRIBUTE)
                node_hit = true;
            else
                doc_hit = true;
        }
        s->nodes_due |= node_hit;
        if (!doc_hit)
            continue;
        if (!ch) {
            struct buf b;
            buf_init(&b, NOTIFY_SEL_MAX);
            ch = calloc(1, sizeof *ch);
            if (!ch || notify_sel_append(&b, &c->key) < 0 || !(ch->sel = buf_detach(&b, NULL))) {
                buf_release(&b);
                free(ch);
                ch = NULL;
                log_warn("notifier: cannot queue change %llu", (unsigned long long)c->seq);
                s->full_pending = true;
                continue;
            }
            ch->refs = 1;
            ch->seq = c->seq;
            /* DIFF-2: created = new-etag only, deleted = previous-etag only. */
            snprintf(ch->prev, sizeof ch->prev, "%s", c->prev_etag ? c->prev_etag : "");
            snprintf(ch->next, sizeof ch->next, "%s",
                     c->kind == STORE_CHANGE_DELETE || !c->new_etag ? "" : c->new_etag);
        }
        if (s->mode != NOTIFY_NO_PATCHING && !ops_done) {
            notify_change_ops(n, ctx->t, c, ch);
            ops_done = true;
        }
        if (s->n_pending >= NOTIFY_MAX_PENDING) {
            notify_pending_clear(s);
            s->full_pending = true;
            continue;
        }
        struct notify_change **np = realloc(s->pending, (s->n_pending + 1) * sizeof *np);
        if (!np) {
            notify_pending_clear(s);
            s->full_pending = true;
            continue;
        }
        s->pending = np;
        s->pending[s->n_pending++] = ch;
        ch->refs++;
    }
    notify_change_unref(ch);
    return 0;
}

/* Reads the change log after the cursor and sends every due NOTIFY, all from one read snapshot,
 * so a full state and the cursor agree. Re-entrant calls (a response callback fired while
 * sending) only ask for another round. */
static void notifier_poll(struct notifier *n)
{
    if (n->in_poll) {
        n->poll_again = true;
        return;
    }
    n->in_poll = true;
    bool more = false;
    do {
        n->poll_again = false;
        struct store_txn *t = NULL;
        enum store_rc rc = store_txn_begin(n->store, false, &t);
        if (rc != STORE_OK) {
            log_warn("notifier: cannot read the store: %s", store_strerror(rc));
            t = NULL;
        } else {
            struct notify_change_ctx ctx = {.n = n, .t = t};
            rc = store_change_read(t, n->cursor, notify_on_change, &ctx);
            if (rc != STORE_OK)
                log_warn("notifier: cannot read the change log: %s", store_strerror(rc));
            more = ctx.more;
        }
        for (struct notify_sub *s = n->subs; s; s = s->next)
            sub_flush(s, t);
        if (t)
            store_txn_abort(t);
    } while (n->poll_again);
    n->in_poll = false;
    bool urgent = false;
    for (struct notify_sub *s = n->subs; s && !urgent; s = s->next)
        urgent = s->urgent && !s->dead;
    if (urgent)
        notifier_save(n, false);
    if (more)
        notifier_wake(n);
}

/* ---- SUBSCRIBE handling ---- */

static int notify_reply(nta_incoming_t *irq, int status, const char *phrase, tag_type_t tag,
                        tag_value_t value, ...)
{
    ta_list ta;
    ta_start(ta, tag, value);
    nta_incoming_treply(irq, status, phrase, ta_tags(ta));
    (void)(ta_end(ta));
    nta_incoming_destroy(irq);
    return 0;
}

static bool notify_request_trusted(struct notifier *n, nta_incoming_t *irq)
{
    msg_t *msg = nta_incoming_getrequest(irq);
    su_addrinfo_t *ai = msg ? msg_addrinfo(msg) : NULL;
    bool ok = ai && notify_peer_trusted(ai->ai_addr, (const char *const *)n->trusted);
    if (!ok) {
        char addr[INET6_ADDRSTRLEN] = "?";
        if (ai && ai->ai_addr->sa_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)ai->ai_addr)->sin_addr, addr,
                      sizeof addr);
        else if (ai && ai->ai_addr->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)(void *)ai->ai_addr)->sin6_addr, addr,
                      sizeof addr);
        log_warn("notifier: SUBSCRIBE from untrusted peer %s refused", addr);
    }
    if (msg)
        msg_destroy(msg);
    return ok;
}

/* RFC 5875 §4.1 (DIFF-8). */
static bool notify_event_ok(const sip_t *sip)
{
    return sip->sip_event && sip->sip_event->o_type &&
           strcasecmp(sip->sip_event->o_type, "xcap-diff") == 0;
}

static bool notify_accept_ok(const sip_t *sip)
{
    const char *types[32];
    size_t n = 0;
    bool present = false;
    for (const sip_accept_t *a = sip->sip_accept; a; a = a->ac_next) {
        present = true;
        if (n < sizeof types / sizeof types[0])
            types[n++] = a->ac_type;
    }
    if (!present)
        return true;
    return n > 0 && notify_accept_allows(types, n);
}

/* The subscriber: P-Asserted-Identity from a trusted peer (RFC 3325 §5), else the From URI.
 * Every peer reaching this point is trusted (notify_request_trusted()), so From is accepted from
 * it too when the peer asserted nothing. */
static char *notify_subscriber(const sip_t *sip)
{
    for (const sip_unknown_t *u = sip->sip_unknown; u; u = u->un_next)
        if (u->un_name && strcasecmp(u->un_name, "P-Asserted-Identity") == 0)
            return notify_identity_parse(u->un_value);
    if (!sip->sip_from)
        return NULL;
    const url_t *url = sip->sip_from->a_url;
    char raw[1024];
    int len = snprintf(raw, sizeof raw, "%s:%s%s%s%s%s", url->url_scheme ? url->url_scheme : "",
                       url->url_user ? url->url_user : "", url->url_user ? "@" : "",
                       url->url_host ? url->url_host : "", url->url_port ? ":" : "",
                       url->url_port ? url->url_port : "");
    if (len < 0 || (size_t)len >= sizeof raw)
        return NULL;
    return notify_identity_parse(raw);
}

static char *notify_event_value(const sip_t *sip)
{
    const char *id = NULL;
    for (const char *const *p = sip->sip_event->o_params; p && *p; p++)
        if (strncasecmp(*p, "id=", 3) == 0)
            id = *p + 3;
    size_t len = strlen("xcap-diff;id=") + (id ? strlen(id) : 0) + 1;
    char *v = malloc(len);
    if (v)
        snprintf(v, len, "xcap-diff%s%s", id ? ";id=" : "", id ? id : "");
    return v;
}

/* Checks body headers and parses the watched set of a SUBSCRIBE. Returns 0 with *wl filled (and
 * *has_body), or a SIP status with *phrase. */
static int notify_read_body(struct notifier *n, const sip_t *sip, const char *identity,
                            struct notify_watchlist *wl, bool *has_body, const char **phrase)
{
    *has_body = sip->sip_payload && sip->sip_payload->pl_len > 0;
    memset(wl, 0, sizeof *wl);
    if (!*has_body)
        return 0;
    if (sip->sip_payload->pl_len > NOTIFY_MAX_BODY) {
        *phrase = "Resource list too large";
        return 413;
    }
    if (!sip->sip_content_type || !sip->sip_content_type->c_type) {
        *phrase = "Missing Content-Type";
        return 400;
    }
    if (strcasecmp(sip->sip_content_type->c_type, NOTIFY_MIME_LIST) != 0) {
        *phrase = "Unsupported Media Type";
        return 415;
    }
    size_t skipped = 0;
    int st = notify_entries_parse(sip->sip_payload->pl_data, sip->sip_payload->pl_len,
                                  n->cfg.xcap_root, n->cfg.role, wl, &skipped);
    if (st == 400)
        *phrase = "Malformed resource list";
    else if (st == 413)
        *phrase = "Too many entries";
    else if (st != 0)
        *phrase = "Internal Server Error";
    if (st != 0)
        return st;
    bool server = notify_identity_is_server(identity, (const char *const *)n->servers);
    size_t denied = notify_watchlist_authorize(wl, identity, server);
    if (wl->n == 0) {
        log_warn("notifier: SUBSCRIBE from %s watches nothing readable (%zu left out, %zu "
                 "denied)",
                 identity, skipped, denied);
        *phrase = "Nothing to watch";
        notify_watchlist_release(wl);
        return 403;
    }
    return 0;
}

static int notify_take_body(const sip_t *sip, char **body, size_t *len)
{
    *len = sip->sip_payload->pl_len;
    if (!(*body = malloc(*len + 1)))
        return -1;
    memcpy(*body, sip->sip_payload->pl_data, *len);
    (*body)[*len] = '\0';
    return 0;
}

static size_t notify_count_user(const struct notifier *n, const char *identity)
{
    size_t count = 0;
    for (const struct notify_sub *s = n->subs; s; s = s->next)
        if (!s->dead && xcap_uri_xui_equal(s->identity, identity))
            count++;
    return count;
}

/* Remote target and route set of the dialog as strings, for the persisted record. */
static int sub_capture_route(struct notify_sub *s)
{
    const sip_route_t *route = NULL;
    const sip_contact_t *target = NULL;
    if (nta_leg_get_route(s->leg, &route, &target) < 0 || !target)
        return -1;
    su_home_t *home = su_home_new(sizeof *home);
    if (!home)
        return -1;
    char *t = url_as_string(home, target->m_url);
    struct buf b;
    buf_init(&b, NOTIFY_MAX_BODY);
    int rc = t ? 0 : -1;
    for (const sip_route_t *r = route; rc == 0 && r; r = r->r_next) {
        char *one = sip_header_as_string(home, (const sip_header_t *)(const void *)r);
        rc = one ? buf_printf(&b, "%s%s", r == route ? "" : ", ", one) : -1;
    }
    if (rc == 0 && buf_puts(&b, "") == 0) {
        free(s->target);
        free(s->route);
        s->target = strdup(t);
        s->route = buf_detach(&b, NULL);
        rc = s->target && s->route ? 0 : -1;
    }
    buf_release(&b);
    su_home_unref(home);
    return rc;
}

/* Call-ID and both ends of the dialog (our tag included), for the persisted record. */
static int sub_capture_dialog(struct notify_sub *s, const sip_t *sip)
{
    su_home_t *home = su_home_new(sizeof *home);
    if (!home)
        return -1;
    char *to = url_as_string(home, sip->sip_to->a_url);
    char *from = url_as_string(home, sip->sip_from->a_url);
    const char *ltag = nta_leg_get_tag(s->leg), *rtag = sip->sip_from->a_tag;
    int rc = to && from && ltag ? 0 : -1;
    if (rc == 0) {
        if (asprintf(&s->local, "<%s>;tag=%s", to, ltag) < 0)
            s->local = NULL;
        if (asprintf(&s->remote, rtag ? "<%s>;tag=%s" : "<%s>%s", from, rtag ? rtag : "") < 0)
            s->remote = NULL;
        s->call_id = strdup(sip->sip_call_id->i_id);
        s->key = strdup(ltag);
        rc = s->local && s->remote && s->call_id && s->key ? 0 : -1;
    }
    su_home_unref(home);
    return rc == 0 ? sub_capture_route(s) : -1;
}

static void sub_set_expiry(struct notify_sub *s, unsigned expires)
{
    s->expires_at = notify_now() + expires;
    s->expires_wall = notify_wall() + expires;
}

static int sub_on_request(void *magic, nta_leg_t *leg, nta_incoming_t *irq, const sip_t *sip);

/* Common checks of initial and refresh SUBSCRIBEs, in RFC 6665 order: event package, Accept,
 * duration. Returns 0 or the status already answered (irq destroyed). */
static int notify_check_subscribe(struct notifier *n, nta_incoming_t *irq, const sip_t *sip,
                                  unsigned *expires)
{
    if (!notify_event_ok(sip)) {
        notify_reply(irq, SIP_489_BAD_EVENT, SIPTAG_ALLOW_EVENTS_STR("xcap-diff"), TAG_END());
        return 489;
    }
    if (!notify_accept_ok(sip)) {
        notify_reply(irq, SIP_406_NOT_ACCEPTABLE, SIPTAG_ACCEPT_STR(NOTIFY_MIME_DIFF), TAG_END());
        return 406;
    }
    bool present = sip->sip_expires != NULL;
    if (notify_expires_decide(&n->cfg, present, present ? sip->sip_expires->ex_delta : 0,
                              expires) != 0) {
        char min[24];
        snprintf(min, sizeof min, "%u", n->cfg.min_expires);
        notify_reply(irq, SIP_423_INTERVAL_TOO_BRIEF, SIPTAG_MIN_EXPIRES_STR(min), TAG_END());
        return 423;
    }
    return 0;
}

static void notify_subscribe_new(struct notifier *n, nta_incoming_t *irq, const sip_t *sip)
{
    if (!notify_request_trusted(n, irq)) {
        notify_reply(irq, 403, "Untrusted peer", TAG_END());
        return;
    }
    unsigned expires;
    if (notify_check_subscribe(n, irq, sip, &expires) != 0)
        return;
    if (!sip->sip_contact) {
        notify_reply(irq, 400, "Missing Contact", TAG_END());
        return;
    }
    char *identity = notify_subscriber(sip);
    if (!identity) {
        log_warn("notifier: SUBSCRIBE without a usable identity refused");
        notify_reply(irq, 403, "No identity", TAG_END());
        return;
    }
    struct notify_watchlist wl;
    bool has_body;
    const char *phrase = NULL;
    int st = notify_read_body(n, sip, identity, &wl, &has_body, &phrase);
    if (st == 0 && !has_body) {
        st = 400;
        phrase = "Missing resource list";
    }
    if (st == 0 && (n->stopping || n->n_subs >= NOTIFY_MAX_SUBS)) {
        st = 503;
        phrase = n->stopping ? "Shutting down" : "Too many subscriptions";
        if (!n->stopping)
            log_warn("notifier: %d subscriptions reached; SUBSCRIBE from %s refused",
                     NOTIFY_MAX_SUBS, identity);
    } else if (st == 0 && notify_count_user(n, identity) >= NOTIFY_MAX_SUBS_PER_USER) {
        st = 403;
        phrase = "Too many subscriptions for this user";
        log_warn("notifier: %s has %d subscriptions; SUBSCRIBE refused", identity,
                 NOTIFY_MAX_SUBS_PER_USER);
    }
    if (st != 0) {
        if (st == 413 || st == 415 || st == 400)
            log_info("notifier: SUBSCRIBE from %s: %d %s", identity, st, phrase);
        notify_watchlist_release(&wl);
        free(identity);
        if (st == 415)
            notify_reply(irq, st, phrase, SIPTAG_ACCEPT_STR(NOTIFY_MIME_LIST), TAG_END());
        else if (st == 503)
            notify_reply(irq, st, phrase, SIPTAG_RETRY_AFTER_STR("60"), TAG_END());
        else
            notify_reply(irq, st, phrase, TAG_END());
        return;
    }

    struct notify_sub *s = calloc(1, sizeof *s);
    if (!s || !(s->event = notify_event_value(sip)) ||
        notify_take_body(sip, &s->body, &s->body_len) < 0) {
        if (s)
            free(s->event);
        free(s);
        notify_watchlist_release(&wl);
        free(identity);
        log_error("notifier: out of memory");
        notify_reply(irq, SIP_500_INTERNAL_SERVER_ERROR, TAG_END());
        return;
    }
    s->n = n;
    s->identity = identity;
    s->watches = wl;
    s->mode = notify_mode_parse(sip->sip_event->o_params);
    s->seq = n->cursor;
    sub_set_expiry(s, expires);
    /* The dialog (RFC 6665 §4.1.2.2): local = To, remote = From, target from Contact. */
    /* Our CSeq starts at a known value (nta would pick one only when the first NOTIFY goes),
     * so the saved record can always restore a higher one. */
    s->leg =
        nta_leg_tcreate(n->agent, sub_on_request, s, SIPTAG_CALL_ID(sip->sip_call_id),
                        SIPTAG_FROM(sip->sip_to), SIPTAG_TO(sip->sip_from), SIPTAG_CSEQ_STR("1"),
                        NTATAG_REMOTE_CSEQ(sip->sip_cseq->cs_seq), TAG_END());
    if (!s->leg || !nta_leg_tag(s->leg, NULL) ||
        nta_leg_server_route(s->leg, sip->sip_record_route, sip->sip_contact) < 0 ||
        sub_capture_dialog(s, sip) < 0) {
        sub_free(s);
        log_error("notifier: cannot create a dialog");
        notify_reply(irq, SIP_500_INTERNAL_SERVER_ERROR, TAG_END());
        return;
    }
    s->next = n->subs;
    n->subs = s;
    n->n_subs++;

    char exp[24];
    snprintf(exp, sizeof exp, "%u", expires);
    nta_incoming_tag(irq, nta_leg_get_tag(s->leg));
    notify_reply(irq, SIP_200_OK, SIPTAG_CONTACT(nta_agent_contact(n->agent)),
                 SIPTAG_EXPIRES_STR(exp), SIPTAG_ALLOW_EVENTS_STR("xcap-diff"), TAG_END());
    log_info("notifier: %s subscribed to %zu resource(s) for %us (%s)", s->identity, s->watches.n,
             expires, notify_mode_name(s->mode));
    /* Saved before the initial NOTIFY leaves, as already sent: after a crash in between, the
     * subscriber gets the changes that follow rather than a second full state in place of the
     * next change (it re-subscribes if it never saw the first). */
    if (expires > 0) {
        s->dirty = true;
        notifier_save(n, false);
    }
    /* DIFF-12: the initial NOTIFY carries the full state; Expires: 0 is a fetch (RFC 6665
     * §4.4.3), answered by one terminated NOTIFY and never saved. */
    s->full_pending = true;
    if (expires == 0)
        s->term_reason = "timeout";
    notifier_poll(n);
}

/* Refresh, re-targeting or ending an existing subscription (RFC 6665 §4.1.2.2, DIFF-16/17). */
static int sub_refresh(struct notify_sub *s, nta_incoming_t *irq, const sip_t *sip)
{
    struct notifier *n = s->n;
    if (s->dead || s->term_reason)
        return notify_reply(irq, 481, "Subscription does not exist", TAG_END());
    if (!notify_request_trusted(n, irq))
        return notify_reply(irq, 403, "Untrusted peer", TAG_END());
    unsigned expires;
    if (notify_check_subscribe(n, irq, sip, &expires) != 0)
        return 0;
    struct notify_watchlist wl;
    bool has_body;
    const char *phrase = NULL;
    int st = notify_read_body(n, sip, s->identity, &wl, &has_body, &phrase);
    char *body = NULL;
    size_t body_len = 0;
    if (st == 0 && has_body && notify_take_body(sip, &body, &body_len) < 0) {
        notify_watchlist_release(&wl);
        st = 500;
        phrase = "Internal Server Error";
    }
    if (st != 0) {
        if (st == 415)
            return notify_reply(irq, st, phrase, SIPTAG_ACCEPT_STR(NOTIFY_MIME_LIST), TAG_END());
        return notify_reply(irq, st, phrase, TAG_END());
    }
    if (sip->sip_contact && nta_leg_server_route(s->leg, NULL, sip->sip_contact) == 0)
        sub_capture_route(s);
    char exp[24];
    snprintf(exp, sizeof exp, "%u", expires);
    notify_reply(irq, SIP_200_OK, SIPTAG_CONTACT(nta_agent_contact(n->agent)),
                 SIPTAG_EXPIRES_STR(exp), TAG_END());
    sub_set_expiry(s, expires);
    bool full = false;
    if (has_body) {
        /* DIFF-17: a new watched set replaces the old one; its full state follows. */
        notify_watchlist_release(&s->watches);
        s->watches = wl;
        free(s->body);
        s->body = body;
        s->body_len = body_len;
        notify_pending_clear(s);
        full = true;
    } else if (s->n_pending > 0 || s->full_pending) {
        s->force_notify = true; /* what is queued goes now, keeping the ETag chain */
    } else {
        full = true;
    }
    if (expires == 0) {
        s->term_reason = "timeout";
        log_info("notifier: %s unsubscribed", s->identity);
    }
    s->dirty = true;
    notifier_save(n, false); /* as for a new subscription, before its NOTIFY */
    s->full_pending |= full;
    notifier_poll(n);
    return 0;
}

static int sub_on_request(void *magic, nta_leg_t *leg, nta_incoming_t *irq, const sip_t *sip)
{
    (void)leg;
    struct notify_sub *s = magic;
    struct notifier *n = s->n;
    notifier_enter(n);
    int rc;
    switch (sip->sip_request->rq_method) {
    case sip_method_subscribe:
        rc = sub_refresh(s, irq, sip);
        break;
    case sip_method_ack:
        nta_incoming_destroy(irq);
        rc = 0;
        break;
    default:
        rc =
            notify_reply(irq, SIP_405_METHOD_NOT_ALLOWED, SIPTAG_ALLOW_STR("SUBSCRIBE"), TAG_END());
        break;
    }
    notifier_leave(n);
    return rc;
}

/* Requests outside any dialog. */
static int notifier_on_request(void *magic, nta_leg_t *leg, nta_incoming_t *irq, const sip_t *sip)
{
    (void)leg;
    struct notifier *n = magic;
    notifier_enter(n);
    int rc = 0;
    sip_method_t m = sip->sip_request->rq_method;
    if (m == sip_method_ack) {
        nta_incoming_destroy(irq);
    } else if (sip->sip_to && sip->sip_to->a_tag) {
        /* In-dialog request for a dialog we do not know (expired, or ended). */
        notify_reply(irq, 481, "Subscription does not exist", TAG_END());
    } else if (m == sip_method_subscribe) {
        notify_subscribe_new(n, irq, sip);
    } else if (m == sip_method_options) {
        notify_reply(irq, SIP_200_OK, SIPTAG_ALLOW_STR("SUBSCRIBE, OPTIONS"),
                     SIPTAG_ALLOW_EVENTS_STR("xcap-diff"), TAG_END());
    } else {
        notify_reply(irq, SIP_405_METHOD_NOT_ALLOWED, SIPTAG_ALLOW_STR("SUBSCRIBE, OPTIONS"),
                     TAG_END());
    }
    notifier_leave(n);
    return rc;
}

/* ---- restart: subscriptions saved by an earlier run ---- */

struct notify_saved {
    char *key;
    struct notify_record rec;
    bool ok;
};

struct notify_scan_ctx {
    struct notify_saved *v;
    size_t n;
    size_t cap;
    bool failed;
};

static int notify_scan_one(void *cls, const void *key, size_t klen, const void *val, size_t vlen)
{
    struct notify_scan_ctx *c = cls;
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 16;
        struct notify_saved *v = realloc(c->v, nc * sizeof *v);
        if (!v) {
            c->failed = true;
            return 1;
        }
        c->v = v;
        c->cap = nc;
    }
    struct notify_saved *e = &c->v[c->n];
    memset(e, 0, sizeof *e);
    if (!(e->key = strndup(key, klen))) {
        c->failed = true;
        return 1;
    }
    e->ok = notify_record_decode(val, vlen, &e->rec) == 0;
    c->n++;
    return 0;
}

/* Re-creates a saved subscription: its dialog (nta leg with the same Call-ID, tags, route set,
 * target and a CSeq safely above the last one used), its watched set (authorized again under
 * the current configuration) and how far it was notified. Returns NULL when it cannot or need
 * not live on (expired, unreadable). */
static struct notify_sub *notify_restore_one(struct notifier *n, struct notify_saved *e)
{
    struct notify_record *r = &e->rec;
    int64_t left = r->expires - notify_wall();
    if (!e->ok || left <= 0)
        return NULL;
    struct notify_sub *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->n = n;
    size_t skipped = 0;
    if (notify_entries_parse(r->body, r->body_len, n->cfg.xcap_root, n->cfg.role, &s->watches,
                             &skipped) != 0) {
        free(s);
        return NULL;
    }
    notify_watchlist_authorize(
        &s->watches, r->identity,
        notify_identity_is_server(r->identity, (const char *const *)n->servers));
    su_home_t *home = su_home_new(sizeof *home);
    sip_route_t *route = home && r->route[0] ? sip_route_make(home, r->route) : NULL;
    char *contact_str = NULL;
    if (asprintf(&contact_str, "<%s>", r->target) < 0)
        contact_str = NULL;
    sip_contact_t *contact = home && contact_str ? sip_contact_make(home, contact_str) : NULL;
    free(contact_str);
    uint32_t cseq = r->cseq + NOTIFY_CSEQ_MARGIN;
    sip_cseq_t *cs = home ? sip_cseq_create(home, cseq, sip_method_notify, "NOTIFY") : NULL;
    if (contact && cs && (!r->route[0] || route))
        s->leg = nta_leg_tcreate(n->agent, sub_on_request, s, SIPTAG_CALL_ID_STR(r->call_id),
                                 SIPTAG_FROM_STR(r->local), SIPTAG_TO_STR(r->remote),
                                 TAG_IF(route, SIPTAG_ROUTE(route)), NTATAG_TARGET(contact),
                                 SIPTAG_CSEQ(cs), NTATAG_REMOTE_CSEQ(r->rseq), TAG_END());
    su_home_unref(home);
    /* The record's strings move into the subscription. */
    s->key = e->key;
    e->key = NULL;
    s->call_id = r->call_id;
    s->local = r->local;
    s->remote = r->remote;
    s->target = r->target;
    s->route = r->route;
    s->identity = r->identity;
    s->event = r->event;
    s->body = r->body;
    s->body_len = r->body_len;
    r->call_id = r->local = r->remote = r->target = r->route = r->identity = r->event = NULL;
    r->body = NULL;
    if (!s->leg) {
        log_warn("notifier: cannot restore the dialog of %s", s->identity);
        s->forget = true;
        return s; /* the caller forgets the record and frees s */
    }
    s->mode = r->mode;
    s->seq = r->seq;
    s->full_pending = r->full;
    s->expires_at = notify_now() + left;
    s->expires_wall = r->expires;
    for (size_t i = 0; i < s->watches.n && i < r->n_hashes; i++)
        s->watches.items[i].last_hash = r->hashes[i];
    if (s->watches.n == 0)
        s->term_reason = "deactivated"; /* nothing readable any more */
    return s;
}

static void notifier_restore(struct notifier *n)
{
    struct store_txn *t;
    struct notify_scan_ctx c = {0};
    enum store_rc rc = store_txn_begin(n->store, false, &t);
    if (rc == STORE_OK) {
        rc = store_kv_scan(t, NOTIFY_TABLE, NULL, 0, notify_scan_one, &c);
        store_txn_abort(t);
    }
    if (rc == STORE_INVALID) {
        log_info("notifier: the store has no %s table; subscriptions will not survive a "
                 "restart",
                 NOTIFY_TABLE);
        return;
    }
    n->persist = rc == STORE_OK;
    if (rc != STORE_OK)
        log_warn("notifier: cannot read saved subscriptions: %s", store_strerror(rc));
    size_t restored = 0, dropped = 0;
    bool any = false;
    uint64_t low = 0;
    for (size_t i = 0; i < c.n; i++) {
        struct notify_sub *s = n->persist ? notify_restore_one(n, &c.v[i]) : NULL;
        if (!s && n->persist && c.v[i].key) {
            /* expired or unreadable: its record goes */
            s = calloc(1, sizeof *s);
            if (s) {
                s->n = n;
                s->key = c.v[i].key;
                c.v[i].key = NULL;
                s->forget = true;
            }
        }
        if (s && s->forget) {
            s->dead = true;
            n->reap_due = true;
            dropped++;
        } else if (s) {
            restored++;
            if (!any || s->seq < low)
                low = s->seq;
            any = true;
        }
        if (s) {
            s->next = n->subs;
            n->subs = s;
            n->n_subs++;
        }
        free(c.v[i].key);
        notify_record_release(&c.v[i].rec);
    }
    free(c.v);
    if (any)
        n->cursor = low;
    notifier_reap(n); /* deletes the records of the dropped ones */
    if (restored || dropped)
        log_info("notifier: %zu subscription(s) restored, %zu expired or unreadable dropped",
                 restored, dropped);
}

/* ---- loop events ---- */

static void notifier_on_deadline(struct notifier *n, su_timer_t *t, struct notifier *arg)
{
    (void)t;
    (void)arg;
    if (!n->broken) {
        n->broken = true;
        su_root_break(n->root);
    }
}

/* Shutdown (DIFF-16). Saved subscriptions stay: their state is written at teardown and they
 * resume after the restart. Others get a final NOTIFY with reason=deactivated (RFC 6665 §4.2.2:
 * the subscriber should re-subscribe, which suits a restart better than "noresource", which says
 * the resource is gone). Answers to NOTIFYs in flight are awaited at most NOTIFY_STOP_WAIT_MS. */
static void notifier_begin_stop(struct notifier *n)
{
    n->stopping = true;
    if (!n->persist)
        for (struct notify_sub *s = n->subs; s; s = s->next)
            if (!s->dead && !s->final_sent && !s->term_reason)
                s->term_reason = "deactivated";
    notifier_poll(n);
    n->deadline = su_timer_create(su_root_task(n->root), NOTIFY_STOP_WAIT_MS);
    if (!n->deadline || su_timer_set(n->deadline, notifier_on_deadline, n) < 0)
        notifier_on_deadline(n, NULL, n);
}

static int notifier_on_wake(struct notifier *n, su_wait_t *w, struct notifier *arg)
{
    (void)w;
    (void)arg;
    uint64_t value;
    while (read(n->efd, &value, sizeof value) > 0)
        continue;
    notifier_enter(n);
    if (atomic_load(&n->stop_requested) && !n->stopping)
        notifier_begin_stop(n);
    else if (!n->stopping)
        notifier_poll(n);
    notifier_leave(n);
    return 0;
}

static void notify_on_hold(struct notifier *n, su_timer_t *t, struct notifier *arg)
{
    (void)t;
    (void)arg;
    n->hold_armed = false;
    notifier_enter(n);
    if (!n->stopping)
        notifier_poll(n);
    notifier_leave(n);
}

/* Once a second: expiry (RFC 6665 §4.2.2, reason=timeout), a poll of the change log, which also
 * covers commits made by other processes on the same store (xdmctl) that cannot wake us, and the
 * lazy save of subscription states. */
static void notifier_on_tick(struct notifier *n, su_timer_t *t, struct notifier *arg)
{
    (void)t;
    (void)arg;
    notifier_enter(n);
    int64_t now = notify_now();
    for (struct notify_sub *s = n->subs; s; s = s->next) {
        if (!s->dead && !s->term_reason && now >= s->expires_at) {
            s->term_reason = "timeout";
            log_info("notifier: subscription of %s expired", s->identity);
        }
    }
    if (!n->stopping) {
        notifier_poll(n);
        notifier_save(n, false);
    }
    notifier_leave(n);
}

static void notifier_started(struct notifier *n, int rc)
{
    pthread_mutex_lock(&n->lock);
    n->start_rc = rc;
    pthread_cond_signal(&n->cond);
    pthread_mutex_unlock(&n->lock);
}

static int notifier_setup(struct notifier *n)
{
    struct store_txn *t;
    enum store_rc rc = store_txn_begin(n->store, false, &t);
    if (rc == STORE_OK) {
        rc = store_change_last(t, &n->cursor);
        store_txn_abort(t);
    }
    if (rc != STORE_OK) {
        log_error("notifier: cannot read the change log: %s", store_strerror(rc));
        return -1;
    }
    if (!(n->root = su_root_create(n))) {
        log_error("notifier: cannot create the SIP event loop");
        return -1;
    }
    char url[300];
    bool v6 = strchr(n->cfg.host, ':') != NULL;
    snprintf(url, sizeof url, "sip:%s%s%s:%u", v6 ? "[" : "", n->cfg.host, v6 ? "]" : "",
             (unsigned)n->cfg.port);
    const char *contact = url;
    /* A server (PS, RLS) keeps all its subscriptions on one TCP connection, and a change of a
     * widely watched document sends one NOTIFY per subscription at once: the transport queue
     * must hold them all (sofia's default of 64 fails the rest with ENOBUFS). */
    n->agent = nta_agent_create(n->root, URL_STRING_MAKE(contact), NULL, NULL, NTATAG_UA(1),
                                NTATAG_MAXSIZE(NOTIFY_SIP_MAXSIZE),
                                TPTAG_QUEUESIZE(NOTIFY_MAX_SUBS + 64), TAG_END());
    if (!n->agent) {
        log_error("notifier: cannot listen on %s (UDP and TCP; port in use?)", url);
        return -1;
    }
    const sip_contact_t *m = nta_agent_contact(n->agent);
    n->port = (uint16_t)(m && m->m_url->url_port ? atoi(m->m_url->url_port) : 0);
    n->default_leg =
        nta_leg_tcreate(n->agent, notifier_on_request, n, NTATAG_NO_DIALOG(1), TAG_END());
    if (!n->default_leg) {
        log_error("notifier: cannot create the default SIP leg");
        return -1;
    }
    su_wait_t w;
    if (su_wait_create(&w, n->efd, SU_WAIT_IN) < 0 ||
        (n->wait_index = su_root_register(n->root, &w, notifier_on_wake, n, 0)) < 0) {
        log_error("notifier: cannot register the wake-up descriptor");
        n->wait_index = -1;
        return -1;
    }
    n->tick = su_timer_create(su_root_task(n->root), 1000);
    n->hold = su_timer_create(su_root_task(n->root), 0);
    if (!n->tick || !n->hold || su_timer_set_for_ever(n->tick, notifier_on_tick, n) < 0) {
        log_error("notifier: cannot start the timers");
        return -1;
    }
    notifier_restore(n);
    /* Changes committed while we were down are reported on the first turn of the loop. */
    notifier_wake(n);
    return 0;
}

static void notifier_teardown(struct notifier *n)
{
    if (n->agent)
        notifier_save(n, true);
    for (struct notify_sub *s = n->subs; s; s = s->next) {
        s->dead = true;
        s->forget = false;
    }
    n->reap_due = true;
    notifier_reap(n);
    notify_known_clear(n);
    if (n->tick)
        su_timer_destroy(n->tick);
    if (n->hold)
        su_timer_destroy(n->hold);
    if (n->deadline)
        su_timer_destroy(n->deadline);
    if (n->wait_index > 0)
        su_root_deregister(n->root, n->wait_index);
    if (n->default_leg)
        nta_leg_destroy(n->default_leg);
    if (n->agent)
        nta_agent_destroy(n->agent);
    if (n->root)
        su_root_destroy(n->root);
}

static void *notifier_main(void *arg)
{
    struct notifier *n = arg;
    if (su_init() != 0) {
        log_error("notifier: cannot initialise sofia-sip");
        notifier_started(n, -1);
        return NULL;
    }
    n->wait_index = -1;
    if (notifier_setup(n) < 0) {
        notifier_teardown(n);
        su_deinit();
        notifier_started(n, -1);
        return NULL;
    }
    log_info("notifier: xcap-diff SIP on %s port %u (UDP, TCP)", n->cfg.host, (unsigned)n->port);
    notifier_started(n, 1);
    su_root_run(n->root);
    notifier_teardown(n);
    su_deinit();
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Public API (any thread)                                                                     */

static void notifier_free(struct notifier *n)
{
    if (n->efd >= 0)
        close(n->efd);
    pthread_mutex_destroy(&n->lock);
    pthread_cond_destroy(&n->cond);
    free(n->host);
    free(n->xcap_root);
    notify_strv_free(n->trusted);
    notify_strv_free(n->servers);
    free(n);
}

int notifier_start(const struct notifier_config *cfg, struct store *store, struct notifier **out)
{
    *out = NULL;
    struct notifier *n = calloc(1, sizeof *n);
    if (!n) {
        log_error("notifier: out of memory");
        return -1;
    }
    n->efd = -1;
    pthread_mutex_init(&n->lock, NULL);
    pthread_cond_init(&n->cond, NULL);
    atomic_init(&n->stop_requested, false);
    n->cfg = *cfg;
    n->store = store;
    n->host = strdup(cfg->host ? cfg->host : "127.0.0.1");
    n->xcap_root = strdup(cfg->xcap_root ? cfg->xcap_root : "");
    n->trusted = notify_strv_dup(cfg->trusted_peers);
    n->servers = notify_strv_dup(cfg->server_identities);
    if (!n->host || !n->xcap_root || (cfg->trusted_peers && !n->trusted) ||
        (cfg->server_identities && !n->servers)) {
        log_error("notifier: out of memory");
        notifier_free(n);
        return -1;
    }
    n->cfg.host = n->host;
    n->cfg.xcap_root = n->xcap_root;
    n->cfg.trusted_peers = (const char *const *)n->trusted;
    n->cfg.server_identities = (const char *const *)n->servers;
    n->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (n->efd < 0) {
        log_error("notifier: eventfd: %s", strerror(errno));
        notifier_free(n);
        return -1;
    }
    int err = pthread_create(&n->thread, NULL, notifier_main, n);
    if (err != 0) {
        log_error("notifier: cannot start the SIP thread: %s", strerror(err));
        notifier_free(n);
        return -1;
    }
    pthread_mutex_lock(&n->lock);
    while (n->start_rc == 0)
        pthread_cond_wait(&n->cond, &n->lock);
    int rc = n->start_rc;
    pthread_mutex_unlock(&n->lock);
    if (rc < 0) {
        pthread_join(n->thread, NULL);
        notifier_free(n);
        return -1;
    }
    *out = n;
    return 0;
}

uint16_t notifier_port(const struct notifier *n)
{
    return n->port;
}

void notifier_wake(struct notifier *n)
{
    if (!n)
        return;
    /* write(2) on an eventfd is async-signal-safe; EAGAIN means a wake-up is already pending. */
    uint64_t one = 1;
    ssize_t w = write(n->efd, &one, sizeof one);
    (void)w;
}

void notifier_stop(struct notifier *n)
{
    if (!n)
        return;
    atomic_store(&n->stop_requested, true);
    notifier_wake(n);
    pthread_join(n->thread, NULL);
    notifier_free(n);
}
