/* server_respond: the respond phase of the XDMS request path (docs/architecture.md), the one
 * place that maps a status to HTTP. A leaf under server.c. */
#ifndef XDMS_SERVER_RESPOND_H
#define XDMS_SERVER_RESPOND_H

#include "engine.h"
#include "httpd.h"
#include "status.h"

/* Renders st into resp: the HTTP code; Retry-After (retry_after seconds, 0 = 1) on a 503; the
 * ETag, media type and body of rep on a 2xx (rep->body is copied, rep keeps it); the xcap-error
 * body of err for a condition of RFC 4825 §11, else err's phrase as text. Sets err->status for
 * a condition. Thread-safe. */
void server_respond(unsigned retry_after, struct xcap_err *err, enum xcap_status st,
                    struct engine_reply *rep, struct http_response *resp);

#endif
