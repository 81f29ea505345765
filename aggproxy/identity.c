#include "identity.h"

#include <ctype.h>
#include <stdbool.h>
#include <string.h>

#include "buf.h"
#include "xcap_uri.h"

int identity_parse(const char *value, char *out, size_t outlen)
{
    if (!value || outlen == 0)
        return -1;
    const char *p = value;
    while (*p == ' ' || *p == '\t')
        p++;
    const char *end = p + strlen(p);
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    char close = '\0';
    if (*p == '"')
        close = '"';
    else if (*p == '<')
        close = '>';
    if (close) {
        if (end - p < 2 || end[-1] != close)
            return -1;
        p++;
        end--;
    }
    size_t len = (size_t)(end - p);
    if (len == 0 || len > IDENTITY_MAX || len >= outlen)
        return -1;
    /* One URI: no whitespace, list separators, quotes, brackets or escapes inside. */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= 0x20 || c == 0x7f || strchr("\"<>\\,", c))
            return -1;
    }
    /* RFC 3986 §3.1 scheme ":" */
    size_t i = 0;
    if (!isalpha((unsigned char)p[0]))
        return -1;
    while (i < len && (isalnum((unsigned char)p[i]) || p[i] == '+' || p[i] == '-' || p[i] == '.'))
        i++;
    if (i >= len - 1 || p[i] != ':')
        return -1;
    memcpy(out, p, len);
    out[len] = '\0';
    return 0;
}

int identity_find(const char *const *ids, size_t n, const char *want)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] && xcap_uri_xui_equal(ids[i], want))
            return (int)i;
    return -1;
}

int identity_quote(const char *uri, struct buf *out)
{
    return buf_printf(out, "\"%s\"", uri);
}
