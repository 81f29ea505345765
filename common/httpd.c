#include "httpd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "httpd_internal.h"
#include "log.h"
#include "metrics.h"

/* libmicrohttpd's message when it closes a connection at one of its limits (daemon.c,
 * internal_add_connection(); the same text since 0.9.x for both limits). */
#define HTTPD_MHD_LIMIT_MSG "Server reached connection limit"

static int64_t httpd_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct httpd_conn *httpd_conn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* Moves c from phase `from` to `to` with a new deadline; false when it is no longer in `from`
 * (the watchdog cut it). The deadline is stored first, so the watchdog never sees the new phase
 * with the old deadline. */
static bool httpd_phase_move(struct httpd_conn *c, int from, int to, int64_t deadline)
{
    if (!c)
        return true;
    atomic_store(&c->deadline_ms, deadline);
    int expected = from;
    return atomic_compare_exchange_strong(&c->phase, &expected, to);
}

static bool httpd_is_cut(const struct httpd_conn *c)
{
    return c && atomic_load(&c->phase) == HTTPD_CUT;
}

static int64_t httpd_head_deadline(const struct httpd *d, int64_t now)
{
    return d->header_ms ? now + d->header_ms : INT64_MAX;
}

/* The body gets the head's allowance plus one second per body_min_rate bytes received (the
 * average rate since the head must stay above body_min_rate once the allowance is used up). */
static int64_t httpd_body_deadline(const struct httpd *d, const struct httpd_conn *c)
{
    if (!d->body_min_rate)
        return INT64_MAX;
    uint64_t grace = d->header_ms ? (uint64_t)d->header_ms : 0;
    uint64_t earned = c->body_bytes > UINT64_MAX / 1000 ? UINT64_MAX / 2
                                                        : c->body_bytes * 1000 / d->body_min_rate;
    uint64_t extra = grace + earned;
    return extra >= (uint64_t)(INT64_MAX - c->body_start_ms) ? INT64_MAX
                                                             : c->body_start_ms + (int64_t)extra;
}

static void *httpd_uri_log(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct httpd *d = cls;
    struct http_request *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->d = d;
    r->conn = conn;
    buf_init(&r->body, d->max_body);
    r->target = strdup(uri ? uri : "");
    if (!r->target) {
        free(r);
        return NULL;
    }
    char *q = strchr(r->target, '?');
    r->path = q ? strndup(r->target, (size_t)(q - r->target)) : strdup(r->target);
    r->query = q ? q + 1 : NULL;
    if (!r->path) {
        free(r->target);
        free(r);
        return NULL;
    }
    struct httpd_conn *c = httpd_conn_of(conn);
    if (c) {
        c->req = r;
        /* The request line is in: the head deadline keeps running from accept (or from the
         * previous response), only what a cut answers changes. */
        httpd_phase_move(c, HTTPD_IDLE, HTTPD_HEAD, atomic_load(&c->deadline_ms));
    }
    return r;
}

static void httpd_response_release(struct http_response *resp);

static void httpd_request_free(struct http_request *r)
{
    if (!r)
        return;
    buf_release(&r->body);
    if (r->deferred)
        httpd_response_release(&r->answer);
    free(r->target);
    free(r->path);
    free(r);
}

static void httpd_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                            enum MHD_RequestTerminationCode toe)
{
    struct httpd *d = cls;
    struct httpd_conn *c = httpd_conn_of(conn);
    if (c) {
        if (c->req == *con_cls)
            c->req = NULL;
        /* A kept-alive connection waits for its next request head from now on. */
        int64_t deadline = httpd_head_deadline(d, httpd_now_ms());
        atomic_store(&c->deadline_ms, deadline);
        int phase = atomic_load(&c->phase);
        while (phase != HTTPD_CUT && !atomic_compare_exchange_weak(&c->phase, &phase, HTTPD_IDLE))
            ;
    }
    httpd_request_free(*con_cls);
    *con_cls = NULL;
}

/* Writes a whole minimal response straight to the socket, for a connection libmicrohttpd will
 * write nothing more on (it is cut, see enum httpd_phase). Best effort: the socket is
 * non-blocking and about to be shut down. Plain HTTP only. */
static void httpd_send_raw(int fd, int status, const char *reason, const char *text)
{
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    if (!gmtime_r(&now, &tm) || !strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm))
        date[0] = '\0';
    char msg[512];
    int n = snprintf(msg, sizeof msg,
                     "HTTP/1.1 %d %s\r\nDate: %s\r\nConnection: close\r\n"
                     "Content-Type: text/plain; charset=utf-8\r\nContent-Length: %zu\r\n\r\n%s\n",
                     status, reason, date, strlen(text) + 1, text);
    if (n > 0 && (size_t)n < sizeof msg &&
        send(fd, msg, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
        log_debug("httpd: cannot write %d to a connection: %s", status, strerror(errno));
}

static const char *httpd_peer_of(struct MHD_Connection *conn, char *buf, size_t len)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    buf[0] = '\0';
    if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ci->client_addr)->sin_addr, buf,
                  (socklen_t)len);
    else if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ci->client_addr)->sin6_addr, buf,
                  (socklen_t)len);
    return buf;
}

/* A new connection: tracked for its deadline, and its first bytes checked (see httpd.h). Runs in
 * the connection's thread before libmicrohttpd has read anything from it. */
static void httpd_conn_started(struct httpd *d, struct MHD_Connection *conn, void **socket_context)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct httpd_conn *c = calloc(1, sizeof *c);
    if (!c || !ci) {
        free(c);
        return; /* untracked: libmicrohttpd's own timeout still applies */
    }
    c->fd = ci->connect_fd;
    metrics_connections_add(1);
    atomic_init(&c->phase, HTTPD_IDLE);
    atomic_init(&c->deadline_ms, httpd_head_deadline(d, httpd_now_ms()));
    pthread_mutex_lock(&d->lock);
    c->next = d->conns;
    if (d->conns)
        d->conns->prev = c;
    d->conns = c;
    pthread_mutex_unlock(&d->lock);
    *socket_context = c;
    if (d->is_tls)
        return;
    char first[256];
    ssize_t n = recv(c->fd, first, sizeof first, MSG_PEEK | MSG_DONTWAIT);
    if (n <= 0 || httpd_request_line_check(first, (size_t)n) >= 0)
        return;
    int phase = HTTPD_IDLE;
    if (!atomic_compare_exchange_strong(&c->phase, &phase, HTTPD_CUT))
        return;
    char peer[INET6_ADDRSTRLEN];
    log_info("httpd: 400 to %s: malformed request line", httpd_peer_of(conn, peer, sizeof peer));
    httpd_send_raw(c->fd, 400, "Bad Request", "malformed request line");
    metrics_count(METRICS_CONN_REFUSED, 1);
    /* libmicrohttpd reads what is queued, then end of stream, and closes the connection. */
    shutdown(c->fd, SHUT_RDWR);
}

static void httpd_conn_closed(struct httpd *d, void **socket_context)
{
    struct httpd_conn *c = *socket_context;
    if (!c)
        return;
    pthread_mutex_lock(&d->lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        d->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    pthread_mutex_unlock(&d->lock);
    metrics_connections_add(-1);
    /* Requests never handed to the access handler get no completion notification. */
    httpd_request_free(c->req);
    free(c);
    *socket_context = NULL;
}

static void httpd_notify_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                                    enum MHD_ConnectionNotificationCode toe)
{
    if (toe == MHD_CONNECTION_NOTIFY_STARTED)
        httpd_conn_started(cls, conn, socket_context);
    else if (toe == MHD_CONNECTION_NOTIFY_CLOSED)
        httpd_conn_closed(cls, socket_context);
}

/* One pass over the connections (d->lock held): those past their deadline are cut. */
static void httpd_watch(struct httpd *d, int64_t now)
{
    for (struct httpd_conn *c = d->conns; c; c = c->next) {
        int phase = atomic_load(&c->phase);
        if (phase > HTTPD_BODY || now < atomic_load(&c->deadline_ms))
            continue;
        if (!atomic_compare_exchange_strong(&c->phase, &phase, HTTPD_CUT))
            continue;
        /* RFC 9110 §15.5.9: 408 when a request was started and did not arrive in time. */
        if (phase == HTTPD_HEAD && !d->is_tls) {
            char text[128];
            snprintf(text, sizeof text, "the request head did not arrive within %lld s",
                     (long long)(d->header_ms / 1000));
            httpd_send_raw(c->fd, 408, "Request Timeout", text);
        } else if (phase == HTTPD_BODY && !d->is_tls) {
            char text[128];
            snprintf(text, sizeof text, "the request body arrived slower than %llu bytes/s",
                     (unsigned long long)d->body_min_rate);
            httpd_send_raw(c->fd, 408, "Request Timeout", text);
        }
        shutdown(c->fd, SHUT_RDWR);
        metrics_count(METRICS_CONN_REFUSED, 1);
        if (phase == HTTPD_BODY)
            d->cut_body++;
        else if (phase == HTTPD_HEAD)
            d->cut_head++;
        else
            d->cut_idle++;
    }
    /* A line or two at most every 5 s, however many connections are cut. */
    if ((d->cut_head || d->cut_body || d->cut_idle) && now - d->cut_logged_ms >= 5000) {
        if (d->cut_head || d->cut_idle)
            log_info("httpd: closed %u connection(s) without a complete request head within "
                     "%lld s (408 to the %u that had sent a request line)",
                     d->cut_head + d->cut_idle, (long long)(d->header_ms / 1000), d->cut_head);
        if (d->cut_body)
            log_info("httpd: 408 to %u connection(s) sending a body slower than %llu bytes/s",
                     d->cut_body, (unsigned long long)d->body_min_rate);
        d->cut_head = d->cut_body = d->cut_idle = 0;
        d->cut_logged_ms = now;
    }
}

static void *httpd_watchdog(void *cls)
{
    struct httpd *d = cls;
    pthread_mutex_lock(&d->lock);
    while (!d->stopping) {
        httpd_watch(d, httpd_now_ms());
        /* Deadlines are kept to within a tenth of a second. */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&d->wake, &d->lock, &ts);
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

/* XCAP needs the path exactly as sent (RFC 4825 §6: each segment and the node selector are
 * decoded separately, and the proxy forwards byte for byte), so libmicrohttpd must not unescape. */
static size_t httpd_no_unescape(void *cls, struct MHD_Connection *c, char *s)
{
    return strlen(s);
}

__attribute__((format(printf, 2, 0))) static void httpd_mhd_log(void *cls, const char *fmt,
                                                                va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    /* libmicrohttpd closes a connection it accepted beyond MHD_OPTION_CONNECTION_LIMIT or
     * MHD_OPTION_PER_IP_CONNECTION_LIMIT before any callback of ours sees it (the accept policy
     * callback runs after those checks); this message, logged for both, is the one trace. */
    if (strstr(msg, HTTPD_MHD_LIMIT_MSG))
        metrics_count(METRICS_CONN_REFUSED, 1);
    log_debug("httpd: %s", msg);
}

static void httpd_response_release(struct http_response *resp)
{
    for (size_t i = 0; i < resp->n_headers; i++) {
        free(resp->headers[i].name);
        free(resp->headers[i].value);
    }
    free(resp->headers);
    buf_release(&resp->body);
}

static enum MHD_Result httpd_send(struct MHD_Connection *conn, struct http_response *resp)
{
    struct MHD_Response *mr = MHD_create_response_from_buffer(
        resp->body.len, resp->body.data ? resp->body.data : (void *)"", MHD_RESPMEM_MUST_COPY);
    if (!mr)
        return MHD_NO;
    for (size_t i = 0; i < resp->n_headers; i++) {
        if (MHD_add_response_header(mr, resp->headers[i].name, resp->headers[i].value) != MHD_YES)
            log_warn("httpd: header %s refused", resp->headers[i].name);
    }
    enum MHD_Result rc = MHD_queue_response(conn, (unsigned)resp->status, mr);
    MHD_destroy_response(mr);
    return rc;
}

static enum MHD_Result httpd_send_simple(struct MHD_Connection *conn, int status, const char *text)
{
    struct http_response resp = {0};
    buf_init(&resp.body, SIZE_MAX);
    http_response_text(&resp, status, text);
    enum MHD_Result rc = httpd_send(conn, &resp);
    httpd_response_release(&resp);
    return rc;
}

static enum MHD_Result httpd_access(void *cls, struct MHD_Connection *conn, const char *url,
                                    const char *method, const char *version,
                                    const char *upload_data, size_t *upload_data_size,
                                    void **con_cls)
{
    struct httpd *d = cls;
    struct http_request *r = *con_cls;
    struct httpd_conn *c = httpd_conn_of(conn);
    if (!r || httpd_is_cut(c))
        return MHD_NO; /* allocation failed in httpd_uri_log, or the watchdog cut it */
    if (r->deferred) { /* resumed: the answer is in (http_request_answer) */
        if (!atomic_load(&r->answered))
            return MHD_YES;
        return httpd_send(conn, &r->answer);
    }
    if (!r->started) {
        r->started = true;
        r->method = method;
        r->conn = conn;
        /* Refuse an announced oversized body before the client sends it (and before
         * libmicrohttpd answers 100-continue). */
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl) {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(cl, &end, 10);
            if (errno || end == cl || *end || n > d->max_body) {
                r->too_large = true;
                if (!httpd_phase_move(c, HTTPD_HEAD, HTTPD_BUSY, INT64_MAX))
                    return MHD_NO;
                return httpd_send_simple(conn, 413, "request body too large");
            }
        }
        if (c) {
            c->body_start_ms = httpd_now_ms();
            c->body_bytes = 0;
        }
        return httpd_phase_move(c, HTTPD_HEAD, HTTPD_BODY, c ? httpd_body_deadline(d, c) : 0)
                   ? MHD_YES
                   : MHD_NO;
    }
    if (*upload_data_size) {
        if (!r->too_large && buf_append(&r->body, upload_data, *upload_data_size) < 0)
            r->too_large = true; /* keep reading to answer cleanly, drop the bytes */
        if (c) {
            c->body_bytes += *upload_data_size;
            atomic_store(&c->deadline_ms, httpd_body_deadline(d, c));
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    /* Already BUSY when a 413 went out at the head. */
    if (!httpd_phase_move(c, HTTPD_BODY, HTTPD_BUSY, INT64_MAX) && httpd_is_cut(c))
        return MHD_NO;
    if (r->too_large)
        return httpd_send_simple(conn, 413, "request body too large");

    struct http_response resp = {.status = 500};
    buf_init(&resp.body, SIZE_MAX);
    d->fn(d->cls, r, &resp);
    if (r->deferred) { /* suspended in the handler; answered from another thread */
        httpd_response_release(&resp);
        return MHD_YES;
    }
    enum MHD_Result rc = httpd_send(conn, &resp);
    httpd_response_release(&resp);
    return rc;
}

int http_request_defer(const struct http_request *req)
{
    struct http_request *r = (struct http_request *)req;
    if (r->deferred || !r->conn)
        return -1;
    /* Suspended before the handler hands the request to another thread, so a resume can never
     * come before the suspend it undoes. */
    MHD_suspend_connection(r->conn);
    r->deferred = true;
    return 0;
}

void http_request_answer(const struct http_request *req, struct http_response *resp)
{
    struct http_request *r = (struct http_request *)req;
    r->answer = *resp;
    *resp = (struct http_response){0};
    buf_init(&resp->body, SIZE_MAX);
    atomic_store(&r->answered, true);
    MHD_resume_connection(r->conn);
}

bool http_request_deferred(const struct http_request *req)
{
    return req->deferred;
}

/* Descriptors kept free for everything else a server opens (store, SIP, upstream connections,
 * logs) when fitting max_connections into the open-file limit. */
#define HTTPD_FD_RESERVE 128

/* Raises the soft open-file limit to the hard one (once per process is enough, repeating is
 * harmless) and returns how many connections fit beside HTTPD_FD_RESERVE. */
static unsigned httpd_fit_connections(unsigned want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return want;
    if (rl.rlim_cur != rl.rlim_max) {
        rlim_t old = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
            log_warn("httpd: cannot raise the open-file limit from %llu to %llu: %s",
                     (unsigned long long)old, (unsigned long long)rl.rlim_max, strerror(errno));
            rl.rlim_cur = old;
        }
    }
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= (rlim_t)want + HTTPD_FD_RESERVE)
        return want;
    unsigned fit = rl.rlim_cur > 2 * HTTPD_FD_RESERVE ? (unsigned)(rl.rlim_cur - HTTPD_FD_RESERVE)
                                                      : (unsigned)(rl.rlim_cur / 2);
    if (fit == 0)
        fit = 1;
    log_warn("httpd: max_connections lowered from %u to %u: the open-file limit is %llu", want, fit,
             (unsigned long long)rl.rlim_cur);
    return fit;
}

void httpd_config_limits(const struct config *cfg, struct httpd_config *hc)
{
    hc->max_connections = (unsigned)config_u64(cfg, "max_connections");
    hc->max_connections_per_ip = (unsigned)config_u64(cfg, "max_connections_per_ip");
    hc->header_timeout_s = (unsigned)config_u64(cfg, "header_timeout");
    hc->body_min_rate = config_u64(cfg, "body_min_rate");
}

static void httpd_free(struct httpd *d)
{
    httpd_tls_free(d->tls);
    free(d->tls_ca_pem);
    free(d->unix_path);
    free(d);
}

/* Starts libmicrohttpd on d: on the address ss (TCP), or on the already listening socket
 * listen_fd (the UNIX-domain side, which takes no TLS, no per-address limit and no deferred
 * accept). Returns 0, or -1 with d's daemon unset. */
int httpd_launch(struct httpd *d, const struct httpd_config *cfg, unsigned flags,
                 struct sockaddr_storage *ss, int listen_fd)
{
    unsigned max_conns = httpd_fit_connections(
        cfg->max_connections ? cfg->max_connections : HTTPD_DEFAULT_MAX_CONNECTIONS);
    d->header_ms = (int64_t)cfg->header_timeout_s * 1000;
    d->body_min_rate = cfg->body_min_rate;
    d->cut_logged_ms = httpd_now_ms() - 5000;

    struct MHD_OptionItem opts[24];
    size_t n = 0;
    /* The logger first, so libmicrohttpd's messages about the other options reach it. */
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)httpd_mhd_log, d};
    if (ss)
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, ss};
    else
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_LISTEN_SOCKET, listen_fd, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)httpd_uri_log, d};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)httpd_completed, d};
    opts[n++] =
        (struct MHD_OptionItem){MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)httpd_notify_connection, d};
    opts[n++] =
        (struct MHD_OptionItem){MHD_OPTION_UNESCAPE_CALLBACK, (intptr_t)httpd_no_unescape, d};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, (intptr_t)max_conns, NULL};
    /* libmicrohttpd's per-address limit refuses connections without an IP address: never on the
     * UNIX-domain side, whose clients all share one "address". */
    if (ss && cfg->max_connections_per_ip)
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                                            (intptr_t)cfg->max_connections_per_ip, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT,
                                        (intptr_t)(cfg->timeout_s ? cfg->timeout_s : 30), NULL};
    opts[n++] =
        (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                                (intptr_t)(cfg->max_header ? cfg->max_header : 65536), NULL};
    /* MHD_OPTION_LISTENING_ADDRESS_REUSE is left unset on purpose: 1 sets SO_REUSEPORT (a second
     * server on a busy port would start and silently take half of the connections), 0 drops
     * SO_REUSEADDR (a restart fails while old connections sit in TIME_WAIT). Unset, libmicrohttpd
     * uses SO_REUSEADDR only. */
    if (cfg->threads > 1)
        opts[n++] =
            (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)cfg->threads, NULL};
    if (d->is_tls) {
        /* TS 33.310 Annex E: TLS 1.2 at least. */
        const char *prio = cfg->tls_priorities ? cfg->tls_priorities
                                               : "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2";
        /* The certificate is chosen per handshake (httpd_tls_retrieve), so that a reload can
         * replace it while established connections go on with the one they got. */
        gnutls_certificate_retrieve_function3 *retrieve = httpd_tls_retrieve;
        void *retrieve_ptr; /* MHD takes the function as the option's pointer argument */
        _Static_assert(sizeof retrieve == sizeof retrieve_ptr, "function pointer size");
        memcpy(&retrieve_ptr, &retrieve, sizeof retrieve_ptr);
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_CERT_CALLBACK2, 0, retrieve_ptr};
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)prio};
        /* With a trust list libmicrohttpd asks every client for a certificate (optional). */
        if (d->tls_ca_pem)
            opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, d->tls_ca_pem};
    }
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};

    pthread_mutex_init(&d->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&d->wake, &ca);
    pthread_condattr_destroy(&ca);
    /* MHD_USE_ITC: MHD_quiesce_daemon() with internal threads needs it (httpd_drain). */
    /* MHD_ALLOW_SUSPEND_RESUME: deferred answers (http_request_defer); with the internal epoll
     * threads a resume wakes the connection's thread through its ITC. */
    d->mhd = MHD_start_daemon(flags | MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME, ss ? cfg->port : 0,
                              NULL, NULL, httpd_access, d, MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    if (d->mhd && (d->header_ms || d->body_min_rate)) {
        if (pthread_create(&d->watchdog, NULL, httpd_watchdog, d) == 0) {
            d->watchdog_running = true;
        } else {
            log_error("httpd: cannot start the connection watchdog");
            MHD_stop_daemon(d->mhd);
            d->mhd = NULL;
        }
    }
    if (!d->mhd) {
        pthread_cond_destroy(&d->wake);
        pthread_mutex_destroy(&d->lock);
        return -1;
    }
    return 0;
}

/* Stops d's daemon and watchdog (d itself stays allocated). */
static void httpd_halt(struct httpd *d)
{
    if (d->watchdog_running) {
        pthread_mutex_lock(&d->lock);
        d->stopping = true;
        pthread_cond_signal(&d->wake);
        pthread_mutex_unlock(&d->lock);
        pthread_join(d->watchdog, NULL);
    }
    /* Every connection gets its CLOSED notification here, which frees its entry. */
    MHD_stop_daemon(d->mhd);
    if (d->quiesced && d->quiesced_fd >= 0)
        close(d->quiesced_fd);
    pthread_cond_destroy(&d->wake);
    pthread_mutex_destroy(&d->lock);
}

/* Makes d's UNIX-domain side on cfg->unix_path: a server of its own, local, with d's handler.
 * 0, or -1 with a log line. */
static int httpd_start_local(struct httpd *d, const struct httpd_config *cfg)
{
    int fd = httpd_unix_listen(d, cfg->unix_path);
    if (fd < 0)
        return -1;
    struct httpd *u = calloc(1, sizeof *u);
    if (!u || !(d->unix_path = strdup(cfg->unix_path))) {
        free(u);
        unlink(cfg->unix_path);
        close(fd);
        return -1;
    }
    u->local = true;
    u->fn = d->fn;
    u->cls = d->cls;
    u->max_body = d->max_body;
    if (httpd_launch(u, cfg, MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG,
                     NULL, fd) < 0) {
        log_error("httpd: cannot serve on %s", cfg->unix_path);
        httpd_unix_remove(d);
        close(fd);
        free(u);
        return -1;
    }
    d->unix_side = u;
    return 0;
}

int httpd_start(const struct httpd_config *cfg, httpd_handler_fn fn, void *cls, struct httpd **out)
{
    struct httpd *d = calloc(1, sizeof *d);
    if (!d)
        return -1;
    d->fn = fn;
    d->cls = cls;
    d->max_body = cfg->max_body;

    struct sockaddr_storage ss = {0};
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, cfg->host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(cfg->port);
    } else if (inet_pton(AF_INET6, cfg->host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(cfg->port);
        flags |= MHD_USE_IPv6;
    } else {
        log_error("httpd: \"%s\" is not a numeric IP address", cfg->host);
        free(d);
        return -1;
    }
    if (cfg->tls_cert) {
        if (!cfg->tls_key) {
            log_error("httpd: tls_cert given without tls_key");
            free(d);
            return -1;
        }
        d->is_tls = true;
        d->tls = httpd_tls_load(cfg->tls_cert, cfg->tls_key);
        d->tls_ca_pem = cfg->tls_client_ca ? httpd_read_file(cfg->tls_client_ca) : NULL;
        if (!d->tls || (cfg->tls_client_ca && !d->tls_ca_pem)) {
            httpd_free(d);
            return -1;
        }
        flags |= MHD_USE_TLS;
    }
    if (httpd_launch(d, cfg, flags, &ss, -1) < 0) {
        log_error("httpd: cannot listen on %s port %u (in use, no permission, or bad TLS "
                  "certificate/key)",
                  cfg->host, cfg->port);
        httpd_free(d);
        return -1;
    }
    if (cfg->unix_path && httpd_start_local(d, cfg) < 0) {
        httpd_halt(d);
        httpd_free(d);
        return -1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d->mhd, MHD_DAEMON_INFO_LISTEN_FD);
    /* Accept only once the first bytes are in (or after the head allowance), so
     * httpd_conn_started() sees the start of the request line; a connection that sends nothing
     * holds no slot meanwhile. */
    int defer = cfg->header_timeout_s ? (int)cfg->header_timeout_s : HTTPD_DEFAULT_HEADER_TIMEOUT;
    if (info &&
        setsockopt(info->listen_fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer, sizeof defer) < 0)
        log_debug("httpd: TCP_DEFER_ACCEPT: %s", strerror(errno));
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    d->port = cfg->port;
    if (info && getsockname(info->listen_fd, (struct sockaddr *)&bound, &blen) == 0)
        d->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                    : ((struct sockaddr_in *)&bound)->sin_port);
    if (d->is_tls && httpd_tls_register(d, true) < 0) {
        log_error("httpd: more than %d TLS listeners in one process", HTTPD_TLS_LISTENERS_MAX);
        httpd_stop(d);
        return -1;
    }
    *out = d;
    return 0;
}

/* Stops accepting on d (a side of a server); established connections go on. */
static void httpd_quiesce(struct httpd *d)
{
    if (!d || !d->mhd || d->quiesced)
        return;
    d->quiesced = true;
    d->quiesced_fd = (int)MHD_quiesce_daemon(d->mhd);
}

/* Connections of d with a request in progress: head or body arriving, handler running or
 * response being sent. Kept-alive connections between requests do not count. */
static size_t httpd_in_flight(struct httpd *d)
{
    if (!d || !d->mhd)
        return 0;
    size_t n = 0;
    pthread_mutex_lock(&d->lock);
    for (struct httpd_conn *c = d->conns; c; c = c->next) {
        int phase = atomic_load(&c->phase);
        n += phase == HTTPD_HEAD || phase == HTTPD_BODY || phase == HTTPD_BUSY;
    }
    pthread_mutex_unlock(&d->lock);
    return n;
}

void httpd_set_max_body(struct httpd *d, size_t max_body)
{
    d->max_body = max_body;
    if (d->unix_side)
        d->unix_side->max_body = max_body;
}

size_t httpd_drain(struct httpd *const *ds, size_t n, unsigned timeout_s)
{
    for (size_t i = 0; i < n; i++) {
        if (ds[i]) {
            httpd_quiesce(ds[i]);
            httpd_quiesce(ds[i]->unix_side);
        }
    }
    int64_t deadline = httpd_now_ms() + (int64_t)timeout_s * 1000;
    for (;;) {
        size_t busy = 0;
        for (size_t i = 0; i < n; i++)
            if (ds[i])
                busy += httpd_in_flight(ds[i]) + httpd_in_flight(ds[i]->unix_side);
        if (busy == 0 || httpd_now_ms() >= deadline)
            return busy;
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

uint16_t httpd_port(const struct httpd *d)
{
    return d->port;
}

void httpd_stop(struct httpd *d)
{
    if (!d)
        return;
    if (d->unix_side) {
        httpd_unix_remove(d);
        httpd_halt(d->unix_side);
        httpd_free(d->unix_side);
    }
    if (d->is_tls)
        httpd_tls_register(d, false);
    httpd_halt(d);
    httpd_free(d);
}
