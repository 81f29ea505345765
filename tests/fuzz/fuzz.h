/* Shared by the fuzz targets: the libFuzzer entry point each target defines, and a check that turns
 * a broken contract into a crash (so libFuzzer and the corpus replay both report it). */
#ifndef XDM_FUZZ_H
#define XDM_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: contract broken: %s\n", __FILE__, __LINE__, #cond);            \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Two strings that must both exist and be equal (a re-encoding that must give the same text). */
static inline void fuzz_same(const char *a, const char *b)
{
    FUZZ_CHECK(a && b && strcmp(a, b) == 0);
}

/* The input as a NUL-terminated copy (malloc'd; NULL when memory ran out): what the HTTP and SIP
 * layers hand the parsers, which cut it at an embedded NUL. */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s) {
        memcpy(s, data, size);
        s[size] = '\0';
    }
    return s;
}

#endif
