/* xdmctl data management (see xdmctl_data.h). Backup and restore: the copies are the store's
 * (store_copy(), LMDB's compacting copy); this file names the environments, checks the
 * directories and writes or reads the manifest. Import goes through the XDMS engine; export and
 * check read the stores opened read-only. */
#include "xdmctl_data.h"

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

#define XDMCTL_DATA_PATH_MAX 4096
#define XDMCTL_DATA_MANIFEST_MAX 4096
#define XDMCTL_DATA_FORMAT "xdm-backup 1"

/* The environments of a data directory, in the order they are copied. */
static const char *const xdmctl_data_envs[] = {"shared-list", "presence", "rls", "aggproxy"};
#define XDMCTL_DATA_N_ENVS (sizeof xdmctl_data_envs / sizeof xdmctl_data_envs[0])

__attribute__((format(printf, 1, 2))) static int xdmctl_data_fail(const char *fmt, ...)
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
static int xdmctl_data_path(char out[XDMCTL_DATA_PATH_MAX], const char *dir, const char *name,
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
    static const char *const roles[XDMCTL_DATA_ROLES] = {"shared-list", "presence", "rls"};
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
static bool xdmctl_data_is_pg(const struct xdmctl_data_stores *st, size_t i)
{
    return st && i < XDMCTL_DATA_ROLES && st->role[i].backend == STORE_BACKEND_POSTGRESQL;
}

/* What to call the store of role i in messages: its LMDB directory, or its database (the
 * conninfo is not printed: it may hold a password). */
static const char *xdmctl_data_where(const struct xdmctl_data_stores *st, size_t i, const char *dir,
                                     char out[XDMCTL_DATA_PATH_MAX])
{
    if (!xdmctl_data_is_pg(st, i))
        return dir;
    snprintf(out, XDMCTL_DATA_PATH_MAX, "the PostgreSQL database of %s", xdmctl_data_envs[i]);
    return out;
}

/* Opens the store of XDMS role i with the options o: LMDB in dir, or its PostgreSQL database
 * with one connection and no pruning (the change log's bounds are its servers' to apply). */
static enum store_rc xdmctl_data_open(const struct xdmctl_data_stores *st, size_t i,
                                      const char *dir, struct store_options *o, struct store **s)
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

/* Export ------------------------------------------------------------------------------------- */

/* The XDMS stores: the proxy's holds no documents. */
#define XDMCTL_DATA_N_XDMS 3

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
        struct xdmctl_data_export_ctx ctx = {.dest = dest};
        rc = store_txn_begin(s, false, &ctx.t);
        if (rc == STORE_OK) {
            rc = xui ? store_doc_list(ctx.t, NULL, "users", xui, "", xdmctl_data_export_doc, &ctx)
                     : store_doc_each(ctx.t, xdmctl_data_export_doc, &ctx);
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
    const struct xdmctl_data_stores *stores;
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
    struct xdmctl_data_import_ctx ctx = {
        .root = root, .src = src, .xcap_root = xcap_root, .stores = stores};
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

/* Check -------------------------------------------------------------------------------------- */

#define XDMCTL_DATA_CHECK_DOCS 10000000u
#define XDMCTL_DATA_RLS_NS "urn:ietf:params:xml:ns:rls-services"

/* A document key copied out of a transaction: the four parts, NUL-separated, in one allocation
 * (joined), so that keys compare with memcmp() like the store's own. */
struct xdmctl_data_key {
    char *auid, *tree, *xui, *path; /* point into one allocation */
    size_t len;                     /* of the joined form, for comparison */
    char *joined;
};

struct xdmctl_data_change {
    struct xdmctl_data_key key;
    uint64_t seq;
    bool put;
    char etag[STORE_ETAG_MAX];
};

struct xdmctl_data_check_ctx {
    const char *env;
    struct store_txn *t;
    struct xdmctl_data_key *docs;
    size_t n_docs, cap_docs;
    struct xdmctl_data_change *changes;
    size_t n_changes, cap_changes;
    unsigned problems;
    bool oom;
};

static int xdmctl_data_key_set(struct xdmctl_data_key *k, const struct doc_key *d)
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

static int xdmctl_data_key_cmp(const struct xdmctl_data_key *a, const struct xdmctl_data_key *b)
{
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->joined, b->joined, n);
    return c ? c : (a->len > b->len) - (a->len < b->len);
}

static int xdmctl_data_change_cmp(const void *pa, const void *pb)
{
    const struct xdmctl_data_change *a = pa, *b = pb;
    int c = xdmctl_data_key_cmp(&a->key, &b->key);
    return c ? c : (a->seq > b->seq) - (a->seq < b->seq);
}

__attribute__((format(printf, 3, 4))) static void
xdmctl_data_problem(struct xdmctl_data_check_ctx *ctx, const struct xdmctl_data_key *k,
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

static int xdmctl_data_collect_doc(void *cls, const struct store_doc_view *d)
{
    struct xdmctl_data_check_ctx *ctx = cls;
    if (ctx->n_docs == XDMCTL_DATA_CHECK_DOCS)
        return 1;
    if (ctx->n_docs == ctx->cap_docs) {
        size_t cap = ctx->cap_docs ? 2 * ctx->cap_docs : 256;
        void *p = realloc(ctx->docs, cap * sizeof *ctx->docs);
        if (!p)
            return ctx->oom = true, 1;
        ctx->docs = p, ctx->cap_docs = cap;
    }
    if (xdmctl_data_key_set(&ctx->docs[ctx->n_docs], &d->key) < 0)
        return ctx->oom = true, 1;
    ctx->n_docs++;
    return 0;
}

static int xdmctl_data_collect_change(void *cls, const struct store_change *c)
{
    struct xdmctl_data_check_ctx *ctx = cls;
    if (ctx->n_changes == ctx->cap_changes) {
        size_t cap = ctx->cap_changes ? 2 * ctx->cap_changes : 256;
        void *p = realloc(ctx->changes, cap * sizeof *ctx->changes);
        if (!p)
            return ctx->oom = true, 1;
        ctx->changes = p, ctx->cap_changes = cap;
    }
    struct xdmctl_data_change *ch = &ctx->changes[ctx->n_changes];
    if (xdmctl_data_key_set(&ch->key, &c->key) < 0)
        return ctx->oom = true, 1;
    ch->seq = c->seq;
    ch->put = c->kind == STORE_CHANGE_PUT;
    snprintf(ch->etag, sizeof ch->etag, "%s", c->new_etag ? c->new_etag : "");
    ctx->n_changes++;
    return 0;
}

static int xdmctl_data_str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorts a list of strings each followed by \0 (len bytes) in place. */
static int xdmctl_data_sort_list(char *list, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += list[i] == '\0';
    if (n < 2)
        return 0;
    char **items = calloc(n, sizeof *items), *copy = malloc(len);
    if (!items || !copy) {
        free(items);
        free(copy);
        return -1;
    }
    memcpy(copy, list, len);
    for (size_t i = 0, at = 0; i < n; i++, at += strlen(copy + at) + 1)
        items[i] = copy + at;
    qsort(items, n, sizeof *items, xdmctl_data_str_cmp);
    for (size_t i = 0, at = 0; i < n; i++) {
        size_t l = strlen(items[i]) + 1;
        memcpy(list + at, items[i], l);
        at += l;
    }
    free(items);
    free(copy);
    return 0;
}

/* The service URIs of an rls-services document, each followed by \0, sorted, into out. */
static int xdmctl_data_rls_uris(xmlDocPtr doc, struct buf *out)
{
    xmlXPathContextPtr xp = xmlXPathNewContext(doc);
    if (!xp)
        return -1;
    xmlXPathRegisterNs(xp, BAD_CAST "rs", BAD_CAST XDMCTL_DATA_RLS_NS);
    xmlXPathObjectPtr r = xmlXPathEvalExpression(BAD_CAST "/rs:rls-services/rs:service/@uri", xp);
    int rc = r ? 0 : -1;
    size_t n = r && r->nodesetval ? (size_t)r->nodesetval->nodeNr : 0;
    char **uris = n ? calloc(n, sizeof *uris) : NULL;
    if (n && !uris)
        rc = -1;
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (!(uris[i] = (char *)xmlNodeGetContent(r->nodesetval->nodeTab[i])))
            rc = -1;
    if (rc == 0 && n)
        qsort(uris, n, sizeof *uris, xdmctl_data_str_cmp);
    for (size_t i = 0; i < n && uris; i++) {
        if (rc == 0 && uris[i] && buf_append(out, uris[i], strlen(uris[i]) + 1) < 0)
            rc = -1;
        xmlFree(uris[i]);
    }
    free(uris);
    xmlXPathFreeObject(r);
    xmlXPathFreeContext(xp);
    return rc;
}

struct xdmctl_data_rls_scan {
    struct xdmctl_data_check_ctx *ctx;
    const char *table;
};

/* Every rls_doc / rls_uri entry belongs to an existing document that lists it. */
static int xdmctl_data_rls_entry(void *cls, const void *key, size_t klen, const void *val,
                                 size_t vlen)
{
    struct xdmctl_data_rls_scan *sc = cls;
    bool doc_table = strcmp(sc->table, USAGE_RLS_DOC_TABLE) == 0;
    const char *xui = doc_table ? key : val;
    size_t avail = doc_table ? klen : vlen;
    size_t xl = strnlen(xui, avail);
    const char *path = xl < avail ? xui + xl + 1 : NULL;
    size_t pl = path ? strnlen(path, avail - xl - 1) : 0;
    if (!path || xl + 1 + pl >= avail + (doc_table ? 1 : 0)) {
        xdmctl_data_problem(sc->ctx, NULL, "%s: a malformed entry", sc->table);
        return 0;
    }
    char *x = strndup(xui, xl), *pa = strndup(path, pl);
    if (!x || !pa) {
        free(x);
        free(pa);
        return sc->ctx->oom = true, 1;
    }
    struct doc_key k = {"rls-services", "users", x, pa};
    struct store_doc d;
    enum store_rc rc = store_doc_get(sc->ctx->t, &k, &d);
    if (rc == STORE_OK) {
        if (!doc_table) {
            /* The URI must be one of the document's: its rls_doc entry lists it. */
            struct buf dk;
            buf_init(&dk, XDMCTL_DATA_PATH_MAX * 16);
            void *v = NULL;
            size_t vl = 0;
            bool listed = false;
            if (buf_append(&dk, x, xl + 1) == 0 && buf_append(&dk, pa, pl) == 0 &&
                store_kv_get(sc->ctx->t, USAGE_RLS_DOC_TABLE, dk.data, dk.len, &v, &vl) == STORE_OK)
                for (size_t at = 0; at < vl && !listed; at += strlen((char *)v + at) + 1)
                    listed =
                        strlen((char *)v + at) == klen && memcmp((char *)v + at, key, klen) == 0;
            if (!listed)
                xdmctl_data_problem(sc->ctx, NULL,
                                    "%s: service URI %.*s is indexed to %s/%s, which does not "
                                    "list it",
                                    sc->table, (int)klen, (const char *)key, x, pa);
            free(v);
            buf_release(&dk);
        }
        store_doc_release(&d);
    } else {
        xdmctl_data_problem(sc->ctx, NULL, "%s: an entry for the missing document %s/%s", sc->table,
                            x, pa);
    }
    free(x);
    free(pa);
    return 0;
}

/* Checks one document: content, quota share, RLS index entries. */
static void xdmctl_data_check_doc(struct xdmctl_data_check_ctx *ctx, struct usage *u,
                                  enum xdms_role role, const struct xdmctl_data_key *k,
                                  bool rls_tables)
{
    struct doc_key dk = {k->auid, k->tree, k->xui, k->path};
    struct store_doc d;
    enum store_rc rc = store_doc_get(ctx->t, &dk, &d);
    if (rc != STORE_OK) {
        xdmctl_data_problem(ctx, k, "cannot read: %s", store_strerror(rc));
        return;
    }
    const struct appusage *au = appusage_find(role, k->auid);
    struct xcap_err err = {0};
    xmlDocPtr doc = NULL;
    enum xcap_status st = XCAP_OK;
    if (!au)
        xdmctl_data_problem(ctx, k, "no application usage \"%s\" in this XDMS", k->auid);
    else if (!xdoc_utf8_valid(d.data, d.len))
        xdmctl_data_problem(ctx, k, "not valid UTF-8");
    else if ((st = xdoc_parse(d.data, d.len, &doc, &err)) != XCAP_OK)
        xdmctl_data_problem(ctx, k, "not well-formed: %s", err.phrase ? err.phrase : "");
    else if (!usage_server_owned(au, &dk) &&
             (st = usage_validate(u, au, &dk, doc, &err)) != XCAP_OK)
        xdmctl_data_problem(ctx, k, "%s: %s", status_condition(st) ? status_condition(st) : "",
                            err.phrase ? err.phrase : "");
    xcap_err_release(&err);
    if (doc && rls_tables && strcmp(k->auid, "rls-services") == 0 &&
        strcmp(k->tree, "users") == 0) {
        struct buf want, key;
        buf_init(&want, XDMCTL_DATA_PATH_MAX * 16);
        buf_init(&key, XDMCTL_DATA_PATH_MAX * 16);
        void *v = NULL;
        size_t vl = 0;
        if (xdmctl_data_rls_uris(doc, &want) < 0 || buf_append(&key, k->xui, strlen(k->xui) + 1) ||
            buf_puts(&key, k->path)) {
            ctx->oom = true;
        } else {
            rc = store_kv_get(ctx->t, USAGE_RLS_DOC_TABLE, key.data, key.len, &v, &vl);
            if (rc == STORE_OK && xdmctl_data_sort_list(v, vl) < 0)
                ctx->oom = true;
            if (want.len && rc != STORE_OK)
                xdmctl_data_problem(ctx, k, "its service URIs are not in the index %s",
                                    USAGE_RLS_DOC_TABLE);
            else if (rc == STORE_OK && (vl != want.len || memcmp(v, want.data, vl) != 0))
                xdmctl_data_problem(ctx, k, "the index %s lists other service URIs",
                                    USAGE_RLS_DOC_TABLE);
            for (size_t at = 0; at < want.len; at += strlen(want.data + at) + 1) {
                void *o = NULL;
                size_t ol = 0;
                const char *uri = want.data + at;
                rc = store_kv_get(ctx->t, USAGE_RLS_URI_TABLE, uri, strlen(uri), &o, &ol);
                if (rc != STORE_OK || ol < key.len + 1 || memcmp(o, key.data, key.len) != 0 ||
                    ((char *)o)[key.len] != '\0')
                    xdmctl_data_problem(ctx, k, "service URI %s is not indexed to it in %s", uri,
                                        USAGE_RLS_URI_TABLE);
                free(o);
            }
        }
        free(v);
        buf_release(&want);
        buf_release(&key);
    }
    if (doc)
        xmlFreeDoc(doc);
    store_doc_release(&d);
}

/* Checks one XDMS store; returns -1 when it could not be read at all. */
static int xdmctl_data_check_store(struct xdmctl_data_check_ctx *ctx, struct store *s,
                                   struct usage *u, enum xdms_role role, bool rls_tables)
{
    enum store_rc rc = store_txn_begin(s, false, &ctx->t);
    if (rc == STORE_OK)
        rc = store_doc_each(ctx->t, xdmctl_data_collect_doc, ctx);
    if (rc == STORE_OK)
        rc = store_change_read(ctx->t, 0, xdmctl_data_collect_change, ctx);
    if (rc != STORE_OK || ctx->oom) {
        if (ctx->t)
            store_txn_abort(ctx->t);
        return -1;
    }
    if (ctx->n_docs == XDMCTL_DATA_CHECK_DOCS)
        xdmctl_data_problem(ctx, NULL, "more than %u documents: only those checked",
                            XDMCTL_DATA_CHECK_DOCS);

    /* Documents, and the quota table against the sum of each user's sizes (keys are sorted by
     * AUID first, so a user's documents are gathered across AUIDs here). */
    for (size_t i = 0; i < ctx->n_docs; i++)
        xdmctl_data_check_doc(ctx, u, role, &ctx->docs[i], rls_tables);
    for (size_t i = 0; i < ctx->n_docs; i++) {
        const struct xdmctl_data_key *k = &ctx->docs[i];
        if (strcmp(k->tree, "users") != 0 || !k->xui[0])
            continue;
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(ctx->docs[j].tree, "users") == 0 && strcmp(ctx->docs[j].xui, k->xui) == 0;
        if (seen)
            continue;
        uint64_t sum = 0, stored = 0;
        for (size_t j = i; j < ctx->n_docs; j++) {
            const struct xdmctl_data_key *o = &ctx->docs[j];
            struct store_doc d;
            struct doc_key dk = {o->auid, o->tree, o->xui, o->path};
            if (strcmp(o->tree, "users") == 0 && strcmp(o->xui, k->xui) == 0 &&
                store_doc_get(ctx->t, &dk, &d) == STORE_OK) {
                sum += d.len;
                store_doc_release(&d);
            }
        }
        if (store_user_bytes(ctx->t, k->xui, &stored) != STORE_OK || stored != sum)
            xdmctl_data_problem(
                ctx, NULL, "quota of %s: %" PRIu64 " bytes counted, its documents hold %" PRIu64,
                k->xui, stored, sum);
    }

    /* The newest change record of each document agrees with the document. */
    if (ctx->n_changes)
        qsort(ctx->changes, ctx->n_changes, sizeof *ctx->changes, xdmctl_data_change_cmp);
    for (size_t i = 0; i < ctx->n_changes; i++) {
        const struct xdmctl_data_change *c = &ctx->changes[i];
        if (i + 1 < ctx->n_changes && xdmctl_data_key_cmp(&c->key, &ctx->changes[i + 1].key) == 0)
            continue;
        struct doc_key dk = {c->key.auid, c->key.tree, c->key.xui, c->key.path};
        struct store_doc d;
        rc = store_doc_get(ctx->t, &dk, &d);
        if (c->put && rc != STORE_OK)
            xdmctl_data_problem(ctx, &c->key, "change %" PRIu64 " wrote it, but it is missing",
                                c->seq);
        else if (c->put && strcmp(d.etag, c->etag) != 0)
            xdmctl_data_problem(ctx, &c->key,
                                "ETag %s, but its newest change record (%" PRIu64 ") says %s",
                                d.etag, c->seq, c->etag);
        else if (!c->put && rc == STORE_OK)
            xdmctl_data_problem(ctx, &c->key,
                                "change %" PRIu64 " deleted it, but it is there (ETag %s)", c->seq,
                                d.etag);
        if (rc == STORE_OK)
            store_doc_release(&d);
    }

    if (rls_tables) {
        struct xdmctl_data_rls_scan a = {ctx, USAGE_RLS_DOC_TABLE}, b = {ctx, USAGE_RLS_URI_TABLE};
        store_kv_scan(ctx->t, USAGE_RLS_DOC_TABLE, NULL, 0, xdmctl_data_rls_entry, &a);
        store_kv_scan(ctx->t, USAGE_RLS_URI_TABLE, NULL, 0, xdmctl_data_rls_entry, &b);
    }
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
        /* The RLS store is opened with its index tables when it has them. */
        const char *const rls_tables[] = {USAGE_RLS_URI_TABLE, USAGE_RLS_DOC_TABLE, NULL};
        struct store_options opts = {.read_only = true,
                                     .tables = role == ROLE_RLS ? rls_tables : NULL};
        struct store *s;
        enum store_rc rc = xdmctl_data_open(stores, i, dir, &opts, &s);
        bool with_tables = role == ROLE_RLS && rc == STORE_OK;
        if (rc == STORE_NOTFOUND && role == ROLE_RLS) {
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
        struct xdmctl_data_check_ctx ctx = {.env = env};
        int bad = xdmctl_data_check_store(&ctx, s, u, role, with_tables);
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
