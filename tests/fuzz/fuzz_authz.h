/* Shared by the Authorization targets (fuzz_digest, fuzz_gba): makes a fuzzed header able to pass
 * the checks a fuzzer cannot solve by itself, so the verifier's later steps (user lookup, digest
 * comparison, the nonce's replay state, Authentication-Info) are fuzzed too.
 *   "@N@" in the header is replaced by a nonce the verifier issued (digest_nonce_new()), "@O@"
 *   by its opaque value;
 *   "@R@" is replaced by the right request-digest for the header's own parameters, the given
 *   method, password and body (digest_response()), when the header parses. */
#ifndef XDM_FUZZ_AUTHZ_H
#define XDM_FUZZ_AUTHZ_H

#include <string.h>

#include "digest.h"

/* A copy of s with every "@N@", "@O@" and "@R@" replaced by nonce, opaque and resp (malloc'd,
 * or NULL). */
static char *fuzz_authz_subst(const char *s, const char *nonce, const char *opaque,
                              const char *resp)
{
    const char *from[] = {"@N@", "@O@", "@R@"}, *to[] = {nonce, opaque, resp};
    size_t n = 0;
    for (const char *p = s; *p;) {
        size_t i = 0;
        while (i < 3 && strncmp(p, from[i], 3) != 0)
            i++;
        n += i < 3 ? strlen(to[i]) : 1;
        p += i < 3 ? 3 : 1;
    }
    char *out = malloc(n + 1), *o = out;
    if (!out)
        return NULL;
    for (const char *p = s; *p;) {
        size_t i = 0;
        while (i < 3 && strncmp(p, from[i], 3) != 0)
            i++;
        if (i < 3) {
            size_t l = strlen(to[i]);
            memcpy(o, to[i], l);
            o += l;
            p += 3;
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
    return out;
}

/* The header h with a fresh nonce of d and the right response for (method, target, the user's
 * HA1 from ha1_of, body). Returns a malloc'd header, or NULL. */
static char *fuzz_authz_prepare(struct digest *d, const char *h, const char *method,
                                const char *target, const void *body, size_t body_len, uint64_t now,
                                int (*ha1_of)(enum digest_alg alg, const char *username,
                                              const char *realm, char out[DIGEST_HEX_MAX]))
{
    char nonce[DIGEST_NONCE_MAX];
    if (digest_nonce_new(d, now, nonce) < 0)
        return NULL;
    const char *opaque = digest_opaque(d);
    char *step = fuzz_authz_subst(h, nonce, opaque, "@R@");
    if (!step)
        return NULL;
    char resp[DIGEST_HEX_MAX] = "0";
    struct digest_params p;
    enum digest_alg alg = DIGEST_MD5;
    if (digest_parse_authorization(step, target, &p) == DIGEST_PARSE_OK && p.username && p.realm &&
        p.nonce && p.uri && (!p.algorithm || digest_alg_parse(p.algorithm, &alg) == 0)) {
        char ha1[DIGEST_HEX_MAX], bh[DIGEST_HEX_MAX];
        if (ha1_of(alg, p.username, p.realm, ha1) == 0 &&
            digest_hash_hex(alg, body, body_len, bh) == 0) {
            struct digest_input in = {.alg = alg,
                                      .ha1 = ha1,
                                      .nonce = p.nonce,
                                      .nc = p.nc ? p.nc : "00000001",
                                      .cnonce = p.cnonce ? p.cnonce : "",
                                      .qop = p.qop ? p.qop : "auth",
                                      .method = method,
                                      .uri = p.uri,
                                      .body_hash = bh};
            if (digest_response(&in, resp) < 0)
                strcpy(resp, "0");
        }
    }
    digest_params_release(&p);
    char *out = fuzz_authz_subst(step, nonce, opaque, resp);
    free(step);
    return out;
}

#endif
