/* xdmctl data management (see xdmctl_data.h): what its files share (the environments, paths,
 * the stores as the servers' configuration names them), backup and restore. The copies are the
 * store's (store_copy(), LMDB's compacting copy); this file names the environments, checks the
 * directories and writes or reads the manifest. Export and import are in xdmctl_export.c. */
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "appusage.h"
#include "buf.h"
#include "config.h"
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
const char *const xdmctl_data_envs[XDMCTL_DATA_N_ENVS] = {"shared-list", "presence", "rls", "ut",
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
int xdmctl_data_mkdir(const char *dir, bool want_empty)
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

/* Where the stores are ------------------------------------------------------------------------ */

/* The keys of the store among the servers' keys (xdms/main.c): only these are read. */
static const struct config_key xdmctl_data_store_keys[] = {
    {"store", CONFIG_ENUM, 0, 0, "lmdb", NULL, 0, "lmdb|postgresql", "document store"},
    {"pg_conninfo", CONFIG_STR, 0, 4096, NULL, NULL, 0, NULL, "libpq connection string"},
    {"pg_pool_size", CONFIG_UINT, 1, STORE_PG_MAX_POOL, "4", NULL, 0, NULL, "connections"},
    {"pg_timeout", CONFIG_UINT, 1, STORE_PG_MAX_TIMEOUT, "5", NULL, 0, NULL, "seconds"},
    {0},
};

int xdmctl_data_store_config(const char *config_path, const char *role,
                             struct xdmctl_data_store *out)
{
    *out = (struct xdmctl_data_store){.backend = STORE_BACKEND_LMDB};
    const char *sections[] = {"xdms", role, NULL};
    struct config *cfg = config_new(sections, xdmctl_data_store_keys);
    if (!cfg)
        return xdmctl_data_fail("out of memory"), 2;
    char errbuf[4096] = "";
    config_load(cfg, config_path, true, errbuf, sizeof errbuf);
    /* The file holds every key of the server; only a problem with the store's keys (or with the
     * file itself) matters here. */
    char *errs = strdup(config_errors(cfg));
    int bad = errs ? 0 : 2;
    char *save = NULL;
    for (char *line = errs ? strtok_r(errs, "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save)) {
        if (strstr(line, ": unknown key \"") || strstr(line, "more problem"))
            continue;
        fprintf(stderr, "xdmctl: %s\n", line);
        bad = 2;
    }
    free(errs);
    if (!bad && strcmp(config_str(cfg, "store"), "postgresql") == 0) {
        const char *conninfo = config_str(cfg, "pg_conninfo");
        if (!conninfo || !conninfo[0]) {
            fprintf(stderr, "xdmctl: %s: [%s] uses store = postgresql without pg_conninfo\n",
                    config_path, role);
            bad = 2;
        } else if (!(out->conninfo = strdup(conninfo))) {
            bad = xdmctl_data_fail("out of memory") + 1;
        } else {
            out->backend = STORE_BACKEND_POSTGRESQL;
            out->pg_timeout = (unsigned)config_u64(cfg, "pg_timeout");
        }
    }
    config_free(cfg);
    return bad;
}

int xdmctl_data_stores_load(struct xdmctl_data_stores *out, const char *config_path,
                            const char *root)
{
    static const char *const roles[XDMCTL_DATA_ROLES] = {"shared-list", "presence", "rls", "ut"};
    char path[XDMCTL_DATA_PATH_MAX];
    struct stat st;
    memset(out, 0, sizeof *out);
    /* The cluster's file names its databases; a plain run's is its configuration. */
    for (size_t i = 0; !config_path && i < 2; i++)
        if (xdmctl_data_path(path, root, i == 0 ? "cluster.conf" : "xdm.conf", NULL) == 0 &&
            stat(path, &st) == 0)
            config_path = path;
    if (!config_path)
        return 0; /* no configuration: every role on LMDB under root */
    for (size_t i = 0; i < XDMCTL_DATA_ROLES; i++) {
        int rc = xdmctl_data_store_config(config_path, roles[i], &out->role[i]);
        if (rc) {
            xdmctl_data_stores_release(out);
            return rc;
        }
    }
    return 0;
}

void xdmctl_data_stores_release(struct xdmctl_data_stores *s)
{
    for (size_t i = 0; i < XDMCTL_DATA_ROLES; i++) {
        free(s->role[i].conninfo);
        s->role[i].conninfo = NULL;
    }
}

/* Whether XDMS role i has its store in PostgreSQL. */
bool xdmctl_data_is_pg(const struct xdmctl_data_stores *st, size_t i)
{
    return st && i < XDMCTL_DATA_ROLES && st->role[i].backend == STORE_BACKEND_POSTGRESQL;
}

/* What to call the store of role i in messages: its LMDB directory, or its database (the
 * conninfo is not printed: it may hold a password). */
const char *xdmctl_data_where(const struct xdmctl_data_stores *st, size_t i, const char *dir,
                              char out[XDMCTL_DATA_PATH_MAX])
{
    if (!xdmctl_data_is_pg(st, i))
        return dir;
    snprintf(out, XDMCTL_DATA_PATH_MAX, "the PostgreSQL database of %s", xdmctl_data_envs[i]);
    return out;
}

/* Opens the store of XDMS role i with the options o: LMDB in dir, or its PostgreSQL database
 * with one connection and no pruning (the change log's bounds are its servers' to apply). */
enum store_rc xdmctl_data_open(const struct xdmctl_data_stores *st, size_t i, const char *dir,
                               struct store_options *o, struct store **s)
{
    if (!xdmctl_data_is_pg(st, i))
        return store_open(dir, o, s);
    o->backend = STORE_BACKEND_POSTGRESQL;
    o->pg_conninfo = st->role[i].conninfo;
    o->pg_pool_size = 1;
    o->pg_timeout = st->role[i].pg_timeout;
    o->change_retention = UINT64_MAX;
    o->change_max_bytes = UINT64_MAX;
    return store_open(NULL, o, s);
}

/* Runs a PostgreSQL client program (pg_dump, pg_restore) found on PATH with argv, its standard
 * output discarded and its errors on ours; PGCONNECT_TIMEOUT bounds each connection attempt
 * (unless the environment sets it). Returns its exit status, or -1 when it could not run. */
static int xdmctl_data_run(const char *const argv[], unsigned timeout)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        char t[16];
        snprintf(t, sizeof t, "%u", timeout ? timeout : STORE_PG_DEFAULT_TIMEOUT);
        setenv("PGCONNECT_TIMEOUT", t, 0);
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (null >= 0)
            dup2(null, STDOUT_FILENO);
        execvp(argv[0], (char *const *)argv);
        fprintf(stderr, "xdmctl: cannot run %s: %s (install postgresql-client)\n", argv[0],
                strerror(errno));
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    if (WIFEXITED(status))
        return WEXITSTATUS(status) == 127 ? -1 : WEXITSTATUS(status);
    return -1;
}

/* Whether the store of role i holds any document (false when its schema does not exist yet). */
static int xdmctl_data_has_docs_cb(void *cls, const struct store_doc_view *d)
{
    (void)d;
    *(bool *)cls = true;
    return 1;
}

static enum store_rc xdmctl_data_has_docs(const struct xdmctl_data_stores *st, size_t i, bool *out)
{
    struct store_options o = {.read_only = true};
    struct store *s;
    struct store_txn *t;
    *out = false;
    enum store_rc rc = xdmctl_data_open(st, i, NULL, &o, &s);
    if (rc == STORE_NOTFOUND)
        return STORE_OK;
    if (rc != STORE_OK)
        return rc;
    rc = store_txn_begin(s, false, &t);
    if (rc == STORE_OK) {
        rc = store_doc_each(t, xdmctl_data_has_docs_cb, out);
        store_txn_abort(t);
    }
    store_close(s);
    return rc;
}

/* Backup and restore ------------------------------------------------------------------------ */

/* pg_dump of role i into dest/ROLE.pgdump: one snapshot of the database (pg_dump's own
 * transaction), custom format, without owners (restored by whoever restores it). */
static int xdmctl_data_pg_dump(const struct xdmctl_data_stores *st, size_t i, const char *dest,
                               uint64_t *bytes)
{
    char file[XDMCTL_DATA_PATH_MAX], name[256];
    struct stat sb;
    snprintf(name, sizeof name, "%s.pgdump", xdmctl_data_envs[i]);
    if (xdmctl_data_path(file, dest, name, NULL) < 0)
        return xdmctl_data_fail("path too long under %s", dest);
    const char *argv[] = {"pg_dump", "--format=custom", "--no-owner",         "--file",
                          file,      "--dbname",        st->role[i].conninfo, NULL};
    int rc = xdmctl_data_run(argv, st->role[i].pg_timeout);
    if (rc != 0)
        return xdmctl_data_fail("pg_dump of the PostgreSQL database of %s failed (%s %d)",
                                xdmctl_data_envs[i], rc < 0 ? "could not run," : "exit status", rc);
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    bool ok = fd >= 0 && fsync(fd) == 0 && fstat(fd, &sb) == 0;
    if (fd >= 0)
        close(fd);
    if (!ok)
        return xdmctl_data_fail("cannot sync %s: %s", file, strerror(errno));
    *bytes = (uint64_t)sb.st_size;
    return 0;
}

int xdmctl_data_backup(const char *root, const char *dest, const struct xdmctl_data_stores *stores)
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
        if (xdmctl_data_is_pg(stores, i)) {
            uint64_t bytes = 0;
            if (xdmctl_data_pg_dump(stores, i, dest, &bytes))
                return 1;
            xdmctl_data_now(when);
            mlen += (size_t)snprintf(manifest + mlen, sizeof manifest - mlen,
                                     "pgdump %s %" PRIu64 " %s\n", env, bytes, when);
            printf("%s\t%" PRIu64 " bytes\n", env, bytes);
            copied++;
            continue;
        }
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
    bool pg; /* a pg_dump (ENV.pgdump), not an LMDB copy (ENV/data.mdb) */
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
        struct xdmctl_data_item it = {.pg = strncmp(line, "pgdump ", 7) == 0};
        if (strncmp(line, "store ", 6) != 0 && !it.pg)
            continue;
        if (sscanf(line + (it.pg ? 7 : 6), "%31s %" SCNu64, it.env, &it.bytes) != 2) {
            bad = 1;
            break;
        }
        bool known = false;
        /* Only an XDMS role has a database; the proxy's users are always LMDB. */
        for (size_t i = 0; i < (it.pg ? XDMCTL_DATA_ROLES : XDMCTL_DATA_N_ENVS); i++)
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

/* The index of env in xdmctl_data_envs. */
static size_t xdmctl_data_env_index(const char *env)
{
    size_t i = 0;
    while (i < XDMCTL_DATA_N_ENVS && strcmp(env, xdmctl_data_envs[i]) != 0)
        i++;
    return i;
}

/* pg_restore of src/ROLE.pgdump into the database of role i, in one transaction: the tables
 * the dump holds are dropped first when they exist (--clean --if-exists), so a database whose
 * schema a server already created takes the dump as well as an empty one. */
static int xdmctl_data_pg_restore(const struct xdmctl_data_stores *st, size_t i, const char *file)
{
    const char *argv[] = {
        "pg_restore",      "--clean",  "--if-exists",        "--no-owner", "--single-transaction",
        "--exit-on-error", "--dbname", st->role[i].conninfo, file,         NULL};
    int rc = xdmctl_data_run(argv, st->role[i].pg_timeout);
    if (rc != 0)
        return xdmctl_data_fail("pg_restore of %s into the PostgreSQL database of %s failed (%s "
                                "%d); the database is as it was",
                                file, xdmctl_data_envs[i],
                                rc < 0 ? "could not run," : "exit status", rc);
    return 0;
}

int xdmctl_data_restore(const char *root, const char *src, bool force,
                        const struct xdmctl_data_stores *stores)
{
    struct xdmctl_data_item items[XDMCTL_DATA_N_ENVS];
    char path[XDMCTL_DATA_PATH_MAX], dir[XDMCTL_DATA_PATH_MAX], tmp[XDMCTL_DATA_PATH_MAX];
    struct stat st;

    /* Phase 1: the backup is complete (its manifest) and whole (the sizes it lists). */
    int n = xdmctl_data_manifest(src, items);
    if (n < 0)
        return 1;
    for (int i = 0; i < n; i++) {
        char name[256];
        snprintf(name, sizeof name, "%s.pgdump", items[i].env);
        if (items[i].pg ? xdmctl_data_path(path, src, name, NULL) < 0
                        : xdmctl_data_path(path, src, items[i].env, "data.mdb") < 0)
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
    /* Each role goes back to the backend it was backed up from: moving documents from one
     * backend to the other is export and import. */
    for (int i = 0; i < n; i++) {
        size_t r = xdmctl_data_env_index(items[i].env);
        if (items[i].pg != xdmctl_data_is_pg(stores, r))
            return xdmctl_data_fail(
                "the backup holds %s as %s, but its configuration puts it on %s: restore into "
                "a deployment on %s, or move the documents with export and import",
                items[i].env, items[i].pg ? "a PostgreSQL dump" : "an LMDB store",
                items[i].pg ? "LMDB" : "PostgreSQL", items[i].pg ? "PostgreSQL" : "LMDB");
        bool docs = false;
        enum store_rc rc = items[i].pg ? xdmctl_data_has_docs(stores, r, &docs) : STORE_OK;
        if (rc != STORE_OK)
            return xdmctl_data_fail("cannot read the PostgreSQL database of %s: %s", items[i].env,
                                    store_strerror(rc));
        if (docs && !force)
            return xdmctl_data_fail("the PostgreSQL database of %s already holds documents: "
                                    "restore into a new database, or add --force to replace "
                                    "them",
                                    items[i].env);
    }
    for (int i = 0; i < n && !force; i++) {
        if (items[i].pg)
            continue;
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
        if (items[i].pg) {
            char name[256];
            snprintf(name, sizeof name, "%s.pgdump", items[i].env);
            if (xdmctl_data_path(path, src, name, NULL) < 0)
                return xdmctl_data_fail("path too long under %s", src);
            if (xdmctl_data_pg_restore(stores, xdmctl_data_env_index(items[i].env), path))
                return 1;
            printf("%s\t%" PRIu64 " bytes\n", items[i].env, items[i].bytes);
            continue;
        }
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
