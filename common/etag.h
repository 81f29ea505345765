/* Entity-tag lists as If-Match and If-None-Match carry them (RFC 9110 §8.8.3, §13.1.1,
 * §13.1.2): one parser and one question, "does the list name the current representation?", for
 * every resource of both servers (stored documents, and the xcap-caps and xcap-directory
 * documents they generate). Pure functions. */
#ifndef XDM_ETAG_H
#define XDM_ETAG_H

#include <stdbool.h>

/* How tags are compared (RFC 9110 §8.8.3.2). */
enum etag_compare {
    ETAG_STRONG, /* If-Match: a weak W/"..." tag in the list never matches */
    ETAG_WEAK,   /* If-None-Match: W/ is ignored */
};

/* Whether the comma-separated list header names the current representation, whose entity-tag
 * is etag (its opaque-tag with or without the double quotes: "\"7-ab\"" or "7-ab"; NULL when
 * there is no current representation). "*" matches any current representation (RFC 9110
 * §13.1.1), so never NULL. Tags are compared octet by octet under cmp; members that are not
 * quoted entity-tags are skipped.
 *
 * If-Match holds when this is true with ETAG_STRONG; If-None-Match holds when this is false with
 * ETAG_WEAK (a GET or HEAD then answers 304, any other method 412; RFC 9110 §13.2.2). */
bool etag_list_matches(const char *header, const char *etag, enum etag_compare cmp);

#endif
