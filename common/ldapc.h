/* A small LDAP client (RFC 4511) over OpenLDAP's libldap, for the enterprise directory: the proxy
 * looks users up in it and verifies HTTP Basic passwords with a bind; the Shared List XDMS builds
 * the corporate directory document from a search. This file is the only one that includes
 * <ldap.h>.
 *
 * Every call is bounded in time: connecting by timeout_ms (LDAP_OPT_NETWORK_TIMEOUT), every
 * operation's answer by timeout_ms (LDAP_OPT_TIMEOUT, and the search's own time limit). A search
 * reads the answer in pages (RFC 2696 simple paged results) so that a directory whose server
 * caps the entries per answer is read whole, and stops after max_entries entries.
 *
 * Thread-safety: a struct ldapc is one connection and is used by one thread at a time (its owner
 * serialises calls). ldapc_check_password() opens a connection of its own and may be called
 * from any thread. The escaping functions are pure. The counters are atomics. */
#ifndef XDM_LDAPC_H
#define XDM_LDAPC_H

#include <stdbool.h>
#include <stddef.h>

struct buf;

enum ldapc_rc {
    LDAPC_OK = 0,
    LDAPC_NOT_FOUND,    /* the base DN does not exist, or no entry matched (lookups) */
    LDAPC_BAD_PASSWORD, /* a bind was refused (invalidCredentials, or an empty password) */
    LDAPC_UNAVAILABLE,  /* the server cannot be reached, answered too late or is busy */
    LDAPC_TOO_MANY,     /* more than max_entries entries (search) */
    LDAPC_ERROR,        /* any other failure (a bad filter, out of memory, ...) */
};

/* Text of rc for logs ("directory unavailable", ...). */
const char *ldapc_strerror(enum ldapc_rc rc);

/* Where and how to connect. Strings are copied by ldapc_new(). */
struct ldapc_options {
    const char *uri;           /* ldap://host:port or ldaps://... (several separated by spaces) */
    const char *bind_dn;       /* NULL or "": anonymous */
    const char *bind_password; /* of bind_dn */
    unsigned timeout_ms;       /* 0 = 2000 */
};

struct ldapc;

/* Makes a client; nothing is connected until the first search. Returns NULL when out of memory
 * or when the URI does not parse (logged). */
struct ldapc *ldapc_new(const struct ldapc_options *o);
void ldapc_free(struct ldapc *c);

/* One entry of a search answer, valid only inside the callback. */
struct ldapc_entry;
/* The DN of the entry (borrowed, valid inside the callback). */
const char *ldapc_entry_dn(const struct ldapc_entry *e);
/* Copies up to max values of attribute attr into out[] (each malloc'd and NUL-terminated; values
 * holding a NUL byte or longer than 4096 bytes are skipped). Returns how many; free them with
 * ldapc_values_free(). */
size_t ldapc_entry_values(const struct ldapc_entry *e, const char *attr, char **out, size_t max);
void ldapc_values_free(char **v, size_t n);

/* Searches the subtree of base with filter, asking for the NULL-terminated attrs, and calls fn
 * for each entry until it returns non-zero (the search then stops with LDAPC_OK). More than
 * max_entries entries: LDAPC_TOO_MANY (fn has seen max_entries of them). The connection is made
 * (and bound as bind_dn) when needed and made again once after a broken one. */
enum ldapc_rc ldapc_search(struct ldapc *c, const char *base, const char *filter,
                           const char *const *attrs, size_t max_entries,
                           int (*fn)(void *cls, const struct ldapc_entry *e), void *cls);

/* Verifies password by a simple bind as dn on a connection of its own (RFC 4513 §5.1.3), closed
 * at once. An empty password is LDAPC_BAD_PASSWORD without asking (RFC 4513 §5.1.2: it would be
 * an unauthenticated bind, which succeeds). Returns LDAPC_OK, LDAPC_BAD_PASSWORD,
 * LDAPC_UNAVAILABLE or LDAPC_ERROR. */
enum ldapc_rc ldapc_check_password(const struct ldapc *c, const char *dn, const char *password);

/* RFC 4515 §3: writes value into out with '*', '(', ')', '\\' and control bytes written as \XX,
 * so it is a literal assertion value inside a filter. Returns the length, or -1 when out (len
 * bytes, NUL included) is too small. */
int ldapc_filter_escape(const char *value, char *out, size_t len);

/* Fills a filter template: "%u" becomes the escaped user, "%d" the escaped domain (NULL = ""),
 * "%%" a '%'. Returns 0, or -1 for another '%' sequence or when out is too small. */
int ldapc_filter_fill(const char *tmpl, const char *user, const char *domain, char *out,
                      size_t len);
/* Whether tmpl is a template ldapc_filter_fill() accepts and it is a parenthesised filter. */
bool ldapc_filter_template_ok(const char *tmpl);

/* The URI an attribute value stands for, written to out (len bytes): a sip:, sips: or tel: URI
 * (scheme without case) is kept up to the first space (labeledURI values carry a label after
 * it); a global telephone number ("+1 555-0100", RFC 3966 §5.1.4) becomes "tel:+15550100"
 * without its visual separators. Returns 0, or -1 for anything else or when out is too small. */
int ldapc_value_uri(const char *value, char *out, size_t len);

/* The bind password: password_file's first line (without its line end) when password_file is
 * set, else password (NULL = ""). Writes it to out (len bytes). Returns 0, or -1 with the reason
 * logged (unreadable file, longer than len - 1). */
int ldapc_password(const char *password, const char *password_file, char *out, size_t len);

/* Counters of this process (xdm_ldap_*), for the admin listener. */
enum ldapc_counter {
    LDAPC_SEARCHES,   /* searches sent */
    LDAPC_BINDS,      /* password checks sent */
    LDAPC_FAILURES,   /* operations that ended LDAPC_UNAVAILABLE or LDAPC_ERROR */
    LDAPC_CACHE_HITS, /* lookups answered from a cache (the proxy's) */
    LDAPC_CACHE_MISSES,
    LDAPC_REFUSED, /* lookups refused without asking: the directory was found down */
    LDAPC_COUNTER_COUNT
};
void ldapc_count(enum ldapc_counter k);
/* Appends the xdm_ldap_* families. Returns 0 or -1 (out full). */
int ldapc_metrics_render(struct buf *out);

#endif
