/* A closed-loop HTTP/1.1 load generator over a UNIX-domain socket for tools/bench: wrk speaks TCP
 * only, and an XDMS acts for a user (X-3GPP-Asserted-Identity) only on its socket.
 *
 *   uload --unix PATH [--connections N] [--duration S] [--method M] [--header 'Name: value']...
 *         [--body-file FILE] (TARGET | --targets FILE [--identity-from-path])
 *
 * --targets: one target per line (at most ULOAD_MAX_TARGETS); every request picks one at random
 * (per connection a reproducible sequence), so that reads spread over many documents.
 * --identity-from-path: each request also carries X-3GPP-Asserted-Identity with the XUI of its
 * target's ".../users/<XUI>/..." segment (the owner reads its own documents).
 * Each connection is one thread that sends the same request, reads the whole answer
 * (Content-Length framing, keep-alive) and sends the next, until the duration ends. Prints the
 * lines of wrk's report that tools/bench reads ("Requests/sec:", the "99%" latency, "Non-2xx or
 * 3xx responses:" for statuses of 400 and above, "Socket errors:"). Exit status 0, 2 on usage
 * errors. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define ULOAD_MAX_CONNS 1024
#define ULOAD_MAX_HEADERS 16
#define ULOAD_MAX_RESPONSE (16u << 20)
#define ULOAD_MAX_SAMPLES (4u << 20) /* latencies kept per connection */
#define ULOAD_IO_TIMEOUT_S 5
#define ULOAD_MAX_TARGETS (1u << 22)
#define ULOAD_MAX_TARGET_LEN 1024

struct uload_conn {
    pthread_t thread;
    const struct sockaddr_un *addr;
    const char *request; /* with targets: the part after the request line */
    size_t request_len;
    const char *method;
    char *const *targets; /* NULL: request is whole */
    size_t n_targets;
    bool identity_from_path;
    uint64_t seed;
    double deadline;
    uint32_t *lat_us; /* samples */
    size_t n_lat;
    unsigned long requests, non2xx, err_connect, err_read, err_write, err_timeout;
};

static double uload_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int uload_connect(struct uload_conn *c)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {.tv_sec = ULOAD_IO_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (const struct sockaddr *)c->addr, sizeof *c->addr) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads one response into buf; returns its status, 0 when the connection must be reopened
 * (error counted), and sets *close_after when the server announced Connection: close. */
static int uload_read_response(struct uload_conn *c, int fd, char *buf, bool *close_after)
{
    size_t got = 0;
    char *end = NULL;
    while (!end) {
        if (got + 1 >= 65536)
            return c->err_read++, 0;
        ssize_t r = recv(fd, buf + got, 65536 - 1 - got, 0);
        if (r <= 0) {
            if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                c->err_timeout++;
            else
                c->err_read++;
            return 0;
        }
        got += (size_t)r;
        buf[got] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    int status = strncmp(buf, "HTTP/1.", 7) == 0 ? atoi(buf + 9) : 0;
    size_t body = 0;
    *close_after = false;
    for (char *h = strstr(buf, "\r\n"); h && h < end; h = strstr(h + 2, "\r\n")) {
        if (strncasecmp(h + 2, "Content-Length:", 15) == 0)
            body = strtoul(h + 17, NULL, 10);
        else if (strncasecmp(h + 2, "Connection: close", 17) == 0)
            *close_after = true;
    }
    if (status < 100 || body > ULOAD_MAX_RESPONSE)
        return c->err_read++, 0;
    size_t have = got - (size_t)(end + 4 - buf);
    char sink[65536];
    while (have < body) {
        size_t want = body - have < sizeof sink ? body - have : sizeof sink;
        ssize_t r = recv(fd, sink, want, 0);
        if (r <= 0) {
            c->err_read++;
            return 0;
        }
        have += (size_t)r;
    }
    return status;
}

static void *uload_run(void *cls)
{
    struct uload_conn *c = cls;
    char *buf = malloc(65536);
    char *own = c->targets ? malloc(c->request_len + ULOAD_MAX_TARGET_LEN * 2 + 128) : NULL;
    int fd = -1;
    if (c->targets && !own) {
        free(buf);
        return NULL;
    }
    while (buf && uload_now() < c->deadline) {
        if (fd < 0 && (fd = uload_connect(c)) < 0) {
            c->err_connect++;
            usleep(10000);
            continue;
        }
        const char *req = c->request;
        size_t req_len = c->request_len;
        if (c->targets) {
            c->seed ^= c->seed >> 12;
            c->seed ^= c->seed << 25;
            c->seed ^= c->seed >> 27;
            const char *target = c->targets[(c->seed * 2685821657736338717ull) % c->n_targets];
            int l = snprintf(own, ULOAD_MAX_TARGET_LEN * 2 + 128, "%s %s HTTP/1.1\r\n", c->method,
                             target);
            const char *users = c->identity_from_path ? strstr(target, "/users/") : NULL;
            if (users) {
                const char *xui = users + 7;
                int xl = (int)strcspn(xui, "/");
                l += snprintf(own + l, ULOAD_MAX_TARGET_LEN * 2 + 128 - (size_t)l,
                              "X-3GPP-Asserted-Identity: \"%.*s\"\r\n", xl, xui);
            }
            memcpy(own + l, c->request, c->request_len);
            req = own;
            req_len = (size_t)l + c->request_len;
        }
        double t0 = uload_now();
        size_t sent = 0;
        while (sent < req_len) {
            ssize_t w = send(fd, req + sent, req_len - sent, MSG_NOSIGNAL);
            if (w <= 0)
                break;
            sent += (size_t)w;
        }
        if (sent < req_len) {
            c->err_write++;
            close(fd);
            fd = -1;
            continue;
        }
        bool close_after;
        int status = uload_read_response(c, fd, buf, &close_after);
        if (status == 0 || close_after) {
            close(fd);
            fd = -1;
        }
        if (status == 0)
            continue;
        c->requests++;
        if (status >= 400)
            c->non2xx++;
        if (c->n_lat < ULOAD_MAX_SAMPLES) {
            if (c->n_lat % 65536 == 0) {
                uint32_t *v = realloc(c->lat_us, (c->n_lat + 65536) * sizeof *v);
                if (!v)
                    continue;
                c->lat_us = v;
            }
            c->lat_us[c->n_lat++] = (uint32_t)((uload_now() - t0) * 1e6);
        }
    }
    if (fd >= 0)
        close(fd);
    free(buf);
    free(own);
    return NULL;
}

static int uload_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int uload_usage(void)
{
    fputs("usage: uload --unix PATH [--connections N] [--duration S] [--method M]\n"
          "             [--header 'Name: value']... [--body-file FILE] (TARGET | --targets FILE\n"
          "             [--identity-from-path])\n",
          stderr);
    return 2;
}

/* Reads one target per line (each starting with '/', at most ULOAD_MAX_TARGET_LEN bytes). */
static char **uload_read_targets(const char *path, size_t *n)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char **v = NULL, line[ULOAD_MAX_TARGET_LEN + 2];
    size_t cap = 0;
    *n = 0;
    while (*n < ULOAD_MAX_TARGETS && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] != '/')
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 1024;
            char **nv = realloc(v, cap * sizeof *nv);
            if (!nv)
                break;
            v = nv;
        }
        if (!(v[*n] = strdup(line)))
            break;
        (*n)++;
    }
    fclose(f);
    if (*n == 0) {
        free(v);
        return NULL;
    }
    return v;
}

static char *uload_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *data = malloc(ULOAD_MAX_RESPONSE);
    *len = data ? fread(data, 1, ULOAD_MAX_RESPONSE, f) : 0;
    fclose(f);
    return data;
}

int main(int argc, char **argv)
{
    bool id_from_path = false;
    const char *path = NULL, *method = "GET", *body_file = NULL, *target = NULL, *tfile = NULL;
    const char *headers[ULOAD_MAX_HEADERS];
    size_t n_headers = 0;
    long conns = 32, duration = 10;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "--unix") && has)
            path = argv[++i];
        else if (!strcmp(a, "--connections") && has)
            conns = strtol(argv[++i], NULL, 10);
        else if (!strcmp(a, "--duration") && has)
            duration = strtol(argv[++i], NULL, 10);
        else if (!strcmp(a, "--method") && has)
            method = argv[++i];
        else if (!strcmp(a, "--header") && has && n_headers < ULOAD_MAX_HEADERS)
            headers[n_headers++] = argv[++i];
        else if (!strcmp(a, "--identity-from-path"))
            id_from_path = true;
        else if (!strcmp(a, "--targets") && has)
            tfile = argv[++i];
        else if (!strcmp(a, "--body-file") && has)
            body_file = argv[++i];
        else if (a[0] == '/' && !target)
            target = a;
        else
            return uload_usage();
    }
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (!path || !target == !tfile || conns < 1 || conns > ULOAD_MAX_CONNS || duration < 1 ||
        duration > 3600 || strlen(path) >= sizeof addr.sun_path)
        return uload_usage();
    memcpy(addr.sun_path, path, strlen(path) + 1);

    size_t body_len = 0;
    char *body = body_file ? uload_read_file(body_file, &body_len) : NULL;
    if (body_file && !body) {
        fprintf(stderr, "uload: cannot read %s\n", body_file);
        return 2;
    }
    size_t n_targets = 0;
    char **targets = tfile ? uload_read_targets(tfile, &n_targets) : NULL;
    if (tfile && !targets) {
        fprintf(stderr, "uload: no targets in %s\n", tfile);
        return 2;
    }
    if (!target)
        target = tfile;
    size_t cap = strlen(method) + strlen(target) + body_len + 256;
    for (size_t i = 0; i < n_headers; i++)
        cap += strlen(headers[i]) + 2;
    char *req = malloc(cap);
    if (!req)
        return 1;
    /* With targets, each connection writes the request line itself. */
    size_t len = targets ? (size_t)snprintf(req, cap, "Host: localhost\r\n")
                         : (size_t)snprintf(req, cap, "%s %s HTTP/1.1\r\nHost: localhost\r\n",
                                            method, target);
    for (size_t i = 0; i < n_headers; i++)
        len += (size_t)snprintf(req + len, cap - len, "%s\r\n", headers[i]);
    if (body || strcmp(method, "PUT") == 0 || strcmp(method, "POST") == 0)
        len += (size_t)snprintf(req + len, cap - len, "Content-Length: %zu\r\n", body_len);
    len += (size_t)snprintf(req + len, cap - len, "\r\n");
    if (body_len) {
        memcpy(req + len, body, body_len);
        len += body_len;
    }
    free(body);

    struct uload_conn *c = calloc((size_t)conns, sizeof *c);
    if (!c)
        return 1;
    double t0 = uload_now();
    for (long i = 0; i < conns; i++) {
        c[i] = (struct uload_conn){.addr = &addr,
                                   .request = req,
                                   .request_len = len,
                                   .method = method,
                                   .targets = targets,
                                   .n_targets = n_targets,
                                   .identity_from_path = id_from_path,
                                   .seed = 0x9e3779b97f4a7c15ull + (uint64_t)i * 7919,
                                   .deadline = t0 + (double)duration};
        if (pthread_create(&c[i].thread, NULL, uload_run, &c[i]) != 0) {
            fprintf(stderr, "uload: cannot start thread %ld\n", i);
            return 1;
        }
    }
    unsigned long requests = 0, non2xx = 0, e_conn = 0, e_read = 0, e_write = 0, e_to = 0;
    size_t n_lat = 0;
    for (long i = 0; i < conns; i++) {
        pthread_join(c[i].thread, NULL);
        requests += c[i].requests;
        non2xx += c[i].non2xx;
        e_conn += c[i].err_connect;
        e_read += c[i].err_read;
        e_write += c[i].err_write;
        e_to += c[i].err_timeout;
        n_lat += c[i].n_lat;
    }
    double secs = uload_now() - t0;
    uint32_t *all = malloc((n_lat ? n_lat : 1) * sizeof *all);
    size_t k = 0;
    for (long i = 0; i < conns; i++) {
        if (all && c[i].n_lat)
            memcpy(all + k, c[i].lat_us, c[i].n_lat * sizeof *all);
        k += c[i].n_lat;
        free(c[i].lat_us);
    }
    printf("Running %lds test @ unix:%s %s\n  %ld connections\n", duration, path, target, conns);
    if (all && n_lat) {
        qsort(all, n_lat, sizeof *all, uload_cmp);
        printf("  Latency Distribution\n");
        static const int pct[] = {50, 75, 90, 99};
        for (size_t i = 0; i < sizeof pct / sizeof pct[0]; i++) {
            size_t at = (n_lat * (size_t)pct[i]) / 100;
            printf("     %d%%   %.2fms\n", pct[i], all[at < n_lat ? at : n_lat - 1] / 1000.0);
        }
    }
    printf("  %lu requests in %.2fs\n", requests, secs);
    if (e_conn || e_read || e_write || e_to)
        printf("  Socket errors: connect %lu, read %lu, write %lu, timeout %lu\n", e_conn, e_read,
               e_write, e_to);
    if (non2xx)
        printf("  Non-2xx or 3xx responses: %lu\n", non2xx);
    printf("Requests/sec: %.2f\n", secs > 0 ? (double)requests / secs : 0.0);
    free(all);
    free(c);
    free(req);
    for (size_t i = 0; i < n_targets; i++)
        free(targets[i]);
    free(targets);
    return 0;
}
