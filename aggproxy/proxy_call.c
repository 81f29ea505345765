/* Helpers on one request's state in the proxy's pipeline (proxy_internal.h). */
#include "proxy_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void proxy_note(struct proxy_call *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->note, sizeof c->note, fmt, ap);
    va_end(ap);
}

void proxy_ids_clear(struct proxy_call *c)
{
    for (size_t i = 0; i < c->n_ids; i++)
        free(c->ids[i]);
    c->n_ids = 0;
    for (size_t i = 0; i < c->n_auids; i++)
        free(c->auids[i]);
    c->n_auids = 0;
}

struct proxy_call_count {
    const char *name;
    unsigned n;
};

static int proxy_call_count_header(void *cls, const char *name, const char *value)
{
    (void)value;
    struct proxy_call_count *count = cls;
    if (strcasecmp(name, count->name) == 0)
        count->n++;
    return 0;
}

unsigned proxy_header_count(const struct http_request *req, const char *name)
{
    struct proxy_call_count count = {name, 0};
    http_request_each_header(req, proxy_call_count_header, &count);
    return count.n;
}
