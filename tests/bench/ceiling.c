/* The HTTP ceiling for tools/bench: a libmicrohttpd server that answers every request with the
 * same 1 KiB body and does nothing else. It uses the servers' threading set-up (common/httpd.c:
 * one internal epoll thread, or a pool of N epoll threads with --threads N), so its throughput is
 * the most an XDMS or the proxy could reach on this machine; the benchmark reports the servers as
 * a fraction of it.
 *
 *   ceiling [--http HOST:PORT | --unix PATH] [--threads N] [--size BYTES]
 *
 * With --unix it listens on a UNIX-domain socket instead (the transport the proxy and tools/bench
 * use to reach an XDMS), replacing a file already at PATH.
 *
 * Runs until SIGINT or SIGTERM. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <microhttpd.h>
#include <pthread.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define CEILING_MAX_BODY 65536u

struct ceiling {
    char *body;
    size_t size;
};

static int ceiling_usage(const char *prog)
{
    fprintf(stderr, "usage: %s [--http HOST:PORT | --unix PATH] [--threads N] [--size BYTES]\n",
            prog);
    return 2;
}

static int ceiling_parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    unsigned long v;

    if (s[0] < '0' || s[0] > '9')
        return -1;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno || *end || v > max)
        return -1;
    *out = v;
    return 0;
}

/* IPv4 "a.b.c.d:port" only: the bench runs on loopback. */
static int ceiling_parse_addr(const char *s, struct sockaddr_in *sin)
{
    char host[INET_ADDRSTRLEN];
    const char *colon = strrchr(s, ':');
    unsigned long port;
    size_t len;

    if (!colon)
        return -1;
    len = (size_t)(colon - s);
    if (len == 0 || len >= sizeof(host))
        return -1;
    memcpy(host, s, len);
    host[len] = '\0';
    if (ceiling_parse_uint(colon + 1, 65535, &port) < 0)
        return -1;
    memset(sin, 0, sizeof(*sin));
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, host, &sin->sin_addr) == 1 ? 0 : -1;
}

/* A listening, non-blocking UNIX-domain socket at path (an old file there is removed). */
static int ceiling_unix_listen(const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    int fd;

    if (len == 0 || len >= sizeof(sun.sun_path))
        return -1;
    memcpy(sun.sun_path, path, len + 1);
    unlink(path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0 || listen(fd, SOMAXCONN) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static enum MHD_Result ceiling_access(void *cls, struct MHD_Connection *conn, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **req_cls)
{
    const struct ceiling *c = cls;
    struct MHD_Response *resp;
    enum MHD_Result ret;
    static const int first_call_marker = 0;

    (void)url;
    (void)method;
    (void)version;
    (void)upload_data;
    /* First call: headers only. Then the body arrives in pieces (PUT), which are discarded. */
    if (*req_cls == NULL) {
        *req_cls = (void *)&first_call_marker;
        return MHD_YES;
    }
    if (*upload_data_size) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    resp = MHD_create_response_from_buffer(c->size, c->body, MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/resource-lists+xml");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, "\"ceiling\"");
    ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

int main(int argc, char **argv)
{
    struct sockaddr_in sin;
    char host[INET_ADDRSTRLEN];
    struct ceiling c = {NULL, 1024};
    unsigned long threads = 1, size = 1024, v;
    const char *addr = "127.0.0.1:8190", *unix_path = NULL;
    int unix_fd = -1;
    struct MHD_Daemon *d;
    const union MHD_DaemonInfo *info;
    sigset_t set;
    int sig = 0;
    struct MHD_OptionItem opts[8];
    size_t n = 0;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--http") && i + 1 < argc) {
            addr = argv[++i];
        } else if (!strcmp(argv[i], "--unix") && i + 1 < argc) {
            unix_path = argv[++i];
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            if (ceiling_parse_uint(argv[++i], 256, &v) < 0 || v == 0)
                return ceiling_usage(argv[0]);
            threads = v;
        } else if (!strcmp(argv[i], "--size") && i + 1 < argc) {
            if (ceiling_parse_uint(argv[++i], CEILING_MAX_BODY, &v) < 0)
                return ceiling_usage(argv[0]);
            size = v;
        } else {
            return ceiling_usage(argv[0]);
        }
    }
    if (ceiling_parse_addr(addr, &sin) < 0)
        return ceiling_usage(argv[0]);

    c.size = size;
    c.body = malloc(size ? size : 1);
    if (!c.body)
        return 1;
    /* Printable, XML-looking filler so proxies and clients treat it like a document. */
    for (size_t i = 0; i < size; i++)
        c.body[i] = (char)('a' + (i % 26));
    if (size >= 2) {
        c.body[0] = '<';
        c.body[size - 1] = '>';
    }

    /* Block the stop signals before any thread starts, so only sigwait() below receives them. */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    /* Same flags and limits as common/httpd.c. */
    if (unix_path) {
        if ((unix_fd = ceiling_unix_listen(unix_path)) < 0) {
            fprintf(stderr, "ceiling: cannot listen on %s\n", unix_path);
            free(c.body);
            return 1;
        }
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_LISTEN_SOCKET, unix_fd, NULL};
    } else {
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, &sin};
    }
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, 30, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT, 65536, NULL};
    if (!unix_path)
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, NULL};
    if (threads > 1)
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)threads, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0,
                         NULL, NULL, ceiling_access, &c, MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "ceiling: cannot listen on %s\n", addr);
        free(c.body);
        return 1;
    }
    info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    inet_ntop(AF_INET, &sin.sin_addr, host, sizeof(host));
    if (unix_path)
        printf("ceiling listening on unix:%s threads %lu body %lu\n", unix_path, threads, size);
    else
        printf("ceiling listening on http://%s:%u threads %lu body %lu\n", host,
               info ? (unsigned)info->port : 0u, threads, size);
    fflush(stdout);

    sigwait(&set, &sig);
    MHD_stop_daemon(d);
    if (unix_path)
        unlink(unix_path);
    free(c.body);
    return 0;
}
