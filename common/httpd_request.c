/* Requests and responses of the HTTP servers (httpd.h): the request-line check that runs before
 * libmicrohttpd parses anything (the fuzzed part), and the accessors handlers use. */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "httpd.h"
#include "httpd_internal.h"
#include "log.h"

/* RFC 9110 §5.6.2: tchar. */
static bool httpd_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

int httpd_request_line_check(const char *data, size_t len)
{
    size_t i = 0;
    /* RFC 9112 §2.2: empty lines before the request line are ignored. */
    for (;;) {
        if (i < len && data[i] == '\n') {
            i++;
        } else if (i < len && data[i] == '\r') {
            if (i + 1 == len)
                return 0;
            if (data[i + 1] != '\n')
                break;
            i += 2;
        } else {
            break;
        }
    }
    size_t start = i;
    while (i < len && httpd_tchar((unsigned char)data[i]))
        i++;
    if (i == len)
        return 0;
    return i > start && data[i] == ' ' ? 1 : -1;
}

const char *http_request_method(const struct http_request *r)
{
    return r->method;
}

const char *http_request_target(const struct http_request *r)
{
    return r->target;
}

const char *http_request_path(const struct http_request *r)
{
    return r->path;
}

const char *http_request_query(const struct http_request *r)
{
    return r->query;
}

const char *http_request_header(const struct http_request *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

struct httpd_each {
    int (*fn)(void *cls, const char *name, const char *value);
    void *cls;
};

static enum MHD_Result httpd_each_cb(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    struct httpd_each *e = cls;
    return e->fn(e->cls, key, value ? value : "") ? MHD_NO : MHD_YES;
}

void http_request_each_header(const struct http_request *r,
                              int (*fn)(void *cls, const char *name, const char *value), void *cls)
{
    struct httpd_each e = {fn, cls};
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, httpd_each_cb, &e);
}

const char *http_request_body(const struct http_request *r, size_t *len)
{
    *len = r->body.len;
    return r->body.data ? r->body.data : "";
}

const struct sockaddr *http_request_peer(const struct http_request *r, socklen_t *len)
{
    if (r->d->local)
        return NULL;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr)
        return NULL;
    if (len)
        *len = ci->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                      : sizeof(struct sockaddr_in);
    return ci->client_addr;
}

const char *http_request_peer_str(const struct http_request *r)
{
    struct http_request *m = (struct http_request *)r; /* lazily filled cache, same thread */
    if (r->d->local)
        return "unix";
    if (m->peer[0])
        return m->peer;
    const struct sockaddr *sa = http_request_peer(r, NULL);
    if (!sa)
        return "";
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, m->peer, sizeof m->peer);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, m->peer, sizeof m->peer);
    return m->peer;
}

bool http_request_is_local(const struct http_request *r)
{
    return r->d->local;
}

int http_response_header(struct http_response *resp, const char *name, const char *value)
{
    struct http_header *v = realloc(resp->headers, (resp->n_headers + 1) * sizeof *v);
    if (!v)
        return -1;
    resp->headers = v;
    char *n = strdup(name), *val = strdup(value);
    if (!n || !val) {
        free(n);
        free(val);
        return -1;
    }
    v[resp->n_headers++] = (struct http_header){n, val};
    return 0;
}

int http_response_headerf(struct http_response *resp, const char *name, const char *fmt, ...)
{
    char *val;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&val, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    int rc = http_response_header(resp, name, val);
    free(val);
    return rc;
}

const char *http_response_get_header(const struct http_response *resp, const char *name)
{
    for (size_t i = 0; i < resp->n_headers; i++)
        if (strcasecmp(resp->headers[i].name, name) == 0)
            return resp->headers[i].value;
    return NULL;
}

int http_response_body(struct http_response *resp, const void *data, size_t len)
{
    buf_reset(&resp->body);
    return buf_append(&resp->body, data, len);
}

void http_response_text(struct http_response *resp, int status, const char *text)
{
    resp->status = status;
    buf_reset(&resp->body);
    if (buf_puts(&resp->body, text) == 0 && buf_puts(&resp->body, "\n") == 0)
        http_response_header(resp, "Content-Type", "text/plain; charset=utf-8");
}
