/* Unit suite for GAA at the proxy: aggproxy/gba.c (TS 33.220 Annex B key derivation, Annex H.3
 * NAF_Id, User-Agent token, realm, password, the built-in bootstrapping store with its allowed
 * AUIDs, the TS 24.109 §7.3 authorisation decision) and aggproxy/identity.c
 * (X-3GPP-Intended-Identity).
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

    /* TLS suite in the NAF_Id changes the key (TS 33.220 Annex H.3): the second outside-computed
     * constant. */
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

    /* expired at its expiry second (TS 33.220 §4.5.3), unknown, malformed */
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

/* ---- Allowed AUIDs (GUSS, TS 24.109 §7.3)
 * --------------------------------------------------------- */

struct seen_auids {
    int n;
    size_t n_auids;
    const char *auids_null; /* "null" when r->auids was NULL */
    char joined[256];
};

static int collect_auids(void *cls, const struct gba_record *r)
{
    struct seen_auids *s = cls;
    s->n++;
    s->n_auids = r->n_auids;
    s->auids_null = r->auids ? "set" : "null";
    s->joined[0] = '\0';
    for (size_t i = 0; i < r->n_auids; i++) {
        size_t len = strlen(s->joined);
        snprintf(s->joined + len, sizeof s->joined - len, "%s%s", i ? "," : "", r->auids[i]);
    }
    return 0;
}

static void naf_plain(unsigned char naf[GBA_NAF_ID_MAX], size_t *len)
{
    CU_ASSERT_EQUAL_FATAL(gba_naf_id("xcap.example.com", -1, naf, len), 0);
}

/* The value a version-1 record has, built here byte by byte from the layout in gba.h:
 * 0x01 | Ks | RAND | expiry (8, big-endian) | IMPI \0 | IMPU \0 ... */
static size_t v1_value(int64_t expires, const char *impi, const char *const *impus, size_t n,
                       unsigned char *out)
{
    unsigned char ks[32], rand[16];
    kdf_inputs(ks, rand);
    size_t pos = 0;
    out[pos++] = 0x01;
    memcpy(out + pos, ks, 32);
    pos += 32;
    memcpy(out + pos, rand, 16);
    pos += 16;
    for (int i = 7; i >= 0; i--)
        out[pos++] = (unsigned char)((uint64_t)expires >> (8 * i));
    memcpy(out + pos, impi, strlen(impi) + 1);
    pos += strlen(impi) + 1;
    for (size_t i = 0; i < n; i++) {
        memcpy(out + pos, impus[i], strlen(impus[i]) + 1);
        pos += strlen(impus[i]) + 1;
    }
    return pos;
}

static int raw_put(const char *btid, const unsigned char *v, size_t vlen)
{
    struct store_txn *t;
    if (store_txn_begin(st, true, &t) != STORE_OK)
        return -1;
    if (store_kv_put(t, "gba", btid, strlen(btid), v, vlen) != STORE_OK) {
        store_txn_abort(t);
        return -1;
    }
    return store_txn_commit(t) == STORE_OK ? 0 : -1;
}

/* Returns the stored value (malloc'd) and its length, or NULL. */
static unsigned char *raw_get(const char *btid, size_t *vlen)
{
    struct store_txn *t;
    void *v = NULL;
    if (store_txn_begin(st, false, &t) != STORE_OK)
        return NULL;
    if (store_kv_get(t, "gba", btid, strlen(btid), &v, vlen) != STORE_OK)
        v = NULL;
    store_txn_abort(t);
    return v;
}

static void test_store_auids_round_trip(void)
{
    const char *impus[] = {"sip:alice@example.com", "tel:+15551234"};
    const char *auids[] = {"resource-lists", "org.openmobilealliance.xcap-directory"};
    int64_t now = (int64_t)time(NULL);
    struct gba_record r = alice_record(impus, 2, now + 600);
    r.auids = auids;
    r.n_auids = 2;
    CU_ASSERT_EQUAL_FATAL(gba_add(st, &r), GBA_OK);

    /* stored as version 2 */
    size_t vlen = 0;
    unsigned char *v = raw_get(BTID, &vlen);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v);
    CU_ASSERT_EQUAL(v[0], 0x02);
    free(v);

    struct seen_auids s = {0};
    CU_ASSERT_EQUAL(gba_list(st, collect_auids, &s), GBA_OK);
    CU_ASSERT_EQUAL(s.n, 1);
    CU_ASSERT_EQUAL(s.n_auids, 2);
    CU_ASSERT_STRING_EQUAL(s.joined, "resource-lists,org.openmobilealliance.xcap-directory");
    struct seen is = {0};
    CU_ASSERT_EQUAL(gba_list(st, collect, &is), GBA_OK);
    CU_ASSERT_STRING_EQUAL(is.line, BTID "|alice@ims.example.com|2|tel:+15551234|001f");

    unsigned char naf[GBA_NAF_ID_MAX], want[32];
    size_t naflen;
    naf_plain(naf, &naflen);
    CU_ASSERT_EQUAL(gba_kdf(r.ks, r.rand, r.impi, naf, naflen, want), 0);
    struct gba_key k;
    CU_ASSERT_EQUAL_FATAL(gba_store_fetch(st, BTID, naf, naflen, now, &k), 0);
    CU_ASSERT_EQUAL(memcmp(k.ks_naf, want, 32), 0);
    CU_ASSERT_EQUAL(k.n_impus, 2);
    CU_ASSERT_EQUAL_FATAL(k.n_auids, 2);
    CU_ASSERT_STRING_EQUAL(k.auids[0], "resource-lists");
    CU_ASSERT_STRING_EQUAL(k.auids[1], "org.openmobilealliance.xcap-directory");
    CU_ASSERT_TRUE(gba_auid_allowed((const char *const *)k.auids, k.n_auids, "resource-lists", 14));
    CU_ASSERT_FALSE(gba_auid_allowed((const char *const *)k.auids, k.n_auids, "pres-rules", 10));
    gba_key_release(&k);
    CU_ASSERT_PTR_NULL(k.auids);
    CU_ASSERT_EQUAL(k.n_auids, 0);
    CU_ASSERT_EQUAL(gba_del(st, BTID), GBA_OK);

    /* without --allow: version 1, no AUIDs read back */
    r.auids = NULL;
    r.n_auids = 0;
    CU_ASSERT_EQUAL_FATAL(gba_add(st, &r), GBA_OK);
    v = raw_get(BTID, &vlen);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v);
    CU_ASSERT_EQUAL(v[0], 0x01);
    free(v);
    memset(&s, 0, sizeof s);
    CU_ASSERT_EQUAL(gba_list(st, collect_auids, &s), GBA_OK);
    CU_ASSERT_EQUAL(s.n, 1);
    CU_ASSERT_EQUAL(s.n_auids, 0);
    CU_ASSERT_STRING_EQUAL(s.auids_null, "null");
    CU_ASSERT_EQUAL_FATAL(gba_store_fetch(st, BTID, naf, naflen, now, &k), 0);
    CU_ASSERT_EQUAL(k.n_auids, 0);
    CU_ASSERT_PTR_NULL(k.auids);
    CU_ASSERT_TRUE(gba_auid_allowed((const char *const *)k.auids, k.n_auids, "pres-rules", 10));
    gba_key_release(&k);
    CU_ASSERT_EQUAL(gba_del(st, BTID), GBA_OK);
}

/* A record as written before allowed AUIDs existed (version 1, built here by hand) reads back
 * with every AUID allowed; a record without a restriction is still written byte for byte in that
 * format, so older builds keep reading it. */
static void test_store_old_format(void)
{
    const char *impus[] = {"sip:old@example.com", "tel:+15550000"};
    int64_t now = (int64_t)time(NULL);
    unsigned char v[1024];
    size_t vlen = v1_value(now + 600, "old@ims.example.com", impus, 2, v);
    CU_ASSERT_EQUAL_FATAL(raw_put(BTID, v, vlen), 0);

    struct seen s = {0};
    CU_ASSERT_EQUAL(gba_list(st, collect, &s), GBA_OK);
    CU_ASSERT_EQUAL(s.n, 1);
    CU_ASSERT_STRING_EQUAL(s.line, BTID "|old@ims.example.com|2|tel:+15550000|001f");
    unsigned char naf[GBA_NAF_ID_MAX];
    size_t naflen;
    naf_plain(naf, &naflen);
    struct gba_key k;
    CU_ASSERT_EQUAL_FATAL(gba_store_fetch(st, BTID, naf, naflen, now, &k), 0);
    CU_ASSERT_EQUAL(k.expires, now + 600);
    CU_ASSERT_EQUAL(k.n_impus, 2);
    CU_ASSERT_EQUAL(k.n_auids, 0);
    CU_ASSERT_TRUE(gba_auid_allowed((const char *const *)k.auids, k.n_auids, "rls-services", 12));
    gba_key_release(&k);
    CU_ASSERT_EQUAL(gba_del(st, BTID), GBA_OK);

    /* gba_add without AUIDs writes exactly that value */
    struct gba_record r = {.btid = BTID,
                           .impi = "old@ims.example.com",
                           .expires = now + 600,
                           .impus = impus,
                           .n_impus = 2};
    kdf_inputs(r.ks, r.rand);
    CU_ASSERT_EQUAL_FATAL(gba_add(st, &r), GBA_OK);
    size_t glen = 0;
    unsigned char *got = raw_get(BTID, &glen);
    CU_ASSERT_PTR_NOT_NULL_FATAL(got);
    CU_ASSERT_EQUAL(glen, vlen);
    CU_ASSERT_TRUE(glen == vlen && memcmp(got, v, vlen) == 0);
    free(got);
    CU_ASSERT_EQUAL(gba_del(st, BTID), GBA_OK);
}

/* Stored values that are not a valid version 1 or 2 record: fetch fails (-1), never grants. */
static void test_store_corrupt(void)
{
    const char *impus[] = {"sip:old@example.com"};
    int64_t now = (int64_t)time(NULL);
    unsigned char naf[GBA_NAF_ID_MAX];
    size_t naflen;
    naf_plain(naf, &naflen);
    unsigned char v[1024];
    struct gba_key k;
    size_t base = v1_value(now + 600, "old@ims.example.com", impus, 1, v);

    /* version 2 whose AUID list is missing (it would read as "every AUID") */
    v[0] = 0x02;
    CU_ASSERT_EQUAL_FATAL(raw_put(BTID, v, base), 0);
    CU_ASSERT_EQUAL(gba_store_fetch(st, BTID, naf, naflen, now, &k), -1);
    CU_ASSERT_EQUAL(k.n_auids, 0);
    /* ... or with the separator and nothing after it */
    v[base] = '\0';
    CU_ASSERT_EQUAL_FATAL(raw_put(BTID, v, base + 1), 0);
    CU_ASSERT_EQUAL(gba_store_fetch(st, BTID, naf, naflen, now, &k), -1);
    /* version 2 with a stored AUID gba_add would refuse */
    memcpy(v + base + 1, "a/b", 4);
    CU_ASSERT_EQUAL_FATAL(raw_put(BTID, v, base + 5), 0);
    CU_ASSERT_EQUAL(gba_store_fetch(st, BTID, naf, naflen, now, &k), -1);
    /* the same with a good AUID is fine */
    memcpy(v + base + 1, "a-b", 4);
    CU_ASSERT_EQUAL_FATAL(raw_put(BTID, v, base + 5), 0);
    CU_ASSERT_EQUAL_FATAL(gba_store_fetch(st, BTID, naf, naflen, now, &k), 0);
    CU_ASSERT_EQUAL(k.n_auids, 1);
    gba_key_release(&k);
    /* an empty string in a version 1 record */
    v[0] = 0x01;
    CU_ASSERT_EQUAL_FATAL(raw_put(BTID, v, base + 5), 0);
    CU_ASSERT_EQUAL(gba_store_fetch(st, BTID, naf, naflen, now, &k), -1);
    /* an unknown version */
    v[0] = 0x03;
    CU_ASSERT_EQUAL_FATAL(raw_put(BTID, v, base), 0);
    CU_ASSERT_EQUAL(gba_store_fetch(st, BTID, naf, naflen, now, &k), -1);
    struct seen s = {0};
    CU_ASSERT_EQUAL(gba_list(st, collect, &s), GBA_ERROR);
    CU_ASSERT_EQUAL(gba_del(st, BTID), GBA_OK);
}

static void test_store_bad_auids(void)
{
    const char *impus[] = {"sip:alice@example.com"};
    int64_t now = (int64_t)time(NULL);
    struct gba_record r = alice_record(impus, 1, now + 60);
    const char *bad[] = {"", "a/b", "a b", "a?b", "a#b", "a,b", "*", "a\tb", "a\x7f"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *one[] = {bad[i]};
        r.auids = one;
        r.n_auids = 1;
        CU_ASSERT_EQUAL(gba_add(st, &r), GBA_BAD);
        CU_ASSERT_FALSE(gba_auid_ok(bad[i]));
    }
    const char *dup[] = {"resource-lists", "pres-rules", "resource-lists"};
    r.auids = dup;
    r.n_auids = 3;
    CU_ASSERT_EQUAL(gba_add(st, &r), GBA_BAD);
    r.auids = NULL;
    r.n_auids = 1;
    CU_ASSERT_EQUAL(gba_add(st, &r), GBA_BAD);

    /* bounds: GBA_AUID_MAX bytes and GBA_AUIDS_MAX entries are the limits */
    char longest[GBA_AUID_MAX + 2];
    memset(longest, 'a', sizeof longest - 1);
    longest[sizeof longest - 1] = '\0';
    const char *too_long[] = {longest};
    r.auids = too_long;
    r.n_auids = 1;
    CU_ASSERT_EQUAL(gba_add(st, &r), GBA_BAD);
    longest[GBA_AUID_MAX] = '\0';
    CU_ASSERT_TRUE(gba_auid_ok(longest));

    static char names[GBA_AUIDS_MAX + 1][16];
    const char *many[GBA_AUIDS_MAX + 1];
    for (size_t i = 0; i <= GBA_AUIDS_MAX; i++) {
        snprintf(names[i], sizeof names[i], "auid-%zu", i);
        many[i] = names[i];
    }
    r.auids = many;
    r.n_auids = GBA_AUIDS_MAX + 1;
    CU_ASSERT_EQUAL(gba_add(st, &r), GBA_BAD);
    struct seen s = {0};
    CU_ASSERT_EQUAL(gba_list(st, collect, &s), GBA_OK);
    CU_ASSERT_EQUAL(s.n, 0);

    /* the largest record fits and reads back whole */
    many[GBA_AUIDS_MAX - 1] = longest;
    r.n_auids = GBA_AUIDS_MAX;
    CU_ASSERT_EQUAL_FATAL(gba_add(st, &r), GBA_OK);
    struct seen_auids sa = {0};
    CU_ASSERT_EQUAL(gba_list(st, collect_auids, &sa), GBA_OK);
    CU_ASSERT_EQUAL(sa.n_auids, GBA_AUIDS_MAX);
    unsigned char naf[GBA_NAF_ID_MAX];
    size_t naflen;
    naf_plain(naf, &naflen);
    struct gba_key k;
    CU_ASSERT_EQUAL_FATAL(gba_store_fetch(st, BTID, naf, naflen, now, &k), 0);
    CU_ASSERT_EQUAL_FATAL(k.n_auids, GBA_AUIDS_MAX);
    CU_ASSERT_STRING_EQUAL(k.auids[0], "auid-0");
    CU_ASSERT_STRING_EQUAL(k.auids[GBA_AUIDS_MAX - 1], longest);
    gba_key_release(&k);
    CU_ASSERT_EQUAL(gba_del(st, BTID), GBA_OK);
}

static void test_auid_allowed(void)
{
    const char *set[] = {"resource-lists", "org.openmobilealliance.pres-rules"};
    /* no restriction: everything, even an empty AUID */
    CU_ASSERT_TRUE(gba_auid_allowed(NULL, 0, "pres-rules", 10));
    CU_ASSERT_TRUE(gba_auid_allowed(NULL, 0, "", 0));
    CU_ASSERT_TRUE(gba_auid_allowed(set, 2, "resource-lists", 14));
    CU_ASSERT_TRUE(gba_auid_allowed(set, 2, "org.openmobilealliance.pres-rules", 33));
    /* the AUID is a span of the path: only its length counts */
    CU_ASSERT_TRUE(gba_auid_allowed(set, 2, "resource-lists/users/sip:a@example.com", 14));
    CU_ASSERT_FALSE(gba_auid_allowed(set, 2, "pres-rules", 10));
    CU_ASSERT_FALSE(gba_auid_allowed(set, 2, "resource-list", 13));
    CU_ASSERT_FALSE(gba_auid_allowed(set, 2, "resource-lists", 13));
    CU_ASSERT_FALSE(gba_auid_allowed(set, 2, "resource-listsx", 15));
    CU_ASSERT_FALSE(gba_auid_allowed(set, 2, "Resource-Lists", 14));
    CU_ASSERT_FALSE(gba_auid_allowed(set, 2, "resource%2Dlists", 16));
    CU_ASSERT_FALSE(gba_auid_allowed(set, 2, "", 0));
    CU_ASSERT_FALSE(gba_auid_allowed(set, 1, "org.openmobilealliance.pres-rules", 33));
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
    {"GUSS authorisation decision", test_auid_allowed},
    CU_TEST_INFO_NULL,
};

static CU_TestInfo store_tests[] = {
    {"add, list, fetch, expiry, del", test_store_records},
    {"bad records", test_store_bad_records},
    {"allowed AUIDs: round trip with and without", test_store_auids_round_trip},
    {"allowed AUIDs: version 1 records still read", test_store_old_format},
    {"allowed AUIDs: corrupt records refused", test_store_corrupt},
    {"allowed AUIDs: bad ones and bounds", test_store_bad_auids},
    {"users with further identities", test_user_identities},
    CU_TEST_INFO_NULL,
};

static CU_TestInfo identity_tests[] = {
    {"X-3GPP-Intended-Identity", test_intended_identity},
    CU_TEST_INFO_NULL,
};

int main(void)
{
    log_init("test_gaa", LOG_LEVEL_ERROR);
    CU_SuiteInfo suites[] = {
        {"gba", NULL, NULL, NULL, NULL, kdf_tests},
        {"gba store", store_init, store_clean, NULL, NULL, store_tests},
        {"identity", NULL, NULL, NULL, NULL, identity_tests},
        CU_SUITE_INFO_NULL,
    };
    return unit_run(suites);
}
