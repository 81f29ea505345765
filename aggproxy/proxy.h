/* The Aggregation Proxy request pipeline (OMA XDM Core §5.1-§5.2;
 * TS 24.109 §5.2, §7; RFC 7616):
 *
 *   receive -> method (405) -> authenticate (Digest or GBA Digest: 400/401) -> authorise (GUSS:
 *   403) -> identify (intended identity: 400/403) -> decode (gzip request body: 400/413/415)
 *   -> route (404; the user's domain picks the local XDMSs or a partner's, partner.h: 403 for
 *   a domain served by neither, 503 when the partner's request limit is reached)
 *   -> dispatch: forward (502/503/504) | xcap-caps | xcap-directory
 *   -> respond (status and error rendering, gzip response, Authentication-Info, one log line)
 *
 * Each phase returns an enum xcap_status and, when it ends the request, fills the call's struct
 * xcap_err (phrase and the headers its status needs); proxy_respond() alone turns that into the
 * HTTP answer. An XDMS's own answer is relayed as it came.
 *
 * Authentication:
 *   - plain HTTP Digest (RFC 7616) against the users store, then (for names it does not know) the
 *     users of an LDAP directory (ldapusers.h); the realm follows the XUI's domain in the URI,
 *     else the default realm;
 *   - HTTP Basic (RFC 7617) over HTTPS only, for LDAP users, verified by an LDAP bind; Basic
 *     credentials over plain HTTP get the Digest challenges (401);
 *   - GBA Digest (TS 33.222 §5.3, TS 24.109 §5.2) when gaa_fqdns is not empty, the User-Agent
 *     carries `3gpp-gba` and the Host the request was sent to is one of gaa_fqdns: realm
 *     `3GPP-bootstrapping@<that host>`, username the B-TID, password made from Ks_(ext)_NAF of the
 *     bootstrapping source for NAF_Id = host || Ua id (which depends on the TLS cipher suite).
 * The authenticated subscriber has a list of public identities (the XUI and its further ones; or
 * the IMPUs of the bootstrapping record); X-3GPP-Intended-Identity picks one of them (another
 * one -> 403), else the first is used. It is asserted upstream in X-3GPP-Asserted-Identity and/or
 * X-XCAP-Asserted-Identity (configurable); every identity header of the client is dropped.
 *
 * The proxy authorises nothing else itself: an XDMS answers 403 for another user's documents and
 * that answer is relayed like any other.
 *
 * Thread-safety: proxy_handle() runs concurrently on the HTTP worker threads; the struct proxy and
 * everything it points to are read-only after proxy_new() (the digest context, the caps cache and
 * the stores lock themselves). */
#ifndef XDM_AGGPROXY_PROXY_H
#define XDM_AGGPROXY_PROXY_H

#include <stdbool.h>
#include <stddef.h>

#include "gba.h"
#include "httpd.h"

struct caps_cache;
struct digest;
struct digest_algs;
struct forward;
struct ldapusers;
struct partners;
struct route_table;
struct store;

/* Which asserted-identity headers go to the XDMSs (TS 24.109 §7; OMA XDM Core §5.1.2). */
enum proxy_assert {
    PROXY_ASSERT_3GPP = 0, /* X-3GPP-Asserted-Identity (default) */
    PROXY_ASSERT_XCAP,     /* X-XCAP-Asserted-Identity */
    PROXY_ASSERT_BOTH,
};

/* Zero values of the later fields give the defaults noted. */
struct proxy_config {
    const char *default_realm;    /* challenged for URIs that name no user (copied) */
    struct store *store;          /* users (borrowed) */
    struct digest *digest;        /* borrowed */
    struct route_table *routes;   /* borrowed */
    struct forward *forward;      /* borrowed */
    struct caps_cache *caps;      /* borrowed; NULL = compose xcap-caps on every request */
    struct partners *partners;    /* partner domains (borrowed); NULL = every domain is local */
    const struct gba_source *gba; /* bootstrapping source (copied struct); NULL = no GAA */
    const char *const *gaa_fqdns; /* NAF FQDNs served with GAA (copied, lower-cased) */
    size_t n_gaa_fqdns;
    enum gba_password_form gaa_password; /* default base64 */
    enum proxy_assert asserted;          /* default 3GPP */
    bool gzip;                           /* compress responses for clients that accept gzip */
    size_t gzip_min;                     /* smaller bodies go uncompressed; 0 = 256 */
    size_t max_body;                     /* bound on a decoded request body; 0 = 1 MiB */
    /* Plain Digest challenges, in this order (copied); NULL or empty = MD5 then SHA-256.
     * GBA Digest offers its own fixed list (MD5, SHA-256). */
    const struct digest_algs *algs;
    /* Users of an enterprise LDAP directory, asked for the (realm, username) the store does not
     * know (borrowed); NULL = none. ldap_basic: also HTTP Basic over HTTPS, verified by an LDAP
     * bind (RFC 7617; never over plain HTTP). */
    struct ldapusers *ldap;
    bool ldap_basic;
    /* Asynchronous forwarding (forward.h): with a loop, a request routed to an XDMS does not hold
     * its HTTP thread while the XDMS answers; the connection is suspended (http_request_defer)
     * and answered from the loop thread. NULL = forward on the HTTP thread (blocking). At most
     * max_in_flight (0 = 1024) such requests at once; beyond, 503 with Retry-After
     * (RFC 9110 §15.6.4, §10.2.3). */
    struct forward_loop *loop; /* borrowed */
    unsigned max_in_flight;
    /* Called once per answered request, with the response about to be sent and the seconds since
     * the handler started (metrics, access log); NULL = none. A request answered within
     * proxy_handle() is not reported here (the caller of proxy_handle sees its resp); one deferred
     * is, from the loop thread, with the request id of the handler's thread restored
     * (access_begin). */
    void (*answered)(const struct http_request *req, const struct http_response *resp,
                     double seconds);
};

/* Returns NULL on allocation failure or a bad GAA FQDN. The borrowed handles must outlive the
 * proxy. */
struct proxy *proxy_new(const struct proxy_config *cfg);
void proxy_free(struct proxy *p);
/* A configuration reload: the largest request body (also after gzip decoding) from the next
 * request on. Thread-safe. */
void proxy_set_max_body(struct proxy *p, size_t max_body);

/* Requests forwarded asynchronously and not answered yet. Thread-safe. */
unsigned proxy_in_flight(const struct proxy *p);

/* httpd_handler_fn; cls is the struct proxy *. A request routed to an XDMS with a loop configured
 * is deferred (http_request_deferred(req) is then true when this returns, and resp is unused). */
void proxy_handle(void *cls, const struct http_request *req, struct http_response *resp);

#endif
