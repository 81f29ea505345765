/* Fuzz target for the proxy's parsers of request headers (aggproxy/): first of all the Digest
 * Authorization parser (digest_parse_authorization, without a request-target and with one whose
 * node selector holds a raw '"'), then the whole verification path
 * (digest_verify with a stub user lookup), and on the same bytes the other header readers the
 * proxy runs before authentication: X-3GPP-Intended-Identity, Accept-Encoding, Content-Encoding,
 * User-Agent (3gpp-gba) and Host. Input: the header value; bytes after a NUL are cut off, as the
 * HTTP layer's C strings would. For the verifier, "@N@", "@O@" and "@R@" in the header become a
 * nonce it issued, its opaque value and the right response (fuzz_authz.h), so that the lookup,
 * the digest comparison, the nonce's replay state and Authentication-Info are fuzzed too. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "compress.h"
#include "digest.h"
#include "fuzz.h"
#include "fuzz_authz.h"
#include "gba.h"
#include "identity.h"

/* The request-target of the verification: a node selector with raw '"', as Python's urllib and
 * xcaplib send it (and copy it unescaped into uri="..."). */
#define FUZZ_TARGET                                                                                \
    "/xcap-root/resource-lists/users/sip:fuzz@example.com/index/~~/resource-lists/"                \
    "list[@name=\"f\"]"

static int fuzz_ha1(enum digest_alg alg, const char *username, const char *realm,
                    char out[DIGEST_HEX_MAX])
{
    return digest_ha1(alg, username, realm, "pw", out);
}

/* A known user for every username, so verification goes as deep as the bytes allow. */
static int fuzz_lookup(void *cls, const char *realm, const char *username, enum digest_alg alg,
                       struct digest_cred *out)
{
    (void)cls;
    if (digest_ha1(alg, username, realm, "pw", out->ha1) < 0)
        return -1;
    out->identity = strdup("sip:fuzz@example.com");
    return out->identity ? 0 : -1;
}

/* A parsed value lies inside the parser's buffer and is NUL-terminated there. */
static void fuzz_check_field(const struct digest_params *p, const char *v, size_t buflen)
{
    if (!v)
        return;
    FUZZ_CHECK(v >= p->buf && v < p->buf + buflen);
    FUZZ_CHECK(memchr(v, '\0', (size_t)(p->buf + buflen - v)) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = fuzz_cstr(data, size);
    if (!in)
        return 0;
    size_t len = strlen(in);

    /* Without a target (ordinary quoted-strings only) and with one (raw uri="..." allowed). */
    const char *targets[] = {NULL, FUZZ_TARGET};
    for (size_t t = 0; t < 2; t++) {
        struct digest_params p;
        int rc = digest_parse_authorization(in, targets[t], &p);
        FUZZ_CHECK(rc == DIGEST_PARSE_OK || rc == DIGEST_PARSE_NOT_DIGEST ||
                   rc == DIGEST_PARSE_MALFORMED);
        if (rc == DIGEST_PARSE_OK) {
            FUZZ_CHECK(len <= DIGEST_HEADER_MAX && p.buf);
            const char *fields[] = {p.username, p.realm,  p.nonce, p.uri, p.response, p.algorithm,
                                    p.cnonce,   p.opaque, p.qop,   p.nc,  p.userhash};
            for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
                fuzz_check_field(&p, fields[i], len + 1);
            FUZZ_CHECK(!p.username_ext || p.username);
        } else {
            FUZZ_CHECK(p.buf == NULL && p.username == NULL);
        }
        digest_params_release(&p);
    }

    /* The verifier on the same header, made able to pass the checks a fuzzer cannot solve. */
    static struct digest *d;
    if (!d)
        d = digest_new(NULL); /* kept for the process: a fresh secret per input is not needed */
    char *h = d ? fuzz_authz_prepare(d, in, "GET", FUZZ_TARGET, in, len, 1000, fuzz_ha1) : NULL;
    if (h) {
        struct digest_request rq = {.method = "GET",
                                    .uri = FUZZ_TARGET,
                                    .realm = NULL,
                                    .body = in,
                                    .body_len = len,
                                    .now = 1000};
        struct digest_auth auth;
        const char *why = NULL;
        enum digest_result r = digest_verify(d, h, &rq, fuzz_lookup, NULL, &auth, &why);
        FUZZ_CHECK(r == DIGEST_OK || r == DIGEST_BAD_REQUEST || r == DIGEST_CHALLENGE ||
                   r == DIGEST_STALE || r == DIGEST_ERROR);
        FUZZ_CHECK(why != NULL);
        if (r == DIGEST_OK) {
            FUZZ_CHECK(auth.identity && strcmp(auth.identity, "sip:fuzz@example.com") == 0);
            struct buf info;
            buf_init(&info, 4096);
            FUZZ_CHECK(digest_auth_info(&auth, in, len, &info) == 0);
            buf_release(&info);
            struct digest_auth again;
            FUZZ_CHECK(digest_verify(d, h, &rq, fuzz_lookup, NULL, &again, &why) != DIGEST_OK);
            digest_auth_release(&auth);
        } else {
            FUZZ_CHECK(auth.identity == NULL && auth.username == NULL);
        }
        free(h);
    }

    char id[IDENTITY_MAX + 1];
    if (identity_parse(in, id, sizeof id) == 0) {
        FUZZ_CHECK(strlen(id) > 0 && strlen(id) <= IDENTITY_MAX);
        FUZZ_CHECK(strpbrk(id, "\"<>\\, \t") == NULL && strchr(id, ':') != NULL);
    }
    (void)compress_accepts_gzip(in);
    enum compress_coding cc = compress_request_coding(in);
    FUZZ_CHECK(cc == COMPRESS_IDENTITY || cc == COMPRESS_GZIP || cc == COMPRESS_OTHER);
    (void)gba_user_agent(in);
    char host[GBA_FQDN_MAX + 1];
    if (gba_host_name(in, host, sizeof host) == 0)
        FUZZ_CHECK(host[0] != '\0' && strlen(host) <= GBA_FQDN_MAX && !strpbrk(host, " /\"@"));
    free(in);
    return 0;
}
