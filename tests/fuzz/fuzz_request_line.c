/* Fuzz target for the request-line check of common/httpd.h (httpd_request_line_check), which
 * reads the first bytes of every plain-HTTP connection. Input: those bytes, NULs included.
 * Contract checked besides memory safety: the answer is -1, 0 or 1, and a prefix that is already
 * decided (-1 or 1) is decided the same way once more bytes arrive, since the server judges
 * whatever the first packet brought. */
#include "fuzz.h"
#include "httpd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    int whole = httpd_request_line_check(in, size);
    FUZZ_CHECK(whole >= -1 && whole <= 1);
    size_t max = size < 1024 ? size : 1024;
    for (size_t k = 0; k < max; k++) {
        int part = httpd_request_line_check(in, k);
        FUZZ_CHECK(part == 0 || part == whole);
    }
    return 0;
}
