#include "forward.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "forward_internal.h"

#define RESP_HEADERS_MAX 16
#define RESP_HEADER_VALUE_MAX 8192
#define URL_MAX 16384
/* Connections kept per curl handle (at least the most distinct upstream instances). */
#define FORWARD_MAX_CONNECTS 64
#define PEM_MAX (1u << 20)

static void forward_handle_destroy(void *h)
{
    curl_easy_cleanup(h);
}

static void forward_multi_destroy(void *m)
{
    curl_multi_cleanup(m);
}

static char *forward_dup_opt(const char *s, bool *oom)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *oom = true;
    return d;
}

/* Reads a whole PEM file (at most PEM_MAX bytes) into *out; -1 with the reason in err. */
static int forward_read_pem(const char *path, char **out, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    char *b = malloc(PEM_MAX + 1);
    size_t n = b ? fread(b, 1, PEM_MAX + 1, f) : 0;
    int bad = !b || ferror(f) || n > PEM_MAX || n == 0;
    fclose(f);
    if (bad) {
        snprintf(err, errlen, "%s: %s", path,
                 !b            ? "out of memory"
                 : n > PEM_MAX ? "larger than 1 MiB"
                               : "cannot read it");
        free(b);
        return -1;
    }
    b[n] = '\0';
    *out = b;
    *len = n;
    return 0;
}

/* The PEM certificate and key parse and belong together (the key is the certificate's). */
static int forward_check_pair(const char *cert, size_t cert_len, const char *key, size_t key_len,
                              const char *cert_file, const char *key_file, char *err, size_t errlen)
{
    BIO *cb = BIO_new_mem_buf(cert, (int)cert_len), *kb = BIO_new_mem_buf(key, (int)key_len);
    X509 *x = cb ? PEM_read_bio_X509(cb, NULL, NULL, NULL) : NULL;
    EVP_PKEY *k = kb ? PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL) : NULL;
    int rc = 0;
    if (!x) {
        snprintf(err, errlen, "%s: no PEM certificate", cert_file);
        rc = -1;
    } else if (!k) {
        snprintf(err, errlen, "%s: no PEM private key (an encrypted key is not supported)",
                 key_file);
        rc = -1;
    } else if (X509_check_private_key(x, k) != 1) {
        snprintf(err, errlen, "%s is not the key of the certificate %s", key_file, cert_file);
        rc = -1;
    }
    X509_free(x);
    EVP_PKEY_free(k);
    BIO_free(cb);
    BIO_free(kb);
    return rc;
}

int forward_set_client_cert(struct forward *fw, const char *cert_file, const char *key_file,
                            char *err, size_t errlen)
{
    char *cert = NULL, *key = NULL;
    size_t cert_len = 0, key_len = 0;
    if (!cert_file != !key_file) {
        snprintf(err, errlen, "upstream_cert and upstream_key go together");
        return -1;
    }
    if (cert_file &&
        (forward_read_pem(cert_file, &cert, &cert_len, err, errlen) < 0 ||
         forward_read_pem(key_file, &key, &key_len, err, errlen) < 0 ||
         forward_check_pair(cert, cert_len, key, key_len, cert_file, key_file, err, errlen) < 0)) {
        free(cert);
        if (key)
            OPENSSL_cleanse(key, key_len);
        free(key);
        return -1;
    }
    pthread_mutex_lock(&fw->cred_lock);
    char *old_cert = fw->cert_pem, *old_key = fw->key_pem;
    size_t old_key_len = fw->key_len;
    fw->cert_pem = cert;
    fw->cert_len = cert_len;
    fw->key_pem = key;
    fw->key_len = key_len;
    pthread_mutex_unlock(&fw->cred_lock);
    free(old_cert);
    if (old_key)
        OPENSSL_cleanse(old_key, old_key_len);
    free(old_key);
    return 0;
}

int forward_check_client_cert(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
    char *cert = NULL, *key = NULL;
    size_t cert_len = 0, key_len = 0;
    int rc = forward_read_pem(cert_file, &cert, &cert_len, err, errlen) < 0 ||
                     forward_read_pem(key_file, &key, &key_len, err, errlen) < 0 ||
                     forward_check_pair(cert, cert_len, key, key_len, cert_file, key_file, err,
                                        errlen) < 0
                 ? -1
                 : 0;
    free(cert);
    if (key)
        OPENSSL_cleanse(key, key_len);
    free(key);
    return rc;
}

struct forward *forward_new(const struct forward_options *opts)
{
    if (opts && !opts->cert_file != !opts->key_file)
        return NULL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return NULL;
    struct forward *fw = calloc(1, sizeof *fw);
    if (!fw || pthread_key_create(&fw->handle_key, forward_handle_destroy) != 0) {
        free(fw);
        curl_global_cleanup();
        return NULL;
    }
    if (pthread_key_create(&fw->multi_key, forward_multi_destroy) != 0) {
        pthread_key_delete(fw->handle_key);
        free(fw);
        curl_global_cleanup();
        return NULL;
    }
    pthread_mutex_init(&fw->cred_lock, NULL);
    fw->timeout_ms = opts && opts->timeout_ms ? opts->timeout_ms : 10000;
    fw->connect_timeout_ms =
        opts && opts->connect_timeout_ms ? opts->connect_timeout_ms : fw->timeout_ms;
    fw->max_response = opts && opts->max_response ? opts->max_response : (size_t)16 << 20;
    bool oom = false;
    char err[512];
    if (opts)
        fw->ca_file = forward_dup_opt(opts->ca_file, &oom);
    if (oom ||
        (opts && opts->cert_file &&
         forward_set_client_cert(fw, opts->cert_file, opts->key_file, err, sizeof err) < 0)) {
        forward_free(fw);
        return NULL;
    }
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
    CURLM *m = pthread_getspecific(fw->multi_key);
    if (m) {
        pthread_setspecific(fw->multi_key, NULL);
        curl_multi_cleanup(m);
    }
    pthread_key_delete(fw->handle_key);
    pthread_key_delete(fw->multi_key);
    free(fw->ca_file);
    free(fw->cert_pem);
    if (fw->key_pem)
        OPENSSL_cleanse(fw->key_pem, fw->key_len);
    free(fw->key_pem);
    pthread_mutex_destroy(&fw->cred_lock);
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

/* Retry-After: an XDMS whose database does not answer says 503 and when to come back (RFC 9110
 * §10.2.3); the client must see it through the proxy. */
static bool forward_response_header_relayed(const char *name, size_t len)
{
    static const char *const relayed[] = {"ETag", "Content-Type", "Allow", "Retry-After"};
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

static void forward_headers_clear(struct forward_response *r)
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
    forward_headers_clear(r);
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

/* One request in flight: what curl's callbacks write to and what must outlive the transfer. */

static size_t forward_on_body(char *data, size_t size, size_t n, void *cls)
{
    struct forward_exchange *x = cls;
    /* A short count makes curl stop with CURLE_WRITE_ERROR: the bound on an
     * XDMS answer (RFC 9110 §15.6.3: the proxy answers 502). */
    return buf_append(&x->resp->body, data, size * n) == 0 ? size * n : 0;
}

static size_t forward_on_header(char *line, size_t size, size_t n, void *cls)
{
    struct forward_exchange *x = cls;
    struct forward_response *r = x->resp;
    n *= size;
    if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        forward_headers_clear(r); /* a new response (e.g. after an interim 1xx) */
        return n;
    }
    const char *colon = memchr(line, ':', n);
    if (!colon || !forward_response_header_relayed(line, (size_t)(colon - line)))
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

void forward_set_error(struct forward_response *r, const char *fmt, ...)
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

static CURL *forward_thread_handle(struct forward *fw)
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

static bool forward_has_header(const struct forward_request *rq, const char *name)
{
    for (size_t i = 0; i < rq->n_headers; i++)
        if (strcasecmp(rq->headers[i].name, name) == 0)
            return true;
    return false;
}

static struct curl_slist *forward_build_headers(const struct forward_request *rq, bool with_body,
                                                bool *oom)
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
    if (!forward_has_header(rq, "Accept"))
        suppress[ns++] = "Accept:";
    if (with_body && !forward_has_header(rq, "Content-Type"))
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

static bool forward_target_sendable(const char *target)
{
    if (target[0] != '/')
        return false;
    for (const unsigned char *p = (const unsigned char *)target; *p; p++)
        if (*p <= 0x20 || *p == 0x7f || *p == '#')
            return false;
    return true;
}

/* Sets every option of one exchange on h (a fresh or reset handle). On failure resp->error says
 * why and nothing needs releasing but the exchange (forward_exchange_release). */
enum xcap_status forward_exchange_setup(struct forward *fw, CURL *h, struct forward_exchange *x)
{
    const struct forward_request *rq = x->rq;
    struct forward_response *resp = x->resp;
    forward_headers_clear(resp);
    buf_release(&resp->body);
    buf_init(&resp->body, fw->max_response);
    resp->status = 0;
    resp->unsent = false;
    buf_init(&x->url, URL_MAX);
    x->errbuf[0] = '\0';

    if (!forward_target_sendable(rq->target)) {
        forward_set_error(resp, "request target cannot be forwarded");
        return XCAP_BAD_REQUEST;
    }
    /* "unix:PATH": HTTP over that UNIX-domain socket. The URL then only carries the target;
     * its host names nobody (RFC 9112 §3.2 still wants a Host header, any value serves). */
    bool over_unix = strncmp(rq->base_url, FORWARD_UNIX_PREFIX, strlen(FORWARD_UNIX_PREFIX)) == 0;
    if (buf_printf(&x->url, "%s%s", over_unix ? "http://localhost" : rq->base_url, rq->target) <
        0) {
        forward_set_error(resp, "request target too long");
        return XCAP_URI_TOO_LONG;
    }
    bool head = strcmp(rq->method, "HEAD") == 0;
    bool get = strcmp(rq->method, "GET") == 0;
    bool with_body =
        rq->body_len > 0 || strcmp(rq->method, "PUT") == 0 || strcmp(rq->method, "POST") == 0;
    bool oom;
    x->hdrs = forward_build_headers(rq, with_body, &oom);
    if (oom) {
        forward_set_error(resp, "out of memory");
        return XCAP_INTERNAL;
    }

    curl_easy_setopt(h, CURLOPT_URL, x->url.data);
    /* Reset clears it, so it is set (or cleared) on every exchange; curl keeps connections over
     * different sockets apart in its cache. */
    curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH,
                     over_unix ? rq->base_url + strlen(FORWARD_UNIX_PREFIX) : NULL);
    /* OMA XDM Core §5.2: the node selector and query go unchanged; no dot-segment squashing. */
    curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    /* The XDMSs are reached directly: an http_proxy variable in the environment must not divert
     * XDM-4 traffic (and curl then skips reading the environment on every request). */
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    /* One kept connection per upstream instance and thread: curl's default cache of 5 would
     * close and reopen connections once a proxy routes to more instances than that. */
    curl_easy_setopt(h, CURLOPT_MAXCONNECTS, (long)FORWARD_MAX_CONNECTS);
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    unsigned timeout_ms = rq->timeout_ms ? rq->timeout_ms : fw->timeout_ms;
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(
        h, CURLOPT_CONNECTTIMEOUT_MS,
        (long)(fw->connect_timeout_ms < timeout_ms ? fw->connect_timeout_ms : timeout_ms));
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, x->hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, forward_on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, forward_on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)fw->max_response);
    curl_easy_setopt(h, CURLOPT_PRIVATE, x);
    /* HTTPS upstreams: verified server, optional client certificate (mutual TLS). */
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (fw->ca_file)
        curl_easy_setopt(h, CURLOPT_CAINFO, fw->ca_file);
    /* In memory rather than by file name: a reload swaps them at once (never a new certificate
     * with the old key mid-rotation), and curl reuses a kept-alive connection only for the same
     * blobs, so every exchange after a reload runs on a connection made with the new pair. */
    pthread_mutex_lock(&fw->cred_lock);
    if (fw->cert_pem) {
        struct curl_blob cert = {fw->cert_pem, fw->cert_len, CURL_BLOB_COPY};
        struct curl_blob key = {fw->key_pem, fw->key_len, CURL_BLOB_COPY};
        curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &cert);
        curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
        curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &key);
        curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
    }
    pthread_mutex_unlock(&fw->cred_lock);
    if (head || (get && !with_body)) {
        /* HEAD is fetched as GET: the answer to the client then carries the Content-Length (and
         * Content-Encoding) GET would have (RFC 9110 §9.3.2), and libmicrohttpd drops the body. */
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, rq->method);
        if (with_body) {
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, rq->body ? rq->body : "");
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
        }
    }
    return XCAP_OK;
}

void forward_exchange_release(struct forward_exchange *x)
{
    curl_slist_free_all(x->hdrs);
    x->hdrs = NULL;
    buf_release(&x->url);
}

/* Maps the end of a transfer to the forward_do() result. */
enum xcap_status forward_exchange_finish(CURL *h, struct forward_exchange *x, CURLcode rc)
{
    struct forward_response *resp = x->resp;
    const char *base = x->rq->base_url;
    const char *why = x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);
    if (x->oom) {
        forward_set_error(resp, "out of memory");
        return XCAP_INTERNAL;
    }
    long sent = 0;
    if (rc != CURLE_OK && curl_easy_getinfo(h, CURLINFO_REQUEST_SIZE, &sent) == CURLE_OK &&
        sent == 0)
        resp->unsent = true;
    switch (rc) {
    case CURLE_OK: {
        long code = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
        if (code < 100 || code > 599) {
            forward_set_error(resp, "upstream %s sent no valid status", base);
            return XCAP_UPSTREAM;
        }
        resp->status = (int)code;
        return XCAP_OK;
    }
    case CURLE_OPERATION_TIMEDOUT:
        forward_set_error(resp, "upstream %s did not answer in time: %s", base, why);
        return XCAP_UPSTREAM_TIMEOUT;
    case CURLE_WRITE_ERROR:
    case CURLE_FILESIZE_EXCEEDED:
        forward_set_error(resp, "upstream %s answer too large", base);
        return XCAP_UPSTREAM;
    case CURLE_OUT_OF_MEMORY:
        forward_set_error(resp, "out of memory");
        return XCAP_INTERNAL;
    case CURLE_COULDNT_CONNECT:
        forward_set_error(resp, "upstream %s refused the connection (not running?): %s", base, why);
        return XCAP_UPSTREAM;
    default:
        forward_set_error(resp, "upstream %s unavailable: %s", base, why);
        return XCAP_UPSTREAM;
    }
}

enum xcap_status forward_do(struct forward *fw, const struct forward_request *rq,
                            struct forward_response *resp)
{
    struct forward_exchange x = {.resp = resp, .rq = rq};
    CURL *h = forward_thread_handle(fw);
    if (!h) {
        forward_set_error(resp, "cannot make an HTTP client handle");
        return XCAP_INTERNAL;
    }
    /* Reset keeps the connection cache (curl_easy_reset(3)): only options are cleared. */
    curl_easy_reset(h);
    enum xcap_status st = forward_exchange_setup(fw, h, &x);
    if (st == XCAP_OK) {
        CURLcode rc = curl_easy_perform(h);
        st = forward_exchange_finish(h, &x, rc);
    }
    /* The handle keeps pointers to these until the next reset: clear them now. */
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
    forward_exchange_release(&x);
    return st;
}

static CURLM *forward_thread_multi(struct forward *fw)
{
    CURLM *m = pthread_getspecific(fw->multi_key);
    if (m)
        return m;
    m = curl_multi_init();
    if (m && pthread_setspecific(fw->multi_key, m) != 0) {
        curl_multi_cleanup(m);
        return NULL;
    }
    return m;
}

void forward_many(struct forward *fw, const struct forward_request *rq,
                  struct forward_response *resp, enum xcap_status *st, size_t n)
{
    struct forward_exchange x[FORWARD_MANY_MAX];
    CURL *h[FORWARD_MANY_MAX] = {NULL};
    bool running[FORWARD_MANY_MAX];
    CURLM *m = forward_thread_multi(fw);
    for (size_t i = 0; i < n; i++) {
        if (i >= FORWARD_MANY_MAX) {
            forward_set_error(&resp[i], "too many parallel requests");
            st[i] = XCAP_INTERNAL;
            continue;
        }
        running[i] = false;
        x[i] = (struct forward_exchange){.resp = &resp[i], .rq = &rq[i]};
        if (!m || !(h[i] = curl_easy_init())) {
            forward_set_error(&resp[i], "cannot make an HTTP client handle");
            st[i] = XCAP_INTERNAL;
            continue;
        }
        st[i] = forward_exchange_setup(fw, h[i], &x[i]);
        if (st[i] == XCAP_OK) {
            if (curl_multi_add_handle(m, h[i]) == CURLM_OK) {
                running[i] = true;
            } else {
                forward_set_error(&resp[i], "cannot start the request");
                st[i] = XCAP_INTERNAL;
            }
        }
    }
    /* Every transfer has its own timeout, so this loop ends; the extra bound guards against a
     * curl that stops reporting progress. */
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long limit_ms = (long)fw->timeout_ms * 2 + 1000;
    int still = 1;
    while (m && still > 0) {
        if (curl_multi_perform(m, &still) != CURLM_OK || still == 0)
            break;
        int fds;
        curl_multi_poll(m, NULL, 0, 100, &fds);
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000 > limit_ms)
            break;
    }
    CURLMsg *msg;
    int left;
    while (m && (msg = curl_multi_info_read(m, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct forward_exchange *xp = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&xp);
        size_t i = (size_t)(xp - x);
        if (!xp || i >= n || !running[i])
            continue;
        st[i] = forward_exchange_finish(msg->easy_handle, xp, msg->data.result);
        curl_multi_remove_handle(m, h[i]);
        running[i] = false;
    }
    for (size_t i = 0; i < n && i < FORWARD_MANY_MAX; i++) {
        if (running[i]) {
            curl_multi_remove_handle(m, h[i]);
            forward_set_error(&resp[i], "upstream %s did not answer in time", rq[i].base_url);
            st[i] = XCAP_UPSTREAM_TIMEOUT;
        }
        if (h[i])
            curl_easy_cleanup(h[i]);
        forward_exchange_release(&x[i]);
    }
}
