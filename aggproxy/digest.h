/* HTTP Digest access authentication (RFC 7616) for the Aggregation Proxy
 * (RFC 7616 §3.3-§3.5, §5).
 *
 * Three layers, in three files:
 *   - digest.c: pure hashing (HA1, H(body) and the request/response digests, for MD5 and SHA-256
 *     and their -sess variants, RFC 7616 §3.4.1-§3.4.3), challenges and the verification of
 *     credentials (digest_verify, digest_auth_info);
 *   - digest_parse.c: the parser of the Authorization header (digest_parse_authorization), safe
 *     on any input, the part the fuzz target runs;
 *   - digest_nonce.c: the server context (struct digest): nonces and their per-nonce replay state
 *     (RFC 7616 §3.3, §3.4, §5.5, §5.12), the only state requests share: a table split into
 *     stripes by the nonce's random bits, each with its own mutex (up to 64 stripes, at least
 *     1024 nonces each), so requests with different nonces seldom wait for each other.
 *
 * Nonce format: base64url(ts(8, big-endian) || random(16) || HMAC-SHA-256(secret, ts || random)
 * truncated to 16 bytes), without padding. The secret is random per process: nonces from an
 * earlier run are rejected (the client gets a fresh challenge).
 *
 * Time: every function that needs the time takes `now`, seconds of a monotonic clock
 * (digest_clock_now() in production, any value in tests).
 *
 * Thread-safety: a struct digest is shared by all request threads once made; digest_verify()
 * locks the one stripe of its nonce's replay state, for the nc check only. The pure functions are
 * reentrant. */
#ifndef XDM_AGGPROXY_DIGEST_H
#define XDM_AGGPROXY_DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;

enum digest_alg {
    DIGEST_MD5,
    DIGEST_MD5_SESS,
    DIGEST_SHA256,
    DIGEST_SHA256_SESS,
};

/* Room for the longest hex digest (SHA-256) and its NUL. */
#define DIGEST_HEX_MAX 65
/* Room for a nonce made by digest_nonce_new() and its NUL. */
#define DIGEST_NONCE_MAX 64

/* RFC 7616 token of an algorithm ("MD5", "SHA-256-sess", ...). */
const char *digest_alg_name(enum digest_alg alg);
/* Case-insensitive inverse of digest_alg_name(). Returns 0, or -1 for an unknown algorithm
 * (e.g. "SHA-512-256", which this server does not offer). */
int digest_alg_parse(const char *s, enum digest_alg *out);
/* Hex length of the algorithm's hash: 32 (MD5) or 64 (SHA-256). */
size_t digest_alg_hexlen(enum digest_alg alg);
/* True for the -sess variants. */
bool digest_alg_is_sess(enum digest_alg alg);

/* An ordered list of offered algorithms, each at most once: the order of the WWW-Authenticate
 * challenges of a 401 (RFC 7616 §3.7: a client takes the first one it supports). */
#define DIGEST_ALGS_MAX 4
struct digest_algs {
    enum digest_alg v[DIGEST_ALGS_MAX];
    size_t n;
};

/* Room for the message of digest_algs_parse(). */
#define DIGEST_ALGS_ERR_MAX 160

/* MD5, then SHA-256: the default of the proxy's digest_algorithms. */
void digest_algs_default(struct digest_algs *out);
/* Parses a list of algorithm names separated by spaces, tabs and/or commas, e.g. "MD5 SHA-256"
 * or "SHA-256,MD5" (names case-insensitive). Only MD5 and SHA-256 are accepted: the -sess
 * variants are not offered by this server (digest_verify() refuses them). Returns 0, or -1 with
 * a message in err (an empty list, an unknown or -sess name, a name given twice). */
int digest_algs_parse(const char *s, struct digest_algs *out, char err[DIGEST_ALGS_ERR_MAX]);
/* True when alg is in the list. */
bool digest_algs_has(const struct digest_algs *a, enum digest_alg alg);

/* H(data) in lower-case hex. Returns 0, or -1 when the hash library fails. */
int digest_hash_hex(enum digest_alg alg, const void *data, size_t len, char out[DIGEST_HEX_MAX]);
/* HA1 = H(username ":" realm ":" password), lower-case hex (the value stored per user, RFC 7616
 * §5.1, §5.8). For a -sess algorithm this is still the plain H(...) of its base hash. Returns 0 or
 * -1. */
int digest_ha1(enum digest_alg alg, const char *username, const char *realm, const char *password,
               char out[DIGEST_HEX_MAX]);
/* Same with a password of pwlen bytes that may hold any byte (a raw GBA key). */
int digest_ha1_raw(enum digest_alg alg, const char *username, const char *realm,
                   const void *password, size_t pwlen, char out[DIGEST_HEX_MAX]);

/* Inputs of one digest computation (RFC 7616 §3.4.1-3.4.3). All strings borrowed. */
struct digest_input {
    enum digest_alg alg;
    const char *ha1; /* hex H(username:realm:password) of the base hash */
    const char *nonce;
    const char *nc; /* 8 hex digits */
    const char *cnonce;
    const char *qop;    /* "auth" or "auth-int" */
    const char *method; /* "" for rspauth (RFC 7616 §3.5) */
    const char *uri;
    const char *body_hash; /* hex H(entity-body) when qop is auth-int, else ignored */
};

/* The request-digest (or rspauth with method ""), lower-case hex. For -sess, HA1 is first
 * replaced by H(HA1 ":" nonce ":" cnonce). Returns 0, or -1 on a missing input or hash failure. */
int digest_response(const struct digest_input *in, char out[DIGEST_HEX_MAX]);

/* Parsed Authorization header. All strings point into buf (owned) and are NULL when the
 * parameter was absent; the values are unquoted and unescaped. username* (RFC 8187 ext-value,
 * UTF-8 only) is decoded into username, with username_ext set. Unknown parameters are ignored. */
struct digest_params {
    char *buf;
    const char *username;
    bool username_ext;
    const char *realm;
    const char *nonce;
    const char *uri;
    const char *response;
    const char *algorithm;
    const char *cnonce;
    const char *opaque;
    const char *qop;
    const char *nc;
    const char *userhash;
};

enum digest_parse_rc {
    DIGEST_PARSE_OK = 0,
    DIGEST_PARSE_NOT_DIGEST = 1, /* another scheme (e.g. Basic): answer with a challenge */
    DIGEST_PARSE_MALFORMED = -1, /* syntax error, duplicate parameter, too long: answer 400 */
};

/* Longest Authorization header value accepted. */
#define DIGEST_HEADER_MAX 8192

/* Parses the value of an Authorization header: `Digest` then a comma-separated list of
 * name=token or name="quoted string" (RFC 9110 §11.4, §5.6.4), with optional whitespace and
 * empty list elements. A known parameter given twice, or both username and username*, is
 * malformed. Never reads past the terminating NUL of h.
 *
 * target (may be NULL) is the raw request-target. Clients such as Python's urllib copy it into
 * uri="..." without escaping, so a node selector's '"' ends up unescaped inside the quoted string.
 * When the bytes after uri's opening quote are exactly target, followed by '"', optional
 * whitespace and ',' or the end of the header, that span is the uri value, taken byte for byte
 * (no unescaping). Otherwise uri is an ordinary quoted-string. The span is fixed by the known
 * target, so the split is unambiguous and costs one comparison of at most strlen(target) bytes.
 *
 * Returns an enum digest_parse_rc. On every return *out is initialised; call
 * digest_params_release() afterwards in all cases. */
int digest_parse_authorization(const char *h, const char *target, struct digest_params *out);
void digest_params_release(struct digest_params *p);

/* ---- Server side ---------------------------------------------------------------------------- */

struct digest;

struct digest_options {
    unsigned nonce_lifetime_s; /* 0 = default 300 */
    size_t max_nonces;         /* nonces with replay state; 0 = default 100000 */
};

/* Seconds of CLOCK_MONOTONIC. */
uint64_t digest_clock_now(void);

/* Makes a context with a fresh random secret and opaque value. Returns NULL on allocation or
 * random-generator failure. */
struct digest *digest_new(const struct digest_options *opts);
void digest_free(struct digest *d);

/* The opaque value every challenge carries (borrowed, constant for the context's life). */
const char *digest_opaque(const struct digest *d);

/* Writes a new nonce issued at `now` (NUL-terminated) into out. Returns 0 or -1. */
int digest_nonce_new(const struct digest *d, uint64_t now, char out[DIGEST_NONCE_MAX]);

/* Appends one WWW-Authenticate value to out:
 *   Digest realm="R", qop="auth", algorithm=A, nonce="N", opaque="O"[, stale=true]
 * realm must not contain '"', '\\' or control characters (they are escaped anyway).
 * Returns 0, or -1 when out is full. */
int digest_challenge(const struct digest *d, enum digest_alg alg, const char *realm,
                     const char *nonce, bool stale, struct buf *out);
/* Same with another qop list, e.g. "auth-int,auth" as TS 24.109 §5.2 writes the GBA challenge
 * (digest_verify() accepts both auth and auth-int whatever was offered). */
int digest_challenge_qop(const struct digest *d, enum digest_alg alg, const char *realm,
                         const char *nonce, bool stale, const char *qop, struct buf *out);

/* A user's stored credentials, filled by the lookup callback. identity is malloc'd and owned by
 * the struct (the verifier frees it). */
struct digest_cred {
    char ha1[DIGEST_HEX_MAX]; /* hex HA1 for the base hash of the requested algorithm */
    char *identity;           /* the user's XUI, e.g. "sip:alice@example.com" */
};

/* Looks up the credentials of (realm, username) for the base hash of alg (MD5 or SHA-256).
 * Returns 0 when found (out filled), 1 when there is no such user, -1 on a storage error. */
typedef int (*digest_lookup_fn)(void *cls, const char *realm, const char *username,
                                enum digest_alg alg, struct digest_cred *out);

/* The request being authenticated. All borrowed. */
struct digest_request {
    const char *method;
    const char *uri; /* the raw request-target, compared byte for byte with the uri parameter */
    const struct digest_algs *offered; /* the challenges' algorithms; NULL = MD5 and SHA-256 */
    const char *realm; /* the realm this request is challenged with; NULL accepts any realm for
                          which the lookup finds the user (used for the global tree) */
    const void *body;  /* entity body, for qop=auth-int */
    size_t body_len;
    uint64_t now;
};

enum digest_result {
    DIGEST_OK,          /* authenticated: *auth is filled */
    DIGEST_BAD_REQUEST, /* malformed credentials: 400 */
    DIGEST_CHALLENGE,   /* missing or wrong credentials, replayed nc: 401 with a fresh nonce */
    DIGEST_STALE,       /* right credentials on an expired nonce: 401 with stale=true */
    DIGEST_ERROR,       /* the lookup failed or out of memory: 500 */
};

/* What a successful verification proved; needed for Authentication-Info. */
struct digest_auth {
    char *identity; /* owned: the authenticated XUI */
    char *username; /* owned */
    enum digest_alg alg;
    char ha1[DIGEST_HEX_MAX];
    char nonce[DIGEST_NONCE_MAX];
    char *cnonce; /* owned */
    char nc[9];
    char qop[9];
    char *uri; /* owned */
};

/* Verifies the Authorization header value `authorization` (NULL when absent) against rq, in this
 * order: syntax (400), realm/qop/algorithm/userhash/opaque offered (401; the algorithm must be
 * in rq->offered, an absent one meaning MD5, RFC 7616 §3.4), uri equals the request
 * target (400, RFC 7616 §3.4.6), nonce authentic (401), user known and digest correct (401),
 * nonce fresh (stale 401), nc strictly above the highest accepted for this nonce (401).
 * Digests are compared in constant time. The nonce state is touched only for a correct digest,
 * so wrong guesses cannot fill the table or advance nc.
 * On DIGEST_OK, *auth is filled and must be released with digest_auth_release(); otherwise it is
 * left zeroed. detail, when not NULL, receives a borrowed static string saying why (for logs). */
enum digest_result digest_verify(struct digest *d, const char *authorization,
                                 const struct digest_request *rq, digest_lookup_fn lookup,
                                 void *lookup_cls, struct digest_auth *auth, const char **detail);
void digest_auth_release(struct digest_auth *a);

/* Appends the Authentication-Info value (RFC 7616 §3.5):
 *   qop=auth, rspauth="…", cnonce="…", nc=…
 * For qop=auth-int the response body is hashed into rspauth. Returns 0 or -1. */
int digest_auth_info(const struct digest_auth *a, const void *resp_body, size_t resp_len,
                     struct buf *out);

#endif
