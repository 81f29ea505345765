/* Growable byte buffer with a mandatory maximum size (in the manner of curl's dynbuf).
 *
 * Invariants: data is NULL or holds len bytes followed by a NUL (so text can be read as a C
 * string); len <= max; every append either adds all its bytes or fails leaving the buffer as it
 * was. A failed append returns -1 (out of memory or over max). */
#ifndef XDM_BUF_H
#define XDM_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max;
};

void buf_init(struct buf *b, size_t max);
void buf_release(struct buf *b);
void buf_reset(struct buf *b); /* len = 0, keeps memory */
int buf_append(struct buf *b, const void *data, size_t len);
int buf_puts(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Appends s with the five XML special characters escaped (attribute-safe). */
int buf_xml_escape(struct buf *b, const char *s, size_t len);
/* Moves the bytes out: returns data (NUL-terminated, caller frees) and leaves b empty. An empty
 * buffer returns a fresh empty string. Returns NULL only on allocation failure. */
char *buf_detach(struct buf *b, size_t *len);

#endif
