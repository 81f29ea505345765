/* xdmctl import --from kamailio|openxcap (see xdmctl_data.h): the xcap table of Kamailio's
 * xcap_server or of OpenXCAP to an export tree, then the ordinary import, so that every document
 * passes the checks of a PUT. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "xdmctl_data.h"
#include "xdmctl_sqldump.h"

#define XDMCTL_MIGRATE_PATH_MAX 4096
#define XDMCTL_MIGRATE_DUMP_MAX (256u << 20)

struct xdmctl_migrate_type {
    int type;
    const char *auid;
};

/* Where the rows come from: both servers keep one row per document in a table `xcap` with the
 * columns id, username, domain, doc, doc_type and doc_uri, and differ in what doc_type and
 * doc_uri hold. */
struct xdmctl_migrate_source {
    const char *name;
    const struct xdmctl_migrate_type *types;
    size_t ntypes;
    /* doc_uri is the whole request path ("/xcap-root/AUID/users/XUI/DOC", Kamailio) rather than
     * the document path below the user's directory ("DOC", OpenXCAP). */
    bool doc_uri_is_uri;
};

/* Kamailio's document types (xcap_server, xcap_doc.h: bit flags). */
static const struct xdmctl_migrate_type xdmctl_migrate_kamailio_types[] = {
    {1 << 1, "pres-rules"},
    {1 << 2, "resource-lists"},
    {1 << 3, "rls-services"},
    {1 << 4, "pidf-manipulation"},
    {1 << 5, "org.openmobilealliance.pres-rules"},
};

/* OpenXCAP's (xcap/backend/database.py, Storage.app_mapping): the same bits, plus OMA
 * pres-content; its dialog-rules (1 << 7) and test-app (0) usages are served nowhere here. */
static const struct xdmctl_migrate_type xdmctl_migrate_openxcap_types[] = {
    {1 << 1, "pres-rules"},
    {1 << 2, "resource-lists"},
    {1 << 3, "rls-services"},
    {1 << 4, "pidf-manipulation"},
    {1 << 5, "org.openmobilealliance.pres-rules"},
    {1 << 6, "org.openmobilealliance.pres-content"},
};

static const struct xdmctl_migrate_source xdmctl_migrate_kamailio = {
    "kamailio", xdmctl_migrate_kamailio_types,
    sizeof xdmctl_migrate_kamailio_types / sizeof xdmctl_migrate_kamailio_types[0], true};

static const struct xdmctl_migrate_source xdmctl_migrate_openxcap = {
    "openxcap", xdmctl_migrate_openxcap_types,
    sizeof xdmctl_migrate_openxcap_types / sizeof xdmctl_migrate_openxcap_types[0], false};

static const char *xdmctl_migrate_auid(const struct xdmctl_migrate_source *src, int type)
{
    for (size_t i = 0; i < src->ntypes; i++)
        if (src->types[i].type == type)
            return src->types[i].auid;
    return NULL;
}

/* Appends "/" and the encoded segment to path; -1 when it does not fit. */
static int xdmctl_migrate_add(char *path, const char *seg, size_t len)
{
    size_t used = strlen(path);
    if (used + 2 >= XDMCTL_MIGRATE_PATH_MAX)
        return -1;
    path[used] = '/';
    return xdmctl_data_segment(seg, len, path + used + 1, XDMCTL_MIGRATE_PATH_MAX - used - 1);
}

/* Opens db: a SQLite file as it is; anything else is read as an SQL text dump whose xcap table
 * is loaded into an in-memory database (xdmctl_sqldump.h). */
static sqlite3 *xdmctl_migrate_open(const char *db)
{
    sqlite3 *h = NULL;
    char magic[16] = {0};
    FILE *f = fopen(db, "rb");
    if (!f) {
        fprintf(stderr, "xdmctl: cannot open %s: %s\n", db, strerror(errno));
        return NULL;
    }
    size_t got = fread(magic, 1, sizeof magic, f);
    if (got == sizeof magic && memcmp(magic, "SQLite format 3", 16) == 0) {
        fclose(f);
        if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
            fprintf(stderr, "xdmctl: %s: %s\n", db, h ? sqlite3_errmsg(h) : "cannot open");
            sqlite3_close(h);
            return NULL;
        }
        return h;
    }
    /* An SQL dump: read it whole (bounded) and take the xcap table out of it. */
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *sql = size >= 0 && (unsigned long)size <= XDMCTL_MIGRATE_DUMP_MAX
                    ? malloc((size_t)size + 1)
                    : NULL;
    if (!sql || fread(sql, 1, (size_t)size, f) != (size_t)size) {
        fprintf(stderr, "xdmctl: cannot read %s (an SQL dump of at most %u bytes)\n", db,
                XDMCTL_MIGRATE_DUMP_MAX);
        free(sql);
        fclose(f);
        return NULL;
    }
    fclose(f);
    sql[size] = '\0';
    char err[512];
    if (sqlite3_open(":memory:", &h) != SQLITE_OK) {
        fprintf(stderr, "xdmctl: cannot open an in-memory database: %s\n",
                h ? sqlite3_errmsg(h) : "out of memory");
        sqlite3_close(h);
        h = NULL;
    } else if (xdmctl_sqldump_load(h, sql, (size_t)size, "xcap", err, sizeof err) < 0) {
        fprintf(stderr,
                "xdmctl: %s is neither a SQLite database nor an SQL dump of an xcap "
                "table: %s\n",
                db, err);
        sqlite3_close(h);
        h = NULL;
    }
    free(sql);
    return h;
}

static int xdmctl_migrate_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

/* Writes one row into the tree under top; returns 0, or -1 after reporting why not. */
static int xdmctl_migrate_row(const struct xdmctl_migrate_source *src, const char *top,
                              sqlite3_stmt *st)
{
    long long id = sqlite3_column_int64(st, 0);
    const char *user = (const char *)sqlite3_column_text(st, 1);
    const char *domain = (const char *)sqlite3_column_text(st, 2);
    int type = sqlite3_column_int(st, 4);
    const char *uri = (const char *)sqlite3_column_text(st, 5);
    const void *doc = sqlite3_column_blob(st, 3);
    int len = sqlite3_column_bytes(st, 3);
    const char *auid = xdmctl_migrate_auid(src, type);
    if (!auid) {
        fprintf(stderr,
                "xdmctl: refused %s row %lld: doc_type %d is no application usage "
                "served here\n",
                src->name, id, type);
        return -1;
    }
    /* The document path: what follows the XUI in a Kamailio doc_uri
     * ("/xcap-root/AUID/users/XUI/..."); an OpenXCAP doc_uri is that path itself. */
    const char *path = NULL; /* its first segment */
    if (src->doc_uri_is_uri) {
        const char *users = uri ? strstr(uri, "/users/") : NULL;
        path = users ? strchr(users + 7, '/') : NULL;
        path = path ? path + 1 : NULL;
    } else if (uri) {
        path = uri[0] == '/' ? uri + 1 : uri;
    }
    if (!user || !domain || !path || !path[0]) {
        fprintf(stderr,
                "xdmctl: refused %s row %lld: doc_uri \"%s\" names no document of "
                "a user\n",
                src->name, id, uri ? uri : "");
        return -1;
    }
    char xui[512], file[XDMCTL_MIGRATE_PATH_MAX];
    snprintf(file, sizeof file, "%s", top);
    int n = snprintf(xui, sizeof xui, "sip:%s@%s", user, domain);
    int bad = n < 0 || n >= (int)sizeof xui || xdmctl_migrate_add(file, auid, strlen(auid)) ||
              (mkdir(file, 0700) < 0 && errno != EEXIST) || xdmctl_migrate_add(file, "users", 5) ||
              (mkdir(file, 0700) < 0 && errno != EEXIST) ||
              xdmctl_migrate_add(file, xui, strlen(xui)) ||
              (mkdir(file, 0700) < 0 && errno != EEXIST);
    /* doc_uri is percent-encoded as it was sent, as are the file names of an export tree: its
     * segments are taken as they are (the import's URI parser decodes and checks them). */
    for (const char *p = path; !bad;) {
        const char *slash = strchr(p, '/');
        size_t l = slash ? (size_t)(slash - p) : strlen(p), used = strlen(file);
        if (l == 0 || (l <= 2 && strncmp(p, "..", l) == 0) || used + l + 2 >= sizeof file) {
            bad = 1;
            break;
        }
        file[used] = '/';
        memcpy(file + used + 1, p, l);
        file[used + 1 + l] = '\0';
        if (!slash)
            break;
        bad = mkdir(file, 0700) < 0 && errno != EEXIST;
        p = slash + 1;
    }
    int fd = bad ? -1 : open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || (len > 0 && write(fd, doc, (size_t)len) != len)) {
        fprintf(stderr, "xdmctl: refused %s row %lld: cannot place doc_uri \"%s\" (%s)\n",
                src->name, id, uri,
                errno == EEXIST ? "another row has the same document" : "bad path");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

static int xdmctl_migrate_run(const struct xdmctl_migrate_source *src, const char *root,
                              const char *db, const char *xcap_root)
{
    sqlite3 *h = xdmctl_migrate_open(db);
    if (!h)
        return 1;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(h,
                           "SELECT id, username, domain, doc, doc_type, doc_uri FROM xcap "
                           "ORDER BY id",
                           -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "xdmctl: %s: no %s xcap table: %s\n", db, src->name, sqlite3_errmsg(h));
        sqlite3_close(h);
        return 1;
    }
    char top[] = "/tmp/xdmctl-migrate-XXXXXX";
    if (!mkdtemp(top)) {
        fprintf(stderr, "xdmctl: cannot create a temporary directory: %s\n", strerror(errno));
        sqlite3_finalize(st);
        sqlite3_close(h);
        return 1;
    }
    unsigned rows = 0, refused = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        rows++;
        if (xdmctl_migrate_row(src, top, st) < 0)
            refused++;
    }
    int failed = rc != SQLITE_DONE;
    if (failed)
        fprintf(stderr, "xdmctl: %s: reading the xcap table failed: %s\n", db, sqlite3_errmsg(h));
    sqlite3_finalize(st);
    sqlite3_close(h);
    printf("%s: %u rows, %u refused before import\n", src->name, rows, refused);
    fflush(stdout);
    int irc = failed ? 1 : xdmctl_data_import(root, top, xcap_root);
    nftw(top, xdmctl_migrate_rm, 16, FTW_DEPTH | FTW_PHYS);
    return irc || refused || failed ? 1 : 0;
}

int xdmctl_data_import_kamailio(const char *root, const char *db, const char *xcap_root)
{
    return xdmctl_migrate_run(&xdmctl_migrate_kamailio, root, db, xcap_root);
}

int xdmctl_data_import_openxcap(const char *root, const char *db, const char *xcap_root)
{
    return xdmctl_migrate_run(&xdmctl_migrate_openxcap, root, db, xcap_root);
}
