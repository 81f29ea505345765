/* The corporate directory (docs/enterprise.md): a read-only resource-lists document in the global
 * tree (RFC 4826 §3; RFC 4825 §6.2), `resource-lists/global/<document>`, that the Shared List
 * XDMS builds itself from an enterprise LDAP directory, so that clients can reference it with
 * <external anchor="..."> (RFC 4826 §3.2) and watch it with xcap-diff (RFC 5875).
 *
 * Each LDAP entry under base_dn that filter matches becomes one
 *   <entry uri="URI"><display-name>NAME</display-name></entry>
 * with URI the first value of the uri attributes (in their order) that is a sip:, sips: or tel:
 * URI or a global telephone number (ldapc_value_uri()), and NAME the first value of the name
 * attribute (cut to CORPDIR_NAME_MAX bytes at a UTF-8 boundary; no <display-name> without one).
 * Entries without such a URI are left out. Entries are sorted by URI (byte order) and a URI seen
 * twice is kept once (RFC 4826 §3.4.5), so the same directory always gives the same bytes.
 *
 * Split rule: with at most max_entries entries, the document holds them in one
 * <list name="directory">. With more, the entries go, in URI order, into parts of max_entries
 * each, `<document>-1`, `<document>-2`, ..., each with the same one list, and the document's
 * list holds one <external anchor="ROOT/resource-lists/global/<document>-K/~~/resource-lists/
 * list%5b@name=%22directory%22%5d"/> per part, in order. Parts left over from a larger
 * directory are deleted.
 *
 * A run writes, in one store transaction, only the documents whose bytes changed (each with a
 * new ETag and a change-log record, then the notifier is woken); an unchanged directory writes
 * nothing. Runs happen at start, every refresh seconds, and when corpdir_refresh() asks (SIGUSR1
 * to the XDMS). A run that fails (LDAP unreachable, more than max_total entries) keeps the
 * documents as they are and is tried again at the next refresh.
 *
 * Thread-safety: one thread of its own runs the refreshes; corpdir_refresh() may be called from
 * any thread. corpdir_render() is pure. */
#ifndef XDM_CORPDIR_H
#define XDM_CORPDIR_H

#include <stddef.h>

#include "buf.h"
#include "ldapc.h"

struct notifier;
struct store;

#define CORPDIR_NAME_MAX 256 /* bytes of a display name kept */
#define CORPDIR_URI_MAX 512  /* longer URIs are left out */
#define CORPDIR_LIST "directory"

struct corpdir_options {
    struct ldapc_options ldap;
    const char *base_dn;   /* required */
    const char *filter;    /* NULL = "(objectClass=inetOrgPerson)" */
    const char *name_attr; /* NULL = "displayName" */
    const char *uri_attrs; /* attribute names separated by spaces; NULL = "labeledURI
                              telephoneNumber" */
    const char *document;  /* NULL = "corporate-directory" */
    const char *xcap_root; /* the public XCAP root, for the anchors of a split directory */
    size_t max_entries;    /* per document; 0 = 5000 */
    size_t max_total;      /* entries read at most; 0 = 200000 */
    unsigned refresh_s;    /* 0 = only at start and on demand */
};

/* One entry of the directory (borrowed strings). */
struct corpdir_entry {
    const char *uri;
    const char *name; /* NULL or "" = none */
};

/* One document to store: its name in the global tree and its bytes (owned). */
struct corpdir_doc {
    char *name;
    struct buf body;
};

/* Sorts v[0..n) by URI, drops repeated URIs and renders the documents of the split rule into
 * out (an array of at least 1 + ceil(n / max_entries) documents, zeroed by the caller); returns
 * how many, or -1 when out of memory. Release them with corpdir_docs_release(). */
int corpdir_render(struct corpdir_entry *v, size_t n, const char *document, const char *xcap_root,
                   size_t max_entries, struct corpdir_doc *out);
void corpdir_docs_release(struct corpdir_doc *d, size_t n);

struct corpdir;

/* Starts the refresh thread (the first run at once). store and notifier are borrowed (notifier
 * may be NULL). Returns NULL on a wrong option (logged) or when out of memory. */
struct corpdir *corpdir_start(const struct corpdir_options *o, struct store *store,
                              struct notifier *notifier);
/* Asks for a run as soon as possible (a run in progress finishes first). */
void corpdir_refresh(struct corpdir *d);
/* Stops the thread (a run in progress stops at its next entry or LDAP page) and frees d. */
void corpdir_stop(struct corpdir *d);
/* Appends the xdm_directory_* families. Returns 0 or -1. */
int corpdir_metrics(struct corpdir *d, struct buf *out);

#endif
