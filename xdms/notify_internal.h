/* The pure parts of the xcap-diff notifier (xdms/notify.c), exposed for tests/unit/test_notify.c
 * only: resource-list parsing, authorization, selector building, xcap-diff rendering, the
 * persisted subscription record and the small SIP decisions that need no stack. None of these
 * functions touch SIP, storage or shared state, so they are thread-safe. Strings handed in are
 * borrowed; results are owned by the caller. */
#ifndef XDM_NOTIFY_INTERNAL_H
#define XDM_NOTIFY_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "appusage.h"
#include "notify.h"

struct buf;
struct doc_key;
struct nodesel;

/* Bounds (local choices; every one is answered with a SIP status, never truncated silently). */
#define NOTIFY_MAX_BODY (64 * 1024)          /* SUBSCRIBE body -> 413 */
#define NOTIFY_MAX_ENTRIES 256               /* <entry> elements per SUBSCRIBE -> 413 */
#define NOTIFY_MAX_SUBS 10000                /* subscriptions in one XDMS -> 503 */
#define NOTIFY_MAX_SUBS_PER_USER 100         /* per subscriber identity -> 403 */
#define NOTIFY_MAX_PENDING 256               /* queued changes per subscription, then full state */
#define NOTIFY_MAX_NOTIFY_BODY (1024 * 1024) /* one NOTIFY body, else the subscription ends */
#define NOTIFY_DEFAULT_EXPIRES 3600          /* RFC 5875 (SPEC DIFF-16) */
#define NOTIFY_DEFAULT_MAX_EXPIRES 86400

#define NOTIFY_MIME_DIFF "application/xcap-diff+xml"
#define NOTIFY_MIME_LIST "application/resource-lists+xml"
#define NOTIFY_TABLE "notify_subs"

/* RFC 5875 §4.1 diff-processing. */
enum notify_mode { NOTIFY_NO_PATCHING, NOTIFY_XCAP_PATCHING, NOTIFY_AGGREGATE };

/* The mode named by an Event header's parameters ("diff-processing=..." among them, as sofia
 * gives them; NULL-terminated, may be NULL). Absent or unknown values mean no-patching (SPEC
 * DIFF-8). */
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

void notify_watchlist_release(struct notify_watchlist *wl);

/* Parses an application/resource-lists+xml SUBSCRIBE body (RFC 5875 §4.3, SPEC DIFF-9) into out
 * (zeroed first). Each <entry uri> anywhere under the root is a selector relative to xcap_root,
 * or an absolute URI below xcap_root, or an absolute path below its path: a document, a directory
 * (trailing '/'), "<auid>/users/" (every user's documents; kept for trusted servers only, see
 * notify_watchlist_authorize()), or an element or attribute (a node selector after "~~", with
 * prefixes bound by an xmlns() query). The full state of an all-users watch lists no documents
 * (it would outgrow any NOTIFY); it reports every later change. Entries this notifier cannot watch
 * (another role's AUID, another server, namespace selectors, malformed selectors, duplicates) are
 * left out and counted in *skipped. Returns 0, or a SIP status: 400 (not well-formed, DOCTYPE, not
 * a resource-lists document), 413 (more than NOTIFY_MAX_ENTRIES entries), 500 (out of memory). */
int notify_entries_parse(const char *body, size_t len, const char *xcap_root, enum xdms_role role,
                         struct notify_watchlist *out, size_t *skipped);

/* Removes the watches identity may not read (SPEC XCAP-AUTH-1/4, DIFF-11): its own users/<XUI>/
 * tree and global/ (except server-owned documents, see usage_server_owned()), or everything when
 * is_server (only servers keep all-users watches). Returns how many were removed. */
size_t notify_watchlist_authorize(struct notify_watchlist *wl, const char *identity,
                                  bool is_server);

/* True when a change of document k concerns w (same document, or below the directory, and not
 * hidden from w). */
bool notify_watch_matches(const struct notify_watch *w, const struct doc_key *k);

/* Appends the document selector of k relative to the XCAP root ("auid/users/<xui>/<path>" or
 * "auid/global/<path>"), each segment percent-encoded where RFC 3986 pchar does not allow the
 * byte. Returns 0 or -1 (buffer full). */
int notify_sel_append(struct buf *b, const struct doc_key *k);

/* xcap-diff body (RFC 5874, SPEC DIFF-1/2): open, any number of documents, close. prev_etag or
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
 * first item of a list): "scheme:user@host[:port]" without parameters or headers, scheme in lower
 * case. Only sip, sips and tel are accepted. Returns a malloc'd string or NULL. */
char *notify_identity_parse(const char *value);

/* The duration granted for a SUBSCRIBE (RFC 6665 §4.2.1.1): requested when present, else the
 * default (cfg 0 = 3600), clamped to the maximum (cfg 0 = 86400); 0 stays 0 (unsubscribe or
 * fetch). Returns 0 with *out set, or 423 when 0 < requested < cfg->min_expires. */
int notify_expires_decide(const struct notifier_config *cfg, bool present, unsigned long requested,
                          unsigned *out);

/* True when sa is one of trusted (numeric addresses; IPv4-mapped IPv6 compares as IPv4), or,
 * with trusted NULL, any loopback address. */
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
};

void notify_record_release(struct notify_record *r);
/* Appends the record's bytes. Returns 0 or -1 (buffer full). */
int notify_record_encode(const struct notify_record *r, struct buf *out);
/* Parses bytes written by notify_record_encode() into out (zeroed first). Returns 0 or -1
 * (malformed, out of memory; out released). */
int notify_record_decode(const char *data, size_t len, struct notify_record *out);

#endif
