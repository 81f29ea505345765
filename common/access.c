/* The access log and request ids (access.h). */
#include "access.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static enum access_format access_fmt = ACCESS_TEXT;
static const char *access_prog = "xdm";
static uint32_t access_seed;
static atomic_uint_fast64_t access_counter;
static _Thread_local char access_id[ACCESS_ID_MAX + 1];

int access_format_parse(const char *s, enum access_format *out)
{
    static const char *const names[] = {"off", "text", "json"};
    for (int i = 0; i < 3; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (enum access_format)i;
            return 0;
        }
    return -1;
}

void access_init(enum access_format f, const char *prog)
{
    access_fmt = f;
    access_prog = prog;
    if (getrandom(&access_seed, sizeof access_seed, 0) != (ssize_t)sizeof access_seed)
        access_seed = (uint32_t)time(NULL) ^ (uint32_t)getpid();
}

bool access_id_valid(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (n == ACCESS_ID_MAX || !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                                    (c >= '0' && c <= '9') || strchr("._:-", c)))
            return false;
    }
    return n > 0;
}

const char *access_begin(const char *given)
{
    if (given && access_id_valid(given)) {
        snprintf(access_id, sizeof access_id, "%s", given);
    } else {
        uint64_t n = atomic_fetch_add_explicit(&access_counter, 1, memory_order_relaxed);
        snprintf(access_id, sizeof access_id, "%08" PRIx32 "%016" PRIx64, access_seed, n);
    }
    return access_id;
}

const char *access_request_id(void)
{
    return access_id;
}

/* METHOD and TARGET of a text line: printable ASCII but '"' and '\' as is, the rest as \xHH. */
static int access_text_escape(struct buf *out, const char *s, size_t max)
{
    size_t n = strlen(s);
    int rc = 0;
    for (size_t i = 0; i < n && i < max && rc == 0; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c > 0x7e || c == '"' || c == '\\')
            rc = buf_printf(out, "\\x%02x", c);
        else
            rc = buf_append(out, &s[i], 1);
    }
    if (rc == 0 && n > max)
        rc = buf_puts(out, "...");
    return rc;
}

/* A JSON string (RFC 8259 §7), quotes included; bytes above 0x7e as \u00HH so that the line is
 * valid UTF-8 whatever the client sent. */
static int access_json_string(struct buf *out, const char *s, size_t max)
{
    size_t n = strlen(s);
    int rc = buf_puts(out, "\"");
    for (size_t i = 0; i < n && i < max && rc == 0; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            rc = buf_printf(out, "\\%c", c);
        else if (c < 0x20 || c > 0x7e)
            rc = buf_printf(out, "\\u%04x", c);
        else
            rc = buf_append(out, &s[i], 1);
    }
    if (rc == 0 && n > max)
        rc = buf_puts(out, "...");
    return rc ? rc : buf_puts(out, "\"");
}

int access_render(enum access_format f, const char *prog, const struct access_entry *e,
                  struct buf *out)
{
    const char *client = e->client_id && access_id_valid(e->client_id) ? e->client_id : NULL;
    int rc = 0;
    if (f == ACCESS_JSON) {
        rc |= buf_printf(out, "{\"time\":\"%s\",\"process\":", e->time);
        rc |= access_json_string(out, prog, 64);
        rc |= buf_puts(out, ",\"peer\":");
        rc |= access_json_string(out, e->peer, 64);
        rc |= buf_puts(out, ",\"method\":");
        rc |= access_json_string(out, e->method, 64);
        rc |= buf_puts(out, ",\"target\":");
        rc |= access_json_string(out, e->target, ACCESS_TARGET_MAX);
        rc |= buf_printf(out,
                         ",\"status\":%d,\"bytes\":%zu,\"seconds\":%.6f,\"id\":\"%s\","
                         "\"client_id\":",
                         e->status, e->bytes, e->seconds, e->id);
        rc |= client ? buf_printf(out, "\"%s\"}", client) : buf_puts(out, "null}");
    } else {
        rc |= buf_printf(out, "%s ACCESS %s: %s \"", e->time, prog, e->peer);
        rc |= access_text_escape(out, e->method, 64);
        rc |= buf_puts(out, " ");
        rc |= access_text_escape(out, e->target, ACCESS_TARGET_MAX);
        rc |= buf_printf(out, "\" %d %zu %.6f id=%s client_id=%s", e->status, e->bytes, e->seconds,
                         e->id, client ? client : "-");
    }
    return rc ? -1 : 0;
}

void access_log(const char *peer, const char *method, const char *target, int status, size_t bytes,
                double seconds, const char *client_id)
{
    if (access_fmt == ACCESS_OFF)
        return;
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char when[64];
    snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
    struct access_entry e = {
        when,      peer,     method ? method : "", target ? target : "", status, bytes, seconds,
        access_id, client_id};
    struct buf b;
    buf_init(&b, 6 * ACCESS_TARGET_MAX + 1024); /* every byte escaped, plus the other fields */
    if (access_render(access_fmt, access_prog, &e, &b) == 0 && buf_puts(&b, "\n") == 0) {
        ssize_t w = write(STDERR_FILENO, b.data, b.len); /* one write: lines never interleave */
        (void)w;
    }
    buf_release(&b);
}
