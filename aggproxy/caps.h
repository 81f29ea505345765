/* The xcap-caps document the proxy serves for its XCAP root (RFC 4825 §12, OMA XDM Core 2.0
 * §5.3.1): the union of the documents of the XDMSs behind it plus the AUIDs the proxy serves itself
 * (xcap-caps, the OMA xcap-directory), in the element order of RFC 4825 §12.2: auids, extensions
 * (only when there are any), namespaces.
 *
 * The union is cached (struct caps_cache): it is composed again after ttl seconds, or after retry
 * seconds when the last composition missed an XDMS, never on every request. */
#ifndef XDM_AGGPROXY_CAPS_H
#define XDM_AGGPROXY_CAPS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "forward.h"
#include "xcap_names.h"

struct route_table;

/* Room for a quoted ETag from caps_etag() and its NUL. */
#define CAPS_ETAG_MAX 80

/* Merges n xcap-caps documents into one (appended to out):
 *   <xcap-caps xmlns="urn:ietf:params:xml:ns:xcap-caps"><auids>…</auids>[<extensions>…
 *   </extensions>]<namespaces>…</namespaces></xcap-caps>
 * "xcap-caps" and its namespace come first; each other <auid>, <extension> and <namespace> value
 * appears once, in first-seen order. A document that is not a well-formed xcap-caps document is
 * skipped. *merged (optional) receives how many were used. Returns 0, or -1 when out is full or
 * memory runs out. */
int caps_merge(const struct buf *docs, size_t n, struct buf *out, size_t *merged);

/* GETs <upstream><root>/xcap-caps/global/index from each distinct upstream of t at once (with
 * the n_headers asserted-identity headers given), and merges the 200 answers with caps_merge(),
 * followed by the proxy's own xcap-directory AUID and namespace. Upstreams that fail are skipped
 * (and logged at warn level); *failed (optional) receives how many. Returns 0 or -1. */
int caps_compose(struct forward *fw, const struct route_table *t,
                 const struct forward_header *headers, size_t n_headers, struct buf *out,
                 size_t *failed);

/* A strong ETag derived from the content (quoted), written into out. Returns 0 or -1. */
int caps_etag(const char *body, size_t len, char out[CAPS_ETAG_MAX]);

struct caps_cache;

/* A cache over caps_compose(). fw and t are borrowed. ttl_s 0 = 60, retry_s 0 = 5. Returns NULL
 * on allocation failure. Thread-safe: caps_cache_get() may run on any number of threads; one of
 * them refreshes while the others keep serving the previous document. */
struct caps_cache *caps_cache_new(struct forward *fw, const struct route_table *t, unsigned ttl_s,
                                  unsigned retry_s);
void caps_cache_free(struct caps_cache *c);

/* Most further XDMS sets of one cache. */
#define CAPS_SOURCES_MAX 16
/* Adds a further set of XDMSs whose xcap-caps join the union: a partner domain's (partner.h),
 * with its own forwarder and route table (borrowed). They are asked after the local ones and
 * without an identity (xcap-caps describes the server, RFC 4825 §12); one that does not answer is
 * skipped like a local XDMS (the union is composed again after retry). Call before the cache
 * serves. Returns 0, or -1 when CAPS_SOURCES_MAX are there. */
int caps_cache_add_source(struct caps_cache *c, struct forward *fw, const struct route_table *t);

/* Appends the current document to doc and writes its ETag, composing it first (with the given
 * identity headers) when there is none yet or it is due (now: seconds of a monotonic clock).
 * Returns 0 or -1. */
int caps_cache_get(struct caps_cache *c, const struct forward_header *headers, size_t n_headers,
                   uint64_t now, struct buf *doc, char etag[CAPS_ETAG_MAX]);

#endif
