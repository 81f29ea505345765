#include "compress.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zlib.h>

#include "buf.h"

#define COMPRESS_CHUNK 16384

/* Reads one "coding [; q=value]" element of a list; returns a pointer after it (at ',' or NUL).
 * The coding is [*name, *name + *nlen); *q is 1000 times the q-value (0..1000). */
static const char *compress_list_item(const char *p, const char **name, size_t *nlen, int *q)
{
    while (*p == ' ' || *p == '\t' || *p == ',')
        p++;
    *name = p;
    while (*p && *p != ',' && *p != ';' && *p != ' ' && *p != '\t')
        p++;
    *nlen = (size_t)(p - *name);
    *q = 1000;
    while (*p && *p != ',') {
        if (*p == ';') {
            p++;
            while (*p == ' ' || *p == '\t')
                p++;
            if ((p[0] == 'q' || p[0] == 'Q') && p[1] == '=') {
                /* RFC 9110 §12.4.2: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ) */
                p += 2;
                int v = 0, digits = 0;
                if (*p == '0' || *p == '1') {
                    v = (*p - '0') * 1000;
                    p++;
                    if (*p == '.') {
                        p++;
                        int scale = 100;
                        while (isdigit((unsigned char)*p) && digits < 3) {
                            v += (*p - '0') * scale;
                            scale /= 10;
                            digits++;
                            p++;
                        }
                    }
                }
                *q = v > 1000 ? 1000 : v;
            }
            continue;
        }
        p++;
    }
    return p;
}

static bool compress_is(const char *name, size_t nlen, const char *want)
{
    return strlen(want) == nlen && strncasecmp(name, want, nlen) == 0;
}

bool compress_accepts_gzip(const char *accept_encoding)
{
    if (!accept_encoding)
        return false;
    int gzip_q = -1, star_q = -1;
    const char *p = accept_encoding;
    while (*p) {
        const char *name;
        size_t nlen;
        int q;
        p = compress_list_item(p, &name, &nlen, &q);
        if (compress_is(name, nlen, "gzip") || compress_is(name, nlen, "x-gzip"))
            gzip_q = q;
        else if (compress_is(name, nlen, "*"))
            star_q = q;
    }
    if (gzip_q >= 0)
        return gzip_q > 0;
    return star_q > 0;
}

enum compress_coding compress_request_coding(const char *content_encoding)
{
    if (!content_encoding)
        return COMPRESS_IDENTITY;
    enum compress_coding c = COMPRESS_IDENTITY;
    int n = 0;
    const char *p = content_encoding;
    while (*p) {
        const char *name;
        size_t nlen;
        int q;
        p = compress_list_item(p, &name, &nlen, &q);
        if (nlen == 0)
            continue;
        n++;
        if (compress_is(name, nlen, "gzip") || compress_is(name, nlen, "x-gzip"))
            c = COMPRESS_GZIP;
        else if (!compress_is(name, nlen, "identity"))
            return COMPRESS_OTHER;
    }
    return n > 1 ? COMPRESS_OTHER : c;
}

int compress_gzip(const void *data, size_t len, int level, struct buf *out)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    /* windowBits 15 + 16: a gzip wrapper instead of zlib's. */
    if (deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    size_t mark = out->len;
    unsigned char chunk[COMPRESS_CHUNK];
    const unsigned char *in = data;
    size_t left = len;
    int rc = Z_OK;
    do {
        /* avail_in is a uInt: feed large inputs in slices. */
        if (z.avail_in == 0 && left > 0) {
            uInt n = left > (1u << 30) ? (1u << 30) : (uInt)left;
            z.next_in = (Bytef *)in;
            z.avail_in = n;
            in += n;
            left -= n;
        }
        z.next_out = chunk;
        z.avail_out = sizeof chunk;
        rc = deflate(&z, left == 0 ? Z_FINISH : Z_NO_FLUSH);
        if (rc == Z_STREAM_ERROR || buf_append(out, chunk, sizeof chunk - z.avail_out) < 0) {
            rc = Z_STREAM_ERROR;
            break;
        }
    } while (rc != Z_STREAM_END);
    deflateEnd(&z);
    if (rc != Z_STREAM_END) {
        out->len = mark;
        if (out->data)
            out->data[mark] = '\0';
        return -1;
    }
    return 0;
}

enum compress_rc compress_gunzip(const void *data, size_t len, size_t max, struct buf *out)
{
    if (len > (1u << 30))
        return COMPRESS_TOO_LARGE;
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 15 + 16) != Z_OK)
        return COMPRESS_NOMEM;
    size_t mark = out->len, produced = 0;
    unsigned char chunk[COMPRESS_CHUNK];
    z.next_in = (Bytef *)data;
    z.avail_in = (uInt)len;
    enum compress_rc result = COMPRESS_OK;
    for (;;) {
        z.next_out = chunk;
        z.avail_out = sizeof chunk;
        int rc = inflate(&z, Z_NO_FLUSH);
        size_t got = sizeof chunk - z.avail_out;
        if (got > max - produced) {
            result = COMPRESS_TOO_LARGE;
            break;
        }
        if (got && buf_append(out, chunk, got) < 0) {
            result = COMPRESS_NOMEM;
            break;
        }
        produced += got;
        if (rc == Z_STREAM_END) {
            if (z.avail_in == 0)
                break;
            /* RFC 1952 §2.2: a file is a series of members. */
            if (inflateReset(&z) != Z_OK) {
                result = COMPRESS_BAD;
                break;
            }
            continue;
        }
        if (rc == Z_MEM_ERROR) {
            result = COMPRESS_NOMEM;
            break;
        }
        if (rc != Z_OK || (z.avail_in == 0 && got == 0)) {
            /* corrupt, or the input ended before the member did */
            result = COMPRESS_BAD;
            break;
        }
    }
    inflateEnd(&z);
    if (result != COMPRESS_OK) {
        out->len = mark;
        if (out->data)
            out->data[mark] = '\0';
    }
    return result;
}
