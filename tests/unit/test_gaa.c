/* Unit suite for GAA at the proxy: aggproxy/gba.c (TS 33.220 Annex B key derivation, Annex H.3
 * NAF_Id, User-Agent token, realm, password, the built-in bootstrapping store) and
 * aggproxy/identity.c (X-3GPP-Intended-Identity).
 *
 * The key derivation is checked two ways, both written here from the definition of TS 33.220
 * Annex B.2 and not from gba.c: an S string assembled byte by byte in this file and fed to
 * HMAC-SHA-256, and constants computed outside the project (Python's hmac module) for the same
 * inputs. */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/hmac.h>

#include "buf.h"
#include "gba.h"
#include "identity.h"
#include "log.h"
#include "store.h"
#include "users.h"
#include "unit.h"

/* Inputs shared by the KDF tests: Ks = 00..1f, RAND = 10..1f. */
static void kdf_inputs(unsigned char ks[32], unsigned char rand[16])
{
    for (int i = 0; i < 32; i++)
        ks[i] = (unsigned char)i;
    for (int i = 0; i < 16; i++)
        rand[i] = (unsigned char)(0x10 + i);
}

static void to_hex(const unsigned char *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

/* TS 33.220 Annex B.2.1, spelled out: S = FC || P0 || L0 || P1 || L1 || P2 || L2 || P3 || L3. */
static size_t spec_s(const unsigned char rand[16], const char *impi, const unsigned char *naf,
                     size_t naflen, unsigned char *s)
{
    size_t n = 0;
    s[n++] = 0x01;              /* FC */
    memcpy(s + n, "gba-me", 6); /* P0 */
    n += 6;
    s[n++] = 0x00; /* L0 = 6 */
    s[n++] = 0x06;
    memcpy(s + n, rand, 16); /* P1 = RAND */
    n += 16;
    s[n++] = 0x00; /* L1 = 16 */
    s[n++] = 0x10;
    size_t il = strlen(impi); /* P2 = IMPI */
    memcpy(s + n, impi, il);
    n += il;
    s[n++] = (unsigned char)(il >> 8); /* L2 */
    s[n++] = (unsigned char)(il & 0xff);
    memcpy(s + n, naf, naflen); /* P3 = NAF_Id */
    n += naflen;
    s[n++] = (unsigned char)(naflen >> 8); /* L3 */
    s[n++] = (unsigned char)(naflen & 0xff);
    return n;
}

static void test_kdf_against_spec(void)
{
    unsigned char ks[32], rand[16];
    kdf_inputs(ks, rand);
    const char *impi = "alice@ims.example.com";
    /* NAF_Id for plain HTTP Digest: FQDN || 01 00 00 00 02 (Annex H.3). */
    const unsigned char naf[] = "xcap.example.com\x01\x00\x00\x00\x02";
    size_t naflen = sizeof naf - 1;
    unsigned char s[512], want[32], got[32];
    unsigned int wlen = 0;
    size_t slen = spec_s(rand, impi, naf, naflen, s);
    CU_ASSERT_EQUAL(slen, 1 + 6 + 2 + 16 + 2 + strlen(impi) + 2 + naflen + 2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(HMAC(EVP_sha256(), ks, 32, s, slen, want, &wlen));
    CU_ASSERT_EQUAL(gba_kdf(ks, rand, impi, naf, naflen, got), 0);
    CU_ASSERT_EQUAL(memcmp(got, want, 32), 0);

    /* The same value computed outside the project. */
    char hex[65];
    to_hex(got, 32, hex);
    CU_ASSERT_STRING_EQUAL(hex, "c9f3e1e0b11b0cc54613e12c8f5d8740abf8ab491eac6e5c57e4dbf71dbc212d");

    /* Every input matters. */
    unsigned char other[32];
    CU_ASSERT_EQUAL(gba_kdf(ks, rand, "bob@ims.example.com", naf, naflen, other), 0);
    CU_ASSERT_NOT_EQUAL(memcmp(other, got, 32), 0);
    rand[0] ^= 1;
    CU_ASSERT_EQUAL(gba_kdf(ks, rand, impi, naf, naflen, other), 0);
    CU_ASSERT_NOT_EQUAL(memcmp(other, got, 32), 0);
    rand[0] ^= 1;
    ks[31] ^= 1;
    CU_ASSERT_EQUAL(gba_kdf(ks, rand, impi, naf, naflen, other), 0);
    CU_ASSERT_NOT_EQUAL(memcmp(other, got, 32), 0);

    /* Bounds. */
    char big[GBA_IMPI_MAX + 2];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CU_ASSERT_EQUAL(gba_kdf(ks, rand, big, naf, naflen, other), -1);
    CU_ASSERT_EQUAL(gba_kdf(ks, rand, impi, naf, GBA_NAF_ID_MAX + 1, other), -1);
}

static void test_naf_id(void)
{
    unsigned char ua[5];
    gba_ua_id(-1, ua);
    CU_ASSERT_EQUAL(memcmp(ua, "\x01\x00\x00\x00\x02", 5), 0);
    gba_ua_id(0x1301, ua);
    CU_ASSERT_EQUAL(memcmp(ua, "\x01\x00\x01\x13\x01", 5), 0);
    gba_ua_id(0xc02f, ua);
    CU_ASSERT_EQUAL(memcmp(ua, "\x01\x00\x01\xc0\x2f", 5), 0);

    unsigned char id[GBA_NAF_ID_MAX];
    size_t len = 0;
    CU_ASSERT_EQUAL(gba_naf_id("XCAP.Example.com", 0x1302, id, &len), 0);
    CU_ASSERT_EQUAL(len, 16 + 5);
    CU_ASSERT_EQUAL(memcmp(id, "xcap.example.com\x01\x00\x01\x13\x02", len), 0);
    CU_ASSERT_EQUAL(gba_naf_id("", -1, id, &len), -1);

    /* TLS suite in the NAF_Id changes the key (GAA-7): the second outside-computed constant. */
    unsigned char ks[32], rand[16], key[32];
    kdf_inputs(ks, rand);
    CU_ASSERT_EQUAL(gba_naf_id("xcap.example.com", 0x1301, id, &len), 0);
    CU_ASSERT_EQUAL(gba_kdf(ks, rand, "alice@ims.example.com", id, len, key), 0);
    char hex[65];
    to_hex(key, 32, hex);
    CU_ASSERT_STRING_EQUAL(hex, "5efa64d3c26de9ab19d798d2a8dc1dba17eb566078eed7c6ea4f6a59bddf8a80");
}

static void test_user_agent(void)
{
    CU_ASSERT_TRUE(gba_user_agent("3gpp-gba"));
    CU_ASSERT_TRUE(gba_user_agent("XCAP-client/1.0 3gpp-gba"));
    CU_ASSERT_TRUE(gba_user_agent("3GPP-GBA/2.0 foo"));
    CU_ASSERT_TRUE(gba_user_agent("foo (bar) 3gpp-gba"));
    CU_ASSERT_FALSE(gba_user_agent(NULL));
    CU_ASSERT_FALSE(gba_user_agent(""));
    CU_ASSERT_FALSE(gba_user_agent("curl/8.0"));
    CU_ASSERT_FALSE(gba_user_agent("3gpp-gba-digest"));
    CU_ASSERT_FALSE(gba_user_agent("x3gpp-gba"));
    CU_ASSERT_FALSE(gba_user_agent("foo/3gpp-gba"));
    CU_ASSERT_FALSE(gba_user_agent("foo (3gpp-gba)"));
    CU_ASSERT_FALSE(gba_user_agent("foo (a (3gpp-gba) b)"));
    CU_ASSERT_FALSE(gba_user_agent("foo (unclosed 3gpp-gba"));
}

static void test_host_realm_password(void)
{
    char h[64];
    CU_ASSERT_EQUAL(gba_host_name("XCAP.example.com:8443", h, sizeof h), 0);
    CU_ASSERT_STRING_EQUAL(h, "xcap.example.com");
    CU_ASSERT_EQUAL(gba_host_name("xcap.example.com", h, sizeof h), 0);
    CU_ASSERT_STRING_EQUAL(h, "xcap.example.com");
    CU_ASSERT_EQUAL(gba_host_name("[::1]:80", h, sizeof h), 0);
    CU_ASSERT_STRING_EQUAL(h, "[::1]");
    CU_ASSERT_EQUAL(gba_host_name("", h, sizeof h), -1);
    CU_ASSERT_EQUAL(gba_host_name(":80", h, sizeof h), -1);
    CU_ASSERT_EQUAL(gba_host_name("a:b", h, sizeof h), -1);
    CU_ASSERT_EQUAL(gba_host_name("a b", h, sizeof h), -1);
    CU_ASSERT_EQUAL(gba_host_name("a\"b", h, sizeof h), -1);
    CU_ASSERT_EQUAL(gba_host_name("a:123456", h, sizeof h), -1);
    CU_ASSERT_EQUAL(gba_host_name("abcdefgh", h, 4), -1);

    char realm[GBA_REALM_MAX];
    CU_ASSERT_EQUAL(gba_realm("xcap.example.com", realm, sizeof realm), 0);
    CU_ASSERT_STRING_EQUAL(realm, "3GPP-bootstrapping@xcap.example.com");
    CU_ASSERT_EQUAL(gba_realm("xcap.example.com", realm, 10), -1);

    unsigned char key[32];
    for (int i = 0; i < 32; i++)
        key[i] = (unsigned char)(0xff - i);
    char pw[GBA_PASSWORD_MAX];
    size_t len = 0;
    CU_ASSERT_EQUAL(gba_password(key, GBA_PASSWORD_BASE64, pw, &len), 0);
    CU_ASSERT_EQUAL(len, 44);
    CU_ASSERT_STRING_EQUAL(pw, "//79/Pv6+fj39vX08/Lx8O/u7ezr6uno5+bl5OPi4eA=");
    CU_ASSERT_EQUAL(gba_password(key, GBA_PASSWORD_RAW, pw, &len), 0);
    CU_ASSERT_EQUAL(len, 32);
    CU_ASSERT_EQUAL(memcmp(pw, key, 32), 0);

    unsigned char r[16];
    CU_ASSERT_EQUAL(gba_base64_decode("EBESExQVFhcYGRobHB0eHw==", 24, r, 16), 0);
    CU_ASSERT_EQUAL(r[0], 0x10);
    CU_ASSERT_EQUAL(r[15], 0x1f);
    CU_ASSERT_EQUAL(gba_base64_decode("EBESExQVFhcYGRobHB0eHw", 22, r, 16), 0);
    CU_ASSERT_EQUAL(gba_base64_decode("EBESExQVFhcYGRobHB0eHw==", 24, r, 15), -1);
    CU_ASSERT_EQUAL(gba_base64_decode("EBESExQVFhcYGRobHB0e!w==", 24, r, 16), -1);
    CU_ASSERT_EQUAL(gba_base64_decode("EBESExQVFhcYGRobHB0eHx==", 24, r, 16), -1);
}

/* ---- The built-in store ------------------------------------------------------------------- */

static char dir[64];
static struct store *st;

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int store_init(void)
{
    snprintf(dir, sizeof dir, "/tmp/xdm-test-gaa-XXXXXX");
    return mkdtemp(dir) && users_open(dir, &st) == USERS_OK ? 0 : -1;
}

static int store_clean(void)
{
    store_close(st);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

#define BTID "EBESExQVFhcYGRobHB0eHw==@bsf.example.com"

static struct gba_record alice_record(const char *const *impus, size_t n, int64_t expires)
{
    struct gba_record r = {.btid = BTID,
                           .impi = "alice@ims.example.com",
                           .expires = expires,
                           .impus = impus,
                           .n_impus = n};
    kdf_inputs(r.ks, r.rand);
    return r;
}

struct seen {
    int n;
    char line[512];
};

static int collect(void *cls, const struct gba_record *r)
{
    struct seen *s = cls;
    s->n++;
    snprintf(s->line, sizeof s->line, "%s|%s|%zu|%s|%02x%02x", r->btid, r->impi, r->n_impus,
             r->impus[r->n_impus - 1], r->ks[0], r->rand[15]);
    return 0;
}

static void test_store_records(void)
{
    const char *impus[] = {"sip:alice@example.com", "tel:+15551234"};
    int64_t now = (int64_t)time(NULL);
    struct gba_record r = alice_record(impus, 2, now + 600);
    CU_ASSERT_EQUAL(gba_add(st, &r), GBA_OK);
    CU_ASSERT_EQUAL(gba_add(st, &r), GBA_EXISTS);
    struct seen s = {0};
    CU_ASSERT_EQUAL(gba_list(st, collect, &s), GBA_OK);
    CU_ASSERT_EQUAL(s.n, 1);
    CU_ASSERT_STRING_EQUAL(s.line, BTID "|alice@ims.example.com|2|tel:+15551234|001f");

    /* fetch derives Ks_NAF for the NAF_Id asked for, equal to the KDF's */
    unsigned char naf[GBA_NAF_ID_MAX], want[32];
    size_t naflen;
    CU_ASSERT_EQUAL(gba_naf_id("xcap.example.com", -1, naf, &naflen), 0);
    CU_ASSERT_EQUAL(gba_kdf(r.ks, r.rand, r.impi, naf, naflen, want), 0);
    struct gba_key k;
    CU_ASSERT_EQUAL_FATAL(gba_store_fetch(st, BTID, naf, naflen, now, &k), 0);
    CU_ASSERT_EQUAL(memcmp(k.ks_naf, want, 32), 0);
    CU_ASSERT_EQUAL(k.expires, now + 600);
    CU_ASSERT_STRING_EQUAL(k.impi, "alice@ims.example.com");
    CU_ASSERT_EQUAL_FATAL(k.n_impus, 2);
    CU_ASSERT_STRING_EQUAL(k.impus[0], "sip:alice@example.com");
    CU_ASSERT_STRING_EQUAL(k.impus[1], "tel:+15551234");
    gba_key_release(&k);
    CU_ASSERT_PTR_NULL(k.impi);

    /* expired at its expiry second (GAA-5), unknown, malformed */
    CU_ASSERT_EQUAL(gba_store_fetch(st, BTID, naf, naflen, now + 600, &k), 1);
    CU_ASSERT_EQUAL(gba_store_fetch(st, BTID, naf, naflen, now + 599, &k), 0);
    gba_key_release(&k);
    CU_ASSERT_EQUAL(gba_store_fetch(st, "nobody@bsf", naf, naflen, now, &k), 1);
    CU_ASSERT_EQUAL(gba_store_fetch(st, "with space", naf, naflen, now, &k), 1);
    CU_ASSERT_EQUAL(gba_store_fetch(st, "", naf, naflen, now, &k), 1);

    CU_ASSERT_EQUAL(gba_del(st, BTID), GBA_OK);
    CU_ASSERT_EQUAL(gba_del(st, BTID), GBA_NOT_FOUND);
    CU_ASSERT_EQUAL(gba_store_fetch(st, BTID, naf, naflen, now, &k), 1);
    s.n = 0;
    CU_ASSERT_EQUAL(gba_list(st, collect, &s), GBA_OK);
    CU_ASSERT_EQUAL(s.n, 0);
}

static void test_store_bad_records(void)
{
    const char *ok[] = {"sip:alice@example.com"};
    const char *bad1[] = {"no-scheme"};
    const char *bad2[] = {"sip:a\"b@example.com"};
    const char *bad3[] = {"sip:a@example.com, sip:b@example.com"};
    int64_t now = (int64_t)time(NULL);
    struct gba_record r = alice_record(ok, 0, now + 60);
    CU_ASSERT_EQUAL(gba_add(st, &r), GBA_BAD); /* no IMPU */
    r = alice_record(bad1, 1, now + 60);
    CU_ASSERT_EQUAL(gba_add(st, &r), GBA_BAD);
    r = alice_record(bad2, 1, now + 60);
    CU_ASSERT_EQUAL(gba_add(st, &r), GBA_BAD);
    r = alice_record(bad3, 1, now + 60);
    CU_ASSERT_EQUAL(gba_add(st, &r), GBA_BAD);
    r = alice_record(ok, 1, now + 60);
    r.btid = "has space@bsf";
    CU_ASSERT_EQUAL(gba_add(st, &r), GBA_BAD);
    r.btid = "quote\"@bsf";
    CU_ASSERT_EQUAL(gba_add(st, &r), GBA_BAD);
    r.btid = BTID;
    r.impi = "";
    CU_ASSERT_EQUAL(gba_add(st, &r), GBA_BAD);
    r.impi = "a\nb";
    CU_ASSERT_EQUAL(gba_add(st, &r), GBA_BAD);
    CU_ASSERT_EQUAL(gba_del(st, "bad btid"), GBA_BAD);
    struct seen s = {0};
    CU_ASSERT_EQUAL(gba_list(st, collect, &s), GBA_OK);
    CU_ASSERT_EQUAL(s.n, 0);
}

/* ---- Identities --------------------------------------------------------------------------- */

static void test_intended_identity(void)
{
    char out[IDENTITY_MAX + 1];
    CU_ASSERT_EQUAL(identity_parse("\"sip:alice@example.com\"", out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, "sip:alice@example.com");
    CU_ASSERT_EQUAL(identity_parse("  <tel:+15551234> ", out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, "tel:+15551234");
    CU_ASSERT_EQUAL(identity_parse("sip:bob@example.com", out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, "sip:bob@example.com");
    const char *bad[] = {
        "",
        "\"\"",
        "\"sip:a@example.com",
        "sip:a@example.com\"",
        "\"sip:a@example.com\", \"sip:b@example.com\"",
        "sip:a@example.com,sip:b@example.com",
        "\"sip:a\\\"b@example.com\"",
        "\"sip:a b@example.com\"",
        "<sip:a@example.com\"",
        "alice",
        ":alice",
        "sip:",
        "1sip:a@example.com",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (identity_parse(bad[i], out, sizeof out) != -1)
            printf("\n  accepted [%s]\n", bad[i]);
        CU_ASSERT_EQUAL(identity_parse(bad[i], out, sizeof out), -1);
    }
    char longid[IDENTITY_MAX + 10];
    memcpy(longid, "sip:", 4);
    memset(longid + 4, 'a', sizeof longid - 5);
    longid[sizeof longid - 1] = '\0';
    CU_ASSERT_EQUAL(identity_parse(longid, out, sizeof out), -1);
    CU_ASSERT_EQUAL(identity_parse("sip:a@example.com", out, 5), -1);

    const char *ids[] = {"sip:alice@example.com", "tel:+15551234"};
    CU_ASSERT_EQUAL(identity_find(ids, 2, "sip:alice@EXAMPLE.com"), 0);
    CU_ASSERT_EQUAL(identity_find(ids, 2, "SIP:alice@example.com"), 0);
    CU_ASSERT_EQUAL(identity_find(ids, 2, "tel:+15551234"), 1);
    CU_ASSERT_EQUAL(identity_find(ids, 2, "sip:Alice@example.com"), -1);
    CU_ASSERT_EQUAL(identity_find(ids, 2, "sip:bob@example.com"), -1);
    CU_ASSERT_EQUAL(identity_find(ids, 2, "tel:+15551235"), -1);
    CU_ASSERT_EQUAL(identity_find(ids, 0, "sip:alice@example.com"), -1);

    struct buf b;
    buf_init(&b, 64);
    CU_ASSERT_EQUAL(identity_quote("sip:alice@example.com", &b), 0);
    CU_ASSERT_STRING_EQUAL(b.data, "\"sip:alice@example.com\"");
    buf_release(&b);
}

/* Users with further identities (xdmctl user add --impu). */
static void test_user_identities(void)
{
    const char *ids[] = {"tel:+15551234", "sip:alice.work@example.com"};
    CU_ASSERT_EQUAL(users_add_ids(st, "sip:alice@example.com", NULL, NULL, "pw", ids, 2), USERS_OK);
    struct users_cred c;
    CU_ASSERT_EQUAL_FATAL(users_lookup(st, "example.com", "alice", &c), USERS_OK);
    CU_ASSERT_EQUAL_FATAL(c.n_ids, 2);
    CU_ASSERT_STRING_EQUAL(c.ids[0], "tel:+15551234");
    CU_ASSERT_STRING_EQUAL(c.ids[1], "sip:alice.work@example.com");
    users_cred_release(&c);
    const char *dup[] = {"tel:+1", "tel:+1"};
    const char *self[] = {"sip:bob@Example.com"};
    const char *bad[] = {"not a uri"};
    CU_ASSERT_EQUAL(users_add_ids(st, "sip:bob@example.com", NULL, NULL, "pw", dup, 2),
                    USERS_BAD_ID);
    CU_ASSERT_EQUAL(users_add_ids(st, "sip:bob@example.com", NULL, NULL, "pw", self, 1),
                    USERS_BAD_ID);
    CU_ASSERT_EQUAL(users_add_ids(st, "sip:bob@example.com", NULL, NULL, "pw", bad, 1),
                    USERS_BAD_ID);
    CU_ASSERT_EQUAL(users_lookup(st, "example.com", "bob", &c), USERS_NOT_FOUND);
    /* del removes the identities with the user */
    CU_ASSERT_EQUAL(users_del(st, "sip:alice@example.com"), USERS_OK);
    CU_ASSERT_EQUAL(users_add(st, "sip:alice@example.com", NULL, NULL, "pw"), USERS_OK);
    CU_ASSERT_EQUAL_FATAL(users_lookup(st, "example.com", "alice", &c), USERS_OK);
    CU_ASSERT_EQUAL(c.n_ids, 0);
    users_cred_release(&c);
    CU_ASSERT_EQUAL(users_del(st, "sip:alice@example.com"), USERS_OK);
}

static CU_TestInfo kdf_tests[] = {
    {"Ks_NAF against TS 33.220 Annex B", test_kdf_against_spec},
    {"NAF_Id and Ua protocol identifier", test_naf_id},
    {"3gpp-gba product token", test_user_agent},
    {"host, realm, password", test_host_realm_password},
    CU_TEST_INFO_NULL,
};

static CU_TestInfo store_tests[] = {
    {"add, list, fetch, expiry, del", test_store_records},
    {"bad records", test_store_bad_records},
    {"users with further identities", test_user_identities},
    CU_TEST_INFO_NULL,
};

static CU_TestInfo identity_tests[] = {
    {"X-3GPP-Intended-Identity", test_intended_identity},
    CU_TEST_INFO_NULL,
};

int main(void)
{
    log_init("test_gaa", LOG_ERROR);
    CU_SuiteInfo suites[] = {
        {"gba", NULL, NULL, NULL, NULL, kdf_tests},
        {"gba store", store_init, store_clean, NULL, NULL, store_tests},
        {"identity", NULL, NULL, NULL, NULL, identity_tests},
        CU_SUITE_INFO_NULL,
    };
    return unit_run(suites);
}
