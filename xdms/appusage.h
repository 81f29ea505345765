/* The application-usage registry: one row per AUID an XDMS serves (RFC 4825 §5). The engine asks
 * it everything usage-specific (MIME type, default namespace, schema, constraints); it knows no
 * HTTP and no storage. */
#ifndef XDM_APPUSAGE_H
#define XDM_APPUSAGE_H

#include <stdbool.h>
#include <stddef.h>

enum xdms_role { ROLE_SHARED_LIST, ROLE_PRESENCE, ROLE_RLS };

struct appusage {
    const char *auid;
    const char *mime; /* the document media type */
    /* The default document namespace (RFC 4825 §5.2) as the usage's own specification sets it:
     * the namespace of unprefixed names in node selectors. */
    const char *default_ns;
    enum xdms_role role; /* the XDMS that owns it */
    bool subdirs;        /* documents may sit in sub-directories of the home directory
                            (RFC 4825 §5.5, SPEC XCAP-URI-4: only where the usage needs them) */
    /* Namespace of the document element when it differs from default_ns (pres-rules documents
     * are common-policy <ruleset>s, RFC 5025 §3), else NULL: see appusage_root_ns(). */
    const char *root_ns;
};

/* Parses "shared-list", "presence", "rls". Returns -1 otherwise. */
int xdms_role_parse(const char *s, enum xdms_role *out);
const char *xdms_role_name(enum xdms_role role);

/* The row for auid if the role serves it, else NULL. xcap-caps is not in the table (the server
 * generates it). */
const struct appusage *appusage_find(enum xdms_role role, const char *auid);
/* Every row of the role, in a stable order; returns the count and sets *rows. */
size_t appusage_list(enum xdms_role role, const struct appusage *const **rows);

/* The namespace of the usage's document element (root_ns, or default_ns when that is NULL). */
const char *appusage_root_ns(const struct appusage *au);

/* Rows of the AUIDs whose documents the servers generate rather than store: "xcap-caps" (RFC 4825
 * §12) and "org.openmobilealliance.xcap-directory" (OMA XDM Core); NULL for any other AUID. Their
 * role field is meaningless (every XDMS and the proxy serve them). */
const struct appusage *appusage_generated(const char *auid);

#endif
