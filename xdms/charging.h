/* Offline charging of an XDMS (docs/charging.md; OMA XDM charging over the CH-1 reference point,
 * Diameter Rf of 3GPP TS 32.299 and RFC 6733 accounting).
 *
 * A chargeable event becomes one charging record. The record is queued in the store (the table
 * STORE_CHARGE_TABLE, store.h) in the write transaction of the change it describes (a document
 * write: struct store_change's charge fields), or in a write transaction of its own (a
 * subscription or a NOTIFY, which change no document). One delivery thread per process drains
 * the queue of its serving node to its sinks:
 *   - CDR files: one JSON object per line in files DIR/NAME.jsonl, fsync'ed before a record leaves
 * the queue and before a file is closed; a file is closed and a new one begun at cdr_rotate_bytes
 * or after cdr_rotate_age seconds;
 *   - Diameter Rf: one Accounting-Request per record through freeDiameter (charging_rf.h); the
 *     record leaves the queue only after an Accounting-Answer with DIAMETER_SUCCESS.
 * A record that cannot be delivered stays queued and is tried again after a wait that doubles
 * from charging_retry_min_ms to charging_retry_max_ms. Requests never wait for the delivery.
 * Delivery is at least once: a crash after a delivery and before the record's removal delivers
 * it again with the same numbers (Session-Id, Accounting-Record-Number, seq), so the receiver
 * can drop the duplicate.
 *
 * Thread-safety: charging_start() and charging_stop() from the main thread; every other function
 * from any thread. */
#ifndef XDM_CHARGING_H
#define XDM_CHARGING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"
#include "store.h"

/* The chargeable events. Their names (charging_event_name()) are the "event" of a CDR line and
 * of the XDM-Event AVP. */
enum charging_event {
    CHARGING_DOC_CREATED,   /* document-created: PUT of a new document */
    CHARGING_DOC_REPLACED,  /* document-replaced: PUT of an existing document */
    CHARGING_DOC_DELETED,   /* document-deleted */
    CHARGING_NODE_CHANGED,  /* node-changed: element or attribute PUT or DELETE (operation) */
    CHARGING_SUB_STARTED,   /* subscription-started: xcap-diff SUBSCRIBE, Rf START_RECORD */
    CHARGING_SUB_REFRESHED, /* subscription-refreshed: Rf INTERIM_RECORD */
    CHARGING_SUB_ENDED,     /* subscription-ended: Rf STOP_RECORD */
    CHARGING_NOTIFY_SENT,   /* notify-sent: an xcap-diff NOTIFY answered 2xx */
    CHARGING_EVENT_COUNT
};

/* Longest string field of a record (longer ones are cut). */
#define CHARGING_FIELD_MAX 1024
/* Records read from the queue per delivery round. */
#define CHARGING_BATCH 64

/* One charging record. The strings are borrowed (from the caller when building, from the queue
 * bytes when decoded); NULL is written as "". */
struct charging_record {
    enum charging_event event;
    const char *user;        /* served user: the XUI (or the asserted identity in global/) */
    const char *auid;        /* application usage */
    const char *document;    /* document selector below the XCAP root: AUID/TREE/[XUI/]PATH */
    const char *operation;   /* e.g. "PUT document", "DELETE element", "SUBSCRIBE", "NOTIFY" */
    const char *node;        /* serving node: the instance that committed or served the event */
    const char *correlation; /* the request id (X-Request-ID) or the SIP Call-ID */
    const char *session;     /* subscriptions: a stable id of the subscription ("" otherwise) */
    unsigned result;         /* result code: HTTP status of the request, SIP status of a NOTIFY */
    uint64_t bytes_in;       /* request body */
    uint64_t bytes_out;      /* response (or NOTIFY) body */
    int64_t start_ms;        /* when the request arrived (ms since the epoch) */
    int64_t time_ms;         /* when the event was committed or served */
    uint32_t record_number;  /* subscriptions: Accounting-Record-Number within the session
                                (START 0, then 1, 2, ...); 0 for events */
};

/* The name of an event ("document-created", ...). */
const char *charging_event_name(enum charging_event e);
/* Accounting-Record-Type of an event (RFC 6733 §9.8.1): 1 EVENT_RECORD, 2 START_RECORD,
 * 3 INTERIM_RECORD, 4 STOP_RECORD. */
unsigned charging_record_type(enum charging_event e);

/* Appends the queue bytes of r to out. 0, or -1 when out is full or out of memory. */
int charging_record_encode(const struct charging_record *r, struct buf *out);
/* Decodes queue bytes into r, whose strings then point into a copy kept in scratch (reset
 * first). 0, or -1 for bytes that are not a record. */
int charging_record_decode(const void *p, size_t len, struct buf *scratch,
                           struct charging_record *r);
/* Appends the CDR line of record number seq (one JSON object and '\n') to out. 0 or -1. */
int charging_record_json(const struct charging_record *r, uint64_t seq, struct buf *out);
/* Writes the RFC 3339 UTC time of ms (e.g. "2026-12-03T12:00:00.123Z") into out (32 bytes). */
void charging_time_text(int64_t ms, char out[32]);
/* Milliseconds since the epoch, now. */
int64_t charging_now_ms(void);

struct charging;

/* Rules between the [charging] keys that the key table cannot express (rf_config needs
 * rf_destination_realm; charging_retry_min_ms at most charging_retry_max_ms). 0, or -1 after
 * logging. charging_start() checks them too. */
int charging_check_keys(const struct config *cfg);

/* Reads the [charging] keys of cfg. *out is NULL (and 0 returned) when neither cdr_dir nor
 * rf_config is set: charging is off. Else starts the delivery thread over store (borrowed; it
 * must outlive the handle) for the queue of the serving node `node` (1..STORE_CHARGE_QUEUE_MAX
 * bytes). Returns -1 after logging when the keys are inconsistent, the CDR directory cannot be
 * made or the Diameter client cannot start. */
int charging_start(const struct config *cfg, struct store *store, const char *node,
                   struct charging **out);
/* Stops the thread (the record being delivered is finished or left queued) and frees c. */
void charging_stop(struct charging *c);
/* The store table the queue needs in store_options.tables (whether or not charging is on, so
 * that a queue left from a run with charging on stays readable). */
const char *charging_store_table(void);

/* Fills the charging fields of a change (queue, record bytes in scratch, bound) so that
 * store_change_append() queues r with it. Does nothing when c is NULL (charging off). */
void charging_attach(struct charging *c, const struct charging_record *r, struct buf *scratch,
                     struct store_change *ch);
/* After the commit of a change prepared with charging_attach(): logs and counts a record the
 * full queue refused, and wakes the delivery thread. */
void charging_committed(struct charging *c, const struct store_change *ch);
/* Queues r in a write transaction of its own (subscriptions and NOTIFYs). For a subscription
 * event r->record_number is assigned here from a counter kept per session in the same
 * transaction (START 0; INTERIM and STOP the next numbers; STOP removes the counter). Never
 * blocks the caller longer than one store write. */
void charging_emit(struct charging *c, struct charging_record *r);
/* Events without a session (NOTIFYs), which the SIP thread may see by the thousand in a
 * fan-out, are queued together rather than in one store write each: charging_defer() appends the
 * bytes of r to pending (a buffer the caller owns, initialised with buf_init()) and returns how
 * many records it holds; charging_flush() queues them all in one write transaction, in order,
 * and empties pending. What is pending is lost in a crash: the caller flushes when
 * CHARGING_BATCH records are pending, at least once a second, before it queues any other event
 * (so the queue keeps their order) and before it stops. Nothing when c is NULL. */
size_t charging_defer(struct charging *c, struct buf *pending, const struct charging_record *r);
void charging_flush(struct charging *c, struct buf *pending);
/* The serving node (borrowed), or NULL when c is NULL. */
const char *charging_node(const struct charging *c);

#endif
