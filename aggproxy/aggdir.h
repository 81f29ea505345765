/* The user's XML documents directory as clients see it (OMA XDM Core 1.1 Appendix B, 2.0 §5.3.2;
 * OMA XDM Core 2.0 §5.3.2; OMA XDM Core 1.1 Appendix B; RFC 9110 §8.8.3): users/<xui>/directory.xml
 * of the AUID org.openmobilealliance.xcap-directory, composed by the proxy from the listing every
 * distinct XDMS gives for its own AUIDs.
 *
 *   - The XDMSs are asked in parallel (forward_many), with the asserted identity of the user.
 *   - Folders come in route-table order (stable); each folder is taken only from the XDMS the
 *     AUID is routed to. An XDMS that does not answer 200 contributes
 *     <folder auid="…"><error-code>CODE</error-code></folder> for each of its AUIDs (CODE: its
 *     HTTP status, or 502/504 when it gave none). If any XDMS answers 403 the whole request is
 *     403 (another user's directory).
 *   - Entry URIs are shown under the XCAP root the client used (scheme, Host, root path): an
 *     absolute URI under the root path is re-rooted, a relative one (a document selector) is
 *     prefixed (OMA XDM Core 1.1 Appendix B).
 *   - The ETag is a hash of the (auid, uri, etag) set and the error codes (RFC 9110 §8.8.3);
 * If-Match and If-None-Match are evaluated on it, also for node-selector requests.
 *   - Node selectors (RFC 4825 §6.3) are evaluated by the proxy on the composed document, so a
 *     part carries the same ETag and URIs as the whole.
 *   - Read-only: other methods than GET and HEAD get 405 with Allow.
 *
 * Thread-safety: all functions are reentrant; aggdir_handle() uses the calling thread's curl
 * handles. */
#ifndef XDM_AGGPROXY_AGGDIR_H
#define XDM_AGGPROXY_AGGDIR_H

#include <stddef.h>

#include "buf.h"
#include "forward.h"
#include "httpd.h"
#include "status.h"
#include "xcap_names.h"

struct route_table;
struct xcap_uri;

/* Room for the quoted ETag and its NUL. */
#define AGGDIR_ETAG_MAX 48

/* One XDMS's answer, as the composition sees it. All borrowed. */
struct aggdir_part {
    const char *upstream; /* base URL, as in the route table */
    int status;           /* its HTTP status; 502 or 504 when it gave no answer */
    const char *body;     /* its directory.xml when status is 200 */
    size_t len;
};

/* Appends the composed <xcap-directory> for the routes of t from parts[0..n) (one per distinct
 * upstream; an upstream without a part counts as 502) to out, and writes its ETag. root_path is
 * the XCAP root path of the XDMS URIs ("" for "/"); client_root the root the client used
 * ("https://xcap.example.com/xcap-root", no trailing slash), or NULL to keep URIs as given.
 * Listings that do not parse as xcap-directory count as 502. Returns 0 or -1 (out of memory or
 * out full). */
int aggdir_compose(const struct route_table *t, const struct aggdir_part *parts, size_t n,
                   const char *client_root, struct buf *out, char etag[AGGDIR_ETAG_MAX]);

/* Appends uri as seen under client_root (see above) to out. Returns 0 or -1. */
int aggdir_rewrite_uri(const char *uri, const char *root_path, const char *client_root,
                       struct buf *out);

/* A request for the directory. All borrowed. */
struct aggdir_request {
    const char *method;
    const char *path;  /* raw path, e.g. /xcap-root/org.openmobilealliance.xcap-directory/... */
    const char *query; /* raw query or NULL (xmlns() bindings of a node selector) */
    const char *if_match;
    const char *if_none_match;
    const char *client_root;                 /* or NULL */
    const struct forward_header *id_headers; /* asserted identity towards the XDMSs */
    size_t n_id_headers;
};

/* Node selection (RFC 4825 §7.4-7.10) on a document the proxy composes (this directory, or
 * xcap-caps): evaluates u's node selector on doc, unprefixed names in default_ns (the usage's
 * default namespace), and on success fills resp's body and Content-Type with the selected node's
 * exact bytes, as the XDMSs answer a node GET (nodeget.h); the status is left to the caller.
 * Returns XCAP_OK, or XCAP_BAD_REQUEST / XCAP_NOT_FOUND / XCAP_INTERNAL with err filled. */
enum xcap_status aggdir_select(const struct xcap_uri *u, const char *default_ns,
                               const struct buf *doc, struct http_response *resp,
                               struct xcap_err *err);

/* Answers rq: XCAP_OK (200) with resp's ETag, Content-Type and body filled, XCAP_NOT_MODIFIED
 * (304) with its ETag; otherwise the failure in err (400 and 414 of the URI, 403, 404, 405 with
 * err->allow, 412, 500). resp's status is the caller's to set. */
enum xcap_status aggdir_handle(struct forward *fw, const struct route_table *t,
                               const struct aggdir_request *rq, struct http_response *resp,
                               struct xcap_err *err);

#endif
