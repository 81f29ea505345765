/* The XDMS request path (docs/architecture.md): receive (httpd) -> authorize the peer -> parse ->
 * resolve -> authorize the user -> execute (engine) -> respond -> notify. Each phase is a function
 * named for it; server_handle() is the httpd handler that runs them in order. */
#ifndef XDM_SERVER_H
#define XDM_SERVER_H

#include "appusage.h"
#include "httpd.h"

struct engine;
struct notifier;
struct xdms_server;

enum peer_role { PEER_PROXY, PEER_SERVER };

struct xdms_server_config {
    enum xdms_role role;
    const char *root_path;      /* path of the XCAP root, e.g. "/xcap-root" */
    size_t max_uri;             /* longest request-target; longer ones get 414 */
    const char *default_domain; /* domain for bare user names used as XUI */
    const char *xcap_root;      /* public XCAP root ("http://host/xcap-root/") */
    unsigned retry_after;       /* seconds in the Retry-After of a 503 (RFC 9110 §10.2.3);
                                   0 = 1 */
    /* Parked writes (docs/performance.md "Parked writes"): a write request (PUT or DELETE of a
     * document, element or attribute) does not hold an HTTP thread while it waits for its
     * durable commit. Its connection is suspended (http_request_defer) and the write is run by
     * one of write_threads threads, which wait in the store's group commit together; the answer
     * is sent once the group's commit is on disk. 0 = off: writes run on the HTTP thread. At
     * most max_parked_writes writes wait or run at once; beyond that a write gets 503 with
     * Retry-After (RFC 9110 §15.6.4). */
    unsigned write_threads;
    unsigned max_parked_writes;
    /* Called for every answer sent, on the thread that sends it, with the handler's time in
     * seconds (the access log and metrics of a parked write, whose answer comes later). NULL:
     * none. */
    void (*answered)(const struct http_request *req, const struct http_response *resp,
                     double seconds);
};

/* Limits of the keys write_threads and max_parked_writes. */
#define SERVER_WRITE_THREADS_MAX 1024
#define SERVER_PARKED_WRITES_MAX 100000

struct xdms_server *server_new(const struct xdms_server_config *cfg, struct engine *engine,
                               struct notifier *notifier);
void server_free(struct xdms_server *s);
/* Graceful stop of the parked writes: every write parked so far is run and answered, then the
 * write threads end; writes arriving afterwards run on their HTTP thread. Call before
 * httpd_stop() (libmicrohttpd must have no suspended connection then). Idempotent; server_free()
 * calls it too. */
void server_stop_writes(struct xdms_server *s);

/* Adds a trusted TCP peer from "ADDRESS server" (ADDRESS numeric IPv4/IPv6, or a CIDR like
 * 127.0.0.0/8), or, for mutual TLS, "subject:DN ROLE" (RFC 4514 subject of the client
 * certificate, e.g. subject:CN=aggproxy,O=Example) or "sha256:HEX ROLE" (its SHA-256 fingerprint,
 * colons allowed), ROLE = proxy | server. A certificate peer of role proxy may end with
 * "domain=D1[,D2...]": it may then assert identities of those domains only (sip:/sips: URIs whose
 * host is one of them; another identity, tel: included, gets 403), as a partner's XDMS trusts
 * another operator's proxy for the partner's own users (docs/partners.md). At most
 * SERVER_PEER_DOMAINS_MAX bytes of domains. "ADDRESS proxy" is refused (-1): an address never
 * grants the proxy role. Certificate peers match only on a TLS listener with tls_client_ca; a
 * client certificate that does not verify is refused (403) whatever the address. Without any
 * peer no TCP client is trusted. Requests on the UNIX-domain socket always have the proxy role.
 * Returns 0, or -1 with a log line. Call before serving. */
int server_add_peer(struct xdms_server *s, const char *spec);
#define SERVER_PEER_DOMAINS_MAX 1024

/* Whether identity (a canonical XUI: sip:user@host, host lower-case) has one of domains as its
 * host (domains: comma-separated, lower-case). tel: and other URIs without a host: false. */
bool server_identity_in_domains(const char *identity, const char *domains);

/* The acting user of an X-3GPP-Asserted-Identity value (TS 24.109 §7): its first URI, quoted,
 * in angle brackets or bare, percent-decoded like an XUI, in its canonical spelling
 * (xcap_uri_xui_canonical()). h may be NULL. Returns a malloc'd string, or NULL when there is no
 * usable URI (empty, unbalanced quote or bracket) or memory ran out. */
char *server_asserted_identity(const char *h);

/* A configuration reload: s trusts exactly the peers added to from (a server made only to
 * collect them, e.g. with server_new(cfg, NULL, NULL)); from is left with none. Safe while s
 * serves: a request checks its peer against either the old list or the new one, whole. */
void server_take_peers(struct xdms_server *s, struct xdms_server *from);
/* How many peers s trusts (for the reload's log line). */
size_t server_peer_count(struct xdms_server *s);

/* httpd_handler_fn; cls is the struct xdms_server. A write may be parked: the request is then
 * deferred (http_request_deferred() is true, resp is unused) and answered from a write thread,
 * after cfg.answered is called. */
void server_handle(void *cls, const struct http_request *req, struct http_response *resp);

#endif
