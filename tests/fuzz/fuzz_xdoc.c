/* Fuzz target for the safe XML parser (common/xdoc.h), which reads every request body.
 * A document that parses must serialise, and what the server stores must parse again: a stored
 * document that no longer parses would turn every later request for it into a 500. */
#include <string.h>

#include "buf.h"
#include "fuzz.h"
#include "xdoc.h"

#define FUZZ_XDOC_OUT_MAX (64u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    xdoc_global_init();
    xmlDocPtr doc = NULL;
    struct xcap_err err = {0};
    enum xcap_status st = xdoc_parse((const char *)data, size, &doc, &err);
    if (st != XCAP_OK) {
        FUZZ_CHECK(!doc);
        FUZZ_CHECK(err.status == st);
        FUZZ_CHECK(st == XCAP_NOT_UTF8 || st == XCAP_NOT_WELL_FORMED || st == XCAP_TOO_LARGE ||
                   st == XCAP_INTERNAL);
        xcap_err_release(&err);
        return 0;
    }
    FUZZ_CHECK(doc && xmlDocGetRootElement(doc));
    /* Accepted input is valid UTF-8 without a DOCTYPE (xdoc.h). */
    FUZZ_CHECK(xdoc_utf8_valid((const char *)data, size));
    FUZZ_CHECK(!doc->intSubset && !doc->extSubset);

    struct buf out;
    buf_init(&out, FUZZ_XDOC_OUT_MAX);
    FUZZ_CHECK(xdoc_serialize(doc, &out) == 0);
    xmlFreeDoc(doc);

    xmlDocPtr again = NULL;
    struct xcap_err err2 = {0};
    st = xdoc_parse(out.data, out.len, &again, &err2);
    if (st != XCAP_OK)
        fprintf(stderr, "re-parse of the serialised document failed: %s\n",
                err2.phrase ? err2.phrase : "?");
    FUZZ_CHECK(st == XCAP_OK);
    xmlFreeDoc(again);
    xcap_err_release(&err2);
    buf_release(&out);
    xcap_err_release(&err);
    return 0;
}
