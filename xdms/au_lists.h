/* The list rules of RFC 4826 shared by the usages whose documents hold or point to lists:
 * resource-lists (§3.4.5), the inline lists and <resource-list> references of rls-services
 * (§4.4.5), the external-list references of OMA presence rules. Also the node selector of an
 * offending value and its free alternatives, as a uniqueness-failure report gives them (RFC 4825
 * §11). Knows no storage and no HTTP; all functions are reentrant. */
#ifndef XDM_AU_LISTS_H
#define XDM_AU_LISTS_H

#include <libxml/tree.h>
#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "status.h"

#define AU_LISTS_NS_RL "urn:ietf:params:xml:ns:resource-lists"
#define AU_LISTS_NS_RLS "urn:ietf:params:xml:ns:rls-services"

/* At most this many <exists> items in one uniqueness-failure report, and this many alt-values in
 * one item: enough to show the client its mistakes without an unbounded body. */
#define AU_LISTS_MAX_EXISTS 32
#define AU_LISTS_MAX_ALTS 3

/* Appends to out the node selector of attribute attr of element el relative to the document
 * (RFC 4825 §11), percent-encoded as in a URI. A step uses its key attribute (list@name,
 * service@uri) when that value is unique among its siblings, no predicate when it is the only
 * element of its name, a position otherwise; the last step (el) is always positional unless
 * by_key is set. Elements in default_ns are unprefixed, others carry the document's own prefix
 * (or "*" with a position among all element siblings when the document gives none). Returns 0 or
 * -1. */
int au_lists_field(xmlNodePtr el, const char *attr, const char *default_ns, bool by_key,
                   struct buf *out);

/* Suggests up to AU_LISTS_MAX_ALTS free variants of value ("friends" -> "friends-1"; for a URI
 * the user part changes: "sip:a@x" -> "sip:a-1@x"), none longer than max_len bytes (0: no
 * limit). is_taken(cls, candidate) says whether a candidate is in use; candidates already
 * suggested in ex are skipped. Returns 0 or -1 (out of memory or a store failure reported by
 * is_taken returning -1). */
int au_lists_suggest(const char *value, bool uri, size_t max_len,
                     int (*is_taken)(void *cls, const char *candidate), void *cls,
                     struct xcap_exists *ex);

/* Where a reference may point (RFC 4826 §3.4.5, §4.4.5): */
enum au_lists_ref_form {
    AU_LISTS_REF_RELATIVE, /* a path relative to the XCAP root (entry-ref@ref) */
    AU_LISTS_REF_ABSOLUTE, /* an absolute http(s) URI (external@anchor, rls <resource-list>) */
    AU_LISTS_REF_ANY,      /* either (OMA external-list entry@anc) */
};

/* Which server references are judged against (usage_set_references()). */
struct au_lists_refs {
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
int au_lists_refs_init(struct au_lists_refs *r, const char *xcap_root, bool allow_foreign);

/* Checks a reference (RFC 4826 §3.2, §4.3: entry-ref, external anchor, rls <resource-list>; OMA
 * external-list anc). An absolute URI on another server (another scheme, host, port or XCAP
 * root than refs gives) is accepted without being dereferenced: RFC 4826 lets such references
 * point to any server, and only its own server can judge them. A reference to this server must
 * be an XCAP URI of the given form whose node selector ends in an element named target of a
 * resource-lists document; with owner non-NULL and refs->allow_foreign off, the document must
 * also be in the home directory of owner (or in the global tree): a local policy, as RFC 4826
 * §3.4.5 lets a server restrict references. refs may be NULL (unknown root, foreign references
 * refused). On failure returns false and writes the reason (without the reference itself) to
 * why. */
bool au_lists_ref_ok(const char *ref, enum au_lists_ref_form form, const char *target,
                     const char *owner, const struct au_lists_refs *refs, char *why,
                     size_t why_len);

/* A walk over list elements collecting uniqueness failures (into err->exists) and the first
 * constraint failure. Fill the first four fields, zero the rest. */
struct au_lists_ctx {
    const char *owner;                /* see au_lists_ref_ok() */
    const struct au_lists_refs *refs; /* idem */
    const char *default_ns;           /* of the document's node selectors */
    struct xcap_err *err;             /* receives the report */
    char constraint[400];             /* the first constraint failure, "" while none */
    bool oom;
};

/* Checks the children of parent (a <resource-lists> or <list> element, nesting depth depth) and,
 * recursively, the lists inside it: RFC 4826 §3.4.5 uniqueness of list@name, entry@uri,
 * entry-ref@ref, external@anchor among siblings, and the references' shape. */
void au_lists_walk(struct au_lists_ctx *c, xmlNodePtr parent, unsigned depth);
/* Records a constraint failure unless one is recorded already (the report names one). */
void au_lists_constraint(struct au_lists_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The verdict of the walk: XCAP_OK, XCAP_UNIQUENESS_FAILURE (before any constraint failure),
 * XCAP_CONSTRAINT_FAILURE or XCAP_INTERNAL (out of memory), with err filled. */
enum xcap_status au_lists_finish(struct au_lists_ctx *c);

/* RFC 4826 §3.4.5 on a resource-lists document (root <resource-lists>). owner, refs: see
 * au_lists_ref_ok(). Returns XCAP_OK, XCAP_UNIQUENESS_FAILURE or XCAP_CONSTRAINT_FAILURE. */
enum xcap_status au_lists_check(xmlNodePtr root, const char *owner,
                                const struct au_lists_refs *refs, struct xcap_err *err);

#endif
