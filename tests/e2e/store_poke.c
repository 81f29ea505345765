/* store_poke: damages a store on purpose, for the end-to-end test of `xdmctl check`
 * (tests/e2e/xdmctl_data.py). Never used on real data.
 *
 *   store_poke DIR put AUID TREE XUI PATH FILE   store FILE's bytes as a document through the
 *                                                store API: no validation, no change record
 *   store_poke DIR quota XUI BYTES               overwrite the user's byte count (raw LMDB)
 *   store_poke DIR kvdel TABLE KEY               delete one entry of an extra table
 *   store_poke DIR hold                          take LMDB's writer lock, print "held", keep it
 *                                                until standard input ends (a writer that
 *                                                blocks every other, tests/e2e/run.py)
 *
 * DIR "pg:CONNINFO" names a PostgreSQL store instead of an LMDB directory (put and kvdel).
 *
 * Exit status 0 on success, 1 on failure. */
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

/* Opens DIR with the extra tables: an LMDB directory, or "pg:" and a libpq connection string. */
static enum store_rc store_poke_open(const char *dir, const char *const *tables, struct store **s)
{
    struct store_options o = {.tables = tables};
    if (strncmp(dir, "pg:", 3) != 0)
        return store_open(dir, &o, s);
    o.backend = STORE_BACKEND_POSTGRESQL;
    o.pg_conninfo = dir + 3;
    o.pg_pool_size = 1;
    return store_open(NULL, &o, s);
}

static int store_poke_put(const char *dir, char **a)
{
    FILE *f = fopen(a[4], "rb");
    if (!f)
        return 1;
    static char data[1 << 20];
    size_t len = fread(data, 1, sizeof data, f);
    fclose(f);
    struct store *s;
    struct store_txn *t;
    char etag[STORE_ETAG_MAX];
    struct doc_key k = {a[0], a[1], a[2], a[3]};
    if (store_poke_open(dir, NULL, &s) != STORE_OK)
        return 1;
    int rc = store_txn_begin(s, true, &t) == STORE_OK &&
                     store_doc_put(t, &k, data, len, etag) == STORE_OK
                 ? store_txn_commit(t) != STORE_OK
                 : 1;
    store_close(s);
    return rc;
}

static int store_poke_quota(const char *dir, const char *xui, const char *bytes)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    unsigned char v[8];
    uint64_t n = strtoull(bytes, NULL, 10);
    for (int i = 7; i >= 0; i--, n >>= 8)
        v[i] = (unsigned char)(n & 0xff);
    MDB_val k = {strlen(xui), (void *)xui}, val = {8, v};
    int rc = mdb_env_create(&env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(env, 64);
    if (rc == 0)
        rc = mdb_env_open(env, dir, 0, 0600);
    if (rc == 0)
        rc = mdb_txn_begin(env, NULL, 0, &txn);
    if (rc == 0 && (rc = mdb_dbi_open(txn, "quota", 0, &dbi)) == 0 &&
        (rc = mdb_put(txn, dbi, &k, &val, 0)) == 0)
        rc = mdb_txn_commit(txn);
    mdb_env_close(env);
    return rc != 0;
}

static int store_poke_kvdel(const char *dir, const char *table, const char *key)
{
    const char *tables[] = {table, NULL};
    struct store *s;
    struct store_txn *t;
    if (store_poke_open(dir, tables, &s) != STORE_OK)
        return 1;
    int rc = store_txn_begin(s, true, &t) == STORE_OK &&
                     store_kv_del(t, table, key, strlen(key)) == STORE_OK
                 ? store_txn_commit(t) != STORE_OK
                 : 1;
    store_close(s);
    return rc;
}

static int store_poke_hold(const char *dir)
{
    MDB_env *env;
    MDB_txn *txn;
    int rc = mdb_env_create(&env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(env, 64);
    if (rc == 0)
        rc = mdb_env_open(env, dir, 0, 0600);
    if (rc == 0 && (rc = mdb_txn_begin(env, NULL, 0, &txn)) == 0) {
        fputs("held\n", stdout);
        fflush(stdout);
        char buf[256];
        while (fread(buf, 1, sizeof buf, stdin) > 0)
            ;
        mdb_txn_abort(txn);
    }
    mdb_env_close(env);
    return rc != 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[2], "hold") == 0)
        return store_poke_hold(argv[1]);
    if (argc == 8 && strcmp(argv[2], "put") == 0)
        return store_poke_put(argv[1], argv + 3);
    if (argc == 5 && strcmp(argv[2], "quota") == 0)
        return store_poke_quota(argv[1], argv[3], argv[4]);
    if (argc == 5 && strcmp(argv[2], "kvdel") == 0)
        return store_poke_kvdel(argv[1], argv[3], argv[4]);
    fputs("usage: store_poke DIR put AUID TREE XUI PATH FILE | quota XUI BYTES | "
          "kvdel TABLE KEY | hold\n",
          stderr);
    return 2;
}
