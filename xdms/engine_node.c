/* Element, attribute and namespace resources (RFC 4825 §7.4–7.10, §8.2–8.4).
 *
 * Edits are byte splices of the stored document: the target's bytes (found with xspan) are
 * replaced, removed, or new bytes are inserted at the position RFC 4825 §8.2.3 prescribes. The
 * result is parsed again, the request's selector is evaluated on it (the idempotency checks of
 * §8.2.3/§8.2.4/§8.4), and only then stored. Untouched bytes never change, and an element GET
 * after its PUT returns the body byte for byte. */
#include <libxml/parser.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"
#include "log.h"
#include "nodeget.h"
#include "nodesel.h"
#include "prescan.h"
#include "usage.h"
#include "xdoc.h"
#include "xcap_names.h"
#include "xcap_uri.h"
#include "xspan.h"

static const struct xspan_el *engine_node_span(const struct nodeget_doc *d, xmlNodePtr n)
{
    return &d->spans.els[xspan_index(n)];
}

/* XPath of an element by position only ("/" "*", then "/" "*[k]" per level): exact in the previous
 * version of the document and free of namespace prefixes (used in change-log details for RFC
 * 5261 patches). */
static int engine_node_xpath(xmlNodePtr n, struct buf *out)
{
    if (!n->parent || n->parent->type != XML_ELEMENT_NODE)
        return buf_puts(out, "/*");
    if (engine_node_xpath(n->parent, out) < 0)
        return -1;
    unsigned k = 1;
    for (xmlNodePtr s = n->prev; s; s = s->prev)
        if (s->type == XML_ELEMENT_NODE)
            k++;
    return buf_printf(out, "/*[%u]", k);
}

/* Change-log detail, read by the notifier to build xcap-diff patches (RFC 5874, RFC 5261):
 *   "op=add|replace|remove\n"
 *   "sel=XPATH\n"            positional path in the PREVIOUS version ("/" "*" "/" "*[k]" ...),
 *                             plus "/@QNAME" for an attribute replaced or removed
 *   "pos=before|after|\n"    for add: relative to the sibling sel names; empty = last child
 *   "type=@QNAME|\n"         for add of an attribute
 *   "ns=PREFIX URI\n"...     bindings in scope where the content goes (PREFIX "" = default),
 *                             so the patch can declare them and the content keeps its names
 *   "\n" CONTENT             the new element's bytes or the attribute value, as stored */
static int engine_node_detail(struct buf *out, const char *op, xmlNodePtr target,
                              const char *suffix, const char *pos, const char *type, xmlDocPtr doc,
                              xmlNodePtr context, const char *content, size_t clen)
{
    int rc = buf_printf(out, "op=%s\nsel=", op);
    rc |= engine_node_xpath(target, out);
    rc |= buf_printf(out, "%s\npos=%s\ntype=%s\n", suffix ? suffix : "", pos ? pos : "",
                     type ? type : "");
    xmlNsPtr *nsl =
        context && context->type == XML_ELEMENT_NODE ? xmlGetNsList(doc, context) : NULL;
    for (xmlNsPtr *p = nsl; p && *p; p++) {
        const char *pfx = (const char *)(*p)->prefix;
        if (pfx && strcmp(pfx, "xml") == 0)
            continue;
        rc |= buf_printf(out, "ns=%s %s\n", pfx ? pfx : "", (const char *)(*p)->href);
    }
    xmlFree(nsl);
    rc |= buf_puts(out, "\n");
    rc |= buf_append(out, content, clen);
    return rc ? -1 : 0;
}

/* RFC 4825 §11: <no-parent> carries the URI of the closest existing ancestor. */
static enum xcap_status engine_node_no_parent(const char *xcap_root,
                                              const struct engine_request *req,
                                              const struct nodesel *sel, size_t depth,
                                              struct xcap_err *err)
{
    struct buf b;
    buf_init(&b, 1 << 16);
    int rc = buf_puts(&b, xcap_root);
    rc |= buf_puts(&b, req->uri->doc_sel);
    for (size_t i = 0; i < depth; i++) {
        rc |= buf_puts(&b, i == 0 ? "/~~/" : "/");
        rc |= xcap_uri_encode_segment(&b, sel->steps[i].text);
    }
    xcap_fail(err, XCAP_NO_PARENT, "the parent of the target does not exist");
    if (rc == 0)
        err->ancestor = buf_detach(&b, NULL);
    buf_release(&b);
    return XCAP_NO_PARENT;
}

/* Replaces data[from..to) by ins, into out. */
static int engine_node_splice(const struct nodeget_doc *d, size_t from, size_t to, const char *ins,
                              size_t ins_len, struct buf *out)
{
    buf_reset(out);
    if (buf_append(out, d->data, from) < 0 || buf_append(out, ins, ins_len) < 0 ||
        buf_append(out, d->data + to, d->len - to) < 0)
        return -1;
    return 0;
}

/* An element body, as checked before the write transaction (engine_node_check_element_body). */
struct node_body {
    size_t off, len; /* the element's bytes in the request body */
    char *prefix;    /* prefix of its name as written, NULL when unprefixed */
    char *local;
    bool own_ns; /* the element declares its own prefix (or default namespace) itself: */
    char *ns;    /* ... to this namespace (NULL: xmlns="" undeclares the default) */
};

static void engine_node_body_release(struct node_body *b)
{
    free(b->prefix);
    free(b->local);
    free(b->ns);
    memset(b, 0, sizeof *b);
}

/* An element body (RFC 4825 §8.2.2): UTF-8, exactly one well-balanced element, optionally
 * surrounded by white space and preceded by an XML declaration, within the limits. Checked
 * before the transaction, without the document: the body is parsed inside a wrapper element and
 * may use prefixes it does not bind itself (they take the bindings in scope at the parent, as
 * the spliced result gives them; engine_node_body_ns() resolves the element's own name in the
 * transaction, and the re-parse of the spliced document is the final word on namespace
 * well-formedness). */
static enum xcap_status engine_node_check_element_body(const char *body, size_t blen,
                                                       const struct prescan_limits *lim,
                                                       struct node_body *out, struct xcap_err *err)
{
    memset(out, 0, sizeof *out);
    if (!xdoc_utf8_valid(body, blen))
        return xcap_fail(err, XCAP_NOT_UTF8, "the body is not valid UTF-8");
    size_t s = 0, e = blen;
    if (e >= 3 && memcmp(body, "\xEF\xBB\xBF", 3) == 0)
        s = 3;
    while (s < e && strchr(" \t\r\n", body[s]))
        s++;
    if (e - s >= 5 && memcmp(body + s, "<?xml", 5) == 0) {
        const char *q = memmem(body + s, e - s, "?>", 2);
        if (!q)
            return xcap_fail(err, XCAP_NOT_XML_FRAG, "unterminated XML declaration");
        s = (size_t)(q - body) + 2;
        while (s < e && strchr(" \t\r\n", body[s]))
            s++;
    }
    while (e > s && strchr(" \t\r\n", body[e - 1]))
        e--;
    if (s == e || body[s] != '<')
        return xcap_fail(err, XCAP_NOT_XML_FRAG, "the body must be one XML element");
    enum xcap_status st = prescan_check(body + s, e - s, lim, NULL, err);
    if (st != XCAP_OK)
        return st;

    static const char wrap_open[] = "<xdmfrag0:w xmlns:xdmfrag0=\"urn:xdm:internal:fragment\">";
    static const char wrap_close[] = "</xdmfrag0:w>";
    struct buf w;
    buf_init(&w, blen + sizeof wrap_open + sizeof wrap_close);
    if (buf_puts(&w, wrap_open) | buf_append(&w, body + s, e - s) | buf_puts(&w, wrap_close)) {
        buf_release(&w);
        return xcap_fail(err, XCAP_TOO_LARGE, "body too large");
    }
    xmlDocPtr f = NULL;
    struct xcap_err perr = {0};
    st = xdoc_parse_unbound(w.data, w.len, &f, &perr);
    buf_release(&w);
    if (st != XCAP_OK) {
        st = xcap_fail(err, st == XCAP_NOT_UTF8 ? st : XCAP_NOT_XML_FRAG, "%s",
                       perr.phrase ? perr.phrase : "");
        xcap_err_release(&perr);
        return st;
    }
    xmlNodePtr el = xmlDocGetRootElement(f)->children;
    if (!el || el->next || el->type != XML_ELEMENT_NODE) {
        xmlFreeDoc(f);
        return xcap_fail(err, XCAP_NOT_XML_FRAG, "the body must be exactly one XML element");
    }
    /* The name as written: "<" QName, the QName ending where the start tag's name does. */
    size_t q = s + 1;
    while (q < e && !strchr(" \t\r\n/>", body[q]))
        q++;
    const char *colon = memchr(body + s + 1, ':', q - s - 1);
    if (colon) {
        out->prefix = strndup(body + s + 1, (size_t)(colon - body) - s - 1);
        out->local = strndup(colon + 1, (size_t)(body + q - colon) - 1);
    } else {
        out->local = strndup(body + s + 1, q - s - 1);
    }
    bool oom = !out->local || (colon && !out->prefix);
    for (xmlNsPtr d = el->nsDef; d && !oom; d = d->next) {
        bool same = out->prefix ? d->prefix && strcmp((const char *)d->prefix, out->prefix) == 0
                                : !d->prefix;
        if (!same)
            continue;
        out->own_ns = true;
        if (d->href && d->href[0] && !(out->ns = strdup((const char *)d->href)))
            oom = true;
    }
    xmlFreeDoc(f);
    if (oom) {
        engine_node_body_release(out);
        return xcap_fail(err, XCAP_INTERNAL, "out of memory");
    }
    out->off = s;
    out->len = e - s;
    return XCAP_OK;
}

/* The namespace of the body's element once it sits under parent (NULL: the document element):
 * its own declaration, else the binding in scope at the parent. *ns is borrowed (from b or the
 * document) and NULL for no namespace. A prefix bound nowhere is not-xml-frag. */
static enum xcap_status engine_node_body_ns(const struct node_body *b, xmlDocPtr doc,
                                            xmlNodePtr parent, const char **ns,
                                            struct xcap_err *err)
{
    *ns = NULL;
    if (b->own_ns) {
        *ns = b->ns;
        return XCAP_OK;
    }
    xmlNsPtr n = parent ? xmlSearchNs(doc, parent, (const xmlChar *)b->prefix) : NULL;
    if (n && n->href && n->href[0])
        *ns = (const char *)n->href;
    if (b->prefix && !*ns)
        return xcap_fail(err, XCAP_NOT_XML_FRAG, "namespace prefix %.64s is not bound", b->prefix);
    return XCAP_OK;
}

/* An attribute body (RFC 4825 §8.2.2): the value of an AttValue without its quotes. */
static enum xcap_status engine_node_check_att_value(const char *v, size_t len, struct xcap_err *err)
{
    if (!xdoc_utf8_valid(v, len))
        return xcap_fail(err, XCAP_NOT_UTF8, "the body is not valid UTF-8");
    for (size_t i = 0; i < len; i++) {
        if (v[i] == '<')
            return xcap_fail(err, XCAP_NOT_XML_ATT_VALUE, "'<' is not allowed in a value");
        if (v[i] != '&')
            continue;
        const char *semi = memchr(v + i, ';', len - i);
        size_t n = semi ? (size_t)(semi - v) - i - 1 : 0;
        const char *r = v + i + 1;
        bool ok = semi && ((n == 2 && (!memcmp(r, "lt", 2) || !memcmp(r, "gt", 2))) ||
                           (n == 3 && !memcmp(r, "amp", 3)) ||
                           (n == 4 && (!memcmp(r, "quot", 4) || !memcmp(r, "apos", 4))) ||
                           (n >= 2 && r[0] == '#'));
        if (ok && r[0] == '#') {
            for (size_t k = 1 + (r[1] == 'x'); k < n; k++)
                if (!(r[k] >= '0' && r[k] <= '9') && !(r[1] == 'x' && strchr("abcdefABCDEF", r[k])))
                    ok = false;
            if (n == 2 && r[1] == 'x')
                ok = false;
        }
        if (!ok)
            return xcap_fail(err, XCAP_NOT_XML_ATT_VALUE, "'&' must start a reference");
        i += n + 1;
    }
    return XCAP_OK;
}

/* Quotes an attribute value for splicing: double quotes unless the value holds '"' and no '\''
 * (so the bytes stay as sent); with both, '"' becomes &quot;. */
static int engine_node_quote_value(struct buf *out, const char *v, size_t len)
{
    bool dq = memchr(v, '"', len) != NULL, sq = memchr(v, '\'', len) != NULL;
    if (dq && !sq)
        return buf_puts(out, "'") | buf_append(out, v, len) | buf_puts(out, "'");
    int rc = buf_puts(out, "\"");
    for (size_t i = 0; i < len; i++)
        rc |= v[i] == '"' ? buf_puts(out, "&quot;") : buf_append(out, v + i, 1);
    return rc | buf_puts(out, "\"");
}

struct node_call {
    struct engine *e;
    const char *xcap_root;
    const struct prescan_limits *limits;
    const struct engine_request *req;
    struct nodesel sel;
    /* The PUT body, checked before the transaction (engine_node_prepare); its verdict is given
     * where RFC 4825 orders it, after the preconditions and the parent's existence. */
    enum xcap_status body_st;
    struct xcap_err body_err;
    struct node_body body;
    struct store_txn *t;
    struct store_doc stored;
    struct nodeget_doc d;
    struct buf out;        /* new document bytes */
    struct nodeget_doc nd; /* the new document, parsed */
    struct buf detail;     /* change-log detail */
};

static void engine_node_call_release(struct node_call *c)
{
    if (c->t)
        store_txn_abort(c->t);
    nodesel_release(&c->sel);
    xcap_err_release(&c->body_err);
    engine_node_body_release(&c->body);
    store_doc_release(&c->stored);
    nodeget_doc_release(&c->d);
    nodeget_doc_release(&c->nd);
    buf_release(&c->out);
    buf_release(&c->detail);
}

/* Opens the transaction, reads and indexes the document, checks preconditions. A missing
 * document is 404 for reads and 409 no-parent for writes (RFC 4825 §8.2.1). */
static enum xcap_status engine_node_open(struct node_call *c, bool write, struct xcap_err *err)
{
    struct doc_key k;
    engine_key(c->req->uri, &k);
    enum store_rc rc = store_txn_begin(c->e->store, write, &c->t);
    if (rc != STORE_OK) {
        c->t = NULL;
        return engine_store_fail(err, rc);
    }
    rc = store_doc_get(c->t, &k, &c->stored);
    if (rc == STORE_NOTFOUND) {
        if (c->req->if_match)
            return xcap_fail(err, XCAP_PRECONDITION_FAILED, "no such document");
        if (c->req->method != ENGINE_PUT)
            return xcap_fail(err, XCAP_NOT_FOUND, "no such document");
        xcap_fail(err, XCAP_NO_PARENT, "the document does not exist");
        const char *slash = strrchr(c->req->uri->doc_sel, '/');
        size_t dl = slash ? (size_t)(slash - c->req->uri->doc_sel) + 1 : 0;
        if (asprintf(&err->ancestor, "%s%.*s", c->xcap_root, (int)dl, c->req->uri->doc_sel) < 0)
            err->ancestor = NULL;
        return XCAP_NO_PARENT;
    }
    if (rc != STORE_OK)
        return engine_store_fail(err, rc);
    enum xcap_status st = engine_preconditions(c->req, c->stored.etag, err);
    if (st != XCAP_OK)
        return st;
    return nodeget_doc_load(&c->d, c->stored.data, c->stored.len, err);
}

/* Reads the selected element, attribute or namespace bindings from the loaded c->d. */
static enum xcap_status engine_node_read(struct node_call *c, struct engine_reply *rep,
                                         struct xcap_err *err)
{
    return nodeget_render(&c->sel, &c->d, &rep->body, &rep->content_type, err);
}

static enum xcap_status engine_node_get(struct node_call *c, struct engine_reply *rep,
                                        struct xcap_err *err)
{
    enum xcap_status st = engine_node_open(c, false, err);
    if (c->stored.data)
        memcpy(rep->etag, c->stored.etag, sizeof rep->etag);
    if (st != XCAP_OK)
        return st;
    return engine_node_read(c, rep, err);
}

/* Parses the spliced result and evaluates the request's element selector on it; the element it
 * selects must start at new_start (the content just written). */
static enum xcap_status engine_node_verify(struct node_call *c, size_t new_start, bool must_select,
                                           enum xcap_status fail, struct xcap_err *err)
{
    struct nodeget_doc *nd = &c->nd;
    enum xcap_status st = nodeget_doc_load(nd, c->out.data, c->out.len, err);
    if (st != XCAP_OK) {
        /* the body was checked on its own; a failure here is a namespace clash with the
         * document (e.g. a duplicate attribute) */
        return xcap_fail(
            err, c->sel.terminal == NODESEL_ATTRIBUTE ? XCAP_NOT_XML_ATT_VALUE : XCAP_NOT_XML_FRAG,
            "%s", err->phrase ? err->phrase : "the result is not well-formed");
    }
    bool amb;
    xmlNodePtr el = nodesel_eval(&c->sel, c->sel.n_steps, nd->xml, &amb, NULL);
    if (must_select && (!el || engine_node_span(nd, el)->start != new_start))
        return xcap_fail(err, fail, "the URI would not select the new content");
    if (!must_select && el)
        return xcap_fail(err, fail, "the URI would select another element afterwards");
    return XCAP_OK;
}

/* Reports the verdict engine_node_prepare() reached on the body. */
static enum xcap_status engine_node_body_verdict(struct node_call *c, struct xcap_err *err)
{
    xcap_err_release(err);
    *err = c->body_err;
    memset(&c->body_err, 0, sizeof c->body_err);
    return c->body_st;
}

/* The document a write would store stays within the limits (an element of allowed shape may
 * still nest too deep where it goes, or be one element too many); counted on the spliced bytes
 * before they are parsed. */
static enum xcap_status engine_node_bound_result(struct node_call *c, struct xcap_err *err)
{
    struct xcap_err perr = {0};
    enum xcap_status st = prescan_check(c->out.data, c->out.len, c->limits, NULL, &perr);
    if (st != XCAP_OK)
        xcap_fail(err, st, "the resulting document: %s", perr.phrase ? perr.phrase : "");
    xcap_err_release(&perr);
    return st;
}

/* Where a new element goes (RFC 4825 §8.2.3): after the last sibling with the same name; with a
 * position n, as the n-th such sibling (after the (n-1)-th, or before the first when n = 1);
 * with no such sibling, as the parent's last child. For "*" steps without a position the body's
 * element name is the name test. */
static enum xcap_status engine_node_insert_point(struct node_call *c, xmlNodePtr parent,
                                                 const char *bns, const char *blocal, size_t *at,
                                                 const char **pos, xmlNodePtr *anchor,
                                                 struct xcap_err *err)
{
    const struct nodesel_step *st = &c->sel.steps[c->sel.n_steps - 1];
    struct nodesel_step test = *st;
    if (!st->local && !st->pos) {
        test.local = (char *)blocal;
        test.ns = (char *)bns;
    }
    unsigned count = 0;
    xmlNodePtr nth_before = NULL, last = NULL, first = NULL, nth = NULL;
    for (xmlNodePtr n = parent->children; n; n = n->next) {
        if (!nodesel_name_matches(&test, n))
            continue;
        count++;
        if (!first)
            first = n;
        last = n;
        if (st->pos && count == st->pos - 1)
            nth_before = n;
        if (st->pos && count == st->pos)
            nth = n;
    }
    if (st->pos == (unsigned)-1 || (st->pos > 1 && count < st->pos - 1))
        return xcap_fail(err, XCAP_CANNOT_INSERT, "there are only %u such siblings", count);
    if (st->pos > 1) {
        *anchor = nth_before;
        *pos = "after";
        *at = engine_node_span(&c->d, nth_before)->end;
        return XCAP_OK;
    }
    if (st->pos == 1 && first) {
        *anchor = nth ? nth : first;
        *pos = "before";
        *at = engine_node_span(&c->d, *anchor)->start;
        return XCAP_OK;
    }
    if (!st->pos && last) {
        *anchor = last;
        *pos = "after";
        *at = engine_node_span(&c->d, last)->end;
        return XCAP_OK;
    }
    *anchor = parent;
    *pos = NULL;
    *at = SIZE_MAX; /* append as last child */
    return XCAP_OK;
}

static enum xcap_status engine_node_put_element(struct node_call *c, bool *created,
                                                struct xcap_err *err)
{
    const struct engine_request *req = c->req;
    bool amb;
    size_t depth;
    xmlNodePtr parent = NULL;
    if (c->sel.n_steps > 1) {
        parent = nodesel_eval(&c->sel, c->sel.n_steps - 1, c->d.xml, &amb, &depth);
        if (!parent)
            return engine_node_no_parent(c->xcap_root, req, &c->sel, depth, err);
    }
    if (c->body_st != XCAP_OK)
        return engine_node_body_verdict(c, err);
    const char *bns = NULL, *blocal = c->body.local;
    enum xcap_status st = engine_node_body_ns(&c->body, c->d.xml, parent, &bns, err);
    if (st != XCAP_OK)
        return st;
    const char *body = req->body + c->body.off;
    size_t blen = c->body.len;
    xmlNodePtr target = nodesel_eval(&c->sel, c->sel.n_steps, c->d.xml, &amb, NULL);
    size_t new_start;
    int rc;
    if (target) { /* replacement in place, RFC 4825 §8.2.4 */
        const struct xspan_el *se = engine_node_span(&c->d, target);
        new_start = se->start;
        rc = engine_node_splice(&c->d, se->start, se->end, body, blen, &c->out);
        rc |= engine_node_detail(&c->detail, "replace", target, NULL, NULL, NULL, c->d.xml,
                                 target->parent, body, blen);
        *created = false;
    } else if (amb || !parent) {
        return xcap_fail(err, XCAP_CANNOT_INSERT,
                         amb ? "the selector matches more than one element"
                             : "a document has exactly one root element");
    } else {
        size_t at = SIZE_MAX;
        const char *pos = NULL;
        xmlNodePtr anchor = parent;
        st = engine_node_insert_point(c, parent, bns, blocal, &at, &pos, &anchor, err);
        if (st != XCAP_OK)
            return st;
        const struct xspan_el *pe = engine_node_span(&c->d, parent);
        if (at != SIZE_MAX) {
            new_start = at;
            rc = engine_node_splice(&c->d, at, at, body, blen, &c->out);
        } else if (!pe->empty) {
            new_start = at = pe->etag_start;
            rc = engine_node_splice(&c->d, at, at, body, blen, &c->out);
        } else { /* <parent .../> becomes <parent ...>BODY</parent> */
            struct buf ins;
            buf_init(&ins, SIZE_MAX);
            rc = buf_puts(&ins, ">") | buf_append(&ins, body, blen) | buf_puts(&ins, "</") |
                 buf_append(&ins, c->d.data + pe->start + 1, pe->name_len) | buf_puts(&ins, ">");
            new_start = pe->stag_end - 1;
            rc |= engine_node_splice(&c->d, pe->stag_end - 2, pe->stag_end, ins.data, ins.len,
                                     &c->out);
            buf_release(&ins);
        }
        rc |= engine_node_detail(&c->detail, "add", anchor, NULL, pos, NULL, c->d.xml, parent, body,
                                 blen);
        *created = true;
    }
    if (rc)
        return xcap_fail(err, XCAP_TOO_LARGE, "the document would be too large");
    if ((st = engine_node_bound_result(c, err)) != XCAP_OK)
        return st;
    return engine_node_verify(c, new_start, true, XCAP_CANNOT_INSERT, err);
}

/* A prefix bound to ns at el that can qualify an attribute (default namespaces cannot). */
static const char *engine_node_attr_prefix(xmlDocPtr doc, xmlNodePtr el, const char *ns)
{
    if (strcmp(ns, (const char *)XML_XML_NAMESPACE) == 0)
        return "xml"; /* bound by definition, and no other prefix may be */
    const char *found = NULL;
    xmlNsPtr *nsl = xmlGetNsList(doc, el);
    for (xmlNsPtr *p = nsl; p && *p && !found; p++)
        if ((*p)->prefix && strcmp((const char *)(*p)->href, ns) == 0)
            found = (const char *)(*p)->prefix;
    xmlFree(nsl);
    return found;
}

static enum xcap_status engine_node_put_attribute(struct node_call *c, bool *created,
                                                  struct xcap_err *err)
{
    const struct engine_request *req = c->req;
    bool amb;
    size_t depth;
    xmlNodePtr el = nodesel_eval(&c->sel, c->sel.n_steps, c->d.xml, &amb, &depth);
    if (!el)
        return engine_node_no_parent(c->xcap_root, req, &c->sel, depth, err);
    if (c->body_st != XCAP_OK)
        return engine_node_body_verdict(c, err);
    enum xcap_status st;
    struct buf q;
    buf_init(&q, SIZE_MAX);
    int rc = engine_node_quote_value(&q, req->body, req->body_len);
    xmlAttrPtr a = nodesel_find_attr(el, c->sel.attr_ns, c->sel.attr_local);
    const struct xspan_el *se = engine_node_span(&c->d, el);
    if (a) {
        const struct xspan_attr *sa = nodeget_attr_span(&c->d, el, a);
        if (!sa) {
            buf_release(&q);
            return xcap_fail(err, XCAP_INTERNAL, "cannot locate the attribute");
        }
        rc |= engine_node_splice(&c->d, sa->value - 1, sa->end, q.data, q.len, &c->out);
        struct buf suffix;
        buf_init(&suffix, SIZE_MAX);
        rc |= buf_puts(&suffix, "/@") | buf_append(&suffix, c->d.data + sa->name, sa->name_len);
        rc |= engine_node_detail(&c->detail, "replace", el, suffix.data, NULL, NULL, c->d.xml, el,
                                 req->body, req->body_len);
        buf_release(&suffix);
        *created = false;
    } else {
        /* qualified name: the selector's local name, with a prefix bound to its namespace at
         * the element, or a new prefix declared on the element */
        struct buf ins, qname;
        buf_init(&ins, SIZE_MAX);
        buf_init(&qname, SIZE_MAX);
        const char *pfx = NULL;
        rc |= buf_puts(&ins, " ");
        if (c->sel.attr_ns) {
            pfx = engine_node_attr_prefix(c->d.xml, el, c->sel.attr_ns);
            if (!pfx) {
                pfx = "xdmattr0";
                rc |= buf_printf(&ins, "xmlns:%s=\"", pfx);
                rc |= buf_xml_escape(&ins, c->sel.attr_ns, strlen(c->sel.attr_ns));
                rc |= buf_puts(&ins, "\" ");
            }
        }
        rc |= buf_printf(&qname, "@%s%s%s", pfx ? pfx : "", pfx ? ":" : "", c->sel.attr_local);
        rc |= buf_puts(&ins, qname.data ? qname.data + 1 : "") | buf_puts(&ins, "=");
        rc |= buf_append(&ins, q.data, q.len);
        size_t at = se->stag_end - (se->empty ? 2 : 1);
        rc |= engine_node_splice(&c->d, at, at, ins.data, ins.len, &c->out);
        rc |= engine_node_detail(&c->detail, "add", el, NULL, NULL, qname.data, c->d.xml, el,
                                 req->body, req->body_len);
        buf_release(&qname);
        buf_release(&ins);
        *created = true;
    }
    buf_release(&q);
    if (rc)
        return xcap_fail(err, XCAP_TOO_LARGE, "the document would be too large");
    if ((st = engine_node_bound_result(c, err)) != XCAP_OK)
        return st;
    st = engine_node_verify(c, se->start, true, XCAP_CANNOT_INSERT, err);
    if (st == XCAP_OK) {
        xmlNodePtr nel = nodesel_eval(&c->sel, c->sel.n_steps, c->nd.xml, &amb, NULL);
        xmlAttrPtr na = nel ? nodesel_find_attr(nel, c->sel.attr_ns, c->sel.attr_local) : NULL;
        if (!na)
            st = xcap_fail(err, XCAP_CANNOT_INSERT, "the URI would not select the attribute");
    }
    return st;
}

static enum xcap_status engine_node_delete(struct node_call *c, struct xcap_err *err)
{
    bool amb;
    xmlNodePtr el = nodesel_eval(&c->sel, c->sel.n_steps, c->d.xml, &amb, NULL);
    if (!el)
        return xcap_fail(err, XCAP_NOT_FOUND,
                         amb ? "the selector matches more than one element" : "no such element");
    const struct xspan_el *se = engine_node_span(&c->d, el);
    int rc;
    if (c->sel.terminal == NODESEL_ATTRIBUTE) {
        xmlAttrPtr a = nodesel_find_attr(el, c->sel.attr_ns, c->sel.attr_local);
        const struct xspan_attr *sa = a ? nodeget_attr_span(&c->d, el, a) : NULL;
        if (!sa)
            return xcap_fail(err, XCAP_NOT_FOUND, "no such attribute");
        rc = engine_node_splice(&c->d, sa->ws, sa->end, "", 0, &c->out);
        struct buf suffix;
        buf_init(&suffix, SIZE_MAX);
        rc |= buf_puts(&suffix, "/@") | buf_append(&suffix, c->d.data + sa->name, sa->name_len);
        /* the bindings at the element let a patch resolve a prefixed attribute name */
        rc |= engine_node_detail(&c->detail, "remove", el, suffix.data, NULL, NULL, c->d.xml, el,
                                 "", 0);
        buf_release(&suffix);
        if (rc)
            return xcap_fail(err, XCAP_INTERNAL, "out of memory");
        return nodeget_doc_load(&c->nd, c->out.data, c->out.len, err);
    }
    if (c->sel.n_steps == 1) /* RFC 4825 §8.4 */
        return xcap_fail(err, XCAP_CANNOT_DELETE,
                         "the root element cannot be deleted; "
                         "delete the document instead");
    rc = engine_node_splice(&c->d, se->start, se->end, "", 0, &c->out);
    rc |= engine_node_detail(&c->detail, "remove", el, NULL, NULL, NULL, NULL, NULL, "", 0);
    if (rc)
        return xcap_fail(err, XCAP_INTERNAL, "out of memory");
    return engine_node_verify(c, 0, false, XCAP_CANNOT_DELETE, err);
}

/* Parses the selector and checks what needs no document: the namespace resource is read-only
 * (RFC 4825 §8.2.2, §8.4: 405), and a PUT body's media type must fit the resource (415). */
/* The query with the usage's conventional prefixes (the row's prefixes) bound ahead of the
 * client's own xmlns() parts, which win (docs/clients.md). A new string, or NULL when out of
 * memory. */
static char *engine_node_query(const struct appusage *au, const char *query)
{
    struct buf b;
    buf_init(&b, SIZE_MAX);
    for (const char *const *p = au->prefixes; p && p[0]; p += 2)
        if (buf_printf(&b, "xmlns(%s=%s)", p[0], p[1]) < 0)
            break;
    if (!query || buf_puts(&b, query) == 0)
        return buf_detach(&b, NULL);
    buf_release(&b);
    return NULL;
}

static enum xcap_status engine_node_prepare(struct node_call *c, struct xcap_err *err)
{
    const struct engine_request *req = c->req;
    char *query = req->au->prefixes ? engine_node_query(req->au, req->uri->query) : NULL;
    if (req->au->prefixes && !query)
        return xcap_fail(err, XCAP_INTERNAL, "out of memory");
    enum xcap_status st = nodesel_parse(req->uri->node_sel, query ? query : req->uri->query,
                                        req->au->default_ns, &c->sel, err);
    free(query);
    if (st != XCAP_OK)
        return st;
    bool write = req->method == ENGINE_PUT || req->method == ENGINE_DELETE;
    if (write && c->sel.terminal == NODESEL_NAMESPACE) {
        xcap_fail(err, XCAP_METHOD_NOT_ALLOWED, "namespace bindings are read-only");
        err->allow = strdup("GET, HEAD");
        return XCAP_METHOD_NOT_ALLOWED;
    }
    if (req->method == ENGINE_PUT) {
        const char *want =
            c->sel.terminal == NODESEL_ATTRIBUTE ? XCAP_MIME_ATTRIBUTE : XCAP_MIME_ELEMENT;
        /* Handsets send the document's own type on node writes of some usages (the row's
         * node_doc_type; docs/clients.md): the URI says what the body is, so it is taken. */
        if (!engine_media_type_is(req->content_type, want) &&
            !(req->au->node_doc_type && engine_media_type_is(req->content_type, req->au->mime)))
            return xcap_fail(err, XCAP_UNSUPPORTED_MEDIA, "this resource needs Content-Type %s",
                             want);
        /* The body is judged here, before any transaction; the verdict waits in c. */
        c->body_st = c->sel.terminal == NODESEL_ATTRIBUTE
                         ? engine_node_check_att_value(req->body, req->body_len, &c->body_err)
                         : engine_node_check_element_body(req->body, req->body_len, c->limits,
                                                          &c->body, &c->body_err);
    }
    return XCAP_OK;
}

/* The write itself, on the loaded document c->d: fills c->out, c->detail and c->nd. */
static enum xcap_status engine_node_apply(struct node_call *c, bool *created, struct xcap_err *err)
{
    *created = false;
    if (c->req->method == ENGINE_DELETE)
        return engine_node_delete(c, err);
    if (c->sel.terminal == NODESEL_ATTRIBUTE)
        return engine_node_put_attribute(c, created, err);
    return engine_node_put_element(c, created, err);
}

enum xcap_status engine_node_transform(const char *xcap_root, const struct engine_request *req,
                                       const char *doc, size_t len, struct buf *out, bool *created,
                                       struct xcap_err *err)
{
    struct prescan_limits lim;
    prescan_limits_default(&lim);
    struct node_call c = {.xcap_root = xcap_root, .limits = &lim, .req = req};
    buf_init(&c.out, SIZE_MAX);
    buf_init(&c.detail, SIZE_MAX);
    enum xcap_status st = engine_node_prepare(&c, err);
    if (st == XCAP_OK && (st = nodeget_doc_load(&c.d, doc, len, err)) == XCAP_OK &&
        (st = engine_node_apply(&c, created, err)) == XCAP_OK &&
        buf_append(out, c.out.data, c.out.len) < 0)
        st = xcap_fail(err, XCAP_INTERNAL, "out of memory");
    engine_node_call_release(&c);
    return st;
}

enum xcap_status engine_node_select(const struct engine_request *req, const char *doc, size_t len,
                                    struct engine_reply *rep, struct xcap_err *err)
{
    return nodeget_select(req->uri->node_sel, req->uri->query, req->au->default_ns, doc, len,
                          &rep->body, &rep->content_type, err);
}

enum xcap_status engine_node_execute(struct engine *e, const struct engine_request *req,
                                     struct engine_reply *rep, struct xcap_err *err)
{
    struct prescan_limits lim = engine_get_limits(e).limits;
    struct node_call c = {.e = e, .xcap_root = e->cfg.xcap_root, .limits = &lim, .req = req};
    buf_init(&c.out, SIZE_MAX);
    buf_init(&c.detail, SIZE_MAX);
    enum xcap_status st = engine_node_prepare(&c, err);
    if (st != XCAP_OK)
        goto done;
    if (req->method != ENGINE_PUT && req->method != ENGINE_DELETE) {
        st = engine_node_get(&c, rep, err);
        goto done;
    }
    bool created = false;
    /* A body already refused writes nothing: a read transaction finds the verdict's place among
     * the preconditions without taking the writer lock. */
    if ((st = engine_node_open(&c, c.body_st == XCAP_OK, err)) != XCAP_OK ||
        (st = engine_node_apply(&c, &created, err)) != XCAP_OK)
        goto done;
    if (c.body_st != XCAP_OK) { /* engine_node_apply() returns the verdict; never reached */
        st = xcap_fail(err, XCAP_INTERNAL, "refused body applied");
        goto done;
    }
    struct doc_key k;
    engine_key(req->uri, &k);
    /* RFC 4825 §8.2.5, §8.4: the whole resulting document is validated, then documents that
     * depend on it are updated, all before the commit. */
    if ((req->method == ENGINE_PUT &&
         (st = engine_check_room(e, c.t, &k, c.stored.len, c.out.len, err)) != XCAP_OK) ||
        (st = usage_validate(e->cfg.usage, req->au, &k, c.nd.xml, err)) != XCAP_OK ||
        (st = usage_interdepend(e->cfg.usage, c.t, req->au, &k, c.nd.xml, err)) != XCAP_OK)
        goto done;
    struct store_txn *t = c.t;
    c.t = NULL; /* engine_commit_update() owns it now */
    st = engine_commit_update(e, t, req, &k, c.stored.etag, c.out.data, c.out.len, c.detail.data,
                              c.detail.len, created, rep, err);
    if (st == XCAP_OK && created)
        st = XCAP_CREATED;
done:
    engine_node_call_release(&c);
    return st;
}
