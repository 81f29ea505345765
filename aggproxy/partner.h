/* Partner domains: an operator's proxy that serves users of another provider's domain from that
 * provider's XDMSs (an operator access point in front of a third party's service; OMA XDM Core
 * §5.1, §5.2: the Aggregation Proxy routes each request to the XDMS that serves it; TS 24.109
 * §5.2, §7: the proxy authenticates and asserts the identity towards the XDMS).
 *
 * Which XDMSs serve a request depends on the user's domain as well as on the AUID:
 *   - a domain of a configured partner (`partner = DOMAIN URL...`) goes to that partner's XDMS
 *     instances, over mutual TLS with the partner's own CA and the client certificate the proxy
 *     presents to that partner, with the partner's own timeouts and request limit;
 *   - an operator's own domain (`local_domain`, repeatable; none configured = every domain that
 *     is not a partner's) goes to the local XDMSs of the route table;
 *   - any other domain is refused (the proxy answers 403: docs/partners.md says why).
 *
 * A partner has its own route table (every default AUID routed to its instance list, the same
 * XCAP root path as the proxy's), its own forwarder and its own health check of several
 * instances, so every routing, retry and health rule of route.h and upstream.h holds for it.
 *
 * The set is built once at start and then only read; the per-partner counters (requests in
 * flight, metrics) are atomics. Every function is thread-safe after the set is built. */
#ifndef XDM_AGGPROXY_PARTNER_H
#define XDM_AGGPROXY_PARTNER_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "forward.h"
#include "route.h"

/* Most partners, most local domains, longest domain name (RFC 1035 §2.3.4). */
#define PARTNERS_MAX 16
#define PARTNER_LOCAL_DOMAINS_MAX 64
#define PARTNER_DOMAIN_MAX 253
/* Default requests in flight to one partner at once, and its bounds. */
#define PARTNER_MAX_REQUESTS_DEFAULT 64
#define PARTNER_MAX_REQUESTS_MAX 100000
/* Bounds of timeout_ms and connect_timeout_ms. */
#define PARTNER_TIMEOUT_MAX_MS 3600000

/* One `partner = ...` line, parsed:
 *   DOMAIN URL [URL...] ca=FILE cert=FILE key=FILE [timeout_ms=N] [connect_timeout_ms=N]
 *   [max_requests=N]
 * URLs are https:// (mutual TLS), at most ROUTE_INSTANCES_MAX; options in any order, each once.
 * Strings owned (partner_spec_release). Timeouts 0 = the proxy's upstream ones. */
struct partner_spec {
    char domain[PARTNER_DOMAIN_MAX + 1]; /* lower-cased */
    char *urls;                          /* the URLs joined by one space */
    char *ca, *cert, *key;
    unsigned timeout_ms, connect_timeout_ms, max_requests;
};

/* Parses line into *s (zeroed first). Returns 0, or -1 with the reason in err (nothing to
 * release). Files are not opened here. */
int partner_spec_parse(const char *line, struct partner_spec *s, char *err, size_t errlen);
void partner_spec_release(struct partner_spec *s);

/* Checks a domain name: 1..PARTNER_DOMAIN_MAX letters, digits, '-' and '.', no empty label.
 * Writes it lower-cased into out (PARTNER_DOMAIN_MAX + 1 bytes). Returns 0 or -1. */
int partner_domain_norm(const char *in, size_t len, char *out);

struct partner;
struct partners;

struct partners *partners_new(void);
void partners_free(struct partners *ps);

/* Adds an operator's own domain. -1 (err) for a bad name, a partner's domain, or too many. */
int partners_add_local(struct partners *ps, const char *domain, char *err, size_t errlen);

/* Checks a parsed line against the set and the lines before it (specs[0..n)): -1 (err) for a
 * domain that is also a local_domain or was given before. */
int partners_check_spec(const struct partners *ps, const struct partner_spec *s,
                        const struct partner_spec *specs, size_t n, char *err, size_t errlen);

/* Adds a partner from a parsed line: a route table for root_path with every default AUID routed
 * to its URLs, and a forwarder (copied options of base, replaced by the spec's CA, timeouts and
 * client certificate, which is loaded and checked now). -1 (err) for a domain given twice or
 * also local, too many partners, unreadable files or a key that is not the certificate's. */
int partners_add(struct partners *ps, const char *root_path, const struct partner_spec *s,
                 const struct forward_options *base, char *err, size_t errlen);

/* One `partner_route = DOMAIN AUID URL [URL...]` line: the partner's instances of one AUID (a
 * partner that runs one XDMS per role), as `route` does for the local table. Checks the syntax
 * and that every URL is https://; writes the domain (lower-cased) into domain and returns the
 * offset of "AUID URL..." in line, or -1 with the reason in err. */
long partner_route_parse(const char *line, char domain[PARTNER_DOMAIN_MAX + 1], char *err,
                         size_t errlen);
/* Applies such a line to the partner of its domain (which must have been added). Returns 0, or -1
 * with the reason in err. */
int partners_route(struct partners *ps, const char *line, char *err, size_t errlen);

size_t partners_count(const struct partners *ps);
struct partner *partners_get(const struct partners *ps, size_t i);

enum partners_site {
    PARTNERS_LOCAL,   /* the local XDMSs */
    PARTNERS_REMOTE,  /* *out: the partner */
    PARTNERS_UNKNOWN, /* neither an own domain nor a partner's (only with local_domain set) */
};

/* Where users of domain (any case; "" = an identity without a domain, e.g. tel:, which is the
 * operator's) are served. ps may be NULL (everything local). */
enum partners_site partners_lookup(const struct partners *ps, const char *domain,
                                   struct partner **out);

const char *partner_domain(const struct partner *p);
struct route_table *partner_routes(const struct partner *p);
struct forward *partner_forward(const struct partner *p);

/* A request to the partner begins: false (counted as rejected) when max_requests are already in
 * flight; then it must not be sent (503). After true, partner_end() must follow, with the HTTP
 * status the client got (5xx counts as an error of the partner) and the seconds it took. */
bool partner_begin(struct partner *p);
void partner_end(struct partner *p, int status, double seconds);

/* Starts the health checks of every partner with a list of several instances (upstream.h, the
 * partner's own forwarder and timeouts). Returns 0, or -1 (logged). */
int partners_checks_start(struct partners *ps, unsigned interval_ms);
void partners_checks_stop(struct partners *ps);

/* Appends the partner metrics in the Prometheus text format (cls: the struct partners; NULL or
 * no partner: nothing): xdm_partner_requests_total{partner}, xdm_partner_errors_total{partner},
 * xdm_partner_rejected_total{partner}, xdm_partner_in_flight{partner},
 * xdm_partner_request_duration_seconds{partner} (histogram), xdm_partner_instance_up{partner,
 * upstream}. Returns 0 or -1. */
int partners_metrics(void *cls, struct buf *out);

#endif
