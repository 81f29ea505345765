/* The users of the Aggregation Proxy: XUI, Digest username and realm, HA1 per algorithm
 * (RFC 7616 §5.1, §5.8: never the clear password) and further public identities the user may act as
 * (TS 24.109 §7.2: picked with X-3GPP-Intended-Identity). Shared by aggproxy (lookups) and xdmctl
 * (add, del, list), possibly at the same time: each call is one LMDB transaction.
 *
 * Storage, in the generic tables of the aggproxy store (names in users_tables, which also lists
 * the GBA bootstrapping table of gba.h so that one users_open() serves both):
 *   users  key xui                    -> username \0 realm
 *   creds  key realm \0 username      -> xui \0 ha1_md5 \0 ha1_sha256   (lower-case hex)
 *   ids    key xui                    -> identity \0 [identity \0 ...]  (only when there are any)
 * Invariant: users and creds hold the same set of users, ids a subset (written in one
 * transaction). The XUI itself is always the user's default identity and is not repeated in ids.
 *
 * By SIP convention the Digest username is the user part of a sip:/sips: XUI and the realm its
 * domain (lower-cased): sip:alice@example.com -> "alice", "example.com". Other XUI schemes need an
 * explicit username and realm.
 *
 * Thread-safety: every function may be called from any thread (the store serialises writers). */
#ifndef XDM_AGGPROXY_USERS_H
#define XDM_AGGPROXY_USERS_H

#include <stddef.h>

#include "digest.h"

struct store;

/* NULL-terminated names of the tables to pass in store_options.tables. */
extern const char *const users_tables[];

/* Longest XUI, username, realm and password accepted (bytes). */
#define USERS_XUI_MAX 256
#define USERS_NAME_MAX 256
#define USERS_PASSWORD_MAX 1024
/* Most further identities per user. */
#define USERS_IDS_MAX 32

enum users_rc {
    USERS_OK = 0,
    USERS_EXISTS,     /* the XUI is already a user */
    USERS_CRED_TAKEN, /* another XUI already has this username in this realm */
    USERS_NOT_FOUND,  /* no such XUI (or no such username/realm on lookup) */
    USERS_BAD_XUI,    /* not scheme:..., bad characters, too long, or no derivable username */
    USERS_BAD_NAME,   /* empty/too long username or realm, or quote/backslash/control chars */
    USERS_BAD_ID,     /* a further identity is not a valid XUI, repeats one, or too many */
    USERS_ERROR,      /* storage failure (logged by the store) or out of memory */
};

/* A short English text for rc ("user exists", ...). */
const char *users_strerror(enum users_rc rc);

/* Opens (creating with parents when missing) the store in dir with the users tables. */
enum users_rc users_open(const char *dir, struct store **out);

/* Checks an XUI and, for sip:/sips:, writes its user part and lower-cased domain (without port,
 * URI parameters or headers) into the caller's buffers. For other schemes writes "" to both and
 * returns USERS_OK when the XUI is otherwise valid. Returns USERS_BAD_XUI or USERS_OK. */
enum users_rc users_xui_split(const char *xui, char *user, size_t userlen, char *domain,
                              size_t domainlen);

/* Adds a user. username/realm NULL = derive from the XUI. The password is hashed (MD5 and
 * SHA-256 HA1) and not kept. */
enum users_rc users_add(struct store *s, const char *xui, const char *username, const char *realm,
                        const char *password);
/* Same, with n_ids further public identities (each checked like an XUI; none equal to the XUI or
 * to each other; at most USERS_IDS_MAX). */
enum users_rc users_add_ids(struct store *s, const char *xui, const char *username,
                            const char *realm, const char *password, const char *const *ids,
                            size_t n_ids);
/* Removes a user (both tables). */
enum users_rc users_del(struct store *s, const char *xui);

/* One user, as seen in a listing (borrowed, valid only inside the callback). */
struct users_entry {
    const char *xui;
    const char *username;
    const char *realm;
    const char *const *ids; /* further identities */
    size_t n_ids;
};

/* Calls fn for each user in XUI byte order until fn returns non-zero. */
enum users_rc users_list(struct store *s, int (*fn)(void *cls, const struct users_entry *u),
                         void *cls);

/* Stored credentials of one user. xui and ids are owned (free with users_cred_release). */
struct users_cred {
    char *xui;
    char ha1_md5[DIGEST_HEX_MAX];
    char ha1_sha256[DIGEST_HEX_MAX];
    char **ids; /* further identities, n_ids of them */
    size_t n_ids;
};

/* Finds (realm, username). Returns USERS_OK, USERS_NOT_FOUND or USERS_ERROR. */
enum users_rc users_lookup(struct store *s, const char *realm, const char *username,
                           struct users_cred *out);
void users_cred_release(struct users_cred *c);

/* The Digest part of users_lookup(): 0 with out->ha1 set for alg and *uc holding the whole
 * record (the caller releases it with users_cred_release()), 1 for an unknown user, -1 on error. */
int users_digest_cred(struct store *s, const char *realm, const char *username, enum digest_alg alg,
                      struct digest_cred *out, struct users_cred *uc);

/* A digest_lookup_fn over users_lookup(); cls is the struct store *. */
int users_digest_lookup(void *cls, const char *realm, const char *username, enum digest_alg alg,
                        struct digest_cred *out);

#endif
