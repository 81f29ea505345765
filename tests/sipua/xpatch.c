/* RFC 5261 patch application for the tests (see xpatch.h). */
#include "xpatch.h"

#include <libxml/c14n.h>
#include <libxml/parser.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XPATCH_MAX_STEPS 64
#define XPATCH_MAX_PREDS 8
#define XPATCH_MAX_SET 4096

static int xpatch_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int xpatch_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err && errlen)
        vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- selector parsing ----------------------------------------------------------------------- */

enum xpatch_test { T_ELEMENT, T_ATTRIBUTE, T_NAMESPACE, T_TEXT, T_COMMENT };

struct xpatch_pred {
    unsigned pos; /* [n]; 0 = attribute test */
    char *attr;   /* [@qname='v']: qname */
    char *value;  /* its value */
};

struct xpatch_step {
    enum xpatch_test test;
    char *name; /* QName, NULL for "*"; the prefix for namespace:: */
    struct xpatch_pred preds[XPATCH_MAX_PREDS];
    size_t n_preds;
};

struct xpatch_path {
    bool absolute;
    struct xpatch_step steps[XPATCH_MAX_STEPS];
    size_t n;
};

static void xpatch_path_release(struct xpatch_path *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->steps[i].name);
        for (size_t k = 0; k < p->steps[i].n_preds; k++) {
            free(p->steps[i].preds[k].attr);
            free(p->steps[i].preds[k].value);
        }
    }
    p->n = 0;
}

/* Splits sel at '/' outside brackets and quotes. */
static int xpatch_path_parse(const char *sel, struct xpatch_path *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    const char *p = sel;
    if (*p == '/') {
        out->absolute = true;
        p++;
    }
    while (*p) {
        if (out->n == XPATCH_MAX_STEPS)
            return xpatch_fail(err, errlen, "too many steps in %s", sel);
        struct xpatch_step *st = &out->steps[out->n++];
        const char *s = p;
        while (*p && *p != '/' && *p != '[')
            p++;
        size_t nl = (size_t)(p - s);
        if (nl == 0)
            return xpatch_fail(err, errlen, "empty step in %s", sel);
        if (s[0] == '@') {
            st->test = T_ATTRIBUTE;
            st->name = strndup(s + 1, nl - 1);
        } else if (nl > 11 && strncmp(s, "namespace::", 11) == 0) {
            st->test = T_NAMESPACE;
            st->name = strndup(s + 11, nl - 11);
        } else if (nl == 6 && strncmp(s, "text()", 6) == 0) {
            st->test = T_TEXT;
        } else if (nl == 9 && strncmp(s, "comment()", 9) == 0) {
            st->test = T_COMMENT;
        } else if (nl == 1 && s[0] == '*') {
            st->test = T_ELEMENT;
        } else {
            st->test = T_ELEMENT;
            st->name = strndup(s, nl);
        }
        while (*p == '[') {
            if (st->n_preds == XPATCH_MAX_PREDS)
                return xpatch_fail(err, errlen, "too many predicates in %s", sel);
            struct xpatch_pred *pr = &st->preds[st->n_preds++];
            p++;
            if (*p >= '0' && *p <= '9') {
                char *end;
                unsigned long v = strtoul(p, &end, 10);
                if (*end != ']' || v == 0 || v > 0xffffffffu)
                    return xpatch_fail(err, errlen, "bad position in %s", sel);
                pr->pos = (unsigned)v;
                p = end + 1;
            } else if (*p == '@') {
                const char *a = ++p;
                while (*p && *p != '=' && *p != ']')
                    p++;
                if (*p != '=' || (p[1] != '\'' && p[1] != '"'))
                    return xpatch_fail(err, errlen, "bad predicate in %s", sel);
                pr->attr = strndup(a, (size_t)(p - a));
                char q = p[1];
                const char *v = p + 2, *e = strchr(v, q);
                if (!e || e[1] != ']')
                    return xpatch_fail(err, errlen, "bad predicate value in %s", sel);
                pr->value = strndup(v, (size_t)(e - v));
                p = e + 2;
            } else {
                return xpatch_fail(err, errlen, "unsupported predicate in %s", sel);
            }
        }
        if (*p == '/') {
            p++;
            if (!*p)
                return xpatch_fail(err, errlen, "trailing '/' in %s", sel);
        } else if (*p) {
            return xpatch_fail(err, errlen, "bad step in %s", sel);
        }
        if (st->test != T_ELEMENT && *p)
            return xpatch_fail(err, errlen, "%s: only the last step may select a non-element", sel);
    }
    return 0;
}

/* ---- names ---------------------------------------------------------------------------------- */

/* Resolves a QName in the patch context: (*uri, *local). Element names without a prefix take the
 * default namespace in scope (RFC 5261 §4.2.2); attribute names do not. Returns 0 or -1. */
static int xpatch_qname(xmlDocPtr pdoc, xmlNodePtr ctx, const char *qname, bool element,
                        const char **uri, const char **local)
{
    const char *colon = strchr(qname, ':');
    if (!colon) {
        *local = qname;
        *uri = NULL;
        if (element) {
            xmlNsPtr d = xmlSearchNs(pdoc, ctx, NULL);
            *uri = d && d->href && d->href[0] ? (const char *)d->href : NULL;
        }
        return 0;
    }
    char prefix[256];
    size_t pl = (size_t)(colon - qname);
    if (pl == 0 || pl >= sizeof prefix)
        return -1;
    memcpy(prefix, qname, pl);
    prefix[pl] = '\0';
    xmlNsPtr ns = xmlSearchNs(pdoc, ctx, (const xmlChar *)prefix);
    if (!ns)
        return -1;
    *uri = (const char *)ns->href;
    *local = colon + 1;
    return 0;
}

static bool xpatch_same_ns(const xmlNs *ns, const char *uri)
{
    const char *have = ns && ns->href && ns->href[0] ? (const char *)ns->href : NULL;
    if (!have || !uri)
        return !have && !uri;
    return strcmp(have, uri) == 0;
}

static xmlAttrPtr xpatch_find_attr(xmlNodePtr el, const char *uri, const char *local)
{
    for (xmlAttrPtr a = el->properties; a; a = a->next)
        if (strcmp((const char *)a->name, local) == 0 && xpatch_same_ns(a->ns, uri))
            return a;
    return NULL;
}

/* ---- evaluation ----------------------------------------------------------------------------- */

struct xpatch_set {
    xmlNodePtr v[XPATCH_MAX_SET];
    size_t n;
};

static bool xpatch_el_matches(xmlDocPtr pdoc, xmlNodePtr ctx, const struct xpatch_step *st,
                              xmlNodePtr n)
{
    if (n->type != XML_ELEMENT_NODE)
        return false;
    if (!st->name)
        return true;
    const char *uri, *local;
    if (xpatch_qname(pdoc, ctx, st->name, true, &uri, &local) < 0)
        return false;
    return strcmp((const char *)n->name, local) == 0 && xpatch_same_ns(n->ns, uri);
}

static bool xpatch_kind_matches(const struct xpatch_step *st, xmlNodePtr n)
{
    if (st->test == T_TEXT)
        return n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE;
    return n->type == XML_COMMENT_NODE;
}

/* Filters set by the step's predicates, in order (positions count within the filtered set). */
static void xpatch_filter(xmlDocPtr pdoc, xmlNodePtr ctx, const struct xpatch_step *st,
                          struct xpatch_set *set)
{
    for (size_t k = 0; k < st->n_preds; k++) {
        const struct xpatch_pred *pr = &st->preds[k];
        size_t kept = 0;
        for (size_t i = 0; i < set->n; i++) {
            bool ok;
            if (pr->pos) {
                ok = i + 1 == pr->pos;
            } else {
                const char *uri, *local;
                xmlAttrPtr a = NULL;
                if (set->v[i]->type == XML_ELEMENT_NODE &&
                    xpatch_qname(pdoc, ctx, pr->attr, false, &uri, &local) == 0)
                    a = xpatch_find_attr(set->v[i], uri, local);
                xmlChar *v = a ? xmlNodeGetContent((xmlNodePtr)a) : NULL;
                ok = v && strcmp((const char *)v, pr->value) == 0;
                xmlFree(v);
            }
            if (ok)
                set->v[kept++] = set->v[i];
        }
        set->n = kept;
    }
}

/* What a selector selects: a node (element, text, comment, or the document node), or an
 * attribute, or a namespace declaration of an element. */
struct xpatch_target {
    xmlNodePtr node;
    xmlAttrPtr attr;
    xmlNsPtr ns;
    xmlNodePtr owner;                  /* element of attr or ns */
    const char *attr_uri, *attr_local; /* the attribute named by the last step, even if absent */
};

static int xpatch_select(xmlDocPtr doc, xmlDocPtr pdoc, xmlNodePtr ctx, const char *sel,
                         struct xpatch_target *out, bool allow_absent_attr, char *err,
                         size_t errlen)
{
    memset(out, 0, sizeof *out);
    struct xpatch_path path;
    if (xpatch_path_parse(sel, &path, err, errlen) < 0) {
        xpatch_path_release(&path);
        return -1;
    }
    struct xpatch_set *set = calloc(1, sizeof *set), *next = calloc(1, sizeof *next);
    int rc = -1;
    if (!set || !next) {
        xpatch_fail(err, errlen, "out of memory");
        goto done;
    }
    set->v[set->n++] = (xmlNodePtr)doc;
    size_t i = 0;
    for (; i < path.n && path.steps[i].test != T_ATTRIBUTE && path.steps[i].test != T_NAMESPACE;
         i++) {
        const struct xpatch_step *st = &path.steps[i];
        next->n = 0;
        for (size_t k = 0; k < set->n; k++) {
            for (xmlNodePtr c = set->v[k]->children; c; c = c->next) {
                bool m = st->test == T_ELEMENT ? xpatch_el_matches(pdoc, ctx, st, c)
                                               : xpatch_kind_matches(st, c);
                if (m && next->n < XPATCH_MAX_SET)
                    next->v[next->n++] = c;
            }
        }
        xpatch_filter(pdoc, ctx, st, next);
        struct xpatch_set *t = set;
        set = next;
        next = t;
        if (set->n == 0) {
            xpatch_fail(err, errlen, "%s: step %zu selects nothing", sel, i + 1);
            goto done;
        }
    }
    if (set->n != 1) {
        xpatch_fail(err, errlen, "%s selects %zu nodes", sel, set->n);
        goto done;
    }
    xmlNodePtr n = set->v[0];
    if (i == path.n) {
        out->node = n;
        rc = 0;
        goto done;
    }
    const struct xpatch_step *last = &path.steps[i];
    if (n->type != XML_ELEMENT_NODE) {
        xpatch_fail(err, errlen, "%s: attributes and namespaces belong to elements", sel);
        goto done;
    }
    out->owner = n;
    if (last->test == T_ATTRIBUTE) {
        if (xpatch_qname(pdoc, ctx, last->name, false, &out->attr_uri, &out->attr_local) < 0) {
            xpatch_fail(err, errlen, "%s: unbound prefix", sel);
            goto done;
        }
        out->attr = xpatch_find_attr(n, out->attr_uri, out->attr_local);
        if (!out->attr && !allow_absent_attr) {
            xpatch_fail(err, errlen, "%s: no such attribute", sel);
            goto done;
        }
        /* attr_local points into path, which is released below: keep a stable copy via the
         * attribute itself or the caller's type string. */
        out->attr_local = out->attr ? (const char *)out->attr->name : NULL;
        out->attr_uri = out->attr && out->attr->ns ? (const char *)out->attr->ns->href : NULL;
        rc = 0;
        goto done;
    }
    for (xmlNsPtr d = n->nsDef; d; d = d->next)
        if (d->prefix && strcmp((const char *)d->prefix, last->name) == 0)
            out->ns = d;
    if (!out->ns) {
        xpatch_fail(err, errlen, "%s: no such namespace declaration", sel);
        goto done;
    }
    rc = 0;
done:
    free(set);
    free(next);
    xpatch_path_release(&path);
    return rc;
}

/* ---- operations ----------------------------------------------------------------------------- */

static xmlChar *xpatch_text_of(xmlNodePtr op)
{
    xmlChar *v = xmlNodeGetContent(op);
    return v ? v : xmlStrdup((const xmlChar *)"");
}

/* A namespace for (uri, preferred prefix) in scope at el, declared on el when missing. */
static xmlNsPtr xpatch_ns_for(xmlDocPtr doc, xmlNodePtr el, const char *uri, const char *prefix)
{
    xmlNsPtr ns = prefix ? xmlSearchNs(doc, el, (const xmlChar *)prefix) : NULL;
    if (ns && ns->href && strcmp((const char *)ns->href, uri) == 0)
        return ns;
    ns = xmlSearchNsByHref(doc, el, (const xmlChar *)uri);
    if (ns && ns->prefix)
        return ns;
    return xmlNewNs(el, (const xmlChar *)uri, (const xmlChar *)(prefix ? prefix : "ns0"));
}

static int xpatch_set_attr(xmlDocPtr doc, xmlNodePtr el, const char *uri, const char *local,
                           const char *prefix, const xmlChar *value, char *err, size_t errlen)
{
    xmlAttrPtr a;
    if (uri) {
        xmlNsPtr ns = xpatch_ns_for(doc, el, uri, prefix);
        a = ns ? xmlSetNsProp(el, ns, (const xmlChar *)local, value) : NULL;
    } else {
        a = xmlSetNsProp(el, NULL, (const xmlChar *)local, value);
    }
    return a ? 0 : xpatch_fail(err, errlen, "cannot set attribute %s", local);
}

/* Copies a content node from the patch into doc. Namespaces the copy uses but takes from outside
 * itself are re-declared on it by libxml2's copy (xmlStaticCopyNode), so its expanded names are
 * kept wherever it lands. */
static xmlNodePtr xpatch_copy(xmlDocPtr doc, xmlNodePtr n)
{
    return xmlDocCopyNode(n, doc, 1);
}

static bool xpatch_is_ws(xmlNodePtr n)
{
    if (!n || n->type != XML_TEXT_NODE)
        return false;
    for (const xmlChar *p = n->content; p && *p; p++)
        if (!strchr(" \t\r\n", *p))
            return false;
    return true;
}

static int xpatch_add(xmlDocPtr doc, xmlNodePtr op, const char *sel, char *err, size_t errlen)
{
    xmlChar *type = xmlGetNoNsProp(op, (const xmlChar *)"type");
    xmlChar *pos = xmlGetNoNsProp(op, (const xmlChar *)"pos");
    struct xpatch_target t;
    int rc = xpatch_select(doc, op->doc, op, sel, &t, false, err, errlen);
    if (rc == 0 && (t.attr || t.ns))
        rc = xpatch_fail(err, errlen, "add: %s must select an element", sel);
    if (rc == 0 && type) {
        const char *ty = (const char *)type;
        xmlChar *text = xpatch_text_of(op);
        if (t.node->type != XML_ELEMENT_NODE) {
            rc = xpatch_fail(err, errlen, "add type=%s needs an element", ty);
        } else if (ty[0] == '@') {
            const char *uri, *local;
            const char *colon = strchr(ty + 1, ':');
            char prefix[256] = "";
            if (colon && (size_t)(colon - ty - 1) < sizeof prefix)
                snprintf(prefix, sizeof prefix, "%.*s", (int)(colon - ty - 1), ty + 1);
            if (xpatch_qname(op->doc, op, ty + 1, false, &uri, &local) < 0)
                rc = xpatch_fail(err, errlen, "add type=%s: unbound prefix", ty);
            else if (xpatch_find_attr(t.node, uri, local))
                rc = xpatch_fail(err, errlen, "add type=%s: the attribute exists", ty);
            else
                rc = xpatch_set_attr(doc, t.node, uri, local, prefix[0] ? prefix : NULL, text, err,
                                     errlen);
        } else if (strncmp(ty, "namespace::", 11) == 0) {
            if (!xmlNewNs(t.node, text, (const xmlChar *)ty + 11))
                rc = xpatch_fail(err, errlen, "add %s: prefix already declared", ty);
        } else {
            rc = xpatch_fail(err, errlen, "add: bad type %s", ty);
        }
        xmlFree(text);
    } else if (rc == 0) {
        const char *p = pos ? (const char *)pos : "";
        xmlNodePtr target = t.node;
        if ((strcmp(p, "before") == 0 || strcmp(p, "after") == 0) &&
            (target->type == XML_DOCUMENT_NODE || !target->parent))
            rc = xpatch_fail(err, errlen, "add pos=%s: the target has no parent", p);
        xmlNodePtr anchor = target; /* for "after": the node to insert after */
        for (xmlNodePtr c = op->children; c && rc == 0; c = c->next) {
            xmlNodePtr copy = xpatch_copy(doc, c);
            if (!copy) {
                rc = xpatch_fail(err, errlen, "out of memory");
                break;
            }
            xmlNodePtr put;
            if (strcmp(p, "before") == 0)
                put = xmlAddPrevSibling(target, copy);
            else if (strcmp(p, "after") == 0)
                put = xmlAddNextSibling(anchor, copy);
            else if (strcmp(p, "prepend") == 0)
                put = target->children ? xmlAddPrevSibling(target->children, copy)
                                       : xmlAddChild(target, copy);
            else if (p[0] == '\0')
                put = xmlAddChild(target, copy);
            else
                put = NULL;
            if (!put) {
                xmlFreeNode(copy);
                rc = xpatch_fail(err, errlen, "add: cannot insert (pos=%s)", p);
                break;
            }
            /* Adjacent text merges into a neighbour; keep going after what was inserted. */
            anchor = put;
            if (put->type == XML_ELEMENT_NODE)
                xmlReconciliateNs(doc, put);
        }
    }
    xmlFree(type);
    xmlFree(pos);
    return rc;
}

static int xpatch_replace(xmlDocPtr doc, xmlNodePtr op, const char *sel, char *err, size_t errlen)
{
    struct xpatch_target t;
    if (xpatch_select(doc, op->doc, op, sel, &t, false, err, errlen) < 0)
        return -1;
    if (t.attr) {
        xmlChar *text = xpatch_text_of(op);
        xmlAttrPtr a = xmlSetNsProp(t.owner, t.attr->ns, t.attr->name, text);
        xmlFree(text);
        return a ? 0 : xpatch_fail(err, errlen, "replace: cannot set %s", sel);
    }
    if (t.ns) {
        xmlChar *text = xpatch_text_of(op);
        xmlFree((xmlChar *)t.ns->href);
        t.ns->href = text;
        return 0;
    }
    xmlNodePtr old = t.node, repl = NULL;
    for (xmlNodePtr c = op->children; c; c = c->next) {
        if (repl)
            return xpatch_fail(err, errlen, "replace: more than one node in the content");
        repl = c;
    }
    if (old->type == XML_TEXT_NODE || old->type == XML_COMMENT_NODE) {
        xmlChar *text = xpatch_text_of(op);
        xmlNodeSetContent(old, text);
        xmlFree(text);
        return 0;
    }
    if (!repl || repl->type != XML_ELEMENT_NODE || old->type != XML_ELEMENT_NODE)
        return xpatch_fail(err, errlen, "replace: %s needs exactly one element", sel);
    xmlNodePtr copy = xpatch_copy(doc, repl);
    if (!copy)
        return xpatch_fail(err, errlen, "out of memory");
    if (old == xmlDocGetRootElement(doc)) {
        xmlDocSetRootElement(doc, copy);
    } else {
        xmlReplaceNode(old, copy);
    }
    xmlFreeNode(old);
    xmlReconciliateNs(doc, copy);
    return 0;
}

static int xpatch_remove(xmlDocPtr doc, xmlNodePtr op, const char *sel, char *err, size_t errlen)
{
    struct xpatch_target t;
    if (xpatch_select(doc, op->doc, op, sel, &t, false, err, errlen) < 0)
        return -1;
    if (t.attr) {
        xmlRemoveProp(t.attr);
        return 0;
    }
    if (t.ns)
        return xpatch_fail(err, errlen, "remove: namespace declarations are not supported");
    xmlNodePtr n = t.node;
    if (n->type == XML_DOCUMENT_NODE || n == xmlDocGetRootElement(doc))
        return xpatch_fail(err, errlen, "remove: %s is the document element", sel);
    xmlChar *ws = xmlGetNoNsProp(op, (const xmlChar *)"ws");
    const char *w = ws ? (const char *)ws : "";
    xmlNodePtr before = n->prev, after = n->next;
    int rc = 0;
    if ((strcmp(w, "before") == 0 || strcmp(w, "both") == 0) && !xpatch_is_ws(before))
        rc = xpatch_fail(err, errlen, "remove ws=%s: no white space before", w);
    if ((strcmp(w, "after") == 0 || strcmp(w, "both") == 0) && !xpatch_is_ws(after))
        rc = xpatch_fail(err, errlen, "remove ws=%s: no white space after", w);
    if (rc == 0) {
        if (strcmp(w, "before") == 0 || strcmp(w, "both") == 0) {
            xmlUnlinkNode(before);
            xmlFreeNode(before);
        }
        if (strcmp(w, "after") == 0 || strcmp(w, "both") == 0) {
            xmlUnlinkNode(after);
            xmlFreeNode(after);
        }
        xmlUnlinkNode(n);
        xmlFreeNode(n);
    }
    xmlFree(ws);
    return rc;
}

int xpatch_apply_op(xmlDocPtr doc, xmlNodePtr op, char *err, size_t errlen)
{
    xmlChar *sel = xmlGetNoNsProp(op, (const xmlChar *)"sel");
    if (!sel)
        return xpatch_fail(err, errlen, "<%s> without sel", (const char *)op->name);
    int rc;
    const char *name = (const char *)op->name;
    if (strcmp(name, "add") == 0)
        rc = xpatch_add(doc, op, (const char *)sel, err, errlen);
    else if (strcmp(name, "replace") == 0)
        rc = xpatch_replace(doc, op, (const char *)sel, err, errlen);
    else if (strcmp(name, "remove") == 0)
        rc = xpatch_remove(doc, op, (const char *)sel, err, errlen);
    else
        rc = xpatch_fail(err, errlen, "unknown operation <%s>", name);
    xmlFree(sel);
    return rc;
}

int xpatch_apply(xmlDocPtr doc, xmlNodePtr parent, char *err, size_t errlen)
{
    for (xmlNodePtr op = parent->children; op; op = op->next) {
        if (op->type != XML_ELEMENT_NODE)
            continue;
        const char *name = (const char *)op->name;
        if (strcmp(name, "add") != 0 && strcmp(name, "replace") != 0 && strcmp(name, "remove") != 0)
            continue;
        if (xpatch_apply_op(doc, op, err, errlen) < 0)
            return -1;
    }
    return 0;
}

char *xpatch_c14n(xmlDocPtr doc)
{
    xmlChar *out = NULL;
    if (xmlC14NDocDumpMemory(doc, NULL, XML_C14N_1_0, NULL, 1, &out) < 0) {
        xmlFree(out);
        return NULL;
    }
    return (char *)out;
}

char *xpatch_c14n_bytes(const char *data, size_t len)
{
    if (len > 0x7fffffff)
        return NULL;
    xmlDocPtr doc = xmlReadMemory(data, (int)len, NULL, "UTF-8",
                                  XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (!doc)
        return NULL;
    char *out = xpatch_c14n(doc);
    xmlFreeDoc(doc);
    return out;
}
