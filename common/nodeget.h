/* GET of an element, attribute or namespace resource (RFC 4825 §7.4-7.10, §8.3) from the bytes of
 * a document, for every document either server holds or makes: stored documents (the XDMS
 * engine), and the generated xcap-caps and xcap-directory (both XDMSs and the Aggregation
 * Proxy). The answer is cut from the document's bytes, never re-serialised from a tree:
 *   - an element: its bytes from '<' of the start tag to the end of its end tag, exactly as
 *     written (application/xcap-el+xml);
 *   - an attribute: the bytes between its quotes, i.e. the AttValue as written (RFC 4825 §15.2.2,
 *     the form a PUT takes), application/xcap-att+xml;
 *   - namespace bindings (§7.10): the element's qualified name as written, no attributes, no
 *     children, one declaration per binding in scope ("xml" left out), application/xcap-ns+xml.
 * So a node GET of a generated document gives the same bytes as a GET of the whole, cut. Pure
 * functions; reentrant. */
#ifndef XDM_NODEGET_H
#define XDM_NODEGET_H

#include <stddef.h>

#include <libxml/tree.h>

#include "buf.h"
#include "nodesel.h"
#include "status.h"
#include "xspan.h"

/* A document as node requests read it: its bytes (borrowed), its tree and the byte spans of its
 * elements, each element numbered in _private (xspan_number_tree()). */
struct nodeget_doc {
    const char *data;
    size_t len;
    xmlDocPtr xml;
    struct xspan spans;
};

/* Parses data[0..len) (xdoc_parse(): not-well-formed, not-utf-8, ... with its phrase) and indexes
 * its spans. On failure d holds nothing; release with nodeget_doc_release() either way. */
enum xcap_status nodeget_doc_load(struct nodeget_doc *d, const char *data, size_t len,
                                  struct xcap_err *err);
void nodeget_doc_release(struct nodeget_doc *d);

/* The span of attribute attr of element el (libxml2 keeps the attributes in document order
 * without the namespace declarations, so the k-th property is the k-th non-xmlns span), or
 * NULL. */
const struct xspan_attr *nodeget_attr_span(const struct nodeget_doc *d, xmlNodePtr el,
                                           xmlAttrPtr attr);

/* Evaluates sel on d and appends the selected resource to out (see above); *mime receives its
 * static media type. XCAP_OK; XCAP_NOT_FOUND (no such element or attribute, or a step that
 * selects more than one element, RFC 4825 §6.3); XCAP_INTERNAL (out of memory). */
enum xcap_status nodeget_render(const struct nodesel *sel, const struct nodeget_doc *d,
                                struct buf *out, const char **mime, struct xcap_err *err);

/* The whole GET on a document that is not stored: parses the node selector node_sel with the
 * xmlns() bindings of query (raw query or NULL) and default_ns for unprefixed names (the usage's
 * default namespace, RFC 4825 §6.4), loads doc[0..len) and renders. Besides nodeget_render()'s:
 * XCAP_BAD_REQUEST for a bad selector; a document that does not parse is XCAP_INTERNAL (the
 * caller made it). */
enum xcap_status nodeget_select(const char *node_sel, const char *query, const char *default_ns,
                                const char *doc, size_t len, struct buf *out, const char **mime,
                                struct xcap_err *err);

#endif
