/* xdmctl export and import (xdmctl_data.h): the documents of the XDMS stores as one file per
 * document at its XCAP path, and such a tree read back through the XDMS engine. Export reads the
 * stores opened read-only. */
#include "xdmctl_data.h"
#include "xdmctl_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "appusage.h"
#include "buf.h"
#include "engine.h"
#include "notify.h"
#include "status.h"
#include "store.h"
#include "usage.h"
#include "xcap_uri.h"
#include "xdoc.h"

/* Export ------------------------------------------------------------------------------------- */

/* The XDMS stores: the proxy's holds no documents. */

int xdmctl_data_segment(const char *seg, size_t len, char *out, size_t outlen)
{
    char raw[XCAP_URI_MAX_SEGMENT + 1];
    if (len == 0 || len > XCAP_URI_MAX_SEGMENT || memchr(seg, '\0', len))
        return -1;
    memcpy(raw, seg, len);
    raw[len] = '\0';
    struct buf b;
    buf_init(&b, outlen);
    int rc = raw[0] == '.' ? buf_puts(&b, "%2E") : 0;
    if (rc == 0)
        rc = xcap_uri_encode_segment(&b, raw[0] == '.' ? raw + 1 : raw);
    if (rc == 0 && b.len + 1 <= outlen) {
        memcpy(out, b.data ? b.data : "", b.len);
        out[b.len] = '\0';
    } else {
        rc = -1;
    }
    buf_release(&b);
    return rc;
}

struct xdmctl_export_export_ctx {
    const char *dest;
    struct store_txn *t;
    unsigned written, failed;
};

/* Appends "/" and the encoded segment seg[0..len) to path (of XDMCTL_DATA_PATH_MAX). */
static int xdmctl_export_path_add(char *path, const char *seg, size_t len)
{
    size_t used = strlen(path);
    if (used + 2 >= XDMCTL_DATA_PATH_MAX)
        return -1;
    path[used] = '/';
    return xdmctl_data_segment(seg, len, path + used + 1, XDMCTL_DATA_PATH_MAX - used - 1);
}

static int xdmctl_export_export_doc(void *cls, const struct store_doc_view *d)
{
    struct xdmctl_export_export_ctx *ctx = cls;
    const struct doc_key *k = &d->key;
    char path[XDMCTL_DATA_PATH_MAX];
    bool users = strcmp(k->tree, "users") == 0;
    snprintf(path, sizeof path, "%s", ctx->dest);
    errno = 0;
    /* The directories down to the document's, one segment at a time: AUID, tree, XUI, then the
     * document path's own segments; the last one is the file. */
    int bad = !users && strcmp(k->tree, "global") != 0;
    bad = bad || xdmctl_export_path_add(path, k->auid, strlen(k->auid)) ||
          (mkdir(path, 0700) < 0 && errno != EEXIST);
    bad = bad || xdmctl_export_path_add(path, k->tree, strlen(k->tree)) ||
          (mkdir(path, 0700) < 0 && errno != EEXIST);
    bad = bad || (users && (xdmctl_export_path_add(path, k->xui, strlen(k->xui)) ||
                            (mkdir(path, 0700) < 0 && errno != EEXIST)));
    for (const char *p = k->path; !bad;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        bad = xdmctl_export_path_add(path, p, len);
        if (!slash)
            break;
        bad = bad || (mkdir(path, 0700) < 0 && errno != EEXIST);
        p = slash + 1;
    }
    if (errno == EEXIST)
        errno = 0;
    if (bad) {
        ctx->failed++;
        fprintf(stderr, "xdmctl: %s/%s/%s/%s: no file name for it under %s (%s)\n", k->auid,
                k->tree, k->xui, k->path, ctx->dest, errno ? strerror(errno) : "too long");
        return 0;
    }
    struct store_doc doc;
    enum store_rc rc = store_doc_get(ctx->t, k, &doc);
    if (rc != STORE_OK) {
        ctx->failed++;
        fprintf(stderr, "xdmctl: %s: cannot read the document: %s\n", path, store_strerror(rc));
        return 0;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    bool ok = fd >= 0 && write(fd, doc.data, doc.len) == (ssize_t)doc.len;
    int saved = errno;
    if (fd >= 0 && close(fd) < 0)
        ok = false;
    store_doc_release(&doc);
    if (!ok) {
        ctx->failed++;
        fprintf(stderr, "xdmctl: %s: cannot write: %s\n", path, strerror(saved));
        return 0;
    }
    ctx->written++;
    return 0;
}

int xdmctl_data_export(const char *root, const char *dest, const char *xui,
                       const struct xdmctl_data_stores *stores)
{
    char where[XDMCTL_DATA_PATH_MAX];
    char dir[XDMCTL_DATA_PATH_MAX];
    if (xdmctl_data_mkdir(dest, true))
        return 1;
    unsigned total = 0, failed = 0;
    for (size_t i = 0; i < XDMCTL_DATA_N_XDMS; i++) {
        const char *env = xdmctl_data_envs[i];
        if (xdmctl_data_path(dir, root, env, NULL) < 0)
            return xdmctl_data_fail("path too long under %s", root);
        struct store *s;
        struct store_options opts = {.read_only = true};
        enum store_rc rc = xdmctl_data_open(stores, i, dir, &opts, &s);
        const char *w = xdmctl_data_where(stores, i, dir, where);
        if (rc == STORE_NOTFOUND)
            continue;
        if (rc != STORE_OK)
            return xdmctl_data_fail("cannot open the store in %s: %s", w, store_strerror(rc));
        struct xdmctl_export_export_ctx ctx = {.dest = dest};
        rc = store_txn_begin(s, false, &ctx.t);
        if (rc == STORE_OK) {
            rc = xui ? store_doc_list(ctx.t, NULL, "users", xui, "", xdmctl_export_export_doc, &ctx)
                     : store_doc_each(ctx.t, xdmctl_export_export_doc, &ctx);
            store_txn_abort(ctx.t);
        }
        store_close(s);
        if (rc != STORE_OK)
            return xdmctl_data_fail("cannot read the store in %s: %s", w, store_strerror(rc));
        printf("%s\t%u documents\n", env, ctx.written);
        total += ctx.written;
        failed += ctx.failed;
    }
    if (failed)
        return xdmctl_data_fail("%u of %u documents not exported", failed, failed + total);
    return 0;
}

/* Import ------------------------------------------------------------------------------------- */

/* Bounds of the tree walked: directory depth (AUID, tree, XUI and a few sub-directories), files,
 * and the size of one document (the XDMS's own bounds apply on top). */
#define XDMCTL_EXPORT_IMPORT_DEPTH 16
#define XDMCTL_EXPORT_IMPORT_FILES 1000000u
#define XDMCTL_EXPORT_IMPORT_DOC_MAX (16u << 20)

struct xdmctl_export_role {
    struct usage *usage;
    struct store *store;
    struct engine *engine;
};

struct xdmctl_export_import_ctx {
    const char *root, *src, *xcap_root;
    const struct xdmctl_data_stores *stores;
    struct xdmctl_export_role roles[XDMCTL_DATA_N_XDMS];
    unsigned imported, refused, files;
    int fatal;
};

/* The engine of role i, opening its usage and store on first use. */
static struct engine *xdmctl_export_engine(struct xdmctl_export_import_ctx *ctx, size_t i)
{
    struct xdmctl_export_role *r = &ctx->roles[i];
    if (r->engine)
        return r->engine;
    enum xdms_role role = (enum xdms_role)i;
    char dir[XDMCTL_DATA_PATH_MAX];
    if (xdmctl_data_path(dir, ctx->root, xdmctl_data_envs[i], NULL) < 0) {
        ctx->fatal = xdmctl_data_fail("path too long under %s", ctx->root);
        return NULL;
    }
    if (usage_open(role, usage_default_schema_dir(), &r->usage) < 0 ||
        usage_set_references(r->usage, ctx->xcap_root, false) < 0) {
        ctx->fatal =
            xdmctl_data_fail("cannot load the %s usages (schemas in %s, XCAP root %s)",
                             xdmctl_data_envs[i], usage_default_schema_dir(), ctx->xcap_root);
        return NULL;
    }
    /* The tables the XDMS opens: the usages' indexes and the persisted subscriptions. */
    const char *tables[32];
    size_t n = 0;
    const char *const *lists[] = {usage_store_tables(role), notify_store_tables()};
    for (size_t l = 0; l < 2; l++)
        for (const char *const *t = lists[l]; t && *t && n + 1 < 32; t++)
            tables[n++] = *t;
    tables[n] = NULL;
    struct store_options opts = {.tables = tables};
    enum store_rc rc = xdmctl_data_open(ctx->stores, i, dir, &opts, &r->store);
    if (rc != STORE_OK) {
        char where[XDMCTL_DATA_PATH_MAX];
        ctx->fatal =
            xdmctl_data_fail("cannot open the store in %s: %s",
                             xdmctl_data_where(ctx->stores, i, dir, where), store_strerror(rc));
        return NULL;
    }
    struct engine_config cfg = {.role = role, .xcap_root = ctx->xcap_root, .usage = r->usage};
    r->engine = engine_new(r->store, &cfg);
    if (!r->engine)
        ctx->fatal = xdmctl_data_fail("out of memory");
    return r->engine;
}

__attribute__((format(printf, 3, 4))) static void
xdmctl_export_refuse(struct xdmctl_export_import_ctx *ctx, const char *rel, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "xdmctl: refused %s: ", rel);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    ctx->refused++;
}

/* Reads the whole file (at most XDMCTL_EXPORT_IMPORT_DOC_MAX bytes); NULL and errno on failure. */
static char *xdmctl_export_slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    char *data = NULL;
    if (fstat(fd, &st) == 0 && st.st_size <= (off_t)XDMCTL_EXPORT_IMPORT_DOC_MAX) {
        data = malloc((size_t)st.st_size + 1);
        size_t got = 0;
        while (data && got < (size_t)st.st_size) {
            ssize_t r = read(fd, data + got, (size_t)st.st_size - got);
            if (r <= 0) {
                free(data);
                data = NULL;
                break;
            }
            got += (size_t)r;
        }
        if (data) {
            data[got] = '\0';
            *len = got;
        }
    } else if (errno == 0 || st.st_size > (off_t)XDMCTL_EXPORT_IMPORT_DOC_MAX) {
        errno = EFBIG;
    }
    close(fd);
    return data;
}

/* Imports the file at src/rel. */
static void xdmctl_export_import_file(struct xdmctl_export_import_ctx *ctx, const char *rel)
{
    char path[XDMCTL_DATA_PATH_MAX], sel[XDMCTL_DATA_PATH_MAX];
    if (xdmctl_data_path(path, ctx->src, rel, NULL) < 0 ||
        snprintf(sel, sizeof sel, "/%s", rel) >= (int)sizeof sel) {
        xdmctl_export_refuse(ctx, rel, "path too long");
        return;
    }
    /* The path is a document selector: the XCAP URI parser decodes and checks it. */
    struct xcap_uri uri;
    struct xcap_err err = {0};
    if (xcap_uri_parse("", sel, NULL, &uri, &err) != XCAP_OK) {
        xdmctl_export_refuse(ctx, rel, "not a document selector: %s", err.phrase ? err.phrase : "");
        xcap_err_release(&err);
        return;
    }
    size_t role = XDMCTL_DATA_N_XDMS;
    const struct appusage *au = NULL;
    for (size_t i = 0; i < XDMCTL_DATA_N_XDMS && !au; i++)
        if ((au = appusage_find((enum xdms_role)i, uri.auid)))
            role = i;
    size_t len = 0;
    char *body = NULL;
    if (uri.is_dir || uri.node_sel)
        xdmctl_export_refuse(ctx, rel, "not a document selector");
    else if (!au)
        xdmctl_export_refuse(ctx, rel, "no XDMS serves the application usage \"%s\"", uri.auid);
    else if (!(body = xdmctl_export_slurp(path, &len)))
        xdmctl_export_refuse(ctx, rel, "cannot read: %s", strerror(errno));
    struct engine *e = body ? xdmctl_export_engine(ctx, role) : NULL;
    if (e) {
        struct engine_request req = {.method = ENGINE_PUT,
                                     .uri = &uri,
                                     .au = au,
                                     .content_type = au->mime,
                                     .body = body,
                                     .body_len = len};
        struct engine_reply rep = {0};
        buf_init(&rep.body, 1u << 20);
        enum xcap_status st = engine_execute(e, &req, &rep, &err);
        if (st == XCAP_OK || st == XCAP_CREATED)
            ctx->imported++;
        else
            xdmctl_export_refuse(ctx, rel, "%d %s%s%s", status_http(st),
                                 status_condition(st) ? status_condition(st) : status_phrase(st),
                                 err.phrase ? ": " : "", err.phrase ? err.phrase : "");
        buf_release(&rep.body);
        xcap_err_release(&err);
    }
    free(body);
    xcap_uri_release(&uri);
}

/* Walks src/rel (a directory) in name order, depth first. */
static void xdmctl_export_import_dir(struct xdmctl_export_import_ctx *ctx, const char *rel,
                                     int depth)
{
    char path[XDMCTL_DATA_PATH_MAX];
    if (xdmctl_data_path(path, ctx->src, rel[0] ? rel : NULL, NULL) < 0) {
        xdmctl_export_refuse(ctx, rel, "path too long");
        return;
    }
    if (depth > XDMCTL_EXPORT_IMPORT_DEPTH) {
        xdmctl_export_refuse(ctx, rel, "more than %d directory levels", XDMCTL_EXPORT_IMPORT_DEPTH);
        return;
    }
    struct dirent **names;
    int n = scandir(path, &names, NULL, alphasort);
    if (n < 0) {
        xdmctl_export_refuse(ctx, rel[0] ? rel : ".", "cannot read the directory: %s",
                             strerror(errno));
        return;
    }
    for (int i = 0; i < n; i++) {
        const char *name = names[i]->d_name;
        char sub[XDMCTL_DATA_PATH_MAX], full[XDMCTL_DATA_PATH_MAX];
        struct stat st;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || ctx->fatal) {
            free(names[i]);
            continue;
        }
        int w = rel[0] ? snprintf(sub, sizeof sub, "%s/%s", rel, name)
                       : snprintf(sub, sizeof sub, "%s", name);
        if (w >= (int)sizeof sub || xdmctl_data_path(full, ctx->src, sub, NULL) < 0)
            xdmctl_export_refuse(ctx, name, "path too long");
        else if (lstat(full, &st) < 0)
            xdmctl_export_refuse(ctx, sub, "%s", strerror(errno));
        else if (S_ISDIR(st.st_mode))
            xdmctl_export_import_dir(ctx, sub, depth + 1);
        else if (!S_ISREG(st.st_mode))
            xdmctl_export_refuse(ctx, sub, "not a regular file");
        else if (++ctx->files > XDMCTL_EXPORT_IMPORT_FILES)
            xdmctl_export_refuse(ctx, sub, "more than %u files", XDMCTL_EXPORT_IMPORT_FILES);
        else
            xdmctl_export_import_file(ctx, sub);
        free(names[i]);
    }
    free(names);
}

int xdmctl_data_import(const char *root, const char *src, const char *xcap_root,
                       const struct xdmctl_data_stores *stores)
{
    char dir[XDMCTL_DATA_PATH_MAX];
    struct stat st;
    if (stat(src, &st) < 0 || !S_ISDIR(st.st_mode))
        return xdmctl_data_fail("%s is not a directory", src);
    /* Phase 1: the stores are written directly, so no server may have them open. */
    for (size_t i = 0; i < XDMCTL_DATA_N_XDMS; i++) {
        bool busy = false;
        if (xdmctl_data_is_pg(stores, i))
            continue;
        if (xdmctl_data_path(dir, root, xdmctl_data_envs[i], NULL) < 0 ||
            store_in_use(dir, &busy) != STORE_OK)
            return xdmctl_data_fail("cannot tell whether a server has the store in %s/%s open",
                                    root, xdmctl_data_envs[i]);
        if (busy)
            return xdmctl_data_fail("a process has the store in %s open; stop the servers on %s "
                                    "first",
                                    dir, root);
    }
    if (xdmctl_data_mkdir(root, false))
        return 1;
    /* Phase 2: every file, each one PUT on its own. */
    xdoc_global_init();
    struct xdmctl_export_import_ctx ctx = {
        .root = root, .src = src, .xcap_root = xcap_root, .stores = stores};
    xdmctl_export_import_dir(&ctx, "", 0);
    for (size_t i = 0; i < XDMCTL_DATA_N_XDMS; i++) {
        struct xdmctl_export_role *r = &ctx.roles[i];
        if (r->engine)
            engine_free(r->engine);
        if (r->store)
            store_close(r->store);
        if (r->usage)
            usage_close(r->usage);
    }
    xdoc_global_cleanup();
    if (ctx.fatal)
        return 1;
    printf("imported %u documents, refused %u\n", ctx.imported, ctx.refused);
    return ctx.refused ? 1 : 0;
}
