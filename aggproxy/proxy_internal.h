/* What the files of the proxy's request pipeline share (proxy.c: the pipeline and most of its
 * phases; proxy_auth.c: the method, authenticate and authorise phases; proxy_call.c: helpers on
 * one request's state). Not for use outside aggproxy/proxy*.c. */
#ifndef XDM_PROXY_INTERNAL_H
#define XDM_PROXY_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "buf.h"
#include "digest.h"
#include "forward.h"
#include "gba.h"
#include "partner.h"
#include "httpd.h"
#include "proxy.h"
#include "route.h"
#include "users.h"
#include "xcap_uri.h"

#define PROXY_HEADERS_MAX 64
#define PROXY_HOST_MAX 300
#define PROXY_ROOT_MAX (PROXY_HOST_MAX + 300)
#define PROXY_IDS_MAX (USERS_IDS_MAX + GBA_IMPUS_MAX + 1)

_Static_assert(GBA_AUID_MAX >= ROUTE_AUID_MAX,
               "every routable AUID can be allowed to a subscriber");

struct proxy {
    char *default_realm;
    struct store *store;
    struct digest *digest;
    struct route_table *routes;
    struct forward *forward;
    struct caps_cache *caps;
    struct partners *partners; /* NULL: every domain is local */
    struct gba_source gba;
    bool has_gba;
    char **gaa_fqdns;
    size_t n_gaa_fqdns;
    enum gba_password_form gaa_password;
    enum proxy_assert asserted;
    bool gzip;
    size_t gzip_min;
    _Atomic size_t max_body; /* a reload may change it (proxy_set_max_body) */
    struct digest_algs algs; /* plain Digest, in challenge order */
    struct ldapusers *ldap;  /* NULL = no LDAP users */
    bool ldap_basic;
    struct forward_loop *loop; /* NULL: forward on the HTTP thread */
    unsigned max_in_flight;
    atomic_uint in_flight; /* deferred requests not answered yet */
    void (*answered)(const struct http_request *req, const struct http_response *resp,
                     double seconds);
};

/* Everything one request owns, released in one place (proxy_release). */
struct proxy_call {
    struct proxy *p;
    const struct http_request *req;
    const char *method;
    const char *target;
    bool head;
    struct route_match route;
    int tls_cipher;
    char host[PROXY_HOST_MAX + 1]; /* the Host header when it is a plain host[:port], else "" */
    char client_root[PROXY_ROOT_MAX];
    char xui_domain[USERS_NAME_MAX + 1];
    const char *realm;      /* challenged realm */
    const char *need_realm; /* realm the credentials must carry; NULL = any known realm */
    /* GBA (TS 24.109 §5.2, §7.1; TS 33.222 §5.3; TS 33.220 Annex B, H.3) */
    bool gaa;
    char gaa_realm[GBA_REALM_MAX];
    unsigned char naf_id[GBA_NAF_ID_MAX];
    size_t naf_id_len;
    /* authentication and identity */
    struct digest_auth auth;
    bool authenticated;       /* by Digest (auth is filled) */
    bool basic;               /* by HTTP Basic over HTTPS (auth is not filled) */
    bool ldap_down;           /* the LDAP directory was needed and could not be asked: 503 */
    char *ids[PROXY_IDS_MAX]; /* the subscriber's public identities, ids[0] the default */
    size_t n_ids;
    /* GBA: the AUIDs the subscriber may use (GUSS, TS 24.109 §7.3); none = every AUID */
    char *auids[GBA_AUIDS_MAX];
    size_t n_auids;
    const char *identity; /* the one asserted upstream (one of ids) */
    /* the asserted-identity headers towards the XDMSs (made by the identify phase) */
    struct buf id_value;
    struct forward_header idh[2];
    size_t n_idh;
    /* the XDMSs that serve it: NULL = the local ones, else a partner domain's (route phase) */
    struct partner *partner;
    bool partner_begun;         /* partner_begin() said yes: partner_end() is due */
    struct timespec partner_t0; /* when it was routed to the partner */
    /* the request body as the XDMS gets it */
    struct buf decoded;
    const char *body;
    size_t body_len;
    /* the answer: a failure's details, or an XDMS's answer relayed as it is */
    struct xcap_err err;
    bool relayed;
    bool quiet;     /* an expected failure (a first request without credentials, a stale
                       nonce): logged at debug level only */
    char note[256]; /* what the log line says beyond the client's phrase */
};

/* ---- proxy_call.c ---- */

/* Sets what the log line of the request says beyond the client's phrase. */
void proxy_note(struct proxy_call *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Frees the identities and AUIDs of c. */
void proxy_ids_clear(struct proxy_call *c);
/* How many times the request carries the header name. */
unsigned proxy_header_count(const struct http_request *req, const char *name);

/* ---- proxy_auth.c: phases ---- */

/* Phase: method. 405 with the resource's Allow for a non-XCAP method under the XCAP root. */
enum xcap_status proxy_method(struct proxy_call *c);
/* Phase: authenticate. XCAP_OK when the request may go on. */
enum xcap_status proxy_authenticate(struct proxy *p, struct proxy_call *c);
/* Phase: authorise. 403 for an AUID a GBA subscriber's GUSS does not allow. */
enum xcap_status proxy_authorise(struct proxy_call *c);

#endif
