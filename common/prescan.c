#include "prescan.h"

#include <stdbool.h>
#include <string.h>

void prescan_limits_default(struct prescan_limits *lim)
{
    lim->max_attributes = PRESCAN_DEFAULT_MAX_ATTRIBUTES;
    lim->max_elements = PRESCAN_DEFAULT_MAX_ELEMENTS;
    lim->max_depth = PRESCAN_DEFAULT_MAX_DEPTH;
}

static bool prescan_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Bytes that end a name in a start tag. Anything else counts as a name byte: the scanner does
 * not judge names, it only must not count fewer of them than libxml2 would read. */
static bool prescan_name_end(char c)
{
    return prescan_space(c) || c == '/' || c == '>' || c == '=' || c == '<' || c == '"' ||
           c == '\'';
}

/* One past the end of the construct opened at i whose terminator is end, or len when it is never
 * closed (libxml2 then stops there too). */
static size_t prescan_skip(const char *d, size_t len, size_t from, const char *end)
{
    size_t el = strlen(end);
    const char *e = from <= len ? memmem(d + from, len - from, end, el) : NULL;
    return e ? (size_t)(e - d) + el : len;
}

static size_t prescan_line(const char *d, size_t at)
{
    size_t line = 1;
    for (const char *p = d; (p = memchr(p, '\n', at - (size_t)(p - d))) != NULL; p++)
        line++;
    return line;
}

enum prescan_over { PRESCAN_NONE, PRESCAN_ATTRIBUTES, PRESCAN_ELEMENTS, PRESCAN_DEPTH };

/* The start tag whose '<' is at d[i]: counts its attributes and returns one past its end ('>'
 * consumed; a '<' that cuts the tag short is left for the caller). *empty tells "<a/>". */
static size_t prescan_start_tag(const char *d, size_t len, size_t i, size_t max_attrs,
                                size_t *n_attrs, bool *empty, bool *over)
{
    *n_attrs = 0;
    *empty = false;
    *over = false;
    size_t p = i + 1;
    while (p < len && !prescan_name_end(d[p]))
        p++;
    while (p < len) {
        char c = d[p];
        if (c == '>')
            return p + 1;
        if (c == '<')
            return p;
        if (c == '/' && p + 1 < len && d[p + 1] == '>') {
            *empty = true;
            return p + 2;
        }
        if (c == '"' || c == '\'') {
            /* An attribute value ends at its quote; a '<' cannot be inside it, so one ends the
             * tag as it ends libxml2's reading of the value. */
            p++;
            while (p < len && d[p] != c && d[p] != '<')
                p++;
            if (p < len && d[p] == c)
                p++;
            continue;
        }
        if (prescan_name_end(c)) { /* white space, '=', a stray '/' */
            p++;
            continue;
        }
        if (++*n_attrs > max_attrs) {
            *over = true;
            return p;
        }
        while (p < len && !prescan_name_end(d[p]))
            p++;
    }
    return len;
}

enum xcap_status prescan_check(const char *d, size_t len, const struct prescan_limits *limits,
                               struct prescan_counts *counts, struct xcap_err *err)
{
    struct prescan_limits lim;
    prescan_limits_default(&lim);
    if (limits && limits->max_attributes)
        lim.max_attributes = limits->max_attributes;
    if (limits && limits->max_elements)
        lim.max_elements = limits->max_elements;
    if (limits && limits->max_depth)
        lim.max_depth = limits->max_depth;
    struct prescan_counts c = {0};
    size_t depth = 0, i = 0, at = 0;
    enum prescan_over over = PRESCAN_NONE;
    while (i < len && over == PRESCAN_NONE) {
        const char *lt = memchr(d + i, '<', len - i);
        if (!lt)
            break;
        i = (size_t)(lt - d);
        size_t rest = len - i;
        if (rest >= 4 && memcmp(d + i, "<!--", 4) == 0) {
            i = prescan_skip(d, len, i + 4, "-->");
        } else if (rest >= 9 && memcmp(d + i, "<![CDATA[", 9) == 0) {
            i = prescan_skip(d, len, i + 9, "]]>");
        } else if (rest >= 2 && d[i + 1] == '?') {
            i = prescan_skip(d, len, i + 2, "?>");
        } else if (rest >= 2 && d[i + 1] == '/') {
            if (depth)
                depth--;
            i += 2; /* to the '>', or to a '<' that cuts the end tag short */
            while (i < len && d[i] != '>' && d[i] != '<')
                i++;
            if (i < len && d[i] == '>')
                i++;
        } else if (rest >= 2 && !prescan_name_end(d[i + 1]) && d[i + 1] != '!') {
            at = i;
            if (++c.elements > lim.max_elements) {
                over = PRESCAN_ELEMENTS;
                break;
            }
            if (++depth > c.max_depth)
                c.max_depth = depth;
            if (depth > lim.max_depth) {
                over = PRESCAN_DEPTH;
                break;
            }
            size_t n_attrs;
            bool empty, too_many;
            i = prescan_start_tag(d, len, i, lim.max_attributes, &n_attrs, &empty, &too_many);
            if (n_attrs > c.max_attributes)
                c.max_attributes = n_attrs;
            if (too_many)
                over = PRESCAN_ATTRIBUTES;
            else if (empty)
                depth--;
        } else {
            i++; /* "<!" (DOCTYPE is refused elsewhere), "< ", a lone '<': not a tag */
        }
    }
    if (counts)
        *counts = c;
    switch (over) {
    case PRESCAN_NONE:
        return XCAP_OK;
    case PRESCAN_ATTRIBUTES:
        return xcap_fail(err, XCAP_CONSTRAINT_FAILURE,
                         "line %zu: an element has more than %zu attributes (max_attributes)",
                         prescan_line(d, at), lim.max_attributes);
    case PRESCAN_ELEMENTS:
        return xcap_fail(err, XCAP_CONSTRAINT_FAILURE,
                         "line %zu: more than %zu elements (max_elements)", prescan_line(d, at),
                         lim.max_elements);
    case PRESCAN_DEPTH:
        return xcap_fail(err, XCAP_CONSTRAINT_FAILURE,
                         "line %zu: elements nested more than %zu deep (max_depth)",
                         prescan_line(d, at), lim.max_depth);
    }
    return XCAP_OK;
}
