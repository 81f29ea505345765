#include "appusage.h"

#include <string.h>

/* DESIGN §1 ownership, SPEC RL-1, RLS-1, PR-1, OPR-1, PM-1, PC-1. The default namespace of each
 * row is the one its own specification sets for node selectors. */
static const struct appusage appusage_rows[] = {
    /* RFC 4826 §3.4 (resource-lists usage), "Default Namespace" */
    {"resource-lists", "application/resource-lists+xml", "urn:ietf:params:xml:ns:resource-lists",
     ROLE_SHARED_LIST, false, NULL},
    /* RFC 5025 §9 (pres-rules usage), "Default Namespace": the pres-rules namespace, although
     * the document is a common-policy <ruleset> (RFC 4745): an unprefixed ~~/ruleset selects
     * nothing, common-policy elements are addressed with a prefix bound by xmlns(). */
    {"pres-rules", "application/auth-policy+xml", "urn:ietf:params:xml:ns:pres-rules",
     ROLE_PRESENCE, false, "urn:ietf:params:xml:ns:common-policy"},
    /* OMA-TS-Presence_SIMPLE_XDM (Presence Authorization Rules application usage): the same
     * default namespace as the IETF pres-rules usage it extends */
    {"org.openmobilealliance.pres-rules", "application/auth-policy+xml",
     "urn:ietf:params:xml:ns:pres-rules", ROLE_PRESENCE, false,
     "urn:ietf:params:xml:ns:common-policy"},
    /* RFC 4827 §4 (pidf-manipulation usage), "Default Namespace": PIDF (RFC 3863) */
    {"pidf-manipulation", "application/pidf+xml", "urn:ietf:params:xml:ns:pidf", ROLE_PRESENCE,
     false, NULL},
    /* OMA-TS-Presence_SIMPLE_Content_XDM (pres-content usage), "Default Namespace"; icons live
     * in oma_status-icon/<name> (SPEC PC-1) */
    {"org.openmobilealliance.pres-content", "application/vnd.oma.pres-content+xml",
     "urn:oma:xml:prs:pres-content", ROLE_PRESENCE, true, NULL},
    /* RFC 4826 §4.4 (rls-services usage), "Default Namespace" */
    {"rls-services", "application/rls-services+xml", "urn:ietf:params:xml:ns:rls-services",
     ROLE_RLS, false, NULL},
};

/* The documents the servers generate. */
static const struct appusage appusage_generated_rows[] = {
    /* RFC 4825 §12 (xcap-caps usage), "Default Namespace" */
    {"xcap-caps", "application/xcap-caps+xml", "urn:ietf:params:xml:ns:xcap-caps", ROLE_SHARED_LIST,
     false, NULL},
    /* OMA-TS-XDM_Core (XCAP directory usage), "Default Document Namespace" */
    {"org.openmobilealliance.xcap-directory", "application/vnd.oma.xcap-directory+xml",
     "urn:oma:xml:xdm:xcap-directory", ROLE_SHARED_LIST, false, NULL},
};

#define APPUSAGE_COUNT (sizeof appusage_rows / sizeof appusage_rows[0])

int xdms_role_parse(const char *s, enum xdms_role *out)
{
    if (strcmp(s, "shared-list") == 0)
        *out = ROLE_SHARED_LIST;
    else if (strcmp(s, "presence") == 0)
        *out = ROLE_PRESENCE;
    else if (strcmp(s, "rls") == 0)
        *out = ROLE_RLS;
    else
        return -1;
    return 0;
}

const char *xdms_role_name(enum xdms_role role)
{
    switch (role) {
    case ROLE_SHARED_LIST:
        return "shared-list";
    case ROLE_PRESENCE:
        return "presence";
    case ROLE_RLS:
        return "rls";
    }
    return "?";
}

const struct appusage *appusage_find(enum xdms_role role, const char *auid)
{
    for (size_t i = 0; i < APPUSAGE_COUNT; i++)
        if (appusage_rows[i].role == role && strcmp(appusage_rows[i].auid, auid) == 0)
            return &appusage_rows[i];
    return NULL;
}

size_t appusage_list(enum xdms_role role, const struct appusage *const **rows)
{
    /* Rows of one role are contiguous in the table, in the order above. */
    static const struct appusage *const by_role[][4] = {
        [ROLE_SHARED_LIST] = {&appusage_rows[0]},
        [ROLE_PRESENCE] = {&appusage_rows[1], &appusage_rows[2], &appusage_rows[3],
                           &appusage_rows[4]},
        [ROLE_RLS] = {&appusage_rows[5]},
    };
    static const size_t counts[] = {[ROLE_SHARED_LIST] = 1, [ROLE_PRESENCE] = 4, [ROLE_RLS] = 1};
    *rows = by_role[role];
    return counts[role];
}

const char *appusage_root_ns(const struct appusage *au)
{
    return au->root_ns ? au->root_ns : au->default_ns;
}

const struct appusage *appusage_generated(const char *auid)
{
    for (size_t i = 0; i < sizeof appusage_generated_rows / sizeof appusage_generated_rows[0]; i++)
        if (strcmp(appusage_generated_rows[i].auid, auid) == 0)
            return &appusage_generated_rows[i];
    return NULL;
}
