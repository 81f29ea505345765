#include "xcap_uri.h"

#include "buf.h"

#include <stdlib.h>
#include <string.h>

int xcap_uri_hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int xcap_uri_pct_decode(const char *src, size_t len, char *out, size_t outlen)
{
    /* out may be src: out + o never passes src + i, and src[i..i+2] is read before out[o] is
     * written. */
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = src[i];
        if (c == '%') {
            if (len - i < 3)
                return -1;
            int h = xcap_uri_hex(src[i + 1]);
            int l = h < 0 ? -1 : xcap_uri_hex(src[i + 2]);
            if (l < 0)
                return -1;
            c = (char)(h << 4 | l);
            i += 2;
        }
        if (c == '\0' || o + 1 >= outlen)
            return -1;
        out[o++] = c;
    }
    if (outlen == 0)
        return -1;
    out[o] = '\0';
    return 0;
}

char *xcap_uri_decode(const char *src, size_t len)
{
    char *out = malloc(len + 1);
    if (out && xcap_uri_pct_decode(src, len, out, len + 1) < 0) {
        free(out);
        out = NULL;
    }
    return out;
}

int xcap_uri_encode(struct buf *out, const char *s, size_t n, bool keep_slash)
{
    static const char keep[] = "-._~!$&'()*+,;=:@";
    int rc = 0;
    for (const unsigned char *p = (const unsigned char *)s; p < (const unsigned char *)s + n; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            (*p != '\0' && *p < 0x80 && strchr(keep, *p)) || (keep_slash && *p == '/'))
            rc |= buf_append(out, p, 1);
        else
            rc |= buf_printf(out, "%%%02X", *p);
    }
    return rc;
}

int xcap_uri_encode_segment(struct buf *out, const char *s)
{
    return xcap_uri_encode(out, s, strlen(s), false);
}

/* Copies the document selector as sent, with every raw '"' written "%22": RFC 3986 has no raw
 * '"', but clients built on Python's urllib send one, and the copy goes into URIs this server
 * writes (the <no-parent> ancestor, xcap-diff). Both spellings decode alike. */
static char *xcap_uri_doc_sel_dup(const char *s, size_t len)
{
    size_t quotes = 0;
    for (size_t i = 0; i < len; i++)
        quotes += s[i] == '"';
    char *out = malloc(len + 2 * quotes + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '"') {
            memcpy(out + o, "%22", 3);
            o += 3;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

void xcap_uri_release(struct xcap_uri *u)
{
    free(u->auid);
    free(u->xui);
    free(u->path);
    free(u->node_sel);
    free(u->query);
    free(u->doc_sel);
    memset(u, 0, sizeof *u);
}

/* Decodes one segment of the document selector. A decoded '/' is allowed only in the XUI
 * (RFC 4825 §6.2: "/" inside an XUI arrives as %2F); elsewhere it would make the document path
 * ambiguous. */
static enum xcap_status xcap_uri_segment(const char *s, size_t len, bool allow_slash, char **out,
                                         struct xcap_err *err)
{
    if (len > XCAP_URI_MAX_SEGMENT)
        return xcap_fail(err, XCAP_BAD_REQUEST, "path segment longer than %d bytes",
                         XCAP_URI_MAX_SEGMENT);
    char *d = xcap_uri_decode(s, len);
    if (!d)
        return xcap_fail(err, XCAP_BAD_REQUEST, "invalid percent-encoding in the path");
    if (strcmp(d, ".") == 0 || strcmp(d, "..") == 0 || (!allow_slash && strchr(d, '/'))) {
        free(d);
        return xcap_fail(err, XCAP_BAD_REQUEST, "dot segments are not allowed");
    }
    *out = d;
    return XCAP_OK;
}

enum xcap_status xcap_uri_parse(const char *root_path, const char *raw_path, const char *raw_query,
                                struct xcap_uri *out, struct xcap_err *err)
{
    memset(out, 0, sizeof *out);
    size_t rlen = strlen(root_path);
    if (strncmp(raw_path, root_path, rlen) != 0 || raw_path[rlen] != '/')
        return xcap_fail(err, XCAP_NOT_FOUND, "not under the XCAP root");
    const char *p = raw_path + rlen + 1;
    size_t plen = strlen(p);

    /* Split off the node selector at the first segment that is exactly "~~" (RFC 4825 §6). */
    const char *sep = NULL;
    for (const char *q = p; (q = strstr(q, "~~")) != NULL; q += 2) {
        bool starts = q == p || q[-1] == '/';
        bool ends = q[2] == '/' || q[2] == '\0';
        if (starts && ends) {
            sep = q;
            break;
        }
    }
    size_t doc_len = sep ? (size_t)(sep - p) : plen;
    enum xcap_status st;
    if (sep) {
        if (doc_len == 0 || sep[2] == '\0' || sep[3] == '\0')
            return xcap_fail(err, XCAP_BAD_REQUEST, "empty node selector");
        doc_len--; /* the '/' before "~~" */
        if (!(out->node_sel = xcap_uri_decode(sep + 3, strlen(sep + 3)))) {
            st = xcap_fail(err, XCAP_BAD_REQUEST, "invalid percent-encoding in the node selector");
            goto fail;
        }
    }
    if (raw_query && *raw_query) {
        if (!(out->query = xcap_uri_decode(raw_query, strlen(raw_query)))) {
            st = xcap_fail(err, XCAP_BAD_REQUEST, "invalid percent-encoding in the query");
            goto fail;
        }
    }
    if (!(out->doc_sel = xcap_uri_doc_sel_dup(p, doc_len))) {
        st = xcap_fail(err, XCAP_INTERNAL, "out of memory");
        goto fail;
    }

    /* Walk the document selector: auid / tree / [xui /] path... */
    const char *s = p, *end = p + doc_len;
    int index = 0;
    struct buf_path {
        char *data;
        size_t len;
    } path = {NULL, 0};
    bool trailing_slash = doc_len > 0 && p[doc_len - 1] == '/';
    while (s < end) {
        const char *slash = memchr(s, '/', (size_t)(end - s));
        size_t seglen = slash ? (size_t)(slash - s) : (size_t)(end - s);
        bool last = !slash || slash + 1 == end;
        if (seglen == 0) {
            free(path.data);
            st = index == 0 ? xcap_fail(err, XCAP_NOT_FOUND, "no application usage")
                            : xcap_fail(err, XCAP_BAD_REQUEST, "empty path segment");
            goto fail;
        }
        bool is_xui = index == 2 && out->tree == XCAP_TREE_USERS;
        char *seg = NULL;
        if ((st = xcap_uri_segment(s, seglen, is_xui, &seg, err)) != XCAP_OK) {
            free(path.data);
            goto fail;
        }
        if (index == 0) {
            out->auid = seg;
        } else if (index == 1) {
            bool users = strcmp(seg, "users") == 0, global = strcmp(seg, "global") == 0;
            free(seg);
            if (!users && !global) {
                st = xcap_fail(err, XCAP_NOT_FOUND, "the tree must be \"users\" or \"global\"");
                goto fail;
            }
            out->tree = users ? XCAP_TREE_USERS : XCAP_TREE_GLOBAL;
        } else if (is_xui) {
            out->xui = seg;
        } else {
            size_t sl = strlen(seg);
            char *np = realloc(path.data, path.len + sl + 2);
            if (!np) {
                free(seg);
                free(path.data);
                st = xcap_fail(err, XCAP_INTERNAL, "out of memory");
                goto fail;
            }
            path.data = np;
            if (path.len)
                path.data[path.len++] = '/';
            memcpy(path.data + path.len, seg, sl);
            path.len += sl;
            path.data[path.len] = '\0';
            free(seg);
        }
        index++;
        if (last)
            break;
        s = slash + 1;
    }
    if (index < 2 || (out->tree == XCAP_TREE_USERS && index < 3)) {
        free(path.data);
        st = xcap_fail(err, XCAP_NOT_FOUND, "incomplete document selector");
        goto fail;
    }
    out->path = path.data ? path.data : strdup("");
    if (!out->path) {
        st = xcap_fail(err, XCAP_INTERNAL, "out of memory");
        goto fail;
    }
    out->is_dir = trailing_slash || out->path[0] == '\0';
    if (out->is_dir && out->node_sel) {
        st = xcap_fail(err, XCAP_NOT_FOUND, "a directory has no node selector");
        goto fail;
    }
    return XCAP_OK;
fail:
    xcap_uri_release(out);
    return st;
}

static bool xcap_uri_unreserved(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

static char xcap_uri_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

char *xcap_uri_xui_canonical(const char *xui)
{
    size_t len = strlen(xui);
    char *out = malloc(len + 1); /* never longer than the input */
    if (!out)
        return NULL;
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int h = xui[i] == '%' && i + 2 < len ? xcap_uri_hex(xui[i + 1]) : -1;
        int l = h >= 0 ? xcap_uri_hex(xui[i + 2]) : -1;
        if (l < 0) {
            out[o++] = xui[i];
            continue;
        }
        int c = h << 4 | l;
        /* A decoded hex digit right after a bare '%' (or '%' and one hex digit) would make a
         * new escape of them, which a second pass would read: such an escape stays encoded,
         * so that the canonical spelling is its own canonical spelling. */
        bool joins = xcap_uri_hex((char)c) >= 0 &&
                     ((o >= 1 && out[o - 1] == '%') ||
                      (o >= 2 && out[o - 2] == '%' && xcap_uri_hex(out[o - 1]) >= 0));
        if (xcap_uri_unreserved(c) && !joins) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[h];
            out[o++] = hex[l];
        }
        i += 2;
    }
    out[o] = '\0';
    /* RFC 3986 §3.1 scheme, then ':'. */
    size_t start = 0;
    if ((out[0] >= 'a' && out[0] <= 'z') || (out[0] >= 'A' && out[0] <= 'Z')) {
        size_t i = 1;
        while ((out[i] >= 'a' && out[i] <= 'z') || (out[i] >= 'A' && out[i] <= 'Z') ||
               (out[i] >= '0' && out[i] <= '9') || out[i] == '+' || out[i] == '-' || out[i] == '.')
            i++;
        if (out[i] == ':') {
            for (size_t j = 0; j < i; j++)
                out[j] = xcap_uri_lower(out[j]);
            start = i + 1;
        }
    }
    /* The host: after the last '@' before any parameters or headers (RFC 3261 §19.1.1); a URI
     * without '@' is all host ("sip:example.com"), a bare name without '@' all user. */
    size_t end = start + strcspn(out + start, ";?");
    size_t host = start > 0 ? start : end;
    for (size_t i = start; i < end; i++)
        if (out[i] == '@')
            host = i + 1;
    for (size_t i = host; i < end; i++)
        out[i] = xcap_uri_lower(out[i]);
    return out;
}

bool xcap_uri_xui_equal(const char *a, const char *b)
{
    char *ca = xcap_uri_xui_canonical(a), *cb = xcap_uri_xui_canonical(b);
    bool same = ca && cb && strcmp(ca, cb) == 0;
    free(ca);
    free(cb);
    return same;
}
