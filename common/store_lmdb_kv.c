/* LMDB backend (store_lmdb.c): the extra named tables (generic keys and values), the compacting
 * copy of an environment and the in-use probe. */
#include "store_backend.h"
#include "store_lmdb_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static enum store_rc store_lmdb_table_find(struct store_lmdb_txn *t, const char *table,
                                           MDB_dbi *dbi)
{
    if (table == NULL)
        return STORE_INVALID;
    for (size_t i = 0; i < t->s->n_tables; i++) {
        if (strcmp(t->s->tables[i].name, table) == 0) {
            *dbi = t->s->tables[i].dbi;
            return STORE_OK;
        }
    }
    return STORE_INVALID;
}

/* LMDB keys are 1..maxkeysize bytes. */
static enum store_rc store_lmdb_kv_check(struct store_lmdb_txn *t, const char *table,
                                         const void *key, size_t klen, MDB_dbi *dbi)
{
    if (key == NULL || klen == 0 || klen > t->s->key_max)
        return STORE_INVALID;
    return store_lmdb_table_find(t, table, dbi);
}

enum store_rc store_lmdb_kv_get(struct store_txn *base_t, const char *table, const void *key,
                                size_t klen, void **val, size_t *vlen)
{
    struct store_lmdb_txn *t = (struct store_lmdb_txn *)base_t;
    *val = NULL;
    *vlen = 0;
    MDB_dbi dbi;
    enum store_rc src = store_lmdb_kv_check(t, table, key, klen, &dbi);
    if (src != STORE_OK)
        return src;
    MDB_val mk = {klen, (void *)key};
    MDB_val mv;
    int rc = mdb_get(t->txn, dbi, &mk, &mv);
    if (rc != MDB_SUCCESS)
        return store_lmdb_rc_from_mdb(rc, "get");
    char *copy = malloc(mv.mv_size + 1);
    if (copy == NULL)
        return STORE_ERROR;
    if (mv.mv_size > 0)
        memcpy(copy, mv.mv_data, mv.mv_size);
    copy[mv.mv_size] = '\0';
    *val = copy;
    *vlen = mv.mv_size;
    return STORE_OK;
}

enum store_rc store_lmdb_kv_put(struct store_txn *base_t, const char *table, const void *key,
                                size_t klen, const void *val, size_t vlen)
{
    struct store_lmdb_txn *t = (struct store_lmdb_txn *)base_t;
    MDB_dbi dbi;
    if (!t->write || (val == NULL && vlen != 0))
        return STORE_INVALID;
    enum store_rc src = store_lmdb_kv_check(t, table, key, klen, &dbi);
    if (src != STORE_OK)
        return src;
    MDB_val mk = {klen, (void *)key};
    MDB_val mv = {vlen, (void *)(val != NULL ? val : "")};
    t->written += klen + vlen;
    return store_lmdb_rc_from_mdb(mdb_put(t->txn, dbi, &mk, &mv, 0), "put");
}

enum store_rc store_lmdb_kv_del(struct store_txn *base_t, const char *table, const void *key,
                                size_t klen)
{
    struct store_lmdb_txn *t = (struct store_lmdb_txn *)base_t;
    MDB_dbi dbi;
    if (!t->write)
        return STORE_INVALID;
    enum store_rc src = store_lmdb_kv_check(t, table, key, klen, &dbi);
    if (src != STORE_OK)
        return src;
    MDB_val mk = {klen, (void *)key};
    t->written += klen;
    return store_lmdb_rc_from_mdb(mdb_del(t->txn, dbi, &mk, NULL), "delete");
}

enum store_rc
store_lmdb_kv_scan(struct store_txn *base_t, const char *table, const void *prefix, size_t plen,
                   int (*fn)(void *cls, const void *key, size_t klen, const void *val, size_t vlen),
                   void *cls)
{
    struct store_lmdb_txn *t = (struct store_lmdb_txn *)base_t;
    MDB_dbi dbi;
    if (plen > t->s->key_max || (prefix == NULL && plen != 0))
        return STORE_INVALID;
    enum store_rc src = store_lmdb_table_find(t, table, &dbi);
    if (src != STORE_OK)
        return src;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(t->txn, dbi, &cur);
    if (rc != MDB_SUCCESS)
        return store_lmdb_rc_from_mdb(rc, "open cursor");
    MDB_val k = {plen, (void *)prefix};
    MDB_val v;
    rc = mdb_cursor_get(cur, &k, &v, plen > 0 ? MDB_SET_RANGE : MDB_FIRST);
    while (rc == MDB_SUCCESS) {
        if (k.mv_size < plen || (plen > 0 && memcmp(k.mv_data, prefix, plen) != 0))
            break;
        if (fn(cls, k.mv_data, k.mv_size, v.mv_data, v.mv_size) != 0)
            break;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    return rc == MDB_SUCCESS || rc == MDB_NOTFOUND ? STORE_OK : store_lmdb_rc_from_mdb(rc, "scan");
}

/* Backup ------------------------------------------------------------------------------------- */

#define STORE_COPY_RETRIES 3
#define STORE_COPY_TXN_ENTRIES 100000 /* entries per write transaction of the copy */

/* Copies every entry of table sd (read transaction rt) into the table of the same name and
 * flags of dst, in key order with MDB_APPEND, so that the copy's leaf pages are full whatever the
 * order the source was written in. Commits every STORE_COPY_TXN_ENTRIES entries. */
static int store_copy_table(MDB_txn *rt, MDB_dbi sd, MDB_env *dst, const char *name)
{
    unsigned flags;
    int rc = mdb_dbi_flags(rt, sd, &flags);
    MDB_txn *wt = NULL;
    MDB_dbi dd;
    MDB_cursor *rc_cur = NULL;
    if (rc == MDB_SUCCESS)
        rc = mdb_txn_begin(dst, NULL, 0, &wt);
    if (rc == MDB_SUCCESS)
        rc = mdb_dbi_open(wt, name, (flags & ~MDB_CREATE) | MDB_CREATE, &dd);
    if (rc == MDB_SUCCESS)
        rc = mdb_cursor_open(rt, sd, &rc_cur);
    unsigned put = flags & MDB_DUPSORT ? MDB_APPENDDUP : MDB_APPEND;
    MDB_val k, v;
    size_t n = 0;
    int got = rc == MDB_SUCCESS ? mdb_cursor_get(rc_cur, &k, &v, MDB_FIRST) : MDB_NOTFOUND;
    while (rc == MDB_SUCCESS && got == MDB_SUCCESS) {
        rc = mdb_put(wt, dd, &k, &v, put);
        if (rc == MDB_SUCCESS && ++n % STORE_COPY_TXN_ENTRIES == 0) {
            rc = mdb_txn_commit(wt);
            wt = NULL;
            if (rc == MDB_SUCCESS)
                rc = mdb_txn_begin(dst, NULL, 0, &wt);
        }
        if (rc == MDB_SUCCESS)
            got = mdb_cursor_get(rc_cur, &k, &v, MDB_NEXT);
    }
    if (rc == MDB_SUCCESS && got != MDB_NOTFOUND)
        rc = got;
    if (rc_cur)
        mdb_cursor_close(rc_cur);
    if (wt && rc == MDB_SUCCESS)
        rc = mdb_txn_commit(wt);
    else if (wt)
        mdb_txn_abort(wt);
    return rc;
}

/* The copy of every named table of src (one read transaction: the state of one commit) into a
 * new environment in dst_dir. No lock file is made there (MDB_NOLOCK: nobody else uses it while
 * it is written) and nothing is synced until the end (MDB_NOSYNC; the caller syncs the file). */
static int store_copy_dense(MDB_env *src, const char *dst_dir)
{
    MDB_txn *rt = NULL;
    int rc;
    for (int i = 0;; i++) {
        rc = mdb_txn_begin(src, NULL, MDB_RDONLY, &rt);
        if (rc != MDB_MAP_RESIZED || i + 1 == STORE_COPY_RETRIES)
            break;
        rc = mdb_env_set_mapsize(src, 0); /* a writer grew the map: read at the new size */
        if (rc != MDB_SUCCESS)
            break;
    }
    if (rc != MDB_SUCCESS)
        return rc;
    /* The copy is at most as large as the pages in use of the map it reads. */
    MDB_envinfo info;
    MDB_env *dst = NULL;
    rc = mdb_env_info(src, &info);
    if (rc == MDB_SUCCESS)
        rc = mdb_env_create(&dst);
    if (rc == MDB_SUCCESS)
        rc = mdb_env_set_maxdbs(dst, STORE_BUILTIN_DBS + STORE_MAX_TABLES);
    if (rc == MDB_SUCCESS)
        rc = mdb_env_set_mapsize(dst, info.me_mapsize);
    if (rc == MDB_SUCCESS)
        rc = mdb_env_open(dst, dst_dir, MDB_NOTLS | MDB_NOLOCK | MDB_NOSYNC, 0600);
    MDB_dbi main_dbi;
    MDB_cursor *c = NULL;
    if (rc == MDB_SUCCESS)
        rc = mdb_dbi_open(rt, NULL, 0, &main_dbi);
    if (rc == MDB_SUCCESS)
        rc = mdb_cursor_open(rt, main_dbi, &c);
    MDB_val k, v;
    int got = rc == MDB_SUCCESS ? mdb_cursor_get(c, &k, &v, MDB_FIRST) : MDB_NOTFOUND;
    /* The main table's keys are the names of the tables (this store keeps nothing else there). */
    while (rc == MDB_SUCCESS && got == MDB_SUCCESS) {
        char name[256];
        MDB_dbi sd;
        if (k.mv_size == 0 || k.mv_size >= sizeof name || memchr(k.mv_data, '\0', k.mv_size)) {
            rc = MDB_INCOMPATIBLE;
            break;
        }
        memcpy(name, k.mv_data, k.mv_size);
        name[k.mv_size] = '\0';
        rc = mdb_dbi_open(rt, name, 0, &sd);
        if (rc == MDB_SUCCESS)
            rc = store_copy_table(rt, sd, dst, name);
        if (rc == MDB_SUCCESS)
            got = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    if (rc == MDB_SUCCESS && got != MDB_NOTFOUND)
        rc = got;
    if (c)
        mdb_cursor_close(c);
    mdb_txn_abort(rt);
    if (rc == MDB_SUCCESS)
        rc = mdb_env_sync(dst, 1);
    if (dst)
        mdb_env_close(dst);
    return rc;
}

enum store_rc store_copy(const char *src_dir, const char *dst_dir)
{
    char path[STORE_DIR_MAX + 16];
    struct stat st;
    if (!src_dir || !dst_dir || strlen(src_dir) > STORE_DIR_MAX || strlen(dst_dir) > STORE_DIR_MAX)
        return STORE_INVALID;
    snprintf(path, sizeof path, "%s/data.mdb", src_dir);
    if (stat(path, &st) < 0)
        return errno == ENOENT ? STORE_NOTFOUND : STORE_ERROR;

    /* Phase 1: open the source read-only (the lock file is still shared with the writers, so
     * their readers and ours see each other). */
    MDB_env *env;
    int rc = mdb_env_create(&env);
    if (rc != MDB_SUCCESS)
        return store_lmdb_rc_from_mdb(rc, "create environment");
    rc = mdb_env_set_maxdbs(env, STORE_BUILTIN_DBS + STORE_MAX_TABLES);
    if (rc == MDB_SUCCESS)
        rc = mdb_env_set_maxreaders(env, STORE_MAX_READERS);
    if (rc == MDB_SUCCESS)
        rc = mdb_env_open(env, src_dir, MDB_NOTLS | MDB_RDONLY, 0600);
    if (rc != MDB_SUCCESS) {
        log_error("store: open %s for a copy: %s", src_dir, mdb_strerror(rc));
        mdb_env_close(env);
        return STORE_ERROR;
    }

    /* Phase 2: a new file, refused when one is there. */
    snprintf(path, sizeof path, "%s/data.mdb", dst_dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        log_error("store: create %s: %s", path, strerror(errno));
        mdb_env_close(env);
        return errno == EEXIST ? STORE_INVALID : STORE_ERROR;
    }
    /* Phase 3: the copy, table by table in key order into full pages (mdb_env_copy2's
     * compaction leaves out free pages but copies half-empty leaf pages as they are). */
    rc = store_copy_dense(env, dst_dir);
    mdb_env_close(env);

    /* Phase 4: durable before success is reported. */
    if (rc == MDB_SUCCESS && fsync(fd) < 0)
        rc = errno;
    if (close(fd) < 0 && rc == MDB_SUCCESS)
        rc = errno;
    if (rc == MDB_SUCCESS) {
        int dfd = open(dst_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            if (fsync(dfd) < 0)
                rc = errno;
            close(dfd);
        }
    }
    if (rc != MDB_SUCCESS) {
        log_error("store: copy %s to %s: %s", src_dir, dst_dir, mdb_strerror(rc));
        unlink(path);
        return STORE_ERROR;
    }
    return STORE_OK;
}

enum store_rc store_in_use(const char *dir, bool *out)
{
    char path[STORE_DIR_MAX + 16];
    *out = false;
    if (!dir || strlen(dir) > STORE_DIR_MAX)
        return STORE_INVALID;
    snprintf(path, sizeof path, "%s/lock.mdb", dir);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? STORE_OK : STORE_ERROR;
    /* Every process with the environment open holds a lock on the first byte of the lock file
     * (LMDB's mdb_env_excl_lock(): exclusive while alone at open, shared afterwards). */
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    int rc = fcntl(fd, F_GETLK, &fl);
    close(fd);
    if (rc < 0)
        return STORE_ERROR;
    *out = fl.l_type != F_UNLCK;
    return STORE_OK;
}
