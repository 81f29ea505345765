/* Safe XML parsing and serialisation on top of libxml2.
 *
 * Every body from the network goes through xdoc_parse(): UTF-8 is checked first (RFC 4825 §8.2.2
 * not-utf-8), then libxml2 parses with entity substitution, DTD loading, DTD validation and
 * network access off; a document with a DOCTYPE is refused (no XCAP usage has one, and internal
 * subsets are the door to entity expansion attacks). Nesting depth is bounded. The parser stops
 * at the first fatal error, so malformed input costs no more than its well-formed prefix. */
#ifndef XDM_XDOC_H
#define XDM_XDOC_H

#include <libxml/tree.h>
#include <stdbool.h>
#include <stddef.h>

#include "status.h"

struct buf;

/* Maximum element nesting accepted in any body. */
#define XDOC_MAX_DEPTH 256

/* Initialises libxml2 for multi-threaded use; call once at start, before threads. */
void xdoc_global_init(void);
void xdoc_global_cleanup(void);

/* True when data[0..len) is well-formed UTF-8 (no overlongs, no surrogates, no NUL). */
bool xdoc_utf8_valid(const char *data, size_t len);

/* Parses a whole document. On success *out owns the document (free with xmlFreeDoc).
 * Failures: XCAP_NOT_UTF8, XCAP_NOT_WELL_FORMED (phrase says where). */
enum xcap_status xdoc_parse(const char *data, size_t len, xmlDocPtr *out, struct xcap_err *err);

/* Like xdoc_parse(), but prefixes the body does not bind are accepted (the result is well-formed
 * XML that need not be namespace-well-formed): for an element body, whose prefixes may be bound
 * by the document it goes into (RFC 4825 §8.2.3). Elements with an unbound prefix have no
 * namespace in the tree; the caller resolves such names and checks the final document with
 * xdoc_parse(). Same failures as xdoc_parse(). */
enum xcap_status xdoc_parse_unbound(const char *data, size_t len, xmlDocPtr *out,
                                    struct xcap_err *err);

/* Serialises doc as UTF-8 with an XML declaration, appending to out. Returns 0 or -1. */
int xdoc_serialize(xmlDocPtr doc, struct buf *out);

/* ---- reading a parsed tree (the application usages' constraint checks) ----
 * Pure functions of the tree; every result borrowed from it unless the name says otherwise. */

/* True when el is an element named local in namespace ns (el may be NULL). */
bool xdoc_is(xmlNodePtr el, const char *ns, const char *local);
/* The first element child of el (el may be NULL), or NULL. */
xmlNodePtr xdoc_first_child(xmlNodePtr el);
/* The next element sibling of el (el may be NULL), or NULL. */
xmlNodePtr xdoc_next(xmlNodePtr el);
/* The value of the no-namespace attribute name of el (borrowed from the tree): "" when empty,
 * NULL when absent or when its value is not a single text node. */
const char *xdoc_attr(xmlNodePtr el, const char *name);
/* The text content of el without leading and trailing XML white space (space, tab, CR, LF);
 * the caller frees it. NULL only when out of memory. */
char *xdoc_text_dup(xmlNodePtr el);

#endif
