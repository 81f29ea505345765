/* The access log: one line per answered request on stderr, next to the process log
 * (docs/operations.md, "Access log"), as text or as JSON lines, and the request id that ties the
 * proxy's line to the XDMS's.
 *
 * Request ids: the proxy makes a fresh one for every request (whatever the client sent) and
 * forwards it upstream as X-Request-ID; an XDMS takes the X-Request-ID it gets when it is a
 * well-formed id (ACCESS_ID_MAX characters at most of A-Z a-z 0-9 . _ : -), else makes one. The
 * id of the request being handled is kept per thread (a handler runs on one thread from start to
 * end), so code deep in the handler can read it with access_request_id().
 *
 * Thread-safety: access_init() once at start; everything else from any thread. */
#ifndef XDM_ACCESS_H
#define XDM_ACCESS_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

enum access_format { ACCESS_OFF, ACCESS_TEXT, ACCESS_JSON };

/* Longest request id taken from a peer (and made here: 24 hex digits). */
#define ACCESS_ID_MAX 64
/* Longest part of a request-target written to the log; longer ones are cut and end in "...". */
#define ACCESS_TARGET_MAX 1024

/* Parses "off", "text", "json" (the configuration key access_log); -1 for anything else. */
int access_format_parse(const char *s, enum access_format *out);
/* Sets the format and the process name of every line, and seeds the request ids. */
void access_init(enum access_format f, const char *prog);

/* Whether s is a well-formed request id (see the top of this file). */
bool access_id_valid(const char *s);
/* Starts a request on this thread: its id becomes given when that is well-formed (an XDMS, from
 * the proxy's X-Request-ID), else a fresh one (given NULL: always fresh). Returns the id,
 * borrowed until the next access_begin() on this thread. */
const char *access_begin(const char *given);
/* The id of this thread's current request ("" before any). */
const char *access_request_id(void);

/* One answered request. peer: numeric address or "unix"; client_id: what the client sent as
 * X-Request-ID at the proxy (logged only when well-formed), else NULL. */
struct access_entry {
    const char *time; /* RFC 3339 UTC with milliseconds, e.g. "2026-12-03T12:00:00.123Z" */
    const char *peer;
    const char *method;
    const char *target; /* raw request-target */
    int status;
    size_t bytes; /* response body bytes */
    double seconds;
    const char *id;
    const char *client_id;
};

/* Appends the line of e in format f (without the final newline) to out. Text:
 *   TIME ACCESS PROG: PEER "METHOD TARGET" STATUS BYTES SECONDS id=ID client_id=ID|-
 * with '"', '\\', controls and bytes above 0x7e in METHOD and TARGET written as \xHH; JSON: one
 * object {"time","process","peer","method","target","status","bytes","seconds","id",
 * "client_id"} with strings escaped per RFC 8259 (bytes above 0x7e as \u00HH) and client_id
 * null when absent. Returns 0 or -1 (out of memory / over out's maximum). */
int access_render(enum access_format f, const char *prog, const struct access_entry *e,
                  struct buf *out);

/* Writes the line of one request (nothing when the format is off), with the current time and
 * this thread's request id. */
void access_log(const char *peer, const char *method, const char *target, int status, size_t bytes,
                double seconds, const char *client_id);

#endif
