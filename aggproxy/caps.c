#include "caps.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "digest.h"
#include "forward.h"
#include "log.h"
#include "route.h"
#include "status.h"
#include "upstream.h"
#include "xdoc.h"

#define CAPS_UPSTREAMS_MAX 64
#define CAPS_ITEMS_MAX 1024
#define CAPS_VALUE_MAX 1024

/* A set of strings in first-seen order. */
struct caps_list {
    char **v;
    size_t n;
};

static int caps_list_add(struct caps_list *l, const char *s, size_t len)
{
    for (size_t i = 0; i < l->n; i++)
        if (strlen(l->v[i]) == len && memcmp(l->v[i], s, len) == 0)
            return 0;
    if (l->n >= CAPS_ITEMS_MAX)
        return 0; /* bounded: an upstream cannot make the union grow without limit */
    char **v = realloc(l->v, (l->n + 1) * sizeof *v);
    if (!v)
        return -1;
    l->v = v;
    if (!(l->v[l->n] = strndup(s, len)))
        return -1;
    l->n++;
    return 0;
}

static void caps_list_release(struct caps_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static bool caps_is(const xmlNode *n, const char *name)
{
    return n->type == XML_ELEMENT_NODE && n->ns && n->ns->href &&
           strcmp((const char *)n->ns->href, XCAP_CAPS_NS) == 0 &&
           strcmp((const char *)n->name, name) == 0;
}

/* Adds the trimmed text of every <item> child of a container element. */
static int caps_collect(const xmlNode *container, const char *item, struct caps_list *l)
{
    for (const xmlNode *c = container->children; c; c = c->next) {
        if (!caps_is(c, item))
            continue;
        xmlChar *text = xmlNodeGetContent(c);
        if (!text)
            continue;
        const char *s = (const char *)text;
        size_t len = strlen(s);
        while (len && strchr(" \t\r\n", s[len - 1]))
            len--;
        while (len && strchr(" \t\r\n", *s)) {
            s++;
            len--;
        }
        int rc = len && len <= CAPS_VALUE_MAX ? caps_list_add(l, s, len) : 0;
        xmlFree(text);
        if (rc < 0)
            return -1;
    }
    return 0;
}

static int caps_render_list(struct buf *out, const char *wrap, const char *item,
                            const struct caps_list *l)
{
    if (buf_printf(out, "<%s>", wrap) < 0)
        return -1;
    for (size_t i = 0; i < l->n; i++) {
        if (buf_printf(out, "<%s>", item) < 0 ||
            buf_xml_escape(out, l->v[i], strlen(l->v[i])) < 0 || buf_printf(out, "</%s>", item) < 0)
            return -1;
    }
    return buf_printf(out, "</%s>", wrap);
}

int caps_merge(const struct buf *docs, size_t n, struct buf *out, size_t *merged)
{
    struct caps_list auids = {0}, exts = {0}, nss = {0};
    size_t used = 0;
    int rc = 0;
    /* RFC 4825 §12.2: xcap-caps lists itself; the proxy serves it. */
    if (caps_list_add(&auids, "xcap-caps", 9) < 0 ||
        caps_list_add(&nss, XCAP_CAPS_NS, strlen(XCAP_CAPS_NS)) < 0)
        rc = -1;
    for (size_t i = 0; i < n && rc == 0; i++) {
        xmlDocPtr doc = NULL;
        struct xcap_err err = {0};
        if (!docs[i].data || xdoc_parse(docs[i].data, docs[i].len, &doc, &err) != XCAP_OK) {
            xcap_err_release(&err);
            continue;
        }
        xcap_err_release(&err);
        const xmlNode *root = xmlDocGetRootElement(doc);
        if (root && caps_is(root, "xcap-caps")) {
            used++;
            for (const xmlNode *c = root->children; c && rc == 0; c = c->next) {
                if (caps_is(c, "auids"))
                    rc = caps_collect(c, "auid", &auids);
                else if (caps_is(c, "extensions"))
                    rc = caps_collect(c, "extension", &exts);
                else if (caps_is(c, "namespaces"))
                    rc = caps_collect(c, "namespace", &nss);
            }
        }
        xmlFreeDoc(doc);
    }
    size_t mark = out->len;
    if (rc == 0 &&
        (buf_puts(out,
                  "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xcap-caps xmlns=\"" XCAP_CAPS_NS
                  "\">") < 0 ||
         caps_render_list(out, "auids", "auid", &auids) < 0 ||
         /* always present, empty without extensions (RFC 4825 §12.2; xdms/caps.c) */
         caps_render_list(out, "extensions", "extension", &exts) < 0 ||
         caps_render_list(out, "namespaces", "namespace", &nss) < 0 ||
         buf_puts(out, "</xcap-caps>\n") < 0)) {
        rc = -1;
        out->len = mark;
        if (out->data)
            out->data[mark] = '\0';
    }
    caps_list_release(&auids);
    caps_list_release(&exts);
    caps_list_release(&nss);
    if (merged)
        *merged = used;
    return rc;
}

/* What the proxy serves itself besides xcap-caps (OMA XDM Core 2.0 §5.3.2). */
static const char caps_own[] =
    "<xcap-caps xmlns=\"" XCAP_CAPS_NS
    "\"><auids><auid>org.openmobilealliance.xcap-directory</auid>"
    "</auids><namespaces><namespace>urn:oma:xml:xdm:xcap-directory</namespace></namespaces>"
    "</xcap-caps>";

int caps_compose(struct forward *fw, const struct route_table *t,
                 const struct forward_header *headers, size_t n_headers, struct buf *out,
                 size_t *failed)
{
    const struct route_upstream *lists[CAPS_UPSTREAMS_MAX];
    const char *ups[CAPS_UPSTREAMS_MAX];
    size_t n = route_table_upstream_lists(t, lists, CAPS_UPSTREAMS_MAX);
    if (n > CAPS_UPSTREAMS_MAX)
        n = CAPS_UPSTREAMS_MAX;
    /* One instance of each list: they all serve the same AUIDs. */
    for (size_t i = 0; i < n; i++)
        ups[i] = upstream_first(t, lists[i]);
    struct buf docs[CAPS_UPSTREAMS_MAX + 1];
    size_t ndocs = 0, nfailed = 0;
    struct buf target;
    buf_init(&target, 4096);
    int rc = buf_printf(&target, "%s/xcap-caps/global/index", route_table_root(t));
    struct forward_request rq[CAPS_UPSTREAMS_MAX];
    struct forward_response resp[CAPS_UPSTREAMS_MAX];
    enum xcap_status st[CAPS_UPSTREAMS_MAX];
    for (size_t i = 0; i < n; i++) {
        rq[i] = (struct forward_request){
            .method = "GET",
            .base_url = ups[i],
            .target = rc == 0 ? target.data : "/",
            .headers = headers,
            .n_headers = n_headers,
        };
        forward_response_init(&resp[i]);
    }
    if (rc == 0)
        forward_many(fw, rq, resp, st, n);
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (st[i] == XCAP_OK && resp[i].status == 200) {
            docs[ndocs++] = resp[i].body; /* ownership moves to docs */
            buf_init(&resp[i].body, 0);
        } else {
            nfailed++;
            log_warn("xcap-caps: skipping %s: %s", ups[i],
                     st[i] == XCAP_OK ? "no 200 answer"
                     : resp[i].error  ? resp[i].error
                                      : "error");
        }
    }
    for (size_t i = 0; i < n; i++)
        forward_response_release(&resp[i]);
    if (rc == 0) {
        buf_init(&docs[ndocs], sizeof caps_own);
        rc = buf_append(&docs[ndocs++], caps_own, sizeof caps_own - 1);
    }
    if (rc == 0)
        rc = caps_merge(docs, ndocs, out, NULL);
    for (size_t i = 0; i < ndocs; i++)
        buf_release(&docs[i]);
    buf_release(&target);
    if (failed)
        *failed = nfailed;
    return rc;
}

int caps_etag(const char *body, size_t len, char out[CAPS_ETAG_MAX])
{
    char hex[DIGEST_HEX_MAX];
    if (digest_hash_hex(DIGEST_SHA256, body, len, hex) < 0)
        return -1;
    hex[32] = '\0';
    snprintf(out, CAPS_ETAG_MAX, "\"caps-%s\"", hex);
    return 0;
}

/* Invariant: doc/etag hold the last composition (has_doc) and when it was made (at); refreshing
 * is set while one thread composes outside the lock. */
struct caps_cache {
    struct forward *fw;
    const struct route_table *t;
    /* further XDMS sets (partner domains), asked after the local ones, without an identity */
    struct forward *src_fw[CAPS_SOURCES_MAX];
    const struct route_table *src_t[CAPS_SOURCES_MAX];
    size_t n_src;
    uint64_t ttl, retry;
    pthread_mutex_t lock;
    struct buf doc;
    char etag[CAPS_ETAG_MAX];
    bool has_doc, complete, refreshing;
    uint64_t at;
};

struct caps_cache *caps_cache_new(struct forward *fw, const struct route_table *t, unsigned ttl_s,
                                  unsigned retry_s)
{
    struct caps_cache *c = calloc(1, sizeof *c);
    if (!c || pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c);
        return NULL;
    }
    c->fw = fw;
    c->t = t;
    c->ttl = ttl_s ? ttl_s : 60;
    c->retry = retry_s ? retry_s : 5;
    buf_init(&c->doc, 1 << 20);
    return c;
}

int caps_cache_add_source(struct caps_cache *c, struct forward *fw, const struct route_table *t)
{
    if (c->n_src == CAPS_SOURCES_MAX)
        return -1;
    c->src_fw[c->n_src] = fw;
    c->src_t[c->n_src] = t;
    c->n_src++;
    return 0;
}

/* The local union (with the requester's identity headers), then each further source's union
 * (without: xcap-caps describes a server, RFC 4825 §12, and a partner trusts the proxy for its
 * own users' identities only), merged in that order. *failed: the XDMSs that gave nothing. */
static int caps_cache_compose(struct caps_cache *c, const struct forward_header *headers,
                              size_t n_headers, struct buf *out, size_t *failed)
{
    if (c->n_src == 0)
        return caps_compose(c->fw, c->t, headers, n_headers, out, failed);
    struct buf docs[CAPS_SOURCES_MAX + 1];
    size_t n = 0, f = 0;
    int rc = 0;
    *failed = 0;
    for (size_t i = 0; i <= c->n_src && rc == 0; i++) {
        buf_init(&docs[n], out->max);
        rc = i == 0 ? caps_compose(c->fw, c->t, headers, n_headers, &docs[n], &f)
                    : caps_compose(c->src_fw[i - 1], c->src_t[i - 1], NULL, 0, &docs[n], &f);
        n++;
        *failed += f;
    }
    if (rc == 0)
        rc = caps_merge(docs, n, out, NULL);
    for (size_t i = 0; i < n; i++)
        buf_release(&docs[i]);
    return rc;
}

void caps_cache_free(struct caps_cache *c)
{
    if (!c)
        return;
    buf_release(&c->doc);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

int caps_cache_get(struct caps_cache *c, const struct forward_header *headers, size_t n_headers,
                   uint64_t now, struct buf *doc, char etag[CAPS_ETAG_MAX])
{
    pthread_mutex_lock(&c->lock);
    bool due = !c->has_doc || now >= c->at + (c->complete ? c->ttl : c->retry) || now < c->at;
    bool compose = due && (!c->refreshing || !c->has_doc);
    if (compose)
        c->refreshing = true;
    pthread_mutex_unlock(&c->lock);

    int rc = 0;
    if (compose) {
        struct buf fresh;
        buf_init(&fresh, c->doc.max);
        char fresh_etag[CAPS_ETAG_MAX];
        size_t failed = 0;
        rc = caps_cache_compose(c, headers, n_headers, &fresh, &failed);
        if (rc == 0)
            rc = caps_etag(fresh.data, fresh.len, fresh_etag);
        pthread_mutex_lock(&c->lock);
        c->refreshing = false;
        if (rc == 0) {
            /* An incomplete union (an XDMS down) is served, and composed again after retry. */
            buf_release(&c->doc);
            c->doc = fresh;
            buf_init(&fresh, 0);
            memcpy(c->etag, fresh_etag, sizeof c->etag);
            c->has_doc = true;
            c->complete = failed == 0;
            c->at = now;
        }
        pthread_mutex_unlock(&c->lock);
        buf_release(&fresh);
    }
    pthread_mutex_lock(&c->lock);
    if (c->has_doc) {
        rc = buf_append(doc, c->doc.data, c->doc.len);
        memcpy(etag, c->etag, CAPS_ETAG_MAX);
    } else {
        rc = -1;
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}
