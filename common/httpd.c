#include "httpd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

/* One listening daemon's view of the server: which struct httpd, and whether it is the
 * UNIX-domain socket (the libmicrohttpd callbacks get this as their closure). */
struct httpd_listener {
    struct httpd *d;
    bool local;
};

struct httpd {
    struct MHD_Daemon *mhd;
    struct MHD_Daemon *mhd_unix; /* NULL without unix_path */
    struct httpd_listener tcp, local;
    char *unix_path; /* the socket file this server made, removed at stop */
    dev_t unix_dev;
    ino_t unix_ino;
    httpd_handler_fn fn;
    void *cls;
    size_t max_body;
    uint16_t port;
    char *tls_cert_pem;
    char *tls_key_pem;
    char *tls_ca_pem; /* client CA: set when clients are asked for a certificate */
};

/* One request's whole lifetime: allocated when the URI arrives, freed in httpd_completed(). */
struct http_request {
    struct httpd *d;
    struct MHD_Connection *conn;
    const char *method; /* owned by libmicrohttpd, valid for the request */
    char *target;       /* raw request-target as received */
    char *path;         /* raw path (target up to '?') */
    const char *query;  /* points into target after '?', or NULL */
    struct buf body;
    bool started;
    bool too_large;
    bool local; /* arrived on the UNIX-domain socket */
    char peer[INET6_ADDRSTRLEN];
};

static void *httpd_uri_log(void *cls, const char *uri, struct MHD_Connection *conn)
{
    const struct httpd_listener *l = cls;
    struct httpd *d = l->d;
    struct http_request *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->d = d;
    r->local = l->local;
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
    return r;
}

static void httpd_request_free(struct http_request *r)
{
    if (!r)
        return;
    buf_release(&r->body);
    free(r->target);
    free(r->path);
    free(r);
}

static void httpd_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                            enum MHD_RequestTerminationCode toe)
{
    httpd_request_free(*con_cls);
    *con_cls = NULL;
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
    struct httpd *d = ((const struct httpd_listener *)cls)->d;
    struct http_request *r = *con_cls;
    if (!r)
        return MHD_NO; /* allocation failed in httpd_uri_log */
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
                return httpd_send_simple(conn, 413, "request body too large");
            }
        }
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (!r->too_large && buf_append(&r->body, upload_data, *upload_data_size) < 0)
            r->too_large = true; /* keep reading to answer cleanly, drop the bytes */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (r->too_large)
        return httpd_send_simple(conn, 413, "request body too large");

    struct http_response resp = {.status = 500};
    buf_init(&resp.body, SIZE_MAX);
    d->fn(d->cls, r, &resp);
    enum MHD_Result rc = httpd_send(conn, &resp);
    httpd_response_release(&resp);
    return rc;
}

static char *httpd_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        log_error("httpd: cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    struct buf b;
    buf_init(&b, 1 << 20);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (buf_append(&b, chunk, n) < 0) {
            fclose(f);
            buf_release(&b);
            log_error("httpd: %s is too large", path);
            return NULL;
        }
    }
    fclose(f);
    return buf_detach(&b, NULL);
}

/* The options both listeners share; returns how many were written to opts. */
static size_t httpd_common_options(struct MHD_OptionItem *opts, const struct httpd_config *cfg,
                                   struct httpd_listener *l)
{
    size_t n = 0;
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)httpd_uri_log, l};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)httpd_completed, l};
    opts[n++] =
        (struct MHD_OptionItem){MHD_OPTION_UNESCAPE_CALLBACK, (intptr_t)httpd_no_unescape, l};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)httpd_mhd_log, l};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT,
                                        (intptr_t)(cfg->timeout_s ? cfg->timeout_s : 30), NULL};
    opts[n++] =
        (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                                (intptr_t)(cfg->max_header ? cfg->max_header : 65536), NULL};
    if (cfg->threads > 1)
        opts[n++] =
            (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)cfg->threads, NULL};
    return n;
}

/* Makes the listening UNIX-domain socket at path. A socket file already there is probed: a
 * refused connection means its server died without removing it (a crash, SIGKILL), so it is
 * replaced; an accepted one means a live server owns it, which is never taken over. Returns the
 * listening socket (non-blocking), or -1 with a log line. */
static int httpd_unix_listen(struct httpd *d, const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    if (len == 0 || len > HTTPD_UNIX_PATH_MAX) {
        log_error("httpd: socket path \"%s\" is empty or longer than %d bytes", path,
                  HTTPD_UNIX_PATH_MAX);
        return -1;
    }
    memcpy(sun.sun_path, path, len + 1);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            log_error("httpd: %s exists and is not a socket; not replacing it", path);
            return -1;
        }
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe < 0) {
            log_error("httpd: socket: %s", strerror(errno));
            return -1;
        }
        int rc = connect(probe, (struct sockaddr *)&sun, sizeof sun);
        int err = errno;
        close(probe);
        if (rc == 0) {
            log_error("httpd: another process is listening on %s (is this server already "
                      "running?)",
                      path);
            return -1;
        }
        if (err != ECONNREFUSED && err != ENOENT) {
            log_error("httpd: cannot probe the existing socket %s: %s", path, strerror(err));
            return -1;
        }
        if (err == ECONNREFUSED) {
            log_info("httpd: replacing the stale socket %s", path);
            if (unlink(path) != 0 && errno != ENOENT) {
                log_error("httpd: cannot remove the stale socket %s: %s", path, strerror(errno));
                return -1;
            }
        }
    } else if (errno != ENOENT) {
        log_error("httpd: %s: %s", path, strerror(errno));
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        log_error("httpd: socket: %s", strerror(errno));
        return -1;
    }
    /* bind() creates the file with the process umask; the mode is then narrowed to the owner,
     * who alone may connect (the directory normally keeps everyone else out already). */
    if (bind(fd, (struct sockaddr *)&sun, sizeof sun) != 0) {
        log_error("httpd: cannot bind %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (chmod(path, 0600) != 0 || lstat(path, &st) != 0 || listen(fd, SOMAXCONN) != 0) {
        log_error("httpd: cannot listen on %s: %s", path, strerror(errno));
        unlink(path);
        close(fd);
        return -1;
    }
    d->unix_dev = st.st_dev;
    d->unix_ino = st.st_ino;
    return fd;
}

/* Removes the socket file if it is still the one this server bound (another server may have
 * replaced it meanwhile, e.g. after this one hung). */
static void httpd_unix_remove(struct httpd *d)
{
    struct stat st;
    if (d->unix_path && lstat(d->unix_path, &st) == 0 && st.st_dev == d->unix_dev &&
        st.st_ino == d->unix_ino)
        unlink(d->unix_path);
}

static void httpd_free(struct httpd *d)
{
    free(d->tls_cert_pem);
    free(d->tls_key_pem);
    free(d->tls_ca_pem);
    free(d->unix_path);
    free(d);
}

static int httpd_start_unix(struct httpd *d, const struct httpd_config *cfg)
{
    int fd = httpd_unix_listen(d, cfg->unix_path);
    if (fd < 0)
        return -1;
    if (!(d->unix_path = strdup(cfg->unix_path))) {
        unlink(cfg->unix_path);
        close(fd);
        return -1;
    }
    struct MHD_OptionItem opts[16];
    size_t n = httpd_common_options(opts, cfg, &d->local);
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_LISTEN_SOCKET, fd, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    d->mhd_unix = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL,
        httpd_access, &d->local, MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    if (!d->mhd_unix) {
        log_error("httpd: cannot serve on %s", cfg->unix_path);
        httpd_unix_remove(d);
        close(fd);
        return -1;
    }
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
    d->tcp = (struct httpd_listener){d, false};
    d->local = (struct httpd_listener){d, true};

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
        d->tls_cert_pem = httpd_read_file(cfg->tls_cert);
        d->tls_key_pem = cfg->tls_key ? httpd_read_file(cfg->tls_key) : NULL;
        d->tls_ca_pem = cfg->tls_client_ca ? httpd_read_file(cfg->tls_client_ca) : NULL;
        if (!d->tls_cert_pem || !d->tls_key_pem || (cfg->tls_client_ca && !d->tls_ca_pem)) {
            if (!cfg->tls_key)
                log_error("httpd: tls_cert given without tls_key");
            httpd_free(d);
            return -1;
        }
        flags |= MHD_USE_TLS;
    }

    struct MHD_OptionItem opts[24];
    size_t n = 0;
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, &ss};
    n += httpd_common_options(opts + n, cfg, &d->tcp);
    /* MHD_OPTION_LISTENING_ADDRESS_REUSE is left unset on purpose: 1 sets SO_REUSEPORT (a second
     * server on a busy port would start and silently take half of the connections), 0 drops
     * SO_REUSEADDR (a restart fails while old connections sit in TIME_WAIT). Unset, libmicrohttpd
     * uses SO_REUSEADDR only. */
    if (d->tls_cert_pem) {
        /* TS 33.310 Annex E (SPEC GAA-1): TLS 1.2 at least. */
        const char *prio = cfg->tls_priorities ? cfg->tls_priorities
                                               : "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2";
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, d->tls_cert_pem};
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, d->tls_key_pem};
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)prio};
        /* With a trust list libmicrohttpd asks every client for a certificate (optional). */
        if (d->tls_ca_pem)
            opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, d->tls_ca_pem};
    }
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};

    d->mhd = MHD_start_daemon(flags, cfg->port, NULL, NULL, httpd_access, &d->tcp, MHD_OPTION_ARRAY,
                              opts, MHD_OPTION_END);
    if (!d->mhd) {
        log_error("httpd: cannot listen on %s port %u (in use, no permission, or bad TLS "
                  "certificate/key)",
                  cfg->host, cfg->port);
        httpd_free(d);
        return -1;
    }
    if (cfg->unix_path && httpd_start_unix(d, cfg) < 0) {
        MHD_stop_daemon(d->mhd);
        httpd_free(d);
        return -1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d->mhd, MHD_DAEMON_INFO_LISTEN_FD);
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    d->port = cfg->port;
    if (info && getsockname(info->listen_fd, (struct sockaddr *)&bound, &blen) == 0)
        d->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                    : ((struct sockaddr_in *)&bound)->sin_port);
    *out = d;
    return 0;
}

uint16_t httpd_port(const struct httpd *d)
{
    return d->port;
}

void httpd_stop(struct httpd *d)
{
    if (!d)
        return;
    if (d->mhd_unix) {
        httpd_unix_remove(d);
        MHD_stop_daemon(d->mhd_unix);
    }
    MHD_stop_daemon(d->mhd);
    httpd_free(d);
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
    if (r->local)
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
    if (r->local)
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
    return r->local;
}

static gnutls_session_t httpd_tls_session(const struct http_request *r)
{
    if (!r->d->tls_cert_pem || r->local)
        return NULL;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    return ci ? (gnutls_session_t)ci->tls_session : NULL;
}

int http_request_tls_cipher(const struct http_request *r)
{
    gnutls_session_t s = httpd_tls_session(r);
    if (!s)
        return -1;
    /* GnuTLS reports the session's suite as its parts; its suite table maps them to the IANA code
     * (TS 33.220 Annex H.3 puts that code into the Ua security protocol identifier). TLS 1.3
     * suites do not fix the key exchange, so only cipher and MAC identify them. */
    gnutls_protocol_t ver = gnutls_protocol_get_version(s);
    gnutls_kx_algorithm_t kx = gnutls_kx_get(s);
    gnutls_cipher_algorithm_t cipher = gnutls_cipher_get(s);
    gnutls_mac_algorithm_t mac = gnutls_mac_get(s);
    for (size_t i = 0;; i++) {
        unsigned char id[2];
        gnutls_kx_algorithm_t k;
        gnutls_cipher_algorithm_t c;
        gnutls_mac_algorithm_t m;
        gnutls_protocol_t minver;
        if (!gnutls_cipher_suite_info(i, id, &k, &c, &m, &minver))
            return -1;
        bool tls13_suite = minver == GNUTLS_TLS1_3;
        if ((ver == GNUTLS_TLS1_3) != tls13_suite)
            continue;
        if (c == cipher && m == mac && (tls13_suite || k == kx))
            return (id[0] << 8) | id[1];
    }
}

int http_request_tls_peer(const struct http_request *r, struct http_tls_peer *out)
{
    memset(out, 0, sizeof *out);
    gnutls_session_t s = httpd_tls_session(r);
    if (!s || !r->d->tls_ca_pem)
        return 1;
    unsigned n = 0;
    const gnutls_datum_t *chain = gnutls_certificate_get_peers(s, &n);
    if (!chain || n == 0)
        return 1;
    unsigned status = 0;
    int rc = gnutls_certificate_verify_peers2(s, &status);
    if (rc < 0 || status != 0) {
        gnutls_datum_t why = {NULL, 0};
        if (rc == 0 &&
            gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &why, 0) == 0) {
            log_debug("httpd: client certificate refused: %s", (const char *)why.data);
            gnutls_free(why.data);
        } else {
            log_debug("httpd: client certificate refused: %s", gnutls_strerror(rc));
        }
        return -1;
    }
    gnutls_x509_crt_t crt;
    if (gnutls_x509_crt_init(&crt) < 0)
        return -1;
    int result = -1;
    gnutls_datum_t dn = {NULL, 0};
    unsigned char fp[32];
    size_t fplen = sizeof fp;
    if (gnutls_x509_crt_import(crt, &chain[0], GNUTLS_X509_FMT_DER) == 0 &&
        gnutls_x509_crt_get_dn3(crt, &dn, 0) == 0 && dn.size < sizeof out->subject &&
        gnutls_fingerprint(GNUTLS_DIG_SHA256, &chain[0], fp, &fplen) == 0 && fplen == 32) {
        memcpy(out->subject, dn.data, dn.size);
        out->subject[dn.size] = '\0';
        for (size_t i = 0; i < 32; i++)
            snprintf(out->sha256 + 2 * i, 3, "%02x", fp[i]);
        result = 0;
    }
    gnutls_free(dn.data);
    gnutls_x509_crt_deinit(crt);
    return result;
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
