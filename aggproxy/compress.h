/* gzip content coding on the client side of the proxy (the XDM-3 reference point, OMA XDM Core
 * §5.1; RFC 9110 §8.4.1.3); the XDMSs always see identity bodies (XDM-4). zlib wrapped here and
 * nowhere else.
 *
 * Pure functions, reentrant. */
#ifndef XDM_AGGPROXY_COMPRESS_H
#define XDM_AGGPROXY_COMPRESS_H

#include <stdbool.h>
#include <stddef.h>

struct buf;

/* True when an Accept-Encoding value lets the response be gzip-coded (RFC 9110 §12.5.3): "gzip"
 * (or its alias "x-gzip") listed with a q-value above 0, or else "*" with a q-value above 0.
 * "gzip;q=0" refuses it even when "*" is present. NULL (no header) -> false: the proxy does not
 * compress for clients that did not ask. */
bool compress_accepts_gzip(const char *accept_encoding);

/* What a request's Content-Encoding asks for. */
enum compress_coding {
    COMPRESS_IDENTITY, /* absent, empty or "identity" */
    COMPRESS_GZIP,     /* "gzip" or "x-gzip" */
    COMPRESS_OTHER,    /* anything else, or several codings: answered 415 (RFC 9110 §15.5.16) */
};
enum compress_coding compress_request_coding(const char *content_encoding);

/* Appends the gzip encoding (RFC 1952, one member) of data[0..len) to out, at zlib level
 * 1..9. Returns 0, or -1 when zlib fails or out is full (out is then as it was). */
int compress_gzip(const void *data, size_t len, int level, struct buf *out);

enum compress_rc {
    COMPRESS_OK,
    COMPRESS_TOO_LARGE, /* the decoded body would exceed max (zip bombs): 413 */
    COMPRESS_BAD,       /* not gzip, corrupt, truncated, or trailing garbage: 400 */
    COMPRESS_NOMEM,
};

/* Decodes a gzip body (one or more members, RFC 1952 §2.2) into out (appended), stopping as soon
 * as more than max decoded bytes would be needed. On failure out is as it was. */
enum compress_rc compress_gunzip(const void *data, size_t len, size_t max, struct buf *out);

#endif
