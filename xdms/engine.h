/* The XCAP engine: executes one parsed, authorised request against the store inside one LMDB
 * transaction (the "execute" phase of docs/architecture.md). It alone sequences storage and XML. It
 * knows no HTTP: the caller maps the returned status to a response.
 *
 * Writes: the body is pre-scanned against the limits (prescan.h), parsed and checked before
 * the write transaction is opened (for a whole document also validated against the usage's
 * schema and constraints), so untrusted input never holds the writer lock. Then, in one write
 * transaction: read, preconditions (If-Match / If-None-Match, RFC 4825 §8.2.6 and RFC 9110 §13),
 * apply (a node write splices the checked body into the stored bytes, bounds and re-parses the
 * result), validate what depends on the stored document, store with a new ETag, append the
 * change-log record, commit durably — so two writers racing with the same ETag cannot both win,
 * and no acknowledged change is left without its change-log record.
 * A body or result over a limit is 409 constraint-failure with a phrase naming the limit. */
#ifndef XDM_ENGINE_H
#define XDM_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "appusage.h"
#include "buf.h"
#include "prescan.h"
#include "status.h"
#include "store.h"
#include "xcap_uri.h"

struct usage;
struct charging;

struct engine;

/* Largest change-log detail of an element or attribute edit kept by default (bytes). */
#define ENGINE_DEFAULT_MAX_RECORD (64u << 10)

struct engine_config {
    enum xdms_role role;
    const char *xcap_root;       /* public XCAP root with trailing '/', for <ancestor> URIs */
    unsigned max_docs_per_user;  /* per XDMS, over all its AUIDs; 0 = unbounded */
    uint64_t max_bytes_per_user; /* bytes of a user's documents in this XDMS; 0 = unbounded */
    size_t change_max_record;    /* largest detail of an element or attribute edit kept in the
                                    change log; a larger edit is recorded with its ETags only;
                                    0 = ENGINE_DEFAULT_MAX_RECORD */
    struct usage *usage;         /* schemas, constraints, interdependencies (borrowed) */
    struct charging *charging;   /* charging records of committed writes (charging.h), queued in
                                    the write's transaction; NULL: charging is off (borrowed) */
    /* Bounds on every XML body and on every document a write produces (prescan.h); a zero field
     * takes its default. */
    struct prescan_limits limits;
};

/* The bounds a configuration reload may change while requests run (engine_set_limits()). */
struct engine_limits {
    unsigned max_docs_per_user;
    uint64_t max_bytes_per_user;
    struct prescan_limits limits; /* a zero field takes its default */
};

enum engine_method { ENGINE_GET, ENGINE_HEAD, ENGINE_PUT, ENGINE_DELETE };

struct engine_request {
    enum engine_method method;
    const struct xcap_uri *uri;
    const struct appusage *au;
    const char *content_type;  /* header value or NULL */
    const char *if_match;      /* header value or NULL */
    const char *if_none_match; /* header value or NULL */
    const char *body;
    size_t body_len;
    const char *identity;   /* asserted identity, or NULL (charging: the served user of global/) */
    int64_t start_ms;       /* when the request arrived, ms since the epoch (charging); 0: now */
    const char *request_id; /* the request's id (charging: correlation), or NULL. Read from here,
                             * never from the thread: a write may run on another thread */
    struct engine_check *checked; /* a document PUT's body checks done ahead (engine_check()),
                                   * or NULL: engine_execute() takes them over */
};

/* The body checks of a document PUT (UTF-8, shape, parse, schema and constraints), none of which
 * needs the store, done ahead on the request's own thread so that the thread that runs the
 * write (a batch's committer) only runs its transaction. Zero-initialise it. */
struct engine_check {
    bool done;           /* false: engine_execute() checks the body itself */
    struct _xmlDoc *doc; /* the parsed body, or NULL */
    enum xcap_status body_st, val_st;
    struct xcap_err body_err, val_err;
};

struct engine_reply {
    char etag[STORE_ETAG_MAX]; /* "" when the response carries no ETag */
    const char *content_type;  /* static string, or NULL */
    struct buf body;           /* initialise with buf_init() before the call */
    bool changed;              /* a change-log record was committed */
};

/* Creates an engine over an open store (borrowed; it must outlive the engine). */
struct engine *engine_new(struct store *store, const struct engine_config *cfg);
void engine_free(struct engine *e);

/* Replaces the quotas and body bounds; a request already running keeps the ones it started
 * with (each request takes one consistent copy with engine_get_limits()). Thread-safe. */
void engine_set_limits(struct engine *e, const struct engine_limits *l);
struct engine_limits engine_get_limits(struct engine *e);

/* Runs the request. Returns the status (XCAP_OK, XCAP_CREATED, XCAP_NOT_MODIFIED or a failure
 * with err filled). Thread-safe: any number of threads may call it at once.
 *
 * Room for writes: a PUT (document, element or attribute) that would take the store above its
 * high-water mark is XCAP_INSUFFICIENT_STORAGE (507) with a text explanation; a DELETE is never
 * refused for space, as it frees some. A PUT that would grow the user's documents in this XDMS
 * beyond max_bytes_per_user is XCAP_CONSTRAINT_FAILURE with a phrase naming the quota; one that
 * shrinks them is accepted even over the quota. */
enum xcap_status engine_execute(struct engine *e, const struct engine_request *req,
                                struct engine_reply *rep, struct xcap_err *err);

/* Checks the body of req ahead when req is a document PUT whose path and media type are
 * acceptable (else check->done stays false); req->checked is not read. The verdicts are given by
 * engine_execute() of the same request with req->checked = check, in the order RFC 9110 §13.2.1
 * asks (preconditions first). Thread-safe. */
void engine_check(struct engine *e, const struct engine_request *req, struct engine_check *check);
/* Releases what engine_execute() did not take over. */
void engine_check_release(struct engine_check *check);

/* Batches of writes (store.h, store_batch_begin()): engine_batches() says whether the store
 * takes them. Between engine_batch_begin() (true: opened) and engine_batch_end() on one thread,
 * engine_execute() of a write on that thread returns as soon as the write is in the batch: its
 * 2xx (rep->changed set) holds only once engine_batch_end() returned XCAP_OK, which commits
 * them all with one sync; otherwise that is the failure (err filled) every such write must be
 * answered with instead, as none of them is stored. Writes that failed on their own (412, 409,
 * ...) keep their answers either way. */
bool engine_batches(struct engine *e);
bool engine_batch_begin(struct engine *e);
enum xcap_status engine_batch_end(struct engine *e, struct xcap_err *err);

/* The listing of xui's documents in this XDMS, its part of the OMA xcap-directory (directory.h):
 * one folder per AUID of the role, one entry per document, URIs under the configured public XCAP
 * root; etag receives its ETag. Appends to out. XCAP_OK, or XCAP_STORAGE with err filled. One
 * read transaction. Thread-safe. */
enum xcap_status engine_directory(struct engine *e, const char *xui, struct buf *out,
                                  char etag[STORE_ETAG_MAX], struct xcap_err *err);

/* GET of a node of a document the caller generated (not stored), e.g. xcap-caps or the
 * xcap-directory: req->uri->node_sel must be set. Fills rep's content type and body with the
 * selected node's exact bytes (nodeget_select(), as the proxy does for its generated documents). */
enum xcap_status engine_node_select(const struct engine_request *req, const char *doc, size_t len,
                                    struct engine_reply *rep, struct xcap_err *err);

/* Compares a Content-Type header value with a media type, ignoring parameters (charset=...),
 * case and surrounding white space. */
bool engine_media_type_is(const char *header, const char *type);

#endif
