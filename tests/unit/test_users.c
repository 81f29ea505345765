/* Unit suite for aggproxy/users.c: XUI splitting, add/del/list, the stored HA1 values, duplicates,
 * and the digest lookup callback, on a real LMDB store in a temporary directory. */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"
#include "unit.h"
#include "users.h"

static char test_dir[64];
static struct store *test_store;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int suite_init(void)
{
    snprintf(test_dir, sizeof test_dir, "/tmp/xdm-test-users-XXXXXX");
    if (!mkdtemp(test_dir))
        return -1;
    /* a nested path: users_open creates the missing parents */
    char dir[128];
    snprintf(dir, sizeof dir, "%s/var/aggproxy", test_dir);
    return users_open(dir, &test_store) == USERS_OK ? 0 : -1;
}

static int suite_clean(void)
{
    store_close(test_store);
    test_store = NULL;
    return nftw(test_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void split_ok(const char *xui, const char *user, const char *domain)
{
    char u[USERS_NAME_MAX + 1], d[USERS_NAME_MAX + 1];
    enum users_rc rc = users_xui_split(xui, u, sizeof u, d, sizeof d);
    CU_ASSERT_EQUAL(rc, USERS_OK);
    if (rc == USERS_OK) {
        CU_ASSERT_STRING_EQUAL(u, user);
        CU_ASSERT_STRING_EQUAL(d, domain);
    }
}

static void split_bad(const char *xui)
{
    char u[USERS_NAME_MAX + 1], d[USERS_NAME_MAX + 1];
    enum users_rc rc = users_xui_split(xui, u, sizeof u, d, sizeof d);
    if (rc != USERS_BAD_XUI)
        printf("\n  [%s] accepted\n", xui);
    CU_ASSERT_EQUAL(rc, USERS_BAD_XUI);
}

static void test_xui_split(void)
{
    split_ok("sip:alice@example.com", "alice", "example.com");
    split_ok("SIPS:Bob@Example.COM", "Bob", "example.com");
    split_ok("sip:carol@example.com:5061;transport=tls", "carol", "example.com");
    split_ok("sip:dave:pw@host.example", "dave", "host.example");
    split_ok("sip:eve@[2001:db8::1]:5060", "eve", "[2001:db8::1]");
    split_ok("sip:+1-555@example.com;user=phone", "+1-555", "example.com");
    /* other schemes are valid XUIs with nothing to derive */
    split_ok("tel:+15551234", "", "");
    split_ok("urn:uuid:f81d4fae", "", "");
    split_bad("");
    split_bad("alice");
    split_bad("sip:");
    split_bad("sip:example.com");
    split_bad("sip:@example.com");
    split_bad("sip:alice@");
    split_bad("sip:alice@;x");
    split_bad("sip:alice@[::1");
    split_bad("sip:alice@example.com/x");
    split_bad("sip:al ice@example.com");
    split_bad("sip:\"alice\"@example.com");
    split_bad("sip:alice@example.com?subject=x");
    split_bad("1sip:alice@example.com");
    split_bad("sip:alice\n@example.com");
    char longxui[USERS_XUI_MAX + 8];
    memset(longxui, 'a', sizeof longxui - 1);
    memcpy(longxui, "sip:a@", 6);
    longxui[sizeof longxui - 1] = '\0';
    split_bad(longxui);
}

struct collected {
    char lines[8][600];
    int n;
};

static int collect(void *cls, const struct users_entry *u)
{
    struct collected *c = cls;
    if (c->n < 8)
        snprintf(c->lines[c->n], sizeof c->lines[0], "%s|%s|%s", u->xui, u->username, u->realm);
    c->n++;
    return 0;
}

static void test_add_list_del(void)
{
    CU_ASSERT_EQUAL(users_add(test_store, "sip:alice@Example.com", NULL, NULL, "pw"), USERS_OK);
    CU_ASSERT_EQUAL(users_add(test_store, "tel:+15551234", "t", "example.net", "x y"), USERS_OK);
    CU_ASSERT_EQUAL(users_add(test_store, "sip:bob@example.com", "robert", "corp", "b"), USERS_OK);

    struct collected c = {.n = 0};
    CU_ASSERT_EQUAL(users_list(test_store, collect, &c), USERS_OK);
    CU_ASSERT_EQUAL_FATAL(c.n, 3);
    /* XUI byte order */
    CU_ASSERT_STRING_EQUAL(c.lines[0], "sip:alice@Example.com|alice|example.com");
    CU_ASSERT_STRING_EQUAL(c.lines[1], "sip:bob@example.com|robert|corp");
    CU_ASSERT_STRING_EQUAL(c.lines[2], "tel:+15551234|t|example.net");

    CU_ASSERT_EQUAL(users_del(test_store, "sip:bob@example.com"), USERS_OK);
    CU_ASSERT_EQUAL(users_del(test_store, "sip:bob@example.com"), USERS_NOT_FOUND);
    struct users_cred cred;
    CU_ASSERT_EQUAL(users_lookup(test_store, "corp", "robert", &cred), USERS_NOT_FOUND);
    c.n = 0;
    users_list(test_store, collect, &c);
    CU_ASSERT_EQUAL(c.n, 2);
    CU_ASSERT_EQUAL(users_del(test_store, "tel:+15551234"), USERS_OK);
    CU_ASSERT_EQUAL(users_del(test_store, "sip:alice@Example.com"), USERS_OK);
    c.n = 0;
    users_list(test_store, collect, &c);
    CU_ASSERT_EQUAL(c.n, 0);
}

/* HA1 = H(username:realm:password); expected values computed independently. */
static void test_ha1_values(void)
{
    CU_ASSERT_EQUAL_FATAL(users_add(test_store, "sip:alice@example.com", NULL, NULL, "pw"),
                          USERS_OK);
    CU_ASSERT_EQUAL_FATAL(users_add(test_store, "tel:+1", "t", "example.net", "x y"), USERS_OK);
    struct users_cred c;
    CU_ASSERT_EQUAL_FATAL(users_lookup(test_store, "example.com", "alice", &c), USERS_OK);
    CU_ASSERT_STRING_EQUAL(c.xui, "sip:alice@example.com");
    CU_ASSERT_STRING_EQUAL(c.ha1_md5, "981a4ef40955b75633f737a3ece44230");
    CU_ASSERT_STRING_EQUAL(c.ha1_sha256,
                           "9f884df906462506bdb9e9c2d6ada32f28a0232dd538038d4e3a4f7f88dab784");
    users_cred_release(&c);
    CU_ASSERT_EQUAL_FATAL(users_lookup(test_store, "example.net", "t", &c), USERS_OK);
    CU_ASSERT_STRING_EQUAL(c.xui, "tel:+1");
    CU_ASSERT_STRING_EQUAL(c.ha1_md5, "83a4e3e52f3dd982aeca0b638f19aae2");
    CU_ASSERT_STRING_EQUAL(c.ha1_sha256,
                           "2988cdc3dac0eb89ad5f6b6231e65627724ef4bb88428e778a0bec12e7b0a02e");
    users_cred_release(&c);
    /* lookups are exact: realm and username are case-sensitive */
    CU_ASSERT_EQUAL(users_lookup(test_store, "example.com", "Alice", &c), USERS_NOT_FOUND);
    CU_ASSERT_EQUAL(users_lookup(test_store, "Example.com", "alice", &c), USERS_NOT_FOUND);
    CU_ASSERT_EQUAL(users_lookup(test_store, "example.com", "", &c), USERS_NOT_FOUND);

    /* the digest callback hands out the HA1 of the requested hash and the XUI */
    struct digest_cred dc = {{0}, NULL};
    CU_ASSERT_EQUAL(users_digest_lookup(test_store, "example.com", "alice", DIGEST_SHA256, &dc), 0);
    CU_ASSERT_STRING_EQUAL(dc.ha1,
                           "9f884df906462506bdb9e9c2d6ada32f28a0232dd538038d4e3a4f7f88dab784");
    CU_ASSERT_STRING_EQUAL(dc.identity, "sip:alice@example.com");
    free(dc.identity);
    dc.identity = NULL;
    CU_ASSERT_EQUAL(users_digest_lookup(test_store, "example.com", "alice", DIGEST_MD5, &dc), 0);
    CU_ASSERT_STRING_EQUAL(dc.ha1, "981a4ef40955b75633f737a3ece44230");
    free(dc.identity);
    CU_ASSERT_EQUAL(users_digest_lookup(test_store, "example.com", "nobody", DIGEST_MD5, &dc), 1);

    users_del(test_store, "sip:alice@example.com");
    users_del(test_store, "tel:+1");
}

static void test_duplicates_and_errors(void)
{
    CU_ASSERT_EQUAL_FATAL(users_add(test_store, "sip:alice@example.com", NULL, NULL, "pw"),
                          USERS_OK);
    CU_ASSERT_EQUAL(users_add(test_store, "sip:alice@example.com", NULL, NULL, "other"),
                    USERS_EXISTS);
    /* the same Digest identity for another XUI */
    CU_ASSERT_EQUAL(users_add(test_store, "sips:alice@example.com", NULL, NULL, "x"),
                    USERS_CRED_TAKEN);
    CU_ASSERT_EQUAL(users_add(test_store, "sip:al@example.org", "alice", "example.com", "x"),
                    USERS_CRED_TAKEN);
    /* the failed adds changed nothing: the first password still holds */
    struct users_cred c;
    CU_ASSERT_EQUAL_FATAL(users_lookup(test_store, "example.com", "alice", &c), USERS_OK);
    CU_ASSERT_STRING_EQUAL(c.xui, "sip:alice@example.com");
    CU_ASSERT_STRING_EQUAL(c.ha1_md5, "981a4ef40955b75633f737a3ece44230");
    users_cred_release(&c);

    CU_ASSERT_EQUAL(users_add(test_store, "alice", NULL, NULL, "x"), USERS_BAD_XUI);
    CU_ASSERT_EQUAL(users_add(test_store, "sip:example.com", NULL, NULL, "x"), USERS_BAD_XUI);
    CU_ASSERT_EQUAL(users_add(test_store, "tel:+1", NULL, NULL, "x"), USERS_BAD_XUI);
    CU_ASSERT_EQUAL(users_add(test_store, "tel:+1", "t", NULL, "x"), USERS_BAD_XUI);
    CU_ASSERT_EQUAL(users_add(test_store, "sip:x@example.com", "a\"b", NULL, "x"), USERS_BAD_NAME);
    CU_ASSERT_EQUAL(users_add(test_store, "sip:x@example.com", NULL, "r\\", "x"), USERS_BAD_NAME);
    CU_ASSERT_EQUAL(users_add(test_store, "sip:x@example.com", "", NULL, "x"), USERS_BAD_XUI);
    CU_ASSERT_EQUAL(users_add(test_store, "sip:x@example.com", NULL, NULL, NULL), USERS_BAD_NAME);
    char longpw[USERS_PASSWORD_MAX + 2];
    memset(longpw, 'p', sizeof longpw - 1);
    longpw[sizeof longpw - 1] = '\0';
    CU_ASSERT_EQUAL(users_add(test_store, "sip:x@example.com", NULL, NULL, longpw), USERS_BAD_NAME);
    longpw[USERS_PASSWORD_MAX] = '\0';
    CU_ASSERT_EQUAL(users_add(test_store, "sip:x@example.com", NULL, NULL, longpw), USERS_OK);
    CU_ASSERT_EQUAL(users_del(test_store, "sip:x@example.com"), USERS_OK);
    CU_ASSERT_EQUAL(users_del(test_store, ""), USERS_BAD_XUI);
    CU_ASSERT_EQUAL(users_del(test_store, "sip:alice@example.com"), USERS_OK);
    /* after a delete the Digest identity is free again */
    CU_ASSERT_EQUAL(users_add(test_store, "sips:alice@example.com", NULL, NULL, "x"), USERS_OK);
    CU_ASSERT_EQUAL(users_del(test_store, "sips:alice@example.com"), USERS_OK);
    CU_ASSERT_STRING_EQUAL(users_strerror(USERS_EXISTS), "user exists");
}

/* A second handle on the same directory (as xdmctl next to a running aggproxy) sees changes. */
static void test_second_handle(void)
{
    char dir[128];
    snprintf(dir, sizeof dir, "%s/var/aggproxy", test_dir);
    struct store *other;
    CU_ASSERT_EQUAL_FATAL(users_open(dir, &other), USERS_OK);
    CU_ASSERT_EQUAL(users_add(other, "sip:zed@example.com", NULL, NULL, "z"), USERS_OK);
    struct users_cred c;
    CU_ASSERT_EQUAL(users_lookup(test_store, "example.com", "zed", &c), USERS_OK);
    users_cred_release(&c);
    CU_ASSERT_EQUAL(users_del(test_store, "sip:zed@example.com"), USERS_OK);
    CU_ASSERT_EQUAL(users_lookup(other, "example.com", "zed", &c), USERS_NOT_FOUND);
    store_close(other);
}

static CU_TestInfo users_tests[] = {
    {"XUI split", test_xui_split},
    {"add, list, del", test_add_list_del},
    {"HA1 values and lookup", test_ha1_values},
    {"duplicates and bad input", test_duplicates_and_errors},
    {"second handle", test_second_handle},
    CU_TEST_INFO_NULL,
};

int main(void)
{
    CU_SuiteInfo suites[] = {
        {"users", suite_init, suite_clean, NULL, NULL, users_tests},
        CU_SUITE_INFO_NULL,
    };
    return unit_run(suites);
}
