/* Fuzz target for the proxy's content codings (aggproxy/compress.c; RFC 9110 §8.4, §12.5.3;
 * RFC 1952): the Accept-Encoding and Content-Encoding readers, and compress_gunzip() on a request
 * body under a small and a large decoded-size limit, with the gzip of what it decoded decoding back
 * to the same bytes. Input: "<Accept-Encoding>\n<Content-Encoding>\n<gzip body>"; the first two
 * lines may be empty, the body is binary. */
#include <string.h>

#include "buf.h"
#include "compress.h"
#include "fuzz.h"

#define FUZZ_SMALL 64
#define FUZZ_LARGE (1u << 20)

/* A copy of the line that starts at *p, ending at '\n' or end; *p moves past it. */
static char *fuzz_line(const uint8_t **p, const uint8_t *end)
{
    const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
    const uint8_t *stop = nl ? nl : end;
    size_t n = (size_t)(stop - *p);
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, *p, n);
        s[n] = '\0';
    }
    *p = nl ? nl + 1 : end;
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data, *end = data + size;
    char *accept = fuzz_line(&p, end);
    char *coding = fuzz_line(&p, end);
    if (!accept || !coding)
        goto out;

    bool gz = compress_accepts_gzip(accept);
    if (strcmp(accept, "gzip") == 0 || strcmp(accept, "*") == 0)
        FUZZ_CHECK(gz);
    if (accept[0] == '\0')
        FUZZ_CHECK(!gz);
    FUZZ_CHECK(!compress_accepts_gzip(NULL));
    enum compress_coding cc = compress_request_coding(coding);
    FUZZ_CHECK(cc == COMPRESS_IDENTITY || cc == COMPRESS_GZIP || cc == COMPRESS_OTHER);
    if (coding[0] == '\0')
        FUZZ_CHECK(cc == COMPRESS_IDENTITY);

    size_t len = (size_t)(end - p);
    size_t limits[] = {FUZZ_SMALL, FUZZ_LARGE};
    for (size_t i = 0; i < 2; i++) {
        struct buf out;
        buf_init(&out, 2 * FUZZ_LARGE);
        FUZZ_CHECK(buf_append(&out, "x", 1) == 0); /* decoding appends after what is there */
        enum compress_rc rc = compress_gunzip(p, len, limits[i], &out);
        FUZZ_CHECK(rc == COMPRESS_OK || rc == COMPRESS_TOO_LARGE || rc == COMPRESS_BAD ||
                   rc == COMPRESS_NOMEM);
        FUZZ_CHECK(out.data[0] == 'x');
        if (rc != COMPRESS_OK) {
            FUZZ_CHECK(out.len == 1); /* out is as it was */
        } else {
            size_t got = out.len - 1;
            FUZZ_CHECK(got <= limits[i]);
            struct buf z, back;
            buf_init(&z, 4 * FUZZ_LARGE);
            buf_init(&back, 2 * FUZZ_LARGE);
            FUZZ_CHECK(compress_gzip(out.data + 1, got, 1, &z) == 0);
            FUZZ_CHECK(compress_gunzip(z.data, z.len, got, &back) == COMPRESS_OK);
            FUZZ_CHECK(back.len == got && (got == 0 || memcmp(back.data, out.data + 1, got) == 0));
            buf_release(&z);
            buf_release(&back);
        }
        buf_release(&out);
    }
out:
    free(accept);
    free(coding);
    return 0;
}
