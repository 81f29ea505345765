#include "xdoc.h"

#include <libxml/parser.h>
#include <libxml/xmlerror.h>
#include <libxml/xmlsave.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"

void xdoc_global_init(void)
{
    xmlInitParser();
}

void xdoc_global_cleanup(void)
{
    xmlCleanupParser();
}

bool xdoc_utf8_valid(const char *data, size_t len)
{
    const unsigned char *s = (const unsigned char *)data;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c < 0x80) {
            if (c == 0)
                return false;
            i++;
            continue;
        }
        size_t n;
        unsigned cp;
        if (c >= 0xC2 && c <= 0xDF)
            n = 1, cp = c & 0x1F;
        else if (c >= 0xE0 && c <= 0xEF)
            n = 2, cp = c & 0x0F;
        else if (c >= 0xF0 && c <= 0xF4)
            n = 3, cp = c & 0x07;
        else
            return false;
        if (len - i <= n)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n + 1;
    }
    return true;
}

/* A DOCTYPE may only stand in the prolog; look for it there, before libxml2 reads an internal
 * subset (entity declarations are how expansion bombs start). */
static bool xdoc_has_doctype(const char *s, size_t len)
{
    size_t i = 0;
    if (len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
        i = 3;
    while (i < len) {
        char c = s[i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            i++;
        } else if (len - i >= 4 && memcmp(s + i, "<!--", 4) == 0) {
            const char *e = memmem(s + i + 4, len - i - 4, "-->", 3);
            if (!e)
                return false;
            i = (size_t)(e - s) + 3;
        } else if (len - i >= 2 && memcmp(s + i, "<?", 2) == 0) {
            const char *e = memmem(s + i + 2, len - i - 2, "?>", 2);
            if (!e)
                return false;
            i = (size_t)(e - s) + 2;
        } else {
            return len - i >= 9 && memcmp(s + i, "<!DOCTYPE", 9) == 0;
        }
    }
    return false;
}

static xmlNodePtr xdoc_next_element(xmlNodePtr n)
{
    while (n && n->type != XML_ELEMENT_NODE)
        n = n->next;
    return n;
}

/* libxml2's own depth limit depends on its version and counts differently (2.9 lets 257 levels
 * through), so XDOC_MAX_DEPTH is checked here on the tree; iteratively, never by recursion. */
static bool xdoc_too_deep(xmlNodePtr root)
{
    xmlNodePtr n = root;
    int depth = 1;
    for (;;) {
        if (depth > XDOC_MAX_DEPTH)
            return true;
        xmlNodePtr child = xdoc_next_element(n->children);
        if (child) {
            n = child;
            depth++;
            continue;
        }
        xmlNodePtr sib = NULL;
        while (n != root && !(sib = xdoc_next_element(n->next))) {
            n = n->parent;
            depth--;
        }
        if (!sib)
            return false;
        n = sib;
    }
}

/* The encoding named by an XML declaration at the start of s, or NULL when there is none.
 * Written into buf (NUL-terminated, cut at buflen - 1). */
static const char *xdoc_declared_encoding(const char *s, size_t len, char *buf, size_t buflen)
{
    if (!s || len < 6)
        return NULL;
    size_t i = 0;
    if (len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
        i = 3;
    if (len - i < 6 || memcmp(s + i, "<?xml", 5) != 0 || !strchr(" \t\r\n", s[i + 5]))
        return NULL;
    const char *end = memmem(s + i, len - i, "?>", 2);
    if (!end)
        return NULL;
    const char *p = memmem(s + i, (size_t)(end - s) - i, "encoding", 8);
    if (!p)
        return NULL;
    p += 8;
    while (p < end && strchr(" \t\r\n=", *p))
        p++;
    if (p >= end || (*p != '"' && *p != '\''))
        return NULL;
    char q = *p++;
    size_t n = 0;
    while (p < end && *p != q && n + 1 < buflen)
        buf[n++] = *p++;
    buf[n] = '\0';
    return buf;
}

/* libxml2 goes on reading after a fatal error (with its tree building off) and still does the
 * pairwise attribute checks of every later start tag, so a body that is malformed early costs as
 * much as a well-formed one. The first fatal error stops the parser: its verdict is final
 * anyway, and the pre-scan (prescan.h) then only has to bound the well-formed prefix. Errors of
 * lower level (namespace errors) do not stop it. */
static void xdoc_stop_on_fatal(void *cls, xmlErrorPtr e)
{
    if (e && e->level == XML_ERR_FATAL)
        xmlStopParser((xmlParserCtxtPtr)cls);
}

static enum xcap_status xdoc_parse_opts(const char *data, size_t len, bool need_ns, xmlDocPtr *out,
                                        struct xcap_err *err)
{
    *out = NULL;
    if (!xdoc_utf8_valid(data, len))
        return xcap_fail(err, XCAP_NOT_UTF8, "the body is not valid UTF-8");
    if (xdoc_has_doctype(data, len))
        return xcap_fail(err, XCAP_NOT_WELL_FORMED, "document type declarations are not allowed");
    if (len > INT32_MAX)
        return xcap_fail(err, XCAP_TOO_LARGE, "body too large");
    /* RFC 4825 §8.2.2: XCAP bodies are UTF-8. A declaration naming another encoding is refused
     * here, so libxml2 never converts (or complains about) untrusted bytes. */
    char enc[32];
    if (xdoc_declared_encoding(data, len, enc, sizeof enc) && strcasecmp(enc, "UTF-8") != 0 &&
        strcasecmp(enc, "UTF8") != 0)
        return xcap_fail(err, XCAP_NOT_UTF8,
                         "the XML declaration names an encoding other than UTF-8");

    xmlParserCtxtPtr ctxt = xmlNewParserCtxt();
    if (!ctxt)
        return xcap_fail(err, XCAP_INTERNAL, "out of memory");
    /* No XML_PARSE_NOENT (no entity substitution), no DTDLOAD/DTDATTR/DTDVALID, no network,
     * no HUGE (keeps libxml2's depth and size limits). */
    int opts = XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_IGNORE_ENC;
    ctxt->sax->serror = xdoc_stop_on_fatal;
    ctxt->userData = ctxt;
    xmlDocPtr doc = xmlCtxtReadMemory(ctxt, data, (int)len, NULL, "UTF-8", opts);
    /* XML Namespaces §7: an unbound prefix leaves the document well-formed for libxml2 but not
     * namespace-well-formed, and every XCAP document is read through namespaces (RFC 4825 §6.3). */
    if (!doc || !ctxt->wellFormed || (need_ns && !ctxt->nsWellFormed)) {
        const xmlError *e = xmlCtxtGetLastError(ctxt);
        char msg[256];
        if (e && e->message) {
            snprintf(msg, sizeof msg, "line %d: %s", e->line, e->message);
            size_t n = strlen(msg);
            while (n && msg[n - 1] == '\n')
                msg[--n] = '\0';
        } else {
            snprintf(msg, sizeof msg, "not well-formed XML");
        }
        if (doc)
            xmlFreeDoc(doc);
        xmlFreeParserCtxt(ctxt);
        return xcap_fail(err, XCAP_NOT_WELL_FORMED, "%s", msg);
    }
    xmlFreeParserCtxt(ctxt);
    xmlNodePtr root = xmlDocGetRootElement(doc);
    if (!root) {
        xmlFreeDoc(doc);
        return xcap_fail(err, XCAP_NOT_WELL_FORMED, "no root element");
    }
    if (xdoc_too_deep(root)) {
        xmlFreeDoc(doc);
        return xcap_fail(err, XCAP_NOT_WELL_FORMED, "elements nested deeper than %d",
                         XDOC_MAX_DEPTH);
    }
    *out = doc;
    return XCAP_OK;
}

enum xcap_status xdoc_parse(const char *data, size_t len, xmlDocPtr *out, struct xcap_err *err)
{
    return xdoc_parse_opts(data, len, true, out, err);
}

enum xcap_status xdoc_parse_unbound(const char *data, size_t len, xmlDocPtr *out,
                                    struct xcap_err *err)
{
    return xdoc_parse_opts(data, len, false, out, err);
}

int xdoc_serialize(xmlDocPtr doc, struct buf *out)
{
    xmlChar *mem = NULL;
    int size = 0;
    xmlDocDumpMemoryEnc(doc, &mem, &size, "UTF-8");
    if (!mem)
        return -1;
    int rc = buf_append(out, mem, (size_t)size);
    xmlFree(mem);
    return rc;
}

bool xdoc_is(xmlNodePtr el, const char *ns, const char *local)
{
    return el && el->type == XML_ELEMENT_NODE && el->ns && el->ns->href &&
           strcmp((const char *)el->ns->href, ns) == 0 &&
           strcmp((const char *)el->name, local) == 0;
}

xmlNodePtr xdoc_next(xmlNodePtr el)
{
    return xdoc_next_element(el ? el->next : NULL);
}

xmlNodePtr xdoc_first_child(xmlNodePtr el)
{
    return xdoc_next_element(el ? el->children : NULL);
}

const char *xdoc_attr(xmlNodePtr el, const char *name)
{
    for (xmlAttrPtr a = el->properties; a; a = a->next)
        if (!a->ns && strcmp((const char *)a->name, name) == 0) {
            /* Attribute values are one text node in a parsed tree (no entity references:
             * xdoc_parse() substitutes nothing and refuses DTDs). */
            xmlNodePtr t = a->children;
            if (!t)
                return "";
            if (t->type == XML_TEXT_NODE && !t->next && t->content)
                return (const char *)t->content;
            return NULL;
        }
    return NULL;
}

char *xdoc_text_dup(xmlNodePtr el)
{
    xmlChar *raw = xmlNodeGetContent(el);
    if (!raw)
        return NULL;
    const char *s = (const char *)raw;
    s += strspn(s, " \t\r\n");
    size_t n = strlen(s);
    while (n && strchr(" \t\r\n", s[n - 1]))
        n--;
    char *out = strndup(s, n);
    xmlFree(raw);
    return out;
}
