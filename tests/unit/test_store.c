/* Unit tests of the store (common/store.h). Every test works in its own mkdtemp directory under
 * /tmp and removes it. The backend-neutral tests run on LMDB, then a second time on PostgreSQL when
 * XDM_TEST_PG_CONNINFO names a database (tools/xdm test starts one): each test there in a schema
 * of its own, dropped after it. */
#include "unit.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <dirent.h>
#include <libpq-fe.h>
#include <lmdb.h>

#include "store.h"

#define TEST_ETAGS_MAX 16

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void rm_rf(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void make_tmpdir(char dir[64])
{
    snprintf(dir, 64, "/tmp/xdm-store-XXXXXX");
    CU_ASSERT_FATAL(mkdtemp(dir) != NULL);
}

/* PostgreSQL suite: the conninfo of the running test's schema ("" while LMDB runs). */
static char g_pg[1024];
static unsigned g_pg_schemas;

/* store_open() on the backend of the running suite. */
static enum store_rc test_store_open(const char *dir, const struct store_options *opts,
                                     struct store **out)
{
    struct store_options o = opts != NULL ? *opts : (struct store_options){0};
    if (g_pg[0] != '\0') {
        o.backend = STORE_BACKEND_POSTGRESQL;
        o.pg_conninfo = g_pg;
    }
    return store_open(dir, &o, out);
}

/* Runs one SQL command on the test database (outside any store); returns 0 on success. */
static int pg_admin(const char *sql)
{
    PGconn *c = PQconnectdb(getenv("XDM_TEST_PG_CONNINFO"));
    int rc = -1;
    if (PQstatus(c) == CONNECTION_OK) {
        PQclear(PQexec(c, "SET client_min_messages = warning"));
        PGresult *r = PQexec(c, sql);
        rc = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK ? 0 : -1;
        if (rc != 0)
            fprintf(stderr, "pg_admin %s: %s", sql, PQerrorMessage(c));
        PQclear(r);
    }
    PQfinish(c);
    return rc;
}

static void pg_setup(void)
{
    char sql[128];
    snprintf(sql, sizeof sql, "CREATE SCHEMA xdm_test_%d_%u", (int)getpid(), ++g_pg_schemas);
    if (pg_admin(sql) != 0)
        return;
    snprintf(g_pg, sizeof g_pg, "%s options='-csearch_path=xdm_test_%d_%u'",
             getenv("XDM_TEST_PG_CONNINFO"), (int)getpid(), g_pg_schemas);
}

static void pg_teardown(void)
{
    char sql[128];
    snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS xdm_test_%d_%u CASCADE", (int)getpid(),
             g_pg_schemas);
    pg_admin(sql);
    g_pg[0] = '\0';
}

static struct store *open_store(const char *dir, const struct store_options *opts)
{
    struct store *s = NULL;
    CU_ASSERT_EQUAL_FATAL(test_store_open(dir, opts, &s), STORE_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    return s;
}

static struct doc_key key_of(const char *auid, const char *tree, const char *xui, const char *path)
{
    struct doc_key k = {auid, tree, xui, path};
    return k;
}

/* Puts one document in its own write transaction; returns the rc of the whole operation. */
static enum store_rc put_doc(struct store *s, const struct doc_key *k, const char *data,
                             char etag[STORE_ETAG_MAX])
{
    struct store_txn *t;
    enum store_rc rc = store_txn_begin(s, true, &t);
    if (rc != STORE_OK)
        return rc;
    rc = store_doc_put(t, k, data, strlen(data), etag);
    if (rc != STORE_OK) {
        store_txn_abort(t);
        return rc;
    }
    return store_txn_commit(t);
}

static enum store_rc get_doc(struct store *s, const struct doc_key *k, struct store_doc *d)
{
    struct store_txn *t;
    enum store_rc rc = store_txn_begin(s, false, &t);
    if (rc != STORE_OK)
        return rc;
    rc = store_doc_get(t, k, d);
    store_txn_abort(t);
    return rc;
}

static enum store_rc del_doc(struct store *s, const struct doc_key *k)
{
    struct store_txn *t;
    enum store_rc rc = store_txn_begin(s, true, &t);
    if (rc != STORE_OK)
        return rc;
    rc = store_doc_del(t, k);
    if (rc != STORE_OK) {
        store_txn_abort(t);
        return rc;
    }
    return store_txn_commit(t);
}

static void test_put_get_del(void)
{
    char dir[64];
    make_tmpdir(dir);
    struct store *s = open_store(dir, NULL);
    struct doc_key k = key_of("resource-lists", "users", "sip:alice@example.com", "index");
    const char *body = "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"/>";
    char etag[STORE_ETAG_MAX];
    time_t before = time(NULL);
    CU_ASSERT_EQUAL(put_doc(s, &k, body, etag), STORE_OK);
    CU_ASSERT(strlen(etag) > 0);

    struct store_doc d;
    CU_ASSERT_EQUAL(get_doc(s, &k, &d), STORE_OK);
    CU_ASSERT_EQUAL(d.len, strlen(body));
    CU_ASSERT_STRING_EQUAL(d.data, body);
    CU_ASSERT_STRING_EQUAL(d.etag, etag);
    CU_ASSERT(d.mtime >= before && d.mtime <= time(NULL));
    store_doc_release(&d);
    CU_ASSERT_PTR_NULL(d.data);

    /* Another user's or another AUID's key is a different document. */
    struct doc_key other = key_of("resource-lists", "users", "sip:bob@example.com", "index");
    CU_ASSERT_EQUAL(get_doc(s, &other, &d), STORE_NOTFOUND);
    CU_ASSERT_PTR_NULL(d.data);
    struct doc_key other2 = key_of("rls-services", "users", "sip:alice@example.com", "index");
    CU_ASSERT_EQUAL(get_doc(s, &other2, &d), STORE_NOTFOUND);

    /* Writes through a read transaction are refused. */
    struct store_txn *t;
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(s, false, &t), STORE_OK);
    CU_ASSERT_EQUAL(store_doc_put(t, &other, "x", 1, etag), STORE_INVALID);
    CU_ASSERT_EQUAL(store_doc_del(t, &k), STORE_INVALID);
    store_txn_abort(t);

    /* An empty document is stored and read back as "". */
    CU_ASSERT_EQUAL(put_doc(s, &other, "", etag), STORE_OK);
    CU_ASSERT_EQUAL(get_doc(s, &other, &d), STORE_OK);
    CU_ASSERT_EQUAL(d.len, 0);
    CU_ASSERT_STRING_EQUAL(d.data, "");
    store_doc_release(&d);

    CU_ASSERT_EQUAL(del_doc(s, &k), STORE_OK);
    CU_ASSERT_EQUAL(get_doc(s, &k, &d), STORE_NOTFOUND);
    CU_ASSERT_EQUAL(del_doc(s, &k), STORE_NOTFOUND);
    CU_ASSERT_EQUAL(get_doc(s, &other, &d), STORE_OK);
    store_doc_release(&d);

    /* An aborted write leaves nothing behind. */
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(s, true, &t), STORE_OK);
    CU_ASSERT_EQUAL(store_doc_put(t, &k, "gone", 4, etag), STORE_OK);
    store_txn_abort(t);
    CU_ASSERT_EQUAL(get_doc(s, &k, &d), STORE_NOTFOUND);

    store_close(s);
    rm_rf(dir);
}

/* Documents written in key order fill LMDB's leaf pages: a put whose key is above every stored
 * one is an append, so a full page splits at the new key instead of in the middle. 1.1 KiB
 * documents in key order took 2 150 bytes each with middle splits (two per 4 KiB page); appended
 * they fit three to a page. */
static void test_append_order_fills_pages(void)
{
    char dir[64];
    make_tmpdir(dir);
    struct store *s = open_store(dir, NULL);
    char body[1113];
    memset(body, 'x', sizeof body - 1);
    body[sizeof body - 1] = '\0';
    enum { N = 3000 };
    struct store_txn *t;
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(s, true, &t), STORE_OK);
    for (unsigned i = 0; i < N; i++) {
        char xui[48], path[16], etag[STORE_ETAG_MAX];
        snprintf(xui, sizeof xui, "sip:u%07u@example.com", i / 10);
        snprintf(path, sizeof path, "doc%02u", i % 10);
        struct doc_key k = key_of("resource-lists", "users", xui, path);
        CU_ASSERT_EQUAL_FATAL(store_doc_put(t, &k, body, strlen(body), etag), STORE_OK);
    }
    CU_ASSERT_EQUAL_FATAL(store_txn_commit(t), STORE_OK);
    struct store_usage u;
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(s, false, &t), STORE_OK);
    CU_ASSERT_EQUAL(store_usage_get(t, &u), STORE_OK);
    store_txn_abort(t);
    CU_ASSERT_EQUAL(u.documents, N);
    /* three records per page plus the branch pages and the other tables: under 1 500 bytes */
    CU_ASSERT(u.used_bytes / N < 1500);
    /* an update in place and a key below the last one still work (no append there) */
    struct doc_key first = key_of("resource-lists", "users", "sip:u0000000@example.com", "doc00");
    struct doc_key mid = key_of("resource-lists", "users", "sip:u0000001@example.com", "doc00a");
    char etag[STORE_ETAG_MAX];
    CU_ASSERT_EQUAL(put_doc(s, &first, "<a/>", etag), STORE_OK);
    CU_ASSERT_EQUAL(put_doc(s, &mid, "<b/>", etag), STORE_OK);
    struct store_doc d;
    CU_ASSERT_EQUAL(get_doc(s, &mid, &d), STORE_OK);
    CU_ASSERT_STRING_EQUAL(d.data, "<b/>");
    store_doc_release(&d);
    store_close(s);
    rm_rf(dir);
}

/* store_copy() writes every table in key order into full pages: a store written in a random
 * key order (pages split in the middle, two 1.1 KiB records to a page) comes out dense. */
static void test_copy_fills_pages(void)
{
    char base[64], src[128], dst[128];
    make_tmpdir(base);
    snprintf(src, sizeof src, "%s/src", base);
    snprintf(dst, sizeof dst, "%s/dst", base);
    const char *tables[] = {"subs", NULL};
    struct store_options opts = {.tables = tables};
    struct store *s = open_store(src, &opts);
    char body[1113];
    memset(body, 'x', sizeof body - 1);
    body[sizeof body - 1] = '\0';
    enum { N = 3000 };
    struct store_txn *t;
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(s, true, &t), STORE_OK);
    for (unsigned i = 0; i < N; i++) {
        char xui[48], etag[STORE_ETAG_MAX];
        snprintf(xui, sizeof xui, "sip:u%07u@example.com", (i * 1031u) % N); /* scattered */
        struct doc_key k = key_of("resource-lists", "users", xui, "index");
        CU_ASSERT_EQUAL_FATAL(store_doc_put(t, &k, body, strlen(body), etag), STORE_OK);
    }
    CU_ASSERT_EQUAL(store_kv_put(t, "subs", "k", 1, "v", 1), STORE_OK);
    CU_ASSERT_EQUAL_FATAL(store_txn_commit(t), STORE_OK);
    struct store_usage u;
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(s, false, &t), STORE_OK);
    CU_ASSERT_EQUAL(store_usage_get(t, &u), STORE_OK);
    store_txn_abort(t);
    CU_ASSERT(u.used_bytes / N > 1800); /* the scattered writes left pages half empty */
    CU_ASSERT_EQUAL_FATAL(mkdir(dst, 0700), 0);
    CU_ASSERT_EQUAL_FATAL(store_copy(src, dst), STORE_OK);
    store_close(s);
    struct stat st;
    char path[160];
    snprintf(path, sizeof path, "%s/data.mdb", dst);
    CU_ASSERT_EQUAL_FATAL(stat(path, &st), 0);
    CU_ASSERT((uint64_t)st.st_size / N < 1500);
    snprintf(path, sizeof path, "%s/lock.mdb", dst);
    CU_ASSERT_NOT_EQUAL(stat(path, &st), 0); /* the copy made no lock file */
    struct store *c = open_store(dst, &opts);
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(c, false, &t), STORE_OK);
    CU_ASSERT_EQUAL(store_usage_get(t, &u), STORE_OK);
    CU_ASSERT_EQUAL(u.documents, N);
    CU_ASSERT_EQUAL(u.users, N);
    void *v = NULL;
    size_t vl = 0;
    CU_ASSERT_EQUAL(store_kv_get(t, "subs", "k", 1, &v, &vl), STORE_OK);
    CU_ASSERT_EQUAL(vl, 1);
    free(v);
    store_txn_abort(t);
    struct doc_key k = key_of("resource-lists", "users", "sip:u0001234@example.com", "index");
    struct store_doc d;
    CU_ASSERT_EQUAL_FATAL(get_doc(c, &k, &d), STORE_OK);
    CU_ASSERT_EQUAL(d.len, strlen(body));
    store_doc_release(&d);
    char etag[STORE_ETAG_MAX];
    CU_ASSERT_EQUAL(put_doc(c, &k, "<a/>", etag), STORE_OK); /* the copy takes writes */
    store_close(c);
    rm_rf(base);
}

static void test_invalid_keys(void)
{
    char dir[64];
    make_tmpdir(dir);
    struct store *s = open_store(dir, NULL);
    char etag[STORE_ETAG_MAX];
    struct store_doc d;

    /* auid \0 tree \0 xui \0 path must fit LMDB's 511-byte key limit. */
    char path[600];
    const char *auid = "resource-lists", *tree = "users", *xui = "sip:a@b";
    size_t fixed = strlen(auid) + strlen(tree) + strlen(xui) + 3;
    memset(path, 'p', sizeof path);
    path[511 - fixed] = '\0';
    struct doc_key k = key_of(auid, tree, xui, path);
    CU_ASSERT_EQUAL(put_doc(s, &k, "fits", etag), STORE_OK);
    CU_ASSERT_EQUAL(get_doc(s, &k, &d), STORE_OK);
    CU_ASSERT_STRING_EQUAL(d.data, "fits");
    store_doc_release(&d);
    path[511 - fixed] = 'p';
    path[512 - fixed] = '\0';
    CU_ASSERT_EQUAL(put_doc(s, &k, "too long", etag), STORE_INVALID);
    CU_ASSERT_EQUAL(get_doc(s, &k, &d), STORE_INVALID);
    path[sizeof path - 1] = '\0';
    CU_ASSERT_EQUAL(del_doc(s, &k), STORE_INVALID);

    struct doc_key no_path = key_of(auid, tree, xui, "");
    CU_ASSERT_EQUAL(put_doc(s, &no_path, "x", etag), STORE_INVALID);
    struct doc_key no_auid = key_of("", tree, xui, "index");
    CU_ASSERT_EQUAL(put_doc(s, &no_auid, "x", etag), STORE_INVALID);
    struct doc_key null_xui = key_of(auid, tree, NULL, "index");
    CU_ASSERT_EQUAL(put_doc(s, &null_xui, "x", etag), STORE_INVALID);

    store_close(s);
    rm_rf(dir);
}

static bool etag_seen(char etags[][STORE_ETAG_MAX], size_t n, const char *etag)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(etags[i], etag) == 0)
            return true;
    return false;
}

static void test_etag_never_reused(void)
{
    char dir[64];
    make_tmpdir(dir);
    struct store *s = open_store(dir, NULL);
    struct doc_key k = key_of("pres-rules", "users", "sip:alice@example.com", "index");
    char etags[TEST_ETAGS_MAX][STORE_ETAG_MAX];
    size_t n = 0;
    char etag[STORE_ETAG_MAX];

    for (int round = 0; round < 3; round++) {
        /* Same content each time: the tag still changes. */
        CU_ASSERT_EQUAL_FATAL(put_doc(s, &k, "<ruleset/>", etag), STORE_OK);
        CU_ASSERT_FALSE(etag_seen(etags, n, etag));
        memcpy(etags[n++], etag, STORE_ETAG_MAX);
        CU_ASSERT_EQUAL_FATAL(put_doc(s, &k, "<ruleset/>", etag), STORE_OK);
        CU_ASSERT_FALSE(etag_seen(etags, n, etag));
        memcpy(etags[n++], etag, STORE_ETAG_MAX);
        CU_ASSERT_EQUAL_FATAL(del_doc(s, &k), STORE_OK);
    }
    store_close(s);

    s = open_store(dir, NULL);
    CU_ASSERT_EQUAL_FATAL(put_doc(s, &k, "<ruleset/>", etag), STORE_OK);
    CU_ASSERT_FALSE(etag_seen(etags, n, etag));
    memcpy(etags[n++], etag, STORE_ETAG_MAX);
    /* A tag given to another document is not reused either. */
    struct doc_key k2 = key_of("pres-rules", "users", "sip:bob@example.com", "index");
    CU_ASSERT_EQUAL_FATAL(put_doc(s, &k2, "<ruleset/>", etag), STORE_OK);
    CU_ASSERT_FALSE(etag_seen(etags, n, etag));
    memcpy(etags[n++], etag, STORE_ETAG_MAX);

    /* The tag is opaque but must be printable and carry no quote (it goes inside "..."). */
    for (const char *p = etag; *p != '\0'; p++)
        CU_ASSERT(*p > 0x20 && *p < 0x7f && *p != '"' && *p != '\\');
    store_close(s);
    rm_rf(dir);
}

struct list_result {
    size_t n;
    char keys[16][128];
    size_t lens[16];
    int stop_after; /* 0 = never */
};

static int list_collect(void *cls, const struct store_doc_view *d)
{
    struct list_result *r = cls;
    if (r->n < 16) {
        snprintf(r->keys[r->n], sizeof r->keys[0], "%s|%s|%s|%s", d->key.auid, d->key.tree,
                 d->key.xui, d->key.path);
        r->lens[r->n] = d->len;
        CU_ASSERT(d->etag != NULL && d->etag[0] != '\0');
    }
    r->n++;
    return (r->stop_after > 0 && (int)r->n >= r->stop_after) ? 7 : 0;
}

static void list(struct store *s, const char *auid, const char *tree, const char *xui,
                 const char *prefix, struct list_result *r)
{
    memset(r, 0, sizeof *r);
    struct store_txn *t;
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(s, false, &t), STORE_OK);
    CU_ASSERT_EQUAL(store_doc_list(t, auid, tree, xui, prefix, list_collect, r), STORE_OK);
    store_txn_abort(t);
}

static void test_list_prefix(void)
{
    char dir[64];
    make_tmpdir(dir);
    struct store *s = open_store(dir, NULL);
    static const char *const docs[][4] = {
        {"a", "users", "alice", "index"},  {"a", "users", "alice", "dir/x"},
        {"a", "users", "alice", "dir/y"},  {"a", "users", "alice2", "index"},
        {"a", "users", "bob", "index"},    {"a", "global", "", "index"},
        {"ab", "users", "alice", "index"}, {"b", "users", "alice", "other"},
        {"b", "global", "", "index"},      {"c", "users", "bob", "index"},
    };
    struct store_txn *t;
    char etag[STORE_ETAG_MAX];
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(s, true, &t), STORE_OK);
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        struct doc_key k = key_of(docs[i][0], docs[i][1], docs[i][2], docs[i][3]);
        CU_ASSERT_EQUAL(store_doc_put(t, &k, docs[i][3], strlen(docs[i][3]), etag), STORE_OK);
    }
    CU_ASSERT_EQUAL_FATAL(store_txn_commit(t), STORE_OK);

    struct list_result r;
    list(s, "a", "users", "alice", "", &r);
    CU_ASSERT_EQUAL_FATAL(r.n, 3);
    CU_ASSERT_STRING_EQUAL(r.keys[0], "a|users|alice|dir/x");
    CU_ASSERT_STRING_EQUAL(r.keys[1], "a|users|alice|dir/y");
    CU_ASSERT_STRING_EQUAL(r.keys[2], "a|users|alice|index");
    CU_ASSERT_EQUAL(r.lens[2], 5);

    list(s, "a", "users", "alice", "dir/", &r);
    CU_ASSERT_EQUAL(r.n, 2);
    list(s, "a", "users", "alice", "nothing", &r);
    CU_ASSERT_EQUAL(r.n, 0);
    list(s, "a", "users", "al", "", &r); /* an XUI is not a prefix of another */
    CU_ASSERT_EQUAL(r.n, 0);
    list(s, "a", "global", "", "", &r);
    CU_ASSERT_EQUAL_FATAL(r.n, 1);
    CU_ASSERT_STRING_EQUAL(r.keys[0], "a|global||index");

    /* Every AUID of one user, in key order; "ab" and "alice2" must not leak in or out. */
    list(s, NULL, "users", "alice", "", &r);
    CU_ASSERT_EQUAL_FATAL(r.n, 5);
    CU_ASSERT_STRING_EQUAL(r.keys[0], "a|users|alice|dir/x");
    CU_ASSERT_STRING_EQUAL(r.keys[3], "ab|users|alice|index");
    CU_ASSERT_STRING_EQUAL(r.keys[4], "b|users|alice|other");
    list(s, NULL, "users", "alice", "o", &r);
    CU_ASSERT_EQUAL_FATAL(r.n, 1);
    CU_ASSERT_STRING_EQUAL(r.keys[0], "b|users|alice|other");
    list(s, NULL, "global", "", "", &r);
    CU_ASSERT_EQUAL(r.n, 2);

    /* A callback's non-zero return stops the walk and is reported as STORE_OK. */
    memset(&r, 0, sizeof r);
    r.stop_after = 2;
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(s, false, &t), STORE_OK);
    CU_ASSERT_EQUAL(store_doc_list(t, NULL, "users", "alice", "", list_collect, &r), STORE_OK);
    CU_ASSERT_EQUAL(r.n, 2);

    uint64_t count = 99;
    CU_ASSERT_EQUAL(store_doc_count_user(t, "alice", &count), STORE_OK);
    CU_ASSERT_EQUAL(count, 5);
    CU_ASSERT_EQUAL(store_doc_count_user(t, "bob", &count), STORE_OK);
    CU_ASSERT_EQUAL(count, 2);
    CU_ASSERT_EQUAL(store_doc_count_user(t, "carol", &count), STORE_OK);
    CU_ASSERT_EQUAL(count, 0);
    store_txn_abort(t);

    store_close(s);
    rm_rf(dir);
}

struct change_seen {
    size_t n;
    uint64_t seqs[32];
    int stop_after;
    bool detail_ok;
};

static int change_collect(void *cls, const struct store_change *c)
{
    struct change_seen *r = cls;
    if (r->n < 32)
        r->seqs[r->n] = c->seq;
    r->n++;
    return (r->stop_after > 0 && (int)r->n >= r->stop_after) ? 1 : 0;
}

static void read_changes(struct store *s, uint64_t after, struct change_seen *r)
{
    struct store_txn *t;
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(s, false, &t), STORE_OK);
    CU_ASSERT_EQUAL(store_change_read(t, after, change_collect, r), STORE_OK);
    store_txn_abort(t);
}

static uint64_t last_change(struct store *s)
{
    struct store_txn *t;
    uint64_t last = 12345;
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(s, false, &t), STORE_OK);
    CU_ASSERT_EQUAL(store_change_last(t, &last), STORE_OK);
    store_txn_abort(t);
    return last;
}

static const char test_detail[] = {'<', 'a', 0, 'b', '>', 0, 'z'};

static int change_check_fields(void *cls, const struct store_change *c)
{
    struct change_seen *r = cls;
    if (c->seq == 1) {
        r->detail_ok = c->kind == STORE_CHANGE_PUT && strcmp(c->key.auid, "resource-lists") == 0 &&
                       strcmp(c->key.tree, "users") == 0 &&
                       strcmp(c->key.xui, "sip:alice@example.com") == 0 &&
                       strcmp(c->key.path, "index") == 0 && strcmp(c->prev_etag, "") == 0 &&
                       strcmp(c->new_etag, "1-abc") == 0 && c->detail_len == sizeof test_detail &&
                       memcmp(c->detail, test_detail, sizeof test_detail) == 0;
    } else if (c->seq == 2) {
        r->detail_ok = r->detail_ok && c->kind == STORE_CHANGE_DELETE &&
                       strcmp(c->prev_etag, "1-abc") == 0 && strcmp(c->new_etag, "") == 0 &&
                       c->detail_len == 0 && c->detail != NULL;
    }
    return change_collect(cls, c);
}

static enum store_rc append_change(struct store *s, struct store_change *c)
{
    struct store_txn *t;
    enum store_rc rc = store_txn_begin(s, true, &t);
    if (rc != STORE_OK)
        return rc;
    rc = store_change_append(t, c);
    if (rc != STORE_OK) {
        store_txn_abort(t);
        return rc;
    }
    return store_txn_commit(t);
}

static void test_change_log(void)
{
    char dir[64];
    make_tmpdir(dir);
    struct store *s = open_store(dir, NULL);
    CU_ASSERT_EQUAL(last_change(s), 0);
    struct change_seen r = {0};
    read_changes(s, 0, &r);
    CU_ASSERT_EQUAL(r.n, 0);

    struct store_change c = {
        .kind = STORE_CHANGE_PUT,
        .key = key_of("resource-lists", "users", "sip:alice@example.com", "index"),
        .prev_etag = "",
        .new_etag = "1-abc",
        .detail = test_detail,
        .detail_len = sizeof test_detail,
    };
    CU_ASSERT_EQUAL(append_change(s, &c), STORE_OK);
    CU_ASSERT_EQUAL(c.seq, 1);
    struct store_change d = {
        .kind = STORE_CHANGE_DELETE,
        .key = c.key,
        .prev_etag = "1-abc",
        .new_etag = "",
    };
    CU_ASSERT_EQUAL(append_change(s, &d), STORE_OK);
    CU_ASSERT_EQUAL(d.seq, 2);
    /* Several records in one transaction get consecutive numbers. */
    struct store_txn *t;
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(s, true, &t), STORE_OK);
    CU_ASSERT_EQUAL(store_change_append(t, &c), STORE_OK);
    CU_ASSERT_EQUAL(c.seq, 3);
    CU_ASSERT_EQUAL(store_change_append(t, &c), STORE_OK);
    CU_ASSERT_EQUAL(c.seq, 4);
    CU_ASSERT_EQUAL(store_txn_commit(t), STORE_OK);
    /* An aborted append does not consume the number for good... */
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(s, true, &t), STORE_OK);
    CU_ASSERT_EQUAL(store_change_append(t, &c), STORE_OK);
    store_txn_abort(t);
    CU_ASSERT_EQUAL(last_change(s), 4);
    /* ...and a read transaction cannot append. */
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(s, false, &t), STORE_OK);
    CU_ASSERT_EQUAL(store_change_append(t, &c), STORE_INVALID);
    store_txn_abort(t);

    memset(&r, 0, sizeof r);
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(s, false, &t), STORE_OK);
    CU_ASSERT_EQUAL(store_change_read(t, 0, change_check_fields, &r), STORE_OK);
    store_txn_abort(t);
    CU_ASSERT_EQUAL(r.n, 4);
    CU_ASSERT_TRUE(r.detail_ok);

    memset(&r, 0, sizeof r);
    read_changes(s, 2, &r);
    CU_ASSERT_EQUAL_FATAL(r.n, 2);
    CU_ASSERT_EQUAL(r.seqs[0], 3);
    CU_ASSERT_EQUAL(r.seqs[1], 4);
    memset(&r, 0, sizeof r);
    read_changes(s, 4, &r);
    CU_ASSERT_EQUAL(r.n, 0);
    memset(&r, 0, sizeof r);
    r.stop_after = 1;
    read_changes(s, 0, &r);
    CU_ASSERT_EQUAL(r.n, 1);
    CU_ASSERT_EQUAL(last_change(s), 4);

    store_close(s);
    rm_rf(dir);
}

static void test_change_prune(void)
{
    char dir[64];
    make_tmpdir(dir);
    struct store_options opts = {.change_retention = 5};
    struct store *s = open_store(dir, &opts);
    struct store_change c = {
        .kind = STORE_CHANGE_PUT,
        .key = key_of("rls-services", "global", "", "index"),
        .prev_etag = "",
        .new_etag = "x",
    };
    struct change_seen r = {0};
    for (uint64_t i = 1; i <= 12; i++) {
        CU_ASSERT_EQUAL(append_change(s, &c), STORE_OK);
        CU_ASSERT_EQUAL(c.seq, i);
        /* Never more than the retention, from the first append past it on. */
        memset(&r, 0, sizeof r);
        read_changes(s, 0, &r);
        CU_ASSERT_EQUAL(r.n, i < 5 ? i : 5);
    }
    memset(&r, 0, sizeof r);
    read_changes(s, 0, &r);
    CU_ASSERT_EQUAL_FATAL(r.n, 5);
    for (size_t i = 0; i < 5; i++)
        CU_ASSERT_EQUAL(r.seqs[i], 8 + i);
    CU_ASSERT_EQUAL(last_change(s), 12);
    store_close(s);

    /* Sequence numbers continue after a reopen and are never reused after pruning, also with a
     * larger retention. */
    s = open_store(dir, NULL);
    CU_ASSERT_EQUAL(last_change(s), 12);
    CU_ASSERT_EQUAL(append_change(s, &c), STORE_OK);
    CU_ASSERT_EQUAL(c.seq, 13);
    memset(&r, 0, sizeof r);
    read_changes(s, 0, &r);
    CU_ASSERT_EQUAL_FATAL(r.n, 6);
    CU_ASSERT_EQUAL(r.seqs[0], 8);
    CU_ASSERT_EQUAL(r.seqs[5], 13);
    store_close(s);

    /* A retention of one keeps exactly the newest record. */
    opts.change_retention = 1;
    s = open_store(dir, &opts);
    CU_ASSERT_EQUAL(append_change(s, &c), STORE_OK);
    CU_ASSERT_EQUAL(c.seq, 14);
    memset(&r, 0, sizeof r);
    read_changes(s, 0, &r);
    CU_ASSERT_EQUAL_FATAL(r.n, 1);
    CU_ASSERT_EQUAL(r.seqs[0], 14);
    store_close(s);
    rm_rf(dir);
}

/* Size of a change record as store.c lays it out (version 2): a 10-byte header, then seven
 * fields of u32 length + bytes + NUL. */
static uint64_t change_size(const struct store_change *c)
{
    const char *f[] = {c->key.auid, c->key.tree,  c->key.xui,
                       c->key.path, c->prev_etag, c->new_etag};
    uint64_t n = 10 + 7 * 5 + c->detail_len;
    for (size_t i = 0; i < 6; i++)
        n += strlen(f[i]);
    return n;
}

static struct store_usage usage_of(struct store *s)
{
    struct store_usage u;
    memset(&u, 0xff, sizeof u);
    struct store_txn *t;
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(s, false, &t), STORE_OK);
    CU_ASSERT_EQUAL(store_usage_get(t, &u), STORE_OK);
    store_txn_abort(t);
    return u;
}

/* The byte bound: the oldest records go before an append until the log with the new record fits;
 * the running total stays exact; a record larger than the bound is kept alone. */
static void test_change_prune_bytes(void)
{
    char dir[64];
    make_tmpdir(dir);
    struct store_options opts = {.change_max_bytes = 1000};
    struct store *s = open_store(dir, &opts);
    static char detail[300];
    memset(detail, 'd', sizeof detail);
    struct store_change c = {
        .kind = STORE_CHANGE_PUT,
        .key = key_of("resource-lists", "users", "sip:alice@example.com", "index"),
        .prev_etag = "1-a",
        .new_etag = "2-a",
        .detail = detail,
        .detail_len = sizeof detail,
    };
    uint64_t one = change_size(&c);
    uint64_t fit = 1000 / one; /* records that fit under the bound */
    CU_ASSERT_FATAL(fit >= 2);
    struct change_seen r;
    for (uint64_t i = 1; i <= 10; i++) {
        CU_ASSERT_EQUAL_FATAL(append_change(s, &c), STORE_OK);
        CU_ASSERT(c.time > 0);
        struct store_usage u = usage_of(s);
        uint64_t want = i < fit ? i : fit;
        CU_ASSERT_EQUAL(u.change_records, want);
        CU_ASSERT_EQUAL(u.change_bytes, want * one);
        CU_ASSERT(u.change_bytes <= 1000);
        memset(&r, 0, sizeof r);
        read_changes(s, 0, &r);
        CU_ASSERT_EQUAL_FATAL(r.n, want);
        CU_ASSERT_EQUAL(r.seqs[0], i - want + 1); /* the oldest ones went */
    }
    /* A record larger than the whole bound replaces everything and is kept on its own. */
    static char huge[2000];
    memset(huge, 'h', sizeof huge);
    c.detail = huge;
    c.detail_len = sizeof huge;
    CU_ASSERT_EQUAL(append_change(s, &c), STORE_OK);
    struct store_usage u = usage_of(s);
    CU_ASSERT_EQUAL(u.change_records, 1);
    CU_ASSERT_EQUAL(u.change_bytes, change_size(&c));
    /* The total survives a reopen (kept in meta, not recounted). */
    store_close(s);
    s = open_store(dir, &opts);
    u = usage_of(s);
    CU_ASSERT_EQUAL(u.change_records, 1);
    CU_ASSERT_EQUAL(u.change_bytes, change_size(&c));
    c.detail = detail;
    c.detail_len = sizeof detail;
    CU_ASSERT_EQUAL(append_change(s, &c), STORE_OK);
    u = usage_of(s);
    CU_ASSERT_EQUAL(u.change_records, 1);
    CU_ASSERT_EQUAL(u.change_bytes, one);
    CU_ASSERT_EQUAL(last_change(s), 12);
    store_close(s);
    rm_rf(dir);
}

/* The age bound: records older than change_max_age seconds go before the next append, and at
 * open (which keeps the newest, so a lagging reader still sees the gap in the sequence). */
static void test_change_prune_age(void)
{
    char dir[64];
    make_tmpdir(dir);
    struct store_options opts = {.change_max_age = 1};
    struct store *s = open_store(dir, &opts);
    struct store_change c = {
        .kind = STORE_CHANGE_DELETE,
        .key = key_of("resource-lists", "users", "sip:alice@example.com", "index"),
        .prev_etag = "1-a",
        .new_etag = "",
    };
    CU_ASSERT_EQUAL(append_change(s, &c), STORE_OK);
    CU_ASSERT_EQUAL(append_change(s, &c), STORE_OK);
    CU_ASSERT_EQUAL(usage_of(s).change_records, 2);
    struct timespec wait = {2, 200 * 1000 * 1000};
    nanosleep(&wait, NULL);
    CU_ASSERT_EQUAL(append_change(s, &c), STORE_OK);
    CU_ASSERT_EQUAL(c.seq, 3);
    struct change_seen r = {0};
    read_changes(s, 0, &r);
    CU_ASSERT_EQUAL_FATAL(r.n, 1);
    CU_ASSERT_EQUAL(r.seqs[0], 3);
    CU_ASSERT_EQUAL(append_change(s, &c), STORE_OK);
    CU_ASSERT_EQUAL(usage_of(s).change_records, 2);
    store_close(s);

    nanosleep(&wait, NULL);
    s = open_store(dir, &opts);
    memset(&r, 0, sizeof r);
    read_changes(s, 0, &r);
    CU_ASSERT_EQUAL_FATAL(r.n, 1);
    CU_ASSERT_EQUAL(r.seqs[0], 4);
    CU_ASSERT_EQUAL(usage_of(s).change_bytes, change_size(&c));
    CU_ASSERT_EQUAL(append_change(s, &c), STORE_OK);
    CU_ASSERT_EQUAL(c.seq, 5);
    store_close(s);

    /* Without an age bound nothing goes by age. */
    nanosleep(&wait, NULL);
    s = open_store(dir, NULL);
    CU_ASSERT_EQUAL(append_change(s, &c), STORE_OK);
    CU_ASSERT_EQUAL(usage_of(s).change_records, 2);
    store_close(s);
    rm_rf(dir);
}

/* Opens the environment with LMDB itself, to turn a store into what an older version wrote. */
static void raw_open(const char *dir, MDB_env **env, MDB_txn **txn)
{
    CU_ASSERT_EQUAL_FATAL(mdb_env_create(env), MDB_SUCCESS);
    CU_ASSERT_EQUAL_FATAL(mdb_env_set_maxdbs(*env, 8), MDB_SUCCESS);
    CU_ASSERT_EQUAL_FATAL(mdb_env_open(*env, dir, MDB_NOTLS, 0600), MDB_SUCCESS);
    CU_ASSERT_EQUAL_FATAL(mdb_txn_begin(*env, NULL, 0, txn), MDB_SUCCESS);
}

static void raw_del_meta(MDB_txn *txn, MDB_dbi meta, const char *name)
{
    MDB_val k = {strlen(name), (void *)name};
    int rc = mdb_del(txn, meta, &k, NULL);
    CU_ASSERT(rc == MDB_SUCCESS || rc == MDB_NOTFOUND);
}

/* Removes what this version adds to a store: the quota table's content, its ready mark and the
 * change-log size; and appends a version 1 change record (no time) as seq 100. */
static void make_old_store(const char *dir)
{
    MDB_env *env;
    MDB_txn *txn;
    raw_open(dir, &env, &txn);
    MDB_dbi meta, quota, changes;
    CU_ASSERT_EQUAL_FATAL(mdb_dbi_open(txn, "meta", 0, &meta), MDB_SUCCESS);
    CU_ASSERT_EQUAL_FATAL(mdb_dbi_open(txn, "quota", 0, &quota), MDB_SUCCESS);
    CU_ASSERT_EQUAL_FATAL(mdb_dbi_open(txn, "changes", 0, &changes), MDB_SUCCESS);
    CU_ASSERT_EQUAL(mdb_drop(txn, quota, 0), MDB_SUCCESS);
    raw_del_meta(txn, meta, "quota_ready");
    raw_del_meta(txn, meta, "change_bytes");
    /* version 1: u8 1, u8 kind (0 = put), seven fields "a","users","u","p","","9-x","" */
    unsigned char rec[64];
    size_t n = 0;
    rec[n++] = 1;
    rec[n++] = 0;
    const char *f[] = {"a", "users", "u", "p", "", "9-x", ""};
    for (size_t i = 0; i < 7; i++) {
        uint32_t len = (uint32_t)strlen(f[i]);
        rec[n++] = 0;
        rec[n++] = 0;
        rec[n++] = 0;
        rec[n++] = (unsigned char)len;
        memcpy(rec + n, f[i], len);
        n += len;
        rec[n++] = 0;
    }
    unsigned char kb[8] = {0, 0, 0, 0, 0, 0, 0, 100};
    MDB_val k = {sizeof kb, kb}, v = {n, rec};
    CU_ASSERT_EQUAL(mdb_put(txn, changes, &k, &v, 0), MDB_SUCCESS);
    unsigned char seq[8] = {0, 0, 0, 0, 0, 0, 0, 100};
    MDB_val sk = {strlen("change_seq"), (void *)"change_seq"}, sv = {8, seq};
    CU_ASSERT_EQUAL(mdb_put(txn, meta, &sk, &sv, 0), MDB_SUCCESS);
    CU_ASSERT_EQUAL(mdb_txn_commit(txn), MDB_SUCCESS);
    mdb_env_close(env);
}

static int change_v1_check(void *cls, const struct store_change *c)
{
    int *ok = cls;
    *ok = c->seq == 100 && c->time == 0 && c->kind == STORE_CHANGE_PUT &&
          strcmp(c->key.auid, "a") == 0 && strcmp(c->key.xui, "u") == 0 &&
          strcmp(c->new_etag, "9-x") == 0 && c->detail_len == 0;
    return 1;
}

static uint64_t user_bytes(struct store *s, const char *xui)
{
    struct store_txn *t;
    uint64_t n = 12345;
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(s, false, &t), STORE_OK);
    CU_ASSERT_EQUAL(store_user_bytes(t, xui, &n), STORE_OK);
    store_txn_abort(t);
    return n;
}

/* Per-user byte counts: exact across create, replace (larger, smaller), delete, every AUID of the
 * users tree (never the global tree); kept over a reopen; built from the documents for a store
 * written before the counts existed. */
static void test_user_bytes(void)
{
    char dir[64];
    make_tmpdir(dir);
    struct store *s = open_store(dir, NULL);
    char etag[STORE_ETAG_MAX];
    struct doc_key a1 = key_of("a", "users", "sip:alice@example.com", "index");
    struct doc_key a2 = key_of("b", "users", "sip:alice@example.com", "dir/other");
    struct doc_key b1 = key_of("a", "users", "sip:bob@example.com", "index");
    struct doc_key g = key_of("a", "global", "", "index");
    CU_ASSERT_EQUAL(user_bytes(s, "sip:alice@example.com"), 0);
    CU_ASSERT_EQUAL(put_doc(s, &a1, "0123456789", etag), STORE_OK);
    CU_ASSERT_EQUAL(put_doc(s, &a2, "abcde", etag), STORE_OK);
    CU_ASSERT_EQUAL(put_doc(s, &b1, "xyz", etag), STORE_OK);
    CU_ASSERT_EQUAL(put_doc(s, &g, "global document", etag), STORE_OK);
    CU_ASSERT_EQUAL(user_bytes(s, "sip:alice@example.com"), 15);
    CU_ASSERT_EQUAL(user_bytes(s, "sip:bob@example.com"), 3);
    CU_ASSERT_EQUAL(user_bytes(s, ""), 0);
    CU_ASSERT_EQUAL(put_doc(s, &a1, "0123456789012345", etag), STORE_OK); /* larger */
    CU_ASSERT_EQUAL(user_bytes(s, "sip:alice@example.com"), 21);
    CU_ASSERT_EQUAL(put_doc(s, &a1, "01", etag), STORE_OK); /* smaller */
    CU_ASSERT_EQUAL(user_bytes(s, "sip:alice@example.com"), 7);
    CU_ASSERT_EQUAL(del_doc(s, &a2), STORE_OK);
    CU_ASSERT_EQUAL(user_bytes(s, "sip:alice@example.com"), 2);
    CU_ASSERT_EQUAL(del_doc(s, &a2), STORE_NOTFOUND);
    CU_ASSERT_EQUAL(user_bytes(s, "sip:alice@example.com"), 2);
    /* An aborted write changes nothing. */
    struct store_txn *t;
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(s, true, &t), STORE_OK);
    CU_ASSERT_EQUAL(store_doc_put(t, &a2, "aaaaaaaaaa", 10, etag), STORE_OK);
    uint64_t in_txn = 0;
    CU_ASSERT_EQUAL(store_user_bytes(t, "sip:alice@example.com", &in_txn), STORE_OK);
    CU_ASSERT_EQUAL(in_txn, 12);
    store_txn_abort(t);
    CU_ASSERT_EQUAL(user_bytes(s, "sip:alice@example.com"), 2);
    store_close(s);

    s = open_store(dir, NULL);
    CU_ASSERT_EQUAL(user_bytes(s, "sip:alice@example.com"), 2);
    CU_ASSERT_EQUAL(user_bytes(s, "sip:bob@example.com"), 3);
    CU_ASSERT_EQUAL(put_doc(s, &a2, "abcde", etag), STORE_OK);
    store_close(s);

    if (g_pg[0] != '\0') { /* the rest makes stores of older LMDB versions */
        rm_rf(dir);
        return;
    }
    /* A store of an older version: no counts, no change-log size, a version 1 change record.
     * Opening builds the table. */
    make_old_store(dir);
    s = open_store(dir, NULL);
    CU_ASSERT_EQUAL(user_bytes(s, "sip:alice@example.com"), 7);
    CU_ASSERT_EQUAL(user_bytes(s, "sip:bob@example.com"), 3);
    int ok = 0;
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(s, false, &t), STORE_OK);
    CU_ASSERT_EQUAL(store_change_read(t, 99, change_v1_check, &ok), STORE_OK);
    store_txn_abort(t);
    CU_ASSERT_TRUE(ok);
    CU_ASSERT_EQUAL(put_doc(s, &b1, "", etag), STORE_OK);
    CU_ASSERT_EQUAL(user_bytes(s, "sip:bob@example.com"), 0);
    CU_ASSERT_EQUAL(user_bytes(s, "sip:alice@example.com"), 7);
    store_close(s);

    /* The table may also be missing when the first write comes (opened by a process that could
     * not write at open): the write builds it before counting itself. */
    make_old_store(dir);
    MDB_env *env;
    MDB_txn *txn;
    s = open_store(dir, NULL);
    raw_open(dir, &env, &txn);
    MDB_dbi meta, quota;
    CU_ASSERT_EQUAL_FATAL(mdb_dbi_open(txn, "meta", 0, &meta), MDB_SUCCESS);
    CU_ASSERT_EQUAL_FATAL(mdb_dbi_open(txn, "quota", 0, &quota), MDB_SUCCESS);
    CU_ASSERT_EQUAL(mdb_drop(txn, quota, 0), MDB_SUCCESS);
    raw_del_meta(txn, meta, "quota_ready");
    CU_ASSERT_EQUAL(mdb_txn_commit(txn), MDB_SUCCESS);
    mdb_env_close(env);
    /* Reads count by a scan meanwhile. */
    CU_ASSERT_EQUAL(user_bytes(s, "sip:alice@example.com"), 7);
    CU_ASSERT_EQUAL(user_bytes(s, "sip:bob@example.com"), 0);
    CU_ASSERT_EQUAL(put_doc(s, &a1, "0123", etag), STORE_OK);
    CU_ASSERT_EQUAL(user_bytes(s, "sip:alice@example.com"), 9);
    CU_ASSERT_EQUAL(user_bytes(s, "sip:bob@example.com"), 0);
    store_close(s);
    rm_rf(dir);
}

/* A version 1 record has no time: with an age bound it is pruned at open like an old one. */
static void test_change_v1_age(void)
{
    char dir[64];
    make_tmpdir(dir);
    struct store *s = open_store(dir, NULL);
    store_close(s);
    make_old_store(dir);
    struct store_options opts = {.change_max_age = 3600};
    s = open_store(dir, &opts);
    CU_ASSERT_EQUAL(usage_of(s).change_records, 1); /* the newest is kept at open */
    struct store_change c = {
        .kind = STORE_CHANGE_DELETE,
        .key = key_of("a", "users", "u", "p"),
        .prev_etag = "9-x",
        .new_etag = "",
    };
    CU_ASSERT_EQUAL(append_change(s, &c), STORE_OK);
    CU_ASSERT_EQUAL(c.seq, 101);
    struct change_seen r = {0};
    read_changes(s, 0, &r);
    CU_ASSERT_EQUAL_FATAL(r.n, 1);
    CU_ASSERT_EQUAL(r.seqs[0], 101);
    store_close(s);
    rm_rf(dir);
}

/* The high-water mark: store_space_check() refuses what would go above it, the store stays
 * readable and deletable, and deleting brings writes back. */
static void test_high_water(void)
{
    char dir[64];
    make_tmpdir(dir);
    struct store_options opts = {.map_size = 1u << 20, .high_water = 50};
    struct store *s = open_store(dir, &opts);
    struct store_usage u = usage_of(s);
    CU_ASSERT_EQUAL(u.map_bytes, 1u << 20);
    CU_ASSERT_EQUAL(u.limit_bytes, (1u << 20) / 2);
    CU_ASSERT(u.used_bytes > 0 && u.used_bytes < u.limit_bytes);
    size_t len = 64u << 10;
    char *body = malloc(len + 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(body);
    memset(body, 'x', len);
    body[len] = '\0';
    char etag[STORE_ETAG_MAX];
    char path[16];
    int stored = 0;
    for (int i = 0; i < 32; i++) {
        snprintf(path, sizeof path, "d%d", i);
        struct doc_key k = key_of("a", "users", "u", path);
        struct store_txn *t;
        CU_ASSERT_EQUAL_FATAL(store_txn_begin(s, true, &t), STORE_OK);
        enum store_rc rc = store_space_check(t, len);
        if (rc == STORE_OK)
            rc = store_doc_put(t, &k, body, len, etag);
        if (rc != STORE_OK) {
            store_txn_abort(t);
            CU_ASSERT_EQUAL(rc, STORE_FULL);
            break;
        }
        CU_ASSERT_EQUAL_FATAL(store_txn_commit(t), STORE_OK);
        stored++;
    }
    CU_ASSERT(stored >= 4 && stored < 8);
    u = usage_of(s);
    CU_ASSERT(u.used_bytes <= u.limit_bytes);
    CU_ASSERT(u.used_bytes + len > u.limit_bytes);
    /* Deletions need no check and free pages for writes. */
    struct doc_key k0 = key_of("a", "users", "u", "d0");
    struct doc_key k1 = key_of("a", "users", "u", "d1");
    CU_ASSERT_EQUAL(del_doc(s, &k0), STORE_OK);
    CU_ASSERT_EQUAL(del_doc(s, &k1), STORE_OK);
    CU_ASSERT(usage_of(s).used_bytes < u.used_bytes);
    struct store_txn *t;
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(s, true, &t), STORE_OK);
    CU_ASSERT_EQUAL(store_space_check(t, len), STORE_OK);
    CU_ASSERT_EQUAL(store_doc_put(t, &k0, body, len, etag), STORE_OK);
    CU_ASSERT_EQUAL(store_txn_commit(t), STORE_OK);
    free(body);
    store_close(s);

    /* A store filled to the end of its map without the check (as an older version could) gets
     * a larger map at open, so that what is in use sits at the mark: writes are refused, DELETE
     * works. */
    opts.high_water = 99;
    s = open_store(dir, &opts);
    for (int i = 100; i < 200; i++) {
        snprintf(path, sizeof path, "d%d", i);
        struct doc_key k = key_of("a", "users", "u", path);
        char *b = malloc(len / 4 + 1);
        CU_ASSERT_PTR_NOT_NULL_FATAL(b);
        memset(b, 'y', len / 4);
        b[len / 4] = '\0';
        enum store_rc rc = put_doc(s, &k, b, etag);
        free(b);
        if (rc != STORE_OK) {
            CU_ASSERT_EQUAL(rc, STORE_FULL);
            break;
        }
    }
    u = usage_of(s);
    CU_ASSERT(u.used_bytes > (1u << 20) * 9 / 10);
    store_close(s);
    opts.high_water = 50;
    s = open_store(dir, &opts);
    u = usage_of(s);
    CU_ASSERT(u.map_bytes > 1u << 20);
    CU_ASSERT(u.used_bytes <= u.limit_bytes + (1u << 20) / 2);
    CU_ASSERT(u.used_bytes + len > u.limit_bytes);
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(s, true, &t), STORE_OK);
    CU_ASSERT_EQUAL(store_space_check(t, len), STORE_FULL);
    store_txn_abort(t);
    CU_ASSERT_EQUAL(del_doc(s, &k0), STORE_OK);
    store_close(s);

    /* More than 99 percent is refused. */
    struct store *bad = NULL;
    opts.high_water = 100;
    CU_ASSERT_EQUAL(store_open(dir, &opts, &bad), STORE_INVALID);
    CU_ASSERT_PTR_NULL(bad);
    rm_rf(dir);
}

struct kv_seen {
    size_t n;
    char keys[8][32];
    char vals[8][32];
};

static int kv_collect(void *cls, const void *key, size_t klen, const void *val, size_t vlen)
{
    struct kv_seen *r = cls;
    if (r->n < 8 && klen < 32 && vlen < 32) {
        memcpy(r->keys[r->n], key, klen);
        r->keys[r->n][klen] = '\0';
        memcpy(r->vals[r->n], val, vlen);
        r->vals[r->n][vlen] = '\0';
    }
    r->n++;
    return 0;
}

static void test_kv_tables(void)
{
    char dir[64];
    make_tmpdir(dir);
    static const char *const tables[] = {"users", "subs", NULL};
    struct store_options opts = {.tables = tables};
    struct store *s = open_store(dir, &opts);
    struct store_txn *t;
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(s, true, &t), STORE_OK);
    CU_ASSERT_EQUAL(store_kv_put(t, "users", "sip:alice@example.com", 21, "ha1-a", 5), STORE_OK);
    CU_ASSERT_EQUAL(store_kv_put(t, "users", "sip:bob@example.com", 19, "ha1-b", 5), STORE_OK);
    CU_ASSERT_EQUAL(store_kv_put(t, "users", "tel:+1", 6, "ha1-t", 5), STORE_OK);
    CU_ASSERT_EQUAL(store_kv_put(t, "subs", "sip:alice@example.com", 21, "sub", 3), STORE_OK);
    CU_ASSERT_EQUAL(store_kv_put(t, "users", "empty", 5, NULL, 0), STORE_OK);
    CU_ASSERT_EQUAL(store_kv_put(t, "nosuch", "k", 1, "v", 1), STORE_INVALID);
    CU_ASSERT_EQUAL(store_kv_put(t, "docs", "k", 1, "v", 1), STORE_INVALID);
    CU_ASSERT_EQUAL(store_kv_put(t, "users", "", 0, "v", 1), STORE_INVALID);
    char big[600];
    memset(big, 'k', sizeof big);
    CU_ASSERT_EQUAL(store_kv_put(t, "users", big, sizeof big, "v", 1), STORE_INVALID);
    CU_ASSERT_EQUAL_FATAL(store_txn_commit(t), STORE_OK);

    CU_ASSERT_EQUAL_FATAL(store_txn_begin(s, false, &t), STORE_OK);
    void *val;
    size_t vlen;
    CU_ASSERT_EQUAL(store_kv_get(t, "users", "sip:bob@example.com", 19, &val, &vlen), STORE_OK);
    CU_ASSERT_EQUAL(vlen, 5);
    CU_ASSERT_STRING_EQUAL(val, "ha1-b"); /* NUL after vlen bytes */
    free(val);
    CU_ASSERT_EQUAL(store_kv_get(t, "users", "empty", 5, &val, &vlen), STORE_OK);
    CU_ASSERT_EQUAL(vlen, 0);
    CU_ASSERT_STRING_EQUAL(val, "");
    free(val);
    CU_ASSERT_EQUAL(store_kv_get(t, "subs", "sip:bob@example.com", 19, &val, &vlen),
                    STORE_NOTFOUND);
    CU_ASSERT_PTR_NULL(val);
    CU_ASSERT_EQUAL(store_kv_get(t, "nosuch", "k", 1, &val, &vlen), STORE_INVALID);
    CU_ASSERT_EQUAL(store_kv_put(t, "users", "k", 1, "v", 1), STORE_INVALID);

    struct kv_seen r = {0};
    CU_ASSERT_EQUAL(store_kv_scan(t, "users", "sip:", 4, kv_collect, &r), STORE_OK);
    CU_ASSERT_EQUAL_FATAL(r.n, 2);
    CU_ASSERT_STRING_EQUAL(r.keys[0], "sip:alice@example.com");
    CU_ASSERT_STRING_EQUAL(r.vals[0], "ha1-a");
    CU_ASSERT_STRING_EQUAL(r.keys[1], "sip:bob@example.com");
    memset(&r, 0, sizeof r);
    CU_ASSERT_EQUAL(store_kv_scan(t, "users", NULL, 0, kv_collect, &r), STORE_OK);
    CU_ASSERT_EQUAL(r.n, 4);
    memset(&r, 0, sizeof r);
    CU_ASSERT_EQUAL(store_kv_scan(t, "subs", "zzz", 3, kv_collect, &r), STORE_OK);
    CU_ASSERT_EQUAL(r.n, 0);
    CU_ASSERT_EQUAL(store_kv_scan(t, "nosuch", NULL, 0, kv_collect, &r), STORE_INVALID);
    store_txn_abort(t);

    CU_ASSERT_EQUAL_FATAL(store_txn_begin(s, true, &t), STORE_OK);
    CU_ASSERT_EQUAL(store_kv_del(t, "users", "tel:+1", 6), STORE_OK);
    CU_ASSERT_EQUAL(store_kv_del(t, "users", "tel:+1", 6), STORE_NOTFOUND);
    CU_ASSERT_EQUAL_FATAL(store_txn_commit(t), STORE_OK);
    store_close(s);

    /* Tables persist; a store opened without them cannot reach them. */
    s = open_store(dir, NULL);
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(s, false, &t), STORE_OK);
    CU_ASSERT_EQUAL(store_kv_get(t, "users", "tel:+1", 6, &val, &vlen), STORE_INVALID);
    store_txn_abort(t);
    store_close(s);
    s = open_store(dir, &opts);
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(s, false, &t), STORE_OK);
    CU_ASSERT_EQUAL(store_kv_get(t, "users", "tel:+1", 6, &val, &vlen), STORE_NOTFOUND);
    CU_ASSERT_EQUAL(store_kv_get(t, "users", "sip:alice@example.com", 21, &val, &vlen), STORE_OK);
    free(val);
    store_txn_abort(t);
    store_close(s);

    /* Table names that clash with the built-in ones or repeat are refused. */
    static const char *const clash[] = {"meta", NULL};
    static const char *const twice[] = {"a", "a", NULL};
    struct store *bad = NULL;
    opts.tables = clash;
    CU_ASSERT_EQUAL(test_store_open(dir, &opts, &bad), STORE_INVALID);
    CU_ASSERT_PTR_NULL(bad);
    opts.tables = twice;
    CU_ASSERT_EQUAL(test_store_open(dir, &opts, &bad), STORE_INVALID);
    CU_ASSERT_PTR_NULL(bad);
    rm_rf(dir);
}

static void test_two_environments(void)
{
    char dir1[64], dir2[64];
    make_tmpdir(dir1);
    make_tmpdir(dir2);
    struct store *s1 = open_store(dir1, NULL);
    struct store *s2 = open_store(dir2, NULL);
    const char *id1 = store_instance_id(s1), *id2 = store_instance_id(s2);
    CU_ASSERT_EQUAL(strlen(id1), 16);
    CU_ASSERT_EQUAL(strspn(id1, "0123456789abcdef"), 16);
    CU_ASSERT_STRING_NOT_EQUAL(id1, id2);

    /* The first document of each environment still gets different tags. */
    struct doc_key k = key_of("pres-rules", "users", "sip:alice@example.com", "index");
    char e1[STORE_ETAG_MAX], e2[STORE_ETAG_MAX];
    CU_ASSERT_EQUAL(put_doc(s1, &k, "<a/>", e1), STORE_OK);
    CU_ASSERT_EQUAL(put_doc(s2, &k, "<a/>", e2), STORE_OK);
    CU_ASSERT_STRING_NOT_EQUAL(e1, e2);
    store_close(s1);
    store_close(s2);
    rm_rf(dir1);
    rm_rf(dir2);
}

static int charge_collect(void *cls, uint64_t seq, const void *rec, size_t len)
{
    char *out = cls;
    char line[64];
    snprintf(line, sizeof line, "%llu=%.*s;", (unsigned long long)seq, (int)len, (const char *)rec);
    strcat(out, line);
    return 0;
}

static int charge_queue_collect(void *cls, const char *queue, uint64_t count)
{
    char *got = cls;
    size_t n = strlen(got);
    snprintf(got + n, 256 - n, "%s=%" PRIu64 ";", queue, count);
    return 0;
}

/* The charging queue: numbers never reused across queues and restarts, per-queue order and
 * counts, the bound, and a record queued with its change-log record in one transaction. */
static void test_charge_queue(void)
{
    char dir[64];
    make_tmpdir(dir);
    static const char *const tables[] = {STORE_CHARGE_TABLE, NULL};
    struct store_options opts = {.tables = tables};
    struct store *s = open_store(dir, &opts);
    struct store_txn *t;
    uint64_t seq = 0, n = 0;
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(s, true, &t), STORE_OK);
    CU_ASSERT_EQUAL(store_charge_append(t, "a", "one", 3, 2, &seq), STORE_OK);
    CU_ASSERT_EQUAL(seq, 1);
    CU_ASSERT_EQUAL(store_charge_append(t, "ab", "x", 1, 2, &seq), STORE_OK);
    CU_ASSERT_EQUAL(seq, 2);
    CU_ASSERT_EQUAL(store_charge_append(t, "a", "two", 3, 2, &seq), STORE_OK);
    CU_ASSERT_EQUAL(seq, 3);
    CU_ASSERT_EQUAL(store_charge_append(t, "a", "three", 5, 2, &seq), STORE_FULL);
    CU_ASSERT_EQUAL(store_charge_append(t, "", "x", 1, 0, &seq), STORE_INVALID);
    CU_ASSERT_EQUAL_FATAL(store_txn_commit(t), STORE_OK);

    CU_ASSERT_EQUAL_FATAL(store_txn_begin(s, false, &t), STORE_OK);
    char got[256] = "";
    CU_ASSERT_EQUAL(store_charge_read(t, "a", 10, charge_collect, got), STORE_OK);
    CU_ASSERT_STRING_EQUAL(got, "1=one;3=two;");
    got[0] = '\0';
    CU_ASSERT_EQUAL(store_charge_read(t, "a", 1, charge_collect, got), STORE_OK);
    CU_ASSERT_STRING_EQUAL(got, "1=one;");
    CU_ASSERT_EQUAL(store_charge_count(t, "a", &n), STORE_OK);
    CU_ASSERT_EQUAL(n, 2);
    CU_ASSERT_EQUAL(store_charge_count(t, "ab", &n), STORE_OK);
    CU_ASSERT_EQUAL(n, 1);
    got[0] = '\0';
    CU_ASSERT_EQUAL(store_charge_queues(t, charge_queue_collect, got), STORE_OK);
    CU_ASSERT_STRING_EQUAL(got, "a=2;ab=1;");
    store_txn_abort(t);

    CU_ASSERT_EQUAL_FATAL(store_txn_begin(s, true, &t), STORE_OK);
    CU_ASSERT_EQUAL(store_charge_del(t, "a", 1), STORE_OK);
    CU_ASSERT_EQUAL(store_charge_del(t, "a", 1), STORE_NOTFOUND);
    CU_ASSERT_EQUAL_FATAL(store_txn_commit(t), STORE_OK);
    store_close(s);

    /* After a restart the numbers go on; a change with a charging record queues it. */
    s = open_store(dir, &opts);
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(s, true, &t), STORE_OK);
    struct doc_key k = key_of("resource-lists", "users", "sip:a@example.com", "index");
    struct store_change c = {.kind = STORE_CHANGE_PUT,
                             .key = k,
                             .prev_etag = "",
                             .new_etag = "e1",
                             .detail = "",
                             .charge_queue = "a",
                             .charge = "four",
                             .charge_len = 4,
                             .charge_max = 3};
    CU_ASSERT_EQUAL(store_change_append(t, &c), STORE_OK);
    CU_ASSERT_EQUAL(c.charge_seq, 4);
    CU_ASSERT_FALSE(c.charge_full);
    c.charge = "five";
    CU_ASSERT_EQUAL(store_change_append(t, &c), STORE_OK);
    CU_ASSERT_EQUAL(c.charge_seq, 5);
    c.charge = "six";
    c.charge_len = 3;
    CU_ASSERT_EQUAL(store_change_append(t, &c), STORE_OK); /* full: the change still goes in */
    CU_ASSERT_EQUAL(c.charge_seq, 0);
    CU_ASSERT_TRUE(c.charge_full);
    CU_ASSERT_EQUAL_FATAL(store_txn_commit(t), STORE_OK);
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(s, false, &t), STORE_OK);
    got[0] = '\0';
    CU_ASSERT_EQUAL(store_charge_read(t, "a", 10, charge_collect, got), STORE_OK);
    CU_ASSERT_STRING_EQUAL(got, "3=two;4=four;5=five;");
    uint64_t last = 0;
    CU_ASSERT_EQUAL(store_change_last(t, &last), STORE_OK);
    CU_ASSERT_EQUAL(last, 3);
    store_txn_abort(t);
    /* An aborted transaction queues nothing. */
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(s, true, &t), STORE_OK);
    CU_ASSERT_EQUAL(store_charge_append(t, "b", "gone", 4, 0, &seq), STORE_OK);
    store_txn_abort(t);
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(s, false, &t), STORE_OK);
    CU_ASSERT_EQUAL(store_charge_count(t, "b", &n), STORE_OK);
    CU_ASSERT_EQUAL(n, 0);
    store_txn_abort(t);
    store_close(s);
}

static void test_reopen_persistence(void)
{
    char base[64], dir[128];
    make_tmpdir(base);
    /* Missing parents are created with mode 0700. */
    snprintf(dir, sizeof dir, "%s/var/presence", base);
    struct store *s = open_store(dir, NULL);
    struct stat st;
    if (g_pg[0] == '\0') {
        CU_ASSERT_EQUAL_FATAL(stat(dir, &st), 0);
        CU_ASSERT_EQUAL(st.st_mode & 0777, 0700);
    }
    char id[32];
    snprintf(id, sizeof id, "%s", store_instance_id(s));
    struct doc_key k = key_of("pidf-manipulation", "users", "sip:alice@example.com", "index");
    char etag[STORE_ETAG_MAX];
    CU_ASSERT_EQUAL(put_doc(s, &k, "<presence/>", etag), STORE_OK);
    store_close(s);

    s = open_store(dir, NULL);
    CU_ASSERT_STRING_EQUAL(store_instance_id(s), id);
    struct store_doc d;
    CU_ASSERT_EQUAL_FATAL(get_doc(s, &k, &d), STORE_OK);
    CU_ASSERT_STRING_EQUAL(d.data, "<presence/>");
    CU_ASSERT_STRING_EQUAL(d.etag, etag);
    store_doc_release(&d);
    store_close(s);

    if (g_pg[0] != '\0') { /* the rest is about directories */
        rm_rf(base);
        return;
    }
    /* A path that exists but is a file is refused. */
    char file[160];
    snprintf(file, sizeof file, "%s/plain", base);
    FILE *f = fopen(file, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fclose(f);
    struct store *bad = NULL;
    CU_ASSERT_NOT_EQUAL(store_open(file, NULL, &bad), STORE_OK);
    CU_ASSERT_PTR_NULL(bad);
    rm_rf(base);
}

static void test_map_full(void)
{
    char dir[64];
    make_tmpdir(dir);
    struct store_options opts = {.map_size = 1u << 20};
    struct store *s = open_store(dir, &opts);
    size_t big_len = 4u << 20;
    char *big = malloc(big_len + 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(big);
    memset(big, 'x', big_len);
    big[big_len] = '\0';
    struct doc_key k = key_of("resource-lists", "users", "sip:alice@example.com", "big");
    char etag[STORE_ETAG_MAX];
    CU_ASSERT_EQUAL(put_doc(s, &k, big, etag), STORE_FULL);
    free(big);
    /* The store remains usable for small writes. */
    struct doc_key small = key_of("resource-lists", "users", "sip:alice@example.com", "index");
    CU_ASSERT_EQUAL(put_doc(s, &small, "<ok/>", etag), STORE_OK);
    struct store_doc d;
    CU_ASSERT_EQUAL(get_doc(s, &k, &d), STORE_NOTFOUND);
    store_close(s);
    rm_rf(dir);
}

/* Readers must always see both documents of one commit or neither (snapshot isolation). */
#define CONC_READERS 4
#define CONC_WRITES 200

struct conc_ctx {
    struct store *s;
    atomic_bool done;
    atomic_int mismatches;
    atomic_int errors;
    atomic_long reads;
};

static void *conc_reader(void *arg)
{
    struct conc_ctx *ctx = arg;
    struct doc_key ka = key_of("a", "users", "u", "one");
    struct doc_key kb = key_of("a", "users", "u", "two");
    /* Bounded even if the writer stalls. */
    for (int i = 0; i < 1000000 && !atomic_load(&ctx->done); i++) {
        struct store_txn *t;
        if (store_txn_begin(ctx->s, false, &t) != STORE_OK) {
            atomic_fetch_add(&ctx->errors, 1);
            continue;
        }
        struct store_doc a, b;
        enum store_rc ra = store_doc_get(t, &ka, &a);
        enum store_rc rb = store_doc_get(t, &kb, &b);
        store_txn_abort(t);
        if (ra != rb)
            atomic_fetch_add(&ctx->mismatches, 1);
        else if (ra == STORE_OK && strcmp(a.data, b.data) != 0)
            atomic_fetch_add(&ctx->mismatches, 1);
        else if (ra != STORE_OK && ra != STORE_NOTFOUND)
            atomic_fetch_add(&ctx->errors, 1);
        if (ra == STORE_OK)
            store_doc_release(&a);
        if (rb == STORE_OK)
            store_doc_release(&b);
        atomic_fetch_add(&ctx->reads, 1);
    }
    return NULL;
}

static void test_concurrent_readers(void)
{
    char dir[64];
    make_tmpdir(dir);
    struct conc_ctx ctx = {.s = open_store(dir, NULL)};
    atomic_init(&ctx.done, false);
    atomic_init(&ctx.mismatches, 0);
    atomic_init(&ctx.errors, 0);
    atomic_init(&ctx.reads, 0);
    pthread_t th[CONC_READERS];
    for (int i = 0; i < CONC_READERS; i++)
        CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, conc_reader, &ctx), 0);

    struct doc_key ka = key_of("a", "users", "u", "one");
    struct doc_key kb = key_of("a", "users", "u", "two");
    int committed = 0;
    for (int i = 0; i < CONC_WRITES; i++) {
        char body[64];
        snprintf(body, sizeof body, "<v n=\"%d\"/>", i);
        struct store_txn *t;
        if (store_txn_begin(ctx.s, true, &t) != STORE_OK)
            break;
        char etag[STORE_ETAG_MAX];
        bool ok = store_doc_put(t, &ka, body, strlen(body), etag) == STORE_OK &&
                  store_doc_put(t, &kb, body, strlen(body), etag) == STORE_OK;
        if (!ok) {
            store_txn_abort(t);
            break;
        }
        if (store_txn_commit(t) != STORE_OK)
            break;
        committed++;
    }
    atomic_store(&ctx.done, true);
    for (int i = 0; i < CONC_READERS; i++)
        pthread_join(th[i], NULL);
    CU_ASSERT_EQUAL(committed, CONC_WRITES);
    CU_ASSERT_EQUAL(atomic_load(&ctx.mismatches), 0);
    CU_ASSERT_EQUAL(atomic_load(&ctx.errors), 0);
    CU_ASSERT(atomic_load(&ctx.reads) > 0);

    struct store_doc d;
    CU_ASSERT_EQUAL_FATAL(get_doc(ctx.s, &kb, &d), STORE_OK);
    char want[64];
    snprintf(want, sizeof want, "<v n=\"%d\"/>", CONC_WRITES - 1);
    CU_ASSERT_STRING_EQUAL(d.data, want);
    store_doc_release(&d);
    store_close(ctx.s);
    rm_rf(dir);
}

/* Group commit: concurrent writers, through store_write() and through store_txn_begin(), some of
 * them aborting. Each write that committed is there, each aborted one is not, and (LMDB) some
 * durable commits carried more than one write, none more than group_max_requests. */
#define GROUP_WRITERS 24
#define GROUP_ROUNDS 8

struct group_ctx {
    struct store *s;
    atomic_int failures;
};

struct group_job {
    struct group_ctx *ctx;
    int writer;
    int round;
};

static void group_key(int writer, int round, char key[32])
{
    snprintf(key, 32, "w%02d-r%d", writer, round);
}

/* Writers with writer % 4 == 3 abort; the others commit. */
static bool group_commits(int writer)
{
    return writer % 4 != 3;
}

static int group_fn(void *cls, struct store_txn *t)
{
    const struct group_job *j = cls;
    char key[32];
    group_key(j->writer, j->round, key);
    if (store_kv_put(t, "gc", key, strlen(key), key, strlen(key)) != STORE_OK)
        atomic_fetch_add(&j->ctx->failures, 1);
    struct timespec pause = {0, 300000}; /* others queue meanwhile */
    nanosleep(&pause, NULL);
    return group_commits(j->writer) ? 0 : 7;
}

struct group_thread {
    struct group_ctx *ctx;
    int writer;
};

static void *group_writer(void *arg)
{
    struct group_thread *w = arg;
    for (int r = 0; r < GROUP_ROUNDS; r++) {
        struct group_job j = {w->ctx, w->writer, r};
        if (w->writer % 2 == 0) { /* half as one call */
            int result = -1;
            enum store_rc rc = store_write(w->ctx->s, group_fn, &j, &result);
            if (rc != STORE_OK || result != (group_commits(w->writer) ? 0 : 7))
                atomic_fetch_add(&w->ctx->failures, 1);
            continue;
        }
        struct store_txn *t; /* half with begin and commit or abort */
        if (store_txn_begin(w->ctx->s, true, &t) != STORE_OK) {
            atomic_fetch_add(&w->ctx->failures, 1);
            continue;
        }
        if (group_fn(&j, t) == 0) {
            if (store_txn_commit(t) != STORE_OK)
                atomic_fetch_add(&w->ctx->failures, 1);
        } else {
            store_txn_abort(t);
        }
    }
    return NULL;
}

static void group_run(unsigned max_requests, bool expect_groups)
{
    char dir[64];
    make_tmpdir(dir);
    static const char *const tables[] = {"gc", NULL};
    struct store_options opts = {.tables = tables, .group_max_requests = max_requests};
    struct group_ctx ctx = {.s = open_store(dir, &opts)};
    atomic_init(&ctx.failures, 0);
    pthread_t th[GROUP_WRITERS];
    struct group_thread w[GROUP_WRITERS];
    for (int i = 0; i < GROUP_WRITERS; i++) {
        w[i] = (struct group_thread){&ctx, i};
        CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, group_writer, &w[i]), 0);
    }
    for (int i = 0; i < GROUP_WRITERS; i++)
        pthread_join(th[i], NULL);
    CU_ASSERT_EQUAL(atomic_load(&ctx.failures), 0);

    struct store_txn *t;
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(ctx.s, false, &t), STORE_OK);
    int committed = 0;
    for (int i = 0; i < GROUP_WRITERS; i++)
        for (int r = 0; r < GROUP_ROUNDS; r++) {
            char key[32];
            group_key(i, r, key);
            void *v = NULL;
            size_t vlen = 0;
            enum store_rc rc = store_kv_get(t, "gc", key, strlen(key), &v, &vlen);
            CU_ASSERT_EQUAL(rc, group_commits(i) ? STORE_OK : STORE_NOTFOUND);
            if (rc == STORE_OK) {
                CU_ASSERT(vlen == strlen(key) && memcmp(v, key, vlen) == 0);
                committed++;
            }
            free(v);
        }
    store_txn_abort(t);

    struct store_group_stats g;
    store_group_stats(ctx.s, &g);
    if (!expect_groups) {
        CU_ASSERT_EQUAL(g.commits, 0); /* no group commit: no histogram */
    } else if (g_pg[0] != '\0') {
        /* PostgreSQL groups the store_write() calls (even writers) only */
        int calls = 0;
        for (int i = 0; i < GROUP_WRITERS; i += 2)
            calls += group_commits(i) ? GROUP_ROUNDS : 0;
        CU_ASSERT_EQUAL(g.requests, (uint64_t)calls);
        CU_ASSERT(g.commits > 0 && g.commits <= g.requests);
    } else {
        CU_ASSERT_EQUAL(g.requests, (uint64_t)committed);
        CU_ASSERT(g.commits < g.requests); /* some commits carried several writes */
        uint64_t sum = 0;
        unsigned max = max_requests ? max_requests : STORE_GROUP_DEFAULT_REQUESTS;
        for (unsigned b = 0; b <= STORE_GROUP_BUCKETS; b++) {
            sum += g.buckets[b];
            if (b < STORE_GROUP_BUCKETS && STORE_GROUP_BUCKET(b) >= max * 2)
                CU_ASSERT_EQUAL(g.buckets[b], 0); /* none above group_max_requests */
        }
        CU_ASSERT_EQUAL(sum, g.commits);
    }
    store_close(ctx.s);
    rm_rf(dir);
}

static void test_group_commit(void)
{
    group_run(0, true);
}

static void test_group_commit_bounded(void)
{
    group_run(2, true);
}

static void test_group_commit_off(void)
{
    group_run(1, false);
}

/* Batches (store_batch_begin): the owner's writes return at once, nested in one shared
 * transaction; a refused one is dropped alone; another thread's write joins the batch; nothing
 * is visible before store_batch_end(), everything committed is after it, in one commit. */
static int batch_put_fn(void *cls, struct store_txn *t)
{
    const char *key = cls;
    if (store_kv_put(t, "gc", key, strlen(key), key, strlen(key)) != STORE_OK)
        return 1;
    return key[0] == 'b' ? 7 : 0; /* "b" is refused after writing */
}

static void *batch_other(void *cls)
{
    int result = -1;
    enum store_rc rc = store_write(cls, batch_put_fn, (char[]){"d"}, &result);
    return (void *)(intptr_t)(rc == STORE_OK && result == 0);
}

static bool batch_has(struct store *s, const char *key)
{
    struct store_txn *t;
    if (store_txn_begin(s, false, &t) != STORE_OK)
        return false;
    void *v = NULL;
    size_t vlen = 0;
    bool found = store_kv_get(t, "gc", key, strlen(key), &v, &vlen) == STORE_OK;
    free(v);
    store_txn_abort(t);
    return found;
}

static void test_batch(void)
{
    char dir[64];
    make_tmpdir(dir);
    static const char *const tables[] = {"gc", NULL};
    struct store_options opts = {.tables = tables};
    struct store *s = open_store(dir, &opts);
    CU_ASSERT_EQUAL(store_batch_end(s), STORE_INVALID); /* none open */
    CU_ASSERT_EQUAL_FATAL(store_batch_begin(s), STORE_OK);
    CU_ASSERT_EQUAL(store_batch_begin(s), STORE_INVALID); /* one at a time */
    int result = -1;
    CU_ASSERT_EQUAL(store_write(s, batch_put_fn, (char[]){"a"}, &result), STORE_OK);
    CU_ASSERT_EQUAL(result, 0);
    CU_ASSERT_EQUAL(store_write(s, batch_put_fn, (char[]){"b"}, &result), STORE_OK);
    CU_ASSERT_EQUAL(result, 7);
    struct store_txn *t;
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(s, true, &t), STORE_OK);
    CU_ASSERT_EQUAL(store_kv_put(t, "gc", "c", 1, "c", 1), STORE_OK);
    CU_ASSERT_EQUAL(store_txn_commit(t), STORE_OK); /* merged, returns without the sync */
    CU_ASSERT_FALSE(batch_has(s, "a"));             /* not committed yet */
    pthread_t th;
    CU_ASSERT_EQUAL_FATAL(pthread_create(&th, NULL, batch_other, s), 0);
    struct timespec pause = {0, 50 * 1000 * 1000}; /* lets it queue: it waits for the batch */
    nanosleep(&pause, NULL);
    CU_ASSERT_EQUAL(store_batch_end(s), STORE_OK);
    void *ok = NULL;
    pthread_join(th, &ok);
    CU_ASSERT_EQUAL((intptr_t)ok, 1);
    CU_ASSERT_TRUE(batch_has(s, "a"));
    CU_ASSERT_FALSE(batch_has(s, "b"));
    CU_ASSERT_TRUE(batch_has(s, "c"));
    CU_ASSERT_TRUE(batch_has(s, "d"));
    struct store_group_stats g;
    store_group_stats(s, &g);
    CU_ASSERT(g.requests >= 3 && g.commits <= 2); /* a, c (and d, unless it came late) in one */
    store_close(s);
    rm_rf(dir);

    /* Without group commit there are no batches: the caller writes as usual. */
    make_tmpdir(dir);
    opts.group_max_requests = 1;
    s = open_store(dir, &opts);
    CU_ASSERT_EQUAL(store_batch_begin(s), STORE_INVALID);
    store_close(s);
    rm_rf(dir);
}

/* One thread may hold many read transactions at once (MDB_NOTLS), more than LMDB's default of 126
 * reader slots, as a large HTTP thread pool would. */
#define MANY_READERS 300

static void test_many_open_readers(void)
{
    char dir[64];
    make_tmpdir(dir);
    struct store *s = open_store(dir, NULL);
    struct doc_key k = key_of("a", "users", "u", "index");
    char etag[STORE_ETAG_MAX];
    CU_ASSERT_EQUAL_FATAL(put_doc(s, &k, "<old/>", etag), STORE_OK);
    struct store_txn **txns = calloc(MANY_READERS, sizeof *txns);
    CU_ASSERT_PTR_NOT_NULL_FATAL(txns);
    size_t opened = 0;
    while (opened < MANY_READERS && store_txn_begin(s, false, &txns[opened]) == STORE_OK)
        opened++;
    CU_ASSERT_EQUAL(opened, MANY_READERS);
    /* A commit in between is invisible to the snapshots already open. */
    CU_ASSERT_EQUAL(put_doc(s, &k, "<new/>", etag), STORE_OK);
    size_t old_seen = 0;
    for (size_t i = 0; i < opened; i++) {
        struct store_doc d;
        if (store_doc_get(txns[i], &k, &d) == STORE_OK) {
            old_seen += strcmp(d.data, "<old/>") == 0;
            store_doc_release(&d);
        }
        CU_ASSERT_EQUAL(store_txn_commit(txns[i]), STORE_OK);
    }
    CU_ASSERT_EQUAL(old_seen, MANY_READERS);
    free(txns);
    store_close(s);
    rm_rf(dir);
}

/* Crash test: a child commits documents in a loop and reports each sequence number on a pipe only
 * after store_txn_commit() returned; the parent kills it with SIGKILL mid-stream. Every reported
 * document must then be present and intact (a 2xx is sent only after the commit). */
#define CRASH_MAX_DOCS 100000

static void crash_body(uint64_t i, char *buf, size_t cap, size_t *len)
{
    size_t n = 0;
    size_t want = 64 + (size_t)(i % 13) * 97;
    while (n < want && n + 32 < cap)
        n += (size_t)snprintf(buf + n, cap - n, "<e n=\"%llu\"/>", (unsigned long long)i);
    *len = n;
}

static void crash_child(const char *dir, int wfd)
{
    struct store *s = NULL;
    if (store_open(dir, NULL, &s) != STORE_OK)
        _exit(3);
    char path[32], body[2048];
    for (uint64_t i = 1; i <= CRASH_MAX_DOCS; i++) {
        snprintf(path, sizeof path, "d%06llu", (unsigned long long)i);
        struct doc_key k = key_of("resource-lists", "users", "sip:crash@example.com", path);
        size_t len;
        crash_body(i, body, sizeof body, &len);
        struct store_txn *t;
        char etag[STORE_ETAG_MAX];
        if (store_txn_begin(s, true, &t) != STORE_OK)
            _exit(4);
        struct store_change c = {
            .kind = STORE_CHANGE_PUT, .key = k, .prev_etag = "", .new_etag = etag};
        if (store_doc_put(t, &k, body, len, etag) != STORE_OK ||
            store_change_append(t, &c) != STORE_OK) {
            store_txn_abort(t);
            _exit(5);
        }
        if (store_txn_commit(t) != STORE_OK)
            _exit(6);
        if (write(wfd, &i, sizeof i) != (ssize_t)sizeof i)
            _exit(7);
    }
    _exit(0);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads acknowledged numbers from fd into *acked (highest seen) until deadline_ms or EOF. */
static void crash_read_acks(int fd, int64_t deadline_ms, uint64_t *acked, size_t *n_acks,
                            bool stop_at_first)
{
    unsigned char buf[4096];
    static_assert(sizeof buf % sizeof(uint64_t) == 0, "whole records");
    size_t have = 0;
    for (;;) {
        int64_t left = deadline_ms - now_ms();
        if (deadline_ms >= 0 && left <= 0)
            return;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, deadline_ms >= 0 ? (int)left : 1000);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            return;
        ssize_t n = read(fd, buf + have, sizeof buf - have);
        if (n <= 0)
            return;
        have += (size_t)n;
        size_t whole = have / sizeof(uint64_t) * sizeof(uint64_t);
        for (size_t off = 0; off < whole; off += sizeof(uint64_t)) {
            uint64_t v;
            memcpy(&v, buf + off, sizeof v);
            /* The child acknowledges in order, with no gaps. */
            CU_ASSERT_EQUAL(v, *acked + 1);
            *acked = v;
            (*n_acks)++;
        }
        memmove(buf, buf + whole, have - whole);
        have -= whole;
        if (stop_at_first && *n_acks > 0)
            return;
    }
}

static int crash_check_change(void *cls, const struct store_change *c)
{
    (*(uint64_t *)cls)++;
    return 0;
}

static void test_crash_durability(void)
{
    char dir[64];
    make_tmpdir(dir);
    int fds[2];
    CU_ASSERT_EQUAL_FATAL(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        crash_child(dir, fds[1]);
    }
    close(fds[1]);
    uint64_t acked = 0;
    size_t n_acks = 0;
    /* Wait (bounded) for the first commit, then let the child run ~200 ms more. */
    crash_read_acks(fds[0], now_ms() + 10000, &acked, &n_acks, true);
    crash_read_acks(fds[0], now_ms() + 200, &acked, &n_acks, false);
    kill(pid, SIGKILL);
    int status = 0;
    CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
    /* Drain what the child wrote before it died; EOF ends it. */
    crash_read_acks(fds[0], -1, &acked, &n_acks, false);
    close(fds[0]);
    CU_ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    CU_ASSERT(n_acks > 0);
    printf("(%zu commits acknowledged before SIGKILL) ", n_acks);

    struct store *s = open_store(dir, NULL);
    struct store_txn *t;
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(s, false, &t), STORE_OK);
    size_t bad = 0;
    char path[32], body[2048];
    for (uint64_t i = 1; i <= acked; i++) {
        snprintf(path, sizeof path, "d%06llu", (unsigned long long)i);
        struct doc_key k = key_of("resource-lists", "users", "sip:crash@example.com", path);
        size_t len;
        crash_body(i, body, sizeof body, &len);
        struct store_doc d;
        if (store_doc_get(t, &k, &d) != STORE_OK) {
            bad++;
            continue;
        }
        if (d.len != len || memcmp(d.data, body, len) != 0)
            bad++;
        store_doc_release(&d);
    }
    CU_ASSERT_EQUAL(bad, 0);
    /* Each document came with its change record in the same transaction. */
    uint64_t docs = 0, changes = 0, last = 0;
    CU_ASSERT_EQUAL(store_doc_count_user(t, "sip:crash@example.com", &docs), STORE_OK);
    CU_ASSERT_EQUAL(store_change_read(t, 0, crash_check_change, &changes), STORE_OK);
    CU_ASSERT_EQUAL(store_change_last(t, &last), STORE_OK);
    CU_ASSERT(docs >= acked && docs <= acked + 1);
    CU_ASSERT_EQUAL(changes, docs);
    CU_ASSERT_EQUAL(last, docs);
    store_txn_abort(t);

    /* The writer lock the killed child may have held is recovered. */
    struct doc_key k = key_of("resource-lists", "users", "sip:crash@example.com", "after");
    char etag[STORE_ETAG_MAX];
    CU_ASSERT_EQUAL(put_doc(s, &k, "<after/>", etag), STORE_OK);
    store_close(s);
    rm_rf(dir);
}

/* store_copy(): the copy holds every committed document with its ETag and the instance id, is
 * compacted, refuses an existing data.mdb and reports a missing source. store_in_use() sees
 * another process holding the environment open (fcntl locks never show the caller's own). */
static void test_copy_and_in_use(void)
{
    char base[64], src[128], dst[128], none[128];
    make_tmpdir(base);
    snprintf(src, sizeof src, "%s/src", base);
    snprintf(dst, sizeof dst, "%s/dst", base);
    snprintf(none, sizeof none, "%s/none", base);
    struct store *s = open_store(src, NULL);
    char id[32], etag[STORE_ETAG_MAX];
    snprintf(id, sizeof id, "%s", store_instance_id(s));
    struct doc_key k = key_of("resource-lists", "users", "sip:alice@example.com", "index");
    CU_ASSERT_EQUAL(put_doc(s, &k, "<resource-lists/>", etag), STORE_OK);
    struct doc_key gone = key_of("resource-lists", "users", "sip:alice@example.com", "gone");
    char etag2[STORE_ETAG_MAX];
    CU_ASSERT_EQUAL(put_doc(s, &gone, "<resource-lists/>", etag2), STORE_OK);
    CU_ASSERT_EQUAL(del_doc(s, &gone), STORE_OK);

    CU_ASSERT_EQUAL_FATAL(mkdir(dst, 0700), 0);
    CU_ASSERT_EQUAL(store_copy(src, dst), STORE_OK); /* while s is open */
    CU_ASSERT_EQUAL(store_copy(src, dst), STORE_INVALID);
    CU_ASSERT_EQUAL(store_copy(none, dst), STORE_NOTFOUND);
    store_close(s);

    struct store *c = open_store(dst, NULL);
    CU_ASSERT_STRING_EQUAL(store_instance_id(c), id);
    struct store_doc d;
    CU_ASSERT_EQUAL_FATAL(get_doc(c, &k, &d), STORE_OK);
    CU_ASSERT_STRING_EQUAL(d.data, "<resource-lists/>");
    CU_ASSERT_STRING_EQUAL(d.etag, etag);
    store_doc_release(&d);
    CU_ASSERT_EQUAL(get_doc(c, &gone, &d), STORE_NOTFOUND);
    store_close(c);

    bool busy = true;
    CU_ASSERT_EQUAL(store_in_use(none, &busy), STORE_OK);
    CU_ASSERT_FALSE(busy);
    CU_ASSERT_EQUAL(store_in_use(src, &busy), STORE_OK);
    CU_ASSERT_FALSE(busy);
    int ready[2], done[2];
    CU_ASSERT_EQUAL_FATAL(pipe(ready), 0);
    CU_ASSERT_EQUAL_FATAL(pipe(done), 0);
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        close(done[1]); /* so that the parent's close is an end of file here */
        struct store *cs = NULL;
        char b = store_open(src, NULL, &cs) == STORE_OK ? 'y' : 'n';
        if (write(ready[1], &b, 1) != 1 || read(done[0], &b, 1) < 0)
            _exit(1);
        _exit(0);
    }
    char b = 0;
    CU_ASSERT_EQUAL(read(ready[0], &b, 1), 1);
    CU_ASSERT_EQUAL(b, 'y');
    CU_ASSERT_EQUAL(store_in_use(src, &busy), STORE_OK);
    CU_ASSERT_TRUE(busy);
    close(done[1]);
    int status;
    waitpid(pid, &status, 0);
    close(ready[0]);
    close(ready[1]);
    close(done[0]);
    CU_ASSERT_EQUAL(store_in_use(src, &busy), STORE_OK);
    CU_ASSERT_FALSE(busy);
    rm_rf(base);
}

static int count_each(void *cls, const struct store_doc_view *d)
{
    unsigned *n = cls;
    (*n)++;
    CU_ASSERT_STRING_EQUAL(d->key.auid, *n == 1 ? "pres-rules" : "resource-lists");
    return 0;
}

/* A read-only open creates nothing and refuses writes; store_doc_each() sees every document. */
static void test_read_only(void)
{
    char base[64], dir[128];
    make_tmpdir(base);
    snprintf(dir, sizeof dir, "%s/ro", base);
    struct store_options ro = {.read_only = true};
    struct store *s = NULL;
    CU_ASSERT_EQUAL(store_open(dir, &ro, &s), STORE_NOTFOUND);
    CU_ASSERT_PTR_NULL(s);
    struct stat st;
    CU_ASSERT_NOT_EQUAL(stat(dir, &st), 0);

    s = open_store(dir, NULL);
    char etag[STORE_ETAG_MAX];
    struct doc_key a = key_of("resource-lists", "users", "sip:alice@example.com", "index");
    struct doc_key b = key_of("pres-rules", "users", "sip:bob@example.com", "index");
    struct doc_key g = key_of("resource-lists", "global", "", "index");
    CU_ASSERT_EQUAL(put_doc(s, &a, "<a/>", etag), STORE_OK);
    CU_ASSERT_EQUAL(put_doc(s, &b, "<b/>", etag), STORE_OK);
    CU_ASSERT_EQUAL(put_doc(s, &g, "<g/>", etag), STORE_OK);

    struct store *r = open_store(dir, &ro); /* beside the writer */
    CU_ASSERT_STRING_EQUAL(store_instance_id(r), store_instance_id(s));
    struct store_txn *t;
    CU_ASSERT_NOT_EQUAL(store_txn_begin(r, true, &t), STORE_OK);
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(r, false, &t), STORE_OK);
    unsigned n = 0;
    CU_ASSERT_EQUAL(store_doc_each(t, count_each, &n), STORE_OK);
    CU_ASSERT_EQUAL(n, 3);
    store_txn_abort(t);
    store_close(r);

    const char *const tables[] = {"missing", NULL};
    struct store_options ro_tables = {.read_only = true, .tables = tables};
    CU_ASSERT_EQUAL(store_open(dir, &ro_tables, &r), STORE_NOTFOUND);
    store_close(s);
    rm_rf(base);
}

/* ---- tests of several processes on one database (PostgreSQL), and of the wake-up ---- */

/* LMDB has no cross-process wake-up: callers poll. */
static void test_wake_lmdb(void)
{
    char dir[64];
    make_tmpdir(dir);
    struct store *s = open_store(dir, NULL);
    CU_ASSERT_EQUAL(store_wake_fd(s), -1);
    store_wake_drain(s);
    store_close(s);
    rm_rf(dir);
}

#define RACE_ROUNDS 20

struct race_ctx {
    struct store *s;
    const char *expect; /* the ETag both "requests" carry in If-Match */
    pthread_barrier_t *start;
    enum store_rc rc; /* of the put + commit, or STORE_OK when the check refused */
    bool won;
};

/* One If-Match request: check the ETag, then write, in one write transaction. */
static void *race_writer(void *arg)
{
    struct race_ctx *c = arg;
    pthread_barrier_wait(c->start);
    struct store_txn *t;
    c->won = false;
    c->rc = store_txn_begin(c->s, true, &t);
    if (c->rc != STORE_OK)
        return NULL;
    struct doc_key k = key_of("rls-services", "users", "sip:a@x", "index");
    struct store_doc d;
    c->rc = store_doc_get(t, &k, &d);
    if (c->rc != STORE_OK) {
        store_txn_abort(t);
        return NULL;
    }
    bool match = strcmp(d.etag, c->expect) == 0;
    store_doc_release(&d);
    if (!match) { /* 412 */
        store_txn_abort(t);
        return NULL;
    }
    char etag[STORE_ETAG_MAX];
    c->rc = store_doc_put(t, &k, "<new/>", 6, etag);
    if (c->rc != STORE_OK) {
        store_txn_abort(t);
        return NULL;
    }
    c->rc = store_txn_commit(t);
    c->won = c->rc == STORE_OK;
    return NULL;
}

/* Two handles on one database are two XDMS instances: two requests racing with the same If-Match
 * give exactly one write, every round. */
static void test_pg_if_match_race(void)
{
    char dir[64];
    make_tmpdir(dir);
    struct store *a = open_store(dir, NULL), *b = open_store(dir, NULL);
    CU_ASSERT_STRING_EQUAL(store_instance_id(a), store_instance_id(b));
    struct doc_key k = key_of("rls-services", "users", "sip:a@x", "index");
    char etag[STORE_ETAG_MAX];
    CU_ASSERT_EQUAL_FATAL(put_doc(a, &k, "<old/>", etag), STORE_OK);
    int single = 0;
    for (int round = 0; round < RACE_ROUNDS; round++) {
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, 2);
        struct race_ctx ca = {.s = a, .expect = etag, .start = &start};
        struct race_ctx cb = {.s = b, .expect = etag, .start = &start};
        pthread_t ta, tb;
        CU_ASSERT_EQUAL_FATAL(pthread_create(&ta, NULL, race_writer, &ca), 0);
        CU_ASSERT_EQUAL_FATAL(pthread_create(&tb, NULL, race_writer, &cb), 0);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        pthread_barrier_destroy(&start);
        CU_ASSERT_EQUAL(ca.rc, STORE_OK);
        CU_ASSERT_EQUAL(cb.rc, STORE_OK);
        single += (ca.won ? 1 : 0) + (cb.won ? 1 : 0) == 1;
        struct store_doc d;
        CU_ASSERT_EQUAL_FATAL(get_doc(b, &k, &d), STORE_OK);
        snprintf(etag, sizeof etag, "%s", d.etag);
        store_doc_release(&d);
    }
    CU_ASSERT_EQUAL(single, RACE_ROUNDS);
    store_close(a);
    store_close(b);
    rm_rf(dir);
}

#define SEQ_WRITES 40

struct seq_ctx {
    struct store *s;
    int failures;
};

/* Writes one document SEQ_WRITES times, each write with its change record (prev -> new ETag). */
static void *seq_writer(void *arg)
{
    struct seq_ctx *c = arg;
    struct doc_key k = key_of("resource-lists", "users", "sip:a@x", "index");
    for (int i = 0; i < SEQ_WRITES; i++) {
        struct store_txn *t;
        if (store_txn_begin(c->s, true, &t) != STORE_OK) {
            c->failures++;
            continue;
        }
        struct store_doc d;
        char prev[STORE_ETAG_MAX] = "", etag[STORE_ETAG_MAX];
        if (store_doc_get(t, &k, &d) == STORE_OK) {
            snprintf(prev, sizeof prev, "%s", d.etag);
            store_doc_release(&d);
        }
        struct store_change ch = {.kind = STORE_CHANGE_PUT, .key = k, .prev_etag = prev};
        if (store_doc_put(t, &k, "<l/>", 4, etag) != STORE_OK ||
            (ch.new_etag = etag, store_change_append(t, &ch)) != STORE_OK) {
            store_txn_abort(t);
            c->failures++;
            continue;
        }
        if (store_txn_commit(t) != STORE_OK)
            c->failures++;
    }
    return NULL;
}

struct seq_check {
    uint64_t next_seq;
    char last_etag[STORE_ETAG_MAX];
    char etags[2 * SEQ_WRITES][STORE_ETAG_MAX];
    int n;
    int gaps, breaks, dups;
};

static int seq_visit(void *cls, const struct store_change *c)
{
    struct seq_check *k = cls;
    k->gaps += c->seq != k->next_seq;
    k->next_seq = c->seq + 1;
    k->breaks += strcmp(c->prev_etag, k->last_etag) != 0;
    snprintf(k->last_etag, sizeof k->last_etag, "%s", c->new_etag);
    for (int i = 0; i < k->n; i++)
        k->dups += strcmp(k->etags[i], c->new_etag) == 0;
    if (k->n < 2 * SEQ_WRITES)
        snprintf(k->etags[k->n++], STORE_ETAG_MAX, "%s", c->new_etag);
    return 0;
}

/* Writers on two handles (two instances) commit concurrently: the change log is gap-free, in
 * commit order (each record's previous ETag is the one before it: the xcap-diff chain), and no
 * ETag repeats. */
static void test_pg_seq_order(void)
{
    char dir[64];
    make_tmpdir(dir);
    struct seq_ctx a = {.s = open_store(dir, NULL)}, b = {.s = open_store(dir, NULL)};
    pthread_t ta, tb;
    CU_ASSERT_EQUAL_FATAL(pthread_create(&ta, NULL, seq_writer, &a), 0);
    CU_ASSERT_EQUAL_FATAL(pthread_create(&tb, NULL, seq_writer, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CU_ASSERT_EQUAL(a.failures + b.failures, 0);
    struct seq_check k = {.next_seq = 1};
    struct store_txn *t;
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(a.s, false, &t), STORE_OK);
    CU_ASSERT_EQUAL(store_change_read(t, 0, seq_visit, &k), STORE_OK);
    store_txn_abort(t);
    CU_ASSERT_EQUAL(k.n, 2 * SEQ_WRITES);
    CU_ASSERT_EQUAL(k.next_seq, 2 * SEQ_WRITES + 1);
    CU_ASSERT_EQUAL(k.gaps, 0);
    CU_ASSERT_EQUAL(k.breaks, 0);
    CU_ASSERT_EQUAL(k.dups, 0);
    store_close(a.s);
    store_close(b.s);
    rm_rf(dir);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct slow_writer {
    struct store *s;
    enum store_rc rc;
};

/* A write transaction that holds the store for 400 ms. */
static void *slow_writer(void *arg)
{
    struct slow_writer *w = arg;
    struct store_txn *t;
    w->rc = store_txn_begin(w->s, true, &t);
    if (w->rc != STORE_OK)
        return NULL;
    struct doc_key k = key_of("a", "users", "u", "w");
    char etag[STORE_ETAG_MAX];
    w->rc = store_doc_put(t, &k, "<w/>", 4, etag);
    struct timespec hold = {0, 400 * 1000000L};
    nanosleep(&hold, NULL);
    if (w->rc == STORE_OK)
        w->rc = store_txn_commit(t);
    else
        store_txn_abort(t);
    return NULL;
}

/* Writers of one process queue for the store without holding pooled connections: with a pool of
 * two and three writers at once, a reader still gets a connection at once. */
static void test_pg_writers_leave_readers(void)
{
    char dir[64];
    make_tmpdir(dir);
    struct store_options o = {.pg_pool_size = 2};
    struct store *s = open_store(dir, &o);
    struct doc_key k = key_of("a", "users", "u", "index");
    char etag[STORE_ETAG_MAX];
    CU_ASSERT_EQUAL(put_doc(s, &k, "<r/>", etag), STORE_OK);
    struct slow_writer w[3] = {{.s = s}, {.s = s}, {.s = s}};
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, slow_writer, &w[i]), 0);
    struct timespec settle = {0, 100 * 1000000L};
    nanosleep(&settle, NULL);
    double t0 = now_s();
    struct store_doc d;
    CU_ASSERT_EQUAL(get_doc(s, &k, &d), STORE_OK);
    double took = now_s() - t0;
    store_doc_release(&d);
    CU_ASSERT(took < 0.2);
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        CU_ASSERT_EQUAL(w[i].rc, STORE_OK);
    }
    store_close(s);
    rm_rf(dir);
}

/* The pid of the postmaster serving the test database (the parent of our backend). */
static pid_t pg_postmaster(void)
{
    PGconn *c = PQconnectdb(getenv("XDM_TEST_PG_CONNINFO"));
    pid_t pm = -1;
    if (PQstatus(c) == CONNECTION_OK) {
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/%d/stat", PQbackendPID(c));
        FILE *f = fopen(path, "r");
        if (f != NULL && fgets(buf, sizeof buf, f) != NULL) {
            const char *p = strrchr(buf, ')');
            int ppid;
            if (p != NULL && sscanf(p + 2, "%*c %d", &ppid) == 1)
                pm = ppid;
        }
        if (f != NULL)
            fclose(f);
    }
    PQfinish(c);
    return pm;
}

/* Sends sig to the postmaster and all its children (SIGSTOP: children first). */
static void pg_signal_all(pid_t pm, int sig)
{
    if (sig != SIGSTOP)
        kill(pm, sig);
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        int pid = atoi(e->d_name);
        if (pid <= 0)
            continue;
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/%d/stat", pid);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        int ppid = -1;
        if (fgets(buf, sizeof buf, f) != NULL) {
            const char *p = strrchr(buf, ')');
            if (p == NULL || sscanf(p + 2, "%*c %d", &ppid) != 1)
                ppid = -1;
        }
        fclose(f);
        if (ppid == pm)
            kill(pid, sig);
    }
    if (d != NULL)
        closedir(d);
    if (sig == SIGSTOP)
        kill(pm, sig);
}

/* A database that stops answering costs a transaction at most pg_timeout: STORE_UNAVAILABLE, no
 * hang; when it answers again the same handle works without being reopened. */
static void test_pg_unavailable(void)
{
    char dir[64];
    make_tmpdir(dir);
    struct store_options o = {.pg_timeout = 1, .pg_pool_size = 2};
    struct store *s = open_store(dir, &o);
    struct doc_key k = key_of("a", "users", "u", "index");
    char etag[STORE_ETAG_MAX];
    CU_ASSERT_EQUAL(put_doc(s, &k, "<a/>", etag), STORE_OK);
    pid_t pm = pg_postmaster();
    CU_ASSERT_FATAL(pm > 1);
    pg_signal_all(pm, SIGSTOP);
    double t0 = now_s();
    struct store_doc d;
    enum store_rc on_pooled = get_doc(s, &k, &d); /* an open connection, no answer */
    double t1 = now_s();
    enum store_rc on_new = put_doc(s, &k, "<b/>", etag); /* a new connection, no answer */
    double t2 = now_s();
    pg_signal_all(pm, SIGCONT);
    CU_ASSERT_EQUAL(on_pooled, STORE_UNAVAILABLE);
    CU_ASSERT_EQUAL(on_new, STORE_UNAVAILABLE);
    CU_ASSERT(t1 - t0 < 2.5);
    CU_ASSERT(t2 - t1 < 2.5);
    /* Back: the next transaction reconnects. */
    CU_ASSERT_EQUAL(put_doc(s, &k, "<c/>", etag), STORE_OK);
    CU_ASSERT_EQUAL_FATAL(get_doc(s, &k, &d), STORE_OK);
    CU_ASSERT_STRING_EQUAL(d.data, "<c/>");
    store_doc_release(&d);
    store_close(s);
    rm_rf(dir);
}

/* Connections lost while idle (the server restarted, or an administrator ended them) are made
 * again on their next use: the first transaction after that already succeeds. */
static void test_pg_reconnect(void)
{
    char dir[64];
    make_tmpdir(dir);
    struct store *s = open_store(dir, NULL);
    struct doc_key k = key_of("a", "users", "u", "index");
    char etag[STORE_ETAG_MAX];
    CU_ASSERT_EQUAL(put_doc(s, &k, "<a/>", etag), STORE_OK);
    CU_ASSERT_EQUAL_FATAL(pg_admin("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                                   "WHERE query NOT LIKE '%pg_terminate_backend%' AND "
                                   "backend_type = 'client backend' AND datname = "
                                   "current_database()"),
                          0);
    struct store_doc d;
    CU_ASSERT_EQUAL(get_doc(s, &k, &d), STORE_OK);
    store_doc_release(&d);
    CU_ASSERT_EQUAL(put_doc(s, &k, "<b/>", etag), STORE_OK);
    store_close(s);
    rm_rf(dir);
}

/* The wake-up descriptor of one handle becomes readable when another handle commits a change;
 * after a drain it is quiet again. */
static void test_pg_wake(void)
{
    char dir[64];
    make_tmpdir(dir);
    struct store *a = open_store(dir, NULL), *b = open_store(dir, NULL);
    int fd = store_wake_fd(a);
    CU_ASSERT_FATAL(fd >= 0);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    CU_ASSERT_EQUAL(poll(&p, 1, 100), 0);
    struct store_txn *t;
    struct doc_key k = key_of("a", "users", "u", "index");
    struct store_change c = {.kind = STORE_CHANGE_PUT, .key = k, .prev_etag = "", .new_etag = "1"};
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(b, true, &t), STORE_OK);
    CU_ASSERT_EQUAL(store_change_append(t, &c), STORE_OK);
    /* Not before the commit. */
    CU_ASSERT_EQUAL(poll(&p, 1, 200), 0);
    CU_ASSERT_EQUAL(store_txn_commit(t), STORE_OK);
    CU_ASSERT_EQUAL(poll(&p, 1, 5000), 1);
    store_wake_drain(a);
    p.fd = store_wake_fd(a);
    CU_ASSERT_EQUAL(poll(&p, 1, 100), 0);
    /* A write without a change record wakes no one. */
    CU_ASSERT_EQUAL(put_doc(b, &k, "<x/>", (char[STORE_ETAG_MAX]){0}), STORE_OK);
    CU_ASSERT_EQUAL(poll(&p, 1, 200), 0);
    /* A lost listener is made again by the drain. */
    CU_ASSERT_EQUAL(pg_admin("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                             "WHERE query LIKE 'LISTEN%' AND datname = current_database()"),
                    0);
    CU_ASSERT_EQUAL(poll(&p, 1, 5000), 1);
    store_wake_drain(a);
    p.fd = store_wake_fd(a);
    CU_ASSERT_FATAL(p.fd >= 0);
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(b, true, &t), STORE_OK);
    CU_ASSERT_EQUAL(store_change_append(t, &c), STORE_OK);
    CU_ASSERT_EQUAL(store_txn_commit(t), STORE_OK);
    CU_ASSERT_EQUAL(poll(&p, 1, 5000), 1);
    store_close(a);
    store_close(b);
    rm_rf(dir);
}

/* Two stores (two roles' schemas) in one database do not wake each other: each has its own
 * channel. */
static void test_pg_wake_per_store(void)
{
    char dir[64], other[64], saved[sizeof g_pg], sql[128];
    make_tmpdir(dir);
    make_tmpdir(other);
    struct store *a = open_store(dir, NULL);
    snprintf(saved, sizeof saved, "%s", g_pg);
    snprintf(sql, sizeof sql, "CREATE SCHEMA xdm_test_%d_other", (int)getpid());
    CU_ASSERT_EQUAL_FATAL(pg_admin(sql), 0);
    snprintf(g_pg, sizeof g_pg, "%s options='-csearch_path=xdm_test_%d_other'",
             getenv("XDM_TEST_PG_CONNINFO"), (int)getpid());
    struct store *c = open_store(other, NULL);
    snprintf(g_pg, sizeof g_pg, "%s", saved);
    struct pollfd p = {.fd = store_wake_fd(a), .events = POLLIN};
    CU_ASSERT_FATAL(p.fd >= 0);
    struct doc_key k = key_of("a", "users", "u", "index");
    struct store_change ch = {.kind = STORE_CHANGE_PUT, .key = k, .prev_etag = "", .new_etag = "1"};
    struct store_txn *t;
    CU_ASSERT_EQUAL_FATAL(store_txn_begin(c, true, &t), STORE_OK);
    CU_ASSERT_EQUAL(store_change_append(t, &ch), STORE_OK);
    CU_ASSERT_EQUAL(store_txn_commit(t), STORE_OK);
    CU_ASSERT_EQUAL(poll(&p, 1, 300), 0);
    store_close(c);
    store_close(a);
    snprintf(sql, sizeof sql, "DROP SCHEMA xdm_test_%d_other CASCADE", (int)getpid());
    CU_ASSERT_EQUAL(pg_admin(sql), 0);
    rm_rf(dir);
    rm_rf(other);
}

int main(void)
{
    CU_TestInfo tests[] = {
        {"put/get/del", test_put_get_del},
        {"invalid keys", test_invalid_keys},
        {"etag never reused", test_etag_never_reused},
        {"list by prefix", test_list_prefix},
        {"change log", test_change_log},
        {"change log pruning", test_change_prune},
        {"change log pruning by bytes", test_change_prune_bytes},
        {"change log pruning by age", test_change_prune_age},
        {"version 1 change records", test_change_v1_age},
        {"per-user bytes", test_user_bytes},
        {"high-water mark", test_high_water},
        {"kv tables", test_kv_tables},
        {"charging queue", test_charge_queue},
        {"two environments", test_two_environments},
        {"reopen persistence", test_reopen_persistence},
        {"map full", test_map_full},
        {"concurrent readers", test_concurrent_readers},
        {"group commit", test_group_commit},
        {"group commit bounded", test_group_commit_bounded},
        {"group commit off", test_group_commit_off},
        {"batches", test_batch},
        {"many open readers", test_many_open_readers},
        {"crash durability", test_crash_durability},
        {"copy and in use", test_copy_and_in_use},
        {"append order fills pages", test_append_order_fills_pages},
        {"copy fills pages", test_copy_fills_pages},
        {"read only", test_read_only},
        {"no wake-up descriptor", test_wake_lmdb},
        CU_TEST_INFO_NULL,
    };
    /* The same tests on PostgreSQL, and those of several instances on one database. */
    CU_TestInfo pg_tests[] = {
        {"put/get/del", test_put_get_del},
        {"invalid keys", test_invalid_keys},
        {"etag never reused", test_etag_never_reused},
        {"list by prefix", test_list_prefix},
        {"change log", test_change_log},
        {"change log pruning", test_change_prune},
        {"change log pruning by bytes", test_change_prune_bytes},
        {"change log pruning by age", test_change_prune_age},
        {"per-user bytes", test_user_bytes},
        {"kv tables", test_kv_tables},
        {"charging queue", test_charge_queue},
        {"reopen persistence", test_reopen_persistence},
        {"concurrent readers", test_concurrent_readers},
        {"group commit", test_group_commit},
        {"group commit bounded", test_group_commit_bounded},
        {"group commit off", test_group_commit_off},
        {"If-Match race across instances", test_pg_if_match_race},
        {"change order across instances", test_pg_seq_order},
        {"unavailable within the timeout", test_pg_unavailable},
        {"reconnect", test_pg_reconnect},
        {"writers leave the pool to readers", test_pg_writers_leave_readers},
        {"wake-up across instances", test_pg_wake},
        {"wake-up per store, not per database", test_pg_wake_per_store},
        CU_TEST_INFO_NULL,
    };
    bool pg = getenv("XDM_TEST_PG_CONNINFO") != NULL && getenv("XDM_TEST_PG_CONNINFO")[0] != '\0';
    CU_SuiteInfo suites[] = {
        {"store", NULL, NULL, NULL, NULL, tests},
        {"store-postgresql", NULL, NULL, pg_setup, pg_teardown, pg_tests},
        CU_SUITE_INFO_NULL,
    };
    if (!pg) {
        fprintf(stderr, "XDM_TEST_PG_CONNINFO not set: the PostgreSQL suite does not run\n");
        suites[1] = (CU_SuiteInfo)CU_SUITE_INFO_NULL;
    }
    return unit_run(suites);
}
