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
    const char *mime;       /* the document media type */
    const char *default_ns; /* default document namespace (RFC 4825 §5.2) */
    enum xdms_role role;    /* the XDMS that owns it */
    bool subdirs;           /* documents may sit in sub-directories of the home directory
                               (RFC 4825 §5.5, SPEC XCAP-URI-4: only where the usage needs them) */
};

/* Parses "shared-list", "presence", "rls". Returns -1 otherwise. */
int xdms_role_parse(const char *s, enum xdms_role *out);
const char *xdms_role_name(enum xdms_role role);

/* The row for auid if the role serves it, else NULL. xcap-caps is not in the table (the server
 * generates it). */
const struct appusage *appusage_find(enum xdms_role role, const char *auid);
/* Every row of the role, in a stable order; returns the count and sets *rows. */
size_t appusage_list(enum xdms_role role, const struct appusage *const **rows);

#endif
