/* server_identity: the asserted identity of an XDMS request and the domains it belongs to
 * (server_identity.h). */
#include "server_identity.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server.h"
#include "xcap_uri.h"

/* Takes the first URI of X-3GPP-Asserted-Identity: "sip:alice@example.com"[, "tel:+1..."]
 * (TS 24.109 §7), unquoted and percent-decoded like an XUI, in its canonical spelling. */
char *server_identity_asserted(const char *h)
{
    if (!h)
        return NULL;
    while (*h == ' ' || *h == '\t')
        h++;
    const char *start = h, *end;
    if (*h == '"') {
        start = h + 1;
        end = strchr(start, '"');
        if (!end)
            return NULL;
    } else if (*h == '<') {
        start = h + 1;
        end = strchr(start, '>');
        if (!end)
            return NULL;
    } else {
        end = start + strcspn(start, ", \t");
    }
    if (end == start)
        return NULL;
    char *decoded = xcap_uri_decode(start, (size_t)(end - start));
    char *canon = decoded ? xcap_uri_xui_canonical(decoded) : NULL;
    free(decoded);
    return canon;
}

/* Whether the sip:/sips: identity's host is one of domains (comma-separated, lower-case). An
 * identity without a host (tel:) belongs to no domain. The identity is canonical: its host is
 * already lower-case (xcap_uri_xui_canonical). */
bool server_identity_in_domains(const char *identity, const char *domains)
{
    if (strncmp(identity, "sip:", 4) != 0 && strncmp(identity, "sips:", 5) != 0)
        return false;
    const char *at = strchr(identity, '@');
    if (!at)
        return false;
    const char *host = at + 1;
    size_t hlen = strcspn(host, ":;?>");
    for (const char *d = domains; *d;) {
        size_t dlen = strcspn(d, ",");
        if (dlen == hlen && strncasecmp(d, host, hlen) == 0)
            return true;
        d += dlen;
        if (*d == ',')
            d++;
    }
    return false;
}
