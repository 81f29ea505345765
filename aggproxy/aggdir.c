#include "aggdir.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/tree.h>
#include <openssl/evp.h>

#include "etag.h"
#include "log.h"
#include "nodeget.h"
#include "route.h"
#include "status.h"
#include "upstream.h"
#include "xcap_uri.h"
#include "xdoc.h"

#define AGGDIR_UPSTREAMS_MAX FORWARD_MANY_MAX
#define AGGDIR_ROUTES_MAX 256

/* ---- URIs ----------------------------------------------------------------------------------- */

int aggdir_rewrite_uri(const char *uri, const char *root_path, const char *client_root,
                       struct buf *out)
{
    if (!client_root)
        return buf_puts(out, uri);
    const char *path = uri;
    const char *scheme_end = strstr(uri, "://");
    bool has_scheme = scheme_end && strcspn(uri, "/?#") > (size_t)(scheme_end - uri);
    if (has_scheme) {
        path = strchr(scheme_end + 3, '/');
        if (!path)
            return buf_puts(out, uri);
    } else if (uri[0] != '/') {
        /* OMA XDM Core 1.1 Appendix B: a document selector relative to the root. */
        return buf_printf(out, "%s/%s", client_root, uri);
    }
    size_t rl = strlen(root_path);
    if (strncmp(path, root_path, rl) != 0 || path[rl] != '/')
        return buf_puts(out, uri); /* not under the XCAP root: leave it alone */
    return buf_printf(out, "%s%s", client_root, path + rl);
}

/* ---- Composition ---------------------------------------------------------------------------- */

struct aggdir_source {
    const char *url;
    int code;       /* 200 when doc is usable, else the error code shown */
    xmlDocPtr doc;  /* parsed listing, or NULL */
    xmlNodePtr top; /* its xcap-directory element */
};

static bool aggdir_is(const xmlNode *n, const char *name)
{
    return n->type == XML_ELEMENT_NODE && n->ns && n->ns->href &&
           strcmp((const char *)n->ns->href, XDM_DIRECTORY_NS) == 0 &&
           strcmp((const char *)n->name, name) == 0;
}

static void aggdir_hash(EVP_MD_CTX *h, const char *tag, const char *s)
{
    EVP_DigestUpdate(h, tag, 1);
    EVP_DigestUpdate(h, s, strlen(s) + 1);
}

static int aggdir_attr(struct buf *out, const char *name, const char *value)
{
    return buf_printf(out, " %s=\"", name) | buf_xml_escape(out, value, strlen(value)) |
           buf_puts(out, "\"");
}

/* Copies one XDMS folder: its entries (known attributes only) or its error code. */
static int aggdir_folder(const xmlNode *folder, const char *root_path, const char *client_root,
                         EVP_MD_CTX *h, struct buf *out)
{
    int rc = 0;
    struct buf uri;
    buf_init(&uri, 1 << 16);
    for (const xmlNode *c = folder->children; c && rc == 0; c = c->next) {
        if (aggdir_is(c, "error-code")) {
            xmlChar *code = xmlNodeGetContent(c);
            const char *s = code ? (const char *)code : "";
            rc = buf_puts(out, "<error-code>") | buf_xml_escape(out, s, strlen(s)) |
                 buf_puts(out, "</error-code>");
            aggdir_hash(h, "x", s);
            xmlFree(code);
            continue;
        }
        if (!aggdir_is(c, "entry"))
            continue;
        xmlChar *u = xmlGetNoNsProp(c, (const xmlChar *)"uri");
        xmlChar *e = xmlGetNoNsProp(c, (const xmlChar *)"etag");
        xmlChar *lm = xmlGetNoNsProp(c, (const xmlChar *)"last-modified");
        xmlChar *sz = xmlGetNoNsProp(c, (const xmlChar *)"size");
        if (u && e) {
            buf_reset(&uri);
            rc = aggdir_rewrite_uri((const char *)u, root_path, client_root, &uri);
            if (rc == 0) {
                rc = buf_puts(out, "<entry") | aggdir_attr(out, "uri", uri.data) |
                     aggdir_attr(out, "etag", (const char *)e);
                if (lm)
                    rc |= aggdir_attr(out, "last-modified", (const char *)lm);
                if (sz)
                    rc |= aggdir_attr(out, "size", (const char *)sz);
                rc |= buf_puts(out, "/>");
                aggdir_hash(h, "u", uri.data);
                aggdir_hash(h, "e", (const char *)e);
            }
        }
        xmlFree(u);
        xmlFree(e);
        xmlFree(lm);
        xmlFree(sz);
    }
    buf_release(&uri);
    return rc;
}

static const xmlNode *aggdir_find_folder(const xmlNode *top, const char *auid)
{
    for (const xmlNode *c = top->children; c; c = c->next) {
        if (!aggdir_is(c, "folder"))
            continue;
        xmlChar *a = xmlGetNoNsProp(c, (const xmlChar *)"auid");
        bool same = a && strcmp((const char *)a, auid) == 0;
        xmlFree(a);
        if (same)
            return c;
    }
    return NULL;
}

int aggdir_compose(const struct route_table *t, const struct aggdir_part *parts, size_t n,
                   const char *client_root, struct buf *out, char etag[AGGDIR_ETAG_MAX])
{
    const char *auids[AGGDIR_ROUTES_MAX], *urls[AGGDIR_ROUTES_MAX];
    size_t nroutes = route_table_routes(t, auids, urls, AGGDIR_ROUTES_MAX);
    if (nroutes > AGGDIR_ROUTES_MAX)
        nroutes = AGGDIR_ROUTES_MAX;
    const char *root_path = route_table_root(t);

    /* One source per part; a listing that is not an xcap-directory counts as a bad answer. */
    struct aggdir_source src[AGGDIR_UPSTREAMS_MAX];
    size_t nsrc = n < AGGDIR_UPSTREAMS_MAX ? n : AGGDIR_UPSTREAMS_MAX;
    for (size_t i = 0; i < nsrc; i++) {
        src[i] = (struct aggdir_source){.url = parts[i].upstream, .code = parts[i].status};
        if (parts[i].status != 200)
            continue;
        struct xcap_err err = {0};
        if (parts[i].body &&
            xdoc_parse(parts[i].body, parts[i].len, &src[i].doc, &err) == XCAP_OK) {
            xmlNodePtr top = xmlDocGetRootElement(src[i].doc);
            if (top && aggdir_is(top, "xcap-directory"))
                src[i].top = top;
        }
        xcap_err_release(&err);
        if (!src[i].top) {
            log_warn("xcap-directory: %s sent a listing that is not an xcap-directory document",
                     parts[i].upstream);
            src[i].code = 502;
        }
    }

    EVP_MD_CTX *h = EVP_MD_CTX_new();
    int rc = h && EVP_DigestInit_ex(h, EVP_sha256(), NULL) ? 0 : -1;
    size_t mark = out->len;
    if (rc == 0)
        rc = buf_puts(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                           "<xcap-directory xmlns=\"" XDM_DIRECTORY_NS "\">");
    for (size_t r = 0; r < nroutes && rc == 0; r++) {
        const struct aggdir_source *s = NULL;
        for (size_t i = 0; i < nsrc && !s; i++)
            if (strcmp(src[i].url, urls[r]) == 0)
                s = &src[i];
        const xmlNode *folder = NULL;
        if (s && s->top) {
            folder = aggdir_find_folder(s->top, auids[r]);
            if (!folder)
                continue; /* that XDMS does not serve the AUID: no folder */
        }
        rc = buf_puts(out, "<folder") | aggdir_attr(out, "auid", auids[r]) | buf_puts(out, ">");
        aggdir_hash(h, "f", auids[r]);
        if (folder) {
            rc |= aggdir_folder(folder, root_path, client_root, h, out);
        } else {
            char code[16];
            snprintf(code, sizeof code, "%d", s ? s->code : 502);
            rc |= buf_printf(out, "<error-code>%s</error-code>", code);
            aggdir_hash(h, "x", code);
        }
        rc |= buf_puts(out, "</folder>");
    }
    if (rc == 0)
        rc = buf_puts(out, "</xcap-directory>\n");
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (rc == 0 && (!EVP_DigestFinal_ex(h, md, &mdlen) || mdlen < 16))
        rc = -1;
    if (rc == 0) {
        char *p = etag;
        p += sprintf(p, "\"dir-");
        for (int i = 0; i < 16; i++)
            p += sprintf(p, "%02x", md[i]);
        sprintf(p, "\"");
    } else {
        out->len = mark;
        if (out->data)
            out->data[mark] = '\0';
    }
    EVP_MD_CTX_free(h);
    for (size_t i = 0; i < nsrc; i++)
        xmlFreeDoc(src[i].doc);
    return rc;
}

/* ---- Node selection ------------------------------------------------------------------------- */

enum xcap_status aggdir_select(const struct xcap_uri *u, const char *default_ns,
                               const struct buf *doc, struct http_response *resp,
                               struct xcap_err *err)
{
    const char *mime = NULL;
    buf_reset(&resp->body);
    enum xcap_status st = nodeget_select(u->node_sel, u->query, default_ns, doc->data, doc->len,
                                         &resp->body, &mime, err);
    if (st == XCAP_OK)
        http_response_header(resp, "Content-Type", mime);
    else
        buf_reset(&resp->body);
    return st;
}

/* ---- The request ---------------------------------------------------------------------------- */

enum xcap_status aggdir_handle(struct forward *fw, const struct route_table *t,
                               const struct aggdir_request *rq, struct http_response *resp,
                               struct xcap_err *err)
{
    const char *root = route_table_root(t);
    struct xcap_uri u;
    enum xcap_status st = xcap_uri_parse(root, rq->path, rq->query, &u, err);
    if (st != XCAP_OK)
        return st;
    if (u.tree != XCAP_TREE_USERS || u.is_dir || strcmp(u.path, XDM_DIRECTORY_DOC) != 0) {
        xcap_uri_release(&u);
        return xcap_fail(err, XCAP_NOT_FOUND, "the directory is users/<xui>/" XDM_DIRECTORY_DOC);
    }
    bool head = strcmp(rq->method, "HEAD") == 0;
    if (!head && strcmp(rq->method, "GET") != 0) {
        xcap_uri_release(&u);
        xcap_fail(err, XCAP_METHOD_NOT_ALLOWED,
                  "the directory is generated by the server (read-only)");
        err->allow = strdup("GET, HEAD");
        return XCAP_METHOD_NOT_ALLOWED;
    }

    /* Ask every distinct XDMS at once for its part (OMA XDM Core 1.1 Appendix B). */
    const struct route_upstream *lists[AGGDIR_UPSTREAMS_MAX];
    const char *ups[AGGDIR_UPSTREAMS_MAX];
    size_t n = route_table_upstream_lists(t, lists, AGGDIR_UPSTREAMS_MAX);
    if (n > AGGDIR_UPSTREAMS_MAX)
        n = AGGDIR_UPSTREAMS_MAX;
    for (size_t i = 0; i < n; i++)
        ups[i] = lists[i]->name;
    struct buf target;
    buf_init(&target, 16384);
    int brc = buf_printf(&target, "%s/%s", root, u.doc_sel);
    struct forward_request frq[AGGDIR_UPSTREAMS_MAX];
    struct forward_response fres[AGGDIR_UPSTREAMS_MAX];
    enum xcap_status fst[AGGDIR_UPSTREAMS_MAX];
    struct aggdir_part parts[AGGDIR_UPSTREAMS_MAX];
    for (size_t i = 0; i < n; i++) {
        /* One instance of each list: they all hold the same documents. */
        frq[i] = (struct forward_request){.method = "GET",
                                          .base_url = upstream_first(t, lists[i]),
                                          .target = target.data ? target.data : "/",
                                          .headers = rq->id_headers,
                                          .n_headers = rq->n_id_headers};
        forward_response_init(&fres[i]);
    }
    if (brc == 0)
        forward_many(fw, frq, fres, fst, n);
    bool forbidden = false;
    for (size_t i = 0; i < n; i++) {
        if (brc != 0)
            fst[i] = XCAP_URI_TOO_LONG;
        int code = fst[i] == XCAP_OK ? fres[i].status : status_http(fst[i]);
        if (fst[i] != XCAP_OK || code != 200)
            log_warn("xcap-directory: %s: %d %s", ups[i], code, fres[i].error ? fres[i].error : "");
        forbidden |= code == 403;
        parts[i] = (struct aggdir_part){ups[i], code, fres[i].body.data, fres[i].body.len};
    }

    struct buf doc;
    buf_init(&doc, (size_t)64 << 20);
    char etag[AGGDIR_ETAG_MAX];
    if (forbidden) {
        /* One XDMS says this is not the user's directory: so say all of them. */
        st = xcap_fail(err, XCAP_FORBIDDEN, "not your directory");
    } else if (aggdir_compose(t, parts, n, rq->client_root, &doc, etag) < 0) {
        st = xcap_fail(err, XCAP_INTERNAL, "cannot compose the directory");
    } else if (rq->if_match && !etag_list_matches(rq->if_match, etag, ETAG_STRONG)) {
        st = xcap_fail(err, XCAP_PRECONDITION_FAILED, "If-Match does not match the directory");
    } else if (rq->if_none_match && etag_list_matches(rq->if_none_match, etag, ETAG_WEAK)) {
        st = XCAP_NOT_MODIFIED;
        buf_reset(&resp->body);
        http_response_header(resp, "ETag", etag);
    } else if (u.node_sel) {
        if ((st = aggdir_select(&u, XDM_DIRECTORY_NS, &doc, resp, err)) == XCAP_OK)
            http_response_header(resp, "ETag", etag);
    } else {
        st = XCAP_OK;
        http_response_header(resp, "ETag", etag);
        http_response_header(resp, "Content-Type", XDM_DIRECTORY_MIME);
        if (http_response_body(resp, doc.data, doc.len) < 0)
            st = xcap_fail(err, XCAP_INTERNAL, "out of memory");
    }
    buf_release(&doc);
    for (size_t i = 0; i < n; i++)
        forward_response_release(&fres[i]);
    buf_release(&target);
    xcap_uri_release(&u);
    return st;
}
