/* What a request's store transaction needs in both halves of the engine (engine.c for documents,
 * engine_node.c for elements, attributes and namespaces): the document key of a URI, the
 * preconditions, the room left (store and per-user quota), the commit of an update with its
 * change-log record, the status of a store failure. Declared in engine_internal.h. */
#include "engine.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "charging.h"
#include "engine_internal.h"
#include "etag.h"
#include "xdiff.h"

struct engine_limits engine_get_limits(struct engine *e)
{
    pthread_mutex_lock(&e->lim_lock);
    struct engine_limits l = {e->cfg.max_docs_per_user, e->cfg.max_bytes_per_user, e->cfg.limits};
    pthread_mutex_unlock(&e->lim_lock);
    return l;
}

bool engine_media_type_is(const char *header, const char *type)
{
    if (!header)
        return false;
    while (*header == ' ' || *header == '\t')
        header++;
    size_t n = strcspn(header, ";");
    while (n && (header[n - 1] == ' ' || header[n - 1] == '\t'))
        n--;
    return n == strlen(type) && strncasecmp(header, type, n) == 0;
}

enum xcap_status engine_store_fail(struct xcap_err *err, enum store_rc rc)
{
    /* RFC 4918 §11.5: the server cannot store what the request needs. Not 503: retrying will not
     * help until documents are deleted, and DELETE still works (store_space_check()). */
    if (rc == STORE_FULL)
        return xcap_fail(err, XCAP_INSUFFICIENT_STORAGE, "%s", STORE_FULL_TEXT);
    if (rc == STORE_INVALID)
        return xcap_fail(err, XCAP_BAD_REQUEST, "document name too long");
    /* RFC 9110 §15.6.4: temporary; the response carries Retry-After (server.c). */
    if (rc == STORE_UNAVAILABLE)
        return xcap_fail(err, XCAP_STORAGE,
                         "the database is unavailable; retry after the time in Retry-After");
    return xcap_fail(err, XCAP_STORAGE, "storage error: %s", store_strerror(rc));
}

/* The store's high-water mark keeps the pages above it for DELETEs; the per-user quota keeps one
 * user from taking the room of all the others (RFC 4825 §8.2.5 leaves such local policy to the
 * server, reported as a constraint failure). */
enum xcap_status engine_check_room(struct engine *e, struct store_txn *t, const struct doc_key *k,
                                   size_t old_len, size_t new_len, struct xcap_err *err)
{
    enum store_rc rc = store_space_check(t, new_len);
    if (rc != STORE_OK)
        return engine_store_fail(err, rc);
    uint64_t max = engine_get_limits(e).max_bytes_per_user;
    if (max == 0 || strcmp(k->tree, "users") != 0 || new_len <= old_len)
        return XCAP_OK;
    uint64_t used;
    if ((rc = store_user_bytes(t, k->xui, &used)) != STORE_OK)
        return engine_store_fail(err, rc);
    uint64_t after = (used > old_len ? used - old_len : 0) + new_len;
    if (after <= max)
        return XCAP_OK;
    return xcap_fail(err, XCAP_CONSTRAINT_FAILURE,
                     "quota exceeded: max_bytes_per_user allows %" PRIu64
                     " bytes of documents per user; with this request the documents of %s "
                     "would take %" PRIu64 " bytes",
                     max, k->xui, after);
}

void engine_key(const struct xcap_uri *u, struct doc_key *k)
{
    k->auid = u->auid;
    k->tree = u->tree == XCAP_TREE_USERS ? "users" : "global";
    k->xui = u->xui ? u->xui : "";
    k->path = u->path;
}

/* Preconditions against the current state (etag NULL = no document). RFC 9110 §13.2.2: on
 * GET/HEAD a failed If-None-Match is 304, on other methods 412. */
enum xcap_status engine_preconditions(const struct engine_request *req, const char *etag,
                                      struct xcap_err *err)
{
    if (req->if_match && !etag_list_matches(req->if_match, etag, ETAG_STRONG))
        return xcap_fail(err, XCAP_PRECONDITION_FAILED, "If-Match does not match");
    if (req->if_none_match && etag_list_matches(req->if_none_match, etag, ETAG_WEAK)) {
        if (req->method == ENGINE_GET || req->method == ENGINE_HEAD)
            return XCAP_NOT_MODIFIED;
        return xcap_fail(err, XCAP_PRECONDITION_FAILED, "If-None-Match matches");
    }
    return XCAP_OK;
}

/* Whether the last step of a node selector names an attribute (RFC 4825 §6.3: attribute-selector
 * "@name"); '/' inside predicates and quoted values does not separate steps. */
static bool engine_node_is_attribute(const char *sel)
{
    const char *last = sel;
    int depth = 0;
    char quote = 0;
    for (const char *p = sel; *p; p++) {
        if (quote) {
            quote = *p == quote ? 0 : quote;
        } else if (*p == '"' || *p == '\'') {
            quote = *p;
        } else if (*p == '[') {
            depth++;
        } else if (*p == ']') {
            depth--;
        } else if (*p == '/' && depth == 0) {
            last = p + 1;
        }
    }
    return *last == '@';
}

void engine_charge(struct engine *e, const struct engine_request *req, const struct doc_key *k,
                   unsigned result, struct buf *scratch, struct store_change *ch)
{
    if (!e->cfg.charging)
        return;
    bool put = req->method == ENGINE_PUT, node = req->uri->node_sel != NULL;
    enum charging_event ev = node            ? CHARGING_NODE_CHANGED
                             : !put          ? CHARGING_DOC_DELETED
                             : result == 201 ? CHARGING_DOC_CREATED
                                             : CHARGING_DOC_REPLACED;
    char op[32];
    snprintf(op, sizeof op, "%s %s", put ? "PUT" : "DELETE",
             !node                                          ? "document"
             : engine_node_is_attribute(req->uri->node_sel) ? "attribute"
                                                            : "element");
    int64_t now = charging_now_ms();
    struct charging_record r = {
        .event = ev,
        .user = k->xui[0] ? k->xui : req->identity,
        .auid = k->auid,
        .document = req->uri->doc_sel,
        .operation = op,
        .node = charging_node(e->cfg.charging),
        .correlation = req->request_id ? req->request_id : "",
        .result = result,
        .bytes_in = req->body_len,
        .bytes_out = 0, /* a write answers with no body (RFC 4825 §8.2.5, §8.3.5) */
        .start_ms = req->start_ms ? req->start_ms : now,
        .time_ms = now,
    };
    charging_attach(e->cfg.charging, &r, scratch, ch);
}

void engine_charged(struct engine *e, const struct store_change *ch)
{
    charging_committed(e->cfg.charging, ch);
}

enum xcap_status engine_commit_update(struct engine *e, struct store_txn *t,
                                      const struct engine_request *req, const struct doc_key *k,
                                      const char *prev_etag, const char *data, size_t len,
                                      const char *detail, size_t detail_len, bool created,
                                      struct engine_reply *rep, struct xcap_err *err)
{
    /* A large edit is recorded with its ETags only, so one user's edits cannot fill the change
     * log (and the map) with copies of their content; subscribers fetch the document instead
     * (RFC 5874 §4). */
    size_t max = e->cfg.change_max_record ? e->cfg.change_max_record : ENGINE_DEFAULT_MAX_RECORD;
    if (detail_len > max) {
        detail = XDIFF_DETAIL_ETAGS_ONLY;
        detail_len = sizeof XDIFF_DETAIL_ETAGS_ONLY - 1;
    }
    char etag[STORE_ETAG_MAX];
    struct buf charge;
    buf_init(&charge, SIZE_MAX);
    struct store_change ch = {
        .kind = STORE_CHANGE_PUT,
        .key = *k,
        .prev_etag = prev_etag,
        .new_etag = etag,
        .detail = detail,
        .detail_len = detail_len,
    };
    enum store_rc rc = store_doc_put(t, k, data, len, etag);
    if (rc == STORE_OK) {
        engine_charge(e, req, k, created ? 201 : 200, &charge, &ch);
        rc = store_change_append(t, &ch);
    }
    buf_release(&charge);
    if (rc != STORE_OK) {
        store_txn_abort(t);
        return engine_store_fail(err, rc);
    }
    if ((rc = store_txn_commit(t)) != STORE_OK)
        return engine_store_fail(err, rc);
    engine_charged(e, &ch);
    memcpy(rep->etag, etag, sizeof rep->etag);
    rep->changed = true;
    return XCAP_OK;
}

bool engine_batches(struct engine *e)
{
    if (!engine_batch_begin(e))
        return false;
    struct xcap_err err = {0};
    enum xcap_status st = engine_batch_end(e, &err); /* empty: aborted, no sync */
    xcap_err_release(&err);
    return st == XCAP_OK;
}

bool engine_batch_begin(struct engine *e)
{
    return store_batch_begin(e->store) == STORE_OK;
}

enum xcap_status engine_batch_end(struct engine *e, struct xcap_err *err)
{
    enum store_rc rc = store_batch_end(e->store);
    return rc == STORE_OK ? XCAP_OK : engine_store_fail(err, rc);
}
