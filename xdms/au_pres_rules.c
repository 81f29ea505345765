/* The presence authorization rules usages, served by the presence XDMS: the IETF pres-rules
 * usage (RFC 5025 §9) and the OMA one that extends it (OMA-TS-Presence_SIMPLE_XDM, "Presence
 * Authorization Rules"). Both documents are common-policy <ruleset>s (RFC 4745). */
#include <stdlib.h>
#include <string.h>

#include "appusage.h"
#include "au_lists.h"
#include "xdoc.h"

#define AU_PRES_RULES_NS_CP "urn:ietf:params:xml:ns:common-policy"
#define AU_PRES_RULES_NS_PR "urn:ietf:params:xml:ns:pres-rules"
#define AU_PRES_RULES_NS_OCP "urn:oma:xml:xdm:common-policy"

/* The <conditions> of rule id (OMA-TS-Presence_SIMPLE_XDM): conditions are not combined, so
 * each kind appears at most once; the members of an external list come from the owner's own
 * resource lists. */
static enum xcap_status au_pres_rules_check_conditions(xmlNodePtr conditions, const char *id,
                                                       const struct appusage_check *c,
                                                       struct xcap_err *err)
{
    static const struct {
        const char *ns, *local;
    } once[] = {
        {AU_PRES_RULES_NS_CP, "identity"},
        {AU_PRES_RULES_NS_OCP, "external-list"},
        {AU_PRES_RULES_NS_OCP, "other-identity"},
        {AU_PRES_RULES_NS_OCP, "anonymous-request"},
    };
    unsigned count[sizeof once / sizeof once[0]] = {0};
    for (xmlNodePtr cond = xdoc_first_child(conditions); cond; cond = xdoc_next(cond)) {
        for (size_t i = 0; i < sizeof once / sizeof once[0]; i++)
            if (xdoc_is(cond, once[i].ns, once[i].local) && ++count[i] > 1)
                return xcap_fail(err, XCAP_CONSTRAINT_FAILURE,
                                 "rule \"%.100s\": at most one <%s> condition per rule", id,
                                 once[i].local);
        if (!xdoc_is(cond, AU_PRES_RULES_NS_OCP, "external-list"))
            continue;
        for (xmlNodePtr e = xdoc_first_child(cond); e; e = xdoc_next(e)) {
            const char *anc =
                xdoc_is(e, AU_PRES_RULES_NS_OCP, "entry") ? xdoc_attr(e, "anc") : NULL;
            char why[160];
            if (anc &&
                !au_lists_ref_ok(anc, AU_LISTS_REF_ANY, "list", c->owner, c->refs, why, sizeof why))
                return xcap_fail(err, XCAP_CONSTRAINT_FAILURE,
                                 "rule \"%.100s\": external-list entry \"%.200s\" %s", id, anc,
                                 why);
        }
    }
    return XCAP_OK;
}

/* OMA-TS-Presence_SIMPLE_XDM, sub-handling: a watcher that is not allowed gets nothing, so a
 * rule that blocks, confirms or polite-blocks carries no transformations. A rule without
 * <sub-handling> is left alone. */
static enum xcap_status au_pres_rules_check_actions(xmlNodePtr actions, xmlNodePtr transformations,
                                                    const char *id, struct xcap_err *err)
{
    xmlNodePtr sh = NULL;
    for (xmlNodePtr a = xdoc_first_child(actions); a && !sh; a = xdoc_next(a))
        if (xdoc_is(a, AU_PRES_RULES_NS_PR, "sub-handling"))
            sh = a;
    if (!sh || !xdoc_first_child(transformations))
        return XCAP_OK;
    char *v = xdoc_text_dup(sh);
    if (!v)
        return xcap_fail(err, XCAP_INTERNAL, "out of memory");
    enum xcap_status st = XCAP_OK;
    if (strcmp(v, "allow") != 0)
        st = xcap_fail(err, XCAP_CONSTRAINT_FAILURE,
                       "rule \"%.100s\": sub-handling is %s, so <transformations> must be empty",
                       id, v);
    free(v);
    return st;
}

static enum xcap_status au_pres_rules_check_rule(xmlNodePtr rule, const struct appusage_check *c,
                                                 struct xcap_err *err)
{
    const char *id = xdoc_attr(rule, "id");
    if (!id)
        id = "?";
    xmlNodePtr transformations = NULL, actions = NULL;
    for (xmlNodePtr part = xdoc_first_child(rule); part; part = xdoc_next(part)) {
        if (xdoc_is(part, AU_PRES_RULES_NS_CP, "actions")) {
            actions = part;
        } else if (xdoc_is(part, AU_PRES_RULES_NS_CP, "transformations")) {
            transformations = part;
        } else if (xdoc_is(part, AU_PRES_RULES_NS_CP, "conditions")) {
            enum xcap_status st = au_pres_rules_check_conditions(part, id, c, err);
            if (st != XCAP_OK)
                return st;
        }
    }
    return au_pres_rules_check_actions(actions, transformations, id, err);
}

static enum xcap_status au_pres_rules_check_oma(const struct appusage_check *c, xmlNodePtr root,
                                                struct xcap_err *err)
{
    for (xmlNodePtr r = xdoc_first_child(root); r; r = xdoc_next(r)) {
        if (!xdoc_is(r, AU_PRES_RULES_NS_CP, "rule"))
            continue;
        enum xcap_status st = au_pres_rules_check_rule(r, c, err);
        if (st != XCAP_OK)
            return st;
    }
    return XCAP_OK;
}

/* The pres-rules namespace is the default one of node selectors, not the document element's:
 * announced with the usage's other namespaces (RFC 4825 §12). */
static const char *const au_pres_rules_namespaces[] = {
    AU_PRES_RULES_NS_PR,
    NULL,
};

/* RFC 5025 §9: the schema says it all. */
const struct appusage au_pres_rules = {
    .auid = "pres-rules",
    .mime = "application/auth-policy+xml",
    /* RFC 5025 §9 (pres-rules usage), "Default Namespace": the pres-rules namespace, although
     * the document is a common-policy <ruleset> (RFC 4745): an unprefixed ~~/ruleset selects
     * nothing, common-policy elements are addressed with a prefix bound by xmlns(). */
    .default_ns = AU_PRES_RULES_NS_PR,
    .role = ROLE_PRESENCE,
    .root_ns = AU_PRES_RULES_NS_CP,
    .root = "ruleset",
    .xsd = "usage-pres-rules.xsd",
    .namespaces = au_pres_rules_namespaces,
};

static const char *const au_pres_rules_oma_namespaces[] = {
    AU_PRES_RULES_NS_PR,
    AU_PRES_RULES_NS_OCP,
    "urn:oma:xml:prs:pres-rules",
    NULL,
};

const struct appusage au_oma_pres_rules = {
    .auid = "org.openmobilealliance.pres-rules",
    .mime = "application/auth-policy+xml",
    /* OMA-TS-Presence_SIMPLE_XDM (Presence Authorization Rules application usage): the same
     * default namespace as the IETF pres-rules usage it extends */
    .default_ns = AU_PRES_RULES_NS_PR,
    .role = ROLE_PRESENCE,
    .root_ns = AU_PRES_RULES_NS_CP,
    .root = "ruleset",
    .xsd = "usage-oma-pres-rules.xsd",
    .namespaces = au_pres_rules_oma_namespaces,
    .check = au_pres_rules_check_oma,
};
