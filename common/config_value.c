/* The value parsers of the key types (config_internal.h) and host:port (config.h). A leaf of the
 * configuration code: it calls nothing in config.c or config_args.c, which both call it. */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "config_internal.h"

/* strtoull() skips white space and accepts a sign ("-1" wraps to a huge value); a value must
 * start with a digit. Returns -1 when there is no digit or the number overflows. */
int config_strtou64(const char *v, char **end, unsigned long long *n)
{
    *end = (char *)v;
    if (!isdigit((unsigned char)v[0]))
        return -1;
    errno = 0;
    *n = strtoull(v, end, 10);
    return errno ? -1 : 0;
}

int config_parse_uint(const char *v, uint64_t *out)
{
    char *end;
    unsigned long long n;
    if (config_strtou64(v, &end, &n) < 0 || *end)
        return -1;
    *out = n;
    return 0;
}

int config_parse_size(const char *v, uint64_t *out)
{
    char *end;
    unsigned long long n = 0;
    int bad = config_strtou64(v, &end, &n);
    uint64_t mult = 1;
    if (*end == 'K' || *end == 'k')
        mult = 1024, end++;
    else if (*end == 'M' || *end == 'm')
        mult = 1024 * 1024, end++;
    else if (*end == 'G' || *end == 'g')
        mult = 1024ull * 1024 * 1024, end++;
    if (bad || *end || n > UINT64_MAX / mult)
        return -1;
    *out = n * mult;
    return 0;
}

int config_parse_bool(const char *v, bool *out)
{
    if (!strcasecmp(v, "yes") || !strcasecmp(v, "true") || !strcmp(v, "1") ||
        !strcasecmp(v, "on")) {
        *out = true;
        return 0;
    }
    if (!strcasecmp(v, "no") || !strcasecmp(v, "false") || !strcmp(v, "0") ||
        !strcasecmp(v, "off")) {
        *out = false;
        return 0;
    }
    return -1;
}

int config_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port)
{
    const char *colon;
    const char *h = s;
    size_t hl;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return -1;
        h = s + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return -1;
        hl = (size_t)(colon - s);
    }
    if (hl == 0 || hl >= hostlen)
        return -1;
    char *end;
    unsigned long long p;
    if (config_strtou64(colon + 1, &end, &p) < 0 || *end || p > 65535)
        return -1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (uint16_t)p;
    return 0;
}
