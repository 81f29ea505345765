/* The simservs application usage (3GPP TS 24.623; ETSI TS 183 023), served by the ut XDMS: the
 * supplementary-service settings a handset reads and writes over the Ut reference point
 * (communication diversion, barring, identity presentation, communication waiting). Its schema
 * gives the structure (schemas/simservs.xsd); the constraints below are what the service
 * specifications say in prose. A new subscriber's first read gets the operator's default
 * document (default_doc below, or the default_document key). */
#include "au_simservs.h"

#include <stdlib.h>
#include <string.h>

#include "appusage.h"
#include "xdoc.h"

#define AU_SIMSERVS_NS "http://uri.etsi.org/ngn/params/xml/simservs/xcap"
#define AU_SIMSERVS_NS_CP "urn:ietf:params:xml:ns:common-policy"
/* TS 24.623 §6.3 ("Document name"): one document per user. */
#define AU_SIMSERVS_DOC "simservs.xml"
/* TS 24.604 §4.5.2.6.1 (no reply timer): 5 to 180 seconds. */
#define AU_SIMSERVS_TIMER_MIN 5
#define AU_SIMSERVS_TIMER_MAX 180
/* Longest target URI checked (bytes). */
#define AU_SIMSERVS_TARGET_MAX 512

/* The built-in operator default (TS 24.623: the document an operator provisions): every service
 * a handset looks for, all inactive, OIR presentation-not-restricted. Operators replace it with
 * the default_document key. */
static const char au_simservs_default[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<simservs xmlns=\"" AU_SIMSERVS_NS "\" xmlns:cp=\"" AU_SIMSERVS_NS_CP "\">\n"
    "  <communication-diversion active=\"false\">\n"
    "    <NoReplyTimer>20</NoReplyTimer>\n"
    "    <cp:ruleset/>\n"
    "  </communication-diversion>\n"
    "  <incoming-communication-barring active=\"false\">\n"
    "    <cp:ruleset/>\n"
    "  </incoming-communication-barring>\n"
    "  <outgoing-communication-barring active=\"false\">\n"
    "    <cp:ruleset/>\n"
    "  </outgoing-communication-barring>\n"
    "  <originating-identity-presentation active=\"true\"/>\n"
    "  <originating-identity-presentation-restriction active=\"false\">\n"
    "    <default-behaviour>presentation-not-restricted</default-behaviour>\n"
    "  </originating-identity-presentation-restriction>\n"
    "  <terminating-identity-presentation active=\"true\"/>\n"
    "  <terminating-identity-presentation-restriction active=\"false\">\n"
    "    <default-behaviour>presentation-not-restricted</default-behaviour>\n"
    "  </terminating-identity-presentation-restriction>\n"
    "  <communication-waiting active=\"false\"/>\n"
    "</simservs>\n";

/* TS 24.604 (NoReplyTimer): an integer from 5 to 180 seconds. The schema says integer. */
static enum xcap_status au_simservs_timer(xmlNodePtr el, struct xcap_err *err)
{
    char *v = xdoc_text_dup(el);
    if (!v)
        return xcap_fail(err, XCAP_INTERNAL, "out of memory");
    char *end;
    long n = strtol(v, &end, 10);
    while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')
        end++;
    bool ok = *end == '\0' && n >= AU_SIMSERVS_TIMER_MIN && n <= AU_SIMSERVS_TIMER_MAX;
    enum xcap_status st =
        ok ? XCAP_OK
           : xcap_fail(err, XCAP_CONSTRAINT_FAILURE,
                       "NoReplyTimer \"%.40s\" is out of range: %d to %d seconds (TS 24.604)", v,
                       AU_SIMSERVS_TIMER_MIN, AU_SIMSERVS_TIMER_MAX);
    free(v);
    return st;
}

static bool au_simservs_ci_prefix(const char *s, const char *p)
{
    for (; *p; s++, p++)
        if ((*s | 0x20) != *p)
            return false;
    return true;
}

/* RFC 3966 §3 number characters: digits, visual separators; local numbers also hex digits, '*'
 * and '#'. */
static bool au_simservs_phonedigits(const char *s, size_t n, bool global)
{
    size_t digits = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c >= '0' && c <= '9')
            digits++;
        else if (!global && (strchr("*#", c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')))
            digits++;
        else if (!strchr("-.()", c))
            return false;
    }
    return digits > 0;
}

/* Whether target is a form TS 24.604 (forward-to) allows: a SIP or SIPS URI with a host
 * (RFC 3261 §19.1), or a tel URI (RFC 3966 §3): a global number "+digits", or a local number
 * with its phone-context. */
bool au_simservs_target_ok(const char *t)
{
    size_t len = strlen(t);
    if (len == 0 || len > AU_SIMSERVS_TARGET_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)t[i] <= 0x20 || t[i] == 0x7f || strchr("<>\"", t[i]))
            return false;
    if (au_simservs_ci_prefix(t, "sip:") || au_simservs_ci_prefix(t, "sips:")) {
        const char *rest = strchr(t, ':') + 1;
        size_t hp = strcspn(rest, ";?");
        const char *at = memchr(rest, '@', hp);
        const char *host = at ? at + 1 : rest;
        size_t hlen = hp - (size_t)(host - rest);
        return hlen > 0 && (!at || at > rest) && host[0] != ':';
    }
    if (au_simservs_ci_prefix(t, "tel:")) {
        const char *num = t + 4;
        size_t nlen = strcspn(num, ";");
        if (num[0] == '+')
            return au_simservs_phonedigits(num + 1, nlen - 1, true);
        return au_simservs_phonedigits(num, nlen, false) && strstr(num + nlen, ";phone-context=");
    }
    return false;
}

/* The forward-to actions of a ruleset: their targets and timers. */
static enum xcap_status au_simservs_rules(xmlNodePtr ruleset, struct xcap_err *err)
{
    for (xmlNodePtr rule = xdoc_first_child(ruleset); rule; rule = xdoc_next(rule)) {
        for (xmlNodePtr part = xdoc_first_child(rule); part; part = xdoc_next(part)) {
            if (!xdoc_is(part, AU_SIMSERVS_NS_CP, "actions"))
                continue;
            for (xmlNodePtr a = xdoc_first_child(part); a; a = xdoc_next(a)) {
                if (!xdoc_is(a, AU_SIMSERVS_NS, "forward-to"))
                    continue;
                for (xmlNodePtr f = xdoc_first_child(a); f; f = xdoc_next(f)) {
                    enum xcap_status st = XCAP_OK;
                    if (xdoc_is(f, AU_SIMSERVS_NS, "NoReplyTimer")) {
                        st = au_simservs_timer(f, err);
                    } else if (xdoc_is(f, AU_SIMSERVS_NS, "target")) {
                        char *v = xdoc_text_dup(f);
                        if (!v)
                            return xcap_fail(err, XCAP_INTERNAL, "out of memory");
                        if (!au_simservs_target_ok(v))
                            st = xcap_fail(err, XCAP_CONSTRAINT_FAILURE,
                                           "rule \"%.100s\": forward-to target \"%.200s\" is not "
                                           "a SIP URI or a tel URI (TS 24.604)",
                                           xdoc_attr(rule, "id") ? xdoc_attr(rule, "id") : "", v);
                        free(v);
                    }
                    if (st != XCAP_OK)
                        return st;
                }
            }
        }
    }
    return XCAP_OK;
}

static enum xcap_status au_simservs_check(const struct appusage_check *c, xmlNodePtr root,
                                          struct xcap_err *err)
{
    if (strcmp(c->key->path, AU_SIMSERVS_DOC) != 0)
        return xcap_fail(err, XCAP_CONSTRAINT_FAILURE,
                         "the supplementary service settings are the document " AU_SIMSERVS_DOC
                         " (TS 24.623)");
    for (xmlNodePtr svc = xdoc_first_child(root); svc; svc = xdoc_next(svc)) {
        for (xmlNodePtr ch = xdoc_first_child(svc); ch; ch = xdoc_next(ch)) {
            enum xcap_status st = XCAP_OK;
            if (xdoc_is(ch, AU_SIMSERVS_NS, "NoReplyTimer"))
                st = au_simservs_timer(ch, err);
            else if (xdoc_is(ch, AU_SIMSERVS_NS_CP, "ruleset"))
                st = au_simservs_rules(ch, err);
            if (st != XCAP_OK)
                return st;
        }
    }
    return XCAP_OK;
}

/* The common-policy namespace of the rulesets (RFC 4745), announced in xcap-caps. */
static const char *const au_simservs_namespaces[] = {
    AU_SIMSERVS_NS_CP,
    NULL,
};

/* The prefixes TS 24.623 and the service specifications write in their examples, which handsets
 * copy into node selectors without xmlns() (docs/clients.md). */
static const char *const au_simservs_prefixes[] = {
    "cp", AU_SIMSERVS_NS_CP, "ss", AU_SIMSERVS_NS, NULL,
};

const struct appusage au_simservs = {
    .auid = "simservs.ngn.etsi.org",
    .mime = "application/vnd.etsi.simservs+xml",
    /* TS 24.623 §6.2 (simservs usage), "Default namespace" */
    .default_ns = AU_SIMSERVS_NS,
    .role = ROLE_UT,
    .root = "simservs",
    .xsd = "simservs.xsd",
    .namespaces = au_simservs_namespaces,
    .check = au_simservs_check,
    .default_name = AU_SIMSERVS_DOC,
    .default_doc = au_simservs_default,
    /* Handsets send application/vnd.etsi.simservs+xml on element and attribute PUTs
     * (docs/clients.md). */
    .node_doc_type = true,
    .prefixes = au_simservs_prefixes,
};
