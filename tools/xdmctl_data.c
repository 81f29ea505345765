/* xdmctl data management (see xdmctl_data.h). Backup and restore: the copies are the store's
 * (store_copy(), LMDB's compacting copy); this file names the environments, checks the
 * directories and writes or reads the manifest. Import goes through the XDMS engine; export and
 * check read the stores opened read-only. */
#include "xdmctl_data.h"
#include "xdmctl_internal.h"

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
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

#ifndef XDM_VERSION
#define XDM_VERSION "unknown"
#endif

#define XDMCTL_DATA_MANIFEST_MAX 4096
#define XDMCTL_DATA_FORMAT "xdm-backup 1"

/* The environments of a data directory, in the order they are copied. */
const char *const xdmctl_data_envs[XDMCTL_DATA_N_ENVS] = {"shared-list", "presence", "rls",
                                                          "aggproxy"};

int xdmctl_data_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("xdmctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

/* dir/name (name may be NULL) into out; -1 when too long. */
int xdmctl_data_path(char out[XDMCTL_DATA_PATH_MAX], const char *dir, const char *name,
                     const char *file)
{
    int n = snprintf(out, XDMCTL_DATA_PATH_MAX, "%s%s%s%s%s", dir, name ? "/" : "",
                     name ? name : "", file ? "/" : "", file ? file : "");
    return n < 0 || n >= XDMCTL_DATA_PATH_MAX ? -1 : 0;
}

/* Creates dir (mode 0700) when missing; an existing one must be empty when want_empty. */
static int xdmctl_data_mkdir(const char *dir, bool want_empty)
{
    if (mkdir(dir, 0700) == 0)
        return 0;
    if (errno != EEXIST)
        return xdmctl_data_fail("cannot create %s: %s", dir, strerror(errno));
    struct stat st;
    if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
        return xdmctl_data_fail("%s exists and is not a directory", dir);
    if (want_empty && rmdir(dir) == 0 && mkdir(dir, 0700) == 0)
        return 0; /* rmdir() only removes an empty directory */
    if (want_empty)
        return xdmctl_data_fail("%s exists and is not empty", dir);
    return 0;
}

static int xdmctl_data_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* Writes text to dir/name durably (a temporary file renamed over the name). */
static int xdmctl_data_write_file(const char *dir, const char *name, const char *text)
{
    char tmp[XDMCTL_DATA_PATH_MAX], path[XDMCTL_DATA_PATH_MAX];
    if (xdmctl_data_path(tmp, dir, name, NULL) < 0 || xdmctl_data_path(path, dir, name, NULL) < 0 ||
        strlen(tmp) + 4 >= sizeof tmp)
        return xdmctl_data_fail("path too long under %s", dir);
    strcat(tmp, ".tmp");
    FILE *f = fopen(tmp, "w");
    if (!f)
        return xdmctl_data_fail("cannot create %s: %s", tmp, strerror(errno));
    bool ok = fputs(text, f) >= 0 && fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) < 0 || xdmctl_data_fsync_dir(dir) < 0) {
        unlink(tmp);
        return xdmctl_data_fail("cannot write %s: %s", path, strerror(errno));
    }
    return 0;
}

static void xdmctl_data_now(char out[32])
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int xdmctl_data_backup(const char *root, const char *dest)
{
    char src[XDMCTL_DATA_PATH_MAX], dst[XDMCTL_DATA_PATH_MAX], when[32];
    char manifest[XDMCTL_DATA_MANIFEST_MAX];
    size_t mlen = 0;
    int copied = 0;

    /* Phase 1: the destination is new (or an empty directory). */
    if (xdmctl_data_mkdir(dest, true))
        return 1;
    xdmctl_data_now(when);
    mlen += (size_t)snprintf(manifest + mlen, sizeof manifest - mlen,
                             "%s\ncreated %s\nxdm %s\nlmdb %s\n", XDMCTL_DATA_FORMAT, when,
                             XDM_VERSION, mdb_version(NULL, NULL, NULL));

    /* Phase 2: one environment after the other, each one consistent in itself. */
    for (size_t i = 0; i < XDMCTL_DATA_N_ENVS; i++) {
        const char *env = xdmctl_data_envs[i];
        if (xdmctl_data_path(src, root, env, NULL) < 0 ||
            xdmctl_data_path(dst, dest, env, NULL) < 0)
            return xdmctl_data_fail("path too long under %s or %s", root, dest);
        char file[XDMCTL_DATA_PATH_MAX];
        struct stat st;
        if (xdmctl_data_path(file, src, "data.mdb", NULL) < 0 || stat(file, &st) < 0)
            continue; /* this process has never run on root */
        if (xdmctl_data_mkdir(dst, true))
            return 1;
        enum store_rc rc = store_copy(src, dst);
        if (rc != STORE_OK)
            return xdmctl_data_fail("cannot copy %s to %s: %s", src, dst, store_strerror(rc));
        if (xdmctl_data_path(file, dst, "data.mdb", NULL) < 0 || stat(file, &st) < 0)
            return xdmctl_data_fail("cannot stat %s: %s", file, strerror(errno));
        xdmctl_data_now(when);
        mlen += (size_t)snprintf(manifest + mlen, sizeof manifest - mlen,
                                 "store %s %" PRIu64 " %s\n", env, (uint64_t)st.st_size, when);
        printf("%s\t%" PRIu64 " bytes\n", env, (uint64_t)st.st_size);
        copied++;
    }
    if (copied == 0)
        return xdmctl_data_fail("no store under %s (expected %s/shared-list/data.mdb and the like)",
                                root, root);

    /* Phase 3: the manifest last; its presence marks a complete backup. */
    return xdmctl_data_write_file(dest, "MANIFEST", manifest);
}

struct xdmctl_data_item {
    char env[32];
    uint64_t bytes;
};

/* Reads src/MANIFEST: the environments it lists and their sizes. Returns the count or -1. */
static int xdmctl_data_manifest(const char *src, struct xdmctl_data_item items[XDMCTL_DATA_N_ENVS])
{
    char path[XDMCTL_DATA_PATH_MAX], line[256];
    if (xdmctl_data_path(path, src, "MANIFEST", NULL) < 0)
        return xdmctl_data_fail("path too long: %s", src), -1;
    FILE *f = fopen(path, "r");
    if (!f)
        return xdmctl_data_fail("%s is not a complete backup: cannot open %s: %s", src, path,
                                strerror(errno)),
               -1;
    int n = 0, bad = 0, lineno = 0;
    while (!bad && fgets(line, sizeof line, f)) {
        lineno++;
        line[strcspn(line, "\n")] = '\0';
        if (lineno == 1) {
            bad = strcmp(line, XDMCTL_DATA_FORMAT) != 0;
            continue;
        }
        if (strncmp(line, "store ", 6) != 0)
            continue;
        struct xdmctl_data_item it;
        if (sscanf(line, "store %31s %" SCNu64, it.env, &it.bytes) != 2) {
            bad = 1;
            break;
        }
        bool known = false;
        for (size_t i = 0; i < XDMCTL_DATA_N_ENVS; i++)
            known = known || strcmp(it.env, xdmctl_data_envs[i]) == 0;
        for (int i = 0; i < n; i++)
            known = known && strcmp(it.env, items[i].env) != 0;
        if (!known || n == (int)XDMCTL_DATA_N_ENVS) {
            bad = 1;
            break;
        }
        items[n++] = it;
    }
    fclose(f);
    if (bad || lineno == 0 || n == 0)
        return xdmctl_data_fail("%s: not an xdm backup manifest (line %d)", path, lineno), -1;
    return n;
}

/* Copies the file from to the new file to (bytes exactly), fsync'ed. */
static int xdmctl_data_copy_file(const char *from, const char *to, uint64_t *copied)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return xdmctl_data_fail("cannot open %s: %s", from, strerror(errno));
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0) {
        close(in);
        return xdmctl_data_fail("cannot create %s: %s", to, strerror(errno));
    }
    static char buf[1 << 16];
    int rc = 0;
    *copied = 0;
    for (;;) {
        ssize_t r = read(in, buf, sizeof buf);
        if (r == 0)
            break;
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = xdmctl_data_fail("cannot read %s: %s", from, strerror(errno));
            break;
        }
        for (ssize_t off = 0; off < r;) {
            ssize_t w = write(out, buf + off, (size_t)(r - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                rc = xdmctl_data_fail("cannot write %s: %s", to, strerror(errno));
                break;
            }
            off += w;
        }
        if (rc)
            break;
        *copied += (uint64_t)r;
    }
    if (!rc && fsync(out) < 0)
        rc = xdmctl_data_fail("cannot write %s: %s", to, strerror(errno));
    close(in);
    if (close(out) < 0 && !rc)
        rc = xdmctl_data_fail("cannot write %s: %s", to, strerror(errno));
    if (rc)
        unlink(to);
    return rc;
}

int xdmctl_data_restore(const char *root, const char *src, bool force)
{
    struct xdmctl_data_item items[XDMCTL_DATA_N_ENVS];
    char path[XDMCTL_DATA_PATH_MAX], dir[XDMCTL_DATA_PATH_MAX], tmp[XDMCTL_DATA_PATH_MAX];
    struct stat st;

    /* Phase 1: the backup is complete (its manifest) and whole (the sizes it lists). */
    int n = xdmctl_data_manifest(src, items);
    if (n < 0)
        return 1;
    for (int i = 0; i < n; i++) {
        if (xdmctl_data_path(path, src, items[i].env, "data.mdb") < 0)
            return xdmctl_data_fail("path too long under %s", src);
        if (stat(path, &st) < 0 || (uint64_t)st.st_size != items[i].bytes)
            return xdmctl_data_fail("%s: missing or not of the %" PRIu64
                                    " bytes the manifest lists; the backup is damaged",
                                    path, items[i].bytes);
    }

    /* Phase 2: nobody runs on root, and root holds nothing this would overwrite (unless force). */
    for (size_t i = 0; i < XDMCTL_DATA_N_ENVS; i++) {
        if (xdmctl_data_path(dir, root, xdmctl_data_envs[i], NULL) < 0)
            return xdmctl_data_fail("path too long under %s", root);
        bool busy = false;
        if (store_in_use(dir, &busy) != STORE_OK)
            return xdmctl_data_fail("cannot tell whether a server has %s open", dir);
        if (busy)
            return xdmctl_data_fail("a process has the store in %s open; stop the servers on %s "
                                    "first",
                                    dir, root);
    }
    for (int i = 0; i < n && !force; i++) {
        if (xdmctl_data_path(path, root, items[i].env, "data.mdb") < 0)
            return xdmctl_data_fail("path too long under %s", root);
        if (stat(path, &st) == 0)
            return xdmctl_data_fail("%s exists: restore into a new data directory, or add --force "
                                    "to replace it",
                                    path);
    }

    /* Phase 3: each file under a temporary name, then renamed into place; LMDB's old lock file
     * (reader table of the replaced environment) goes. */
    if (xdmctl_data_mkdir(root, false))
        return 1;
    for (int i = 0; i < n; i++) {
        uint64_t bytes = 0;
        if (xdmctl_data_path(dir, root, items[i].env, NULL) < 0 ||
            xdmctl_data_path(path, src, items[i].env, "data.mdb") < 0 ||
            xdmctl_data_path(tmp, dir, "data.mdb.restore", NULL) < 0)
            return xdmctl_data_fail("path too long under %s", root);
        if (xdmctl_data_mkdir(dir, false) || xdmctl_data_copy_file(path, tmp, &bytes))
            return 1;
        char final[XDMCTL_DATA_PATH_MAX], lock[XDMCTL_DATA_PATH_MAX];
        if (xdmctl_data_path(final, dir, "data.mdb", NULL) < 0 ||
            xdmctl_data_path(lock, dir, "lock.mdb", NULL) < 0)
            return xdmctl_data_fail("path too long under %s", root);
        if (rename(tmp, final) < 0) {
            unlink(tmp);
            return xdmctl_data_fail("cannot rename %s: %s", tmp, strerror(errno));
        }
        if (unlink(lock) < 0 && errno != ENOENT)
            return xdmctl_data_fail("cannot remove %s: %s", lock, strerror(errno));
        if (xdmctl_data_fsync_dir(dir) < 0)
            return xdmctl_data_fail("cannot sync %s: %s", dir, strerror(errno));
        printf("%s\t%" PRIu64 " bytes\n", items[i].env, bytes);
    }
    return 0;
}

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

struct xdmctl_data_export_ctx {
    const char *dest;
    struct store_txn *t;
    unsigned written, failed;
};

/* Appends "/" and the encoded segment seg[0..len) to path (of XDMCTL_DATA_PATH_MAX). */
static int xdmctl_data_path_add(char *path, const char *seg, size_t len)
{
    size_t used = strlen(path);
    if (used + 2 >= XDMCTL_DATA_PATH_MAX)
        return -1;
    path[used] = '/';
    return xdmctl_data_segment(seg, len, path + used + 1, XDMCTL_DATA_PATH_MAX - used - 1);
}

static int xdmctl_data_export_doc(void *cls, const struct store_doc_view *d)
{
    struct xdmctl_data_export_ctx *ctx = cls;
    const struct doc_key *k = &d->key;
    char path[XDMCTL_DATA_PATH_MAX];
    bool users = strcmp(k->tree, "users") == 0;
    snprintf(path, sizeof path, "%s", ctx->dest);
    errno = 0;
    /* The directories down to the document's, one segment at a time: AUID, tree, XUI, then the
     * document path's own segments; the last one is the file. */
    int bad = !users && strcmp(k->tree, "global") != 0;
    bad = bad || xdmctl_data_path_add(path, k->auid, strlen(k->auid)) ||
          (mkdir(path, 0700) < 0 && errno != EEXIST);
    bad = bad || xdmctl_data_path_add(path, k->tree, strlen(k->tree)) ||
          (mkdir(path, 0700) < 0 && errno != EEXIST);
    bad = bad || (users && (xdmctl_data_path_add(path, k->xui, strlen(k->xui)) ||
                            (mkdir(path, 0700) < 0 && errno != EEXIST)));
    for (const char *p = k->path; !bad;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        bad = xdmctl_data_path_add(path, p, len);
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

int xdmctl_data_export(const char *root, const char *dest, const char *xui)
{
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
        enum store_rc rc = store_open(dir, &opts, &s);
        if (rc == STORE_NOTFOUND)
            continue;
        if (rc != STORE_OK)
            return xdmctl_data_fail("cannot open the store in %s: %s", dir, store_strerror(rc));
        struct xdmctl_data_export_ctx ctx = {.dest = dest};
        rc = store_txn_begin(s, false, &ctx.t);
        if (rc == STORE_OK) {
            rc = xui ? store_doc_list(ctx.t, NULL, "users", xui, "", xdmctl_data_export_doc, &ctx)
                     : store_doc_each(ctx.t, xdmctl_data_export_doc, &ctx);
            store_txn_abort(ctx.t);
        }
        store_close(s);
        if (rc != STORE_OK)
            return xdmctl_data_fail("cannot read the store in %s: %s", dir, store_strerror(rc));
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
#define XDMCTL_DATA_IMPORT_DEPTH 16
#define XDMCTL_DATA_IMPORT_FILES 1000000u
#define XDMCTL_DATA_IMPORT_DOC_MAX (16u << 20)

struct xdmctl_data_role {
    struct usage *usage;
    struct store *store;
    struct engine *engine;
};

struct xdmctl_data_import_ctx {
    const char *root, *src, *xcap_root;
    struct xdmctl_data_role roles[XDMCTL_DATA_N_XDMS];
    unsigned imported, refused, files;
    int fatal;
};

/* The engine of role i, opening its usage and store on first use. */
static struct engine *xdmctl_data_engine(struct xdmctl_data_import_ctx *ctx, size_t i)
{
    struct xdmctl_data_role *r = &ctx->roles[i];
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
    enum store_rc rc = store_open(dir, &opts, &r->store);
    if (rc != STORE_OK) {
        ctx->fatal = xdmctl_data_fail("cannot open the store in %s: %s", dir, store_strerror(rc));
        return NULL;
    }
    struct engine_config cfg = {.role = role, .xcap_root = ctx->xcap_root, .usage = r->usage};
    r->engine = engine_new(r->store, &cfg);
    if (!r->engine)
        ctx->fatal = xdmctl_data_fail("out of memory");
    return r->engine;
}

__attribute__((format(printf, 3, 4))) static void
xdmctl_data_refuse(struct xdmctl_data_import_ctx *ctx, const char *rel, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "xdmctl: refused %s: ", rel);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    ctx->refused++;
}

/* Reads the whole file (at most XDMCTL_DATA_IMPORT_DOC_MAX bytes); NULL and errno on failure. */
static char *xdmctl_data_slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    char *data = NULL;
    if (fstat(fd, &st) == 0 && st.st_size <= (off_t)XDMCTL_DATA_IMPORT_DOC_MAX) {
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
    } else if (errno == 0 || st.st_size > (off_t)XDMCTL_DATA_IMPORT_DOC_MAX) {
        errno = EFBIG;
    }
    close(fd);
    return data;
}

/* Imports the file at src/rel. */
static void xdmctl_data_import_file(struct xdmctl_data_import_ctx *ctx, const char *rel)
{
    char path[XDMCTL_DATA_PATH_MAX], sel[XDMCTL_DATA_PATH_MAX];
    if (xdmctl_data_path(path, ctx->src, rel, NULL) < 0 ||
        snprintf(sel, sizeof sel, "/%s", rel) >= (int)sizeof sel) {
        xdmctl_data_refuse(ctx, rel, "path too long");
        return;
    }
    /* The path is a document selector: the XCAP URI parser decodes and checks it. */
    struct xcap_uri uri;
    struct xcap_err err = {0};
    if (xcap_uri_parse("", sel, NULL, &uri, &err) != XCAP_OK) {
        xdmctl_data_refuse(ctx, rel, "not a document selector: %s", err.phrase ? err.phrase : "");
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
        xdmctl_data_refuse(ctx, rel, "not a document selector");
    else if (!au)
        xdmctl_data_refuse(ctx, rel, "no XDMS serves the application usage \"%s\"", uri.auid);
    else if (!(body = xdmctl_data_slurp(path, &len)))
        xdmctl_data_refuse(ctx, rel, "cannot read: %s", strerror(errno));
    struct engine *e = body ? xdmctl_data_engine(ctx, role) : NULL;
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
            xdmctl_data_refuse(ctx, rel, "%d %s%s%s", status_http(st),
                               status_condition(st) ? status_condition(st) : status_phrase(st),
                               err.phrase ? ": " : "", err.phrase ? err.phrase : "");
        buf_release(&rep.body);
        xcap_err_release(&err);
    }
    free(body);
    xcap_uri_release(&uri);
}

/* Walks src/rel (a directory) in name order, depth first. */
static void xdmctl_data_import_dir(struct xdmctl_data_import_ctx *ctx, const char *rel, int depth)
{
    char path[XDMCTL_DATA_PATH_MAX];
    if (xdmctl_data_path(path, ctx->src, rel[0] ? rel : NULL, NULL) < 0) {
        xdmctl_data_refuse(ctx, rel, "path too long");
        return;
    }
    if (depth > XDMCTL_DATA_IMPORT_DEPTH) {
        xdmctl_data_refuse(ctx, rel, "more than %d directory levels", XDMCTL_DATA_IMPORT_DEPTH);
        return;
    }
    struct dirent **names;
    int n = scandir(path, &names, NULL, alphasort);
    if (n < 0) {
        xdmctl_data_refuse(ctx, rel[0] ? rel : ".", "cannot read the directory: %s",
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
            xdmctl_data_refuse(ctx, name, "path too long");
        else if (lstat(full, &st) < 0)
            xdmctl_data_refuse(ctx, sub, "%s", strerror(errno));
        else if (S_ISDIR(st.st_mode))
            xdmctl_data_import_dir(ctx, sub, depth + 1);
        else if (!S_ISREG(st.st_mode))
            xdmctl_data_refuse(ctx, sub, "not a regular file");
        else if (++ctx->files > XDMCTL_DATA_IMPORT_FILES)
            xdmctl_data_refuse(ctx, sub, "more than %u files", XDMCTL_DATA_IMPORT_FILES);
        else
            xdmctl_data_import_file(ctx, sub);
        free(names[i]);
    }
    free(names);
}

int xdmctl_data_import(const char *root, const char *src, const char *xcap_root)
{
    char dir[XDMCTL_DATA_PATH_MAX];
    struct stat st;
    if (stat(src, &st) < 0 || !S_ISDIR(st.st_mode))
        return xdmctl_data_fail("%s is not a directory", src);
    /* Phase 1: the stores are written directly, so no server may have them open. */
    for (size_t i = 0; i < XDMCTL_DATA_N_XDMS; i++) {
        bool busy = false;
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
    struct xdmctl_data_import_ctx ctx = {.root = root, .src = src, .xcap_root = xcap_root};
    xdmctl_data_import_dir(&ctx, "", 0);
    for (size_t i = 0; i < XDMCTL_DATA_N_XDMS; i++) {
        struct xdmctl_data_role *r = &ctx.roles[i];
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
