/* The Aggregation Proxy request pipeline (SPEC AP-1..AP-8, AP-14):
 *
 *   receive -> authenticate (401/400) -> route (404) -> forward (502/504) | xcap-caps -> respond
 *
 * The proxy authorises nothing itself: an XDMS answers 403 for another user's documents and that
 * answer is relayed like any other.
 *
 * Thread-safety: proxy_handle() runs concurrently on the HTTP worker threads; the struct proxy and
 * everything it points to are read-only after proxy_new() (the digest context locks its own
 * nonce table). */
#ifndef XDM_AGGPROXY_PROXY_H
#define XDM_AGGPROXY_PROXY_H

#include "httpd.h"

struct digest;
struct forward;
struct route_table;
struct store;

struct proxy_config {
    const char *default_realm;  /* challenged for URIs that name no user (copied) */
    struct store *store;        /* users (borrowed) */
    struct digest *digest;      /* borrowed */
    struct route_table *routes; /* borrowed */
    struct forward *forward;    /* borrowed */
};

/* Returns NULL on allocation failure. The borrowed handles must outlive the proxy. */
struct proxy *proxy_new(const struct proxy_config *cfg);
void proxy_free(struct proxy *p);

/* httpd_handler_fn; cls is the struct proxy *. */
void proxy_handle(void *cls, const struct http_request *req, struct http_response *resp);

#endif
