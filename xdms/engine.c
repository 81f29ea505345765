#include "engine.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "directory.h"
#include "engine_internal.h"
#include "etag.h"
#include "log.h"
#include "usage.h"
#include "xdiff.h"
#include "xdoc.h"

struct engine *engine_new(struct store *store, const struct engine_config *cfg)
{
    struct engine *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->store = store;
    e->cfg = *cfg;
    e->xcap_root = strdup(cfg->xcap_root ? cfg->xcap_root : "/");
    if (!e->xcap_root) {
        free(e);
        return NULL;
    }
    e->cfg.xcap_root = e->xcap_root;
    pthread_mutex_init(&e->lim_lock, NULL);
    struct engine_limits l = {cfg->max_docs_per_user, cfg->max_bytes_per_user, cfg->limits};
    engine_set_limits(e, &l);
    return e;
}

void engine_free(struct engine *e)
{
    if (e) {
        free(e->xcap_root);
        pthread_mutex_destroy(&e->lim_lock);
    }
    free(e);
}

void engine_set_limits(struct engine *e, const struct engine_limits *l)
{
    struct prescan_limits lim = l->limits, def;
    prescan_limits_default(&def);
    if (!lim.max_attributes)
        lim.max_attributes = def.max_attributes;
    if (!lim.max_elements)
        lim.max_elements = def.max_elements;
    if (!lim.max_depth)
        lim.max_depth = def.max_depth;
    pthread_mutex_lock(&e->lim_lock);
    e->cfg.max_docs_per_user = l->max_docs_per_user;
    e->cfg.max_bytes_per_user = l->max_bytes_per_user;
    e->cfg.limits = lim;
    pthread_mutex_unlock(&e->lim_lock);
}

enum xcap_status engine_directory(struct engine *e, const char *xui, struct buf *out,
                                  char etag[STORE_ETAG_MAX], struct xcap_err *err)
{
    if (directory_render(e->store, e->cfg.role, e->cfg.xcap_root, xui, out, etag) < 0)
        return xcap_fail(err, XCAP_STORAGE, "cannot list the documents");
    return XCAP_OK;
}

/* Reads the document u names in a read transaction of its own: STORE_OK with *d (released by
 * the caller with store_doc_release()), STORE_NOTFOUND, or the store's failure. */
static enum store_rc engine_read_document(struct engine *e, const struct xcap_uri *u,
                                          struct store_doc *d)
{
    struct doc_key k;
    engine_key(u, &k);
    struct store_txn *t;
    enum store_rc rc = store_txn_begin(e->store, false, &t);
    if (rc != STORE_OK)
        return rc;
    rc = store_doc_get(t, &k, d);
    store_txn_abort(t);
    return rc;
}

static enum xcap_status engine_get_document(struct engine *e, const struct engine_request *req,
                                            struct engine_reply *rep, struct xcap_err *err)
{
    struct store_doc d = {0};
    enum store_rc rc = engine_read_document(e, req->uri, &d);
    if (rc == STORE_NOTFOUND) {
        if (req->if_match) /* RFC 9110 §13.1.1: If-Match fails when nothing is current */
            return xcap_fail(err, XCAP_PRECONDITION_FAILED, "no such document");
        return xcap_fail(err, XCAP_NOT_FOUND, "no such document");
    }
    if (rc != STORE_OK)
        return engine_store_fail(err, rc);
    memcpy(rep->etag, d.etag, sizeof rep->etag);
    enum xcap_status st = engine_preconditions(req, d.etag, err);
    if (st == XCAP_OK) {
        rep->content_type = req->au->mime;
        if (buf_append(&rep->body, d.data, d.len) < 0)
            st = xcap_fail(err, XCAP_INTERNAL, "out of memory");
    }
    store_doc_release(&d);
    return st;
}

struct engine_count {
    uint64_t n;
};

static int engine_count_cb(void *cls, const struct store_doc_view *d)
{
    ((struct engine_count *)cls)->n++;
    return 0;
}

/* Documents of one user in this XDMS: a prefix scan per AUID of the role (at most four). */
static enum store_rc engine_user_docs(struct engine *e, struct store_txn *t, const char *xui,
                                      uint64_t *n)
{
    const struct appusage *const *rows;
    size_t nrows = appusage_list(e->cfg.role, &rows);
    struct engine_count c = {0};
    for (size_t i = 0; i < nrows; i++) {
        enum store_rc rc = store_doc_list(t, rows[i]->auid, "users", xui, "", engine_count_cb, &c);
        if (rc != STORE_OK)
            return rc;
    }
    *n = c.n;
    return STORE_OK;
}

/* The body of a document PUT, checked before the write transaction: pre-scanned against the
 * limits, parsed, and (when it parses) validated against the usage's schema and constraints,
 * none of which needs the store. *doc receives the tree when it parses; *val_st the verdict of
 * the validation (XCAP_OK when it did not run). */
static enum xcap_status engine_check_document(struct engine *e, const struct engine_request *req,
                                              const struct doc_key *k, xmlDocPtr *doc,
                                              enum xcap_status *val_st, struct xcap_err *val_err,
                                              struct xcap_err *err)
{
    *doc = NULL;
    *val_st = XCAP_OK;
    enum xcap_status st;
    /* UTF-8 first (RFC 4825 §8.2.2 not-utf-8 is the more precise verdict), then the shape,
     * before libxml2 reads a byte. */
    if (!xdoc_utf8_valid(req->body, req->body_len))
        return xcap_fail(err, XCAP_NOT_UTF8, "the body is not valid UTF-8");
    struct prescan_limits lim = engine_get_limits(e).limits;
    if ((st = prescan_check(req->body, req->body_len, &lim, NULL, err)) != XCAP_OK)
        return st;
    if ((st = xdoc_parse(req->body, req->body_len, doc, err)) != XCAP_OK)
        return st;
    *val_st = usage_validate(e->cfg.usage, req->au, k, *doc, val_err);
    return XCAP_OK;
}

/* A document PUT or DELETE inside its write transaction (store_write()): everything between
 * reading the stored document and appending the change-log record. The body was checked before
 * (engine_check_document()); nothing here parses what the client sent. Runs on the thread of the
 * group commit's leader, which may not be the request's: it uses only this struct. */
struct engine_write {
    struct engine *e;
    const struct engine_request *req;
    struct doc_key k;
    xmlDocPtr doc;            /* PUT: the parsed body, or NULL */
    enum xcap_status body_st; /* PUT: the verdict on the body (XCAP_OK: it parsed) */
    struct xcap_err body_err;
    enum xcap_status val_st; /* PUT: the verdict of the schema and constraints */
    struct xcap_err val_err;
    struct xcap_err *err; /* the request's */
    enum xcap_status st;  /* the answer, when the function returned non-zero */
    bool exists;
    char etag[STORE_ETAG_MAX];
    struct store_change ch; /* the change appended, for engine_charged() after the commit */
};

/* Document PUT in its transaction: preconditions first (RFC 9110 §13.2.1), then the verdict
 * on the body, the quotas, the room, the validation, the usage's interdependencies; then the
 * document with a new ETag and its change-log record. Returns 0 to commit, 1 to abort (st set).
 * With a refused body it runs in a read transaction and always returns 1. */
static int engine_put_txn(void *cls, struct store_txn *t)
{
    struct engine_write *w = cls;
    struct engine *e = w->e;
    const struct engine_request *req = w->req;
    struct xcap_err *err = w->err;
    struct store_doc old = {0};
    enum store_rc rc = store_doc_get(t, &w->k, &old);
    w->exists = rc == STORE_OK;
    if (rc != STORE_OK && rc != STORE_NOTFOUND) {
        w->st = engine_store_fail(err, rc);
        goto abort;
    }
    if ((w->st = engine_preconditions(req, w->exists ? old.etag : NULL, err)) != XCAP_OK)
        goto abort;
    if (w->body_st != XCAP_OK) {
        w->st = xcap_fail(err, w->body_st, "%s", w->body_err.phrase ? w->body_err.phrase : "");
        goto abort;
    }
    unsigned max_docs = engine_get_limits(e).max_docs_per_user;
    if (!w->exists && max_docs && req->uri->tree == XCAP_TREE_USERS) {
        uint64_t n = 0;
        if ((rc = engine_user_docs(e, t, w->k.xui, &n)) != STORE_OK) {
            w->st = engine_store_fail(err, rc);
            goto abort;
        }
        if (n >= max_docs) {
            w->st = xcap_fail(err, XCAP_LOCAL_CONSTRAINT_FAILURE,
                              "too many documents: at most %u per user", max_docs);
            goto abort;
        }
    }
    if ((w->st = engine_check_room(e, t, &w->k, w->exists ? old.len : 0, req->body_len, err)) !=
        XCAP_OK)
        goto abort;
    if (w->val_st != XCAP_OK) {
        /* the verdict of engine_check_document(), with its details (uniqueness reports) */
        xcap_err_release(err);
        *err = w->val_err;
        memset(&w->val_err, 0, sizeof w->val_err);
        w->st = w->val_st;
        goto abort;
    }
    if ((w->st = usage_interdepend(e->cfg.usage, t, req->au, &w->k, w->doc, err)) != XCAP_OK)
        goto abort;
    if ((rc = store_doc_put(t, &w->k, req->body, req->body_len, w->etag)) != STORE_OK) {
        w->st = engine_store_fail(err, rc);
        goto abort;
    }
    struct store_change ch = {
        .kind = STORE_CHANGE_PUT,
        .key = w->k,
        .prev_etag = w->exists ? old.etag : "",
        .new_etag = w->etag,
        .detail = "",
        .detail_len = 0,
    };
    struct buf charge;
    buf_init(&charge, SIZE_MAX);
    engine_charge(e, req, &w->k, w->exists ? 200 : 201, &charge, &ch);
    rc = store_change_append(t, &ch);
    buf_release(&charge);
    if (rc != STORE_OK) {
        w->st = engine_store_fail(err, rc);
        goto abort;
    }
    w->ch = ch;
    w->ch.prev_etag = ""; /* old is released below */
    store_doc_release(&old);
    return 0;
abort:
    store_doc_release(&old);
    return 1;
}

/* Document PUT (RFC 4825 §8.2, §7.1): the body is checked outside the write transaction so a
 * slow parse or validation never holds the writer lock; its verdict is given only after the
 * preconditions, which must be judged first (RFC 9110 §13.2.1). The write joins a group commit
 * (store_write()): acknowledged after the durable commit it shares with concurrent writes. */
static enum xcap_status engine_put_document(struct engine *e, const struct engine_request *req,
                                            struct engine_reply *rep, struct xcap_err *err)
{
    /* RFC 4825 §5.5, §8.2.1: directories are not created by PUT; home directories
     * are flat unless the usage needs sub-directories, so a deeper path has no parent. */
    if (strchr(req->uri->path, '/') && !req->au->subdirs) {
        xcap_fail(err, XCAP_NO_PARENT, "%s documents sit directly in the home directory",
                  req->au->auid);
        const char *slash = strchr(req->uri->doc_sel, '/');
        for (int i = 0; slash && i < (req->uri->tree == XCAP_TREE_USERS ? 2 : 1); i++)
            slash = strchr(slash + 1, '/');
        if (slash && asprintf(&err->ancestor, "%s%.*s", e->cfg.xcap_root,
                              (int)(slash - req->uri->doc_sel + 1), req->uri->doc_sel) < 0)
            err->ancestor = NULL;
        return XCAP_NO_PARENT;
    }
    if (!engine_media_type_is(req->content_type, req->au->mime))
        return xcap_fail(err, XCAP_UNSUPPORTED_MEDIA, "a %s document needs Content-Type %s",
                         req->au->auid, req->au->mime);
    struct engine_write w = {.e = e, .req = req, .err = err};
    engine_key(req->uri, &w.k);
    struct engine_check *ck = req->checked;
    if (ck && ck->done) { /* engine_check() ran on the request's thread: take its results */
        w.body_st = ck->body_st;
        w.val_st = ck->val_st;
        w.doc = ck->doc;
        w.body_err = ck->body_err;
        w.val_err = ck->val_err;
        *ck = (struct engine_check){0};
    } else {
        w.body_st = engine_check_document(e, req, &w.k, &w.doc, &w.val_st, &w.val_err, &w.body_err);
    }

    enum store_rc rc;
    int result = 0;
    if (w.body_st == XCAP_OK && w.val_st == XCAP_OK) {
        rc = store_write(e->store, engine_put_txn, &w, &result);
    } else {
        /* A body already refused writes nothing: a read transaction orders its verdict after
         * the preconditions without taking the writer lock. */
        struct store_txn *t;
        rc = store_txn_begin(e->store, false, &t);
        if (rc == STORE_OK) {
            result = engine_put_txn(&w, t);
            store_txn_abort(t);
        }
    }
    xcap_err_release(&w.body_err);
    xcap_err_release(&w.val_err);
    if (w.doc)
        xmlFreeDoc(w.doc);
    if (rc != STORE_OK && result == 0)
        return engine_store_fail(err, rc);
    if (result != 0)
        return w.st;
    engine_charged(e, &w.ch);
    memcpy(rep->etag, w.etag, sizeof rep->etag);
    rep->changed = true;
    return w.exists ? XCAP_OK : XCAP_CREATED;
}

void engine_check(struct engine *e, const struct engine_request *req, struct engine_check *check)
{
    *check = (struct engine_check){0};
    if (req->method != ENGINE_PUT || req->uri->is_dir || req->uri->node_sel ||
        (strchr(req->uri->path, '/') && !req->au->subdirs) ||
        !engine_media_type_is(req->content_type, req->au->mime))
        return; /* engine_execute() answers these as before */
    struct doc_key k;
    engine_key(req->uri, &k);
    check->body_st = engine_check_document(e, req, &k, &check->doc, &check->val_st, &check->val_err,
                                           &check->body_err);
    check->done = true;
}

void engine_check_release(struct engine_check *check)
{
    if (check->doc)
        xmlFreeDoc(check->doc);
    xcap_err_release(&check->body_err);
    xcap_err_release(&check->val_err);
    *check = (struct engine_check){0};
}

/* Document DELETE in its transaction; 0 to commit, 1 to abort (st set). */
static int engine_delete_txn(void *cls, struct store_txn *t)
{
    struct engine_write *w = cls;
    const struct engine_request *req = w->req;
    struct xcap_err *err = w->err;
    struct store_doc old = {0};
    enum store_rc rc = store_doc_get(t, &w->k, &old);
    if (rc == STORE_NOTFOUND) {
        w->st = req->if_match ? xcap_fail(err, XCAP_PRECONDITION_FAILED, "no such document")
                              : xcap_fail(err, XCAP_NOT_FOUND, "no such document");
        goto abort;
    }
    if (rc != STORE_OK) {
        w->st = engine_store_fail(err, rc);
        goto abort;
    }
    if ((w->st = engine_preconditions(req, old.etag, err)) != XCAP_OK)
        goto abort;
    if ((w->st = usage_interdepend(w->e->cfg.usage, t, req->au, &w->k, NULL, err)) != XCAP_OK)
        goto abort;
    if ((rc = store_doc_del(t, &w->k)) != STORE_OK) {
        w->st = engine_store_fail(err, rc);
        goto abort;
    }
    struct store_change ch = {
        .kind = STORE_CHANGE_DELETE,
        .key = w->k,
        .prev_etag = old.etag,
        .new_etag = "",
        .detail = "",
        .detail_len = 0,
    };
    struct buf charge;
    buf_init(&charge, SIZE_MAX);
    engine_charge(w->e, req, &w->k, 200, &charge, &ch);
    rc = store_change_append(t, &ch);
    buf_release(&charge);
    if (rc != STORE_OK) {
        w->st = engine_store_fail(err, rc);
        goto abort;
    }
    w->ch = ch;
    w->ch.prev_etag = ""; /* old is released below */
    store_doc_release(&old);
    return 0;
abort:
    store_doc_release(&old);
    return 1;
}

static enum xcap_status engine_delete_document(struct engine *e, const struct engine_request *req,
                                               struct engine_reply *rep, struct xcap_err *err)
{
    struct engine_write w = {.e = e, .req = req, .err = err};
    engine_key(req->uri, &w.k);
    int result = 0;
    enum store_rc rc = store_write(e->store, engine_delete_txn, &w, &result);
    if (rc != STORE_OK && result == 0)
        return engine_store_fail(err, rc);
    if (result != 0)
        return w.st;
    engine_charged(e, &w.ch);
    rep->etag[0] = '\0'; /* RFC 4825 §8.5: a deleted document has no ETag */
    rep->changed = true;
    return XCAP_OK;
}

/* A usage's default document (appusage.default_name; TS 24.623: handsets read their settings
 * before they write them): before a read, or a write of a node, of that document of a user finds
 * nothing, the default is stored as if the user had PUT it with If-None-Match: *, so that the
 * read and any later node write see one document with one ETag. *made: it was stored now. */
static enum xcap_status engine_default_document(struct engine *e, const struct engine_request *req,
                                                bool *made, struct xcap_err *err)
{
    const struct xcap_uri *u = req->uri;
    const char *body = usage_default_doc(e->cfg.usage, req->au);
    if (!body || u->tree != XCAP_TREE_USERS || strcmp(u->path, req->au->default_name) != 0 ||
        (!u->node_sel && (req->method == ENGINE_PUT || req->method == ENGINE_DELETE)))
        return XCAP_OK;
    struct store_doc d = {0};
    enum store_rc rc = engine_read_document(e, u, &d);
    if (rc == STORE_OK)
        store_doc_release(&d);
    if (rc != STORE_NOTFOUND)
        return rc == STORE_OK ? XCAP_OK : engine_store_fail(err, rc);
    struct xcap_uri doc_uri = *u;
    doc_uri.node_sel = NULL;
    doc_uri.query = NULL;
    struct engine_request put = *req;
    put.method = ENGINE_PUT;
    put.uri = &doc_uri;
    put.content_type = req->au->mime;
    put.if_match = NULL;
    put.if_none_match = "*";
    put.body = body;
    put.body_len = strlen(body);
    struct engine_reply r = {0};
    buf_init(&r.body, 0);
    enum xcap_status st = engine_put_document(e, &put, &r, err);
    buf_release(&r.body);
    *made = st == XCAP_CREATED;
    /* 412: another request stored it first; that one is the document now. */
    if (st == XCAP_CREATED || st == XCAP_PRECONDITION_FAILED) {
        xcap_err_release(err);
        return XCAP_OK;
    }
    return st;
}

static enum xcap_status engine_dispatch(struct engine *e, const struct engine_request *req,
                                        struct engine_reply *rep, struct xcap_err *err)
{
    if (req->uri->node_sel)
        return engine_node_execute(e, req, rep, err);
    switch (req->method) {
    case ENGINE_GET:
    case ENGINE_HEAD:
        return engine_get_document(e, req, rep, err);
    case ENGINE_PUT:
        return engine_put_document(e, req, rep, err);
    case ENGINE_DELETE:
        return engine_delete_document(e, req, rep, err);
    }
    return xcap_fail(err, XCAP_METHOD_NOT_ALLOWED, NULL);
}

enum xcap_status engine_execute(struct engine *e, const struct engine_request *req,
                                struct engine_reply *rep, struct xcap_err *err)
{
    rep->etag[0] = '\0';
    rep->content_type = NULL;
    rep->changed = false;
    if (req->uri->is_dir)
        return xcap_fail(err, XCAP_NOT_FOUND, "not a document");
    bool made = false;
    enum xcap_status st = engine_default_document(e, req, &made, err);
    if (st == XCAP_OK)
        st = engine_dispatch(e, req, rep, err);
    if (made)
        rep->changed = true; /* the default's change-log record is notified too */
    return st;
}
