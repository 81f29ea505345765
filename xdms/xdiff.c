/* RFC 5261 patch operations and RFC 5874 element/attribute reports (see xdiff.h for the rules
 * that make them exact). */
#include "xdiff.h"

#include <libxml/tree.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "nodesel.h"
#include "status.h"
#include "xdoc.h"
#include "xspan.h"

#define XDIFF_MAX_BINDINGS 64
#define XDIFF_MAX_CONTENT (16u << 20)
#define XDIFF_WRAP_PREFIX "xdiffw0"
#define XDIFF_WRAP_NS "urn:xdm:internal:xdiff-wrapper"
#define XDIFF_ENGINE_PREFIX "xdmattr0" /* see engine_node_put_attribute() in engine_node.c */

uint64_t xdiff_hash(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

void xdiff_op_release(struct xdiff_op *op)
{
    free(op->sel);
    free(op->pos);
    free(op->type);
    free(op->decls);
    free(op->content);
    memset(op, 0, sizeof *op);
}

static char *xdiff_strdup0(const char *s)
{
    return s ? strdup(s) : NULL;
}

int xdiff_op_copy(const struct xdiff_op *op, struct xdiff_op *out)
{
    *out = *op;
    out->sel = xdiff_strdup0(op->sel);
    out->pos = xdiff_strdup0(op->pos);
    out->type = xdiff_strdup0(op->type);
    out->decls = xdiff_strdup0(op->decls);
    out->content = xdiff_strdup0(op->content);
    if (!out->sel || !out->decls || !out->content || (op->pos && !out->pos) ||
        (op->type && !out->type)) {
        xdiff_op_release(out);
        return -1;
    }
    return 0;
}

/* A namespace binding in scope where content lands; prefix "" is the default namespace. */
struct xdiff_binding {
    char *prefix;
    char *uri;
};

struct xdiff_bindings {
    struct xdiff_binding v[XDIFF_MAX_BINDINGS];
    size_t n;
};

static void xdiff_bindings_release(struct xdiff_bindings *bs)
{
    for (size_t i = 0; i < bs->n; i++) {
        free(bs->v[i].prefix);
        free(bs->v[i].uri);
    }
    bs->n = 0;
}

static int xdiff_bindings_add(struct xdiff_bindings *bs, const char *prefix, size_t plen,
                              const char *uri, size_t ulen)
{
    if (bs->n == XDIFF_MAX_BINDINGS)
        return -1;
    char *p = strndup(prefix, plen), *u = strndup(uri, ulen);
    if (!p || !u) {
        free(p);
        free(u);
        return -1;
    }
    bs->v[bs->n].prefix = p;
    bs->v[bs->n].uri = u;
    bs->n++;
    return 0;
}

static const char *xdiff_bindings_find(const struct xdiff_bindings *bs, const char *prefix,
                                       size_t plen)
{
    for (size_t i = 0; i < bs->n; i++)
        if (strlen(bs->v[i].prefix) == plen && memcmp(bs->v[i].prefix, prefix, plen) == 0)
            return bs->v[i].uri;
    return NULL;
}

/* The bindings in scope at el (none when el is not an element). */
static int xdiff_bindings_at(xmlDocPtr doc, xmlNodePtr el, struct xdiff_bindings *bs)
{
    bs->n = 0;
    if (!el || el->type != XML_ELEMENT_NODE)
        return 0;
    xmlNsPtr *nsl = xmlGetNsList(doc, el);
    int rc = 0;
    for (xmlNsPtr *p = nsl; p && *p && rc == 0; p++) {
        const char *pfx = (const char *)(*p)->prefix;
        const char *href = (const char *)(*p)->href;
        if (pfx && strcmp(pfx, "xml") == 0)
            continue;
        rc = xdiff_bindings_add(bs, pfx ? pfx : "", pfx ? strlen(pfx) : 0, href ? href : "",
                                href ? strlen(href) : 0);
    }
    xmlFree(nsl);
    return rc;
}

/* Text content escaped so that an XML parser gives back exactly s: besides the markup characters,
 * CR must be a character reference or it would be read as a line end (XML 1.0 §2.11). */
static int xdiff_text_escape(struct buf *b, const char *s, size_t len)
{
    int rc = 0;
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        const char *rep = NULL;
        switch (s[i]) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '\r':
            rep = "&#13;";
            break;
        default:
            continue;
        }
        rc |= buf_append(b, s + run, i - run);
        rc |= buf_puts(b, rep);
        run = i + 1;
    }
    rc |= buf_append(b, s + run, len - run);
    return rc ? -1 : 0;
}

/* ---- element content ---------------------------------------------------------------------- */

static bool xdiff_ns_on(xmlNodePtr owner, xmlNsPtr ns)
{
    for (xmlNsPtr d = owner->nsDef; d; d = d->next)
        if (d == ns)
            return true;
    return false;
}

static bool xdiff_has_prefix(const char *const *list, size_t n, const char *p)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], p) == 0)
            return true;
    return false;
}

/* Writes the single element in content[0..len) with declarations added to its start tag for
 * the default namespace in scope at the landing place (when the element declares none itself)
 * and for every prefix from bs it uses without declaring. The content is parsed inside a
 * wrapper that declares bs, exactly as it is read where it lands. Returns 0 or -1. */
static int xdiff_embed(struct buf *out, const char *content, size_t len,
                       const struct xdiff_bindings *bs)
{
    struct buf w;
    buf_init(&w, len + XDIFF_MAX_CONTENT);
    int rc =
        buf_puts(&w, "<" XDIFF_WRAP_PREFIX ":w xmlns:" XDIFF_WRAP_PREFIX "=\"" XDIFF_WRAP_NS "\"");
    const char *default_uri = "";
    for (size_t i = 0; i < bs->n; i++) {
        if (strcmp(bs->v[i].prefix, XDIFF_WRAP_PREFIX) == 0) {
            buf_release(&w);
            return -1;
        }
        if (bs->v[i].prefix[0] == '\0')
            default_uri = bs->v[i].uri;
        rc |= buf_printf(&w, " xmlns%s%s=\"", bs->v[i].prefix[0] ? ":" : "", bs->v[i].prefix);
        rc |= buf_xml_escape(&w, bs->v[i].uri, strlen(bs->v[i].uri));
        rc |= buf_puts(&w, "\"");
    }
    rc |= buf_puts(&w, ">");
    rc |= buf_append(&w, content, len);
    rc |= buf_puts(&w, "</" XDIFF_WRAP_PREFIX ":w>");
    if (rc) {
        buf_release(&w);
        return -1;
    }
    xmlDocPtr doc = NULL;
    struct xcap_err err = {0};
    enum xcap_status st = xdoc_parse(w.data, w.len, &doc, &err);
    xcap_err_release(&err);
    buf_release(&w);
    if (st != XCAP_OK)
        return -1;
    xmlNodePtr wrap = xmlDocGetRootElement(doc);
    xmlNodePtr el = wrap->children;
    if (!el || el->next || el->type != XML_ELEMENT_NODE) {
        xmlFreeDoc(doc);
        return -1;
    }
    bool own_default = false;
    for (xmlNsPtr d = el->nsDef; d; d = d->next)
        if (!d->prefix)
            own_default = true;
    /* Prefixes of the wrapper that the element's subtree refers to. */
    const char *used[XDIFF_MAX_BINDINGS];
    size_t n_used = 0;
    for (xmlNodePtr n = el; n;) {
        if (n->type == XML_ELEMENT_NODE) {
            if (n->ns && n->ns->prefix && xdiff_ns_on(wrap, n->ns) &&
                !xdiff_has_prefix(used, n_used, (const char *)n->ns->prefix))
                used[n_used++] = (const char *)n->ns->prefix;
            for (xmlAttrPtr a = n->properties; a; a = a->next)
                if (a->ns && a->ns->prefix && xdiff_ns_on(wrap, a->ns) &&
                    !xdiff_has_prefix(used, n_used, (const char *)a->ns->prefix))
                    used[n_used++] = (const char *)a->ns->prefix;
            if (n->children) {
                n = n->children;
                continue;
            }
        }
        while (n && n != el && !n->next)
            n = n->parent;
        if (!n || n == el)
            break;
        n = n->next;
    }
    struct xspan sp;
    if (xspan_scan(content, len, &sp) < 0 || sp.n_els == 0) {
        xmlFreeDoc(doc);
        return -1;
    }
    size_t at = sp.els[0].start + 1 + sp.els[0].name_len;
    xspan_release(&sp);
    rc = buf_append(out, content, at);
    if (!own_default) {
        rc |= buf_puts(out, " xmlns=\"");
        rc |= buf_xml_escape(out, default_uri, strlen(default_uri));
        rc |= buf_puts(out, "\"");
    }
    for (size_t i = 0; i < n_used; i++) {
        const char *uri = xdiff_bindings_find(bs, used[i], strlen(used[i]));
        rc |= buf_printf(out, " xmlns:%s=\"", used[i]);
        rc |= buf_xml_escape(out, uri ? uri : "", uri ? strlen(uri) : 0);
        rc |= buf_puts(out, "\"");
    }
    rc |= buf_append(out, content + at, len - at);
    xmlFreeDoc(doc);
    return rc ? -1 : 0;
}

/* ---- attribute values --------------------------------------------------------------------- */

/* The value an XML parser gives to an attribute written as raw (an AttValue without its quotes,
 * as stored by an XCAP attribute PUT, RFC 4825 §8.2.2), escaped as element text. The engine
 * splices raw between quotes in the same way (engine_node_quote_value()). */
static int xdiff_att_text(struct buf *out, const char *raw, size_t len)
{
    bool dq = memchr(raw, '"', len) != NULL, sq = memchr(raw, '\'', len) != NULL;
    struct buf w;
    buf_init(&w, len * 6 + 64);
    int rc = buf_puts(&w, dq && !sq ? "<a v='" : "<a v=\"");
    for (size_t i = 0; i < len; i++)
        rc |= raw[i] == '"' && !(dq && !sq) ? buf_puts(&w, "&quot;") : buf_append(&w, raw + i, 1);
    rc |= buf_puts(&w, dq && !sq ? "'/>" : "\"/>");
    if (rc) {
        buf_release(&w);
        return -1;
    }
    xmlDocPtr doc = NULL;
    struct xcap_err err = {0};
    enum xcap_status st = xdoc_parse(w.data, w.len, &doc, &err);
    xcap_err_release(&err);
    buf_release(&w);
    if (st != XCAP_OK)
        return -1;
    xmlChar *v = xmlGetNoNsProp(xmlDocGetRootElement(doc), (const xmlChar *)"v");
    rc = v ? xdiff_text_escape(out, (const char *)v, strlen((const char *)v)) : -1;
    xmlFree(v);
    xmlFreeDoc(doc);
    return rc;
}

/* Declaration for the prefix of an attribute QName ("p:name" or "name"): "" when unprefixed or
 * "xml", else " xmlns:p=\"uri\"" from bs. Returns NULL when the prefix is not bound. */
static char *xdiff_attr_decl(const char *qname, const struct xdiff_bindings *bs)
{
    const char *colon = strchr(qname, ':');
    if (!colon || (colon - qname == 3 && memcmp(qname, "xml", 3) == 0))
        return strdup("");
    size_t plen = (size_t)(colon - qname);
    if (plen == 0)
        return NULL;
    const char *uri = xdiff_bindings_find(bs, qname, plen);
    if (!uri || !*uri)
        return NULL;
    struct buf b;
    buf_init(&b, 64 * 1024);
    int rc = buf_printf(&b, " xmlns:%.*s=\"", (int)plen, qname);
    rc |= buf_xml_escape(&b, uri, strlen(uri));
    rc |= buf_puts(&b, "\"");
    char *out = rc ? NULL : buf_detach(&b, NULL);
    buf_release(&b);
    return out;
}

/* ---- change-log detail -------------------------------------------------------------------- */

struct xdiff_detail {
    const char *op, *sel, *pos, *type;
    size_t op_len, sel_len, pos_len, type_len;
    struct xdiff_bindings ns;
    const char *content;
    size_t content_len;
};

static bool xdiff_key(const char *line, size_t len, const char *key, const char **v, size_t *vlen)
{
    size_t kl = strlen(key);
    if (len < kl || memcmp(line, key, kl) != 0)
        return false;
    *v = line + kl;
    *vlen = len - kl;
    return true;
}

static int xdiff_detail_parse(const char *d, size_t len, struct xdiff_detail *out)
{
    memset(out, 0, sizeof *out);
    size_t i = 0;
    for (;;) {
        const char *nl = memchr(d + i, '\n', len - i);
        if (!nl)
            return -1;
        size_t ll = (size_t)(nl - (d + i));
        const char *line = d + i;
        i += ll + 1;
        const char *v;
        size_t vl;
        if (ll == 0)
            break;
        if (xdiff_key(line, ll, "op=", &out->op, &out->op_len) ||
            xdiff_key(line, ll, "sel=", &out->sel, &out->sel_len) ||
            xdiff_key(line, ll, "pos=", &out->pos, &out->pos_len) ||
            xdiff_key(line, ll, "type=", &out->type, &out->type_len))
            continue;
        if (xdiff_key(line, ll, "ns=", &v, &vl)) {
            const char *sp = memchr(v, ' ', vl);
            if (!sp || xdiff_bindings_add(&out->ns, v, (size_t)(sp - v), sp + 1,
                                          vl - (size_t)(sp - v) - 1) < 0)
                return -1;
            continue;
        }
        return -1; /* unknown line: a newer format this renderer does not understand */
    }
    out->content = d + i;
    out->content_len = len - i;
    return out->op && out->sel && out->sel_len > 0 ? 0 : -1;
}

static bool xdiff_is(const char *v, size_t len, const char *word)
{
    return v && strlen(word) == len && memcmp(v, word, len) == 0;
}

/* The attribute QName at the end of a selector ".../@qname", or NULL. */
static const char *xdiff_sel_attr(const char *sel)
{
    const char *at = strrchr(sel, '@');
    return at && at > sel && at[-1] == '/' ? at + 1 : NULL;
}

static int xdiff_build(const struct xdiff_detail *d, struct xdiff_op *op)
{
    if (xdiff_is(d->op, d->op_len, "add"))
        op->kind = XDIFF_ADD;
    else if (xdiff_is(d->op, d->op_len, "replace"))
        op->kind = XDIFF_REPLACE;
    else if (xdiff_is(d->op, d->op_len, "remove"))
        op->kind = XDIFF_REMOVE;
    else
        return -1;
    if (!(op->sel = strndup(d->sel, d->sel_len)))
        return -1;
    if (d->pos_len > 0) {
        if (op->kind != XDIFF_ADD ||
            (!xdiff_is(d->pos, d->pos_len, "before") && !xdiff_is(d->pos, d->pos_len, "after")))
            return -1;
        if (!(op->pos = strndup(d->pos, d->pos_len)))
            return -1;
    }
    const char *qname = NULL;
    if (d->type_len > 0) {
        if (op->kind != XDIFF_ADD || d->type[0] != '@' || d->type_len < 2)
            return -1;
        /* The engine qualifies a new attribute with a prefix bound to its namespace at the
         * element, or declares XDIFF_ENGINE_PREFIX there for it; the detail lists the bindings
         * from before the write, so a new declaration (which may shadow an older one of the same
         * prefix) cannot be told from an existing binding. */
        if (d->type_len > sizeof XDIFF_ENGINE_PREFIX &&
            memcmp(d->type + 1, XDIFF_ENGINE_PREFIX ":", sizeof XDIFF_ENGINE_PREFIX) == 0)
            return -1;
        if (!(op->type = strndup(d->type, d->type_len)))
            return -1;
        qname = op->type + 1;
    } else {
        qname = xdiff_sel_attr(op->sel);
    }
    op->attr = qname != NULL;
    struct buf c;
    buf_init(&c, XDIFF_MAX_CONTENT);
    int rc = 0;
    if (op->attr) {
        if (!(op->decls = xdiff_attr_decl(qname, &d->ns)))
            rc = -1;
        else if (op->kind != XDIFF_REMOVE)
            rc = xdiff_att_text(&c, d->content, d->content_len);
    } else {
        if (!(op->decls = strdup("")))
            rc = -1;
        else if (op->kind != XDIFF_REMOVE)
            rc = xdiff_embed(&c, d->content, d->content_len, &d->ns);
    }
    if (rc == 0 && !(op->content = buf_detach(&c, NULL)))
        rc = -1;
    buf_release(&c);
    return rc;
}

int xdiff_op_from_detail(const char *detail, size_t len, struct xdiff_op *out)
{
    memset(out, 0, sizeof *out);
    if (len == 0)
        return 1;
    if (len == sizeof XDIFF_DETAIL_ETAGS_ONLY - 1 &&
        memcmp(detail, XDIFF_DETAIL_ETAGS_ONLY, len) == 0)
        return -1;
    struct xdiff_detail d;
    int rc = xdiff_detail_parse(detail, len, &d);
    if (rc == 0)
        rc = xdiff_build(&d, out);
    xdiff_bindings_release(&d.ns);
    if (rc < 0)
        xdiff_op_release(out);
    return rc;
}

/* ---- whole documents ---------------------------------------------------------------------- */

int xdiff_op_root(const char *doc, size_t len, struct xdiff_op *out)
{
    memset(out, 0, sizeof *out);
    struct xspan sp;
    if (xspan_scan(doc, len, &sp) < 0 || sp.n_els == 0) {
        xspan_release(&sp);
        return -1;
    }
    size_t start = sp.els[0].start, end = sp.els[0].end;
    xspan_release(&sp);
    struct xdiff_bindings none = {.n = 0};
    struct buf c;
    buf_init(&c, XDIFF_MAX_CONTENT);
    int rc = xdiff_embed(&c, doc + start, end - start, &none);
    out->kind = XDIFF_REPLACE;
    out->sel = strdup("/*");
    out->decls = strdup("");
    out->content = rc == 0 ? buf_detach(&c, NULL) : NULL;
    buf_release(&c);
    if (!out->sel || !out->decls || !out->content) {
        xdiff_op_release(out);
        return -1;
    }
    return 0;
}

static uint64_t xdiff_markup_digest(uint64_t h, const char *d, size_t len)
{
    size_t i = 0;
    while (i < len) {
        if (d[i] != '<') {
            i++;
            continue;
        }
        const char *close = NULL;
        size_t skip = 0;
        if (len - i >= 4 && memcmp(d + i, "<!--", 4) == 0) {
            close = memmem(d + i + 4, len - i - 4, "-->", 3);
            skip = 3;
        } else if (len - i >= 2 && d[i + 1] == '?') {
            close = memmem(d + i + 2, len - i - 2, "?>", 2);
            skip = 2;
        }
        size_t end = close ? (size_t)(close - d) + skip : len;
        bool xml_decl =
            len - i >= 6 && memcmp(d + i, "<?xml", 5) == 0 && strchr(" \t\r\n", d[i + 5]) != NULL;
        if (!xml_decl) {
            h = xdiff_hash(h, d + i, end - i);
            h = xdiff_hash(h, "\0", 1);
        }
        i = end;
    }
    return h;
}

int xdiff_prolog_digest(const char *doc, size_t len, uint64_t *out)
{
    struct xspan sp;
    if (xspan_scan(doc, len, &sp) < 0 || sp.n_els == 0) {
        xspan_release(&sp);
        return -1;
    }
    size_t start = sp.els[0].start, end = sp.els[0].end;
    xspan_release(&sp);
    uint64_t h = xdiff_markup_digest(XDIFF_HASH_INIT, doc, start);
    h = xdiff_hash(h, "|", 1);
    *out = xdiff_markup_digest(h, doc + end, len - end);
    return 0;
}

/* ---- rendering ---------------------------------------------------------------------------- */

int xdiff_op_render(struct buf *b, const struct xdiff_op *op)
{
    static const char *const names[] = {"add", "replace", "remove"};
    const char *name = names[op->kind];
    int rc = buf_printf(b, "    <%s sel=\"", name);
    rc |= buf_xml_escape(b, op->sel, strlen(op->sel));
    rc |= buf_puts(b, "\"");
    if (op->pos)
        rc |= buf_printf(b, " pos=\"%s\"", op->pos);
    if (op->type) {
        rc |= buf_puts(b, " type=\"");
        rc |= buf_xml_escape(b, op->type, strlen(op->type));
        rc |= buf_puts(b, "\"");
    }
    rc |= buf_puts(b, op->decls ? op->decls : "");
    if (op->kind == XDIFF_REMOVE) {
        rc |= buf_puts(b, "/>\n");
    } else {
        /* No white space around the content: RFC 5261 §4.3 adds every child node of <add>. */
        rc |= buf_puts(b, ">");
        rc |= buf_puts(b, op->content ? op->content : "");
        rc |= buf_printf(b, "</%s>\n", name);
    }
    return rc ? -1 : 0;
}

/* ---- aggregation -------------------------------------------------------------------------- */

/* The positional path of the element an element add inserts, when it can be known from the
 * selector alone: after the k-th element child of P it is the (k+1)-th, before it the k-th.
 * Returns NULL for an append (the number of children is not known) or on allocation failure. */
static char *xdiff_added_path(const struct xdiff_op *op)
{
    if (op->kind != XDIFF_ADD || op->attr || !op->pos)
        return NULL;
    const char *last = strrchr(op->sel, '/');
    unsigned long k;
    char tail;
    if (!last || sscanf(last, "/*[%lu%c", &k, &tail) != 2 || tail != ']' || k == 0 ||
        k >= 0x7fffffff)
        return NULL;
    if (strcmp(op->pos, "after") == 0)
        k++;
    char *out = NULL;
    if (asprintf(&out, "%.*s/*[%lu]", (int)(last - op->sel), op->sel, k) < 0)
        return NULL;
    return out;
}

/* The node an operation leaves behind under a selector of its own: what an add inserted, what
 * a replace put in place. NULL when unknown. */
static char *xdiff_result_path(const struct xdiff_op *op)
{
    if (op->kind == XDIFF_REPLACE)
        return strdup(op->sel);
    if (op->kind == XDIFF_ADD && op->type) {
        char *out = NULL;
        if (asprintf(&out, "%s/%s", op->sel, op->type) < 0)
            return NULL;
        return out;
    }
    return xdiff_added_path(op);
}

/* Merges b into a when the pair can be written shorter. Returns 2 (both vanish), 1 (a now
 * stands for both, b released), 0 (no change). */
static int xdiff_merge(struct xdiff_op *a, struct xdiff_op *b)
{
    if (b->kind == XDIFF_ADD || a->attr != b->attr)
        return 0;
    char *made = xdiff_result_path(a);
    if (!made)
        return 0;
    bool same = strcmp(made, b->sel) == 0;
    free(made);
    if (!same)
        return 0;
    if (b->kind == XDIFF_REMOVE) {
        if (a->kind == XDIFF_ADD) {
            xdiff_op_release(a);
            xdiff_op_release(b);
            return 2;
        }
        /* replace, then remove: the remove alone */
        xdiff_op_release(a);
        *a = *b;
        memset(b, 0, sizeof *b);
        return 1;
    }
    /* b replaces what a produced: a with b's content (and b's declarations, which belong to
     * that content). */
    free(a->content);
    a->content = b->content;
    b->content = NULL;
    if (a->attr) {
        free(a->decls);
        a->decls = b->decls;
        b->decls = NULL;
    }
    xdiff_op_release(b);
    return 1;
}

void xdiff_ops_simplify(struct xdiff_op *ops, size_t *n)
{
    size_t top = 0; /* ops[0..top) is the simplified prefix */
    for (size_t i = 0; i < *n; i++) {
        if (top != i) {
            ops[top] = ops[i];
            memset(&ops[i], 0, sizeof ops[i]);
        }
        top++;
        while (top >= 2) {
            int m = xdiff_merge(&ops[top - 2], &ops[top - 1]);
            if (m == 0)
                break;
            top -= (size_t)m;
        }
    }
    *n = top;
}

/* ---- element and attribute reports -------------------------------------------------------- */

static int xdiff_report_open(struct buf *b, const char *name, const char *sel, const char *decls)
{
    int rc = buf_printf(b, "  <%s sel=\"", name);
    rc |= buf_xml_escape(b, sel, strlen(sel));
    rc |= buf_puts(b, "\"");
    rc |= buf_puts(b, decls ? decls : "");
    return rc ? -1 : 0;
}

static int xdiff_node_body(struct buf *b, const char *name, const char *doc, size_t len,
                           const struct nodesel *ns, bool *found)
{
    *found = false;
    xmlDocPtr x = NULL;
    struct xcap_err err = {0};
    enum xcap_status st = xdoc_parse(doc, len, &x, &err);
    xcap_err_release(&err);
    if (st != XCAP_OK)
        return 0; /* a stored document is well-formed; anything else reads as absent */
    bool amb;
    xmlNodePtr el = nodesel_eval(ns, ns->n_steps, x, &amb, NULL);
    int rc = 0;
    if (el && ns->terminal == NODESEL_ATTRIBUTE) {
        xmlAttrPtr a = nodesel_find_attr(el, ns->attr_ns, ns->attr_local);
        xmlChar *v = a ? xmlNodeGetContent((xmlNodePtr)a) : NULL;
        if (v) {
            *found = true;
            rc = buf_puts(b, ">");
            rc |= xdiff_text_escape(b, (const char *)v, strlen((const char *)v));
            rc |= buf_printf(b, "</%s>\n", name);
        }
        xmlFree(v);
    } else if (el && ns->terminal == NODESEL_ELEMENT) {
        struct xspan sp;
        size_t idx = xspan_number_tree(xmlDocGetRootElement(x));
        if (xspan_scan(doc, len, &sp) == 0 && sp.n_els == idx) {
            const struct xspan_el *se = &sp.els[xspan_index(el)];
            struct xdiff_bindings bs = {.n = 0};
            *found = true;
            rc = xdiff_bindings_at(x, el->parent, &bs);
            rc |= buf_puts(b, ">");
            rc |= xdiff_embed(b, doc + se->start, se->end - se->start, &bs);
            rc |= buf_printf(b, "</%s>\n", name);
            xdiff_bindings_release(&bs);
        }
        xspan_release(&sp);
    }
    xmlFreeDoc(x);
    return rc ? -1 : 0;
}

int xdiff_node_report(struct buf *b, const char *sel, const char *decls, const char *doc,
                      size_t len, const struct nodesel *ns, uint64_t *hash)
{
    const char *name = ns->terminal == NODESEL_ATTRIBUTE ? "attribute" : "element";
    size_t mark = b->len;
    if (xdiff_report_open(b, name, sel, decls) < 0)
        return -1;
    size_t open_end = b->len;
    bool found = false;
    if (doc && xdiff_node_body(b, name, doc, len, ns, &found) < 0)
        return -1;
    if (!found) {
        b->len = open_end; /* drop a partial body */
        if (b->data)
            b->data[b->len] = '\0';
        if (buf_puts(b, " exists=\"0\"/>\n") < 0)
            return -1;
    }
    *hash = xdiff_hash(XDIFF_HASH_INIT, b->data + mark, b->len - mark);
    return 0;
}
