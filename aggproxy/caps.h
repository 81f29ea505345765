/* The xcap-caps document the proxy serves for its XCAP root (SPEC XCAP-CAPS-1..4): the union of
 * the documents of the XDMSs behind it, fetched on each request, so it always reflects what the
 * running servers support. */
#ifndef XDM_AGGPROXY_CAPS_H
#define XDM_AGGPROXY_CAPS_H

#include <stddef.h>

#include "buf.h"

struct forward;
struct route_table;

#define CAPS_MIME "application/xcap-caps+xml"
#define CAPS_NS "urn:ietf:params:xml:ns:xcap-caps"
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

/* GETs <upstream><root>/xcap-caps/global/index from each distinct upstream of t (as identity,
 * a quoted-URI value for X-3GPP-Asserted-Identity), and merges the 200 answers with
 * caps_merge(). Upstreams that fail are skipped (and logged at warn level). Returns 0 or -1. */
int caps_compose(struct forward *fw, const struct route_table *t, const char *identity,
                 struct buf *out);

/* A strong ETag derived from the content (quoted), written into out. Returns 0 or -1. */
int caps_etag(const char *body, size_t len, char out[CAPS_ETAG_MAX]);

#endif
