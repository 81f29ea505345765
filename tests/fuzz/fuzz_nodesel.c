/* Fuzz target for the node-selector parser and evaluator (common/nodesel.h).
 * Input: "<selector>\n<query>"; without a '\n' there is no query. The selector is evaluated on
 * a fixed document with default-namespace and prefixed content. */
#include <string.h>

#include "fuzz.h"
#include "nodesel.h"
#include "xdoc.h"

static const char fuzz_doc[] =
    "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\" xmlns:x=\"urn:x\">"
    "<list name=\"a\"><entry uri=\"sip:1@x\"/><x:e x:k=\"v\"/><entry uri=\"sip:2@x\"/></list>"
    "<list name=\"b\"/><list name=\"b\"><list name=\"c\"/></list></resource-lists>";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static xmlDocPtr doc;
    if (!doc) {
        struct xcap_err e = {0};
        xdoc_global_init();
        FUZZ_CHECK(xdoc_parse(fuzz_doc, sizeof fuzz_doc - 1, &doc, &e) == XCAP_OK);
    }
    char *in = fuzz_cstr(data, size);
    if (!in)
        return 0;
    char *query = strchr(in, '\n');
    if (query)
        *query++ = '\0';
    struct nodesel ns;
    struct xcap_err err = {0};
    enum xcap_status st =
        nodesel_parse(in, query, "urn:ietf:params:xml:ns:resource-lists", &ns, &err);
    if (st == XCAP_OK) {
        FUZZ_CHECK(ns.n_steps >= 1 && ns.n_steps <= NODESEL_MAX_STEPS);
        FUZZ_CHECK(ns.terminal != NODESEL_ATTRIBUTE || ns.attr_local);
        for (size_t i = 0; i < ns.n_steps; i++)
            FUZZ_CHECK(ns.steps[i].text && (!ns.steps[i].has_attr || ns.steps[i].attr_value));
        bool amb = false;
        size_t depth = 0;
        xmlNodePtr n = nodesel_eval(&ns, ns.n_steps, doc, &amb, &depth);
        FUZZ_CHECK(depth <= ns.n_steps);
        FUZZ_CHECK(!n || (depth == ns.n_steps && !amb && n->type == XML_ELEMENT_NODE));
        nodesel_release(&ns);
    } else {
        FUZZ_CHECK(st == XCAP_BAD_REQUEST || st == XCAP_INTERNAL);
        FUZZ_CHECK(ns.steps == NULL && ns.n_steps == 0);
    }
    xcap_err_release(&err);
    free(in);
    return 0;
}
