#include "appusage.h"

#include <string.h>

/* DESIGN §1 ownership, SPEC RL-1, RLS-1, PR-1, OPR-1, PM-1, PC-1. */
static const struct appusage appusage_rows[] = {
    {"resource-lists", "application/resource-lists+xml", "urn:ietf:params:xml:ns:resource-lists",
     ROLE_SHARED_LIST, false},
    {"pres-rules", "application/auth-policy+xml", "urn:ietf:params:xml:ns:common-policy",
     ROLE_PRESENCE, false},
    {"org.openmobilealliance.pres-rules", "application/auth-policy+xml",
     "urn:ietf:params:xml:ns:common-policy", ROLE_PRESENCE, false},
    {"pidf-manipulation", "application/pidf+xml", "urn:ietf:params:xml:ns:pidf", ROLE_PRESENCE,
     false},
    /* icons live in oma_status-icon/<name> (SPEC PC-1) */
    {"org.openmobilealliance.pres-content", "application/vnd.oma.pres-content+xml",
     "urn:oma:xml:prs:pres-content", ROLE_PRESENCE, true},
    {"rls-services", "application/rls-services+xml", "urn:ietf:params:xml:ns:rls-services",
     ROLE_RLS, false},
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
