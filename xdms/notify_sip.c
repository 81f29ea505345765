/* The notifier's small SIP decisions (identity, expiry, trust, Accept, mode) and its clocks.
 * Pure functions of their arguments, besides the clocks. */
#include "notify_internal.h" /* before sofia-sip: it sets the magic types of its callbacks */

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sofia-sip/msg_addr.h>
#include <sofia-sip/nta.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/su.h>
#include <sofia-sip/su_tagarg.h>
#include <sofia-sip/su_wait.h>
#include <sofia-sip/tport_tag.h>
#include <sofia-sip/url.h>

#include "buf.h"
#include "log.h"
#include "metrics.h"
#include "store.h"
#include "xcap_uri.h"

/* ------------------------------------------------------------------------------------------ */
/* Small SIP decisions (notify_internal.h)                                                    */

char *notify_identity_parse(const char *value)
{
    if (!value)
        return NULL;
    const char *p = value;
    while (*p == ' ' || *p == '\t')
        p++;
    /* First list item: find '<' outside a quoted display name, before any ','. */
    const char *lt = NULL;
    bool quoted = false;
    for (const char *q = p; *q; q++) {
        if (quoted) {
            if (*q == '\\' && q[1])
                q++;
            else if (*q == '"')
                quoted = false;
            continue;
        }
        if (*q == '"')
            quoted = true;
        else if (*q == '<') {
            lt = q;
            break;
        } else if (*q == ',')
            break;
    }
    if (quoted)
        return NULL;
    const char *uri = lt ? lt + 1 : p;
    const char *end = uri;
    /* In a name-addr the URI ends at '>'; in an addr-spec, ';' starts header parameters. */
    while (*end && *end != '>' && *end != ',' && *end != ' ' && *end != '\t' && (lt || *end != ';'))
        end++;
    if (lt && *end != '>')
        return NULL;
    const char *colon = memchr(uri, ':', (size_t)(end - uri));
    if (!colon || colon == uri)
        return NULL;
    size_t slen = (size_t)(colon - uri);
    char scheme[5];
    if (slen >= sizeof scheme)
        return NULL;
    for (size_t i = 0; i < slen; i++)
        scheme[i] = (char)tolower((unsigned char)uri[i]);
    scheme[slen] = '\0';
    if (strcmp(scheme, "sip") != 0 && strcmp(scheme, "sips") != 0 && strcmp(scheme, "tel") != 0)
        return NULL;
    /* URI parameters and headers are not part of the identity. */
    const char *rest = colon + 1, *rend = rest;
    while (rend < end && *rend != ';' && *rend != '?')
        rend++;
    if (rend == rest)
        return NULL;
    for (const char *q = rest; q < rend; q++)
        if ((unsigned char)*q <= ' ' || *q == '<' || *q == '"' || *q == 0x7f)
            return NULL;
    size_t rlen = (size_t)(rend - rest);
    char *out = malloc(slen + 1 + rlen + 1);
    if (!out)
        return NULL;
    memcpy(out, scheme, slen);
    out[slen] = ':';
    memcpy(out + slen + 1, rest, rlen);
    out[slen + 1 + rlen] = '\0';
    /* The XUI's canonical spelling, as storage keys and watches use it. */
    char *canon = xcap_uri_xui_canonical(out);
    free(out);
    return canon;
}

int notify_expires_decide(const struct notifier_config *cfg, bool present, unsigned long requested,
                          unsigned *out)
{
    unsigned long max = cfg->max_expires ? cfg->max_expires : NOTIFY_DEFAULT_MAX_EXPIRES;
    unsigned long want =
        present ? requested
                : (cfg->default_expires ? cfg->default_expires : NOTIFY_DEFAULT_EXPIRES);
    if (want == 0) {
        *out = 0;
        return 0;
    }
    if (present && cfg->min_expires && want < cfg->min_expires)
        return 423;
    *out = (unsigned)(want > max ? max : want);
    return 0;
}

/* Normalises an address to 16 bytes (IPv4 as IPv4-mapped IPv6). */
static bool notify_sip_addr16(const struct sockaddr *sa, unsigned char out[16])
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (sa->sa_family == AF_INET) {
        memcpy(out, mapped, 12);
        memcpy(out + 12, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
        return true;
    }
    return false;
}

bool notify_peer_trusted(const struct sockaddr *sa, const char *const *trusted)
{
    unsigned char a[16];
    if (!sa || !notify_sip_addr16(sa, a))
        return false;
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    for (size_t i = 0; trusted && trusted[i]; i++) {
        unsigned char t[16];
        struct in_addr a4;
        if (inet_pton(AF_INET, trusted[i], &a4) == 1) {
            memcpy(t, mapped, 12);
            memcpy(t + 12, &a4, 4);
        } else if (inet_pton(AF_INET6, trusted[i], t) != 1) {
            continue;
        }
        if (memcmp(a, t, 16) == 0)
            return true;
    }
    return false;
}

bool notify_identity_is_server(const char *identity, const char *const *servers)
{
    for (size_t i = 0; servers && servers[i]; i++)
        if (xcap_uri_xui_equal(servers[i], identity))
            return true;
    return false;
}

bool notify_accept_allows(const char *const *types, size_t n)
{
    if (n == 0)
        return true;
    for (size_t i = 0; i < n; i++) {
        const char *t = types[i];
        if (t && (strcasecmp(t, NOTIFY_MIME_DIFF) == 0 || strcasecmp(t, "application/*") == 0 ||
                  strcmp(t, "*/*") == 0))
            return true;
    }
    return false;
}

enum notify_mode notify_mode_parse(const char *const *params)
{
    for (const char *const *p = params; p && *p; p++) {
        if (strncasecmp(*p, "diff-processing=", 16) != 0)
            continue;
        const char *v = *p + 16;
        size_t len = strlen(v);
        if (len >= 2 && v[0] == '"' && v[len - 1] == '"') {
            v++;
            len -= 2;
        }
        if (len == 13 && strncasecmp(v, "xcap-patching", 13) == 0)
            return NOTIFY_XCAP_PATCHING;
        if (len == 9 && strncasecmp(v, "aggregate", 9) == 0)
            return NOTIFY_AGGREGATE;
        return NOTIFY_NO_PATCHING;
    }
    return NOTIFY_NO_PATCHING;
}

const char *notify_mode_name(enum notify_mode m)
{
    switch (m) {
    case NOTIFY_NO_PATCHING:
        return "no-patching";
    case NOTIFY_XCAP_PATCHING:
        return "xcap-patching";
    case NOTIFY_AGGREGATE:
        return "aggregate";
    }
    return "no-patching";
}

/* ------------------------------------------------------------------------------------------ */
/* SIP thread                                                                                  */

int64_t notify_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec;
}

int64_t notify_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t notify_wall(void)
{
    return (int64_t)time(NULL);
}
