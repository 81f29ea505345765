#include "caps.h"

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/* Namespaces every XDMS understands besides those of its usages (RFC 4825 §12: xcap-caps
 * itself and the error bodies of §11, with the OMA extension of OMA-TS-XDM_Core). */
static const char *const caps_ns_common[] = {
    XCAP_CAPS_NS,
    XCAP_ERROR_NS,
    XDM_ERROR_NS,
    NULL,
};
static int caps_namespaces(struct buf *out, const char *const *ns)
{
    int rc = 0;
    for (; *ns; ns++)
        rc |= buf_printf(out, "<namespace>%s</namespace>", *ns);
    return rc;
}

/* True when ns is among the extra namespaces of rows[0..i). */
static bool caps_listed(const struct appusage *const *rows, size_t i, const char *ns)
{
    for (size_t j = 0; j < i; j++)
        for (const char *const *p = rows[j]->namespaces; p && *p; p++)
            if (strcmp(*p, ns) == 0)
                return true;
    return false;
}

int caps_render(enum xdms_role role, struct buf *out)
{
    const struct appusage *const *rows;
    size_t n = appusage_list(role, &rows);
    int rc = buf_puts(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                           "<xcap-caps xmlns=\"" XCAP_CAPS_NS "\"><auids><auid>" XCAP_CAPS_AUID
                           "</auid>");
    for (size_t i = 0; i < n; i++)
        rc |= buf_printf(out, "<auid>%s</auid>", rows[i]->auid);
    /* RFC 4825 §12.2: <extensions> sits between <auids> and <namespaces>. The schema lets it
     * be absent, but clients that validate against §12's text expect it: always there, empty
     * as this server has no extensions. */
    rc |= buf_puts(out, "</auids><extensions/><namespaces>");
    rc |= caps_namespaces(out, caps_ns_common);
    for (size_t i = 0; i < n; i++) {
        /* the namespaces of the documents; two OMA/IETF pres-rules usages share common-policy:
         * list it once */
        size_t j = 0;
        while (j < i && strcmp(appusage_root_ns(rows[j]), appusage_root_ns(rows[i])) != 0)
            j++;
        if (j == i)
            rc |= buf_printf(out, "<namespace>%s</namespace>", appusage_root_ns(rows[i]));
    }
    /* then the other namespaces each usage's documents may carry, each once */
    for (size_t i = 0; i < n; i++)
        for (const char *const *ns = rows[i]->namespaces; ns && *ns; ns++)
            if (!caps_listed(rows, i, *ns))
                rc |= buf_printf(out, "<namespace>%s</namespace>", *ns);
    rc |= buf_puts(out, "</namespaces></xcap-caps>\n");
    return rc ? -1 : 0;
}
