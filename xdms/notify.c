/* The xcap-diff notifier (RFC 5875 event package, RFC 5874 format, RFC 6665 subscriptions),
 * document level. DESIGN §5: one thread with its own sofia-sip event loop; HTTP threads only append
 * to the change log (in their commit) and call notifier_wake(). Everything below the "SIP thread"
 * line runs in that thread only, so the subscription list needs no lock.
 *
 * nta (transactions and dialogs) is used rather than nua: the notifier answers SUBSCRIBE itself,
 * owns the NOTIFY sequencing (one NOTIFY in flight per dialog, later changes queued behind it in
 * commit order) and decides termination, which is simpler to get right without nua's event
 * server in between. */
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

#include "buf.h"
#include "log.h"
#include "notify_internal.h"
#include "status.h"
#include "store.h"
#include "usage.h"
#include "xcap_uri.h"
#include "xdoc.h"

#define NOTIFY_NS_LISTS "urn:ietf:params:xml:ns:resource-lists"
#define NOTIFY_MAX_CHANGES_PER_POLL 4096
#define NOTIFY_STOP_WAIT_MS 900
#define NOTIFY_SIP_MAXSIZE (NOTIFY_MAX_BODY + 16 * 1024)

/* ------------------------------------------------------------------------------------------ */
/* Pure helpers (notify_internal.h)                                                            */

void notify_watchlist_release(struct notify_watchlist *wl)
{
    for (size_t i = 0; i < wl->n; i++) {
        free(wl->items[i].auid);
        free(wl->items[i].xui);
        free(wl->items[i].path);
    }
    free(wl->items);
    wl->items = NULL;
    wl->n = 0;
}

static bool notify_watch_same(const struct notify_watch *a, const struct notify_watch *b)
{
    return a->global == b->global && a->is_dir == b->is_dir && strcmp(a->auid, b->auid) == 0 &&
           strcmp(a->path, b->path) == 0 &&
           (a->global || (a->xui && b->xui && strcmp(a->xui, b->xui) == 0));
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

/* Turns one entry into a watch. Returns 1 added, 0 left out, -1 out of memory. */
static int notify_entry_add(const char *uri, const char *xcap_root, enum xdms_role role,
                            struct notify_watchlist *wl)
{
    const char *rel = notify_entry_relative(uri, xcap_root);
    if (!rel || *rel == '\0' || strpbrk(rel, "?#"))
        return 0;
    size_t rlen = strlen(rel);
    char *raw = malloc(rlen + 2);
    if (!raw)
        return -1;
    raw[0] = '/';
    memcpy(raw + 1, rel, rlen + 1);
    struct xcap_uri u;
    struct xcap_err err = {0};
    enum xcap_status st = xcap_uri_parse("", raw, NULL, &u, &err);
    free(raw);
    xcap_err_release(&err);
    if (st != XCAP_OK)
        return 0;
    /* Element and attribute subscriptions (DIFF-5, DIFF-14) are not served yet. */
    const struct appusage *au = u.node_sel ? NULL : appusage_find(role, u.auid);
    if (!au) {
        xcap_uri_release(&u);
        return 0;
    }
    struct notify_watch w = {
        .au = au,
        .auid = u.auid,
        .global = u.tree == XCAP_TREE_GLOBAL,
        .xui = u.tree == XCAP_TREE_USERS ? u.xui : NULL,
        .path = u.path,
        .is_dir = u.is_dir,
    };
    if (w.is_dir && w.path[0] != '\0') {
        size_t pl = strlen(w.path);
        char *np = realloc(w.path, pl + 2);
        if (!np) {
            xcap_uri_release(&u);
            return -1;
        }
        np[pl] = '/';
        np[pl + 1] = '\0';
        w.path = u.path = np;
    }
    for (size_t i = 0; i < wl->n; i++) {
        if (notify_watch_same(&wl->items[i], &w)) {
            xcap_uri_release(&u);
            return 0;
        }
    }
    struct notify_watch *items = realloc(wl->items, (wl->n + 1) * sizeof *items);
    if (!items) {
        xcap_uri_release(&u);
        return -1;
    }
    wl->items = items;
    wl->items[wl->n++] = w;
    /* The watch now owns auid, xui and path; release the rest. */
    u.auid = u.path = NULL;
    if (!w.global)
        u.xui = NULL;
    xcap_uri_release(&u);
    return 1;
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
         * every user's documents. */
        bool ok = is_server || w->global || (w->xui && xcap_uri_xui_equal(w->xui, identity));
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
            free(w->auid);
            free(w->xui);
            free(w->path);
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
    if (!global && !xcap_uri_xui_equal(w->xui, k->xui))
        return false;
    if (w->is_dir ? strncmp(k->path, w->path, strlen(w->path)) != 0 : strcmp(k->path, w->path) != 0)
        return false;
    return !(w->hide_server_owned && usage_server_owned(w->au, k));
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

int notify_diff_document(struct buf *b, const char *sel, const char *prev_etag,
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
    return buf_puts(b, "/>\n") < 0 ? -1 : 0;
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

/* ------------------------------------------------------------------------------------------ */
/* State                                                                                       */

/* One queued change for a subscription, reported in commit order (DIFF-13, DIFF-19). */
struct notify_pending {
    char *sel;
    char prev[STORE_ETAG_MAX];
    char next[STORE_ETAG_MAX];
};

/* One subscription = one dialog. Invariants: at most one NOTIFY in flight (orq); once final_sent,
 * nothing more is sent and the subscription is freed when that NOTIFY completes; a dead
 * subscription is only waiting to be freed outside any callback of its own. */
struct notify_sub {
    struct notify_sub *next;
    struct notifier *n;
    nta_leg_t *leg;
    nta_outgoing_t *orq;
    char *identity;
    char *event; /* Event header value echoed in NOTIFY (type and id, RFC 6665 §8.2.1) */
    struct notify_watchlist watches;
    int64_t expires_at; /* monotonic seconds */
    struct notify_pending *pending;
    size_t n_pending;
    bool full_pending;       /* the next NOTIFY carries the full state (DIFF-12) */
    const char *term_reason; /* set: the next NOTIFY is the final one */
    bool final_sent;
    bool dead;
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
    su_timer_t *deadline;
    int wait_index;
    struct notify_sub *subs;
    size_t n_subs;
    uint64_t cursor; /* last change-log sequence handled */
    unsigned depth;  /* nesting of our callbacks; reaping happens at depth 0 */
    bool in_poll, poll_again, stopping, broken;
};

static int64_t notify_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec;
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

static void notify_pending_clear(struct notify_sub *s)
{
    for (size_t i = 0; i < s->n_pending; i++)
        free(s->pending[i].sel);
    free(s->pending);
    s->pending = NULL;
    s->n_pending = 0;
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
    free(s->identity);
    free(s->event);
    free(s);
}

/* Marks a subscription for removal; the memory goes at the next reap (never inside one of its
 * own callbacks). */
static void sub_kill(struct notify_sub *s)
{
    s->dead = true;
}

static void notifier_reap(struct notifier *n)
{
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

static void notifier_enter(struct notifier *n)
{
    n->depth++;
}

static void notifier_leave(struct notifier *n)
{
    if (--n->depth > 0)
        return;
    notifier_reap(n);
    if (n->stopping && n->n_subs == 0 && !n->broken) {
        n->broken = true;
        su_root_break(n->root);
    }
}

struct notify_full_ctx {
    const struct notify_sub *s;
    size_t index; /* the watch being expanded */
    struct buf *b;
    int rc;
};

/* True when an earlier watch of s already reported k (overlapping directory and document
 * watches must not list a document twice). */
static bool sub_seen_earlier(const struct notify_sub *s, size_t index, const struct doc_key *k)
{
    for (size_t i = 0; i < index; i++)
        if (notify_watch_matches(&s->watches.items[i], k))
            return true;
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
    buf_init(&sel, 4 * XCAP_URI_MAX_SEGMENT);
    int rc = notify_sel_append(&sel, &d->key);
    if (rc == 0)
        rc = notify_diff_document(c->b, sel.data, NULL, d->etag);
    buf_release(&sel);
    if (rc < 0) {
        c->rc = -1;
        return 1;
    }
    return 0;
}

/* Full state for the initial NOTIFY and refreshes (DIFF-12): every existing watched document,
 * directories expanded, missing documents omitted. Returns 0 or -1. */
static int sub_render_full(struct notify_sub *s, struct store_txn *t, struct buf *b)
{
    for (size_t i = 0; i < s->watches.n; i++) {
        const struct notify_watch *w = &s->watches.items[i];
        /* A prefix listing; notify_watch_matches() then keeps the exact document of a
         * document watch and drops hidden ones. */
        struct notify_full_ctx c = {.s = s, .index = i, .b = b, .rc = 0};
        enum store_rc rc = store_doc_list(t, w->auid, w->global ? "global" : "users",
                                          w->global ? "" : w->xui, w->path, notify_full_doc, &c);
        if (rc != STORE_OK) {
            log_warn("notifier: listing %s for a NOTIFY failed: %s", w->auid, store_strerror(rc));
            return -1;
        }
        if (c.rc < 0)
            return -1;
    }
    return 0;
}

static int sub_on_notify_response(struct notify_sub *s, nta_outgoing_t *orq, const sip_t *sip);

static bool sub_has_work(const struct notify_sub *s)
{
    return !s->dead && !s->final_sent && !s->orq &&
           (s->full_pending || s->n_pending > 0 || s->term_reason);
}

/* Sends the next NOTIFY of s when one is due and none is in flight (RFC 6665 §4.2.2: NOTIFYs of
 * a dialog are not sent in parallel, so they arrive in commit order). t may be NULL when the
 * store could not be read; a full-state NOTIFY then waits for the next poll. */
static void sub_flush(struct notify_sub *s, struct store_txn *t)
{
    struct notifier *n = s->n;
    if (!sub_has_work(s) || (s->full_pending && !t))
        return;
    struct buf body;
    buf_init(&body, NOTIFY_MAX_NOTIFY_BODY);
    int rc = notify_diff_open(&body, n->cfg.xcap_root);
    if (rc == 0 && s->full_pending) {
        rc = sub_render_full(s, t, &body);
    } else if (rc == 0) {
        for (size_t i = 0; rc == 0 && i < s->n_pending; i++)
            rc = notify_diff_document(&body, s->pending[i].sel, s->pending[i].prev,
                                      s->pending[i].next);
    }
    if (rc == 0)
        rc = notify_diff_close(&body);
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
    s->full_pending = false;
    notify_pending_clear(s);

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
        notifier_poll(n);
    }
    notifier_leave(n);
    return 0;
}

struct notify_change_ctx {
    struct notifier *n;
    size_t count;
    bool more;
};

/* Queues one committed change on every subscription that watches its document (DIFF-13
 * no-patching: previous/new ETags only). */
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
    char *sel = NULL;
    for (struct notify_sub *s = n->subs; s; s = s->next) {
        if (s->dead || s->final_sent || s->full_pending)
            continue;
        bool hit = false;
        for (size_t i = 0; i < s->watches.n && !hit; i++)
            hit = notify_watch_matches(&s->watches.items[i], &c->key);
        if (!hit)
            continue;
        if (!sel) {
            struct buf b;
            buf_init(&b, 4 * XCAP_URI_MAX_SEGMENT);
            if (notify_sel_append(&b, &c->key) < 0 || !(sel = buf_detach(&b, NULL))) {
                buf_release(&b);
                log_warn("notifier: cannot build the selector of change %llu",
                         (unsigned long long)c->seq);
                return 0;
            }
        }
        if (s->n_pending >= NOTIFY_MAX_PENDING) {
            notify_pending_clear(s);
            s->full_pending = true;
            continue;
        }
        struct notify_pending *np = realloc(s->pending, (s->n_pending + 1) * sizeof *np);
        char *dup = strdup(sel);
        if (!np || !dup) {
            free(dup);
            if (np)
                s->pending = np;
            notify_pending_clear(s);
            s->full_pending = true;
            continue;
        }
        s->pending = np;
        struct notify_pending *p = &s->pending[s->n_pending++];
        p->sel = dup;
        /* DIFF-2: created = new-etag only, deleted = previous-etag only. */
        snprintf(p->prev, sizeof p->prev, "%s", c->prev_etag ? c->prev_etag : "");
        snprintf(p->next, sizeof p->next, "%s",
                 c->kind == STORE_CHANGE_DELETE || !c->new_etag ? "" : c->new_etag);
    }
    free(sel);
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
            struct notify_change_ctx ctx = {.n = n};
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

/* RFC 5875 §4.1 (DIFF-8). The diff-processing parameter is accepted but this foundation always
 * behaves as no-patching (ETags only, DIFF-13), which every client must understand. */
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
 * Foundation simplification: every peer reaching this point is trusted, so From is accepted
 * from it too when the peer asserted nothing. */
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
        return 403;
    }
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
    if (!s || !(s->event = notify_event_value(sip))) {
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
    s->expires_at = notify_now() + expires;
    /* The dialog (RFC 6665 §4.1.2.2): local = To, remote = From, target from Contact. */
    s->leg = nta_leg_tcreate(n->agent, sub_on_request, s, SIPTAG_CALL_ID(sip->sip_call_id),
                             SIPTAG_FROM(sip->sip_to), SIPTAG_TO(sip->sip_from),
                             NTATAG_REMOTE_CSEQ(sip->sip_cseq->cs_seq), TAG_END());
    if (!s->leg || !nta_leg_tag(s->leg, NULL) ||
        nta_leg_server_route(s->leg, sip->sip_record_route, sip->sip_contact) < 0) {
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
    log_info("notifier: %s subscribed to %zu resource(s) for %us", s->identity, s->watches.n,
             expires);
    /* DIFF-12: the initial NOTIFY carries the full state; Expires: 0 is a fetch (RFC 6665
     * §4.4.3), answered by one terminated NOTIFY. */
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
    if (st != 0) {
        if (st == 415)
            return notify_reply(irq, st, phrase, SIPTAG_ACCEPT_STR(NOTIFY_MIME_LIST), TAG_END());
        return notify_reply(irq, st, phrase, TAG_END());
    }
    if (has_body) {
        notify_watchlist_release(&s->watches);
        s->watches = wl;
    }
    if (sip->sip_contact)
        nta_leg_server_route(s->leg, NULL, sip->sip_contact);
    char exp[24];
    snprintf(exp, sizeof exp, "%u", expires);
    notify_reply(irq, SIP_200_OK, SIPTAG_CONTACT(nta_agent_contact(n->agent)),
                 SIPTAG_EXPIRES_STR(exp), TAG_END());
    s->expires_at = notify_now() + expires;
    notify_pending_clear(s);
    s->full_pending = true;
    if (expires == 0) {
        s->term_reason = "timeout";
        log_info("notifier: %s unsubscribed", s->identity);
    }
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
        /* In-dialog request for a dialog we do not know (expired, or before a restart). */
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

/* Shutdown (DIFF-16): every subscription gets a final NOTIFY with reason=deactivated (RFC 6665
 * §4.2.2: the subscriber should re-subscribe, which suits a restart better than "noresource",
 * which says the resource is gone). We wait for the answers at most NOTIFY_STOP_WAIT_MS. */
static void notifier_begin_stop(struct notifier *n)
{
    n->stopping = true;
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

/* Once a second: expiry (RFC 6665 §4.2.2, reason=timeout) and a poll of the change log, which
 * also covers commits made by other processes on the same store (xdmctl) that cannot wake us. */
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
    if (!n->stopping)
        notifier_poll(n);
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
    n->agent = nta_agent_create(n->root, URL_STRING_MAKE(contact), NULL, NULL, NTATAG_UA(1),
                                NTATAG_MAXSIZE(NOTIFY_SIP_MAXSIZE), TAG_END());
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
    if (!n->tick || su_timer_set_for_ever(n->tick, notifier_on_tick, n) < 0) {
        log_error("notifier: cannot start the expiry timer");
        return -1;
    }
    return 0;
}

static void notifier_teardown(struct notifier *n)
{
    for (struct notify_sub *s = n->subs; s; s = s->next)
        s->dead = true;
    notifier_reap(n);
    if (n->tick)
        su_timer_destroy(n->tick);
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
