/* Unit tests of xdmctl's data management helpers (tools/xdmctl_data.h): the file name of one
 * document selector segment (never ".", "..", hidden, or with a '/'); which store each XDMS role
 * uses, from the servers' configuration. */
#include "unit.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "xdmctl_data.h"

static void check_segment(const char *seg, const char *want)
{
    char out[64];
    CU_ASSERT_EQUAL_FATAL(xdmctl_data_segment(seg, strlen(seg), out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, want);
}

static void test_segment(void)
{
    check_segment("index", "index");
    check_segment("sip:alice@example.com", "sip:alice@example.com");
    check_segment("my friends?%", "my%20friends%3F%25");
    check_segment("a/b", "a%2Fb");
    check_segment(".hidden", "%2Ehidden");
    check_segment(".", "%2E");
    check_segment("..", "%2E.");
    check_segment("tel:+1-555;phone-context=x", "tel:+1-555;phone-context=x");
    check_segment("\xc3\xa9", "%C3%A9");
    char out[8];
    CU_ASSERT_EQUAL(xdmctl_data_segment("", 0, out, sizeof out), -1);
    CU_ASSERT_EQUAL(xdmctl_data_segment("a\0b", 3, out, sizeof out), -1);
    CU_ASSERT_EQUAL(xdmctl_data_segment("abcdefgh", 8, out, sizeof out), -1); /* no room for NUL */
    CU_ASSERT_EQUAL(xdmctl_data_segment("abcdefg", 7, out, sizeof out), 0);
    CU_ASSERT_EQUAL(xdmctl_data_segment("%%", 2, out, 6), -1); /* "%25%25" needs 7 */
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(text, f);
    fclose(f);
}

static void test_stores(void)
{
    char root[] = "/tmp/test_xdmctl_data-XXXXXX", path[512];
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(root));
    struct xdmctl_data_stores st;

    /* No configuration: every role on LMDB. */
    CU_ASSERT_EQUAL(xdmctl_data_stores_load(&st, NULL, root), 0);
    for (int i = 0; i < XDMCTL_DATA_ROLES; i++) {
        CU_ASSERT_EQUAL(st.role[i].backend, STORE_BACKEND_LMDB);
        CU_ASSERT_PTR_NULL(st.role[i].conninfo);
    }
    xdmctl_data_stores_release(&st);

    /* ROOT/xdm.conf: [xdms] for every role, a role's own section beats it; the other keys and
     * sections of the servers are not this reader's business. */
    write_text(root, "xdm.conf",
               "[aggproxy]\nhttp = 127.0.0.1:8080\n"
               "[xdms]\nstore = postgresql\npg_conninfo = host=127.0.0.1 dbname=a\n"
               "log_level = info\n"
               "[presence]\npg_timeout = 7\nhttp = 127.0.0.1:8182\n"
               "[rls]\nstore = lmdb\n");
    CU_ASSERT_EQUAL_FATAL(xdmctl_data_stores_load(&st, NULL, root), 0);
    CU_ASSERT_EQUAL(st.role[0].backend, STORE_BACKEND_POSTGRESQL);
    CU_ASSERT_STRING_EQUAL(st.role[0].conninfo, "host=127.0.0.1 dbname=a");
    CU_ASSERT_EQUAL(st.role[0].pg_timeout, 5);
    CU_ASSERT_EQUAL(st.role[1].backend, STORE_BACKEND_POSTGRESQL);
    CU_ASSERT_EQUAL(st.role[1].pg_timeout, 7);
    CU_ASSERT_EQUAL(st.role[2].backend, STORE_BACKEND_LMDB);
    CU_ASSERT_PTR_NULL(st.role[2].conninfo);
    xdmctl_data_stores_release(&st);

    /* ROOT/cluster.conf (a cluster's databases) comes first. */
    write_text(root, "cluster.conf", "[rls]\nstore = postgresql\npg_conninfo = dbname=xdm_rls\n");
    CU_ASSERT_EQUAL_FATAL(xdmctl_data_stores_load(&st, NULL, root), 0);
    CU_ASSERT_EQUAL(st.role[0].backend, STORE_BACKEND_LMDB);
    CU_ASSERT_EQUAL(st.role[2].backend, STORE_BACKEND_POSTGRESQL);
    CU_ASSERT_STRING_EQUAL(st.role[2].conninfo, "dbname=xdm_rls");
    xdmctl_data_stores_release(&st);

    /* An explicit file beats both; PostgreSQL without a connection string and a bad value of a
     * store key are refused (2: the configuration is wrong). */
    write_text(root, "bad.conf", "[presence]\nstore = postgresql\n");
    snprintf(path, sizeof path, "%s/bad.conf", root);
    CU_ASSERT_EQUAL(xdmctl_data_stores_load(&st, path, root), 2);
    write_text(root, "bad.conf", "[xdms]\nstore = oracle\n");
    CU_ASSERT_EQUAL(xdmctl_data_stores_load(&st, path, root), 2);
    snprintf(path, sizeof path, "%s/missing.conf", root);
    CU_ASSERT_EQUAL(xdmctl_data_stores_load(&st, path, root), 2);

    const char *names[] = {"xdm.conf", "cluster.conf", "bad.conf"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", root, names[i]);
        unlink(path);
    }
    rmdir(root);
}

int main(void)
{
    CU_TestInfo tests[] = {
        {"segment file names", test_segment},
        {"store of each role from the configuration", test_stores},
        CU_TEST_INFO_NULL,
    };
    CU_SuiteInfo suites[] = {
        {"xdmctl_data", NULL, NULL, NULL, NULL, tests},
        CU_SUITE_INFO_NULL,
    };
    return unit_run(suites);
}
