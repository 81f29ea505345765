/* The resource-lists application usage (RFC 4826 §3.4), served by the shared-list XDMS (OMA
 * XDM Shared List XDMS). Its constraints are the list rules of au_lists.c. */
#include "appusage.h"
#include "au_lists.h"

/* RFC 4826 §3.4.5 (and the local policy on references, see au_lists_ref_ok()). */
static enum xcap_status au_resource_lists_check(const struct appusage_check *c, xmlNodePtr root,
                                                struct xcap_err *err)
{
    return au_lists_check(root, c->owner, c->refs, err);
}

/* Namespaces of the OMA extensions a resource-lists document may carry (OMA-TS-XDM_Shared_List,
 * "XML Schema"). */
static const char *const au_resource_lists_namespaces[] = {
    "urn:oma:xml:xdm:resource-list:oma-appusage",
    NULL,
};

const struct appusage au_resource_lists = {
    .auid = "resource-lists",
    .mime = "application/resource-lists+xml",
    /* RFC 4826 §3.4 (resource-lists usage), "Default Namespace" */
    .default_ns = AU_LISTS_NS_RL,
    .role = ROLE_SHARED_LIST,
    .root = "resource-lists",
    .xsd = "resource-lists.xsd",
    .namespaces = au_resource_lists_namespaces,
    .check = au_resource_lists_check,
};
