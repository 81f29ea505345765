/* What the files of the xcap-diff notifier share (notify.c, notify_watch.c, notify_change.c,
 * notify_diff.c, notify_subs.c); private to them and to tests/unit/test_notify.c.
 *
 * The first part holds the pure parts, which tests call directly: resource-list parsing,
 * authorization, selector building, xcap-diff rendering, the persisted subscription record and
 * the small SIP decisions that need no stack. None of these functions touch SIP, storage or
 * shared state, so they are thread-safe. Strings handed in are borrowed; results are owned by the
 * caller.
 *
 * The second part holds the notifier's state and the functions the files call on it. All of it
 * belongs to the notifier's SIP thread (docs/architecture.md), except the members of struct
 * notifier marked otherwise, so none of it takes a lock. */
#ifndef XDM_NOTIFY_INTERNAL_H
#define XDM_NOTIFY_INTERNAL_H

/* The argument types of the notifier's sofia-sip callbacks (su_wait.h, nta.h). They only take
 * effect where this header comes before every sofia-sip header, as in the notifier's files;
 * elsewhere they are unused. */
#define SU_ROOT_MAGIC_T struct notifier
#define SU_WAKEUP_ARG_T struct notifier
#define SU_TIMER_ARG_T struct notifier
#define NTA_AGENT_MAGIC_T struct notifier
#define NTA_LEG_MAGIC_T void
#define NTA_OUTGOING_MAGIC_T struct notify_sub

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "appusage.h"
#include "buf.h"
#include "charging.h"
#include "notify.h"
#include "store.h"
#include "xcap_uri.h"
#include "xdiff.h"

struct doc_key;
struct nodesel;
struct nta_agent_s;
struct nta_incoming_s;
struct nta_leg_s;
struct nta_outgoing_s;
struct sip_s;
struct sip_contact_s;
struct msg_content_type_s;
struct sip_event_s;
struct su_home_s;
struct su_root_s;
struct su_timer_s;
struct tag_type_s;

/* Bounds (local choices; every one is answered with a SIP status, never truncated silently). */
#define NOTIFY_MAX_BODY (64 * 1024)          /* SUBSCRIBE body -> 413 */
#define NOTIFY_MAX_ENTRIES 256               /* <entry> elements per SUBSCRIBE -> 413 */
#define NOTIFY_DEFAULT_MAX_SUBS 10000        /* subscriptions in one XDMS -> 503 (configurable) */
#define NOTIFY_MAX_SUBS_PER_USER 100         /* per subscriber identity -> 403 */
#define NOTIFY_MAX_PENDING 256               /* queued changes per subscription, then full state */
#define NOTIFY_MAX_NOTIFY_BODY (1024 * 1024) /* one NOTIFY body, else the subscription ends */
#define NOTIFY_DEFAULT_EXPIRES 3600          /* RFC 5875 §4.8 */
#define NOTIFY_DEFAULT_MAX_EXPIRES 86400

#define NOTIFY_MIME_DIFF "application/xcap-diff+xml"
#define NOTIFY_MIME_LIST "application/resource-lists+xml"
#define NOTIFY_TABLE "notify_subs"
#define NOTIFY_LEASE_TABLE "notify_leases" /* instance name -> lease (cluster mode) */
#define NOTIFY_DEFAULT_LEASE_S 5
#define NOTIFY_DEFAULT_POLL_MS 20
#define NOTIFY_SEL_MAX (8 * XCAP_URI_MAX_SEGMENT)     /* one document or node selector */
#define NOTIFY_KEY_MAX (4 * XCAP_URI_MAX_SEGMENT + 8) /* notify_change_key_bytes() output */
#define NOTIFY_KNOWN_BUCKETS 1024

/* RFC 5875 §4.1 diff-processing. */
enum notify_mode { NOTIFY_NO_PATCHING, NOTIFY_XCAP_PATCHING, NOTIFY_AGGREGATE };

/* The mode named by an Event header's parameters ("diff-processing=..." among them, as sofia
 * gives them; NULL-terminated, may be NULL). Absent or unknown values mean no-patching
 * (RFC 5875 §4.1). */
enum notify_mode notify_mode_parse(const char *const *params);
const char *notify_mode_name(enum notify_mode m);

enum notify_watch_kind {
    NOTIFY_WATCH_DOCUMENT,
    NOTIFY_WATCH_DIRECTORY, /* path "" or a prefix ending in '/': every document below it */
    NOTIFY_WATCH_ELEMENT,   /* one element of one document (RFC 5875 §4.3) */
    NOTIFY_WATCH_ATTRIBUTE, /* one attribute of one document */
};

/* One watched resource. Invariants: auid is an AUID of the notifier's role; a users-tree watch has
 * an XUI unless all_users (a trusted server watching "<auid>/users/"); a global one has xui NULL;
 * is_dir == (kind == NOTIFY_WATCH_DIRECTORY); element and attribute watches have sel (parsed node
 * selector), sel_text (the value of the report's sel attribute) and decls. */
struct notify_watch {
    const struct appusage *au; /* the registry row of auid */
    enum notify_watch_kind kind;
    char *auid;
    bool global;
    bool all_users;
    char *xui;  /* decoded XUI */
    char *path; /* decoded document path, or directory prefix */
    bool is_dir;
    bool hide_server_owned; /* a global directory watched by a client: skip documents that
                               usage_server_owned() reserves for trusted servers */
    char *node_sel;         /* decoded node selector as sent, or NULL */
    char *query;            /* decoded query (xmlns() bindings), or NULL */
    struct nodesel *sel;    /* parsed node selector */
    char *sel_text;         /* "<doc-selector>/~~/<node-selector>", percent-encoded */
    char *decls;            /* " xmlns:p=\"uri\"" for the selector's prefixes, or "" */
    uint64_t last_hash;     /* digest of the last report sent (0 = none yet) */
};

struct notify_watchlist {
    struct notify_watch *items;
    size_t n;
};

void notify_watch_list_release(struct notify_watchlist *wl);

/* Parses an application/resource-lists+xml SUBSCRIBE body (RFC 5875 §4.3) into out
 * (zeroed first). Each <entry uri> anywhere under the root is a selector relative to xcap_root,
 * or an absolute URI below xcap_root, or an absolute path below its path: a document, a directory
 * (trailing '/'), "<auid>/users/" (every user's documents; kept for trusted servers only, see
 * notify_watch_list_authorize()), or an element or attribute (a node selector after "~~", with
 * prefixes bound by an xmlns() query). The full state of an all-users watch lists no documents
 * (it would outgrow any NOTIFY); it reports every later change. Entries this notifier cannot watch
 * (another role's AUID, another server, namespace selectors, malformed selectors, duplicates) are
 * left out and counted in *skipped. Returns 0, or a SIP status: 400 (not well-formed, DOCTYPE, not
 * a resource-lists document), 413 (more than NOTIFY_MAX_ENTRIES entries, or over the default
 * limits of prescan.h), 500 (out of memory). */
int notify_watch_parse(const char *body, size_t len, const char *xcap_root, enum xdms_role role,
                       struct notify_watchlist *out, size_t *skipped);

/* Removes the watches identity may not read (RFC 4825 §5.7; OMA Presence SIMPLE XDM 2.0 §5; RFC
 * 5875 §4.5): its own users/<XUI>/ tree and global/ (except server-owned documents, see
 * usage_server_owned()), or everything when is_server (only servers keep all-users watches).
 * Returns how many were removed. */
size_t notify_watch_list_authorize(struct notify_watchlist *wl, const char *identity,
                                   bool is_server);

/* True when a change of document k concerns w (same document, or below the directory, and not
 * hidden from w). */
bool notify_watch_matches(const struct notify_watch *w, const struct doc_key *k);

/* Appends the document selector of k relative to the XCAP root ("auid/users/<xui>/<path>" or
 * "auid/global/<path>"), each segment percent-encoded where RFC 3986 pchar does not allow the
 * byte. Returns 0 or -1 (buffer full). */
int notify_watch_sel_append(struct buf *b, const struct doc_key *k);

/* xcap-diff body (RFC 5874 §4): open, any number of documents, close. prev_etag or
 * new_etag may be NULL or "" to leave the attribute out (created / deleted documents).
 * notify_diff_document() writes an empty <document/>; notify_diff_document_open() leaves it open
 * for patch operations or <body-not-changed/>, closed by notify_diff_document_close(). Each
 * returns 0 or -1 (buffer full). */
int notify_diff_open(struct buf *b, const char *xcap_root);
int notify_diff_document(struct buf *b, const char *sel, const char *prev_etag,
                         const char *new_etag);
int notify_diff_document_open(struct buf *b, const char *sel, const char *prev_etag,
                              const char *new_etag);
int notify_diff_document_close(struct buf *b);
int notify_diff_close(struct buf *b);

/* Extracts the identity URI from a From or P-Asserted-Identity value (name-addr or addr-spec;
 * first item of a list): "scheme:user@host[:port]" without parameters or headers, in its canonical
 * spelling (xcap_uri_xui_canonical()). Only sip, sips and tel are accepted. Returns a malloc'd
 * string or NULL. */
char *notify_identity_parse(const char *value);

/* The duration granted for a SUBSCRIBE (RFC 6665 §4.2.1.1): requested when present, else the
 * default (cfg 0 = 3600), clamped to the maximum (cfg 0 = 86400); 0 stays 0 (unsubscribe or
 * fetch). Returns 0 with *out set, or 423 when 0 < requested < cfg->min_expires. */
int notify_expires_decide(const struct notifier_config *cfg, bool present, unsigned long requested,
                          unsigned *out);

/* True when sa is one of trusted (numeric addresses; IPv4-mapped IPv6 compares as IPv4). With
 * trusted NULL or empty nobody is trusted. */
bool notify_peer_trusted(const struct sockaddr *sa, const char *const *trusted);

/* True when identity is one of servers (NULL-terminated, may be NULL). */
bool notify_identity_is_server(const char *identity, const char *const *servers);

/* True when an Accept header list admits application/xcap-diff+xml (types as received, n of them;
 * n == 0 means no Accept header and admits it). */
bool notify_accept_allows(const char *const *types, size_t n);

/* The persisted form of one subscription (table NOTIFY_TABLE): the dialog (RFC 6665 §4.1.2.2:
 * Call-ID, both URIs with their tags, remote target, route set, CSeqs), who subscribed, how and
 * to what, until when, and how far it has been notified. Invariants when decoded: every string
 * is non-NULL (route may be ""), body holds body_len bytes (the resource list that defines the
 * watched set). */
struct notify_record {
    char *call_id;
    char *local;  /* our From for NOTIFYs: "<uri>;tag=..." */
    char *remote; /* the subscriber: "<uri>;tag=..." */
    char *target; /* remote target URI (the Contact) */
    char *route;  /* route set as a Route header value, or "" */
    char *identity;
    char *event; /* Event header value echoed in NOTIFYs */
    enum notify_mode mode;
    int64_t expires;  /* wall-clock seconds since the epoch */
    uint32_t cseq;    /* last CSeq we used in the dialog */
    uint32_t rseq;    /* last CSeq the subscriber used */
    uint64_t seq;     /* every change-log record up to this one has been reported */
    bool full;        /* the next NOTIFY must carry the full state */
    uint64_t *hashes; /* per watch: digest of the last element/attribute report (0 = none) */
    size_t n_hashes;
    char *body;
    size_t body_len;
    char *owner; /* the instance that sends its NOTIFYs; "" in records older than owners */
};

void notify_subs_record_release(struct notify_record *r);
/* Appends the record's bytes. Returns 0 or -1 (buffer full). */
int notify_subs_record_encode(const struct notify_record *r, struct buf *out);
/* Parses bytes written by notify_subs_record_encode() into out (zeroed first). Returns 0 or -1
 * (malformed, out of memory; out released). */
int notify_subs_record_decode(const char *data, size_t len, struct notify_record *out);

/* A lease (table NOTIFY_LEASE_TABLE, key = instance name): the wall-clock milliseconds of the
 * owner's last heartbeat, as decimal text. notify_lease_decode() returns false for anything
 * else. notify_lease_expired() is true when that heartbeat is more than lease_s seconds before
 * now_ms (a heartbeat in the future, from a clock ahead of ours, is not expired). */
int notify_lease_encode(int64_t ms, char *out, size_t max);
bool notify_lease_decode(const void *val, size_t len, int64_t *ms);
bool notify_lease_expired(int64_t heartbeat_ms, int64_t now_ms, unsigned lease_s);
/* The default instance name, "HOST:PORT" ("[v6]:PORT" for an IPv6 host), written to out (max
 * bytes). Returns 0, or -1 when it does not fit. */
int notify_instance_default(const char *host, uint16_t port, char *out, size_t max);

/* ------------------------------------------------------------------------------------------ */
/* Notifier state (SIP thread)                                                                 */

/* The known prologs of notify_change.c. */
struct notify_known;

/* One change-log record as the subscriptions watching its document see it, shared between them
 * and freed with its last reference. */
struct notify_change {
    unsigned refs;
    uint64_t seq;
    char *sel;
    char prev[STORE_ETAG_MAX]; /* "" for a created document */
    char next[STORE_ETAG_MAX]; /* "" for a deleted document */
    bool has_op;               /* op turns version prev into version next exactly */
    struct xdiff_op op;
    /* The whole NOTIFY body that reports this change alone, per diff-processing mode, built for
     * the first subscription that needs it and reused by the others (NUL-terminated). */
    char *body[3];
    size_t body_len[3];
};

/* One subscription = one dialog. Invariants: at most one NOTIFY in flight (orq); once final_sent,
 * nothing more is sent and the subscription is freed when that NOTIFY completes; a dead
 * subscription is only waiting to be freed outside any callback of its own; pending holds
 * changes in commit order, all with seq > seq. */
struct notify_sub {
    struct notify_sub *next;
    struct notify_sub **pprev; /* where n->subs or the previous one points at s; NULL: unlinked */
    struct notifier *n;
    struct nta_leg_s *leg;
    struct nta_outgoing_s *orq;
    char *key;      /* our dialog tag; the key of the persisted record */
    char *identity; /* the subscriber (P-Asserted-Identity) */
    char *event;    /* Event header value echoed in NOTIFY (type and id, RFC 6665 §8.2.1) */
    enum notify_mode mode;
    struct notify_watchlist watches;
    char *body; /* the resource list the watches come from */
    size_t body_len;
    /* the dialog as persisted (RFC 6665 §4.1.2.2) */
    char *call_id, *local, *remote, *target, *route;
    int64_t expires_ms;   /* monotonic milliseconds */
    int64_t expires_wall; /* the same, wall-clock seconds */
    size_t expiry_pos;    /* 1 + its place in n->expiry; 0: not there */
    uint64_t seq;         /* every change-log record up to seq is handled */
    uint64_t sent_seq;    /* while a NOTIFY is in flight: what was reported before it */
    int64_t last_sent_ms; /* monotonic, of the last NOTIFY reporting changes */
    struct notify_change **pending;
    size_t n_pending, cap_pending; /* the array stays, for the next changes, until s is freed */
    bool full_pending;             /* the next NOTIFY carries the full state (RFC 5875 §4.6) */
    bool force_notify;             /* a refresh waits for its NOTIFY (RFC 6665 §4.2.1.2) */
    bool nodes_due;                /* an element or attribute watch may have changed */
    const char *term_reason;       /* set: the next NOTIFY is the final one */
    bool final_sent;
    bool dead;
    bool forget;       /* the subscription ended: its record goes too */
    bool dirty;        /* the persisted record is out of date */
    bool urgent;       /* ... and must be saved now, not at the next tick */
    bool sending;      /* inside nta_outgoing_tcreate() */
    int sync_status;   /* final status reported while sending */
    bool charged;      /* a START record was charged: its end is a STOP record */
    size_t notify_len; /* body bytes of the NOTIFY in flight (charging) */
    /* notify_index.c: one posting per watch while s is in the notifier's index */
    struct notify_post *posts;
    size_t n_posts;
    uint64_t hit_stamp; /* the index lookup that last found s */
    size_t hit_slot;    /* its place in that lookup's hits */
    bool due;           /* on n->due: the next poll flushes it */
    bool marked;        /* on n->marked: the next save looks at it */
    bool held;          /* on n->held: the hold timer flushes it */
    bool buried;        /* on n->dead: the next reap frees it */
};

/* The linked subscriptions in expiry order (notify_expiry.c): a binary min-heap on expires_ms,
 * each subscription knowing its place (expiry_pos), so that the earliest is the root, and a
 * refresh or an end costs O(log n) without visiting the others. */
struct notify_expiry {
    struct notify_sub **v;
    size_t n, cap;
};

/* Room for want subscriptions. Returns 0 or -1 (out of memory). */
int notify_expiry_reserve(struct notify_expiry *h, size_t want);
/* Puts s in the heap under its expires_ms, or moves it when it is there already (a refresh).
 * Returns 0, or -1 out of memory (s not added). */
int notify_expiry_add(struct notify_expiry *h, struct notify_sub *s);
/* Moves s (in the heap) to the place of its changed expires_ms; no-op when it is not there. */
void notify_expiry_update(struct notify_expiry *h, struct notify_sub *s);
/* Takes s out; no-op when it is not there. */
void notify_expiry_remove(struct notify_expiry *h, struct notify_sub *s);
/* The subscription that expires first, or NULL when the heap is empty. */
struct notify_sub *notify_expiry_first(const struct notify_expiry *h);
/* Frees the heap (the subscriptions are not freed; their expiry_pos is reset). */
void notify_expiry_release(struct notify_expiry *h);

/* The subscription index (notify_index.c): every watch of every linked subscription is posted
 * under the one key a changed document can be looked up by, so a change finds the subscriptions
 * that watch it without visiting the others. Key forms: a document, element or attribute watch
 * under its document (auid, tree, XUI, path); a directory watch (any prefix, "" included: a
 * user's whole tree or the global tree of an AUID) under its tree (auid, tree, XUI); an all-users
 * watch under its AUID. A lookup visits three chains and confirms each posting with
 * notify_watch_matches(). Each subscription is also posted under its subscriber's identity, for
 * the per-subscriber bound. */
struct notify_post {
    struct notify_post *next;
    struct notify_post **pprev;
    uint64_t hash;
    struct notify_sub *sub;
    size_t watch; /* index into sub->watches; SIZE_MAX: the identity posting */
};

/* One subscription found by a lookup: doc (a document or directory watch matched) and node (an
 * element or attribute watch of the document matched). */
struct notify_hit {
    struct notify_sub *sub;
    bool doc, node;
};

struct notify_index {
    struct notify_post **buckets;
    size_t n_buckets; /* a power of two, or 0 before the first post */
    size_t n_posts;
    uint64_t stamp;
    struct notify_hit *hits; /* the last lookup's result, reused */
    size_t n_hits, cap_hits;
};

/* Posts every watch of s (s->posts must be empty). Returns 0, or -1 out of memory (nothing
 * posted). */
int notify_index_add(struct notify_index *ix, struct notify_sub *s);
/* Removes the postings of s (no-op when it has none). */
void notify_index_remove(struct notify_index *ix, struct notify_sub *s);
/* The subscriptions with a watch that notify_watch_matches() the document k, each once, in
 * ix->hits[0..ix->n_hits) (valid until the next call). Returns 0, or -1 out of memory (the hits
 * are then incomplete). */
int notify_index_lookup(struct notify_index *ix, const struct doc_key *k);
/* The live (not dead) subscriptions of identity (compared as xcap_uri_xui_equal() does); 0 also
 * when out of memory. */
size_t notify_index_count_identity(const struct notify_index *ix, const char *identity);
/* Frees the table (every subscription's postings must be removed first). */
void notify_index_release(struct notify_index *ix);

struct notifier {
    /* Set before the thread starts, read-only afterwards; except trusted, which
     * notifier_set_trusted_peers() replaces under trusted_lock. */
    char *host;
    char *xcap_root;
    char **trusted; /* NULL = nobody */
    pthread_mutex_t trusted_lock;
    char **servers;             /* may be NULL */
    struct notifier_config cfg; /* string members point at the copies above; not
                                   trusted_peers (use trusted) */
    struct store *store;
    struct buf charge_pending; /* NOTIFY charging records not queued yet (charging_defer()) */
    int efd;
    pthread_t thread;
    atomic_bool stop_requested;

    /* Start-up handshake. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int start_rc; /* 1 running, -1 failed, 0 not yet known */
    uint16_t port;
    char instance[NOTIFY_INSTANCE_MAX + 1]; /* this instance's name; set before the start returns */
    char *contact;                          /* notifier_config.contact, copied, or NULL */

    /* SIP thread only. */
    struct su_root_s *root;
    struct nta_agent_s *agent;
    struct nta_leg_s *default_leg;
    struct su_timer_s *tick;
    struct su_timer_s *hold;
    struct su_timer_s *deadline;
    struct su_timer_s *fast;           /* cluster: every poll_ms */
    struct sip_contact_s *contact_hdr; /* the Contact we advertise (in home) */
    struct msg_content_type_s *ct_hdr; /* application/xcap-diff+xml, parsed once (in home) */
    struct sip_event_s *event_hdr;     /* "xcap-diff", parsed once (in home) */
    struct su_home_s *home;
    int wait_index;
    int64_t last_heartbeat_ms; /* cluster: monotonic ms of the last lease renewal */
    int64_t renewed_since_ms;  /* cluster: monotonic ms since when every renewal succeeded, 0 =
                                  the last one failed */
    int store_wake_fd;         /* cluster: store_wake_fd() registered, or -1 */
    int store_wake_index;      /* its registration in root, or -1 */
    bool have_lease;           /* cluster: our lease is written */
    bool heartbeat_failed;     /* cluster: the last renewal failed (logged once) */
    struct notify_sub *subs;
    size_t n_subs;
    uint64_t cursor; /* last change-log sequence handled */
    unsigned depth;  /* nesting of our callbacks; reaping happens at depth 0 */
    bool in_poll, poll_again, stopping, broken;
    bool persist;    /* the store has NOTIFY_TABLE */
    bool hold_armed; /* hold fires at hold_due (monotonic ms) */
    bool reap_due;   /* some subscription is dead */
    bool reap_scan;  /* ... and the next reap walks every subscription (not only n->dead) */
    int64_t hold_due;
    struct notify_known *known[NOTIFY_KNOWN_BUCKETS];
    size_t n_known;
    struct notify_index index; /* the watches of the linked subscriptions */
    struct notify_sub **due;   /* found by the change log since the last flush */
    size_t n_due, cap_due;
    bool sweep; /* the next flush visits every subscription, not only the due ones */
    struct notify_sub **marked; /* dirty or ended since the last save (notify_subs_mark()) */
    size_t n_marked, cap_marked;
    bool save_scan; /* the next save looks at every subscription, not only the marked ones */
    struct notify_expiry expiry; /* the linked subscriptions by expiry */
    struct su_timer_s *expire;   /* fires at the earliest expiry (expire_due, monotonic ms) */
    bool expire_armed;
    int64_t expire_due;
    struct notify_sub **dead; /* ended since the last reap (notify_subs_kill()) */
    size_t n_dead, cap_dead;
    struct notify_sub **held; /* held back by min_interval_ms (notify_send.c) */
    size_t n_held, cap_held;
};

/* ---- notify_sip.c: clocks ---- */

/* Clocks: monotonic seconds, monotonic milliseconds, wall-clock seconds since the epoch. */
int64_t notify_now(void);
int64_t notify_now_ms(void);
int64_t notify_wall(void);

/* ---- notify_send.c: NOTIFY sending ---- */

/* Reads the change log after the cursor and sends every due NOTIFY, visiting every subscription
 * (re-entrant calls only ask for another round). */
void notifier_poll(struct notifier *n);
/* The same, visiting only the subscriptions the new change-log records concern (and those put on
 * n->due meanwhile): the wake-up after a commit. */
void notifier_poll_changes(struct notifier *n);
/* Around every callback of the SIP thread: the last leave reaps ended subscriptions and, while
 * stopping, breaks the loop once no NOTIFY awaits its answer. */
void notifier_enter(struct notifier *n);
void notifier_leave(struct notifier *n);

/* ---- notify_dialog.c: SUBSCRIBE checks and dialogs ---- */

/* The nta request callback of every subscription's dialog (magic: its struct notify_sub):
 * refresh SUBSCRIBEs, ACK, 405 for anything else. Always returns 0 with irq answered. */
int notify_on_dialog_request(void *magic, struct nta_leg_s *leg, struct nta_incoming_s *irq,
                             const struct sip_s *sip);
/* Answers irq with status and the given tags; returns 0. */
int notify_reply(struct nta_incoming_s *irq, int status, const char *phrase,
                 struct tag_type_s const *tag, intptr_t value, ...);
/* Answers a refused SUBSCRIBE with the companion header its status calls for; returns 0. */
int notify_refuse(struct notifier *n, struct nta_incoming_s *irq, int status, const char *phrase);
/* Whether the request came from a trusted peer (else it was answered 403). */
bool notify_request_trusted(struct notifier *n, struct nta_incoming_s *irq);
/* The subscriber's P-Asserted-Identity (malloc'd), or NULL. */
char *notify_subscriber(const struct sip_s *sip);
/* The Event header's id parameter (malloc'd), or NULL. */
char *notify_event_value(const struct sip_s *sip);
/* Checks body headers and parses the watched set of a SUBSCRIBE (0, or a status to refuse). */
int notify_read_body(struct notifier *n, const struct sip_s *sip, const char *identity,
                     struct notify_watchlist *wl, bool *has_body, const char **phrase);
/* A malloc'd copy of the body. Returns 0 or -1. */
int notify_take_body(const struct sip_s *sip, char **body, size_t *len);
/* Live subscriptions of one subscriber. */
size_t notify_count_user(const struct notifier *n, const char *identity);
/* Call-ID and both ends of the dialog, for the persisted record. Returns 0 or -1. */
int notify_dialog_capture(struct notify_sub *s, const struct sip_s *sip);
void notify_dialog_set_expiry(struct notify_sub *s, unsigned expires);
/* Common checks of initial and refresh SUBSCRIBEs (0 with *expires, or answered and non-zero). */
int notify_check_subscribe(struct notifier *n, struct nta_incoming_s *irq, const struct sip_s *sip,
                           unsigned *expires);

/* ---- notify_subs.c: lifetime and persistence ---- */

/* Frees s with its dialog, NOTIFY in flight and queued changes. s must be unlinked from n->subs. */
void notify_subs_free(struct notify_sub *s);
/* Links s (a new, restored or taken-over subscription, not yet linked) at the head of n->subs,
 * counts it, posts its watches in n->index (notify_subs_index()) and puts it in the expiry heap
 * under s->expires_ms with the expiry timer set; ends s (out of memory) when it cannot be
 * indexed or put there. */
void notify_subs_link(struct notifier *n, struct notify_sub *s);
/* Posts the watches of s, linked or given a new watched set, in n->index (notify_index.c); ends
 * s when that fails (out of memory). */
void notify_subs_index(struct notifier *n, struct notify_sub *s);
/* After s was linked or s->expires_ms changed (a refresh): puts or moves s in the expiry heap and
 * sets the expiry timer for the earliest; ends s when it cannot be put there (out of memory).
 * No-op for a subscription not linked or ended. */
void notify_subs_expiry_moved(struct notify_sub *s);
/* Sets the expiry timer (n->expire) for the earliest expiry, unless it fires before already.
 * When it fires, every subscription whose time has come gets its final NOTIFY
 * (terminated;reason=timeout, RFC 6665 §4.2.2) at a poll it asks for; no other is visited. */
void notify_subs_expiry_arm(struct notifier *n);
/* Marks the record of s out of date (s->dirty) and puts s on n->marked, so a save that is not
 * a scan (notify_subs_save()) writes it. Setting s->dirty alone leaves the record to the next
 * scan (the tick's, once a second). */
void notify_subs_mark(struct notify_sub *s);
/* Marks s as ended; it is freed, and its record deleted, at the next notify_subs_reap(). */
void notify_subs_kill(struct notify_sub *s);
/* Puts s, already marked dead, on n->dead (once) for the next reap; on failure (out of memory)
 * that reap walks every subscription instead. */
void notify_subs_bury(struct notify_sub *s);
/* Writes the records of the live subscriptions that need it (all of them, or only dirty ones)
 * and deletes those of ended ones, in one durable transaction; no-op without NOTIFY_TABLE. Must
 * not run inside a store transaction. Failures are logged and retried at the next save. Unless
 * all or n->save_scan, only the subscriptions on n->marked are looked at (a SUBSCRIBE's save
 * then costs its own record, not one visit of every subscription). */
void notify_subs_save(struct notifier *n, bool all);
/* Unlinks and frees the dead subscriptions (after saving the deletions) when some are: those on
 * n->dead, or every dead one when n->reap_scan asks for a walk. */
void notify_subs_reap(struct notifier *n);
/* Charges an event of subscription s (charging.h; nothing when charging is off): its session is
 * the dialog tag, its correlation id the Call-ID. SUB_STARTED marks s as charged, so that its
 * end (at the reap of an ended subscription) is charged as SUB_ENDED. */
void notify_subs_charge(struct notify_sub *s, enum charging_event ev, unsigned result,
                        size_t bytes_in, size_t bytes_out);
/* Our lease vanished (another instance declared us dead and took our subscriptions over): drops
 * every subscription held here without touching their records. */
void notify_subs_lost(struct notifier *n);
/* ---- notify_dialog.c: restart ---- */

/* At start-up: sets n->persist (NOTIFY_TABLE exists and was read) and re-creates the subscriptions
 * saved by an earlier run (dialogs, watched sets authorized again, progress); n->cursor then
 * goes back to the oldest progress restored. Expired or unreadable records are deleted. */
void notify_dialog_restore(struct notifier *n);
/* Re-creates one saved subscription (key and record are taken: key set to NULL, the record's
 * strings moved). Returns NULL when it cannot or need not live on (expired, unreadable, no
 * dialog), or the subscription, not yet linked into n->subs. */
struct notify_sub *notify_dialog_restore_one(struct notifier *n, char **key, bool ok,
                                             struct notify_record *r);

/* ---- notify_subscribe.c: SUBSCRIBE admission ---- */

/* The nta callback of requests outside any dialog (magic: the notifier). */
int notifier_on_request(void *magic, struct nta_leg_s *leg, struct nta_incoming_s *irq,
                        const struct sip_s *sip);

/* ---- notify_cluster.c: several instances over one store ---- */

/* At start-up (cluster mode): writes our lease. Returns 0 or -1 (logged). */
int notify_cluster_start(struct notifier *n);
/* Every poll_ms (cluster mode): polls the change log when another process committed, saves the
 * progress of subscriptions whose NOTIFYs were answered; once a second renews the lease and
 * takes over the subscriptions of instances whose lease expired. */
void notify_cluster_tick(struct notifier *n);
/* Takes over, in one write transaction, the saved subscriptions whose owner's lease expired (or
 * that have no owner with a lease: force also looks for those) and re-creates their dialogs;
 * changes since each one's saved position are then reported. */
void notify_cluster_takeover(struct notifier *n, bool force);
/* For an in-dialog request whose dialog (our tag) is not held here: 0 when its record was taken
 * over now (*out set), 481 when no record exists, 503 when a live instance holds it. */
int notify_cluster_claim(struct notifier *n, const char *tag, struct notify_sub **out);
/* Registers the store's wake-up descriptor (store_wake_fd()), when it has one, in the loop
 * (cluster mode), and removes it. */
void notify_cluster_wake_start(struct notifier *n);
void notify_cluster_wake_stop(struct notifier *n);
/* At a stop (cluster mode): marks our lease expired, so that the others take our saved
 * subscriptions over at once. */
void notify_cluster_stop(struct notifier *n);

/* ---- notify_change.c: the change log ---- */

/* Puts s on n->due (once), for the next flush. */
void notify_change_due(struct notifier *n, struct notify_sub *s);
/* Drops the changes queued on s. */
void notify_change_pending_clear(struct notify_sub *s);
/* Takes and drops a reference to c (freed with its last; NULL is ignored). */
void notify_change_ref(struct notify_change *c);
void notify_change_unref(struct notify_change *c);
/* Writes k as "auid\0tree\0xui\0path\0" to out (max bytes). Returns the length, or 0 when it
 * does not fit. */
size_t notify_change_key_bytes(const struct doc_key *k, char *out, size_t max);
/* Reads, in t, the prolog digests of the documents keyed by keys (notify_change_key_bytes()
 * form), so that a whole-document write that follows can be sent as a patch. Frees every key. */
void notify_change_learn(struct notifier *n, struct store_txn *t, char **keys, size_t count);
/* Forgets every known prolog. */
void notify_change_known_clear(struct notifier *n);
/* Reads, in t, at most NOTIFY_MAX_CHANGES_PER_POLL change-log records after n->cursor, advances
 * the cursor and queues each record on the subscriptions that watch its document (or asks them
 * for the full state when it cannot). *more: records are left for another round. Returns the
 * store's status. */
enum store_rc notify_change_read(struct notifier *n, struct store_txn *t, bool *more);

/* ---- notify_diff.c: NOTIFY bodies of a subscription ---- */

/* Appends the full state of s read in t (RFC 5875 §4.6): every existing watched document,
 * directories expanded, then every element and attribute watch. Returns 0 or -1 (buffer full, store
 * error). */
int notify_diff_full(struct notify_sub *s, struct store_txn *t, struct buf *b);
/* Appends the changes queued on s as its mode says (RFC 5875 §4.6), counting <document>s in *items.
 * Returns 0 or -1. */
int notify_diff_pending(struct notify_sub *s, struct buf *b, size_t *items);
/* Appends the element and attribute reports of s read in t (RFC 5874 §4; RFC 5875 §4.6): all of
 * them, or only those whose content changed since the last report; counts them in *items. Returns 0
 * or -1. */
int notify_diff_nodes(struct notify_sub *s, struct store_txn *t, struct buf *b, bool all,
                      size_t *items);

#endif
