/* Pieces shared by the document-level (engine.c) and node-level (engine_node.c) halves of the
 * engine. Not a public interface. */
#ifndef XDM_ENGINE_INTERNAL_H
#define XDM_ENGINE_INTERNAL_H

#include <pthread.h>
#include "engine.h"

struct engine {
    struct store *store;
    struct engine_config cfg; /* its quotas and limits only under lim_lock (reloads) */
    pthread_mutex_t lim_lock;
    char *xcap_root;
};

void engine_key(const struct xcap_uri *u, struct doc_key *k);
enum xcap_status engine_store_fail(struct xcap_err *err, enum store_rc rc);
enum xcap_status engine_preconditions(const struct engine_request *req, const char *etag,
                                      struct xcap_err *err);
/* Whether the store and the user's quota have room for a PUT that turns a document of old_len
 * bytes (0 = new) into one of new_len bytes, inside the write transaction t (not aborted here):
 * XCAP_OK, XCAP_INSUFFICIENT_STORAGE or XCAP_CONSTRAINT_FAILURE (engine_execute()). */
enum xcap_status engine_check_room(struct engine *e, struct store_txn *t, const struct doc_key *k,
                                   size_t old_len, size_t new_len, struct xcap_err *err);
/* Stores new bytes of an existing document with its change-log record (and the charging record
 * of the node write req, created or not) and commits; on success fills rep->etag and
 * rep->changed. Aborts t on failure. */
enum xcap_status engine_commit_update(struct engine *e, struct store_txn *t,
                                      const struct engine_request *req, const struct doc_key *k,
                                      const char *prev_etag, const char *data, size_t len,
                                      const char *detail, size_t detail_len, bool created,
                                      struct engine_reply *rep, struct xcap_err *err);
/* Attaches the charging record of the write req (HTTP status result) to the change ch, so that
 * store_change_append() queues it in the same transaction; scratch holds its bytes until then.
 * Nothing when charging is off. After the commit, engine_charged(). */
void engine_charge(struct engine *e, const struct engine_request *req, const struct doc_key *k,
                   unsigned result, struct buf *scratch, struct store_change *ch);
void engine_charged(struct engine *e, const struct store_change *ch);

/* Node-level requests (the URI has a node selector). */
enum xcap_status engine_node_execute(struct engine *e, const struct engine_request *req,
                                     struct engine_reply *rep, struct xcap_err *err);

/* Applies a node-level PUT or DELETE (req->uri has a node selector) to the document bytes
 * doc[0..len) without storage or usage checks: the new bytes are appended to out, *created tells
 * an insertion from a replacement. Same statuses as engine_execute(). For tests and fuzzing. */
enum xcap_status engine_node_transform(const char *xcap_root, const struct engine_request *req,
                                       const char *doc, size_t len, struct buf *out, bool *created,
                                       struct xcap_err *err);

#endif
