/* common/httpd.c over loopback with libcurl as the client: the raw target reaches the handler
 * unescaped, body bounds give 413 before the handler runs, response headers (duplicates too),
 * HEAD, IPv6, the UNIX-domain socket listener, and a clean stop. Raw sockets for the connection
 * bounds: the request-line check, 400 on a malformed line, 408 at the head and body deadlines,
 * the per-address limit. */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <unistd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "httpd.h"
#include "unit.h"

#define MAX_BODY 4096

struct echo_ctx {
    atomic_int calls; /* handler invocations */
};

struct echo_headers {
    struct buf *out;
    int n;
};

static int echo_each_header(void *cls, const char *name, const char *value)
{
    struct echo_headers *h = cls;
    h->n++;
    if (strcasecmp(name, "X-Order") == 0)
        buf_printf(h->out, "order=%s\n", value);
    return 0;
}

/* Echoes the request as "key=value" lines. /dup answers with two X-Dup headers and 201;
 * /text answers through http_response_text(). */
static void echo_handler(void *cls, const struct http_request *req, struct http_response *resp)
{
    struct echo_ctx *ctx = cls;
    atomic_fetch_add(&ctx->calls, 1);
    const char *path = http_request_path(req);
    if (strcmp(path, "/text") == 0) {
        http_response_text(resp, 404, "no such thing");
        return;
    }
    size_t blen = 0;
    const char *body = http_request_body(req, &blen);
    const char *q = http_request_query(req);
    const char *xt = http_request_header(req, "x-test");
    struct buf *b = &resp->body;
    buf_printf(b, "method=%s\n", http_request_method(req));
    buf_printf(b, "target=%s\n", http_request_target(req));
    buf_printf(b, "path=%s\n", path);
    buf_printf(b, "query=%s\n", q ? q : "(none)");
    buf_printf(b, "peer=%s\n", http_request_peer_str(req));
    buf_printf(b, "x-test=%s\n", xt ? xt : "(none)");
    socklen_t slen = 0;
    const struct sockaddr *sa = http_request_peer(req, &slen);
    buf_printf(b, "family=%s\n", !sa ? "none" : sa->sa_family == AF_INET6 ? "v6" : "v4");
    buf_printf(b, "local=%s\n", http_request_is_local(req) ? "yes" : "no");
    struct echo_headers eh = {b, 0};
    http_request_each_header(req, echo_each_header, &eh);
    buf_printf(b, "bodylen=%zu\n", blen);
    buf_append(b, body, blen);
    resp->status = 200;
    http_response_header(resp, "Content-Type", "text/plain");
    if (strcmp(path, "/dup") == 0) {
        resp->status = 201;
        http_response_header(resp, "X-Dup", "a");
        http_response_headerf(resp, "X-Dup", "b-%d", 2);
        http_response_header(resp, "ETag", "\"e1\"");
    }
}

struct reply {
    long code;
    struct buf body;
    struct buf head;
};

static size_t reply_write(char *p, size_t size, size_t n, void *cls)
{
    struct buf *b = cls;
    return buf_append(b, p, size * n) == 0 ? size * n : 0;
}

struct upload {
    size_t left;
};

/* Streams upload->left bytes of 'u' with no known size (curl then sends chunked). */
static size_t upload_read(char *p, size_t size, size_t n, void *cls)
{
    struct upload *u = cls;
    size_t k = size * n < u->left ? size * n : u->left;
    if (k > 700)
        k = 700; /* several chunks */
    memset(p, 'u', k);
    u->left -= k;
    return k;
}

struct req_opts {
    const char *method;
    const char *body;
    size_t body_len;
    bool chunked;     /* stream body_len bytes with Transfer-Encoding: chunked */
    bool no_expect;   /* suppress Expect: 100-continue */
    const char *hdr1; /* extra request header lines */
    const char *hdr2;
    const char *hdr3;
    CURL *reuse;           /* keep-alive handle, or NULL for a fresh one */
    const char *host;      /* default 127.0.0.1 */
    const char *unix_path; /* connect to this UNIX-domain socket instead */
};

static CURLcode http_do(uint16_t port, const char *target, const struct req_opts *o,
                        struct reply *r)
{
    char url[4096];
    const char *host = o->host ? o->host : "127.0.0.1";
    snprintf(url, sizeof url, strchr(host, ':') ? "http://[%s]:%u%s" : "http://%s:%u%s", host,
             (unsigned)port, target);
    CURL *c = o->reuse ? o->reuse : curl_easy_init();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    buf_init(&r->body, 1 << 20);
    buf_init(&r->head, 1 << 16);
    r->code = 0;
    struct curl_slist *hdrs = NULL;
    if (o->hdr1)
        hdrs = curl_slist_append(hdrs, o->hdr1);
    if (o->hdr2)
        hdrs = curl_slist_append(hdrs, o->hdr2);
    if (o->hdr3)
        hdrs = curl_slist_append(hdrs, o->hdr3);
    if (o->no_expect)
        hdrs = curl_slist_append(hdrs, "Expect:");
    struct upload up = {o->body_len};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, o->unix_path);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, reply_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, reply_write);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r->head);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    const char *method = o->method ? o->method : "GET";
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (o->chunked) {
        hdrs = curl_slist_append(hdrs, "Transfer-Encoding: chunked");
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, upload_read);
        curl_easy_setopt(c, CURLOPT_READDATA, &up);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    } else if (o->body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, o->body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->code);
    if (o->reuse) {
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    } else {
        curl_easy_cleanup(c);
    }
    curl_slist_free_all(hdrs);
    return rc;
}

static void reply_release(struct reply *r)
{
    buf_release(&r->body);
    buf_release(&r->head);
}

/* Finds "key=value\n" in an echo body. */
static bool echo_has(const struct reply *r, const char *line)
{
    if (!r->body.data)
        return false;
    size_t n = strlen(line);
    for (const char *p = r->body.data; (p = strstr(p, line)) != NULL; p++)
        if ((p == r->body.data || p[-1] == '\n') && p[n] == '\n')
            return true;
    return false;
}

static int head_count(const struct reply *r, const char *name_colon)
{
    int n = 0;
    size_t len = strlen(name_colon);
    for (const char *p = r->head.data; p && *p;) {
        if (strncasecmp(p, name_colon, len) == 0)
            n++;
        const char *nl = strchr(p, '\n');
        if (!nl)
            break;
        p = nl + 1;
    }
    return n;
}

static struct httpd *start_server(struct echo_ctx *ctx, const char *host, unsigned threads)
{
    struct httpd_config cfg = {
        .host = host,
        .port = 0,
        .threads = threads,
        .max_body = MAX_BODY,
        .max_header = 8192,
        .timeout_s = 5,
    };
    struct httpd *d = NULL;
    atomic_init(&ctx->calls, 0);
    CU_ASSERT_EQUAL_FATAL(httpd_start(&cfg, echo_handler, ctx, &d), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT(httpd_port(d) != 0);
    return d;
}

static void test_raw_target(void)
{
    struct echo_ctx ctx;
    struct httpd *d = start_server(&ctx, "127.0.0.1", 1);
    struct reply r;
    struct req_opts o = {.hdr1 = "X-Test: Mixed Case"};
    const char *target = "/xcap-root/resource-lists/users/sip:a%2Fb@example.com/index/~~/"
                         "resource-lists/list%5B@name=%22f%22%5D?xmlns(a=b%41)+x";
    CU_ASSERT_EQUAL(http_do(httpd_port(d), target, &o, &r), CURLE_OK);
    CU_ASSERT_EQUAL(r.code, 200);
    char line[512];
    snprintf(line, sizeof line, "target=%s", target);
    CU_ASSERT_TRUE(echo_has(&r, line));
    CU_ASSERT_TRUE(echo_has(&r, "path=/xcap-root/resource-lists/users/sip:a%2Fb@example.com/"
                                "index/~~/resource-lists/list%5B@name=%22f%22%5D"));
    CU_ASSERT_TRUE(echo_has(&r, "query=xmlns(a=b%41)+x"));
    CU_ASSERT_TRUE(echo_has(&r, "method=GET"));
    CU_ASSERT_TRUE(echo_has(&r, "peer=127.0.0.1"));
    CU_ASSERT_TRUE(echo_has(&r, "family=v4"));
    CU_ASSERT_TRUE(echo_has(&r, "x-test=Mixed Case"));
    CU_ASSERT_TRUE(echo_has(&r, "bodylen=0"));
    if (!echo_has(&r, line))
        fprintf(stderr, "\n%s\n", r.body.data ? r.body.data : "(no body)");
    reply_release(&r);

    /* no query at all; a lone '?' gives an empty query */
    CU_ASSERT_EQUAL(http_do(httpd_port(d), "/a%5Bb%5D", &o, &r), CURLE_OK);
    CU_ASSERT_TRUE(echo_has(&r, "query=(none)"));
    CU_ASSERT_TRUE(echo_has(&r, "path=/a%5Bb%5D"));
    reply_release(&r);
    CU_ASSERT_EQUAL(http_do(httpd_port(d), "/a?", &o, &r), CURLE_OK);
    CU_ASSERT_TRUE(echo_has(&r, "query="));
    CU_ASSERT_TRUE(echo_has(&r, "path=/a"));
    reply_release(&r);
    CU_ASSERT_EQUAL(atomic_load(&ctx.calls), 3);
    httpd_stop(d);
}

static void test_methods_and_body(void)
{
    struct echo_ctx ctx;
    struct httpd *d = start_server(&ctx, "127.0.0.1", 1);
    struct reply r;
    static const char body[] = "<a>\xC3\xA9\0tail</a>"; /* binary-safe */
    struct req_opts o = {.method = "PUT",
                         .body = body,
                         .body_len = sizeof body - 1,
                         .hdr1 = "X-Order: 1",
                         .hdr2 = "Content-Type: application/xml",
                         .hdr3 = "X-Order: 2"};
    CU_ASSERT_EQUAL(http_do(httpd_port(d), "/doc", &o, &r), CURLE_OK);
    CU_ASSERT_EQUAL(r.code, 200);
    CU_ASSERT_TRUE(echo_has(&r, "method=PUT"));
    char line[64];
    snprintf(line, sizeof line, "bodylen=%zu", sizeof body - 1);
    CU_ASSERT_TRUE(echo_has(&r, line));
    /* the body arrives byte for byte, after the bodylen line */
    const char *at = r.body.data ? strstr(r.body.data, line) : NULL;
    CU_ASSERT_PTR_NOT_NULL_FATAL(at);
    at += strlen(line) + 1;
    CU_ASSERT_EQUAL((size_t)(r.body.data + r.body.len - at), sizeof body - 1);
    CU_ASSERT_EQUAL(memcmp(at, body, sizeof body - 1), 0);
    /* repeated request headers are visited in arrival order */
    const char *o1 = strstr(r.body.data, "order=1\n"), *o2 = strstr(r.body.data, "order=2\n");
    CU_ASSERT(o1 && o2 && o1 < o2);
    reply_release(&r);

    /* a body of exactly the maximum is accepted, chunked or not */
    char *big = malloc(MAX_BODY);
    CU_ASSERT_PTR_NOT_NULL_FATAL(big);
    memset(big, 'b', MAX_BODY);
    struct req_opts full = {.method = "POST", .body = big, .body_len = MAX_BODY};
    CU_ASSERT_EQUAL(http_do(httpd_port(d), "/full", &full, &r), CURLE_OK);
    CU_ASSERT_EQUAL(r.code, 200);
    CU_ASSERT_TRUE(echo_has(&r, "bodylen=4096"));
    reply_release(&r);
    struct req_opts chunk = {.method = "PUT", .chunked = true, .body_len = MAX_BODY};
    CU_ASSERT_EQUAL(http_do(httpd_port(d), "/chunked", &chunk, &r), CURLE_OK);
    CU_ASSERT_EQUAL(r.code, 200);
    CU_ASSERT_TRUE(echo_has(&r, "bodylen=4096"));
    reply_release(&r);
    free(big);

    struct req_opts del = {.method = "DELETE"};
    CU_ASSERT_EQUAL(http_do(httpd_port(d), "/x", &del, &r), CURLE_OK);
    CU_ASSERT_TRUE(echo_has(&r, "method=DELETE"));
    reply_release(&r);
    httpd_stop(d);
}

static void test_too_large(void)
{
    struct echo_ctx ctx;
    struct httpd *d = start_server(&ctx, "127.0.0.1", 1);
    struct reply r;
    char *big = malloc(MAX_BODY + 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(big);
    memset(big, 'x', MAX_BODY + 1);

    /* announced by Content-Length, with and without Expect: 100-continue */
    struct req_opts o = {.method = "PUT", .body = big, .body_len = MAX_BODY + 1};
    CU_ASSERT_EQUAL(http_do(httpd_port(d), "/big", &o, &r), CURLE_OK);
    CU_ASSERT_EQUAL(r.code, 413);
    reply_release(&r);
    o.no_expect = true;
    CURLcode rc = http_do(httpd_port(d), "/big", &o, &r);
    /* the server may close while the body is still being sent; the status must be 413 */
    CU_ASSERT(rc == CURLE_OK || rc == CURLE_SEND_ERROR || rc == CURLE_RECV_ERROR);
    CU_ASSERT_EQUAL(r.code, 413);
    reply_release(&r);

    /* a Content-Length far beyond the bound, without the body behind it */
    struct req_opts huge = {.method = "PUT",
                            .body = "",
                            .body_len = 0,
                            .hdr1 = "Content-Length: 99999999999999",
                            .no_expect = true};
    rc = http_do(httpd_port(d), "/huge", &huge, &r);
    CU_ASSERT_EQUAL(r.code, 413);
    reply_release(&r);

    /* chunked: no length is announced, the bound trips while reading */
    struct req_opts ch = {.method = "PUT", .chunked = true, .body_len = 3 * MAX_BODY};
    rc = http_do(httpd_port(d), "/chunked-big", &ch, &r);
    CU_ASSERT(rc == CURLE_OK || rc == CURLE_SEND_ERROR || rc == CURLE_RECV_ERROR);
    CU_ASSERT_EQUAL(r.code, 413);
    reply_release(&r);

    /* the handler never saw any of them */
    CU_ASSERT_EQUAL(atomic_load(&ctx.calls), 0);

    /* and the server still answers */
    struct req_opts get = {0};
    CU_ASSERT_EQUAL(http_do(httpd_port(d), "/after", &get, &r), CURLE_OK);
    CU_ASSERT_EQUAL(r.code, 200);
    reply_release(&r);
    CU_ASSERT_EQUAL(atomic_load(&ctx.calls), 1);
    free(big);
    httpd_stop(d);
}

static void test_header_block_bound(void)
{
    struct echo_ctx ctx;
    struct httpd *d = start_server(&ctx, "127.0.0.1", 1);
    struct reply r;
    size_t n = 20000;
    char *h = malloc(n + 16);
    CU_ASSERT_PTR_NOT_NULL_FATAL(h);
    memcpy(h, "X-Big: ", 7);
    memset(h + 7, 'h', n);
    h[7 + n] = '\0';
    struct req_opts o = {.hdr1 = h};
    http_do(httpd_port(d), "/", &o, &r);
    CU_ASSERT(r.code == 431 || r.code == 413 || r.code == 414 || r.code == 400);
    CU_ASSERT_EQUAL(atomic_load(&ctx.calls), 0);
    reply_release(&r);
    free(h);
    httpd_stop(d);
}

static void test_response_headers_and_head(void)
{
    struct echo_ctx ctx;
    struct httpd *d = start_server(&ctx, "127.0.0.1", 1);
    struct reply r;
    struct req_opts o = {0};
    CU_ASSERT_EQUAL(http_do(httpd_port(d), "/dup", &o, &r), CURLE_OK);
    CU_ASSERT_EQUAL(r.code, 201);
    CU_ASSERT_EQUAL(head_count(&r, "X-Dup:"), 2);
    const char *a = strstr(r.head.data, "X-Dup: a\r\n");
    const char *b = strstr(r.head.data, "X-Dup: b-2\r\n");
    CU_ASSERT(a && b && a < b);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.head.data, "ETag: \"e1\"\r\n"));
    CU_ASSERT_EQUAL(head_count(&r, "Content-Type:"), 1);
    CU_ASSERT(r.body.len > 0);
    size_t get_len = r.body.len;
    reply_release(&r);

    /* HEAD: same status and headers, no body bytes on the wire */
    struct req_opts head = {.method = "HEAD"};
    CU_ASSERT_EQUAL(http_do(httpd_port(d), "/dup", &head, &r), CURLE_OK);
    CU_ASSERT_EQUAL(r.code, 201);
    CU_ASSERT_EQUAL(r.body.len, 0);
    CU_ASSERT_EQUAL(head_count(&r, "X-Dup:"), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.head.data, "ETag: \"e1\"\r\n"));
    reply_release(&r);
    CU_ASSERT_EQUAL(atomic_load(&ctx.calls), 2);

    /* the same HEAD over a raw keep-alive connection: the next response must start right after
     * the HEAD headers (a stray body would corrupt it) */
    CURL *c = curl_easy_init();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    struct req_opts k1 = {.method = "HEAD", .reuse = c};
    CU_ASSERT_EQUAL(http_do(httpd_port(d), "/dup", &k1, &r), CURLE_OK);
    reply_release(&r);
    curl_easy_setopt(c, CURLOPT_NOBODY, 0L);
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    struct req_opts k2 = {.reuse = c};
    CU_ASSERT_EQUAL(http_do(httpd_port(d), "/dup", &k2, &r), CURLE_OK);
    CU_ASSERT_EQUAL(r.code, 201);
    CU_ASSERT_EQUAL(r.body.len, get_len); /* same echo as the first GET */
    long reused = 0;
    curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &reused);
    CU_ASSERT_EQUAL(reused, 0); /* no new connection was needed */
    reply_release(&r);
    curl_easy_cleanup(c);

    /* http_response_text: status, text/plain, "text\n" */
    CU_ASSERT_EQUAL(http_do(httpd_port(d), "/text", &o, &r), CURLE_OK);
    CU_ASSERT_EQUAL(r.code, 404);
    CU_ASSERT_STRING_EQUAL(r.body.data, "no such thing\n");
    CU_ASSERT_PTR_NOT_NULL(strstr(r.head.data, "Content-Type: text/plain; charset=utf-8\r\n"));
    reply_release(&r);
    httpd_stop(d);
}

static void test_response_helpers(void)
{
    struct http_response resp = {.status = 500};
    buf_init(&resp.body, 1024);
    CU_ASSERT_EQUAL(http_response_header(&resp, "ETag", "\"1\""), 0);
    CU_ASSERT_EQUAL(http_response_header(&resp, "etag", "\"2\""), 0);
    CU_ASSERT_EQUAL(http_response_headerf(&resp, "X-N", "%d-%s", 5, "x"), 0);
    CU_ASSERT_EQUAL(resp.n_headers, 3);
    CU_ASSERT_STRING_EQUAL(http_response_get_header(&resp, "ETAG"), "\"1\"");
    CU_ASSERT_STRING_EQUAL(http_response_get_header(&resp, "x-n"), "5-x");
    CU_ASSERT_PTR_NULL(http_response_get_header(&resp, "X"));
    CU_ASSERT_EQUAL(http_response_body(&resp, "first", 5), 0);
    CU_ASSERT_EQUAL(http_response_body(&resp, "2nd", 3), 0);
    CU_ASSERT_EQUAL(resp.body.len, 3);
    CU_ASSERT_STRING_EQUAL(resp.body.data, "2nd");
    http_response_text(&resp, 403, "go away");
    CU_ASSERT_EQUAL(resp.status, 403);
    CU_ASSERT_STRING_EQUAL(resp.body.data, "go away\n");
    CU_ASSERT_STRING_EQUAL(http_response_get_header(&resp, "content-type"),
                           "text/plain; charset=utf-8");
    for (size_t i = 0; i < resp.n_headers; i++) {
        free(resp.headers[i].name);
        free(resp.headers[i].value);
    }
    free(resp.headers);
    buf_release(&resp.body);
}

static void test_ipv6_and_pool(void)
{
    struct echo_ctx ctx;
    struct httpd *d = start_server(&ctx, "::1", 4);
    struct reply r;
    struct req_opts o = {.host = "::1"};
    for (int i = 0; i < 8; i++) {
        CU_ASSERT_EQUAL(http_do(httpd_port(d), "/v6", &o, &r), CURLE_OK);
        CU_ASSERT_EQUAL(r.code, 200);
        CU_ASSERT_TRUE(echo_has(&r, "peer=::1"));
        CU_ASSERT_TRUE(echo_has(&r, "family=v6"));
        reply_release(&r);
    }
    CU_ASSERT_EQUAL(atomic_load(&ctx.calls), 8);
    httpd_stop(d);
}

static void test_bad_config(void)
{
    struct echo_ctx ctx;
    atomic_init(&ctx.calls, 0);
    struct httpd *d = NULL;
    struct httpd_config cfg = {.host = "localhost", .max_body = 10};
    CU_ASSERT_EQUAL(httpd_start(&cfg, echo_handler, &ctx, &d), -1);
    cfg.host = "127.0.0.1";
    cfg.tls_cert = "/nonexistent/cert.pem";
    cfg.tls_key = "/nonexistent/key.pem";
    CU_ASSERT_EQUAL(httpd_start(&cfg, echo_handler, &ctx, &d), -1);
    /* a port that is already taken */
    struct echo_ctx c2;
    struct httpd *first = start_server(&c2, "127.0.0.1", 1);
    struct httpd_config again = {.host = "127.0.0.1", .port = httpd_port(first), .max_body = 10};
    struct httpd *second = NULL;
    CU_ASSERT_EQUAL(httpd_start(&again, echo_handler, &ctx, &second), -1);
    httpd_stop(first);
    httpd_stop(NULL);
}

/* A socket file left behind as by a crashed server: bound, then closed without unlink. */
static void make_stale_socket(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    CU_ASSERT_FATAL(strlen(path) < sizeof sun.sun_path);
    memcpy(sun.sun_path, path, strlen(path) + 1);
    CU_ASSERT_EQUAL(bind(fd, (struct sockaddr *)&sun, sizeof sun), 0);
    close(fd);
}

static void test_unix_listener(void)
{
    char dir[] = "/tmp/xdm-test-httpd-XXXXXX";
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/s.sock", dir);
    struct echo_ctx ctx;
    atomic_init(&ctx.calls, 0);
    struct httpd_config cfg = {
        .host = "127.0.0.1", .threads = 2, .max_body = MAX_BODY, .unix_path = path};
    struct httpd *d = NULL;
    make_stale_socket(path); /* replaced at start */
    CU_ASSERT_EQUAL_FATAL(httpd_start(&cfg, echo_handler, &ctx, &d), 0);
    struct stat st;
    CU_ASSERT_EQUAL_FATAL(lstat(path, &st), 0);
    CU_ASSERT_TRUE(S_ISSOCK(st.st_mode));
    CU_ASSERT_EQUAL(st.st_mode & 07777, 0600);

    struct reply r;
    struct req_opts ou = {.unix_path = path, .method = "PUT", .body = "abc", .body_len = 3};
    CU_ASSERT_EQUAL(http_do(0, "/x%2Fy?q", &ou, &r), CURLE_OK);
    CU_ASSERT_EQUAL(r.code, 200);
    CU_ASSERT_TRUE(echo_has(&r, "target=/x%2Fy?q"));
    CU_ASSERT_TRUE(echo_has(&r, "peer=unix"));
    CU_ASSERT_TRUE(echo_has(&r, "family=none"));
    CU_ASSERT_TRUE(echo_has(&r, "local=yes"));
    CU_ASSERT_TRUE(echo_has(&r, "bodylen=3"));
    reply_release(&r);
    struct req_opts ot = {0};
    CU_ASSERT_EQUAL(http_do(httpd_port(d), "/tcp", &ot, &r), CURLE_OK);
    CU_ASSERT_TRUE(echo_has(&r, "peer=127.0.0.1"));
    CU_ASSERT_TRUE(echo_has(&r, "local=no"));
    reply_release(&r);

    /* a socket a live server accepts on is never taken over */
    struct httpd *second = NULL;
    CU_ASSERT_EQUAL(httpd_start(&cfg, echo_handler, &ctx, &second), -1);
    struct req_opts og = {.unix_path = path};
    CU_ASSERT_EQUAL(http_do(0, "/still", &og, &r), CURLE_OK);
    CU_ASSERT_TRUE(echo_has(&r, "local=yes"));
    reply_release(&r);
    httpd_stop(d);
    CU_ASSERT_NOT_EQUAL(access(path, F_OK), 0); /* removed at stop */

    /* anything else at the path is left alone */
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs("data", f);
    fclose(f);
    CU_ASSERT_EQUAL(httpd_start(&cfg, echo_handler, &ctx, &second), -1);
    CU_ASSERT_EQUAL(lstat(path, &st), 0);
    CU_ASSERT_TRUE(S_ISREG(st.st_mode) && st.st_size == 4);
    unlink(path);

    /* longer than sun_path */
    char longpath[256];
    memset(longpath, 'a', sizeof longpath - 1);
    longpath[0] = '/';
    longpath[HTTPD_UNIX_PATH_MAX + 1] = '\0';
    cfg.unix_path = longpath;
    CU_ASSERT_EQUAL(httpd_start(&cfg, echo_handler, &ctx, &second), -1);
    rmdir(dir);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void test_clean_stop(void)
{
    struct echo_ctx ctx;
    struct httpd *d = start_server(&ctx, "127.0.0.1", 2);
    uint16_t port = httpd_port(d);
    /* leave a keep-alive connection open across the stop */
    CURL *c = curl_easy_init();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    struct reply r;
    struct req_opts o = {.reuse = c};
    CU_ASSERT_EQUAL(http_do(port, "/before", &o, &r), CURLE_OK);
    CU_ASSERT_EQUAL(r.code, 200);
    reply_release(&r);
    double t0 = now_s();
    httpd_stop(d);
    CU_ASSERT(now_s() - t0 < 3.0);
    /* nothing listens any more */
    struct req_opts fresh = {0};
    CURLcode rc = http_do(port, "/after", &fresh, &r);
    CU_ASSERT_NOT_EQUAL(rc, CURLE_OK);
    CU_ASSERT_EQUAL(r.code, 0);
    reply_release(&r);
    curl_easy_cleanup(c);
    CU_ASSERT_EQUAL(atomic_load(&ctx.calls), 1);

    /* a restart on the same port works at once, although the server closed a connection */
    struct httpd_config cfg = {.host = "127.0.0.1", .port = port, .max_body = 10};
    struct httpd *again = NULL;
    CU_ASSERT_EQUAL_FATAL(httpd_start(&cfg, echo_handler, &ctx, &again), 0);
    CU_ASSERT_EQUAL(httpd_port(again), port);
    CU_ASSERT_EQUAL(http_do(port, "/restarted", &fresh, &r), CURLE_OK);
    CU_ASSERT_EQUAL(r.code, 200);
    reply_release(&r);
    httpd_stop(again);
}

static void test_request_line_check(void)
{
    static const struct {
        const char *in;
        int want;
    } cases[] = {
        {"GET / HTTP/1.1\r\n", 1},
        {"GET ", 1},
        {"\r\nPUT /x", 1},       /* an empty line first is ignored (RFC 9112 §2.2) */
        {"\n\r\n\nDELETE /", 1}, /* several, bare LF too */
        {"M-SEARCH *", 1},
        {"x!#$%&'*+-.^_`|~9 /", 1}, /* every tchar */
        {"", 0},
        {"GE", 0},
        {"\r", 0},
        {"\r\n\r\n", 0},
        {"\r\r\r\n\r\n1", -1},
        {"GARBAGE\r\n\r\n", -1},
        {"GET\r\n", -1},
        {" GET / HTTP/1.1", -1},
        {"GET\t/ HTTP/1.1", -1},
        {"G@T / HTTP/1.1", -1},
        {"\x01\x02", -1},
        {"\xc3\xa9 /", -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got = httpd_request_line_check(cases[i].in, strlen(cases[i].in));
        if (got != cases[i].want)
            fprintf(stderr, "\nrequest line %zu: got %d, want %d\n", i, got, cases[i].want);
        CU_ASSERT_EQUAL(got, cases[i].want);
    }
    /* bytes after a NUL still count: the check is not a string function */
    CU_ASSERT_EQUAL(httpd_request_line_check("\0GET / ", 7), -1);
    CU_ASSERT_EQUAL(httpd_request_line_check("GET / ", 3), 0);
}

static const struct config_key test_httpd_keys[] = {HTTPD_CONFIG_KEYS, {0}};

static void test_config_limits(void)
{
    static const char *const sections[] = {"aggproxy", NULL};
    struct config *cfg = config_new(sections, test_httpd_keys);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
    struct httpd_config hc = {0};
    httpd_config_limits(cfg, &hc);
    CU_ASSERT_EQUAL(hc.max_connections, 4096);
    CU_ASSERT_EQUAL(hc.max_connections_per_ip, 64);
    CU_ASSERT_EQUAL(hc.header_timeout_s, 10);
    CU_ASSERT_EQUAL(hc.body_min_rate, 1024);
    CU_ASSERT_EQUAL(config_set(cfg, "max_connections", "1"), 0);
    CU_ASSERT_EQUAL(config_set(cfg, "max_connections_per_ip", "0"), 0);
    CU_ASSERT_EQUAL(config_set(cfg, "header_timeout", "3600"), 0);
    CU_ASSERT_EQUAL(config_set(cfg, "body_min_rate", "1G"), 0);
    httpd_config_limits(cfg, &hc);
    CU_ASSERT_EQUAL(hc.max_connections, 1);
    CU_ASSERT_EQUAL(hc.max_connections_per_ip, 0);
    CU_ASSERT_EQUAL(hc.header_timeout_s, 3600);
    CU_ASSERT_EQUAL(hc.body_min_rate, 1u << 30);
    /* Out-of-range and malformed values are refused when set, naming the key. */
    static const struct {
        const char *key, *value;
    } bad[] = {
        {"max_connections", "0"},         {"max_connections", "1000001"},
        {"max_connections_per_ip", "-1"}, {"max_connections_per_ip", "1000001"},
        {"header_timeout", "0"},          {"header_timeout", "3601"},
        {"header_timeout", "10s"},        {"body_min_rate", "2G"},
        {"body_min_rate", "fast"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct config *b = config_new(sections, test_httpd_keys);
        CU_ASSERT_PTR_NOT_NULL_FATAL(b);
        int rc = config_set(b, bad[i].key, bad[i].value);
        if (rc != -1)
            fprintf(stderr, "\n%s = %s accepted\n", bad[i].key, bad[i].value);
        CU_ASSERT_EQUAL(rc, -1);
        CU_ASSERT_PTR_NOT_NULL(strstr(config_errors(b), bad[i].key));
        config_free(b);
    }
    config_free(cfg);
}

static struct httpd *start_bounded(struct echo_ctx *ctx, unsigned header_s, uint64_t rate,
                                   unsigned per_ip)
{
    struct httpd_config cfg = {
        .host = "127.0.0.1",
        .threads = 2,
        .max_body = 1 << 20,
        .max_header = 8192,
        .timeout_s = 30,
        .max_connections_per_ip = per_ip,
        .header_timeout_s = header_s,
        .body_min_rate = rate,
    };
    struct httpd *d = NULL;
    atomic_init(&ctx->calls, 0);
    CU_ASSERT_EQUAL_FATAL(httpd_start(&cfg, echo_handler, ctx, &d), 0);
    return d;
}

/* A blocking loopback connection that has sent `first`; -1 on failure. */
static int raw_connect(uint16_t port, const char *first, size_t len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof sin) < 0 ||
        (len && send(fd, first, len, MSG_NOSIGNAL) != (ssize_t)len)) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* Reads until the server closes (or `limit` seconds pass) into out (NUL-terminated); returns the
 * seconds it took, or -1 when the connection was still open at the limit. When drip is set, one
 * byte is sent every 300 ms meanwhile. */
static double raw_read_all(int fd, char *out, size_t outlen, double limit, bool drip)
{
    size_t n = 0;
    double t0 = now_s(), last = t0;
    out[0] = '\0';
    while (now_s() - t0 < limit) {
        if (drip && now_s() - last >= 0.3) {
            last = now_s();
            (void)send(fd, "x", 1, MSG_NOSIGNAL);
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        ssize_t k = recv(fd, out + n, outlen - 1 - n, 0);
        if (k <= 0)
            return now_s() - t0;
        n += (size_t)k;
        out[n] = '\0';
        if (n == outlen - 1)
            return -1;
    }
    return -1;
}

static void test_malformed_request_line(void)
{
    struct echo_ctx ctx;
    struct httpd *d = start_bounded(&ctx, 5, 0, 0);
    static const char bad[] = "\r\r\r\n\r\n1";
    int fd = raw_connect(httpd_port(d), bad, sizeof bad - 1);
    CU_ASSERT_FATAL(fd >= 0);
    char got[1024];
    double took = raw_read_all(fd, got, sizeof got, 3.0, false);
    close(fd);
    CU_ASSERT(took >= 0 && took < 1.0);
    CU_ASSERT_EQUAL(strncmp(got, "HTTP/1.1 400 Bad Request\r\nDate: ", 32), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(got, "\r\nConnection: close\r\nContent-Type: text/plain; "
                                       "charset=utf-8\r\nContent-Length: 23\r\n\r\n"
                                       "malformed request line\n"));
    /* "G@T" would reach the handler through libmicrohttpd; it gets 400 instead, only once */
    static const char at[] = "G@T / HTTP/1.1\r\nHost: a\r\n\r\n";
    fd = raw_connect(httpd_port(d), at, sizeof at - 1);
    CU_ASSERT_FATAL(fd >= 0);
    took = raw_read_all(fd, got, sizeof got, 3.0, false);
    close(fd);
    CU_ASSERT(took >= 0 && took < 1.0);
    CU_ASSERT_EQUAL(strncmp(got, "HTTP/1.1 400 Bad Request\r\n", 26), 0);
    CU_ASSERT_PTR_NULL(strstr(got + 1, "HTTP/1.1"));
    CU_ASSERT_EQUAL(atomic_load(&ctx.calls), 0);
    httpd_stop(d);
}

static void test_head_deadline(void)
{
    struct echo_ctx ctx;
    struct httpd *d = start_bounded(&ctx, 1, 0, 0);
    /* a byte every 300 ms does not move the deadline */
    static const char head[] = "GET /slow HTTP/1.1\r\nHost: a\r\nX-Slow: ";
    int fd = raw_connect(httpd_port(d), head, sizeof head - 1);
    CU_ASSERT_FATAL(fd >= 0);
    char got[1024];
    double took = raw_read_all(fd, got, sizeof got, 4.0, true);
    close(fd);
    if (!(took >= 0.8 && took < 3.0))
        fprintf(stderr, "\nhead deadline: closed after %.2fs\n", took);
    CU_ASSERT(took >= 0.8 && took < 3.0);
    CU_ASSERT_EQUAL(strncmp(got, "HTTP/1.1 408 Request Timeout\r\n", 30), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(got, "\r\n\r\nthe request head did not arrive within 1 s\n"));
    /* no request line at all: accepted once the listener's deferral ends, then closed after the
     * allowance, without an answer */
    fd = raw_connect(httpd_port(d), "", 0);
    CU_ASSERT_FATAL(fd >= 0);
    took = raw_read_all(fd, got, sizeof got, 6.0, false);
    close(fd);
    CU_ASSERT(took >= 0.8 && took < 5.0);
    CU_ASSERT_EQUAL(got[0], '\0');
    /* a complete request is served, and the connection then waits for the next one as long */
    struct reply r;
    struct req_opts o = {0};
    CU_ASSERT_EQUAL(http_do(httpd_port(d), "/fast", &o, &r), CURLE_OK);
    CU_ASSERT_EQUAL(r.code, 200);
    reply_release(&r);
    CU_ASSERT_EQUAL(atomic_load(&ctx.calls), 1);
    httpd_stop(d);
}

static void test_body_rate(void)
{
    struct echo_ctx ctx;
    struct httpd *d = start_bounded(&ctx, 1, 1000, 0);
    /* the head in time, then no body: 408 once the allowance (1 s) is used up */
    static const char head[] = "PUT /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\nab";
    int fd = raw_connect(httpd_port(d), head, sizeof head - 1);
    CU_ASSERT_FATAL(fd >= 0);
    char got[8192];
    double took = raw_read_all(fd, got, sizeof got, 4.0, false);
    close(fd);
    if (!(took >= 0.8 && took < 3.0))
        fprintf(stderr, "\nbody deadline: closed after %.2fs\n", took);
    CU_ASSERT(took >= 0.8 && took < 3.0);
    CU_ASSERT_EQUAL(strncmp(got, "HTTP/1.1 408 Request Timeout\r\n", 30), 0);
    CU_ASSERT_PTR_NOT_NULL(
        strstr(got, "\r\n\r\nthe request body arrived slower than 1000 bytes/s\n"));
    CU_ASSERT_EQUAL(atomic_load(&ctx.calls), 0);
    /* 2000 bytes in 1.6 s (over 1000 bytes/s on average, past the allowance) arrive whole */
    static const char head2[] = "PUT /ok HTTP/1.1\r\nHost: a\r\nContent-Length: 2000\r\n"
                                "Connection: close\r\n\r\n";
    fd = raw_connect(httpd_port(d), head2, sizeof head2 - 1);
    CU_ASSERT_FATAL(fd >= 0);
    char chunk[250];
    memset(chunk, 'b', sizeof chunk);
    for (int i = 0; i < 8; i++) {
        struct timespec pause = {0, 200 * 1000000L};
        nanosleep(&pause, NULL);
        CU_ASSERT_EQUAL(send(fd, chunk, sizeof chunk, MSG_NOSIGNAL), (ssize_t)sizeof chunk);
    }
    took = raw_read_all(fd, got, sizeof got, 3.0, false);
    close(fd);
    CU_ASSERT(took >= 0);
    CU_ASSERT_EQUAL(strncmp(got, "HTTP/1.1 200 OK\r\n", 17), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(got, "bodylen=2000\n"));
    httpd_stop(d);
}

static void test_per_ip_limit(void)
{
    struct echo_ctx ctx;
    struct httpd *d = start_bounded(&ctx, 5, 0, 2);
    static const char head[] = "GET /held HTTP/1.1\r\nHost: a\r\n";
    int held[2];
    for (int i = 0; i < 2; i++) {
        held[i] = raw_connect(httpd_port(d), head, sizeof head - 1);
        CU_ASSERT_FATAL(held[i] >= 0);
    }
    struct timespec pause = {0, 200 * 1000000L};
    nanosleep(&pause, NULL);
    /* the third from the same address is closed at once, without an answer */
    int fd = raw_connect(httpd_port(d), head, sizeof head - 1);
    CU_ASSERT_FATAL(fd >= 0);
    char got[256];
    double took = raw_read_all(fd, got, sizeof got, 2.0, false);
    close(fd);
    CU_ASSERT(took >= 0 && took < 0.5);
    CU_ASSERT_EQUAL(got[0], '\0');
    /* once one of the two closes, a new one is served */
    close(held[0]);
    nanosleep(&pause, NULL);
    struct reply r;
    struct req_opts o = {0};
    CU_ASSERT_EQUAL(http_do(httpd_port(d), "/after", &o, &r), CURLE_OK);
    CU_ASSERT_EQUAL(r.code, 200);
    reply_release(&r);
    close(held[1]);
    httpd_stop(d);
}

static int httpd_suite_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

static int httpd_suite_cleanup(void)
{
    curl_global_cleanup();
    return 0;
}

struct drain_run {
    struct httpd *d;
    unsigned timeout_s;
    size_t left;
    double took;
    atomic_bool done;
};

static void *drain_thread(void *cls)
{
    struct drain_run *r = cls;
    double t0 = now_s();
    r->left = httpd_drain(&r->d, 1, r->timeout_s);
    r->took = now_s() - t0;
    atomic_store(&r->done, true);
    return NULL;
}

static void test_drain(void)
{
    struct echo_ctx ctx;
    struct httpd *d = start_bounded(&ctx, 10, 0, 0);
    uint16_t port = httpd_port(d);
    /* An idle kept-alive connection does not hold the drain; a request whose body is arriving
     * does, until its response is out. */
    int idle = raw_connect(port, NULL, 0);
    const char head[] =
        "PUT /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\n12345";
    int fd = raw_connect(port, head, sizeof head - 1);
    CU_ASSERT_FATAL(idle >= 0 && fd >= 0);
    usleep(200 * 1000);
    struct drain_run run = {.d = d, .timeout_s = 5};
    atomic_init(&run.done, false);
    pthread_t t;
    CU_ASSERT_EQUAL_FATAL(pthread_create(&t, NULL, drain_thread, &run), 0);
    usleep(300 * 1000);
    CU_ASSERT_FALSE(atomic_load(&run.done));
    CU_ASSERT_EQUAL(send(fd, "67890", 5, MSG_NOSIGNAL), 5);
    char out[4096];
    raw_read_all(fd, out, sizeof out, 3, false);
    CU_ASSERT_EQUAL(strncmp(out, "HTTP/1.1 200", 12), 0);
    pthread_join(t, NULL);
    CU_ASSERT_EQUAL(run.left, 0);
    CU_ASSERT(run.took < 3.0);
    close(fd);
    close(idle);
    httpd_stop(d);

    /* A request that never completes holds it for the bound only. */
    d = start_bounded(&ctx, 10, 0, 0);
    fd = raw_connect(httpd_port(d), head, sizeof head - 1);
    CU_ASSERT_FATAL(fd >= 0);
    usleep(200 * 1000);
    double t0 = now_s();
    CU_ASSERT_EQUAL(httpd_drain(&d, 1, 1), 1);
    double took = now_s() - t0;
    CU_ASSERT(took >= 0.9 && took < 2.0);
    httpd_stop(d);
    close(fd);
}

/* Deferred answers: the handler of /defer suspends its request and leaves it to
 * defer_answer_thread, which answers 202 "late" after a pause. */
static const struct http_request *_Atomic deferred_req;

static void defer_handler(void *cls, const struct http_request *req, struct http_response *resp)
{
    (void)cls;
    if (strcmp(http_request_path(req), "/defer") == 0 && http_request_defer(req) == 0) {
        CU_ASSERT(http_request_deferred(req));
        CU_ASSERT_EQUAL(http_request_defer(req), -1); /* once */
        atomic_store(&deferred_req, req);
        return;
    }
    CU_ASSERT_FALSE(http_request_deferred(req));
    http_response_text(resp, 200, "now");
}

static void *defer_answer_thread(void *cls)
{
    (void)cls;
    const struct http_request *req;
    for (int i = 0; i < 500 && !(req = atomic_load(&deferred_req)); i++)
        usleep(10 * 1000);
    if (!req)
        return NULL;
    usleep(500 * 1000);
    struct http_response resp = {0};
    buf_init(&resp.body, SIZE_MAX);
    http_response_text(&resp, 202, "late");
    http_request_answer(req, &resp);
    CU_ASSERT_EQUAL(resp.body.len, 0); /* taken over */
    buf_release(&resp.body);
    return NULL;
}

static void test_deferred_answer(void)
{
    struct httpd_config cfg = {
        .host = "127.0.0.1", .threads = 1, .max_body = 4096, .max_header = 8192, .timeout_s = 30};
    struct httpd *d = NULL;
    CU_ASSERT_EQUAL_FATAL(httpd_start(&cfg, defer_handler, NULL, &d), 0);
    uint16_t port = httpd_port(d);
    atomic_store(&deferred_req, NULL);
    pthread_t t;
    CU_ASSERT_EQUAL_FATAL(pthread_create(&t, NULL, defer_answer_thread, NULL), 0);
    const char req[] = "GET /defer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    int fd = raw_connect(port, req, sizeof req - 1);
    CU_ASSERT_FATAL(fd >= 0);
    /* The only thread is free while the first request waits: another is answered at once. */
    const char now[] = "GET /now HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    usleep(100 * 1000);
    int fd2 = raw_connect(port, now, sizeof now - 1);
    CU_ASSERT_FATAL(fd2 >= 0);
    char out[4096];
    double t0 = now_s();
    raw_read_all(fd2, out, sizeof out, 3, false);
    CU_ASSERT(now_s() - t0 < 0.4);
    CU_ASSERT_EQUAL(strncmp(out, "HTTP/1.1 200", 12), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\r\n\r\nnow\n"));
    /* A deferred request counts as in progress for a drain, until it is answered. */
    CU_ASSERT_EQUAL(httpd_drain(&d, 1, 5), 0);
    raw_read_all(fd, out, sizeof out, 3, false);
    CU_ASSERT_EQUAL(strncmp(out, "HTTP/1.1 202", 12), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\r\n\r\nlate\n"));
    CU_ASSERT(now_s() - t0 >= 0.3);
    pthread_join(t, NULL);
    close(fd);
    close(fd2);
    httpd_stop(d);
}

static void test_set_max_body(void)
{
    struct echo_ctx ctx;
    struct httpd *d = start_bounded(&ctx, 10, 0, 0);
    const char req[] = "PUT /b HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
                       "Connection: close\r\n\r\n1234567890";
    char out[4096];
    int fd = raw_connect(httpd_port(d), req, sizeof req - 1);
    CU_ASSERT_FATAL(fd >= 0);
    raw_read_all(fd, out, sizeof out, 3, false);
    close(fd);
    CU_ASSERT_EQUAL(strncmp(out, "HTTP/1.1 200", 12), 0);
    httpd_set_max_body(d, 4);
    fd = raw_connect(httpd_port(d), req, sizeof req - 1);
    CU_ASSERT_FATAL(fd >= 0);
    raw_read_all(fd, out, sizeof out, 3, false);
    close(fd);
    CU_ASSERT_EQUAL(strncmp(out, "HTTP/1.1 413", 12), 0);
    httpd_stop(d);
}

static CU_TestInfo httpd_tests[] = {
    {"drain: in-flight requests finish, within the bound", test_drain},
    {"largest body replaced while running", test_set_max_body},
    {"deferred answer: thread free meanwhile, drain waits", test_deferred_answer},
    {"raw target reaches the handler", test_raw_target},
    {"methods, body bytes, header order", test_methods_and_body},
    {"413 on oversized bodies", test_too_large},
    {"header block bound", test_header_block_bound},
    {"response headers, duplicates, HEAD", test_response_headers_and_head},
    {"response helpers", test_response_helpers},
    {"IPv6 and a thread pool", test_ipv6_and_pool},
    {"start failures", test_bad_config},
    {"UNIX-domain socket listener", test_unix_listener},
    {"clean stop", test_clean_stop},
    {"connection-bound keys", test_config_limits},
    {"request-line check", test_request_line_check},
    {"400 on a malformed request line", test_malformed_request_line},
    {"408 at the head deadline", test_head_deadline},
    {"408 below the body rate", test_body_rate},
    {"per-address connection limit", test_per_ip_limit},
    CU_TEST_INFO_NULL,
};

int main(void)
{
    CU_SuiteInfo suites[] = {
        {"httpd", httpd_suite_init, httpd_suite_cleanup, NULL, NULL, httpd_tests},
        CU_SUITE_INFO_NULL,
    };
    return unit_run(suites);
}
