/* Fuzz target for GBA Digest at the proxy acting as a NAF (aggproxy/gba.c, aggproxy/digest*.c;
 * TS 24.109 §5.2, TS 33.222 §5.3, TS 33.220 Annex H): the User-Agent product token "3gpp-gba",
 * the Host name the NAF_Id and realm are made of, and the Authorization header whose username is
 * a B-TID, verified with the password from Ks_NAF as the proxy does (proxy_auth.c), including
 * qop=auth-int over the request body. Input:
 *   "<Host>\n<User-Agent>\n<Authorization>\n<body>"
 * where "@N@" and "@R@" in the Authorization line become a valid nonce and the right response
 * (fuzz_authz.h), so the fuzzer reaches the lookup, the digest comparison and the replay state.
 * The B-TID's base64(RAND) part and the AUIDs the key allows go through their checks too. */
#include <stdbool.h>
#include <string.h>

#include "buf.h"
#include "digest.h"
#include "fuzz.h"
#include "fuzz_authz.h"
#include "gba.h"

#define FUZZ_TARGET "/xcap-root/resource-lists/users/sip:fuzz@example.com/index"

static const unsigned char fuzz_ks_naf[GBA_KEY_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};

/* The password of every B-TID: base64(Ks_NAF) (TS 33.222 §5.3), or the raw key. */
static enum gba_password_form fuzz_form;

static int fuzz_gba_ha1(enum digest_alg alg, const char *btid, const char *realm,
                        char out[DIGEST_HEX_MAX])
{
    char pw[GBA_PASSWORD_MAX];
    size_t pwlen;
    if (gba_password(fuzz_ks_naf, fuzz_form, pw, &pwlen) < 0)
        return -1;
    return digest_ha1_raw(alg, btid, realm, pw, pwlen, out);
}

static int fuzz_gba_lookup(void *cls, const char *realm, const char *btid, enum digest_alg alg,
                           struct digest_cred *out)
{
    (void)cls;
    if (strlen(btid) > GBA_BTID_MAX)
        return 1; /* an unknown B-TID: a new challenge */
    if (fuzz_gba_ha1(alg, btid, realm, out->ha1) < 0)
        return -1;
    out->identity = strdup("sip:fuzz@example.com");
    return out->identity ? 0 : -1;
}

static char *fuzz_line(const uint8_t **p, const uint8_t *end)
{
    const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
    const uint8_t *stop = nl ? nl : end;
    char *s = strndup((const char *)*p, (size_t)(stop - *p)); /* cut at a NUL, as C strings are */
    *p = nl ? nl + 1 : end;
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct digest *d;
    if (!d)
        d = digest_new(NULL); /* kept for the process; nonces stay valid within one input */
    const uint8_t *p = data, *end = data + size;
    char *host = fuzz_line(&p, end), *ua = fuzz_line(&p, end), *authz = fuzz_line(&p, end);
    const void *body = p;
    size_t body_len = (size_t)(end - p);
    if (!d || !host || !ua || !authz)
        goto out;

    (void)gba_user_agent(ua);
    FUZZ_CHECK(!gba_user_agent(NULL));
    char name[GBA_FQDN_MAX + 1], realm[GBA_REALM_MAX];
    unsigned char naf_id[GBA_NAF_ID_MAX];
    size_t naf_len = 0;
    const char *use_realm = "3GPP-bootstrapping@xcap.example.com";
    if (gba_host_name(host, name, sizeof name) == 0) {
        FUZZ_CHECK(name[0] != '\0' && strlen(name) <= GBA_FQDN_MAX);
        for (const char *c = name; *c; c++)
            FUZZ_CHECK(!(*c >= 'A' && *c <= 'Z'));
        FUZZ_CHECK(gba_realm(name, realm, sizeof realm) == 0);
        FUZZ_CHECK(strncmp(realm, GBA_REALM_PREFIX, strlen(GBA_REALM_PREFIX)) == 0);
        use_realm = realm;
        int ciphers[] = {-1, 0x002f, 0xc02f};
        for (size_t i = 0; i < 3; i++) {
            FUZZ_CHECK(gba_naf_id(name, ciphers[i], naf_id, &naf_len) == 0);
            FUZZ_CHECK(naf_len == strlen(name) + GBA_UA_ID_LEN);
            FUZZ_CHECK(memcmp(naf_id, name, strlen(name)) == 0);
        }
    }

    fuzz_form = size % 2 ? GBA_PASSWORD_RAW : GBA_PASSWORD_BASE64;
    char *h = fuzz_authz_prepare(d, authz, "PUT", FUZZ_TARGET, body, body_len, 1000, fuzz_gba_ha1);
    if (h) {
        struct digest_algs md5 = {.v = {DIGEST_MD5}, .n = 1}; /* TS 24.109 §5.2: MD5 */
        struct digest_request rq = {.method = "PUT",
                                    .uri = FUZZ_TARGET,
                                    .offered = size % 3 ? NULL : &md5,
                                    .realm = use_realm,
                                    .body = body,
                                    .body_len = body_len,
                                    .now = 1000};
        struct digest_auth auth;
        const char *why = NULL;
        enum digest_result r = digest_verify(d, h, &rq, fuzz_gba_lookup, NULL, &auth, &why);
        FUZZ_CHECK(r == DIGEST_OK || r == DIGEST_BAD_REQUEST || r == DIGEST_CHALLENGE ||
                   r == DIGEST_STALE || r == DIGEST_ERROR);
        if (r == DIGEST_OK) {
            FUZZ_CHECK(auth.identity && strcmp(auth.identity, "sip:fuzz@example.com") == 0);
            FUZZ_CHECK(auth.username && auth.uri && strcmp(auth.uri, FUZZ_TARGET) == 0);
            struct buf info;
            buf_init(&info, 4096);
            FUZZ_CHECK(digest_auth_info(&auth, "ok", 2, &info) == 0);
            FUZZ_CHECK(strstr(info.data, "rspauth=\"") != NULL);
            buf_release(&info);
            /* The same nc again is a replay (RFC 7616 §3.4): never accepted twice. */
            struct digest_auth again;
            FUZZ_CHECK(digest_verify(d, h, &rq, fuzz_gba_lookup, NULL, &again, &why) != DIGEST_OK);
            digest_auth_release(&auth);
        } else {
            FUZZ_CHECK(why != NULL && auth.identity == NULL);
        }
        free(h);
    }

    /* B-TID = base64(RAND) "@" BSF name (TS 33.220 §4.3): the RAND part must be 16 bytes. */
    const char *at = strchr(authz, '@');
    unsigned char rnd[GBA_RAND_LEN];
    (void)gba_base64_decode(authz, at ? (size_t)(at - authz) : strlen(authz), rnd, sizeof rnd);

    /* The AUIDs a GUSS allows: the comma-separated words of the User-Agent line. */
    const char *auids[8];
    size_t n = 0;
    char *save = NULL;
    for (char *w = strtok_r(ua, ",", &save); w && n < 8; w = strtok_r(NULL, ",", &save))
        if (gba_auid_ok(w))
            auids[n++] = w;
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(gba_auid_allowed(auids, n, auids[i], strlen(auids[i])));
    FUZZ_CHECK(n == 0 || !gba_auid_allowed(auids, n, "", 0));
out:
    free(host);
    free(ua);
    free(authz);
    return 0;
}
