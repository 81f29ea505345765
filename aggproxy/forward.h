/* Forwarding of XCAP requests to the XDMSs over HTTP, HTTPS or HTTP on a UNIX-domain socket
 * (TS 24.109 §7; OMA XDM Core §5.1.2, §5.2; RFC 9110 §7.6, §15.5.14, §15.6.3), with
 * libcurl: one at a time (forward_do) or several at once (forward_many, for the xcap-directory).
 *
 * The request target is sent byte for byte as the client sent it (no decoding, no re-encoding,
 * no dot-segment removal), with the same method and body. Only the headers the caller passes are
 * sent (plus Host and Content-Length); curl's own defaults (Accept: * / *, form Content-Type,
 * Expect: 100-continue) are suppressed.
 *
 * Connections are reused: each thread that forwards owns one curl handle and one curl multi
 * handle (kept in thread-local storage of the struct forward and cleaned up when the thread
 * exits), so keep-alive connections to the XDMSs live as long as the worker threads.
 *
 * HTTPS upstreams (https:// base URLs) are verified against ca_file (or the system store) with
 * host name checking; with cert_file/key_file the proxy presents a client certificate, so an
 * XDMS can trust it by certificate instead of by address (mutual TLS); it is held in memory and
 * replaced with forward_set_client_cert() (SIGHUP).
 *
 * Thread-safety: forward_do() may be called from any number of threads at once once
 * forward_new() returned. forward_new()/forward_free() run once, from the main thread, before
 * other threads use it and after they have all exited. */
#ifndef XDM_AGGPROXY_FORWARD_H
#define XDM_AGGPROXY_FORWARD_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "httpd.h"
#include "status.h"

struct forward;

/* A base URL starting with this is a UNIX-domain socket path (absolute or relative to the working
 * directory); the request then goes to http://localhost on that socket. A missing socket file or
 * one nobody listens on is XCAP_UPSTREAM "refused the connection", as a refused TCP port. */
#define FORWARD_UNIX_PREFIX "unix:"

struct forward_options {
    unsigned timeout_ms;         /* whole exchange; 0 = default 10000 */
    unsigned connect_timeout_ms; /* connection set-up (TCP, TLS); 0 = timeout_ms */
    size_t max_response;         /* response body bytes; 0 = default 16 MiB; larger -> 502 */
    const char *ca_file;         /* PEM CAs for https upstreams; NULL = the system's (copied) */
    const char *cert_file;       /* PEM client certificate for https upstreams, or NULL (copied) */
    const char *key_file;        /* its PEM private key (copied) */
};

/* Initialises libcurl (once per process) and makes a forwarder. Returns NULL on failure (also
 * when cert_file is given without key_file, or forward_set_client_cert() refuses them). */
struct forward *forward_new(const struct forward_options *opts);

/* Replaces the client certificate presented to https upstreams: reads both PEM files (at most
 * 1 MiB each), checks that the certificate parses and the key is its own, then swaps them in at
 * once; both NULL removes it. Exchanges already running finish with the old pair; every later
 * one uses the new pair, on a new connection (a connection kept alive with the old pair is not
 * reused). On failure returns -1 with the reason in err and the running pair stays. Safe while
 * other threads forward (call it from one thread at a time). */
int forward_set_client_cert(struct forward *fw, const char *cert_file, const char *key_file,
                            char *err, size_t errlen);
/* Checks what forward_set_client_cert() would take, without taking it: both files readable (at
 * most 1 MiB), the certificate parses and the key is its own. Returns 0, or -1 with the reason in
 * err. (A reload checks every pair it will swap before it swaps any.) */
int forward_check_client_cert(const char *cert_file, const char *key_file, char *err,
                              size_t errlen);
/* Frees the forwarder and the calling thread's curl handle; other threads must have exited. */
void forward_free(struct forward *fw);

/* True for the client request headers relayed to the XDMS (OMA XDM Core §5.2; RFC 9110 §7.6):
 * Content-Type, If-Match, If-None-Match, Accept. Everything else, notably Authorization,
 * Proxy-Authorization and every asserted-identity header (OMA XDM Core §5.1.2; TS 24.109 §7), is
 * dropped. Case-insensitive. */
bool forward_header_relayed(const char *name);

struct forward_header {
    const char *name;
    const char *value;
};

struct forward_request {
    const char *method;                   /* any token; HEAD is sent without reading a body */
    const char *base_url;                 /* "http://127.0.0.1:8181" (no trailing slash), or
                                             "unix:/path/to/xdms.sock": HTTP over that socket */
    const char *target;                   /* raw path [+ "?" query], starting with '/' */
    const struct forward_header *headers; /* sent as given */
    size_t n_headers;
    const void *body;
    size_t body_len;
    unsigned timeout_ms; /* whole exchange, 0 = the forwarder's (e.g. shorter for health checks) */
};

/* Response headers relayed to the client: ETag, Content-Type, Allow. */
struct forward_response {
    int status;
    struct http_header *headers; /* owned strings */
    size_t n_headers;
    struct buf body;
    char *error; /* owned: why the exchange failed (when forward_do did not return XCAP_OK) */
    /* The exchange failed before any byte of the request was written to a connection (refused,
     * no such socket, connect or TLS handshake timeout, reset while connecting), as libcurl
     * counts the bytes it sent (CURLINFO_REQUEST_SIZE, summed over curl's own retry of a reused
     * connection). Such a request reached no XDMS and may go to another one. */
    bool unsent;
};

void forward_response_init(struct forward_response *r);
void forward_response_release(struct forward_response *r);
/* First relayed header of that name (case-insensitive), or NULL. Borrowed. */
const char *forward_response_header(const struct forward_response *r, const char *name);

/* Sends rq and collects the answer into *resp (which must be initialised). Returns:
 *   XCAP_OK               an HTTP answer arrived (any status, in resp->status);
 *   XCAP_UPSTREAM         connection refused/reset, bad answer, body over the bound (502);
 *   XCAP_UPSTREAM_TIMEOUT no complete answer within the timeout (504);
 *   XCAP_BAD_REQUEST      the target cannot be sent (e.g. control characters or '#');
 *   XCAP_INTERNAL         out of memory.
 * On failure resp->error says why in one line. */
enum xcap_status forward_do(struct forward *fw, const struct forward_request *rq,
                            struct forward_response *resp);

/* Sends rq[0..n) at the same time and waits for all of them (each bounded by the timeout);
 * resp[i] (initialised) and st[i] receive what forward_do() would have given for rq[i].
 * n is at most FORWARD_MANY_MAX; more are answered XCAP_INTERNAL. */
#define FORWARD_MANY_MAX 64
void forward_many(struct forward *fw, const struct forward_request *rq,
                  struct forward_response *resp, enum xcap_status *st, size_t n);

/* ---- Asynchronous exchanges ----------------------------------------------------------------
 *
 * An event-driven forwarder for callers that must not hold their thread while an XDMS answers
 * (the proxy's HTTP threads, RFC 9110 §7.6): forward_submit() hands the exchange to one of the
 * loop's threads, each driving one curl multi handle (curl_multi_poll/curl_multi_wakeup), and
 * returns at once; the loop calls back when the answer is in. Each loop thread keeps its own cache
 * of keep-alive connections to the XDMSs (at most FORWARD_LOOP_MAX_CONNECTS), shared by every
 * exchange of that thread, whatever struct forward it was set up with (curl reuses a connection
 * only for the same TLS options and client certificate). Timeouts, the response bound, HTTPS with
 * a client certificate and UNIX-domain upstreams are those of forward_do(). */

#define FORWARD_LOOP_THREADS_MAX 16
#define FORWARD_LOOP_MAX_CONNECTS 256

struct forward_loop;

/* Called exactly once per forward_submit(), with what forward_do() would have returned for it
 * (resp filled the same way). It runs on a loop thread (or, once the loop has stopped, on the
 * submitting thread before forward_submit() returns) and may call forward_submit() again. */
typedef void (*forward_done_fn)(void *cls, enum xcap_status st);

/* Starts n_threads (1..FORWARD_LOOP_THREADS_MAX) loop threads. NULL (logged) on failure. Call it
 * after forward_new() of every forwarder it will serve (libcurl is initialised there). */
struct forward_loop *forward_loop_start(unsigned n_threads);
/* Stops the loop: every exchange still queued or running ends at once with XCAP_UPSTREAM_DOWN
 * ("the proxy is stopping"; nothing more is sent), its callback called from its loop thread;
 * then joins the threads. A forward_submit() racing with it or coming later is answered the same
 * way on its own thread. Call from one thread; NULL is fine. */
void forward_loop_stop(struct forward_loop *l);
/* Stops (as above) and frees; no forward_submit() may follow. NULL is fine. */
void forward_loop_free(struct forward_loop *l);
/* Starts rq towards rq->base_url through fw's options and credentials (copied now) on one of l's
 * threads and returns; done(cls, st) follows. rq, everything it points to, and resp (initialised)
 * must stay valid until done is called. Thread-safe. */
void forward_submit(struct forward_loop *l, struct forward *fw, const struct forward_request *rq,
                    struct forward_response *resp, forward_done_fn done, void *cls);

#endif
