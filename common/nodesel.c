#include "nodesel.h"

#include "xdoc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct nodesel_binding {
    char *prefix;
    char *uri;
};

struct nodesel_bindings {
    struct nodesel_binding v[NODESEL_MAX_BINDINGS];
    size_t n;
};

static void nodesel_bindings_release(struct nodesel_bindings *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free(b->v[i].prefix);
        free(b->v[i].uri);
    }
    b->n = 0;
}

/* Query: a sequence of XPointer xmlns(prefix=uri) parts (RFC 4825 §6.4, XPointer xmlns() scheme);
 * '^' escapes '(', ')' and '^' inside a part. White space between parts is allowed. */
static enum xcap_status nodesel_parse_query(const char *q, struct nodesel_bindings *b,
                                            struct xcap_err *err)
{
    const char *p = q;
    while (*p) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p)
            break;
        if (strncmp(p, "xmlns(", 6) != 0)
            return xcap_fail(err, XCAP_BAD_REQUEST, "the query may only hold xmlns() parts");
        p += 6;
        const char *eq = strchr(p, '=');
        if (!eq || eq == p)
            return xcap_fail(err, XCAP_BAD_REQUEST, "xmlns() needs prefix=namespace");
        size_t plen = (size_t)(eq - p);
        while (plen && (p[plen - 1] == ' '))
            plen--;
        char *uri = malloc(strlen(eq) + 1);
        if (!uri)
            return xcap_fail(err, XCAP_INTERNAL, "out of memory");
        size_t u = 0;
        const char *s = eq + 1;
        while (*s == ' ')
            s++;
        for (; *s && *s != ')'; s++) {
            if (*s == '^' && (s[1] == '(' || s[1] == ')' || s[1] == '^'))
                s++;
            uri[u++] = *s;
        }
        uri[u] = '\0';
        if (*s != ')' || u == 0) {
            free(uri);
            return xcap_fail(err, XCAP_BAD_REQUEST, "unterminated or empty xmlns() part");
        }
        if (b->n == NODESEL_MAX_BINDINGS) {
            free(uri);
            return xcap_fail(err, XCAP_BAD_REQUEST, "too many namespace bindings");
        }
        char *prefix = strndup(p, plen);
        if (!prefix) {
            free(uri);
            return xcap_fail(err, XCAP_INTERNAL, "out of memory");
        }
        b->v[b->n].prefix = prefix;
        b->v[b->n++].uri = uri;
        p = s + 1;
    }
    return XCAP_OK;
}

static const char *nodesel_lookup(const struct nodesel_bindings *b, const char *prefix, size_t len)
{
    for (size_t i = b->n; i-- > 0;)
        if (strlen(b->v[i].prefix) == len && memcmp(b->v[i].prefix, prefix, len) == 0)
            return b->v[i].uri;
    return NULL;
}

static int nodesel_name_start(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}

static int nodesel_name_char(unsigned char c)
{
    return nodesel_name_start(c) || (c >= '0' && c <= '9') || c == '.' || c == '-';
}

/* Reads a QName at *p; returns 0 and sets prefix/local spans, or -1. */
static int nodesel_qname(const char **p, const char **prefix, size_t *plen, const char **local,
                         size_t *llen)
{
    const char *s = *p;
    if (!nodesel_name_start((unsigned char)*s))
        return -1;
    const char *a = s;
    while (nodesel_name_char((unsigned char)*s))
        s++;
    if (*s == ':') {
        *prefix = a;
        *plen = (size_t)(s - a);
        s++;
        if (!nodesel_name_start((unsigned char)*s))
            return -1;
        a = s;
        while (nodesel_name_char((unsigned char)*s))
            s++;
    } else {
        *prefix = NULL;
        *plen = 0;
    }
    *local = a;
    *llen = (size_t)(s - a);
    *p = s;
    return 0;
}

static int nodesel_utf8_put(char *out, unsigned long cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Reads an AttValue at *p (quoted) and expands the predefined entity and character
 * references. Returns the value or NULL on a syntax error. */
static char *nodesel_attvalue(const char **p)
{
    char q = **p;
    if (q != '"' && q != '\'')
        return NULL;
    const char *s = *p + 1;
    const char *close = strchr(s, q);
    if (!close)
        return NULL;
    char *out = malloc((size_t)(close - s) + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    while (s < close) {
        if (*s != '&') {
            out[o++] = *s++;
            continue;
        }
        const char *semi = memchr(s, ';', (size_t)(close - s));
        if (!semi)
            goto bad;
        size_t n = (size_t)(semi - s - 1);
        const char *name = s + 1;
        if (n == 2 && memcmp(name, "lt", 2) == 0)
            out[o++] = '<';
        else if (n == 2 && memcmp(name, "gt", 2) == 0)
            out[o++] = '>';
        else if (n == 3 && memcmp(name, "amp", 3) == 0)
            out[o++] = '&';
        else if (n == 4 && memcmp(name, "quot", 4) == 0)
            out[o++] = '"';
        else if (n == 4 && memcmp(name, "apos", 4) == 0)
            out[o++] = '\'';
        else if (n >= 2 && name[0] == '#') {
            char *end;
            unsigned long cp =
                name[1] == 'x' ? strtoul(name + 2, &end, 16) : strtoul(name + 1, &end, 10);
            if (end != semi || cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) ||
                (name[1] == 'x' && n == 2))
                goto bad;
            /* a reference is at least 4 bytes ("&#N;"), its UTF-8 at most 4: fits */
            o += (size_t)nodesel_utf8_put(out + o, cp);
        } else
            goto bad;
        s = semi + 1;
    }
    out[o] = '\0';
    *p = close + 1;
    return out;
bad:
    free(out);
    return NULL;
}

void nodesel_release(struct nodesel *ns)
{
    for (size_t i = 0; i < ns->n_steps; i++) {
        struct nodesel_step *s = &ns->steps[i];
        free(s->ns);
        free(s->local);
        free(s->attr_ns);
        free(s->attr_local);
        free(s->attr_value);
        free(s->text);
    }
    free(ns->steps);
    free(ns->attr_ns);
    free(ns->attr_local);
    free(ns->attr_prefix);
    free(ns->attr_text);
    memset(ns, 0, sizeof *ns);
}

/* Resolves a prefix span to a namespace: no prefix -> dflt (may be NULL). */
static enum xcap_status nodesel_resolve(const struct nodesel_bindings *b, const char *prefix,
                                        size_t plen, const char *dflt, char **out,
                                        struct xcap_err *err)
{
    const char *uri = dflt;
    if (prefix) {
        uri = nodesel_lookup(b, prefix, plen);
        /* "xml" is bound by definition (Namespaces in XML §3), e.g. display-name[@xml:lang="en"],
         * and may not be bound to anything else. */
        bool is_xml = plen == 3 && memcmp(prefix, "xml", 3) == 0;
        if (is_xml && uri && strcmp(uri, (const char *)XML_XML_NAMESPACE) != 0)
            return xcap_fail(err, XCAP_BAD_REQUEST, "the prefix xml cannot be rebound");
        if (is_xml)
            uri = (const char *)XML_XML_NAMESPACE;
        if (!uri)
            return xcap_fail(err, XCAP_BAD_REQUEST,
                             "prefix \"%.*s\" has no xmlns() binding in the query", (int)plen,
                             prefix);
    }
    *out = NULL;
    if (uri && !(*out = strdup(uri)))
        return xcap_fail(err, XCAP_INTERNAL, "out of memory");
    return XCAP_OK;
}

/* Parses one element step from text[0..len). */
static enum xcap_status nodesel_parse_step(const char *text, size_t len,
                                           const struct nodesel_bindings *b, const char *default_ns,
                                           struct nodesel_step *st, struct xcap_err *err)
{
    char *t = strndup(text, len);
    if (!t)
        return xcap_fail(err, XCAP_INTERNAL, "out of memory");
    st->text = t;
    const char *p = t;
    enum xcap_status rc;
    if (*p == '*') {
        p++;
    } else {
        const char *prefix, *local;
        size_t plen, llen;
        if (nodesel_qname(&p, &prefix, &plen, &local, &llen) < 0)
            return xcap_fail(err, XCAP_BAD_REQUEST, "\"%s\" is not a valid step", t);
        if (!(st->local = strndup(local, llen)))
            return xcap_fail(err, XCAP_INTERNAL, "out of memory");
        if ((rc = nodesel_resolve(b, prefix, plen, default_ns, &st->ns, err)) != XCAP_OK)
            return rc;
    }
    int preds = 0;
    while (*p == '[') {
        p++;
        if (*p >= '0' && *p <= '9') {
            if (preds != 0)
                return xcap_fail(err, XCAP_BAD_REQUEST, "position must be the first predicate");
            char *end;
            unsigned long n = strtoul(p, &end, 10);
            if (*end != ']' || n > 1000000)
                return xcap_fail(err, XCAP_BAD_REQUEST, "bad position predicate in \"%s\"", t);
            st->pos = n == 0 ? (unsigned)-1 : (unsigned)n; /* [0] is valid and selects nothing */
            p = end + 1;
        } else if (*p == '@') {
            if (st->has_attr)
                return xcap_fail(err, XCAP_BAD_REQUEST, "one attribute test per step");
            p++;
            const char *prefix, *local;
            size_t plen, llen;
            if (nodesel_qname(&p, &prefix, &plen, &local, &llen) < 0 || *p != '=')
                return xcap_fail(err, XCAP_BAD_REQUEST, "bad attribute test in \"%s\"", t);
            p++;
            if (!(st->attr_local = strndup(local, llen)))
                return xcap_fail(err, XCAP_INTERNAL, "out of memory");
            if ((rc = nodesel_resolve(b, prefix, plen, NULL, &st->attr_ns, err)) != XCAP_OK)
                return rc;
            if (!(st->attr_value = nodesel_attvalue(&p)) || *p != ']')
                return xcap_fail(err, XCAP_BAD_REQUEST, "bad attribute value in \"%s\"", t);
            st->has_attr = true;
            p++;
        } else {
            return xcap_fail(err, XCAP_BAD_REQUEST, "unsupported predicate in \"%s\"", t);
        }
        if (++preds > 2)
            return xcap_fail(err, XCAP_BAD_REQUEST, "too many predicates in \"%s\"", t);
    }
    if (*p)
        return xcap_fail(err, XCAP_BAD_REQUEST, "\"%s\" is not a valid step", t);
    return XCAP_OK;
}

/* Length of the next step: up to a '/' that is outside quotes and brackets. */
static size_t nodesel_step_len(const char *s)
{
    size_t i = 0;
    char quote = 0;
    int bracket = 0;
    for (; s[i]; i++) {
        char c = s[i];
        if (quote) {
            if (c == quote)
                quote = 0;
        } else if (bracket && (c == '"' || c == '\'')) {
            quote = c;
        } else if (c == '[') {
            bracket++;
        } else if (c == ']') {
            bracket--;
        } else if (c == '/' && !bracket) {
            break;
        }
    }
    return i;
}

enum xcap_status nodesel_parse(const char *sel, const char *query, const char *default_ns,
                               struct nodesel *out, struct xcap_err *err)
{
    memset(out, 0, sizeof *out);
    struct nodesel_bindings b = {.n = 0};
    enum xcap_status rc = XCAP_OK;
    if (!xdoc_utf8_valid(sel, strlen(sel)) || (query && !xdoc_utf8_valid(query, strlen(query))))
        return xcap_fail(err, XCAP_BAD_REQUEST, "the node selector is not valid UTF-8");
    if (query && (rc = nodesel_parse_query(query, &b, err)) != XCAP_OK)
        goto done;
    if (!*sel) {
        rc = xcap_fail(err, XCAP_BAD_REQUEST, "empty node selector");
        goto done;
    }
    const char *p = sel;
    for (;;) {
        size_t len = nodesel_step_len(p);
        bool last = p[len] == '\0';
        if (len == 0) {
            rc = xcap_fail(err, XCAP_BAD_REQUEST, "empty step in the node selector");
            goto done;
        }
        if (last && out->n_steps > 0 && len == 12 && memcmp(p, "namespace::*", 12) == 0) {
            out->terminal = NODESEL_NAMESPACE;
            break;
        }
        if (last && out->n_steps > 0 && p[0] == '@') {
            const char *q = p + 1;
            const char *prefix, *local;
            size_t plen, llen;
            if (nodesel_qname(&q, &prefix, &plen, &local, &llen) < 0 || *q) {
                rc =
                    xcap_fail(err, XCAP_BAD_REQUEST, "\"%s\" is not a valid attribute selector", p);
                goto done;
            }
            out->terminal = NODESEL_ATTRIBUTE;
            if (!(out->attr_local = strndup(local, llen)) || !(out->attr_text = strdup(p)) ||
                (prefix && !(out->attr_prefix = strndup(prefix, plen)))) {
                rc = xcap_fail(err, XCAP_INTERNAL, "out of memory");
                goto done;
            }
            if ((rc = nodesel_resolve(&b, prefix, plen, NULL, &out->attr_ns, err)) != XCAP_OK)
                goto done;
            break;
        }
        if (out->n_steps == NODESEL_MAX_STEPS) {
            rc = xcap_fail(err, XCAP_BAD_REQUEST, "more than %d steps", NODESEL_MAX_STEPS);
            goto done;
        }
        struct nodesel_step *v = realloc(out->steps, (out->n_steps + 1) * sizeof *v);
        if (!v) {
            rc = xcap_fail(err, XCAP_INTERNAL, "out of memory");
            goto done;
        }
        out->steps = v;
        memset(&v[out->n_steps], 0, sizeof *v);
        out->n_steps++;
        rc = nodesel_parse_step(p, len, &b, default_ns, &v[out->n_steps - 1], err);
        if (rc != XCAP_OK)
            goto done;
        if (last)
            break;
        p += len + 1;
    }
done:
    nodesel_bindings_release(&b);
    if (rc != XCAP_OK)
        nodesel_release(out);
    return rc;
}

bool nodesel_name_matches(const struct nodesel_step *step, xmlNodePtr el)
{
    if (el->type != XML_ELEMENT_NODE)
        return false;
    if (!step->local)
        return true;
    if (strcmp((const char *)el->name, step->local) != 0)
        return false;
    const char *ns = el->ns ? (const char *)el->ns->href : NULL;
    if (!ns || !step->ns)
        return ns == NULL && step->ns == NULL;
    return strcmp(ns, step->ns) == 0;
}

xmlAttrPtr nodesel_find_attr(xmlNodePtr el, const char *ns, const char *local)
{
    for (xmlAttrPtr a = el->properties; a; a = a->next) {
        if (strcmp((const char *)a->name, local) != 0)
            continue;
        const char *ans = a->ns ? (const char *)a->ns->href : NULL;
        if ((!ans && !ns) || (ans && ns && strcmp(ans, ns) == 0))
            return a;
    }
    return NULL;
}

bool nodesel_attr_matches(const struct nodesel_step *step, xmlNodePtr el)
{
    if (!step->has_attr)
        return true;
    xmlAttrPtr a = nodesel_find_attr(el, step->attr_ns, step->attr_local);
    if (!a)
        return false;
    xmlChar *v = xmlNodeGetContent((xmlNodePtr)a);
    bool eq = v && strcmp((const char *)v, step->attr_value) == 0;
    xmlFree(v);
    return eq;
}

/* Applies one step to the children of parent (or to the root when parent is NULL). */
static xmlNodePtr nodesel_step_eval(const struct nodesel_step *st, xmlDocPtr doc, xmlNodePtr parent,
                                    bool *ambiguous)
{
    xmlNodePtr first = parent ? parent->children : xmlDocGetRootElement(doc);
    xmlNodePtr found = NULL;
    unsigned count = 0;
    for (xmlNodePtr n = first; n; n = parent ? n->next : NULL) {
        if (!nodesel_name_matches(st, n))
            continue;
        count++;
        if (st->pos) {
            if (count == st->pos)
                return nodesel_attr_matches(st, n) ? n : NULL;
            continue;
        }
        if (!nodesel_attr_matches(st, n))
            continue;
        if (found) {
            *ambiguous = true;
            return NULL;
        }
        found = n;
    }
    return found;
}

xmlNodePtr nodesel_eval(const struct nodesel *ns, size_t n_steps, xmlDocPtr doc, bool *ambiguous,
                        size_t *depth_ok)
{
    bool amb = false;
    xmlNodePtr cur = NULL;
    size_t i = 0;
    for (; i < n_steps; i++) {
        xmlNodePtr next = nodesel_step_eval(&ns->steps[i], doc, cur, &amb);
        if (!next)
            break;
        cur = next;
    }
    if (ambiguous)
        *ambiguous = amb;
    if (depth_ok)
        *depth_ok = i;
    return i == n_steps ? cur : NULL;
}
