#include "proxy.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "caps.h"
#include "digest.h"
#include "forward.h"
#include "log.h"
#include "route.h"
#include "users.h"

#define PROXY_HEADERS_MAX 64

struct proxy {
    char *default_realm;
    struct store *store;
    struct digest *digest;
    struct route_table *routes;
    struct forward *forward;
};

struct proxy *proxy_new(const struct proxy_config *cfg)
{
    struct proxy *p = calloc(1, sizeof *p);
    if (!p || !(p->default_realm = strdup(cfg->default_realm))) {
        free(p);
        return NULL;
    }
    p->store = cfg->store;
    p->digest = cfg->digest;
    p->routes = cfg->routes;
    p->forward = cfg->forward;
    return p;
}

void proxy_free(struct proxy *p)
{
    if (!p)
        return;
    free(p->default_realm);
    free(p);
}

/* Everything one request owns, released in one place (proxy_release). */
struct proxy_call {
    const struct http_request *req;
    const char *method;
    const char *target;
    struct route_match route;
    char xui_domain[USERS_NAME_MAX + 1];
    const char *realm;      /* challenged realm */
    const char *need_realm; /* realm the credentials must carry; NULL = any known realm */
    struct digest_auth auth;
    bool authenticated;
};

static void proxy_release(struct proxy_call *c)
{
    if (c->authenticated)
        digest_auth_release(&c->auth);
}

static int proxy_count_header(void *cls, const char *name, const char *value)
{
    (void)value;
    struct {
        const char *name;
        unsigned n;
    } *count = cls;
    if (strcasecmp(name, count->name) == 0)
        count->n++;
    return 0;
}

static unsigned proxy_header_count(const struct http_request *req, const char *name)
{
    struct {
        const char *name;
        unsigned n;
    } count = {name, 0};
    http_request_each_header(req, proxy_count_header, &count);
    return count.n;
}

/* Phase: receive. The realm follows the XUI in the URI (the domain of users/sip:alice@example.com/)
 * so that each domain's users authenticate against their own realm; URIs that name no user (the
 * global tree, xcap-caps) are challenged with the configured realm and accept the credentials of
 * any known user. */
static void proxy_receive(struct proxy *p, struct proxy_call *c, const struct http_request *req)
{
    c->req = req;
    c->method = http_request_method(req);
    c->target = http_request_target(req);
    route_match(p->routes, http_request_path(req), &c->route);
    c->realm = p->default_realm;
    c->need_realm = NULL;
    if (c->route.xui_len) {
        char xui[USERS_XUI_MAX + 1], user[USERS_NAME_MAX + 1];
        if (route_decode(c->route.xui, c->route.xui_len, xui, sizeof xui) == 0 &&
            users_xui_split(xui, user, sizeof user, c->xui_domain, sizeof c->xui_domain) ==
                USERS_OK &&
            c->xui_domain[0])
            c->realm = c->xui_domain;
        c->need_realm = c->realm;
    }
}

static void proxy_challenge(struct proxy *p, struct proxy_call *c, bool stale,
                            struct http_response *resp)
{
    char nonce[DIGEST_NONCE_MAX];
    struct buf v;
    buf_init(&v, 4096);
    /* SPEC DIG-1: one challenge per algorithm, the preferred one first. */
    static const enum digest_alg offered[] = {DIGEST_SHA256, DIGEST_MD5};
    if (digest_nonce_new(p->digest, digest_clock_now(), nonce) < 0) {
        http_response_text(resp, 500, "cannot make a nonce");
        buf_release(&v);
        return;
    }
    http_response_text(resp, 401, "authentication required");
    for (size_t i = 0; i < sizeof offered / sizeof offered[0]; i++) {
        buf_reset(&v);
        if (digest_challenge(p->digest, offered[i], c->realm, nonce, stale, &v) == 0)
            http_response_header(resp, "WWW-Authenticate", v.data);
    }
    buf_release(&v);
}

/* Phase: authenticate (SPEC AP-2, DIG-*). Returns true when the request may go on; otherwise resp
 * holds the answer. */
static bool proxy_authenticate(struct proxy *p, struct proxy_call *c, struct http_response *resp)
{
    if (proxy_header_count(c->req, "Authorization") > 1) {
        http_response_text(resp, 400, "more than one Authorization header");
        return false;
    }
    size_t body_len;
    const char *body = http_request_body(c->req, &body_len);
    struct digest_request drq = {
        .method = c->method,
        .uri = c->target,
        .realm = c->need_realm,
        .body = body,
        .body_len = body_len,
        .now = digest_clock_now(),
    };
    const char *why = NULL;
    enum digest_result r = digest_verify(p->digest, http_request_header(c->req, "Authorization"),
                                         &drq, users_digest_lookup, p->store, &c->auth, &why);
    switch (r) {
    case DIGEST_OK:
        c->authenticated = true;
        return true;
    case DIGEST_BAD_REQUEST:
        log_debug("%s %s: 400: %s", c->method, c->target, why);
        http_response_text(resp, 400, why);
        return false;
    case DIGEST_CHALLENGE:
        log_debug("%s %s: 401: %s", c->method, c->target, why);
        proxy_challenge(p, c, false, resp);
        return false;
    case DIGEST_STALE:
        log_debug("%s %s: 401 stale: %s", c->method, c->target, why);
        proxy_challenge(p, c, true, resp);
        return false;
    case DIGEST_ERROR:
        log_error("%s %s: authentication failed: %s", c->method, c->target, why);
        http_response_text(resp, 500, "authentication backend failure");
        return false;
    }
    return false;
}

/* RFC 9110 §13.1.2 If-None-Match with weak comparison, for the proxy's own document. */
static bool proxy_inm_matches(const char *header, const char *etag)
{
    const char *p = header;
    size_t elen = strlen(etag);
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '*')
            return true;
        if (p[0] == 'W' && p[1] == '/')
            p += 2;
        size_t len = strcspn(p, ",");
        size_t t = len;
        while (t && (p[t - 1] == ' ' || p[t - 1] == '\t'))
            t--;
        if (t == elen && memcmp(p, etag, elen) == 0)
            return true;
        p += len;
    }
    return false;
}

static void proxy_identity_value(const struct proxy_call *c, char *out, size_t outlen)
{
    snprintf(out, outlen, "\"%s\"", c->auth.identity);
}

/* The proxy's own xcap-caps (SPEC XCAP-CAPS-3/4): only global/index, read-only. */
static void proxy_caps(struct proxy *p, struct proxy_call *c, struct http_response *resp)
{
    const struct route_match *m = &c->route;
    if (!(m->tree_len == 6 && memcmp(m->tree, "global", 6) == 0 && m->rest_len == 6 &&
          memcmp(m->rest, "/index", 6) == 0)) {
        http_response_text(resp, 404, "xcap-caps has only global/index");
        return;
    }
    if (strcmp(c->method, "GET") != 0 && strcmp(c->method, "HEAD") != 0) {
        http_response_text(resp, 405, "xcap-caps is generated by the server");
        http_response_header(resp, "Allow", "GET, HEAD");
        return;
    }
    char identity[USERS_XUI_MAX + 3];
    proxy_identity_value(c, identity, sizeof identity);
    struct buf doc;
    buf_init(&doc, 1 << 20);
    char etag[CAPS_ETAG_MAX];
    if (caps_compose(p->forward, p->routes, identity, &doc) < 0 ||
        caps_etag(doc.data, doc.len, etag) < 0) {
        buf_release(&doc);
        http_response_text(resp, 500, "cannot compose xcap-caps");
        return;
    }
    http_response_header(resp, "ETag", etag);
    const char *inm = http_request_header(c->req, "If-None-Match");
    if (inm && proxy_inm_matches(inm, etag)) {
        resp->status = 304;
    } else {
        resp->status = 200;
        http_response_header(resp, "Content-Type", CAPS_MIME);
        http_response_body(resp, doc.data, doc.len);
    }
    buf_release(&doc);
}

struct proxy_headers {
    struct forward_header v[PROXY_HEADERS_MAX];
    size_t n;
};

static int proxy_pick_header(void *cls, const char *name, const char *value)
{
    struct proxy_headers *h = cls;
    if (forward_header_relayed(name) && h->n < PROXY_HEADERS_MAX - 1) {
        h->v[h->n].name = name;
        h->v[h->n].value = value;
        h->n++;
    }
    return 0;
}

/* Phase: forward (SPEC AP-5..AP-8). Only the relayed headers go upstream, so Authorization and
 * every client-sent identity header are dropped by construction; the asserted identity is the
 * authenticated user's XUI. */
static void proxy_forward(struct proxy *p, struct proxy_call *c, struct http_response *resp)
{
    struct proxy_headers h = {.n = 0};
    http_request_each_header(c->req, proxy_pick_header, &h);
    char identity[USERS_XUI_MAX + 3];
    proxy_identity_value(c, identity, sizeof identity);
    h.v[h.n].name = "X-3GPP-Asserted-Identity";
    h.v[h.n].value = identity;
    h.n++;

    size_t body_len;
    const char *body = http_request_body(c->req, &body_len);
    struct forward_request rq = {
        .method = c->method,
        .base_url = c->route.upstream,
        .target = c->target,
        .headers = h.v,
        .n_headers = h.n,
        .body = body,
        .body_len = body_len,
    };
    struct forward_response fr;
    forward_response_init(&fr);
    enum xcap_status st = forward_do(p->forward, &rq, &fr);
    if (st != XCAP_OK) {
        int code = status_http(st);
        if (code >= 500)
            log_warn("%s %s: %d: %s", c->method, c->target, code, fr.error ? fr.error : "");
        http_response_text(resp, code, fr.error ? fr.error : status_phrase(st));
        forward_response_release(&fr);
        return;
    }
    resp->status = fr.status;
    for (size_t i = 0; i < fr.n_headers; i++)
        http_response_header(resp, fr.headers[i].name, fr.headers[i].value);
    /* The body moves over without a copy. */
    buf_release(&resp->body);
    resp->body = fr.body;
    resp->body.max = (size_t)-1;
    buf_init(&fr.body, 0);
    forward_response_release(&fr);
}

/* Phase: respond. SPEC DIG-6 / AP-3: Authentication-Info on every authenticated answer. */
static void proxy_respond(struct proxy_call *c, struct http_response *resp)
{
    if (!c->authenticated)
        return;
    struct buf v;
    buf_init(&v, 4096);
    if (digest_auth_info(&c->auth, resp->body.data, resp->body.len, &v) == 0)
        http_response_header(resp, "Authentication-Info", v.data);
    buf_release(&v);
    log_debug("%s %s as %s: %d", c->method, c->target, c->auth.identity, resp->status);
}

void proxy_handle(void *cls, const struct http_request *req, struct http_response *resp)
{
    struct proxy *p = cls;
    struct proxy_call c;
    memset(&c, 0, sizeof c);
    proxy_receive(p, &c, req);
    if (proxy_authenticate(p, &c, resp)) {
        switch (c.route.kind) {
        case ROUTE_NOT_FOUND:
            http_response_text(resp, 404, "no XDMS serves this URI");
            break;
        case ROUTE_CAPS:
            proxy_caps(p, &c, resp);
            break;
        case ROUTE_UPSTREAM:
            proxy_forward(p, &c, resp);
            break;
        }
    }
    proxy_respond(&c, resp);
    proxy_release(&c);
}
