#include "nodeget.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "log.h"
#include "xcap_names.h"
#include "xdoc.h"

enum xcap_status nodeget_doc_load(struct nodeget_doc *d, const char *data, size_t len,
                                  struct xcap_err *err)
{
    memset(d, 0, sizeof *d);
    d->data = data;
    d->len = len;
    struct xcap_err perr = {0};
    enum xcap_status st = xdoc_parse(data, len, &d->xml, &perr);
    if (st != XCAP_OK) {
        st = xcap_fail(err, st, "%s", perr.phrase ? perr.phrase : "");
        xcap_err_release(&perr);
        return st;
    }
    if (xspan_scan(data, len, &d->spans) < 0 ||
        xspan_number_tree(xmlDocGetRootElement(d->xml)) != d->spans.n_els) {
        nodeget_doc_release(d);
        log_error("nodeget: element spans do not match the parsed tree");
        return xcap_fail(err, XCAP_INTERNAL, "cannot index the document");
    }
    return XCAP_OK;
}

void nodeget_doc_release(struct nodeget_doc *d)
{
    if (d->xml)
        xmlFreeDoc(d->xml);
    xspan_release(&d->spans);
    memset(d, 0, sizeof *d);
}

static bool nodeget_is_xmlns(const char *data, const struct xspan_attr *a)
{
    return (a->name_len == 5 && memcmp(data + a->name, "xmlns", 5) == 0) ||
           (a->name_len > 6 && memcmp(data + a->name, "xmlns:", 6) == 0);
}

const struct xspan_attr *nodeget_attr_span(const struct nodeget_doc *d, xmlNodePtr el,
                                           xmlAttrPtr attr)
{
    size_t k = 0;
    for (xmlAttrPtr a = el->properties; a && a != attr; a = a->next)
        k++;
    const struct xspan_el *se = &d->spans.els[xspan_index(el)];
    for (uint32_t i = 0; i < se->n_attr; i++) {
        const struct xspan_attr *sa = &d->spans.attrs[se->first_attr + i];
        if (nodeget_is_xmlns(d->data, sa))
            continue;
        if (k-- == 0)
            return sa;
    }
    return NULL;
}

/* RFC 4825 §7.10: the element's qualified name as written, no children, one declaration per
 * binding in scope. */
static int nodeget_namespaces(const struct nodeget_doc *d, xmlNodePtr el, const struct xspan_el *se,
                              struct buf *out)
{
    int rc = buf_puts(out, "<");
    rc |= buf_append(out, d->data + se->start + 1, se->name_len);
    xmlNsPtr *nsl = xmlGetNsList(d->xml, el);
    for (xmlNsPtr *p = nsl; p && *p; p++) {
        const char *pfx = (const char *)(*p)->prefix;
        if (pfx && strcmp(pfx, "xml") == 0)
            continue;
        rc |= buf_printf(out, " xmlns%s%s=\"", pfx ? ":" : "", pfx ? pfx : "");
        rc |= buf_xml_escape(out, (const char *)(*p)->href, strlen((const char *)(*p)->href));
        rc |= buf_puts(out, "\"");
    }
    xmlFree(nsl);
    return rc | buf_puts(out, "/>");
}

enum xcap_status nodeget_render(const struct nodesel *sel, const struct nodeget_doc *d,
                                struct buf *out, const char **mime, struct xcap_err *err)
{
    bool amb;
    xmlNodePtr el = nodesel_eval(sel, sel->n_steps, d->xml, &amb, NULL);
    if (!el)
        return xcap_fail(err, XCAP_NOT_FOUND,
                         amb ? "the selector matches more than one element" : "no such element");
    const struct xspan_el *se = &d->spans.els[xspan_index(el)];
    int rc = 0;
    switch (sel->terminal) {
    case NODESEL_ELEMENT:
        *mime = XCAP_MIME_ELEMENT;
        rc = buf_append(out, d->data + se->start, se->end - se->start);
        break;
    case NODESEL_ATTRIBUTE: {
        xmlAttrPtr a = nodesel_find_attr(el, sel->attr_ns, sel->attr_local);
        const struct xspan_attr *sa = a ? nodeget_attr_span(d, el, a) : NULL;
        if (!sa)
            return xcap_fail(err, XCAP_NOT_FOUND, "no such attribute");
        *mime = XCAP_MIME_ATTRIBUTE;
        rc = buf_append(out, d->data + sa->value, sa->value_len);
        break;
    }
    case NODESEL_NAMESPACE:
        *mime = XCAP_MIME_NAMESPACE;
        rc = nodeget_namespaces(d, el, se, out);
        break;
    }
    return rc ? xcap_fail(err, XCAP_INTERNAL, "out of memory") : XCAP_OK;
}

enum xcap_status nodeget_select(const char *node_sel, const char *query, const char *default_ns,
                                const char *doc, size_t len, struct buf *out, const char **mime,
                                struct xcap_err *err)
{
    struct nodesel sel;
    enum xcap_status st = nodesel_parse(node_sel, query, default_ns, &sel, err);
    if (st != XCAP_OK)
        return st;
    struct nodeget_doc d;
    if ((st = nodeget_doc_load(&d, doc, len, err)) == XCAP_OK)
        st = nodeget_render(&sel, &d, out, mime, err);
    else
        st = xcap_fail(err, XCAP_INTERNAL, "the generated document does not parse: %s",
                       err->phrase ? err->phrase : "");
    nodeget_doc_release(&d);
    nodesel_release(&sel);
    return st;
}
