/* xdmctl's data management: backup, restore, export, import and check of a data directory.
 *
 * ROOT is the directory `tools/xdm run --data` uses: one LMDB environment per process in
 * ROOT/shared-list, ROOT/presence, ROOT/rls, ROOT/ut and ROOT/aggproxy. An XDMS role whose
 * configuration says `store = postgresql` has its documents in the PostgreSQL database its
 * pg_conninfo names instead (struct xdmctl_data_stores); the proxy's users stay in ROOT/aggproxy.
 * Every function prints its report and its errors ("xdmctl: ...") itself and returns the process
 * exit status (0 success, 1 error). A NULL stores means every role on LMDB.
 */
#ifndef XDM_XDMCTL_DATA_H
#define XDM_XDMCTL_DATA_H

#include <stdbool.h>
#include <stddef.h>

#include "store.h"

/* The XDMS roles, in the order of enum xdms_role: shared-list, presence, rls, ut. */
#define XDMCTL_DATA_ROLES 4

/* The store of one XDMS role, as its server's configuration names it. */
struct xdmctl_data_store {
    enum store_backend backend; /* LMDB (ROOT/ROLE) or PostgreSQL */
    char *conninfo;             /* PostgreSQL: pg_conninfo (owned); NULL on LMDB */
    unsigned pg_timeout;        /* PostgreSQL: seconds (pg_timeout) */
};

struct xdmctl_data_stores {
    struct xdmctl_data_store role[XDMCTL_DATA_ROLES];
};

/* Reads store, pg_conninfo and pg_timeout of the XDMS role (shared-list, presence, rls) from
 * sections [xdms] and [ROLE] of config_path, the servers' own file, as the server does (the
 * other keys of the file are not checked here). A role on PostgreSQL without pg_conninfo is an
 * error. Returns 0, or 2 after printing each problem ("xdmctl: FILE:LINE: ..."). */
int xdmctl_data_store_config(const char *config_path, const char *role,
                             struct xdmctl_data_store *out);

/* The stores of the four roles: from config_path, or when it is NULL from root/cluster.conf
 * (what `tools/xdm run --cluster` writes: its databases) or else root/xdm.conf (what `tools/xdm
 * run` writes) when one exists, else LMDB for every role. Returns 0, or 2 after printing the
 * problems. */
int xdmctl_data_stores_load(struct xdmctl_data_stores *out, const char *config_path,
                            const char *root);
void xdmctl_data_stores_release(struct xdmctl_data_stores *s);

/* charging list: prints each charging queue (serving node) of the XDMS role's store and its
 * records, "NODE<TAB>COUNT" a line, nothing when the store has none. charging drain: moves every
 * record of queue node to the end of queue to (new numbers, fields unchanged), 64 a transaction,
 * and prints how many. Returns 0, 1 on a store error, 2 on bad arguments (messages on stderr). */
int xdmctl_charging(const char *cmd, const char *root, const struct xdmctl_data_stores *stores,
                    const char *role, const char *node, const char *to);

/* Copies every environment present under root into dest (created; an existing dest must be an
 * empty directory) while the servers keep running, then writes dest/MANIFEST. Each environment
 * is consistent in itself (one LMDB read transaction); the four are copied one after the other.
 * A role on PostgreSQL is dumped instead with pg_dump (custom format, --no-owner) into
 * dest/ROLE.pgdump: one snapshot of its database, taken while the servers write. */
int xdmctl_data_backup(const char *root, const char *dest, const struct xdmctl_data_stores *stores);

/* Puts the environments of the backup src (with its MANIFEST, sizes checked) under root. Refuses
 * while a process has one of root's environments open, and refuses a root that already holds one
 * of them unless force. Environments the backup does not hold are left alone. A role dumped from
 * PostgreSQL is restored with pg_restore into the database stores names for it (which must be on
 * PostgreSQL); refused when that database already holds documents unless force (then its
 * tables are replaced). */
int xdmctl_data_restore(const char *root, const char *src, bool force,
                        const struct xdmctl_data_stores *stores);

/* Writes the documents of the XDMS stores under root (or only those of the user xui, when not
 * NULL) into dest (created; an existing dest must be empty) as one file per document, at its
 * XCAP document selector (RFC 4825 §6.2) as a relative path, each segment percent-encoded as in a
 * URI (xcap_uri_encode_segment(); a segment starting with '.' gets its dot as %2E), the bytes
 * unchanged. Reads only (each store in one read transaction); the servers may run. */
int xdmctl_data_export(const char *root, const char *dest, const char *xui,
                       const struct xdmctl_data_stores *stores);

/* Reads a tree written by xdmctl_data_export() back into the XDMS stores under root (created
 * when missing): each file is PUT as a whole document at the document selector its path names,
 * through the XDMS engine (the same parsing, schema and constraint validation and change-log
 * record as an HTTP PUT; user quotas are not applied), into the store of the role serving its
 * AUID. The servers must be stopped (refused while a process has one of the LMDB stores open; a
 * PostgreSQL database cannot be tested, and its writes take the store's writer lock). Every
 * refused file is reported (path and reason) and the others are still imported; returns 1 when
 * anything was refused. */
int xdmctl_data_import(const char *root, const char *src, const char *xcap_root,
                       const struct xdmctl_data_stores *stores);

/* Checks the XDMS stores under root, read-only (the servers may run): every document is valid
 * UTF-8, well-formed and valid for its usage (as a PUT would check it); each user's byte count in
 * the quota table equals the sum of its documents' sizes; the newest change-log record of a
 * document matches it (a PUT record carries its current ETag, a DELETE record leaves no
 * document); the RLS indexes match the rls-services documents (every service URI of a user's
 * document is indexed to that document, every index entry belongs to an existing document that
 * has it). Prints one line per problem and a summary line per store; returns 1 when there is a
 * problem. */
int xdmctl_data_check(const char *root, const char *xcap_root,
                      const struct xdmctl_data_stores *stores);

/* Migration from Kamailio's xcap_server: reads the table xcap (columns id, username, domain, doc,
 * doc_type, doc_uri) of db, a SQLite database file or an SQL text dump (mysqldump, pg_dump
 * --inserts or --column-inserts, SQLite .dump; see xdmctl_sqldump.h), writes each row as a file
 * of an export tree (AUID from doc_type, XUI sip:username@domain, document path from doc_uri
 * after the XUI, bytes of doc unchanged) in a temporary directory and imports that with
 * xdmctl_data_import(). Rows that cannot be mapped are reported and skipped. */
int xdmctl_data_import_kamailio(const char *root, const char *db, const char *xcap_root,
                                const struct xdmctl_data_stores *stores);

/* The same for OpenXCAP's xcap table (the same columns; doc_uri is the document path below the
 * user's directory, e.g. "index"; doc_type as OpenXCAP's Storage.app_mapping, which adds OMA
 * pres-content, 1 << 6). */
int xdmctl_data_import_openxcap(const char *root, const char *db, const char *xcap_root,
                                const struct xdmctl_data_stores *stores);

/* The file name for one segment of a document selector into out (NUL-terminated); -1 when it does
 * not fit in outlen. */
int xdmctl_data_segment(const char *seg, size_t len, char *out, size_t outlen);

#endif
