/* The Authorization header parser of HTTP Digest (RFC 7616 §3.4, RFC 9110 §11.4): the one part of
 * digest.h that reads what a client sends before anything is verified, and the part the fuzz
 * target tests/fuzz/fuzz_digest.c runs. Pure: no state, no locks. */
#include "digest.h"
#include "digest_internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "xcap_uri.h"

/* Most parameters one header may carry; more is a syntax error. */
#define DIGEST_PARAMS_MAX 64

/* RFC 9110 §5.6.2 tchar. */
static bool digest_parse_is_tchar(unsigned char c)
{
    return isalnum(c) || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static const char *digest_parse_skip_ows(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* RFC 8187 ext-value: charset "'" [language] "'" pct-encoded value. Decodes in place (the result
 * is never longer than the input). Only UTF-8 is accepted; an encoded NUL is refused. */
static int digest_parse_ext_value(char *s)
{
    char *q1 = strchr(s, '\'');
    if (!q1 || (size_t)(q1 - s) != 5 || strncasecmp(s, "UTF-8", 5) != 0)
        return -1;
    char *q2 = strchr(q1 + 1, '\'');
    if (!q2)
        return -1;
    const char *r = q2 + 1;
    size_t len = strlen(r);
    if (len == 0 || xcap_uri_pct_decode(r, len, s, len + 1) < 0)
        return -1;
    return s[0] ? 0 : -1;
}

static int digest_parse_assign(struct digest_params *p, const char *name, size_t nlen,
                               const char *val, const char **username_star)
{
    struct {
        const char *name;
        const char **slot;
    } known[] = {
        {"username", &p->username},
        {"username*", username_star},
        {"realm", &p->realm},
        {"nonce", &p->nonce},
        {"uri", &p->uri},
        {"response", &p->response},
        {"algorithm", &p->algorithm},
        {"cnonce", &p->cnonce},
        {"opaque", &p->opaque},
        {"qop", &p->qop},
        {"nc", &p->nc},
        {"userhash", &p->userhash},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (strlen(known[i].name) == nlen && strncasecmp(known[i].name, name, nlen) == 0) {
            if (*known[i].slot)
                return -1; /* a duplicate is ambiguous: refuse rather than pick one */
            *known[i].slot = val;
            return 0;
        }
    }
    return 0;
}

void digest_params_release(struct digest_params *p)
{
    free(p->buf);
    memset(p, 0, sizeof *p);
}

/* The raw form of uri="..." (see digest_parse_authorization in the header): p is just after the
 * opening quote. Returns the length of the value (that of target) when it applies, else 0. */
static size_t digest_parse_raw_uri_len(const char *p, const char *target)
{
    size_t tlen = target ? strlen(target) : 0;
    if (tlen == 0 || strncmp(p, target, tlen) != 0 || p[tlen] != '"')
        return 0;
    const char *after = digest_parse_skip_ows(p + tlen + 1);
    return *after == ',' || *after == '\0' ? tlen : 0;
}

int digest_parse_authorization(const char *h, const char *target, struct digest_params *out)
{
    memset(out, 0, sizeof *out);
    if (!h)
        return DIGEST_PARSE_NOT_DIGEST;
    size_t len = strnlen(h, DIGEST_HEADER_MAX + 1);
    if (len > DIGEST_HEADER_MAX)
        return DIGEST_PARSE_MALFORMED;

    const char *p = digest_parse_skip_ows(h);
    const char *scheme = p;
    while (digest_parse_is_tchar((unsigned char)*p))
        p++;
    if (p == scheme)
        return DIGEST_PARSE_MALFORMED;
    if (p - scheme != 6 || strncasecmp(scheme, "Digest", 6) != 0)
        return DIGEST_PARSE_NOT_DIGEST;
    if (*p != ' ' && *p != '\t')
        return DIGEST_PARSE_MALFORMED;

    /* Every decoded value is at most as long as its source span, and its NUL is paid for by the
     * '=' before it, so len + 1 bytes always suffice. */
    out->buf = malloc(len + 1);
    if (!out->buf)
        return DIGEST_PARSE_MALFORMED;
    char *w = out->buf;
    const char *username_star = NULL;
    int nparams = 0;

    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '\0')
            break;
        const char *name = p;
        while (digest_parse_is_tchar((unsigned char)*p))
            p++;
        size_t nlen = (size_t)(p - name);
        if (nlen == 0)
            goto malformed;
        p = digest_parse_skip_ows(p);
        if (*p != '=')
            goto malformed;
        p = digest_parse_skip_ows(p + 1);

        char *val = w;
        size_t raw = 0;
        if (*p == '"' && nlen == 3 && strncasecmp(name, "uri", 3) == 0)
            raw = digest_parse_raw_uri_len(p + 1, target);
        if (raw) {
            /* The request-target's own bytes, which lie inside the header: the copy fits the
             * len + 1 bytes of buf like any other value. */
            memcpy(w, p + 1, raw);
            w += raw;
            p += raw + 2;
        } else if (*p == '"') {
            /* RFC 9110 §5.6.4 quoted-string with quoted-pair. */
            p++;
            for (;;) {
                unsigned char c = (unsigned char)*p;
                if (c == '\0')
                    goto malformed;
                if (c == '"') {
                    p++;
                    break;
                }
                if (c == '\\') {
                    p++;
                    c = (unsigned char)*p;
                    if (c == '\0')
                        goto malformed;
                }
                if ((c < 0x20 && c != '\t') || c == 0x7f)
                    goto malformed;
                *w++ = (char)c;
                p++;
            }
        } else {
            while (digest_parse_is_tchar((unsigned char)*p))
                *w++ = *p++;
            if (w == val)
                goto malformed;
        }
        *w++ = '\0';
        p = digest_parse_skip_ows(p);
        if (*p != '\0' && *p != ',')
            goto malformed;
        if (++nparams > DIGEST_PARAMS_MAX)
            goto malformed;
        if (digest_parse_assign(out, name, nlen, val, &username_star) < 0)
            goto malformed;
    }
    if (nparams == 0)
        goto malformed;
    if (username_star) {
        if (out->username)
            goto malformed; /* RFC 7616 §3.4: never both */
        /* username_star points into out->buf, which this function owns and may rewrite. */
        char *ext = out->buf + (username_star - out->buf);
        if (digest_parse_ext_value(ext) < 0)
            goto malformed;
        out->username = username_star;
        out->username_ext = true;
    }
    return DIGEST_PARSE_OK;

malformed:
    digest_params_release(out);
    return DIGEST_PARSE_MALFORMED;
}
