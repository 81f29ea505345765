/* The application-usage registry (RFC 4825 §5): one row per AUID, the single description of a
 * usage. A row says what the usage is (AUID, MIME type, namespaces, schema, document element),
 * where it lives (the XDMS role that serves it, whether documents may sit in sub-directories)
 * and what it does beyond its schema (constraints, cross-document index upkeep, documents the
 * server keeps itself). Every usage family has one file, xdms/au_<family>.c, exporting its
 * row(s); appusage.c lists the rows. Adding a usage means adding a file and a row there: no other
 * code names an AUID.
 *
 * Rows are constant data, shared read-only by every thread; their functions are reentrant. The
 * registry knows no HTTP; the functions of a row reach storage only through the transaction
 * handed to them. */
#ifndef XDM_APPUSAGE_H
#define XDM_APPUSAGE_H

#include <libxml/tree.h>
#include <stdbool.h>
#include <stddef.h>

#include "status.h"
#include "store.h"

enum xdms_role { ROLE_SHARED_LIST, ROLE_PRESENCE, ROLE_RLS, ROLE_UT };
/* How many roles there are (the size of per-role tables). */
#define XDMS_ROLE_COUNT 4

struct au_lists_refs;

/* What a constraint check knows besides the document. */
struct appusage_check {
    const struct doc_key *key;        /* where the document is stored */
    const char *owner;                /* key->xui in the users tree, NULL in the global tree
                                         (who may write there is decided above the registry) */
    const struct au_lists_refs *refs; /* which server references point to (never NULL) */
    size_t max_icon_size;             /* local limit of OMA presence content (max_icon_size) */
};

/* A problem an index check found: one sentence, about the document k (NULL when the problem is
 * an entry that names no stored document). problem is valid for the call only. */
typedef void (*appusage_report_fn)(void *cls, const struct doc_key *k, const char *problem);

struct appusage {
    const char *auid;
    const char *mime; /* the document media type */
    /* The default document namespace (RFC 4825 §5.2) as the usage's own specification sets it:
     * the namespace of unprefixed names in node selectors. */
    const char *default_ns;
    enum xdms_role role; /* the XDMS that owns it */
    bool subdirs;        /* documents may sit in sub-directories of the home directory
                            (RFC 4825 §5.5: only where the usage needs them) */
    /* Namespace of the document element when it differs from default_ns (pres-rules documents
     * are common-policy <ruleset>s, RFC 5025 §3), else NULL: see appusage_root_ns(). */
    const char *root_ns;
    /* Local name of the document element. A schema set declares more global elements than the
     * one root (rls-services imports resource-lists), so the root is checked by name too. */
    const char *root;
    /* The schema file (under schema_dir) validation starts from (RFC 4825 §5.3); NULL for the
     * documents the servers generate. */
    const char *xsd;
    /* Namespaces the usage's documents may use beyond the document element's, announced in
     * xcap-caps (RFC 4825 §12); NULL-terminated, or NULL. */
    const char *const *namespaces;
    /* Extra store tables the usage's functions use (passed to store_open); NULL-terminated, or
     * NULL. */
    const char *const *tables;
    /* Constraints a schema cannot express (RFC 4825 §5.4, §8.2.5) on the schema-valid document
     * with element root: XCAP_OK or a 409 status with err filled. NULL: none. */
    enum xcap_status (*check)(const struct appusage_check *c, xmlNodePtr root,
                              struct xcap_err *err);
    /* Resource interdependencies (RFC 4825 §8.2.7): updates what depends on document k inside
     * write transaction t; doc is the new version, NULL when it is being deleted. Returns
     * XCAP_OK or a failure status with err filled; the caller then aborts t. NULL: none. */
    enum xcap_status (*interdepend)(struct store_txn *t, const struct doc_key *k, xmlDocPtr doc,
                                    struct xcap_err *err);
    /* The usage's behaviour in the global tree (RFC 4825 §6.2): true for the documents the server
     * builds itself (the rls-services global/index, RFC 4826 §4.4.8), which clients never write
     * and only trusted servers read. NULL: none. */
    bool (*server_owned)(const struct doc_key *k);
    /* Offline consistency check of what interdepend keeps in the usage's tables (xdmctl check),
     * in a read transaction t of a store opened with those tables. With k and doc (the stored
     * document, parsed, valid or not): whether the index has exactly the document's entries.
     * With k and doc NULL: whether every entry of the index belongs to a stored document that
     * has it. Each discrepancy goes to report(cls, ...). Returns 0, or -1 when memory ran out.
     * NULL: the usage keeps no index. */
    int (*index_check)(struct store_txn *t, const struct doc_key *k, xmlDocPtr doc,
                       appusage_report_fn report, void *cls);
    /* The document a user's read finds even before the user wrote it (simservs.xml, TS 24.623:
     * handsets read their settings before they change them), or NULL: none. A read (GET, HEAD,
     * or a node write) of that document in the users tree when it does not exist stores
     * default_doc first (or the operator's replacement, the default_document key). */
    const char *default_name;
    const char *default_doc;
    /* Element and attribute PUTs may carry the document's MIME type instead of
     * application/xcap-el+xml or application/xcap-att+xml (RFC 4825 §7.4, §7.5): clients of the
     * usage are known to send it, and the node selector already says what the body is. */
    bool node_doc_type;
    /* Prefixes a node selector may use without binding them in its query (RFC 4825 §6.4 wants
     * xmlns() for each): prefix, namespace pairs, NULL-terminated, or NULL. The clients of the
     * usage are known to write the conventional prefixes of its specification unbound; an
     * xmlns() part of the query still binds a prefix to anything else. */
    const char *const *prefixes;
};

/* Parses "shared-list", "presence", "rls", "ut". Returns -1 otherwise. */
int xdms_role_parse(const char *s, enum xdms_role *out);
const char *xdms_role_name(enum xdms_role role);

/* The row for auid if the role serves it, else NULL. xcap-caps and the XCAP directory are not
 * in the table (the servers generate them; see appusage_generated()). */
const struct appusage *appusage_find(enum xdms_role role, const char *auid);
/* Every row of the role, in a stable order; returns the count and sets *rows. */
size_t appusage_list(enum xdms_role role, const struct appusage *const **rows);
/* Every row of every role, in the same order; returns the count and sets *rows. */
size_t appusage_all(const struct appusage *const **rows);

/* The namespace of the usage's document element (root_ns, or default_ns when that is NULL). */
const char *appusage_root_ns(const struct appusage *au);

/* Rows of the AUIDs whose documents the servers generate rather than store: "xcap-caps" (RFC 4825
 * §12) and "org.openmobilealliance.xcap-directory" (OMA XDM Core); NULL for any other AUID. Their
 * role field is meaningless (every XDMS and the proxy serve them). */
const struct appusage *appusage_generated(const char *auid);

/* Every AUID the XDMSs know, the stored usages' of every role and then the generated ones: up to
 * max borrowed names into out; returns how many (e.g. the AUID label values of the metrics). */
size_t appusage_auids(const char **out, size_t max);

#endif
