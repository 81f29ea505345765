/* server_respond: the respond phase of the XDMS request path (server_respond.h). */
#include "server_respond.h"

#include "xcap_names.h"

/* Phase: respond — the one place that maps a status to HTTP (the error model of
 * docs/architecture.md). */
void server_respond(unsigned retry_after, struct xcap_err *err, enum xcap_status st,
                    struct engine_reply *rep, struct http_response *resp)
{
    resp->status = status_http(st);
    /* RFC 9110 §15.6.4: the store could not answer now (a database that is down or failing
     * over); the client is told when to try again rather than to give up. */
    if (resp->status == 503)
        http_response_headerf(resp, "Retry-After", "%u", retry_after ? retry_after : 1);
    if (rep->etag[0] && (st == XCAP_OK || st == XCAP_CREATED || st == XCAP_NOT_MODIFIED))
        http_response_headerf(resp, "ETag", "\"%s\"", rep->etag);
    if (st == XCAP_OK || st == XCAP_CREATED) {
        if (rep->content_type)
            http_response_header(resp, "Content-Type", rep->content_type);
        buf_reset(&resp->body);
        if (rep->body.len && buf_append(&resp->body, rep->body.data, rep->body.len) < 0)
            http_response_text(resp, 500, "out of memory");
        return;
    }
    if (st == XCAP_NOT_MODIFIED)
        return;
    if (err->allow)
        http_response_header(resp, "Allow", err->allow);
    if (status_condition(st)) {
        err->status = st;
        buf_reset(&resp->body);
        if (status_error_body(err, &resp->body) == 0) {
            http_response_header(resp, "Content-Type", XCAP_ERROR_MIME);
            return;
        }
    }
    http_response_text(resp, resp->status, err->phrase ? err->phrase : status_phrase(st));
}
