/* Fuzz target for the pre-scan of XML bodies (common/prescan.h), which reads every body before
 * libxml2 does. Its verdict must be one of the two it promises, its counts must stay within the
 * limits it accepted, and on input libxml2 accepts as well-formed its counts must equal the tree's
 * (a scanner that counts less than the parser reads would let the attack it exists for through). */
#include <string.h>

#include "fuzz.h"
#include "prescan.h"
#include "xdoc.h"

static void fuzz_tree_counts(xmlNodePtr n, size_t depth, struct prescan_counts *c)
{
    for (; n; n = n->next) {
        if (n->type != XML_ELEMENT_NODE)
            continue;
        c->elements++;
        if (depth > c->max_depth)
            c->max_depth = depth;
        size_t attrs = 0;
        for (xmlAttrPtr a = n->properties; a; a = a->next)
            attrs++;
        for (xmlNsPtr d = n->nsDef; d; d = d->next)
            attrs++;
        if (attrs > c->max_attributes)
            c->max_attributes = attrs;
        fuzz_tree_counts(n->children, depth + 1, c);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    xdoc_global_init();
    const char *s = (const char *)data;
    /* Small limits, so that every verdict is reached by small inputs. */
    static const struct prescan_limits small = {4, 16, 6};
    static const struct prescan_limits wide = {1u << 30, 1u << 30, 1u << 30};
    struct prescan_counts c;
    struct xcap_err err = {0};
    enum xcap_status st = prescan_check(s, size, &small, &c, &err);
    FUZZ_CHECK(st == XCAP_OK || st == XCAP_CONSTRAINT_FAILURE);
    if (st == XCAP_OK) {
        FUZZ_CHECK(!err.phrase);
        FUZZ_CHECK(c.elements <= small.max_elements && c.max_attributes <= small.max_attributes &&
                   c.max_depth <= small.max_depth);
    } else {
        FUZZ_CHECK(err.status == st && err.phrase);
    }
    xcap_err_release(&err);

    struct prescan_counts w;
    FUZZ_CHECK(prescan_check(s, size, &wide, &w, &err) == XCAP_OK);
    /* what the small scan counted before it stopped, the wide one counted too */
    FUZZ_CHECK(w.elements >= c.elements && w.max_attributes >= c.max_attributes &&
               w.max_depth >= c.max_depth);
    xcap_err_release(&err);

    xmlDocPtr doc = NULL;
    if (xdoc_parse(s, size, &doc, &err) == XCAP_OK) {
        struct prescan_counts t = {0};
        fuzz_tree_counts(xmlDocGetRootElement(doc), 1, &t);
        if (t.elements != w.elements || t.max_attributes != w.max_attributes ||
            t.max_depth != w.max_depth)
            fprintf(stderr, "scan %zu/%zu/%zu, tree %zu/%zu/%zu\n", w.elements, w.max_attributes,
                    w.max_depth, t.elements, t.max_attributes, t.max_depth);
        FUZZ_CHECK(t.elements == w.elements && t.max_attributes == w.max_attributes &&
                   t.max_depth == w.max_depth);
        xmlFreeDoc(doc);
    }
    xcap_err_release(&err);
    return 0;
}
