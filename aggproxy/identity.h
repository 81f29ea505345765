/* Public identities at the Aggregation Proxy (TS 24.109 §7; OMA XDM Core §5.1.2; TS 33.222 §5):
 * reading the identity a client asks to act as (X-3GPP-Intended-Identity), checking it against the
 * subscriber's identities, and writing the asserted identity towards the XDMSs.
 *
 * Pure functions, reentrant. */
#ifndef XDM_AGGPROXY_IDENTITY_H
#define XDM_AGGPROXY_IDENTITY_H

#include <stddef.h>

struct buf;

/* Longest identity accepted (bytes, without quotes). */
#define IDENTITY_MAX 256

/* Parses the value of X-3GPP-Intended-Identity: one identity, quoted ("sip:alice@example.com")
 * as TS 24.109 §7.2 writes it, or in angle brackets, or bare. Surrounding whitespace is ignored.
 * Writes the URI into out (NUL-terminated). Returns 0, or -1 when the value is not exactly one
 * identity: empty, a list, unbalanced quotes or brackets, quoted-pairs, control characters,
 * spaces inside, no scheme, or longer than IDENTITY_MAX or outlen - 1. */
int identity_parse(const char *value, char *out, size_t outlen);

/* Index of the first of ids[0..n) that names the same user as want (scheme and host without
 * case, user part exact: xcap_uri_xui_equal), or -1. */
int identity_find(const char *const *ids, size_t n, const char *want);

/* Appends the asserted-identity value for uri: "\"uri\"" (TS 24.109 §7: quoted). uri must have
 * no quote or backslash (identity_parse() and the user stores guarantee it). Returns 0 or -1. */
int identity_quote(const char *uri, struct buf *out);

#endif
