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

/* RFC 3966 §3 visual-separator: "-", ".", "(", ")" change nothing in a number. */
static bool xcap_uri_visual_sep(char c)
{
    return c == '-' || c == '.' || c == '(' || c == ')';
}

/* Removes the visual separators of s[0..n) in place; returns the new length. A span with a bare
 * '%' (not followed by two hex digits) stays as it is: removing a separator there could join the
 * '%' and hex digits into an escape that a second pass would decode ("%4(4" would become "%44"),
 * and the canonical spelling must be its own canonical spelling. Escapes ("%2B" for '+') are
 * complete already, and separators around them go. */
static size_t xcap_uri_strip_seps(char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == '%' && (i + 2 >= n || xcap_uri_hex(s[i + 1]) < 0 || xcap_uri_hex(s[i + 2]) < 0))
            return n;
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
        if (!xcap_uri_visual_sep(s[i]))
            s[o++] = s[i];
    return o;
}

/* Most parameters put in canonical order; a list with more is left in its order. */
#define XCAP_URI_PARAMS_MAX 32

struct xcap_uri_param {
    char *p; /* the parameter without its ';', inside the scratch copy */
    size_t n;
    int rank;
};

static int xcap_uri_param_cmp(const void *a, const void *b)
{
    const struct xcap_uri_param *x = a, *y = b;
    if (x->rank != y->rank)
        return x->rank - y->rank;
    /* By name, then (a name given twice) by the whole parameter: one order for any input. */
    size_t nx = strcspn(x->p, "="), ny = strcspn(y->p, "=");
    if (nx > x->n)
        nx = x->n;
    if (ny > y->n)
        ny = y->n;
    int c = memcmp(x->p, y->p, nx < ny ? nx : ny);
    if (c || nx != ny)
        return c ? c : nx < ny ? -1 : 1;
    c = memcmp(x->p, y->p, x->n < y->n ? x->n : y->n);
    return c ? c : x->n < y->n ? -1 : x->n > y->n ? 1 : 0;
}

/* The parameters s[0..n) (";name[=value]" repeated; s[0] is ';') in canonical form, in place:
 * names and values in lower case (RFC 3966 §4 and RFC 3261 §19.1.4 compare them without case),
 * the visual separators of the number-valued ext, isub and global phone-context values removed
 * (RFC 3966 §5.4), and the order fixed (neither RFC gives the order a meaning): ext and isub
 * first, then phone-context (the order RFC 3966 §3 writes them in), then the others by name.
 * Returns the new length, or -1 when out of memory. */
static long xcap_uri_params(char *s, size_t n)
{
    char *copy = malloc(n + 1);
    if (!copy)
        return -1;
    struct xcap_uri_param prm[XCAP_URI_PARAMS_MAX];
    size_t np = 0, len = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != ';') {
            copy[len++] = xcap_uri_lower(s[i]);
            continue;
        }
        if (np == XCAP_URI_PARAMS_MAX) {
            free(copy);
            return (long)n; /* too many to sort: left as they are */
        }
        copy[len++] = '\0';
        prm[np++] = (struct xcap_uri_param){.p = copy + len};
    }
    copy[len] = '\0';
    for (size_t i = 0; i < np; i++) {
        struct xcap_uri_param *q = &prm[i];
        q->n = strlen(q->p);
        char *eq = memchr(q->p, '=', q->n);
        size_t name = eq ? (size_t)(eq - q->p) : q->n;
        bool ext = (name == 3 && strncmp(q->p, "ext", 3) == 0) ||
                   (name == 4 && strncmp(q->p, "isub", 4) == 0);
        bool ctx = name == 13 && strncmp(q->p, "phone-context", 13) == 0;
        q->rank = ext ? 0 : ctx ? 1 : 2;
        if (eq && (ext || (ctx && eq[1] == '+')))
            q->n = name + 1 + xcap_uri_strip_seps(eq + 1, q->n - name - 1);
    }
    qsort(prm, np, sizeof prm[0], xcap_uri_param_cmp);
    size_t o = 0;
    for (size_t i = 0; i < np; i++) {
        s[o++] = ';';
        memcpy(s + o, prm[i].p, prm[i].n);
        o += prm[i].n;
    }
    free(copy);
    return (long)o;
}

/* A telephone-subscriber t[0..n) (RFC 3966 §3: number, then parameters) in canonical form, in
 * place: the number without visual separators and in lower case (its hex digits), the
 * parameters as xcap_uri_params() makes them. Returns the new length, or -1. */
static long xcap_uri_phone(char *t, size_t n)
{
    size_t num = strcspn(t, ";");
    if (num > n)
        num = n;
    for (size_t i = 0; i < num; i++)
        t[i] = xcap_uri_lower(t[i]);
    size_t nn = xcap_uri_strip_seps(t, num);
    long pl = xcap_uri_params(t + num, n - num);
    if (pl < 0)
        return -1;
    memmove(t + nn, t + num, (size_t)pl);
    return (long)(nn + (size_t)pl);
}

/* Whether the parameters p[0..n) (lower case) hold user=phone. */
static bool xcap_uri_user_phone(const char *p, size_t n)
{
    for (size_t i = 0; i + 11 <= n; i++)
        if (p[i] == ';' && strncmp(p + i + 1, "user=phone", 10) == 0 &&
            (i + 11 == n || p[i + 11] == ';'))
            return true;
    return false;
}

/* The telephone parts of an XUI already in canonical spelling otherwise (out, of scheme length
 * slen; end the end of the part before any '?'): a tel: URI (RFC 3966 §4), or the user part and
 * the parameters of a sip:/sips: URI (RFC 3261 §19.1.4; with user=phone the user part is a
 * telephone-subscriber, §19.1.6). Returns 0, or -1 when out of memory. */
static int xcap_uri_xui_phone(char *out, size_t slen)
{
    size_t start = slen + 1, len = strlen(out);
    size_t end = start + strcspn(out + start, "?");
    long nl;
    if (slen == 3 && strncmp(out, "tel", 3) == 0) {
        if ((nl = xcap_uri_phone(out + start, end - start)) < 0)
            return -1;
    } else if ((slen == 3 && strncmp(out, "sip", 3) == 0) ||
               (slen == 4 && strncmp(out, "sips", 4) == 0)) {
        /* user@host: the host part ends at the first ';' after the last '@' */
        size_t at = 0;
        for (size_t i = start; i < end; i++)
            if (out[i] == '@')
                at = i;
        size_t pstart = (at ? at : start) + strcspn(out + (at ? at : start), ";");
        if (pstart > end)
            pstart = end;
        long pl = xcap_uri_params(out + pstart, end - pstart);
        if (pl < 0)
            return -1;
        nl = (long)(pstart - start) + pl;
        if (at && xcap_uri_user_phone(out + pstart, (size_t)pl)) {
            long ul = xcap_uri_phone(out + start, at - start);
            if (ul < 0)
                return -1;
            memmove(out + start + ul, out + at, (size_t)(pstart - at) + (size_t)pl);
            nl -= (long)(at - start) - ul;
        }
    } else {
        return 0;
    }
    memmove(out + start + nl, out + end, len - end + 1);
    return 0;
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
    if (start > 0 && xcap_uri_xui_phone(out, start - 1) < 0) {
        free(out);
        return NULL;
    }
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
