#include "forward.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#define RESP_HEADERS_MAX 16
#define RESP_HEADER_VALUE_MAX 8192
#define URL_MAX 16384

struct forward {
    pthread_key_t handle_key; /* this thread's CURL * */
    unsigned timeout_ms;
    size_t max_response;
};

static void handle_destroy(void *h)
{
    curl_easy_cleanup(h);
}

struct forward *forward_new(const struct forward_options *opts)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return NULL;
    struct forward *fw = calloc(1, sizeof *fw);
    if (!fw || pthread_key_create(&fw->handle_key, handle_destroy) != 0) {
        free(fw);
        curl_global_cleanup();
        return NULL;
    }
    fw->timeout_ms = opts && opts->timeout_ms ? opts->timeout_ms : 10000;
    fw->max_response = opts && opts->max_response ? opts->max_response : (size_t)16 << 20;
    return fw;
}

void forward_free(struct forward *fw)
{
    if (!fw)
        return;
    CURL *h = pthread_getspecific(fw->handle_key);
    if (h) {
        pthread_setspecific(fw->handle_key, NULL);
        curl_easy_cleanup(h);
    }
    pthread_key_delete(fw->handle_key);
    free(fw);
    curl_global_cleanup();
}

bool forward_header_relayed(const char *name)
{
    static const char *const relayed[] = {"Content-Type", "If-Match", "If-None-Match", "Accept"};
    for (size_t i = 0; i < sizeof relayed / sizeof relayed[0]; i++)
        if (strcasecmp(name, relayed[i]) == 0)
            return true;
    return false;
}

static bool response_header_relayed(const char *name, size_t len)
{
    static const char *const relayed[] = {"ETag", "Content-Type", "Allow"};
    for (size_t i = 0; i < sizeof relayed / sizeof relayed[0]; i++)
        if (strlen(relayed[i]) == len && strncasecmp(name, relayed[i], len) == 0)
            return true;
    return false;
}

void forward_response_init(struct forward_response *r)
{
    memset(r, 0, sizeof *r);
    buf_init(&r->body, 0);
}

static void headers_clear(struct forward_response *r)
{
    for (size_t i = 0; i < r->n_headers; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->headers);
    r->headers = NULL;
    r->n_headers = 0;
}

void forward_response_release(struct forward_response *r)
{
    headers_clear(r);
    buf_release(&r->body);
    free(r->error);
    memset(r, 0, sizeof *r);
}

const char *forward_response_header(const struct forward_response *r, const char *name)
{
    for (size_t i = 0; i < r->n_headers; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

struct exchange {
    struct forward_response *resp;
    bool oom;
};

static size_t on_body(char *data, size_t size, size_t n, void *cls)
{
    struct exchange *x = cls;
    /* A short count makes curl stop with CURLE_WRITE_ERROR: the bound of SPEC AP-14. */
    return buf_append(&x->resp->body, data, size * n) == 0 ? size * n : 0;
}

static size_t on_header(char *line, size_t size, size_t n, void *cls)
{
    struct exchange *x = cls;
    struct forward_response *r = x->resp;
    n *= size;
    if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        headers_clear(r); /* a new response (e.g. after an interim 1xx) */
        return n;
    }
    const char *colon = memchr(line, ':', n);
    if (!colon || !response_header_relayed(line, (size_t)(colon - line)))
        return n;
    const char *v = colon + 1, *end = line + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if (r->n_headers >= RESP_HEADERS_MAX || (size_t)(end - v) > RESP_HEADER_VALUE_MAX)
        return n;
    struct http_header *hs = realloc(r->headers, (r->n_headers + 1) * sizeof *hs);
    if (!hs) {
        x->oom = true;
        return 0;
    }
    r->headers = hs;
    char *name = strndup(line, (size_t)(colon - line));
    char *value = strndup(v, (size_t)(end - v));
    if (!name || !value) {
        free(name);
        free(value);
        x->oom = true;
        return 0;
    }
    hs[r->n_headers].name = name;
    hs[r->n_headers].value = value;
    r->n_headers++;
    return n;
}

__attribute__((format(printf, 2, 3))) static void set_error(struct forward_response *r,
                                                            const char *fmt, ...)
{
    struct buf b;
    buf_init(&b, 1024);
    va_list ap;
    va_start(ap, fmt);
    int rc = buf_vprintf(&b, fmt, ap);
    va_end(ap);
    free(r->error);
    r->error = rc == 0 ? buf_detach(&b, NULL) : NULL;
    buf_release(&b);
}

static CURL *thread_handle(struct forward *fw)
{
    CURL *h = pthread_getspecific(fw->handle_key);
    if (h)
        return h;
    h = curl_easy_init();
    if (h && pthread_setspecific(fw->handle_key, h) != 0) {
        curl_easy_cleanup(h);
        return NULL;
    }
    return h;
}

static bool has_header(const struct forward_request *rq, const char *name)
{
    for (size_t i = 0; i < rq->n_headers; i++)
        if (strcasecmp(rq->headers[i].name, name) == 0)
            return true;
    return false;
}

static struct curl_slist *build_headers(const struct forward_request *rq, bool with_body, bool *oom)
{
    struct curl_slist *list = NULL;
    struct buf line;
    buf_init(&line, 64 * 1024);
    *oom = false;
    for (size_t i = 0; i < rq->n_headers && !*oom; i++) {
        buf_reset(&line);
        struct curl_slist *next = NULL;
        if (buf_printf(&line, "%s: %s", rq->headers[i].name, rq->headers[i].value) == 0)
            next = curl_slist_append(list, line.data);
        if (!next)
            *oom = true;
        else
            list = next;
    }
    /* "Name:" with no value removes a header curl would add on its own. */
    const char *suppress[3];
    size_t ns = 0;
    suppress[ns++] = "Expect:";
    if (!has_header(rq, "Accept"))
        suppress[ns++] = "Accept:";
    if (with_body && !has_header(rq, "Content-Type"))
        suppress[ns++] = "Content-Type:";
    for (size_t i = 0; i < ns && !*oom; i++) {
        struct curl_slist *next = curl_slist_append(list, suppress[i]);
        if (!next)
            *oom = true;
        else
            list = next;
    }
    buf_release(&line);
    return list;
}

static bool target_sendable(const char *target)
{
    if (target[0] != '/')
        return false;
    for (const unsigned char *p = (const unsigned char *)target; *p; p++)
        if (*p <= 0x20 || *p == 0x7f || *p == '#')
            return false;
    return true;
}

enum xcap_status forward_do(struct forward *fw, const struct forward_request *rq,
                            struct forward_response *resp)
{
    headers_clear(resp);
    buf_release(&resp->body);
    buf_init(&resp->body, fw->max_response);
    resp->status = 0;

    if (!target_sendable(rq->target)) {
        set_error(resp, "request target cannot be forwarded");
        return XCAP_BAD_REQUEST;
    }
    struct buf url;
    buf_init(&url, URL_MAX);
    if (buf_printf(&url, "%s%s", rq->base_url, rq->target) < 0) {
        buf_release(&url);
        set_error(resp, "request target too long");
        return XCAP_URI_TOO_LONG;
    }
    CURL *h = thread_handle(fw);
    if (!h) {
        buf_release(&url);
        set_error(resp, "cannot make an HTTP client handle");
        return XCAP_INTERNAL;
    }
    /* Reset keeps the connection cache (curl_easy_reset(3)): only options are cleared. */
    curl_easy_reset(h);

    bool head = strcmp(rq->method, "HEAD") == 0;
    bool get = strcmp(rq->method, "GET") == 0;
    bool with_body =
        rq->body_len > 0 || strcmp(rq->method, "PUT") == 0 || strcmp(rq->method, "POST") == 0;
    bool oom;
    struct curl_slist *hdrs = build_headers(rq, with_body, &oom);
    if (oom) {
        curl_slist_free_all(hdrs);
        buf_release(&url);
        set_error(resp, "out of memory");
        return XCAP_INTERNAL;
    }

    char errbuf[CURL_ERROR_SIZE];
    errbuf[0] = '\0';
    struct exchange x = {resp, false};
    curl_easy_setopt(h, CURLOPT_URL, url.data);
    /* SPEC AP-7: the node selector and query go unchanged; no dot-segment squashing. */
    curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)fw->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)fw->timeout_ms);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &x);
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)fw->max_response);
    if (head) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (get && !with_body) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, rq->method);
        if (with_body) {
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, rq->body ? rq->body : "");
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
        }
    }

    CURLcode rc = curl_easy_perform(h);
    /* The handle keeps pointers to these until the next reset: clear them now. */
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
    curl_slist_free_all(hdrs);
    buf_release(&url);

    const char *why = errbuf[0] ? errbuf : curl_easy_strerror(rc);
    if (x.oom) {
        set_error(resp, "out of memory");
        return XCAP_INTERNAL;
    }
    switch (rc) {
    case CURLE_OK: {
        long code = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
        if (code < 100 || code > 599) {
            set_error(resp, "upstream %s sent no valid status", rq->base_url);
            return XCAP_UPSTREAM;
        }
        resp->status = (int)code;
        return XCAP_OK;
    }
    case CURLE_OPERATION_TIMEDOUT:
        set_error(resp, "upstream %s did not answer in time: %s", rq->base_url, why);
        return XCAP_UPSTREAM_TIMEOUT;
    case CURLE_WRITE_ERROR:
    case CURLE_FILESIZE_EXCEEDED:
        set_error(resp, "upstream %s answer too large", rq->base_url);
        return XCAP_UPSTREAM;
    case CURLE_OUT_OF_MEMORY:
        set_error(resp, "out of memory");
        return XCAP_INTERNAL;
    default:
        set_error(resp, "upstream %s unavailable: %s", rq->base_url, why);
        return XCAP_UPSTREAM;
    }
}
