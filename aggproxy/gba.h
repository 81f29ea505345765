/* GBA-based HTTP Digest at the Aggregation Proxy acting as a NAF (TS 33.220, TS 33.222 §5.3,
 * TS 24.109 §5.2, §7; TS 33.220 Annex B, H.3).
 *
 * Four parts:
 *   - the key derivation of TS 33.220 Annex B (gba_kdf) and the NAF_Id of Annex H.3
 *     (gba_naf_id: NAF FQDN followed by the Ua security protocol identifier, which over HTTPS
 *     carries the negotiated TLS cipher suite, TS 33.220 Annex H.3);
 *   - what a request says about GBA: the `3gpp-gba` product token in User-Agent (TS 24.109 §5.2,
 * Annex D.3) and the realm `3GPP-bootstrapping@<NAF FQDN>` (TS 24.109 §7.1);
 *   - the bootstrapping source, one interface (struct gba_source) for what a BSF returns over Zn
 *     for a B-TID: Ks_(ext)_NAF, its expiry, the IMPI and the user security settings (GUSS): the
 *     subscriber's public identities (TS 33.220 §4.5.3) and the AUIDs it may use (TS 24.109 §7.3).
 * The only implementation here is the built-in store (gba_store_fetch), filled by `xdmctl gba add`
 *     with (B-TID, IMPI, Ks, RAND, lifetime, IMPUs, allowed AUIDs), from which Ks_NAF is derived
 *     per NAF_Id. A Zn client (TS 29.109 Diameter) would be a second gba_source;
 *   - the Digest password made from Ks_(ext)_NAF (gba_password, TS 33.222 §5.3);
 *   - the authorisation decision (gba_auid_allowed, TS 24.109 §7.3).
 *
 * Storage of the built-in source, in the table "gba" of the aggproxy store (users_open() opens
 * it): key B-TID -> one of
 *   version 1 (every AUID allowed):
 *     0x01 | Ks (32) | RAND (16) | expiry (8, big-endian seconds since the epoch) |
 *     IMPI \0 | IMPU \0 [IMPU \0 ...]
 *   version 2 (a restricted record):
 *     0x02 | Ks | RAND | expiry | IMPI \0 | IMPU \0 [IMPU \0 ...] | \0 | AUID \0 [AUID \0 ...]
 *     (the empty string ends the IMPUs, which are never empty; at least one AUID).
 * A record without a restriction is written as version 1, so such records stay readable by
 * builds that predate version 2; those builds reject a version 2 record as corrupt (a failed
 * lookup, never access beyond the restriction). Expiry is wall-clock time because the records
 * are shared by processes and survive restarts.
 *
 * Thread-safety: every function may be called from any thread. */
#ifndef XDM_AGGPROXY_GBA_H
#define XDM_AGGPROXY_GBA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store;

#define GBA_KS_LEN 32 /* Ks = CK || IK */
#define GBA_RAND_LEN 16
#define GBA_KEY_LEN 32 /* Ks_NAF */
#define GBA_UA_ID_LEN 5
#define GBA_FQDN_MAX 255
#define GBA_NAF_ID_MAX (GBA_FQDN_MAX + GBA_UA_ID_LEN)
#define GBA_BTID_MAX 256
#define GBA_IMPI_MAX 256
#define GBA_IMPU_MAX 256
#define GBA_IMPUS_MAX 32
/* Allowed AUIDs per subscriber; an AUID is at most as long as a routed one (ROUTE_AUID_MAX). */
#define GBA_AUIDS_MAX 64
#define GBA_AUID_MAX 128
#define GBA_REALM_PREFIX "3GPP-bootstrapping@"
/* Room for a realm: the prefix, an FQDN and the NUL. */
#define GBA_REALM_MAX (sizeof GBA_REALM_PREFIX + GBA_FQDN_MAX)
/* Room for a base64 password of a Ks_NAF and its NUL. */
#define GBA_PASSWORD_MAX 48

/* ---- Key derivation (TS 33.220 Annex B) ----------------------------------------------------- */

/* Ks_NAF = KDF(Ks, "gba-me", RAND, IMPI, NAF_Id) with KDF = HMAC-SHA-256 keyed with Ks over
 * S = FC || P0 || L0 || ... || P3 || L3, FC = 0x01, each Li the 2-octet big-endian length of Pi
 * (TS 33.220 Annex B). impi is UTF-8 and at most GBA_IMPI_MAX bytes; naf_id at most GBA_NAF_ID_MAX.
 * Returns 0, or -1 on an argument out of bounds or a crypto library failure. */
int gba_kdf(const unsigned char ks[GBA_KS_LEN], const unsigned char rand[GBA_RAND_LEN],
            const char *impi, const unsigned char *naf_id, size_t naf_id_len,
            unsigned char out[GBA_KEY_LEN]);

/* The Ua security protocol identifier (TS 33.220 Annex H.3): tls_cipher < 0 (plain HTTP) gives
 * 0x01 00 00 00 02 (HTTP Digest per TS 24.109); a TLS cipher suite code gives 0x01 00 01 yy zz
 * (shared-key UE authentication inside certificate-authenticated TLS, TS 33.222 §5.3). */
void gba_ua_id(int tls_cipher, unsigned char out[GBA_UA_ID_LEN]);

/* NAF_Id = fqdn || Ua id (TS 33.220 Annex H.3). fqdn is lower-cased (DNS names compare without
 * case) and must be 1..GBA_FQDN_MAX bytes. Writes the length to *len. Returns 0 or -1. */
int gba_naf_id(const char *fqdn, int tls_cipher, unsigned char out[GBA_NAF_ID_MAX], size_t *len);

/* ---- What a request says -------------------------------------------------------------------- */

/* True when the User-Agent value carries the product token "3gpp-gba" (any case, with or
 * without "/version"; comments in parentheses are skipped). "3gpp-gba-digest" (GBA_Digest) is a
 * different product and does not count. NULL -> false. */
bool gba_user_agent(const char *ua);

/* Splits a Host header value into the host name (lower-cased, without port; an IPv6 literal
 * keeps its brackets). Returns 0, or -1 when the value is empty, too long or not a host[:port]. */
int gba_host_name(const char *host, char *out, size_t outlen);

/* Writes GBA_REALM_PREFIX fqdn into out. Returns 0 or -1 (too long). */
int gba_realm(const char *fqdn, char *out, size_t outlen);

/* How Ks_(ext)_NAF becomes the Digest password (TS 33.222 §5.3). TS 33.222 §5.3 states base64; RAW
 * (the 32 key bytes as they are) is kept for equipment that disagrees (docs/proxy.md). */
enum gba_password_form { GBA_PASSWORD_BASE64, GBA_PASSWORD_RAW };

/* Writes the password (NUL-terminated for BASE64; exactly 32 bytes plus a NUL for RAW, which may
 * hold NUL bytes: use *len) into out. Returns 0 or -1. */
int gba_password(const unsigned char ks_naf[GBA_KEY_LEN], enum gba_password_form form,
                 char out[GBA_PASSWORD_MAX], size_t *len);

/* ---- Bootstrapping source (Zn) -------------------------------------------------------------- */

/* What the NAF learns for one B-TID (TS 33.220 §4.5.3). Strings owned; release with
 * gba_key_release(). */
struct gba_key {
    unsigned char ks_naf[GBA_KEY_LEN];
    int64_t expires; /* seconds since the epoch */
    char *impi;
    char **impus; /* n_impus >= 1; impus[0] is the default public identity */
    size_t n_impus;
    /* GUSS authorisation (TS 24.109 §7.3): the AUIDs the subscriber may use; n_auids == 0 (auids
     * NULL) means every AUID. */
    char **auids;
    size_t n_auids;
};
void gba_key_release(struct gba_key *k);

/* One bootstrapping source. fetch() returns 0 with *out filled (key for naf_id, unexpired at
 * now), 1 when the B-TID is unknown or its key expired at now (the caller challenges again, the
 * UE re-bootstraps: TS 33.220 §4.5.3), -1 on a failure (logged by the source). *out is zeroed on 1
 * and -1. fetch() is called from any thread. */
struct gba_source {
    int (*fetch)(void *cls, const char *btid, const unsigned char *naf_id, size_t naf_id_len,
                 int64_t now, struct gba_key *out);
    void *cls;
};

/* ---- Built-in source: records in the aggproxy store ---------------------------------------- */

/* NULL-terminated names of the tables this module uses (users_open() opens them). */
extern const char *const gba_tables[];

enum gba_rc {
    GBA_OK = 0,
    GBA_EXISTS,    /* the B-TID has a record already */
    GBA_NOT_FOUND, /* no record for the B-TID */
    GBA_BAD,       /* bad B-TID, IMPI, IMPU or AUID, no IMPU, too many, or a repeated AUID */
    GBA_ERROR,     /* storage failure or out of memory */
};
const char *gba_strerror(enum gba_rc rc);

/* A bootstrapping record as stored. All pointers borrowed. */
struct gba_record {
    const char *btid; /* printable ASCII, no space, quote or backslash; <= GBA_BTID_MAX */
    const char *impi; /* <= GBA_IMPI_MAX, no control characters */
    unsigned char ks[GBA_KS_LEN];
    unsigned char rand[GBA_RAND_LEN];
    int64_t expires;          /* seconds since the epoch */
    const char *const *impus; /* 1..GBA_IMPUS_MAX URIs (scheme:...), first = default */
    size_t n_impus;
    /* The AUIDs the subscriber may use (TS 24.109 §7.3), 0..GBA_AUIDS_MAX distinct ones, each a raw
     * path segment as the route table takes it (1..GBA_AUID_MAX bytes, no control character,
     * space, '/', '?', '#'), without ',' (gba list joins them with commas) and not "*" (what
     * gba list prints for "every AUID").
     * n_auids == 0: every AUID (records stored before this field existed read back so). */
    const char *const *auids;
    size_t n_auids;
};

/* Checks the strings of r (B-TID, IMPI, IMPUs, AUIDs). Returns GBA_OK or GBA_BAD. */
enum gba_rc gba_record_check(const struct gba_record *r);
/* Stores a new record (GBA_EXISTS when the B-TID has one). */
enum gba_rc gba_add(struct store *s, const struct gba_record *r);
enum gba_rc gba_del(struct store *s, const char *btid);
/* Calls fn for each record in B-TID byte order until fn returns non-zero. The record is borrowed
 * for the call. */
enum gba_rc gba_list(struct store *s, int (*fn)(void *cls, const struct gba_record *r), void *cls);

/* The gba_source fetch of the built-in store; cls is the struct store *. Derives Ks_NAF from the
 * record with gba_kdf() for the NAF_Id given. */
int gba_store_fetch(void *cls, const char *btid, const unsigned char *naf_id, size_t naf_id_len,
                    int64_t now, struct gba_key *out);

/* ---- Authorisation (GUSS, TS 24.109 §7.3) ------------------------------------ */

/* True when a subscriber whose allowed set is auids[0..n_auids) may use the application usage
 * auid[0..auid_len) (not NUL-terminated; compared byte for byte, as the route table does).
 * n_auids == 0 allows every AUID; an empty auid is never in a non-empty set. Which requests are
 * subject to the check (the proxy's own xcap-caps is not) is the caller's policy
 * (docs/proxy.md). */
bool gba_auid_allowed(const char *const *auids, size_t n_auids, const char *auid, size_t auid_len);

/* True when s is an AUID as gba_record_check() accepts it. */
bool gba_auid_ok(const char *s);

/* Decodes standard base64 (with or without padding) of exactly n bytes. Returns 0 or -1. Used by
 * xdmctl for RAND and for the base64(RAND) part of a B-TID. */
int gba_base64_decode(const char *s, size_t slen, unsigned char *out, size_t n);

#endif
