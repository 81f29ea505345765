/* What the files of the HTTP server glue share (httpd.c: servers, connections, deadlines and the
 * request callbacks; httpd_tls.c: certificates, TLS handshakes and what a TLS request carries;
 * httpd_unix.c: the UNIX-domain listener's socket file; httpd_request.c: the request-line check and
 * the accessors of requests and responses). Not for use outside common/httpd*.c. */
#ifndef XDM_HTTPD_INTERNAL_H
#define XDM_HTTPD_INTERNAL_H

#include <arpa/inet.h>
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "httpd.h"

/* Where a connection is, for its deadline (see httpd.h). Moves happen with compare-and-swap, so
 * the watchdog and the connection's thread agree on who acts: once the watchdog has set
 * HTTPD_CUT, libmicrohttpd gets MHD_NO for that connection and writes nothing more. */
enum httpd_phase {
    HTTPD_IDLE, /* accepted, or a response done: waiting for a request line */
    HTTPD_HEAD, /* request line in, head not complete */
    HTTPD_BODY, /* head in, body arriving */
    HTTPD_BUSY, /* handler running or response being sent: libmicrohttpd's idle timeout only */
    HTTPD_CUT,  /* answered here (400, 408) or closed; nothing more happens on it */
};

/* One accepted connection, from libmicrohttpd's STARTED to its CLOSED notification. The entry is
 * in the list while libmicrohttpd still owns the socket (CLOSED comes before it closes it), so
 * the watchdog, which holds the list lock, never acts on a reused descriptor. */
struct httpd_conn {
    struct httpd_conn *prev, *next; /* under httpd.lock */
    int fd;
    _Atomic int phase;           /* enum httpd_phase */
    _Atomic int64_t deadline_ms; /* CLOCK_MONOTONIC; for IDLE, HEAD and BODY */
    /* Owned by the connection's thread: */
    int64_t body_start_ms;
    uint64_t body_bytes;
    struct http_request *req; /* the request in progress, freed at CLOSED when no COMPLETED came */
};

struct httpd {
    struct MHD_Daemon *mhd;
    /* The UNIX-domain listener (httpd_config.unix_path) is a server of its own with the same
     * handler: local is set on it, and the TCP server owns it (unix_side) and its socket file. */
    bool local;
    struct httpd *unix_side;
    char *unix_path; /* the socket file this server made, removed at stop */
    dev_t unix_dev;
    ino_t unix_ino;
    httpd_handler_fn fn;
    void *cls;
    _Atomic size_t max_body; /* a reload may change it (httpd_set_max_body) */
    uint16_t port;
    bool is_tls;
    struct httpd_tls *tls;  /* the certificate new handshakes get; under httpd_tls_lock */
    char *tls_ca_pem;       /* client CA: set when clients are asked for a certificate */
    int64_t header_ms;      /* 0 = no head deadline */
    uint64_t body_min_rate; /* bytes per second; 0 = none */
    /* The connections and the watchdog. */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct httpd_conn *conns;
    pthread_t watchdog;
    bool watchdog_running;
    bool stopping;
    bool quiesced;   /* no longer accepting (httpd_drain) */
    int quiesced_fd; /* the listening socket libmicrohttpd gave back, closed after its stop */
    unsigned cut_head, cut_body, cut_idle; /* not yet logged */
    int64_t cut_logged_ms;
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
    /* A deferred answer (http_request_defer): the connection is suspended from the handler's
     * return until http_request_answer() hands over the response and resumes it. */
    bool deferred;
    _Atomic bool answered;
    struct http_response answer;
    char peer[INET6_ADDRSTRLEN];
};

/* httpd.c: starts libmicrohttpd on d, on the address ss (TCP) or on the already listening socket
 * listen_fd (the UNIX-domain side). Returns 0, or -1 with d's daemon unset. */
int httpd_launch(struct httpd *d, const struct httpd_config *cfg, unsigned flags,
                 struct sockaddr_storage *ss, int listen_fd);

/* httpd_tls.c: a whole file as a NUL-terminated string (PEM), or NULL with a log line. */
char *httpd_read_file(const char *path);
/* Adds d to (or removes it from) the TLS listeners; adding fails (-1) when every place is taken. */
int httpd_tls_register(struct httpd *d, bool add);
/* gnutls_certificate_retrieve_function3 of every TLS listener: a fresh copy of the listener's
 * current certificate chain and key for one handshake. */
int httpd_tls_retrieve(gnutls_session_t session, const struct gnutls_cert_retr_st *info,
                       gnutls_pcert_st **certs, unsigned int *n_certs, gnutls_ocsp_data_st **ocsp,
                       unsigned int *n_ocsp, gnutls_privkey_t *privkey, unsigned int *flags);

/* httpd_unix.c: makes the listening UNIX-domain socket at path (a stale socket file is replaced,
 * a live one never) and records its file in d (unix_dev, unix_ino). Returns the socket, or -1
 * with a log line. */
int httpd_unix_listen(struct httpd *d, const char *path);
/* Removes d's socket file if it is still the one d bound. */
void httpd_unix_remove(struct httpd *d);

#endif
