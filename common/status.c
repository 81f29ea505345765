#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "xcap_names.h"

int status_http(enum xcap_status s)
{
    switch (s) {
#define X(name, code, cond, phrase)                                                                \
    case name:                                                                                     \
        return code;
        XCAP_STATUS_LIST(X)
#undef X
    }
    return 500;
}

const char *status_condition(enum xcap_status s)
{
    switch (s) {
#define X(name, code, cond, phrase)                                                                \
    case name:                                                                                     \
        return cond;
        XCAP_STATUS_LIST(X)
#undef X
    }
    return NULL;
}

const char *status_phrase(enum xcap_status s)
{
    switch (s) {
#define X(name, code, cond, phrase)                                                                \
    case name:                                                                                     \
        return phrase;
        XCAP_STATUS_LIST(X)
#undef X
    }
    return "Unknown";
}

const char *status_name(enum xcap_status s)
{
    switch (s) {
#define X(name, code, cond, phrase)                                                                \
    case name:                                                                                     \
        return #name;
        XCAP_STATUS_LIST(X)
#undef X
    }
    return "XCAP_?";
}

enum xcap_status xcap_fail(struct xcap_err *err, enum xcap_status status, const char *fmt, ...)
{
    if (!err)
        return status;
    err->status = status;
    /* Format before freeing the old phrase: callers may pass err->phrase as an argument. */
    char *phrase = NULL;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(&phrase, fmt, ap) < 0)
            phrase = NULL;
        va_end(ap);
    }
    free(err->phrase);
    err->phrase = phrase;
    return status;
}

struct xcap_exists *xcap_err_add_exists(struct xcap_err *err, const char *field)
{
    struct xcap_exists *v = realloc(err->exists, (err->n_exists + 1) * sizeof *v);
    if (!v)
        return NULL;
    err->exists = v;
    struct xcap_exists *ex = &v[err->n_exists];
    ex->field = strdup(field);
    ex->alt_values = NULL;
    ex->n_alt = 0;
    if (!ex->field)
        return NULL;
    err->n_exists++;
    return ex;
}

int xcap_exists_add_alt(struct xcap_exists *ex, const char *value)
{
    char **v = realloc(ex->alt_values, (ex->n_alt + 1) * sizeof *v);
    if (!v)
        return -1;
    ex->alt_values = v;
    if (!(v[ex->n_alt] = strdup(value)))
        return -1;
    ex->n_alt++;
    return 0;
}

int xcap_err_add_header(struct xcap_err *err, const char *name, const char *value)
{
    if (err->n_headers == XCAP_ERR_HEADERS_MAX)
        return -1;
    if (!err->headers && !(err->headers = calloc(XCAP_ERR_HEADERS_MAX, sizeof *err->headers)))
        return -1;
    struct xcap_header *h = &err->headers[err->n_headers];
    h->name = strdup(name);
    h->value = strdup(value);
    if (!h->name || !h->value) {
        free(h->name);
        free(h->value);
        h->name = h->value = NULL;
        return -1;
    }
    err->n_headers++;
    return 0;
}

void xcap_err_release(struct xcap_err *err)
{
    for (size_t i = 0; i < err->n_headers; i++) {
        free(err->headers[i].name);
        free(err->headers[i].value);
    }
    free(err->headers);
    free(err->phrase);
    free(err->ancestor);
    free(err->allow);
    for (size_t i = 0; i < err->n_exists; i++) {
        free(err->exists[i].field);
        for (size_t j = 0; j < err->exists[i].n_alt; j++)
            free(err->exists[i].alt_values[j]);
        free(err->exists[i].alt_values);
    }
    free(err->exists);
    memset(err, 0, sizeof *err);
}

/* RFC 4825 §11: one condition element inside <xcap-error>; OMA local-constraint-failure
 * (urn:oma:xml:xdm:xcap-error) travels inside <extension>. */
int status_error_body(const struct xcap_err *err, struct buf *out)
{
    const char *cond = status_condition(err->status);
    if (!cond)
        return -1;
    size_t start = out->len;
    int rc = buf_puts(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                           "<xcap-error xmlns=\"" XCAP_ERROR_NS "\">");
    const char *inner = cond;
    if (err->status == XCAP_LOCAL_CONSTRAINT_FAILURE) {
        rc |= buf_puts(out, "<extension><local-constraint-failure "
                            "xmlns=\"" XDM_ERROR_NS "\"");
        inner = NULL;
    } else {
        rc |= buf_printf(out, "<%s", cond);
    }
    if (err->phrase) {
        rc |= buf_puts(out, " phrase=\"");
        rc |= buf_xml_escape(out, err->phrase, strlen(err->phrase));
        rc |= buf_puts(out, "\"");
    }
    int has_children = (err->status == XCAP_NO_PARENT && err->ancestor) ||
                       (err->status == XCAP_UNIQUENESS_FAILURE && err->n_exists > 0);
    if (!has_children) {
        rc |= buf_puts(out, "/>");
    } else {
        rc |= buf_puts(out, ">");
        if (err->status == XCAP_NO_PARENT) {
            rc |= buf_puts(out, "<ancestor>");
            rc |= buf_xml_escape(out, err->ancestor, strlen(err->ancestor));
            rc |= buf_puts(out, "</ancestor>");
        }
        for (size_t i = 0; err->status == XCAP_UNIQUENESS_FAILURE && i < err->n_exists; i++) {
            const struct xcap_exists *ex = &err->exists[i];
            rc |= buf_puts(out, "<exists field=\"");
            rc |= buf_xml_escape(out, ex->field, strlen(ex->field));
            if (ex->n_alt == 0) {
                rc |= buf_puts(out, "\"/>");
                continue;
            }
            rc |= buf_puts(out, "\">");
            for (size_t j = 0; j < ex->n_alt; j++) {
                rc |= buf_puts(out, "<alt-value>");
                rc |= buf_xml_escape(out, ex->alt_values[j], strlen(ex->alt_values[j]));
                rc |= buf_puts(out, "</alt-value>");
            }
            rc |= buf_puts(out, "</exists>");
        }
        rc |= buf_printf(out, "</%s>", cond);
    }
    if (!inner)
        rc |= buf_puts(out, "</extension>");
    rc |= buf_puts(out, "</xcap-error>\n");
    if (rc) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0'; /* buf.h invariant: len bytes then a NUL */
        return -1;
    }
    return 0;
}
