/* One list of every outcome a request can have (the error model of docs/architecture.md).
 *
 * XCAP_STATUS_LIST generates enum xcap_status, its HTTP code, the xcap-error condition element
 * (RFC 4825 §11; NULL for statuses that carry no XCAP error body) and a short reason phrase.
 * status_http(), status_condition() and status_phrase() are switches with no default, so a new row
 * that is not handled everywhere is a compile error. */
#ifndef XDM_STATUS_H
#define XDM_STATUS_H

#include <stddef.h>

struct buf;

#define XCAP_STATUS_LIST(X)                                                                        \
    X(XCAP_OK, 200, NULL, "OK")                                                                    \
    X(XCAP_CREATED, 201, NULL, "Created")                                                          \
    X(XCAP_NOT_MODIFIED, 304, NULL, "Not Modified")                                                \
    X(XCAP_BAD_REQUEST, 400, NULL, "Bad Request")                                                  \
    X(XCAP_UNAUTHORIZED, 401, NULL, "Unauthorized")                                                \
    X(XCAP_FORBIDDEN, 403, NULL, "Forbidden")                                                      \
    X(XCAP_NOT_FOUND, 404, NULL, "Not Found")                                                      \
    X(XCAP_METHOD_NOT_ALLOWED, 405, NULL, "Method Not Allowed")                                    \
    X(XCAP_NOT_ACCEPTABLE, 406, NULL, "Not Acceptable")                                            \
    X(XCAP_NOT_WELL_FORMED, 409, "not-well-formed", "Conflict")                                    \
    X(XCAP_NOT_XML_FRAG, 409, "not-xml-frag", "Conflict")                                          \
    X(XCAP_NO_PARENT, 409, "no-parent", "Conflict")                                                \
    X(XCAP_SCHEMA_VALIDATION_ERROR, 409, "schema-validation-error", "Conflict")                    \
    X(XCAP_NOT_XML_ATT_VALUE, 409, "not-xml-att-value", "Conflict")                                \
    X(XCAP_CANNOT_INSERT, 409, "cannot-insert", "Conflict")                                        \
    X(XCAP_CANNOT_DELETE, 409, "cannot-delete", "Conflict")                                        \
    X(XCAP_UNIQUENESS_FAILURE, 409, "uniqueness-failure", "Conflict")                              \
    X(XCAP_CONSTRAINT_FAILURE, 409, "constraint-failure", "Conflict")                              \
    X(XCAP_NOT_UTF8, 409, "not-utf-8", "Conflict")                                                 \
    X(XCAP_LOCAL_CONSTRAINT_FAILURE, 409, "extension", "Conflict")                                 \
    X(XCAP_PRECONDITION_FAILED, 412, NULL, "Precondition Failed")                                  \
    X(XCAP_TOO_LARGE, 413, NULL, "Content Too Large")                                              \
    X(XCAP_URI_TOO_LONG, 414, NULL, "URI Too Long")                                                \
    X(XCAP_UNSUPPORTED_MEDIA, 415, NULL, "Unsupported Media Type")                                 \
    X(XCAP_INTERNAL, 500, NULL, "Internal Server Error")                                           \
    X(XCAP_NOT_IMPLEMENTED, 501, NULL, "Not Implemented")                                          \
    X(XCAP_UPSTREAM, 502, NULL, "Bad Gateway")                                                     \
    X(XCAP_STORAGE, 503, NULL, "Service Unavailable")                                              \
    X(XCAP_UPSTREAM_TIMEOUT, 504, NULL, "Gateway Timeout")                                         \
    X(XCAP_UPSTREAM_DOWN, 503, NULL, "Service Unavailable")                                        \
    X(XCAP_INSUFFICIENT_STORAGE, 507, NULL, "Insufficient Storage")

enum xcap_status {
#define XCAP_STATUS_ENUM(name, code, cond, phrase) name,
    XCAP_STATUS_LIST(XCAP_STATUS_ENUM)
#undef XCAP_STATUS_ENUM
};

/* One <exists field="..."> of a uniqueness-failure report, with optional alt-value suggestions. */
struct xcap_exists {
    char *field;
    char **alt_values;
    size_t n_alt;
};

/* A response header a status needs besides its body; both strings owned. */
struct xcap_header {
    char *name;
    char *value;
};

/* Most extra headers one answer carries (one WWW-Authenticate per Digest algorithm offered). */
#define XCAP_ERR_HEADERS_MAX 8

/* Details of a failed request. Zero-initialise before use; release with xcap_err_release().
 * All strings are owned by the struct. */
struct xcap_err {
    enum xcap_status status;
    char *phrase;   /* human-readable text: the phrase="" attribute, or the text/plain body */
    char *ancestor; /* no-parent: absolute URI of the closest existing ancestor */
    char *allow;    /* 405: value of the Allow header */
    struct xcap_exists *exists; /* uniqueness-failure items */
    size_t n_exists;
    /* Further headers of the answer, in order: the WWW-Authenticate challenges of a 401 (RFC 9110
     * §11.6.1), the Retry-After of a 503 (§10.2.3), the Accept-Encoding of a 415 refusing a
     * content coding (§12.5.3). At most XCAP_ERR_HEADERS_MAX. */
    struct xcap_header *headers;
    size_t n_headers;
};

/* Fills err (replacing any earlier phrase) and returns status, so a failure is one line:
 * `return xcap_fail(err, XCAP_NO_PARENT, "no list named %s", name);`. fmt may be NULL. */
enum xcap_status xcap_fail(struct xcap_err *err, enum xcap_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Adds one <exists field> item (copied) to a uniqueness failure; returns the new item or NULL.
 * The xcap-error schema requires at least one <exists> in <uniqueness-failure>. */
struct xcap_exists *xcap_err_add_exists(struct xcap_err *err, const char *field);
/* Adds a copy of value to the item's alt-values; returns 0 or -1 on allocation failure. */
int xcap_exists_add_alt(struct xcap_exists *ex, const char *value);

/* Adds a copy of the header name: value to err. Returns 0, or -1 (out of memory, or already
 * XCAP_ERR_HEADERS_MAX headers). */
int xcap_err_add_header(struct xcap_err *err, const char *name, const char *value);

void xcap_err_release(struct xcap_err *err);

int status_http(enum xcap_status s);
/* RFC 4825 §11 element name, or NULL when the status has no xcap-error body. */
const char *status_condition(enum xcap_status s);
const char *status_phrase(enum xcap_status s);
/* Name of the enum constant, for logs and tests. */
const char *status_name(enum xcap_status s);

/* Renders the application/xcap-error+xml body for err into out (appending).
 * Returns 0, or -1 when err's status has no xcap-error body or out is full. */
int status_error_body(const struct xcap_err *err, struct buf *out);

#endif
