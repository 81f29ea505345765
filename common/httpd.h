/* HTTP server glue around libmicrohttpd, shared by the XDMS and the Aggregation Proxy.
 *
 * The handler is called once per request, after the whole body has arrived, from one of the
 * daemon's threads; it fills a struct http_response and returns. The target is handed over raw:
 * the path and query exactly as the client sent them (libmicrohttpd's unescaping is disabled), so
 * XCAP URIs can be parsed per RFC 4825 and forwarded byte for byte.
 *
 * Bounds enforced here, before the handler runs: body size (413, also when the declared
 * Content-Length is already too large), header block size (libmicrohttpd answers 431/414), idle
 * connection timeout, and the connection bounds below.
 *
 * Connection bounds (against clients that hold connections open, e.g. by sending a request head
 * one byte at a time):
 * - at most max_connections open connections; beyond that new ones wait in the listen backlog
 *   until one closes;
 * - at most max_connections_per_ip from one client address; more are closed at once, unanswered;
 * - a deadline for the request head, header_timeout_s after the connection was accepted (after
 *   the previous response on a kept-alive connection), not extended by arriving bytes. A
 *   connection past it is answered 408 when the request line had arrived (plain HTTP only) and
 *   closed; one that sent no request line is closed silently, like an idle kept-alive connection;
 * - a minimum body rate: once the head is in, the body gets header_timeout_s plus one second per
 *   body_min_rate bytes received; a slower one gets 408 (plain HTTP) and is closed;
 * - a request line that cannot be one (the method is not a token followed by SP, RFC 9112 §3) is
 *   answered 400 and closed. libmicrohttpd 0.9.75 closes such connections silently, so the first
 *   bytes of each plain-HTTP connection are looked at before it reads them (the listener defers
 *   accepting until data has arrived); a malformed line later on a kept-alive connection, or one
 *   split so that the first packet does not show it, is still closed without an answer.
 * The deadlines are enforced by a watchdog thread that shuts the socket down; 408 and 400 are
 * written by this module, with Date, Connection: close and a text/plain reason.
 *
 * Besides the TCP listener a server may listen on a UNIX-domain socket (httpd_config.unix_path):
 * same handler, same bounds except the per-address limit, no TLS. Who may connect to it is
 * decided by filesystem permissions, so a handler may trust it more than any network address
 * (http_request_is_local()). */
#ifndef XDM_HTTPD_H
#define XDM_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "buf.h"

struct httpd;
struct http_request;

struct httpd_config {
    const char *host;     /* numeric IPv4 or IPv6 address to bind */
    uint16_t port;        /* 0 = any free port (see httpd_port()) */
    unsigned threads;     /* 1 = one epoll thread; N > 1 = a pool of N epoll threads */
    size_t max_body;      /* bytes; larger bodies get 413 */
    size_t max_header;    /* bytes for the request line plus headers (connection memory) */
    unsigned timeout_s;   /* idle connection timeout */
    const char *tls_cert; /* PEM file, or NULL for plain HTTP */
    const char *tls_key;  /* PEM file */
    /* Added for mutual TLS (XDMS peers identified by certificate, aggproxy upstreams):
     * tls_client_ca: PEM CA bundle; when set, every TLS client is asked for a certificate (not
     * required: the handler decides, see http_request_tls_peer()). tls_priorities: GnuTLS priority
     * string; NULL = "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2" (TS 33.310 Annex E: TLS 1.2
     * minimum). Both ignored without tls_cert. */
    const char *tls_client_ca;
    const char *tls_priorities;
    /* Connection bounds (see the top of this file). max_connections 0 means
     * HTTPD_DEFAULT_MAX_CONNECTIONS; it is lowered, with a warning, to what the open-file limit
     * allows once httpd_start() has raised the soft limit to the hard one. 0 turns off
     * max_connections_per_ip, header_timeout_s and body_min_rate (bytes per second). */
    unsigned max_connections;
    unsigned max_connections_per_ip;
    unsigned header_timeout_s;
    uint64_t body_min_rate;
    /* UNIX-domain listener served next to the TCP one, or NULL. The socket file is made with mode
     * 0600 (the directory's permissions should keep others out too). A socket file left by a
     * process that died is replaced; one another live process still accepts on is not (start
     * fails); anything else at that path (a regular file, a directory) is never replaced. The
     * file is removed by httpd_stop() when it is still the one this server made. At most
     * HTTPD_UNIX_PATH_MAX bytes. */
    const char *unix_path;
};

/* Longest unix_path (struct sockaddr_un's sun_path less the terminating NUL). */
#define HTTPD_UNIX_PATH_MAX 107

/* Defaults of the configuration keys max_connections, max_connections_per_ip, header_timeout
 * and body_min_rate (docs/configuration.md). */
#define HTTPD_DEFAULT_MAX_CONNECTIONS 4096
#define HTTPD_DEFAULT_MAX_CONNECTIONS_PER_IP 64
#define HTTPD_DEFAULT_HEADER_TIMEOUT 10
#define HTTPD_DEFAULT_BODY_MIN_RATE 1024

struct config;

/* The rows of the connection-bound keys for a process's key table (config.h), with their limits:
 * max_connections (1..1000000), max_connections_per_ip (0..1000000, 0 = no limit),
 * header_timeout (seconds, 1..3600) and body_min_rate (bytes per second, K/M suffixes, 0..1G,
 * 0 = no minimum). */
#define HTTPD_CONFIG_KEYS                                                                          \
    {                                                                                              \
        "max_connections",         CONFIG_UINT, 1, 1000000, "4096", NULL, 0, NULL,                 \
        "open connections at most"},                                                               \
        {"max_connections_per_ip",                                                                 \
         CONFIG_UINT,                                                                              \
         0,                                                                                        \
         1000000,                                                                                  \
         "64",                                                                                     \
         NULL,                                                                                     \
         0,                                                                                        \
         NULL,                                                                                     \
         "open TCP connections from one address (0 = no limit)"},                                  \
        {"header_timeout",                                                                         \
         CONFIG_UINT,                                                                              \
         1,                                                                                        \
         3600,                                                                                     \
         "10",                                                                                     \
         NULL,                                                                                     \
         0,                                                                                        \
         NULL,                                                                                     \
         "seconds for a complete request head, from accept"},                                      \
    {                                                                                              \
        "body_min_rate", CONFIG_SIZE, 0, 1 << 30, "1K", NULL, 0, NULL,                             \
            "least average body rate, bytes per second (0 = none)"                                 \
    }

/* Reads the keys of HTTPD_CONFIG_KEYS (which must be rows of cfg's key table) into hc. */
void httpd_config_limits(const struct config *cfg, struct httpd_config *hc);

/* What the first bytes of a request say about its request line (RFC 9112 §2.2, §3): empty lines
 * (CRLF or LF) before it are skipped, then the method must be a token (RFC 9110 §5.6.2) followed
 * by SP. Returns 1 when that holds, 0 when the bytes end before it can be told, -1 when it cannot
 * hold (e.g. "\r\r\r\n", "GARBAGE\r\n", " GET / HTTP/1.1"). */
int httpd_request_line_check(const char *data, size_t len);

struct http_header {
    char *name;
    char *value;
};

struct http_response {
    int status;
    struct http_header *headers;
    size_t n_headers;
    struct buf body;
};

typedef void (*httpd_handler_fn)(void *cls, const struct http_request *req,
                                 struct http_response *resp);

/* Deferred answers, for a handler that would otherwise hold its thread while it waits (a write
 * waiting for its durable commit). Called from the handler, http_request_defer() suspends the
 * request's connection (libmicrohttpd's suspend/resume): when the handler returns, its resp is
 * discarded and the thread serves other connections. The request (and every string its
 * accessors return) stays valid until http_request_answer(), which any thread calls exactly once
 * with the response (its contents taken over, *resp left empty); the connection is then resumed
 * and the response sent. Every deferred request must be answered before httpd_stop(); while it
 * waits it counts as in progress for httpd_drain(). Returns 0, or -1 (resp must then be filled
 * by the handler as usual) when the request cannot be deferred. */
int http_request_defer(const struct http_request *req);
void http_request_answer(const struct http_request *req, struct http_response *resp);
/* True once http_request_defer() succeeded for req. */
bool http_request_deferred(const struct http_request *req);

/* Starts listening (TCP, and the UNIX-domain socket when configured). Returns 0, or -1 with a log
 * line (e.g. address in use, socket path taken by a live server). */
int httpd_start(const struct httpd_config *cfg, httpd_handler_fn fn, void *cls, struct httpd **out);
/* The port actually bound (useful with port 0). */
uint16_t httpd_port(const struct httpd *d);
/* Stops accepting, finishes running handlers, removes the UNIX-domain socket file, frees. */
void httpd_stop(struct httpd *d);

/* A configuration reload: the largest request body from the next request on (both sides of
 * the server). Thread-safe. */
void httpd_set_max_body(struct httpd *d, size_t max_body);

/* Graceful stop: every server of ds (NULL entries skipped) stops accepting connections, on TCP
 * and on its UNIX-domain side, at once; then this waits until no connection has a request in
 * progress (head or body arriving, handler running, response being sent), at most timeout_s
 * seconds. Returns how many requests were still in progress (0: all finished). Call
 * httpd_stop() afterwards, which closes whatever is left. */
size_t httpd_drain(struct httpd *const *ds, size_t n, unsigned timeout_s);

/* TLS certificate rotation. A TLS listener picks its certificate per handshake: a new connection
 * gets the one set last, an established one keeps the one it got. */
#define HTTPD_TLS_LISTENERS_MAX 8 /* TLS listeners in one process */
#define HTTPD_TLS_CHAIN_MAX 16    /* certificates in one tls_cert file (leaf first) */
struct httpd_tls;
/* Reads a PEM certificate chain and its PEM private key and checks that they load as a
 * listener's (parse, the key matches, at most HTTPD_TLS_CHAIN_MAX certificates). Returns NULL
 * after logging the problem. */
struct httpd_tls *httpd_tls_load(const char *cert_file, const char *key_file);
void httpd_tls_free(struct httpd_tls *t);
/* Makes t (taken over) the certificate of d's next handshakes. d must be a TLS listener
 * (httpd_is_tls). Thread-safe. */
void httpd_tls_set(struct httpd *d, struct httpd_tls *t);
bool httpd_is_tls(const struct httpd *d);

/* Request accessors. All returned strings are borrowed for the duration of the handler call. */
const char *http_request_method(const struct http_request *r);
const char *http_request_target(const struct http_request *r); /* raw path [+ "?" query] */
const char *http_request_path(const struct http_request *r);   /* raw path, without query */
const char *http_request_query(const struct http_request *r);  /* raw query or NULL */
const char *http_request_header(const struct http_request *r, const char *name); /* any case */
/* Calls fn for every request header in arrival order; stops when fn returns non-zero. */
void http_request_each_header(const struct http_request *r,
                              int (*fn)(void *cls, const char *name, const char *value), void *cls);
const char *http_request_body(const struct http_request *r, size_t *len);
/* The peer's network address, or NULL for a request on the UNIX-domain socket. */
const struct sockaddr *http_request_peer(const struct http_request *r, socklen_t *len);
/* Peer address as numeric text without port, e.g. "127.0.0.1" or "::1"; "unix" for a request on
 * the UNIX-domain socket. */
const char *http_request_peer_str(const struct http_request *r);
/* True when the request arrived on the UNIX-domain socket listener (httpd_config.unix_path). */
bool http_request_is_local(const struct http_request *r);
/* Negotiated TLS cipher suite as its 2-byte IANA code (e.g. 0x1301 for TLS_AES_128_GCM_SHA256),
 * or -1 when not TLS (or the suite has no IANA code known to GnuTLS). */
int http_request_tls_cipher(const struct http_request *r);

/* Longest subject DN reported by http_request_tls_peer() (longer ones are refused). */
#define HTTP_TLS_SUBJECT_MAX 1024

/* The client certificate of a TLS request, once verified (added for mutual TLS). */
struct http_tls_peer {
    char subject[HTTP_TLS_SUBJECT_MAX]; /* RFC 4514 string, e.g. "CN=aggproxy,O=Example" */
    char sha256[65];                    /* lower-case hex SHA-256 of the certificate's DER */
};

/* Returns 0 and fills *out when the client presented a certificate that verifies against the
 * listener's tls_client_ca (chain, validity period, usage); 1 when the request is not TLS, the
 * listener has no tls_client_ca or the client sent no certificate; -1 when the certificate does
 * not verify (the reason goes to the debug log). */
int http_request_tls_peer(const struct http_request *r, struct http_tls_peer *out);

/* Response helpers. The response starts as status 500 with no headers and an empty body whose
 * maximum is unbounded. Header name/value are copied; adding a name twice adds two lines. */
int http_response_header(struct http_response *resp, const char *name, const char *value);
int http_response_headerf(struct http_response *resp, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *http_response_get_header(const struct http_response *resp, const char *name);
/* Replaces the body with a copy of data. */
int http_response_body(struct http_response *resp, const void *data, size_t len);
/* Sets status and a text/plain body "text\n" (for non-409 errors, RFC 4825 §11). */
void http_response_text(struct http_response *resp, int status, const char *text);

#endif
