/* An RFC 5261 patch applier on libxml2 trees, written for the tests independently of the
 * notifier's renderer (xdms/xdiff.c): xdm-sipua --apply keeps client copies with it, and the unit
 * suites check that every patch the notifier sends turns the previous version into the new one.
 *
 * Selectors: the RFC 5261 subset of XPath — absolute or relative location paths of element steps
 * (a QName or "*", with any number of [n] and [@qname='v'] predicates), ending optionally in
 * "@qname", "namespace::prefix", "text()[n]" or "comment()[n]". Every selector must pick exactly
 * one node. Namespaces (RFC 5261 §4.2): prefixes in selectors and in type="@p:name" resolve
 * against the declarations in scope at the operation element; an unprefixed element name in a
 * selector is in the default namespace in scope there (§4.2.2, a departure from XPath 1.0);
 * unprefixed attribute names are in no namespace. Added and replacing content keeps its expanded
 * names: bindings it takes from the patch document are re-declared where needed in the target.
 *
 * Not thread-safe only in the sense that a document must not be shared; no global state. */
#ifndef XDM_TEST_XPATCH_H
#define XDM_TEST_XPATCH_H

#include <libxml/tree.h>
#include <stddef.h>

/* Applies the operation elements that are children of parent (an xcap-diff <document>: <add>,
 * <replace>, <remove>, in document order; other children are ignored) to doc. Returns 0, or -1
 * with a reason in err (doc may then be partly patched). */
int xpatch_apply(xmlDocPtr doc, xmlNodePtr parent, char *err, size_t errlen);

/* Applies one operation element. Returns 0 or -1 with err. */
int xpatch_apply_op(xmlDocPtr doc, xmlNodePtr op, char *err, size_t errlen);

/* Inclusive Canonical XML 1.0 with comments of doc: the equality used to compare a client copy
 * with the server's document. Returns a string to free with xmlFree(), or NULL. */
char *xpatch_c14n(xmlDocPtr doc);

/* Canonical form of a serialized document (parsed without network or entity loading). Returns
 * a string to free with xmlFree(), or NULL when data is not well-formed. */
char *xpatch_c14n_bytes(const char *data, size_t len);

#endif
