/* RFC 5261 patch operations and RFC 5874 element/attribute reports for the xcap-diff notifier
 * (xdms/notify.c), built from the change-log detail the engine writes (xdms/engine_node.c,
 * engine_node_detail()) and from stored documents. Pure functions: no storage, no SIP, no shared
 * state, so all of them are thread-safe. Every string handed in is borrowed; everything returned is
 * owned by the caller.
 *
 * Exactness (RFC 5874 §4; RFC 5261 §5): applying the operations of a change to the previous version
 * gives a document whose inclusive canonical form (C14N 1.0 with comments) equals the new
 * version's. To get there without the patch document leaking its own bindings into the content:
 *   - selectors are positional ("/" "*" "/" "*[k]" ...), which need no prefixes;
 *   - added or replacing element content carries, on its own start tag, the declarations it needs
 *     from the place where it lands (the default namespace, or xmlns="" when the content has
 *     unqualified names, and every prefix it uses but does not declare), because the xcap-diff
 *     document's default namespace would otherwise capture its unprefixed names;
 *   - attribute operations declare the prefix of their attribute name on the operation element;
 *   - attribute values travel as element text, escaped so the parsed text equals the value.
 * A change that cannot be rendered exactly (an unbound prefix, a malformed detail) is reported
 * without operations, which RFC 5874 §4 allows: the client fetches the document. */
#ifndef XDM_XDIFF_H
#define XDM_XDIFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;
struct nodesel;

enum xdiff_kind { XDIFF_ADD, XDIFF_REPLACE, XDIFF_REMOVE };

/* One patch operation, ready to render. Invariants: sel is never NULL; content is "" for a
 * remove; attr is true when the operation adds, replaces or removes an attribute (content is then
 * escaped text, else element markup). */
struct xdiff_op {
    enum xdiff_kind kind;
    bool attr;
    char *sel;     /* positional XPath in the version this operation applies to */
    char *pos;     /* add: "before" or "after"; NULL = as the last child of sel */
    char *type;    /* add of an attribute: "@qname"; else NULL */
    char *decls;   /* " xmlns:p=\"uri\"" for the prefix of an attribute name, or "" */
    char *content; /* markup or escaped text, embedded as is */
};

void xdiff_op_release(struct xdiff_op *op);
/* Deep copy. Returns 0 or -1 (out of memory; *out is then zeroed). */
int xdiff_op_copy(const struct xdiff_op *op, struct xdiff_op *out);

/* The detail of an element or attribute edit whose content was too large for the change log
 * (engine_config.change_max_record): the change is reported with its ETags only and the client
 * fetches the document (RFC 5874 §4). */
#define XDIFF_DETAIL_ETAGS_ONLY "op=none\n\n"

/* Builds the operation described by one change-log detail (format above engine_node_detail() in
 * xdms/engine_node.c). Returns 0 (*out filled), 1 (empty detail: a whole-document write, no
 * operation), or -1 (the change cannot be rendered exactly, or XDIFF_DETAIL_ETAGS_ONLY; *out
 * zeroed). */
int xdiff_op_from_detail(const char *detail, size_t len, struct xdiff_op *out);

/* The operation that turns any version with the same prolog and epilog (the comments and
 * processing instructions outside the document element) into doc: a replace of the document element
 * ("/" "*") with the new one. Returns 0 or -1 (not well-formed, out of memory). */
int xdiff_op_root(const char *doc, size_t len, struct xdiff_op *out);

/* Digest of doc's prolog and epilog markup (comments, processing instructions; the XML
 * declaration and white space do not count). Two versions with the same digest differ at most
 * inside the document element. Returns 0 or -1 (no document element found). */
int xdiff_prolog_digest(const char *doc, size_t len, uint64_t *out);

/* Appends <add>, <replace> or <remove> (RFC 5261 §4.3–4.5). Returns 0 or -1 (buffer full). */
int xdiff_op_render(struct buf *b, const struct xdiff_op *op);

/* Shortens a sequence of operations (applied in order) without changing its effect, for
 * diff-processing=aggregate (RFC 5875 §4.6): an add followed by the removal of what it added
 * cancels out; a replace, or an add, followed by a replace of the same node keeps only the
 * result; a replace followed by a remove of the same node keeps the remove. Only neighbours are
 * merged, so no selector is ever re-evaluated against a different tree. Released operations are
 * freed; *n is updated. */
void xdiff_ops_simplify(struct xdiff_op *ops, size_t *n);

/* Element and attribute reports (RFC 5874 §4; RFC 5875 §4.6). sel is the value of the
 * sel attribute (document selector, "/~~/", node selector, percent-encoded); decls are namespace
 * declarations for its prefixes (" xmlns:p=\"uri\"" ..., may be ""). doc is the current document
 * (NULL when it does not exist); ns the parsed node selector (terminal element or attribute).
 * Appends <element sel>content</element> or <attribute sel>value</attribute>, or the same with
 * exists="0" when nothing is selected, and sets *hash to a digest of what was appended (so a
 * caller can tell whether the report changed). Returns 0 or -1 (buffer full, out of memory). */
int xdiff_node_report(struct buf *b, const char *sel, const char *decls, const char *doc,
                      size_t len, const struct nodesel *ns, uint64_t *hash);

/* 64-bit FNV-1a of data, continuing from h (start with XDIFF_HASH_INIT). */
#define XDIFF_HASH_INIT 0xcbf29ce484222325ull
uint64_t xdiff_hash(uint64_t h, const void *data, size_t len);

#endif
