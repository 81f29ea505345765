#include "etag.h"

#include <stddef.h>
#include <string.h>

bool etag_list_matches(const char *header, const char *etag, enum etag_compare cmp)
{
    if (!etag)
        return false; /* neither "*" nor any tag names what does not exist */
    size_t elen = strlen(etag);
    if (elen >= 2 && etag[0] == '"' && etag[elen - 1] == '"') {
        etag++;
        elen -= 2;
    }
    const char *p = header;
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
        if (*p != '"') { /* not an entity-tag: skip to the next member */
            p += strcspn(p, ",");
            continue;
        }
        const char *q = strchr(p + 1, '"');
        if (!q)
            break;
        size_t tlen = (size_t)(q - p - 1);
        if ((cmp == ETAG_WEAK || !weak) && tlen == elen && memcmp(p + 1, etag, elen) == 0)
            return true;
        p = q + 1;
    }
    return false;
}
