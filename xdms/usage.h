/* Application usages at run time (RFC 4825 §5.3–5.6, §8.2.5, §8.2.7): XML schema validation
 * against each registry row's schema, then the row's constraints (uniqueness, references, OMA
 * rule shapes, size and MIME limits) and resource interdependencies (the rls-services global
 * index); see appusage.h for the rows.
 *
 * The engine calls usage_validate() on every candidate document (after a document PUT, or after
 * an element/attribute PUT or DELETE has been applied) and then usage_interdepend() inside the
 * same write transaction, before it stores the document. Both run before anything is committed;
 * a failure aborts the whole request.
 *
 * Thread-safety: a struct usage is created once at start and then shared read-only by all
 * threads (compiled schemas are immutable; validation contexts are per call). */
#ifndef XDM_USAGE_H
#define XDM_USAGE_H

#include <libxml/tree.h>

#include "appusage.h"
#include "status.h"
#include "store.h"

struct usage;

/* A NULL struct usage (as in unit tests of the engine) validates nothing and has no
 * interdependencies. */

/* Extra store tables the role's usages need (pass to store_open); NULL-terminated. */
const char *const *usage_store_tables(enum xdms_role role);

/* Compiles the role's schemas from schema_dir (the xsd of each row) with network access and
 * entity loading off. Returns 0, or -1 with a log line naming the file.
 * Added: it installs a process-wide libxml2 external entity loader that opens only files inside
 * schema_dir (the last one given) and refuses every other URL; call it at start, before other
 * threads use libxml2, and not concurrently with itself. */
int usage_open(enum xdms_role role, const char *schema_dir, struct usage **out);
void usage_close(struct usage *u);
/* Added: the schema directory built in (XDM_SCHEMA_DIR, the source tree's schemas/), for
 * callers without a configured one (unit tests, tools). Static string. */
const char *usage_default_schema_dir(void);

/* Added: local limits (OMA presence content). The largest status icon accepted in an
 * org.openmobilealliance.pres-content document, in bytes after base64 decoding (raw <data>
 * length when the data is not base64). 0 restores the default. Call before threads start. */
#define USAGE_DEFAULT_MAX_ICON_SIZE (256u * 1024u)
void usage_set_max_icon_size(struct usage *u, size_t bytes);

/* References to other documents (RFC 4826 §3.2 external anchor and entry-ref, §4.3 rls
 * <resource-list>, OMA external-list anc). xcap_root is this server's public XCAP root (the
 * xcap_root key): an absolute reference to another server (scheme, host, port or root) is
 * accepted without being dereferenced, one to this server is checked like a relative one. NULL
 * leaves the root unknown: every absolute reference is then judged as one of this server (the
 * default of a new struct usage). allow_foreign accepts references into other users' documents
 * (refused by default: a Resource List Server dereferencing them must then apply the owner's
 * rights). Returns 0, or -1 when xcap_root is not an absolute http(s) URI. Call before threads
 * start. */
int usage_set_references(struct usage *u, const char *xcap_root, bool allow_foreign);

/* Added: the extra tables of ROLE_RLS (RFC 4826 §4.4.5, §4.4.8), for tests that inspect a
 * store (tools ask the row: appusage.index_check): USAGE_RLS_URI_TABLE maps a service URI to owner
 * XUI \0 document path \0 the service element as serialized in the global index;
 * USAGE_RLS_DOC_TABLE maps XUI \0 document path to the document's service URIs, each followed by
 * \0. */
#define USAGE_RLS_URI_TABLE "rls_uri"
#define USAGE_RLS_DOC_TABLE "rls_doc"
/* Longest service URI accepted (it is a store key). */
#define USAGE_RLS_URI_MAX 480

/* Validates the whole document doc (already well-formed) stored under k. Returns XCAP_OK or a
 * 409 status with err filled: XCAP_SCHEMA_VALIDATION_ERROR (phrase names the line and the
 * schema complaint), XCAP_UNIQUENESS_FAILURE (err->exists with field and alt-values),
 * XCAP_CONSTRAINT_FAILURE, XCAP_LOCAL_CONSTRAINT_FAILURE.
 * Added detail: the document element must be the usage's root in its default namespace (else
 * schema-validation-error). References (entry-ref, external, rls <resource-list>, OMA
 * external-list anc) into another user's documents on this server are constraint failures for
 * documents in the users tree unless allowed (usage_set_references()). An
 * org.openmobilealliance.pres-content document must be at oma_status-icon/<name> or
 * rcs_status_icon/<name> (else constraint-failure); base64 <data> that does not decode is a
 * constraint failure, a disallowed mime-type or an icon over the size limit a
 * local-constraint-failure. For rls-services documents in the users tree, service URI uniqueness
 * (within the document too) is checked by usage_interdepend(), where the index is. */
enum xcap_status usage_validate(struct usage *u, const struct appusage *au, const struct doc_key *k,
                                xmlDocPtr doc, struct xcap_err *err);

/* Updates what depends on document k inside write transaction t (RFC 4825 §8.2.7): doc is the
 * new version, NULL when the document is being deleted. Enforces cross-document constraints
 * (rls-services service URIs unique across all users, RFC 4826 §4.4.5) and rewrites dependent
 * documents with new ETags and change-log records (rls-services/global/index). Returns XCAP_OK
 * or a failure status with err filled; on failure the caller aborts t. */
enum xcap_status usage_interdepend(struct usage *u, struct store_txn *t, const struct appusage *au,
                                   const struct doc_key *k, xmlDocPtr doc, struct xcap_err *err);

/* True when the document path is one the usage serves from the server side only (e.g.
 * rls-services/global/index): clients may read it (if allowed) but never write it. */
bool usage_server_owned(const struct appusage *au, const struct doc_key *k);

/* Default documents (appusage.default_name): the largest operator default accepted. */
#define USAGE_DEFAULT_DOC_MAX (64u * 1024u)
/* Replaces the built-in default document of the role's usage that has one with the file at path
 * (the default_document key), after checking it like a user's PUT of that document (well-formed,
 * schema, constraints). Returns 0, or -1 with a log line (no such usage in this role, unreadable,
 * over USAGE_DEFAULT_DOC_MAX, invalid). Call before threads start. */
int usage_set_default_doc(struct usage *u, const char *path);
/* The document a read of au's default document finds before the user wrote it: the operator's
 * (usage_set_default_doc()), else the row's built-in one; NULL when au has none. Borrowed, valid
 * while u lives. u may be NULL (the built-in one). */
const char *usage_default_doc(const struct usage *u, const struct appusage *au);

#endif
