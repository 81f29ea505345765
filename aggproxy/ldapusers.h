/* Users of the proxy from an enterprise LDAP directory (docs/enterprise.md), beside the users of
 * the proxy's own store (users.h). The proxy asks its own store first; a (realm, username) it
 * does not know is looked up here.
 *
 * A user is the one entry under base_dn that user_filter (with %u the Digest or Basic user name,
 * %d the realm, both escaped per RFC 4515 §3) finds. Its XUI is the first value of xui_attribute
 * that is a sip:, sips: or tel: URI (or, without that attribute, sip:USER@REALM); its further
 * public identities are the URI values of identity_attributes. For Digest (RFC 7616 §3.4.2) the
 * entry holds the HA1 in ha1_attribute: a value of 32 hex digits is H(user:realm:password) with
 * MD5, of 64 hex digits with SHA-256, for realm = this source's realm. For HTTP Basic (RFC 7617)
 * the password is checked by binding as the entry's DN.
 *
 * The answers of the directory are cached: found users (and a password a bind accepted) for
 * cache_ttl seconds, unknown users (and a password a bind refused) for negative_ttl seconds, at
 * most cache_max users (the oldest is dropped first). The directory is asked by one request at
 * a time, each call bounded by the LDAP timeout; a caller waits at most that long for its turn.
 * When the directory cannot be reached it is not asked again for retry_after seconds: lookups
 * not in the cache answer LDAPUSERS_UNAVAILABLE at once (the proxy's 503 with Retry-After), so
 * nobody can make the proxy wait on a dead directory or flood a live one.
 *
 * Thread-safety: every function may be called from any thread. */
#ifndef XDM_AGGPROXY_LDAPUSERS_H
#define XDM_AGGPROXY_LDAPUSERS_H

#include <stddef.h>
#include <stdint.h>

#include "ldapc.h"
#include "users.h"

struct ldapusers_options {
    struct ldapc_options ldap;
    const char *base_dn;             /* required */
    const char *user_filter;         /* NULL = "(uid=%u)" */
    const char *xui_attribute;       /* NULL or "" = sip:USER@REALM */
    const char *identity_attributes; /* attribute names separated by spaces; NULL = none */
    const char *ha1_attribute;       /* NULL or "" = no Digest for directory users */
    const char *realm;               /* the realm of the HA1 values (required) */
    unsigned cache_ttl_s;            /* 0 = no positive caching */
    unsigned negative_ttl_s;         /* 0 = no negative caching */
    unsigned retry_after_s;          /* 0 = 5 */
    size_t cache_max;                /* 0 = 10000 */
};

enum ldapusers_rc {
    LDAPUSERS_OK = 0,
    LDAPUSERS_UNKNOWN,      /* no such user in the directory (or another realm) */
    LDAPUSERS_BAD_PASSWORD, /* Basic: the bind refused the password */
    LDAPUSERS_UNAVAILABLE,  /* the directory cannot be asked now: 503 with Retry-After */
    LDAPUSERS_ERROR,        /* the directory answered with an error; out of memory */
};

struct ldapusers;

/* Copies the options. Returns NULL when out of memory or an option is wrong (logged: a filter
 * template that is not a filter, a missing base DN or realm). */
struct ldapusers *ldapusers_new(const struct ldapusers_options *o);
void ldapusers_free(struct ldapusers *u);

/* The realm of directory users (borrowed). */
const char *ldapusers_realm(const struct ldapusers *u);
/* Seconds a client is told to wait (Retry-After) while the directory is down, as text. */
const char *ldapusers_retry_after(const struct ldapusers *u);

/* Finds (realm, username) at monotonic time now (seconds). On LDAPUSERS_OK *out holds the XUI,
 * the further identities and the HA1 values the entry has (each "" when absent); release it
 * with users_cred_release(). */
enum ldapusers_rc ldapusers_lookup(struct ldapusers *u, const char *realm, const char *username,
                                   uint64_t now, struct users_cred *out);

/* HTTP Basic: finds username and verifies password with a bind as its entry. On LDAPUSERS_OK
 * *out is filled as by ldapusers_lookup(). */
enum ldapusers_rc ldapusers_basic(struct ldapusers *u, const char *username, const char *password,
                                  uint64_t now, struct users_cred *out);

#endif
