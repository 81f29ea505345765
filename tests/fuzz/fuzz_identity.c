/* Fuzz target for the proxy's reader of X-3GPP-Intended-Identity (aggproxy/identity.c, TS 24.109
 * §7.2): identity_parse(), then identity_find() of the result among a subscriber's identities and
 * the asserted-identity value identity_quote() writes for it, which must parse back to the same
 * URI. Input: the header value; bytes after a NUL are cut off, as the HTTP layer's C strings
 * would. */
#include <string.h>

#include "buf.h"
#include "fuzz.h"
#include "identity.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = fuzz_cstr(data, size);
    if (!in)
        return 0;

    char id[IDENTITY_MAX + 1];
    int rc = identity_parse(in, id, sizeof id);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc == 0) {
        size_t n = strlen(id);
        FUZZ_CHECK(n > 0 && n <= IDENTITY_MAX);
        FUZZ_CHECK(strpbrk(id, "\"<>\\, \t") == NULL && strchr(id, ':') != NULL);
        for (size_t i = 0; i < n; i++)
            FUZZ_CHECK((unsigned char)id[i] >= 0x20 && id[i] != 0x7f);
        /* A smaller output buffer is refused, never overrun. */
        char small[8];
        FUZZ_CHECK(identity_parse(in, small, sizeof small) == (n < sizeof small ? 0 : -1));

        const char *ids[] = {"sip:alice@example.com", "tel:+15551234", id};
        int at = identity_find(ids, 3, id);
        FUZZ_CHECK(at >= 0 && at <= 2);

        struct buf q;
        buf_init(&q, 4 * IDENTITY_MAX);
        FUZZ_CHECK(identity_quote(id, &q) == 0);
        char back[IDENTITY_MAX + 1];
        FUZZ_CHECK(identity_parse(q.data, back, sizeof back) == 0 && strcmp(back, id) == 0);
        buf_release(&q);
    }
    /* The subscriber's identities against a fuzzed one: never out of range. */
    const char *known[] = {"sip:alice@example.com", "sips:bob@Example.COM", "tel:+15551234"};
    int at = identity_find(known, 3, in);
    FUZZ_CHECK(at >= -1 && at <= 2);
    free(in);
    return 0;
}
