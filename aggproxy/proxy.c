#include "proxy.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>

#include "aggdir.h"
#include "access.h"
#include "buf.h"
#include "metrics.h"
#include "caps.h"
#include "compress.h"
#include "digest.h"
#include "etag.h"
#include "forward.h"
#include "identity.h"
#include "log.h"
#include "route.h"
#include "upstream.h"
#include "users.h"
#include "xcap_uri.h"

#include "proxy_internal.h"

void proxy_set_max_body(struct proxy *p, size_t max_body)
{
    p->max_body = max_body ? max_body : (size_t)1 << 20;
}

unsigned proxy_in_flight(const struct proxy *p)
{
    return atomic_load(&((struct proxy *)p)->in_flight);
}

void proxy_free(struct proxy *p)
{
    if (!p)
        return;
    free(p->default_realm);
    for (size_t i = 0; i < p->n_gaa_fqdns; i++)
        free(p->gaa_fqdns[i]);
    free(p->gaa_fqdns);
    free(p);
}

struct proxy *proxy_new(const struct proxy_config *cfg)
{
    struct proxy *p = calloc(1, sizeof *p);
    if (!p || !(p->default_realm = strdup(cfg->default_realm))) {
        free(p);
        return NULL;
    }
    if (cfg->algs && cfg->algs->n)
        p->algs = *cfg->algs;
    else
        digest_algs_default(&p->algs);
    p->store = cfg->store;
    p->digest = cfg->digest;
    p->routes = cfg->routes;
    p->forward = cfg->forward;
    p->caps = cfg->caps;
    p->partners = cfg->partners;
    p->ldap = cfg->ldap;
    p->ldap_basic = cfg->ldap_basic;
    if (cfg->gba) {
        p->gba = *cfg->gba;
        p->has_gba = true;
    }
    p->gaa_password = cfg->gaa_password;
    p->asserted = cfg->asserted;
    p->gzip = cfg->gzip;
    p->gzip_min = cfg->gzip_min ? cfg->gzip_min : 256;
    p->max_body = cfg->max_body ? cfg->max_body : (size_t)1 << 20;
    p->loop = cfg->loop;
    p->max_in_flight = cfg->max_in_flight ? cfg->max_in_flight : 1024;
    p->answered = cfg->answered;
    if (cfg->n_gaa_fqdns && !(p->gaa_fqdns = calloc(cfg->n_gaa_fqdns, sizeof *p->gaa_fqdns))) {
        proxy_free(p);
        return NULL;
    }
    for (size_t i = 0; i < cfg->n_gaa_fqdns; i++) {
        char host[GBA_FQDN_MAX + 1];
        if (gba_host_name(cfg->gaa_fqdns[i], host, sizeof host) < 0 ||
            strchr(cfg->gaa_fqdns[i], ':') || !(p->gaa_fqdns[i] = strdup(host))) {
            log_error("gaa_fqdn \"%s\" is not a host name", cfg->gaa_fqdns[i]);
            proxy_free(p);
            return NULL;
        }
        p->n_gaa_fqdns++;
    }
    return p;
}

static void proxy_release(struct proxy_call *c)
{
    if (c->authenticated)
        digest_auth_release(&c->auth);
    proxy_ids_clear(c);
    buf_release(&c->decoded);
    buf_release(&c->id_value);
    xcap_err_release(&c->err);
    OPENSSL_cleanse(c->naf_id, sizeof c->naf_id);
}

/* Accepts a Host value made of host-name/IP-literal characters and an optional port only, so it
 * can go into URIs unescaped. */
static bool proxy_host_ok(const char *h)
{
    size_t len = strnlen(h, PROXY_HOST_MAX + 1);
    if (len == 0 || len > PROXY_HOST_MAX)
        return false;
    return strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_~:[]") ==
           len;
}

static bool proxy_gaa_served(const struct proxy *p, const char *host)
{
    for (size_t i = 0; i < p->n_gaa_fqdns; i++)
        if (strcmp(p->gaa_fqdns[i], host) == 0)
            return true;
    return false;
}

/* Phase: receive. Digest realm: the XUI's domain in the URI (users/sip:alice@example.com/), so
 * each domain's users authenticate in their own realm; URIs that name no user (global tree,
 * xcap-caps) are challenged with the configured realm and accept the credentials of any known
 * user. GBA: the realm names the host the request was sent to (TS 24.109 §7.1). */
static void proxy_receive(struct proxy *p, struct proxy_call *c, const struct http_request *req)
{
    c->p = p;
    c->req = req;
    c->method = http_request_method(req);
    c->target = http_request_target(req);
    c->head = strcmp(c->method, "HEAD") == 0;
    route_match(p->routes, http_request_path(req), &c->route);
    c->tls_cipher = http_request_tls_cipher(req);
    buf_init(&c->decoded, p->max_body);
    buf_init(&c->id_value, IDENTITY_MAX + 3);
    c->body = http_request_body(req, &c->body_len);

    const char *host = http_request_header(req, "Host");
    if (host && proxy_host_ok(host))
        snprintf(c->host, sizeof c->host, "%s", host);
    if (c->host[0])
        snprintf(c->client_root, sizeof c->client_root, "%s://%s%s",
                 c->tls_cipher >= 0 ? "https" : "http", c->host, route_table_root(p->routes));

    c->realm = p->default_realm;
    c->need_realm = NULL;
    if (c->route.xui_len) {
        char xui[USERS_XUI_MAX + 1], user[USERS_NAME_MAX + 1];
        /* The realm is the XUI's host, compared without case like any host (RFC 3261 §19.1.4):
         * users/sip:alice@EXAMPLE.com/ is challenged in realm example.com. */
        char *canon = NULL;
        if (xcap_uri_pct_decode(c->route.xui, c->route.xui_len, xui, sizeof xui) == 0 &&
            (canon = xcap_uri_xui_canonical(xui)) != NULL &&
            users_xui_split(canon, user, sizeof user, c->xui_domain, sizeof c->xui_domain) ==
                USERS_OK &&
            c->xui_domain[0])
            c->realm = c->xui_domain;
        free(canon);
        c->need_realm = c->realm;
    }

    if (!p->has_gba || !p->n_gaa_fqdns || !gba_user_agent(http_request_header(req, "User-Agent")))
        return;
    char name[GBA_FQDN_MAX + 1];
    if (!c->host[0] || gba_host_name(c->host, name, sizeof name) < 0 ||
        !proxy_gaa_served(p, name)) {
        log_debug("%s %s: 3gpp-gba client, but Host %s is not a served NAF name: plain Digest",
                  c->method, c->target, c->host[0] ? c->host : "(none)");
        return;
    }
    if (gba_realm(name, c->gaa_realm, sizeof c->gaa_realm) < 0 ||
        gba_naf_id(name, c->tls_cipher, c->naf_id, &c->naf_id_len) < 0)
        return;
    c->gaa = true;
    c->realm = c->gaa_realm;
    c->need_realm = c->gaa_realm;
}

/* The asserted-identity headers for the XDMSs (TS 24.109 §7; OMA XDM Core §5.1.2; TS 33.222 §5).
 * value is the quoted identity; returns how many of out[0..2) were filled. */
static size_t proxy_id_headers(const struct proxy *p, const char *value,
                               struct forward_header out[2])
{
    size_t n = 0;
    if (p->asserted == PROXY_ASSERT_3GPP || p->asserted == PROXY_ASSERT_BOTH)
        out[n++] = (struct forward_header){"X-3GPP-Asserted-Identity", value};
    if (p->asserted == PROXY_ASSERT_XCAP || p->asserted == PROXY_ASSERT_BOTH)
        out[n++] = (struct forward_header){"X-XCAP-Asserted-Identity", value};
    return n;
}

/* Phase: identify (TS 24.109 §7.2): the identity the client asks to act as must be one of its
 * own; 403 otherwise (RFC 9110 §15.5.4: authenticated, not allowed). The identity headers towards
 * the XDMSs are made here, once for every kind of target. */
static enum xcap_status proxy_identify(struct proxy *p, struct proxy_call *c)
{
    unsigned n = proxy_header_count(c->req, "X-3GPP-Intended-Identity");
    const char *h = http_request_header(c->req, "X-3GPP-Intended-Identity");
    c->identity = c->ids[0];
    if (n > 0 && h) {
        char want[IDENTITY_MAX + 1];
        if (n > 1 || identity_parse(h, want, sizeof want) < 0) {
            proxy_note(c, "malformed X-3GPP-Intended-Identity");
            return xcap_fail(&c->err, XCAP_BAD_REQUEST,
                             "X-3GPP-Intended-Identity must be one quoted URI");
        }
        int i = identity_find((const char *const *)c->ids, c->n_ids, want);
        if (i < 0) {
            proxy_note(c, "intended identity %.128s is not one of the subscriber's", want);
            return xcap_fail(&c->err, XCAP_FORBIDDEN, "the intended identity is not one of yours");
        }
        c->identity = c->ids[i];
    }
    if (identity_quote(c->identity, &c->id_value) < 0)
        return xcap_fail(&c->err, XCAP_INTERNAL, "identity too long");
    c->n_idh = proxy_id_headers(p, c->id_value.data, c->idh);
    return XCAP_OK;
}

/* Phase: decode (OMA XDM Core §5.1; RFC 9110 §8.4.1.3): a gzip request body is decoded, within the
 * body bound (413 for more, e.g. a zip bomb); XDM-4 carries identity bodies only. */
static enum xcap_status proxy_decode(struct proxy *p, struct proxy_call *c)
{
    const char *ce = http_request_header(c->req, "Content-Encoding");
    enum compress_coding coding = proxy_header_count(c->req, "Content-Encoding") > 1
                                      ? COMPRESS_OTHER
                                      : compress_request_coding(ce);
    switch (coding) {
    case COMPRESS_IDENTITY:
        return XCAP_OK;
    case COMPRESS_OTHER:
        /* RFC 9110 §15.5.16: a content coding the server does not take; Accept-Encoding names
         * the ones it does (§12.5.3). */
        proxy_note(c, "Content-Encoding %.64s", ce ? ce : "");
        xcap_fail(&c->err, XCAP_UNSUPPORTED_MEDIA, "unsupported Content-Encoding (gzip only)");
        xcap_err_add_header(&c->err, "Accept-Encoding", "gzip");
        return XCAP_UNSUPPORTED_MEDIA;
    case COMPRESS_GZIP:
        break;
    }
    if (c->body_len == 0)
        return XCAP_OK;
    switch (compress_gunzip(c->body, c->body_len, p->max_body, &c->decoded)) {
    case COMPRESS_OK:
        c->body = c->decoded.data ? c->decoded.data : "";
        c->body_len = c->decoded.len;
        return XCAP_OK;
    case COMPRESS_TOO_LARGE:
        proxy_note(c, "gzip body decodes to more than %zu bytes", p->max_body);
        return xcap_fail(&c->err, XCAP_TOO_LARGE, "request body too large once decompressed");
    case COMPRESS_BAD:
        return xcap_fail(&c->err, XCAP_BAD_REQUEST, "request body is not valid gzip");
    case COMPRESS_NOMEM:
        break;
    }
    return xcap_fail(&c->err, XCAP_INTERNAL, "out of memory");
}

/* The domain whose XDMSs serve the request: the XUI's (the realm it was authenticated in), or for
 * the global tree the asserted identity's ("" for an identity without one, e.g. tel:). */
static void proxy_site_domain(const struct proxy_call *c, char *out, size_t len)
{
    out[0] = '\0';
    if (c->xui_domain[0]) {
        snprintf(out, len, "%s", c->xui_domain);
        return;
    }
    char user[USERS_NAME_MAX + 1];
    if (c->identity && users_xui_split(c->identity, user, sizeof user, out, len) != USERS_OK)
        out[0] = '\0';
}

/* Phase: route (OMA XDM Core §5.2): the route was looked up on receipt (the method, realm and GUSS
 * phases need it); a URI that no XDMS serves and that is not one of the proxy's own documents
 * ends here. A user's documents (and the global tree, the xcap-directory) are then served by the
 * XDMSs of the user's domain: the local ones, or a partner's (partner.h), whose own route table
 * the request is matched against again. xcap-caps is the union of all and has no domain. */
static enum xcap_status proxy_route(struct proxy *p, struct proxy_call *c)
{
    if (c->route.kind == ROUTE_NOT_FOUND)
        return xcap_fail(&c->err, XCAP_NOT_FOUND, "no XDMS serves this URI");
    if (c->route.kind == ROUTE_CAPS || !p->partners)
        return XCAP_OK;
    char domain[USERS_NAME_MAX + 1];
    proxy_site_domain(c, domain, sizeof domain);
    switch (partners_lookup(p->partners, domain, &c->partner)) {
    case PARTNERS_LOCAL:
        return XCAP_OK;
    case PARTNERS_UNKNOWN:
        /* RFC 9110 §15.5.4: understood and authenticated, but this proxy serves no XDMS for that
         * domain; not 404, which would say the document is missing and invite a PUT that can
         * never succeed. */
        proxy_note(c, "domain %s is neither local nor a partner's", domain);
        return xcap_fail(&c->err, XCAP_FORBIDDEN, "users of domain %s are not served here", domain);
    case PARTNERS_REMOTE:
        break;
    }
    /* The partner trusts this proxy for identities of its own domain only (docs/partners.md); an
     * identity of another domain (a further identity of an operator's user, say) is refused here
     * rather than sent to be refused there. */
    char own[USERS_NAME_MAX + 1] = "", user[USERS_NAME_MAX + 1];
    if (!c->identity ||
        users_xui_split(c->identity, user, sizeof user, own, sizeof own) != USERS_OK ||
        strcasecmp(own, partner_domain(c->partner)) != 0) {
        proxy_note(c, "identity %.128s is not of partner domain %s",
                   c->identity ? c->identity : "(none)", partner_domain(c->partner));
        return xcap_fail(&c->err, XCAP_FORBIDDEN, "the identity %s cannot act in partner domain %s",
                         c->identity ? c->identity : "(none)", partner_domain(c->partner));
    }
    route_match(partner_routes(c->partner), http_request_path(c->req), &c->route);
    if (c->route.kind == ROUTE_NOT_FOUND)
        return xcap_fail(&c->err, XCAP_NOT_FOUND, "no XDMS of partner %s serves this URI",
                         partner_domain(c->partner));
    if (!partner_begin(c->partner)) {
        proxy_note(c, "partner %s: max_requests in flight", partner_domain(c->partner));
        xcap_fail(&c->err, XCAP_UPSTREAM_DOWN, "partner %s is busy; try again",
                  partner_domain(c->partner));
        xcap_err_add_header(&c->err, "Retry-After", UPSTREAM_RETRY_AFTER);
        return XCAP_UPSTREAM_DOWN;
    }
    c->partner_begun = true;
    clock_gettime(CLOCK_MONOTONIC, &c->partner_t0);
    return XCAP_OK;
}

/* The proxy's own xcap-caps (RFC 4825 §12; OMA XDM Core 2.0 §5.3.1): only global/index, read-only;
 * read whole or by node selector, unprefixed names in the xcap-caps namespace (RFC 4825 §12). */
static enum xcap_status proxy_caps(struct proxy *p, struct proxy_call *c,
                                   struct http_response *resp)
{
    const struct route_match *m = &c->route;
    bool global = m->tree_len == 6 && memcmp(m->tree, "global", 6) == 0;
    bool node = global && m->rest_len > 10 && memcmp(m->rest, "/index/~~/", 10) == 0;
    if (!(global && m->rest_len == 6 && memcmp(m->rest, "/index", 6) == 0) && !node)
        return xcap_fail(&c->err, XCAP_NOT_FOUND, "xcap-caps has only global/index");
    if (strcmp(c->method, "GET") != 0 && !c->head) {
        xcap_fail(&c->err, XCAP_METHOD_NOT_ALLOWED, "xcap-caps is generated by the server");
        c->err.allow = strdup("GET, HEAD");
        return XCAP_METHOD_NOT_ALLOWED;
    }
    struct buf doc;
    buf_init(&doc, 1 << 20);
    char etag[CAPS_ETAG_MAX];
    int rc = p->caps ? caps_cache_get(p->caps, c->idh, c->n_idh, digest_clock_now(), &doc, etag)
                     : caps_compose(p->forward, p->routes, c->idh, c->n_idh, &doc, NULL);
    if (rc < 0 || (!p->caps && caps_etag(doc.data, doc.len, etag) < 0)) {
        buf_release(&doc);
        return xcap_fail(&c->err, XCAP_INTERNAL, "cannot compose xcap-caps");
    }
    http_response_header(resp, "ETag", etag);
    const char *inm = http_request_header(c->req, "If-None-Match");
    const char *im = http_request_header(c->req, "If-Match");
    enum xcap_status st = XCAP_OK;
    if (im && !etag_list_matches(im, etag, ETAG_STRONG)) {
        st = xcap_fail(&c->err, XCAP_PRECONDITION_FAILED, "If-Match does not match");
    } else if (inm && etag_list_matches(inm, etag, ETAG_WEAK)) {
        st = XCAP_NOT_MODIFIED;
    } else if (node) {
        struct xcap_uri u;
        st = xcap_uri_parse(route_table_root(p->routes), http_request_path(c->req),
                            http_request_query(c->req), &u, &c->err);
        if (st == XCAP_OK) {
            st = aggdir_select(&u, XCAP_CAPS_NS, &doc, resp, &c->err);
            xcap_uri_release(&u);
        }
    } else {
        http_response_header(resp, "Content-Type", XCAP_CAPS_MIME);
        if (http_response_body(resp, doc.data, doc.len) < 0)
            st = xcap_fail(&c->err, XCAP_INTERNAL, "out of memory");
    }
    buf_release(&doc);
    return st;
}

static enum xcap_status proxy_directory(struct proxy *p, struct proxy_call *c,
                                        struct http_response *resp)
{
    struct aggdir_request rq = {
        .method = c->method,
        .path = http_request_path(c->req),
        .query = http_request_query(c->req),
        .if_match = http_request_header(c->req, "If-Match"),
        .if_none_match = http_request_header(c->req, "If-None-Match"),
        .client_root = c->client_root[0] ? c->client_root : NULL,
        .id_headers = c->idh,
        .n_id_headers = c->n_idh,
    };
    if (c->partner)
        return aggdir_handle(partner_forward(c->partner), partner_routes(c->partner), &rq, resp,
                             &c->err);
    return aggdir_handle(p->forward, p->routes, &rq, resp, &c->err);
}

struct proxy_headers {
    struct forward_header v[PROXY_HEADERS_MAX];
    size_t n;
};

static int proxy_pick_header(void *cls, const char *name, const char *value)
{
    struct proxy_headers *h = cls;
    if (forward_header_relayed(name) && h->n < PROXY_HEADERS_MAX - 3) {
        h->v[h->n].name = name;
        h->v[h->n].value = value;
        h->n++;
    }
    return 0;
}

/* The request-target as it goes upstream: a raw '"' (none is allowed in a URI, RFC 3986 §2;
 * Python's urllib and xcaplib send node selectors with it) becomes "%22", which the XCAP URI
 * parser decodes to the same character, so the XDMS gets a valid URI whatever the HTTP client
 * library does with quotes. Returns 0 or -1 (out of memory). */
static int proxy_upstream_target(const char *target, struct buf *out)
{
    for (const char *p = target; *p;) {
        size_t run = strcspn(p, "\"");
        if (buf_append(out, p, run) < 0)
            return -1;
        p += run;
        if (*p == '"') {
            if (buf_puts(out, "%22") < 0)
                return -1;
            p++;
        }
    }
    return buf_puts(out, "");
}

/* What one forwarded request hands the XDMS (and gets back): the relayed headers borrow the
 * request's strings, which stay valid until it is answered (also when deferred). */
struct proxy_exchange {
    struct proxy_headers h;
    struct buf target;
    struct forward_request rq;
    struct forward_response fr;
};

/* Phase: forward, its first half (TS 24.109 §7; OMA XDM Core §5.1.2, §5.2; RFC 9110 §7.6). Only
 * the relayed headers go upstream, so Authorization, Content-Encoding and every client-sent
 * identity header are dropped by construction. */
static enum xcap_status proxy_forward_prepare(struct proxy_call *c, struct proxy_exchange *x)
{
    x->h.n = 0;
    http_request_each_header(c->req, proxy_pick_header, &x->h);
    for (size_t i = 0; i < c->n_idh; i++)
        x->h.v[x->h.n++] = c->idh[i];
    /* This request's id (made in aggproxy's handler wrapper), so that the XDMS logs it too. */
    x->h.v[x->h.n++] = (struct forward_header){"X-Request-ID", access_request_id()};
    buf_init(&x->target, 3 * strlen(c->target) + 1);
    forward_response_init(&x->fr);
    if (proxy_upstream_target(c->target, &x->target) < 0)
        return xcap_fail(&c->err, XCAP_INTERNAL, "out of memory");
    x->rq = (struct forward_request){
        .method = c->method,
        .target = x->target.data,
        .headers = x->h.v,
        .n_headers = x->h.n,
        .body = c->body,
        .body_len = c->body_len,
    };
    return XCAP_OK;
}

static void proxy_exchange_release(struct proxy_exchange *x)
{
    buf_release(&x->target);
    forward_response_release(&x->fr);
}

/* Phase: forward, its second half: the XDMS's answer, whatever its status, is relayed as it is. */
static enum xcap_status proxy_forward_result(struct proxy_call *c, enum xcap_status st,
                                             struct proxy_exchange *x, struct http_response *resp)
{
    struct forward_response *fr = &x->fr;
    if (st == XCAP_UPSTREAM || st == XCAP_UPSTREAM_DOWN)
        metrics_upstream_error(METRICS_UPSTREAM_UNREACHABLE);
    else if (st == XCAP_UPSTREAM_TIMEOUT)
        metrics_upstream_error(METRICS_UPSTREAM_TIMEOUT);
    if (st != XCAP_OK) {
        xcap_fail(&c->err, st, "%s", fr->error ? fr->error : status_phrase(st));
        /* Nothing reached any instance: the client may simply send it again shortly (RFC 9110
         * §15.6.4, §10.2.3). */
        if (st == XCAP_UPSTREAM_DOWN)
            xcap_err_add_header(&c->err, "Retry-After", UPSTREAM_RETRY_AFTER);
        return st;
    }
    c->relayed = true;
    resp->status = fr->status;
    for (size_t i = 0; i < fr->n_headers; i++)
        http_response_header(resp, fr->headers[i].name, fr->headers[i].value);
    /* The body moves over without a copy. */
    buf_release(&resp->body);
    resp->body = fr->body;
    resp->body.max = (size_t)-1;
    buf_init(&fr->body, 0);
    return XCAP_OK;
}

/* Phase: forward, on this thread (no loop configured). */
static enum xcap_status proxy_forward(struct proxy *p, struct proxy_call *c,
                                      struct http_response *resp)
{
    struct proxy_exchange x;
    enum xcap_status st = proxy_forward_prepare(c, &x);
    if (st == XCAP_OK) {
        st = c->partner ? upstream_forward(partner_forward(c->partner), partner_routes(c->partner),
                                           c->route.up, &x.rq, &x.fr, NULL)
                        : upstream_forward(p->forward, p->routes, c->route.up, &x.rq, &x.fr, NULL);
        st = proxy_forward_result(c, st, &x, resp);
    }
    proxy_exchange_release(&x);
    return st;
}

/* Phase: dispatch to the target's kind: an XDMS, or one of the proxy's own documents. */
static enum xcap_status proxy_dispatch(struct proxy *p, struct proxy_call *c,
                                       struct http_response *resp)
{
    switch (c->route.kind) {
    case ROUTE_CAPS:
        return proxy_caps(p, c, resp);
    case ROUTE_DIRECTORY:
        return proxy_directory(p, c, resp);
    case ROUTE_UPSTREAM:
        return proxy_forward(p, c, resp);
    case ROUTE_NOT_FOUND:
        break;
    }
    return xcap_fail(&c->err, XCAP_NOT_FOUND, "no XDMS serves this URI");
}

/* Phase: encode (OMA XDM Core §5.1; RFC 9110 §8.4.1.3). Successful GET answers vary with
 * Accept-Encoding; they are gzipped when the client accepts it and the body is worth it. The ETag
 * stays the one of the identity body (the one the XDMS made): clients send it back in If-Match on
 * PUT, where the XDMS compares it with the stored document (docs/proxy.md). */
static void proxy_encode(struct proxy *p, struct proxy_call *c, struct http_response *resp)
{
    if (!p->gzip || (strcmp(c->method, "GET") != 0 && !c->head) || resp->status < 200 ||
        resp->status > 299)
        return;
    http_response_header(resp, "Vary", "Accept-Encoding");
    if (c->head || resp->body.len < p->gzip_min ||
        http_response_get_header(resp, "Content-Encoding") ||
        !compress_accepts_gzip(http_request_header(c->req, "Accept-Encoding")))
        return;
    struct buf z;
    buf_init(&z, resp->body.len + 1024);
    if (compress_gzip(resp->body.data, resp->body.len, 6, &z) == 0 && z.len < resp->body.len) {
        buf_release(&resp->body);
        resp->body = z;
        resp->body.max = (size_t)-1;
        http_response_header(resp, "Content-Encoding", "gzip");
    } else {
        buf_release(&z);
    }
}

/* The one log line of an answer: failures the operator should see at info level or above
 * (server errors at error/warning), expected ones and successes at debug level. */
static void proxy_log(const struct proxy_call *c, int code)
{
    /* the operator's detail when there is one, else what the client was told */
    const char *why = c->note[0] ? c->note : c->err.phrase ? c->err.phrase : "";
    const char *as = c->identity ? c->identity : c->n_ids ? c->ids[0] : NULL;
#define PROXY_LOG(level)                                                                           \
    level("%s %s from %s%s%s: %d%s%s", c->method, c->target, http_request_peer_str(c->req),        \
          as ? " as " : "", as ? as : "", code, c->relayed ? "" : ": ", c->relayed ? "" : why)
    if (c->relayed || code < 400 || c->quiet)
        PROXY_LOG(log_debug);
    else if (code == 500)
        PROXY_LOG(log_error);
    else if (code > 500)
        PROXY_LOG(log_warn);
    else
        PROXY_LOG(log_info);
#undef PROXY_LOG
}

/* Phase: respond — the one place that renders the proxy's answers (XDMS answers are relayed as
 * they came): the status, for a failure its text/plain phrase and the headers the status needs
 * (Allow, WWW-Authenticate, Retry-After, Accept-Encoding); then gzip (encode),
 * Authentication-Info (RFC 7616 §3.5; OMA XDM Core §5.1.2; TS 24.109 §7.2) on every authenticated
 * answer, over the body as sent (qop=auth-int); and one log line. */
static void proxy_respond(struct proxy *p, struct proxy_call *c, enum xcap_status st,
                          struct http_response *resp)
{
    if (!c->relayed) {
        resp->status = status_http(st);
        if (resp->status >= 400)
            http_response_text(resp, resp->status,
                               c->err.phrase ? c->err.phrase : status_phrase(st));
        if (c->err.allow)
            http_response_header(resp, "Allow", c->err.allow);
        for (size_t i = 0; i < c->err.n_headers; i++)
            http_response_header(resp, c->err.headers[i].name, c->err.headers[i].value);
    }
    proxy_encode(p, c, resp);
    if (c->authenticated) {
        struct buf v;
        buf_init(&v, 4096);
        if (digest_auth_info(&c->auth, resp->body.data, resp->body.len, &v) == 0)
            http_response_header(resp, "Authentication-Info", v.data);
        buf_release(&v);
    }
    proxy_log(c, resp->status);
}

static double proxy_seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* The end of every request: respond, then release what it holds. */
static void proxy_finish(struct proxy *p, struct proxy_call *c, enum xcap_status st,
                         struct http_response *resp)
{
    proxy_respond(p, c, st, resp);
    if (c->partner_begun)
        partner_end(c->partner, resp->status, proxy_seconds_since(&c->partner_t0));
    proxy_release(c);
}

/* A request forwarded without holding its HTTP thread: everything it owns, from the handler to
 * the answer. */
struct proxy_pending {
    struct proxy_call c;
    struct proxy_exchange x;
    struct upstream_call u;
    struct timespec t0;
    char request_id[ACCESS_ID_MAX + 1];
};

/* forward_done_fn: the XDMS answered (or could not): the response is made on the loop thread and
 * the connection resumed with it. */
static void proxy_forward_done(void *cls, enum xcap_status st)
{
    struct proxy_pending *pp = cls;
    struct proxy_call *c = &pp->c;
    struct proxy *p = c->p;
    const struct http_request *req = c->req;
    access_begin(pp->request_id);
    struct http_response resp = {.status = 500};
    buf_init(&resp.body, SIZE_MAX);
    st = proxy_forward_result(c, st, &pp->x, &resp);
    proxy_finish(p, c, st, &resp);
    if (p->answered)
        p->answered(req, &resp, proxy_seconds_since(&pp->t0));
    proxy_exchange_release(&pp->x);
    free(pp);
    atomic_fetch_sub(&p->in_flight, 1);
    http_request_answer(req, &resp); /* req may be gone once this returns */
    buf_release(&resp.body);
}

/* Phase: forward, on the loop (RFC 9110 §7.6): the connection is suspended until the XDMS has
 * answered. XCAP_OK: deferred, pp belongs to the loop; otherwise the request is answered here. */
static enum xcap_status proxy_forward_defer(struct proxy *p, struct proxy_pending *pp)
{
    struct proxy_call *c = &pp->c;
    if (atomic_fetch_add(&p->in_flight, 1) >= p->max_in_flight) {
        atomic_fetch_sub(&p->in_flight, 1);
        proxy_note(c, "upstream_max_in_flight (%u) requests waiting for their XDMS",
                   p->max_in_flight);
        xcap_fail(&c->err, XCAP_UPSTREAM_DOWN,
                  "too many requests waiting for their XDMS; retry after the time in Retry-After");
        xcap_err_add_header(&c->err, "Retry-After", UPSTREAM_RETRY_AFTER);
        return XCAP_UPSTREAM_DOWN;
    }
    enum xcap_status st = proxy_forward_prepare(c, &pp->x);
    if (st == XCAP_OK && http_request_defer(c->req) < 0)
        st = xcap_fail(&c->err, XCAP_INTERNAL, "cannot suspend the connection");
    if (st != XCAP_OK) {
        atomic_fetch_sub(&p->in_flight, 1);
        proxy_exchange_release(&pp->x);
        return st;
    }
    snprintf(pp->request_id, sizeof pp->request_id, "%s", access_request_id());
    if (c->partner)
        upstream_submit(&pp->u, p->loop, partner_forward(c->partner), partner_routes(c->partner),
                        c->route.up, &pp->x.rq, &pp->x.fr, proxy_forward_done, pp);
    else
        upstream_submit(&pp->u, p->loop, p->forward, p->routes, c->route.up, &pp->x.rq, &pp->x.fr,
                        proxy_forward_done, pp);
    return XCAP_OK;
}

void proxy_handle(void *cls, const struct http_request *req, struct http_response *resp)
{
    struct proxy *p = cls;
    struct proxy_pending *pp = calloc(1, sizeof *pp);
    if (!pp) {
        http_response_text(resp, 500, "out of memory");
        return;
    }
    clock_gettime(CLOCK_MONOTONIC, &pp->t0);
    struct proxy_call *c = &pp->c;
    proxy_receive(p, c, req);
    enum xcap_status st;
    if ((st = proxy_method(c)) == XCAP_OK && (st = proxy_authenticate(p, c)) == XCAP_OK &&
        (st = proxy_authorise(c)) == XCAP_OK && (st = proxy_identify(p, c)) == XCAP_OK &&
        (st = proxy_decode(p, c)) == XCAP_OK && (st = proxy_route(p, c)) == XCAP_OK) {
        if (c->route.kind == ROUTE_UPSTREAM && p->loop) {
            if ((st = proxy_forward_defer(p, pp)) == XCAP_OK)
                return; /* answered by proxy_forward_done */
        } else {
            st = proxy_dispatch(p, c, resp);
        }
    }
    proxy_finish(p, c, st, resp);
    free(pp);
}
