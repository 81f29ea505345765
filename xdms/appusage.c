#include "appusage.h"

#include <string.h>

#include "xcap_names.h"

/* The rows, each from its family's file. Rows of one role are contiguous, in the order XDMS
 * listings (xcap-caps, the XCAP directory) show them. */
extern const struct appusage au_resource_lists;
extern const struct appusage au_pres_rules, au_oma_pres_rules;
extern const struct appusage au_pidf_manipulation;
extern const struct appusage au_pres_content;
extern const struct appusage au_rls_services;
extern const struct appusage au_simservs;

static const struct appusage *const appusage_table[] = {
    &au_resource_lists,                                          /* shared-list XDMS */
    &au_pres_rules,        &au_oma_pres_rules,                   /* presence XDMS */
    &au_pidf_manipulation, &au_pres_content,   &au_rls_services, /* rls XDMS */
    &au_simservs,                                                /* ut XDMS */
};

#define APPUSAGE_COUNT (sizeof appusage_table / sizeof appusage_table[0])

/* The documents the servers generate. */
static const struct appusage appusage_generated_rows[] = {
    /* RFC 4825 §12 (xcap-caps usage), "Default Namespace" */
    {.auid = XCAP_CAPS_AUID,
     .mime = XCAP_CAPS_MIME,
     .default_ns = XCAP_CAPS_NS,
     .root = "xcap-caps"},
    /* OMA-TS-XDM_Core (XCAP directory usage), "Default Document Namespace" */
    {.auid = XDM_DIRECTORY_AUID,
     .mime = XDM_DIRECTORY_MIME,
     .default_ns = XDM_DIRECTORY_NS,
     .root = "xcap-directory"},
};

int xdms_role_parse(const char *s, enum xdms_role *out)
{
    if (strcmp(s, "shared-list") == 0)
        *out = ROLE_SHARED_LIST;
    else if (strcmp(s, "presence") == 0)
        *out = ROLE_PRESENCE;
    else if (strcmp(s, "rls") == 0)
        *out = ROLE_RLS;
    else if (strcmp(s, "ut") == 0)
        *out = ROLE_UT;
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
    case ROLE_UT:
        return "ut";
    }
    return "?";
}

const struct appusage *appusage_find(enum xdms_role role, const char *auid)
{
    for (size_t i = 0; i < APPUSAGE_COUNT; i++)
        if (appusage_table[i]->role == role && strcmp(appusage_table[i]->auid, auid) == 0)
            return appusage_table[i];
    return NULL;
}

size_t appusage_list(enum xdms_role role, const struct appusage *const **rows)
{
    size_t first = 0, n = 0;
    while (first < APPUSAGE_COUNT && appusage_table[first]->role != role)
        first++;
    while (first + n < APPUSAGE_COUNT && appusage_table[first + n]->role == role)
        n++;
    *rows = appusage_table + first;
    return n;
}

size_t appusage_all(const struct appusage *const **rows)
{
    *rows = appusage_table;
    return APPUSAGE_COUNT;
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

size_t appusage_auids(const char **out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < APPUSAGE_COUNT && n < max; i++)
        out[n++] = appusage_table[i]->auid;
    for (size_t i = 0;
         i < sizeof appusage_generated_rows / sizeof appusage_generated_rows[0] && n < max; i++)
        out[n++] = appusage_generated_rows[i].auid;
    return n;
}
