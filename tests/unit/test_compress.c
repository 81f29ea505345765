/* Unit suite for the proxy's content coding: aggproxy/compress.c (gzip both ways with bounds,
 * Accept-Encoding and Content-Encoding); the entity-tag lists are common/etag.c's (test_etag.c).
 * gzip streams are checked against zlib's own decoder and
 * against a fixed member written by hand from RFC 1952. */
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "buf.h"
#include "compress.h"
#include "log.h"
#include "unit.h"

/* "hello\n" as gzip (RFC 1952: magic, CM=8, no flags, mtime 0, XFL 0, OS 3, deflate data,
 * CRC-32, ISIZE), as `printf 'hello\n' | gzip -n` writes it. */
static const unsigned char hello_gz[] = {0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                                         0x03, 0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0xe7, 0x02, 0x00,
                                         0x20, 0x30, 0x3a, 0x36, 0x06, 0x00, 0x00, 0x00};

/* Decodes with zlib directly (not through compress.c). */
static size_t zlib_gunzip(const void *in, size_t len, unsigned char *out, size_t outlen)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 31) != Z_OK)
        return (size_t)-1;
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)outlen;
    int rc = inflate(&z, Z_FINISH);
    size_t n = outlen - z.avail_out;
    inflateEnd(&z);
    return rc == Z_STREAM_END ? n : (size_t)-1;
}

static void test_gzip_round_trip(void)
{
    size_t n = 300000;
    char *doc = malloc(n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    for (size_t i = 0; i < n; i++)
        doc[i] = "<entry uri=\"sip:x@example.com\"/>\n"[i % 34];
    struct buf z, back;
    buf_init(&z, 1 << 20);
    buf_init(&back, 1 << 20);
    CU_ASSERT_EQUAL(compress_gzip(doc, n, 6, &z), 0);
    CU_ASSERT_TRUE(z.len > 18 && z.len < n / 10);
    CU_ASSERT_EQUAL((unsigned char)z.data[0], 0x1f);
    CU_ASSERT_EQUAL((unsigned char)z.data[1], 0x8b);
    unsigned char *check = malloc(n + 16);
    CU_ASSERT_EQUAL(zlib_gunzip(z.data, z.len, check, n + 16), n);
    CU_ASSERT_EQUAL(memcmp(check, doc, n), 0);
    CU_ASSERT_EQUAL(compress_gunzip(z.data, z.len, n, &back), COMPRESS_OK);
    CU_ASSERT_EQUAL(back.len, n);
    CU_ASSERT_EQUAL(memcmp(back.data, doc, n), 0);
    /* one byte short of the bound: too large, and the output is left as it was */
    buf_reset(&back);
    buf_puts(&back, "keep");
    CU_ASSERT_EQUAL(compress_gunzip(z.data, z.len, n - 1, &back), COMPRESS_TOO_LARGE);
    CU_ASSERT_EQUAL(back.len, 4);
    CU_ASSERT_STRING_EQUAL(back.data, "keep");
    /* empty input is a valid gzip member too */
    buf_reset(&z);
    CU_ASSERT_EQUAL(compress_gzip("", 0, 9, &z), 0);
    buf_reset(&back);
    CU_ASSERT_EQUAL(compress_gunzip(z.data, z.len, 10, &back), COMPRESS_OK);
    CU_ASSERT_EQUAL(back.len, 0);
    /* an output buffer too small for the encoding fails cleanly */
    struct buf tiny;
    buf_init(&tiny, 8);
    CU_ASSERT_EQUAL(compress_gzip(doc, n, 6, &tiny), -1);
    CU_ASSERT_EQUAL(tiny.len, 0);
    buf_release(&tiny);
    free(check);
    free(doc);
    buf_release(&z);
    buf_release(&back);
}

static void test_gunzip_inputs(void)
{
    struct buf out;
    buf_init(&out, 1 << 20);
    CU_ASSERT_EQUAL(compress_gunzip(hello_gz, sizeof hello_gz, 100, &out), COMPRESS_OK);
    CU_ASSERT_EQUAL(out.len, 6);
    CU_ASSERT_STRING_EQUAL(out.data, "hello\n");
    /* RFC 1952 §2.2: members concatenated */
    unsigned char two[2 * sizeof hello_gz];
    memcpy(two, hello_gz, sizeof hello_gz);
    memcpy(two + sizeof hello_gz, hello_gz, sizeof hello_gz);
    buf_reset(&out);
    CU_ASSERT_EQUAL(compress_gunzip(two, sizeof two, 100, &out), COMPRESS_OK);
    CU_ASSERT_STRING_EQUAL(out.data, "hello\nhello\n");
    /* truncated, corrupt CRC, trailing garbage, not gzip, empty */
    buf_reset(&out);
    CU_ASSERT_EQUAL(compress_gunzip(hello_gz, sizeof hello_gz - 1, 100, &out), COMPRESS_BAD);
    CU_ASSERT_EQUAL(out.len, 0);
    unsigned char bad[sizeof hello_gz];
    memcpy(bad, hello_gz, sizeof bad);
    bad[sizeof bad - 6] ^= 0x01; /* CRC-32 */
    CU_ASSERT_EQUAL(compress_gunzip(bad, sizeof bad, 100, &out), COMPRESS_BAD);
    unsigned char trail[sizeof hello_gz + 3];
    memcpy(trail, hello_gz, sizeof hello_gz);
    memcpy(trail + sizeof hello_gz, "xyz", 3);
    CU_ASSERT_EQUAL(compress_gunzip(trail, sizeof trail, 100, &out), COMPRESS_BAD);
    CU_ASSERT_EQUAL(compress_gunzip("<xml/>", 6, 100, &out), COMPRESS_BAD);
    CU_ASSERT_EQUAL(compress_gunzip("", 0, 100, &out), COMPRESS_BAD);
    CU_ASSERT_EQUAL(out.len, 0);
    /* a bomb: 64 MiB of zeros in a few KiB, stopped at the bound */
    size_t big = (size_t)64 << 20;
    struct buf z;
    buf_init(&z, 1 << 20);
    char *zeros = calloc(1, big);
    CU_ASSERT_PTR_NOT_NULL_FATAL(zeros);
    CU_ASSERT_EQUAL(compress_gzip(zeros, big, 9, &z), 0);
    free(zeros);
    CU_ASSERT_TRUE(z.len < 200 * 1024);
    CU_ASSERT_EQUAL(compress_gunzip(z.data, z.len, 1 << 20, &out), COMPRESS_TOO_LARGE);
    CU_ASSERT_EQUAL(out.len, 0);
    buf_release(&z);
    buf_release(&out);
}

static void test_accept_encoding(void)
{
    struct {
        const char *h;
        bool gzip;
    } t[] = {
        {NULL, false},
        {"", false},
        {"gzip", true},
        {"GZIP", true},
        {"x-gzip", true},
        {"deflate, gzip;q=0.5", true},
        {"gzip;q=0", false},
        {"gzip; q=0.000", false},
        {"gzip;q=0.001", true},
        {"gzip;q=1.0", true},
        {"*", true},
        {"*;q=0", false},
        {"gzip;q=0, *", false},
        {"*, gzip;q=0", false},
        {"identity", false},
        {"br, deflate", false},
        {"gzipx", false},
        {" ,, gzip ,", true},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        if (compress_accepts_gzip(t[i].h) != t[i].gzip)
            printf("\n  [%s]\n", t[i].h ? t[i].h : "(null)");
        CU_ASSERT_EQUAL(compress_accepts_gzip(t[i].h), t[i].gzip);
    }
    CU_ASSERT_EQUAL(compress_request_coding(NULL), COMPRESS_IDENTITY);
    CU_ASSERT_EQUAL(compress_request_coding(""), COMPRESS_IDENTITY);
    CU_ASSERT_EQUAL(compress_request_coding("identity"), COMPRESS_IDENTITY);
    CU_ASSERT_EQUAL(compress_request_coding("gzip"), COMPRESS_GZIP);
    CU_ASSERT_EQUAL(compress_request_coding(" X-Gzip "), COMPRESS_GZIP);
    CU_ASSERT_EQUAL(compress_request_coding("br"), COMPRESS_OTHER);
    CU_ASSERT_EQUAL(compress_request_coding("deflate"), COMPRESS_OTHER);
    CU_ASSERT_EQUAL(compress_request_coding("gzip, gzip"), COMPRESS_OTHER);
    CU_ASSERT_EQUAL(compress_request_coding("gzip, br"), COMPRESS_OTHER);
}

static CU_TestInfo compress_tests[] = {
    {"gzip round trip and bounds", test_gzip_round_trip},
    {"gzip inputs: members, corruption, bombs", test_gunzip_inputs},
    {"Accept-Encoding and Content-Encoding", test_accept_encoding},
    CU_TEST_INFO_NULL,
};

int main(void)
{
    log_init("test_compress", LOG_LEVEL_ERROR);
    CU_SuiteInfo suites[] = {
        {"compress", NULL, NULL, NULL, NULL, compress_tests},
        CU_SUITE_INFO_NULL,
    };
    return unit_run(suites);
}
