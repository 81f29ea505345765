#include "xspan.h"

#include <stdlib.h>
#include <string.h>

static int xspan_is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Name characters as far as a scanner of well-formed input needs: anything that ends a name is
 * white space, '/', '>', '=' or end of input. */
static size_t xspan_name_len(const char *d, size_t len, size_t i)
{
    size_t s = i;
    while (i < len && !xspan_is_space(d[i]) && d[i] != '/' && d[i] != '>' && d[i] != '=')
        i++;
    return i - s;
}

static const char *xspan_find(const char *d, size_t len, size_t i, const char *what)
{
    size_t wl = strlen(what);
    if (i > len)
        return NULL;
    return memmem(d + i, len - i, what, wl);
}

static int xspan_push_attr(struct xspan *s, size_t *cap, const struct xspan_attr *a)
{
    if (s->n_attrs == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        struct xspan_attr *v = realloc(s->attrs, nc * sizeof *v);
        if (!v)
            return -1;
        s->attrs = v;
        *cap = nc;
    }
    s->attrs[s->n_attrs++] = *a;
    return 0;
}

int xspan_scan(const char *d, size_t len, struct xspan *out)
{
    memset(out, 0, sizeof *out);
    size_t el_cap = 0, attr_cap = 0;
    uint32_t *stack = NULL;
    size_t depth = 0, stack_cap = 0;
    size_t i = 0;
    while (i < len) {
        if (d[i] != '<') {
            const char *lt = memchr(d + i, '<', len - i);
            if (!lt)
                break;
            i = (size_t)(lt - d);
            continue;
        }
        if (len - i >= 4 && memcmp(d + i, "<!--", 4) == 0) {
            const char *e = xspan_find(d, len, i + 4, "-->");
            if (!e)
                goto fail;
            i = (size_t)(e - d) + 3;
        } else if (len - i >= 9 && memcmp(d + i, "<![CDATA[", 9) == 0) {
            const char *e = xspan_find(d, len, i + 9, "]]>");
            if (!e)
                goto fail;
            i = (size_t)(e - d) + 3;
        } else if (len - i >= 2 && d[i + 1] == '?') {
            const char *e = xspan_find(d, len, i + 2, "?>");
            if (!e)
                goto fail;
            i = (size_t)(e - d) + 2;
        } else if (len - i >= 2 && d[i + 1] == '!') {
            goto fail; /* DOCTYPE: refused before we get here */
        } else if (len - i >= 2 && d[i + 1] == '/') {
            if (depth == 0)
                goto fail;
            const char *gt = memchr(d + i, '>', len - i);
            if (!gt)
                goto fail;
            struct xspan_el *el = &out->els[stack[--depth]];
            el->etag_start = i;
            i = (size_t)(gt - d) + 1;
            el->end = i;
        } else {
            if (out->n_els == el_cap) {
                size_t nc = el_cap ? el_cap * 2 : 64;
                struct xspan_el *v = realloc(out->els, nc * sizeof *v);
                if (!v)
                    goto fail;
                out->els = v;
                el_cap = nc;
            }
            if (depth == stack_cap) {
                size_t nc = stack_cap ? stack_cap * 2 : 32;
                uint32_t *v = realloc(stack, nc * sizeof *v);
                if (!v)
                    goto fail;
                stack = v;
                stack_cap = nc;
            }
            uint32_t idx = (uint32_t)out->n_els++;
            struct xspan_el *el = &out->els[idx];
            memset(el, 0, sizeof *el);
            el->start = i;
            el->parent = depth ? stack[depth - 1] : UINT32_MAX;
            el->name_len = xspan_name_len(d, len, i + 1);
            if (el->name_len == 0)
                goto fail;
            el->first_attr = (uint32_t)out->n_attrs;
            size_t p = i + 1 + el->name_len;
            for (;;) {
                size_t ws = p;
                while (p < len && xspan_is_space(d[p]))
                    p++;
                if (p >= len)
                    goto fail;
                if (d[p] == '>') {
                    el->stag_end = p + 1;
                    break;
                }
                if (d[p] == '/') {
                    if (p + 1 >= len || d[p + 1] != '>')
                        goto fail;
                    el->stag_end = p + 2;
                    el->empty = 1;
                    break;
                }
                struct xspan_attr a = {.ws = ws, .name = p};
                a.name_len = xspan_name_len(d, len, p);
                if (a.name_len == 0 || ws == p)
                    goto fail;
                p += a.name_len;
                while (p < len && xspan_is_space(d[p]))
                    p++;
                if (p >= len || d[p] != '=')
                    goto fail;
                p++;
                while (p < len && xspan_is_space(d[p]))
                    p++;
                if (p >= len || (d[p] != '"' && d[p] != '\''))
                    goto fail;
                char q = d[p];
                const char *close = memchr(d + p + 1, q, len - p - 1);
                if (!close)
                    goto fail;
                a.value = p + 1;
                a.value_len = (size_t)(close - d) - a.value;
                p = (size_t)(close - d) + 1;
                a.end = p;
                if (xspan_push_attr(out, &attr_cap, &a) < 0)
                    goto fail;
                el = &out->els[idx];
                el->n_attr++;
            }
            i = el->stag_end;
            if (el->empty) {
                el->etag_start = el->stag_end;
                el->end = el->stag_end;
            } else {
                stack[depth++] = idx;
            }
        }
    }
    free(stack);
    if (depth != 0 || out->n_els == 0) {
        xspan_release(out);
        return -1;
    }
    return 0;
fail:
    free(stack);
    xspan_release(out);
    return -1;
}

void xspan_release(struct xspan *s)
{
    free(s->els);
    free(s->attrs);
    memset(s, 0, sizeof *s);
}

size_t xspan_number_tree(xmlNodePtr root)
{
    size_t count = 0;
    for (xmlNodePtr n = root; n;) {
        if (n->type == XML_ELEMENT_NODE) {
            n->_private = (void *)(uintptr_t)(++count);
            if (n->children) {
                n = n->children;
                continue;
            }
        }
        while (n && n != root && !n->next)
            n = n->parent;
        if (!n || n == root)
            break;
        n = n->next;
    }
    return count;
}
