/* CDR files of the charging records (charging_internal.h): JSON lines, fsync'ed before a record
 * leaves the queue and before a file is closed, rotated by size and age. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "charging_internal.h"
#include "log.h"

struct charging_cdr {
    char *dir;
    char node[STORE_CHARGE_QUEUE_MAX + 1]; /* sanitised for file names */
    uint64_t rotate_bytes, rotate_age_s;
    int fd;         /* the open file, or -1 */
    char *path;     /* its name */
    uint64_t bytes; /* written to it */
    time_t opened;  /* CLOCK_MONOTONIC seconds */
    bool dirty;     /* written since the last fsync */
};

static time_t charging_cdr_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

int charging_cdr_open(const char *dir, const char *node, uint64_t rotate_bytes,
                      uint64_t rotate_age_s, struct charging_cdr **out)
{
    *out = NULL;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        log_error("charging: cannot create the CDR directory %s (cdr_dir): %s", dir,
                  strerror(errno));
        return -1;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || access(dir, W_OK | X_OK) != 0) {
        log_error("charging: cdr_dir %s is not a directory this process can write", dir);
        return -1;
    }
    struct charging_cdr *c = calloc(1, sizeof *c);
    if (!c || !(c->dir = strdup(dir))) {
        free(c);
        return -1;
    }
    size_t i = 0;
    for (; node[i] && i < STORE_CHARGE_QUEUE_MAX; i++) {
        char ch = node[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
        c->node[i] = ok ? ch : '_';
    }
    c->node[i] = '\0';
    c->rotate_bytes = rotate_bytes;
    c->rotate_age_s = rotate_age_s;
    c->fd = -1;
    *out = c;
    return 0;
}

/* fsync of the directory, so that a new file's name survives a crash as its lines do. */
static void charging_cdr_sync_dir(const struct charging_cdr *c)
{
    int d = open(c->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d >= 0) {
        fsync(d);
        close(d);
    }
}

int charging_cdr_sync(struct charging_cdr *c)
{
    if (c->fd < 0 || !c->dirty)
        return 0;
    if (fsync(c->fd) != 0) {
        log_error("charging: fsync of %s failed: %s; the records stay queued", c->path,
                  strerror(errno));
        return -1;
    }
    c->dirty = false;
    return 0;
}

/* Closes the open file after its fsync (a file that cannot be synced is closed anyway: its
 * records are still queued and go to the next file). */
static void charging_cdr_finish(struct charging_cdr *c)
{
    if (c->fd < 0)
        return;
    charging_cdr_sync(c);
    close(c->fd);
    log_info("charging: CDR file %s closed (%" PRIu64 " bytes)", c->path, c->bytes);
    c->fd = -1;
    free(c->path);
    c->path = NULL;
}

static int charging_cdr_begin(struct charging_cdr *c, uint64_t seq)
{
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    if (asprintf(&c->path, "%s/xdm-%s-%s-%" PRIu64 ".jsonl", c->dir, c->node, stamp, seq) < 0) {
        c->path = NULL;
        return -1;
    }
    /* O_APPEND: a file of the same name (the same first record again after a crash) grows. */
    c->fd = open(c->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (c->fd < 0) {
        log_error("charging: cannot create the CDR file %s: %s; the records stay queued", c->path,
                  strerror(errno));
        free(c->path);
        c->path = NULL;
        return -1;
    }
    struct stat st;
    c->bytes = fstat(c->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    c->opened = charging_cdr_clock();
    c->dirty = false;
    charging_cdr_sync_dir(c);
    return 0;
}

static bool charging_cdr_due(const struct charging_cdr *c)
{
    return c->fd >= 0 && (c->bytes >= c->rotate_bytes ||
                          (uint64_t)(charging_cdr_clock() - c->opened) >= c->rotate_age_s);
}

void charging_cdr_tick(struct charging_cdr *c)
{
    if (charging_cdr_due(c))
        charging_cdr_finish(c);
}

int charging_cdr_write(struct charging_cdr *c, const char *line, size_t len, uint64_t seq)
{
    if (charging_cdr_due(c))
        charging_cdr_finish(c);
    if (c->fd < 0 && charging_cdr_begin(c, seq) < 0)
        return -1;
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(c->fd, line + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            log_error("charging: write to %s failed: %s; the records stay queued", c->path,
                      strerror(errno));
            /* A partial line must not stay: cut back to the last whole line; the next record
             * starts a new file. */
            if (ftruncate(c->fd, (off_t)c->bytes) != 0)
                log_error("charging: %s may end in a partial line", c->path);
            charging_cdr_finish(c);
            return -1;
        }
        off += (size_t)n;
    }
    c->bytes += len;
    c->dirty = true;
    return 0;
}

void charging_cdr_close(struct charging_cdr *c)
{
    if (!c)
        return;
    charging_cdr_finish(c);
    free(c->dir);
    free(c);
}
