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

    /* Phase 2: the compacting copy into a new file. A writer may grow the map meanwhile; the
     * copy's read transaction then fails with MDB_MAP_RESIZED and is retried at the new size. */
    snprintf(path, sizeof path, "%s/data.mdb", dst_dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        log_error("store: create %s: %s", path, strerror(errno));
        mdb_env_close(env);
        return errno == EEXIST ? STORE_INVALID : STORE_ERROR;
    }
    for (int i = 0; i < STORE_COPY_RETRIES; i++) {
        rc = mdb_env_copyfd2(env, fd, MDB_CP_COMPACT);
        if (rc != MDB_MAP_RESIZED)
            break;
        if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0) {
            rc = errno;
            break;
        }
        rc = mdb_env_set_mapsize(env, 0);
        if (rc != MDB_SUCCESS)
            break;
    }
    mdb_env_close(env);

    /* Phase 3: durable before success is reported. */
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
