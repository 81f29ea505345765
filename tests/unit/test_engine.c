/* xdms/engine.c, document level, over a real LMDB store in a temporary directory: create and
 * replace, ETags, If-Match / If-None-Match (RFC 4825 §7.11, RFC 9110 §13), body errors, delete,
 * the change log, the per-user document quota and racing writers. The usage layer is NULL
 * (no schemas): the engine's own sequencing is under test. */
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "xdiff.h"
#include "unit.h"
#include "xdoc.h"

#define ALICE "sip:alice@example.com"
#define BOB "sip:bob@example.com"
#define RL_INDEX "/resource-lists/users/" ALICE "/index"
#define RL_MIME "application/resource-lists+xml"
#define DOC1                                                                                       \
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"                                                 \
    "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list name=\"a\"/>"           \
    "</resource-lists>"
#define DOC2                                                                                       \
    "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list name=\"b\"/>"           \
    "</resource-lists>"

struct fx {
    char dir[64];
    struct store *store;
    struct engine *engine;
    enum xdms_role role;
};

static int fx_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void fx_open(struct fx *f, enum xdms_role role, unsigned max_docs)
{
    snprintf(f->dir, sizeof f->dir, "/tmp/xdm-test-engine-XXXXXX");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(f->dir));
    struct store_options so = {0};
    CU_ASSERT_EQUAL_FATAL(store_open(f->dir, &so, &f->store), STORE_OK);
    struct engine_config ec = {
        .role = role,
        .xcap_root = "http://127.0.0.1:8080/xcap-root/",
        .max_docs_per_user = max_docs,
        .usage = NULL,
    };
    f->engine = engine_new(f->store, &ec);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f->engine);
    f->role = role;
}

static void fx_close(struct fx *f)
{
    engine_free(f->engine);
    store_close(f->store);
    nftw(f->dir, fx_rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

struct result {
    enum xcap_status st;
    char etag[STORE_ETAG_MAX];
    const char *ctype;
    bool changed;
    struct buf body;
    enum xcap_status err_status;
    char *phrase;
};

static void result_release(struct result *r)
{
    buf_release(&r->body);
    free(r->phrase);
    r->phrase = NULL;
}

struct req {
    enum engine_method method;
    const char *path; /* below the root, e.g. RL_INDEX */
    const char *ctype;
    const char *if_match;
    const char *if_none_match;
    const char *body;
    size_t body_len; /* 0 = strlen(body) */
};

/* Runs one request; the result owns its body and phrase. */
static enum xcap_status fx_run(struct fx *f, const struct req *q, struct result *r)
{
    memset(r, 0, sizeof *r);
    buf_init(&r->body, 1 << 20);
    struct xcap_uri u;
    struct xcap_err err = {0};
    enum xcap_status st = xcap_uri_parse("", q->path, NULL, &u, &err);
    CU_ASSERT_EQUAL_FATAL(st, XCAP_OK);
    const struct appusage *au = appusage_find(f->role, u.auid);
    CU_ASSERT_PTR_NOT_NULL_FATAL(au);
    struct engine_request er = {
        .method = q->method,
        .uri = &u,
        .au = au,
        .content_type = q->ctype,
        .if_match = q->if_match,
        .if_none_match = q->if_none_match,
        .body = q->body,
        .body_len = q->body ? (q->body_len ? q->body_len : strlen(q->body)) : 0,
    };
    struct engine_reply rep;
    memset(&rep, 0x5A, sizeof rep); /* the engine must set etag, content_type and changed */
    buf_init(&rep.body, 1 << 20);
    r->st = engine_execute(f->engine, &er, &rep, &err);
    snprintf(r->etag, sizeof r->etag, "%s", rep.etag);
    r->ctype = rep.content_type;
    r->changed = rep.changed;
    buf_release(&r->body);
    r->body = rep.body;
    r->err_status = err.status;
    r->phrase = err.phrase ? strdup(err.phrase) : NULL;
    xcap_err_release(&err);
    xcap_uri_release(&u);
    return r->st;
}

static enum xcap_status fx_put(struct fx *f, const char *path, const char *body, struct result *r)
{
    const struct req q = {ENGINE_PUT, path, RL_MIME, NULL, NULL, body, 0};
    return fx_run(f, &q, r);
}

static enum xcap_status fx_get(struct fx *f, const char *path, struct result *r)
{
    const struct req q = {ENGINE_GET, path, NULL, NULL, NULL, NULL, 0};
    return fx_run(f, &q, r);
}

/* The stored state of one document plus the newest change-log sequence. */
struct snap {
    bool exists;
    char etag[STORE_ETAG_MAX];
    char *data;
    size_t len;
    uint64_t last_seq;
};

static void fx_snap(struct fx *f, const char *auid, const char *xui, const char *path,
                    struct snap *s)
{
    memset(s, 0, sizeof *s);
    struct store_txn *t;
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(f->store, false, &t), STORE_OK);
    struct doc_key k = {auid, "users", xui, path};
    struct store_doc d = {0};
    enum store_rc rc = store_doc_get(t, &k, &d);
    CU_ASSERT(rc == STORE_OK || rc == STORE_NOTFOUND);
    if (rc == STORE_OK) {
        s->exists = true;
        memcpy(s->etag, d.etag, sizeof s->etag);
        s->data = malloc(d.len + 1);
        memcpy(s->data, d.data, d.len + 1);
        s->len = d.len;
    }
    store_doc_release(&d);
    CU_ASSERT_EQUAL(store_change_last(t, &s->last_seq), STORE_OK);
    store_txn_abort(t);
}

static bool snap_equal(const struct snap *a, const struct snap *b)
{
    return a->exists == b->exists && strcmp(a->etag, b->etag) == 0 && a->len == b->len &&
           (a->len == 0 || memcmp(a->data, b->data, a->len) == 0) && a->last_seq == b->last_seq;
}

static void snap_release(struct snap *s)
{
    free(s->data);
    s->data = NULL;
}

/* Copies of the change-log records after a sequence number. */
struct change_copy {
    uint64_t seq;
    enum store_change_kind kind;
    char auid[64], tree[16], xui[64], path[64];
    char prev[STORE_ETAG_MAX], next[STORE_ETAG_MAX];
};

struct change_list {
    struct change_copy items[16];
    size_t n;
};

static int fx_change_cb(void *cls, const struct store_change *c)
{
    struct change_list *l = cls;
    if (l->n == 16)
        return 1;
    struct change_copy *x = &l->items[l->n++];
    x->seq = c->seq;
    x->kind = c->kind;
    snprintf(x->auid, sizeof x->auid, "%s", c->key.auid);
    snprintf(x->tree, sizeof x->tree, "%s", c->key.tree);
    snprintf(x->xui, sizeof x->xui, "%s", c->key.xui);
    snprintf(x->path, sizeof x->path, "%s", c->key.path);
    snprintf(x->prev, sizeof x->prev, "%s", c->prev_etag);
    snprintf(x->next, sizeof x->next, "%s", c->new_etag);
    return 0;
}

static void fx_changes(struct fx *f, uint64_t after, struct change_list *l)
{
    l->n = 0;
    struct store_txn *t;
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(f->store, false, &t), STORE_OK);
    CU_ASSERT_EQUAL(store_change_read(t, after, fx_change_cb, l), STORE_OK);
    store_txn_abort(t);
}

/* "\"etag\"" for header values. */
static void quoted(char *out, size_t len, const char *prefix, const char *etag)
{
    snprintf(out, len, "%s\"%s\"", prefix, etag);
}

static int fx_suite_init(void)
{
    xdoc_global_init();
    return 0;
}

static int fx_suite_cleanup(void)
{
    xdoc_global_cleanup();
    return 0;
}

/* ---------------------------------------------------------------------------------------- */

static void test_create_replace_get(void)
{
    struct fx f;
    fx_open(&f, ROLE_SHARED_LIST, 0);
    struct result r;
    CU_ASSERT_EQUAL(fx_get(&f, RL_INDEX, &r), XCAP_NOT_FOUND);
    CU_ASSERT_STRING_EQUAL(r.etag, "");
    CU_ASSERT_FALSE(r.changed);
    result_release(&r);

    CU_ASSERT_EQUAL(fx_put(&f, RL_INDEX, DOC1, &r), XCAP_CREATED);
    CU_ASSERT(r.etag[0] != '\0');
    CU_ASSERT_TRUE(r.changed);
    char e1[STORE_ETAG_MAX];
    snprintf(e1, sizeof e1, "%s", r.etag);
    result_release(&r);

    CU_ASSERT_EQUAL(fx_get(&f, RL_INDEX, &r), XCAP_OK);
    CU_ASSERT_STRING_EQUAL(r.etag, e1);
    CU_ASSERT_PTR_NOT_NULL(r.ctype);
    if (r.ctype)
        CU_ASSERT_STRING_EQUAL(r.ctype, RL_MIME);
    /* the document comes back byte for byte (RFC 4825 §8.2.5: not modified) */
    CU_ASSERT_EQUAL(r.body.len, strlen(DOC1));
    CU_ASSERT_STRING_EQUAL(r.body.data, DOC1);
    CU_ASSERT_FALSE(r.changed);
    result_release(&r);

    CU_ASSERT_EQUAL(fx_put(&f, RL_INDEX, DOC2, &r), XCAP_OK);
    CU_ASSERT(r.etag[0] != '\0');
    CU_ASSERT_STRING_NOT_EQUAL(r.etag, e1);
    char e2[STORE_ETAG_MAX];
    snprintf(e2, sizeof e2, "%s", r.etag);
    result_release(&r);

    /* HEAD: same status and ETag as GET */
    const struct req head = {ENGINE_HEAD, RL_INDEX, NULL, NULL, NULL, NULL, 0};
    CU_ASSERT_EQUAL(fx_run(&f, &head, &r), XCAP_OK);
    CU_ASSERT_STRING_EQUAL(r.etag, e2);
    result_release(&r);
    CU_ASSERT_EQUAL(fx_get(&f, RL_INDEX, &r), XCAP_OK);
    CU_ASSERT_STRING_EQUAL(r.body.data, DOC2);
    result_release(&r);

    /* another user's document of the same name is another document */
    CU_ASSERT_EQUAL(fx_get(&f, "/resource-lists/users/" BOB "/index", &r), XCAP_NOT_FOUND);
    result_release(&r);
    /* a directory is not a document */
    CU_ASSERT_EQUAL(fx_get(&f, "/resource-lists/users/" ALICE "/", &r), XCAP_NOT_FOUND);
    result_release(&r);
    /* Content-Type parameters and case are ignored (RFC 4825 §8.2.2) */
    const struct req put_cs = {
        ENGINE_PUT, RL_INDEX, " Application/Resource-Lists+XML ; charset=UTF-8", NULL, NULL,
        DOC1,       0};
    CU_ASSERT_EQUAL(fx_run(&f, &put_cs, &r), XCAP_OK);
    result_release(&r);
    fx_close(&f);
}

static void test_etags_never_repeat(void)
{
    struct fx f;
    fx_open(&f, ROLE_SHARED_LIST, 0);
    enum { N = 60 };
    char seen[N][STORE_ETAG_MAX];
    size_t n = 0;
    struct result r;
    for (int i = 0; i < N; i++) {
        const char *path = (i % 3 == 2) ? "/resource-lists/users/" BOB "/index" : RL_INDEX;
        if (i % 10 == 9) {
            /* delete and re-create: the new ETag is still fresh */
            const struct req del = {ENGINE_DELETE, path, NULL, NULL, NULL, NULL, 0};
            CU_ASSERT_EQUAL(fx_run(&f, &del, &r), XCAP_OK);
            result_release(&r);
        }
        enum xcap_status st = fx_put(&f, path, (i & 1) ? DOC1 : DOC2, &r);
        CU_ASSERT(st == XCAP_OK || st == XCAP_CREATED);
        for (size_t k = 0; k < n; k++) {
            if (strcmp(seen[k], r.etag) == 0) {
                fprintf(stderr, "\n  ETag %s repeated at write %d", r.etag, i);
                CU_FAIL("ETag reused");
            }
        }
        snprintf(seen[n++], STORE_ETAG_MAX, "%s", r.etag);
        result_release(&r);
    }
    /* the same bytes written twice still get two ETags */
    CU_ASSERT_EQUAL(fx_put(&f, RL_INDEX, DOC1, &r), XCAP_OK);
    char a[STORE_ETAG_MAX];
    snprintf(a, sizeof a, "%s", r.etag);
    result_release(&r);
    CU_ASSERT_EQUAL(fx_put(&f, RL_INDEX, DOC1, &r), XCAP_OK);
    CU_ASSERT_STRING_NOT_EQUAL(a, r.etag);
    result_release(&r);
    fx_close(&f);
}

static void test_if_match(void)
{
    struct fx f;
    fx_open(&f, ROLE_SHARED_LIST, 0);
    struct result r;
    char h[128];

    /* If-Match on a missing document: even "*" fails (RFC 9110 §13.1.1) */
    const struct req create_star = {ENGINE_PUT, RL_INDEX, RL_MIME, "*", NULL, DOC1, 0};
    CU_ASSERT_EQUAL(fx_run(&f, &create_star, &r), XCAP_PRECONDITION_FAILED);
    CU_ASSERT_EQUAL(r.err_status, XCAP_PRECONDITION_FAILED);
    result_release(&r);
    CU_ASSERT_EQUAL(fx_get(&f, RL_INDEX, &r), XCAP_NOT_FOUND);
    result_release(&r);

    CU_ASSERT_EQUAL(fx_put(&f, RL_INDEX, DOC1, &r), XCAP_CREATED);
    char cur[STORE_ETAG_MAX];
    snprintf(cur, sizeof cur, "%s", r.etag);
    result_release(&r);

    struct {
        const char *fmt_prefix; /* header = prefix + "\"cur\"" + suffix, or a literal */
        const char *literal;
        bool holds;
    } cases[] = {
        {"", NULL, true},    {"\"nope\", ", NULL, true}, {"\"a\",\"b\" ,  ", NULL, true},
        {"W/", NULL, false}, /* weak tags never match If-Match (RFC 4825 §8.5) */
        {NULL, "*", true},   {NULL, "\"nope\"", false},  {NULL, "\"\"", false},
        {NULL, "", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (cases[i].literal)
            snprintf(h, sizeof h, "%s", cases[i].literal);
        else
            quoted(h, sizeof h, cases[i].fmt_prefix, cur);
        /* GET */
        const struct req g = {ENGINE_GET, RL_INDEX, NULL, h, NULL, NULL, 0};
        enum xcap_status st = fx_run(&f, &g, &r);
        if (st != (cases[i].holds ? XCAP_OK : XCAP_PRECONDITION_FAILED))
            fprintf(stderr, "\n  If-Match: %s on GET gave %s", h, status_name(st));
        CU_ASSERT_EQUAL(st, cases[i].holds ? XCAP_OK : XCAP_PRECONDITION_FAILED);
        result_release(&r);
        /* PUT: a failed precondition changes nothing */
        struct snap before, after;
        fx_snap(&f, "resource-lists", ALICE, "index", &before);
        const struct req p = {ENGINE_PUT, RL_INDEX, RL_MIME, h, NULL, DOC2, 0};
        st = fx_run(&f, &p, &r);
        CU_ASSERT_EQUAL(st, cases[i].holds ? XCAP_OK : XCAP_PRECONDITION_FAILED);
        if (st == XCAP_OK) {
            CU_ASSERT_STRING_NOT_EQUAL(r.etag, cur);
            snprintf(cur, sizeof cur, "%s", r.etag);
        } else {
            CU_ASSERT_FALSE(r.changed);
            fx_snap(&f, "resource-lists", ALICE, "index", &after);
            CU_ASSERT_TRUE(snap_equal(&before, &after));
            snap_release(&after);
        }
        snap_release(&before);
        result_release(&r);
    }

    /* DELETE with a stale tag: 412, still there; with the current one: gone */
    const struct req del_stale = {ENGINE_DELETE, RL_INDEX, NULL, "\"stale\"", NULL, NULL, 0};
    CU_ASSERT_EQUAL(fx_run(&f, &del_stale, &r), XCAP_PRECONDITION_FAILED);
    result_release(&r);
    CU_ASSERT_EQUAL(fx_get(&f, RL_INDEX, &r), XCAP_OK);
    result_release(&r);
    quoted(h, sizeof h, "", cur);
    const struct req del_cur = {ENGINE_DELETE, RL_INDEX, NULL, h, NULL, NULL, 0};
    CU_ASSERT_EQUAL(fx_run(&f, &del_cur, &r), XCAP_OK);
    result_release(&r);
    /* If-Match on the deleted document: 412, not 404 */
    CU_ASSERT_EQUAL(fx_run(&f, &del_cur, &r), XCAP_PRECONDITION_FAILED);
    result_release(&r);
    const struct req get_cur = {ENGINE_GET, RL_INDEX, NULL, h, NULL, NULL, 0};
    CU_ASSERT_EQUAL(fx_run(&f, &get_cur, &r), XCAP_PRECONDITION_FAILED);
    result_release(&r);
    fx_close(&f);
}

static void test_if_none_match(void)
{
    struct fx f;
    fx_open(&f, ROLE_SHARED_LIST, 0);
    struct result r;
    char h[128];

    /* "*" on create: only when the document does not exist (RFC 4825 §7.11; RFC 9110 §13.1.2) */
    const struct req create = {ENGINE_PUT, RL_INDEX, RL_MIME, NULL, "*", DOC1, 0};
    CU_ASSERT_EQUAL(fx_run(&f, &create, &r), XCAP_CREATED);
    char cur[STORE_ETAG_MAX];
    snprintf(cur, sizeof cur, "%s", r.etag);
    result_release(&r);
    struct snap before, after;
    fx_snap(&f, "resource-lists", ALICE, "index", &before);
    CU_ASSERT_EQUAL(fx_run(&f, &create, &r), XCAP_PRECONDITION_FAILED);
    CU_ASSERT_FALSE(r.changed);
    result_release(&r);
    fx_snap(&f, "resource-lists", ALICE, "index", &after);
    CU_ASSERT_TRUE(snap_equal(&before, &after));
    snap_release(&after);

    /* GET with the current tag: 304 with the ETag and no body (RFC 4825 §7.11; RFC 9110 §13.1.2) */
    quoted(h, sizeof h, "", cur);
    const struct req get = {ENGINE_GET, RL_INDEX, NULL, NULL, h, NULL, 0};
    CU_ASSERT_EQUAL(fx_run(&f, &get, &r), XCAP_NOT_MODIFIED);
    CU_ASSERT_STRING_EQUAL(r.etag, cur);
    CU_ASSERT_EQUAL(r.body.len, 0);
    result_release(&r);
    const struct req head = {ENGINE_HEAD, RL_INDEX, NULL, NULL, h, NULL, 0};
    CU_ASSERT_EQUAL(fx_run(&f, &head, &r), XCAP_NOT_MODIFIED);
    result_release(&r);
    /* weak comparison for If-None-Match: W/"cur" matches too; "*" matches an existing doc */
    quoted(h, sizeof h, "\"x\", W/", cur);
    CU_ASSERT_EQUAL(fx_run(&f, &get, &r), XCAP_NOT_MODIFIED);
    result_release(&r);
    const struct req get_star = {ENGINE_GET, RL_INDEX, NULL, NULL, "*", NULL, 0};
    CU_ASSERT_EQUAL(fx_run(&f, &get_star, &r), XCAP_NOT_MODIFIED);
    result_release(&r);
    /* another tag: full answer */
    const struct req get_other = {ENGINE_GET, RL_INDEX, NULL, NULL, "\"other\"", NULL, 0};
    CU_ASSERT_EQUAL(fx_run(&f, &get_other, &r), XCAP_OK);
    CU_ASSERT_STRING_EQUAL(r.body.data, DOC1);
    result_release(&r);

    /* PUT and DELETE with a matching If-None-Match: 412, untouched */
    quoted(h, sizeof h, "", cur);
    const struct req put = {ENGINE_PUT, RL_INDEX, RL_MIME, NULL, h, DOC2, 0};
    CU_ASSERT_EQUAL(fx_run(&f, &put, &r), XCAP_PRECONDITION_FAILED);
    result_release(&r);
    const struct req del = {ENGINE_DELETE, RL_INDEX, NULL, NULL, h, NULL, 0};
    CU_ASSERT_EQUAL(fx_run(&f, &del, &r), XCAP_PRECONDITION_FAILED);
    result_release(&r);
    const struct req del_star = {ENGINE_DELETE, RL_INDEX, NULL, NULL, "*", NULL, 0};
    CU_ASSERT_EQUAL(fx_run(&f, &del_star, &r), XCAP_PRECONDITION_FAILED);
    result_release(&r);
    fx_snap(&f, "resource-lists", ALICE, "index", &after);
    CU_ASSERT_TRUE(snap_equal(&before, &after));
    snap_release(&after);
    snap_release(&before);

    /* with a tag that does not match, the write goes through */
    const struct req put_other = {ENGINE_PUT, RL_INDEX, RL_MIME, NULL, "\"other\"", DOC2, 0};
    CU_ASSERT_EQUAL(fx_run(&f, &put_other, &r), XCAP_OK);
    result_release(&r);
    const struct req del_other = {ENGINE_DELETE, RL_INDEX, NULL, NULL, "\"other\"", NULL, 0};
    CU_ASSERT_EQUAL(fx_run(&f, &del_other, &r), XCAP_OK);
    result_release(&r);
    /* GET of a missing document with If-None-Match: 404 */
    CU_ASSERT_EQUAL(fx_run(&f, &get_star, &r), XCAP_NOT_FOUND);
    result_release(&r);
    fx_close(&f);
}

static void test_body_errors(void)
{
    struct fx f;
    fx_open(&f, ROLE_SHARED_LIST, 0);
    struct result r;
    CU_ASSERT_EQUAL(fx_put(&f, RL_INDEX, DOC1, &r), XCAP_CREATED);
    char cur[STORE_ETAG_MAX], h[128];
    snprintf(cur, sizeof cur, "%s", r.etag);
    result_release(&r);
    static const struct {
        const char *ctype;
        const char *body;
        size_t len;
        enum xcap_status st;
    } cases[] = {
        {RL_MIME, "<resource-lists><list></resource-lists>", 0, XCAP_NOT_WELL_FORMED},
        {RL_MIME, "", 0, XCAP_NOT_WELL_FORMED},
        {RL_MIME, "<!DOCTYPE a><resource-lists/>", 0, XCAP_NOT_WELL_FORMED},
        {RL_MIME, "<resource-lists>caf\xE9</resource-lists>", 0, XCAP_NOT_UTF8},
        {RL_MIME, "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><resource-lists/>", 0,
         XCAP_NOT_UTF8},
        {RL_MIME, "<resource-lists>\0</resource-lists>", 34, XCAP_NOT_UTF8},
        {"application/xml", DOC2, 0, XCAP_UNSUPPORTED_MEDIA},
        {"application/xcap-el+xml", DOC2, 0, XCAP_UNSUPPORTED_MEDIA},
        {"application/resource-lists", DOC2, 0, XCAP_UNSUPPORTED_MEDIA},
        {NULL, DOC2, 0, XCAP_UNSUPPORTED_MEDIA},
        {"", DOC2, 0, XCAP_UNSUPPORTED_MEDIA},
    };
    struct snap before, after;
    fx_snap(&f, "resource-lists", ALICE, "index", &before);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct req q = {ENGINE_PUT, RL_INDEX,      cases[i].ctype, NULL,
                              NULL,       cases[i].body, cases[i].len};
        enum xcap_status st = fx_run(&f, &q, &r);
        if (st != cases[i].st)
            fprintf(stderr, "\n  body case %zu gave %s", i, status_name(st));
        CU_ASSERT_EQUAL(st, cases[i].st);
        CU_ASSERT_EQUAL(r.err_status, cases[i].st);
        CU_ASSERT_FALSE(r.changed);
        if (st == XCAP_NOT_WELL_FORMED)
            CU_ASSERT_PTR_NOT_NULL(r.phrase); /* says what is wrong */
        result_release(&r);
        /* the same body on a new document creates nothing either */
        const struct req q2 = {ENGINE_PUT,     "/resource-lists/users/" ALICE "/other",
                               cases[i].ctype, NULL,
                               NULL,           cases[i].body,
                               cases[i].len};
        CU_ASSERT_EQUAL(fx_run(&f, &q2, &r), cases[i].st);
        result_release(&r);
        CU_ASSERT_EQUAL(fx_get(&f, "/resource-lists/users/" ALICE "/other", &r), XCAP_NOT_FOUND);
        result_release(&r);
    }
    fx_snap(&f, "resource-lists", ALICE, "index", &after);
    CU_ASSERT_TRUE(snap_equal(&before, &after));
    snap_release(&after);

    /* a failing precondition is reported before the body's problem (RFC 9110 §13.2.1) */
    const struct req both = {ENGINE_PUT, RL_INDEX, RL_MIME, "\"stale\"", NULL, "<broken", 0};
    CU_ASSERT_EQUAL(fx_run(&f, &both, &r), XCAP_PRECONDITION_FAILED);
    result_release(&r);
    /* with a holding precondition the body's problem is reported */
    quoted(h, sizeof h, "", cur);
    const struct req body_bad = {ENGINE_PUT, RL_INDEX, RL_MIME, h, NULL, "<broken", 0};
    CU_ASSERT_EQUAL(fx_run(&f, &body_bad, &r), XCAP_NOT_WELL_FORMED);
    result_release(&r);
    fx_snap(&f, "resource-lists", ALICE, "index", &after);
    CU_ASSERT_TRUE(snap_equal(&before, &after));
    snap_release(&after);
    snap_release(&before);
    fx_close(&f);
}

static void test_delete(void)
{
    struct fx f;
    fx_open(&f, ROLE_SHARED_LIST, 0);
    struct result r;
    const struct req del = {ENGINE_DELETE, RL_INDEX, NULL, NULL, NULL, NULL, 0};
    CU_ASSERT_EQUAL(fx_run(&f, &del, &r), XCAP_NOT_FOUND);
    CU_ASSERT_FALSE(r.changed);
    result_release(&r);
    CU_ASSERT_EQUAL(fx_put(&f, RL_INDEX, DOC1, &r), XCAP_CREATED);
    result_release(&r);
    CU_ASSERT_EQUAL(fx_put(&f, "/resource-lists/users/" ALICE "/keep", DOC1, &r), XCAP_CREATED);
    result_release(&r);
    CU_ASSERT_EQUAL(fx_run(&f, &del, &r), XCAP_OK);
    CU_ASSERT_STRING_EQUAL(r.etag, ""); /* RFC 4825 §8.5 */
    CU_ASSERT_TRUE(r.changed);
    result_release(&r);
    CU_ASSERT_EQUAL(fx_get(&f, RL_INDEX, &r), XCAP_NOT_FOUND);
    result_release(&r);
    CU_ASSERT_EQUAL(fx_run(&f, &del, &r), XCAP_NOT_FOUND);
    result_release(&r);
    /* the sibling document is untouched */
    CU_ASSERT_EQUAL(fx_get(&f, "/resource-lists/users/" ALICE "/keep", &r), XCAP_OK);
    result_release(&r);
    /* and it can be created again */
    CU_ASSERT_EQUAL(fx_put(&f, RL_INDEX, DOC2, &r), XCAP_CREATED);
    result_release(&r);
    fx_close(&f);
}

static void test_change_log(void)
{
    struct fx f;
    fx_open(&f, ROLE_SHARED_LIST, 0);
    struct result r;
    struct snap s0;
    fx_snap(&f, "resource-lists", ALICE, "index", &s0);
    uint64_t start = s0.last_seq;
    snap_release(&s0);

    CU_ASSERT_EQUAL(fx_put(&f, RL_INDEX, DOC1, &r), XCAP_CREATED);
    char e1[STORE_ETAG_MAX];
    snprintf(e1, sizeof e1, "%s", r.etag);
    result_release(&r);
    CU_ASSERT_EQUAL(fx_put(&f, RL_INDEX, DOC2, &r), XCAP_OK);
    char e2[STORE_ETAG_MAX];
    snprintf(e2, sizeof e2, "%s", r.etag);
    result_release(&r);
    /* failures and reads write nothing */
    CU_ASSERT_EQUAL(fx_put(&f, RL_INDEX, "<x", &r), XCAP_NOT_WELL_FORMED);
    result_release(&r);
    CU_ASSERT_EQUAL(fx_get(&f, RL_INDEX, &r), XCAP_OK);
    result_release(&r);
    const struct req stale = {ENGINE_PUT, RL_INDEX, RL_MIME, "\"stale\"", NULL, DOC1, 0};
    CU_ASSERT_EQUAL(fx_run(&f, &stale, &r), XCAP_PRECONDITION_FAILED);
    result_release(&r);
    const struct req del = {ENGINE_DELETE, RL_INDEX, NULL, NULL, NULL, NULL, 0};
    CU_ASSERT_EQUAL(fx_run(&f, &del, &r), XCAP_OK);
    result_release(&r);
    CU_ASSERT_EQUAL(fx_run(&f, &del, &r), XCAP_NOT_FOUND);
    result_release(&r);

    struct change_list l;
    fx_changes(&f, start, &l);
    CU_ASSERT_EQUAL_FATAL(l.n, 3);
    for (size_t i = 0; i < 3; i++) {
        CU_ASSERT_STRING_EQUAL(l.items[i].auid, "resource-lists");
        CU_ASSERT_STRING_EQUAL(l.items[i].tree, "users");
        CU_ASSERT_STRING_EQUAL(l.items[i].xui, ALICE);
        CU_ASSERT_STRING_EQUAL(l.items[i].path, "index");
        if (i)
            CU_ASSERT(l.items[i].seq > l.items[i - 1].seq);
    }
    CU_ASSERT_EQUAL(l.items[0].kind, STORE_CHANGE_PUT);
    CU_ASSERT_STRING_EQUAL(l.items[0].prev, "");
    CU_ASSERT_STRING_EQUAL(l.items[0].next, e1);
    CU_ASSERT_EQUAL(l.items[1].kind, STORE_CHANGE_PUT);
    CU_ASSERT_STRING_EQUAL(l.items[1].prev, e1);
    CU_ASSERT_STRING_EQUAL(l.items[1].next, e2);
    CU_ASSERT_EQUAL(l.items[2].kind, STORE_CHANGE_DELETE);
    CU_ASSERT_STRING_EQUAL(l.items[2].prev, e2);
    CU_ASSERT_STRING_EQUAL(l.items[2].next, "");
    fx_close(&f);
}

static void test_max_docs_per_user(void)
{
    struct fx f;
    fx_open(&f, ROLE_PRESENCE, 2);
    struct result r;
    const char *pr = "/pres-rules/users/" ALICE "/index";
    const char *pm = "/pidf-manipulation/users/" ALICE "/index";
    const char *opr = "/org.openmobilealliance.pres-rules/users/" ALICE "/pres-rules";
    const char *rules = "<ruleset xmlns=\"urn:ietf:params:xml:ns:common-policy\"/>";
    const char *pidf = "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"" ALICE "\"/>";
    const struct req q1 = {ENGINE_PUT, pr, "application/auth-policy+xml", NULL, NULL, rules, 0};
    const struct req q2 = {ENGINE_PUT, pm, "application/pidf+xml", NULL, NULL, pidf, 0};
    const struct req q3 = {ENGINE_PUT, opr, "application/auth-policy+xml", NULL, NULL, rules, 0};
    CU_ASSERT_EQUAL(fx_run(&f, &q1, &r), XCAP_CREATED);
    result_release(&r);
    CU_ASSERT_EQUAL(fx_run(&f, &q2, &r), XCAP_CREATED);
    result_release(&r);
    /* the third document over all AUIDs of this XDMS is refused (OMA XDM Core 2.0 §6.4) */
    CU_ASSERT_EQUAL(fx_run(&f, &q3, &r), XCAP_LOCAL_CONSTRAINT_FAILURE);
    CU_ASSERT_EQUAL(r.err_status, XCAP_LOCAL_CONSTRAINT_FAILURE);
    CU_ASSERT_PTR_NOT_NULL(r.phrase);
    CU_ASSERT_FALSE(r.changed);
    result_release(&r);
    const struct req g3 = {ENGINE_GET, opr, NULL, NULL, NULL, NULL, 0};
    CU_ASSERT_EQUAL(fx_run(&f, &g3, &r), XCAP_NOT_FOUND);
    result_release(&r);
    /* replacing an existing document is not a new document */
    CU_ASSERT_EQUAL(fx_run(&f, &q1, &r), XCAP_OK);
    result_release(&r);
    /* other users have their own quota */
    const struct req bob = {ENGINE_PUT,
                            "/pres-rules/users/" BOB "/index",
                            "application/auth-policy+xml",
                            NULL,
                            NULL,
                            rules,
                            0};
    CU_ASSERT_EQUAL(fx_run(&f, &bob, &r), XCAP_CREATED);
    result_release(&r);
    /* carol's quota does not count the documents of a user whose XUI merely starts with hers,
     * nor global documents */
    static const char *const carol_paths[] = {
        "/pres-rules/users/sip:carol@example.com.au/index",
        "/pidf-manipulation/users/sip:carol@example.com.au/index",
        "/pres-rules/global/g1",
        "/pidf-manipulation/global/g2",
        "/pres-rules/users/sip:carol@example.com/index",
        "/pidf-manipulation/users/sip:carol@example.com/index",
    };
    for (size_t i = 0; i < sizeof carol_paths / sizeof carol_paths[0]; i++) {
        bool is_pidf = strncmp(carol_paths[i], "/pidf", 5) == 0;
        const struct req q = {ENGINE_PUT,
                              carol_paths[i],
                              is_pidf ? "application/pidf+xml" : "application/auth-policy+xml",
                              NULL,
                              NULL,
                              is_pidf ? pidf : rules,
                              0};
        CU_ASSERT_EQUAL(fx_run(&f, &q, &r), XCAP_CREATED);
        result_release(&r);
    }
    /* after a delete there is room again */
    const struct req d2 = {ENGINE_DELETE, pm, NULL, NULL, NULL, NULL, 0};
    CU_ASSERT_EQUAL(fx_run(&f, &d2, &r), XCAP_OK);
    result_release(&r);
    CU_ASSERT_EQUAL(fx_run(&f, &q3, &r), XCAP_CREATED);
    result_release(&r);
    fx_close(&f);
}

/* Replaces the fixture's engine by one with a byte quota and a change-log detail bound. */
static void fx_reconfigure(struct fx *f, uint64_t max_bytes, size_t max_record)
{
    engine_free(f->engine);
    struct engine_config ec = {
        .role = f->role,
        .xcap_root = "http://127.0.0.1:8080/xcap-root/",
        .max_bytes_per_user = max_bytes,
        .change_max_record = max_record,
    };
    f->engine = engine_new(f->store, &ec);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f->engine);
}

/* max_bytes_per_user: a PUT that would grow the user's documents beyond it is a constraint
 * failure naming the quota and changes nothing; replacing counts the difference; shrinking is
 * always allowed; DELETE gives room back; other users and global documents do not count. */
/* A reload replaces the quotas and bounds; zero body bounds take their defaults. */
static void test_set_limits(void)
{
    struct fx f;
    fx_open(&f, ROLE_PRESENCE, 5);
    struct engine_limits l = {.max_docs_per_user = 1, .max_bytes_per_user = 0};
    engine_set_limits(f.engine, &l);
    struct engine_limits got = engine_get_limits(f.engine);
    struct prescan_limits def;
    prescan_limits_default(&def);
    CU_ASSERT_EQUAL(got.max_docs_per_user, 1);
    CU_ASSERT_EQUAL(got.max_bytes_per_user, 0);
    CU_ASSERT_EQUAL(got.limits.max_attributes, def.max_attributes);
    CU_ASSERT_EQUAL(got.limits.max_elements, def.max_elements);
    CU_ASSERT_EQUAL(got.limits.max_depth, def.max_depth);
    const char *rules = "<ruleset xmlns=\"urn:ietf:params:xml:ns:common-policy\"/>";
    const struct req q1 = {ENGINE_PUT,
                           "/pres-rules/users/" ALICE "/index",
                           "application/auth-policy+xml",
                           NULL,
                           NULL,
                           rules,
                           0};
    const struct req q2 = {ENGINE_PUT,
                           "/pres-rules/users/" ALICE "/other",
                           "application/auth-policy+xml",
                           NULL,
                           NULL,
                           rules,
                           0};
    struct result r;
    CU_ASSERT_EQUAL(fx_run(&f, &q1, &r), XCAP_CREATED);
    result_release(&r);
    CU_ASSERT_EQUAL(fx_run(&f, &q2, &r), XCAP_LOCAL_CONSTRAINT_FAILURE);
    result_release(&r);
    /* A depth bound of 1 refuses the (two-level) body from now on. */
    l.max_docs_per_user = 5;
    l.limits.max_depth = 1;
    engine_set_limits(f.engine, &l);
    const char *deep = "<ruleset xmlns=\"urn:ietf:params:xml:ns:common-policy\"><rule id=\"a\"/>"
                       "</ruleset>";
    const struct req q3 = {ENGINE_PUT,
                           "/pres-rules/users/" ALICE "/other",
                           "application/auth-policy+xml",
                           NULL,
                           NULL,
                           deep,
                           0};
    CU_ASSERT_EQUAL(fx_run(&f, &q3, &r), XCAP_CONSTRAINT_FAILURE);
    result_release(&r);
    fx_close(&f);
}

static void test_max_bytes_per_user(void)
{
    struct fx f;
    fx_open(&f, ROLE_SHARED_LIST, 0);
    size_t l1 = strlen(DOC1), l2 = strlen(DOC2);
    CU_ASSERT_FATAL(l1 > l2);
    fx_reconfigure(&f, l1 + l2 - 1, 0);
    const char *other = "/resource-lists/users/" ALICE "/other";
    struct result r;
    CU_ASSERT_EQUAL(fx_put(&f, RL_INDEX, DOC1, &r), XCAP_CREATED);
    result_release(&r);
    CU_ASSERT_EQUAL(fx_put(&f, other, DOC2, &r), XCAP_CONSTRAINT_FAILURE);
    CU_ASSERT_FALSE(r.changed);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r.phrase);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.phrase, "max_bytes_per_user"));
    CU_ASSERT_PTR_NOT_NULL(strstr(r.phrase, ALICE));
    result_release(&r);
    CU_ASSERT_EQUAL(fx_get(&f, other, &r), XCAP_NOT_FOUND);
    result_release(&r);
    /* replacing DOC1 by the smaller DOC2 makes room for DOC2 beside it... */
    CU_ASSERT_EQUAL(fx_put(&f, RL_INDEX, DOC2, &r), XCAP_OK);
    result_release(&r);
    CU_ASSERT_EQUAL(fx_put(&f, other, DOC2, &r), XCAP_CREATED);
    result_release(&r);
    /* ...but not for growing it back */
    CU_ASSERT_EQUAL(fx_put(&f, RL_INDEX, DOC1, &r), XCAP_CONSTRAINT_FAILURE);
    result_release(&r);
    /* other users have their own count */
    CU_ASSERT_EQUAL(fx_put(&f, "/resource-lists/users/" BOB "/index", DOC1, &r), XCAP_CREATED);
    result_release(&r);
    /* a lower quota: shrinking writes still pass, growing ones do not */
    fx_reconfigure(&f, l2, 0);
    CU_ASSERT_EQUAL(fx_put(&f, other, DOC2, &r), XCAP_OK);
    result_release(&r);
    const struct req del = {ENGINE_DELETE, other, NULL, NULL, NULL, NULL, 0};
    CU_ASSERT_EQUAL(fx_run(&f, &del, &r), XCAP_OK);
    result_release(&r);
    CU_ASSERT_EQUAL(fx_put(&f, other, DOC2, &r), XCAP_CONSTRAINT_FAILURE);
    result_release(&r);
    /* 0 = unlimited */
    fx_reconfigure(&f, 0, 0);
    CU_ASSERT_EQUAL(fx_put(&f, other, DOC1, &r), XCAP_CREATED);
    result_release(&r);
    fx_close(&f);
}

struct detail_seen {
    size_t n;
    size_t len;
    bool etags_only;
};

static int fx_detail_cb(void *cls, const struct store_change *c)
{
    struct detail_seen *d = cls;
    d->n++;
    d->len = c->detail_len;
    d->etags_only = c->detail_len == sizeof XDIFF_DETAIL_ETAGS_ONLY - 1 &&
                    memcmp(c->detail, XDIFF_DETAIL_ETAGS_ONLY, c->detail_len) == 0;
    return 0;
}

static struct detail_seen fx_last_detail(struct fx *f, uint64_t after)
{
    struct detail_seen d = {0};
    struct store_txn *t;
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(f->store, false, &t), STORE_OK);
    CU_ASSERT_EQUAL(store_change_read(t, after, fx_detail_cb, &d), STORE_OK);
    store_txn_abort(t);
    return d;
}

/* change_max_record: an element edit whose detail is larger is logged with its ETags only. */
static void test_change_detail_bound(void)
{
    struct fx f;
    fx_open(&f, ROLE_SHARED_LIST, 0);
    fx_reconfigure(&f, 0, 300);
    struct result r;
    CU_ASSERT_EQUAL(fx_put(&f, RL_INDEX, DOC1, &r), XCAP_CREATED);
    result_release(&r);
    const char *el = RL_INDEX "/~~/resource-lists/list/entry";
    const struct req small = {ENGINE_PUT, el,   "application/xcap-el+xml",
                              NULL,       NULL, "<entry uri=\"sip:x@example.com\"/>",
                              0};
    CU_ASSERT_EQUAL(fx_run(&f, &small, &r), XCAP_CREATED);
    result_release(&r);
    struct detail_seen d = fx_last_detail(&f, 1);
    CU_ASSERT_EQUAL(d.n, 1);
    CU_ASSERT(d.len > 0 && d.len <= 300);
    CU_ASSERT_FALSE(d.etags_only);
    char big[1024];
    int n = snprintf(big, sizeof big,
                     "<entry uri=\"sip:x@example.com\"><display-name>%0600d"
                     "</display-name></entry>",
                     7);
    CU_ASSERT_FATAL(n > 300 && (size_t)n < sizeof big);
    const struct req large = {ENGINE_PUT, el, "application/xcap-el+xml", NULL, NULL, big, 0};
    CU_ASSERT_EQUAL(fx_run(&f, &large, &r), XCAP_OK);
    CU_ASSERT_TRUE(r.changed);
    result_release(&r);
    d = fx_last_detail(&f, 2);
    CU_ASSERT_EQUAL(d.n, 1);
    CU_ASSERT_TRUE(d.etags_only);
    /* the edit itself is stored whole */
    const struct req get = {ENGINE_GET, el, NULL, NULL, NULL, NULL, 0};
    CU_ASSERT_EQUAL(fx_run(&f, &get, &r), XCAP_OK);
    CU_ASSERT_EQUAL(r.body.len, (size_t)n);
    result_release(&r);
    fx_close(&f);
}

/* Two writers with the same If-Match: the engine compares inside the write transaction, so
 * exactly one wins (RFC 4825 §8.2). */
struct racer {
    struct fx *f;
    pthread_barrier_t *go;
    const char *if_match;
    const char *body;
    const char *if_none_match;
    enum xcap_status st;
    char etag[STORE_ETAG_MAX];
};

static void *racer_run(void *arg)
{
    struct racer *x = arg;
    struct xcap_uri u;
    struct xcap_err err = {0};
    x->st = XCAP_INTERNAL;
    if (xcap_uri_parse("", RL_INDEX, NULL, &u, &err) != XCAP_OK)
        return NULL;
    struct engine_request er = {
        .method = ENGINE_PUT,
        .uri = &u,
        .au = appusage_find(ROLE_SHARED_LIST, "resource-lists"),
        .content_type = RL_MIME,
        .if_match = x->if_match,
        .if_none_match = x->if_none_match,
        .body = x->body,
        .body_len = strlen(x->body),
    };
    struct engine_reply rep;
    buf_init(&rep.body, 1 << 16);
    pthread_barrier_wait(x->go);
    x->st = engine_execute(x->f->engine, &er, &rep, &err);
    snprintf(x->etag, sizeof x->etag, "%s", rep.etag);
    buf_release(&rep.body);
    xcap_err_release(&err);
    xcap_uri_release(&u);
    return NULL;
}

/* A request run in its own thread, so the test can hold the writer lock meanwhile. */
struct waiter {
    struct fx *f;
    struct req q;
    enum xcap_status st;
    char phrase[200];
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
};

static void *waiter_run(void *arg)
{
    struct waiter *w = arg;
    struct xcap_uri u;
    struct xcap_err err = {0};
    enum xcap_status st = xcap_uri_parse("", w->q.path, NULL, &u, &err);
    if (st == XCAP_OK) {
        struct engine_request er = {
            .method = w->q.method,
            .uri = &u,
            .au = appusage_find(ROLE_SHARED_LIST, "resource-lists"),
            .content_type = w->q.ctype,
            .body = w->q.body,
            .body_len = strlen(w->q.body),
        };
        struct engine_reply rep;
        buf_init(&rep.body, 1 << 16);
        st = engine_execute(w->f->engine, &er, &rep, &err);
        buf_release(&rep.body);
        xcap_uri_release(&u);
    }
    snprintf(w->phrase, sizeof w->phrase, "%s", err.phrase ? err.phrase : "");
    xcap_err_release(&err);
    pthread_mutex_lock(&w->lock);
    w->st = st;
    w->done = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* Waits up to secs for w to finish; returns whether it did. */
static bool waiter_wait(struct waiter *w, int secs)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += secs;
    pthread_mutex_lock(&w->lock);
    while (!w->done && pthread_cond_timedwait(&w->cond, &w->lock, &until) == 0)
        ;
    bool done = w->done;
    pthread_mutex_unlock(&w->lock);
    return done;
}

/* A body the engine refuses is judged before the write transaction, and the answer needs none:
 * while another writer holds the lock, refused document, element and attribute bodies are
 * answered at once; an acceptable body waits for the lock (the control that shows the lock is
 * really held). */
static void test_refused_body_never_waits(void)
{
    struct fx f;
    fx_open(&f, ROLE_SHARED_LIST, 0);
    struct result r;
    CU_ASSERT_EQUAL(fx_put(&f, RL_INDEX, DOC1, &r), XCAP_CREATED);
    result_release(&r);
    struct buf many;
    buf_init(&many, 4 << 20);
    CU_ASSERT_EQUAL(buf_puts(&many, "<entry uri=\"sip:x@y\""), 0);
    for (int i = 0; i < 143000; i++)
        CU_ASSERT_EQUAL_FATAL(buf_printf(&many, " a%d=\"\"", i), 0);
    CU_ASSERT_EQUAL(buf_puts(&many, "/>"), 0);
    const char *entry = RL_INDEX "/~~/resource-lists/list/entry";
    struct {
        struct req q;
        enum xcap_status want;
    } cases[] = {
        {{ENGINE_PUT, entry, "application/xcap-el+xml", NULL, NULL, many.data, 0},
         XCAP_CONSTRAINT_FAILURE},
        {{ENGINE_PUT, entry, "application/xcap-el+xml", NULL, NULL, "<entry", 0},
         XCAP_NOT_XML_FRAG},
        {{ENGINE_PUT, RL_INDEX "/~~/resource-lists/list/@name", "application/xcap-att+xml", NULL,
          NULL, "a<b", 0},
         XCAP_NOT_XML_ATT_VALUE},
        {{ENGINE_PUT, RL_INDEX, RL_MIME, NULL, NULL, "<resource-lists", 0}, XCAP_NOT_WELL_FORMED},
        {{ENGINE_PUT, RL_INDEX, RL_MIME, NULL, NULL, many.data, 0}, XCAP_CONSTRAINT_FAILURE},
        /* the control: a good element body waits for the writer */
        {{ENGINE_PUT, entry, "application/xcap-el+xml", NULL, NULL, "<entry uri=\"sip:x@y\"/>", 0},
         XCAP_CREATED},
    };
    size_t n = sizeof cases / sizeof cases[0];
    for (size_t i = 0; i < n; i++) {
        struct store_txn *t;
        CU_ASSERT_EQUAL_FATAL(store_txn_begin(f.store, true, &t), STORE_OK);
        struct waiter w = {.f = &f, .q = cases[i].q, .st = XCAP_INTERNAL};
        pthread_mutex_init(&w.lock, NULL);
        pthread_cond_init(&w.cond, NULL);
        pthread_t th;
        CU_ASSERT_EQUAL_FATAL(pthread_create(&th, NULL, waiter_run, &w), 0);
        bool control = i + 1 == n;
        bool done = waiter_wait(&w, control ? 1 : 10);
        if (done == control)
            fprintf(stderr, "\n  case %zu: %s while the writer lock was held\n", i,
                    done ? "finished" : "still waiting");
        CU_ASSERT_EQUAL(done, !control);
        store_txn_abort(t);
        pthread_join(th, NULL);
        if (w.st != cases[i].want)
            fprintf(stderr, "\n  case %zu: %s (%s)\n", i, status_name(w.st), w.phrase);
        CU_ASSERT_EQUAL(w.st, cases[i].want);
        pthread_cond_destroy(&w.cond);
        pthread_mutex_destroy(&w.lock);
    }
    buf_release(&many);
    fx_close(&f);
}

static void test_racing_if_match(void)
{
    struct fx f;
    fx_open(&f, ROLE_SHARED_LIST, 0);
    struct result r;
    CU_ASSERT_EQUAL(fx_put(&f, RL_INDEX, DOC1, &r), XCAP_CREATED);
    char cur[STORE_ETAG_MAX];
    snprintf(cur, sizeof cur, "%s", r.etag);
    result_release(&r);
    for (int round = 0; round < 25; round++) {
        char h[128];
        quoted(h, sizeof h, "", cur);
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, 2);
        struct racer a = {&f, &go, h, DOC1, NULL, XCAP_INTERNAL, ""};
        struct racer b = {&f, &go, h, DOC2, NULL, XCAP_INTERNAL, ""};
        pthread_t ta, tb;
        CU_ASSERT_EQUAL_FATAL(pthread_create(&ta, NULL, racer_run, &a), 0);
        CU_ASSERT_EQUAL_FATAL(pthread_create(&tb, NULL, racer_run, &b), 0);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        pthread_barrier_destroy(&go);
        int wins = (a.st == XCAP_OK) + (b.st == XCAP_OK);
        int lost = (a.st == XCAP_PRECONDITION_FAILED) + (b.st == XCAP_PRECONDITION_FAILED);
        CU_ASSERT_EQUAL(wins, 1);
        CU_ASSERT_EQUAL(lost, 1);
        if (wins != 1) {
            fprintf(stderr, "\n  round %d: %s / %s", round, status_name(a.st), status_name(b.st));
            break;
        }
        const struct racer *w = a.st == XCAP_OK ? &a : &b;
        /* the stored document is the winner's */
        CU_ASSERT_EQUAL(fx_get(&f, RL_INDEX, &r), XCAP_OK);
        CU_ASSERT_STRING_EQUAL(r.etag, w->etag);
        CU_ASSERT_STRING_EQUAL(r.body.data, w->body);
        result_release(&r);
        snprintf(cur, sizeof cur, "%s", w->etag);
    }

    /* two creators with If-None-Match: * on a missing document: one 201, one 412 */
    const struct req del = {ENGINE_DELETE, RL_INDEX, NULL, NULL, NULL, NULL, 0};
    for (int round = 0; round < 25; round++) {
        CU_ASSERT_EQUAL(fx_run(&f, &del, &r), XCAP_OK);
        result_release(&r);
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, 2);
        struct racer a = {&f, &go, NULL, DOC1, "*", XCAP_INTERNAL, ""};
        struct racer b = {&f, &go, NULL, DOC2, "*", XCAP_INTERNAL, ""};
        pthread_t ta, tb;
        CU_ASSERT_EQUAL_FATAL(pthread_create(&ta, NULL, racer_run, &a), 0);
        CU_ASSERT_EQUAL_FATAL(pthread_create(&tb, NULL, racer_run, &b), 0);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        pthread_barrier_destroy(&go);
        int created = (a.st == XCAP_CREATED) + (b.st == XCAP_CREATED);
        int lost = (a.st == XCAP_PRECONDITION_FAILED) + (b.st == XCAP_PRECONDITION_FAILED);
        CU_ASSERT_EQUAL(created, 1);
        CU_ASSERT_EQUAL(lost, 1);
        if (created != 1)
            break;
    }
    fx_close(&f);
}

static void test_header_helpers(void)
{
    /* media types */
    CU_ASSERT_TRUE(engine_media_type_is(RL_MIME, RL_MIME));
    CU_ASSERT_TRUE(
        engine_media_type_is("  APPLICATION/resource-lists+xml\t;charset=utf-8", RL_MIME));
    CU_ASSERT_FALSE(engine_media_type_is("application/resource-lists+xmlx", RL_MIME));
    CU_ASSERT_FALSE(engine_media_type_is("application/resource-lists", RL_MIME));
    CU_ASSERT_FALSE(engine_media_type_is("", RL_MIME));
    CU_ASSERT_FALSE(engine_media_type_is(NULL, RL_MIME));
}

/* The directory listing is an engine operation: the documents of the user under the public root,
 * one folder per AUID of the role, an ETag that follows the documents. */
static void test_directory_listing(void)
{
    struct fx f;
    fx_open(&f, ROLE_SHARED_LIST, 0);
    struct result r;
    struct buf out;
    buf_init(&out, 1 << 20);
    struct xcap_err err = {0};
    char e1[STORE_ETAG_MAX], e2[STORE_ETAG_MAX];
    CU_ASSERT_EQUAL_FATAL(engine_directory(f.engine, ALICE, &out, e1, &err), XCAP_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(out.data, "<folder auid=\"resource-lists\"></folder>"));
    CU_ASSERT_EQUAL(fx_put(&f, RL_INDEX, DOC1, &r), XCAP_CREATED);
    buf_reset(&out);
    CU_ASSERT_EQUAL_FATAL(engine_directory(f.engine, ALICE, &out, e2, &err), XCAP_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(out.data, "<entry uri=\"http://127.0.0.1:8080/xcap-root/"
                                            "resource-lists/users/" ALICE "/index\" etag=\""));
    CU_ASSERT_STRING_NOT_EQUAL(e1, e2);
    xcap_err_release(&err);
    buf_release(&out);
    fx_close(&f);
}

static CU_TestInfo engine_tests[] = {
    {"directory listing", test_directory_listing},
    {"create 201, replace 200, GET, HEAD", test_create_replace_get},
    {"ETags change on every write and never repeat", test_etags_never_repeat},
    {"If-Match", test_if_match},
    {"If-None-Match", test_if_none_match},
    {"body errors and 415 leave the store untouched", test_body_errors},
    {"delete then 404", test_delete},
    {"one change-log record per change", test_change_log},
    {"limits replaced while running", test_set_limits},
    {"max_docs_per_user", test_max_docs_per_user},
    {"max_bytes_per_user", test_max_bytes_per_user},
    {"large element edits are logged with their ETags only", test_change_detail_bound},
    {"racing PUTs with one If-Match (or If-None-Match: *): one wins", test_racing_if_match},
    {"refused bodies never wait for the writer lock", test_refused_body_never_waits},
    {"If-Match / If-None-Match / media type helpers", test_header_helpers},
    CU_TEST_INFO_NULL,
};

int main(void)
{
    CU_SuiteInfo suites[] = {
        {"engine", fx_suite_init, fx_suite_cleanup, NULL, NULL, engine_tests},
        CU_SUITE_INFO_NULL,
    };
    return unit_run(suites);
}
