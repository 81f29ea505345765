/* Shared between the usage_*.c files only (not a contract for other modules).
 *
 * usage.c        schemas (compile, validate), dispatch, OMA pres-rules and pres-content checks
 * usage_lists.c  RFC 4826 list constraints (sibling uniqueness, references), field selectors
 * usage_rls.c    rls-services service URI index and the materialized global index */
#ifndef XDM_USAGE_INTERNAL_H
#define XDM_USAGE_INTERNAL_H

#include <libxml/tree.h>
#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "status.h"
#include "store.h"

#define USAGE_NS_RL "urn:ietf:params:xml:ns:resource-lists"
#define USAGE_NS_RLS "urn:ietf:params:xml:ns:rls-services"

/* At most this many <exists> items in one uniqueness-failure report, and this many alt-values in
 * one item: enough to show the client its mistakes without an unbounded body. */
#define USAGE_MAX_EXISTS 32
#define USAGE_MAX_ALTS 3

/* True when el is an element named local in namespace ns. */
bool usage_is(xmlNodePtr el, const char *ns, const char *local);
/* The first element child of el, or the next element sibling of el. */
xmlNodePtr usage_first_child(xmlNodePtr el);
xmlNodePtr usage_next(xmlNodePtr el);
/* The value of the no-namespace attribute name of el (borrowed from the tree), or NULL. */
const char *usage_attr(xmlNodePtr el, const char *name);
/* The text content of el without leading and trailing XML white space; caller frees. NULL only
 * when out of memory. */
char *usage_text(xmlNodePtr el);

/* Appends to out the node selector of attribute attr of element el relative to the document
 * (RFC 4825 §11, XCAP-ERR-3), percent-encoded as in a URI. A step uses its key attribute
 * (list@name, service@uri) when that value is unique among its siblings, no predicate when it is
 * the only element of its name, a position otherwise; the last step (el) is always positional
 * unless by_key is set. Elements in default_ns are unprefixed, others carry the document's own
 * prefix (or "*" with a position among all element siblings when the document gives none).
 * Returns 0 or -1. */
int usage_field(xmlNodePtr el, const char *attr, const char *default_ns, bool by_key,
                struct buf *out);

/* Where a reference may point (RFC 4826 §3.4.5, §4.4.5): */
enum usage_ref_form {
    USAGE_REF_RELATIVE, /* a path relative to the XCAP root (entry-ref@ref) */
    USAGE_REF_ABSOLUTE, /* an absolute http(s) URI (external@anchor, rls <resource-list>) */
    USAGE_REF_ANY,      /* either (OMA external-list entry@anc) */
};

/* Which server references are judged against (usage_set_references()). */
struct usage_refs {
    bool known;         /* the XCAP root below is set; when not, every absolute URI is taken
                           as one of this server, its root where a resource-lists document
                           selector starts */
    bool https;         /* scheme of the root */
    char host[256];     /* lower case, no trailing dot; IPv6 literals with their brackets */
    unsigned port;      /* explicit, or 80 / 443 by scheme */
    char path[512];     /* root path without trailing '/' ("" for a root at "/") */
    bool allow_foreign; /* references into other users' documents are accepted */
};

/* Parses xcap_root ("http://xcap.example.com/xcap-root/") into r. Returns 0, or -1 when it is not
 * an absolute http or https URI with a host (r is then left unknown). */
int usage_refs_init(struct usage_refs *r, const char *xcap_root, bool allow_foreign);

/* Checks a reference (RFC 4826 §3.2, §4.3: entry-ref, external anchor, rls <resource-list>; OMA
 * external-list anc). An absolute URI on another server (another scheme, host, port or XCAP
 * root than refs gives) is accepted without being dereferenced: RFC 4826 lets such references
 * point to any server, and only its own server can judge them. A reference to this server must
 * be an XCAP URI of the given form whose node selector ends in an element named target of a
 * resource-lists document; with owner non-NULL and refs->allow_foreign off, the document must
 * also be in the home directory of owner (or in the global tree): SPEC RL-8 local policy. refs
 * may be NULL (unknown root, foreign references refused). On failure returns false and writes
 * the reason (without the reference itself) to why. */
bool usage_ref_ok(const char *ref, enum usage_ref_form form, const char *target, const char *owner,
                  const struct usage_refs *refs, char *why, size_t why_len);

/* RFC 4826 §3.4.5 on a resource-lists document (root <resource-lists>). owner, refs: see
 * usage_ref_ok(). Returns XCAP_OK, XCAP_UNIQUENESS_FAILURE or XCAP_CONSTRAINT_FAILURE. */
enum xcap_status usage_lists_check(xmlNodePtr root, const char *owner,
                                   const struct usage_refs *refs, struct xcap_err *err);

/* RFC 4826 §4.4.5 on an rls-services document, except service URI uniqueness (usage_rls.c):
 * <resource-list> references, inline lists (all resource-lists rules), package tokens, URI
 * length. */
enum xcap_status usage_lists_check_rls(xmlNodePtr root, const char *owner,
                                       const struct usage_refs *refs, struct xcap_err *err);

/* Service URI uniqueness of rls-services document root (RFC 4826 §4.4.5). With t NULL only
 * within the document; with t also against every other document's services in the index
 * (owner_key = XUI \0 path \0, owner_len bytes), and alt-values are checked free there too. */
enum xcap_status usage_rls_unique(struct store_txn *t, const char *owner_key, size_t owner_len,
                                  xmlNodePtr root, struct xcap_err *err);

/* RFC 4826 §4.4.7-4.4.8 for the users-tree rls-services document k (doc NULL: deleted). */
enum xcap_status usage_rls_interdepend(struct store_txn *t, const struct doc_key *k, xmlDocPtr doc,
                                       struct xcap_err *err);

/* Suggests up to USAGE_MAX_ALTS free variants of value ("friends" -> "friends-1"; for a URI the
 * user part changes: "sip:a@x" -> "sip:a-1@x"). is_taken(cls, candidate) says whether a
 * candidate is in use; candidates already suggested in ex are skipped. Returns 0 or -1 (out of
 * memory or a store failure reported by is_taken returning -1). */
int usage_suggest(const char *value, bool uri, int (*is_taken)(void *cls, const char *candidate),
                  void *cls, struct xcap_exists *ex);

#endif
