#include "caps.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "digest.h"
#include "forward.h"
#include "log.h"
#include "route.h"
#include "status.h"
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
           strcmp((const char *)n->ns->href, CAPS_NS) == 0 &&
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
        caps_list_add(&nss, CAPS_NS, strlen(CAPS_NS)) < 0)
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
        (buf_puts(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xcap-caps xmlns=\"" CAPS_NS
                       "\">") < 0 ||
         caps_render_list(out, "auids", "auid", &auids) < 0 ||
         (exts.n && caps_render_list(out, "extensions", "extension", &exts) < 0) ||
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

int caps_compose(struct forward *fw, const struct route_table *t, const char *identity,
                 struct buf *out)
{
    const char *ups[CAPS_UPSTREAMS_MAX];
    size_t n = route_table_upstreams(t, ups, CAPS_UPSTREAMS_MAX);
    if (n > CAPS_UPSTREAMS_MAX)
        n = CAPS_UPSTREAMS_MAX;
    struct buf docs[CAPS_UPSTREAMS_MAX];
    size_t ndocs = 0;
    struct buf target;
    buf_init(&target, 4096);
    int rc = buf_printf(&target, "%s/xcap-caps/global/index", route_table_root(t));
    struct forward_header hdr = {"X-3GPP-Asserted-Identity", identity};
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct forward_request rq = {
            .method = "GET",
            .base_url = ups[i],
            .target = target.data,
            .headers = &hdr,
            .n_headers = identity ? 1 : 0,
        };
        struct forward_response resp;
        forward_response_init(&resp);
        enum xcap_status st = forward_do(fw, &rq, &resp);
        if (st == XCAP_OK && resp.status == 200) {
            docs[ndocs++] = resp.body; /* ownership moves to docs */
            buf_init(&resp.body, 0);
        } else {
            log_warn("xcap-caps: skipping %s: %s", ups[i],
                     st == XCAP_OK ? "no 200 answer"
                     : resp.error  ? resp.error
                                   : "error");
        }
        forward_response_release(&resp);
    }
    if (rc == 0)
        rc = caps_merge(docs, ndocs, out, NULL);
    for (size_t i = 0; i < ndocs; i++)
        buf_release(&docs[i]);
    buf_release(&target);
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
