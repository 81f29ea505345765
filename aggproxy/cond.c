#include "cond.h"

#include <stddef.h>
#include <string.h>

/* Walks the comma-separated list; a tag is W/"..." or "...", compared as written with quotes. */
static bool cond_list_has(const char *header, const char *etag, bool weak_ok)
{
    const char *p = header;
    size_t elen = strlen(etag);
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (!*p)
            break;
        if (*p == '*')
            return true;
        bool weak = p[0] == 'W' && p[1] == '/';
        if (weak)
            p += 2;
        size_t len = strcspn(p, ",");
        size_t t = len;
        while (t && (p[t - 1] == ' ' || p[t - 1] == '\t'))
            t--;
        if ((weak_ok || !weak) && t == elen && memcmp(p, etag, elen) == 0)
            return true;
        p += len;
    }
    return false;
}

bool cond_if_match(const char *header, const char *etag)
{
    return cond_list_has(header, etag, false);
}

bool cond_if_none_match(const char *header, const char *etag)
{
    return cond_list_has(header, etag, true);
}
