/* Routing of XCAP requests by AUID (OMA XDM Core §5.2): which XDMS serves a request, or whether the
 * proxy answers it itself (xcap-caps, OMA XDM Core 2.0 §5.3.1; the OMA xcap-directory, OMA XDM
 * Core 2.0 §5.3.2).
 *
 * The AUID is the first path segment after the XCAP root path, taken RAW (no percent-decoding)
 * and compared byte for byte with the table, so that the path can be forwarded unchanged.
 *
 * A route table is built once at start (route_table_new, route_table_set*) and then only read:
 * lookups are thread-safe without locking. The upstream of an AUID is a list of instances; their
 * health and load (route_instance_*, route_pick) are the only state that changes afterwards. */
#ifndef XDM_AGGPROXY_ROUTE_H
#define XDM_AGGPROXY_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "xcap_names.h"

struct route_table;

/* Default upstreams: the UNIX-domain sockets of the three XDMSs in their default data
 * directories (relative to the working directory), the one way besides mutual TLS in which an
 * XDMS lets the proxy act for users. */
#define ROUTE_DEFAULT_SHARED_LIST "unix:var/shared-list/xdms.sock"
#define ROUTE_DEFAULT_PRESENCE "unix:var/presence/xdms.sock"
#define ROUTE_DEFAULT_RLS "unix:var/rls/xdms.sock"
#define ROUTE_DEFAULT_UT "unix:var/ut/xdms.sock"
/* The AUID of the Ut settings (3GPP TS 24.623), served by the ut XDMS. */
#define ROUTE_UT_AUID "simservs.ngn.etsi.org"
/* An upstream "unix:PATH" is reached over that UNIX-domain socket (see forward.h). */
#define ROUTE_UNIX_PREFIX "unix:"
#define ROUTE_UNIX_PREFIX_LEN 5
/* Longest PATH of a unix: upstream (struct sockaddr_un's sun_path less its NUL). */
#define ROUTE_UNIX_PATH_MAX 107
#define ROUTE_DEFAULT_ROOT "/xcap-root"

/* Longest AUID and upstream URL accepted. */
#define ROUTE_AUID_MAX 128
#define ROUTE_URL_MAX 512
/* Most instances in one upstream list, and distinct instances in one table. */
#define ROUTE_INSTANCES_MAX 16
#define ROUTE_TABLE_INSTANCES_MAX 64
/* Longest upstream list as written (URLs and the whitespace between them). */
#define ROUTE_LIST_MAX (ROUTE_INSTANCES_MAX * (ROUTE_URL_MAX + 1))

/* An upstream: the ordered list of XDMS instances that serve the same documents (several
 * processes of one role over one shared store). Owned by the table, which never changes it after
 * start. Each instance has a table-wide id, so that a URL named in several lists has one health
 * state (route_instance_*). */
struct route_upstream {
    const char *name;                     /* the list as normalised: the URLs joined by one space
                                             (a single URL is just that URL) */
    size_t n;                             /* 1..ROUTE_INSTANCES_MAX */
    const char *url[ROUTE_INSTANCES_MAX]; /* normalised instance URLs, in the order given */
    size_t id[ROUTE_INSTANCES_MAX];       /* their instance ids (0..route_table_instances()) */
};

/* Makes a table for the XCAP root path root_path (must start with '/'; trailing slashes are
 * dropped, "/" means the root is the server root), with the default AUIDs pointing at the three
 * given upstream lists (NULL = the defaults above; see route_table_set for the list syntax). The
 * ut XDMS's AUID is added by the caller (route_table_set(t, ROUTE_UT_AUID, list)).
 * Returns NULL on a bad root or list (with the reason in err) or on allocation failure. */
struct route_table *route_table_new(const char *root_path, const char *shared_list_url,
                                    const char *presence_url, const char *rls_url, char *err,
                                    size_t errlen);
void route_table_free(struct route_table *t);

/* Checks an upstream list without a table: 0, or -1 with the reason in err. */
int route_list_check(const char *list, char *err, size_t errlen);

/* Adds or replaces the upstream of one AUID. list is one or more URLs separated by whitespace
 * (at most ROUTE_INSTANCES_MAX, no URL twice, at most ROUTE_LIST_MAX bytes); each URL must be
 * http:// or https:// with a host and no path, query or fragment other than trailing slashes
 * (which are dropped), or unix:PATH (a UNIX-domain socket, PATH at most ROUTE_UNIX_PATH_MAX bytes
 * without whitespace, kept as given). The AUID must be a non-empty path segment (no '/', '?', '#',
 * control characters) and not one of the AUIDs the proxy serves itself. At most 256 routes and
 * ROUTE_TABLE_INSTANCES_MAX distinct instance URLs. Returns 0, or -1 with the reason in err. */
int route_table_set(struct route_table *t, const char *auid, const char *list, char *err,
                    size_t errlen);
/* Same, from a config line "AUID URL [URL...]" (whitespace-separated), as in `route = AUID URL`. */
int route_table_set_spec(struct route_table *t, const char *spec, char *err, size_t errlen);

/* The root path as normalised ("" when the root is "/"). Borrowed. */
const char *route_table_root(const struct route_table *t);

/* Distinct upstream lists (by name) in first-use order; writes up to max borrowed names into out
 * and returns their total number. */
size_t route_table_upstreams(const struct route_table *t, const char **out, size_t max);
/* The same lists as structures. */
size_t route_table_upstream_lists(const struct route_table *t, const struct route_upstream **out,
                                  size_t max);

/* The routes in table order (defaults first, then configured ones in the order given): writes up
 * to max borrowed (auid, upstream list name) pairs and returns their total number. */
size_t route_table_routes(const struct route_table *t, const char **auids, const char **urls,
                          size_t max);

/* ---- Instance state ----------------------------------------------------------------------------
 * Each distinct instance URL has a health flag (up until marked down), a count of requests in
 * progress and of requests sent, and the reason it was last marked down. They change while the
 * table is read by every worker thread: all of these are thread-safe (atomics; the reason under a
 * lock). */

/* Number of distinct instances; ids run from 0 to this minus one. */
size_t route_table_instances(const struct route_table *t);
/* The URL of instance id. Borrowed. */
const char *route_instance_url(const struct route_table *t, size_t id);
/* Marks an instance up or down; why (may be NULL) says why it went down. Returns the previous
 * state (true = it was up). */
bool route_instance_mark(const struct route_table *t, size_t id, bool up, const char *why);
/* Whether the instance is up; when it is down and why is not NULL, copies the reason. */
bool route_instance_up(const struct route_table *t, size_t id, char *why, size_t whylen);
/* A request to the instance begins (counted as sent) or ends (no longer in progress). */
void route_instance_begin(const struct route_table *t, size_t id);
void route_instance_end(const struct route_table *t, size_t id);
/* Requests begun on the instance since start. */
uint64_t route_instance_requests(const struct route_table *t, size_t id);

/* Which instance of the list a request should try next, as its index in up->url: among the
 * instances not in tried (bit i = index i), an up one with the fewest requests in progress, ties
 * broken round robin (so sequential requests alternate); when every untried one is down, the one
 * that went down last (a recovered instance then serves before the health check sees it).
 * Returns up->n when every instance was tried. */
size_t route_pick(const struct route_table *t, const struct route_upstream *up, uint32_t tried);

enum route_kind {
    ROUTE_NOT_FOUND, /* outside the root, no AUID, or an AUID nobody serves: 404 */
    ROUTE_UPSTREAM,  /* forward to upstream */
    ROUTE_CAPS,      /* the proxy's own xcap-caps AUID */
    ROUTE_DIRECTORY, /* the aggregated org.openmobilealliance.xcap-directory */
};

/* Result of matching a raw path. Spans point into the path given to route_match (not
 * NUL-terminated); a missing part has length 0. */
struct route_match {
    enum route_kind kind;
    bool in_root;         /* the path is the XCAP root itself or below it, served or not */
    const char *upstream; /* ROUTE_UPSTREAM: the list's name, borrowed from the table */
    const struct route_upstream *up; /* ROUTE_UPSTREAM: the list, borrowed from the table */
    const char *auid;
    size_t auid_len;
    const char *tree; /* "users", "global" or anything else found there */
    size_t tree_len;
    const char *xui; /* raw (maybe percent-encoded) XUI segment when tree is "users" */
    size_t xui_len;
    const char *rest; /* the rest of the path after the tree (global) or XUI (users) segment,
                         starting with '/' */
    size_t rest_len;
};

/* Matches a raw request path (without the query). Always fills *m. */
void route_match(const struct route_table *t, const char *path, struct route_match *m);

#endif
