#include "server.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "access.h"
#include "caps.h"
#include "directory.h"
#include "engine.h"
#include "etag.h"
#include "log.h"
#include "notify.h"
#include "server_park.h"
#include "usage.h"
#include "xcap_uri.h"

struct trusted_peer {
    int family; /* AF_INET, AF_INET6, or 0 for a peer known by its TLS client certificate */
    unsigned char addr[16];
    unsigned prefix; /* bits that must match */
    enum peer_role role;
    char *subject;   /* certificate peer: RFC 4514 subject, or NULL */
    char sha256[65]; /* certificate peer: lower-case hex fingerprint, or "" */
    char *domains;   /* role proxy: the only domains whose identities it may assert, lower-case,
                        comma-separated ("partner.example,b.example"); NULL = any */
};

struct xdms_server {
    struct xdms_server_config cfg;
    char *root_path;
    char *default_domain;
    char *xcap_root;
    struct engine *engine;
    struct notifier *notifier;
    /* Replaced whole by server_take_peers() on a reload; readers hold peers_lock for reading
     * while they walk it. */
    pthread_rwlock_t peers_lock;
    struct trusted_peer *peers;
    size_t n_peers;
    struct buf caps; /* generated once: the xcap-caps document never changes while running */
    char caps_etag[32];
    struct server_park park; /* parked writes (server.h), run by the write threads */
};

/* Everything one request carries between phases; released in one place (server_handle). */
/* What a request addresses: a stored document of an application usage, or one of the
 * documents the server generates. */
enum xdms_resource { RES_USAGE, RES_CAPS, RES_DIRECTORY };

struct xdms_call {
    const struct http_request *http;
    enum xdms_resource kind;
    enum peer_role peer;
    struct xcap_uri uri;
    const struct appusage *au;
    enum engine_method method;
    char *identity;                     /* asserted user, decoded and unquoted */
    char *peer_domains;                 /* copy of the matched trusted_peer's domains, or NULL */
    int64_t start_ms;                   /* when the request arrived (charging records) */
    char request_id[ACCESS_ID_MAX + 1]; /* this request's id (access log, charging records),
                                         * taken on the HTTP thread: a parked write runs on
                                         * another, and group commit runs it on the leader's */
    struct xcap_err err;
};

/* One request from the handler to its answer: on the heap so that a parked write can outlive
 * the handler's call. */
struct server_write {
    struct server_park_item item; /* first: the park queue's view of it (server_park.h) */
    struct xdms_call c;
    struct timespec t0;
};

static void server_run_parked(void *cls, struct server_park_item *item);

static uint32_t server_fnv1a(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

struct xdms_server *server_new(const struct xdms_server_config *cfg, struct engine *engine,
                               struct notifier *notifier)
{
    struct xdms_server *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    pthread_rwlock_init(&s->peers_lock, NULL);
    server_park_init(&s->park);
    s->cfg = *cfg;
    s->root_path = strdup(cfg->root_path);
    s->cfg.root_path = s->root_path;
    s->default_domain = strdup(cfg->default_domain ? cfg->default_domain : "example.com");
    s->cfg.default_domain = s->default_domain;
    s->xcap_root = strdup(cfg->xcap_root ? cfg->xcap_root : "/");
    s->cfg.xcap_root = s->xcap_root;
    s->engine = engine;
    s->notifier = notifier;
    buf_init(&s->caps, 1 << 16);
    if (!s->root_path || !s->default_domain || !s->xcap_root ||
        caps_render(cfg->role, &s->caps) < 0) {
        server_free(s);
        return NULL;
    }
    snprintf(s->caps_etag, sizeof s->caps_etag, "caps-%08x",
             server_fnv1a(s->caps.data, s->caps.len));
    if (engine && server_park_start(&s->park, cfg->write_threads, cfg->max_parked_writes,
                                    server_run_parked, s) < 0) {
        server_free(s);
        return NULL;
    }
    return s;
}

static void server_free_peers(struct trusted_peer *peers, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(peers[i].subject);
        free(peers[i].domains);
    }
    free(peers);
}

void server_take_peers(struct xdms_server *s, struct xdms_server *from)
{
    pthread_rwlock_wrlock(&s->peers_lock);
    struct trusted_peer *old = s->peers;
    size_t n_old = s->n_peers;
    s->peers = from->peers;
    s->n_peers = from->n_peers;
    pthread_rwlock_unlock(&s->peers_lock);
    from->peers = NULL;
    from->n_peers = 0;
    server_free_peers(old, n_old);
}

size_t server_peer_count(struct xdms_server *s)
{
    pthread_rwlock_rdlock(&s->peers_lock);
    size_t n = s->n_peers;
    pthread_rwlock_unlock(&s->peers_lock);
    return n;
}

void server_free(struct xdms_server *s)
{
    if (!s)
        return;
    server_park_release(&s->park);
    free(s->root_path);
    free(s->default_domain);
    free(s->xcap_root);
    server_free_peers(s->peers, s->n_peers);
    pthread_rwlock_destroy(&s->peers_lock);
    buf_release(&s->caps);
    free(s);
}

/* "domain=D1[,D2...]": the domains a peer with role proxy may assert identities of (a partner's
 * XDMS trusting the operator's proxy for the partner's own users only). Each domain is a host
 * name (letters, digits, '-', '.'); lower-cased into *out. Returns 0, or -1 (logged). */
static int server_peer_domains(const char *spec, const char *tok, size_t len, char **out)
{
    const size_t skip = sizeof "domain=" - 1;
    char *d = len > skip ? strndup(tok + skip, len - skip) : NULL;
    bool ok = d != NULL && len - skip <= SERVER_PEER_DOMAINS_MAX;
    for (size_t i = 0; ok && d[i]; i++) {
        d[i] = (char)tolower((unsigned char)d[i]);
        bool sep = d[i] == ',' || d[i] == '.';
        ok = isalnum((unsigned char)d[i]) || d[i] == '-' || sep;
        /* no empty name or label: a comma or dot is neither first, nor last, nor next to
         * another one */
        if (ok && sep)
            ok = i > 0 && d[i + 1] && d[i + 1] != ',' && d[i + 1] != '.';
    }
    if (!ok) {
        log_error("trusted_peer \"%s\": domain= wants host names separated by commas (at most "
                  "%d bytes)",
                  spec, SERVER_PEER_DOMAINS_MAX);
        free(d);
        return -1;
    }
    *out = d;
    return 0;
}

/* The last whitespace-separated word of [spec, end): sets *word and returns the end of what
 * comes before it, trailing whitespace skipped. */
static const char *server_last_word(const char *spec, const char *end, const char **word)
{
    while (end > spec && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    const char *w = end;
    while (w > spec && w[-1] != ' ' && w[-1] != '\t')
        w--;
    *word = w;
    const char *before = w;
    while (before > spec && (before[-1] == ' ' || before[-1] == '\t'))
        before--;
    return before;
}

/* "subject:DN ROLE [domain=D,...]" or "sha256:HEX ROLE [domain=D,...]": a peer that presents a
 * verified TLS client certificate (mutual TLS, an alternative to address lists; the listener needs
 * tls_client_ca). The DN may hold spaces: the role is the last word, or the one before a final
 * domain= word. */
static int server_add_cert_peer(struct xdms_server *s, const char *spec)
{
    const char *end = spec + strlen(spec);
    while (end > spec && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    const char *role;
    const char *id_end = server_last_word(spec, end, &role);
    struct trusted_peer p = {0};
    if ((size_t)(end - role) > 7 && strncmp(role, "domain=", 7) == 0) {
        if (server_peer_domains(spec, role, (size_t)(end - role), &p.domains) < 0)
            return -1;
        end = id_end;
        id_end = server_last_word(spec, end, &role);
    }
    if ((size_t)(end - role) == 5 && strncmp(role, "proxy", 5) == 0)
        p.role = PEER_PROXY;
    else if ((size_t)(end - role) == 6 && strncmp(role, "server", 6) == 0)
        p.role = PEER_SERVER;
    else {
        log_error("trusted_peer \"%s\": role must be proxy or server", spec);
        free(p.domains);
        return -1;
    }
    if (p.domains && p.role != PEER_PROXY) {
        log_error("trusted_peer \"%s\": domain= restricts the identities a proxy asserts; a "
                  "server asserts none",
                  spec);
        free(p.domains);
        return -1;
    }
    if (strncmp(spec, "sha256:", 7) == 0) {
        size_t n = 0;
        for (const char *c = spec + 7; c < id_end; c++) {
            if (*c == ':')
                continue;
            if (!isxdigit((unsigned char)*c) || n == 64) {
                n = 0;
                break;
            }
            p.sha256[n++] = (char)tolower((unsigned char)*c);
        }
        if (n != 64) {
            log_error("trusted_peer \"%s\": sha256: needs 64 hex digits", spec);
            free(p.domains);
            return -1;
        }
    } else if (id_end - spec > 8 && !(p.subject = strndup(spec + 8, (size_t)(id_end - spec - 8)))) {
        free(p.domains);
        return -1;
    }
    struct trusted_peer *v = realloc(s->peers, (s->n_peers + 1) * sizeof *v);
    if (!v) {
        free(p.subject);
        free(p.domains);
        return -1;
    }
    s->peers = v;
    s->peers[s->n_peers++] = p;
    return 0;
}

int server_add_peer(struct xdms_server *s, const char *spec)
{
    if (strncmp(spec, "subject:", 8) == 0 || strncmp(spec, "sha256:", 7) == 0)
        return server_add_cert_peer(s, spec);
    char addr[INET6_ADDRSTRLEN + 4], role[16];
    if (strstr(spec, "domain=")) {
        log_error("trusted_peer \"%s\": domain= goes with a certificate peer (subject: or "
                  "sha256:) of role proxy",
                  spec);
        return -1;
    }
    if (sscanf(spec, "%49s %15s", addr, role) != 2) {
        log_error("trusted_peer \"%s\": expected \"ADDRESS proxy|server\"", spec);
        return -1;
    }
    struct trusted_peer p = {0};
    if (strcmp(role, "proxy") == 0)
        p.role = PEER_PROXY;
    else if (strcmp(role, "server") == 0)
        p.role = PEER_SERVER;
    else {
        log_error("trusted_peer \"%s\": role must be proxy or server", spec);
        return -1;
    }
    /* An address proves nothing about which local process connects (any user on the host, or
     * any host behind a NAT, shares it), so it never grants acting for users: the proxy connects
     * over the UNIX-domain socket, or presents a TLS client certificate. */
    if (p.role == PEER_PROXY) {
        log_error("trusted_peer \"%s\": an address never grants the proxy role; connect the "
                  "proxy over the UNIX-domain socket (key socket) or trust its TLS client "
                  "certificate (trusted_peer = subject:DN proxy, or sha256:HEX proxy)",
                  spec);
        return -1;
    }
    char *slash = strchr(addr, '/');
    if (slash)
        *slash = '\0';
    if (inet_pton(AF_INET, addr, p.addr) == 1) {
        p.family = AF_INET;
        p.prefix = 32;
    } else if (inet_pton(AF_INET6, addr, p.addr) == 1) {
        p.family = AF_INET6;
        p.prefix = 128;
    } else {
        log_error("trusted_peer \"%s\": not a numeric address", spec);
        return -1;
    }
    if (slash) {
        char *end;
        unsigned long bits = strtoul(slash + 1, &end, 10);
        if (*end || end == slash + 1 || bits > p.prefix) {
            log_error("trusted_peer \"%s\": bad prefix length", spec);
            return -1;
        }
        p.prefix = (unsigned)bits;
    }
    struct trusted_peer *v = realloc(s->peers, (s->n_peers + 1) * sizeof *v);
    if (!v)
        return -1;
    s->peers = v;
    s->peers[s->n_peers++] = p;
    return 0;
}

static bool server_prefix_match(const unsigned char *a, const unsigned char *b, unsigned bits)
{
    unsigned bytes = bits / 8, rest = bits % 8;
    if (memcmp(a, b, bytes) != 0)
        return false;
    if (!rest)
        return true;
    unsigned char mask = (unsigned char)(0xFF << (8 - rest));
    return (a[bytes] & mask) == (b[bytes] & mask);
}

/* Phase: authorize the peer — before anything of the request is parsed. The proxy role (acting
 * for the user of X-3GPP-Asserted-Identity, TS 24.109 §5.2) needs a credential: a connection on
 * the UNIX-domain socket, which filesystem permissions restrict to the XDMS's own account, or a
 * verified TLS client certificate named by trusted_peer. Addresses grant the server role only. */
static enum xcap_status server_authorize_peer(struct xdms_server *s, struct xdms_call *c)
{
    if (http_request_is_local(c->http)) {
        c->peer = PEER_PROXY;
        return XCAP_OK;
    }
    socklen_t len;
    const struct sockaddr *sa = http_request_peer(c->http, &len);
    unsigned char addr[16];
    int family = 0;
    if (sa && sa->sa_family == AF_INET) {
        family = AF_INET;
        memcpy(addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa && sa->sa_family == AF_INET6) {
        const unsigned char *a6 = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
        if (memcmp(a6, mapped, 12) == 0) {
            family = AF_INET;
            memcpy(addr, a6 + 12, 4);
        } else {
            family = AF_INET6;
            memcpy(addr, a6, 16);
        }
    }
    struct http_tls_peer cert;
    int crc = http_request_tls_peer(c->http, &cert);
    if (crc < 0)
        return xcap_fail(&c->err, XCAP_FORBIDDEN, "client certificate not trusted");
    bool found = false;
    pthread_rwlock_rdlock(&s->peers_lock);
    for (size_t i = 0; i < s->n_peers && !found; i++) {
        const struct trusted_peer *p = &s->peers[i];
        if (p->family == 0)
            found = crc == 0 && ((p->subject && strcmp(p->subject, cert.subject) == 0) ||
                                 (p->sha256[0] && strcmp(p->sha256, cert.sha256) == 0));
        else
            found = p->family == family && server_prefix_match(p->addr, addr, p->prefix);
        if (found) {
            c->peer = p->role;
            if (p->domains && !(c->peer_domains = strdup(p->domains)))
                found = false;
        }
    }
    pthread_rwlock_unlock(&s->peers_lock);
    if (found)
        return XCAP_OK;
    return xcap_fail(&c->err, XCAP_FORBIDDEN, "not a trusted peer");
}

static enum xcap_status server_parse(struct xdms_server *s, struct xdms_call *c)
{
    const char *m = http_request_method(c->http);
    if (strcmp(m, "GET") == 0)
        c->method = ENGINE_GET;
    else if (strcmp(m, "HEAD") == 0)
        c->method = ENGINE_HEAD;
    else if (strcmp(m, "PUT") == 0)
        c->method = ENGINE_PUT;
    else if (strcmp(m, "DELETE") == 0)
        c->method = ENGINE_DELETE;
    else {
        /* RFC 4825 §8.1: POST and others are not XCAP methods, on any URI. Allow
         * names what the resource takes (RFC 9110 §15.5.6): GET and HEAD only for xcap-caps, the
         * directory and namespace bindings (§8.2.2), when the URI says it is one of them. */
        xcap_fail(&c->err, XCAP_METHOD_NOT_ALLOWED, "method %s is not allowed", m);
        struct xcap_uri u = {0};
        struct xcap_err e = {0};
        bool read_only = false;
        if (xcap_uri_parse(s->cfg.root_path, http_request_path(c->http),
                           http_request_query(c->http), &u, &e) == XCAP_OK) {
            size_t sel = u.node_sel ? strlen(u.node_sel) : 0;
            read_only = strcmp(u.auid, XCAP_CAPS_AUID) == 0 ||
                        strcmp(u.auid, XDM_DIRECTORY_AUID) == 0 ||
                        (sel >= 12 && strcmp(u.node_sel + sel - 12, "namespace::*") == 0);
            xcap_uri_release(&u);
        }
        xcap_err_release(&e);
        c->err.allow = strdup(read_only ? "GET, HEAD" : "GET, HEAD, PUT, DELETE");
        return XCAP_METHOD_NOT_ALLOWED;
    }
    if (s->cfg.max_uri && strlen(http_request_target(c->http)) > s->cfg.max_uri)
        return xcap_fail(&c->err, XCAP_URI_TOO_LONG, "the URI is longer than %zu bytes",
                         s->cfg.max_uri);
    enum xcap_status st = xcap_uri_parse(s->cfg.root_path, http_request_path(c->http),
                                         http_request_query(c->http), &c->uri, &c->err);
    if (st != XCAP_OK)
        return st;
    /* The "xcap-root@domain" convention: clients that know only a user name send it as XUI;
     * it names the same home directory as the full SIP URI (sip:NAME@DOMAIN), so both forms
     * reach the same documents. */
    if (c->uri.xui && !strchr(c->uri.xui, ':')) {
        char *full;
        int n = strchr(c->uri.xui, '@')
                    ? asprintf(&full, "sip:%s", c->uri.xui)
                    : asprintf(&full, "sip:%s@%s", c->uri.xui, s->cfg.default_domain);
        if (n < 0)
            return xcap_fail(&c->err, XCAP_INTERNAL, "out of memory");
        free(c->uri.xui);
        c->uri.xui = full;
    }
    /* One spelling per user (RFC 3261 §19.1.4): "sip:alice@EXAMPLE.com" and
     * "SIP:alice@example.com" reach the documents, quota and directory of sip:alice@example.com. */
    if (c->uri.xui) {
        char *canon = xcap_uri_xui_canonical(c->uri.xui);
        if (!canon)
            return xcap_fail(&c->err, XCAP_INTERNAL, "out of memory");
        free(c->uri.xui);
        c->uri.xui = canon;
    }
    return XCAP_OK;
}

static enum xcap_status server_resolve(struct xdms_server *s, struct xdms_call *c)
{
    if (strcmp(c->uri.auid, XCAP_CAPS_AUID) == 0) {
        c->kind = RES_CAPS; /* generated below; c->au stays NULL */
        return XCAP_OK;
    }
    if (strcmp(c->uri.auid, XDM_DIRECTORY_AUID) == 0) {
        c->kind = RES_DIRECTORY;
        return XCAP_OK;
    }
    c->au = appusage_find(s->cfg.role, c->uri.auid);
    if (!c->au)
        return xcap_fail(&c->err, XCAP_NOT_FOUND, "application usage %s is not served here",
                         c->uri.auid);
    return XCAP_OK;
}

/* Takes the first URI of X-3GPP-Asserted-Identity: "sip:alice@example.com"[, "tel:+1..."]
 * (TS 24.109 §7), unquoted and percent-decoded like an XUI, in its canonical spelling. */
char *server_asserted_identity(const char *h)
{
    if (!h)
        return NULL;
    while (*h == ' ' || *h == '\t')
        h++;
    const char *start = h, *end;
    if (*h == '"') {
        start = h + 1;
        end = strchr(start, '"');
        if (!end)
            return NULL;
    } else if (*h == '<') {
        start = h + 1;
        end = strchr(start, '>');
        if (!end)
            return NULL;
    } else {
        end = start + strcspn(start, ", \t");
    }
    if (end == start)
        return NULL;
    char *decoded = xcap_uri_decode(start, (size_t)(end - start));
    char *canon = decoded ? xcap_uri_xui_canonical(decoded) : NULL;
    free(decoded);
    return canon;
}

/* Whether the sip:/sips: identity's host is one of domains (comma-separated, lower-case). An
 * identity without a host (tel:) belongs to no domain. The identity is canonical: its host is
 * already lower-case (xcap_uri_xui_canonical). */
bool server_identity_in_domains(const char *identity, const char *domains)
{
    if (strncmp(identity, "sip:", 4) != 0 && strncmp(identity, "sips:", 5) != 0)
        return false;
    const char *at = strchr(identity, '@');
    if (!at)
        return false;
    const char *host = at + 1;
    size_t hlen = strcspn(host, ":;?>");
    for (const char *d = domains; *d;) {
        size_t dlen = strcspn(d, ",");
        if (dlen == hlen && strncasecmp(d, host, hlen) == 0)
            return true;
        d += dlen;
        if (*d == ',')
            d++;
    }
    return false;
}

/* Phase: authorize the user (RFC 4825 §5.7, §14; OMA Presence SIMPLE XDM 2.0 §5). Decided before
 * the document is looked at, so another user's missing document is 403 too (RFC 4825 §14). */
static enum xcap_status server_authorize_user(struct xdms_server *s, struct xdms_call *c)
{
    bool write = c->method == ENGINE_PUT || c->method == ENGINE_DELETE;
    if (c->peer == PEER_SERVER)
        return write ? xcap_fail(&c->err, XCAP_FORBIDDEN, "trusted servers have read access only")
                     : XCAP_OK;
    c->identity =
        server_asserted_identity(http_request_header(c->http, "X-3GPP-Asserted-Identity"));
    if (!c->identity)
        c->identity =
            server_asserted_identity(http_request_header(c->http, "X-XCAP-Asserted-Identity"));
    if (!c->identity) {
        /* xcap-caps (RFC 4825 §12) describes the server, not a user: the proxy may read it
         * without acting for one, as its health checks of the instances of an upstream list do. */
        if (!write && c->uri.tree == XCAP_TREE_GLOBAL && strcmp(c->uri.auid, XCAP_CAPS_AUID) == 0)
            return XCAP_OK;
        return xcap_fail(&c->err, XCAP_FORBIDDEN, "no asserted identity");
    }
    /* A peer trusted for some domains only (a partner's XDMS trusting another operator's proxy
     * for the partner's own users) asserts no identity outside them (TS 24.109 §5.2: the
     * asserting node is trusted within its domain only). */
    if (c->peer_domains && !server_identity_in_domains(c->identity, c->peer_domains))
        return xcap_fail(&c->err, XCAP_FORBIDDEN,
                         "this peer may assert identities of %s only, not %s", c->peer_domains,
                         c->identity);
    if (c->uri.tree == XCAP_TREE_GLOBAL) {
        if (write)
            return xcap_fail(&c->err, XCAP_FORBIDDEN, "global documents are read-only");
        /* RFC 4826 §4.4.8: server-maintained documents such as the rls-services
         * global index are for trusted servers only. */
        struct doc_key k = {c->uri.auid, "global", "", c->uri.path};
        if (c->au && usage_server_owned(c->au, &k))
            return xcap_fail(&c->err, XCAP_FORBIDDEN, "only trusted servers may read this");
        return XCAP_OK;
    }
    if (!xcap_uri_xui_equal(c->uri.xui, c->identity))
        return xcap_fail(&c->err, XCAP_FORBIDDEN, "%s may not access the documents of %s",
                         c->identity, c->uri.xui);
    return XCAP_OK;
}

/* xcap-caps (RFC 4825 §12) is an application usage like any other: its one document is read
 * whole or by node selector, unprefixed names in its default namespace. */
static enum xcap_status server_caps(struct xdms_server *s, struct xdms_call *c,
                                    struct engine_reply *rep)
{
    if (c->uri.tree != XCAP_TREE_GLOBAL || c->uri.is_dir || strcmp(c->uri.path, "index") != 0)
        return xcap_fail(&c->err, XCAP_NOT_FOUND, "xcap-caps has only global/index");
    if (c->method == ENGINE_PUT || c->method == ENGINE_DELETE) {
        xcap_fail(&c->err, XCAP_METHOD_NOT_ALLOWED, "xcap-caps is generated by the server");
        c->err.allow = strdup("GET, HEAD");
        return XCAP_METHOD_NOT_ALLOWED;
    }
    snprintf(rep->etag, sizeof rep->etag, "%s", s->caps_etag);
    const char *inm = http_request_header(c->http, "If-None-Match");
    if (inm && etag_list_matches(inm, s->caps_etag, ETAG_WEAK))
        return XCAP_NOT_MODIFIED;
    if (c->uri.node_sel) {
        struct engine_request req = {
            .method = c->method, .uri = &c->uri, .au = appusage_generated(XCAP_CAPS_AUID)};
        return engine_node_select(&req, s->caps.data, s->caps.len, rep, &c->err);
    }
    rep->content_type = XCAP_CAPS_MIME;
    if (buf_append(&rep->body, s->caps.data, s->caps.len) < 0)
        return xcap_fail(&c->err, XCAP_INTERNAL, "out of memory");
    return XCAP_OK;
}

/* This XDMS's part of the user's directory.xml (OMA XDM Core Appendix B): the proxy merges the
 * folders of every XDMS. Read-only; node selectors work as on any document. */
static enum xcap_status server_directory(struct xdms_server *s, struct xdms_call *c,
                                         struct engine_reply *rep)
{
    if (c->uri.tree != XCAP_TREE_USERS || c->uri.is_dir ||
        strcmp(c->uri.path, XDM_DIRECTORY_DOC) != 0)
        return xcap_fail(&c->err, XCAP_NOT_FOUND, "the directory is users/<xui>/directory.xml");
    if (c->method == ENGINE_PUT || c->method == ENGINE_DELETE) {
        xcap_fail(&c->err, XCAP_METHOD_NOT_ALLOWED, "the directory is generated by the server");
        c->err.allow = strdup("GET, HEAD");
        return XCAP_METHOD_NOT_ALLOWED;
    }
    struct buf doc;
    buf_init(&doc, SIZE_MAX);
    enum xcap_status st = engine_directory(s->engine, c->uri.xui, &doc, rep->etag, &c->err);
    if (st != XCAP_OK) {
        buf_release(&doc);
        return st;
    }
    const char *inm = http_request_header(c->http, "If-None-Match");
    const char *im = http_request_header(c->http, "If-Match");
    if (im && !etag_list_matches(im, rep->etag, ETAG_STRONG))
        st = xcap_fail(&c->err, XCAP_PRECONDITION_FAILED, "If-Match does not match");
    else if (inm && etag_list_matches(inm, rep->etag, ETAG_WEAK))
        st = XCAP_NOT_MODIFIED;
    else if (c->uri.node_sel) {
        struct engine_request req = {
            .method = c->method, .uri = &c->uri, .au = appusage_generated(XDM_DIRECTORY_AUID)};
        st = engine_node_select(&req, doc.data, doc.len, rep, &c->err);
    } else {
        rep->content_type = XDM_DIRECTORY_MIME;
        if (buf_append(&rep->body, doc.data, doc.len) < 0)
            st = xcap_fail(&c->err, XCAP_INTERNAL, "out of memory");
    }
    buf_release(&doc);
    return st;
}

static enum xcap_status server_execute(struct xdms_server *s, struct xdms_call *c,
                                       struct engine_reply *rep)
{
    if (c->kind == RES_CAPS)
        return server_caps(s, c, rep);
    if (c->kind == RES_DIRECTORY)
        return server_directory(s, c, rep);
    size_t len;
    const char *body = http_request_body(c->http, &len);
    struct engine_request req = {
        .method = c->method,
        .uri = &c->uri,
        .au = c->au,
        .content_type = http_request_header(c->http, "Content-Type"),
        .if_match = http_request_header(c->http, "If-Match"),
        .if_none_match = http_request_header(c->http, "If-None-Match"),
        .body = body,
        .body_len = len,
        .identity = c->identity,
        .start_ms = c->start_ms,
        .request_id = c->request_id,
    };
    return engine_execute(s->engine, &req, rep, &c->err);
}

/* Phase: respond — the one place that maps a status to HTTP (the error model of
 * docs/architecture.md). */
static void server_respond(const struct xdms_server *s, struct xcap_err *err, enum xcap_status st,
                           struct engine_reply *rep, struct http_response *resp)
{
    resp->status = status_http(st);
    /* RFC 9110 §15.6.4: the store could not answer now (a database that is down or failing
     * over); the client is told when to try again rather than to give up. */
    if (resp->status == 503)
        http_response_headerf(resp, "Retry-After", "%u",
                              s->cfg.retry_after ? s->cfg.retry_after : 1);
    if (rep->etag[0] && (st == XCAP_OK || st == XCAP_CREATED || st == XCAP_NOT_MODIFIED))
        http_response_headerf(resp, "ETag", "\"%s\"", rep->etag);
    if (st == XCAP_OK || st == XCAP_CREATED) {
        if (rep->content_type)
            http_response_header(resp, "Content-Type", rep->content_type);
        buf_reset(&resp->body);
        if (rep->body.len && buf_append(&resp->body, rep->body.data, rep->body.len) < 0)
            http_response_text(resp, 500, "out of memory");
        return;
    }
    if (st == XCAP_NOT_MODIFIED)
        return;
    if (err->allow)
        http_response_header(resp, "Allow", err->allow);
    if (status_condition(st)) {
        err->status = st;
        buf_reset(&resp->body);
        if (status_error_body(err, &resp->body) == 0) {
            http_response_header(resp, "Content-Type", XCAP_ERROR_MIME);
            return;
        }
    }
    http_response_text(resp, resp->status, err->phrase ? err->phrase : status_phrase(st));
}

/* The end of every request: respond, log, wake the notifier, release the call's contents. */
static void server_finish(struct xdms_server *s, struct xdms_call *c, enum xcap_status st,
                          struct engine_reply *rep, struct http_response *resp)
{
    server_respond(s, &c->err, st, rep, resp);
    if (status_http(st) >= 500 || st == XCAP_FORBIDDEN)
        log_info("%s %s from %s: %d %s", http_request_method(c->http), http_request_target(c->http),
                 http_request_peer_str(c->http), status_http(st),
                 c->err.phrase ? c->err.phrase : "");
    if (rep->changed && s->notifier)
        notifier_wake(s->notifier);
    buf_release(&rep->body);
    xcap_uri_release(&c->uri);
    free(c->identity);
    free(c->peer_domains);
    xcap_err_release(&c->err);
}

static double server_seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* A parked write on a write thread: execute (its store transaction waits in the group commit
 * with the other write threads'), then answer, which resumes the connection. */
static void server_run_parked(void *cls, struct server_park_item *item)
{
    struct xdms_server *s = cls;
    struct server_write *w = (struct server_write *)item;
    const struct http_request *http = w->c.http;
    access_begin(w->c.request_id);
    struct engine_reply rep = {0};
    buf_init(&rep.body, SIZE_MAX);
    enum xcap_status st = server_execute(s, &w->c, &rep);
    struct http_response resp = {.status = 500};
    buf_init(&resp.body, SIZE_MAX);
    server_finish(s, &w->c, st, &rep, &resp);
    if (s->cfg.answered)
        s->cfg.answered(http, &resp, server_seconds_since(&w->t0));
    free(w);
    http_request_answer(http, &resp); /* http may be gone once this returns */
    buf_release(&resp.body);
}

void server_stop_writes(struct xdms_server *s)
{
    server_park_stop(&s->park);
}

/* Whether c is a write of a stored document, element or attribute (RFC 4825 §8.2, §8.4). */
static bool server_is_write(const struct xdms_call *c)
{
    return c->kind == RES_USAGE && (c->method == ENGINE_PUT || c->method == ENGINE_DELETE);
}

void server_handle(void *cls, const struct http_request *http, struct http_response *resp)
{
    struct xdms_server *s = cls;
    struct server_write *w = calloc(1, sizeof *w);
    if (!w) {
        http_response_text(resp, 500, "out of memory");
        return;
    }
    clock_gettime(CLOCK_MONOTONIC, &w->t0);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct xdms_call *c = &w->c;
    c->http = http;
    c->start_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    snprintf(c->request_id, sizeof c->request_id, "%s", access_request_id());
    struct engine_reply rep = {0};
    buf_init(&rep.body, SIZE_MAX);
    enum xcap_status st;
    if ((st = server_authorize_peer(s, c)) == XCAP_OK && (st = server_parse(s, c)) == XCAP_OK &&
        (st = server_resolve(s, c)) == XCAP_OK && (st = server_authorize_user(s, c)) == XCAP_OK) {
        if (server_is_write(c)) {
            w->item.http = http;
            st = server_park_push(&s->park, &w->item, &c->err);
            if (st == XCAP_OK)
                return; /* answered by a write thread */
        }
        if (st != XCAP_STORAGE)
            st = server_execute(s, c, &rep);
    }
    server_finish(s, c, st, &rep, resp);
    free(w);
}
