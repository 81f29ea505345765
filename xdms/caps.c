#include "caps.h"

#include <stddef.h>
#include <string.h>

/* Namespaces each role understands beyond the default document namespaces of its AUIDs
 * (SPEC §8.1). */
static const char *const caps_ns_common[] = {
    "urn:ietf:params:xml:ns:xcap-caps",
    "urn:ietf:params:xml:ns:xcap-error",
    "urn:oma:xml:xdm:xcap-error",
    NULL,
};
static const char *const caps_ns_shared_list[] = {
    "urn:oma:xml:xdm:resource-list:oma-appusage",
    NULL,
};
static const char *const caps_ns_presence[] = {
    "urn:ietf:params:xml:ns:pres-rules", "urn:oma:xml:xdm:common-policy",
    "urn:oma:xml:prs:pres-rules",        "urn:ietf:params:xml:ns:pidf:data-model",
    "urn:ietf:params:xml:ns:pidf:rpid",  NULL,
};
static const char *const caps_ns_rls[] = {
    "urn:ietf:params:xml:ns:resource-lists",
    NULL,
};

static int caps_namespaces(struct buf *out, const char *const *ns)
{
    int rc = 0;
    for (; *ns; ns++)
        rc |= buf_printf(out, "<namespace>%s</namespace>", *ns);
    return rc;
}

int caps_render(enum xdms_role role, struct buf *out)
{
    const struct appusage *const *rows;
    size_t n = appusage_list(role, &rows);
    int rc = buf_puts(
        out,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<xcap-caps xmlns=\"urn:ietf:params:xml:ns:xcap-caps\"><auids><auid>" CAPS_AUID "</auid>");
    for (size_t i = 0; i < n; i++)
        rc |= buf_printf(out, "<auid>%s</auid>", rows[i]->auid);
    /* RFC 4825 §12.2: <extensions> sits between <auids> and <namespaces>. The schema lets it
     * be absent, but clients that validate against §12's text expect it: always there, empty
     * as this server has no extensions. */
    rc |= buf_puts(out, "</auids><extensions/><namespaces>");
    rc |= caps_namespaces(out, caps_ns_common);
    for (size_t i = 0; i < n; i++) {
        /* the namespaces of the documents; two OMA/IETF pres-rules usages share common-policy:
         * list it once (their default namespace, pres-rules, is among the extras) */
        size_t j = 0;
        while (j < i && strcmp(appusage_root_ns(rows[j]), appusage_root_ns(rows[i])) != 0)
            j++;
        if (j == i)
            rc |= buf_printf(out, "<namespace>%s</namespace>", appusage_root_ns(rows[i]));
    }
    const char *const *extra = role == ROLE_SHARED_LIST ? caps_ns_shared_list
                               : role == ROLE_PRESENCE  ? caps_ns_presence
                                                        : caps_ns_rls;
    rc |= caps_namespaces(out, extra);
    rc |= buf_puts(out, "</namespaces></xcap-caps>\n");
    return rc ? -1 : 0;
}
