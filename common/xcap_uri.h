/* XCAP URI parsing (RFC 4825 §6): root, document selector, node selector and query.
 *
 * The input is the raw request path as received (still percent-encoded) and the raw query.
 * Each path segment of the document selector is percent-decoded on its own (so "%2F" inside an XUI
 * stays inside that segment); the node selector (everything after the segment "~~") and the query
 * are each percent-decoded exactly once. Upper and lower case hex are accepted. A raw '"' (no URI
 * character, RFC 3986 §2, but clients built on Python's urllib send node selectors so) is taken
 * as "%22": it decodes to the same character.
 *
 * Refused before anything touches storage: "." or ".." segments, empty segments inside the
 * document path, NUL (raw or %00), invalid percent escapes, segments over XCAP_URI_MAX_SEGMENT
 * bytes (XCAP_BAD_REQUEST); a path outside the root, a tree other than "global"/"users"
 * (XCAP_NOT_FOUND). */
#ifndef XDM_XCAP_URI_H
#define XDM_XCAP_URI_H

#include <stdbool.h>
#include <stddef.h>

#include "status.h"

struct buf;

#define XCAP_URI_MAX_SEGMENT 1024

enum xcap_tree { XCAP_TREE_GLOBAL, XCAP_TREE_USERS };

struct xcap_uri {
    char *auid;          /* first segment after the root */
    enum xcap_tree tree; /* "global" or "users" */
    char *xui;           /* users tree: decoded XUI; global tree: NULL */
    char *path;          /* decoded document path below the home or global directory, '/'-joined;
                            "" for the directory itself */
    bool is_dir;         /* the URI names a directory (ends with '/' or has no document part) */
    char *node_sel;      /* decoded node selector, or NULL when the URI has no "~~" */
    char *query;         /* decoded query, or NULL */
    char *doc_sel;       /* the document selector as sent (still encoded, a raw '"' as %22),
                            without root, without node selector:
                            "resource-lists/users/sip:alice@example.com/index" */
};

/* Parses raw_path (which must start with root_path followed by '/') and raw_query (NULL when the
 * request has none). root_path is the path part of the XCAP root without a trailing slash, e.g.
 * "/xcap-root", or "" when raw_path is already relative to the root (it must then still start
 * with '/'). On failure returns the status and fills err; out is then released.
 *
 * A URI that contains "~~" but an empty node selector ("/~~" or "/~~/") is XCAP_BAD_REQUEST. */
enum xcap_status xcap_uri_parse(const char *root_path, const char *raw_path, const char *raw_query,
                                struct xcap_uri *out, struct xcap_err *err);
void xcap_uri_release(struct xcap_uri *u);

/* The value of one hex digit (either case), or -1 when c is none. */
int xcap_uri_hex(char c);

/* Percent-decodes src[0..len) (RFC 3986 §2.1, hex digits of either case) into out[0..outlen),
 * NUL-terminated; out may be src (the result is never longer). Returns 0, or -1 on an invalid
 * or cut escape, a raw or encoded NUL, or when out is too small. The one percent-decoder of both
 * servers: XCAP URIs, the proxy's routing, RFC 8187 ext-values of Digest. */
int xcap_uri_pct_decode(const char *src, size_t len, char *out, size_t outlen);

/* Percent-decodes src[0..len) into a new NUL-terminated string (xcap_uri_pct_decode()). Returns
 * NULL on an invalid escape, an encoded or raw NUL, or allocation failure. */
char *xcap_uri_decode(const char *src, size_t len);

/* Appends s percent-encoded as one URI path segment: RFC 3986 unreserved characters and the
 * sub-delims, ':' and '@' stay; everything else (also '/', '"', '[', ']', '%') becomes %XX.
 * Returns 0 or -1 (buffer full). */
int xcap_uri_encode_segment(struct buf *out, const char *s);
/* The same for the bytes s[0..n) (a NUL among them becomes %00), keeping '/' as it is when
 * keep_slash (a path of several segments): the one percent-encoder of both servers. Returns 0 or
 * -1 (buffer full). */
int xcap_uri_encode(struct buf *out, const char *s, size_t n, bool keep_slash);

/* The canonical spelling of a decoded XUI, so that every spelling of one user maps to the same
 * storage keys, quotas, listings and notifications (RFC 3261 §19.1.4; RFC 3966 §4; RFC 3986
 * §6.2.2):
 *   - the scheme and the host (after the last '@' of the part before any ';' or '?', or the whole
 *     of that part when it has no '@') in lower case;
 *   - percent-encoding normalised everywhere: an escape of an unreserved character (ALPHA, DIGIT,
 *     "-", ".", "_", "~") is decoded, the hex digits of every other escape are upper case; a '%'
 *     not followed by two hex digits stays as it is, and so does an escape of a hex digit that
 *     would form a new escape with such a '%' before it ("%%38f" stays, not "%%8f");
 *   - sip:, sips: and tel: parameters (before any '?') in lower case, names and values, in one
 *     order: ext and isub, then phone-context, then the others by name (up to 32 of them);
 *   - a tel: number, and the user part of a sip:/sips: URI with user=phone (a
 *     telephone-subscriber, RFC 3261 §19.1.6), without visual separators ("-", ".", "(", ")") and
 *     in lower case, as are the number values of ext, isub and a global phone-context;
 *   - everything else, the user part of other URIs in particular, byte for byte.
 * "sip:alice@EXAMPLE.com", "SIP:alice@example.com" and "sip:%61lice@example.com" all give
 * "sip:alice@example.com"; "sip:Alice@example.com" stays another user. "tel:+49-30-123456" gives
 * "tel:+4930123456", "sip:+49-30-123456@IMS.example.com;User=Phone" gives
 * "sip:+4930123456@ims.example.com;user=phone" (still another URI than the tel: one and than the
 * one without user=phone: RFC 3261 §19.1.4). A string without a scheme gets the first two
 * treatments, but without '@' it is all user part. Returns a new string (free()), or NULL when out
 * of memory. */
char *xcap_uri_xui_canonical(const char *xui);

/* Compares two decoded XUIs by their canonical forms (xcap_uri_xui_canonical()). Returns true
 * when they name the same user; false also when out of memory. */
bool xcap_uri_xui_equal(const char *a, const char *b);

#endif
