#include "digest.h"
#include "digest_internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "buf.h"
#include "xcap_uri.h"

/* Longest cnonce accepted (bytes). */
#define DIGEST_CNONCE_MAX 256

/* ---- Hashing -------------------------------------------------------------------------------- */

const char *digest_alg_name(enum digest_alg alg)
{
    switch (alg) {
    case DIGEST_MD5:
        return "MD5";
    case DIGEST_MD5_SESS:
        return "MD5-sess";
    case DIGEST_SHA256:
        return "SHA-256";
    case DIGEST_SHA256_SESS:
        return "SHA-256-sess";
    }
    return "?";
}

int digest_alg_parse(const char *s, enum digest_alg *out)
{
    static const enum digest_alg all[] = {DIGEST_MD5, DIGEST_MD5_SESS, DIGEST_SHA256,
                                          DIGEST_SHA256_SESS};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (strcasecmp(s, digest_alg_name(all[i])) == 0) {
            *out = all[i];
            return 0;
        }
    }
    return -1;
}

void digest_algs_default(struct digest_algs *out)
{
    out->v[0] = DIGEST_MD5;
    out->v[1] = DIGEST_SHA256;
    out->n = 2;
}

bool digest_algs_has(const struct digest_algs *a, enum digest_alg alg)
{
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i] == alg)
            return true;
    return false;
}

int digest_algs_parse(const char *s, struct digest_algs *out, char err[DIGEST_ALGS_ERR_MAX])
{
    out->n = 0;
    const char *p = s ? s : "";
    for (;;) {
        p += strspn(p, " \t,");
        if (*p == '\0')
            break;
        size_t len = strcspn(p, " \t,");
        char name[16];
        enum digest_alg alg = DIGEST_MD5;
        bool known = len < sizeof name;
        if (known) {
            memcpy(name, p, len);
            name[len] = '\0';
            known = digest_alg_parse(name, &alg) == 0;
        }
        if (!known) {
            snprintf(err, DIGEST_ALGS_ERR_MAX, "unknown algorithm \"%.*s\" (MD5 and SHA-256 exist)",
                     (int)(len > 40 ? 40 : len), p);
            return -1;
        }
        if (digest_alg_is_sess(alg)) {
            snprintf(err, DIGEST_ALGS_ERR_MAX,
                     "%s is not supported (the -sess variants are not offered; use MD5 and/or "
                     "SHA-256)",
                     digest_alg_name(alg));
            return -1;
        }
        if (digest_algs_has(out, alg)) {
            snprintf(err, DIGEST_ALGS_ERR_MAX, "%s is listed twice", digest_alg_name(alg));
            return -1;
        }
        out->v[out->n++] = alg; /* at most MD5 and SHA-256 get here: n <= 2 */
        p += len;
    }
    if (out->n == 0) {
        snprintf(err, DIGEST_ALGS_ERR_MAX, "the list is empty (give MD5 and/or SHA-256)");
        return -1;
    }
    return 0;
}

static bool digest_alg_is_md5(enum digest_alg alg)
{
    return alg == DIGEST_MD5 || alg == DIGEST_MD5_SESS;
}

size_t digest_alg_hexlen(enum digest_alg alg)
{
    return digest_alg_is_md5(alg) ? 32 : 64;
}

bool digest_alg_is_sess(enum digest_alg alg)
{
    return alg == DIGEST_MD5_SESS || alg == DIGEST_SHA256_SESS;
}

/* H(parts[0] ":" parts[1] ":" ... ) in hex: every digest of RFC 7616 §3.4 has this shape. */
static int digest_hash_parts(enum digest_alg alg, const char *const *parts, size_t n,
                             char out[DIGEST_HEX_MAX])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx)
        return -1;
    int ok = EVP_DigestInit_ex(ctx, digest_alg_is_md5(alg) ? EVP_md5() : EVP_sha256(), NULL);
    for (size_t i = 0; ok && i < n; i++) {
        if (i > 0)
            ok = EVP_DigestUpdate(ctx, ":", 1);
        if (ok)
            ok = EVP_DigestUpdate(ctx, parts[i], strlen(parts[i]));
    }
    if (ok)
        ok = EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    if (!ok || mdlen * 2 != digest_alg_hexlen(alg))
        return -1;
    digest_hex_encode(md, mdlen, out);
    return 0;
}

int digest_hash_hex(enum digest_alg alg, const void *data, size_t len, char out[DIGEST_HEX_MAX])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(data, len, md, &mdlen, digest_alg_is_md5(alg) ? EVP_md5() : EVP_sha256(), NULL))
        return -1;
    digest_hex_encode(md, mdlen, out);
    return 0;
}

int digest_ha1(enum digest_alg alg, const char *username, const char *realm, const char *password,
               char out[DIGEST_HEX_MAX])
{
    if (!username || !realm || !password)
        return -1;
    const char *parts[] = {username, realm, password};
    return digest_hash_parts(alg, parts, 3, out);
}

int digest_ha1_raw(enum digest_alg alg, const char *username, const char *realm,
                   const void *password, size_t pwlen, char out[DIGEST_HEX_MAX])
{
    if (!username || !realm || !password)
        return -1;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx)
        return -1;
    int ok = EVP_DigestInit_ex(ctx, digest_alg_is_md5(alg) ? EVP_md5() : EVP_sha256(), NULL) &&
             EVP_DigestUpdate(ctx, username, strlen(username)) && EVP_DigestUpdate(ctx, ":", 1) &&
             EVP_DigestUpdate(ctx, realm, strlen(realm)) && EVP_DigestUpdate(ctx, ":", 1) &&
             EVP_DigestUpdate(ctx, password, pwlen) && EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    if (!ok || mdlen * 2 != digest_alg_hexlen(alg))
        return -1;
    digest_hex_encode(md, mdlen, out);
    return 0;
}

int digest_response(const struct digest_input *in, char out[DIGEST_HEX_MAX])
{
    if (!in->ha1 || !in->nonce || !in->nc || !in->cnonce || !in->qop || !in->method || !in->uri)
        return -1;
    bool auth_int = strcmp(in->qop, "auth-int") == 0;
    if (auth_int && !in->body_hash)
        return -1;

    /* RFC 7616 §3.4.2: the -sess HA1 binds the stored hash to this nonce and cnonce. */
    char sess_ha1[DIGEST_HEX_MAX];
    const char *ha1 = in->ha1;
    if (digest_alg_is_sess(in->alg)) {
        const char *parts[] = {in->ha1, in->nonce, in->cnonce};
        if (digest_hash_parts(in->alg, parts, 3, sess_ha1) < 0)
            return -1;
        ha1 = sess_ha1;
    }

    /* §3.4.3: HA2 = H(method ":" uri [":" H(entity-body)]). */
    char ha2[DIGEST_HEX_MAX];
    const char *a2[] = {in->method, in->uri, in->body_hash};
    if (digest_hash_parts(in->alg, a2, auth_int ? 3 : 2, ha2) < 0)
        return -1;

    const char *parts[] = {ha1, in->nonce, in->nc, in->cnonce, in->qop, ha2};
    return digest_hash_parts(in->alg, parts, 6, out);
}

/* ---- Challenge and verification ------------------------------------------------------------- */

static int digest_append_quoted(struct buf *out, const char *s)
{
    if (buf_puts(out, "\"") < 0)
        return -1;
    for (; *s; s++) {
        if ((*s == '"' || *s == '\\') && buf_puts(out, "\\") < 0)
            return -1;
        if (buf_append(out, s, 1) < 0)
            return -1;
    }
    return buf_puts(out, "\"");
}

int digest_challenge(const struct digest *d, enum digest_alg alg, const char *realm,
                     const char *nonce, bool stale, struct buf *out)
{
    return digest_challenge_qop(d, alg, realm, nonce, stale, "auth", out);
}

int digest_challenge_qop(const struct digest *d, enum digest_alg alg, const char *realm,
                         const char *nonce, bool stale, const char *qop, struct buf *out)
{
    size_t mark = out->len;
    if (buf_puts(out, "Digest realm=") < 0 || digest_append_quoted(out, realm) < 0 ||
        buf_puts(out, ", qop=") < 0 || digest_append_quoted(out, qop) < 0 ||
        buf_printf(out, ", algorithm=%s, nonce=\"%s\", opaque=\"%s\"%s", digest_alg_name(alg),
                   nonce, digest_opaque(d), stale ? ", stale=true" : "") < 0) {
        out->len = mark;
        if (out->data)
            out->data[mark] = '\0';
        return -1;
    }
    return 0;
}

void digest_auth_release(struct digest_auth *a)
{
    free(a->identity);
    free(a->username);
    free(a->cnonce);
    free(a->uri);
    OPENSSL_cleanse(a->ha1, sizeof a->ha1);
    memset(a, 0, sizeof *a);
}

static bool digest_is_hex_string(const char *s, size_t len)
{
    if (strnlen(s, len + 1) != len)
        return false;
    for (size_t i = 0; i < len; i++)
        if (xcap_uri_hex(s[i]) < 0)
            return false;
    return true;
}

/* Sets *detail and returns r: one line per refusal in the checks below. */
static enum digest_result digest_verdict(const char **detail, enum digest_result r, const char *why)
{
    *detail = why;
    return r;
}

/* The parameters of a parsed Authorization against what was offered and the request: DIGEST_OK
 * with *alg set, or the verdict. */
static enum digest_result digest_verify_params(struct digest *d, const struct digest_params *p,
                                               const struct digest_request *rq,
                                               enum digest_alg *alg, const char **detail)
{
    if (!p->username || !p->realm || !p->nonce || !p->uri || !p->response)
        return digest_verdict(detail, DIGEST_BAD_REQUEST, "missing Digest parameter");
    /* RFC 7616 §3.4, §5.4: only what was offered. Without qop (RFC 2069) there is no replay
     * protection, so it is refused. auth-int is accepted although only auth is advertised: it is
     * the same scheme plus integrity of the body, never a downgrade. */
    if (!p->qop || (strcmp(p->qop, "auth") != 0 && strcmp(p->qop, "auth-int") != 0))
        return digest_verdict(detail, DIGEST_CHALLENGE, "qop not offered");
    if (!p->cnonce || !p->nc)
        return digest_verdict(detail, DIGEST_BAD_REQUEST, "qop without cnonce or nc");
    if (!digest_is_hex_string(p->nc, 8))
        return digest_verdict(detail, DIGEST_BAD_REQUEST, "nc is not 8 hex digits");
    if (strlen(p->cnonce) > DIGEST_CNONCE_MAX)
        return digest_verdict(detail, DIGEST_BAD_REQUEST, "cnonce too long");
    *alg = DIGEST_MD5; /* RFC 7616 §3.4: absent means MD5 */
    if (p->algorithm && digest_alg_parse(p->algorithm, alg) < 0)
        return digest_verdict(detail, DIGEST_CHALLENGE, "unknown algorithm");
    if (digest_alg_is_sess(*alg))
        return digest_verdict(detail, DIGEST_CHALLENGE, "-sess algorithm not offered");
    struct digest_algs dflt;
    digest_algs_default(&dflt);
    if (!digest_algs_has(rq->offered ? rq->offered : &dflt, *alg))
        return digest_verdict(detail, DIGEST_CHALLENGE, "algorithm not offered");
    if (p->userhash && strcasecmp(p->userhash, "false") != 0)
        return digest_verdict(detail, DIGEST_CHALLENGE, "userhash not offered");
    if (rq->realm && strcmp(p->realm, rq->realm) != 0)
        return digest_verdict(detail, DIGEST_CHALLENGE, "realm does not match");
    if (!p->opaque || strlen(p->opaque) != DIGEST_OPAQUE_HEX_LEN ||
        CRYPTO_memcmp(p->opaque, digest_opaque(d), DIGEST_OPAQUE_HEX_LEN) != 0)
        return digest_verdict(detail, DIGEST_CHALLENGE, "opaque does not match");
    /* RFC 7616 §3.4.6: the uri parameter must name the request-target. */
    if (strcmp(p->uri, rq->uri) != 0)
        return digest_verdict(detail, DIGEST_BAD_REQUEST, "uri does not match the request target");
    return DIGEST_OK;
}

/* The response the client gave (given, lower-case hex) against the one its credentials make. */
static enum digest_result digest_verify_response(const struct digest_params *p,
                                                 const struct digest_request *rq,
                                                 enum digest_alg alg,
                                                 const struct digest_cred *cred, const char *given,
                                                 const char **detail)
{
    char body_hash[DIGEST_HEX_MAX];
    bool auth_int = strcmp(p->qop, "auth-int") == 0;
    if (auth_int && digest_hash_hex(alg, rq->body ? rq->body : "", rq->body_len, body_hash) < 0)
        return digest_verdict(detail, DIGEST_ERROR, "hash failure");
    struct digest_input in = {
        .alg = alg,
        .ha1 = cred->ha1,
        .nonce = p->nonce,
        .nc = p->nc,
        .cnonce = p->cnonce,
        .qop = p->qop,
        .method = rq->method,
        .uri = p->uri,
        .body_hash = auth_int ? body_hash : NULL,
    };
    char expect[DIGEST_HEX_MAX];
    if (digest_response(&in, expect) < 0)
        return digest_verdict(detail, DIGEST_ERROR, "hash failure");
    if (CRYPTO_memcmp(expect, given, digest_alg_hexlen(alg)) != 0)
        return digest_verdict(detail, DIGEST_CHALLENGE, "wrong digest");
    return DIGEST_OK;
}

/* The nonce (id, issued at ts) of right credentials: still fresh, and nc above every nc it was
 * used with before. */
static enum digest_result digest_verify_nonce(struct digest *d, const struct digest_params *p,
                                              const unsigned char id[DIGEST_NONCE_ID_LEN],
                                              uint64_t ts, uint64_t now, const char **detail)
{
    /* RFC 7616 §3.3, §5.5: right credentials on an old nonce -> stale; the client retries. */
    if (digest_nonce_expired(d, ts, now))
        return digest_verdict(detail, DIGEST_STALE, "nonce expired");
    uint32_t nc = (uint32_t)strtoul(p->nc, NULL, 16);
    switch (digest_nonce_accept_nc(d, id, ts, nc, now)) {
    case DIGEST_NC_OK:
        break;
    case DIGEST_NC_REPLAY:
        return digest_verdict(detail, DIGEST_CHALLENGE, "nc replayed");
    case DIGEST_NC_STALE:
        return digest_verdict(detail, DIGEST_STALE, "nonce state evicted");
    case DIGEST_NC_NOMEM:
        return digest_verdict(detail, DIGEST_ERROR, "out of memory");
    }
    return DIGEST_OK;
}

/* What a verified request keeps (auth); the identity moves out of cred. */
static enum digest_result digest_auth_fill(struct digest_auth *auth, const struct digest_params *p,
                                           struct digest_cred *cred, enum digest_alg alg,
                                           const char **detail)
{
    auth->identity = cred->identity;
    cred->identity = NULL;
    auth->username = strdup(p->username);
    auth->cnonce = strdup(p->cnonce);
    auth->uri = strdup(p->uri);
    auth->alg = alg;
    memcpy(auth->ha1, cred->ha1, sizeof auth->ha1);
    snprintf(auth->nonce, sizeof auth->nonce, "%s", p->nonce);
    memcpy(auth->nc, p->nc, sizeof auth->nc);
    snprintf(auth->qop, sizeof auth->qop, "%s", p->qop);
    if (!auth->username || !auth->cnonce || !auth->uri) {
        digest_auth_release(auth);
        return digest_verdict(detail, DIGEST_ERROR, "out of memory");
    }
    return digest_verdict(detail, DIGEST_OK, "ok");
}

#define VERDICT(code, why)                                                                         \
    do {                                                                                           \
        result = (code);                                                                           \
        *detail = (why);                                                                           \
        goto done;                                                                                 \
    } while (0)

enum digest_result digest_verify(struct digest *d, const char *authorization,
                                 const struct digest_request *rq, digest_lookup_fn lookup,
                                 void *lookup_cls, struct digest_auth *auth, const char **detail)
{
    const char *ignored;
    if (!detail)
        detail = &ignored;
    memset(auth, 0, sizeof *auth);
    enum digest_result result = DIGEST_ERROR;
    struct digest_params p;
    struct digest_cred cred = {{0}, NULL};

    if (!authorization) {
        memset(&p, 0, sizeof p);
        VERDICT(DIGEST_CHALLENGE, "no credentials");
    }
    switch (digest_parse_authorization(authorization, rq->uri, &p)) {
    case DIGEST_PARSE_OK:
        break;
    case DIGEST_PARSE_NOT_DIGEST:
        VERDICT(DIGEST_CHALLENGE, "not a Digest authorization");
    case DIGEST_PARSE_MALFORMED:
        VERDICT(DIGEST_BAD_REQUEST, "malformed Authorization header");
    }
    enum digest_alg alg = DIGEST_MD5;
    if ((result = digest_verify_params(d, &p, rq, &alg, detail)) != DIGEST_OK)
        goto done;

    unsigned char id[DIGEST_NONCE_ID_LEN];
    uint64_t ts;
    if (digest_nonce_open(d, p.nonce, id, &ts) < 0)
        VERDICT(DIGEST_CHALLENGE, "nonce not issued here");

    size_t hexlen = digest_alg_hexlen(alg);
    char given[DIGEST_HEX_MAX];
    if (!digest_is_hex_string(p.response, hexlen))
        VERDICT(DIGEST_CHALLENGE, "response has the wrong length");
    for (size_t i = 0; i <= hexlen; i++)
        given[i] = (char)tolower((unsigned char)p.response[i]);

    switch (lookup(lookup_cls, p.realm, p.username, alg, &cred)) {
    case 0:
        break;
    case 1:
        VERDICT(DIGEST_CHALLENGE, "unknown user");
    default:
        VERDICT(DIGEST_ERROR, "credential lookup failed");
    }
    if (!cred.identity || strlen(cred.ha1) != hexlen)
        VERDICT(DIGEST_ERROR, "credential lookup returned no identity");

    if ((result = digest_verify_response(&p, rq, alg, &cred, given, detail)) == DIGEST_OK &&
        (result = digest_verify_nonce(d, &p, id, ts, rq->now, detail)) == DIGEST_OK)
        result = digest_auth_fill(auth, &p, &cred, alg, detail);

done:
    free(cred.identity);
    OPENSSL_cleanse(cred.ha1, sizeof cred.ha1);
    digest_params_release(&p);
    return result;
}

int digest_auth_info(const struct digest_auth *a, const void *resp_body, size_t resp_len,
                     struct buf *out)
{
    char body_hash[DIGEST_HEX_MAX];
    bool auth_int = strcmp(a->qop, "auth-int") == 0;
    if (auth_int && digest_hash_hex(a->alg, resp_body ? resp_body : "", resp_len, body_hash) < 0)
        return -1;
    /* RFC 7616 §3.5: rspauth is the response digest with an empty method. */
    struct digest_input in = {
        .alg = a->alg,
        .ha1 = a->ha1,
        .nonce = a->nonce,
        .nc = a->nc,
        .cnonce = a->cnonce,
        .qop = a->qop,
        .method = "",
        .uri = a->uri,
        .body_hash = auth_int ? body_hash : NULL,
    };
    char rspauth[DIGEST_HEX_MAX];
    if (digest_response(&in, rspauth) < 0)
        return -1;
    size_t mark = out->len;
    if (buf_printf(out, "qop=%s, rspauth=\"%s\", cnonce=", a->qop, rspauth) < 0 ||
        digest_append_quoted(out, a->cnonce) < 0 || buf_printf(out, ", nc=%s", a->nc) < 0) {
        out->len = mark;
        if (out->data)
            out->data[mark] = '\0';
        return -1;
    }
    return 0;
}
