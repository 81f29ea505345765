/* The xcap-diff notifier (RFC 5875 over SIP; threads: docs/architecture.md): a sofia-sip stack in
 * its own thread with its own event loop. HTTP threads never call into SIP: they commit a
 * change-log record in the document's transaction and call notifier_wake(), which only writes to an
 * eventfd registered in the SIP loop. The SIP thread then reads the change log after its cursor and
 * sends NOTIFYs. */
#ifndef XDM_NOTIFY_H
#define XDM_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>

#include "appusage.h"

struct store;
struct notifier;
struct charging;

struct notifier_config {
    const char *host;         /* numeric address for UDP and TCP */
    uint16_t port;            /* 0 = pick a free port */
    const char *xcap_root;    /* public XCAP root for xcap-root="...", e.g.
                                 "http://127.0.0.1:8080/xcap-root/" (trailing slash) */
    enum xdms_role role;      /* whose AUIDs may be watched */
    unsigned default_expires; /* seconds, when SUBSCRIBE has no Expires (default 3600) */
    unsigned max_expires;
    unsigned min_expires;
    /* Trusted SIP peers (numeric addresses: the SIP proxy or S-CSCF in front) whose
     * P-Asserted-Identity is believed, and server identities (SIP URIs) that may watch every
     * user's documents. NULL-terminated; NULL = no peer is trusted (every SUBSCRIBE gets 403) and
     * there are no servers. A SUBSCRIBE from a trusted peer without P-Asserted-Identity gets 403
     * too: the identity is never taken from From. */
    const char *const *trusted_peers;
    const char *const *server_identities;
    /* Added for the complete xcap-diff package: the shortest time between two NOTIFYs of one
     * subscription that report changes (RFC 5875 §4.7; config key notify_min_interval_ms,
     * recommended default 200). Changes made meanwhile are batched into the next NOTIFY, keeping
     * the ETag chain. 0 = no hold-off. Initial, refresh and final NOTIFYs are never held. */
    unsigned min_interval_ms;
    /* The most subscriptions this notifier holds (config key notify_max_subscriptions); a
     * SUBSCRIBE beyond them gets 503 with Retry-After, a takeover leaves the rest to another
     * instance. 0 = NOTIFY_DEFAULT_MAX_SUBS (10 000). A change finds its subscriptions through
     * an index, so the count costs memory, not time per change. */
    unsigned max_subscriptions;
    /* Several instances of one role over one store (docs/sip.md, "Several instances of a role").
     * instance names this one: the owner written in its subscriptions' records and the key of
     * its lease; NULL = "HOST:PORT" of the SIP listener. cluster: other instances may write the
     * store, so the change log is checked every poll_ms (0 = 20) for their commits, the lease is
     * renewed every second, and the subscriptions of an instance whose lease is older than
     * lease_s seconds (0 = 5) are taken over; without it one instance owns every record. */
    const char *instance;
    bool cluster;
    unsigned lease_s;
    unsigned poll_ms;
    /* The SIP URI advertised as Contact in 200 answers to SUBSCRIBE and in NOTIFYs (the address
     * shared by all instances, in front of which a SIP load balancer picks one); NULL = the
     * listener's own address. */
    const char *contact;
    /* Offline charging (charging.h): subscriptions started, refreshed and ended (Rf START,
     * INTERIM, STOP records of one session) and NOTIFYs answered 2xx are charged, each queued in
     * a store write of its own from the SIP thread. NULL: charging is off (borrowed). */
    struct charging *charging;
};

/* Whether name is usable as notifier_config.instance: 1 to NOTIFY_INSTANCE_MAX bytes of
 * letters, digits and "._:-[]" (the default name of an IPv6 listener is one). */
#define NOTIFY_INSTANCE_MAX 64
bool notifier_instance_name_ok(const char *name);
/* Whether uri is usable as notifier_config.contact: a sip: or sips: URI with a host, without
 * spaces or angle brackets. */
bool notifier_contact_ok(const char *uri);

/* Added: the store tables the notifier uses (a NULL-terminated list to add to
 * store_options.tables next to usage_store_tables()). When the store has them, subscriptions
 * (dialog state, watched set, mode, last change reported) survive a restart of the XDMS and
 * notifications resume after the last change reported; without them subscriptions live in
 * memory only. */
const char *const *notify_store_tables(void);

/* Starts the SIP thread. Returns 0, or -1 with a log line (e.g. port in use). */
int notifier_start(const struct notifier_config *cfg, struct store *store, struct notifier **out);
/* The SIP port actually bound. */
uint16_t notifier_port(const struct notifier *n);
/* This instance's name (notifier_config.instance, or its default). */
const char *notifier_instance(const struct notifier *n);

/* A configuration reload: the addresses whose P-Asserted-Identity is believed from now on
 * (as notifier_config.trusted_peers; copied). A request being handled uses the old list or the
 * new one, whole. Returns 0, or -1 (logged) when out of memory, the old list then staying. */
int notifier_set_trusted_peers(struct notifier *n, const char *const *peers);
/* Async-signal-safe and thread-safe: tells the SIP thread the change log has grown. */
void notifier_wake(struct notifier *n);
/* Stops the thread and frees. Subscriptions that are persisted (see notify_store_tables()) are
 * kept, with their state saved, for the next start; otherwise each gets a final NOTIFY
 * (Subscription-State: terminated;reason=deactivated) first. */
void notifier_stop(struct notifier *n);

#endif
