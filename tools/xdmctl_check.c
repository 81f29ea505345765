/* xdmctl check (see xdmctl_data.h): every document of every store read back and validated as a
 * PUT would be, the per-user quotas recomputed, the change log's order and ETag chains, and the
 * indexes the usages keep (appusage.index_check) against the documents. The stores are opened
 * read-only. */
#include "xdmctl_data.h"
#include "xdmctl_internal.h"

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <lmdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "appusage.h"
#include "buf.h"
#include "engine.h"
#include "notify.h"
#include "status.h"
#include "usage.h"
#include "xdoc.h"
#include "store.h"
#include "xcap_uri.h"

#define XDMCTL_CHECK_CHECK_DOCS 10000000u

/* A document key copied out of a transaction: the four parts, NUL-separated, in one allocation
 * (joined), so that keys compare with memcmp() like the store's own. */
struct xdmctl_check_key {
    const char *auid, *tree, *xui, *path; /* point into one allocation */
    size_t len;                           /* of the joined form, for comparison */
    char *joined;
};

struct xdmctl_check_change {
    struct xdmctl_check_key key;
    uint64_t seq;
    bool put;
    char etag[STORE_ETAG_MAX];
};

struct xdmctl_check_check_ctx {
    const char *env;
    struct store_txn *t;
    struct xdmctl_check_key *docs;
    size_t n_docs, cap_docs;
    struct xdmctl_check_change *changes;
    size_t n_changes, cap_changes;
    unsigned problems;
    bool oom;
};

static int xdmctl_check_key_set(struct xdmctl_check_key *k, const struct doc_key *d)
{
    size_t la = strlen(d->auid), lt = strlen(d->tree), lx = strlen(d->xui), lp = strlen(d->path);
    k->len = la + lt + lx + lp + 3;
    k->joined = malloc(k->len + 1);
    if (!k->joined)
        return -1;
    char *p = k->joined;
    k->auid = p, memcpy(p, d->auid, la + 1), p += la + 1;
    k->tree = p, memcpy(p, d->tree, lt + 1), p += lt + 1;
    k->xui = p, memcpy(p, d->xui, lx + 1), p += lx + 1;
    k->path = p, memcpy(p, d->path, lp + 1);
    return 0;
}

static int xdmctl_check_key_cmp(const struct xdmctl_check_key *a, const struct xdmctl_check_key *b)
{
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->joined, b->joined, n);
    return c ? c : (a->len > b->len) - (a->len < b->len);
}

static int xdmctl_check_change_cmp(const void *pa, const void *pb)
{
    const struct xdmctl_check_change *a = pa, *b = pb;
    int c = xdmctl_check_key_cmp(&a->key, &b->key);
    return c ? c : (a->seq > b->seq) - (a->seq < b->seq);
}

__attribute__((format(printf, 3, 4))) static void
xdmctl_check_problem(struct xdmctl_check_check_ctx *ctx, const struct xdmctl_check_key *k,
                     const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%s: ", ctx->env);
    if (k)
        printf("%s/%s%s%s/%s: ", k->auid, k->tree, k->xui[0] ? "/" : "", k->xui, k->path);
    vprintf(fmt, ap);
    putchar('\n');
    va_end(ap);
    ctx->problems++;
}

static int xdmctl_check_collect_doc(void *cls, const struct store_doc_view *d)
{
    struct xdmctl_check_check_ctx *ctx = cls;
    if (ctx->n_docs == XDMCTL_CHECK_CHECK_DOCS)
        return 1;
    if (ctx->n_docs == ctx->cap_docs) {
        size_t cap = ctx->cap_docs ? 2 * ctx->cap_docs : 256;
        void *p = realloc(ctx->docs, cap * sizeof *ctx->docs);
        if (!p)
            return ctx->oom = true, 1;
        ctx->docs = p, ctx->cap_docs = cap;
    }
    if (xdmctl_check_key_set(&ctx->docs[ctx->n_docs], &d->key) < 0)
        return ctx->oom = true, 1;
    ctx->n_docs++;
    return 0;
}

static int xdmctl_check_collect_change(void *cls, const struct store_change *c)
{
    struct xdmctl_check_check_ctx *ctx = cls;
    if (ctx->n_changes == ctx->cap_changes) {
        size_t cap = ctx->cap_changes ? 2 * ctx->cap_changes : 256;
        void *p = realloc(ctx->changes, cap * sizeof *ctx->changes);
        if (!p)
            return ctx->oom = true, 1;
        ctx->changes = p, ctx->cap_changes = cap;
    }
    struct xdmctl_check_change *ch = &ctx->changes[ctx->n_changes];
    if (xdmctl_check_key_set(&ch->key, &c->key) < 0)
        return ctx->oom = true, 1;
    ch->seq = c->seq;
    ch->put = c->kind == STORE_CHANGE_PUT;
    snprintf(ch->etag, sizeof ch->etag, "%s", c->new_etag ? c->new_etag : "");
    ctx->n_changes++;
    return 0;
}

/* A problem an index check of a usage found (appusage_report_fn). */
static void xdmctl_check_index_problem(void *cls, const struct doc_key *k, const char *problem)
{
    struct xdmctl_check_key view = {0};
    if (k)
        view = (struct xdmctl_check_key){
            .auid = k->auid, .tree = k->tree, .xui = k->xui, .path = k->path};
    xdmctl_check_problem(cls, k ? &view : NULL, "%s", problem);
}

/* Checks one document: content, quota share, the usage's index entries. */
static void xdmctl_check_check_doc(struct xdmctl_check_check_ctx *ctx, struct usage *u,
                                   enum xdms_role role, const struct xdmctl_check_key *k,
                                   bool with_tables)
{
    struct doc_key dk = {k->auid, k->tree, k->xui, k->path};
    struct store_doc d;
    enum store_rc rc = store_doc_get(ctx->t, &dk, &d);
    if (rc != STORE_OK) {
        xdmctl_check_problem(ctx, k, "cannot read: %s", store_strerror(rc));
        return;
    }
    const struct appusage *au = appusage_find(role, k->auid);
    struct xcap_err err = {0};
    xmlDocPtr doc = NULL;
    enum xcap_status st = XCAP_OK;
    if (!au)
        xdmctl_check_problem(ctx, k, "no application usage \"%s\" in this XDMS", k->auid);
    else if (!xdoc_utf8_valid(d.data, d.len))
        xdmctl_check_problem(ctx, k, "not valid UTF-8");
    else if ((st = xdoc_parse(d.data, d.len, &doc, &err)) != XCAP_OK)
        xdmctl_check_problem(ctx, k, "not well-formed: %s", err.phrase ? err.phrase : "");
    else if (!usage_server_owned(au, &dk) &&
             (st = usage_validate(u, au, &dk, doc, &err)) != XCAP_OK)
        xdmctl_check_problem(ctx, k, "%s: %s", status_condition(st) ? status_condition(st) : "",
                             err.phrase ? err.phrase : "");
    xcap_err_release(&err);
    /* The index the usage keeps across documents (RFC 4825 §8.2.7), when the store has its
     * tables. */
    if (doc && with_tables && au && au->index_check &&
        au->index_check(ctx->t, &dk, doc, xdmctl_check_index_problem, ctx) < 0)
        ctx->oom = true;
    if (doc)
        xmlFreeDoc(doc);
    store_doc_release(&d);
}

/* Checks one XDMS store; returns -1 when it could not be read at all. */
static int xdmctl_check_check_store(struct xdmctl_check_check_ctx *ctx, struct store *s,
                                    struct usage *u, enum xdms_role role, bool with_tables)
{
    enum store_rc rc = store_txn_begin(s, false, &ctx->t);
    if (rc == STORE_OK)
        rc = store_doc_each(ctx->t, xdmctl_check_collect_doc, ctx);
    if (rc == STORE_OK)
        rc = store_change_read(ctx->t, 0, xdmctl_check_collect_change, ctx);
    if (rc != STORE_OK || ctx->oom) {
        if (ctx->t)
            store_txn_abort(ctx->t);
        return -1;
    }
    if (ctx->n_docs == XDMCTL_CHECK_CHECK_DOCS)
        xdmctl_check_problem(ctx, NULL, "more than %u documents: only those checked",
                             XDMCTL_CHECK_CHECK_DOCS);

    /* Documents, and the quota table against the sum of each user's sizes (keys are sorted by
     * AUID first, so a user's documents are gathered across AUIDs here). */
    for (size_t i = 0; i < ctx->n_docs; i++)
        xdmctl_check_check_doc(ctx, u, role, &ctx->docs[i], with_tables);
    for (size_t i = 0; i < ctx->n_docs; i++) {
        const struct xdmctl_check_key *k = &ctx->docs[i];
        if (strcmp(k->tree, "users") != 0 || !k->xui[0])
            continue;
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(ctx->docs[j].tree, "users") == 0 && strcmp(ctx->docs[j].xui, k->xui) == 0;
        if (seen)
            continue;
        uint64_t sum = 0, stored = 0;
        for (size_t j = i; j < ctx->n_docs; j++) {
            const struct xdmctl_check_key *o = &ctx->docs[j];
            struct store_doc d;
            struct doc_key dk = {o->auid, o->tree, o->xui, o->path};
            if (strcmp(o->tree, "users") == 0 && strcmp(o->xui, k->xui) == 0 &&
                store_doc_get(ctx->t, &dk, &d) == STORE_OK) {
                sum += d.len;
                store_doc_release(&d);
            }
        }
        if (store_user_bytes(ctx->t, k->xui, &stored) != STORE_OK || stored != sum)
            xdmctl_check_problem(
                ctx, NULL, "quota of %s: %" PRIu64 " bytes counted, its documents hold %" PRIu64,
                k->xui, stored, sum);
    }

    /* The newest change record of each document agrees with the document. */
    if (ctx->n_changes)
        qsort(ctx->changes, ctx->n_changes, sizeof *ctx->changes, xdmctl_check_change_cmp);
    for (size_t i = 0; i < ctx->n_changes; i++) {
        const struct xdmctl_check_change *c = &ctx->changes[i];
        if (i + 1 < ctx->n_changes && xdmctl_check_key_cmp(&c->key, &ctx->changes[i + 1].key) == 0)
            continue;
        struct doc_key dk = {c->key.auid, c->key.tree, c->key.xui, c->key.path};
        struct store_doc d;
        rc = store_doc_get(ctx->t, &dk, &d);
        if (c->put && rc != STORE_OK)
            xdmctl_check_problem(ctx, &c->key, "change %" PRIu64 " wrote it, but it is missing",
                                 c->seq);
        else if (c->put && strcmp(d.etag, c->etag) != 0)
            xdmctl_check_problem(ctx, &c->key,
                                 "ETag %s, but its newest change record (%" PRIu64 ") says %s",
                                 d.etag, c->seq, c->etag);
        else if (!c->put && rc == STORE_OK)
            xdmctl_check_problem(ctx, &c->key,
                                 "change %" PRIu64 " deleted it, but it is there (ETag %s)", c->seq,
                                 d.etag);
        if (rc == STORE_OK)
            store_doc_release(&d);
    }

    /* Every entry of the usages' indexes belongs to a document that has it. */
    const struct appusage *const *rows;
    size_t n_rows = appusage_list(role, &rows);
    for (size_t i = 0; with_tables && i < n_rows; i++)
        if (rows[i]->index_check &&
            rows[i]->index_check(ctx->t, NULL, NULL, xdmctl_check_index_problem, ctx) < 0)
            ctx->oom = true;
    store_txn_abort(ctx->t);
    ctx->t = NULL;
    return ctx->oom ? -1 : 0;
}

int xdmctl_data_check(const char *root, const char *xcap_root,
                      const struct xdmctl_data_stores *stores)
{
    char dir[XDMCTL_DATA_PATH_MAX], where[XDMCTL_DATA_PATH_MAX];
    unsigned problems = 0, checked = 0;
    xdoc_global_init();
    for (size_t i = 0; i < XDMCTL_DATA_N_XDMS; i++) {
        enum xdms_role role = (enum xdms_role)i;
        const char *env = xdmctl_data_envs[i];
        if (xdmctl_data_path(dir, root, env, NULL) < 0) {
            xdoc_global_cleanup();
            return xdmctl_data_fail("path too long under %s", root);
        }
        /* A store is opened with its usages' index tables when it has them. */
        const char *const *tables = usage_store_tables(role);
        struct store_options opts = {.read_only = true, .tables = tables};
        struct store *s;
        enum store_rc rc = xdmctl_data_open(stores, i, dir, &opts, &s);
        bool with_tables = tables && rc == STORE_OK;
        if (rc == STORE_NOTFOUND && tables) {
            opts.tables = NULL;
            rc = xdmctl_data_open(stores, i, dir, &opts, &s);
        }
        const char *w = xdmctl_data_where(stores, i, dir, where);
        if (rc == STORE_NOTFOUND)
            continue;
        struct usage *u = NULL;
        if (rc != STORE_OK || usage_open(role, usage_default_schema_dir(), &u) < 0 ||
            usage_set_references(u, xcap_root, false) < 0) {
            if (rc == STORE_OK)
                store_close(s);
            usage_close(u);
            xdoc_global_cleanup();
            return xdmctl_data_fail("cannot open the store in %s (%s) or load its usages", w,
                                    store_strerror(rc));
        }
        struct xdmctl_check_check_ctx ctx = {.env = env};
        int bad = xdmctl_check_check_store(&ctx, s, u, role, with_tables);
        for (size_t j = 0; j < ctx.n_docs; j++)
            free(ctx.docs[j].joined);
        for (size_t j = 0; j < ctx.n_changes; j++)
            free(ctx.changes[j].key.joined);
        free(ctx.docs);
        free(ctx.changes);
        store_close(s);
        usage_close(u);
        if (bad < 0) {
            xdoc_global_cleanup();
            return xdmctl_data_fail("cannot read the store in %s", w);
        }
        printf("%s: %zu documents, %zu change records, %u problems\n", env, ctx.n_docs,
               ctx.n_changes, ctx.problems);
        problems += ctx.problems;
        checked++;
    }
    xdoc_global_cleanup();
    if (checked == 0)
        return xdmctl_data_fail("no XDMS store under %s", root);
    return problems ? 1 : 0;
}
